//! The host policy on whole compose files, as `gitmoor validate --policy` and `plan` read them:
//! each refusal at its file, line and key, allow-lists opening exactly what they name, and the
//! seed's stack passing `baseline`.

use crate::source::snapshot::Snapshot;
use crate::spec::load::{load_host_spec, LoadOptions};
use crate::spec::policy::Policy;
use std::path::PathBuf;

const FILE: &str = "compose/app/compose.yaml";

const EVERYTHING: &str = r#"services:
  web:
    image: nginx
    privileged: true
    network_mode: host
    pid: host
    ipc: host
    cap_add: [CHOWN, NET_ADMIN, cap_sys_admin]
    devices: ["/dev/ttyUSB0:/dev/ttyUSB0"]
    security_opt: ["seccomp:unconfined", "no-new-privileges:true"]
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - ./conf:/etc/nginx/conf.d:ro
      - /srv/data:/data
      - type: bind
        source: /etc
        target: /host-etc
      - data:/var/lib/data
volumes:
  data: {}
  sneaky:
    driver_opts: {type: none, o: bind, device: /root}
"#;

const NEIGHBOUR: &str = "services:\n  ok:\n    image: x\n    cap_add: [NET_BIND_SERVICE]\n    volumes: [\"./site:/srv:ro\"]\n";

fn load(policy: Option<Policy>) -> Vec<String> {
    let s = Snapshot::from_texts(&[
        (FILE, EVERYTHING),
        ("compose/app/conf/default.conf", "server {}"),
        ("compose/other/compose.yaml", NEIGHBOUR),
        ("compose/other/site/index.html", "hi"),
    ]);
    let opts = LoadOptions {
        policy,
        ..LoadOptions::default()
    };
    let (_, f) = load_host_spec(&s, &opts);
    f.errors.iter().map(|e| e.to_string()).collect()
}

#[test]
fn without_a_policy_nothing_is_refused() {
    assert_eq!(load(None), Vec::<String>::new());
}

#[test]
fn baseline_refuses_each_escape_at_its_line_and_key() {
    let errors = load(Some(Policy::default()));
    let want = [
        "compose/app/compose.yaml:4: services.web.privileged: the policy refuses privileged containers",
        "compose/app/compose.yaml:5: services.web.network_mode: the policy refuses `network_mode: host`: the container would share the host's network stack",
        "compose/app/compose.yaml:6: services.web.pid: the policy refuses `pid: host`",
        "compose/app/compose.yaml:7: services.web.ipc: the policy refuses `ipc: host`",
        "compose/app/compose.yaml:8: services.web.cap_add[1]: the policy refuses adding capability NET_ADMIN (not in Docker's default set, not in policy.allow_cap_add); remove it, or add NET_ADMIN to policy.allow_cap_add in gitmoor's config",
        "compose/app/compose.yaml:8: services.web.cap_add[2]: the policy refuses adding capability SYS_ADMIN",
        "compose/app/compose.yaml:9: services.web.devices[0]: the policy refuses passing the host device `/dev/ttyUSB0`; remove it, or add /dev/ttyUSB0 to policy.allow_devices in gitmoor's config",
        "compose/app/compose.yaml:10: services.web.security_opt[0]: the policy refuses `seccomp:unconfined`: it turns off the seccomp filter on system calls",
        "compose/app/compose.yaml:12: services.web.volumes[0]: the policy refuses the bind `/var/run/docker.sock`: it is the Docker socket, which is root on the host; mount something narrower, or name /var/run/docker.sock itself in policy.allow_bind",
        "compose/app/compose.yaml:14: services.web.volumes[2]: the policy refuses the bind `/srv/data`: a host path outside policy.allow_bind; mount a folder of the repo (./path) or a named volume, or add /srv/data to policy.allow_bind in gitmoor's config",
        "compose/app/compose.yaml:15: services.web.volumes[3]: the policy refuses the bind `/etc`: it is the host's configuration",
        "compose/app/compose.yaml:22: volumes.sneaky.driver_opts.device: the policy refuses the bind `/root`: it is root's home (ssh keys)",
    ];
    for (got, want) in errors.iter().zip(want.iter()) {
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    assert!(
        errors.iter().all(|e| e.starts_with(FILE)),
        "the neighbour stack, which asks for nothing, is not refused: {errors:#?}"
    );
}

#[test]
fn allow_lists_open_exactly_what_they_name() {
    let policy: Policy = serde_saphyr::from_str(
        "preset: baseline\nallow_bind: [/srv/data, /var/run/docker.sock]\nallow_cap_add: [NET_ADMIN]\nallow_devices: [/dev/ttyUSB0]\n",
    )
    .expect("policy");
    let errors = load(Some(policy));
    let keys: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        vec![
            "services.web.privileged",
            "services.web.network_mode",
            "services.web.pid",
            "services.web.ipc",
            "services.web.cap_add[2]",
            "services.web.security_opt[0]",
            "services.web.volumes[3]",
            "volumes.sneaky.driver_opts.device",
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_bind_from_a_variable_is_judged_after_interpolation() {
    let text = "services:\n  a:\n    image: x\n    volumes: [\"${HOST_DIR:-/etc}:/data\"]\n";
    let s = Snapshot::from_texts(&[(FILE, text)]);
    let opts = LoadOptions {
        policy: Some(Policy::default()),
        ..LoadOptions::default()
    };
    let (spec, f) = load_host_spec(&s, &opts);
    assert!(spec.is_none());
    assert_eq!(f.errors.len(), 1, "{:?}", f.errors);
    assert!(
        f.errors[0].to_string().starts_with(
            "compose/app/compose.yaml:4: services.a.volumes[0]: the policy refuses the bind `/etc`"
        ),
        "{}",
        f.errors[0]
    );
}

#[test]
fn the_seed_stack_passes_baseline() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/seed/repo");
    let snap = Snapshot::from_dir(&dir).expect("seed");
    let opts = LoadOptions {
        policy: Some(Policy::default()),
        ..LoadOptions::default()
    };
    let (spec, f) = load_host_spec(&snap, &opts);
    assert!(f.errors.is_empty(), "{:#?}", f.errors);
    assert!(spec.is_some());
}
