//! The firewall differ: `ufw/rules.yaml` against the rules UFW holds, to the `ufw` calls that
//! bring it there, each with its argv and its reason, plus the SSH lockout guard. Pure: the
//! rules files were read and parsed by `observe/` (`ufw_parse`), the executor runs the argv.
//!
//! How ufw behaves, and so what the plan does:
//! - ufw keeps one rule per match (everything but the action and the comment): adding a rule
//!   whose match exists replaces that rule in place (its action and comment). So a changed
//!   action or comment is one `ufw <rule>` call, never a delete and an add.
//! - New rules are appended, and ufw matches the first rule that fits: the plan adds first
//!   (nothing the file keeps open is ever closed in between), then deletes, then sets the
//!   defaults, then enables.
//! - gitmoor owns the rules whose comment carries its tag ([`TAG`]); it deletes only those,
//!   by their rule spec (`ufw delete allow proto tcp from ... port 22`: numbers shift with
//!   every change, a spec does not; ufw matches it whatever the comment). Other rules are
//!   reported and kept, unless the host's config says gitmoor owns the whole firewall. Kept
//!   means untouched: a rule of the file with the same match as a hand-made one does not
//!   re-tag or change it (that would make it gitmoor's, deleted by a later commit); where a
//!   call could reach the other family's hand-made rule (`any` to `any` is one rule for ufw
//!   in both), it names its own family's `any` (`0.0.0.0/0`, `::/0`).

use crate::observe::ufw_parse::{parse_loose, LooseRule, ObservedFirewall, ObservedRule, Tuple};
use crate::spec::ufw::{
    describe, Action, Addr, Defaults, Direction, FirewallRule, FirewallSpec, Net, Policy, Ports,
    Proto,
};
use std::net::IpAddr;

/// The comment tag of the rules gitmoor made: `gitmoor` alone, or `gitmoor: <the file's
/// comment>`.
pub const TAG: &str = "gitmoor";

/// The comment gitmoor gives a rule of the file.
pub fn tagged_comment(comment: Option<&str>) -> String {
    match comment {
        Some(c) if !c.is_empty() => format!("{TAG}: {c}"),
        _ => TAG.to_string(),
    }
}

/// Whether a rule of the host carries gitmoor's tag.
pub fn is_owned(comment: &str) -> bool {
    comment == TAG || comment.starts_with(&format!("{TAG}: "))
}

/// Settings of the host (gitmoor's config), not of the repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirewallOptions {
    /// Delete every rule the file does not have, tagged or not.
    pub owns_whole_firewall: bool,
    /// What gitmoor does about ports Docker publishes past UFW (`enforce`: keep the
    /// `DOCKER-USER` block in the files and loaded in the chain).
    pub docker_guard: crate::config::firewall::DockerGuard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A rule of the file that UFW does not have.
    Add,
    /// A rule UFW has with another action or comment: ufw replaces it in place.
    Update,
    /// A rule gitmoor made that left the file (or any rule, when it owns the whole firewall).
    Delete,
    /// `ufw default <policy> <direction>`.
    Default,
    /// `ufw --force enable`.
    Enable,
}

impl StepKind {
    /// How a plan shows it (`firewall-add`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Add => "add",
            StepKind::Update => "update",
            StepKind::Delete => "delete",
            StepKind::Default => "default",
            StepKind::Enable => "enable",
        }
    }
}

/// One `ufw` call: the arguments after the program name, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallStep {
    pub kind: StepKind,
    pub argv: Vec<String>,
    pub reason: String,
}

/// One rule of the firewall as it will be after the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterRule {
    pub tuple: Option<Tuple>,
    pub comment: String,
    /// The tuple line as UFW has it ("" for a rule the plan adds): a rule gitmoor cannot
    /// represent (tuple None, a port list say) is judged from it, conservatively.
    pub raw: String,
}

/// The firewall after the plan, as the guard checks it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallAfter {
    pub enabled: bool,
    pub defaults: Defaults,
    pub ipv6: bool,
    /// The IPv4 rules in order (`user.rules`), then the IPv6 ones.
    pub v4: Vec<AfterRule>,
    pub v6: Vec<AfterRule>,
}

/// What the firewall unit does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallPlan {
    /// In the order to run them: adds and updates, deletes, defaults, enable.
    pub steps: Vec<FirewallStep>,
    /// Rules of the host left alone, each with why (shown as unmanaged on `/status`).
    pub unmanaged: Vec<String>,
    /// What the plan cannot do as the file says (an order ufw will not have, IPv6 off).
    pub warnings: Vec<String>,
    /// The firewall as it will be.
    pub after: FirewallAfter,
    /// The Docker guard's block to write, load again or take out, after the steps.
    pub docker_guard: Option<super::docker_guard::GuardStep>,
    /// The repo's firewall file the plan was made from (`ufw/rules.yaml` or `ufw/rules.yml`),
    /// so a refusal names the file the commit has.
    pub file: String,
}

impl FirewallPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.docker_guard.is_none()
    }
}

/// A rule of the file in ufw's terms.
fn tuple_of(r: &FirewallRule) -> Tuple {
    Tuple {
        action: r.action,
        log: String::new(),
        route: false,
        proto: r.proto,
        dport: r.port,
        dst: r.to,
        sport: Ports::Any,
        src: r.from,
        direction: r.direction,
        iface: String::new(),
        app: String::new(),
    }
}

/// Same match for ufw: everything but the action, its log type and the comment.
fn same_match(a: &Tuple, b: &Tuple) -> bool {
    a.route == b.route
        && a.proto == b.proto
        && a.dport == b.dport
        && a.dst == b.dst
        && a.sport == b.sport
        && a.src == b.src
        && a.direction == b.direction
        && a.iface == b.iface
        && a.app == b.app
}

/// The words of a rule after its action: `[out] [proto P] from SRC [port S] to DST [port D]`.
fn match_words(t: &Tuple) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if t.direction == Direction::Out {
        v.push("out".into());
    }
    if let Some(p) = t.proto {
        v.extend(["proto".into(), p.as_str().into()]);
    }
    v.extend(["from".into(), t.src.to_string()]);
    if t.sport != Ports::Any {
        v.extend(["port".into(), t.sport.to_string()]);
    }
    v.extend(["to".into(), t.dst.to_string()]);
    if t.dport != Ports::Any {
        v.extend(["port".into(), t.dport.to_string()]);
    }
    v
}

/// The `ufw` argv that adds (or updates) a rule of the file, tagged:
/// `allow proto tcp from 192.0.2.3 to any port 22 comment "gitmoor: ssh admins"`.
pub fn rule_argv(r: &FirewallRule) -> Vec<String> {
    let mut v = vec![r.action.as_str().to_string()];
    v.extend(match_words(&tuple_of(r)));
    v.extend(["comment".to_string(), tagged_comment(r.comment.as_deref())]);
    v
}

/// [`rule_argv`] for one family only: `any` written as `0.0.0.0/0` or `::/0`, which ufw takes
/// as that family's (a rule of the other family with the same match is not touched).
pub fn rule_argv_family(r: &FirewallRule, v6: bool) -> Vec<String> {
    let mut v = vec![r.action.as_str().to_string()];
    v.extend(family_words(&match_words(&tuple_of(r)), v6));
    v.extend(["comment".to_string(), tagged_comment(r.comment.as_deref())]);
    v
}

/// [`delete_argv`] for one family only (see [`rule_argv_family`]).
pub fn delete_argv_family(t: &Tuple, v6: bool) -> Vec<String> {
    let mut v = vec!["delete".to_string(), t.action.as_str().to_string()];
    v.extend(family_words(&match_words(t), v6));
    v
}

/// The words of a match with `any` after `from`/`to` as the family's own `any`.
fn family_words(words: &[String], v6: bool) -> Vec<String> {
    let any = if v6 { "::/0" } else { "0.0.0.0/0" };
    let mut out = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let after_addr_key = i > 0 && matches!(words[i - 1].as_str(), "from" | "to");
        out.push(if after_addr_key && w == "any" {
            any.to_string()
        } else {
            w.clone()
        });
    }
    out
}

/// `` in IPv6`` when a rule of both families is not applied in one of them.
fn family_words_note(families: &[bool], fam: bool) -> &'static str {
    match (families.len(), fam) {
        (2, false) => " in IPv4",
        (2, true) => " in IPv6",
        _ => "",
    }
}

/// A rule of the host as a plan names it: `allow in 22/tcp from any to any (v6) # mine`.
fn describe_observed_parts(t: &Tuple, comment: &str, v6: bool) -> String {
    format!(
        "`{}`{}{}",
        describe_tuple(t),
        if v6 { " (v6)" } else { "" },
        if comment.is_empty() {
            String::new()
        } else {
            format!(" # {comment}")
        }
    )
}

/// The `ufw` argv that deletes a rule by its spec (ufw matches it whatever its comment).
pub fn delete_argv(t: &Tuple) -> Vec<String> {
    let mut v = vec!["delete".to_string(), t.action.as_str().to_string()];
    v.extend(match_words(t));
    v
}

fn describe_tuple(t: &Tuple) -> String {
    let mut s = describe(t.action, t.direction, t.proto, t.dport, &t.src, &t.dst);
    if t.sport != Ports::Any {
        s.push_str(&format!(" (source port {})", t.sport));
    }
    s
}

pub fn describe_observed(r: &ObservedRule) -> String {
    let what = match &r.tuple {
        Some(t) => {
            let mut s = describe_tuple(t);
            if t.route {
                s = format!("route {s}");
            }
            if !t.iface.is_empty() {
                s.push_str(&format!(" on {}", t.iface));
            }
            if !t.app.is_empty() {
                s.push_str(&format!(" (app {})", t.app));
            }
            s
        }
        None => r.raw.clone(),
    };
    let v6 = if r.v6 { " (v6)" } else { "" };
    let comment = if r.comment.is_empty() {
        String::new()
    } else {
        format!(" # {}", r.comment)
    };
    format!("[{}] {what}{v6}{comment}", r.number)
}

/// The steps that bring UFW from `observed` to `desired`.
pub fn plan_firewall(
    desired: &FirewallSpec,
    observed: &ObservedFirewall,
    opts: FirewallOptions,
) -> FirewallPlan {
    let mut plan = FirewallPlan::default();
    let (mut v4, mut v6): (Vec<AfterRule>, Vec<AfterRule>) = (Vec::new(), Vec::new());
    for r in &observed.rules {
        let a = AfterRule {
            tuple: r.tuple.clone(),
            comment: r.comment.clone(),
            raw: r.raw.clone(),
        };
        if r.v6 {
            v6.push(a);
        } else {
            v4.push(a);
        }
    }

    // Adds and updates, in file order.
    let mut wanted: Vec<(bool, Tuple, usize)> = Vec::new();
    for (index, rule) in desired.rules.iter().enumerate() {
        let want = tuple_of(rule);
        let comment = tagged_comment(rule.comment.as_deref());
        let families: Vec<bool> = rule
            .families()
            .into_iter()
            .filter(|v6| !*v6 || observed.ipv6)
            .collect();
        if families.is_empty() {
            plan.warnings.push(format!(
                "{}:{}: `{rule}` is IPv6, and ufw manages IPv6 only with IPV6=yes in /etc/default/ufw: the rule is not added",
                desired.file, rule.line
            ));
            continue;
        }
        // Per family: what UFW has with the same match. A rule made outside gitmoor is never
        // re-tagged or changed (unless gitmoor owns the whole firewall): ufw keeps one rule
        // per match, so taking it over would make it gitmoor's, and a later commit dropping
        // the rule from the file would delete the admin's rule.
        let at = format!("{}:{}", desired.file, rule.line);
        let mut changes: Vec<String> = Vec::new();
        let mut missing: Vec<bool> = Vec::new();
        let mut foreign: Vec<bool> = Vec::new();
        let mut update: Vec<bool> = Vec::new();
        for &fam in &families {
            wanted.push((fam, want.clone(), index));
            let list = if fam { &mut v6 } else { &mut v4 };
            let found = list
                .iter_mut()
                .find(|a| a.tuple.as_ref().is_some_and(|t| same_match(t, &want)));
            let Some(a) = found else {
                missing.push(fam);
                list.push(AfterRule {
                    tuple: Some(want.clone()),
                    comment: comment.clone(),
                    raw: String::new(),
                });
                continue;
            };
            let Some(have) = a.tuple.clone() else {
                continue;
            };
            let action_differs = have.action != want.action || !have.log.is_empty();
            if !is_owned(&a.comment) && !opts.owns_whole_firewall {
                foreign.push(fam);
                let hand = describe_observed_parts(&have, &a.comment, fam);
                if action_differs {
                    plan.warnings.push(format!(
                        "{at}: `{rule}` is not applied{}: UFW has {hand}, made outside gitmoor, with the same match (ufw keeps one rule per match, so applying it would change that rule, and a later commit without it would delete it); delete that rule by hand, or set firewall.owns_whole_firewall: true in gitmoor's config",
                        family_words_note(&families, fam)
                    ));
                } else {
                    plan.unmanaged.push(format!(
                        "{hand}: kept as it is; it is the rule `{rule}` of {at} already, made outside gitmoor: gitmoor does not tag it, so it stays when the file drops the rule"
                    ));
                }
                continue;
            }
            let mut changed = false;
            if !is_owned(&a.comment) {
                changes.push(format!(
                    "takes over the rule made outside gitmoor{} (firewall.owns_whole_firewall)",
                    if a.comment.is_empty() {
                        String::new()
                    } else {
                        format!(" with the comment `{}`", a.comment)
                    }
                ));
                changed = true;
            } else if a.comment != comment {
                changes.push(format!("comment `{}` -> `{comment}`", a.comment));
                changed = true;
            }
            if action_differs {
                changes.push(format!(
                    "action {} -> {}",
                    have.action.as_str(),
                    want.action.as_str()
                ));
                changed = true;
            }
            if changed {
                update.push(fam);
                a.tuple = Some(want.clone());
                a.comment = comment.clone();
            }
        }
        changes.dedup();
        // With a rule of the other family left alone, each call names its family's `any`
        // (`0.0.0.0/0`, `::/0`), so ufw touches that family only.
        let argv_for = |fams: &[bool]| -> Vec<Vec<String>> {
            if foreign.is_empty() {
                vec![rule_argv(rule)]
            } else {
                fams.iter().map(|&f| rule_argv_family(rule, f)).collect()
            }
        };
        if !missing.is_empty() {
            let touched: Vec<bool> = if foreign.is_empty() {
                families.clone()
            } else {
                missing.clone()
            };
            for argv in argv_for(&touched) {
                plan.steps.push(FirewallStep {
                    kind: StepKind::Add,
                    argv,
                    reason: if changes.is_empty() || !foreign.is_empty() {
                        format!("new rule `{rule}` ({at})")
                    } else {
                        // Present in one family only: replaced there by the same call.
                        format!("new rule `{rule}` ({at}); {}", changes.join(", "))
                    },
                });
            }
            if !foreign.is_empty() && !update.is_empty() {
                for argv in argv_for(&update) {
                    plan.steps.push(FirewallStep {
                        kind: StepKind::Update,
                        argv,
                        reason: format!("`{rule}` ({at}): {}", changes.join(", ")),
                    });
                }
            }
        } else if !update.is_empty() {
            for argv in argv_for(&update) {
                plan.steps.push(FirewallStep {
                    kind: StepKind::Update,
                    argv,
                    reason: format!("`{rule}` ({at}): {}", changes.join(", ")),
                });
            }
        }
    }

    // Deletes: rules of the host the file does not have.
    let kept_by_file =
        |fam: bool, t: &Tuple| wanted.iter().any(|(f, w, _)| *f == fam && same_match(w, t));
    for r in &observed.rules {
        let plain = r.tuple.as_ref().filter(|t| t.is_plain());
        let Some(t) = plain else {
            plan.unmanaged.push(format!(
                "{}: kept; gitmoor deletes only the rules it can write (no route, interface, application profile, log type or other protocol): delete it by hand if it must go",
                describe_observed(r)
            ));
            continue;
        };
        if kept_by_file(r.v6, t) {
            continue;
        }
        if !is_owned(&r.comment) && !opts.owns_whole_firewall {
            plan.unmanaged.push(format!(
                "{}: kept; not made by gitmoor (its comment has no `{TAG}` tag)",
                describe_observed(r)
            ));
            continue;
        }
        // A rule of `any` to `any` is one rule for ufw in both families: its delete takes the
        // other family's rule too. When that one is left alone (not gitmoor's, or kept by the
        // file), the delete names this family's `any`, so it is kept indeed.
        let other_stays = t.src == Addr::Any
            && t.dst == Addr::Any
            && observed.rules.iter().any(|o| {
                o.v6 != r.v6
                    && o.tuple.as_ref().is_some_and(|x| same_match(x, t))
                    && (kept_by_file(o.v6, t) || !is_owned(&o.comment) && !opts.owns_whole_firewall)
            });
        let argv = if other_stays {
            delete_argv_family(t, r.v6)
        } else {
            delete_argv(t)
        };
        if plan.steps.iter().any(|s| s.argv == argv) {
            continue; // One delete takes the IPv4 and IPv6 rules of `any` to `any`.
        }
        let why = if is_owned(&r.comment) {
            format!("no longer in {}", desired.file)
        } else {
            format!(
                "not in {} and gitmoor owns the whole firewall (firewall.owns_whole_firewall)",
                desired.file
            )
        };
        plan.steps.push(FirewallStep {
            kind: StepKind::Delete,
            argv,
            reason: format!("`{}`: {why}", describe_tuple(t)),
        });
        let lists: Vec<&mut Vec<AfterRule>> = if other_stays {
            vec![if r.v6 { &mut v6 } else { &mut v4 }]
        } else {
            vec![&mut v4, &mut v6]
        };
        for list in lists {
            list.retain(|a| !a.tuple.as_ref().is_some_and(|x| same_match(x, t)));
        }
    }

    // Defaults.
    let mut defaults = observed.defaults;
    for (name, want, have) in [
        (
            "incoming",
            desired.defaults.incoming,
            &mut defaults.incoming,
        ),
        (
            "outgoing",
            desired.defaults.outgoing,
            &mut defaults.outgoing,
        ),
        ("routed", desired.defaults.routed, &mut defaults.routed),
    ] {
        let Some(want) = want else { continue };
        if *have != Some(want) {
            plan.steps.push(FirewallStep {
                kind: StepKind::Default,
                argv: vec!["default".into(), want.as_str().into(), name.into()],
                reason: format!(
                    "default {name} policy {} -> {} ({})",
                    have.map_or("unset", Policy::as_str),
                    want.as_str(),
                    desired.file
                ),
            });
            *have = Some(want);
        }
    }

    if !observed.enabled {
        plan.steps.push(FirewallStep {
            kind: StepKind::Enable,
            argv: vec!["--force".into(), "enable".into()],
            reason: "ufw is inactive".into(),
        });
    }

    for (fam, list) in [(false, &v4), (true, &v6)] {
        if let Some(w) = order_warning(desired, &wanted, fam, list) {
            plan.warnings.push(w);
        }
    }
    plan.after = FirewallAfter {
        enabled: true,
        defaults,
        ipv6: observed.ipv6,
        v4,
        v6,
    };
    let (guard, notes) =
        super::docker_guard::plan_docker_guard(desired, observed, opts.docker_guard);
    plan.docker_guard = guard;
    plan.file = desired.file.clone();
    plan.warnings.extend(notes);
    plan
}

/// ufw appends new rules: a rule the file puts before one UFW already has lands after it.
/// Harmless between rules that let the same traffic through; not when a deny comes after an
/// allow it was meant to cut into. Said, naming both rules.
fn order_warning(
    desired: &FirewallSpec,
    wanted: &[(bool, Tuple, usize)],
    fam: bool,
    list: &[AfterRule],
) -> Option<String> {
    let mut last: Option<usize> = None;
    for a in list {
        let Some(t) = &a.tuple else { continue };
        let Some((_, _, index)) = wanted
            .iter()
            .find(|(f, w, _)| *f == fam && same_match(w, t))
        else {
            continue;
        };
        if let Some(prev) = last {
            if *index < prev {
                let (early, late) = (&desired.rules[*index], &desired.rules[prev]);
                return Some(format!(
                    "{}:{}: `{early}` comes before `{late}` (line {}) in the file, but after it in UFW{} (ufw appends new rules, and matches the first that fits): to reorder, remove both from the file, apply, then add them back in order",
                    desired.file,
                    early.line,
                    late.line,
                    if fam { " (v6)" } else { "" }
                ));
            }
        }
        last = Some(last.map_or(*index, |l| l.max(*index)));
    }
    None
}

/// The config key that applies a firewall change the lockout guard refuses.
pub const LOCKOUT_OVERRIDE: &str = "firewall.allow_ssh_lockout: true";

/// The SSH lockout guard, checked before anything changes: after the plan, each SSH port
/// (every one sshd listens on) must stay open from at least one source, and every address with
/// an SSH session open now must still be let in on the port it is connected to (loopback
/// sessions aside: UFW never filters them). ufw's order is followed (the first rule that fits
/// decides; `limit` lets through; the default incoming policy decides when no rule fits).
/// Where a rule cannot be judged for sure (an interface, a destination address, a rule gitmoor
/// cannot represent), an allow is not counted and a deny is: the guard errs on the side of
/// keeping the admin in. The error says why and names the override.
pub fn lockout_guard(
    plan: &FirewallPlan,
    ssh_ports: &[u16],
    established_ssh_sessions: &[(IpAddr, u16)],
) -> Result<(), String> {
    let after = &plan.after;
    if !after.enabled {
        return Ok(());
    }
    // A plan not made from a file (none in practice) is said as the usual name.
    let file = if plan.file.is_empty() {
        "ufw/rules.yaml"
    } else {
        plan.file.as_str()
    };
    let refuse = |ssh_port: u16, why: String| {
        Err(format!(
            "the firewall change would lock out SSH (port {ssh_port}/tcp): {why}; nothing of the firewall was changed. Allow it in {file}, or set {LOCKOUT_OVERRIDE} in gitmoor's config to apply it anyway"
        ))
    };
    for (peer, ssh_port) in established_ssh_sessions {
        let ssh_port = *ssh_port;
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*peer, IpAddr::V4),
            v4 => *v4,
        };
        // UFW always lets loopback in (`-i lo -j ACCEPT` before any rule), so a session from
        // the host itself (an `ssh -R` tunnel, a local check) is never locked out. Judged here,
        // once, for the plan's check and the apply's alike.
        if peer.is_loopback() {
            continue;
        }
        if peer.is_ipv6() && !after.ipv6 {
            return refuse(
                ssh_port,
                format!(
                    "{peer} has an SSH session open now, and ufw with IPV6=no drops IPv6 but loopback"
                ),
            );
        }
        let list = if peer.is_ipv6() { &after.v6 } else { &after.v4 };
        if let Verdict::Closed(why) = verdict(
            list,
            &Addr::Net(Net::host(peer)),
            ssh_port,
            after.defaults.incoming,
        ) {
            return refuse(
                ssh_port,
                format!("{peer} has an SSH session open now, and {why}"),
            );
        }
    }
    let families: &[(bool, &Vec<AfterRule>)] = if after.ipv6 {
        &[(false, &after.v4), (true, &after.v6)]
    } else {
        &[(false, &after.v4)]
    };
    for &ssh_port in ssh_ports {
        let open_somewhere = families.iter().any(|(_, list)| {
            let mut sources: Vec<Addr> =
                list.iter()
                    .filter_map(|a| match &a.tuple {
                        Some(t) => (t.action.lets_through() && fits(t, ssh_port) == Fit::Sure)
                            .then_some(t.src),
                        None => parse_loose(&a.raw)
                            .filter(|l| loose_opens(l, ssh_port))
                            .and_then(|l| l.src),
                    })
                    .collect();
            sources.push(Addr::Any);
            sources.iter().any(|s| {
                matches!(
                    verdict(list, s, ssh_port, after.defaults.incoming),
                    Verdict::Open
                )
            })
        });
        if !open_somewhere {
            let default = after
                .defaults
                .incoming
                .map_or("unknown".to_string(), |p| p.as_str().to_string());
            return refuse(
                ssh_port,
                format!("no rule lets any source in, and the default incoming policy is {default}"),
            );
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Open,
    Closed(String),
}

#[derive(Debug, PartialEq)]
enum Fit {
    No,
    /// The rule certainly applies to a TCP connection to the port (given the source fits).
    Sure,
    /// It may (an interface or a destination address the guard cannot judge).
    Maybe,
}

/// Whether an incoming TCP connection to `port` is the rule's business (its source aside).
fn fits(t: &Tuple, port: u16) -> Fit {
    if t.route
        || t.direction != Direction::In
        || !matches!(t.proto, None | Some(Proto::Tcp))
        || !t.dport.contains(port)
        // A source port: clients connect from ephemeral ports, such a rule never decides.
        || t.sport != Ports::Any
    {
        return Fit::No;
    }
    if !t.iface.is_empty() || t.dst != Addr::Any {
        return Fit::Maybe;
    }
    Fit::Sure
}

/// What ufw does with a connection to `port` from every address of `src`, walking the rules
/// in order.
fn verdict(list: &[AfterRule], src: &Addr, port: u16, incoming: Option<Policy>) -> Verdict {
    for a in list {
        let Some(t) = &a.tuple else {
            match loose_verdict(a, src, port) {
                Some(v) => return v,
                None => continue,
            }
        };
        let fit = fits(t, port);
        if fit == Fit::No {
            continue;
        }
        let covers = t.src.covers(src);
        if t.action.lets_through() {
            if covers && fit == Fit::Sure {
                return Verdict::Open;
            }
        } else if covers {
            return Verdict::Closed(format!(
                "the rule `{}`{} comes first and {} it",
                describe_tuple(t),
                if a.comment.is_empty() {
                    String::new()
                } else {
                    format!(" (# {})", a.comment)
                },
                if t.action == Action::Reject {
                    "rejects"
                } else {
                    "drops"
                }
            ));
        }
    }
    match incoming {
        Some(Policy::Allow) => Verdict::Open,
        Some(p) => Verdict::Closed(format!(
            "no rule lets it in and the default incoming policy is {}",
            p.as_str()
        )),
        None => {
            Verdict::Closed("no rule lets it in and the default incoming policy is unknown".into())
        }
    }
}

/// Whether a rule gitmoor cannot represent surely lets a TCP connection to `port` in (its
/// source aside): an allow or limit for the host's input, TCP or any protocol, the port in its
/// list, nothing else that could narrow it.
fn loose_opens(l: &LooseRule, port: u16) -> bool {
    l.plain
        && l.action.is_some_and(Action::lets_through)
        && l.incoming
        && l.tcp
        && l.dports.is_some()
        && l.may_have_port(port)
}

/// What a rule gitmoor cannot represent does to a connection to `port` from `src`, erring on
/// the closed side: a deny, a reject or an unknown action that may apply closes (a port list
/// that may hold the port, a source that may cover `src` or could not be read); an allow counts
/// only when it surely applies; None: the next rule decides.
fn loose_verdict(a: &AfterRule, src: &Addr, port: u16) -> Option<Verdict> {
    // Not even a tuple line: ufw ignores it too.
    let l = parse_loose(&a.raw)?;
    if !l.incoming || !l.tcp || !l.may_have_port(port) {
        return None;
    }
    if l.action.is_some_and(Action::lets_through) {
        let covers = l.src.is_some_and(|s| s.covers(src));
        return (covers && loose_opens(&l, port)).then_some(Verdict::Open);
    }
    // As for a rule read whole: it decides for `src` when its source covers it; a source not
    // read covers every one.
    let may_cover = l.src.is_none_or(|s| s.covers(src));
    may_cover.then(|| {
        Verdict::Closed(format!(
            "the rule `{}`{}, which gitmoor cannot fully read (a port list, say), comes first and may {} it",
            a.raw.trim_start_matches("### tuple ###").split(" comment=").next().unwrap_or("").trim(),
            if a.comment.is_empty() {
                String::new()
            } else {
                format!(" (# {})", a.comment)
            },
            if l.action == Some(Action::Reject) { "reject" } else { "drop" }
        ))
    })
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
