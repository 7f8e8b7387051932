//! Secrets changing outside Git, on the real daemon: editing `<stack>.env` recreates exactly the
//! stack that uses it (no poll needed: the secrets dir is watched); a missing or broken secrets
//! file is reported on `/status` as blocking that stack while everything keeps running; no
//! secret value, old or new, appears in any response or in the log.

mod server_support;
mod support;
use server_support::*;
use support::*;

fn stack_file() -> String {
    "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    environment:\n      GREETING: ${GREETING}\n".to_string()
}

fn greeting_of(id: &str) -> String {
    inspect(id, "{{json .Config.Env}}")
}

#[test]
fn editing_a_secret_file_recreates_exactly_the_stack_that_uses_it() {
    let (a, b) = (unique("sa"), unique("sb"));
    let _ga = StackGuard(a.clone());
    let _gb = StackGuard(b.clone());
    let remote = Remote::new();
    let (host, port) = host_with_server(&remote, "secrets_debounce_ms: 300\n");
    let v1 = format!("first-{}", unique("v"));
    let v2 = format!("second-{}", unique("v"));
    let vb = format!("bee-{}", unique("v"));
    let v3 = format!("third-{}", unique("v"));
    host.secret(&a, &format!("GREETING={v1}\n"));
    host.secret(&b, &format!("GREETING={vb}\n"));
    remote.write(&format!("compose/{a}/compose.yaml"), &stack_file());
    remote.write(&format!("compose/{b}/compose.yaml"), &stack_file());
    let sha = remote.commit("two stacks");
    let d = Daemon::start(&host, port);
    d.wait_synced(&sha, 120);
    let (a1, b1) = (container_id(&a, "web"), container_id(&b, "web"));
    assert!(greeting_of(&a1).contains(&v1));

    // An atomic save of a's secrets file: a is recreated with the new value, b is untouched.
    save_secret_atomically(&host, &a, &format!("GREETING={v2}\n"));
    let s = d.wait_status(60, "the secrets edit applied", |s| {
        s["last_reconcile"]["trigger"]
            .as_str()
            .is_some_and(|t| t.contains("secrets"))
            && s["state"] == "synced"
    });
    let a2 = container_id(&a, "web");
    assert_ne!(a2, a1, "stack {a} was not recreated");
    assert!(greeting_of(&a2).contains(&v2));
    assert_eq!(container_id(&b, "web"), b1, "stack {b} was touched");
    let actions = s["last_reconcile"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["stack"], a.as_str());
    assert_eq!(actions[0]["action"], "recreate");
    assert!(
        actions[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("environment.GREETING"),
        "{actions:#?}"
    );
    assert_eq!(d.metric("gitmoor_secrets_changes_total"), Some(1.0));

    // a's secrets file goes away: /status says it blocks a; both containers keep running.
    std::fs::remove_file(host.secrets.join(format!("{a}.env"))).unwrap();
    let s = d.wait_status(60, "the missing secrets file reported", |s| {
        s["secrets"]["blocked"][0]["stack"] == a.as_str()
    });
    assert_eq!(s["state"], "failed", "{s:#}");
    let blocked = &s["secrets"]["blocked"];
    assert_eq!(blocked.as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(blocked[0]["problem"], "missing");
    assert_eq!(
        blocked[0]["file"],
        host.secrets.join(format!("{a}.env")).display().to_string()
    );
    assert!(blocked[0]["detail"]
        .as_str()
        .unwrap()
        .contains("variable GREETING is not set"));
    let sa = s["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == a.as_str())
        .unwrap();
    assert_eq!(sa["secrets_blocked"]["problem"], "missing");
    assert_eq!(d.metric("gitmoor_secrets_blocked_stacks"), Some(1.0));
    assert_eq!(container_id(&a, "web"), a2);
    assert_eq!(inspect(&a2, "{{.State.Running}}"), "true");
    assert_eq!(container_id(&b, "web"), b1);

    // A broken file (an unterminated quote, with a value in it): reported as invalid, the value
    // is not quoted anywhere.
    save_secret_atomically(&host, &a, &format!("GREETING=\"{v3}\n"));
    let s = d.wait_status(60, "the broken secrets file reported", |s| {
        s["secrets"]["blocked"][0]["problem"] == "invalid"
    });
    assert_eq!(s["secrets"]["blocked"][0]["stack"], a.as_str(), "{s:#}");

    // Restored: synced again, nothing recreated (the value is the one running).
    save_secret_atomically(&host, &a, &format!("GREETING={v2}\n"));
    let s = d.wait_status(60, "synced after the restore", |s| {
        s["state"] == "synced" && s["secrets"]["blocked"] == serde_json::json!([])
    });
    assert_eq!(s["last_reconcile"]["result"], "noop", "{s:#}");
    assert_eq!(container_id(&a, "web"), a2);
    assert_eq!(container_id(&b, "web"), b1);

    let values = [v1.as_str(), v2.as_str(), vb.as_str(), v3.as_str()];
    assert_no_secret(&every_response(&d), &values, "a response");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("secrets changed"), "{log}");
    assert_no_secret(&log, &values, "the daemon log");
    let state = std::fs::read_to_string(host.state.join("state.json")).unwrap();
    assert_no_secret(&state, &values, "state.json");
}
