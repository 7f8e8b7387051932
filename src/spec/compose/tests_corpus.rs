//! The awesome-compose corpus (`../shared/corpus`, or `$GITMOOR_CORPUS`): nothing panics, and every
//! refusal names the file, a line and a key. Prints what is accepted and why the rest is refused
//! (the to-do list of issue #8).

use super::tests::snap;
use super::*;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    match std::env::var_os("GITMOOR_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    }
}

/// `services.web.ports[0]` → `services.*.ports`: the reason without names and positions.
fn reason(e: &SpecError) -> String {
    let key = e.key.clone().unwrap_or_default();
    let mut parts: Vec<String> = key.split('.').map(|p| p.to_string()).collect();
    if parts.len() >= 2 && matches!(parts[0].as_str(), "services" | "networks" | "volumes") {
        parts[1] = "*".into();
    }
    // services.*.environment.DB_PASSWORD, services.*.networks.front.aliases: the name too.
    if parts.len() >= 4 && matches!(parts[2].as_str(), "environment" | "networks" | "depends_on") {
        parts[3] = "*".into();
    }
    let key = parts.join(".");
    let key = match key.find('[') {
        Some(i) => key[..i].to_string(),
        None => key,
    };
    // Quoted details (`./conf`) dropped, so that reasons group.
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
fn awesome_compose_corpus() {
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
    let mut refused: Vec<(String, Vec<String>)> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
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
        let stack = suggest_stack_name(&folder);
        let file = format!("compose/{stack}/compose.yaml");
        let snap = snap(&[(file.as_str(), text.as_str())]);
        let vars = StackVars::unchecked();
        let (spec, f) = load_stack(&StackInput {
            name: &stack,
            file: &file,
            text: &text,
            snap: &snap,
            vars: &vars,
            bind_root: Path::new("/var/lib/gitmoor/binds"),
        });
        assert_eq!(spec.is_some(), f.errors.is_empty(), "{folder}");
        for e in &f.errors {
            assert_eq!(e.file, file, "{folder}: {e}");
            assert!(e.key.is_some(), "{folder}: an error without a key: {e}");
            assert!(e.line.is_some(), "{folder}: an error without a line: {e}");
        }
        if f.errors.is_empty() {
            accepted.push(folder);
        } else {
            let mut mine: Vec<String> = f.errors.iter().map(reason).collect();
            mine.sort();
            mine.dedup();
            for r in &mine {
                *reasons.entry(r.clone()).or_default() += 1;
            }
            refused.push((folder, f.errors.iter().map(|e| e.to_string()).collect()));
        }
    }
    assert!(
        !examples.is_empty(),
        "an empty corpus dir: {}",
        dir.display()
    );
    eprintln!(
        "corpus: {} accepted, {} refused (of {})",
        accepted.len(),
        refused.len(),
        accepted.len() + refused.len()
    );
    eprintln!("accepted: {}", accepted.join(", "));
    let mut by_count: Vec<(&String, &usize)> = reasons.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    eprintln!("refusal reasons (number of examples):");
    for (r, n) in by_count {
        eprintln!("  {n:>3}  {r}");
    }
    for (name, errors) in &refused {
        eprintln!("{name}:");
        for e in errors {
            eprintln!("    {e}");
        }
    }
}
