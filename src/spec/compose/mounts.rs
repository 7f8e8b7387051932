//! `volumes:` and `tmpfs:` of a service: named, anonymous and bind mounts, and tmpfs mounts.
//!
//! A relative bind source is a repo path: it must stay inside the stack folder, exist in the
//! commit, and is served from a content-addressed copy, `<bind_root>/<content id>/<name>` (see
//! [`repo_copy`]): Docker binds the inode, so a copy is never rewritten under a running container;
//! new content is a new copy, and only the services that mount it are recreated. Its content hash
//! goes into `repo_inputs`, so the reason names the path (`file ./html changed`).
//!
//! A relative bind source that is not in the commit (`./pgdata`) is the stack's data folder:
//! `<data_dir>/<stack>/<path>` on the host, made on first use (as compose makes a missing bind
//! source) and never rewritten nor removed by gitmoor. `..` out of the stack folder is refused
//! for it as for a repo path.
//!
//! A bind mount may ask Docker to relabel its source for SELinux (`:z`, `:Z`, or `bind: {selinux:
//! z}`), which compose passes in the bind's mode string (`src:dst:rw,z`); the relabel is kept in
//! `bind_selinux`, and on a host without SELinux Docker ignores it.

use super::ctx::{Ctx, REMOVE_IT};
use crate::source::snapshot::Snapshot;
use crate::spec::model::{MountSpec, ServiceSpec};
use crate::spec::yaml::{Node, NodeValue};
use std::collections::BTreeMap;
use std::path::Path;

/// What a service's mounts are resolved against.
pub(crate) struct MountEnv<'a> {
    pub stack: &'a str,
    pub snap: &'a Snapshot,
    pub bind_root: &'a Path,
    /// The stacks' data folders: `<data_dir>/<stack>/<path>`.
    pub data_dir: &'a Path,
    /// Keys of the top-level `volumes:` -> their Docker names.
    pub declared_volumes: &'a BTreeMap<String, String>,
    /// The home directory of the user gitmoor runs as, which `~` in a bind source means (as
    /// docker compose expands it for the user running it); None: `~` is refused.
    pub home_dir: Option<&'a Path>,
}

pub(crate) fn volumes(
    ctx: &mut Ctx,
    env: &MountEnv,
    node: &Node,
    key: &str,
    svc: &mut ServiceSpec,
) {
    let Some(items) = ctx.seq(node, key) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        match &item.value {
            NodeValue::Str(s) => short_volume(ctx, env, item, &k, s, svc),
            NodeValue::Map(entries) => long_volume(ctx, env, item, &k, entries, svc),
            _ => ctx.error(
                item,
                &k,
                format!(
                    "expected a mount like \"data:/var/lib/data\" or a mapping, found {}",
                    item.kind()
                ),
                "",
            ),
        }
    }
}

fn short_volume(
    ctx: &mut Ctx,
    env: &MountEnv,
    item: &Node,
    key: &str,
    spec: &str,
    svc: &mut ServiceSpec,
) {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => {
            ctx.error(
                item,
                key,
                format!("`{spec}` has too many `:`"),
                "write it as source:/container/path[:ro]",
            );
            return;
        }
    };
    let mut opts = Opts::default();
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => opts.read_only = true,
            "rw" => opts.read_only = false,
            "z" | "Z" => {
                if !set_selinux(ctx, item, key, &mut opts, opt) {
                    return;
                }
            }
            other => {
                ctx.error(
                    item,
                    key,
                    format!("mount option `{other}` is not supported yet (ro, rw, z or Z)"),
                    REMOVE_IT,
                );
                return;
            }
        }
    }
    let kind = if source.is_empty() {
        "volume"
    } else if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
        "bind"
    } else {
        "volume"
    };
    add_mount(ctx, env, item, key, kind, source, target, &opts, svc);
}

/// What follows the paths of a mount: `ro`, and the SELinux relabel (`z`/`Z`).
#[derive(Debug, Default)]
struct Opts {
    read_only: bool,
    selinux: Option<String>,
}

/// Records `z` or `Z`; both on one mount is refused (they contradict each other).
fn set_selinux(ctx: &mut Ctx, item: &Node, key: &str, opts: &mut Opts, label: &str) -> bool {
    match &opts.selinux {
        Some(other) if other != label => {
            ctx.error(
                item,
                key,
                format!("both `{other}` and `{label}` are given"),
                "keep one: z (shared with other containers) or Z (private to this one)",
            );
            false
        }
        _ => {
            opts.selinux = Some(label.to_string());
            true
        }
    }
}

/// The long syntax's `bind:` options: `selinux` (compose's `z`/`Z`) and `create_host_path`
/// (compose's default, `true`, is what gitmoor does; `false` is not supported).
fn bind_options(ctx: &mut Ctx, item: &Node, v: &Node, key: &str, opts: &mut Opts) {
    let Some(entries) = ctx.map(v, key) else {
        return;
    };
    for (k, n) in entries {
        let sub = format!("{key}.{k}");
        match k.as_str() {
            "selinux" => match ctx.string(n, &sub).as_deref() {
                Some(l @ ("z" | "Z")) => {
                    set_selinux(ctx, item, &sub, opts, l);
                }
                Some(other) => ctx.error(
                    n,
                    &sub,
                    format!("`{other}` is not an SELinux relabel option"),
                    "use z (shared with other containers) or Z (private to this one)",
                ),
                None => {}
            },
            "create_host_path" => {
                if ctx.bool(n, &sub) == Some(false) {
                    ctx.not_yet(n, &sub);
                }
            }
            k if k.starts_with("x-") => {}
            "propagation" | "recursive" => ctx.not_yet(n, &sub),
            _ => ctx.unsupported(n, &sub),
        }
    }
}

fn long_volume(
    ctx: &mut Ctx,
    env: &MountEnv,
    item: &Node,
    key: &str,
    entries: &[(String, Node)],
    svc: &mut ServiceSpec,
) {
    let mut kind = None;
    let mut source = String::new();
    let mut target = None;
    let mut opts = Opts::default();
    let mut bind_node = None;
    let mut tmpfs_opts: Vec<String> = Vec::new();
    for (k, v) in entries {
        let sub = format!("{key}.{k}");
        match k.as_str() {
            "type" => kind = ctx.string(v, &sub),
            "source" => source = ctx.string(v, &sub).unwrap_or_default(),
            "target" => target = ctx.string(v, &sub),
            "read_only" => opts.read_only = ctx.bool(v, &sub).unwrap_or(false),
            "bind" => {
                bind_node = Some(v);
                bind_options(ctx, item, v, &sub, &mut opts);
            }
            "tmpfs" => {
                let Some(opts) = ctx.map(v, &sub) else {
                    continue;
                };
                for (ok, ov) in opts {
                    let osub = format!("{sub}.{ok}");
                    match ok.as_str() {
                        "size" => {
                            if let Some(s) = ctx.string(ov, &osub) {
                                tmpfs_opts.push(format!("size={s}"));
                            }
                        }
                        "mode" => {
                            // YAML reads 1777 as a number and 01777 as a string: both octal.
                            if let Some(s) = ctx.string(ov, &osub) {
                                tmpfs_opts.push(format!("mode={s}"));
                            }
                        }
                        _ => ctx.not_yet(ov, &osub),
                    }
                }
            }
            k if k.starts_with("x-") => {}
            "volume" | "consistency" | "image" => ctx.not_yet(v, &sub),
            _ => ctx.unsupported(v, &sub),
        }
    }
    let Some(target) = target else {
        ctx.error(
            item,
            key,
            "missing target (the path in the container)",
            "add target: /path",
        );
        return;
    };
    if let Some(at) = bind_node.filter(|_| kind.as_deref() != Some("bind")) {
        ctx.error(at, &format!("{key}.bind"), "only for type: bind", REMOVE_IT);
        return;
    }
    match kind.as_deref() {
        Some("tmpfs") => {
            if !target.starts_with('/') {
                ctx.error(
                    item,
                    &format!("{key}.target"),
                    "must be an absolute path",
                    "",
                );
                return;
            }
            svc.tmpfs.insert(target, tmpfs_opts.join(","));
        }
        Some(kind @ ("volume" | "bind")) => {
            if !tmpfs_opts.is_empty() {
                ctx.error(
                    item,
                    &format!("{key}.tmpfs"),
                    "only for type: tmpfs",
                    REMOVE_IT,
                );
            }
            add_mount(ctx, env, item, key, kind, &source, &target, &opts, svc);
        }
        Some(other) => ctx.error(
            item,
            &format!("{key}.type"),
            format!("type `{other}` is not supported (volume, bind or tmpfs)"),
            "",
        ),
        None => ctx.error(item, key, "missing type", "add type: volume, bind or tmpfs"),
    }
}

#[allow(clippy::too_many_arguments)]
fn add_mount(
    ctx: &mut Ctx,
    env: &MountEnv,
    item: &Node,
    key: &str,
    kind: &str,
    source: &str,
    target: &str,
    opts: &Opts,
    svc: &mut ServiceSpec,
) {
    let read_only = opts.read_only;
    if !target.starts_with('/') {
        ctx.error(
            item,
            key,
            format!("the container path `{target}` must be absolute"),
            "write it as source:/container/path",
        );
        return;
    }
    let target = target.to_string();
    if kind == "volume" {
        if let Some(label) = &opts.selinux {
            // compose drops it too: Docker labels the volumes it makes itself.
            ctx.warn(
                item,
                key,
                format!("`{label}` has no effect on a volume (only a bind mount is relabelled)"),
                REMOVE_IT,
            );
        }
        if source.is_empty() {
            svc.volumes.push(MountSpec::Volume {
                source: String::new(),
                target,
                read_only,
            });
        } else if let Some(name) = env.declared_volumes.get(source) {
            svc.volumes.push(MountSpec::Volume {
                source: name.clone(),
                target,
                read_only,
            });
        } else {
            ctx.error(
                item,
                key,
                format!("volume `{source}` is not declared"),
                &format!(
                    "add it under the top-level volumes: (`volumes: {{{source}: {{}}}}`), or write ./{source} for a folder of the repo"
                ),
            );
        }
        return;
    }
    if source.is_empty() {
        ctx.error(
            item,
            key,
            "a bind mount needs a source",
            "add source: ./path",
        );
        return;
    }
    if source.starts_with('/') {
        if relabel(ctx, item, key, opts, source, &target, svc) {
            svc.volumes.push(MountSpec::Bind {
                source: source.to_string(),
                target,
                read_only,
            });
        }
        return;
    }
    if source.starts_with('~') {
        home_bind(ctx, env, item, key, source, &target, opts, svc);
        return;
    }
    let stack_dir = format!("compose/{}", env.stack);
    let Some(rel) = rel_in_stack(source) else {
        ctx.error(
            item,
            key,
            format!("`{source}` leaves the stack folder {stack_dir}"),
            "mount a path inside the stack folder, or an absolute host path",
        );
        return;
    };
    let repo_path = if rel.is_empty() {
        stack_dir.clone()
    } else {
        format!("{stack_dir}/{rel}")
    };
    if !env.snap.exists(&repo_path) {
        // Not in the commit: the stack's data folder, on the host (`rel` is never empty here:
        // the stack folder itself exists).
        let host = rel
            .split('/')
            .fold(env.data_dir.join(env.stack), |p, c| p.join(c))
            .to_string_lossy()
            .into_owned();
        if relabel(ctx, item, key, opts, &host, &target, svc) {
            svc.data_folders.insert(source.to_string(), host.clone());
            svc.volumes.push(MountSpec::Bind {
                source: host,
                target,
                read_only,
            });
        }
        return;
    }
    if let Some(link) = escaping_symlink(env.snap, &repo_path, &stack_dir) {
        ctx.error(
            item,
            key,
            format!("`{link}` is a symlink that Docker would follow on the host (the mounted path itself, or a link out of the stack folder)"),
            "commit the file or folder itself",
        );
        return;
    }
    let Some(copy) = repo_copy(env.snap, env.bind_root, &repo_path, &stack_dir) else {
        ctx.error(
            item,
            key,
            format!("`{source}` is a symlink that leads nowhere in the stack folder"),
            "point the link at a file or folder of the stack folder, or commit the file itself",
        );
        return;
    };
    if !read_only {
        ctx.warn(
            item,
            key,
            format!(
                "`{source}` is a repo {} mounted writable: what the container writes there is dropped when its content changes in the repo",
                if env.snap.files.contains_key(&copy.from) { "file" } else { "folder" }
            ),
            "mount it read-only (`:ro`), or keep the data in a named volume or a data folder",
        );
    }
    if !relabel(ctx, item, key, opts, &copy.host, &target, svc) {
        return;
    }
    let host = copy.host.clone();
    svc.repo_inputs.insert(source.to_string(), copy.content_id);
    svc.repo_copies.insert(copy.host, copy.from);
    svc.volumes.push(MountSpec::Bind {
        source: host,
        target,
        read_only,
    });
}

/// Records the SELinux relabel of a bind mount. Docker takes it only in the `Binds` form
/// (`src:dst:rw,z`), which a path holding `:` cannot be written in: that is refused.
fn relabel(
    ctx: &mut Ctx,
    item: &Node,
    key: &str,
    opts: &Opts,
    host: &str,
    target: &str,
    svc: &mut ServiceSpec,
) -> bool {
    let Some(label) = &opts.selinux else {
        return true;
    };
    if host.contains(':') || target.contains(':') {
        ctx.error(
            item,
            key,
            format!("`{label}` cannot be used on a path that holds `:` (Docker cannot relabel it)"),
            "rename the path, or remove the SELinux option",
        );
        return false;
    }
    svc.bind_selinux.insert(target.to_string(), label.clone());
    true
}

/// Where a repo file or folder a container mounts is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoCopy {
    /// `<bind_root>/<content id>/<name>`: changes exactly when the content does.
    pub host: String,
    /// The repo path copied there (a link at the mounted path already followed).
    pub from: String,
    pub content_id: String,
}

/// The copy of `repo_path` (inside `stack_dir`): `<bind_root>/<content id>/<name>`, `name` the
/// last component of the mounted path (the stack's name for `.`), which only makes it readable.
/// A symlink at the mounted path is followed inside the stack folder (Docker would follow it on
/// the host); None when it leads nowhere there.
pub(crate) fn repo_copy(
    snap: &Snapshot,
    bind_root: &Path,
    repo_path: &str,
    stack_dir: &str,
) -> Option<RepoCopy> {
    let from = follow_links(snap, repo_path, stack_dir)?;
    let content_id = snap.content_id(&from)?;
    let name = repo_path.rsplit('/').next().unwrap_or(repo_path);
    let host = bind_root
        .join(&content_id)
        .join(name)
        .to_string_lossy()
        .into_owned();
    Some(RepoCopy {
        host,
        from,
        content_id,
    })
}

/// `path`, or where the symlink(s) at `path` lead, staying inside `stack_dir`; None when a link
/// leaves it, dangles, or a chain is longer than 8.
fn follow_links(snap: &Snapshot, path: &str, stack_dir: &str) -> Option<String> {
    let mut at = path.to_string();
    for _ in 0..8 {
        let Some(f) = snap.files.get(&at).filter(|f| f.symlink) else {
            return snap.exists(&at).then_some(at);
        };
        let target = String::from_utf8_lossy(&f.data).into_owned();
        if target.starts_with('/') {
            return None;
        }
        let dir: Vec<&str> = at.split('/').collect();
        let joined = normalize(&dir[..dir.len().saturating_sub(1)], &target)?.join("/");
        if joined != stack_dir && !joined.starts_with(&format!("{stack_dir}/")) {
            return None;
        }
        at = joined;
    }
    None
}

/// `~/x` as docker compose reads it: `x` under the home directory of the user running the tool,
/// here the one gitmoor runs as (root's `/root` under the systemd unit). Said as a warning, since
/// the same file on a laptop means another folder; `~user/x` is refused (compose does not expand
/// it either, and a folder named `~user` beside the file is not what was meant).
#[allow(clippy::too_many_arguments)]
fn home_bind(
    ctx: &mut Ctx,
    env: &MountEnv,
    item: &Node,
    key: &str,
    source: &str,
    target: &str,
    opts: &Opts,
    svc: &mut ServiceSpec,
) {
    let rest = crate::home::under_home(source);
    let home = env.home_dir.filter(|h| h.is_absolute());
    let (Some(rest), Some(home)) = (rest, home) else {
        ctx.error(
            item,
            key,
            format!("`{source}`: a home-directory path is not supported here"),
            "write an absolute path, or a path relative to the stack folder (./...)",
        );
        return;
    };
    let Some(parts) = normalize(&[], rest) else {
        ctx.error(
            item,
            key,
            format!("`{source}` leaves the home directory"),
            "write an absolute path",
        );
        return;
    };
    let mut host = home.to_path_buf();
    host.extend(&parts);
    let host = host.to_string_lossy().into_owned();
    ctx.warn(
        item,
        key,
        format!(
            "`{source}` is `{host}` on this host (the home directory of the user gitmoor runs as)"
        ),
        &format!("write {host} to say so"),
    );
    add_mount(ctx, env, item, key, "bind", &host, target, opts, svc);
}

/// `./conf/nginx.conf` → `conf/nginx.conf`; `.` → ``; None when the path leaves the folder.
pub(crate) fn rel_in_stack(source: &str) -> Option<String> {
    normalize(&[], source).map(|parts| parts.join("/"))
}

/// Joins `rel` onto `base` (path components), resolving `.` and `..`; None when `..` climbs above
/// the root of `base`'s tree.
pub(crate) fn normalize(base: &[&str], rel: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    let floor = 0;
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.len() <= floor {
                    return None;
                }
                parts.pop();
            }
            c => parts.push(c.to_string()),
        }
    }
    Some(parts)
}

/// The first symlink at or under `path` whose target is absolute or leaves `stack_dir`; or
/// `path` itself when it is a symlink. Docker resolves the source of a bind on the host, so a
/// source that is a link (however its chain of links reads: `a -> b -> ../../../var/run/...`)
/// could reach any host path; links below a mounted folder are resolved inside the container.
pub(crate) fn escaping_symlink(snap: &Snapshot, path: &str, stack_dir: &str) -> Option<String> {
    if snap.get(path).is_some_and(|f| f.symlink) {
        return Some(path.to_string());
    }
    for (p, f) in snap.at_or_under(path) {
        if !f.symlink {
            continue;
        }
        let target = String::from_utf8_lossy(&f.data);
        let dir: Vec<&str> = p.split('/').collect();
        let dir = &dir[..dir.len().saturating_sub(1)];
        let inside = !target.starts_with('/')
            && normalize(dir, &target).is_some_and(|parts| {
                let joined = parts.join("/");
                joined.starts_with(&format!("{stack_dir}/")) || joined == stack_dir
            });
        if !inside {
            return Some(p.clone());
        }
    }
    None
}

/// `tmpfs:` as a string or a list of `path[:options]`.
pub(crate) fn tmpfs(ctx: &mut Ctx, node: &Node, key: &str, svc: &mut ServiceSpec) {
    for (s, n) in ctx.string_or_list(node, key) {
        let (path, opts) = s.split_once(':').unwrap_or((s.as_str(), ""));
        if !path.starts_with('/') {
            ctx.error(&n, key, format!("`{path}` must be an absolute path"), "");
            continue;
        }
        svc.tmpfs.insert(path.to_string(), opts.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        let cases: &[(&str, Option<&str>)] = &[
            ("./conf", Some("conf")),
            ("conf/a.conf", Some("conf/a.conf")),
            (".", Some("")),
            ("./", Some("")),
            ("./a/../b", Some("b")),
            ("./a/./b/", Some("a/b")),
            ("..", None),
            ("../other/x", None),
            ("./a/../../x", None),
        ];
        for (input, want) in cases {
            assert_eq!(rel_in_stack(input).as_deref(), *want, "{input}");
        }
    }
}
