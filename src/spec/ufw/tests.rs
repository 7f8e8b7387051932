use super::*;
use crate::source::snapshot::Snapshot;
use crate::spec::error::Findings;

/// The seed's firewall: the web open to all, SSH from the admins only.
pub(crate) const SEED: &str = "\
defaults:
  incoming: deny
  outgoing: allow
  routed: deny
rules:
  - action: allow
    port: 80
    proto: tcp
    comment: web
  - action: allow
    port: https
    proto: tcp
    comment: web (TLS)
  - action: allow
    port: ssh
    proto: tcp
    from: [192.0.2.3, 2001:db8:1::/48]
    comment: ssh admins
";

fn read(text: &str) -> (Option<FirewallSpec>, Findings) {
    load_firewall(&Snapshot::from_texts(&[("ufw/rules.yaml", text)]))
}

fn errors(text: &str) -> Vec<String> {
    let (spec, f) = read(text);
    assert!(spec.is_none(), "accepted: {spec:?}");
    f.errors.iter().map(|e| e.to_string()).collect()
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0].clone()
}

fn rule(extra: &str) -> String {
    format!("rules:\n  - action: allow\n{extra}")
}

#[test]
fn reads_the_seed_and_expands_lists() {
    let (spec, f) = read(SEED);
    assert!(f.errors.is_empty() && f.warnings.is_empty(), "{f:?}");
    let spec = spec.expect("spec");
    assert_eq!(spec.file, "ufw/rules.yaml");
    assert_eq!(
        spec.defaults,
        Defaults {
            incoming: Some(Policy::Deny),
            outgoing: Some(Policy::Allow),
            routed: Some(Policy::Deny),
        }
    );
    let shown: Vec<String> = spec.rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "allow in 80/tcp from any to any",
            "allow in 443/tcp from any to any",
            "allow in 22/tcp from 192.0.2.3 to any",
            "allow in 22/tcp from 2001:db8:1::/48 to any",
        ]
    );
    assert_eq!(spec.rules[2].line, 14);
    assert_eq!(spec.rules[3].line, 14);
    assert_eq!(spec.rules[3].comment.as_deref(), Some("ssh admins"));
    assert_eq!(spec.rules[0].families(), vec![false, true]);
    assert_eq!(spec.rules[3].families(), vec![true]);
}

#[test]
fn values_take_their_canonical_form() {
    let text = "rules:
  - action: limit
    port: \"8000:8100\"
    proto: udp
    from: 2001:DB8:0:0::0/32
    direction: out
    to: 2001:db8::7
  - action: reject
    from: 198.51.100.0/24
    to: 192.0.2.1/32
  - action: deny
    port: '53'
";
    let (spec, f) = read(text);
    assert!(f.is_ok(), "{f:?}");
    let r = spec.expect("spec").rules;
    assert_eq!(
        r[0].to_string(),
        "limit out 8000:8100/udp from 2001:db8::/32 to 2001:db8::7"
    );
    assert_eq!(
        r[1].to_string(),
        "reject in all traffic from 198.51.100.0/24 to 192.0.2.1"
    );
    assert_eq!(r[2].to_string(), "deny in 53 from any to any");
    assert_eq!(r[2].proto, None);
}

#[test]
fn no_ufw_folder_means_no_firewall_and_a_folder_without_rules_warns() {
    let (spec, f) = load_firewall(&Snapshot::from_texts(&[("README.md", "")]));
    assert!(spec.is_none() && f.errors.is_empty() && f.warnings.is_empty());
    let (spec, f) = load_firewall(&Snapshot::from_texts(&[("ufw/notes.md", "")]));
    assert!(spec.is_none() && f.errors.is_empty());
    assert_eq!(
        f.warnings[0].to_string(),
        "ufw/: no ufw/rules.yaml: the firewall is left as it is; add ufw/rules.yaml (see docs/firewall.md), or remove the folder"
    );
    let (spec, f) = load_firewall(&Snapshot::from_texts(&[("ufw/rules.yml", SEED)]));
    assert!(f.is_ok());
    assert_eq!(spec.expect("spec").file, "ufw/rules.yml");
    let (_, f) = load_firewall(&Snapshot::from_texts(&[
        ("ufw/rules.yml", SEED),
        ("ufw/rules.yaml", SEED),
    ]));
    assert_eq!(
        f.errors[0].to_string(),
        "ufw/rules.yaml: both ufw/rules.yaml and ufw/rules.yml exist; keep one (ufw/rules.yaml)"
    );
}

#[test]
fn unknown_keys_and_host_settings_are_errors() {
    assert_eq!(
        one_error(&rule("    port: 22\n    form: 192.0.2.3\n")),
        "ufw/rules.yaml:4: rules[0].form: unknown key; the keys of a rule are action, port, proto, from, to, comment, direction"
    );
    assert_eq!(
        one_error("owns_whole_firewall: true\nrules: []\n"),
        "ufw/rules.yaml:1: owns_whole_firewall: not a key of the repo's firewall file: it is a setting of the host; set firewall.owns_whole_firewall in gitmoor's config instead, and remove it here"
    );
    assert_eq!(
        one_error("defaults:\n  incoming: drop\nrules: []\n"),
        "ufw/rules.yaml:2: defaults.incoming: `drop` is not a policy; write allow, deny or reject"
    );
    assert_eq!(
        one_error("defaults:\n  forward: deny\nrules: []\n"),
        "ufw/rules.yaml:2: defaults.forward: unknown key; the keys are `incoming`, `outgoing` and `routed`"
    );
    assert!(one_error("defaults: {incoming: deny}\n").contains(": rules: no `rules:`"));
    assert!(one_error("rules:\n  - port: 22\n")
        .starts_with("ufw/rules.yaml:2: rules[0].action: missing"));
}

#[test]
fn bad_ports_are_refused_with_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "    port: 0\n    proto: tcp\n",
            "0 is not a port (1 to 65535)",
        ),
        ("    port: 65536\n", "65536 is not a port (1 to 65535)"),
        (
            "    port: \"100:80\"\n    proto: tcp\n",
            "the range `100:80` must go from a lower port to a higher one",
        ),
        (
            "    port: \"80:80\"\n    proto: tcp\n",
            "must go from a lower port",
        ),
        (
            "    port: 8000-8100\n    proto: tcp\n",
            "`8000-8100` is not a port: a range is written `lo:hi`",
        ),
        (
            "    port: gopher\n",
            "`gopher` is not a port number or a known service name",
        ),
        (
            "    port: \"22;reboot\"\n",
            "is not a port number or a known service name",
        ),
        ("    port: [22]\n", "expected a port, found a list"),
        ("    port: \"8000:8100\"\n", "a port range needs a protocol"),
    ];
    for (extra, want) in cases {
        let e = one_error(&rule(extra));
        assert!(e.contains(want), "{extra:?}: {e}");
        assert!(e.starts_with("ufw/rules.yaml:3: rules[0].port: "), "{e}");
    }
    // A range with a protocol, and a service name, are fine.
    let (_, f) = read(&rule("    port: \"60000:61000\"\n    proto: udp\n"));
    assert!(f.is_ok(), "{f:?}");
}

#[test]
fn hostile_addresses_are_refused_at_read_time() {
    let cases: &[(&str, &str)] = &[
        (
            "192.0.2.300",
            "`192.0.2.300` is not an IPv4 or IPv6 address",
        ),
        ("192.0.2.3; ufw disable", "is not an IPv4 or IPv6 address"),
        ("192.0.2.3 port 22", "is not an IPv4 or IPv6 address"),
        ("--force", "`--force` is not an IPv4 or IPv6 address"),
        ("example.com", "is not an IPv4 or IPv6 address"),
        (
            "192.0.2.3/24",
            "`192.0.2.3/24` has host bits set: the network is `192.0.2.0/24`",
        ),
        ("192.0.2.0/33", "`/33` is not a prefix length (0 to 32)"),
        ("192.0.2.0/+8", "`/+8` is not a prefix length"),
        ("0.0.0.0/0", "is every address"),
        ("::ffff:192.0.2.3", "IPv4-mapped"),
        ("fe80::1%eth0", "is not an IPv4 or IPv6 address"),
    ];
    for (addr, want) in cases {
        let e = one_error(&rule(&format!("    from: \"{addr}\"\n")));
        assert!(e.contains(want), "{addr}: {e}");
        assert!(e.starts_with("ufw/rules.yaml:3: rules[0].from: "), "{e}");
    }
    let e = one_error(&rule("    from: [192.0.2.3, nope]\n"));
    assert!(
        e.starts_with("ufw/rules.yaml:3: rules[0].from[1]: `nope`"),
        "{e}"
    );
    let e = one_error(&rule("    from: [192.0.2.3, any]\n"));
    assert!(e.contains("`any` in a list"), "{e}");
    let e = one_error(&rule("    from: [192.0.2.3, 192.0.2.3/32]\n"));
    assert!(e.contains("192.0.2.3 is listed twice"), "{e}");
    let e = one_error(&rule("    from: []\n"));
    assert!(e.contains("an empty list matches nothing"), "{e}");
    let e = one_error(&rule("    from: 192.0.2.3\n    to: 2001:db8::1\n"));
    assert!(e.contains("mix IPv4 and IPv6"), "{e}");
}

#[test]
fn hostile_comments_are_refused_at_read_time() {
    let cases: &[(&str, &str)] = &[
        ("\"it's mine\"", "a quote (')"),
        ("'say \"hi\"'", "a double quote"),
        ("\"a\\nb\"", "the control character U+000A"),
        ("\"a\\tb\"", "the control character U+0009"),
        ("\"\\e[31mred\"", "the control character U+001B"),
        ("'back\\slash'", "a backslash"),
        ("'`id`'", "a backtick"),
        (
            "\"allow \\u202Eny\"",
            "the invisible layout character U+202E",
        ),
        ("\"a\\u2066b\"", "U+2066"),
        ("\"a\\u2028b\"", "U+2028"),
        ("\"a\\u2029b\"", "U+2029"),
        ("\"a\\u200Fb\"", "U+200F"),
        ("[a, b]", "expected text, found a list"),
    ];
    for (c, want) in cases {
        let e = one_error(&rule(&format!("    comment: {c}\n")));
        assert!(e.contains(want), "{c}: {e}");
        assert!(e.starts_with("ufw/rules.yaml:3: rules[0].comment: "), "{e}");
    }
    let long = "x".repeat(MAX_COMMENT_CHARS + 1);
    let e = one_error(&rule(&format!("    comment: {long}\n")));
    assert!(e.contains("81 characters, over the limit of 80"), "{e}");
    let (spec, f) = read(&rule("    comment: \"  café: ok (v2) #1  \"\n"));
    assert!(f.is_ok());
    assert_eq!(
        spec.expect("spec").rules[0].comment.as_deref(),
        Some("café: ok (v2) #1")
    );
}

#[test]
fn two_rules_with_the_same_match_are_refused() {
    let text = "rules:
  - action: allow
    port: 22
    proto: tcp
    from: 192.0.2.3
  - action: deny
    port: ssh
    proto: tcp
    from: [192.0.2.3/32]
";
    assert_eq!(
        one_error(text),
        "ufw/rules.yaml:6: rules: the rule `deny in 22/tcp from 192.0.2.3 to any` matches the same traffic as the rule at line 2: ufw keeps only one of them; keep one of the two rules"
    );
}

#[test]
fn every_error_of_the_file_is_reported_and_sizes_are_bounded() {
    let text = "rules:\n  - action: permit\n    port: 0\n  - action: allow\n    from: nope\n";
    assert_eq!(errors(text).len(), 3, "{:#?}", errors(text));
    let big = format!("rules: []\n#{}\n", "x".repeat(MAX_FILE_BYTES));
    assert!(one_error(&big).contains("over the limit of 262144"));
    let addrs: Vec<String> = (0..=MAX_RULES)
        .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
        .collect();
    let e = one_error(&rule(&format!("    from: [{}]\n", addrs.join(", "))));
    assert!(e.contains("over the limit of 1000"), "{e}");
    assert!(one_error("- a\n").starts_with("ufw/rules.yaml:1: (top): expected a mapping"));
    assert!(one_error("").contains("the file is empty"));
}

#[test]
fn the_host_spec_carries_the_firewall() {
    use crate::spec::load::{load_host_spec, LoadOptions};
    let s = Snapshot::from_texts(&[("ufw/rules.yaml", SEED)]);
    let (spec, f) = load_host_spec(&s, &LoadOptions::default());
    assert!(f.is_ok(), "{f:?}");
    assert_eq!(
        spec.expect("spec").firewall.expect("firewall").rules.len(),
        4
    );
    let s = Snapshot::from_texts(&[("ufw/rules.yaml", "rules: [1]\n")]);
    let (spec, f) = load_host_spec(&s, &LoadOptions::default());
    assert!(spec.is_none());
    assert!(f.errors[0]
        .to_string()
        .starts_with("ufw/rules.yaml:1: rules[0]: expected a mapping"));
}
