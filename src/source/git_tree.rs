//! A commit's tree read from the cache's object database: names checked and bytes counted
//! before anything is kept, blobs outside the used roots recorded by id and size only.
//!
//! Two passes: the trees first (every name of the commit checked, so one bad name refuses the
//! commit before any file is read; a file outside the used roots is recorded there by id and
//! size), then the used blobs, each sized from its object header before it is loaded, so a 1 GB
//! blob is never in memory. Every tree object is sized before it is loaded too, and every entry
//! kept is charged what it really costs (see `DEFERRED_BYTES`).

use super::limits::{ContentError, ReadLimits};
use super::names::TreeNames;
use super::snapshot::{in_used_root, Deferred, FileEntry, Origin, Snapshot};
use git2::{ObjectType, Oid, Repository, Tree};

/// What the reader holds for one entry beyond its path's text, charged to the read budget, so
/// that a tree naming the same sub-tree a million times is refused for what it would cost, not
/// read into a million entries. Measured with a counting allocator (tests/tree_cost.rs, which
/// checks that the budget covers the heap the reader holds), allocator rounding included:
///
/// - a sub-tree waiting on the stack: its path and a slot of the stack (48 bytes, 96 while it
///   doubles);
/// - a used file: its path, a slot of the list of blobs of the second pass (up to 144 bytes
///   while it doubles), a slot of `files` (about 112 bytes, nodes half full), its data's
///   smallest allocation (32 bytes);
/// - a deferred file (outside `compose/`, `nginx/`, `ufw/`): its path twice (the keys of
///   `files` and `deferred`), a slot in each map (B-tree nodes are about half full when the
///   paths arrive in order: 2 x 56 and 2 x 64 bytes), and its size and id.
///
/// Measured: 433 bytes per used file whose path is 136 bytes; 1,951 per deferred file whose path
/// is 727 bytes, 319 per one whose path is 25: the constants below cover each with some margin.
const WAITING_BYTES: u64 = 128;
const USED_BYTES: u64 = 360;
const DEFERRED_BYTES: u64 = 480;
/// A path's allocation beyond its text (allocator header and rounding), counted once per copy.
const PATH_BYTES: u64 = 24;

/// Reads `root` (a commit's tree) into a snapshot within `limits`.
pub(super) fn read_tree(
    repo: &Repository,
    root: Tree<'_>,
    limits: ReadLimits,
) -> Result<Snapshot, ContentError> {
    let mut snap = Snapshot::with_limits(limits);
    let odb = repo
        .odb()
        .map_err(|e| read_err("the object database", &e))?;
    let mut blobs: Vec<(String, Oid, i32)> = Vec::new();
    // An explicit stack: a hostile repo's deep nesting must not overflow ours.
    // Sub-trees wait as ids and are loaded one at a time.
    let mut pending = vec![(String::new(), root.id())];
    drop(root);
    while let Some((prefix, id)) = pending.pop() {
        // Sized before it is loaded: libgit2 holds the object and an index of its entries (at
        // most as large again) while its entries are read, so twice its size is taken, and
        // given back once it is dropped. A 1 GB tree object is refused, never loaded.
        let (size, _) = odb.read_header(id).map_err(|e| read_err(&prefix, &e))?;
        let held = (size as u64).saturating_mul(2);
        let at = if prefix.is_empty() { "/" } else { &prefix };
        snap.budget_mut().take(at, held)?;
        let tree = repo.find_tree(id).map_err(|e| read_err(&prefix, &e))?;
        let mut names = TreeNames::default();
        for entry in tree.iter() {
            let path = names
                .admit(&prefix, entry.name_bytes())
                .map_err(ContentError::bad_name)?;
            let len = path.len() as u64;
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    snap.budget_mut()
                        .take(&path, len + PATH_BYTES + WAITING_BYTES)?;
                    pending.push((path, entry.id()));
                }
                Some(ObjectType::Blob) if in_used_root(&path) => {
                    snap.budget_mut()
                        .take(&path, len + PATH_BYTES + USED_BYTES)?;
                    blobs.push((path, entry.id(), entry.filemode()));
                }
                Some(ObjectType::Blob) => {
                    // Recorded at once: it is never read here, so it needs no second pass,
                    // and the list of blobs holds only the few that are.
                    snap.budget_mut()
                        .take(&path, 2 * (len + PATH_BYTES) + DEFERRED_BYTES)?;
                    let oid = entry.id();
                    let mode = entry.filemode();
                    let (size, _) = odb.read_header(oid).map_err(|e| read_err(&path, &e))?;
                    let deferred = Deferred {
                        size: size as u64,
                        origin: Origin::Blob(oid),
                    };
                    snap.insert_deferred(path, mode == 0o100755, mode == 0o120000, deferred);
                }
                // A gitlink (submodule, 160000): its commit is not in this repository.
                _ => {}
            }
        }
        drop(tree);
        snap.budget_mut().give_back(held);
    }
    for (path, oid, mode) in blobs {
        let executable = mode == 0o100755;
        let symlink = mode == 0o120000;
        let (size, _) = odb.read_header(oid).map_err(|e| read_err(&path, &e))?;
        let size = size as u64;
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
        Origin::Blob(oid) => read_blob(repo, path, *oid, d.size),
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
