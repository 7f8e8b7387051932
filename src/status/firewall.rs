//! The `firewall` block of `/status`: what is really reachable from outside. Pure, from what the
//! last reconcile observed (UFW's rules files and the live `DOCKER-USER` chain, read while
//! planning; the published ports, from the container listing): a request never runs ufw.
//!
//! Why it is more than `ufw status`: Docker publishes container ports past UFW (its chains come
//! before UFW's), so a port published on `0.0.0.0` is open to everyone whatever UFW says,
//! unless the Docker guard's `DOCKER-USER` rules are loaded. Each published port says who can
//! reach it, and whether UFW's rules decide that (`covered`).

use crate::config::firewall::DockerGuard;
use crate::observe::ufw_parse::{ObservedFirewall, ObservedRule, Tuple};
use crate::observe::PublishedPortSeen;
use crate::plan::docker_guard::CHAIN_MARK;
use crate::plan::firewall::{describe_observed, is_owned};
use crate::spec::ufw::{Addr, Direction, Policy, Ports, Proto};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallView {
    /// When UFW was read (during the last reconcile of a repo with `ufw/`).
    pub observed_at: String,
    /// `ufw status` said active. Inactive: every port a service listens on is open.
    pub ufw_active: bool,
    /// `allow`, `deny`, `reject`, or None when unknown.
    pub default_incoming: Option<String>,
    /// The config's `firewall.docker_guard`: `off`, `warn`, `refuse` or `enforce`.
    pub docker_guard: String,
    /// gitmoor's `DOCKER-USER` rules are loaded now (IPv4, and IPv6 when ufw manages it), so
    /// UFW's rules decide for published ports too.
    pub docker_guard_active: bool,
    /// The incoming rules that let traffic in (allow, limit), in UFW's order.
    pub open: Vec<OpenRuleView>,
    /// Container ports published on a non-loopback address.
    pub published: Vec<PublishedView>,
    /// UFW's rules gitmoor did not make (kept as they are), as `ufw status numbered` shows them.
    pub unmanaged: Vec<String>,
}

/// One UFW rule that lets traffic in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRuleView {
    /// `443/tcp`, `8000:8100/udp`, `53` (both protocols), `any`.
    pub port: String,
    /// `any`, an address or a network.
    pub from: String,
    /// `any`, or the one destination address.
    pub to: String,
    pub ipv6: bool,
    /// `allow` or `limit`.
    pub action: String,
    /// Made by gitmoor (from `ufw/rules.yaml`).
    pub managed: bool,
}

/// One container port published on a non-loopback address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedView {
    pub container: String,
    pub address: String,
    pub port: u16,
    pub proto: String,
    /// Who can connect: `["any"]`, some sources, or none.
    pub reachable_from: Vec<String>,
    /// UFW's rules decide who reaches it: the Docker guard is active, or the rules open it to
    /// everyone anyway. False: published past UFW.
    pub covered: bool,
    pub note: String,
}

/// The view from the last UFW observation and the published ports.
pub fn firewall_view(
    fw: &ObservedFirewall,
    published: &[PublishedPortSeen],
    mode: DockerGuard,
    observed_at: String,
) -> FirewallView {
    let active = guard_active(fw);
    let open = fw
        .rules
        .iter()
        .filter_map(|r| Some((r, r.tuple.as_ref()?)))
        .filter(|(_, t)| t.action.lets_through() && t.direction == Direction::In && !t.route)
        .map(|(r, t)| OpenRuleView {
            port: port_text(t.dport, t.proto),
            from: t.src.to_string(),
            to: t.dst.to_string(),
            ipv6: r.v6,
            action: t.action.as_str().into(),
            managed: is_owned(&r.comment),
        })
        .collect();
    let published = published
        .iter()
        .filter(|p| !is_loopback(&p.host_ip))
        .map(|p| published_view(fw, p, active))
        .collect();
    FirewallView {
        observed_at,
        ufw_active: fw.enabled,
        default_incoming: fw.defaults.incoming.map(|p| p.as_str().to_string()),
        docker_guard: mode.as_str().into(),
        docker_guard_active: active,
        open,
        published,
        unmanaged: fw
            .rules
            .iter()
            .filter(|r| !is_owned(&r.comment))
            .map(describe_observed)
            .collect(),
    }
}

/// gitmoor's block is loaded first in `DOCKER-USER` (IPv4, and IPv6 when ufw manages it).
fn guard_active(fw: &ObservedFirewall) -> bool {
    let starts_with_block = |chain: &Option<Vec<String>>| {
        chain.as_ref().is_some_and(|c| {
            c.iter()
                .find(|l| l.starts_with("-A "))
                .is_some_and(|l| l.contains(&format!("{CHAIN_MARK}begin-")))
        })
    };
    let chains = &fw.docker_user.chains;
    fw.enabled && starts_with_block(&chains[0]) && (!fw.ipv6 || starts_with_block(&chains[1]))
}

fn port_text(p: Ports, proto: Option<Proto>) -> String {
    match (p, proto) {
        (Ports::Any, None) => "any".into(),
        (Ports::Any, Some(pr)) => format!("any/{}", pr.as_str()),
        (p, None) => p.to_string(),
        (p, Some(pr)) => format!("{p}/{}", pr.as_str()),
    }
}

fn bare(ip: &str) -> &str {
    ip.trim_start_matches('[').trim_end_matches(']')
}

fn is_loopback(ip: &str) -> bool {
    bare(ip).parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn published_view(fw: &ObservedFirewall, p: &PublishedPortSeen, guarded: bool) -> PublishedView {
    let ip = bare(&p.host_ip).parse::<IpAddr>().ok();
    let v6 = ip.is_some_and(|a| a.is_ipv6());
    let proto = if p.proto == "udp" {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    // The guard's block is the file's rules, in order: the rules gitmoor made. The notes say
    // "the repo's firewall rules", not a file name: UFW's reading does not tell whether the
    // commit has `ufw/rules.yaml` or `ufw/rules.yml`, and a wrong name sends the reader to a
    // file that does not exist.
    let by_rules = reach(
        fw.rules
            .iter()
            .filter(|r| r.v6 == v6 && is_owned(&r.comment)),
        ip.filter(|a| !a.is_unspecified()),
        p.host_port,
        proto,
        fw.defaults.incoming,
    );
    let everyone = vec!["any".to_string()];
    let (reachable_from, covered, note) = if guarded {
        let note = match by_rules.as_slice() {
            [] => "closed: the Docker guard drops it, the repo's firewall rules do not allow it",
            [a] if a == "any" => "open to everyone, as the repo's firewall rules allow",
            _ => "open only from the sources the repo's firewall rules allow (the Docker guard)",
        };
        (by_rules, true, note.to_string())
    } else if by_rules == everyone {
        (
            everyone,
            true,
            "open to everyone, as the repo's firewall rules allow".into(),
        )
    } else {
        (
            everyone,
            false,
            "published past UFW: Docker opens it to everyone; publish it on 127.0.0.1, allow it in the repo's firewall rules (ufw/), or set firewall.docker_guard: enforce".into(),
        )
    };
    PublishedView {
        container: p.container.clone(),
        address: p.host_ip.clone(),
        port: p.host_port,
        proto: p.proto.clone(),
        reachable_from,
        covered,
        note,
    }
}

/// Who the rules let reach `ip:port/proto` (first rule that fits, then the default): `["any"]`,
/// the sources allowed, or none.
fn reach<'a>(
    rules: impl Iterator<Item = &'a ObservedRule>,
    ip: Option<IpAddr>,
    port: u16,
    proto: Proto,
    incoming: Option<Policy>,
) -> Vec<String> {
    let mut some: Vec<String> = Vec::new();
    for t in rules.filter_map(|r| r.tuple.as_ref()) {
        if !fits(t, ip, port, proto) {
            continue;
        }
        match t.src {
            Addr::Any if t.action.lets_through() => return vec!["any".into()],
            Addr::Any => return some,
            Addr::Net(n) if t.action.lets_through() => some.push(n.to_string()),
            Addr::Net(_) => {}
        }
    }
    if incoming == Some(Policy::Allow) {
        return vec!["any".into()];
    }
    some
}

fn fits(t: &Tuple, ip: Option<IpAddr>, port: u16, proto: Proto) -> bool {
    if !t.is_plain()
        || t.direction != Direction::In
        || t.proto.is_some_and(|p| p != proto)
        || !t.dport.contains(port)
        || t.sport != Ports::Any
    {
        return false;
    }
    match (t.dst, ip) {
        (Addr::Any, _) => true,
        (Addr::Net(n), Some(ip)) => n.contains(ip),
        (Addr::Net(_), None) => false,
    }
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
