//! `build:` as real compose files write it: a string or a mapping, what changes the context's
//! hash, the refusals, and build args that never print their values.

use super::tests::{api_with, snap, strict, FILE};
use super::tests_service_keys::indent;
use super::*;
use crate::spec::model::{BuildSpec, PullPolicy};

pub(super) const DOCKERFILE: &str = "FROM example-busybox:1\n";

#[test]
fn build_as_a_string_and_as_a_mapping() {
    let files = [
        ("compose/app/app/Dockerfile", DOCKERFILE),
        ("compose/app/app/src/main.go", "package main"),
        ("compose/app/web/docker/prod.Dockerfile", DOCKERFILE),
        ("shared/lib/Dockerfile", DOCKERFILE),
    ];
    let text = r#"services:
  api:
    build: ./app
  web:
    image: registry.example.org/web:2
    pull_policy: build
    build:
      context: web
      dockerfile: docker/prod.Dockerfile
      target: runtime
      args:
        - VERSION=${VERSION}
        - NODE_ENV
        - UNSET_ARG
        - PLAIN=yes
      labels:
        org.opencontainers.image.source: https://example.org
  lib:
    build:
      context: ../../shared/lib
      args:
        GO: "1.22"
        TAG:
"#;
    let vars = strict(&[
        ("VERSION", "1.2.3"),
        ("NODE_ENV", "production"),
        ("TAG", "t"),
    ]);
    let (spec, f) = tests::load_with("app", text, &files, &vars);
    let spec = spec.unwrap_or_else(|| panic!("{:#?}", f.errors));
    let snap_all = {
        let mut all = vec![(FILE, text)];
        all.extend_from_slice(&files);
        snap(&all)
    };
    let api = &spec.services["api"];
    assert_eq!(api.image, "app-api:latest");
    assert_eq!(
        api.build,
        Some(BuildSpec {
            context: "compose/app/app".into(),
            dockerfile: "Dockerfile".into(),
            context_tree: snap_all.content_id("compose/app/app").unwrap_or_default(),
            ..Default::default()
        })
    );
    let web = &spec.services["web"];
    assert_eq!(
        web.image, "registry.example.org/web:2",
        "image: names the tag"
    );
    assert_eq!(web.pull_policy, PullPolicy::Build);
    let b = web.build.as_ref().expect("build");
    assert_eq!(b.context, "compose/app/web");
    assert_eq!(b.dockerfile, "docker/prod.Dockerfile");
    assert_eq!(b.target.as_deref(), Some("runtime"));
    assert_eq!(
        b.args,
        secrets(&[
            ("NODE_ENV", "production"),
            ("PLAIN", "yes"),
            ("VERSION", "1.2.3")
        ]),
        "interpolated; a bare name takes the stack variable, and is left out when unset"
    );
    assert_eq!(
        b.labels["org.opencontainers.image.source"],
        "https://example.org"
    );
    let lib = spec.services["lib"].build.as_ref().expect("build");
    assert_eq!(
        lib.context, "shared/lib",
        "a context outside the stack but inside the repo"
    );
    assert_eq!(lib.args, secrets(&[("GO", "1.22"), ("TAG", "t")]));
}

#[test]
fn the_context_tree_changes_with_the_context_only() {
    let text = "services:\n  api:\n    build: ./app\n";
    let tree = |files: &[(&str, &str)]| {
        let (spec, f) = tests::load_with("app", text, files, &strict(&[]));
        let spec = spec.unwrap_or_else(|| panic!("{:#?}", f.errors));
        spec.services["api"]
            .build
            .clone()
            .expect("build")
            .context_tree
    };
    let base = [
        ("compose/app/app/Dockerfile", DOCKERFILE),
        ("compose/app/app/index.html", "v1"),
        ("compose/app/README.md", "about"),
    ];
    let a = tree(&base);
    let mut changed_inside = base;
    changed_inside[1].1 = "v2";
    let mut changed_outside = base;
    changed_outside[2].1 = "about, edited";
    assert_eq!(a.len(), 20);
    assert_ne!(a, tree(&changed_inside));
    assert_eq!(a, tree(&changed_outside));
}

#[test]
fn build_refusals_name_the_key() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "build:\n  context: app\n  dockerfile: ../Dockerfile",
            &[("compose/app/app/x", ""), ("compose/app/Dockerfile", DOCKERFILE)],
            "services.api.build.dockerfile: `../Dockerfile` leaves the build context compose/app/app",
        ),
        (
            "build: ./Dockerfile",
            &[("compose/app/Dockerfile", DOCKERFILE)],
            "services.api.build: `./Dockerfile` is a file (compose/app/Dockerfile), not a folder",
        ),
        (
            "build:\n  context: /srv/app",
            &[],
            "services.api.build.context: `/srv/app`: the build context must be a folder of the managed repo",
        ),
        (
            "build:\n  dockerfile_inline: FROM x",
            &[],
            "services.api.build.dockerfile_inline: not supported yet",
        ),
    ];
    for (body, files, want) in cases {
        let text = format!("services:\n  api:\n{}\n", indent(body));
        let (spec, f) = tests::load_with("app", &text, files, &strict(&[]));
        assert!(spec.is_none(), "{body}");
        let shown: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.contains(want) && e.starts_with(FILE)),
            "{body}: want {want:?} in {shown:#?}"
        );
    }
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, crate::spec::model::Secret> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), crate::spec::model::Secret(v.to_string())))
        .collect()
}

#[test]
fn build_args_never_print_their_values() {
    let spec = api_with(
        "build:\n  context: .\n  args:\n    NPM_TOKEN: ${NPM_TOKEN}",
        "",
        &[("compose/app/Dockerfile", "FROM scratch\n")],
        &strict(&[("NPM_TOKEN", "from-the-secrets-file")]),
    );
    let b = spec.build.expect("a build");
    assert_eq!(b.args["NPM_TOKEN"].expose(), "from-the-secrets-file");
    assert!(!format!("{b:?}").contains("from-the-secrets-file"));
}

#[test]
fn a_built_image_name_that_is_no_reference_asks_for_image() {
    let files = [("compose/app/Dockerfile", DOCKERFILE)];
    let text = "services:\n  web.:\n    build: .\n";
    let (spec, f) = tests::load_with("app", text, &files, &strict(&[]));
    assert!(spec.is_none());
    let e = f
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        e.contains("compose/app/compose.yaml:3: services.web..image: the image name \"app-web.:latest\" made from the stack and service names is not an image reference")
            && e.contains("set image:"),
        "{e}"
    );
}
