//! Pulls from a real registry on loopback (Debian's docker-registry, htpasswd auth) through the
//! real dockerd: with credentials from a docker config.json-style file, refused without them with
//! an error that says what to do, and a tag that moved on the registry noticed by its digest.
//!
//! Each test starts its own registry on a random port (`tests/support/registry.sh`, which pushes
//! `example-busybox:1` as `127.0.0.1:PORT/<repo>:1`); a guard stops it and removes every local
//! image reference under `127.0.0.1:PORT/`, even when the test fails.

use gitmoor::apply::docker::registry::{local_digest_matches, RegistryAuth};
use gitmoor::apply::docker::DockerExecutor;
use gitmoor::observe::docker::observe;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "secret";

fn docker_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn image_exists(image: &str) -> bool {
    docker_cli(&["image", "inspect", image]).0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running registry with `<repo>:1` pushed; stopped and cleaned up on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    pid: u32,
    /// Image ids this test made (never a shared one such as example-busybox:1's).
    own_images: Vec<String>,
}

impl Registry {
    fn start(repo: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/registry.sh");
        // A port taken between the probe and the registry's bind: try another.
        for _ in 0..3 {
            let port = free_port();
            let out = Command::new("bash")
                .arg(&script)
                .arg(dir.path())
                .arg(port.to_string())
                .arg(repo)
                .output()
                .expect("bash runs");
            if out.status.success() {
                let pid = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("registry.sh prints the registry's pid");
                return Registry {
                    dir,
                    port,
                    pid,
                    own_images: Vec::new(),
                };
            }
            eprintln!(
                "registry.sh on port {port} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        panic!("no registry could be started (see above)");
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The credentials file `docker login` wrote (`{"auths": {"127.0.0.1:PORT": {"auth": …}}}`).
    fn docker_config_json(&self) -> PathBuf {
        self.dir.path().join("docker-config/config.json")
    }

    /// Writes a credentials file of our own and returns its path.
    fn auth_file(&self, name: &str, json: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    /// `docker push` with the logged-in config.
    fn push(&self, image: &str) {
        let config = self.dir.path().join("docker-config");
        let out = Command::new("docker")
            .arg("--config")
            .arg(&config)
            .args(["push", "-q", image])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker push {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Every local reference to this registry: tags and digests.
        let prefix = format!("127.0.0.1:{}/", self.port);
        let (_, listing, _) = docker_cli(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
        ]);
        for line in listing.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [repo, tag, digest] = parts[..] {
                if repo.starts_with(&prefix) {
                    if tag != "<none>" {
                        docker_cli(&["rmi", &format!("{repo}:{tag}")]);
                    }
                    if digest != "<none>" {
                        docker_cli(&["rmi", &format!("{repo}@{digest}")]);
                    }
                }
            }
        }
        for id in &self.own_images {
            docker_cli(&["rmi", "-f", id]);
        }
        let pid = self.pid.to_string();
        let _ = Command::new("kill").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid])
            .stderr(Stdio::null())
            .status();
    }
}

async fn executor() -> DockerExecutor {
    DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable")
}

#[tokio::test]
async fn pulls_with_credentials_and_refuses_clearly_without_them() {
    let reg = Registry::start("gmt/bb");
    let host = reg.host();
    let image = format!("{host}/gmt/bb:1");
    let exec = executor().await;
    assert!(!image_exists(&image), "registry.sh leaves no local tag");

    // No credentials configured at all.
    let e = format!("{:#}", exec.pull(&image).await.unwrap_err());
    eprintln!("no credentials file: {e}");
    assert!(
        e.contains(&format!(
            "registry {host} wants credentials for image {image}"
        )) && e.contains("registry_auth"),
        "{e}"
    );
    assert!(!image_exists(&image), "a refused pull changes nothing");

    // A credentials file without this registry.
    let other = reg.auth_file(
        "other.json",
        r#"{"auths": {"registry.example.com": {"username": "u", "password": "p"}}}"#,
    );
    let other_auth = RegistryAuth::load(&other).unwrap();
    let e = format!(
        "{:#}",
        exec.pull_with(&image, Some(&other_auth)).await.unwrap_err()
    );
    eprintln!("file without the host: {e}");
    assert!(
        e.contains(&format!(
            "add an entry for \"{host}\" to {}",
            other.display()
        )),
        "{e}"
    );
    assert!(!image_exists(&image));

    // Wrong password: the user is named, the password never is.
    let wrong = reg.auth_file(
        "wrong.json",
        &format!(
            r#"{{"auths": {{"{host}": {{"username": "test", "password": "hunter2-wrong"}}}}}}"#
        ),
    );
    let wrong_auth = RegistryAuth::load(&wrong).unwrap();
    let e = format!(
        "{:#}",
        exec.pull_with(&image, Some(&wrong_auth)).await.unwrap_err()
    );
    eprintln!("wrong password: {e}");
    assert!(
        e.contains(&format!(
            "registry {host} refused the credentials for user test from {}",
            wrong.display()
        )),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "no password in errors: {e}");
    assert!(!format!("{wrong_auth:?}").contains("hunter2"));
    assert!(!image_exists(&image));

    // The file `docker login` wrote: the pull works.
    let auth = RegistryAuth::load(&reg.docker_config_json()).unwrap();
    assert_eq!(auth.hosts(), vec![host.as_str()]);
    let t = Instant::now();
    exec.pull_with(&image, Some(&auth))
        .await
        .expect("pull with credentials");
    eprintln!("pull with credentials: {:?}", t.elapsed());
    assert!(image_exists(&image));
    // Pulling again is a no-op that still authenticates.
    exec.pull_with(&image, Some(&auth)).await.unwrap();
    let (_, out, _) = docker_cli(&["run", "--rm", &image, "sh", "-c", "echo pulled-ok"]);
    assert_eq!(out, "pulled-ok");
    assert!(!format!("{auth:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_moved_tag_is_noticed_by_its_digest() {
    let mut reg = Registry::start("gmt/moving");
    let host = reg.host();
    let image = format!("{host}/gmt/moving:1");
    let exec = executor().await;
    // The username/password form of an entry.
    let auth_path = reg.auth_file(
        "auth.json",
        &format!(r#"{{"auths": {{"http://{host}/v2/": {{"username": "test", "password": "{PASSWORD}"}}}}}}"#),
    );
    let auth = RegistryAuth::load(&auth_path).unwrap();

    let e = format!("{:#}", exec.remote_digest(&image, None).await.unwrap_err());
    eprintln!("remote digest without credentials: {e}");
    assert!(
        e.contains(&format!("registry {host} wants credentials")),
        "{e}"
    );

    exec.pull_with(&image, Some(&auth)).await.unwrap();
    let local = exec.local_repo_digests(&image).await.unwrap();
    let t = Instant::now();
    let remote = exec.remote_digest(&image, Some(&auth)).await.unwrap();
    eprintln!(
        "remote digest in {:?}: {remote}; local {local:?}",
        t.elapsed()
    );
    assert!(remote.starts_with("sha256:"), "{remote}");
    assert!(local_digest_matches(&image, &local, &remote));
    assert_eq!(exec.tag_moved(&image, Some(&auth)).await.unwrap(), None);
    // The observer has the same digests from its one list_images call.
    let observed = observe(&exec.docker, "gmt-registry-none").await.unwrap();
    let ours = format!("{host}/gmt/moving@{remote}");
    assert!(
        observed
            .image_digests
            .get(&image)
            .is_some_and(|d| d.contains(&ours)),
        "{:?}",
        observed.image_digests.get(&image)
    );

    // Someone pushes a new image under the same tag; the host still runs the old one.
    let old_id = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &image]).1;
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM example-busybox:1\nLABEL gmt.version=\"{image} v2\"\n").as_bytes())
        .unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    reg.own_images.push(new_id.clone());
    assert_ne!(old_id, new_id);
    reg.push(&image);
    assert!(
        docker_cli(&["tag", &old_id, &image]).0,
        "put the old image back under the tag"
    );

    let local = exec.local_repo_digests(&image).await.unwrap();
    let moved = exec.remote_digest(&image, Some(&auth)).await.unwrap();
    assert_ne!(moved, remote, "the registry's digest changed");
    assert!(
        !local_digest_matches(&image, &local, &moved),
        "local {local:?} vs registry {moved}"
    );
    let (local_seen, remote_seen) = exec
        .tag_moved(&image, Some(&auth))
        .await
        .unwrap()
        .expect("moved tag detected");
    assert_eq!(remote_seen, moved);
    assert!(local_seen.contains(&ours), "{local_seen:?}");

    // Pulling brings the host to the new digest.
    exec.pull_with(&image, Some(&auth)).await.unwrap();
    assert_eq!(
        docker_cli(&["image", "inspect", "-f", "{{.Id}}", &image]).1,
        new_id
    );
    assert_eq!(exec.tag_moved(&image, Some(&auth)).await.unwrap(), None);
}
