//! How a service hangs together with the rest of its stack: `depends_on:`, legacy `links:` and
//! `networks:` (aliases and static addresses).

use super::ctx::{is_extension, Ctx, REMOVE_IT};
use super::service::StackEnv;
use super::top::{address, in_subnet};
use crate::spec::model::{default_container_name, DependsCondition, NetworkAttach, ServiceSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// `depends_on:` into `svc.depends_on`, with the `restart: true` and `required: false` entries
/// noted beside it.
pub(crate) fn depends_on(
    ctx: &mut Ctx,
    st: &StackEnv,
    me: &str,
    v: &Node,
    k: &str,
    svc: &mut ServiceSpec,
) {
    let out = &mut svc.depends_on;
    // An unknown service is refused even with `required: false`: compose skips only a service
    // its profiles leave out (see `checks::inactive_deps`), and refuses an undefined one.
    let mut add = |ctx: &mut Ctx, at: &Node, dep: &str, cond: DependsCondition| {
        let sub = format!("{k}.{dep}");
        if dep == me {
            ctx.error(at, &sub, "a service cannot depend on itself", REMOVE_IT);
            false
        } else if !st.services.contains(dep) {
            ctx.error(
                at,
                &sub,
                format!("unknown service `{dep}`"),
                "name a service of this compose file",
            );
            false
        } else {
            out.insert(dep.to_string(), cond);
            true
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
                let (mut restart, mut required) = (false, true);
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
                            "restart" => restart = ctx.bool(fv, &fsub).unwrap_or(false),
                            "required" => required = ctx.bool(fv, &fsub).unwrap_or(true),
                            f if is_extension(f) => {}
                            _ => ctx.unsupported(fv, &fsub),
                        }
                    }
                }
                if add(ctx, spec, dep, cond) {
                    if restart {
                        svc.depends_on_restart.insert(dep.clone());
                    }
                    if !required {
                        svc.depends_on_optional.insert(dep.clone());
                    }
                }
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
}

/// `links: [db, "db:database"]`, as compose v2 reads it: the linked service's container gets the
/// alias (and `<service>-1`, `<stack>-<service>-1`) as names that only this container resolves,
/// and this service depends on it (started, and restarted when it is recreated) unless its
/// `depends_on` already says otherwise. Called after `depends_on:` is read, in whatever order
/// the keys come.
pub(crate) fn links(
    ctx: &mut Ctx,
    st: &StackEnv,
    me: &str,
    v: &Node,
    k: &str,
    svc: &mut ServiceSpec,
) {
    let Some(items) = ctx.seq(v, k) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let sub = format!("{k}[{i}]");
        let Some(link) = ctx.string(item, &sub) else {
            continue;
        };
        let (dep, alias) = link.split_once(':').unwrap_or((&link, &link));
        if dep.is_empty() || alias.is_empty() || alias.contains(':') {
            ctx.error(
                item,
                &sub,
                format!("`{link}` is not service[:alias]"),
                "write it like db or db:database",
            );
            continue;
        }
        if dep == me {
            ctx.error(item, &sub, "a service cannot link to itself", REMOVE_IT);
            continue;
        }
        let Some(container) = st
            .container_names
            .get(dep)
            .filter(|_| st.services.contains(dep))
        else {
            ctx.error(
                item,
                &sub,
                format!("unknown service `{dep}`"),
                "name a service of this compose file (a container outside it: put both on a shared external network)",
            );
            continue;
        };
        let stack = st.mounts.stack;
        for name in [
            alias.to_string(),
            format!("{dep}-1"),
            default_container_name(stack, dep),
        ] {
            svc.links.push(format!("{container}:{name}"));
        }
        if !svc.depends_on.contains_key(dep) {
            svc.depends_on
                .insert(dep.to_string(), DependsCondition::Started);
            svc.depends_on_restart.insert(dep.to_string());
        }
    }
}

/// `networks:` of a service: a list of keys or a mapping with `aliases`. The service name is
/// always an alias; no `networks:` means the `default` network.
pub(crate) fn service_networks(
    ctx: &mut Ctx,
    st: &StackEnv,
    name: &str,
    node: Option<&Node>,
    base: &str,
) -> BTreeMap<String, NetworkAttach> {
    let mut out = BTreeMap::new();
    let k = format!("{base}.networks");
    let mut add = |ctx: &mut Ctx, at: &Node, net: &str, mut attach: NetworkAttach| {
        let Some(spec) = st.networks.get(net) else {
            ctx.error(
                at,
                &format!("{k}.{net}"),
                format!("network `{net}` is not declared"),
                &format!("add it under the top-level networks: (`networks: {{{net}: {{}}}}`)"),
            );
            return;
        };
        for (field, addr) in [
            ("ipv4_address", &attach.ipv4_address),
            ("ipv6_address", &attach.ipv6_address),
        ] {
            let Some(addr) = addr else { continue };
            if spec.external {
                continue;
            }
            let subnets: Vec<&String> = spec
                .ipam
                .iter()
                .flat_map(|i| i.config.iter().filter_map(|p| p.subnet.as_ref()))
                .collect();
            let fix = format!(
                "give networks.{net} an ipam subnet that holds it (ipam: {{config: [{{subnet: ...}}]}})"
            );
            if subnets.is_empty() {
                ctx.error(
                    at,
                    &format!("{k}.{net}.{field}"),
                    format!("a static address needs a subnet, and network `{net}` has none"),
                    &fix,
                );
            } else if !subnets.iter().any(|s| in_subnet(addr, s)) {
                ctx.error(
                    at,
                    &format!("{k}.{net}.{field}"),
                    format!("`{addr}` is outside the subnets of network `{net}`"),
                    &fix,
                );
            }
        }
        attach.aliases.insert(0, name.to_string());
        let mut seen = BTreeSet::new();
        attach.aliases.retain(|a| seen.insert(a.clone()));
        out.insert(net.to_string(), attach);
    };
    let Some(node) = node else {
        add(
            ctx,
            &Node::new(0, 0, NodeValue::Null),
            "default",
            NetworkAttach::default(),
        );
        return out;
    };
    match &node.value {
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(net) = ctx.string(item, &format!("{k}[{i}]")) {
                    add(ctx, item, &net, NetworkAttach::default());
                }
            }
        }
        NodeValue::Map(entries) => {
            for (net, spec) in entries {
                let sub = format!("{k}.{net}");
                let mut attach = NetworkAttach::default();
                if let Some(fields) = ctx.map(spec, &sub) {
                    for (fk, fv) in fields {
                        let fsub = format!("{sub}.{fk}");
                        match fk.as_str() {
                            "aliases" => attach.aliases = ctx.strings(fv, &fsub),
                            "ipv4_address" => attach.ipv4_address = address(ctx, fv, &fsub),
                            "ipv6_address" => attach.ipv6_address = address(ctx, fv, &fsub),
                            "priority" | "mac_address" | "link_local_ips" | "driver_opts"
                            | "gw_priority" | "interface_name" => ctx.not_yet(fv, &fsub),
                            f if is_extension(f) => {}
                            _ => ctx.unsupported(fv, &fsub),
                        }
                    }
                }
                add(ctx, spec, net, attach);
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
