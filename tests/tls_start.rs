//! TLS is set up only for a remote that needs it: the real binary, with `SSL_CERT_FILE` (the CA
//! bundle OpenSSL parses when TLS is set up) pointed at a FIFO. Opening a FIFO for reading
//! blocks until a writer comes, so the test sees every open of the bundle, whatever the timing:
//! it keeps trying to open the FIFO for writing without blocking, which succeeds only while a
//! reader waits, and then closes it at once (the reader gets an empty bundle and goes on).

mod support;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `gitmoor plan` with `SSL_CERT_FILE` = a FIFO; returns whether the process opened it,
/// and its output.
fn plan_opens_ca_bundle(dir: &Path, repo: &str) -> (bool, String) {
    let fifo = dir.join("ca-bundle.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "repo: {repo}\nsecrets_dir: {}\nstate_dir: {}\ninstance: {}\nlisten: 127.0.0.1:{}\n",
            secrets.display(),
            dir.join("state").display(),
            support::unique("t"),
            support::free_port()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitmoor"))
        .args(["plan", "--config"])
        .arg(&config)
        .env("SSL_CERT_FILE", &fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gitmoor");
    let mut opened = false;
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        // Ok only while a reader is blocked in open(); dropping it hands the reader EOF.
        opened |= writer.is_ok();
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("gitmoor plan on {repo} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    (opened, support::output_text(&out))
}

#[test]
fn only_an_https_remote_loads_the_ca_bundle() {
    let remote = support::Remote::new();
    remote.write("README.md", "no stacks\n").commit("empty");
    let port = support::free_port();

    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let (opened, text) = plan_opens_ca_bundle(&local, &remote.url());
    assert!(
        text.contains("commit "),
        "plan of a file:// remote:\n{text}"
    );
    assert!(
        !opened,
        "a file:// fetch read the CA bundle (SSL_CERT_FILE):\n{text}"
    );

    // ssh: nothing listens, the fetch fails; TLS is no part of it either way.
    let ssh = tmp.path().join("ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let (opened, text) = plan_opens_ca_bundle(&ssh, &format!("ssh://git@127.0.0.1:{port}/r.git"));
    assert!(text.contains("127.0.0.1"), "plan of an ssh remote:\n{text}");
    assert!(!opened, "an ssh fetch read the CA bundle:\n{text}");

    // https (nothing listens either): the system CAs are loaded at the first request, before
    // the connection. This also shows the FIFO sees a read when there is one.
    let https = tmp.path().join("https");
    std::fs::create_dir_all(&https).unwrap();
    let (opened, text) = plan_opens_ca_bundle(&https, &format!("https://127.0.0.1:{port}/r.git"));
    assert!(
        text.contains("127.0.0.1"),
        "plan of an https remote:\n{text}"
    );
    assert!(
        opened,
        "an https process did not load the CA bundle:\n{text}"
    );
}
