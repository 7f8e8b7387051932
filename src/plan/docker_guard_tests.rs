use super::*;
use crate::source::snapshot::Snapshot;
use crate::spec::model::{PortSpec, ServiceSpec, StackSpec};

fn firewall(yaml: &str) -> FirewallSpec {
    let (fw, findings) =
        crate::spec::ufw::load_firewall(&Snapshot::from_texts(&[("ufw/rules.yaml", yaml)]));
    assert!(findings.is_ok(), "{:?}", findings.errors);
    fw.unwrap()
}

const SEED: &str = "defaults: {incoming: deny, outgoing: allow, routed: deny}
rules:
  - {action: allow, port: 80, proto: tcp}
  - {action: allow, port: 443, proto: tcp}
  - {action: allow, port: 22, proto: tcp, from: [192.0.2.3, 2001:db8:1::/48]}
  - {action: allow, port: 5432, proto: tcp, from: 10.0.0.0/8}
";

fn port(host_ip: &str, host_port: Option<u16>, protocol: &str) -> PortSpec {
    PortSpec {
        host_ip: host_ip.into(),
        host_port,
        container_port: 80,
        protocol: protocol.into(),
    }
}

fn host(fw: Option<&str>, ports: Vec<PortSpec>) -> HostSpec {
    let service = ServiceSpec {
        ports,
        ..ServiceSpec::default()
    };
    let stack = StackSpec {
        name: "web".into(),
        compose_file: "compose/web/compose.yaml".into(),
        services: [("api".to_string(), service)].into(),
        ..StackSpec::default()
    };
    HostSpec {
        stacks: [("web".to_string(), stack)].into(),
        firewall: fw.map(firewall),
        ..Default::default()
    }
}

#[test]
fn loopback_and_allowed_ports_pass_others_are_flagged_with_the_fix() {
    let h = host(
        Some(SEED),
        vec![
            port("127.0.0.1", Some(3000), "tcp"),
            port("::1", Some(3001), "tcp"),
            port("", Some(443), "tcp"),
            port("0.0.0.0", Some(8080), "tcp"),
            port("", Some(443), "udp"),
            port("192.0.2.1", Some(5432), "tcp"),
            port("", None, "tcp"),
        ],
    );
    let found = published_past_firewall(&h);
    let shown: Vec<String> = found.iter().map(|p| p.what()).collect();
    assert_eq!(
        shown,
        [
            "0.0.0.0:8080/tcp",
            "0.0.0.0:443/udp",
            "192.0.2.1:5432/tcp",
            "0.0.0.0:<any free port>/tcp"
        ]
    );
    assert_eq!(found[0].reach, Reach::Closed);
    assert_eq!(found[2].reach, Reach::Partly(vec!["10.0.0.0/8".into()]));

    let (errors, warnings) = docker_guard_findings(&h, DockerGuard::Refuse);
    assert_eq!((errors.len(), warnings.len()), (4, 0));
    let first = errors[0].to_string();
    assert!(
        first.starts_with(
            "compose/web/compose.yaml: services.api.ports: 0.0.0.0:8080/tcp is published past UFW"
        ),
        "{first}"
    );
    assert!(first.contains("127.0.0.1"), "{first}");
    assert!(
        first.contains("allow 8080/tcp in ufw/rules.yaml"),
        "{first}"
    );
    assert!(
        errors[2]
            .to_string()
            .contains("allows it only from 10.0.0.0/8"),
        "{}",
        errors[2]
    );

    let (errors, warnings) = docker_guard_findings(&h, DockerGuard::Warn);
    assert_eq!((errors.len(), warnings.len()), (0, 4));
    // Enforced, UFW decides: a port allowed from some sources is what the file says; a closed
    // one is worth a warning (it will not answer from outside).
    let (errors, warnings) = docker_guard_findings(&h, DockerGuard::Enforce);
    assert_eq!((errors.len(), warnings.len()), (0, 3));
    assert!(warnings[0].to_string().contains("closed from outside"));
    assert_eq!(
        docker_guard_findings(&h, DockerGuard::Off),
        (vec![], vec![])
    );
}

#[test]
fn without_a_firewall_file_there_is_nothing_to_compare() {
    let h = host(None, vec![port("", Some(8080), "tcp")]);
    assert!(published_past_firewall(&h).is_empty());
}

#[test]
fn reach_follows_the_first_rule_that_fits_then_the_default() {
    let fw = firewall(
        "defaults: {incoming: deny}
rules:
  - {action: deny, port: 8080, proto: tcp, from: 192.0.2.9}
  - {action: allow, port: 8080, proto: tcp}
  - {action: deny, port: 9000, proto: tcp}
  - {action: allow, port: 9000}
  - {action: allow, port: \"9100:9200\", proto: udp}
  - {action: allow, port: 7000, to: 192.0.2.1}
",
    );
    assert_eq!(reach(&fw, "0.0.0.0", 8080, Proto::Tcp), Reach::Open);
    assert_eq!(reach(&fw, "0.0.0.0", 9000, Proto::Tcp), Reach::Closed);
    assert_eq!(reach(&fw, "0.0.0.0", 9150, Proto::Udp), Reach::Open);
    assert_eq!(reach(&fw, "0.0.0.0", 9150, Proto::Tcp), Reach::Closed);
    assert_eq!(reach(&fw, "192.0.2.1", 7000, Proto::Tcp), Reach::Open);
    // On every address, a rule for one destination does not open them all.
    assert_eq!(reach(&fw, "0.0.0.0", 7000, Proto::Tcp), Reach::Closed);
    let open = firewall("defaults: {incoming: allow}\nrules: []\n");
    assert_eq!(reach(&open, "", 1, Proto::Tcp), Reach::Open);
}

#[test]
fn the_block_judges_dnat_connections_by_the_host_port_in_rule_order() {
    let fw = firewall(SEED);
    let v4 = docker_user_block(&fw, false);
    let lines: Vec<&str> = v4.lines().collect();
    assert_eq!(lines[0], BLOCK_BEGIN);
    assert_eq!(*lines.last().unwrap(), BLOCK_END);
    assert!(lines.contains(&"-A DOCKER-USER -m conntrack ! --ctstate DNAT -j RETURN"));
    let rules: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("--ctorigdstport") || l.ends_with("-j DROP"))
        .collect();
    assert_eq!(
        rules,
        [
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 80 -j RETURN",
            "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 443 -j RETURN",
            "-A DOCKER-USER -s 192.0.2.3 -p tcp -m conntrack --ctorigdstport 22 -j RETURN",
            "-A DOCKER-USER -s 10.0.0.0/8 -p tcp -m conntrack --ctorigdstport 5432 -j RETURN",
            "-A DOCKER-USER -j DROP",
        ]
    );
    let v6 = docker_user_block(&fw, true);
    assert!(v6.contains(
        "-A DOCKER-USER -s 2001:db8:1::/48 -p tcp -m conntrack --ctorigdstport 22 -j RETURN"
    ));
    assert!(!v6.contains("192.0.2.3"));
    assert!(v6.contains("--ctorigdstport 443 -j RETURN"));
}

#[test]
fn the_block_is_replaced_added_or_removed_and_the_rest_kept_byte_for_byte() {
    let base = "# after.rules\n*filter\n:ufw-after-input - [0:0]\nCOMMIT\n";
    let b1 = format!("{BLOCK_BEGIN}\n*filter\n-A DOCKER-USER -j DROP\nCOMMIT\n{BLOCK_END}\n");
    let b2 = format!("{BLOCK_BEGIN}\n*filter\n-A DOCKER-USER -j RETURN\nCOMMIT\n{BLOCK_END}\n");
    let with1 = splice_block(base, Some(&b1)).unwrap();
    assert_eq!(with1, format!("{base}{b1}"));
    // The admin adds lines after it: they stay.
    let edited = format!("{with1}# mine\n");
    let with2 = splice_block(&edited, Some(&b2)).unwrap();
    assert_eq!(with2, format!("{base}{b2}# mine\n"));
    assert_eq!(splice_block(&with2, Some(&b2)).unwrap(), with2);
    assert_eq!(
        splice_block(&with2, None).unwrap(),
        format!("{base}# mine\n")
    );
    assert_eq!(splice_block(base, None).unwrap(), base);
    // No newline at the end of the admin's file.
    assert_eq!(
        splice_block("COMMIT", Some(&b1)).unwrap(),
        format!("COMMIT\n{b1}")
    );
    let broken = format!("{base}{BLOCK_BEGIN}\n-A DOCKER-USER -j DROP\n");
    assert!(splice_block(&broken, Some(&b1))
        .unwrap_err()
        .contains("by hand"));
}

/// The chain as `iptables -S DOCKER-USER` prints it once `block` is loaded (the counter-only
/// markers and the rules, with Docker's own `-j RETURN` appended after them).
fn loaded(block: &str) -> Vec<String> {
    let mut v = vec!["-N DOCKER-USER".to_string()];
    v.extend(
        block
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string),
    );
    v.push("-A DOCKER-USER -j RETURN".into());
    v
}

fn observed_ufw(after: [Option<String>; 2], chains: [Option<Vec<String>>; 2]) -> ObservedFirewall {
    ObservedFirewall {
        enabled: true,
        ipv6: true,
        docker_user: DockerUserSeen {
            after_files: after,
            chains,
            chain_errors: vec!["iptables not found".into()],
            forward_jump_first: [Some(true), Some(true)],
        },
        ..ObservedFirewall::default()
    }
}

use crate::observe::ufw_parse::{DockerUserSeen, ObservedFirewall};

#[test]
fn the_live_chain_holds_the_block_only_whole_first_and_current() {
    let fw = firewall(SEED);
    let block = docker_user_block(&fw, false);
    let chain = loaded(&block);
    assert!(chain_holds_block(&chain, &block));
    // Flushed (Docker's RETURN back alone), or empty.
    assert!(!chain_holds_block(
        &["-N DOCKER-USER".into(), "-A DOCKER-USER -j RETURN".into()],
        &block
    ));
    assert!(!chain_holds_block(&[], &block));
    // A rule put before gitmoor's (an admin's `iptables -I`): the block is whole behind it.
    let mut first = chain.clone();
    first.insert(1, "-A DOCKER-USER -j ACCEPT".into());
    assert!(!chain_holds_block(&first, &block));
    assert_eq!(
        chain_block(&first, &block),
        ChainBlock::Behind(vec!["-A DOCKER-USER -j ACCEPT".into()])
    );
    assert_eq!(chain_block(&chain, &block), ChainBlock::First);
    assert_eq!(chain_block(&[], &block), ChainBlock::Absent);
    // One of its rules deleted.
    let mut short = chain.clone();
    short.remove(5);
    assert!(!chain_holds_block(&short, &block));
    assert_eq!(chain_block(&short, &block), ChainBlock::Other);
    // An older block (other rules): another hash.
    let old = docker_user_block(&firewall("defaults: {incoming: deny}\nrules: []\n"), false);
    assert!(!chain_holds_block(&loaded(&old), &block));
    assert!(chain_has_marks(&loaded(&old)));
    assert!(!chain_has_marks(&["-A DOCKER-USER -j RETURN".into()]));
}

#[test]
fn the_guard_is_planned_from_the_files_and_the_live_chains_on_every_reconcile() {
    let fw = firewall(SEED);
    let (b4, b6) = (docker_user_block(&fw, false), docker_user_block(&fw, true));
    let base = "*filter\nCOMMIT\n".to_string();
    let files = |a: &str, b: &str| [Some(a.to_string()), Some(b.to_string())];
    let with = (
        splice_block(&base, Some(&b4)).unwrap(),
        splice_block(&base, Some(&b6)).unwrap(),
    );

    // Files and chains as they should be: nothing to do.
    let good = observed_ufw(
        files(&with.0, &with.1),
        [Some(loaded(&b4)), Some(loaded(&b6))],
    );
    assert_eq!(
        plan_docker_guard(&fw, &good, DockerGuard::Enforce),
        (None, vec![])
    );

    // The files are right, but the IPv4 chain was flushed: loaded again, though no rule of the
    // repo changed.
    let flushed = observed_ufw(
        files(&with.0, &with.1),
        [Some(vec!["-N DOCKER-USER".into()]), Some(loaded(&b6))],
    );
    let (step, _) = plan_docker_guard(&fw, &flushed, DockerGuard::Enforce);
    let step = step.expect("a step");
    assert!(step.enforce);
    assert_eq!(step.reasons.len(), 1, "{:?}", step.reasons);
    assert!(
        step.reasons[0].contains("DOCKER-USER (iptables)"),
        "{:?}",
        step.reasons
    );

    // An admin's rule put before the block (`iptables -I`): no step (a reload would flush
    // it), a note naming it.
    let mut behind = loaded(&b4);
    behind.insert(1, "-A DOCKER-USER -s 198.51.100.7/32 -j DROP".into());
    let admin_first = observed_ufw(files(&with.0, &with.1), [Some(behind), Some(loaded(&b6))]);
    let (step, notes) = plan_docker_guard(&fw, &admin_first, DockerGuard::Enforce);
    assert_eq!(step, None);
    assert!(notes[0].contains("198.51.100.7/32"), "{notes:?}");
    // An older block loaded, the files current: no reload either, a note.
    let old = docker_user_block(&firewall("defaults: {incoming: deny}\nrules: []\n"), false);
    let older = observed_ufw(
        files(&with.0, &with.1),
        [Some(loaded(&old)), Some(loaded(&b6))],
    );
    let (step, notes) = plan_docker_guard(&fw, &older, DockerGuard::Enforce);
    assert_eq!(step, None);
    assert!(notes[0].contains("older"), "{notes:?}");

    // dockerd 20.10 with IPv6 NAT: no jump to DOCKER-USER in the IPv6 FORWARD chain.
    let mut no_jump = good.clone();
    no_jump.docker_user.forward_jump_first[1] = Some(false);
    let (step, _) = plan_docker_guard(&fw, &no_jump, DockerGuard::Enforce);
    let reasons = step.expect("a step").reasons;
    assert!(reasons[0].contains("FORWARD (ip6tables)"), "{reasons:?}");

    // No block in the files yet.
    let fresh = observed_ufw(files(&base, &base), [Some(vec![]), Some(vec![])]);
    let (step, _) = plan_docker_guard(&fw, &fresh, DockerGuard::Enforce);
    assert_eq!(step.unwrap().reasons.len(), 4);

    // IPv6 off in ufw: after6.rules is written, its chain not judged (ufw does not load it).
    let mut no_v6 = observed_ufw(files(&with.0, &with.1), [Some(loaded(&b4)), Some(vec![])]);
    no_v6.ipv6 = false;
    assert_eq!(plan_docker_guard(&fw, &no_v6, DockerGuard::Enforce).0, None);

    // A chain that cannot be read: the files alone are checked, and the plan says so.
    let blind = observed_ufw(files(&with.0, &with.1), [None, None]);
    let (step, notes) = plan_docker_guard(&fw, &blind, DockerGuard::Enforce);
    assert_eq!(step, None);
    assert!(notes[0].contains("could not be read"), "{notes:?}");

    // The guard switched off: the block leaves the files and the chains.
    let (step, _) = plan_docker_guard(&fw, &good, DockerGuard::Warn);
    let step = step.expect("a step");
    assert!(!step.enforce);
    assert_eq!(step.reasons.len(), 4, "{:?}", step.reasons);
    // Off, with clean files but rules still loaded: taken out of the chain.
    let left = observed_ufw(files(&base, &base), [Some(loaded(&b4)), Some(vec![])]);
    let (step, _) = plan_docker_guard(&fw, &left, DockerGuard::Off);
    assert_eq!(step.unwrap().reasons.len(), 1);
    // Off and clean: nothing.
    let clean = observed_ufw(files(&base, &base), [Some(vec![]), Some(vec![])]);
    assert_eq!(
        plan_docker_guard(&fw, &clean, DockerGuard::Warn),
        (None, vec![])
    );
}

/// Loading the block flushes DOCKER-USER (it declares the chain): the plan says which rules of
/// others a reload will drop, before it happens; a step that only puts the jump first reloads
/// nothing and says nothing.
#[test]
fn the_plan_names_the_rules_of_others_a_reload_drops() {
    let fw = firewall(SEED);
    let (b4, b6) = (docker_user_block(&fw, false), docker_user_block(&fw, true));
    let base = "*filter\nCOMMIT\n".to_string();
    let with = [
        Some(splice_block(&base, Some(&b4)).unwrap()),
        Some(splice_block(&base, Some(&b6)).unwrap()),
    ];
    let mut admin4 = loaded(&b4);
    admin4.push("-A DOCKER-USER -s 192.0.2.9/32 -j DROP".into());
    // The files change (no block yet): reloaded, and the admin's rule is named.
    let fresh = observed_ufw(
        [Some(base.clone()), Some(base.clone())],
        [
            Some(vec![
                "-N DOCKER-USER".into(),
                "-A DOCKER-USER -s 192.0.2.9/32 -j DROP".into(),
                "-A DOCKER-USER -j RETURN".into(),
            ]),
            Some(vec![]),
        ],
    );
    let (step, notes) = plan_docker_guard(&fw, &fresh, DockerGuard::Enforce);
    assert!(step.is_some());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("DOCKER-USER (iptables) holds rules gitmoor did not make")
            && notes[0].contains("`-A DOCKER-USER -s 192.0.2.9/32 -j DROP`")
            && !notes[0].contains("-j RETURN`")
            && notes[0].contains("ufw/rules.yaml"),
        "{notes:?}"
    );
    // Only the IPv6 jump missing: no reload, so nothing to warn about.
    let mut no_jump = observed_ufw(with.clone(), [Some(admin4.clone()), Some(loaded(&b6))]);
    no_jump.docker_user.forward_jump_first[1] = Some(false);
    let (step, notes) = plan_docker_guard(&fw, &no_jump, DockerGuard::Enforce);
    assert!(step.is_some());
    assert!(notes.is_empty(), "{notes:?}");
    // And nothing at all when the block and the jumps are in force.
    let good = observed_ufw(with, [Some(admin4), Some(loaded(&b6))]);
    assert_eq!(
        plan_docker_guard(&fw, &good, DockerGuard::Enforce),
        (None, vec![])
    );
}

#[test]
fn no_reason_holds_a_run_of_spaces_from_a_broken_line() {
    let fw = firewall(SEED);
    let b6 = docker_user_block(&fw, true);
    let base = "*filter\nCOMMIT\n".to_string();
    let o = observed_ufw(
        [
            Some(splice_block(&base, Some(&docker_user_block(&fw, false))).unwrap()),
            Some(splice_block(&base, Some(&b6)).unwrap()),
        ],
        [Some(vec![]), Some(vec![])],
    );
    let (step, _) = plan_docker_guard(&fw, &o, DockerGuard::Enforce);
    for r in step.expect("a step").reasons {
        assert!(!r.contains("  "), "{r}");
    }
}

#[test]
fn the_daemons_repair_is_asked_only_with_enforce_and_a_firewall_in_the_repo() {
    use crate::state::State;
    let mut with = State::default();
    with.firewall_in_repo = true;
    assert!(repair_asked(DockerGuard::Enforce, &with));
    assert!(!repair_asked(DockerGuard::Warn, &with));
    assert!(!repair_asked(DockerGuard::Off, &with));
    // The seed's app, no ufw/: never asked.
    assert!(!repair_asked(DockerGuard::Enforce, &State::default()));
    // A state file from before the flag: its firewall unit says it.
    let mut older = State::default();
    older.units.insert(
        "firewall/ufw".into(),
        serde_json::from_str(
            r#"{"last_good_commit":null,"result":"success","error":null,"updated":0}"#,
        )
        .unwrap(),
    );
    assert!(repair_asked(DockerGuard::Enforce, &older));
    // The flag follows the units of the commit applied whole.
    let mut st = with.clone();
    st.retain_units(|_| false);
    assert!(!st.firewall_in_repo);
    st.retain_units(|u| *u == crate::plan::UnitId::Firewall);
    assert!(st.firewall_in_repo);
}
