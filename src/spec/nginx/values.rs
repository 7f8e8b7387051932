//! The values a site file may put into an Nginx config, each a type whose constructor is the only
//! way to make one.
//!
//! A rendered vhost is text that Nginx parses: a `;` ends a directive, `{` and `}` open and close
//! blocks, `#` starts a comment, quotes and `\` change how a word is read, `$` expands a variable,
//! and whitespace separates arguments. A value holding any of them could add a directive of its
//! own (`x; include /etc/shadow`), close the server block, or read a variable where a literal was
//! meant. So every value is checked against a short list of the characters its kind needs (an
//! allow-list, never a deny-list), and the renderer only ever writes these types, never a raw
//! string from the repo. A refusal says what is wrong and how to write the value instead.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a value was refused, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub fix: String,
}

fn refused(value: &str, why: &str, fix: &str) -> Refused {
    Refused {
        message: format!("{}: {why}", quote(value)),
        fix: fix.to_string(),
    }
}

/// The value as it can be shown in a message: a hostile value may hold a newline or a control
/// character that would break the one-line-per-problem output, so it is escaped (and cut).
pub fn quote(value: &str) -> String {
    let mut shown: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    format!("`{shown}`")
}

/// A character no value may hold, named for the message; None when it is harmless.
fn forbidden(c: char) -> Option<&'static str> {
    Some(match c {
        ';' => "a `;` (it would end the directive)",
        '{' | '}' => "a brace (it would open or close a block)",
        '#' => "a `#` (it would start a comment)",
        '"' | '\'' => "a quote",
        '\\' => "a backslash",
        '$' => "a `$` (Nginx would read a variable)",
        c if c.is_whitespace() => "whitespace",
        c if c.is_control() => "a control character",
        c if !c.is_ascii() => "a non-ASCII character",
        _ => return None,
    })
}

/// The first character of `s` that `allowed` refuses, explained.
fn first_bad(s: &str, allowed: impl Fn(char) -> bool) -> Option<String> {
    s.chars()
        .find(|c| !allowed(*c))
        .map(|c| match forbidden(c) {
            Some(what) => format!("holds {what}"),
            None => format!("holds `{}`", c.escape_debug()),
        })
}

/// A host name of `server_name` or of an upstream: RFC 1123 labels (letters, digits, `-`, not at
/// either end of a label, 1 to 63 characters), at most 253 characters, kept lowercase. A
/// `server_name` may start with one `*.` (a wildcard Nginx matches); an IP address is not a name
/// (Nginx would serve it, Let's Encrypt would not certify it), and neither is Nginx's `.example.org`
/// or `~regex` form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsName(String);

impl DnsName {
    /// A name as `server_name` takes it: a leading `*.` allowed.
    pub fn server_name(s: &str) -> Result<DnsName, Refused> {
        Self::parse(s, true)
    }

    /// A name to connect to (an upstream host): no wildcard.
    pub fn host(s: &str) -> Result<DnsName, Refused> {
        Self::parse(s, false)
    }

    fn parse(s: &str, wildcard_ok: bool) -> Result<DnsName, Refused> {
        const FIX: &str = "write a DNS name such as api.example.org";
        if let Some(bad) = first_bad(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*')
        }) {
            let fix = if s
                .chars()
                .any(|c| !c.is_ascii() && !c.is_control() && !c.is_whitespace())
            {
                "write an internationalised name in its ASCII (punycode) form, xn--…"
            } else {
                FIX
            };
            return Err(refused(s, &format!("not a DNS name: it {bad}"), fix));
        }
        let lower = s.to_ascii_lowercase();
        let rest = match lower.strip_prefix("*.") {
            Some(rest) if wildcard_ok => rest,
            Some(_) => {
                return Err(refused(s, "a wildcard is not an address", FIX));
            }
            None => lower.as_str(),
        };
        if rest.contains('*') {
            return Err(refused(
                s,
                "a `*` may only be the whole first label (`*.example.org`)",
                FIX,
            ));
        }
        if rest.is_empty() {
            return Err(refused(s, "empty", FIX));
        }
        if lower.len() > 253 {
            return Err(refused(s, "longer than 253 characters", FIX));
        }
        if rest.ends_with('.') || rest.starts_with('.') {
            return Err(refused(
                s,
                "starts or ends with a dot",
                "write the name without a leading or trailing dot",
            ));
        }
        for label in rest.split('.') {
            if label.is_empty() {
                return Err(refused(s, "has an empty label (`..`)", FIX));
            }
            if label.len() > 63 {
                return Err(refused(s, "has a label longer than 63 characters", FIX));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(refused(s, "has a label that starts or ends with `-`", FIX));
            }
        }
        let last = rest.rsplit('.').next().unwrap_or(rest);
        if last.chars().all(|c| c.is_ascii_digit()) {
            return Err(refused(
                s,
                "an IP address, not a name",
                "name the site by its DNS name; Nginx answers on every address anyway",
            ));
        }
        Ok(DnsName(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.example.org`.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where Nginx sends requests: an IP and port (`127.0.0.1:3000`, `[::1]:3000`), a host name and
/// port (`backend.internal:3000`, resolved by Nginx when it loads the config: a name that does not
/// resolve fails `nginx -t`), or a Unix socket (`unix:/run/app/app.sock`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpstreamAddr {
    Ip(SocketAddr),
    Host(DnsName, u16),
    Unix(HostPath),
}

const ADDR_FIX: &str =
    "write host:port, such as 127.0.0.1:3000, [::1]:3000 or backend.internal:3000, or unix:/path/to.sock";

impl UpstreamAddr {
    pub fn parse(s: &str) -> Result<UpstreamAddr, Refused> {
        if let Some(path) = s.strip_prefix("unix:") {
            return HostPath::parse(path)
                .map(UpstreamAddr::Unix)
                .map_err(|e| Refused {
                    message: format!("unix socket {}", e.message),
                    fix: e.fix,
                });
        }
        if s.contains("://") {
            return Err(refused(
                s,
                "has a scheme",
                "write only host:port (Nginx speaks HTTP to the upstream)",
            ));
        }
        if let Some(bad) = first_bad(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
        }) {
            return Err(refused(s, &format!("not an address: it {bad}"), ADDR_FIX));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(refused(s, "port 0", ADDR_FIX));
            }
            return Ok(UpstreamAddr::Ip(addr));
        }
        if s.parse::<IpAddr>().is_ok() || s.starts_with('[') {
            return Err(refused(s, "no port", ADDR_FIX));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(refused(s, "no port", ADDR_FIX));
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(refused(s, "the port is not 1 to 65535", ADDR_FIX)),
        };
        let host = DnsName::host(host).map_err(|e| Refused {
            message: format!("{}: {}", quote(s), e.message),
            fix: ADDR_FIX.to_string(),
        })?;
        Ok(UpstreamAddr::Host(host, port))
    }

    /// An address on this host's loopback: reachable by Nginx, not by the network.
    pub fn loopback(ip: IpAddr, port: u16) -> UpstreamAddr {
        UpstreamAddr::Ip(SocketAddr::new(ip, port))
    }

    /// What `proxy_pass` takes: `http://127.0.0.1:3000`, `http://unix:/run/a.sock:`.
    pub fn proxy_pass(&self) -> String {
        match self {
            UpstreamAddr::Unix(p) => format!("http://unix:{p}:"),
            other => format!("http://{other}"),
        }
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Ip(a) => write!(f, "{a}"),
            UpstreamAddr::Host(h, p) => write!(f, "{h}:{p}"),
            UpstreamAddr::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

/// A size as Nginx writes it: digits and an optional unit `k`, `m` or `g` (`10m`, `512k`, `0`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(String);

impl Size {
    pub fn parse(s: &str) -> Result<Size, Refused> {
        const FIX: &str = "write digits and an optional unit k, m or g, such as 10m";
        let lower = s.to_ascii_lowercase();
        let digits = lower.trim_end_matches(['k', 'm', 'g']);
        if digits.is_empty()
            || lower.len() - digits.len() > 1
            || digits.len() > 9
            || !digits.chars().all(|c| c.is_ascii_digit())
        {
            return Err(refused(s, "not a size", FIX));
        }
        Ok(Size(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A timeout as Nginx writes it: digits and a unit `ms`, `s`, `m`, `h` or `d` (`30s`, `5m`), or
/// bare digits (seconds). Never zero: every duration here is a timeout, and 0 would give up at
/// once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(String);

impl Duration {
    pub fn parse(s: &str) -> Result<Duration, Refused> {
        const FIX: &str = "write digits and a unit ms, s, m, h or d, such as 30s";
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(digits_end);
        if digits.is_empty()
            || digits.len() > 6
            || !matches!(unit, "" | "ms" | "s" | "m" | "h" | "d")
        {
            return Err(refused(s, "not a duration", FIX));
        }
        if digits.chars().all(|c| c == '0') {
            return Err(refused(s, "zero: the timeout would expire at once", FIX));
        }
        Ok(Duration(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of a `location`: starts with `/`, then letters, digits and `/ . _ - ~ + , = : @`; no
/// `//` and no `.` or `..` segment (Nginx matches the normalised URI, so such a location would
/// never match what it seems to). No `%`: Nginx matches the decoded URI, so `%20` would be
/// compared literally.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UrlPath(String);

impl UrlPath {
    pub fn parse(s: &str) -> Result<UrlPath, Refused> {
        const FIX: &str = "write a path such as /api/, of letters, digits and / . _ - ~ + , = : @";
        if !s.starts_with('/') {
            return Err(refused(s, "does not start with `/`", FIX));
        }
        if s.len() > 1024 {
            return Err(refused(s, "longer than 1024 characters", FIX));
        }
        if let Some(bad) = first_bad(s, |c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '~' | '+' | ',' | '=' | ':' | '@')
        }) {
            return Err(refused(s, &format!("not a URL path: it {bad}"), FIX));
        }
        if s.contains("//") || s.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(refused(
                s,
                "has `//`, `.` or `..` in it (Nginx matches the normalised path, so it would never match)",
                FIX,
            ));
        }
        Ok(UrlPath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UrlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file on the host (a certificate, a key, an htpasswd file, a socket): absolute, normalised
/// (no empty, `.` or `..` segment, no trailing `/`), of letters, digits and `/ . _ - + @ ,`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPath(String);

impl HostPath {
    pub fn parse(s: &str) -> Result<HostPath, Refused> {
        const FIX: &str =
            "write an absolute path such as /etc/ssl/private/site.key, of letters, digits and / . _ - + @ ,";
        if !s.starts_with('/') {
            return Err(refused(s, "not an absolute path", FIX));
        }
        if s.len() > 4096 {
            return Err(refused(s, "longer than 4096 characters", FIX));
        }
        if let Some(bad) = first_bad(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ',')
        }) {
            return Err(refused(s, &format!("not a usable path: it {bad}"), FIX));
        }
        if s[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(refused(
                s,
                "not normalised (an empty, `.` or `..` segment, or a trailing `/`)",
                FIX,
            ));
        }
        Ok(HostPath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address or network for `allow`: `192.0.2.10`, `10.0.0.0/8`, `2001:db8::/32`. Kept as the
/// parsed address and prefix, so what is written back is the canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    /// None: the single address.
    pub prefix: Option<u8>,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, Refused> {
        const FIX: &str = "write an IP address or a network, such as 192.0.2.10 or 10.0.0.0/8";
        if let Some(bad) = first_bad(s, |c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/')) {
            return Err(refused(s, &format!("not an address: it {bad}"), FIX));
        }
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| refused(s, "not an IP address", FIX))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => None,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => Some(n),
                _ => {
                    return Err(refused(
                        s,
                        &format!("the prefix length is not 0 to {max}"),
                        FIX,
                    ))
                }
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// The loopback address to connect to for a port Docker publishes on `host_ip` (empty: all
/// interfaces), and whether `host_ip` is loopback itself.
pub fn connect_ip(host_ip: &str) -> (IpAddr, bool) {
    match host_ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) if ip.is_loopback() => (ip, true),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() => (IpAddr::V6(Ipv6Addr::LOCALHOST), false),
        Ok(ip) if ip.is_unspecified() => (IpAddr::V4(Ipv4Addr::LOCALHOST), false),
        Ok(ip) => (ip, false),
        Err(_) => (IpAddr::V4(Ipv4Addr::LOCALHOST), false),
    }
}

#[cfg(test)]
#[path = "tests_values.rs"]
mod tests;
