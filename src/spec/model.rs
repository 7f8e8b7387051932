//! The desired state, typed: what one commit of the managed repo asks the host to run.
//!
//! `HostSpec` is the root. It has room for what later issues add (Nginx sites, the firewall), so
//! the planner and the status endpoint grow by fields, not by new pipelines.
//!
//! Everything here is already interpolated and resolved: docker object names, absolute bind-mount
//! sources, environment from `env_file`. Values that came from the secrets dir are `Secret`s, whose
//! `Debug` prints `***`, so a stray `{:?}` in a log line cannot leak them.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The whole host as one commit describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSpec {
    /// Stacks by name (the folder name under `compose/`).
    pub stacks: BTreeMap<String, StackSpec>,
    /// `ufw/rules.yaml`; None when the repo has no `ufw/` folder (the firewall is left alone).
    pub firewall: Option<crate::spec::ufw::FirewallSpec>,
    /// Nginx sites by name (the file stem under `nginx/`), each upstream already resolved to
    /// the address Nginx connects to (`Resolved::address`, beside what the file wrote).
    pub sites: BTreeMap<String, crate::spec::nginx::SiteSpec>,
}

/// One compose project: `compose/<name>/compose.yaml`.
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// Services of the file left out because none of their `profiles:` is enabled, with those
    /// profiles (so a removal can say why).
    pub inactive_services: BTreeMap<String, Vec<String>>,
    /// The values of the stack's host secrets (`<secrets_dir>/<name>.env`): text the apply did
    /// not write (healthcheck output, engine errors) is redacted with them before it is shown.
    pub host_secrets: Vec<Secret>,
}

/// A network of the stack. Fields added after the first release are left out of the serialised
/// form while they have their default value, so a network that does not use them keeps its hash
/// (and is not recreated when gitmoor is upgraded).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NetworkSpec {
    /// Docker name: `<stack>_<key>`, or the `name:` given in the file (as is).
    pub name: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// `external: true`: made outside gitmoor; never created, changed or removed by it.
    #[serde(skip_serializing_if = "is_false")]
    pub external: bool,
    /// None: Docker's default (`bridge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamSpec>,
    #[serde(skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
}

/// `ipam:` of a network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IpamSpec {
    /// None: Docker's default driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub config: Vec<IpamPool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// One address pool: `subnet: 172.28.0.0/16`, optionally `ip_range` and `gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IpamPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct VolumeSpec {
    /// Docker name: `<stack>_<key>`, or the `name:` given in the file (as is).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `external: true`: made outside gitmoor; never created by it (and no volume is ever
    /// removed by gitmoor anyway).
    #[serde(skip_serializing_if = "is_false")]
    pub external: bool,
    /// None: Docker's default (`local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
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

/// The name of a service's container when `container_name:` is not set: compose's
/// `<stack>-<service>-1` (one replica, so always `-1`). Named the way compose names it so that
/// `docker compose ps`, `links:` aliases and the containers gitmoor starts agree. The one place
/// this rule is written.
pub fn default_container_name(stack: &str, service: &str) -> String {
    format!("{stack}-{service}-1")
}

/// One service, resolved into what Docker will be asked to create. Field names follow compose so
/// that a plan's reason ("environment.GREETING changed") reads in the user's own vocabulary.
///
/// Every field takes part in the config hash (it is serialised whole). Fields added after the first
/// release are left out while they hold their default, so a service that does not use them keeps
/// its hash and is not recreated by an upgrade of gitmoor.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ServiceSpec {
    /// The image to run: as written, or `<stack>-<service>:latest` for a `build:` without `image:`.
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
    /// Content hashes of the files the container reads, so an edit recreates exactly the services
    /// that read them: repo files (bind mounts, env files, `configs:`) keyed by the path as written,
    /// and secret files of the secrets dir (`secrets:`) keyed by their host path (hash only).
    pub repo_inputs: BTreeMap<String, String>,
    /// `build:`: the image is built from the managed repo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
    #[serde(skip_serializing_if = "is_default")]
    pub pull_policy: PullPolicy,
    /// `container_name:`; None means [`default_container_name`] (`<stack>-<service>-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// `expose:`, as Docker's `port/protocol` keys (`5432/tcp`), ranges expanded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds (Docker's `StopTimeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Name (`nofile`) -> limits.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, UlimitSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// Docker's network mode: `host`, `none`, `bridge` or `container:<name>` (compose's
    /// `service:<svc>` resolved to that service's container name). When set, `networks` is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Docker's PID mode: `host` or `container:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// Docker's IPC mode: `host`, `private`, `shareable`, `none` or `container:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// `platform:` (`linux/amd64`): passed when the image is pulled and the container created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `stdin_open:` (Docker's `OpenStdin`).
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    /// `runtime:` (an OCI runtime registered with dockerd, e.g. `runc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// `pids_limit:` or `deploy.resources.limits.pids` (Docker's `PidsLimit`; -1: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// `volumes:` bind mounts relabelled for SELinux: container path -> `z` (shared) or `Z`
    /// (private). Kept beside `volumes` rather than in `MountSpec`, so the mounts of a service
    /// that relabels nothing serialise (and hash) as before; named `volumes.selinux` so that a
    /// reason reads "volumes.selinux changed".
    #[serde(rename = "volumes.selinux", skip_serializing_if = "BTreeMap::is_empty")]
    pub bind_selinux: BTreeMap<String, String>,
    /// `links:` as Docker's `container:alias` entries, three per link as compose v2 writes them
    /// (`<container>:<alias>`, `<container>:<service>-1`, `<container>:<stack>-<service>-1`).
    /// They go on every network endpoint of the container (a name only this container resolves)
    /// and in `HostConfig.Links`, as compose sends them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Dependencies whose recreate restarts this service: `depends_on.<x>.restart: true`, and
    /// the dependency a link implies (compose gives it `restart: true`). Out of the config hash,
    /// as compose leaves `depends_on` out of its own: the flag changes nothing in the container,
    /// only when the planner replaces it, so setting it must not recreate anything.
    #[serde(skip)]
    pub depends_on_restart: BTreeSet<String>,
    /// Dependencies marked `required: false`: one that its profiles leave out is skipped (as
    /// compose skips it) instead of refused. Out of the config hash for the same reason.
    #[serde(skip)]
    pub depends_on_optional: BTreeSet<String>,
    /// The repo files and folders the service mounts (bind mounts and `configs:`), each served
    /// from a content-addressed copy: host path of the copy -> repo path it is copied from. The
    /// host path holds the content id, so it changes exactly when the content does (the mount in
    /// `volumes` then differs, and the container is recreated); an unchanged copy stays put under
    /// a running container. Out of the hashes: `volumes` and `repo_inputs` already hold it.
    #[serde(skip)]
    pub repo_copies: BTreeMap<String, String>,
    /// The stack's data folders the service mounts (a relative bind whose source is not in the
    /// commit): the path as written (`./pgdata`) -> host path (`<data_dir>/<stack>/pgdata`).
    /// Made on first use, never rewritten nor removed by gitmoor. Out of the hashes: `volumes`
    /// holds the host path.
    #[serde(skip)]
    pub data_folders: BTreeMap<String, String>,
}

/// `build:` of a service. The context is a folder of the managed repo, sent to the engine from the
/// commit's tree.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BuildSpec {
    /// Repo path of the context folder (`compose/api/app`); inside the repo, present in the commit.
    pub context: String,
    /// The Dockerfile's path relative to the context (default `Dockerfile`).
    pub dockerfile: String,
    /// Build args, interpolated (a bare `- NAME` takes the stack variable of that name).
    pub args: BTreeMap<String, Secret>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `Snapshot::content_id` of the context folder: changes exactly when a file in it changes.
    pub context_tree: String,
}

/// `pull_policy:`; compose's default is `missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull at every deploy (and notice a moved tag).
    Always,
    /// Pull only when the image is not on the host.
    #[default]
    Missing,
    /// Never pull: the image must be on the host (or built).
    Never,
    /// Build the image (from `build:`) at every deploy, never pull it.
    Build,
}

/// One `ulimits:` entry; `nproc: 65535` gives soft = hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UlimitSpec {
    pub soft: i64,
    pub hard: i64,
}

/// One `devices:` entry: `/dev/ttyUSB0:/dev/ttyUSB0:rwm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSpec {
    pub host: String,
    pub container: String,
    /// cgroup permissions, `rwm` by default.
    pub permissions: String,
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
    /// A static address on this network (`ipv4_address:`); the network needs an `ipam` subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DependsCondition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckSpec {
    /// Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`; empty when the file
    /// gives no `test:` (the image's own check runs, with the timings given here).
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
