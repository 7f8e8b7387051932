//! Top-level `secrets:` and `configs:` with a `file:` source, and the services' references to them.
//!
//! As docker compose does outside Swarm, both become read-only bind mounts: a secret at
//! `/run/secrets/<name>`, a config at `/<name>` (or the long syntax's `target`). A config is a
//! file of the stack folder (served from a content-addressed copy, like a bind mount); a secret is
//! a file of the stack's own folder of the host's secrets dir (`<secrets_dir>/<stack>/`), never of
//! the repo nor of another stack. Their content hash goes into the service's
//! `repo_inputs`, so editing one recreates exactly the services that use it; for a secret only the
//! hash is kept.

use super::ctx::{is_extension, valid_object_name, Ctx, REMOVE_IT};
use super::hostfiles::{read_host_file, HostFileError};
use super::mounts::{escaping_symlink, rel_in_stack, repo_copy};
use crate::source::snapshot::Snapshot;
use crate::spec::model::{MountSpec, ServiceSpec};
use crate::spec::yaml::{Node, NodeValue};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }
    fn one(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

/// One declared secret or config, resolved (or why it cannot be).
#[derive(Debug, Clone)]
pub(crate) struct FileObject {
    /// Where the top-level entry is, for errors found when a service uses it.
    line: u64,
    resolved: Result<Resolved, Problem>,
}

#[derive(Debug, Clone)]
struct Resolved {
    /// Host path bind-mounted into the container.
    source: String,
    /// `repo_inputs` key and hash; None when not checked (no secrets dir).
    input: Option<(String, String)>,
    /// A secret's content, for the stack's redactor: a healthcheck or an engine error may echo
    /// the file a service reads.
    secret: Option<Vec<u8>>,
    /// A config: the repo path served from the content-addressed copy at `source`.
    copied_from: Option<String>,
}

#[derive(Debug, Clone)]
struct Problem {
    key: String,
    message: String,
    fix: String,
    /// A warning (not checked without a secrets dir), not an error.
    warning: bool,
}

/// What the declared objects are resolved against.
pub(crate) struct FileEnv<'a> {
    pub stack: &'a str,
    pub snap: &'a Snapshot,
    pub bind_root: &'a Path,
    pub secrets_dir: Option<&'a Path>,
}

/// The declared objects of one kind, and the problems already reported.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    pub objects: BTreeMap<String, FileObject>,
    reported: BTreeSet<String>,
}

impl Declared {
    /// The contents of the secrets read from the host, for the stack's redactor.
    pub(crate) fn secret_contents(&self) -> impl Iterator<Item = String> + '_ {
        self.objects
            .values()
            .filter_map(|o| o.resolved.as_ref().ok()?.secret.as_ref())
            .map(|data| String::from_utf8_lossy(data).into_owned())
    }
}

/// Reads the top-level `secrets:` or `configs:`.
pub(crate) fn declared(ctx: &mut Ctx, env: &FileEnv, kind: Kind, node: &Node) -> Declared {
    let mut out = Declared::default();
    let Some(entries) = ctx.map(node, kind.key()) else {
        return out;
    };
    for (name, v) in entries {
        let base = format!("{}.{name}", kind.key());
        if !valid_object_name(name) {
            ctx.error(
                v,
                &base,
                format!("not a valid {} name", kind.one()),
                "use letters, digits, `_`, `.` and `-`",
            );
            continue;
        }
        let Some(fields) = ctx.map(v, &base) else {
            continue;
        };
        let mut file = None;
        for (k, n) in fields {
            let sub = format!("{base}.{k}");
            match k.as_str() {
                "file" => file = ctx.string(n, &sub).map(|f| (f, n)),
                "environment" | "content" => ctx.error(
                    n,
                    &sub,
                    "not supported yet (only file: sources)",
                    match kind {
                        Kind::Secret => {
                            "write the value to a file of the secrets dir and use file:"
                        }
                        Kind::Config => {
                            "commit the content as a file next to compose.yaml and use file:"
                        }
                    },
                ),
                "external" => ctx.error(
                    n,
                    &sub,
                    "not supported (external secrets and configs are Swarm objects)",
                    "use file:",
                ),
                "name" | "labels" | "driver" | "driver_opts" | "template_driver" => ctx.error(
                    n,
                    &sub,
                    "not supported (a Swarm setting; a file: source is bind-mounted)",
                    REMOVE_IT,
                ),
                k if is_extension(k) => {}
                _ => ctx.unsupported(n, &sub),
            }
        }
        let Some((file, at)) = file else {
            ctx.error(v, &format!("{base}.file"), "missing", "add file: <path>");
            continue;
        };
        let key = format!("{base}.file");
        let resolved = match kind {
            Kind::Config => config_file(env, &file, &key),
            Kind::Secret => secret_file(env, &file, &key),
        };
        // A config's problem is in the commit: always an error. A secret's is on the host: it
        // matters only when a running service uses it (reported then, once).
        if let (Kind::Config, Err(p)) = (kind, &resolved) {
            ctx.error(at, &p.key, p.message.clone(), &p.fix);
            out.reported.insert(name.clone());
        }
        out.objects.insert(
            name.clone(),
            FileObject {
                line: at.line,
                resolved,
            },
        );
    }
    out
}

fn problem(key: &str, message: String, fix: &str) -> Problem {
    Problem {
        key: key.to_string(),
        message,
        fix: fix.to_string(),
        warning: false,
    }
}

/// A config: a file or folder of the stack folder, mounted from its content-addressed copy.
fn config_file(env: &FileEnv, file: &str, key: &str) -> Result<Resolved, Problem> {
    let stack_dir = format!("compose/{}", env.stack);
    if file.starts_with('/') || file.starts_with('~') {
        return Err(problem(
            key,
            format!("`{file}`: a config comes from the repo, not from a host path"),
            "commit the file in the stack folder and write its path relative to it",
        ));
    }
    let Some(rel) = rel_in_stack(file).filter(|r| !r.is_empty()) else {
        return Err(problem(
            key,
            format!("`{file}` is not a file inside the stack folder {stack_dir}"),
            "commit the file in the stack folder",
        ));
    };
    let repo_path = format!("{stack_dir}/{rel}");
    if !env.snap.exists(&repo_path) {
        return Err(problem(
            key,
            format!("`{file}` does not exist in the repo ({repo_path})"),
            "commit the file, or fix the path",
        ));
    }
    if let Some(link) = escaping_symlink(env.snap, &repo_path, &stack_dir) {
        return Err(problem(
            key,
            format!("`{link}` is a symlink that Docker would follow on the host (the mounted path itself, or a link out of the stack folder)"),
            "commit the file or folder itself",
        ));
    }
    let Some(copy) = repo_copy(env.snap, env.bind_root, &repo_path, &stack_dir) else {
        return Err(problem(
            key,
            format!("`{file}` is a symlink that leads nowhere in the stack folder"),
            "point the link at a file of the stack folder, or commit the file itself",
        ));
    };
    Ok(Resolved {
        source: copy.host,
        input: Some((file.to_string(), copy.content_id)),
        copied_from: Some(copy.from),
        secret: None,
    })
}

/// A secret: a file of the secrets dir, read here only to hash it.
fn secret_file(env: &FileEnv, file: &str, key: &str) -> Result<Resolved, Problem> {
    let rel = Path::new(file);
    let inside = !file.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && rel.components().any(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(problem(
            key,
            format!("`{file}` is not a path inside the stack's folder of the secrets dir"),
            &format!(
                "write the path of the file relative to <secrets_dir>/{}/ (e.g. db_password.txt)",
                env.stack
            ),
        ));
    }
    let Some(dir) = env.secrets_dir else {
        return Err(Problem {
            key: key.to_string(),
            message: format!(
                "`{file}` is read from the host's secrets dir (no secrets dir given, so it is not checked)"
            ),
            fix: format!("make sure <secrets_dir>/{}/{file} exists on the host", env.stack),
            warning: true,
        });
    };
    // A stack reads its own folder of the secrets dir, `<secrets_dir>/<stack>/`, never another
    // stack's files (nor a file at the top of the secrets dir, which any stack could name), and no
    // link out of it.
    let (shown, data) = match read_host_file(dir, env.stack, file, None) {
        Ok(f) => (f.shown, f.data),
        Err(e) => {
            let (message, fix) = e.describe("secret file", env.stack);
            let fix = match e {
                HostFileError::Missing { .. } => format!("{fix} (it is never read from the repo)"),
                _ => fix,
            };
            return Err(problem(key, message, &fix));
        }
    };
    let mut h = Sha256::new();
    h.update(b"gitmoor secret file\0");
    h.update(shown.as_bytes());
    h.update([0]);
    h.update(&data);
    Ok(Resolved {
        source: shown.clone(),
        input: Some((shown, hex::encode(&h.finalize()[..10]))),
        secret: Some(data),
        copied_from: None,
    })
}

/// A service's `secrets:` or `configs:`: mounts them read-only and records their hashes.
/// `active`: the service runs (its profile is enabled); a host-side problem of an object used only
/// by inactive services is not an error.
pub(crate) fn service_refs(
    ctx: &mut Ctx,
    declared: &mut Declared,
    kind: Kind,
    node: &Node,
    key: &str,
    active: bool,
    svc: &mut ServiceSpec,
) {
    let Some(items) = ctx.seq(node, key) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let (source, target) = match &item.value {
            NodeValue::Map(fields) => {
                let mut source = None;
                let mut target = None;
                for (fk, fv) in fields {
                    let sub = format!("{k}.{fk}");
                    match fk.as_str() {
                        "source" => source = ctx.string(fv, &sub),
                        "target" => target = ctx.string(fv, &sub),
                        "uid" | "gid" | "mode" => ctx.warn(
                            fv,
                            &sub,
                            "ignored, as docker compose does: a bind-mounted file keeps its owner and mode",
                            &format!("set them on the file itself, or remove {fk}:"),
                        ),
                        f if is_extension(f) => {}
                        _ => ctx.unsupported(fv, &sub),
                    }
                }
                let Some(source) = source else {
                    ctx.error(
                        item,
                        &format!("{k}.source"),
                        "missing",
                        "add source: <name>",
                    );
                    continue;
                };
                (source, target)
            }
            _ => match ctx.string(item, &k) {
                Some(s) => (s, None),
                None => continue,
            },
        };
        let Some(obj) = declared.objects.get(&source) else {
            ctx.error(
                item,
                &k,
                format!("{} `{source}` is not declared", kind.one()),
                &format!(
                    "add it under the top-level {}: (`{}: {{{source}: {{file: ...}}}}`)",
                    kind.key(),
                    kind.key()
                ),
            );
            continue;
        };
        let target = mount_target(kind, &source, target.as_deref());
        match &obj.resolved {
            Ok(r) => {
                if let Some((input_key, hash)) = &r.input {
                    svc.repo_inputs.insert(input_key.clone(), hash.clone());
                }
                if svc.volumes.iter().any(|m| mount_target_of(m) == target) {
                    ctx.error(
                        item,
                        &k,
                        format!("`{target}` is already a mount point of this service"),
                        "give one of them another target",
                    );
                    continue;
                }
                if let Some(from) = &r.copied_from {
                    svc.repo_copies.insert(r.source.clone(), from.clone());
                }
                svc.volumes.push(MountSpec::Bind {
                    source: r.source.clone(),
                    target,
                    read_only: true,
                });
            }
            Err(p) => {
                if !active || !declared.reported.insert(source.clone()) {
                    // Reported already (or never needed): nothing is mounted either way.
                    continue;
                }
                let at = Node::new(obj.line, 1, NodeValue::Null);
                if p.warning {
                    ctx.warn(&at, &p.key, p.message.clone(), &p.fix);
                } else {
                    ctx.error(&at, &p.key, p.message.clone(), &p.fix);
                }
            }
        }
    }
}

/// Where compose mounts it: `/run/secrets/<name>` and `/<name>`; a relative target goes under
/// those folders.
fn mount_target(kind: Kind, source: &str, target: Option<&str>) -> String {
    let base = match kind {
        Kind::Secret => "/run/secrets",
        Kind::Config => "",
    };
    match target.filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with('/') => t.to_string(),
        Some(t) => format!("{base}/{t}"),
        None => format!("{base}/{source}"),
    }
}

fn mount_target_of(m: &MountSpec) -> &str {
    match m {
        MountSpec::Volume { target, .. } | MountSpec::Bind { target, .. } => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(mount_target(Kind::Secret, "db", None), "/run/secrets/db");
        assert_eq!(
            mount_target(Kind::Secret, "db", Some("pw")),
            "/run/secrets/pw"
        );
        assert_eq!(mount_target(Kind::Secret, "db", Some("/etc/pw")), "/etc/pw");
        assert_eq!(mount_target(Kind::Config, "nginx", None), "/nginx");
        assert_eq!(
            mount_target(Kind::Config, "nginx", Some("/etc/nginx/nginx.conf")),
            "/etc/nginx/nginx.conf"
        );
    }
}
