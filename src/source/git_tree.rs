//! A commit's tree read from the cache's object database: names checked and bytes counted
//! before anything is kept, blobs outside the used roots recorded by id and size only.
//!
//! Two passes: the trees first (every name of the commit checked, so one bad name refuses the
//! commit before any file is read), then the blobs, each sized from its object header before it
//! is loaded, so a 1 GB blob is never in memory.

use super::limits::{ContentError, ReadLimits};
use super::names::TreeNames;
use super::snapshot::{in_used_root, Deferred, FileEntry, Origin, Snapshot};
use git2::{ObjectType, Oid, Repository, Tree};

/// What one kept entry costs beyond its path: its place in the maps and its object id. Charged
/// to the read budget, so a tree that names the same sub-tree a million times is refused for
/// its size, not read into a million entries.
const ENTRY_OVERHEAD: u64 = 96;

/// Reads `root` (a commit's tree) into a snapshot within `limits`.
pub(super) fn read_tree(
    repo: &Repository,
    root: Tree<'_>,
    limits: ReadLimits,
) -> Result<Snapshot, ContentError> {
    let mut snap = Snapshot::with_limits(limits);
    let mut blobs: Vec<(String, Oid, i32)> = Vec::new();
    // An explicit stack: a hostile repo's deep nesting must not overflow ours.
    // Sub-trees wait as ids and are loaded one at a time.
    let mut pending = vec![(String::new(), root.id())];
    while let Some((prefix, id)) = pending.pop() {
        let tree = repo.find_tree(id).map_err(|e| read_err(&prefix, &e))?;
        let mut names = TreeNames::default();
        for entry in tree.iter() {
            let path = names
                .admit(&prefix, entry.name_bytes())
                .map_err(ContentError::bad_name)?;
            snap.budget_mut()
                .take(&path, path.len() as u64 + ENTRY_OVERHEAD)?;
            match entry.kind() {
                Some(ObjectType::Tree) => pending.push((path, entry.id())),
                Some(ObjectType::Blob) => blobs.push((path, entry.id(), entry.filemode())),
                // A gitlink (submodule, 160000): its commit is not in this repository.
                _ => {}
            }
        }
    }
    let odb = repo
        .odb()
        .map_err(|e| read_err("the object database", &e))?;
    for (path, oid, mode) in blobs {
        let executable = mode == 0o100755;
        let symlink = mode == 0o120000;
        let (size, _) = odb.read_header(oid).map_err(|e| read_err(&path, &e))?;
        let size = size as u64;
        if !in_used_root(&path) {
            let deferred = Deferred {
                size,
                origin: Origin::Blob(oid.to_string()),
            };
            snap.insert_deferred(path, executable, symlink, deferred);
            continue;
        }
        snap.budget_mut().file(&path, size)?;
        let data = read_blob(repo, &path, oid, size)?;
        snap.files.insert(
            path,
            FileEntry {
                data,
                executable,
                symlink,
            },
        );
    }
    Ok(snap)
}

/// The tree reader alone, on any repository: the tree `tree` of `repo` read as a commit's tree
/// is. For the fuzzer, which writes hostile tree objects straight into an object database.
pub fn read_tree_at(
    repo: &Repository,
    tree: Oid,
    limits: ReadLimits,
) -> Result<Snapshot, ContentError> {
    let root = repo.find_tree(tree).map_err(|e| read_err("the tree", &e))?;
    read_tree(repo, root, limits)
}

/// Reads the deferred blobs at or under `paths` into `snap`.
pub(super) fn fill(
    repo: &Repository,
    snap: &mut Snapshot,
    paths: &[String],
) -> Result<usize, ContentError> {
    snap.fill_with(paths, |path, d| match &d.origin {
        Origin::Blob(hex) => {
            let oid = Oid::from_str(hex).map_err(|e| read_err(path, &e))?;
            read_blob(repo, path, oid, d.size)
        }
        Origin::Disk(_) => Err(ContentError::Read {
            path: super::names::shown(path),
            detail: "it is on disk, not in the Git commit".to_string(),
        }),
    })
}

/// A blob's bytes; `size` (from the header, already within the budget) must match.
fn read_blob(repo: &Repository, path: &str, oid: Oid, size: u64) -> Result<Vec<u8>, ContentError> {
    let blob = repo.find_blob(oid).map_err(|e| read_err(path, &e))?;
    if blob.size() as u64 != size {
        return Err(ContentError::Read {
            path: super::names::shown(path),
            detail: format!(
                "the object holds {} bytes, its header said {size}",
                blob.size()
            ),
        });
    }
    Ok(blob.content().to_vec())
}

fn read_err(path: &str, e: &git2::Error) -> ContentError {
    ContentError::Read {
        path: super::names::shown(path),
        detail: e.message().to_string(),
    }
}
