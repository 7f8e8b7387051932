//! Building images from the managed repo with the engine's classic builder, from a context tar
//! made by `context.rs`; the build's output streamed to the log with build-arg values redacted,
//! a failing step named, a bound on its time, and superseded images pruned afterwards.
//!
//! The classic builder (API 1.41, `version=1`) is used on purpose: BuildKit needs a session that
//! bollard cannot give it here, and `pull=true` would go to Docker Hub even for a local base image.
//! `forcerm` removes the intermediate container of a failed step, so a broken Dockerfile leaves
//! nothing behind.

use super::build_request::BuildRequest;
use super::context::{dockerfile_in_tar, dockerfile_repo_path, normalize_repo_dir, shown_dir};
use super::registry::RegistryAuth;
use super::{docker_message, status_code, DockerExecutor};
use crate::labels;
use crate::plan::images::BUILD_HASH;
use crate::redact::{LineBuffer, Redactor};
use crate::spec::model::Secret;
use anyhow::anyhow;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    BuildImageOptions, BuildImageOptionsBuilder, BuilderVersion, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};

impl DockerExecutor {
    /// Builds `req` from `tar` (made by [`request_tar`] or [`context_tar`]) with the classic
    /// builder and returns the image id (`sha256:…`). Each `Step N/M : …` line goes to the log at
    /// info level with the tag, the rest of the output at debug level. A failed step gives
    /// `step 3/5 `RUN make` failed: The command … returned a non-zero code: 1` plus the last lines
    /// of its output; the previous image under the tag is left as it was.
    pub async fn build(&self, req: &BuildRequest, tar: Vec<u8>) -> anyhow::Result<String> {
        self.build_with(req, tar, None).await
    }

    /// [`build`](Self::build), with registry credentials for `FROM` images in private registries.
    pub async fn build_with(
        &self,
        req: &BuildRequest,
        tar: Vec<u8>,
        auth: Option<&RegistryAuth>,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + self.build_timeout();
        self.build_until(req, tar, auth, deadline).await
    }

    /// [`build_with`](Self::build_with), stopped at `deadline`: the builds of one apply share one
    /// `build_timeout_secs`, so that N builds that hang hold the reconcile for that bound, not N
    /// times it. A build whose turn comes after the deadline fails without being started.
    pub async fn build_until(
        &self,
        req: &BuildRequest,
        tar: Vec<u8>,
        auth: Option<&RegistryAuth>,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<String> {
        let dockerfile = dockerfile_in_tar(&req.context_dir, &req.dockerfile)?;
        let shown_dockerfile =
            dockerfile_repo_path(&normalize_repo_dir(&req.context_dir)?, &req.dockerfile)?;
        let options = build_options(req, &dockerfile);
        let credentials = auth.map(RegistryAuth::credentials_map);
        let redact = Redactor::new(req.args.values().map(Secret::expose));

        tracing::info!(image = %req.tag, context = %shown_dir(&req.context_dir), dockerfile = %shown_dockerfile, "building image");
        let started = std::time::Instant::now();
        let body = bollard::body_full(tar.into());
        let mut stream = self.docker.build_image(options, credentials, Some(body));
        let mut step: Option<String> = None;
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut image_id: Option<String> = None;
        // Output chunks are cut anywhere; whole lines are redacted, so a value split across two
        // chunks is still hidden.
        let mut lines = LineBuffer::new(64 * 1024);
        let mut built_short: Option<String> = None;
        if tokio::time::Instant::now() >= deadline {
            return Err(timeout_error(
                req,
                &shown_dockerfile,
                None,
                self.build_timeout(),
            ));
        }
        loop {
            let item = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                // Dropping the stream closes the connection, which makes the engine cancel the
                // build (`forcerm` removes the step's container); the tag keeps its old image.
                Err(_elapsed) => {
                    return Err(timeout_error(
                        req,
                        &shown_dockerfile,
                        step.as_deref(),
                        self.build_timeout(),
                    ))
                }
            };
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    return Err(build_error(
                        req,
                        &shown_dockerfile,
                        step.as_deref(),
                        &tail,
                        &e,
                        &redact,
                    ))
                }
            };
            let finished = match &info.stream {
                Some(text) => lines.push(text, &redact),
                None => Vec::new(),
            };
            for line in finished {
                // Colour codes could hide a value from the first pass.
                let line = redact.apply(strip_ansi(&line).trim_end());
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(s) = line.strip_prefix("Step ") {
                    tracing::info!(image = %req.tag, "Step {s}");
                    step = Some(s.to_string());
                    tail.clear();
                } else {
                    if let Some(id) = line.strip_prefix("Successfully built ") {
                        built_short = Some(id.trim().to_string());
                    }
                    tracing::debug!(image = %req.tag, "{line}");
                    if !line.starts_with(" ---> ")
                        && !line.starts_with("Removing intermediate container ")
                    {
                        tail.push_back(line);
                        if tail.len() > 5 {
                            tail.pop_front();
                        }
                    }
                }
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
            }
        }
        let id = match image_id {
            Some(id) => id,
            None => {
                // No `aux` item (older engines): ask the tag.
                let inspected = self.docker.inspect_image(&req.tag).await.map_err(|e| {
                    anyhow!(
                        "building image {} finished ({}) but the tag cannot be inspected: {}",
                        req.tag,
                        built_short.as_deref().unwrap_or("no image id"),
                        docker_message(&e)
                    )
                })?;
                inspected.id.ok_or_else(|| {
                    anyhow!("building image {}: the engine gave no image id", req.tag)
                })?
            }
        };
        tracing::info!(image = %req.tag, id = %id, elapsed_ms = started.elapsed().as_millis() as u64, "built image");
        Ok(id)
    }

    /// Removes the images gitmoor built for `instance` that a rebuild left behind: untagged
    /// (dangling), carrying the build-hash label and this instance's label, and used by no
    /// container. A rebuild of `<stack>-<service>` moves the tag to the new image, and the old one
    /// would otherwise fill the disk build after build. Never forced: an image a container still
    /// uses (a stopped one, or the previous container a failed recreate brought back) answers
    /// 409 and is skipped. Images gitmoor did not build, or built for another instance, are never
    /// listed. Returns the ids removed; a failure to remove one is logged and the rest go on.
    ///
    /// `repo` (the plan's `io.gitmoor.repo`) narrows it to the images this repo built: another
    /// config of the same instance prunes its own. None matches images without the label only.
    pub async fn prune_built_images(
        &self,
        instance: &str,
        repo: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let mut wanted = vec![
            format!("{}={instance}", labels::INSTANCE),
            BUILD_HASH.to_string(),
        ];
        if let Some(repo) = repo {
            wanted.push(format!("{}={repo}", labels::REPO));
        }
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("dangling", vec!["true".to_string()]), ("label", wanted)]);
        let images = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| {
                anyhow!(
                    "listing superseded built images failed: {}",
                    docker_message(&e)
                )
            })?;
        let mut removed = Vec::new();
        for image in images {
            // The engine filtered already; checked again so that no other image is ever removed.
            let label = |k: &str| image.labels.get(k).map(String::as_str);
            let untagged = image
                .repo_tags
                .iter()
                .all(|t| t.as_str() == "<none>:<none>");
            if !untagged
                || label(labels::INSTANCE) != Some(instance)
                || label(labels::REPO) != repo
                || label(BUILD_HASH).is_none()
            {
                continue;
            }
            let options = RemoveImageOptionsBuilder::new()
                .force(false)
                .noprune(false)
                .build();
            match self
                .docker
                .remove_image(&image.id, Some(options), None)
                .await
            {
                Ok(_) => {
                    tracing::info!(image = %image.id, instance, "removed an image a rebuild superseded");
                    removed.push(image.id);
                }
                // In use by a container (409), or gone meanwhile (404): nothing to do.
                Err(e) if matches!(status_code(&e), Some(409) | Some(404)) => {
                    tracing::debug!(image = %image.id, "superseded image kept: {}", docker_message(&e));
                }
                Err(e) => tracing::warn!(
                    image = %image.id,
                    "removing a superseded built image failed: {}",
                    docker_message(&e)
                ),
            }
        }
        Ok(removed)
    }

    /// One label of a local image; None when the image or the label is missing.
    /// (The plan reads the labels of the images a commit names from `Observed::image_labels`.)
    pub async fn image_label(&self, tag: &str, key: &str) -> anyhow::Result<Option<String>> {
        match self.docker.inspect_image(tag).await {
            Ok(image) => Ok(image
                .config
                .and_then(|c| c.labels)
                .and_then(|mut l| l.remove(key))),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(anyhow!(
                "inspecting image {tag} failed: {}",
                docker_message(&e)
            )),
        }
    }
}

/// The error for a build stopped at the apply's build deadline (`build_timeout_secs`): the step
/// it was at, and the setting to raise when the builds are slow rather than stuck.
fn timeout_error(
    req: &BuildRequest,
    dockerfile: &str,
    step: Option<&str>,
    timeout: std::time::Duration,
) -> anyhow::Error {
    let at = match step.map(|s| s.split_once(" : ").unwrap_or((s, ""))) {
        Some((number, instruction)) => {
            format!(" at step {} `{}`", number.trim(), instruction.trim())
        }
        None => String::new(),
    };
    anyhow!(
        "building image {} from {dockerfile} was stopped{at}: the builds of this apply ran past \
         build_timeout_secs ({} s); the tag keeps its previous image; find what the step waits \
         for, or raise build_timeout_secs in gitmoor's config if the builds need longer",
        req.tag,
        timeout.as_secs_f64()
    )
}

/// The error for a failed build: the step that failed and the engine's message.
fn build_error(
    req: &BuildRequest,
    dockerfile: &str,
    step: Option<&str>,
    tail: &VecDeque<String>,
    e: &DockerError,
    redact: &Redactor,
) -> anyhow::Error {
    let message = redact.apply(&docker_message(e));
    let code = status_code(e);
    let prefix = format!("building image {} from {dockerfile}", req.tag);
    if code == Some(400) {
        return anyhow!(
            "{prefix}: the Dockerfile is invalid: {message}; fix {dockerfile} and push again"
        );
    }
    if code == Some(500) && message.contains("Cannot locate specified Dockerfile") {
        return anyhow!(
            "{prefix}: the engine found no Dockerfile in the build context ({message}); check \
             `dockerfile:` and that .dockerignore does not leave it out"
        );
    }
    let Some(step) = step else {
        return anyhow!("{prefix} failed: {message}");
    };
    // "3/5 : RUN make" -> ("3/5", "RUN make")
    let (number, instruction) = step
        .split_once(" : ")
        .map(|(n, i)| (n.trim(), i.trim()))
        .unwrap_or((step.trim(), ""));
    let mut out = format!("{prefix}: step {number} `{instruction}` failed: {message}");
    let output: Vec<&str> = tail
        .iter()
        .map(String::as_str)
        .filter(|l| !l.contains(message.trim()) && !l.starts_with(" ---> Running in "))
        .collect();
    if !output.is_empty() {
        let lines: Vec<String> = output.iter().map(|l| truncate(l.trim(), 200)).collect();
        out.push_str(&format!(" (last output: {})", lines.join(" | ")));
    }
    anyhow!(out)
}

/// The text without ANSI escape sequences (the classic builder colours a RUN step's stderr).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte (@ to ~).
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The query of a build: the classic builder (API 1.41 has no other without a session), the
/// tag, args, labels, target and platform, intermediate containers removed even on failure.
fn build_options(req: &BuildRequest, dockerfile: &str) -> BuildImageOptions {
    let args: HashMap<&str, &str> = req
        .args
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    let labels: HashMap<&str, &str> = req
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut options = BuildImageOptionsBuilder::new()
        .dockerfile(dockerfile)
        .t(&req.tag)
        .rm(true)
        .forcerm(true)
        .q(false)
        .version(BuilderVersion::BuilderV1)
        .buildargs(&args)
        .labels(&labels);
    if let Some(target) = req.target.as_deref().filter(|t| !t.is_empty()) {
        options = options.target(target);
    }
    if let Some(platform) = req.platform.as_deref().filter(|p| !p.is_empty()) {
        options = options.platform(platform);
    }
    options.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn build_options_carry_platform_target_and_args() {
        let req = BuildRequest {
            tag: "app-api".into(),
            args: BTreeMap::from([("V".to_string(), Secret("1".to_string()))]),
            target: Some("runtime".into()),
            platform: Some("linux/arm64".into()),
            ..Default::default()
        };
        let o = build_options(&req, "Dockerfile");
        assert_eq!(o.platform, "linux/arm64");
        assert_eq!(o.target, "runtime");
        assert_eq!(o.t.as_deref(), Some("app-api"));
        assert!(o.buildargs.as_ref().is_some_and(|a| a["V"] == "1"));
        let o = build_options(&BuildRequest::default(), "Dockerfile");
        assert_eq!(o.platform, "", "no platform: the engine's own");
    }

    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[91mboom\u{1b}[0m"), "boom");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn redactor_hides_arg_values() {
        let args = ["s3cr3t-token".to_string(), "abc".to_string()];
        let r = Redactor::new(args.iter().map(String::as_str));
        assert_eq!(r.apply("token=s3cr3t-token abc"), "token=*** abc");
    }
}
