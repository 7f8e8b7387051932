//! Pulling images, with registry credentials when the registry wants them, and reading a tag's
//! current digest on its registry (to notice a tag that moved).

use super::registry::{auth_error, local_digest_matches, RegistryAuth};
use super::{docker_message, status_code, DockerExecutor};
use anyhow::anyhow;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use std::collections::HashMap;

impl DockerExecutor {
    /// Pulls `image` (`repo[:tag]` or `repo@sha256:…`; the tag defaults to `latest`) without
    /// credentials. Progress is logged once per layer and status change, not per progress tick.
    pub async fn pull(&self, image: &str) -> anyhow::Result<()> {
        self.pull_with(image, None).await
    }

    /// Pulls `image` with the credentials `auth` holds for its registry (none sent when it holds
    /// none). A registry that wants credentials gives an error naming the registry and the file to
    /// add them to; nothing on the host is changed by a failed pull.
    pub async fn pull_with(&self, image: &str, auth: Option<&RegistryAuth>) -> anyhow::Result<()> {
        self.pull_for_platform(image, None, auth).await
    }

    /// [`pull_with`](Self::pull_with) for one platform (`linux/arm64`, a service's `platform:`):
    /// a multi-arch tag then gives that platform's image, not the host's, so the create call that
    /// asks for the same platform finds it.
    pub async fn pull_for_platform(
        &self,
        image: &str,
        platform: Option<&str>,
        auth: Option<&RegistryAuth>,
    ) -> anyhow::Result<()> {
        let (from_image, tag) = split_image_ref(image);
        let mut options = CreateImageOptionsBuilder::new()
            .from_image(from_image)
            .tag(tag);
        if let Some(platform) = platform.map(str::trim).filter(|p| !p.is_empty()) {
            options = options.platform(platform);
        }
        let options = options.build();
        let credentials = auth.and_then(|a| a.credentials_for_image(image));
        let had_credentials = credentials.is_some();
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        let mut last_status: HashMap<String, String> = HashMap::new();
        tracing::info!(
            image,
            platform,
            with_credentials = had_credentials,
            "pulling image"
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                let message = docker_message(&e);
                auth_error(image, &message, auth, had_credentials).unwrap_or_else(|| match platform
                {
                    Some(p) => anyhow!(
                        "image {image} for platform {p} cannot be pulled: {message}; \
                         load an image for {p} on the host, or fix the tag or the platform"
                    ),
                    None => anyhow!(
                        "image {image} is not present locally and cannot be pulled: {message}; \
                         build or load it on the host, or fix the tag"
                    ),
                })
            })?;
            let Some(status) = info.status else { continue };
            let layer = info.id.unwrap_or_default();
            if last_status.get(&layer) != Some(&status) {
                if layer.is_empty() {
                    tracing::info!(image, "{status}");
                } else {
                    tracing::info!(image, layer = %layer, "{status}");
                }
                last_status.insert(layer, status);
            }
        }
        Ok(())
    }

    /// The digest (`sha256:…`) the registry serves for `image`'s tag now, without pulling it
    /// (the engine's distribution API). Compare it with the local image's repo digests
    /// ([`local_digest_matches`], or [`tag_moved`](Self::tag_moved)) to notice a moved tag.
    pub async fn remote_digest(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> anyhow::Result<String> {
        let credentials = auth.and_then(|a| a.credentials_for_image(image));
        let had_credentials = credentials.is_some();
        let inspected = self
            .docker
            .inspect_registry_image(image, credentials)
            .await
            .map_err(|e| {
                let message = docker_message(&e);
                auth_error(image, &message, auth, had_credentials).unwrap_or_else(|| {
                    anyhow!("reading the digest of {image} on its registry failed: {message}")
                })
            })?;
        inspected
            .descriptor
            .digest
            .filter(|d| !d.is_empty())
            .ok_or_else(|| anyhow!("the registry gave no digest for {image}"))
    }

    /// The local image's repo digests (`repo@sha256:…`, one per registry it was pulled from or
    /// pushed to); empty when the image is missing or was only built here.
    pub async fn local_repo_digests(&self, image: &str) -> anyhow::Result<Vec<String>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.repo_digests.unwrap_or_default()),
            Err(e) if status_code(&e) == Some(404) => Ok(Vec::new()),
            Err(e) => Err(anyhow!(
                "inspecting image {image} failed: {}",
                docker_message(&e)
            )),
        }
    }

    /// Some((local digests, remote digest)) when `image`'s tag on its registry no longer names
    /// the local image; None when it still does. One registry round trip.
    pub async fn tag_moved(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> anyhow::Result<Option<(Vec<String>, String)>> {
        let local = self.local_repo_digests(image).await?;
        let remote = self.remote_digest(image, auth).await?;
        Ok((!local_digest_matches(image, &local, &remote)).then_some((local, remote)))
    }
}

/// `repo[:tag]` → (`repo`, tag or `latest`); `repo[:tag]@sha256:…` → (`repo[:tag]`, digest), as
/// the create-image call's `fromImage` and `tag` want them. A registry port (`host:5000/app`) is
/// not a tag.
pub fn split_image_ref(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_image_ref;

    #[test]
    fn splits_references() {
        assert_eq!(split_image_ref("nginx"), ("nginx", "latest"));
        assert_eq!(split_image_ref("nginx:1.27"), ("nginx", "1.27"));
        assert_eq!(
            split_image_ref("registry.local:5000/team/app"),
            ("registry.local:5000/team/app", "latest")
        );
        assert_eq!(
            split_image_ref("registry.local:5000/team/app:2"),
            ("registry.local:5000/team/app", "2")
        );
        assert_eq!(
            split_image_ref("postgres@sha256:abcd"),
            ("postgres", "sha256:abcd")
        );
        assert_eq!(
            split_image_ref("postgres:15@sha256:abcd"),
            ("postgres:15", "sha256:abcd")
        );
    }
}
