//! The ssh server's host key checked against known_hosts files (libssh2 offers no such check):
//! `@revoked` refuses, a plain entry with the same key accepts, anything else refuses with the
//! fingerprint and the command that adds the key. The file format itself is `known_hosts.rs`.

use super::credentials::default_known_hosts;
use super::known_hosts::{
    fingerprint, key_blob_type, known_hosts_name, parse_known_hosts, KnownHost, Marker,
};
use super::remote_url::RemoteKind;
use git2::cert::CertHostkey;
use std::path::PathBuf;

/// Compares the server's host key with the known_hosts entries for its host (and port).
/// Err carries (host as known_hosts spells it, what is wrong and how to fix it).
pub(super) fn check_host_key(
    kind: &RemoteKind,
    known_hosts: Option<&PathBuf>,
    hostkey: &CertHostkey<'_>,
) -> Result<(), (String, String)> {
    let (host, port) = match kind {
        RemoteKind::Ssh { host, port, .. } => (host.as_str(), *port),
        _ => ("unknown host", 22),
    };
    let name = known_hosts_name(host, port);
    let fail = |problem: String| Err((name.clone(), problem));
    let Some(blob) = hostkey.hostkey() else {
        return fail("the ssh library did not give gitmoor the server's key".to_string());
    };
    let key_type = key_blob_type(blob).unwrap_or_else(|| "unknown".to_string());
    let fp = fingerprint(blob);
    let (files, explicit) = match known_hosts {
        Some(path) => (vec![path.clone()], true),
        None => (default_known_hosts(), false),
    };
    let add_to = files
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".to_string());
    let keyscan = if port == 22 {
        format!("ssh-keyscan {host} >> {add_to}")
    } else {
        format!("ssh-keyscan -p {port} {host} >> {add_to}")
    };
    let mut entries = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => entries.extend(
                parse_known_hosts(&text)
                    .into_iter()
                    .filter(|e| e.hosts.matches(&name))
                    .map(|e| (file.clone(), e)),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return fail(format!(
                    "known_hosts file {} does not exist; check the server's {key_type} key \
                     fingerprint is {fp}, then create it with: {keyscan}",
                    file.display()
                ))
            }
            Err(e) => return fail(format!("cannot read known_hosts {}: {e}", file.display())),
        }
    }
    if let Some((file, e)) = entries
        .iter()
        .find(|(_, e)| e.marker == Marker::Revoked && e.key == blob)
    {
        return fail(format!(
            "the server's {key_type} key {fp} is marked @revoked in {} line {}",
            file.display(),
            e.line
        ));
    }
    let plain: Vec<&(PathBuf, KnownHost)> = entries
        .iter()
        .filter(|(_, e)| e.marker == Marker::None)
        .collect();
    if plain.iter().any(|(_, e)| e.key == blob) {
        return Ok(());
    }
    let where_ = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some((file, e)) = plain.iter().find(|(_, e)| e.key_type == key_type) {
        return fail(format!(
            "the server's {key_type} key {fp} does NOT match {} line {} ({}): the server's \
             key changed or someone is intercepting the connection; if the change is \
             expected, remove the old entry with `ssh-keygen -R '{name}' -f {}` and add the \
             new one with: {keyscan}",
            file.display(),
            e.line,
            fingerprint(&e.key),
            file.display()
        ));
    }
    if !plain.is_empty() {
        let mut have: Vec<&str> = plain.iter().map(|(_, e)| e.key_type.as_str()).collect();
        have.sort_unstable();
        have.dedup();
        return fail(format!(
            "{where_} has only {} key(s) for it, but the server offered its {key_type} key \
             {fp}; if that fingerprint is right, add all its keys with: {keyscan}",
            have.join(", ")
        ));
    }
    fail(format!(
        "the host is not in {where_}; the server offered its {key_type} key {fp}: if that \
         fingerprint is right, add it with: {keyscan}"
    ))
}
