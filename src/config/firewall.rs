//! The `firewall:` block of the config: where the host's UFW is, and the settings that must not
//! come from the repo (anyone who can push could otherwise switch the guards off): whether
//! gitmoor owns every rule, the SSH lockout override, the SSH port, and the Docker guard.
//! docs/firewall.md describes each key.

use super::paths::check_path;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where ufw keeps its rules files (`user.rules`, `user6.rules`, `after.rules`, ...).
pub const DEFAULT_ETC_DIR: &str = "/etc/ufw";
/// Where `ufw default` writes the default policies and `IPV6=`.
pub const DEFAULT_DEFAULT_FILE: &str = "/etc/default/ufw";

/// What gitmoor does about container ports Docker publishes past UFW (Docker's own iptables
/// rules come before UFW's, so a port published on `0.0.0.0` is open whatever UFW says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerGuard {
    /// No check, no rules.
    Off,
    /// `validate` and `plan` warn about each port published on a non-loopback address that
    /// `ufw/rules.yaml` does not open to everyone; the deploy goes on.
    #[default]
    Warn,
    /// The same finding is an error: the commit is refused until the port is published on
    /// `127.0.0.1` or allowed in `ufw/rules.yaml`.
    Refuse,
    /// gitmoor installs and keeps the `DOCKER-USER` rules (in `after.rules` and `after6.rules`)
    /// that make UFW's rules decide for published ports too; a port the rules do not allow is
    /// then closed from outside, and `plan` warns about it.
    Enforce,
}

impl DockerGuard {
    pub fn as_str(self) -> &'static str {
        match self {
            DockerGuard::Off => "off",
            DockerGuard::Warn => "warn",
            DockerGuard::Refuse => "refuse",
            DockerGuard::Enforce => "enforce",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallConfig {
    /// The ufw binary (absolute); default: `ufw` found in `PATH`.
    pub binary: Option<PathBuf>,
    /// The sshd binary asked for the SSH port (`sshd -T`); default: `sshd` in `PATH`.
    pub sshd_binary: Option<PathBuf>,
    /// `iptables` and `ip6tables`, asked for the live `DOCKER-USER` chain (read only, except
    /// the Docker guard's own rules deleted when it is switched off); default: found in `PATH`.
    pub iptables_binary: Option<PathBuf>,
    pub ip6tables_binary: Option<PathBuf>,
    /// Where the observer reads ufw's rules files and where the Docker guard writes
    /// `after.rules`/`after6.rules` (ufw's own folder: a different one would be read but not
    /// used by ufw).
    #[serde(default = "default_etc_dir")]
    pub etc_dir: PathBuf,
    /// Where the observer reads the default policies and `IPV6=`.
    #[serde(default = "default_default_file")]
    pub default_file: PathBuf,
    /// Delete every rule `ufw/rules.yaml` does not have, not only the ones gitmoor tagged.
    #[serde(default)]
    pub owns_whole_firewall: bool,
    /// Apply a firewall change the SSH lockout guard refuses (the deliberate override).
    #[serde(default)]
    pub allow_ssh_lockout: bool,
    /// The SSH port the lockout guard keeps open; default: every `port` of `sshd -T` (no port
    /// assumed: when sshd cannot say, the firewall is not applied until this is set).
    pub ssh_port: Option<u16>,
    #[serde(default)]
    pub docker_guard: DockerGuard,
    /// How long one ufw call may take (default 60 s; `ufw enable` loads every chain).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_etc_dir() -> PathBuf {
    DEFAULT_ETC_DIR.into()
}
fn default_default_file() -> PathBuf {
    DEFAULT_DEFAULT_FILE.into()
}
fn default_timeout() -> u64 {
    60
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            binary: None,
            sshd_binary: None,
            iptables_binary: None,
            ip6tables_binary: None,
            etc_dir: default_etc_dir(),
            default_file: default_default_file(),
            owns_whole_firewall: false,
            allow_ssh_lockout: false,
            ssh_port: None,
            docker_guard: DockerGuard::default(),
            timeout_secs: default_timeout(),
        }
    }
}

impl FirewallConfig {
    /// Checks every value; the error names the key (`firewall.etc_dir`) and the fix.
    pub fn check(&self) -> Result<(), String> {
        for (key, path) in [
            ("firewall.etc_dir", Some(&self.etc_dir)),
            ("firewall.default_file", Some(&self.default_file)),
            ("firewall.binary", self.binary.as_ref()),
            ("firewall.sshd_binary", self.sshd_binary.as_ref()),
            ("firewall.iptables_binary", self.iptables_binary.as_ref()),
            ("firewall.ip6tables_binary", self.ip6tables_binary.as_ref()),
        ] {
            if let Some(p) = path {
                check_path(key, p)?;
            }
        }
        if self.etc_dir == Path::new("/") {
            return Err("firewall.etc_dir: / is not ufw's folder; give /etc/ufw".into());
        }
        if self.ssh_port == Some(0) {
            return Err(
                "firewall.ssh_port: 0 is not a port; give sshd's port (e.g. 22), or remove the \
                 key to read it from `sshd -T`"
                    .into(),
            );
        }
        if self.timeout_secs == 0 {
            return Err("firewall.timeout_secs: must be at least 1 (default 60)".into());
        }
        Ok(())
    }

    pub fn plan_options(&self) -> crate::plan::firewall::FirewallOptions {
        crate::plan::firewall::FirewallOptions {
            owns_whole_firewall: self.owns_whole_firewall,
            docker_guard: self.docker_guard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<FirewallConfig, String> {
        let c: FirewallConfig = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn defaults_read_ufw_where_debian_keeps_it_and_keep_the_guards_on() {
        let c = parse("{}\n").unwrap();
        assert_eq!(c, FirewallConfig::default());
        assert_eq!(c.etc_dir, PathBuf::from("/etc/ufw"));
        assert_eq!(c.default_file, PathBuf::from("/etc/default/ufw"));
        assert!(!c.owns_whole_firewall && !c.allow_ssh_lockout);
        assert_eq!(c.docker_guard, DockerGuard::Warn);
        assert_eq!(c.ssh_port, None);
    }

    #[test]
    fn every_guard_mode_parses_and_others_are_refused() {
        for (word, mode) in [
            ("off", DockerGuard::Off),
            ("warn", DockerGuard::Warn),
            ("refuse", DockerGuard::Refuse),
            ("enforce", DockerGuard::Enforce),
        ] {
            let c = parse(&format!("docker_guard: {word}\n")).unwrap();
            assert_eq!(c.docker_guard, mode);
            assert_eq!(mode.as_str(), word);
        }
        assert!(parse("docker_guard: maybe\n").is_err());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (yaml, want) in [
            ("etc_dir: ufw\n", "firewall.etc_dir"),
            ("etc_dir: /\n", "firewall.etc_dir"),
            ("default_file: /etc/../x\n", "contains `..`"),
            ("binary: ufw\n", "firewall.binary"),
            ("sshd_binary: sshd\n", "firewall.sshd_binary"),
            ("ssh_port: 0\n", "firewall.ssh_port"),
            ("timeout_secs: 0\n", "firewall.timeout_secs"),
            ("owns_everything: true\n", "owns_everything"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        let c =
            parse("ssh_port: 2222\nallow_ssh_lockout: true\nowns_whole_firewall: true\n").unwrap();
        assert_eq!(c.ssh_port, Some(2222));
        assert!(c.allow_ssh_lockout && c.owns_whole_firewall);
    }
}
