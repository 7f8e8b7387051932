//! The Docker guard, pure: which container ports are published past UFW, and the `DOCKER-USER`
//! rules that make UFW's rules decide for them.
//!
//! Why it is needed: Docker DNATs a published port in `PREROUTING` and lets it through in
//! `FORWARD` (its own chains come before UFW's), so a port published on `0.0.0.0` is open to
//! everyone whatever `ufw status` says. `validate` and `plan` flag such ports
//! ([`published_past_firewall`]); with `firewall.docker_guard: enforce`, gitmoor installs a block
//! of `DOCKER-USER` rules ([`docker_user_block`]) in `after.rules` and `after6.rules` (loaded by
//! ufw at boot and on every reload; dockerd creates `DOCKER-USER` only when it is missing and
//! never flushes it, so the rules survive a dockerd restart, as with the ufw-docker project).
//!
//! The block judges only new connections Docker DNATed (`--ctstate DNAT`: exactly the published
//! ports), by the port the client asked for (`--ctorigdstport`, the host port, not the
//! container's), with the rules of `ufw/rules.yaml` in their order and the default incoming
//! policy last: "allow 8080/tcp" in the file opens the port published as 8080, and nothing
//! else is needed.

use crate::config::firewall::DockerGuard;
use crate::spec::error::SpecError;
use crate::spec::model::HostSpec;
use crate::spec::ufw::{Action, Addr, Direction, FirewallRule, FirewallSpec, Policy, Proto};
use std::net::IpAddr;

/// The first line of gitmoor's block in `after.rules`/`after6.rules`.
pub const BLOCK_BEGIN: &str = "# BEGIN gitmoor docker guard (written by gitmoor; do not edit)";
/// Its last line.
pub const BLOCK_END: &str = "# END gitmoor docker guard";

/// Who a published port is open to, by the rules of the file (first match, then the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Everyone.
    Open,
    /// Only some sources (these), every other source falls to a closed default.
    Partly(Vec<String>),
    /// No one.
    Closed,
}

/// One port a compose file publishes on a non-loopback address that UFW's rules do not open to
/// everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub stack: String,
    pub service: String,
    pub compose_file: String,
    /// `0.0.0.0` for all addresses (compose's empty `host_ip`).
    pub host_ip: String,
    /// None: Docker picks a free port.
    pub host_port: Option<u16>,
    pub proto: String,
    pub reach: Reach,
}

impl PublishedPort {
    fn what(&self) -> String {
        match self.host_port {
            Some(p) => format!("{}:{p}/{}", self.host_ip, self.proto),
            None => format!("{}:<any free port>/{}", self.host_ip, self.proto),
        }
    }

    /// The finding for this port under `mode` (None: nothing to say). Refuse gives an error,
    /// warn and enforce a warning.
    pub fn finding(&self, mode: DockerGuard, ufw_file: &str) -> Option<(bool, SpecError)> {
        let key = format!("services.{}.ports", self.service);
        let what = self.what();
        let fix_loopback = "publish it on 127.0.0.1 (`127.0.0.1:PORT:PORT`) behind an Nginx site";
        let message = match (mode, &self.reach) {
            (DockerGuard::Off, _) | (_, Reach::Open) => return None,
            (DockerGuard::Enforce, Reach::Partly(_)) => return None,
            (DockerGuard::Enforce, Reach::Closed) => format!(
                "{what} is published, but {ufw_file} does not allow it: with the Docker guard \
                 enforcing, it is closed from outside"
            ),
            (_, Reach::Partly(from)) => format!(
                "{what} is published past UFW: Docker opens it to everyone, though {ufw_file} \
                 allows it only from {}",
                from.join(", ")
            ),
            (_, Reach::Closed) if self.host_port.is_none() => format!(
                "{what} is published past UFW on a port Docker picks: open to everyone, and no \
                 rule can name it"
            ),
            (_, Reach::Closed) => format!(
                "{what} is published past UFW: Docker opens it to everyone, though {ufw_file} \
                 does not allow it"
            ),
        };
        let fix = match self.host_port {
            Some(p) => format!(
                "{fix_loopback}, or allow {p}/{} in {ufw_file}{}",
                self.proto,
                if mode == DockerGuard::Enforce {
                    ""
                } else {
                    ", or set firewall.docker_guard: enforce in gitmoor's config so UFW's rules decide"
                }
            ),
            None => format!("{fix_loopback}, or give it a fixed host port and allow that"),
        };
        let err = SpecError::new(&self.compose_file, message)
            .key(key)
            .fix(fix);
        Some((mode == DockerGuard::Refuse, err))
    }
}

/// Whether a compose `host_ip` is loopback (only the host itself can connect).
fn is_loopback(host_ip: &str) -> bool {
    host_ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Every port of the spec published on a non-loopback address that `firewall`'s rules do not
/// open to everyone. Without a firewall file there are no rules to compare with: nothing.
pub fn published_past_firewall(host: &HostSpec) -> Vec<PublishedPort> {
    let Some(fw) = &host.firewall else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (stack_name, stack) in &host.stacks {
        for (service_name, service) in &stack.services {
            for p in &service.ports {
                if is_loopback(&p.host_ip) {
                    continue;
                }
                let host_ip = if p.host_ip.is_empty() {
                    "0.0.0.0".to_string()
                } else {
                    p.host_ip.clone()
                };
                let proto = if p.protocol == "udp" {
                    Proto::Udp
                } else {
                    Proto::Tcp
                };
                let reach = match p.host_port {
                    Some(port) => reach(fw, &host_ip, port, proto),
                    None => Reach::Closed,
                };
                if reach != Reach::Open {
                    out.push(PublishedPort {
                        stack: stack_name.clone(),
                        service: service_name.clone(),
                        compose_file: stack.compose_file.clone(),
                        host_ip,
                        host_port: p.host_port,
                        proto: proto.as_str().into(),
                        reach,
                    });
                }
            }
        }
    }
    out
}

/// The findings of the guard for the whole spec: (errors, warnings).
pub fn docker_guard_findings(
    host: &HostSpec,
    mode: DockerGuard,
) -> (Vec<SpecError>, Vec<SpecError>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let file = host
        .firewall
        .as_ref()
        .map_or("ufw/rules.yaml", |f| f.file.as_str());
    for p in published_past_firewall(host) {
        if let Some((is_error, e)) = p.finding(mode, file) {
            if is_error {
                errors.push(e);
            } else {
                warnings.push(e);
            }
        }
    }
    (errors, warnings)
}

/// Whether `rule` decides an incoming connection to `host_ip:port/proto`, its source aside.
fn rule_fits(rule: &FirewallRule, host_ip: Option<IpAddr>, port: u16, proto: Proto) -> bool {
    if rule.direction != Direction::In
        || rule.proto.is_some_and(|p| p != proto)
        || !rule.port.contains(port)
    {
        return false;
    }
    match (rule.to, host_ip) {
        (Addr::Any, _) => true,
        (Addr::Net(n), Some(ip)) => n.contains(ip),
        // Published on every address: a rule for one destination does not cover them all.
        (Addr::Net(_), None) => false,
    }
}

/// Who can reach `host_ip:port/proto` by the file's rules (first match), the default last.
pub fn reach(fw: &FirewallSpec, host_ip: &str, port: u16, proto: Proto) -> Reach {
    let ip = host_ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified());
    let mut some: Vec<String> = Vec::new();
    for rule in &fw.rules {
        if !rule_fits(rule, ip, port, proto) {
            continue;
        }
        match rule.from {
            // Everyone (but sources a deny before it shut out).
            Addr::Any if rule.action.lets_through() => return Reach::Open,
            Addr::Any => {
                return if some.is_empty() {
                    Reach::Closed
                } else {
                    Reach::Partly(some)
                }
            }
            Addr::Net(n) if rule.action.lets_through() => some.push(n.to_string()),
            Addr::Net(_) => {}
        }
    }
    match fw.defaults.incoming {
        Some(Policy::Allow) => Reach::Open,
        _ if some.is_empty() => Reach::Closed,
        _ => Reach::Partly(some),
    }
}

/// The `DOCKER-USER` block for `after.rules` (`v6` false) or `after6.rules`, from the file's
/// rules of that family, in their order, then the default incoming policy. A rule for `any` to
/// `any` is in both.
pub fn docker_user_block(fw: &FirewallSpec, v6: bool) -> String {
    let mut lines: Vec<String> = vec![
        BLOCK_BEGIN.to_string(),
        "*filter".into(),
        ":DOCKER-USER - [0:0]".into(),
        // Replies and related traffic of connections already let in.
        "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".into(),
        // Only the published ports are judged: Docker DNATs exactly those.
        "-A DOCKER-USER -m conntrack ! --ctstate DNAT -j RETURN".into(),
        // Containers reaching a published port of another container (through the host's
        // address) are not "outside".
        "-A DOCKER-USER -i docker0 -j RETURN".into(),
        "-A DOCKER-USER -i br-+ -j RETURN".into(),
    ];
    for rule in &fw.rules {
        if rule.direction != Direction::In || !rule.families().contains(&v6) {
            continue;
        }
        let mut words: Vec<String> = vec!["-A".into(), "DOCKER-USER".into()];
        if let Addr::Net(n) = rule.from {
            words.extend(["-s".into(), n.to_string()]);
        }
        if let Some(p) = rule.proto {
            words.extend(["-p".into(), p.as_str().into()]);
        }
        let port = rule.port.to_string();
        let has_port = port != "any";
        if has_port || rule.to != Addr::Any {
            words.extend(["-m".into(), "conntrack".into()]);
            if let Addr::Net(n) = rule.to {
                words.extend(["--ctorigdst".into(), n.to_string()]);
            }
            if has_port {
                words.extend(["--ctorigdstport".into(), port]);
            }
        }
        words.extend(["-j".into(), target(rule.action).into()]);
        lines.push(words.join(" "));
    }
    let last = match fw.defaults.incoming {
        Some(Policy::Allow) => "RETURN",
        Some(Policy::Reject) => "REJECT",
        // Unset (left as the host has it) counts as closed: the guard errs on the closed side.
        Some(Policy::Deny) | None => "DROP",
    };
    lines.push(format!("-A DOCKER-USER -j {last}"));
    lines.push("COMMIT".into());
    lines.push(BLOCK_END.to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn target(action: Action) -> &'static str {
    match action {
        // `limit` is allow with a rate; the block lets it through (ufw's limit chain is for
        // its own input rules).
        Action::Allow | Action::Limit => "RETURN",
        Action::Deny => "DROP",
        Action::Reject => "REJECT",
    }
}

/// `existing` (the text of `after.rules`) with gitmoor's block replaced by `block`, or added at
/// the end; `block` None removes it. Everything outside the markers is kept byte for byte. An
/// error when the markers are broken (a BEGIN without its END): gitmoor does not guess where
/// its block ends in a file the admin edits too.
pub fn splice_block(existing: &str, block: Option<&str>) -> Result<String, String> {
    let begin = find_line(existing, BLOCK_BEGIN);
    let end = find_line(existing, BLOCK_END);
    let (before, after) = match (begin, end) {
        (None, None) => (existing, ""),
        (Some(b), Some(e)) if b < e => {
            let end_of_end = existing[e..]
                .find('\n')
                .map_or(existing.len(), |i| e + i + 1);
            (&existing[..b], &existing[end_of_end..])
        }
        _ => {
            return Err(format!(
                "gitmoor's block is broken: `{BLOCK_BEGIN}` and `{BLOCK_END}` must each be on a \
                 line of their own, in that order; fix or remove them by hand"
            ))
        }
    };
    let mut out = String::with_capacity(existing.len() + block.map_or(0, str::len));
    out.push_str(before);
    if let Some(block) = block {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(block);
    }
    out.push_str(after);
    Ok(out)
}

/// The byte offset of the line that is exactly `line` (trailing spaces aside).
fn find_line(text: &str, line: &str) -> Option<usize> {
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        if l.trim_end() == line {
            return Some(at);
        }
        at += l.len();
    }
    None
}

#[cfg(test)]
#[path = "docker_guard_tests.rs"]
mod tests;
