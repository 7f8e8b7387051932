//! The data folders a plan shows: those of the services it creates or recreates (new or kept),
//! and the folders of the data dir that no service of the commit mounts any more — a stack that
//! left the repo, or a service (or a path) that left its stack — kept, like volumes. They are
//! lines of information: gitmoor never removes nor rewrites a data folder, so none is an action.

use super::{Action, Plan};
use crate::observe::{Observed, Seen};
use crate::spec::model::HostSpec;
use serde::Serialize;
use std::collections::BTreeSet;

/// One data folder a created or recreated container mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataFolder {
    pub stack: String,
    /// The path as the compose file writes it (`./pgdata`).
    pub written: String,
    /// `<data_dir>/<stack>/pgdata`.
    pub host: String,
    /// Not on the host yet: made by the apply.
    /// None: the data dir was not observed, so the plan cannot tell.
    pub new: Option<bool>,
}

/// Fills `plan.data_folders` and `plan.kept_data_folders`.
pub(super) fn add_data_folders(plan: &mut Plan, desired: &HostSpec, observed: &Observed) {
    let data = observed.data.known();
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
                    // Not observed: neither new nor kept (the plan's notes say why).
                    new: data.map(|d| !d.existing.contains(host)),
                });
            }
        }
    }
    plan.data_folders = lines;
    let data = match &observed.data {
        Seen::Observed(d) => d,
        Seen::NotObserved(why) => {
            plan.notes.push(format!(
                "data folders not observed ({why}): none is shown as new or kept"
            ));
            return;
        }
    };
    let mut kept = Vec::new();
    for (stack, folder) in &data.stacks {
        let Some(spec) = desired.stacks.get(stack) else {
            kept.push(folder.path.clone());
            continue;
        };
        // The first folder under `<data_dir>/<stack>/` of each data folder the commit mounts.
        let prefix = format!("{}/", folder.path);
        let used: BTreeSet<&str> = spec
            .services
            .values()
            .flat_map(|svc| svc.data_folders.values())
            .filter_map(|host| host.strip_prefix(&prefix)?.split('/').next())
            .collect();
        kept.extend(
            folder
                .entries
                .iter()
                .filter(|e| !used.contains(e.as_str()))
                .map(|e| format!("{prefix}{e}")),
        );
    }
    plan.kept_data_folders = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{DataDir, DataStack};
    use crate::spec::model::{ServiceSpec, StackSpec};

    /// Stack `app` whose service `db` mounts `/d/app/pgdata`.
    fn desired() -> HostSpec {
        let mut db = ServiceSpec::default();
        db.data_folders
            .insert("./pgdata".into(), "/d/app/pgdata".into());
        let mut app = StackSpec {
            name: "app".into(),
            ..Default::default()
        };
        app.services.insert("db".into(), db);
        let mut h = HostSpec::default();
        h.stacks.insert("app".into(), app);
        h
    }

    fn stack(path: &str, entries: &[&str]) -> DataStack {
        DataStack {
            path: path.into(),
            entries: entries.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn folders_no_service_mounts_are_kept_and_listed_whether_the_stack_or_the_service_left() {
        let observed = Observed {
            data: Seen::Observed(DataDir {
                existing: ["/d/app/pgdata".to_string()].into(),
                stacks: [
                    ("app".to_string(), stack("/d/app", &["pgdata", "media"])),
                    ("old".to_string(), stack("/d/old", &["x"])),
                ]
                .into(),
            }),
            ..Default::default()
        };
        let mut plan = Plan::default();
        add_data_folders(&mut plan, &desired(), &observed);
        assert_eq!(plan.kept_data_folders, vec!["/d/app/media", "/d/old"]);
        assert!(plan.notes.is_empty());
    }

    #[test]
    fn a_data_dir_not_observed_is_said_and_nothing_is_claimed_kept() {
        let observed = Observed {
            data: Seen::NotObserved("cannot read /d: denied".into()),
            ..Default::default()
        };
        // A plan that creates the service that mounts it: its data folder is not claimed either
        // way.
        let mut plan = Plan::default();
        let container = crate::plan::ContainerToCreate {
            name: "app-db-1".into(),
            stack: "app".into(),
            service: "db".into(),
            spec: desired().stacks["app"].services["db"].clone(),
            labels: Default::default(),
            networks: Vec::new(),
            wait_healthy: false,
            wait_completed: false,
        };
        plan.units.push(crate::plan::Unit::stack(
            "app",
            vec![Action::Create { container }],
        ));
        add_data_folders(&mut plan, &desired(), &observed);
        assert_eq!(plan.data_folders[0].new, None);
        assert!(
            plan.render_text()
                .contains("[app] data folder ./pgdata -> /d/app/pgdata (not observed)"),
            "{}",
            plan.render_text()
        );
        assert!(plan.kept_data_folders.is_empty());
        assert_eq!(
            plan.notes,
            vec![
                "data folders not observed (cannot read /d: denied): none is shown as new or kept"
            ]
        );
        assert!(plan
            .render_text()
            .contains("note: data folders not observed"));
    }
}
