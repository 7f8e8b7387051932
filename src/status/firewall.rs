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
use crate::plan::docker_guard::{block_in, chain_block, ChainBlock, CHAIN_MARK};
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
    /// gitmoor's `DOCKER-USER` rules are in force now (IPv4, and IPv6 when ufw manages it):
    /// UFW active, the chain starting with the whole block the files hold, and `FORWARD`
    /// sending to `DOCKER-USER` first. So UFW's rules decide for published ports too.
    pub docker_guard_active: bool,
    /// Why the guard is not in force, one reason per family (empty when it is, or when
    /// `docker_guard` is not `enforce` and no block is there at all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_guard_not_in_force: Vec<String>,
    /// What a person should know about the guard in force: rules of others before gitmoor's
    /// block in `DOCKER-USER` (an admin's `iptables -I`), which judge first; gitmoor leaves
    /// them (a reload would flush them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_guard_notes: Vec<String>,
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
    let why_not = guard_not_in_force(fw);
    let active = why_not.is_empty();
    let open = fw
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r, r.tuple.as_ref()?)))
        .filter(|(_, _, t)| t.action.lets_through() && t.direction == Direction::In && !t.route)
        .filter(|(i, r, t)| !shadowed(&fw.rules[..*i], r.v6, t))
        .map(|(_, r, t)| OpenRuleView {
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
        .map(|p| published_view(fw, p, active, mode, &why_not))
        .collect();
    FirewallView {
        observed_at,
        ufw_active: fw.enabled,
        default_incoming: fw.defaults.incoming.map(|p| p.as_str().to_string()),
        docker_guard: mode.as_str().into(),
        docker_guard_active: active,
        docker_guard_not_in_force: if active || mode != DockerGuard::Enforce && !has_block(fw) {
            Vec::new()
        } else {
            why_not
        },
        docker_guard_notes: guard_notes(fw),
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

/// Why gitmoor's guard is not in force, per family (IPv4, and IPv6 when ufw manages it);
/// empty when it is: UFW active, the files holding gitmoor's block, the live `DOCKER-USER`
/// starting with that very block (its markers' hash; an older block or one flushed is not in
/// force), and `FORWARD` sending to `DOCKER-USER` first (dockerd 20.10 makes no IPv6 jump: the
/// IPv6 block then judges nothing).
fn guard_not_in_force(fw: &ObservedFirewall) -> Vec<String> {
    if !fw.enabled {
        return vec!["UFW is inactive".into()];
    }
    let seen = &fw.docker_user;
    let mut why = Vec::new();
    let families: &[usize] = if fw.ipv6 { &[0, 1] } else { &[0] };
    for &i in families {
        let (file, tool) = [("after.rules", "iptables"), ("after6.rules", "ip6tables")][i];
        let Some(block) = seen.after_files[i].as_deref().and_then(block_in) else {
            why.push(format!("{file} holds no gitmoor block"));
            continue;
        };
        match seen.chains[i].as_ref().map(|c| chain_block(c, &block)) {
            None => why.push(format!("DOCKER-USER ({tool}) could not be read")),
            Some(ChainBlock::Absent) => why.push(format!(
                "DOCKER-USER ({tool}) does not start with the block {file} holds (flushed, or not loaded yet)"
            )),
            Some(ChainBlock::Other) => why.push(format!(
                "DOCKER-USER ({tool}) does not start with the block {file} holds (an older or incomplete gitmoor block is loaded; gitmoor does not reload it, as a reload flushes the chain, rules of others in it too: run `ufw reload`)"
            )),
            // Behind rules of others: in force for what they let pass (`guard_notes`).
            Some(ChainBlock::First | ChainBlock::Behind(_)) => {}
        }
        if seen.forward_jump_first[i] != Some(true) {
            why.push(format!(
                "FORWARD ({tool}) does not send to DOCKER-USER first: published ports pass by the guard"
            ));
        }
    }
    why
}

/// Rules of others before gitmoor's whole block, per family ufw manages.
fn guard_notes(fw: &ObservedFirewall) -> Vec<String> {
    let seen = &fw.docker_user;
    let families: &[usize] = if fw.ipv6 { &[0, 1] } else { &[0] };
    let mut notes = Vec::new();
    for &i in families {
        let tool = ["iptables", "ip6tables"][i];
        let Some(block) = seen.after_files[i].as_deref().and_then(block_in) else {
            continue;
        };
        let Some(chain) = &seen.chains[i] else {
            continue;
        };
        if let ChainBlock::Behind(before) = chain_block(chain, &block) {
            notes.push(format!(
                "DOCKER-USER ({tool}) has rules before gitmoor's block, which judge first: {}",
                before
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    notes
}

/// Whether the files or the live chains hold anything of gitmoor's guard.
fn has_block(fw: &ObservedFirewall) -> bool {
    let seen = &fw.docker_user;
    seen.after_files
        .iter()
        .flatten()
        .any(|t| block_in(t).is_some())
        || seen
            .chains
            .iter()
            .flatten()
            .any(|c| c.iter().any(|l| l.contains(CHAIN_MARK)))
}

/// Whether a rule before `allow` (in its family) denies or rejects everything `allow` would let
/// in: ufw takes the first rule that fits, so such an allow opens nothing and is not listed.
/// Only a rule that surely covers it counts (a plain incoming one: its protocol, ports, source
/// and destination each the same or wider, no source port); a partial overlap keeps it listed.
fn shadowed(before: &[ObservedRule], v6: bool, allow: &Tuple) -> bool {
    before.iter().filter(|r| r.v6 == v6).any(|r| {
        let Some(d) = &r.tuple else { return false };
        !d.action.lets_through()
            && d.is_plain()
            && d.direction == Direction::In
            && d.sport == Ports::Any
            && (d.proto.is_none() || d.proto == allow.proto)
            && ports_cover(d.dport, allow.dport)
            && d.src.covers(&allow.src)
            && d.dst.covers(&allow.dst)
            && allow.iface.is_empty()
            && allow.sport == Ports::Any
    })
}

fn ports_cover(outer: Ports, inner: Ports) -> bool {
    match (outer, inner) {
        (Ports::Any, _) => true,
        (_, Ports::Any) => false,
        (o, Ports::One(p)) => o.contains(p),
        (o, Ports::Range(lo, hi)) => o.contains(lo) && o.contains(hi),
    }
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

fn published_view(
    fw: &ObservedFirewall,
    p: &PublishedPortSeen,
    guarded: bool,
    mode: DockerGuard,
    why_not: &[String],
) -> PublishedView {
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
    } else if mode == DockerGuard::Enforce {
        (
            everyone,
            false,
            format!(
                "published past UFW: Docker opens it to everyone, because the Docker guard is not in force ({}); the next reconcile puts it back",
                why_not.join("; ")
            ),
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
