//! The remote's URL: which transport it asks for (local, http(s), ssh, git://), the way git
//! reads it, and the forms of it that may be shown or stored (credentials hidden or stripped).
//! Pure string work, no I/O.

use super::git_error::GitError;

/// What kind of transport the URL asks for; ssh keeps what the host key check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RemoteKind {
    Local,
    Http,
    Ssh {
        user: Option<String>,
        host: String,
        port: u16,
    },
    /// `git://` and anything else libgit2 knows without credentials.
    Other,
}

/// Splits a remote URL into what libgit2 is given and what kind of transport it is, the way git
/// decides: `scheme://…` is a URL; a `:` before any `/` makes `[user@]host:path` ssh; anything
/// else is a local path (made absolute, so the cache's config does not depend on the cwd).
pub(super) fn parse_remote(url: &str) -> Result<(String, RemoteKind), GitError> {
    let invalid = |reason: &str| GitError::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_string(),
    };
    if url.is_empty() {
        return Err(invalid("it is empty"));
    }
    if url.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let kind =
            match scheme.to_ascii_lowercase().as_str() {
                "file" => RemoteKind::Local,
                "http" | "https" => {
                    // `user:pa/ss@host`: an unencoded `/` in a password ends the authority
                    // early, and the rest (password included) would be taken for the host and
                    // the path, and shown as such. Refused without quoting it.
                    if at_after_host(rest) {
                        return Err(GitError::InvalidUrl {
                            url: format!("{scheme}://***"),
                            reason: "it has an `@` after the host: if it carries credentials, \
                                     %-encode a `/` in them (as %2F), or use token_file"
                                .to_string(),
                        });
                    }
                    RemoteKind::Http
                }
                "ssh" | "git+ssh" | "ssh+git" => {
                    let authority = rest.split('/').next().unwrap_or_default();
                    let (user, hostport) = match authority.rsplit_once('@') {
                        Some((userinfo, hp)) => {
                            let user = userinfo.split(':').next().unwrap_or_default();
                            (Some(user.to_string()).filter(|u| !u.is_empty()), hp)
                        }
                        None => (None, authority),
                    };
                    let (host, port) = split_host_port(hostport, 22)
                        .ok_or_else(|| invalid("cannot read host and port of the ssh URL"))?;
                    RemoteKind::Ssh { user, host, port }
                }
                "git" => RemoteKind::Other,
                _ => return Err(invalid(
                    "unsupported scheme; use https://, ssh://, user@host:path, file:// or a local \
                     path",
                )),
            };
        return Ok((url.to_string(), kind));
    }
    let first_colon = url.find(':');
    let first_slash = url.find('/');
    let scp_like = match (first_colon, first_slash) {
        (Some(c), Some(s)) => c < s,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if scp_like {
        let (user, host) =
            parse_scp(url).ok_or_else(|| invalid("expected user@host:path for an ssh remote"))?;
        return Ok((
            url.to_string(),
            RemoteKind::Ssh {
                user,
                host,
                port: 22,
            },
        ));
    }
    let abs = std::path::absolute(url).map_err(|e| invalid(&e.to_string()))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| invalid("the absolute path is not UTF-8"))?
        .to_string();
    Ok((abs, RemoteKind::Local))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; `default_port` when absent.
pub(crate) fn split_host_port(hostport: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p.parse().ok()?,
    };
    Some((host.to_string(), port))
}

/// `[user@]host:path` and `[user@][v6]:path`.
fn parse_scp(url: &str) -> Option<(Option<String>, String)> {
    let (user, rest) = match url.split_once('@') {
        Some((user, rest)) if !user.contains(':') && !user.contains('/') => {
            (Some(user.to_string()).filter(|u| !u.is_empty()), rest)
        }
        _ => (None, url),
    };
    let (host, path) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        rest.split_once(':')?
    };
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some((user, host.to_string()))
}

/// Hides the userinfo of an http(s) URL (`https://TOKEN@host/…` is a common way to configure a
/// token). ssh user names stay: they are not secrets, and the host-key and login messages are
/// clearer with them. The whole string is one URL (its authority ends at the first `/`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut out = format!("{scheme}://");
    push_authority(&mut out, scheme, &rest[..authority_end], Keep::SshUser);
    out.push_str(&rest[authority_end..]);
    out
}

/// Hides the userinfo of every `scheme://` URL in a text (an error message, a log line, the
/// configured repo as the status page shows it): `https://user:token@host` becomes
/// `https://***@host`. Stricter than [`redact_url`]: any scheme's login name goes too, since a
/// text from a library or a forge may carry a URL whose user part is a token whatever its
/// scheme. An authority ends at `/`, whitespace or a quote.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        push_authority(&mut out, "", &tail[..end], Keep::Nothing);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// What a redaction keeps of a URL's userinfo.
#[derive(Clone, Copy)]
enum Keep {
    /// The login name of a non-http(s) URL (`ssh://git@host`); its password goes.
    SshUser,
    /// Nothing: the whole userinfo becomes `***`.
    Nothing,
}

/// Appends `authority` (`[userinfo@]host[:port]`) with its userinfo as `keep` allows. The last
/// `@` ends the userinfo, as in URL parsers (a password may contain `@`).
fn push_authority(out: &mut String, scheme: &str, authority: &str, keep: Keep) {
    let Some(at) = authority.rfind('@') else {
        out.push_str(authority);
        return;
    };
    let userinfo = &authority[..at];
    // An https user is a token as often as a name.
    let http = matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https");
    match keep {
        Keep::SshUser if !http => match userinfo.split_once(':') {
            // ssh://git@host keeps its login name; a password after it goes.
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(userinfo),
        },
        Keep::SshUser | Keep::Nothing => out.push_str("***"),
    }
    out.push_str(&authority[at..]);
}

/// True when `rest` (a URL after `scheme://`) has an `@` after its host but none before: a `/`
/// in a password ended the authority early, and the password would be read as host and path.
pub(crate) fn at_after_host(rest: &str) -> bool {
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let before_query = rest.split(['?', '#']).next().unwrap_or_default();
    !rest[..authority_end].contains('@') && before_query.contains('@')
}

/// `http` or `git` when the URL uses a transport with neither encryption nor authentication of
/// the server.
pub(super) fn insecure_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    matches!(scheme.as_str(), "http" | "git").then_some(scheme)
}

/// The URL as the cache's config may keep it: no userinfo at all for http(s) (a token may be the
/// user name), no password for other schemes (an ssh login name is no secret).
pub(super) fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let host_and_path = &rest[at + 1..];
    if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return format!("{scheme}://{host_and_path}");
    }
    let user = rest[..at].split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host_and_path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_with_a_slash_is_refused_without_being_shown() {
        let err = parse_remote("https://deploy:s3cr/et@git.example.org/r.git").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("s3cr") && !msg.contains("deploy"), "{msg}");
        assert!(msg.contains("%2F"), "{msg}");
        let encoded = parse_remote("https://deploy:s3cr%2Fet@git.example.org/r.git");
        assert!(encoded.is_ok());
        assert!(parse_remote("https://git.example.org/r.git?at=a@b").is_ok());
    }

    #[test]
    fn parses_remote_kinds() {
        let ssh = |u: &str| parse_remote(u).unwrap().1;
        assert_eq!(
            ssh("git@github.com:org/repo.git"),
            RemoteKind::Ssh {
                user: Some("git".into()),
                host: "github.com".into(),
                port: 22
            }
        );
        assert_eq!(
            ssh("ssh://root@127.0.0.1:2222/srv/repo.git"),
            RemoteKind::Ssh {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: 2222
            }
        );
        assert_eq!(
            ssh("ssh://[::1]:2200/repo"),
            RemoteKind::Ssh {
                user: None,
                host: "::1".into(),
                port: 2200
            }
        );
        assert_eq!(
            ssh("git@[::1]:repo"),
            RemoteKind::Ssh {
                user: Some("git".into()),
                host: "::1".into(),
                port: 22
            }
        );
        assert_eq!(ssh("https://h/r.git"), RemoteKind::Http);
        assert_eq!(ssh("file:///srv/r.git"), RemoteKind::Local);
        let (path, kind) = parse_remote("some/dir:x/repo").unwrap();
        assert_eq!(kind, RemoteKind::Local);
        assert!(path.starts_with('/') && path.ends_with("some/dir:x/repo"));
        assert!(parse_remote("ftp://x/y").is_err());
        assert!(parse_remote("").is_err());
    }

    #[test]
    fn redacts_http_userinfo_only() {
        assert_eq!(
            redact_url("https://x-access-token:gh_secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r@x.git"),
            "https://github.com/o/r@x.git"
        );
        assert_eq!(redact_url("git@host:o/r.git"), "git@host:o/r.git");
        assert_eq!(
            redact_url("ssh://git@host/o/r.git"),
            "ssh://git@host/o/r.git"
        );
        assert_eq!(
            redact_url("ssh://git:pw_s3cret@host:2222/o/r.git"),
            "ssh://git:***@host:2222/o/r.git"
        );
    }

    #[test]
    fn every_url_in_a_text_loses_its_userinfo() {
        assert_eq!(
            redact_urls_in("fetch https://bot:ghp_abc@github.com/a/b.git failed"),
            "fetch https://***@github.com/a/b.git failed"
        );
        assert_eq!(
            redact_urls_in("ssh://git@host:22/x and file:///srv/x"),
            "ssh://***@host:22/x and file:///srv/x"
        );
        assert_eq!(
            redact_urls_in("'https://a:s3cret@h' then \"http://t0ken@h2\""),
            "'https://***@h' then \"http://***@h2\""
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
        assert_eq!(redact_urls_in("git@github.com:a/b"), "git@github.com:a/b");
    }

    #[test]
    fn credentials_are_stripped_from_the_stored_url() {
        assert_eq!(
            strip_credentials("https://x-access-token:gh_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_credentials("https://gh_secret@github.com/o/r@x.git"),
            "https://github.com/o/r@x.git"
        );
        assert_eq!(
            strip_credentials("ssh://git:pw@host:22/r.git"),
            "ssh://git@host:22/r.git"
        );
        assert_eq!(strip_credentials("git@host:o/r.git"), "git@host:o/r.git");
        assert_eq!(strip_credentials("/srv/r.git"), "/srv/r.git");
    }

    #[test]
    fn http_and_git_schemes_are_insecure() {
        assert_eq!(insecure_scheme("HTTP://h/r").as_deref(), Some("http"));
        assert_eq!(insecure_scheme("git://h/r").as_deref(), Some("git"));
        for ok in ["https://h/r", "ssh://h/r", "file:///r", "git@h:r", "/srv/r"] {
            assert_eq!(insecure_scheme(ok), None, "{ok}");
        }
    }
}
