//! One compose file → `StackSpec`: parse (spanned YAML), refuse literal secrets, interpolate the
//! stack's variables, then convert key by key with a dotted key path for every error.
//!
//! The supported subset is explicit: every key gitmoor does not know is an error
//! (`compose/api/compose.yaml:14: services.api.expose: not supported by gitmoor; remove it`), so
//! nothing in a committed file is silently ignored. `x-*` extensions are the exception, at the
//! levels where compose allows them.

mod ctx;
mod env;
mod interp;
mod mounts;
mod ports;
mod runtime;
mod service;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_corpus;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_keys;
mod units;

pub use interp::StackVars;

use crate::labels;
use crate::source::snapshot::Snapshot;
use crate::spec::error::{Findings, SpecError};
use crate::spec::model::{NetworkSpec, StackSpec, VolumeSpec};
use crate::spec::yaml::{self, Node, NodeValue};
use ctx::{user_labels, valid_object_name, valid_stack_name, Ctx, REMOVE_IT};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One compose file and what it is read against.
pub struct StackInput<'a> {
    /// The stack (folder) name: `compose/<name>/`.
    pub name: &'a str,
    /// Repo path of the compose file, for messages.
    pub file: &'a str,
    pub text: &'a str,
    /// The whole commit: bind sources and env files are looked up in it.
    pub snap: &'a Snapshot,
    pub vars: &'a StackVars,
    /// Where the deployer materialises stack folders: a relative bind source `./conf` becomes
    /// `<bind_root>/<stack>/conf`.
    pub bind_root: &'a Path,
}

/// Converts one compose file. `Some` only when there is no error; warnings come either way.
pub fn load_stack(input: &StackInput) -> (Option<StackSpec>, Findings) {
    let mut ctx = Ctx::new(input.file);
    if !valid_stack_name(input.name) {
        ctx.findings.errors.push(
            SpecError::new(
                input.file,
                format!(
                    "stack name `{}` is not valid (lowercase letters, digits, `_` and `-`, starting with a letter or digit)",
                    input.name
                ),
            )
            .fix(format!(
                "rename the folder compose/{} (e.g. compose/{})",
                input.name,
                suggest_stack_name(input.name)
            )),
        );
    }
    let raw = match yaml::parse(input.text, input.file) {
        Ok(n) => n,
        Err(e) => {
            ctx.findings.errors.push(e);
            return (None, ctx.findings);
        }
    };
    if !matches!(raw.value, NodeValue::Map(_)) {
        let mut e = SpecError::new(input.file, "no services")
            .key("services")
            .fix("define services: at the top level");
        if raw.is_null() {
            e.message = "the file is empty; no services".to_string();
        } else {
            e.message = format!("the file is {}, not a mapping", raw.kind());
            e.line = Some(raw.line).filter(|l| *l > 0);
        }
        ctx.findings.errors.push(e);
        return (None, ctx.findings);
    }
    interp::check_literal_secrets(&mut ctx, &raw, input.name);
    let root = interp::interpolate_tree(&mut ctx, &raw, input.vars, input.name);
    let spec = convert(&mut ctx, input, &root);
    let spec = spec.filter(|_| ctx.findings.is_ok());
    scrub(&mut ctx.findings, input.vars);
    // In file order (a committed env file's problems come after the compose file's).
    let order = |e: &SpecError| (e.file != input.file, e.file.clone(), e.line);
    ctx.findings.errors.sort_by_key(order);
    ctx.findings.warnings.sort_by_key(order);
    (spec, ctx.findings)
}

/// Messages quote values (`` `99999` is not a port number``), and a value may have come from the
/// secrets file: replace every secret value of 4 characters or more by `***`.
fn scrub(findings: &mut Findings, vars: &StackVars) {
    let mut secrets: Vec<&str> = vars
        .vars
        .values()
        .map(|s| s.expose())
        .filter(|v| v.chars().count() >= 4)
        .collect();
    if secrets.is_empty() {
        return;
    }
    secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let clean = |text: &mut String| {
        for v in &secrets {
            if text.contains(v) {
                *text = text.replace(v, "***");
            }
        }
    };
    for e in findings
        .errors
        .iter_mut()
        .chain(findings.warnings.iter_mut())
    {
        clean(&mut e.message);
        if let Some(fix) = e.fix.as_mut() {
            clean(fix);
        }
    }
}

fn suggest_stack_name(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches(['-', '_']).to_string();
    if s.is_empty() {
        "app".to_string()
    } else {
        s
    }
}

fn convert(ctx: &mut Ctx, input: &StackInput, root: &Node) -> Option<StackSpec> {
    let NodeValue::Map(entries) = &root.value else {
        return None;
    };
    let stack = input.name;
    let mut services_node = None;
    let mut networks = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    for (key, v) in entries {
        match key.as_str() {
            "version" => ctx.warn(v, key, "obsolete (compose v2 ignores it)", REMOVE_IT),
            "name" => {
                if let Some(n) = ctx.string(v, key) {
                    if n != stack {
                        ctx.error(
                            v,
                            key,
                            format!("`{n}` differs from the stack folder name `{stack}`"),
                            &format!("remove name:, or write name: {stack}"),
                        );
                    }
                }
            }
            "services" => services_node = Some(v),
            "networks" => networks = top_networks(ctx, stack, v),
            "volumes" => volumes = top_volumes(ctx, stack, v),
            "secrets" | "configs" | "include" => ctx.not_yet(v, key),
            _ => ctx.unsupported(v, key),
        }
    }
    let Some(services_node) = services_node else {
        ctx.error(
            root,
            "services",
            "missing; no services",
            "define services: at the top level",
        );
        return None;
    };
    let service_entries = ctx.map(services_node, "services")?;
    if service_entries.is_empty() {
        ctx.error(
            services_node,
            "services",
            "no services",
            "define at least one service",
        );
    }
    let service_names: BTreeSet<String> = service_entries.iter().map(|(k, _)| k.clone()).collect();
    let mut network_keys: BTreeSet<String> = networks.keys().cloned().collect();
    network_keys.insert("default".to_string());
    let volume_keys: BTreeSet<String> = volumes.keys().cloned().collect();
    let st = service::StackEnv {
        mounts: mounts::MountEnv {
            stack,
            snap: input.snap,
            bind_root: input.bind_root,
            declared_volumes: &volume_keys,
        },
        env: env::EnvEnv {
            stack,
            snap: input.snap,
            vars: input.vars,
        },
        services: &service_names,
        networks: &network_keys,
    };
    let mut services = BTreeMap::new();
    for (name, node) in service_entries {
        if !valid_object_name(name) {
            ctx.error(
                node,
                &format!("services.{name}"),
                "not a valid service name (letters, digits, `_`, `.` and `-`, starting with a letter or digit)",
                "rename the service",
            );
        }
        let svc = service::service(ctx, &st, name, node);
        services.insert(name.clone(), svc);
    }
    if services
        .values()
        .any(|s| s.networks.contains_key("default"))
        && !networks.contains_key("default")
    {
        networks.insert(
            "default".to_string(),
            network_spec(stack, "default", false, BTreeMap::new()),
        );
    }
    check_cycles(ctx, services_node, &services);
    Some(StackSpec {
        name: stack.to_string(),
        compose_file: input.file.to_string(),
        services,
        networks,
        volumes,
        has_secrets_file: input.vars.has_secrets_file,
    })
}

fn network_spec(
    stack: &str,
    key: &str,
    internal: bool,
    user: BTreeMap<String, String>,
) -> NetworkSpec {
    let mut labels = user;
    labels.insert(labels::PROJECT.to_string(), stack.to_string());
    labels.insert(labels::NETWORK.to_string(), key.to_string());
    labels.insert(labels::MANAGED.to_string(), "true".to_string());
    NetworkSpec {
        name: format!("{stack}_{key}"),
        internal,
        labels,
    }
}

fn top_networks(ctx: &mut Ctx, stack: &str, node: &Node) -> BTreeMap<String, NetworkSpec> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, "networks") else {
        return out;
    };
    for (key, v) in entries {
        let base = format!("networks.{key}");
        if !valid_object_name(key) {
            ctx.error(
                v,
                &base,
                "not a valid network name",
                "use letters, digits, `_`, `.` and `-`",
            );
        }
        let mut internal = false;
        let mut user = BTreeMap::new();
        for (k, n) in ctx.map(v, &base).unwrap_or(&[]) {
            let sub = format!("{base}.{k}");
            match k.as_str() {
                "internal" => internal = ctx.bool(n, &sub).unwrap_or(false),
                "labels" => user = user_labels(ctx, n, &sub),
                "external" | "driver" | "driver_opts" | "ipam" | "name" | "attachable"
                | "enable_ipv6" | "enable_ipv4" => ctx.not_yet(n, &sub),
                _ => ctx.unsupported(n, &sub),
            }
        }
        out.insert(key.clone(), network_spec(stack, key, internal, user));
    }
    out
}

fn top_volumes(ctx: &mut Ctx, stack: &str, node: &Node) -> BTreeMap<String, VolumeSpec> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, "volumes") else {
        return out;
    };
    for (key, v) in entries {
        let base = format!("volumes.{key}");
        if !valid_object_name(key) {
            ctx.error(
                v,
                &base,
                "not a valid volume name",
                "use letters, digits, `_`, `.` and `-`",
            );
        }
        let mut labels = BTreeMap::new();
        for (k, n) in ctx.map(v, &base).unwrap_or(&[]) {
            let sub = format!("{base}.{k}");
            match k.as_str() {
                "labels" => labels = user_labels(ctx, n, &sub),
                "external" | "driver" | "driver_opts" | "name" => ctx.not_yet(n, &sub),
                _ => ctx.unsupported(n, &sub),
            }
        }
        labels.insert(labels::PROJECT.to_string(), stack.to_string());
        labels.insert(labels::VOLUME.to_string(), key.clone());
        labels.insert(labels::MANAGED.to_string(), "true".to_string());
        out.insert(
            key.clone(),
            VolumeSpec {
                name: format!("{stack}_{key}"),
                labels,
            },
        );
    }
    out
}

/// A `depends_on` cycle can never start: name it.
fn check_cycles(
    ctx: &mut Ctx,
    services_node: &Node,
    services: &BTreeMap<String, crate::spec::model::ServiceSpec>,
) {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in services.keys() {
        let mut path: Vec<&str> = Vec::new();
        visit(start, services, &mut state, &mut path, &mut |cycle| {
            let mut canon: Vec<String> = cycle.iter().map(|s| s.to_string()).collect();
            canon.sort();
            if !reported.insert(canon) {
                return;
            }
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
        });
    }
}

fn visit<'s>(
    name: &'s str,
    services: &'s BTreeMap<String, crate::spec::model::ServiceSpec>,
    state: &mut BTreeMap<&'s str, u8>,
    path: &mut Vec<&'s str>,
    report: &mut dyn FnMut(&[&str]),
) {
    match state.get(name) {
        Some(2) => return,
        Some(1) => {
            if let Some(i) = path.iter().position(|p| *p == name) {
                report(&path[i..]);
            }
            return;
        }
        _ => {}
    }
    state.insert(name, 1);
    path.push(name);
    if let Some(svc) = services.get(name) {
        for dep in svc.depends_on.keys() {
            if let Some((k, _)) = services.get_key_value(dep) {
                visit(k, services, state, path, report);
            }
        }
    }
    path.pop();
    state.insert(name, 2);
}
