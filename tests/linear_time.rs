//! Scans over what a commit holds run in linear time: an input made to be slow (a long line of
//! `-----BEGIN `, a long `depends_on` chain) is read in a moment. The inputs are sized so that
//! the earlier quadratic and cubic code took many minutes on them; nothing here measures time,
//! a regression shows as a test that does not finish.

use gitmoor::source::snapshot::{FileEntry, Snapshot};
use gitmoor::spec::compose::{load_stack, StackInput, StackVars};
use gitmoor::spec::limits::Limits;
use std::path::Path;

fn snap(files: &[(&str, Vec<u8>)]) -> Snapshot {
    let mut s = Snapshot::default();
    for (p, data) in files {
        s.files.insert(
            p.to_string(),
            FileEntry {
                data: data.clone(),
                executable: false,
                symlink: false,
            },
        );
    }
    s
}

#[test]
fn a_long_line_of_pem_headers_is_scanned_in_one_pass() {
    // 5 MB of `-----BEGIN ` on one line, then a real key header on the next.
    let mut data = b"-----BEGIN ".repeat(5_000_000 / 11);
    data.extend_from_slice(b"\n-----BEGIN EC PRIVATE KEY-----\nMHc=\n");
    let s = snap(&[
        ("docs/headers.txt", b"-----BEGIN ".repeat(5_000_000 / 11)),
        ("keys/hidden.pem", data),
    ]);
    let f = gitmoor::spec::committed::scan(&s);
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(
        shown[0].starts_with("keys/hidden.pem:2: a private key is committed"),
        "{shown:?}"
    );
}

/// `s00000 <- s00001 <- ... <- s04999`: each service depends on the one before it.
fn chain(n: usize) -> String {
    let mut text = String::from("services:\n");
    for i in 0..n {
        text.push_str(&format!("  s{i:05}:\n    image: x\n"));
        if i > 0 {
            text.push_str(&format!("    depends_on: [s{:05}]\n", i - 1));
        }
    }
    text
}

#[test]
fn a_long_depends_on_chain_is_ordered_and_checked_in_linear_time() {
    const N: usize = 5000;
    let text = chain(N);
    let file = "compose/app/compose.yaml";
    let s = snap(&[(file, text.clone().into_bytes())]);
    let limits = Limits {
        services: N as u64,
        depends_on: N as u64,
        ..Limits::default()
    };
    let (spec, f) = load_stack(&StackInput {
        name: "app",
        file,
        text: &text,
        snap: &s,
        vars: &StackVars::unchecked(),
        bind_root: Path::new("/var/lib/gitmoor/stacks"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir: None,
        profiles: &[],
        limits: &limits,
        policy: None,
        home_dir: None,
        literal_secrets: Default::default(),
    });
    assert!(f.errors.is_empty(), "{:?}", f.errors.first());
    let spec = spec.expect("spec");
    let order = gitmoor::plan::topo_order(&spec);
    let want: Vec<String> = (0..N).map(|i| format!("s{i:05}")).collect();
    assert_eq!(order, want);

    // The same chain closed into a cycle: named once, in full.
    let text = text.replace(
        "  s00000:\n    image: x\n",
        &format!("  s00000:\n    image: x\n    depends_on: [s{:05}]\n", N - 1),
    );
    let s = snap(&[(file, text.clone().into_bytes())]);
    let (spec, f) = load_stack(&StackInput {
        name: "app",
        file,
        text: &text,
        snap: &s,
        vars: &StackVars::unchecked(),
        bind_root: Path::new("/var/lib/gitmoor/stacks"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir: None,
        profiles: &[],
        limits: &limits,
        policy: None,
        home_dir: None,
        literal_secrets: Default::default(),
    });
    assert!(spec.is_none());
    let cycles: Vec<String> = f
        .errors
        .iter()
        .map(|e| e.to_string())
        .filter(|e| e.contains("dependency cycle"))
        .collect();
    assert_eq!(cycles.len(), 1, "{:?}", f.errors.first());
    assert!(
        cycles[0].starts_with("compose/app/compose.yaml:4: services.s00000.depends_on: dependency cycle: s00000 -> s04999 -> s04998"),
        "{}",
        &cycles[0][..200]
    );
}
