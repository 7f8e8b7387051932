//! A YAML document as a tree of nodes that remember where they came from, so that a check long
//! after parsing can still say `compose.yaml:14`.
//!
//! Parsed with serde-saphyr: anchors, aliases and merge keys (`<<: *x`) are resolved here, and a
//! duplicate key is an error. Scalars are typed the YAML 1.2 core way (`yes`, `no` and `on` stay
//! strings, as in compose), and a plain number with a leading zero (`0755`) stays a string.

use crate::spec::error::SpecError;
use crate::spec::limits::{raise, show_bytes, Limits};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::cell::Cell;
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

/// Parses one YAML document with the default budget. `file` names the file in errors.
pub fn parse(text: &str, file: &str) -> Result<Node, SpecError> {
    parse_within(text, file, Limits::default().expanded_yaml_bytes)
}

/// Parses one YAML document, building at most `max_bytes` of tree (see `Budget`): past it, the
/// parse stops with an error naming `limits.expanded_yaml_bytes`. Inside a [`TotalBudget`], the
/// parse gets no more than what is left of the total, and what it built is taken from it.
pub fn parse_within(text: &str, file: &str, max_bytes: u64) -> Result<Node, SpecError> {
    let total = TOTAL.with(Cell::get);
    let cap = match total {
        Some((left, limit)) if left < max_bytes => Cap::Total { left, limit },
        _ => Cap::File(max_bytes),
    };
    let budget = cap.bytes();
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Merge;
    options.budget = Some(parser_budget(budget));
    options.alias_limits.max_total_replayed_events = parser_events(budget);
    let guard = Budget::start(budget);
    let parsed = serde_saphyr::from_str_with_options::<Node>(text, options);
    let used = budget.saturating_sub(Budget::left());
    let exceeded = Budget::exceeded();
    drop(guard);
    if let Some((left, limit)) = total {
        // A refused parse is charged too: what it built was in memory while it ran, and a
        // commit of many refused files is no cheaper to read than one of accepted ones.
        TOTAL.with(|t| t.set(Some((left.saturating_sub(used), limit))));
    }
    match parsed {
        Ok(node) => Ok(node),
        Err(e) if exceeded => Err(too_large(&e, file, cap)),
        Err(e) => Err(yaml_error(&e, file, cap)),
    }
}

/// Which budget bounded a parse: the file's own, or what was left of the total of the read.
#[derive(Debug, Clone, Copy)]
enum Cap {
    File(u64),
    Total { left: u64, limit: u64 },
}

impl Cap {
    fn bytes(self) -> u64 {
        match self {
            Cap::File(b) => b,
            Cap::Total { left, .. } => left,
        }
    }
}

thread_local! {
    /// Bytes left of the total budget of the read running on this thread, and the limit; None
    /// outside a [`TotalBudget`].
    static TOTAL: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// One budget of expanded YAML shared by every compose file of one read of the commit
/// (`limits.expanded_yaml_total_bytes`). The per-file budget bounds one tree; this bounds them
/// all, since what each stack becomes is kept until the whole commit is read: 40 stacks, each
/// just under the per-file budget, would otherwise hold 40 times it. While the guard lives,
/// every [`parse_within`] on this thread takes from it; dropping it restores the previous one.
pub struct TotalBudget {
    previous: Option<(u64, u64)>,
}

impl TotalBudget {
    pub fn start(limit: u64) -> TotalBudget {
        let previous = TOTAL.with(|t| t.replace(Some((limit, limit))));
        TotalBudget { previous }
    }

    /// Bytes left of the total.
    pub fn left(&self) -> u64 {
        TOTAL.with(|t| t.get().map_or(0, |(left, _)| left))
    }
}

impl Drop for TotalBudget {
    fn drop(&mut self) {
        TOTAL.with(|t| t.set(self.previous));
    }
}

/// The parser's own budget, aligned with ours: it counts scalar bytes and nodes of the event
/// stream (aliases replayed), so it is a second stop for the same bomb, set a little above ours
/// so that ours (which also counts keys) speaks first. The alias/anchor ratio heuristic is off:
/// it refuses ordinary files (one `<<: *defaults` in 150 services) and the byte budget is what
/// bounds memory anyway.
fn parser_budget(max_bytes: u64) -> serde_saphyr::Budget {
    let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut b = serde_saphyr::Budget::default();
    b.max_total_scalar_bytes = max.saturating_add(max / 8);
    b.max_recorded_anchor_bytes = max.saturating_add(max / 8);
    b.max_nodes = (max / NODE_BYTES as usize).max(b.max_nodes);
    b.max_events = parser_events(max_bytes);
    b.max_recorded_anchor_events = (max / RECORDED_EVENT_BYTES).max(10_000);
    b.enforce_alias_anchor_ratio = false;
    b.max_depth = MAX_DEPTH;
    b
}

/// Bytes of budget per event the parser may keep to replay anchors (its default allows
/// 1,000,000 events whatever the budget). It keeps an anchored list or mapping event by event,
/// aliases inside it expanded, at about 100 bytes an event beside our tree: one event per 400
/// bytes keeps that to a quarter of the budget. An ordinary file's anchors
/// (`x-defaults: &defaults`) hold tens of events.
const RECORDED_EVENT_BYTES: usize = 400;

/// Nesting the parser accepts. A compose file nests about 6 deep (`services.api.deploy.
/// resources.limits.cpus`); the tree is built (and later walked) recursively, and a debug build
/// used up a 2 MiB thread stack (a tokio worker's) near 45 levels, which aborts the process:
/// refuse well before.
const MAX_DEPTH: usize = 32;

/// Events (parsed or replayed from an anchor) the parser may produce: each makes a node or
/// closes one, so twice the nodes the budget buys, and never fewer than the parser's default.
fn parser_events(max_bytes: u64) -> usize {
    let nodes = usize::try_from(max_bytes / NODE_BYTES).unwrap_or(usize::MAX);
    nodes.saturating_mul(2).max(1_000_000)
}

/// What a node costs beyond its text: the node itself (`Node` is 48 bytes on 64-bit targets).
const NODE_BYTES: u64 = std::mem::size_of::<Node>() as u64;
/// What a mapping entry costs beyond its key's text and its value node.
const ENTRY_BYTES: u64 = std::mem::size_of::<String>() as u64;
/// An allocator's overhead for each string that holds text.
const STRING_BYTES: u64 = 16;

thread_local! {
    /// Bytes left of the current parse's budget (None outside a parse), and whether it ran out.
    static BUDGET: Cell<(Option<u64>, bool)> = const { Cell::new((None, false)) };
}

/// The byte budget of the parse running on this thread. serde-saphyr replays an alias by
/// feeding its anchor's events again, so the tree (whose strings are owned) grows with every
/// use: counting as the tree is built, before each string is copied, is what bounds memory.
/// A thread-local, because `Deserialize` for `Node` has no other way to reach the parse it
/// belongs to; the guard restores the previous state, so parses can nest.
struct Budget {
    previous: (Option<u64>, bool),
}

impl Budget {
    fn start(max_bytes: u64) -> Budget {
        let previous = BUDGET.with(|b| b.replace((Some(max_bytes), false)));
        Budget { previous }
    }

    fn exceeded() -> bool {
        BUDGET.with(|b| b.get().1)
    }

    /// Bytes left of the current parse's budget.
    fn left() -> u64 {
        BUDGET.with(|b| b.get().0.unwrap_or(0))
    }

    /// Takes `n` bytes from the budget; an error (and the `exceeded` mark) past it.
    fn charge<E: de::Error>(n: u64) -> Result<(), E> {
        BUDGET.with(|b| match b.get() {
            // Once out, every later charge but an empty one fails too, and the mark stays.
            (Some(left), out) if left >= n => {
                b.set((Some(left - n), out));
                Ok(())
            }
            (Some(_), _) => {
                b.set((Some(0), true));
                Err(E::custom("the expanded YAML is over its byte budget"))
            }
            (None, _) => Ok(()),
        })
    }

    fn charge_str<E: de::Error>(len: usize) -> Result<(), E> {
        let len = len as u64;
        Self::charge(if len == 0 { 0 } else { len + STRING_BYTES })
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.previous));
    }
}

/// The refusal of a file whose tree outgrew the budget (ours, or the parser's own count): the
/// file's own, or the total of the read, each named with its key.
fn too_large(e: &serde_saphyr::Error, file: &str, cap: Cap) -> SpecError {
    let line = e.location().map(|l| l.line());
    match cap {
        Cap::File(max_bytes) => SpecError::new(
            file,
            format!(
                "the YAML expands to more than {} (limits.expanded_yaml_bytes): each use of an alias (`*name`) copies its anchor",
                show_bytes(max_bytes)
            ),
        )
        .at_line(line)
        .fix(raise(
            "use fewer aliases of large anchors",
            "expanded_yaml_bytes",
        )),
        Cap::Total { left, limit } => SpecError::new(
            file,
            format!(
                "the compose files read so far expand to more than {} in all (limits.expanded_yaml_total_bytes), and {} of it was left for this one: each use of an alias (`*name`) copies its anchor",
                show_bytes(limit),
                show_bytes(left)
            ),
        )
        .at_line(line)
        .fix(raise(
            "use fewer aliases of large anchors in the stacks",
            "expanded_yaml_total_bytes",
        )),
    }
}

/// The error itself, out of the wrappers that add a snippet or the alias it came through.
fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            other => return other,
        }
    }
}

fn yaml_error(e: &serde_saphyr::Error, file: &str, cap: Cap) -> SpecError {
    let line = e.location().map(|l| l.line());
    let inner = innermost(e);
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = inner {
        let what = match key {
            Some(k) => format!("duplicate key `{k}`"),
            None => "duplicate key".to_string(),
        };
        return SpecError::new(file, what)
            .at_line(line)
            .fix("keep only one of them");
    }
    if let serde_saphyr::Error::AliasReplayLimitExceeded { .. } = inner {
        return too_large(e, file, cap);
    }
    if let serde_saphyr::Error::Budget { breach, .. } = inner {
        use serde_saphyr::budget::BudgetBreach as B;
        let what = match breach {
            // Each of these grows with the expansion, and scales with our budget.
            B::ScalarBytes { .. }
            | B::Nodes { .. }
            | B::Events { .. }
            | B::RecordedAnchorBytes { .. }
            | B::RecordedAnchorEvents { .. } => {
                return too_large(e, file, cap);
            }
            B::Depth { depth } => format!("nested {depth} levels deep"),
            B::Aliases { aliases } => format!("{aliases} aliases"),
            B::Anchors { anchors } => format!("{anchors} anchors"),
            B::Documents { documents } => format!("{documents} documents"),
            B::MergeKeys { merge_keys } => format!("{merge_keys} merge keys"),
            other => format!("{other:?}"),
        };
        return SpecError::new(file, format!("the YAML is too complex to read ({what})"))
            .at_line(line)
            .fix("simplify the file");
    }
    let mut msg = inner.to_string();
    // The message ends with " at line L, column C"; the line is reported separately.
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    if msg.contains("recursion limit exceeded") {
        // The scanner's own nesting limit, met before the budget's depth.
        return SpecError::new(file, "the YAML is too complex to read (nested too deep)")
            .at_line(line)
            .fix("simplify the file");
    }
    SpecError::new(file, format!("invalid YAML: {msg}"))
        .at_line(line)
        .fix("fix the YAML syntax")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Budget::charge(NODE_BYTES)?;
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
    fn visit_char<E: de::Error>(self, v: char) -> Result<Bare, E> {
        Budget::charge_str(v.len_utf8())?;
        Ok(Bare(NodeValue::Str(v.to_string())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bare, E> {
        Budget::charge_str(v.len())?;
        Ok(Bare(NodeValue::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Bare, E> {
        Budget::charge_str(v.len())?;
        Ok(Bare(NodeValue::Str(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bare, E> {
        Budget::charge_str(v.len())?;
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
            Budget::charge(ENTRY_BYTES)?;
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

    /// The reproduction: a 1 MiB anchor aliased 50,000 times (50 GB once expanded).
    fn flat_bomb() -> String {
        let aliases = vec!["*a"; 50_000].join(", ");
        format!(
            "x-a: &a \"{}\"\nx-b: [{aliases}]\nservices:\n  s:\n    image: x\n",
            "x".repeat(1 << 20)
        )
    }

    /// Ten uses per level, nine levels of small lists: 10^9 nodes from 200 bytes, with no more
    /// aliases per anchor than an ordinary file has.
    fn laughs() -> String {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let uses = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{uses}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_stops_at_the_budget_naming_the_key() {
        let e = parse(&flat_bomb(), "compose/x/compose.yaml").unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("compose/x/compose.yaml:2: the YAML expands to more than 16 MiB (limits.expanded_yaml_bytes)"),
            "{shown}"
        );
        assert!(
            shown.ends_with("use fewer aliases of large anchors, or raise limits.expanded_yaml_bytes in gitmoor's config"),
            "{shown}"
        );
        for text in [laughs(), laughs().replace('x', "a_long_key_name: 1")] {
            let e = parse_within(&text, "f.yaml", 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("expands to more than 1 MiB (limits.expanded_yaml_bytes)"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_budget_counts_one_parse_at_a_time() {
        let text = "services:\n  a:\n    image: nginx\n    ports: [\"80:80\"]\n";
        assert!(parse_within(text, "f", 200).is_err());
        assert!(parse_within(text, "f", 4096).is_ok());
        assert!(parse_within(&laughs(), "f", 4096).is_err());
        // Nothing is left of the refused parse's budget, inside or outside a parse.
        assert!(parse_within(text, "f", 4096).is_ok());
        assert!(Budget::charge::<serde::de::value::Error>(u64::MAX).is_ok());
    }

    #[test]
    fn other_parser_budgets_say_what_is_too_much() {
        let nested = |d: usize| format!("a: {}1{}\n", "[".repeat(d), "]".repeat(d));
        assert!(parse(&nested(MAX_DEPTH - 1), "f.yaml").is_ok());
        for d in [MAX_DEPTH, 100, 100_000] {
            let e = parse(&nested(d), "f.yaml").unwrap_err().to_string();
            assert!(
                e.starts_with("f.yaml:1: the YAML is too complex to read (nested "),
                "{e}"
            );
        }
    }

    #[test]
    fn empty_document_is_null() {
        assert!(parse("", "f").unwrap().is_null());
        assert!(parse("# only a comment\n", "f").unwrap().is_null());
    }
}
