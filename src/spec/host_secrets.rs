//! The secrets dir: `<secrets_dir>/<stack>.env`, the host-side file that plays the part of a
//! compose project's `.env` (not compose's `secrets:` key). Values are wrapped in `Secret` as soon
//! as they are read; the syntax is `dotenv.rs`'s.

use crate::spec::dotenv::parse_dotenv;
use crate::spec::error::SpecError;
use crate::spec::model::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One stack's secrets file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsFile {
    pub path: PathBuf,
    pub vars: BTreeMap<String, Secret>,
}

/// `<dir>/<stack>.env`.
pub fn stack_secrets_path(dir: &Path, stack: &str) -> PathBuf {
    dir.join(format!("{stack}.env"))
}

/// Reads `<dir>/<stack>.env`. `Ok(None)` when the file does not exist.
pub fn load_stack_secrets(dir: &Path, stack: &str) -> Result<Option<SecretsFile>, SpecError> {
    let path = stack_secrets_path(dir, stack);
    let shown = path.display().to_string();
    if stack.is_empty() || stack.contains(['/', '\\', '\0']) || stack == "." || stack == ".." {
        return Err(SpecError::new(
            shown,
            "invalid stack name for a secrets file (it must be a plain folder name)",
        ));
    }
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SpecError::new(
                shown.clone(),
                format!("cannot read the secrets file: {e}"),
            )
            .fix(format!(
                "make {shown} a regular file readable by the user gitmoor runs as (chmod 600, owned by that user)"
            )))
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.as_bytes();
            let valid = e.utf8_error().valid_up_to();
            let line = bytes[..valid].iter().filter(|b| **b == b'\n').count() as u64 + 1;
            return Err(SpecError::new(shown, "the file is not valid UTF-8")
                .at_line(Some(line))
                .fix("save it as UTF-8"));
        }
    };
    let vars = parse_dotenv(&text, &shown)?;
    Ok(Some(SecretsFile { path, vars }))
}

/// A warning when the secrets file at `path` can be read (or written) by its group or by
/// others. It is still loaded; this only says how to close it.
pub fn permission_warning(path: &Path) -> Option<SpecError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(
                SpecError::new(
                    path.display().to_string(),
                    format!(
                        "the secrets file is accessible to its group or to other users (mode {:03o})",
                        mode & 0o777
                    ),
                )
                .fix(format!("chmod 600 {}", path.display())),
            );
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_debug_as_stars() {
        let vars = parse_dotenv("PASS=hunter2\n", "x.env").expect("valid");
        let shown = format!("{vars:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("PASS"), "{shown}");
        let file = SecretsFile {
            path: PathBuf::from("/x.env"),
            vars,
        };
        assert!(!format!("{file:?}").contains("hunter2"));
    }

    #[test]
    fn load_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_stack_secrets(dir.path(), "api"), Ok(None));
    }

    #[test]
    fn load_reads_the_stack_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.env");
        std::fs::write(&path, "TOKEN=abc\n").expect("write");
        let loaded = load_stack_secrets(dir.path(), "api")
            .expect("readable")
            .expect("present");
        assert_eq!(loaded.path, path);
        assert_eq!(loaded.vars["TOKEN"].expose(), "abc");
    }

    #[test]
    fn load_reports_parse_errors_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("api.env"), "OK=1\nbroken line\n").expect("write");
        let e = load_stack_secrets(dir.path(), "api").expect_err("invalid");
        assert!(e.file.ends_with("api.env"), "{e}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn load_unreadable_names_path_and_os_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be cannot be read as one, even as root.
        std::fs::create_dir(dir.path().join("api.env")).expect("mkdir");
        let e = load_stack_secrets(dir.path(), "api").expect_err("unreadable");
        assert!(e.file.ends_with("api.env"), "{e}");
        assert!(e.message.contains("cannot read"), "{e}");
        assert!(e.message.contains("os error"), "{e}");
    }

    #[test]
    fn load_rejects_non_utf8_without_quoting() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("api.env"), b"A=1\nB=hunter2\xff\n").expect("write");
        let e = load_stack_secrets(dir.path(), "api").expect_err("not utf-8");
        assert_eq!(e.line, Some(2));
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn load_rejects_stack_names_with_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        for stack in ["", "../x", "a/b", ".."] {
            assert!(load_stack_secrets(dir.path(), stack).is_err(), "{stack:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn permission_warning_for_group_or_other_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.env");
        std::fs::write(&path, "TOKEN=abc\n").expect("write");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(permission_warning(&path), None);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let w = permission_warning(&path).expect("warning");
        assert_eq!(w.fix, Some(format!("chmod 600 {}", path.display())));
        assert!(w.message.contains("644"), "{w}");
        // Still loaded.
        let loaded = load_stack_secrets(dir.path(), "api")
            .expect("ok")
            .expect("some");
        assert_eq!(loaded.vars["TOKEN"].expose(), "abc");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(permission_warning(&path).is_some());
        assert_eq!(permission_warning(&dir.path().join("absent.env")), None);
    }
}
