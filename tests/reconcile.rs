//! The reconcile loop on the real dockerd and a real Git remote, with small busybox stacks:
//! what changes is touched, what does not is left alone, and bad input changes nothing.

mod support;
use support::*;

/// Two services on busybox httpd; `web` is published on `port`.
fn two_services(port: u16, greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: example-busybox:1
    command: ["httpd", "-f", "-p", "8080"]
    environment:
      GREETING: {greeting}
      TOKEN: ${{TOKEN}}
    ports: ["127.0.0.1:{port}:8080"]
  worker:
    image: example-busybox:1
    command: ["httpd", "-f", "-p", "8081"]
    volumes: [data:/data]
volumes:
  data: {{}}
"#
    )
}

struct World {
    stack: String,
    _guard: StackGuard,
    remote: Remote,
    host: Host,
    port: u16,
}

fn world() -> World {
    let stack = unique("rc");
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    host.secret(&stack, "TOKEN=tok-Zq81-never-logged\n");
    let port = free_port();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &two_services(port, "hello"),
    );
    remote.commit("two services");
    World {
        _guard: StackGuard(stack.clone()),
        stack,
        remote,
        host,
        port,
    }
}

impl World {
    fn file(&self) -> String {
        format!("compose/{}/compose.yaml", self.stack)
    }
    fn ids(&self) -> (String, String) {
        (
            container_id(&self.stack, "web"),
            container_id(&self.stack, "worker"),
        )
    }
    /// `gitmoor apply` must fail, name `needle`, and leave the host as it was.
    fn apply_fails_untouched(&self, needle: &str) {
        let before = self.ids();
        let out = self.host.gitmoor(&["apply"]);
        let text = output_text(&out);
        assert!(!out.status.success(), "apply should fail:\n{text}");
        assert!(
            text.contains(needle),
            "error should mention {needle:?}:\n{text}"
        );
        assert!(
            !text.contains("never-logged"),
            "secret value in output:\n{text}"
        );
        assert_eq!(self.ids(), before, "the host changed:\n{text}");
        assert_eq!(inspect(&before.0, "{{.State.Running}}"), "true");
    }
}

#[test]
fn change_one_service_recreates_only_it_then_noop() {
    let w = world();
    let out = w.host.apply_ok();
    assert!(out.contains(&format!("create {}-web-1", w.stack)), "{out}");
    let (web, worker) = w.ids();
    assert!(!web.is_empty() && !worker.is_empty());
    let again = w.host.apply_ok();
    assert!(again.contains("no changes"), "{again}");

    w.remote.write(&w.file(), &two_services(w.port, "bonjour"));
    w.remote.commit("greet in French");
    let out = w.host.apply_ok();
    assert!(out.contains("environment.GREETING changed"), "{out}");
    let (web2, worker2) = w.ids();
    assert_ne!(web2, web, "web recreated");
    assert_eq!(worker2, worker, "worker untouched");
    assert!(inspect(&web2, "{{json .Config.Env}}").contains("GREETING=bonjour"));
    assert_eq!(
        inspect(
            &web2,
            "{{index .Config.Labels \"com.docker.compose.service\"}}"
        ),
        "web"
    );

    // A secret edit (outside Git) recreates the service that reads it.
    w.host.secret(&w.stack, "TOKEN=rotated-Zq81-never-logged\n");
    let out = w.host.apply_ok();
    assert!(
        out.contains("environment.TOKEN changed") && !out.contains("never-logged"),
        "{out}"
    );
    assert_eq!(w.ids().1, worker, "worker untouched by the secret edit");
}

#[test]
fn removed_service_and_removed_stack_keep_volumes() {
    let w = world();
    w.host.apply_ok();
    let vol = format!("{}_data", w.stack);
    assert_eq!(
        docker(&["volume", "ls", "-q", "--filter", &format!("name=^{vol}$")]),
        vol
    );

    // Remove the worker service: its container goes, the web stays, the volume stays.
    let web = w.ids().0;
    let only_web = two_services(w.port, "hello");
    let only_web =
        only_web.split("  worker:").next().unwrap().to_string() + "volumes:\n  data: {}\n";
    w.remote.write(&w.file(), &only_web);
    w.remote.commit("drop the worker");
    let out = w.host.apply_ok();
    assert!(
        out.contains(&format!("remove {}-worker-1", w.stack)),
        "{out}"
    );
    assert_eq!(w.ids(), (web.clone(), String::new()));

    // Remove the whole stack folder: containers and networks go, the volume is kept and listed.
    w.remote
        .remove(&format!("compose/{}", w.stack))
        .write("README.md", "empty\n");
    w.remote.commit("retire the stack");
    let plan = output_text(&w.host.gitmoor(&["plan"]));
    assert!(plan.contains(&format!("keep volume {vol}")), "{plan}");
    let state = w.host.state_json();
    assert!(
        state["stacks"].get(&w.stack).is_some(),
        "the stack is in the state while it runs: {state}"
    );
    w.host.apply_ok();
    assert_eq!(w.ids(), (String::new(), String::new()));
    // A retired stack leaves the state file (and so `/status`) once it is gone from the host.
    let state = w.host.state_json();
    assert!(state["stacks"].get(&w.stack).is_none(), "{state}");
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{}_default$", w.stack)
        ]),
        ""
    );
    assert_eq!(
        docker(&["volume", "ls", "-q", "--filter", &format!("name=^{vol}$")]),
        vol,
        "volume kept"
    );
}

#[test]
fn bad_input_fails_before_touching_the_host() {
    let w = world();
    w.host.apply_ok();
    let good = two_services(w.port, "hello");

    // Invalid YAML, with the file and line.
    w.remote
        .write(&w.file(), &good.replace("  worker:", "  worker: [unclosed"));
    w.remote.commit("broken yaml");
    w.apply_fails_untouched(&w.file());

    // An unknown key, named with its line.
    w.remote.write(
        &w.file(),
        &good.replace(
            "    volumes: [data:/data]",
            "    volumes: [data:/data]\n    frobnicate: true",
        ),
    );
    w.remote.commit("unknown key");
    w.apply_fails_untouched("frobnicate");

    // A missing secret variable, naming the variable and the secrets file.
    w.remote.write(
        &w.file(),
        &good.replace("${TOKEN}", "${TOKEN}${MISSING_VAR}"),
    );
    w.remote.commit("missing secret");
    w.apply_fails_untouched("MISSING_VAR");

    // A committed .env file.
    w.remote
        .write(&w.file(), &good)
        .write(&format!("compose/{}/.env", w.stack), "X=1\n");
    w.remote.commit("committed env");
    w.apply_fails_untouched(".env");

    // A literal password in environment:.
    w.remote.remove(&format!("compose/{}/.env", w.stack));
    w.remote.write(
        &w.file(),
        &good.replace(
            "GREETING: hello",
            "GREETING: hello\n      DB_PASSWORD: hunter2",
        ),
    );
    w.remote.commit("literal password");
    w.apply_fails_untouched("DB_PASSWORD");

    // An image name that is not a reference: it would reach dockerd inside a URL path
    // (`/images/../events?/json` is `GET /events`, a stream that never ends). Refused with the
    // key, whether written in the file or coming from the secrets file.
    for (image, secrets) in [
        ("\"../events?\"", "TOKEN=tok-Zq81-never-logged\n"),
        (
            "${IMG}",
            "TOKEN=tok-Zq81-never-logged\nIMG=../containers/x/export?\n",
        ),
    ] {
        w.host.secret(&w.stack, secrets);
        w.remote.write(
            &w.file(),
            &good.replacen(
                "image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8081\"]",
                &format!("image: {image}\n    command: [\"httpd\", \"-f\", \"-p\", \"8081\"]"),
                1,
            ),
        );
        w.remote.commit("image name with a path in it");
        w.apply_fails_untouched("services.worker.image");
        w.apply_fails_untouched("is not an image reference");
    }
    w.host.secret(&w.stack, "TOKEN=tok-Zq81-never-logged\n");

    // The fix deploys.
    w.remote.write(&w.file(), &good);
    w.remote.commit("fixed");
    let again = w.host.apply_ok();
    assert!(again.contains("no changes"), "{again}");
    let state = w.host.state_json();
    assert_eq!(state["last_attempt"]["result"], "noop");
    assert_eq!(state["history"][1]["result"], "invalid");
}

#[test]
fn a_new_container_that_cannot_start_leaves_the_old_one_serving() {
    let w = world();
    w.host.apply_ok();
    let (web, _) = w.ids();
    assert!(
        eventually(20, || http(w.port, "GET", "/", "")).is_some(),
        "web serves"
    );

    // The new version wants a host port that something else holds: its start fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    w.remote.write(&w.file(), &two_services(busy, "hello"));
    w.remote.commit("move to a busy port");
    let out = w.host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("restored"), "{text}");

    let (web_now, _) = w.ids();
    assert_eq!(web_now, web, "the old container is back under its name");
    assert_eq!(inspect(&web, "{{.State.Running}}"), "true");
    assert!(
        eventually(20, || http(w.port, "GET", "/", "")).is_some(),
        "old web serves again"
    );
    let state = w.host.state_json();
    assert_eq!(state["stacks"][&w.stack]["result"], "failed");
    drop(taken);
}

#[test]
fn a_hand_made_container_with_the_same_name_is_reported_not_replaced() {
    let w = world();
    let name = format!("{}-web-1", w.stack);
    let made = docker(&["create", "--name", &name, "example-busybox:1", "true"]);
    assert!(!made.is_empty(), "hand-made container created");
    let out = w.host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&name) && text.contains("not manage"),
        "{text}"
    );
    assert_eq!(
        container_id(&w.stack, "web"),
        made,
        "the stranger is untouched"
    );
    assert_eq!(
        container_id(&w.stack, "worker"),
        "",
        "nothing of the stack was created"
    );
    docker(&["rm", "-f", &name]);
}
