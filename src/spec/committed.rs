//! Secrets that were committed to the managed repo: `.env` files and PEM private keys. Both are
//! errors: a deploy from a repo that leaks credentials would make the leak look normal.

use crate::source::snapshot::Snapshot;
use crate::spec::error::{Findings, SpecError};

/// `.env.*` names that hold examples, not secrets.
const EXAMPLE_SUFFIXES: &[&str] = &["example", "sample", "template", "dist"];

const FIX: &str = "remove it from Git (also from the history), rotate what it held, and put the values in <secrets_dir>/<stack>.env on the host";

/// Scans every file of the commit.
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

/// The 1-based line of a `-----BEGIN ... PRIVATE KEY-----` line.
fn private_key_line(data: &[u8]) -> Option<u64> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"PRIVATE KEY-----";
    let mut from = 0;
    while let Some(i) = find(&data[from..], BEGIN) {
        let start = from + i;
        let line_end = data[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |p| start + p);
        let label = &data[start + BEGIN.len()..line_end];
        let is_key = find(label, END).is_some_and(|e| {
            label[..e]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
        });
        if is_key {
            let n = data[..start].iter().filter(|b| **b == b'\n').count();
            return Some(n as u64 + 1);
        }
        from = start + BEGIN.len();
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
}
