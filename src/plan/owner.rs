//! Whose objects these are. Several configs may share one engine and one `instance` (a test
//! config next to the demo, two repos on one host): each sees the other's objects in its
//! listing, and without this each would prune the other's stacks as "left the repo" on every
//! apply. So every object carries the repo it came from (`io.gitmoor.repo`), and the planner only
//! changes its own: another repo's objects are listed as foreign and left alone, unless the
//! config takes their stack over (`adopt`).
//!
//! Objects made before the label existed carry none. They are this config's only when its own
//! state file records their stack (what this state_dir applied): safe, as a stack another config
//! applied is not in this one's records, and backward compatible, as an upgraded gitmoor goes on
//! managing what it made without recreating anything. A recreate adds the label.

use super::host::PlanContext;
use crate::labels;
use crate::observe::Observed;
use crate::spec::model::HostSpec;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Which stacks this config takes over from another repo (config key `adopt`): `false` (the
/// default, none), `true` (every stack the commit declares), or a list of stack names. Only
/// stacks of the commit are ever taken over: another repo's stacks that this commit does not
/// declare are left alone even with `adopt: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Adopt {
    #[default]
    None,
    All,
    Stacks(BTreeSet<String>),
}

impl Adopt {
    /// Whether the config takes over stack `stack` (when the commit declares it).
    pub fn covers(&self, stack: &str) -> bool {
        match self {
            Adopt::None => false,
            Adopt::All => true,
            Adopt::Stacks(s) => s.contains(stack),
        }
    }
}

impl<'de> Deserialize<'de> for Adopt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Adopt, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Adopt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or a list of stack names (adopt: [app, db])")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Adopt, E> {
                Ok(if v { Adopt::All } else { Adopt::None })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Adopt, A::Error> {
                let mut out = BTreeSet::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if name.trim().is_empty() {
                        return Err(de::Error::custom(
                            "adopt: an empty stack name; list the stacks by their folder name under compose/",
                        ));
                    }
                    out.insert(name);
                }
                Ok(Adopt::Stacks(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Another repo's stack (or a part of it) on this instance, left alone by this plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignStack {
    pub stack: String,
    /// The repo it came from (its `io.gitmoor.repo` label); None for objects made before gitmoor
    /// labelled repos, of a stack this state_dir has no record of.
    pub repo: Option<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl ForeignStack {
    /// `from repo file:///x`, or what is known of an unlabelled object's maker.
    pub fn from(&self) -> String {
        from_repo(self.repo.as_deref())
    }
}

/// How an object's maker is named in plans and errors.
pub(super) fn from_repo(repo: Option<&str>) -> String {
    match repo {
        Some(r) => format!("from repo {r}"),
        None => "made by an older gitmoor that did not label repos, for a stack this \
                 state_dir has no record of"
            .into(),
    }
}

/// The observed host cut along ownership.
#[derive(Debug, Clone, Default)]
pub(super) struct Split {
    /// What this plan may change: this repo's objects, unlabelled ones of recorded stacks, and
    /// those of the stacks it adopts.
    pub ours: Observed,
    /// Object id (container or network) -> why it is taken over; such objects are made anew,
    /// so that they carry this repo's label.
    pub adopted: BTreeMap<String, String>,
    /// The rest: another repo's, listed only.
    pub foreign: Observed,
}

/// Whether an object of `stack` with repo label `repo` is this config's to change, and if it
/// is only by adoption, why.
enum Owner {
    Ours,
    Adopted(String),
    Foreign,
}

fn owner(repo: Option<&str>, stack: &str, desired: &HostSpec, ctx: &PlanContext) -> Owner {
    let ours = match repo {
        Some(r) => r == ctx.repo,
        None => ctx.recorded_stacks.contains(stack),
    };
    if ours {
        Owner::Ours
    } else if desired.stacks.contains_key(stack) && ctx.adopt.covers(stack) {
        Owner::Adopted(format!("taken over {} (config: adopt)", from_repo(repo)))
    } else {
        Owner::Foreign
    }
}

/// Cuts `observed` into this config's objects and another repo's. Images are shared by tag and
/// stay in `ours` (they are never removed by a plan).
pub(super) fn split(observed: &Observed, desired: &HostSpec, ctx: &PlanContext) -> Split {
    let mut out = Split {
        ours: Observed {
            containers: Vec::new(),
            networks: Vec::new(),
            volumes: Vec::new(),
            ..observed.clone()
        },
        ..Default::default()
    };
    for c in &observed.containers {
        match owner(c.repo(), &c.stack, desired, ctx) {
            Owner::Ours => out.ours.containers.push(c.clone()),
            Owner::Adopted(why) => {
                out.adopted.insert(c.id.clone(), why);
                out.ours.containers.push(c.clone());
            }
            Owner::Foreign => out.foreign.containers.push(c.clone()),
        }
    }
    for n in &observed.networks {
        match owner(n.repo(), &n.stack, desired, ctx) {
            Owner::Ours => out.ours.networks.push(n.clone()),
            Owner::Adopted(why) => {
                out.adopted.insert(n.id.clone(), why);
                out.ours.networks.push(n.clone());
            }
            Owner::Foreign => out.foreign.networks.push(n.clone()),
        }
    }
    // A volume is never removed nor made anew (its data is the point): an adopted one is used
    // as it is, keeping its old label.
    for v in &observed.volumes {
        match owner(v.repo(), &v.stack, desired, ctx) {
            Owner::Ours | Owner::Adopted(_) => out.ours.volumes.push(v.clone()),
            Owner::Foreign => out.foreign.volumes.push(v.clone()),
        }
    }
    out
}

impl Split {
    /// The foreign objects by stack and repo, for the plan's listing.
    pub fn foreign_stacks(&self) -> Vec<ForeignStack> {
        type Key = (String, Option<String>);
        fn get<'a>(
            out: &'a mut BTreeMap<Key, ForeignStack>,
            stack: &str,
            repo: Option<&str>,
        ) -> &'a mut ForeignStack {
            out.entry((stack.to_string(), repo.map(str::to_string)))
                .or_insert_with(|| ForeignStack {
                    stack: stack.to_string(),
                    repo: repo.map(str::to_string),
                    containers: Vec::new(),
                    networks: Vec::new(),
                    volumes: Vec::new(),
                })
        }
        let mut out = BTreeMap::new();
        for c in &self.foreign.containers {
            get(&mut out, &c.stack, c.repo())
                .containers
                .push(c.name.clone());
        }
        for n in &self.foreign.networks {
            get(&mut out, &n.stack, n.repo())
                .networks
                .push(n.name.clone());
        }
        for v in &self.foreign.volumes {
            get(&mut out, &v.stack, v.repo())
                .volumes
                .push(v.name.clone());
        }
        let mut out: Vec<ForeignStack> = out.into_values().collect();
        for f in &mut out {
            f.containers.sort();
            f.networks.sort();
            f.volumes.sort();
        }
        out
    }
}

/// The `io.gitmoor.repo` and `io.gitmoor.instance` labels of what this plan makes.
pub(super) fn owner_labels(ctx: &PlanContext) -> [(&'static str, String); 2] {
    [
        (labels::INSTANCE, ctx.instance.clone()),
        (labels::REPO, ctx.repo.clone()),
    ]
}

/// Drops another repo's objects from `observed`, by the planner's rule: what `/status` shows of
/// the host is this config's (another repo's stack is not "a stack that left the repo").
/// `desired` are the commit's stacks (None when unknown): adopted ones count as this config's.
pub fn retain_own(
    observed: &mut Observed,
    repo: &str,
    recorded_stacks: &BTreeSet<String>,
    adopt: &Adopt,
    desired: Option<&BTreeSet<String>>,
) {
    let own = |r: Option<&str>, stack: &str| match r {
        Some(r) if r == repo => true,
        None if recorded_stacks.contains(stack) => true,
        _ => desired.is_some_and(|d| d.contains(stack)) && adopt.covers(stack),
    };
    observed.containers.retain(|c| own(c.repo(), &c.stack));
    observed.networks.retain(|n| own(n.repo(), &n.stack));
    observed.volumes.retain(|v| own(v.repo(), &v.stack));
}
