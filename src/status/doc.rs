//! The `/status` document (schema in `docs/status.md`). Serialized by the server, read back by
//! `gitmoor status`. It carries names, shas, states, reasons and errors: never a secret value
//! (errors from the spec never quote one; URLs lose their user info).

use crate::plan::render::ActionView;
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub schema: u32,
    pub generated_at: String,
    pub state: OverallState,
    /// One sentence saying why the state is what it is.
    pub state_reason: String,
    /// What `/health` answers right now.
    pub health: HealthView,
    pub repo: String,
    pub branch: String,
    pub instance: String,
    pub poll: String,
    /// The last commit applied without error to every stack.
    pub deployed: Option<CommitView>,
    /// The branch head seen at the last successful fetch.
    pub branch_head: Option<HeadView>,
    /// The reconcile running now, if any.
    pub reconciling: Option<RunningView>,
    /// A webhook or a secrets edit asked for a reconcile that has not started yet.
    pub pending: Option<String>,
    pub last_reconcile: Option<ReconcileView>,
    /// Every unit the state file records (each stack today), with its kind and last outcome.
    #[serde(default)]
    pub units: Vec<UnitView>,
    /// The stacks with their services (the detail of the stack units).
    pub stacks: Vec<StackView>,
    /// The Let's Encrypt certificates of the sites, with when they expire.
    #[serde(default)]
    pub certificates: Vec<CertView>,
    /// What is reachable from outside (UFW and the published container ports), as the last
    /// reconcile of a repo with `ufw/` saw it; None before that.
    #[serde(default)]
    pub firewall: Option<super::firewall::FirewallView>,
    /// When the containers below were listed (the end of the last reconcile).
    pub observed_at: Option<String>,
    pub secrets: SecretsView,
    /// Newest first.
    pub history: Vec<HistoryView>,
    pub next_poll: Option<String>,
    pub fetch: FetchView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallState {
    /// The branch head runs and every service is up.
    Synced,
    /// A reconcile runs now, none has finished yet, or a container is still starting.
    Progressing,
    /// The host does not match the branch head yet, with nothing failing (a change was announced
    /// and is about to be fetched, or a container is left that the repo no longer has).
    OutOfSync,
    /// The branch head is deployed but a service is not running or not healthy.
    Degraded,
    /// The last reconcile did not deploy the branch head (bad input, a failed action, an
    /// unreachable remote or dockerd); the host keeps the last applied state.
    Failed,
}

impl OverallState {
    pub fn as_str(self) -> &'static str {
        match self {
            OverallState::Synced => "synced",
            OverallState::Progressing => "progressing",
            OverallState::OutOfSync => "out_of_sync",
            OverallState::Degraded => "degraded",
            OverallState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub ok: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitView {
    pub sha: String,
    pub short: String,
    pub subject: String,
    pub author: String,
    /// Commit time, RFC 3339 UTC.
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadView {
    #[serde(flatten)]
    pub commit: CommitView,
    pub fetched_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningView {
    pub started_at: String,
    pub running_secs: u64,
    /// What asked for it: `start`, `poll`, `webhook`, `secrets` (several joined by `+`).
    pub trigger: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileView {
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub trigger: String,
    /// `success`, `noop`, `invalid`, `failed`, `skipped` or `error`.
    pub result: String,
    /// The commit it worked on (None when the fetch failed).
    pub commit: Option<CommitView>,
    /// The plan's actions, each with its reasons.
    pub actions: Vec<ActionView>,
    /// The whole error, one problem per line, each naming its file.
    pub error: Option<String>,
    /// The spec's errors, structured.
    pub errors: Vec<ProblemView>,
    pub warnings: Vec<ProblemView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemView {
    pub file: String,
    pub line: Option<u64>,
    pub key: Option<String>,
    pub message: String,
    pub fix: Option<String>,
}

/// A site's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    /// The lineage: the site's first server name.
    pub name: String,
    pub not_after: String,
    pub days_left: i64,
    /// Fewer days left than `letsencrypt.warn_days` (14): renewal has not happened.
    pub expiring_soon: bool,
}

/// One unit's last apply, as the state file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitView {
    /// `stack` (later `nginx`, `firewall`).
    pub kind: String,
    pub name: String,
    /// `success` or `failed` (a unit held back because one it follows failed is `failed`, and
    /// its error says so).
    pub result: String,
    pub last_good_commit: Option<String>,
    pub error: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackView {
    pub name: String,
    /// `healthy`, `progressing`, `degraded` or `out_of_sync`.
    pub health: String,
    /// The stack's last apply: `success` or `failed`.
    pub result: Option<String>,
    pub last_good_commit: Option<String>,
    pub error: Option<String>,
    /// Set when its secrets file blocks the deploy.
    pub secrets_blocked: Option<SecretBlock>,
    pub services: Vec<ServiceView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    /// `<stack>-<service>-1`, or None when it has no container.
    pub container: Option<String>,
    pub image: Option<String>,
    /// Docker's state: `running`, `exited`, `restarting`, `created`, … or `missing`.
    pub state: String,
    /// Docker's health: `healthy`, `unhealthy`, `starting`, or None without a healthcheck.
    pub health: Option<String>,
    /// gitmoor's verdict: `ok`, `starting`, `completed` (a one-shot service that exited),
    /// `degraded`, `missing` or `not_in_repo`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsView {
    pub dir: String,
    /// Stacks whose secrets file blocks the deploy.
    pub blocked: Vec<SecretBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBlock {
    pub stack: String,
    pub file: String,
    /// `missing`, `unreadable`, `invalid` (syntax, UTF-8) or `incomplete` (a variable is not set).
    pub problem: String,
    /// The errors about it, one per line (they name variables, never values).
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub commit: CommitView,
    pub started_at: String,
    pub duration_ms: u64,
    /// `success`, `noop`, `invalid` or `failed`.
    pub result: String,
    pub actions: Vec<ActionView>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchView {
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub failures_total: u64,
}

/// Unix seconds as RFC 3339 UTC (`2025-05-01T12:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// RFC 3339 back to unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

/// "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago" (or "in 5 min" for the future).
pub fn ago(unix: i64, now: i64) -> String {
    let d = now - unix;
    let (n, future) = if d < 0 { (-d, true) } else { (d, false) };
    let amount = match n {
        0..=2 => return "just now".into(),
        3..=59 => format!("{n} s"),
        60..=5399 => format!("{} min", (n + 30) / 60),
        5400..=172_799 => format!("{} h", (n + 1800) / 3600),
        _ => format!("{} d", (n + 43_200) / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// Hides the user info of every URL in `s` (`https://user:token@host` → `https://***@host`).
pub fn redact_userinfo(s: &str) -> String {
    crate::source::remote_url::redact_urls_in(s)
}

/// A document with `evil` in every string a repo, a forge or a host can put there (tests of
/// the renderers: escaping, no leaks).
#[cfg(test)]
pub fn sample(evil: &str) -> StatusDoc {
    use crate::plan::render::ActionView;
    let commit = CommitView {
        sha: format!("abc{evil}"),
        short: format!("abc{evil}"),
        subject: evil.into(),
        author: evil.into(),
        time: "2025-05-01T12:00:00Z".into(),
    };
    let action = ActionView {
        stack: evil.into(),
        action: "recreate".into(),
        target: evil.into(),
        reasons: vec![evil.into()],
    };
    let block = SecretBlock {
        stack: evil.into(),
        file: evil.into(),
        problem: "missing".into(),
        detail: evil.into(),
    };
    StatusDoc {
        schema: SCHEMA,
        generated_at: "2025-05-01T12:00:07Z".into(),
        state: OverallState::Failed,
        state_reason: evil.into(),
        health: HealthView {
            ok: false,
            reason: Some(evil.into()),
        },
        repo: evil.into(),
        branch: evil.into(),
        instance: evil.into(),
        poll: evil.into(),
        deployed: Some(commit.clone()),
        branch_head: Some(HeadView {
            commit: CommitView {
                sha: "other".into(),
                ..commit.clone()
            },
            fetched_at: "2025-05-01T12:00:00Z".into(),
        }),
        reconciling: Some(RunningView {
            started_at: "2025-05-01T12:00:00Z".into(),
            running_secs: 3,
            trigger: evil.into(),
        }),
        pending: Some(evil.into()),
        last_reconcile: Some(ReconcileView {
            started_at: "2025-05-01T12:00:00Z".into(),
            finished_at: "2025-05-01T12:00:01Z".into(),
            duration_ms: 1200,
            trigger: evil.into(),
            result: "invalid".into(),
            commit: Some(commit.clone()),
            actions: vec![action.clone()],
            error: Some(evil.into()),
            errors: vec![],
            warnings: vec![],
        }),
        certificates: vec![CertView {
            name: evil.into(),
            not_after: "2025-05-10T00:00:00Z".into(),
            days_left: 8,
            expiring_soon: true,
        }],
        firewall: Some(super::firewall::FirewallView {
            observed_at: "2025-05-01T12:00:01Z".into(),
            ufw_active: true,
            default_incoming: Some(evil.into()),
            docker_guard: evil.into(),
            docker_guard_active: false,
            docker_guard_not_in_force: vec![],
            docker_guard_notes: vec![],
            open: vec![super::firewall::OpenRuleView {
                port: evil.into(),
                from: evil.into(),
                to: evil.into(),
                ipv6: false,
                action: "allow".into(),
                managed: false,
            }],
            published: vec![super::firewall::PublishedView {
                container: evil.into(),
                address: evil.into(),
                port: 8080,
                proto: evil.into(),
                reachable_from: vec![evil.into()],
                covered: false,
                note: evil.into(),
            }],
            unmanaged: vec![evil.into()],
        }),
        units: vec![UnitView {
            kind: "stack".into(),
            name: evil.into(),
            result: "failed".into(),
            last_good_commit: Some(evil.into()),
            error: Some(evil.into()),
            updated_at: "2025-05-01T12:00:00Z".into(),
        }],
        stacks: vec![StackView {
            name: evil.into(),
            health: "degraded".into(),
            result: Some("failed".into()),
            last_good_commit: Some(evil.into()),
            error: Some(evil.into()),
            secrets_blocked: Some(block.clone()),
            services: vec![ServiceView {
                name: evil.into(),
                container: Some(evil.into()),
                image: Some(evil.into()),
                state: evil.into(),
                health: Some(evil.into()),
                status: "degraded".into(),
            }],
        }],
        observed_at: Some("2025-05-01T12:00:01Z".into()),
        secrets: SecretsView {
            dir: evil.into(),
            blocked: vec![block],
        },
        history: vec![HistoryView {
            commit,
            started_at: "2025-05-01T11:00:00Z".into(),
            duration_ms: 900,
            result: "failed".into(),
            actions: vec![action],
            error: Some(evil.into()),
        }],
        next_poll: Some("2025-05-01T12:01:00Z".into()),
        fetch: FetchView {
            last_success_at: None,
            last_error: Some(evil.into()),
            consecutive_failures: 2,
            failures_total: 2,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_read_as_ages() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time(&rfc3339(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(ago(100, 101), "just now");
        assert_eq!(ago(100, 142), "42 s ago");
        assert_eq!(ago(0, 300), "5 min ago");
        assert_eq!(ago(0, 3 * 3600), "3 h ago");
        assert_eq!(ago(0, 3 * 86_400), "3 d ago");
        assert_eq!(ago(600, 300), "in 5 min");
    }

    #[test]
    fn user_info_never_survives_in_a_url() {
        assert_eq!(
            redact_userinfo("fetch https://bot:ghp_abc@github.com/a/b.git failed"),
            "fetch https://***@github.com/a/b.git failed"
        );
        assert_eq!(
            redact_userinfo("ssh://git@host:22/x and file:///srv/x"),
            "ssh://***@host:22/x and file:///srv/x"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
        assert_eq!(redact_userinfo("git@github.com:a/b"), "git@github.com:a/b");
    }

    #[test]
    fn the_document_round_trips_through_json() {
        let d = sample("x");
        let back: StatusDoc = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn overall_states_serialize_in_snake_case() {
        let v = serde_json::to_string(&OverallState::OutOfSync).unwrap();
        assert_eq!(v, "\"out_of_sync\"");
        assert_eq!(OverallState::OutOfSync.as_str(), "out_of_sync");
    }
}
