//! The stack executor: one stack unit's container actions, in the planner's order, through the
//! Docker Engine API. A failed action stops the stack and names itself in the error; the
//! recreate's rollback is in `recreate.rs`.

use super::docker::DockerExecutor;
use super::execute::ApplyOptions;
use super::recreate::{create_and_wait, replace};
use crate::plan::{normalize_image, Action, UnitOutcome};
use crate::redact::Redactor;
use std::collections::BTreeMap;
use tracing::{info, warn};

/// One stack unit. `missing`: images that could not be pulled or built, by normalized name, with
/// why; a stack that needs one is not touched at all (nothing of it is stopped). Errors are
/// redacted with the stack's host secrets before they are logged or reported.
pub(super) async fn run_unit(
    actions: &[Action],
    missing: &BTreeMap<String, String>,
    redactor: &Redactor,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> UnitOutcome {
    let blocked = actions.iter().find_map(|a| match a {
        Action::Create { container } | Action::Recreate { container, .. } => {
            missing.get(&normalize_image(&container.spec.image))
        }
        _ => None,
    });
    if let Some(err) = blocked {
        let err = redactor.apply(err);
        warn!(error = %err, "image unavailable; nothing in this stack was changed");
        return UnitOutcome::Failed(format!("{err}; nothing in this stack was changed"));
    }
    match run_stack(actions, exec, opts).await {
        Ok(()) => UnitOutcome::Applied,
        Err(e) => {
            let e = redactor.apply(&e);
            warn!(error = %e, "stack failed; its remaining actions were skipped");
            UnitOutcome::Failed(e)
        }
    }
}

async fn run_stack(
    actions: &[Action],
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> Result<(), String> {
    for action in actions {
        run_action(action, exec, opts)
            .await
            .map_err(|e| format!("{}: {e:#}", describe(action)))?;
    }
    Ok(())
}

async fn run_action(
    action: &Action,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    match action {
        Action::CreateNetwork { network } => {
            info!(network = %network.name, "create network");
            exec.ensure_network(network).await.map(|_| ())
        }
        Action::CreateVolume { volume } => {
            info!(volume = %volume.name, "create volume");
            exec.ensure_volume(volume).await
        }
        Action::Create { container } => {
            info!(container = %container.name, "create: new service");
            create_and_wait(container, exec, opts).await
        }
        Action::Recreate {
            old_id,
            container,
            reasons,
        } => {
            info!(container = %container.name, reasons = %reasons.join(", "), "recreate");
            replace(old_id, container, exec, opts).await
        }
        Action::Start {
            id,
            name,
            wait_healthy,
            ..
        } => {
            info!(container = %name, "start: not running");
            exec.start(id).await?;
            if *wait_healthy {
                exec.wait_healthy(id, opts.health_timeout).await?;
            }
            Ok(())
        }
        Action::Remove {
            id, name, reason, ..
        } => {
            info!(container = %name, reason = %reason, "remove");
            exec.stop_and_remove(id, opts.stop_grace_secs).await
        }
        Action::RemoveNetwork { id, name, reason } => {
            info!(network = %name, reason = %reason, "remove network");
            exec.remove_network(id).await
        }
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::CreateNetwork { network } => format!("create network {}", network.name),
        Action::CreateVolume { volume } => format!("create volume {}", volume.name),
        Action::Create { container } => format!("create {}", container.name),
        Action::Recreate { container, .. } => format!("recreate {}", container.name),
        Action::Start { name, .. } => format!("start {name}"),
        Action::Remove { name, .. } => format!("remove {name}"),
        Action::RemoveNetwork { name, .. } => format!("remove network {name}"),
    }
}
