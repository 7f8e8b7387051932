//! `GitSource` against real remotes: bare repositories made with the git CLI (file:// and plain
//! paths), a private sshd on loopback (tests/support/git_remote_ssh.sh) and nginx + git
//! http-backend over TLS with token auth (tests/support/git_remote_https.sh).
//!
//! The ssh tests need /usr/sbin/sshd (openssh-server), the https test /usr/sbin/nginx and
//! /usr/sbin/fcgiwrap (nginx, fcgiwrap); without them they print SKIP and pass.

mod support;

use gitmoor::source::git::{CommitInfo, GitError, GitSource, RepoAuth};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// Runs git with a fixed identity and no user or system config; returns trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.test",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare remote and a work tree that pushes into it, in one tempdir.
struct Fixture {
    tmp: TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        git(root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(root, &["init", "-q", "-b", "main", "work"]);
        Fixture {
            bare: root.join("remote.git"),
            work: root.join("work"),
            tmp,
        }
    }

    fn write(&self, path: &str, content: &str) {
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }

    fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self, extra: &[&str]) {
        let bare = self.bare.to_str().unwrap();
        let mut args = vec!["push", "-q"];
        args.extend_from_slice(extra);
        args.push(bare);
        args.push("--all");
        git(&self.work, &args);
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.tmp.path().join("caches").join(name)
    }
}

fn open(url: &str, cache: &Path) -> GitSource {
    GitSource::open(url, RepoAuth::default(), cache).unwrap()
}

fn commit_time(work: &Path, sha: &str) -> i64 {
    git(work, &["log", "-1", "--format=%ct", sha])
        .parse()
        .unwrap()
}

#[test]
fn file_remote_fetch_sees_pushes_and_force_pushes() {
    let fx = Fixture::new();
    fx.write("compose.yaml", "services: {}\n");
    let first = fx.commit("first commit\n\nwith a body");
    fx.push(&[]);

    let cache = fx.cache("c");
    let src = open(&fx.file_url(), &cache);
    let head = src.fetch("main").unwrap();
    assert_eq!(
        head,
        CommitInfo {
            sha: first.clone(),
            subject: "first commit".to_string(),
            author: "Test Author <author@example.test>".to_string(),
            time: commit_time(&fx.work, &first),
        }
    );
    assert!(
        cache.join("HEAD").is_file(),
        "a bare cache repo was created"
    );

    // A no-op fetch gives the same head; a new commit is seen after a push.
    assert_eq!(src.fetch("main").unwrap().sha, first);
    fx.write("compose.yaml", "services:\n  web: {image: x}\n");
    let second = fx.commit("second");
    fx.push(&[]);
    assert_eq!(src.fetch("main").unwrap().sha, second);

    // A force-push that drops `second` wins.
    git(&fx.work, &["reset", "-q", "--hard", &first]);
    fx.write("other.txt", "rewritten history\n");
    let rewritten = fx.commit("rewritten");
    fx.push(&["--force"]);
    let head = src.fetch("main").unwrap();
    assert_eq!(head.sha, rewritten);
    assert_eq!(head.subject, "rewritten");

    // Reopening the same cache (a daemon restart) keeps working.
    let again = open(&fx.file_url(), &cache);
    assert_eq!(again.fetch("main").unwrap().sha, rewritten);
    assert_eq!(again.commit_info(&first).unwrap().sha, first);
}

#[test]
fn missing_branch_names_the_existing_ones() {
    let fx = Fixture::new();
    fx.write("a", "a");
    fx.commit("a");
    git(&fx.work, &["branch", "dev"]);
    fx.push(&[]);
    let src = open(&fx.file_url(), &fx.cache("c"));
    assert_eq!(
        src.fetch("dev").unwrap().sha,
        src.fetch("main").unwrap().sha
    );

    let err = src.fetch("production").unwrap_err();
    match &err {
        GitError::BranchNotFound {
            branch, branches, ..
        } => {
            assert_eq!(branch, "production");
            assert_eq!(branches, &["dev", "main"]);
        }
        other => panic!("expected BranchNotFound, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "branch 'production' not found on {} (branches: dev, main)",
            fx.file_url()
        )
    );

    // A branch deleted on the remote is gone after the next fetch (pruned).
    git(
        &fx.work,
        &["push", "-q", fx.bare.to_str().unwrap(), "--delete", "dev"],
    );
    let err = src.fetch("dev").unwrap_err().to_string();
    assert!(err.ends_with("(branches: main)"), "{err}");

    let err = src.fetch("bad..name").unwrap_err();
    assert!(matches!(err, GitError::InvalidBranch { .. }), "{err:?}");
}

#[test]
fn snapshot_has_contents_modes_nested_dirs_and_symlinks() {
    let fx = Fixture::new();
    fx.write("compose/web/compose.yaml", "services:\n  web: {}\n");
    fx.write("compose/web/conf/nginx/site.conf", "server {}\n");
    fx.write("scripts/deploy.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        fx.work.join("scripts/deploy.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("compose/web/compose.yaml", fx.work.join("link.yaml")).unwrap();
    fx.write("README.md", "# managed\n");
    git(&fx.work, &["add", "-A"]);
    // A submodule entry (gitlink): its commit lives elsewhere, so the snapshot skips it.
    git(
        &fx.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            "160000,1111111111111111111111111111111111111111,vendor/lib",
        ],
    );
    let sha = fx.commit("tree");
    fx.push(&[]);

    let src = open(&fx.file_url(), &fx.cache("c"));
    assert_eq!(src.fetch("main").unwrap().sha, sha);
    let mut snap = src.snapshot(&sha).unwrap();
    let paths: Vec<&str> = snap.files.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "compose/web/compose.yaml",
            "compose/web/conf/nginx/site.conf",
            "link.yaml",
            "scripts/deploy.sh",
        ]
    );
    // Outside compose/, nginx/ and ufw/ files are listed, not read, until asked for.
    let deferred: Vec<&str> = snap.deferred().map(|(p, _)| p).collect();
    assert_eq!(deferred, ["README.md", "link.yaml", "scripts/deploy.sh"]);
    assert_eq!(src.snapshot(&sha[..10]).unwrap(), snap);
    let deploy = snap.get("scripts/deploy.sh").unwrap();
    assert!(deploy.executable && !deploy.symlink && deploy.data.is_empty());
    assert_eq!(snap.take_wanted(), ["scripts/deploy.sh"]);
    assert_eq!(src.fill(&mut snap, &sha, &["".to_string()]).unwrap(), 3);
    assert_eq!(snap.deferred().count(), 0);
    let deploy = snap.get("scripts/deploy.sh").unwrap();
    assert!(deploy.executable && !deploy.symlink);
    assert_eq!(deploy.data, b"#!/bin/sh\necho hi\n");
    let compose = snap.get("compose/web/compose.yaml").unwrap();
    assert!(!compose.executable && !compose.symlink);
    assert_eq!(compose.data, b"services:\n  web: {}\n");
    let link = snap.get("link.yaml").unwrap();
    assert!(link.symlink && !link.executable);
    assert_eq!(link.data, b"compose/web/compose.yaml");
    assert_eq!(snap.list_dir("compose/web"), ["compose.yaml", "conf"]);

    // The same bytes as reading a checkout of that commit.
    let from_dir = gitmoor::source::snapshot::Snapshot::from_dir(&fx.work).unwrap();
    assert_eq!(snap, from_dir);

    // Abbreviated ids work; anything that is not a commit id is refused.
    assert_eq!(src.commit_info(&sha[..7]).unwrap().sha, sha);
    for bad in [
        "HEAD",
        "main~1",
        "0000000000000000000000000000000000000000",
        "zz",
    ] {
        let err = src.snapshot(bad).unwrap_err();
        assert!(
            matches!(err, GitError::CommitNotFound { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn local_paths_absolute_and_relative_work_as_urls() {
    let fx = Fixture::new();
    fx.write("a", "a");
    let sha = fx.commit("a");
    fx.push(&[]);

    let abs = fx.bare.to_str().unwrap().to_string();
    assert_eq!(open(&abs, &fx.cache("abs")).fetch("main").unwrap().sha, sha);

    // Relative to the current directory (cargo runs tests in the package root).
    let cwd = std::env::current_dir().unwrap();
    let ups = "../".repeat(cwd.components().count() - 1);
    let rel = format!("{ups}{}", abs.trim_start_matches('/'));
    assert!(!rel.starts_with('/'));
    let src = open(&rel, &fx.cache("rel"));
    assert_eq!(src.fetch("main").unwrap().sha, sha);
    assert_eq!(src.display_url(), rel);
}

#[test]
fn changed_url_updates_the_cache_remote() {
    let a = Fixture::new();
    a.write("a", "a");
    let sha_a = a.commit("in a");
    a.push(&[]);
    let b = Fixture::new();
    b.write("b", "b");
    let sha_b = b.commit("in b");
    b.push(&[]);

    let cache = a.cache("shared");
    assert_eq!(
        open(&a.file_url(), &cache).fetch("main").unwrap().sha,
        sha_a
    );
    let src = open(&b.file_url(), &cache);
    assert_eq!(src.fetch("main").unwrap().sha, sha_b);
    assert!(src.snapshot(&sha_b).unwrap().get("b").is_some());
}

#[test]
fn unreachable_remote_and_bad_cache_are_explained() {
    let tmp = TempDir::new().unwrap();
    let missing = format!("file://{}/nope.git", tmp.path().display());
    let src = open(&missing, &tmp.path().join("cache"));
    let err = src.fetch("main").unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach {missing}: "))
            && msg.ends_with("check the URL and network"),
        "{msg}"
    );

    let junk = tmp.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("file"), "not a repo").unwrap();
    let err = GitSource::open(&missing, RepoAuth::default(), &junk).unwrap_err();
    assert!(matches!(err, GitError::Cache { .. }), "{err:?}");
    assert!(err.to_string().contains("delete it"), "{err}");

    let err = GitSource::open("ftp://example.test/r.git", RepoAuth::default(), &junk).unwrap_err();
    assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Real servers on loopback

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn support_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// Runs a support script (argv, through bash) and parses its `KEY=value …` line.
fn run_script(script: &Path, dir: &Path, env: &[(&str, String)]) -> HashMap<String, String> {
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run support script");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let vars: HashMap<String, String> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(vars.contains_key("URL"), "no URL in {line:?}");
    vars
}

/// A server started by a support script; stopped (and its PIDs killed) when dropped.
struct Server {
    script: PathBuf,
    tmp: TempDir,
    vars: HashMap<String, String>,
}

impl Server {
    fn start(script: &str, env: &[(&str, String)]) -> Server {
        let tmp = TempDir::new().unwrap();
        let script = support_script(script);
        let mut env = env.to_vec();
        env.push(("PORT", free_port().to_string()));
        let vars = run_script(&script, &tmp.path().join("srv"), &env);
        Server { script, tmp, vars }
    }

    fn var(&self, key: &str) -> &str {
        &self.vars[key]
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg(self.tmp.path().join("srv"))
            .arg("stop")
            .output();
    }
}

fn skip_without(bins: &[&str]) -> bool {
    let missing: Vec<&str> = bins
        .iter()
        .copied()
        .filter(|b| !Path::new(b).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIP: {} missing (apt-get install openssh-server nginx fcgiwrap)",
            missing.join(", ")
        );
    }
    !missing.is_empty()
}

fn ssh_auth(srv: &Server, key: &str) -> RepoAuth {
    RepoAuth {
        ssh_key: Some(PathBuf::from(srv.var(key))),
        known_hosts: Some(PathBuf::from(srv.var("KNOWN_HOSTS"))),
        ..RepoAuth::default()
    }
}

fn ssh_fetch(srv: &Server, auth: RepoAuth, cache: &str) -> Result<CommitInfo, GitError> {
    GitSource::open(srv.var("URL"), auth, &srv.path(cache))?.fetch("main")
}

/// The sha of main in the ssh server's bare repo.
fn ssh_repo_head(srv: &Server) -> String {
    let repo = srv.path("srv/repo.git");
    git(&repo, &["rev-parse", "main"])
}

#[test]
fn ssh_remote_fetches_with_deploy_keys_and_hashed_known_hosts() {
    if skip_without(&["/usr/sbin/sshd"]) {
        return;
    }
    let srv = Server::start("git_remote_ssh.sh", &[]);
    let head = ssh_repo_head(&srv);

    let src = GitSource::open(srv.var("URL"), ssh_auth(&srv, "KEY"), &srv.path("c-ed")).unwrap();
    let info = src.fetch("main").unwrap();
    assert_eq!(info.sha, head);
    assert_eq!(info.subject, "seed");
    assert!(src.snapshot(&head).unwrap().get("compose.yaml").is_some());

    // A new commit pushed to the server is seen over ssh.
    let work = srv.path("work");
    git(
        srv.tmp.path(),
        &[
            "clone",
            "-q",
            srv.path("srv/repo.git").to_str().unwrap(),
            "work",
        ],
    );
    std::fs::write(work.join("new.txt"), "new\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "pushed"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let pushed = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(src.fetch("main").unwrap().sha, pushed);

    // An RSA key works too.
    assert_eq!(
        ssh_fetch(&srv, ssh_auth(&srv, "RSA_KEY"), "c-rsa")
            .unwrap()
            .sha,
        pushed
    );

    // A key with a passphrase, read from a file.
    let pass = srv.path("passphrase");
    std::fs::write(&pass, format!("{}\n", srv.var("PASSPHRASE"))).unwrap();
    let auth = RepoAuth {
        ssh_key_passphrase_file: Some(pass),
        ..ssh_auth(&srv, "PASS_KEY")
    };
    assert_eq!(ssh_fetch(&srv, auth, "c-pass").unwrap().sha, pushed);

    // Hashed known_hosts (`ssh-keygen -H`), as HashKnownHosts yes writes them.
    let hashed = srv.path("known_hosts_hashed");
    std::fs::copy(srv.var("KNOWN_HOSTS"), &hashed).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&hashed).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let auth = RepoAuth {
        known_hosts: Some(hashed),
        ..ssh_auth(&srv, "KEY")
    };
    assert_eq!(ssh_fetch(&srv, auth, "c-hashed").unwrap().sha, pushed);
}

#[test]
fn ssh_wrong_or_unknown_host_key_is_rejected() {
    if skip_without(&["/usr/sbin/sshd"]) {
        return;
    }
    let srv = Server::start("git_remote_ssh.sh", &[]);
    let port = srv.var("PORT").to_string();
    let name = format!("[127.0.0.1]:{port}");

    // Another ed25519 key recorded for this host and port: a mismatch.
    let other = srv.path("other_host_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let wrong = srv.path("known_hosts_wrong");
    std::fs::write(&wrong, format!("{name} {}\n", other_key.join(" "))).unwrap();
    let auth = RepoAuth {
        known_hosts: Some(wrong.clone()),
        ..ssh_auth(&srv, "KEY")
    };
    let err = ssh_fetch(&srv, auth, "c-wrong").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, GitError::HostKey { ref host, .. } if *host == name),
        "{err:?}"
    );
    assert!(msg.contains("does NOT match"), "{msg}");
    assert!(
        msg.contains(srv.var("HOSTKEY_SHA256")),
        "names the server's fingerprint: {msg}"
    );
    assert!(msg.contains(&format!("ssh-keygen -R '{name}'")), "{msg}");

    // The right key for another port does not count; the message says how to add the host.
    let real = std::fs::read_to_string(srv.var("KNOWN_HOSTS")).unwrap();
    let other_port = srv.path("known_hosts_other_port");
    std::fs::write(&other_port, real.replace(&name, "[127.0.0.1]:1")).unwrap();
    let auth = RepoAuth {
        known_hosts: Some(other_port.clone()),
        ..ssh_auth(&srv, "KEY")
    };
    let msg = ssh_fetch(&srv, auth, "c-unknown").unwrap_err().to_string();
    assert!(msg.contains("is not in"), "{msg}");
    assert!(
        msg.contains(&format!(
            "ssh-keyscan -p {port} 127.0.0.1 >> {}",
            other_port.display()
        )),
        "{msg}"
    );

    // A known_hosts file that does not exist.
    let auth = RepoAuth {
        known_hosts: Some(srv.path("no_such_known_hosts")),
        ..ssh_auth(&srv, "KEY")
    };
    let msg = ssh_fetch(&srv, auth, "c-missing").unwrap_err().to_string();
    assert!(msg.contains("does not exist"), "{msg}");

    // The server's key marked @revoked wins over a matching plain entry.
    let revoked = srv.path("known_hosts_revoked");
    std::fs::write(&revoked, format!("{real}@revoked {real}")).unwrap();
    let auth = RepoAuth {
        known_hosts: Some(revoked),
        ..ssh_auth(&srv, "KEY")
    };
    let msg = ssh_fetch(&srv, auth, "c-revoked").unwrap_err().to_string();
    assert!(msg.contains("@revoked"), "{msg}");
}

#[test]
fn ssh_refused_keys_fail_fast_with_a_clear_error() {
    if skip_without(&["/usr/sbin/sshd"]) {
        return;
    }
    let srv = Server::start("git_remote_ssh.sh", &[]);
    let url = srv.var("URL").to_string();

    // A key the server does not know.
    let stranger = srv.path("stranger");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(out.status.success());
    let auth = RepoAuth {
        ssh_key: Some(stranger),
        ..ssh_auth(&srv, "KEY")
    };
    let started = std::time::Instant::now();
    let err = ssh_fetch(&srv, auth, "c-stranger").unwrap_err();
    assert!(started.elapsed().as_secs() < 10, "gave up quickly");
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("authentication failed for {url}: ")),
        "{msg}"
    );
    assert!(msg.contains("check ssh_key"), "{msg}");

    // The passphrase key without its passphrase, and with a wrong one.
    let err = ssh_fetch(&srv, ssh_auth(&srv, "PASS_KEY"), "c-nopass").unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    let wrong = srv.path("wrong_pass");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let auth = RepoAuth {
        ssh_key_passphrase_file: Some(wrong),
        ..ssh_auth(&srv, "PASS_KEY")
    };
    let err = ssh_fetch(&srv, auth, "c-wrongpass").unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");

    // A key file that does not exist is reported as such, before connecting.
    let auth = RepoAuth {
        ssh_key: Some(srv.path("no_such_key")),
        ..ssh_auth(&srv, "KEY")
    };
    let err = ssh_fetch(&srv, auth, "c-nokey").unwrap_err();
    assert!(
        matches!(
            err,
            GitError::CredentialFile {
                what: "ssh_key",
                ..
            }
        ),
        "{err:?}"
    );
}

fn random_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("gm_test_{nanos:x}{:x}", std::process::id())
}

/// The https remote of these tests (nginx + git http-backend, a private CA, a random token);
/// None (the test skips) without nginx or fcgiwrap.
fn https_server() -> Option<(Server, String)> {
    if skip_without(&["/usr/sbin/nginx", "/usr/sbin/fcgiwrap"]) {
        return None;
    }
    let token = random_token();
    let srv = Server::start("git_remote_https.sh", &[("TOKEN", token.clone())]);
    Some((srv, token))
}

/// The token in a file and the server's CA: what a configured https remote has.
fn token_and_ca(srv: &Server, token: &str) -> RepoAuth {
    let token_file = srv.path("token");
    std::fs::write(&token_file, token).unwrap();
    RepoAuth {
        token_file: Some(token_file),
        ca_file: Some(PathBuf::from(srv.var("CA"))),
        ..RepoAuth::default()
    }
}

/// The https cases a user meets: an unknown CA, a token right, wrong, absent or in the URL,
/// plain http refused, a missing repository, a missing ca_file.
#[test]
fn https_remote_with_token_and_private_ca() {
    let Some((srv, token)) = https_server() else {
        return;
    };
    assert_eq!(srv.var("TOKEN"), token);
    let url = srv.var("URL").to_string();
    let head = git(&srv.path("srv/repos/repo.git"), &["rev-parse", "main"]);
    let token_file = srv.path("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let fetch = |auth: RepoAuth, url: &str, cache: &str| {
        GitSource::open(url, auth, &srv.path(cache))?.fetch("main")
    };

    // Without ca_file the private CA is not trusted.
    let auth = RepoAuth {
        token_file: Some(token_file.clone()),
        ..RepoAuth::default()
    };
    let err = fetch(auth, &url, "c-noca").unwrap_err();
    assert!(matches!(err, GitError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("set ca_file"), "{err}");

    // The right token and the CA.
    let good = RepoAuth {
        token_file: Some(token_file.clone()),
        ca_file: Some(PathBuf::from(srv.var("CA"))),
        ..RepoAuth::default()
    };
    let info = fetch(good.clone(), &url, "c-good").unwrap();
    assert_eq!(info.sha, head);
    assert_eq!(info.subject, "seed");

    // The CA trusted for one fetch is not trusted by the next one that does not name it.
    let auth = RepoAuth {
        token_file: Some(token_file.clone()),
        ..RepoAuth::default()
    };
    let err = fetch(auth, &url, "c-noca-again").unwrap_err();
    assert!(matches!(err, GitError::Tls { .. }), "{err:?}");

    // A wrong token: refused after one try, and no token in the message.
    let wrong_file = srv.path("wrong_token");
    let wrong_token = random_token() + "_wrong";
    std::fs::write(&wrong_file, &wrong_token).unwrap();
    let auth = RepoAuth {
        token_file: Some(wrong_file),
        ..good.clone()
    };
    let started = std::time::Instant::now();
    let err = fetch(auth, &url, "c-wrong").unwrap_err();
    assert!(started.elapsed().as_secs() < 10);
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("authentication failed for {url}: ")),
        "{msg}"
    );
    assert!(msg.contains("token_file"), "{msg}");
    assert!(
        !msg.contains(&wrong_token) && !msg.contains(&token),
        "{msg}"
    );

    // No token at all.
    let auth = RepoAuth {
        token_file: None,
        ..good.clone()
    };
    let err = fetch(auth, &url, "c-none").unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("no token_file is set"), "{err}");

    // A wrong token inside the URL never shows up in messages.
    let port = srv.var("PORT");
    let in_url = format!("https://x-access-token:{wrong_token}@127.0.0.1:{port}/repo.git");
    let auth = RepoAuth {
        token_file: None,
        ..good.clone()
    };
    let err = fetch(auth, &in_url, "c-inurl").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(!msg.contains(&wrong_token), "{msg}");
    assert!(msg.contains("https://***@127.0.0.1"), "{msg}");

    // The right token inside the URL works, and is never written to the cache's config.
    let in_url = format!("https://x-access-token:{token}@127.0.0.1:{port}/repo.git");
    let auth = RepoAuth {
        token_file: None,
        ..good.clone()
    };
    assert_eq!(fetch(auth, &in_url, "c-inurl-good").unwrap().sha, head);
    let config = std::fs::read_to_string(srv.path("c-inurl-good/config")).unwrap();
    assert!(
        !config.contains(&token),
        "token in repo.git/config:\n{config}"
    );
    assert!(
        config.contains(&format!("url = https://127.0.0.1:{port}/repo.git")),
        "{config}"
    );
    let mode = std::fs::metadata(srv.path("c-inurl-good"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the cache is private");

    // The same server over plain http: refused before anything is sent, token or not.
    for insecure in [
        format!("http://x-access-token:{token}@127.0.0.1:{port}/repo.git"),
        format!("http://127.0.0.1:{port}/repo.git"),
    ] {
        let err = fetch(good.clone(), &insecure, "c-http").unwrap_err();
        assert!(matches!(err, GitError::InsecureTransport { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("http://") && msg.contains("allow_insecure_transport: true"),
            "{msg}"
        );
        assert!(!msg.contains(&token), "{msg}");
    }
    assert!(
        !srv.path("c-http").exists(),
        "no cache made for a refused URL"
    );

    // A repository that is not there.
    let missing = format!("https://127.0.0.1:{port}/nope.git");
    let err = fetch(good.clone(), &missing, "c-404").unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");

    // A damaged ca_file is named as such, before any connection.
    let damaged = srv.path("damaged_ca.pem");
    std::fs::write(
        &damaged,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let auth = RepoAuth {
        ca_file: Some(damaged.clone()),
        ..good.clone()
    };
    let err = fetch(auth, &url, "c-damaged-ca").unwrap_err();
    assert!(matches!(err, GitError::CaFile { .. }), "{err:?}");
    assert!(err.to_string().contains("damaged_ca.pem"), "{err}");

    // A token file that is fixed between two fetches of one cache is read again.
    let rotating = srv.path("rotating_token");
    std::fs::write(&rotating, "not-the-token").unwrap();
    let auth = RepoAuth {
        token_file: Some(rotating.clone()),
        ..good.clone()
    };
    let source = GitSource::open(&url, auth, &srv.path("c-rotate")).unwrap();
    assert!(matches!(source.fetch("main"), Err(GitError::Auth { .. })));
    std::fs::write(&rotating, &token).unwrap();
    assert_eq!(source.fetch("main").unwrap().sha, head);

    // A ca_file that does not exist.
    let auth = RepoAuth {
        ca_file: Some(srv.path("no_such_ca.pem")),
        ..good
    };
    let err = fetch(auth, &url, "c-noca-file").unwrap_err();
    assert!(
        matches!(
            err,
            GitError::CredentialFile {
                what: "ca_file",
                ..
            }
        ),
        "{err:?}"
    );
}

/// What gitmoor's own http(s) transport does with redirects and with servers that are not Git:
/// it follows a redirect on the same server (and fetches with the token), never sends the token
/// to another server, never follows https down to http, stops a redirect loop, and refuses a
/// "dumb" HTTP answer; each error names the kind of problem.
#[test]
fn https_redirects_and_servers_that_do_not_speak_git() {
    let Some((srv, token)) = https_server() else {
        return;
    };
    let port = srv.var("PORT").to_string();
    let head = git(&srv.path("srv/repos/repo.git"), &["rev-parse", "main"]);
    let auth = token_and_ca(&srv, &token);
    let fetch = |name: &str| {
        let url = format!("https://127.0.0.1:{port}/{name}.git");
        GitSource::open(&url, auth.clone(), &srv.path(&format!("c-{name}")))?.fetch("main")
    };

    // Same server: followed, the token sent after it, the pack fetched from where it ended.
    assert_eq!(fetch("moved").unwrap().sha, head);

    // Another origin (localhost, not 127.0.0.1): followed, but the token stays home.
    let err = fetch("elsewhere").unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("only to the server the URL names"), "{msg}");
    assert!(!msg.contains(&token), "{msg}");
    // nginx logs "$host $remote_user …": the redirected request reached localhost without it.
    let log = std::fs::read_to_string(srv.path("srv/logs/access.log")).unwrap();
    let at_localhost: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("localhost "))
        .collect();
    assert!(
        !at_localhost.is_empty(),
        "the redirect was not followed:\n{log}"
    );
    assert!(
        at_localhost.iter().all(|l| !l.contains("x-access-token")),
        "the token went to another server: {at_localhost:?}"
    );

    // https down to http: refused, nothing fetched.
    let err = fetch("down").unwrap_err();
    assert!(matches!(err, GitError::Fetch { .. }), "{err:?}");
    assert!(err.to_string().contains("plain-text"), "{err}");

    // A redirect loop ends.
    let err = fetch("loop").unwrap_err();
    assert!(err.to_string().contains("redirects"), "{err}");

    // A server that answers, but not with Git's smart protocol.
    let err = fetch("dumb").unwrap_err();
    assert!(matches!(err, GitError::Fetch { .. }), "{err:?}");
    assert!(err.to_string().contains("smart HTTP"), "{err}");

    // Branches listed without credentials, the pack asked with them: the token goes with the
    // upload-pack request it was asked for there; without a token, the error says where.
    assert_eq!(fetch("halfopen").unwrap().sha, head);
    let url = format!("https://127.0.0.1:{port}/halfopen.git");
    let no_token = RepoAuth {
        token_file: None,
        ..auth.clone()
    };
    let err = GitSource::open(&url, no_token, &srv.path("c-halfopen-none"))
        .unwrap()
        .fetch("main")
        .unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    assert!(
        err.to_string().contains("after it listed the branches"),
        "{err}"
    );

    // Plain http, when the config allows it: the same transport, the token offered after the
    // server asks.
    let http_url = format!("http://127.0.0.1:{}/repo.git", srv.var("HTTP_PORT"));
    let insecure = RepoAuth {
        allow_insecure_transport: true,
        ..auth.clone()
    };
    let fetched = GitSource::open(&http_url, insecure, &srv.path("c-http"))
        .unwrap()
        .fetch("main")
        .unwrap();
    assert_eq!(fetched.sha, head);

    // Nothing listening.
    let url = format!("https://127.0.0.1:{}/repo.git", free_port());
    let err = GitSource::open(&url, auth.clone(), &srv.path("c-closed"))
        .unwrap()
        .fetch("main")
        .unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
}

/// A fetch into a cache that already has much of the history: libgit2 negotiates over several
/// upload-pack requests (it sends what it has in rounds), each a POST of its own over https.
#[test]
fn https_fetch_of_a_long_history_into_a_warm_cache() {
    let Some((srv, token)) = https_server() else {
        return;
    };
    let bare = srv.path("srv/repos/repo.git");
    git(
        srv.tmp.path(),
        &["clone", "-q", bare.to_str().unwrap(), "work"],
    );
    let work = srv.path("work");
    let commit_n = |from: usize, to: usize| {
        for i in from..to {
            std::fs::write(work.join("n.txt"), format!("{i}\n")).unwrap();
            git(&work, &["add", "-A"]);
            git(
                &work,
                &[
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@example.test",
                    "commit",
                    "-qm",
                    &format!("c{i}"),
                ],
            );
        }
        git(&work, &["push", "-q", "origin", "main"]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let auth = token_and_ca(&srv, &token);
    let source = GitSource::open(srv.var("URL"), auth, &srv.path("cache")).unwrap();
    let first = commit_n(0, 45);
    assert_eq!(source.fetch("main").unwrap().sha, first);
    let log_before = std::fs::read_to_string(srv.path("srv/logs/access.log")).unwrap();
    // The cache has 46 commits the server knows; the server moves on by a few more.
    let second = commit_n(45, 48);
    let info = source.fetch("main").unwrap();
    assert_eq!(info.sha, second);
    assert_eq!(info.subject, "c47");
    let log = std::fs::read_to_string(srv.path("srv/logs/access.log")).unwrap();
    let posts = log[log_before.len()..]
        .lines()
        .filter(|l| l.contains("POST /repo.git/git-upload-pack"))
        .count();
    assert!(
        posts >= 2,
        "expected the negotiation over 2+ upload-pack requests, got {posts}:\n{}",
        &log[log_before.len()..]
    );
}

/// A commit with a 300 MB file in docs/ (a folder gitmoor never reads bytes from), fetched over
/// https and deployed by the real binary on the real dockerd: libgit2's indexer streams the
/// pack and the tree reader sizes blobs from their headers, so `gitmoor apply` (fetch, read,
/// deploy) peaks far under 200 MiB.
#[test]
fn https_fetch_and_apply_of_a_big_unused_file() {
    if skip_without(&["/usr/sbin/nginx", "/usr/sbin/fcgiwrap", "/usr/bin/time"]) {
        return;
    }
    let token = random_token();
    let srv = Server::start("git_remote_https.sh", &[("TOKEN", token.clone())]);
    let stack = support::unique("hr");
    let _guard = support::StackGuard(stack.clone());
    let work = srv.path("work");
    let bare = srv.path("srv/repos/repo.git");
    git(
        srv.tmp.path(),
        &["clone", "-q", bare.to_str().unwrap(), "work"],
    );
    let compose =
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n";
    std::fs::create_dir_all(work.join(format!("compose/{stack}"))).unwrap();
    std::fs::write(work.join(format!("compose/{stack}/compose.yaml")), compose).unwrap();
    std::fs::create_dir_all(work.join("docs")).unwrap();
    // Sparse: 300 MB of zeros on no disk; git stores it compressed.
    let big = std::fs::File::create(work.join("docs/big.bin")).unwrap();
    big.set_len(300 << 20).unwrap();
    drop(big);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "big docs"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "HEAD:main"]);

    std::fs::write(srv.path("token"), format!("{token}\n")).unwrap();
    std::fs::create_dir_all(srv.path("secrets")).unwrap();
    let config = srv.path("config.yaml");
    std::fs::write(
        &config,
        format!(
            "repo: {}\ntoken_file: {}\nca_file: {}\nstate_dir: {}\nsecrets_dir: {}\n\
             instance: {}\nlisten: 127.0.0.1:{}\npoll: \"0 0 1 1 *\"\n",
            srv.var("URL"),
            srv.path("token").display(),
            srv.var("CA"),
            srv.path("state").display(),
            srv.path("secrets").display(),
            support::unique("t"),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_gitmoor"))
        .args(["apply", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = support::output_text(&out);
    assert!(out.status.success(), "apply failed:\n{text}");
    assert!(!support::container_id(&stack, "web").is_empty(), "{text}");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in:\n{text}"));
    eprintln!(
        "peak RSS of gitmoor apply (https fetch + read + deploy) with a 300 MB docs file: {} MiB",
        kib / 1024
    );
    assert!(kib < 200 * 1024, "peaked at {kib} KiB");
}
