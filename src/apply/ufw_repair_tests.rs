//! The Docker guard's repair against stand-ins for `ufw`, `iptables` and `ip6tables` (a script
//! that records each call and answers from files): which calls it makes, and which it must
//! never make. The real tools, in a network namespace, are in tests/ufw_host.rs.

use super::*;
use crate::config::firewall::{DockerGuard, FirewallConfig};
use std::os::unix::fs::PermissionsExt;

const BLOCK: &str = "# BEGIN gitmoor docker guard (written by gitmoor; do not edit)\n*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m comment --comment gitmoor-guard-begin-abc\n-A DOCKER-USER -j DROP\n-A DOCKER-USER -m comment --comment gitmoor-guard-end-abc\nCOMMIT\n# END gitmoor docker guard\n";
const LOADED: &str = "-N DOCKER-USER\n-A DOCKER-USER -m comment --comment gitmoor-guard-begin-abc\n-A DOCKER-USER -j DROP\n-A DOCKER-USER -m comment --comment gitmoor-guard-end-abc\n-A DOCKER-USER -j RETURN\n";
const ADMIN: &str = "-A DOCKER-USER -s 198.51.100.7/32 -j DROP";
const JUMP_FIRST: &str =
    "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n";
const LOCKED: &str = "Another app is currently holding the xtables lock. Stopped waiting after 5s.";

/// A host of stand-ins in a temporary directory: `<tool>.<chain>` is what `-S <chain>` prints,
/// `<tool>.<chain>.rc` (and `.err`) makes it fail; `calls` lists every call.
struct Fake {
    dir: tempfile::TempDir,
    cfg: FirewallConfig,
}

impl Fake {
    fn new(ipv6: bool) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let script = format!(
            "#!/bin/sh\nd={}\nn=$(basename \"$0\")\necho \"$n $*\" >> $d/calls\ncase \"$*\" in\n  status) cat $d/ufw.status; exit 0;;\n  reload) exit $(cat $d/ufw.reload.rc 2>/dev/null || echo 0);;\n  *-S*) for c in \"$@\"; do :; done; f=$d/$n.$c; if [ -f $f.rc ]; then cat $f.err >&2; exit $(cat $f.rc); fi; cat $f 2>/dev/null; exit 0;;\nesac\nexit 0\n",
            d.display()
        );
        for n in ["ufw", "iptables", "ip6tables"] {
            let p = d.join(n);
            std::fs::write(&p, &script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let etc = d.join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("after.rules"), format!("*filter\nCOMMIT\n{BLOCK}")).unwrap();
        if ipv6 {
            std::fs::write(etc.join("after6.rules"), BLOCK).unwrap();
        }
        let default = d.join("default-ufw");
        std::fs::write(
            &default,
            format!("IPV6={}\n", if ipv6 { "yes" } else { "no" }),
        )
        .unwrap();
        let f = Fake {
            cfg: FirewallConfig {
                binary: Some(d.join("ufw")),
                iptables_binary: Some(d.join("iptables")),
                ip6tables_binary: Some(d.join("ip6tables")),
                etc_dir: etc,
                default_file: default,
                docker_guard: DockerGuard::Enforce,
                ..FirewallConfig::default()
            },
            dir,
        };
        f.set("ufw.status", "Status: active\n");
        for tool in ["iptables", "ip6tables"] {
            f.set(&format!("{tool}.DOCKER-USER"), LOADED);
            f.set(&format!("{tool}.FORWARD"), JUMP_FIRST);
        }
        f
    }

    fn set(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn fail(&self, name: &str, rc: i32, err: &str) {
        self.set(&format!("{name}.rc"), &rc.to_string());
        self.set(&format!("{name}.err"), err);
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }

    async fn repair(&self) -> Result<Repair, String> {
        UfwHost::new(&self.cfg, Redactor::default())
            .unwrap()
            .repair_docker_guard()
            .await
    }
}

#[tokio::test]
async fn the_daemons_repair_starts_no_process_unless_asked() {
    let f = Fake::new(true);
    let state_dir = f.dir.path().join("state");
    // A fresh host, or one whose last commit had no ufw/: nothing run.
    repair_tick(&f.cfg, &state_dir).await;
    State::default().save(&state_dir).unwrap();
    repair_tick(&f.cfg, &state_dir).await;
    assert_eq!(f.calls(), "");
    // ufw/ in the repo, but the guard not enforced: nothing run either.
    let mut st = State::default();
    st.firewall_in_repo = true;
    st.save(&state_dir).unwrap();
    let warn_only = FirewallConfig {
        docker_guard: DockerGuard::Warn,
        ..f.cfg.clone()
    };
    repair_tick(&warn_only, &state_dir).await;
    assert_eq!(f.calls(), "");
    // Asked: UFW is looked at.
    repair_tick(&f.cfg, &state_dir).await;
    assert!(f.calls().starts_with("ufw status\n"), "{}", f.calls());
}

#[tokio::test]
async fn a_block_behind_an_admins_rule_is_left_and_reported_never_reloaded() {
    let f = Fake::new(true);
    f.set(
        "iptables.DOCKER-USER",
        &LOADED.replacen("-A DOCKER-USER", &format!("{ADMIN}\n-A DOCKER-USER"), 1),
    );
    let r = f.repair().await.unwrap();
    assert_eq!(r.done, Vec::<String>::new());
    assert!(r.notes[0].contains("198.51.100.7/32"), "{:?}", r.notes);
    assert!(!f.calls().contains("reload"), "{}", f.calls());
    // An older block (another hash): reported, not reloaded either.
    f.set("ip6tables.DOCKER-USER", &LOADED.replace("-abc", "-old"));
    let r = f.repair().await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("older")), "{:?}", r.notes);
    assert!(!f.calls().contains("reload"), "{}", f.calls());
    // Flushed (Docker's RETURN alone): loaded again, and the other family's rules of others
    // the reload drops are named.
    f.set(
        "ip6tables.DOCKER-USER",
        "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n",
    );
    let r = f.repair().await.unwrap();
    assert!(f.calls().contains("ufw reload"), "{}", f.calls());
    assert!(
        r.notes.iter().any(|n| n.contains("dropped")),
        "{:?}",
        r.notes
    );
}

#[tokio::test]
async fn a_chain_that_cannot_be_read_changes_nothing() {
    let f = Fake::new(true);
    f.fail("iptables.DOCKER-USER", 4, LOCKED);
    let err = f.repair().await.unwrap_err();
    assert!(err.contains("xtables lock"), "{err}");
    assert!(!f.calls().contains("reload"), "{}", f.calls());
    // FORWARD unreadable: no jump added (read as empty, it would be a second one).
    let f = Fake::new(true);
    f.fail("ip6tables.FORWARD", 4, LOCKED);
    let err = f.repair().await.unwrap_err();
    assert!(err.contains("FORWARD (ip6tables)"), "{err}");
    assert!(!f.calls().contains("-I"), "{}", f.calls());
}

#[tokio::test]
async fn a_failed_reload_says_whether_ufw_is_still_active() {
    let f = Fake::new(true);
    f.set("iptables.DOCKER-USER", "");
    f.fail(
        "iptables.DOCKER-USER",
        1,
        "iptables: No chain/target/match by that name.",
    );
    f.set("ufw.reload.rc", "1");
    let err = f.repair().await.unwrap_err();
    assert!(err.contains("UFW is still active"), "{err}");
    f.set("ufw.status", "Status: inactive\n");
    // Inactive before the repair: nothing to do (enabling is the unit's decision).
    assert_eq!(f.repair().await, Ok(Repair::default()));
}

#[tokio::test]
async fn the_jump_is_put_first_only_in_a_family_with_a_block() {
    // IPV6=no: no IPv6 block, so no IPv6 jump, even with a chain dockerd made.
    let f = Fake::new(false);
    f.set(
        "ip6tables.FORWARD",
        "-P FORWARD DROP\n-A FORWARD -j DOCKER-FORWARD\n",
    );
    f.set(
        "iptables.FORWARD",
        "-P FORWARD DROP\n-A FORWARD -j DOCKER-FORWARD\n-A FORWARD -j DOCKER-USER\n",
    );
    let r = f.repair().await.unwrap();
    assert_eq!(
        r.done,
        vec!["iptables -I FORWARD 1 -j DOCKER-USER".to_string()]
    );
    assert!(!f.calls().contains("ip6tables"), "{}", f.calls());
    assert!(
        f.calls()
            .contains("iptables -w 5 -D FORWARD -j DOCKER-USER"),
        "{}",
        f.calls()
    );
}
