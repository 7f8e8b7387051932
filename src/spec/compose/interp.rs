//! The steps between parsing and conversion: the literal-secret check (on the raw text), then
//! interpolation of every string value with the stack's variables.

use super::ctx::Ctx;
use crate::spec::interpolate::{interpolate, interpolate_detailed, InterpolateFailure};
use crate::spec::model::Secret;
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// The variables of one stack, and whether they were checked against a secrets file.
pub struct StackVars {
    pub vars: BTreeMap<String, Secret>,
    /// Strict mode: the path of `<secrets_dir>/<stack>.env` (whether it exists or not). A missing
    /// variable is then an error; without a secrets dir it is a warning.
    pub secrets_file: Option<String>,
    /// Whether the secrets file exists.
    pub has_secrets_file: bool,
}

impl StackVars {
    /// No secrets dir: variables are not checked (`gitmoor validate` in CI).
    pub fn unchecked() -> StackVars {
        StackVars {
            vars: BTreeMap::new(),
            secrets_file: None,
            has_secrets_file: false,
        }
    }

    pub fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|s| s.expose().to_string())
    }

    /// The same variables, with a missing one a warning rather than an error: for services left
    /// out by their profiles, which never run with these values.
    pub(crate) fn lenient(&self) -> StackVars {
        StackVars {
            vars: self.vars.clone(),
            secrets_file: None,
            has_secrets_file: self.has_secrets_file,
        }
    }
}

/// Key names whose value is a secret (matched case-insensitively, anywhere in the name).
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "PRIVATE_KEY",
];

/// Names that hold a secret, except `*_FILE`: by the Docker-image convention those hold the
/// path of a file with the secret (`POSTGRES_PASSWORD_FILE: /run/secrets/db`), not the secret.
pub(crate) fn is_secret_name(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    !upper.ends_with("_FILE") && SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// What a literal secret in a committed compose or env file is (`literal_secrets:` in the
/// config). Refused by default: secrets do not go into Git, and a deploy would make the leak look
/// normal. `warn` is for the files self-hosted projects ship with placeholder values
/// (`POSTGRES_PASSWORD: changeme`) that a team chooses to deploy as they are: each is said on
/// every validate and plan, and the value is still kept out of every message, log and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiteralSecrets {
    #[default]
    Refuse,
    Warn,
}

/// The finding for a literal secret; never quotes the value, which (deployed under `warn`) is
/// kept with the stack's secrets so that runtime output is redacted of it too.
pub(crate) fn literal_secret(
    ctx: &mut Ctx,
    node: &Node,
    key: &str,
    (var, value): (&str, &str),
    stack: &str,
) {
    let fix = format!(
        "move the value to <secrets_dir>/{stack}.env and write {var}: ${{{var}}} (and rotate it: it is in the Git history)"
    );
    match ctx.literal_secrets {
        LiteralSecrets::Refuse => ctx.error(node, key, "literal secret in a committed file", &fix),
        LiteralSecrets::Warn => {
            ctx.warn(
                node,
                key,
                "literal secret in a committed file, deployed as written (literal_secrets: warn)",
                &fix,
            );
            ctx.literal_values.push(Secret(value.to_string()));
        }
    }
}

/// A value written in the file that would be the secret itself: not empty, not interpolated, not
/// the path of a mounted secret file (`/run/secrets/db-password`), and not a flag
/// (`MARIADB_RANDOM_ROOT_PASSWORD: "yes"`, `ALLOW_EMPTY_PASSWORD: true`).
pub(crate) fn is_literal_value(raw: &str) -> bool {
    let flag = matches!(
        raw.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "0" | "1"
    );
    !raw.is_empty() && !raw.contains('$') && !raw.starts_with("/run/secrets/") && !flag
}

/// Refuses `environment:` entries and build `args:` that look like secrets and hold a literal
/// value.
pub(crate) fn check_literal_secrets(ctx: &mut Ctx, root: &Node, stack: &str) {
    let Some(NodeValue::Map(services)) = root.get("services").map(|s| &s.value) else {
        return;
    };
    for (name, svc) in services {
        if let Some(env) = svc.get("environment") {
            check_pairs(ctx, env, &format!("services.{name}.environment"), stack);
        }
        if let Some(args) = svc.get("build").and_then(|b| b.get("args")) {
            check_pairs(ctx, args, &format!("services.{name}.build.args"), stack);
        }
    }
}

fn check_pairs(ctx: &mut Ctx, node: &Node, base: &str, stack: &str) {
    match &node.value {
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                let raw = v.scalar_text().unwrap_or_default();
                if is_secret_name(k) && is_literal_value(&raw) {
                    literal_secret(ctx, v, &format!("{base}.{k}"), (k, &raw), stack);
                }
            }
        }
        NodeValue::Seq(items) => {
            for item in items {
                let Some(text) = item.as_str() else { continue };
                let Some((k, raw)) = text.split_once('=') else {
                    continue;
                };
                if is_secret_name(k) && is_literal_value(raw) {
                    literal_secret(ctx, item, &format!("{base}.{k}"), (k, raw), stack);
                }
            }
        }
        _ => {}
    }
}

/// Reports a variable that is not set: an error in strict mode, else a warning.
pub(crate) fn missing_var(
    ctx: &mut Ctx,
    node: &Node,
    key: &str,
    var: &str,
    vars: &StackVars,
    stack: &str,
) {
    match &vars.secrets_file {
        Some(file) => ctx.error(
            node,
            key,
            format!("variable {var} is not set"),
            &format!("add {var}=... to {file}"),
        ),
        None => ctx.warn(
            node,
            key,
            format!("variable {var} is not set here (no secrets dir given, so it is not checked)"),
            &format!("make sure the host's <secrets_dir>/{stack}.env sets it"),
        ),
    }
}

/// Interpolates every string value (not keys). `x-*` extensions are dropped at the levels where
/// compose allows them (the root, the `services`/`networks`/`volumes` mappings and each entry of
/// them): they are ignored anyway, and what they share through anchors is interpolated where it
/// is used.
///
/// Services in `inactive` (left out by their profiles) are interpolated with `lenient` variables:
/// a variable they miss is a warning.
pub(crate) fn interpolate_tree(
    ctx: &mut Ctx,
    root: &Node,
    vars: &StackVars,
    stack: &str,
    inactive: &BTreeSet<String>,
) -> Node {
    let mut seen = BTreeSet::new();
    let lenient = vars.lenient();
    let mut it = Interp {
        ctx,
        vars,
        stack,
        seen: &mut seen,
        lenient: false,
    };
    let NodeValue::Map(entries) = &root.value else {
        return it.node(root, "");
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        if k.starts_with("x-") {
            continue;
        }
        let value = match (&v.value, k.as_str()) {
            (
                NodeValue::Map(children),
                "services" | "networks" | "volumes" | "secrets" | "configs",
            ) => {
                let mut cs = Vec::new();
                for (ck, cv) in children.iter().filter(|(ck, _)| !ck.starts_with("x-")) {
                    let path = format!("{k}.{ck}");
                    let off = k == "services" && inactive.contains(ck);
                    if off {
                        it.vars = &lenient;
                        it.lenient = true;
                    }
                    cs.push((ck.clone(), it.without_extensions(cv, &path)));
                    it.vars = vars;
                    it.lenient = false;
                }
                Node::new(v.line, v.col, NodeValue::Map(cs))
            }
            _ => it.node(v, k),
        };
        out.push((k.clone(), value));
    }
    Node::new(root.line, root.col, NodeValue::Map(out))
}

struct Interp<'c, 'a, 'v> {
    ctx: &'c mut Ctx<'a>,
    vars: &'v StackVars,
    stack: &'v str,
    /// (variable, line, lenient) already reported: one report per variable and line, kept
    /// apart for the services left out by their profiles (a warning there must not hide the
    /// error of an active service written on the same line, as flow style allows).
    seen: &'c mut BTreeSet<(String, u64, bool)>,
    /// Interpolating a service left out by its profiles (`vars` is then lenient).
    lenient: bool,
}

impl Interp<'_, '_, '_> {
    fn without_extensions(&mut self, node: &Node, path: &str) -> Node {
        match &node.value {
            NodeValue::Map(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    if !k.starts_with("x-") {
                        out.push((k.clone(), self.node(v, &format!("{path}.{k}"))));
                    }
                }
                Node::new(node.line, node.col, NodeValue::Map(out))
            }
            _ => self.node(node, path),
        }
    }

    fn node(&mut self, node: &Node, path: &str) -> Node {
        let value = match &node.value {
            NodeValue::Str(s) => NodeValue::Str(self.string(node, path, s)),
            NodeValue::Seq(items) => NodeValue::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.node(n, &format!("{path}[{i}]")))
                    .collect(),
            ),
            NodeValue::Map(entries) => NodeValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), self.node(v, &format!("{path}.{k}"))))
                    .collect(),
            ),
            other => other.clone(),
        };
        Node::new(node.line, node.col, value)
    }

    fn string(&mut self, node: &Node, path: &str, s: &str) -> String {
        if !s.contains('$') {
            return s.to_string();
        }
        let vars = self.vars;
        self.ctx.value_interpolated(node);
        match interpolate_detailed(s, &|name| vars.lookup(name)) {
            Ok(done) => {
                // A value with a variable that is not set is not the host's: reported once
                // (below), and not judged as a whole (an image reference) on top.
                if !done.missing.is_empty() {
                    self.ctx.value_unchecked(node);
                }
                for var in done.missing {
                    if self.seen.insert((var.clone(), node.line, self.lenient)) {
                        missing_var(self.ctx, node, path, &var, vars, self.stack);
                    }
                }
                done.value
            }
            Err(failure @ InterpolateFailure::MissingRequired { .. })
                if vars.secrets_file.is_none() =>
            {
                // Unchecked mode: `${VAR:?msg}` fails only because no variable is known here.
                self.ctx.value_unchecked(node);
                self.ctx.warn(
                    node,
                    path,
                    format!(
                        "{} (no secrets dir given, so it is not checked)",
                        failure.to_error(s)
                    ),
                    &format!(
                        "make sure the host's <secrets_dir>/{}.env sets it",
                        self.stack
                    ),
                );
                interpolate(s, &|_| Some("unchecked".to_string()))
                    .map(|d| d.value)
                    .unwrap_or_default()
            }
            Err(failure @ InterpolateFailure::MissingRequired { .. }) => {
                let fix = match (&vars.secrets_file, &failure) {
                    (Some(f), InterpolateFailure::MissingRequired { variable, .. }) => {
                        format!("add {variable}=... to {f}")
                    }
                    _ => String::new(),
                };
                self.ctx
                    .error(node, path, failure.to_error(s).to_string(), &fix);
                self.ctx.interpolation_failed(node);
                String::new()
            }
            Err(failure) => {
                self.ctx
                    .error(node, path, failure.to_error(s).to_string(), "");
                self.ctx.interpolation_failed(node);
                String::new()
            }
        }
    }
}
