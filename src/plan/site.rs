//! The Nginx site differ: each site's rendered file against the file in the folder gitmoor owns.
//! A site is a unit of its own (one bad site never holds the others back) that follows the stacks
//! it proxies to: it goes live only once they are up. Pure: the rendering happened before (the
//! site's content is given), and the folder was read by `observe/`.

use super::cert_backoff::{held, NameFailures};
use super::{Unit, UnitId, Work};
use crate::observe::Seen;
use crate::spec::model::HostSpec;
use crate::spec::nginx::render::{site_text, RenderHost, RenderTls};
use crate::spec::nginx::site::{Backend, LocationAction, SiteKind, Tls, Upstream};
use crate::spec::nginx::values::HostPath;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What rendering the sites needs of the host (gitmoor's config, never the repo).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteContext {
    pub render: RenderHost,
    /// Where certbot writes the ACME challenges and Nginx serves them from.
    pub acme_webroot: PathBuf,
    /// certbot's `live/` folder: `<live>/<name>/fullchain.pem` and `privkey.pem`.
    pub letsencrypt_live: PathBuf,
    /// certbot's recent failures by DNS name (the state file's): past three within the hour
    /// for one of its names, a site's certificate request waits (`cert_backoff`).
    pub cert_failures: NameFailures,
    /// Unix seconds, for the backoff.
    pub now: i64,
    /// The end (`notAfter`) of each lineage's certificate as it is on disk now, by lineage.
    pub certs_on_disk: BTreeMap<String, i64>,
    /// The end of each lineage's certificate when gitmoor last reloaded nginx (the state
    /// file's): nginx reads certificates only at a reload, so one that differs on disk was
    /// written since (certbot.timer, a manual `certbot renew`) and is not served yet.
    pub certs_loaded: BTreeMap<String, i64>,
}

impl Default for SiteContext {
    fn default() -> Self {
        SiteContext {
            render: RenderHost::default(),
            acme_webroot: PathBuf::from("/var/lib/gitmoor-acme"),
            letsencrypt_live: PathBuf::from("/etc/letsencrypt/live"),
            cert_failures: NameFailures::new(),
            now: 0,
            certs_on_disk: BTreeMap::new(),
            certs_loaded: BTreeMap::new(),
        }
    }
}

/// A Let's Encrypt lineage on the host, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Valid now and covering every server name of the site.
    Serves,
    /// Serving, but within `letsencrypt.renew_days` of its end: renewed by the reconcile.
    Due,
    /// There, but expired or missing a name: still served (never downgraded to plain HTTP)
    /// while certbot is asked again.
    Stale,
    /// Its files could not be read: the site is held as it is on the host.
    Unreadable(String),
}

/// Every site of the commit rendered for this host. `certs`: the Let's Encrypt lineages on the
/// host by primary name (the first `server_names`); a site without one is rendered pending
/// (HTTP with the ACME challenges only) and asks for it. A site that cannot be rendered safely
/// (a path that cannot go into a vhost, a certificate that cannot be read) is held: kept on
/// the host as it is, its unit failing with why (never dropped, which would remove it).
pub fn desired_sites(
    spec: &HostSpec,
    ctx: &SiteContext,
    certs: &BTreeMap<String, CertStatus>,
) -> Vec<DesiredSite> {
    let mut out = Vec::new();
    for site in spec.sites.values() {
        let mut desired = DesiredSite {
            name: site.name.clone(),
            file: site.file.clone(),
            content: String::new(),
            follows: stacks_of(&site.kind),
            certificate: None,
            hold: None,
            renew: None,
            reload: None,
        };
        let tls = match &site.kind {
            SiteKind::Raw(_) => Ok(RenderTls::Off),
            SiteKind::Rendered(def) => match &def.tls {
                Tls::Off => Ok(RenderTls::Off),
                Tls::Files { cert, key } => Ok(RenderTls::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                Tls::LetsEncrypt => lets_encrypt(ctx, site, def, certs, &mut desired),
            },
        };
        match tls {
            Ok(tls) => {
                desired.content =
                    crate::observe::nginx::with_header(&site_text(site, &tls, &ctx.render))
            }
            Err(why) => desired.hold = Some(format!("site {}: {why}", site.name)),
        }
        out.push(desired);
    }
    out
}

/// The TLS of a Let's Encrypt site, and the certificate to ask for when it lacks one.
fn lets_encrypt(
    ctx: &SiteContext,
    site: &crate::spec::nginx::site::SiteSpec,
    def: &crate::spec::nginx::site::SiteDef,
    certs: &BTreeMap<String, CertStatus>,
    desired: &mut DesiredSite,
) -> Result<RenderTls, String> {
    let primary = def
        .server_names
        .first()
        .map(|n| n.to_string())
        .ok_or("no server name")?;
    let path = |p: PathBuf| {
        HostPath::parse(&p.to_string_lossy()).map_err(|e| {
            format!(
                "{} cannot be used in a vhost ({}); fix that path in gitmoor's config",
                p.display(),
                e.message
            )
        })
    };
    let webroot = path(ctx.acme_webroot.clone())?;
    let dir = ctx.letsencrypt_live.join(&primary);
    let ready = RenderTls::AcmeReady {
        webroot: webroot.clone(),
        cert: path(dir.join("fullchain.pem"))?,
        key: path(dir.join("privkey.pem"))?,
    };
    let names: Vec<String> = def.server_names.iter().map(|n| n.to_string()).collect();
    let request = || CertRequest {
        names: names.clone(),
        webroot: ctx.acme_webroot.clone(),
        then_content: crate::observe::nginx::with_header(&site_text(site, &ready, &ctx.render)),
    };
    // certbot failed too often for these names lately: ask nothing, change nothing, say when.
    let asks = !matches!(
        certs.get(&primary),
        Some(CertStatus::Serves | CertStatus::Unreadable(_))
    );
    if asks {
        if let Some(why) = held(&ctx.cert_failures, &names, ctx.now) {
            return Err(format!("{why}; the site is kept as it is on the host"));
        }
    }
    if matches!(
        certs.get(&primary),
        Some(CertStatus::Serves | CertStatus::Due)
    ) {
        if let Some(on_disk) = ctx.certs_on_disk.get(&primary) {
            if ctx.certs_loaded.get(&primary) != Some(on_disk) {
                desired.reload = Some(primary.clone());
            }
        }
    }
    match certs.get(&primary) {
        Some(CertStatus::Serves) => Ok(ready),
        Some(CertStatus::Due) => {
            desired.renew = Some((primary.clone(), ctx.acme_webroot.clone()));
            Ok(ready)
        }
        Some(CertStatus::Stale) => {
            desired.certificate = Some(request());
            Ok(ready)
        }
        Some(CertStatus::Unreadable(why)) => Err(format!(
            "its certificate cannot be read ({why}); the site is kept as it is on the host"
        )),
        None => {
            desired.certificate = Some(request());
            Ok(RenderTls::AcmePending { webroot })
        }
    }
}

/// The lineages nginx serves from gitmoor's vhosts, with their end on disk (`ends`), for the
/// state's `certs_loaded`: a `tls: letsencrypt` site counts only when its vhost in `on_disk`
/// (the sites folder after the apply) is its finished TLS vhost. A site held, still waiting
/// for its certificate (the ACME-only vhost) or put back after a failure serves no lineage,
/// and the renewal while the head is invalid renews only what `certs_loaded` lists: never a
/// certificate no gitmoor vhost serves.
pub fn served_lineages(
    spec: &HostSpec,
    ctx: &SiteContext,
    on_disk: &BTreeMap<String, String>,
    ends: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for site in spec.sites.values() {
        let SiteKind::Rendered(def) = &site.kind else {
            continue;
        };
        if def.tls != Tls::LetsEncrypt {
            continue;
        }
        let Some(primary) = def.server_names.first().map(|n| n.to_string()) else {
            continue;
        };
        let Some(end) = ends.get(&primary) else {
            continue;
        };
        // Rendered as for a certificate that serves (no backoff is consulted then): the
        // finished vhost. `scratch` takes what the plan would note; it is not used.
        let mut scratch = DesiredSite {
            name: site.name.clone(),
            file: site.file.clone(),
            content: String::new(),
            follows: BTreeSet::new(),
            certificate: None,
            hold: None,
            renew: None,
            reload: None,
        };
        let serves = BTreeMap::from([(primary.clone(), CertStatus::Serves)]);
        let Ok(ready) = lets_encrypt(ctx, site, def, &serves, &mut scratch) else {
            continue;
        };
        let finished = crate::observe::nginx::with_header(&site_text(site, &ready, &ctx.render));
        if on_disk.get(&site.name) == Some(&finished) {
            out.insert(primary, *end);
        }
    }
    out
}

/// The server names of site `name` of the commit (first: its certificate's lineage), as the
/// certbot backoff keys them; empty for a raw `.conf` or an unknown site.
pub fn server_names(spec: &HostSpec, name: &str) -> Vec<String> {
    match spec.sites.get(name).map(|s| &s.kind) {
        Some(SiteKind::Rendered(def)) => def.server_names.iter().map(|n| n.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// The stacks a site proxies to: it follows them.
fn stacks_of(kind: &SiteKind) -> BTreeSet<String> {
    let SiteKind::Rendered(def) = kind else {
        return BTreeSet::new();
    };
    let Backend::App {
        upstream,
        locations,
    } = &def.backend
    else {
        return BTreeSet::new();
    };
    std::iter::once(upstream)
        .chain(locations.iter().filter_map(|l| match &l.action {
            LocationAction::Proxy(r) => Some(r),
            LocationAction::Return(_) => None,
        }))
        .filter_map(|r| match &r.written {
            Upstream::Service { stack, .. } => Some(stack.clone()),
            Upstream::Address(_) => None,
        })
        .collect()
}

/// One site of the commit, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSite {
    pub name: String,
    /// A certificate to obtain first (a `tls: letsencrypt` site whose certificate is not on the
    /// host): the unit is planned even when the HTTP vhost is already installed.
    pub certificate: Option<CertRequest>,
    /// The repo file it comes from (`nginx/api.yaml`), for reasons.
    pub file: String,
    /// The vhost file as it must be on the host.
    pub content: String,
    /// The stacks it proxies to: applied first, and a failure there holds the site back.
    pub follows: BTreeSet<String>,
    /// Why the site cannot be rendered now: it is kept on the host as it is, and its unit fails
    /// with this (an apply that left a site behind says so).
    pub hold: Option<String>,
    /// The certificate (lineage) is due for renewal, through this ACME webroot.
    pub renew: Option<(String, PathBuf)>,
    /// The certificate (lineage) on disk is not the one nginx loaded at gitmoor's last reload:
    /// renewed outside gitmoor, so nginx must reload to serve it.
    pub reload: Option<String>,
}

/// A certificate a site needs, and its vhost once the certificate is there.
#[derive(Debug, Clone, PartialEq)]
pub struct CertRequest {
    /// The site's server names; the first names the certificate (certbot's lineage).
    pub names: Vec<String>,
    pub webroot: PathBuf,
    pub then_content: String,
}

/// What a site unit does.
#[derive(Debug, Clone, PartialEq)]
pub enum SiteAction {
    /// Write the vhost (new or changed), test the whole config, reload; on a failed test the
    /// previous version stays.
    Install {
        content: String,
        /// A unified diff from the file on the host (all `+` lines for a new site).
        diff: String,
        reason: String,
        /// A Let's Encrypt certificate to obtain once `content` (the HTTP vhost serving the ACME
        /// webroot) is live, then the vhost to install with it.
        certificate: Option<CertRequest>,
    },
    /// Remove the vhost of a site that left the repo (its certificate is kept).
    Remove { reason: String },
    /// Change nothing, and fail with why (the site could not be rendered or observed).
    Hold { reason: String },
    /// Renew the site's certificate (certbot, through the ACME `webroot`), then reload nginx
    /// so it serves the new one.
    Renew {
        name: String,
        webroot: PathBuf,
        reason: String,
    },
    /// Reload nginx: the site's certificate on disk is newer than the one it serves.
    Reload { reason: String },
}

/// The site units: a site whose file differs is installed, a file of a site no longer in the repo
/// is removed. A folder that could not be read plans nothing and says why: "not observed" must
/// never read as "no site", which would reinstall or remove blindly.
pub fn plan_sites(
    desired: &[DesiredSite],
    observed: &Seen<BTreeMap<String, String>>,
    recorded: &BTreeSet<String>,
) -> Vec<Unit> {
    let hold = |site: &DesiredSite, reason: String| Unit {
        id: UnitId::Site(site.name.clone()),
        after: Vec::new(),
        work: Work::Site(SiteAction::Hold { reason }),
    };
    let on_host = match observed {
        Seen::Observed(files) => files,
        Seen::NotObserved(why) => {
            return desired
                .iter()
                .map(|s| {
                    hold(
                        s,
                        format!(
                            "nginx sites not observed ({why}): no site was installed or removed"
                        ),
                    )
                })
                .collect();
        }
    };
    let mut units = Vec::new();
    for site in desired {
        if let Some(why) = &site.hold {
            units.push(hold(site, why.clone()));
            continue;
        }
        let old = on_host.get(&site.name);
        if old == Some(&site.content) && site.certificate.is_none() {
            if let Some((name, webroot)) = &site.renew {
                units.push(Unit {
                    id: UnitId::Site(site.name.clone()),
                    after: Vec::new(),
                    work: Work::Site(SiteAction::Renew {
                        name: name.clone(),
                        webroot: webroot.clone(),
                        reason: format!(
                            "the certificate for {name} is due for renewal (letsencrypt.renew_days)"
                        ),
                    }),
                });
            } else if let Some(name) = &site.reload {
                units.push(Unit {
                    id: UnitId::Site(site.name.clone()),
                    after: Vec::new(),
                    work: Work::Site(SiteAction::Reload {
                        reason: format!(
                            "the certificate for {name} on disk is not the one nginx loaded at \
                             gitmoor's last reload (renewed outside gitmoor, by certbot.timer \
                             say)"
                        ),
                    }),
                });
            }
            continue;
        }
        let reason = match (old, &site.certificate) {
            (None, _) => format!("new site from {}", site.file),
            (Some(o), Some(c)) if *o == site.content => format!(
                "the certificate for {} is not on the host yet",
                c.names.join(", ")
            ),
            (Some(_), _) => format!("{} changed", site.file),
        };
        units.push(Unit {
            id: UnitId::Site(site.name.clone()),
            after: site.follows.iter().cloned().map(UnitId::Stack).collect(),
            work: Work::Site(SiteAction::Install {
                diff: unified_diff(&site.name, old.map_or("", String::as_str), &site.content),
                content: site.content.clone(),
                reason,
                certificate: site.certificate.clone(),
            }),
        });
    }
    // Only sites this config installed (its state file records them) are removed: another
    // config's sites in a shared folder, or files from before, are left alone.
    let wanted: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
    for name in on_host
        .keys()
        .filter(|n| !wanted.contains(n.as_str()) && recorded.contains(*n))
    {
        units.push(Unit {
            id: UnitId::Site(name.clone()),
            after: Vec::new(),
            work: Work::Site(SiteAction::Remove {
                reason: format!("site {name} left the repo (its certificate is kept)"),
            }),
        });
    }
    units
}

/// `--- a/<site>.conf` / `+++ b/<site>.conf` with three lines of context.
fn unified_diff(site: &str, old: &str, new: &str) -> String {
    let file = format!("{site}.conf");
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{file}"), &format!("b/{file}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, content: &str, follows: &[&str]) -> DesiredSite {
        DesiredSite {
            name: name.into(),
            certificate: None,
            file: format!("nginx/{name}.yaml"),
            content: content.into(),
            follows: follows.iter().map(|s| s.to_string()).collect(),
            hold: None,
            renew: None,
            reload: None,
        }
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn host(files: &[(&str, &str)]) -> Seen<BTreeMap<String, String>> {
        Seen::Observed(
            files
                .iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_new_or_changed_site_is_installed_after_its_stacks_and_an_equal_one_is_left_alone() {
        let desired = [
            site("api", "server { listen 80; }\n", &["app"]),
            site("www", "same\n", &[]),
            site("docs", "a\nb\n", &[]),
        ];
        let units = plan_sites(
            &desired,
            &host(&[("www", "same\n"), ("docs", "a\nc\n")]),
            &none(),
        );
        let ids: Vec<String> = units.iter().map(|u| u.id.to_string()).collect();
        assert_eq!(ids, ["site api", "site docs"]);
        assert_eq!(units[0].after, vec![UnitId::Stack("app".into())]);
        let Work::Site(SiteAction::Install { diff, reason, .. }) = &units[1].work else {
            panic!("{units:?}")
        };
        assert_eq!(reason, "nginx/docs.yaml changed");
        assert!(
            diff.contains("-c\n+b\n") && diff.contains("--- a/docs.conf"),
            "{diff}"
        );
    }

    #[test]
    fn only_a_recorded_site_that_left_the_repo_is_removed_and_unobserved_sites_are_held() {
        let recorded: BTreeSet<String> = ["old".to_string()].into();
        let units = plan_sites(&[], &host(&[("old", "x"), ("theirs", "y")]), &recorded);
        assert_eq!(
            units.len(),
            1,
            "another config's site is left alone: {units:?}"
        );
        assert!(matches!(
            &units[0].work,
            Work::Site(SiteAction::Remove { reason }) if reason.contains("left the repo")
        ));
        // Not observed: neither "install everything" nor "remove everything"; each site of the
        // commit is held, and says why.
        let units = plan_sites(
            &[site("api", "x", &[])],
            &Seen::NotObserved("permission denied".into()),
            &recorded,
        );
        assert_eq!(units.len(), 1);
        assert!(matches!(
            &units[0].work,
            Work::Site(SiteAction::Hold { reason }) if reason == "nginx sites not observed (permission denied): no site was installed or removed"
        ));
        // A site that cannot be rendered is held, never removed.
        let mut held = site("api", "", &[]);
        held.hold = Some("site api: its certificate cannot be read".into());
        let units = plan_sites(&[held], &host(&[("api", "old")]), &recorded);
        assert!(matches!(
            &units[0].work,
            Work::Site(SiteAction::Hold { .. })
        ));
    }

    #[test]
    fn a_site_waiting_for_its_certificate_is_planned_until_it_has_one() {
        let mut pending = site("api", "http only\n", &["app"]);
        pending.certificate = Some(CertRequest {
            names: vec!["api.example.fr".into()],
            webroot: "/var/lib/gitmoor-acme".into(),
            then_content: "with tls\n".into(),
        });
        // The HTTP vhost is already there (an earlier attempt could not get the certificate).
        let units = plan_sites(
            std::slice::from_ref(&pending),
            &host(&[("api", "http only\n")]),
            &none(),
        );
        let Work::Site(SiteAction::Install {
            reason,
            certificate,
            ..
        }) = &units[0].work
        else {
            panic!("{units:?}")
        };
        assert_eq!(
            reason,
            "the certificate for api.example.fr is not on the host yet"
        );
        assert_eq!(
            certificate.as_ref().map(|c| c.then_content.as_str()),
            Some("with tls\n")
        );
        // With the certificate in place the site renders ready and asks for nothing.
        let ready = site("api", "with tls\n", &["app"]);
        assert!(plan_sites(&[ready], &host(&[("api", "with tls\n")]), &none()).is_empty());
    }

    #[test]
    fn a_certificate_due_for_renewal_is_renewed_without_touching_the_vhost() {
        let mut due = site("api", "with tls\n", &["app"]);
        due.renew = Some(("api.example.fr".into(), "/var/lib/gitmoor-acme".into()));
        let units = plan_sites(&[due], &host(&[("api", "with tls\n")]), &none());
        assert!(
            matches!(
                &units[0].work,
                Work::Site(SiteAction::Renew { name, webroot, .. })
                    if name == "api.example.fr" && webroot == std::path::Path::new("/var/lib/gitmoor-acme")
            ),
            "{units:?}"
        );
        // Not due: nothing.
        let fine = site("api", "with tls\n", &["app"]);
        assert!(plan_sites(&[fine], &host(&[("api", "with tls\n")]), &none()).is_empty());
    }

    #[test]
    fn a_certificate_renewed_outside_gitmoor_is_loaded_by_a_reload_of_nginx() {
        let spec = le_spec("api.example.fr");
        let fine = BTreeMap::from([("api.example.fr".to_string(), CertStatus::Serves)]);
        let ctx = |loaded: Option<i64>| SiteContext {
            certs_on_disk: BTreeMap::from([("api.example.fr".to_string(), 2_000)]),
            certs_loaded: loaded
                .map(|t| BTreeMap::from([("api.example.fr".to_string(), t)]))
                .unwrap_or_default(),
            ..SiteContext::default()
        };
        // nginx loaded this very certificate at gitmoor's last reload: nothing to do.
        let sites = desired_sites(&spec, &ctx(Some(2_000)), &fine);
        let on_host = host(&[("api", sites[0].content.as_str())]);
        assert!(plan_sites(&sites, &on_host, &none()).is_empty());
        // certbot.timer renewed it since (another end), or no reload was ever recorded: nginx
        // still serves the old one from memory, so the plan reloads it (the vhost is left).
        for loaded in [Some(1_000), None] {
            let sites = desired_sites(&spec, &ctx(loaded), &fine);
            let units = plan_sites(&sites, &on_host, &none());
            assert!(
                matches!(
                    &units[..],
                    [Unit { work: Work::Site(SiteAction::Reload { reason }), .. }]
                        if reason.starts_with("the certificate for api.example.fr on disk is not the one nginx loaded")
                ),
                "{units:?}"
            );
        }
    }

    #[test]
    fn only_a_lineage_whose_finished_tls_vhost_is_on_disk_counts_as_loaded() {
        let spec = le_spec("api.example.fr");
        let ctx = SiteContext::default();
        let ends = BTreeMap::from([("api.example.fr".to_string(), 2_000)]);
        let fine = BTreeMap::from([("api.example.fr".to_string(), CertStatus::Serves)]);
        let finished = desired_sites(&spec, &ctx, &fine)[0].content.clone();
        let pending = desired_sites(&spec, &ctx, &BTreeMap::new())[0]
            .content
            .clone();
        assert_ne!(finished, pending);
        let on_disk = |text: &str| BTreeMap::from([("api".to_string(), text.to_string())]);
        assert_eq!(
            served_lineages(&spec, &ctx, &on_disk(&finished), &ends),
            ends,
            "the TLS vhost serves it"
        );
        // The ACME-only vhost (still waiting, or left by a failure), the previous plain vhost
        // put back, no vhost at all, or no certificate on disk: not served, not recorded.
        for disk in [
            on_disk(&pending),
            on_disk("# managed by gitmoor\nplain\n"),
            BTreeMap::new(),
        ] {
            assert!(
                served_lineages(&spec, &ctx, &disk, &ends).is_empty(),
                "{disk:?}"
            );
        }
        assert!(served_lineages(&spec, &ctx, &on_disk(&finished), &BTreeMap::new()).is_empty());
    }

    /// A `tls: letsencrypt` site with `names` proxying to an address.
    fn le_spec(names: &str) -> HostSpec {
        use crate::source::snapshot::Snapshot;
        use crate::spec::nginx::{read_sites, Stacks};
        let yaml = format!("server_names: [{names}]\nupstream: 127.0.0.1:3000\ntls: letsencrypt\n");
        let loaded = BTreeMap::new();
        let stacks = Stacks {
            loaded: &loaded,
            in_commit: BTreeSet::new(),
        };
        let (sites, f) = read_sites(
            &Snapshot::from_texts(&[("nginx/api.yaml", &yaml)]),
            &stacks,
            &crate::spec::limits::Limits::default(),
        );
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        HostSpec {
            sites,
            ..HostSpec::default()
        }
    }

    #[test]
    fn a_site_whose_certbot_failed_three_times_this_hour_is_held_until_the_window_frees() {
        const TEN: i64 = 1_714_557_600; // 10:00 UTC
        let api = vec!["api.example.fr".to_string()];
        let mut failures = NameFailures::new();
        for t in [TEN, TEN + 60, TEN + 120] {
            crate::plan::cert_backoff::note_run(&mut failures, &api, true, t);
        }
        let ctx = |now: i64| SiteContext {
            cert_failures: failures.clone(),
            now,
            ..SiteContext::default()
        };
        let spec = le_spec("api.example.fr");
        let no_cert = BTreeMap::new();
        // No certificate yet, three failures within the hour: held, saying why and when.
        let sites = desired_sites(&spec, &ctx(TEN + 300), &no_cert);
        assert_eq!(
            sites[0].hold.as_deref(),
            Some(
                "site api: certbot failed 3 times for api.example.fr in the last hour; next try \
                 after 11:00 UTC (Let's Encrypt allows 5 failures per name per hour); the site is \
                 kept as it is on the host"
            )
        );
        let units = plan_sites(&sites, &host(&[("api", "http only")]), &none());
        assert!(matches!(
            &units[0].work,
            Work::Site(SiteAction::Hold { reason }) if reason.contains("certbot failed 3 times")
        ));
        // An hour after the first failure it asks again.
        let sites = desired_sites(&spec, &ctx(TEN + 3_600), &no_cert);
        assert!(sites[0].hold.is_none() && sites[0].certificate.is_some());
        // A renewal is held the same way; a certificate that serves asks nothing, holds nothing.
        let due = BTreeMap::from([("api.example.fr".to_string(), CertStatus::Due)]);
        assert!(desired_sites(&spec, &ctx(TEN + 300), &due)[0]
            .hold
            .is_some());
        let fine = BTreeMap::from([("api.example.fr".to_string(), CertStatus::Serves)]);
        assert!(desired_sites(&spec, &ctx(TEN + 300), &fine)[0]
            .hold
            .is_none());
        // The commit adds a name: Let's Encrypt still counts api.example.fr, so it waits too.
        let spec = le_spec("api.example.fr, www.example.fr");
        let sites = desired_sites(&spec, &ctx(TEN + 300), &no_cert);
        assert!(
            sites[0].certificate.is_none()
                && sites[0]
                    .hold
                    .as_deref()
                    .is_some_and(|h| h.contains("3 times for api.example.fr in")),
            "{sites:?}"
        );
        // Other names entirely: asked at once.
        let spec = le_spec("www.example.fr");
        let sites = desired_sites(&spec, &ctx(TEN + 300), &no_cert);
        assert!(sites[0].hold.is_none() && sites[0].certificate.is_some());
    }
}
