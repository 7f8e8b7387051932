//! Runs a plan: pulls and builds first (a failed pull changes nothing), then unit by unit in the
//! order of their `after` edges, each by its kind's executor (`stack.rs` for compose stacks).
//! A failure stops that unit, says which action failed and why, and lets the other units go on:
//! one broken stack must not hold the rest of the host hostage. A unit that follows a failed
//! one is held back, with that reason.

use super::docker::{request_tar, BuildRequest, DockerExecutor, RegistryAuth};
use super::nginx::NginxHost;
use super::ufw::UfwHost;
use super::{firewall, site, stack};
use crate::labels;
use crate::plan::normalize_image;
use crate::plan::unit::Schedule;
use crate::plan::{Action, Plan, UnitId, UnitOutcome, Work};
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

/// What happened: one outcome per unit in the plan (a stack whose image could not be pulled or
/// built fails whole, before anything of it changed).
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub units: BTreeMap<UnitId, UnitOutcome>,
    /// Ids of the images gitmoor had built that a rebuild superseded, removed after the apply.
    pub pruned_images: Vec<String>,
    /// The sites certbot ran for: true when it failed (the state counts those per name).
    pub certbot_failed: BTreeMap<String, bool>,
}

impl ApplyReport {
    pub fn is_ok(&self) -> bool {
        self.units.values().all(UnitOutcome::is_ok)
    }

    /// The first error, for a one-line summary: a failure before a hold (the hold only points at
    /// it).
    pub fn first_error(&self) -> Option<String> {
        let failed = self
            .units
            .iter()
            .find(|(_, o)| matches!(o, UnitOutcome::Failed(_)));
        let any = || self.units.iter().find(|(_, o)| !o.is_ok());
        failed
            .or_else(any)
            .and_then(|(u, o)| o.error().map(|e| format!("{u}: {e}")))
    }

    /// A stack's outcome, when the plan changed it.
    pub fn stack(&self, name: &str) -> Option<&UnitOutcome> {
        self.units.get(&UnitId::Stack(name.to_string()))
    }
}

/// What the effects read besides the plan: who owns what they make, the commit's files (build
/// contexts) and registry credentials.
pub struct ApplyInputs<'a> {
    /// The gitmoor instance (`io.gitmoor.instance`): put on built images, and the scope of the
    /// prune of superseded ones. From the config, never from the plan's objects: a plan without
    /// a container still has an owner.
    pub instance: &'a str,
    /// This config's repo label (`labels::owner_label`): only this repo prunes what it built.
    pub repo: &'a str,
    /// The host's Nginx for site units (None when the plan has none), or why it cannot be
    /// driven.
    pub nginx: Option<Result<NginxHost, String>>,
    /// The host's UFW for the firewall unit (None when the plan has none), or why it cannot be
    /// driven.
    pub ufw: Option<Result<UfwHost, String>>,
    /// How certificates are obtained (a `tls: letsencrypt` site without one).
    pub letsencrypt: &'a crate::config::letsencrypt::LetsEncryptConfig,
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
    let instance = inputs.instance;
    let repo = inputs.repo;
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
        req.labels
            .insert(labels::INSTANCE.to_string(), instance.to_string());
        // And the repo label, that only this repo prunes it (the planner's build steps carry it).
        req.labels
            .entry(labels::REPO.to_string())
            .or_insert_with(|| repo.to_string());
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
    let mut schedule = Schedule::new(&plan.units);
    while let Some(unit) = schedule.next_unit() {
        let outcome = match &unit.work {
            Work::Stack(actions) => {
                let redactor = inputs
                    .redact
                    .get(unit.id.name())
                    .cloned()
                    .unwrap_or_default();
                let span = info_span!("stack", stack = %unit.id.name());
                stack::run_unit(actions, &missing, &redactor, exec, opts)
                    .instrument(span)
                    .await
            }
            Work::Site(action) => {
                let nginx = match &inputs.nginx {
                    Some(Ok(host)) => Ok(host),
                    Some(Err(why)) => Err(why.as_str()),
                    None => Err("no Nginx was given to this apply"),
                };
                let run = site::run_unit(unit.id.name(), action, nginx, inputs.letsencrypt).await;
                if let Some(failed) = run.certbot_failed {
                    report
                        .certbot_failed
                        .insert(unit.id.name().to_string(), failed);
                }
                run.outcome
            }
            Work::Firewall(work) => firewall::run_unit(work, inputs.ufw.as_ref()).await,
        };
        schedule.record(unit, outcome);
    }
    report.units = schedule.finish();
    for (unit, outcome) in &report.units {
        if let UnitOutcome::Held(why) = outcome {
            warn!(unit = %unit, "{why}");
        }
    }
    // Only after a clean apply that made containers (a rebuild always recreates): every new
    // container runs, so what a rebuild left untagged is garbage. An image some container still
    // uses is kept by the engine (never forced).
    let creates = plan
        .stack_actions()
        .any(|(_, a)| matches!(a, Action::Create { .. } | Action::Recreate { .. }));
    if report.is_ok() && creates {
        match exec.prune_built_images(instance, Some(repo)).await {
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

/// The `platform:` each image is pulled or built for, by normalized image: the platform of a
/// service in the plan that runs it. Its create call asks for that platform, so the pull must fetch that
/// one (on a multi-arch tag the host's own would not do). Two services asking different
/// platforms of one tag cannot both be served by it; the first one's is pulled.
fn pull_platforms(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, action) in plan.stack_actions() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ContainerToCreate, Unit};
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
    fn pulls_take_the_platform_of_the_services_that_run_them() {
        let plan = Plan {
            pulls: vec!["postgres:15".into(), "nginx".into()],
            units: vec![Unit::stack(
                "shop",
                vec![
                    create("db", "postgres:15", Some("linux/arm64")),
                    create("web", "nginx", None),
                    create("db2", "postgres:15", Some("linux/amd64")),
                ],
            )],
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
