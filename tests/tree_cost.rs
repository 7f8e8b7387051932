//! The tree reader's read budget covers the memory it really holds per entry. A counting global
//! allocator sees every Rust allocation (with 16 bytes of allocator header each, as glibc's
//! malloc adds): the reader's peak heap, over what was live before, must stay within the bytes
//! it charged (`Snapshot::bytes_read`). The old charge (path + 96 bytes per entry) covered about
//! half of a deferred file's real cost, so a tree bomb in `docs/` used ~1.6 times `read_bytes`.
//! Figures are printed (`--nocapture`).

use git2::{Oid, Repository};
use gitmoor::source::git_tree::read_tree_at;
use gitmoor::source::limits::ReadLimits;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;

/// glibc's header and rounding per allocation, as counted here.
const HEADER: i64 = 16;

struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn cost(size: usize) -> i64 {
    (size as i64 + HEADER + 15) / 16 * 16
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(cost(l.size()), Relaxed) + cost(l.size());
        PEAK.fetch_max(now, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(cost(l.size()), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// One measurement at a time: the counters are global.
static ONE: Mutex<()> = Mutex::new(());

fn tree(repo: &Repository, entries: &[(i32, String, Oid)]) -> Oid {
    let mut b = repo.treebuilder(None).unwrap();
    for (mode, name, id) in entries {
        b.insert(name, *id, *mode).unwrap();
    }
    b.write().unwrap()
}

/// `top/` holding `fanout` names (`name_len` bytes each) of the same sub-tree, `levels` deep,
/// `fanout` files at the bottom; a stack beside it.
fn nested(repo: &Repository, top: &str, fanout: usize, levels: usize, name_len: usize) -> Oid {
    let leaf = repo.blob(b"x\n").unwrap();
    let names: Vec<String> = (0..fanout)
        .map(|i| format!("{i:04}{}", "n".repeat(name_len.saturating_sub(4))))
        .collect();
    let mut level = tree(
        repo,
        &names
            .iter()
            .map(|n| (0o100644, n.clone(), leaf))
            .collect::<Vec<_>>(),
    );
    for _ in 1..levels {
        level = tree(
            repo,
            &names
                .iter()
                .map(|n| (0o040000, n.clone(), level))
                .collect::<Vec<_>>(),
        );
    }
    let yaml = repo.blob(b"services:\n  web:\n    image: x\n").unwrap();
    let stack = tree(repo, &[(0o100644, "compose.yaml".into(), yaml)]);
    let compose = tree(repo, &[(0o040000, "app".into(), stack)]);
    if top == "compose" {
        let compose = tree(
            repo,
            &[
                (0o040000, "app".into(), stack),
                (0o040000, "many".into(), level),
            ],
        );
        return tree(repo, &[(0o040000, "compose".into(), compose)]);
    }
    tree(
        repo,
        &[
            (0o040000, "compose".into(), compose),
            (0o040000, top.into(), level),
        ],
    )
}

/// Reads `root` with an unbounded budget; (peak heap over the start, bytes charged, entries).
fn measure(repo: &Repository, root: Oid) -> (i64, u64, usize) {
    let limits = ReadLimits {
        max_file_bytes: 1 << 30,
        max_read_bytes: 1 << 40,
    };
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let snap = read_tree_at(repo, root, limits).unwrap();
    let peak = PEAK.load(Relaxed) - start;
    let n = snap.files.len();
    let charged = snap.bytes_read();
    drop(snap);
    (peak, charged, n)
}

#[test]
fn the_read_budget_covers_what_the_reader_holds() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    let cases = [
        ("docs, long names", "docs", 16, 3, 240),
        ("docs, short names", "docs", 16, 4, 1),
        ("docs, one wide tree", "docs", 20_000, 1, 8),
        ("compose, used files", "compose", 16, 3, 40),
    ];
    for (what, top, fanout, levels, name_len) in cases {
        let root = nested(&repo, top, fanout, levels, name_len);
        let (peak, charged, n) = measure(&repo, root);
        println!(
            "{what}: {n} files, peak heap {peak} bytes ({} per file), charged {charged} ({} per file)",
            peak / n as i64,
            charged / n as u64
        );
        assert!(
            peak as u64 <= charged,
            "{what}: the reader held {peak} bytes but charged {charged}"
        );
    }
    // A tree object is sized before it is loaded: one too large for the budget is refused.
    let root = nested(&repo, "docs", 20_000, 1, 8);
    let err = read_tree_at(
        &repo,
        root,
        ReadLimits {
            max_file_bytes: 1 << 20,
            max_read_bytes: 200_000,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("\"docs\"")
            && err.contains("limits.read_bytes")
            && err.contains("docs/ has grown"),
        "{err}"
    );
}
