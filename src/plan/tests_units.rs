//! Units of every kind in one plan: the firewall unit is planned from `ufw/rules.yaml` and what
//! UFW holds, refused whole when it would lock out SSH, and never planned from a firewall that
//! was not observed.

use super::tests::{ctx, images};
use crate::observe::ufw_parse::ObservedFirewall;
use crate::observe::{FirewallHost, Seen};
use crate::plan::{plan, UnitId, Work};
use crate::source::snapshot::Snapshot;
use crate::spec::model::HostSpec;
use crate::spec::ufw::load_firewall;

const RULES: &str = "rules:\n  - action: allow\n    port: 22\n    proto: tcp\n    from: 192.0.2.3\n    comment: admins\n";

fn with_firewall(rules: &str) -> HostSpec {
    let (fw, f) = load_firewall(&Snapshot::from_texts(&[("ufw/rules.yaml", rules)]));
    assert!(f.is_ok(), "{f:?}");
    HostSpec {
        firewall: fw,
        ..Default::default()
    }
}

fn ufw(peers: &[&str]) -> Seen<FirewallHost> {
    Seen::Observed(FirewallHost {
        state: ObservedFirewall {
            ipv6: true,
            ..Default::default()
        },
        ssh_ports: vec![22],
        ssh_peers: peers
            .iter()
            .map(|p| (p.parse().expect("an address"), 22))
            .collect(),
    })
}

#[test]
fn the_firewall_is_one_unit_first_in_the_order_with_its_ufw_calls() {
    let mut observed = images();
    observed.firewall = ufw(&["192.0.2.3"]);
    let p = plan(&with_firewall(RULES), &observed, &ctx()).expect("a plan");
    assert_eq!(p.units.len(), 1, "{p:?}");
    assert_eq!(p.units[0].id, UnitId::Firewall);
    let Work::Firewall(f) = &p.units[0].work else {
        panic!("{p:?}")
    };
    assert_eq!(f.refused, None);
    let text = p.render_text();
    assert!(
        text.contains("firewall-add ufw allow proto tcp from 192.0.2.3 to any port 22 comment gitmoor: admins"),
        "{text}"
    );
    assert!(!p.is_empty());
}

#[test]
fn a_change_that_would_lock_out_the_connected_admin_is_planned_refused() {
    let mut observed = images();
    // An SSH session is open from .9, which the file does not allow; incoming is denied.
    observed.firewall = ufw(&["192.0.2.9"]);
    let rules = format!("defaults:\n  incoming: deny\n{RULES}");
    let p = plan(&with_firewall(&rules), &observed, &ctx()).expect("a plan");
    let Work::Firewall(f) = &p.units[0].work else {
        panic!("{p:?}")
    };
    let why = f.refused.as_deref().expect("refused");
    assert!(
        why.contains("192.0.2.9 has an SSH session open now"),
        "{why}"
    );
    assert!(
        p.render_text().contains("firewall-refused ufw"),
        "{}",
        p.render_text()
    );
    // The deliberate override lets it through.
    let mut c = ctx();
    c.firewall.allow_ssh_lockout = true;
    let p = plan(&with_firewall(&rules), &observed, &c).expect("a plan");
    let Work::Firewall(f) = &p.units[0].work else {
        panic!("{p:?}")
    };
    assert_eq!(f.refused, None);
}

#[test]
fn a_firewall_not_observed_is_a_failed_unit_that_changes_nothing() {
    let mut observed = images();
    observed.firewall = Seen::NotObserved("ufw is not installed".into());
    let p = plan(&with_firewall(RULES), &observed, &ctx()).expect("a plan");
    let Work::Firewall(f) = &p.units[0].work else {
        panic!("{p:?}")
    };
    assert!(f.plan.steps.is_empty(), "no ufw call planned: {f:?}");
    assert_eq!(
        f.refused.as_deref(),
        Some("firewall not observed (ufw is not installed): ufw/rules.yaml is not applied, nothing of the firewall was changed")
    );
    // And no `ufw/` in the repo: the firewall is left alone, with nothing to say.
    let p = plan(&HostSpec::default(), &observed, &ctx()).expect("a plan");
    assert!(p.units.is_empty() && p.notes.is_empty(), "{p:?}");
}
