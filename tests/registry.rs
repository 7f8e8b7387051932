//! Pulls from a real registry on loopback (Debian's docker-registry, htpasswd auth) through the
//! real dockerd: with credentials from a docker config.json-style file, refused without them with
//! an error that says what to do, and a tag that moved on the registry noticed by its digest.
//!
//! Each test starts its own registry on a random port (`tests/support/registry.sh`, which pushes
//! `example-busybox:1` as `127.0.0.1:PORT/<repo>:1`); a guard stops it and removes every local
//! image reference under `127.0.0.1:PORT/`, even when the test fails.

use gitmoor::apply::docker::registry::{local_digest_matches, RegistryAuth};
use gitmoor::apply::docker::DockerExecutor;
use gitmoor::observe::images::observe_images;
mod support;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;
use support::registry::{Registry, PASSWORD};
use support::run;

fn docker_cli(args: &[&str]) -> (bool, String, String) {
    let out = run(Command::new("docker").args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn image_exists(image: &str) -> bool {
    docker_cli(&["image", "inspect", image]).0
}

async fn executor() -> DockerExecutor {
    DockerExecutor::connect(None)
        .await
        .expect("dockerd reachable")
}

#[tokio::test]
async fn pulls_with_credentials_and_refuses_clearly_without_them() {
    let reg = Registry::start("gmt/bb");
    let host = reg.host();
    let image = format!("{host}/gmt/bb:1");
    let exec = executor().await;
    assert!(!image_exists(&image), "registry.sh leaves no local tag");

    // No credentials configured at all.
    let e = format!("{:#}", exec.pull(&image).await.unwrap_err());
    eprintln!("no credentials file: {e}");
    assert!(
        e.contains(&format!(
            "registry {host} wants credentials for image {image}"
        )) && e.contains("registry_auth"),
        "{e}"
    );
    assert!(!image_exists(&image), "a refused pull changes nothing");

    // A credentials file without this registry.
    let other = reg.auth_file(
        "other.json",
        r#"{"auths": {"registry.example.com": {"username": "u", "password": "p"}}}"#,
    );
    let other_auth = RegistryAuth::load(&other).unwrap();
    let e = format!(
        "{:#}",
        exec.pull_with(&image, Some(&other_auth)).await.unwrap_err()
    );
    eprintln!("file without the host: {e}");
    assert!(
        e.contains(&format!(
            "add an entry for \"{host}\" to {}",
            other.display()
        )),
        "{e}"
    );
    assert!(!image_exists(&image));

    // Wrong password: the user is named, the password never is.
    let wrong = reg.auth_file(
        "wrong.json",
        &format!(
            r#"{{"auths": {{"{host}": {{"username": "test", "password": "hunter2-wrong"}}}}}}"#
        ),
    );
    let wrong_auth = RegistryAuth::load(&wrong).unwrap();
    let e = format!(
        "{:#}",
        exec.pull_with(&image, Some(&wrong_auth)).await.unwrap_err()
    );
    eprintln!("wrong password: {e}");
    assert!(
        e.contains(&format!(
            "registry {host} refused the credentials for user test from {}",
            wrong.display()
        )),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "no password in errors: {e}");
    assert!(!format!("{wrong_auth:?}").contains("hunter2"));
    assert!(!image_exists(&image));

    // The file `docker login` wrote: the pull works.
    let auth = RegistryAuth::load(&reg.docker_config_json()).unwrap();
    assert_eq!(auth.hosts(), vec![host.as_str()]);
    let t = Instant::now();
    exec.pull_with(&image, Some(&auth))
        .await
        .expect("pull with credentials");
    eprintln!("pull with credentials: {:?}", t.elapsed());
    assert!(image_exists(&image));
    // Pulling again is a no-op that still authenticates.
    exec.pull_with(&image, Some(&auth)).await.unwrap();
    let (_, out, _) = docker_cli(&["run", "--rm", &image, "sh", "-c", "echo pulled-ok"]);
    assert_eq!(out, "pulled-ok");
    assert!(!format!("{auth:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_moved_tag_is_noticed_by_its_digest() {
    let mut reg = Registry::start("gmt/moving");
    let host = reg.host();
    let image = format!("{host}/gmt/moving:1");
    let exec = executor().await;
    // The username/password form of an entry.
    let auth_path = reg.auth_file(
        "auth.json",
        &format!(r#"{{"auths": {{"http://{host}/v2/": {{"username": "test", "password": "{PASSWORD}"}}}}}}"#),
    );
    let auth = RegistryAuth::load(&auth_path).unwrap();

    let e = format!("{:#}", exec.remote_digest(&image, None).await.unwrap_err());
    eprintln!("remote digest without credentials: {e}");
    assert!(
        e.contains(&format!("registry {host} wants credentials")),
        "{e}"
    );

    exec.pull_with(&image, Some(&auth)).await.unwrap();
    let local = exec.local_repo_digests(&image).await.unwrap();
    let t = Instant::now();
    let remote = exec.remote_digest(&image, Some(&auth)).await.unwrap();
    eprintln!(
        "remote digest in {:?}: {remote}; local {local:?}",
        t.elapsed()
    );
    assert!(remote.starts_with("sha256:"), "{remote}");
    assert!(local_digest_matches(&image, &local, &remote));
    assert_eq!(exec.tag_moved(&image, Some(&auth)).await.unwrap(), None);
    // The observer has the same digests from its inspect of the image.
    let observed = observe_images(&exec.docker, &BTreeSet::from([image.clone()]))
        .await
        .unwrap();
    let ours = format!("{host}/gmt/moving@{remote}");
    assert!(
        observed
            .digests
            .get(&image)
            .is_some_and(|d| d.contains(&ours)),
        "{:?}",
        observed.digests.get(&image)
    );

    // Someone pushes a new image under the same tag; the host still runs the old one.
    let old_id = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &image]).1;
    let new_id = reg.build(&image, "v2");
    assert_ne!(old_id, new_id);
    reg.push(&image);
    assert!(
        docker_cli(&["tag", &old_id, &image]).0,
        "put the old image back under the tag"
    );

    let local = exec.local_repo_digests(&image).await.unwrap();
    let moved = exec.remote_digest(&image, Some(&auth)).await.unwrap();
    assert_ne!(moved, remote, "the registry's digest changed");
    assert!(
        !local_digest_matches(&image, &local, &moved),
        "local {local:?} vs registry {moved}"
    );
    let (local_seen, remote_seen) = exec
        .tag_moved(&image, Some(&auth))
        .await
        .unwrap()
        .expect("moved tag detected");
    assert_eq!(remote_seen, moved);
    assert!(local_seen.contains(&ours), "{local_seen:?}");

    // Pulling brings the host to the new digest.
    exec.pull_with(&image, Some(&auth)).await.unwrap();
    assert_eq!(
        docker_cli(&["image", "inspect", "-f", "{{.Id}}", &image]).1,
        new_id
    );
    assert_eq!(exec.tag_moved(&image, Some(&auth)).await.unwrap(), None);
}
