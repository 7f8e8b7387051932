//! `nginx/<site>.yaml` → `SiteDef`: every key of the file, each value through its type, each
//! upstream resolved against the commit's stacks.

use super::fields::{join, Fields};
use super::resolve::{Resolution, Stacks};
use super::site::{
    Backend, GitmoorExposure, Hsts, Location, LocationAction, ProxyTimeouts, Resolved, SiteDef,
    Tls, Upstream, HSTS_DEFAULT_MAX_AGE,
};
use super::values::{Cidr, DnsName, Duration, HostPath, Size, UpstreamAddr, UrlPath};
use crate::spec::error::SpecError;
use crate::spec::yaml::{Node, NodeValue};

/// The keys of a site file.
pub(super) const SITE_KEYS: &[&str] = &[
    "server_names",
    "upstream",
    "allow_public_upstream",
    "tls",
    "redirect_https",
    "client_max_body_size",
    "proxy_timeouts",
    "websocket",
    "hsts",
    "locations",
    "gitmoor",
];

/// Reads one site; None when the file has an error (each is in `f.errors`) or names a stack that
/// has errors of its own.
pub(super) fn site_def(f: &mut Fields, root: &Node, stacks: &Stacks) -> Option<SiteDef> {
    if root.is_null() {
        f.errors.push(
            SpecError::new(f.file, "the file is empty")
                .fix("write server_names:, upstream: and tls: (see docs/nginx.md)"),
        );
        return None;
    }
    let errors_before = f.errors.len();
    let entries = f.map(root, "", SITE_KEYS)?;
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let mut blocked = false;

    let server_names = match get("server_names") {
        Some(n) => server_names(f, n),
        None => {
            f.error(
                root,
                "server_names",
                "missing",
                "add server_names: [api.example.org], the names the site answers to",
            );
            Vec::new()
        }
    };
    let public_ok = get("allow_public_upstream")
        .and_then(|n| f.bool(n, "allow_public_upstream"))
        .unwrap_or(false);
    let mut resolve = |f: &mut Fields, node: &Node, key: &str| -> Option<Resolved> {
        let written = upstream(f, node, key)?;
        match stacks.resolve(&written, public_ok) {
            Resolution::Address(address) => Some(Resolved { written, address }),
            Resolution::Blocked => {
                blocked = true;
                None
            }
            Resolution::Refused(r) => {
                f.error(node, key, r.message, &r.fix);
                None
            }
        }
    };

    let tls = match get("tls") {
        Some(n) => tls(f, n),
        None => {
            f.error(
                root,
                "tls",
                "missing",
                "add tls: letsencrypt, tls: {cert: /path, key: /path}, or tls: off",
            );
            None
        }
    };
    if let (Some(Tls::LetsEncrypt), Some(n)) = (&tls, get("server_names")) {
        if let Some(w) = server_names.iter().find(|n| n.is_wildcard()) {
            f.error(
                n,
                "server_names",
                format!("{w}: Let's Encrypt certifies a wildcard only through DNS, and gitmoor asks through HTTP"),
                "list each name, or use tls: {cert, key} with a wildcard certificate you obtain yourself",
            );
        }
    }
    let has_tls = !matches!(tls, Some(Tls::Off));
    let redirect_https = match get("redirect_https") {
        Some(n) => match f.bool(n, "redirect_https") {
            Some(true) if !has_tls => {
                f.error(
                    n,
                    "redirect_https",
                    "a redirect to HTTPS needs TLS",
                    "set tls:, or remove redirect_https",
                );
                false
            }
            Some(b) => b,
            None => false,
        },
        None => has_tls,
    };
    let client_max_body_size =
        get("client_max_body_size").and_then(|n| f.value(n, "client_max_body_size", Size::parse));
    let proxy_timeouts = get("proxy_timeouts")
        .map(|n| proxy_timeouts(f, n))
        .unwrap_or_default();
    let websocket = get("websocket")
        .and_then(|n| f.bool(n, "websocket"))
        .unwrap_or(false);
    let hsts = match get("hsts") {
        Some(n) => {
            let h = hsts(f, n);
            if h.is_some() && !has_tls {
                f.error(n, "hsts", "HSTS needs TLS", "set tls:, or remove hsts");
            }
            h
        }
        None => None,
    };

    let backend = match (get("upstream"), get("gitmoor")) {
        (Some(_), Some(g)) => {
            f.error(
                g,
                "gitmoor",
                "a site serves either an application (upstream:) or gitmoor (gitmoor:), not both",
                "give gitmoor its own site file and name",
            );
            None
        }
        (None, None) => {
            f.error(
                root,
                "upstream",
                "missing",
                "add upstream: 127.0.0.1:3000 or upstream: {stack: app, service: backend, port: 3000}",
            );
            None
        }
        (Some(u), None) => {
            let main = resolve(f, u, "upstream");
            let locations = match get("locations") {
                Some(n) => locations(f, n, &mut resolve),
                None => Vec::new(),
            };
            main.map(|upstream| Backend::App {
                upstream,
                locations,
            })
        }
        (None, Some(g)) => {
            if let Some(l) = get("locations") {
                f.error(
                    l,
                    "locations",
                    "a gitmoor site has its own locations (/hooks/ and /)",
                    "remove locations",
                );
            }
            if let Some(p) = get("allow_public_upstream") {
                f.error(
                    p,
                    "allow_public_upstream",
                    "only for an upstream: of a stack's service",
                    "remove it",
                );
            }
            gitmoor(f, g).map(Backend::Gitmoor)
        }
    };

    if f.errors.len() > errors_before || blocked {
        return None;
    }
    Some(SiteDef {
        server_names,
        backend: backend?,
        tls: tls?,
        redirect_https,
        client_max_body_size,
        proxy_timeouts,
        websocket,
        hsts,
    })
}

/// A name or a list of names, each once.
fn server_names(f: &mut Fields, node: &Node) -> Vec<DnsName> {
    let items: Vec<(&Node, String)> = match &node.value {
        NodeValue::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, format!("server_names[{i}]")))
            .collect(),
        _ => vec![(node, "server_names".to_string())],
    };
    if items.is_empty() {
        f.error(
            node,
            "server_names",
            "empty",
            "list the names the site answers to",
        );
    }
    let mut out: Vec<DnsName> = Vec::new();
    for (n, key) in items {
        let Some(name) = f.value(n, &key, DnsName::server_name) else {
            continue;
        };
        if out.contains(&name) {
            f.error(n, &key, format!("{name} is listed twice"), "keep one");
        } else {
            out.push(name);
        }
    }
    out
}

/// `127.0.0.1:3000`, or `{stack, service, port}`.
fn upstream(f: &mut Fields, node: &Node, key: &str) -> Option<Upstream> {
    if !matches!(node.value, NodeValue::Map(_)) {
        return f
            .value(node, key, UpstreamAddr::parse)
            .map(Upstream::Address);
    }
    let entries = f.map(node, key, &["stack", "service", "port"])?;
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let name = |f: &mut Fields, k: &str| -> Option<String> {
        let Some(n) = get(k) else {
            f.error(
                node,
                &join(key, k),
                "missing",
                "write {stack: <folder under compose/>, service: <service>, port: <container port>}",
            );
            return None;
        };
        let s = f.string(n, &join(key, k))?;
        if !valid_lookup_name(&s) {
            f.error(
                n,
                &join(key, k),
                format!("{} is not a {k} name", super::values::quote(&s)),
                "write the name as in compose/ (letters, digits, `_`, `.` and `-`)",
            );
            return None;
        }
        Some(s)
    };
    let stack = name(f, "stack");
    let service = name(f, "service");
    let port = match get("port") {
        Some(n) => match f.uint(n, &join(key, "port")) {
            Some(p @ 1..=65535) => u16::try_from(p).ok(),
            Some(_) => {
                f.error(n, &join(key, "port"), "not a port (1 to 65535)", "");
                None
            }
            None => None,
        },
        None => {
            f.error(
                node,
                &join(key, "port"),
                "missing",
                "add port: <the port the container listens on>",
            );
            None
        }
    };
    Some(Upstream::Service {
        stack: stack?,
        service: service?,
        port: port?,
    })
}

/// A stack or service name as a lookup key: never rendered, but shown in messages and plans.
fn valid_lookup_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `letsencrypt`, `off`, or `{cert, key}`.
fn tls(f: &mut Fields, node: &Node) -> Option<Tls> {
    const FIX: &str = "write tls: letsencrypt, tls: off, or tls: {cert: /path, key: /path}";
    match &node.value {
        NodeValue::Str(s) if s == "letsencrypt" => Some(Tls::LetsEncrypt),
        NodeValue::Str(s) if s == "off" => Some(Tls::Off),
        NodeValue::Map(_) => {
            let entries = f.map(node, "tls", &["cert", "key"])?;
            let path = |f: &mut Fields, k: &str| match entries.iter().find(|(key, _)| key == k) {
                Some((_, n)) => f.value(n, &join("tls", k), HostPath::parse),
                None => {
                    f.error(node, &join("tls", k), "missing", FIX);
                    None
                }
            };
            let cert = path(f, "cert");
            let key = path(f, "key");
            Some(Tls::Files {
                cert: cert?,
                key: key?,
            })
        }
        NodeValue::Bool(false) => {
            f.error(node, "tls", "write `off`, not false", FIX);
            None
        }
        other => {
            let shown = match other {
                NodeValue::Str(s) => super::values::quote(s),
                _ => node.kind().to_string(),
            };
            f.error(node, "tls", format!("{shown} is not a TLS mode"), FIX);
            None
        }
    }
}

fn proxy_timeouts(f: &mut Fields, node: &Node) -> ProxyTimeouts {
    let mut out = ProxyTimeouts::default();
    let Some(entries) = f.map(node, "proxy_timeouts", &["connect", "read", "send"]) else {
        return out;
    };
    for (k, n) in entries {
        let d = f.value(n, &join("proxy_timeouts", k), Duration::parse);
        match k.as_str() {
            "connect" => out.connect = d,
            "read" => out.read = d,
            "send" => out.send = d,
            _ => {}
        }
    }
    out
}

/// `hsts: true`, `false`, or `{max_age: <seconds>, include_subdomains: <bool>}`.
fn hsts(f: &mut Fields, node: &Node) -> Option<Hsts> {
    match &node.value {
        NodeValue::Bool(true) => Some(Hsts {
            max_age_secs: HSTS_DEFAULT_MAX_AGE,
            include_subdomains: false,
        }),
        NodeValue::Bool(false) => None,
        NodeValue::Map(_) => {
            let entries = f.map(node, "hsts", &["max_age", "include_subdomains"])?;
            let mut out = Hsts {
                max_age_secs: HSTS_DEFAULT_MAX_AGE,
                include_subdomains: false,
            };
            for (k, n) in entries {
                match k.as_str() {
                    "max_age" => match f.uint(n, "hsts.max_age") {
                        Some(s) if s <= 2 * HSTS_DEFAULT_MAX_AGE => out.max_age_secs = s,
                        Some(_) => f.error(
                            n,
                            "hsts.max_age",
                            "more than two years",
                            "give seconds, at most 63072000",
                        ),
                        None => {}
                    },
                    "include_subdomains" => {
                        out.include_subdomains =
                            f.bool(n, "hsts.include_subdomains").unwrap_or(false)
                    }
                    _ => {}
                }
            }
            Some(out)
        }
        _ => {
            f.error(
                node,
                "hsts",
                format!("expected true, false or a mapping, found {}", node.kind()),
                "write hsts: true, or hsts: {max_age: 31536000, include_subdomains: false}",
            );
            None
        }
    }
}

type Resolve<'r> = dyn FnMut(&mut Fields, &Node, &str) -> Option<Resolved> + 'r;

/// `locations:`, a list of `{path, upstream}` or `{path, return}`, each path once.
fn locations(f: &mut Fields, node: &Node, resolve: &mut Resolve) -> Vec<Location> {
    let Some(items) = f.seq(node, "locations") else {
        return Vec::new();
    };
    let mut out: Vec<Location> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("locations[{i}]");
        let Some(entries) = f.map(item, &key, &["path", "upstream", "return"]) else {
            continue;
        };
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let path = match get("path") {
            Some(n) => f.value(n, &join(&key, "path"), UrlPath::parse),
            None => {
                f.error(item, &join(&key, "path"), "missing", "add path: /api/");
                None
            }
        };
        let action = match (get("upstream"), get("return")) {
            (Some(u), None) => resolve(f, u, &join(&key, "upstream")).map(LocationAction::Proxy),
            (None, Some(r)) => return_code(f, r, &join(&key, "return")),
            _ => {
                f.error(
                    item,
                    &key,
                    "a location has either upstream: or return:",
                    "give one of them",
                );
                None
            }
        };
        let (Some(path), Some(action)) = (path, action) else {
            continue;
        };
        if out.iter().any(|l| l.path == path) {
            f.error(
                item,
                &join(&key, "path"),
                format!("{path} is listed twice"),
                "keep one",
            );
            continue;
        }
        if path.as_str() == "/" {
            f.error(
                item,
                &join(&key, "path"),
                "`/` is the site's own upstream:",
                "change upstream:, or give a longer path",
            );
            continue;
        }
        out.push(Location { path, action });
    }
    out
}

/// A status code to answer with: 2xx, 4xx, 5xx, or Nginx's 444 (close the connection). Not 3xx,
/// which needs a URL.
fn return_code(f: &mut Fields, node: &Node, key: &str) -> Option<LocationAction> {
    let code = f.uint(node, key)?;
    match code {
        200..=299 | 400..=599 => u16::try_from(code).ok().map(LocationAction::Return),
        _ => {
            f.error(
                node,
                key,
                format!("{code} is not a status code gitmoor can return"),
                "give a code from 200-299 or 400-599 (403, 404, 410 or 444 to close a path)",
            );
            None
        }
    }
}

/// `gitmoor: {webhooks, status_allow, status_basic_auth_file, upstream}`.
fn gitmoor(f: &mut Fields, node: &Node) -> Option<GitmoorExposure> {
    let entries = match &node.value {
        NodeValue::Null => &[][..],
        NodeValue::Bool(true) => &[][..],
        _ => f.map(
            node,
            "gitmoor",
            &[
                "webhooks",
                "status_allow",
                "status_basic_auth_file",
                "upstream",
            ],
        )?,
    };
    let mut out = GitmoorExposure {
        webhooks: true,
        status_allow: Vec::new(),
        status_basic_auth_file: None,
        upstream: None,
    };
    for (k, n) in entries {
        let key = join("gitmoor", k);
        match k.as_str() {
            "webhooks" => out.webhooks = f.bool(n, &key).unwrap_or(true),
            "status_allow" => {
                let items: Vec<(&Node, String)> = match &n.value {
                    NodeValue::Seq(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n, format!("{key}[{i}]")))
                        .collect(),
                    _ => vec![(n, key.clone())],
                };
                for (item, k) in items {
                    if let Some(c) = f.value(item, &k, Cidr::parse) {
                        if !out.status_allow.contains(&c) {
                            out.status_allow.push(c);
                        }
                    }
                }
            }
            "status_basic_auth_file" => {
                out.status_basic_auth_file = f.value(n, &key, HostPath::parse)
            }
            "upstream" => out.upstream = f.value(n, &key, UpstreamAddr::parse),
            _ => {}
        }
    }
    Some(out)
}
