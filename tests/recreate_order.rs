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
        text.contains("the previous container kept serving"),
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
