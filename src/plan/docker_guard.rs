//! The Docker guard, pure: which container ports are published past UFW, and the `DOCKER-USER`
//! rules that make UFW's rules decide for them.
//!
//! Why it is needed: Docker DNATs a published port in `PREROUTING` and lets it through in
//! `FORWARD` (its own chains come before UFW's), so a port published on `0.0.0.0` is open to
//! everyone whatever `ufw status` says. `validate` and `plan` flag such ports
//! ([`published_past_firewall`]); with `firewall.docker_guard: enforce`, gitmoor installs a block
//! of `DOCKER-USER` rules ([`docker_user_block`]) in `after.rules` and `after6.rules` (loaded by
//! ufw at boot and on every reload; dockerd creates `DOCKER-USER` only when it is missing and
//! never flushes it, so the rules survive a dockerd restart, as with the ufw-docker project;
//! after a reboot dockerd 20.10 makes the jump to it for IPv4 only, so the IPv6 rules judge
//! nothing until gitmoor's first reconcile puts the jump first: docs/firewall.md).
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

/// What the firewall unit does about the Docker guard's block, after the ufw calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardStep {
    /// `docker_guard: enforce`: the block is written (where it differs) and loaded; otherwise
    /// it is taken out of the files and gitmoor's rules out of the live chains.
    pub enforce: bool,
    /// Why, one reason per file or chain that is not as it should be.
    pub reasons: Vec<String>,
}

/// The guard's step from the files and the live chains as observed, or None when both are as
/// `mode` wants them; and what a person should know (a chain that could not be read). Checked
/// on every reconcile, not only when the rules change: the chain can be flushed while the
/// files stay as they were (a rebuilt firewall, `iptables -F` by hand).
pub fn plan_docker_guard(
    fw: &FirewallSpec,
    observed: &crate::observe::ufw_parse::ObservedFirewall,
    mode: DockerGuard,
) -> (Option<GuardStep>, Vec<String>) {
    let enforce = mode == DockerGuard::Enforce;
    let seen = &observed.docker_user;
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    for (i, (name, tool)) in [("after.rules", "iptables"), ("after6.rules", "ip6tables")]
        .into_iter()
        .enumerate()
    {
        let v6 = i == 1;
        let block = enforce.then(|| docker_user_block(fw, v6));
        let reasons_before = reasons.len();
        match (&seen.after_files[i], &block) {
            (None, None) => {}
            (None, Some(_)) => reasons.push(format!("{name} is missing: gitmoor writes its block")),
            (Some(text), _) => match splice_block(text, block.as_deref()) {
                Ok(new) if new == *text => {}
                Ok(_) if enforce => reasons.push(format!(
                    "{name} does not hold the block for {} (new, or the rules changed)",
                    fw.file
                )),
                Ok(_) => reasons.push(format!(
                    "{name} still holds gitmoor's block, and firewall.docker_guard is {}",
                    mode.as_str()
                )),
                // The executor says it again, with the file's path, and changes nothing.
                Err(e) => reasons.push(format!("{name}: {e}")),
            },
        }
        // ufw loads after6.rules only with IPV6=yes; inactive, it loads nothing until the
        // enable step, which loads the files as written.
        if !observed.enabled || (v6 && !observed.ipv6) {
            continue;
        }
        let Some(chain) = &seen.chains[i] else {
            if enforce {
                notes.push(format!(
                    "the live DOCKER-USER chain ({tool}) could not be read, so only {name} is checked: {}",
                    seen.chain_errors.join("; ")
                ));
            }
            continue;
        };
        let at = block.as_deref().map(|b| chain_block(chain, b));
        match &at {
            Some(ChainBlock::Behind(before)) => {
                notes.push(format!(
                "DOCKER-USER ({tool}) has rules before gitmoor's block, which judge first: {}; \
                 left as they are (a `ufw reload` would flush them)",
                before.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
            ))
            }
            // A file to write: the reload that loads it is the unit's, said by its reason.
            Some(ChainBlock::Other) if reasons.len() == reasons_before => notes.push(format!(
                "DOCKER-USER ({tool}) holds an older or incomplete gitmoor block, not the one \
                 {name} has; not reloaded, because a reload flushes the chain with the rules of \
                 others in it: run `ufw reload` to load the block"
            )),
            _ => {}
        }
        match &at {
            Some(ChainBlock::Absent) => reasons.push(format!(
                "DOCKER-USER ({tool}) does not start with gitmoor's rules as {name} has them \
                 (flushed by hand or by a restart of the firewall, or not loaded yet): loaded again"
            )),
            Some(ChainBlock::First | ChainBlock::Behind(_))
                if seen.forward_jump_first[i] == Some(false) =>
            {
                reasons.push(format!(
                "FORWARD ({tool}) does not send to DOCKER-USER first (dockerd 20.10 makes that \
                 jump for IPv4 only; a dockerd restart puts its own rules first): put first"
                ))
            }
            None if chain_has_marks(chain) => reasons.push(format!(
                "DOCKER-USER ({tool}) still holds gitmoor's rules, and firewall.docker_guard is {}",
                mode.as_str()
            )),
            _ => {}
        }
    }
    // The block declares `:DOCKER-USER - [0:0]` (ufw must create the chain at boot, before
    // dockerd): each reload that loads it flushes the chain, rules of others in it too. Said
    // before it happens. Only a jump to put first is done without a reload.
    let reloads = enforce && reasons.iter().any(|r| !r.starts_with("FORWARD ("));
    if reloads {
        for (i, tool) in ["iptables", "ip6tables"].into_iter().enumerate() {
            let Some(chain) = &seen.chains[i] else {
                continue;
            };
            let foreign = foreign_rules_in_chain(chain);
            if !foreign.is_empty() {
                notes.push(format!(
                    "DOCKER-USER ({tool}) holds rules gitmoor did not make, which the `ufw reload` of the Docker guard's step drops (the block declares the chain, so loading it flushes it; so does any later `ufw reload` or boot): {}; to keep such a rule, say it in {} (the block carries its incoming rules) or put it in after.rules outside gitmoor's block",
                    foreign.iter().map(|l| format!("`{}`", l.trim())).collect::<Vec<_>>().join(", "),
                    fw.file
                ));
            }
        }
    }
    let step = (!reasons.is_empty()).then_some(GuardStep { enforce, reasons });
    (step, notes)
}

/// The comment of the two counter-only rules that open and close gitmoor's rules in the live
/// `DOCKER-USER` chain: `gitmoor-guard-begin-<hash>` and `gitmoor-guard-end-<hash>`, the hash
/// being that of the rules between them. So `iptables -S DOCKER-USER` tells whether the rules
/// the file holds are the ones loaded, whole and first (see [`chain_holds_block`]).
pub const CHAIN_MARK: &str = "gitmoor-guard-";

/// The `DOCKER-USER` block for `after.rules` (`v6` false) or `after6.rules`, from the file's
/// rules of that family, in their order, then the default incoming policy. A rule for `any` to
/// `any` is in both. The rules are framed by two counter-only rules (no target: they only
/// mark where gitmoor's rules are in the live chain).
pub fn docker_user_block(fw: &FirewallSpec, v6: bool) -> String {
    let rules = docker_user_rules(fw, v6);
    let hash = rules_hash(&rules);
    let mut lines: Vec<String> = vec![
        BLOCK_BEGIN.to_string(),
        "*filter".into(),
        ":DOCKER-USER - [0:0]".into(),
        format!("-A DOCKER-USER -m comment --comment {CHAIN_MARK}begin-{hash}"),
    ];
    lines.extend(rules);
    lines.push(format!(
        "-A DOCKER-USER -m comment --comment {CHAIN_MARK}end-{hash}"
    ));
    lines.push("COMMIT".into());
    lines.push(BLOCK_END.to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The first 12 hex digits of the SHA-256 of the rules: which rules a marker stands for.
fn rules_hash(rules: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(rules.join("\n").as_bytes());
    hex::encode(digest)[..12].to_string()
}

/// Where a block of `after.rules` stands in the live `DOCKER-USER` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBlock {
    /// The block whole, first: in force.
    First,
    /// The block whole, behind these rules of others (an admin's `iptables -I`, dockerd's
    /// `-j RETURN` when the chain was rebuilt): they judge first. Left as it is: a reload
    /// would flush them.
    Behind(Vec<String>),
    /// None of gitmoor's markers: flushed or never loaded. Only then does the guard's repair
    /// reload UFW (nothing of gitmoor's is there to keep, and a flush took the others' rules).
    Absent,
    /// gitmoor's markers, but not this block whole (an older block, one of its rules deleted
    /// by hand). Reported, not reloaded: the chain may hold the admin's rules too.
    Other,
}

/// Where `block` (a [`docker_user_block`]) stands in `chain` (the lines of
/// `iptables -S DOCKER-USER`): its begin marker, and its end marker right after as many rules
/// as the block has.
pub fn chain_block(chain: &[String], block: &str) -> ChainBlock {
    let block_rules: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("-A DOCKER-USER"))
        .collect();
    let live: Vec<&str> = chain
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("-A DOCKER-USER"))
        .collect();
    let mark_of = |l: &str| {
        l.split_whitespace()
            .find(|w| w.starts_with(CHAIN_MARK))
            .map(str::to_string)
    };
    let whole_at = |k: usize| {
        live.len() >= k + block_rules.len()
            && mark_of(live[k + block_rules.len() - 1])
                == mark_of(block_rules[block_rules.len() - 1])
    };
    if let Some(begin) = block_rules.first().and_then(|b| mark_of(b)) {
        if let Some(k) = live
            .iter()
            .position(|l| mark_of(l).as_deref() == Some(begin.as_str()))
        {
            if whole_at(k) {
                return if k == 0 {
                    ChainBlock::First
                } else {
                    ChainBlock::Behind(live[..k].iter().map(|l| l.to_string()).collect())
                };
            }
        }
    }
    if chain_has_marks(chain) {
        ChainBlock::Other
    } else {
        ChainBlock::Absent
    }
}

/// Whether the live chain starts with the rules of `block`, whole ([`chain_block`] is
/// [`ChainBlock::First`]). A flushed chain, a rule put before gitmoor's, one of them deleted
/// or an older block all read as not holding it.
pub fn chain_holds_block(chain: &[String], block: &str) -> bool {
    chain_block(chain, block) == ChainBlock::First
}

/// Whether the daemon's Docker guard repair is asked for: `firewall.docker_guard: enforce`
/// and the last applied commit had a `ufw/` folder (or an older state file records the
/// firewall unit). Otherwise no ufw or iptables is run at a poll: most hosts have no UFW
/// for gitmoor, and asking at every poll would cost a process and a warning each time.
pub fn repair_asked(mode: DockerGuard, state: &crate::state::State) -> bool {
    mode == DockerGuard::Enforce
        && (state.firewall_in_repo
            || state
                .units
                .contains_key(&crate::plan::UnitId::Firewall.key()))
}

/// gitmoor's block in the text of `after.rules` (BEGIN line to END line), as the file holds it
/// now: what ufw loads at its next reload or boot, whatever the repo says.
pub fn block_in(text: &str) -> Option<String> {
    let start = find_line(text, BLOCK_BEGIN)?;
    let end = start + find_line(&text[start..], BLOCK_END)?;
    Some(text[start..end + BLOCK_END.len()].to_string())
}

/// The rules of gitmoor's blocks in a live chain (the lines of `iptables -S`): each begin
/// marker, the rules after it, up to the end marker of the same hash, inclusive. A begin marker
/// without its end (a rule deleted by hand took it) gives the marker alone: the rules after it
/// may be the admin's, and a guess would delete them. An end marker alone is taken too.
pub fn block_rules_in_chain(chain: &[String]) -> Vec<&String> {
    let hash_of = |line: &str, kind: &str| -> Option<String> {
        let prefix = format!("{CHAIN_MARK}{kind}-");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()).map(str::to_string))
    };
    let mut out: Vec<&String> = Vec::new();
    let mut i = 0;
    while i < chain.len() {
        let line = &chain[i];
        if let Some(hash) = hash_of(line, "begin") {
            let end = chain[i + 1..]
                .iter()
                .position(|l| hash_of(l, "end").as_deref() == Some(hash.as_str()))
                .map(|p| i + 1 + p);
            match end {
                Some(e) => {
                    out.extend(&chain[i..=e]);
                    i = e + 1;
                    continue;
                }
                None => out.push(line),
            }
        } else if line.contains(CHAIN_MARK) {
            out.push(line);
        }
        i += 1;
    }
    out
}

/// The rules of a live `DOCKER-USER` that are not gitmoor's (an admin's, a ufw-docker block):
/// dockerd's own `-j RETURN` aside, which it makes with the chain.
pub fn foreign_rules_in_chain(chain: &[String]) -> Vec<&String> {
    let ours = block_rules_in_chain(chain);
    chain
        .iter()
        .filter(|l| l.trim().starts_with("-A DOCKER-USER"))
        .filter(|l| l.trim() != "-A DOCKER-USER -j RETURN")
        .filter(|l| !ours.iter().any(|o| std::ptr::eq(*o, *l)))
        .collect()
}

/// Whether the live chain still has a rule of gitmoor's block (any block).
pub fn chain_has_marks(chain: &[String]) -> bool {
    chain.iter().any(|l| l.contains(CHAIN_MARK))
}

/// The rules of the block, markers aside.
fn docker_user_rules(fw: &FirewallSpec, v6: bool) -> Vec<String> {
    let mut lines: Vec<String> = vec![
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
    lines
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
