//! Recreate with a way back: the one effect of the stack executor that can leave a service
//! without its container, so its rollback lives here, apart from the dispatcher.

use super::docker::{inherit, status_code, DockerExecutor};
use super::execute::ApplyOptions;
use crate::plan::ContainerToCreate;
use tracing::warn;

/// Recreate with a way back. The old container is set aside under another name while it still
/// serves, the new one is created under the service's name (pulls and builds came before), and
/// only then is the old one stopped and the new one started (and waited for, when another service
/// waits on it): the outage is the stop and the start, not the create, and a create the engine
/// refuses costs no outage at all. The old one is removed last; if anything fails, the new one
/// goes and the old one is renamed back and started, so the last good container keeps serving. An
/// old joiner (`network_mode`, `pid`, `ipc` = `container:<x>`) whose `<x>` is gone cannot be
/// started again: it is only renamed back, stopped, and the error says so (the next plan
/// recreates it).
pub(super) async fn replace(
    old_id: &str,
    c: &ContainerToCreate,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    use bollard::query_parameters::{RenameContainerOptions, StopContainerOptionsBuilder};
    let aside = format!("{}-gitmoor-old", c.name);
    let rename = |name: String| RenameContainerOptions { name };
    let old = exec
        .docker
        .inspect_container(old_id, None)
        .await
        .map_err(|e| anyhow::anyhow!("cannot inspect {}: {e}", c.name))?;
    // Its anonymous volumes (data a file or an image keeps there) go to the new container.
    let inherited = inherit::inherited(old.mounts.as_deref().unwrap_or_default(), &c.spec);
    // Already aside: an earlier recreate was interrupted before its new container started.
    if old.name.as_deref().map(|n| n.trim_start_matches('/')) != Some(aside.as_str()) {
        exec.docker
            .rename_container(old_id, rename(aside.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("cannot set {} aside as {aside}: {e}", c.name))?;
    }
    let new_id = match exec.create_container_inheriting(c, &inherited).await {
        Ok(id) => id,
        Err(e) => {
            // Nothing stopped yet: the old one only gets its name back.
            let back = exec
                .docker
                .rename_container(old_id, rename(c.name.clone()))
                .await;
            return Err(match back {
                Ok(()) => e.context("the previous container is left as it was"),
                Err(b) => e.context(format!(
                    "the previous container is left as it was, named {aside}: giving its name back failed: {b}"
                )),
            });
        }
    };
    // No timeout of our own: the engine then uses the container's `StopTimeout`, which is the
    // service's `stop_grace_period` (10 s when unset), as `docker compose` does.
    let stop = StopContainerOptionsBuilder::new().build();
    if let Err(e) = exec.docker.stop_container(old_id, Some(stop)).await {
        // 304: already stopped.
        if status_code(&e) != Some(304) {
            let removed = exec.stop_and_remove(&new_id, 0).await;
            let back = match removed {
                Ok(()) => exec
                    .docker
                    .rename_container(old_id, rename(c.name.clone()))
                    .await
                    .map_err(anyhow::Error::from),
                Err(r) => Err(r),
            };
            let left = match back {
                Ok(()) => format!("the previous container is left under its name {}", c.name),
                Err(b) => format!(
                    "the previous container is left as {aside} ({b:#}); the next reconcile puts it back"
                ),
            };
            return Err(anyhow::anyhow!("cannot stop {}: {e}; {left}", c.name));
        }
    }
    match start_and_wait(&new_id, c, exec, opts).await {
        Ok(()) => exec.stop_and_remove(old_id, 0).await,
        Err(e) => {
            // The error itself (it may quote healthcheck output) is logged once, redacted, by
            // the stack that reports it.
            warn!(container = %c.name, "new container failed; bringing the old one back");
            let _ = exec.stop_and_remove(&new_id, 0).await;
            // A joiner whose joined container was replaced (earlier in this apply, or before)
            // is bound to a namespace that is gone: starting it cannot work. It gets its name
            // back, stopped, so the next plan sees it and recreates it.
            let dead = dead_joins(exec, old_id).await;
            if !dead.is_empty() {
                let renamed = exec
                    .docker
                    .rename_container(old_id, rename(c.name.clone()))
                    .await;
                let left = match renamed {
                    Ok(()) => format!("left stopped as {}", c.name),
                    Err(_) => format!("left stopped as {aside}"),
                };
                return Err(e.context(format!(
                    "the previous container cannot come back: it joins {}, which no longer exists; \
                     it is {left}, and the next reconcile recreates it",
                    dead.join(" and ")
                )));
            }
            let back = async {
                exec.docker
                    .rename_container(old_id, rename(c.name.clone()))
                    .await?;
                exec.start(old_id).await
            };
            match back.await {
                Ok(()) => Err(e.context("the previous container was restored and keeps serving")),
                Err(b) => Err(e.context(format!(
                    "restoring the previous container failed too: {b:#}"
                ))),
            }
        }
    }
}

/// The namespaces container `id` joins (`network_mode`, `pid`, `ipc` = `container:<id>`) whose
/// container no longer exists, as `network of <short id>`. Empty when nothing it joins is gone, or
/// when that cannot be told (then restoring it is worth the try).
async fn dead_joins(exec: &DockerExecutor, id: &str) -> Vec<String> {
    let Ok(info) = exec.docker.inspect_container(id, None).await else {
        return Vec::new();
    };
    let host = info.host_config.unwrap_or_default();
    let mut dead = Vec::new();
    for (what, mode) in [
        ("network", host.network_mode),
        ("PID namespace", host.pid_mode),
        ("IPC namespace", host.ipc_mode),
    ] {
        let Some(joined) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) else {
            continue;
        };
        if let Err(e) = exec.docker.inspect_container(joined, None).await {
            if super::docker::status_code(&e) == Some(404) {
                let short: String = joined.chars().take(12).collect();
                dead.push(format!("the {what} of container {short}"));
            }
        }
    }
    dead
}

/// Creates and starts a container, then waits for what another service waits on (healthy, or
/// exited with 0).
pub(super) async fn create_and_wait(
    c: &ContainerToCreate,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    let id = exec.create_container(c).await?;
    start_and_wait(&id, c, exec, opts).await
}

/// Starts a created container, then waits for what another service waits on.
async fn start_and_wait(
    id: &str,
    c: &ContainerToCreate,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    exec.start(id).await?;
    if c.wait_healthy {
        exec.wait_healthy(id, opts.health_timeout).await?;
    }
    if c.wait_completed {
        exec.wait_exited_ok(id, opts.health_timeout).await?;
    }
    Ok(())
}
