//! libgit2's process-wide set-up: its start (with or without the system CAs), its network
//! timeouts, and the extra CA an https remote may be signed by.

use super::git_error::GitError;
use super::remote_url::{parse_remote, RemoteKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

/// libgit2's own defaults are "wait forever": a daemon must not hang on a dead remote.
const CONNECT_TIMEOUT_MS: i32 = 30_000;
const SERVER_TIMEOUT_MS: i32 = 120_000;

/// OpenSSL's variable naming the CA bundle that `SSL_CTX_set_default_verify_paths` parses.
const CA_BUNDLE_VAR: &str = "SSL_CERT_FILE";
/// An empty CA bundle: OpenSSL parses it in no time and trusts nothing from it.
const EMPTY_CA_BUNDLE: &str = "/dev/null";
/// Set when this process started libgit2 with an empty TLS trust store (see [`start_libgit2`]).
static STARTED_WITHOUT_CAS: AtomicBool = AtomicBool::new(false);

/// How [`start_libgit2`] started libgit2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsStart {
    /// The remote is http(s): libgit2's TLS context holds the system CAs, as libgit2 always does.
    SystemCas,
    /// The remote needs no TLS: the context was made with an empty trust store, and an https
    /// fetch in this process is refused.
    NoCas,
    /// Other threads were already running, so the environment could not be touched: libgit2
    /// started as usual (system CAs loaded).
    AsUsual,
}

/// Starts libgit2 for a process whose only remote is `remote`. Call it from `main` before any
/// other thread exists (before the async runtime).
///
/// Why: libgit2's global start-up makes its one OpenSSL context at once, whether or not a TLS
/// connection will ever be opened, and `SSL_CTX_set_default_verify_paths` parses the whole
/// system CA bundle into it (144 certificates on Debian 12; 92 % of the instructions of a no-op `gitmoor
/// apply`, and part of the daemon's resident memory). A `file://`, plain-path, ssh or git://
/// remote never opens a TLS connection, so for those the bundle is pointed at an empty file
/// (`SSL_CERT_FILE`, which OpenSSL reads there) while libgit2 starts, and put back right after,
/// so the rest of the process sees its environment unchanged. An http(s) remote gets the usual
/// start-up: system CAs (plus `ca_file`, added at the first fetch), set up once per process.
///
/// Why it is sound without `unsafe`: changing the environment races with any other thread
/// reading it, so it is done only when `/proc/self/task` shows this thread alone (a new thread
/// could only come from this one, which is busy here); otherwise libgit2 starts as usual. Doing
/// the start-up here, single-threaded, also keeps git2's own `SSL_CERT_FILE`/`SSL_CERT_DIR`
/// probe (it sets them on first use) off the runtime's threads.
pub fn start_libgit2(remote: &str) -> TlsStart {
    let needs_tls = matches!(parse_remote(remote), Ok((_, RemoteKind::Http)));
    if needs_tls {
        set_timeouts_once();
        return TlsStart::SystemCas;
    }
    if !only_thread() {
        set_timeouts_once();
        return TlsStart::AsUsual;
    }
    let saved = std::env::var_os(CA_BUNDLE_VAR);
    std::env::set_var(CA_BUNDLE_VAR, EMPTY_CA_BUNDLE);
    // The first git2 call: git2's probe (it keeps an SSL_CERT_FILE that exists), then
    // git_libgit2_init, which makes the OpenSSL context from the empty bundle.
    set_timeouts_once();
    match saved {
        Some(value) => std::env::set_var(CA_BUNDLE_VAR, value),
        None => std::env::remove_var(CA_BUNDLE_VAR),
    }
    STARTED_WITHOUT_CAS.store(true, Ordering::Relaxed);
    TlsStart::NoCas
}

/// True when the calling thread is the process's only thread (Linux: one entry in
/// /proc/self/task); false when that cannot be read.
fn only_thread() -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| tasks.count() == 1)
        .unwrap_or(false)
}

/// libgit2 waits forever by default; these options are process-wide, so set them once.
pub(super) fn set_timeouts_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: these write two plain ints in libgit2's globals, once per process; a connection
        // being opened at the same moment reads either the old or the new value.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
            let _ = git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS);
        }
    });
}

/// Adds a CA to libgit2's TLS trust store. The store is process-wide (OpenSSL's shared context):
/// a CA trusted for one repository is trusted for all https remotes of this process.
pub(super) fn trust_ca_file(path: &Path) -> Result<(), GitError> {
    static LOADED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let text = std::fs::read(path).map_err(|source| GitError::CredentialFile {
        what: "ca_file",
        path: path.to_path_buf(),
        source,
    })?;
    if !text
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(GitError::CaFile {
            path: path.to_path_buf(),
            detail: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_string(),
        });
    }
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if loaded.iter().any(|p| p == path) {
        return Ok(());
    }
    // SAFETY: the mutex serialises our calls; libgit2 hands the file to
    // SSL_CTX_load_verify_locations on its shared context, whose X509_STORE locks internally.
    unsafe { git2::opts::set_ssl_cert_file(path) }.map_err(|e| GitError::CaFile {
        path: path.to_path_buf(),
        detail: e.message().to_string(),
    })?;
    loaded.push(path.to_path_buf());
    Ok(())
}

/// True when this process started libgit2 with an empty trust store: an https fetch must then
/// fail closed instead of trusting nothing (or, worse, something unexpected).
pub(super) fn started_without_cas() -> bool {
    STARTED_WITHOUT_CAS.load(Ordering::Relaxed)
}
