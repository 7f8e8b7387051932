//! What UFW holds, parsed from what it writes (pure: the caller reads the files and runs the
//! commands, argv only and with `LC_ALL=C`, since `ufw status` is translated).
//!
//! Sources, most machine-readable first:
//! - the rules: the `### tuple ###` lines of `/etc/ufw/user.rules` and `user6.rules`. They are
//!   what ufw itself reads back, field by field (action, proto, dport, dst, sport, src,
//!   direction), with the comment hex-encoded, so no column guessing and no escaping problem. A
//!   rule's number in `ufw status numbered` follows from them: the IPv4 rules in file order,
//!   then the IPv6 ones.
//! - the default policies and IPv6: `/etc/default/ufw` (`DEFAULT_INPUT_POLICY="DROP"`,
//!   `IPV6=yes`), which `ufw default` writes and `ufw status verbose` reads from; `ufw status`
//!   does not show them at all while the firewall is inactive.
//! - on or off: the first line of `ufw status` (`Status: active`), which checks the running
//!   chains rather than the `ENABLED=` of `ufw.conf`.
//! - the established SSH sessions: `/proc/net/tcp` and `/proc/net/tcp6` of gitmoor's network
//!   namespace (no process needed, and nothing to parse in columns that vary by version).

use crate::spec::ufw::{Action, Addr, Defaults, Direction, Net, Policy, Ports, Proto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The firewall as it is on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedFirewall {
    /// `ufw status` says active.
    pub enabled: bool,
    /// The default policies now (None: ufw does not set that one, e.g. routed `disabled`).
    pub defaults: Defaults,
    /// `IPV6=yes`: ufw also writes the IPv6 rules (a rule for `any` goes in both files).
    pub ipv6: bool,
    /// Every rule, in `ufw status numbered` order.
    pub rules: Vec<ObservedRule>,
    /// What the Docker guard needs: its files and the live `DOCKER-USER` chains.
    pub docker_user: DockerUserSeen,
}

/// The Docker guard's side of the host, IPv4 then IPv6 (`[v4, v6]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DockerUserSeen {
    /// `after.rules` and `after6.rules` as they are (None: no such file).
    pub after_files: [Option<String>; 2],
    /// The lines of `iptables -S DOCKER-USER` and `ip6tables -S DOCKER-USER` now: empty when
    /// the chain is not there; None when they could not be run (no iptables; why in
    /// `chain_errors`). Read every reconcile: a chain flushed by hand (or by a tool rebuilding
    /// the firewall) is seen and loaded again.
    pub chains: [Option<Vec<String>>; 2],
    pub chain_errors: Vec<String>,
    /// Whether `FORWARD` sends to `DOCKER-USER` first (`-S FORWARD`); None when not read.
    /// dockerd 20.10 makes that jump for IPv4 only, so with IPv6 NAT (`--ip6tables`) a
    /// published IPv6 port would pass by the chain.
    pub forward_jump_first: [Option<bool>; 2],
}

/// Whether the first rule of `FORWARD` (the lines of `iptables -S FORWARD`) is the jump to
/// `DOCKER-USER`.
pub fn forward_starts_with_docker_user(lines: &[String]) -> bool {
    lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("-A FORWARD"))
        .is_some_and(|l| l == "-A FORWARD -j DOCKER-USER")
}

/// One rule of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRule {
    /// Its number in `ufw status numbered` (1-based; IPv4 rules first).
    pub number: usize,
    /// The rule in ufw's own terms; None for one gitmoor cannot represent (another protocol
    /// such as `esp`, a malformed line): never deleted by gitmoor, and reported.
    pub tuple: Option<Tuple>,
    /// The decoded comment ("" when none).
    pub comment: String,
    /// From `user6.rules`.
    pub v6: bool,
    /// The tuple line as it is in the file, for reports.
    pub raw: String,
}

/// The fields of a `### tuple ###` line: `action proto dport dst sport src [dapp sapp] dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    pub action: Action,
    /// `allow_log`, `deny_log-all`: the log type after the action ("" when none).
    pub log: String,
    /// A `route` rule (the forward chain, not the host's own input).
    pub route: bool,
    pub proto: Option<Proto>,
    pub dport: Ports,
    pub dst: Addr,
    pub sport: Ports,
    pub src: Addr,
    pub direction: Direction,
    /// `in_eth0`, `in_eth0!out_eth1`: the interface part ("" when the rule has none).
    pub iface: String,
    /// The application profiles (`OpenSSH`), "" when none. The ports are resolved in the tuple.
    pub app: String,
}

impl Tuple {
    /// A rule gitmoor could have made: no route, interface, application profile or log type.
    /// Only such rules are compared with the file and deleted.
    pub fn is_plain(&self) -> bool {
        !self.route && self.iface.is_empty() && self.app.is_empty() && self.log.is_empty()
    }
}

/// Parses `user.rules` (`v6` false) or `user6.rules`: (tuple, comment, raw line) per rule, in
/// file order. Lines that are not tuples are ignored, as ufw does.
pub fn parse_user_rules(text: &str) -> Vec<(Option<Tuple>, String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("### tuple ###") else {
            continue;
        };
        // `comment=` is always last (ufw splits it off the same way).
        let (fields, comment) = match rest.split_once(" comment=") {
            Some((f, hex)) => (f, decode_comment(hex.trim())),
            None => (rest, String::new()),
        };
        out.push((parse_tuple(fields), comment, line.trim().to_string()));
    }
    out
}

/// Both rules files into the observed rules, numbered as `ufw status numbered` numbers them.
pub fn parse_rules_files(v4: &str, v6: &str) -> Vec<ObservedRule> {
    let mut out = Vec::new();
    for (text, is_v6) in [(v4, false), (v6, true)] {
        for (tuple, comment, raw) in parse_user_rules(text) {
            out.push(ObservedRule {
                number: out.len() + 1,
                tuple,
                comment,
                v6: is_v6,
                raw,
            });
        }
    }
    out
}

fn decode_comment(hex_text: &str) -> String {
    match hex::decode(hex_text) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // Shown as it is rather than lost: it is only ever reported.
        Err(_) => hex_text.to_string(),
    }
}

fn parse_tuple(fields: &str) -> Option<Tuple> {
    let f: Vec<&str> = fields.split_whitespace().collect();
    let (dir_field, app) = match f.len() {
        7 => (f[6], String::new()),
        9 => {
            let apps: Vec<String> = [f[6], f[7]]
                .iter()
                .filter(|a| **a != "-")
                .map(|a| a.replace("%20", " "))
                .collect();
            (f[8], apps.join(","))
        }
        _ => return None,
    };
    let (route, action_field) = match f[0].strip_prefix("route:") {
        Some(a) => (true, a),
        None => (false, f[0]),
    };
    let (action_word, log) = match action_field.split_once('_') {
        Some((a, l)) => (a, l.to_string()),
        None => (action_field, String::new()),
    };
    let action = match action_word {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "reject" => Action::Reject,
        "limit" => Action::Limit,
        _ => return None,
    };
    let proto = match f[1] {
        "any" => None,
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => return None,
    };
    let (direction, iface) = match dir_field.split_once('_') {
        Some((d, _)) if dir_field.contains('!') => (d, dir_field.to_string()),
        Some((d, _)) => (d, dir_field.to_string()),
        None => (dir_field, String::new()),
    };
    let direction = match direction {
        "in" => Direction::In,
        "out" => Direction::Out,
        _ => return None,
    };
    Some(Tuple {
        action,
        log,
        route,
        proto,
        dport: parse_ports(f[2])?,
        dst: parse_addr(f[3])?,
        sport: parse_ports(f[4])?,
        src: parse_addr(f[5])?,
        direction,
        iface,
        app,
    })
}

/// A rule of the host gitmoor cannot represent as a [`Tuple`] (a port list `22,80` that
/// `ufw deny 22,80/tcp` makes, another protocol, a field it does not know), read only as far as
/// the SSH lockout guard needs, erring on the closed side: what cannot be read is taken as
/// "every port", "every source", "may be TCP", "may judge the host's own input".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseRule {
    /// None: an action word gitmoor does not know (counted as closing).
    pub action: Option<Action>,
    /// May judge incoming traffic to the host itself (not a route rule, not `out`).
    pub incoming: bool,
    /// Its protocol may be TCP (`tcp`, `any`, or one not read).
    pub tcp: bool,
    /// The destination ports as ranges (a single port is `(p, p)`); None: every port, or not
    /// read.
    pub dports: Option<Vec<(u16, u16)>>,
    /// The source; None when it could not be read (every source, for a deny).
    pub src: Option<Addr>,
    /// Everything else read and neutral (no interface, no application, destination any, source
    /// port any): an allow of this rule surely applies.
    pub plain: bool,
}

impl LooseRule {
    /// Whether the rule may decide a connection to `port`.
    pub fn may_have_port(&self, port: u16) -> bool {
        self.dports
            .as_ref()
            .is_none_or(|r| r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port)))
    }
}

/// The conservative reading of a `### tuple ###` line (the whole line, as in
/// [`ObservedRule::raw`]); None when it is not one.
pub fn parse_loose(raw: &str) -> Option<LooseRule> {
    let rest = raw.trim().strip_prefix("### tuple ###")?;
    let fields = rest.split_once(" comment=").map_or(rest, |(f, _)| f);
    let f: Vec<&str> = fields.split_whitespace().collect();
    let word = |i: usize| f.get(i).copied();
    let (route, action_field) = match word(0).and_then(|a| a.strip_prefix("route:")) {
        Some(a) => (true, a),
        None => (false, word(0).unwrap_or("")),
    };
    let action = match action_field.split('_').next() {
        Some("allow") => Some(Action::Allow),
        Some("deny") => Some(Action::Deny),
        Some("reject") => Some(Action::Reject),
        Some("limit") => Some(Action::Limit),
        _ => None,
    };
    let dir_field = match f.len() {
        7 => word(6),
        9 => word(8),
        _ => None,
    };
    let direction = dir_field.map(|d| d.split('_').next().unwrap_or(d));
    let incoming = !route && direction != Some("out");
    let tcp = !matches!(word(1), Some(p) if p != "tcp" && p != "any");
    let dports = word(2).and_then(parse_port_list);
    let src = word(5).and_then(parse_addr);
    let apps = f.len() == 9 && (word(6) != Some("-") || word(7) != Some("-"));
    let plain = direction == Some("in")
        && dir_field.is_some_and(|d| !d.contains('_'))
        && !apps
        && word(3).and_then(parse_addr) == Some(Addr::Any)
        && word(4) == Some("any")
        && src.is_some()
        && action.is_some()
        && action_field.split_once('_').is_none()
        && !route;
    Some(LooseRule {
        action,
        incoming,
        tcp,
        dports,
        src,
        plain,
    })
}

/// `22,80,8000:8100` (ufw's multiport form) as ranges; None for `any` or what does not read.
fn parse_port_list(text: &str) -> Option<Vec<(u16, u16)>> {
    if text == "any" {
        return None;
    }
    text.split(',')
        .map(|part| match parse_ports(part)? {
            Ports::One(p) => Some((p, p)),
            Ports::Range(lo, hi) => Some((lo, hi)),
            Ports::Any => None,
        })
        .collect()
}

/// `any`, `22`, `8000:8100`; ufw also writes port lists (`80,443`), which gitmoor does not make:
/// such a rule is not represented.
fn parse_ports(text: &str) -> Option<Ports> {
    if text == "any" {
        return Some(Ports::Any);
    }
    match text.split_once(':') {
        Some((lo, hi)) => Some(Ports::Range(lo.parse().ok()?, hi.parse().ok()?)),
        None => Some(Ports::One(text.parse().ok()?)),
    }
}

/// `0.0.0.0/0` and `::/0` are `any`; otherwise an address or a network.
fn parse_addr(text: &str) -> Option<Addr> {
    if text == "0.0.0.0/0" || text == "::/0" || text == "any" {
        return Some(Addr::Any);
    }
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    match prefix {
        None => Some(Addr::Net(Net::host(ip))),
        Some(p) => Net::new(ip, p).map(Addr::Net),
    }
}

/// `Status: active` or `Status: inactive`, the first line of `ufw status [verbose]`.
pub fn parse_status_enabled(text: &str) -> Result<bool, String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some("Status: active") => Ok(true),
        Some("Status: inactive") => Ok(false),
        other => Err(format!(
            "unexpected first line of `ufw status`: {:?} (run it with LC_ALL=C)",
            other.unwrap_or("")
        )),
    }
}

/// `/etc/default/ufw`: the default policies (`DEFAULT_INPUT_POLICY="DROP"`, ACCEPT, REJECT) and
/// whether ufw manages IPv6 (`IPV6=yes`).
pub fn parse_default_file(text: &str) -> (Defaults, bool) {
    let mut d = Defaults::default();
    let mut ipv6 = false;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        let policy = match value {
            "ACCEPT" => Some(Policy::Allow),
            "DROP" => Some(Policy::Deny),
            "REJECT" => Some(Policy::Reject),
            _ => None,
        };
        match key.trim() {
            "DEFAULT_INPUT_POLICY" => d.incoming = policy,
            "DEFAULT_OUTPUT_POLICY" => d.outgoing = policy,
            "DEFAULT_FORWARD_POLICY" => d.routed = policy,
            "IPV6" => ipv6 = value == "yes",
            _ => {}
        }
    }
    (d, ipv6)
}

/// IPv4-mapped IPv6 peers (`::ffff:192.0.2.3`) are given as IPv4, the family ufw matches them
/// in.
fn push_peer(out: &mut Vec<(IpAddr, u16)>, ip: IpAddr, port: u16) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if !out.contains(&(ip, port)) {
        out.push((ip, port));
    }
}

/// The peers of established TCP sessions to one of the local `ports`, each with the port, from
/// `/proc/net/tcp` or `/proc/net/tcp6` (state `01`; addresses in hex, each 32-bit word in host
/// byte order).
pub fn parse_proc_net_tcp_peers(text: &str, ports: &[u16]) -> Vec<(IpAddr, u16)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [_, local, remote, state, ..] = cols.as_slice() else {
            continue;
        };
        if *state != "01" {
            continue;
        }
        let (Some((_, lport)), Some((ip, _))) = (proc_addr(local), proc_addr(remote)) else {
            continue;
        };
        if ports.contains(&lport) {
            push_peer(&mut out, ip, lport);
        }
    }
    out
}

fn proc_addr(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word =
        |i: usize| -> Option<u32> { u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok() };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(host_word(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&host_word(word(i)?));
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The bytes of a word the kernel printed as a host-order `%08X`: on a little-endian machine
/// `0100007F` is 127.0.0.1.
fn host_word(w: u32) -> [u8; 4] {
    w.to_ne_bytes()
}

#[cfg(test)]
#[path = "ufw_parse_tests.rs"]
mod tests;
