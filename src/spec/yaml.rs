//! A YAML document as a tree of nodes that remember where they came from, so that a check long
//! after parsing can still say `compose.yaml:14`.
//!
//! Parsed with serde-saphyr: anchors, aliases and merge keys (`<<: *x`) are resolved here, and a
//! duplicate key is an error. Scalars are typed the YAML 1.2 core way (`yes`, `no` and `on` stay
//! strings, as in compose), and a plain number with a leading zero (`0755`) stays a string.

use crate::spec::error::SpecError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// One node. `line`/`col` are 1-based. For the value of a mapping entry they are the position of
/// its key (the line a user looks for when a message names `services.api.ports`); for a sequence
/// item or the root, the position of the node itself. Values that arrive through an alias or a
/// merge key carry the position of the alias or merge entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: u64,
    pub col: u64,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order (merged entries after the mapping's own). Keys are strings:
    /// a scalar key of another type is written back as text (`80: x` has the key `"80"`).
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn new(line: u64, col: u64, value: NodeValue) -> Node {
        Node { line, col, value }
    }

    /// The value of `key` when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// The text of a scalar (`Str`, `Int`, `Float`, `Bool`), as compose reads a scalar where it
    /// wants a string; None for null, sequences and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::Float(f) => Some(f.to_string()),
            NodeValue::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// What kind of node this is, for messages ("expected a string, found a mapping").
    pub fn kind(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

/// Parses one YAML document. `file` names the file in errors.
pub fn parse(text: &str, file: &str) -> Result<Node, SpecError> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Merge;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| yaml_error(&e, file))
}

fn yaml_error(e: &serde_saphyr::Error, file: &str) -> SpecError {
    let line = e.location().map(|l| l.line());
    let inner = e.without_snippet();
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = inner {
        let what = match key {
            Some(k) => format!("duplicate key `{k}`"),
            None => "duplicate key".to_string(),
        };
        return SpecError::new(file, what)
            .at_line(line)
            .fix("keep only one of them");
    }
    let mut msg = inner.to_string();
    // The message ends with " at line L, column C"; the line is reported separately.
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    SpecError::new(file, format!("invalid YAML: {msg}"))
        .at_line(line)
        .fix("fix the YAML syntax")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Bare>::deserialize(d)?;
        Ok(Node {
            line: s.referenced.line(),
            col: s.referenced.column(),
            value: s.value.0,
        })
    }
}

/// A node's value without its position (the position comes from the `Spanned` around it).
struct Bare(NodeValue);

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BareVisitor)
    }
}

struct BareVisitor;

impl<'de> Visitor<'de> for BareVisitor {
    type Value = Bare;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bare, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Bare(NodeValue::Int(i))),
            Err(_) => Ok(Bare(NodeValue::Str(v.to_string()))),
        }
    }
    fn visit_i128<E>(self, v: i128) -> Result<Bare, E> {
        Ok(Bare(match i64::try_from(v) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::Str(v.to_string()),
        }))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Bare, E> {
        Ok(Bare(match i64::try_from(v) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::Str(v.to_string()),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Float(v)))
    }
    fn visit_char<E>(self, v: char) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Str(v.to_string())))
    }
    fn visit_str<E>(self, v: &str) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Str(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Str(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Str(
            String::from_utf8_lossy(v).into_owned(),
        )))
    }
    fn visit_unit<E>(self) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Null))
    }
    fn visit_none<E>(self) -> Result<Bare, E> {
        Ok(Bare(NodeValue::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Bare, D::Error> {
        Bare::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Bare, D::Error> {
        Bare::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bare, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Bare(NodeValue::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bare, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let mut value = map.next_value::<Node>()?;
            let (line, col) = (key.referenced.line(), key.referenced.column());
            if line > 0 {
                value.line = line;
                value.col = col;
            }
            entries.push((key.value.0, value));
        }
        Ok(Bare(NodeValue::Map(entries)))
    }
}

/// A mapping key, written as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Bare::deserialize(d)?.0 {
            NodeValue::Str(s) => Ok(Key(s)),
            NodeValue::Int(i) => Ok(Key(i.to_string())),
            NodeValue::Float(f) => Ok(Key(f.to_string())),
            NodeValue::Bool(b) => Ok(Key(b.to_string())),
            NodeValue::Null => Ok(Key(String::new())),
            NodeValue::Seq(_) | NodeValue::Map(_) => Err(de::Error::custom(
                "a list or mapping as a mapping key is not supported",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(n: &Node) -> Vec<&str> {
        match &n.value {
            NodeValue::Map(e) => e.iter().map(|(k, _)| k.as_str()).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn scalars_are_typed_the_yaml_1_2_way() {
        let n = parse(
            "a: 1\nb: 1.5\nc: true\nd: yes\ne: ~\nf:\ng: '1'\nh: 0755\ni: 3000:3000\nj: no\nk: 18446744073709551615\n",
            "f.yaml",
        )
        .unwrap();
        let cases: &[(&str, NodeValue)] = &[
            ("a", NodeValue::Int(1)),
            ("b", NodeValue::Float(1.5)),
            ("c", NodeValue::Bool(true)),
            ("d", NodeValue::Str("yes".into())),
            ("e", NodeValue::Null),
            ("f", NodeValue::Null),
            ("g", NodeValue::Str("1".into())),
            ("h", NodeValue::Str("0755".into())),
            ("i", NodeValue::Str("3000:3000".into())),
            ("j", NodeValue::Str("no".into())),
            ("k", NodeValue::Str("18446744073709551615".into())),
        ];
        for (k, want) in cases {
            assert_eq!(&n.get(k).unwrap().value, want, "key {k}");
        }
    }

    #[test]
    fn keeps_key_order_and_key_lines() {
        let n = parse("z: 1\na:\n  - x\n  - y\nm:\n  k: v\n", "f.yaml").unwrap();
        assert_eq!(map_keys(&n), vec!["z", "a", "m"]);
        let a = n.get("a").unwrap();
        assert_eq!(a.line, 2, "a mapping value carries its key's line");
        match &a.value {
            NodeValue::Seq(items) => {
                assert_eq!(items[0].line, 3);
                assert_eq!(items[1].line, 4);
                assert_eq!(items[1].col, 5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(n.get("m").unwrap().get("k").unwrap().line, 6);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let text = "x-base: &base\n  image: foo\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: 'no'\n  b: *base\n";
        let n = parse(text, "f.yaml").unwrap();
        let s = n.get("services").unwrap();
        let a = s.get("a").unwrap();
        assert_eq!(map_keys(a), vec!["restart", "image"]);
        assert_eq!(a.get("restart").unwrap().as_str(), Some("no"));
        assert_eq!(a.get("image").unwrap().as_str(), Some("foo"));
        assert_eq!(
            a.get("image").unwrap().line,
            6,
            "merged entries point at the merge"
        );
        let b = s.get("b").unwrap();
        assert_eq!(b.get("image").unwrap().as_str(), Some("foo"));
        assert_eq!(b.line, 8);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, u64, &str)] = &[
            ("a: 1\nb:\n  c: 2\n  c: 3\n", 4, "duplicate key `c`"),
            ("a: 1\nb: [1, 2\nc: 3\n", 3, "invalid YAML"),
            ("a: 1\n  b: 2\n", 2, "invalid YAML"),
            ("a: *nope\n", 1, "invalid YAML"),
            ("---\na: 1\n---\nb: 2\n", 4, "invalid YAML"),
        ];
        for (text, line, msg) in cases {
            let e = parse(text, "compose/x/compose.yaml").unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("compose/x/compose.yaml:{line}: ")),
                "{shown}"
            );
            assert!(shown.contains(msg), "{shown}");
            assert!(!shown.contains("DuplicateKeyPolicy"), "{shown}");
        }
    }

    #[test]
    fn empty_document_is_null() {
        assert!(parse("", "f").unwrap().is_null());
        assert!(parse("# only a comment\n", "f").unwrap().is_null());
    }
}
