//! `apply::nginx::NginxHost` against a real nginx running in a private prefix (never the
//! machine's own nginx or /etc/nginx), proven with real HTTP requests: a site goes live, a
//! broken site is held back with nginx's message while the others go live, a broken new
//! version keeps the old one serving, a removed site stops answering, foreign files are left
//! alone.

use gitmoor::apply::nginx::{NginxHost, SiteChange, SiteError};
use gitmoor::config::nginx::NginxConfig;
use gitmoor::observe::nginx::{observe_sites, read_sites_dir};
use gitmoor::observe::Seen;
use gitmoor::redact::Redactor;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

/// A free loopback port (the kernel's choice; released just before nginx binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend: answers every request with `body`, on a thread, until the test process ends.
fn backend(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A private nginx: its prefix, its port, stopped (by its own pid, checked) on drop.
struct PrivateNginx {
    dir: tempfile::TempDir,
    port: u16,
    started: bool,
}

impl PrivateNginx {
    /// Writes the main config (a default server answering "default", then the include of the
    /// sites folder when `include`), without starting nginx.
    fn new(include: bool) -> PrivateNginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Workers run as nobody: they must get into the prefix's temp folders.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        let port = free_port();
        let dd = d.display();
        let include_line = if include {
            format!("include {dd}/sites/*.conf;")
        } else {
            String::new()
        };
        let conf = format!(
            "worker_processes 1;
pid {dd}/nginx.pid;
error_log {dd}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dd}/tmp/client_body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} default_server;
        location / {{ return 404 \"default\\n\"; }}
    }}
    {include_line}
}}
"
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        PrivateNginx {
            dir,
            port,
            started: false,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sites_dir(&self) -> PathBuf {
        self.path().join("sites")
    }

    fn args(&self) -> Vec<String> {
        let d = self.path();
        vec![
            "-p".into(),
            d.display().to_string(),
            "-c".into(),
            d.join("nginx.conf").display().to_string(),
            "-e".into(),
            d.join("logs/error.log").display().to_string(),
        ]
    }

    /// Starts nginx (daemon on: the master forks away and writes its pid file).
    fn start(&mut self) {
        let st = Command::new(NGINX).args(self.args()).status().unwrap();
        assert!(st.success(), "nginx did not start: {}", self.error_log());
        self.started = true;
        self.wait_for("nowhere.test", "default\n");
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.path().join("logs/error.log")).unwrap_or_default()
    }

    fn config(&self) -> NginxConfig {
        NginxConfig {
            sites_dir: self.sites_dir(),
            binary: Some(NGINX.into()),
            prefix: Some(self.path().to_path_buf()),
            conf: Some(self.path().join("nginx.conf")),
            args: vec![
                "-e".into(),
                self.path().join("logs/error.log").display().to_string(),
            ],
            test_timeout_secs: 20,
            ..NginxConfig::default()
        }
    }

    fn host(&self) -> NginxHost {
        let cfg = self.config();
        cfg.check().unwrap();
        NginxHost::new(&cfg, Redactor::default()).unwrap()
    }

    /// One HTTP request for `name` on the shared port: (status, body).
    fn get(&self, name: &str) -> (u16, String) {
        self.try_get(name)
            .unwrap_or_else(|e| panic!("GET {name}: {e}"))
    }

    fn try_get(&self, name: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET / HTTP/1.0\r\nHost: {name}\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Waits (a reload takes a moment to reach the workers) until `name` answers `body`, then
    /// until the workers of the previous config are gone: until then, one of them may still
    /// accept a connection and answer with the old config.
    fn wait_for(&self, name: &str, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.try_get(name).ok();
            if got.as_ref().is_some_and(|(_, b)| b == body) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never answered {body:?}; last {got:?}; error log:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        while self.workers() > 1 {
            assert!(Instant::now() < deadline, "old nginx workers never left");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.get(name).1, body, "{name} after the old workers left");
    }

    /// How many children the master has (one worker once a reload is through).
    fn workers(&self) -> usize {
        let Some(master) = self.master() else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces, so split after the `)`.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok())
                    == Some(master)
            })
            .count()
    }

    /// The master's pid, when it is running and is ours (its command line names our prefix).
    fn master(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.path().join("nginx.pid")).ok()?;
        let pid = pid.trim().parse::<i32>().ok().filter(|p| *p > 1)?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&*self.path().to_string_lossy())
            .then_some(pid)
    }
}

impl Drop for PrivateNginx {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let Some(pid) = self.master() else {
            return;
        };
        // SAFETY: plain kill(2) of the master we started (checked above).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn proxy_site(name: &str, port: u16, backend: u16) -> String {
    format!(
        "server {{\n    listen 127.0.0.1:{port};\n    server_name {name}.test;\n    \
         location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n}}\n"
    )
}

fn return_site(name: &str, port: u16, body: &str) -> String {
    format!(
        "server {{\n    listen 127.0.0.1:{port};\n    server_name {name}.test;\n    \
         location / {{ return 200 \"{body}\\n\"; }}\n}}\n"
    )
}

#[tokio::test]
async fn one_bad_site_is_held_back_with_nginxs_message_and_the_others_go_live() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    let (one, two) = (backend("backend one\n"), backend("backend two\n"));

    host.install("a", &proxy_site("a", ngx.port, one))
        .await
        .unwrap();
    ngx.wait_for("a.test", "backend one\n");

    let broken = format!(
        "server {{\n    listen 127.0.0.1:{};\n    server_name b.test;\n    no_such_directive on;\n}}\n",
        ngx.port
    );
    let out = host
        .install_many(&[
            ("b".to_string(), broken),
            ("c".to_string(), proxy_site("c", ngx.port, two)),
        ])
        .await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out["c"], Ok(()));
    match &out["b"] {
        Err(e @ SiteError::Rejected { site, message }) => {
            assert_eq!(site, "b");
            assert!(
                message.contains("unknown directive \"no_such_directive\""),
                "{e}"
            );
            // Line 5: the header line comes first.
            assert!(message.contains("b.conf:5"), "{e}");
            assert!(e.to_string().contains("nginx site b"), "{e}");
        }
        other => panic!("b: {other:?}"),
    }
    ngx.wait_for("c.test", "backend two\n");
    assert_eq!(ngx.get("a.test"), (200, "backend one\n".into()));
    assert_eq!(ngx.get("b.test"), (404, "default\n".into()));
    assert!(!ngx.sites_dir().join("b.conf").exists());

    // What the observer sees: gitmoor's two sites, with the header line.
    let Seen::Observed(sites) = observe_sites(&ngx.sites_dir()) else {
        panic!("not observed")
    };
    assert_eq!(sites.keys().collect::<Vec<_>>(), vec!["a", "c"]);
    assert!(sites["a"].starts_with("# managed by gitmoor\nserver {"));
}

#[tokio::test]
async fn a_broken_new_version_keeps_the_old_one_serving() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    host.install("a", &return_site("a", ngx.port, "v1"))
        .await
        .unwrap();
    ngx.wait_for("a.test", "v1\n");
    let v1 = std::fs::read_to_string(ngx.sites_dir().join("a.conf")).unwrap();

    // An unknown variable: nginx -t refuses it, no DNS involved.
    let broken = format!(
        "server {{\n    listen 127.0.0.1:{};\n    server_name a.test;\n    \
         location / {{ return 200 $no_such_variable; }}\n}}\n",
        ngx.port
    );
    let err = host.install("a", &broken).await.unwrap_err();
    assert!(
        matches!(&err, SiteError::Rejected { message, .. } if message.contains("unknown \"no_such_variable\" variable")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(ngx.sites_dir().join("a.conf")).unwrap(),
        v1
    );
    // A reload by anyone else now loads the same good config.
    assert!(Command::new(NGINX)
        .args(ngx.args())
        .args(["-s", "reload"])
        .status()
        .unwrap()
        .success());
    ngx.wait_for("a.test", "v1\n");

    host.install("a", &return_site("a", ngx.port, "v2"))
        .await
        .unwrap();
    ngx.wait_for("a.test", "v2\n");
    // The same content again: nothing to do.
    host.install("a", &return_site("a", ngx.port, "v2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_removed_site_stops_answering_the_others_and_foreign_files_stay() {
    let mut ngx = PrivateNginx::new(true);
    std::fs::create_dir_all(ngx.sites_dir()).unwrap();
    let hand = return_site("hand", ngx.port, "by hand");
    std::fs::write(ngx.sites_dir().join("hand.conf"), &hand).unwrap();
    ngx.start();
    let host = ngx.host();
    let out = host
        .install_many(&[
            ("a".into(), return_site("a", ngx.port, "site a")),
            ("c".into(), return_site("c", ngx.port, "site c")),
        ])
        .await;
    assert!(out.values().all(Result::is_ok), "{out:?}");
    ngx.wait_for("a.test", "site a\n");
    ngx.wait_for("c.test", "site c\n");
    ngx.wait_for("hand.test", "by hand\n");

    host.remove("a").await.unwrap();
    ngx.wait_for("a.test", "default\n");
    assert_eq!(ngx.get("c.test"), (200, "site c\n".into()));
    assert_eq!(ngx.get("hand.test"), (200, "by hand\n".into()));

    // The admin's file is neither removed nor overwritten.
    let err = host.remove("hand").await.unwrap_err();
    assert!(matches!(err, SiteError::Foreign { .. }), "{err}");
    let err = host.install("hand", "server {}\n").await.unwrap_err();
    assert!(err.to_string().contains("not written by gitmoor"), "{err}");
    assert_eq!(
        std::fs::read_to_string(ngx.sites_dir().join("hand.conf")).unwrap(),
        hand
    );
    let seen = read_sites_dir(&ngx.sites_dir()).unwrap();
    assert_eq!(seen.managed.keys().collect::<Vec<_>>(), vec!["c"]);
    assert_eq!(seen.foreign.iter().collect::<Vec<_>>(), vec!["hand.conf"]);
    assert_eq!(ngx.get("hand.test"), (200, "by hand\n".into()));
}

#[tokio::test]
async fn a_removal_that_breaks_the_test_is_put_back() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    // `colors` defines a variable that `user` needs.
    let colors = "map $host $site_color { default \"blue\"; }\n".to_string();
    let user = format!(
        "server {{\n    listen 127.0.0.1:{};\n    server_name user.test;\n    \
         location / {{ return 200 \"$site_color\\n\"; }}\n}}\n",
        ngx.port
    );
    let out = host
        .apply(vec![
            SiteChange::Install {
                site: "colors".into(),
                content: colors.clone(),
            },
            SiteChange::Install {
                site: "user".into(),
                content: user,
            },
        ])
        .await;
    assert!(out.values().all(Result::is_ok), "{out:?}");
    ngx.wait_for("user.test", "blue\n");

    let err = host.remove("colors").await.unwrap_err();
    assert!(
        matches!(&err, SiteError::Rejected { site, message } if site == "colors" && message.contains("site_color")),
        "{err}"
    );
    assert!(ngx.sites_dir().join("colors.conf").exists());
    assert_eq!(ngx.get("user.test"), (200, "blue\n".into()));
}

#[tokio::test]
async fn a_folder_nginx_does_not_include_is_refused_and_left_as_it_was() {
    let ngx = PrivateNginx::new(false);
    let host = ngx.host();
    let err = host
        .install("a", &return_site("a", ngx.port, "a"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("include {}/*.conf;", ngx.sites_dir().display())),
        "{err}"
    );
    assert_eq!(
        observe_sites(&ngx.sites_dir()),
        Seen::Observed(Default::default())
    );
}

#[tokio::test]
async fn a_failed_reload_puts_the_files_back() {
    // Never started: the test passes, the reload finds no nginx to signal.
    let ngx = PrivateNginx::new(true);
    let host = ngx.host();
    let err = host
        .install("a", &return_site("a", ngx.port, "a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SiteError::Host { message, .. } if message.contains("reload") && message.contains("is nginx running")),
        "{err}"
    );
    assert!(!ngx.sites_dir().join("a.conf").exists());
}

#[tokio::test]
async fn site_names_that_are_not_plain_file_names_never_become_paths() {
    let ngx = PrivateNginx::new(true);
    let host = ngx.host();
    for bad in ["../escape", "a/b", ".hidden", "", "A"] {
        let err = host.install(bad, "server {}\n").await.unwrap_err();
        assert!(matches!(err, SiteError::BadName { .. }), "{bad}: {err}");
    }
    assert!(!ngx.path().join("escape.conf").exists());
    assert!(!ngx.sites_dir().exists());
}

#[tokio::test]
async fn nginxs_message_is_redacted_of_secret_values() {
    let ngx = PrivateNginx::new(true);
    let cfg = ngx.config();
    let host = NginxHost::new(&cfg, Redactor::new(["s3cr3t-directive"])).unwrap();
    let broken = format!(
        "server {{\n    listen 127.0.0.1:{};\n    s3cr3t-directive on;\n}}\n",
        ngx.port
    );
    let err = host.install("a", &broken).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("unknown directive \"***\""), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}
