//! Built images are pruned per repo: a config prunes the superseded images its own repo built,
//! never those another repo of the same instance built (issue 12). Real dockerd.

mod support;
use gitmoor::apply::docker::DockerExecutor;
use gitmoor::labels;
use gitmoor::plan::images::BUILD_HASH;
use support::*;

/// Builds `tag` from a one-line Dockerfile carrying `n`, with gitmoor's build labels; returns
/// the image id. Built twice with another `n`, the first image is left untagged (dangling).
fn build(tag: &str, n: u32, instance: &str, repo: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM example-busybox:1\nRUN echo {tag}-{n} > /n\n"),
    )
    .unwrap();
    let hash = format!("{BUILD_HASH}=h{n}");
    let inst = format!("{}={instance}", labels::INSTANCE);
    let repo = format!("{}={repo}", labels::REPO);
    let ctx = dir.path().to_str().unwrap();
    let args = [
        "build", "-q", "-t", tag, "--label", &hash, "--label", &inst, "--label", &repo, ctx,
    ];
    let id = docker(&args);
    assert!(id.starts_with("sha256:"), "docker build {args:?}: {id}");
    id
}

fn exists(id: &str) -> bool {
    !docker(&["image", "inspect", "-f", "{{.Id}}", id]).is_empty()
}

#[tokio::test]
async fn superseded_images_are_pruned_only_by_the_repo_that_built_them() {
    let instance = unique("ownimg");
    let (mine, theirs) = (unique("ownimg-mine"), unique("ownimg-theirs"));
    let (repo_mine, repo_theirs) = ("file:///srv/mine.git", "file:///srv/theirs.git");
    let old_mine = build(&mine, 1, &instance, repo_mine);
    build(&mine, 2, &instance, repo_mine);
    let old_theirs = build(&theirs, 1, &instance, repo_theirs);
    build(&theirs, 2, &instance, repo_theirs);

    let exec = DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable");
    let pruned = exec
        .prune_built_images(&instance, Some(repo_mine))
        .await
        .unwrap();
    assert_eq!(pruned, vec![old_mine.clone()]);
    assert!(!exists(&old_mine));
    assert!(exists(&old_theirs), "another repo's image pruned");
    // Its own repo prunes it.
    let pruned = exec
        .prune_built_images(&instance, Some(repo_theirs))
        .await
        .unwrap();
    assert_eq!(pruned, vec![old_theirs.clone()]);

    for tag in [&mine, &theirs] {
        docker(&["rmi", tag]);
    }
}
