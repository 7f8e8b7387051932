//! The keys real compose files use, end to end on the real dockerd: a compose file is read by the
//! spec loader, each service becomes a Docker create body, and the running container shows the
//! effect docker compose gives the key (name, hostname, init, sysctls, ulimits, secrets and configs
//! mounted read-only, a static address, shared network namespaces).
//!
//! Networks are made here from their spec (driver, IPAM) with bollard, as the network executor is
//! to make them; containers go through `DockerExecutor::create_container`. Every test owns a
//! uniquely named stack, and a guard removes what it made. What only shows across two commits (a
//! joiner recreated with the service it joins) goes through `gitmoor apply` on a real remote.

mod support;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use gitmoor::apply::docker::DockerExecutor;
use gitmoor::labels;
use gitmoor::plan::{topo_order, ContainerToCreate};
use gitmoor::source::snapshot::Snapshot;
use gitmoor::spec::load::{load_host_spec, LoadOptions};
use gitmoor::spec::model::{NetworkSpec, StackSpec};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{docker, inspect, unique, StackGuard};

/// A stack deployed for a test: its containers by service, and the temp dirs it reads.
struct Deployed {
    ids: BTreeMap<String, String>,
    stack: StackSpec,
    _dir: tempfile::TempDir,
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

async fn create_network(ex: &DockerExecutor, net: &NetworkSpec) -> Result<(), String> {
    let ipam = net.ipam.as_ref().map(|i| Ipam {
        driver: i.driver.clone(),
        config: Some(
            i.config
                .iter()
                .map(|p| IpamConfig {
                    subnet: p.subnet.clone(),
                    ip_range: p.ip_range.clone(),
                    gateway: p.gateway.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        options: None,
    });
    let request = NetworkCreateRequest {
        name: net.name.clone(),
        driver: Some(net.driver.clone().unwrap_or_else(|| "bridge".into())),
        internal: Some(net.internal),
        attachable: Some(net.attachable),
        ipam,
        options: Some(net.driver_opts.clone().into_iter().collect()),
        labels: Some(net.labels.clone().into_iter().collect()),
        ..Default::default()
    };
    ex.docker
        .create_network(request)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads `compose/<stack>/compose.yaml` (plus `files` of the repo and `secrets` of the host's
/// secrets dir) through the spec loader, then makes the stack: networks, volumes, containers in
/// dependency order, started.
async fn deploy(
    ex: &DockerExecutor,
    stack: &str,
    compose: &str,
    files: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> Result<Deployed, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let secrets_dir = dir.path().join("secrets");
    let bind_root = dir.path().join("stacks");
    write(&repo, &format!("compose/{stack}/compose.yaml"), compose);
    for (p, c) in files {
        write(&repo, &format!("compose/{stack}/{p}"), c);
    }
    std::fs::create_dir_all(&secrets_dir).expect("mkdir");
    for (p, c) in secrets {
        // The stack's own folder of the secrets dir: the only place its `secrets:` are read.
        write(&secrets_dir, &format!("{stack}/{p}"), c);
    }
    let snap = Snapshot::from_dir(&repo).expect("snapshot");
    let opts = LoadOptions {
        secrets_dir: Some(secrets_dir),
        bind_root: bind_root.clone(),
        ..LoadOptions::default()
    };
    let (spec, findings) = load_host_spec(&snap, &opts);
    let mut spec = spec.ok_or_else(|| format!("{:#?}", findings.errors))?;
    gitmoor::apply::content::write_copies(&snap, &spec, &bind_root)
        .expect("copy the repo files the services mount");
    let stack_spec = spec.stacks.remove(stack).ok_or("no stack")?;
    for net in stack_spec.networks.values().filter(|n| !n.external) {
        create_network(ex, net).await?;
    }
    for vol in stack_spec.volumes.values().filter(|v| !v.external) {
        ex.ensure_volume(vol).await.map_err(|e| format!("{e:#}"))?;
    }
    let mut ids = BTreeMap::new();
    for name in topo_order(&stack_spec) {
        let svc = &stack_spec.services[&name];
        let labels = BTreeMap::from([
            (labels::PROJECT.to_string(), stack.to_string()),
            (labels::SERVICE.to_string(), name.clone()),
            (labels::CONTAINER_NUMBER.to_string(), "1".to_string()),
            (labels::ONEOFF.to_string(), "False".to_string()),
            (labels::MANAGED.to_string(), "true".to_string()),
        ]);
        let c = ContainerToCreate {
            name: svc
                .container_name
                .clone()
                .unwrap_or_else(|| format!("{stack}-{name}-1")),
            stack: stack.to_string(),
            service: name.clone(),
            spec: svc.clone(),
            labels,
            networks: svc
                .networks
                .iter()
                .filter_map(|(k, a)| {
                    stack_spec
                        .networks
                        .get(k)
                        .map(|n| (n.name.clone(), a.aliases.clone()))
                })
                .collect(),
            wait_healthy: false,
            wait_completed: false,
        };
        let id = ex
            .create_container(&c)
            .await
            .map_err(|e| format!("{e:#}"))?;
        ex.start(&id).await.map_err(|e| format!("{e:#}"))?;
        ids.insert(name, id);
    }
    Ok(Deployed {
        ids,
        stack: stack_spec,
        _dir: dir,
    })
}

fn exec(id: &str, script: &str) -> String {
    docker(&["exec", id, "sh", "-c", script])
}

async fn executor() -> DockerExecutor {
    DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable on this host")
}

#[tokio::test]
async fn container_name_hostname_init_sysctls_ulimits_and_a_fast_stop() {
    let ex = executor().await;
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let compose = format!(
        r#"services:
  app:
    image: example-busybox:1
    container_name: {stack}-named
    command: ["sleep", "600"]
    hostname: box
    domainname: example.org
    init: true
    stop_grace_period: 20s
    sysctls:
      net.core.somaxconn: 1024
    ulimits:
      nofile:
        soft: 1024
        hard: 2048
    shm_size: 32m
    expose: ["7000"]
"#
    );
    let d = deploy(&ex, &stack, &compose, &[], &[])
        .await
        .expect("deploy");
    let id = &d.ids["app"];
    assert_eq!(inspect(id, "{{.Name}}"), format!("/{stack}-named"));
    assert_eq!(inspect(id, "{{.Config.Hostname}}"), "box");
    assert_eq!(inspect(id, "{{.Config.Domainname}}"), "example.org");
    assert_eq!(inspect(id, "{{.HostConfig.Init}}"), "true");
    assert_eq!(
        inspect(id, "{{.HostConfig.ShmSize}}"),
        (32 << 20).to_string()
    );
    assert_eq!(inspect(id, "{{.Config.StopTimeout}}"), "20");
    assert!(inspect(id, "{{json .Config.ExposedPorts}}").contains("7000/tcp"));
    assert_eq!(exec(id, "cat /proc/sys/net/core/somaxconn"), "1024");
    // The container's own processes (PID 1 here): what the service runs with. A `docker exec`
    // shell is not one of them (its limits come from the exec call, and were seen to differ).
    assert_eq!(
        inspect(
            id,
            "{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}}"
        ),
        "nofile=1024:2048"
    );
    let limits = exec(id, "grep 'open files' /proc/1/limits");
    assert_eq!(
        limits.split_whitespace().collect::<Vec<_>>(),
        ["Max", "open", "files", "1024", "2048", "files"],
        "{limits}"
    );
    assert_eq!(exec(id, "hostname"), "box");

    // With init, SIGTERM reaches `sleep` (not PID 1 any more): it stops at once, well before the
    // 20 s grace period that `docker stop` takes from the container.
    let start = Instant::now();
    docker(&["stop", id]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    assert_eq!(inspect(id, "{{.State.Running}}"), "false");
}

#[tokio::test]
async fn secrets_and_configs_are_mounted_read_only_where_compose_mounts_them() {
    let ex = executor().await;
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let compose = r#"services:
  app:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
    environment:
      DB_PASSWORD_FILE: /run/secrets/db_password
    secrets:
      - db_password
      - source: api_key
        target: api.txt
    configs:
      - app_conf
      - source: site
        target: /etc/site/site.conf
secrets:
  db_password:
    file: db/password.txt
  api_key:
    file: api.key
configs:
  app_conf:
    file: ./conf/app.conf
  site:
    file: conf/site.conf
"#;
    let files = [
        ("conf/app.conf", "key=value\n"),
        ("conf/site.conf", "server {}\n"),
    ];
    let secrets = [
        ("db/password.txt", "s3cret-from-the-host"),
        ("api.key", "k3y"),
    ];
    let d = deploy(&ex, &stack, compose, &files, &secrets)
        .await
        .expect("deploy");
    let id = &d.ids["app"];
    assert_eq!(
        exec(id, "cat /run/secrets/db_password"),
        "s3cret-from-the-host"
    );
    assert_eq!(exec(id, "cat /run/secrets/api.txt"), "k3y");
    assert_eq!(exec(id, "cat /app_conf"), "key=value");
    assert_eq!(exec(id, "cat /etc/site/site.conf"), "server {}");
    assert_eq!(
        exec(
            id,
            "echo x > /run/secrets/db_password 2>/dev/null && echo writable || echo read-only"
        ),
        "read-only"
    );
    assert_eq!(
        exec(
            id,
            "echo x > /app_conf 2>/dev/null && echo writable || echo read-only"
        ),
        "read-only"
    );
    // Only hashes of the secret files are kept, keyed by their host path.
    let inputs = serde_json::to_string(&d.stack.services["app"].repo_inputs).expect("json");
    assert!(inputs.contains("db/password.txt") && !inputs.contains("s3cret"));
}

#[tokio::test]
async fn a_static_ipv4_address_on_a_network_with_a_subnet() {
    let ex = executor().await;
    // A subnet no other network of this host uses: try a few.
    let mut last = String::new();
    for attempt in 0..8u32 {
        let stack = unique("gmk");
        let guard = StackGuard(stack.clone());
        let octet = (std::process::id() + attempt * 37) % 200 + 20;
        let compose = format!(
            r#"services:
  dns:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
    networks:
      dns-net:
        ipv4_address: 10.231.{octet}.53
        aliases: [resolver]
  client:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
    networks: [dns-net]
networks:
  dns-net:
    driver: bridge
    ipam:
      config:
        - subnet: 10.231.{octet}.0/24
          gateway: 10.231.{octet}.1
"#
        );
        match deploy(&ex, &stack, &compose, &[], &[]).await {
            Ok(d) => {
                let ip = inspect(
                    &d.ids["dns"],
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                );
                assert_eq!(ip, format!("10.231.{octet}.53"));
                let seen = exec(
                    &d.ids["client"],
                    "ping -c1 -W2 resolver >/dev/null && echo up",
                );
                assert_eq!(seen, "up", "the alias resolves on the network");
                drop(guard);
                return;
            }
            Err(e) if e.contains("overlap") || e.contains("Pool") => last = e,
            Err(e) => panic!("deploy: {e}"),
        }
    }
    panic!("no free 10.231.x.0/24 subnet: {last}");
}

#[tokio::test]
async fn network_mode_joins_another_service_or_none() {
    let ex = executor().await;
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let compose = r#"services:
  vpn:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
  app:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
    network_mode: service:vpn
  isolated:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
    network_mode: none
"#;
    let d = deploy(&ex, &stack, compose, &[], &[])
        .await
        .expect("deploy");
    let (vpn, app, isolated) = (&d.ids["vpn"], &d.ids["app"], &d.ids["isolated"]);
    let mac = |id: &str| exec(id, "cat /sys/class/net/eth0/address");
    assert!(!mac(vpn).is_empty());
    assert_eq!(mac(app), mac(vpn), "app shares vpn's network namespace");
    assert_eq!(exec(isolated, "ls /sys/class/net"), "lo");
    // Docker resolves `container:<name>` to the container's id at create time: when vpn is
    // recreated, app must be recreated too (the planner does it: see
    // `recreating_a_service_recreates_the_sidecar_in_its_network_namespace`).
    assert_eq!(
        inspect(app, "{{.HostConfig.NetworkMode}}"),
        format!("container:{vpn}")
    );
    assert!(d.stack.services["app"].depends_on.contains_key("vpn"));
}

/// `deploy.restart_policy` (Frappe's pwd.yml) is the container's restart policy, as docker
/// compose v2 gives it: `none` -> `no`, `any` -> `always`, `on-failure` with `max_attempts` as
/// the retry count, and it wins over `restart:`. The retry count is the engine's: a service that
/// fails is restarted that many times, then left exited.
#[tokio::test]
async fn deploy_restart_policy_is_the_containers_restart_policy() {
    let ex = executor().await;
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let compose = r#"services:
  once:
    image: example-busybox:1
    command: ["sh", "-c", "exit 0"]
    restart: always
    deploy:
      restart_policy:
        condition: none
  server:
    image: example-busybox:1
    init: true
    command: ["sleep", "600"]
    deploy:
      restart_policy:
        condition: any
        delay: 5s
  flaky:
    image: example-busybox:1
    command: ["sh", "-c", "exit 3"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 2
"#;
    let d = deploy(&ex, &stack, compose, &[], &[])
        .await
        .expect("deploy");
    let policy = |id: &str| {
        inspect(
            id,
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        )
    };
    assert_eq!(policy(&d.ids["once"]), "no:0");
    assert_eq!(policy(&d.ids["server"]), "always:0");
    assert_eq!(policy(&d.ids["flaky"]), "on-failure:2");
    // The engine retries twice, then leaves it exited.
    let flaky = &d.ids["flaky"];
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = || {
        inspect(
            flaky,
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
        )
    };
    while state() != "exited 2 3" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state(), "exited 2 3");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state(), "exited 2 3", "no third attempt");
    assert_eq!(inspect(&d.ids["once"], "{{.RestartCount}}"), "0");
}

/// web, a sidecar in web's network namespace, and an unrelated worker; `greeting` goes into
/// web's environment, `work` into the worker's.
fn joined_stack(greeting: &str, work: &str) -> String {
    format!(
        r#"services:
  web:
    image: example-busybox:1
    init: true
    stop_grace_period: 2s
    command: ["sleep", "600"]
    environment:
      GREETING: {greeting}
  sidecar:
    image: example-busybox:1
    init: true
    stop_grace_period: 2s
    command: ["sleep", "600"]
    network_mode: service:web
  worker:
    image: example-busybox:1
    init: true
    stop_grace_period: 2s
    command: ["sleep", "600"]
    environment:
      WORK: {work}
"#
    )
}

/// Through the whole reconcile (`gitmoor apply` on a real remote): Docker binds a joiner to the
/// joined container's id, so when web is recreated the sidecar must be recreated with it, into the
/// new web's namespace; a change elsewhere recreates neither.
#[tokio::test]
async fn recreating_a_service_recreates_the_sidecar_in_its_network_namespace() {
    use support::{container_id, output_text, Host, Remote};
    let stack = unique("gmk");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &joined_stack("hello", "one"));
    remote.commit("web with a sidecar");
    host.apply_ok();
    let ids = || {
        (
            container_id(&stack, "web"),
            container_id(&stack, "sidecar"),
            container_id(&stack, "worker"),
        )
    };
    let (web1, side1, worker1) = ids();
    assert!(!web1.is_empty() && !side1.is_empty() && !worker1.is_empty());
    assert_eq!(
        inspect(&side1, "{{.HostConfig.NetworkMode}}"),
        format!("container:{web1}")
    );

    remote.write(&file, &joined_stack("bonjour", "one"));
    remote.commit("web: new greeting");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(out.status.success(), "gitmoor apply failed:\n{text}");
    let (web2, side2, worker2) = ids();
    assert_ne!(web2, web1, "web is recreated:\n{text}");
    assert_ne!(side2, side1, "the sidecar is recreated with it:\n{text}");
    assert_eq!(worker2, worker1, "the worker is left alone:\n{text}");
    assert!(
        text.contains(&format!(
            "joins network of {stack}-web-1, which is recreated"
        )),
        "the plan says why the sidecar goes:\n{text}"
    );
    assert_eq!(inspect(&side2, "{{.State.Status}}"), "running");
    assert_eq!(
        inspect(&side2, "{{.HostConfig.NetworkMode}}"),
        format!("container:{web2}")
    );
    let mac = |id: &str| exec(id, "cat /sys/class/net/eth0/address");
    assert!(!mac(&web2).is_empty());
    assert_eq!(mac(&side2), mac(&web2), "the sidecar sees web's interface");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={stack}-")])
            .lines()
            .count(),
        3,
        "no container is left set aside"
    );

    remote.write(&file, &joined_stack("bonjour", "two"));
    remote.commit("worker: new work");
    host.apply_ok();
    let (web3, side3, worker3) = ids();
    assert_ne!(worker3, worker2, "the worker is recreated");
    assert_eq!(
        (web3, side3),
        (web2, side2),
        "web and its sidecar are left alone"
    );
}

/// Level-triggered repair of a joiner an apply left behind: web is recreated but the sidecar's
/// own recreate fails (here: the name it is set aside under is taken), so the sidecar is left
/// stopped, bound to the id of a web that no longer exists. The next apply recreates it, saying
/// why, into the current web's namespace; the one after that has nothing to do.
#[tokio::test]
async fn a_sidecar_left_bound_to_a_replaced_container_is_recreated_by_the_next_apply() {
    use support::{container_id, output_text, Host, Remote};
    let stack = unique("gmj");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &joined_stack("hello", "one"));
    remote.commit("web with a sidecar");
    host.apply_ok();
    let web1 = container_id(&stack, "web");
    let side1 = container_id(&stack, "sidecar");
    assert_eq!(
        inspect(&side1, "{{.HostConfig.NetworkMode}}"),
        format!("container:{web1}")
    );

    // Interrupt the apply between web's recreate and the sidecar's.
    let blocker = format!("{stack}-sidecar-1-gitmoor-old");
    let project = format!("com.docker.compose.project={stack}");
    docker(&[
        "create",
        "--name",
        &blocker,
        "--label",
        &project,
        "example-busybox:1",
    ]);
    remote.write(&file, &joined_stack("bonjour", "one"));
    remote.commit("web: new greeting");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "the sidecar's recreate fails:\n{text}"
    );
    let web2 = container_id(&stack, "web");
    assert_ne!(web2, web1, "web is recreated:\n{text}");
    assert_eq!(
        container_id(&stack, "sidecar"),
        side1,
        "the sidecar is left behind:\n{text}"
    );
    docker(&["rm", "-f", &blocker]);

    let text = host.apply_ok();
    assert!(
        text.contains(&format!(
            "joins network of {stack}-web-1, which is a different container now"
        )),
        "the plan says why the sidecar goes:\n{text}"
    );
    let side2 = container_id(&stack, "sidecar");
    assert_ne!(side2, side1, "the sidecar is recreated:\n{text}");
    assert_eq!(container_id(&stack, "web"), web2, "web is left alone");
    assert_eq!(inspect(&side2, "{{.State.Status}}"), "running");
    assert_eq!(
        inspect(&side2, "{{.HostConfig.NetworkMode}}"),
        format!("container:{web2}")
    );
    let mac = |id: &str| exec(id, "cat /sys/class/net/eth0/address");
    assert_eq!(mac(&side2), mac(&web2), "the sidecar sees web's interface");

    let text = host.apply_ok();
    assert_eq!(
        (container_id(&stack, "web"), container_id(&stack, "sidecar")),
        (web2, side2),
        "a further apply changes nothing:\n{text}"
    );
}

/// web and the sidecar are recreated in one apply, and the new sidecar cannot start: the old one
/// joined the web that was just removed, so it cannot be started again. It is not tried; it is
/// given its name back, stopped, and the error says it cannot come back. A fixed commit then
/// brings a sidecar up in the new web's namespace.
#[tokio::test]
async fn an_old_sidecar_whose_web_is_gone_is_not_restored() {
    use support::{container_id, output_text, Host, Remote};
    let stack = unique("gmr");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &joined_stack("hello", "one"));
    remote.commit("web with a sidecar");
    host.apply_ok();
    let side1 = container_id(&stack, "sidecar");

    // Without an init in front, a missing entrypoint fails the start itself.
    let broken = joined_stack("bonjour", "one")
        .replacen(
            "sidecar:\n    image: example-busybox:1\n    init: true",
            "sidecar:\n    image: example-busybox:1\n    init: false",
            1,
        )
        .replacen(
            "network_mode: service:web",
            "network_mode: service:web\n    entrypoint: [\"/no-such-binary\"]",
            1,
        );
    remote.write(&file, &broken);
    remote.commit("web: new greeting; sidecar: a broken entrypoint");
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "the new sidecar fails:\n{text}");
    assert!(
        text.contains("the previous container cannot come back")
            && text.contains("which no longer exists"),
        "the error says why the old sidecar stays down:\n{text}"
    );
    assert_eq!(
        container_id(&stack, "sidecar"),
        side1,
        "named back:\n{text}"
    );
    assert_ne!(inspect(&side1, "{{.State.Status}}"), "running");

    remote.write(&file, &joined_stack("bonjour", "one"));
    remote.commit("sidecar: fixed");
    let text = host.apply_ok();
    let (web, side) = (container_id(&stack, "web"), container_id(&stack, "sidecar"));
    assert_ne!(side, side1, "the sidecar is recreated:\n{text}");
    assert_eq!(inspect(&side, "{{.State.Status}}"), "running");
    assert_eq!(
        inspect(&side, "{{.HostConfig.NetworkMode}}"),
        format!("container:{web}")
    );
}
