use super::*;
use crate::observe::ufw_parse::{parse_rules_files, ObservedFirewall};
use crate::source::snapshot::Snapshot;
use crate::spec::ufw::load_firewall;

/// The seed's three rules (SSH from two admin addresses, one of them IPv6).
const SEED: &str = "\
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
    port: 443
    proto: tcp
    comment: web
  - action: allow
    port: 22
    proto: tcp
    from: [192.0.2.3, 2001:db8::3]
    comment: ssh admins
";

fn spec(text: &str) -> FirewallSpec {
    let (spec, f) = load_firewall(&Snapshot::from_texts(&[("ufw/rules.yaml", text)]));
    assert!(f.is_ok(), "{f:?}");
    spec.expect("spec")
}

/// A fresh install: inactive, ufw's package defaults, no rule.
fn empty() -> ObservedFirewall {
    ObservedFirewall {
        enabled: false,
        defaults: Defaults {
            incoming: Some(Policy::Deny),
            outgoing: Some(Policy::Allow),
            routed: Some(Policy::Deny),
        },
        ipv6: true,
        rules: Vec::new(),
        docker_user: Default::default(),
    }
}

/// A host whose rules files hold these tuple lines (`v4`, `v6`), active.
fn host(v4: &str, v6: &str, incoming: Policy) -> ObservedFirewall {
    ObservedFirewall {
        enabled: true,
        defaults: Defaults {
            incoming: Some(incoming),
            ..empty().defaults
        },
        ipv6: true,
        rules: parse_rules_files(v4, v6),
        docker_user: Default::default(),
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The tuple lines ufw writes for the seed after gitmoor applied it.
fn seed_on_host() -> (String, String) {
    let web = hex("gitmoor: web");
    let ssh = hex("gitmoor: ssh admins");
    (
        format!("### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment={web}\n### tuple ### allow tcp 443 0.0.0.0/0 any 0.0.0.0/0 in comment={web}\n### tuple ### allow tcp 22 0.0.0.0/0 any 192.0.2.3 in comment={ssh}\n"),
        format!("### tuple ### allow tcp 80 ::/0 any ::/0 in comment={web}\n### tuple ### allow tcp 443 ::/0 any ::/0 in comment={web}\n### tuple ### allow tcp 22 ::/0 any 2001:db8::3 in comment={ssh}\n"),
    )
}

/// The guard for one SSH port, every session on it.
fn lockout_guard(plan: &FirewallPlan, port: u16, peers: &[IpAddr]) -> Result<(), String> {
    let sessions: Vec<(IpAddr, u16)> = peers.iter().map(|p| (*p, port)).collect();
    super::lockout_guard(plan, &[port], &sessions)
}

fn argvs(plan: &FirewallPlan) -> Vec<String> {
    plan.steps.iter().map(|s| s.argv.join(" ")).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn the_seed_against_an_empty_firewall_is_adds_then_defaults_then_enable() {
    let plan = plan_firewall(&spec(SEED), &empty(), FirewallOptions::default());
    let kinds: Vec<StepKind> = plan.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            StepKind::Add,
            StepKind::Add,
            StepKind::Add,
            StepKind::Add,
            StepKind::Enable
        ]
    );
    assert_eq!(
        argvs(&plan),
        vec![
            "allow proto tcp from any to any port 80 comment gitmoor: web",
            "allow proto tcp from any to any port 443 comment gitmoor: web",
            "allow proto tcp from 192.0.2.3 to any port 22 comment gitmoor: ssh admins",
            "allow proto tcp from 2001:db8::3 to any port 22 comment gitmoor: ssh admins",
            "--force enable",
        ]
    );
    assert_eq!(
        plan.steps[2].argv,
        [
            "allow",
            "proto",
            "tcp",
            "from",
            "192.0.2.3",
            "to",
            "any",
            "port",
            "22",
            "comment",
            "gitmoor: ssh admins"
        ]
    );
    assert_eq!(
        plan.steps[2].reason,
        "new rule `allow in 22/tcp from 192.0.2.3 to any` (ufw/rules.yaml:14)"
    );
    assert!(plan.unmanaged.is_empty() && plan.warnings.is_empty());
    // The v4 list gets 80, 443 and the v4 admin; the v6 list 80, 443 and the v6 admin.
    assert_eq!(plan.after.v4.len(), 3);
    assert_eq!(plan.after.v6.len(), 3);

    // With the defaults not yet as the file says, they are set after the rules.
    let mut open = empty();
    open.defaults.incoming = Some(Policy::Allow);
    let plan = plan_firewall(&spec(SEED), &open, FirewallOptions::default());
    assert_eq!(
        argvs(&plan)[4..],
        ["default deny incoming", "--force enable"]
    );
    assert_eq!(
        plan.steps[4].reason,
        "default incoming policy allow -> deny (ufw/rules.yaml)"
    );
}

#[test]
fn the_seed_applied_is_nothing_to_do() {
    let (v4, v6) = seed_on_host();
    let plan = plan_firewall(
        &spec(SEED),
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions::default(),
    );
    assert!(plan.is_empty(), "{:#?}", plan.steps);
    assert!(plan.unmanaged.is_empty());
}

#[test]
fn a_removed_rule_is_deleted_only_when_tagged_and_untagged_rules_are_kept() {
    let (mut v4, mut v6) = seed_on_host();
    // A rule gitmoor made earlier (now gone from the file), and one made by hand.
    v4.push_str(&format!(
        "### tuple ### allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in comment={}\n",
        hex("gitmoor: db")
    ));
    v6.push_str(&format!(
        "### tuple ### allow tcp 5432 ::/0 any ::/0 in comment={}\n",
        hex("gitmoor: db")
    ));
    v4.push_str("### tuple ### allow tcp 8080 0.0.0.0/0 any 198.51.100.7 in comment=6d696e65\n");
    v4.push_str("### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in\n");
    let observed = host(&v4, &v6, Policy::Deny);
    let plan = plan_firewall(&spec(SEED), &observed, FirewallOptions::default());
    assert_eq!(
        argvs(&plan),
        vec!["delete allow proto tcp from any to any port 5432"]
    );
    assert_eq!(
        plan.steps[0].reason,
        "`allow in 5432/tcp from any to any`: no longer in ufw/rules.yaml"
    );
    assert_eq!(plan.unmanaged.len(), 2, "{:#?}", plan.unmanaged);
    assert!(
        plan.unmanaged[0].starts_with(
            "[5] allow in 8080/tcp from 198.51.100.7 to any # mine: kept; not made by gitmoor"
        ),
        "{}",
        plan.unmanaged[0]
    );
    assert!(
        plan.unmanaged[1].contains("(app OpenSSH)"),
        "{}",
        plan.unmanaged[1]
    );
    assert!(!plan
        .after
        .v4
        .iter()
        .chain(&plan.after.v6)
        .any(|a| a.comment == "gitmoor: db"));

    // Owning the whole firewall deletes the hand-made plain rule too, never the app rule.
    let opts = FirewallOptions {
        owns_whole_firewall: true,
        ..FirewallOptions::default()
    };
    let plan = plan_firewall(&spec(SEED), &observed, opts);
    assert_eq!(
        argvs(&plan),
        vec![
            "delete allow proto tcp from any to any port 5432",
            "delete allow proto tcp from 198.51.100.7 to any port 8080",
        ]
    );
    assert!(plan.steps[1]
        .reason
        .contains("firewall.owns_whole_firewall"));
    assert_eq!(plan.unmanaged.len(), 1);
}

#[test]
fn changed_actions_and_comments_update_in_place_and_a_same_match_rule_is_left_alone() {
    let (v4, v6) = seed_on_host();
    let v4 = v4
        .replace("allow tcp 443", "limit tcp 443")
        .replace(&hex("gitmoor: ssh admins"), &hex("gitmoor: old"));
    let v4 = format!("{v4}### tuple ### allow tcp 8443 0.0.0.0/0 any 0.0.0.0/0 in\n");
    let text = format!("{SEED}  - action: deny\n    port: 8443\n    proto: tcp\n    from: any\n");
    let plan = plan_firewall(
        &spec(&text),
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions::default(),
    );
    let kinds: Vec<StepKind> = plan.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![StepKind::Update, StepKind::Update, StepKind::Add]
    );
    assert!(
        plan.steps[0].reason.ends_with("action limit -> allow"),
        "{}",
        plan.steps[0].reason
    );
    assert!(plan.steps[1]
        .reason
        .ends_with("comment `gitmoor: old` -> `gitmoor: ssh admins`"));
    // 8443 exists on v4 only, made by hand with another action: left as it is (said), and
    // the IPv6 rule added for IPv6 alone, so ufw does not touch the IPv4 one.
    assert_eq!(
        plan.steps[2].argv.join(" "),
        "deny proto tcp from ::/0 to ::/0 port 8443 comment gitmoor"
    );
    assert_eq!(
        plan.steps[2].reason,
        "new rule `deny in 8443/tcp from any to any` (ufw/rules.yaml:19)"
    );
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].starts_with("ufw/rules.yaml:19: `deny in 8443/tcp from any to any` is not applied in IPv4: UFW has `allow in 8443/tcp from any to any`, made outside gitmoor")
            && plan.warnings[0].contains("firewall.owns_whole_firewall: true"),
        "{:?}",
        plan.warnings
    );
    assert!(plan.unmanaged.is_empty());
    // The firewall as it will be keeps the hand-made allow in IPv4.
    let hand4 = plan
        .after
        .v4
        .iter()
        .find(|a| {
            a.tuple
                .as_ref()
                .is_some_and(|t| t.dport == Ports::One(8443))
        })
        .unwrap();
    assert_eq!(
        (hand4.tuple.as_ref().unwrap().action, hand4.comment.as_str()),
        (Action::Allow, "")
    );

    // Owning the whole firewall: taken over, as before, in one call.
    let plan = plan_firewall(
        &spec(&text),
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions {
            owns_whole_firewall: true,
            ..FirewallOptions::default()
        },
    );
    assert_eq!(
        plan.steps[2].argv.join(" "),
        "deny proto tcp from any to any port 8443 comment gitmoor"
    );
    assert!(
        plan.steps[2].reason.ends_with("takes over the rule made outside gitmoor (firewall.owns_whole_firewall), action allow -> deny"),
        "{}",
        plan.steps[2].reason
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

    // A hand-made rule with the same match and action as one of the file: nothing to do, not
    // re-tagged, reported as kept.
    let hand = "### tuple ### allow tcp 22 0.0.0.0/0 any 192.0.2.3 in comment=6d696e65\n";
    let plan = plan_firewall(
        &spec(SEED),
        &host(hand, "", Policy::Deny),
        FirewallOptions::default(),
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| !s.argv.iter().any(|w| w == "192.0.2.3")),
        "{:?}",
        argvs(&plan)
    );
    assert_eq!(plan.unmanaged.len(), 1, "{:?}", plan.unmanaged);
    assert!(
        plan.unmanaged[0].contains("# mine`") || plan.unmanaged[0].contains("# mine"),
        "{:?}",
        plan.unmanaged
    );
    assert!(
        plan.unmanaged[0].contains("stays when the file drops the rule"),
        "{:?}",
        plan.unmanaged
    );
    assert_eq!(
        plan.after.v4.iter().filter(|a| a.comment == "mine").count(),
        1
    );
    // The guard still counts it: the admin stays in.
    assert_eq!(lockout_guard(&plan, 22, &[ip("192.0.2.3")]), Ok(()));
}

/// A gitmoor rule of `any` to `any` leaving the file, with a hand-made rule of the same match
/// in the other family: the delete names its family's `any`, so ufw keeps the other (a plain
/// `ufw delete allow 80/tcp` takes both), and the plan's "after" keeps it too.
#[test]
fn a_delete_of_any_to_any_keeps_the_hand_made_rule_of_the_other_family() {
    let web = hex("gitmoor: web");
    let v4 = format!("### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in comment={web}\n");
    let v6 = "### tuple ### allow tcp 8080 ::/0 any ::/0 in\n";
    let text = "rules:\n  - action: allow\n    port: 443\n    proto: tcp\n";
    let plan = plan_firewall(
        &spec(text),
        &host(&v4, v6, Policy::Deny),
        FirewallOptions::default(),
    );
    let deletes: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Delete)
        .map(|s| s.argv.join(" "))
        .collect();
    assert_eq!(
        deletes,
        ["delete allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 8080"]
    );
    assert!(plan.after.v6.iter().any(|a| a
        .tuple
        .as_ref()
        .is_some_and(|t| t.dport == Ports::One(8080))));
    assert!(!plan.after.v4.iter().any(|a| a
        .tuple
        .as_ref()
        .is_some_and(|t| t.dport == Ports::One(8080))));
    assert!(
        plan.unmanaged.iter().any(|u| u.contains("8080")),
        "{:?}",
        plan.unmanaged
    );
    // Both gitmoor's: one plain delete takes both.
    let v6 = format!("### tuple ### allow tcp 8080 ::/0 any ::/0 in comment={web}\n");
    let plan = plan_firewall(
        &spec(text),
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions::default(),
    );
    let deletes: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Delete)
        .map(|s| s.argv.join(" "))
        .collect();
    assert_eq!(
        deletes,
        ["delete allow proto tcp from any to any port 8080"]
    );
}

#[test]
fn a_deny_added_after_an_allow_it_cuts_into_is_warned_about() {
    let (v4, v6) = seed_on_host();
    let text = SEED.replace(
        "rules:\n",
        "rules:\n  - action: deny\n    port: 22\n    proto: tcp\n    from: 192.0.2.0/24\n",
    );
    // Written that way the file is itself refused? No: 192.0.2.0/24 and 192.0.2.3 differ.
    let plan = plan_firewall(
        &spec(&text),
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions::default(),
    );
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].starts_with("ufw/rules.yaml:6: `deny in 22/tcp from 192.0.2.0/24 to any` comes before `allow in 22/tcp from 192.0.2.3 to any` (line 18) in the file, but after it in UFW"), "{}", plan.warnings[0]);
}

#[test]
fn ipv6_rules_need_ufw_ipv6() {
    let mut observed = empty();
    observed.ipv6 = false;
    let plan = plan_firewall(&spec(SEED), &observed, FirewallOptions::default());
    assert_eq!(
        plan.steps
            .iter()
            .filter(|s| s.kind == StepKind::Add)
            .count(),
        3
    );
    assert!(plan.warnings[0].contains("IPV6=yes"), "{:?}", plan.warnings);
    assert!(plan.after.v6.is_empty());
}

// The lockout guard.

#[test]
fn the_guard_accepts_the_seed_with_the_admin_connected_from_a_listed_address() {
    let plan = plan_firewall(&spec(SEED), &empty(), FirewallOptions::default());
    assert_eq!(lockout_guard(&plan, 22, &[ip("192.0.2.3")]), Ok(()));
    assert_eq!(
        lockout_guard(&plan, 22, &[ip("2001:db8::3"), ip("::ffff:192.0.2.3")]),
        Ok(())
    );
    assert_eq!(lockout_guard(&plan, 22, &[]), Ok(()));
}

#[test]
fn the_guard_refuses_a_file_that_drops_the_connected_admins_address() {
    let (v4, v6) = seed_on_host();
    let observed = host(&v4, &v6, Policy::Deny);
    let text = SEED.replace("[192.0.2.3, 2001:db8::3]", "[192.0.2.4, 2001:db8::3]");
    let plan = plan_firewall(&spec(&text), &observed, FirewallOptions::default());
    // The plan itself would add .4 first, then delete .3.
    assert_eq!(
        argvs(&plan),
        vec![
            "allow proto tcp from 192.0.2.4 to any port 22 comment gitmoor: ssh admins",
            "delete allow proto tcp from 192.0.2.3 to any port 22",
        ]
    );
    let e = lockout_guard(&plan, 22, &[ip("192.0.2.4"), ip("192.0.2.3")]).unwrap_err();
    assert_eq!(
        e,
        "the firewall change would lock out SSH (port 22/tcp): 192.0.2.3 has an SSH session open now, and no rule lets it in and the default incoming policy is deny; nothing of the firewall was changed. Allow it in ufw/rules.yaml, or set firewall.allow_ssh_lockout: true in gitmoor's config to apply it anyway"
    );
    // The same for an IPv6 admin.
    let text = SEED.replace("[192.0.2.3, 2001:db8::3]", "[192.0.2.3, 2001:db8::4]");
    let plan = plan_firewall(&spec(&text), &observed, FirewallOptions::default());
    let e = lockout_guard(&plan, 22, &[ip("2001:db8::3")]).unwrap_err();
    assert!(e.contains("2001:db8::3 has an SSH session open now"), "{e}");
    assert_eq!(lockout_guard(&plan, 22, &[ip("2001:db8::4")]), Ok(()));
}

#[test]
fn the_guard_refuses_default_deny_with_no_ssh_rule() {
    let text =
        "defaults: {incoming: deny}\nrules:\n  - action: allow\n    port: 443\n    proto: tcp\n";
    let mut open = empty();
    open.defaults.incoming = Some(Policy::Allow);
    let plan = plan_firewall(&spec(text), &open, FirewallOptions::default());
    let e = lockout_guard(&plan, 22, &[]).unwrap_err();
    assert!(
        e.contains("no rule lets any source in, and the default incoming policy is deny"),
        "{e}"
    );
    assert!(e.contains("firewall.allow_ssh_lockout: true"), "{e}");
    // On another SSH port the same file locks out too; default allow keeps it open.
    assert!(lockout_guard(&plan, 2222, &[]).is_err());
    let text = "defaults: {incoming: allow}\nrules: []\n";
    let plan = plan_firewall(&spec(text), &empty(), FirewallOptions::default());
    assert_eq!(lockout_guard(&plan, 22, &[ip("203.0.113.50")]), Ok(()));
}

#[test]
fn the_guard_follows_ufw_order_limit_and_uncertain_rules() {
    let plan_of = |rules: &str| {
        plan_firewall(
            &spec(&format!("defaults: {{incoming: deny}}\nrules:\n{rules}")),
            &empty(),
            FirewallOptions::default(),
        )
    };
    // A deny for the admin's network before the allow: first match wins.
    let plan = plan_of("  - action: deny\n    port: 22\n    proto: tcp\n    from: 192.0.2.0/24\n  - action: allow\n    port: 22\n    proto: tcp\n");
    let e = lockout_guard(&plan, 22, &[ip("192.0.2.3")]).unwrap_err();
    assert!(e.contains("the rule `deny in 22/tcp from 192.0.2.0/24 to any` (# gitmoor) comes first and drops it"), "{e}");
    // ... but SSH stays open to others, so without a session there it passes.
    assert_eq!(lockout_guard(&plan, 22, &[ip("198.51.100.1")]), Ok(()));
    // The other order lets the admin in; `limit` counts as letting in; a range covers 22.
    let plan = plan_of("  - action: limit\n    port: \"20:30\"\n    proto: tcp\n    from: 192.0.2.0/24\n  - action: reject\n    port: 22\n");
    assert_eq!(lockout_guard(&plan, 22, &[ip("192.0.2.3")]), Ok(()));
    let e = lockout_guard(&plan, 22, &[ip("198.51.100.1")]).unwrap_err();
    assert!(
        e.contains("`reject in 22 from any to any` (# gitmoor) comes first and rejects it"),
        "{e}"
    );
    // A udp-only allow or an allow to one destination address does not count.
    let plan = plan_of("  - action: allow\n    port: 22\n    proto: udp\n  - action: allow\n    port: 22\n    to: 192.0.2.1\n");
    assert!(lockout_guard(&plan, 22, &[]).is_err());
    // A deny for a whole network does not close SSH to everyone: an allow for all comes after.
    let plan = plan_of("  - action: deny\n    from: 10.0.0.0/8\n  - action: allow\n    port: ssh\n    proto: tcp\n");
    assert_eq!(lockout_guard(&plan, 22, &[]), Ok(()));
    // A deny for everyone first closes it, even with the allow after.
    let plan = plan_of("  - action: deny\n    port: 22\n  - action: allow\n    port: 22\n    proto: tcp\n    from: 192.0.2.3\n");
    assert!(lockout_guard(&plan, 22, &[]).is_err());
}

#[test]
fn the_guard_sees_what_stays_on_the_host_and_ipv6_off() {
    // An unmanaged rule kept on the host keeps the admin in, even though the file drops SSH.
    let observed = host(
        "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in\n",
        "### tuple ### allow tcp 22 ::/0 any ::/0 OpenSSH - in\n",
        Policy::Deny,
    );
    let text = "rules:\n  - action: allow\n    port: 443\n    proto: tcp\n";
    let plan = plan_firewall(&spec(text), &observed, FirewallOptions::default());
    assert_eq!(
        lockout_guard(&plan, 22, &[ip("192.0.2.3"), ip("2001:db8::3")]),
        Ok(())
    );
    // With IPv6 off in ufw, an IPv6 session would be dropped.
    let mut off = empty();
    off.ipv6 = false;
    let plan = plan_firewall(&spec(SEED), &off, FirewallOptions::default());
    let e = lockout_guard(&plan, 22, &[ip("2001:db8::3")]).unwrap_err();
    assert!(e.contains("IPV6=no"), "{e}");
}

/// A session from the host itself (an `ssh -R` tunnel from 127.0.0.1 or ::1) never makes the
/// guard refuse: UFW lets loopback in before any rule. The apply's check passes the sessions
/// unfiltered, so the guard must judge this itself.
#[test]
fn the_guard_leaves_loopback_sessions_out() {
    let (v4, v6) = seed_on_host();
    let plan = plan_firewall(
        &spec(&SEED.replace("[192.0.2.3, 2001:db8::3]", "[192.0.2.4]")),
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions::default(),
    );
    let loopback = [
        ip("127.0.0.1"),
        ip("::1"),
        ip("::ffff:127.0.0.1"),
        ip("127.0.0.5"),
    ];
    assert_eq!(lockout_guard(&plan, 22, &loopback), Ok(()));
    // With IPv6 off in ufw too.
    let mut off = empty();
    off.ipv6 = false;
    let plan = plan_firewall(&spec(SEED), &off, FirewallOptions::default());
    assert_eq!(lockout_guard(&plan, 22, &loopback), Ok(()));
    // A real peer next to them is still judged.
    let mut peers = loopback.to_vec();
    peers.push(ip("2001:db8::3"));
    assert!(lockout_guard(&plan, 22, &peers).is_err());
}

/// sshd listening on two ports: each must stay open from somewhere, and a session is judged
/// on the port it is connected to.
#[test]
fn the_guard_keeps_every_ssh_port_open_and_judges_each_session_on_its_port() {
    let text = "defaults: {incoming: deny}\nrules:\n  - action: allow\n    port: 22\n    proto: tcp\n    from: 192.0.2.3\n  - action: allow\n    port: 2222\n    proto: tcp\n    from: 192.0.2.4\n";
    let plan = plan_firewall(&spec(text), &empty(), FirewallOptions::default());
    assert_eq!(super::lockout_guard(&plan, &[22, 2222], &[]), Ok(()));
    let s = |a: &str, p: u16| (ip(a), p);
    assert_eq!(
        super::lockout_guard(
            &plan,
            &[22, 2222],
            &[s("192.0.2.3", 22), s("192.0.2.4", 2222)]
        ),
        Ok(())
    );
    let e = super::lockout_guard(&plan, &[22, 2222], &[s("192.0.2.3", 2222)]).unwrap_err();
    assert!(
        e.contains("(port 2222/tcp): 192.0.2.3 has an SSH session open now"),
        "{e}"
    );
    // The second port closed to all: refused, though the first stays open.
    let only_22 =
        "defaults: {incoming: deny}\nrules:\n  - action: allow\n    port: 22\n    proto: tcp\n";
    let plan = plan_firewall(&spec(only_22), &empty(), FirewallOptions::default());
    let e = super::lockout_guard(&plan, &[22, 2222], &[]).unwrap_err();
    assert!(
        e.contains("(port 2222/tcp): no rule lets any source in"),
        "{e}"
    );
}

/// A rule UFW holds that gitmoor cannot represent (a port list, as `ufw deny 22,80/tcp`
/// makes) still counts: a deny whose ports may include SSH's closes it; a plain allow of a
/// list holding the SSH port lets in.
#[test]
fn the_guard_counts_rules_with_port_lists() {
    let (v4, v6) = seed_on_host();
    let deny = "### tuple ### deny tcp 22,80 0.0.0.0/0 any 0.0.0.0/0 in\n";
    let observed = host(&format!("{deny}{v4}"), &v6, Policy::Deny);
    assert_eq!(observed.rules[0].tuple, None);
    let plan = plan_firewall(&spec(SEED), &observed, FirewallOptions::default());
    let e = lockout_guard(&plan, 22, &[ip("192.0.2.3")]).unwrap_err();
    assert!(
        e.contains("`deny tcp 22,80 0.0.0.0/0 any 0.0.0.0/0 in`, which gitmoor cannot fully read"),
        "{e}"
    );
    // No session: SSH still closed to every IPv4 source, but open over IPv6 to the admin.
    assert_eq!(lockout_guard(&plan, 22, &[]), Ok(()));
    let only_v4 = host(&format!("{deny}{v4}"), "", Policy::Deny);
    let mut p4 = plan_firewall(&spec(SEED), &only_v4, FirewallOptions::default());
    p4.after.ipv6 = false;
    assert!(lockout_guard(&p4, 22, &[])
        .unwrap_err()
        .contains("no rule lets any source in"));
    // A list without the SSH port, or a udp one, does not matter; a range in a list does.
    for (rule, closes) in [
        ("deny tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 in", false),
        ("deny udp 22,53 0.0.0.0/0 any 0.0.0.0/0 in", false),
        ("reject any 80,20:30 0.0.0.0/0 any 0.0.0.0/0 in", true),
        ("deny tcp 22,80 0.0.0.0/0 any 192.0.2.0/24 in", true),
        ("deny tcp 22,80 0.0.0.0/0 any 198.51.100.0/24 in", false),
        ("deny esp any 0.0.0.0/0 any 0.0.0.0/0 in", false),
        ("deny_log tcp 22,80 0.0.0.0/0 any 0.0.0.0/0 in", true),
        ("route:deny tcp 22,80 0.0.0.0/0 any 0.0.0.0/0 in", false),
        ("frobnicate tcp 22,80 0.0.0.0/0 any 0.0.0.0/0 in", true),
    ] {
        let o = host(&format!("### tuple ### {rule}\n{v4}"), &v6, Policy::Deny);
        let p = plan_firewall(&spec(SEED), &o, FirewallOptions::default());
        assert_eq!(
            lockout_guard(&p, 22, &[ip("192.0.2.3")]).is_err(),
            closes,
            "{rule}"
        );
    }
    // An allow of a list holding 22, for everyone, keeps SSH open without any other rule.
    let text =
        "defaults: {incoming: deny}\nrules:\n  - action: allow\n    port: 443\n    proto: tcp\n";
    let o = host(
        "### tuple ### allow tcp 22,8080 0.0.0.0/0 any 0.0.0.0/0 in\n",
        "### tuple ### allow tcp 22,8080 ::/0 any ::/0 in\n",
        Policy::Deny,
    );
    let p = plan_firewall(&spec(text), &o, FirewallOptions::default());
    assert_eq!(lockout_guard(&p, 22, &[ip("203.0.113.9")]), Ok(()));
}

/// A repo with `ufw/rules.yml` (the other name the reader takes): every message that sends the
/// reader to the file names that file, never `ufw/rules.yaml`.
#[test]
fn the_messages_name_the_firewall_file_the_commit_has() {
    use crate::observe::{FirewallHost, Seen};
    use crate::plan::tests::{ctx, images};
    use crate::plan::{plan, Work};
    use crate::spec::model::HostSpec;
    let text = SEED.replace("[192.0.2.3, 2001:db8::3]", "[192.0.2.4]");
    let (fw, f) = load_firewall(&Snapshot::from_texts(&[("ufw/rules.yml", &text)]));
    assert!(f.is_ok(), "{f:?}");
    let fw = fw.expect("spec");
    assert_eq!(fw.file, "ufw/rules.yml");

    // The lockout guard's refusal.
    let (v4, v6) = seed_on_host();
    let p = plan_firewall(
        &fw,
        &host(&v4, &v6, Policy::Deny),
        FirewallOptions::default(),
    );
    let e = lockout_guard(&p, 22, &[ip("192.0.2.3")]).unwrap_err();
    assert!(e.contains("Allow it in ufw/rules.yml,"), "{e}");
    assert!(!e.contains("rules.yaml"), "{e}");

    // The same refusal in the host's plan, and a firewall that could not be read.
    let spec = HostSpec {
        firewall: Some(fw),
        ..Default::default()
    };
    let mut observed = images();
    observed.firewall = Seen::Observed(FirewallHost {
        state: host(&v4, &v6, Policy::Deny),
        ssh_ports: vec![22],
        ssh_peers: vec![(ip("192.0.2.3"), 22)],
    });
    let refused = |observed: &crate::observe::Observed| {
        let p = plan(&spec, observed, &ctx()).expect("a plan");
        let Work::Firewall(f) = &p.units[0].work else {
            panic!("{p:?}")
        };
        f.refused.clone().expect("refused")
    };
    let why = refused(&observed);
    assert!(
        why.contains("ufw/rules.yml") && !why.contains("rules.yaml"),
        "{why}"
    );
    observed.firewall = Seen::NotObserved("ufw is not installed".into());
    assert_eq!(
        refused(&observed),
        "firewall not observed (ufw is not installed): ufw/rules.yml is not applied, nothing of the firewall was changed"
    );
}
