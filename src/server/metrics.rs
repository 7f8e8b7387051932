//! `/metrics` in the Prometheus text format (0.0.4). Labels carry names, shas, states and
//! results: never a value from a secrets file.

use crate::state::ReconcileResult;
use crate::status::doc::{parse_time, StatusDoc};
use crate::status::{Counters, DURATION_BUCKETS};
use std::collections::BTreeMap;
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

pub fn render(d: &StatusDoc, c: &Counters) -> String {
    let mut o = String::with_capacity(4096);

    head(
        &mut o,
        "gitmoor_up",
        "gauge",
        "1 while the daemon loop is healthy (what /health says).",
    );
    let _ = writeln!(o, "gitmoor_up {}", u8::from(d.health.ok));

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
            u8::from(d.state.as_str() == s)
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
    let _ = writeln!(
        o,
        "gitmoor_reconciling {}",
        u8::from(d.reconciling.is_some())
    );

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
    if let Some(dc) = &d.deployed {
        let _ = writeln!(
            o,
            "gitmoor_deployed_commit_info{{sha=\"{}\",short=\"{}\",branch=\"{}\"}} 1",
            label(&dc.sha),
            label(&dc.short),
            label(&d.branch)
        );
    }
    head(
        &mut o,
        "gitmoor_deployed_commit_timestamp_seconds",
        "gauge",
        "Commit time of the deployed commit.",
    );
    if let Some(t) = d.deployed.as_ref().and_then(|c| parse_time(&c.time)) {
        let _ = writeln!(o, "gitmoor_deployed_commit_timestamp_seconds {t}");
    }

    head(
        &mut o,
        "gitmoor_containers",
        "gauge",
        "gitmoor's containers at the last reconcile, by state and health (none: no healthcheck).",
    );
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in &d.stacks {
        for v in s.services.iter().filter(|v| v.container.is_some()) {
            *by.entry((
                v.state.clone(),
                v.health.clone().unwrap_or_else(|| "none".into()),
            ))
            .or_default() += 1;
        }
    }
    for ((state, health), n) in &by {
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
    for s in &d.stacks {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for v in &s.services {
            *counts.entry(v.status.as_str()).or_default() += 1;
        }
        for (status, n) in counts {
            let _ = writeln!(
                o,
                "gitmoor_services{{stack=\"{}\",status=\"{}\"}} {n}",
                label(&s.name),
                label(status)
            );
        }
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
    let _ = writeln!(
        o,
        "gitmoor_secrets_blocked_stacks {}",
        d.secrets.blocked.len()
    );

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

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
