//! A directory read as a commit (`gitmoor validate` runs in the managed repo's own checkout):
//! the same name checks and budgets as a Git tree, symlinks recorded and never followed, and
//! `.git` (Git's own folder, never part of a commit) left out.

use super::limits::{ContentError, ReadLimits};
use super::names::TreeNames;
use super::snapshot::{in_used_root, Deferred, FileEntry, Origin, Snapshot};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

impl Snapshot {
    /// Reads every file of a directory tree within the default [`ReadLimits`] (tests and tools
    /// that need all bytes at hand).
    pub fn from_dir(root: &Path) -> io::Result<Snapshot> {
        read_dir_tree(root, ReadLimits::default(), true)
    }

    /// Reads a directory tree as the daemon reads a commit: the files of the used roots
    /// (`compose/`, `nginx/`, `ufw/`) at once, the others deferred until asked for
    /// ([`Snapshot::fill_from_disk`]).
    pub fn from_dir_lazy(root: &Path, limits: ReadLimits) -> io::Result<Snapshot> {
        read_dir_tree(root, limits, false)
    }

    /// Reads the deferred files at or under `paths` from disk (a snapshot made by
    /// [`Snapshot::from_dir_lazy`]).
    pub fn fill_from_disk(&mut self, paths: &[String]) -> Result<usize, ContentError> {
        let max = self.limits().max_file_bytes;
        self.fill_with(paths, |path, d| match &d.origin {
            Origin::Disk(file) => read_file(file, max).map_err(|e| ContentError::Read {
                path: super::names::shown(path),
                detail: e.to_string(),
            }),
            Origin::Blob(_) => Err(ContentError::Read {
                path: super::names::shown(path),
                detail: "it is in a Git commit, not on disk".to_string(),
            }),
        })
    }
}

fn invalid(e: ContentError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// At most `max + 1` bytes of a file: a file that grew past the budget after its size was taken
/// is not read whole.
fn read_file(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut data)?;
    Ok(data)
}

fn read_dir_tree(root: &Path, limits: ReadLimits, everything: bool) -> io::Result<Snapshot> {
    let mut snap = Snapshot::with_limits(limits);
    // An explicit stack: a deep tree must not overflow ours.
    let mut pending: Vec<(String, PathBuf)> = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = pending.pop() {
        let mut names = TreeNames::default();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            // Git's own folder (or a submodule's `.git` file): never part of a commit.
            if name.as_bytes() == b".git" {
                continue;
            }
            let path = names
                .admit(&prefix, name.as_bytes())
                .map_err(|bad| invalid(ContentError::bad_name(bad)))?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                pending.push((path, entry.path()));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                let data = target.as_os_str().as_bytes().to_vec();
                snap.budget_mut()
                    .file(&path, data.len() as u64)
                    .map_err(invalid)?;
                snap.files.insert(
                    path,
                    FileEntry {
                        data,
                        executable: false,
                        symlink: true,
                    },
                );
            } else if ft.is_file() {
                let meta = entry.metadata()?;
                let executable = meta.permissions().mode() & 0o111 != 0;
                if !everything && !in_used_root(&path) {
                    let deferred = Deferred {
                        size: meta.len(),
                        origin: Origin::Disk(entry.path()),
                    };
                    snap.insert_deferred(path, executable, false, deferred);
                    continue;
                }
                let budget = snap.budget_mut();
                budget.file(&path, meta.len()).map_err(invalid)?;
                let data = read_file(&entry.path(), budget.limits.max_file_bytes)?;
                if data.len() as u64 != meta.len() {
                    // Grew or shrank while read: count what was read, within the limits.
                    budget.read -= meta.len();
                    budget.file(&path, data.len() as u64).map_err(invalid)?;
                }
                snap.files.insert(
                    path,
                    FileEntry {
                        data,
                        executable,
                        symlink: false,
                    },
                );
            }
            // Sockets, fifos, devices: not content.
        }
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_read_defers_files_outside_the_used_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("compose/app")).unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("compose/app/compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(root.join("docs/big"), vec![b'x'; 100]).unwrap();
        let limits = ReadLimits {
            max_file_bytes: 50,
            max_read_bytes: 1000,
        };
        let mut s = Snapshot::from_dir_lazy(root, limits).unwrap();
        assert!(s.is_deferred("docs/big"));
        assert_eq!(s.get("compose/app/compose.yaml").unwrap().data.len(), 13);
        let eager_id = Snapshot::from_dir(root).unwrap().content_id("compose");
        assert_eq!(s.content_id("compose"), eager_id);
        let err = s.fill_from_disk(&["docs".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("\"docs/big\" is 100 bytes"),
            "{err}"
        );
        // from_dir reads everything, so the same file is refused there.
        let err = read_dir_tree(root, limits, true).unwrap_err();
        assert!(err.to_string().contains("limits.file_bytes"), "{err}");
    }

    #[test]
    fn names_are_checked_and_git_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::fs::create_dir_all(root.join("sub/.git")).unwrap();
        std::fs::write(root.join("a"), "x").unwrap();
        let s = Snapshot::from_dir(root).unwrap();
        assert_eq!(s.files.keys().collect::<Vec<_>>(), ["a"]);
        std::fs::create_dir_all(root.join("x/.GIT")).unwrap();
        std::fs::write(root.join("x/.GIT/hooks"), "x").unwrap();
        let err = Snapshot::from_dir(root).unwrap_err().to_string();
        assert!(
            err.contains("\"x/.GIT\"") && err.contains("Git's own"),
            "{err}"
        );
    }
}
