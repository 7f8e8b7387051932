//! `gitmoor run`: deploys at start and at each poll, does not retry a bad commit in a loop, keeps
//! the last good state serving, and stops cleanly on SIGTERM.

mod support;
use std::process::{Command, Stdio};
use support::*;

fn stack_file(port: u16, msg: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    environment:\n      MSG: {msg}\n    ports: [\"127.0.0.1:{port}:8080\"]\n"
    )
}

#[test]
fn daemon_deploys_each_push_and_does_not_loop_on_a_bad_commit() {
    let stack = unique("dm");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    host.poll_every_second();
    let port = free_port();
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file(port, "one"));
    remote.commit("one");

    let log = host.dir.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .args(["run", "--config"])
        .arg(&host.config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let env_of = |want: &str| {
        let id = container_id(&stack, "web");
        (!id.is_empty() && inspect(&id, "{{json .Config.Env}}").contains(want)).then_some(id)
    };
    let first = eventually(60, || env_of("MSG=one")).expect("first commit deployed at start");

    remote.write(&file, &stack_file(port, "two"));
    remote.commit("two");
    let second =
        eventually(60, || env_of("MSG=two")).expect("second commit deployed at the next poll");
    assert_ne!(first, second);

    // A bad commit: not deployed, the last good container keeps serving, tried once only.
    remote.write(
        &file,
        &stack_file(port, "three")
            .replace("    environment:", "    bogus_key: 1\n    environment:"),
    );
    let bad = remote.commit("bad");
    eventually(30, || {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(host.state.join("state.json")).ok()?).ok()?;
        (s["last_attempt"]["commit"]["sha"] == bad.as_str()).then_some(())
    })
    .expect("bad commit attempted");
    std::thread::sleep(std::time::Duration::from_secs(4)); // several polls
    let s = host.state_json();
    assert_eq!(s["last_attempt"]["result"], "invalid");
    assert_eq!(
        s["last_attempt"]["failures"], 1,
        "the bad commit was retried"
    );
    assert!(s["last_attempt"]["error"]
        .as_str()
        .unwrap()
        .contains("bogus_key"));
    assert_eq!(
        container_id(&stack, "web"),
        second,
        "the last good container keeps serving"
    );
    assert_eq!(inspect(&second, "{{.State.Running}}"), "true");
    assert!(http(port, "GET", "/", "").is_some(), "still serving");

    // SIGTERM: a clean exit.
    let pid = child.id().to_string();
    run(Command::new("kill").args(["-TERM", &pid]));
    let status =
        eventually(30, || child.try_wait().ok().flatten()).expect("daemon exits after SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit status {status:?}\n{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert!(
        text.contains("not retried") || text.matches("bogus_key").count() <= 2,
        "{text}"
    );
}
