//! A commit's files: the one view of the managed repo that the spec reader uses.
//!
//! Both a Git commit (the daemon) and a plain directory (`gitmoor validate` in the managed repo's
//! own CI) turn into a `Snapshot`, so validation and deployment read the very same bytes the same
//! way, with no checkout to clean up.
//!
//! Reading is lazy. Every entry is recorded (path, mode, size), but bytes are held only for the
//! folders gitmoor always uses ([`USED_ROOTS`]); any other file is *deferred*: it is listed with
//! empty `data` until a reader asks for it. A build context may be any folder of the repo, and an
//! `env_file` may sit outside the stack folder, so such a request is remembered
//! ([`Snapshot::take_wanted`]) and the caller fills those paths ([`Snapshot::fill_with`],
//! `GitSource::fill`) and reads again. A 1 GB file in `docs/` thus costs nothing unless something
//! uses it, and then it is refused by the budget with its name (see [`super::limits`]).

use super::limits::{Budget, ContentError, ReadLimits};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Mutex;

/// The top folders whose files are read at once: the stacks (materialised as a whole), nginx
/// sites and firewall rules. Everything else is read only when asked for.
pub const USED_ROOTS: &[&str] = &["compose", "nginx", "ufw"];

/// True when `path` is one of [`USED_ROOTS`] or inside one.
pub fn in_used_root(path: &str) -> bool {
    USED_ROOTS.iter().any(|r| path == *r || is_under(path, r))
}

/// One file of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The bytes; empty while the file is deferred ([`Snapshot::is_deferred`]).
    pub data: Vec<u8>,
    /// Git mode 100755 (or an executable bit on disk).
    pub executable: bool,
    /// A symlink; `data` is the link target.
    pub symlink: bool,
}

/// Where the bytes of a deferred file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Git blob of the cache repository (the id itself, 20 bytes, not its 40-byte hex text:
    /// a commit may list hundreds of thousands of files it never uses).
    Blob(git2::Oid),
    /// A file on disk (`Snapshot::from_dir_lazy`).
    Disk(PathBuf),
}

/// A file recorded but not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// Its size in bytes, from the object header or the file's metadata.
    pub size: u64,
    pub origin: Origin,
}

/// All files of one commit (or directory), keyed by their `/`-separated path from the root.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every file; a deferred one with empty `data`.
    pub files: BTreeMap<String, FileEntry>,
    deferred: BTreeMap<String, Deferred>,
    budget: Budget,
    /// Paths (files or folders) a reader asked for while they were deferred.
    wanted: Mutex<BTreeSet<String>>,
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        Snapshot {
            files: self.files.clone(),
            deferred: self.deferred.clone(),
            budget: self.budget,
            wanted: Mutex::new(self.wanted_set().clone()),
        }
    }
}

/// Two snapshots are equal when they hold the same files, read or deferred alike.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files && self.deferred == other.deferred
    }
}
impl Eq for Snapshot {}

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

    /// An empty snapshot that will read within `limits`.
    pub fn with_limits(limits: ReadLimits) -> Snapshot {
        Snapshot {
            budget: Budget::new(limits),
            ..Snapshot::default()
        }
    }

    pub fn limits(&self) -> ReadLimits {
        self.budget.limits
    }

    /// Bytes read so far (files, and tree entries for a commit).
    pub fn bytes_read(&self) -> u64 {
        self.budget.read
    }

    pub(crate) fn budget_mut(&mut self) -> &mut Budget {
        &mut self.budget
    }

    /// Records a file without reading it.
    pub(crate) fn insert_deferred(
        &mut self,
        path: String,
        executable: bool,
        symlink: bool,
        deferred: Deferred,
    ) {
        self.files.insert(
            path.clone(),
            FileEntry {
                data: Vec::new(),
                executable,
                symlink,
            },
        );
        self.deferred.insert(path, deferred);
    }

    /// The file at `path`. A deferred file is returned with empty `data`, and the request is
    /// remembered (see [`Snapshot::take_wanted`]).
    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        if self.deferred.contains_key(path) {
            self.want(path);
        }
        self.files.get(path)
    }

    /// True when the file's bytes have not been read.
    pub fn is_deferred(&self, path: &str) -> bool {
        self.deferred.contains_key(path)
    }

    /// The deferred files, with their size and origin.
    pub fn deferred(&self) -> impl Iterator<Item = (&str, &Deferred)> {
        self.deferred.iter().map(|(p, d)| (p.as_str(), d))
    }

    /// The paths asked for while deferred since the last call, sorted: fill them, then read again.
    pub fn take_wanted(&self) -> Vec<String> {
        std::mem::take(&mut *self.wanted_set())
            .into_iter()
            .collect()
    }

    fn want(&self, path: &str) {
        self.wanted_set().insert(path.to_string());
    }

    fn wanted_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Paths of the entries directly inside `dir` ("" is the root): files and sub-directories,
    /// each once, sorted. Each child costs one ordered-map seek (the search jumps past the
    /// child's sub-tree), not a pass over every file: a commit of 30,000 files is listed in
    /// as many steps as `dir` has children.
    pub fn list_dir(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut names: Vec<String> = Vec::new();
        let mut from = prefix.clone();
        loop {
            let next = self
                .files
                .range::<str, _>((Bound::Included(from.as_str()), Bound::Unbounded))
                .next();
            let Some((path, _)) = next.filter(|(p, _)| p.starts_with(&prefix)) else {
                break;
            };
            let rest = &path[prefix.len()..];
            let first = rest.split('/').next().unwrap_or(rest);
            names.push(first.to_string());
            // Past every path that starts with `<first>/` ('0' follows '/'), and past `<first>`.
            from = format!("{prefix}{first}0");
            if rest.len() == first.len() {
                // A file: the next key may be `<first>-x`, which sorts before `<first>0`.
                from = format!("{prefix}{first}\0");
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The entries at `path` and under `path/` (all of them for ""), in path order: one seek,
    /// then only the matches.
    pub fn at_or_under<'a>(
        &'a self,
        path: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a FileEntry)> + 'a {
        let exact = self.files.get_key_value(path).filter(|_| !path.is_empty());
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let start = prefix.clone();
        exact.into_iter().chain(
            self.files
                .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded))
                .take_while(move |(p, _)| p.starts_with(&prefix)),
        )
    }

    /// True when `path` is a file or a directory holding at least one file.
    pub fn exists(&self, path: &str) -> bool {
        self.at_or_under(path).next().is_some()
    }

    /// A content hash of a file or of everything under a directory (paths, modes and bytes).
    /// Used to recreate a container when a repo file it mounts or reads changes. None when the
    /// path does not exist. A deferred file under `path` is hashed by its origin (blob id or
    /// disk path) and the request remembered: the caller fills it and asks again, so the id it
    /// keeps is always the one of the bytes.
    pub fn content_id(&self, path: &str) -> Option<String> {
        let mut h = Sha256::new();
        let mut any = false;
        let mut wants = false;
        for (p, f) in self.at_or_under(path) {
            any = true;
            h.update(p.as_bytes());
            h.update([0, f.executable as u8, f.symlink as u8]);
            match self.deferred.get(p) {
                Some(d) => {
                    wants = true;
                    h.update(b"\0deferred\0");
                    h.update(d.size.to_le_bytes());
                    match &d.origin {
                        // The hex text, as ids were always hashed (kept ids stay valid).
                        Origin::Blob(oid) => h.update(oid.to_string().as_bytes()),
                        Origin::Disk(file) => h.update(file.to_string_lossy().as_bytes()),
                    }
                }
                None => {
                    h.update((f.data.len() as u64).to_le_bytes());
                    h.update(&f.data);
                }
            }
        }
        if wants {
            self.want(path);
        }
        any.then(|| hex::encode(&h.finalize()[..10]))
    }

    /// Reads the deferred files at or under `paths` with `load`, each within the budget (checked
    /// on the recorded size before `load` runs, so an oversized file is never read). Returns how
    /// many files were read.
    pub fn fill_with(
        &mut self,
        paths: &[String],
        mut load: impl FnMut(&str, &Deferred) -> Result<Vec<u8>, ContentError>,
    ) -> Result<usize, ContentError> {
        let mut todo: BTreeSet<String> = BTreeSet::new();
        for w in paths {
            // "" is the whole tree (as `is_under` reads it); else the path and what is under it.
            let prefix = if w.is_empty() {
                String::new()
            } else {
                format!("{w}/")
            };
            if self.deferred.contains_key(w.as_str()) {
                todo.insert(w.clone());
            }
            let under = self
                .deferred
                .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                .take_while(|(p, _)| p.starts_with(&prefix));
            todo.extend(under.map(|(p, _)| p.clone()));
        }
        for path in &todo {
            let Some(d) = self.deferred.get(path) else {
                continue;
            };
            self.budget.file(path, d.size)?;
            let data = load(path, d)?;
            if data.len() as u64 != d.size {
                return Err(ContentError::Read {
                    path: super::names::shown(path),
                    detail: format!(
                        "{} bytes read where {} were recorded; it changed while gitmoor read it",
                        data.len(),
                        d.size
                    ),
                });
            }
            self.deferred.remove(path);
            if let Some(f) = self.files.get_mut(path) {
                f.data = data;
            }
        }
        Ok(todo.len())
    }
}

pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
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

    fn deferred(size: u64) -> Deferred {
        Deferred {
            size,
            origin: Origin::Blob(git2::Oid::ZERO_SHA1),
        }
    }

    #[test]
    fn deferred_files_are_asked_for_then_filled_within_the_budget() {
        let mut s = Snapshot::with_limits(ReadLimits {
            max_file_bytes: 4,
            max_read_bytes: 6,
        });
        s.insert_deferred("app/a".into(), false, false, deferred(3));
        s.insert_deferred("app/b".into(), true, false, deferred(2));
        s.insert_deferred("docs/big".into(), false, false, deferred(1 << 30));
        let loaded_id = {
            let mut t = snap(&[]);
            t.files.insert(
                "app/a".into(),
                FileEntry {
                    data: b"aaa".to_vec(),
                    executable: false,
                    symlink: false,
                },
            );
            t.files.insert(
                "app/b".into(),
                FileEntry {
                    data: b"bb".to_vec(),
                    executable: true,
                    symlink: false,
                },
            );
            t.content_id("app")
        };
        assert!(s.exists("app") && s.exists("docs/big"));
        assert_eq!(s.list_dir(""), ["app", "docs"]);
        assert!(s.take_wanted().is_empty(), "listing asks for no bytes");
        let pending = s.content_id("app");
        assert_ne!(pending, loaded_id);
        assert_eq!(s.get("app/b").map(|f| f.data.len()), Some(0));
        assert_eq!(s.take_wanted(), ["app", "app/b"]);
        assert!(s.take_wanted().is_empty());

        let n = s
            .fill_with(&["app".to_string()], |p, _| {
                Ok(if p == "app/a" {
                    b"aaa".to_vec()
                } else {
                    b"bb".to_vec()
                })
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            s.content_id("app"),
            loaded_id,
            "the same id as read at once"
        );
        assert!(s.take_wanted().is_empty());
        assert_eq!(s.bytes_read(), 5);
        assert!(s.is_deferred("docs/big"));

        // The big file is refused on its recorded size: the loader never runs.
        let err = s
            .fill_with(&["docs".to_string()], |_, _| panic!("read"))
            .unwrap_err();
        assert!(err.to_string().contains("limits.file_bytes"), "{err}");
    }

    /// The old lookups walked every file of the commit per call: 20,000 lookups in a commit of
    /// 200,000 files (a mount or a build context each) were billions of steps, minutes. Each is
    /// now a seek plus its matches; the answers are the ones a walk over every file gives.
    #[test]
    fn lookups_seek_instead_of_walking_every_file() {
        let mut paths: Vec<String> = Vec::new();
        for d in 0..2_000 {
            for f in 0..100 {
                paths.push(format!("docs/d{d}/f{f}"));
            }
        }
        paths
            .extend(["a", "a-b/x", "a/b", "a.c", "a0", "compose/s/compose.yaml"].map(String::from));
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let s = snap(&refs);
        let started = std::time::Instant::now();
        for d in 0..20_000 {
            let dir = format!("docs/d{}", d % 2_500);
            assert_eq!(s.exists(&dir), d % 2_500 < 2_000);
            assert_eq!(s.content_id(&dir).is_some(), d % 2_500 < 2_000);
            assert_eq!(
                s.list_dir(&dir).len(),
                if d % 2_500 < 2_000 { 100 } else { 0 }
            );
        }
        assert_eq!(s.list_dir("docs").len(), 2_000);
        let took = started.elapsed();
        assert!(took.as_secs() < 20, "took {took:?}");

        // The same answers as a walk over every file.
        let walk_exists = |p: &str| s.files.keys().any(|k| k == p || is_under(k, p));
        for p in [
            "a",
            "a-b",
            "a/b",
            "a/",
            "a.c",
            "a0",
            "docs/d1",
            "docs/d1/f",
            "",
            "z",
        ] {
            assert_eq!(s.exists(p), walk_exists(p), "{p:?}");
        }
        assert_eq!(s.list_dir(""), ["a", "a-b", "a.c", "a0", "compose", "docs"]);
        assert_eq!(s.list_dir("a"), ["b"]);
        let walk_id = |path: &str| {
            let mut t = Snapshot::default();
            for (k, f) in s
                .files
                .iter()
                .filter(|(k, _)| *k == path || is_under(k, path))
            {
                t.files.insert(k.clone(), f.clone());
            }
            t
        };
        assert_eq!(s.content_id("a"), walk_id("a").content_id(""));
        assert_ne!(s.content_id("a"), walk_id("a-b").content_id(""));
    }
}
