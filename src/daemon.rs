//! `gitmoor run`: reconcile once at start, then on the cron schedule or when nudged, one
//! reconcile at a time, until shutdown; beside it the status server and the secrets watcher.
//!
//! Triggers merge rather than queue. Each nudge bumps a counter; a reconcile covers every nudge
//! counted before it started (it fetches after them, and is level-triggered), so any number of
//! nudges while one runs make exactly one more. A nudge on an idle daemon starts a reconcile at
//! once (a push goes live without waiting); the next one starts no sooner than
//! `nudge_debounce_ms` after the previous ended, so a burst makes one or two in all. Shutdown is
//! injected, so tests stop the daemon without signals; a reconcile that is running when shutdown
//! comes is finished, not cut off halfway through a recreate.

use crate::config::Config;
use crate::reconcile::{short, Mode, Outcome, Reconciler, Verdict};
use crate::state::{ReconcileResult, State};
use crate::status::{Finished, StatusHub};
use crate::trigger::{Reasons, Trigger, Why};
use chrono::Local;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// How often containers are listed again while a healthcheck is starting.
const RECHECK: Duration = Duration::from_secs(2);

/// The daemon loop alone (no status server, no secrets watcher).
pub async fn run(
    cfg: Config,
    trigger: Trigger,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let hub = Arc::new(StatusHub::new(&cfg));
    run_loop(cfg, trigger, hub, shutdown).await
}

/// `gitmoor run`: the status server on `listener`, the secrets watcher, and the daemon loop, all
/// stopped by `shutdown` (the server and the watcher stop when the loop does).
pub async fn run_with_server(
    cfg: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let hub = Arc::new(StatusHub::new(&cfg));
    let trigger = Trigger::default();
    let hooks = crate::server::hooks::HookConfig::from_config(&cfg)?;
    if let Ok(state) = State::load(&cfg.state_dir) {
        hub.load_state(&state);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let app = crate::server::AppState {
        hub: hub.clone(),
        trigger: trigger.clone(),
        hooks,
        refresh_secs: cfg.status_refresh_secs,
    };
    let addr = listener.local_addr()?;
    let server = tokio::spawn(crate::server::serve(listener, app, stopped()));
    info!(address = %addr, "status server listening");

    let (watch_hub, watch_trigger) = (hub.clone(), trigger.clone());
    let watcher = tokio::spawn(crate::watch::watch_secrets(
        cfg.secrets_dir.clone(),
        Duration::from_millis(cfg.secrets_debounce_ms),
        Duration::from_secs(30),
        move |change| match change {
            crate::watch::Change::Stacks(stacks) => {
                // `<stack>.env` or a host file under `<stack>/`: named by stack (file names
                // under the folder are the admin's, and only the stack is reconciled).
                let stacks: Vec<&str> = stacks.iter().map(String::as_str).collect();
                info!(stacks = %stacks.join(", "), "secrets changed; reconcile requested");
                watch_hub.count_secrets_change();
                watch_hub.set_pending("secrets");
                watch_trigger.nudge_for(Why::Secrets);
            }
            crate::watch::Change::DirGone => {
                warn!("the secrets dir went away; reconcile requested");
                watch_hub.set_pending("secrets");
                watch_trigger.nudge_for(Why::Secrets);
            }
            crate::watch::Change::Rescan => {
                info!("secrets dir: changes may have been missed; reconcile requested");
                watch_hub.set_pending("secrets");
                watch_trigger.nudge_for(Why::Secrets);
            }
        },
        stopped(),
    ));

    let result = run_loop(cfg, trigger, hub.clone(), shutdown).await;
    hub.stopped();
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        warn!("the status server did not stop within 5 s");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    result
}

async fn run_loop(
    cfg: Config,
    trigger: Trigger,
    hub: Arc<StatusHub>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let schedule = cfg.schedule()?;
    let debounce = Duration::from_millis(cfg.nudge_debounce_ms);
    tokio::pin!(shutdown);
    let rec = tokio::select! {
        r = Reconciler::new(cfg, true) => r?,
        _ = &mut shutdown => {
            info!("shutting down");
            return Ok(());
        }
    };
    info!(repo = %crate::status::doc::redact_userinfo(&rec.cfg.repo), branch = %rec.cfg.branch, poll = %rec.cfg.poll, "gitmoor daemon started");
    if rec.cfg.build_timeout_secs >= rec.cfg.health_max_reconcile_secs {
        warn!(
            build_timeout_secs = rec.cfg.build_timeout_secs,
            health_max_reconcile_secs = rec.cfg.health_max_reconcile_secs,
            "the builds of a reconcile may run longer than /health allows a reconcile: /health turns 503 during long builds; raise health_max_reconcile_secs above build_timeout_secs"
        );
    }
    let mut skipped = None;
    let mut why = Reasons::of(Why::Start);
    loop {
        // Every nudge so far is covered by this reconcile: it fetches after them.
        why.merge(trigger.take());
        once(&rec, &hub, &why.to_string(), &mut skipped).await;
        let ended = tokio::time::Instant::now();
        // Healthchecks decide after the apply: look again (listing calls only, no reconcile)
        // every few seconds while one is starting, for at most the health timeout.
        let mut recheck_until = hub
            .any_starting()
            .then(|| Instant::now() + Duration::from_secs(rec.cfg.health_timeout_secs.max(30)));
        let wake = loop {
            if trigger.is_pending() {
                break None;
            }
            let recheck = recheck_until.is_some_and(|t| Instant::now() < t);
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
            hub.set_next_poll(Some(next.timestamp()));
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => break Some(Why::Poll),
                _ = tokio::time::sleep(RECHECK), if recheck => {
                    match rec.observe_own().await {
                        Ok(o) => hub.observed(&o),
                        Err(e) => debug!(error = %format!("{e:#}"), "cannot list containers"),
                    }
                    if !hub.any_starting() {
                        recheck_until = None;
                    }
                    continue;
                }
                // Re-checked at the top: a permit left by nudges already served wakes us for nothing.
                _ = trigger.nudged() => continue,
                _ = &mut shutdown => {
                    info!("shutting down");
                    return Ok(());
                }
            }
        };
        why = match wake {
            // A nudge that came with the timer is served by this reconcile: its reason is
            // merged in at the top.
            Some(poll) => Reasons::of(poll),
            None => {
                // A lone push on an idle daemon starts at once. Nudges that come while a
                // reconcile runs, or soon after one, wait until `debounce` has passed since it
                // ended, and make one reconcile together: a burst costs one or two in all.
                let quiet_until = ended + debounce;
                if tokio::time::Instant::now() < quiet_until {
                    tokio::select! {
                        _ = tokio::time::sleep_until(quiet_until) => {}
                        _ = &mut shutdown => {
                            info!("shutting down");
                            return Ok(());
                        }
                    }
                }
                let why = trigger.take();
                info!(trigger = %why, "reconcile requested");
                why
            }
        };
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
