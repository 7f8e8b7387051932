//! `depends_on.<x>.restart: true` and `links:` (which imply it): when x is recreated, its direct
//! dependents are recreated after it, saying why; their own dependents are left alone (compose
//! restarts only the direct ones). And the keys added with them recreate nothing by themselves.

use crate::plan::fingerprint::config_hash;
use crate::plan::tests::{applied, ctx, images, kinds};
use crate::plan::Action;
use crate::plan::{plan, Plan};
use crate::spec::model::HostSpec;

/// db; api restarts with db; web restarts with api; legacy links to db; plain only depends on db.
fn stack(db_env: &str, extra: &str) -> HostSpec {
    let yaml = format!(
        "services:
  db:
    image: example-postgres:15
    environment:
      V: \"{db_env}\"
  api:
    image: example-backend:1
    depends_on:
      db:
        condition: service_started
        restart: true
  web:
    image: example-backend:1
    depends_on:
      api:
        condition: service_started
        restart: true
  legacy:
    image: example-backend:1
    links: [\"db:database\"]
  plain:
    image: example-backend:1
    depends_on: [db]
{extra}"
    );
    let snap =
        crate::source::snapshot::Snapshot::from_texts(&[("compose/app/compose.yaml", &yaml)]);
    let (spec, findings) =
        crate::spec::load::load_host_spec(&snap, &crate::spec::load::LoadOptions::default());
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    spec.expect("the stack loads")
}

fn reasons_of(plan: &Plan, container: &str) -> Option<Vec<String>> {
    plan.stack_actions().map(|(_, a)| a).find_map(|a| match a {
        Action::Recreate {
            container: c,
            reasons,
            ..
        } if c.name == container => Some(reasons.clone()),
        _ => None,
    })
}

#[test]
fn recreating_a_dependency_recreates_its_restart_dependents_after_it() {
    let first = plan(&stack("1", ""), &images(), &ctx()).unwrap();
    let host = applied(&first, &images());
    assert!(plan(&stack("1", ""), &host, &ctx()).unwrap().is_empty());

    let p = plan(&stack("2", ""), &host, &ctx()).unwrap();
    let k = kinds(&p);
    assert_eq!(
        reasons_of(&p, "app-api-1"),
        Some(vec![
            "depends on db with restart: true, and db is recreated".to_string()
        ]),
        "{k:?}"
    );
    assert_eq!(
        reasons_of(&p, "app-legacy-1"),
        Some(vec![
            "depends on db with restart: true, and db is recreated".to_string()
        ]),
        "a link implies restart: true, as compose has it: {k:?}"
    );
    assert_eq!(reasons_of(&p, "app-web-1"), None, "not transitive: {k:?}");
    assert_eq!(reasons_of(&p, "app-plain-1"), None, "no restart: {k:?}");
    let at = |n: &str| k.iter().position(|a| a == n).unwrap();
    assert!(at("recreate app-db-1") < at("recreate app-api-1"), "{k:?}");
    assert!(
        at("recreate app-db-1") < at("recreate app-legacy-1"),
        "{k:?}"
    );
    assert_eq!(k.len(), 3, "db, api and legacy only: {k:?}");

    // Once applied, nothing is left to do.
    let after = applied(&p, &host);
    assert!(plan(&stack("2", ""), &after, &ctx()).unwrap().is_empty());
}

#[test]
fn a_service_recreated_for_its_own_change_takes_its_restart_dependents() {
    let first = plan(&stack("1", ""), &images(), &ctx()).unwrap();
    let host = applied(&first, &images());
    let mut changed = stack("1", "");
    changed
        .stacks
        .get_mut("app")
        .unwrap()
        .services
        .get_mut("api")
        .unwrap()
        .command = Some(vec!["serve".into()]);
    let p = plan(&changed, &host, &ctx()).unwrap();
    assert_eq!(
        reasons_of(&p, "app-web-1"),
        Some(vec![
            "depends on api with restart: true, and api is recreated".to_string()
        ]),
        "{:?}",
        kinds(&p)
    );
    assert_eq!(kinds(&p).len(), 2, "{:?}", kinds(&p));
}

#[test]
fn restart_and_required_flags_change_no_hash() {
    let spec = stack("1", "");
    let st = &spec.stacks["app"];
    let api = &st.services["api"];
    assert!(api.depends_on_restart.contains("db"));
    let mut without = api.clone();
    without.depends_on_restart.clear();
    without.depends_on_optional.insert("db".into());
    let key = crate::hashkey::HashKey::from_bytes([5; 32]);
    let scope = || crate::plan::fingerprint::HashScope {
        key: &key,
        stack: "app",
        service: "api",
    };
    assert_eq!(
        config_hash(api, &st.networks, scope()),
        config_hash(&without, &st.networks, scope()),
        "the flags change no container setting, so no recreate"
    );
    // A service that uses none of the keys added with them serialises as before.
    let json = serde_json::to_string(&st.services["plain"]).unwrap();
    for key in [
        "pids_limit",
        "links",
        "volumes.selinux",
        "depends_on_restart",
        "depends_on_optional",
    ] {
        assert!(!json.contains(&format!("\"{key}\"")), "{key} in {json}");
    }
}

#[test]
fn a_pids_limit_change_recreates_exactly_that_service_and_says_so() {
    let extra = "  capped:\n    image: example-backend:1\n    pids_limit: 100\n";
    let first = plan(&stack("1", extra), &images(), &ctx()).unwrap();
    let host = applied(&first, &images());
    let p = plan(&stack("1", &extra.replace("100", "200")), &host, &ctx()).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-capped-1"]);
    assert_eq!(
        reasons_of(&p, "app-capped-1"),
        Some(vec!["pids_limit changed".to_string()])
    );
}
