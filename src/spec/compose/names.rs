//! The names a compose file gives to environment variables, build args and labels.
//!
//! A name is never secret: it is shown in plans and logs, and it is a key of the fingerprint label
//! (`environment.GREETING`). So a name must be written in the file, never interpolated: with
//! `environment: ["${API_KEY}"]` the secret itself would become the variable's name (a base64 key
//! ending in `=` even splits into a name and a value), and land in clear in labels, recreate
//! reasons, `/status` and `state.json`. The refusal happens on the raw file, before interpolation,
//! so its message can only quote what the commit wrote, never a value of the secrets file.

use super::ctx::Ctx;
use crate::spec::yaml::{Node, NodeValue};
use std::collections::BTreeMap;

/// The fix of a bad variable or arg name.
pub(crate) const NAME_RULE: &str =
    "a name is letters, digits, `_`, `.` and `-`, starting with a letter or `_`";

/// `[A-Za-z_][A-Za-z0-9_.-]*`: an environment variable or build arg name (compose's rule, the same
/// as the secrets file's). Dots and dashes are there for images that read
/// `discovery.type` or `bootstrap.memory_lock`.
pub(crate) fn valid_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What a label key may hold: reverse-DNS keys (`com.example.foo`, `traefik.http.routers.go.rule`)
/// and what real label schemes add to them (`/` as in `app.kubernetes.io/name`, `[0]` as in
/// traefik's `tls.domains[0].main`, `@` as in caddy-docker-proxy's `caddy.@ws.header`, `:`).
/// Never a space, a quote, `=`, `$` or a control character.
pub(crate) fn valid_label_key(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 256
        && chars.all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '@' | '[' | ']' | ':')
        })
}

/// `labels:` as a mapping or a list of `key=value`, refusing a key that is not a label key.
pub(crate) fn label_map(ctx: &mut Ctx, node: &Node, key: &str) -> BTreeMap<String, String> {
    let labels = ctx.string_map(node, key);
    for k in labels.keys().filter(|k| !valid_label_key(k)) {
        ctx.error(
            entry_node(node, k),
            &format!("{key}.{k}"),
            format!("`{k}` is not a valid label key"),
            "a label key is letters, digits and `_ . - / @ [ ] :`, starting with a letter, digit or `_` (com.example.name)",
        );
    }
    labels
}

/// The node of entry `name` of a mapping-or-list, for its line; the whole node when not found.
fn entry_node<'n>(node: &'n Node, name: &str) -> &'n Node {
    let found = match &node.value {
        NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == name).map(|(_, v)| v),
        NodeValue::Seq(items) => items.iter().find(|item| {
            item.scalar_text()
                .is_some_and(|t| t.split_once('=').map_or(t.as_str(), |(k, _)| k) == name)
        }),
        _ => None,
    };
    found.unwrap_or(node)
}

/// The kinds of names: what the messages call them.
#[derive(Clone, Copy)]
enum Kind {
    Variable,
    Arg,
    Label,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Variable => "variable",
            Kind::Arg => "build arg",
            Kind::Label => "label",
        }
    }
}

/// Refuses, on the raw file, every environment variable, build arg or label whose name holds a
/// `$` (in the key part of a list entry, `- ${X}=1` or `- ${X}`, or a mapping key), and drops it
/// from the tree, so that interpolation and conversion never see it and no later message can
/// quote what it would have become.
pub(crate) fn refuse_interpolated_names(ctx: &mut Ctx, root: &mut Node) {
    let NodeValue::Map(top) = &mut root.value else {
        return;
    };
    for (section, objects) in top.iter_mut() {
        let NodeValue::Map(objects) = &mut objects.value else {
            continue;
        };
        for (name, object) in objects.iter_mut() {
            let NodeValue::Map(fields) = &mut object.value else {
                continue;
            };
            let base = format!("{section}.{name}");
            for (field, node) in fields.iter_mut() {
                let kind = match (section.as_str(), field.as_str()) {
                    ("services", "environment") => Kind::Variable,
                    ("services" | "networks" | "volumes", "labels") => Kind::Label,
                    ("services", "build") => {
                        build_names(ctx, node, &format!("{base}.build"));
                        continue;
                    }
                    _ => continue,
                };
                names_of(ctx, node, &format!("{base}.{field}"), kind);
            }
        }
    }
}

fn build_names(ctx: &mut Ctx, build: &mut Node, base: &str) {
    let NodeValue::Map(fields) = &mut build.value else {
        return;
    };
    for (field, node) in fields.iter_mut() {
        let kind = match field.as_str() {
            "args" => Kind::Arg,
            "labels" => Kind::Label,
            _ => continue,
        };
        names_of(ctx, node, &format!("{base}.{field}"), kind);
    }
}

/// One mapping-or-list of names (`environment:`, `labels:`, `args:`).
fn names_of(ctx: &mut Ctx, node: &mut Node, key: &str, kind: Kind) {
    match &mut node.value {
        NodeValue::Map(entries) => entries.retain(|(name, value)| {
            let bad = name.contains('$');
            if bad {
                refuse(ctx, value, &format!("{key}.{name}"), name, kind);
            }
            !bad
        }),
        NodeValue::Seq(items) => {
            let mut i = 0;
            items.retain(|item| {
                let at = format!("{key}[{i}]");
                i += 1;
                let Some(text) = item.as_str() else {
                    return true;
                };
                let name = text.split_once('=').map_or(text, |(k, _)| k);
                let bad = name.contains('$');
                if bad {
                    refuse(ctx, item, &at, name, kind);
                }
                !bad
            })
        }
        _ => {}
    }
}

/// The message quotes only the name part as written in the commit (`${API_KEY}`), never a value.
fn refuse(ctx: &mut Ctx, at: &Node, key: &str, written: &str, kind: Kind) {
    let what = kind.what();
    let fix = match (kind, bare_reference(written)) {
        (Kind::Variable | Kind::Arg, Some(var)) => format!(
            "write the name itself: `{var}=${{{var}}}`, or a bare `{var}` (which takes the stack variable {var})"
        ),
        _ => format!("write the {what}'s name itself, and interpolate only its value (NAME=${{VAR}})"),
    };
    ctx.error(
        at,
        key,
        format!(
            "the {what} name `{written}` is interpolated: a name must be written in the file, or a value of the secrets file could become a name shown in labels, plans and logs"
        ),
        &fix,
    );
}

/// `${NAME}` or `$NAME` alone: the variable the user most likely meant to pass through.
fn bare_reference(written: &str) -> Option<&str> {
    let inner = written
        .strip_prefix("${")
        .and_then(|s| s.strip_suffix('}'))
        .or_else(|| written.strip_prefix('$'))?;
    valid_var_name(inner).then_some(inner)
}
