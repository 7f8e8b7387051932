//! The loop's reconcile on the real host: a thin adapter over [`Reconciler`] that reports each
//! step to the status hub and logs the outcome, so the loop in `cycle` knows nothing of Git,
//! Docker or the status document.

use super::cycle::{Ran, Reconcile};
use crate::reconcile::{short, Mode, Outcome, Reconciler, Verdict};
use crate::state::{ReconcileResult, State};
use crate::status::{Finished, StatusHub};
use crate::trigger::Reasons;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

pub(super) struct Live {
    pub rec: Reconciler,
    pub hub: Arc<StatusHub>,
    /// The commit last reported as skipped, so a bad commit is warned about once, not at every
    /// poll.
    pub skipped: Option<String>,
}

impl Reconcile for Live {
    async fn reconcile(&mut self, why: &Reasons) -> Ran {
        once(&self.rec, &self.hub, &why.to_string(), &mut self.skipped).await;
        // Healthchecks decide after the apply: look again while one is starting, for at most
        // the health timeout.
        Ran {
            recheck_for: self
                .hub
                .any_starting()
                .then(|| Duration::from_secs(self.rec.cfg.health_timeout_secs.max(30))),
        }
    }

    async fn recheck(&mut self) -> bool {
        match self.rec.observe_own().await {
            Ok(o) => self.hub.observed(&o),
            Err(e) => debug!(error = %format!("{e:#}"), "cannot list containers"),
        }
        self.hub.any_starting()
    }
}

/// One reconcile whose errors are logged, never fatal: the daemon outlives a bad commit, an
/// unreachable remote or a restarting dockerd. Each step is reported to the status hub.
/// `skipped` remembers the commit last reported as skipped, so a bad commit is reported once,
/// not at every poll.
async fn once(rec: &Reconciler, hub: &StatusHub, why: &str, skipped: &mut Option<String>) {
    hub.begin(why);
    let started = Instant::now();
    let started_at = chrono::Utc::now().timestamp();
    repair_docker_guard(rec).await;
    let head = match rec.fetch().await {
        Ok(h) => h,
        Err(e) => {
            let msg = format!("fetching {} failed: {e:#}", rec.cfg.branch);
            error!(error = %crate::status::doc::redact_userinfo(&msg), "reconcile failed");
            hub.fetch_failed(&msg);
            hub.finish(Finished {
                started_at,
                duration: started.elapsed(),
                trigger: why,
                result: ReconcileResult::Error,
                commit: None,
                actions: vec![],
                error: Some(msg),
                findings: None,
                desired: None,
                observed: None,
                state: None,
            });
            return;
        }
    };
    hub.fetched(&head);
    let commit = head.clone();
    let outcome = rec.reconcile_fetched(head, Mode::Apply, false).await;
    match outcome {
        Ok(mut o) => {
            log_outcome(&o, skipped);
            // Bad input stops before Docker is asked anything: list the containers for /status.
            if o.observed.is_none() {
                o.observed = rec.observe_own().await.ok();
            }
            finish(rec, hub, why, started, started_at, &o);
        }
        Err(e) => {
            let msg = crate::status::doc::redact_userinfo(&format!("{e:#}"));
            error!(error = %msg, "reconcile failed");
            hub.finish(Finished {
                started_at,
                duration: started.elapsed(),
                trigger: why,
                result: ReconcileResult::Error,
                commit: Some(&commit),
                actions: vec![],
                error: Some(msg),
                findings: None,
                desired: None,
                observed: None,
                state: State::load(&rec.cfg.state_dir).ok(),
            });
        }
    }
}

/// With `firewall.docker_guard: enforce` and a `ufw/` folder in the last applied commit, the
/// guard put back in force from UFW's files before anything else (at the daemon's start that
/// is before the first fetch): after a reboot dockerd 20.10 makes no IPv6 jump to
/// `DOCKER-USER`, and that must not wait for a fetch that may fail or a reconcile held back.
/// Otherwise nothing is run. Failures are logged; the reconcile's own firewall unit says more.
async fn repair_docker_guard(rec: &Reconciler) {
    crate::apply::ufw::repair_tick(&rec.cfg.firewall, &rec.cfg.state_dir).await;
}

fn finish(
    rec: &Reconciler,
    hub: &StatusHub,
    why: &str,
    started: Instant,
    started_at: i64,
    o: &Outcome,
) {
    hub.finish(Finished {
        started_at,
        duration: started.elapsed(),
        trigger: why,
        result: o.verdict.result(),
        commit: Some(&o.commit),
        actions: o.plan.as_ref().map(|p| p.views()).unwrap_or_default(),
        error: o.error.clone(),
        findings: Some(&o.findings),
        desired: o.desired.clone(),
        observed: o.observed.as_ref(),
        state: State::load(&rec.cfg.state_dir).ok(),
    });
}

fn log_outcome(o: &Outcome, skipped: &mut Option<String>) {
    // Any other outcome ends a run of skips: if the same bad commit comes back (a revert of a
    // revert), it is worth one warning again.
    if o.verdict != Verdict::Skipped {
        *skipped = None;
    }
    match o.verdict {
        Verdict::Noop => debug!(commit = %short(&o.commit.sha), "in sync"),
        Verdict::Applied => info!(commit = %short(&o.commit.sha), "deployed"),
        Verdict::Skipped if skipped.as_deref() == Some(o.commit.sha.as_str()) => {
            debug!(commit = %short(&o.commit.sha), "still waiting for a fix")
        }
        Verdict::Skipped => {
            warn!(
                commit = %short(&o.commit.sha),
                "not retried: these inputs failed before; push a fix or edit the secrets"
            );
            *skipped = Some(o.commit.sha.clone());
        }
        _ => warn!(
            commit = %short(&o.commit.sha),
            error = %crate::status::doc::redact_userinfo(o.error.as_deref().unwrap_or("unknown")),
            "not deployed; the host keeps the last applied state"
        ),
    }
}
