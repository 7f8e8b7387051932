//! The `letsencrypt:` block of the config: how gitmoor obtains and renews the certificates of
//! sites with `tls: letsencrypt` (through certbot, HTTP-01 over the `nginx.acme_webroot`).
//! Like `nginx:`, it comes from the host's admin, not from the repo; its values still become
//! argv of a program run as root and paths written to, so each is checked here.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Let's Encrypt's production ACME directory.
pub const DEFAULT_SERVER: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetsEncryptConfig {
    /// The account's contact address (expiry and policy notices). Not needed until a site asks
    /// for a certificate; then its absence is that site's error.
    pub email: Option<String>,
    /// The ACME directory URL (default: Let's Encrypt production). Tests give Pebble's.
    #[serde(default = "default_server")]
    pub server: String,
    /// The certbot binary (absolute); default: `certbot` found in `PATH`.
    pub certbot: Option<PathBuf>,
    /// certbot's `--config-dir`: accounts, `live/<name>/` certificates, renewal settings.
    #[serde(default = "default_config_dir")]
    pub config_dir: PathBuf,
    /// certbot's `--work-dir`.
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
    /// certbot's `--logs-dir`.
    #[serde(default = "default_logs_dir")]
    pub logs_dir: PathBuf,
    /// CA bundle certbot trusts for the ACME server (`REQUESTS_CA_BUNDLE`): only for a private
    /// ACME server such as Pebble; Let's Encrypt needs none.
    pub ca_bundle: Option<PathBuf>,
    /// This host's public addresses, for the DNS preflight. Default: the addresses of its
    /// interfaces (not loopback or link-local). A host behind NAT (most cloud VMs) must list its
    /// public address here, since no interface carries it.
    pub host_addresses: Option<Vec<IpAddr>>,
    /// The DNS server (`ip:port`) the preflight asks; default: the system's resolver.
    pub dns_server: Option<SocketAddr>,
    /// Renew a certificate this many days before it expires (default 30), and only once under a
    /// third of its lifetime is left: a certificate shorter than this is otherwise due again
    /// as soon as it is renewed (observe/certs.rs `due_for_renewal`).
    #[serde(default = "default_renew_days")]
    pub renew_days: u32,
    /// Warn (on `/status`) when a certificate expires within this many days (default 14).
    #[serde(default = "default_warn_days")]
    pub warn_days: u32,
    /// How long one certbot run may take (default 300 s; a run against Let's Encrypt takes
    /// seconds, but its servers can be slow).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_server() -> String {
    DEFAULT_SERVER.into()
}
fn default_config_dir() -> PathBuf {
    "/etc/letsencrypt".into()
}
fn default_work_dir() -> PathBuf {
    "/var/lib/letsencrypt".into()
}
fn default_logs_dir() -> PathBuf {
    "/var/log/letsencrypt".into()
}
fn default_renew_days() -> u32 {
    30
}
fn default_warn_days() -> u32 {
    14
}
fn default_timeout() -> u64 {
    300
}

impl Default for LetsEncryptConfig {
    fn default() -> Self {
        LetsEncryptConfig {
            email: None,
            server: default_server(),
            certbot: None,
            config_dir: default_config_dir(),
            work_dir: default_work_dir(),
            logs_dir: default_logs_dir(),
            ca_bundle: None,
            host_addresses: None,
            dns_server: None,
            renew_days: default_renew_days(),
            warn_days: default_warn_days(),
            timeout_secs: default_timeout(),
        }
    }
}

impl LetsEncryptConfig {
    /// Checks every value; the error names the key (`letsencrypt.email`) and the fix.
    pub fn check(&self) -> Result<(), String> {
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        check_server(&self.server)?;
        for (key, path) in [
            ("letsencrypt.certbot", self.certbot.as_ref()),
            ("letsencrypt.config_dir", Some(&self.config_dir)),
            ("letsencrypt.work_dir", Some(&self.work_dir)),
            ("letsencrypt.logs_dir", Some(&self.logs_dir)),
            ("letsencrypt.ca_bundle", self.ca_bundle.as_ref()),
        ] {
            if let Some(p) = path {
                check_path(key, p)?;
            }
        }
        if self.host_addresses.as_ref().is_some_and(Vec::is_empty) {
            return Err(
                "letsencrypt.host_addresses: empty; list this host's public \
                        addresses, or remove the key to use its interfaces' addresses"
                    .into(),
            );
        }
        // Let's Encrypt's certificates last 90 days (soon fewer): renewing earlier than 60 days
        // before the end would renew on every run and hit its rate limits.
        if !(1..=60).contains(&self.renew_days) {
            return Err(format!(
                "letsencrypt.renew_days: {} is out of range; give 1 to 60 (default 30)",
                self.renew_days
            ));
        }
        if self.warn_days == 0 {
            return Err("letsencrypt.warn_days: must be at least 1 (default 14)".into());
        }
        if self.timeout_secs == 0 {
            return Err("letsencrypt.timeout_secs: must be at least 1 (default 300)".into());
        }
        Ok(())
    }

    /// The contact address, needed to ask for a certificate; the error says how to set it.
    pub fn email_for_obtain(&self) -> Result<&str, String> {
        self.email.as_deref().ok_or_else(|| {
            "letsencrypt.email is not set in gitmoor's config: Let's Encrypt needs a contact \
             address for the account (expiry notices); add `letsencrypt: {email: you@example.org}`"
                .to_string()
        })
    }

    /// `<config_dir>/live/<name>/`: where certbot keeps the current certificate of a lineage.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.config_dir.join("live").join(name)
    }
}

/// An address certbot accepts after `-m`, that cannot be read as an option: `local@domain`,
/// printable ASCII, no spaces, not starting with `-`.
fn check_email(email: &str) -> Result<(), String> {
    let printable = email.bytes().all(|b| b.is_ascii_graphic());
    let shaped = email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
    if !printable || !shaped || email.starts_with('-') || email.len() > 254 {
        return Err(format!(
            "letsencrypt.email: {email:?} is not an email address; write one like \
             admin@example.org"
        ));
    }
    Ok(())
}

/// An `https://` URL of printable ASCII: certbot talks to the ACME server only over TLS.
fn check_server(url: &str) -> Result<(), String> {
    let printable = url.bytes().all(|b| b.is_ascii_graphic());
    let rest = url.strip_prefix("https://").unwrap_or("");
    if !printable || rest.is_empty() || rest.starts_with('/') {
        return Err(format!(
            "letsencrypt.server: {url:?} is not an https:// URL; give the ACME directory, \
             e.g. {DEFAULT_SERVER}, or remove the key"
        ));
    }
    Ok(())
}

/// [`super::paths::check_path`], and not `/` itself (certbot's folders are its own).
fn check_path(key: &str, p: &Path) -> Result<(), String> {
    super::paths::check_path(key, p)?;
    if p == Path::new("/") {
        return Err(format!("{key}: / is not a folder of its own; give one"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<LetsEncryptConfig, String> {
        let c: LetsEncryptConfig = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn defaults_are_lets_encrypt_production_and_certbots_own_folders() {
        let c = parse("{}\n").unwrap();
        assert_eq!(c, LetsEncryptConfig::default());
        assert_eq!(c.server, DEFAULT_SERVER);
        assert_eq!(c.config_dir, PathBuf::from("/etc/letsencrypt"));
        assert_eq!(c.work_dir, PathBuf::from("/var/lib/letsencrypt"));
        assert_eq!(c.logs_dir, PathBuf::from("/var/log/letsencrypt"));
        assert_eq!((c.renew_days, c.warn_days), (30, 14));
        assert_eq!(
            c.live_dir("api.example.fr"),
            PathBuf::from("/etc/letsencrypt/live/api.example.fr")
        );
    }

    #[test]
    fn a_missing_email_is_an_error_only_when_a_certificate_is_asked_for() {
        let c = parse("{}\n").unwrap();
        let e = c.email_for_obtain().unwrap_err();
        assert!(e.contains("letsencrypt.email is not set"), "{e}");
        let c = parse("email: admin@example.org\n").unwrap();
        assert_eq!(c.email_for_obtain().unwrap(), "admin@example.org");
    }

    #[test]
    fn a_test_setup_parses() {
        let c = parse(
            "email: a@example.test\nserver: https://127.0.0.1:14000/dir\nca_bundle: /tmp/ca.pem\n\
             host_addresses: [127.0.0.1, '::1']\ndns_server: 127.0.0.1:8053\n",
        )
        .unwrap();
        assert_eq!(c.dns_server, Some("127.0.0.1:8053".parse().unwrap()));
        assert_eq!(c.host_addresses.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (yaml, want) in [
            ("email: admin\n", "letsencrypt.email"),
            ("email: '-q@x.org'\n", "letsencrypt.email"),
            ("email: 'a b@x.org'\n", "letsencrypt.email"),
            ("server: http://acme.test/dir\n", "letsencrypt.server"),
            ("server: 'https://x/ --staging'\n", "letsencrypt.server"),
            ("certbot: certbot\n", "letsencrypt.certbot"),
            ("config_dir: /etc/../tmp\n", "letsencrypt.config_dir"),
            ("work_dir: work\n", "letsencrypt.work_dir"),
            ("logs_dir: /\n", "letsencrypt.logs_dir"),
            ("ca_bundle: ca.pem\n", "letsencrypt.ca_bundle"),
            ("host_addresses: []\n", "letsencrypt.host_addresses"),
            ("host_addresses: [example.org]\n", "host_addresses"),
            ("dns_server: 127.0.0.1\n", "dns_server"),
            ("renew_days: 0\n", "letsencrypt.renew_days"),
            ("renew_days: 89\n", "letsencrypt.renew_days"),
            ("warn_days: 0\n", "letsencrypt.warn_days"),
            ("timeout_secs: 0\n", "letsencrypt.timeout_secs"),
            ("mail: a@b.org\n", "mail"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
