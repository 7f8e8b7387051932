//! What libgit2 asks gitmoor during a fetch (credentials, the server's certificate or host key)
//! and what a failed fetch means: the callbacks record what they saw, because libgit2 replaces
//! their messages with its own, and `classify` turns that record into an error naming the fix.

use super::credentials::{Credentials, DEFAULT_SSH_USER, TOKEN_USER};
use super::git::GitSource;
use super::git_error::GitError;
use super::host_key::check_host_key;
use super::https::HttpProblem;
use super::remote_url::RemoteKind;
use git2::{CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};
use std::cell::RefCell;

/// What to check when an http(s) remote refuses gitmoor.
const TOKEN_HINT: &str = "token_file (sent as user x-access-token, password = the token) and that \
                          the token may read the repository";

/// What the callbacks saw during one fetch (libgit2 replaces their messages with its own).
#[derive(Default)]
pub(super) struct CallbackState {
    cred_calls: u32,
    auth_rejected: bool,
    auth_problem: Option<String>,
    host_key_problem: Option<(String, String)>,
}

impl GitSource {
    pub(super) fn install_callbacks<'a>(
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
                // Not ssh: nothing to check here (http(s) is gitmoor's own transport, which
                // checks the certificate itself).
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            match check_host_key(&self.kind, self.auth.known_hosts.as_ref(), hostkey) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err((host, problem)) => {
                    let err = git2::Error::from_str(&problem);
                    state.borrow_mut().host_key_problem = Some((host, problem));
                    Err(err)
                }
            }
        });
    }

    /// Turns a failed fetch into what went wrong and what to do, from what the callbacks saw.
    pub(super) fn classify(
        &self,
        e: &git2::Error,
        st: &CallbackState,
        creds: &Credentials,
    ) -> GitError {
        let url = self.display_url.clone();
        let detail = self.scrub(e.message(), creds);
        let hint = match self.kind {
            RemoteKind::Ssh { .. } => {
                "ssh_key / ssh_key_passphrase_file, and that the key is authorised on the server \
                 (a deploy key)"
            }
            _ => TOKEN_HINT,
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

    /// The error for what gitmoor's http(s) transport saw go wrong.
    pub(super) fn http_error(&self, problem: HttpProblem, creds: &Credentials) -> GitError {
        let url = self.display_url.clone();
        let detail = self.scrub(&problem.to_string(), creds);
        match problem {
            HttpProblem::Auth(_) => GitError::Auth {
                url,
                detail,
                hint: TOKEN_HINT,
            },
            HttpProblem::Tls(_) => GitError::Tls { url, detail },
            HttpProblem::Unreachable(_) => GitError::Unreachable { url, detail },
            HttpProblem::Other(_) => GitError::Fetch { url, detail },
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
