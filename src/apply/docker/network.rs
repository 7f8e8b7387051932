//! Networks and volumes. Volumes are only ever created: nothing here removes one.

use super::{docker_message, status_code, DockerExecutor};
use crate::labels;
use crate::spec::model::{NetworkSpec, VolumeSpec};
use anyhow::bail;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use std::collections::HashMap;

impl DockerExecutor {
    /// Returns the id of the network `net` names, creating it when missing. Idempotent: a network
    /// of that name carrying gitmoor's label is reused (API 1.41 would happily make a second one
    /// with the same name, so the lookup comes first).
    pub async fn ensure_network(&self, net: &NetworkSpec) -> anyhow::Result<String> {
        let filters = HashMap::from([("name", vec![net.name.clone()])]);
        let listed = match self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
        {
            Ok(listed) => listed,
            Err(e) => bail!(
                "looking up network {} failed: {}; is dockerd running?",
                net.name,
                docker_message(&e)
            ),
        };
        // The name filter matches substrings: keep exact matches only, oldest id order stable.
        let mut same_name: Vec<_> = listed
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(net.name.as_str()))
            .collect();
        same_name.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        let is_ours = |n: &&bollard::models::Network| {
            n.labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED))
                .map(String::as_str)
                == Some("true")
        };
        if let Some(ours) = same_name.iter().find(is_ours) {
            // Another repo's network of that name is not reused (its containers and ours would
            // share it, and its repo would remove it under ours). The planner refuses the name
            // already; this guards the moment between plan and apply.
            let label = |k: &str| ours.labels.as_ref().and_then(|l| l.get(k)).cloned();
            let (theirs, mine) = (label(labels::REPO), net.labels.get(labels::REPO));
            if let (Some(theirs), Some(mine)) = (&theirs, mine) {
                if theirs != mine {
                    bail!(
                        "a network named {} already exists for repo {theirs}, not this repo \
                         ({mine}); gitmoor never reuses another repo's network: rename the stack",
                        net.name
                    );
                }
            }
            if same_name.len() > 1 {
                tracing::warn!(network = %net.name, "several networks share this name; using the oldest managed one");
            }
            if let Some(id) = &ours.id {
                return Ok(id.clone());
            }
        }
        if !same_name.is_empty() {
            bail!(
                "a network named {} already exists and is not managed by gitmoor; remove it \
                 (`docker network rm {}`, after removing the containers attached to it) or \
                 rename the stack",
                net.name,
                net.name
            );
        }

        let request = NetworkCreateRequest {
            name: net.name.clone(),
            driver: Some(net.driver.clone().unwrap_or_else(|| "bridge".to_string())),
            internal: Some(net.internal),
            attachable: Some(net.attachable),
            enable_ipv6: Some(net.enable_ipv6),
            options: (!net.driver_opts.is_empty()).then(|| {
                net.driver_opts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            ipam: net.ipam.as_ref().map(|i| bollard::models::Ipam {
                driver: i.driver.clone(),
                config: Some(
                    i.config
                        .iter()
                        .map(|p| bollard::models::IpamConfig {
                            subnet: p.subnet.clone(),
                            ip_range: p.ip_range.clone(),
                            gateway: p.gateway.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                options: (!i.options.is_empty()).then(|| {
                    i.options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                }),
            }),
            labels: Some(
                net.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(created) => {
                tracing::info!(network = %net.name, internal = net.internal, "created network");
                Ok(created.id)
            }
            Err(e) => {
                let msg = docker_message(&e);
                let hint = if msg.contains("address pool") {
                    "; Docker's default address pools hold only about 30 bridge networks: add \
                     \"default-address-pools\": [{\"base\": \"172.20.0.0/14\", \"size\": 24}] to \
                     /etc/docker/daemon.json and restart dockerd"
                } else {
                    ""
                };
                bail!("creating network {} failed: {msg}{hint}", net.name)
            }
        }
    }

    /// Removes a network by id. Already gone is fine.
    pub async fn remove_network(&self, id: &str) -> anyhow::Result<()> {
        match self.docker.remove_network(id).await {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => bail!(
                "removing network {id} failed: {}; if containers are still attached, see \
                 `docker network inspect {id}`",
                docker_message(&e)
            ),
        }
    }

    /// Makes sure the named volume exists. An existing one is used as it is (its data is the
    /// point), even when gitmoor did not create it.
    pub async fn ensure_volume(&self, vol: &VolumeSpec) -> anyhow::Result<()> {
        match self.docker.inspect_volume(&vol.name).await {
            Ok(existing) => {
                if existing.labels.get(labels::MANAGED).map(String::as_str) != Some("true") {
                    tracing::warn!(volume = %vol.name, "volume exists but was not created by gitmoor; using it as it is");
                }
                return Ok(());
            }
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => bail!(
                "inspecting volume {} failed: {}; is dockerd running?",
                vol.name,
                docker_message(&e)
            ),
        }
        let request = VolumeCreateRequest {
            name: Some(vol.name.clone()),
            driver: Some(vol.driver.clone().unwrap_or_else(|| "local".to_string())),
            driver_opts: (!vol.driver_opts.is_empty()).then(|| {
                vol.driver_opts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            labels: Some(
                vol.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            ..Default::default()
        };
        match self.docker.create_volume(request).await {
            Ok(_) => {
                tracing::info!(volume = %vol.name, "created volume");
                Ok(())
            }
            Err(e) => bail!(
                "creating volume {} failed: {}",
                vol.name,
                docker_message(&e)
            ),
        }
    }
}
