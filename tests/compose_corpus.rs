//! Compose files as users bring them, through `spec::load::load_host_spec` (the path `gitmoor
//! validate`, `plan` and `apply` take):
//!
//! - `tests/compose_corpus/*`: our own cases in the shapes real projects use, each with an
//!   expectation file (accepted, with values of the model; or refused, naming file, line, key and
//!   reason). See `tests/compose_corpus/README.md`.
//! - the public corpus (`../shared/corpus/compose-examples`, or `$GITMOOR_CORPUS`): 39 files of
//!   docker/awesome-compose, with placeholders for their build contexts, mounted files and secret
//!   files (only the compose files were kept), and every variable set. Prints what is accepted
//!   and why the rest is refused; nothing may panic, every refusal names the file and the key, and
//!   at least 90 % of the files without a literal secret must be accepted.

use gitmoor::source::snapshot::{FileEntry, Snapshot};
use gitmoor::spec::error::{Findings, SpecError};
use gitmoor::spec::load::{load_host_spec_with_profiles, LoadOptions};
use gitmoor::spec::model::{HostSpec, StackSpec};
use gitmoor::spec::yaml::{self, Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const BIND_ROOT: &str = "/var/lib/gitmoor/stacks";

fn load(
    snap: &Snapshot,
    secrets_dir: Option<PathBuf>,
    profiles: Vec<String>,
) -> (Option<HostSpec>, Findings) {
    let opts = LoadOptions {
        secrets_dir,
        bind_root: PathBuf::from(BIND_ROOT),
        // As gitmoor runs under its systemd unit: `~/` is root's home.
        home_dir: Some(PathBuf::from("/root")),
        ..LoadOptions::default()
    };
    load_host_spec_with_profiles(snap, &opts, &profiles)
}

// ---------------------------------------------------------------------------------------------
// Our own corpus

/// The expectation of one case, line by line.
#[derive(Debug)]
enum Expect {
    Accepted,
    /// file, line, key (None for `-`), reason substring.
    Refused(String, Option<u64>, Option<String>, String),
    Warning(String),
    /// kind (service/network/volume), [stack/]name, JSON pointer, JSON value (None for `*`).
    Value(String, String, String, Option<serde_json::Value>),
    Absent(String),
}

fn parse_expect(text: &str, secrets: &str) -> Result<Vec<Expect>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let e = match word {
            "accepted" => Expect::Accepted,
            "warning" => Expect::Warning(rest.to_string()),
            "absent" => Expect::Absent(rest.to_string()),
            "refused" => {
                let (at, rest) = rest.split_once(' ').ok_or(format!("bad line {line:?}"))?;
                let (key, reason) = rest.split_once(": ").ok_or(format!("bad line {line:?}"))?;
                let (file, line_no) = match at.rsplit_once(':') {
                    Some((f, l)) => (
                        f,
                        Some(l.parse().map_err(|_| format!("bad line {line:?}"))?),
                    ),
                    None => (at, None),
                };
                let key = (key != "-").then(|| key.to_string());
                Expect::Refused(
                    file.to_string(),
                    line_no,
                    key,
                    reason.replace("$SECRETS", secrets),
                )
            }
            "service" | "network" | "volume" => {
                let mut parts = rest.splitn(3, ' ');
                let (Some(name), Some(pointer), Some(value)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("bad line {line:?}"));
                };
                let value = value
                    .strip_prefix("= ")
                    .ok_or(format!("bad line {line:?}"))?;
                let value = match value {
                    "*" => None,
                    v => Some(
                        serde_json::from_str(&v.replace("$SECRETS", secrets))
                            .map_err(|e| format!("bad JSON in {line:?}: {e}"))?,
                    ),
                };
                Expect::Value(
                    word.to_string(),
                    name.to_string(),
                    pointer.to_string(),
                    value,
                )
            }
            _ => return Err(format!("unknown expectation {line:?}")),
        };
        out.push(e);
    }
    Ok(out)
}

fn stack_of<'a>(host: &'a HostSpec, name: &'a str) -> Result<(&'a StackSpec, &'a str), String> {
    match name.split_once('/') {
        Some((stack, rest)) => host
            .stacks
            .get(stack)
            .map(|s| (s, rest))
            .ok_or(format!("no stack {stack}")),
        None if host.stacks.len() == 1 => {
            Ok((host.stacks.values().next().ok_or("no stack")?, name))
        }
        None => Err(format!("several stacks: write <stack>/{name}")),
    }
}

fn check_value(
    host: &HostSpec,
    kind: &str,
    name: &str,
    pointer: &str,
    want: &Option<serde_json::Value>,
) -> Result<(), String> {
    let (stack, name) = stack_of(host, name)?;
    let json = match kind {
        "service" => stack.services.get(name).map(serde_json::to_value),
        "network" => stack.networks.get(name).map(serde_json::to_value),
        _ => stack.volumes.get(name).map(serde_json::to_value),
    }
    .ok_or(format!("no {kind} {name}"))?
    .map_err(|e| e.to_string())?;
    let got = json
        .pointer(pointer)
        .ok_or(format!("{kind} {name}: nothing at {pointer} in {json}"))?;
    match want {
        Some(want) if got != want => {
            Err(format!("{kind} {name} {pointer}: want {want}, got {got}"))
        }
        _ => Ok(()),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let repo = Snapshot::from_dir(&dir.join("repo")).map_err(|e| format!("repo/: {e}"))?;
    let empty = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secrets_dir = if dir.join("unchecked").exists() {
        None
    } else if dir.join("secrets").is_dir() {
        Some(dir.join("secrets"))
    } else {
        Some(empty.path().to_path_buf())
    };
    let shown_secrets = secrets_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let profiles: Vec<String> = std::fs::read_to_string(dir.join("profiles"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let text = std::fs::read_to_string(dir.join("expect")).map_err(|e| format!("expect: {e}"))?;
    let expects = parse_expect(&text, &shown_secrets)?;
    let (spec, findings) = load(&repo, secrets_dir, profiles);
    let errors: Vec<String> = findings.errors.iter().map(|e| e.to_string()).collect();
    let warnings: Vec<String> = findings.warnings.iter().map(|e| e.to_string()).collect();
    let mut problems = Vec::new();
    let mut matched = BTreeSet::new();
    let mut refusals = 0;
    for e in &expects {
        let r = match e {
            Expect::Accepted => match &spec {
                Some(_) if errors.is_empty() => Ok(()),
                _ => Err(format!("want accepted, got errors {errors:#?}")),
            },
            Expect::Refused(file, line, key, reason) => {
                refusals += 1;
                let hit = findings.errors.iter().position(|f: &SpecError| {
                    &f.file == file
                        && f.line == *line
                        && &f.key == key
                        && f.to_string().contains(reason.as_str())
                });
                match hit {
                    Some(i) => {
                        matched.insert(i);
                        Ok(())
                    }
                    None => Err(format!("want an error {file}:{line:?} {key:?} containing {reason:?}, got {errors:#?}")),
                }
            }
            Expect::Warning(w) => match warnings.iter().any(|x| x.contains(w.as_str())) {
                true => Ok(()),
                false => Err(format!(
                    "want a warning containing {w:?}, got {warnings:#?}"
                )),
            },
            Expect::Value(kind, name, pointer, want) => match &spec {
                Some(host) => check_value(host, kind, name, pointer, want),
                None => Err(format!("no spec (errors {errors:#?})")),
            },
            Expect::Absent(name) => match &spec {
                Some(host) => {
                    let (stack, svc) = stack_of(host, name)?;
                    match (
                        stack.services.contains_key(svc),
                        stack.inactive_services.contains_key(svc),
                    ) {
                        (false, true) => Ok(()),
                        _ => Err(format!("want {name} left out by its profiles")),
                    }
                }
                None => Err(format!("no spec (errors {errors:#?})")),
            },
        };
        if let Err(p) = r {
            problems.push(p);
        }
    }
    if refusals > 0 && (matched.len() != errors.len() || spec.is_some()) {
        problems.push(format!("every error must be expected: got {errors:#?}"));
    }
    if refusals == 0 && !expects.iter().any(|e| matches!(e, Expect::Accepted)) {
        problems.push("the expect file says neither accepted nor refused".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn own_corpus_of_real_world_shapes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose_corpus");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/compose_corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "at least 30 cases, found {}",
        cases.len()
    );
    let mut failed = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(case) {
            Ok(()) => {
                let expect = std::fs::read_to_string(case.join("expect")).unwrap_or_default();
                if expect.lines().any(|l| l.starts_with("refused")) {
                    refused += 1;
                } else {
                    accepted += 1;
                }
            }
            Err(e) => failed.push(format!("{name}:\n{e}")),
        }
    }
    eprintln!(
        "own corpus: {} cases ({accepted} accepted, {refused} refused as expected)",
        cases.len()
    );
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The public corpus

fn corpus_dir() -> PathBuf {
    match std::env::var_os("GITMOOR_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    }
}

/// A folder name as a stack name (lowercase, `_`/`-`), as a user renaming it would.
fn stack_name(folder: &str) -> String {
    folder
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Every variable the text references (`$NAME`, `${NAME...}`), `$$` skipped.
fn variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let start = if b.get(i + 1) == Some(&b'{') {
            i + 2
        } else {
            i + 1
        };
        let end = (start..b.len())
            .find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'))
            .unwrap_or(b.len());
        if end > start {
            out.insert(text[start..end].to_string());
        }
        i = end.max(i + 1);
    }
    out
}

/// What the compose file expects to find: in the repo (build contexts, mounted files, env files,
/// configs) and in the secrets dir (secret files). Paths relative to the stack folder.
#[derive(Default)]
struct Needs {
    /// (context, dockerfile)
    contexts: Vec<(String, String)>,
    repo_files: Vec<String>,
    secret_files: Vec<String>,
}

fn needs(root: &Node) -> Needs {
    let mut n = Needs::default();
    let entries = |node: Option<&Node>| -> Vec<(String, Node)> {
        match node.map(|x| &x.value) {
            Some(NodeValue::Map(e)) => e.clone(),
            _ => Vec::new(),
        }
    };
    for (_, svc) in entries(root.get("services")) {
        match svc.get("build").map(|b| &b.value) {
            Some(NodeValue::Str(ctx)) => n.contexts.push((ctx.clone(), "Dockerfile".into())),
            Some(NodeValue::Map(_)) => {
                let b = svc
                    .get("build")
                    .and_then(|b| b.get("context"))
                    .and_then(|c| c.as_str());
                let f = svc
                    .get("build")
                    .and_then(|b| b.get("dockerfile"))
                    .and_then(|c| c.as_str());
                n.contexts.push((
                    b.unwrap_or(".").to_string(),
                    f.unwrap_or("Dockerfile").to_string(),
                ));
            }
            _ => {}
        }
        if let Some(NodeValue::Seq(items)) = svc.get("volumes").map(|v| &v.value) {
            for item in items {
                let source = match &item.value {
                    NodeValue::Str(s) => s.split(':').next().map(str::to_string),
                    NodeValue::Map(_) => item
                        .get("source")
                        .and_then(|s| s.as_str())
                        .map(str::to_string),
                    _ => None,
                };
                if let Some(s) = source.filter(|s| s.starts_with('.')) {
                    n.repo_files.push(s);
                }
            }
        }
        match svc.get("env_file").map(|v| &v.value) {
            Some(NodeValue::Str(s)) => n.repo_files.push(s.clone()),
            Some(NodeValue::Seq(items)) => n
                .repo_files
                .extend(items.iter().filter_map(|i| i.as_str().map(str::to_string))),
            _ => {}
        }
    }
    for (_, c) in entries(root.get("configs")) {
        n.repo_files
            .extend(c.get("file").and_then(|f| f.as_str()).map(str::to_string));
    }
    for (_, s) in entries(root.get("secrets")) {
        n.secret_files
            .extend(s.get("file").and_then(|f| f.as_str()).map(str::to_string));
    }
    n
}

fn join(stack: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = vec!["compose", stack];
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn placeholder(snap: &mut Snapshot, path: &str, data: &str) {
    snap.files.entry(path.to_string()).or_insert(FileEntry {
        data: data.as_bytes().to_vec(),
        executable: false,
        symlink: false,
    });
}

/// The corpus file as a managed repo plus the host's secrets dir, with everything it needs made
/// up: placeholder build contexts and mounted files, secret files, every variable.
fn prepare(stack: &str, text: &str, secrets: &Path) -> Snapshot {
    let file = format!("compose/{stack}/compose.yaml");
    let mut snap = Snapshot::default();
    placeholder(&mut snap, &file, text);
    if let Ok(root) = yaml::parse(text, &file) {
        let n = needs(&root);
        for (ctx, dockerfile) in &n.contexts {
            placeholder(
                &mut snap,
                &join(stack, &format!("{ctx}/{dockerfile}")),
                "FROM scratch\n",
            );
        }
        for f in &n.repo_files {
            let last = f.trim_end_matches('/').rsplit('/').next().unwrap_or(f);
            if last.contains('.') && last != "." && last != ".." {
                placeholder(&mut snap, &join(stack, f), "placeholder\n");
            } else {
                placeholder(&mut snap, &join(stack, &format!("{f}/.placeholder")), "");
            }
        }
        for f in &n.secret_files {
            // Where a user puts a stack's host files: its own folder of the secrets dir.
            let p = secrets.join(stack).join(f.trim_start_matches("./"));
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&p, "placeholder-secret\n");
        }
    }
    // A user sets a path where the file wants one (`${PLEX_MEDIA_PATH}:/media`).
    let value = |v: &str| {
        if v.ends_with("_PATH") || v.ends_with("_DIR") {
            format!("/srv/{}", v.to_ascii_lowercase())
        } else {
            format!("value-of-{v}")
        }
    };
    let env: String = variables(text)
        .iter()
        .map(|v| format!("{v}={}\n", value(v)))
        .collect();
    let _ = std::fs::write(secrets.join(format!("{stack}.env")), env);
    snap
}

/// `services.web.ports[0]` → `services.*.ports`: the reason without names and positions.
fn reason(e: &SpecError) -> String {
    let key = e.key.clone().unwrap_or_default();
    let mut parts: Vec<String> = key.split('.').map(|p| p.to_string()).collect();
    if parts.len() >= 2
        && matches!(
            parts[0].as_str(),
            "services" | "networks" | "volumes" | "secrets" | "configs"
        )
    {
        parts[1] = "*".into();
    }
    if parts.len() >= 4 && matches!(parts[2].as_str(), "environment" | "networks" | "depends_on") {
        parts[3] = "*".into();
    }
    let key = parts.join(".");
    let key = key.split('[').next().unwrap_or(&key).to_string();
    let msg: String = e
        .message
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "`…`" } else { part })
        .collect();
    let msg = msg.split(" (").next().unwrap_or(&msg);
    format!("{key}: {msg}")
}

#[test]
fn public_compose_files_as_users_bring_them() {
    let dir = corpus_dir().join("compose-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "note: no corpus at {} (set GITMOOR_CORPUS); skipped",
            dir.display()
        );
        return;
    };
    let mut examples: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    examples.sort();
    let mut accepted = Vec::new();
    let mut with_literal_secret = Vec::new();
    let mut refused: Vec<(String, Vec<String>)> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    for example in &examples {
        let Some(compose) = ["compose.yaml", "compose.yml"]
            .iter()
            .map(|n| example.join(n))
            .find(|p| p.exists())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&compose).expect("corpus file is UTF-8");
        let folder = example
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stack = stack_name(&folder);
        let secrets = tempfile::tempdir().expect("tempdir");
        let snap = prepare(&stack, &text, secrets.path());
        let secrets_dir = secrets.path().to_path_buf();
        let outcome = std::panic::catch_unwind(|| load(&snap, Some(secrets_dir), Vec::new()));
        let Ok((spec, f)) = outcome else {
            bad.push(format!("{folder}: the loader panicked"));
            continue;
        };
        if spec.is_some() != f.errors.is_empty() {
            bad.push(format!("{folder}: a spec and errors, or neither"));
        }
        for e in &f.errors {
            if e.file.is_empty() || e.key.is_none() {
                bad.push(format!("{folder}: a refusal without file and key: {e}"));
            }
        }
        let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        if f.errors.is_empty() {
            accepted.push(folder);
        } else if f
            .errors
            .iter()
            .any(|e| e.message.contains("literal secret"))
        {
            with_literal_secret.push((folder, shown));
        } else {
            let mut mine: Vec<String> = f.errors.iter().map(reason).collect();
            mine.sort();
            mine.dedup();
            for r in mine {
                *reasons.entry(r).or_default() += 1;
            }
            refused.push((folder, shown));
        }
    }
    let candidates = accepted.len() + refused.len();
    eprintln!(
        "public corpus: {} files; {} hold a literal secret (refused for it); of the other {candidates}: {} accepted, {} refused ({:.1} % accepted)",
        accepted.len() + refused.len() + with_literal_secret.len(),
        with_literal_secret.len(),
        accepted.len(),
        refused.len(),
        100.0 * accepted.len() as f64 / candidates.max(1) as f64
    );
    eprintln!("accepted: {}", accepted.join(", "));
    let mut by_count: Vec<(&String, &usize)> = reasons.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    eprintln!("refusal reasons (number of files):");
    for (r, n) in by_count {
        eprintln!("  {n:>3}  {r}");
    }
    for (name, errors) in refused.iter().chain(&with_literal_secret) {
        eprintln!("{name}:");
        for e in errors {
            eprintln!("    {e}");
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(candidates > 0, "an empty corpus dir: {}", dir.display());
    assert!(
        accepted.len() * 10 >= candidates * 9,
        "only {} of {candidates} files without a literal secret are accepted",
        accepted.len()
    );
}
