//! The home directory of the user gitmoor runs as: what `~/` in a compose bind source means, as
//! docker compose expands it for the user running it. Read once at the edge (main, reconcile) and
//! handed to the pure reader.
//!
//! From the passwd entry of the effective user, not `HOME`: the daemon under its unit and a
//! `sudo -E gitmoor apply` beside it must read the same commit as the same host folder, or the
//! second would move a service onto another folder and its data would seem gone. `home_dir:` in
//! the config says it explicitly.

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `configured` (the config's `home_dir:`) when given, else the passwd entry of the effective
/// user; None when neither is an absolute path (then `~/` is refused).
pub fn home_dir(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.to_path_buf()),
        None => passwd_home(),
    }
    .filter(|p| p.is_absolute())
}

/// The path under the home of a bind source written `~` or `~/x` (`""` or `x`); None for anything
/// else, `~user/x` included (compose does not expand it either). One rule for the reader and the
/// host policy, so the policy judges the path the mount becomes.
pub fn under_home(source: &str) -> Option<&str> {
    match source.strip_prefix('~')? {
        "" => Some(""),
        rest => rest.strip_prefix('/'),
    }
}

fn passwd_home() -> Option<PathBuf> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: a zeroed `passwd` is a valid out-parameter; getpwuid_r writes into it and `buf`
    // (whose length it is given) and sets `found` to it on success, or leaves it null.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points into `buf`, NUL-terminated, alive for this scope.
    let dir = unsafe { CStr::from_ptr(pw.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_passwd_entry_names_an_absolute_home_and_the_config_wins() {
        // This machine's tests run as a user with a passwd entry (root: /root).
        let home = super::home_dir(None).expect("a passwd entry");
        assert!(home.is_absolute(), "{home:?}");
        assert_eq!(
            super::home_dir(Some(Path::new("/srv/home"))),
            Some(Path::new("/srv/home").to_path_buf())
        );
        // A relative path would be read against gitmoor's working directory: refused.
        assert_eq!(super::home_dir(Some(Path::new("home"))), None);
    }
}
