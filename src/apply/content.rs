//! The content-addressed copies of the repo files containers mount (`<content dir>/<id>/<name>`).
//!
//! Docker binds the inode of a mount's source: a folder swapped or rewritten under a running
//! container leaves it serving a deleted folder. So a copy is never changed once written: new
//! content gets a new id, hence a new host path, a new config hash, and a recreate of exactly the
//! services that mount it; the others keep their container and their mount. Copies are written
//! before the apply's effects, each only if absent, whole or not at all (a temporary folder
//! renamed into place); the ones no container on the host uses any more are removed after a
//! successful apply, never before, and nothing outside the content dir is ever removed.

use crate::source::snapshot::{FileEntry, Snapshot};
use crate::spec::model::HostSpec;
use anyhow::Context;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Writes the copy of every repo file or folder a service of `spec` mounts that is not already
/// in `root`. Returns the folders written. Refuses a host path that is not `<root>/<id>/<name>`
/// (the spec reader makes no other), and a file whose bytes were not read.
pub fn write_copies(snap: &Snapshot, spec: &HostSpec, root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let wanted: BTreeMap<&str, &str> = spec
        .stacks
        .values()
        .flat_map(|st| st.services.values())
        .flat_map(|svc| svc.repo_copies.iter())
        .map(|(host, from)| (host.as_str(), from.as_str()))
        .collect();
    let mut written = Vec::new();
    for (host, from) in wanted {
        let (id, name) = split_copy_path(root, Path::new(host)).with_context(|| {
            format!(
                "refusing to write {host}: not a copy under {}",
                root.display()
            )
        })?;
        let entry = root.join(id);
        if std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the content dir {}", root.display()))?;
        remove_any(&entry);
        let tmp = root.join(format!(".tmp-{}", id.to_string_lossy()));
        remove_any(&tmp);
        std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let result = one_copy(snap, from, name, &tmp)
            .with_context(|| format!("cannot write the copy of {from} in {}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, &entry).with_context(|| {
                    format!("cannot rename {} to {}", tmp.display(), entry.display())
                })
            });
        if result.is_err() {
            remove_any(&tmp);
        }
        result?;
        written.push(entry);
    }
    Ok(written)
}

/// Makes the data folders of `spec` that do not exist yet (`<data_dir>/<stack>/<path>`, 0755,
/// as compose makes a missing bind source), one component at a time. One that exists is left as
/// it is: its content is the containers'. A component that is a symlink or a file is refused: a
/// container may have made it in a data folder it mounts, and Docker would follow it on the host.
/// Returns the folders made.
pub fn make_data_folders(spec: &HostSpec, data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for (stack, st) in &spec.stacks {
        let base = data_dir.join(stack);
        for (written, host) in st.services.values().flat_map(|s| s.data_folders.iter()) {
            let rel = Path::new(host)
                .strip_prefix(&base)
                .ok()
                .filter(|r| r.components().all(|c| matches!(c, Component::Normal(_))))
                .with_context(|| {
                    format!(
                        "refusing the data folder {host}: not under {}",
                        base.display()
                    )
                })?;
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
            let mut at = data_dir.to_path_buf();
            for part in Path::new(stack).components().chain(rel.components()) {
                at.push(part);
                match std::fs::symlink_metadata(&at) {
                    Ok(m) if m.is_dir() => continue,
                    Ok(_) => anyhow::bail!(
                        "the data folder {written} of stack {stack} cannot be mounted: {} is a symlink or a file, not a folder; \
                         remove it (or move it aside) on the host",
                        at.display()
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot read {}", at.display())),
                }
                std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o755)
                    .create(&at)
                    .with_context(|| format!("cannot create the data folder {}", at.display()))?;
                // 0755 as docker compose makes it, whatever gitmoor's umask (0077 under systemd).
                std::fs::set_permissions(&at, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .with_context(|| format!("cannot set the mode of {}", at.display()))?;
                made.push(at.clone());
            }
        }
    }
    Ok(made)
}

/// Writes `from` (a file, or a folder with everything under it) as `<dir>/<name>`, through the
/// safe writer (plain names only, never through a symlink).
fn one_copy(snap: &Snapshot, from: &str, name: &OsStr, dir: &Path) -> anyhow::Result<()> {
    let name = name
        .to_str()
        .context("the copy's name is not UTF-8")?
        .to_string();
    let mut one = Snapshot::default();
    for (p, f) in snap.at_or_under(from) {
        let rest = if p == from {
            ""
        } else if let Some(rest) = p.strip_prefix(from).filter(|r| r.starts_with('/')) {
            rest
        } else {
            continue;
        };
        if snap.is_deferred(p) {
            anyhow::bail!("{p} was not read (a deferred file)");
        }
        let entry = FileEntry {
            data: f.data.clone(),
            executable: f.executable,
            symlink: f.symlink,
        };
        one.files.insert(format!("copy/{name}{rest}"), entry);
    }
    one.write_subtree("copy", dir)?;
    Ok(())
}

/// `<root>/<id>/<name>` -> (id, name); None for any other shape.
fn split_copy_path<'a>(root: &Path, host: &'a Path) -> Option<(&'a OsStr, &'a OsStr)> {
    let rest = host.strip_prefix(root).ok()?;
    let mut parts = rest.components();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Component::Normal(id)), Some(Component::Normal(name)), None)
            if !id.to_string_lossy().starts_with('.') =>
        {
            Some((id, name))
        }
        _ => None,
    }
}

/// Removes the entries of `root` that no container on the host mounts (any state: a stopped
/// container keeps its mounts, and a restore may need them), and leftover temporary folders.
/// Returns what was removed. Only entries directly in `root` are ever removed.
pub async fn remove_unused(docker: &Docker, root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .context("listing containers failed; is dockerd running and reachable?")?;
    let sources: Vec<PathBuf> = containers
        .iter()
        .flat_map(|c| c.mounts.iter().flatten())
        .filter_map(|m| m.source.as_deref().map(PathBuf::from))
        .collect();
    Ok(remove_unused_with(root, &sources))
}

/// `remove_unused` with the mount sources given.
fn remove_unused_with(root: &Path, sources: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    // Docker may show a source with the links of its path resolved.
    let real_root = std::fs::canonicalize(root).ok();
    let mut removed = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let used = |base: &Path| {
            let entry = base.join(&name);
            sources.iter().any(|s| s.starts_with(&entry))
        };
        if used(root) || real_root.as_deref().is_some_and(used) {
            continue;
        }
        let path = root.join(&name);
        remove_any(&path);
        removed.push(path);
    }
    removed.sort();
    removed
}

/// Removes a folder, a file or a symlink (the link itself, never what it points to).
fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::{ServiceSpec, StackSpec};

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        for (p, d, link) in [
            ("compose/web/compose.yaml", "services: {}", false),
            ("compose/web/html/index.html", "hello", false),
            ("compose/web/html/sub/a.txt", "a", false),
            ("compose/web/html/link", "index.html", true),
            ("compose/web/nginx.conf", "conf", false),
            ("compose/web/htmlx", "not under html", false),
        ] {
            s.files.insert(
                p.into(),
                FileEntry {
                    data: d.as_bytes().to_vec(),
                    executable: false,
                    symlink: link,
                },
            );
        }
        s
    }

    fn spec(copies: &[(&str, &str)]) -> HostSpec {
        let mut svc = ServiceSpec::default();
        for (host, from) in copies {
            svc.repo_copies.insert(host.to_string(), from.to_string());
        }
        let mut st = StackSpec::default();
        st.services.insert("web".into(), svc);
        let mut h = HostSpec::default();
        h.stacks.insert("web".into(), st);
        h
    }

    #[test]
    fn copies_folders_and_files_once_and_only_what_is_mounted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("content");
        let dir = root.join("aa11/html");
        let file = root.join("bb22/nginx.conf");
        let s = spec(&[
            (dir.to_str().unwrap(), "compose/web/html"),
            (file.to_str().unwrap(), "compose/web/nginx.conf"),
        ]);
        let written = write_copies(&snap(), &s, &root).unwrap();
        assert_eq!(written, [root.join("aa11"), root.join("bb22")]);
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "hello"
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/a.txt")).unwrap(), "a");
        assert_eq!(
            std::fs::read_link(dir.join("link")).unwrap(),
            Path::new("index.html")
        );
        assert!(!root.join("aa11/htmlx").exists() && !dir.join("htmlx").exists());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "conf");
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary folder left: {names:?}");

        // Present: never rewritten (a running container binds its inode).
        std::fs::write(dir.join("index.html"), "as a container left it").unwrap();
        assert!(write_copies(&snap(), &s, &root).unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "as a container left it"
        );
    }

    #[test]
    fn data_folders_are_made_once_and_never_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let with = |written: &str, host: PathBuf| {
            let mut h = spec(&[]);
            let svc = h
                .stacks
                .get_mut("web")
                .unwrap()
                .services
                .get_mut("web")
                .unwrap();
            svc.data_folders
                .insert(written.into(), host.to_string_lossy().into_owned());
            h
        };
        let pg = data.join("web/pgdata/sub");
        let made = make_data_folders(&with("./pgdata/sub", pg.clone()), &data).unwrap();
        assert_eq!(
            made,
            [data.join("web"), data.join("web/pgdata"), pg.clone()]
        );
        std::fs::write(pg.join("PG_VERSION"), "16").unwrap();
        assert!(make_data_folders(&with("./pgdata/sub", pg.clone()), &data)
            .unwrap()
            .is_empty());
        assert_eq!(
            std::fs::read_to_string(pg.join("PG_VERSION")).unwrap(),
            "16"
        );

        // A link a container left in its data folder is not followed.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("web/pgdata/escape")).unwrap();
        let err = make_data_folders(
            &with("./pgdata/escape/x", data.join("web/pgdata/escape/x")),
            &data,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("is a symlink or a file"),
            "{err:#}"
        );
        assert!(!outside.join("x").exists());
        // Another stack's folder is refused.
        let err = make_data_folders(&with("./x", data.join("other/x")), &data).unwrap_err();
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
    }

    #[test]
    fn a_host_path_of_another_shape_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("content");
        for bad in [
            tmp.path().join("elsewhere/aa/html"),
            root.join("aa/html/deeper"),
            root.join("html"),
            root.join("../x/html"),
            root.join(".tmp-aa/html"),
        ] {
            let s = spec(&[(bad.to_str().unwrap(), "compose/web/html")]);
            let err = write_copies(&snap(), &s, &root).unwrap_err();
            assert!(
                format!("{err:#}").contains("refusing to write"),
                "{bad:?}: {err:#}"
            );
        }
        assert!(!tmp.path().join("elsewhere").exists() && !tmp.path().join("x").exists());
    }

    #[test]
    fn a_deferred_file_is_refused_and_nothing_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("content");
        let mut s = snap();
        s.insert_deferred(
            "compose/web/html/big".into(),
            false,
            false,
            crate::source::snapshot::Deferred {
                size: 3,
                origin: crate::source::snapshot::Origin::Blob(git2::Oid::ZERO_SHA1),
            },
        );
        let host = root.join("cc/html");
        let err = write_copies(
            &s,
            &spec(&[(host.to_str().unwrap(), "compose/web/html")]),
            &root,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("deferred"), "{err:#}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn unused_copies_go_and_used_ones_stay_and_nothing_else_is_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("content");
        for d in ["used/html", "unused/html", ".tmp-x/html"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("stray-file"), "x").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let sources = vec![
            root.join("used/html"),
            PathBuf::from("/var/lib/docker/volumes/x/_data"),
            // A prefix of a name is not the folder.
            root.join("unusedx/html"),
        ];
        let removed = remove_unused_with(&root, &sources);
        assert_eq!(
            removed,
            [
                root.join(".tmp-x"),
                root.join("link"),
                root.join("stray-file"),
                root.join("unused")
            ]
        );
        assert!(root.join("used/html").is_dir());
        assert!(
            outside.join("keep").exists(),
            "a link is removed, not followed"
        );
        assert!(remove_unused_with(&tmp.path().join("absent"), &sources).is_empty());
    }
}
