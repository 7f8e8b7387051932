//! `SiteDef` → the text of its vhost file: a short, readable config a person who knows Nginx
//! recognises, and the same bytes for the same input (the planner shows a change as a diff of
//! this text, and an unchanged site must not reload Nginx).
//!
//! Only checked values reach the text (see `values`): names, addresses, sizes, durations and
//! paths are written through their types, and the rest is fixed text of this file.

use super::site::{Backend, GitmoorExposure, LocationAction, SiteDef, SiteKind, SiteSpec};
use super::values::{HostPath, UpstreamAddr};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The TLS state of the site at the time of rendering, decided by the caller: `Tls::Off` is
/// `Off`, `Tls::Files` is `Files`, and `Tls::LetsEncrypt` is `AcmePending` until its certificate
/// exists, then `AcmeReady`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderTls {
    Off,
    Files {
        cert: HostPath,
        key: HostPath,
    },
    /// No certificate yet: only the HTTP server block, which serves the ACME challenges from the
    /// webroot so that certbot can obtain the first one.
    AcmePending {
        webroot: HostPath,
    },
    /// The certificate exists: the HTTP block keeps serving the challenges (renewals use them),
    /// and a TLS block serves the site.
    AcmeReady {
        webroot: HostPath,
        cert: HostPath,
        key: HostPath,
    },
}

/// What the rendering needs to know of the host (from gitmoor's config, not from the repo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderHost {
    /// gitmoor's status server (`listen:`), for a gitmoor site that names no upstream.
    pub gitmoor_listen: SocketAddr,
    pub http_port: u16,
    pub https_port: u16,
    /// Listen on `[::]` too. Off on a host without IPv6, where Nginx could not bind it.
    pub ipv6: bool,
}

impl Default for RenderHost {
    fn default() -> Self {
        RenderHost {
            gitmoor_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            http_port: 80,
            https_port: 443,
            ipv6: true,
        }
    }
}

/// The body size a gitmoor site accepts when the file gives none: the webhook body limit's
/// default (`webhook_max_body_bytes`, 1 MiB), so Nginx refuses a larger delivery before gitmoor
/// reads it.
const GITMOOR_BODY_SIZE: &str = "1m";

/// The text to install for a site: the rendered vhost of a `.yaml`, the bytes of a `.conf` as
/// written (`tls` and `host` are then unused: a hand-written block says its own).
pub fn site_text(site: &SiteSpec, tls: &RenderTls, host: &RenderHost) -> String {
    match &site.kind {
        SiteKind::Rendered(def) => render(&site.name, &site.file, def, tls, host),
        SiteKind::Raw(text) => text.clone(),
    }
}

/// The vhost of site `name` (read from `file`). `name` and `file` come from `SiteSpec`, whose
/// reader checked them.
pub fn render(name: &str, file: &str, def: &SiteDef, tls: &RenderTls, host: &RenderHost) -> String {
    let mut w = Writer::default();
    w.line(&format!(
        "# managed by gitmoor from {file}; edits are overwritten"
    ));
    let upgrade_var = def.websocket.then(|| upgrade_variable(name));
    if let Some(var) = &upgrade_var {
        // The `Connection` header for the upstream: `upgrade` when the client asks for one,
        // `close` otherwise (Nginx's documented pattern); one variable per site, so that two
        // sites' files never define the same one.
        w.blank();
        w.open(&format!("map $http_upgrade ${var}"));
        w.line("default upgrade;");
        w.line("''      close;");
        w.close();
    }
    let body = Body {
        def,
        host,
        upgrade_var: upgrade_var.as_deref(),
    };

    // The plain HTTP server: ACME challenges when Let's Encrypt is used, then a redirect, a
    // wait, or the site itself.
    w.blank();
    w.open("server");
    listen(&mut w, host.http_port, "", host.ipv6);
    server_names(&mut w, def);
    let webroot = match tls {
        RenderTls::AcmePending { webroot } | RenderTls::AcmeReady { webroot, .. } => Some(webroot),
        _ => None,
    };
    if let Some(webroot) = webroot {
        w.blank();
        w.open("location /.well-known/acme-challenge/");
        w.line(&format!("root {webroot};"));
        w.close();
    }
    let has_tls_block = matches!(tls, RenderTls::Files { .. } | RenderTls::AcmeReady { .. });
    match tls {
        _ if has_tls_block && def.redirect_https => {
            w.blank();
            w.open("location /");
            if host.https_port == 443 {
                w.line("return 301 https://$host$request_uri;");
            } else {
                w.line(&format!(
                    "return 301 https://$host:{}$request_uri;",
                    host.https_port
                ));
            }
            w.close();
        }
        RenderTls::AcmePending { .. } if def.redirect_https => {
            // Served only over HTTPS, which has no certificate yet: say "not yet" rather than
            // serve the site in clear (cookies, passwords) or redirect to a TLS port that would
            // answer with another site's certificate.
            w.blank();
            w.line("# waiting for the certificate: HTTPS only once it is there");
            w.open("location /");
            w.line("return 503;");
            w.close();
        }
        _ => body.write(&mut w),
    }
    w.close();

    if let RenderTls::Files { cert, key } | RenderTls::AcmeReady { cert, key, .. } = tls {
        w.blank();
        w.open("server");
        listen(&mut w, host.https_port, " ssl", host.ipv6);
        server_names(&mut w, def);
        w.blank();
        w.line(&format!("ssl_certificate {cert};"));
        w.line(&format!("ssl_certificate_key {key};"));
        // Nginx 1.22 (Debian 12) enables only TLSv1 to TLSv1.2 unless told.
        w.line("ssl_protocols TLSv1.2 TLSv1.3;");
        if let Some(h) = &def.hsts {
            let sub = if h.include_subdomains {
                "; includeSubDomains"
            } else {
                ""
            };
            w.line(&format!(
                "add_header Strict-Transport-Security \"max-age={}{sub}\" always;",
                h.max_age_secs
            ));
        }
        body.write(&mut w);
        w.close();
    }
    w.out
}

/// The `map` variable of a site's `Connection` header: `gitmoor_upgrade_` and the site name,
/// with `_` written `__`, `-` written `_h` and `.` written `_d` (an Nginx variable is letters,
/// digits and `_`), so two names never give one variable.
pub(super) fn upgrade_variable(name: &str) -> String {
    let mut var = String::from("gitmoor_upgrade_");
    for c in name.chars() {
        match c {
            '_' => var.push_str("__"),
            '-' => var.push_str("_h"),
            '.' => var.push_str("_d"),
            c if c.is_ascii_alphanumeric() => var.push(c),
            // Not in a valid site name; written so that the text stays one word anyway.
            c => {
                let _ = write!(var, "_x{:x}", c as u32);
            }
        }
    }
    var
}

fn listen(w: &mut Writer, port: u16, ssl: &str, ipv6: bool) {
    w.line(&format!("listen {port}{ssl};"));
    if ipv6 {
        w.line(&format!("listen [::]:{port}{ssl};"));
    }
}

fn server_names(w: &mut Writer, def: &SiteDef) {
    let names: Vec<&str> = def.server_names.iter().map(|n| n.as_str()).collect();
    w.line(&format!("server_name {};", names.join(" ")));
}

/// What serves the site's requests: the settings, the forwarded headers and the locations.
struct Body<'a> {
    def: &'a SiteDef,
    host: &'a RenderHost,
    upgrade_var: Option<&'a str>,
}

impl Body<'_> {
    fn write(&self, w: &mut Writer) {
        let def = self.def;
        let gitmoor = match &def.backend {
            Backend::Gitmoor(g) => Some(g),
            Backend::App { .. } => None,
        };
        let mut settings: Vec<String> = Vec::new();
        if gitmoor.is_some() {
            // A slow sender holds a connection of Nginx, not of gitmoor (docs/status.md).
            settings.push("client_header_timeout 10s;".into());
            settings.push("client_body_timeout 10s;".into());
        }
        match (&def.client_max_body_size, gitmoor) {
            (Some(size), _) => settings.push(format!("client_max_body_size {size};")),
            (None, Some(_)) => settings.push(format!("client_max_body_size {GITMOOR_BODY_SIZE};")),
            (None, None) => {}
        }
        let t = &def.proxy_timeouts;
        for (directive, value) in [
            ("proxy_connect_timeout", &t.connect),
            ("proxy_read_timeout", &t.read),
            ("proxy_send_timeout", &t.send),
        ] {
            if let Some(d) = value {
                settings.push(format!("{directive} {d};"));
            }
        }
        if !settings.is_empty() {
            w.blank();
            for s in &settings {
                w.line(s);
            }
        }

        // Set once at the server level, where every location inherits them: a location that set
        // a header of its own would lose all of these.
        w.blank();
        w.line("proxy_http_version 1.1;");
        w.line("proxy_set_header Host $host;");
        w.line("proxy_set_header X-Real-IP $remote_addr;");
        w.line("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;");
        w.line("proxy_set_header X-Forwarded-Proto $scheme;");
        if let Some(var) = self.upgrade_var {
            w.line("proxy_set_header Upgrade $http_upgrade;");
            w.line(&format!("proxy_set_header Connection ${var};"));
        }

        match &def.backend {
            Backend::App {
                upstream,
                locations,
            } => {
                for l in locations {
                    w.blank();
                    w.open(&format!("location {}", l.path));
                    match &l.action {
                        LocationAction::Proxy(r) => {
                            w.line(&format!("proxy_pass {};", r.address.proxy_pass()))
                        }
                        LocationAction::Return(code) => w.line(&format!("return {code};")),
                    }
                    w.close();
                }
                w.blank();
                w.open("location /");
                w.line(&format!("proxy_pass {};", upstream.address.proxy_pass()));
                w.close();
            }
            Backend::Gitmoor(g) => self.gitmoor_locations(w, g),
        }
    }

    fn gitmoor_locations(&self, w: &mut Writer, g: &GitmoorExposure) {
        let pass = match &g.upstream {
            Some(a) => a.proxy_pass(),
            None => UpstreamAddr::Ip(self.host.gitmoor_listen).proxy_pass(),
        };
        if g.webhooks {
            w.blank();
            w.line("# Public: the forges' webhook deliveries (an unsigned one does nothing).");
            w.open("location /hooks/");
            w.line(&format!("proxy_pass {pass};"));
            w.close();
        }
        w.blank();
        let what = if g.webhooks {
            "Everything else"
        } else {
            "Everything"
        };
        let who = match (
            g.status_allow.is_empty(),
            g.status_basic_auth_file.is_some(),
        ) {
            (true, false) => "nobody (no status_allow, no status_basic_auth_file)",
            (false, false) => "the allowed addresses only",
            (true, true) => "a password only",
            (false, true) => "the allowed addresses, or a password",
        };
        w.line(&format!("# {what} (/, /status, /metrics, /health): {who}."));
        w.open("location /");
        match (g.status_allow.as_slice(), &g.status_basic_auth_file) {
            ([], None) => w.line("deny all;"),
            (allow, auth) => {
                if !allow.is_empty() && auth.is_some() {
                    w.line("satisfy any;");
                }
                for c in allow {
                    w.line(&format!("allow {c};"));
                }
                if !allow.is_empty() {
                    w.line("deny all;");
                }
                if let Some(file) = auth {
                    w.line("auth_basic \"gitmoor\";");
                    w.line(&format!("auth_basic_user_file {file};"));
                }
                w.line(&format!("proxy_pass {pass};"));
            }
        }
        w.close();
    }
}

/// Indented lines, four spaces a level, one blank line between groups (never two, never one
/// right after an opening brace).
#[derive(Default)]
struct Writer {
    out: String,
    depth: usize,
    /// A blank line was asked for: written before the next line, unless that line closes a
    /// block or follows an opening one.
    pending_blank: bool,
    just_opened: bool,
}

impl Writer {
    fn line(&mut self, text: &str) {
        if self.pending_blank && !self.just_opened && !self.out.is_empty() {
            self.out.push('\n');
        }
        self.pending_blank = false;
        self.just_opened = false;
        for _ in 0..self.depth {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }
    fn blank(&mut self) {
        self.pending_blank = true;
    }
    fn open(&mut self, head: &str) {
        self.line(&format!("{head} {{"));
        self.depth += 1;
        self.just_opened = true;
    }
    fn close(&mut self) {
        self.pending_blank = false;
        self.depth = self.depth.saturating_sub(1);
        self.line("}");
    }
}
