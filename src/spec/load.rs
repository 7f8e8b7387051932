//! The whole managed repo → `HostSpec`: every stack under `compose/`, each with its secrets file,
//! plus the scan for committed secrets. All problems are collected, not just the first, so one
//! `gitmoor validate` run shows everything to fix.

use crate::source::snapshot::Snapshot;
use crate::spec::committed;
use crate::spec::compose::{load_stack, StackInput, StackVars};
use crate::spec::error::{Findings, SpecError};
use crate::spec::host_secrets::{load_stack_secrets, permission_warning, stack_secrets_path};
use crate::spec::limits::{file_too_large, too_many_stacks, Limits};
use crate::spec::model::{default_container_name, HostSpec, StackSpec};
use crate::spec::nginx;
use crate::spec::policy::Policy;
use crate::spec::yaml::TotalBudget;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The compose file names compose itself looks for, in its order of preference.
pub const COMPOSE_FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The secrets dir (`<dir>/<stack>.env`). With it, every variable must be set (strict mode);
    /// without it (CI validation), missing variables are warnings.
    pub secrets_dir: Option<PathBuf>,
    /// The content dir, where the repo files containers mount are copied (`<id>/<name>`).
    pub bind_root: PathBuf,
    /// Where the stacks' data folders are (`<data_dir>/<stack>/<path>`).
    pub data_dir: PathBuf,
    /// The budgets (`limits:` of the config): what one commit may make the reader spend.
    pub limits: Limits,
    /// The host policy (`policy:` of the config); None: no policy.
    pub policy: Option<Policy>,
    /// The home directory `~/` in a bind source means (the user gitmoor runs as, see
    /// `crate::home`); None: such a mount is refused.
    pub home_dir: Option<PathBuf>,
    /// A literal secret in a committed file: refused (default) or deployed with a warning.
    pub literal_secrets: crate::spec::compose::LiteralSecrets,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            secrets_dir: None,
            bind_root: PathBuf::from("/var/lib/gitmoor/content"),
            data_dir: PathBuf::from("/var/lib/gitmoor/data"),
            limits: Limits::default(),
            policy: None,
            home_dir: None,
            literal_secrets: Default::default(),
        }
    }
}

/// Reads every stack of the commit, with no profile enabled (only services without `profiles:`
/// run). `Some` only when there is no error.
pub fn load_host_spec(snap: &Snapshot, opts: &LoadOptions) -> (Option<HostSpec>, Findings) {
    load_host_spec_with_profiles(snap, opts, &[])
}

/// `load_host_spec` with compose profiles enabled: a service with `profiles:` runs only when one
/// of its profiles is in `profiles` (`*` enables all).
pub fn load_host_spec_with_profiles(
    snap: &Snapshot,
    opts: &LoadOptions,
    profiles: &[String],
) -> (Option<HostSpec>, Findings) {
    let mut findings = committed::scan(snap);
    let mut host = HostSpec::default();
    if !snap.exists("compose") || snap.get("compose").is_some() {
        findings.warnings.push(
            SpecError::new("compose/", "no compose/ folder: no stack to deploy")
                .fix("add compose/<stack>/compose.yaml"),
        );
    }
    let entries = snap.list_dir("compose");
    let folders = entries
        .iter()
        .filter(|e| snap.get(&format!("compose/{e}")).is_none())
        .count();
    if let Some(e) = too_many_stacks(folders as u64, &opts.limits) {
        findings.errors.push(e);
        return (None, findings);
    }
    // One budget of expanded YAML for all the stacks: what each becomes is kept until the end.
    let _total = TotalBudget::start(opts.limits.expanded_yaml_total_bytes);
    for entry in entries {
        let dir = format!("compose/{entry}");
        if snap.get(&dir).is_some() {
            if COMPOSE_FILE_NAMES.contains(&entry.as_str()) {
                findings.warnings.push(
                    SpecError::new(&dir, "ignored: a compose file belongs in a stack folder")
                        .fix("move it to compose/<stack>/compose.yaml"),
                );
            }
            continue;
        }
        if let Some((stack, f)) = load_one(snap, opts, profiles, &entry, &dir) {
            findings.extend(f);
            if let Some(stack) = stack {
                host.stacks.insert(entry.clone(), stack);
            }
        }
    }
    check_host_ports(&host, &mut findings);
    check_container_names(&host, &mut findings);
    let (firewall, f) = crate::spec::ufw::load_firewall(snap);
    findings.extend(f);
    host.firewall = firewall;
    read_nginx_sites(snap, opts, &mut host, &mut findings);
    let spec = findings.is_ok().then_some(host);
    (spec, findings)
}

/// The sites of `nginx/`, their upstreams resolved against the stacks just read. A stack folder
/// with a compose file that failed to load is passed as in the commit, so a site naming it is
/// held back without an error of its own.
fn read_nginx_sites(
    snap: &Snapshot,
    opts: &LoadOptions,
    host: &mut HostSpec,
    findings: &mut Findings,
) {
    let in_commit = snap
        .list_dir("compose")
        .into_iter()
        .filter(|e| {
            COMPOSE_FILE_NAMES
                .iter()
                .any(|n| snap.get(&format!("compose/{e}/{n}")).is_some())
        })
        .collect();
    let stacks = nginx::Stacks {
        loaded: &host.stacks,
        in_commit,
    };
    let (mut sites, f) = nginx::read_sites(snap, &stacks, &opts.limits);
    findings.extend(f);
    findings.extend(nginx::read::check_policy(&mut sites, opts.policy.as_ref()));
    host.sites = sites;
}

/// One stack folder; None when the folder holds no compose file.
fn load_one(
    snap: &Snapshot,
    opts: &LoadOptions,
    profiles: &[String],
    stack: &str,
    dir: &str,
) -> Option<(Option<StackSpec>, Findings)> {
    let mut findings = Findings::default();
    let found: Vec<String> = COMPOSE_FILE_NAMES
        .iter()
        .map(|n| format!("{dir}/{n}"))
        .filter(|p| snap.get(p).is_some())
        .collect();
    let file = match found.as_slice() {
        [] => {
            findings.warnings.push(
                SpecError::new(
                    format!("{dir}/"),
                    "no compose file: the folder is not a stack",
                )
                .fix("add compose.yaml, or remove the folder"),
            );
            return Some((None, findings));
        }
        [one] => one.clone(),
        [first, ..] => {
            let names: Vec<&str> = found
                .iter()
                .map(|p| p.rsplit('/').next().unwrap_or(p))
                .collect();
            findings.errors.push(
                SpecError::new(
                    first,
                    format!(
                        "the stack has {} compose files: {}",
                        found.len(),
                        names.join(", ")
                    ),
                )
                .fix("keep one (compose.yaml)"),
            );
            return Some((None, findings));
        }
    };
    let entry = snap.get(&file)?;
    if entry.symlink {
        findings.errors.push(
            SpecError::new(&file, "the compose file is a symlink").fix("commit the file itself"),
        );
        return Some((None, findings));
    }
    // Before it is decoded or parsed: a huge file costs nothing more than its size.
    if let Some(e) = file_too_large(&file, entry.data.len() as u64, &opts.limits) {
        findings.errors.push(e);
        return Some((None, findings));
    }
    let Ok(text) = std::str::from_utf8(&entry.data) else {
        findings
            .errors
            .push(SpecError::new(&file, "not UTF-8 text").fix("save the file as UTF-8"));
        return Some((None, findings));
    };
    let vars = match &opts.secrets_dir {
        None => StackVars::unchecked(),
        // A name that cannot be a file name is reported by load_stack; don't look it up.
        Some(_) if stack.contains(['/', '\\']) || stack.starts_with('.') => StackVars::unchecked(),
        Some(sdir) => match load_stack_secrets(sdir, stack) {
            Ok(Some(sf)) => {
                findings.warnings.extend(permission_warning(&sf.path));
                StackVars {
                    vars: sf.vars,
                    secrets_file: Some(sf.path.display().to_string()),
                    has_secrets_file: true,
                }
            }
            Ok(None) => StackVars {
                vars: Default::default(),
                secrets_file: Some(stack_secrets_path(sdir, stack).display().to_string()),
                has_secrets_file: false,
            },
            Err(e) => {
                // Without its variables the stack would only report each one as missing.
                findings.errors.push(e);
                return Some((None, findings));
            }
        },
    };
    let (spec, f) = load_stack(&StackInput {
        name: stack,
        file: &file,
        text,
        snap,
        vars: &vars,
        bind_root: &opts.bind_root,
        data_dir: &opts.data_dir,
        secrets_dir: opts.secrets_dir.as_deref(),
        profiles,
        limits: &opts.limits,
        policy: opts.policy.as_ref(),
        home_dir: opts.home_dir.as_deref(),
        literal_secrets: opts.literal_secrets,
    });
    findings.extend(f);
    Some((spec, findings))
}

/// Two services of the host publishing the same port cannot both start. Bindings are grouped by
/// port, so each is compared only with the others of its port (not with every binding of the
/// host, which made many stacks' ports quadratic).
fn check_host_ports(host: &HostSpec, findings: &mut Findings) {
    let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    // (protocol, port) -> (host ip, file, stack/service) of the bindings seen.
    type Seen<'a> = BTreeMap<(&'a str, u16), Vec<(&'a str, &'a str, String)>>;
    let mut seen: Seen = BTreeMap::new();
    for stack in host.stacks.values() {
        for (name, svc) in &stack.services {
            for p in &svc.ports {
                let Some(port) = p.host_port else { continue };
                let same_port = seen.entry((p.protocol.as_str(), port)).or_default();
                let clash = same_port
                    .iter()
                    .find(|(ip, _, _)| *ip == p.host_ip || wildcard(ip) || wildcard(&p.host_ip));
                if let Some((_, other_file, other_svc)) = clash {
                    findings.errors.push(
                        SpecError::new(
                            &stack.compose_file,
                            format!(
                                "host port {port}/{} is also published by {other_svc} ({other_file})",
                                p.protocol
                            ),
                        )
                        .key(format!("services.{name}.ports"))
                        .fix("publish a different host port"),
                    );
                } else {
                    same_port.push((
                        p.host_ip.as_str(),
                        stack.compose_file.as_str(),
                        format!("{}/{name}", stack.name),
                    ));
                }
            }
        }
    }
}

/// Container names are global on the host: two stacks cannot both use one (`container_name:`).
fn check_container_names(host: &HostSpec, findings: &mut Findings) {
    let mut seen: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for stack in host.stacks.values() {
        for (name, svc) in &stack.services {
            let cname = svc
                .container_name
                .clone()
                .unwrap_or_else(|| default_container_name(&stack.name, name));
            let here = (stack.compose_file.clone(), format!("{}/{name}", stack.name));
            match seen.get(&cname) {
                Some((file, other)) if file != &stack.compose_file => findings.errors.push(
                    SpecError::new(
                        &stack.compose_file,
                        format!("container name {cname} is also used by {other} ({file})"),
                    )
                    .key(format!("services.{name}.container_name"))
                    .fix("give one of them another container_name"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(cname, here);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        Snapshot::from_texts(files)
    }

    fn unchecked() -> LoadOptions {
        LoadOptions {
            secrets_dir: None,
            bind_root: PathBuf::from("/var/lib/gitmoor/binds"),
            ..LoadOptions::default()
        }
    }

    fn shown(errors: &[SpecError]) -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    }

    const API: &str = "services:\n  api:\n    image: nginx:1.27\n";

    #[test]
    fn finds_every_stack_and_skips_what_is_not_one() {
        let s = snap(&[
            ("README.md", "docs"),
            ("compose/api/compose.yaml", API),
            (
                "compose/web/docker-compose.yml",
                "services:\n  web:\n    image: caddy\n",
            ),
            ("compose/notes/README.md", "no compose file here"),
            ("compose/README.md", "about the stacks"),
            ("nginx/site.conf", "server {}"),
        ]);
        let (spec, f) = load_host_spec(&s, &unchecked());
        assert!(f.errors.is_empty(), "{:#?}", f.errors);
        let spec = spec.expect("spec");
        assert_eq!(spec.stacks.keys().collect::<Vec<_>>(), vec!["api", "web"]);
        assert_eq!(
            spec.stacks["web"].compose_file,
            "compose/web/docker-compose.yml"
        );
        assert_eq!(
            shown(&f.warnings),
            vec!["compose/notes/: no compose file: the folder is not a stack; add compose.yaml, or remove the folder"]
        );
    }

    #[test]
    fn collects_errors_of_all_stacks_and_committed_secrets() {
        let s = snap(&[
            ("compose/a/compose.yaml", "services:\n  a:\n    build: .\n"),
            ("compose/a/.env", "DB_PASSWORD=x"),
            ("compose/b/compose.yaml", API),
            ("compose/b/compose.yml", API),
            ("compose/C/compose.yaml", API),
            ("compose/d/compose.yaml", "services: [\n"),
            ("compose/ok/compose.yaml", API),
            ("compose/compose.yaml", API),
        ]);
        let (spec, f) = load_host_spec(&s, &unchecked());
        assert!(spec.is_none());
        let errors = shown(&f.errors);
        let want = [
            "compose/a/.env: a .env file is committed",
            "compose/a/compose.yaml:3: services.a.build.dockerfile: no `Dockerfile` in the build context",
            "compose/b/compose.yaml: the stack has 2 compose files: compose.yaml, compose.yml; keep one",
            "compose/C/compose.yaml: stack name `C` is not valid",
            "compose/d/compose.yaml:1: invalid YAML: unclosed bracket",
        ];
        for w in want {
            assert!(
                errors.iter().any(|e| e.starts_with(w)),
                "want {w:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        assert!(shown(&f.warnings).iter().any(|w| w.starts_with(
            "compose/compose.yaml: ignored: a compose file belongs in a stack folder"
        )));
    }

    #[test]
    fn strict_mode_reads_the_secrets_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("app.env");
        std::fs::write(&secrets, "POSTGRES_PASSWORD=pw\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n      POSTGRES_USER: ${POSTGRES_USER}\n";
        let s = snap(&[
            ("compose/app/compose.yaml", text),
            (
                "compose/other/compose.yaml",
                "services:\n  o:\n    image: x\n    environment: [\"A=${A}\"]\n",
            ),
        ]);
        let opts = LoadOptions {
            secrets_dir: Some(dir.path().to_path_buf()),
            bind_root: PathBuf::from("/b"),
            ..LoadOptions::default()
        };
        let (spec, f) = load_host_spec(&s, &opts);
        assert!(spec.is_none());
        let other = stack_secrets_path(dir.path(), "other")
            .display()
            .to_string();
        let want = vec![
            format!("compose/app/compose.yaml:6: services.db.environment.POSTGRES_USER: variable POSTGRES_USER is not set; add POSTGRES_USER=... to {}", secrets.display()),
            format!("compose/other/compose.yaml:4: services.o.environment[0]: variable A is not set; add A=... to {other}"),
        ];
        assert_eq!(shown(&f.errors), want);
        assert!(f.warnings.is_empty(), "{:#?}", f.warnings);

        std::fs::write(&secrets, "POSTGRES_PASSWORD=pw\nPOSTGRES_USER=u\n").expect("write");
        let s = snap(&[("compose/app/compose.yaml", text)]);
        let (spec, f) = load_host_spec(&s, &opts);
        assert!(f.errors.is_empty(), "{:#?}", f.errors);
        let spec = spec.expect("spec");
        let app = &spec.stacks["app"];
        assert!(app.has_secrets_file);
        assert_eq!(
            app.services["db"].environment["POSTGRES_PASSWORD"].expose(),
            "pw"
        );
        assert_eq!(
            app.services["db"].environment["POSTGRES_USER"].expose(),
            "u"
        );
    }

    #[test]
    fn two_stacks_cannot_publish_the_same_host_port() {
        let s = snap(&[
            ("compose/a/compose.yaml", "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n"),
            ("compose/b/compose.yaml", "services:\n  web:\n    image: x\n    ports: [\"127.0.0.1:8080:80\", \"8080:80/udp\"]\n"),
        ]);
        let (spec, f) = load_host_spec(&s, &unchecked());
        assert!(spec.is_none());
        assert_eq!(
            shown(&f.errors),
            vec!["compose/b/compose.yaml: services.web.ports: host port 8080/tcp is also published by a/web (compose/a/compose.yaml); publish a different host port"]
        );
    }

    #[test]
    fn a_compose_file_over_its_budget_is_refused_before_parsing_and_neighbours_load() {
        // Not YAML at all: the size alone refuses it, so it is never parsed.
        let big = format!("services: [{}", "x".repeat(1 << 20));
        let s = snap(&[
            ("compose/big/compose.yaml", big.as_str()),
            ("compose/ok/compose.yaml", API),
        ]);
        let (spec, f) = load_host_spec(&s, &unchecked());
        assert!(spec.is_none());
        assert_eq!(
            shown(&f.errors),
            vec!["compose/big/compose.yaml: the file is 1.0 MiB, over the limit of 1 MiB per compose file (limits.compose_file_bytes); split it into stacks, or move data out of it, or raise limits.compose_file_bytes in gitmoor's config"]
        );
        let opts = LoadOptions {
            limits: Limits {
                compose_file_bytes: 2 << 20,
                ..Limits::default()
            },
            ..unchecked()
        };
        let (_, f) = load_host_spec(&s, &opts);
        assert!(
            shown(&f.errors)[0].starts_with("compose/big/compose.yaml:1: invalid YAML"),
            "{:?}",
            f.errors
        );
    }

    #[test]
    fn stack_budgets_come_from_the_options() {
        let text = "services:\n  a:\n    image: x\n    ports: [\"1-65535:1-65535\"]\n";
        let s = snap(&[
            ("compose/a/compose.yaml", text),
            ("compose/ok/compose.yaml", API),
        ]);
        let (spec, f) = load_host_spec(&s, &unchecked());
        assert!(spec.is_none());
        assert_eq!(
            shown(&f.errors),
            vec!["compose/a/compose.yaml:1: services: 65535 port bindings (ports: and expose:, a range counted port by port), over the limit of 1000 per stack (limits.ports); publish fewer ports or narrower ranges, or raise limits.ports in gitmoor's config"]
        );
        let opts = LoadOptions {
            limits: Limits {
                ports: 65535,
                services: 1,
                ..Limits::default()
            },
            ..unchecked()
        };
        let (spec, f) = load_host_spec(&s, &opts);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(
            spec.expect("spec").stacks["a"].services["a"].ports.len(),
            65535
        );
    }

    #[test]
    fn host_ports_of_many_stacks_are_compared_by_port() {
        let mut files: Vec<(String, String)> = Vec::new();
        for i in 0..300 {
            let ports: Vec<String> = (0..100)
                .map(|p| format!("\"127.0.0.{}:{}:80\"", i % 200 + 1, 10000 + i * 100 + p))
                .collect();
            files.push((
                format!("compose/s{i}/compose.yaml"),
                format!(
                    "services:\n  web:\n    image: x\n    ports: [{}]\n",
                    ports.join(", ")
                ),
            ));
        }
        files.push((
            "compose/clash/compose.yaml".into(),
            "services:\n  web:\n    image: x\n    ports: [\"10005:80\"]\n".into(),
        ));
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (_, f) = load_host_spec(&snap(&refs), &unchecked());
        assert_eq!(
            shown(&f.errors),
            vec!["compose/s0/compose.yaml: services.web.ports: host port 10005/tcp is also published by clash/web (compose/clash/compose.yaml); publish a different host port"]
        );
    }

    /// 40 stacks each just under the per-file budget: 40 times it in memory, until one budget
    /// was shared by all. The total runs out at the fifth; the message names the file, the
    /// limit and its key; a stack read before it is not blamed.
    #[test]
    fn the_expanded_yaml_of_all_stacks_shares_one_budget() {
        let anchor = "x".repeat(400 << 10);
        let uses: String = (0..36).map(|i| format!("      V{i}: *a\n")).collect();
        let bomb = format!(
            "x-a: &a \"{anchor}\"\nservices:\n  s:\n    image: x\n    environment:\n{uses}"
        );
        let files: Vec<(String, String)> = (0..40)
            .map(|i| (format!("compose/s{i:02}/compose.yaml"), bomb.clone()))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let s = snap(&refs);
        // One alone is within every per-file budget.
        let (spec, f) = load_host_spec(&snap(&refs[..1]), &unchecked());
        assert!(spec.is_some(), "{:#?}", f.errors);
        let (spec, f) = load_host_spec(&s, &unchecked());
        assert!(spec.is_none());
        let errors = shown(&f.errors);
        assert_eq!(errors.len(), 36, "{errors:#?}");
        assert!(
            errors[0].starts_with("compose/s04/compose.yaml:") && errors[0].contains(": the compose files read so far expand to more than 64 MiB in all (limits.expanded_yaml_total_bytes), and "),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].ends_with("use fewer aliases of large anchors in the stacks, or raise limits.expanded_yaml_total_bytes in gitmoor's config"),
            "{}",
            errors[0]
        );
        let opts = LoadOptions {
            limits: Limits {
                expanded_yaml_total_bytes: 1 << 30,
                ..Limits::default()
            },
            ..unchecked()
        };
        let (spec, f) = load_host_spec(&s, &opts);
        assert!(spec.is_some(), "{:#?}", f.errors);
    }

    #[test]
    fn too_many_stack_folders_are_refused_before_any_is_read() {
        let files: Vec<(String, &str)> = (0..6)
            .map(|i| (format!("compose/s{i}/compose.yaml"), API))
            .collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        let opts = |stacks| LoadOptions {
            limits: Limits {
                stacks,
                ..Limits::default()
            },
            ..unchecked()
        };
        let (spec, f) = load_host_spec(&snap(&refs), &opts(6));
        assert_eq!(spec.expect("spec").stacks.len(), 6);
        let (spec, f2) = load_host_spec(&snap(&refs), &opts(5));
        assert!(f.errors.is_empty() && spec.is_none());
        assert_eq!(
            shown(&f2.errors),
            vec!["compose/: 6 stack folders, over the limit of 5 (limits.stacks); no stack was read; merge small stacks, or raise limits.stacks in gitmoor's config"]
        );
    }

    #[test]
    fn an_empty_repo_is_a_warning() {
        let (spec, f) = load_host_spec(&snap(&[("README.md", "")]), &unchecked());
        assert_eq!(spec, Some(HostSpec::default()));
        assert_eq!(f.warnings.len(), 1);
    }
}
