//! The managed repo's Git remote, mirrored into a bare cache repository that gitmoor owns.
//!
//! `GitSource::open` makes (or reopens) the cache, `fetch` brings every branch of the remote into
//! `refs/remotes/origin/*` and names the head of the wanted branch, and `snapshot` reads a commit's
//! tree straight from the object database: no checkout, no work tree to clean up.
//!
//! Remotes: a local path or `file://` URL, `https://` (a token sent as basic auth, user
//! `x-access-token`, as GitHub and GitLab take it; an optional private CA), and `ssh://` or scp-like
//! `git@host:org/repo.git` (a deploy key, an optional passphrase file, the host key checked against a
//! known_hosts file, hashed entries included). Everything here blocks: call it from
//! `spawn_blocking`.
//!
//! The parts: `remote_url.rs` (what the URL asks for, shown without credentials),
//! `credentials.rs` (the key, token and passphrase files), `fetch_callbacks.rs` (what libgit2
//! asks during a fetch, and what a failure means), `host_key.rs` with `known_hosts.rs` (the ssh
//! server's key), `libgit2_setup.rs` (libgit2's process-wide start and timeouts), `https/` (the
//! http(s) transport, TLS set up only for it), `git_error.rs`.

use super::credentials;
use super::fetch_callbacks::CallbackState;
use super::https::{with_fetch, FetchContext};
use super::remote_url::{insecure_scheme, parse_remote, redact_url, strip_credentials, RemoteKind};
use crate::source::limits::{ContentError, ReadLimits};
use crate::source::snapshot::Snapshot;
use git2::{
    AutotagOption, Commit, ErrorCode, FetchOptions, FetchPrune, Oid, RemoteCallbacks, Repository,
    RepositoryInitOptions,
};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::credentials::RepoAuth;
pub use super::git_error::GitError;
pub use super::libgit2_setup::start_libgit2;

/// Every branch of the remote, force-updated (a force-push on the remote wins).
const REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";

/// One commit, as the rest of gitmoor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full hex object id.
    pub sha: String,
    /// First paragraph of the message, on one line.
    pub subject: String,
    /// `name <email>` of the author.
    pub author: String,
    /// Commit (committer) time, Unix seconds.
    pub time: i64,
}

/// A Git remote mirrored into a bare cache repository. Cheap to clone; each call opens the cache
/// afresh, so a `GitSource` can move between threads freely.
#[derive(Clone)]
pub struct GitSource {
    /// The URL libgit2 uses (a local path made absolute). It may carry credentials, so it is
    /// given to libgit2 for each fetch and never written to the cache's config.
    pub(super) url: String,
    /// The URL for messages: userinfo of http(s) URLs hidden.
    pub(super) display_url: String,
    pub(super) kind: RemoteKind,
    /// An http(s) URL that carries `user:password@` itself.
    pub(super) url_has_userinfo: bool,
    pub(super) auth: RepoAuth,
    cache_dir: PathBuf,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &self.display_url)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl GitSource {
    /// Opens the cache repo at `cache_dir` (a bare repo gitmoor owns), creating it (init bare +
    /// remote "origin") when absent or an empty directory; if the configured URL changed, updates
    /// the remote URL. Does not touch the network.
    pub fn open(url: &str, auth: RepoAuth, cache_dir: &Path) -> Result<GitSource, GitError> {
        start_libgit2();
        let (git_url, kind) = parse_remote(url)?;
        let display_url = redact_url(url);
        if kind == RemoteKind::Http {
            super::https::check_url(&git_url).map_err(|reason| GitError::InvalidUrl {
                url: display_url.clone(),
                reason,
            })?;
        }
        if let Some(scheme) = insecure_scheme(url) {
            if !auth.allow_insecure_transport {
                return Err(GitError::InsecureTransport {
                    url: display_url,
                    scheme,
                });
            }
        }
        let source = GitSource {
            url_has_userinfo: display_url != url,
            display_url,
            url: git_url,
            kind,
            auth,
            cache_dir: cache_dir.to_path_buf(),
        };
        let repo = match Repository::open_bare(cache_dir) {
            Ok(repo) => repo,
            Err(e) if e.code() == ErrorCode::NotFound && dir_absent_or_empty(cache_dir) => {
                private_dir(cache_dir).map_err(|e| source.cache_io_err(&e))?;
                let mut opts = RepositoryInitOptions::new();
                opts.bare(true).mkpath(true);
                Repository::init_opts(cache_dir, &opts).map_err(|e| source.cache_err(&e))?
            }
            Err(e) => {
                return Err(GitError::Cache {
                    path: cache_dir.to_path_buf(),
                    detail: format!("not a bare git repository ({})", e.message()),
                })
            }
        };
        // A cache made by an older gitmoor (or under a loose umask) is closed again.
        private_dir(cache_dir).map_err(|e| source.cache_io_err(&e))?;
        // "origin" in the config is for people inspecting the cache: its URL without
        // credentials. Fetches use an anonymous remote with the full URL (see `fetch`).
        let stored = strip_credentials(&source.url);
        match repo.find_remote("origin") {
            Ok(remote) => {
                if remote.url_bytes() != stored.as_bytes() {
                    repo.remote_set_url("origin", &stored)
                        .map_err(|e| source.cache_err(&e))?;
                }
            }
            Err(e) if e.code() == ErrorCode::NotFound => {
                repo.remote_with_fetch("origin", &stored, REFSPEC)
                    .map_err(|e| source.cache_err(&e))?;
            }
            Err(e) => return Err(source.cache_err(&e)),
        }
        Ok(source)
    }

    /// The remote URL as messages show it (credentials in an http(s) URL hidden).
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Fetches `+refs/heads/*:refs/remotes/origin/*` (pruning branches deleted on the remote) and
    /// returns the head of `origin/<branch>`.
    pub fn fetch(&self, branch: &str) -> Result<CommitInfo, GitError> {
        if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
            return Err(GitError::InvalidBranch {
                branch: branch.to_string(),
            });
        }
        let repo = self.open_repo()?;
        let creds = credentials::load(&self.kind, &self.auth)?;
        let state = RefCell::new(CallbackState::default());
        {
            // Anonymous: the URL (and credentials in it) lives in this process only, never in
            // the cache's config. The refspec names where the branches go.
            let mut remote = repo
                .remote_anonymous(&self.url)
                .map_err(|e| self.cache_err(&e))?;
            let mut callbacks = RemoteCallbacks::new();
            self.install_callbacks(&mut callbacks, &creds, &state);
            let mut opts = FetchOptions::new();
            opts.remote_callbacks(callbacks)
                .prune(FetchPrune::On)
                .download_tags(AutotagOption::None)
                .update_fetchhead(false);
            // http(s) goes through gitmoor's transport, which takes the token and CA from here.
            let http = Arc::new(FetchContext::new(creds.token.clone(), creds.ca_pem.clone()));
            let fetched = with_fetch(http.clone(), || {
                remote.fetch(&[REFSPEC], Some(&mut opts), Some("gitmoor: fetch"))
            });
            if let Err(e) = fetched {
                return Err(match http.take_problem() {
                    Some(problem) => self.http_error(problem, &creds),
                    None => self.classify(&e, &state.borrow(), &creds),
                });
            }
        }
        let head = repo.find_reference(&format!("refs/remotes/origin/{branch}"));
        match head {
            Ok(reference) => {
                let commit = reference.peel_to_commit().map_err(|e| GitError::Read {
                    sha: branch.to_string(),
                    what: "the branch head".to_string(),
                    detail: e.message().to_string(),
                })?;
                Ok(commit_info(&commit))
            }
            Err(e) if e.code() == ErrorCode::NotFound => Err(GitError::BranchNotFound {
                branch: branch.to_string(),
                url: self.display_url.clone(),
                branches: remote_branches(&repo),
            }),
            Err(e) => Err(self.cache_err(&e)),
        }
    }

    /// The files of a commit's tree within the default [`ReadLimits`]; see
    /// [`GitSource::snapshot_with`].
    pub fn snapshot(&self, sha: &str) -> Result<Snapshot, GitError> {
        self.snapshot_with(sha, ReadLimits::default())
    }

    /// The files of a commit's tree: mode 100755 as executable, 120000 as a symlink (data = the
    /// target); submodules (160000) are skipped. Every name is checked first (one bad name
    /// refuses the commit, `GitError::Content`); files under `compose/`, `nginx/` and `ufw/` are
    /// read, each sized from its object header before it is loaded and counted against
    /// `limits`; the others are deferred until [`GitSource::fill`] reads them.
    pub fn snapshot_with(&self, sha: &str, limits: ReadLimits) -> Result<Snapshot, GitError> {
        let repo = self.open_repo()?;
        let commit = self.find_commit(&repo, sha)?;
        let root = commit.tree().map_err(|e| GitError::Read {
            sha: sha.to_string(),
            what: "the tree".to_string(),
            detail: e.message().to_string(),
        })?;
        super::git_tree::read_tree(&repo, root, limits).map_err(|e| content_err(sha, e))
    }

    /// Reads the deferred files of `snap` (a snapshot of commit `sha`) at or under `paths`, as
    /// `Snapshot::take_wanted` names them, within the snapshot's budget. Returns how many files
    /// were read.
    pub fn fill(
        &self,
        snap: &mut Snapshot,
        sha: &str,
        paths: &[String],
    ) -> Result<usize, GitError> {
        let repo = self.open_repo()?;
        super::git_tree::fill(&repo, snap, paths).map_err(|e| content_err(sha, e))
    }

    pub fn commit_info(&self, sha: &str) -> Result<CommitInfo, GitError> {
        let repo = self.open_repo()?;
        let commit = self.find_commit(&repo, sha)?;
        Ok(commit_info(&commit))
    }

    fn open_repo(&self) -> Result<Repository, GitError> {
        Repository::open_bare(&self.cache_dir).map_err(|e| self.cache_err(&e))
    }

    fn cache_io_err(&self, e: &std::io::Error) -> GitError {
        GitError::Cache {
            path: self.cache_dir.clone(),
            detail: e.to_string(),
        }
    }

    fn cache_err(&self, e: &git2::Error) -> GitError {
        GitError::Cache {
            path: self.cache_dir.clone(),
            detail: e.message().to_string(),
        }
    }

    /// A full or abbreviated (4+ hex digits) commit id; nothing else, so a "sha" from a state file
    /// can never turn into a revision expression.
    fn find_commit<'r>(&self, repo: &'r Repository, sha: &str) -> Result<Commit<'r>, GitError> {
        let not_found = |detail: String| GitError::CommitNotFound {
            sha: sha.to_string(),
            cache: self.cache_dir.clone(),
            detail,
        };
        if !(4..=40).contains(&sha.len()) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found(
                "not a commit id (4 to 40 hex digits)".to_string(),
            ));
        }
        let object = if sha.len() == 40 {
            let oid = Oid::from_str(sha).map_err(|e| not_found(e.message().to_string()))?;
            repo.find_object(oid, None)
        } else {
            repo.revparse_single(sha)
        }
        .map_err(|e| not_found(e.message().to_string()))?;
        object
            .peel_to_commit()
            .map_err(|e| not_found(e.message().to_string()))
    }
}

/// A read failure stays a read failure; a bad commit becomes `GitError::Content`.
fn content_err(sha: &str, e: ContentError) -> GitError {
    match e {
        ContentError::Read { path, detail } => GitError::Read {
            sha: sha.to_string(),
            what: format!("\"{path}\""),
            detail,
        },
        source => GitError::Content {
            sha: sha.to_string(),
            source,
        },
    }
}

/// Makes `dir` (and missing parents) and leaves it 0700 whatever the umask: the cache holds the
/// whole managed repo, history included, which is no business of other local users.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn commit_info(commit: &Commit<'_>) -> CommitInfo {
    let subject = match commit.summary() {
        Ok(Some(s)) => s.to_string(),
        _ => commit
            .summary_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
    };
    let author = commit.author();
    CommitInfo {
        sha: commit.id().to_string(),
        subject,
        author: format!(
            "{} <{}>",
            String::from_utf8_lossy(author.name_bytes()),
            String::from_utf8_lossy(author.email_bytes())
        ),
        time: commit.time().seconds(),
    }
}

/// Branch names under `refs/remotes/origin/`, sorted.
fn remote_branches(repo: &Repository) -> Vec<String> {
    let mut names: Vec<String> = match repo.references_glob("refs/remotes/origin/*") {
        Ok(refs) => refs
            .flatten()
            .filter_map(|r| {
                r.name()
                    .ok()
                    .and_then(|n| n.strip_prefix("refs/remotes/origin/"))
                    .filter(|n| *n != "HEAD")
                    .map(str::to_string)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn dir_absent_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_source_moves_between_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<GitSource>();
    }
}
