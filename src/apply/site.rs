//! The site executor: one site unit through the host's Nginx (`nginx.rs`: write, `nginx -t`,
//! reload, and the previous version put back when nginx refuses the new one).

use super::nginx::{NginxHost, SiteError};
use crate::config::letsencrypt::LetsEncryptConfig;
use crate::observe::certs::observe_cert;
use crate::observe::Seen;
use crate::plan::site::{CertRequest, SiteAction};
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
            if let Some(cert) = certificate {
                return obtain_and_install(site, content, cert, host, letsencrypt).await;
            }
            host.install(site, content).await
        }
        SiteAction::Hold { reason } => return SiteRun::done(failed(site, reason.clone())),
        SiteAction::Renew {
            name,
            webroot,
            reason,
        } => {
            info!(site, reason = %reason, "renew certificate");
            // Reloaded after every successful run, changed bytes or not: what nginx serves
            // must be what /status reads from disk.
            return match super::certbot::renew_checked(letsencrypt, site, name, webroot).await {
                Ok(_) => match host.reload().await {
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
        SiteAction::Reload { reason } => {
            info!(site, reason = %reason, "reload nginx");
            host.reload().await.map_err(|message| SiteError::Host {
                site: site.to_string(),
                message,
            })
        }
    };
    SiteRun::done(match done {
        Ok(()) => UnitOutcome::Applied,
        Err(e) => failed(site, e.to_string()),
    })
}

/// A `tls: letsencrypt` site that needs a certificate. Everything that can refuse without the
/// ACME server (gitmoor's config, the DNS preflight) is checked before the vhost is touched, so
/// a site that served (plain HTTP, or its own certificate files) keeps serving when the
/// request cannot be made. Then the HTTP vhost serving the ACME webroot, certbot, and the TLS
/// vhost, reloaded even when it is the file already there (nginx reads certificates only at a
/// reload). When certbot fails, or the TLS vhost is refused, the previous vhost is put back
/// (removed for a new site): nothing half-changed, and the site keeps serving what it served.
async fn obtain_and_install(
    site: &str,
    pending: &str,
    cert: &CertRequest,
    host: &NginxHost,
    letsencrypt: &LetsEncryptConfig,
) -> SiteRun {
    let names: Vec<&str> = cert.names.iter().map(String::as_str).collect();
    let request =
        match super::certbot::prepare_obtain(site, &names, &cert.webroot, letsencrypt).await {
            Ok(r) => r,
            Err(e) => return SiteRun::done(failed(site, e.to_string())),
        };
    let previous = match host.current(site) {
        Ok(p) => p,
        Err(e) => return SiteRun::done(failed(site, e.to_string())),
    };
    if let Err(e) = host.install(site, pending).await {
        return SiteRun::done(failed(site, e.to_string()));
    }
    // The reload returned; nginx may not have taken it yet. certbot only once it has.
    if let Err(e) = host.wait_until_acme_served(&cert.webroot, &names).await {
        let message = put_previous_back(site, previous.as_deref(), host, e).await;
        return SiteRun::done(failed(site, message));
    }
    info!(site, names = %cert.names.join(","), "obtain certificate");
    if let Err(e) = request.run().await {
        let message = put_previous_back(site, previous.as_deref(), host, e.to_string()).await;
        return SiteRun::certbot(failed(site, message), true);
    }
    // The certificate is there, but the TLS vhost can still be refused (`nginx -t` on the
    // certificate files, a reload that fails): nginx's own put-back restores the ACME-only
    // vhost, which serves nothing but the challenge; the site's previous vhost goes back too.
    let outcome = match host.install_and_load(site, &cert.then_content).await {
        Ok(()) => UnitOutcome::Applied,
        Err(e) => failed(
            site,
            put_previous_back(
                site,
                previous.as_deref(),
                host,
                format!("the certificate was obtained, but {e}"),
            )
            .await,
        ),
    };
    SiteRun::certbot(outcome, false)
}

/// Puts the site's vhost from before the ACME-only one back (removes it for a new site); the
/// error `e` with what became of the vhost.
async fn put_previous_back(
    site: &str,
    previous: Option<&str>,
    host: &NginxHost,
    e: String,
) -> String {
    let back = match previous {
        Some(text) => host.install(site, text).await,
        None => host.remove(site).await,
    };
    match (back, previous) {
        (Ok(()), Some(_)) => format!("{e}; the site's previous vhost is back"),
        (Ok(()), None) => format!("{e}; the site's vhost is removed again"),
        (Err(b), _) => format!("{e}; and the site's previous vhost could not be put back: {b}"),
    }
}

fn failed(site: &str, error: String) -> UnitOutcome {
    warn!(site, error = %error, "site not (fully) changed; the host keeps its last good version");
    UnitOutcome::Failed(error)
}

/// Renewals while the branch head cannot be planned (a typo left on main): the plan, which
/// renews certificates as site units, is never made then, and an invalid head is not retried
/// for the same inputs, so the certificates would run out. This renews the lineages nginx
/// loaded at gitmoor's last reload (`loaded`, the state's: the last good commit's sites) that
/// are due, with the same DNS preflight and per-name backoff as the plan, then reloads nginx
/// once: after a renewal, and also when a lineage's end on disk is not the one recorded at the
/// last reload (certbot.timer renewed it), the same rule as the plan's `reload-site`.
/// `redact` takes secret values out of nginx's messages. `failures` and `loaded` are updated
/// for the state file. Returns one line per renewal that failed or waits, and for a reload that
/// failed (empty when all went well or nothing was due).
pub async fn renew_last_good(
    nginx: &crate::config::nginx::NginxConfig,
    letsencrypt: &LetsEncryptConfig,
    redact: crate::redact::Redactor,
    failures: &mut crate::plan::cert_backoff::NameFailures,
    loaded: &mut std::collections::BTreeMap<String, i64>,
    now: i64,
) -> Vec<String> {
    use crate::plan::cert_backoff::{held, note_run};
    let mut problems = Vec::new();
    let mut renewed = 0;
    let lineages: Vec<String> = loaded.keys().cloned().collect();
    for lineage in &lineages {
        let cert = match observe_cert(&letsencrypt.config_dir, lineage) {
            Seen::Observed(c) if c.present && c.due_for_renewal(now, letsencrypt.renew_days) => c,
            _ => continue,
        };
        let names = if cert.names.is_empty() {
            vec![lineage.clone()]
        } else {
            cert.names.clone()
        };
        if let Some(why) = held(failures, &names, now) {
            problems.push(format!("certificate {lineage}: {why}"));
            continue;
        }
        info!(lineage = %lineage, "renew certificate of the last good commit (the branch head is invalid)");
        match super::certbot::renew_checked(letsencrypt, lineage, lineage, &nginx.acme_webroot)
            .await
        {
            Ok(_) => renewed += 1,
            Err(e) => {
                if e.certbot_failed() {
                    note_run(failures, &names, true, now);
                }
                problems.push(e.to_string());
            }
        }
    }
    let on_disk = ends_on_disk(letsencrypt, &lineages);
    let not_loaded = on_disk.iter().any(|(l, t)| loaded.get(l) != Some(t));
    if renewed == 0 && !not_loaded {
        return problems;
    }
    let reloaded = match NginxHost::new(nginx, redact) {
        Ok(host) => host.reload().await,
        Err(e) => Err(e.to_string()),
    };
    match reloaded {
        Ok(()) => loaded.extend(ends_on_disk(letsencrypt, &lineages)),
        Err(e) => problems.push(format!(
            "certificates on disk are not the ones nginx loaded (renewed), but nginx did not \
             reload (it serves the old ones until it does): {e}"
        )),
    }
    problems
}

/// The end of each lineage's certificate on disk, for those that are there and readable.
fn ends_on_disk(
    letsencrypt: &LetsEncryptConfig,
    lineages: &[String],
) -> std::collections::BTreeMap<String, i64> {
    lineages
        .iter()
        .filter_map(|l| match observe_cert(&letsencrypt.config_dir, l) {
            Seen::Observed(c) if c.present => c.not_after.map(|t| (l.clone(), t)),
            _ => None,
        })
        .collect()
}
