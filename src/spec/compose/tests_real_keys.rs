//! The keys real self-hosted compose files use that gitmoor used to refuse, each read the way
//! docker compose reads it: SELinux relabels (`z`/`Z`), `pids_limit`, legacy `links`, a
//! healthcheck that only tunes the image's own, `depends_on` `required: false` / `restart: true`,
//! and a label given twice.

use crate::spec::compose::tests::{api_with, load, ok_with, strict, strs};
use crate::spec::model::{DependsCondition, HealthcheckSpec, MountSpec};
use std::collections::{BTreeMap, BTreeSet};

/// The errors of `text`, as `line: key: message`.
fn errors(text: &str) -> Vec<String> {
    let (spec, f) = load(text);
    assert!(spec.is_none(), "expected a refusal:\n{text}");
    f.errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}: {}",
                e.line.unwrap_or(0),
                e.key.clone().unwrap_or_default(),
                e.message
            )
        })
        .collect()
}

fn warnings(text: &str) -> Vec<String> {
    let (_, f) = load(text);
    assert!(f.errors.is_empty(), "{:#?}", f.errors);
    f.warnings
        .iter()
        .map(|w| format!("{}: {}", w.key.clone().unwrap_or_default(), w.message))
        .collect()
}

fn api(body: &str, top: &str, files: &[(&str, &str)]) -> crate::spec::model::ServiceSpec {
    api_with(body, top, files, &strict(&[]))
}

#[test]
fn selinux_relabels_in_short_and_long_syntax() {
    let s = api(
        "volumes:\n  - ./conf:/etc/conf:z\n  - /srv/x:/x:ro,Z\n  - type: bind\n    source: /srv/y\n    target: /y\n    read_only: true\n    bind:\n      selinux: z\n      create_host_path: true\n  - /srv/plain:/plain",
        "",
        &[("compose/app/conf/a.conf", "x")],
    );
    assert_eq!(
        s.bind_selinux,
        BTreeMap::from([
            ("/etc/conf".to_string(), "z".to_string()),
            ("/x".to_string(), "Z".to_string()),
            ("/y".to_string(), "z".to_string()),
        ])
    );
    assert_eq!(
        s.volumes[1..],
        [
            MountSpec::Bind {
                source: "/srv/x".into(),
                target: "/x".into(),
                read_only: true
            },
            MountSpec::Bind {
                source: "/srv/y".into(),
                target: "/y".into(),
                read_only: true
            },
            MountSpec::Bind {
                source: "/srv/plain".into(),
                target: "/plain".into(),
                read_only: false
            },
        ]
    );
    assert!(s.repo_inputs.contains_key("./conf"), "still a repo bind");
}

#[test]
fn selinux_on_a_volume_is_a_warning_and_mixed_or_misplaced_relabels_are_refused() {
    let text = "services:\n  api:\n    image: x\n    volumes:\n      - data:/data:z\nvolumes:\n  data: {}\n";
    assert_eq!(
        warnings(text),
        vec![
            "services.api.volumes[0]: `z` has no effect on a volume (only a bind mount is relabelled)"
        ]
    );
    let spec = ok_with(text, &[], &strict(&[]));
    assert!(spec.services["api"].bind_selinux.is_empty());

    let both = "services:\n  api:\n    image: x\n    volumes:\n      - /srv:/srv:z,Z\n";
    assert_eq!(
        errors(both),
        vec!["5: services.api.volumes[0]: both `z` and `Z` are given"]
    );
    let on_volume = "services:\n  api:\n    image: x\n    volumes:\n      - type: volume\n        source: data\n        target: /data\n        bind:\n          selinux: z\nvolumes:\n  data: {}\n";
    assert_eq!(
        errors(on_volume),
        vec!["8: services.api.volumes[0].bind: only for type: bind"]
    );
    let bad_label = "services:\n  api:\n    image: x\n    volumes:\n      - type: bind\n        source: /srv\n        target: /srv\n        bind:\n          selinux: q\n";
    assert_eq!(
        errors(bad_label),
        vec!["9: services.api.volumes[0].bind.selinux: `q` is not an SELinux relabel option"]
    );
    let colon = "services:\n  api:\n    image: x\n    volumes:\n      - type: bind\n        source: /srv/a:b\n        target: /srv\n        bind:\n          selinux: Z\n";
    assert_eq!(
        errors(colon),
        vec!["5: services.api.volumes[0]: `Z` cannot be used on a path that holds `:` (Docker cannot relabel it)"]
    );
}

#[test]
fn pids_limit_and_its_deploy_form() {
    assert_eq!(api("pids_limit: 100", "", &[]).pids_limit, Some(100));
    assert_eq!(api("pids_limit: \"-1\"", "", &[]).pids_limit, Some(-1));
    assert_eq!(api("pids_limit: 0", "", &[]).pids_limit, None);
    let deploy = "deploy:\n  resources:\n    limits:\n      pids: 50\n      memory: 64m";
    let s = api(deploy, "", &[]);
    assert_eq!((s.pids_limit, s.mem_limit), (Some(50), Some(64 << 20)));
    assert_eq!(
        api(&format!("pids_limit: 50\n{deploy}"), "", &[]).pids_limit,
        Some(50),
        "the same value twice is fine, as in compose"
    );
    assert_eq!(
        api("deploy:\n  resources:\n    limits:\n      pids: 0", "", &[]).pids_limit,
        None
    );
    assert_eq!(
        errors("services:\n  api:\n    image: x\n    pids_limit: 20\n    deploy:\n      resources:\n        limits:\n          pids: 30\n"),
        vec!["8: services.api.deploy.resources.limits.pids: differs from the service-level limit"]
    );
    assert_eq!(
        errors("services:\n  api:\n    image: x\n    pids_limit: -5\n"),
        vec!["4: services.api.pids_limit: `-5` is not a process count"]
    );
}

const LINKED: &str = "services:
  app:
    image: x
    links:
      - db
      - \"cache:kv\"
  db:
    image: postgres
    container_name: the-db
  cache:
    image: redis
    healthcheck:
      test: [\"CMD\", \"redis-cli\", \"ping\"]
  worker:
    image: x
    links: [cache]
    depends_on:
      cache:
        condition: service_healthy
";

#[test]
fn links_name_the_linked_containers_and_imply_a_restarting_dependency() {
    let spec = ok_with(LINKED, &[], &strict(&[]));
    let app = &spec.services["app"];
    assert_eq!(
        app.links,
        strs(&[
            "the-db:db",
            "the-db:db-1",
            "the-db:app-db-1",
            "app-cache-1:kv",
            "app-cache-1:cache-1",
            "app-cache-1:app-cache-1",
        ]),
        "compose v2's three names per link"
    );
    assert_eq!(
        app.depends_on,
        BTreeMap::from([
            ("cache".to_string(), DependsCondition::Started),
            ("db".to_string(), DependsCondition::Started),
        ])
    );
    assert_eq!(
        app.depends_on_restart,
        BTreeSet::from(["cache".to_string(), "db".to_string()])
    );
    let worker = &spec.services["worker"];
    assert_eq!(
        worker.depends_on["cache"],
        DependsCondition::Healthy,
        "an explicit depends_on wins over the link's"
    );
    assert!(
        worker.depends_on_restart.is_empty(),
        "and it has no restart: true"
    );
    assert_eq!(worker.links.len(), 3);
    assert_eq!(
        app.networks["default"].aliases,
        strs(&["app"]),
        "no alias is added to the network: a link name is the linker's only"
    );
}

#[test]
fn bad_links_are_refused_with_a_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  app:\n    image: x\n    links: [nope]\n",
            "4: services.app.links[0]: unknown service `nope`",
        ),
        (
            "services:\n  app:\n    image: x\n    links: [app]\n",
            "4: services.app.links[0]: a service cannot link to itself",
        ),
        (
            "services:\n  app:\n    image: x\n    links: [\"db:a:b\"]\n  db:\n    image: x\n",
            "4: services.app.links[0]: `db:a:b` is not service[:alias]",
        ),
        (
            "services:\n  app:\n    image: x\n    network_mode: host\n    links: [db]\n  db:\n    image: x\n",
            "5: services.app.links: cannot be combined with network_mode: host",
        ),
        (
            "services:\n  app:\n    image: x\n    links: [db]\n  db:\n    image: x\n    profiles: [debug]\n",
            "4: services.app.links: `db` does not run: its profiles (debug) are not enabled",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(text), vec![want.to_string()], "{text}");
    }
}

#[test]
fn a_healthcheck_without_test_tunes_the_images_own() {
    let s = api(
        "healthcheck:\n  interval: 30s\n  timeout: 5s\n  retries: 3\n  start_period: 1m",
        "",
        &[],
    );
    assert_eq!(
        s.healthcheck,
        Some(HealthcheckSpec {
            test: vec![],
            interval_ns: Some(30_000_000_000),
            timeout_ns: Some(5_000_000_000),
            retries: Some(3),
            start_period_ns: Some(60_000_000_000),
        })
    );
    let off = api("healthcheck:\n  disable: true", "", &[]);
    assert_eq!(
        off.healthcheck.map(|h| h.test),
        Some(strs(&["NONE"])),
        "disable turns the image's check off"
    );
}

const OPTIONAL: &str = "services:
  app:
    image: x
    depends_on:
      debugger:
        condition: service_started
        required: false
      db:
        condition: service_healthy
        restart: true
  db:
    image: postgres
  debugger:
    image: x
    profiles: [debug]
";

#[test]
fn an_optional_dependency_left_out_by_its_profile_is_skipped() {
    let spec = ok_with(OPTIONAL, &[], &strict(&[]));
    assert!(!spec.services.contains_key("debugger"));
    let app = &spec.services["app"];
    assert_eq!(
        app.depends_on_optional,
        BTreeSet::from(["debugger".to_string()])
    );
    assert_eq!(app.depends_on_restart, BTreeSet::from(["db".to_string()]));
    assert_eq!(app.depends_on["db"], DependsCondition::Healthy);

    // Required (the default): refused, as compose refuses it.
    let required = OPTIONAL.replace("        required: false\n", "");
    assert_eq!(
        errors(&required),
        vec!["4: services.app.depends_on.debugger: `debugger` does not run: its profiles (debug) are not enabled"]
    );
    // A service the file does not define is refused even when optional (compose: "depends on
    // undefined service").
    let undefined = OPTIONAL.replace("  debugger:\n    image: x\n    profiles: [debug]\n", "");
    assert_eq!(
        errors(&undefined),
        vec!["5: services.app.depends_on.debugger: unknown service `debugger`"]
    );
    let not_bool = OPTIONAL.replace("required: false", "required: maybe");
    assert_eq!(
        errors(&not_bool),
        vec![
            "4: services.app.depends_on.debugger: `debugger` does not run: its profiles (debug) are not enabled",
            "7: services.app.depends_on.debugger.required: expected true or false, found a string"
        ],
        "an unreadable `required` counts as the default (true)"
    );
}

#[test]
fn a_label_given_twice_in_a_list_keeps_the_last_as_compose_does() {
    let text =
        "services:\n  api:\n    image: x\n    labels:\n      - a=1\n      - b=2\n      - a=3\n";
    assert_eq!(
        warnings(text),
        vec!["services.api.labels[2]: `a` is given twice; the last one is used, as compose does"]
    );
    let spec = ok_with(text, &[], &strict(&[]));
    assert_eq!(
        spec.services["api"].labels,
        BTreeMap::from([
            ("a".to_string(), "3".to_string()),
            ("b".to_string(), "2".to_string())
        ])
    );
    // Through a merge key, the mapping's own entry wins (YAML's rule), with no warning.
    let merged = "x-labels: &labels\n  a: \"1\"\n  b: \"2\"\nservices:\n  api:\n    image: x\n    labels:\n      <<: *labels\n      a: \"3\"\n";
    assert!(warnings(merged).is_empty());
    let spec = ok_with(merged, &[], &strict(&[]));
    assert_eq!(spec.services["api"].labels["a"], "3");
    assert_eq!(spec.services["api"].labels["b"], "2");
}

/// `deploy.restart_policy` (Frappe's pwd.yml, on 10 services) as docker compose v2 gives it to
/// the container: `getRestartPolicy` in docker/compose pkg/compose/create.go.
#[test]
fn deploy_restart_policy_is_the_containers_restart_policy() {
    let policy = |body: &str| api(&format!("deploy:\n  restart_policy:\n{body}"), "", &[]).restart;
    assert_eq!(policy("    condition: none").as_deref(), Some("no"));
    assert_eq!(policy("    condition: any").as_deref(), Some("always"));
    assert_eq!(
        policy("    condition: on-failure").as_deref(),
        Some("on-failure")
    );
    assert_eq!(
        policy("    condition: on-failure\n    max_attempts: 3").as_deref(),
        Some("on-failure:3")
    );
    assert_eq!(
        policy("    condition: on-failure\n    max_attempts: 0").as_deref(),
        Some("on-failure"),
        "0 is no limit, as `restart: on-failure` is"
    );
    // Engine names too (compose maps them as well).
    assert_eq!(policy("    condition: always").as_deref(), Some("always"));
    assert_eq!(
        policy("    condition: unless-stopped").as_deref(),
        Some("unless-stopped")
    );
    // Without a condition compose sends an empty name: the engine's `no`, not Swarm's `any`.
    assert_eq!(policy("    max_attempts: 2").as_deref(), Some("no"));
    // The same policy written either way hashes alike.
    assert_eq!(
        api("restart: on-failure:3", "", &[]).restart,
        policy("    condition: on-failure\n    max_attempts: 3")
    );
    // The rest of deploy.resources is read as before.
    let s = api(
        "deploy:\n  restart_policy:\n    condition: any\n  resources:\n    limits:\n      memory: 64m\n      cpus: '0.5'",
        "",
        &[],
    );
    assert_eq!(
        (s.restart.as_deref(), s.mem_limit, s.nano_cpus),
        (Some("always"), Some(64 << 20), Some(500_000_000))
    );
}

#[test]
fn deploy_restart_policy_wins_over_restart_as_in_compose_and_says_what_it_drops() {
    let both = "services:\n  api:\n    image: x\n    restart: always\n    deploy:\n      restart_policy:\n        condition: none\n";
    assert_eq!(
        ok_with(both, &[], &strict(&[])).services["api"]
            .restart
            .as_deref(),
        Some("no")
    );
    assert_eq!(
        warnings(both),
        vec!["services.api.deploy.restart_policy: gives `no`, restart: gives `always`; docker compose applies deploy.restart_policy, and so does gitmoor"]
    );
    let same = "services:\n  api:\n    image: x\n    restart: always\n    deploy:\n      restart_policy:\n        condition: any\n";
    assert!(warnings(same).is_empty());
    // delay and window are Swarm's: read (a bad duration is an error), then dropped, as compose
    // drops them; a warning says so.
    let paced = "services:\n  api:\n    image: x\n    deploy:\n      restart_policy:\n        condition: on-failure\n        delay: 5s\n        window: 120s\n";
    assert_eq!(
        ok_with(paced, &[], &strict(&[])).services["api"]
            .restart
            .as_deref(),
        Some("on-failure")
    );
    let w = warnings(paced);
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(w[0].starts_with("services.api.deploy.restart_policy.delay: ignored"));
    assert!(w[1].starts_with("services.api.deploy.restart_policy.window: ignored"));
    let no_condition = "services:\n  api:\n    image: x\n    deploy:\n      restart_policy:\n        max_attempts: 3\n";
    assert_eq!(
        warnings(no_condition),
        vec!["services.api.deploy.restart_policy: no condition: docker compose gives the container no restart policy (Swarm's default, any, does not apply here)"]
    );
}

#[test]
fn a_deploy_restart_policy_the_engine_would_refuse_is_an_error() {
    let base = "services:\n  api:\n    image: x\n    deploy:\n      restart_policy:\n";
    assert_eq!(
        errors(&format!("{base}        condition: sometimes\n")),
        vec!["6: services.api.deploy.restart_policy.condition: unknown condition `sometimes`"]
    );
    assert_eq!(
        errors(&format!("{base}        condition: any\n        max_attempts: 3\n")),
        vec!["7: services.api.deploy.restart_policy.max_attempts: applies only with condition: on-failure, not `always` (the engine refuses a retry count with it)"]
    );
    assert_eq!(
        errors(&format!(
            "{base}        condition: on-failure\n        max_attempts: -1\n"
        )),
        vec![
            "7: services.api.deploy.restart_policy.max_attempts: `-1` is not a number of attempts"
        ]
    );
    assert_eq!(
        errors(&format!("{base}        condition: any\n        delay: soon\n")),
        vec!["7: services.api.deploy.restart_policy.delay: `soon` is not a duration; write it like 10s, 1m30s or 500ms"]
    );
    assert_eq!(
        errors(&format!(
            "{base}        condition: any\n        backoff: 2\n"
        )),
        vec!["7: services.api.deploy.restart_policy.backoff: not supported by gitmoor"]
    );
}
