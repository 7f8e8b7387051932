//! Units: what one reconcile changes, cut into the parts that succeed or fail on their own.
//!
//! A unit is one thing of one kind — today each compose stack; the Nginx sites and the firewall
//! come next — with its typed actions and the units it must follow. The executor applies units in
//! the order their `after` edges give, and a unit whose predecessor failed is held back with that
//! reason instead of being applied against a host that is not what it expects (a site must not go
//! live in front of a stack that did not come up). Everything downstream (the apply report,
//! `state.json`, `/status`, the page, `/metrics`) is per unit, with its kind shown.
//!
//! Adding a kind adds a `UnitId` and a `Work` variant; the compiler then points at the one
//! `match` per layer that must learn it (`Work::is_empty`, the executor's dispatch, the views).

use super::firewall::FirewallPlan;
use super::site::SiteAction;
use super::Action;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a unit is: its kind and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum UnitId {
    /// The host's firewall (`ufw/rules.yaml`): one unit, first in the order.
    Firewall,
    /// A compose stack (`compose/<name>/`).
    Stack(String),
    /// An Nginx site (`nginx/<name>.yaml` or `.conf`): after the stacks it proxies to.
    Site(String),
}

/// The kinds of unit, as `/status`, the page and `/metrics` spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Firewall,
    Stack,
    Site,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firewall => "firewall",
            Kind::Stack => "stack",
            Kind::Site => "site",
        }
    }
}

impl UnitId {
    pub fn kind(&self) -> Kind {
        match self {
            UnitId::Firewall => Kind::Firewall,
            UnitId::Stack(_) => Kind::Stack,
            UnitId::Site(_) => Kind::Site,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            UnitId::Firewall => "ufw",
            UnitId::Stack(n) | UnitId::Site(n) => n,
        }
    }

    /// The stack's name, for the code that only knows containers.
    pub fn stack(&self) -> Option<&str> {
        match self {
            UnitId::Stack(n) => Some(n),
            UnitId::Site(_) | UnitId::Firewall => None,
        }
    }

    /// `stack/app`: one string per unit, unique across kinds (the key in `state.json`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind().as_str(), self.name())
    }

    /// The inverse of `key`; None for a kind this version does not know.
    pub fn from_key(key: &str) -> Option<UnitId> {
        match key.split_once('/')? {
            ("stack", name) if !name.is_empty() => Some(UnitId::Stack(name.to_string())),
            ("site", name) if !name.is_empty() => Some(UnitId::Site(name.to_string())),
            ("firewall", "ufw") => Some(UnitId::Firewall),
            _ => None,
        }
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind().as_str(), self.name())
    }
}

/// A unit's typed actions: one variant per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Networks and volumes, then containers in `depends_on` order, then removals.
    Stack(Vec<Action>),
    /// Install or remove one Nginx vhost.
    Site(SiteAction),
    /// Bring UFW to `ufw/rules.yaml`.
    Firewall(FirewallWork),
}

/// The firewall unit's work: the `ufw` calls, or why the change is refused as a whole (the SSH
/// lockout guard): then nothing of the firewall is changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallWork {
    /// The file: the executor plans again on a fresh look at UFW and stops if it differs.
    pub spec: crate::spec::ufw::FirewallSpec,
    pub plan: FirewallPlan,
    pub refused: Option<String>,
}

/// One unit of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub id: UnitId,
    /// Units that must be applied, successfully, before this one.
    pub after: Vec<UnitId>,
    pub work: Work,
}

impl Unit {
    /// A stack's unit (stacks follow nothing: each is whole in its own compose files).
    pub fn stack(name: &str, actions: Vec<Action>) -> Unit {
        Unit {
            id: UnitId::Stack(name.to_string()),
            after: Vec::new(),
            work: Work::Stack(actions),
        }
    }

    pub fn is_empty(&self) -> bool {
        match &self.work {
            Work::Stack(actions) => actions.is_empty(),
            Work::Site(_) => false,
            Work::Firewall(f) => f.plan.is_empty() && f.refused.is_none(),
        }
    }

    /// The container actions, when this is a stack.
    pub fn actions(&self) -> Option<&[Action]> {
        match &self.work {
            Work::Stack(actions) => Some(actions),
            Work::Site(_) | Work::Firewall(_) => None,
        }
    }

    pub fn actions_mut(&mut self) -> Option<&mut Vec<Action>> {
        match &mut self.work {
            Work::Stack(actions) => Some(actions),
            Work::Site(_) | Work::Firewall(_) => None,
        }
    }
}

/// How one unit of an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitOutcome {
    /// Every action of the unit succeeded.
    Applied,
    /// An action failed (the error names it); the unit's remaining actions were skipped.
    Failed(String),
    /// Not tried: a unit it follows did not succeed (the reason names it).
    Held(String),
}

impl UnitOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, UnitOutcome::Applied)
    }

    /// The error for the state file and the summary; None when applied.
    pub fn error(&self) -> Option<&str> {
        match self {
            UnitOutcome::Applied => None,
            UnitOutcome::Failed(e) | UnitOutcome::Held(e) => Some(e),
        }
    }
}

/// The one place that decides what runs: units in `apply_order`, each unit that follows one that
/// did not succeed held back with the reason. The executor asks `next`, runs the unit, `record`s
/// its outcome; tested without a host.
pub struct Schedule<'a> {
    units: &'a [Unit],
    order: std::vec::IntoIter<&'a Unit>,
    done: BTreeMap<UnitId, UnitOutcome>,
}

impl<'a> Schedule<'a> {
    pub fn new(units: &'a [Unit]) -> Schedule<'a> {
        Schedule {
            units,
            order: apply_order(units).into_iter(),
            done: BTreeMap::new(),
        }
    }

    /// The next unit to run; the held ones on the way are recorded as held.
    pub fn next_unit(&mut self) -> Option<&'a Unit> {
        loop {
            let unit = self.order.next()?;
            match held_by(unit, &self.done, self.units) {
                Some(why) => {
                    self.done.insert(unit.id.clone(), UnitOutcome::Held(why));
                }
                None => return Some(unit),
            }
        }
    }

    pub fn record(&mut self, unit: &Unit, outcome: UnitOutcome) {
        self.done.insert(unit.id.clone(), outcome);
    }

    /// Every unit's outcome (call once `next_unit` returned None).
    pub fn finish(self) -> BTreeMap<UnitId, UnitOutcome> {
        self.done
    }
}

/// The units in the order they are applied: each after every unit it follows (edges to units not
/// in the plan have nothing to wait for), otherwise in the planner's order (the firewall, the
/// stacks of the commit, the stacks that left it, the sites), so that what the plan shows is what
/// runs. A cycle cannot be ordered: its units come last, and `held_by` holds them back (none of
/// their predecessors succeeds first).
pub fn apply_order(units: &[Unit]) -> Vec<&Unit> {
    let present: BTreeSet<&UnitId> = units.iter().map(|u| &u.id).collect();
    let mut placed: BTreeSet<&UnitId> = BTreeSet::new();
    let mut order: Vec<&Unit> = Vec::with_capacity(units.len());
    // Units are few (one per stack, site, firewall): a pass per placed unit is plenty.
    loop {
        let next = units.iter().find(|u| {
            !placed.contains(&u.id)
                && u.after
                    .iter()
                    .all(|p| placed.contains(p) || !present.contains(p))
        });
        match next {
            Some(u) => {
                placed.insert(&u.id);
                order.push(u);
            }
            None => break,
        }
    }
    order.extend(units.iter().filter(|u| !placed.contains(&u.id)));
    order
}

/// Why `unit` must not be applied given the outcomes so far: a unit it follows that failed or
/// was held, or (in a cycle) has not been applied yet. None when it may go on.
pub fn held_by(
    unit: &Unit,
    done: &BTreeMap<UnitId, UnitOutcome>,
    units: &[Unit],
) -> Option<String> {
    let present = |id: &UnitId| units.iter().any(|u| &u.id == id);
    unit.after.iter().find_map(|p| match done.get(p) {
        Some(UnitOutcome::Applied) => None,
        Some(UnitOutcome::Failed(_)) => Some(format!("held back: {p} failed")),
        Some(UnitOutcome::Held(_)) => Some(format!("held back: {p} was held back")),
        None if present(p) => Some(format!(
            "held back: it follows {p}, and the units' order is a cycle"
        )),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, after: &[&str]) -> Unit {
        Unit {
            after: after.iter().map(|a| UnitId::Stack(a.to_string())).collect(),
            ..Unit::stack(name, Vec::new())
        }
    }

    /// Runs `units` with an executor that fails the ones named in `failing`, recording the
    /// order it was called in.
    fn run(units: &[Unit], failing: &[&str]) -> (BTreeMap<UnitId, UnitOutcome>, Vec<String>) {
        let mut called = Vec::new();
        let mut schedule = Schedule::new(units);
        while let Some(u) = schedule.next_unit() {
            called.push(u.id.name().to_string());
            let outcome = if failing.contains(&u.id.name()) {
                UnitOutcome::Failed(format!("{} broke", u.id.name()))
            } else {
                UnitOutcome::Applied
            };
            schedule.record(u, outcome);
        }
        (schedule.finish(), called)
    }

    fn outcome<'a>(done: &'a BTreeMap<UnitId, UnitOutcome>, name: &str) -> &'a UnitOutcome {
        &done[&UnitId::Stack(name.to_string())]
    }

    #[test]
    fn a_unit_that_follows_a_failing_unit_is_held_back_with_the_reason() {
        // `site` follows `db`, which fails; `web` follows `cache`, which succeeds.
        let units = [
            unit("site", &["db"]),
            unit("db", &[]),
            unit("web", &["cache"]),
            unit("cache", &[]),
        ];
        let (done, called) = run(&units, &["db"]);
        assert_eq!(
            outcome(&done, "site"),
            &UnitOutcome::Held("held back: stack db failed".into())
        );
        assert_eq!(
            outcome(&done, "db"),
            &UnitOutcome::Failed("db broke".into())
        );
        assert_eq!(outcome(&done, "web"), &UnitOutcome::Applied);
        assert_eq!(outcome(&done, "cache"), &UnitOutcome::Applied);
        // The held unit was never handed to the executor; the others ran after what they follow.
        assert_eq!(called, vec!["db", "cache", "web"]);
    }

    #[test]
    fn a_hold_passes_down_a_chain_and_names_the_unit_it_waits_for() {
        let units = [unit("a", &[]), unit("b", &["a"]), unit("c", &["b"])];
        let (done, called) = run(&units, &["a"]);
        assert_eq!(called, vec!["a"]);
        assert_eq!(
            outcome(&done, "c"),
            &UnitOutcome::Held("held back: stack b was held back".into())
        );
    }

    #[test]
    fn units_without_edges_run_in_plan_order_and_absent_predecessors_do_not_wait() {
        // `z` follows a unit with nothing to do (not in the plan): nothing to wait for.
        let units = [unit("z", &["gone"]), unit("b", &[]), unit("a", &["b"])];
        let (done, called) = run(&units, &[]);
        assert_eq!(called, vec!["z", "b", "a"]);
        assert!(done.values().all(UnitOutcome::is_ok));
    }

    #[test]
    fn a_cycle_of_units_is_held_back_not_run() {
        let units = [unit("x", &["y"]), unit("y", &["x"]), unit("free", &[])];
        let (done, called) = run(&units, &[]);
        assert_eq!(called, vec!["free"]);
        assert!(
            matches!(outcome(&done, "x"), UnitOutcome::Held(w) if w.contains("cycle")),
            "{done:?}"
        );
        assert!(matches!(outcome(&done, "y"), UnitOutcome::Held(_)));
    }

    #[test]
    fn keys_round_trip_and_name_the_kind() {
        let id = UnitId::Stack("app".into());
        assert_eq!(id.key(), "stack/app");
        assert_eq!(id.to_string(), "stack app");
        assert_eq!(UnitId::from_key("stack/app"), Some(id));
        assert_eq!(
            UnitId::from_key("site/api"),
            Some(UnitId::Site("api".into()))
        );
        assert_eq!(UnitId::from_key("nginx/api"), None);
        assert_eq!(UnitId::from_key("firewall/ufw"), Some(UnitId::Firewall));
        assert_eq!(UnitId::Firewall.key(), "firewall/ufw");
        assert_eq!(UnitId::from_key("stack/"), None);
    }

    #[test]
    fn a_plan_is_empty_only_when_every_unit_is() {
        let mut plan = super::super::Plan {
            units: vec![Unit::stack("app", Vec::new())],
            ..Default::default()
        };
        assert!(plan.is_empty());
        plan.units[0]
            .actions_mut()
            .expect("a stack")
            .push(Action::RemoveNetwork {
                id: "n".into(),
                name: "app_default".into(),
                reason: "test".into(),
            });
        assert!(!plan.is_empty());
    }
}
