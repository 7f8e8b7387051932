//! The compose loader on arbitrary text: YAML parsing (anchors, merge keys), interpolation, every
//! key's conversion, then the config hash and the Docker create body of each service. Nothing may
//! panic, and no message (nor fingerprint label) may carry a value of the secrets file.
#![no_main]

use gitmoor::apply::docker::create_body;
use gitmoor::hashkey::HashKey;
use gitmoor::plan::fingerprint::{config_hash, fingerprint, HashScope};
use gitmoor::plan::ContainerToCreate;
use gitmoor::source::snapshot::{FileEntry, Snapshot};
use gitmoor::spec::compose::{load_stack, StackInput, StackVars};
use gitmoor::spec::limits::Limits;
use gitmoor::spec::policy::Policy;
use gitmoor::spec::model::Secret;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

const FILE: &str = "compose/app/compose.yaml";
const SECRET: &str = "s3cr3t-value";

fn file(data: &str, symlink: bool) -> FileEntry {
    FileEntry {
        data: data.as_bytes().to_vec(),
        executable: false,
        symlink,
    }
}

/// The repo around the fuzzed compose file: a build context, config files, an env file, a
/// symlink that escapes the stack folder.
fn repo() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let mut s = Snapshot::default();
        for (p, d) in [
            ("compose/app/Dockerfile", "FROM scratch\n"),
            ("compose/app/app/Dockerfile", "FROM scratch\n"),
            ("compose/app/app/src/main.rs", "fn main() {}\n"),
            ("compose/app/conf/nginx.conf", "events {}\n"),
            ("compose/app/app.env", "A=1\nexport B=\"two\"\n# c\n"),
            ("compose/other/compose.yaml", "services: {}\n"),
            ("shared/lib/Dockerfile", "FROM scratch\n"),
        ] {
            s.files.insert(p.to_string(), file(d, false));
        }
        s.files
            .insert("compose/app/conf/passwd".into(), file("/etc/passwd", true));
        s
    })
}

fn vars(strict: bool) -> StackVars {
    let mut v = StackVars::unchecked();
    for (k, val) in [
        ("TAG", "1.2"),
        ("PORT", "8080"),
        ("EMPTY", ""),
        ("DB_PASSWORD", SECRET),
        ("NESTED", "${TAG}"),
    ] {
        v.vars.insert(k.to_string(), Secret(val.to_string()));
    }
    if strict {
        v.secrets_file = Some("/etc/gitmoor/secrets/app.env".into());
        v.has_secrets_file = true;
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let snap = repo();
    let profiles = vec!["debug".to_string()];
    let baseline = Policy::default();
    for strict in [true, false] {
        let vars = vars(strict);
        let (spec, findings) = load_stack(&StackInput {
            name: "app",
            file: FILE,
            text,
            snap,
            vars: &vars,
            bind_root: Path::new("/var/lib/gitmoor/stacks"),
            secrets_dir: None,
            profiles: &profiles,
            limits: &Limits::default(),
            // The policy's checks run on half the inputs: they must not panic either.
            policy: strict.then_some(&baseline),
        });
        assert_eq!(spec.is_some(), findings.errors.is_empty());
        // A message may quote the file's own text; a value of the secrets file never.
        if !text.contains(SECRET) {
            for e in findings.errors.iter().chain(&findings.warnings) {
                let shown = e.to_string();
                assert!(!shown.contains(SECRET), "a secret in a message: {shown}");
            }
        }
        let Some(spec) = spec else { continue };
        for (name, svc) in &spec.services {
            let key = HashKey::from_bytes([7; 32]);
            let scope = || HashScope {
                key: &key,
                stack: "app",
                service: name,
            };
            let fp = fingerprint(svc, &spec.networks, scope());
            let _ = config_hash(svc, &spec.networks, scope());
            let fp = serde_json::to_string(&fp).unwrap_or_default();
            assert!(
                text.contains(SECRET) || !fp.contains(SECRET),
                "a secret in a fingerprint: {fp}"
            );
            let c = ContainerToCreate {
                name: format!("app-{name}-1"),
                stack: "app".into(),
                service: name.clone(),
                spec: svc.clone(),
                labels: Default::default(),
                networks: svc
                    .networks
                    .iter()
                    .filter_map(|(k, a)| {
                        spec.networks
                            .get(k)
                            .map(|n| (n.name.clone(), a.aliases.clone()))
                    })
                    .collect(),
                wait_healthy: false,
                wait_completed: false,
            };
            let _ = create_body(&c);
        }
    }
});
