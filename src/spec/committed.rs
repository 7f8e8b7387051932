//! Secrets that were committed to the managed repo: `.env` files and PEM private keys. Both are
//! errors: a deploy from a repo that leaks credentials would make the leak look normal.

use crate::source::snapshot::Snapshot;
use crate::spec::error::{Findings, SpecError};

/// `.env.*` names that hold examples, not secrets.
const EXAMPLE_SUFFIXES: &[&str] = &["example", "sample", "template", "dist"];

const FIX: &str = "remove it from Git (also from the history), rotate what it held, and put the values in <secrets_dir>/<stack>.env on the host";

/// Scans the commit: every file's name (a committed `.env` anywhere), and the bytes of every
/// file that was read (`compose/`, `nginx/`, `ufw/`, build contexts and other files the spec
/// uses). Files outside those are never read (see `source::snapshot`), so a key committed in
/// `docs/` is not seen: it is not deployed either.
pub fn scan(snap: &Snapshot) -> Findings {
    let mut findings = Findings::default();
    for (path, entry) in &snap.files {
        if entry.symlink {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if is_env_file(name) {
            findings.errors.push(
                SpecError::new(
                    path,
                    "a .env file is committed; it holds secrets by convention",
                )
                .fix(FIX),
            );
            continue;
        }
        if let Some(line) = private_key_line(&entry.data) {
            findings.errors.push(
                SpecError::new(path, "a private key is committed")
                    .at_line(Some(line))
                    .fix(FIX),
            );
        }
    }
    findings
}

/// `.env` and `.env.<anything>` except the example names.
fn is_env_file(name: &str) -> bool {
    match name.strip_prefix(".env") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('.')
            .is_some_and(|suffix| !EXAMPLE_SUFFIXES.contains(&suffix)),
        None => false,
    }
}

/// The 1-based line of a `-----BEGIN <LABEL>PRIVATE KEY-----` header, the label being capitals,
/// digits and spaces (`RSA `, `OPENSSH `, none).
///
/// One pass over the data: after each `-----BEGIN `, the label is the run of label characters
/// that follows, and it is a key header when that run ends with `PRIVATE KEY` right before
/// `-----`. A run never holds a `-`, so the next candidate starts after it and no byte is read
/// twice: a file of nothing but `-----BEGIN ` (made to be slow) costs one pass, not one pass
/// per candidate.
fn private_key_line(data: &[u8]) -> Option<u64> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const KEY: &[u8] = b"PRIVATE KEY";
    const DASHES: &[u8] = b"-----";
    let is_label = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ';
    let mut from = 0;
    while let Some(i) = find(&data[from..], BEGIN) {
        let start = from + i;
        let label_start = start + BEGIN.len();
        let run = data[label_start..]
            .iter()
            .take_while(|b| is_label(b))
            .count();
        let label_end = label_start + run;
        if data[label_start..label_end].ends_with(KEY) && data[label_end..].starts_with(DASHES) {
            let n = data[..start].iter().filter(|b| **b == b'\n').count();
            return Some(n as u64 + 1);
        }
        from = label_end;
    }
    None
}

/// The first `needle` in `hay`. Looks for the needle's first byte, then compares: linear for the
/// short fixed needle it is used with.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut at = 0;
    while at + needle.len() <= hay.len() {
        let i = at
            + hay[at..=hay.len() - needle.len()]
                .iter()
                .position(|b| *b == first)?;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        Snapshot::from_texts(files)
    }

    #[test]
    fn env_file_names() {
        let cases = [
            (".env", true),
            (".env.production", true),
            (".env.local", true),
            (".env.example", false),
            (".env.sample", false),
            (".env.template", false),
            (".env.dist", false),
            ("app.env", false),
            (".envrc", false),
            ("env", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_env_file(name), want, "{name}");
        }
    }

    #[test]
    fn finds_env_files_and_private_keys_with_path_line_and_fix() {
        let key = "# deploy key\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n";
        let s = snap(&[
            ("compose/api/.env", "A=1"),
            ("compose/api/.env.example", "A="),
            ("keys/id", key),
            ("keys/rsa.pem", "-----BEGIN RSA PRIVATE KEY-----\nx\n"),
            (
                "certs/cert.pem",
                "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
            ),
            (
                "docs/pem.md",
                "text -----BEGIN PUBLIC KEY----- and PRIVATE KEY-----\n",
            ),
            ("README.md", "no secrets"),
        ]);
        let f = scan(&s);
        let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(shown[0].starts_with("compose/api/.env: a .env file is committed"));
        assert!(shown[0].contains("rotate"));
        assert!(shown[1].starts_with("keys/id:2: a private key is committed; remove it from Git"));
        assert!(shown[2].starts_with("keys/rsa.pem:1: "));
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn key_headers_and_near_misses() {
        let cases: &[(&str, Option<u64>)] = &[
            ("-----BEGIN PRIVATE KEY-----", Some(1)),
            ("x\n-----BEGIN RSA PRIVATE KEY-----", Some(2)),
            ("a\nb\n  -----BEGIN ENCRYPTED PRIVATE KEY-----\n", Some(3)),
            ("-----BEGIN -----BEGIN OPENSSH PRIVATE KEY-----", Some(1)),
            ("-----BEGIN PRIVATE KEY PRIVATE KEY-----", Some(1)),
            ("-----BEGIN PUBLIC KEY-----", None),
            ("-----BEGIN PRIVATE KEY----", None),
            ("-----BEGIN private PRIVATE KEY-----", None),
            ("-----BEGIN RSA\nPRIVATE KEY-----", None),
            ("text -----BEGIN PUBLIC KEY----- and PRIVATE KEY-----", None),
            ("-----BEGIN", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(private_key_line(text.as_bytes()), *want, "{text:?}");
        }
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"a", b"ab"), None);
        assert_eq!(find(b"", b"ab"), None);
    }

    #[test]
    fn a_line_of_begin_markers_is_one_pass() {
        // The old scan read to the end of the line for each of these 450,000 candidates:
        // about 10^12 byte reads, many minutes. Now one pass.
        let mut data = b"-----BEGIN ".repeat(5_000_000 / 11);
        assert_eq!(private_key_line(&data), None);
        data.extend_from_slice(b"\n-----BEGIN DSA PRIVATE KEY-----\n");
        assert_eq!(private_key_line(&data), Some(2));
    }
}
