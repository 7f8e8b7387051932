//! The daemon's config file (`/etc/gitmoor/config.yaml`): typed, validated, with every default in
//! one place. An unknown key is an error, so a typo never silently falls back to a default.

pub mod firewall;
pub mod letsencrypt;
pub mod nginx;
mod paths;

use anyhow::{bail, Context};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/gitmoor/config.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// ssh, https, file:// URL or a local path to a repository.
    pub repo: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Deploy key for ssh remotes.
    pub ssh_key: Option<PathBuf>,
    /// File holding the deploy key's passphrase, if it has one.
    pub ssh_key_passphrase_file: Option<PathBuf>,
    /// known_hosts for ssh remotes (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// File holding an https token (sent as user `x-access-token`).
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate for an https remote with a private CA.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where the stacks' data folders live: a relative bind mount whose source is not in the
    /// commit (`./pgdata`) is `<data_dir>/<stack>/pgdata`, made on first use and never rewritten
    /// nor removed by gitmoor. Default `<state_dir>/data` (`/var/lib/gitmoor/data`).
    pub data_dir: Option<PathBuf>,
    /// Cron expression: 5 fields as crontab, or 6 with seconds.
    #[serde(default = "default_poll")]
    pub poll: String,
    /// `unix:///var/run/docker.sock`, `tcp://…`; DOCKER_HOST and the default otherwise.
    pub docker_host: Option<String>,
    /// Where the status server listens: `/health`, `/status`, `/`, `/metrics`, `/hooks/*`
    /// (default `127.0.0.1:9090`). Put Nginx in front to reach it from outside.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the webhook secret (trailing newline ignored). Without it there is no
    /// `/hooks/*` endpoint at all. Read once at start: restart gitmoor after changing it.
    pub webhook_secret_file: Option<PathBuf>,
    /// Largest webhook body accepted; bigger deliveries get 413 (default 1 MiB; GitHub's push
    /// payloads list at most 20 commits and stay far below it).
    #[serde(default = "default_webhook_max_body")]
    pub webhook_max_body_bytes: usize,
    /// How long one webhook delivery may take to send its body (default 10 s; then 408). The
    /// hooks are public, so a client that sends slowly must not hold a connection and its buffer
    /// for as long as it likes; forges send their payload at once.
    #[serde(default = "default_webhook_read_timeout")]
    pub webhook_read_timeout_secs: u64,
    /// `/health` answers 503 when one reconcile has been running longer than this (default 900 s:
    /// above `health_timeout_secs`, so a slow healthcheck wait is not taken for a stuck loop).
    #[serde(default = "default_health_max_reconcile")]
    pub health_max_reconcile_secs: u64,
    /// A webhook or a secrets edit on an idle daemon reconciles at once; nudges within this long
    /// of the end of the previous reconcile wait for it to pass and make one reconcile together,
    /// so a burst of deliveries makes one or two (default 500 ms).
    #[serde(default = "default_nudge_debounce")]
    pub nudge_debounce_ms: u64,
    /// The secrets dir watcher waits until its files have been quiet this long (default 500 ms).
    #[serde(default = "default_secrets_debounce")]
    pub secrets_debounce_ms: u64,
    /// How many recent deployments `/status` and the status page list (default 20, at most 50).
    #[serde(default = "default_status_history")]
    pub status_history: usize,
    /// The status page reloads itself this often (default 10 s).
    #[serde(default = "default_status_refresh")]
    pub status_refresh_secs: u64,
    /// Registry credentials, in docker's `config.json` format (`{"auths": {"host": {"auth": …}}}`),
    /// kept outside Git like the secrets.
    pub registry_auth: Option<PathBuf>,
    /// Compose profiles to enable: services with a `profiles:` list start only when one of their
    /// profiles is here (services without one always start).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Names this gitmoor among others on the same Docker engine: it sees, changes and prunes only
    /// the objects labelled with its own instance name.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Stacks this config takes over from another repo of the same `instance`: `true` (every
    /// stack of the commit), or a list of stack names (default: none). Every object gitmoor makes
    /// is labelled with the repo it came from, and a config never removes or replaces another
    /// repo's objects: they are listed as foreign, and a container or network name of the commit
    /// that another repo's object holds is a plan error. Adopting a stack (say, after moving it
    /// to this repo, or after changing `repo:`'s URL) lets this config recreate that stack's
    /// objects with its own label (and remove those of services it does not declare). Stacks
    /// this commit does not declare are never taken over. Remove the key once applied.
    #[serde(default)]
    pub adopt: crate::plan::Adopt,
    /// How long to wait for a service that others depend on with `service_healthy`.
    #[serde(default = "default_health_timeout")]
    pub health_timeout_secs: u64,
    /// How long the image builds of one reconcile may run, together (default 600 s, under
    /// `health_max_reconcile_secs`'s 900, so that builds stopped for time are reported before
    /// `/health` calls the loop stuck). A build that hangs (a `RUN` step waiting on the network
    /// forever) would otherwise hold the daemon's one reconcile, and so every stack; past this
    /// bound the build is stopped and its stack fails, keeping its running containers, while the
    /// other stacks go on. Raise it for builds that are slow, not stuck.
    #[serde(default = "default_build_timeout")]
    pub build_timeout_secs: u64,
    /// Accept `http://` and `git://` remotes (default false): neither encrypts nor authenticates
    /// the server, so anyone on the path could change what gitmoor deploys as root.
    #[serde(default)]
    pub allow_insecure_transport: bool,
    /// Budgets of what one commit may make the reader spend (compose file bytes, expanded YAML
    /// bytes, services, ports and `depends_on` edges per stack); see docs/policy.md.
    #[serde(default)]
    pub limits: crate::spec::limits::Limits,
    /// The host policy (`baseline`, or `{preset: baseline, allow_bind: [...], ...}`); absent:
    /// none. See docs/policy.md.
    #[serde(default)]
    pub policy: Option<crate::spec::policy::Policy>,
    /// What `~/` in a compose bind source means (default: the home directory of the user gitmoor
    /// runs as, from its passwd entry: `/root` under the systemd unit).
    #[serde(default)]
    pub home_dir: Option<PathBuf>,
    /// A literal secret in a committed compose or env file (`POSTGRES_PASSWORD: changeme`):
    /// `refuse` (default) or `warn` (deployed as written, said on every validate and plan, the
    /// value still redacted everywhere). See docs/host-files.md.
    #[serde(default)]
    pub literal_secrets: crate::spec::compose::LiteralSecrets,
    /// The host's Nginx and the folder of vhosts gitmoor owns (docs/nginx-host.md).
    #[serde(default)]
    pub nginx: nginx::NginxConfig,
    /// The host's UFW and the firewall settings the repo may not change (docs/firewall.md).
    #[serde(default)]
    pub firewall: firewall::FirewallConfig,
    /// How certificates of `tls: letsencrypt` sites are obtained and renewed (docs/nginx.md).
    #[serde(default)]
    pub letsencrypt: letsencrypt::LetsEncryptConfig,
}

fn default_branch() -> String {
    "main".into()
}
fn default_secrets_dir() -> PathBuf {
    "/etc/gitmoor/secrets".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/gitmoor".into()
}
fn default_poll() -> String {
    "*/1 * * * *".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_webhook_max_body() -> usize {
    1 << 20
}
fn default_webhook_read_timeout() -> u64 {
    10
}
fn default_health_max_reconcile() -> u64 {
    900
}
fn default_nudge_debounce() -> u64 {
    500
}
fn default_secrets_debounce() -> u64 {
    500
}
fn default_status_history() -> usize {
    20
}
fn default_status_refresh() -> u64 {
    10
}
fn default_instance() -> String {
    "default".into()
}
fn default_health_timeout() -> u64 {
    120
}
fn default_build_timeout() -> u64 {
    crate::apply::docker::DEFAULT_BUILD_TIMEOUT.as_secs()
}

impl Config {
    /// Reads and validates a config file; errors name the file and say what to fix.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let mut cfg: Config =
            serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.schedule()
            .with_context(|| format!("{}: poll", path.display()))?;
        if cfg.branch.is_empty() || cfg.branch.starts_with('-') || cfg.branch.contains("..") {
            bail!(
                "{}: branch: {:?} is not a valid branch name",
                path.display(),
                cfg.branch
            );
        }
        if cfg.instance.is_empty()
            || !cfg
                .instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "{}: instance: {:?} must be letters, digits, '-' or '_'",
                path.display(),
                cfg.instance
            );
        }
        if cfg.health_max_reconcile_secs == 0 {
            bail!(
                "{}: health_max_reconcile_secs: must be at least 1",
                path.display()
            );
        }
        if cfg.webhook_read_timeout_secs == 0 {
            bail!(
                "{}: webhook_read_timeout_secs: must be at least 1",
                path.display()
            );
        }
        if cfg.webhook_max_body_bytes < 1024 {
            bail!(
                "{}: webhook_max_body_bytes: {} is too small for any webhook payload; use at least 1024",
                path.display(),
                cfg.webhook_max_body_bytes
            );
        }
        if cfg.build_timeout_secs == 0 {
            bail!(
                "{}: build_timeout_secs: must be at least 1 (default 600)",
                path.display()
            );
        }
        if cfg.status_refresh_secs == 0 {
            bail!(
                "{}: status_refresh_secs: must be at least 1",
                path.display()
            );
        }
        cfg.limits
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.nginx
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.firewall
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.letsencrypt
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.status_history = cfg.status_history.min(crate::state::HISTORY_LEN);
        for (key, dir) in [
            ("secrets_dir", &cfg.secrets_dir),
            ("state_dir", &cfg.state_dir),
        ] {
            if dir.as_os_str().is_empty() {
                bail!(
                    "{}: {key}: empty; give a directory, e.g. /etc/gitmoor/secrets or /var/lib/gitmoor",
                    path.display()
                );
            }
        }
        if cfg.repo.trim().is_empty() {
            bail!(
                "{}: repo: empty; give an ssh, https or file:// URL or a local path",
                path.display()
            );
        }
        // A relative local repo path is relative to the config file, not to wherever the daemon
        // happens to start.
        if !cfg.repo.contains("://")
            && !cfg.repo.contains('@')
            && Path::new(&cfg.repo).is_relative()
        {
            if let Some(dir) = path.parent() {
                cfg.repo = dir.join(&cfg.repo).to_string_lossy().into_owned();
            }
        }
        Ok(cfg)
    }

    /// The poll schedule: standard crontab (5 fields, 0 and 7 = Sunday) or 6 fields with seconds.
    pub fn schedule(&self) -> anyhow::Result<Cron> {
        parse_schedule(&self.poll)
    }

    /// The keys that decide how a commit is read and planned, as one text for the inputs hash:
    /// a commit refused under them is worth another try once one changes (a raised limit, a
    /// loosened policy, an adopted stack).
    pub fn reading_inputs(&self) -> String {
        format!(
            "{:?}",
            (
                &self.limits,
                &self.policy,
                self.literal_secrets,
                &self.home_dir,
                &self.profiles,
                &self.adopt,
                &self.instance,
                &self.repo,
                &self.branch,
                // A fix made in the config (an email for Let's Encrypt, the SSH port, nginx's
                // binary) is a new try, not a wait for the backoff.
                (&self.nginx, &self.firewall, &self.letsencrypt, self.listen),
            )
        )
    }

    /// The read budgets for one reconcile's commit.
    pub fn read_limits(&self) -> crate::source::limits::ReadLimits {
        self.limits.read_limits()
    }

    /// Where gitmoor keeps its bare clone of the managed repo.
    pub fn repo_cache_dir(&self) -> PathBuf {
        self.state_dir.join("repo.git")
    }

    /// The stacks' data folders (`data_dir`, default `<state_dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("data"))
    }

    /// The content dir: the repo files and folders containers mount are served from copies
    /// there, `<id>/<name>`, one per content (see `apply::content`). (Before, whole stack folders
    /// were written to `<state_dir>/stacks`, which nothing uses any more.)
    pub fn bind_root(&self) -> PathBuf {
        self.state_dir.join("content")
    }
}

pub fn parse_schedule(expr: &str) -> anyhow::Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| {
            anyhow::anyhow!(
                "{expr:?} is not a cron expression ({e}); write 5 fields as crontab (\"*/5 * * * *\") or 6 with seconds first"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything_but_the_repo() {
        let cfg = Config::parse(
            "repo: /srv/infra.git\n",
            Path::new("/etc/gitmoor/config.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.branch, "main");
        assert_eq!(cfg.secrets_dir, PathBuf::from("/etc/gitmoor/secrets"));
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/gitmoor"));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(cfg.webhook_secret_file, None);
        assert_eq!(cfg.webhook_max_body_bytes, 1 << 20);
        assert_eq!(cfg.webhook_read_timeout_secs, 10);
        assert_eq!(cfg.health_max_reconcile_secs, 900);
        assert_eq!(cfg.nudge_debounce_ms, 500);
        assert_eq!(cfg.secrets_debounce_ms, 500);
        assert_eq!(cfg.status_history, 20);
        assert_eq!(cfg.status_refresh_secs, 10);
        assert_eq!(cfg.build_timeout_secs, 600);
        assert!(!cfg.allow_insecure_transport);
        assert_eq!(cfg.read_limits().max_file_bytes, 64 << 20);
        assert_eq!(cfg.read_limits().max_read_bytes, 128 << 20);
        assert_eq!(
            cfg.repo_cache_dir(),
            PathBuf::from("/var/lib/gitmoor/repo.git")
        );
    }

    #[test]
    fn status_server_keys_parse_and_are_checked() {
        let cfg = Config::parse(
            "repo: x\nlisten: 127.0.0.1:9191\nwebhook_secret_file: /etc/gitmoor/hook\nhealth_max_reconcile_secs: 60\nstatus_history: 500\n",
            Path::new("/c.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9191);
        assert_eq!(
            cfg.webhook_secret_file.as_deref(),
            Some(Path::new("/etc/gitmoor/hook"))
        );
        assert_eq!(cfg.health_max_reconcile_secs, 60);
        assert_eq!(cfg.status_history, crate::state::HISTORY_LEN);
        let err = Config::parse(
            "repo: x\nhealth_max_reconcile_secs: 0\n",
            Path::new("/c.yaml"),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("health_max_reconcile_secs"),
            "{err:#}"
        );
    }

    #[test]
    fn build_timeout_parses_and_zero_is_refused() {
        let cfg =
            Config::parse("repo: x\nbuild_timeout_secs: 600\n", Path::new("/c.yaml")).unwrap();
        assert_eq!(cfg.build_timeout_secs, 600);
        let err =
            Config::parse("repo: x\nbuild_timeout_secs: 0\n", Path::new("/c.yaml")).unwrap_err();
        assert!(format!("{err:#}").contains("build_timeout_secs"), "{err:#}");
    }

    #[test]
    fn read_budgets_parse_and_tiny_ones_are_refused() {
        let cfg = Config::parse(
            "repo: x\nlimits:\n  file_bytes: 1048576\n  read_bytes: 8388608\n",
            Path::new("/c.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.read_limits().max_file_bytes, 1 << 20);
        assert_eq!(cfg.read_limits().max_read_bytes, 8 << 20);
        let err = Config::parse("repo: x\nlimits:\n  read_bytes: 10\n", Path::new("/c.yaml"))
            .unwrap_err();
        assert!(format!("{err:#}").contains("limits.read_bytes"), "{err:#}");
    }

    #[test]
    fn limits_and_policy_parse_with_defaults_and_are_checked() {
        let cfg = Config::parse("repo: x\n", Path::new("/c.yaml")).unwrap();
        assert_eq!(cfg.limits, crate::spec::limits::Limits::default());
        assert_eq!(cfg.policy, None);
        let cfg = Config::parse(
            "repo: x\nlimits:\n  services: 500\n  expanded_yaml_bytes: 1000000\npolicy: baseline\n",
            Path::new("/c.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.limits.services, 500);
        assert_eq!(cfg.limits.expanded_yaml_bytes, 1_000_000);
        assert_eq!(cfg.limits.ports, 1000);
        assert_eq!(cfg.policy, Some(crate::spec::policy::Policy::default()));
        let cfg = Config::parse(
            "repo: x\npolicy:\n  preset: baseline\n  allow_bind: [/srv/media]\n",
            Path::new("/c.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.policy.unwrap().allow_bind, vec!["/srv/media"]);
        for (bad, want) in [
            ("limits:\n  servics: 5\n", "servics"),
            ("limits:\n  ports: 0\n", "limits.ports: must be at least 1"),
            ("policy: strict\n", "unknown policy preset `strict`"),
        ] {
            let err = Config::parse(&format!("repo: x\n{bad}"), Path::new("/c.yaml")).unwrap_err();
            let shown = format!("{err:#}");
            assert!(shown.contains("/c.yaml") && shown.contains(want), "{shown}");
        }
    }

    #[test]
    fn relative_repo_path_is_relative_to_the_config_file() {
        let cfg = Config::parse("repo: infra\n", Path::new("/etc/gitmoor/config.yaml")).unwrap();
        assert_eq!(cfg.repo, "/etc/gitmoor/infra");
        let cfg = Config::parse(
            "repo: git@github.com:acme/infra.git\n",
            Path::new("/x/c.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.repo, "git@github.com:acme/infra.git");
    }

    #[test]
    fn crontab_five_fields_and_six_with_seconds_both_parse() {
        for ok in ["*/1 * * * *", "0 3 * * 0", "0 3 * * 7", "*/10 * * * * *"] {
            assert!(parse_schedule(ok).is_ok(), "{ok}");
        }
        let err = parse_schedule("every minute").unwrap_err().to_string();
        assert!(err.contains("5 fields"), "{err}");
    }

    #[test]
    fn unknown_key_and_bad_poll_are_errors_naming_the_file() {
        let err = Config::parse("repo: x\nbrnach: main\n", Path::new("/c.yaml")).unwrap_err();
        assert!(format!("{err:#}").contains("/c.yaml"), "{err:#}");
        assert!(format!("{err:#}").contains("brnach"), "{err:#}");
        let err = Config::parse("repo: x\npoll: nope\n", Path::new("/c.yaml")).unwrap_err();
        assert!(format!("{err:#}").contains("poll"), "{err:#}");
    }

    #[test]
    fn the_nginx_block_parses_and_is_checked_naming_the_file() {
        let cfg = Config::parse(
            "repo: x\nnginx:\n  sites_dir: /tmp/x/sites\n  prefix: /tmp/x\n",
            Path::new("/c.yaml"),
        )
        .unwrap();
        assert_eq!(cfg.nginx.sites_dir, PathBuf::from("/tmp/x/sites"));
        let err =
            Config::parse("repo: x\nnginx:\n  sites_dir: rel\n", Path::new("/c.yaml")).unwrap_err();
        let shown = format!("{err:#}");
        assert!(shown.contains("/c.yaml: nginx.sites_dir"), "{shown}");
    }

    #[test]
    fn empty_directories_are_refused() {
        for key in ["secrets_dir", "state_dir"] {
            let err = Config::parse(&format!("repo: x\n{key}: ''\n"), Path::new("/c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("/c.yaml: {key}: empty")), "{err}");
        }
    }
}
