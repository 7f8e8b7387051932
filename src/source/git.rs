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

use super::known_hosts::{
    fingerprint, key_blob_type, known_hosts_name, parse_known_hosts, KnownHost, Marker,
};
use crate::source::limits::{ContentError, ReadLimits};
use crate::source::snapshot::Snapshot;
use git2::cert::CertHostkey;
use git2::{
    AutotagOption, CertificateCheckStatus, Commit, Cred, CredentialType, ErrorClass, ErrorCode,
    FetchOptions, FetchPrune, Oid, RemoteCallbacks, Repository, RepositoryInitOptions,
};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

/// Every branch of the remote, force-updated (a force-push on the remote wins).
const REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";
/// The basic-auth user name that goes with a token (GitHub, GitLab and Gitea accept it).
const TOKEN_USER: &str = "x-access-token";
/// The ssh login name when the URL names none (`ssh://host/repo.git`).
const DEFAULT_SSH_USER: &str = "git";
/// libgit2's own defaults are "wait forever": a daemon must not hang on a dead remote.
const CONNECT_TIMEOUT_MS: i32 = 30_000;
const SERVER_TIMEOUT_MS: i32 = 120_000;

/// How gitmoor authenticates to the remote and which servers it trusts. All fields are paths, so
/// secrets never sit in the configuration itself; files are read again on every fetch (a rotated
/// token is picked up without a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoAuth {
    /// Private key for ssh remotes (a deploy key). Without it: `~/.ssh/id_ed25519`, `id_ecdsa` or
    /// `id_rsa`, the first that exists.
    pub ssh_key: Option<PathBuf>,
    /// File holding the passphrase of `ssh_key` (a trailing newline is ignored).
    pub ssh_key_passphrase_file: Option<PathBuf>,
    /// known_hosts file for ssh remotes. Without it: `~/.ssh/known_hosts` and
    /// `/etc/ssh/ssh_known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// File holding a token for https remotes (sent as user `x-access-token`, password = token).
    pub token_file: Option<PathBuf>,
    /// PEM file of a CA to trust for https remotes, in addition to the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// Accept `http://` and `git://` remotes. Off by default: over them anyone on the path can
    /// read the repository (and a token sent with it) and change what gitmoor deploys as root.
    pub allow_insecure_transport: bool,
}

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

/// What kind of transport the URL asks for; ssh keeps what the host key check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RemoteKind {
    Local,
    Http,
    Ssh {
        user: Option<String>,
        host: String,
        port: u16,
    },
    /// `git://` and anything else libgit2 knows without credentials.
    Other,
}

/// A Git remote mirrored into a bare cache repository. Cheap to clone; each call opens the cache
/// afresh, so a `GitSource` can move between threads freely.
#[derive(Clone)]
pub struct GitSource {
    /// The URL libgit2 uses (a local path made absolute). It may carry credentials, so it is
    /// given to libgit2 for each fetch and never written to the cache's config.
    url: String,
    /// The URL for messages: userinfo of http(s) URLs hidden.
    display_url: String,
    kind: RemoteKind,
    /// An http(s) URL that carries `user:password@` itself.
    url_has_userinfo: bool,
    auth: RepoAuth,
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
        set_timeouts_once();
        let (git_url, kind) = parse_remote(url)?;
        let display_url = redact_url(url);
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
        let creds = self.load_credentials()?;
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
            remote
                .fetch(&[REFSPEC], Some(&mut opts), Some("gitmoor: fetch"))
                .map_err(|e| self.classify(&e, &state.borrow(), &creds))?;
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

    /// Reads the files the transport needs, before connecting, so a missing file is reported as
    /// such and not as a refused login.
    fn load_credentials(&self) -> Result<Credentials, GitError> {
        let mut creds = Credentials::default();
        match &self.kind {
            RemoteKind::Ssh { .. } => {
                creds.ssh_key = match &self.auth.ssh_key {
                    Some(key) => {
                        std::fs::File::open(key).map_err(|source| GitError::CredentialFile {
                            what: "ssh_key",
                            path: key.clone(),
                            source,
                        })?;
                        Some(key.clone())
                    }
                    None => default_ssh_key(),
                };
                if let Some(path) = &self.auth.ssh_key_passphrase_file {
                    creds.passphrase = Some(read_secret("ssh_key_passphrase_file", path)?);
                }
            }
            RemoteKind::Http => {
                if STARTED_WITHOUT_CAS.load(Ordering::Relaxed) {
                    // Fail closed: the trust store is empty, not the system's.
                    return Err(GitError::Fetch {
                        url: self.display_url.clone(),
                        detail: "this gitmoor process started libgit2 without the system CAs, \
                                 as its configured remote needed no TLS; start gitmoor again \
                                 with the https remote in its config"
                            .to_string(),
                    });
                }
                if let Some(path) = &self.auth.token_file {
                    creds.token = Some(read_secret("token_file", path)?);
                }
                if let Some(ca) = &self.auth.ca_file {
                    trust_ca_file(ca)?;
                }
            }
            RemoteKind::Local | RemoteKind::Other => {}
        }
        Ok(creds)
    }

    fn install_callbacks<'a>(
        &'a self,
        callbacks: &mut RemoteCallbacks<'a>,
        creds: &'a Credentials,
        state: &'a RefCell<CallbackState>,
    ) {
        callbacks.credentials(move |_url, user_from_url, allowed| {
            let mut st = state.borrow_mut();
            // ssh asks for the login name first when the URL has none; that is no attempt.
            if allowed == CredentialType::USERNAME {
                return Cred::username(user_from_url.unwrap_or(DEFAULT_SSH_USER));
            }
            // libgit2 asks again after every refusal (15 times over https, forever over ssh):
            // one refusal is the answer.
            if st.cred_calls > 0 {
                st.auth_rejected = true;
                return Err(git2::Error::from_str("the remote refused the credentials"));
            }
            st.cred_calls += 1;
            if allowed.contains(CredentialType::SSH_KEY) {
                let user = user_from_url.unwrap_or(DEFAULT_SSH_USER);
                return match &creds.ssh_key {
                    Some(key) => Cred::ssh_key(user, None, key, creds.passphrase.as_deref()),
                    None => {
                        let problem = "no ssh_key is configured and none of ~/.ssh/id_ed25519, \
                                       ~/.ssh/id_ecdsa, ~/.ssh/id_rsa exists";
                        st.auth_problem = Some(problem.to_string());
                        Err(git2::Error::from_str(problem))
                    }
                };
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                return match &creds.token {
                    Some(token) => Cred::userpass_plaintext(TOKEN_USER, token),
                    None => {
                        let problem = if self.url_has_userinfo {
                            "the remote refused the credentials in the URL (and no token_file is \
                             set)"
                        } else {
                            "the remote asks for credentials and no token_file is set"
                        };
                        st.auth_problem = Some(problem.to_string());
                        Err(git2::Error::from_str(problem))
                    }
                };
            }
            let problem = format!(
                "the remote asks for a kind of credentials gitmoor does not offer ({allowed:?})"
            );
            st.auth_problem = Some(problem.clone());
            Err(git2::Error::from_str(&problem))
        });
        callbacks.certificate_check(move |cert, _host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: libgit2's own verification (system CAs + ca_file) decides.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            match self.check_host_key(hostkey) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err((host, problem)) => {
                    let err = git2::Error::from_str(&problem);
                    state.borrow_mut().host_key_problem = Some((host, problem));
                    Err(err)
                }
            }
        });
    }

    /// Compares the server's host key with the known_hosts entries for its host (and port).
    /// Err carries (host as known_hosts spells it, what is wrong and how to fix it).
    fn check_host_key(&self, hostkey: &CertHostkey<'_>) -> Result<(), (String, String)> {
        let (host, port) = match &self.kind {
            RemoteKind::Ssh { host, port, .. } => (host.as_str(), *port),
            _ => ("unknown host", 22),
        };
        let name = known_hosts_name(host, port);
        let fail = |problem: String| Err((name.clone(), problem));
        let Some(blob) = hostkey.hostkey() else {
            return fail("the ssh library did not give gitmoor the server's key".to_string());
        };
        let key_type = key_blob_type(blob).unwrap_or_else(|| "unknown".to_string());
        let fp = fingerprint(blob);
        let (files, explicit) = match &self.auth.known_hosts {
            Some(path) => (vec![path.clone()], true),
            None => (default_known_hosts(), false),
        };
        let add_to = files
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "~/.ssh/known_hosts".to_string());
        let keyscan = if port == 22 {
            format!("ssh-keyscan {host} >> {add_to}")
        } else {
            format!("ssh-keyscan -p {port} {host} >> {add_to}")
        };
        let mut entries = Vec::new();
        for file in &files {
            match std::fs::read_to_string(file) {
                Ok(text) => entries.extend(
                    parse_known_hosts(&text)
                        .into_iter()
                        .filter(|e| e.hosts.matches(&name))
                        .map(|e| (file.clone(), e)),
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return fail(format!(
                        "known_hosts file {} does not exist; check the server's {key_type} key \
                         fingerprint is {fp}, then create it with: {keyscan}",
                        file.display()
                    ))
                }
                Err(e) => return fail(format!("cannot read known_hosts {}: {e}", file.display())),
            }
        }
        if let Some((file, e)) = entries
            .iter()
            .find(|(_, e)| e.marker == Marker::Revoked && e.key == blob)
        {
            return fail(format!(
                "the server's {key_type} key {fp} is marked @revoked in {} line {}",
                file.display(),
                e.line
            ));
        }
        let plain: Vec<&(PathBuf, KnownHost)> = entries
            .iter()
            .filter(|(_, e)| e.marker == Marker::None)
            .collect();
        if plain.iter().any(|(_, e)| e.key == blob) {
            return Ok(());
        }
        let where_ = files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some((file, e)) = plain.iter().find(|(_, e)| e.key_type == key_type) {
            return fail(format!(
                "the server's {key_type} key {fp} does NOT match {} line {} ({}): the server's \
                 key changed or someone is intercepting the connection; if the change is \
                 expected, remove the old entry with `ssh-keygen -R '{name}' -f {}` and add the \
                 new one with: {keyscan}",
                file.display(),
                e.line,
                fingerprint(&e.key),
                file.display()
            ));
        }
        if !plain.is_empty() {
            let mut have: Vec<&str> = plain.iter().map(|(_, e)| e.key_type.as_str()).collect();
            have.sort_unstable();
            have.dedup();
            return fail(format!(
                "{where_} has only {} key(s) for it, but the server offered its {key_type} key \
                 {fp}; if that fingerprint is right, add all its keys with: {keyscan}",
                have.join(", ")
            ));
        }
        fail(format!(
            "the host is not in {where_}; the server offered its {key_type} key {fp}: if that \
             fingerprint is right, add it with: {keyscan}"
        ))
    }

    /// Turns a failed fetch into what went wrong and what to do, from what the callbacks saw.
    fn classify(&self, e: &git2::Error, st: &CallbackState, creds: &Credentials) -> GitError {
        let url = self.display_url.clone();
        let detail = self.scrub(e.message(), creds);
        let hint = match self.kind {
            RemoteKind::Ssh { .. } => {
                "ssh_key / ssh_key_passphrase_file, and that the key is authorised on the server \
                 (a deploy key)"
            }
            _ => {
                "token_file (sent as user x-access-token, password = the token) and that the \
                 token may read the repository"
            }
        };
        if let Some((host, problem)) = &st.host_key_problem {
            return GitError::HostKey {
                url,
                host: host.clone(),
                problem: problem.clone(),
            };
        }
        if let Some(problem) = &st.auth_problem {
            return GitError::Auth {
                url,
                detail: problem.clone(),
                hint,
            };
        }
        if st.auth_rejected {
            return GitError::Auth {
                url,
                detail: "the remote refused the credentials".to_string(),
                hint,
            };
        }
        if e.code() == ErrorCode::Auth
            || (st.cred_calls > 0 && e.class() == ErrorClass::Ssh)
            || (e.class() == ErrorClass::Http && detail.contains("401"))
        {
            // libssh2 reads the key only when it logs in; say which file it could not use.
            let detail = match &creds.ssh_key {
                Some(key) if detail.contains("private key") => format!(
                    "cannot use the private key {} (wrong or missing passphrase, or a format \
                     libssh2 cannot read): {detail}",
                    key.display()
                ),
                _ => detail,
            };
            return GitError::Auth { url, detail, hint };
        }
        if e.code() == ErrorCode::Certificate || e.class() == ErrorClass::Ssl {
            return GitError::Tls { url, detail };
        }
        match e.class() {
            ErrorClass::Net
            | ErrorClass::Os
            | ErrorClass::Ssh
            | ErrorClass::Http
            | ErrorClass::Ssl
            | ErrorClass::Repository => GitError::Unreachable { url, detail },
            _ if e.code() == ErrorCode::NotFound => GitError::Unreachable { url, detail },
            _ => GitError::Fetch { url, detail },
        }
    }

    /// Library messages may quote the URL or, in theory, a credential: never let a token out.
    fn scrub(&self, message: &str, creds: &Credentials) -> String {
        let mut out = message.replace(&self.url, &self.display_url);
        if let Some(token) = creds.token.as_deref().filter(|t| !t.is_empty()) {
            out = out.replace(token, "***");
        }
        out
    }
}

#[derive(Default)]
struct Credentials {
    ssh_key: Option<PathBuf>,
    passphrase: Option<String>,
    token: Option<String>,
}

/// What the callbacks saw during one fetch (libgit2 replaces their messages with its own).
#[derive(Default)]
struct CallbackState {
    cred_calls: u32,
    auth_rejected: bool,
    auth_problem: Option<String>,
    host_key_problem: Option<(String, String)>,
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

fn read_secret(what: &'static str, path: &Path) -> Result<String, GitError> {
    let text = std::fs::read_to_string(path).map_err(|source| GitError::CredentialFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    let secret = if what == "token_file" {
        secret.trim()
    } else {
        secret
    };
    if secret.is_empty() {
        return Err(GitError::EmptyCredentialFile {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(secret.to_string())
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn default_ssh_key() -> Option<PathBuf> {
    let ssh = home_dir()?.join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| ssh.join(name))
        .find(|p| p.is_file())
}

fn default_known_hosts() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = home_dir() {
        files.push(home.join(".ssh/known_hosts"));
    }
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    files
}

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
fn set_timeouts_once() {
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
fn trust_ca_file(path: &Path) -> Result<(), GitError> {
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

/// Splits a remote URL into what libgit2 is given and what kind of transport it is, the way git
/// decides: `scheme://…` is a URL; a `:` before any `/` makes `[user@]host:path` ssh; anything
/// else is a local path (made absolute, so the cache's config does not depend on the cwd).
fn parse_remote(url: &str) -> Result<(String, RemoteKind), GitError> {
    let invalid = |reason: &str| GitError::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_string(),
    };
    if url.is_empty() {
        return Err(invalid("it is empty"));
    }
    if url.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let kind =
            match scheme.to_ascii_lowercase().as_str() {
                "file" => RemoteKind::Local,
                "http" | "https" => RemoteKind::Http,
                "ssh" | "git+ssh" | "ssh+git" => {
                    let authority = rest.split('/').next().unwrap_or_default();
                    let (user, hostport) = match authority.rsplit_once('@') {
                        Some((userinfo, hp)) => {
                            let user = userinfo.split(':').next().unwrap_or_default();
                            (Some(user.to_string()).filter(|u| !u.is_empty()), hp)
                        }
                        None => (None, authority),
                    };
                    let (host, port) = split_host_port(hostport)
                        .ok_or_else(|| invalid("cannot read host and port of the ssh URL"))?;
                    RemoteKind::Ssh { user, host, port }
                }
                "git" => RemoteKind::Other,
                _ => return Err(invalid(
                    "unsupported scheme; use https://, ssh://, user@host:path, file:// or a local \
                     path",
                )),
            };
        return Ok((url.to_string(), kind));
    }
    let first_colon = url.find(':');
    let first_slash = url.find('/');
    let scp_like = match (first_colon, first_slash) {
        (Some(c), Some(s)) => c < s,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if scp_like {
        let (user, host) =
            parse_scp(url).ok_or_else(|| invalid("expected user@host:path for an ssh remote"))?;
        return Ok((
            url.to_string(),
            RemoteKind::Ssh {
                user,
                host,
                port: 22,
            },
        ));
    }
    let abs = std::path::absolute(url).map_err(|e| invalid(&e.to_string()))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| invalid("the absolute path is not UTF-8"))?
        .to_string();
    Ok((abs, RemoteKind::Local))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; port 22 when absent.
fn split_host_port(hostport: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => 22,
        Some(p) => p.parse().ok()?,
    };
    Some((host.to_string(), port))
}

/// `[user@]host:path` and `[user@][v6]:path`.
fn parse_scp(url: &str) -> Option<(Option<String>, String)> {
    let (user, rest) = match url.split_once('@') {
        Some((user, rest)) if !user.contains(':') && !user.contains('/') => {
            (Some(user.to_string()).filter(|u| !u.is_empty()), rest)
        }
        _ => (None, url),
    };
    let (host, path) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        rest.split_once(':')?
    };
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some((user, host.to_string()))
}

/// Hides the userinfo of an http(s) URL (`https://TOKEN@host/…` is a common way to configure a
/// token). ssh user names stay: they are not secrets.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let after = &rest[at + 1..];
    if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        // An https user is a token as often as a name.
        return format!("{scheme}://***@{after}");
    }
    // ssh://git@host keeps its login name; a password after it goes.
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{after}"),
        None => url.to_string(),
    }
}

/// `http` or `git` when the URL uses a transport with neither encryption nor authentication of
/// the server.
fn insecure_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    matches!(scheme.as_str(), "http" | "git").then_some(scheme)
}

/// The URL as the cache's config may keep it: no userinfo at all for http(s) (a token may be the
/// user name), no password for other schemes (an ssh login name is no secret).
fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let host_and_path = &rest[at + 1..];
    if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return format!("{scheme}://{host_and_path}");
    }
    let user = rest[..at].split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host_and_path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_remote_kinds() {
        let ssh = |u: &str| parse_remote(u).unwrap().1;
        assert_eq!(
            ssh("git@github.com:org/repo.git"),
            RemoteKind::Ssh {
                user: Some("git".into()),
                host: "github.com".into(),
                port: 22
            }
        );
        assert_eq!(
            ssh("ssh://root@127.0.0.1:2222/srv/repo.git"),
            RemoteKind::Ssh {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: 2222
            }
        );
        assert_eq!(
            ssh("ssh://[::1]:2200/repo"),
            RemoteKind::Ssh {
                user: None,
                host: "::1".into(),
                port: 2200
            }
        );
        assert_eq!(
            ssh("git@[::1]:repo"),
            RemoteKind::Ssh {
                user: Some("git".into()),
                host: "::1".into(),
                port: 22
            }
        );
        assert_eq!(ssh("https://h/r.git"), RemoteKind::Http);
        assert_eq!(ssh("file:///srv/r.git"), RemoteKind::Local);
        let (path, kind) = parse_remote("some/dir:x/repo").unwrap();
        assert_eq!(kind, RemoteKind::Local);
        assert!(path.starts_with('/') && path.ends_with("some/dir:x/repo"));
        assert!(parse_remote("ftp://x/y").is_err());
        assert!(parse_remote("").is_err());
    }

    #[test]
    fn git_source_moves_between_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<GitSource>();
    }

    #[test]
    fn redacts_http_userinfo_only() {
        assert_eq!(
            redact_url("https://x-access-token:gh_secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r@x.git"),
            "https://github.com/o/r@x.git"
        );
        assert_eq!(redact_url("git@host:o/r.git"), "git@host:o/r.git");
        assert_eq!(
            redact_url("ssh://git@host/o/r.git"),
            "ssh://git@host/o/r.git"
        );
        assert_eq!(
            redact_url("ssh://git:pw_s3cret@host:2222/o/r.git"),
            "ssh://git:***@host:2222/o/r.git"
        );
    }

    #[test]
    fn credentials_are_stripped_from_the_stored_url() {
        assert_eq!(
            strip_credentials("https://x-access-token:gh_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_credentials("https://gh_secret@github.com/o/r@x.git"),
            "https://github.com/o/r@x.git"
        );
        assert_eq!(
            strip_credentials("ssh://git:pw@host:22/r.git"),
            "ssh://git@host:22/r.git"
        );
        assert_eq!(strip_credentials("git@host:o/r.git"), "git@host:o/r.git");
        assert_eq!(strip_credentials("/srv/r.git"), "/srv/r.git");
    }

    #[test]
    fn http_and_git_schemes_are_insecure() {
        assert_eq!(insecure_scheme("HTTP://h/r").as_deref(), Some("http"));
        assert_eq!(insecure_scheme("git://h/r").as_deref(), Some("git"));
        for ok in ["https://h/r", "ssh://h/r", "file:///r", "git@h:r", "/srv/r"] {
            assert_eq!(insecure_scheme(ok), None, "{ok}");
        }
    }
}
