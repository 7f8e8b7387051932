//! `gitmoor validate` as the managed repo's CI runs it: a checkout on disk, no host touched,
//! exit 0 when valid and 1 when not, each problem on its own line with file, line and fix.

use std::path::Path;
use std::process::Command;

fn validate(dir: &Path, secrets: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitmoor"));
    cmd.arg("validate").arg(dir);
    if let Some(s) = secrets {
        cmd.arg("--secrets").arg(s);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "exit {:?}: {text}",
        out.status.code()
    );
    (out.status.success(), text)
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

const API: &str = "services:\n  api:\n    image: example-backend:1\n    environment:\n      JWT_SECRET: ${JWT_SECRET}\n";

#[test]
fn the_seed_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed/repo");
    let (ok, text) = validate(&dir, None);
    assert!(ok, "{text}");
    assert!(text.contains("valid: 1 stack(s), 2 service(s)"), "{text}");
}

#[test]
fn missing_variable_warns_without_secrets_and_fails_with_them() {
    let d = repo(&[("compose/api/compose.yaml", API)]);
    let (ok, text) = validate(d.path(), None);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning") && text.contains("JWT_SECRET"),
        "{text}"
    );

    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("api.env"), "OTHER=1\n").unwrap();
    let (ok, text) = validate(d.path(), Some(secrets.path()));
    assert!(!ok, "{text}");
    assert!(
        text.contains("compose/api/compose.yaml:5") && text.contains("JWT_SECRET"),
        "{text}"
    );

    std::fs::write(
        secrets.path().join("api.env"),
        "JWT_SECRET=s3cr3t-value-Zq81\n",
    )
    .unwrap();
    let (ok, text) = validate(d.path(), Some(secrets.path()));
    assert!(ok, "{text}");
    assert!(!text.contains("s3cr3t-value-Zq81"), "{text}");
}

#[test]
fn unknown_key_committed_env_and_literal_password_are_refused_with_file_and_line() {
    let d = repo(&[(
        "compose/api/compose.yaml",
        "services:\n  api:\n    image: x:1\n    deploy:\n      replicas: 3\n    environment:\n      DB_PASSWORD: hunter2\n",
    ), ("compose/api/.env", "A=1\n")]);
    let (ok, text) = validate(d.path(), None);
    assert!(!ok, "{text}");
    assert!(
        text.contains("compose/api/compose.yaml:5: services.api.deploy.replicas"),
        "{text}"
    );
    assert!(
        text.contains("compose/api/compose.yaml:7") && text.contains("DB_PASSWORD"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the literal value is not echoed: {text}"
    );
    assert!(text.contains("compose/api/.env"), "{text}");
}

#[test]
fn invalid_yaml_names_the_line() {
    let d = repo(&[(
        "compose/web/compose.yaml",
        "services:\n  web:\n    image: [unclosed\n",
    )]);
    let (ok, text) = validate(d.path(), None);
    assert!(!ok, "{text}");
    assert!(text.contains("compose/web/compose.yaml:"), "{text}");
}
