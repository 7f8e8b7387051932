//! The DNS preflight before any certificate is asked for: every name of the site must resolve,
//! and every address it resolves to must be this host's. Let's Encrypt validates HTTP-01 by
//! fetching `http://<name>/.well-known/acme-challenge/…` at whatever the name resolves to, and
//! rate-limits failed validations (5 per name per hour, per account): a reconcile loop asking
//! for a name whose DNS points elsewhere would lock the name out for the real fix. So gitmoor
//! asks only once DNS points here, and otherwise says why on the site's error.
//!
//! "Every address", not "one": Let's Encrypt prefers IPv6, so a stale AAAA record pointing
//! elsewhere fails the validation even when the A record is right.

mod interfaces;
mod wire;

pub use interfaces::interface_addresses;

use crate::config::letsencrypt::LetsEncryptConfig;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long one question to a configured server waits for its answer, and how often it is
/// asked (UDP may lose a datagram).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_TRIES: usize = 2;

/// Where names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolver {
    /// The system's resolver (`getaddrinfo`, /etc/hosts and /etc/resolv.conf).
    System,
    /// One DNS server, asked directly over UDP for A and AAAA.
    Server(SocketAddr),
}

/// Why the names of a site were not sent to the ACME server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "site {site}: no certificate was asked for, because Let's Encrypt rate-limits failed \
     validations: {}; point each name's A/AAAA records at this host (behind NAT, list the \
     host's public address in letsencrypt.host_addresses)",
    problems.join("; ")
)]
pub struct PreflightError {
    pub site: String,
    /// One sentence per name that failed, naming it.
    pub problems: Vec<String>,
}

/// The preflight, with the host's addresses and the resolver decided once.
#[derive(Debug, Clone)]
pub struct Preflight {
    pub resolver: Resolver,
    pub host: Vec<IpAddr>,
}

impl Preflight {
    /// From the config: `host_addresses` or the interfaces' addresses, `dns_server` or the
    /// system's resolver.
    pub fn from_config(cfg: &LetsEncryptConfig) -> Result<Preflight, String> {
        let host = match &cfg.host_addresses {
            Some(list) => list.clone(),
            None => interface_addresses()?,
        };
        let resolver = cfg.dns_server.map_or(Resolver::System, Resolver::Server);
        Ok(Preflight { resolver, host })
    }

    /// Ok when every name of `site` resolves to this host only.
    pub async fn check(&self, site: &str, names: &[&str]) -> Result<(), PreflightError> {
        let mut problems = Vec::new();
        for name in names {
            let resolved = self.resolver.lookup(name).await;
            if let Some(p) = judge(name, &resolved, &self.host) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PreflightError {
                site: site.to_string(),
                problems,
            })
        }
    }
}

/// The problem with `name`, if any, given what it resolved to and the host's addresses.
pub fn judge(
    name: &str,
    resolved: &Result<Vec<IpAddr>, String>,
    host: &[IpAddr],
) -> Option<String> {
    let host_text = if host.is_empty() {
        "none found; list them in letsencrypt.host_addresses".to_string()
    } else {
        join(host)
    };
    match resolved {
        Err(e) => Some(format!("{name} could not be resolved ({e})")),
        Ok(addrs) if addrs.is_empty() => Some(format!(
            "{name} does not resolve to any address (this host's addresses: {host_text})"
        )),
        Ok(addrs) => {
            let foreign: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !host.contains(a))
                .collect();
            if foreign.is_empty() {
                return None;
            }
            Some(format!(
                "{name} resolves to {}, and {} not this host's (this host's addresses: \
                 {host_text})",
                join(addrs),
                if foreign.len() == 1 && addrs.len() == 1 {
                    "that is".to_string()
                } else {
                    format!("{} is", join(&foreign))
                }
            ))
        }
    }
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Resolver {
    /// Every A and AAAA address of `name` (empty: it has none). Err when the lookup itself
    /// failed (no answer, a server error).
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        match self {
            Resolver::System => match tokio::net::lookup_host((name, 0)).await {
                Ok(addrs) => {
                    let mut out: Vec<IpAddr> = Vec::new();
                    for a in addrs {
                        if !out.contains(&a.ip()) {
                            out.push(a.ip());
                        }
                    }
                    Ok(out)
                }
                Err(e) => Err(format!("the system resolver: {e}")),
            },
            Resolver::Server(server) => {
                let mut out = ask(*server, name, wire::TYPE_A).await?;
                out.extend(ask(*server, name, wire::TYPE_AAAA).await?);
                Ok(out)
            }
        }
    }
}

/// One question to `server`, over UDP, retried once.
async fn ask(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("cannot reach the DNS server {server}: {e}"))?;
    let id = random_id();
    let q = wire::query(id, name, qtype)?;
    let mut last = format!("no answer from the DNS server {server}");
    for _ in 0..QUERY_TRIES {
        if let Err(e) = sock.send(&q).await {
            last = format!("cannot send to the DNS server {server}: {e}");
            continue;
        }
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        let mut buf = [0u8; 1500];
        // A connected socket receives only from `server`; a datagram for another id is
        // dropped and the wait goes on.
        while let Ok(got) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            match got {
                Ok(n) => match wire::parse_reply(&buf[..n], id) {
                    Ok(wire::Reply::Addresses(a)) => return Ok(a),
                    Ok(wire::Reply::NoSuchName) => return Ok(Vec::new()),
                    Err(e) if e.contains("another question") => continue,
                    Err(e) => return Err(format!("the DNS server {server}: {e}")),
                },
                Err(e) => {
                    last = format!("the DNS server {server}: {e}");
                    break;
                }
            }
        }
    }
    Err(last)
}

/// A question id nobody on the path can guess in advance (std's per-process random keys).
fn random_id() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_name_pointing_here_only_passes() {
        let host = ips(&["192.0.2.10", "2001:db8::10"]);
        assert_eq!(judge("a.test", &Ok(ips(&["192.0.2.10"])), &host), None);
        assert_eq!(
            judge("a.test", &Ok(ips(&["192.0.2.10", "2001:db8::10"])), &host),
            None
        );
    }

    #[test]
    fn a_name_pointing_elsewhere_names_both_sides() {
        let host = ips(&["192.0.2.10"]);
        let p = judge("api.example.fr", &Ok(ips(&["203.0.113.9"])), &host).unwrap();
        assert_eq!(
            p,
            "api.example.fr resolves to 203.0.113.9, and that is not this host's (this \
             host's addresses: 192.0.2.10)"
        );
        // A stale AAAA beside a right A.
        let p = judge(
            "api.example.fr",
            &Ok(ips(&["192.0.2.10", "2001:db8::99"])),
            &host,
        )
        .unwrap();
        assert!(p.contains("2001:db8::99 is not this host's"), "{p}");
    }

    #[test]
    fn no_address_or_a_failed_lookup_is_a_problem_too() {
        let p = judge("a.test", &Ok(vec![]), &[]).unwrap();
        assert!(p.contains("does not resolve"), "{p}");
        assert!(p.contains("letsencrypt.host_addresses"), "{p}");
        let p = judge("a.test", &Err("timeout".into()), &ips(&["192.0.2.10"])).unwrap();
        assert!(p.contains("could not be resolved (timeout)"), "{p}");
    }

    #[test]
    fn the_error_names_the_site_and_says_nothing_was_asked() {
        let e = PreflightError {
            site: "api".into(),
            problems: vec!["x.test does not resolve".into()],
        };
        let s = e.to_string();
        assert!(
            s.starts_with("site api: no certificate was asked for"),
            "{s}"
        );
        assert!(s.contains("rate-limits failed validations"), "{s}");
        assert!(s.contains("x.test does not resolve"), "{s}");
    }

    #[tokio::test]
    async fn the_system_resolver_reads_etc_hosts() {
        let got = Resolver::System.lookup("localhost").await.unwrap();
        assert!(got.iter().any(IpAddr::is_loopback), "{got:?}");
    }

    /// A fake DNS server on loopback answering every A question with 203.0.113.9 and every
    /// AAAA with nothing, after first sending a stray datagram with the wrong id.
    #[tokio::test]
    async fn a_configured_server_is_asked_over_udp() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                let mut m = buf[..n].to_vec();
                let qtype = u16::from_be_bytes([m[n - 4], m[n - 3]]);
                m[2] = 0x81;
                m[3] = 0x80;
                let mut stray = m.clone();
                stray[0] ^= 0xFF;
                server.send_to(&stray, from).await.unwrap();
                if qtype == wire::TYPE_A {
                    m[7] = 1;
                    m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 9]);
                }
                server.send_to(&m, from).await.unwrap();
            }
        });
        let got = Resolver::Server(addr)
            .lookup("x.example.test")
            .await
            .unwrap();
        assert_eq!(got, ips(&["203.0.113.9"]));
        let pf = Preflight {
            resolver: Resolver::Server(addr),
            host: ips(&["127.0.0.1"]),
        };
        let e = pf.check("api", &["x.example.test"]).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("x.example.test resolves to 203.0.113.9"),
            "{e}"
        );
    }
}
