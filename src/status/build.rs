//! Pure pieces of the status: stacks and services from the desired names and the observed
//! containers, the overall state, and which stacks a secrets file blocks. Tested with plain data.

use super::doc::{
    redact_userinfo, rfc3339, CertView, CommitView, HeadView, OverallState, SecretBlock,
    ServiceView, StackView, UnitView,
};
use crate::observe::Observed;
use crate::plan::UnitId;
use crate::spec::host_secrets::stack_secrets_path;
use crate::state::{ReconcileResult, UnitState};
use crate::status::desired::DesiredService;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What `/status` keeps of one observed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenContainer {
    pub stack: String,
    pub service: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub health: Option<String>,
}

pub fn seen_containers(o: &Observed) -> Vec<SeenContainer> {
    o.containers
        .iter()
        .map(|c| SeenContainer {
            stack: c.stack.clone(),
            service: c.service.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state.clone(),
            health: c.health.clone(),
        })
        .collect()
}

/// gitmoor's verdict on one service.
pub fn service_status(c: Option<&SeenContainer>, one_shot: bool) -> &'static str {
    let Some(c) = c else { return "missing" };
    match (c.state.as_str(), c.health.as_deref()) {
        ("running", Some("unhealthy")) => "degraded",
        ("running", Some("starting")) => "starting",
        ("running", _) => "ok",
        ("exited", _) if one_shot => "completed",
        _ => "degraded",
    }
}

/// Every stack the repo or the host has: the desired services (when a spec was read) paired
/// with the observed containers, plus each stack's last apply from the state file.
pub fn stack_views(
    desired: Option<&BTreeMap<String, Vec<DesiredService>>>,
    seen: &[SeenContainer],
    recorded: &BTreeMap<String, UnitState>,
    blocked: &[SecretBlock],
) -> Vec<StackView> {
    let mut names: BTreeSet<&str> = seen.iter().map(|c| c.stack.as_str()).collect();
    match desired {
        Some(d) => names.extend(d.keys().map(String::as_str)),
        // No spec read yet: the state file's stacks are the best list there is.
        None => names.extend(recorded.keys().map(String::as_str)),
    }
    names.extend(blocked.iter().map(|b| b.stack.as_str()));
    let mut out = Vec::new();
    for name in names {
        let wanted: Option<&Vec<DesiredService>> = desired.and_then(|d| d.get(name));
        let mut services = Vec::new();
        let mut covered = BTreeSet::new();
        if let Some(wanted) = wanted {
            for svc in wanted {
                let c = seen
                    .iter()
                    .find(|c| c.stack == name && c.service == svc.name);
                covered.insert(svc.name.as_str());
                services.push(ServiceView {
                    name: svc.name.clone(),
                    container: c.map(|c| c.name.clone()),
                    image: Some(c.map_or_else(|| svc.image.clone(), |c| c.image.clone())),
                    state: c.map_or_else(|| "missing".to_string(), |c| c.state.clone()),
                    health: c.and_then(|c| c.health.clone()),
                    status: service_status(c, svc.one_shot).into(),
                });
            }
        }
        for c in seen.iter().filter(|c| c.stack == name) {
            if covered.contains(c.service.as_str()) {
                continue;
            }
            // Without a spec the containers are all we know: judge them as they are.
            let status = if desired.is_some() {
                "not_in_repo"
            } else {
                service_status(Some(c), false)
            };
            services.push(ServiceView {
                name: c.service.clone(),
                container: Some(c.name.clone()),
                image: Some(c.image.clone()),
                state: c.state.clone(),
                health: c.health.clone(),
                status: status.into(),
            });
        }
        let rec = recorded.get(name);
        let in_repo = wanted.is_some() || desired.is_none();
        if !in_repo && services.is_empty() {
            continue;
        }
        out.push(StackView {
            name: name.to_string(),
            health: stack_health(&services).into(),
            result: rec.map(|r| r.result.to_string()),
            last_good_commit: rec.and_then(|r| r.last_good_commit.clone()),
            error: rec.and_then(|r| r.error.as_deref().map(redact_userinfo)),
            secrets_blocked: blocked.iter().find(|b| b.stack == name).cloned(),
            services,
        });
    }
    out
}

/// Every recorded unit, keyed as the state file keys them (`stack/app`); a key this version
/// cannot read is shown as its raw kind and name.
pub fn unit_views(recorded: &BTreeMap<String, UnitState>) -> Vec<UnitView> {
    recorded
        .iter()
        .map(|(key, st)| {
            let (kind, name) = match UnitId::from_key(key) {
                Some(u) => (u.kind().as_str().to_string(), u.name().to_string()),
                None => {
                    let (k, n) = key.split_once('/').unwrap_or(("unknown", key));
                    (k.to_string(), n.to_string())
                }
            };
            UnitView {
                kind,
                name,
                result: st.result.to_string(),
                last_good_commit: st.last_good_commit.clone(),
                error: st.error.as_deref().map(redact_userinfo),
                updated_at: rfc3339(st.updated),
            }
        })
        .collect()
}

/// The sites' certificates with their days left; flagged below `warn_days`.
pub fn cert_views(expiry: &BTreeMap<String, i64>, now: i64, warn_days: u32) -> Vec<CertView> {
    expiry
        .iter()
        .map(|(name, t)| CertView {
            name: name.clone(),
            not_after: rfc3339(*t),
            days_left: (t - now).div_euclid(86_400),
            expiring_soon: t - now < i64::from(warn_days) * 86_400,
        })
        .collect()
}

/// The worst of the stack's services.
pub fn stack_health(services: &[ServiceView]) -> &'static str {
    let any = |s: &[&str]| services.iter().any(|v| s.contains(&v.status.as_str()));
    if any(&["degraded", "missing"]) {
        "degraded"
    } else if any(&["starting"]) {
        "progressing"
    } else if any(&["not_in_repo"]) {
        "out_of_sync"
    } else {
        "healthy"
    }
}

/// The inputs of the overall state.
pub struct OverallInputs<'a> {
    pub reconciling: bool,
    pub last_result: Option<&'a str>,
    pub last_error: Option<&'a str>,
    pub last_commit: Option<&'a CommitView>,
    pub deployed: Option<&'a CommitView>,
    pub head: Option<&'a HeadView>,
    pub pending: Option<&'a str>,
    pub stacks: &'a [StackView],
}

/// One state for the whole host, in this order: a running reconcile is `progressing`; a last
/// reconcile that did not deploy the head is `failed`; a deployed head with a service down is
/// `degraded`; a service still starting is `progressing`; a head that differs from what runs, a
/// pending nudge or a leftover container is `out_of_sync`; else `synced`.
pub fn overall(i: &OverallInputs) -> (OverallState, String) {
    if i.reconciling {
        return (OverallState::Progressing, "a reconcile is running".into());
    }
    let Some(result) = i.last_result else {
        return (
            OverallState::Progressing,
            "starting: the first reconcile has not finished yet".into(),
        );
    };
    let first_line = |e: Option<&str>| {
        e.and_then(|e| e.lines().next())
            .unwrap_or("no error recorded")
            .to_string()
    };
    let commit = i
        .last_commit
        .map(|c| format!("{} ", c.short))
        .unwrap_or_default();
    match result.parse() {
        Ok(ReconcileResult::Invalid) => {
            return (
                OverallState::Failed,
                format!(
                    "commit {commit}is invalid, nothing was changed: {}",
                    first_line(i.last_error)
                ),
            )
        }
        Ok(ReconcileResult::Failed) => {
            return (
                OverallState::Failed,
                format!(
                    "applying commit {commit}failed: {}",
                    first_line(i.last_error)
                ),
            )
        }
        Ok(ReconcileResult::Skipped) => {
            return (
                OverallState::Failed,
                format!(
                "commit {commit}failed before and waits for a fix (a push or a secrets edit): {}",
                first_line(i.last_error)
            ),
            )
        }
        Ok(ReconcileResult::Error) => {
            return (
                OverallState::Failed,
                format!("the last reconcile failed: {}", first_line(i.last_error)),
            )
        }
        Ok(ReconcileResult::Success | ReconcileResult::Noop) | Err(_) => {}
    }
    let with = |health: &str| {
        i.stacks
            .iter()
            .filter(|s| s.health == health)
            .map(|s| {
                let bad: Vec<String> = s
                    .services
                    .iter()
                    .filter(|v| !matches!(v.status.as_str(), "ok" | "completed"))
                    .map(|v| format!("{} {}", v.name, v.status.replace('_', " ")))
                    .collect();
                format!("{} ({})", s.name, bad.join(", "))
            })
            .collect::<Vec<_>>()
    };
    let degraded = with("degraded");
    if !degraded.is_empty() {
        return (
            OverallState::Degraded,
            format!("not every service is up: {}", degraded.join("; ")),
        );
    }
    let starting = with("progressing");
    if !starting.is_empty() {
        return (
            OverallState::Progressing,
            format!("starting: {}", starting.join("; ")),
        );
    }
    if let (Some(h), Some(d)) = (i.head, i.deployed) {
        if h.commit.sha != d.sha {
            return (
                OverallState::OutOfSync,
                format!(
                    "the branch head {} is not deployed yet (deployed: {})",
                    h.commit.short, d.short
                ),
            );
        }
    }
    if let Some(p) = i.pending {
        return (
            OverallState::OutOfSync,
            format!("a change was announced ({p}); a reconcile follows in a moment"),
        );
    }
    let leftover = with("out_of_sync");
    if !leftover.is_empty() {
        return (
            OverallState::OutOfSync,
            format!("containers the repo no longer has: {}", leftover.join("; ")),
        );
    }
    let deployed = i
        .deployed
        .map(|d| format!("commit {} runs", d.short))
        .unwrap_or_else(|| "the branch head runs".into());
    (
        OverallState::Synced,
        format!("{deployed} and every service is up"),
    )
}

/// Which stacks a host file blocks, read from the reconcile's errors (one per line, each naming
/// its file): `<secrets_dir>/<stack>.env` when an error is about the file itself (unreadable, bad
/// syntax, not UTF-8) or its fix points at it (a variable not set, `.env` missing), and a host
/// file under `<secrets_dir>/<stack>/` (an `env_file:` or `secrets:` file kept off Git) that an
/// error names. The file is looked at once, here, to tell `missing` from the rest.
pub fn secrets_blocks(errors: &[String], secrets_dir: &Path) -> Vec<SecretBlock> {
    let probe = stack_secrets_path(secrets_dir, "x").display().to_string();
    let prefix = &probe[..probe.len() - "x.env".len()];
    // Each pass of the scan below consumes the prefix: an empty one would never move on.
    if prefix.is_empty() {
        return Vec::new();
    }
    // By file: (stack, lines, the error is about the file itself, it is a stack's `.env`).
    let mut by_file: BTreeMap<String, (String, Vec<String>, bool, bool)> = BTreeMap::new();
    for line in errors.iter().flat_map(|e| e.lines()) {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let len = after
                .find(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '`' | ')' | ';'))
                .unwrap_or(after.len());
            let candidate = after[..len].trim_end_matches('.');
            rest = &after[len..];
            let (stack, env) = match candidate.split_once('/') {
                Some((stack, file)) if !file.is_empty() => (stack, false),
                Some(_) => continue,
                None => match candidate.strip_suffix(".env") {
                    Some(stack) => (stack, true),
                    None => continue,
                },
            };
            // The text came from errors that may quote the repo: only a real stack name and a
            // plain path inside its folder become a file to look at.
            let inside = candidate
                .split_once('/')
                .is_none_or(|(_, rel)| crate::spec::compose::inside_parts(rel).is_some());
            if !crate::spec::compose::valid_stack_name(stack) || !inside {
                continue;
            }
            let file = if env {
                stack_secrets_path(secrets_dir, stack).display().to_string()
            } else {
                format!("{prefix}{candidate}")
            };
            // The error is about the file itself when the line starts with its path.
            let about_file = line.starts_with(&format!("{file}:"));
            let entry = by_file
                .entry(file)
                .or_insert_with(|| (stack.to_string(), Vec::new(), false, env));
            if !entry.1.iter().any(|l| l == line) {
                entry.1.push(line.to_string());
            }
            entry.2 |= about_file;
            break;
        }
    }
    by_file
        .into_iter()
        .map(|(file, (stack, lines, about_file, env))| {
            let unreadable = lines.iter().any(|l| l.contains("cannot read"));
            let problem = match std::fs::metadata(&file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
                Err(_) => "unreadable",
                Ok(m) if !m.is_file() => "unreadable",
                Ok(_) if (about_file || !env) && unreadable => "unreadable",
                Ok(_) if about_file || !env => "invalid",
                Ok(_) => "incomplete",
            };
            SecretBlock {
                stack,
                file,
                problem: problem.into(),
                detail: lines.join("\n"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_blocks_ends_on_an_empty_secrets_dir() {
        let errors = vec!["x: y.env: cannot read ,:/ z.env".to_string()];
        assert!(super::secrets_blocks(&errors, std::path::Path::new("")).is_empty());
    }

    use super::*;

    fn c(stack: &str, service: &str, state: &str, health: Option<&str>) -> SeenContainer {
        SeenContainer {
            stack: stack.into(),
            service: service.into(),
            name: format!("{stack}-{service}-1"),
            image: "img:1".into(),
            state: state.into(),
            health: health.map(Into::into),
        }
    }

    fn d(name: &str, one_shot: bool) -> DesiredService {
        DesiredService {
            name: name.into(),
            image: "img:1".into(),
            one_shot,
        }
    }

    #[test]
    fn services_are_judged_by_state_health_and_role() {
        let table = [
            (Some(c("a", "s", "running", None)), false, "ok"),
            (Some(c("a", "s", "running", Some("healthy"))), false, "ok"),
            (
                Some(c("a", "s", "running", Some("starting"))),
                false,
                "starting",
            ),
            (
                Some(c("a", "s", "running", Some("unhealthy"))),
                false,
                "degraded",
            ),
            (Some(c("a", "s", "exited", None)), true, "completed"),
            (Some(c("a", "s", "exited", None)), false, "degraded"),
            (Some(c("a", "s", "restarting", None)), false, "degraded"),
            (None, false, "missing"),
        ];
        for (seen, one_shot, want) in table {
            assert_eq!(service_status(seen.as_ref(), one_shot), want, "{seen:?}");
        }
    }

    #[test]
    fn stacks_pair_desired_and_observed() {
        let desired = BTreeMap::from([
            (
                "app".to_string(),
                vec![d("web", false), d("migrate", true), d("db", false)],
            ),
            ("new".to_string(), vec![d("x", false)]),
        ]);
        let seen = vec![
            c("app", "web", "running", Some("healthy")),
            c("app", "migrate", "exited", None),
            c("app", "db", "running", None),
            c("app", "old", "running", None),
            c("gone", "w", "running", None),
        ];
        let views = stack_views(Some(&desired), &seen, &BTreeMap::new(), &[]);
        let names: Vec<&str> = views.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["app", "gone", "new"]);
        assert_eq!(views[0].health, "out_of_sync");
        assert_eq!(views[0].services.len(), 4);
        assert_eq!(views[0].services[3].status, "not_in_repo");
        assert_eq!(views[1].health, "out_of_sync");
        assert_eq!(views[2].health, "degraded");
        assert_eq!(views[2].services[0].state, "missing");
        assert_eq!(views[2].services[0].container, None);
    }

    fn view(health: &str) -> StackView {
        StackView {
            name: "app".into(),
            health: health.into(),
            result: None,
            last_good_commit: None,
            error: None,
            secrets_blocked: None,
            services: vec![ServiceView {
                name: "web".into(),
                container: None,
                image: None,
                state: "exited".into(),
                health: None,
                status: "degraded".into(),
            }],
        }
    }

    fn commit(sha: &str) -> CommitView {
        CommitView {
            sha: sha.into(),
            short: sha.into(),
            subject: String::new(),
            author: String::new(),
            time: String::new(),
        }
    }

    #[test]
    fn overall_state_follows_its_order() {
        let a = commit("a");
        let head_b = HeadView {
            commit: commit("b"),
            fetched_at: String::new(),
        };
        let head_a = HeadView {
            commit: commit("a"),
            fetched_at: String::new(),
        };
        let degraded = [view("degraded")];
        let healthy = [StackView {
            health: "healthy".into(),
            services: vec![],
            ..view("healthy")
        }];
        let base = OverallInputs {
            reconciling: false,
            last_result: Some("success"),
            last_error: None,
            last_commit: Some(&a),
            deployed: Some(&a),
            head: Some(&head_a),
            pending: None,
            stacks: &healthy,
        };
        assert_eq!(overall(&base).0, OverallState::Synced);
        let st = |i: OverallInputs| overall(&i).0;
        assert_eq!(
            st(OverallInputs {
                reconciling: true,
                ..base
            }),
            OverallState::Progressing
        );
        assert_eq!(
            st(OverallInputs {
                last_result: None,
                ..base
            }),
            OverallState::Progressing
        );
        for r in ["invalid", "failed", "skipped", "error"] {
            assert_eq!(
                st(OverallInputs {
                    last_result: Some(r),
                    ..base
                }),
                OverallState::Failed
            );
        }
        assert_eq!(
            st(OverallInputs {
                stacks: &degraded,
                ..base
            }),
            OverallState::Degraded
        );
        assert_eq!(
            st(OverallInputs {
                head: Some(&head_b),
                ..base
            }),
            OverallState::OutOfSync
        );
        assert_eq!(
            st(OverallInputs {
                pending: Some("webhook"),
                ..base
            }),
            OverallState::OutOfSync
        );
        let (_, why) = overall(&OverallInputs {
            stacks: &degraded,
            ..base
        });
        assert!(why.contains("app (web degraded)"), "{why}");
        let (_, why) = overall(&OverallInputs {
            last_result: Some("invalid"),
            last_error: Some("compose/app/compose.yaml:3: services.web: bad\nmore"),
            ..base
        });
        assert!(why.contains("compose/app/compose.yaml:3"), "{why}");
    }

    /// The loader's own messages, not copies: a reworded error that `secrets_blocks` no longer
    /// recognises fails here instead of silently dropping the stack from `/status`.
    #[test]
    fn secrets_blocks_read_the_loaders_real_errors() {
        use crate::source::snapshot::Snapshot;
        use crate::spec::load::{load_host_spec, LoadOptions};
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path();
        std::fs::write(sd.join("present.env"), "A=1\n").unwrap();
        std::fs::write(sd.join("broken.env"), "A='s3cr3tvalue\n").unwrap();
        std::fs::create_dir(sd.join("dir.env")).unwrap();
        let web = |var: &str| {
            format!("services:\n  web:\n    image: x\n    environment:\n      V: ${{{var}}}\n")
        };
        let snap = Snapshot::from_texts(&[
            ("compose/absent/compose.yaml", &web("X")),
            ("compose/present/compose.yaml", &web("Y")),
            ("compose/broken/compose.yaml", &web("A")),
            ("compose/dir/compose.yaml", &web("A")),
            (
                "compose/noenv/compose.yaml",
                "services:\n  web:\n    image: x\n    env_file: .env\n",
            ),
            (
                "compose/other/compose.yaml",
                "services:\n  x:\n    image: x\n    bogus: 1\n",
            ),
        ]);
        let opts = LoadOptions {
            secrets_dir: Some(sd.to_path_buf()),
            bind_root: sd.join("stacks"),
            ..LoadOptions::default()
        };
        let (_, findings) = load_host_spec(&snap, &opts);
        let errors: Vec<String> = findings.errors.iter().map(|e| e.to_string()).collect();
        let blocks = secrets_blocks(&errors, sd);
        let got: Vec<(&str, &str)> = blocks
            .iter()
            .map(|b| (b.stack.as_str(), b.problem.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("absent", "missing"),
                ("broken", "invalid"),
                ("dir", "unreadable"),
                ("noenv", "missing"),
                ("present", "incomplete")
            ],
            "{errors:#?}"
        );
        assert!(
            !format!("{blocks:?}").contains("s3cr3tvalue"),
            "{blocks:#?}"
        );
        assert!(
            blocks[0].detail.contains("variable X is not set"),
            "{blocks:#?}"
        );
        assert_eq!(blocks[0].file, sd.join("absent.env").display().to_string());
    }

    /// A host file kept off Git (`env_file:` absent from the commit, under
    /// `<secrets_dir>/<stack>/`) blocks its stack on `/status` too, named by its own path.
    #[test]
    fn secrets_blocks_name_the_host_files_of_a_stack() {
        use crate::source::snapshot::Snapshot;
        use crate::spec::load::{load_host_spec, LoadOptions};
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path();
        std::fs::create_dir_all(sd.join("shelf/env/db.env")).unwrap();
        let snap = Snapshot::from_texts(&[
            (
                "compose/wiki/compose.yaml",
                "services:\n  web:\n    image: x\n    env_file: db.env\n",
            ),
            (
                "compose/shelf/compose.yaml",
                "services:\n  web:\n    image: x\n    env_file: env/db.env\n",
            ),
        ]);
        let opts = LoadOptions {
            secrets_dir: Some(sd.to_path_buf()),
            bind_root: sd.join("stacks"),
            ..LoadOptions::default()
        };
        let (_, findings) = load_host_spec(&snap, &opts);
        let errors: Vec<String> = findings.errors.iter().map(|e| e.to_string()).collect();
        let blocks = secrets_blocks(&errors, sd);
        let got: Vec<(&str, String, &str)> = blocks
            .iter()
            .map(|b| (b.stack.as_str(), b.file.clone(), b.problem.as_str()))
            .collect();
        let path = |p: &str| sd.join(p).display().to_string();
        assert_eq!(
            got,
            [
                ("shelf", path("shelf/env/db.env"), "unreadable"),
                ("wiki", path("wiki/db.env"), "missing"),
            ],
            "{errors:#?}"
        );
    }

    /// Error text may quote the repo: a path under the secrets dir that is not a stack's own
    /// (`..`, an absolute escape) never becomes a file the status looks at.
    #[test]
    fn secrets_blocks_ignore_paths_that_leave_a_stack_folder() {
        let sd = std::path::Path::new("/etc/gitmoor/secrets");
        let errors = vec![
            "compose/a/compose.yaml:3: services.x.volumes[0]: /etc/gitmoor/secrets/../../etc/shadow is outside".to_string(),
            "compose/a/compose.yaml:4: services.x.env_file: /etc/gitmoor/secrets/a/../../b/c.env".to_string(),
        ];
        assert!(secrets_blocks(&errors, sd).is_empty());
    }

    #[test]
    fn certificates_show_days_left_and_are_flagged_below_the_warning() {
        let now = 1_000_000_000;
        let expiry: BTreeMap<String, i64> = [
            ("api.example.fr".to_string(), now + 60 * 86_400),
            ("old.example.fr".to_string(), now + 10 * 86_400 + 5),
        ]
        .into();
        let v = cert_views(&expiry, now, 14);
        assert_eq!((v[0].days_left, v[0].expiring_soon), (60, false));
        assert_eq!((v[1].days_left, v[1].expiring_soon), (10, true));
        assert_eq!(v[0].not_after, rfc3339(now + 60 * 86_400));
    }
}
