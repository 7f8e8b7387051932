//! The site executor: one site unit through the host's Nginx (`nginx.rs`: write, `nginx -t`,
//! reload, and the previous version put back when nginx refuses the new one).

use super::nginx::NginxHost;
use crate::plan::site::SiteAction;
use crate::plan::UnitOutcome;
use tracing::{info, warn};

/// `nginx`: the host's Nginx, or why it cannot be driven (no binary, a bad `nginx:` config).
pub(super) async fn run_unit(
    site: &str,
    action: &SiteAction,
    nginx: Result<&NginxHost, &str>,
) -> UnitOutcome {
    let host = match nginx {
        Ok(h) => h,
        Err(why) => return UnitOutcome::Failed(format!("nginx site {site}: {why}")),
    };
    let done = match action {
        SiteAction::Install {
            content, reason, ..
        } => {
            info!(site, reason = %reason, "install site");
            host.install(site, content).await
        }
        SiteAction::Remove { reason } => {
            info!(site, reason = %reason, "remove site");
            host.remove(site).await
        }
    };
    match done {
        Ok(()) => UnitOutcome::Applied,
        Err(e) => {
            warn!(site, error = %e, "site not changed; the host keeps its last good version");
            UnitOutcome::Failed(e.to_string())
        }
    }
}
