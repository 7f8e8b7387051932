//! The test world, in one place: a real Git remote (a bare repo on disk, pushed to with the git
//! CLI), a gitmoor config with its own state and secrets dirs, the real `gitmoor` binary, and the
//! real dockerd (started by `scripts/setup`). Every test owns a uniquely named stack and removes
//! what it made, so tests run in parallel and never touch anything else on the host.
#![allow(dead_code)]

pub mod nginx;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test (or earlier run) uses: `prefix` + pid + counter + time.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{}{}x{:x}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::SeqCst),
        t % 0xfffff
    )
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker(args: &[&str]) -> String {
    let out = run(Command::new("docker").args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bare remote plus a working clone that tests commit to and push from.
pub struct Remote {
    pub dir: tempfile::TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Remote {
    pub fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("infra.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(
            dir.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        git(&work, &["config", "user.email", "ops@example.fr"]);
        git(&work, &["config", "user.name", "Ops"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Remote { dir, bare, work }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        git(&self.work, &["rm", "-r", "-q", path]);
        self
    }

    /// Commits everything and pushes to main; returns the sha.
    pub fn commit(&self, msg: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", msg]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn revert_head(&self) -> String {
        git(&self.work, &["revert", "--no-edit", "HEAD"]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// A host-side gitmoor setup: config, state dir, secrets dir.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub secrets: PathBuf,
    pub state: PathBuf,
}

impl Host {
    pub fn new(remote: &Remote, extra_config: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&secrets).unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "repo: {}\nbranch: main\nsecrets_dir: {}\nstate_dir: {}\npoll: \"0 0 1 1 *\"\nhealth_timeout_secs: 90\ninstance: {}\nlisten: 127.0.0.1:{}\n{extra_config}",
                remote.url(),
                secrets.display(),
                state.display(),
                unique("t"),
                free_port()
            ),
        )
        .unwrap();
        Host {
            dir,
            config,
            secrets,
            state,
        }
    }

    /// Rewrites the config: `from` (a line `Host::new` wrote) becomes `to`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        assert!(cfg.contains(from), "{from:?} is not in the config");
        std::fs::write(&self.config, cfg.replace(from, to)).unwrap();
    }

    /// A daemon on this host polls every second (6-field cron, seconds first).
    pub fn poll_every_second(&self) {
        self.edit_config("poll: \"0 0 1 1 *\"", "poll: \"* * * * * *\"");
    }

    pub fn secret(&self, stack: &str, content: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.secrets.join(format!("{stack}.env"));
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn gitmoor(&self, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_gitmoor"))
            .args(args)
            .arg("--config")
            .arg(&self.config))
    }

    /// `gitmoor apply`, asserting it succeeded; returns stdout+stderr.
    pub fn apply_ok(&self) -> String {
        let out = self.gitmoor(&["apply"]);
        let text = output_text(&out);
        assert!(out.status.success(), "gitmoor apply failed:\n{text}");
        text
    }

    pub fn state_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.state.join("state.json")).unwrap()).unwrap()
    }
}

pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes every container, network and volume of a compose project when dropped.
pub struct StackGuard(pub String);

impl Drop for StackGuard {
    fn drop(&mut self) {
        let filter = format!("label=com.docker.compose.project={}", self.0);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.lines().filter(|l| !l.is_empty()) {
            docker(&["rm", "-f", "-v", id]);
        }
        for id in docker(&["network", "ls", "-q", "--filter", &filter])
            .lines()
            .filter(|l| !l.is_empty())
        {
            docker(&["network", "rm", id]);
        }
        for v in docker(&["volume", "ls", "-q", "--filter", &filter])
            .lines()
            .filter(|l| !l.is_empty())
        {
            docker(&["volume", "rm", "-f", v]);
        }
    }
}

/// Container id of `<stack>-<service>-1`, or "" when absent.
pub fn container_id(stack: &str, service: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("name=^{stack}-{service}-1$"),
    ])
}

pub fn inspect(id_or_name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, id_or_name])
}

/// A plain request on loopback with a text body; returns (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    request(
        port,
        method,
        path,
        &[("Content-Type", "text/plain")],
        body.as_bytes(),
    )
}

/// An HTTP/1.1 request on loopback with headers; returns (status, body).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Retries `f` for up to `secs` seconds until it returns Some.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
