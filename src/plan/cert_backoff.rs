//! Per-name backoff for certbot. Let's Encrypt allows 5 failed validations per account, name and
//! hour; past that every request for the name is refused for the rest of the hour, even once
//! the DNS or the firewall is fixed. The reconcile retries a failing site on every run (the
//! daemon's own backoff lets about six an hour through), so the failures are counted per site
//! in the state file, and after 3 within an hour the plan holds the site's certificate request
//! until the oldest of them is an hour old: two of Let's Encrypt's five stay for a manual
//! `certbot` run, or a renewal of another lineage with the same name. Pure: the times come in.

use serde::{Deserialize, Serialize};

/// The window Let's Encrypt counts failed validations in.
pub const WINDOW_SECS: i64 = 3600;
/// Failures within the window after which the plan stops asking (Let's Encrypt's limit is 5).
pub const MAX_FAILURES: usize = 3;

/// A site's failed certbot runs within the last hour, for the names it had then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFailures {
    /// The site's server names at the time (the first is the lineage's). A commit that changes
    /// them asks for another certificate: the count starts again.
    pub names: Vec<String>,
    /// Unix seconds of each failed run, oldest first.
    pub at: Vec<i64>,
}

impl CertFailures {
    /// The record after a certbot run for `names` at `now`: a failure is added (to a fresh record
    /// when the names changed), a success clears it. Runs older than the window are dropped.
    pub fn after_run(
        prev: Option<&CertFailures>,
        names: &[String],
        failed: bool,
        now: i64,
    ) -> Option<CertFailures> {
        if !failed {
            return None;
        }
        let mut at: Vec<i64> = prev
            .filter(|p| p.names == names)
            .map(|p| p.at.clone())
            .unwrap_or_default();
        at.push(now);
        at.retain(|t| now - t < WINDOW_SECS);
        at.sort_unstable();
        Some(CertFailures {
            names: names.to_vec(),
            at,
        })
    }

    /// Still worth keeping at `now` (a failure within the window).
    pub fn is_current(&self, now: i64) -> bool {
        self.at.iter().any(|t| now - t < WINDOW_SECS)
    }
}

/// Why a certificate request for `names` waits at `now`, given the site's recorded failures;
/// None when certbot may run.
pub fn held(failures: Option<&CertFailures>, names: &[String], now: i64) -> Option<String> {
    let f = failures.filter(|f| f.names == names)?;
    let mut recent: Vec<i64> =
        f.at.iter()
            .copied()
            .filter(|t| now - t < WINDOW_SECS && *t <= now)
            .collect();
    if recent.len() < MAX_FAILURES {
        return None;
    }
    recent.sort_unstable();
    // Asking again is fine once fewer than MAX_FAILURES remain in the window: when the
    // failure that leaves it is an hour old. Rounded up to the minute that is shown.
    let leaves = recent[recent.len() - MAX_FAILURES] + WINDOW_SECS;
    let next = (leaves + 59) / 60 * 60;
    let when = chrono::DateTime::from_timestamp(next, 0)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_else(|| format!("unix time {next}"));
    Some(format!(
        "certbot failed {} times for {} in the last hour; next try after {when} (Let's Encrypt \
         allows 5 failures per name per hour)",
        recent.len(),
        names.join(", ")
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

    fn failed_at(n: &[String], times: &[i64]) -> Option<CertFailures> {
        let mut f = None;
        for t in times {
            f = CertFailures::after_run(f.as_ref(), n, true, *t);
        }
        f
    }

    #[test]
    fn three_failures_within_the_hour_hold_the_request_until_the_oldest_is_an_hour_old() {
        let api = names(&["api.example.fr"]);
        let f = failed_at(&api, &[TEN, TEN + 600, TEN + 1_320]);
        // Two failures: certbot may run again.
        let two = failed_at(&api, &[TEN, TEN + 600]);
        assert_eq!(held(two.as_ref(), &api, TEN + 700), None);
        // Three: held, saying when the next try is (the first failure an hour old, 11:00).
        assert_eq!(
            held(f.as_ref(), &api, TEN + 1_400).as_deref(),
            Some(
                "certbot failed 3 times for api.example.fr in the last hour; next try after \
                 11:00 UTC (Let's Encrypt allows 5 failures per name per hour)"
            )
        );
        // Still held a second before; free at 11:00, when one failure left the window.
        assert!(held(f.as_ref(), &api, TEN + 3_599).is_some());
        assert_eq!(held(f.as_ref(), &api, TEN + 3_600), None);
    }

    #[test]
    fn the_time_shown_is_rounded_up_to_the_minute() {
        let api = names(&["api.example.fr"]);
        let f = failed_at(&api, &[TEN + 2_530, TEN + 2_540, TEN + 2_550]);
        let why = held(f.as_ref(), &api, TEN + 2_600).unwrap();
        // 10:42:10 + 1 h = 11:42:10, shown as 11:43.
        assert!(why.contains("next try after 11:43 UTC"), "{why}");
    }

    #[test]
    fn a_success_or_other_names_clear_the_count_and_old_failures_leave_the_window() {
        let api = names(&["api.example.fr"]);
        let f = failed_at(&api, &[TEN, TEN + 60, TEN + 120]);
        assert!(held(f.as_ref(), &api, TEN + 180).is_some());
        // A commit that changes the site's names asks for another certificate.
        let both = names(&["api.example.fr", "www.example.fr"]);
        assert_eq!(held(f.as_ref(), &both, TEN + 180), None);
        let after = CertFailures::after_run(f.as_ref(), &both, true, TEN + 200).unwrap();
        assert_eq!(after.at, [TEN + 200], "a fresh count for the new names");
        // A success clears it.
        assert_eq!(
            CertFailures::after_run(f.as_ref(), &api, false, TEN + 200),
            None
        );
        // Failures older than an hour are dropped as new ones come in.
        let later = CertFailures::after_run(f.as_ref(), &api, true, TEN + 3_610).unwrap();
        assert_eq!(later.at, [TEN + 60, TEN + 120, TEN + 3_610]);
        assert!(later.is_current(TEN + 3_700));
        assert!(!later.is_current(TEN + 3_610 + WINDOW_SECS));
        // No record: nothing held.
        assert_eq!(held(None, &api, TEN), None);
    }
}
