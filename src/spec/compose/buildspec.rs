//! `build:` (a context path, or a mapping with `context`, `dockerfile`, `args`, `target`,
//! `labels`) and `pull_policy:`.
//!
//! The context is a folder of the managed repo (relative to the stack folder, as in compose) that
//! must exist in the commit; the deployer sends it from the commit's tree. It may be outside the
//! stack folder (`../../app` for a repo that holds the app's source), never outside the repo, and
//! never `compose/` itself (every stack's files: what `context: ..` gives a file that its project
//! kept in a sub-folder of its source). Its content id is the
//! cache key: the image is rebuilt exactly when a file in the context (or an arg) changes.

use super::ctx::{is_extension, Ctx};
use super::interp::StackVars;
use super::mounts::normalize;
use super::names::{label_map, valid_var_name, NAME_RULE};
use crate::source::snapshot::Snapshot;
use crate::spec::model::{BuildSpec, PullPolicy, Secret};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::BTreeMap;

pub(crate) struct BuildEnv<'a> {
    pub stack: &'a str,
    pub snap: &'a Snapshot,
    pub vars: &'a StackVars,
}

/// The tag compose v2 gives a built image when `image:` names none: `<stack>-<service>`.
pub(crate) fn default_image(stack: &str, service: &str) -> String {
    format!("{stack}-{service}:latest").to_ascii_lowercase()
}

pub(crate) fn build(ctx: &mut Ctx, env: &BuildEnv, node: &Node, key: &str) -> Option<BuildSpec> {
    let mut context = None;
    let mut dockerfile = None;
    let mut spec = BuildSpec::default();
    match &node.value {
        NodeValue::Map(entries) => {
            for (k, n) in entries {
                let sub = format!("{key}.{k}");
                match k.as_str() {
                    "context" => context = ctx.string(n, &sub).map(|c| (c, n)),
                    "dockerfile" => dockerfile = ctx.string(n, &sub).map(|d| (d, n)),
                    "args" => spec.args = args(ctx, env, n, &sub),
                    "target" => spec.target = ctx.string(n, &sub).filter(|t| !t.is_empty()),
                    "labels" => spec.labels = label_map(ctx, n, &sub),
                    "dockerfile_inline" => ctx.error(
                        n,
                        &sub,
                        "not supported yet",
                        "commit the Dockerfile in the context folder and name it with dockerfile:",
                    ),
                    "cache_from"
                    | "cache_to"
                    | "network"
                    | "shm_size"
                    | "extra_hosts"
                    | "ssh"
                    | "secrets"
                    | "platforms"
                    | "tags"
                    | "no_cache"
                    | "pull"
                    | "isolation"
                    | "privileged"
                    | "additional_contexts"
                    | "ulimits"
                    | "entitlements"
                    | "provenance"
                    | "sbom" => ctx.error(
                        n,
                        &sub,
                        "not supported yet (gitmoor builds with the engine's classic builder)",
                        "remove it",
                    ),
                    k if is_extension(k) => {}
                    _ => ctx.unsupported(n, &sub),
                }
            }
        }
        NodeValue::Null => {
            ctx.error(node, key, "empty", "write build: <context folder>");
            return None;
        }
        _ => context = ctx.string(node, key).map(|c| (c, node)),
    }
    let (context, at) = context.unwrap_or_else(|| (".".to_string(), node));
    let ctx_key = if matches!(node.value, NodeValue::Map(_)) {
        format!("{key}.context")
    } else {
        key.to_string()
    };
    let parts = context_parts(ctx, env, &context, at, &ctx_key)?;
    spec.context = parts.join("/");
    let shown = if spec.context.is_empty() {
        ".".to_string()
    } else {
        spec.context.clone()
    };
    let (file, file_at) = dockerfile.unwrap_or_else(|| ("Dockerfile".to_string(), node));
    let file_key = format!("{key}.dockerfile");
    if file.starts_with('/') {
        ctx.error(
            file_at,
            &file_key,
            format!("`{file}`: the Dockerfile must be a path inside the build context"),
            "write its path relative to the context",
        );
        return None;
    }
    let base: Vec<&str> = parts.iter().map(String::as_str).collect();
    let inside =
        normalize(&base, &file).filter(|p| p.len() > parts.len() && p[..parts.len()] == parts[..]);
    let Some(file_parts) = inside else {
        ctx.error(
            file_at,
            &file_key,
            format!("`{file}` leaves the build context {shown}"),
            "move the Dockerfile into the context folder",
        );
        return None;
    };
    let file_path = file_parts.join("/");
    match env.snap.get(&file_path) {
        Some(f) if !f.symlink => {}
        Some(_) => {
            ctx.error(
                file_at,
                &file_key,
                format!("`{file}` is a symlink ({file_path})"),
                "commit the Dockerfile itself",
            );
            return None;
        }
        None => {
            ctx.error(
                file_at,
                &file_key,
                format!(
                    "no `{file}` in the build context `{context}` ({file_path} is not in the repo)"
                ),
                "commit the Dockerfile, or name it with dockerfile:",
            );
            return None;
        }
    }
    spec.dockerfile = file_parts[parts.len()..].join("/");
    spec.context_tree = env.snap.content_id(&spec.context).unwrap_or_default();
    Some(spec)
}

/// The context as repo path components; errors name why it cannot be one.
fn context_parts(
    ctx: &mut Ctx,
    env: &BuildEnv,
    context: &str,
    at: &Node,
    key: &str,
) -> Option<Vec<String>> {
    let remote = context.contains("://")
        || context.starts_with("git@")
        || context.starts_with("github.com/");
    if remote {
        ctx.error(
            at,
            key,
            format!("`{context}`: a remote build context is not supported"),
            "commit the context folder to the managed repo and give its path",
        );
        return None;
    }
    if context.starts_with('/') || context.starts_with('~') {
        ctx.error(
            at,
            key,
            format!("`{context}`: the build context must be a folder of the managed repo"),
            "write its path relative to the stack folder (e.g. ./app)",
        );
        return None;
    }
    let Some(parts) = normalize(&["compose", env.stack], context) else {
        ctx.error(
            at,
            key,
            format!("`{context}` leaves the repo"),
            "the build context must be a folder of the managed repo",
        );
        return None;
    };
    // `context: ..` in a file a project keeps in a sub-folder of its source (docker/) meant that
    // source tree; here it is the folder of every stack, which holds no project.
    if parts == ["compose"] {
        ctx.error(
            at,
            key,
            format!("`{context}` is compose/, the folder that holds every stack, not a project's source folder (where this file comes from, `{context}` was the project's source tree)"),
            "commit the source the Dockerfile needs to a folder of this repo and write its path as context: (e.g. ./src, or ../../app for app/ at the repo root), or remove build: and run the project's published image with image:",
        );
        return None;
    }
    let path = parts.join("/");
    if env.snap.get(&path).is_some() {
        ctx.error(
            at,
            key,
            format!("`{context}` is a file ({path}), not a folder"),
            "name the folder that holds the Dockerfile",
        );
        return None;
    }
    if !env.snap.exists(&path) {
        ctx.error(
            at,
            key,
            format!("the build context `{context}` does not exist in the repo ({path})"),
            "commit the folder, or fix the path",
        );
        return None;
    }
    Some(parts)
}

/// `args:` as a mapping or a list of `NAME=value`; a bare `NAME` (or `NAME:` with no value)
/// takes the stack variable of that name, and is left out when there is none (as compose does).
fn args(ctx: &mut Ctx, env: &BuildEnv, node: &Node, key: &str) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    let mut put = |ctx: &mut Ctx, at: &Node, k: &str, v: Option<String>| {
        if !valid_var_name(k) {
            ctx.error(
                at,
                &format!("{key}.{k}"),
                format!("`{k}` is not a valid build arg name"),
                NAME_RULE,
            );
            return;
        }
        if let Some(v) = v.or_else(|| env.vars.lookup(k)) {
            out.insert(k.to_string(), Secret(v));
        }
    };
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
                put(ctx, v, k, value);
            }
        }
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let Some(s) = ctx.string(item, &format!("{key}[{i}]")) else {
                    continue;
                };
                match s.split_once('=') {
                    Some((k, v)) => put(ctx, item, k, Some(v.to_string())),
                    None => put(ctx, item, &s, None),
                }
            }
        }
        NodeValue::Null => {}
        _ => ctx.error(
            node,
            key,
            format!(
                "expected a mapping or a list of NAME=value, found {}",
                node.kind()
            ),
            "",
        ),
    }
    out
}

pub(crate) fn pull_policy(ctx: &mut Ctx, v: &Node, k: &str) -> Option<PullPolicy> {
    let s = ctx.string(v, k)?;
    match s.as_str() {
        "always" => Some(PullPolicy::Always),
        "missing" | "if_not_present" => Some(PullPolicy::Missing),
        "never" => Some(PullPolicy::Never),
        "build" => Some(PullPolicy::Build),
        other => {
            ctx.error(
                v,
                k,
                format!("unknown pull policy `{other}`"),
                "use always, missing, never or build",
            );
            None
        }
    }
}
