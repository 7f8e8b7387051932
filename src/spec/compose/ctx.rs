//! The conversion context of one compose file: where errors go, and typed reads of nodes that
//! report a wrong type as `file:line: key: expected ..., found ...`.

use crate::spec::error::{Findings, SpecError};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::{BTreeMap, BTreeSet};

/// Errors and warnings of one compose file, and its repo path.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub findings: Findings,
    /// Where (line, column) a value's interpolation failed (`${A:?need A}` unset). The value is
    /// then empty, and what conversion would say about that empty value (`"" is not a valid
    /// variable name` for `- A=${A:?need A}`) is only a consequence: it is not reported.
    interpolation_failed: BTreeSet<(u64, u64)>,
    /// Where a value holds a variable that is not set (reported on its own: an error, or a
    /// warning without a secrets dir in CI mode). Its value here is not the host's, so what
    /// only the whole value shows (an image reference) is not judged from it.
    unchecked: BTreeSet<(u64, u64)>,
    /// Where a value was made from variables: a message about it must not quote it (a part of
    /// a secret would not be scrubbed, only whole values are).
    interpolated: BTreeSet<(u64, u64)>,
    /// The file has an `include:` (refused): a service may be defined partly in an included
    /// file, so its missing `image:` is not reported on top.
    pub refused_include: bool,
    /// Whether a literal secret is an error or a warning (`literal_secrets:` in the config).
    pub literal_secrets: super::interp::LiteralSecrets,
    /// The literal secret values deployed under `literal_secrets: warn`, to redact.
    pub literal_values: Vec<crate::spec::model::Secret>,
}

pub(crate) const REMOVE_IT: &str = "remove it";

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str) -> Self {
        Ctx {
            file,
            findings: Findings::default(),
            interpolation_failed: BTreeSet::new(),
            unchecked: BTreeSet::new(),
            interpolated: BTreeSet::new(),
            refused_include: false,
            literal_secrets: Default::default(),
            literal_values: Vec::new(),
        }
    }

    /// The interpolation of `node` failed, and said so: nothing more is reported at it.
    pub fn interpolation_failed(&mut self, node: &Node) {
        if node.line > 0 {
            self.interpolation_failed.insert((node.line, node.col));
        }
    }

    /// `node`'s value holds a variable that could not be checked (see `unchecked`).
    pub fn value_unchecked(&mut self, node: &Node) {
        if node.line > 0 {
            self.unchecked.insert((node.line, node.col));
        }
    }

    /// `node`'s value was made from variables (see `interpolated`).
    pub fn value_interpolated(&mut self, node: &Node) {
        if node.line > 0 {
            self.interpolated.insert((node.line, node.col));
        }
    }

    pub fn is_interpolated(&self, node: &Node) -> bool {
        self.interpolated.contains(&(node.line, node.col))
    }

    pub fn is_unchecked(&self, node: &Node) -> bool {
        self.unchecked.contains(&(node.line, node.col))
    }

    fn after_failed_interpolation(&self, node: &Node) -> bool {
        self.interpolation_failed.contains(&(node.line, node.col))
    }

    pub fn error(&mut self, node: &Node, key: &str, message: impl Into<String>, fix: &str) {
        if self.after_failed_interpolation(node) {
            return;
        }
        let mut e = SpecError::new(self.file, message)
            .at_line(Some(node.line))
            .key(key);
        if !fix.is_empty() {
            e = e.fix(fix);
        }
        self.findings.errors.push(e);
    }

    pub fn warn(&mut self, node: &Node, key: &str, message: impl Into<String>, fix: &str) {
        if self.after_failed_interpolation(node) {
            return;
        }
        let mut e = SpecError::new(self.file, message)
            .at_line(Some(node.line))
            .key(key);
        if !fix.is_empty() {
            e = e.fix(fix);
        }
        self.findings.warnings.push(e);
    }

    /// A key gitmoor does not know (and never silently ignores).
    pub fn unsupported(&mut self, node: &Node, key: &str) {
        self.error(node, key, "not supported by gitmoor", REMOVE_IT);
    }

    /// A key gitmoor means to support later.
    pub fn not_yet(&mut self, node: &Node, key: &str) {
        self.error(node, key, "not supported yet", REMOVE_IT);
    }

    fn wrong_type(&mut self, node: &Node, key: &str, expected: &str) {
        let found = node.kind();
        self.error(node, key, format!("expected {expected}, found {found}"), "");
    }

    /// A scalar read as text (numbers and booleans as compose writes them).
    pub fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match node.scalar_text() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(node, key, "a string");
                None
            }
        }
    }

    /// `true`/`false`, also as the strings an interpolated `${VAR}` gives.
    pub fn bool(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            NodeValue::Bool(b) => Some(*b),
            NodeValue::Str(s) if matches!(s.as_str(), "true" | "True" | "TRUE") => Some(true),
            NodeValue::Str(s) if matches!(s.as_str(), "false" | "False" | "FALSE") => Some(false),
            _ => {
                self.wrong_type(node, key, "true or false");
                None
            }
        }
    }

    /// An integer, also as a string of digits.
    pub fn int(&mut self, node: &Node, key: &str) -> Option<i64> {
        match &node.value {
            NodeValue::Int(i) => Some(*i),
            NodeValue::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.wrong_type(node, key, "an integer");
                None
            }
        }
    }

    /// The entries of a mapping; null counts as an empty mapping.
    pub fn map<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [(String, Node)]> {
        match &node.value {
            NodeValue::Map(entries) => Some(entries),
            NodeValue::Null => Some(&[]),
            _ => {
                self.wrong_type(node, key, "a mapping");
                None
            }
        }
    }

    /// The items of a list; null counts as an empty list.
    pub fn seq<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [Node]> {
        match &node.value {
            NodeValue::Seq(items) => Some(items),
            NodeValue::Null => Some(&[]),
            _ => {
                self.wrong_type(node, key, "a list");
                None
            }
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, node: &Node, key: &str) -> Vec<String> {
        let Some(items) = self.seq(node, key) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.string(n, &format!("{key}[{i}]")))
            .collect()
    }

    /// A string or a list of strings (`env_file`, `tmpfs`).
    pub fn string_or_list(&mut self, node: &Node, key: &str) -> Vec<(String, Node)> {
        match &node.value {
            NodeValue::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let k = format!("{key}[{i}]");
                    self.string(n, &k).map(|s| (s, n.clone()))
                })
                .collect(),
            NodeValue::Null => Vec::new(),
            _ => self
                .string(node, key)
                .map(|s| vec![(s, node.clone())])
                .unwrap_or_default(),
        }
    }

    /// A string or a list of strings, as `Vec<String>` (`dns`, `dns_search`).
    pub fn strings_or_string(&mut self, node: &Node, key: &str) -> Vec<String> {
        self.string_or_list(node, key)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// A mapping of strings or a list of `k=v` (a bare `k` gives an empty value): `labels`.
    pub fn string_map(&mut self, node: &Node, key: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &node.value {
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    let value = if v.is_null() {
                        Some(String::new())
                    } else {
                        self.string(v, &format!("{key}.{k}"))
                    };
                    if let Some(value) = value {
                        out.insert(k.clone(), value);
                    }
                }
            }
            NodeValue::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    let Some(s) = self.string(n, &format!("{key}[{i}]")) else {
                        continue;
                    };
                    let (k, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
                    // Compose reads the list into a mapping: the last entry of a key wins. One of
                    // them is surely a slip, so say so.
                    if out.insert(k.to_string(), v.to_string()).is_some() {
                        self.warn(
                            n,
                            &format!("{key}[{i}]"),
                            format!("`{k}` is given twice; the last one is used, as compose does"),
                            "keep one",
                        );
                    }
                }
            }
            NodeValue::Null => {}
            _ => self.wrong_type(node, key, "a mapping or a list of KEY=VALUE"),
        }
        out
    }
}

/// `x-*` keys: compose's extension fields, allowed in every mapping of the schema and ignored.
pub(crate) fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

/// `^[a-z0-9][a-z0-9_-]*$`: a stack (compose project) name.
pub fn valid_stack_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`: a service, network or volume key.
pub(crate) fn valid_object_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Label prefixes gitmoor (and compose) set themselves.
pub(crate) fn reserved_label(key: &str) -> bool {
    key.starts_with("com.docker.compose.") || key.starts_with("io.gitmoor.")
}

/// User labels, refusing invalid keys and the ones gitmoor sets itself.
pub(crate) fn user_labels(ctx: &mut Ctx, node: &Node, key: &str) -> BTreeMap<String, String> {
    let labels = super::names::label_map(ctx, node, key);
    for k in labels.keys() {
        if reserved_label(k) {
            ctx.error(
                node,
                &format!("{key}.{k}"),
                "this label is set by gitmoor",
                REMOVE_IT,
            );
        }
    }
    labels
}
