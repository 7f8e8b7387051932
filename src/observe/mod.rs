//! What is on the host now, as plain data the planner compares against. Filled by a handful of
//! listing calls per reconcile (`docker.rs`), never one call per container.

pub mod docker;

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Containers carrying `io.gitmoor.managed=true`.
    pub containers: Vec<ObservedContainer>,
    /// Networks carrying `io.gitmoor.managed=true`.
    pub networks: Vec<ObservedNetwork>,
    /// Volumes carrying `io.gitmoor.managed=true`.
    pub volumes: Vec<ObservedVolume>,
    /// Local images: every `repo:tag` (as listed, e.g. `example-backend:1`) -> image id.
    pub images: BTreeMap<String, String>,
    /// Names of every container on the host, managed or not (to report name conflicts).
    pub all_container_names: Vec<String>,
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
