//! The reader: site files → `SiteSpec`s, or errors naming file, line, key and fix.

use super::*;
use crate::source::snapshot::Snapshot;
use crate::spec::limits::Limits;
use crate::spec::model::{PortSpec, ServiceSpec, StackSpec};
use std::collections::{BTreeMap, BTreeSet};

/// `app/backend` publishing 3000 on loopback, `app/web` on every interface, `app/worker` nothing,
/// `app/random` on a port Docker picks; `broken` is in the commit but failed to load.
fn stacks() -> BTreeMap<String, StackSpec> {
    let port = |ip: &str, host: Option<u16>, c: u16| PortSpec {
        host_ip: ip.into(),
        host_port: host,
        container_port: c,
        protocol: "tcp".into(),
    };
    let svc = |ports: Vec<PortSpec>| ServiceSpec {
        image: "x".into(),
        ports,
        ..ServiceSpec::default()
    };
    let mut services = BTreeMap::new();
    services.insert(
        "backend".to_string(),
        svc(vec![port("127.0.0.1", Some(3000), 3000)]),
    );
    services.insert(
        "web".to_string(),
        svc(vec![port("", Some(8080), 80), port("::1", Some(8081), 81)]),
    );
    services.insert("worker".to_string(), svc(vec![]));
    services.insert(
        "random".to_string(),
        svc(vec![port("127.0.0.1", None, 5000)]),
    );
    let mut inactive = BTreeMap::new();
    inactive.insert("debug".to_string(), vec!["dev".to_string()]);
    let app = StackSpec {
        name: "app".into(),
        compose_file: "compose/app/compose.yaml".into(),
        services,
        inactive_services: inactive,
        ..StackSpec::default()
    };
    BTreeMap::from([("app".to_string(), app)])
}

fn read(files: &[(&str, &str)]) -> (BTreeMap<String, SiteSpec>, Vec<String>, Vec<String>) {
    let loaded = stacks();
    let view = Stacks {
        loaded: &loaded,
        in_commit: BTreeSet::from(["app".to_string(), "broken".to_string()]),
    };
    let (sites, f) = read_sites(&Snapshot::from_texts(files), &view, &Limits::default());
    let shown = |v: &[crate::spec::error::SpecError]| v.iter().map(|e| e.to_string()).collect();
    (sites, shown(&f.errors), shown(&f.warnings))
}

/// The errors of one site file `nginx/api.yaml`.
fn errors_of(text: &str) -> Vec<String> {
    let (sites, errors, _) = read(&[("nginx/api.yaml", text)]);
    assert!(errors.is_empty() || sites.is_empty(), "{errors:?}");
    errors
}

fn def(site: &SiteSpec) -> &SiteDef {
    match &site.kind {
        SiteKind::Rendered(d) => d,
        SiteKind::Raw(_) => panic!("raw"),
    }
}

const SEED: &str = "server_names: [api.example.fr]\nupstream: {stack: app, service: backend, port: 3000}\ntls: letsencrypt\nclient_max_body_size: 10m\n";

#[test]
fn the_seed_site_reads_and_its_upstream_resolves_to_the_loopback_port() {
    let (sites, errors, warnings) = read(&[("nginx/api.yaml", SEED), ("nginx/README.md", "notes")]);
    assert!(
        errors.is_empty() && warnings.is_empty(),
        "{errors:?} {warnings:?}"
    );
    let site = &sites["api"];
    assert_eq!(
        (site.name.as_str(), site.file.as_str()),
        ("api", "nginx/api.yaml")
    );
    let d = def(site);
    assert_eq!(d.server_names[0].as_str(), "api.example.fr");
    assert_eq!(d.tls, Tls::LetsEncrypt);
    assert!(d.redirect_https, "on by default with TLS");
    assert_eq!(
        d.client_max_body_size.as_ref().map(|s| s.as_str()),
        Some("10m")
    );
    assert!(!d.websocket && d.hsts.is_none());
    let Backend::App {
        upstream,
        locations,
    } = &d.backend
    else {
        panic!("{:?}", d.backend)
    };
    assert!(locations.is_empty());
    assert_eq!(upstream.address.to_string(), "127.0.0.1:3000");
    assert_eq!(upstream.describe(), "app/backend:3000 (127.0.0.1:3000)");
}

#[test]
fn every_key_reads() {
    let text = "\
server_names:
  - App.Example.org
  - www.example.org
upstream: 127.0.0.1:4000
tls: {cert: /etc/ssl/app.pem, key: /etc/ssl/private/app.key}
redirect_https: false
client_max_body_size: 0
proxy_timeouts: {connect: 5s, read: 5m, send: 60}
websocket: true
hsts: {max_age: 600, include_subdomains: true}
locations:
  - path: /api/
    upstream: {stack: app, service: web, port: 81}
  - path: /admin/
    return: 404
";
    let (sites, errors, _) = read(&[("nginx/app.example.org.yml", text)]);
    assert!(errors.is_empty(), "{errors:?}");
    let d = def(&sites["app.example.org"]);
    let names: Vec<&str> = d.server_names.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["app.example.org", "www.example.org"]);
    assert!(
        matches!(&d.tls, Tls::Files { cert, key } if cert.as_str() == "/etc/ssl/app.pem" && key.as_str() == "/etc/ssl/private/app.key")
    );
    assert!(!d.redirect_https && d.websocket);
    let t = &d.proxy_timeouts;
    let shown = |d: &Option<values::Duration>| d.as_ref().map(|d| d.to_string());
    assert_eq!(
        (shown(&t.connect), shown(&t.read), shown(&t.send)),
        (Some("5s".into()), Some("5m".into()), Some("60".into()))
    );
    assert_eq!(
        d.hsts,
        Some(Hsts {
            max_age_secs: 600,
            include_subdomains: true
        })
    );
    let Backend::App {
        upstream,
        locations,
    } = &d.backend
    else {
        panic!()
    };
    assert_eq!(upstream.describe(), "127.0.0.1:4000");
    assert_eq!(locations.len(), 2);
    assert_eq!(locations[0].path.as_str(), "/api/");
    assert!(
        matches!(&locations[0].action, LocationAction::Proxy(r) if r.address.to_string() == "[::1]:8081")
    );
    assert_eq!(locations[1].action, LocationAction::Return(404));
}

#[test]
fn hostile_values_are_refused_naming_file_line_key_and_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "server_names: [\"x; include /etc/shadow\"]\nupstream: 127.0.0.1:1\ntls: off\n",
            "nginx/api.yaml:1: server_names[0]: `x; include /etc/shadow`: not a DNS name: it holds a `;` (it would end the directive); write a DNS name such as api.example.org",
        ),
        (
            "server_names: [a.org]\nupstream: \"127.0.0.1:1}\\nserver{\"\ntls: off\n",
            "nginx/api.yaml:2: upstream: `127.0.0.1:1}\\nserver{`: not an address: it holds a brace (it would open or close a block); write host:port",
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\nclient_max_body_size: \"$host\"\n",
            "nginx/api.yaml:4: client_max_body_size: `$host`: not a size; write digits",
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: {cert: \"/etc/a\\\"b\", key: /k}\n",
            "nginx/api.yaml:3: tls.cert: `/etc/a\\\"b`: not a usable path: it holds a quote; write an absolute path",
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\nlocations:\n  - path: \"/a\\n}\"\n    return: 404\n",
            "nginx/api.yaml:5: locations[0].path: `/a\\n}`: not a URL path: it holds whitespace; write a path",
        ),
        (
            "server_names: a.org\ngitmoor: {status_allow: [\"10.0.0.0/8; allow all\"]}\ntls: off\n",
            "nginx/api.yaml:2: gitmoor.status_allow[0]: `10.0.0.0/8; allow all`: not an address: it holds a `;` (it would end the directive); write an IP address",
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\nproxy_timeouts: {read: \"5s;\"}\n",
            "nginx/api.yaml:4: proxy_timeouts.read: `5s;`: not a duration; write digits and a unit",
        ),
    ];
    for (text, want) in cases {
        let errors = errors_of(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(want),
            "want {want:?}\n got {:?}",
            errors[0]
        );
    }
}

#[test]
fn wrong_shapes_unknown_keys_and_missing_keys_are_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["nginx/api.yaml: the file is empty; write server_names:, upstream: and tls:"]),
        ("[a]\n", &["nginx/api.yaml:1: expected a mapping, found a list"]),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\nredirect_http: true\n",
            &["nginx/api.yaml:4: redirect_http: unknown key `redirect_http`; remove it; the keys here are server_names, upstream,"],
        ),
        (
            "upstream: 127.0.0.1:1\n",
            &[
                "nginx/api.yaml:1: server_names: missing; add server_names:",
                "nginx/api.yaml:1: tls: missing; add tls: letsencrypt",
            ],
        ),
        ("server_names: a.org\ntls: off\n", &["nginx/api.yaml:1: upstream: missing"]),
        (
            "server_names: []\nupstream: 127.0.0.1:1\ntls: off\n",
            &["nginx/api.yaml:1: server_names: empty"],
        ),
        (
            "server_names: [a.org, A.org]\nupstream: 127.0.0.1:1\ntls: off\n",
            &["nginx/api.yaml:1: server_names[1]: a.org is listed twice; keep one"],
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: false\n",
            &["nginx/api.yaml:3: tls: write `off`, not false"],
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: acme\n",
            &["nginx/api.yaml:3: tls: `acme` is not a TLS mode; write tls: letsencrypt"],
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\nredirect_https: true\nhsts: true\n",
            &[
                "nginx/api.yaml:4: redirect_https: a redirect to HTTPS needs TLS",
                "nginx/api.yaml:5: hsts: HSTS needs TLS",
            ],
        ),
        (
            "server_names: [\"*.a.org\"]\nupstream: 127.0.0.1:1\ntls: letsencrypt\n",
            &["nginx/api.yaml:1: server_names: *.a.org: Let's Encrypt certifies a wildcard only through DNS"],
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ngitmoor: {}\ntls: off\n",
            &["nginx/api.yaml:3: gitmoor: a site serves either an application (upstream:) or gitmoor"],
        ),
        (
            "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\nlocations:\n  - path: /a/\n  - path: /b/\n    upstream: 127.0.0.1:2\n    return: 404\n  - path: /c/\n    return: 301\n  - path: /\n    return: 404\n  - {path: /d/, return: 404}\n  - {path: /d/, return: 410}\n",
            &[
                "nginx/api.yaml:5: locations[0]: a location has either upstream: or return:",
                "nginx/api.yaml:6: locations[1]: a location has either upstream: or return:",
                "nginx/api.yaml:10: locations[2].return: 301 is not a status code gitmoor can return",
                "nginx/api.yaml:11: locations[3].path: `/` is the site's own upstream:",
                "nginx/api.yaml:14: locations[5].path: /d/ is listed twice",
            ],
        ),
        (
            "server_names: a.org\nupstream: {stack: app, service: \"a b\", prot: 1}\ntls: off\n",
            &[
                "nginx/api.yaml:2: upstream.prot: unknown key `prot`",
                "nginx/api.yaml:2: upstream.service: `a b` is not a service name",
                "nginx/api.yaml:2: upstream.port: missing",
            ],
        ),
        ("a: [1\n", &["nginx/api.yaml:1: invalid YAML"]),
    ];
    for (text, want) in cases {
        let errors = errors_of(text);
        assert_eq!(errors.len(), want.len(), "{text:?}: {errors:#?}");
        for (e, w) in errors.iter().zip(want.iter()) {
            assert!(e.starts_with(w), "{text:?}\nwant {w:?}\n got {e:?}");
        }
    }
}

#[test]
fn an_upstream_naming_a_service_must_publish_the_port_on_loopback() {
    let site =
        |up: &str, extra: &str| format!("server_names: a.org\nupstream: {up}\ntls: off\n{extra}");
    let cases: &[(&str, &str)] = &[
        (
            "{stack: nope, service: backend, port: 3000}",
            "nginx/api.yaml:2: upstream: no stack nope in this commit; add compose/nope/compose.yaml, or name an existing stack",
        ),
        (
            "{stack: app, service: nope, port: 3000}",
            "nginx/api.yaml:2: upstream: no service nope in compose/app/compose.yaml; name one of its services (backend, random, web, worker)",
        ),
        (
            "{stack: app, service: debug, port: 3000}",
            "nginx/api.yaml:2: upstream: service debug of compose/app/compose.yaml does not run: none of its profiles (dev) is enabled",
        ),
        (
            "{stack: app, service: worker, port: 3000}",
            "nginx/api.yaml:2: upstream: app/worker does not publish container port 3000 on the host; publish it on loopback in compose/app/compose.yaml: ports: [\"127.0.0.1:3000:3000\"]",
        ),
        (
            "{stack: app, service: backend, port: 3001}",
            "nginx/api.yaml:2: upstream: app/backend does not publish container port 3001 on the host",
        ),
        (
            "{stack: app, service: web, port: 80}",
            "nginx/api.yaml:2: upstream: app/web publishes port 80 on all interfaces, not on loopback: it is reachable without Nginx (and Docker's published ports bypass ufw); publish it on loopback in compose/app/compose.yaml: ports: [\"127.0.0.1:80:80\"], or set allow_public_upstream: true",
        ),
        (
            "{stack: app, service: random, port: 5000}",
            "nginx/api.yaml:2: upstream: app/random publishes container port 5000 on a host port Docker picks at each start",
        ),
    ];
    for (up, want) in cases {
        let errors = errors_of(&site(up, ""));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(want),
            "want {want:?}\n got {:?}",
            errors[0]
        );
    }
    // Said so: the public binding is used, through loopback.
    let (sites, errors, _) = read(&[(
        "nginx/api.yaml",
        &site(
            "{stack: app, service: web, port: 80}",
            "allow_public_upstream: true\n",
        ),
    )]);
    assert!(errors.is_empty(), "{errors:?}");
    let Backend::App { upstream, .. } = &def(&sites["api"]).backend else {
        panic!()
    };
    assert_eq!(upstream.address.to_string(), "127.0.0.1:8080");
    // A stack that failed to load: its own errors say what to fix; the site is only held back.
    let (sites, errors, _) = read(&[(
        "nginx/api.yaml",
        &site("{stack: broken, service: backend, port: 3000}", ""),
    )]);
    assert!(errors.is_empty() && sites.is_empty(), "{errors:?}");
}

#[test]
fn files_of_the_folder_and_checks_between_sites() {
    let ok = "server_names: [a.org, b.org]\nupstream: 127.0.0.1:1\ntls: off\n";
    let (sites, errors, warnings) = read(&[
        ("nginx/a.yaml", ok),
        (
            "nginx/b.yaml",
            "server_names: [c.org, B.ORG]\nupstream: 127.0.0.1:2\ntls: off\n",
        ),
        ("nginx/both.yaml", ok),
        ("nginx/both.conf", "server {}"),
        ("nginx/Bad Name.yaml", ok),
        ("nginx/raw.conf", "server {\n    listen 80;\n}\n"),
        ("nginx/empty.conf", " \n"),
        ("nginx/notes.txt", ""),
        ("nginx/.gitkeep", ""),
        ("nginx/.old.yaml", "not: [a site"),
        ("nginx/.api.yaml.swp", ""),
        ("nginx/site.json", "{}"),
        ("nginx/sub/x.yaml", ok),
    ]);
    assert_eq!(
        errors,
        vec![
            "nginx/Bad Name.yaml: site name `Bad Name` is not valid (lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64); rename the file, e.g. nginx/bad-name.yaml",
            "nginx/b.yaml: server_names: b.org is also a server name of nginx/a.yaml; one name belongs to one site: remove it from one of the files",
            "nginx/both.conf: the site both is given by 2 files: nginx/both.conf, nginx/both.yaml; keep one: <site>.yaml for gitmoor to render, or <site>.conf written by hand",
            "nginx/empty.conf: the file is empty; write a server { … } block, or remove the file",
        ]
    );
    assert_eq!(
        warnings,
        vec![
            "nginx/site.json: ignored: not a site (.yaml, .yml or .conf); rename it to <site>.yaml or <site>.conf, or move it out of nginx/",
            "nginx/sub/: ignored: sites are files directly in nginx/; move the site to nginx/<site>.yaml or nginx/<site>.conf",
        ]
    );
    assert_eq!(sites.keys().collect::<Vec<_>>(), ["a", "raw"]);
    assert_eq!(
        sites["raw"].kind,
        SiteKind::Raw("server {\n    listen 80;\n}\n".into())
    );
}

#[test]
fn raw_files_are_checked_for_size_and_encoding_only() {
    let big = format!("server {{}}\n{}", "#".repeat((300 << 10) - 10));
    let mut snap = Snapshot::from_texts(&[("nginx/big.conf", big.as_str())]);
    snap.files.insert(
        "nginx/latin1.conf".into(),
        crate::source::snapshot::FileEntry {
            data: b"server { # caf\xe9\n}\n".to_vec(),
            executable: false,
            symlink: false,
        },
    );
    snap.files.insert(
        "nginx/link.yaml".into(),
        crate::source::snapshot::FileEntry {
            data: b"/etc/passwd".to_vec(),
            executable: false,
            symlink: true,
        },
    );
    let loaded = BTreeMap::new();
    let view = Stacks {
        loaded: &loaded,
        in_commit: BTreeSet::new(),
    };
    let (sites, f) = read_sites(&snap, &view, &Limits::default());
    let errors: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        vec![
            "nginx/big.conf: the file is 300 KiB, over the limit of 256 KiB per site file; a site is a short file: move what is not a site out of nginx/",
            "nginx/latin1.conf: not UTF-8 text; save the file as UTF-8",
            "nginx/link.yaml: the site file is a symlink; commit the file itself",
        ]
    );
    assert!(sites.is_empty());
}

#[test]
fn a_gitmoor_site() {
    let text = "server_names: deploy.example.org\ntls: letsencrypt\ngitmoor:\n  status_allow: [192.0.2.10, \"2001:db8::/32\"]\n  status_basic_auth_file: /etc/nginx/gitmoor.htpasswd\n";
    let (sites, errors, _) = read(&[("nginx/deploy.yaml", text)]);
    assert!(errors.is_empty(), "{errors:?}");
    let Backend::Gitmoor(g) = &def(&sites["deploy"]).backend else {
        panic!()
    };
    assert!(g.webhooks && g.upstream.is_none());
    let allow: Vec<String> = g.status_allow.iter().map(|c| c.to_string()).collect();
    assert_eq!(allow, ["192.0.2.10", "2001:db8::/32"]);
    assert_eq!(
        g.status_basic_auth_file.as_ref().map(|p| p.as_str()),
        Some("/etc/nginx/gitmoor.htpasswd")
    );
    let errors = errors_of(
        "server_names: a.org\ntls: off\ngitmoor: {webhooks: false, upstream: 127.0.0.1:9191}\nlocations: []\nallow_public_upstream: true\n",
    );
    assert_eq!(
        errors,
        vec![
            "nginx/api.yaml:4: locations: a gitmoor site has its own locations (/hooks/ and /); remove locations",
            "nginx/api.yaml:5: allow_public_upstream: only for an upstream: of a stack's service; remove it",
        ]
    );
}

#[test]
fn a_hostile_file_name_is_shown_escaped() {
    let ok = "server_names: a.org\nupstream: 127.0.0.1:1\ntls: off\n";
    let (sites, errors, warnings) = read(&[
        ("nginx/a\nserver{.yaml", ok),
        ("nginx/b;c.conf", "server {}"),
        ("nginx/d\n.json", ""),
    ]);
    assert!(sites.is_empty());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("nginx/a\\nserver{.yaml: site name `a\\nserver{` is not valid"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("nginx/b;c.conf: site name `b;c` is not valid"),
        "{errors:?}"
    );
    assert!(
        errors[1].ends_with("rename the file, e.g. nginx/b-c.conf"),
        "{errors:?}"
    );
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("nginx/d\\n.json: ignored"),
        "{warnings:?}"
    );
    for line in errors.iter().chain(&warnings) {
        assert!(!line.contains('\n'), "{line:?}");
    }
}
