//! Reads the host's Docker objects in three listing calls (containers, networks, volumes),
//! whatever the number of stacks: one reconcile never inspects containers one by one, except the
//! rare ones that join another's PID or IPC namespace (the listing does not show those modes).
//! The images a commit names are inspected apart (`images.rs`), once the commit is read.

use super::{Observed, ObservedContainer, ObservedNetwork, ObservedVolume};
use crate::labels;
use anyhow::Context;
use bollard::models::{ContainerSummary, Network, Volume};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use bollard::Docker;
use std::collections::{BTreeMap, HashMap};

/// What is on the host now, as far as gitmoor instance `instance` owns it (every repo's objects of
/// that instance: the planner tells them apart by their `io.gitmoor.repo` label). Exactly three API
/// calls, run concurrently, each filtered by label where the engine can filter: listing every
/// container of a busy host costs ~100 ms, listing ours a few ms. (Names of containers we do not
/// own are looked up by `container_names` only when the plan would create one.)
pub async fn observe(docker: &Docker, instance: &str) -> anyhow::Result<Observed> {
    let managed_filter: HashMap<&str, Vec<String>> =
        HashMap::from([("label", vec![format!("{}=true", labels::MANAGED)])]);
    let instance_filter: HashMap<&str, Vec<String>> =
        HashMap::from([("label", vec![format!("{}={instance}", labels::INSTANCE)])]);

    let containers = async {
        docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&instance_filter)
                    .build(),
            ))
            .await
            .context("listing containers failed; is dockerd running and reachable?")
    };
    let networks = async {
        docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new()
                    .filters(&managed_filter)
                    .build(),
            ))
            .await
            .context("listing gitmoor's networks failed; is dockerd running and reachable?")
    };
    let volumes = async {
        docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new()
                    .filters(&managed_filter)
                    .build(),
            ))
            .await
            .context("listing gitmoor's volumes failed; is dockerd running and reachable?")
    };
    let (containers, networks, volumes) = tokio::try_join!(containers, networks, volumes)?;

    let mut observed = Observed::default();
    for summary in &containers {
        if let Some(name) = primary_name(summary) {
            observed.all_container_names.push(name.to_string());
        }
        if let Some(container) = observed_container(summary) {
            observed
                .published
                .extend(published_ports(summary, &container));
            observed.containers.push(container);
        }
    }
    observed.all_container_names.sort();
    join_pid_ipc(docker, &mut observed.containers).await?;
    observed
        .containers
        .sort_by(|a, b| (&a.stack, &a.service, &a.name).cmp(&(&b.stack, &b.service, &b.name)));

    observed.networks = networks.iter().filter_map(observed_network).collect();
    observed
        .networks
        .sort_by(|a, b| (&a.stack, &a.name, &a.id).cmp(&(&b.stack, &b.name, &b.id)));

    observed.volumes = volumes
        .volumes
        .unwrap_or_default()
        .iter()
        .filter_map(observed_volume)
        .collect();
    observed
        .volumes
        .sort_by(|a, b| (&a.stack, &a.name).cmp(&(&b.stack, &b.name)));

    let mine = |l: &BTreeMap<String, String>| {
        l.get(labels::INSTANCE).map(String::as_str) == Some(instance)
    };
    observed.containers.retain(|c| mine(&c.labels));
    observed.networks.retain(|n| mine(&n.labels));
    observed.volumes.retain(|v| mine(&v.labels));
    Ok(observed)
}

/// Fills `joins_pid` and `joins_ipc` of this instance's containers whose fingerprint label shows
/// a `pid` or `ipc` setting: the listing does not carry those modes, so this is one inspect call
/// per such container (concurrently), and none at all on a host without them. A container gone
/// since the listing is left as it was (its join unknown); the planner acts on it anyway.
async fn join_pid_ipc(docker: &Docker, containers: &mut [ObservedContainer]) -> anyhow::Result<()> {
    // The listing is filtered by instance already: these are all ours.
    let wanted: Vec<usize> = containers
        .iter()
        .enumerate()
        .filter(|(_, c)| sets_pid_or_ipc(&c.labels))
        .map(|(i, _)| i)
        .collect();
    let inspected = futures_util::future::join_all(
        wanted
            .iter()
            .map(|&i| docker.inspect_container(&containers[i].id, None)),
    )
    .await;
    for (&i, info) in wanted.iter().zip(inspected) {
        let host = match info {
            Ok(info) => info.host_config.unwrap_or_default(),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "inspecting container {} failed; is dockerd running and reachable?",
                    containers[i].name
                )))
            }
        };
        containers[i].joins_pid = joined_id(host.pid_mode.as_deref());
        containers[i].joins_ipc = joined_id(host.ipc_mode.as_deref());
    }
    Ok(())
}

/// Whether the container was made from a spec with `pid:` or `ipc:` (its fingerprint label has a
/// hash for the field exactly when the field is set).
/// Only the two keys are kept: the other fields are skipped unread (no allocation per field, for
/// each of the host's containers at every reconcile).
fn sets_pid_or_ipc(labels: &BTreeMap<String, String>) -> bool {
    #[derive(serde::Deserialize)]
    struct PidIpc {
        pid: Option<serde::de::IgnoredAny>,
        ipc: Option<serde::de::IgnoredAny>,
    }
    labels
        .get(labels::FINGERPRINT)
        .and_then(|f| serde_json::from_str::<PidIpc>(f).ok())
        .is_some_and(|f| f.pid.is_some() || f.ipc.is_some())
}

/// `container:<id>` (what Docker keeps for a network, PID or IPC mode that joins a container)
/// -> the id.
fn joined_id(mode: Option<&str>) -> Option<String> {
    mode?
        .strip_prefix("container:")
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

/// Which of `names` are taken by a container (any container: ours, another instance's, a
/// hand-made one). One listing call with name filters; the engine matches substrings, so the
/// answer is narrowed to exact names here.
pub async fn container_names(docker: &Docker, names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let filter: HashMap<&str, Vec<String>> = HashMap::from([("name", names.to_vec())]);
    let found = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .context("listing containers by name failed; is dockerd running and reachable?")?;
    let mut taken: Vec<String> = found
        .iter()
        .filter_map(primary_name)
        .filter(|n| names.iter().any(|w| w == n))
        .map(str::to_string)
        .collect();
    taken.sort();
    Ok(taken)
}

fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(labels::MANAGED).map(String::as_str) == Some("true")
}

pub(super) fn sorted_labels(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The container's own name, without the leading `/`. The list also carries legacy link names
/// (`/other/alias`); those contain a second `/` and are skipped.
fn primary_name(summary: &ContainerSummary) -> Option<&str> {
    summary
        .names
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .find(|n| !n.contains('/'))
}

/// The host ports a running container publishes (Docker lists one entry per address family).
fn published_ports(
    summary: &ContainerSummary,
    c: &ObservedContainer,
) -> Vec<super::PublishedPortSeen> {
    use bollard::models::PortSummaryTypeEnum;
    if c.state != "running" {
        return Vec::new();
    }
    let mut out: Vec<super::PublishedPortSeen> = summary
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some(super::PublishedPortSeen {
                container: c.name.clone(),
                host_ip: p.ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                host_port: p.public_port?,
                proto: match p.typ {
                    Some(PortSummaryTypeEnum::UDP) => "udp",
                    _ => "tcp",
                }
                .into(),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn observed_container(summary: &ContainerSummary) -> Option<ObservedContainer> {
    let labels = sorted_labels(summary.labels.as_ref());
    if !is_managed(&labels) {
        return None;
    }
    let id = summary.id.clone()?;
    let status = summary.status.as_deref().unwrap_or_default();
    Some(ObservedContainer {
        name: primary_name(summary).unwrap_or(&id).to_string(),
        id,
        stack: labels.get(labels::PROJECT).cloned().unwrap_or_default(),
        service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
        image: summary.image.clone().unwrap_or_default(),
        image_id: summary.image_id.clone().unwrap_or_default(),
        state: summary.state.map(|s| s.to_string()).unwrap_or_default(),
        health: parse_health(status).map(str::to_string),
        labels,
        joins_network: joined_id(
            summary
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref()),
        ),
        joins_pid: None,
        joins_ipc: None,
    })
}

fn observed_network(net: &Network) -> Option<ObservedNetwork> {
    let labels = sorted_labels(net.labels.as_ref());
    if !is_managed(&labels) {
        return None;
    }
    Some(ObservedNetwork {
        id: net.id.clone()?,
        name: net.name.clone().unwrap_or_default(),
        stack: labels.get(labels::PROJECT).cloned().unwrap_or_default(),
        labels,
    })
}

fn observed_volume(vol: &Volume) -> Option<ObservedVolume> {
    let labels = sorted_labels(Some(&vol.labels));
    if !is_managed(&labels) {
        return None;
    }
    Some(ObservedVolume {
        name: vol.name.clone(),
        stack: labels.get(labels::PROJECT).cloned().unwrap_or_default(),
        labels,
    })
}

/// Health as the container list's status string shows it: `Up 3 seconds (healthy)`,
/// `Up 1 second (health: starting)`, `Up 2 minutes (unhealthy)`. None without a healthcheck
/// (or when the container is not running).
pub fn parse_health(status: &str) -> Option<&'static str> {
    if status.contains("(health: starting)") {
        Some("starting")
    } else if status.contains("(unhealthy)") {
        Some("unhealthy")
    } else if status.contains("(healthy)") {
        Some("healthy")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_from_status() {
        assert_eq!(parse_health("Up 3 seconds (healthy)"), Some("healthy"));
        assert_eq!(
            parse_health("Up Less than a second (health: starting)"),
            Some("starting")
        );
        assert_eq!(parse_health("Up 2 minutes (unhealthy)"), Some("unhealthy"));
        assert_eq!(parse_health("Up 2 minutes"), None);
        assert_eq!(parse_health("Exited (1) 3 seconds ago"), None);
        assert_eq!(parse_health("Created"), None);
        assert_eq!(parse_health(""), None);
    }

    #[test]
    fn names_skip_links() {
        let summary = ContainerSummary {
            names: Some(vec!["/web/db-alias".into(), "/shop-db-1".into()]),
            ..Default::default()
        };
        assert_eq!(primary_name(&summary), Some("shop-db-1"));
    }

    #[test]
    fn only_managed_containers_are_observed() {
        let mut summary = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/shop-web-1".into()]),
            status: Some("Up 5 seconds (healthy)".into()),
            labels: Some(HashMap::from([
                (labels::PROJECT.to_string(), "shop".to_string()),
                (labels::SERVICE.to_string(), "web".to_string()),
            ])),
            ..Default::default()
        };
        assert!(observed_container(&summary).is_none());
        if let Some(l) = summary.labels.as_mut() {
            l.insert(labels::MANAGED.to_string(), "true".to_string());
        }
        let c = observed_container(&summary).expect("managed container observed");
        assert_eq!(c.name, "shop-web-1");
        assert_eq!(c.stack, "shop");
        assert_eq!(c.service, "web");
        assert_eq!(c.health.as_deref(), Some("healthy"));
        assert_eq!(c.joins_network, None);
        summary.host_config = Some(bollard::models::ContainerSummaryHostConfig {
            network_mode: Some("container:0123abcd".into()),
            ..Default::default()
        });
        let c = observed_container(&summary).expect("managed container observed");
        assert_eq!(c.joins_network.as_deref(), Some("0123abcd"));
    }

    #[test]
    fn only_containers_with_pid_or_ipc_settings_are_inspected() {
        let fp = |f: &str| BTreeMap::from([(labels::FINGERPRINT.to_string(), f.to_string())]);
        assert!(sets_pid_or_ipc(&fp(r#"{"image":"1","pid":"2"}"#)));
        assert!(sets_pid_or_ipc(&fp(r#"{"ipc":"2"}"#)));
        assert!(!sets_pid_or_ipc(&fp(r#"{"image":"1","network_mode":"2"}"#)));
        assert!(!sets_pid_or_ipc(&fp("not json")));
        assert!(!sets_pid_or_ipc(&BTreeMap::new()));
        assert_eq!(joined_id(Some("container:abc")), Some("abc".into()));
        assert_eq!(joined_id(Some("host")), None);
        assert_eq!(joined_id(Some("container:")), None);
        assert_eq!(joined_id(None), None);
    }
}
