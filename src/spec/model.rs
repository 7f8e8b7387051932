//! The desired state, typed: what one commit of the managed repo asks the host to run.
//!
//! `HostSpec` is the root. It has room for what later issues add (Nginx sites, the firewall), so
//! the planner and the status endpoint grow by fields, not by new pipelines.
//!
//! Everything here is already interpolated and resolved: docker object names, absolute bind-mount
//! sources, environment from `env_file`. Values that came from the secrets dir are `Secret`s, whose
//! `Debug` prints `***`, so a stray `{:?}` in a log line cannot leak them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The whole host as one commit describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSpec {
    /// Stacks by name (the folder name under `compose/`).
    pub stacks: BTreeMap<String, StackSpec>,
    // Later issues: `sites: Vec<SiteSpec>` (nginx/), `firewall: Option<FirewallSpec>` (ufw/).
}

/// One compose project: `compose/<name>/compose.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSpec {
    pub name: String,
    /// Repo path of the compose file, for messages.
    pub compose_file: String,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Networks by their compose key (`default` included when a service uses it).
    pub networks: BTreeMap<String, NetworkSpec>,
    /// Named volumes by their compose key.
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// Whether `<secrets_dir>/<name>.env` exists (it is optional for stacks that need no secret).
    pub has_secrets_file: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// Docker name: `<stack>_<key>`.
    pub name: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    /// Docker name: `<stack>_<key>`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A string that may carry a secret value: hashed and passed to Docker, never printed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One service, resolved into what Docker will be asked to create. Field names follow compose so
/// that a plan's reason ("environment.GREETING changed") reads in the user's own vocabulary.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ServiceSpec {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Final environment (env_file first, then `environment:`), values possibly secret.
    pub environment: BTreeMap<String, Secret>,
    pub ports: Vec<PortSpec>,
    pub volumes: Vec<MountSpec>,
    /// Networks by compose key, with the aliases the container gets there (the service name
    /// always, as compose does).
    pub networks: BTreeMap<String, NetworkAttach>,
    pub depends_on: BTreeMap<String, DependsCondition>,
    pub healthcheck: Option<HealthcheckSpec>,
    pub restart: Option<String>,
    /// User labels (compose and gitmoor labels are added when the container is made).
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    /// Mount point -> options (e.g. `size=64m`).
    pub tmpfs: BTreeMap<String, String>,
    /// `host:ip` entries.
    pub extra_hosts: Vec<String>,
    pub logging: Option<LoggingSpec>,
    /// Bytes.
    pub mem_limit: Option<i64>,
    /// CPUs × 1e9.
    pub nano_cpus: Option<i64>,
    /// Content hashes of repo files the container reads (bind mounts, env files), keyed by the
    /// path as written, so an edit to a mounted config file recreates the container.
    pub repo_inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// Empty means all interfaces (as `docker run -p 8080:80`).
    pub host_ip: String,
    /// None: Docker picks a free port.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountSpec {
    /// A named volume of the stack (`source` is the docker volume name) or an anonymous one
    /// (`source` empty).
    Volume {
        source: String,
        target: String,
        read_only: bool,
    },
    /// A host path: absolute as written, or a repo path materialised under the state dir.
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NetworkAttach {
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DependsCondition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckSpec {
    /// Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggingSpec {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}
