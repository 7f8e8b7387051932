//! What self-hosted projects' own compose files need to deploy as shipped, on the real dockerd
//! through the gitmoor binary: a placeholder password under `literal_secrets: warn` (deployed,
//! said, never shown), and a `~/` bind source (the home of the user gitmoor runs as, or the
//! config's `home_dir:`).

mod support;
use std::process::Command;
use support::*;

const PASSWORD: &str = "Placeholder-Pw-7731";

fn every_file_text(dir: &std::path::Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_file_text(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn a_shipped_placeholder_password_is_refused_by_default_and_deployed_under_warn_never_shown() {
    let stack = unique("lit");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "literal_secrets: refuse\n");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &format!(
            "services:\n  db:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    environment:\n      POSTGRES_PASSWORD: {PASSWORD}\n      POSTGRES_USER: app\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8081\"]\n"
        ),
    );
    remote.commit("the project's compose file as shipped");

    // The default: refused, nothing created, the value never printed.
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "services.db.environment.POSTGRES_PASSWORD: literal secret in a committed file"
        ),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    let project = format!("label=com.docker.compose.project={stack}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &project]).trim(), "");

    // The team chooses to deploy it as written.
    host.edit_config("literal_secrets: refuse", "literal_secrets: warn");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains("deployed as written (literal_secrets: warn)"),
        "{plan}"
    );
    let text = host.apply_ok();
    assert!(text.contains("literal_secrets: warn"), "{text}");
    let db = container_id(&stack, "db");
    let web = container_id(&stack, "web");
    assert_eq!(inspect(&db, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&web, "{{.State.Running}}"), "true");
    let env = inspect(&db, "{{json .Config.Env}}");
    assert!(
        env.contains(&format!("POSTGRES_PASSWORD={PASSWORD}")),
        "{env}"
    );

    // Never shown: plan, apply, status, labels, state.
    let status = output_text(&host.gitmoor(&["status"]));
    let labels =
        inspect(&db, "{{json .Config.Labels}}") + &inspect(&web, "{{json .Config.Labels}}");
    let mut state = String::new();
    every_file_text(&host.state, &mut state);
    for (what, shown) in [
        ("plan", &plan),
        ("apply", &text),
        ("status", &status),
        ("labels", &labels),
        ("state", &state),
    ] {
        assert!(
            !shown.contains(PASSWORD),
            "{what} shows the password:\n{shown}"
        );
    }

    // A second apply is a no-op: the warning stays, nothing moves.
    let again = host.apply_ok();
    assert!(again.contains("literal_secrets: warn"), "{again}");
    assert_eq!(container_id(&stack, "db"), db);
    assert_eq!(container_id(&stack, "web"), web);
}

#[test]
fn a_home_bind_source_is_the_home_of_the_user_gitmoor_runs_as() {
    let stack = unique("home");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let home = tempfile::tempdir().unwrap();
    // The config's home_dir: (default: the passwd entry of the user gitmoor runs as).
    let host = Host::new(&remote, &format!("home_dir: {}\n", home.path().display()));
    std::fs::create_dir_all(home.path().join(".memos")).unwrap();
    std::fs::write(
        home.path().join(".memos/hello.txt"),
        "from the home folder\n",
    )
    .unwrap();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        "services:\n  memos:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    volumes:\n      - ~/.memos/:/var/opt/memos:ro\n",
    );
    remote.commit("memos as shipped");
    // HOME is not what counts: a `sudo -E` apply must read the same folder as the daemon.
    let out = run(Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .env("HOME", "/nonexistent-home")
        .args(["apply", "--config"])
        .arg(&host.config));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let expanded = format!("{}/.memos", home.path().display());
    assert!(
        text.contains(&format!("`~/.memos/` is `{expanded}` on this host")),
        "{text}"
    );
    let id = container_id(&stack, "memos");
    let seen = docker(&["exec", &id, "cat", "/var/opt/memos/hello.txt"]);
    assert_eq!(seen, "from the home folder");
}
