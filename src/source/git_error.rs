//! What can go wrong reading the managed repo's Git remote, each error naming the fix.

use crate::source::limits::ContentError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("invalid repository URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "cannot use the git cache at {}: {detail}; check its permissions, or delete it so gitmoor \
         clones again",
        path.display()
    )]
    Cache { path: PathBuf, detail: String },

    #[error("cannot read {what} {}: {source}; check the path and its permissions", path.display())]
    CredentialFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} {} is empty", path.display())]
    EmptyCredentialFile { what: &'static str, path: PathBuf },

    #[error("cannot reach {url}: {detail}; check the URL and network")]
    Unreachable { url: String, detail: String },

    #[error("authentication failed for {url}: {detail}; check {hint}")]
    Auth {
        url: String,
        detail: String,
        hint: &'static str,
    },

    #[error("ssh host key check failed for {host} ({url}): {problem}")]
    HostKey {
        url: String,
        host: String,
        problem: String,
    },

    #[error(
        "the TLS certificate of {url} is not trusted: {detail}; if a private CA signed it, set \
         ca_file to that CA's PEM file"
    )]
    Tls { url: String, detail: String },

    #[error("cannot trust ca_file {}: {detail}", path.display())]
    CaFile { path: PathBuf, detail: String },

    #[error("'{branch}' is not a valid branch name")]
    InvalidBranch { branch: String },

    #[error("branch '{branch}' not found on {url} ({})", branch_list(.branches))]
    BranchNotFound {
        branch: String,
        url: String,
        branches: Vec<String>,
    },

    #[error("commit {sha} not found in the git cache {}: {detail}", cache.display())]
    CommitNotFound {
        sha: String,
        cache: PathBuf,
        detail: String,
    },

    #[error("fetch from {url} failed: {detail}")]
    Fetch { url: String, detail: String },

    #[error(
        "refusing the remote {url}: {scheme}:// is neither encrypted nor authenticated, so anyone \
         on the network path can read the repository (and any token sent with it) and change \
         what gitmoor deploys; use https:// or ssh://, or set allow_insecure_transport: true in \
         the config"
    )]
    InsecureTransport { url: String, scheme: String },

    /// The commit itself is unusable (a bad name, a file over a budget): bad input, not a
    /// failure of the cache or the network.
    #[error("commit {sha}: {source}")]
    Content {
        sha: String,
        #[source]
        source: ContentError,
    },

    #[error("cannot read {what} of commit {sha}: {detail}")]
    Read {
        sha: String,
        what: String,
        detail: String,
    },
}

impl GitError {
    /// True when the commit's content is at fault (retrying the same commit cannot help).
    pub fn is_bad_commit(&self) -> bool {
        matches!(
            self,
            GitError::Content {
                source: ContentError::BadName { .. }
                    | ContentError::FileTooBig { .. }
                    | ContentError::TotalTooBig { .. },
                ..
            }
        )
    }
}

fn branch_list(branches: &[String]) -> String {
    if branches.is_empty() {
        "the remote has no branches".to_string()
    } else {
        format!("branches: {}", branches.join(", "))
    }
}
