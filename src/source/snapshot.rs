//! A commit's files held in memory: the one view of the managed repo that the spec reader uses.
//!
//! Both a Git commit (the daemon) and a plain directory (`gitmoor validate` in the managed repo's
//! own CI) turn into a `Snapshot`, so validation and deployment read the very same bytes the same
//! way. Managed repos are small (compose files, nginx sites, firewall rules, build contexts), so
//! holding them in memory is cheaper than a checkout and needs no cleanup.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// One file of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub data: Vec<u8>,
    /// Git mode 100755 (or an executable bit on disk).
    pub executable: bool,
    /// A symlink; `data` is the link target.
    pub symlink: bool,
}

/// All files of one commit (or directory), keyed by their `/`-separated path from the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub files: BTreeMap<String, FileEntry>,
}

impl Snapshot {
    /// A snapshot of plain files `(path, text)`: the world of a unit test.
    #[cfg(test)]
    pub fn from_texts(files: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (p, d) in files {
            s.files.insert(
                p.to_string(),
                FileEntry {
                    data: d.as_bytes().to_vec(),
                    executable: false,
                    symlink: false,
                },
            );
        }
        s
    }

    /// Reads a directory tree, skipping `.git`. Symlinks are recorded, not followed.
    pub fn from_dir(root: &Path) -> io::Result<Snapshot> {
        let mut snap = Snapshot::default();
        walk_dir(root, "", &mut snap)?;
        Ok(snap)
    }

    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        self.files.get(path)
    }

    /// Paths of the entries directly inside `dir` ("" is the root): files and sub-directories,
    /// each once, sorted.
    pub fn list_dir(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut names: Vec<String> = Vec::new();
        for path in self.files.keys().filter(|p| p.starts_with(&prefix)) {
            let rest = &path[prefix.len()..];
            let first = rest.split('/').next().unwrap_or(rest).to_string();
            if names.last() != Some(&first) {
                names.push(first);
            }
        }
        names.dedup();
        names
    }

    /// True when `path` is a file or a directory holding at least one file.
    pub fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.files.keys().any(|p| is_under(p, path))
    }

    /// A content hash of a file or of everything under a directory (paths, modes and bytes).
    /// Used to recreate a container when a repo file it mounts or reads changes. None when the
    /// path does not exist.
    pub fn content_id(&self, path: &str) -> Option<String> {
        let mut h = Sha256::new();
        let mut any = false;
        for (p, f) in &self.files {
            if p == path || is_under(p, path) {
                any = true;
                h.update(p.as_bytes());
                h.update([0, f.executable as u8, f.symlink as u8]);
                h.update((f.data.len() as u64).to_le_bytes());
                h.update(&f.data);
            }
        }
        any.then(|| hex::encode(&h.finalize()[..10]))
    }

    /// Writes every file under `prefix` into `dest` (relative paths kept, `prefix` stripped).
    /// Used to give relative bind mounts a stable host path.
    pub fn write_subtree(&self, prefix: &str, dest: &Path) -> io::Result<()> {
        for (p, f) in &self.files {
            let Some(rel) = p.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let target = dest.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if f.symlink {
                let link = String::from_utf8_lossy(&f.data).to_string();
                let _ = std::fs::remove_file(&target);
                std::os::unix::fs::symlink(link, &target)?;
            } else {
                std::fs::write(&target, &f.data)?;
                use std::os::unix::fs::PermissionsExt;
                let mode = if f.executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
            }
        }
        Ok(())
    }
}

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

fn walk_dir(base: &Path, rel: &str, snap: &mut Snapshot) -> io::Result<()> {
    let dir = if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    };
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if rel.is_empty() && name == ".git" {
            continue;
        }
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk_dir(base, &path, snap)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let data = target.to_string_lossy().as_bytes().to_vec();
            snap.files.insert(
                path,
                FileEntry {
                    data,
                    executable: false,
                    symlink: true,
                },
            );
        } else if ft.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let executable = entry.metadata()?.permissions().mode() & 0o111 != 0;
            let data = std::fs::read(entry.path())?;
            snap.files.insert(
                path,
                FileEntry {
                    data,
                    executable,
                    symlink: false,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(paths: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        for p in paths {
            s.files.insert(
                p.to_string(),
                FileEntry {
                    data: p.as_bytes().to_vec(),
                    executable: false,
                    symlink: false,
                },
            );
        }
        s
    }

    #[test]
    fn lists_direct_children_once() {
        let s = snap(&[
            "compose/api/compose.yaml",
            "compose/api/conf/a",
            "compose/db/compose.yaml",
            "README.md",
        ]);
        assert_eq!(s.list_dir("compose"), vec!["api", "db"]);
        assert_eq!(s.list_dir(""), vec!["README.md", "compose"]);
        assert_eq!(s.list_dir("compose/api"), vec!["compose.yaml", "conf"]);
    }

    #[test]
    fn content_id_changes_only_with_content_under_the_path() {
        let a = snap(&["x/conf/a", "x/other"]);
        let mut b = a.clone();
        b.files.get_mut("x/other").unwrap().data = b"changed".to_vec();
        assert_eq!(a.content_id("x/conf"), b.content_id("x/conf"));
        b.files.get_mut("x/conf/a").unwrap().data = b"changed".to_vec();
        assert_ne!(a.content_id("x/conf"), b.content_id("x/conf"));
        assert_eq!(
            a.content_id("x/con"),
            None,
            "a prefix of a name is not a directory"
        );
    }
}
