//! Data folders on the real dockerd through the real `gitmoor apply` and a Git remote: a relative
//! bind whose source is not in the commit is the stack's folder of the data dir, made on first
//! use, and what a container writes there outlives a recreate and the stack's removal.

mod support;
use support::*;

fn compose(value: &str) -> String {
    format!(
        r#"services:
  db:
    image: example-busybox:1
    command: ["sleep", "3600"]
    environment:
      VALUE: {value}
    volumes: ["./pgdata:/var/lib/db"]
"#
    )
}

#[test]
fn a_data_folder_keeps_what_a_container_wrote_across_a_recreate_and_a_stack_removal() {
    let stack = unique("df");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &compose("a"));
    remote.commit("db with a data folder");
    let folder = host.state.join("data").join(&stack).join("pgdata");

    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains(&format!(
            "[{stack}] data folder ./pgdata -> {} (new)",
            folder.display()
        )),
        "{plan}"
    );
    // `plan --json` carries the same line, and the stack's unit with its kind.
    let out = host.gitmoor(&["plan", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
    let df = &doc["data_folders"][0];
    assert_eq!(df["written"], "./pgdata", "{doc:#}");
    assert_eq!(df["host"], folder.to_string_lossy().as_ref(), "{doc:#}");
    assert_eq!(df["new"], true, "{doc:#}");
    assert_eq!(doc["units"][0]["kind"], "stack", "{doc:#}");
    assert_eq!(doc["units"][0]["name"], stack.as_str(), "{doc:#}");
    host.apply_ok();
    assert!(folder.is_dir(), "made on first use");
    let db = container_id(&stack, "db");
    assert_eq!(
        inspect(&db, "{{range .Mounts}}{{.Source}}{{end}}"),
        folder.to_string_lossy()
    );
    docker(&[
        "exec",
        &db,
        "sh",
        "-c",
        "echo kept > /var/lib/db/PG_VERSION",
    ]);
    assert_eq!(
        std::fs::read_to_string(folder.join("PG_VERSION")).unwrap(),
        "kept\n"
    );

    // A recreate: the new container finds what the old one wrote.
    remote.write(&file, &compose("b"));
    remote.commit("db: VALUE=b");
    let out = host.apply_ok();
    assert!(out.contains("environment.VALUE changed"), "{out}");
    assert!(
        out.contains(&format!(
            "data folder ./pgdata -> {} (kept)",
            folder.display()
        )),
        "{out}"
    );
    let db2 = container_id(&stack, "db");
    assert_ne!(db2, db);
    assert_eq!(
        docker(&["exec", &db2, "cat", "/var/lib/db/PG_VERSION"]),
        "kept"
    );

    // The stack leaves the repo: its containers go, its data folder stays, and is listed.
    remote.remove(&format!("compose/{stack}"));
    remote.write("compose/.keep", "");
    remote.commit("remove the stack");
    let out = host.apply_ok();
    assert!(container_id(&stack, "db").is_empty(), "{out}");
    assert_eq!(
        std::fs::read_to_string(folder.join("PG_VERSION")).unwrap(),
        "kept\n"
    );
    let kept = format!(
        "keep data folder {}",
        host.state.join("data").join(&stack).display()
    );
    assert!(out.contains(&kept), "{out}");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(plan.contains(&kept), "{plan}");
}
