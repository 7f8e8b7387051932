//! The seed's app, end to end on the real dockerd: backend + PostgreSQL from a real Git remote.
//! Rows written through the backend survive a commit that changes the backend, a recreate of the
//! DB container, and a `git revert`.

mod support;
use support::*;

const SEED: &str = include_str!("../examples/seed/repo/compose/app/compose.yaml");

fn users(port: u16) -> Vec<String> {
    let (status, body) = eventually(60, || {
        http(port, "GET", "/cgi-bin/users", "").filter(|(s, _)| *s == 200)
    })
    .expect("backend answers GET /cgi-bin/users");
    assert_eq!(status, 200);
    body.lines().map(str::to_string).collect()
}

#[test]
fn seed_app_deploys_and_keeps_its_data_through_updates_and_revert() {
    let stack = unique("seed");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let port = free_port();
    host.secret(
        &stack,
        &format!(
            "POSTGRES_PASSWORD=pw-Zq81-never-logged\nJWT_SECRET=jwt-Zq81-never-logged\nBACKEND_PORT={port}\nDATABASE_URL=postgres://app_user:${{POSTGRES_PASSWORD}}@postgres:5432/app\n"
        ),
    );
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, SEED).write("README.md", "infra\n");
    remote.commit("seed app");

    let out = host.apply_ok();
    assert!(
        !out.contains("never-logged"),
        "a secret value reached the output:\n{out}"
    );

    // The DB: internal network only, no published port, named volume.
    let db = container_id(&stack, "postgres");
    assert!(!db.is_empty(), "postgres container exists");
    let db_ports = inspect(&db, "{{json .HostConfig.PortBindings}}");
    assert!(
        db_ports == "null" || db_ports == "{}",
        "the DB publishes no port: {db_ports}"
    );
    assert_eq!(inspect(&format!("{stack}_db"), "{{.Internal}}"), "true");
    assert!(inspect(&db, "{{range .Mounts}}{{.Name}} {{end}}").contains(&format!("{stack}_pgdata")));
    // The backend: published on 127.0.0.1 only.
    let be = container_id(&stack, "backend");
    assert_eq!(
        inspect(
            &be,
            "{{(index (index .HostConfig.PortBindings \"3000/tcp\") 0).HostIp}}"
        ),
        "127.0.0.1"
    );
    assert_eq!(
        inspect(
            &be,
            "{{index .Config.Labels \"com.docker.compose.project\"}}"
        ),
        stack
    );

    let (s, _) = eventually(60, || {
        http(port, "POST", "/cgi-bin/users", "alice").filter(|(s, _)| *s == 201)
    })
    .expect("insert alice");
    assert_eq!(s, 201);
    assert_eq!(users(port), vec!["alice"]);

    // 1. A commit that changes the backend: only the backend is recreated, the rows stay.
    remote.write(&file, &SEED.replace("GREETING: hello", "GREETING: bonjour"));
    remote.commit("backend: greet in French");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains(&format!(
            "recreate {stack}-backend-1: environment.GREETING changed"
        )),
        "{plan}"
    );
    assert!(!plan.contains("postgres-1"), "postgres untouched:\n{plan}");
    host.apply_ok();
    assert_eq!(
        container_id(&stack, "postgres"),
        db,
        "postgres was not recreated"
    );
    assert_ne!(container_id(&stack, "backend"), be, "backend was recreated");
    assert_eq!(users(port), vec!["alice"]);
    http(port, "POST", "/cgi-bin/users", "bob").expect("insert bob");

    // 2. A commit that recreates the DB container: same named volume, rows stay.
    remote.write(
        &file,
        &SEED
            .replace("GREETING: hello", "GREETING: bonjour")
            .replace("POSTGRES_DB: app", "POSTGRES_DB: app\n      TZ: UTC"),
    );
    remote.commit("db: set TZ");
    host.apply_ok();
    assert_ne!(
        container_id(&stack, "postgres"),
        db,
        "postgres was recreated"
    );
    assert_eq!(users(port), vec!["alice", "bob"]);

    // 3. git revert: back to the previous config, rows stay.
    let reverted = remote.revert_head();
    let out = host.apply_ok();
    assert!(out.contains("applied"), "{out}");
    assert_eq!(
        inspect(
            &container_id(&stack, "postgres"),
            "{{index .Config.Labels \"io.gitmoor.commit\"}}"
        ),
        reverted
    );
    assert_eq!(users(port), vec!["alice", "bob"]);

    // Nothing changed since: a no-op.
    let out = host.apply_ok();
    assert!(out.contains("no changes"), "{out}");
    let state = std::fs::read_to_string(host.state.join("state.json")).unwrap();
    assert!(
        !state.contains("never-logged"),
        "a secret value reached the state file"
    );
    assert_eq!(host.state_json()["applied"]["sha"], reverted.as_str());
}
