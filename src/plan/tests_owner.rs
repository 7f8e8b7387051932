//! Ownership per repo: two configs of one instance each see the other's objects, and neither
//! may prune or replace them (issue 12). Plain structs, like `tests.rs`, whose seed app (stack
//! `app`: postgres + backend, networks `app_db` and `app_web`, volume `app_pgdata`) is repo A's.

use super::tests::{applied, ctx, images, kinds, seed, with_build};
use super::*;
use crate::labels;
use crate::observe::Observed;
use crate::spec::model::*;
use std::collections::BTreeSet;

const REPO_A: &str = "file:///srv/infra.git";
const REPO_B: &str = "https://git.example.org/other.git";

/// Repo B's config: same instance as A's, another repo, its own (empty) state.
fn ctx_b() -> PlanContext {
    PlanContext {
        repo: REPO_B.into(),
        ..ctx()
    }
}

/// A one-service stack `name` (its service `web`, no network of its own).
fn lone_stack(name: &str, container_name: Option<&str>) -> HostSpec {
    let mut stack = StackSpec {
        name: name.into(),
        compose_file: format!("compose/{name}/compose.yaml"),
        ..Default::default()
    };
    stack.services.insert(
        "web".into(),
        ServiceSpec {
            image: "example-backend:1".into(),
            container_name: container_name.map(str::to_string),
            ..Default::default()
        },
    );
    let mut host = HostSpec::default();
    host.stacks.insert(name.into(), stack);
    host
}

/// Repo A's seed app, deployed.
fn a_deployed() -> Observed {
    applied(&plan(&seed(), &images(), &ctx()).unwrap(), &images())
}

/// Repo B's desired stacks on top of A's host, deployed by B.
fn b_deployed(spec: &HostSpec, host: &Observed) -> Observed {
    applied(&plan(spec, host, &ctx_b()).unwrap(), host)
}

/// The same host as made by a gitmoor from before repo labels.
fn unlabelled(mut host: Observed) -> Observed {
    for c in &mut host.containers {
        c.labels.remove(labels::REPO);
    }
    for n in &mut host.networks {
        n.labels.remove(labels::REPO);
    }
    for v in &mut host.volumes {
        v.labels.remove(labels::REPO);
    }
    host
}

fn recorded(stacks: &[&str]) -> BTreeSet<String> {
    stacks.iter().map(|s| s.to_string()).collect()
}

#[test]
fn everything_a_plan_makes_carries_its_repo_and_no_credential() {
    let p = plan(
        &seed(),
        &images(),
        &PlanContext {
            repo: labels::repo_label("https://x-access-token:tok_s3cret@git.example.org/o/r.git"),
            ..ctx()
        },
    )
    .unwrap();
    let want = "https://git.example.org/o/r.git";
    for a in p.units[0].actions().unwrap() {
        let l = match a {
            Action::CreateNetwork { network } => &network.labels,
            Action::CreateVolume { volume } => &volume.labels,
            Action::Create { container } => &container.labels,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(l[labels::REPO], want, "{a:?}");
        assert_eq!(l[labels::INSTANCE], "default", "{a:?}");
    }
    assert!(!format!("{p:?}").contains("tok_s3cret"));
    // Built images too: only this repo prunes them once a rebuild supersedes them.
    let p = plan(&with_build("t1"), &images(), &ctx()).unwrap();
    assert_eq!(p.builds[0].labels[labels::REPO], REPO_A);
    assert_eq!(p.builds[0].labels[labels::INSTANCE], "default");
}

#[test]
fn another_repos_stack_is_never_pruned_and_is_listed_as_foreign() {
    let host = a_deployed();
    // Repo B declares only its own stack: A's `app` did not "leave the repo".
    let p = plan(&lone_stack("shop", None), &host, &ctx_b()).unwrap();
    assert_eq!(kinds(&p), vec!["create shop-web-1"]);
    assert!(p.kept_volumes.is_empty(), "{:?}", p.kept_volumes);
    assert_eq!(p.foreign.len(), 1, "{:?}", p.foreign);
    let f = &p.foreign[0];
    assert_eq!((f.stack.as_str(), f.repo.as_deref()), ("app", Some(REPO_A)));
    assert_eq!(f.containers, vec!["app-backend-1", "app-postgres-1"]);
    assert_eq!(f.networks, vec!["app_db", "app_web"]);
    assert_eq!(f.volumes, vec!["app_pgdata"]);
    let text = p.render_text();
    assert!(
        text.contains(&format!(
            "foreign: stack app (from repo {REPO_A}) left alone: app-backend-1, app-postgres-1, network app_db, network app_web, volume app_pgdata"
        )),
        "{text}"
    );

    // Once B's stack runs, B has nothing to do (the foreign stack does not make a plan), and A
    // in turn leaves B's stack alone.
    let both = b_deployed(&lone_stack("shop", None), &host);
    let again = plan(&lone_stack("shop", None), &both, &ctx_b()).unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    assert!(again.render_text().starts_with("no changes"));
    let a = plan(&seed(), &both, &ctx()).unwrap();
    assert!(a.is_empty(), "{}", a.render_text());
    assert_eq!(a.foreign.len(), 1);
    assert_eq!(a.foreign[0].stack, "shop");
    assert_eq!(a.foreign[0].repo.as_deref(), Some(REPO_B));
    // Even a commit of B with no stack at all removes nothing of A's.
    let none = plan(&HostSpec::default(), &both, &ctx_b()).unwrap();
    assert_eq!(kinds(&none), vec!["remove shop-web-1"]);
}

#[test]
fn a_name_another_repo_holds_is_a_plan_error_naming_that_repo() {
    let host = a_deployed();
    // B declares a stack of the same name: its first network's name is A's.
    let e = plan(&seed(), &host, &ctx_b()).unwrap_err().0;
    assert!(
        e.contains(&format!(
            "network name app_db is held by stack app from repo {REPO_A}"
        )),
        "{e}"
    );
    assert!(e.contains("adopt: [app]"), "{e}");
    // A container name of another stack, through container_name: renaming is the fix.
    let e = plan(&lone_stack("shop", Some("app-postgres-1")), &host, &ctx_b())
        .unwrap_err()
        .0;
    assert!(
        e.contains(&format!(
            "container name app-postgres-1 is held by stack app from repo {REPO_A}"
        )),
        "{e}"
    );
    assert!(
        e.contains("compose/shop/compose.yaml") && !e.contains("adopt"),
        "{e}"
    );
}

#[test]
fn adopt_takes_the_stack_over_with_this_repos_label() {
    let host = a_deployed();
    let adopting = PlanContext {
        adopt: Adopt::Stacks(recorded(&["app"])),
        ..ctx_b()
    };
    let p = plan(&seed(), &host, &adopting).unwrap();
    assert!(p.foreign.is_empty(), "{:?}", p.foreign);
    let k = kinds(&p);
    for want in [
        "remove app-postgres-1",
        "remove app-backend-1",
        "remove-network app_db",
        "create-network app_db",
        "create app-postgres-1",
        "create app-backend-1",
    ] {
        assert!(k.contains(&want.to_string()), "{want} missing: {k:?}");
    }
    let why = format!("taken over from repo {REPO_A} (config: adopt)");
    assert!(
        p.views().iter().any(|v| v.reasons.contains(&why)),
        "{}",
        p.render_text()
    );
    // Made anew with B's label: B is done, and A now sees B's stack.
    let host = applied(&p, &host);
    assert!(host.containers.iter().all(|c| c.repo() == Some(REPO_B)));
    assert!(host.networks.iter().all(|n| n.repo() == Some(REPO_B)));
    let again = plan(&seed(), &host, &adopting).unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    let e = plan(&seed(), &host, &ctx()).unwrap_err().0;
    assert!(e.contains(&format!("from repo {REPO_B}")), "{e}");

    // `adopt: true` takes over only the stacks the commit declares: A's `app` stays A's when
    // B's commit has only `shop`.
    let p = plan(
        &lone_stack("shop", None),
        &a_deployed(),
        &PlanContext {
            adopt: Adopt::All,
            ..ctx_b()
        },
    )
    .unwrap();
    assert_eq!(kinds(&p), vec!["create shop-web-1"]);
    assert_eq!(p.foreign[0].stack, "app");
}

#[test]
fn unlabelled_objects_are_ours_only_for_stacks_this_state_dir_records() {
    let legacy = unlabelled(a_deployed());
    let upgraded = PlanContext {
        recorded_stacks: recorded(&["app"]),
        ..ctx()
    };
    // The config that made them goes on managing them, without recreating anything.
    let p = plan(&seed(), &legacy, &upgraded).unwrap();
    assert!(p.is_empty(), "{}", p.render_text());
    // A change recreates what changed, and the new container carries the repo label.
    let mut spec = seed();
    let backend = spec.stacks.get_mut("app").unwrap();
    backend
        .services
        .get_mut("backend")
        .unwrap()
        .environment
        .insert("GREETING".into(), Secret("bonjour".into()));
    let p = plan(&spec, &legacy, &upgraded).unwrap();
    assert_eq!(kinds(&p), vec!["recreate app-backend-1"]);
    let Action::Recreate { container, .. } = &p.units[0].actions().unwrap()[0] else {
        panic!("{p:?}")
    };
    assert_eq!(container.labels[labels::REPO], REPO_A);
    // Its stack leaving the repo removes them, as before.
    let p = plan(&HostSpec::default(), &legacy, &upgraded).unwrap();
    assert!(kinds(&p).contains(&"remove app-backend-1".to_string()));

    // Another config, whose state has no record of `app`: foreign, never removed.
    let p = plan(&lone_stack("shop", None), &legacy, &ctx_b()).unwrap();
    assert_eq!(kinds(&p), vec!["create shop-web-1"]);
    assert_eq!(p.foreign[0].repo, None);
    assert!(
        p.render_text()
            .contains("stack app (made by an older gitmoor that did not label repos"),
        "{}",
        p.render_text()
    );
    // And a name it holds is refused, with the way to take it over.
    let e = plan(&seed(), &legacy, &ctx_b()).unwrap_err().0;
    assert!(
        e.contains("held by stack app made by an older gitmoor") && e.contains("adopt: [app]"),
        "{e}"
    );
}

#[test]
fn status_keeps_only_this_configs_objects() {
    let both = b_deployed(&lone_stack("shop", None), &a_deployed());
    let mut seen = both.clone();
    retain_own(&mut seen, REPO_B, &BTreeSet::new(), &Adopt::None, None);
    assert!(seen.containers.iter().all(|c| c.stack == "shop"));
    assert_eq!(seen.containers.len(), 1);
    assert!(seen.volumes.is_empty() && seen.networks.is_empty());
    // Unlabelled: kept when recorded (`app`), not otherwise (`shop`); adopted stacks of the
    // commit count as ours.
    let mut seen = unlabelled(both.clone());
    retain_own(&mut seen, REPO_B, &recorded(&["app"]), &Adopt::None, None);
    assert_eq!(seen.containers.len(), 2);
    assert!(seen.containers.iter().all(|c| c.stack == "app"));
    let mut seen = both;
    let desired = recorded(&["app", "shop"]);
    retain_own(
        &mut seen,
        REPO_B,
        &BTreeSet::new(),
        &Adopt::All,
        Some(&desired),
    );
    assert_eq!(seen.containers.len(), 3);
}

#[test]
fn the_adopt_key_is_a_bool_or_a_list_of_stacks() {
    let parse = |extra: &str| {
        crate::config::Config::parse(
            &format!("repo: /srv/infra.git\n{extra}"),
            std::path::Path::new("/etc/gitmoor/config.yaml"),
        )
    };
    assert_eq!(parse("").unwrap().adopt, Adopt::None);
    assert_eq!(parse("adopt: false\n").unwrap().adopt, Adopt::None);
    assert_eq!(parse("adopt: true\n").unwrap().adopt, Adopt::All);
    assert_eq!(
        parse("adopt: [app, db]\n").unwrap().adopt,
        Adopt::Stacks(recorded(&["app", "db"]))
    );
    let e = format!("{:#}", parse("adopt: app\n").unwrap_err());
    assert!(
        e.contains("config.yaml") && e.contains("list of stack names"),
        "{e}"
    );
}
