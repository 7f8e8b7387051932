//! Host files on the real daemon and dockerd: an `env_file:` kept off Git (`db.env`, absent from
//! the commit) is read from `<secrets_dir>/<stack>/db.env` and reaches the container; an edit to
//! it, seen by the watcher while `gitmoor run` runs, recreates only the service that reads it; its
//! values appear in no response, log or state. And `gitmoor validate` says where it will read it.

mod server_support;
mod support;
use server_support::*;
use support::*;

fn stack_file() -> String {
    "services:\n  db:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    env_file: db.env\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n".to_string()
}

fn env_of(id: &str) -> String {
    inspect(id, "{{json .Config.Env}}")
}

/// Writes `<secrets>/<stack>/db.env` as editors do: a temp file renamed over it.
fn save_host_file(host: &Host, stack: &str, content: &str) {
    let dir = host.secrets.join(stack);
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(".db.env.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join("db.env")).unwrap();
}

#[test]
fn a_host_env_file_reaches_its_reader_and_an_edit_recreates_it_alone() {
    let s = unique("hf");
    let _g = StackGuard(s.clone());
    let remote = Remote::new();
    let (host, port) = host_with_server(&remote, "secrets_debounce_ms: 300\n");
    let v1 = format!("first-{}", unique("v"));
    let v2 = format!("second-{}", unique("v"));
    save_host_file(&host, &s, &format!("DB_PASSWORD={v1}\n"));
    remote.write(&format!("compose/{s}/compose.yaml"), &stack_file());
    let sha = remote.commit("db reads a host env file");
    let d = Daemon::start(&host, port);
    d.wait_synced(&sha, 120);
    let (db1, web1) = (container_id(&s, "db"), container_id(&s, "web"));
    assert!(env_of(&db1).contains(&format!("DB_PASSWORD={v1}")));
    assert!(!env_of(&web1).contains("DB_PASSWORD"));

    // Edited on the host (no commit, no poll): the watcher nudges, db is recreated, web is not.
    save_host_file(&host, &s, &format!("DB_PASSWORD={v2}\n"));
    let st = d.wait_status(60, "the host file edit applied", |st| {
        st["last_reconcile"]["trigger"]
            .as_str()
            .is_some_and(|t| t.contains("secrets"))
            && st["state"] == "synced"
    });
    let db2 = container_id(&s, "db");
    assert_ne!(db2, db1, "db was not recreated");
    assert!(env_of(&db2).contains(&format!("DB_PASSWORD={v2}")));
    assert_eq!(container_id(&s, "web"), web1, "web was touched");
    let actions = st["last_reconcile"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["action"], "recreate");
    let reasons = actions[0]["reasons"].to_string();
    let shown = host.secrets.join(&s).join("db.env").display().to_string();
    assert!(
        reasons.contains(&format!("file {shown} changed")),
        "{reasons}"
    );

    let values = [v1.as_str(), v2.as_str()];
    assert_no_secret(&every_response(&d), &values, "a response");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    // The watcher's line names the stack whose folder changed.
    assert!(
        log.lines()
            .any(|l| l.contains("secrets changed") && l.contains(&s)),
        "{log}"
    );
    assert_no_secret(&log, &values, "the daemon log");
    let state = std::fs::read_to_string(host.state.join("state.json")).unwrap();
    assert_no_secret(&state, &values, "state.json");
    // Nor in a container's labels (what gitmoor writes to Docker besides the env itself).
    assert_no_secret(
        &inspect(&db2, "{{json .Config.Labels}}"),
        &values,
        "the labels",
    );
}

#[test]
fn validate_names_the_host_path_and_errors_only_when_it_is_missing() {
    let repo = tempfile::tempdir().unwrap();
    let stack = repo.path().join("compose/app");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("compose.yaml"), stack_file()).unwrap();
    let validate = |secrets: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gitmoor"));
        cmd.arg("validate").arg(repo.path());
        if let Some(s) = secrets {
            cmd.arg("--secrets").arg(s);
        }
        run(&mut cmd)
    };
    // Without --secrets: a warning that says where it will be read.
    let out = validate(None);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("<secrets_dir>/app/db.env"), "{text}");

    // With --secrets and no file: an error naming the path and the fix.
    let secrets = tempfile::tempdir().unwrap();
    let out = validate(Some(secrets.path()));
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let shown = secrets.path().join("app/db.env").display().to_string();
    assert!(text.contains(&format!("{shown} does not exist")), "{text}");
    assert!(text.contains(&format!("create {shown}")), "{text}");

    // With the file: valid, and its value is never printed.
    std::fs::create_dir_all(secrets.path().join("app")).unwrap();
    std::fs::write(
        secrets.path().join("app/db.env"),
        "DB_PASSWORD=hunter2-xyz\n",
    )
    .unwrap();
    let out = validate(Some(secrets.path()));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
