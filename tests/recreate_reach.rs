//! A recreated service with a published port answers as soon as it runs, on the real dockerd.
//!
//! dockerd 20.10 opens a published port ~200 ms before the container's interface is up; a
//! connection in that window makes the host look for the container's address (ARP) while the
//! network's bridge has no live port, the request is lost, and every connection then waits for
//! the kernel's next try, a second later. gitmoor gives the host the new container's address
//! (IP and MAC on its bridge) as soon as the start call returns. What the user saw was a hang of
//! ~1 s after each recreate; the test polls the port during a recreate and then asserts the cause,
//! not a duration: right after `gitmoor apply` returns, the host's neighbour entry for the new
//! container holds its MAC (on the old code: INCOMPLETE, connections queued behind it).
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{container_id, docker, free_port, inspect, unique, Host, Remote, StackGuard};

fn compose(port: u16, greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: example-busybox:1
    command: ["httpd", "-f", "-p", "8080"]
    init: true
    ports: ["127.0.0.1:{port}:8080"]
    environment:
      GREETING: "{greeting}"
"#
    )
}

/// One GET on the published port; true when an HTTP answer (any status) came within `timeout`.
fn answers(port: u16, timeout: Duration) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// The host's neighbour entry for the container's address on its network's bridge, as
/// `ip neigh show` prints it ("" when there is none), and the container's MAC.
fn neighbour_entry(stack: &str, id: &str) -> (String, String) {
    let network = format!("{stack}_default");
    let ip = inspect(
        id,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    );
    let mac = inspect(
        id,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").MacAddress}}}}"),
    );
    let net_id = docker(&["network", "inspect", "-f", "{{.Id}}", &network]);
    let bridge = format!("br-{}", &net_id[..12]);
    let out = Command::new("ip")
        .args(["neigh", "show", &ip, "dev", &bridge])
        .output()
        .expect("ip (iproute2) runs");
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), mac)
}

fn assert_host_knows(stack: &str, id: &str) {
    let (entry, mac) = neighbour_entry(stack, id);
    assert!(
        !mac.is_empty(),
        "the new container has a MAC on the stack's network"
    );
    assert!(
        entry.contains(&format!("lladdr {mac}"))
            && !entry.contains("INCOMPLETE")
            && !entry.contains("FAILED"),
        "right after `gitmoor apply` returned, the host must already know the new \
         container's address (else connections to its port wait for the kernel's next ARP \
         request, 1 s); `ip neigh` shows: {entry:?}, expected lladdr {mac}"
    );
}

#[test]
fn after_a_recreate_the_host_reaches_the_new_container_at_once() {
    let stack = unique("gmreach");
    let _guard = StackGuard(stack.clone());
    let port = free_port();
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &compose(port, "one"));
    remote.commit("web");
    host.apply_ok();
    assert!(
        support::eventually(30, || answers(port, Duration::from_secs(2)).then_some(())).is_some(),
        "the first container serves"
    );
    let first = container_id(&stack, "web");

    // A recreate while something polls the port, as a reverse proxy or a monitor would.
    remote.write(&file, &compose(port, "two"));
    remote.commit("web: two");
    let stop = Arc::new(AtomicBool::new(false));
    let poller = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                answers(port, Duration::from_millis(50));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let applied = host.gitmoor(&["apply"]);
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let text = support::output_text(&applied);
    assert!(applied.status.success(), "gitmoor apply failed:\n{text}");
    assert!(
        text.contains("recreate"),
        "the change recreates web:\n{text}"
    );
    let second = container_id(&stack, "web");
    assert_ne!(second, first, "web is a new container");
    assert_host_knows(&stack, &second);
    // And the user's view, with a bound far above any hang: the new container answers.
    assert!(
        answers(port, Duration::from_secs(5)),
        "a request right after apply is answered"
    );
    // Nothing is left of the containers set aside.
    let filter = format!("label=com.docker.compose.project={stack}");
    let all = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
    assert_eq!(all.lines().collect::<Vec<_>>(), vec![second.as_str()]);
    assert_eq!(inspect(&second, "{{.State.Status}}"), "running");
}
