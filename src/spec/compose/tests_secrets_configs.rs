//! `secrets:` and `configs:` as real compose files write them: secrets from the secrets dir,
//! configs from the repo, a missing secret file, and a stack that never reads another stack's
//! host files.

use super::tests::{snap, strict, FILE};
use super::*;
use crate::spec::model::MountSpec;

/// Loads with a secrets dir and profiles.
pub(super) fn load_full(
    text: &str,
    files: &[(&str, &str)],
    secrets_dir: Option<&Path>,
    profiles: &[String],
) -> (Option<StackSpec>, Findings) {
    let mut all = vec![(FILE, text)];
    all.extend_from_slice(files);
    let snap = snap(&all);
    let vars = match secrets_dir {
        Some(_) => strict(&[]),
        None => StackVars::unchecked(),
    };
    load_stack(&StackInput {
        name: "app",
        file: FILE,
        text,
        snap: &snap,
        vars: &vars,
        bind_root: Path::new("/var/lib/gitmoor/stacks"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir,
        profiles,
        limits: &crate::spec::limits::Limits::default(),
        policy: None,
        home_dir: None,
        literal_secrets: Default::default(),
    })
}

const SECRETS_AND_CONFIGS: &str = r#"services:
  db:
    image: postgres
    environment:
      POSTGRES_PASSWORD_FILE: /run/secrets/db-password
    secrets:
      - db-password
      - source: api-key
        target: key.txt
      - source: api-key
        target: /etc/app/key
        mode: 0400
  web:
    image: nginx
    configs:
      - nginx
      - source: site
        target: /etc/nginx/conf.d/default.conf
secrets:
  db-password:
    file: db/password.txt
  api-key:
    file: ./api.key
  unused:
    file: nowhere.txt
configs:
  nginx:
    file: ./nginx.conf
  site:
    file: conf/site.conf
"#;

#[test]
fn secrets_come_from_the_secrets_dir_and_configs_from_the_repo() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("app/db")).expect("mkdir");
    std::fs::write(dir.path().join("app/db/password.txt"), "hunter2\n").expect("write");
    std::fs::write(dir.path().join("app/api.key"), "k3y").expect("write");
    // The top of the secrets dir is no stack's: never read, whatever it holds.
    std::fs::write(dir.path().join("api.key"), "other").expect("write");
    let files = [
        ("compose/app/nginx.conf", "events {}"),
        ("compose/app/conf/site.conf", "server {}"),
    ];
    let (spec, f) = load_full(SECRETS_AND_CONFIGS, &files, Some(dir.path()), &[]);
    let spec = spec.unwrap_or_else(|| panic!("{:#?}", f.errors));
    assert_eq!(
        f.warnings.len(),
        1,
        "mode: is ignored, as compose does: {:#?}",
        f.warnings
    );
    let d = dir.path().display();
    let db = &spec.services["db"];
    assert_eq!(
        db.volumes,
        vec![
            MountSpec::Bind {
                source: format!("{d}/app/db/password.txt"),
                target: "/run/secrets/db-password".into(),
                read_only: true
            },
            MountSpec::Bind {
                source: format!("{d}/app/api.key"),
                target: "/run/secrets/key.txt".into(),
                read_only: true
            },
            MountSpec::Bind {
                source: format!("{d}/app/api.key"),
                target: "/etc/app/key".into(),
                read_only: true
            },
        ]
    );
    let keys: Vec<&String> = db.repo_inputs.keys().collect();
    assert_eq!(
        keys,
        vec![
            &format!("{d}/app/api.key"),
            &format!("{d}/app/db/password.txt")
        ]
    );
    let hashes = serde_json::to_string(&db.repo_inputs).expect("json");
    assert!(!hashes.contains("hunter2") && !hashes.contains("k3y"));

    let web = &spec.services["web"];
    assert_eq!(
        web.volumes,
        vec![
            MountSpec::Bind {
                source: format!(
                    "/var/lib/gitmoor/stacks/{}/nginx.conf",
                    web.repo_inputs["./nginx.conf"]
                ),
                target: "/nginx".into(),
                read_only: true
            },
            MountSpec::Bind {
                source: format!(
                    "/var/lib/gitmoor/stacks/{}/site.conf",
                    web.repo_inputs["conf/site.conf"]
                ),
                target: "/etc/nginx/conf.d/default.conf".into(),
                read_only: true
            },
        ]
    );
    assert_eq!(
        web.repo_inputs.keys().collect::<Vec<_>>(),
        vec!["./nginx.conf", "conf/site.conf"]
    );
    assert!(web.repo_inputs.keys().all(|k| !k.contains(&*d.to_string())));

    // Editing the secret changes the db's inputs, and only the db's.
    std::fs::write(dir.path().join("app/db/password.txt"), "rotated\n").expect("write");
    let (again, _) = load_full(SECRETS_AND_CONFIGS, &files, Some(dir.path()), &[]);
    let again = again.expect("spec");
    assert_ne!(again.services["db"].repo_inputs, db.repo_inputs);
    assert_eq!(again.services["web"], *web);
    let db = again.services["db"].clone();
    // Editing a config changes the web's.
    let edited = [
        files[0],
        ("compose/app/conf/site.conf", "server { listen 81; }"),
    ];
    let (again, _) = load_full(SECRETS_AND_CONFIGS, &edited, Some(dir.path()), &[]);
    let again = again.expect("spec");
    assert_eq!(again.services["db"], db);
    assert_ne!(again.services["web"].repo_inputs, web.repo_inputs);
}

#[test]
fn a_missing_secret_file_is_an_error_only_when_checked_and_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        ("compose/app/nginx.conf", "events {}"),
        ("compose/app/conf/site.conf", "server {}"),
    ];
    let (spec, f) = load_full(SECRETS_AND_CONFIGS, &files, Some(dir.path()), &[]);
    assert!(spec.is_none());
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    let d = dir.path().display();
    assert_eq!(
        shown,
        vec![
            format!("{FILE}:21: secrets.db-password.file: the secret file {d}/app/db/password.txt does not exist; create {d}/app/db/password.txt on the host (it is never read from the repo)"),
            format!("{FILE}:23: secrets.api-key.file: the secret file {d}/app/api.key does not exist; create {d}/app/api.key on the host (it is never read from the repo)"),
        ],
        "once each, and not for the unused one"
    );
    // Without a secrets dir (CI), a warning.
    let (spec, f) = load_full(SECRETS_AND_CONFIGS, &files, None, &[]);
    assert!(spec.is_some(), "{:#?}", f.errors);
    assert!(f.warnings.iter().any(|w| w.to_string().contains(
        "secrets.db-password.file: `db/password.txt` is read from the host's secrets dir"
    )));
}

#[test]
fn a_stack_never_reads_another_stacks_host_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another stack's `.env` and its own folder, both on the host, both off limits to `app`.
    std::fs::write(dir.path().join("other.env"), "TOKEN=other-secret\n").expect("write");
    std::fs::create_dir_all(dir.path().join("other")).expect("mkdir");
    std::fs::write(dir.path().join("other/key.txt"), "other-key").expect("write");
    // A file at the top of the secrets dir (where another stack's secret may lie) too.
    std::fs::write(dir.path().join("db_password.txt"), "other-secret").expect("write");
    for (file, needle) in [
        ("db_password.txt", "app/db_password.txt does not exist"),
        ("other.env", "app/other.env"),
        ("../other.env", "not a path inside"),
        ("other/key.txt", "app/other/key.txt"),
        ("../other/key.txt", "not a path inside"),
    ] {
        let text = format!(
            "services:\n  db:\n    image: postgres\n    secrets: [s]\nsecrets:\n  s:\n    file: {file}\n"
        );
        let (spec, f) = load_full(&text, &[], Some(dir.path()), &[]);
        assert!(spec.is_none(), "{file} must be refused");
        let errors = format!("{:#?}", f.errors);
        assert!(errors.contains(needle), "{file}: {errors}");
        assert!(!errors.contains("other-secret") && !errors.contains("other-key"));
    }
}
