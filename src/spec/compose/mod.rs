//! One compose file → `StackSpec`: parse (spanned YAML), refuse literal secrets, interpolate the
//! stack's variables, then convert key by key with a dotted key path for every error.
//!
//! The supported subset is explicit: every key gitmoor does not know is an error
//! (`compose/api/compose.yaml:14: services.api.external_links: not supported (links to containers outside the stack); …`),
//! so nothing in a committed file is silently ignored. `x-*` extensions are the exception: compose
//! allows them in every mapping of its schema, and they are ignored there.

mod attach;
mod buildspec;
mod checks;
mod ctx;
mod env;
mod files;
mod hostcfg;
mod hostfiles;
mod image_ref;
mod interp;
mod mounts;
mod names;
mod ports;
mod runtime;
mod service;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_build;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_host_files;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_names;
#[cfg(test)]
mod tests_secrets_configs;
#[cfg(test)]
mod tests_service_keys;
#[cfg(test)]
mod tests_shipped;
mod top;
mod units;

pub use interp::{LiteralSecrets, StackVars};

use crate::source::snapshot::Snapshot;
use crate::spec::error::{Findings, SpecError};
use crate::spec::limits::{self, Limits};
use crate::spec::model::{default_container_name, Secret, StackSpec};
use crate::spec::policy::{self, Policy, PolicyEnv};
use crate::spec::yaml::{self, Node, NodeValue};
pub use ctx::valid_stack_name;
use ctx::{valid_object_name, Ctx};
pub use hostfiles::inside_parts;
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
    /// The content dir: a relative bind source `./conf` is served from its content-addressed
    /// copy `<bind_root>/<content id>/conf`.
    pub bind_root: &'a Path,
    /// Where the stacks' data folders are: a relative bind source that is not in the commit,
    /// `./pgdata`, is `<data_dir>/<stack>/pgdata`.
    pub data_dir: &'a Path,
    /// The host's secrets dir, where `secrets:` files are read; None when not checked (CI).
    pub secrets_dir: Option<&'a Path>,
    /// The enabled profiles: a service with `profiles:` runs only when one of them is here
    /// (`*` enables all).
    pub profiles: &'a [String],
    /// The budgets of `limits:`: expanded YAML bytes, services, ports, `depends_on` edges.
    pub limits: &'a Limits,
    /// The host policy (`policy:`), when the config has one.
    pub policy: Option<&'a Policy>,
    /// What `~` in a bind source is (the home of the user gitmoor runs as); None: refused.
    pub home_dir: Option<&'a Path>,
    /// Whether a literal secret in a committed file is an error or a warning.
    pub literal_secrets: LiteralSecrets,
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
    let mut raw = match yaml::parse_within(input.text, input.file, input.limits.expanded_yaml_bytes)
    {
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
    ctx.literal_secrets = input.literal_secrets;
    names::refuse_interpolated_names(&mut ctx, &mut raw);
    interp::check_literal_secrets(&mut ctx, &raw, input.name);
    let inactive = inactive_services(&raw, input.profiles);
    let names: BTreeSet<String> = inactive.keys().cloned().collect();
    let root = interp::interpolate_tree(&mut ctx, &raw, input.vars, input.name, &names);
    // Counted after interpolation (`ports: ["${RANGE}"]`), before anything is converted:
    // converting an oversized stack is what the budget is there to prevent.
    let over = limits::check_stack(input.file, &root, input.limits);
    if !over.is_empty() {
        ctx.findings.errors.extend(over);
        let literal = std::mem::take(&mut ctx.literal_values);
        scrub(&mut ctx.findings, input, &literal, &[]);
        return (None, ctx.findings);
    }
    let mut spec = convert(&mut ctx, input, &root, inactive);
    // Literal secrets deployed under `literal_secrets: warn` are redacted like the host's, in
    // messages whether or not the stack converted.
    let literal = std::mem::take(&mut ctx.literal_values);
    if let Some(s) = spec.as_mut() {
        s.host_secrets.extend(literal.iter().cloned());
    }
    // The host secrets hold the `.env` values and those of the host files too.
    let host: &[Secret] = spec.as_ref().map_or(&literal, |s| &s.host_secrets);
    // The service names as the file writes them (never interpolated: refused raw above).
    let services: Vec<&str> = match raw.get("services").map(|n| &n.value) {
        Some(NodeValue::Map(entries)) => entries.iter().map(|(k, _)| k.as_str()).collect(),
        _ => Vec::new(),
    };
    scrub(&mut ctx.findings, input, host, &services);
    let spec = spec.filter(|_| ctx.findings.is_ok());
    // In file order (a committed env file's problems come after the compose file's).
    let order = |e: &SpecError| (e.file != input.file, e.file.clone(), e.line);
    ctx.findings.errors.sort_by_key(order);
    ctx.findings.warnings.sort_by_key(order);
    (spec, ctx.findings)
}

/// A `.env` holds settings as well as secrets (`COMPOSE_PROJECT_NAME=paperless`,
/// `SITE=frontend`): a setting whose value is part of a name gitmoor prints anyway — the stack's,
/// a service's, the compose file's path, the secrets dir's path — hides nothing there, and
/// blanking it garbled every message naming them (`<secrets_dir>/***-ngx.env`,
/// `services.***.build`). Only for messages about the spec, only for `.env` variables whose name
/// does not look secret (`is_secret_name`), never for host file contents: the redactor of
/// runtime output (engine errors, healthcheck and build output) keeps every value.
fn shown_anyway(name: &str, value: &str, input: &StackInput, services: &[&str]) -> bool {
    if interp::is_secret_name(name) {
        return false;
    }
    let dir = input
        .secrets_dir
        .map(|d| d.to_string_lossy())
        .unwrap_or_default();
    input.name.contains(value)
        || input.file.contains(value)
        || dir.contains(value)
        || services.iter().any(|s| s.contains(value))
}

/// Messages quote values (`` `99999` is not a port number``), and a value may have come from the
/// secrets file: replace every secret value of 4 characters or more by `***`, in messages, fixes
/// and keys (a setting that is part of a printed name is left alone, see `shown_anyway`).
fn scrub(findings: &mut Findings, input: &StackInput, host: &[Secret], services: &[&str]) {
    // `host` holds the `.env` values again (then the host files' contents): a setting left
    // alone here is left alone there too.
    let shown: BTreeSet<&str> = input
        .vars
        .vars
        .iter()
        .filter(|(name, v)| shown_anyway(name, v.expose(), input, services))
        .map(|(_, v)| v.expose())
        // A value a secret-named variable holds too stays a secret.
        .filter(|v| {
            !input
                .vars
                .vars
                .iter()
                .any(|(n, x)| interp::is_secret_name(n) && x.expose() == *v)
        })
        .collect();
    let mut secrets: Vec<&str> = input
        .vars
        .vars
        .values()
        .chain(host)
        .map(|s| s.expose())
        .filter(|v| v.chars().count() >= 4 && !shown.contains(v))
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
        // A key can hold an interpolated value too (`environment: ["${TOKEN}"]`).
        if let Some(key) = e.key.as_mut() {
            clean(key);
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

/// Services whose `profiles:` names none of the enabled profiles, with their profiles. Read from
/// the raw file (before interpolation), so that what they miss is only a warning.
fn inactive_services(raw: &Node, enabled: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if enabled.iter().any(|p| p == "*") {
        return out;
    }
    let Some(NodeValue::Map(services)) = raw.get("services").map(|s| &s.value) else {
        return out;
    };
    for (name, svc) in services {
        let Some(NodeValue::Seq(items)) = svc.get("profiles").map(|p| &p.value) else {
            continue;
        };
        let profiles: Vec<String> = items.iter().filter_map(|p| p.scalar_text()).collect();
        if !profiles.is_empty() && !profiles.iter().any(|p| enabled.contains(p)) {
            out.insert(name.clone(), profiles);
        }
    }
    out
}

fn convert(
    ctx: &mut Ctx,
    input: &StackInput,
    root: &Node,
    inactive: BTreeMap<String, Vec<String>>,
) -> Option<StackSpec> {
    let NodeValue::Map(entries) = &root.value else {
        return None;
    };
    let stack = input.name;
    let file_env = files::FileEnv {
        stack,
        snap: input.snap,
        bind_root: input.bind_root,
        secrets_dir: input.secrets_dir,
    };
    let mut services_node = None;
    let mut networks = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    let mut decl = service::Files::default();
    for (key, v) in entries {
        match key.as_str() {
            "version" => ctx.warn(v, key, "obsolete (compose v2 ignores it)", ctx::REMOVE_IT),
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
            "networks" => networks = top::top_networks(ctx, stack, v),
            "volumes" => volumes = top::top_volumes(ctx, stack, v),
            "secrets" => decl.secrets = files::declared(ctx, &file_env, files::Kind::Secret, v),
            "configs" => decl.configs = files::declared(ctx, &file_env, files::Kind::Config, v),
            "include" => top::include(ctx, v),
            k if ctx::is_extension(k) => {}
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
    let container_names: BTreeMap<String, String> = service_entries
        .iter()
        .map(|(name, node)| {
            let given = node.get("container_name").and_then(|n| n.as_str());
            let cname = given.map_or_else(|| default_container_name(stack, name), str::to_string);
            (name.clone(), cname)
        })
        .collect();
    // Services may use `default` without declaring it.
    let mut usable_networks = networks.clone();
    usable_networks
        .entry("default".to_string())
        .or_insert_with(|| top::default_network(stack));
    let volume_keys: BTreeMap<String, String> = volumes
        .iter()
        .map(|(k, v)| (k.clone(), v.name.clone()))
        .collect();
    let lenient_vars = input.vars.lenient();
    // Values of the env files read from the host (`<secrets_dir>/<stack>/…`): secrets.
    let host_values = std::cell::RefCell::new(Vec::new());
    let st = service::StackEnv {
        mounts: mounts::MountEnv {
            stack,
            snap: input.snap,
            bind_root: input.bind_root,
            data_dir: input.data_dir,
            declared_volumes: &volume_keys,
            home_dir: input.home_dir,
        },
        env: env::EnvEnv {
            stack,
            snap: input.snap,
            vars: input.vars,
            secrets_dir: input.secrets_dir,
            active: true,
            host_values: &host_values,
        },
        lenient_env: env::EnvEnv {
            stack,
            snap: input.snap,
            vars: &lenient_vars,
            secrets_dir: input.secrets_dir,
            active: false,
            host_values: &host_values,
        },
        build: buildspec::BuildEnv {
            stack,
            snap: input.snap,
            vars: input.vars,
        },
        services: &service_names,
        networks: &usable_networks,
        container_names: &container_names,
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
        let active = !inactive.contains_key(name);
        let svc = service::service(ctx, &st, &mut decl, name, node, active);
        services.insert(name.clone(), svc);
    }
    checks::container_names(ctx, services_node, &services, &container_names);
    checks::cycles(ctx, services_node, &services);
    checks::inactive_deps(ctx, services_node, &services, &inactive);
    checks::data_folders(ctx, services_node, &services);
    if let Some(p) = input.policy {
        // Every service of the file, whether its profiles run it here or not: the policy is
        // about what the repo may ask of a host.
        let env = PolicyEnv {
            stack,
            bind_root: input.bind_root,
            secrets_dir: input.secrets_dir,
            home_dir: input.home_dir,
        };
        let refused = policy::check_stack(input.file, p, &env, root, &services, &volumes);
        ctx.findings.errors.extend(refused);
    }
    services.retain(|name, _| !inactive.contains_key(name));
    if services.is_empty() && !service_entries.is_empty() {
        ctx.warn(
            services_node,
            "services",
            "no service runs: every service has a profile that is not enabled",
            "enable one of their profiles in gitmoor's config",
        );
    }
    if services
        .values()
        .any(|s| s.networks.contains_key("default"))
        && !networks.contains_key("default")
    {
        networks.insert("default".to_string(), top::default_network(stack));
    }
    Some(StackSpec {
        name: stack.to_string(),
        compose_file: input.file.to_string(),
        services,
        networks,
        volumes,
        has_secrets_file: input.vars.has_secrets_file,
        inactive_services: inactive,
        host_secrets: input
            .vars
            .vars
            .values()
            .cloned()
            .chain(decl.secrets.secret_contents().map(Secret))
            .chain(host_values.take())
            .collect(),
    })
}
