//! Pulling images.

use super::{docker_message, DockerExecutor};
use anyhow::anyhow;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use std::collections::HashMap;

impl DockerExecutor {
    /// Pulls `image` (`repo[:tag]` or `repo@sha256:…`; the tag defaults to `latest`). Progress is
    /// logged once per layer and status change, not per progress tick.
    pub async fn pull(&self, image: &str) -> anyhow::Result<()> {
        let (from_image, tag) = split_image_ref(image);
        let options = CreateImageOptionsBuilder::new()
            .from_image(from_image)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let mut last_status: HashMap<String, String> = HashMap::new();
        tracing::info!(image, "pulling image");
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                anyhow!(
                    "image {image} is not present locally and cannot be pulled: {}; build or \
                     load it on the host, or fix the tag",
                    docker_message(&e)
                )
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
