//! Building images from the managed repo: the build context is taken straight from the commit's
//! files (no checkout), filtered by `.dockerignore` exactly as the docker CLI filters it, packed
//! into a reproducible tar (mtime 0, uid/gid 0) and sent to the engine's classic builder.
//!
//! The classic builder (API 1.41, `version=1`) is used on purpose: BuildKit needs a session that
//! bollard cannot give it here, and `pull=true` would go to Docker Hub even for a local base image.
//! `forcerm` removes the intermediate container of a failed step, so a broken Dockerfile leaves
//! nothing behind.

use super::registry::RegistryAuth;
use super::{docker_message, status_code, DockerExecutor};
use crate::labels;
use crate::plan::images::BUILD_HASH;
use crate::source::snapshot::Snapshot;
use crate::spec::model::Secret;
use anyhow::{anyhow, bail, Context};
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    BuildImageOptions, BuildImageOptionsBuilder, BuilderVersion, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// One image to build. Self-contained: the planner fills it from the compose model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildRequest {
    /// The tag the image gets (`<stack>-<service>` unless `image:` names one).
    pub tag: String,
    /// The context directory as a repo path (`compose/api/app`; "" is the repo root).
    pub context_dir: String,
    /// The Dockerfile, relative to the context (`Dockerfile`, `docker/prod.Dockerfile`, or
    /// `../Dockerfile` for one outside the context, which is then sent under another name).
    pub dockerfile: String,
    /// Build args (`ARG`). Their values never appear in a log line or an error: build output
    /// that echoes one is shown with `***` in its place.
    pub args: BTreeMap<String, Secret>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
    /// Labels the image gets (each becomes a `LABEL` step at the end of the build).
    pub labels: BTreeMap<String, String>,
    /// The service's `platform:` (`linux/amd64`): `FROM` images are pulled for it, as compose
    /// builds for the platform the container is then created with.
    pub platform: Option<String>,
}

/// The context `context_dir` of the commit as a tar, `.dockerignore` applied, the file named
/// `Dockerfile` never left out. See [`request_tar`] for a request with another Dockerfile.
pub fn context_tar(snap: &Snapshot, context_dir: &str) -> anyhow::Result<Vec<u8>> {
    let context = normalize_repo_dir(context_dir)?;
    let files = context_files(snap, &context)?;
    let ignore = DockerIgnore::from_context(&files, &context, &["Dockerfile"])?;
    write_tar(&files, &ignore, None)
}

/// The tar for one request: the context as [`context_tar`] makes it, its Dockerfile kept whatever
/// `.dockerignore` says, and a Dockerfile from outside the context added under the name
/// [`dockerfile_in_tar`] gives it (as the docker CLI does). Fails with a clear message when the
/// context or the Dockerfile is not in the commit.
pub fn request_tar(snap: &Snapshot, req: &BuildRequest) -> anyhow::Result<Vec<u8>> {
    let context = normalize_repo_dir(&req.context_dir)?;
    let files = context_files(snap, &context)?;
    let dockerfile_repo = dockerfile_repo_path(&context, &req.dockerfile)?;
    let Some(dockerfile_entry) = snap.get(&dockerfile_repo) else {
        bail!(
            "building image {}: the Dockerfile {dockerfile_repo} is not in the commit; add it or \
             fix `dockerfile:` (relative to the context {})",
            req.tag,
            shown_dir(&context)
        );
    };
    let in_tar = dockerfile_in_tar(&req.context_dir, &req.dockerfile)?;
    let outside = !is_in_dir(&dockerfile_repo, &context);
    let keep: Vec<&str> = if outside {
        Vec::new()
    } else {
        vec![in_tar.as_str()]
    };
    let ignore = DockerIgnore::from_context(&files, &context, &keep)?;
    let extra = outside.then(|| (in_tar.as_str(), &dockerfile_entry.data[..]));
    write_tar(&files, &ignore, extra)
}

/// The Dockerfile's name inside the tar, as the build call must name it: its path relative to
/// the context, or `.dockerfile.<hash>` for one that lives outside the context.
pub fn dockerfile_in_tar(context_dir: &str, dockerfile: &str) -> anyhow::Result<String> {
    let context = normalize_repo_dir(context_dir)?;
    let repo_path = dockerfile_repo_path(&context, dockerfile)?;
    if is_in_dir(&repo_path, &context) {
        Ok(strip_dir(&repo_path, &context).to_string())
    } else {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(repo_path.as_bytes());
        Ok(format!(".dockerfile.{}", hex::encode(&h[..6])))
    }
}

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
        let mut built_short: Option<String> = None;
        let deadline = tokio::time::Instant::now() + self.build_timeout();
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
            if let Some(text) = &info.stream {
                for line in text.lines() {
                    let line = redact.apply(strip_ansi(line).trim_end());
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
    pub async fn prune_built_images(&self, instance: &str) -> anyhow::Result<Vec<String>> {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([
            ("dangling", vec!["true".to_string()]),
            (
                "label",
                vec![
                    format!("{}={instance}", labels::INSTANCE),
                    BUILD_HASH.to_string(),
                ],
            ),
        ]);
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
            if !untagged || label(labels::INSTANCE) != Some(instance) || label(BUILD_HASH).is_none()
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
    /// (To read every image's labels at once, use `Observed::image_labels` from the observe step.)
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

/// The error for a build that ran past `build_timeout_secs`: the step it was at, and the setting
/// to raise when the build is slow rather than stuck.
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
        "building image {} from {dockerfile} timed out after {} s{at} (build_timeout_secs); the \
         build was stopped and the tag keeps its previous image; find what the step waits for, or \
         raise build_timeout_secs in gitmoor's config if the build needs longer",
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

/// Replaces build-arg values in build output with `***` (build args may come from the secrets
/// file through interpolation, and a RUN step may echo them). Values shorter than 4 characters
/// are left alone: they would blank out half the output and are no secret.
struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    fn new<'a>(values: impl Iterator<Item = &'a str>) -> Self {
        let mut values: Vec<String> = values
            .filter(|v| v.len() >= 4)
            .map(str::to_string)
            .collect();
        // Longest first, so a value containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    fn apply(&self, line: &str) -> String {
        let mut s = line.to_string();
        for v in &self.values {
            if s.contains(v.as_str()) {
                s = s.replace(v.as_str(), "***");
            }
        }
        s
    }
}

// -------------------------------------------------------------------------------------------
// The context

/// A repo directory path, cleaned: no leading `./` or `/`, no trailing `/`, "" for the root.
/// `..` is refused: a build context must be inside the managed repo.
fn normalize_repo_dir(dir: &str) -> anyhow::Result<String> {
    let cleaned = clean_path(dir.trim());
    if cleaned == ".." || cleaned.starts_with("../") {
        bail!("build context {dir:?} is outside the managed repo; it must be a folder of the repo");
    }
    Ok(if cleaned == "." {
        String::new()
    } else {
        cleaned
    })
}

/// The Dockerfile's repo path from the context and the compose `dockerfile:` value.
fn dockerfile_repo_path(context: &str, dockerfile: &str) -> anyhow::Result<String> {
    let dockerfile = if dockerfile.trim().is_empty() {
        "Dockerfile"
    } else {
        dockerfile.trim()
    };
    if dockerfile.starts_with('/') {
        bail!(
            "dockerfile {dockerfile:?} is an absolute path; it must be relative to the build \
             context {}",
            shown_dir(context)
        );
    }
    let joined = if context.is_empty() {
        dockerfile.to_string()
    } else {
        format!("{context}/{dockerfile}")
    };
    let cleaned = clean_path(&joined);
    if cleaned == "." || cleaned == ".." || cleaned.starts_with("../") {
        bail!(
            "dockerfile {dockerfile:?} (context {}) is outside the managed repo",
            shown_dir(context)
        );
    }
    Ok(cleaned)
}

fn shown_dir(dir: &str) -> &str {
    if dir.is_empty() || dir == "." {
        "(repo root)"
    } else {
        dir
    }
}

fn is_in_dir(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

fn strip_dir<'a>(path: &'a str, dir: &str) -> &'a str {
    if dir.is_empty() {
        path
    } else {
        &path[dir.len() + 1..]
    }
}

/// Go's `filepath.Clean` on `/`-separated paths: collapses `//`, drops `.`, resolves `..` where
/// it can, no trailing `/`; "" becomes ".". Rooted paths stay rooted.
fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// One file of the context: its path relative to the context, and the snapshot entry.
struct ContextFile<'a> {
    rel: &'a str,
    entry: &'a crate::source::snapshot::FileEntry,
}

fn context_files<'a>(snap: &'a Snapshot, context: &str) -> anyhow::Result<Vec<ContextFile<'a>>> {
    let files: Vec<ContextFile> = snap
        .files
        .iter()
        .filter(|(p, _)| is_in_dir(p, context))
        .map(|(p, entry)| ContextFile {
            rel: strip_dir(p, context),
            entry,
        })
        .collect();
    if files.is_empty() {
        bail!(
            "build context {} is not a folder of the commit (or holds no file); fix `context:` \
             or commit the folder",
            shown_dir(context)
        );
    }
    Ok(files)
}

/// `.dockerignore` with the docker CLI's semantics (moby/patternmatcher): patterns are read in
/// order, each cleaned (`filepath.Clean`, leading `/` dropped) and anchored at the context root;
/// a path is excluded when the last pattern that matches it or one of its parent folders is not
/// a `!` exception. Each pattern is its own gitignore matcher (the `ignore` crate), so the order
/// rule is docker's, not git's (git cannot re-include a file below an excluded folder; docker can).
struct DockerIgnore {
    /// (matcher for one pattern, is an exception)
    patterns: Vec<(Gitignore, bool)>,
    /// Paths never excluded: `.dockerignore` and the Dockerfile (the CLI appends `!` exceptions
    /// for them when a pattern matches them, which comes to the same).
    keep: Vec<String>,
}

impl DockerIgnore {
    fn from_context(
        files: &[ContextFile],
        context: &str,
        keep: &[&str],
    ) -> anyhow::Result<DockerIgnore> {
        let Some(file) = files.iter().find(|f| f.rel == ".dockerignore") else {
            return Ok(DockerIgnore {
                patterns: Vec::new(),
                keep: Vec::new(),
            });
        };
        let shown = if context.is_empty() {
            ".dockerignore".to_string()
        } else {
            format!("{context}/.dockerignore")
        };
        let text = String::from_utf8_lossy(&file.entry.data);
        let mut ignore = DockerIgnore::parse(&text, &shown)?;
        ignore.keep = std::iter::once(".dockerignore")
            .chain(keep.iter().copied())
            .map(str::to_string)
            .collect();
        Ok(ignore)
    }

    fn parse(text: &str, shown: &str) -> anyhow::Result<DockerIgnore> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pattern.is_empty() {
                continue;
            }
            let mut cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            // "." and "../x" can match no path of the context.
            if cleaned == "." || cleaned == "/" || cleaned == ".." || cleaned.starts_with("../") {
                continue;
            }
            patterns.push((single_pattern(&cleaned, shown, i + 1)?, exception));
        }
        Ok(DockerIgnore {
            patterns,
            keep: Vec::new(),
        })
    }

    /// moby/patternmatcher `MatchesOrParentMatches`: the last pattern matching the path or one of
    /// its parent folders decides.
    fn excludes(&self, rel: &str, is_dir: bool) -> bool {
        if !is_dir && self.keep.iter().any(|k| k == rel) {
            return false;
        }
        let mut excluded = false;
        for (matcher, exception) in &self.patterns {
            // As moby does: only an exclusion can flip an included path, only an exception an
            // excluded one.
            if *exception != excluded {
                continue;
            }
            if matcher.matched_path_or_any_parents(rel, is_dir).is_ignore() {
                excluded = !exception;
            }
        }
        excluded
    }
}

/// One cleaned `.dockerignore` pattern as a gitignore matcher anchored at the context root.
fn single_pattern(pattern: &str, shown: &str, line: usize) -> anyhow::Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(".");
    builder
        .add_line(None, &format!("/{pattern}"))
        .with_context(|| format!("{shown}:{line}: invalid pattern {pattern:?}"))?;
    builder
        .build()
        .with_context(|| format!("{shown}:{line}: invalid pattern {pattern:?}"))
}

/// Writes the tar: folders (755) before their files, files 644 or 755, symlinks as symlink
/// entries; mtime 0 and uid/gid 0 everywhere, so the same content gives the same bytes and the
/// engine's cache holds. A folder that is itself excluded is still written when a file below it
/// is re-included (the engine would create it anyway).
fn write_tar(
    files: &[ContextFile],
    ignore: &DockerIgnore,
    extra: Option<(&str, &[u8])>,
) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut written_dirs: BTreeSet<String> = BTreeSet::new();
    let mut included: Vec<&ContextFile> = files
        .iter()
        .filter(|f| !ignore.excludes(f.rel, false))
        .collect();
    // In the order of a directory walk (by path component), so the same content gives the
    // same bytes.
    included.sort_by(|a, b| a.rel.split('/').cmp(b.rel.split('/')));

    // Every folder of the context: the CLI also sends a folder that is not excluded when all
    // its files are (an empty folder in the image).
    let mut all_dirs: BTreeSet<&str> = BTreeSet::new();
    for f in files {
        let mut rest = f.rel;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            all_dirs.insert(parent);
            rest = parent;
        }
    }

    let mut append_dir = |builder: &mut tar::Builder<Vec<u8>>, dir: &str| -> anyhow::Result<()> {
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if written_dirs.insert(prefix.clone()) {
                let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
                builder
                    .append_data(&mut header, format!("{prefix}/"), std::io::empty())
                    .with_context(|| format!("packing folder {prefix} of the build context"))?;
            }
        }
        Ok(())
    };

    for f in included {
        if let Some((parent, _)) = f.rel.rsplit_once('/') {
            append_dir(&mut builder, parent)?;
        }
        if f.entry.symlink {
            let target = String::from_utf8_lossy(&f.entry.data).to_string();
            let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
            builder
                .append_link(&mut header, f.rel, &target)
                .with_context(|| format!("packing symlink {} of the build context", f.rel))?;
        } else {
            let mode = if f.entry.executable { 0o755 } else { 0o644 };
            let mut header = tar_header(tar::EntryType::Regular, mode, f.entry.data.len() as u64);
            builder
                .append_data(&mut header, f.rel, &f.entry.data[..])
                .with_context(|| format!("packing {} of the build context", f.rel))?;
        }
    }
    for d in all_dirs {
        // A folder below an excluded one is excluded too (the pattern matches a parent).
        if !ignore.excludes(d, true) {
            append_dir(&mut builder, d)?;
        }
    }
    if let Some((name, data)) = extra {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, data.len() as u64);
        builder
            .append_data(&mut header, name, data)
            .context("packing the Dockerfile into the build context")?;
    }
    builder
        .into_inner()
        .context("finishing the build context tar")
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
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

    use super::*;
    use crate::source::snapshot::FileEntry;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (p, data) in files {
            s.files.insert(
                p.to_string(),
                FileEntry {
                    data: data.as_bytes().to_vec(),
                    executable: p.ends_with(".sh"),
                    symlink: false,
                },
            );
        }
        s
    }

    /// (path, kind, mode, mtime, uid, gid, link target) of each entry.
    fn entries(tar_bytes: &[u8]) -> Vec<(String, char, u32, u64, u64, u64, String)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let kind = match h.entry_type() {
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    _ => 'f',
                };
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().to_string())
                    .unwrap_or_default();
                (
                    e.path()
                        .unwrap()
                        .to_string_lossy()
                        .trim_end_matches('/')
                        .to_string(),
                    kind,
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    link,
                )
            })
            .collect()
    }

    fn files_in(tar_bytes: &[u8]) -> Vec<String> {
        entries(tar_bytes)
            .into_iter()
            .filter(|e| e.1 != 'd')
            .map(|e| e.0)
            .collect()
    }

    fn with_ignore(ignore: &str, paths: &[&str]) -> Vec<String> {
        let mut files: Vec<(&str, &str)> = paths.iter().map(|p| (*p, "x")).collect();
        files.push(("ctx/.dockerignore", ignore));
        files.push(("ctx/Dockerfile", "FROM scratch\n"));
        let mut out = files_in(&context_tar(&snap(&files), "ctx").unwrap());
        out.retain(|p| p != "Dockerfile" && p != ".dockerignore");
        out.sort();
        out
    }

    #[test]
    fn tar_is_reproducible_with_modes_dirs_and_symlinks() {
        let mut s = snap(&[
            ("app/Dockerfile", "FROM scratch\n"),
            ("app/run.sh", "#!/bin/sh\n"),
            ("app/src/main.c", "int main;"),
            ("other/x", "outside"),
            ("application/y", "not the context either"),
        ]);
        s.files.insert(
            "app/link".into(),
            FileEntry {
                data: b"src/main.c".to_vec(),
                executable: false,
                symlink: true,
            },
        );
        let a = context_tar(&s, "app").unwrap();
        let b = context_tar(&s, "./app/").unwrap();
        assert_eq!(a, b, "same content, same bytes");
        let e = entries(&a);
        let names: Vec<&str> = e.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            vec!["Dockerfile", "link", "run.sh", "src", "src/main.c"]
        );
        for (path, kind, mode, mtime, uid, gid, link) in &e {
            assert_eq!((*mtime, *uid, *gid), (0, 0, 0), "{path}");
            match path.as_str() {
                "run.sh" => assert_eq!((*kind, *mode), ('f', 0o755)),
                "src" => assert_eq!((*kind, *mode), ('d', 0o755)),
                "link" => assert_eq!((*kind, link.as_str()), ('l', "src/main.c")),
                _ => assert_eq!((*kind, *mode), ('f', 0o644), "{path}"),
            }
        }
        let root = context_tar(&s, "").unwrap();
        assert!(files_in(&root).contains(&"other/x".to_string()));
    }

    #[test]
    fn missing_context_and_context_outside_the_repo_are_clear_errors() {
        let s = snap(&[("app/Dockerfile", "FROM scratch\n")]);
        let e = context_tar(&s, "ap").unwrap_err().to_string();
        assert!(
            e.contains("build context ap is not a folder of the commit"),
            "{e}"
        );
        let e = context_tar(&s, "app/../..").unwrap_err().to_string();
        assert!(e.contains("outside the managed repo"), "{e}");
    }

    #[test]
    fn dockerignore_root_anchored_globs() {
        let paths = [
            "ctx/a.log",
            "ctx/sub/b.log",
            "ctx/sub/deep/c.log",
            "ctx/keep.txt",
        ];
        assert_eq!(
            with_ignore("*.log\n", &paths),
            vec!["keep.txt", "sub/b.log", "sub/deep/c.log"],
            "`*.log` is anchored at the context root, as docker does (not git)"
        );
        assert_eq!(with_ignore("**/*.log\n", &paths), vec!["keep.txt"]);
        assert_eq!(
            with_ignore("sub/*.log\n", &paths),
            vec!["a.log", "keep.txt", "sub/deep/c.log"]
        );
        assert_eq!(
            with_ignore("# comment\n\n  /sub/  \n./a.log\n", &paths),
            vec!["keep.txt"]
        );
        assert_eq!(
            with_ignore("sub/deep/../b.log\n", &paths),
            vec!["a.log", "keep.txt", "sub/deep/c.log"],
            "patterns are cleaned like filepath.Clean"
        );
        assert_eq!(
            with_ignore("?.log\nkeep.tx[st]\n", &paths),
            vec!["sub/b.log", "sub/deep/c.log"]
        );
    }

    #[test]
    fn dockerignore_exceptions_follow_docker_order() {
        let paths = [
            "ctx/logs/a.log",
            "ctx/logs/keep.log",
            "ctx/logs/old/b.log",
            "ctx/src/m.c",
        ];
        assert_eq!(
            with_ignore("logs\n!logs/keep.log\n", &paths),
            vec!["logs/keep.log", "src/m.c"],
            "docker re-includes a file below an excluded folder"
        );
        assert_eq!(
            with_ignore("!logs/keep.log\nlogs\n", &paths),
            vec!["src/m.c"],
            "the last matching pattern wins"
        );
        assert_eq!(with_ignore("*\n!src\n", &paths), vec!["src/m.c"]);
        assert_eq!(
            with_ignore("logs/**\n!logs/old\n", &paths),
            vec!["logs/old/b.log", "src/m.c"]
        );
    }

    #[test]
    fn dockerfile_and_dockerignore_are_never_excluded() {
        let s = snap(&[
            ("ctx/.dockerignore", "*\n"),
            ("ctx/Dockerfile", "FROM scratch\n"),
            ("ctx/build/prod.Dockerfile", "FROM scratch\n"),
            ("ctx/x", "x"),
        ]);
        let mut got = files_in(&context_tar(&s, "ctx").unwrap());
        got.sort();
        assert_eq!(got, vec![".dockerignore", "Dockerfile"]);
        let req = BuildRequest {
            tag: "t".into(),
            context_dir: "ctx".into(),
            dockerfile: "build/prod.Dockerfile".into(),
            ..Default::default()
        };
        let mut got = files_in(&request_tar(&s, &req).unwrap());
        got.sort();
        assert_eq!(got, vec![".dockerignore", "build/prod.Dockerfile"]);
    }

    #[test]
    fn dockerfile_outside_the_context_is_sent_under_another_name() {
        let s = snap(&[("svc/Dockerfile.app", "FROM scratch\n"), ("svc/app/x", "x")]);
        let req = BuildRequest {
            tag: "t".into(),
            context_dir: "svc/app".into(),
            dockerfile: "../Dockerfile.app".into(),
            ..Default::default()
        };
        let name = dockerfile_in_tar(&req.context_dir, &req.dockerfile).unwrap();
        assert!(name.starts_with(".dockerfile."), "{name}");
        let got = files_in(&request_tar(&s, &req).unwrap());
        assert_eq!(got, vec!["x".to_string(), name]);
        let missing = BuildRequest {
            dockerfile: "Nope".into(),
            ..req
        };
        let e = request_tar(&s, &missing).unwrap_err().to_string();
        assert!(
            e.contains("the Dockerfile svc/app/Nope is not in the commit"),
            "{e}"
        );
    }

    #[test]
    fn clean_path_is_go_filepath_clean() {
        for (input, want) in [
            ("", "."),
            ("./a/", "a"),
            ("a//b/./c/..", "a/b"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/", "/"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
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
