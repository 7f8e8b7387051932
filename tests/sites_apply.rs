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

/// A raw server block answering `body` for `name`, or with a directive nginx does not know.
fn raw_site(name: &str, body: &str, broken: bool) -> String {
    let extra = if broken {
        "    no_such_directive on;\n"
    } else {
        ""
    };
    format!(
        "server {{\n    listen 80;\n    server_name {name};\n{extra}    location / {{ return 200 \"{body}\\n\"; }}\n}}\n"
    )
}

/// One commit changes two sites: one into a version nginx refuses, the other in a good way.
/// The good one's new version serves; the broken one keeps serving its old version (its file
/// on the host is the old one); `gitmoor apply` fails naming the site and nginx's message; the
/// state records the unit failed with why and keeps its last good commit.
#[test]
fn a_site_changed_into_a_broken_one_keeps_its_old_version_while_its_neighbour_moves_on() {
    let mut nginx = PrivateNginx::on_all_addresses(true);
    std::fs::create_dir_all(nginx.sites_dir()).unwrap();
    nginx.start();
    let remote = Remote::new();
    // Raw sites say `listen 80`: the private nginx listens on its own port.
    let host = Host::new(&remote, &nginx_config(&nginx));
    let listen = |text: String| text.replace("listen 80;", &format!("listen {};", nginx.port));
    let v1 = support::nginx::backend("good v1\n");
    let v2 = support::nginx::backend("good v2\n");
    let good = |port: u16| {
        format!("server_names: [good.example.test]\nupstream: 127.0.0.1:{port}\ntls: off\n")
    };
    remote.write("nginx/good.yaml", &good(v1));
    remote.write(
        "nginx/shop.conf",
        &listen(raw_site("shop.example.test", "shop v1", false)),
    );
    let first = remote.commit("two sites");
    host.apply_ok();
    nginx.wait_for("good.example.test", "good v1\n");
    nginx.wait_for("shop.example.test", "shop v1\n");
    let shop_v1 = std::fs::read_to_string(nginx.sites_dir().join("shop.conf")).unwrap();

    remote.write("nginx/good.yaml", &good(v2));
    remote.write(
        "nginx/shop.conf",
        &listen(raw_site("shop.example.test", "shop v2", true)),
    );
    remote.commit("good moves on, shop breaks");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("site shop") && text.contains("unknown directive \"no_such_directive\""),
        "the error names the site and nginx's message:\n{text}"
    );
    nginx.wait_for("good.example.test", "good v2\n");
    assert_eq!(
        nginx.get("shop.example.test").1,
        "shop v1\n",
        "the broken site keeps serving its last good version"
    );
    assert_eq!(
        std::fs::read_to_string(nginx.sites_dir().join("shop.conf")).unwrap(),
        shop_v1
    );
    let state = host.state_json();
    let shop = &state["units"]["site/shop"];
    assert_eq!(shop["result"], "failed", "{state:#}");
    assert!(
        shop["error"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_directive") && e.contains("shop.conf")),
        "{state:#}"
    );
    assert_eq!(shop["last_good_commit"], first.as_str(), "{state:#}");
    assert_eq!(
        state["units"]["site/good"]["result"], "success",
        "{state:#}"
    );
    // `gitmoor status` (no daemon runs: from the state file) says the same.
    let status = output_text(&host.gitmoor(&["status"]));
    assert!(
        status.contains(&format!("site shop: failed (last good {})", &first[..10]))
            && status.contains("no_such_directive"),
        "{status}"
    );
    assert!(status.contains("site good: success"), "{status}");

    // The next apply tries the broken site again (it still differs) and nothing else.
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(plan.contains("install-site shop"), "{plan}");
    assert!(!plan.contains("install-site good"), "{plan}");
}

/// nginx takes a reload when its master handles the signal, which can be after the reload
/// command returned. Made certain here: `nginx -t` takes a second and the reload signal lands
/// half a second after the command (both through scripts the config names, as a slow host
/// would be). The good site's reload then comes while the broken site's file is under test, and
/// is not taken (`nginx -s reload` itself reads the config first); gitmoor must reload again once
/// the broken file is back, so the good site's new version is served.
#[test]
fn a_reload_that_lands_while_a_broken_site_is_under_test_is_made_again() {
    use std::os::unix::fs::PermissionsExt;
    let mut nginx = PrivateNginx::on_all_addresses(true);
    std::fs::create_dir_all(nginx.sites_dir()).unwrap();
    nginx.start();
    let dir = nginx.path().to_path_buf();
    let script = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let slow_test = script(
        "slow-nginx",
        format!("#!/bin/sh\ncase \" $* \" in *\" -t \"*) sleep 1;; esac\nexec {NGINX} \"$@\"\n"),
    );
    let args = nginx.args().join(" ");
    let late_reload = script(
        "late-reload",
        format!("#!/bin/sh\n( sleep 0.5; exec {NGINX} {args} -s reload ) >/dev/null 2>&1 &\n"),
    );
    let remote = Remote::new();
    let config = nginx_config(&nginx).replace(
        &format!("  binary: {NGINX}\n"),
        &format!(
            "  binary: {}\n  reload: [\"{}\"]\n",
            slow_test.display(),
            late_reload.display()
        ),
    );
    assert!(config.contains("late-reload"), "{config}");
    let host = Host::new(&remote, &config);
    let listen = |text: String| text.replace("listen 80;", &format!("listen {};", nginx.port));
    // Site names in this order: `a` (good) is applied before `b` (broken).
    remote.write(
        "nginx/a.conf",
        &listen(raw_site("a.example.test", "a v1", false)),
    );
    remote.write(
        "nginx/b.conf",
        &listen(raw_site("b.example.test", "b v1", false)),
    );
    remote.commit("two sites");
    host.apply_ok();
    nginx.wait_for("a.example.test", "a v1\n");
    nginx.wait_for("b.example.test", "b v1\n");
    // The first apply's late reloads are all taken before the next apply writes anything.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    remote.write(
        "nginx/a.conf",
        &listen(raw_site("a.example.test", "a v2", false)),
    );
    remote.write(
        "nginx/b.conf",
        &listen(raw_site("b.example.test", "b v2", true)),
    );
    remote.commit("a moves on, b breaks");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("site b"), "{text}");
    nginx.wait_for("a.example.test", "a v2\n");
    assert_eq!(nginx.get("b.example.test").1, "b v1\n");
}
