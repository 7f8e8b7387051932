//! Commits a forge that does not fsck would accept, built byte by byte with git's plumbing
//! (`hash-object -t tree --literally`, `commit-tree`, `update-ref`) in a real bare remote, then
//! read by `GitSource` and applied by the real `gitmoor` binary on the real dockerd: a hostile
//! name is refused before anything is written, and nothing appears outside the state dir.

mod support;
use gitmoor::source::git::{GitSource, RepoAuth};
use std::path::Path;
use support::*;

/// Writes `data` as a blob into `repo`; returns its id.
fn blob(repo: &Path, data: &[u8]) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), data).unwrap();
    git(repo, &["hash-object", "-w", tmp.path().to_str().unwrap()])
}

/// One raw tree entry: mode, name bytes, object id.
type Entry<'a> = (&'a str, &'a [u8], &'a str);

/// Writes a tree of raw entries `(mode, name, id)` into `repo`, names unchecked (git's object
/// format only forbids NUL); returns its id.
fn tree(repo: &Path, entries: &[(&str, &[u8], &str)]) -> String {
    let mut raw = Vec::new();
    for (mode, name, id) in entries {
        raw.extend_from_slice(mode.as_bytes());
        raw.push(b' ');
        raw.extend_from_slice(name);
        raw.push(0);
        raw.extend_from_slice(&hex::decode(id).unwrap());
    }
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), raw).unwrap();
    git(
        repo,
        &[
            "hash-object",
            "-t",
            "tree",
            "--literally",
            "-w",
            tmp.path().to_str().unwrap(),
        ],
    )
}

/// Commits `root` on top of main in the bare remote and moves main to it.
fn commit_tree(remote: &Remote, root: &str, msg: &str) -> String {
    let parent = git(&remote.bare, &["rev-parse", "main"]);
    let sha = git(
        &remote.bare,
        &[
            "-c",
            "user.name=Mallory",
            "-c",
            "user.email=m@example.test",
            "commit-tree",
            root,
            "-p",
            &parent,
            "-m",
            msg,
        ],
    );
    git(&remote.bare, &["update-ref", "refs/heads/main", &sha]);
    sha
}

/// `compose/<stack>/` holding `compose.yaml` plus `extra` entries, as the root tree.
fn stack_commit(
    remote: &Remote,
    stack: &str,
    compose: &str,
    extra: &[(&str, &[u8], &str)],
) -> String {
    let repo = &remote.bare;
    let yaml = blob(repo, compose.as_bytes());
    let mut entries: Vec<(&str, &[u8], &str)> = vec![("100644", b"compose.yaml", &yaml)];
    entries.extend_from_slice(extra);
    let stack_tree = tree(repo, &entries);
    let compose_tree = tree(repo, &[("40000", stack.as_bytes(), &stack_tree)]);
    let root = tree(repo, &[("40000", b"compose", &compose_tree)]);
    commit_tree(remote, &root, "hostile")
}

fn busybox(stack: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    labels:\n      t: {stack}\n"
    )
}

/// Every path under `dir`, relative, sorted (symlinks not followed).
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The reported bug: an entry `../../../escaped` in `compose/<stack>/` was written by
/// `materialise_stacks` outside the state dir (three levels up from `stacks/.<stack>.new` is
/// the host's temp dir here; six would have been `/tmp` on a real host).
#[test]
fn traversal_entry_is_refused_and_nothing_is_written_outside() {
    let stack = unique("ht");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    remote.write("README.md", "seed\n");
    remote.commit("seed");
    let host = Host::new(&remote, "");
    let pwned = blob(&remote.bare, b"pwned\n");
    let name = b"../../../escaped-by-tree";
    stack_commit(
        &remote,
        &stack,
        &busybox(&stack),
        &[("100644", name, &pwned)],
    );
    let before = listing(host.dir.path());

    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "apply must refuse the commit:\n{text}"
    );
    assert!(
        text.contains(&format!("compose/{stack}/../../../escaped-by-tree"))
            && text.contains("`/` inside a name"),
        "the error names the path and why:\n{text}"
    );
    assert!(!host.dir.path().join("escaped-by-tree").exists());
    assert!(!host
        .state
        .parent()
        .unwrap()
        .join("escaped-by-tree")
        .exists());
    assert!(
        container_id(&stack, "web").is_empty(),
        "nothing was deployed"
    );
    let after: Vec<String> = listing(host.dir.path())
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        after.iter().all(|p| p.starts_with("state")),
        "only the state dir changed: {after:?}"
    );
    assert!(
        !host.state.join("content").exists(),
        "no repo file was copied"
    );
    assert_eq!(host.state_json()["history"][0]["result"], "invalid");
}

/// An entry `l -> <victim dir>` (a symlink) next to a blob named `l/passwd` (a `/` inside one
/// name): the old writer made the link, then wrote `passwd` through it.
#[test]
fn symlink_and_slash_name_do_not_write_through_the_link() {
    let stack = unique("hs");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    remote.write("README.md", "seed\n");
    remote.commit("seed");
    let host = Host::new(&remote, "");
    let victim = host.dir.path().join("victim-etc");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("passwd"), "root:x:0:0\n").unwrap();
    let link = blob(&remote.bare, victim.to_str().unwrap().as_bytes());
    let pwned = blob(&remote.bare, b"mallory::0:0\n");
    stack_commit(
        &remote,
        &stack,
        &busybox(&stack),
        &[("120000", b"l", &link), ("100644", b"l/passwd", &pwned)],
    );

    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "apply must refuse the commit:\n{text}"
    );
    assert!(
        text.contains(&format!("compose/{stack}/l/passwd")) && text.contains("`/` inside a name"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(victim.join("passwd")).unwrap(),
        "root:x:0:0\n",
        "the file behind the link is untouched"
    );
    assert!(container_id(&stack, "web").is_empty());
}

/// Each name git fsck refuses, read by `GitSource::snapshot`: the commit is refused with the
/// (escaped) path and the reason; a good tree next to it reads fine.
#[test]
fn every_bad_name_refuses_the_commit() {
    let remote = Remote::new();
    remote.write("compose/app/compose.yaml", "services: {}\n");
    let good = remote.commit("good");
    let cache = remote.dir.path().join("cache");
    let src = GitSource::open(&remote.url(), RepoAuth::default(), &cache).unwrap();
    let repo = &remote.bare;
    let x = blob(repo, b"x");
    let cases: Vec<(Vec<Entry>, &str, &str)> = vec![
        (vec![("100644", b"..", &x)], "docs/..", "`.` and `..`"),
        (vec![("100644", b".", &x)], "docs/.", "`.` and `..`"),
        (
            vec![("100644", b".git", &x)],
            "docs/.git",
            "Git's own folder",
        ),
        (
            vec![("100644", b".GiT", &x)],
            "docs/.GiT",
            "Git's own folder",
        ),
        (
            vec![("100644", b"a/b", &x)],
            "docs/a/b",
            "`/` inside a name",
        ),
        (
            vec![("100644", b"x", &x), ("100644", b"x", &x)],
            "docs/x",
            "this name twice",
        ),
        (
            vec![("100644", b"a\xff", &x), ("100644", b"a\xfe", &x)],
            "docs/a\u{fffd}",
            "two names that read the same",
        ),
        (
            vec![("100644", b"new\nline/..", &x)],
            "docs/new\\nline/..",
            "`/` inside a name",
        ),
    ];
    for (entries, path, why) in cases {
        // In docs/, a folder gitmoor never reads bytes from: the names are checked anyway.
        let docs = tree(repo, &entries);
        let app = git(repo, &["rev-parse", &format!("{good}:compose")]);
        let root = tree(
            repo,
            &[("40000", b"compose", &app), ("40000", b"docs", &docs)],
        );
        let sha = commit_tree(&remote, &root, "bad");
        assert_eq!(src.fetch("main").unwrap().sha, sha);
        let err = src.snapshot(&sha).unwrap_err().to_string();
        assert!(
            err.contains(&format!("\"{path}\"")) && err.contains(why),
            "{path}: {err}"
        );
        assert!(err.contains(&sha), "the message names the commit: {err}");
    }
    assert!(src
        .snapshot(&good)
        .unwrap()
        .get("compose/app/compose.yaml")
        .is_some());
}

/// Peak RSS (KiB) of one `gitmoor <args>` run under `/usr/bin/time -v`, with its output; None
/// when /usr/bin/time is missing.
fn peak_rss_kib(host: &Host, args: &[&str]) -> Option<(u64, std::process::Output)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("SKIP rss: /usr/bin/time is missing (apt-get install time)");
        return None;
    }
    let out = std::process::Command::new(time)
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_gitmoor"))
        .args(args)
        .arg("--config")
        .arg(&host.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in /usr/bin/time's output:\n{stderr}"));
    Some((kib, out))
}

/// A 300 MB file in docs/ (a folder gitmoor never uses) costs no memory when a commit is read:
/// the commit deploys, and a later `gitmoor apply` of the same commit (what every poll does)
/// stays under 200 MiB; the old code read every blob at every poll. The first apply's figure
/// includes the fetch, which over a file:// remote goes through libgit2's local transport: it
/// packs each object in memory, so that figure is reported, not bounded (over https and ssh the
/// fetch streams; see tests/git_source.rs `https_fetch_and_apply_of_a_big_unused_file`).
#[test]
fn big_file_outside_the_used_folders_deploys_with_small_rss() {
    let stack = unique("hb");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    remote.write(&format!("compose/{stack}/compose.yaml"), &busybox(&stack));
    std::fs::create_dir_all(remote.work.join("docs")).unwrap();
    // Sparse: 300 MB of zeros on no disk; git stores it compressed (~300 KB).
    let big = std::fs::File::create(remote.work.join("docs/big.bin")).unwrap();
    big.set_len(300 << 20).unwrap();
    drop(big);
    remote.commit("docs with a big file");
    let host = Host::new(&remote, "");
    let Some((first, out)) = peak_rss_kib(&host, &["apply"]) else {
        return;
    };
    let text = output_text(&out);
    assert!(out.status.success(), "apply failed:\n{text}");
    assert!(!container_id(&stack, "web").is_empty(), "deployed:\n{text}");
    // Again: nothing to fetch, the same commit read again (as at every poll).
    let (again, out) = peak_rss_kib(&host, &["apply"]).unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    eprintln!(
        "peak RSS of gitmoor apply with a 300 MB docs file over file://: {} MiB (fetch + deploy), \
         {} MiB (the same commit again, as a poll)",
        first / 1024,
        again / 1024
    );
    assert!(again < 200 * 1024, "the second apply peaked at {again} KiB");
}

/// A used file over `limits.file_bytes` refuses the commit naming the file, the limit and the key:
/// in a build context outside compose/ (read on demand) and in the stack folder (read at once);
/// a bigger file nobody uses does not. Too many bytes in total names `limits.read_bytes`.
#[test]
fn oversized_used_files_are_refused_naming_file_limit_and_key() {
    let stack = unique("hl");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let build = "services:\n  web:\n    build: ../../app\n    image: gm-hl-never-built:1\n";
    remote.write(&format!("compose/{stack}/compose.yaml"), build);
    remote.write(
        "app/Dockerfile",
        "FROM example-busybox:1\nCOPY blob.bin /\n",
    );
    remote.write("app/blob.bin", &"b".repeat(2 << 20));
    remote.write("docs/unused.bin", &"d".repeat(3 << 20));
    remote.commit("a build context with a big file");
    let host = Host::new(&remote, "limits:\n  file_bytes: 1048576\n");

    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("\"app/blob.bin\" is 2097152 bytes")
            && text.contains("1048576 bytes")
            && text.contains("limits.file_bytes"),
        "{text}"
    );
    assert!(!text.contains("docs/unused.bin"), "{text}");
    assert_eq!(host.state_json()["history"][0]["result"], "invalid");

    // In the stack folder itself.
    remote.remove("app");
    remote.write(&format!("compose/{stack}/compose.yaml"), &busybox(&stack));
    remote.write(&format!("compose/{stack}/data.bin"), &"x".repeat(2 << 20));
    remote.commit("a big file in the stack folder");
    let text = output_text(&host.gitmoor(&["apply"]));
    assert!(
        text.contains(&format!("\"compose/{stack}/data.bin\" is 2097152 bytes"))
            && text.contains("limits.file_bytes"),
        "{text}"
    );

    // Many small files: the total.
    remote.remove(&format!("compose/{stack}/data.bin"));
    for i in 0..5 {
        remote.write(&format!("compose/{stack}/part{i}"), &"p".repeat(800 << 10));
    }
    remote.commit("many parts");
    std::fs::write(
        &host.config,
        std::fs::read_to_string(&host.config)
            .unwrap()
            .replace("limits:\n", "limits:\n  read_bytes: 3000000\n"),
    )
    .unwrap();
    let text = output_text(&host.gitmoor(&["apply"]));
    assert!(
        text.contains("over the limit of 3000000 bytes per reconcile")
            && text.contains("limits.read_bytes"),
        "{text}"
    );
    assert!(container_id(&stack, "web").is_empty(), "nothing deployed");
}

/// An `env_file` outside the stack folder is outside the folders read at once: the spec read
/// asks for it, the reconcile fills it and reads again, and the container gets its variables
/// (a deferred file must never be taken for an empty one).
#[test]
fn a_file_outside_the_used_folders_is_read_when_the_spec_asks() {
    let stack = unique("he");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let compose = "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    env_file: ../../shared/common.env\n";
    remote.write(&format!("compose/{stack}/compose.yaml"), compose);
    remote.write("shared/common.env", "FROM_SHARED=yes-read\n");
    remote.commit("shared env file");
    let host = Host::new(&remote, "");
    host.apply_ok();
    let env = inspect(&format!("{stack}-web-1"), "{{json .Config.Env}}");
    assert!(env.contains("FROM_SHARED=yes-read"), "{env}");
}

/// `docs/` holding trees that name the same sub-tree 16 times under long names, 6 levels deep:
/// a few KiB of objects that list 16 million files; committed on main of `remote`.
fn tree_bomb(remote: &Remote, stack: &str, levels: usize) {
    let repo = &remote.bare;
    let leaf = blob(repo, b"x\n");
    let names: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("{i:02}-{}", "n".repeat(240)).into_bytes())
        .collect();
    let mut entries: Vec<(&str, &[u8], &str)> = names
        .iter()
        .map(|n| ("100644", n.as_slice(), leaf.as_str()))
        .collect();
    let mut level = tree(repo, &entries);
    for _ in 1..levels {
        entries = names
            .iter()
            .map(|n| ("40000", n.as_slice(), level.as_str()))
            .collect();
        level = tree(repo, &entries);
    }
    let yaml = blob(repo, busybox(stack).as_bytes());
    let stack_tree = tree(repo, &[("100644", b"compose.yaml", &yaml)]);
    let compose_tree = tree(repo, &[("40000", stack.as_bytes(), &stack_tree)]);
    let root = tree(
        repo,
        &[
            ("40000", b"compose", &compose_tree),
            ("40000", b"docs", &level),
        ],
    );
    commit_tree(remote, &root, "a tree bomb in docs/");
}

/// The review's reproduction: a few KiB of tree objects under `docs/` (a folder gitmoor never
/// uses) that list millions of paths made `gitmoor plan` peak at 426 MiB before refusing. The
/// reader now charges what it really holds per entry, and the default budget is 128 MiB: the
/// commit is refused naming docs/ and the key, and the peak stays under 200 MiB.
#[test]
fn a_tree_bomb_in_docs_is_refused_with_bounded_memory() {
    let stack = unique("hx");
    let remote = Remote::new();
    remote.write("README.md", "seed\n");
    remote.commit("seed");
    tree_bomb(&remote, &stack, 6);
    let host = Host::new(&remote, "");
    let Some((kib, out)) = peak_rss_kib(&host, &["plan"]) else {
        return;
    };
    let text = output_text(&out);
    eprintln!(
        "peak RSS of gitmoor plan on a tree bomb in docs/: {} MiB; it said:\n{text}",
        kib / 1024
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("limits.read_bytes") && text.contains("\"docs/"),
        "{text}"
    );
    assert!(
        !text.contains("make the folders gitmoor uses"),
        "the bomb is not in a folder gitmoor uses: {text}"
    );
    assert!(kib < 200 * 1024, "peak RSS {kib} KiB");
}
