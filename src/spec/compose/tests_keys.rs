//! What every supported key turns into.

use super::tests::{api_with, env, load, load_with, map, ok_with, strict, strs, FILE};
use super::*;
use crate::spec::model::{
    DependsCondition, LoggingSpec, MountSpec, NetworkAttach, PortSpec, ServiceSpec,
};

#[test]
fn service_keys() {
    type Check = fn(&ServiceSpec);
    let cases: Vec<(&str, &str, &str, Check)> = vec![
        ("command as a string is split like a shell", "command: npm run 'start prod' --port=3000", "", |s| {
            assert_eq!(s.command, Some(strs(&["npm", "run", "start prod", "--port=3000"])))
        }),
        ("command as a list", "command: [\"sh\", \"-c\", \"echo $$HOME\", 1]", "", |s| {
            assert_eq!(s.command, Some(strs(&["sh", "-c", "echo $HOME", "1"])))
        }),
        ("entrypoint string", "entrypoint: /docker-entrypoint.sh --verbose", "", |s| {
            assert_eq!(s.entrypoint, Some(strs(&["/docker-entrypoint.sh", "--verbose"])))
        }),
        ("entrypoint empty list resets", "entrypoint: []", "", |s| {
            assert_eq!(s.entrypoint, Some(vec![]))
        }),
        ("environment map with scalars", "environment:\n  A: 1\n  B: true\n  C: ''\n  D: 1.5", "", |s| {
            assert_eq!(s.environment, env(&[("A", "1"), ("B", "true"), ("C", ""), ("D", "1.5")]))
        }),
        ("environment list", "environment:\n  - A=1\n  - B=x=y\n  - C=", "", |s| {
            assert_eq!(s.environment, env(&[("A", "1"), ("B", "x=y"), ("C", "")]))
        }),
        ("ports long form", "ports:\n  - target: 80\n    published: \"8080\"\n    host_ip: 127.0.0.1\n    protocol: udp\n    mode: host\n  - target: 81", "", |s| {
            assert_eq!(s.ports, vec![
                PortSpec { host_ip: "127.0.0.1".into(), host_port: Some(8080), container_port: 80, protocol: "udp".into() },
                PortSpec { host_ip: "".into(), host_port: None, container_port: 81, protocol: "tcp".into() },
            ])
        }),
        ("ports short forms", "ports:\n  - 3000\n  - \"3000:3000\"\n  - 127.0.0.1::4000\n  - 8080:80/udp\n  - 5000-5001:6000-6001", "", |s| {
            let got: Vec<(String, Option<u16>, u16, &str)> = s.ports.iter().map(|p| (p.host_ip.clone(), p.host_port, p.container_port, p.protocol.as_str())).collect();
            assert_eq!(got, vec![
                ("".into(), None, 3000, "tcp"),
                ("".into(), Some(3000), 3000, "tcp"),
                ("127.0.0.1".into(), None, 4000, "tcp"),
                ("".into(), Some(8080), 80, "udp"),
                ("".into(), Some(5000), 6000, "tcp"),
                ("".into(), Some(5001), 6001, "tcp"),
            ])
        }),
        ("volumes short forms", "volumes:\n  - data:/data:ro\n  - /srv/x:/x\n  - /anon\n  - /var/run/docker.sock:/var/run/docker.sock:rw", "volumes:\n  data:\n", |s| {
            assert_eq!(s.volumes, vec![
                MountSpec::Volume { source: "app_data".into(), target: "/data".into(), read_only: true },
                MountSpec::Bind { source: "/srv/x".into(), target: "/x".into(), read_only: false },
                MountSpec::Volume { source: "".into(), target: "/anon".into(), read_only: false },
                MountSpec::Bind { source: "/var/run/docker.sock".into(), target: "/var/run/docker.sock".into(), read_only: false },
            ])
        }),
        ("volumes long forms", "volumes:\n  - type: volume\n    source: data\n    target: /data\n    read_only: true\n  - type: bind\n    source: /etc/ssl\n    target: /ssl\n  - type: tmpfs\n    target: /cache\n    tmpfs:\n      size: 64m\n  - type: volume\n    target: /anon", "volumes:\n  data: {}\n", |s| {
            assert_eq!(s.volumes, vec![
                MountSpec::Volume { source: "app_data".into(), target: "/data".into(), read_only: true },
                MountSpec::Bind { source: "/etc/ssl".into(), target: "/ssl".into(), read_only: false },
                MountSpec::Volume { source: "".into(), target: "/anon".into(), read_only: false },
            ]);
            assert_eq!(s.tmpfs, map(&[("/cache", "size=64m")]));
        }),
        ("networks map with aliases", "networks:\n  front:\n    aliases: [web, api]\n  back:", "networks:\n  front:\n  back:\n", |s| {
            assert_eq!(s.networks, BTreeMap::from([
                ("back".to_string(), NetworkAttach { aliases: strs(&["api"]), ..Default::default() }),
                ("front".to_string(), NetworkAttach { aliases: strs(&["api", "web"]), ..Default::default() }),
            ]))
        }),
        ("no networks: the default network", "", "", |s| {
            assert_eq!(s.networks, BTreeMap::from([("default".to_string(), NetworkAttach { aliases: strs(&["api"]), ..Default::default() })]))
        }),
        ("healthcheck test string", "healthcheck:\n  test: curl -f http://localhost/ || exit 1\n  interval: 1m30s\n  timeout: 500ms", "", |s| {
            let hc = s.healthcheck.clone().expect("healthcheck");
            assert_eq!(hc.test, strs(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]));
            assert_eq!(hc.interval_ns, Some(90_000_000_000));
            assert_eq!(hc.timeout_ns, Some(500_000_000));
            assert_eq!(hc.retries, None);
        }),
        ("healthcheck test list", "healthcheck:\n  test: [\"CMD\", \"wget\", \"-q\", \"--spider\", \"http://localhost\"]", "", |s| {
            assert_eq!(s.healthcheck.as_ref().map(|h| h.test.clone()), Some(strs(&["CMD", "wget", "-q", "--spider", "http://localhost"])))
        }),
        ("healthcheck disable", "healthcheck:\n  disable: true", "", |s| {
            assert_eq!(s.healthcheck.as_ref().map(|h| h.test.clone()), Some(strs(&["NONE"])))
        }),
        ("restart no unquoted", "restart: no", "", |s| assert_eq!(s.restart.as_deref(), Some("no"))),
        ("restart on-failure:3", "restart: on-failure:3", "", |s| assert_eq!(s.restart.as_deref(), Some("on-failure:3"))),
        ("restart always", "restart: always", "", |s| assert_eq!(s.restart.as_deref(), Some("always"))),
        ("labels map", "labels:\n  a.b: c\n  n: 1\n  e:", "", |s| {
            assert_eq!(s.labels, map(&[("a.b", "c"), ("n", "1"), ("e", "")]))
        }),
        ("labels list", "labels:\n  - a.b=c\n  - flag", "", |s| {
            assert_eq!(s.labels, map(&[("a.b", "c"), ("flag", "")]))
        }),
        ("user, working_dir, caps, read_only", "user: 1000:1000\nworking_dir: /app\ncap_add: [NET_ADMIN]\ncap_drop:\n  - ALL\nread_only: true", "", |s| {
            assert_eq!(s.user.as_deref(), Some("1000:1000"));
            assert_eq!(s.working_dir.as_deref(), Some("/app"));
            assert_eq!(s.cap_add, strs(&["NET_ADMIN"]));
            assert_eq!(s.cap_drop, strs(&["ALL"]));
            assert!(s.read_only);
        }),
        ("numeric user", "user: 1000", "", |s| assert_eq!(s.user.as_deref(), Some("1000"))),
        ("tmpfs string", "tmpfs: /run", "", |s| assert_eq!(s.tmpfs, map(&[("/run", "")]))),
        ("tmpfs list", "tmpfs:\n  - /run:size=64m,mode=1777\n  - /tmp", "", |s| {
            assert_eq!(s.tmpfs, map(&[("/run", "size=64m,mode=1777"), ("/tmp", "")]))
        }),
        ("extra_hosts list", "extra_hosts:\n  - \"db.local:10.0.0.5\"\n  - \"gw=10.0.0.1\"\n  - \"v6:::1\"", "", |s| {
            assert_eq!(s.extra_hosts, strs(&["db.local:10.0.0.5", "gw:10.0.0.1", "v6:::1"]))
        }),
        ("extra_hosts map", "extra_hosts:\n  db.local: 10.0.0.5", "", |s| {
            assert_eq!(s.extra_hosts, strs(&["db.local:10.0.0.5"]))
        }),
        ("logging", "logging:\n  driver: json-file\n  options:\n    max-size: 10m\n    max-file: 3", "", |s| {
            assert_eq!(s.logging, Some(LoggingSpec { driver: Some("json-file".into()), options: map(&[("max-size", "10m"), ("max-file", "3")]) }))
        }),
        ("mem_limit and cpus as strings", "mem_limit: 512m\ncpus: \"0.5\"", "", |s| {
            assert_eq!(s.mem_limit, Some(512 << 20));
            assert_eq!(s.nano_cpus, Some(500_000_000));
        }),
        ("mem_limit and cpus as numbers", "mem_limit: 1073741824\ncpus: 2", "", |s| {
            assert_eq!(s.mem_limit, Some(1 << 30));
            assert_eq!(s.nano_cpus, Some(2_000_000_000));
        }),
        ("deploy resource limits", "deploy:\n  resources:\n    limits:\n      memory: 1g\n      cpus: '1.5'", "", |s| {
            assert_eq!(s.mem_limit, Some(1 << 30));
            assert_eq!(s.nano_cpus, Some(1_500_000_000));
        }),
        ("deploy limits equal to mem_limit", "mem_limit: 1g\ndeploy:\n  resources:\n    limits:\n      memory: 1024m", "", |s| {
            assert_eq!(s.mem_limit, Some(1 << 30))
        }),
        ("x- keys are ignored", "x-note: anything\nx-more:\n  deep: [1, 2]", "x-top: 1\n", |s| {
            assert_eq!(s.image, "img")
        }),
        ("depends_on list", "depends_on: [db]", "", |s| {
            assert_eq!(s.depends_on, BTreeMap::from([("db".to_string(), DependsCondition::Started)]))
        }),
        ("depends_on map", "depends_on:\n  db:\n    condition: service_completed_successfully", "", |s| {
            assert_eq!(s.depends_on, BTreeMap::from([("db".to_string(), DependsCondition::CompletedSuccessfully)]))
        }),
    ];
    for (name, body, top, check) in cases {
        eprintln!("case: {name}");
        // A second service, for depends_on to name.
        let body = format!("{body}\nx-unused: 0");
        let text = format!(
            "x-db: &db\n  image: db\nservices:\n  db: *db\n  api:\n    image: img\n{}\n{top}",
            body.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let vars = strict(&[("FROM_VARS", "v"), ("ALSO", "w")]);
        let spec = ok_with(&text, &[], &vars)
            .services
            .remove("api")
            .expect("api");
        check(&spec);
    }
}

#[test]
fn bare_environment_keys_take_stack_variables() {
    let svc = api_with(
        "environment:\n  - FROM_VARS\n  - ALSO=1",
        "",
        &[],
        &strict(&[("FROM_VARS", "v")]),
    );
    assert_eq!(svc.environment, env(&[("ALSO", "1"), ("FROM_VARS", "v")]));
    let svc = api_with(
        "environment:\n  FROM_VARS:",
        "",
        &[],
        &strict(&[("FROM_VARS", "v")]),
    );
    assert_eq!(svc.environment, env(&[("FROM_VARS", "v")]));
}

#[test]
fn env_file_then_environment() {
    let files = [
        ("compose/app/app.env", "A=from-file\nB=from-file\n"),
        ("compose/app/conf/more.env", "C=more\n"),
        ("shared/common.env", "D=common\n"),
    ];
    let vars = strict(&[("S", "from-secrets"), ("B", "secret-b")]);
    let svc = api_with(
        "env_file:\n  - .env\n  - ./app.env\n  - conf/more.env\n  - ../../shared/common.env\n  - path: ./optional.env\n    required: false\nenvironment:\n  B: from-environment",
        "",
        &files,
        &vars,
    );
    assert_eq!(
        svc.environment,
        env(&[
            ("A", "from-file"),
            ("B", "from-environment"),
            ("C", "more"),
            ("D", "common"),
            ("S", "from-secrets"),
        ])
    );
    assert_eq!(
        svc.repo_inputs.keys().collect::<Vec<_>>(),
        vec!["../../shared/common.env", "./app.env", "conf/more.env"]
    );
    // A later env file overrides an earlier one; the secrets file is just another one.
    let svc = api_with("env_file: [./app.env, .env]", "", &files, &vars);
    assert_eq!(svc.environment["B"].expose(), "secret-b");
    let svc = api_with("env_file: ./.env", "", &files, &vars);
    assert_eq!(
        svc.environment,
        env(&[("B", "secret-b"), ("S", "from-secrets")])
    );
}

#[test]
fn relative_binds_resolve_under_bind_root_and_hash_content() {
    let files = [
        ("compose/app/nginx.conf", "server {}"),
        ("compose/app/html/index.html", "<h1>hi</h1>"),
    ];
    let svc = api_with(
        "volumes:\n  - ./nginx.conf:/etc/nginx/nginx.conf:ro\n  - type: bind\n    source: html\n    target: /usr/share/nginx/html\n  - .:/stack",
        "",
        &files,
        &strict(&[]),
    );
    // Each is served from its content-addressed copy, `<bind_root>/<content id>/<name>`.
    let id = |k: &str| svc.repo_inputs[k].clone();
    assert_eq!(
        svc.volumes,
        vec![
            MountSpec::Bind {
                source: format!("/var/lib/gitmoor/binds/{}/nginx.conf", id("./nginx.conf")),
                target: "/etc/nginx/nginx.conf".into(),
                read_only: true,
            },
            MountSpec::Bind {
                source: format!("/var/lib/gitmoor/binds/{}/html", id("html")),
                target: "/usr/share/nginx/html".into(),
                read_only: false,
            },
            MountSpec::Bind {
                source: format!("/var/lib/gitmoor/binds/{}/app", id(".")),
                target: "/stack".into(),
                read_only: false,
            },
        ]
    );
    let mut copied: Vec<_> = svc.repo_copies.values().collect();
    copied.sort();
    assert_eq!(
        copied,
        ["compose/app", "compose/app/html", "compose/app/nginx.conf"]
    );
    assert_eq!(
        svc.repo_inputs.keys().collect::<Vec<_>>(),
        vec![".", "./nginx.conf", "html"]
    );
    // The hash follows the file's content.
    let changed = api_with(
        "volumes:\n  - ./nginx.conf:/etc/nginx/nginx.conf:ro",
        "",
        &[("compose/app/nginx.conf", "server { listen 81; }")],
        &strict(&[]),
    );
    assert_ne!(
        changed.repo_inputs["./nginx.conf"],
        svc.repo_inputs["./nginx.conf"]
    );
}

#[test]
fn anchors_and_merge_keys_share_settings() {
    let text = r#"x-common: &common
  restart: unless-stopped
  logging:
    driver: json-file
  environment: &env
    TZ: UTC
services:
  a:
    <<: *common
    image: a
  b:
    <<: *common
    image: b
    restart: always
    environment:
      <<: *env
      EXTRA: "1"
"#;
    let spec = ok_with(text, &[], &strict(&[]));
    assert_eq!(
        spec.services["a"].restart.as_deref(),
        Some("unless-stopped")
    );
    assert_eq!(spec.services["b"].restart.as_deref(), Some("always"));
    assert_eq!(spec.services["a"].environment, env(&[("TZ", "UTC")]));
    assert_eq!(
        spec.services["b"].environment,
        env(&[("EXTRA", "1"), ("TZ", "UTC")])
    );
    assert_eq!(
        spec.services["a"]
            .logging
            .as_ref()
            .and_then(|l| l.driver.as_deref()),
        Some("json-file")
    );
}

#[test]
fn top_level_networks_volumes_name_and_version() {
    let text = "version: \"3.8\"\nname: app\nservices:\n  api:\n    image: img\n    volumes: [cache:/cache]\nnetworks:\n  default:\n    labels:\n      team: core\n  x-unused: {}\nvolumes:\n  cache:\n    labels: [keep=yes]\n  x-ignored:\n    driver: whatever\nx-anything:\n  foo: bar\n";
    let (spec, f) = load(text);
    assert!(f.errors.is_empty(), "{:#?}", f.errors);
    let spec = spec.expect("spec");
    let warnings: Vec<String> = f.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        vec![format!(
            "{FILE}:1: version: obsolete (compose v2 ignores it); remove it"
        )]
    );
    assert_eq!(spec.networks.keys().collect::<Vec<_>>(), vec!["default"]);
    assert_eq!(spec.networks["default"].name, "app_default");
    assert_eq!(spec.networks["default"].labels["team"], "core");
    assert_eq!(
        spec.networks["default"].labels["com.docker.compose.network"],
        "default"
    );
    assert_eq!(spec.volumes["cache"].labels["keep"], "yes");
    assert_eq!(spec.volumes["cache"].labels["io.gitmoor.managed"], "true");
    assert_eq!(spec.volumes.len(), 1);
    assert!(spec.services["api"].labels.is_empty());
}

#[test]
fn interpolation_applies_to_values_not_keys() {
    let vars = strict(&[
        ("TAG", "1.2"),
        ("PORT", "8080"),
        ("RO", "true"),
        ("K", "nope"),
    ]);
    // A key holding `$` is refused (tests_names); `$$` in a value is a literal `$`.
    let text = "services:\n  api:\n    image: \"img:${TAG}\"\n    ports: [\"${PORT}:80\"]\n    read_only: ${RO}\n    labels:\n      K: $$literal\n";
    let spec = ok_with(text, &[], &vars);
    let api = &spec.services["api"];
    assert_eq!(api.image, "img:1.2");
    assert_eq!(api.ports[0].host_port, Some(8080));
    assert!(api.read_only);
    assert_eq!(api.labels, map(&[("K", "$literal")]));
}

#[test]
fn default_network_only_when_used() {
    let text =
        "services:\n  a:\n    image: a\n    networks: [n]\n  b:\n    image: b\nnetworks:\n  n:\n";
    let spec = ok_with(text, &[], &strict(&[]));
    assert_eq!(
        spec.networks.keys().collect::<Vec<_>>(),
        vec!["default", "n"]
    );
    assert_eq!(
        spec.services["b"].networks.keys().collect::<Vec<_>>(),
        vec!["default"]
    );
    let text = "services:\n  a:\n    image: a\n    networks: [n, default]\nnetworks:\n  n:\n";
    let spec = ok_with(text, &[], &strict(&[]));
    assert_eq!(spec.networks["default"].name, "app_default");
}

#[test]
fn a_relative_bind_not_in_the_commit_is_the_stacks_data_folder() {
    let files = [("compose/app/html/index.html", "hi")];
    let (spec, f) = load_with(
        "app",
        "services:\n  db:\n    image: x\n    volumes:\n      - ./pgdata:/var/lib/postgresql/data\n      - ./docker-data/dms/mail-state/:/state:z\n      - ./html/uploads:/up\n      - ./html:/www:ro\n",
        &files,
        &strict(&[]),
    );
    let errors: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let db = &spec.expect("spec").services["db"];
    let host = |p: &str| format!("/var/lib/gitmoor/data/app/{p}");
    assert_eq!(
        db.data_folders,
        BTreeMap::from([
            (
                "./docker-data/dms/mail-state/".to_string(),
                host("docker-data/dms/mail-state")
            ),
            ("./html/uploads".to_string(), host("html/uploads")),
            ("./pgdata".to_string(), host("pgdata")),
        ])
    );
    assert_eq!(
        db.volumes[0],
        MountSpec::Bind {
            source: host("pgdata"),
            target: "/var/lib/postgresql/data".into(),
            read_only: false,
        }
    );
    assert_eq!(db.bind_selinux["/state"], "z");
    // Data folders are not repo files: no content hash, no copy, no warning about writes.
    assert_eq!(db.repo_inputs.keys().collect::<Vec<_>>(), ["./html"]);
    assert_eq!(db.repo_copies.len(), 1);
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);

    // `..` out of the stack folder is refused, for a data folder as for a repo path.
    let (_, f) = load_with(
        "app",
        "services:\n  db:\n    image: x\n    volumes:\n      - ./data/../../other/data:/d\n",
        &[],
        &strict(&[]),
    );
    assert!(
        f.errors
            .iter()
            .any(|e| e.to_string().contains("leaves the stack folder")),
        "{:?}",
        f.errors
    );
}

#[test]
fn a_writable_repo_bind_is_warned_about() {
    let files = [("compose/app/conf/a.conf", "x")];
    let (_, f) = load_with(
        "app",
        "services:\n  web:\n    image: x\n    volumes:\n      - ./conf:/conf\n      - ./conf/a.conf:/a.conf:ro\n",
        &files,
        &strict(&[]),
    );
    let warnings: Vec<String> = f.warnings.iter().map(|e| e.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("services.web.volumes[0]")
            && warnings[0].contains("`./conf` is a repo folder mounted writable")
            && warnings[0].contains("mount it read-only"),
        "{warnings:?}"
    );
}

/// Data folders must not nest (a container mounting the outer one writable could swap the inner
/// one for a link that Docker follows on the host), and are bounded in number and depth.
#[test]
fn data_folders_do_not_nest_and_are_bounded() {
    let (spec, f) = load_with(
        "app",
        "services:\n  a:\n    image: x\n    volumes: [./data:/data, ./logs:/logs]\n  b:\n    image: x\n    volumes: [./data/sub:/sub, ./logs:/logs2]\n",
        &[],
        &strict(&[]),
    );
    assert!(spec.is_none());
    let errors: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors.len(),
        1,
        "the same folder twice is fine: {errors:#?}"
    );
    assert!(
        errors[0].contains("services.b.volumes")
            && errors[0].contains("`./data/sub` lies inside data folder `./data` (service a)"),
        "{errors:#?}"
    );

    let deep = format!("./{}:/x", ["d"; 9].join("/"));
    let (spec, f) = load_with(
        "app",
        &format!("services:\n  a:\n    image: x\n    volumes: [\"{deep}\"]\n"),
        &[],
        &strict(&[]),
    );
    assert!(spec.is_none());
    assert!(format!("{:?}", f.errors).contains("9 folders deep; at most 8"));

    let many: Vec<String> = (0..101).map(|i| format!("./d{i}:/d{i}")).collect();
    let (spec, f) = load_with(
        "app",
        &format!(
            "services:\n  a:\n    image: x\n    volumes: [{}]\n",
            many.join(", ")
        ),
        &[],
        &strict(&[]),
    );
    assert!(spec.is_none());
    assert!(
        format!("{:?}", f.errors).contains("101 data folders"),
        "{:?}",
        f.errors
    );
}
