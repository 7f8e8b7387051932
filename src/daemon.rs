//! `gitmoor run`: reconcile once at start, then on the cron schedule or when nudged, one
//! reconcile at a time, until shutdown.
//!
//! Triggers merge rather than queue: any number of nudges while a reconcile runs make exactly one
//! more (a `Notify` keeps at most one permit). Shutdown is injected, so tests stop the daemon
//! without signals; a reconcile that is running when shutdown comes is finished, not cut off
//! halfway through a recreate.

use crate::config::Config;
use crate::reconcile::{short, Mode, Reconciler, Verdict};
use chrono::Local;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

/// A handle that asks the daemon for a reconcile soon (webhooks, secret edits, tests).
#[derive(Clone, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    pub fn nudge(&self) {
        self.0.notify_one();
    }
}

pub async fn run(
    cfg: Config,
    trigger: Trigger,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let schedule = cfg.schedule()?;
    let rec = Reconciler::new(cfg, true).await?;
    info!(repo = %rec.cfg.repo, branch = %rec.cfg.branch, poll = %rec.cfg.poll, "gitmoor daemon started");
    tokio::pin!(shutdown);
    let mut skipped = None;
    loop {
        once(&rec, &mut skipped).await;
        let now = Local::now();
        let next = match schedule.find_next_occurrence(&now, false) {
            Ok(t) => t,
            Err(e) => {
                error!("the poll schedule has no next run ({e}); stopping");
                return Err(anyhow::anyhow!(
                    "poll schedule {:?} has no next run",
                    rec.cfg.poll
                ));
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = trigger.0.notified() => info!("reconcile requested"),
            _ = &mut shutdown => {
                info!("shutting down");
                return Ok(());
            }
        }
    }
}

/// One reconcile whose errors are logged, never fatal: the daemon outlives a bad commit, an
/// unreachable remote or a restarting dockerd.
/// `skipped` remembers the commit last reported as skipped, so a bad commit is reported once,
/// not at every poll.
async fn once(rec: &Reconciler, skipped: &mut Option<String>) {
    match rec.reconcile(Mode::Apply, false).await {
        Ok(o) => match o.verdict {
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
                error = o.error.as_deref().unwrap_or("unknown"),
                "not deployed; the host keeps the last applied state"
            ),
        },
        Err(e) => error!(error = %format!("{e:#}"), "reconcile failed"),
    }
}
