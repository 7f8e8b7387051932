//! Compose variable interpolation: `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$`. Pure.
//!
//! The rules are compose-go's (`template.Substitute`), reproduced step by step because its
//! corner cases are what users' files already rely on:
//!
//! - A `$` starts an expression only when followed by `$`, a name (`[_A-Za-z][_A-Za-z0-9]*`) or
//!   `{`. Anything else (`$}`, `$1`, a trailing `$`) stays literal.
//! - `${` must be followed by a name and then `}` or an operator (`:-`, `-`, `:?`, `?`, `:+`,
//!   `+`); otherwise the whole template is invalid (`${`, `${}`, `${ foo}`, `${foo!}`).
//! - After an operator the expression runs to the `}` that balances its `{` (so a default may hold
//!   `{"json":1}` or `${OTHER}`), and must close on the same line.
//! - Defaults, alternatives and messages are interpolated lazily: only when used, so a variable
//!   they mention is reported missing only then.
//! - A bare `$VAR` / `${VAR}` whose variable is unset becomes "" and is listed in `missing`
//!   (compose warns); the operators never add to `missing` for their own variable.

/// The result of interpolating one string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interpolation {
    pub value: String,
    /// Variables that were evaluated, unset, and had no default (compose warns and uses "").
    pub missing: Vec<String>,
}

/// An invalid template or a `${VAR:?msg}` whose variable is missing. The message never holds a
/// variable's value: it may quote the template text (the compose file's own text) and the
/// `:?` message as written, never a looked-up value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InterpolateError(pub String);

/// Interpolates `input`. `lookup` returns `Some(value)` for a set variable (possibly empty) and
/// `None` for an unset one.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolation, InterpolateError> {
    interpolate_detailed(input, lookup).map_err(|failure| failure.to_error(input))
}

/// Why interpolation failed, without any text of the input: for callers that interpolate text
/// which is itself secret (a secrets file's values) and so must not quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateFailure {
    /// A `$` that starts no valid expression (`${`, `${ foo}`, `${foo!}`), or nesting deeper than
    /// `MAX_NESTING`.
    InvalidTemplate,
    /// `${VAR:?message}` with VAR unset or empty, or `${VAR?message}` with VAR unset. `message`
    /// is the text after the operator as written (not interpolated, so it holds no value).
    MissingRequired { variable: String, message: String },
}

impl InterpolateFailure {
    /// The user-facing error for a failure while interpolating `input`.
    pub fn to_error(&self, input: &str) -> InterpolateError {
        match self {
            InterpolateFailure::InvalidTemplate => InterpolateError(format!(
                "invalid interpolation format for `{input}`: a `$` must start `$NAME`, `${{NAME}}` \
                 or `${{NAME<op>text}}` with op one of :- - :? ? :+ +; write `$$` for a literal `$`"
            )),
            InterpolateFailure::MissingRequired { variable, message } if message.is_empty() => {
                InterpolateError(format!("required variable {variable} is missing a value"))
            }
            InterpolateFailure::MissingRequired { variable, message } => InterpolateError(format!(
                "required variable {variable} is missing a value: {message}"
            )),
        }
    }
}

/// Deepest nesting of defaults inside defaults accepted (compose has no limit; real files nest
/// two or three levels, and the limit keeps a hostile template from exhausting the stack).
pub const MAX_NESTING: usize = 200;

/// `interpolate`, with a failure that quotes nothing.
pub fn interpolate_detailed(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolation, InterpolateFailure> {
    let mut evaluator = Evaluator {
        lookup,
        missing: Vec::new(),
        depth: 0,
    };
    let value = evaluator.substitute(input)?;
    Ok(Interpolation {
        value,
        missing: evaluator.missing,
    })
}

/// The operators, in compose-go's order (the one that occurs first in the expression wins).
const OPERATORS: [Op; 6] = [
    Op::RequiredNonEmpty,
    Op::Required,
    Op::DefaultIfEmpty,
    Op::DefaultIfUnset,
    Op::AltIfNonEmpty,
    Op::AltIfSet,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `:?`
    RequiredNonEmpty,
    /// `?`
    Required,
    /// `:-`
    DefaultIfEmpty,
    /// `-`
    DefaultIfUnset,
    /// `:+`
    AltIfNonEmpty,
    /// `+`
    AltIfSet,
}

impl Op {
    fn sep(self) -> &'static str {
        match self {
            Op::RequiredNonEmpty => ":?",
            Op::Required => "?",
            Op::DefaultIfEmpty => ":-",
            Op::DefaultIfUnset => "-",
            Op::AltIfNonEmpty => ":+",
            Op::AltIfSet => "+",
        }
    }
}

/// The operator that occurs first in `expr` (compose-go sorts its functions by the index of
/// their separator in the matched text).
fn choose_op(expr: &str) -> Option<Op> {
    OPERATORS
        .iter()
        .filter_map(|op| expr.find(op.sep()).map(|at| (at, *op)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, op)| op)
}

/// One match of compose-go's pattern
/// `\$(?i:(?P<escaped>\$)|(?P<named>NAME)|{(?:(?P<braced>NAME(?::?[-+?](.*))?)}|(?P<invalid>)))`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `$$`
    Escaped,
    /// `$NAME`: the byte range of the name.
    Named(std::ops::Range<usize>),
    /// `${...}`: the byte range between the braces.
    Braced(std::ops::Range<usize>),
    /// `${` starting nothing valid.
    Invalid,
}

fn is_name_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn is_name_char(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

fn name_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| is_name_char(*b)) {
        at += 1;
    }
    at
}

/// Remembers, for the line being scanned, where its last `}` is, so that a line with many
/// `${VAR:-x}` is not rescanned for each (positions only grow within one template).
#[derive(Default)]
struct LineCache {
    /// (first position the entry is valid for, end of that line, last `}` in between).
    entry: Option<(usize, usize, Option<usize>)>,
}

impl LineCache {
    /// The position of the last `}` in `s[from..end of line]`.
    fn last_close(&mut self, s: &str, from: usize) -> Option<usize> {
        if let Some((start, line_end, last)) = self.entry {
            if start <= from && from <= line_end {
                return last.filter(|at| *at >= from);
            }
        }
        let rest = &s[from..];
        let line_end = from + rest.find('\n').unwrap_or(rest.len());
        let last = s[from..line_end].rfind('}').map(|at| from + at);
        self.entry = Some((from, line_end, last));
        last
    }
}

/// Matches the pattern at `s[at]`, which is a `$`. `None`: this `$` is literal. Returns the token
/// and the end of the match.
fn match_at(s: &str, at: usize, cache: &mut LineCache) -> Option<(Token, usize)> {
    let bytes = s.as_bytes();
    let next = *bytes.get(at + 1)?;
    if next == b'$' {
        return Some((Token::Escaped, at + 2));
    }
    if is_name_start(next) {
        let end = name_end(bytes, at + 2);
        return Some((Token::Named(at + 1..end), end));
    }
    if next != b'{' {
        return None;
    }
    let start = at + 2;
    match braced_close(s, start, cache) {
        Some(close) => Some((Token::Braced(start..close), close + 1)),
        None => Some((Token::Invalid, start)),
    }
}

/// For `${` ending at `start`: the position of the `}` closing `NAME(?::?[-+?](.*))?}`.
fn braced_close(s: &str, start: usize, cache: &mut LineCache) -> Option<usize> {
    let bytes = s.as_bytes();
    if !bytes.get(start).is_some_and(|b| is_name_start(*b)) {
        return None;
    }
    let name_end = name_end(bytes, start + 1);
    let is_op = |b: Option<&u8>| matches!(b, Some(b'-' | b'+' | b'?'));
    let body = match bytes.get(name_end) {
        Some(b'}') => return Some(name_end),
        Some(b':') if is_op(bytes.get(name_end + 1)) => name_end + 2,
        b if is_op(b) => name_end + 1,
        _ => return None,
    };
    // `.*` is greedy and stops at a newline: the last `}` on the line.
    cache.last_close(s, body)
}

/// compose-go's `getFirstBraceClosingIndex`: the `}` that balances the first `{`, counting every
/// `{` and skipping the character after it.
fn first_brace_closing_index(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0i64;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if bytes[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// Splits at the first `sep`.
fn partition<'a>(s: &'a str, sep: &str) -> (&'a str, &'a str) {
    match s.split_once(sep) {
        Some((before, after)) => (before, after),
        None => (s, ""),
    }
}

struct Evaluator<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    missing: Vec<String>,
    depth: usize,
}

impl Evaluator<'_> {
    /// compose-go's `Substitute`: every match of the pattern replaced, left to right.
    fn substitute(&mut self, template: &str) -> Result<String, InterpolateFailure> {
        if self.depth >= MAX_NESTING {
            return Err(InterpolateFailure::InvalidTemplate);
        }
        self.depth += 1;
        let result = self.substitute_at_depth(template);
        self.depth -= 1;
        result
    }

    fn substitute_at_depth(&mut self, template: &str) -> Result<String, InterpolateFailure> {
        let mut out = String::with_capacity(template.len());
        let mut cache = LineCache::default();
        let mut literal_from = 0;
        let mut search_from = 0;
        while let Some(offset) = template[search_from..].find('$') {
            let at = search_from + offset;
            let Some((token, end)) = match_at(template, at, &mut cache) else {
                search_from = at + 1;
                continue;
            };
            out.push_str(&template[literal_from..at]);
            let resume = match token {
                Token::Escaped => {
                    out.push('$');
                    end
                }
                Token::Named(name) => {
                    let value = self.lookup_bare(&template[name]);
                    out.push_str(&value);
                    end
                }
                Token::Invalid => return Err(InterpolateFailure::InvalidTemplate),
                Token::Braced(_) => {
                    let (value, consumed) = self.braced(&template[at..end])?;
                    out.push_str(&value);
                    at + consumed
                }
            };
            literal_from = resume;
            search_from = resume;
        }
        out.push_str(&template[literal_from..]);
        Ok(out)
    }

    /// One `${...}` match (`matched`, greedy to the last `}` of its line). Returns the value and
    /// how much of `matched` it used: compose-go cuts the match at the brace that balances the
    /// opening one and interpolates what follows as ordinary text, which is the same as
    /// scanning on from there.
    fn braced(&mut self, matched: &str) -> Result<(String, usize), InterpolateFailure> {
        let head = match first_brace_closing_index(matched) {
            Some(close) => &matched[..=close],
            None => matched,
        };
        // compose-go looks for the first operator in the whole match; the operator right after
        // the name is always inside `head` and nothing before it can be one, so `head` gives the
        // same answer without rescanning the rest of the line.
        let op = choose_op(head);
        let substitution = match match_at(head, 0, &mut LineCache::default()) {
            Some((Token::Braced(range), _)) => &head[range],
            _ => return Err(InterpolateFailure::InvalidTemplate),
        };
        if let Some(op) = op.filter(|op| substitution.contains(op.sep())) {
            let (name, text) = partition(substitution, op.sep());
            let value = self.apply(op, name, text)?;
            return Ok((value, head.len()));
        }
        // No operator: `${NAME}` (compose-go drops anything after the cut here, which is
        // always empty for a match without an operator).
        Ok((self.lookup_bare(substitution), matched.len()))
    }

    fn apply(&mut self, op: Op, name: &str, text: &str) -> Result<String, InterpolateFailure> {
        let value = (self.lookup)(name);
        match op {
            Op::RequiredNonEmpty | Op::Required => {
                let present = match &value {
                    Some(v) => op == Op::Required || !v.is_empty(),
                    None => false,
                };
                if present {
                    return Ok(value.unwrap_or_default());
                }
                // compose-go interpolates the message (so an invalid one is reported as such);
                // the error keeps it as written, which holds no value.
                self.substitute(text)?;
                Err(InterpolateFailure::MissingRequired {
                    variable: name.to_string(),
                    message: text.to_string(),
                })
            }
            Op::DefaultIfEmpty | Op::DefaultIfUnset => match value {
                Some(v) if op == Op::DefaultIfUnset || !v.is_empty() => Ok(v),
                _ => self.substitute(text),
            },
            Op::AltIfNonEmpty | Op::AltIfSet => match value {
                Some(v) if op == Op::AltIfSet || !v.is_empty() => self.substitute(text),
                other => Ok(other.unwrap_or_default()),
            },
        }
    }

    /// `$NAME` / `${NAME}`: the value, or "" and a `missing` entry.
    fn lookup_bare(&mut self, name: &str) -> String {
        match (self.lookup)(name) {
            Some(value) => value,
            None => {
                if !self.missing.iter().any(|m| m == name) {
                    self.missing.push(name.to_string());
                }
                String::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(input: &str, vars: &HashMap<String, String>) -> Result<Interpolation, InterpolateError> {
        interpolate(input, &|name: &str| vars.get(name).cloned())
    }

    /// (input, expected value, expected missing)
    const VALUE_CASES: &[(&str, &str, &[&str])] = &[
        ("plain", "plain", &[]),
        ("", "", &[]),
        ("$$", "$", &[]),
        ("$${SET}", "${SET}", &[]),
        ("$$$SET", "$v", &[]),
        ("a $ b", "a $ b", &[]),
        ("$", "$", &[]),
        ("$}", "$}", &[]),
        ("$1", "$1", &[]),
        ("cost: 5$", "cost: 5$", &[]),
        ("$SET", "v", &[]),
        ("$SET-x", "v-x", &[]),
        ("$SET.x", "v.x", &[]),
        ("${SET}", "v", &[]),
        ("${SET}${SET}", "vv", &[]),
        ("$lower", "l", &[]),
        ("$UNSET", "", &["UNSET"]),
        ("${UNSET} ${UNSET} $OTHER", "  ", &["UNSET", "OTHER"]),
        ("${EMPTY}", "", &[]),
        // :- and -
        ("${UNSET:-d}", "d", &[]),
        ("${EMPTY:-d}", "d", &[]),
        ("${SET:-d}", "v", &[]),
        ("${UNSET-d}", "d", &[]),
        ("${EMPTY-d}", "", &[]),
        ("${SET-d}", "v", &[]),
        ("${UNSET:-}", "", &[]),
        // :+ and +
        ("${UNSET:+a}", "", &[]),
        ("${EMPTY:+a}", "", &[]),
        ("${SET:+a}", "a", &[]),
        ("${UNSET+a}", "", &[]),
        ("${EMPTY+a}", "a", &[]),
        ("${SET+a}", "a", &[]),
        // :? and ? when satisfied
        ("${SET:?m}", "v", &[]),
        ("${SET?m}", "v", &[]),
        ("${EMPTY?m}", "", &[]),
        // nesting
        ("${UNSET:-${SET}}", "v", &[]),
        ("${UNSET:-$SET}", "v", &[]),
        ("${UNSET:-${OTHER:-${THIRD:-deep}}}", "deep", &[]),
        ("${UNSET:-${OTHER}}", "", &["OTHER"]),
        ("${UNSET:-a${SET}b} tail ${SET}", "avb tail v", &[]),
        ("${SET:+<${SET}>}", "<v>", &[]),
        // lazy: unused defaults, alternatives and messages are not evaluated
        ("${SET:-${OTHER}}", "v", &[]),
        ("${UNSET:+${OTHER}}", "", &[]),
        ("${SET:?${OTHER}}", "v", &[]),
        ("${SET:-${ {broken}", "v", &[]),
        // braces and operators inside defaults
        ("${UNSET:-{\"a\":1}}", "{\"a\":1}", &[]),
        ("${UNSET:-a:-b?c}", "a:-b?c", &[]),
        ("${UNSET-x:?y}", "x:?y", &[]),
        ("${UNSET:-x} }}}", "x }}}", &[]),
        ("{{ ${SET} }}", "{{ v }}", &[]),
        // multi-line input: each line on its own
        ("${UNSET:-a}\n${SET}}", "a\nv}", &[]),
        (
            "--password=\"$$(cat /run/secrets/pw)\"",
            "--password=\"$(cat /run/secrets/pw)\"",
            &[],
        ),
        ("ünïcode ${SET} ✓ $$", "ünïcode v ✓ $", &[]),
    ];

    const ERROR_CASES: &[(&str, &str)] = &[
        ("${", "invalid interpolation format for `${`"),
        ("${}", "invalid interpolation format for `${}`"),
        ("${ }", "invalid interpolation format"),
        ("${ foo}", "invalid interpolation format for `${ foo}`"),
        ("${foo }", "invalid interpolation format"),
        ("${foo!}", "invalid interpolation format"),
        ("${foo:}", "invalid interpolation format"),
        ("${1foo}", "invalid interpolation format"),
        ("${UNSET:-x", "invalid interpolation format"),
        ("${UNSET:-x\n}", "invalid interpolation format"),
        ("ok ${SET} then ${", "invalid interpolation format"),
        ("${UNSET:-${ bad}}", "invalid interpolation format"),
        (
            "${UNSET:?set it}",
            "required variable UNSET is missing a value: set it",
        ),
        (
            "${EMPTY:?set it}",
            "required variable EMPTY is missing a value: set it",
        ),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("${UNSET:?}", "required variable UNSET is missing a value"),
        (
            "${UNSET:?needs ${SET}}",
            "required variable UNSET is missing a value: needs ${SET}",
        ),
        ("${UNSET:?bad ${ x}}", "invalid interpolation format"),
        (
            "${UNSET:-${UNSET2:?inner}}",
            "required variable UNSET2 is missing a value: inner",
        ),
    ];

    fn test_env() -> HashMap<String, String> {
        env(&[("SET", "v"), ("EMPTY", ""), ("lower", "l")])
    }

    #[test]
    fn value_cases() {
        let vars = test_env();
        let mut failures = Vec::new();
        for (input, value, missing) in VALUE_CASES {
            let expected = Interpolation {
                value: value.to_string(),
                missing: missing.iter().map(|m| m.to_string()).collect(),
            };
            match run(input, &vars) {
                Ok(got) if got == expected => {}
                other => failures.push(format!("{input:?}: want {expected:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn error_cases() {
        let vars = test_env();
        let mut failures = Vec::new();
        for (input, message) in ERROR_CASES {
            match run(input, &vars) {
                Err(InterpolateError(got)) if got.starts_with(message) => {}
                other => failures.push(format!("{input:?}: want error {message:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn errors_never_hold_a_value() {
        let vars = env(&[("SECRET", "hunter2"), ("EMPTY", "")]);
        for input in [
            "${UNSET:?need ${SECRET}}",
            "${UNSET?${SECRET}}",
            "${EMPTY:?${SECRET:+x}${SECRET}}",
            "${SECRET} ${ broken}",
        ] {
            let err = run(input, &vars).expect_err(input);
            assert!(!err.to_string().contains("hunter2"), "{input}: {err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{input}: {err:?}");
        }
    }

    #[test]
    fn detailed_failures_quote_nothing() {
        let vars = test_env();
        let lookup = |name: &str| vars.get(name).cloned();
        assert_eq!(
            interpolate_detailed("x ${ y}", &lookup),
            Err(InterpolateFailure::InvalidTemplate)
        );
        assert_eq!(
            interpolate_detailed("${NOPE:?say ${SET}}", &lookup),
            Err(InterpolateFailure::MissingRequired {
                variable: "NOPE".into(),
                message: "say ${SET}".into(),
            })
        );
    }

    #[test]
    fn lookup_is_called_only_for_evaluated_names() {
        let seen = std::cell::RefCell::new(Vec::new());
        let lookup = |name: &str| {
            seen.borrow_mut().push(name.to_string());
            (name == "A").then(|| "a".to_string())
        };
        let got = interpolate("${A:-${B}} ${C:+${D}} $$E", &lookup).expect("valid");
        assert_eq!(got.value, "a  $E");
        assert!(got.missing.is_empty());
        assert_eq!(*seen.borrow(), vec!["A".to_string(), "C".to_string()]);
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = "${A:-".repeat(10_000) + &"}".repeat(10_000);
        assert!(run(&deep, &HashMap::new()).is_err());
        let ok = "${A:-".repeat(20) + "x" + &"}".repeat(20);
        assert_eq!(run(&ok, &HashMap::new()).map(|i| i.value), Ok("x".into()));
    }

    #[test]
    fn many_defaults_on_one_line() {
        let line = "${A:-x}".repeat(20_000);
        let got = run(&line, &HashMap::new()).expect("valid");
        assert_eq!(got.value, "x".repeat(20_000));
    }
}
