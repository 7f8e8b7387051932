//! Per-name backoff for certbot. Let's Encrypt allows 5 failed validations per account, DNS
//! name and hour; past that every request naming it is refused for the rest of the hour, even
//! once the DNS or the firewall is fixed. The reconcile retries a failing site on every run
//! (the daemon's own backoff lets about six an hour through), so the failures are counted per
//! DNS name in the state file, as Let's Encrypt counts them: a commit that adds `www` to the
//! site, or renames its file, still names `api.example.fr` and is still held. After 3 failures
//! of one of its names within an hour a request waits until the oldest of them is an hour old:
//! two of Let's Encrypt's five stay for a manual `certbot` run. A success clears nothing (Let's
//! Encrypt does not forget the failures either). Pure: the times come in.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The window Let's Encrypt counts failed validations in.
pub const WINDOW_SECS: i64 = 3600;
/// Failures within the window after which the plan stops asking (Let's Encrypt's limit is 5).
pub const MAX_FAILURES: usize = 3;

/// certbot's failed runs within the last hour by DNS name: Unix seconds, oldest first.
pub type NameFailures = BTreeMap<String, Vec<i64>>;

/// A site's failed runs as state files before per-name counting kept them (`cert_failures`,
/// by site): read once and counted for each of its names (`from_legacy`), never written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFailures {
    /// The site's server names at the time.
    pub names: Vec<String>,
    /// Unix seconds of each failed run, oldest first.
    pub at: Vec<i64>,
}

/// The per-name count of older state files' per-site records.
pub fn from_legacy<'a>(old: impl IntoIterator<Item = &'a CertFailures>) -> NameFailures {
    let mut out = NameFailures::new();
    for f in old {
        for n in &f.names {
            let at = out.entry(n.clone()).or_default();
            at.extend(f.at.iter().copied());
            at.sort_unstable();
            at.dedup();
        }
    }
    out
}

/// Notes a certbot run for `names` at `now`: a failure counts for every name it asked for (the
/// ACME server may have failed any of them); then failures older than the window are dropped.
pub fn note_run(failures: &mut NameFailures, names: &[String], failed: bool, now: i64) {
    if failed {
        for n in names {
            let at = failures.entry(n.clone()).or_default();
            at.push(now);
            at.sort_unstable();
        }
    }
    prune(failures, now);
}

/// Drops the failures older than the window, and the names left with none.
pub fn prune(failures: &mut NameFailures, now: i64) {
    for at in failures.values_mut() {
        at.retain(|t| now - t < WINDOW_SECS);
    }
    failures.retain(|_, at| !at.is_empty());
}

/// Why a certificate request for `names` waits at `now`: one of them failed `MAX_FAILURES`
/// times within the hour. None when certbot may run.
pub fn held(failures: &NameFailures, names: &[String], now: i64) -> Option<String> {
    // For each name past the limit: its count and when it falls below it again.
    let mut over: Vec<(&str, usize, i64)> = Vec::new();
    for n in names {
        let Some(at) = failures.get(n) else { continue };
        let mut recent: Vec<i64> = at
            .iter()
            .copied()
            .filter(|t| now - t < WINDOW_SECS && *t <= now)
            .collect();
        if recent.len() < MAX_FAILURES {
            continue;
        }
        recent.sort_unstable();
        // Asking again is fine once fewer than MAX_FAILURES remain in the window: when the
        // failure that leaves it is an hour old.
        over.push((
            n,
            recent.len(),
            recent[recent.len() - MAX_FAILURES] + WINDOW_SECS,
        ));
    }
    let leaves = over.iter().map(|o| o.2).max()?;
    let count = over.iter().map(|o| o.1).max().unwrap_or(MAX_FAILURES);
    // Rounded up to the minute that is shown.
    let next = (leaves + 59) / 60 * 60;
    let when = chrono::DateTime::from_timestamp(next, 0)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_else(|| format!("unix time {next}"));
    let which: Vec<&str> = over.iter().map(|o| o.0).collect();
    Some(format!(
        "certbot failed {count} times for {} in the last hour; next try after {when} (Let's \
         Encrypt allows 5 failures per name per hour)",
        which.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// 10:00:00 UTC on 2024-05-01.
    const TEN: i64 = 1_714_557_600;

    fn failed_at(n: &[String], times: &[i64]) -> NameFailures {
        let mut f = NameFailures::new();
        for t in times {
            note_run(&mut f, n, true, *t);
        }
        f
    }

    #[test]
    fn three_failures_within_the_hour_hold_the_request_until_the_oldest_is_an_hour_old() {
        let api = names(&["api.example.fr"]);
        let f = failed_at(&api, &[TEN, TEN + 600, TEN + 1_320]);
        // Two failures: certbot may run again.
        let two = failed_at(&api, &[TEN, TEN + 600]);
        assert_eq!(held(&two, &api, TEN + 700), None);
        // Three: held, saying when the next try is (the first failure an hour old, 11:00).
        assert_eq!(
            held(&f, &api, TEN + 1_400).as_deref(),
            Some(
                "certbot failed 3 times for api.example.fr in the last hour; next try after \
                 11:00 UTC (Let's Encrypt allows 5 failures per name per hour)"
            )
        );
        // Still held a second before; free at 11:00, when one failure left the window.
        assert!(held(&f, &api, TEN + 3_599).is_some());
        assert_eq!(held(&f, &api, TEN + 3_600), None);
    }

    #[test]
    fn the_time_shown_is_rounded_up_to_the_minute() {
        let api = names(&["api.example.fr"]);
        let f = failed_at(&api, &[TEN + 2_530, TEN + 2_540, TEN + 2_550]);
        let why = held(&f, &api, TEN + 2_600).unwrap();
        // 10:42:10 + 1 h = 11:42:10, shown as 11:43.
        assert!(why.contains("next try after 11:43 UTC"), "{why}");
    }

    #[test]
    fn the_count_is_per_dns_name_whatever_the_other_names_of_the_request() {
        let api = names(&["api.example.fr"]);
        let f = failed_at(&api, &[TEN, TEN + 60, TEN + 120]);
        // A commit that adds a name still asks for api.example.fr: held, naming it.
        let both = names(&["api.example.fr", "www.example.fr"]);
        let why = held(&f, &both, TEN + 180).unwrap();
        assert!(why.contains("3 times for api.example.fr in"), "{why}");
        // Names with no failure of their own are free.
        assert_eq!(held(&f, &names(&["www.example.fr"]), TEN + 180), None);
        // A failure counts for every name of the request.
        let mut g = f.clone();
        note_run(&mut g, &both, true, TEN + 200);
        assert_eq!(g["api.example.fr"], [TEN, TEN + 60, TEN + 120, TEN + 200]);
        assert_eq!(g["www.example.fr"], [TEN + 200]);
        // A success clears nothing: Let's Encrypt still counts the failures of the hour.
        let mut s = f.clone();
        note_run(&mut s, &api, false, TEN + 200);
        assert_eq!(s, f);
        // Failures older than an hour are dropped as runs come in.
        let mut later = f.clone();
        note_run(&mut later, &api, true, TEN + 3_610);
        assert_eq!(later["api.example.fr"], [TEN + 60, TEN + 120, TEN + 3_610]);
        prune(&mut later, TEN + 3_610 + WINDOW_SECS);
        assert!(later.is_empty());
        // No record: nothing held.
        assert_eq!(held(&NameFailures::new(), &api, TEN), None);
    }

    #[test]
    fn an_older_state_files_per_site_records_count_for_each_of_their_names() {
        let old = [
            CertFailures {
                names: names(&["api.example.fr", "www.example.fr"]),
                at: vec![TEN, TEN + 60],
            },
            CertFailures {
                names: names(&["api.example.fr"]),
                at: vec![TEN + 120],
            },
        ];
        let f = from_legacy(&old);
        assert_eq!(f["api.example.fr"], [TEN, TEN + 60, TEN + 120]);
        assert_eq!(f["www.example.fr"], [TEN, TEN + 60]);
        assert!(held(&f, &names(&["api.example.fr"]), TEN + 180).is_some());
    }
}
