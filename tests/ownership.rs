//! Two configs on one host with the same `instance` (a test config next to the demo, a second
//! repo): each leaves the other's stacks alone (issue 12). Real dockerd, two real Git remotes,
//! two configs with their own state dirs, the real `gitmoor` binary.

mod support;
use support::*;

/// One busybox httpd service serving `greeting` on `port`.
fn web(port: u16, greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: example-busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo {greeting} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
"#
    )
}

/// A config for `remote` whose instance is `instance` (shared by the configs of one test; a
/// unique name, so that nothing else on the host is ever in reach), plus `extra` keys.
fn host_on(remote: &Remote, instance: &str, extra: &str) -> Host {
    let host = Host::new(remote, "");
    let text = std::fs::read_to_string(&host.config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("instance:") {
                format!("instance: {instance}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&host.config, format!("{text}{extra}")).unwrap();
    host
}

fn serves(port: u16) -> Option<String> {
    eventually(30, || {
        http(port, "GET", "/", "")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.trim().to_string())
    })
}

fn label(id: &str, key: &str) -> String {
    inspect(id, &format!("{{{{index .Config.Labels \"{key}\"}}}}"))
}

fn plan_text(host: &Host) -> String {
    let out = host.gitmoor(&["plan"]);
    let text = output_text(&out);
    assert!(out.status.success(), "gitmoor plan failed:\n{text}");
    text
}

#[test]
fn another_repo_on_the_same_instance_leaves_our_stack_alone_unless_it_adopts_it() {
    let instance = unique("own");
    let (stack_a, stack_b) = (unique("owna"), unique("ownb"));
    let _guards = (StackGuard(stack_a.clone()), StackGuard(stack_b.clone()));
    let (port_a, port_b) = (free_port(), free_port());

    let repo_a = Remote::new();
    repo_a.write(
        &format!("compose/{stack_a}/compose.yaml"),
        &web(port_a, "from-a"),
    );
    repo_a.commit("stack a");
    let host_a = host_on(&repo_a, &instance, "");
    host_a.apply_ok();
    let a_id = container_id(&stack_a, "web");
    assert!(!a_id.is_empty());
    assert_eq!(serves(port_a).as_deref(), Some("from-a"));
    let a_net = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{stack_a}_default$"),
    ]);
    assert!(!a_net.is_empty());

    // Repo B, same instance, its own state dir: its apply does not touch A's stack.
    let repo_b = Remote::new();
    repo_b.write(
        &format!("compose/{stack_b}/compose.yaml"),
        &web(port_b, "from-b"),
    );
    repo_b.commit("stack b");
    let host_b = host_on(&repo_b, &instance, "");
    let out = host_b.apply_ok();
    assert!(out.contains(&format!("create {stack_b}-web-1")), "{out}");
    assert!(!out.contains(&format!("remove {stack_a}")), "{out}");
    assert_eq!(
        container_id(&stack_a, "web"),
        a_id,
        "A's container replaced:\n{out}"
    );
    assert_eq!(inspect(&a_id, "{{.State.Running}}"), "true");
    assert_eq!(serves(port_a).as_deref(), Some("from-a"));
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{stack_a}_default$")
        ]),
        a_net,
        "A's network removed"
    );
    assert_eq!(serves(port_b).as_deref(), Some("from-b"));
    assert_eq!(
        label(&a_id, "io.gitmoor.repo"),
        format!("{}#main", repo_a.url())
    );
    // B's plan says why A's stack stays, and A's says the same of B's.
    let plan_b = plan_text(&host_b);
    assert!(
        plan_b.contains(&format!(
            "foreign: stack {stack_a} (from repo {}#main) left alone: {stack_a}-web-1, network {stack_a}_default",
            repo_a.url()
        )),
        "{plan_b}"
    );
    assert!(plan_b.contains("no changes"), "{plan_b}");
    let again_a = host_a.apply_ok();
    assert!(again_a.contains("no changes"), "{again_a}");
    let b_id = container_id(&stack_b, "web");
    assert!(plan_text(&host_a).contains(&format!(
        "foreign: stack {stack_b} (from repo {}#main)",
        repo_b.url()
    )));

    // B now declares a stack of A's name: refused, naming A's repo, and nothing changes.
    repo_b.write(
        &format!("compose/{stack_a}/compose.yaml"),
        &web(port_a, "from-b"),
    );
    repo_b.commit("take over stack a");
    let out = host_b.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "should be refused:\n{text}");
    assert!(
        text.contains(&format!(
            "is held by stack {stack_a} from repo {}#main",
            repo_a.url()
        )) && text.contains(&format!("adopt: [{stack_a}]")),
        "{text}"
    );
    assert_eq!(container_id(&stack_a, "web"), a_id);
    assert_eq!(container_id(&stack_b, "web"), b_id);
    assert_eq!(serves(port_a).as_deref(), Some("from-a"));

    // With `adopt`, B takes the stack over: made anew from B's commit, with B's label.
    let host_b = {
        let text = std::fs::read_to_string(&host_b.config).unwrap();
        std::fs::write(&host_b.config, format!("{text}adopt: [{stack_a}]\n")).unwrap();
        host_b
    };
    let out = host_b.apply_ok();
    assert!(
        out.contains(&format!(
            "taken over from repo {}#main (config: adopt)",
            repo_a.url()
        )),
        "{out}"
    );
    let taken = container_id(&stack_a, "web");
    assert_ne!(taken, a_id);
    assert_eq!(
        label(&taken, "io.gitmoor.repo"),
        format!("{}#main", repo_b.url())
    );
    assert_eq!(serves(port_a).as_deref(), Some("from-b"));
    assert_eq!(
        container_id(&stack_b, "web"),
        b_id,
        "B's own stack untouched"
    );
    // A, which still declares it, is now the one refused; it changes nothing.
    let out = host_a.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("from repo {}#main", repo_b.url())),
        "{text}"
    );
    assert_eq!(container_id(&stack_a, "web"), taken);
}

/// Replaces container `id` with one made by the docker CLI from the same image, command,
/// network and labels, minus `io.gitmoor.repo`: what a gitmoor from before repo labels left.
fn make_legacy(id: &str, network: &str) -> String {
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&inspect(id, "{{json .Config.Labels}}")).unwrap();
    let cmd: Vec<String> = serde_json::from_str(&inspect(id, "{{json .Config.Cmd}}")).unwrap();
    let name = inspect(id, "{{.Name}}").trim_start_matches('/').to_string();
    let image = inspect(id, "{{.Config.Image}}");
    let ports = inspect(
        id,
        "{{range $p, $b := .HostConfig.PortBindings}}{{range $b}}{{.HostIp}}:{{.HostPort}}:{{$p}}{{end}}{{end}}",
    );
    docker(&["rm", "-f", id]);
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        name,
        "--network".into(),
        network.into(),
        "-p".into(),
        ports.trim_end_matches("/tcp").into(),
    ];
    for (k, v) in labels.iter().filter(|(k, _)| *k != "io.gitmoor.repo") {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.push(image);
    args.extend(cmd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let new = docker(&args);
    assert!(!new.is_empty(), "docker run {args:?} failed");
    new
}

#[test]
fn an_unlabelled_container_is_managed_by_the_config_whose_state_records_its_stack() {
    let instance = unique("own");
    let (stack_a, stack_b) = (unique("owla"), unique("owlb"));
    let _guards = (StackGuard(stack_a.clone()), StackGuard(stack_b.clone()));
    let (port_a, port_b) = (free_port(), free_port());
    let repo_a = Remote::new();
    let file_a = format!("compose/{stack_a}/compose.yaml");
    repo_a.write(&file_a, &web(port_a, "old-a"));
    repo_a.commit("stack a");
    let host_a = host_on(&repo_a, &instance, "");
    host_a.apply_ok();
    let legacy = make_legacy(
        &container_id(&stack_a, "web"),
        &format!("{stack_a}_default"),
    );
    assert_eq!(label(&legacy, "io.gitmoor.repo"), "");
    assert_eq!(serves(port_a).as_deref(), Some("old-a"));

    // Another config of the instance has no record of the stack: it leaves it alone.
    let repo_b = Remote::new();
    repo_b.write(
        &format!("compose/{stack_b}/compose.yaml"),
        &web(port_b, "b"),
    );
    repo_b.commit("stack b");
    let host_b = host_on(&repo_b, &instance, "");
    host_b.apply_ok();
    assert_eq!(container_id(&stack_a, "web"), legacy);
    assert!(
        plan_text(&host_b).contains(&format!(
            "foreign: stack {stack_a} (made by an older gitmoor"
        )),
        "{}",
        plan_text(&host_b)
    );

    // A's state records the stack: A manages it, without a recreate while nothing changed...
    assert!(host_a.apply_ok().contains("no changes"));
    assert_eq!(container_id(&stack_a, "web"), legacy);
    // ...and a change recreates it with the repo label.
    repo_a.write(&file_a, &web(port_a, "new-a"));
    repo_a.commit("change a");
    let out = host_a.apply_ok();
    assert!(out.contains(&format!("recreate {stack_a}-web-1")), "{out}");
    let now = container_id(&stack_a, "web");
    assert_ne!(now, legacy);
    assert_eq!(
        label(&now, "io.gitmoor.repo"),
        format!("{}#main", repo_a.url())
    );
    assert_eq!(serves(port_a).as_deref(), Some("new-a"));
    assert!(
        !container_id(&stack_b, "web").is_empty(),
        "B's stack untouched"
    );
}
