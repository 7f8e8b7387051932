//! gitmoor's own http(s) transport for libgit2, so TLS is set up only when a remote needs it.
//!
//! Why not libgit2's: built with TLS, libgit2 creates its OpenSSL context in its global start-up,
//! whatever the remote (`SSL_CTX_new`, which fetches every cipher from OpenSSL's provider: 8 of
//! the 21 M instructions of a no-op `gitmoor apply` on a local repository). libgit2 is built
//! without TLS here (`git2` without its `https` feature); `http://` and `https://` URLs go to this
//! transport instead (`smart.rs`: Git's smart HTTP protocol over `http1.rs`), whose TLS set-up
//! (`trust.rs`: system CAs + `ca_file`) is made at the first https request. ssh, `git://` and
//! local remotes stay libgit2's own and make no TLS context. What they still run of OpenSSL is
//! its library initialisation (config file, error strings: ~2.4 M instructions), which
//! libssh2-sys calls from git2's start-up whatever the remote.
//!
//! libgit2 creates the transport inside `Remote::fetch`, on the fetching thread, so the fetch's
//! credentials reach it through a thread-local [`FetchContext`] ([`with_fetch`]); what went
//! wrong is recorded there too, because libgit2 keeps only a message of a stream's error.

mod http1;
mod smart;
mod trust;
mod url;

use git2::transport::Transport;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

pub(super) use super::credentials::TOKEN_USER;

/// What one fetch gives the transport, and what the transport saw go wrong.
pub(super) struct FetchContext {
    token: Option<String>,
    /// The content of `ca_file`, checked to hold a PEM certificate.
    ca_pem: Option<Vec<u8>>,
    problem: Mutex<Option<HttpProblem>>,
}

impl FetchContext {
    pub(super) fn new(token: Option<String>, ca_pem: Option<Vec<u8>>) -> FetchContext {
        FetchContext {
            token,
            ca_pem,
            problem: Mutex::new(None),
        }
    }

    fn record(&self, problem: HttpProblem) {
        let mut slot = self
            .problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.get_or_insert(problem);
    }

    /// The first problem the transport met in this fetch.
    pub(super) fn take_problem(&self) -> Option<HttpProblem> {
        self.problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Why an http(s) fetch failed, as the fix goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HttpProblem {
    /// Credentials absent or refused.
    Auth(String),
    /// The TLS handshake (the server's certificate) or a redirect off TLS.
    Tls(String),
    /// No connection, no repository there, or a server error.
    Unreachable(String),
    /// The server does not speak Git's smart HTTP protocol as expected.
    Other(String),
}

impl std::fmt::Display for HttpProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpProblem::Auth(m)
            | HttpProblem::Tls(m)
            | HttpProblem::Unreachable(m)
            | HttpProblem::Other(m) => f.write_str(m),
        }
    }
}

/// Checks that a `ca_file`'s content is PEM certificates OpenSSL reads (at config time, so a
/// damaged file is named as such, not taken for the server's fault).
pub(super) fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    trust::pem_certificates(pem).map(|_| ())
}

/// Checks an http(s) URL as the transport will read it (when the remote is opened, so a
/// malformed one is refused before any fetch).
pub(super) fn check_url(url: &str) -> Result<(), String> {
    url::HttpUrl::parse(url).map(|_| ())
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<FetchContext>>> = const { RefCell::new(None) };
}

/// Runs `fetch` (a libgit2 fetch) with `ctx` as the transport's context on this thread.
pub(super) fn with_fetch<T>(ctx: Arc<FetchContext>, fetch: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
    let _reset = Reset;
    fetch()
}

/// Makes `http://` and `https://` URLs use this transport. Once per process, before the first
/// fetch (called from `libgit2_setup::start_libgit2`).
pub(super) fn register_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["https", "http"] {
            // SAFETY: git_transport_register appends to a global list without a lock; the Once
            // runs it a single time, from libgit2's start-up (`start_libgit2`, which `main` calls
            // before any other thread exists, and `GitSource::open` before its first fetch).
            let registered = unsafe { git2::transport::register(scheme, transport) };
            if let Err(e) = registered {
                tracing::error!("cannot register gitmoor's {scheme} transport: {e}");
            }
        }
    });
}

fn transport(remote: &git2::Remote<'_>) -> Result<Transport, git2::Error> {
    let ctx = CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        git2::Error::from_str("gitmoor's http(s) transport used outside a fetch (internal error)")
    })?;
    // rpc = true: each request stands alone (HTTP is stateless).
    Transport::smart(remote, true, smart::SmartHttp::new(ctx))
}
