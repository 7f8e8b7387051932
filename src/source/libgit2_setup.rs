//! libgit2's process-wide set-up: its network timeouts, and gitmoor's own http(s) transport in
//! place of libgit2's (see `https/mod.rs` for why). Done once per process, before the first fetch.

use std::sync::Once;
use std::time::Duration;

/// libgit2's own defaults are "wait forever": a daemon must not hang on a dead remote. The same
/// limits hold for gitmoor's http(s) transport.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read or write may wait on the server.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts libgit2 for this process. Call it from `main` before any other thread exists (before
/// the async runtime): registering a transport is not thread-safe in libgit2. `GitSource::open`
/// calls it too, for library users; the second call does nothing.
///
/// libgit2 is built without TLS, so its start-up no longer makes an OpenSSL context: TLS is set
/// up at the first https request only (`https/trust.rs`), and ssh, `git://` and local remotes
/// never pay for a TLS context or the CA bundle. (OpenSSL's library initialisation still runs at
/// git2's start, from libssh2-sys, whatever the remote.)
pub fn start_libgit2() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: these write two plain ints in libgit2's globals, once per process; a connection
        // being opened at the same moment reads either the old or the new value.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(CONNECT_TIMEOUT));
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis(IO_TIMEOUT));
        }
        super::https::register_once();
    });
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
