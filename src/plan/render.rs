//! How a plan is shown: one line per action with its reason (`gitmoor plan`, the log, `/status`).
//! Only names and reasons: no environment value can reach this output.

use super::site::SiteAction;
use super::{Action, Plan, Work};
use serde::{Deserialize, Serialize};

/// One action as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionView {
    pub stack: String,
    /// `pull`, `create-network`, `create-volume`, `create`, `recreate`, `start`, `remove`,
    /// `remove-network`.
    pub action: String,
    /// The container, network, volume or image it acts on.
    pub target: String,
    pub reasons: Vec<String>,
}

impl Plan {
    /// Names of the containers this plan creates (to check none is taken by a stranger).
    pub fn names_to_create(&self) -> Vec<String> {
        self.stack_actions()
            .filter_map(|(_, a)| match a {
                Action::Create { container } => Some(container.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The plan as a flat list of named actions with reasons.
    pub fn views(&self) -> Vec<ActionView> {
        let mut out: Vec<ActionView> = self
            .pulls
            .iter()
            .map(|i| ActionView {
                stack: String::new(),
                action: "pull".into(),
                target: i.clone(),
                reasons: vec![self
                    .pull_reasons
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| "not on the host".into())],
            })
            .collect();
        out.extend(self.builds.iter().map(|b| ActionView {
            stack: b.stack.clone(),
            action: "build".into(),
            target: b.tag.clone(),
            reasons: vec![b.reason.clone()],
        }));
        for (stack, a) in self.stack_actions() {
            {
                let (action, target, reasons) = match a {
                    Action::CreateNetwork { network } => {
                        ("create-network", network.name.clone(), vec![])
                    }
                    Action::CreateVolume { volume } => {
                        ("create-volume", volume.name.clone(), vec![])
                    }
                    Action::Create { container } => {
                        ("create", container.name.clone(), vec!["new service".into()])
                    }
                    Action::Recreate {
                        container, reasons, ..
                    } => ("recreate", container.name.clone(), reasons.clone()),
                    Action::Start { name, .. } => {
                        ("start", name.clone(), vec!["not running".into()])
                    }
                    Action::Remove { name, reason, .. } => {
                        ("remove", name.clone(), vec![reason.clone()])
                    }
                    Action::RemoveNetwork { name, reason, .. } => {
                        ("remove-network", name.clone(), vec![reason.clone()])
                    }
                };
                out.push(ActionView {
                    stack: stack.to_string(),
                    action: action.into(),
                    target,
                    reasons,
                });
            }
        }
        for u in &self.units {
            if let Work::Firewall(f) = &u.work {
                if let Some(why) = &f.refused {
                    out.push(ActionView {
                        stack: String::new(),
                        action: "firewall-refused".into(),
                        target: "ufw".into(),
                        reasons: vec![why.clone()],
                    });
                    continue;
                }
                for step in &f.plan.steps {
                    out.push(ActionView {
                        stack: String::new(),
                        action: format!("firewall-{}", step.kind.as_str()),
                        target: format!("ufw {}", step.argv.join(" ")),
                        reasons: vec![step.reason.clone()],
                    });
                }
                if let Some(g) = &f.plan.docker_guard {
                    out.push(ActionView {
                        stack: String::new(),
                        action: if g.enforce {
                            "firewall-docker-guard"
                        } else {
                            "firewall-docker-guard-off"
                        }
                        .into(),
                        target: "DOCKER-USER".into(),
                        reasons: g.reasons.clone(),
                    });
                }
                continue;
            }
            let Work::Site(action) = &u.work else {
                continue;
            };
            let (action, reason) = match action {
                SiteAction::Install { reason, .. } => ("install-site", reason),
                SiteAction::Remove { reason } => ("remove-site", reason),
                SiteAction::Hold { reason } => ("hold-site", reason),
                SiteAction::Renew { reason, .. } => ("renew-certificate", reason),
                SiteAction::Reload { reason } => ("reload-site", reason),
            };
            out.push(ActionView {
                stack: String::new(),
                action: action.into(),
                target: u.id.name().to_string(),
                reasons: vec![reason.clone()],
            });
        }
        out
    }

    /// The plan as `gitmoor plan --json` prints it: every action (flat, and by unit with its
    /// kind), and the lines of information the text shows — kept volumes, data folders (made or
    /// kept), kept data folders of stacks that left, another repo's objects left alone.
    pub fn json_view(&self) -> serde_json::Value {
        let views = self.views();
        let units: Vec<serde_json::Value> = self
            .units
            .iter()
            .map(|u| {
                let actions: Vec<&ActionView> = views
                    .iter()
                    .filter(|v| match &u.work {
                        Work::Stack(_) => {
                            u.id.stack() == Some(v.stack.as_str()) && v.action != "build"
                        }
                        Work::Site(_) => v.action.ends_with("-site") && v.target == u.id.name(),
                        Work::Firewall(_) => v.action.starts_with("firewall-"),
                    })
                    .collect();
                let diff = match &u.work {
                    Work::Site(SiteAction::Install { diff, .. }) => Some(diff),
                    _ => None,
                };
                serde_json::json!({
                    "kind": u.id.kind().as_str(),
                    "name": u.id.name(),
                    "after": u.after.iter().map(|a| a.key()).collect::<Vec<_>>(),
                    "actions": actions,
                    "diff": diff,
                })
            })
            .collect();
        serde_json::json!({
            "actions": views,
            "units": units,
            "kept_volumes": self.kept_volumes,
            "data_folders": self.data_folders,
            "kept_data_folders": self.kept_data_folders,
            "notes": self.notes,
            "foreign": self.foreign,
        })
    }

    /// Text for a terminal: one line per action, then the volumes that are kept, then another
    /// repo's objects this plan leaves alone (they do not make the plan non-empty: nothing is
    /// done to them).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        if self.is_empty() {
            s.push_str("no changes: the host matches the commit\n");
        }
        for v in self.views() {
            let stack = if v.stack.is_empty() {
                String::new()
            } else {
                format!("[{}] ", v.stack)
            };
            let why = if v.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", v.reasons.join(", "))
            };
            s.push_str(&format!("{stack}{} {}{why}\n", v.action, v.target));
        }
        // A site's change reads best as the diff of its file.
        for u in &self.units {
            if let Work::Site(SiteAction::Install { diff, .. }) = &u.work {
                for line in diff.lines() {
                    s.push_str(&format!("    {line}\n"));
                }
            }
        }
        for d in &self.data_folders {
            let state = match d.new {
                Some(true) => "new",
                Some(false) => "kept",
                None => "not observed",
            };
            s.push_str(&format!(
                "[{}] data folder {} -> {} ({state})\n",
                d.stack, d.written, d.host
            ));
        }
        for v in &self.kept_volumes {
            s.push_str(&format!("keep volume {v} (its stack left the repo; remove it by hand if you mean to: docker volume rm {v})\n"));
        }
        for d in &self.kept_data_folders {
            s.push_str(&format!("keep data folder {d} (no service of the commit mounts it; remove it by hand if you mean to)\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        for f in &self.foreign {
            let objects: Vec<String> = f
                .containers
                .iter()
                .cloned()
                .chain(f.networks.iter().map(|n| format!("network {n}")))
                .chain(f.volumes.iter().map(|v| format!("volume {v}")))
                .collect();
            s.push_str(&format!(
                "foreign: stack {} ({}) left alone: {}\n",
                f.stack,
                f.from(),
                objects.join(", ")
            ));
        }
        s
    }
}
