//! Hashes of a service's effective config: one for the whole (compose's `config-hash` label,
//! compared to decide a recreate) and one per field (gitmoor's `fingerprint` label, compared to
//! say *why*). Secret values take part in both, as hashes only: no label ever holds a value.

use crate::spec::model::{NetworkSpec, ServiceSpec};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Field name -> short hash. Map fields (`environment`, `labels`, `repo_inputs`) get one entry per
/// key, so a reason can name the variable or the file.
pub type Fingerprint = BTreeMap<String, String>;

/// Everything that decides whether a container must be recreated: the service spec and the specs
/// of the networks it joins (a network that changes must be recreated, and its containers too).
pub fn fingerprint(spec: &ServiceSpec, networks: &BTreeMap<String, NetworkSpec>) -> Fingerprint {
    let mut out = Fingerprint::new();
    let value = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(fields) = value {
        for (field, v) in fields {
            match (field.as_str(), &v) {
                ("environment" | "labels", serde_json::Value::Object(m)) => {
                    for (k, item) in m {
                        out.insert(format!("{field}.{k}"), short_hash(&item.to_string()));
                    }
                }
                ("repo_inputs", serde_json::Value::Object(m)) => {
                    for (k, item) in m {
                        out.insert(format!("file {k}"), short_hash(&item.to_string()));
                    }
                }
                _ => {
                    out.insert(field, short_hash(&v.to_string()));
                }
            }
        }
    }
    for key in spec.networks.keys() {
        if let Some(net) = networks.get(key) {
            let v = serde_json::to_string(net).unwrap_or_default();
            out.insert(format!("network {key}"), short_hash(&v));
        }
    }
    out
}

/// The config hash: sha256 over the canonical fingerprint input, 64 hex digits like compose's.
pub fn config_hash(spec: &ServiceSpec, networks: &BTreeMap<String, NetworkSpec>) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_string(spec).unwrap_or_default());
    for key in spec.networks.keys() {
        if let Some(net) = networks.get(key) {
            h.update(key.as_bytes());
            h.update(serde_json::to_string(net).unwrap_or_default());
        }
    }
    hex::encode(h.finalize())
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
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
        assert_ne!(config_hash(&a, &nets), config_hash(&b, &nets));
        assert_eq!(
            diff_reasons(&fingerprint(&a, &nets), &fingerprint(&b, &nets)),
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
        assert_ne!(config_hash(&a, &nets), config_hash(&b, &nets));
        let fp = serde_json::to_string(&fingerprint(&a, &nets)).unwrap();
        assert!(!fp.contains("hunter2"), "{fp}");
        assert!(!fp.contains("hello"), "{fp}");
    }

    #[test]
    fn same_spec_same_hash_and_no_reason() {
        let nets = BTreeMap::new();
        assert_eq!(config_hash(&svc(), &nets), config_hash(&svc(), &nets));
        assert!(diff_reasons(&fingerprint(&svc(), &nets), &fingerprint(&svc(), &nets)).is_empty());
    }
}
