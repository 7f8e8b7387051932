//! The home directory of the user gitmoor runs as: what `~/` in a compose bind source means, as
//! docker compose expands it for the user running it. Read once at the edge (main, reconcile) and
//! handed to the pure reader.

use std::ffi::CStr;
use std::path::PathBuf;

/// `HOME` when it is an absolute path, else the passwd entry of the effective user (a systemd
/// service without `User=` may start without `HOME`); None when neither gives one.
pub fn home_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").map(PathBuf::from) {
        if h.is_absolute() {
            return Some(h);
        }
    }
    passwd_home()
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
    let dir = PathBuf::from(dir.to_string_lossy().into_owned());
    dir.is_absolute().then_some(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_passwd_entry_names_an_absolute_home() {
        // This machine's tests run as a user with a passwd entry (root: /root).
        let home = super::passwd_home().expect("a passwd entry");
        assert!(home.is_absolute(), "{home:?}");
    }
}
