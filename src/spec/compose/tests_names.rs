//! Names of variables, build args and labels: written in the file, never interpolated, and valid.
//! A value of the secrets file must never become a name, nor appear in any message.

use super::tests::{load_with, strict, FILE};
use crate::spec::error::Findings;

/// A base64 key ending in `=`: `${API_KEY}` alone would split into a "name" and `=`.
const LONG: &str = "c2VjcmV0c2VjcmV0cw==";
/// Too short for the scrubbing of messages (which replaces values of 4 characters or more).
const SHORT: &str = "Zq9";

fn vars() -> crate::spec::compose::StackVars {
    strict(&[("API_KEY", LONG), ("PIN", SHORT), ("GREETING", "hello")])
}

/// Loads `text` with a build context `./app` in the repo.
fn load(text: &str) -> Findings {
    let files = [("compose/app/app/Dockerfile", "FROM scratch\n")];
    let (spec, findings) = load_with("app", text, &files, &vars());
    if !findings.errors.is_empty() {
        assert!(spec.is_none(), "an error refuses the file");
    }
    findings
}

/// Every error and warning, as the user sees it.
fn shown(f: &Findings) -> String {
    f.errors
        .iter()
        .chain(&f.warnings)
        .map(|e| format!("{e}\n{e:?}\n"))
        .collect()
}

fn assert_no_secret(f: &Findings) {
    let all = shown(f);
    for secret in [LONG, "c2VjcmV0c2VjcmV0cw", SHORT] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

/// The one error, at `line`, for `key`.
fn refused(text: &str, line: u64, key: &str, says: &str) {
    let f = load(text);
    assert_no_secret(&f);
    let hits: Vec<_> = f
        .errors
        .iter()
        .filter(|e| e.key.as_deref() == Some(key))
        .collect();
    assert_eq!(hits.len(), 1, "one error for {key}: {}", shown(&f));
    let e = hits[0];
    assert_eq!(e.file, FILE);
    assert_eq!(e.line, Some(line), "{e}");
    assert!(e.to_string().contains(says), "{e}");
    assert_eq!(f.errors.len(), 1, "nothing else: {}", shown(&f));
}

const SVC: &str = "services:\n  api:\n    image: img\n";

#[test]
fn a_secret_never_becomes_a_variable_name() {
    for secret_var in ["API_KEY", "PIN"] {
        let text = format!("{SVC}    environment:\n      - GREETING\n      - ${{{secret_var}}}\n");
        refused(
            &text,
            6,
            "services.api.environment[1]",
            &format!("the variable name `${{{secret_var}}}` is interpolated"),
        );
        let e = load(&text).errors.remove(0);
        assert_eq!(
            e.fix.as_deref(),
            Some(format!("write the name itself: `{secret_var}=${{{secret_var}}}`, or a bare `{secret_var}` (which takes the stack variable {secret_var})").as_str())
        );
    }
    // `$NAME`, a name with a value, a default holding `=`, a mapping key.
    for (entry, key) in [
        ("- $PIN", "services.api.environment[0]"),
        ("- ${PIN}=1", "services.api.environment[0]"),
        ("- X_${PIN}=1", "services.api.environment[0]"),
        ("- ${NOPE:-a=b}", "services.api.environment[0]"),
        ("${PIN}: 1", "services.api.environment.${PIN}"),
    ] {
        refused(
            &format!("{SVC}    environment:\n      {entry}\n"),
            5,
            key,
            "is interpolated",
        );
    }
}

#[test]
fn a_secret_never_becomes_a_label_key_or_build_arg_name() {
    let cases = [
        (
            format!("{SVC}    labels:\n      - ${{API_KEY}}\n"),
            5,
            "services.api.labels[0]",
            "the label name `${API_KEY}`",
        ),
        (
            format!("{SVC}    labels:\n      ${{PIN}}: x\n"),
            5,
            "services.api.labels.${PIN}",
            "the label name `${PIN}`",
        ),
        (
            "services:\n  api:\n    build:\n      context: ./app\n      args:\n        - ${API_KEY}\n"
                .to_string(),
            6,
            "services.api.build.args[0]",
            "the build arg name `${API_KEY}`",
        ),
        (
            "services:\n  api:\n    build:\n      context: ./app\n      labels:\n        - ${PIN}=x\n"
                .to_string(),
            6,
            "services.api.build.labels[0]",
            "the label name `${PIN}`",
        ),
        (
            format!("{SVC}networks:\n  back:\n    labels:\n      - ${{PIN}}\n"),
            7,
            "networks.back.labels[0]",
            "the label name `${PIN}`",
        ),
        (
            format!("{SVC}volumes:\n  data:\n    labels:\n      - ${{API_KEY}}=1\n"),
            7,
            "volumes.data.labels[0]",
            "the label name `${API_KEY}`",
        ),
    ];
    for (text, line, key, says) in cases {
        refused(&text, line, key, says);
    }
}

#[test]
fn values_are_still_interpolated() {
    let text = format!(
        "{SVC}    environment:\n      - KEY=${{API_KEY}}\n      - PIN\n    labels:\n      - com.example.pin=${{PIN}}\n"
    );
    let (spec, f) = load_with("app", &text, &[], &vars());
    assert!(f.errors.is_empty(), "{}", shown(&f));
    let api = &spec.unwrap().services["api"];
    assert_eq!(api.environment["KEY"].expose(), LONG);
    assert_eq!(api.environment["PIN"].expose(), SHORT);
    assert_eq!(api.labels["com.example.pin"], SHORT);
}

#[test]
fn names_must_be_valid() {
    for (entry, key, says) in [
        (
            "environment: [\"1ST=x\"]",
            "services.api.environment.1ST",
            "`1ST` is not a valid variable name",
        ),
        (
            "environment: [\"A B=x\"]",
            "services.api.environment.A B",
            "`A B` is not a valid variable name",
        ),
        (
            "environment: {\"A:B\": x}",
            "services.api.environment.A:B",
            "not a valid variable name",
        ),
        (
            "environment: [\"=x\"]",
            "services.api.environment.",
            "`` is not a valid variable name",
        ),
        (
            "labels: [\"a b=x\"]",
            "services.api.labels.a b",
            "`a b` is not a valid label key",
        ),
        (
            "labels: {\".hidden\": x}",
            "services.api.labels..hidden",
            "not a valid label key",
        ),
        (
            "labels: {\"a\\\"b\": x}",
            "services.api.labels.a\"b",
            "not a valid label key",
        ),
    ] {
        refused(&format!("{SVC}    {entry}\n"), 4, key, says);
    }
    refused(
        "services:\n  api:\n    build:\n      context: ./app\n      args: {\"9x\": 1}\n",
        5,
        "services.api.build.args.9x",
        "`9x` is not a valid build arg name",
    );
}

#[test]
fn real_world_names_are_accepted() {
    let text = format!(
        "{SVC}    environment:\n      discovery.type: single-node\n      PIHOLE_DNS_: 1.1.1.1\n      GITEA__database__DB_TYPE: postgres\n      _X-y: 1\n    labels:\n      - traefik.http.routers.go.rule=Host(`x`)\n      - traefik.http.routers.go.tls.domains[0].main=example.org\n      - app.kubernetes.io/name=api\n      - caddy.@ws.0_header=Connection *Upgrade*\n      - com.example.Flag\n"
    );
    let (spec, f) = load_with("app", &text, &[], &vars());
    assert!(f.errors.is_empty(), "{}", shown(&f));
    let api = &spec.unwrap().services["api"];
    assert_eq!(api.environment.len(), 4);
    assert_eq!(api.labels.len(), 5);
}
