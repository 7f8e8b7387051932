//! Which Engine API version to speak, learnt from `GET /_ping`.
//!
//! bollard's `negotiate_version` asks `GET /version`, which dockerd answers only after it has
//! asked containerd, runc and docker-init for their versions: ~6 ms on dockerd 20.10, paid by
//! every `gitmoor plan` and `apply` before its first listing. `/_ping` carries the same number in
//! its `Api-Version` header and is answered in ~0.3 ms. bollard does not show response headers,
//! so this one request is written by hand on the unix socket; anything unexpected (another
//! transport, no header, a slow or odd answer) falls back to `negotiate_version`.
//!
//! (bollard 0.21 builds its request URLs without the `/vX.Y` prefix, so dockerd answers at its
//! own version whatever is settled here; the version is still settled, now for ~0.3 ms, so that a
//! bollard that sends it speaks one dockerd knows.)

use bollard::ClientVersion;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most a ping's answer may take; a daemon this slow is asked the usual way.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an answer read: headers of a ping are a few hundred bytes.
const MAX_ANSWER: usize = 8 * 1024;

/// The API version dockerd at `socket` speaks, from its ping; None when it cannot be learnt so.
pub async fn ping_api_version(socket: &Path) -> Option<ClientVersion> {
    tokio::time::timeout(PING_TIMEOUT, ask(socket))
        .await
        .ok()
        .flatten()
}

async fn ask(socket: &Path) -> Option<ClientVersion> {
    let mut stream = tokio::net::UnixStream::connect(socket).await.ok()?;
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || answer.len() + n > MAX_ANSWER {
            return None;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    api_version_header(&answer)
}

/// The version to speak: the lower of dockerd's and bollard's own (what bollard's
/// `negotiate_version` picks from `/version`).
pub fn version_to_speak(server: ClientVersion, ours: ClientVersion) -> ClientVersion {
    if server < ours {
        server
    } else {
        ours
    }
}

/// The `Api-Version` header of a `200` answer's head, as `major.minor`.
fn api_version_header(answer: &[u8]) -> Option<ClientVersion> {
    // The head only: a body cut in the middle of a character must not spoil it.
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    if status.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    let value = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("api-version")
            .then(|| value.trim())
    })?;
    let (major, minor) = value.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(answer: &str) -> Option<(usize, usize)> {
        api_version_header(answer.as_bytes()).map(|c| (c.major_version, c.minor_version))
    }

    #[test]
    fn reads_the_header_of_a_ping() {
        let ok = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK";
        assert_eq!(v(ok), Some((1, 41)));
        assert_eq!(
            v("HTTP/1.1 200 OK\r\napi-version:1.47\r\n\r\n"),
            Some((1, 47))
        );
    }

    #[test]
    fn the_lower_version_is_spoken() {
        let v = |major_version, minor_version| ClientVersion {
            major_version,
            minor_version,
        };
        let pick = |a, b| {
            let c = version_to_speak(a, b);
            (c.major_version, c.minor_version)
        };
        assert_eq!(pick(v(1, 41), v(1, 53)), (1, 41));
        assert_eq!(pick(v(1, 54), v(1, 53)), (1, 53));
        assert_eq!(pick(v(1, 53), v(1, 53)), (1, 53));
        assert_eq!(pick(v(2, 0), v(1, 53)), (1, 53));
        assert_eq!(pick(v(0, 99), v(1, 53)), (0, 99));
    }

    #[test]
    fn a_body_cut_mid_character_does_not_spoil_the_head() {
        let mut answer = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\n\r\nOK \xc3".to_vec();
        assert_eq!(
            api_version_header(&answer).map(|c| c.minor_version),
            Some(41)
        );
        answer.truncate(20);
        assert!(api_version_header(&answer).is_none(), "no end of head");
    }

    /// A socket that answers `chunks` (one write each, a pause between), then holds the line.
    fn socket_answering(chunks: Vec<Vec<u8>>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                for c in chunks {
                    let _ = s.write_all(&c);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn a_head_in_two_pieces_is_read_a_silent_or_endless_one_is_not() {
        let (_d, split) = socket_answering(vec![
            b"HTTP/1.1 200 OK\r\nApi-Ver".to_vec(),
            b"sion: 1.41\r\n\r\nOK".to_vec(),
        ]);
        let v = ping_api_version(&split).await.map(|c| c.minor_version);
        assert_eq!(v, Some(41));
        let (_d, silent) = socket_answering(vec![]);
        let t = std::time::Instant::now();
        assert!(ping_api_version(&silent).await.is_none());
        assert!(t.elapsed() < PING_TIMEOUT + std::time::Duration::from_secs(1));
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_ANSWER + 10));
        let (_d, big) = socket_answering(vec![endless]);
        assert!(ping_api_version(&big).await.is_none());
        assert!(
            ping_api_version(std::path::Path::new("/nonexistent/docker.sock"))
                .await
                .is_none()
        );
    }

    #[test]
    fn anything_else_is_asked_the_usual_way() {
        assert_eq!(v("HTTP/1.1 500 Error\r\nApi-Version: 1.41\r\n\r\n"), None);
        assert_eq!(v("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"), None);
        assert_eq!(v("HTTP/1.1 200 OK\r\nApi-Version: one.two\r\n\r\n"), None);
        // A header in the body is not a header.
        assert_eq!(v("HTTP/1.1 200 OK\r\n\r\nApi-Version: 1.41\r\n"), None);
    }
}
