//! When the daemon reconciles: at start, at each tick of the poll schedule, and when nudged;
//! one reconcile at a time, until shutdown. Pure scheduling: the reconcile itself is a
//! parameter ([`Reconcile`]), and so is the wall clock the schedule is read on, so this is
//! tested with tokio's paused time and a fake reconcile, without Git or a dockerd.
//!
//! Triggers merge rather than queue: a reconcile serves every nudge taken when it starts (it
//! fetches after them, and is level-triggered), so any number of nudges while one runs make
//! exactly one more, with all their reasons. A nudge on an idle daemon starts a reconcile at
//! once (a push goes live without waiting); the next one starts no sooner than `debounce` after
//! the previous ended, so a burst makes one or two in all.
//!
//! A failed reconcile is not requeued here: the reconcile itself remembers failed inputs (in
//! the state file, so it holds across restarts) and holds them back, bad input until the inputs
//! change and a failed effect for its backoff; the next tick or nudge asks it again. A shutdown
//! lets a running reconcile finish rather than cut it off halfway through a recreate.

use crate::status::StatusHub;
use crate::trigger::{Reasons, Trigger, Why};
use chrono::{DateTime, Local};
use croner::Cron;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{error, info};

/// One reconcile and the look between reconciles, as the loop needs them.
pub(crate) trait Reconcile {
    /// Reconciles once for `why`. Errors are the reconcile's to log and report: the daemon
    /// outlives a bad commit, an unreachable remote or a restarting dockerd.
    async fn reconcile(&mut self, why: &Reasons) -> Ran;

    /// Lists the containers again (no reconcile) while a healthcheck is deciding; true while
    /// one still is.
    async fn recheck(&mut self) -> bool;
}

/// What the loop needs to know of a reconcile that ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ran {
    /// A container's healthcheck had not decided yet: look again every [`Cadence::recheck`]
    /// for at most this long, so `/status` shows the verdict without waiting for the poll.
    pub recheck_for: Option<Duration>,
}

/// The loop's timing.
pub(crate) struct Cadence {
    /// The poll schedule.
    pub schedule: Cron,
    /// The schedule as written, for the error when it has no next run.
    pub poll: String,
    /// The least time between the end of a reconcile and a nudged one.
    pub debounce: Duration,
    /// How often containers are listed again while a healthcheck is starting.
    pub recheck: Duration,
}

/// Runs reconciles until `shutdown`, the first one at once for [`Why::Start`]. Returns an
/// error only when the schedule has no next run.
pub(crate) async fn run(
    rec: &mut impl Reconcile,
    cadence: &Cadence,
    trigger: &Trigger,
    hub: &StatusHub,
    clock: impl Fn() -> DateTime<Local>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut why = Reasons::of(Why::Start);
    loop {
        // Every nudge so far is served by this reconcile: it fetches after them.
        why.merge(trigger.take());
        let ran = rec.reconcile(&why).await;
        let ended = Instant::now();
        let mut recheck_until = ran.recheck_for.map(|d| ended + d);
        let wake = loop {
            if trigger.is_pending() {
                break None;
            }
            let recheck = recheck_until.is_some_and(|t| Instant::now() < t);
            let now = clock();
            let next = match cadence.schedule.find_next_occurrence(&now, false) {
                Ok(t) => t,
                Err(e) => {
                    error!("the poll schedule has no next run ({e}); stopping");
                    anyhow::bail!("poll schedule {:?} has no next run", cadence.poll);
                }
            };
            hub.set_next_poll(Some(next.timestamp()));
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => break Some(Why::Poll),
                _ = tokio::time::sleep(cadence.recheck), if recheck => {
                    if !rec.recheck().await {
                        recheck_until = None;
                    }
                    continue;
                }
                // Re-checked at the top: a permit left by nudges already served wakes us for
                // nothing.
                _ = trigger.nudged() => continue,
                _ = &mut shutdown => {
                    info!("shutting down");
                    return Ok(());
                }
            }
        };
        why = match wake {
            // A nudge that came with the tick is served too: its reasons are merged at the top.
            Some(poll) => Reasons::of(poll),
            None => {
                // A lone push on an idle daemon starts at once. Nudges that come while a
                // reconcile runs, or soon after one, wait until `debounce` has passed since it
                // ended, and make one reconcile together: a burst costs one or two in all.
                let quiet_until = ended + cadence.debounce;
                if Instant::now() < quiet_until {
                    tokio::select! {
                        _ = tokio::time::sleep_until(quiet_until) => {}
                        _ = &mut shutdown => {
                            info!("shutting down");
                            return Ok(());
                        }
                    }
                }
                let why = trigger.take();
                let providers = why.providers();
                if providers.is_empty() {
                    info!(trigger = %why, "reconcile requested");
                } else {
                    info!(trigger = %why, providers = %providers, "reconcile requested");
                }
                why
            }
        };
    }
}

#[cfg(test)]
mod tests;
