//! The Docker executor and observer against the real dockerd on this host (API 1.41).
//!
//! Each test works in its own stack (random suffix) and a guard removes what it made, volumes
//! included, even when the test fails. Images: `example-busybox:1` (static busybox, built locally).

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListNetworksOptionsBuilder,
};
use gitmoor::apply::docker::DockerExecutor;
use gitmoor::labels;
use gitmoor::observe::docker::observe;
use gitmoor::observe::images::observe_images;
use gitmoor::plan::ContainerToCreate;
use gitmoor::spec::model::{
    HealthcheckSpec, IpamPool, IpamSpec, LoggingSpec, MountSpec, NetworkAttach, NetworkSpec,
    PortSpec, Secret, ServiceSpec, VolumeSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BUSYBOX: &str = "example-busybox:1";
const MS: i64 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A stack name no other test (or earlier run) uses.
fn unique_stack(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("gmt-{tag}-{:x}{nanos:x}{n}", std::process::id())
}

/// Removes everything a test made: containers, networks and volumes labelled with its stack,
/// plus extra containers and volumes it names (unmanaged ones, anonymous volumes).
struct Cleanup {
    stack: String,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Cleanup {
    fn new(stack: &str) -> Self {
        Self {
            stack: stack.to_string(),
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }
}

fn docker_cli(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={}={}", labels::PROJECT, self.stack);
        let mut containers: Vec<String> = docker_cli(&["ps", "-aq", "--filter", &filter])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        containers.extend(self.containers.iter().cloned());
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker_cli(&args);
        }
        for net in docker_cli(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
            docker_cli(&["network", "rm", net]);
        }
        let mut volumes: Vec<String> = docker_cli(&["volume", "ls", "-q", "--filter", &filter])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        volumes.extend(self.volumes.iter().cloned());
        for vol in &volumes {
            docker_cli(&["volume", "rm", "-f", vol]);
        }
    }
}

async fn executor() -> DockerExecutor {
    DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable on this host")
}

fn managed_labels(stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), stack.to_string()),
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::INSTANCE.to_string(), "docker-exec-test".to_string()),
    ])
}

fn network(stack: &str, key: &str, internal: bool) -> NetworkSpec {
    let mut labels = managed_labels(stack);
    labels.insert(labels::NETWORK.to_string(), key.to_string());
    NetworkSpec {
        name: format!("{stack}_{key}"),
        internal,
        labels,
        ..Default::default()
    }
}

fn volume(stack: &str, key: &str) -> VolumeSpec {
    let mut labels = managed_labels(stack);
    labels.insert(labels::VOLUME.to_string(), key.to_string());
    VolumeSpec {
        name: format!("{stack}_{key}"),
        labels,
        ..Default::default()
    }
}

fn container(
    stack: &str,
    service: &str,
    spec: ServiceSpec,
    networks: &[(&NetworkSpec, &[&str])],
) -> ContainerToCreate {
    let mut labels = managed_labels(stack);
    labels.insert(labels::SERVICE.to_string(), service.to_string());
    labels.insert(labels::CONTAINER_NUMBER.to_string(), "1".to_string());
    labels.insert(labels::ONEOFF.to_string(), "False".to_string());
    ContainerToCreate {
        name: format!("{stack}-{service}-1"),
        stack: stack.to_string(),
        service: service.to_string(),
        spec,
        labels,
        networks: networks
            .iter()
            .map(|(n, aliases)| {
                (
                    n.name.clone(),
                    aliases.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect(),
        wait_healthy: false,
        wait_completed: false,
    }
}

fn sh(script: &str) -> Option<Vec<String>> {
    Some(vec!["sh".into(), "-c".into(), script.into()])
}

/// busybox httpd on 8080 serving `hello-gitmoor`. As PID 1 it ignores SIGTERM: stop with grace 0.
fn web_spec() -> ServiceSpec {
    ServiceSpec {
        image: BUSYBOX.into(),
        command: sh(
            "mkdir -p /www && echo hello-gitmoor > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
        ..Default::default()
    }
}

fn healthcheck(test: &[&str], interval_ms: i64, retries: i64) -> Option<HealthcheckSpec> {
    Some(HealthcheckSpec {
        test: test.iter().map(|s| s.to_string()).collect(),
        interval_ns: Some(interval_ms * MS),
        timeout_ns: Some(2_000 * MS),
        retries: Some(retries),
        start_period_ns: None,
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// GET / on 127.0.0.1:port, retried for a few seconds while the server comes up.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.contains("200") => return body,
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("127.0.0.1:{port} did not answer 200: {last}");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn connect_explains_an_unreachable_daemon() {
    let err = DockerExecutor::connect(Some("unix:///nonexistent/gitmoor-docker.sock"))
        .await
        .expect_err("no daemon there");
    let msg = format!("{err:#}");
    assert!(msg.contains("is dockerd running?"), "{msg}");
    assert!(msg.contains("/nonexistent/gitmoor-docker.sock"), "{msg}");

    // A bare socket path works like unix://.
    let ex = DockerExecutor::connect(Some("/var/run/docker.sock"))
        .await
        .expect("bare socket path");
    ex.docker.ping().await.expect("ping");

    // The version learnt from the ping is the one `docker version` reports (or bollard's own, if
    // lower), and the client still answers.
    let server = docker_cli(&["version", "--format", "{{.Server.APIVersion}}"]);
    let (major, minor) = server.trim().split_once('.').expect("x.y");
    let server = bollard::ClientVersion {
        major_version: major.parse().expect("major"),
        minor_version: minor.parse().expect("minor"),
    };
    let want = if server < *bollard::API_DEFAULT_VERSION {
        server
    } else {
        *bollard::API_DEFAULT_VERSION
    };
    assert_eq!(ex.docker.client_version(), want);
    ex.docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .expect("a listing at that version");
}

#[tokio::test]
async fn observe_finds_a_created_container_with_stack_service_and_health() {
    let ex = executor().await;
    let stack = unique_stack("obs");
    let _cleanup = Cleanup::new(&stack);
    let net = network(&stack, "default", false);
    let vol = volume(&stack, "data");
    ex.ensure_network(&net).await.expect("network");
    ex.ensure_volume(&vol).await.expect("volume");

    let mut spec = web_spec();
    spec.healthcheck = healthcheck(&["CMD", "true"], 300, 3);
    spec.volumes = vec![MountSpec::Volume {
        source: vol.name.clone(),
        target: "/data".into(),
        read_only: false,
    }];
    let c = container(&stack, "web", spec, &[(&net, &["web"])]);
    let id = ex.create_container(&c).await.expect("create");
    ex.start(&id).await.expect("start");
    ex.wait_healthy(&id, Duration::from_secs(20))
        .await
        .expect("healthy");

    let observed = observe(&ex.docker, "docker-exec-test")
        .await
        .expect("observe");
    let found = observed
        .containers
        .iter()
        .find(|o| o.id == id)
        .expect("our container is observed");
    assert_eq!(found.name, c.name);
    assert_eq!(found.stack, stack);
    assert_eq!(found.service, "web");
    assert_eq!(found.state, "running");
    assert_eq!(found.health.as_deref(), Some("healthy"));
    assert_eq!(found.image, BUSYBOX);
    let images = observe_images(&ex.docker, &BTreeSet::from([BUSYBOX.to_string()]))
        .await
        .expect("inspect images");
    assert_eq!(
        Some(&found.image_id),
        images.ids.get(BUSYBOX),
        "image id matches the image's"
    );
    assert_eq!(
        found.labels.get(labels::MANAGED).map(String::as_str),
        Some("true")
    );
    assert!(observed.all_container_names.contains(&c.name));
    assert!(observed
        .networks
        .iter()
        .any(|n| n.name == net.name && n.stack == stack));
    assert!(observed
        .volumes
        .iter()
        .any(|v| v.name == vol.name && v.stack == stack));
}

#[tokio::test]
async fn observe_skips_unmanaged_containers_and_names_finds_them() {
    let ex = executor().await;
    let stack = unique_stack("unm");
    let mut cleanup = Cleanup::new(&stack);
    let name = format!("{stack}-stray");
    cleanup.containers.push(name.clone());
    ex.docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            bollard::models::ContainerCreateBody {
                image: Some(BUSYBOX.into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("unmanaged container");
    let observed = observe(&ex.docker, "docker-exec-test")
        .await
        .expect("observe");
    assert!(!observed.containers.iter().any(|c| c.name == name));
    // Asked by name (as the reconcile does for what it would create), the stranger is found,
    // and a name that is only a substring of it is not.
    let taken = gitmoor::observe::docker::container_names(
        &ex.docker,
        &[
            name.clone(),
            format!("{stack}-str"),
            format!("{stack}-none"),
        ],
    )
    .await
    .expect("names");
    assert_eq!(taken, vec![name.clone()]);
}

#[tokio::test]
async fn two_networks_one_internal_publish_a_port_and_resolve_aliases() {
    let ex = executor().await;
    let stack = unique_stack("net");
    let _cleanup = Cleanup::new(&stack);
    let backend = network(&stack, "backend", true);
    let default = network(&stack, "default", false);
    ex.ensure_network(&backend).await.expect("internal network");
    ex.ensure_network(&default).await.expect("default network");

    let port = free_port();
    let mut spec = web_spec();
    spec.ports = vec![PortSpec {
        host_ip: "127.0.0.1".into(),
        host_port: Some(port),
        container_port: 8080,
        protocol: "tcp".into(),
    }];
    // The internal network first: the one made at create time; the other is connected after.
    let web = container(
        &stack,
        "web",
        spec,
        &[(&backend, &["web", "webalias"]), (&default, &["web"])],
    );
    let id = ex.create_container(&web).await.expect("create web");
    ex.start(&id).await.expect("start web");

    let info = ex
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let networks = info
        .network_settings
        .and_then(|n| n.networks)
        .expect("networks");
    assert_eq!(networks.len(), 2, "{:?}", networks.keys());
    let aliases = networks
        .get(&backend.name)
        .and_then(|e| e.aliases.clone())
        .unwrap_or_default();
    assert!(aliases.contains(&"webalias".to_string()), "{aliases:?}");

    let body = http_get(port);
    assert!(body.contains("hello-gitmoor"), "{body}");

    // A one-off on the internal network only reaches web by its alias: completes with 0.
    let client = container(
        &stack,
        "client",
        ServiceSpec {
            image: BUSYBOX.into(),
            command: sh("timeout 5 wget -q -O - http://webalias:8080/ | grep -q hello-gitmoor"),
            ..Default::default()
        },
        &[(&backend, &["client"])],
    );
    let client_id = ex.create_container(&client).await.expect("create client");
    ex.start(&client_id).await.expect("start client");
    ex.wait_exited_ok(&client_id, Duration::from_secs(20))
        .await
        .expect("client reached web over the internal network");

    // A one-off that fails: the error names it and its exit code.
    let failing = container(
        &stack,
        "migrate",
        ServiceSpec {
            image: BUSYBOX.into(),
            command: sh("exit 3"),
            ..Default::default()
        },
        &[(&backend, &["migrate"])],
    );
    let failing_id = ex.create_container(&failing).await.expect("create migrate");
    ex.start(&failing_id).await.expect("start migrate");
    let err = ex
        .wait_exited_ok(&failing_id, Duration::from_secs(20))
        .await
        .expect_err("exit 3 is a failure");
    let msg = format!("{err:#}");
    assert!(msg.contains(&failing.name), "{msg}");
    assert!(msg.contains("code 3"), "{msg}");

    // busybox httpd as PID 1 ignores SIGTERM: grace 0 kills at once. A second removal is fine.
    let started = Instant::now();
    ex.stop_and_remove(&id, 0).await.expect("stop and remove");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        started.elapsed()
    );
    ex.stop_and_remove(&id, 0)
        .await
        .expect("already gone is ok");
}

/// A network with one ipam subnet (static addresses need one).
fn network_with_subnet(stack: &str, key: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec {
        ipam: Some(IpamSpec {
            config: vec![IpamPool {
                subnet: Some(subnet.to_string()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..network(stack, key, false)
    }
}

#[tokio::test]
async fn static_addresses_hold_on_the_first_and_the_second_network() {
    let ex = executor().await;
    let stack = unique_stack("ip");
    let _cleanup = Cleanup::new(&stack);
    // Subnets no other test and no default address pool of this host uses.
    let back = network_with_subnet(&stack, "back", "10.231.41.0/24");
    let front = network_with_subnet(&stack, "front", "10.231.42.0/24");
    ex.ensure_network(&back).await.expect("back network");
    ex.ensure_network(&front).await.expect("front network");

    let attach = |ip: &str| NetworkAttach {
        aliases: vec!["web".into()],
        ipv4_address: Some(ip.to_string()),
        ipv6_address: None,
    };
    let mut spec = web_spec();
    // Keyed by compose key, in the planner's order: `back` is created with, `front` connected.
    spec.networks = BTreeMap::from([
        ("back".to_string(), attach("10.231.41.10")),
        ("front".to_string(), attach("10.231.42.20")),
    ]);
    let web = container(
        &stack,
        "web",
        spec,
        &[(&back, &["web"]), (&front, &["web"])],
    );
    let id = ex.create_container(&web).await.expect("create web");
    ex.start(&id).await.expect("start web");

    let info = ex
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let networks = info
        .network_settings
        .and_then(|n| n.networks)
        .expect("networks");
    let address = |net: &NetworkSpec| {
        networks
            .get(&net.name)
            .and_then(|e| e.ip_address.clone())
            .unwrap_or_default()
    };
    assert_eq!(address(&back), "10.231.41.10", "{networks:?}");
    assert_eq!(address(&front), "10.231.42.20", "{networks:?}");
    ex.stop_and_remove(&id, 0).await.expect("remove");
}

#[tokio::test]
async fn platform_is_asked_of_the_engine_at_create() {
    let ex = executor().await;
    let stack = unique_stack("plat");
    let _cleanup = Cleanup::new(&stack);
    let net = network(&stack, "default", false);
    ex.ensure_network(&net).await.expect("network");

    // This host is amd64, and so is the local busybox image: the service deploys.
    let mut spec = web_spec();
    spec.platform = Some("linux/amd64".into());
    let web = container(&stack, "web", spec, &[(&net, &["web"])]);
    let id = ex
        .create_container(&web)
        .await
        .expect("create for linux/amd64");
    ex.start(&id).await.expect("start");
    let info = ex
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    assert_eq!(info.platform.as_deref(), Some("linux"));
    assert_eq!(
        info.state.and_then(|s| s.running),
        Some(true),
        "runs on linux/amd64"
    );

    // Another platform: the engine refuses the amd64 image, which shows the option reaches it
    // (without it the engine would run the image with only a warning).
    let mut spec = web_spec();
    spec.platform = Some("linux/arm64".into());
    let other = container(&stack, "arm", spec, &[(&net, &["arm"])]);
    let err = ex
        .create_container(&other)
        .await
        .expect_err("an amd64 image is not linux/arm64");
    let msg = format!("{err:#}");
    assert!(msg.contains("is not for platform linux/arm64"), "{msg}");
    assert!(msg.contains("service arm"), "{msg}");
    ex.stop_and_remove(&id, 0).await.expect("remove");
}

#[tokio::test]
async fn healthchecks_healthy_unhealthy_exited_and_timeout() {
    let ex = executor().await;
    let stack = unique_stack("hc");
    let _cleanup = Cleanup::new(&stack);
    let net = network(&stack, "default", false);
    ex.ensure_network(&net).await.expect("network");
    let run = |service: &str, spec: ServiceSpec| {
        let c = container(&stack, service, spec, &[(&net, &[])]);
        let ex = &ex;
        async move {
            let id = ex.create_container(&c).await.expect("create");
            ex.start(&id).await.expect("start");
            (c.name, id)
        }
    };

    // No healthcheck, running: fine at once.
    let (_, plain) = run("plain", web_spec()).await;
    ex.wait_healthy(&plain, Duration::from_secs(10))
        .await
        .expect("running without healthcheck counts as healthy");

    // Healthy.
    let mut spec = web_spec();
    spec.healthcheck = healthcheck(&["CMD", "true"], 300, 3);
    let (_, good) = run("good", spec).await;
    ex.wait_healthy(&good, Duration::from_secs(20))
        .await
        .expect("healthy");

    // Unhealthy: the error quotes the check's output and exit code.
    let mut spec = web_spec();
    spec.healthcheck = healthcheck(&["CMD-SHELL", "echo boom-from-check; exit 1"], 300, 1);
    let (name, bad) = run("bad", spec).await;
    let err = ex
        .wait_healthy(&bad, Duration::from_secs(20))
        .await
        .expect_err("unhealthy");
    let msg = format!("{err:#}");
    assert!(msg.contains(&name), "{msg}");
    assert!(msg.contains("unhealthy"), "{msg}");
    assert!(msg.contains("boom-from-check"), "{msg}");
    assert!(msg.contains("code 1"), "{msg}");

    // Exits before it is healthy (its check would first run after a minute).
    let (name, exits) = run(
        "exits",
        ServiceSpec {
            image: BUSYBOX.into(),
            command: sh("sleep 1; exit 7"),
            healthcheck: healthcheck(&["CMD", "true"], 60_000, 3),
            ..Default::default()
        },
    )
    .await;
    let err = ex
        .wait_healthy(&exits, Duration::from_secs(10))
        .await
        .expect_err("exited");
    let msg = format!("{err:#}");
    assert!(msg.contains(&name), "{msg}");
    assert!(msg.contains("exited with code 7"), "{msg}");

    // Still starting when the time is up.
    let mut spec = web_spec();
    spec.healthcheck = healthcheck(&["CMD", "true"], 60_000, 3);
    let (name, slow) = run("slow", spec).await;
    let started = Instant::now();
    let err = ex
        .wait_healthy(&slow, Duration::from_secs(1))
        .await
        .expect_err("timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = format!("{err:#}");
    assert!(msg.contains(&name), "{msg}");
    assert!(msg.contains("did not become healthy within"), "{msg}");
    assert!(msg.contains("starting"), "{msg}");
}

#[tokio::test]
async fn name_conflicts_unmanaged_is_an_error_leftover_is_replaced() {
    let ex = executor().await;
    let stack = unique_stack("cf");
    let mut cleanup = Cleanup::new(&stack);
    let net = network(&stack, "default", false);
    ex.ensure_network(&net).await.expect("network");

    // Someone's own container holds the name gitmoor wants.
    let web = container(&stack, "web", web_spec(), &[(&net, &["web"])]);
    cleanup.containers.push(web.name.clone());
    ex.docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&web.name).build()),
            bollard::models::ContainerCreateBody {
                image: Some(BUSYBOX.into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("unmanaged container");
    let err = ex
        .create_container(&web)
        .await
        .expect_err("name taken by an unmanaged container");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "a container named {} already exists and is not managed by gitmoor",
            web.name
        )),
        "{msg}"
    );
    assert!(msg.contains("remove or rename it"), "{msg}");

    // A leftover of an interrupted apply (our labels, same stack and service) is replaced.
    let api = container(&stack, "api", web_spec(), &[(&net, &["api"])]);
    let first = ex.create_container(&api).await.expect("first create");
    let second = ex.create_container(&api).await.expect("leftover replaced");
    assert_ne!(first, second);
    let gone = ex
        .docker
        .inspect_container(&first, None::<InspectContainerOptions>)
        .await;
    assert!(gone.is_err(), "the leftover was removed");
}

#[tokio::test]
async fn ensure_network_twice_makes_one_network_and_removal_is_idempotent() {
    let ex = executor().await;
    let stack = unique_stack("en");
    let _cleanup = Cleanup::new(&stack);
    let net = network(&stack, "default", true);
    let a = ex.ensure_network(&net).await.expect("first");
    let b = ex.ensure_network(&net).await.expect("second");
    assert_eq!(a, b);
    let filters = HashMap::from([("name", vec![net.name.clone()])]);
    let listed = ex
        .docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .expect("list");
    let same: Vec<_> = listed
        .iter()
        .filter(|n| n.name.as_deref() == Some(net.name.as_str()))
        .collect();
    assert_eq!(same.len(), 1);
    assert_eq!(same[0].internal, Some(true));
    assert_eq!(
        same[0]
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NETWORK))
            .map(String::as_str),
        Some("default")
    );

    ex.remove_network(&a).await.expect("remove");
    ex.remove_network(&a).await.expect("already gone is ok");

    // A same-named network gitmoor did not make is not adopted.
    docker_cli(&["network", "create", &net.name]);
    let err = ex
        .ensure_network(&net)
        .await
        .expect_err("unmanaged network of that name");
    assert!(
        format!("{err:#}").contains("not managed by gitmoor"),
        "{err:#}"
    );
    docker_cli(&["network", "rm", &net.name]);
}

#[tokio::test]
async fn pulling_a_missing_image_explains_what_to_do() {
    let ex = executor().await;
    let image = format!("{}:1", unique_stack("no-such-image"));
    let err = ex.pull(&image).await.expect_err("no registry has it");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "image {image} is not present locally and cannot be pulled"
        )),
        "{msg}"
    );
    assert!(msg.contains("build or load it on the host"), "{msg}");
}

#[tokio::test]
async fn every_field_reaches_the_real_container_and_volumes_survive_removal() {
    let ex = executor().await;
    let stack = unique_stack("fld");
    let mut cleanup = Cleanup::new(&stack);
    let net = network(&stack, "default", false);
    let vol = volume(&stack, "data");
    ex.ensure_network(&net).await.expect("network");
    ex.ensure_volume(&vol).await.expect("volume");
    ex.ensure_volume(&vol).await.expect("volume again");
    let bind_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(bind_dir.path().join("app.conf"), "x=1\n").expect("write");
    let bind_src = bind_dir.path().to_string_lossy().into_owned();

    let spec = ServiceSpec {
        image: BUSYBOX.into(),
        entrypoint: Some(vec!["sh".into(), "-c".into()]),
        command: Some(vec![
            "test -f /etc/app/app.conf && echo hello-gitmoor > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"
                .into(),
        ]),
        environment: BTreeMap::from([
            ("GREETING".into(), Secret("hi".into())),
            ("DB_PASSWORD".into(), Secret("not-in-any-error".into())),
        ]),
        ports: vec![PortSpec {
            host_ip: "127.0.0.1".into(),
            host_port: None,
            container_port: 8080,
            protocol: "tcp".into(),
        }],
        volumes: vec![
            MountSpec::Volume {
                source: vol.name.clone(),
                target: "/data".into(),
                read_only: false,
            },
            MountSpec::Volume {
                source: String::new(),
                target: "/cache".into(),
                read_only: false,
            },
            MountSpec::Bind {
                source: bind_src.clone(),
                target: "/etc/app".into(),
                read_only: true,
            },
        ],
        healthcheck: healthcheck(&["CMD", "true"], 300, 3),
        restart: Some("on-failure:2".into()),
        user: Some("1000:1000".into()),
        // Not /tmp: dockerd 20.10 makes a tmpfs that is also the working dir 0755 (root only).
        working_dir: Some("/etc/app".into()),
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec!["MKNOD".into()],
        read_only: true,
        tmpfs: BTreeMap::from([("/tmp".into(), "size=8m".into())]),
        extra_hosts: vec!["db.local:10.9.8.7".into()],
        logging: Some(LoggingSpec {
            driver: Some("json-file".into()),
            options: BTreeMap::from([("max-size".into(), "1m".into())]),
        }),
        mem_limit: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        ..Default::default()
    };
    let mut c = container(&stack, "app", spec, &[(&net, &["app", "application"])]);
    c.labels.insert("user.label".into(), "yes".into());
    let id = ex.create_container(&c).await.expect("create");
    ex.start(&id).await.expect("start");
    ex.wait_healthy(&id, Duration::from_secs(20))
        .await
        .expect("healthy");

    let info = ex
        .docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let config = info.config.clone().expect("config");
    let env = config.env.clone().unwrap_or_default();
    assert!(env.contains(&"GREETING=hi".to_string()), "{env:?}");
    assert_eq!(config.entrypoint, Some(vec!["sh".into(), "-c".into()]));
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(config.working_dir.as_deref(), Some("/etc/app"));
    let labels = config.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("user.label").map(String::as_str), Some("yes"));
    assert_eq!(labels.get(labels::SERVICE).map(String::as_str), Some("app"));
    let hc = config.healthcheck.clone().expect("healthcheck");
    assert_eq!(hc.interval, Some(300 * MS));
    assert_eq!(hc.retries, Some(3));

    let host = info.host_config.clone().expect("host config");
    let restart = host.restart_policy.clone().expect("restart policy");
    assert_eq!(
        restart.name.map(|n| n.to_string()).as_deref(),
        Some("on-failure")
    );
    assert_eq!(restart.maximum_retry_count, Some(2));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_string()]));
    assert_eq!(host.cap_drop, Some(vec!["MKNOD".to_string()]));
    assert_eq!(
        host.extra_hosts,
        Some(vec!["db.local:10.9.8.7".to_string()])
    );
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(
        host.tmpfs
            .as_ref()
            .and_then(|t| t.get("/tmp"))
            .map(String::as_str),
        Some("size=8m")
    );
    let log = host.log_config.clone().expect("log config");
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(host.network_mode.as_deref(), Some(net.name.as_str()));

    let mounts = info.mounts.clone().unwrap_or_default();
    let mount_at = |target: &str| {
        mounts
            .iter()
            .find(|m| m.destination.as_deref() == Some(target))
            .cloned()
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
    };
    assert_eq!(mount_at("/data").name.as_deref(), Some(vol.name.as_str()));
    let anonymous = mount_at("/cache")
        .name
        .clone()
        .expect("anonymous volume name");
    cleanup.volumes.push(anonymous.clone());
    let bind = mount_at("/etc/app");
    assert_eq!(bind.source.as_deref(), Some(bind_src.as_str()));
    assert_eq!(bind.rw, Some(false));

    // The random published port answers.
    let ports = info
        .network_settings
        .clone()
        .and_then(|n| n.ports)
        .unwrap_or_default();
    let host_port: u16 = ports
        .get("8080/tcp")
        .cloned()
        .flatten()
        .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
        .and_then(|p| p.parse().ok())
        .expect("a published host port");
    assert!(http_get(host_port).contains("hello-gitmoor"));
    let aliases = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&net.name).cloned())
        .and_then(|e| e.aliases)
        .unwrap_or_default();
    assert!(aliases.contains(&"application".to_string()), "{aliases:?}");

    // Removal keeps volumes, named and anonymous.
    ex.stop_and_remove(&id, 0).await.expect("remove");
    assert!(ex.docker.inspect_volume(&vol.name).await.is_ok());
    assert!(ex.docker.inspect_volume(&anonymous).await.is_ok());
}
