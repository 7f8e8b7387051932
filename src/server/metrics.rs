//! `/metrics` in the Prometheus text format (0.0.4). Labels carry names, shas, states and
//! results: never a value from a secrets file.

use crate::state::ReconcileResult;
use crate::status::doc::{parse_time, StatusDoc};
use crate::status::{Counters, MetricView, DURATION_BUCKETS};
use std::fmt::Write;

/// Escapes a label value (backslash, double quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `/metrics` from a whole `/status` document. A scrape should rather use
/// `render_view(&hub.metric_view())`, which copies far less; both print the same bytes.
pub fn render(d: &StatusDoc, c: &Counters) -> String {
    render_view(&MetricView::from_doc(d, c))
}

pub fn render_view(v: &MetricView) -> String {
    let c = &v.counters;
    let mut o = String::with_capacity(4096);

    head(
        &mut o,
        "gitmoor_up",
        "gauge",
        "1 while the daemon loop is healthy (what /health says).",
    );
    let _ = writeln!(o, "gitmoor_up {}", u8::from(v.up));

    head(
        &mut o,
        "gitmoor_state",
        "gauge",
        "The overall state: 1 for the current one.",
    );
    for s in ["synced", "progressing", "out_of_sync", "degraded", "failed"] {
        let _ = writeln!(
            o,
            "gitmoor_state{{state=\"{s}\"}} {}",
            u8::from(v.state.as_str() == s)
        );
    }

    head(
        &mut o,
        "gitmoor_reconciles_total",
        "counter",
        "Reconciles since start, by result (success, noop, invalid, failed, skipped, error).",
    );
    for r in ReconcileResult::ALL {
        let n = c.reconciles.get(r.as_str()).copied().unwrap_or(0);
        let _ = writeln!(o, "gitmoor_reconciles_total{{result=\"{r}\"}} {n}");
    }

    head(
        &mut o,
        "gitmoor_reconcile_duration_seconds",
        "histogram",
        "How long reconciles take, fetch included.",
    );
    for (i, le) in DURATION_BUCKETS.iter().enumerate() {
        let n = c.duration_buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "gitmoor_reconcile_duration_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        o,
        "gitmoor_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}\ngitmoor_reconcile_duration_seconds_sum {}\ngitmoor_reconcile_duration_seconds_count {}",
        c.duration_count, c.duration_sum, c.duration_count
    );

    head(
        &mut o,
        "gitmoor_reconciling",
        "gauge",
        "1 while a reconcile runs.",
    );
    let _ = writeln!(o, "gitmoor_reconciling {}", u8::from(v.reconciling));

    head(
        &mut o,
        "gitmoor_last_success_timestamp_seconds",
        "gauge",
        "When a reconcile last left the host matching the branch head (success or no-op).",
    );
    let _ = writeln!(
        o,
        "gitmoor_last_success_timestamp_seconds {}",
        c.last_success.unwrap_or(0)
    );

    head(
        &mut o,
        "gitmoor_deployed_commit_info",
        "gauge",
        "The deployed commit (always 1).",
    );
    if let Some(dc) = &v.deployed {
        let _ = writeln!(
            o,
            "gitmoor_deployed_commit_info{{sha=\"{}\",short=\"{}\",branch=\"{}\"}} 1",
            label(&dc.sha),
            label(&dc.short),
            label(&v.branch)
        );
    }
    head(
        &mut o,
        "gitmoor_deployed_commit_timestamp_seconds",
        "gauge",
        "Commit time of the deployed commit.",
    );
    if let Some(t) = v.deployed.as_ref().and_then(|c| parse_time(&c.time)) {
        let _ = writeln!(o, "gitmoor_deployed_commit_timestamp_seconds {t}");
    }

    head(
        &mut o,
        "gitmoor_containers",
        "gauge",
        "gitmoor's containers at the last reconcile, by state and health (none: no healthcheck).",
    );
    for ((state, health), n) in &v.containers {
        let _ = writeln!(
            o,
            "gitmoor_containers{{state=\"{}\",health=\"{}\"}} {n}",
            label(state),
            label(health)
        );
    }

    head(
        &mut o,
        "gitmoor_services",
        "gauge",
        "Services by stack and gitmoor's verdict (ok, starting, completed, degraded, missing, not_in_repo).",
    );
    for (stack, counts) in &v.services {
        for (status, n) in counts {
            let _ = writeln!(
                o,
                "gitmoor_services{{stack=\"{}\",status=\"{}\"}} {n}",
                label(stack),
                label(status)
            );
        }
    }

    head(
        &mut o,
        "gitmoor_certificate_expiry_timestamp_seconds",
        "gauge",
        "When each site's Let's Encrypt certificate expires, by lineage (the first server name).",
    );
    for (name, t) in &v.certificates {
        let _ = writeln!(
            o,
            "gitmoor_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {t}",
            label(name)
        );
    }

    head(
        &mut o,
        "gitmoor_unit_failed",
        "gauge",
        "1 when the unit's last apply failed or was held back, by kind (stack) and name.",
    );
    for (kind, name, failed) in &v.units {
        let _ = writeln!(
            o,
            "gitmoor_unit_failed{{kind=\"{}\",name=\"{}\"}} {}",
            label(kind),
            label(name),
            u8::from(*failed)
        );
    }

    head(
        &mut o,
        "gitmoor_fetch_failures_total",
        "counter",
        "Failed fetches of the branch since start.",
    );
    let _ = writeln!(o, "gitmoor_fetch_failures_total {}", c.fetch_failures);

    head(
        &mut o,
        "gitmoor_secrets_blocked_stacks",
        "gauge",
        "Stacks whose secrets file blocks the deploy.",
    );
    let _ = writeln!(o, "gitmoor_secrets_blocked_stacks {}", v.secrets_blocked);

    head(
        &mut o,
        "gitmoor_secrets_changes_total",
        "counter",
        "Changes seen in the secrets dir (debounced).",
    );
    let _ = writeln!(o, "gitmoor_secrets_changes_total {}", c.secrets_changes);

    head(
        &mut o,
        "gitmoor_webhook_deliveries_total",
        "counter",
        "Webhook deliveries by provider and outcome (accepted, ping, ignored, unauthorized, bad_request).",
    );
    for ((p, outcome), n) in &c.webhooks {
        let _ = writeln!(
            o,
            "gitmoor_webhook_deliveries_total{{provider=\"{}\",outcome=\"{}\"}} {n}",
            label(p),
            label(outcome)
        );
    }

    head(&mut o, "gitmoor_build_info", "gauge", "gitmoor's version.");
    let _ = writeln!(
        o,
        "gitmoor_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::UnitId;
    use crate::status::doc::sample;

    #[test]
    fn every_line_is_a_comment_or_a_well_formed_sample() {
        let body = render(&sample("a\"b\\c\nd"), &Counters::default());
        for line in body.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("gitmoor_"), "{line}");
            // Quotes inside label values are escaped: they pair up.
            let unescaped = name.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
        assert!(body.contains("gitmoor_state{state=\"failed\"} 1"));
        assert!(body.contains("gitmoor_up 0"));
        assert!(body.contains("gitmoor_reconcile_duration_seconds_bucket{le=\"+Inf\"} 0"));
    }

    /// A scrape through the hub's small view prints exactly what the whole document did.
    #[test]
    fn the_hub_view_prints_what_the_document_prints() {
        use crate::config::Config;
        use crate::observe::{Observed, ObservedContainer};
        use crate::source::git::CommitInfo;
        use crate::spec::error::{Findings, SpecError};
        use crate::state::{Attempt, CommitRef, State};
        use crate::status::desired::DesiredService;
        use crate::status::{Finished, StatusHub};
        use std::collections::BTreeMap;
        use std::time::Duration;

        let secrets = tempfile::tempdir().unwrap();
        let cfg = Config::parse(
            &format!(
                "repo: https://bot:tok3n@example.org/x.git\nbranch: ma\"in\nsecrets_dir: {}\n",
                secrets.path().display()
            ),
            std::path::Path::new("/c.yaml"),
        )
        .unwrap();
        let h = StatusHub::new(&cfg);
        let same = |h: &StatusHub| {
            let whole = render(&h.doc(), &h.counters());
            assert_eq!(render_view(&h.metric_view()), whole);
            whole
        };
        same(&h);

        let commit = CommitInfo {
            sha: "0123456789abcdef".into(),
            subject: "s".into(),
            author: "a <a@b>".into(),
            time: 1_746_100_000,
        };
        let mut state = State::default();
        let mut ok = BTreeMap::new();
        ok.insert(UnitId::Stack("api".into()), Ok(()));
        ok.insert(UnitId::Stack("web".into()), Err("boom".to_string()));
        state.record(
            Attempt {
                commit: CommitRef {
                    sha: commit.sha.clone(),
                    subject: commit.subject.clone(),
                    author: commit.author.clone(),
                    time: commit.time,
                },
                inputs: "i".into(),
                started: 1_746_100_001,
                duration_ms: 1500,
                result: crate::state::ReconcileResult::Success,
                actions: vec![],
                error: None,
                failures: 0,
            },
            &ok,
        );
        h.load_state(&state);
        same(&h);

        let svc = |name: &str, one_shot| DesiredService {
            name: name.into(),
            image: "img:1".into(),
            one_shot,
        };
        let desired = BTreeMap::from([
            (
                "api".to_string(),
                vec![svc("backend", false), svc("db", false)],
            ),
            (
                "web".to_string(),
                vec![svc("nginx", false), svc("migrate", true)],
            ),
            ("gone".to_string(), vec![svc("x", false)]),
        ]);
        let container =
            |stack: &str, service: &str, state: &str, health: Option<&str>| ObservedContainer {
                id: format!("{stack}{service}"),
                name: format!("{stack}-{service}-1"),
                stack: stack.into(),
                service: service.into(),
                image: "img:1".into(),
                image_id: "sha256:1".into(),
                state: state.into(),
                health: health.map(Into::into),
                labels: BTreeMap::new(),
                joins_network: None,
                joins_pid: None,
                joins_ipc: None,
            };
        let observed = Observed {
            containers: vec![
                container("api", "backend", "running", Some("healthy")),
                container("api", "db", "running", None),
                container("web", "nginx", "running", Some("starting")),
                container("web", "migrate", "exited", None),
                container("old", "w\"x", "exited", None),
            ],
            ..Observed::default()
        };
        let secrets_file = secrets.path().join("gone.env");
        let findings = Findings {
            errors: vec![SpecError {
                file: "compose/gone/compose.yaml".into(),
                line: Some(3),
                key: None,
                message: format!(
                    "variable X is not set; add X=... to {}",
                    secrets_file.display()
                ),
                fix: None,
            }],
            warnings: vec![],
        };
        h.begin("webhook");
        same(&h);
        h.fetched(&commit);
        h.count_webhook("github", "accepted");
        h.count_webhook("gitlab", "unauthorized");
        h.count_secrets_change();
        h.finish(Finished {
            started_at: 1_746_100_100,
            duration: Duration::from_millis(2300),
            trigger: "webhook",
            result: crate::state::ReconcileResult::Invalid,
            commit: Some(&commit),
            actions: vec![],
            error: Some("bad".into()),
            findings: Some(&findings),
            desired: Some(desired),
            observed: Some(&observed),
            state: Some(state),
        });
        h.fetch_failed("timeout");
        h.set_pending("secrets");
        let body = same(&h);
        // The view is not empty: every family with labels shows up.
        for line in [
            "gitmoor_state{state=\"failed\"} 1",
            "gitmoor_reconciles_total{result=\"invalid\"} 1",
            "gitmoor_deployed_commit_info{sha=\"0123456789abcdef\",short=\"0123456789\",branch=\"ma\\\"in\"} 1",
            "gitmoor_deployed_commit_timestamp_seconds 1746100000",
            "gitmoor_containers{state=\"exited\",health=\"none\"} 2",
            "gitmoor_services{stack=\"web\",status=\"starting\"} 1",
            "gitmoor_services{stack=\"gone\",status=\"missing\"} 1",
            "gitmoor_services{stack=\"old\",status=\"not_in_repo\"} 1",
            "gitmoor_secrets_blocked_stacks 1",
            "gitmoor_webhook_deliveries_total{provider=\"gitlab\",outcome=\"unauthorized\"} 1",
        ] {
            assert!(body.contains(line), "{line}\n{body}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn certificates_expiry_is_a_timestamp_by_lineage() {
        let body = render(&sample("api.example.fr"), &Counters::default());
        assert!(
            body.contains(
                "gitmoor_certificate_expiry_timestamp_seconds{name=\"api.example.fr\"} 1746835200"
            ),
            "{body}"
        );
    }
}
