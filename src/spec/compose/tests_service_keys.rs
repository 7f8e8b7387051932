//! The service and top-level keys real compose files use (issue #8): what each turns into,
//! joining another service's namespaces, networks and volumes, profiles, extension fields and
//! anchors everywhere, hashes that stay put, `version`/`name`, keys made of interpolated values.

use super::tests::{api_with, map, ok_with, strict, strs, FILE};
use super::tests_build::DOCKERFILE;
use super::tests_secrets_configs::load_full;
use super::*;
use crate::spec::model::{
    DependsCondition, DeviceSpec, IpamPool, IpamSpec, MountSpec, PullPolicy, ServiceSpec,
    UlimitSpec,
};

fn api(body: &str) -> ServiceSpec {
    api_with(body, "", &[], &strict(&[]))
}

#[test]
fn container_keys() {
    type Check = fn(&ServiceSpec);
    let cases: Vec<(&str, Check)> = vec![
        ("container_name: my-api", |s| {
            assert_eq!(s.container_name.as_deref(), Some("my-api"))
        }),
        ("expose: [5432, \"8000-8001\", 53/udp]", |s| {
            assert_eq!(s.expose, strs(&["5432/tcp", "8000/tcp", "8001/tcp", "53/udp"]))
        }),
        ("hostname: web1\ndomainname: example.org", |s| {
            assert_eq!(
                (s.hostname.as_deref(), s.domainname.as_deref()),
                (Some("web1"), Some("example.org"))
            )
        }),
        ("stop_signal: SIGINT\nstop_grace_period: 1m30s", |s| {
            assert_eq!(s.stop_signal.as_deref(), Some("SIGINT"));
            assert_eq!(s.stop_grace_period, Some(90));
        }),
        ("stop_grace_period: 500ms", |s| {
            assert_eq!(s.stop_grace_period, Some(1), "rounded up to a second")
        }),
        ("sysctls:\n  net.core.somaxconn: 1024\n  net.ipv4.tcp_syncookies: 0", |s| {
            assert_eq!(
                s.sysctls,
                map(&[("net.core.somaxconn", "1024"), ("net.ipv4.tcp_syncookies", "0")])
            )
        }),
        ("sysctls:\n  - net.ipv4.conf.all.src_valid_mark=1", |s| {
            assert_eq!(s.sysctls, map(&[("net.ipv4.conf.all.src_valid_mark", "1")]))
        }),
        ("ulimits:\n  nproc: 65535\n  nofile:\n    soft: 20000\n    hard: 40000", |s| {
            assert_eq!(s.ulimits["nproc"], UlimitSpec { soft: 65535, hard: 65535 });
            assert_eq!(s.ulimits["nofile"], UlimitSpec { soft: 20000, hard: 40000 });
        }),
        ("init: true\nshm_size: 256m\nprivileged: true", |s| {
            assert_eq!(s.init, Some(true));
            assert_eq!(s.shm_size, Some(256 << 20));
            assert!(s.privileged);
        }),
        ("shm_size: 1073741824", |s| assert_eq!(s.shm_size, Some(1 << 30))),
        ("network_mode: host", |s| {
            assert_eq!(s.network_mode.as_deref(), Some("host"));
            assert!(s.networks.is_empty(), "network_mode: no networks");
        }),
        ("network_mode: none", |s| {
            assert_eq!(s.network_mode.as_deref(), Some("none"));
            assert!(s.networks.is_empty());
        }),
        ("network_mode: container:vpn", |s| {
            assert_eq!(s.network_mode.as_deref(), Some("container:vpn"))
        }),
        ("pid: host\nipc: host", |s| {
            assert_eq!((s.pid.as_deref(), s.ipc.as_deref()), (Some("host"), Some("host")))
        }),
        ("devices:\n  - /dev/fuse\n  - /dev/ttyUSB0:/dev/ttyACM0\n  - /dev/sda:/dev/xvda:r\n  - /dev/kvm:rw", |s| {
            let d = |h: &str, c: &str, p: &str| DeviceSpec {
                host: h.into(),
                container: c.into(),
                permissions: p.into(),
            };
            assert_eq!(
                s.devices,
                vec![
                    d("/dev/fuse", "/dev/fuse", "rwm"),
                    d("/dev/ttyUSB0", "/dev/ttyACM0", "rwm"),
                    d("/dev/sda", "/dev/xvda", "r"),
                    d("/dev/kvm", "/dev/kvm", "rw"),
                ]
            )
        }),
        ("dns: 1.1.1.1\ndns_search: example.org\ndns_opt: [\"ndots:2\"]", |s| {
            assert_eq!(s.dns, strs(&["1.1.1.1"]));
            assert_eq!(s.dns_search, strs(&["example.org"]));
            assert_eq!(s.dns_opt, strs(&["ndots:2"]));
        }),
        ("dns: [8.8.8.8, 9.9.9.9]", |s| assert_eq!(s.dns, strs(&["8.8.8.8", "9.9.9.9"]))),
        ("security_opt: [\"no-new-privileges:true\", \"apparmor:unconfined\"]", |s| {
            assert_eq!(s.security_opt, strs(&["no-new-privileges:true", "apparmor:unconfined"]))
        }),
        ("platform: linux/amd64\ngroup_add: [audio, 1000]", |s| {
            assert_eq!(s.platform.as_deref(), Some("linux/amd64"));
            assert_eq!(s.group_add, strs(&["audio", "1000"]));
        }),
        ("stdin_open: true\ntty: true\nruntime: runc", |s| {
            assert!(s.stdin_open && s.tty);
            assert_eq!(s.runtime.as_deref(), Some("runc"));
        }),
        ("pull_policy: always", |s| assert_eq!(s.pull_policy, PullPolicy::Always)),
        ("pull_policy: if_not_present", |s| assert_eq!(s.pull_policy, PullPolicy::Missing)),
        ("pull_policy: never", |s| assert_eq!(s.pull_policy, PullPolicy::Never)),
        ("x-notes: anything\nlabels:\n  x-team: ops", |s| {
            assert_eq!(s.labels, map(&[("x-team", "ops")]), "a label named x-… is data")
        }),
    ];
    for (body, check) in cases {
        check(&api(body));
    }
    let s = api("");
    assert_eq!(s.pull_policy, PullPolicy::Missing);
    assert_eq!(s.network_mode, None);
}

#[test]
fn joining_another_service_uses_its_container_and_starts_after_it() {
    let text = "services:\n  vpn:\n    image: v\n    container_name: the-vpn\n  app:\n    image: a\n    network_mode: \"service:vpn\"\n  debug:\n    image: d\n    pid: service:app\n    ipc: service:app\n    depends_on:\n      app:\n        condition: service_healthy\n";
    let spec = ok_with(text, &[], &strict(&[]));
    let app = &spec.services["app"];
    assert_eq!(app.network_mode.as_deref(), Some("container:the-vpn"));
    assert!(app.networks.is_empty());
    assert_eq!(app.depends_on["vpn"], DependsCondition::Started);
    let debug = &spec.services["debug"];
    assert_eq!(debug.pid.as_deref(), Some("container:app-app-1"));
    assert_eq!(debug.ipc.as_deref(), Some("container:app-app-1"));
    assert_eq!(
        debug.depends_on["app"],
        DependsCondition::Healthy,
        "an explicit condition is kept"
    );
}

#[test]
fn joining_a_siblings_container_by_name_is_a_join_too() {
    let text = "services:\n  vpn:\n    image: v\n    container_name: the-vpn\n  app:\n    image: a\n    network_mode: container:the-vpn\n  debug:\n    image: d\n    pid: container:app-app-1\n    ipc: container:app-app-1\n  other:\n    image: o\n    network_mode: container:not-ours\n";
    let spec = ok_with(text, &[], &strict(&[]));
    let app = &spec.services["app"];
    assert_eq!(app.network_mode.as_deref(), Some("container:the-vpn"));
    assert_eq!(app.depends_on["vpn"], DependsCondition::Started);
    let debug = &spec.services["debug"];
    assert_eq!(debug.pid.as_deref(), Some("container:app-app-1"));
    assert_eq!(debug.depends_on["app"], DependsCondition::Started);
    let other = &spec.services["other"];
    assert_eq!(other.network_mode.as_deref(), Some("container:not-ours"));
    assert!(other.depends_on.is_empty(), "a container of no service");
    assert_eq!(
        crate::plan::topo_order(&spec),
        vec!["other", "vpn", "app", "debug"]
    );
    let (spec, findings) = super::tests::load(
        "services:\n  app:\n    image: a\n    container_name: me\n    network_mode: container:me\n",
    );
    assert!(spec.is_none());
    assert!(
        format!("{findings:?}").contains("a service cannot join itself"),
        "{findings:?}"
    );
}

#[test]
fn networks_and_volumes_with_drivers_names_and_external() {
    let top = r#"networks:
  front:
    driver: bridge
    driver_opts:
      com.docker.network.bridge.name: br-front
      com.docker.network.driver.mtu: 1450
    ipam:
      driver: default
      config:
        - subnet: 172.28.0.0/16
          ip_range: 172.28.5.0/24
          gateway: 172.28.5.254
    attachable: true
    labels: [tier=front]
  shared:
    external: true
    name: proxy
  old:
    external:
      name: legacy-net
  named:
    name: custom-net
volumes:
  data:
    driver: local
    driver_opts:
      type: none
      o: bind
      device: /srv/data
  ext:
    external: true
  renamed:
    name: my-data
"#;
    let body = "networks:\n  front:\n    ipv4_address: 172.28.5.10\n    aliases: [www]\n  shared: {}\nvolumes:\n  - data:/data\n  - ext:/ext\n  - renamed:/r";
    let text = format!("services:\n  api:\n    image: img\n{}\n{top}", indent(body));
    let (spec, f) = tests::load_with("app", &text, &[], &strict(&[]));
    let spec = spec.unwrap_or_else(|| panic!("{:#?}", f.errors));
    assert_eq!(
        f.warnings.len(),
        1,
        "legacy external: {{name}}: {:#?}",
        f.warnings
    );
    let front = &spec.networks["front"];
    assert_eq!(front.name, "app_front");
    assert_eq!(front.driver.as_deref(), Some("bridge"));
    assert_eq!(
        front.driver_opts,
        map(&[
            ("com.docker.network.bridge.name", "br-front"),
            ("com.docker.network.driver.mtu", "1450")
        ])
    );
    assert_eq!(
        front.ipam,
        Some(IpamSpec {
            driver: Some("default".into()),
            config: vec![IpamPool {
                subnet: Some("172.28.0.0/16".into()),
                ip_range: Some("172.28.5.0/24".into()),
                gateway: Some("172.28.5.254".into()),
            }],
            options: Default::default(),
        })
    );
    assert!(front.attachable && !front.external);
    assert_eq!(front.labels.get("tier").map(String::as_str), Some("front"));
    assert_eq!(
        front.labels.get(crate::labels::PROJECT).map(String::as_str),
        Some("app")
    );
    let shared = &spec.networks["shared"];
    assert!(shared.external && shared.labels.is_empty());
    assert_eq!(shared.name, "proxy");
    assert_eq!(spec.networks["old"].name, "legacy-net");
    assert!(spec.networks["old"].external);
    assert_eq!(spec.networks["named"].name, "custom-net");
    assert!(!spec.networks["named"].external);

    let data = &spec.volumes["data"];
    assert_eq!(data.driver.as_deref(), Some("local"));
    assert_eq!(data.driver_opts["device"], "/srv/data");
    assert_eq!(spec.volumes["ext"].name, "ext");
    assert!(spec.volumes["ext"].external);
    assert_eq!(spec.volumes["renamed"].name, "my-data");

    let api = &spec.services["api"];
    assert_eq!(
        api.networks["front"].ipv4_address.as_deref(),
        Some("172.28.5.10")
    );
    assert_eq!(api.networks["front"].aliases, strs(&["api", "www"]));
    let sources: Vec<String> = api
        .volumes
        .iter()
        .map(|m| match m {
            MountSpec::Volume { source, .. } | MountSpec::Bind { source, .. } => source.clone(),
        })
        .collect();
    assert_eq!(sources, strs(&["app_data", "ext", "my-data"]));
}

#[test]
fn the_default_network_can_be_an_external_one() {
    let text = "services:\n  api:\n    image: img\nnetworks:\n  default:\n    name: traefik\n    external: true\n";
    let spec = ok_with(text, &[], &strict(&[]));
    assert_eq!(spec.networks["default"].name, "traefik");
    assert!(spec.networks["default"].external);
    assert!(spec.services["api"].networks.contains_key("default"));
}

pub(super) fn indent(body: &str) -> String {
    body.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const PROFILES: &str = r#"services:
  web:
    image: nginx
  debug:
    image: busybox
    profiles: [debug]
    environment:
      TOKEN: ${DEBUG_TOKEN}
  admin:
    image: adminer
    profiles: [tools, debug]
    depends_on: [web]
"#;

/// Flow style puts services on one line: the warning for the service left out by its profile
/// (first) must not hide the error for the active one (after it) on the same line.
#[test]
fn a_profiled_out_service_on_the_same_line_does_not_hide_an_active_ones_missing_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flow = "services: {dbg: {image: \"busybox:${TAG}\", profiles: [debug]}, web: {image: \"busybox:${TAG}\"}}\n";
    let (spec, f) = load_full(flow, &[], Some(dir.path()), &[]);
    assert!(spec.is_none(), "web misses TAG: {:#?}", f.warnings);
    assert!(
        f.errors
            .iter()
            .any(|e| e.key.as_deref() == Some("services.web.image")),
        "{:#?}",
        f.errors
    );
    assert!(
        f.warnings
            .iter()
            .any(|w| w.key.as_deref() == Some("services.dbg.image")),
        "{:#?}",
        f.warnings
    );
}

#[test]
fn profiles_decide_which_services_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |profiles: &[&str]| {
        let profiles: Vec<String> = profiles.iter().map(|p| p.to_string()).collect();
        let (spec, f) = load_full(PROFILES, &[], Some(dir.path()), &profiles);
        (spec, f)
    };
    let (spec, f) = run(&[]);
    let spec = spec.unwrap_or_else(|| panic!("{:#?}", f.errors));
    assert_eq!(spec.services.keys().collect::<Vec<_>>(), vec!["web"]);
    assert_eq!(spec.inactive_services["debug"], strs(&["debug"]));
    assert_eq!(spec.inactive_services["admin"], strs(&["tools", "debug"]));
    assert!(
        f.warnings
            .iter()
            .any(|w| w.key.as_deref() == Some("services.debug.environment.TOKEN")),
        "a variable an inactive service misses is a warning: {:#?}",
        f.warnings
    );

    let (spec, _) = run(&["tools"]);
    let spec = spec.expect("spec");
    assert_eq!(
        spec.services.keys().collect::<Vec<_>>(),
        vec!["admin", "web"]
    );

    let (spec, f) = run(&["debug"]);
    assert!(spec.is_none(), "debug runs now, and DEBUG_TOKEN is not set");
    assert_eq!(
        f.errors[0].key.as_deref(),
        Some("services.debug.environment.TOKEN")
    );
    let (_, f) = run(&["*"]);
    assert_eq!(f.errors.len(), 1, "`*` enables every profile");
}

#[test]
fn extension_fields_anchors_and_merge_keys_everywhere() {
    let text = r#"x-logging: &logging
  driver: json-file
  options:
    max-size: 10m
x-common: &common
  restart: unless-stopped
  logging: *logging
  x-owner: ops
x-healthcheck: &hc
  interval: 10s
  x-note: shared
services:
  x-not-a-service:
    image: nope
  api:
    <<: *common
    image: app:1
    build:
      context: .
      x-cache: local
    healthcheck:
      <<: *hc
      test: ["CMD-SHELL", "wget -qO- http://localhost:$${PORT:-80}/health || exit 1"]
    ports:
      - target: 80
        published: 8080
        x-proxy: yes
    volumes:
      - type: volume
        source: data
        target: /data
        x-backup: daily
    networks:
      front:
        x-role: edge
    deploy:
      x-hint: none
    secrets:
      - source: token
        x-rotate: monthly
  worker:
    <<: [*common]
    image: app:1
    restart: always
networks:
  x-ignored: {}
  front:
    <<: {driver: bridge}
    x-zone: dmz
volumes:
  data:
    x-size: 10g
secrets:
  token:
    file: token.txt
    x-vault: kv/app
configs:
  x-nothing: {}
"#;
    let files = [("compose/app/Dockerfile", DOCKERFILE)];
    let (spec, f) = load_full(text, &files, None, &[]);
    let spec = spec.unwrap_or_else(|| panic!("{:#?}", f.errors));
    let api = &spec.services["api"];
    assert_eq!(api.restart.as_deref(), Some("unless-stopped"));
    assert_eq!(
        api.logging
            .as_ref()
            .and_then(|l| l.driver.clone())
            .as_deref(),
        Some("json-file")
    );
    let hc = api.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(
        hc.test,
        strs(&[
            "CMD-SHELL",
            "wget -qO- http://localhost:${PORT:-80}/health || exit 1"
        ]),
        "$$ is a literal $ for the container's shell"
    );
    assert_eq!(hc.interval_ns, Some(10_000_000_000));
    assert_eq!(
        spec.services["worker"].restart.as_deref(),
        Some("always"),
        "a key of the mapping wins over the merged one"
    );
    assert_eq!(spec.networks["front"].driver.as_deref(), Some("bridge"));
    assert!(!spec.services.contains_key("x-not-a-service"));
    assert!(!spec.networks.contains_key("x-ignored"));
}

/// A service that uses none of the keys added for issue #8 serialises exactly as before, so its
/// config hash does not change and upgrading gitmoor recreates nothing.
#[test]
fn hashes_of_services_without_new_keys_do_not_change() {
    let text =
        "services:\n  api:\n    image: img:1\n    networks: [front]\nnetworks:\n  front: {}\n";
    let spec = ok_with(text, &[], &strict(&[]));
    let json = serde_json::to_string(&spec.services["api"]).expect("json");
    assert_eq!(
        json,
        r#"{"image":"img:1","command":null,"entrypoint":null,"environment":{},"ports":[],"volumes":[],"networks":{"front":{"aliases":["api"]}},"depends_on":{},"healthcheck":null,"restart":null,"labels":{},"user":null,"working_dir":null,"cap_add":[],"cap_drop":[],"read_only":false,"tmpfs":{},"extra_hosts":[],"logging":null,"mem_limit":null,"nano_cpus":null,"repo_inputs":{}}"#
    );
    let net = serde_json::to_string(&spec.networks["front"]).expect("json");
    assert_eq!(
        net,
        r#"{"name":"app_front","internal":false,"labels":{"com.docker.compose.network":"front","com.docker.compose.project":"app","io.gitmoor.managed":"true"}}"#
    );
    // And each new key shows up in it (so changing it recreates the service).
    let with = api("container_name: xy\ninit: true\nsysctls: {a.b: 1}");
    let json = serde_json::to_string(&with).expect("json");
    for k in [
        "\"container_name\":\"xy\"",
        "\"init\":true",
        "\"sysctls\":{\"a.b\":\"1\"}",
    ] {
        assert!(json.contains(k), "{k} in {json}");
    }
}

#[test]
fn version_warns_and_name_must_match_the_folder() {
    let (spec, f) = tests::load_with(
        "app",
        "version: '3.8'\nname: app\nservices:\n  a:\n    image: x\n",
        &[],
        &strict(&[]),
    );
    assert!(spec.is_some());
    assert_eq!(
        f.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        vec![format!(
            "{FILE}:1: version: obsolete (compose v2 ignores it); remove it"
        )]
    );
}

/// Found by the fuzzer: a key built from an interpolated value (a list entry of `environment:`)
/// must not carry a value of the secrets file either: it is refused before interpolation.
#[test]
fn keys_made_of_interpolated_values_are_refused() {
    let text = "services:\n  app:\n    image: x\n    environment:\n      - \"${DB_PASSWORD}\"\n";
    let vars = strict(&[("DB_PASSWORD", "hunter2-secret")]);
    let (spec, f) = tests::load_with("app", text, &[], &vars);
    assert!(spec.is_none());
    let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![format!("{FILE}:5: services.app.environment[0]: the variable name `${{DB_PASSWORD}}` is interpolated: a name must be written in the file, or a value of the secrets file could become a name shown in labels, plans and logs; write the name itself: `DB_PASSWORD=${{DB_PASSWORD}}`, or a bare `DB_PASSWORD` (which takes the stack variable DB_PASSWORD)")]
    );
}
