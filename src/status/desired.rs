//! The names `/status` shows of the commit: its stacks, their services and images. Nothing
//! secret: no environment, no label.

use crate::spec::model::{DependsCondition, HostSpec};
use std::collections::BTreeMap;

/// One service of the commit, as `/status` shows it: no environment, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub name: String,
    pub image: String,
    /// Another service waits for it with `service_completed_successfully`: exiting is its job.
    pub one_shot: bool,
}

/// The names `/status` needs from a spec: stacks, their services, their images.
pub fn desired_services(spec: &HostSpec) -> BTreeMap<String, Vec<DesiredService>> {
    spec.stacks
        .iter()
        .map(|(name, stack)| {
            let services = stack
                .services
                .iter()
                .map(|(svc, s)| DesiredService {
                    name: svc.clone(),
                    image: s.image.clone(),
                    one_shot: stack.services.values().any(|other| {
                        other.depends_on.get(svc) == Some(&DependsCondition::CompletedSuccessfully)
                    }),
                })
                .collect();
            (name.clone(), services)
        })
        .collect()
}
