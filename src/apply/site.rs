//! The site executor: one site unit through the host's Nginx (`nginx.rs`: write, `nginx -t`,
//! reload, and the previous version put back when nginx refuses the new one).

use super::nginx::NginxHost;
use crate::config::letsencrypt::LetsEncryptConfig;
use crate::plan::site::SiteAction;
use crate::plan::UnitOutcome;
use tracing::{info, warn};

/// How a site unit ended, and whether certbot ran for it (Some(true): it ran and failed, which
/// the state counts for the per-name backoff; Some(false): it got what was asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRun {
    pub outcome: UnitOutcome,
    pub certbot_failed: Option<bool>,
}

impl SiteRun {
    fn done(outcome: UnitOutcome) -> SiteRun {
        SiteRun {
            outcome,
            certbot_failed: None,
        }
    }

    fn certbot(outcome: UnitOutcome, failed: bool) -> SiteRun {
        SiteRun {
            outcome,
            certbot_failed: Some(failed),
        }
    }
}

/// `nginx`: the host's Nginx, or why it cannot be driven (no binary, a bad `nginx:` config).
pub(super) async fn run_unit(
    site: &str,
    action: &SiteAction,
    nginx: Result<&NginxHost, &str>,
    letsencrypt: &LetsEncryptConfig,
) -> SiteRun {
    let host = match nginx {
        Ok(h) => h,
        Err(why) => return SiteRun::done(UnitOutcome::Failed(format!("nginx site {site}: {why}"))),
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
                return SiteRun::done(failed(site, e.to_string()));
            }
            // The HTTP vhost serves the ACME webroot now: ask for the certificate, then put
            // the TLS vhost in place. A failure leaves the HTTP vhost (no half-made TLS one).
            let Some(cert) = certificate else {
                return SiteRun::done(UnitOutcome::Applied);
            };
            let names: Vec<&str> = cert.names.iter().map(String::as_str).collect();
            info!(site, names = %cert.names.join(","), "obtain certificate");
            if let Err(e) = super::certbot::obtain(site, &names, &cert.webroot, letsencrypt).await {
                let ran = e.certbot_failed();
                let outcome = failed(site, e.to_string());
                return if ran {
                    SiteRun::certbot(outcome, true)
                } else {
                    SiteRun::done(outcome)
                };
            }
            let outcome = match host.install(site, &cert.then_content).await {
                Ok(()) => UnitOutcome::Applied,
                Err(e) => failed(site, e.to_string()),
            };
            return SiteRun::certbot(outcome, false);
        }
        SiteAction::Hold { reason } => return SiteRun::done(failed(site, reason.clone())),
        SiteAction::Renew { name, reason } => {
            info!(site, reason = %reason, "renew certificate");
            return match super::certbot::renew_checked(letsencrypt, site, name).await {
                Ok(false) => SiteRun::certbot(UnitOutcome::Applied, false),
                Ok(true) => match host.reload().await {
                    Ok(()) => SiteRun::certbot(UnitOutcome::Applied, false),
                    Err(e) => SiteRun::certbot(
                        failed(
                            site,
                            format!(
                                "the certificate for {name} was renewed, but nginx did not \
                                 reload: {e}"
                            ),
                        ),
                        false,
                    ),
                },
                Err(e) if e.certbot_failed() => SiteRun::certbot(failed(site, e.to_string()), true),
                Err(e) => SiteRun::done(failed(site, e.to_string())),
            };
        }
        SiteAction::Remove { reason } => {
            info!(site, reason = %reason, "remove site");
            host.remove(site).await
        }
    };
    SiteRun::done(match done {
        Ok(()) => UnitOutcome::Applied,
        Err(e) => failed(site, e.to_string()),
    })
}

fn failed(site: &str, error: String) -> UnitOutcome {
    warn!(site, error = %error, "site not (fully) changed; the host keeps its last good version");
    UnitOutcome::Failed(error)
}
