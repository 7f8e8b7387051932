//! The data folders a plan shows: those of the services it creates or recreates (new or kept),
//! and the stack folders of the data dir whose stack left the repo (kept, like volumes). They are
//! lines of information: gitmoor never removes nor rewrites a data folder, so none is an action.

use super::{Action, Plan};
use crate::observe::Observed;
use crate::spec::model::HostSpec;
use serde::Serialize;

/// One data folder a created or recreated container mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataFolder {
    pub stack: String,
    /// The path as the compose file writes it (`./pgdata`).
    pub written: String,
    /// `<data_dir>/<stack>/pgdata`.
    pub host: String,
    /// Not on the host yet: made by the apply.
    pub new: bool,
}

/// Fills `plan.data_folders` and `plan.kept_data_folders`.
pub(super) fn add_data_folders(plan: &mut Plan, desired: &HostSpec, observed: &Observed) {
    let mut lines: Vec<DataFolder> = Vec::new();
    for (stack, a) in plan.stack_actions() {
        {
            let (Action::Create { container } | Action::Recreate { container, .. }) = a else {
                continue;
            };
            for (written, host) in &container.spec.data_folders {
                if lines.iter().any(|l| &l.host == host) {
                    continue;
                }
                lines.push(DataFolder {
                    stack: stack.to_string(),
                    written: written.clone(),
                    host: host.clone(),
                    new: !observed.data_folders.contains(host),
                });
            }
        }
    }
    plan.data_folders = lines;
    plan.kept_data_folders = observed
        .data_stacks
        .iter()
        .filter(|(stack, _)| !desired.stacks.contains_key(*stack))
        .map(|(_, host)| host.clone())
        .collect();
}
