//! A recreate creates the new container before it stops the old one: a new container the engine
//! refuses to create costs no outage (the old one never stops), and a good one replaces the old
//! one with the service's name. Real dockerd, real Git remote, the gitmoor binary.

mod support;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

fn compose(port: u16, extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    init: true\n    ports: [\"127.0.0.1:{port}:8080\"]\n{extra}  other:\n    image: example-busybox:1\n    command: [\"sleep\", \"86400\"]\n    init: true\n"
    )
}

#[test]
fn a_create_the_engine_refuses_never_stops_the_serving_container() {
    let stack = unique("ro");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let port = free_port();
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &compose(port, ""));
    remote.commit("web and other");
    host.apply_ok();
    let web = container_id(&stack, "web");
    let other = container_id(&stack, "other");
    let started = inspect(&web, "{{.State.StartedAt}}");
    assert!(eventually(10, || http(port, "GET", "/", "").map(|_| ())).is_some());

    // More CPUs than the host has: validate cannot know, the engine refuses the create.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) + 8;
    remote.write(&file, &compose(port, &format!("    cpus: {cpus}\n")));
    remote.commit("too many cpus");
    let stop = Arc::new(AtomicBool::new(false));
    let missed = Arc::new(AtomicUsize::new(0));
    let probes = Arc::new(AtomicUsize::new(0));
    let prober = {
        let (stop, missed, probes) = (stop.clone(), missed.clone(), probes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                probes.fetch_add(1, Ordering::SeqCst);
                if http(port, "GET", "/", "").is_none() {
                    missed.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let out = host.gitmoor(&["apply"]);
    stop.store(true, Ordering::SeqCst);
    prober.join().unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the previous container is left as it was"),
        "{text}"
    );
    assert!(probes.load(Ordering::SeqCst) > 0);
    assert_eq!(
        missed.load(Ordering::SeqCst),
        0,
        "the service missed answers:\n{text}"
    );
    // The same container, never restarted, under its own name; the neighbour untouched.
    assert_eq!(container_id(&stack, "web"), web);
    assert_eq!(inspect(&web, "{{.State.StartedAt}}"), started);
    assert_eq!(inspect(&web, "{{.Name}}"), format!("/{stack}-web-1"));
    assert_eq!(container_id(&stack, "other"), other);
    let names = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=com.docker.compose.project={stack}"),
    ]);
    assert!(!names.contains("gitmoor-old"), "{names}");

    // The fix recreates it: a new container under the service's name, the old one gone.
    remote.write(&file, &compose(port, "    cpus: 0.5\n"));
    remote.commit("half a cpu");
    host.apply_ok();
    let new = container_id(&stack, "web");
    assert_ne!(new, web);
    assert_eq!(inspect(&new, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert!(eventually(10, || http(port, "GET", "/", "").map(|_| ())).is_some());
    let names = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=com.docker.compose.project={stack}"),
    ]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec![format!("{stack}-other-1"), format!("{stack}-web-1")]
    );
    assert_eq!(container_id(&stack, "other"), other);
}

fn with_anon(value: &str) -> String {
    format!(
        "services:\n  db:\n    image: example-busybox:1\n    command: [\"sleep\", \"86400\"]\n    init: true\n    volumes: [\"/data\"]\n    environment:\n      REVISION: \"{value}\"\n"
    )
}

#[test]
fn an_anonymous_volume_keeps_its_data_across_a_recreate_as_in_compose() {
    let stack = unique("anon");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &with_anon("1"));
    remote.commit("a service with an anonymous volume");
    host.apply_ok();
    let old = container_id(&stack, "db");
    docker(&["exec", &old, "sh", "-c", "echo kept > /data/row"]);
    let volume = inspect(&old, "{{range .Mounts}}{{.Name}}{{end}}");
    assert_eq!(volume.len(), 64, "{volume}");

    remote.write(&file, &with_anon("2"));
    remote.commit("a new revision");
    host.apply_ok();
    let new = container_id(&stack, "db");
    assert_ne!(new, old);
    assert_eq!(inspect(&new, "{{range .Mounts}}{{.Name}}{{end}}"), volume);
    assert_eq!(docker(&["exec", &new, "cat", "/data/row"]), "kept");
    // The anonymous volume is left alone when its last container goes (never deleted).
    StackGuard(stack.clone());
    let _ = docker(&["volume", "rm", &volume]);
}

#[test]
fn a_recreate_killed_after_setting_the_old_container_aside_is_repaired_by_the_next_apply() {
    let stack = unique("aside");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let port = free_port();
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &compose(port, ""));
    remote.commit("web and other");
    host.apply_ok();
    let web = container_id(&stack, "web");
    // What a kill -9 between the rename and the create leaves.
    docker(&["rename", &web, &format!("{stack}-web-1-gitmoor-old")]);
    let text = host.apply_ok();
    assert!(text.contains("renamed from"), "{text}");
    let names = docker(&[
        "ps",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=com.docker.compose.project={stack}"),
    ]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec![format!("{stack}-other-1"), format!("{stack}-web-1")]
    );
    assert!(eventually(10, || http(port, "GET", "/", "").map(|_| ())).is_some());
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(plan.contains("no changes"), "{plan}");
}
