//! The status-server test world, on top of `support`: a `gitmoor run` daemon on its own free
//! port, HTTP requests with headers, webhook signing, and reading `/status` and `/metrics`.
//! The daemon is stopped (SIGTERM, then kill) when its handle is dropped.
#![allow(dead_code)]

use crate::support::*;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

/// A host whose config listens on a free loopback port; `extra` is appended to the config.
pub fn host_with_server(remote: &Remote, extra: &str) -> (Host, u16) {
    // `Host::new` already gives every config its own free `listen:` port: read it back.
    let host = Host::new(remote, extra);
    let text = std::fs::read_to_string(&host.config).unwrap();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("listen: 127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("Host::new writes listen:");
    (host, port)
}

/// Replaces one line of the host's config (`key: value` written by `Host::new`).
pub fn set_config(host: &Host, from: &str, to: &str) {
    let text = std::fs::read_to_string(&host.config).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&host.config, text.replace(from, to)).unwrap();
}

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(host: &Host, port: u16) -> Daemon {
        let log = host.dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
            .args(["run", "--config"])
            .arg(&host.config)
            .env("GITMOOR_LOG", "debug,hyper=info,bollard=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child: Some(child),
            port,
            log,
        };
        eventually(30, || d.get("/health").map(|_| ()))
            .unwrap_or_else(|| panic!("the status server did not answer:\n{}", d.log_text()));
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        request(self.port, "GET", path, &[], b"")
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = self.get("/status")?;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).ok()
    }

    /// Waits until `/status` satisfies `f`; panics with the last document and the log if not.
    pub fn wait_status(
        &self,
        secs: u64,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = None;
        let got = eventually(secs, || {
            let s = self.status()?;
            let ok = f(&s);
            last = Some(s.clone());
            ok.then_some(s)
        });
        got.unwrap_or_else(|| {
            panic!(
                "waited {secs} s for {what}; last /status:\n{}\nlog:\n{}",
                serde_json::to_string_pretty(&last).unwrap_or_default(),
                self.log_text()
            )
        })
    }

    /// Waits until `sha` is deployed and the state is `synced`.
    pub fn wait_synced(&self, sha: &str, secs: u64) -> serde_json::Value {
        self.wait_status(secs, &format!("{sha} synced"), |s| {
            s["deployed"]["sha"] == sha && s["state"] == "synced"
        })
    }

    /// One metric's value, `name` with its labels as printed (`a_total{result="x"}`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        metric_in(&body, name)
    }

    /// Reconciles finished since start, every result together.
    pub fn reconciles(&self) -> f64 {
        let (_, body) = self.get("/metrics").expect("metrics");
        body.lines()
            .filter(|l| l.starts_with("gitmoor_reconciles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let status = eventually(30, || child.try_wait().ok().flatten()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "the daemon did not exit after SIGTERM:\n{}",
                self.log_text()
            )
        });
        (status, self.log_text())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn metric_in(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `sha256=` + hex HMAC-SHA256 of `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub-style push payload for `git_ref`.
pub fn push_payload(git_ref: &str, after: &str) -> String {
    format!(
        r#"{{"ref":"{git_ref}","before":"0000000000000000000000000000000000000000","after":"{after}","repository":{{"full_name":"acme/infra"}},"commits":[]}}"#
    )
}

/// Writes a secrets file the way editors and config tools do: a temp file renamed over it.
pub fn save_secret_atomically(host: &Host, stack: &str, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = host.secrets.join(format!(".{stack}.env.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, host.secrets.join(format!("{stack}.env"))).unwrap();
}

/// Everything a person or a scraper can read from the daemon, in one string.
pub fn every_response(d: &Daemon) -> String {
    let mut all = String::new();
    for p in ["/status", "/", "/metrics", "/health"] {
        if let Some((_, b)) = d.get(p) {
            all.push_str(&b);
        }
    }
    all
}

/// Asserts none of `values` is in `text` (`what` names where it was looked for).
pub fn assert_no_secret(text: &str, values: &[&str], what: &str) {
    for v in values {
        assert!(!text.contains(v), "secret value {v:?} leaked in {what}");
    }
}
