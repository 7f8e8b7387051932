//! An http(s) remote URL split the way the transport needs it: where to connect, which path to
//! ask for, and the `user:password@` it may carry (percent-decoded, never shown). Pure.

use crate::source::remote_url::{at_after_host, split_host_port};

/// `http[s]://[user[:password]@]host[:port]/path`.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct HttpUrl {
    pub https: bool,
    /// Without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// The repository's path, without a trailing `/`; empty for the root.
    pub path: String,
    /// Credentials written in the URL itself.
    pub userinfo: Option<(String, String)>,
}

impl std::fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUrl")
            .field("https", &self.https)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("userinfo", &self.userinfo.as_ref().map(|_| "***"))
            .finish()
    }
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "not an http(s) URL".to_string())?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => return Err(format!("scheme {other}:// is not http(s)")),
        };
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("the URL contains spaces or control characters".to_string());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // `user:pa/ss@host`: the `/` ended the authority early; the rest is no path.
        if at_after_host(rest) {
            return Err(
                "an `@` after the host: %-encode a `/` in credentials (as %2F)".to_string(),
            );
        }
        // A query or fragment ends the path, and the host: looked for only after the
        // credentials are split off, so a `?` or `#` in a password never cuts it in two.
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            // `https://@host/…` names no credentials.
            Some(("" | ":", hp)) => (None, hp),
            Some((info, hp)) => {
                let (user, pass) = info.split_once(':').unwrap_or((info, ""));
                (Some((percent_decode(user)?, percent_decode(pass)?)), hp)
            }
            None => (None, authority),
        };
        let hostport = hostport.split(['?', '#']).next().unwrap_or_default();
        let default_port = if https { 443 } else { 80 };
        // Quoted only without credentials: the text before an `@` may be a password.
        let (host, port) = split_host_port(hostport, default_port).ok_or_else(|| {
            if authority.contains('@') {
                "cannot read the host and port after the credentials (a `/`, `?`, `#` or `@` in \
                 them must be %-encoded)"
                    .to_string()
            } else {
                format!("cannot read the host and port of {hostport:?}")
            }
        })?;
        Ok(HttpUrl {
            https,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
            userinfo,
        })
    }

    /// `host[:port]` as the `Host` header gives it (the port only when not the default).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.https { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `host:port`, for messages.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}", self.port)
    }

    /// The same server (scheme, host and port): credentials may go to it.
    pub fn same_origin(&self, other: &HttpUrl) -> bool {
        self.https == other.https
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }

    /// Resolves a redirect's `Location` against this URL: an absolute URL, or a path on the
    /// same server.
    pub fn join(&self, location: &str) -> Result<HttpUrl, String> {
        if location.starts_with("//") || !(location.starts_with('/') || location.contains("://")) {
            return Err(format!(
                "a redirect to {location:?}, which gitmoor does not follow"
            ));
        }
        if !location.starts_with('/') {
            return HttpUrl::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        let mut joined = HttpUrl::parse(&format!("{scheme}://{}{location}", self.host_header()))?;
        joined.userinfo.clone_from(&self.userinfo);
        Ok(joined)
    }
}

/// `%XX` decoding of a URL's user or password (a token may hold `@`, `:` or `/` encoded).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a malformed %-escape in the URL's credentials".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's credentials are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_host_port_path_and_credentials() {
        let u = HttpUrl::parse("https://bob:s%40cr%3At@git.example.fr:8443/org/app.git/").unwrap();
        assert!(u.https);
        assert_eq!(u.host, "git.example.fr");
        assert_eq!(u.port, 8443);
        assert_eq!(u.path, "/org/app.git");
        assert_eq!(u.userinfo, Some(("bob".into(), "s@cr:t".into())));
        assert_eq!(u.host_header(), "git.example.fr:8443");
        assert!(
            !format!("{u:?}").contains("s@cr"),
            "Debug hides the password"
        );

        let v6 = HttpUrl::parse("http://[::1]/r").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 80));
        assert_eq!(v6.host_header(), "[::1]");
        assert_eq!(HttpUrl::parse("https://h").unwrap().path, "");
    }

    #[test]
    fn a_password_with_query_characters_stays_whole_and_is_never_quoted() {
        let u = HttpUrl::parse("https://bob:hunter?2#x@git.example.org/org/app.git").unwrap();
        assert_eq!(u.host, "git.example.org");
        assert_eq!(u.userinfo, Some(("bob".into(), "hunter?2#x".into())));
        assert_eq!(u.path, "/org/app.git");
        // A port that is not one: the message says where, not what the credentials are.
        let err = HttpUrl::parse("https://bob:s3cret@host:12x/r").unwrap_err();
        assert!(!err.contains("s3cret") && !err.contains("bob"), "{err}");
        assert!(
            HttpUrl::parse("https://u:%+1@h/r").is_err(),
            "%+1 is no escape"
        );
        // A `/` in a password is refused before (remote_url::parse_remote); here the part
        // before it is never quoted either.
        let err = HttpUrl::parse("https://deploy:s3cr/et@h/r").unwrap_err();
        assert!(!err.contains("s3cr"), "{err}");
        let q = HttpUrl::parse("https://h/r.git?x=1#f").unwrap();
        assert_eq!((q.host.as_str(), q.path.as_str()), ("h", "/r.git"));
    }

    #[test]
    fn refuses_what_would_corrupt_a_request() {
        assert!(HttpUrl::parse("https://h/a b").is_err());
        assert!(HttpUrl::parse("https://h/a\r\nX: y").is_err());
        assert!(HttpUrl::parse("https://:443/r").is_err());
        assert!(HttpUrl::parse("https://h:port/r").is_err());
        assert!(HttpUrl::parse("https://u:%zz@h/r").is_err());
        assert!(HttpUrl::parse("ftp://h/r").is_err());
    }

    #[test]
    fn redirects_resolve_and_origins_compare() {
        let base = HttpUrl::parse("https://u:p@h/r.git").unwrap();
        let same = base.join("/moved/r.git/info/refs").unwrap();
        assert!(same.same_origin(&base));
        assert_eq!(same.userinfo, base.userinfo);
        let other = base.join("https://mirror.example/r.git").unwrap();
        assert!(!other.same_origin(&base));
        let down = base.join("http://h/r.git").unwrap();
        assert!(!down.same_origin(&base), "https to http is another origin");
        assert!(base.join("relative/path").is_err());
        let login = base.join("/login?next=https://h/r.git").unwrap();
        assert_eq!(
            login.path, "/login",
            "a path whose query holds a URL stays a path"
        );
        assert!(HttpUrl::parse("https://@h/r").unwrap().userinfo.is_none());
        assert!(base.join("//evil/x").is_err());
    }
}
