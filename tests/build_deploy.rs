//! `build:` through `gitmoor apply`: the image is built from the commit's tree, rebuilt only when
//! its context changes, and a broken Dockerfile leaves the running container serving.

mod support;
use support::*;

fn compose(port: u16) -> String {
    format!(
        "services:\n  web:\n    build: ./app\n    init: true\n    ports: [\"127.0.0.1:{port}:8080\"]\n  other:\n    image: example-busybox:1\n    init: true\n    command: [\"httpd\", \"-f\", \"-p\", \"8081\"]\n"
    )
}
const DOCKERFILE: &str = "FROM example-busybox:1\nCOPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

#[test]
fn build_from_the_repo_rebuilds_only_on_context_change_and_survives_a_broken_dockerfile() {
    let stack = unique("bd");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let port = free_port();
    let dir = format!("compose/{stack}");
    remote
        .write(&format!("{dir}/compose.yaml"), &compose(port))
        .write(&format!("{dir}/app/Dockerfile"), DOCKERFILE)
        .write(&format!("{dir}/app/index.html"), "v1\n");
    remote.commit("web built from the repo");
    let out = host.apply_ok();
    assert!(out.contains(&format!("build {stack}-web:latest")), "{out}");
    let body = |want: &str| http(port, "GET", "/index.html", "").filter(|(_, b)| b.contains(want));
    assert!(eventually(20, || body("v1")).is_some(), "v1 served");
    let web = container_id(&stack, "web");

    // A commit outside the context rebuilds nothing.
    remote.write("README.md", "docs\n");
    remote.commit("docs only");
    let out = host.apply_ok();
    assert!(out.contains("no changes"), "{out}");

    // A change inside the context: rebuilt, recreated, and the plan says why.
    remote.write(&format!("{dir}/app/index.html"), "v2\n");
    remote.commit("v2");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains(&format!("build context {dir}/app changed")),
        "{plan}"
    );
    host.apply_ok();
    assert!(eventually(20, || body("v2")).is_some(), "v2 served");
    let web2 = container_id(&stack, "web");
    assert_ne!(web2, web);
    let other = container_id(&stack, "other");

    // A broken Dockerfile: the build fails naming the step, v2 keeps serving, nothing recreated.
    remote.write(
        &format!("{dir}/app/Dockerfile"),
        &DOCKERFILE.replace("COPY index.html", "RUN exit 3\nCOPY index.html"),
    );
    remote.write(&format!("{dir}/app/index.html"), "v3\n");
    remote.commit("broken");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("exit 3"), "the failing step is named: {text}");
    assert_eq!(container_id(&stack, "web"), web2);
    assert_eq!(container_id(&stack, "other"), other);
    assert!(body("v2").is_some(), "v2 still served");
    docker(&["rmi", "-f", &format!("{stack}-web:latest")]);
}
