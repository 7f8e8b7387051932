//! Creating one container: the body, name conflicts, and the extra networks.

use super::body::{create_body, endpoint_for};
use super::{docker_message, status_code, DockerExecutor};
use crate::labels;
use crate::plan::ContainerToCreate;
use anyhow::{anyhow, bail};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, NetworkConnectRequest};
use bollard::query_parameters::{CreateContainerOptions, CreateContainerOptionsBuilder};

/// Grace period for stopping a leftover container found under our name.
const LEFTOVER_GRACE_SECS: i64 = 10;

impl DockerExecutor {
    /// Creates (does not start) the container `c` describes and connects it to all its networks.
    /// Returns its id. A leftover of an interrupted apply under the same name (gitmoor's labels,
    /// same stack, service, instance and repo) is removed first; any other container of that name
    /// is an error.
    pub async fn create_container(&self, c: &ContainerToCreate) -> anyhow::Result<String> {
        self.create_container_inheriting(c, &[]).await
    }

    /// `create_container`, mounting the old container's anonymous volumes `inherited` (a
    /// recreate, see `inherit.rs`).
    pub async fn create_container_inheriting(
        &self,
        c: &ContainerToCreate,
        inherited: &[super::inherit::Inherited],
    ) -> anyhow::Result<String> {
        let mut body = create_body(c)?;
        super::inherit::apply(&mut body, inherited);
        let id = match self.try_create(c, body.clone()).await {
            Ok(id) => id,
            Err(e) if status_code(&e) == Some(409) => {
                self.clear_name_conflict(c).await?;
                self.try_create(c, body)
                    .await
                    .map_err(|e| create_error(c, &e))?
            }
            Err(e) => return Err(create_error(c, &e)),
        };

        // Each extra network gets its aliases and the static address the service asks for there
        // (`ipv4_address`/`ipv6_address` on a second network must not be silently dropped).
        for (i, (network, _)) in c.networks.iter().enumerate().skip(1) {
            let request = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(endpoint_for(c, i)),
            };
            if let Err(e) = self.docker.connect_network(network, request).await {
                // Leave no half-wired container behind: the next reconcile creates it afresh.
                if let Err(cleanup) = self.stop_and_remove(&id, 0).await {
                    tracing::warn!(container = %c.name, "cleanup after a failed network connect: {cleanup:#}");
                }
                bail!(
                    "connecting container {} to network {network} failed: {}; check that the \
                     network exists (`docker network ls`) and reconcile again",
                    c.name,
                    docker_message(&e)
                );
            }
        }
        Ok(id)
    }

    async fn try_create(
        &self,
        c: &ContainerToCreate,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let created = self
            .docker
            .create_container(Some(create_options(c)), body)
            .await?;
        for warning in &created.warnings {
            tracing::warn!(container = %c.name, "docker: {warning}");
        }
        Ok(created.id)
    }

    /// Another container holds `c.name`. Remove it only when it is our own leftover.
    async fn clear_name_conflict(&self, c: &ContainerToCreate) -> anyhow::Result<()> {
        let existing = match self.docker.inspect_container(&c.name, None).await {
            Ok(existing) => existing,
            // Gone in the meantime: the retry will tell.
            Err(e) if status_code(&e) == Some(404) => return Ok(()),
            Err(e) => bail!(
                "a container named {} already exists and could not be inspected: {}",
                c.name,
                docker_message(&e)
            ),
        };
        let labels = existing
            .config
            .as_ref()
            .and_then(|cfg| cfg.labels.clone())
            .unwrap_or_default();
        let label = |k: &str| labels.get(k).map(String::as_str);
        if label(labels::MANAGED) != Some("true") {
            let made_by = match label(labels::PROJECT) {
                Some(project) => format!(" (docker compose project {project} made it)"),
                None => String::new(),
            };
            bail!(
                "a container named {} already exists and is not managed by gitmoor{made_by}; \
                 remove or rename it (`docker rm -f {}` or `docker rename {} <new name>`)",
                c.name,
                c.name,
                c.name
            );
        }
        if label(labels::PROJECT) != Some(c.stack.as_str())
            || label(labels::SERVICE) != Some(c.service.as_str())
            || label(labels::INSTANCE) != c.labels.get(labels::INSTANCE).map(String::as_str)
        {
            bail!(
                "a container named {} already exists for stack {} service {}, not stack {} \
                 service {}; rename one of the stacks or services",
                c.name,
                label(labels::PROJECT).unwrap_or("?"),
                label(labels::SERVICE).unwrap_or("?"),
                c.stack,
                c.service
            );
        }
        // The planner never asks for a name another repo's container holds; this guards the
        // moment between plan and apply (another config applying meanwhile).
        let repo = c.labels.get(labels::REPO).map(String::as_str);
        if label(labels::REPO) != repo {
            bail!(
                "a container named {} already exists for stack {} of repo {}, not of this repo \
                 ({}); gitmoor never replaces another repo's containers: rename the stack, or \
                 take it over with `adopt: [{}]` in gitmoor's config",
                c.name,
                c.stack,
                label(labels::REPO).unwrap_or("(unlabelled: made by an older gitmoor)"),
                repo.unwrap_or("?"),
                c.stack
            );
        }
        let id = existing.id.unwrap_or_else(|| c.name.clone());
        tracing::warn!(container = %c.name, id = %id, "removing a leftover container of an interrupted apply");
        self.stop_and_remove(&id, LEFTOVER_GRACE_SECS).await
    }
}

/// The create call's query: the container's name, and the service's `platform:` when it has one.
/// The platform is not part of the body (API 1.41 takes it as a query parameter); without it the
/// engine would run an image of another architecture with only a warning, where compose makes
/// the platform a requirement.
fn create_options(c: &ContainerToCreate) -> CreateContainerOptions {
    let options = CreateContainerOptionsBuilder::new().name(&c.name);
    match c.spec.platform.as_deref().map(str::trim) {
        Some(platform) if !platform.is_empty() => options.platform(platform),
        _ => options,
    }
    .build()
}

fn create_error(c: &ContainerToCreate, e: &DockerError) -> anyhow::Error {
    let msg = docker_message(e);
    match status_code(e) {
        Some(404) if msg.contains("does not match the specified platform") => anyhow!(
            "creating container {}: image {} is not for platform {} ({msg}); fix `platform:` \
             of service {} in stack {}, or use an image built for that platform",
            c.name,
            c.spec.image,
            c.spec.platform.as_deref().unwrap_or("?"),
            c.service,
            c.stack
        ),
        Some(404) if msg.contains("image") => anyhow!(
            "creating container {}: image {} is not present locally ({msg}); pull, build or \
             load it on the host, or fix the tag",
            c.name,
            c.spec.image
        ),
        Some(409) => anyhow!(
            "creating container {}: the name is still taken ({msg}); remove the container by \
             hand and reconcile again",
            c.name
        ),
        _ => anyhow!(
            "creating container {} (service {} of stack {}) failed: {msg}",
            c.name,
            c.service,
            c.stack
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::ServiceSpec;

    fn container(platform: Option<&str>) -> ContainerToCreate {
        ContainerToCreate {
            name: "shop-web-1".into(),
            stack: "shop".into(),
            service: "web".into(),
            spec: ServiceSpec {
                image: "x:1".into(),
                platform: platform.map(str::to_string),
                ..Default::default()
            },
            labels: Default::default(),
            networks: Vec::new(),
            wait_healthy: false,
            wait_completed: false,
        }
    }

    #[test]
    fn platform_goes_on_the_create_call() {
        let options = create_options(&container(Some("linux/amd64")));
        assert_eq!(options.name.as_deref(), Some("shop-web-1"));
        assert_eq!(options.platform, "linux/amd64");
        assert_eq!(create_options(&container(None)).platform, "");
        assert_eq!(create_options(&container(Some(" "))).platform, "");
    }
}
