//! Puts a folder of a snapshot on disk without ever leaving the destination.
//!
//! The names were checked when the tree was read; this is the second wall, for a snapshot made
//! any other way. Every path is split into plain components, directories are made one component
//! at a time, and a component that already exists as a symlink (one written from the snapshot a
//! moment ago, or one found there) is refused rather than followed. Files are created with
//! `O_CREAT|O_EXCL`, which never follows a symlink in the last component.

use super::names::{name_problem, shown};
use super::snapshot::{is_under, Snapshot};
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

impl Snapshot {
    /// Writes every file under `prefix` into `dest` (relative paths kept, `prefix` stripped).
    /// Used to give relative bind mounts a stable host path. Refuses (and stops at) a path that
    /// is not made of plain names, that would go through a symlink, or a file still deferred.
    pub fn write_subtree(&self, prefix: &str, dest: &Path) -> io::Result<()> {
        for (p, f) in &self.files {
            if !is_under(p, prefix) || p == prefix {
                continue;
            }
            let rel = if prefix.is_empty() {
                p.as_str()
            } else {
                &p[prefix.len() + 1..]
            };
            if self.is_deferred(p) {
                return Err(refused(
                    p,
                    "its bytes were not read (a deferred file); fill it before writing the folder",
                ));
            }
            let parts = plain_components(p, rel)?;
            let Some((file_name, dirs)) = parts.split_last() else {
                continue;
            };
            // `dest` is the caller's: made (with its parents) as it is, like create_dir_all, and
            // walkable by a container's non-root user whatever the umask.
            if std::fs::symlink_metadata(dest).is_err() {
                std::fs::create_dir_all(dest)?;
                std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
            }
            let mut dir = dest.to_path_buf();
            for part in dirs {
                dir.push(part);
                ensure_real_dir(p, &dir)?;
            }
            let target = dir.join(file_name);
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {
                    return Err(refused(p, "a folder of the same name is already there"))
                }
                // A file or a symlink from before: removed, never written through.
                Ok(_) => std::fs::remove_file(&target)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if f.symlink {
                std::os::unix::fs::symlink(OsStr::from_bytes(&f.data), &target)?;
            } else {
                let mode = if f.executable { 0o755 } else { 0o644 };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&target)?;
                file.write_all(&f.data)?;
                // The umask may have taken bits off `mode`.
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
        }
        Ok(())
    }
}

fn refused(path: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refusing to write \"{}\": {why}", shown(path)),
    )
}

/// The components of `rel`, each a plain name (`Component::Normal`, no `.`/`..`, no `.git`).
fn plain_components<'a>(path: &str, rel: &'a str) -> io::Result<Vec<&'a OsStr>> {
    let mut parts = Vec::new();
    for part in rel.split('/') {
        if let Some(why) = name_problem(part.as_bytes()) {
            return Err(refused(path, why));
        }
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) if c == OsStr::new(part) => parts.push(c),
            _ => return Err(refused(path, "it is not made of plain names")),
        }
    }
    Ok(parts)
}

/// `dir` exists as a real directory (made 0755 if absent); a symlink or a file there is refused.
fn ensure_real_dir(path: &str, dir: &PathBuf) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(refused(path, "it would be written through a symlink"))
        }
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(refused(
                path,
                "a file of the same name as its folder is there",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new().mode(0o755).create(dir)?;
    // Made just now by us; check nothing else took its place.
    match std::fs::symlink_metadata(dir) {
        // 0755 whatever the umask (the systemd unit's is 0077): a container's non-root user
        // must be able to walk the folders of a repo file it mounts, as with docker compose.
        Ok(m) if m.is_dir() => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        }
        _ => Err(refused(path, "its folder changed while gitmoor wrote it")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::FileEntry;
    use super::*;

    fn entry(data: &str, symlink: bool) -> FileEntry {
        FileEntry {
            data: data.as_bytes().to_vec(),
            executable: false,
            symlink,
        }
    }

    #[test]
    fn traversal_names_are_refused_and_nothing_leaves_dest() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        for bad in ["s/../../x", "s/./x", "s//x", "s/.git/x", "s/..", "s/"] {
            let mut snap = Snapshot::default();
            snap.files.insert(bad.to_string(), entry("pwned", false));
            let err = snap.write_subtree("s", &dest).unwrap_err();
            assert!(
                err.to_string().contains("refusing to write"),
                "{bad}: {err}"
            );
        }
        assert!(!tmp.path().join("x").exists());
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        // A link from the snapshot, then a file "through" it.
        let mut snap = Snapshot::default();
        snap.files
            .insert("s/l".into(), entry(outside.to_str().unwrap(), true));
        snap.files
            .insert("s/l/passwd".into(), entry("pwned", false));
        let err = snap.write_subtree("s", &dest).unwrap_err();
        assert!(err.to_string().contains("through a symlink"), "{err}");
        assert!(!outside.join("passwd").exists());

        // A link already in dest, as the last component: replaced, not followed.
        let dest2 = tmp.path().join("dest2");
        std::fs::create_dir(&dest2).unwrap();
        std::fs::write(outside.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), dest2.join("f")).unwrap();
        let mut snap = Snapshot::default();
        snap.files.insert("s/f".into(), entry("new", false));
        snap.write_subtree("s", &dest2).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(std::fs::read_to_string(dest2.join("f")).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(dest2.join("f"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn writes_files_links_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut snap = Snapshot::default();
        snap.files.insert(
            "s/a/b.sh".into(),
            FileEntry {
                data: b"#!/bin/sh\n".to_vec(),
                executable: true,
                symlink: false,
            },
        );
        snap.files.insert("s/link".into(), entry("a/b.sh", true));
        snap.files.insert("other/x".into(), entry("x", false));
        snap.write_subtree("s", tmp.path()).unwrap();
        let mut nested = Snapshot::default();
        nested.files.insert("s/x".into(), entry("x", false));
        nested
            .write_subtree("s", &tmp.path().join("new/dest"))
            .unwrap();
        assert!(tmp.path().join("new/dest/x").is_file(), "dest is made");
        let meta = std::fs::metadata(tmp.path().join("a/b.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(tmp.path().join("link")).unwrap(),
            Path::new("a/b.sh")
        );
        assert!(!tmp.path().join("x").exists() && !tmp.path().join("other").exists());
    }
}
