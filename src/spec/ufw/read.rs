//! `ufw/rules.yaml` from the Snapshot into a [`FirewallSpec`]. Every problem is collected, each
//! naming the file, the line, the key and the fix; an unknown key is an error (a typo such as
//! `form:` must not silently open a port to everyone).

use super::model::{
    Action, Addr, Defaults, Direction, FirewallRule, FirewallSpec, Policy, Ports, Proto,
};
use super::values;
use crate::source::snapshot::Snapshot;
use crate::spec::error::{Findings, SpecError};
use crate::spec::yaml::{self, Node, NodeValue};

/// The names the firewall file may have, in order of preference.
pub const FIREWALL_FILES: &[&str] = &["ufw/rules.yaml", "ufw/rules.yml"];

/// The largest firewall file read, in bytes: a few hundred rules fit in a tiny part of it.
pub const MAX_FILE_BYTES: usize = 256 << 10;

/// The most rules the file may hold once its lists are expanded: every rule is one `ufw` call
/// and one line in its files.
pub const MAX_RULES: usize = 1000;

/// The firewall the commit asks for. `(None, no error)` when the repo has no `ufw/` folder:
/// gitmoor then leaves the firewall alone. `Some` only when there is no error.
pub fn load_firewall(snap: &Snapshot) -> (Option<FirewallSpec>, Findings) {
    let mut findings = Findings::default();
    let found: Vec<&str> = FIREWALL_FILES
        .iter()
        .copied()
        .filter(|p| snap.get(p).is_some())
        .collect();
    let file = match found.as_slice() {
        [] => {
            if snap.exists("ufw") {
                findings.warnings.push(
                    SpecError::new("ufw/", "no ufw/rules.yaml: the firewall is left as it is")
                        .fix("add ufw/rules.yaml (see docs/firewall.md), or remove the folder"),
                );
            }
            return (None, findings);
        }
        [one] => *one,
        [first, ..] => {
            findings.errors.push(
                SpecError::new(*first, "both ufw/rules.yaml and ufw/rules.yml exist")
                    .fix("keep one (ufw/rules.yaml)"),
            );
            return (None, findings);
        }
    };
    let Some(entry) = snap.get(file) else {
        return (None, findings);
    };
    if entry.symlink {
        findings.errors.push(
            SpecError::new(file, "the firewall file is a symlink").fix("commit the file itself"),
        );
        return (None, findings);
    }
    if entry.data.len() > MAX_FILE_BYTES {
        findings.errors.push(
            SpecError::new(
                file,
                format!(
                    "the file is {} bytes, over the limit of {MAX_FILE_BYTES}",
                    entry.data.len()
                ),
            )
            .fix("keep the firewall rules short: use networks rather than one rule per address"),
        );
        return (None, findings);
    }
    let Ok(text) = std::str::from_utf8(&entry.data) else {
        findings
            .errors
            .push(SpecError::new(file, "not UTF-8 text").fix("save the file as UTF-8"));
        return (None, findings);
    };
    let root = match yaml::parse(text, file) {
        Ok(root) => root,
        Err(e) => {
            findings.errors.push(e);
            return (None, findings);
        }
    };
    let mut r = Reader {
        file,
        findings: &mut findings,
    };
    let spec = r.top(&root);
    r.check_duplicates(&spec.rules);
    if spec.rules.len() > MAX_RULES {
        findings.errors.push(
            SpecError::new(
                file,
                format!(
                    "{} rules once the lists in from/to are expanded, over the limit of {MAX_RULES}",
                    spec.rules.len()
                ),
            )
            .key("rules")
            .fix("use networks (192.0.2.0/24) rather than one rule per address"),
        );
    }
    let ok = findings.is_ok();
    (ok.then_some(spec), findings)
}

struct Reader<'a> {
    file: &'a str,
    findings: &'a mut Findings,
}

/// The keys of one rule.
const RULE_KEYS: &[&str] = &[
    "action",
    "port",
    "proto",
    "from",
    "to",
    "comment",
    "direction",
];

impl Reader<'_> {
    fn error(&mut self, n: &Node, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.findings.errors.push(
            SpecError::new(self.file, message)
                .at_line(Some(n.line))
                .key(key)
                .fix(fix),
        );
    }

    fn top(&mut self, root: &Node) -> FirewallSpec {
        let mut spec = FirewallSpec {
            file: self.file.to_string(),
            ..FirewallSpec::default()
        };
        let entries = match &root.value {
            NodeValue::Map(entries) => entries,
            NodeValue::Null => {
                self.error(
                    root,
                    "rules",
                    "the file is empty",
                    "write `defaults:` and `rules:` (see docs/firewall.md), or remove ufw/",
                );
                return spec;
            }
            _ => {
                self.error(
                    root,
                    "(top)",
                    format!("expected a mapping, found {}", root.kind()),
                    "write `defaults:` and `rules:` (see docs/firewall.md)",
                );
                return spec;
            }
        };
        for (k, v) in entries {
            match k.as_str() {
                "defaults" => spec.defaults = self.defaults(v),
                "rules" => spec.rules = self.rules(v),
                "docker_guard" | "owns_whole_firewall" | "allow_ssh_lockout" => self.error(
                    v,
                    k,
                    "not a key of the repo's firewall file: it is a setting of the host",
                    format!("set firewall.{k} in gitmoor's config instead, and remove it here"),
                ),
                _ => self.error(
                    v,
                    k,
                    "unknown key",
                    "the keys are `defaults` and `rules` (see docs/firewall.md)",
                ),
            }
        }
        if root.get("rules").is_none() {
            self.error(
                root,
                "rules",
                "no `rules:`",
                "list the rules (an empty list `rules: []` if only the defaults are wanted)",
            );
        }
        spec
    }

    fn defaults(&mut self, n: &Node) -> Defaults {
        let mut d = Defaults::default();
        let NodeValue::Map(entries) = &n.value else {
            self.error(
                n,
                "defaults",
                format!("expected a mapping, found {}", n.kind()),
                "write `defaults: {incoming: deny, outgoing: allow, routed: deny}`",
            );
            return d;
        };
        for (k, v) in entries {
            let key = format!("defaults.{k}");
            let slot = match k.as_str() {
                "incoming" => &mut d.incoming,
                "outgoing" => &mut d.outgoing,
                "routed" => &mut d.routed,
                _ => {
                    self.error(
                        v,
                        &key,
                        "unknown key",
                        "the keys are `incoming`, `outgoing` and `routed`",
                    );
                    continue;
                }
            };
            *slot = match v.as_str() {
                Some("allow") => Some(Policy::Allow),
                Some("deny") => Some(Policy::Deny),
                Some("reject") => Some(Policy::Reject),
                _ => {
                    let found = v
                        .scalar_text()
                        .map_or(v.kind().to_string(), |t| format!("`{}`", values::shown(&t)));
                    self.error(
                        v,
                        &key,
                        format!("{found} is not a policy"),
                        "write allow, deny or reject",
                    );
                    None
                }
            };
        }
        d
    }

    fn rules(&mut self, n: &Node) -> Vec<FirewallRule> {
        let items = match &n.value {
            NodeValue::Seq(items) => items,
            NodeValue::Null => return Vec::new(),
            _ => {
                self.error(
                    n,
                    "rules",
                    format!("expected a list, found {}", n.kind()),
                    "write `rules:` followed by `- action: allow` items",
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.extend(self.rule(item, &format!("rules[{i}]")));
            if out.len() > MAX_RULES {
                // Counted and refused by the caller; expanding further only costs memory.
                break;
            }
        }
        out
    }

    /// One item of `rules:`, expanded to one rule per (from, to) pair.
    fn rule(&mut self, n: &Node, base: &str) -> Vec<FirewallRule> {
        let NodeValue::Map(entries) = &n.value else {
            self.error(
                n,
                base,
                format!("expected a mapping, found {}", n.kind()),
                "write `- action: allow` followed by `port:`, `proto:`, `from:` ...",
            );
            return Vec::new();
        };
        let errors_before = self.findings.errors.len();
        for (k, v) in entries {
            if !RULE_KEYS.contains(&k.as_str()) {
                self.error(
                    v,
                    &format!("{base}.{k}"),
                    "unknown key",
                    format!("the keys of a rule are {}", RULE_KEYS.join(", ")),
                );
            }
        }
        let action = match n.get("action") {
            None => {
                self.error(
                    n,
                    &format!("{base}.action"),
                    "missing",
                    "add `action: allow` (or deny, reject, limit)",
                );
                None
            }
            Some(v) => match v.as_str() {
                Some("allow") => Some(Action::Allow),
                Some("deny") => Some(Action::Deny),
                Some("reject") => Some(Action::Reject),
                Some("limit") => Some(Action::Limit),
                _ => {
                    self.bad_word(v, &format!("{base}.action"), "allow, deny, reject or limit");
                    None
                }
            },
        };
        let direction = match n.get("direction") {
            None => Some(Direction::In),
            Some(v) => match v.as_str() {
                Some("in") => Some(Direction::In),
                Some("out") => Some(Direction::Out),
                _ => {
                    self.bad_word(v, &format!("{base}.direction"), "in or out");
                    None
                }
            },
        };
        let proto = match n.get("proto") {
            None => Some(None),
            Some(v) => match v.as_str() {
                Some("tcp") => Some(Some(Proto::Tcp)),
                Some("udp") => Some(Some(Proto::Udp)),
                _ => {
                    self.bad_word(
                        v,
                        &format!("{base}.proto"),
                        "tcp or udp (leave it out for both)",
                    );
                    None
                }
            },
        };
        let port = match n.get("port") {
            None => Some(Ports::Any),
            Some(v) => self.port(v, &format!("{base}.port")),
        };
        if let (Some(Ports::Range(..)), Some(None), Some(v)) = (port, proto, n.get("port")) {
            self.error(
                v,
                &format!("{base}.port"),
                "a port range needs a protocol (ufw refuses a range for tcp and udp at once)",
                "add `proto: tcp` or `proto: udp` (two rules for both)",
            );
        }
        let from = self.addresses(n.get("from"), &format!("{base}.from"));
        let to = self.addresses(n.get("to"), &format!("{base}.to"));
        let comment = match n.get("comment") {
            None => Some(None),
            Some(v) => match v.scalar_text() {
                Some(t) => match values::comment(&t) {
                    Ok(c) if c.is_empty() => Some(None),
                    Ok(c) => Some(Some(c)),
                    Err(e) => {
                        self.error(
                            v,
                            &format!("{base}.comment"),
                            e,
                            "write a short plain comment",
                        );
                        None
                    }
                },
                None => {
                    self.error(
                        v,
                        &format!("{base}.comment"),
                        format!("expected text, found {}", v.kind()),
                        "write a short plain comment",
                    );
                    None
                }
            },
        };
        let (
            Some(action),
            Some(direction),
            Some(proto),
            Some(port),
            Some(from),
            Some(to),
            Some(comment),
        ) = (action, direction, proto, port, from, to, comment)
        else {
            return Vec::new();
        };
        if self.findings.errors.len() > errors_before {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut mixed = false;
        for f in &from {
            for t in &to {
                if let (Some(a), Some(b)) = (f.family_v6(), t.family_v6()) {
                    if a != b {
                        mixed = true;
                        continue;
                    }
                }
                out.push(FirewallRule {
                    action,
                    direction,
                    proto,
                    port,
                    from: *f,
                    to: *t,
                    comment: comment.clone(),
                    line: n.line,
                });
            }
        }
        if mixed {
            self.error(
                n,
                base,
                "`from` and `to` mix IPv4 and IPv6 addresses: such a pair can never match",
                "split the rule in two, one per address family",
            );
            return Vec::new();
        }
        out
    }

    fn bad_word(&mut self, v: &Node, key: &str, want: &str) {
        let found = v
            .scalar_text()
            .map_or(v.kind().to_string(), |t| format!("`{}`", values::shown(&t)));
        self.error(
            v,
            key,
            format!("{found} is not valid here"),
            format!("write {want}"),
        );
    }

    fn port(&mut self, v: &Node, key: &str) -> Option<Ports> {
        let r = match &v.value {
            NodeValue::Int(i) => values::port_int(*i),
            NodeValue::Str(s) => values::port_text(s),
            _ => Err(format!("expected a port, found {}", v.kind())),
        };
        match r {
            Ok(p) => Some(p),
            Err(e) => {
                let names: Vec<&str> = values::SERVICES.iter().map(|(n, _)| *n).collect();
                self.error(
                    v,
                    key,
                    e,
                    format!(
                        "write a port (22), a range in quotes (\"8000:8100\") or one of {}",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// `from:` or `to:`: `any` (also when left out), one address or network, or a list of them.
    fn addresses(&mut self, v: Option<&Node>, key: &str) -> Option<Vec<Addr>> {
        let Some(v) = v else {
            return Some(vec![Addr::Any]);
        };
        let fix = "write `any`, an address (192.0.2.3, 2001:db8::1), a network (192.0.2.0/24) or a list of them";
        let items: Vec<(&Node, String)> = match &v.value {
            NodeValue::Str(_) => vec![(v, key.to_string())],
            NodeValue::Seq(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, n)| (n, format!("{key}[{i}]")))
                .collect(),
            NodeValue::Seq(_) => {
                self.error(v, key, "an empty list matches nothing", fix);
                return None;
            }
            _ => {
                self.error(
                    v,
                    key,
                    format!("expected an address, found {}", v.kind()),
                    fix,
                );
                return None;
            }
        };
        let list = matches!(v.value, NodeValue::Seq(_));
        let mut out: Vec<Addr> = Vec::new();
        let mut ok = true;
        for (n, k) in items {
            let Some(text) = n.as_str() else {
                self.error(
                    n,
                    &k,
                    format!("expected an address, found {}", n.kind()),
                    fix,
                );
                ok = false;
                continue;
            };
            match values::address(text) {
                Ok(None) if list => {
                    self.error(
                        n,
                        &k,
                        "`any` in a list: the other addresses would mean nothing",
                        "write `any` alone, or list only addresses",
                    );
                    ok = false;
                }
                Ok(None) => out.push(Addr::Any),
                Ok(Some(net)) => {
                    let a = Addr::Net(net);
                    if out.contains(&a) {
                        self.error(n, &k, format!("{net} is listed twice"), "list it once");
                        ok = false;
                    } else {
                        out.push(a);
                    }
                }
                Err(e) => {
                    self.error(n, &k, e, fix);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// ufw keeps one rule per match (everything but the action and comment): a second rule with
    /// the same match would silently replace the first.
    fn check_duplicates(&mut self, rules: &[FirewallRule]) {
        for (i, r) in rules.iter().enumerate() {
            if let Some(first) = rules[..i].iter().find(|o| same_match(o, r)) {
                if first.line == r.line {
                    continue;
                }
                self.findings.errors.push(
                    SpecError::new(
                        self.file,
                        format!(
                            "the rule `{r}` matches the same traffic as the rule at line {}: ufw keeps only one of them",
                            first.line
                        ),
                    )
                    .at_line(Some(r.line))
                    .key("rules")
                    .fix("keep one of the two rules"),
                );
            }
        }
    }
}

fn same_match(a: &FirewallRule, b: &FirewallRule) -> bool {
    a.direction == b.direction
        && a.proto == b.proto
        && a.port == b.port
        && a.from == b.from
        && a.to == b.to
}
