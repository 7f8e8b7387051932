//! Everything the plan reads of the host, in one place: gitmoor's objects of this instance (four
//! listings), the data dir, the Nginx sites folder, the platform of each local image a service pins with `platform:`, and
//! the registry's digest of every `pull_policy: always` tag (a moved tag is redeployed; a registry
//! that cannot be asked only costs a warning). The engine calls themselves are the executor's
//! (one Docker client); what to look at is decided here.

use super::{FirewallHost, Observed, Seen};
use crate::apply::docker::registry::RegistryAuth;
use crate::apply::docker::DockerExecutor;
use crate::config::Config;
use crate::plan::normalize_image;
use crate::redact::Redactor;
use crate::spec::model::{HostSpec, PullPolicy};
use tracing::warn;

pub async fn observe_for_plan(
    exec: &DockerExecutor,
    cfg: &Config,
    spec: &HostSpec,
    auth: Option<&RegistryAuth>,
) -> anyhow::Result<Observed> {
    let mut observed = super::docker::observe(&exec.docker, &cfg.instance).await?;
    super::data::observe_data_folders(&mut observed, spec, &cfg.data_dir());
    observed.sites = super::nginx::observe_sites(&cfg.nginx.sites_dir);
    observed.certs = certificates_in_place(cfg, spec);
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
            if let Some(p) = exec.image_platform(&svc.image).await? {
                observed
                    .image_platforms
                    .insert(normalize_image(&svc.image), p);
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
async fn observe_firewall_host(cfg: &Config) -> Seen<FirewallHost> {
    let redact = Redactor::default();
    let state = match super::ufw::observe_firewall(&cfg.firewall, &redact).await {
        Seen::Observed(s) => s,
        Seen::NotObserved(why) => return Seen::NotObserved(why),
    };
    let (ssh_port, note) = super::ufw::ssh_port(&cfg.firewall, &redact).await;
    if let Some(note) = note {
        warn!("{note}");
    }
    match super::ufw::ssh_peers(ssh_port) {
        Ok(ssh_peers) => Seen::Observed(FirewallHost {
            state,
            ssh_port,
            ssh_peers,
        }),
        Err(why) => Seen::NotObserved(why),
    }
}

/// The `tls: letsencrypt` sites whose certificate is on the host, valid now and covering every
/// server name (first name = lineage). One that is not observed counts as missing: the plan
/// then asks certbot, which keeps a valid certificate rather than ask again.
fn certificates_in_place(cfg: &Config, spec: &HostSpec) -> std::collections::BTreeSet<String> {
    use crate::spec::nginx::site::{SiteKind, Tls};
    let now = chrono::Utc::now().timestamp();
    let mut out = std::collections::BTreeSet::new();
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
        if let Seen::Observed(c) = super::certs::observe_cert(&cfg.letsencrypt.config_dir, primary)
        {
            if c.serves(&wanted, now) {
                out.insert(primary.clone());
            }
        }
    }
    out
}
