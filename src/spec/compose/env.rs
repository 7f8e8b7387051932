//! A service's environment: `env_file:` first (the stack's secrets file for `.env`, repo files
//! otherwise, and a file absent from the commit from the stack's folder of the secrets dir,
//! `<secrets_dir>/<stack>/<path>`: see hostfiles.rs), then `environment:` on top.

use super::ctx::{valid_stack_name, Ctx};
use super::hostfiles::{inside_parts, read_host_file, HostFileError, ENV_FILE_MAX_BYTES};
use super::interp::{is_literal_value, is_secret_name, literal_secret, missing_var, StackVars};
use super::mounts::normalize;
use super::names::{valid_var_name, NAME_RULE};
use crate::source::snapshot::Snapshot;
use crate::spec::dotenv::parse_dotenv;
use crate::spec::model::{Secret, ServiceSpec};
use crate::spec::yaml::{Node, NodeValue};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) struct EnvEnv<'a> {
    pub stack: &'a str,
    pub snap: &'a Snapshot,
    pub vars: &'a StackVars,
    /// Where env files absent from the commit are read (`<secrets_dir>/<stack>/`); None when
    /// not checked (validate without `--secrets`): a warning names the path instead.
    pub secrets_dir: Option<&'a Path>,
    /// The service runs: a host env file of a service left out by its profiles is not read.
    pub active: bool,
    /// The values read from host env files, for the stack's redactor.
    pub host_values: &'a RefCell<Vec<Secret>>,
}

/// `env_file:` as a string, a list of strings, or a list of `{path, required}`.
pub(crate) fn env_files(
    ctx: &mut Ctx,
    env: &EnvEnv,
    node: &Node,
    key: &str,
    svc: &mut ServiceSpec,
) {
    let items: Vec<&Node> = match &node.value {
        NodeValue::Seq(items) => items.iter().collect(),
        NodeValue::Null => Vec::new(),
        _ => vec![node],
    };
    let many = matches!(node.value, NodeValue::Seq(_));
    for (i, item) in items.into_iter().enumerate() {
        let k = if many {
            format!("{key}[{i}]")
        } else {
            key.to_string()
        };
        let (path, required) = match &item.value {
            NodeValue::Map(entries) => {
                let mut path = None;
                let mut required = true;
                for (ek, ev) in entries {
                    let sub = format!("{k}.{ek}");
                    match ek.as_str() {
                        "path" => path = ctx.string(ev, &sub),
                        "required" => required = ctx.bool(ev, &sub).unwrap_or(true),
                        "format" => ctx.not_yet(ev, &sub),
                        _ => ctx.unsupported(ev, &sub),
                    }
                }
                let Some(path) = path else {
                    ctx.error(item, &k, "missing path", "add path: ./app.env");
                    continue;
                };
                (path, required)
            }
            _ => match ctx.string(item, &k) {
                Some(p) => (p, true),
                None => continue,
            },
        };
        one_env_file(ctx, env, item, &k, &path, required, svc);
    }
}

fn one_env_file(
    ctx: &mut Ctx,
    env: &EnvEnv,
    item: &Node,
    key: &str,
    path: &str,
    required: bool,
    svc: &mut ServiceSpec,
) {
    if path == ".env" || path == "./.env" {
        match (&env.vars.secrets_file, env.vars.has_secrets_file) {
            (Some(_), true) => svc
                .environment
                .extend(env.vars.vars.iter().map(|(k, v)| (k.clone(), v.clone()))),
            (Some(file), false) if required => ctx.error(
                item,
                key,
                format!("`.env` is the stack's secrets file {file}, which does not exist"),
                &format!("create {file}, or remove this env_file entry"),
            ),
            _ => {}
        }
        return;
    }
    if path.starts_with('/') {
        ctx.error(
            item,
            key,
            format!("`{path}`: an absolute env_file path is not supported"),
            &format!("commit the file next to the compose file, or keep it on the host in <secrets_dir>/{}/ and write its path relative to the stack folder", env.stack),
        );
        return;
    }
    let Some(parts) = normalize(&["compose", env.stack], path) else {
        ctx.error(
            item,
            key,
            format!("`{path}` leaves the repo"),
            "fix the path",
        );
        return;
    };
    let repo_path = parts.join("/");
    let Some(entry) = env.snap.get(&repo_path) else {
        host_env_file(ctx, env, item, key, path, &repo_path, required, svc);
        return;
    };
    if entry.symlink {
        ctx.error(
            item,
            key,
            format!("`{path}` is a symlink"),
            "commit the file itself",
        );
        return;
    }
    let Ok(text) = std::str::from_utf8(&entry.data) else {
        ctx.error(item, key, format!("`{path}` is not UTF-8 text"), "");
        return;
    };
    match parse_dotenv(text, &repo_path) {
        Ok(vars) => {
            check_env_file_secrets(ctx, &repo_path, text, &vars, env.stack);
            svc.environment.extend(vars);
        }
        Err(e) => {
            // Nothing deploys, but a password committed there is said all the same.
            check_env_file_secrets(ctx, &repo_path, text, &raw_pairs(text), env.stack);
            ctx.findings.errors.push(e);
        }
    }
    if let Some(hash) = env.snap.content_id(&repo_path) {
        svc.repo_inputs.insert(path.to_string(), hash);
    }
}

/// An env file absent from the commit: `<secrets_dir>/<stack>/<path>` on the host. Its values are
/// secrets (and go to the redactor); its content hash, keyed by its host path, goes into
/// `repo_inputs`, so an edit recreates exactly the services that read it.
#[allow(clippy::too_many_arguments)]
fn host_env_file(
    ctx: &mut Ctx,
    env: &EnvEnv,
    item: &Node,
    key: &str,
    path: &str,
    repo_path: &str,
    required: bool,
    svc: &mut ServiceSpec,
) {
    let stack = env.stack;
    let Some(parts) = inside_parts(path) else {
        // `../shared.env`: a repo path outside the stack folder, which has no host place.
        if required {
            ctx.error(
                item,
                key,
                format!("`{path}` does not exist in the repo ({repo_path})"),
                &format!("commit the file, or keep it on the host in <secrets_dir>/{stack}/ and write its path relative to the stack folder (no `..`), or mark it `required: false`"),
            );
        }
        return;
    };
    // A service its profiles leave out needs nothing; a stack name that is not one (already an
    // error) names no folder.
    if !env.active || !valid_stack_name(stack) {
        return;
    }
    let rel = parts.join("/");
    let Some(dir) = env.secrets_dir else {
        let host = format!("<secrets_dir>/{stack}/{rel}");
        let when = if required { "" } else { " if it exists" };
        ctx.warn(
            item,
            key,
            format!("`{path}` is not in the repo ({repo_path}): it is read from the host, {host}{when} (no secrets dir given, so it is not checked)"),
            &format!("make sure {host} exists on the host, or commit {repo_path}"),
        );
        return;
    };
    let file = match read_host_file(dir, stack, &rel, Some(ENV_FILE_MAX_BYTES)) {
        Ok(f) => f,
        Err(HostFileError::Missing { .. }) if !required => return,
        Err(e) => {
            let (message, fix) = e.describe("env file", stack);
            let fix = match e {
                HostFileError::Missing { .. } => {
                    format!("{fix} (files kept off Git live in <secrets_dir>/{stack}/), commit {repo_path}, or mark it `required: false`")
                }
                _ => fix,
            };
            ctx.error(
                item,
                key,
                format!("`{path}` is not in the repo ({repo_path}) and {message}"),
                &fix,
            );
            return;
        }
    };
    let Ok(text) = std::str::from_utf8(&file.data) else {
        ctx.error(
            item,
            key,
            format!("the env file {} is not UTF-8 text", file.shown),
            "save it as UTF-8",
        );
        return;
    };
    match parse_dotenv(text, &file.shown) {
        Ok(vars) => {
            env.host_values.borrow_mut().extend(vars.values().cloned());
            svc.environment.extend(vars);
        }
        Err(e) => {
            ctx.findings.errors.push(e);
            return;
        }
    }
    // Hashed with its path, so two stacks' identical files differ; only the hash is kept.
    let mut h = Sha256::new();
    h.update(b"gitmoor host env file\0");
    h.update(file.shown.as_bytes());
    h.update([0]);
    h.update(&file.data);
    svc.repo_inputs
        .insert(file.shown, hex::encode(&h.finalize()[..10]));
}

/// A committed env file holding a literal secret (`DB_PASSWORD=hunter2`). The values are the
/// parser's (`parsed`), so the one deployed under `literal_secrets: warn` is the one redacted,
/// whatever the line's form (`KEY: v`, quotes, a trailing `# comment`); the raw line only says
/// where it is and whether it was interpolated (`${X}` there is not a literal).
fn check_env_file_secrets(
    ctx: &mut Ctx,
    repo_path: &str,
    text: &str,
    parsed: &BTreeMap<String, Secret>,
    stack: &str,
) {
    for (k, value) in parsed {
        if !is_secret_name(k) {
            continue;
        }
        let Some((line, raw)) = defining_line(text, k) else {
            continue;
        };
        if raw.contains('$') || !is_literal_value(value.expose()) {
            continue;
        }
        let mut file_ctx = Ctx::new(repo_path);
        file_ctx.literal_secrets = ctx.literal_secrets;
        let at = Node::new(line, 1, NodeValue::Null);
        literal_secret(&mut file_ctx, &at, k, (k, value.expose()), stack);
        ctx.findings.extend(file_ctx.findings);
        ctx.literal_values.append(&mut file_ctx.literal_values);
    }
}

/// `KEY=value` (or `KEY: value`) pairs as written, quotes trimmed: for a file the parser refused.
fn raw_pairs(text: &str) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        out.insert(k.trim().to_string(), Secret(v.to_string()));
    }
    out
}

/// The 1-based line that last sets `key` in an env file (`[export ]KEY=…` or `KEY: …`; the last
/// one wins, as in the parser) and the raw text after its separator.
fn defining_line<'t>(text: &'t str, key: &str) -> Option<(u64, &'t str)> {
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some(rest) = line.strip_prefix(key) else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(raw) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) {
            found = Some((i as u64 + 1, raw));
        }
    }
    found
}

/// `environment:` as a mapping or a list of `KEY=VALUE`; a bare `KEY` (or `KEY:` with no value)
/// takes the value of the stack variable of that name.
pub(crate) fn environment(
    ctx: &mut Ctx,
    env: &EnvEnv,
    node: &Node,
    key: &str,
    svc: &mut ServiceSpec,
) {
    let mut set = |ctx: &mut Ctx, at: &Node, k: &str, v: Option<String>, seen: &mut Vec<String>| {
        let sub = format!("{key}.{k}");
        if !valid_var_name(k) {
            ctx.error(
                at,
                &sub,
                format!("`{k}` is not a valid variable name"),
                NAME_RULE,
            );
            return;
        }
        if seen.iter().any(|s| s == k) {
            ctx.error(at, &sub, format!("{k} is set twice"), "keep one");
            return;
        }
        seen.push(k.to_string());
        let value = match v {
            Some(v) => v,
            None => match env.vars.lookup(k) {
                Some(v) => v,
                None => {
                    missing_var(ctx, at, &sub, k, env.vars, env.stack);
                    return;
                }
            },
        };
        svc.environment.insert(k.to_string(), Secret(value));
    };
    let mut seen = Vec::new();
    match &node.value {
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                let value = match &v.value {
                    NodeValue::Null => None,
                    _ => match ctx.string(v, &format!("{key}.{k}")) {
                        Some(s) => Some(s),
                        None => continue,
                    },
                };
                set(ctx, v, k, value, &mut seen);
            }
        }
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let Some(s) = ctx.string(item, &format!("{key}[{i}]")) else {
                    continue;
                };
                match s.split_once('=') {
                    Some((k, v)) => set(ctx, item, k, Some(v.to_string()), &mut seen),
                    None => set(ctx, item, &s, None, &mut seen),
                }
            }
        }
        NodeValue::Null => {}
        _ => {
            ctx.error(
                node,
                key,
                format!(
                    "expected a mapping or a list of KEY=VALUE, found {}",
                    node.kind()
                ),
                "",
            );
        }
    }
}
