//! The firewall executor: the firewall unit through the host's UFW (`ufw.rs`: a fresh look and
//! the lockout guard again before any call, then the calls in the plan's order).

use super::ufw::UfwHost;
use crate::plan::unit::FirewallWork;
use crate::plan::UnitOutcome;
use tracing::{info, warn};

pub(super) async fn run_unit(
    work: &FirewallWork,
    ufw: Option<&Result<UfwHost, String>>,
) -> UnitOutcome {
    if let Some(why) = &work.refused {
        warn!("{why}");
        // The rules part is refused (the SSH lockout guard, UFW not read): the Docker guard is
        // still kept in force, from UFW's files as they are.
        let mut why = why.clone();
        if let Some(Ok(host)) = ufw {
            match host.repair_docker_guard().await {
                Ok(r) => {
                    for line in &r.done {
                        info!(change = %line, "firewall: Docker guard kept in force");
                    }
                    for note in &r.notes {
                        warn!("firewall: {note}");
                    }
                    if !r.done.is_empty() {
                        why.push_str(&format!(
                            " (the Docker guard's DOCKER-USER rules, as UFW's files already had them, were put back in force: {})",
                            r.done.join("; ")
                        ));
                    }
                    if !r.notes.is_empty() {
                        why.push_str(&format!(" (the Docker guard: {})", r.notes.join("; ")));
                    }
                }
                Err(e) => {
                    warn!(error = %e, "firewall: the Docker guard could not be put back in force");
                    why.push_str(&format!(
                        " (the Docker guard could not be put back in force: {e})"
                    ));
                }
            }
        }
        return UnitOutcome::Failed(why);
    }
    let host = match ufw {
        Some(Ok(h)) => h,
        Some(Err(why)) => return UnitOutcome::Failed(format!("firewall: {why}")),
        None => return UnitOutcome::Failed("firewall: no UFW was given to this apply".into()),
    };
    match host.apply(&work.spec, &work.plan).await {
        Ok(applied) => {
            for line in &applied.done {
                info!(change = %line, "firewall");
            }
            for note in &applied.notes {
                warn!("firewall: {note}");
            }
            UnitOutcome::Applied
        }
        Err(e) => {
            warn!(error = %e, "firewall not (fully) changed");
            UnitOutcome::Failed(e.to_string())
        }
    }
}
