//! Whether the running nginx serves the ACME webroot for a site's names: checked after the
//! reload that installs the site's ACME-only vhost and before certbot runs.
//!
//! Why: `nginx -s reload` (or the configured reload) returns once the master has the signal;
//! the workers take the new config a moment later, a slow host's later still. certbot started
//! at once can have its challenge fetched through the old config, and each failed validation
//! counts against Let's Encrypt's limits (5 per name per hour). So a probe file is put in the
//! webroot and asked for, as the ACME server will ask, until nginx answers it for every name.

use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long nginx may take to serve the new vhost after the reload returned.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// The most of an answer read (a probe file is a few dozen bytes).
const ANSWER_CAP: u64 = 16 * 1024;

/// Waits until nginx, on `127.0.0.1:http_port`, answers a probe file of `webroot`'s
/// `/.well-known/acme-challenge/` for each of `names` (as `Host`), for at most `timeout`.
/// The probe file is removed whatever the outcome.
pub async fn wait_until_served(
    webroot: &Path,
    http_port: u16,
    names: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = webroot.join(".well-known/acme-challenge");
    // Readable by nginx's workers whatever gitmoor's umask, as certbot makes them.
    let readable = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    std::fs::create_dir_all(&dir)
        .and_then(|()| readable(&webroot.join(".well-known"), 0o755))
        .and_then(|()| readable(&dir, 0o755))
        .map_err(|e| {
            format!(
                "cannot make {}: {e}; check nginx.acme_webroot",
                dir.display()
            )
        })?;
    let token = random_token()?;
    let name = format!("gitmoor-probe-{token}");
    let file = dir.join(&name);
    std::fs::write(&file, &token)
        .and_then(|()| readable(&file, 0o644))
        .map_err(|e| format!("cannot write the probe file {}: {e}", file.display()))?;
    let served = probe_all(http_port, names, &name, &token, timeout).await;
    let _ = std::fs::remove_file(&file);
    served
}

async fn probe_all(
    http_port: u16,
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
        let mut last;
        loop {
            last = match get(http_port, host, file).await {
                Ok((200, body)) if body == token => break,
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "nginx did not serve the ACME webroot for {host} on port {http_port} within \
                     {} s of the reload (last answer: {last}); certbot was not run, so no failed \
                     validation counts against Let's Encrypt's limits; check that nginx runs \
                     and took the reload (nginx.reload), and nginx.http_port",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
    Ok(())
}

/// One `GET /.well-known/acme-challenge/<file>` with `Host: host`: (status, body).
async fn get(port: u16, host: &str, file: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
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
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
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
