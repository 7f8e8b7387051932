//! The model of one Nginx site: what `nginx/<site>.yaml` asks for, every value already checked
//! (see `values`) and every upstream already resolved to the address Nginx will connect to.
//!
//! Resolution happens when the commit is read, against the stacks of the same commit, so a site
//! pointing at a service that publishes nothing is refused by `gitmoor validate` like any other
//! mistake, and the renderer, the planner and the executor never look at a stack.

use super::values::{Cidr, DnsName, Duration, HostPath, Size, UpstreamAddr, UrlPath};

/// One file of `nginx/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    /// The file's stem: `api` for `nginx/api.yaml`. Safe as a file name (`<name>.conf`).
    pub name: String,
    /// Repo path of the file, for messages and the rendered header.
    pub file: String,
    pub kind: SiteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteKind {
    /// `nginx/<site>.yaml`: rendered by gitmoor.
    Rendered(Box<SiteDef>),
    /// `nginx/<site>.conf`: a server block installed as written (only its size and encoding are
    /// checked; whoever can push to the branch can write any Nginx config this way, as they could
    /// run any container).
    Raw(String),
}

/// A rendered site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDef {
    /// `server_name`, in the file's order, without duplicates.
    pub server_names: Vec<DnsName>,
    /// What the site serves: an application, or gitmoor's own server.
    pub backend: Backend,
    pub tls: Tls,
    /// Answer plain HTTP with a 301 to HTTPS. True by default when there is TLS; never without.
    pub redirect_https: bool,
    pub client_max_body_size: Option<Size>,
    pub proxy_timeouts: ProxyTimeouts,
    /// Pass `Upgrade`/`Connection` so WebSocket connections work.
    pub websocket: bool,
    pub hsts: Option<Hsts>,
}

/// What a site proxies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `upstream:` (and `locations:`).
    App {
        upstream: Resolved,
        locations: Vec<Location>,
    },
    /// `gitmoor:`: gitmoor's status server, webhooks public and the rest guarded.
    Gitmoor(GitmoorExposure),
}

/// An upstream as the file wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `upstream: 127.0.0.1:3000`.
    Address(UpstreamAddr),
    /// `upstream: {stack: app, service: backend, port: 3000}`: the container port `port` of the
    /// service, as the stack publishes it on the host.
    Service {
        stack: String,
        service: String,
        port: u16,
    },
}

/// An upstream and the address it resolved to (the same address for `Upstream::Address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub written: Upstream,
    pub address: UpstreamAddr,
}

impl Resolved {
    /// How a plan or a message names it: `127.0.0.1:3000`, or `app/backend:3000
    /// (127.0.0.1:3000)`.
    pub fn describe(&self) -> String {
        match &self.written {
            Upstream::Address(a) => a.to_string(),
            Upstream::Service {
                stack,
                service,
                port,
            } => format!("{stack}/{service}:{port} ({})", self.address),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP only.
    Off,
    /// A certificate from Let's Encrypt (HTTP-01 through a webroot), obtained and renewed by the
    /// host side.
    LetsEncrypt,
    /// Certificate and key files already on the host.
    Files { cert: HostPath, key: HostPath },
}

/// `proxy_connect_timeout`, `proxy_read_timeout`, `proxy_send_timeout`; None: Nginx's default
/// (60s each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTimeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub send: Option<Duration>,
}

/// `Strict-Transport-Security`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hsts {
    pub max_age_secs: u64,
    pub include_subdomains: bool,
}

/// The HSTS max-age of `hsts: true`: one year, what most guides (and the preload list) ask.
pub const HSTS_DEFAULT_MAX_AGE: u64 = 31_536_000;

/// An extra `location` (a prefix match) of an application site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: UrlPath,
    pub action: LocationAction,
}

/// The two things users most often need of a path besides the site's upstream: send it to another
/// service (`/api/` to the backend, the rest to the front end), or close it (`/admin/` answered
/// 403 or 404). The path is passed to the upstream unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationAction {
    Proxy(Resolved),
    /// `return: 404`: a status code without a body or a URL (not 3xx, which needs a URL).
    Return(u16),
}

/// Publishing gitmoor's own status server (docs/status.md, "Exposure"): the webhooks must be public
/// (the forges post to them, and an unsigned delivery does nothing); `/`, `/status`, `/metrics`
/// and `/health` show paths, branch names and errors, so they are only for an allow-list, a
/// password, or (with neither) nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitmoorExposure {
    /// `/hooks/` open to everyone (default true).
    pub webhooks: bool,
    /// Addresses that may read the rest (`allow`).
    pub status_allow: Vec<Cidr>,
    /// An htpasswd file on the host: a password also lets one read the rest.
    pub status_basic_auth_file: Option<HostPath>,
    /// gitmoor's address; None: the daemon's own `listen:` (known to the renderer's caller, not
    /// to the repo).
    pub upstream: Option<UpstreamAddr>,
}
