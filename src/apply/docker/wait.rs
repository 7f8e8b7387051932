//! Waiting for a container to be healthy (`service_healthy`) or done (`service_completed_successfully`).

use super::{docker_message, DockerExecutor};
use anyhow::bail;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum as Status, Health, HealthStatusEnum,
};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(300);
/// Longest healthcheck output quoted in an error.
const MAX_OUTPUT: usize = 500;

impl DockerExecutor {
    /// Waits until the container is healthy; one without a healthcheck counts once it runs.
    /// Exited, dead, unhealthy or still starting at `timeout` is an error naming the container,
    /// with the last healthcheck's exit code and output.
    pub async fn wait_healthy(&self, id: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.inspect(id).await?;
            let name = name_of(&info, id);
            let state = info.state.unwrap_or_default();
            let health_status = state.health.as_ref().and_then(|h| h.status);
            let last_check = last_check(state.health.as_ref());
            match (state.status, health_status) {
                (Some(Status::EXITED | Status::DEAD), _) => bail!(
                    "container {name} exited with code {} before it became healthy{}{last_check}; \
                     see `docker logs {name}`",
                    state.exit_code.unwrap_or_default(),
                    state_error(state.error.as_deref())
                ),
                (Some(Status::RUNNING), Some(HealthStatusEnum::HEALTHY)) => return Ok(()),
                (Some(Status::RUNNING), Some(HealthStatusEnum::UNHEALTHY)) => bail!(
                    "container {name} is unhealthy{last_check}; see `docker logs {name}` and \
                     `docker inspect {name}`"
                ),
                (
                    Some(Status::RUNNING),
                    None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY),
                ) => return Ok(()),
                // Starting, created, or restarting under its restart policy: keep waiting.
                (status, _) => {
                    if Instant::now() >= deadline {
                        let mut shown = vec![format!(
                            "state: {}",
                            status.map(|s| s.to_string()).unwrap_or_default()
                        )];
                        if let Some(h) = health_status {
                            shown.push(format!("health: {h}"));
                        }
                        if status == Some(Status::RESTARTING) {
                            shown.push(format!(
                                "last exit code {}",
                                state.exit_code.unwrap_or_default()
                            ));
                        }
                        bail!(
                            "container {name} did not become healthy within {} ({}){last_check}; \
                             see `docker logs {name}`, or allow it more time",
                            secs(timeout),
                            shown.join(", ")
                        );
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the container has exited with code 0 (a one-off task another service waits
    /// for). A non-zero exit or still running at `timeout` is an error naming the container.
    pub async fn wait_exited_ok(&self, id: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.inspect(id).await?;
            let name = name_of(&info, id);
            let state = info.state.unwrap_or_default();
            match state.status {
                Some(Status::EXITED) => {
                    let code = state.exit_code.unwrap_or_default();
                    if code == 0 {
                        return Ok(());
                    }
                    bail!(
                        "container {name} exited with code {code}{}, and the services that wait \
                         for it need it to complete successfully (code 0); see `docker logs {name}`",
                        state_error(state.error.as_deref())
                    );
                }
                Some(Status::DEAD) => bail!(
                    "container {name} is dead{}; see `docker logs {name}`",
                    state_error(state.error.as_deref())
                ),
                status => {
                    if Instant::now() >= deadline {
                        bail!(
                            "container {name} did not finish within {} (state: {}); the services \
                             that wait for it need it to complete; see `docker logs {name}`",
                            secs(timeout),
                            status.map(|s| s.to_string()).unwrap_or_default()
                        );
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn inspect(&self, id: &str) -> anyhow::Result<ContainerInspectResponse> {
        match self.docker.inspect_container(id, None).await {
            Ok(info) => Ok(info),
            Err(e) => bail!(
                "inspecting container {id} failed: {}; was it removed meanwhile?",
                docker_message(&e)
            ),
        }
    }
}

fn name_of(info: &ContainerInspectResponse, id: &str) -> String {
    info.name
        .as_deref()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.to_string())
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64().round())
}

fn state_error(error: Option<&str>) -> String {
    match error.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    }
}

/// `: last healthcheck exited with code N: <output>` or empty when none ran yet.
fn last_check(health: Option<&Health>) -> String {
    let Some(last) = health.and_then(|h| h.log.as_ref()).and_then(|l| l.last()) else {
        return String::new();
    };
    let output = trim_output(last.output.as_deref().unwrap_or_default());
    let code = last.exit_code.unwrap_or_default();
    if output.is_empty() {
        format!("; last healthcheck exited with code {code} and printed nothing")
    } else {
        format!("; last healthcheck exited with code {code}: {output}")
    }
}

/// Whitespace-trimmed, newlines folded, the tail kept when long (errors usually end there).
fn trim_output(output: &str) -> String {
    let folded = output.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = folded.chars().count();
    if count <= MAX_OUTPUT {
        folded
    } else {
        let tail: String = folded.chars().skip(count - MAX_OUTPUT).collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::HealthcheckResult;

    #[test]
    fn last_check_quotes_trimmed_output_and_code() {
        let health = Health {
            status: Some(HealthStatusEnum::UNHEALTHY),
            failing_streak: Some(3),
            log: Some(vec![HealthcheckResult {
                exit_code: Some(1),
                output: Some("  connection refused\n\n".into()),
                ..Default::default()
            }]),
        };
        assert_eq!(
            last_check(Some(&health)),
            "; last healthcheck exited with code 1: connection refused"
        );
        assert_eq!(last_check(None), "");
    }

    #[test]
    fn long_output_keeps_its_tail() {
        let long = format!("{}END", "x".repeat(2000));
        let t = trim_output(&long);
        assert!(t.ends_with("END"));
        assert!(t.chars().count() <= MAX_OUTPUT + 1);
    }
}
