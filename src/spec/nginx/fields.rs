//! Typed reads of a site file's YAML nodes: a wrong type, an unknown key or a refused value
//! becomes `file:line: key: message; fix`, and reading goes on so that one run shows every
//! problem of the file.

use super::values::Refused;
use crate::spec::error::SpecError;
use crate::spec::yaml::{Node, NodeValue};

/// The errors of one site file.
pub(super) struct Fields<'a> {
    pub file: &'a str,
    pub errors: Vec<SpecError>,
}

impl<'a> Fields<'a> {
    pub fn new(file: &'a str) -> Self {
        Fields {
            file,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, node: &Node, key: &str, message: impl Into<String>, fix: &str) {
        let mut e = SpecError::new(self.file, message).at_line(Some(node.line));
        if !key.is_empty() {
            e = e.key(key);
        }
        if !fix.is_empty() {
            e = e.fix(fix);
        }
        self.errors.push(e);
    }

    fn wrong_type(&mut self, node: &Node, key: &str, expected: &str, fix: &str) {
        let found = node.kind();
        self.error(
            node,
            key,
            format!("expected {expected}, found {found}"),
            fix,
        );
    }

    /// The entries of a mapping, each key checked against `known` (an unknown key is an error:
    /// a misspelt `redirect_http` must not silently leave the default in place).
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        known: &[&str],
    ) -> Option<&'n [(String, Node)]> {
        let entries = match &node.value {
            NodeValue::Map(entries) => entries.as_slice(),
            _ => {
                self.wrong_type(node, key, "a mapping", "");
                return None;
            }
        };
        for (k, v) in entries {
            if !known.contains(&k.as_str()) {
                let shown = super::values::quote(k);
                self.error(
                    v,
                    &join(key, k),
                    format!("unknown key {shown}"),
                    &format!("remove it; the keys here are {}", known.join(", ")),
                );
            }
        }
        Some(entries)
    }

    /// A scalar as text (a number is read as its digits).
    pub fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.value {
            NodeValue::Str(_) | NodeValue::Int(_) => node.scalar_text(),
            _ => {
                self.wrong_type(node, key, "a string", "");
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            NodeValue::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(node, key, "true or false", "");
                None
            }
        }
    }

    /// A non-negative integer, also as a string of digits.
    pub fn uint(&mut self, node: &Node, key: &str) -> Option<u64> {
        let n = match &node.value {
            NodeValue::Int(i) => u64::try_from(*i).ok(),
            NodeValue::Str(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        if n.is_none() {
            self.wrong_type(node, key, "a non-negative integer", "");
        }
        n
    }

    /// The items of a list.
    pub fn seq<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [Node]> {
        match &node.value {
            NodeValue::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, key, "a list", "");
                None
            }
        }
    }

    /// A string checked by a value type's constructor.
    pub fn value<T>(
        &mut self,
        node: &Node,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, Refused>,
    ) -> Option<T> {
        let text = self.string(node, key)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(Refused { message, fix }) => {
                self.error(node, key, message, &fix);
                None
            }
        }
    }
}

/// `a.b`, or `b` at the top.
pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}
