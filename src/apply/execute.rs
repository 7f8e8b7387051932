//! Runs a plan: pulls first (a failed pull changes nothing), then each stack's actions in the
//! planner's order. A failure stops that stack, says which action failed and why, and lets the
//! other stacks go on: one broken stack must not hold the rest of the host hostage.

use super::docker::{request_tar, BuildRequest, DockerExecutor, RegistryAuth};
use crate::labels;
use crate::plan::normalize_image;
use crate::plan::{Action, ContainerToCreate, Plan};
use crate::redact::StackRedactors;
use crate::source::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long to wait for a service that another one waits on.
    pub health_timeout: Duration,
    /// Seconds a container gets to stop before it is killed.
    pub stop_grace_secs: i64,
}

/// What happened: one result per stack in the plan (a stack whose image could not be pulled or
/// built fails whole, before anything of it changed).
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub stacks: BTreeMap<String, Result<(), String>>,
    /// Ids of the images gitmoor had built that a rebuild superseded, removed after the apply.
    pub pruned_images: Vec<String>,
}

impl ApplyReport {
    pub fn is_ok(&self) -> bool {
        self.stacks.values().all(|r| r.is_ok())
    }

    /// The first error, for a one-line summary.
    pub fn first_error(&self) -> Option<String> {
        self.stacks
            .iter()
            .find_map(|(s, r)| r.as_ref().err().map(|e| format!("stack {s}: {e}")))
    }
}

/// What the effects read besides the plan: the commit's files (build contexts) and registry
/// credentials.
pub struct ApplyInputs<'a> {
    pub snapshot: &'a Snapshot,
    pub auth: Option<&'a RegistryAuth>,
    /// Per stack, its host secrets' values: a stack's error (engine messages, healthcheck
    /// output) is redacted with them before it is logged or reported.
    pub redact: &'a StackRedactors,
}

/// Pulls and builds every image first; a stack whose image could not be had is skipped whole
/// (nothing of it is stopped), and the other stacks go on.
pub async fn execute_with(
    plan: &Plan,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
    inputs: &ApplyInputs<'_>,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut missing: BTreeMap<String, String> = BTreeMap::new();
    let platforms = pull_platforms(plan);
    let instance = plan_instance(plan);
    let repo = plan_label(plan, labels::REPO);
    for image in &plan.pulls {
        info!(image = %image, "pull");
        let platform = platforms.get(&normalize_image(image)).map(String::as_str);
        if let Err(e) = exec.pull_for_platform(image, platform, inputs.auth).await {
            missing.insert(normalize_image(image), format!("{e:#}"));
        }
    }
    // One budget for all the builds of this apply (see `build_until`).
    let build_deadline = tokio::time::Instant::now() + exec.build_timeout();
    for b in &plan.builds {
        info!(image = %b.tag, reason = %b.reason, "build");
        let mut req = BuildRequest {
            tag: b.tag.clone(),
            context_dir: b.build.context.clone(),
            dockerfile: b.build.dockerfile.clone(),
            args: b.build.args.clone(),
            target: b.build.target.clone(),
            labels: b.labels.clone(),
            platform: platforms.get(&normalize_image(&b.tag)).cloned(),
        };
        // The instance label marks the image as this instance's, so that only this instance
        // ever prunes it once a rebuild supersedes it.
        if let Some(instance) = &instance {
            req.labels
                .insert(labels::INSTANCE.to_string(), instance.clone());
        }
        // And the repo label, that only this repo prunes it (the planner's build steps carry it).
        if let Some(repo) = &repo {
            req.labels
                .entry(labels::REPO.to_string())
                .or_insert_with(|| repo.clone());
        }
        let built = match request_tar(inputs.snapshot, &req) {
            Ok(tar) => exec
                .build_until(&req, tar, inputs.auth, build_deadline)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = built {
            // Named by service and stack: the tag alone does not say which file to fix.
            let e = format!("service {} of stack {}: {e:#}", b.service, b.stack);
            missing.insert(normalize_image(&b.tag), e);
        }
    }
    for sp in &plan.stacks {
        let blocked = sp.actions.iter().find_map(|a| match a {
            Action::Create { container } | Action::Recreate { container, .. } => {
                missing.get(&normalize_image(&container.spec.image))
            }
            _ => None,
        });
        let redactor = inputs.redact.get(&sp.stack).cloned().unwrap_or_default();
        if let Some(err) = blocked {
            let err = redactor.apply(err);
            warn!(stack = %sp.stack, error = %err, "image unavailable; nothing in this stack was changed");
            report.stacks.insert(
                sp.stack.clone(),
                Err(format!("{err}; nothing in this stack was changed")),
            );
            continue;
        }
        let span = info_span!("stack", stack = %sp.stack);
        let result = run_stack(&sp.actions, exec, opts)
            .instrument(span)
            .await
            .map_err(|e| redactor.apply(&e));
        if let Err(e) = &result {
            warn!(stack = %sp.stack, error = %e, "stack failed; its remaining actions were skipped");
        }
        report.stacks.insert(sp.stack.clone(), result);
    }
    // Only after a clean apply: every new container runs, so what a rebuild left untagged is
    // garbage. An image some container still uses is kept by the engine (never forced).
    if let (true, Some(instance)) = (report.is_ok(), &instance) {
        match exec.prune_built_images(instance, repo.as_deref()).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    info!(count = ids.len(), "removed images superseded by a rebuild");
                }
                report.pruned_images = ids;
            }
            Err(e) => warn!(error = %format!("{e:#}"), "pruning superseded built images failed"),
        }
    }
    report
}

/// The gitmoor instance this plan was made for: the planner puts it on every container it
/// creates (`io.gitmoor.instance`), and the executor has no other word of it. None when the plan
/// creates no container, and then it builds nothing either (a rebuild always recreates).
fn plan_instance(plan: &Plan) -> Option<String> {
    plan_label(plan, labels::INSTANCE)
}

/// A label the planner puts on every container it creates (the instance, the repo): the first
/// created container's.
fn plan_label(plan: &Plan, key: &str) -> Option<String> {
    plan.stacks
        .iter()
        .flat_map(|s| &s.actions)
        .find_map(|a| match a {
            Action::Create { container } | Action::Recreate { container, .. } => {
                container.labels.get(key).cloned()
            }
            _ => None,
        })
}

/// The `platform:` each image is pulled or built for, by normalized image: the platform of a
/// service in the plan that runs it. Its create call asks for that platform, so the pull must fetch that
/// one (on a multi-arch tag the host's own would not do). Two services asking different
/// platforms of one tag cannot both be served by it; the first one's is pulled.
fn pull_platforms(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for action in plan.stacks.iter().flat_map(|s| &s.actions) {
        if let Action::Create { container } | Action::Recreate { container, .. } = action {
            if let Some(p) = container.spec.platform.as_deref().map(str::trim) {
                if !p.is_empty() {
                    out.entry(normalize_image(&container.spec.image))
                        .or_insert_with(|| p.to_string());
                }
            }
        }
    }
    out
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

/// Recreate with a way back: the old container is stopped and set aside under another name,
/// the new one is created and started (and waited for, when another service waits on it). Only
/// then is the old one removed; if anything fails, the new one goes and the old one is renamed
/// back and started, so the last good container keeps serving. An old joiner (`network_mode`,
/// `pid`, `ipc` = `container:<x>`) whose `<x>` is gone cannot be started again: it is only renamed
/// back, stopped, and the error says so (the next plan recreates it).
async fn replace(
    old_id: &str,
    c: &ContainerToCreate,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    use bollard::query_parameters::{RenameContainerOptions, StopContainerOptionsBuilder};
    // No timeout of our own: the engine then uses the container's `StopTimeout`, which is the
    // service's `stop_grace_period` (10 s when unset), as `docker compose` does.
    let stop = StopContainerOptionsBuilder::new().build();
    if let Err(e) = exec.docker.stop_container(old_id, Some(stop)).await {
        // 304: already stopped.
        if !e.to_string().contains("304") {
            return Err(anyhow::anyhow!("cannot stop {}: {e}", c.name));
        }
    }
    let aside = format!("{}-gitmoor-old", c.name);
    let rename = |name: String| RenameContainerOptions { name };
    exec.docker
        .rename_container(old_id, rename(aside.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("cannot set {} aside as {aside}: {e}", c.name))?;
    match create_and_wait(c, exec, opts).await {
        Ok(()) => exec.stop_and_remove(old_id, 0).await,
        Err(e) => {
            // The error itself (it may quote healthcheck output) is logged once, redacted, by
            // the stack that reports it.
            warn!(container = %c.name, "new container failed; bringing the old one back");
            let _ = exec.stop_and_remove(&c.name, 0).await;
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

async fn create_and_wait(
    c: &ContainerToCreate,
    exec: &DockerExecutor,
    opts: &ApplyOptions,
) -> anyhow::Result<()> {
    let id = exec.create_container(c).await?;
    exec.start(&id).await?;
    if c.wait_healthy {
        exec.wait_healthy(&id, opts.health_timeout).await?;
    }
    if c.wait_completed {
        exec.wait_exited_ok(&id, opts.health_timeout).await?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StackPlan;
    use crate::spec::model::ServiceSpec;

    fn create(service: &str, image: &str, platform: Option<&str>) -> Action {
        Action::Create {
            container: ContainerToCreate {
                name: format!("shop-{service}-1"),
                stack: "shop".into(),
                service: service.into(),
                spec: ServiceSpec {
                    image: image.into(),
                    platform: platform.map(str::to_string),
                    ..Default::default()
                },
                labels: BTreeMap::new(),
                networks: Vec::new(),
                wait_healthy: false,
                wait_completed: false,
            },
        }
    }

    #[test]
    fn the_instance_comes_from_the_plans_containers() {
        let mut web = create("web", "shop-web", None);
        if let Action::Create { container } = &mut web {
            container
                .labels
                .insert(labels::INSTANCE.to_string(), "blue".to_string());
        }
        let mut plan = Plan {
            stacks: vec![StackPlan {
                stack: "shop".into(),
                actions: vec![web],
            }],
            ..Default::default()
        };
        assert_eq!(plan_instance(&plan).as_deref(), Some("blue"));
        plan.stacks[0].actions.clear();
        assert_eq!(plan_instance(&plan), None);
    }

    #[test]
    fn pulls_take_the_platform_of_the_services_that_run_them() {
        let plan = Plan {
            pulls: vec!["postgres:15".into(), "nginx".into()],
            stacks: vec![StackPlan {
                stack: "shop".into(),
                actions: vec![
                    create("db", "postgres:15", Some("linux/arm64")),
                    create("web", "nginx", None),
                    create("db2", "postgres:15", Some("linux/amd64")),
                ],
            }],
            ..Default::default()
        };
        let platforms = pull_platforms(&plan);
        assert_eq!(
            platforms
                .get(&normalize_image("postgres:15"))
                .map(String::as_str),
            Some("linux/arm64")
        );
        assert_eq!(platforms.get(&normalize_image("nginx")), None);
    }
}
