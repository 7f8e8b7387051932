//! Hashes of a service's effective config: one for the whole (compose's `config-hash` label,
//! compared to decide a recreate) and one per field (gitmoor's `fingerprint` label, compared to
//! say *why*). Secret values take part in both, as keyed hashes only: no label ever holds a value,
//! and without the host's key (`hashkey`) no label helps to guess one.
//!
//! Every hash is scoped by `<stack>/<service>` and, per field, by the field's name, so two
//! services or fields that hold the same secret show different hashes.

use crate::hashkey::HashKey;
use crate::spec::model::{NetworkSpec, ServiceSpec};
use std::collections::BTreeMap;

/// Field name -> short hash. Map fields (`environment`, `labels`, `repo_inputs`) get one entry per
/// key, so a reason can name the variable or the file.
pub type Fingerprint = BTreeMap<String, String>;

/// What the hashes of one container are computed with: the host's key, and the container's
/// `<stack>/<service>`.
#[derive(Clone, Copy)]
pub struct HashScope<'a> {
    pub key: &'a HashKey,
    pub stack: &'a str,
    pub service: &'a str,
}

impl HashScope<'_> {
    fn mac(&self, what: &[u8], field: &str, value: &str) -> [u8; 32] {
        self.key.mac(&[
            what,
            self.stack.as_bytes(),
            self.service.as_bytes(),
            field.as_bytes(),
            value.as_bytes(),
        ])
    }

    /// 8 hex digits: enough to tell a change, keyed so that it says nothing about the value.
    fn short(&self, field: &str, value: &str) -> String {
        hex::encode(&self.mac(b"gitmoor field", field, value)[..4])
    }
}

/// Everything that decides whether a container must be recreated: the service spec and the specs
/// of the networks it joins (a network that changes must be recreated, and its containers too).
pub fn fingerprint(
    spec: &ServiceSpec,
    networks: &BTreeMap<String, NetworkSpec>,
    scope: HashScope,
) -> Fingerprint {
    let mut out = Fingerprint::new();
    let mut put = |name: String, value: &str| {
        let h = scope.short(&name, value);
        out.insert(name, h);
    };
    let value = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(fields) = value {
        for (field, v) in fields {
            match (field.as_str(), &v) {
                ("environment" | "labels", serde_json::Value::Object(m)) => {
                    for (k, item) in m {
                        put(format!("{field}.{k}"), &item.to_string());
                    }
                }
                ("repo_inputs", serde_json::Value::Object(m)) => {
                    for (k, item) in m {
                        put(format!("file {k}"), &item.to_string());
                    }
                }
                ("volumes", serde_json::Value::Array(mounts)) => {
                    put(field, &copies_by_repo_path(mounts, spec).to_string());
                }
                _ => put(field, &v.to_string()),
            }
        }
    }
    for key in spec.networks.keys() {
        if let Some(net) = networks.get(key) {
            let v = serde_json::to_string(net).unwrap_or_default();
            put(format!("network {key}"), &v);
        }
    }
    out
}

/// The mounts with each content-addressed copy named by its repo path: a changed repo file is
/// told by its own `file ./html` entry, not as "volumes changed" too (the config hash still sees
/// the new host path, and recreates).
fn copies_by_repo_path(mounts: &[serde_json::Value], spec: &ServiceSpec) -> serde_json::Value {
    let mut mounts = mounts.to_vec();
    for m in &mut mounts {
        if let Some(source) = m.pointer_mut("/Bind/source") {
            if let Some(from) = source.as_str().and_then(|s| spec.repo_copies.get(s)) {
                *source = serde_json::Value::String(format!("repo:{from}"));
            }
        }
    }
    serde_json::Value::Array(mounts)
}

/// The config hash: a keyed hash of the whole spec and its networks, 64 hex digits like compose's.
pub fn config_hash(
    spec: &ServiceSpec,
    networks: &BTreeMap<String, NetworkSpec>,
    scope: HashScope,
) -> String {
    let mut whole = serde_json::to_string(spec).unwrap_or_default();
    for key in spec.networks.keys() {
        if let Some(net) = networks.get(key) {
            // Both parts are framed: a network key cannot be mistaken for JSON.
            whole.push('\0');
            whole.push_str(&serde_json::to_string(key).unwrap_or_default());
            whole.push('\0');
            whole.push_str(&serde_json::to_string(net).unwrap_or_default());
        }
    }
    hex::encode(scope.mac(b"gitmoor config", "", &whole))
}

/// Human reasons for a recreate, from the old and new fingerprints ("environment.GREETING
/// changed", "ports changed", "file ./conf/site.conf changed").
pub fn diff_reasons(old: &Fingerprint, new: &Fingerprint) -> Vec<String> {
    let mut reasons = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            None => reasons.push(format!("{k} added")),
            Some(o) if o != v => reasons.push(format!("{k} changed")),
            _ => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        reasons.push(format!("{k} removed"));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Secret;
    use sha2::{Digest, Sha256};

    const KEY: HashKey = HashKey::from_bytes([9; 32]);

    fn scope(key: &HashKey) -> HashScope<'_> {
        HashScope {
            key,
            stack: "app",
            service: "api",
        }
    }

    fn svc() -> ServiceSpec {
        let mut s = ServiceSpec {
            image: "example-backend:1".into(),
            ..Default::default()
        };
        s.environment
            .insert("JWT_SECRET".into(), Secret("hunter2-very-secret".into()));
        s.environment
            .insert("GREETING".into(), Secret("hello".into()));
        s
    }

    #[test]
    fn one_env_change_names_the_variable() {
        let nets = BTreeMap::new();
        let a = svc();
        let mut b = svc();
        b.environment
            .insert("GREETING".into(), Secret("bonjour".into()));
        let k = scope(&KEY);
        assert_ne!(config_hash(&a, &nets, k), config_hash(&b, &nets, k));
        assert_eq!(
            diff_reasons(&fingerprint(&a, &nets, k), &fingerprint(&b, &nets, k)),
            vec!["environment.GREETING changed"]
        );
    }

    #[test]
    fn secret_values_change_the_hash_but_never_appear() {
        let nets = BTreeMap::new();
        let a = svc();
        let mut b = svc();
        b.environment
            .insert("JWT_SECRET".into(), Secret("rotated".into()));
        let k = scope(&KEY);
        assert_ne!(config_hash(&a, &nets, k), config_hash(&b, &nets, k));
        let fp = serde_json::to_string(&fingerprint(&a, &nets, k)).unwrap();
        assert!(!fp.contains("hunter2"), "{fp}");
        assert!(!fp.contains("hello"), "{fp}");
    }

    /// The oracle the old labels gave: the plain sha256 of the JSON-quoted value.
    #[test]
    fn no_hash_is_the_plain_sha256_of_a_value() {
        let nets = BTreeMap::new();
        let fp = fingerprint(&svc(), &nets, scope(&KEY));
        let plain = hex::encode(&Sha256::digest(b"\"hunter2-very-secret\"")[..4]);
        assert_ne!(fp["environment.JWT_SECRET"], plain);
        let whole = hex::encode(Sha256::digest(serde_json::to_string(&svc()).unwrap()));
        assert_ne!(config_hash(&svc(), &nets, scope(&KEY)), whole);
    }

    #[test]
    fn hashes_depend_on_the_key_and_the_scope() {
        let nets = BTreeMap::new();
        let other = HashKey::from_bytes([10; 32]);
        let (a, b) = (scope(&KEY), scope(&other));
        assert_eq!(config_hash(&svc(), &nets, a), config_hash(&svc(), &nets, a));
        assert_ne!(config_hash(&svc(), &nets, a), config_hash(&svc(), &nets, b));
        let (fa, fb) = (fingerprint(&svc(), &nets, a), fingerprint(&svc(), &nets, b));
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        assert!(fa.iter().all(|(k, v)| fb[k] != *v), "{fa:?} {fb:?}");
        // The same secret in two services, or two fields, shows two hashes.
        let web = HashScope {
            service: "web",
            ..a
        };
        let fw = fingerprint(&svc(), &nets, web);
        assert_ne!(fa["environment.JWT_SECRET"], fw["environment.JWT_SECRET"]);
        assert_ne!(
            config_hash(&svc(), &nets, a),
            config_hash(&svc(), &nets, web)
        );
        let mut twice = svc();
        twice.environment.insert(
            "JWT_SECRET_COPY".into(),
            Secret("hunter2-very-secret".into()),
        );
        let ft = fingerprint(&twice, &nets, a);
        assert_ne!(
            ft["environment.JWT_SECRET"],
            ft["environment.JWT_SECRET_COPY"]
        );
    }

    #[test]
    fn a_new_copy_of_a_mounted_folder_is_told_by_its_path_alone() {
        let nets = BTreeMap::new();
        let with = |id: &str| {
            let mut s = svc();
            let host = format!("/var/lib/gitmoor/content/{id}/html");
            s.volumes.push(crate::spec::model::MountSpec::Bind {
                source: host.clone(),
                target: "/www".into(),
                read_only: true,
            });
            s.repo_inputs.insert("./html".into(), id.into());
            s.repo_copies.insert(host, "compose/app/html".into());
            s
        };
        let k = scope(&KEY);
        let (a, b) = (with("aaaa"), with("bbbb"));
        assert_ne!(config_hash(&a, &nets, k), config_hash(&b, &nets, k));
        assert_eq!(
            diff_reasons(&fingerprint(&a, &nets, k), &fingerprint(&b, &nets, k)),
            vec!["file ./html changed"]
        );
    }

    #[test]
    fn same_spec_same_hash_and_no_reason() {
        let nets = BTreeMap::new();
        let k = scope(&KEY);
        assert_eq!(config_hash(&svc(), &nets, k), config_hash(&svc(), &nets, k));
        assert!(diff_reasons(
            &fingerprint(&svc(), &nets, k),
            &fingerprint(&svc(), &nets, k)
        )
        .is_empty());
    }
}
