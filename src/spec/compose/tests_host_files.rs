//! Host files: an `env_file:` absent from the commit is read from `<secrets_dir>/<stack>/<path>`,
//! never from outside that folder, and its values are secrets.

use super::tests::{snap, strict};
use super::*;
use crate::spec::model::StackSpec;

const COMPOSE: &str = "services:
  db:
    image: postgres:16
    env_file: db.env
  web:
    image: nginx:1
";

/// Loads `text` as stack `app`, next to `files`, with `secrets_dir`.
fn load_in(
    text: &str,
    files: &[(&str, &str)],
    secrets_dir: Option<&Path>,
) -> (Option<StackSpec>, Findings) {
    let file = "compose/app/compose.yaml";
    let mut all = vec![(file, text)];
    all.extend_from_slice(files);
    let snap = snap(&all);
    load_stack(&StackInput {
        name: "app",
        file,
        text,
        snap: &snap,
        vars: &strict(&[]),
        bind_root: Path::new("/var/lib/gitmoor/binds"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir,
        profiles: &[],
        limits: &crate::spec::limits::Limits::default(),
        policy: None,
        home_dir: None,
        literal_secrets: Default::default(),
    })
}

fn texts(errors: &[SpecError]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

/// A secrets dir with `<dir>/app/<rel>` files.
fn host(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = dir.path().join("app").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn an_env_file_absent_from_the_commit_is_read_from_the_stack_folder_of_the_secrets_dir() {
    let dir = host(&[(
        "db.env",
        "POSTGRES_PASSWORD=s3cr3t-value\nPOSTGRES_USER=app\n",
    )]);
    let (spec, f) = load_in(COMPOSE, &[], Some(dir.path()));
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    let spec = spec.unwrap();
    let db = &spec.services["db"];
    assert_eq!(db.environment["POSTGRES_PASSWORD"].expose(), "s3cr3t-value");
    assert_eq!(db.environment["POSTGRES_USER"].expose(), "app");
    // The hash, keyed by the host path, is the reader's alone; the value is in no key or hash.
    let shown = dir.path().join("app/db.env").display().to_string();
    assert!(db.repo_inputs.contains_key(&shown), "{:?}", db.repo_inputs);
    assert!(spec.services["web"].repo_inputs.is_empty());
    let inputs = format!("{:?}", db.repo_inputs);
    assert!(!inputs.contains("s3cr3t"), "{inputs}");
    // The redactor knows the value; Debug never shows it.
    assert!(spec
        .host_secrets
        .iter()
        .any(|s| s.expose() == "s3cr3t-value"));
    assert!(!format!("{spec:?}").contains("s3cr3t"));
}

#[test]
fn an_edit_changes_the_readers_input_hash_only() {
    let dir = host(&[("db.env", "A=1\n")]);
    let before = load_in(COMPOSE, &[], Some(dir.path())).0.unwrap();
    std::fs::write(dir.path().join("app/db.env"), "A=2\n").unwrap();
    let after = load_in(COMPOSE, &[], Some(dir.path())).0.unwrap();
    assert_ne!(
        before.services["db"].repo_inputs,
        after.services["db"].repo_inputs
    );
    assert_eq!(
        before.services["web"].repo_inputs,
        after.services["web"].repo_inputs
    );
}

#[test]
fn a_nested_path_keeps_its_folders_and_the_repo_copy_wins() {
    let text = "services:\n  nb:\n    image: netbox:4\n    env_file: [env/netbox.env, ./app.env]\n";
    let dir = host(&[("env/netbox.env", "X=host\n"), ("app.env", "Y=host\n")]);
    let (spec, f) = load_in(
        text,
        &[("compose/app/app.env", "Y=repo\n")],
        Some(dir.path()),
    );
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    let nb = &spec.unwrap().services["nb"];
    assert_eq!(nb.environment["X"].expose(), "host");
    assert_eq!(nb.environment["Y"].expose(), "repo");
}

#[test]
fn without_a_secrets_dir_it_warns_naming_the_host_path() {
    let (spec, f) = load_in(COMPOSE, &[], None);
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    assert!(spec.is_some());
    let w = texts(&f.warnings).join("\n");
    assert!(w.contains("<secrets_dir>/app/db.env"), "{w}");
    assert!(w.contains("services.db.env_file"), "{w}");
}

#[test]
fn a_missing_required_file_is_an_error_naming_the_path_and_the_fix() {
    let dir = host(&[]);
    let (spec, f) = load_in(COMPOSE, &[], Some(dir.path()));
    assert!(spec.is_none());
    let e = texts(&f.errors).join("\n");
    let shown = dir.path().join("app/db.env").display().to_string();
    assert!(
        e.contains(&format!("the env file {shown} does not exist")),
        "{e}"
    );
    assert!(e.contains(&format!("create {shown}")), "{e}");
    assert!(e.contains("required: false"), "{e}");
    assert!(e.contains("compose.yaml:4"), "{e}");
}

#[test]
fn required_false_skips_a_missing_file_silently() {
    let text = "services:\n  db:\n    image: postgres:16\n    env_file:\n      - path: db.env\n        required: false\n";
    let dir = host(&[]);
    let (spec, f) = load_in(text, &[], Some(dir.path()));
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    assert!(spec.unwrap().services["db"].repo_inputs.is_empty());
    // And it is read when present.
    let dir = host(&[("db.env", "A=1\n")]);
    let (spec, _) = load_in(text, &[], Some(dir.path()));
    assert_eq!(spec.unwrap().services["db"].environment["A"].expose(), "1");
}

#[test]
fn no_path_leaves_the_stack_folder() {
    let dir = host(&[]);
    // Another stack's file and the top of the secrets dir are there, and never read.
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    std::fs::write(dir.path().join("other/db.env"), "STOLEN=yes\n").unwrap();
    std::fs::write(dir.path().join("top.env"), "STOLEN=yes\n").unwrap();
    for path in [
        "../other/db.env",
        "../top.env",
        "/etc/passwd",
        "a/../../other/db.env",
    ] {
        let text = format!("services:\n  db:\n    image: postgres:16\n    env_file: {path}\n");
        let (spec, f) = load_in(&text, &[], Some(dir.path()));
        assert!(spec.is_none(), "{path}");
        let e = texts(&f.errors).join("\n");
        assert!(!e.contains("yes"), "{e}");
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_stack_folder_is_refused_one_inside_is_followed() {
    let dir = host(&[("real.env", "INSIDE=1\n")]);
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    std::fs::write(dir.path().join("other/db.env"), "STOLEN=yes\n").unwrap();
    std::os::unix::fs::symlink("../other/db.env", dir.path().join("app/db.env")).unwrap();
    let (spec, f) = load_in(COMPOSE, &[], Some(dir.path()));
    assert!(spec.is_none());
    let e = texts(&f.errors).join("\n");
    assert!(e.contains("symlink that leads out of"), "{e}");
    // A linked folder leading out is refused too.
    std::fs::remove_file(dir.path().join("app/db.env")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("other"), dir.path().join("app/env")).unwrap();
    let text = "services:\n  db:\n    image: postgres:16\n    env_file: env/db.env\n";
    let (spec, f) = load_in(text, &[], Some(dir.path()));
    assert!(spec.is_none(), "{:?}", texts(&f.warnings));
    // A link to a file of the folder itself is fine.
    std::os::unix::fs::symlink("real.env", dir.path().join("app/db.env")).unwrap();
    let (spec, f) = load_in(COMPOSE, &[], Some(dir.path()));
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    assert_eq!(
        spec.unwrap().services["db"].environment["INSIDE"].expose(),
        "1"
    );
}

#[test]
fn a_syntax_error_names_the_host_file_and_never_the_value() {
    let dir = host(&[("db.env", "GOOD=1\nBAD-KEY!=hunter2-secret\n")]);
    let (spec, f) = load_in(COMPOSE, &[], Some(dir.path()));
    assert!(spec.is_none());
    let e = texts(&f.errors).join("\n");
    assert!(
        e.contains(&dir.path().join("app/db.env").display().to_string()),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn an_inactive_service_does_not_need_its_host_file() {
    let text = "services:\n  db:\n    image: postgres:16\n    profiles: [debug]\n    env_file: db.env\n  web:\n    image: nginx:1\n";
    let dir = host(&[]);
    let (spec, f) = load_in(text, &[], Some(dir.path()));
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    assert!(spec.is_some());
}

#[cfg(unix)]
#[test]
fn a_secret_file_that_links_out_of_the_stack_folder_is_refused() {
    let text = "services:\n  db:\n    image: postgres:16\n    secrets: [pw]\nsecrets:\n  pw:\n    file: pw.txt\n";
    let dir = host(&[("real.txt", "inside")]);
    std::fs::write(dir.path().join("top.txt"), "outside-value").unwrap();
    std::os::unix::fs::symlink("../top.txt", dir.path().join("app/pw.txt")).unwrap();
    let (spec, f) = load_in(text, &[], Some(dir.path()));
    assert!(spec.is_none());
    let e = texts(&f.errors).join("\n");
    assert!(
        e.contains("symlink that leads out of <secrets_dir>/app/"),
        "{e}"
    );
    assert!(!e.contains("outside-value"), "{e}");
    // A link inside the folder is mounted as written (Docker resolves it, inside the folder).
    std::fs::remove_file(dir.path().join("app/pw.txt")).unwrap();
    std::os::unix::fs::symlink("real.txt", dir.path().join("app/pw.txt")).unwrap();
    let (spec, f) = load_in(text, &[], Some(dir.path()));
    assert!(f.errors.is_empty(), "{:?}", texts(&f.errors));
    assert!(spec
        .unwrap()
        .host_secrets
        .iter()
        .any(|s| s.expose() == "inside"));
}
