//! Which images a plan must build or pull before any container changes, and why. Pure, like the
//! rest of the planner: a build is skipped when the local image already carries the hash of
//! exactly this build (context tree, Dockerfile, args, target, labels), so a commit that touches
//! another stack rebuilds nothing. Build args are often secrets (`NPM_TOKEN`), and image labels
//! are public: the hash is keyed with the host's key (`hashkey`).

use super::host::PlanError;
use crate::hashkey::HashKey;
use crate::labels;
use crate::observe::Observed;
use crate::spec::model::{BuildSpec, HostSpec, PullPolicy, ServiceSpec};
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

/// The keyed hash of one build: the build section, plus the service's `platform:` when it sets
/// one (an image of another platform must be built anew).
pub fn build_hash(b: &BuildSpec, platform: Option<&str>, key: &HashKey) -> String {
    let json = serde_json::to_string(b).unwrap_or_default();
    let platform = wanted_platform(platform).unwrap_or_default();
    hex::encode(&key.mac(&[b"gitmoor build", json.as_bytes(), platform.as_bytes()])[..16])
}

/// A service's `platform:`, trimmed and lowercased; None when it sets none.
fn wanted_platform(platform: Option<&str>) -> Option<String> {
    platform
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
}

/// Whether an image of platform `have` (`os/arch[/variant]`, from the engine) serves `want`
/// (compose's `platform:`): same OS and architecture, and the same variant when both name one.
fn platform_serves(have: &str, want: &str) -> bool {
    let have: Vec<String> = have.split('/').map(str::to_ascii_lowercase).collect();
    let want: Vec<&str> = want.split('/').collect();
    let part = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_default();
    part(&have, 0) == want.first().copied().unwrap_or_default()
        && part(&have, 1) == want.get(1).copied().unwrap_or_default()
        && match (have.get(2), want.get(2)) {
            (Some(h), Some(w)) => h == w,
            _ => true,
        }
}

pub fn plan_images(
    desired: &HostSpec,
    observed: &Observed,
    hash_key: &HashKey,
) -> Result<ImagePlan, PlanError> {
    let mut out = ImagePlan::default();
    let mut pulls = BTreeSet::new();
    let mut built: BTreeSet<String> = BTreeSet::new();
    one_platform_per_image(desired)?;
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
                    if let Some(reason) = build_reason(b, svc, &tag, observed, hash_key) {
                        if built.insert(tag.clone()) {
                            out.builds
                                .push(build_step(&stack.name, name, svc, b, &reason, hash_key));
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
                (None, policy) if wrong_platform(svc, &tag, observed).is_some() => {
                    let why = wrong_platform(svc, &tag, observed).unwrap_or_default();
                    if policy == PullPolicy::Never {
                        return Err(PlanError(format!(
                            "{}: services.{name}: {why} and pull_policy is never; load an image for that platform on the host, or change pull_policy",
                            stack.compose_file
                        )));
                    }
                    pulls.insert(svc.image.clone());
                    out.pull_reasons.insert(svc.image.clone(), why.clone());
                    out.image_changes.insert(key, why);
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

/// The reason to pull `svc`'s image again when the local one is of another platform than its
/// `platform:` asks; None when it sets none, or the platform is right or unknown.
fn wrong_platform(svc: &ServiceSpec, tag: &str, observed: &Observed) -> Option<String> {
    let want = wanted_platform(svc.platform.as_deref())?;
    let have = observed.image_platforms.get(tag)?;
    (!platform_serves(have, &want))
        .then(|| format!("image {tag} is {have}, the service wants {want}"))
}

/// One tag is one image: two services that ask different platforms of the same tag cannot both
/// be served, and would fail at the create call. Said before anything changes.
fn one_platform_per_image(desired: &HostSpec) -> Result<(), PlanError> {
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    for stack in desired.stacks.values() {
        for (name, svc) in &stack.services {
            let Some(want) = wanted_platform(svc.platform.as_deref()) else {
                continue;
            };
            let here = format!("{}: services.{name}", stack.compose_file);
            match seen.get(&normalize_image(&svc.image)) {
                Some((other, p)) if *p != want => {
                    return Err(PlanError(format!(
                        "{here}: platform {want} for image {}, but {other} asks {p} of the same tag; give each platform its own tag",
                        svc.image
                    )))
                }
                Some(_) => {}
                None => {
                    seen.insert(normalize_image(&svc.image), (here, want));
                }
            }
        }
    }
    Ok(())
}

/// Why the image must be built, or None when the local image is this very build.
fn build_reason(
    b: &BuildSpec,
    svc: &ServiceSpec,
    tag: &str,
    observed: &Observed,
    key: &HashKey,
) -> Option<String> {
    if !observed.images.contains_key(tag) {
        return Some(format!("image {tag} not built yet"));
    }
    let image_labels = observed.image_labels.get(tag);
    let label = |k: &str| image_labels.and_then(|l| l.get(k)).map(String::as_str);
    if label(BUILD_HASH) == Some(build_hash(b, svc.platform.as_deref(), key).as_str()) {
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
        // Hashed under another scheme or key: the hashes say nothing about what changed. Another
        // key may be another gitmoor's (its own state_dir) that builds the same tag: then the two
        // rebuild in turn, and this reason says why.
        Some(_) if label(labels::HASH) != Some(key.scheme_label().as_str()) => {
            match label(labels::HASH) {
                Some(other) if other.starts_with(&format!("{}:", crate::hashkey::SCHEME)) => {
                    format!("image {tag} was built under another hash key (another gitmoor's state_dir, or an earlier hash.key)")
                }
                other => hash_scheme_changed(other),
            }
        }
        Some(_) => format!(
            "build args, target, platform or Dockerfile of {} changed",
            b.context
        ),
    })
}

fn build_step(
    stack: &str,
    service: &str,
    svc: &ServiceSpec,
    b: &BuildSpec,
    reason: &str,
    key: &HashKey,
) -> BuildStep {
    let mut labels = b.labels.clone();
    labels.insert(
        BUILD_HASH.to_string(),
        build_hash(b, svc.platform.as_deref(), key),
    );
    labels.insert(CONTEXT_TREE.to_string(), b.context_tree.clone());
    labels.insert(labels::HASH.to_string(), key.scheme_label());
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

/// The reason for a recreate or rebuild when an object's hashes were made under another scheme
/// (plain sha256, before `hashkey`) or another key (another gitmoor instance's state dir, or a
/// state dir made anew): honest, and said once, since the new object carries this scheme.
pub(crate) fn hash_scheme_changed(was: Option<&str>) -> String {
    match was {
        Some(w) if w.starts_with(&format!("{}:", crate::hashkey::SCHEME)) => {
            "gitmoor's hash key changed (another state_dir or a new hash.key; one-time)".into()
        }
        _ => "gitmoor's hash scheme changed (one-time)".into(),
    }
}

fn short(h: &str) -> &str {
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    &h[..h.len().min(12)]
}

/// `postgres` → `postgres:latest`, `docker.io/library/x:1` → `x:1`: the form image listings use.
pub fn normalize_image(image: &str) -> String {
    let mut s = image.trim();
    for p in [
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ] {
        if let Some(rest) = s.strip_prefix(p) {
            s = rest;
            break;
        }
    }
    if s.contains('@') {
        return s.to_string();
    }
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') {
        s.to_string()
    } else {
        format!("{s}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::StackSpec;

    /// One stack `app` whose services are `(name, image, platform, pull_policy)`.
    fn host(services: &[(&str, &str, Option<&str>, PullPolicy)]) -> HostSpec {
        let mut stack = StackSpec {
            name: "app".into(),
            compose_file: "compose/app/compose.yaml".into(),
            ..Default::default()
        };
        for (name, image, platform, policy) in services {
            stack.services.insert(
                name.to_string(),
                ServiceSpec {
                    image: image.to_string(),
                    platform: platform.map(str::to_string),
                    pull_policy: *policy,
                    ..Default::default()
                },
            );
        }
        HostSpec {
            stacks: BTreeMap::from([("app".to_string(), stack)]),
            ..HostSpec::default()
        }
    }

    fn plan_images_k(desired: &HostSpec, observed: &Observed) -> Result<ImagePlan, PlanError> {
        plan_images(desired, observed, &KEY)
    }

    fn with_local(image: &str, platform: &str) -> Observed {
        let mut o = Observed::default();
        o.images.insert(image.into(), "sha256:1".into());
        o.image_platforms.insert(image.into(), platform.into());
        o
    }

    #[test]
    fn platforms_match_on_os_and_arch_and_variant_when_both_say() {
        assert!(platform_serves("linux/amd64", "linux/amd64"));
        assert!(platform_serves("linux/arm64/v8", "linux/arm64"));
        assert!(platform_serves("linux/arm/v7", "linux/arm/v7"));
        assert!(!platform_serves("linux/arm/v6", "linux/arm/v7"));
        assert!(!platform_serves("linux/amd64", "linux/arm64"));
        assert!(!platform_serves("windows/amd64", "linux/amd64"));
    }

    const KEY: HashKey = HashKey::from_bytes([3; 32]);

    #[test]
    fn the_build_hash_counts_the_platform_only_when_one_is_set() {
        let b = BuildSpec::default();
        let k = &KEY;
        assert_eq!(build_hash(&b, None, k), build_hash(&b, Some("  "), k));
        assert_ne!(
            build_hash(&b, None, k),
            build_hash(&b, Some("linux/arm64"), k)
        );
        assert_eq!(
            build_hash(&b, Some("linux/arm64"), k),
            build_hash(&b, Some("Linux/ARM64"), k)
        );
    }

    /// Build args are secrets: the hash on the image is keyed, never the plain sha256 of the
    /// section, and another key gives another hash.
    #[test]
    fn the_build_hash_is_keyed() {
        use sha2::{Digest, Sha256};
        let mut b = BuildSpec::default();
        b.args
            .insert("NPM_TOKEN".into(), crate::spec::model::Secret("abc".into()));
        let json = serde_json::to_string(&b).unwrap();
        let plain = hex::encode(&Sha256::digest(json.as_bytes())[..16]);
        assert_ne!(build_hash(&b, None, &KEY), plain);
        assert_eq!(build_hash(&b, None, &KEY), build_hash(&b, None, &KEY));
        assert_ne!(
            build_hash(&b, None, &KEY),
            build_hash(&b, None, &HashKey::from_bytes([4; 32]))
        );
    }

    #[test]
    fn a_local_image_of_another_platform_is_pulled_again_with_the_reason() {
        let spec = host(&[("web", "x:1", Some("linux/arm64"), PullPolicy::Missing)]);
        let p = plan_images_k(&spec, &with_local("x:1", "linux/amd64")).unwrap();
        assert_eq!(p.pulls, vec!["x:1"]);
        let why = "image x:1 is linux/amd64, the service wants linux/arm64";
        assert_eq!(p.pull_reasons["x:1"], why);
        assert_eq!(p.image_changes[&("app".into(), "web".into())], why);
        // The right platform, or none asked: nothing to pull.
        let p = plan_images_k(&spec, &with_local("x:1", "linux/arm64/v8")).unwrap();
        assert!(p.pulls.is_empty());
        let spec_any = host(&[("web", "x:1", None, PullPolicy::Missing)]);
        assert!(plan_images_k(&spec_any, &with_local("x:1", "linux/amd64"))
            .unwrap()
            .pulls
            .is_empty());
        // pull_policy: never cannot fix it: said before anything changes.
        let never = host(&[("web", "x:1", Some("linux/arm64"), PullPolicy::Never)]);
        let e = plan_images_k(&never, &with_local("x:1", "linux/amd64")).unwrap_err();
        assert!(
            e.0.contains("services.web: image x:1 is linux/amd64"),
            "{e}"
        );
        assert!(e.0.contains("pull_policy is never"), "{e}");
    }

    #[test]
    fn two_platforms_of_one_tag_are_refused() {
        let spec = host(&[
            ("a", "x:1", Some("linux/amd64"), PullPolicy::Missing),
            ("b", "x:1", Some("linux/arm64"), PullPolicy::Missing),
        ]);
        let e = plan_images_k(&spec, &Observed::default()).unwrap_err();
        assert!(
            e.0.contains("services.b: platform linux/arm64 for image x:1")
                && e.0.contains("services.a asks linux/amd64"),
            "{e}"
        );
        let same = host(&[
            ("a", "x:1", Some("linux/amd64"), PullPolicy::Missing),
            ("b", "x:1", Some("linux/amd64"), PullPolicy::Missing),
        ]);
        assert!(plan_images_k(&same, &Observed::default()).is_ok());
    }
}
