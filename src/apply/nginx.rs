//! Changes to the host's Nginx sites, safely: gitmoor writes only `<site>.conf` files in the one
//! folder it owns (`nginx.sites_dir`), tests the whole config with `nginx -t` before any reload,
//! and puts a site's previous version back when the test fails, so the host keeps serving the
//! last good version. Each site is changed on its own (the plan makes one unit per site), so
//! one bad site never takes the others down: it is held back with nginx's own message, and the
//! next site is tested over the last good set.
//!
//! Why the test runs on the real folder (not a copy of the whole config): the host's config
//! includes the folder by its path, and a copy would test a different config from the one a
//! reload loads. Nginx reads the folder only on a test or a reload; a lock keeps gitmoor's calls
//! from interleaving. A reload is taken when nginx's master handles the signal, which may be after
//! `nginx -s reload` returned: so a change put back after an earlier reload of the same apply is
//! followed by one more reload, and nginx ends on the files the folder shows.

mod ctl;
mod serves;
mod site_file;

use crate::config::nginx::NginxConfig;
use crate::observe::nginx::{check_site_name, with_header};
use crate::process::ProcessError;
use crate::redact::Redactor;
use ctl::{Ctl, TestFailure};
use site_file::{Current, SiteFile};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why one site was not changed. Each names the site; the host still serves its last good
/// version (or nothing, for a site never installed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("nginx site {site:?}: {reason}")]
    BadName { site: String, reason: String },
    #[error(
        "nginx site {site}: {} was not written by gitmoor (its first line is not `# managed by \
         gitmoor`), so gitmoor leaves it alone; rename the site in the repo, or move that file \
         away if gitmoor should own the name",
        file.display()
    )]
    Foreign { site: String, file: PathBuf },
    #[error(
        "nginx site {site}: nginx rejects the config with this version, so the host keeps \
         serving the last good one: {message}"
    )]
    Rejected { site: String, message: String },
    /// Not about this site's content: a file could not be written, nginx could not run, the
    /// host's config fails without gitmoor's change, or the reload failed.
    #[error("nginx site {site}: {message}")]
    Host { site: String, message: String },
}

impl SiteError {
    /// The same error with `note` added to its message.
    fn with_note(self, note: &str) -> SiteError {
        match self {
            SiteError::Rejected { site, message } => SiteError::Rejected {
                site,
                message: format!("{message}; {note}"),
            },
            SiteError::Host { site, message } => SiteError::Host {
                site,
                message: format!("{message}; {note}"),
            },
            other => other,
        }
    }
}

/// One change to the sites folder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SiteChange {
    /// Write `<site>.conf` with this content (the header line is added when missing).
    Install { site: String, content: String },
    /// Delete `<site>.conf` (only gitmoor's own file).
    Remove { site: String },
}

impl SiteChange {
    fn site(&self) -> &str {
        match self {
            SiteChange::Install { site, .. } | SiteChange::Remove { site } => site,
        }
    }
}

/// The host's Nginx, as the config describes it.
#[derive(Debug)]
pub struct NginxHost {
    sites_dir: PathBuf,
    ctl: Ctl,
    /// Set once `nginx -T` has shown the folder included; checked on the first install.
    include_seen: std::sync::atomic::AtomicBool,
    /// One change at a time: a test must see only the change it judges.
    lock: tokio::sync::Mutex<()>,
    /// Successful reloads so far: after one, nginx serves every certificate as it is on disk
    /// now, which the reconcile records (an outside renewal is then noticed by the next plan).
    reloads: std::sync::atomic::AtomicUsize,
    /// The port the sites' HTTP servers listen on (where the ACME server asks).
    http_port: u16,
    /// Whether to wait for nginx to serve the ACME webroot before certbot (`nginx.acme_probe`),
    /// and for how long (the budget of a reload, `nginx.test_timeout_secs`).
    acme_probe: Option<std::time::Duration>,
}

/// A change that touches the disk: the file, what was there, what goes there.
struct Staged {
    site: String,
    file: SiteFile,
    previous: Option<String>,
    new: Option<String>,
}

impl NginxHost {
    /// `redact` holds the secret values nginx's messages could quote (a site's basic-auth file
    /// path is no secret, but a value rendered into a site could be).
    pub fn new(cfg: &NginxConfig, redact: Redactor) -> Result<NginxHost, ProcessError> {
        Ok(NginxHost {
            sites_dir: cfg.sites_dir.clone(),
            ctl: Ctl::new(cfg, redact)?,
            include_seen: std::sync::atomic::AtomicBool::new(false),
            lock: tokio::sync::Mutex::new(()),
            reloads: std::sync::atomic::AtomicUsize::new(0),
            http_port: cfg.http_port,
            acme_probe: cfg
                .acme_probe
                .then(|| std::time::Duration::from_secs(cfg.test_timeout_secs)),
        })
    }

    pub fn sites_dir(&self) -> &Path {
        &self.sites_dir
    }

    /// Waits until nginx serves `webroot`'s ACME challenges for `names` (see `serves.rs`).
    pub async fn wait_until_acme_served(
        &self,
        webroot: &Path,
        names: &[&str],
    ) -> Result<(), String> {
        match self.acme_probe {
            Some(budget) => serves::wait_until_served(webroot, self.http_port, names, budget).await,
            None => Ok(()),
        }
    }

    /// Installs one site: written, tested with the whole config, reloaded; on a failed test
    /// the previous version is back and the error carries nginx's message.
    pub async fn install(&self, site: &str, content: &str) -> Result<(), SiteError> {
        self.one(SiteChange::Install {
            site: site.into(),
            content: content.into(),
        })
        .await
    }

    /// Reloads nginx as it is (a renewed certificate is read at reload), under the same lock as
    /// the changes.
    pub async fn reload(&self) -> Result<(), String> {
        let _one = self.lock.lock().await;
        self.reload_locked().await
    }

    /// Whether nginx was reloaded by this host at least once (so it now serves the
    /// certificates that are on disk).
    pub fn reloaded(&self) -> bool {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    async fn reload_locked(&self) -> Result<(), String> {
        self.ctl.reload().await?;
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The site's file as gitmoor wrote it, None when there is none (so a change can be put
    /// back exactly).
    pub fn current(&self, site: &str) -> Result<Option<String>, SiteError> {
        if let Err(reason) = check_site_name(site) {
            return Err(SiteError::BadName {
                site: site.into(),
                reason,
            });
        }
        let file = SiteFile::new(&self.sites_dir, site);
        match file.read() {
            Ok(Current::Absent) => Ok(None),
            Ok(Current::Managed(text)) => Ok(Some(text)),
            Ok(Current::Foreign) => Err(SiteError::Foreign {
                site: site.into(),
                file: file.path,
            }),
            Err(e) => Err(host(
                site,
                &format!("cannot read {}: {e}", file.path.display()),
            )),
        }
    }

    /// Installs `content` and makes sure nginx loaded it *and the certificates it names*: when
    /// the file is already in place (a certificate obtained again under the same vhost: an
    /// expired one, a name added), [`Self::install`] changes nothing and would not reload, so
    /// nginx would keep serving the old certificate from memory; here it reloads.
    pub async fn install_and_load(&self, site: &str, content: &str) -> Result<(), SiteError> {
        let in_place = self.current(site)?.as_deref() == Some(with_header(content).as_str());
        if !in_place {
            return self.install(site, content).await;
        }
        self.reload().await.map_err(|message| host(site, &message))
    }

    /// Removes one site (a removal that breaks the test, say another site used an upstream
    /// this one defined, is put back).
    pub async fn remove(&self, site: &str) -> Result<(), SiteError> {
        self.one(SiteChange::Remove { site: site.into() }).await
    }

    /// One change: checked, then [`Self::try_staged`]; a change that is already in place is Ok
    /// without a test or a reload.
    async fn one(&self, change: SiteChange) -> Result<(), SiteError> {
        let _guard = self.lock.lock().await;
        let Some(s) = self.stage(change)? else {
            return Ok(());
        };
        let reloaded_before = self.reloaded();
        let done = self.try_staged(&s).await;
        match done {
            // nginx reads the files when its master handles the reload signal, which may be
            // after `nginx -s reload` returned: a reload sent for an earlier site may have read
            // this change before it was put back, and been refused (that site not loaded) or
            // loaded it (a version the folder no longer shows). With the files back as they
            // were, one more reload makes nginx load what every site left.
            Err(e) if reloaded_before => match self.reload_locked().await {
                Ok(()) => Err(e),
                Err(m) => Err(e.with_note(&format!(
                    "and the reload after putting it back failed, so sites changed before it                      may not be served yet: {m}"
                ))),
            },
            done => done,
        }
    }

    /// Writes a staged change, tests it with the whole config and reloads; on a failure the
    /// previous version is put back, and the config is tested again without the change: when it
    /// still fails, the fault is the host's own config, not this site's, and the error says so.
    async fn try_staged(&self, s: &Staged) -> Result<(), SiteError> {
        if s.new.is_some() {
            self.ensure_dir().map_err(|m| host(&s.site, &m))?;
        }
        write_new(s).map_err(|m| host(&s.site, &m))?;
        let message = match self.ctl.test().await {
            Ok(()) => return self.go_live(s).await,
            Err(TestFailure::CannotRun(m)) => return Err(put_back(s, &m)),
            Err(TestFailure::Rejected(message)) => message,
        };
        if let Err(e) = s.file.restore(s.previous.as_deref()) {
            return Err(restore_error(s, &e));
        }
        match self.ctl.test().await {
            Ok(()) => Err(SiteError::Rejected {
                site: s.site.clone(),
                message,
            }),
            Err(TestFailure::Rejected(m)) => Err(host(
                &s.site,
                &format!(
                    "not applied: nginx -t fails without gitmoor's change too, so the host's own \
                     config is broken; fix it first: {m}"
                ),
            )),
            Err(TestFailure::CannotRun(m)) => Err(host(&s.site, &m)),
        }
    }

    /// Checks the name and ownership and reads what the file holds now; None when the change
    /// is already in place.
    fn stage(&self, change: SiteChange) -> Result<Option<Staged>, SiteError> {
        let site = change.site().to_string();
        if let Err(reason) = check_site_name(&site) {
            return Err(SiteError::BadName { site, reason });
        }
        let file = SiteFile::new(&self.sites_dir, &site);
        let previous = match file.read() {
            Ok(Current::Absent) => None,
            Ok(Current::Managed(text)) => Some(text),
            Ok(Current::Foreign) => {
                let file = file.path.clone();
                return Err(SiteError::Foreign { site, file });
            }
            Err(e) => {
                let message = format!("cannot read {}: {e}", file.path.display());
                return Err(host(&site, &message));
            }
        };
        let new = match change {
            SiteChange::Install { content, .. } => Some(with_header(&content)),
            SiteChange::Remove { .. } => None,
        };
        if new == previous {
            return Ok(None);
        }
        Ok(Some(Staged {
            site,
            file,
            previous,
            new,
        }))
    }

    /// Makes the sites folder when it does not exist yet (0755: Nginx's master reads it as
    /// root, and an admin should be able to look).
    fn ensure_dir(&self) -> Result<(), String> {
        let dir = &self.sites_dir;
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| {
                format!(
                    "cannot make the nginx sites folder {}: {e}; make it (install -d -m 0755 {}) \
                     and make sure the unit's ReadWritePaths names it",
                    dir.display(),
                    dir.display()
                )
            })
    }

    /// The written change passed the test: check once that nginx reads the folder at all, then
    /// reload. On a failure the change is put back, so the folder shows what is live.
    async fn go_live(&self, s: &Staged) -> Result<(), SiteError> {
        use std::sync::atomic::Ordering;
        if s.new.is_some() && !self.include_seen.load(Ordering::Relaxed) {
            match self.ctl.includes(&s.file.path).await {
                Ok(true) => self.include_seen.store(true, Ordering::Relaxed),
                Ok(false) => {
                    let message = format!(
                        "not applied: nginx's config does not include the sites folder; add \
                         `include {}/*.conf;` inside the http {{ }} block of the main config \
                         (docs/nginx-host.md)",
                        self.sites_dir.display()
                    );
                    return Err(put_back(s, &message));
                }
                Err(message) => return Err(put_back(s, &message)),
            }
        }
        self.reload_locked().await.map_err(|m| put_back(s, &m))
    }
}

/// Puts a written change back; the error to report (`message`, or the worse news that the
/// previous version could not be put back).
fn put_back(s: &Staged, message: &str) -> SiteError {
    match s.file.restore(s.previous.as_deref()) {
        Ok(()) => host(&s.site, message),
        Err(e) => restore_error(s, &e),
    }
}

fn write_new(s: &Staged) -> Result<(), String> {
    let done = match &s.new {
        Some(content) => s.file.write(content),
        None => s.file.remove(),
    };
    done.map_err(|e| {
        format!(
            "cannot write {}: {e}; the unit's ReadWritePaths must name the sites folder",
            s.file.path.display()
        )
    })
}

fn host(site: &str, message: &str) -> SiteError {
    SiteError::Host {
        site: site.to_string(),
        message: message.to_string(),
    }
}

/// The worst case: a changed file could not be put back. It is on disk untested; say so loudly.
fn restore_error(s: &Staged, e: &std::io::Error) -> SiteError {
    tracing::error!(site = %s.site, file = %s.file.path.display(), error = %e,
        "cannot put back the previous version of an nginx site");
    host(
        &s.site,
        &format!(
            "cannot put back the previous version of {} ({e}): the file on disk is untested and \
             the next nginx reload would read it; fix the folder's permissions and let gitmoor \
             retry",
            s.file.path.display()
        ),
    )
}
