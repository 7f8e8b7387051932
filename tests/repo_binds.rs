//! Repo files under running containers, on the real dockerd through the real `gitmoor apply` and a
//! Git remote: a folder of the repo a container mounts stays what it was while its content does
//! not change (Docker binds the inode: a folder swapped under a container leaves it serving a
//! deleted one), a change recreates exactly the services that mount it, and the copies no
//! container uses are removed after the apply.

mod support;
use std::path::{Path, PathBuf};
use support::*;

/// `web` serves `./html` read-only; `other` mounts nothing; `whole` mounts the stack folder.
fn compose(port: u16, other_value: &str) -> String {
    format!(
        r#"services:
  web:
    image: example-busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    volumes: ["./html:/www:ro"]
    ports: ["127.0.0.1:{port}:8080"]
  other:
    image: example-busybox:1
    command: ["sleep", "3600"]
    environment:
      VALUE: {other_value}
  whole:
    image: example-busybox:1
    command: ["sleep", "3600"]
    volumes: [".:/app"]
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

impl World {
    fn id(&self, service: &str) -> String {
        container_id(&self.stack, service)
    }
    fn get(&self) -> Option<(u16, String)> {
        http(self.port, "GET", "/index.html", "")
    }
    /// Waits for `web` to answer, then returns what it answered.
    fn served(&self) -> (u16, String) {
        eventually(20, || self.get()).expect("web answers")
    }
    fn content_dir(&self) -> PathBuf {
        self.host.state.join("content")
    }
    /// The host folder a container mounts at `target`.
    fn mount_source(&self, service: &str, target: &str) -> PathBuf {
        let format = format!("{{{{range .Mounts}}}}{{{{if eq .Destination \"{target}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}");
        PathBuf::from(inspect(&self.id(service), &format))
    }
    /// The entries of the content dir, sorted.
    fn copies(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.content_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }
}

/// The copy folder (`<content dir>/<id>`) a mount source lies in.
fn copy_of(source: &Path) -> PathBuf {
    source.parent().unwrap().to_path_buf()
}

#[test]
fn repo_files_stay_put_under_running_containers() {
    let stack = unique("rb");
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let port = free_port();
    let w = World {
        _guard: StackGuard(stack.clone()),
        stack,
        remote,
        host,
        port,
    };
    let file = format!("compose/{}/compose.yaml", w.stack);
    let page = format!("compose/{}/html/index.html", w.stack);
    w.remote.write(&file, &compose(w.port, "a"));
    w.remote.write(&page, "version one\n");
    w.remote.commit("web, other, whole");

    // A writable repo bind is warned about in the plan (and in validate: the same reader).
    let plan = output_text(&w.host.gitmoor(&["plan"]));
    assert!(
        plan.contains("`.` is a repo folder mounted writable")
            && plan.contains("mount it read-only"),
        "{plan}"
    );
    assert!(
        !plan.contains("./html` is a repo"),
        "`:ro` is not warned about: {plan}"
    );

    w.host.apply_ok();
    assert_eq!(w.served(), (200, "version one\n".into()));
    let (web, other, whole) = (w.id("web"), w.id("other"), w.id("whole"));
    let html = w.mount_source("web", "/www");
    assert!(html.starts_with(w.content_dir()), "{html:?}");
    assert_eq!(
        std::fs::read_to_string(html.join("index.html")).unwrap(),
        "version one\n"
    );
    // gitmoor's own files are not in what the container sees.
    let listing = docker(&["exec", &whole, "ls", "-a", "/app"]);
    assert!(
        listing.contains("compose.yaml") && listing.contains("html"),
        "{listing}"
    );
    assert!(!listing.contains("gitmoor"), "{listing}");

    // A change to `other` alone: web keeps its container, its mount and its content.
    w.remote.write(&file, &compose(w.port, "b"));
    w.remote.commit("other: VALUE=b");
    let out = w.host.apply_ok();
    assert!(out.contains("environment.VALUE changed"), "{out}");
    assert_eq!(w.id("web"), web, "web untouched:\n{out}");
    assert_ne!(w.id("other"), other, "other recreated:\n{out}");
    // The stack folder itself changed (its compose file did): `whole` mounts the new one.
    assert_ne!(w.id("whole"), whole, "whole recreated:\n{out}");
    assert!(out.contains("file . changed"), "{out}");
    assert_eq!(
        w.served(),
        (200, "version one\n".into()),
        "web still serves its files"
    );
    assert_eq!(w.mount_source("web", "/www"), html);
    // The stack folder's old copy is gone, the ones in use are there, and nothing else is.
    let whole_copy = copy_of(&w.mount_source("whole", "/app"));
    assert_eq!(w.copies(), {
        let mut v = vec![copy_of(&html), whole_copy.clone()];
        v.sort();
        v
    });
    let again = w.host.apply_ok();
    assert!(again.contains("no changes"), "{again}");

    // A change under ./html recreates web alone, which serves the new content.
    w.remote.write(&page, "version two\n");
    w.remote.commit("new page");
    let (other, whole) = (w.id("other"), w.id("whole"));
    let out = w.host.apply_ok();
    assert!(out.contains("file ./html changed"), "{out}");
    assert!(
        !out.contains("volumes changed"),
        "the path is the reason: {out}"
    );
    assert_ne!(w.id("web"), web, "web recreated:\n{out}");
    assert_eq!(w.id("other"), other, "other untouched:\n{out}");
    assert_ne!(
        w.id("whole"),
        whole,
        "whole mounts the stack folder, which changed:\n{out}"
    );
    assert_eq!(
        eventually(20, || w.get().filter(|(_, b)| b.contains("two"))),
        Some((200, "version two\n".into()))
    );
    let html2 = w.mount_source("web", "/www");
    assert_ne!(html2, html);
    assert!(
        !copy_of(&html).exists(),
        "the copy no container uses is removed"
    );
    assert!(
        html2.join("index.html").is_file(),
        "the one in use is there"
    );
    assert!(!w.copies().contains(&whole_copy));
    let again = w.host.apply_ok();
    assert!(again.contains("no changes"), "{again}");
}
