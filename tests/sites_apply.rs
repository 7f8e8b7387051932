//! The front door from the repo, end to end through the real binary: a commit with a stack and
//! `nginx/<site>.yaml` makes a real nginx (private prefix, never the machine's) proxy to the
//! stack's published port; a broken site is held back with nginx's message while the good one
//! keeps serving and the stack is untouched; a site removed from the repo stops answering.

mod support;

use support::nginx::{PrivateNginx, NGINX};
use support::{container_id, output_text, unique, Host, Remote, StackGuard};

/// A one-service stack whose busybox httpd answers `body` on the host's loopback `port`.
fn stack(body: &str, port: u16) -> String {
    format!(
        r#"services:
  web:
    image: example-busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
"#
    )
}

fn site(stack: &str) -> String {
    format!(
        "server_names: [api.example.test]\nupstream: {{stack: {stack}, service: web, port: 8080}}\ntls: off\n"
    )
}

/// The host's config for the private nginx: its folder, binary, prefix and port.
fn nginx_config(n: &PrivateNginx) -> String {
    let args = n.args();
    format!(
        "nginx:\n  sites_dir: {}\n  binary: {NGINX}\n  prefix: {}\n  conf: {}\n  args: [\"-e\", \"{}\"]\n  http_port: {}\n  ipv6: false\n",
        n.sites_dir().display(),
        args[1],
        args[3],
        args[5],
        n.port
    )
}

#[test]
fn a_site_in_the_repo_proxies_to_its_stack_and_a_bad_site_never_takes_it_down() {
    let name = unique("site");
    let _guard = StackGuard(name.clone());
    let mut nginx = PrivateNginx::on_all_addresses(true);
    std::fs::create_dir_all(nginx.sites_dir()).unwrap();
    nginx.start();
    let remote = Remote::new();
    let host = Host::new(&remote, &nginx_config(&nginx));
    let port = support::free_port();
    remote.write(
        &format!("compose/{name}/compose.yaml"),
        &stack("hello", port),
    );
    remote.write("nginx/api.yaml", &site(&name));
    remote.commit("a stack and its site");

    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains("install-site api: new site from nginx/api.yaml"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("127.0.0.1:{port}")),
        "the diff shows the upstream:\n{plan}"
    );

    host.apply_ok();
    nginx.wait_for("api.example.test", "hello\n");
    let state = host.state_json();
    assert_eq!(state["units"]["site/api"]["result"], "success", "{state:#}");
    assert_eq!(
        state["units"][format!("stack/{name}")]["result"],
        "success",
        "{state:#}"
    );
    let web = container_id(&name, "web");

    // A second site nginx refuses (an unknown directive in a raw server block): it is held back
    // with nginx's own message; the good site keeps answering and the stack is not touched.
    remote.write(
        "nginx/bad.conf",
        "server {\n    listen 80;\n    server_name bad.example.test;\n    no_such_directive on;\n}\n",
    );
    remote.commit("a broken site");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("site bad") && text.contains("no_such_directive"),
        "{text}"
    );
    assert_eq!(nginx.get("api.example.test").1, "hello\n");
    assert_eq!(container_id(&name, "web"), web, "the stack is untouched");
    let state = host.state_json();
    assert_eq!(state["units"]["site/bad"]["result"], "failed", "{state:#}");
    assert_eq!(state["units"]["site/api"]["result"], "success", "{state:#}");
    assert!(
        !nginx.sites_dir().join("bad.conf").exists(),
        "the refused file is not left"
    );

    // Both sites leave the repo: api stops answering (nginx's default server answers), the
    // stack still runs.
    remote.remove("nginx/bad.conf");
    remote.remove("nginx/api.yaml");
    remote.commit("no sites");
    host.apply_ok();
    nginx.wait_for("api.example.test", "default\n");
    assert!(!nginx.sites_dir().join("api.conf").exists());
    assert_eq!(container_id(&name, "web"), web, "the stack is untouched");
    // The state forgets the sites once they are gone; the stack stays recorded.
    let state = host.state_json();
    assert!(state["units"].get("site/api").is_none(), "{state:#}");
    assert!(state["units"].get("site/bad").is_none(), "{state:#}");
    assert_eq!(
        state["units"][format!("stack/{name}")]["result"],
        "success",
        "{state:#}"
    );
}
