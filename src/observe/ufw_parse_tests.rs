//! Samples from real UFW 0.36.2 (Debian 12), run in a network namespace with a private /etc/ufw
//! and /etc/default/ufw (as ../shared/recipes/ufw-netns.sh does), never the machine's own.

use super::*;

/// `grep '^### tuple' /etc/ufw/user.rules` after: allow 80/tcp (comment), allow 443/tcp, allow
/// 22/tcp from 192.0.2.3 (comment `x`), deny udp 8000:8100 from a network, allow all from one
/// address, `allow OpenSSH`, reject out to 25/tcp, a source port, a route rule, an interface
/// rule, allow tcp from an address, and `allow 53` (tcp and udp).
pub(crate) const USER_RULES: &str = "*filter
:ufw-user-input - [0:0]
### RULES ###

### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment=6769746d6f6f723a20776562
-A ufw-user-input -p tcp --dport 80 -j ACCEPT

### tuple ### allow tcp 443 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### allow tcp 22 0.0.0.0/0 any 192.0.2.3 in comment=78
### tuple ### deny udp 8000:8100 0.0.0.0/0 any 198.51.100.0/24 in
### tuple ### allow any any 0.0.0.0/0 any 192.0.2.9 in
### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in
### tuple ### reject tcp 25 203.0.113.5 any 0.0.0.0/0 out comment=6769746d6f6f723a206e6f20736d7470
### tuple ### allow tcp 5432 0.0.0.0/0 1234 192.0.2.0/24 in
### tuple ### route:allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in_lo
### tuple ### allow tcp 23 0.0.0.0/0 any 192.0.2.0/24 in
### tuple ### allow tcp any 0.0.0.0/0 any 192.0.2.7 in
### tuple ### allow any 53 0.0.0.0/0 any 0.0.0.0/0 in
COMMIT
";

pub(crate) const USER6_RULES: &str =
    "### tuple ### allow tcp 80 ::/0 any ::/0 in comment=6769746d6f6f723a20776562
### tuple ### allow tcp 443 ::/0 any ::/0 in
### tuple ### allow tcp 22 ::/0 any ::/0 OpenSSH - in
### tuple ### route:allow tcp 8080 ::/0 any ::/0 in
### tuple ### allow tcp 9999 ::/0 any ::/0 in_lo
### tuple ### allow any 53 ::/0 any ::/0 in
### tuple ### limit tcp 22 ::/0 any 2001:db8::/32 in comment=6769746d6f6f723a2076362061646d696e73
### tuple ### allow tcp 443 2001:db8::1 any 2001:db8::5 in
### tuple ### allow tcp 23 ::/0 any ::/0 in comment=c3a920c3bc6ec3af
### tuple ### allow esp any ::/0 any ::/0 in
";

/// `ufw status numbered` of the same rules (the order the numbers follow).
const NUMBERED_HEAD: &str =
    "[ 1] 80/tcp                     ALLOW IN    Anywhere                   # gitmoor: web
[ 6] OpenSSH                    ALLOW IN    Anywhere
[ 7] 203.0.113.5 25/tcp         REJECT OUT  Anywhere                   (out) # gitmoor: no smtp
[13] 53                         ALLOW IN    Anywhere
[14] 80/tcp (v6)                ALLOW IN    Anywhere (v6)              # gitmoor: web";

const STATUS_ACTIVE: &str = "Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), deny (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
80/tcp                     ALLOW IN    Anywhere                   # gitmoor: web
";

const DEFAULT_FILE: &str = "# /etc/default/ufw
#

# Set to yes to apply rules to support IPv6 (no means only IPv6 on loopback
# accepted). You will need to 'disable' and then 'enable' the firewall for
# the changes to take affect.
IPV6=yes

# Set the default input policy to ACCEPT, DROP, or REJECT. Please note that if
# you change this you will most likely want to adjust your rules.
DEFAULT_INPUT_POLICY=\"REJECT\"
DEFAULT_OUTPUT_POLICY=\"ACCEPT\"
DEFAULT_FORWARD_POLICY=\"DROP\"
DEFAULT_APPLICATION_POLICY=\"SKIP\"
";

fn net(t: &str) -> Addr {
    Addr::Net(
        crate::spec::ufw::address(t)
            .expect("address")
            .expect("not any"),
    )
}

#[test]
fn rules_files_give_every_rule_in_status_numbered_order() {
    let rules = parse_rules_files(USER_RULES, USER6_RULES);
    assert_eq!(rules.len(), 23);
    // The numbers match `ufw status numbered`: v4 in file order, then v6.
    for line in NUMBERED_HEAD.lines() {
        let n: usize = line[1..3].trim().parse().expect("number");
        let r = &rules[n - 1];
        assert_eq!(r.number, n);
        assert_eq!(r.v6, line.contains("(v6)"), "{line}");
    }
    let web = &rules[0];
    assert_eq!(web.comment, "gitmoor: web");
    assert_eq!(
        web.tuple,
        Some(Tuple {
            action: Action::Allow,
            log: String::new(),
            route: false,
            proto: Some(Proto::Tcp),
            dport: Ports::One(80),
            dst: Addr::Any,
            sport: Ports::Any,
            src: Addr::Any,
            direction: Direction::In,
            iface: String::new(),
            app: String::new(),
        })
    );
    let t = |i: usize| rules[i].tuple.clone().expect("tuple");
    assert_eq!(rules[2].comment, "x");
    assert_eq!(t(2).src, net("192.0.2.3"));
    assert_eq!(t(3).dport, Ports::Range(8000, 8100));
    assert_eq!(t(3).proto, Some(Proto::Udp));
    assert_eq!(t(3).action, Action::Deny);
    assert_eq!(t(4).dport, Ports::Any);
    assert_eq!(t(4).proto, None);
    assert_eq!(t(5).app, "OpenSSH");
    assert!(!t(5).is_plain());
    assert_eq!(t(6).direction, Direction::Out);
    assert_eq!(t(6).dst, net("203.0.113.5"));
    assert_eq!(rules[6].comment, "gitmoor: no smtp");
    assert_eq!(t(7).sport, Ports::One(1234));
    assert!(t(8).route && !t(8).is_plain());
    assert_eq!(t(9).iface, "in_lo");
    assert!(!t(9).is_plain());
    assert!(t(10).is_plain());
    // IPv6.
    assert!(rules[13].v6);
    assert_eq!(rules[19].comment, "gitmoor: v6 admins");
    assert_eq!(t(19).action, Action::Limit);
    assert_eq!(t(19).src, net("2001:db8::/32"));
    assert_eq!(t(20).dst, net("2001:db8::1"));
    assert_eq!(rules[21].comment, "é ünï");
    // A protocol gitmoor does not make is kept, unrepresented.
    assert_eq!(rules[22].tuple, None);
    assert_eq!(
        rules[22].raw,
        "### tuple ### allow esp any ::/0 any ::/0 in"
    );
}

#[test]
fn odd_tuples_are_not_represented_rather_than_guessed() {
    for line in [
        "### tuple ### allow tcp 22",
        "### tuple ### permit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in",
        "### tuple ### allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 in",
        "### tuple ### allow tcp 22 0.0.0.0/0 any 192.0.2.3/24 in",
        "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 sideways",
    ] {
        let r = parse_user_rules(line);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, None, "{line}");
    }
    let r =
        parse_user_rules("### tuple ### allow_log tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=zz");
    let t = r[0].0.clone().expect("tuple");
    assert_eq!(t.log, "log");
    assert!(!t.is_plain());
    assert_eq!(r[0].1, "zz", "an undecodable comment is shown as it is");
}

#[test]
fn status_and_default_file() {
    assert_eq!(parse_status_enabled(STATUS_ACTIVE), Ok(true));
    assert_eq!(parse_status_enabled("Status: inactive\n"), Ok(false));
    assert!(parse_status_enabled("Statut : inactif\n")
        .unwrap_err()
        .contains("LC_ALL=C"));
    let (d, ipv6) = parse_default_file(DEFAULT_FILE);
    assert!(ipv6);
    assert_eq!(
        d,
        Defaults {
            incoming: Some(Policy::Reject),
            outgoing: Some(Policy::Allow),
            routed: Some(Policy::Deny),
        }
    );
    assert!(!parse_default_file("IPV6=no\n").1);
}

#[test]
fn established_ssh_peers_from_proc() {
    // /proc/net/tcp in the same namespace (x86-64, little-endian): a listener, two sessions
    // to :22 seen from both ends.
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 2509197 2 00000000cb3f9611 100 0 0 10 0
   1: 0100007F:0016 0500007F:B27B 01 00000000:00000000 00:00000000 00000000     0        0 0 1 00000000e328d9ac 20 0 0 10 -1
   2: 0500007F:B27B 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 2508320 2 000000004dac8595 20 0 0 10 -1
   3: 0100007F:881A 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 2508316 2 00000000c68ea968 20 0 0 10 -1
   4: 0100007F:0016 0100007F:881A 01 00000000:00000000 00:00000000 00000000     0        0 2509198 1 00000000e65f71dd 20 0 0 10 -1
";
    if cfg!(target_endian = "little") {
        let ips: Vec<String> = parse_proc_net_tcp_peers(tcp, &[22])
            .iter()
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(ips, vec!["127.0.0.5", "127.0.0.1"]);
        // /proc/net/tcp6: [2001:db8::1]:22 <- [2001:db8::9], and a v4-mapped peer.
        let tcp6 =
            "  sl  local_address                         remote_address                        st
   0: B80D0120000000000000000001000000:0016 B80D0120000000000000000009000000:C350 01 0
   1: 0000000000000000FFFF0000010200C0:0016 0000000000000000FFFF0000030200C0:9C40 01 0
   2: B80D0120000000000000000001000000:0016 B80D0120000000000000000007000000:C351 0A 0
";
        let ips: Vec<String> = parse_proc_net_tcp_peers(tcp6, &[22])
            .iter()
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(ips, vec!["2001:db8::9", "192.0.2.3"]);
    }
}

#[test]
fn the_jump_to_docker_user_must_be_the_first_rule_of_forward() {
    let lines = |v: &[&str]| v.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(forward_starts_with_docker_user(&lines(&[
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    ])));
    assert!(!forward_starts_with_docker_user(&lines(&[
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
        "-A FORWARD -j DOCKER-USER",
    ])));
    assert!(!forward_starts_with_docker_user(&lines(&[
        "-P FORWARD DROP"
    ])));
}

#[test]
fn a_rule_gitmoor_cannot_represent_is_read_loosely_on_the_closed_side() {
    let l = parse_loose(
        "### tuple ### deny tcp 22,80,8000:8100 0.0.0.0/0 any 192.0.2.0/24 in comment=6869",
    )
    .unwrap();
    assert_eq!(l.action, Some(Action::Deny));
    assert!(l.incoming && l.tcp && l.plain);
    assert_eq!(l.dports, Some(vec![(22, 22), (80, 80), (8000, 8100)]));
    assert!(l.may_have_port(22) && l.may_have_port(8050) && !l.may_have_port(443));
    assert_eq!(
        l.src,
        Some(Addr::Net(
            Net::new("192.0.2.0".parse().unwrap(), 24).unwrap()
        ))
    );
    // What does not read counts as every port, every source, maybe TCP.
    let l = parse_loose("### tuple ### deny tcp 22,x ::/0 any what in").unwrap();
    assert_eq!((l.dports.clone(), l.src, l.plain), (None, None, false));
    assert!(l.may_have_port(22));
    let l =
        parse_loose("### tuple ### route:allow udp 53 0.0.0.0/0 any 0.0.0.0/0 in_eth0").unwrap();
    assert!(!l.incoming && !l.tcp && !l.plain);
    assert_eq!(parse_loose("### something else"), None);
}
