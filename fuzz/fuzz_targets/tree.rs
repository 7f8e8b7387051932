//! The Git tree reader on hostile trees, then the folder writer on what it accepted.
//!
//! Each input becomes a raw tree object written straight into a real object database (Git's own
//! tools would refuse most of these names; `--literally` and forges that do not fsck do not), so
//! names hold `..`, `/`, NUL, `.git`, duplicates and symlinks beside slash names. The reader must
//! refuse or read without panicking, within its budget; whatever it accepts is written under a
//! fresh folder, and nothing may appear outside that folder, nor through a symlink.
#![no_main]

use git2::{ObjectType, Oid, Repository};
use gitmoor::source::git_tree::read_tree_at;
use gitmoor::source::limits::ReadLimits;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct World {
    /// Opened anew for each input, as each reconcile opens the cache: libgit2's object cache
    /// (256 MiB by default) would otherwise grow over a run and read as a leak.
    repo_dir: PathBuf,
    /// Objects an entry can point at: a blob, a symlink target, a sub-tree, a missing object.
    targets: Vec<(u32, Oid)>,
    scratch: PathBuf,
}

// One repository for the whole run, holding the few objects entries point at; each input's own
// objects live in memory only.
fn world() -> &'static std::sync::Mutex<World> {
    static W: OnceLock<std::sync::Mutex<World>> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gitmoor-fuzz-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let repo_dir = dir.join("repo.git");
        let repo = Repository::init_bare(&repo_dir).expect("repo");
        let targets = {
            let odb = repo.odb().expect("odb");
            let blob = odb.write(ObjectType::Blob, b"hello\n").expect("blob");
            let link_out = odb.write(ObjectType::Blob, b"/etc").expect("blob");
            let link_up = odb.write(ObjectType::Blob, b"../../..").expect("blob");
            let mut sub = Vec::new();
            sub.extend_from_slice(b"100644 passwd\0");
            sub.extend_from_slice(blob.as_bytes());
            let sub = odb.write(ObjectType::Tree, &sub).expect("tree");
            let missing = Oid::from_bytes(&[0xab; 20]).expect("oid");
            vec![
                (0o100644, blob),
                (0o100755, blob),
                (0o120000, link_out),
                (0o120000, link_up),
                (0o040000, sub),
                (0o160000, missing),
                (0o100644, missing),
            ]
        };
        std::sync::Mutex::new(World {
            repo_dir,
            targets,
            scratch: dir,
        })
    })
}

/// `[kind][len][name bytes]...` → raw tree entries (`mode SP name NUL oid`), in input order (the
/// reader must not rely on Git's sort order either).
fn raw_tree(data: &[u8], targets: &[(u32, Oid)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= data.len() {
        let (mode, oid) = targets[data[i] as usize % targets.len()];
        let len = (data[i + 1] as usize % 32).min(data.len() - i - 2);
        let name = &data[i + 2..i + 2 + len];
        i += 2 + len;
        out.extend_from_slice(format!("{mode:o} ").as_bytes());
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(oid.as_bytes());
    }
    out
}

/// Every path under `root`, symlinks not followed.
fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push(p.clone());
        if is_dir {
            walk(&p, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world().lock().expect("world");
    let Ok(repo) = Repository::open_bare(&w.repo_dir) else {
        return;
    };
    // The input's tree goes inside `compose/app/`, where a stack folder is read from.
    let inner = raw_tree(data, &w.targets);
    let Ok(odb) = repo.odb() else { return };
    // The input's objects go to memory, freed with `repo`: a run writes millions of trees, and
    // loose objects on disk would fill it.
    let Ok(_mempack) = odb.add_new_mempack_backend(1000) else {
        return;
    };
    let Ok(inner) = odb.write(ObjectType::Tree, &inner) else {
        return;
    };
    let mut app = b"40000 app\0".to_vec();
    app.extend_from_slice(inner.as_bytes());
    let Ok(app) = odb.write(ObjectType::Tree, &app) else {
        return;
    };
    let mut root = b"40000 compose\0".to_vec();
    root.extend_from_slice(app.as_bytes());
    let Ok(root) = odb.write(ObjectType::Tree, &root) else {
        return;
    };
    let limits = ReadLimits {
        max_file_bytes: 1 << 16,
        max_read_bytes: 1 << 20,
    };
    let Ok(snap) = read_tree_at(&repo, root, limits) else {
        return;
    };
    for path in snap.files.keys() {
        for part in path.split('/') {
            assert!(
                !part.is_empty() && part != "." && part != ".." && !part.eq_ignore_ascii_case(".git"),
                "accepted a bad name: {path:?}"
            );
        }
    }
    // Write what was accepted, as materialising the stack folder does, and look around it.
    let case = w.scratch.join("case");
    let _ = std::fs::remove_dir_all(&case);
    let dest = case.join("state").join("stacks").join("app");
    std::fs::create_dir_all(case.join("state").join("stacks")).expect("mkdir");
    let _ = snap.write_subtree("compose/app", &dest);
    let mut all = Vec::new();
    walk(&case, &mut all);
    for p in &all {
        assert!(
            p.starts_with(&dest) || dest.starts_with(p),
            "written outside the stack folder: {}",
            p.display()
        );
        // A symlink is written as a leaf only: nothing below one was written through it.
        if let Some(parent) = p.parent() {
            let meta = std::fs::symlink_metadata(parent).expect("parent");
            assert!(!meta.file_type().is_symlink(), "wrote through {}", parent.display());
        }
    }
});
