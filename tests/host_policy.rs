//! The opt-in host policy as its users meet it: `gitmoor validate --policy baseline` in the
//! managed repo's CI, and `policy: baseline` in a host's config, which refuses at plan and apply
//! time a commit that asks for the host (privileged, host namespaces, a bind of /etc), with the
//! file, line and key, while the running stack stays as it was.

mod support;
use std::path::Path;
use std::process::Command;
use support::*;

fn validate(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .arg("validate")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), output_text(&out))
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

const ESCAPES: &str = "services:\n  app:\n    image: x:1\n    privileged: true\n    pid: host\n    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n      - ./conf:/conf:ro\n";

#[test]
fn validate_checks_the_baseline_only_when_asked() {
    let d = repo(&[
        ("compose/app/compose.yaml", ESCAPES),
        ("compose/app/conf/x.conf", "x"),
    ]);
    let (code, text) = validate(d.path(), &[]);
    assert_eq!(code, Some(0), "without a policy the file is valid: {text}");

    let (code, text) = validate(d.path(), &["--policy", "baseline"]);
    assert_eq!(code, Some(1), "{text}");
    for want in [
        "error: compose/app/compose.yaml:4: services.app.privileged: the policy refuses privileged containers",
        "error: compose/app/compose.yaml:5: services.app.pid: the policy refuses `pid: host`",
        "error: compose/app/compose.yaml:7: services.app.volumes[0]: the policy refuses the bind `/var/run/docker.sock`: it is the Docker socket",
        "invalid: 3 error(s)",
    ] {
        assert!(text.contains(want), "want {want:?} in:\n{text}");
    }

    let (code, text) = validate(d.path(), &["--policy", "strict"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("--policy: unknown policy preset `strict` (known: baseline)"),
        "{text}"
    );
}

#[test]
fn validate_reads_the_policy_and_its_allow_lists_from_a_config() {
    let d = repo(&[
        ("compose/app/compose.yaml", ESCAPES),
        ("compose/app/conf/x.conf", "x"),
    ]);
    let cfg = d.path().join("gitmoor.yaml");
    std::fs::write(
        &cfg,
        "repo: /srv/infra.git\npolicy:\n  preset: baseline\n  allow_bind: [/var/run/docker.sock]\n",
    )
    .unwrap();
    let (code, text) = validate(d.path(), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("services.app.privileged"), "{text}");
    assert!(text.contains("services.app.pid"), "{text}");
    assert!(
        !text.contains("docker.sock"),
        "allowed by the config: {text}"
    );
    assert!(text.contains("invalid: 2 error(s)"), "{text}");
}

#[test]
fn the_seed_example_passes_baseline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed/repo");
    let (code, text) = validate(&dir, &["--policy", "baseline"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid: 1 stack(s), 2 service(s)"), "{text}");
}

#[test]
fn a_host_with_the_baseline_refuses_an_escape_at_plan_and_apply_and_keeps_what_runs() {
    let stack = unique("pol");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "policy: baseline\n");
    let file = format!("compose/{stack}/compose.yaml");
    let web = "services:\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n";
    remote.write(&file, web);
    remote.commit("a stack the baseline allows");
    host.apply_ok();
    let before = container_id(&stack, "web");
    assert!(!before.is_empty());

    remote.write(
        &file,
        &format!("{web}    privileged: true\n    volumes: [\"/etc:/host-etc:ro\"]\n"),
    );
    remote.commit("ask for the host");
    for cmd in ["plan", "apply"] {
        let out = host.gitmoor(&[cmd]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{cmd} should refuse:\n{text}");
        for want in [
            format!("{file}:5: services.web.privileged: the policy refuses privileged containers"),
            format!("{file}:6: services.web.volumes[0]: the policy refuses the bind `/etc`: it is the host's configuration"),
        ] {
            assert!(text.contains(&want), "{cmd}: want {want:?} in:\n{text}");
        }
    }
    assert_eq!(
        container_id(&stack, "web"),
        before,
        "the running container was replaced"
    );
    assert_eq!(inspect(&before, "{{.HostConfig.Privileged}}"), "false");
    assert_eq!(inspect(&before, "{{.State.Running}}"), "true");
}
