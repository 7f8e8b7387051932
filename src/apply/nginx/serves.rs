//! Whether the running nginx serves the ACME webroot for a site's names: checked after the
//! reload that installs the site's ACME-only vhost and before certbot runs.
//!
//! Why: `nginx -s reload` (or the configured reload) returns once the master has the signal;
//! the workers take the new config a moment later, a slow host's later still. certbot started
//! at once can have its challenge fetched through the old config, and each failed validation
//! counts against Let's Encrypt's limits (5 per name per hour). So a probe file is put in the
//! webroot and asked for, as the ACME server will ask, until nginx answers it for every name,
//! twice in a row (a first answer can come from a new worker while old ones still accept).
//!
//! Asked on the host's first IPv4 interface address (where Let's Encrypt's requests arrive,
//! NAT or not), 127.0.0.1 when it has none: an operator's `listen 127.0.0.1:80` server (a
//! status page) would answer a probe on loopback in the vhost's place.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBE_EVERY: Duration = Duration::from_millis(50);
/// Between the two answers that must both be the probe's.
const CONFIRM_AFTER: Duration = Duration::from_millis(150);
/// The most of an answer read (a probe file is a few dozen bytes).
const ANSWER_CAP: u64 = 16 * 1024;

/// Waits until nginx, on this host's `http_port`, answers a probe file of `webroot`'s
/// `/.well-known/acme-challenge/` for each of `names` (as `Host`), for at most `timeout`.
/// The probe file is removed whatever the outcome.
pub async fn wait_until_served(
    webroot: &Path,
    http_port: u16,
    names: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    let dir = challenge_dir(webroot)?;
    let token = random_token()?;
    let name = format!("gitmoor-probe-{token}");
    let probe = Probe(dir.join(&name));
    std::fs::write(&probe.0, &token)
        .and_then(|()| readable(&probe.0, 0o644))
        .map_err(|e| format!("cannot write the probe file {}: {e}", probe.0.display()))?;
    let target = SocketAddr::new(probe_address(), http_port);
    probe_all(target, names, &name, &token, timeout).await
}

/// The probe file, removed when dropped (on every path out, an error included).
struct Probe(PathBuf);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `<webroot>/.well-known/acme-challenge`, made readable by nginx's workers where gitmoor makes
/// it (as certbot does); directories already there keep their modes, and a symlink on the way
/// is refused (the probe is written as root).
fn challenge_dir(webroot: &Path) -> Result<PathBuf, String> {
    let mut dir = webroot.to_path_buf();
    for part in [".well-known", "acme-challenge"] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory (a symlink?); gitmoor writes no probe through it: \
                     make it a directory, or remove it",
                    dir.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir)
                    .and_then(|()| readable(&dir, 0o755))
                    .map_err(|e| {
                        format!(
                            "cannot make {}: {e}; check nginx.acme_webroot",
                            dir.display()
                        )
                    })?;
            }
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        }
    }
    Ok(dir)
}

fn readable(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The host's first IPv4 interface address (not loopback or link-local), else 127.0.0.1.
fn probe_address() -> IpAddr {
    crate::apply::dns_preflight::interface_addresses()
        .unwrap_or_default()
        .into_iter()
        .find(IpAddr::is_ipv4)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

async fn probe_all(
    target: SocketAddr,
    names: &[&str],
    file: &str,
    token: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for host in names {
        // A name goes into the request only as a hostname (the spec checked it; checked again
        // where it is used, so nothing else can reach the request line).
        if !is_hostname(host) {
            continue;
        }
        let mut confirmed = 0;
        loop {
            let last = match get(target, host, file).await {
                Ok((200, body)) if body == token => {
                    confirmed += 1;
                    if confirmed == 2 {
                        break;
                    }
                    tokio::time::sleep(CONFIRM_AFTER).await;
                    continue;
                }
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => e,
            };
            confirmed = 0;
            if Instant::now() >= deadline {
                return Err(format!(
                    "nginx did not serve the ACME webroot for {host} on {target} within {} s of \
                     the reload (last answer: {last}); certbot was not run, so no failed \
                     validation counts against Let's Encrypt's limits; check that nginx runs and \
                     took the reload (nginx.reload), nginx.http_port, and that no other server \
                     listens on {target} exactly (an address-specific listen wins over the \
                     vhost's); behind a PROXY-protocol balancer set nginx.acme_probe: false",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
    Ok(())
}

/// One `GET /.well-known/acme-challenge/<file>` with `Host: host`: (status, body).
async fn get(target: SocketAddr, host: &str, file: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(target).await?;
        let request = format!(
            "GET /.well-known/acme-challenge/{file} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: \
             gitmoor-probe\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(ANSWER_CAP).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
        .map_err(|e| format!("cannot reach nginx: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "an answer that is not HTTP".to_string())?;
    Ok((status, body.to_string()))
}

/// Letters, digits, `-` and `.`: a DNS name, nothing that could end a header line.
fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// 16 random bytes as hex, from the kernel.
fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    crate::random::fill(&mut bytes).map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hostnames_reach_the_request() {
        assert!(is_hostname("api.example.fr"));
        assert!(is_hostname("xn--bcher-kva.example"));
        assert!(!is_hostname("*.example.fr"));
        assert!(!is_hostname("a.example\r\nX: y"));
        assert!(!is_hostname(""));
    }

    #[test]
    fn the_challenge_dir_is_made_readable_but_never_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let made = challenge_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // An operator's mode on a folder that was there stays.
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o775)).unwrap();
        challenge_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o775);

        let other = tempfile::tempdir().unwrap();
        let planted = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(planted.path(), other.path().join(".well-known")).unwrap();
        let err = challenge_dir(other.path()).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert!(!planted.path().join("acme-challenge").exists());
    }

    #[tokio::test]
    async fn a_port_where_nothing_listens_times_out_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = wait_until_served(
            dir.path(),
            port,
            &["api.example.test"],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            err.contains("api.example.test") && err.contains("cannot reach nginx"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join(".well-known/acme-challenge"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "the probe file stays: {left:?}");
    }
}
