//! `gitmoor validate` checks the Nginx sites of the managed repo offline, as the repo's CI runs
//! it: the seed's site (api.example.fr → the backend service, Let's Encrypt) passes; a hostile
//! value and a service that publishes nothing are refused with file, line, key and fix.

use std::path::Path;
use std::process::Command;

fn validate(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .arg("validate")
        .arg(dir)
        .output()
        .unwrap();
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

/// The seed's stack (examples/seed/repo) plus `nginx/api.yaml` holding `site`.
fn repo(site: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed/repo/compose/app/compose.yaml");
    let compose = std::fs::read_to_string(seed).unwrap();
    // A third service that publishes nothing, for the refusal below.
    let compose = compose.replacen(
        "services:\n",
        "services:\n  worker:\n    image: example-backend:1\n",
        1,
    );
    std::fs::create_dir_all(d.path().join("compose/app")).unwrap();
    std::fs::write(d.path().join("compose/app/compose.yaml"), compose).unwrap();
    std::fs::create_dir_all(d.path().join("nginx")).unwrap();
    std::fs::write(d.path().join("nginx/api.yaml"), site).unwrap();
    d
}

const SEED_SITE: &str = "\
server_names: [api.example.fr]
upstream: {stack: app, service: backend, port: 3000}
tls: letsencrypt
client_max_body_size: 10m
";

#[test]
fn the_seed_site_is_valid() {
    let d = repo(SEED_SITE);
    let (ok, text) = validate(d.path());
    assert!(ok, "{text}");
    assert!(
        text.contains("valid: 1 stack(s), 3 service(s), 1 site(s)"),
        "{text}"
    );
}

#[test]
fn a_hostile_value_is_refused_with_file_line_and_fix() {
    let d = repo(&SEED_SITE.replace(
        "client_max_body_size: 10m",
        "client_max_body_size: \"10m; include /etc/shadow\"",
    ));
    let (ok, text) = validate(d.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: nginx/api.yaml:4: client_max_body_size: `10m; include /etc/shadow`: not a size; write digits and an optional unit k, m or g, such as 10m"),
        "{text}"
    );
    let d = repo(&SEED_SITE.replace("[api.example.fr]", "[\"api.example.fr}\\nserver{\"]"));
    let (ok, text) = validate(d.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: nginx/api.yaml:1: server_names[0]: `api.example.fr}\\nserver{`: not a DNS name: it holds a brace (it would open or close a block); write a DNS name such as api.example.org"),
        "{text}"
    );
    assert!(text.contains("invalid: 1 error(s)"), "{text}");
}

#[test]
fn a_service_that_publishes_nothing_is_refused() {
    let d = repo(&SEED_SITE.replace("service: backend", "service: worker"));
    let (ok, text) = validate(d.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: nginx/api.yaml:2: upstream: app/worker does not publish container port 3000 on the host; publish it on loopback in compose/app/compose.yaml: ports: [\"127.0.0.1:3000:3000\"]"),
        "{text}"
    );
}

#[test]
fn a_site_naming_a_broken_stack_is_not_blamed_for_it() {
    let d = repo(SEED_SITE);
    let compose = d.path().join("compose/app/compose.yaml");
    let text = std::fs::read_to_string(&compose).unwrap();
    std::fs::write(
        &compose,
        text.replacen("  worker:\n", "  worker:\n    replicas_typo: 2\n", 1),
    )
    .unwrap();
    let (ok, text) = validate(d.path());
    assert!(!ok, "{text}");
    assert!(text.contains("invalid: 1 error(s)"), "{text}");
    assert!(text.contains("compose/app/compose.yaml:"), "{text}");
    assert!(!text.contains("nginx/api.yaml"), "{text}");
}

/// A raw `.conf` is nginx configuration run by a root master: with a policy it is refused
/// (naming the file and both fixes) unless the policy opts in; without one it is valid.
#[test]
fn a_raw_site_is_refused_under_a_policy_that_does_not_allow_it() {
    let d = repo(SEED_SITE);
    std::fs::write(
        d.path().join("nginx/files.conf"),
        "server {\n    listen 80;\n    root /;\n    autoindex on;\n}\n",
    )
    .unwrap();
    let (ok, text) = validate(d.path());
    assert!(ok, "no policy: {text}");
    let out = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .args(["validate", "--policy", "baseline"])
        .arg(d.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("error: nginx/files.conf: the policy refuses raw nginx sites"),
        "{text}"
    );
    assert!(
        text.contains("write it as nginx/files.yaml")
            && text.contains("policy: {preset: baseline, allow_raw_nginx: true}"),
        "{text}"
    );
    // Opted in: valid.
    let cfg = d.path().join("gitmoor.yaml");
    std::fs::write(
        &cfg,
        "repo: /nowhere\nbranch: main\npolicy: {preset: baseline, allow_raw_nginx: true}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .arg(d.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
}
