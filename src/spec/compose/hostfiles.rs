//! Host files: the files a stack needs that must stay off Git (an `env_file:` holding passwords,
//! a `secrets:` file) live in the stack's own folder of the secrets dir, `<secrets_dir>/<stack>/`,
//! at the path the compose file writes (`env/netbox.env` -> `<secrets_dir>/netbox/env/netbox.env`).
//!
//! The path comes from the repo, so it is hostile: it may not be absolute nor climb out with `..`,
//! and a symlink inside the folder may not lead out of it (the folder is checked after every link
//! is resolved), so a commit can only ever name files the host's admin put in that stack's folder.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// An env file is parsed in memory: bigger than this is a mistake, not an env file.
pub(crate) const ENV_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// One host file, read.
pub(crate) struct HostFile {
    /// `<secrets_dir>/<stack>/<rel>` as written (not resolved), for messages and input keys.
    pub shown: String,
    pub data: Vec<u8>,
}

/// Why a host file cannot be used. Messages name the path, never content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostFileError {
    /// Not a path inside the stack's folder (empty, absolute, or with `..`).
    NotInside,
    Missing {
        shown: String,
    },
    /// A symlink (the file or a folder on its way) that resolves outside the stack's folder.
    Escapes {
        shown: String,
    },
    NotAFile {
        shown: String,
    },
    TooLarge {
        shown: String,
        max: u64,
    },
    Unreadable {
        shown: String,
        error: String,
    },
}

impl HostFileError {
    /// The message and the fix, for a file the compose file names as `what` (`env file`).
    pub(crate) fn describe(&self, what: &str, stack: &str) -> (String, String) {
        match self {
            HostFileError::NotInside => (
                format!("the {what} is not a path inside the stack's folder of the secrets dir"),
                format!(
                    "write its path relative to <secrets_dir>/{stack}/ (no `..`, not absolute)"
                ),
            ),
            HostFileError::Missing { shown } => (
                format!("the {what} {shown} does not exist"),
                format!("create {shown} on the host"),
            ),
            HostFileError::Escapes { shown } => (
                format!("the {what} {shown} is a symlink that leads out of <secrets_dir>/{stack}/"),
                format!("put the file itself in <secrets_dir>/{stack}/"),
            ),
            HostFileError::NotAFile { shown } => (
                format!("the {what} {shown} is not a regular file"),
                "point the path at a regular file".to_string(),
            ),
            HostFileError::TooLarge { shown, max } => (
                format!("the {what} {shown} is larger than {max} bytes"),
                "keep only the variables the service needs in it".to_string(),
            ),
            HostFileError::Unreadable { shown, error } => (
                format!("cannot read the {what} {shown}: {error}"),
                "make it readable by the user gitmoor runs as".to_string(),
            ),
        }
    }
}

/// The normal components of `rel` when it is a path inside a folder: not empty, not absolute,
/// no `..` (`./a/./b` is `a/b`).
pub fn inside_parts(rel: &str) -> Option<Vec<&str>> {
    if rel.is_empty() || rel.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then_some(parts)
}

/// `<dir>/<stack>/<parts…>`.
pub(crate) fn host_path(dir: &Path, stack: &str, parts: &[&str]) -> PathBuf {
    parts.iter().fold(dir.join(stack), |p, c| p.join(c))
}

/// Reads `<dir>/<stack>/<rel>`, refusing anything that resolves outside `<dir>/<stack>/`.
/// `max`: the largest file read (None: no limit).
pub(crate) fn read_host_file(
    dir: &Path,
    stack: &str,
    rel: &str,
    max: Option<u64>,
) -> Result<HostFile, HostFileError> {
    let parts = inside_parts(rel).ok_or(HostFileError::NotInside)?;
    let base = dir.join(stack);
    let path = host_path(dir, stack, &parts);
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| HostFileError::Unreadable {
        shown: shown.clone(),
        error: e.to_string(),
    };
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HostFileError::Missing { shown })
        }
        // A folder on the way that is a file, or not searchable: the file cannot be there.
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(HostFileError::Missing { shown })
        }
        Err(e) => return Err(unreadable(e)),
    }
    // Every link resolved, for the file and for the folder: the file must stay inside.
    let real = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        // A link that leads nowhere.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HostFileError::Missing { shown })
        }
        Err(e) => return Err(unreadable(e)),
    };
    let real_base = std::fs::canonicalize(&base).map_err(unreadable)?;
    if !real.starts_with(&real_base) || real == real_base {
        return Err(HostFileError::Escapes { shown });
    }
    let meta = std::fs::metadata(&real).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(HostFileError::NotAFile { shown });
    }
    if let Some(max) = max.filter(|m| meta.len() > *m) {
        return Err(HostFileError::TooLarge { shown, max });
    }
    let file = std::fs::File::open(&real).map_err(unreadable)?;
    let mut data = Vec::new();
    // Read from the resolved path (what was checked), within the limit even if it grew since.
    let cap = max.map_or(u64::MAX, |m| m + 1);
    file.take(cap).read_to_end(&mut data).map_err(unreadable)?;
    if let Some(max) = max.filter(|m| data.len() as u64 > *m) {
        return Err(HostFileError::TooLarge { shown, max });
    }
    Ok(HostFile { shown, data })
}
