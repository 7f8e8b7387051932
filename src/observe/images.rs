//! The local images a commit names: for each, its id, labels, repo digests and platform, from
//! one inspect per image.
//!
//! Why not one listing of every image: dockerd 20.10 answers `GET /images/json` only after it has
//! read the size of every layer of every image on the host, ~9 ms for 30 images even when a
//! filter leaves none, and more with each old image a host keeps; an inspect costs ~0.3 ms.
//! Asking for what the commit names makes the cost follow the commit, not the host's history.
//! It also finds an image named by digest (`postgres:15@sha256:…`), which no tag listing shows.

use super::Observed;
use crate::observe::docker::sorted_labels;
use bollard::models::ImageInspect;
use bollard::Docker;
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};

/// How many inspects are in flight at once.
const AT_ONCE: usize = 8;

/// The local images of a commit, by the name the plan looks them up by.
#[derive(Debug, Default)]
pub struct LocalImages {
    /// name -> image id.
    pub ids: BTreeMap<String, String>,
    /// name -> the image's labels (only images that have some).
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    /// name -> its repo digests (`repo@sha256:…`), sorted (only images pulled or pushed).
    pub digests: BTreeMap<String, Vec<String>>,
    /// name -> its platform, `os/architecture[/variant]` (read for services that set
    /// `platform:`, from the same inspect).
    pub platforms: BTreeMap<String, String>,
}

impl LocalImages {
    /// Puts ids, labels and digests where the plan reads them (platforms are the caller's: the
    /// plan wants them only for services that set `platform:`).
    pub fn put_into(&mut self, observed: &mut Observed) {
        observed.images = std::mem::take(&mut self.ids);
        observed.image_labels = std::mem::take(&mut self.labels);
        observed.image_digests = std::mem::take(&mut self.digests);
    }
}

/// The local images of `names` (as the plan looks them up: `plan::normalize_image` of each
/// service's image). An image that is not on the host (or a name no image can have) is left out;
/// any other answer is an error: the plan must not take "unknown" for "missing".
pub async fn observe_images(
    docker: &Docker,
    names: &BTreeSet<String>,
) -> anyhow::Result<LocalImages> {
    let answers: Vec<(String, anyhow::Result<Option<ImageInspect>>)> =
        stream::iter(names.iter().cloned())
            .map(|name| async move {
                let answer = match docker.inspect_image(&name).await {
                    Ok(image) => Ok(Some(image)),
                    // 400: a name dockerd cannot parse is on the host as little as a
                    // missing one; the pull the plan then asks for says what is wrong with it.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 400 | 404,
                        ..
                    }) => Ok(None),
                    Err(e) => Err(anyhow::Error::new(e).context(format!(
                        "inspecting image {name} failed; is dockerd running and reachable?"
                    ))),
                };
                (name, answer)
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
    let mut out = LocalImages::default();
    for (name, answer) in answers {
        if let Some(image) = answer? {
            out.note(name, image);
        }
    }
    Ok(out)
}

impl LocalImages {
    /// One inspected image under the name it was asked by.
    fn note(&mut self, name: String, image: ImageInspect) {
        let Some(id) = image.id.filter(|id| !id.is_empty()) else {
            return;
        };
        let mut platform = format!(
            "{}/{}",
            image.os.unwrap_or_default(),
            image.architecture.unwrap_or_default()
        );
        if let Some(v) = image.variant.filter(|v| !v.is_empty()) {
            platform = format!("{platform}/{v}");
        }
        self.platforms.insert(name.clone(), platform);
        let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
        if !labels.is_empty() {
            self.labels
                .insert(name.clone(), sorted_labels(Some(&labels)));
        }
        let mut digests: Vec<String> = image
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d != "<none>@<none>")
            .collect();
        if !digests.is_empty() {
            digests.sort();
            self.digests.insert(name.clone(), digests);
        }
        self.ids.insert(name, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ImageConfig;
    use std::collections::HashMap;

    #[test]
    fn an_inspected_image_is_noted_under_the_name_asked() {
        let mut o = LocalImages::default();
        o.note(
            "app:1".into(),
            ImageInspect {
                id: Some("sha256:1".into()),
                os: Some("linux".into()),
                architecture: Some("arm".into()),
                variant: Some("v7".into()),
                repo_digests: Some(vec![
                    "r:5000/app@sha256:d2".into(),
                    "app@sha256:d1".into(),
                    "<none>@<none>".into(),
                ]),
                config: Some(ImageConfig {
                    labels: Some(HashMap::from([("io.gitmoor.context".into(), "abc".into())])),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        o.note(
            "plain:1".into(),
            ImageInspect {
                id: Some("sha256:2".into()),
                ..Default::default()
            },
        );
        assert_eq!(o.ids["app:1"], "sha256:1");
        assert_eq!(o.platforms["app:1"], "linux/arm/v7");
        assert_eq!(o.ids["plain:1"], "sha256:2");
        assert_eq!(o.labels["app:1"]["io.gitmoor.context"], "abc");
        assert!(!o.labels.contains_key("plain:1"));
        assert_eq!(
            o.digests["app:1"],
            vec![
                "app@sha256:d1".to_string(),
                "r:5000/app@sha256:d2".to_string()
            ]
        );
        assert!(!o.digests.contains_key("plain:1"));
    }

    #[test]
    fn an_answer_without_an_id_is_not_an_image() {
        let mut o = LocalImages::default();
        o.note("x:1".into(), ImageInspect::default());
        assert!(o.ids.is_empty());
    }
}
