//! The executor's side of ownership per repo (issue 12), on the real dockerd: built images are
//! pruned only by the repo that built them, and another repo's container or network is never
//! replaced or reused under a name, even if a plan made before it appeared asks for it.

mod support;
use gitmoor::apply::docker::DockerExecutor;
use gitmoor::labels;
use gitmoor::plan::images::BUILD_HASH;
use gitmoor::plan::ContainerToCreate;
use gitmoor::spec::model::{NetworkSpec, ServiceSpec};
use std::collections::BTreeMap;
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

/// gitmoor's labels for an object of `stack` made from `repo`.
fn owned(stack: &str, instance: &str, repo: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), stack.to_string()),
        (labels::SERVICE.to_string(), "web".to_string()),
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::INSTANCE.to_string(), instance.to_string()),
        (labels::REPO.to_string(), repo.to_string()),
    ])
}

fn web(stack: &str, instance: &str, repo: &str) -> ContainerToCreate {
    ContainerToCreate {
        name: format!("{stack}-web-1"),
        stack: stack.to_string(),
        service: "web".to_string(),
        spec: ServiceSpec {
            image: "example-busybox:1".into(),
            command: Some(vec!["sleep".into(), "3600".into()]),
            stop_grace_period: Some(0),
            ..Default::default()
        },
        labels: owned(stack, instance, repo),
        networks: Vec::new(),
        wait_healthy: false,
        wait_completed: false,
    }
}

#[tokio::test]
async fn another_repos_container_or_network_is_never_replaced_or_reused() {
    let instance = unique("ownex");
    let stack = unique("ownex");
    let _guard = StackGuard(stack.clone());
    let (mine, theirs) = ("file:///srv/mine.git", "file:///srv/theirs.git");
    let exec = DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable");

    let theirs_c = exec
        .create_container(&web(&stack, &instance, theirs))
        .await
        .unwrap();
    let e = format!(
        "{:#}",
        exec.create_container(&web(&stack, &instance, mine))
            .await
            .unwrap_err()
    );
    assert!(
        e.contains(&format!("of repo {theirs}")) && e.contains("never replaces"),
        "{e}"
    );
    assert_eq!(
        inspect(&theirs_c, "{{.Id}}"),
        theirs_c,
        "theirs was removed"
    );
    // A leftover of this repo's own interrupted apply is still replaced.
    let again = exec
        .create_container(&web(&stack, &instance, theirs))
        .await
        .unwrap();
    assert_ne!(again, theirs_c);

    let net = |repo: &str| NetworkSpec {
        name: format!("{stack}_default"),
        labels: owned(&stack, &instance, repo),
        ..Default::default()
    };
    let id = exec.ensure_network(&net(theirs)).await.unwrap();
    let e = format!("{:#}", exec.ensure_network(&net(mine)).await.unwrap_err());
    assert!(e.contains(&format!("for repo {theirs}")), "{e}");
    assert_eq!(exec.ensure_network(&net(theirs)).await.unwrap(), id);
}
