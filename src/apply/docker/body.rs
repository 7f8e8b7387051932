//! ServiceSpec → the Docker create-container body. Pure, so every field's mapping is unit-tested.

use crate::plan::ContainerToCreate;
use crate::spec::model::{MountSpec, NetworkAttach, ServiceSpec};
use anyhow::bail;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Mount, MountType, NetworkingConfig, PortBinding, PortMap,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The body `POST /containers/create` gets for `c`. Only the first of `c.networks` is attached
/// here (API 1.41 refuses two endpoints at create); the executor connects the others (with
/// `endpoint_for`). A service with `network_mode` joins no network: the mode says it all.
///
/// Not in the body: `container_name` (the create call's `name`), `platform` (its `platform`
/// query parameter) and `stop_grace_period` beyond `StopTimeout` (a stop call that passes its
/// own timeout overrides it).
pub fn create_body(c: &ContainerToCreate) -> anyhow::Result<ContainerCreateBody> {
    let s = &c.spec;
    let restart_policy = restart_policy(s.restart.as_deref()).map_err(|e| {
        anyhow::anyhow!(
            "service {} of stack {}: {e}; use no, always, on-failure[:N] or unless-stopped",
            c.service,
            c.stack
        )
    })?;
    let (binds, mounts) = mounts(s)?;
    let (exposed_ports, port_bindings) = ports(s);

    let mut host_config = HostConfig {
        binds: non_empty(binds),
        mounts: non_empty(mounts),
        port_bindings,
        restart_policy,
        tmpfs: (!s.tmpfs.is_empty()).then(|| {
            s.tmpfs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        cap_add: non_empty(s.cap_add.clone()),
        cap_drop: non_empty(s.cap_drop.clone()),
        readonly_rootfs: s.read_only.then_some(true),
        extra_hosts: non_empty(s.extra_hosts.clone()),
        log_config: s.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| {
                l.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        }),
        memory: s.mem_limit,
        nano_cpus: s.nano_cpus,
        sysctls: hash_map(&s.sysctls),
        ulimits: non_empty(
            s.ulimits
                .iter()
                .map(|(name, l)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(l.soft),
                    hard: Some(l.hard),
                })
                .collect(),
        ),
        init: s.init,
        shm_size: s.shm_size,
        pid_mode: s.pid.clone(),
        ipc_mode: s.ipc.clone(),
        devices: non_empty(
            s.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect(),
        ),
        dns: non_empty(s.dns.clone()),
        dns_search: non_empty(s.dns_search.clone()),
        dns_options: non_empty(s.dns_opt.clone()),
        security_opt: non_empty(s.security_opt.clone()),
        privileged: s.privileged.then_some(true),
        group_add: non_empty(s.group_add.clone()),
        runtime: s.runtime.clone(),
        pids_limit: s.pids_limit,
        // compose sends the links here too; on a user-defined network the engine keeps them on
        // the endpoints (below) instead.
        links: non_empty(s.links.clone()),
        ..Default::default()
    };

    let networking_config = match &s.network_mode {
        Some(mode) => {
            host_config.network_mode = Some(mode.clone());
            None
        }
        None => c.networks.first().map(|(network, _)| {
            host_config.network_mode = Some(network.clone());
            NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network.clone(), endpoint_for(c, 0))])),
            }
        }),
    };
    let mut exposed_ports = exposed_ports;
    for e in &s.expose {
        if !exposed_ports.contains(e) {
            exposed_ports.push(e.clone());
        }
    }
    exposed_ports.sort();

    Ok(ContainerCreateBody {
        image: Some(s.image.clone()),
        cmd: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        env: non_empty(
            s.environment
                .iter()
                .map(|(k, v)| format!("{k}={}", v.expose()))
                .collect(),
        ),
        exposed_ports: non_empty(exposed_ports),
        healthcheck: s.healthcheck.as_ref().map(|h| HealthConfig {
            // No test: the engine keeps the image's, and takes the timings given here.
            test: (!h.test.is_empty()).then(|| h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            start_interval: None,
        }),
        labels: Some(
            c.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        hostname: s.hostname.clone(),
        domainname: s.domainname.clone(),
        stop_signal: s.stop_signal.clone(),
        stop_timeout: s.stop_grace_period,
        tty: s.tty.then_some(true),
        open_stdin: s.stdin_open.then_some(true),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// Endpoint settings for one network: just the aliases (Docker assigns the address).
fn endpoint(aliases: &[String]) -> EndpointSettings {
    EndpointSettings {
        aliases: non_empty(aliases.to_vec()),
        ..Default::default()
    }
}

/// Endpoint settings for `c.networks[i]`: its aliases, and the static addresses the service asks
/// for there (`ipv4_address`, `ipv6_address`).
pub fn endpoint_for(c: &ContainerToCreate, i: usize) -> EndpointSettings {
    let Some((_, aliases)) = c.networks.get(i) else {
        return EndpointSettings::default();
    };
    let mut e = endpoint(aliases);
    // `links:`: names only this container resolves, on every network it joins (as compose).
    e.links = non_empty(c.spec.links.clone());
    if let Some(attach) = attach_of(c, i) {
        if attach.ipv4_address.is_some() || attach.ipv6_address.is_some() {
            e.ipam_config = Some(EndpointIpamConfig {
                ipv4_address: attach.ipv4_address.clone(),
                ipv6_address: attach.ipv6_address.clone(),
                ..Default::default()
            });
        }
    }
    e
}

/// The service's attachment behind `c.networks[i]`. The planner lists the service's networks in
/// the order of `spec.networks` (by compose key), one entry each.
fn attach_of(c: &ContainerToCreate, i: usize) -> Option<&NetworkAttach> {
    if c.networks.len() != c.spec.networks.len() {
        return None;
    }
    c.spec.networks.values().nth(i)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn hash_map(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// compose's `restart:` → Docker's policy. None means compose's default, `no`.
fn restart_policy(restart: Option<&str>) -> anyhow::Result<Option<RestartPolicy>> {
    let Some(restart) = restart.map(str::trim) else {
        return Ok(None);
    };
    let (name, max) = match restart.split_once(':') {
        Some(("on-failure", n)) => match n.trim().parse::<i64>() {
            Ok(n) if n >= 0 => (RestartPolicyNameEnum::ON_FAILURE, Some(n)),
            _ => bail!("restart policy `{restart}` has an invalid retry count"),
        },
        Some(_) => bail!("unknown restart policy `{restart}`"),
        None => match restart {
            "no" | "" => (RestartPolicyNameEnum::NO, None),
            "always" => (RestartPolicyNameEnum::ALWAYS, None),
            "unless-stopped" => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            "on-failure" => (RestartPolicyNameEnum::ON_FAILURE, None),
            _ => bail!("unknown restart policy `{restart}`"),
        },
    };
    Ok(Some(RestartPolicy {
        name: Some(name),
        maximum_retry_count: max,
    }))
}

/// Exposed ports (`80/tcp`) and their host bindings. A port published twice (two host IPs)
/// gets two bindings under one key.
fn ports(s: &ServiceSpec) -> (Vec<String>, Option<PortMap>) {
    let mut exposed = BTreeSet::new();
    let mut bindings: PortMap = HashMap::new();
    for p in &s.ports {
        let proto = if p.protocol.is_empty() {
            "tcp"
        } else {
            p.protocol.as_str()
        };
        let key = format!("{}/{proto}", p.container_port);
        exposed.insert(key.clone());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    let bindings = (!bindings.is_empty()).then_some(bindings);
    (exposed.into_iter().collect(), bindings)
}

/// Bind mounts go in `Binds` (`src:dst:rw`, `src:dst:ro,z`), as compose v2 does, so the daemon
/// creates a missing host directory instead of failing; a path with `:` in it cannot be written
/// that way and becomes a `Mount` (which has no SELinux relabel: the spec refuses that pair).
/// Volumes (named or anonymous) are `Mount`s.
fn mounts(s: &ServiceSpec) -> anyhow::Result<(Vec<String>, Vec<Mount>)> {
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for m in &s.volumes {
        match m {
            MountSpec::Volume {
                source,
                target,
                read_only,
            } => mounts.push(Mount {
                typ: Some(MountType::VOLUME),
                source: (!source.is_empty()).then(|| source.clone()),
                target: Some(target.clone()),
                read_only: read_only.then_some(true),
                ..Default::default()
            }),
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let selinux = s.bind_selinux.get(target);
                if source.contains(':') || target.contains(':') {
                    if let Some(label) = selinux {
                        bail!("bind mount {target}: `{label}` cannot be used on a path with `:`");
                    }
                    mounts.push(Mount {
                        typ: Some(MountType::BIND),
                        source: Some(source.clone()),
                        target: Some(target.clone()),
                        read_only: read_only.then_some(true),
                        ..Default::default()
                    });
                } else {
                    let mut mode = if *read_only { "ro" } else { "rw" }.to_string();
                    if let Some(label) = selinux {
                        mode.push(',');
                        mode.push_str(label);
                    }
                    binds.push(format!("{source}:{target}:{mode}"));
                }
            }
        }
    }
    Ok((binds, mounts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::{
        DeviceSpec, HealthcheckSpec, LoggingSpec, PortSpec, Secret, UlimitSpec,
    };
    use std::collections::BTreeMap;

    fn container(spec: ServiceSpec) -> ContainerToCreate {
        ContainerToCreate {
            name: "shop-web-1".into(),
            stack: "shop".into(),
            service: "web".into(),
            spec,
            labels: BTreeMap::from([("io.gitmoor.managed".into(), "true".into())]),
            networks: vec![
                ("shop_default".into(), vec!["web".into()]),
                ("shop_db".into(), vec!["web".into(), "api".into()]),
            ],
            wait_healthy: false,
            wait_completed: false,
        }
    }

    #[test]
    fn maps_every_field() {
        let spec = ServiceSpec {
            image: "example-busybox:1".into(),
            command: Some(vec!["httpd".into(), "-f".into()]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            environment: BTreeMap::from([
                ("A".into(), Secret("1".into())),
                ("PASSWORD".into(), Secret("s3cret".into())),
            ]),
            ports: vec![
                PortSpec {
                    host_ip: "127.0.0.1".into(),
                    host_port: Some(8080),
                    container_port: 80,
                    protocol: "tcp".into(),
                },
                PortSpec {
                    host_ip: String::new(),
                    host_port: None,
                    container_port: 53,
                    protocol: "udp".into(),
                },
            ],
            volumes: vec![
                MountSpec::Volume {
                    source: "shop_data".into(),
                    target: "/data".into(),
                    read_only: false,
                },
                MountSpec::Volume {
                    source: String::new(),
                    target: "/cache".into(),
                    read_only: false,
                },
                MountSpec::Bind {
                    source: "/srv/conf".into(),
                    target: "/etc/app".into(),
                    read_only: true,
                },
            ],
            healthcheck: Some(HealthcheckSpec {
                test: vec!["CMD".into(), "true".into()],
                interval_ns: Some(1_000_000_000),
                timeout_ns: Some(2_000_000_000),
                retries: Some(3),
                start_period_ns: Some(5_000_000_000),
            }),
            restart: Some("on-failure:3".into()),
            user: Some("1000:1000".into()),
            working_dir: Some("/app".into()),
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            read_only: true,
            tmpfs: BTreeMap::from([("/tmp".into(), "size=64m".into())]),
            extra_hosts: vec!["db.local:10.0.0.2".into()],
            logging: Some(LoggingSpec {
                driver: Some("json-file".into()),
                options: BTreeMap::from([("max-size".into(), "10m".into())]),
            }),
            mem_limit: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            ..Default::default()
        };
        let body = create_body(&container(spec)).expect("valid spec");
        assert_eq!(body.image.as_deref(), Some("example-busybox:1"));
        assert_eq!(body.cmd, Some(vec!["httpd".into(), "-f".into()]));
        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        assert_eq!(
            body.env,
            Some(vec!["A=1".to_string(), "PASSWORD=s3cret".to_string()])
        );
        assert_eq!(
            body.exposed_ports,
            Some(vec!["53/udp".to_string(), "80/tcp".to_string()])
        );
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.working_dir.as_deref(), Some("/app"));
        let hc = body.healthcheck.expect("healthcheck");
        assert_eq!(hc.test, Some(vec!["CMD".into(), "true".into()]));
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries, hc.start_period),
            (
                Some(1_000_000_000),
                Some(2_000_000_000),
                Some(3),
                Some(5_000_000_000)
            )
        );
        assert_eq!(
            body.labels
                .as_ref()
                .and_then(|l| l.get("io.gitmoor.managed")),
            Some(&"true".to_string())
        );

        let hc = body.host_config.expect("host config");
        let pb = hc.port_bindings.expect("port bindings");
        assert_eq!(
            pb.get("80/tcp"),
            Some(&Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("8080".into())
            }]))
        );
        assert_eq!(
            pb.get("53/udp"),
            Some(&Some(vec![PortBinding {
                host_ip: Some(String::new()),
                host_port: Some(String::new())
            }]))
        );
        assert_eq!(hc.binds, Some(vec!["/srv/conf:/etc/app:ro".to_string()]));
        let mounts = hc.mounts.expect("mounts");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].source.as_deref(), Some("shop_data"));
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].source, None, "anonymous volume has no source");
        let rp = hc.restart_policy.expect("restart policy");
        assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(rp.maximum_retry_count, Some(3));
        assert_eq!(
            hc.tmpfs.and_then(|t| t.get("/tmp").cloned()).as_deref(),
            Some("size=64m")
        );
        assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.extra_hosts, Some(vec!["db.local:10.0.0.2".to_string()]));
        let lc = hc.log_config.expect("log config");
        assert_eq!(lc.typ.as_deref(), Some("json-file"));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.network_mode.as_deref(), Some("shop_default"));

        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .expect("endpoints");
        assert_eq!(endpoints.len(), 1, "API 1.41 takes one endpoint at create");
        assert_eq!(
            endpoints
                .get("shop_default")
                .and_then(|e| e.aliases.clone()),
            Some(vec!["web".to_string()])
        );
    }

    #[test]
    fn minimal_spec_sets_nothing_extra() {
        let mut c = container(ServiceSpec {
            image: "x:1".into(),
            ..Default::default()
        });
        c.networks.clear();
        let body = create_body(&c).expect("valid");
        let hc = body.host_config.expect("host config");
        assert_eq!(body.env, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(hc.port_bindings, None);
        assert_eq!(hc.restart_policy, None);
        assert_eq!(hc.readonly_rootfs, None);
        assert_eq!(hc.network_mode, None);
        assert_eq!(body.networking_config, None);
    }

    #[test]
    fn maps_the_keys_real_files_use() {
        let spec = ServiceSpec {
            image: "x:1".into(),
            ports: vec![PortSpec {
                host_ip: String::new(),
                host_port: Some(8080),
                container_port: 80,
                protocol: "tcp".into(),
            }],
            expose: vec!["80/tcp".into(), "5432/tcp".into()],
            hostname: Some("web1".into()),
            domainname: Some("example.org".into()),
            stop_signal: Some("SIGINT".into()),
            stop_grace_period: Some(90),
            sysctls: BTreeMap::from([("net.core.somaxconn".into(), "1024".into())]),
            ulimits: BTreeMap::from([("nofile".into(), UlimitSpec { soft: 1, hard: 2 })]),
            init: Some(true),
            shm_size: Some(1 << 28),
            pid: Some("host".into()),
            ipc: Some("container:shop-db-1".into()),
            devices: vec![DeviceSpec {
                host: "/dev/fuse".into(),
                container: "/dev/fuse".into(),
                permissions: "rwm".into(),
            }],
            dns: vec!["1.1.1.1".into()],
            dns_search: vec!["example.org".into()],
            dns_opt: vec!["ndots:2".into()],
            security_opt: vec!["no-new-privileges:true".into()],
            privileged: true,
            group_add: vec!["audio".into()],
            stdin_open: true,
            tty: true,
            runtime: Some("runc".into()),
            ..Default::default()
        };
        let body = create_body(&container(spec)).expect("valid");
        assert_eq!(
            body.exposed_ports,
            Some(vec!["5432/tcp".to_string(), "80/tcp".to_string()])
        );
        assert_eq!(body.hostname.as_deref(), Some("web1"));
        assert_eq!(body.domainname.as_deref(), Some("example.org"));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.stop_timeout, Some(90));
        assert_eq!((body.tty, body.open_stdin), (Some(true), Some(true)));
        let hc = body.host_config.expect("host config");
        assert_eq!(
            hc.sysctls
                .and_then(|s| s.get("net.core.somaxconn").cloned()),
            Some("1024".to_string())
        );
        assert_eq!(
            hc.ulimits,
            Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(1),
                hard: Some(2)
            }])
        );
        assert_eq!(hc.init, Some(true));
        assert_eq!(hc.shm_size, Some(1 << 28));
        assert_eq!(hc.pid_mode.as_deref(), Some("host"));
        assert_eq!(hc.ipc_mode.as_deref(), Some("container:shop-db-1"));
        assert_eq!(
            hc.devices,
            Some(vec![DeviceMapping {
                path_on_host: Some("/dev/fuse".into()),
                path_in_container: Some("/dev/fuse".into()),
                cgroup_permissions: Some("rwm".into())
            }])
        );
        assert_eq!(hc.dns, Some(vec!["1.1.1.1".to_string()]));
        assert_eq!(hc.dns_search, Some(vec!["example.org".to_string()]));
        assert_eq!(hc.dns_options, Some(vec!["ndots:2".to_string()]));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(hc.group_add, Some(vec!["audio".to_string()]));
        assert_eq!(hc.runtime.as_deref(), Some("runc"));
    }

    #[test]
    fn pids_limit_links_selinux_and_an_inherited_healthcheck() {
        let spec = ServiceSpec {
            image: "x:1".into(),
            pids_limit: Some(100),
            links: vec!["shop-db-1:database".into(), "shop-db-1:db-1".into()],
            volumes: vec![
                MountSpec::Bind {
                    source: "/srv/conf".into(),
                    target: "/etc/app".into(),
                    read_only: true,
                },
                MountSpec::Bind {
                    source: "/srv/data".into(),
                    target: "/data".into(),
                    read_only: false,
                },
                MountSpec::Bind {
                    source: "/srv/plain".into(),
                    target: "/plain".into(),
                    read_only: false,
                },
            ],
            bind_selinux: BTreeMap::from([
                ("/etc/app".to_string(), "z".to_string()),
                ("/data".to_string(), "Z".to_string()),
            ]),
            healthcheck: Some(HealthcheckSpec {
                test: vec![],
                interval_ns: Some(30_000_000_000),
                timeout_ns: None,
                retries: Some(3),
                start_period_ns: None,
            }),
            ..Default::default()
        };
        let c = container(spec);
        let body = create_body(&c).expect("valid");
        let hc = body.healthcheck.expect("healthcheck");
        assert_eq!(hc.test, None, "no test: the engine keeps the image's");
        assert_eq!((hc.interval, hc.retries), (Some(30_000_000_000), Some(3)));
        let host = body.host_config.expect("host config");
        assert_eq!(host.pids_limit, Some(100));
        assert_eq!(
            host.binds,
            Some(vec![
                "/srv/conf:/etc/app:ro,z".to_string(),
                "/srv/data:/data:rw,Z".to_string(),
                "/srv/plain:/plain:rw".to_string(),
            ])
        );
        let links = Some(vec![
            "shop-db-1:database".to_string(),
            "shop-db-1:db-1".to_string(),
        ]);
        assert_eq!(host.links, links);
        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .expect("endpoints");
        assert_eq!(endpoints["shop_default"].links, links);
        assert_eq!(endpoint_for(&c, 1).links, links, "and on every network");
    }

    #[test]
    fn a_relabel_on_a_path_with_a_colon_is_refused_not_dropped() {
        let c = container(ServiceSpec {
            image: "x:1".into(),
            volumes: vec![MountSpec::Bind {
                source: "/srv/a:b".into(),
                target: "/x".into(),
                read_only: false,
            }],
            bind_selinux: BTreeMap::from([("/x".to_string(), "z".to_string())]),
            ..Default::default()
        });
        assert!(create_body(&c).is_err());
    }

    #[test]
    fn network_mode_replaces_the_networks() {
        for mode in ["host", "none", "container:shop-vpn-1"] {
            let mut c = container(ServiceSpec {
                image: "x:1".into(),
                network_mode: Some(mode.into()),
                ..Default::default()
            });
            // Even if a planner passed networks, the mode wins: Docker refuses both.
            c.networks = vec![("shop_default".into(), vec!["web".into()])];
            let body = create_body(&c).expect("valid");
            assert_eq!(body.networking_config, None, "{mode}");
            assert_eq!(
                body.host_config.and_then(|h| h.network_mode).as_deref(),
                Some(mode)
            );
        }
    }

    #[test]
    fn static_addresses_go_on_their_endpoint() {
        let spec = ServiceSpec {
            image: "x:1".into(),
            networks: BTreeMap::from([
                (
                    "db".to_string(),
                    NetworkAttach {
                        aliases: vec!["web".into(), "api".into()],
                        ipv4_address: Some("172.28.0.10".into()),
                        ipv6_address: None,
                    },
                ),
                (
                    "default".to_string(),
                    NetworkAttach {
                        aliases: vec!["web".into()],
                        ..Default::default()
                    },
                ),
            ]),
            ..Default::default()
        };
        let mut c = container(spec);
        c.networks = vec![
            ("shop_db".into(), vec!["web".into(), "api".into()]),
            ("shop_default".into(), vec!["web".into()]),
        ];
        let body = create_body(&c).expect("valid");
        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .expect("endpoints");
        let first = endpoints.get("shop_db").expect("first network");
        assert_eq!(
            first
                .ipam_config
                .as_ref()
                .and_then(|i| i.ipv4_address.clone()),
            Some("172.28.0.10".to_string())
        );
        assert_eq!(endpoint_for(&c, 1).ipam_config, None);
        assert_eq!(endpoint_for(&c, 1).aliases, Some(vec!["web".to_string()]));
        assert_eq!(endpoint_for(&c, 7), EndpointSettings::default());
    }

    #[test]
    fn restart_policies() {
        let name = |r: &str| restart_policy(Some(r)).expect("valid").and_then(|p| p.name);
        assert_eq!(name("no"), Some(RestartPolicyNameEnum::NO));
        assert_eq!(name("always"), Some(RestartPolicyNameEnum::ALWAYS));
        assert_eq!(
            name("unless-stopped"),
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(name("on-failure"), Some(RestartPolicyNameEnum::ON_FAILURE));
        assert!(restart_policy(Some("sometimes")).is_err());
        assert!(restart_policy(Some("on-failure:x")).is_err());
        assert!(restart_policy(None).expect("none").is_none());
    }

    #[test]
    fn bad_restart_policy_names_the_service_not_the_env() {
        let c = container(ServiceSpec {
            image: "x:1".into(),
            restart: Some("maybe".into()),
            environment: BTreeMap::from([("TOKEN".into(), Secret("hunter2".into()))]),
            ..Default::default()
        });
        let err = format!("{:#}", create_body(&c).expect_err("invalid restart"));
        assert!(err.contains("service web of stack shop"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
