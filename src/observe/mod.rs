//! What is on the host now, as plain data the planner compares against. Filled by a handful of
//! listing calls per reconcile (`docker.rs`), never one call per container.

pub mod certs;
pub mod data;
pub mod docker;
pub mod for_plan;
pub mod images;
pub mod nginx;
pub mod ufw;
pub mod ufw_parse;

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Containers carrying `io.gitmoor.managed=true`.
    pub containers: Vec<ObservedContainer>,
    /// Networks carrying `io.gitmoor.managed=true`.
    pub networks: Vec<ObservedNetwork>,
    /// Volumes carrying `io.gitmoor.managed=true`.
    pub volumes: Vec<ObservedVolume>,
    /// The local images the commit names, by the name the plan looks them up by
    /// (`plan::normalize_image`, e.g. `example-backend:1`) -> image id (`images.rs`; filled for
    /// a plan only, not by the observation for `/status`).
    pub images: BTreeMap<String, String>,
    /// Labels of those images (only images that have labels): the build step's content-hash
    /// label is read here, from the same inspect.
    pub image_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Repo digests (`repo@sha256:…`) of those images (only images that have some, i.e. were
    /// pulled or pushed): compared with a registry's digest to notice a moved tag.
    pub image_digests: BTreeMap<String, Vec<String>>,
    /// Registry digests of the tags whose services ask `pull_policy: always`, looked up before
    /// planning (a moved tag is redeployed). Tags whose lookup failed are absent.
    pub remote_digests: BTreeMap<String, String>,
    /// Platforms (`linux/amd64`) of the local images of services that set `platform:`, by
    /// `repo:tag`, looked up before planning.
    pub image_platforms: BTreeMap<String, String>,
    /// Names of every container on the host, managed or not (to report name conflicts).
    pub all_container_names: Vec<String>,
    /// The data dir as it is (`data::observe_data_folders`), or why it could not be read.
    pub data: Seen<DataDir>,
    /// The vhosts gitmoor wrote in the Nginx sites folder, by site (`nginx::observe_sites`).
    pub sites: Seen<BTreeMap<String, String>>,
    /// The Let's Encrypt lineages of the commit's sites on the host, by primary name.
    pub certs: BTreeMap<String, crate::plan::site::CertStatus>,
    /// When each of those certificates expires (unix seconds), for `/status` and `/metrics`.
    pub cert_expiry: BTreeMap<String, i64>,
    /// UFW as it is, with what the SSH lockout guard needs.
    pub firewall: Seen<FirewallHost>,
    /// The host ports gitmoor's running containers publish (from the same listing), for what
    /// `/status` says is reachable from outside.
    pub published: Vec<PublishedPortSeen>,
}

/// One host port a container publishes, as Docker lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPortSeen {
    pub container: String,
    /// The host address (`0.0.0.0`, `::`, `127.0.0.1`).
    pub host_ip: String,
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// The firewall's side of the host.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallHost {
    pub state: ufw_parse::ObservedFirewall,
    /// The ports sshd listens on (every `port` of `sshd -T`, or the config's one).
    pub ssh_ports: Vec<u16>,
    /// The SSH sessions open now, (peer, local port): each must stay allowed on its port.
    pub ssh_peers: Vec<(std::net::IpAddr, u16)>,
}

/// A fact the reconcile may have failed to look at. The planner must never read "could not look"
/// as "nothing there": for a kind that removes what it does not see (firewall rules, sites) that
/// would plan "delete everything". The default is not observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen<T> {
    /// Why it was not observed (an error, or nothing asked for it).
    NotObserved(String),
    Observed(T),
}

impl<T> Default for Seen<T> {
    fn default() -> Self {
        Seen::NotObserved("not looked at".into())
    }
}

impl<T> Seen<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Seen::Observed(t) => Some(t),
            Seen::NotObserved(_) => None,
        }
    }
}

/// The stacks' data folders on the host (`<data_dir>/<stack>/...`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataDir {
    /// Host paths of the commit's data folders that already exist.
    pub existing: BTreeSet<String>,
    /// Every stack folder of the data dir, by stack name.
    pub stacks: BTreeMap<String, DataStack>,
}

/// One stack folder of the data dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataStack {
    /// `<data_dir>/<stack>`.
    pub path: String,
    /// The names of the folders directly in it (`pgdata`, `media`).
    pub entries: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub stack: String,
    pub service: String,
    pub image: String,
    pub image_id: String,
    /// `running`, `exited`, `created`, `restarting`, ...
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or None without a healthcheck (parsed from the status).
    pub health: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The id of the container whose network namespace this one joins (`network_mode:
    /// container:<x>`), as Docker bound it. Docker resolves `<x>` to an id once, at create time,
    /// and keeps that id: when `<x>` is replaced, the joiner is left in a dead namespace (and
    /// cannot even start again). The planner compares these ids with the current container of the
    /// service the spec joins, so a joiner left behind (an interrupted apply, a joiner whose own
    /// recreate failed) is replaced on the next reconcile. Comes free with the container listing
    /// (`HostConfig.NetworkMode`). `None`: no such join, or not known (never a reason to act).
    pub joins_network: Option<String>,
    /// Like `joins_network`, for `pid: container:<x>`. The listing does not show PID and IPC
    /// modes, so these two cost one inspect call, made only for the containers whose fingerprint
    /// label shows a `pid` or `ipc` setting (rare): the common path stays at the listing calls.
    pub joins_pid: Option<String>,
    /// Like `joins_pid`, for `ipc: container:<x>`.
    pub joins_ipc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNetwork {
    pub id: String,
    pub name: String,
    pub stack: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVolume {
    pub name: String,
    pub stack: String,
    pub labels: BTreeMap<String, String>,
}

/// The repo an object was made from (`io.gitmoor.repo`), None on objects made before gitmoor
/// labelled repos. Read from the labels the listing already carries: no extra call.
fn repo_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(crate::labels::REPO).map(String::as_str)
}

impl ObservedContainer {
    /// The repo it was made from; see [`repo_of`].
    pub fn repo(&self) -> Option<&str> {
        repo_of(&self.labels)
    }
}

impl ObservedNetwork {
    /// The repo it was made from; see [`repo_of`].
    pub fn repo(&self) -> Option<&str> {
        repo_of(&self.labels)
    }
}

impl ObservedVolume {
    /// The repo it was made from; see [`repo_of`].
    pub fn repo(&self) -> Option<&str> {
        repo_of(&self.labels)
    }
}
