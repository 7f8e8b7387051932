//! The status server of the real daemon (real dockerd, real git remote): `/health`, `/status`,
//! `/metrics` and `gitmoor status` reflect a deploy; secret values appear in none of them nor in
//! the log; `/health` turns 503 while one reconcile is stuck; the server stops with the daemon.

mod server_support;
mod support;
use server_support::*;
use support::*;

fn app_stack() -> String {
    "services:\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    env_file: [.env]\n    environment:\n      GREETING: ${GREETING}\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n      timeout: 5s\n      retries: 3\n  worker:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n".to_string()
}

#[test]
fn status_endpoints_reflect_a_deploy_and_never_show_a_secret() {
    let stack = unique("st");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let (host, port) = host_with_server(&remote, "");
    let greeting = format!("hello-{}", unique("g"));
    let password = format!("pw-{}-s3cr3t", unique("p"));
    host.secret(
        &stack,
        &format!("GREETING={greeting}\nDB_PASSWORD={password}\n"),
    );
    remote.write(&format!("compose/{stack}/compose.yaml"), &app_stack());
    let sha = remote.commit("first deploy");

    let d = Daemon::start(&host, port);
    let s = d.wait_synced(&sha, 120);

    // The deployed commit, the branch head, the last reconcile and its plan.
    assert_eq!(s["schema"], 1);
    assert_eq!(s["branch"], "main");
    assert_eq!(s["deployed"]["subject"], "first deploy");
    assert_eq!(s["deployed"]["short"], &sha[..10]);
    assert_eq!(s["branch_head"]["sha"], sha.as_str());
    assert_eq!(s["health"]["ok"], true);
    let last = &s["last_reconcile"];
    assert_eq!(last["result"], "success", "{s:#}");
    assert_eq!(last["trigger"], "start");
    let actions = last["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a["action"] == "create"
            && a["target"] == format!("{stack}-web-1")
            && a["reasons"][0] == "new service"),
        "{actions:#?}"
    );
    // Each service with its container, image, state and health.
    let st = s["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == stack.as_str())
        .unwrap_or_else(|| panic!("{s:#}"));
    assert_eq!(st["health"], "healthy");
    assert_eq!(st["last_good_commit"], sha.as_str());
    let svc = |name: &str| {
        st["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    let web = svc("web");
    assert_eq!(web["container"], format!("{stack}-web-1"));
    assert_eq!(web["image"], "example-busybox:1");
    assert_eq!(web["state"], "running");
    assert_eq!(web["health"], "healthy");
    assert_eq!(web["status"], "ok");
    assert_eq!(svc("worker")["health"], serde_json::Value::Null);
    assert_eq!(s["history"][0]["commit"]["sha"], sha.as_str());
    assert_eq!(s["history"][0]["result"], "success");
    // The poll ("0 0 1 1 *") is months away; RFC 3339 UTC strings sort as times.
    assert!(s["next_poll"].as_str().unwrap() > s["generated_at"].as_str().unwrap());
    assert!(s["observed_at"].is_string());
    assert_eq!(s["secrets"]["blocked"], serde_json::json!([]));

    // /health is cheap and says ok.
    assert_eq!(d.get("/health"), Some((200, "ok\n".to_string())));

    // /metrics.
    let (code, metrics) = d.get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        metric_in(&metrics, "gitmoor_reconciles_total{result=\"success\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("gitmoor_deployed_commit_info{{sha=\"{sha}\"")),
        "{metrics}"
    );
    assert_eq!(
        metric_in(
            &metrics,
            "gitmoor_containers{state=\"running\",health=\"healthy\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_in(
            &metrics,
            "gitmoor_containers{state=\"running\",health=\"none\"}"
        ),
        Some(1.0)
    );
    assert!(metric_in(&metrics, "gitmoor_last_success_timestamp_seconds").unwrap() > 1.6e9);
    assert_eq!(
        metric_in(&metrics, "gitmoor_reconcile_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric_in(&metrics, "gitmoor_fetch_failures_total"),
        Some(0.0)
    );
    assert_eq!(metric_in(&metrics, "gitmoor_up"), Some(1.0));

    // No webhook secret configured: no webhook endpoint at all.
    let body = push_payload("refs/heads/main", &sha);
    let sig = sign("anything", body.as_bytes());
    let hook = request(
        port,
        "POST",
        "/hooks/github",
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")],
        body.as_bytes(),
    );
    assert_eq!(hook.map(|h| h.0), Some(404));

    // The status page answers.
    let (code, page) = d.get("/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains(&stack) && page.contains("synced"), "{page}");

    // `gitmoor status` from the HTTP endpoint, by URL and by the config's `listen:`.
    let url = format!("http://127.0.0.1:{port}");
    for args in [vec!["status", "--url", url.as_str()], vec!["status"]] {
        let out = host.gitmoor(&args);
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("state: synced"), "{text}");
        assert!(text.contains(&sha[..10]), "{text}");
        assert!(text.contains(&format!("stack {stack}: healthy")), "{text}");
        assert_no_secret(&text, &[&greeting, &password], "gitmoor status");
    }

    // The secrets reached the container, and no response shows them.
    let id = container_id(&stack, "web");
    let env = inspect(&id, "{{json .Config.Env}}");
    assert!(env.contains(&greeting) && env.contains(&password));
    assert_no_secret(&every_response(&d), &[&greeting, &password], "a response");

    // The server stops with the daemon; the CLI falls back to the state file.
    let (status, log) = d.stop();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert_no_secret(&log, &[&greeting, &password], "the daemon log");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the status server outlived the daemon"
    );
    let out = host.gitmoor(&["status"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("does not answer"), "{text}");
    assert!(
        text.contains(&format!("deployed: {}", &sha[..10])),
        "{text}"
    );
}

#[test]
fn health_is_503_while_one_reconcile_is_stuck_then_recovers() {
    let stack = unique("hs");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let (host, port) = host_with_server(&remote, "health_max_reconcile_secs: 2\n");
    // The wait for `db` to be healthy lasts 20 s: the loop is "stuck" beyond the 2 s bound.
    set_config(&host, "health_timeout_secs: 90", "health_timeout_secs: 20");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        "services:\n  db:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 1s\n      start_period: 300s\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    depends_on:\n      db:\n        condition: service_healthy\n",
    );
    remote.commit("db never gets healthy");
    let d = Daemon::start(&host, port);

    let (code, body) = eventually(60, || {
        let r = d.get("/health")?;
        (r.0 == 503).then_some(r)
    })
    .unwrap_or_else(|| panic!("/health never turned 503\n{}", d.log_text()));
    assert_eq!(code, 503);
    assert!(body.contains("health_max_reconcile_secs (2 s)"), "{body}");
    let s = d.status().unwrap();
    assert_eq!(s["state"], "progressing", "{s:#}");
    assert_eq!(s["health"]["ok"], false);
    assert!(s["reconciling"]["started_at"].is_string(), "{s:#}");
    assert_eq!(d.metric("gitmoor_up"), Some(0.0));
    assert_eq!(d.metric("gitmoor_reconciling"), Some(1.0));

    // The wait gives up; the loop is alive again and the failure is reported.
    let s = d.wait_status(120, "the failed reconcile", |s| s["state"] == "failed");
    assert_eq!(d.get("/health"), Some((200, "ok\n".to_string())));
    let err = s["last_reconcile"]["error"].as_str().unwrap();
    assert!(err.contains(&format!("{stack}-db-1")), "{err}");
    assert!(err.contains("did not become healthy"), "{err}");
    assert_eq!(s["last_reconcile"]["result"], "failed");
    assert!(
        s["state_reason"].as_str().unwrap().contains("failed"),
        "{s:#}"
    );
    let st = &s["stacks"][0];
    assert_eq!(st["name"], stack.as_str());
    assert_eq!(st["result"], "failed");
    assert!(st["error"].as_str().unwrap().contains("db"), "{s:#}");
}
