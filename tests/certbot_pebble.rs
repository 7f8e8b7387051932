//! Certificates for real: Pebble (Let's Encrypt's test CA, validating HTTP-01 for real),
//! pebble-challtestsrv as the DNS both Pebble and gitmoor's preflight ask, nginx in a private
//! prefix serving the site gitmoor renders, and certbot `certonly --webroot` as
//! `apply::certbot` runs it (after ../shared/recipes/acme-pebble.sh). Everything lives in one
//! temporary folder with random ports; every process is stopped on drop; the machine's
//! /etc/letsencrypt and /etc/nginx are never touched.

use gitmoor::apply::certbot::{obtain, renew_checked, renew_one, CertError};
use gitmoor::apply::dns_preflight::Resolver;
use gitmoor::apply::nginx::NginxHost;
use gitmoor::config::letsencrypt::LetsEncryptConfig;
use gitmoor::config::nginx::NginxConfig;
use gitmoor::observe::certs::{observe_cert, CertState};
use gitmoor::observe::Seen;
use gitmoor::redact::Redactor;
use gitmoor::source::snapshot::Snapshot;
use gitmoor::spec::limits::Limits;
use gitmoor::spec::nginx::values::HostPath;
use gitmoor::spec::nginx::{read_sites, site_text, RenderHost, RenderTls, Stacks};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::nginx::{backend, backend_with, NGINX};
const DOMAIN: &str = "api.example.test";

/// A loopback port free for TCP and UDP (the DNS server binds both).
fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A backend answering every request with the request's own headers, lowercased (what the
/// upstream sees of the client through Nginx).
fn echo_backend() -> u16 {
    backend_with(|request| request.to_lowercase())
}

/// Pebble, its DNS, nginx and certbot's folders, in one temporary folder.
struct World {
    dir: tempfile::TempDir,
    dns_port: u16,
    mgmt_port: u16,
    acme_port: u16,
    pebble_mgmt_port: u16,
    http_port: u16,
    https_port: u16,
    /// Started processes, stopped in reverse order on drop.
    children: Vec<Child>,
    nginx: Option<Child>,
    /// Pebble's certificate lifetime in seconds (its own default, 5 years, when None).
    validity: Option<u64>,
}

impl World {
    fn new() -> World {
        World::with_validity(None)
    }

    /// Pebble issuing certificates that last `validity` seconds (so a test can make one due).
    fn with_validity(validity: Option<u64>) -> World {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers run as nobody: they must get into the webroot and the prefix.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut w = World {
            dir,
            dns_port: free_port(),
            mgmt_port: free_port(),
            acme_port: free_port(),
            pebble_mgmt_port: free_port(),
            http_port: free_port(),
            https_port: free_port(),
            children: Vec::new(),
            nginx: None,
            validity,
        };
        w.start_acme();
        w
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn api_ca(&self) -> PathBuf {
        self.path().join("pebble/api-ca.pem")
    }

    fn spawn(&mut self, log: &str, cmd: &mut Command) {
        let log = std::fs::File::create(self.path().join(log)).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// pebble-challtestsrv (DNS: every name -> 127.0.0.1, no AAAA) and Pebble, with a
    /// throwaway CA for Pebble's API (Debian's package ships none).
    fn start_acme(&mut self) {
        let p = self.path().join("pebble");
        std::fs::create_dir_all(&p).unwrap();
        let ps = |f: &str| p.join(f).display().to_string();
        run(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pebble API test CA",
            "-keyout",
            &ps("api-ca.key"),
            "-out",
            &ps("api-ca.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
        run(Command::new("openssl").args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &ps("api.key"),
            "-out",
            &ps("api.csr"),
        ]));
        std::fs::write(
            p.join("api.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            &ps("api.csr"),
            "-CA",
            &ps("api-ca.pem"),
            "-CAkey",
            &ps("api-ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ps("api.ext"),
            "-out",
            &ps("api.pem"),
        ]));
        let (dns, mgmt) = (self.dns_port, self.mgmt_port);
        self.spawn(
            "challtestsrv.log",
            Command::new("pebble-challtestsrv").args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{mgmt}"),
            ]),
        );
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{}", "managementListenAddress": "127.0.0.1:{}",
  "certificate": "{}", "privateKey": "{}", "httpPort": {}, "tlsPort": {},
  "ocspResponderURL": "", "externalAccountBindingRequired": false{}}}}}"#,
            self.acme_port,
            self.pebble_mgmt_port,
            ps("api.pem"),
            ps("api.key"),
            self.http_port,
            self.https_port,
            self.validity
                .map(|v| format!(", \"certificateValidityPeriod\": {v}"))
                .unwrap_or_default()
        );
        std::fs::write(p.join("pebble-config.json"), config).unwrap();
        self.spawn(
            "pebble.log",
            Command::new("pebble")
                .args(["-config", &ps("pebble-config.json"), "-dnsserver"])
                .arg(format!("127.0.0.1:{dns}"))
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
        );
        // The test's own runtime is busy running this: ask from a thread with its own.
        let resolver = Resolver::Server(([127, 0, 0, 1], dns).into());
        let resolves = || {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(resolver.lookup(DOMAIN))
                        .is_ok_and(|a| !a.is_empty())
                })
                .join()
                .unwrap()
            })
        };
        self.wait("challtestsrv's DNS", resolves);
        let dir_url = self.acme_url();
        let ca = self.api_ca();
        self.wait("pebble's ACME directory", || curl(&ca, &dir_url).is_some());
    }

    /// GET https://DOMAIN/ on the HTTPS port, trusting only Pebble's root of this run: the
    /// body (the test fails when the request does).
    fn https_body(&self) -> String {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5", "--cacert"])
            .arg(self.pebble_root())
            .arg("--resolve")
            .arg(format!("{DOMAIN}:{}:127.0.0.1", self.https_port))
            .arg(format!("https://{DOMAIN}:{}/", self.https_port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "HTTPS with Pebble's root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn acme_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// Pebble's root for this run (a new one on every start).
    fn pebble_root(&self) -> PathBuf {
        let url = format!("https://127.0.0.1:{}/roots/0", self.pebble_mgmt_port);
        let root = curl(&self.api_ca(), &url).expect("pebble's root");
        let path = self.path().join("pebble-root.pem");
        std::fs::write(&path, root).unwrap();
        path
    }

    fn wait(&self, what: &str, mut ready: impl FnMut() -> bool) {
        // Generous: Pebble makes its keys at start, slow on a 2-core machine running other tests.
        let deadline = Instant::now() + Duration::from_secs(90);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{what} never came up; logs in {}",
                self.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One call of challtestsrv's management API (`add-a`, `clear-aaaa`, ...).
    fn dns_admin(&self, endpoint: &str, body: &str) {
        run(Command::new("curl").args([
            "-fsS",
            "-d",
            body,
            &format!("http://127.0.0.1:{}/{endpoint}", self.mgmt_port),
        ]));
    }

    /// Points `name` at `ip` in challtestsrv's DNS (its management API).
    fn point(&self, name: &str, ip: &str) {
        let body = format!(r#"{{"host":"{name}","addresses":["{ip}"]}}"#);
        self.dns_admin("add-a", &body);
    }

    /// Gives `name` an AAAA record `ip` in challtestsrv's DNS.
    fn point_aaaa(&self, name: &str, ip: &str) {
        let body = format!(r#"{{"host":"{name}","addresses":["{ip}"]}}"#);
        self.dns_admin("add-aaaa", &body);
    }

    /// Takes the A records of `name` away again (back to challtestsrv's default).
    fn clear_a(&self, name: &str) {
        let body = format!(r#"{{"host":"{name}"}}"#);
        self.dns_admin("clear-a", &body);
    }

    /// Takes the AAAA records of `name` away again.
    fn clear_aaaa(&self, name: &str) {
        let body = format!(r#"{{"host":"{name}"}}"#);
        self.dns_admin("clear-aaaa", &body);
    }

    fn nginx_dir(&self) -> PathBuf {
        self.path().join("nginx")
    }

    fn webroot(&self) -> PathBuf {
        self.path().join("acme")
    }

    fn sites_dir(&self) -> PathBuf {
        self.nginx_dir().join("sites")
    }

    /// nginx in its own prefix: a default server answering 404 on the HTTP port (so an
    /// unserved challenge fails), then the sites folder.
    fn start_nginx(&mut self) {
        let d = self.nginx_dir();
        for sub in ["logs", "tmp", "sites"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let dd = d.display();
        let (http, https) = (self.http_port, self.https_port);
        let conf = format!(
            "worker_processes 1;
pid {dd}/nginx.pid;
error_log {dd}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dd}/logs/access.log;
    client_body_temp_path {dd}/tmp/client_body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    default_type text/plain;
    server {{
        listen {http} default_server;
        location / {{ return 404 \"default\\n\"; }}
    }}
    include {dd}/sites/*.conf;
}}
"
        );
        let _ = https;
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let mut args = self.nginx_args();
        args.extend(["-g".into(), "daemon off;".into()]);
        let child = Command::new(NGINX)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.nginx = Some(child);
        self.wait("nginx", || {
            http_get(http, "nowhere.test", "/").is_some_and(|(s, _)| s == 404)
        });
    }

    fn nginx_args(&self) -> Vec<String> {
        let d = self.nginx_dir();
        vec![
            "-p".into(),
            d.display().to_string(),
            "-c".into(),
            d.join("nginx.conf").display().to_string(),
            "-e".into(),
            d.join("logs/error.log").display().to_string(),
        ]
    }

    fn nginx_host(&self) -> NginxHost {
        let d = self.nginx_dir();
        let cfg = NginxConfig {
            sites_dir: self.sites_dir(),
            binary: Some(NGINX.into()),
            prefix: Some(d.clone()),
            conf: Some(d.join("nginx.conf")),
            args: vec!["-e".into(), d.join("logs/error.log").display().to_string()],
            test_timeout_secs: 20,
            acme_webroot: self.webroot(),
            ..NginxConfig::default()
        };
        cfg.check().unwrap();
        NginxHost::new(&cfg, Redactor::default()).unwrap()
    }

    /// gitmoor's `letsencrypt:` block for this world: Pebble, its DNS, certbot's folders here,
    /// and certbot through a wrapper that records each call.
    fn letsencrypt(&self) -> LetsEncryptConfig {
        let le = self.path().join("letsencrypt");
        let wrapper = self.path().join("certbot");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec /usr/bin/certbot \"$@\"\n",
                self.calls_file().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = LetsEncryptConfig {
            email: Some("admin@example.test".into()),
            server: self.acme_url(),
            certbot: Some(wrapper),
            config_dir: le.join("config"),
            work_dir: le.join("work"),
            logs_dir: le.join("logs"),
            ca_bundle: Some(self.api_ca()),
            host_addresses: Some(vec!["127.0.0.1".parse().unwrap()]),
            dns_server: Some(([127, 0, 0, 1], self.dns_port).into()),
            timeout_secs: 120,
            ..LetsEncryptConfig::default()
        };
        cfg.check().unwrap();
        cfg
    }

    /// gitmoor's `nginx:` and `letsencrypt:` blocks for this world (the private nginx, Pebble,
    /// its DNS, certbot through the recording wrapper).
    fn gitmoor_config(&self) -> String {
        let le = self.letsencrypt();
        let d = self.nginx_dir();
        format!(
            "nginx:\n  sites_dir: {}\n  binary: {NGINX}\n  prefix: {}\n  conf: {}\n  args: [\"-e\", \"{}\"]\n  acme_webroot: {}\n  http_port: {}\n  https_port: {}\n  ipv6: false\nletsencrypt:\n  email: admin@example.test\n  server: {}\n  certbot: {}\n  config_dir: {}\n  work_dir: {}\n  logs_dir: {}\n  ca_bundle: {}\n  host_addresses: [127.0.0.1]\n  dns_server: 127.0.0.1:{}\n  timeout_secs: 120\n  renew_days: 30\n",
            self.sites_dir().display(),
            d.display(),
            d.join("nginx.conf").display(),
            d.join("logs/error.log").display(),
            self.webroot().display(),
            self.http_port,
            self.https_port,
            le.server,
            le.certbot.as_ref().unwrap().display(),
            le.config_dir.display(),
            le.work_dir.display(),
            le.logs_dir.display(),
            self.api_ca().display(),
            self.dns_port,
        )
    }

    /// The serial of the certificate nginx presents for `DOMAIN` on the HTTPS port
    /// (`openssl s_client`, then `openssl x509 -serial`, argv only).
    fn served_serial(&self) -> String {
        let hello = Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", self.https_port))
            .args(["-servername", DOMAIN])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-serial"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        x509.stdin.take().unwrap().write_all(&hello.stdout).unwrap();
        let out = x509.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(text.starts_with("serial="), "no certificate served: {text}");
        text
    }

    fn calls_file(&self) -> PathBuf {
        self.path().join("certbot-calls")
    }

    fn certbot_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The vhost gitmoor renders for `nginx/api.yaml` proxying to `backend`, with `tls`.
    fn rendered_site(&self, backend: u16, tls: &RenderTls) -> String {
        self.rendered_site_for(&[DOMAIN], backend, tls)
    }

    fn rendered_site_for(&self, names: &[&str], backend: u16, tls: &RenderTls) -> String {
        let repo = self.path().join("repo");
        std::fs::create_dir_all(repo.join("nginx")).unwrap();
        std::fs::write(
            repo.join("nginx/api.yaml"),
            format!(
                "server_names: [{}]\nupstream: 127.0.0.1:{backend}\ntls: letsencrypt\n",
                names.join(", ")
            ),
        )
        .unwrap();
        let snap = Snapshot::from_dir(&repo).unwrap();
        let loaded = BTreeMap::new();
        let stacks = Stacks {
            loaded: &loaded,
            in_commit: BTreeSet::new(),
        };
        let (sites, findings) = read_sites(&snap, &stacks, &Limits::default());
        assert!(findings.errors.is_empty(), "{:?}", findings.errors);
        let host = RenderHost {
            http_port: self.http_port,
            https_port: self.https_port,
            ipv6: false,
            ..RenderHost::default()
        };
        site_text(&sites["api"], tls, &host)
    }

    /// Waits until `host` answers `/` with `status` on the HTTP port, then until the workers of
    /// the previous config are gone (until then, one may still answer with the old config).
    fn wait_status(&self, host: &str, status: u16) {
        let port = self.http_port;
        self.wait(&format!("{host} answering {status}"), || {
            http_get(port, host, "/").is_some_and(|(s, _)| s == status)
        });
        self.settle();
    }

    fn settle(&self) {
        let master = self.nginx.as_ref().unwrap().id();
        self.wait("the old nginx workers to leave", || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                        .and_then(|p| p.parse::<u32>().ok())
                        == Some(master)
                })
                .count()
                == 1
        });
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            // SIGTERM to our own child, the master: it stops its workers and exits.
            unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while nginx.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nginx.kill();
            let _ = nginx.wait();
        }
        for mut c in self.children.drain(..).rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `curl --cacert ca url` -> the body, None on any failure.
fn curl(ca: &Path, url: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// One plain HTTP request to 127.0.0.1:port for `host`: (status, body).
fn http_get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn observed(s: Seen<CertState>) -> CertState {
    match s {
        Seen::Observed(s) => s,
        Seen::NotObserved(why) => panic!("not observed: {why}"),
    }
}

fn host_path(p: &Path) -> HostPath {
    HostPath::parse(&p.display().to_string()).unwrap()
}

/// From nothing to HTTPS: the site rendered `AcmePending` serves the webroot, certbot obtains
/// the certificate through it (Pebble really fetches the challenge), observe/certs reads it,
/// the site rendered `AcmeReady` serves the backend over HTTPS with it; a forced renewal writes
/// a new certificate, and a renewal pass with nothing due runs no certbot at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_through_the_sites_webroot_and_serves_https() {
    let mut w = World::new();
    w.start_nginx();
    let nginx = w.nginx_host();
    let cfg = w.letsencrypt();
    let port = backend("hello from the backend\n");

    // Nothing yet: observed absent (not "not observed").
    let before = observed(observe_cert(&cfg.config_dir, DOMAIN));
    assert!(!before.present && before.error.is_none(), "{before:?}");

    let pending = RenderTls::AcmePending {
        webroot: host_path(&w.webroot()),
    };
    nginx
        .install("api", &w.rendered_site(port, &pending))
        .await
        .unwrap();
    // Waiting for its certificate, the site says so rather than serve in clear.
    w.wait_status(DOMAIN, 503);

    let paths = obtain("api", &[DOMAIN], &w.webroot(), &cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        paths.fullchain,
        cfg.config_dir.join("live/api.example.test/fullchain.pem")
    );
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());
    let access = std::fs::read_to_string(w.nginx_dir().join("logs/access.log")).unwrap();
    assert!(
        access.contains("/.well-known/acme-challenge/") && access.contains("Pebble"),
        "Pebble never fetched the challenge through nginx:\n{access}"
    );

    let got = observed(observe_cert(&cfg.config_dir, DOMAIN));
    assert!(got.present && got.error.is_none(), "{got:?}");
    assert!(got.not_after.unwrap() > now() + 86_400, "{got:?}");
    assert_eq!(got.names, [DOMAIN]);
    assert!(got.serves(&[DOMAIN], now()));

    // The same call again keeps the certificate (certbot --keep-until-expiring).
    obtain("api", &[DOMAIN], &w.webroot(), &cfg).await.unwrap();
    assert_eq!(observed(observe_cert(&cfg.config_dir, DOMAIN)), got);

    let ready = RenderTls::AcmeReady {
        webroot: host_path(&w.webroot()),
        cert: host_path(&paths.fullchain),
        key: host_path(&paths.privkey),
    };
    nginx
        .install("api", &w.rendered_site(port, &ready))
        .await
        .unwrap();
    // Plain HTTP now redirects.
    w.wait_status(DOMAIN, 301);
    let body = w.https_body();
    assert_eq!(body, "hello from the backend\n");
    // Plain HTTP now redirects.
    assert_eq!(http_get(w.http_port, DOMAIN, "/").unwrap().0, 301);

    // A renewal (the plan decides when one is due) runs the DNS preflight, then certbot renew
    // through the webroot: a new certificate file.
    let renewed = renew_checked(&cfg, "api", DOMAIN, &w.webroot())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(renewed);
    assert_eq!(w.certbot_calls().len(), 3);
    assert!(w.certbot_calls()[2].starts_with("renew --cert-name api.example.test --force-renewal"));
    assert!(renew_one(&cfg, DOMAIN, &w.webroot()).await.unwrap());

    // The site gains a name: its certificate does not serve it, and asking again updates the
    // lineage (same name, same paths) to cover both.
    let www = "www.example.test";
    assert!(!observed(observe_cert(&cfg.config_dir, DOMAIN)).serves(&[DOMAIN, www], now()));
    nginx
        .install("api", &w.rendered_site_for(&[DOMAIN, www], port, &ready))
        .await
        .unwrap();
    w.wait_status(www, 301);
    let again = obtain("api", &[DOMAIN, www], &w.webroot(), &cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, paths);
    let got = observed(observe_cert(&cfg.config_dir, DOMAIN));
    assert!(got.serves(&[DOMAIN, www], now()), "{got:?}");
}

/// A renewal after the ACME webroot moved (`nginx.acme_webroot` changed; the vhost serves only
/// the new one) writes the challenge where nginx serves it, not into the webroot saved with the
/// lineage, and certbot saves the new one. (certbot 2.1 does so with a `-w` too, as its log
/// shows; gitmoor passes `--webroot-map`, which a saved map never overrides.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_after_the_acme_webroot_moved_validates_through_the_new_one() {
    let mut w = World::new();
    w.start_nginx();
    let nginx = w.nginx_host();
    let cfg = w.letsencrypt();
    let port = backend("moved\n");
    let pending = RenderTls::AcmePending {
        webroot: host_path(&w.webroot()),
    };
    nginx
        .install("api", &w.rendered_site(port, &pending))
        .await
        .unwrap();
    let paths = obtain("api", &[DOMAIN], &w.webroot(), &cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let moved = w.path().join("acme-moved");
    let ready = RenderTls::AcmeReady {
        webroot: host_path(&moved),
        cert: host_path(&paths.fullchain),
        key: host_path(&paths.privkey),
    };
    nginx
        .install("api", &w.rendered_site(port, &ready))
        .await
        .unwrap();
    let before = observed(observe_cert(&cfg.config_dir, DOMAIN));
    let renewed = renew_checked(&cfg, "api", DOMAIN, &moved)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(renewed);
    assert_ne!(observed(observe_cert(&cfg.config_dir, DOMAIN)), before);
    let renewal =
        std::fs::read_to_string(cfg.config_dir.join(format!("renewal/{DOMAIN}.conf"))).unwrap();
    assert!(
        renewal.contains(&format!("{DOMAIN} = {}", moved.display())),
        "certbot saved the new webroot for the lineage:\n{renewal}"
    );
}

/// A name whose DNS points elsewhere is refused before certbot runs, naming the name, where it
/// points, and this host's addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_pointing_elsewhere_is_refused_before_certbot_runs() {
    let w = World::new();
    w.point("elsewhere.example.test", "203.0.113.9");
    let cfg = w.letsencrypt();
    let err = obtain(
        "shop",
        &[DOMAIN, "elsewhere.example.test"],
        &w.webroot(),
        &cfg,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CertError::Preflight(_)), "{err:?}");
    let shown = err.to_string();
    for want in [
        "site shop: no certificate was asked for",
        "rate-limits failed validations",
        "elsewhere.example.test resolves to 203.0.113.9",
        "this host's addresses: 127.0.0.1",
    ] {
        assert!(shown.contains(want), "{want}: {shown}");
    }
    assert!(!shown.contains("api.example.test resolves"), "{shown}");
    assert!(w.certbot_calls().is_empty(), "{:?}", w.certbot_calls());
    assert!(!cfg.config_dir.exists());
}

/// certbot's own failure (nginx does not serve the webroot for this name: Pebble gets a 404)
/// is the site's error, with certbot's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webroot_nginx_does_not_serve_fails_with_certbots_message_naming_the_site() {
    let mut w = World::new();
    w.start_nginx();
    let cfg = w.letsencrypt();
    let err = obtain("api", &[DOMAIN], &w.webroot(), &cfg)
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, CertError::Certbot { .. }), "{err:?}");
    assert!(
        shown.starts_with("site api: certbot could not obtain a certificate for api.example.test:"),
        "{shown}"
    );
    assert!(shown.contains("Some challenges have failed"), "{shown}");
    assert!(shown.contains("404"), "{shown}");
    assert!(shown.contains("Type: unauthorized"), "{shown}");
    assert!(!shown.contains("Saving debug log"), "{shown}");
    assert_eq!(w.certbot_calls().len(), 1);
    let state = observed(observe_cert(&cfg.config_dir, DOMAIN));
    assert!(!state.present, "{state:?}");
}

/// The whole path through the `gitmoor` binary: a commit with `nginx/api.yaml` (`tls:
/// letsencrypt`) is planned, applied (the HTTP vhost, certbot through the webroot against Pebble,
/// the TLS vhost), and serves the backend over HTTPS with the certificate; the next apply asks
/// certbot nothing, and `/status`'s source (state.json) records the site applied.
#[test]
fn a_lets_encrypt_site_in_the_repo_goes_live_over_https_through_gitmoor_apply() {
    let mut w = World::new();
    w.start_nginx();
    let port = echo_backend();
    let config = w.gitmoor_config();
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(["-c", "user.email=t@example.test", "-c", "user.name=t"])
            .args(args)
            .current_dir(repo.path())
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.path().join("nginx")).unwrap();
    std::fs::write(
        repo.path().join("nginx/api.yaml"),
        format!("server_names: [{DOMAIN}]\nupstream: 127.0.0.1:{port}\ntls: letsencrypt\n"),
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "the api site"]);
    let host = tempfile::tempdir().unwrap();
    let cfg_path = host.path().join("config.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "repo: {}\nbranch: main\nsecrets_dir: {}\nstate_dir: {}\nlisten: 127.0.0.1:{}\n{config}",
            repo.path().display(),
            host.path().join("secrets").display(),
            host.path().join("state").display(),
            free_port()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(host.path().join("secrets")).unwrap();
    let gitmoor = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
            .args([cmd, "--config"])
            .arg(&cfg_path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    let (ok, plan) = gitmoor("plan");
    assert!(ok, "{plan}");
    assert!(
        plan.contains("install-site api: new site from nginx/api.yaml"),
        "{plan}"
    );

    let (ok, text) = gitmoor("apply");
    assert!(ok, "{text}");
    assert_eq!(
        w.certbot_calls().len(),
        1,
        "one certonly: {:?}",
        w.certbot_calls()
    );
    let vhost = std::fs::read_to_string(w.sites_dir().join("api.conf")).unwrap();
    assert!(vhost.contains("ssl_certificate"), "{vhost}");
    w.wait_status(DOMAIN, 301);
    let body = w.https_body();
    // The backend answers through Nginx over HTTPS, and sees the forwarded headers the seed
    // lists.
    let seen = body;
    for header in [
        format!("host: {DOMAIN}"),
        "x-real-ip: 127.0.0.1".to_string(),
        "x-forwarded-for: 127.0.0.1".to_string(),
        "x-forwarded-proto: https".to_string(),
    ] {
        assert!(
            seen.contains(&header),
            "{header} missing from what the backend saw:\n{seen}"
        );
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(host.path().join("state/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["units"]["site/api"]["result"], "success", "{state:#}");

    // The certificate is there and valid: nothing to do, certbot is not asked again.
    let (ok, text) = gitmoor("apply");
    assert!(ok && text.contains("no changes"), "{text}");
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());
}

/// The api site (`tls: letsencrypt`, upstream an echo backend) in a commit, and a host whose
/// nginx is reloaded by `script` (a shell script written next to nginx's config as `name`).
fn api_site_reloaded_by(w: &World, name: &str, script: &str) -> (support::Remote, support::Host) {
    use std::os::unix::fs::PermissionsExt;
    let port = echo_backend();
    let path = w.nginx_dir().join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = w.gitmoor_config().replace(
        &format!("  binary: {NGINX}\n"),
        &format!("  binary: {NGINX}\n  reload: [\"{}\"]\n", path.display()),
    );
    assert!(config.contains(name), "{config}");
    let remote = support::Remote::new();
    remote.write(
        "nginx/api.yaml",
        &format!("server_names: [{DOMAIN}]\nupstream: 127.0.0.1:{port}\ntls: letsencrypt\n"),
    );
    remote.commit("the api site");
    let host = support::Host::new(&remote, &config);
    (remote, host)
}

/// nginx takes a reload when its master handles the signal, which can be after the reload
/// command returned: made certain here by a reload script that signals nginx 5 s later. certbot
/// must not run before nginx serves the ACME vhost (its challenge would be answered by the old
/// config, 404, and the failed validation count against Let's Encrypt's limits): gitmoor waits
/// until nginx serves a probe file of the webroot for the site's name, then certbot succeeds.
#[test]
fn certbot_waits_until_nginx_has_taken_the_acme_vhost() {
    let mut w = World::new();
    w.start_nginx();
    let d = w.nginx_dir();
    let late = format!(
        "#!/bin/sh\n( sleep 5; exec {NGINX} -p {dd} -c {dd}/nginx.conf -e {dd}/logs/error.log -s reload ) >/dev/null 2>&1 &\n",
        dd = d.display()
    );
    let (_remote, host) = api_site_reloaded_by(&w, "late-reload", &late);
    let out = host.gitmoor(&["apply"]);
    let text = support::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());
    w.wait_status(DOMAIN, 301);
    assert!(w.https_body().contains(&format!("host: {DOMAIN}")));
    let left: Vec<_> = std::fs::read_dir(w.webroot().join(".well-known/acme-challenge"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("gitmoor-probe-"))
        .collect();
    assert!(left.is_empty(), "probe files left in the webroot: {left:?}");
}

/// A reload that nginx never takes (a reload command that does nothing): certbot is never run,
/// so no failed validation counts against the name; the apply fails saying what nginx did not
/// serve, and the site's vhost is gone again (it was new).
#[test]
fn certbot_is_not_run_when_nginx_never_serves_the_acme_vhost() {
    let mut w = World::new();
    w.start_nginx();
    let (_remote, host) = api_site_reloaded_by(&w, "idle-reload", "#!/bin/sh\nexit 0\n");
    // The probe waits as long as a reload may take: 3 s here, not the default 30.
    host.edit_config(
        &format!("  binary: {NGINX}\n"),
        &format!("  binary: {NGINX}\n  test_timeout_secs: 3\n"),
    );
    let out = host.gitmoor(&["apply"]);
    let text = support::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "nginx did not serve the ACME webroot for {DOMAIN}"
        )) && text.contains("certbot was not run"),
        "{text}"
    );
    assert!(w.certbot_calls().is_empty(), "{:?}", w.certbot_calls());
    assert!(
        !w.sites_dir().join("api.conf").exists(),
        "the new site's vhost stayed"
    );
}

/// One plain HTTP request for `host` on `port`: (status, its `Location` header).
fn redirect_of(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let location = resp
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    Some((status, location))
}

/// A compose stack of two services: `worker` (busybox httpd, unpublished) and, with
/// `backend_port`, `backend` (busybox httpd answering "backend <tag>" on 127.0.0.1:<port>).
fn two_service_stack(backend_port: Option<u16>) -> String {
    let mut s = String::from(
        r#"services:
  worker:
    image: example-busybox:1
    init: true
    command: ["sh", "-c", "mkdir -p /www && echo worker > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#,
    );
    if let Some(port) = backend_port {
        s.push_str(&format!(
            r#"  backend:
    image: example-busybox:1
    init: true
    command: ["sh", "-c", "mkdir -p /www && echo backend in its container > /www/index.html && exec httpd -f -p 3000 -h /www"]
    ports: ["127.0.0.1:{port}:3000"]
"#
        ));
    }
    s
}

/// The issue's proof through the binary: one commit adds a compose service and a `tls:
/// letsencrypt` site whose upstream names it; `gitmoor apply` starts the container on the real
/// dockerd, installs the HTTP vhost, certbot gets the certificate from Pebble through it, the
/// TLS vhost goes in, and `curl --cacert <Pebble root> --resolve` reaches the container over
/// HTTPS while plain HTTP redirects. The neighbours stay as they were: the stack's other service
/// keeps its container, the other site's vhost is not rewritten.
#[test]
fn a_site_whose_upstream_names_a_compose_service_goes_live_over_https_with_its_container() {
    use support::{container_id, output_text, unique, Host, Remote, StackGuard};
    let mut w = World::new();
    w.start_nginx();
    let stack = unique("le");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());

    // Before: the stack with its worker only, and a neighbour site on plain HTTP.
    let neighbour_port = backend("the neighbour\n");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &two_service_stack(None),
    );
    remote.write(
        "nginx/other.yaml",
        &format!(
            "server_names: [other.example.test]\nupstream: 127.0.0.1:{neighbour_port}\ntls: off\n"
        ),
    );
    remote.commit("the worker and the neighbour site");
    host.apply_ok();
    let worker = container_id(&stack, "worker");
    assert!(!worker.is_empty());
    let other = w.sites_dir().join("other.conf");
    let other_before = std::fs::read_to_string(&other).unwrap();
    let other_mtime = std::fs::metadata(&other).unwrap().modified().unwrap();
    w.wait_status("other.example.test", 200);

    // One commit: the backend service, and the site naming it.
    let port = support::free_port();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &two_service_stack(Some(port)),
    );
    remote.write(
        "nginx/api.yaml",
        &format!(
            "server_names: [{DOMAIN}]\nupstream: {{stack: {stack}, service: backend, port: 3000}}\ntls: letsencrypt\n"
        ),
    );
    remote.commit("the backend, over HTTPS");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains("install-site api: new site from nginx/api.yaml"),
        "{plan}"
    );
    assert!(!plan.contains("site other"), "{plan}");

    let text = host.apply_ok();
    let calls = w.certbot_calls();
    assert_eq!(calls.len(), 1, "one certonly: {calls:?}\n{text}");
    assert!(calls[0].starts_with("certonly --webroot"), "{calls:?}");
    let vhost = std::fs::read_to_string(w.sites_dir().join("api.conf")).unwrap();
    assert!(
        vhost.contains(&format!("proxy_pass http://127.0.0.1:{port};")),
        "the site proxies to the port the service publishes:\n{vhost}"
    );
    let backend = container_id(&stack, "backend");
    assert!(!backend.is_empty(), "{text}");
    let state = host.state_json();
    assert_eq!(state["units"]["site/api"]["result"], "success", "{state:#}");
    assert_eq!(
        state["units"][format!("stack/{stack}")]["result"],
        "success",
        "{state:#}"
    );

    // HTTPS with Pebble's root only, the name resolved to loopback: the container answers.
    w.wait_status(DOMAIN, 301);
    assert_eq!(w.https_body(), "backend in its container\n");
    // Plain HTTP redirects to the same URL over HTTPS.
    let (status, location) = redirect_of(w.http_port, DOMAIN, "/users?x=1").unwrap();
    assert!(matches!(status, 301 | 308), "{status}");
    assert_eq!(
        location,
        format!("https://{DOMAIN}:{}/users?x=1", w.https_port)
    );

    // The neighbours: the worker keeps its container, the other vhost was not rewritten, and it
    // still answers.
    assert_eq!(
        container_id(&stack, "worker"),
        worker,
        "the worker is untouched"
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), other_before);
    assert_eq!(
        std::fs::metadata(&other).unwrap().modified().unwrap(),
        other_mtime,
        "other.conf was not rewritten"
    );
    assert_eq!(
        http_get(w.http_port, "other.example.test", "/").unwrap(),
        (200, "the neighbour\n".to_string())
    );
    let files: Vec<String> = std::fs::read_dir(w.sites_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(files, ["api.conf", "other.conf"]);

    // Nothing left to do.
    let text = host.apply_ok();
    assert!(text.contains("no changes"), "{text}");
    assert_eq!(w.certbot_calls().len(), 1);
}

/// gitmoor's own renewal, through the binary: Pebble issues 90-second certificates (Let's
/// Encrypt's shortest last 6 days; the rule is the same, scaled). Just obtained, one is not due
/// (`renew_days: 30` is longer than its whole life, but a certificate is due only once under a
/// third of its lifetime is left, as certbot has it), and the next apply does nothing. Once
/// under a third is left, `gitmoor apply` runs `certbot renew` for that one lineage and reloads
/// nginx, which then serves a new certificate (another serial), while the site's vhost file is
/// left exactly as it was; and the renewed certificate is not due again at the next apply.
#[test]
fn a_certificate_within_renew_days_is_renewed_by_the_reconcile_and_served_after_a_reload() {
    use support::{output_text, Host, Remote};
    let mut w = World::with_validity(Some(SHORT_LIFETIME));
    w.start_nginx();
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    let port = backend("renewed backend\n");
    remote.write(
        "nginx/api.yaml",
        &format!("server_names: [{DOMAIN}]\nupstream: 127.0.0.1:{port}\ntls: letsencrypt\n"),
    );
    remote.commit("the api site");
    host.apply_ok();
    w.wait_status(DOMAIN, 301);
    assert_eq!(w.https_body(), "renewed backend\n");
    let first = w.served_serial();
    let vhost = w.sites_dir().join("api.conf");
    let vhost_before = std::fs::read(&vhost).unwrap();
    let vhost_mtime = std::fs::metadata(&vhost).unwrap().modified().unwrap();
    let le = w.letsencrypt();
    let expiry = observed(observe_cert(&le.config_dir, DOMAIN))
        .not_after
        .unwrap();
    let text = host.apply_ok();
    assert!(text.contains("no changes"), "not due yet: {text}");
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());

    wait_until_due(&w, DOMAIN);
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains(&format!(
            "renew-certificate api: the certificate for {DOMAIN} is due for renewal"
        )),
        "{plan}"
    );
    let text = host.apply_ok();
    let calls = w.certbot_calls();
    assert_eq!(calls.len(), 2, "{calls:?}\n{text}");
    assert!(
        calls[1].starts_with(&format!(
            "renew --cert-name {DOMAIN} --force-renewal --webroot --webroot-map {{\"{DOMAIN}\":\"{}\"}}",
            w.webroot().display()
        )),
        "certbot renew for that one lineage, through gitmoor's webroot: {calls:?}"
    );
    // nginx reloaded: it presents the new certificate (a reload takes a moment to reach the
    // workers; without one the old certificate would be served forever).
    let mut second = w.served_serial();
    let deadline = Instant::now() + Duration::from_secs(10);
    while second == first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        second = w.served_serial();
    }
    assert_ne!(first, second, "the served certificate changed");
    w.settle();
    let on_disk = observed(observe_cert(&le.config_dir, DOMAIN));
    assert!(on_disk.not_after.unwrap() >= expiry, "{on_disk:?}");
    assert_eq!(w.https_body(), "renewed backend\n");
    assert_eq!(
        std::fs::read(&vhost).unwrap(),
        vhost_before,
        "vhost unchanged"
    );
    assert_eq!(
        std::fs::metadata(&vhost).unwrap().modified().unwrap(),
        vhost_mtime,
        "the vhost was not rewritten"
    );
    let state = host.state_json();
    assert_eq!(state["units"]["site/api"]["result"], "success", "{state:#}");
    // The renewed certificate has its whole life ahead: not due, no certbot.
    let text = host.apply_ok();
    assert!(
        text.contains("no changes"),
        "renewed, not due again: {text}"
    );
    assert_eq!(w.certbot_calls().len(), 2, "{:?}", w.certbot_calls());
}

/// The lifetime of the certificates Pebble issues in the renewal tests: long enough for an
/// obtain and an apply while fresh, short enough to wait until a third is left.
const SHORT_LIFETIME: u64 = 90;

/// Sleeps until the certificate of `name` has less than a third of its lifetime left (plus a
/// second), where gitmoor's rule makes it due; fails if it is not a short-lived one.
fn wait_until_due(w: &World, name: &str) {
    let c = observed(observe_cert(&w.letsencrypt().config_dir, name));
    let (start, end) = (c.not_before.unwrap(), c.not_after.unwrap());
    assert!(
        end - start <= SHORT_LIFETIME as i64 + 60,
        "Pebble issued a short-lived certificate: {c:?}"
    );
    let due_at = end - (end - start) / 3 + 1;
    let wait = due_at - now();
    assert!(wait < 2 * SHORT_LIFETIME as i64, "{c:?}");
    if wait > 0 {
        std::thread::sleep(Duration::from_secs(wait as u64));
    }
    let c = observed(observe_cert(&w.letsencrypt().config_dir, name));
    assert!(
        c.due_for_renewal(now(), 30) && c.not_after.unwrap() > now() + 10,
        "{c:?}"
    );
}

/// Let's Encrypt allows 5 failed validations per name and hour. A name whose validation keeps
/// failing (its AAAA record points at `::1`, where nginx does not listen: Pebble asks AAAA first
/// and gets a refused connection, while the preflight, which accepts `::1` here, lets it through)
/// is asked three times by three applies; the fourth apply runs no certbot and fails the site
/// saying how many failures, for which name, and when the next try is. A commit that changes the
/// site's names asks at once, and its success clears the count.
#[test]
fn a_name_that_keeps_failing_validation_is_not_asked_again_after_three_failures_in_the_hour() {
    use support::{output_text, Host, Remote};
    let mut w = World::new();
    w.start_nginx();
    let flaky = "flaky.example.test";
    w.point_aaaa(flaky, "::1");
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    host.edit_config(
        "  host_addresses: [127.0.0.1]\n",
        "  host_addresses: [127.0.0.1, \"::1\"]\n",
    );
    let port = backend("flaky backend\n");
    let site = |names: &str| {
        format!("server_names: [{names}]\nupstream: 127.0.0.1:{port}\ntls: letsencrypt\n")
    };
    remote.write("nginx/flaky.yaml", &site(flaky));
    remote.commit("a site whose validation fails");

    for n in 1..=3 {
        let out = host.gitmoor(&["apply"]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains(&format!(
                "site flaky: certbot could not obtain a certificate for {flaky}"
            )),
            "apply {n}: {text}"
        );
        assert_eq!(
            w.certbot_calls().len(),
            n,
            "apply {n}: {:?}",
            w.certbot_calls()
        );
    }
    let state = host.state_json();
    assert_eq!(
        state["cert_failures_by_name"][flaky]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{state:#}"
    );

    let plan = output_text(&host.gitmoor(&["plan"]));
    let why = format!("certbot failed 3 times for {flaky} in the last hour; next try after ");
    assert!(
        plan.contains(&format!("hold-site flaky: site flaky: {why}")),
        "{plan}"
    );
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&why) && text.contains("(Let's Encrypt allows 5 failures per name per hour)"),
        "{text}"
    );
    assert_eq!(w.certbot_calls().len(), 3, "the 4th apply ran no certbot");
    let state = host.state_json();
    let unit = &state["units"]["site/flaky"];
    assert_eq!(unit["result"], "failed", "{state:#}");
    assert!(
        unit["error"].as_str().is_some_and(|e| e.contains(&why)),
        "{state:#}"
    );

    // The DNS is fixed, and the commit adds a name and renames the site's file: Let's Encrypt
    // still counts the failures of flaky.example.test, so gitmoor still waits.
    w.clear_aaaa(flaky);
    remote.remove("nginx/flaky.yaml");
    remote.write("nginx/flaky2.yaml", &site(&format!("{flaky}, www.{flaky}")));
    remote.commit("the site gains a name and another file name");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success() && text.contains(&why), "{text}");
    assert_eq!(w.certbot_calls().len(), 3, "still no certbot run");

    // An hour later (the recorded failures made an hour older), it asks, and gets it.
    let state_file = host.state.join("state.json");
    let mut state = host.state_json();
    for t in state["cert_failures_by_name"][flaky]
        .as_array_mut()
        .unwrap()
    {
        *t = (t.as_i64().unwrap() - 3_600).into();
    }
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    host.apply_ok();
    assert_eq!(w.certbot_calls().len(), 4, "{:?}", w.certbot_calls());
    let state = host.state_json();
    assert!(state.get("cert_failures_by_name").is_none(), "{state:#}");
    assert_eq!(
        state["units"]["site/flaky2"]["result"], "success",
        "{state:#}"
    );
}

/// A site that serves plain HTTP is switched to `tls: letsencrypt`. While its DNS points
/// elsewhere the preflight refuses before anything changes: no certbot, the vhost file is the
/// same, the backend still answers. When certbot runs and fails (the AAAA record points where
/// nothing listens), the previous vhost is put back and the backend answers again. Once the
/// DNS is right the next apply gets the certificate.
#[test]
fn a_serving_site_switched_to_lets_encrypt_keeps_serving_while_no_certificate_can_be_had() {
    use support::{output_text, Host, Remote};
    let mut w = World::new();
    w.start_nginx();
    let name = "switch.example.test";
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    host.edit_config(
        "  host_addresses: [127.0.0.1]\n",
        "  host_addresses: [127.0.0.1, \"::1\"]\n",
    );
    let port = backend("plain backend\n");
    let site =
        |tls: &str| format!("server_names: [{name}]\nupstream: 127.0.0.1:{port}\ntls: {tls}\n");
    remote.write("nginx/switch.yaml", &site("off"));
    remote.commit("a plain HTTP site");
    host.apply_ok();
    w.wait_status(name, 200);
    let vhost = w.sites_dir().join("switch.conf");
    let before = std::fs::read_to_string(&vhost).unwrap();

    w.point(name, "10.9.9.9");
    remote.write("nginx/switch.yaml", &site("letsencrypt"));
    remote.commit("HTTPS for the site");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("site switch: no certificate was asked for"),
        "{text}"
    );
    assert!(w.certbot_calls().is_empty(), "{:?}", w.certbot_calls());
    assert_eq!(std::fs::read_to_string(&vhost).unwrap(), before);
    assert_eq!(
        http_get(w.http_port, name, "/").unwrap(),
        (200, "plain backend\n".to_string())
    );

    w.clear_a(name);
    w.point_aaaa(name, "::1");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("certbot could not obtain a certificate")
            && text.contains("the site's previous vhost is back"),
        "{text}"
    );
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());
    assert_eq!(std::fs::read_to_string(&vhost).unwrap(), before);
    w.wait_status(name, 200);
    assert_eq!(
        http_get(w.http_port, name, "/").unwrap(),
        (200, "plain backend\n".to_string())
    );

    w.clear_aaaa(name);
    host.apply_ok();
    assert_eq!(w.certbot_calls().len(), 2, "{:?}", w.certbot_calls());
    w.wait_status(name, 301);
}

/// certbot obtains the certificate, but nginx refuses the TLS vhost (here: the key certbot
/// wrote is spoilt right after, so `nginx -t` cannot load it). The ACME-only vhost, which
/// serves nothing but the challenge, does not stay: the site's previous plain vhost is put back
/// and its backend answers again.
#[test]
fn a_tls_vhost_nginx_refuses_after_certbot_succeeded_puts_the_previous_vhost_back() {
    use support::{output_text, Host, Remote};
    let mut w = World::new();
    w.start_nginx();
    let name = "refused.example.test";
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    let port = backend("plain backend\n");
    let site =
        |tls: &str| format!("server_names: [{name}]\nupstream: 127.0.0.1:{port}\ntls: {tls}\n");
    remote.write("nginx/refused.yaml", &site("off"));
    remote.commit("a plain HTTP site");
    host.apply_ok();
    w.wait_status(name, 200);
    let vhost = w.sites_dir().join("refused.conf");
    let before = std::fs::read_to_string(&vhost).unwrap();

    // certbot as before, then the lineage's key (through live/'s link) is spoilt.
    let le = w.letsencrypt();
    let key = le.config_dir.join("live").join(name).join("privkey.pem");
    std::fs::write(
        le.certbot.as_ref().unwrap(),
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n/usr/bin/certbot \"$@\" || exit $?\n\
             printf 'not a key\\n' > {}\n",
            w.calls_file().display(),
            key.display()
        ),
    )
    .unwrap();
    remote.write("nginx/refused.yaml", &site("letsencrypt"));
    remote.commit("HTTPS for the site");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());
    assert!(
        text.contains("the certificate was obtained, but")
            && text.contains("the site's previous vhost is back"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&vhost).unwrap(), before);
    w.wait_status(name, 200);
    assert_eq!(
        http_get(w.http_port, name, "/").unwrap(),
        (200, "plain backend\n".to_string())
    );
    let state = host.state_json();
    assert_eq!(
        state["units"]["site/refused"]["result"], "failed",
        "{state:#}"
    );
    // nginx reloaded during the apply, but no vhost of gitmoor's serves that lineage: not
    // recorded as loaded, so a renewal while the head is invalid would not renew it.
    assert!(
        state
            .get("certs_loaded")
            .and_then(|c| c.get(name))
            .is_none(),
        "{state:#}"
    );
}

/// Waits up to 10 s for nginx to present a certificate other than `old` (a reload takes a
/// moment to reach the workers); the serial it presents then.
fn served_serial_other_than(w: &World, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = w.served_serial();
    while now == old && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = w.served_serial();
    }
    now
}

/// nginx reads certificates only at a reload. A name added to a site whose certificate serves:
/// one apply obtains a certificate covering both names and nginx presents it (the vhost's
/// certificate paths do not change, so installing it alone would not reload). Then a renewal
/// done outside gitmoor, as Debian's certbot.timer does it: the next plan sees a certificate on
/// disk that nginx did not load and reloads, and nginx presents the renewed one.
#[test]
fn a_certificate_obtained_again_or_renewed_outside_gitmoor_is_served_after_one_apply() {
    use support::{output_text, Host, Remote};
    let mut w = World::new();
    w.start_nginx();
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    let port = backend("named backend\n");
    let site = |names: &str| {
        format!("server_names: [{names}]\nupstream: 127.0.0.1:{port}\ntls: letsencrypt\n")
    };
    remote.write("nginx/api.yaml", &site(DOMAIN));
    remote.commit("the api site");
    host.apply_ok();
    w.wait_status(DOMAIN, 301);
    let first = w.served_serial();

    remote.write("nginx/api.yaml", &site(&format!("{DOMAIN}, www.{DOMAIN}")));
    remote.commit("the site gains a name");
    let text = host.apply_ok();
    assert_eq!(
        w.certbot_calls().len(),
        2,
        "{:?}\n{text}",
        w.certbot_calls()
    );
    let le = w.letsencrypt();
    let on_disk = observed(observe_cert(&le.config_dir, DOMAIN));
    assert!(
        on_disk.names.contains(&format!("www.{DOMAIN}")),
        "{on_disk:?}"
    );
    let second = served_serial_other_than(&w, &first);
    assert_ne!(
        first, second,
        "nginx serves the certificate with the new name"
    );
    w.settle();
    let text = host.apply_ok();
    assert!(text.contains("no changes"), "{text}");

    // certbot renews by itself (its timer), with the folders gitmoor uses.
    renew_outside_gitmoor(&w);
    assert_eq!(w.served_serial(), second, "not loaded by nginx yet");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains(&format!(
            "reload-site api: the certificate for {DOMAIN} on disk is not the one nginx loaded"
        )),
        "{plan}"
    );
    host.apply_ok();
    let third = served_serial_other_than(&w, &second);
    assert_ne!(second, third, "nginx serves the renewed certificate");
    w.settle();
    let text = host.apply_ok();
    assert!(text.contains("no changes"), "{text}");
}

/// A typo left on the branch stops the plan (the head is invalid, and is not retried for the
/// same inputs), but not the renewals: the last good commit's certificate, once due, is renewed
/// by the reconcile that finds the head invalid, nginx reloads and serves the new one, and the
/// reconcile still reports the head invalid.
#[test]
fn a_certificate_is_renewed_while_the_branch_head_is_invalid() {
    use support::{output_text, Host, Remote};
    let mut w = World::with_validity(Some(SHORT_LIFETIME));
    w.start_nginx();
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    let port = backend("still renewed\n");
    remote.write(
        "nginx/api.yaml",
        &format!("server_names: [{DOMAIN}]\nupstream: 127.0.0.1:{port}\ntls: letsencrypt\n"),
    );
    remote.commit("the api site");
    host.apply_ok();
    w.wait_status(DOMAIN, 301);
    let first = w.served_serial();

    remote.write(
        "nginx/api.yaml",
        &format!("server_names: [{DOMAIN}]\nupstreem: 127.0.0.1:{port}\ntls: letsencrypt\n"),
    );
    remote.commit("a typo");
    let out = host.gitmoor(&["apply"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert_eq!(w.certbot_calls().len(), 1, "nothing due yet");

    // Now the certificate is due (under a third of its life left).
    wait_until_due(&w, DOMAIN);
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "the head is still invalid: {text}");
    assert!(text.contains("upstreem"), "{text}");
    let calls = w.certbot_calls();
    assert_eq!(calls.len(), 2, "{calls:?}\n{text}");
    assert!(
        calls[1].starts_with(&format!(
            "renew --cert-name {DOMAIN} --force-renewal --webroot --webroot-map {{\"{DOMAIN}\":\"{}\"}}",
            w.webroot().display()
        )),
        "{calls:?}"
    );
    let second = served_serial_other_than(&w, &first);
    assert_ne!(first, second, "nginx serves the renewed certificate");
    let state = host.state_json();
    assert_eq!(state["last_attempt"]["result"], "invalid", "{state:#}");
    // The renewed certificate is not due again: the next reconcile runs no certbot.
    let out = host.gitmoor(&["apply"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert_eq!(w.certbot_calls().len(), 2, "{:?}", w.certbot_calls());
}

/// certbot renews `DOMAIN` by itself, as its timer would, with the folders gitmoor uses (not
/// through the recording wrapper: gitmoor did not run it).
fn renew_outside_gitmoor(w: &World) {
    let le = w.letsencrypt();
    let out = Command::new("/usr/bin/certbot")
        .args(["renew", "--cert-name", DOMAIN, "--force-renewal"])
        .args(["--non-interactive", "--no-random-sleep-on-renew"])
        .arg("--config-dir")
        .arg(&le.config_dir)
        .arg("--work-dir")
        .arg(&le.work_dir)
        .arg("--logs-dir")
        .arg(&le.logs_dir)
        .env("REQUESTS_CA_BUNDLE", w.api_ca())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One reconcile as the daemon's poll makes it (no retry of inputs that were invalid: the
/// skipped path), in process, on `host`'s config.
fn polled_reconcile(host: &support::Host) -> gitmoor::reconcile::Outcome {
    let cfg = gitmoor::config::Config::load(&host.config).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let rec = gitmoor::reconcile::Reconciler::new(cfg, true)
            .await
            .unwrap();
        rec.reconcile(gitmoor::reconcile::Mode::Apply, false)
            .await
            .unwrap()
    })
}

/// While the head is invalid, a certificate certbot.timer renewed (gitmoor renewed nothing) is
/// loaded by the daemon's reconcile, which reloads nginx as the plan would; a reload that fails
/// is in that reconcile's error (not only in the log), with the host's secret values taken out
/// of nginx's message.
#[test]
fn while_the_head_is_invalid_an_outside_renewal_is_reloaded_and_a_failed_reload_is_reported() {
    use gitmoor::reconcile::Verdict;
    use support::{output_text, Host, Remote};
    let mut w = World::new();
    w.start_nginx();
    let remote = Remote::new();
    let host = Host::new(&remote, &w.gitmoor_config());
    let port = backend("outside\n");
    let site = |key: &str| {
        format!("server_names: [{DOMAIN}]\n{key}: 127.0.0.1:{port}\ntls: letsencrypt\n")
    };
    remote.write("nginx/api.yaml", &site("upstream"));
    remote.commit("the api site");
    host.apply_ok();
    w.wait_status(DOMAIN, 301);
    let first = w.served_serial();
    // A host secret whose value is part of nginx's paths (the secrets dir is part of the
    // inputs: written before the invalid apply, so the polls after it skip the same inputs).
    let secret = w.path().file_name().unwrap().to_str().unwrap().to_string();
    std::fs::write(host.secrets.join("web.env"), format!("TOKEN={secret}\n")).unwrap();
    remote.write("nginx/api.yaml", &site("upstreem"));
    remote.commit("a typo");
    let out = host.gitmoor(&["apply"]);
    assert!(!out.status.success(), "{}", output_text(&out));

    renew_outside_gitmoor(&w);
    // nginx's pid file is away: the reload fails, and nginx's message names that path.
    let pid = w.nginx_dir().join("nginx.pid");
    let aside = w.nginx_dir().join("nginx.pid.aside");
    std::fs::rename(&pid, &aside).unwrap();
    let o = polled_reconcile(&host);
    assert_eq!(o.verdict, Verdict::Skipped, "{o:?}");
    let error = o.error.unwrap_or_default();
    assert!(
        error.contains("upstreem") && error.contains("nginx did not reload"),
        "{error}"
    );
    assert!(!error.contains(&secret) && error.contains("***"), "{error}");
    assert_eq!(w.served_serial(), first);

    std::fs::rename(&aside, &pid).unwrap();
    let o = polled_reconcile(&host);
    assert_eq!(o.verdict, Verdict::Skipped, "{o:?}");
    let error = o.error.unwrap_or_default();
    assert!(!error.contains("did not reload"), "{error}");
    let second = served_serial_other_than(&w, &first);
    assert_ne!(
        first, second,
        "nginx serves the certificate renewed outside gitmoor"
    );
    assert_eq!(w.certbot_calls().len(), 1, "{:?}", w.certbot_calls());
    // Loaded now: the next poll reloads nothing (and renews nothing).
    std::fs::rename(&pid, &aside).unwrap();
    let o = polled_reconcile(&host);
    std::fs::rename(&aside, &pid).unwrap();
    assert!(!o.error.unwrap_or_default().contains("did not reload"));
}
