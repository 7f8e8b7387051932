//! A private-registry deploy as a user runs it: a real registry on loopback (Debian's
//! docker-registry with htpasswd auth, started by `tests/support/registry.sh`), a real Git remote
//! whose stack uses an image only that registry has, and the real `gitmoor plan` / `gitmoor apply`
//! binary, once with `registry_auth:` (the config.json `docker login` wrote) and once without.
//!
//! Each test owns its registry (random port), its stack and its gitmoor instance; guards remove
//! the stack's containers, every local image reference under `127.0.0.1:PORT/`, the images the
//! test built, and stop the registry, even when an assertion fails.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::registry::Registry;
use support::*;

/// The registry's repository the tests push to.
const REPO: &str = "gmt/app";

/// One service on `image`; `extra` adds keys to it (e.g. `pull_policy: always`).
fn compose(image: &str, extra: &str) -> String {
    format!(
        "services:\n  app:\n    image: {image}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    stop_grace_period: 1s\n{extra}"
    )
}

/// The user's two configs for one host (same instance, state and secrets dirs): `plain` as
/// `Host::new` writes it, `with_auth` the same plus `registry_auth:`.
struct Configs {
    host: Host,
    with_auth: PathBuf,
}

impl Configs {
    fn new(remote: &Remote, reg: &Registry) -> Configs {
        let host = Host::new(remote, "");
        let with_auth = host.dir.path().join("config-with-auth.yaml");
        let plain = std::fs::read_to_string(&host.config).unwrap();
        std::fs::write(
            &with_auth,
            format!(
                "{plain}registry_auth: {}\n",
                reg.docker_config_json().display()
            ),
        )
        .unwrap();
        Configs { host, with_auth }
    }

    fn plain(&self) -> &Path {
        &self.host.config
    }
}

fn gitmoor(config: &Path, cmd: &str) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .arg(cmd)
        .arg("--config")
        .arg(config))
}

/// `gitmoor <cmd>`, asserting it exits 0; returns stdout+stderr.
fn gitmoor_ok(config: &Path, cmd: &str) -> String {
    let out = gitmoor(config, cmd);
    let text = output_text(&out);
    assert!(out.status.success(), "gitmoor {cmd} failed:\n{text}");
    text
}

fn image_exists(image: &str) -> bool {
    run(Command::new("docker").args(["image", "inspect", image]))
        .status
        .success()
}

fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", image])
}

/// The registry digest (`sha256:…`) of `image` in `repo`, from the local image's RepoDigests.
fn repo_digest(image: &str, repo: &str) -> String {
    let digests = docker(&[
        "image",
        "inspect",
        "-f",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        image,
    ]);
    digests
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{repo}@")))
        .unwrap_or_else(|| panic!("{image} has no digest from {repo}: {digests:?}"))
        .to_string()
}

/// (container id, image reference it was created from, image id it runs, running?).
fn app_container(stack: &str) -> (String, String, String, String) {
    let id = container_id(stack, "app");
    assert!(!id.is_empty(), "no container {stack}-app-1");
    let f = inspect(&id, "{{.Config.Image}} {{.Image}} {{.State.Running}}");
    let mut parts = f.split_whitespace().map(str::to_string);
    let (Some(r), Some(i), Some(running)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("docker inspect {id}: {f:?}");
    };
    (id, r, i, running)
}

/// The stack has no container and no network at all.
fn assert_stack_absent(stack: &str, text: &str) {
    let filter = format!("label=com.docker.compose.project={stack}");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &filter]),
        "",
        "a container was created:\n{text}"
    );
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &filter]),
        "",
        "a network was created:\n{text}"
    );
}

#[test]
fn deploys_from_a_private_registry_only_with_registry_auth() {
    let mut reg = Registry::start(REPO);
    let host = reg.host();
    let image = reg.image("1");
    let stack = unique("rg");
    let _stack = StackGuard(stack.clone());
    let remote = Remote::new();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &compose(&image, ""),
    );
    remote.commit("app from the private registry");
    let cfg = Configs::new(&remote, &reg);
    assert!(!image_exists(&image), "registry.sh leaves no local tag");

    // Without registry_auth: refused, saying which image, which registry and what to configure;
    // nothing of the stack is made.
    let out = gitmoor(cfg.plain(), "apply");
    let text = output_text(&out);
    eprintln!("apply without registry_auth:\n{text}");
    assert!(!out.status.success(), "apply should fail:\n{text}");
    assert!(
        text.contains(&format!(
            "registry {host} wants credentials for image {image} and none are configured"
        )) && text.contains("registry_auth:"),
        "{text}"
    );
    assert!(text.contains("not applied"), "{text}");
    assert_stack_absent(&stack, &text);
    assert!(!image_exists(&image), "a refused pull leaves no image");

    // With registry_auth: the plan says it pulls, the apply pulls and runs the registry's image.
    let plan = gitmoor_ok(&cfg.with_auth, "plan");
    assert!(
        plan.contains(&format!("pull {image}: not on the host"))
            && plan.contains(&format!("[{stack}] create {stack}-app-1: new service")),
        "{plan}"
    );
    assert_stack_absent(&stack, &plan);
    let out = gitmoor_ok(&cfg.with_auth, "apply");
    eprintln!("apply with registry_auth:\n{out}");
    assert!(
        out.contains(&format!("pull {image}: not on the host")) && out.contains(": applied"),
        "{out}"
    );
    let (first, reference, runs, running) = app_container(&stack);
    assert_eq!(
        (reference.as_str(), running.as_str()),
        (image.as_str(), "true")
    );
    assert_eq!(runs, image_id(&image));
    repo_digest(&image, &format!("{host}/{REPO}")); // pulled from the registry
    for leak in ["dGVzdDpzZWNyZXQ", "test:secret"] {
        assert!(!out.contains(leak), "credentials in the output:\n{out}");
    }
    assert!(
        gitmoor_ok(&cfg.with_auth, "apply").contains("no changes"),
        "a second apply changes nothing"
    );

    // A new tag pushed, the commit moved to it, but the config lost registry_auth: the running
    // container is left exactly as it was.
    let image2 = reg.image("2");
    let v2 = reg.build(&image2, "v2");
    reg.push(&image2);
    docker(&["rmi", &image2]);
    assert!(!image_exists(&image2));
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &compose(&image2, ""),
    );
    remote.commit("app 2");
    let out = gitmoor(cfg.plain(), "apply");
    let text = output_text(&out);
    assert!(!out.status.success(), "apply should fail:\n{text}");
    assert!(
        text.contains(&format!(
            "registry {host} wants credentials for image {image2}"
        )) && text.contains("registry_auth:")
            && text.contains("nothing in this stack was changed"),
        "{text}"
    );
    assert_eq!(
        app_container(&stack),
        (first.clone(), image.clone(), runs.clone(), "true".into()),
        "the running container was touched:\n{text}"
    );
    assert!(!image_exists(&image2));

    // registry_auth back: the new tag is pulled and the service recreated on it.
    let out = gitmoor_ok(&cfg.with_auth, "apply");
    assert!(
        out.contains(&format!("pull {image2}: not on the host"))
            && out.contains(&format!("recreate {stack}-app-1")),
        "{out}"
    );
    let (second, reference, runs, running) = app_container(&stack);
    assert_ne!(second, first, "recreated");
    assert_eq!(
        (reference.as_str(), runs.as_str(), running.as_str()),
        (image2.as_str(), v2.as_str(), "true")
    );
}

#[test]
fn a_moved_tag_with_pull_policy_always_is_redeployed() {
    let mut reg = Registry::start(REPO);
    let host = reg.host();
    let image = reg.image("1");
    let repo = format!("{host}/{REPO}");
    let stack = unique("rg");
    let _stack = StackGuard(stack.clone());
    let remote = Remote::new();
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &compose(&image, "    pull_policy: always\n"),
    );
    remote.commit("app, always pulled");
    let cfg = Configs::new(&remote, &reg);

    let out = gitmoor_ok(&cfg.with_auth, "apply");
    assert!(
        out.contains(&format!("pull {image}: not on the host")),
        "{out}"
    );
    let (first, _, old_id, _) = app_container(&stack);
    let old_digest = repo_digest(&image, &repo);
    // The tag has not moved: the registry is asked and nothing is done.
    let again = gitmoor_ok(&cfg.with_auth, "apply");
    assert!(again.contains("no changes"), "{again}");
    assert_eq!(container_id(&stack, "app"), first);

    // Someone pushes a new image under the same tag; the host still has the old one under it.
    let new_id = reg.build(&image, "moved");
    reg.push(&image);
    let new_digest = repo_digest(&new_id, &repo);
    assert_ne!(new_digest, old_digest);
    docker(&["tag", &old_id, &image]);
    assert_eq!(image_id(&image), old_id);

    // The plan names the moved tag, with both digests, as the reason to pull and recreate.
    let short = |d: &str| d.trim_start_matches("sha256:")[..12].to_string();
    let moved = format!(
        "tag {image} moved on the registry ({} → {})",
        short(&old_digest),
        short(&new_digest)
    );
    let plan = gitmoor_ok(&cfg.with_auth, "plan");
    eprintln!("plan after the tag moved:\n{plan}");
    assert!(
        plan.contains(&format!("pull {image}: {moved}"))
            && plan.contains(&format!("[{stack}] recreate {stack}-app-1: {moved}")),
        "{plan}"
    );
    assert_eq!(container_id(&stack, "app"), first, "plan changes nothing");
    assert_eq!(image_id(&image), old_id, "plan pulls nothing");
    // Without registry_auth the registry cannot be asked: a warning that says so, no recreate.
    let blind = gitmoor_ok(cfg.plain(), "plan");
    assert!(
        blind.contains("cannot read the tag's digest on its registry")
            && blind.contains(&format!("registry {host} wants credentials"))
            && blind.contains("registry_auth:")
            && !blind.contains("recreate"),
        "{blind}"
    );

    let out = gitmoor_ok(&cfg.with_auth, "apply");
    assert!(
        out.contains(&format!("recreate {stack}-app-1: {moved}")),
        "{out}"
    );
    let (second, reference, runs, running) = app_container(&stack);
    assert_ne!(second, first, "recreated");
    assert_eq!(
        (reference.as_str(), runs.as_str(), running.as_str()),
        (image.as_str(), new_id.as_str(), "true")
    );
    assert_eq!(
        image_id(&image),
        new_id,
        "the tag now names the pulled image"
    );
    let again = gitmoor_ok(&cfg.with_auth, "apply");
    assert!(again.contains("no changes"), "{again}");
}

/// Self-hosted stacks pin images by digest (`repo@sha256:…`, or `repo:tag@sha256:…`). Such an
/// image is pulled once; the next applies find it on the host by that digest and change nothing
/// (no pull, no recreate), and the neighbour service on a plain tag is left alone.
#[test]
fn an_image_pinned_by_digest_is_pulled_once_then_left_running() {
    let mut reg = Registry::start(REPO);
    let repo = format!("{}/{REPO}", reg.host());
    let image = reg.image("pinned");
    reg.build(&image, "pinned");
    reg.push(&image);
    let digest = repo_digest(&image, &repo);
    docker(&["rmi", &image]);
    let by_digest = format!("{repo}@{digest}");
    let tag_and_digest = format!("{image}@{digest}");
    let stack = unique("rd");
    let _stack = StackGuard(stack.clone());
    let remote = Remote::new();
    let service = |name: &str, image: &str| {
        format!(
            "  {name}:\n    image: {image}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    stop_grace_period: 1s\n"
        )
    };
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        &format!(
            "services:\n{}{}{}",
            service("app", &by_digest),
            service("pinned", &tag_and_digest),
            service("plain", "example-busybox:1")
        ),
    );
    remote.commit("images pinned by digest");
    let cfg = Configs::new(&remote, &reg);

    assert!(
        !image_exists(&by_digest),
        "the image is not on the host yet"
    );
    let out = gitmoor_ok(&cfg.with_auth, "apply");
    assert!(
        out.contains(&format!("pull {by_digest}: not on the host"))
            && out.contains(&format!("pull {tag_and_digest}: not on the host"))
            && out.contains(": applied"),
        "{out}"
    );
    let ids: Vec<String> = ["app", "pinned", "plain"]
        .iter()
        .map(|s| container_id(&stack, s))
        .collect();
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}\n{out}");
    assert_eq!(inspect(&ids[0], "{{.Config.Image}}"), by_digest);
    assert_eq!(inspect(&ids[1], "{{.Config.Image}}"), tag_and_digest);

    for _ in 0..2 {
        let plan = gitmoor_ok(&cfg.with_auth, "plan");
        assert!(
            plan.contains("no changes") && !plan.contains("pull ") && !plan.contains("recreate"),
            "{plan}"
        );
        let again = gitmoor_ok(&cfg.with_auth, "apply");
        assert!(again.contains("no changes"), "{again}");
        let now: Vec<String> = ["app", "pinned", "plain"]
            .iter()
            .map(|s| container_id(&stack, s))
            .collect();
        assert_eq!(now, ids, "a container was replaced:\n{again}");
    }
}
