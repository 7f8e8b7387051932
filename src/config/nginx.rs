//! The `nginx:` block of the config: where the host's Nginx is and the one folder of vhosts
//! gitmoor owns. Everything here comes from the host's admin (not from the repo), but it still
//! ends up as paths gitmoor writes to as root and argv it runs, so each value is checked here.

use super::paths::check_path;
use serde::Deserialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The folder gitmoor owns by default. The host's Nginx must include `<it>/*.conf`: Debian's
/// `nginx.conf` includes `/etc/nginx/conf.d/*.conf`, which does not reach into subfolders, so
/// one line in `/etc/nginx/conf.d/gitmoor.conf` does it (docs/nginx-host.md).
pub const DEFAULT_SITES_DIR: &str = "/etc/nginx/conf.d/gitmoor";

/// Where certbot's webroot challenges are written and served from. Not under `/var/lib/gitmoor`:
/// the unit makes that folder 0700 (`StateDirectoryMode`), and Nginx's workers (`www-data`)
/// must be able to read the challenge files.
pub const DEFAULT_ACME_WEBROOT: &str = "/var/lib/gitmoor-acme";

/// Arguments gitmoor adds itself to each call; in `args` they would change what a call does
/// (`-s stop` for a test) instead of where it looks.
const RESERVED_ARGS: &[&str] = &["-s", "-t", "-T", "-q", "-v", "-V", "-h", "-?"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    /// The folder of vhosts gitmoor owns: it writes `<site>.conf` files there and nothing
    /// anywhere else. The systemd unit's `ReadWritePaths` must name the same folder.
    #[serde(default = "default_sites_dir")]
    pub sites_dir: PathBuf,
    /// The nginx binary (absolute); default: `nginx` found in `PATH`.
    pub binary: Option<PathBuf>,
    /// `-p <prefix>` on every call (tests run a private Nginx this way).
    pub prefix: Option<PathBuf>,
    /// `-c <conf>` on every call: the main config file.
    pub conf: Option<PathBuf>,
    /// More arguments for every call, after `-p`/`-c` (e.g. `[-e, /tmp/x/error.log]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// How long one `nginx -t` (or reload) may take (default 30 s).
    #[serde(default = "default_test_timeout")]
    pub test_timeout_secs: u64,
    /// The reload command as argv, program first (absolute), e.g.
    /// `[/usr/bin/systemctl, reload, nginx]`. Default: the binary with the same `-p`/`-c`/args
    /// and `-s reload`.
    pub reload: Option<Vec<String>>,
    /// The ACME webroot (see [`DEFAULT_ACME_WEBROOT`]).
    #[serde(default = "default_acme_webroot")]
    pub acme_webroot: PathBuf,
    /// The ports rendered vhosts listen on (80 and 443; tests and hosts behind another proxy
    /// use others).
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// Rendered vhosts listen on `[::]` too (off on a host without IPv6, where Nginx could
    /// not bind it).
    #[serde(default = "default_ipv6")]
    pub ipv6: bool,
    /// Before certbot runs, wait until nginx serves a probe file of the ACME webroot for the
    /// site's names (default on; see docs/nginx.md). Off only for a front nginx the probe
    /// cannot reach as Let's Encrypt does (e.g. `listen 80 proxy_protocol`).
    #[serde(default = "default_acme_probe")]
    pub acme_probe: bool,
}

fn default_acme_probe() -> bool {
    true
}

fn default_http_port() -> u16 {
    80
}
fn default_https_port() -> u16 {
    443
}
fn default_ipv6() -> bool {
    true
}

fn default_sites_dir() -> PathBuf {
    DEFAULT_SITES_DIR.into()
}
fn default_test_timeout() -> u64 {
    30
}
fn default_acme_webroot() -> PathBuf {
    DEFAULT_ACME_WEBROOT.into()
}

impl Default for NginxConfig {
    fn default() -> Self {
        NginxConfig {
            sites_dir: default_sites_dir(),
            binary: None,
            prefix: None,
            conf: None,
            args: Vec::new(),
            test_timeout_secs: default_test_timeout(),
            acme_probe: default_acme_probe(),
            reload: None,
            acme_webroot: default_acme_webroot(),
            http_port: default_http_port(),
            https_port: default_https_port(),
            ipv6: default_ipv6(),
        }
    }
}

impl NginxConfig {
    /// Checks every value; the error names the key (`nginx.sites_dir`) and the fix.
    pub fn check(&self) -> Result<(), String> {
        for (key, path) in [
            ("nginx.sites_dir", Some(&self.sites_dir)),
            ("nginx.acme_webroot", Some(&self.acme_webroot)),
            ("nginx.binary", self.binary.as_ref()),
            ("nginx.prefix", self.prefix.as_ref()),
            ("nginx.conf", self.conf.as_ref()),
        ] {
            if let Some(p) = path {
                check_path(key, p)?;
            }
        }
        if self.sites_dir == Path::new("/") {
            return Err(
                "nginx.sites_dir: / is not a folder gitmoor may own; give a folder of its own, \
                 e.g. /etc/nginx/conf.d/gitmoor"
                    .into(),
            );
        }
        if self.test_timeout_secs == 0 {
            return Err("nginx.test_timeout_secs: must be at least 1 (default 30)".into());
        }
        for a in &self.args {
            if RESERVED_ARGS.contains(&a.as_str()) {
                return Err(format!(
                    "nginx.args: {a:?} is added by gitmoor itself where needed; remove it \
                     (args only say where nginx looks: -p, -c, -e, -g)"
                ));
            }
        }
        if let Some(reload) = &self.reload {
            match reload.first() {
                None => {
                    return Err("nginx.reload: empty; give the command as a list, program \
                                first, e.g. [/usr/bin/systemctl, reload, nginx], or remove \
                                the key for `nginx -s reload`"
                        .into())
                }
                Some(p) => check_path("nginx.reload[0]", Path::new(p))?,
            }
        }
        Ok(())
    }

    /// The arguments every nginx call starts with: `-p`, `-c`, then `args`.
    pub fn base_args(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        if let Some(p) = &self.prefix {
            out.push("-p".into());
            out.push(p.into());
        }
        if let Some(c) = &self.conf {
            out.push("-c".into());
            out.push(c.into());
        }
        out.extend(self.args.iter().map(OsString::from));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<NginxConfig, String> {
        let c: NginxConfig = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn defaults_own_one_folder_and_run_plain_nginx() {
        let c = NginxConfig::default();
        assert_eq!(c.sites_dir, PathBuf::from("/etc/nginx/conf.d/gitmoor"));
        assert!(c.base_args().is_empty());
        assert_eq!(c.test_timeout_secs, 30);
        assert!(c.check().is_ok());
        assert_eq!(parse("{}\n").unwrap(), c);
    }

    #[test]
    fn prefix_conf_and_args_come_first_in_that_order() {
        let c =
            parse("prefix: /tmp/x\nconf: /tmp/x/nginx.conf\nargs: [-e, /tmp/x/e.log]\n").unwrap();
        let args: Vec<String> = c
            .base_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-p",
                "/tmp/x",
                "-c",
                "/tmp/x/nginx.conf",
                "-e",
                "/tmp/x/e.log"
            ]
        );
    }

    #[test]
    fn relative_and_dotdot_paths_reserved_args_and_empty_reload_are_refused() {
        for (yaml, want) in [
            ("sites_dir: conf.d/gitmoor\n", "nginx.sites_dir"),
            ("sites_dir: /etc/nginx/../gitmoor\n", "contains `..`"),
            ("sites_dir: /\n", "not a folder gitmoor may own"),
            ("binary: nginx\n", "nginx.binary"),
            ("prefix: tmp\n", "nginx.prefix"),
            ("conf: nginx.conf\n", "nginx.conf"),
            ("acme_webroot: acme\n", "nginx.acme_webroot"),
            ("args: [-s, stop]\n", "nginx.args"),
            ("test_timeout_secs: 0\n", "nginx.test_timeout_secs"),
            ("reload: []\n", "nginx.reload: empty"),
            ("reload: [systemctl, reload, nginx]\n", "nginx.reload[0]"),
            ("sites: /x\n", "sites"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        assert!(parse("reload: [/usr/bin/systemctl, reload, nginx]\n").is_ok());
    }
}
