//! Pure planning: `plan(desired, observed) -> Plan`. No socket, no file: everything clever about
//! what changed, why, and in which order lives here and is tested with plain structs.

mod data;
mod diff;
pub mod fingerprint;
pub mod images;
mod owner;
pub mod render;

pub use data::DataFolder;
pub use diff::{normalize_image, plan, topo_order, PlanContext, PlanError, NETWORK_HASH};
pub use images::BuildStep;
pub use owner::{retain_own, Adopt, ForeignStack};

use crate::spec::model::{NetworkSpec, ServiceSpec, VolumeSpec};
use std::collections::BTreeMap;

/// Everything one reconcile would do, in the order it would do it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Images to pull before anything is stopped (a failed pull then changes nothing).
    pub pulls: Vec<String>,
    /// Why each pull happens, by image.
    pub pull_reasons: BTreeMap<String, String>,
    /// Images to build from the managed repo, also before anything is stopped.
    pub builds: Vec<BuildStep>,
    pub stacks: Vec<StackPlan>,
    /// Volumes of stacks that left the repo: never deleted, listed so the user can decide.
    pub kept_volumes: Vec<String>,
    /// Data folders the created or recreated containers mount (shown, never acted on).
    pub data_folders: Vec<DataFolder>,
    /// Data folders of stacks that left the repo (`<data_dir>/<stack>`): never deleted, listed so
    /// the user can decide, like `kept_volumes`.
    pub kept_data_folders: Vec<String>,
    /// Objects of this instance that another repo made (another config on the same engine):
    /// never removed nor replaced, listed so the user sees why they stay.
    pub foreign: Vec<ForeignStack>,
}

/// One stack's actions, ordered: networks and volumes, then containers in `depends_on` order,
/// then removals.
#[derive(Debug, Clone, PartialEq)]
pub struct StackPlan {
    pub stack: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateNetwork {
        network: NetworkSpec,
    },
    CreateVolume {
        volume: VolumeSpec,
    },
    /// A service with no container yet.
    Create {
        container: ContainerToCreate,
    },
    /// Remove the old container, then create and start the new one.
    Recreate {
        old_id: String,
        container: ContainerToCreate,
        reasons: Vec<String>,
    },
    /// The container is up to date but not running.
    Start {
        service: String,
        id: String,
        name: String,
        /// Another service waits for this one with `condition: service_healthy`.
        wait_healthy: bool,
    },
    Remove {
        service: String,
        id: String,
        name: String,
        reason: String,
    },
    RemoveNetwork {
        id: String,
        name: String,
        reason: String,
    },
}

/// Everything the executor needs to create one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerToCreate {
    /// `<stack>-<service>-1`.
    pub name: String,
    pub stack: String,
    pub service: String,
    pub spec: ServiceSpec,
    /// Final labels: the user's, compose's, gitmoor's.
    pub labels: BTreeMap<String, String>,
    /// Docker network name -> aliases, in a stable order (the first is used at create time).
    pub networks: Vec<(String, Vec<String>)>,
    /// Another service waits for this one with `condition: service_healthy`.
    pub wait_healthy: bool,
    /// Another service waits for this one with `condition: service_completed_successfully`.
    pub wait_completed: bool,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_owner;
