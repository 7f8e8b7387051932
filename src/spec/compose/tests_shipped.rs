//! What the files self-hosted projects ship need beyond the compose keys: a placeholder password
//! deployed under `literal_secrets: warn`, and `~/` bind sources.

use super::tests::{snap, strict};
use super::*;
use crate::spec::model::MountSpec;

fn load_opts(
    text: &str,
    files: &[(&str, &str)],
    home: Option<&Path>,
    literal: LiteralSecrets,
) -> (Option<StackSpec>, Findings) {
    load_full(text, files, &strict(&[]), home, None, literal)
}

/// `compose/app/compose.yaml` beside `files`, read with these variables, home, policy and mode.
fn load_full(
    text: &str,
    files: &[(&str, &str)],
    vars: &StackVars,
    home: Option<&Path>,
    policy: Option<&crate::spec::policy::Policy>,
    literal: LiteralSecrets,
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
        vars,
        bind_root: Path::new("/var/lib/gitmoor/binds"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir: None,
        profiles: &[],
        limits: &crate::spec::limits::Limits::default(),
        policy,
        home_dir: home,
        literal_secrets: literal,
    })
}

fn shown(f: &[SpecError]) -> Vec<String> {
    f.iter().map(|e| e.to_string()).collect()
}

const SHIPPED: &str = "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: changeme-4711\n    ports: [\"99999:5432\"]\n";

#[test]
fn a_literal_password_is_refused_by_default_and_deployed_with_a_warning_under_warn() {
    let text = "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: changeme-4711\n      POSTGRES_USER: app\n  api:\n    image: x\n    env_file: ./api.env\n";
    let files = [("compose/app/api.env", "LOG=debug\nAPI_TOKEN=tok-99887\n")];
    let (spec, f) = load_opts(text, &files, None, LiteralSecrets::Refuse);
    assert!(spec.is_none());
    let errors = shown(&f.errors);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors
        .iter()
        .all(|e| e.contains("literal secret in a committed file")));

    let (spec, f) = load_opts(text, &files, None, LiteralSecrets::Warn);
    assert!(f.errors.is_empty(), "{:#?}", shown(&f.errors));
    let warnings = shown(&f.warnings);
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "compose/app/compose.yaml:5: services.db.environment.POSTGRES_PASSWORD: literal secret in a committed file, deployed as written (literal_secrets: warn)"
        )),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("compose/app/api.env:2: API_TOKEN: literal secret")),
        "{warnings:#?}"
    );
    assert!(!format!("{warnings:?}").contains("changeme-4711"));
    assert!(!format!("{warnings:?}").contains("tok-99887"));
    let spec = spec.expect("deployed under warn");
    // The container gets the value as written; the stack's redaction list holds it.
    assert_eq!(
        spec.services["db"].environment["POSTGRES_PASSWORD"].expose(),
        "changeme-4711"
    );
    let redacted: Vec<&str> = spec.host_secrets.iter().map(|s| s.expose()).collect();
    assert!(redacted.contains(&"changeme-4711"), "{redacted:?}");
    assert!(redacted.contains(&"tok-99887"), "{redacted:?}");
    // A setting that is not secret-named is not a secret.
    assert!(!redacted.contains(&"app"));
}

#[test]
fn warn_does_not_let_other_errors_through() {
    let (spec, f) = load_opts(SHIPPED, &[], None, LiteralSecrets::Warn);
    assert!(spec.is_none());
    let errors = shown(&f.errors);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("services.db.ports[0]"), "{errors:#?}");
    let warnings = shown(&f.warnings);
    assert!(
        warnings.iter().any(|w| w.contains("deployed as written")),
        "{warnings:#?}"
    );
    assert!(!format!("{errors:?}{warnings:?}").contains("changeme-4711"));
}

#[test]
fn a_committed_env_file_is_judged_on_the_values_its_parser_deploys() {
    let text = "services:\n  api:\n    image: x\n    env_file: ./api.env\n";
    let env = "LOG=debug\nAPI_TOKEN=tok-5521 # change me\nDB_PASSWORD: colon-pw-88\nexport SMTP_PASSWD=\"quoted-pw-77\"\nREF_SECRET=${API_TOKEN}\n";
    let files = [("compose/app/api.env", env)];
    let (spec, f) = load_opts(text, &files, None, LiteralSecrets::Refuse);
    assert!(spec.is_none());
    let errors = shown(&f.errors);
    for (line, key) in [(2, "API_TOKEN"), (3, "DB_PASSWORD"), (4, "SMTP_PASSWD")] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!(
                "compose/app/api.env:{line}: {key}: literal secret in a committed file"
            ))),
            "{key}: {errors:#?}"
        );
    }
    assert!(
        !errors.iter().any(|e| e.contains("REF_SECRET")),
        "{errors:#?}"
    );

    let (spec, f) = load_full(text, &files, &strict(&[]), None, None, LiteralSecrets::Warn);
    assert!(f.errors.is_empty(), "{:#?}", shown(&f.errors));
    let spec = spec.expect("deployed under warn");
    let env = &spec.services["api"].environment;
    let redacted: Vec<&str> = spec.host_secrets.iter().map(|s| s.expose()).collect();
    // What the container gets is exactly what is redacted.
    for key in ["API_TOKEN", "DB_PASSWORD", "SMTP_PASSWD"] {
        let deployed = env[key].expose();
        assert!(
            redacted.contains(&deployed),
            "{key}={deployed}: {redacted:?}"
        );
    }
    assert_eq!(env["API_TOKEN"].expose(), "tok-5521");
}

fn binds(spec: &StackSpec, service: &str) -> Vec<(String, String, bool)> {
    spec.services[service]
        .volumes
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => Some((source.clone(), target.clone(), *read_only)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_home_path_is_the_home_of_the_user_gitmoor_runs_as_said_as_a_warning() {
    let text = "services:\n  memos:\n    image: x\n    volumes:\n      - ~/.memos/:/var/opt/memos\n      - type: bind\n        source: ~/cfg\n        target: /cfg\n        read_only: true\n      - ~:/home-root:ro\n";
    let (spec, f) = load_opts(text, &[], Some(Path::new("/root")), LiteralSecrets::Refuse);
    assert!(f.errors.is_empty(), "{:#?}", shown(&f.errors));
    let spec = spec.expect("accepted");
    assert_eq!(
        binds(&spec, "memos"),
        vec![
            ("/root/.memos".into(), "/var/opt/memos".into(), false),
            ("/root/cfg".into(), "/cfg".into(), true),
            ("/root".into(), "/home-root".into(), true),
        ]
    );
    let warnings = shown(&f.warnings);
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "compose/app/compose.yaml:5: services.memos.volumes[0]: `~/.memos/` is `/root/.memos` on this host (the home directory of the user gitmoor runs as)"
        ) && w.contains("write /root/.memos to say so")),
        "{warnings:#?}"
    );
}

#[test]
fn a_home_path_that_climbs_out_names_another_user_or_has_no_home_is_refused() {
    for (source, home, expect) in [
        (
            "~/../etc",
            Some("/root"),
            "`~/../etc` leaves the home directory",
        ),
        (
            "~admin/keys",
            Some("/root"),
            "`~admin/keys`: a home-directory path is not supported here",
        ),
        (
            "~/data",
            None,
            "`~/data`: a home-directory path is not supported here",
        ),
    ] {
        let text =
            format!("services:\n  api:\n    image: x\n    volumes:\n      - {source}:/data\n");
        let (spec, f) = load_opts(&text, &[], home.map(Path::new), LiteralSecrets::Refuse);
        assert!(spec.is_none(), "{source}");
        let errors = shown(&f.errors);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!(
                "compose/app/compose.yaml:5: services.api.volumes[0]: {expect}"
            ))),
            "{source}: {errors:#?}"
        );
    }
}

#[test]
fn a_home_path_under_the_baseline_policy_is_judged_as_the_host_path_it_is() {
    let baseline = crate::spec::policy::Policy::preset("baseline").expect("preset");
    let vars = strict(&[("CFG", "~/a/../.ssh")]);
    for (volume, host) in [
        ("- ~/.ssh:/keys:ro", "/root/.ssh"),
        (
            "- type: bind\n        source: ~/.ssh\n        target: /keys",
            "/root/.ssh",
        ),
        ("- ~/a/../.ssh:/keys", "/root/a/../.ssh"),
        ("- ${CFG}:/keys", "/root/a/../.ssh"),
        ("- ~:/keys", "/root"),
    ] {
        let text = format!("services:\n  api:\n    image: x\n    volumes:\n      {volume}\n");
        let (spec, f) = load_full(
            &text,
            &[],
            &vars,
            Some(Path::new("/root")),
            Some(&baseline),
            LiteralSecrets::Refuse,
        );
        assert!(spec.is_none(), "{volume}");
        let errors = shown(&f.errors);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("the policy refuses the bind")
                    && e.contains(&format!("`{host}`"))
                    && e.contains("root's home")),
            "{volume}: {errors:#?}"
        );
    }
}

#[test]
fn a_home_path_climbing_out_through_interpolation_is_refused() {
    let vars = strict(&[("CFG", "~/../etc")]);
    let text = "services:\n  api:\n    image: x\n    volumes:\n      - ${CFG}/x:/data\n";
    let (spec, f) = load_full(
        text,
        &[],
        &vars,
        Some(Path::new("/root")),
        None,
        LiteralSecrets::Refuse,
    );
    assert!(spec.is_none());
    let errors = shown(&f.errors);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("leaves the home directory")),
        "{errors:#?}"
    );
}
