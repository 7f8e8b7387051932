//! `gitmoor run`: reconcile once at start, then on the cron schedule or when nudged, one
//! reconcile at a time, until shutdown; beside it the status server and the secrets watcher.
//!
//! `cycle` decides when to reconcile (merging, debounce, the schedule), `live` is the reconcile
//! it calls on the real host. Shutdown is injected, so tests stop the daemon without signals.

mod cycle;
mod live;

use crate::config::Config;
use crate::reconcile::Reconciler;
use crate::state::State;
use crate::status::StatusHub;
use crate::trigger::{Trigger, Why};
use chrono::Local;
use cycle::Cadence;
use live::Live;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

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
    let cadence = Cadence {
        schedule: cfg.schedule()?,
        poll: cfg.poll.clone(),
        debounce: Duration::from_millis(cfg.nudge_debounce_ms),
        recheck: RECHECK,
    };
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
    let mut live = Live {
        rec,
        hub: hub.clone(),
        skipped: None,
    };
    cycle::run(&mut live, &cadence, &trigger, &hub, Local::now, shutdown).await
}

/// Compiles only while the daemon's future is `Send` (so a caller may spawn it): the loop is
/// generic over its reconcile, and a non-`Send` adapter would otherwise slip in unnoticed.
#[cfg(test)]
fn _send_check(cfg: Config, l: tokio::net::TcpListener) {
    fn is_send<T: Send>(_: &T) {}
    let f = run_with_server(cfg, l, async {});
    is_send(&f);
}
