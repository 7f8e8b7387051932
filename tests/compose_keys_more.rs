//! More keys real self-hosted compose files use, end to end through `gitmoor apply` on a real Git
//! remote and the real dockerd: each shows in `docker inspect` with the effect docker compose
//! gives it. SELinux relabels (`z`/`Z`) in the bind's mode, `pids_limit` (and its `deploy` form),
//! legacy `links` (names only the linker resolves, on every network), a healthcheck that only
//! tunes the image's own, an optional dependency its profile leaves out, a label given twice;
//! and across commits, `restart: true` (and a link) recreating the dependents of a recreated
//! service, and nothing else. On the way: `plan --json` prints JSON alone, and logs written to a
//! pipe carry no colour codes.

mod support;

use std::process::Command;
use support::{container_id, docker, inspect, output_text, run, unique, Host, Remote, StackGuard};

/// An image made for the test, removed when dropped.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.0]);
    }
}

/// `example-busybox:1` with a HEALTHCHECK of its own (`true`, every 30 s by default).
fn image_with_a_healthcheck() -> ImageGuard {
    let tag = format!("{}:1", unique("gmk-hc"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM example-busybox:1\nHEALTHCHECK CMD [\"true\"]\n",
    )
    .expect("write");
    let ctx = dir.path().to_str().expect("utf-8 path");
    let out = run(Command::new("docker").args(["build", "-q", "-t", &tag, ctx]));
    assert!(out.status.success(), "docker build: {}", output_text(&out));
    ImageGuard(tag)
}

fn exec(id: &str, script: &str) -> String {
    docker(&["exec", id, "sh", "-c", script])
}

fn assert_no_colour(text: &str) {
    assert!(
        !text.contains('\u{1b}'),
        "logs written to a pipe carry no escape sequences:\n{text:?}"
    );
}

const SLEEPER: &str = "    image: example-busybox:1
    init: true
    stop_grace_period: 2s
    command: [\"sleep\", \"600\"]";

#[test]
fn relabels_pids_links_a_tuned_healthcheck_an_optional_dependency_and_a_repeated_label() {
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let image = image_with_a_healthcheck();
    let data = tempfile::tempdir().expect("tempdir");
    let data_path = data.path().to_str().expect("utf-8 path").to_string();
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let compose = format!(
        r#"services:
  db:
{SLEEPER}
    networks: [default, back]
  app:
{SLEEPER}
    pids_limit: 64
    links: ["db:database"]
    networks: [default, back]
    volumes:
      - ./conf:/conf:ro,z
      - type: bind
        source: {data_path}
        target: /data
        bind:
          selinux: Z
    labels:
      - tier=one
      - tier=two
    depends_on:
      tuned:
        condition: service_healthy
      debugger:
        condition: service_started
        required: false
  capped:
{SLEEPER}
    deploy:
      resources:
        limits:
          pids: 32
  tuned:
    image: {image}
    init: true
    stop_grace_period: 2s
    command: ["sleep", "600"]
    healthcheck:
      interval: 1s
      retries: 7
  debugger:
{SLEEPER}
    profiles: [debug]
networks:
  back: {{}}
"#,
        image = image.0
    );
    remote.write(&format!("compose/{stack}/compose.yaml"), &compose);
    remote.write(&format!("compose/{stack}/conf/app.conf"), "key=value\n");
    remote.commit("the keys real files use");
    let text = host.apply_ok();
    assert_no_colour(&text);

    let app = container_id(&stack, "app");
    let db = container_id(&stack, "db");
    let capped = container_id(&stack, "capped");
    let tuned = container_id(&stack, "tuned");
    assert!(!app.is_empty() && !db.is_empty() && !capped.is_empty() && !tuned.is_empty());
    assert_eq!(
        container_id(&stack, "debugger"),
        "",
        "the optional dependency its profile leaves out is not made:\n{text}"
    );

    // pids_limit, and deploy.resources.limits.pids.
    assert_eq!(inspect(&app, "{{.HostConfig.PidsLimit}}"), "64");
    assert_eq!(
        exec(
            &app,
            "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
        ),
        "64"
    );
    assert_eq!(inspect(&capped, "{{.HostConfig.PidsLimit}}"), "32");

    // z / Z: in the bind's mode, as compose sends it.
    let binds = inspect(&app, "{{json .HostConfig.Binds}}");
    let binds: Vec<String> = serde_json::from_str(&binds).expect("binds as JSON");
    assert!(
        binds.iter().any(|b| b
            .starts_with(&host.state.join("content").to_string_lossy().into_owned())
            && b.ends_with("/conf:/conf:ro,z")),
        "{binds:?}"
    );
    assert!(
        binds.contains(&format!("{data_path}:/data:rw,Z")),
        "{binds:?}"
    );
    assert_eq!(
        inspect(
            &app,
            "{{range .Mounts}}{{if eq .Destination \"/conf\"}}{{.Mode}}{{end}}{{end}}"
        ),
        "ro,z"
    );
    assert_eq!(exec(&app, "cat /conf/app.conf"), "key=value");

    // links: three names of db's container on each of app's networks, resolved by app only.
    let db_name = format!("{stack}-db-1");
    let want = vec![
        format!("{db_name}:database"),
        format!("{db_name}:db-1"),
        format!("{db_name}:{db_name}"),
    ];
    let nets: serde_json::Value =
        serde_json::from_str(&inspect(&app, "{{json .NetworkSettings.Networks}}"))
            .expect("networks as JSON");
    for net in [format!("{stack}_default"), format!("{stack}_back")] {
        let links: Vec<String> = serde_json::from_value(nets[&net]["Links"].clone())
            .unwrap_or_else(|e| panic!("links on {net}: {e}: {nets}"));
        assert_eq!(links, want, "on {net}");
    }
    assert_eq!(
        exec(&app, "ping -c1 -W2 database >/dev/null && echo up"),
        "up"
    );
    assert_eq!(
        exec(
            &capped,
            "ping -c1 -W2 database >/dev/null 2>&1 && echo up || echo unknown"
        ),
        "unknown",
        "a link name is the linker's own"
    );

    // The healthcheck without test: the image's test, these timings; app waited for it.
    assert_eq!(
        inspect(&tuned, "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","true"]"#
    );
    assert_eq!(
        inspect(
            &tuned,
            "{{.Config.Healthcheck.Interval}} {{.Config.Healthcheck.Retries}}"
        ),
        "1s 7"
    );
    assert_eq!(inspect(&tuned, "{{.State.Health.Status}}"), "healthy");

    // The label given twice: the last one.
    assert_eq!(inspect(&app, "{{index .Config.Labels \"tier\"}}"), "two");

    // And the next apply has nothing to do.
    let again = host.apply_ok();
    assert!(again.contains("no changes"), "{again}");
    assert_eq!(container_id(&stack, "app"), app);
}

fn chain(v: &str, pids: u32) -> String {
    format!(
        r#"services:
  db:
{SLEEPER}
    environment:
      V: "{v}"
  api:
{SLEEPER}
    depends_on:
      db:
        condition: service_started
        restart: true
  legacy:
{SLEEPER}
    links: [db]
  plain:
{SLEEPER}
    pids_limit: {pids}
    depends_on: [db]
"#
    )
}

#[test]
fn restart_true_and_links_recreate_the_dependents_of_a_recreated_service_only() {
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &chain("1", 40));
    remote.commit("db, and three services that depend on it");
    host.apply_ok();
    let ids = || {
        ["db", "api", "legacy", "plain"]
            .map(|s| container_id(&stack, s))
            .to_vec()
    };
    let first = ids();
    assert!(first.iter().all(|id| !id.is_empty()), "{first:?}");

    remote.write(&file, &chain("2", 40));
    remote.commit("db: a new setting");

    // `plan --json`: stdout is the JSON document alone.
    let out = host.gitmoor(&["plan", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    assert_eq!(doc["subject"], "db: a new setting");
    let shown = doc["actions"].to_string();
    for svc in ["db", "api", "legacy"] {
        assert!(shown.contains(&format!("{stack}-{svc}-1")), "{shown}");
    }
    assert!(!shown.contains(&format!("{stack}-plain-1")), "{shown}");
    assert_no_colour(&String::from_utf8_lossy(&out.stderr));

    let text = host.apply_ok();
    assert_no_colour(&text);
    let second = ids();
    assert_ne!(second[0], first[0], "db is recreated:\n{text}");
    assert_ne!(second[1], first[1], "api restarts with it:\n{text}");
    assert_ne!(second[2], first[2], "and so does the linker:\n{text}");
    assert_eq!(second[3], first[3], "plain is left alone:\n{text}");
    assert!(
        text.contains("depends on db with restart: true, and db is recreated"),
        "the plan says why:\n{text}"
    );
    for id in &second {
        assert_eq!(inspect(id, "{{.State.Status}}"), "running");
    }

    // A pids_limit change recreates exactly that service, and says so.
    remote.write(&file, &chain("2", 50));
    remote.commit("plain: more processes");
    let text = host.apply_ok();
    let third = ids();
    assert_eq!(
        third[..3],
        second[..3],
        "the others are left alone:\n{text}"
    );
    assert_ne!(third[3], second[3], "plain is recreated:\n{text}");
    assert!(text.contains("pids_limit changed"), "{text}");
    assert_eq!(inspect(&third[3], "{{.HostConfig.PidsLimit}}"), "50");
}
