//! The firewall as typed values: what `ufw/rules.yaml` asks for, in the terms `ufw` itself uses
//! (the fields of a `### tuple ###` line of `/etc/ufw/user.rules`), so that the desired rules and
//! the ones read back from the host compare as plain values.

use std::fmt;
use std::net::IpAddr;

/// The whole `ufw/rules.yaml`, read and validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallSpec {
    /// The repo file it comes from, for reasons and errors.
    pub file: String,
    pub defaults: Defaults,
    /// In file order (ufw matches the first rule that fits), a list in `from`/`to` expanded to
    /// one rule per address.
    pub rules: Vec<FirewallRule>,
}

/// The default policies. None: not in the file, left as it is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Defaults {
    pub incoming: Option<Policy>,
    pub outgoing: Option<Policy>,
    pub routed: Option<Policy>,
}

/// A default policy, as `ufw default <policy> <direction>` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Allow,
    Deny,
    Reject,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Deny => "deny",
            Policy::Reject => "reject",
        }
    }
}

/// What a rule does with the traffic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Reject,
    /// Allow, but refuse a source that opens more than 6 connections in 30 seconds.
    Limit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Reject => "reject",
            Action::Limit => "limit",
        }
    }

    /// Whether a packet the rule matches gets through (`limit` lets an established session and a
    /// modest rate of new ones through).
    pub fn lets_through(self) -> bool {
        matches!(self, Action::Allow | Action::Limit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A transport protocol; a rule without one (ufw's `any`) matches both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port, a range (`lo:hi`, lo < hi) or every port (ufw's `any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    Any,
    One(u16),
    Range(u16, u16),
}

impl Ports {
    pub fn contains(self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::One(p) => p == port,
            Ports::Range(lo, hi) => (lo..=hi).contains(&port),
        }
    }
}

/// As ufw writes it: `any`, `22`, `8000:8100`.
impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ports::Any => f.write_str("any"),
            Ports::One(p) => write!(f, "{p}"),
            Ports::Range(lo, hi) => write!(f, "{lo}:{hi}"),
        }
    }
}

/// An address or a network in canonical form: the network address (no host bits) and its prefix
/// length. A full-length prefix is a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// None when the prefix is too long for the family or the address has host bits set (ufw
    /// would silently move the rule to the network address: the file must say what it means).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Net> {
        if prefix > max_prefix(addr) || masked(addr, prefix) != addr {
            return None;
        }
        Some(Net { addr, prefix })
    }

    /// One address (/32 or /128).
    pub fn host(addr: IpAddr) -> Net {
        Net {
            addr,
            prefix: max_prefix(addr),
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.addr.is_ipv6() && masked(ip, self.prefix) == self.addr
    }

    /// Every address of `other` is in `self`.
    pub fn covers(&self, other: &Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

/// `192.0.2.3`, `192.0.2.0/24`, `2001:db8::/32`: std's canonical text of the address, with the
/// prefix unless the net is one address (as ufw writes it back).
impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` with every bit past `prefix` cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// A rule's source or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// ufw's `any` (`0.0.0.0/0` and `::/0` in its files).
    Any,
    Net(Net),
}

impl Addr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Addr::Any => true,
            Addr::Net(n) => n.contains(ip),
        }
    }

    /// Every address of `other` is in `self` (for one family).
    pub fn covers(&self, other: &Addr) -> bool {
        match (self, other) {
            (Addr::Any, _) => true,
            (Addr::Net(_), Addr::Any) => false,
            (Addr::Net(a), Addr::Net(b)) => a.covers(b),
        }
    }

    /// Some(true) for an IPv6 net, Some(false) for IPv4, None for `any`.
    pub fn family_v6(&self) -> Option<bool> {
        match self {
            Addr::Any => None,
            Addr::Net(n) => Some(n.is_v6()),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Any => f.write_str("any"),
            Addr::Net(n) => n.fmt(f),
        }
    }
}

/// One rule of the file, after its lists were expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    pub action: Action,
    pub direction: Direction,
    /// None: tcp and udp.
    pub proto: Option<Proto>,
    /// The destination port(s); `Any` when the file gives no `port`.
    pub port: Ports,
    pub from: Addr,
    pub to: Addr,
    /// The file's comment (gitmoor adds its tag when it hands the rule to ufw).
    pub comment: Option<String>,
    /// The line of the rule in the file.
    pub line: u64,
}

impl FirewallRule {
    /// The families ufw puts the rule in: the one of its addresses, or both for `any` to `any`.
    pub fn families(&self) -> Vec<bool> {
        match self.from.family_v6().or(self.to.family_v6()) {
            Some(v6) => vec![v6],
            None => vec![false, true],
        }
    }
}

/// How a rule reads in a plan or an error: `allow in 22/tcp from 192.0.2.3 to any`.
pub fn describe(
    action: Action,
    direction: Direction,
    proto: Option<Proto>,
    port: Ports,
    from: &Addr,
    to: &Addr,
) -> String {
    let what = match (port, proto) {
        (Ports::Any, None) => "all traffic".to_string(),
        (Ports::Any, Some(p)) => format!("all {}", p.as_str()),
        (port, None) => format!("{port}"),
        (port, Some(p)) => format!("{port}/{}", p.as_str()),
    };
    format!(
        "{} {} {what} from {from} to {to}",
        action.as_str(),
        direction.as_str()
    )
}

impl fmt::Display for FirewallRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(
            self.action,
            self.direction,
            self.proto,
            self.port,
            &self.from,
            &self.to,
        ))
    }
}
