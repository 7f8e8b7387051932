//! Which images a plan must build or pull before any container changes, and why. Pure, like the
//! rest of the planner: a build is skipped when the local image already carries the hash of
//! exactly this build (context tree, Dockerfile, args, target, labels), so a commit that touches
//! another stack rebuilds nothing.

use super::diff::{normalize_image, PlanError};
use crate::observe::Observed;
use crate::spec::model::{BuildSpec, HostSpec, PullPolicy, ServiceSpec};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Image label: the hash of the build that made the image.
pub const BUILD_HASH: &str = "io.gitmoor.build-hash";
/// Image label: the content hash of the build context the image was made from.
pub const CONTEXT_TREE: &str = "io.gitmoor.context-tree";

/// One image to build from the managed repo.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildStep {
    pub stack: String,
    pub service: String,
    /// The tag the image gets (the service's `image:`, or `<stack>-<service>:latest`).
    pub tag: String,
    pub build: BuildSpec,
    /// Image labels: the user's `build.labels` plus the two hashes above.
    pub labels: BTreeMap<String, String>,
    pub reason: String,
}

/// What to fetch, and for each (stack, service) whose image will change, the reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImagePlan {
    pub pulls: Vec<String>,
    /// Why each pull happens, by image.
    pub pull_reasons: BTreeMap<String, String>,
    pub builds: Vec<BuildStep>,
    /// (stack, service) -> why its container must be recreated for its image.
    pub image_changes: BTreeMap<(String, String), String>,
}

pub fn build_hash(b: &BuildSpec) -> String {
    let json = serde_json::to_string(b).unwrap_or_default();
    hex::encode(&Sha256::digest(json.as_bytes())[..16])
}

pub fn plan_images(desired: &HostSpec, observed: &Observed) -> Result<ImagePlan, PlanError> {
    let mut out = ImagePlan::default();
    let mut pulls = BTreeSet::new();
    let mut built: BTreeSet<String> = BTreeSet::new();
    for stack in desired.stacks.values() {
        for (name, svc) in &stack.services {
            let key = (stack.name.clone(), name.clone());
            let tag = normalize_image(&svc.image);
            let present = observed.images.contains_key(&tag);
            match (&svc.build, svc.pull_policy) {
                (None, PullPolicy::Build) => {
                    return Err(PlanError(format!(
                        "{}: services.{name}.pull_policy: build needs a build: section",
                        stack.compose_file
                    )))
                }
                (Some(b), _) => {
                    if let Some(reason) = build_reason(b, &tag, observed) {
                        if built.insert(tag.clone()) {
                            out.builds.push(build_step(&stack.name, name, svc, b, &reason));
                        }
                        out.image_changes.insert(key, format!("image rebuilt: {reason}"));
                    }
                }
                (None, PullPolicy::Never) if !present => {
                    return Err(PlanError(format!(
                        "{}: services.{name}: image {} is not on the host and pull_policy is never; load or build it on the host, or change pull_policy",
                        stack.compose_file, svc.image
                    )))
                }
                (None, _) if !present => {
                    pulls.insert(svc.image.clone());
                    out.pull_reasons.insert(svc.image.clone(), "not on the host".into());
                }
                (None, PullPolicy::Always) => {
                    if let Some(moved) = tag_moved(&tag, observed) {
                        pulls.insert(svc.image.clone());
                        out.pull_reasons.insert(svc.image.clone(), moved.clone());
                        out.image_changes.insert(key, moved);
                    }
                }
                (None, _) => {}
            }
        }
    }
    out.pulls = pulls.into_iter().collect();
    Ok(out)
}

/// Why the image must be built, or None when the local image is this very build.
fn build_reason(b: &BuildSpec, tag: &str, observed: &Observed) -> Option<String> {
    if !observed.images.contains_key(tag) {
        return Some(format!("image {tag} not built yet"));
    }
    let labels = observed.image_labels.get(tag);
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if label(BUILD_HASH) == Some(build_hash(b).as_str()) {
        return None;
    }
    Some(match label(CONTEXT_TREE) {
        None => format!("image {tag} was not built by gitmoor from {}", b.context),
        Some(old) if old != b.context_tree => format!(
            "build context {} changed (tree {} → {})",
            b.context,
            short(old),
            short(&b.context_tree)
        ),
        Some(_) => format!("build args, target or Dockerfile of {} changed", b.context),
    })
}

fn build_step(
    stack: &str,
    service: &str,
    svc: &ServiceSpec,
    b: &BuildSpec,
    reason: &str,
) -> BuildStep {
    let mut labels = b.labels.clone();
    labels.insert(BUILD_HASH.to_string(), build_hash(b));
    labels.insert(CONTEXT_TREE.to_string(), b.context_tree.clone());
    BuildStep {
        stack: stack.to_string(),
        service: service.to_string(),
        tag: svc.image.clone(),
        build: b.clone(),
        labels,
        reason: reason.to_string(),
    }
}

/// `pull_policy: always`: the reason when the registry's digest for the tag (looked up before
/// planning) is none of the local image's repo digests.
fn tag_moved(tag: &str, observed: &Observed) -> Option<String> {
    let remote = observed.remote_digests.get(tag)?;
    let local = observed.image_digests.get(tag).cloned().unwrap_or_default();
    if local
        .iter()
        .any(|d| d.rsplit_once('@').is_some_and(|(_, x)| x == remote))
    {
        return None;
    }
    let was = local
        .first()
        .and_then(|d| d.rsplit_once('@'))
        .map(|(_, x)| short(x).to_string());
    Some(format!(
        "tag {tag} moved on the registry ({} → {})",
        was.as_deref().unwrap_or("none"),
        short(remote)
    ))
}

fn short(h: &str) -> &str {
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    &h[..h.len().min(12)]
}
