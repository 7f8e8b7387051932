//! The seed app, and the helpers the other compose tests share.

use super::*;
use crate::spec::model::{
    DependsCondition, HealthcheckSpec, MountSpec, PortSpec, Secret, ServiceSpec,
};

pub(super) const FILE: &str = "compose/app/compose.yaml";
pub(super) const SECRETS: &str = "/etc/gitmoor/secrets/app.env";

pub(super) fn snap(files: &[(&str, &str)]) -> Snapshot {
    Snapshot::from_texts(files)
}

/// Strict mode with a secrets file holding `pairs`.
pub(super) fn strict(pairs: &[(&str, &str)]) -> StackVars {
    StackVars {
        vars: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret(v.to_string())))
            .collect(),
        secrets_file: Some(SECRETS.to_string()),
        has_secrets_file: true,
    }
}

/// Loads `text` as `compose/app/compose.yaml`, next to `files` (repo paths).
pub(super) fn load_with(
    name: &str,
    text: &str,
    files: &[(&str, &str)],
    vars: &StackVars,
) -> (Option<StackSpec>, Findings) {
    let file = format!("compose/{name}/compose.yaml");
    let mut all = vec![(file.as_str(), text)];
    all.extend_from_slice(files);
    let snap = snap(&all);
    load_stack(&StackInput {
        name,
        file: &file,
        text,
        snap: &snap,
        vars,
        bind_root: Path::new("/var/lib/gitmoor/binds"),
        data_dir: Path::new("/var/lib/gitmoor/data"),
        secrets_dir: None,
        profiles: &[],
        limits: &crate::spec::limits::Limits::default(),
        policy: None,
        home_dir: None,
        literal_secrets: Default::default(),
    })
}

pub(super) fn load(text: &str) -> (Option<StackSpec>, Findings) {
    load_with("app", text, &[], &strict(&[]))
}

/// Loads and asserts there is no error.
pub(super) fn ok_with(text: &str, files: &[(&str, &str)], vars: &StackVars) -> StackSpec {
    let (spec, f) = load_with("app", text, files, vars);
    let errors: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}\n{text}");
    spec.expect("a spec when there is no error")
}

/// Service `api` of `services: {api: {image: img, <body>}}` plus `top` (top-level YAML).
pub(super) fn api_with(
    body: &str,
    top: &str,
    files: &[(&str, &str)],
    vars: &StackVars,
) -> ServiceSpec {
    let mut text = String::from("services:\n  api:\n    image: img\n");
    for line in body.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(top);
    let mut spec = ok_with(&text, files, vars);
    spec.services.remove("api").expect("service api")
}

pub(super) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub(super) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Secret(v.to_string())))
        .collect()
}

pub(super) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) const SEED: &str = r#"# The seed app: a backend and its database.
services:
  backend:
    image: ghcr.io/terraproxi/backend:1.4.2
    restart: unless-stopped
    environment:
      DATABASE_URL: postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}
      JWT_SECRET: ${JWT_SECRET}
      NODE_ENV: production
    ports:
      - "127.0.0.1:3000:3000"
    networks:
      - web
      - db
    depends_on:
      postgres:
        condition: service_healthy
  postgres:
    image: postgres:16-alpine
    restart: unless-stopped
    environment:
      POSTGRES_DB: ${POSTGRES_DB}
      POSTGRES_USER: ${POSTGRES_USER}
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    volumes:
      - pgdata:/var/lib/postgresql/data
    networks:
      - db
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $${POSTGRES_USER} -d $${POSTGRES_DB}"]
      interval: 10s
      timeout: 5s
      retries: 5
      start_period: 30s
networks:
  web:
  db:
    internal: true
volumes:
  pgdata:
"#;

pub(super) fn seed_vars() -> StackVars {
    strict(&[
        ("POSTGRES_DB", "app"),
        ("POSTGRES_USER", "app_user"),
        ("POSTGRES_PASSWORD", "pw-from-secrets"),
        ("JWT_SECRET", "jwt-from-secrets"),
    ])
}

#[test]
fn seed_app() {
    let spec = ok_with(SEED, &[], &seed_vars());
    assert_eq!(spec.name, "app");
    assert_eq!(spec.compose_file, FILE);
    assert!(spec.has_secrets_file);
    assert_eq!(
        spec.services.keys().collect::<Vec<_>>(),
        vec!["backend", "postgres"]
    );

    let backend = &spec.services["backend"];
    assert_eq!(backend.image, "ghcr.io/terraproxi/backend:1.4.2");
    assert_eq!(backend.restart.as_deref(), Some("unless-stopped"));
    assert_eq!(
        backend.environment,
        env(&[
            (
                "DATABASE_URL",
                "postgres://app_user:pw-from-secrets@postgres:5432/app"
            ),
            ("JWT_SECRET", "jwt-from-secrets"),
            ("NODE_ENV", "production"),
        ])
    );
    assert_eq!(
        backend.ports,
        vec![PortSpec {
            host_ip: "127.0.0.1".into(),
            host_port: Some(3000),
            container_port: 3000,
            protocol: "tcp".into(),
        }]
    );
    assert_eq!(
        backend.networks.keys().collect::<Vec<_>>(),
        vec!["db", "web"]
    );
    assert_eq!(backend.networks["web"].aliases, strs(&["backend"]));
    assert_eq!(
        backend.depends_on,
        BTreeMap::from([("postgres".to_string(), DependsCondition::Healthy)])
    );

    let pg = &spec.services["postgres"];
    assert_eq!(
        pg.volumes,
        vec![MountSpec::Volume {
            source: "app_pgdata".into(),
            target: "/var/lib/postgresql/data".into(),
            read_only: false,
        }]
    );
    assert!(pg.ports.is_empty(), "the database publishes no port");
    assert_eq!(
        pg.environment["POSTGRES_PASSWORD"].expose(),
        "pw-from-secrets"
    );
    assert_eq!(
        pg.healthcheck,
        Some(HealthcheckSpec {
            test: strs(&[
                "CMD-SHELL",
                "pg_isready -U ${POSTGRES_USER} -d ${POSTGRES_DB}"
            ]),
            interval_ns: Some(10_000_000_000),
            timeout_ns: Some(5_000_000_000),
            retries: Some(5),
            start_period_ns: Some(30_000_000_000),
        })
    );

    assert_eq!(spec.networks.keys().collect::<Vec<_>>(), vec!["db", "web"]);
    assert!(spec.networks["db"].internal);
    assert!(!spec.networks["web"].internal);
    assert_eq!(spec.networks["db"].name, "app_db");
    assert_eq!(
        spec.networks["db"].labels,
        map(&[
            ("com.docker.compose.network", "db"),
            ("com.docker.compose.project", "app"),
            ("io.gitmoor.managed", "true"),
        ])
    );
    assert_eq!(spec.volumes["pgdata"].name, "app_pgdata");
    assert_eq!(
        spec.volumes["pgdata"].labels,
        map(&[
            ("com.docker.compose.project", "app"),
            ("com.docker.compose.volume", "pgdata"),
            ("io.gitmoor.managed", "true"),
        ])
    );
    assert!(
        !spec.networks.contains_key("default"),
        "every service names its networks"
    );
    // Debug output never shows a secret.
    let shown = format!("{spec:?}");
    assert!(!shown.contains("pw-from-secrets") && !shown.contains("jwt-from-secrets"));
}

#[test]
fn seed_app_without_secrets_dir_warns_per_variable() {
    let (spec, f) = load_with("app", SEED, &[], &StackVars::unchecked());
    assert!(f.errors.is_empty(), "{:#?}", f.errors);
    let spec = spec.expect("spec");
    assert!(!spec.has_secrets_file);
    let shown: Vec<String> = f.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        shown.iter().any(|w| w.starts_with(&format!(
            "{FILE}:8: services.backend.environment.JWT_SECRET: variable JWT_SECRET is not set"
        ))),
        "{shown:#?}"
    );
}
