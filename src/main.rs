//! The CLI: parse arguments, load the config, call the library, map the outcome to an exit code
//! (0: valid / the host matches the commit; 1: invalid or failed; 2: usage).

use clap::{Parser, Subcommand};
use gitmoor::config::{Config, DEFAULT_PATH};
use gitmoor::reconcile::{Mode, Reconciler, Verdict};
use gitmoor::source::snapshot::Snapshot;
use gitmoor::spec::load::{load_host_spec, LoadOptions};
use gitmoor::spec::policy::Policy;
use gitmoor::state::State;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gitmoor",
    version,
    about = "Keeps this host in the state a Git repository describes"
)]
struct Cli {
    /// Log as JSON lines (for journald or a log shipper).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a checkout of the managed repo without touching the host (made for its own CI).
    Validate {
        /// The checkout (default: the current directory).
        dir: Option<PathBuf>,
        /// The secrets dir: with it, a missing variable is an error; without, a warning.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Check the host policy too (`baseline`), as a host with `policy: baseline` would.
        #[arg(long)]
        policy: Option<String>,
        /// Read `limits:` and `policy:` from this gitmoor config (`--policy` wins over its
        /// policy).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Fetch, then show what applying the branch head would change, and why. Changes nothing.
    Plan {
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// Print the actions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reconcile once to the branch head.
    Apply {
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// The daemon: reconcile at start, then on the poll schedule, until SIGTERM.
    Run {
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Show the daemon's status (from its /status endpoint; from the state dir when it is not
    /// running).
    Status {
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// The daemon's address (default: `listen:` from the config, else http://127.0.0.1:9090).
        #[arg(long)]
        url: Option<String>,
        /// Print the /status document as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    start_libgit2(&cli.cmd);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts libgit2 for the commands that fetch, while this is the process's only thread
/// (registering gitmoor's http(s) transport is not thread-safe in libgit2). Cheap: libgit2 is
/// built without TLS, which is set up at the first https request only.
fn start_libgit2(cmd: &Cmd) {
    if matches!(cmd, Cmd::Plan { .. } | Cmd::Apply { .. } | Cmd::Run { .. }) {
        gitmoor::source::git::start_libgit2();
    }
}

/// Logs go to stderr. Colour codes only when stderr is a terminal (and `NO_COLOR` is unset): a
/// log file or journald would keep them as raw escape sequences.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GITMOOR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Validate {
            dir,
            secrets,
            policy,
            config,
        } => validate(
            dir.unwrap_or_else(|| ".".into()),
            secrets,
            policy.as_deref(),
            config.as_deref(),
        ),
        Cmd::Plan { config, json } => {
            let rec = Reconciler::new(Config::load(&config)?, false).await?;
            let o = rec.reconcile(Mode::Plan, true).await?;
            // With --json, stdout holds the JSON document alone (the commit is in it), so that
            // `gitmoor plan --json | jq` works.
            if !json {
                println!(
                    "commit {} {}",
                    &o.commit.sha[..o.commit.sha.len().min(10)],
                    o.commit.subject
                );
            }
            for w in &o.findings.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(err) = &o.error {
                eprintln!("{err}");
                return Ok(ExitCode::FAILURE);
            }
            if let Some(plan) = &o.plan {
                if json {
                    let mut v = plan.json_view();
                    v["commit"] = o.commit.sha.clone().into();
                    v["subject"] = o.commit.subject.clone().into();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print!("{}", plan.render_text());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply { config } => {
            let rec = Reconciler::new(Config::load(&config)?, true).await?;
            let o = rec.reconcile(Mode::Apply, true).await?;
            let sha = &o.commit.sha[..o.commit.sha.len().min(10)];
            match o.verdict {
                Verdict::Noop => println!("{sha}: no changes, the host matches the commit"),
                Verdict::Applied => {
                    if let Some(p) = &o.plan {
                        print!("{}", p.render_text());
                    }
                    println!("{sha}: applied")
                }
                _ => {
                    eprintln!("{}", o.error.as_deref().unwrap_or("failed"));
                    eprintln!(
                        "{sha}: not applied; the host keeps its last applied state where it could"
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { config } => {
            let cfg = Config::load(&config)?;
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {} ({e}); set `listen:` in {} to a free address",
                        cfg.listen,
                        config.display()
                    )
                })?;
            gitmoor::daemon::run_with_server(cfg, listener, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { config, url, json } => status(&config, url, json).await,
    }
}

/// `gitmoor status`: the daemon's /status, or the state file when the daemon does not answer.
async fn status(config: &Path, url: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config);
    let url = url.unwrap_or_else(|| match &cfg {
        Ok(c) => {
            let mut addr = c.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}")
        }
        Err(_) => "http://127.0.0.1:9090".into(),
    });
    let fetched = gitmoor::server::client::get(&url, "/status", Duration::from_secs(5)).await;
    match fetched {
        Ok((200, body)) => {
            if json {
                println!("{}", body.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            let doc: gitmoor::status::doc::StatusDoc = serde_json::from_str(&body)
                .map_err(|e| anyhow::anyhow!("{url}/status is not gitmoor's status: {e}"))?;
            if let Ok(c) = &cfg {
                if c.instance != doc.instance {
                    eprintln!(
                        "note: the daemon at {url} is instance {:?}, not {:?} of {}",
                        doc.instance,
                        c.instance,
                        config.display()
                    );
                }
            }
            print!(
                "{}",
                gitmoor::server::text::render(&doc, chrono::Utc::now().timestamp())
            );
            Ok(ExitCode::SUCCESS)
        }
        other => {
            let why = match other {
                Ok((code, _)) => format!("{url}/status answered {code}"),
                Err(e) => format!("{e:#}"),
            };
            let cfg = cfg.map_err(|e| {
                anyhow::anyhow!("the daemon does not answer ({why}), and without a config there is no state file to read: {e:#}")
            })?;
            eprintln!("the daemon does not answer ({why}); from the state file:");
            print!("{}", gitmoor::status_text(&State::load(&cfg.state_dir)?));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(
    dir: PathBuf,
    secrets: Option<PathBuf>,
    policy: Option<&str>,
    config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut opts = LoadOptions {
        secrets_dir: secrets,
        home_dir: gitmoor::home::home_dir(None),
        ..LoadOptions::default()
    };
    // As the daemon reads a commit: the used folders at once, any other file when the spec
    // asks for it, within the budgets (the config's, with --config).
    let mut limits = gitmoor::source::limits::ReadLimits::default();
    let mut docker_guard = gitmoor::config::firewall::DockerGuard::default();
    if let Some(path) = config {
        let cfg = Config::load(path)?;
        docker_guard = cfg.firewall.docker_guard;
        opts.bind_root = cfg.bind_root();
        opts.data_dir = cfg.data_dir();
        opts.limits = cfg.limits;
        opts.policy = cfg.policy.clone();
        opts.literal_secrets = cfg.literal_secrets;
        opts.home_dir = gitmoor::home::home_dir(cfg.home_dir.as_deref());
        limits = cfg.read_limits();
    }
    if let Some(name) = policy {
        opts.policy = Some(Policy::preset(name).map_err(|e| anyhow::anyhow!("--policy: {e}"))?);
    }
    let mut snap = Snapshot::from_dir_lazy(&dir, limits)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    let (spec, findings) = loop {
        let read = load_host_spec(&snap, &opts);
        let wanted = snap.take_wanted();
        if wanted.is_empty() {
            break read;
        }
        snap.fill_from_disk(&wanted)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    };
    let mut findings = findings;
    if let Some(spec) = &spec {
        // Ports published past ufw/rules.yaml, as the daemon would judge them.
        let (errors, warnings) =
            gitmoor::plan::docker_guard::docker_guard_findings(spec, docker_guard);
        findings.errors.extend(errors);
        findings.warnings.extend(warnings);
    }
    for w in &findings.warnings {
        eprintln!("warning: {w}");
    }
    for e in &findings.errors {
        eprintln!("error: {e}");
    }
    match spec {
        Some(spec) if findings.is_ok() => {
            let services: usize = spec.stacks.values().map(|s| s.services.len()).sum();
            println!(
                "valid: {} stack(s), {} service(s), {} site(s)",
                spec.stacks.len(),
                services,
                spec.sites.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("invalid: {} error(s)", findings.errors.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// SIGTERM (systemd) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
