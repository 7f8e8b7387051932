//! The stack differ: pair a stack's desired and observed objects by name, decide create /
//! recreate / start / remove, and order the actions so that dependencies come first and removals
//! last.

use super::fingerprint::{config_hash, diff_reasons, fingerprint, Fingerprint, HashScope};
use super::host::{PlanContext, PlanError};
use super::images::hash_scheme_changed;
use super::images::normalize_image;
use super::owner::{from_repo, Split};
use super::{Action, ContainerToCreate};
use crate::labels;
use crate::observe::{Observed, ObservedContainer};
use crate::spec::model::{DependsCondition, ServiceSpec, StackSpec};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn plan_stack(
    stack: &StackSpec,
    split: &Split,
    ctx: &PlanContext,
    image_changes: &BTreeMap<(String, String), String>,
) -> Result<Vec<Action>, PlanError> {
    let observed = &split.ours;
    // Networks and volumes carry the owning instance, like containers. (And the repo, added
    // only to what is created: the network specs take part in the config hashes, which must not
    // move for objects made before the repo label existed.)
    let owned = |l: &BTreeMap<String, String>| {
        let mut l = l.clone();
        l.insert(labels::INSTANCE.to_string(), ctx.instance.clone());
        l
    };
    let mut stack_owned = stack.clone();
    for n in stack_owned.networks.values_mut() {
        n.labels = owned(&n.labels);
    }
    for v in stack_owned.volumes.values_mut() {
        v.labels = owned(&v.labels);
    }
    let stack = &stack_owned;
    let name = &stack.name;
    let mut actions = Vec::new();
    let live: Vec<&ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| &c.stack == name)
        .collect();

    // Networks whose spec changed must be recreated, and every container on them with them.
    let mut changed_nets = Vec::new();
    // External networks and volumes are made outside gitmoor: never created, changed or removed.
    for (key, net) in stack.networks.iter().filter(|(_, n)| !n.external) {
        match observed.networks.iter().find(|n| n.name == net.name) {
            None => {
                if let Some(other) = split.foreign.networks.iter().find(|n| n.name == net.name) {
                    return Err(held_by_another_repo(
                        "network",
                        &net.name,
                        &other.stack,
                        other.repo(),
                        stack,
                    ));
                }
                actions.push(Action::CreateNetwork {
                    network: made(with_hash(net), ctx),
                })
            }
            // Taken over from another repo: made anew with this repo's label (its containers,
            // all taken over too, go with it).
            Some(obs) if split.adopted.contains_key(&obs.id) => changed_nets.push((
                key.clone(),
                obs.id.clone(),
                made(with_hash(net), ctx),
                format!("network {key} {}", split.adopted[&obs.id]),
            )),
            Some(obs) if network_hash_label(obs) != Some(network_hash(net)) => changed_nets.push((
                key.clone(),
                obs.id.clone(),
                made(with_hash(net), ctx),
                format!("network {key} changed"),
            )),
            Some(_) => {}
        }
    }
    for vol in stack.volumes.values().filter(|v| !v.external) {
        if !observed.volumes.iter().any(|v| v.name == vol.name) {
            let mut volume = vol.clone();
            volume
                .labels
                .insert(labels::REPO.to_string(), ctx.repo.clone());
            actions.push(Action::CreateVolume { volume });
        }
    }

    let order = topo_order(stack);
    let waited = waited_on(stack);
    // Container name -> service, to find which service a `container:<name>` mode joins.
    let by_container: BTreeMap<String, &String> = stack
        .services
        .iter()
        .map(|(s, spec)| (container_name(name, s, spec), s))
        .collect();
    // Services whose container this plan replaces or starts anew, by what happens to it. Filled
    // in topo order, so a service is decided before the services that join its namespaces.
    let mut fresh: BTreeMap<String, Fresh> = BTreeMap::new();
    // Services recreated only because a dependency with `restart: true` is: compose restarts
    // just the direct dependents of a recreated service, so these take no one along.
    let mut restarted_only: BTreeSet<String> = BTreeSet::new();
    // Service -> the container the plan keeps for it (id, name), to check what a joiner is bound to.
    let mut current: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut creates = Vec::new();
    let mut early_removals = Vec::new();
    for svc_name in &order {
        let svc = &stack.services[svc_name];
        let cname = container_name(name, svc_name, svc);
        let mine: Vec<&&ObservedContainer> =
            live.iter().filter(|c| &c.service == svc_name).collect();
        // Another repo's container under the name this service needs: never replaced.
        if !mine.iter().any(|c| c.name == cname) {
            if let Some(other) = split.foreign.containers.iter().find(|c| c.name == cname) {
                return Err(held_by_another_repo(
                    "container",
                    &cname,
                    &other.stack,
                    other.repo(),
                    stack,
                ));
            }
        }
        if mine.is_empty() && observed.all_container_names.iter().any(|n| n == &cname) {
            return Err(PlanError(format!(
                "container name {cname} is taken by a container gitmoor does not manage; remove or rename it (docker rename {cname} {cname}-old)"
            )));
        }
        let scope = HashScope {
            key: &ctx.hash_key,
            stack: name,
            service: svc_name,
        };
        let hash = config_hash(svc, &stack.networks, scope);
        let wait_healthy = waited.get(svc_name) == Some(&DependsCondition::Healthy);
        let wait_completed = waited.get(svc_name) == Some(&DependsCondition::CompletedSuccessfully);
        // The per-field fingerprint and the container's description are made only for a
        // container the plan creates or a reason to give: a no-op hashes each service once
        // (the config hash), a recreate makes the fingerprint once for both.
        let fp_once = std::cell::OnceCell::new();
        let fp = || fp_once.get_or_init(|| fingerprint(svc, &stack.networks, scope));
        let container = || ContainerToCreate {
            name: cname.clone(),
            stack: name.clone(),
            service: svc_name.clone(),
            spec: svc.clone(),
            labels: container_labels(stack, svc_name, &svc.labels, &hash, fp(), ctx),
            networks: svc
                .networks
                .iter()
                .filter_map(|(k, a)| {
                    stack
                        .networks
                        .get(k)
                        .map(|n| (n.name.clone(), a.aliases.clone()))
                })
                .collect(),
            wait_healthy,
            wait_completed,
        };
        // Extra containers of the same service (a leftover of an interrupted run) are removed.
        let (keep, extra) = match kept_container(&mine, &cname) {
            Some(i) => (
                Some(mine[i]),
                mine.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| *c)
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        for c in extra {
            early_removals.push(Action::Remove {
                service: svc_name.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
                reason: "extra container of the service".into(),
            });
        }
        let Some(cur) = keep else {
            fresh.insert(svc_name.clone(), Fresh::Created);
            creates.push(Action::Create {
                container: container(),
            });
            continue;
        };
        current.insert(svc_name.clone(), (cur.id.as_str(), cur.name.as_str()));
        let mut reasons = Vec::new();
        if let Some(why) = split.adopted.get(&cur.id) {
            reasons.push(why.clone());
        }
        if cur.labels.get(labels::CONFIG_HASH) != Some(&hash) {
            let old_fp = cur
                .labels
                .get(labels::FINGERPRINT)
                .and_then(|s| serde_json::from_str::<Fingerprint>(s).ok());
            let scheme = cur.labels.get(labels::HASH);
            match old_fp {
                None => reasons.push("config changed (made without a gitmoor fingerprint)".into()),
                // Hashed under another scheme or key: every field would differ; say why once.
                Some(_) if scheme != Some(&ctx.hash_key.scheme_label()) => {
                    reasons.push(hash_scheme_changed(scheme.map(String::as_str)))
                }
                Some(old) => reasons.extend(diff_reasons(&old, fp())),
            }
            if reasons.is_empty() {
                reasons.push("config changed".into());
            }
        }
        if cur.name != cname {
            reasons.push(format!("renamed from {}", cur.name));
        }
        if let Some(why) = image_changes.get(&(name.clone(), svc_name.clone())) {
            reasons.push(why.clone());
        } else {
            match observed.images.get(&normalize_image(&svc.image)) {
                Some(id) if id != &cur.image_id => reasons.push(format!(
                    "image {} changed ({} → {})",
                    svc.image,
                    short_id(&cur.image_id),
                    short_id(id)
                )),
                None => reasons.push(format!("image {} is pulled anew", svc.image)),
                _ => {}
            }
        }
        if reasons.is_empty()
            && changed_nets
                .iter()
                .any(|(k, _, _, _)| svc.networks.contains_key(k))
        {
            reasons.push("its network changed".into());
        }
        // Docker binds a joiner to the joined container's id, not its name: once that container
        // is replaced, the joiner sits in a dead namespace (and cannot even be started again),
        // so it is replaced too. A joined container that is only started again gets a new
        // namespace as well, which strands a joiner that kept running. And, level-triggered: a
        // joiner bound to another id than the joined service's container now (left behind by an
        // interrupted apply, or by its own failed recreate) is replaced, whatever else happens.
        for (ns, joined) in joined_namespaces(svc) {
            let Some(of) = by_container.get(joined) else {
                continue;
            };
            let why = match fresh.get(*of) {
                Some(Fresh::Recreated) => "recreated",
                Some(Fresh::Created) => "created",
                Some(Fresh::Started) if cur.state == "running" => "started anew",
                _ => match (ns.bound(cur), current.get(*of)) {
                    // Docker keeps the id; a name is accepted too, so an engine that kept the
                    // name can never cause a recreate on every reconcile.
                    (Some(bound), Some((id, name))) if bound != *id && bound != *name => {
                        "a different container now"
                    }
                    _ => continue,
                },
            };
            reasons.push(format!("joins {} of {joined}, which is {why}", ns.what()));
        }
        // `depends_on.<x>.restart: true` (and a link to x): compose restarts this service when
        // x is recreated; gitmoor recreates it, after x (topo order), for the same fresh start.
        let restart_reasons: Vec<String> = svc
            .depends_on_restart
            .iter()
            .filter(|dep| {
                fresh.get(*dep) == Some(&Fresh::Recreated) && !restarted_only.contains(*dep)
            })
            .map(|dep| format!("depends on {dep} with restart: true, and {dep} is recreated"))
            .collect();
        if reasons.is_empty() && !restart_reasons.is_empty() {
            restarted_only.insert(svc_name.clone());
        }
        reasons.extend(restart_reasons);
        if !reasons.is_empty() {
            fresh.insert(svc_name.clone(), Fresh::Recreated);
            creates.push(Action::Recreate {
                old_id: cur.id.clone(),
                container: container(),
                reasons,
            });
        } else if cur.state != "running" && !(wait_completed && cur.state == "exited") {
            fresh.insert(svc_name.clone(), Fresh::Started);
            creates.push(Action::Start {
                service: svc_name.clone(),
                id: cur.id.clone(),
                name: cur.name.clone(),
                wait_healthy,
            });
        }
    }

    // A changed network: remove its containers (they are all being recreated), then the network.
    if !changed_nets.is_empty() {
        let mut rewritten = Vec::new();
        let mut removals = Vec::new();
        for a in creates {
            match a {
                Action::Recreate {
                    old_id,
                    container,
                    reasons,
                } => {
                    removals.push(Action::Remove {
                        service: container.service.clone(),
                        id: old_id,
                        name: container.name.clone(),
                        reason: reasons.join(", "),
                    });
                    rewritten.push(Action::Create { container });
                }
                other => rewritten.push(other),
            }
        }
        removals.reverse();
        actions.splice(0..0, removals);
        let mut idx = actions
            .iter()
            .position(|a| !matches!(a, Action::Remove { .. }))
            .unwrap_or(actions.len());
        for (_, id, net, reason) in changed_nets {
            actions.insert(
                idx,
                Action::RemoveNetwork {
                    id,
                    name: net.name.clone(),
                    reason,
                },
            );
            actions.insert(idx + 1, Action::CreateNetwork { network: net });
            idx += 2;
        }
        creates = rewritten;
    }
    actions.extend(early_removals);
    actions.extend(creates);

    // Services that left the file, then networks nobody declares any more.
    for c in &live {
        if !stack.services.contains_key(&c.service) {
            actions.push(Action::Remove {
                service: c.service.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
                reason: removed_service_reason(stack, &c.service),
            });
        }
    }
    for n in observed.networks.iter().filter(|n| &n.stack == name) {
        if !stack.networks.values().any(|d| d.name == n.name) {
            actions.push(Action::RemoveNetwork {
                id: n.id.clone(),
                name: n.name.clone(),
                reason: removed_network_reason(stack, &n.name),
            });
        }
    }
    Ok(actions)
}

/// A stack that left the repo: its containers and networks go (its volumes and data folders stay,
/// listed by the plan).
pub(super) fn plan_gone_stack(stack: &str, observed: &Observed) -> Vec<Action> {
    let reason = format!("stack {stack} left the repo");
    let mut actions: Vec<Action> = observed
        .containers
        .iter()
        .filter(|c| c.stack == stack)
        .map(|c| Action::Remove {
            service: c.service.clone(),
            id: c.id.clone(),
            name: c.name.clone(),
            reason: reason.clone(),
        })
        .collect();
    actions.extend(
        observed
            .networks
            .iter()
            .filter(|n| n.stack == stack)
            .map(|n| Action::RemoveNetwork {
                id: n.id.clone(),
                name: n.name.clone(),
                reason: reason.clone(),
            }),
    );
    actions
}

/// Why a container of a service the stack no longer runs is removed. A service left out by its
/// `profiles:` is still in the file, so "left the file" would send the user looking for an edit
/// that never happened; the fix is in gitmoor's config (`profiles`), and the reason says so.
fn removed_service_reason(stack: &StackSpec, service: &str) -> String {
    match stack.inactive_services.get(service).map(Vec::as_slice) {
        Some([one]) => format!(
            "service {service} is in profile {one}, which is not enabled (config: profiles)"
        ),
        Some(many) if !many.is_empty() => format!(
            "service {service} is in profiles {}, none of which is enabled (config: profiles)",
            many.join(", ")
        ),
        _ => format!("service {service} left {}", stack.compose_file),
    }
}

/// Why a network of the stack is removed. The implicit `default` network is in the spec only
/// while a running service uses it, so its removal is not an edit of the file (it may be that the
/// services on it are left out by their profiles).
fn removed_network_reason(stack: &StackSpec, network: &str) -> String {
    if network == format!("{}_default", stack.name) {
        format!("no service that runs uses network {network}")
    } else {
        format!("network left {}", stack.compose_file)
    }
}

/// What the plan does to a service's container that matters to the services joining it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Created,
    Recreated,
    Started,
}

/// `container_name:`, or compose's `<stack>-<service>-1`.
fn container_name(stack: &str, service: &str, spec: &ServiceSpec) -> String {
    spec.container_name
        .clone()
        .unwrap_or_else(|| crate::spec::model::default_container_name(stack, service))
}

/// A namespace one container can join of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    Network,
    Pid,
    Ipc,
}

impl Namespace {
    /// Its name in a reason.
    fn what(self) -> &'static str {
        match self {
            Namespace::Network => "network",
            Namespace::Pid => "PID namespace",
            Namespace::Ipc => "IPC namespace",
        }
    }

    /// The id of the container `c` is bound to in this namespace, when observed.
    fn bound(self, c: &ObservedContainer) -> Option<&str> {
        match self {
            Namespace::Network => c.joins_network.as_deref(),
            Namespace::Pid => c.joins_pid.as_deref(),
            Namespace::Ipc => c.joins_ipc.as_deref(),
        }
    }
}

/// The containers whose namespaces a service joins (`network_mode`, `pid`, `ipc` set to
/// `container:<name>`, which is what compose's `service:<name>` is resolved to).
fn joined_namespaces(svc: &ServiceSpec) -> Vec<(Namespace, &str)> {
    [
        (Namespace::Network, &svc.network_mode),
        (Namespace::Pid, &svc.pid),
        (Namespace::Ipc, &svc.ipc),
    ]
    .into_iter()
    .filter_map(|(ns, mode)| Some((ns, mode.as_deref()?.strip_prefix("container:")?)))
    .collect()
}

/// The labels a new container gets: the user's, then compose's and gitmoor's (which win).
fn container_labels(
    stack: &StackSpec,
    service: &str,
    user: &BTreeMap<String, String>,
    hash: &str,
    fp: &Fingerprint,
    ctx: &PlanContext,
) -> BTreeMap<String, String> {
    let mut l = user.clone();
    let dir = ctx.bind_root.join(&stack.name);
    let file = stack
        .compose_file
        .rsplit('/')
        .next()
        .unwrap_or("compose.yaml");
    for (k, v) in [
        (labels::PROJECT, stack.name.clone()),
        (labels::SERVICE, service.to_string()),
        (labels::CONTAINER_NUMBER, "1".into()),
        (labels::ONEOFF, "False".into()),
        (labels::CONFIG_HASH, hash.to_string()),
        (labels::WORKING_DIR, dir.to_string_lossy().into_owned()),
        (
            labels::CONFIG_FILES,
            dir.join(file).to_string_lossy().into_owned(),
        ),
        (labels::MANAGED, "true".into()),
        (labels::INSTANCE, ctx.instance.clone()),
        (labels::REPO, ctx.repo.clone()),
        (labels::COMMIT, ctx.commit.clone()),
        (
            labels::FINGERPRINT,
            serde_json::to_string(fp).unwrap_or_default(),
        ),
        (labels::HASH, ctx.hash_key.scheme_label()),
    ] {
        l.insert(k.to_string(), v);
    }
    l
}

/// The hash label a network carries; set by the planner when it asks for the network.
pub const NETWORK_HASH: &str = "io.gitmoor.network-hash";

fn with_hash(net: &crate::spec::model::NetworkSpec) -> crate::spec::model::NetworkSpec {
    let mut n = net.clone();
    n.labels.insert(NETWORK_HASH.to_string(), network_hash(net));
    n
}

/// A network as this plan makes it: its spec, plus the repo label (which takes no part in any
/// hash, so that a network made before the label existed is not taken for a changed one).
fn made(
    mut net: crate::spec::model::NetworkSpec,
    ctx: &PlanContext,
) -> crate::spec::model::NetworkSpec {
    net.labels
        .insert(labels::REPO.to_string(), ctx.repo.clone());
    net
}

/// The plan error for a container or network name another repo's object holds on this
/// instance. Adoption is offered only when it would help: the holder is of this very stack.
fn held_by_another_repo(
    what: &str,
    name: &str,
    holder_stack: &str,
    holder_repo: Option<&str>,
    stack: &StackSpec,
) -> PlanError {
    let fix = if holder_stack == stack.name {
        format!(
            "if this repo now deploys stack {holder_stack} in its place, take it over by adding \
             `adopt: [{holder_stack}]` to gitmoor's config; otherwise rename the stack (its \
             folder under compose/)"
        )
    } else {
        format!(
            "rename it in {} (container_name or the stack's folder), or remove it from the other repo",
            stack.compose_file
        )
    };
    PlanError(format!(
        "{what} name {name} is held by stack {holder_stack} {}, on the same gitmoor instance; \
         gitmoor never replaces another repo's objects: {fix}",
        from_repo(holder_repo)
    ))
}

fn network_hash_label(n: &crate::observe::ObservedNetwork) -> Option<String> {
    n.labels.get(NETWORK_HASH).cloned()
}

/// Hash of what a network is made with (its labels minus the hash itself, and `internal`).
pub fn network_hash(net: &crate::spec::model::NetworkSpec) -> String {
    let mut n = net.clone();
    n.labels.remove(NETWORK_HASH);
    n.labels.remove(labels::REPO);
    let s = serde_json::to_string(&n).unwrap_or_default();
    hex::encode(&sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(s))[..8])
}

/// Services in an order where each comes after what it depends on: in rounds, each round the
/// services whose dependencies are all placed, by name (a cycle, refused when the spec is read,
/// would be placed last, by name).
///
/// Kahn's algorithm: each service counts its dependencies not yet placed, and placing one
/// lowers the counts of the services that wait on it, so every edge is looked at once:
/// O((V + E) log V) with the sorting by name, where a long chain used to cost O(V³).
pub fn topo_order(stack: &StackSpec) -> Vec<String> {
    let names: Vec<&String> = stack.services.keys().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut waiting_for = vec![0usize; names.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (i, svc) in stack.services.values().enumerate() {
        for dep in svc.depends_on.keys() {
            if let Some(&j) = index.get(dep.as_str()) {
                waiting_for[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut placed = vec![false; names.len()];
    let mut order = Vec::with_capacity(names.len());
    let mut round: Vec<usize> = (0..names.len()).filter(|i| waiting_for[*i] == 0).collect();
    while !round.is_empty() {
        // Indexes follow the names' order.
        round.sort_unstable();
        let mut next = Vec::new();
        for &i in &round {
            placed[i] = true;
            order.push(names[i].clone());
            for &k in &dependents[i] {
                waiting_for[k] -= 1;
                if waiting_for[k] == 0 {
                    next.push(k);
                }
            }
        }
        round = next;
    }
    order.extend(
        (0..names.len())
            .filter(|i| !placed[*i])
            .map(|i| names[i].clone()),
    );
    order
}

/// For each service some other service waits on: the strongest condition asked.
fn waited_on(stack: &StackSpec) -> BTreeMap<String, DependsCondition> {
    let mut out = BTreeMap::new();
    for svc in stack.services.values() {
        for (dep, cond) in &svc.depends_on {
            let e = out.entry(dep.clone()).or_insert(*cond);
            if *cond != DependsCondition::Started {
                *e = *cond;
            }
        }
    }
    out
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

#[cfg(test)]
#[path = "tests_restart.rs"]
mod tests_restart;

/// Which of a service's containers is its current one: the one under its name, else the first.
/// Except after a recreate that was interrupted (apply/recreate.rs sets the old container aside
/// as `<name>-gitmoor-old`, creates the new one, then stops the old and starts the new): while
/// the new one has never started (`created`) or was never made, the one set aside is still the
/// last good container, and it is kept (and recreated under its name), not removed as an extra.
pub(super) fn kept_container(mine: &[&&ObservedContainer], name: &str) -> Option<usize> {
    let aside = format!("{name}-gitmoor-old");
    let holder = mine.iter().position(|c| c.name == name);
    let set_aside = mine.iter().position(|c| c.name == aside);
    match (holder, set_aside) {
        (Some(h), Some(a)) if mine[h].state == "created" => Some(a),
        (Some(h), _) => Some(h),
        (None, Some(a)) => Some(a),
        (None, None) => (!mine.is_empty()).then_some(0),
    }
}
