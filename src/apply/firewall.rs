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
        return UnitOutcome::Failed(why.clone());
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
