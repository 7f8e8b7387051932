//! `apply::nginx::NginxHost` against a real nginx running in a private prefix (never the
//! machine's own nginx or /etc/nginx), proven with real HTTP requests: a site goes live, a
//! broken site is refused with nginx's message while the others go live, a broken new
//! version keeps the old one serving, a removed site stops answering, foreign files are left
//! alone.

mod support;

use gitmoor::apply::nginx::{NginxHost, SiteError};
use gitmoor::observe::nginx::{observe_sites, read_sites_dir};
use gitmoor::observe::Seen;
use gitmoor::redact::Redactor;
use std::process::Command;
use support::nginx::{backend, PrivateNginx, NGINX};

fn proxy_site(name: &str, port: u16, backend: u16) -> String {
    format!(
        "server {{\n    listen 127.0.0.1:{port};\n    server_name {name}.test;\n    \
         location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n}}\n"
    )
}

fn return_site(name: &str, port: u16, body: &str) -> String {
    format!(
        "server {{\n    listen 127.0.0.1:{port};\n    server_name {name}.test;\n    \
         location / {{ return 200 \"{body}\\n\"; }}\n}}\n"
    )
}

#[tokio::test]
async fn one_bad_site_is_held_back_with_nginxs_message_and_the_others_go_live() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    let (one, two) = (backend("backend one\n"), backend("backend two\n"));

    host.install("a", &proxy_site("a", ngx.port, one))
        .await
        .unwrap();
    ngx.wait_for("a.test", "backend one\n");

    let broken = format!(
        "server {{\n    listen 127.0.0.1:{};\n    server_name b.test;\n    no_such_directive on;\n}}\n",
        ngx.port
    );
    let b = host.install("b", &broken).await;
    assert_eq!(
        host.install("c", &proxy_site("c", ngx.port, two)).await,
        Ok(())
    );
    match &b {
        Err(e @ SiteError::Rejected { site, message }) => {
            assert_eq!(site, "b");
            assert!(
                message.contains("unknown directive \"no_such_directive\""),
                "{e}"
            );
            // Line 5: the header line comes first.
            assert!(message.contains("b.conf:5"), "{e}");
            assert!(e.to_string().contains("nginx site b"), "{e}");
        }
        other => panic!("b: {other:?}"),
    }
    ngx.wait_for("c.test", "backend two\n");
    assert_eq!(ngx.get("a.test"), (200, "backend one\n".into()));
    assert_eq!(ngx.get("b.test"), (404, "default\n".into()));
    assert!(!ngx.sites_dir().join("b.conf").exists());

    // What the observer sees: gitmoor's two sites, with the header line.
    let Seen::Observed(sites) = observe_sites(&ngx.sites_dir()) else {
        panic!("not observed")
    };
    assert_eq!(sites.keys().collect::<Vec<_>>(), vec!["a", "c"]);
    assert!(sites["a"].starts_with("# managed by gitmoor\nserver {"));
}

#[tokio::test]
async fn a_broken_new_version_keeps_the_old_one_serving() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    host.install("a", &return_site("a", ngx.port, "v1"))
        .await
        .unwrap();
    ngx.wait_for("a.test", "v1\n");
    let v1 = std::fs::read_to_string(ngx.sites_dir().join("a.conf")).unwrap();

    // An unknown variable: nginx -t refuses it, no DNS involved.
    let broken = format!(
        "server {{\n    listen 127.0.0.1:{};\n    server_name a.test;\n    \
         location / {{ return 200 $no_such_variable; }}\n}}\n",
        ngx.port
    );
    let err = host.install("a", &broken).await.unwrap_err();
    assert!(
        matches!(&err, SiteError::Rejected { message, .. } if message.contains("unknown \"no_such_variable\" variable")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(ngx.sites_dir().join("a.conf")).unwrap(),
        v1
    );
    // A reload by anyone else now loads the same good config.
    assert!(Command::new(NGINX)
        .args(ngx.args())
        .args(["-s", "reload"])
        .status()
        .unwrap()
        .success());
    ngx.wait_for("a.test", "v1\n");

    host.install("a", &return_site("a", ngx.port, "v2"))
        .await
        .unwrap();
    ngx.wait_for("a.test", "v2\n");
    // The same content again: nothing to do.
    host.install("a", &return_site("a", ngx.port, "v2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_removed_site_stops_answering_the_others_and_foreign_files_stay() {
    let mut ngx = PrivateNginx::new(true);
    std::fs::create_dir_all(ngx.sites_dir()).unwrap();
    let hand = return_site("hand", ngx.port, "by hand");
    std::fs::write(ngx.sites_dir().join("hand.conf"), &hand).unwrap();
    ngx.start();
    let host = ngx.host();
    host.install("a", &return_site("a", ngx.port, "site a"))
        .await
        .unwrap();
    host.install("c", &return_site("c", ngx.port, "site c"))
        .await
        .unwrap();
    ngx.wait_for("a.test", "site a\n");
    ngx.wait_for("c.test", "site c\n");
    ngx.wait_for("hand.test", "by hand\n");

    host.remove("a").await.unwrap();
    ngx.wait_for("a.test", "default\n");
    assert_eq!(ngx.get("c.test"), (200, "site c\n".into()));
    assert_eq!(ngx.get("hand.test"), (200, "by hand\n".into()));

    // The admin's file is neither removed nor overwritten.
    let err = host.remove("hand").await.unwrap_err();
    assert!(matches!(err, SiteError::Foreign { .. }), "{err}");
    let err = host.install("hand", "server {}\n").await.unwrap_err();
    assert!(err.to_string().contains("not written by gitmoor"), "{err}");
    assert_eq!(
        std::fs::read_to_string(ngx.sites_dir().join("hand.conf")).unwrap(),
        hand
    );
    let seen = read_sites_dir(&ngx.sites_dir()).unwrap();
    assert_eq!(seen.managed.keys().collect::<Vec<_>>(), vec!["c"]);
    assert_eq!(seen.foreign.iter().collect::<Vec<_>>(), vec!["hand.conf"]);
    assert_eq!(ngx.get("hand.test"), (200, "by hand\n".into()));
}

#[tokio::test]
async fn a_removal_that_breaks_the_test_is_put_back() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    // `colors` defines a variable that `user` needs.
    let colors = "map $host $site_color { default \"blue\"; }\n".to_string();
    let user = format!(
        "server {{\n    listen 127.0.0.1:{};\n    server_name user.test;\n    \
         location / {{ return 200 \"$site_color\\n\"; }}\n}}\n",
        ngx.port
    );
    host.install("colors", &colors).await.unwrap();
    host.install("user", &user).await.unwrap();
    ngx.wait_for("user.test", "blue\n");

    let err = host.remove("colors").await.unwrap_err();
    assert!(
        matches!(&err, SiteError::Rejected { site, message } if site == "colors" && message.contains("site_color")),
        "{err}"
    );
    assert!(ngx.sites_dir().join("colors.conf").exists());
    assert_eq!(ngx.get("user.test"), (200, "blue\n".into()));
}

#[tokio::test]
async fn a_folder_nginx_does_not_include_is_refused_and_left_as_it_was() {
    let ngx = PrivateNginx::new(false);
    let host = ngx.host();
    let err = host
        .install("a", &return_site("a", ngx.port, "a"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("include {}/*.conf;", ngx.sites_dir().display())),
        "{err}"
    );
    assert_eq!(
        observe_sites(&ngx.sites_dir()),
        Seen::Observed(Default::default())
    );
}

#[tokio::test]
async fn a_failed_reload_puts_the_files_back() {
    // Never started: the test passes, the reload finds no nginx to signal.
    let ngx = PrivateNginx::new(true);
    let host = ngx.host();
    let err = host
        .install("a", &return_site("a", ngx.port, "a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SiteError::Host { message, .. } if message.contains("reload") && message.contains("is nginx running")),
        "{err}"
    );
    assert!(!ngx.sites_dir().join("a.conf").exists());
}

#[tokio::test]
async fn site_names_that_are_not_plain_file_names_never_become_paths() {
    let ngx = PrivateNginx::new(true);
    let host = ngx.host();
    for bad in ["../escape", "a/b", ".hidden", "", "A"] {
        let err = host.install(bad, "server {}\n").await.unwrap_err();
        assert!(matches!(err, SiteError::BadName { .. }), "{bad}: {err}");
    }
    assert!(!ngx.path().join("escape.conf").exists());
    assert!(!ngx.sites_dir().exists());
}

#[tokio::test]
async fn nginxs_message_is_redacted_of_secret_values() {
    let ngx = PrivateNginx::new(true);
    let cfg = ngx.config();
    let host = NginxHost::new(&cfg, Redactor::new(["s3cr3t-directive"])).unwrap();
    let broken = format!(
        "server {{\n    listen 127.0.0.1:{};\n    s3cr3t-directive on;\n}}\n",
        ngx.port
    );
    let err = host.install("a", &broken).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("unknown directive \"***\""), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

/// When the config fails without gitmoor's change too (a file someone else broke), the site
/// is not blamed: the error says the host's own config is broken, and the site's file is not
/// left behind.
#[tokio::test]
async fn a_host_config_broken_elsewhere_is_named_as_such_and_the_site_is_not_blamed() {
    let mut ngx = PrivateNginx::new(true);
    ngx.start();
    let host = ngx.host();
    std::fs::create_dir_all(ngx.sites_dir()).unwrap();
    std::fs::write(ngx.sites_dir().join("hand.conf"), "no_such_directive on;\n").unwrap();
    let err = host
        .install("a", &return_site("a", ngx.port, "site a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SiteError::Host { site, message }
            if site == "a" && message.contains("fails without gitmoor's change too")
                && message.contains("no_such_directive")),
        "{err}"
    );
    assert!(!ngx.sites_dir().join("a.conf").exists());
}
