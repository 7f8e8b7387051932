//! The site executor: one site unit through the host's Nginx (`nginx.rs`: write, `nginx -t`,
//! reload, and the previous version put back when nginx refuses the new one).

use super::nginx::NginxHost;
use crate::config::letsencrypt::LetsEncryptConfig;
use crate::plan::site::SiteAction;
use crate::plan::UnitOutcome;
use tracing::{info, warn};

/// `nginx`: the host's Nginx, or why it cannot be driven (no binary, a bad `nginx:` config).
pub(super) async fn run_unit(
    site: &str,
    action: &SiteAction,
    nginx: Result<&NginxHost, &str>,
    letsencrypt: &LetsEncryptConfig,
) -> UnitOutcome {
    let host = match nginx {
        Ok(h) => h,
        Err(why) => return UnitOutcome::Failed(format!("nginx site {site}: {why}")),
    };
    let done = match action {
        SiteAction::Install {
            content,
            reason,
            certificate,
            ..
        } => {
            info!(site, reason = %reason, "install site");
            if let Err(e) = host.install(site, content).await {
                return failed(site, e.to_string());
            }
            // The HTTP vhost serves the ACME webroot now: ask for the certificate, then put
            // the TLS vhost in place. A failure leaves the HTTP vhost (no half-made TLS one).
            let Some(cert) = certificate else {
                return UnitOutcome::Applied;
            };
            let names: Vec<&str> = cert.names.iter().map(String::as_str).collect();
            info!(site, names = %cert.names.join(","), "obtain certificate");
            if let Err(e) = super::certbot::obtain(site, &names, &cert.webroot, letsencrypt).await {
                return failed(site, e.to_string());
            }
            host.install(site, &cert.then_content).await
        }
        SiteAction::Hold { reason } => return failed(site, reason.clone()),
        SiteAction::Renew { name, reason } => {
            info!(site, reason = %reason, "renew certificate");
            return match super::certbot::renew_one(letsencrypt, name).await {
                Ok(false) => UnitOutcome::Applied,
                Ok(true) => match host.reload().await {
                    Ok(()) => UnitOutcome::Applied,
                    Err(e) => failed(
                        site,
                        format!(
                            "the certificate for {name} was renewed, but nginx did not reload: {e}"
                        ),
                    ),
                },
                Err(e) => failed(site, e.to_string()),
            };
        }
        SiteAction::Remove { reason } => {
            info!(site, reason = %reason, "remove site");
            host.remove(site).await
        }
    };
    match done {
        Ok(()) => UnitOutcome::Applied,
        Err(e) => failed(site, e.to_string()),
    }
}

fn failed(site: &str, error: String) -> UnitOutcome {
    warn!(site, error = %error, "site not (fully) changed; the host keeps its last good version");
    UnitOutcome::Failed(error)
}
