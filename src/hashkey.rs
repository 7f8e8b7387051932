//! The key of the hashes gitmoor writes into labels.
//!
//! Labels are public to anyone who can list containers or images (a metrics exporter publishes
//! them), and some hashed inputs are secrets: environment values, build args, the bytes of
//! `secrets:` files. A plain sha256 of a short secret is an offline guessing oracle, so every such
//! hash is an HMAC-SHA256 under a random 32-byte key that never leaves the host:
//! `<state_dir>/hash.key`, made on first use (0600, in a 0700 state dir, whatever the umask).
//!
//! The planner stays pure: `reconcile` loads the key and passes it in `PlanContext`. Objects carry
//! [`HashKey::scheme_label`] (`io.gitmoor.hash`), so a plan can tell "this field changed" from
//! "this container was hashed under another scheme or key" (an upgrade from plain sha256, or a
//! state dir made anew) and say the latter honestly, once, instead of listing every field.

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The key file, in the state dir.
pub const KEY_FILE: &str = "hash.key";

/// The scheme gitmoor hashes with: HMAC-SHA256 under the host's key, inputs framed by length.
pub const SCHEME: &str = "hmac1";

const KEY_LEN: usize = 32;

/// A 32-byte HMAC key. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKey([u8; KEY_LEN]);

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashKey({})", self.scheme_label())
    }
}

impl HashKey {
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> HashKey {
        HashKey(bytes)
    }

    /// HMAC-SHA256 of `parts`, each preceded by its length, so that no two different lists of
    /// parts (`["ab", "c"]`, `["a", "bc"]`) are hashed as the same bytes.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// `hmac1:<8 hex digits>`: the scheme and which key. The digits are a MAC of a constant, so
    /// they tell keys apart and say nothing about any hashed value or about the key.
    pub fn scheme_label(&self) -> String {
        let id = self.mac(&[b"gitmoor hash key id"]);
        format!("{SCHEME}:{}", hex::encode(&id[..4]))
    }

    /// Reads `<state_dir>/hash.key`, making it on first use from /dev/urandom. Two processes that
    /// start at once agree on one key: each writes its own candidate and hard-links it into place,
    /// which only the first succeeds in doing; both then read what is in place.
    pub fn load_or_create(state_dir: &Path) -> anyhow::Result<HashKey> {
        private_dir(state_dir)?;
        let path = state_dir.join(KEY_FILE);
        if std::fs::symlink_metadata(&path).is_err() {
            create(state_dir, &path)?;
        }
        read(&path)
    }
}

/// Makes `dir` (and missing parents) and takes group and other access away from it: the state
/// dir holds the key, the state and the Git cache.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state_dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read state_dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make state_dir {} private (chmod 700)",
                    dir.display()
                )
            },
        )?;
    }
    Ok(())
}

fn create(dir: &Path, path: &Path) -> anyhow::Result<()> {
    let mut bytes = [0u8; KEY_LEN];
    crate::random::fill(&mut bytes)
        .context("cannot read 32 random bytes from /dev/urandom for the hash key")?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode above is masked by the umask; set it outright.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    let placed = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    });
    let _ = std::fs::remove_file(&tmp);
    placed.with_context(|| format!("cannot write the hash key {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<HashKey> {
    let shown = path.display();
    let remake = "remove it and gitmoor makes a new key (every container is then recreated once)";
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read the hash key {shown}; {remake}"))?;
    if !meta.file_type().is_file() {
        anyhow::bail!("the hash key {shown} is not a regular file; {remake}");
    }
    let data = std::fs::read(path).with_context(|| {
        format!("cannot read the hash key {shown}; make it readable by the user gitmoor runs as (chmod 600), or {remake}")
    })?;
    let Ok(bytes) = <[u8; KEY_LEN]>::try_from(data.as_slice()) else {
        anyhow::bail!(
            "the hash key {shown} holds {} bytes, not {KEY_LEN}; {remake}",
            data.len()
        );
    };
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make the hash key {shown} private (chmod 600)"))?;
    }
    Ok(HashKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_private_whatever_the_umask_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let a = HashKey::load_or_create(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(std::fs::read(dir.join(KEY_FILE)).unwrap().len(), 32);
        let b = HashKey::load_or_create(&dir).unwrap();
        assert_eq!(a, b, "the key is kept");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        // Another state dir, another key.
        let other = HashKey::load_or_create(&tmp.path().join("other/state")).unwrap();
        assert_ne!(a, other);
        assert_ne!(a.scheme_label(), other.scheme_label());
        assert!(!format!("{a:?}").contains(&hex::encode(a.0)));
    }

    #[test]
    fn a_short_or_unreadable_key_is_an_error_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(KEY_FILE), b"short").unwrap();
        let e = HashKey::load_or_create(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes, not 32"), "{e}");
        assert!(e.contains("remove it and gitmoor makes a new key"), "{e}");
        std::fs::remove_file(tmp.path().join(KEY_FILE)).unwrap();
        std::fs::create_dir(tmp.path().join(KEY_FILE)).unwrap();
        let e = HashKey::load_or_create(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn parts_are_framed() {
        let k = HashKey::from_bytes([1; 32]);
        assert_ne!(k.mac(&[b"ab", b"c"]), k.mac(&[b"a", b"bc"]));
        assert_eq!(k.mac(&[b"x"]), k.mac(&[b"x"]));
        assert_ne!(k.mac(&[b"x"]), HashKey::from_bytes([2; 32]).mac(&[b"x"]));
    }
}
