//! `gitmoor::process` with real programs: exit codes, a timeout that kills the whole process
//! group, stderr redacted in the error, arguments passed literally (no shell), bounded output.

use gitmoor::process::{resolve_program, Failure, Process};
use gitmoor::redact::Redactor;
use std::time::{Duration, Instant};

fn none() -> Redactor {
    Redactor::default()
}

/// Pids of live processes whose command line contains `needle` as one argument (a zombie has
/// an empty command line, so it does not count: it runs nothing).
fn live_with_arg(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits up to 3 s for no live process to carry `needle`.
async fn gone(needle: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let live = live_with_arg(needle);
        if live.is_empty() || Instant::now() > deadline {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn true_succeeds_and_false_fails_naming_program_and_status() {
    let out = Process::new("/bin/true").run(&none()).await.unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    let e = Process::new("/bin/false")
        .arg("--x")
        .run(&none())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), Some(1));
    assert_eq!(e.program.to_str(), Some("/bin/false"));
    assert_eq!(e.args, vec!["--x"]);
    let shown = e.to_string();
    assert!(shown.contains("/bin/false --x failed"), "{shown}");
    assert!(shown.contains("exit status: 1"), "{shown}");

    // Accepted exit codes are the caller's to choose.
    let out = Process::new("/bin/false")
        .ok_exit_codes(&[0, 1])
        .run(&none())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let e = Process::new("/nonexistent/gitmoor-tool")
        .run(&none())
        .await
        .unwrap_err();
    assert!(matches!(e.failure, Failure::Spawn(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cannot start /nonexistent/gitmoor-tool:"),
        "{e}"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_program_and_what_it_started() {
    // `timeout --foreground` forks `sleep` as its child, in the same process group: killing
    // only the direct child would leave the sleep running.
    let marker = "31.4159";
    let started = Instant::now();
    let e = Process::new("/usr/bin/timeout")
        .args(["--foreground", "60", "/bin/sleep", marker])
        .timeout(Duration::from_millis(200))
        .run(&none())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e.failure, Failure::TimedOut(t) if t == Duration::from_millis(200)),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        e.to_string().contains("did not finish within 200 ms"),
        "{e}"
    );
    let left = gone(marker).await;
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[tokio::test]
async fn a_plain_sleep_past_its_timeout_is_killed_and_reaped() {
    let marker = "5.0271";
    let e = Process::new("/bin/sleep")
        .arg(marker)
        .timeout(Duration::from_millis(200))
        .run(&none())
        .await
        .unwrap_err();
    assert!(matches!(e.failure, Failure::TimedOut(_)), "{e:?}");
    let left = gone(marker).await;
    assert!(left.is_empty(), "sleep still running: {left:?}");
}

#[tokio::test]
async fn a_secret_on_stderr_and_in_the_arguments_comes_out_redacted() {
    let secret = "hunter2-s3cr3t-token";
    let redact = Redactor::new([secret]);
    // ls quotes the path it cannot find on stderr.
    let path = format!("/nonexistent/{secret}");
    let e = Process::new("/bin/ls")
        .arg(&path)
        .run(&redact)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), Some(2));
    assert!(e.stderr.contains("/nonexistent/***"), "{}", e.stderr);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(secret), "leaks: {shown}");
    assert!(shown.contains("No such file"), "{shown}");
}

#[tokio::test]
async fn arguments_are_passed_literally_never_through_a_shell() {
    let args = [
        "a; rm -rf /",
        "$(id -u)",
        "`true`",
        "*",
        "x > /tmp/gitmoor-no",
    ];
    let out = Process::new("/bin/echo")
        .args(args)
        .run(&none())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", args.join(" "))
    );
    assert!(!std::path::Path::new("/tmp/gitmoor-no").exists());
}

#[tokio::test]
async fn output_beyond_the_cap_is_drained_and_dropped() {
    // 1 MiB through a 64 KiB pipe: without draining, head would block and time out.
    let out = Process::new("/usr/bin/head")
        .args(["-c", "1048576", "/dev/zero"])
        .output_cap(1000)
        .timeout(Duration::from_secs(10))
        .run(&none())
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout_truncated);
}

#[tokio::test]
async fn environment_and_working_directory_are_the_callers() {
    let dir = tempfile::tempdir().unwrap();
    let out = Process::new("/usr/bin/env")
        .env_clear()
        .env("ONLY", "this")
        .current_dir(dir.path())
        .run(&none())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ONLY=this\n");
    let pwd = Process::new("/bin/pwd")
        .current_dir(dir.path())
        .run(&none())
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&pwd.stdout);
    assert_eq!(
        shown.trim_end(),
        dir.path().canonicalize().unwrap().to_str().unwrap()
    );
}

#[test]
fn resolve_takes_the_override_else_path() {
    let found = resolve_program("true", None, "true_bin").unwrap();
    assert!(found.is_absolute() && found.ends_with("true"), "{found:?}");
    let chosen = resolve_program("nginx", Some("/bin/true".as_ref()), "nginx_bin").unwrap();
    assert_eq!(chosen.to_str(), Some("/bin/true"));
    // A file without an execute bit is refused.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("nginx");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let e = resolve_program("nginx", Some(&plain), "nginx_bin").unwrap_err();
    assert!(e.to_string().contains("is not executable"), "{e}");
    assert!(e.to_string().contains("set nginx_bin"), "{e}");
}
