//! Certificates for the sites with `tls: letsencrypt`, through certbot's `certonly --webroot`:
//! certbot writes the challenge into `nginx.acme_webroot`, the site's HTTP server (rendered
//! `AcmePending`) serves it, and the certificate lands in `<config_dir>/live/<first name>/`.
//! gitmoor never lets certbot touch Nginx's config (no `--nginx` installer): the vhosts stay
//! gitmoor's, rendered `AcmeReady` once the files exist.
//!
//! Before certbot runs, the DNS preflight (`dns_preflight`) checks that every name points at
//! this host, since each failed validation counts against Let's Encrypt's rate limits. certbot
//! runs through `process` (argv, timeout, capped output) and one run at a time: certbot holds a
//! lock of its own and fails, rather than waits, when another instance has it.

use crate::apply::dns_preflight::{Preflight, PreflightError};
use crate::config::letsencrypt::LetsEncryptConfig;
use crate::observe::certs::{cert_paths, check_cert_name, observe_cert, read_cert_file, CertPaths};
use crate::observe::Seen;
use crate::process::{resolve_program, Process, ProcessError};
use crate::redact::Redactor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One certbot at a time in this process (certbot's own lock would fail the second).
static CERTBOT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why a site has no (new) certificate. Each names the site, or the lineage for a renewal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Nothing was sent to the ACME server: gitmoor's config or the site's names are not
    /// ready (no email, no certbot, a name that is no lineage name).
    #[error("site {site}: no certificate was asked for: {reason}")]
    NotAsked { site: String, reason: String },
    /// The DNS preflight failed; nothing was sent to the ACME server.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// certbot ran and did not obtain the certificate: its message, redacted.
    #[error("site {site}: certbot could not obtain a certificate for {}: {message}", names.join(", "))]
    Certbot {
        site: String,
        names: Vec<String>,
        message: String,
    },
    /// A renewal of lineage `name` could not be asked for (its files, gitmoor's config); the
    /// current certificate stays in use.
    #[error("certificate {name}: renewal failed, the current certificate stays in use: {message}")]
    Renew { name: String, message: String },
    /// certbot ran to renew lineage `name` and failed; the current certificate stays in use.
    #[error("certificate {name}: renewal failed, the current certificate stays in use: {message}")]
    RenewRun { name: String, message: String },
}

impl CertError {
    /// certbot ran and failed: the ACME server may have counted a failed validation against
    /// the names (Let's Encrypt allows 5 per name per hour), so it counts for the backoff.
    pub fn certbot_failed(&self) -> bool {
        matches!(self, CertError::Certbot { .. } | CertError::RenewRun { .. })
    }
}

/// Obtains (or keeps, while it is valid and covers `names`) the certificate of `site` for
/// `names`, the first being the lineage name. The webroot must be served at
/// `/.well-known/acme-challenge/` by the site's HTTP server for every name.
pub async fn obtain(
    site: &str,
    names: &[&str],
    webroot: &Path,
    cfg: &LetsEncryptConfig,
) -> Result<CertPaths, CertError> {
    prepare_obtain(site, names, webroot, cfg).await?.run().await
}

/// A certificate request that passed every check that needs no ACME server: ready to run.
#[derive(Debug)]
pub struct ObtainRequest<'a> {
    site: String,
    names: Vec<String>,
    program: PathBuf,
    args: Vec<String>,
    cfg: &'a LetsEncryptConfig,
}

/// Everything `obtain` checks before certbot runs: the names, gitmoor's config (email, the
/// certbot binary), the DNS preflight, the webroot. Separate, so the site's vhost is changed
/// only for a request that will really be made (a site switched to `tls: letsencrypt` keeps
/// serving as it did when the DNS does not point here yet).
pub async fn prepare_obtain<'a>(
    site: &str,
    names: &[&str],
    webroot: &Path,
    cfg: &'a LetsEncryptConfig,
) -> Result<ObtainRequest<'a>, CertError> {
    let not_asked = |reason: String| CertError::NotAsked {
        site: site.to_string(),
        reason,
    };
    let Some(first) = names.first() else {
        return Err(not_asked("the site has no server name".into()));
    };
    for n in names {
        check_cert_name(n).map_err(not_asked)?;
    }
    let email = cfg
        .email_for_obtain()
        .map_err(|e| not_asked(e.to_string()))?;
    let program = certbot_program(cfg).map_err(|e| not_asked(e.to_string()))?;
    Preflight::from_config(cfg)
        .map_err(not_asked)?
        .check(site, names)
        .await?;
    prepare_webroot(webroot).map_err(not_asked)?;

    let mut args: Vec<String> = vec!["certonly".into(), "--webroot".into(), "-w".into()];
    args.push(webroot.display().to_string());
    for n in names {
        args.extend(["-d".into(), n.to_string()]);
    }
    args.extend(
        [
            "--cert-name",
            first,
            "--keep-until-expiring",
            "--agree-tos",
            "-m",
            email,
            "--no-eff-email",
            "--server",
            &cfg.server,
        ]
        .map(String::from),
    );
    Ok(ObtainRequest {
        site: site.to_string(),
        names: names.iter().map(|n| n.to_string()).collect(),
        program,
        args,
        cfg,
    })
}

impl ObtainRequest<'_> {
    /// Runs certbot, then checks that the lineage serves every name.
    pub async fn run(self) -> Result<CertPaths, CertError> {
        let failed = |message: String| CertError::Certbot {
            site: self.site.clone(),
            names: self.names.clone(),
            message,
        };
        let cfg = self.cfg;
        run_certbot(&self.program, cfg, &self.args)
            .await
            .map_err(failed)?;
        let first = self.names.first().map_or("", String::as_str);
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        match observe_cert(&cfg.config_dir, first) {
            Seen::Observed(s) if s.serves(&names, now()) => Ok(cert_paths(&cfg.config_dir, first)),
            Seen::Observed(s) => Err(failed(format!(
                "certbot reported success, but {} does not hold a valid certificate for these \
                 names{}",
                cfg.live_dir(first).display(),
                s.error.map(|e| format!(" ({e})")).unwrap_or_default()
            ))),
            Seen::NotObserved(why) => Err(failed(format!(
                "certbot reported success, but the certificate cannot be read: {why}"
            ))),
        }
    }
}

/// Renews lineage `name` now, whatever its end, through `webroot` (see [`renew_args`]).
/// Ok(true) when the certificate on disk changed.
pub async fn renew_one(
    cfg: &LetsEncryptConfig,
    name: &str,
    webroot: &Path,
) -> Result<bool, CertError> {
    let fail = |message: String| CertError::Renew {
        name: name.to_string(),
        message,
    };
    check_cert_name(name).map_err(fail)?;
    let program = certbot_program(cfg).map_err(|e| fail(e.to_string()))?;
    prepare_webroot(webroot).map_err(fail)?;
    let cert = cfg.live_dir(name).join("cert.pem");
    let before = read_cert_file(&cert).map_err(fail)?;
    let before_bytes = std::fs::read(&cert).ok();
    let Some(before) = before else {
        return Err(fail(format!(
            "{} does not exist; the site obtains a first certificate instead",
            cert.display()
        )));
    };
    let mut covered = before.names;
    if covered.is_empty() {
        covered.push(name.to_string());
    }
    for n in &covered {
        check_cert_name(n).map_err(|why| {
            fail(format!(
                "{why}: the certificate covers it, and a webroot cannot renew it; obtain the \
                 certificate again (remove the lineage: certbot delete --cert-name {name})"
            ))
        })?;
    }
    run_certbot(&program, cfg, &renew_args(name, &covered, webroot))
        .await
        .map_err(|message| CertError::RenewRun {
            name: name.to_string(),
            message,
        })?;
    Ok(std::fs::read(&cert).ok() != before_bytes)
}

/// `certbot renew` for one lineage, forced, through gitmoor's ACME webroot. The authenticator
/// is given explicitly rather than taken from the lineage's saved settings: a lineage first
/// made by hand with `certbot --nginx` would renew with the nginx plugin, which rewrites
/// /etc/nginx, and cannot under gitmoor's unit (read-only outside the folders it names).
/// The webroot goes as `--webroot-map` for every name the certificate `covers`: certbot puts a
/// lineage's saved `webroot_map` back unless the map is set on the command line, and a stale
/// map (after a change of `nginx.acme_webroot`) would put the challenges where nginx no longer
/// serves them. (certbot 2.1 counts a `-w` as setting the map too; the map itself does not
/// depend on that.) certbot saves what it renewed with, so the lineage is gitmoor's from then
/// on.
pub fn renew_args(name: &str, covers: &[String], webroot: &Path) -> Vec<String> {
    let map: serde_json::Map<String, serde_json::Value> = covers
        .iter()
        .map(|n| (n.clone(), webroot.display().to_string().into()))
        .collect();
    [
        "renew",
        "--cert-name",
        name,
        "--force-renewal",
        "--webroot",
        "--webroot-map",
    ]
    .map(String::from)
    .into_iter()
    .chain([serde_json::Value::Object(map).to_string()])
    .collect()
}

/// The reconcile's renewal of `site`'s lineage `name`: the DNS preflight for the names the
/// certificate covers (a name that points elsewhere now would fail the validation and count
/// against the rate limits), then [`renew_one`].
pub async fn renew_checked(
    cfg: &LetsEncryptConfig,
    site: &str,
    name: &str,
    webroot: &Path,
) -> Result<bool, CertError> {
    let covered = match observe_cert(&cfg.config_dir, name) {
        Seen::Observed(s) if s.present && !s.names.is_empty() => s.names,
        _ => vec![name.to_string()],
    };
    let covered: Vec<&str> = covered.iter().map(String::as_str).collect();
    Preflight::from_config(cfg)
        .map_err(|message| CertError::Renew {
            name: name.to_string(),
            message,
        })?
        .check(site, &covered)
        .await?;
    renew_one(cfg, name, webroot).await
}

/// The certbot binary: `letsencrypt.certbot`, else `certbot` in `PATH`.
fn certbot_program(cfg: &LetsEncryptConfig) -> Result<PathBuf, ProcessError> {
    resolve_program("certbot", cfg.certbot.as_deref(), "letsencrypt.certbot")
}

/// Runs certbot (one at a time); Err is what it said, on one line.
async fn run_certbot(
    program: &Path,
    cfg: &LetsEncryptConfig,
    args: &[String],
) -> Result<(), String> {
    let redact = Redactor::default();
    let _one = CERTBOT.lock().await;
    // Every exit code is taken here: certbot writes why it failed to stdout ("Certbot failed
    // to authenticate some domains … Detail: …") and only a summary to stderr, and a
    // `ProcessError` keeps stderr alone.
    let out = certbot(program, cfg, args)
        .ok_exit_codes(&(0..=255).collect::<Vec<i32>>())
        .run(&redact)
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let stdout = redact.apply(&String::from_utf8_lossy(&out.stdout));
    Err(certbot_message(&stdout, &out.stderr, out.status.code()))
}

/// certbot with `args`, then the options every call takes: its three folders, never a
/// question, no random sleep (certbot sleeps up to 8 minutes before a renewal when it has no
/// terminal), and the CA bundle for a private ACME server.
fn certbot(program: &Path, cfg: &LetsEncryptConfig, args: &[String]) -> Process {
    let mut p = Process::new(program)
        .args(args)
        .arg("--non-interactive")
        .arg("--no-random-sleep-on-renew")
        .arg("--config-dir")
        .arg(&cfg.config_dir)
        .arg("--work-dir")
        .arg(&cfg.work_dir)
        .arg("--logs-dir")
        .arg(&cfg.logs_dir)
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .output_cap(64 << 10);
    if let Some(ca) = &cfg.ca_bundle {
        p = p.env("REQUESTS_CA_BUNDLE", ca);
    }
    p
}

/// The webroot certbot writes challenges into: made when missing, and readable by Nginx's
/// workers (which do not run as root).
fn prepare_webroot(webroot: &Path) -> Result<(), String> {
    if !webroot.is_absolute() {
        return Err(format!(
            "the ACME webroot {} is not an absolute path; set nginx.acme_webroot",
            webroot.display()
        ));
    }
    if !webroot.is_dir() {
        std::fs::create_dir_all(webroot)
            .and_then(|()| {
                std::fs::set_permissions(webroot, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| {
                format!(
                    "cannot make the ACME webroot {}: {e}; create it, readable by Nginx",
                    webroot.display()
                )
            })?;
    }
    Ok(())
}

/// What certbot said (stdout, then stderr), on one line, without its boilerplate (the debug
/// log's path, the forum link, progress lines).
fn certbot_message(stdout: &str, stderr: &str, code: Option<i32>) -> String {
    let kept: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Saving debug log to")
                && !l.starts_with("Requesting a certificate for")
                && !l.starts_with("Account registered")
                && !l.starts_with("Ask for help or search for solutions")
        })
        .collect();
    let exit = match code {
        Some(c) => format!("certbot exited with {c}"),
        None => "certbot was killed".into(),
    };
    if kept.is_empty() {
        return format!("{exit}, saying nothing");
    }
    let text = kept.join(" ");
    format!(
        "{} ({exit})",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certbots_boilerplate_is_dropped_and_its_message_kept() {
        let stdout = "Account registered.\nCertbot failed to authenticate some domains (authenticator: webroot).\n  \
                      Domain: a.test\n  Type:   unauthorized\n\n";
        let stderr = "Saving debug log to /x/letsencrypt.log\nRequesting a certificate for a.test\n\
                      Some challenges have failed.\n\
                      Ask for help or search for solutions at https://community.letsencrypt.org. \
                      See the logfile /x/letsencrypt.log or re-run Certbot with -v for more details.\n";
        assert_eq!(
            certbot_message(stdout, stderr, Some(1)),
            "Certbot failed to authenticate some domains (authenticator: webroot). Domain: \
             a.test Type: unauthorized Some challenges have failed. (certbot exited with 1)"
        );
        assert_eq!(
            certbot_message("", "", None),
            "certbot was killed, saying nothing"
        );
    }

    #[test]
    fn every_call_names_its_folders_and_never_asks() {
        let cfg = LetsEncryptConfig {
            ca_bundle: Some("/tmp/ca.pem".into()),
            ..LetsEncryptConfig::default()
        };
        let p = certbot(Path::new("/usr/bin/certbot"), &cfg, &["renew".into()]);
        let shown = format!("{p:?}");
        for want in [
            "\"renew\"",
            "\"--non-interactive\"",
            "\"--no-random-sleep-on-renew\"",
            "\"/etc/letsencrypt\"",
            "\"/var/lib/letsencrypt\"",
            "\"/var/log/letsencrypt\"",
            "\"REQUESTS_CA_BUNDLE\"",
        ] {
            assert!(shown.contains(want), "{want}: {shown}");
        }
    }

    #[test]
    fn a_renewal_goes_through_gitmoors_webroot_whatever_the_lineage_was_made_with() {
        let covers = ["api.example.fr".to_string(), "www.example.fr".to_string()];
        assert_eq!(
            renew_args(
                "api.example.fr",
                &covers,
                Path::new("/var/lib/gitmoor-acme")
            ),
            [
                "renew",
                "--cert-name",
                "api.example.fr",
                "--force-renewal",
                "--webroot",
                "--webroot-map",
                r#"{"api.example.fr":"/var/lib/gitmoor-acme","www.example.fr":"/var/lib/gitmoor-acme"}"#
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_email_or_a_bad_name_asks_nothing() {
        let cfg = LetsEncryptConfig::default();
        let e = obtain("api", &["api.example.test"], Path::new("/tmp/x"), &cfg)
            .await
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("site api: no certificate was asked for"),
            "{s}"
        );
        assert!(s.contains("letsencrypt.email is not set"), "{s}");
        let e = obtain("api", &["../x"], Path::new("/tmp/x"), &cfg)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a certificate name"), "{e}");
        let e = obtain("api", &[], Path::new("/tmp/x"), &cfg)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no server name"), "{e}");
    }
}
