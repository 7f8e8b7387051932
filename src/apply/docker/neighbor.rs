//! After a container starts, the host is told its address on each bridge (a neighbour entry,
//! what ARP would have learnt), so traffic from the host reaches it at once.
//!
//! Why: dockerd 20.10 opens a published port (docker-proxy, and the DNAT rule) when the
//! container joins its network, ~200 ms *before* runc brings the container's interface up. A
//! connection in that window makes the host resolve the container's address while the bridge
//! has no live port: the ARP request is lost, the kernel queues the connection and asks again
//! only after `retrans_time_ms` (1 s). So after every recreate of a published service that
//! something polls, the new port accepted connections that hung ~1 s (measured: the same with
//! `docker stop; docker run` by hand). Once the start call returns the interface is up; writing
//! the entry then releases what was queued and the new container answers at once.
//!
//! Best effort, never an error: it needs the daemon on this machine (a unix socket), gitmoor in
//! the host's network namespace and CAP_NET_ADMIN; without them the kernel's own retry stands.
//! Only IPv4 on bridge networks; the entry is `STALE`, so the kernel still confirms it on use.

use super::DockerExecutor;
use bollard::models::{ContainerInspectResponse, NetworkInspect};
use std::net::Ipv4Addr;
use std::time::Duration;
use tracing::debug;

const AF_INET: u8 = 2;
const AF_NETLINK: i32 = 16;
const SOCK_RAW: i32 = 3;
const SOCK_CLOEXEC: i32 = 0o2000000;
const NETLINK_ROUTE: i32 = 0;
const RTM_NEWNEIGH: u16 = 28;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NUD_STALE: u16 = 0x04;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// The option naming a bridge network's Linux interface (`docker0` for the default bridge).
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// One host neighbour entry to write: container address and MAC on a bridge interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Neighbor {
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

impl DockerExecutor {
    /// Writes the host's neighbour entry of the just-started container `id` on each bridge
    /// network it joined (see the module doc). Does nothing for a remote daemon; a failure is
    /// logged at debug level and otherwise ignored.
    pub(crate) async fn announce_to_host(&self, id: &str) {
        if !self.local {
            return;
        }
        let Ok(info) = self.docker.inspect_container(id, None).await else {
            return;
        };
        for (network_id, ip, mac) in endpoints(&info) {
            let Ok(network) = self.docker.inspect_network(&network_id, None).await else {
                continue;
            };
            let Some(bridge) = bridge_interface(&network) else {
                continue;
            };
            let n = Neighbor { bridge, ip, mac };
            match tokio::task::spawn_blocking({
                let n = n.clone();
                move || write_neighbor(&n)
            })
            .await
            {
                Ok(Ok(())) => {
                    debug!(bridge = %n.bridge, ip = %n.ip, "host neighbour entry written")
                }
                Ok(Err(e)) => {
                    debug!(bridge = %n.bridge, ip = %n.ip, "host neighbour entry not written: {e}")
                }
                Err(_) => {}
            }
        }
    }
}

/// Per network the container is attached to: (network id, IPv4 address, MAC). Endpoints
/// without both (host, none, `container:` modes, IPv6-only) are left out.
fn endpoints(info: &ContainerInspectResponse) -> Vec<(String, Ipv4Addr, [u8; 6])> {
    let networks = info
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref());
    let mut out = Vec::new();
    for endpoint in networks.into_iter().flat_map(|n| n.values()) {
        let ip = endpoint.ip_address.as_deref().and_then(|a| a.parse().ok());
        let mac = endpoint.mac_address.as_deref().and_then(parse_mac);
        let id = endpoint.network_id.clone().filter(|i| !i.is_empty());
        if let (Some(id), Some(ip), Some(mac)) = (id, ip, mac) {
            out.push((id, ip, mac));
        }
    }
    out.sort();
    out
}

/// The Linux interface of a bridge network: its `com.docker.network.bridge.name` option, else
/// dockerd's default `br-<first 12 characters of the id>`. None for other drivers.
fn bridge_interface(network: &NetworkInspect) -> Option<String> {
    if network.driver.as_deref() != Some("bridge") {
        return None;
    }
    let named = network
        .options
        .as_ref()
        .and_then(|o| o.get(BRIDGE_NAME_OPTION))
        .filter(|n| !n.is_empty());
    let name = match named {
        Some(n) => n.clone(),
        None => format!("br-{}", network.id.as_deref()?.get(..12)?),
    };
    // An interface name is at most 15 bytes and never a path.
    (name.len() <= 15 && !name.contains('/') && name != "." && name != "..").then_some(name)
}

/// `02:42:ac:14:94:02` → bytes. None unless six hex pairs.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `RTM_NEWNEIGH` (create or replace) for `ip` at `mac` on interface `ifindex`, state STALE:
/// what `ip neigh replace IP lladdr MAC dev BRIDGE nud stale` sends.
fn new_neighbor_message(ifindex: u32, ip: Ipv4Addr, mac: [u8; 6], seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(48);
    // struct nlmsghdr: length (filled in below), type, flags, sequence, port id.
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct ndmsg: family, 3 bytes of padding, ifindex, state, flags, type.
    m.extend_from_slice(&[AF_INET, 0, 0, 0]);
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&NUD_STALE.to_ne_bytes());
    m.extend_from_slice(&[0, 0]);
    // Attributes, each padded to 4 bytes.
    attribute(&mut m, NDA_DST, &ip.octets());
    attribute(&mut m, NDA_LLADDR, &mac);
    let len = u32::try_from(m.len()).unwrap_or(u32::MAX);
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

fn attribute(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(m.len().next_multiple_of(4), 0);
}

/// The errno of the kernel's answer: Some(0) for an acknowledgement, Some(n) for an error, None
/// when the answer is not an `NLMSG_ERROR` message.
fn ack_errno(answer: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR {
        return None;
    }
    let error = i32::from_ne_bytes(answer.get(16..20)?.try_into().ok()?);
    Some(-error)
}

fn write_neighbor(n: &Neighbor) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Read};
    // /sys/class/net shows the interfaces of this process's network namespace: a bridge that is
    // not there means gitmoor does not share the host's (it runs in a container).
    let ifindex: u32 = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", n.bridge))?
        .trim()
        .parse()
        .map_err(|_| Error::new(ErrorKind::InvalidData, "unreadable ifindex"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::from(AF_NETLINK),
        socket2::Type::from(SOCK_RAW | SOCK_CLOEXEC),
        Some(socket2::Protocol::from(NETLINK_ROUTE)),
    )?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    // Unbound and unconnected, a netlink socket sends to the kernel.
    socket.send(&new_neighbor_message(ifindex, n.ip, n.mac, 1))?;
    let mut answer = [0u8; 512];
    let len = (&socket).read(&mut answer)?;
    match ack_errno(&answer[..len]) {
        Some(0) => Ok(()),
        Some(errno) => Err(Error::from_raw_os_error(errno)),
        None => Err(Error::new(
            ErrorKind::InvalidData,
            "no netlink acknowledgement",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerInspectResponse, EndpointSettings, NetworkSettings};
    use std::collections::HashMap;

    #[test]
    fn message_matches_the_kernel_layout() {
        let m = new_neighbor_message(7, Ipv4Addr::new(172, 20, 148, 2), [2, 0x42, 1, 2, 3, 4], 9);
        // nlmsghdr 16 + ndmsg 12 + NDA_DST 8 + NDA_LLADDR 10 padded to 12.
        assert_eq!(m.len(), 48);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 48);
        assert_eq!(
            u16::from_ne_bytes(m[4..6].try_into().unwrap()),
            RTM_NEWNEIGH
        );
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x505);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 9);
        assert_eq!(m[16], AF_INET);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(m[24..26].try_into().unwrap()), NUD_STALE);
        assert_eq!(u16::from_ne_bytes(m[28..30].try_into().unwrap()), 8);
        assert_eq!(u16::from_ne_bytes(m[30..32].try_into().unwrap()), NDA_DST);
        assert_eq!(&m[32..36], &[172, 20, 148, 2]);
        assert_eq!(u16::from_ne_bytes(m[36..38].try_into().unwrap()), 10);
        assert_eq!(
            u16::from_ne_bytes(m[38..40].try_into().unwrap()),
            NDA_LLADDR
        );
        assert_eq!(&m[40..46], &[2, 0x42, 1, 2, 3, 4]);
        assert_eq!(&m[46..48], &[0, 0]);
    }

    #[test]
    fn acknowledgements_and_errors_are_told_apart() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(1));
        ack[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        assert_eq!(ack_errno(&ack), None);
        assert_eq!(ack_errno(&[0; 3]), None);
    }

    #[test]
    fn macs_are_six_hex_pairs() {
        assert_eq!(
            parse_mac("02:42:ac:14:94:0f"),
            Some([2, 0x42, 0xac, 0x14, 0x94, 0x0f])
        );
        for bad in [
            "",
            "02:42:ac:14:94",
            "02:42:ac:14:94:02:01",
            "2:42:ac:14:94:02",
            "zz:42:ac:14:94:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    fn network(driver: &str, id: &str, name_option: Option<&str>) -> NetworkInspect {
        NetworkInspect {
            driver: Some(driver.into()),
            id: Some(id.into()),
            options: name_option
                .map(|n| HashMap::from([(BRIDGE_NAME_OPTION.to_string(), n.to_string())])),
            ..Default::default()
        }
    }

    #[test]
    fn bridge_interface_is_named_like_dockerd_does() {
        let id = "04a15a8f44fae69c99037913e20ddd786bc991713c544d602e380042ea1592fe";
        assert_eq!(
            bridge_interface(&network("bridge", id, None)).as_deref(),
            Some("br-04a15a8f44fa")
        );
        assert_eq!(
            bridge_interface(&network("bridge", id, Some("docker0"))).as_deref(),
            Some("docker0")
        );
        assert_eq!(bridge_interface(&network("macvlan", id, None)), None);
        assert_eq!(bridge_interface(&network("bridge", "short", None)), None);
        assert_eq!(
            bridge_interface(&network("bridge", id, Some("../etc"))),
            None
        );
    }

    #[test]
    fn endpoints_need_an_address_and_a_mac() {
        let endpoint = |ip: &str, mac: &str| EndpointSettings {
            network_id: Some("n1".into()),
            ip_address: Some(ip.into()),
            mac_address: Some(mac.into()),
            ..Default::default()
        };
        let info = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    ("a".to_string(), endpoint("172.20.0.2", "02:42:ac:14:00:02")),
                    ("host".to_string(), endpoint("", "")),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            endpoints(&info),
            vec![(
                "n1".to_string(),
                Ipv4Addr::new(172, 20, 0, 2),
                [2, 0x42, 0xac, 0x14, 0, 2]
            )]
        );
    }
}
