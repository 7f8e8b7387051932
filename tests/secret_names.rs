//! A secret never becomes a name, and labels carry no guessing oracle for one: on the real dockerd
//! and a real Git remote, through the gitmoor binary.

mod support;
use sha2::{Digest, Sha256};
use support::*;

/// Too short for the scrubbing of messages (values of 4 characters or more become `***`).
const PIN: &str = "Zq9";
/// A base64 key ending in `=`: `${API_KEY}` alone used to split into a "name" and `=`.
const API_KEY: &str = "c2VjcmV0c2VjcmV0cw==";

fn compose(environment: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    environment:\n{environment}    labels:\n      com.example.role: web\n"
    )
}

/// Every label of every container of `stack`, as JSON text.
fn all_labels(stack: &str) -> String {
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={stack}"),
    ]);
    ids.lines()
        .map(|id| inspect(id, "{{json .Config.Labels}}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The oracle the old labels gave: sha256 of the JSON-quoted value, at every length used.
fn plain_hashes(value: &str) -> Vec<String> {
    let quoted = serde_json::to_string(value).unwrap();
    let mut out = Vec::new();
    for input in [quoted.as_str(), value] {
        let h = hex::encode(Sha256::digest(input.as_bytes()));
        for n in [8, 16, 20, 32, 64] {
            out.push(h[..n].to_string());
        }
    }
    out
}

#[test]
fn no_label_holds_a_plain_hash_of_a_secret_and_a_secret_named_variable_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let stack = unique("sn");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let host = Host::new(&remote, "");
    host.secret(&stack, &format!("PIN={PIN}\nAPI_KEY={API_KEY}\n"));
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(
        &file,
        &compose("      PIN: ${PIN}\n      KEY: ${API_KEY}\n"),
    );
    remote.commit("a service with two secrets");
    host.apply_ok();
    let id = container_id(&stack, "web");
    assert!(!id.is_empty());

    // The values reach the container, their plain hashes no label.
    let env = inspect(&id, "{{json .Config.Env}}");
    assert!(env.contains(&format!("PIN={PIN}")), "{env}");
    let labels = all_labels(&stack);
    assert!(labels.contains("io.gitmoor.fingerprint"), "{labels}");
    assert!(labels.contains("\"io.gitmoor.hash\":\"hmac1:"), "{labels}");
    for secret in [PIN, API_KEY] {
        assert!(!labels.contains(secret), "{secret} in a label: {labels}");
        for h in plain_hashes(secret) {
            assert!(
                !labels.contains(&h),
                "plain hash {h} of a secret in a label: {labels}"
            );
        }
    }
    // The key: 32 bytes, 0600, in a 0700 state dir.
    let key = host.state.join("hash.key");
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&host.state), 0o700);
    // Applying again changes nothing: the hashes are stable under the kept key.
    let again = host.gitmoor(&["plan"]);
    assert!(
        output_text(&again).contains("no changes"),
        "{}",
        output_text(&again)
    );

    // A commit that would name variables after the secrets is refused, at its lines, and no
    // output or state holds either secret.
    let bad = compose("      - PIN=${PIN}\n      - ${API_KEY}\n      - ${PIN}\n");
    let line_of = |needle: &str| bad.lines().position(|l| l == needle).unwrap() + 1;
    remote.write(&file, &bad);
    remote.commit("secret-named variables");
    for cmd in ["plan", "apply"] {
        let out = host.gitmoor(&[cmd]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{cmd} must fail:\n{text}");
        for (needle, i) in [("      - ${API_KEY}", 1), ("      - ${PIN}", 2)] {
            let at = format!("{file}:{}: services.web.environment[{i}]", line_of(needle));
            assert!(text.contains(&at), "{cmd}: {at} missing:\n{text}");
        }
        for secret in [PIN, API_KEY, "c2VjcmV0c2VjcmV0cw"] {
            assert!(!text.contains(secret), "{cmd}: {secret} in output:\n{text}");
        }
    }
    let state = std::fs::read_to_string(host.state.join("state.json")).unwrap();
    assert!(state.contains("is interpolated"), "{state}");
    for secret in [PIN, API_KEY, "c2VjcmV0c2VjcmV0cw"] {
        assert!(!state.contains(secret), "{secret} in state.json: {state}");
    }
    let status = output_text(&host.gitmoor(&["status"]));
    assert!(!status.contains(PIN), "{status}");
    // The running container is untouched.
    assert_eq!(container_id(&stack, "web"), id);
}
