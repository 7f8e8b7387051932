//! A private nginx for tests: its own prefix, port and pid, started with argv and stopped (by its
//! own, checked pid) on drop; never the machine's nginx or /etc/nginx. And a tiny HTTP backend.
#![allow(dead_code)]

use gitmoor::apply::nginx::NginxHost;
use gitmoor::config::nginx::NginxConfig;
use gitmoor::redact::Redactor;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A free loopback port (the kernel's choice; released just before nginx binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend: answers every request with `body`, on a thread, until the test process ends.
pub fn backend(body: &'static str) -> u16 {
    backend_with(move |_| body.to_string())
}

/// A backend answering every request with `answer(request head)`, on a thread, until the test
/// process ends.
pub fn backend_with(answer: impl Fn(&str) -> String + Send + 'static) -> u16 {
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
            let body = answer(&String::from_utf8_lossy(&got));
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
pub struct PrivateNginx {
    dir: tempfile::TempDir,
    pub port: u16,
    started: bool,
}

impl PrivateNginx {
    /// Writes the main config (a default server answering "default", then the include of the
    /// sites folder when `include`), without starting nginx.
    pub fn new(include: bool) -> PrivateNginx {
        PrivateNginx::with_listen(include, "127.0.0.1:")
    }

    /// The default server on every address (`listen <port>`), as a host's nginx has it: vhosts
    /// gitmoor renders listen on the port alone, and a reload could not bind that wildcard next
    /// to a loopback-only socket.
    pub fn on_all_addresses(include: bool) -> PrivateNginx {
        PrivateNginx::with_listen(include, "")
    }

    fn with_listen(include: bool, addr: &str) -> PrivateNginx {
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
        listen {addr}{port} default_server;
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

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn sites_dir(&self) -> PathBuf {
        self.path().join("sites")
    }

    pub fn args(&self) -> Vec<String> {
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
    pub fn start(&mut self) {
        let st = Command::new(NGINX).args(self.args()).status().unwrap();
        assert!(st.success(), "nginx did not start: {}", self.error_log());
        self.started = true;
        self.wait_for("nowhere.test", "default\n");
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.path().join("logs/error.log")).unwrap_or_default()
    }

    pub fn config(&self) -> NginxConfig {
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

    pub fn host(&self) -> NginxHost {
        let cfg = self.config();
        cfg.check().unwrap();
        NginxHost::new(&cfg, Redactor::default()).unwrap()
    }

    /// One HTTP request for `name` on the shared port: (status, body).
    pub fn get(&self, name: &str) -> (u16, String) {
        self.try_get(name)
            .unwrap_or_else(|e| panic!("GET {name}: {e}"))
    }

    pub fn try_get(&self, name: &str) -> std::io::Result<(u16, String)> {
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
    pub fn wait_for(&self, name: &str, body: &str) {
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
    pub fn workers(&self) -> usize {
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
    pub fn master(&self) -> Option<i32> {
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
