//! Pure planning: `plan(desired, observed) -> Plan`. No socket, no file: everything clever about
//! what changed, why, and in which order lives here and is tested with plain structs.

pub mod cert_backoff;
mod data;
pub mod docker_guard;
pub mod fingerprint;
pub mod firewall;
mod host;
pub mod images;
mod owner;
pub mod render;
pub mod site;
mod stack;
pub mod unit;

pub use data::DataFolder;
pub use host::{plan, FirewallContext, PlanContext, PlanError};
pub use images::normalize_image;
pub use images::BuildStep;
pub use owner::{retain_own, Adopt, ForeignStack};
pub use stack::{topo_order, NETWORK_HASH};
pub use unit::{Unit, UnitId, UnitOutcome, Work};

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
    /// What changes, unit by unit (each stack today); only units with something to do.
    pub units: Vec<Unit>,
    /// Volumes of stacks that left the repo: never deleted, listed so the user can decide.
    pub kept_volumes: Vec<String>,
    /// Data folders the created or recreated containers mount (shown, never acted on).
    pub data_folders: Vec<DataFolder>,
    /// Data folders no service of the commit mounts (`<data_dir>/<stack>` of a stack that left,
    /// `<data_dir>/<stack>/<folder>` of a service that left): never deleted, listed so the user
    /// can decide, like `kept_volumes`.
    pub kept_data_folders: Vec<String>,
    /// What the plan could not look at, and so does not claim (a part of the host not observed).
    pub notes: Vec<String>,
    /// Objects of this instance that another repo made (another config on the same engine):
    /// never removed nor replaced, listed so the user sees why they stay.
    pub foreign: Vec<ForeignStack>,
}

impl Plan {
    /// Nothing to do: no image to get, no unit with an action. (A unit's emptiness is its kind's
    /// business: `Unit::is_empty` matches every kind, so a new kind cannot be forgotten here.)
    pub fn is_empty(&self) -> bool {
        self.pulls.is_empty() && self.builds.is_empty() && self.units.iter().all(Unit::is_empty)
    }

    /// Every container action with its stack, in plan order (the parts of apply and render that
    /// only know containers).
    pub fn stack_actions(&self) -> impl Iterator<Item = (&str, &Action)> {
        self.units
            .iter()
            .filter_map(|u| Some((u.id.stack()?, u.actions()?)))
            .flat_map(|(stack, actions)| actions.iter().map(move |a| (stack, a)))
    }

    /// One stack's actions, when the plan changes it.
    pub fn stack(&self, name: &str) -> Option<&[Action]> {
        self.units
            .iter()
            .find(|u| u.id.stack() == Some(name))
            .and_then(Unit::actions)
    }
}

/// One action of a stack (`Work::Stack`), in the stack's order: networks and volumes, then
/// containers in `depends_on` order, then removals.
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
#[cfg(test)]
mod tests_units;
