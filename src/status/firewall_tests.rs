use super::*;
use crate::observe::ufw_parse::{parse_rules_files, DockerUserSeen};
use crate::plan::docker_guard::{BLOCK_BEGIN, BLOCK_END};
use crate::spec::ufw::Defaults;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The seed as gitmoor applies it, plus a rule made by hand (8443, no tag).
fn seed_applied(chain_v4: Vec<String>, chain_v6: Vec<String>) -> ObservedFirewall {
    let t = |rule: &str, comment: &str| {
        if comment.is_empty() {
            format!("### tuple ### {rule}\n")
        } else {
            format!("### tuple ### {rule} comment={}\n", hex(comment))
        }
    };
    let v4 = [
        t("allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in", "gitmoor: web"),
        t(
            "allow tcp 22 0.0.0.0/0 any 192.0.2.3 in",
            "gitmoor: ssh admins",
        ),
        t("allow tcp 8080 0.0.0.0/0 any 192.0.2.3 in", "gitmoor: app"),
        t("allow tcp 8443 0.0.0.0/0 any 0.0.0.0/0 in", ""),
    ]
    .concat();
    let v6 = t("allow tcp 80 ::/0 any ::/0 in", "gitmoor: web");
    ObservedFirewall {
        enabled: true,
        defaults: Defaults {
            incoming: Some(Policy::Deny),
            ..Defaults::default()
        },
        ipv6: true,
        rules: parse_rules_files(&v4, &v6),
        docker_user: DockerUserSeen {
            chains: [Some(chain_v4), Some(chain_v6)],
            after_files: [Some(after_rules()), Some(after_rules())],
            forward_jump_first: [Some(true), Some(true)],
            ..DockerUserSeen::default()
        },
    }
}

fn port(ip: &str, p: u16) -> PublishedPortSeen {
    PublishedPortSeen {
        container: "web-app-1".into(),
        host_ip: ip.into(),
        host_port: p,
        proto: "tcp".into(),
    }
}

/// `after.rules` with gitmoor's block (one rule, framed by its markers).
fn after_rules() -> String {
    format!("*filter\n:ufw-after-input - [0:0]\nCOMMIT\n{BLOCK_BEGIN}\n*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m comment --comment {CHAIN_MARK}begin-0123456789ab\n-A DOCKER-USER -j DROP\n-A DOCKER-USER -m comment --comment {CHAIN_MARK}end-0123456789ab\nCOMMIT\n{BLOCK_END}\n")
}

/// The live chain with that block loaded, as `iptables -S DOCKER-USER` prints it.
fn guard_chain() -> Vec<String> {
    vec![
        "-N DOCKER-USER".into(),
        format!("-A DOCKER-USER -m comment --comment {CHAIN_MARK}begin-0123456789ab"),
        "-A DOCKER-USER -j DROP".into(),
        format!("-A DOCKER-USER -m comment --comment {CHAIN_MARK}end-0123456789ab"),
    ]
}

#[test]
fn the_view_lists_ufws_open_ports_the_unmanaged_rules_and_who_reaches_each_published_port() {
    let published = [
        port("0.0.0.0", 8080),
        port("0.0.0.0", 80),
        port("0.0.0.0", 9000),
        port("127.0.0.1", 5432),
        port("::", 9000),
    ];
    // No guard loaded: a published port is open to everyone, whatever the rules say.
    let fw = seed_applied(vec![], vec![]);
    let v = firewall_view(&fw, &published, DockerGuard::Warn, "t".into());
    assert!(v.ufw_active && !v.docker_guard_active);
    assert_eq!(v.docker_guard, "warn");
    assert_eq!(v.default_incoming.as_deref(), Some("deny"));
    let open: Vec<(String, String, bool, bool)> = v
        .open
        .iter()
        .map(|o| (o.port.clone(), o.from.clone(), o.ipv6, o.managed))
        .collect();
    assert_eq!(
        open,
        [
            ("80/tcp".into(), "any".into(), false, true),
            ("22/tcp".into(), "192.0.2.3".into(), false, true),
            ("8080/tcp".into(), "192.0.2.3".into(), false, true),
            ("8443/tcp".into(), "any".into(), false, false),
            ("80/tcp".into(), "any".into(), true, true),
        ]
    );
    assert_eq!(v.unmanaged.len(), 1);
    assert!(v.unmanaged[0].contains("8443"), "{:?}", v.unmanaged);
    // Loopback is not "outside".
    assert_eq!(v.published.len(), 4);
    let by_port = |v: &FirewallView, ip: &str, p: u16| {
        v.published
            .iter()
            .find(|x| x.port == p && x.address == ip)
            .cloned()
            .unwrap()
    };
    let p8080 = by_port(&v, "0.0.0.0", 8080);
    assert_eq!(p8080.reachable_from, ["any"]);
    assert!(!p8080.covered, "{p8080:?}");
    assert!(p8080.note.contains("past UFW"), "{}", p8080.note);
    let p80 = by_port(&v, "0.0.0.0", 80);
    assert!(p80.covered && p80.reachable_from == ["any"], "{p80:?}");

    // The guard loaded (both families): the rules decide, and the hand-made rule does not
    // count (the guard's block holds the file's rules only).
    let fw = seed_applied(guard_chain(), guard_chain());
    let v = firewall_view(&fw, &published, DockerGuard::Enforce, "t".into());
    assert!(v.docker_guard_active);
    let p8080 = by_port(&v, "0.0.0.0", 8080);
    assert_eq!(p8080.reachable_from, ["192.0.2.3"]);
    assert!(p8080.covered);
    let p9000 = by_port(&v, "0.0.0.0", 9000);
    assert!(
        p9000.reachable_from.is_empty() && p9000.covered,
        "{p9000:?}"
    );
    assert!(p9000.note.contains("closed"), "{}", p9000.note);
    // IPv6: judged by the IPv6 rules.
    assert!(by_port(&v, "::", 9000).reachable_from.is_empty());

    // The IPv6 chain without the block: not active (IPv6 traffic would slip past).
    let fw = seed_applied(guard_chain(), vec![]);
    let v = firewall_view(&fw, &published, DockerGuard::Enforce, "t".into());
    assert!(!v.docker_guard_active);
    // UFW inactive: not active either.
    let mut fw = seed_applied(guard_chain(), guard_chain());
    fw.enabled = false;
    let v = firewall_view(&fw, &published, DockerGuard::Enforce, "t".into());
    assert!(!v.ufw_active && !v.docker_guard_active);
}

/// UFW's reading does not tell which of `ufw/rules.yaml` and `ufw/rules.yml` the commit has:
/// no note names either, so none sends the reader to a file that is not there.
#[test]
fn the_notes_name_no_firewall_file_they_cannot_know() {
    let published = [
        port("0.0.0.0", 8080),
        port("0.0.0.0", 80),
        port("0.0.0.0", 9000),
    ];
    let mut notes = Vec::new();
    for (fw, mode) in [
        (seed_applied(vec![], vec![]), DockerGuard::Warn),
        (
            seed_applied(guard_chain(), guard_chain()),
            DockerGuard::Enforce,
        ),
    ] {
        let v = firewall_view(&fw, &published, mode, "t".into());
        notes.extend(v.published.into_iter().map(|p| p.note));
    }
    assert_eq!(notes.len(), 6);
    for note in &notes {
        assert!(!note.contains("rules.y"), "{note}");
    }
    assert!(
        notes
            .iter()
            .any(|n| n.contains("the repo's firewall rules")),
        "{notes:?}"
    );
}

/// The guard is in force only when every part is: the block the files hold loaded whole in
/// DOCKER-USER and FORWARD jumping there first, in both families. Otherwise /status says it is
/// not, why, and that the published port is open (IPv6 traffic got through while the view said
/// "closed" when only the chain's first line was checked).
#[test]
fn the_guard_is_in_force_only_with_the_current_block_loaded_and_the_jumps_first() {
    let published = [port("0.0.0.0", 9000), port("::", 9000)];
    let whole = seed_applied(guard_chain(), guard_chain());
    assert!(
        firewall_view(&whole, &published, DockerGuard::Enforce, "t".into()).docker_guard_active
    );
    let cases: Vec<(ObservedFirewall, &str)> = vec![
        (
            {
                let mut f = whole.clone();
                f.docker_user.forward_jump_first[1] = Some(false);
                f
            },
            "FORWARD (ip6tables) does not send to DOCKER-USER first",
        ),
        (
            {
                let mut f = whole.clone();
                f.docker_user.forward_jump_first[0] = None;
                f
            },
            "FORWARD (iptables) does not send to DOCKER-USER first",
        ),
        (
            {
                // An older block still loaded: another hash than the files'.
                let old: Vec<String> = guard_chain()
                    .into_iter()
                    .map(|l| l.replace("0123456789ab", "ba9876543210"))
                    .collect();
                seed_applied(guard_chain(), old)
            },
            "DOCKER-USER (ip6tables) does not start with the block after6.rules holds",
        ),
        (
            {
                // The begin marker first, but its rules cut short (the end marker gone).
                let mut cut = guard_chain();
                cut.truncate(2);
                seed_applied(cut, guard_chain())
            },
            "DOCKER-USER (iptables) does not start with the block after.rules holds",
        ),
        (
            {
                let mut f = whole.clone();
                f.docker_user.after_files[1] = Some("*filter\nCOMMIT\n".into());
                f
            },
            "after6.rules holds no gitmoor block",
        ),
    ];
    for (fw, why) in cases {
        let v = firewall_view(&fw, &published, DockerGuard::Enforce, "t".into());
        assert!(!v.docker_guard_active, "{why}");
        assert!(
            v.docker_guard_not_in_force.iter().any(|w| w.contains(why)),
            "{why}: {:?}",
            v.docker_guard_not_in_force
        );
        for p in &v.published {
            assert!(!p.covered && p.reachable_from == ["any"], "{p:?}");
            assert!(
                p.note.contains("the Docker guard is not in force") && p.note.contains(why),
                "{}",
                p.note
            );
            assert!(!p.note.contains("closed"), "{}", p.note);
        }
    }
    // IPv6 not managed by ufw: the IPv6 side is not asked for.
    let mut f = whole.clone();
    f.ipv6 = false;
    f.docker_user.forward_jump_first[1] = Some(false);
    assert!(firewall_view(&f, &published, DockerGuard::Enforce, "t".into()).docker_guard_active);
}

/// An allow an earlier deny covers opens nothing (ufw takes the first rule that fits): not
/// listed as open. A deny that covers only part of it leaves it listed.
#[test]
fn an_allow_shadowed_by_an_earlier_deny_is_not_listed_open() {
    let v4 = "### tuple ### deny tcp 8000:9000 0.0.0.0/0 any 0.0.0.0/0 in\n\
### tuple ### allow tcp 8443 0.0.0.0/0 any 0.0.0.0/0 in\n\
### tuple ### deny any 22 0.0.0.0/0 any 192.0.2.0/24 in\n\
### tuple ### allow tcp 22 0.0.0.0/0 any 192.0.2.3 in\n\
### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n\
### tuple ### allow udp 8443 0.0.0.0/0 any 0.0.0.0/0 in\n";
    let v6 = "### tuple ### allow tcp 8443 ::/0 any ::/0 in\n";
    let fw = ObservedFirewall {
        enabled: true,
        ipv6: true,
        rules: parse_rules_files(v4, v6),
        ..ObservedFirewall::default()
    };
    let v = firewall_view(&fw, &[], DockerGuard::Warn, "t".into());
    let open: Vec<(String, String, bool)> = v
        .open
        .iter()
        .map(|o| (o.port.clone(), o.from.clone(), o.ipv6))
        .collect();
    assert_eq!(
        open,
        [
            ("22/tcp".into(), "any".into(), false),
            ("8443/udp".into(), "any".into(), false),
            ("8443/tcp".into(), "any".into(), true),
        ]
    );
}

/// An admin's rule put before gitmoor's whole block (`iptables -I`): the guard is in force for
/// what it lets pass, and /status names the rule that judges first.
#[test]
fn a_rule_of_others_before_the_block_is_a_note_not_a_guard_out_of_force() {
    let published = [port("0.0.0.0", 9000)];
    let mut chain = guard_chain();
    chain.insert(1, "-A DOCKER-USER -s 198.51.100.7/32 -j DROP".into());
    let f = seed_applied(chain, guard_chain());
    let v = firewall_view(&f, &published, DockerGuard::Enforce, "t".into());
    assert!(v.docker_guard_active, "{:?}", v.docker_guard_not_in_force);
    assert_eq!(v.docker_guard_notes.len(), 1, "{:?}", v.docker_guard_notes);
    assert!(
        v.docker_guard_notes[0].contains("DOCKER-USER (iptables)")
            && v.docker_guard_notes[0].contains("198.51.100.7/32"),
        "{:?}",
        v.docker_guard_notes
    );
    let whole = seed_applied(guard_chain(), guard_chain());
    assert!(
        firewall_view(&whole, &published, DockerGuard::Enforce, "t".into())
            .docker_guard_notes
            .is_empty()
    );
}
