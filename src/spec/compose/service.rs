//! One entry of `services:`, key by key. A key gitmoor does not know is an error, never ignored.

use super::attach::{depends_on, links, service_networks};
use super::buildspec::{build, default_image, pull_policy, BuildEnv};
use super::ctx::{is_extension, user_labels, valid_object_name, Ctx};
use super::env::{env_files, environment, EnvEnv};
use super::files::{service_refs, Declared, Kind};
use super::hostcfg::{devices, expose, grace_period, group_add, mode, sysctls, ulimits, ModeEnv};
use super::mounts::{tmpfs, volumes, MountEnv};
use super::ports::ports;
use super::runtime::{
    bytes, cpus, deploy, extra_hosts, healthcheck, logging, merge_limit, merge_restart,
    one_container, pids_limit, restart, DeployKeys,
};
use crate::spec::model::{DependsCondition, NetworkSpec, PullPolicy, ServiceSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// What a service is converted against: the rest of its stack.
pub(crate) struct StackEnv<'a> {
    pub mounts: MountEnv<'a>,
    pub env: EnvEnv<'a>,
    /// The same with a missing variable a warning: for services left out by their profiles.
    pub lenient_env: EnvEnv<'a>,
    pub build: BuildEnv<'a>,
    pub services: &'a BTreeSet<String>,
    /// Top-level networks, plus `default`.
    pub networks: &'a BTreeMap<String, NetworkSpec>,
    /// Service -> its container name (`container_name:` or `<stack>-<service>-1`).
    pub container_names: &'a BTreeMap<String, String>,
}

/// The top-level secrets and configs, which services mount.
#[derive(Debug, Default)]
pub(crate) struct Files {
    pub secrets: Declared,
    pub configs: Declared,
}

/// `active`: the service runs (no `profiles:`, or one of them is enabled).
pub(crate) fn service(
    ctx: &mut Ctx,
    st: &StackEnv,
    files: &mut Files,
    name: &str,
    node: &Node,
    active: bool,
) -> ServiceSpec {
    let mut svc = ServiceSpec::default();
    let base = format!("services.{name}");
    let Some(entries) = ctx.map(node, &base) else {
        return svc;
    };
    let env_env = if active { &st.env } else { &st.lenient_env };
    let modes = ModeEnv {
        me: name,
        services: st.services,
        container_names: st.container_names,
    };
    let mut image = None;
    let mut env_node = None;
    let mut networks_node = None;
    let mut deploy_keys = DeployKeys::default();
    let mut links_node = None;
    let mut joins: Vec<String> = Vec::new();
    let mut pull_at = None;
    for (key, v) in entries {
        let k = format!("{base}.{key}");
        match key.as_str() {
            "image" => image = ctx.string(v, &k).filter(|s| !s.trim().is_empty()),
            "build" => svc.build = build(ctx, &st.build, v, &k),
            "pull_policy" => {
                svc.pull_policy = pull_policy(ctx, v, &k).unwrap_or_default();
                pull_at = Some(v);
            }
            "command" => svc.command = command(ctx, v, &k),
            "entrypoint" => svc.entrypoint = command(ctx, v, &k),
            "environment" => env_node = Some(v),
            "env_file" => env_files(ctx, env_env, v, &k, &mut svc),
            "ports" => svc.ports = ports(ctx, v, &k),
            "expose" => svc.expose = expose(ctx, v, &k),
            "volumes" => volumes(ctx, &st.mounts, v, &k, &mut svc),
            "networks" => networks_node = Some(v),
            "depends_on" => depends_on(ctx, st, name, v, &k, &mut svc),
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
            "pids_limit" => svc.pids_limit = pids_limit(ctx, v, &k),
            "deploy" => deploy(ctx, v, &k, &mut deploy_keys),
            "scale" => one_container(ctx, v, &k),
            "secrets" => service_refs(
                ctx,
                &mut files.secrets,
                Kind::Secret,
                v,
                &k,
                active,
                &mut svc,
            ),
            "configs" => service_refs(
                ctx,
                &mut files.configs,
                Kind::Config,
                v,
                &k,
                active,
                &mut svc,
            ),
            "container_name" => svc.container_name = container_name(ctx, v, &k),
            "hostname" => svc.hostname = ctx.string(v, &k),
            "domainname" => svc.domainname = ctx.string(v, &k),
            "stop_signal" => svc.stop_signal = ctx.string(v, &k),
            "stop_grace_period" => svc.stop_grace_period = grace_period(ctx, v, &k),
            "sysctls" => svc.sysctls = sysctls(ctx, v, &k),
            "ulimits" => svc.ulimits = ulimits(ctx, v, &k),
            "init" => svc.init = ctx.bool(v, &k),
            "shm_size" => svc.shm_size = bytes(ctx, v, &k),
            "network_mode" => {
                let allowed = ["host", "none", "bridge", "default"];
                if let Some((m, join)) = mode(ctx, &modes, v, &k, &allowed) {
                    // compose's `default` is Docker's `bridge` for a container without networks.
                    svc.network_mode = Some(if m == "default" { "bridge".into() } else { m });
                    joins.extend(join);
                }
            }
            "pid" => {
                if let Some((m, join)) = mode(ctx, &modes, v, &k, &["host"]) {
                    svc.pid = Some(m);
                    joins.extend(join);
                }
            }
            "ipc" => {
                let allowed = ["host", "private", "shareable", "none"];
                if let Some((m, join)) = mode(ctx, &modes, v, &k, &allowed) {
                    svc.ipc = Some(m);
                    joins.extend(join);
                }
            }
            "devices" => svc.devices = devices(ctx, v, &k),
            "dns" => svc.dns = ctx.strings_or_string(v, &k),
            "dns_search" => svc.dns_search = ctx.strings_or_string(v, &k),
            "dns_opt" => svc.dns_opt = ctx.strings(v, &k),
            "security_opt" => svc.security_opt = ctx.strings(v, &k),
            "privileged" => svc.privileged = ctx.bool(v, &k).unwrap_or(false),
            "platform" => svc.platform = ctx.string(v, &k).filter(|p| !p.is_empty()),
            "group_add" => svc.group_add = group_add(ctx, v, &k),
            "stdin_open" => svc.stdin_open = ctx.bool(v, &k).unwrap_or(false),
            "tty" => svc.tty = ctx.bool(v, &k).unwrap_or(false),
            "runtime" => svc.runtime = ctx.string(v, &k).filter(|r| !r.is_empty()),
            "profiles" => profiles(ctx, v, &k),
            "links" => links_node = Some(v),
            "external_links" => ctx.error(
                v,
                &k,
                "not supported (links to containers outside the stack)",
                "put the container and this service on a shared external network, and use its name there",
            ),
            key if is_extension(key) => {}
            _ => ctx.unsupported(v, &k),
        }
    }
    match image {
        Some(i) => {
            // The name reaches dockerd inside URL paths: anything but a reference is refused.
            let at = node.get("image").unwrap_or(node);
            // A variable CI could not check leaves a value that is not the host's: not judged.
            let judged = if ctx.is_unchecked(at) {
                Ok(())
            } else {
                super::image_ref::check_reference(&i)
            };
            if let Err(why) = judged {
                // A value made from variables is not quoted: only whole secret values are
                // scrubbed from messages, and `why` quotes a part.
                let (message, fix) = if ctx.is_interpolated(at) {
                    (
                        "is not an image reference once its variables are filled in".to_string(),
                        format!("check the variables it uses in <secrets_dir>/{}.env: [registry/]name[:tag][@sha256:digest]", st.build.stack),
                    )
                } else {
                    (
                        format!("{i:?} is not an image reference: {why}"),
                        "write it as [registry/]name[:tag][@sha256:digest], e.g. postgres:15"
                            .to_string(),
                    )
                };
                ctx.error(at, &format!("{base}.image"), message, &fix);
            }
            svc.image = i;
        }
        None if svc.build.is_some() => {
            svc.image = default_image(st.build.stack, name);
            if let Err(why) = super::image_ref::check_reference(&svc.image) {
                ctx.error(
                    node.get("build").unwrap_or(node),
                    &format!("{base}.image"),
                    format!(
                        "the image name {:?} made from the stack and service names is not an image reference: {why}",
                        svc.image
                    ),
                    "set image: <name>:<tag> for this service",
                );
            }
        }
        None if node.get("build").is_some() => {}
        // Its image may be in an included file; the refused `include:` says what to do.
        None if ctx.refused_include => {}
        None => ctx.error(
            node,
            &format!("{base}.image"),
            "missing; gitmoor runs an image, or builds one with build:",
            "add image: <name>:<tag>, or build: <context folder>",
        ),
    }
    if let Some(at) = pull_at {
        if svc.pull_policy == PullPolicy::Build && node.get("build").is_none() {
            ctx.error(
                at,
                &format!("{base}.pull_policy"),
                "`build` needs a build: section",
                "add build:, or use always, missing or never",
            );
        }
    }
    if let Some(v) = env_node {
        environment(ctx, env_env, v, &format!("{base}.environment"), &mut svc);
    }
    if svc.network_mode.is_some() {
        if let Some(n) = networks_node {
            ctx.error(
                n,
                &format!("{base}.networks"),
                "cannot be combined with network_mode",
                "remove networks:, or network_mode:",
            );
        }
        if !svc.ports.is_empty() && svc.network_mode.as_deref() == Some("host") {
            let at = node.get("ports").unwrap_or(node);
            ctx.warn(
                at,
                &format!("{base}.ports"),
                "ignored with network_mode: host (the container uses the host's ports directly)",
                "remove ports:",
            );
        }
    } else {
        svc.networks = service_networks(ctx, st, name, networks_node, &base);
    }
    // Joining another service's namespaces means starting after it, as compose does.
    for other in joins {
        svc.depends_on
            .entry(other)
            .or_insert(DependsCondition::Started);
    }
    if let Some(v) = links_node {
        let k = format!("{base}.links");
        match svc.network_mode.as_deref() {
            None | Some("bridge") => links(ctx, st, name, v, &k, &mut svc),
            // The engine refuses links there (a joined or the host's network has no names of
            // its own).
            Some(mode) => ctx.error(
                v,
                &k,
                format!("cannot be combined with network_mode: {mode}"),
                "remove links:",
            ),
        }
    }
    merge_limit(ctx, &base, "memory", &mut svc.mem_limit, deploy_keys.memory);
    merge_limit(ctx, &base, "cpus", &mut svc.nano_cpus, deploy_keys.cpus);
    merge_limit(ctx, &base, "pids", &mut svc.pids_limit, deploy_keys.pids);
    merge_restart(ctx, &base, &mut svc.restart, deploy_keys.restart);
    svc
}

/// Docker's rule for container names.
fn container_name(ctx: &mut Ctx, v: &Node, k: &str) -> Option<String> {
    let name = ctx.string(v, k)?;
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Some(name)
    } else {
        ctx.error(
            v,
            k,
            format!("`{name}` is not a valid container name"),
            "use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        );
        None
    }
}

/// `profiles:`: a list of names; which services run is decided before conversion.
fn profiles(ctx: &mut Ctx, v: &Node, k: &str) {
    for (i, p) in ctx.strings(v, k).iter().enumerate() {
        if !valid_object_name(p) {
            let at = match &v.value {
                NodeValue::Seq(items) => items.get(i).unwrap_or(v),
                _ => v,
            };
            ctx.error(
                at,
                &format!("{k}[{i}]"),
                format!("`{p}` is not a valid profile name"),
                "use letters, digits, `_`, `.` and `-`",
            );
        }
    }
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

#[cfg(test)]
#[path = "tests_real_keys.rs"]
mod tests_real_keys;
