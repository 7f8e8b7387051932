//! Everything the plan reads of the host, in one place: gitmoor's objects of this instance (three
//! listings, started before the commit is read), the images the commit names (one inspect each,
//! which also gives the platform a `platform:` service is checked against), the data dir, the
//! Nginx sites folder, and the registry's digest of every `pull_policy: always` tag (a moved tag
//! is redeployed; a registry that cannot be asked only costs a warning). The engine calls themselves are the executor's
//! (one Docker client); what to look at is decided here.

use super::{FirewallHost, Observed, Seen};
use crate::apply::docker::registry::RegistryAuth;
use crate::apply::docker::DockerExecutor;
use crate::config::Config;
use crate::plan::normalize_image;
use crate::plan::site::CertStatus;
use crate::redact::Redactor;
use crate::spec::model::{HostSpec, PullPolicy};
use std::collections::BTreeSet;
use tracing::warn;

/// The three Docker listings (`docker::observe`), started before the commit is read: they do not depend on it, and
/// dockerd answers them (~10 ms for 150 containers) while gitmoor reads and parses the files.
/// Dropped unfinished (the commit turned out to be invalid), the task is aborted.
pub struct Listing(tokio::task::JoinHandle<anyhow::Result<Observed>>);

impl Listing {
    pub fn start(exec: &DockerExecutor, instance: &str) -> Listing {
        let (docker, instance) = (exec.docker.clone(), instance.to_string());
        Listing(tokio::spawn(async move {
            let listed = super::docker::observe(&docker, &instance).await;
            tracing::debug!("gitmoor's Docker objects listed");
            listed
        }))
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The host as the plan of `spec` needs it: `listing` (started earlier) completed with what
/// depends on the spec.
pub async fn observe_for_plan(
    mut listing: Listing,
    exec: &DockerExecutor,
    cfg: &Config,
    spec: &HostSpec,
    auth: Option<&RegistryAuth>,
) -> anyhow::Result<Observed> {
    // The images the commit names, inspected while the listings finish.
    let names: BTreeSet<String> = spec
        .stacks
        .values()
        .flat_map(|s| s.services.values())
        .map(|svc| normalize_image(&svc.image))
        .collect();
    let (listed, images) = tokio::join!(
        &mut listing.0,
        super::images::observe_images(&exec.docker, &names)
    );
    let mut observed =
        listed.map_err(|e| anyhow::anyhow!("listing gitmoor's Docker objects stopped: {e}"))??;
    let mut images = images?;
    images.put_into(&mut observed);
    super::data::observe_data_folders(&mut observed, spec, &cfg.data_dir());
    observed.sites = super::nginx::observe_sites(&cfg.nginx.sites_dir);
    (observed.certs, observed.cert_expiry) = certificates(cfg, spec);
    // UFW only when the repo has `ufw/`: a host without it never runs ufw or sshd.
    if spec.firewall.is_some() {
        observed.firewall = observe_firewall_host(cfg).await;
    }
    for svc in spec.stacks.values().flat_map(|s| s.services.values()) {
        if svc.build.is_some() {
            continue;
        }
        let wants_platform = svc
            .platform
            .as_deref()
            .is_some_and(|p| !p.trim().is_empty());
        if wants_platform {
            let name = normalize_image(&svc.image);
            if let Some(p) = images.platforms.get(&name) {
                observed.image_platforms.insert(name, p.clone());
            }
        }
        if svc.pull_policy == PullPolicy::Always {
            match exec.remote_digest(&svc.image, auth).await {
                Ok(d) => {
                    observed
                        .remote_digests
                        .insert(normalize_image(&svc.image), d);
                }
                Err(e) => {
                    warn!(image = %svc.image, error = %format!("{e:#}"), "cannot read the tag's digest on its registry")
                }
            }
        }
    }
    Ok(observed)
}

/// UFW with what the SSH lockout guard needs: the SSH port and the sessions open now. Any part
/// that cannot be read makes the whole not observed: the guard never judges blind.
pub async fn observe_firewall_host(cfg: &Config) -> Seen<FirewallHost> {
    let redact = Redactor::default();
    let state = match super::ufw::observe_firewall(&cfg.firewall, &redact).await {
        Seen::Observed(s) => s,
        Seen::NotObserved(why) => return Seen::NotObserved(why),
    };
    // No port assumed (sshd -T failed, no firewall.ssh_port): it could be the wrong one. The
    // apply's check fails the same way.
    let ssh_ports = match super::ufw::ssh_ports(&cfg.firewall, &redact).await {
        Ok(p) => p,
        Err(why) => return Seen::NotObserved(why),
    };
    match super::ufw::ssh_peers(&ssh_ports) {
        // Loopback sessions are kept: the lockout guard itself leaves them out, for the plan
        // and the apply alike.
        Ok(peers) => Seen::Observed(FirewallHost {
            state,
            ssh_ports,
            ssh_peers: peers,
        }),
        Err(why) => Seen::NotObserved(why),
    }
}

/// The Let's Encrypt lineages of the `tls: letsencrypt` sites (first name = lineage): serving
/// (valid now, every name covered), stale (there but expired or short of a name), unreadable;
/// absent when there is none. And when each expires. Read in process (no certbot, no openssl).
pub fn certificates(
    cfg: &Config,
    spec: &HostSpec,
) -> (
    std::collections::BTreeMap<String, CertStatus>,
    std::collections::BTreeMap<String, i64>,
) {
    use crate::spec::nginx::site::{SiteKind, Tls};
    let now = chrono::Utc::now().timestamp();
    let mut out = std::collections::BTreeMap::new();
    let mut expiry = std::collections::BTreeMap::new();
    for site in spec.sites.values() {
        let SiteKind::Rendered(def) = &site.kind else {
            continue;
        };
        if def.tls != Tls::LetsEncrypt {
            continue;
        }
        let names: Vec<String> = def.server_names.iter().map(|n| n.to_string()).collect();
        let Some(primary) = names.first() else {
            continue;
        };
        let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        let seen = super::certs::observe_cert(&cfg.letsencrypt.config_dir, primary);
        if let Seen::Observed(c) = &seen {
            if let Some(t) = c.not_after.filter(|_| c.present) {
                expiry.insert(primary.clone(), t);
            }
        }
        let status = match seen {
            Seen::NotObserved(why) => Some(CertStatus::Unreadable(why)),
            Seen::Observed(c) if !c.present => None,
            Seen::Observed(c)
                if c.serves(&wanted, now) && c.due_for_renewal(now, cfg.letsencrypt.renew_days) =>
            {
                Some(CertStatus::Due)
            }
            Seen::Observed(c) if c.serves(&wanted, now) => Some(CertStatus::Serves),
            Seen::Observed(_) => Some(CertStatus::Stale),
        };
        if let Some(status) = status {
            out.insert(primary.clone(), status);
        }
    }
    (out, expiry)
}
