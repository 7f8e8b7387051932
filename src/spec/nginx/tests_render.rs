//! The renderer: the exact text of seed-like sites, and real `nginx -t` accepting every variant.

use super::values::HostPath;
use super::*;
use crate::source::snapshot::Snapshot;
use crate::spec::limits::Limits;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The site of `nginx/<name>.yaml` holding `text` (upstreams given as addresses).
fn site(name: &str, text: &str) -> SiteSpec {
    let loaded = BTreeMap::new();
    let view = Stacks {
        loaded: &loaded,
        in_commit: BTreeSet::new(),
    };
    let file = format!("nginx/{name}.yaml");
    let (mut sites, f) = read_sites(
        &Snapshot::from_texts(&[(file.as_str(), text)]),
        &view,
        &Limits::default(),
    );
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    sites.remove(name).expect("the site")
}

fn text(s: &SiteSpec, tls: &RenderTls, host: &RenderHost) -> String {
    let SiteKind::Rendered(def) = &s.kind else {
        panic!("raw")
    };
    render(&s.name, &s.file, def, tls, host)
}

fn path(s: &str) -> HostPath {
    HostPath::parse(s).expect("path")
}

const SEED: &str = "server_names: [api.example.fr]\nupstream: 127.0.0.1:3000\ntls: letsencrypt\nclient_max_body_size: 10m\n";

fn acme_ready() -> RenderTls {
    RenderTls::AcmeReady {
        webroot: path("/var/lib/gitmoor/acme"),
        cert: path("/etc/letsencrypt/live/api.example.fr/fullchain.pem"),
        key: path("/etc/letsencrypt/live/api.example.fr/privkey.pem"),
    }
}

#[test]
fn the_seed_site_with_its_certificate() {
    let got = text(&site("api", SEED), &acme_ready(), &RenderHost::default());
    let want = "\
# managed by gitmoor from nginx/api.yaml; edits are overwritten

server {
    listen 80;
    listen [::]:80;
    server_name api.example.fr;

    location /.well-known/acme-challenge/ {
        root /var/lib/gitmoor/acme;
    }

    location / {
        return 301 https://$host$request_uri;
    }
}

server {
    listen 443 ssl;
    listen [::]:443 ssl;
    server_name api.example.fr;

    ssl_certificate /etc/letsencrypt/live/api.example.fr/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/api.example.fr/privkey.pem;
    ssl_protocols TLSv1.2 TLSv1.3;

    client_max_body_size 10m;

    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;

    location / {
        proxy_pass http://127.0.0.1:3000;
    }
}
";
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn the_seed_site_waiting_for_its_certificate() {
    let pending = RenderTls::AcmePending {
        webroot: path("/var/lib/gitmoor/acme"),
    };
    let host = RenderHost {
        ipv6: false,
        ..RenderHost::default()
    };
    let got = text(&site("api", SEED), &pending, &host);
    let want = "\
# managed by gitmoor from nginx/api.yaml; edits are overwritten

server {
    listen 80;
    server_name api.example.fr;

    location /.well-known/acme-challenge/ {
        root /var/lib/gitmoor/acme;
    }

    # waiting for the certificate: HTTPS only once it is there
    location / {
        return 503;
    }
}
";
    assert_eq!(got, want, "\n{got}");
    // Without the redirect the site is served on HTTP meanwhile (and after).
    let plain = site("api", &format!("{SEED}redirect_https: false\n"));
    let got = text(&plain, &pending, &host);
    assert!(got.contains("root /var/lib/gitmoor/acme;"), "{got}");
    assert!(got.contains("proxy_pass http://127.0.0.1:3000;"), "{got}");
    assert!(!got.contains("503") && !got.contains("ssl"), "{got}");
}

#[test]
fn every_option_and_other_ports() {
    let s = site(
        "app.example.org",
        "\
server_names: [app.example.org, www.example.org]
upstream: unix:/run/app/app.sock
tls: {cert: /etc/ssl/app.pem, key: /etc/ssl/private/app.key}
proxy_timeouts: {connect: 5s, read: 5m}
websocket: true
hsts: {max_age: 600, include_subdomains: true}
locations:
  - {path: /api/, upstream: \"[::1]:4000\"}
  - {path: /admin/, return: 404}
",
    );
    let host = RenderHost {
        http_port: 8080,
        https_port: 8443,
        ipv6: false,
        ..RenderHost::default()
    };
    let got = text(
        &s,
        &RenderTls::Files {
            cert: path("/etc/ssl/app.pem"),
            key: path("/etc/ssl/private/app.key"),
        },
        &host,
    );
    let want = "\
# managed by gitmoor from nginx/app.example.org.yaml; edits are overwritten

map $http_upgrade $gitmoor_upgrade_app_dexample_dorg {
    default upgrade;
    ''      close;
}

server {
    listen 8080;
    server_name app.example.org www.example.org;

    location / {
        return 301 https://$host:8443$request_uri;
    }
}

server {
    listen 8443 ssl;
    server_name app.example.org www.example.org;

    ssl_certificate /etc/ssl/app.pem;
    ssl_certificate_key /etc/ssl/private/app.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    add_header Strict-Transport-Security \"max-age=600; includeSubDomains\" always;

    proxy_connect_timeout 5s;
    proxy_read_timeout 5m;

    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $gitmoor_upgrade_app_dexample_dorg;

    location /api/ {
        proxy_pass http://[::1]:4000;
    }

    location /admin/ {
        return 404;
    }

    location / {
        proxy_pass http://unix:/run/app/app.sock:;
    }
}
";
    assert_eq!(got, want, "\n{got}");
    assert_eq!(
        got,
        text(
            &s,
            &RenderTls::Files {
                cert: path("/etc/ssl/app.pem"),
                key: path("/etc/ssl/private/app.key")
            },
            &host
        ),
        "deterministic"
    );
}

#[test]
fn a_gitmoor_site_publishes_the_hooks_and_guards_the_rest() {
    let s = site(
        "deploy",
        "server_names: deploy.example.org\ntls: off\ngitmoor:\n  status_allow: [192.0.2.10]\n  status_basic_auth_file: /etc/nginx/gitmoor.htpasswd\n",
    );
    let host = RenderHost {
        gitmoor_listen: "127.0.0.1:9191".parse().expect("addr"),
        ipv6: false,
        ..RenderHost::default()
    };
    let got = text(&s, &RenderTls::Off, &host);
    let want = "\
# managed by gitmoor from nginx/deploy.yaml; edits are overwritten

server {
    listen 80;
    server_name deploy.example.org;

    client_header_timeout 10s;
    client_body_timeout 10s;
    client_max_body_size 1m;

    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;

    # Public: the forges' webhook deliveries (an unsigned one does nothing).
    location /hooks/ {
        proxy_pass http://127.0.0.1:9191;
    }

    # Everything else (/, /status, /metrics, /health): the allowed addresses, or a password.
    location / {
        satisfy any;
        allow 192.0.2.10;
        deny all;
        auth_basic \"gitmoor\";
        auth_basic_user_file /etc/nginx/gitmoor.htpasswd;
        proxy_pass http://127.0.0.1:9191;
    }
}
";
    assert_eq!(got, want, "\n{got}");

    // Neither an allow-list nor a password: nobody reads the status; no hooks: nothing public.
    let closed = site(
        "deploy",
        "server_names: deploy.example.org\ntls: off\ngitmoor: {webhooks: false, upstream: 127.0.0.1:9000}\n",
    );
    let got = text(&closed, &RenderTls::Off, &host);
    assert!(
        !got.contains("/hooks/") && !got.contains("proxy_pass"),
        "{got}"
    );
    assert!(
        got.contains("    location / {\n        deny all;\n    }\n"),
        "{got}"
    );
    assert!(
        got.contains("# Everything (/, /status, /metrics, /health): nobody"),
        "{got}"
    );
}

#[test]
fn upgrade_variables_never_collide() {
    let names = ["a-b", "a.b", "a_b", "a_hb", "a__b", "ab"];
    let vars: BTreeSet<String> = names.iter().map(|n| render::upgrade_variable(n)).collect();
    assert_eq!(vars.len(), names.len(), "{vars:?}");
    for v in &vars {
        assert!(
            v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{v}"
        );
    }
}

/// `nginx -t` of a tiny main config that includes every rendered variant at once (so that the
/// sites also live together: maps, names, ports), each TLS state, with real certificate files.
/// Skipped (with a note) when nginx or openssl is missing.
#[test]
fn nginx_accepts_every_rendered_variant() {
    let nginx = Path::new("/usr/sbin/nginx");
    if !nginx.exists() {
        eprintln!("skipped: no {}", nginx.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let sites_dir = root.join("sites");
    std::fs::create_dir_all(&sites_dir).expect("mkdir");
    let cert = root.join("cert.pem");
    let key = root.join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=example.test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let have_certs = matches!(&made, Ok(o) if o.status.success());
    if !have_certs {
        eprintln!("no openssl: the TLS variants are skipped ({made:?})");
    }
    let p = |f: &Path| path(&f.display().to_string());
    let webroot = p(root);
    let mut tls_states = vec![
        ("off", RenderTls::Off),
        (
            "pending",
            RenderTls::AcmePending {
                webroot: webroot.clone(),
            },
        ),
    ];
    if have_certs {
        tls_states.push((
            "files",
            RenderTls::Files {
                cert: p(&cert),
                key: p(&key),
            },
        ));
        tls_states.push((
            "ready",
            RenderTls::AcmeReady {
                webroot,
                cert: p(&cert),
                key: p(&key),
            },
        ));
    }
    let files: &[(&str, &str)] = &[
        ("seed", SEED),
        ("plain", "server_names: [a.example.test, \"*.b.example.test\"]\nupstream: \"[::1]:3000\"\ntls: off\nwebsocket: true\nlocations:\n  - {path: /x/, upstream: unix:/run/x.sock}\n  - {path: /y/, return: 444}\n"),
        ("full.example.test", "server_names: full.example.test\nupstream: 127.0.0.1:1\ntls: letsencrypt\nredirect_https: false\nwebsocket: true\nhsts: true\nclient_max_body_size: 1g\nproxy_timeouts: {connect: 5s, read: 1h, send: 500ms}\n"),
        ("deploy", "server_names: deploy.example.test\ntls: letsencrypt\ngitmoor: {status_allow: [10.0.0.0/8, \"::1\"], status_basic_auth_file: /etc/nginx/gitmoor.htpasswd}\n"),
        ("closed", "server_names: closed.example.test\ntls: letsencrypt\ngitmoor: {webhooks: false}\n"),
        ("allow", "server_names: allow.example.test\ntls: letsencrypt\nwebsocket: true\ngitmoor: {status_allow: [192.0.2.1]}\n"),
    ];
    let mut count = 0;
    for (state, tls) in &tls_states {
        for (name, yaml) in files {
            // The server names are made unique per TLS state, as one host would have them.
            let yaml = yaml
                .replace("example.test", &format!("{state}.example.test"))
                .replace("api.example.fr", &format!("api.{state}.example.test"));
            let s = site(name, &yaml);
            let conf = text(&s, tls, &RenderHost::default());
            // The websocket map is named after the site: a distinct name per state.
            let conf = conf.replace("$gitmoor_upgrade_", &format!("$gitmoor_upgrade_{state}_"));
            std::fs::write(sites_dir.join(format!("{state}-{name}.conf")), conf).expect("write");
            count += 1;
        }
    }
    let main = format!(
        "pid {r}/nginx.pid;\nerror_log {r}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {r}/tmp;\n    proxy_temp_path {r}/tmp;\n    fastcgi_temp_path {r}/tmp;\n    uwsgi_temp_path {r}/tmp;\n    scgi_temp_path {r}/tmp;\n    include {r}/sites/*.conf;\n}}\n",
        r = root.display()
    );
    std::fs::write(root.join("nginx.conf"), main).expect("write");
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(root)
        .arg("-e")
        .arg(root.join("error.log"))
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .output()
        .expect("run nginx -t");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nginx -t refused the rendered sites:\n{said}"
    );
    assert!(said.contains("syntax is ok"), "{said}");
    assert!(!said.contains("[warn]"), "{said}");
    assert_eq!(count, tls_states.len() * files.len());

    // The test can fail: a site whose text Nginx refuses is reported.
    std::fs::write(
        sites_dir.join("zz-broken.conf"),
        "server { listen 80; bogus_directive on; }\n",
    )
    .expect("write");
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(root)
        .arg("-e")
        .arg(root.join("error.log"))
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .output()
        .expect("run nginx -t");
    assert!(!out.status.success());
}

#[test]
fn a_raw_site_is_installed_as_written() {
    let raw = SiteSpec {
        name: "raw".into(),
        file: "nginx/raw.conf".into(),
        kind: SiteKind::Raw("server { listen 80; }\n".into()),
    };
    assert_eq!(
        site_text(&raw, &RenderTls::Off, &RenderHost::default()),
        "server { listen 80; }\n"
    );
    let seed = site("api", SEED);
    assert_eq!(
        site_text(&seed, &acme_ready(), &RenderHost::default()),
        text(&seed, &acme_ready(), &RenderHost::default())
    );
}
