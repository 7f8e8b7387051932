//! A real image registry on loopback for tests (Debian's docker-registry with htpasswd auth,
//! started by `registry.sh`): pushes, builds of images that differ from example-busybox:1, and a
//! Drop that removes every local reference to the registry and stops it.

use super::{docker, free_port, run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The password `registry.sh` gives user `test`.
pub const PASSWORD: &str = "secret";

/// A running registry with `<repo>:1` pushed (the content of `example-busybox:1`, no local tag).
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pid: u32,
    /// The repository `start` pushed to.
    pub repo: String,
    /// Image ids the test built (never a shared one such as example-busybox:1's).
    pub own_images: Vec<String>,
}

impl Registry {
    pub fn start(repo: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/registry.sh");
        // A port taken between the probe and the registry's bind: try another.
        for _ in 0..3 {
            let port = free_port();
            let out = run(Command::new("bash")
                .arg(&script)
                .arg(dir.path())
                .arg(port.to_string())
                .arg(repo));
            if out.status.success() {
                let pid = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("registry.sh prints the registry's pid");
                return Registry {
                    dir,
                    port,
                    pid,
                    repo: repo.to_string(),
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

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `<host>/<repo>:<tag>`.
    pub fn image(&self, tag: &str) -> String {
        format!("{}/{}:{tag}", self.host(), self.repo)
    }

    /// The credentials file `docker login` wrote (`{"auths": {"127.0.0.1:PORT": {"auth": …}}}`):
    /// what a user points `registry_auth:` at.
    pub fn docker_config_json(&self) -> PathBuf {
        self.dir.path().join("docker-config/config.json")
    }

    /// Writes a credentials file of the test's own and returns its path.
    pub fn auth_file(&self, name: &str, json: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    /// `docker push` with the logged-in docker config, as the user's CI would.
    pub fn push(&self, image: &str) {
        let out = run(Command::new("docker")
            .arg("--config")
            .arg(self.dir.path().join("docker-config"))
            .args(["push", "-q", image]));
        assert!(
            out.status.success(),
            "docker push {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Builds a new image from example-busybox:1 (differing by a label) tagged `image`; returns
    /// its id. The image is removed on drop.
    pub fn build(&mut self, image: &str, variant: &str) -> String {
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", image, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                format!("FROM example-busybox:1\nLABEL gmt.variant=\"{image} {variant}\"\n")
                    .as_bytes(),
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.own_images.push(id.clone());
        id
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Every local reference to this registry: tags and digests.
        let prefix = format!("127.0.0.1:{}/", self.port);
        let listing = docker(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
        ]);
        for line in listing.lines() {
            if let [repo, tag, digest] = line.split_whitespace().collect::<Vec<_>>()[..] {
                if repo.starts_with(&prefix) {
                    if tag != "<none>" {
                        docker(&["rmi", &format!("{repo}:{tag}")]);
                    }
                    if digest != "<none>" {
                        docker(&["rmi", &format!("{repo}@{digest}")]);
                    }
                }
            }
        }
        for id in &self.own_images {
            docker(&["rmi", "-f", id]);
        }
        let pid = self.pid.to_string();
        let alive = || {
            Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = Command::new("kill").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}
