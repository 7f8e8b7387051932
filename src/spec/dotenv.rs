//! compose's `.env` syntax, read into `Secret` values at once: the format of the host-side
//! secrets files (`host_secrets.rs`) and of a service's `env_file:` (`compose/env.rs`).
//!
//! The syntax is compose's (compose-go's `dotenv` parser):
//!
//! - one `KEY=value` (or `KEY: value`) per statement, optionally prefixed by `export `;
//!   blank lines and lines starting with `#` are skipped; whitespace around the key and before
//!   the value is ignored;
//! - unquoted values run to the end of the line, lose a ` #comment` and trailing whitespace;
//! - `'single quoted'` values are literal (only `\'` is unescaped) and may span lines;
//! - `"double quoted"` values may span lines and understand `\n \r \t \a \b \f \v \" \\ \$` and
//!   `\0NNN` (octal);
//! - unquoted and double-quoted values expand `$VAR`, `${VAR}`, `${VAR:-default}`, … against the
//!   keys defined earlier in the same file (`$$` is a literal `$`).
//!
//! gitmoor is stricter than compose where compose would silently produce something else than the
//! user meant: a reference to a variable not defined earlier is an error (compose warns and uses
//! ""), a key must match `[A-Za-z_][A-Za-z0-9_.-]*`, a bare `KEY` line (compose: "inherit from
//! the environment") is an error, and only a comment may follow a closing quote.
//!
//! No error ever quotes a value, or any text of a line that could be part of one.

use crate::spec::error::SpecError;
use crate::spec::interpolate::{interpolate_detailed, InterpolateFailure};
use crate::spec::model::Secret;
use std::collections::BTreeMap;

/// Parses compose's `.env` syntax. `file` names the file in errors (which never quote a value).
pub fn parse_dotenv(text: &str, file: &str) -> Result<BTreeMap<String, Secret>, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        src: text,
        pos: 0,
        line: 1,
        file,
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    while let Some((key, value)) = parser.statement(&vars)? {
        vars.insert(key, value);
    }
    Ok(vars.into_iter().map(|(k, v)| (k, Secret(v))).collect())
}

/// compose-go's `isSpace`: blank but not a line break.
fn is_inline_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    match bytes.next() {
        Some(b) if b == b'_' || b.is_ascii_alphabetic() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

const KEY_FIX: &str =
    "a variable name starts with a letter or `_` and holds only letters, digits, \
                       `_`, `.` and `-`";

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// 1-based line of `pos`.
    line: u64,
    file: &'a str,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn error(&self, line: u64, message: impl Into<String>) -> SpecError {
        SpecError::new(self.file, message).at_line(Some(line))
    }

    /// Moves `pos` forward by `len` bytes, counting line breaks.
    fn advance(&mut self, len: usize) {
        let skipped = &self.src[self.pos..self.pos + len];
        self.line += skipped.bytes().filter(|b| *b == b'\n').count() as u64;
        self.pos += len;
    }

    /// Skips to the end of the current line, past its line break.
    fn skip_line(&mut self) {
        let len = self
            .rest()
            .find('\n')
            .map_or(self.rest().len(), |at| at + 1);
        self.advance(len);
    }

    fn skip_inline_space(&mut self) {
        let len = self.rest().len() - self.rest().trim_start_matches(is_inline_space).len();
        self.advance(len);
    }

    /// The next `KEY=value`. `None` at the end.
    fn statement(
        &mut self,
        vars: &BTreeMap<String, String>,
    ) -> Result<Option<(String, String)>, SpecError> {
        loop {
            let len = self.rest().len() - self.rest().trim_start().len();
            self.advance(len);
            if self.rest().is_empty() {
                return Ok(None);
            }
            if self.rest().starts_with('#') {
                self.skip_line();
                continue;
            }
            break;
        }
        let line = self.line;
        let key = self.key(line)?;
        self.skip_inline_space();
        let value = match self.rest().chars().next() {
            Some(quote @ ('"' | '\'')) => self.quoted(quote, &key, line, vars)?,
            _ => self.unquoted(&key, line, vars)?,
        };
        Ok(Some((key, value)))
    }

    /// Reads `[export ]KEY=` (or `KEY:`), leaving `pos` after the separator.
    fn key(&mut self, line: u64) -> Result<String, SpecError> {
        let rest = self.rest();
        let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let Some(sep) = line_text.find(['=', ':']) else {
            return Err(self
                .error(line, "expected `KEY=value`, found a line without `=`")
                .fix(
                    "write `KEY=value` (gitmoor does not take variables from its own \
                     environment); a value that spans lines must be quoted",
                ));
        };
        let mut key = &line_text[..sep];
        if let Some(after) = key.strip_prefix("export") {
            if after.starts_with(is_inline_space) {
                key = after;
            }
        }
        let key = key.trim_matches(is_inline_space);
        if !is_valid_key(key) {
            return Err(self
                .error(line, "invalid variable name before `=`")
                .fix(KEY_FIX));
        }
        let key = key.to_string();
        self.advance(sep + 1);
        Ok(key)
    }

    fn unquoted(
        &mut self,
        key: &str,
        line: u64,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, SpecError> {
        let rest = self.rest();
        let raw = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let value = match raw.find(" #") {
            Some(at) => &raw[..at],
            None => raw,
        };
        let value = value.trim_end().to_string();
        self.skip_line();
        self.expand(&value, key, line, vars)
    }

    fn quoted(
        &mut self,
        quote: char,
        key: &str,
        line: u64,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, SpecError> {
        let bytes = self.rest().as_bytes();
        let q = quote as u8;
        let mut chars: Vec<u8> = Vec::new();
        let mut escaped = false;
        let mut close = None;
        for (i, &c) in bytes.iter().enumerate().skip(1) {
            if c != q {
                if !escaped && c == b'\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push(b'\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            close = Some(i);
            break;
        }
        let Some(close) = close else {
            return Err(self
                .error(
                    line,
                    format!("unterminated quoted value (no closing {quote})"),
                )
                .key(key)
                .fix(format!(
                    "end the value with {quote}; write \\{quote} for a {quote} inside it"
                )));
        };
        // Only ASCII bytes were dropped, so this is still UTF-8.
        let value = String::from_utf8_lossy(&chars).into_owned();
        self.advance(close + 1);
        // Only a comment may follow the closing quote.
        self.skip_inline_space();
        match self.rest().chars().next() {
            None | Some('\n') | Some('#') => self.skip_line(),
            Some(_) => {
                return Err(self
                    .error(self.line, "unexpected text after the closing quote")
                    .key(key)
                    .fix("quote the whole value, and put each KEY=value on its own line"))
            }
        }
        if quote == '\'' {
            return Ok(value);
        }
        self.expand(&expand_escapes(&value), key, line, vars)
    }

    /// Expands `$VAR` and friends against the keys defined so far.
    fn expand(
        &self,
        value: &str,
        key: &str,
        line: u64,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, SpecError> {
        if !value.contains('$') {
            return Ok(value.to_string());
        }
        const LITERAL: &str = "write `$$` for a literal `$` (or single-quote the whole value)";
        let lookup = |name: &str| vars.get(name).cloned();
        match interpolate_detailed(value, &lookup) {
            Ok(done) if done.missing.is_empty() => Ok(done.value),
            Ok(_) => Err(self
                .error(
                    line,
                    "the value refers to a variable that is not defined earlier in this file",
                )
                .key(key)
                .fix(format!("define it on a line above, or {LITERAL}"))),
            Err(InterpolateFailure::InvalidTemplate) => Err(self
                .error(line, "the value holds an invalid `$` expression")
                .key(key)
                .fix(LITERAL)),
            Err(InterpolateFailure::MissingRequired { .. }) => Err(self
                .error(
                    line,
                    "the value requires (`${VAR:?…}`) a variable that is not defined earlier in this file",
                )
                .key(key)
                .fix(format!("define it on a line above, or {LITERAL}"))),
        }
    }
}

/// compose-go's `expandEscapes` for double-quoted values: `\a \b \f \n \r \t \v \" \\` become
/// their characters, `\$` becomes `$$` (a literal `$` for the interpolation that follows),
/// `\0` followed by up to three digits is octal; every other backslash stays.
fn expand_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let simple = match chars.peek().map(|(_, next)| *next) {
            Some('a') => Some("\u{7}"),
            Some('b') => Some("\u{8}"),
            Some('f') => Some("\u{c}"),
            Some('n') => Some("\n"),
            Some('r') => Some("\r"),
            Some('t') => Some("\t"),
            Some('v') => Some("\u{b}"),
            Some('"') => Some("\""),
            Some('\\') => Some("\\"),
            Some('$') => Some("$$"),
            _ => None,
        };
        if let Some(replacement) = simple {
            out.push_str(replacement);
            chars.next();
            continue;
        }
        if chars.peek().map(|(_, next)| *next) == Some('0') {
            chars.next();
            let digits_from = at + 2;
            let digits: String = s[digits_from..]
                .chars()
                .take(3)
                .take_while(|d| d.is_ascii_digit())
                .collect();
            for _ in 0..digits.len() {
                chars.next();
            }
            out.push_str(&octal(&digits));
            continue;
        }
        out.push('\\');
    }
    out
}

/// Go's `strconv.UnquoteChar` on `\` + `digits`: exactly three octal digits up to 0o377 give that
/// character; anything else stays as written (without the `0`, as compose-go leaves it).
fn octal(digits: &str) -> String {
    if digits.len() == 3 {
        if let Ok(code) = u32::from_str_radix(digits, 8) {
            if code <= 0o377 {
                if let Some(c) = char::from_u32(code) {
                    return c.to_string();
                }
            }
        }
    }
    format!("\\{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, SpecError> {
        parse_dotenv(text, "secrets/api.env").map(|vars| {
            vars.into_iter()
                .map(|(k, v)| (k, v.expose().to_string()))
                .collect()
        })
    }

    fn one(text: &str) -> (String, String) {
        let vars = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(vars.len(), 1, "{text:?}: {vars:?}");
        vars.into_iter().next().expect("one entry")
    }

    /// (line, key, value), most from compose-go's dotenv tests.
    const SINGLE: &[(&str, &str, &str)] = &[
        ("FOO=bar", "FOO", "bar"),
        ("FOO =bar", "FOO", "bar"),
        ("FOO= bar", "FOO", "bar"),
        ("FOO = bar  ", "FOO", "bar"),
        ("FOO=", "FOO", ""),
        ("FOO=   ", "FOO", ""),
        ("FOO=\"\"", "FOO", ""),
        ("FOO=''", "FOO", ""),
        ("FOO=\"bar\"", "FOO", "bar"),
        ("FOO='bar'", "FOO", "bar"),
        (r#"FOO="escaped\"bar""#, "FOO", "escaped\"bar"),
        (r#"FOO="\"quoted\"""#, "FOO", "\"quoted\""),
        (r#"FOO="'d'""#, "FOO", "'d'"),
        ("OPTION_A: 1", "OPTION_A", "1"),
        ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
        ("OPTION_A=1:B", "OPTION_A", "1:B"),
        ("export OPTION_A=2", "OPTION_A", "2"),
        (r"export OPTION_B='\n'", "OPTION_B", r"\n"),
        ("export exportFoo=2", "exportFoo", "2"),
        ("exportFOO=2", "exportFOO", "2"),
        ("export_FOO =2", "export_FOO", "2"),
        ("export.FOO= 2", "export.FOO", "2"),
        ("export\tOPTION_A=2", "OPTION_A", "2"),
        ("  export OPTION_A=2", "OPTION_A", "2"),
        ("\texport OPTION_A=2", "OPTION_A", "2"),
        (r#"export OPTION_A="export A""#, "OPTION_A", "export A"),
        ("export=1", "export", "1"),
        (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
        (r"FOO=a\tb", "FOO", r"a\tb"),
        (r#"FOO="a\tb""#, "FOO", "a\tb"),
        (
            r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
            "KEY",
            "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ",
        ),
        ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
        ("my-key=1", "my-key", "1"),
        ("_x=1", "_x", "1"),
        ("FOO=foobar=", "FOO", "foobar="),
        ("FOO=bar ", "FOO", "bar"),
        ("FOO=bar # this is foo", "FOO", "bar"),
        ("FOO=bar #this is foo", "FOO", "bar"),
        ("FOO=bar #", "FOO", "bar"),
        (
            "FOO=123#not-an-inline-comment",
            "FOO",
            "123#not-an-inline-comment",
        ),
        (
            "FOO=a\t#tab-is-not-a-comment",
            "FOO",
            "a\t#tab-is-not-a-comment",
        ),
        (r#"FOO="bar#baz""#, "FOO", "bar#baz"),
        (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
        (r#"FOO="bar#baz" # comment"#, "FOO", "bar#baz"),
        ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
        (r#"FOO="ba#r""#, "FOO", "ba#r"),
        (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\u{7}z"),
        (r#"FOO="bar\\\n\ b\az""#, "FOO", "bar\\\n\\ b\u{7}z"),
        (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
        (" KEY =value", "KEY", "value"),
        ("\tKEY=value", "KEY", "value"),
        (r#"KEY="\0123""#, "KEY", "S"),
        (r#"KEY="\0""#, "KEY", "\\"),
        (r#"KEY="\012""#, "KEY", "\\12"),
        (r#"KEY="\x07""#, "KEY", r"\x07"),
        (r#"KEY="\u12e4""#, "KEY", r"\u12e4"),
        (r"KEY='it\'s'", "KEY", "it's"),
        (r"KEY='a\\b\n'", "KEY", r"a\\b\n"),
        ("KEY=\"multi\nline\"", "KEY", "multi\nline"),
        ("KEY='multi\nline'", "KEY", "multi\nline"),
        ("KEY=crlf\r\n", "KEY", "crlf"),
        ("KEY=\"crlf\"\r\n", "KEY", "crlf"),
        ("\u{feff}KEY=bom", "KEY", "bom"),
        ("KEY=ünïcode ✓", "KEY", "ünïcode ✓"),
        ("KEY=pa$$word", "KEY", "pa$word"),
        (r#"KEY="pa\$word""#, "KEY", "pa$word"),
        (r#"KEY="pa\${word}""#, "KEY", "pa${word}"),
        ("KEY='pa$word'", "KEY", "pa$word"),
        ("KEY=cost 5$", "KEY", "cost 5$"),
        ("KEY=${UNSET:-fallback}", "KEY", "fallback"),
        ("KEY=${UNSET-}", "KEY", ""),
    ];

    #[test]
    fn single_statements() {
        let mut failures = Vec::new();
        for (text, key, value) in SINGLE {
            match parse(text) {
                Ok(vars)
                    if vars.len() == 1 && vars.get(*key).map(String::as_str) == Some(value) => {}
                other => failures.push(format!("{text:?}: want {key}={value:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn whole_file() {
        let text = "\
# database
\n\r\n   \t
export DB_USER=app   # the user
DB_PASS='p@ss $word \"x\"'
DB_URL=\"postgres://${DB_USER}:${DB_PASS}@db/app\"
  # indented comment
EMPTY=
GREETING=\"hello
world\"
LAST=${DB_USER}-$DB_USER
DB_USER=override";
        let vars = parse(text).expect("valid");
        let want: BTreeMap<String, String> = [
            ("DB_USER", "override"),
            ("DB_PASS", "p@ss $word \"x\""),
            ("DB_URL", "postgres://app:p@ss $word \"x\"@db/app"),
            ("EMPTY", ""),
            ("GREETING", "hello\nworld"),
            ("LAST", "app-app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, want);
    }

    #[test]
    fn blank_and_comment_only_files_are_empty() {
        for text in [
            "",
            "\n",
            "\r\n",
            "\t\t ",
            "# Comment",
            "\t # comment\n\n# x=1",
        ] {
            assert_eq!(parse(text).map(|v| v.len()), Ok(0), "{text:?}");
        }
    }

    #[test]
    fn expansion_sees_only_earlier_keys() {
        assert!(parse("A=${B}\nB=1").is_err());
        assert_eq!(
            parse("A=1\nA=${A}2").map(|v| v["A"].clone()),
            Ok("12".to_string())
        );
        let (_, v) = one("A=\"${B:-x} ${B:+y}\"");
        assert_eq!(v, "x ");
    }

    /// (text, line of the error, words the message must hold)
    const INVALID: &[(&str, u64, &str)] = &[
        ("A=1\nNOEQUALS\n", 2, "without `=`"),
        ("A=1\nexport B\n", 2, "without `=`"),
        ("=value", 1, "invalid variable name"),
        ("1KEY=value", 1, "invalid variable name"),
        ("MY KEY=value", 1, "invalid variable name"),
        ("K\"EY=value", 1, "invalid variable name"),
        ("KÉY=value", 1, "invalid variable name"),
        ("A=1\n\nKEY=\"", 3, "unterminated"),
        ("KEY=\"value", 1, "unterminated"),
        ("KEY=\"value\\\"", 1, "unterminated"),
        ("KEY=\"value'", 1, "unterminated"),
        ("KEY='", 1, "unterminated"),
        ("KEY='value", 1, "unterminated"),
        ("KEY='value\\'", 1, "unterminated"),
        ("KEY='value\"", 1, "unterminated"),
        ("KEY=\"a\nb\nc\" junk\nB=1", 3, "after the closing quote"),
        ("KEY=\"a\"B=1", 1, "after the closing quote"),
        ("KEY=$UNDEFINED", 1, "not defined earlier"),
        ("KEY=\"${UNDEFINED}\"", 1, "not defined earlier"),
        ("KEY=${ broken}", 1, "invalid `$` expression"),
        ("KEY=\"${\"", 1, "invalid `$` expression"),
        ("KEY=${NEED:?set it}", 1, "requires"),
    ];

    #[test]
    fn invalid_files_name_file_line_and_fix() {
        let mut failures = Vec::new();
        for (text, line, words) in INVALID {
            match parse(text) {
                Err(e)
                    if e.file == "secrets/api.env"
                        && e.line == Some(*line)
                        && e.message.contains(words)
                        && e.fix.is_some() => {}
                other => failures.push(format!(
                    "{text:?}: want an error at line {line} saying {words:?}, got {other:?}"
                )),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn errors_name_the_key_of_a_bad_value() {
        let e = parse("GOOD=1\nDB_PASS=\"abc").expect_err("unterminated");
        assert_eq!(e.key.as_deref(), Some("DB_PASS"));
        assert!(e.to_string().starts_with("secrets/api.env:2: DB_PASS: "));
    }

    #[test]
    fn errors_never_quote_a_value() {
        let secret = "hunter2";
        let cases = [
            format!("PASS={secret}$UNSET"),
            format!("PASS=\"{secret}${{UNSET}}\""),
            format!("PASS=\"{secret}"),
            format!("PASS='{secret}"),
            format!("PASS=\"{secret}\" {secret}"),
            format!("PASS={secret}${{ x}}"),
            format!("PASS={secret}${{X:?{secret}}}"),
            format!("PASS=\"a\n{secret}"),
            format!("PASS=a\n{secret}\n"),
            format!("PASS=a\n{secret} x=1\n"),
            format!("PASS=a\n{secret}\"=1\n"),
            secret.to_string(),
        ];
        for text in &cases {
            let e = parse(text).expect_err(text);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(secret), "{text:?} leaks: {shown}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(expand_escapes(r"\\n"), r"\n");
        assert_eq!(expand_escapes(r"a\qb"), r"a\qb");
        assert_eq!(expand_escapes(r"\01234"), "S4");
        assert_eq!(expand_escapes(r"\0777"), r"\777");
        assert_eq!(expand_escapes(r"\0189"), r"\189");
        assert_eq!(expand_escapes(r"\0200"), "\u{80}");
        assert_eq!(expand_escapes("end\\"), "end\\");
        assert_eq!(expand_escapes(r"\$X \é"), r"$$X \é");
    }
}
