//! What one image build needs, shared by the context packer (`context.rs`, which files go in
//! the tar) and the builder (`build.rs`, which sends it): its own file so neither imports the
//! other.

use crate::spec::model::Secret;
use std::collections::BTreeMap;

/// One image to build. Self-contained: the planner fills it from the compose model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildRequest {
    /// The tag the image gets (`<stack>-<service>` unless `image:` names one).
    pub tag: String,
    /// The context directory as a repo path (`compose/api/app`; "" is the repo root).
    pub context_dir: String,
    /// The Dockerfile, relative to the context (`Dockerfile`, `docker/prod.Dockerfile`, or
    /// `../Dockerfile` for one outside the context, which is then sent under another name).
    pub dockerfile: String,
    /// Build args (`ARG`). Their values never appear in a log line or an error: build output
    /// that echoes one is shown with `***` in its place.
    pub args: BTreeMap<String, Secret>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
    /// Labels the image gets (each becomes a `LABEL` step at the end of the build).
    pub labels: BTreeMap<String, String>,
    /// The service's `platform:` (`linux/amd64`): `FROM` images are pulled for it, as compose
    /// builds for the platform the container is then created with.
    pub platform: Option<String>,
}
