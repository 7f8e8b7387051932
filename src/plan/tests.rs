//! Planner tests on plain structs: the seed's app (backend + postgres), and what each change to it
//! must and must not touch.

use super::*;
use crate::observe::{Observed, ObservedContainer, ObservedNetwork, ObservedVolume};
use crate::spec::model::*;

pub(super) fn seed() -> HostSpec {
    let mut stack = StackSpec {
        name: "app".into(),
        compose_file: "compose/app/compose.yaml".into(),
        services: Default::default(),
        networks: Default::default(),
        volumes: Default::default(),
        has_secrets_file: true,
        ..Default::default()
    };
    for (key, internal) in [("db", true), ("web", false)] {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("com.docker.compose.project".to_string(), "app".to_string());
        stack.networks.insert(
            key.into(),
            NetworkSpec {
                name: format!("app_{key}"),
                internal,
                labels,
                ..Default::default()
            },
        );
    }
    stack.volumes.insert(
        "pgdata".into(),
        VolumeSpec {
            name: "app_pgdata".into(),
            labels: Default::default(),
            ..Default::default()
        },
    );
    let mut db = ServiceSpec {
        image: "example-postgres:15".into(),
        ..Default::default()
    };
    db.environment
        .insert("POSTGRES_PASSWORD".into(), Secret("s3cret-pw".into()));
    db.networks.insert(
        "db".into(),
        NetworkAttach {
            aliases: vec!["postgres".into()],
            ..Default::default()
        },
    );
    db.volumes.push(MountSpec::Volume {
        source: "app_pgdata".into(),
        target: "/var/lib/postgresql/data".into(),
        read_only: false,
    });
    let mut backend = ServiceSpec {
        image: "example-backend:1".into(),
        ..Default::default()
    };
    backend
        .environment
        .insert("GREETING".into(), Secret("hello".into()));
    backend.networks.insert(
        "db".into(),
        NetworkAttach {
            aliases: vec!["backend".into()],
            ..Default::default()
        },
    );
    backend.networks.insert(
        "web".into(),
        NetworkAttach {
            aliases: vec!["backend".into()],
            ..Default::default()
        },
    );
    backend
        .depends_on
        .insert("postgres".into(), DependsCondition::Healthy);
    backend.ports.push(PortSpec {
        host_ip: "127.0.0.1".into(),
        host_port: Some(3000),
        container_port: 3000,
        protocol: "tcp".into(),
    });
    stack.services.insert("postgres".into(), db);
    stack.services.insert("backend".into(), backend);
    let mut host = HostSpec::default();
    host.stacks.insert("app".into(), stack);
    host
}

pub(super) fn ctx() -> PlanContext {
    PlanContext {
        commit: "c0ffee".into(),
        bind_root: "/var/lib/gitmoor/stacks".into(),
        instance: "default".into(),
        repo: "file:///srv/infra.git".into(),
        recorded_stacks: Default::default(),
        recorded_sites: Default::default(),
        adopt: Default::default(),
        sites: Default::default(),
        firewall: Default::default(),
        hash_key: crate::hashkey::HashKey::from_bytes([5; 32]),
    }
}

pub(super) fn images() -> Observed {
    // A host whose data dir was read and holds nothing yet.
    let mut o = Observed {
        data: crate::observe::Seen::Observed(Default::default()),
        ..Default::default()
    };
    o.images
        .insert("example-postgres:15".into(), "sha256:pg".into());
    o.images
        .insert("example-backend:1".into(), "sha256:be1".into());
    o
}

/// What the host looks like after the plan ran: the planner's own view of a perfect executor.
pub(super) fn applied(plan: &Plan, before: &Observed) -> Observed {
    let mut o = before.clone();
    let mut n = 0;
    for (stack, a) in plan.stack_actions() {
        {
            n += 1;
            match a {
                Action::CreateNetwork { network } => o.networks.push(ObservedNetwork {
                    id: format!("net{n}"),
                    name: network.name.clone(),
                    stack: stack.to_string(),
                    labels: network.labels.clone(),
                }),
                Action::CreateVolume { volume } => o.volumes.push(ObservedVolume {
                    name: volume.name.clone(),
                    stack: stack.to_string(),
                    labels: volume.labels.clone(),
                }),
                Action::Create { container } | Action::Recreate { container, .. } => {
                    if let Action::Recreate { old_id, .. } = a {
                        o.containers.retain(|c| &c.id != old_id);
                    }
                    // Docker binds a join to the id of the container it names, at create time.
                    let bound = |mode: &Option<String>| {
                        let name = mode.as_deref()?.strip_prefix("container:")?;
                        o.containers
                            .iter()
                            .find(|c| c.name == name)
                            .map(|c| c.id.clone())
                    };
                    let joins_network = bound(&container.spec.network_mode);
                    let joins_pid = bound(&container.spec.pid);
                    let joins_ipc = bound(&container.spec.ipc);
                    o.containers.push(ObservedContainer {
                        id: format!("c{n}"),
                        name: container.name.clone(),
                        stack: container.stack.clone(),
                        service: container.service.clone(),
                        image: container.spec.image.clone(),
                        image_id: o.images[&normalize_image(&container.spec.image)].clone(),
                        state: "running".into(),
                        health: None,
                        labels: container.labels.clone(),
                        joins_network,
                        joins_pid,
                        joins_ipc,
                    });
                    o.all_container_names.push(container.name.clone());
                }
                Action::Start { id, .. } => {
                    if let Some(c) = o.containers.iter_mut().find(|c| &c.id == id) {
                        c.state = "running".into();
                    }
                }
                Action::Remove { id, .. } => o.containers.retain(|c| &c.id != id),
                Action::RemoveNetwork { id, .. } => o.networks.retain(|x| &x.id != id),
            }
        }
    }
    o
}

pub(super) fn kinds(plan: &Plan) -> Vec<String> {
    plan.views()
        .into_iter()
        .map(|v| format!("{} {}", v.action, v.target))
        .collect()
}

#[test]
fn first_deploy_creates_networks_volume_then_db_before_backend() {
    let plan = plan(&seed(), &images(), &ctx()).unwrap();
    assert_eq!(
        kinds(&plan),
        vec![
            "create-network app_db",
            "create-network app_web",
            "create-volume app_pgdata",
            "create app-postgres-1",
            "create app-backend-1",
        ]
    );
    let Action::Create { container } = &plan.units[0].actions().unwrap()[3] else {
        panic!()
    };
    assert!(
        container.wait_healthy,
        "backend waits for postgres to be healthy"
    );
    assert_eq!(container.labels["com.docker.compose.project"], "app");
    assert_eq!(container.labels["com.docker.compose.service"], "postgres");
    assert_eq!(container.labels["io.gitmoor.commit"], "c0ffee");
    let all_labels = format!("{:?}", container.labels);
    assert!(
        !all_labels.contains("s3cret-pw"),
        "no secret value in a label: {all_labels}"
    );
}

#[test]
fn applied_plan_leaves_nothing_to_do() {
    let first = plan(&seed(), &images(), &ctx()).unwrap();
    let host = applied(&first, &images());
    let again = plan(
        &seed(),
        &host,
        &PlanContext {
            commit: "next".into(),
            ..ctx()
        },
    )
    .unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(
        again.render_text(),
        "no changes: the host matches the commit\n"
    );
}

#[test]
fn changing_one_service_recreates_only_it_and_says_why() {
    let host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let mut spec = seed();
    let backend = spec
        .stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut("backend")
        .unwrap();
    backend
        .environment
        .insert("GREETING".into(), Secret("bonjour".into()));
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-backend-1"]);
    assert_eq!(p.views()[0].reasons, vec!["environment.GREETING changed"]);
    assert!(!p.render_text().contains("bonjour"));
}

#[test]
fn a_moved_image_tag_recreates_with_the_image_as_reason() {
    let host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let mut moved = host.clone();
    moved
        .images
        .insert("example-backend:1".into(), "sha256:be2".into());
    let p = plan(&seed(), &moved, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-backend-1"]);
    assert!(
        p.views()[0].reasons[0].starts_with("image example-backend:1 changed"),
        "{:?}",
        p.views()
    );
}

#[test]
fn missing_image_is_pulled_before_anything() {
    let mut o = images();
    o.images.remove("example-backend:1");
    let p = plan(&seed(), &o, &ctx()).unwrap();
    assert_eq!(p.pulls, vec!["example-backend:1"]);
    assert_eq!(p.views()[0].action, "pull");
}

#[test]
fn removed_service_is_removed_and_others_untouched() {
    let host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let mut spec = seed();
    let st = spec.stacks.get_mut("app").unwrap();
    st.services.remove("backend");
    st.networks.remove("web");
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["remove app-backend-1", "remove-network app_web"]
    );
    assert!(p.views()[0].reasons[0].contains("left compose/app/compose.yaml"));
}

#[test]
fn removed_stack_keeps_its_volumes_and_lists_them() {
    let host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let p = plan(&HostSpec::default(), &host, &ctx()).unwrap();
    let k = kinds(&p);
    assert!(
        k.contains(&"remove app-postgres-1".to_string())
            && k.contains(&"remove app-backend-1".to_string()),
        "{k:?}"
    );
    assert!(
        k.iter().all(|a| !a.contains("volume")),
        "a volume is never removed: {k:?}"
    );
    assert_eq!(p.kept_volumes, vec!["app_pgdata"]);
    assert!(p.render_text().contains("keep volume app_pgdata"));
    // Containers go before the networks they sit on.
    let first_net = k
        .iter()
        .position(|a| a.starts_with("remove-network"))
        .unwrap();
    assert!(
        k[..first_net].iter().all(|a| a.starts_with("remove ")),
        "{k:?}"
    );
}

#[test]
fn stopped_container_is_started() {
    let mut host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    host.containers
        .iter_mut()
        .find(|c| c.service == "postgres")
        .unwrap()
        .state = "exited".into();
    let p = plan(&seed(), &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["start app-postgres-1"]);
}

#[test]
fn name_taken_by_an_unmanaged_container_is_refused() {
    let mut o = images();
    o.all_container_names.push("app-postgres-1".into());
    let err = plan(&seed(), &o, &ctx()).unwrap_err().to_string();
    assert!(
        err.contains("app-postgres-1") && err.contains("not manage"),
        "{err}"
    );
}

#[test]
fn a_network_that_changes_is_recreated_with_its_containers() {
    let host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let mut spec = seed();
    spec.stacks
        .get_mut("app")
        .unwrap()
        .networks
        .get_mut("web")
        .unwrap()
        .internal = true;
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "remove app-backend-1",
            "remove-network app_web",
            "create-network app_web",
            "create app-backend-1"
        ]
    );
    let after = applied(&p, &host);
    assert!(plan(&spec, &after, &ctx()).unwrap().is_empty());
}

#[test]
fn topo_order_puts_dependencies_first() {
    assert_eq!(
        topo_order(&seed().stacks["app"]),
        vec!["postgres", "backend"]
    );
}

#[test]
fn normalizes_image_references_like_the_image_listing() {
    assert_eq!(normalize_image("postgres"), "postgres:latest");
    assert_eq!(
        normalize_image("docker.io/library/postgres:15"),
        "postgres:15"
    );
    assert_eq!(
        normalize_image("127.0.0.1:5000/test/bb"),
        "127.0.0.1:5000/test/bb:latest"
    );
    assert_eq!(
        normalize_image("127.0.0.1:5000/test/bb:1"),
        "127.0.0.1:5000/test/bb:1"
    );
}

pub(super) fn with_build(tree: &str) -> HostSpec {
    let mut spec = seed();
    let be = spec
        .stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut("backend")
        .unwrap();
    be.image = "app-backend:latest".into();
    be.build = Some(BuildSpec {
        context: "compose/app/backend".into(),
        dockerfile: "Dockerfile".into(),
        context_tree: tree.into(),
        ..Default::default()
    });
    spec
}

#[test]
fn build_runs_when_missing_then_is_skipped_by_its_hash_label() {
    let p = plan(&with_build("t1"), &images(), &ctx()).unwrap();
    assert_eq!(p.builds.len(), 1);
    assert_eq!(p.builds[0].reason, "image app-backend:latest not built yet");
    assert!(
        p.pulls.is_empty(),
        "a built image is not pulled: {:?}",
        p.pulls
    );

    // The image now exists, labelled by that build: nothing to build, nothing to recreate.
    let mut host = images();
    host.images
        .insert("app-backend:latest".into(), "sha256:b1".into());
    host.image_labels
        .insert("app-backend:latest".into(), p.builds[0].labels.clone());
    let host = applied(&p, &host);
    let again = plan(&with_build("t1"), &host, &ctx()).unwrap();
    assert!(again.is_empty(), "{}", again.render_text());

    // A change inside the context: rebuild and recreate, saying so.
    let p2 = plan(&with_build("t2"), &host, &ctx()).unwrap();
    assert_eq!(
        p2.builds[0].reason,
        "build context compose/app/backend changed (tree t1 → t2)"
    );
    let v = p2.views();
    let re = v.iter().find(|a| a.action == "recreate").unwrap();
    assert_eq!(re.target, "app-backend-1");
    assert!(
        re.reasons
            .iter()
            .any(|r| r.starts_with("image rebuilt: build context")),
        "{re:?}"
    );
    assert!(
        !v.iter().any(|a| a.target == "app-postgres-1"),
        "postgres untouched: {v:?}"
    );
}

#[test]
fn pull_policy_never_with_a_missing_image_is_refused() {
    let mut spec = seed();
    let be = spec
        .stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut("backend")
        .unwrap();
    be.image = "not-here:1".into();
    be.pull_policy = PullPolicy::Never;
    let err = plan(&spec, &images(), &ctx()).unwrap_err().to_string();
    assert!(
        err.contains("not-here:1") && err.contains("pull_policy"),
        "{err}"
    );
}

#[test]
fn pull_policy_always_redeploys_a_moved_tag() {
    let mut spec = seed();
    let be = spec
        .stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut("backend")
        .unwrap();
    be.pull_policy = PullPolicy::Always;
    let mut host = applied(&plan(&spec, &images(), &ctx()).unwrap(), &images());
    host.image_digests.insert(
        "example-backend:1".into(),
        vec!["example-backend@sha256:aaa".into()],
    );
    host.remote_digests
        .insert("example-backend:1".into(), "sha256:aaa".into());
    assert!(
        plan(&spec, &host, &ctx()).unwrap().is_empty(),
        "same digest: nothing to do"
    );
    host.remote_digests
        .insert("example-backend:1".into(), "sha256:bbb".into());
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(p.pulls, vec!["example-backend:1"]);
    let v = p.views();
    assert!(
        v[0].reasons[0].contains("moved on the registry (aaa → bbb)"),
        "{v:?}"
    );
    assert_eq!(v[1].action, "recreate");
}

#[test]
fn container_name_is_honoured() {
    let mut spec = seed();
    spec.stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut("postgres")
        .unwrap()
        .container_name = Some("db".into());
    let p = plan(&spec, &images(), &ctx()).unwrap();
    assert!(
        kinds(&p).contains(&"create db".to_string()),
        "{:?}",
        kinds(&p)
    );
}

#[test]
fn external_networks_and_volumes_are_never_created() {
    let mut spec = seed();
    let st = spec.stacks.get_mut("app").unwrap();
    st.networks.get_mut("web").unwrap().external = true;
    st.volumes.get_mut("pgdata").unwrap().external = true;
    let k = kinds(&plan(&spec, &images(), &ctx()).unwrap());
    assert!(
        !k.iter()
            .any(|a| a.contains("app_web") || a.contains("app_pgdata")),
        "{k:?}"
    );
    assert!(k.contains(&"create-network app_db".to_string()), "{k:?}");
}

/// A stack with joiners, read by the compose loader (so the implicit `depends_on` of a join is
/// the loader's, not the fixture's): `sidecar` joins backend's network namespace
/// (`network_mode: service:backend`), and `agent` joins postgres's PID and IPC namespaces by its
/// `container_name` (`container:the-db`), with no `depends_on` of its own. `agent` sorts before
/// `postgres`, so only the join orders it after postgres.
fn with_joiners() -> HostSpec {
    let yaml = "services:
  postgres:
    image: example-postgres:15
    container_name: the-db
    ipc: shareable
    networks: [db]
  backend:
    image: example-backend:1
    environment:
      GREETING: hello
    networks: [db, web]
    depends_on: [postgres]
  sidecar:
    image: example-backend:1
    network_mode: service:backend
  agent:
    image: example-backend:1
    pid: container:the-db
    ipc: container:the-db
networks:
  db:
    internal: true
  web: {}
";
    let snap = crate::source::snapshot::Snapshot::from_texts(&[("compose/app/compose.yaml", yaml)]);
    let (spec, findings) =
        crate::spec::load::load_host_spec(&snap, &crate::spec::load::LoadOptions::default());
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    spec.expect("the joiners' stack loads")
}

fn set_env(spec: &mut HostSpec, service: &str, value: &str) {
    spec.stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut(service)
        .unwrap()
        .environment
        .insert("GREETING".into(), Secret(value.into()));
}

#[test]
fn joiners_are_created_after_the_service_they_join() {
    let p = plan(&with_joiners(), &images(), &ctx()).unwrap();
    let k = kinds(&p);
    let at = |n: &str| k.iter().position(|a| a == n).unwrap();
    assert!(
        at("create app-backend-1") < at("create app-sidecar-1"),
        "{k:?}"
    );
    assert!(at("create the-db") < at("create app-agent-1"), "{k:?}");
}

#[test]
fn recreating_a_service_recreates_the_services_joining_its_network() {
    let host = joiners_deployed();
    let mut spec = with_joiners();
    set_env(&mut spec, "backend", "bonjour");
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["recreate app-backend-1", "recreate app-sidecar-1"]
    );
    assert_eq!(
        p.views()[1].reasons,
        vec!["joins network of app-backend-1, which is recreated"]
    );
    assert!(
        p.render_text().contains(
            "[app] recreate app-sidecar-1: joins network of app-backend-1, which is recreated\n"
        ),
        "{}",
        p.render_text()
    );
    let Action::Recreate { old_id, .. } = &p.units[0].actions().unwrap()[1] else {
        panic!("{:?}", p.units[0].actions().unwrap()[1])
    };
    let old_sidecar = host.containers.iter().find(|c| c.service == "sidecar");
    assert_eq!(Some(old_id), old_sidecar.map(|c| &c.id));
    let after = applied(&p, &host);
    assert!(plan(&spec, &after, &ctx()).unwrap().is_empty());
}

/// The host after `with_joiners()` was applied to an empty one.
fn joiners_deployed() -> Observed {
    applied(
        &plan(&with_joiners(), &images(), &ctx()).unwrap(),
        &images(),
    )
}

#[test]
fn a_joiner_with_its_own_change_gets_both_reasons() {
    let host = joiners_deployed();
    let mut spec = with_joiners();
    set_env(&mut spec, "backend", "bonjour");
    set_env(&mut spec, "sidecar", "hej");
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        p.views()[1].reasons,
        vec![
            "environment.GREETING added",
            "joins network of app-backend-1, which is recreated"
        ]
    );
}

#[test]
fn pid_and_ipc_joiners_follow_the_container_they_join() {
    let host = joiners_deployed();
    let mut spec = with_joiners();
    set_env(&mut spec, "postgres", "hi");
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate the-db", "recreate app-agent-1"]);
    assert_eq!(
        p.views()[1].reasons,
        vec![
            "joins PID namespace of the-db, which is recreated",
            "joins IPC namespace of the-db, which is recreated"
        ]
    );
}

#[test]
fn a_change_elsewhere_or_to_the_joiner_recreates_only_what_changed() {
    let host = joiners_deployed();
    let mut spec = with_joiners();
    set_env(&mut spec, "agent", "x");
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-agent-1"]);
    let mut spec = with_joiners();
    set_env(&mut spec, "sidecar", "x");
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-sidecar-1"]);
}

#[test]
fn a_joined_container_that_is_made_anew_or_restarted_takes_its_joiners_along() {
    let host = joiners_deployed();
    // Gone (removed by hand): created, and the joiner, bound to the old id, recreated.
    let mut gone = host.clone();
    gone.containers.retain(|c| c.service != "backend");
    gone.all_container_names.retain(|n| n != "app-backend-1");
    let p = plan(&with_joiners(), &gone, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["create app-backend-1", "recreate app-sidecar-1"]
    );
    assert_eq!(
        p.views()[1].reasons,
        vec!["joins network of app-backend-1, which is created"]
    );
    // Stopped: started, with a new namespace; the running joiner is stranded in the old one.
    let mut stopped = host.clone();
    let state = |o: &mut Observed, svc: &str, st: &str| {
        o.containers
            .iter_mut()
            .find(|c| c.service == svc)
            .unwrap()
            .state = st.into()
    };
    state(&mut stopped, "backend", "exited");
    let p = plan(&with_joiners(), &stopped, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["start app-backend-1", "recreate app-sidecar-1"]
    );
    assert_eq!(
        p.views()[1].reasons,
        vec!["joins network of app-backend-1, which is started anew"]
    );
    // Both stopped: the same containers, so starting both in order is enough.
    state(&mut stopped, "sidecar", "exited");
    let p = plan(&with_joiners(), &stopped, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["start app-backend-1", "start app-sidecar-1"]
    );
}

#[test]
fn joins_by_container_name_come_from_the_loader() {
    let spec = with_joiners();
    let st = &spec.stacks["app"];
    assert_eq!(
        st.services["agent"].depends_on["postgres"],
        DependsCondition::Started
    );
    assert_eq!(
        st.services["sidecar"].depends_on["backend"],
        DependsCondition::Started
    );
    let order = topo_order(st);
    let at = |s: &str| order.iter().position(|o| o == s).unwrap();
    assert!(at("postgres") < at("agent"), "{order:?}");
    assert!(at("backend") < at("sidecar"), "{order:?}");
}

/// The host after an apply that replaced `service`'s container and stopped before its joiners:
/// the container has a new id, the joiners are still bound to the old one.
fn replaced_behind_joiners(host: &Observed, service: &str) -> Observed {
    let mut o = host.clone();
    let c = o
        .containers
        .iter_mut()
        .find(|c| c.service == service)
        .unwrap();
    c.id = format!("{}-new", c.id);
    o
}

#[test]
fn a_joiner_left_bound_to_a_replaced_container_is_recreated_next_time() {
    let host = replaced_behind_joiners(&joiners_deployed(), "backend");
    let p = plan(&with_joiners(), &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-sidecar-1"]);
    assert_eq!(
        p.views()[0].reasons,
        vec!["joins network of app-backend-1, which is a different container now"]
    );
    let after = applied(&p, &host);
    assert!(plan(&with_joiners(), &after, &ctx()).unwrap().is_empty());

    // A stopped joiner is recreated too: starting it would fail (its namespace is gone).
    let mut stopped = host.clone();
    for c in stopped
        .containers
        .iter_mut()
        .filter(|c| c.service == "sidecar")
    {
        c.state = "exited".into();
    }
    assert_eq!(
        kinds(&plan(&with_joiners(), &stopped, &ctx()).unwrap()),
        vec!["recreate app-sidecar-1"]
    );

    // PID and IPC joins (through `container_name`) the same way.
    let host = replaced_behind_joiners(&joiners_deployed(), "postgres");
    let p = plan(&with_joiners(), &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-agent-1"]);
    assert_eq!(
        p.views()[0].reasons,
        vec![
            "joins PID namespace of the-db, which is a different container now",
            "joins IPC namespace of the-db, which is a different container now"
        ]
    );
    let after = applied(&p, &host);
    assert!(plan(&with_joiners(), &after, &ctx()).unwrap().is_empty());
}

#[test]
fn a_join_not_known_or_kept_by_name_is_no_reason() {
    let mut host = joiners_deployed();
    for c in &mut host.containers {
        match c.service.as_str() {
            "sidecar" => c.joins_network = None,
            "agent" => c.joins_pid = Some("the-db".into()),
            _ => {}
        }
    }
    assert!(plan(&with_joiners(), &host, &ctx()).unwrap().is_empty());
}

#[test]
fn a_network_change_takes_the_joiners_of_its_containers_along() {
    let host = joiners_deployed();
    let mut spec = with_joiners();
    spec.stacks
        .get_mut("app")
        .unwrap()
        .networks
        .get_mut("web")
        .unwrap()
        .internal = true;
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "remove app-sidecar-1",
            "remove app-backend-1",
            "remove-network app_web",
            "create-network app_web",
            "create app-backend-1",
            "create app-sidecar-1"
        ]
    );
    assert_eq!(
        p.views()[0].reasons,
        vec!["joins network of app-backend-1, which is recreated"]
    );
    let after = applied(&p, &host);
    assert!(plan(&spec, &after, &ctx()).unwrap().is_empty());
}

#[test]
fn a_service_left_out_by_its_profile_is_removed_for_that_reason() {
    let host = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let mut spec = seed();
    let st = spec.stacks.get_mut("app").unwrap();
    st.services.remove("backend");
    st.inactive_services
        .insert("backend".into(), vec!["debug".into()]);
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["remove app-backend-1"]);
    let why = "service backend is in profile debug, which is not enabled (config: profiles)";
    assert_eq!(p.views()[0].reasons, vec![why]);
    let text = p.render_text();
    assert!(
        text.contains(&format!("[app] remove app-backend-1: {why}\n")),
        "{text}"
    );
    assert!(!text.contains("left compose"), "{text}");

    let st = spec.stacks.get_mut("app").unwrap();
    st.inactive_services
        .insert("backend".into(), vec!["tools".into(), "debug".into()]);
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        p.views()[0].reasons,
        vec![
            "service backend is in profiles tools, debug, none of which is enabled (config: profiles)"
        ]
    );
}

#[test]
fn the_default_network_no_running_service_uses_is_removed_for_that_reason() {
    let mut spec = seed();
    let st = spec.stacks.get_mut("app").unwrap();
    st.networks.get_mut("web").unwrap().name = "app_default".into();
    let host = applied(&plan(&spec, &images(), &ctx()).unwrap(), &images());
    // The spec leaves the implicit default network out when only inactive services use it.
    let st = spec.stacks.get_mut("app").unwrap();
    st.services.remove("backend");
    st.networks.remove("web");
    st.inactive_services
        .insert("backend".into(), vec!["debug".into()]);
    let p = plan(&spec, &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["remove app-backend-1", "remove-network app_default"]
    );
    assert_eq!(
        p.views()[1].reasons,
        vec!["no service that runs uses network app_default"]
    );
}

fn with_key(byte: u8) -> PlanContext {
    PlanContext {
        hash_key: crate::hashkey::HashKey::from_bytes([byte; 32]),
        ..ctx()
    }
}

fn created_labels(plan: &Plan, service: &str) -> std::collections::BTreeMap<String, String> {
    plan.stack_actions()
        .map(|(_, a)| a)
        .find_map(|a| match a {
            Action::Create { container } | Action::Recreate { container, .. }
                if container.service == service =>
            {
                Some(container.labels.clone())
            }
            _ => None,
        })
        .expect("the service is created")
}

/// Hashes of secret values are keyed: the same spec gives the same labels under one key, other
/// labels under another, and never the plain sha256 of a value.
#[test]
fn the_config_hash_and_fingerprint_depend_on_the_host_key() {
    use sha2::{Digest, Sha256};
    let labels = |key: u8| {
        created_labels(
            &plan(&seed(), &images(), &with_key(key)).unwrap(),
            "postgres",
        )
    };
    let (a, again, b) = (labels(1), labels(1), labels(2));
    for l in [
        crate::labels::CONFIG_HASH,
        crate::labels::FINGERPRINT,
        crate::labels::HASH,
    ] {
        assert_eq!(a[l], again[l], "{l}: same key, same value");
        assert_ne!(a[l], b[l], "{l}: another key, another value");
    }
    assert!(a[crate::labels::HASH].starts_with("hmac1:"), "{a:?}");
    let plain = hex::encode(&Sha256::digest(b"\"s3cret-pw\"")[..4]);
    let all = format!("{a:?}");
    assert!(!all.contains(&plain) && !all.contains("s3cret-pw"), "{all}");
}

/// An upgrade from the plain-sha256 scheme, or a new key, changes every hash once: the reason
/// says so instead of listing every field, and the next plan has nothing to do.
#[test]
fn a_container_hashed_under_another_scheme_or_key_is_recreated_once_saying_why() {
    let host = applied(&plan(&seed(), &images(), &with_key(1)).unwrap(), &images());
    // Another key (another state dir, or a new hash.key).
    let p = plan(&seed(), &host, &with_key(2)).unwrap();
    let re: Vec<_> = p
        .views()
        .into_iter()
        .filter(|v| v.action == "recreate")
        .collect();
    assert_eq!(re.len(), 2, "{}", p.render_text());
    for v in &re {
        assert_eq!(
            v.reasons,
            vec!["gitmoor's hash key changed (another state_dir or a new hash.key; one-time)"]
        );
    }
    let after = applied(&p, &host);
    assert!(plan(&seed(), &after, &with_key(2)).unwrap().is_empty());
    // Made by a gitmoor before keyed hashes: a fingerprint, no scheme label.
    let mut old = host.clone();
    for c in &mut old.containers {
        c.labels.remove(crate::labels::HASH);
    }
    let p = plan(&seed(), &old, &with_key(2)).unwrap();
    assert!(
        p.render_text()
            .contains("recreate app-postgres-1: gitmoor's hash scheme changed (one-time)\n"),
        "{}",
        p.render_text()
    );
    // Under the same key, a real change is still named field by field.
    let mut changed = seed();
    set_env(&mut changed, "backend", "bonjour");
    let p = plan(&changed, &host, &with_key(1)).unwrap();
    let re: Vec<_> = p
        .views()
        .into_iter()
        .filter(|v| v.action == "recreate")
        .collect();
    assert_eq!(re.len(), 1, "{}", p.render_text());
    assert_eq!(re[0].reasons, vec!["environment.GREETING changed"]);
}

/// An image built under the old scheme is rebuilt once, saying so; its new labels carry the
/// scheme, and a build arg's plain hash is on no label.
#[test]
fn an_image_built_under_another_scheme_is_rebuilt_once() {
    let mut spec = with_build("t1");
    let be = spec
        .stacks
        .get_mut("app")
        .and_then(|s| s.services.get_mut("backend"))
        .and_then(|s| s.build.as_mut())
        .unwrap();
    be.args.insert("NPM_TOKEN".into(), Secret("abc".into()));
    let p = plan(&spec, &images(), &with_key(1)).unwrap();
    let mut host = images();
    host.images
        .insert("app-backend:latest".into(), "sha256:b1".into());
    let mut old_labels = p.builds[0].labels.clone();
    assert_eq!(
        old_labels[crate::labels::HASH],
        with_key(1).hash_key.scheme_label()
    );
    host.image_labels
        .insert("app-backend:latest".into(), old_labels.clone());
    let host = applied(&p, &host);
    assert!(plan(&spec, &host, &with_key(1)).unwrap().is_empty());
    // Another key (another gitmoor's, building the same tag): rebuilt, saying why.
    let other = plan(&spec, &host, &with_key(2)).unwrap();
    assert_eq!(
        other.builds[0].reason,
        "image app-backend:latest was built under another hash key (another gitmoor's state_dir, or an earlier hash.key)"
    );
    // As the old scheme left it: a plain sha256 of the build section, no scheme label.
    let mut before = host.clone();
    old_labels.remove(crate::labels::HASH);
    old_labels.insert(
        images::BUILD_HASH.into(),
        "0123456789abcdef0123456789abcdef".into(),
    );
    before
        .image_labels
        .insert("app-backend:latest".into(), old_labels);
    let again = plan(&spec, &before, &with_key(1)).unwrap();
    assert_eq!(
        again.builds[0].reason,
        "gitmoor's hash scheme changed (one-time)"
    );
}

/// An apply killed inside a recreate: the old container set aside (`-gitmoor-old`), the new one
/// created but never started. The one set aside is kept and recreated under its name; the
/// never-started one goes. Once the new one has started, it is the current one.
#[test]
fn an_interrupted_recreate_keeps_the_container_set_aside_until_the_new_one_started() {
    let deployed = applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images());
    let backend = deployed
        .containers
        .iter()
        .find(|c| c.service == "backend")
        .unwrap()
        .clone();
    let mut host = deployed.clone();
    for c in host
        .containers
        .iter_mut()
        .filter(|c| c.service == "backend")
    {
        c.name = "app-backend-1-gitmoor-old".into();
    }
    // Killed after the rename: only the set-aside one.
    let p = plan(&seed(), &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-backend-1"], "{p:#?}");
    // Killed after the create: a never-started new one under the name.
    let mut new = backend.clone();
    new.id = "new-never-started".into();
    new.state = "created".into();
    host.containers.push(new.clone());
    let p = plan(&seed(), &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["remove app-backend-1", "recreate app-backend-1"],
        "{p:#?}"
    );
    // Killed after the start: the new one serves, the set-aside one is the extra.
    for c in host
        .containers
        .iter_mut()
        .filter(|c| c.id == "new-never-started")
    {
        c.state = "running".into();
    }
    let p = plan(&seed(), &host, &ctx()).unwrap();
    assert_eq!(
        kinds(&p),
        vec!["remove app-backend-1-gitmoor-old"],
        "{p:#?}"
    );
}
