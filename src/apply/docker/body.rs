//! ServiceSpec → the Docker create-container body. Pure, so every field's mapping is unit-tested.

use crate::plan::ContainerToCreate;
use crate::spec::model::{MountSpec, ServiceSpec};
use anyhow::bail;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, Mount,
    MountType, NetworkingConfig, PortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
};
use std::collections::{BTreeSet, HashMap};

/// The body `POST /containers/create` gets for `c`. Only the first of `c.networks` is attached
/// here (API 1.41 refuses two endpoints at create); the executor connects the others.
pub fn create_body(c: &ContainerToCreate) -> anyhow::Result<ContainerCreateBody> {
    let s = &c.spec;
    let restart_policy = restart_policy(s.restart.as_deref()).map_err(|e| {
        anyhow::anyhow!(
            "service {} of stack {}: {e}; use no, always, on-failure[:N] or unless-stopped",
            c.service,
            c.stack
        )
    })?;
    let (binds, mounts) = mounts(s);
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
        ..Default::default()
    };

    let networking_config = c.networks.first().map(|(network, aliases)| {
        host_config.network_mode = Some(network.clone());
        NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.clone(), endpoint(aliases))])),
        }
    });

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
            test: Some(h.test.clone()),
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
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// Endpoint settings for one network: just the aliases (Docker assigns the address).
pub(crate) fn endpoint(aliases: &[String]) -> EndpointSettings {
    EndpointSettings {
        aliases: non_empty(aliases.to_vec()),
        ..Default::default()
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
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

/// Bind mounts go in `Binds` (`src:dst[:ro]`), as compose v2 does for the short syntax, so the
/// daemon creates a missing host directory instead of failing; a path with `:` in it cannot be
/// written that way and becomes a `Mount`. Volumes (named or anonymous) are `Mount`s.
fn mounts(s: &ServiceSpec) -> (Vec<String>, Vec<Mount>) {
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
                if source.contains(':') || target.contains(':') {
                    mounts.push(Mount {
                        typ: Some(MountType::BIND),
                        source: Some(source.clone()),
                        target: Some(target.clone()),
                        read_only: read_only.then_some(true),
                        ..Default::default()
                    });
                } else {
                    let mode = if *read_only { "ro" } else { "rw" };
                    binds.push(format!("{source}:{target}:{mode}"));
                }
            }
        }
    }
    (binds, mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::{HealthcheckSpec, LoggingSpec, PortSpec, Secret};
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
