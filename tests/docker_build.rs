//! Image builds from a repo snapshot against the real dockerd (API 1.41, classic builder).
//!
//! Each test builds from its own temp dir read with `Snapshot::from_dir` (the same view a commit
//! gives), tags under a unique name, and a guard removes those tags (and so their layers) even
//! when the test fails. Base image: `example-busybox:1`, built locally by `scripts/setup`.

use gitmoor::apply::docker::DockerExecutor;
use gitmoor::apply::docker::{context_tar, request_tar, BuildRequest};
use gitmoor::apply::execute::{execute_with, ApplyInputs, ApplyOptions, ApplyReport};
use gitmoor::labels;
use gitmoor::observe::images::observe_images;
use gitmoor::plan::images::{BUILD_HASH, CONTEXT_TREE};
use gitmoor::plan::{Action, BuildStep, ContainerToCreate, Plan, Unit, UnitOutcome};
use gitmoor::source::snapshot::Snapshot;
use gitmoor::spec::model::{BuildSpec, ServiceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "gmt-build-{tag}-{:x}{nanos:x}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn docker_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker run --rm IMAGE sh -c SCRIPT`, stdout.
fn run_in(image: &str, script: &str) -> String {
    let (ok, out, err) = docker_cli(&["run", "--rm", image, "sh", "-c", script]);
    assert!(ok, "docker run {image} failed: {err}");
    out
}

/// Removes the image tags a test made, then the images it built that lost their tag on the way
/// (a rebuild moves the tag), and so the layers only they used. By id without `-f`: an image
/// another tag still names is left alone.
struct Images {
    tags: Vec<String>,
    ids: Vec<String>,
}

impl Images {
    fn new(tags: &[&String]) -> Images {
        Images {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ids: Vec::new(),
        }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for t in &self.tags {
            let _ = Command::new("docker").args(["rmi", t]).output();
        }
        for id in &self.ids {
            let _ = Command::new("docker").args(["rmi", id]).output();
        }
    }
}

fn write(root: &Path, path: &str, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn request(tag: &str, context: &str) -> BuildRequest {
    BuildRequest {
        tag: tag.to_string(),
        context_dir: context.to_string(),
        dockerfile: "Dockerfile".to_string(),
        ..Default::default()
    }
}

/// What gitmoor logged in this test binary (a global subscriber: a scoped one misses events
/// when tests on other threads hit the same call sites first). Each test calls it first and
/// reads only the lines with its own tag.
fn log() -> &'static Log {
    static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("gitmoor=debug"))
            .with_ansi(false)
            .with_writer(log.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        log
    })
}

/// A tracing writer that keeps what it is given.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

async fn executor() -> DockerExecutor {
    log();
    DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable")
}

#[tokio::test]
async fn builds_from_a_snapshot_with_dockerignore_labels_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The context is a sub-folder of the "repo", as compose/<stack>/app would be.
    write(
        root,
        "compose/web/app/Dockerfile",
        "FROM example-busybox:1\nCOPY . /app\nRUN cat /app/hello.txt > /app/copied.txt && /app/run.sh > /app/ran.txt\nCMD [\"sh\"]\n",
        0o644,
    );
    write(root, "compose/web/app/hello.txt", "hello from git\n", 0o644);
    write(
        root,
        "compose/web/app/run.sh",
        "#!/bin/sh\necho ran\n",
        0o755,
    );
    write(root, "compose/web/app/secret.txt", "do not ship\n", 0o644);
    write(root, "compose/web/app/logs/a.log", "noise\n", 0o644);
    write(root, "compose/web/app/logs/keep.log", "kept\n", 0o644);
    write(
        root,
        "compose/web/app/.dockerignore",
        "# not in the image\nsecret.txt\nlogs\n!logs/keep.log\n",
        0o644,
    );
    write(
        root,
        "compose/web/outside.txt",
        "not in the context\n",
        0o644,
    );
    std::os::unix::fs::symlink("hello.txt", root.join("compose/web/app/link")).unwrap();
    let snap = Snapshot::from_dir(root).unwrap();

    let tag = unique("ctx");
    let mut images = Images::new(&[&tag]);
    let mut req = request(&tag, "compose/web/app");
    req.labels = BTreeMap::from([("io.gitmoor.context".to_string(), "tree-3f2a".to_string())]);
    let exec = executor().await;

    let t = Instant::now();
    let tar = context_tar(&snap, "compose/web/app").unwrap();
    let tar_ms = t.elapsed().as_millis();
    assert_eq!(tar, request_tar(&snap, &req).unwrap());
    let t = Instant::now();
    let id = exec.build(&req, tar.clone()).await.expect("build");
    let cold = t.elapsed();
    assert!(id.starts_with("sha256:"), "{id}");
    images.ids.push(id.clone());

    let listing = run_in(
        &tag,
        "cd /app && find . | sort && cat copied.txt ran.txt && stat -c '%a %n' run.sh hello.txt && readlink link",
    );
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines,
        vec![
            ".",
            "./.dockerignore",
            "./Dockerfile",
            "./copied.txt",
            "./hello.txt",
            "./link",
            "./logs",
            "./logs/keep.log",
            "./ran.txt",
            "./run.sh",
            "hello from git",
            "ran",
            "755 run.sh",
            "644 hello.txt",
            "hello.txt",
        ],
        ".dockerignore applied (secret.txt and logs/a.log absent, logs/keep.log re-included), \
         modes and symlink kept"
    );

    assert_eq!(
        exec.image_label(&tag, "io.gitmoor.context").await.unwrap(),
        Some("tree-3f2a".to_string())
    );
    assert_eq!(exec.image_label(&tag, "nope").await.unwrap(), None);
    assert_eq!(
        exec.image_label("gmt-build-no-such-image:1", "io.gitmoor.context")
            .await
            .unwrap(),
        None
    );
    // The observer reads the image's labels, by the name a service would give.
    let observed = observe_images(
        &exec.docker,
        &BTreeSet::from([
            format!("{tag}:latest"),
            "gmt-build-no-such-image:1".into(),
            // dockerd answers 400 to a name it cannot parse: as absent as a missing one.
            "Gmt-Not-A-Reference:1".into(),
        ]),
    )
    .await
    .unwrap();
    assert!(!observed.ids.contains_key("gmt-build-no-such-image:1"));
    assert!(!observed.ids.contains_key("Gmt-Not-A-Reference:1"));
    assert!(
        matches!(
            exec.docker.inspect_image("Gmt-Not-A-Reference:1").await,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                ..
            })
        ),
        "dockerd answers 400 to that name (the case observe_images takes as absent)"
    );
    assert_eq!(
        observed
            .labels
            .get(&format!("{tag}:latest"))
            .and_then(|l| l.get("io.gitmoor.context"))
            .map(String::as_str),
        Some("tree-3f2a")
    );
    assert_eq!(
        observed.ids.get(&format!("{tag}:latest")),
        Some(&id),
        "a tag without `:tag` is `latest`"
    );

    // Same context, same tar bytes, same image: every step comes from the cache.
    let again = context_tar(&snap, "compose/web/app").unwrap();
    assert_eq!(tar, again, "the tar is reproducible");
    let t = Instant::now();
    let id2 = exec.build(&req, again).await.expect("cached build");
    let cached = t.elapsed();
    assert_eq!(id, id2, "cached build gives the same image id");
    eprintln!(
        "context tar {tar_ms} ms ({} bytes); cold build {cold:?}; cached build {cached:?}",
        tar.len()
    );
    assert!(cached < cold, "cached {cached:?} should beat cold {cold:?}");

    // A change inside an ignored file changes nothing the engine sees: still the same image.
    write(root, "compose/web/app/secret.txt", "changed\n", 0o644);
    let snap2 = Snapshot::from_dir(root).unwrap();
    let id3 = exec
        .build(&req, context_tar(&snap2, "compose/web/app").unwrap())
        .await
        .unwrap();
    assert_eq!(id, id3);
    // A change to a sent file gives a new image.
    write(root, "compose/web/app/hello.txt", "hello again\n", 0o644);
    let snap3 = Snapshot::from_dir(root).unwrap();
    let id4 = exec
        .build(&req, context_tar(&snap3, "compose/web/app").unwrap())
        .await
        .unwrap();
    assert_ne!(id, id4);
    assert_eq!(run_in(&tag, "cat /app/copied.txt"), "hello again\n");
}

#[tokio::test]
async fn a_failing_step_is_named_leaves_no_container_and_keeps_the_old_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let marker = unique("fail");
    write(
        root,
        "app/Dockerfile",
        "FROM example-busybox:1\nRUN echo first > /first\n",
        0o644,
    );
    let snap = Snapshot::from_dir(root).unwrap();
    let tag = unique("fail");
    let _images = Images::new(&[&tag]);
    let exec = executor().await;
    let req = request(&tag, "app");
    let good = exec
        .build(&req, context_tar(&snap, "app").unwrap())
        .await
        .unwrap();

    write(
        root,
        "app/Dockerfile",
        &format!(
            "FROM example-busybox:1\nRUN echo first > /first\nRUN echo {marker} && echo boom >&2 && exit 3\nRUN echo never\n"
        ),
        0o644,
    );
    let snap = Snapshot::from_dir(root).unwrap();
    let err = exec
        .build(&req, context_tar(&snap, "app").unwrap())
        .await
        .expect_err("the build fails");
    let msg = format!("{err:#}");
    eprintln!("failing build: {msg}");
    assert!(
        msg.contains(&format!(
            "step 3/4 `RUN echo {marker} && echo boom >&2 && exit 3` failed: The command '/bin/sh -c echo {marker} && echo boom >&2 && exit 3' returned a non-zero code: 3"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&tag) && msg.contains("app/Dockerfile"),
        "{msg}"
    );
    assert!(
        msg.contains("last output:")
            && (msg.contains(&format!("{marker} |")) || msg.contains(&format!("| {marker}")))
            && msg.contains("boom")
            && !msg.contains('\u{1b}'),
        "{msg}"
    );

    // forcerm: the failed step's container is gone.
    let (_, all, _) = docker_cli(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"]);
    assert!(
        !all.contains(&marker),
        "a container of the failed step was left behind:\n{all}"
    );
    // The tag still names the last good image.
    let (_, id, _) = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert_eq!(id.trim(), good);
}

#[tokio::test]
async fn build_args_and_target_select_what_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "svc/Dockerfile",
        "ARG BASE=example-busybox:1\nFROM $BASE AS base\nARG GREETING=hello\nRUN echo \"$GREETING\" > /greeting\nRUN echo \"greeting is $GREETING\"\n\nFROM base AS final\nRUN echo final > /final\n",
        0o644,
    );
    let snap = Snapshot::from_dir(root).unwrap();
    let exec = executor().await;
    let base_tag = unique("base");
    let final_tag = unique("final");
    let _images = Images::new(&[&base_tag, &final_tag]);

    let mut req = request(&base_tag, "svc");
    req.args = BTreeMap::from([(
        "GREETING".to_string(),
        gitmoor::spec::model::Secret("bonjour".to_string()),
    )]);
    req.target = Some("base".to_string());
    exec.build(&req, context_tar(&snap, "svc").unwrap())
        .await
        .expect("build the base stage");
    let log: String = log()
        .text()
        .lines()
        .filter(|l| l.contains(&format!("image={base_tag}")))
        .map(|l| format!("{l}\n"))
        .collect();
    eprintln!("build log:\n{log}");
    for want in [
        format!("INFO gitmoor::apply::docker::build: Step 1/5 : ARG BASE=example-busybox:1 image={base_tag}"),
        format!("INFO gitmoor::apply::docker::build: Step 5/5 : RUN echo \"greeting is $GREETING\" image={base_tag}"),
        "greeting is ***".to_string(),
    ] {
        assert!(log.contains(&want), "{want:?} not in the log:\n{log}");
    }
    assert!(
        !log.contains("bonjour"),
        "a build arg's value reached the log:\n{log}"
    );
    assert_eq!(
        run_in(
            &base_tag,
            "cat /greeting; test -e /final && echo final-present || echo no-final"
        ),
        "bonjour\nno-final\n"
    );

    let req = request(&final_tag, "svc");
    exec.build(&req, context_tar(&snap, "svc").unwrap())
        .await
        .expect("build the last stage");
    assert_eq!(run_in(&final_tag, "cat /greeting /final"), "hello\nfinal\n");
}

#[tokio::test]
async fn broken_dockerfiles_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "a/Dockerfile",
        "FROM example-busybox:1\nRUNN echo x\n",
        0o644,
    );
    write(
        root,
        "b/Dockerfile",
        "FROM example-busybox:1\nCOPY missing.txt /x\n",
        0o644,
    );
    write(root, "c/prod.Dockerfile", "FROM example-busybox:1\n", 0o644);
    write(root, "c/x", "x", 0o644);
    let snap = Snapshot::from_dir(root).unwrap();
    let exec = executor().await;
    let tag = unique("broken");
    let _images = Images::new(&[&tag]);

    let e = format!(
        "{:#}",
        exec.build(&request(&tag, "a"), context_tar(&snap, "a").unwrap())
            .await
            .unwrap_err()
    );
    eprintln!("parse error: {e}");
    assert!(
        e.contains("the Dockerfile is invalid") && e.contains("RUNN"),
        "{e}"
    );

    let e = format!(
        "{:#}",
        exec.build(&request(&tag, "b"), context_tar(&snap, "b").unwrap())
            .await
            .unwrap_err()
    );
    eprintln!("copy error: {e}");
    assert!(
        e.contains("step 2/2 `COPY missing.txt /x` failed") && e.contains("missing.txt"),
        "{e}"
    );

    // No Dockerfile under that name: caught before the engine is asked when the request is
    // packed with request_tar, and by the engine otherwise.
    let req = request(&tag, "c");
    let e = request_tar(&snap, &req).unwrap_err().to_string();
    assert!(
        e.contains("the Dockerfile c/Dockerfile is not in the commit"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        exec.build(&req, context_tar(&snap, "c").unwrap())
            .await
            .unwrap_err()
    );
    eprintln!("no dockerfile: {e}");
    assert!(e.contains("no Dockerfile"), "{e}");
    let req = BuildRequest {
        dockerfile: "prod.Dockerfile".to_string(),
        ..request(&tag, "c")
    };
    exec.build(&req, request_tar(&snap, &req).unwrap())
        .await
        .expect("another Dockerfile name");

    // A Dockerfile outside the context (`context: ./app`, `dockerfile: ../Dockerfile.app`) is
    // sent inside the tar under another name, as the docker CLI does.
    let req = BuildRequest {
        context_dir: "d/app".to_string(),
        dockerfile: "../Dockerfile.app".to_string(),
        ..request(&tag, "d/app")
    };
    let snap = {
        write(
            root,
            "d/Dockerfile.app",
            "FROM example-busybox:1\nCOPY x /x\n",
            0o644,
        );
        write(root, "d/app/x", "from the app folder\n", 0o644);
        Snapshot::from_dir(root).unwrap()
    };
    exec.build(&req, request_tar(&snap, &req).unwrap())
        .await
        .expect("a Dockerfile outside the context");
    assert_eq!(run_in(&tag, "cat /x"), "from the app folder\n");
}

/// The same context and `.dockerignore`, sent once by gitmoor and once by the docker CLI (classic
/// builder): the image must hold exactly the same files with the same modes.
#[tokio::test]
async fn dockerignore_matches_the_docker_cli() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ignore = "\
# comments and blank lines are skipped

*.tmp
**/*.bak
/secret
./sub/secret2
docs/
!docs/README.md
build/**
!build/keep
vendor
!vendor/a/keep.txt
?.x
nested/*/drop.txt
tmp*
!tmpkeep
cache/*
  spaced.txt  
Dockerfile
.dockerignore
";
    let files = [
        "a.tmp",
        "sub/a.tmp",
        "x.bak",
        "sub/deep/y.bak",
        "secret",
        "sub/secret",
        "sub/secret2",
        "docs/README.md",
        "docs/other.md",
        "build/keep",
        "build/out.o",
        "vendor/a/keep.txt",
        "vendor/a/drop.txt",
        "vendor/b.txt",
        "1.x",
        "12.x",
        "nested/p/drop.txt",
        "nested/p/keep.txt",
        "nested/p/q/drop.txt",
        "tmpfile",
        "tmpkeep",
        "cache/c1",
        "spaced.txt",
        "main.c",
        "src/lib/util.c",
    ];
    write(root, "ctx/.dockerignore", ignore, 0o644);
    write(
        root,
        "ctx/Dockerfile",
        "FROM example-busybox:1\nCOPY . /ctx\n",
        0o644,
    );
    for f in files {
        write(root, &format!("ctx/{f}"), f, 0o644);
    }
    write(root, "ctx/run.sh", "#!/bin/sh\n", 0o755);
    std::os::unix::fs::symlink("main.c", root.join("ctx/link.c")).unwrap();
    // Folders as git would give them: 755 whatever the umask.
    for d in [
        "ctx",
        "ctx/sub",
        "ctx/sub/deep",
        "ctx/docs",
        "ctx/build",
        "ctx/vendor",
        "ctx/vendor/a",
        "ctx/nested",
        "ctx/nested/p",
        "ctx/nested/p/q",
        "ctx/cache",
        "ctx/src",
        "ctx/src/lib",
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let snap = Snapshot::from_dir(root).unwrap();
    let exec = executor().await;
    let mine = unique("ours");
    let theirs = unique("cli");
    let _images = Images::new(&[&mine, &theirs]);

    exec.build(&request(&mine, "ctx"), context_tar(&snap, "ctx").unwrap())
        .await
        .expect("gitmoor build");
    let ctx = root.join("ctx");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &theirs])
        .arg(&ctx)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let list = "cd /ctx && find . -exec stat -c '%a %F %n' {} + | sort";
    let ours = run_in(&mine, list);
    let cli = run_in(&theirs, list);
    eprintln!("files sent by both:\n{ours}");
    assert_eq!(
        ours, cli,
        "gitmoor and the docker CLI send the same context"
    );
    assert!(ours.contains("./docs/README.md") && !ours.contains("./secret\n"));
}

// ---------------------------------------------------------------------------------------------
// Builds inside an apply (execute_with), as a reconcile runs them

/// Removes the containers of a test's stack (by its compose project label), even when the test
/// fails. Declared after `Images`, so it is dropped first and the images are no longer in use.
struct StackContainers(String);

impl Drop for StackContainers {
    fn drop(&mut self) {
        let filter = format!("label={}={}", labels::PROJECT, self.0);
        let (_, ids, _) = docker_cli(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            let _ = docker_cli(&["rm", "-f", id]);
        }
    }
}

/// The plan a reconcile makes when service `web` of `stack` (image `tag`, built from `context`
/// whose content id is `tree`) must be built and then created, or recreated over `old_id`.
fn build_and_deploy_plan(
    stack: &str,
    instance: &str,
    tag: &str,
    context: &str,
    tree: &str,
    old_id: Option<&str>,
) -> Plan {
    let build = BuildSpec {
        context: context.to_string(),
        dockerfile: "Dockerfile".to_string(),
        context_tree: tree.to_string(),
        ..Default::default()
    };
    let container = ContainerToCreate {
        name: format!("{stack}-web-1"),
        stack: stack.to_string(),
        service: "web".to_string(),
        spec: ServiceSpec {
            image: tag.to_string(),
            command: Some(vec!["sleep".into(), "3600".into()]),
            // sleep as PID 1 ignores SIGTERM: no point waiting for it.
            stop_grace_period: Some(0),
            build: Some(build.clone()),
            ..Default::default()
        },
        labels: BTreeMap::from([
            (labels::PROJECT.to_string(), stack.to_string()),
            (labels::SERVICE.to_string(), "web".to_string()),
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::INSTANCE.to_string(), instance.to_string()),
        ]),
        networks: Vec::new(),
        wait_healthy: false,
        wait_completed: false,
    };
    let action = match old_id {
        None => Action::Create { container },
        Some(old_id) => Action::Recreate {
            old_id: old_id.to_string(),
            container,
            reasons: vec!["image rebuilt".into()],
        },
    };
    Plan {
        builds: vec![BuildStep {
            stack: stack.to_string(),
            service: "web".to_string(),
            tag: tag.to_string(),
            build,
            labels: BTreeMap::from([
                (BUILD_HASH.to_string(), tree.to_string()),
                (CONTEXT_TREE.to_string(), tree.to_string()),
            ]),
            reason: "test".into(),
        }],
        units: vec![Unit::stack(stack, vec![action])],
        ..Default::default()
    }
}

async fn apply(exec: &DockerExecutor, plan: &Plan, snap: &Snapshot) -> ApplyReport {
    let opts = ApplyOptions {
        health_timeout: Duration::from_secs(20),
        stop_grace_secs: 0,
    };
    // The instance the plan's containers carry (the daemon passes its config's).
    let instance = plan
        .stack_actions()
        .find_map(|(_, a)| match a {
            Action::Create { container } | Action::Recreate { container, .. } => {
                container.labels.get(labels::INSTANCE).cloned()
            }
            _ => None,
        })
        .unwrap_or_default();
    let inputs = ApplyInputs {
        instance: &instance,
        repo: "file:///test/repo.git#main",
        nginx: None,
        ufw: None,
        letsencrypt: &Default::default(),
        snapshot: snap,
        auth: None,
        redact: &Default::default(),
    };
    execute_with(plan, exec, &opts, &inputs).await
}

fn container_state(name: &str) -> (String, String) {
    let (_, out, _) = docker_cli(&["inspect", "-f", "{{.Id}} {{.State.Status}}", name]);
    let mut parts = out.split_whitespace();
    (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    )
}

fn image_id(reference: &str) -> String {
    let (_, id, _) = docker_cli(&["image", "inspect", "-f", "{{.Id}}", reference]);
    id.trim().to_string()
}

#[tokio::test]
async fn a_hanging_build_times_out_and_the_running_container_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let stack = unique("hang");
    let tag = format!("{stack}-web");
    let mut images = Images::new(&[&tag]);
    let _containers = StackContainers(stack.clone());
    let instance = unique("hang-inst");
    let exec = executor().await;

    write(root, "app/Dockerfile", "FROM example-busybox:1\n", 0o644);
    let snap = Snapshot::from_dir(root).unwrap();
    let plan = build_and_deploy_plan(&stack, &instance, &tag, "app", "v1", None);
    let report = apply(&exec, &plan, &snap).await;
    assert!(report.is_ok(), "{:?}", report.first_error());
    let good = image_id(&tag);
    images.ids.push(good.clone());
    let (old_id, state) = container_state(&format!("{stack}-web-1"));
    assert_eq!(state, "running");

    let marker = unique("sleeping");
    write(
        root,
        "app/Dockerfile",
        &format!("FROM example-busybox:1\nRUN sleep 30 && echo {marker}\n"),
        0o644,
    );
    let snap = Snapshot::from_dir(root).unwrap();
    let mut plan = build_and_deploy_plan(&stack, &instance, &tag, "app", "v2", Some(&old_id));
    // A second stack whose build comes after it: the builds of one apply share the bound, so
    // it is not even started once the first has used it up.
    let stack2 = unique("hang");
    let tag2 = format!("{stack2}-web");
    let _images2 = Images::new(&[&tag2]);
    let _containers2 = StackContainers(stack2.clone());
    let plan2 = build_and_deploy_plan(&stack2, &instance, &tag2, "app", "v2", None);
    plan.builds.extend(plan2.builds);
    plan.units.extend(plan2.units);
    // The first build gets the default bound: on a busy host even a trivial one may take 2 s.
    let exec = exec.with_build_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let report = apply(&exec, &plan, &snap).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 2 s bound held the apply {:?}",
        started.elapsed()
    );
    let err = match report.stack(&stack) {
        Some(UnitOutcome::Failed(e)) => e.clone(),
        other => panic!("the stack should fail on the timeout: {other:?}"),
    };
    eprintln!("timed out build: {err}");
    assert!(
        err.contains(&format!("service web of stack {stack}")),
        "{err}"
    );
    // Steps 3 to 6 are the label steps (the two hashes, the instance, the repo).
    assert!(
        err.contains(&format!(
            "building image {tag} from app/Dockerfile was stopped at step 2/6 `RUN sleep 30 && echo {marker}`: the builds of this apply ran past build_timeout_secs (2 s)"
        )),
        "{err}"
    );
    let err2 = match report.stack(&stack2) {
        Some(UnitOutcome::Failed(e)) => e.clone(),
        other => panic!("the second build should not run: {other:?}"),
    };
    assert!(
        err2.contains(&format!(
            "building image {tag2} from app/Dockerfile was stopped: the builds of this apply ran past build_timeout_secs (2 s)"
        )),
        "{err2}"
    );
    assert!(!image_exists(&tag2), "never built");
    assert!(err.contains("raise build_timeout_secs"), "{err}");
    assert!(err.contains("nothing in this stack was changed"), "{err}");

    // The old container keeps serving, and the tag still names its image.
    assert_eq!(
        container_state(&format!("{stack}-web-1")),
        (old_id, "running".to_string())
    );
    assert_eq!(image_id(&tag), good);
    // The engine cancelled the build when the connection closed: its step container goes.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, all, _) =
            docker_cli(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"]);
        if !all.contains(&marker) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out step's container was left behind:\n{all}"
        );
        // An async sleep: the client's connection task must run to close the connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Builds `tag` from `Dockerfile` text with `labels`, and returns the image id.
async fn build_tagged(
    exec: &DockerExecutor,
    root: &Path,
    tag: &str,
    dockerfile: &str,
    labels: &[(&str, &str)],
) -> String {
    write(root, "other/Dockerfile", dockerfile, 0o644);
    let snap = Snapshot::from_dir(root).unwrap();
    let mut req = request(tag, "other");
    req.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    exec.build(&req, context_tar(&snap, "other").unwrap())
        .await
        .expect("build")
}

fn image_exists(id: &str) -> bool {
    docker_cli(&["image", "inspect", id]).0
}

#[tokio::test]
async fn superseded_built_images_are_pruned_unless_in_use_or_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let stack = unique("prune");
    let tag = format!("{stack}-web");
    let unlabelled = format!("{stack}-plain");
    let foreign = format!("{stack}-foreign");
    let mut images = Images::new(&[&tag, &unlabelled, &foreign]);
    let _containers = StackContainers(stack.clone());
    let instance = unique("prune-inst");
    let exec = executor().await;

    // Dangling images this instance must not touch: one gitmoor did not build (no labels), one
    // another instance built. Each made dangling by building its tag a second time.
    let other_instance = [(BUILD_HASH, "h"), (labels::INSTANCE, "someone-else")];
    for (tag, labels) in [(&unlabelled, &[][..]), (&foreign, &other_instance[..])] {
        for n in 1..=2 {
            let dockerfile = format!("FROM example-busybox:1\nRUN echo {stack}-{n} > /n\n");
            let id = build_tagged(&exec, root, tag, &dockerfile, labels).await;
            images.ids.push(id);
        }
    }
    let not_ours = [images.ids[0].clone(), images.ids[2].clone()];

    let web = format!("{stack}-web-1");
    let deploy = |n: u32| {
        write(
            root,
            "app/Dockerfile",
            &format!("FROM example-busybox:1\nRUN echo {stack}-v{n} > /v\n"),
            0o644,
        );
        let snap = Snapshot::from_dir(root).unwrap();
        let (old, _) = container_state(&web);
        let old = (!old.is_empty()).then_some(old);
        let plan = build_and_deploy_plan(
            &stack,
            &instance,
            &tag,
            "app",
            &format!("v{n}"),
            old.as_deref(),
        );
        (plan, snap)
    };

    let (plan, snap) = deploy(1);
    let report = apply(&exec, &plan, &snap).await;
    assert!(report.is_ok(), "{:?}", report.first_error());
    let v1 = image_id(&tag);
    images.ids.push(v1.clone());
    assert!(
        report.pruned_images.is_empty(),
        "{:?}",
        report.pruned_images
    );

    // A container gitmoor does not manage still uses v1 when the rebuild supersedes it.
    let holder = format!("{stack}-holder");
    let project = format!("{}={stack}", labels::PROJECT);
    let (ok, _, err) = docker_cli(&["create", "--name", &holder, "--label", &project, &v1]);
    assert!(ok, "docker create: {err}");

    let (plan, snap) = deploy(2);
    let report = apply(&exec, &plan, &snap).await;
    assert!(report.is_ok(), "{:?}", report.first_error());
    let v2 = image_id(&tag);
    images.ids.push(v2.clone());
    assert_ne!(v1, v2);
    assert!(
        report.pruned_images.is_empty(),
        "{:?}",
        report.pruned_images
    );
    assert!(image_exists(&v1), "v1 is in use by {holder}: kept");

    // Once nothing uses them, the next apply removes every superseded image of this instance.
    let (ok, _, err) = docker_cli(&["rm", &holder]);
    assert!(ok, "docker rm: {err}");
    let (plan, snap) = deploy(3);
    let report = apply(&exec, &plan, &snap).await;
    assert!(report.is_ok(), "{:?}", report.first_error());
    let v3 = image_id(&tag);
    images.ids.push(v3.clone());
    let mut pruned = report.pruned_images.clone();
    pruned.sort();
    let mut want = vec![v1.clone(), v2.clone()];
    want.sort();
    assert_eq!(pruned, want);
    assert!(!image_exists(&v1) && !image_exists(&v2));
    assert!(image_exists(&v3));
    assert_eq!(container_state(&web).1, "running");
    for id in &not_ours {
        assert!(image_exists(id), "{id} is not this instance's build: kept");
    }
    let log = log().text();
    assert!(
        log.contains("removed an image a rebuild superseded") && log.contains(&v1),
        "each removal is logged"
    );
}
