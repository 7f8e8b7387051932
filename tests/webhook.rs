//! Webhooks on the real daemon (real dockerd, real git remote, the poll a year away): a signed
//! delivery deploys the new commit within seconds, for each provider; a bad or missing signature
//! is 401 and deploys nothing; pings and other branches change nothing; a burst of 20
//! deliveries makes one or two reconciles; a bad commit pushed through a webhook is reported with the
//! file it names while the last good state keeps running. Senders that stall are cut off
//! (408), deliveries beyond the slots get 503 at once, and a wrong GitLab token is refused
//! before its body is read, while `/health` keeps answering.

mod server_support;
mod support;
use server_support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::*;

const SECRET: &str = "webhook-s3cret-for-tests";

fn stack_file(msg: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    environment:\n      MSG: {msg}\n"
    )
}

fn setup(extra: &str) -> (String, StackGuard, Remote, Host, u16) {
    let stack = unique("wh");
    let guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let secret_file = remote.dir.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (host, port) = host_with_server(
        &remote,
        &format!("webhook_secret_file: {}\n{extra}", secret_file.display()),
    );
    (stack, guard, remote, host, port)
}

fn env_of(stack: &str) -> String {
    let id = container_id(stack, "web");
    if id.is_empty() {
        return String::new();
    }
    inspect(&id, "{{json .Config.Env}}")
}

fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    request(port, "POST", path, headers, body).expect("the server answers")
}

/// A push delivery to `/hooks/github`, signed with the right secret.
fn github_push(port: u16, payload: &str) -> (u16, String) {
    post(
        port,
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign(SECRET, payload.as_bytes())),
        ],
        payload.as_bytes(),
    )
}

#[test]
fn signed_deliveries_deploy_within_seconds_and_bad_ones_deploy_nothing() {
    let (stack, _guard, remote, host, port) = setup("webhook_max_body_bytes: 4096\n");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file("one"));
    let one = remote.commit("one");
    let d = Daemon::start(&host, port);
    d.wait_synced(&one, 120);
    let first_id = container_id(&stack, "web");
    let before = d.reconciles();

    remote.write(&file, &stack_file("two"));
    let two = remote.commit("two");
    let body = push_payload("refs/heads/main", &two);
    let b = body.as_bytes();
    let good = sign(SECRET, b);
    let wrong = sign("not-the-secret", b);
    let wrong_hex = wrong.trim_start_matches("sha256=").to_string();
    let of_other_body = sign(SECRET, b"{}");

    // Bad or missing signatures: 401, and nothing is deployed.
    let bad: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/hooks/github",
            vec![("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
        ),
        ("/hooks/github", vec![("X-GitHub-Event", "push")]),
        (
            // A valid signature of another body.
            "/hooks/github",
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &of_other_body),
            ],
        ),
        (
            "/hooks/gitea",
            vec![("X-Gitea-Event", "push"), ("X-Gitea-Signature", &wrong_hex)],
        ),
        (
            "/hooks/gitlab",
            vec![("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
        ),
        ("/hooks/generic", vec![("X-Gitmoor-Signature-256", &wrong)]),
    ];
    for (path, headers) in &bad {
        let (code, text) = post(port, path, headers, b);
        assert_eq!(code, 401, "{path} {headers:?}: {text}");
        assert!(!text.contains(SECRET));
    }
    // A ping and a push to another branch: 200 and 204, no reconcile.
    let (code, text) = post(
        port,
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign(SECRET, b"{\"zen\":\"hi\"}")),
        ],
        b"{\"zen\":\"hi\"}",
    );
    assert_eq!((code, text.as_str()), (200, "pong\n"));
    let other = push_payload("refs/heads/feature", &two);
    let (code, _) = github_push(port, &other);
    assert_eq!(code, 204);
    // Too big a body: 413 before anything else.
    let big = vec![b'x'; 8192];
    let (code, _) = post(
        port,
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign(SECRET, &big)),
        ],
        &big,
    );
    assert_eq!(code, 413);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        d.reconciles(),
        before,
        "a rejected delivery caused a reconcile"
    );
    assert_eq!(container_id(&stack, "web"), first_id);
    assert_eq!(d.status().unwrap()["deployed"]["sha"], one.as_str());
    assert_eq!(
        d.metric("gitmoor_webhook_deliveries_total{provider=\"github\",outcome=\"unauthorized\"}"),
        Some(3.0)
    );

    // A signed push to main: 202, and the new commit runs within seconds (the poll is a year away).
    let (code, text) = post(
        port,
        "/hooks/github",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &good)],
        b,
    );
    assert_eq!(code, 202, "{text}");
    let s = d.wait_synced(&two, 60);
    assert!(env_of(&stack).contains("MSG=two"));
    assert_eq!(s["last_reconcile"]["trigger"], "webhook");
    let recreate = &s["last_reconcile"]["actions"][0];
    assert_eq!(recreate["action"], "recreate", "{s:#}");
    assert!(
        recreate["reasons"][0]
            .as_str()
            .unwrap()
            .contains("environment.MSG"),
        "{s:#}"
    );

    // Gitea, GitLab and the generic hook, each with its own header.
    let three_body = |sha: &str| push_payload("refs/heads/main", sha);
    remote.write(&file, &stack_file("three"));
    let three = remote.commit("three");
    let p = three_body(&three);
    let sig = sign(SECRET, p.as_bytes());
    let (code, _) = post(
        port,
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", sig.trim_start_matches("sha256=")),
        ],
        p.as_bytes(),
    );
    assert_eq!(code, 202);
    d.wait_synced(&three, 60);

    remote.write(&file, &stack_file("four"));
    let four = remote.commit("four");
    let p = three_body(&four);
    let (code, _) = post(
        port,
        "/hooks/gitlab",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)],
        p.as_bytes(),
    );
    assert_eq!(code, 202);
    d.wait_synced(&four, 60);

    remote.write(&file, &stack_file("five"));
    let five = remote.commit("five");
    let (code, _) = post(
        port,
        "/hooks/generic",
        &[("X-Gitmoor-Signature-256", &sign(SECRET, b""))],
        b"",
    );
    assert_eq!(code, 202);
    d.wait_synced(&five, 60);
    assert!(env_of(&stack).contains("MSG=five"));

    // A bad commit through a webhook: reported with its file, not deployed, the last good
    // container keeps running.
    let good_id = container_id(&stack, "web");
    remote.write(
        &file,
        &stack_file("six").replace("    environment:", "    bogus_key: 1\n    environment:"),
    );
    let six = remote.commit("six: a typo");
    let p = three_body(&six);
    let (code, _) = github_push(port, &p);
    assert_eq!(code, 202);
    let s = d.wait_status(60, "the bad commit reported", |s| {
        s["last_reconcile"]["commit"]["sha"] == six.as_str()
    });
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["last_reconcile"]["result"], "invalid");
    assert_eq!(s["deployed"]["sha"], five.as_str());
    assert_eq!(s["branch_head"]["sha"], six.as_str());
    let err = s["last_reconcile"]["error"].as_str().unwrap();
    assert!(err.contains(&file) && err.contains("bogus_key"), "{err}");
    assert_eq!(s["last_reconcile"]["errors"][0]["file"], file.as_str());
    assert!(s["state_reason"].as_str().unwrap().contains(&file), "{s:#}");
    assert_eq!(container_id(&stack, "web"), good_id);
    assert_eq!(inspect(&good_id, "{{.State.Running}}"), "true");
    let (_, page) = d.get("/").unwrap();
    assert!(page.contains("bogus_key"), "the page shows the error");

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains(SECRET), "the webhook secret is in the log");
}

#[test]
fn a_burst_of_twenty_deliveries_makes_one_or_two_reconciles() {
    // A generous window: the 20 deliveries are sent at once, well within it.
    let (stack, _guard, remote, host, port) = setup("nudge_debounce_ms: 1500\n");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file("one"));
    let one = remote.commit("one");
    let d = Daemon::start(&host, port);
    d.wait_synced(&one, 120);
    let before = d.reconciles();

    remote.write(&file, &stack_file("two"));
    let two = remote.commit("two");
    let body = Arc::new(push_payload("refs/heads/main", &two));
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (body, barrier) = (body.clone(), barrier.clone());
            std::thread::spawn(move || {
                let sig = sign(SECRET, body.as_bytes());
                barrier.wait();
                post(
                    port,
                    "/hooks/github",
                    &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
                    body.as_bytes(),
                )
                .0
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes, vec![202; 20]);
    d.wait_synced(&two, 60);
    assert!(env_of(&stack).contains("MSG=two"));
    // Give a third reconcile every chance to show up.
    std::thread::sleep(std::time::Duration::from_secs(4));
    // The first delivery starts one at once; the others land while it runs (or within the
    // window after it) and make at most one more together.
    let made = d.reconciles() - before;
    assert!(
        (1.0..=2.0).contains(&made),
        "20 deliveries should make one or two reconciles, made {made}\n{}",
        d.log_text()
    );
    assert_eq!(
        d.metric("gitmoor_webhook_deliveries_total{provider=\"github\",outcome=\"accepted\"}"),
        Some(20.0)
    );
}

/// `MAX_DELIVERIES_IN_FLIGHT` in src/server/hooks.rs.
const SLOTS: usize = 4;

/// A delivery that sends its headers and `sent` of a body announced as `len` bytes, then stalls:
/// the connection stays open and nothing more comes.
fn stall(port: u16, path: &str, headers: &[(&str, &str)], len: usize, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req =
        format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send the headers");
    s.write_all(sent).expect("send part of the body");
    s
}

/// The status the server answered on a stalled connection, or None when it closed it without an
/// answer; waits at most `secs`.
fn answer(mut s: TcpStream, secs: u64) -> Option<u16> {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the server closes (its refusals say `Connection: close`), a reset or the timeout.
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    let resp = String::from_utf8_lossy(&resp).into_owned();
    resp.split_whitespace().nth(1)?.parse().ok()
}

fn assert_health_ok(d: &Daemon) {
    let (code, body) = d.get("/health").expect("/health answers");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

#[test]
fn a_sender_that_stalls_is_cut_off_while_the_server_keeps_answering() {
    let (stack, _guard, remote, host, port) = setup("webhook_read_timeout_secs: 3\n");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file("one"));
    let one = remote.commit("one");
    let d = Daemon::start(&host, port);
    d.wait_synced(&one, 120);
    let before = d.reconciles();

    // A correctly signed push, of which only the first half ever arrives.
    let body = push_payload("refs/heads/main", &one);
    let sig = sign(SECRET, body.as_bytes());
    let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)];
    let started = Instant::now();
    let slow = stall(
        port,
        "/hooks/github",
        &headers,
        body.len(),
        &body.as_bytes()[..body.len() / 2],
    );
    for _ in 0..5 {
        assert_health_ok(&d);
        std::thread::sleep(Duration::from_millis(300));
    }
    let code = answer(slow, 20);
    let took = started.elapsed();
    assert!(matches!(code, Some(408) | None), "{code:?}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "cut off after {took:?}; the read timeout is 3 s"
    );
    assert_eq!(
        d.metric("gitmoor_webhook_deliveries_total{provider=\"github\",outcome=\"timeout\"}"),
        Some(1.0)
    );
    assert_health_ok(&d);
    assert_eq!(
        d.reconciles(),
        before,
        "a cut-off delivery caused a reconcile"
    );
}

#[test]
fn deliveries_beyond_the_slots_are_busy_while_health_answers() {
    let (stack, _guard, remote, host, port) = setup("webhook_read_timeout_secs: 5\n");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file("one"));
    let one = remote.commit("one");
    let d = Daemon::start(&host, port);
    d.wait_synced(&one, 120);

    let ping = b"{\"zen\":\"hi\"}";
    let ping_sig = sign(SECRET, ping);
    let send_ping = || {
        post(
            port,
            "/hooks/github",
            &[
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", &ping_sig),
            ],
            ping,
        )
    };
    // Every slot held by a sender that announced 1000 bytes and sent 10.
    let sig = sign(SECRET, b"whatever");
    let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)];
    let stalled: Vec<TcpStream> = (0..SLOTS)
        .map(|_| stall(port, "/hooks/github", &headers, 1000, &[b'{'; 10]))
        .collect();
    // Once all of them are being read, one more complete delivery waits a moment, then is refused.
    let (code, text) = eventually(3, || {
        let (code, text) = send_ping();
        (code == 503).then_some((code, text))
    })
    .unwrap_or_else(|| panic!("no 503 with {SLOTS} stalled deliveries:\n{}", d.log_text()));
    assert_eq!(code, 503);
    assert!(text.contains("busy"), "{text}");
    assert_health_ok(&d);
    assert_eq!(d.get("/status").map(|r| r.0), Some(200));

    // The stalled ones are cut off, and give their slots back.
    for s in stalled {
        let code = answer(s, 20);
        assert!(matches!(code, Some(408) | None), "{code:?}");
    }
    assert_eq!(send_ping(), (200, "pong\n".to_string()));
    assert!(d
        .metric("gitmoor_webhook_deliveries_total{provider=\"github\",outcome=\"busy\"}")
        .is_some_and(|n| n >= 1.0));
    assert_eq!(
        d.metric("gitmoor_webhook_deliveries_total{provider=\"github\",outcome=\"timeout\"}"),
        Some(SLOTS as f64)
    );
}

#[test]
fn a_wrong_gitlab_token_is_refused_before_its_body_is_read() {
    // The default read timeout (10 s) and body limit (1 MiB).
    let (stack, _guard, remote, host, port) = setup("");
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file("one"));
    let one = remote.commit("one");
    let d = Daemon::start(&host, port);
    d.wait_synced(&one, 120);
    let before = d.reconciles();

    // 64 MiB announced, 64 KiB sent, then nothing: the token alone decides, at once.
    let huge = 64 << 20;
    let part = vec![b'x'; 64 << 10];
    let started = Instant::now();
    let wrong = stall(
        port,
        "/hooks/gitlab",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
        huge,
        &part,
    );
    assert_eq!(answer(wrong, 20), Some(401));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 401 waited for the body: {:?}",
        started.elapsed()
    );
    // The right token with the same body: too large, also without reading it.
    let started = Instant::now();
    let right = stall(
        port,
        "/hooks/gitlab",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)],
        huge,
        &part,
    );
    assert_eq!(answer(right, 20), Some(413));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_health_ok(&d);
    assert_eq!(
        d.metric("gitmoor_webhook_deliveries_total{provider=\"gitlab\",outcome=\"unauthorized\"}"),
        Some(1.0)
    );
    assert_eq!(d.reconciles(), before);
}
