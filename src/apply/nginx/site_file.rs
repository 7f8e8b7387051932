//! One site's file in the sites folder: read what is there, write a new version atomically, put
//! the previous one back. Nginx reads the folder at every test and reload, so a file must never
//! be seen half written: each write goes to a temporary name outside the include's `*.conf`
//! glob, is synced, then renamed over the site's file.

use crate::observe::nginx::{is_managed, MAX_SITE_BYTES, TMP_SUFFIX};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What is at `<sites_dir>/<site>.conf` now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    Absent,
    /// gitmoor's file, with its content.
    Managed(String),
    /// Something gitmoor did not write (no header line, not a regular file, not UTF-8).
    Foreign,
}

/// One site's file.
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl SiteFile {
    /// `site` must have passed [`crate::observe::nginx::check_site_name`].
    pub fn new(dir: &Path, site: &str) -> SiteFile {
        SiteFile {
            path: dir.join(format!("{site}.conf")),
            tmp: dir.join(format!(".{site}.conf{TMP_SUFFIX}")),
            dir: dir.to_path_buf(),
        }
    }

    pub fn read(&self) -> std::io::Result<Current> {
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Current::Absent),
            Err(e) => return Err(e),
        };
        // gitmoor's sites are a few KiB; a bigger file is not one of them and is not read.
        if !meta.is_file() || meta.len() > MAX_SITE_BYTES {
            return Ok(Current::Foreign);
        }
        let bytes = std::fs::read(&self.path)?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) if is_managed(&text) => Current::Managed(text),
            _ => Current::Foreign,
        })
    }

    /// Writes `content` as the site's file (mode 0644 whatever the daemon's umask: Nginx's
    /// master reads it as root, but an admin reading the folder should too), durably.
    pub fn write(&self, content: &str) -> std::io::Result<()> {
        // A temporary file left by a crash is ours: start over.
        match std::fs::remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&self.tmp)?;
        let written = (|| {
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.write_all(content.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        drop(f);
        if let Err(e) = std::fs::rename(&self.tmp, &self.path) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        self.sync_dir()
    }

    /// Deletes the site's file (already gone is fine).
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Puts back what was there before a change: the previous content, or no file.
    pub fn restore(&self, previous: Option<&str>) -> std::io::Result<()> {
        match previous {
            Some(content) => self.write(content),
            None => self.remove(),
        }
    }

    /// The rename (or removal) itself survives a crash only once the folder is synced.
    fn sync_dir(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_is_0644_leaves_no_temporary_file_and_restore_undoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiteFile::new(dir.path(), "api");
        assert_eq!(f.read().unwrap(), Current::Absent);
        f.write("# managed by gitmoor\nv1\n").unwrap();
        let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            f.read().unwrap(),
            Current::Managed("# managed by gitmoor\nv1\n".into())
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["api.conf"]);
        f.restore(None).unwrap();
        assert_eq!(f.read().unwrap(), Current::Absent);
        f.remove().unwrap();
    }

    #[test]
    fn files_without_the_header_or_not_regular_are_foreign() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "server {}\n").unwrap();
        std::fs::create_dir(dir.path().join("b.conf")).unwrap();
        assert_eq!(
            SiteFile::new(dir.path(), "a").read().unwrap(),
            Current::Foreign
        );
        assert_eq!(
            SiteFile::new(dir.path(), "b").read().unwrap(),
            Current::Foreign
        );
    }
}
