//! What gitmoor proves itself with to the remote: the configured paths (`RepoAuth`), the files
//! they name read at each fetch (a rotated token or key is picked up without a restart), and the
//! ssh defaults (`~/.ssh/id_*`, the known_hosts files) when nothing is configured.

use super::git_error::GitError;
use super::remote_url::RemoteKind;
use std::path::{Path, PathBuf};

/// The basic-auth user name that goes with a token (GitHub, GitLab and Gitea accept it).
pub(super) const TOKEN_USER: &str = "x-access-token";
/// The ssh login name when the URL names none (`ssh://host/repo.git`).
pub(super) const DEFAULT_SSH_USER: &str = "git";

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

/// The secrets one fetch needs, read from the files `RepoAuth` names.
#[derive(Default)]
pub(super) struct Credentials {
    pub(super) ssh_key: Option<PathBuf>,
    pub(super) passphrase: Option<String>,
    pub(super) token: Option<String>,
    /// The content of `ca_file`, read at each fetch (a renewed CA is picked up).
    pub(super) ca_pem: Option<Vec<u8>>,
}

/// Reads the files the transport needs, before connecting, so a missing file is reported as
/// such and not as a refused login.
pub(super) fn load(kind: &RemoteKind, auth: &RepoAuth) -> Result<Credentials, GitError> {
    let mut creds = Credentials::default();
    match kind {
        RemoteKind::Ssh { .. } => {
            creds.ssh_key = match &auth.ssh_key {
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
            if let Some(path) = &auth.ssh_key_passphrase_file {
                creds.passphrase = Some(read_secret("ssh_key_passphrase_file", path)?);
            }
        }
        RemoteKind::Http => {
            if let Some(path) = &auth.token_file {
                creds.token = Some(read_secret("token_file", path)?);
            }
            if let Some(ca) = &auth.ca_file {
                creds.ca_pem = Some(read_ca_file(ca)?);
            }
        }
        RemoteKind::Local | RemoteKind::Other => {}
    }
    Ok(creds)
}

/// The PEM text of `ca_file`, refused when it holds no certificate or a damaged one (before
/// connecting, so the error names the file and not the server).
fn read_ca_file(path: &Path) -> Result<Vec<u8>, GitError> {
    let text = std::fs::read(path).map_err(|source| GitError::CredentialFile {
        what: "ca_file",
        path: path.to_path_buf(),
        source,
    })?;
    super::https::check_ca_pem(&text).map_err(|detail| GitError::CaFile {
        path: path.to_path_buf(),
        detail,
    })?;
    Ok(text)
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

pub(super) fn default_known_hosts() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = home_dir() {
        files.push(home.join(".ssh/known_hosts"));
    }
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    files
}
