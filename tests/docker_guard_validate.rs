//! `gitmoor validate` flags a container port published past `ufw/rules.yaml` (Docker's published
//! ports bypass UFW): a warning by default, naming the compose file, the key and the fix; an
//! error with `firewall.docker_guard: refuse` in the config; nothing for a loopback port.

use std::path::Path;
use std::process::Command;

fn validate(dir: &Path, config: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitmoor"));
    cmd.arg("validate").arg(dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn repo(ports: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("compose/web")).unwrap();
    std::fs::create_dir_all(d.path().join("ufw")).unwrap();
    std::fs::write(
        d.path().join("compose/web/compose.yaml"),
        format!("services:\n  app:\n    image: example-busybox:1\n    ports: [\"{ports}\"]\n"),
    )
    .unwrap();
    std::fs::write(
        d.path().join("ufw/rules.yaml"),
        "rules:\n  - action: allow\n    port: 443\n    proto: tcp\n",
    )
    .unwrap();
    d
}

#[test]
fn a_port_published_past_the_firewall_is_flagged_with_the_fix() {
    let open = repo("8080:80");
    let (ok, text) = validate(open.path(), None);
    assert!(ok, "a warning by default: {text}");
    assert!(
        text.contains("warning: compose/web/compose.yaml") && text.contains("services.app.ports"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1"), "the fix names loopback: {text}");

    // With the config's docker_guard: refuse, the same file is invalid.
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        "repo: /nowhere\nfirewall:\n  docker_guard: refuse\n",
    )
    .unwrap();
    let (ok, text) = validate(open.path(), Some(cfg.path()));
    assert!(!ok, "{text}");
    assert!(text.contains("error: compose/web/compose.yaml"), "{text}");

    // Published on loopback (behind an Nginx site): nothing to say.
    let local = repo("127.0.0.1:8080:80");
    let (ok, text) = validate(local.path(), Some(cfg.path()));
    assert!(ok && !text.contains("services.app.ports"), "{text}");
}
