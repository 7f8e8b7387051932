//! The whole host's plan, unit by unit: each kind's pure differ (`stack.rs` for compose stacks)
//! gives a unit's actions; this file puts them together with what every unit shares (images to
//! pull and build first, objects of another repo, volumes and data folders that are kept).

use super::images::plan_images;
use super::owner::{owner_labels, split as split_by_owner, Adopt};
use super::stack::{plan_gone_stack, plan_stack};
use super::{Plan, Unit};
use crate::hashkey::HashKey;
use crate::observe::{Observed, Seen};
use crate::spec::model::HostSpec;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Facts the planner needs besides desired and observed state.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// The commit being applied (goes on the containers it creates).
    pub commit: String,
    /// Where stack folders are materialised (shown by `docker compose ls` as the working dir).
    pub bind_root: PathBuf,
    /// The gitmoor instance that owns what this plan creates (`io.gitmoor.instance`).
    pub instance: String,
    /// This config's repo as its objects are labelled (`labels::repo_label` of the config's
    /// `repo`, no credential in it). What the plan makes carries it; objects of the instance
    /// carrying another repo's are never removed nor replaced (see `owner`).
    pub repo: String,
    /// The stacks this state_dir's state file records: an object made before gitmoor labelled
    /// repos (no `io.gitmoor.repo`) is this config's only when its stack is one of these.
    pub recorded_stacks: BTreeSet<String>,
    /// The Nginx sites this state_dir's state file records: only those are ever removed (the
    /// sites folder may be shared with another config).
    pub recorded_sites: BTreeSet<String>,
    /// The stacks this config takes over from another repo (config `adopt`).
    pub adopt: Adopt,
    /// What rendering the Nginx sites needs of the host.
    pub sites: super::site::SiteContext,
    /// The firewall settings of gitmoor's config.
    pub firewall: FirewallContext,
    /// The host's key for the hashes that go into labels (`<state_dir>/hash.key`, loaded by the
    /// caller: the planner reads no file). Secret values are hashed under it, never in the clear.
    pub hash_key: HashKey,
}

/// The firewall settings of gitmoor's config (never of the repo: a push must not be able to
/// switch the guards off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirewallContext {
    pub options: super::firewall::FirewallOptions,
    /// Apply a change the SSH lockout guard refuses (the deliberate override).
    pub allow_ssh_lockout: bool,
}

/// A reason the plan cannot be carried out at all; nothing is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

pub fn plan(desired: &HostSpec, observed: &Observed, ctx: &PlanContext) -> Result<Plan, PlanError> {
    let mut out = Plan::default();
    let images = plan_images(desired, observed, &ctx.hash_key)?;
    out.pulls = images.pulls.clone();
    out.builds = images.builds.clone();
    out.pull_reasons = images.pull_reasons.clone();
    // Built images carry their owner too, so that only this repo prunes them once superseded.
    for b in &mut out.builds {
        for (k, v) in owner_labels(ctx) {
            b.labels.insert(k.to_string(), v);
        }
    }

    // Everything below sees only this config's objects; another repo's are left alone.
    let owned = split_by_owner(observed, desired, ctx);
    out.foreign = owned.foreign_stacks();
    let observed = &owned.ours;
    for stack in desired.stacks.values() {
        let actions = plan_stack(stack, &owned, ctx, &images.image_changes)?;
        if !actions.is_empty() {
            out.units.push(Unit::stack(&stack.name, actions));
        }
    }

    // Stacks that left the repo: containers and networks go, volumes stay (and are listed).
    let gone: BTreeSet<&str> = observed
        .containers
        .iter()
        .map(|c| c.stack.as_str())
        .chain(observed.networks.iter().map(|n| n.stack.as_str()))
        .filter(|s| !desired.stacks.contains_key(*s))
        .collect();
    for stack in gone {
        out.units
            .push(Unit::stack(stack, plan_gone_stack(stack, observed)));
    }
    let removed: BTreeSet<&str> = observed
        .volumes
        .iter()
        .map(|v| v.stack.as_str())
        .filter(|s| !desired.stacks.contains_key(*s))
        .collect();
    out.kept_volumes = observed
        .volumes
        .iter()
        .filter(|v| removed.contains(v.stack.as_str()))
        .map(|v| v.name.clone())
        .collect();
    super::data::add_data_folders(&mut out, desired, observed);

    // The firewall first: it guards what the stacks and sites publish.
    if let Some(unit) = firewall_unit(desired, observed, ctx, &mut out.notes) {
        out.units.insert(0, unit);
    }
    // Nginx sites: each its own unit, after the stacks it proxies to.
    let sites = super::site::desired_sites(desired, &ctx.sites, &observed.certs);
    let mut site_units = super::site::plan_sites(&sites, &observed.sites, &ctx.recorded_sites);
    // A site asking Let's Encrypt waits for the firewall too: a validation against a port the
    // firewall did not open counts against the rate limits.
    let firewall_planned = out.units.iter().any(|u| u.id == super::UnitId::Firewall);
    for u in &mut site_units {
        let asks = matches!(
            &u.work,
            super::Work::Site(super::site::SiteAction::Install {
                certificate: Some(_),
                ..
            })
        );
        if asks && firewall_planned {
            u.after.push(super::UnitId::Firewall);
        }
    }
    out.units.extend(site_units);
    Ok(out)
}

/// The firewall unit, when the repo has `ufw/` and UFW differs from it. Not observed: nothing is
/// planned (a firewall read as empty would plan deleting every rule), and the plan says so. A
/// change the SSH lockout guard refuses is planned refused: the unit fails with why, and nothing
/// of the firewall changes.
fn firewall_unit(
    desired: &HostSpec,
    observed: &Observed,
    ctx: &PlanContext,
    notes: &mut Vec<String>,
) -> Option<Unit> {
    let spec = desired.firewall.as_ref()?;
    let host = match &observed.firewall {
        Seen::Observed(h) => h,
        Seen::NotObserved(why) => {
            // Said as a failed unit, not a quiet note: the rules in the repo are not in force.
            return Some(Unit {
                id: super::UnitId::Firewall,
                after: Vec::new(),
                work: super::Work::Firewall(super::unit::FirewallWork {
                    spec: spec.clone(),
                    plan: Default::default(),
                    refused: Some(format!(
                        "firewall not observed ({why}): {} is not applied, nothing of the firewall was changed",
                        spec.file
                    )),
                }),
            });
        }
    };
    let plan = super::firewall::plan_firewall(spec, &host.state, ctx.firewall.options);
    notes.extend(plan.warnings.iter().map(|w| format!("firewall: {w}")));
    notes.extend(
        plan.unmanaged
            .iter()
            .map(|r| format!("firewall: left alone (not gitmoor's): {r}")),
    );
    if plan.is_empty() {
        return None;
    }
    // Only the Docker guard's block to load again: no rule changes, nothing the guard judges.
    let refused = if ctx.firewall.allow_ssh_lockout || plan.steps.is_empty() {
        None
    } else {
        super::firewall::lockout_guard(&plan, &host.ssh_ports, &host.ssh_peers).err()
    };
    Some(Unit {
        id: super::UnitId::Firewall,
        after: Vec::new(),
        work: super::Work::Firewall(super::unit::FirewallWork {
            spec: spec.clone(),
            plan,
            refused,
        }),
    })
}
