//! The Docker executor: turns planned actions into Docker Engine API calls (bollard), making
//! containers, networks and volumes exactly as docker compose v2 would name and label them.
//!
//! Written against Debian's dockerd 20.10 (API 1.41): the version is negotiated at connect time, a
//! container is created with one network endpoint and connected to the others before it starts,
//! and networks are looked up by name and label before one is created (1.41 allows duplicates).
//! No function here removes a volume: data outlives every container and every stack.

mod api_version;
mod body;
pub mod build;
mod build_request;
mod container;
pub mod context;
mod image;
pub(crate) mod inherit;
mod neighbor;
mod network;
pub mod registry;
mod wait;

pub use body::create_body;
pub use build_request::BuildRequest;
pub use context::{context_tar, request_tar};
pub use image::split_image_ref;
pub use registry::{local_digest_matches, RegistryAuth};

use anyhow::anyhow;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, StopContainerOptionsBuilder};
use bollard::Docker;
use std::time::Duration;

/// bollard's bound on one request (its own default for the connections it makes itself).
const CLIENT_TIMEOUT_SECS: u64 = 120;

/// How long one image build may take unless configured otherwise (config `build_timeout_secs`).
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Talks to one Docker daemon on behalf of the apply step.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    pub docker: Docker,
    /// Bound on one image build: a build that hangs (a `RUN` waiting on the network forever)
    /// would otherwise hold the one reconcile the daemon runs at a time, and so every stack.
    build_timeout: Duration,
    /// The daemon runs on this machine (a unix socket): its bridges are this host's interfaces,
    /// so a started container's address can be given to the host's neighbour table.
    local: bool,
}

impl DockerExecutor {
    /// Connects to dockerd and settles the API version: the lower of bollard's and dockerd's,
    /// learnt from a ping on a unix socket (`api_version.rs`), else from `/version`.
    ///
    /// `docker_host`: `unix:///path`, a bare socket path, `tcp://host:port` or `http://...`;
    /// None uses `DOCKER_HOST` when set and not empty, else `unix:///var/run/docker.sock`.
    pub async fn connect(docker_host: Option<&str>) -> anyhow::Result<Self> {
        let shown = match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) if host.starts_with('/') => format!("unix://{host}"),
            Some(host) => host.to_string(),
            None => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string()),
        };
        let unreachable = |e: DockerError| {
            anyhow!(
                "cannot reach the Docker daemon at {shown}: {e}; is dockerd running? \
                 (check `systemctl status docker`, that this user may open the socket, \
                 and the docker host setting or DOCKER_HOST)"
            )
        };
        let pinged = match shown.strip_prefix("unix://") {
            Some(path) => api_version::ping_api_version(std::path::Path::new(path)).await,
            None => None,
        };
        let docker = match pinged {
            Some(server) => {
                let version = api_version::version_to_speak(server, *bollard::API_DEFAULT_VERSION);
                Docker::connect_with_unix(&shown, CLIENT_TIMEOUT_SECS, &version)
                    .map_err(unreachable)?
            }
            None => Docker::connect_with_host(&shown)
                .map_err(unreachable)?
                .negotiate_version()
                .await
                .map_err(unreachable)?,
        };
        tracing::debug!(docker_host = %shown, api_version = %docker.client_version(), "connected to dockerd");
        Ok(Self {
            docker,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            local: shown.starts_with("unix://"),
        })
    }

    /// The same executor with another bound on each image build (config `build_timeout_secs`;
    /// [`DEFAULT_BUILD_TIMEOUT`] until set).
    pub fn with_build_timeout(mut self, timeout: Duration) -> Self {
        self.build_timeout = timeout;
        self
    }

    /// The bound on one image build.
    pub fn build_timeout(&self) -> Duration {
        self.build_timeout
    }

    /// Starts a created (or stopped) container. Already running is fine. Once it runs, the host
    /// is given its address on each bridge, so that connections to its published ports made
    /// while it started do not wait a second for the kernel's next ARP request (neighbor.rs).
    pub async fn start(&self, id: &str) -> anyhow::Result<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => {
                self.announce_to_host(id).await;
                Ok(())
            }
            Err(e) if status_code(&e) == Some(304) => Ok(()),
            Err(e) => {
                let name = self.display_name(id).await;
                Err(anyhow!(
                    "starting container {name} failed: {}; fix the cause (a published port \
                     already in use, a missing bind-mount source, ...) and reconcile again",
                    docker_message(&e)
                ))
            }
        }
    }

    /// Stops a container (SIGTERM, then SIGKILL after `grace_secs`) and removes it. Its volumes
    /// are kept (`v=false`), anonymous ones included. A container that is already gone is fine.
    pub async fn stop_and_remove(&self, id: &str, grace_secs: i64) -> anyhow::Result<()> {
        let grace = i32::try_from(grace_secs.max(0)).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::new().t(grace).build();
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if status_code(&e) == Some(304) => {}
            Err(e) if status_code(&e) == Some(404) => return Ok(()),
            Err(e) => {
                return Err(anyhow!(
                    "stopping container {id} failed: {}; stop it by hand (`docker stop {id}`) \
                     and reconcile again",
                    docker_message(&e)
                ))
            }
        }
        let remove = RemoveContainerOptionsBuilder::new()
            .v(false)
            .force(true)
            .build();
        match self.docker.remove_container(id, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            // "removal of container … is already in progress": someone else finishes it.
            Err(e)
                if status_code(&e) == Some(409) && docker_message(&e).contains("in progress") =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow!(
                "removing container {id} failed: {}; remove it by hand (`docker rm -f {id}`, \
                 which keeps its volumes) and reconcile again",
                docker_message(&e)
            )),
        }
    }

    /// The container's name for a message (its id when it cannot be inspected).
    async fn display_name(&self, id: &str) -> String {
        match self.docker.inspect_container(id, None).await {
            Ok(info) => info
                .name
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.to_string()),
            Err(_) => id.to_string(),
        }
    }
}

/// The HTTP status of a daemon error response, if it was one.
pub(crate) fn status_code(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon's own message (without bollard's "Docker responded with status code" prefix).
pub(crate) fn docker_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        DockerError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}
