//! Checks across the services of one file: container names, `depends_on` cycles,
//! dependencies on services that their profiles leave out, and data folders.

use super::ctx::Ctx;
use crate::spec::model::ServiceSpec;
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// Two services of one file cannot have the same container name.
pub(crate) fn container_names(
    ctx: &mut Ctx,
    services_node: &Node,
    services: &BTreeMap<String, ServiceSpec>,
    names: &BTreeMap<String, String>,
) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (svc, cname) in names {
        if !services.contains_key(svc) {
            continue;
        }
        if let Some(other) = seen.insert(cname, svc) {
            let at = services_node
                .get(svc)
                .and_then(|s| s.get("container_name"))
                .unwrap_or(services_node);
            ctx.error(
                at,
                &format!("services.{svc}.container_name"),
                format!("`{cname}` is also the container name of service {other}"),
                "give each service its own container name",
            );
        }
    }
}

/// A running service cannot depend on (or join, or link to) one its profiles leave out, unless
/// the dependency says `required: false`: then compose skips it, and so does gitmoor (the
/// planner orders only by the services that run).
pub(crate) fn inactive_deps(
    ctx: &mut Ctx,
    services_node: &Node,
    services: &BTreeMap<String, ServiceSpec>,
    inactive: &BTreeMap<String, Vec<String>>,
) {
    for (name, svc) in services.iter().filter(|(n, _)| !inactive.contains_key(*n)) {
        for dep in svc.depends_on.keys() {
            let Some(profiles) = inactive.get(dep) else {
                continue;
            };
            if svc.depends_on_optional.contains(dep) {
                continue;
            }
            let (key, at) = dependency_site(services_node, name, dep);
            ctx.error(
                at,
                &format!("services.{name}.{key}"),
                format!(
                    "`{dep}` does not run: its profiles ({}) are not enabled",
                    profiles.join(", ")
                ),
                &format!("enable one of them, or give {name} the same profiles"),
            );
        }
    }
}

/// Where `name` asks for `dep`, for an error's key and line: a namespace join
/// (`network_mode`, `pid`, `ipc`: `service:dep` or `container:<dep's container name>`), else its
/// `depends_on` entry, else its `links:` (which imply the dependency).
fn dependency_site<'a>(services_node: &'a Node, name: &str, dep: &str) -> (String, &'a Node) {
    let svc = services_node.get(name);
    let dep_container = services_node
        .get(dep)
        .and_then(|d| d.get("container_name"))
        .and_then(Node::as_str);
    for field in ["network_mode", "pid", "ipc"] {
        let Some(node) = svc.and_then(|s| s.get(field)) else {
            continue;
        };
        let value = node.as_str().unwrap_or_default();
        let joins = value.strip_prefix("service:") == Some(dep)
            || value
                .strip_prefix("container:")
                .is_some_and(|c| Some(c) == dep_container);
        if joins {
            return (field.to_string(), node);
        }
    }
    let explicit = svc
        .and_then(|s| s.get("depends_on"))
        .is_some_and(|d| match &d.value {
            NodeValue::Map(_) => d.get(dep).is_some(),
            NodeValue::Seq(items) => items.iter().any(|i| i.as_str() == Some(dep)),
            _ => false,
        });
    if !explicit {
        if let Some(links) = svc.and_then(|s| s.get("links")) {
            return ("links".to_string(), links);
        }
    }
    let at = svc
        .and_then(|s| s.get("depends_on"))
        .unwrap_or(services_node);
    (format!("depends_on.{dep}"), at)
}

/// At most this many distinct cycles are named: each costs its length to report, and a few
/// show what to fix.
const MAX_CYCLES: usize = 10;

/// A `depends_on` cycle can never start: name it.
///
/// One depth-first walk (iterative, so a chain of any length cannot overflow the stack) that
/// keeps each service's place on the current path: a dependency on a service of the path is a
/// cycle, found without searching the path. O(V + E), plus the reported cycles.
pub(crate) fn cycles(
    ctx: &mut Ctx,
    services_node: &Node,
    services: &BTreeMap<String, ServiceSpec>,
) {
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let deps: Vec<Vec<usize>> = services
        .values()
        .map(|svc| {
            svc.depends_on
                .keys()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    const UNSEEN: usize = usize::MAX;
    const DONE: usize = usize::MAX - 1;
    // UNSEEN, DONE, or the service's position on the current path.
    let mut state = vec![UNSEEN; names.len()];
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    let mut found: Vec<Vec<&str>> = Vec::new();
    for start in 0..names.len() {
        if state[start] != UNSEEN {
            continue;
        }
        let mut path: Vec<usize> = vec![start];
        // (service, its next dependency to follow)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 0;
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            let Some(&w) = deps[v].get(next) else {
                stack.pop();
                path.pop();
                state[v] = DONE;
                continue;
            };
            top.1 += 1;
            match state[w] {
                DONE => {}
                UNSEEN => {
                    state[w] = path.len();
                    path.push(w);
                    stack.push((w, 0));
                }
                at if reported.len() < MAX_CYCLES => {
                    let cycle: Vec<&str> = path[at..].iter().map(|i| names[*i]).collect();
                    let mut canon = cycle.clone();
                    canon.sort_unstable();
                    if reported.insert(canon) {
                        found.push(cycle);
                    }
                }
                _ => {}
            }
        }
    }
    for cycle in found {
        let first = cycle[0];
        let at = services_node
            .get(first)
            .and_then(|s| s.get("depends_on"))
            .unwrap_or(services_node);
        let mut shown = cycle.join(" -> ");
        shown.push_str(" -> ");
        shown.push_str(first);
        ctx.error(
            at,
            &format!("services.{first}.depends_on"),
            format!("dependency cycle: {shown}"),
            "remove one of these depends_on entries",
        );
    }
}

/// Most data folders one stack may have: each is a folder gitmoor makes on the host and never
/// removes, so a commit must not be able to make millions of them.
pub(crate) const MAX_DATA_FOLDERS: usize = 100;
/// Deepest data folder path, in components (`./a/b/c` is 3).
pub(crate) const MAX_DATA_FOLDER_DEPTH: usize = 8;

/// Data folders (relative binds not in the commit) must not nest: a container that mounts
/// `./data` writable could replace `./data/sub` with a link, and Docker, starting the service
/// that mounts `./data/sub`, would follow it on the host (to `/`, to the Docker socket), past any
/// policy. And they are bounded in number and depth, since they outlive the commit.
pub(crate) fn data_folders(
    ctx: &mut Ctx,
    services_node: &Node,
    services: &BTreeMap<String, ServiceSpec>,
) {
    // (path components, source as written, service)
    let mut all: Vec<(Vec<&str>, &str, &str)> = Vec::new();
    for (svc, spec) in services {
        for source in spec.data_folders.keys() {
            let parts: Vec<&str> = source
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            all.push((parts, source, svc));
        }
    }
    let at = |svc: &str| {
        services_node
            .get(svc)
            .and_then(|s| s.get("volumes"))
            .unwrap_or(services_node)
            .clone()
    };
    if all.len() > MAX_DATA_FOLDERS {
        let node = at(all[MAX_DATA_FOLDERS].2);
        ctx.error(
            &node,
            &format!("services.{}.volumes", all[MAX_DATA_FOLDERS].2),
            format!(
                "the stack has {} data folders (relative binds not in the commit); at most {MAX_DATA_FOLDERS}",
                all.len()
            ),
            "mount one folder and keep the rest inside it, or use named volumes",
        );
        return;
    }
    for (parts, source, svc) in &all {
        if parts.len() > MAX_DATA_FOLDER_DEPTH {
            let node = at(svc);
            ctx.error(
                &node,
                &format!("services.{svc}.volumes"),
                format!(
                    "data folder `{source}` is {} folders deep; at most {MAX_DATA_FOLDER_DEPTH}",
                    parts.len()
                ),
                "mount a shallower folder",
            );
        }
    }
    // At most 100 folders of at most 8 parts: look each proper prefix up.
    let by_path: BTreeMap<&[&str], (&str, &str)> = all
        .iter()
        .map(|(parts, source, svc)| (parts.as_slice(), (*source, *svc)))
        .collect();
    for (parts, inner_src, inner_svc) in &all {
        let outer = (1..parts.len()).find_map(|n| by_path.get(&parts[..n]));
        if let Some((outer_src, outer_svc)) = outer {
            let node = at(inner_svc);
            ctx.error(
                &node,
                &format!("services.{inner_svc}.volumes"),
                format!(
                    "data folder `{inner_src}` lies inside data folder `{outer_src}` (service \
                     {outer_svc}): a container could swap it for a link that Docker would \
                     follow on the host"
                ),
                "mount the outer folder alone, or keep the two folders side by side",
            );
        }
    }
}
