//! What gitmoor keeps in its state dir, and how it behaves when that state or its inputs are
//! not what it expects: a corrupt state file, a process killed while reading a commit, a
//! `gitmoor plan` beside a running daemon, a fixed host secret file, a umask that would share
//! everything. Each on the real dockerd with a real Git remote and the real binary.

mod support;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

fn web(port: u16, msg: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    init: true\n    environment:\n      MSG: {msg}\n    ports: [\"127.0.0.1:{port}:8080\"]\n"
    )
}

/// A host whose daemon polls every second.
fn polling_host(remote: &Remote) -> Host {
    let host = Host::new(remote, "");
    host.poll_every_second();
    host
}

/// Starts `gitmoor <command> --config …` in the background, its stderr in `<host dir>/<log>`.
fn spawn(host: &Host, command: &str, log: &str) -> (Child, std::path::PathBuf) {
    let log = host.dir.path().join(log);
    let child = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .args([command, "--config"])
        .arg(&host.config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

fn daemon(host: &Host, log: &str) -> (Child, std::path::PathBuf) {
    spawn(host, "run", log)
}

/// `gitmoor apply` under `umask` (a shell's 022, the systemd unit's 077).
fn apply_under_umask(host: &Host, umask: &str) -> std::process::Output {
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" apply --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_gitmoor"))
        .arg(&host.config))
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = eventually(30, || child.try_wait().ok().flatten());
    let _ = child.kill();
    let _ = child.wait();
}

fn state(host: &Host) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(host.state.join("state.json")).ok()?).ok()
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_next_apply_succeeds() {
    let stack = unique("cs");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let port = free_port();
    remote.write(&format!("compose/{stack}/compose.yaml"), &web(port, "one"));
    remote.commit("one");
    host.apply_ok();
    let id = container_id(&stack, "web");

    // A disk error or a hand edit: the file is no longer JSON.
    std::fs::write(host.state.join("state.json"), b"{\"applied\": nul").unwrap();
    let text = host.apply_ok();
    assert!(
        text.contains("state.json.corrupt-") && text.contains("started afresh"),
        "the warning names where the file went:\n{text}"
    );
    let aside: Vec<_> = std::fs::read_dir(&host.state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file is kept for a look");
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"{\"applied\": nul",
        "kept as it was"
    );
    let s = host.state_json();
    assert_eq!(s["last_attempt"]["result"], "noop", "{s:#}");
    assert_eq!(s["stacks"][&stack]["result"], "success", "{s:#}");
    assert_eq!(
        container_id(&stack, "web"),
        id,
        "the service was not touched"
    );
    assert!(http(port, "GET", "/", "").is_some(), "still serving");
}

#[test]
fn the_state_dir_is_private_whatever_the_umask() {
    let stack = unique("um");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &web(free_port(), "one"),
    );
    remote.commit("one");
    // The umask of a shell or a cron job: everything world-readable unless gitmoor says not.
    let out = apply_under_umask(&host, "022");
    assert!(out.status.success(), "{}", output_text(&out));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&host.state), 0o700, "state_dir");
    for f in ["state.json", "lock", "repo.lock"] {
        assert_eq!(mode(&host.state.join(f)), 0o600, "{f}");
    }
}

/// Under the systemd unit's umask (0077), the folders gitmoor makes for a container are still
/// walkable by the container's non-root user: a repo folder it mounts (and its sub-folders), and
/// a data folder, as docker compose makes them.
#[test]
fn a_non_root_container_reads_its_repo_files_whatever_gitmoors_umask() {
    let stack = unique("nr");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"600\"]\n    init: true\n    user: \"1000\"\n    volumes: [\"./html:/www:ro\", \"./data:/data\"]\n",
    );
    remote.write(
        &format!("compose/{stack}/html/sub/index.html"),
        "deep page\n",
    );
    remote.commit("a non-root web");
    let out = apply_under_umask(&host, "077");
    assert!(out.status.success(), "{}", output_text(&out));
    let id = container_id(&stack, "web");
    assert_eq!(
        docker(&["exec", "-u", "1000", &id, "cat", "/www/sub/index.html"]),
        "deep page"
    );
    let listed = run(Command::new("docker").args(["exec", "-u", "1000", &id, "ls", "/data"]));
    assert!(listed.status.success(), "{}", output_text(&listed));
}

/// Starts `gitmoor <command>`, waits until it is held reading the commit (the reading mark is in
/// the state file), then kills it with SIGKILL: no chance to record anything.
fn killed_while_reading(host: &Host, command: &str, log: &str) {
    let (mut child, log) = spawn(host, command, log);
    let marked = eventually(30, || {
        let s = state(host)?;
        (s["in_progress"]["phase"] == "reading").then_some(s)
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let marked = marked.unwrap_or_else(|| panic!("no reading mark:\n{text}"));
    assert_eq!(marked["in_progress"]["commit"]["subject"], "one");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Records the mark a killed process left, as the next start does; returns the state.
fn next_start_records(host: &Host, log: &str, result: &str) -> serde_json::Value {
    let (child, log) = daemon(host, log);
    let s = eventually(30, || {
        let s = state(host)?;
        (s["last_attempt"]["result"] == result).then_some(s)
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    stop(child);
    s.unwrap_or_else(|| panic!("no {result} attempt:\n{text}"))
}

/// A reconcile held while reading a commit (here: its secrets file is a FIFO nobody writes, the
/// way a hostile commit can hold it in a parse) and killed with SIGKILL leaves its mark. Once may
/// be the machine (a reboot): the next start records a failure, retried after the backoff. Twice
/// on the same inputs is the commit: held back, saying why, until the inputs change.
#[test]
fn a_reconcile_killed_twice_while_reading_is_not_retried_until_its_inputs_change() {
    let stack = unique("kr");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = polling_host(&remote);
    let port = free_port();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &web(port, "${MSG}"),
    );
    remote.commit("one");
    let fifo = host.secrets.join(format!("{stack}.env"));
    let made = run(Command::new("mkfifo").arg(&fifo));
    assert!(made.status.success(), "{}", output_text(&made));

    killed_while_reading(&host, "run", "first.log");
    let s = next_start_records(&host, "second.log", "failed");
    let error = s["last_attempt"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("stopped while reading") && error.contains("tried once more"),
        "{error}"
    );
    assert!(s.get("in_progress").is_none(), "the mark is closed: {s:#}");

    // The retry after the backoff dies the same way (the backoff is a minute: a second process
    // that retries at once, as `gitmoor apply` does, stands in for it).
    killed_while_reading(&host, "apply", "third.log");
    let s = next_start_records(&host, "fourth.log", "invalid");
    let error = s["last_attempt"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("stopped while reading")
            && error.contains("2 times")
            && error.contains("not tried again"),
        "{error}"
    );
    let (child, log) = daemon(&host, "fifth.log");
    std::thread::sleep(Duration::from_secs(3)); // several polls
    let s = state(&host).unwrap();
    assert_eq!(s["last_attempt"]["result"], "invalid", "not retried: {s:#}");
    assert!(s.get("in_progress").is_none(), "not read again: {s:#}");
    assert_eq!(container_id(&stack, "web"), "", "nothing was deployed");

    // The admin fixes the secrets file: new inputs, deployed at the next poll.
    std::fs::remove_file(&fifo).unwrap();
    host.secret(&stack, "MSG=fixed\n");
    let deployed = eventually(60, || {
        let id = container_id(&stack, "web");
        (!id.is_empty() && inspect(&id, "{{json .Config.Env}}").contains("MSG=fixed")).then_some(id)
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    stop(child);
    assert!(deployed.is_some(), "{text}");
}

/// A commit refused for a limit says which config key to raise; raising it makes the same commit
/// worth another try (the config is part of the inputs), without a new push.
#[test]
fn raising_the_limit_an_error_names_retries_the_refused_commit() {
    let stack = unique("lm");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = polling_host(&remote);
    let cfg = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(&host.config, format!("{cfg}limits:\n  services: 1\n")).unwrap();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        "services:\n  a:\n    image: example-busybox:1\n    command: [\"sleep\", \"600\"]\n    init: true\n  b:\n    image: example-busybox:1\n    command: [\"sleep\", \"600\"]\n    init: true\n",
    );
    remote.commit("two services");
    let s = next_start_records(&host, "first.log", "invalid");
    let error = s["last_attempt"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("limits.services"), "{error}");
    assert_eq!(container_id(&stack, "a"), "");

    std::fs::write(&host.config, format!("{cfg}limits:\n  services: 5\n")).unwrap();
    let (child, log) = daemon(&host, "second.log");
    let deployed = eventually(60, || {
        let (a, b) = (container_id(&stack, "a"), container_id(&stack, "b"));
        (!a.is_empty() && !b.is_empty()).then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    stop(child);
    assert!(
        deployed.is_some(),
        "the raised limit was not tried:\n{text}"
    );
}

/// The file a `secrets:` entry reads is an input like the `.env` files: once the admin creates
/// it, the commit that lacked it is tried again at the next poll (no new commit needed).
#[test]
fn a_fixed_secret_file_makes_the_daemon_try_again() {
    let stack = unique("sf");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = polling_host(&remote);
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"600\"]\n    init: true\n    secrets: [key]\nsecrets:\n  key:\n    file: key.txt\n",
    );
    remote.commit("needs a host file");
    let (child, log) = daemon(&host, "daemon.log");
    let invalid = eventually(30, || {
        let s = state(&host)?;
        (s["last_attempt"]["result"] == "invalid").then_some(s)
    });
    assert!(
        invalid.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(container_id(&stack, "web"), "");

    std::fs::create_dir_all(host.secrets.join(&stack)).unwrap();
    std::fs::write(host.secrets.join(&stack).join("key.txt"), "k3y-from-host").unwrap();
    let deployed = eventually(60, || {
        let id = container_id(&stack, "web");
        (!id.is_empty()).then_some(id)
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    stop(child);
    let id = deployed.unwrap_or_else(|| panic!("not retried after the fix:\n{text}"));
    let out = docker(&["exec", &id, "cat", "/run/secrets/key"]);
    assert_eq!(out, "k3y-from-host");
}

/// `gitmoor plan` runs beside the daemon without the state lock, but fetches into the same Git
/// cache: it waits for the cache's lock instead of writing into it at the same time.
#[test]
fn plan_waits_for_the_git_cache_lock() {
    let stack = unique("pl");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &web(free_port(), "one"),
    );
    remote.commit("one");
    host.apply_ok();

    // Another gitmoor process (the daemon) in the middle of a fetch.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(host.state.join("repo.lock"))
        .unwrap();
    held.lock().unwrap();
    let mut plan = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .args(["plan", "--config"])
        .arg(&host.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        plan.try_wait().unwrap().is_none(),
        "plan went on while another process held the Git cache"
    );
    held.unlock().unwrap();
    let out = eventually(30, || plan.try_wait().ok().flatten());
    assert!(
        out.is_some_and(|s| s.success()),
        "plan finishes once the lock is free"
    );
}

/// A healthcheck that prints the service's environment, and fails: its output reaches the error
/// that `gitmoor apply`, the log and `state.json` show, with the secret value redacted.
#[test]
fn healthcheck_output_is_redacted_in_errors() {
    let stack = unique("hr");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    host.edit_config("health_timeout_secs: 90", "health_timeout_secs: 20");
    host.secret(&stack, "TOKEN=tok-Hq27-never-shown\n");
    std::fs::create_dir_all(host.secrets.join(&stack)).unwrap();
    std::fs::write(host.secrets.join(&stack).join("key.txt"), "filekey-Pq93\n").unwrap();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        r#"services:
  db:
    image: example-busybox:1
    command: ["sleep", "600"]
    init: true
    environment:
      TOKEN: ${TOKEN}
    secrets: [key]
    healthcheck:
      test: ["CMD-SHELL", "echo token=$$TOKEN; echo key=$$(cat /run/secrets/key); exit 1"]
      interval: 1s
      retries: 1
  web:
    image: example-busybox:1
    command: ["sleep", "600"]
    init: true
    depends_on:
      db: {condition: service_healthy}
secrets:
  key:
    file: key.txt
"#,
    );
    remote.commit("a healthcheck that talks too much");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("unhealthy") && text.contains("token=***"),
        "the healthcheck's output is shown, redacted:\n{text}"
    );
    assert!(
        text.contains("key=***"),
        "the secret file's content too:\n{text}"
    );
    assert!(!text.contains("tok-Hq27"), "secret in the output:\n{text}");
    assert!(
        !text.contains("filekey-Pq93"),
        "secret file in the output:\n{text}"
    );
    let state = std::fs::read_to_string(host.state.join("state.json")).unwrap();
    assert!(state.contains("token=***"), "{state}");
    assert!(!state.contains("tok-Hq27"), "secret in state.json");
    assert!(!state.contains("filekey-Pq93"), "secret file in state.json");
}
