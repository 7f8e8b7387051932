//! One entry of `services:`, key by key. A key gitmoor does not know is an error, never ignored.

use super::ctx::{user_labels, Ctx, REMOVE_IT};
use super::env::{env_files, environment, EnvEnv};
use super::mounts::{tmpfs, volumes, MountEnv};
use super::ports::ports;
use super::runtime::{
    bytes, cpus, deploy, extra_hosts, healthcheck, logging, merge_limit, one_container, restart,
};
use crate::spec::model::{DependsCondition, NetworkAttach, ServiceSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// What a service is converted against: the rest of its stack.
pub(crate) struct StackEnv<'a> {
    pub mounts: MountEnv<'a>,
    pub env: EnvEnv<'a>,
    pub services: &'a BTreeSet<String>,
    /// Top-level network keys, plus `default`.
    pub networks: &'a BTreeSet<String>,
}

pub(crate) fn service(ctx: &mut Ctx, st: &StackEnv, name: &str, node: &Node) -> ServiceSpec {
    let mut svc = ServiceSpec::default();
    let base = format!("services.{name}");
    let Some(entries) = ctx.map(node, &base) else {
        return svc;
    };
    let mut image = None;
    let mut env_node = None;
    let mut networks_node = None;
    let mut deploy_mem = None;
    let mut deploy_cpus = None;
    for (key, v) in entries {
        let k = format!("{base}.{key}");
        match key.as_str() {
            "image" => image = ctx.string(v, &k).filter(|s| !s.trim().is_empty()),
            "build" => ctx.error(
                v,
                &k,
                "build: not supported yet",
                "build and push the image in CI, and set image: to it",
            ),
            "command" => svc.command = command(ctx, v, &k),
            "entrypoint" => svc.entrypoint = command(ctx, v, &k),
            "environment" => env_node = Some(v),
            "env_file" => env_files(ctx, &st.env, v, &k, &mut svc),
            "ports" => svc.ports = ports(ctx, v, &k),
            "volumes" => volumes(ctx, &st.mounts, v, &k, &mut svc),
            "networks" => networks_node = Some(v),
            "depends_on" => svc.depends_on = depends_on(ctx, st, name, v, &k),
            "healthcheck" => svc.healthcheck = healthcheck(ctx, v, &k),
            "restart" => svc.restart = restart(ctx, v, &k),
            "labels" => svc.labels = user_labels(ctx, v, &k),
            "user" => svc.user = ctx.string(v, &k),
            "working_dir" => svc.working_dir = ctx.string(v, &k),
            "cap_add" => svc.cap_add = ctx.strings(v, &k),
            "cap_drop" => svc.cap_drop = ctx.strings(v, &k),
            "read_only" => svc.read_only = ctx.bool(v, &k).unwrap_or(false),
            "tmpfs" => tmpfs(ctx, v, &k, &mut svc),
            "extra_hosts" => svc.extra_hosts = extra_hosts(ctx, v, &k),
            "logging" => svc.logging = logging(ctx, v, &k),
            "mem_limit" => svc.mem_limit = bytes(ctx, v, &k),
            "cpus" => svc.nano_cpus = cpus(ctx, v, &k),
            "deploy" => deploy(ctx, v, &k, &mut deploy_mem, &mut deploy_cpus),
            "scale" => one_container(ctx, v, &k),
            "secrets" | "configs" => ctx.not_yet(v, &k),
            key if key.starts_with("x-") => {}
            _ => ctx.unsupported(v, &k),
        }
    }
    match image {
        Some(i) => svc.image = i,
        None if node.get("build").is_some() => {}
        None => ctx.error(
            node,
            &format!("{base}.image"),
            "missing; gitmoor runs prebuilt images",
            "add image: <name>:<tag>",
        ),
    }
    if let Some(v) = env_node {
        environment(ctx, &st.env, v, &format!("{base}.environment"), &mut svc);
    }
    svc.networks = service_networks(ctx, st, name, networks_node, &base);
    merge_limit(ctx, &base, "memory", &mut svc.mem_limit, deploy_mem);
    merge_limit(ctx, &base, "cpus", &mut svc.nano_cpus, deploy_cpus);
    svc
}

/// A string split like a shell (as compose does), or a list as given.
fn command(ctx: &mut Ctx, v: &Node, k: &str) -> Option<Vec<String>> {
    match &v.value {
        NodeValue::Null => None,
        NodeValue::Seq(_) => Some(ctx.strings(v, k)),
        NodeValue::Str(s) => match shlex::split(s) {
            Some(words) => Some(words),
            None => {
                ctx.error(
                    v,
                    k,
                    "unbalanced quotes or a trailing backslash",
                    "fix the quoting, or write the command as a list",
                );
                None
            }
        },
        _ => ctx.string(v, k).map(|s| vec![s]),
    }
}

fn depends_on(
    ctx: &mut Ctx,
    st: &StackEnv,
    me: &str,
    v: &Node,
    k: &str,
) -> BTreeMap<String, DependsCondition> {
    let mut out = BTreeMap::new();
    let mut add = |ctx: &mut Ctx, at: &Node, dep: &str, cond: DependsCondition| {
        let sub = format!("{k}.{dep}");
        if dep == me {
            ctx.error(at, &sub, "a service cannot depend on itself", REMOVE_IT);
        } else if !st.services.contains(dep) {
            ctx.error(
                at,
                &sub,
                format!("unknown service `{dep}`"),
                "name a service of this compose file",
            );
        } else {
            out.insert(dep.to_string(), cond);
        }
    };
    match &v.value {
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(dep) = ctx.string(item, &format!("{k}[{i}]")) {
                    add(ctx, item, &dep, DependsCondition::Started);
                }
            }
        }
        NodeValue::Map(entries) => {
            for (dep, spec) in entries {
                let sub = format!("{k}.{dep}");
                let mut cond = DependsCondition::Started;
                if let Some(fields) = ctx.map(spec, &sub) {
                    for (fk, fv) in fields {
                        let fsub = format!("{sub}.{fk}");
                        match fk.as_str() {
                            "condition" => match ctx.string(fv, &fsub).as_deref() {
                                Some("service_started") => cond = DependsCondition::Started,
                                Some("service_healthy") => cond = DependsCondition::Healthy,
                                Some("service_completed_successfully") => {
                                    cond = DependsCondition::CompletedSuccessfully
                                }
                                Some(other) => ctx.error(
                                    fv,
                                    &fsub,
                                    format!("unknown condition `{other}`"),
                                    "use service_started, service_healthy or service_completed_successfully",
                                ),
                                None => {}
                            },
                            "restart" | "required" => ctx.not_yet(fv, &fsub),
                            _ => ctx.unsupported(fv, &fsub),
                        }
                    }
                }
                add(ctx, spec, dep, cond);
            }
        }
        NodeValue::Null => {}
        _ => ctx.error(
            v,
            k,
            format!(
                "expected a list or a mapping of services, found {}",
                v.kind()
            ),
            "",
        ),
    }
    out
}

/// `networks:` of a service: a list of keys or a mapping with `aliases`. The service name is
/// always an alias; no `networks:` means the `default` network.
fn service_networks(
    ctx: &mut Ctx,
    st: &StackEnv,
    name: &str,
    node: Option<&Node>,
    base: &str,
) -> BTreeMap<String, NetworkAttach> {
    let mut out = BTreeMap::new();
    let k = format!("{base}.networks");
    let mut add = |ctx: &mut Ctx, at: &Node, net: &str, mut aliases: Vec<String>| {
        if !st.networks.contains(net) {
            ctx.error(
                at,
                &format!("{k}.{net}"),
                format!("network `{net}` is not declared"),
                &format!("add it under the top-level networks: (`networks: {{{net}: {{}}}}`)"),
            );
            return;
        }
        aliases.insert(0, name.to_string());
        let mut seen = BTreeSet::new();
        aliases.retain(|a| seen.insert(a.clone()));
        out.insert(net.to_string(), NetworkAttach { aliases });
    };
    let Some(node) = node else {
        out.insert(
            "default".to_string(),
            NetworkAttach {
                aliases: vec![name.to_string()],
            },
        );
        return out;
    };
    match &node.value {
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(net) = ctx.string(item, &format!("{k}[{i}]")) {
                    add(ctx, item, &net, Vec::new());
                }
            }
        }
        NodeValue::Map(entries) => {
            for (net, spec) in entries {
                let sub = format!("{k}.{net}");
                let mut aliases = Vec::new();
                if let Some(fields) = ctx.map(spec, &sub) {
                    for (fk, fv) in fields {
                        let fsub = format!("{sub}.{fk}");
                        match fk.as_str() {
                            "aliases" => aliases = ctx.strings(fv, &fsub),
                            "ipv4_address" | "ipv6_address" | "priority" | "mac_address"
                            | "link_local_ips" | "driver_opts" | "gw_priority" => {
                                ctx.not_yet(fv, &fsub)
                            }
                            _ => ctx.unsupported(fv, &fsub),
                        }
                    }
                }
                add(ctx, spec, net, aliases);
            }
        }
        _ => ctx.error(
            node,
            &k,
            format!(
                "expected a list or a mapping of networks, found {}",
                node.kind()
            ),
            "",
        ),
    }
    out
}
