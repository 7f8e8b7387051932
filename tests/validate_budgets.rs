//! `gitmoor validate` on commits made to exhaust the host: an alias bomb and an oversized compose
//! file are refused with an error naming the file, the limit and the config key, within seconds,
//! and the process's peak memory (measured with wait4's rusage, as the kernel counts it) stays
//! under 200 MiB. Each figure is printed (`--nocapture`).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MAX_RSS_KIB: i64 = 200 * 1024;

struct Run {
    code: i32,
    text: String,
    peak_rss_kib: i64,
    took: Duration,
}

/// Runs `gitmoor validate <dir> [args]` and reaps it with wait4, which gives the child's own
/// peak resident set (not the largest of every child this test binary ever had).
fn validate_measured(dir: &Path, args: &[&str]) -> Run {
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("out");
    let out = File::create(&out_path).unwrap();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .arg("validate")
        .arg(dir)
        .args(args)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for our own child `pid`, which
    // nothing else waits for (the `Child` is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = started.elapsed();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    assert!(libc::WIFEXITED(status), "killed: status {status:#x}");
    Run {
        code: libc::WEXITSTATUS(status),
        text: std::fs::read_to_string(&out_path).unwrap(),
        // Linux reports ru_maxrss in KiB.
        peak_rss_kib: usage.ru_maxrss,
        took,
    }
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

const NEIGHBOUR: &str = "services:\n  web:\n    image: nginx:1.27\n";

fn report(what: &str, r: &Run) {
    println!(
        "{what}: exit {}, {:.2} s, peak RSS {:.1} MiB",
        r.code,
        r.took.as_secs_f64(),
        r.peak_rss_kib as f64 / 1024.0
    );
}

#[test]
fn an_alias_bomb_is_refused_with_bounded_memory() {
    // The reproduction, under the file budget: a 768 KiB anchor used 50,000 times
    // (37.5 GiB once expanded), from a file under 1 MiB (so the file budget lets it through to
    // the parser).
    let aliases = vec!["*a"; 50_000].join(", ");
    let bomb = format!(
        "x-a: &a \"{}\"\nx-b: [{aliases}]\nservices:\n  s:\n    image: x\n",
        "x".repeat(768 << 10)
    );
    assert!(bomb.len() < 1 << 20);
    let d = repo(&[
        ("compose/app/compose.yaml", &bomb),
        ("compose/web/compose.yaml", NEIGHBOUR),
    ]);
    let r = validate_measured(d.path(), &[]);
    report("alias bomb", &r);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(
        r.text.contains("error: compose/app/compose.yaml:2: the YAML expands to more than 16 MiB (limits.expanded_yaml_bytes)"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("raise limits.expanded_yaml_bytes in gitmoor's config"),
        "{}",
        r.text
    );
    assert_eq!(
        r.text.matches("error:").count(),
        1,
        "only the bomb is refused: {}",
        r.text
    );
    assert!(
        r.peak_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        r.peak_rss_kib
    );
}

#[test]
fn a_merge_key_bomb_is_refused_with_bounded_memory() {
    // The costliest shape found: one anchor of 20,000 keys merged into 150 services (3 million
    // entries from 230 KB); the parser holds each merge's entries besides the tree.
    let keys: String = (0..20_000).map(|i| format!("  k{i}: v\n")).collect();
    let services: String = (0..150)
        .map(|i| format!("  s{i}:\n    <<: *m\n    image: x\n"))
        .collect();
    let bomb = format!("x-m: &m\n{keys}services:\n{services}");
    let d = repo(&[
        ("compose/app/compose.yaml", &bomb),
        ("compose/web/compose.yaml", NEIGHBOUR),
    ]);
    let r = validate_measured(d.path(), &[]);
    report("merge-key bomb", &r);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(
        r.text
            .contains("the YAML expands to more than 16 MiB (limits.expanded_yaml_bytes)"),
        "{}",
        r.text
    );
    assert_eq!(r.text.matches("error:").count(), 1, "{}", r.text);
    assert!(
        r.peak_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        r.peak_rss_kib
    );
}

#[test]
fn an_oversized_compose_file_is_refused_before_parsing_with_bounded_memory() {
    // 48 MiB of valid YAML: parsed, its tree and interpolated copy would be several times that.
    let mut big = String::from("services:\n  s:\n    image: x\n    labels:\n");
    let mut i = 0;
    while big.len() < 48 << 20 {
        big.push_str(&format!("      l{i}: v\n"));
        i += 1;
    }
    let d = repo(&[
        ("compose/app/compose.yaml", &big),
        ("compose/web/compose.yaml", NEIGHBOUR),
    ]);
    let r = validate_measured(d.path(), &[]);
    report("48 MiB compose file", &r);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(
        r.text.contains("error: compose/app/compose.yaml: the file is 48.0 MiB, over the limit of 1 MiB per compose file (limits.compose_file_bytes); split it into stacks, or move data out of it, or raise limits.compose_file_bytes in gitmoor's config"),
        "{}",
        r.text
    );
    assert_eq!(r.text.matches("error:").count(), 1, "{}", r.text);
    assert!(
        r.peak_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        r.peak_rss_kib
    );
}

/// The review's reproduction: 40 stacks, each with a 400 KiB anchor used 36 times in
/// `environment:` (14 MiB each once expanded, within every per-file limit): validate held all 40
/// (647 MiB peak) and said valid. One budget of expanded YAML shared by the stacks refuses it.
#[test]
fn forty_stacks_each_under_the_file_budget_are_refused_with_bounded_memory() {
    let anchor = "x".repeat(400 << 10);
    let uses: String = (0..36).map(|i| format!("      V{i}: *a\n")).collect();
    let bomb =
        format!("x-a: &a \"{anchor}\"\nservices:\n  s:\n    image: x\n    environment:\n{uses}");
    let files: Vec<(String, &str)> = (0..40)
        .map(|i| (format!("compose/s{i:02}/compose.yaml"), bomb.as_str()))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    let d = repo(&refs);
    let r = validate_measured(d.path(), &[]);
    report("40 stacks of 14 MiB expanded YAML", &r);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(
        r.text.contains("error: compose/s04/compose.yaml:")
            && r.text.contains("the compose files read so far expand to more than 64 MiB in all (limits.expanded_yaml_total_bytes)")
            && r.text.contains("raise limits.expanded_yaml_total_bytes in gitmoor's config"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("compose/s03/compose.yaml"), "{}", r.text);
    assert!(
        r.peak_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        r.peak_rss_kib
    );
}

#[test]
fn limits_come_from_the_config_given_to_validate() {
    let text = "services:\n  a:\n    image: x\n    ports: [\"8000-8099:8000-8099\"]\n";
    let d = repo(&[("compose/app/compose.yaml", text)]);
    let r = validate_measured(d.path(), &[]);
    assert_eq!(r.code, 0, "{}", r.text);
    let cfg = d.path().join("gitmoor.yaml");
    std::fs::write(&cfg, "repo: /srv/infra.git\nlimits:\n  ports: 50\n").unwrap();
    let r = validate_measured(d.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(
        r.text.contains("compose/app/compose.yaml:1: services: 100 port bindings (ports: and expose:, a range counted port by port), over the limit of 50 per stack (limits.ports)"),
        "{}",
        r.text
    );
}
