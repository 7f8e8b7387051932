//! OpenSSH's known_hosts format, read the way ssh reads it: plain and hashed (`|1|salt|hash`)
//! host patterns with `*`, `?` and `!`, `@revoked` and `@cert-authority` markers, `[host]:port`
//! names. `GitSource` checks an ssh server's key against it (libssh2 offers no such check).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How known_hosts names a host: plain for port 22, `[host]:port` otherwise (as OpenSSH does).
pub(super) fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The key type at the start of an SSH public key blob (`string type, …`).
pub(super) fn key_blob_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

/// `SHA256:…` as `ssh-keygen -l` and ssh print it.
pub(super) fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
pub(super) enum HostPatterns {
    /// `|1|salt|hash`: HMAC-SHA1 of the name, keyed with the salt (`HashKnownHosts yes`).
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns with `*`, `?` and `!` negation.
    Plain(Vec<String>),
}

impl HostPatterns {
    pub(super) fn matches(&self, name: &str) -> bool {
        match self {
            HostPatterns::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            HostPatterns::Plain(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if let Some(negated) = pattern.strip_prefix('!') {
                        if glob_match(negated.as_bytes(), name.as_bytes()) {
                            return false;
                        }
                    } else if glob_match(pattern.as_bytes(), name.as_bytes()) {
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

#[derive(Debug)]
pub(super) struct KnownHost {
    pub(super) line: usize,
    pub(super) marker: Marker,
    pub(super) hosts: HostPatterns,
    pub(super) key_type: String,
    pub(super) key: Vec<u8>,
}

/// The usable lines of a known_hosts file; lines it cannot read are skipped, as ssh does.
pub(super) fn parse_known_hosts(text: &str) -> Vec<KnownHost> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            m if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        if marker != Marker::None {
            match fields.next() {
                Some(f) => first = f,
                None => continue,
            }
        }
        let (Some(key_type), Some(key_b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(key) = STANDARD.decode(key_b64) else {
            continue;
        };
        let hosts = if let Some(hashed) = first.strip_prefix("|1|") {
            let Some((salt, hash)) = hashed.split_once('|') else {
                continue;
            };
            match (STANDARD.decode(salt), STANDARD.decode(hash)) {
                (Ok(salt), Ok(hash)) => HostPatterns::Hashed { salt, hash },
                _ => continue,
            }
        } else {
            HostPatterns::Plain(first.split(',').map(str::to_ascii_lowercase).collect())
        };
        out.push(KnownHost {
            line: i + 1,
            marker,
            hosts,
            key_type: key_type.to_string(),
            key,
        });
    }
    out
}

/// `*` (any run) and `?` (one byte), as OpenSSH's match_pattern.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_and_negation_like_openssh() {
        assert!(glob_match(b"*.example.com", b"git.example.com"));
        assert!(!glob_match(b"*.example.com", b"example.com"));
        assert!(glob_match(b"[127.0.0.?]:22?2", b"[127.0.0.1]:2222"));
        let p = HostPatterns::Plain(vec!["*.example.com".into(), "!bad.example.com".into()]);
        assert!(p.matches("git.example.com"));
        assert!(!p.matches("bad.example.com"));
    }

    #[test]
    fn hashed_known_hosts_entry_matches() {
        // `ssh-keygen -H` output for "[127.0.0.1]:2222", salt and hash made with HMAC-SHA1.
        let salt = b"0123456789abcdefghij".to_vec();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes().to_vec();
        let line = format!(
            "|1|{}|{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            STANDARD.encode(&salt),
            STANDARD.encode(&hash)
        );
        let entries = parse_known_hosts(&line);
        assert_eq!(entries.len(), 1);
        assert!(entries[0].hosts.matches("[127.0.0.1]:2222"));
        assert!(!entries[0].hosts.matches("[127.0.0.1]:2223"));
        assert_eq!(
            key_blob_type(&entries[0].key).as_deref(),
            Some("ssh-ed25519")
        );
    }

    #[test]
    fn known_hosts_markers_and_junk() {
        let text = "# comment\n\n@revoked h ssh-ed25519 AAAA\n@cert-authority *.x ssh-rsa AAAA\n\
                    h,g ssh-rsa not-base64!\nh ssh-ed25519 AAAA extra comment\n@bogus h k AAAA\n";
        let e = parse_known_hosts(text);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].marker, Marker::Revoked);
        assert_eq!(e[1].marker, Marker::CertAuthority);
        assert_eq!((e[2].line, e[2].marker), (6, Marker::None));
    }
}
