//! libgit2's process-wide set-up: its network timeouts, and gitmoor's own http(s) transport in
//! place of libgit2's (see `https/mod.rs` for why). Done once per process, before the first fetch.

use std::sync::Once;

/// libgit2's own defaults are "wait forever": a daemon must not hang on a dead remote.
const CONNECT_TIMEOUT_MS: i32 = 30_000;
const SERVER_TIMEOUT_MS: i32 = 120_000;

/// Starts libgit2 for this process. Call it from `main` before any other thread exists (before
/// the async runtime): registering a transport is not thread-safe in libgit2. `GitSource::open`
/// calls it too, for library users; the second call does nothing.
///
/// libgit2 is built without TLS, so its start-up no longer makes an OpenSSL context: TLS is set
/// up at the first https request only (`https/trust.rs`), and ssh, `git://` and local remotes
/// never pay for it.
pub fn start_libgit2() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: these write two plain ints in libgit2's globals, once per process; a connection
        // being opened at the same moment reads either the old or the new value.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
            let _ = git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS);
        }
        super::https::register_once();
    });
}
