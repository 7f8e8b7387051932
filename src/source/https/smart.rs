//! Git's smart HTTP protocol for libgit2 (a "smart subtransport"): the ref advertisement
//! (`GET …/info/refs?service=git-upload-pack`), then one `POST …/git-upload-pack` per round of
//! negotiation. Fetch only. Credentials, when the server asks (HTTP 401): the URL's own, then
//! the token, each offered once.

use super::http1::{self, HttpError, Request, Response};
use super::url::HttpUrl;
use super::{FetchContext, HttpProblem};
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use git2::{Error, ErrorClass, ErrorCode};
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// libgit2 and git itself send a `git/` user agent; some servers answer the smart protocol
/// only to one.
const USER_AGENT: &str = concat!("git/2.0 (gitmoor ", env!("CARGO_PKG_VERSION"), ")");
/// Redirects followed for the ref advertisement (as git does; the POSTs go where it ended).
const MAX_REDIRECTS: usize = 5;
const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";
const RESULT: &str = "application/x-git-upload-pack-result";

/// One connection of libgit2 to the remote: the base URL (after redirects) and the
/// credentials that worked, shared by the requests of that connection.
pub(super) struct SmartHttp {
    ctx: Arc<FetchContext>,
    session: Arc<Mutex<Option<Session>>>,
}

/// What a request of the ref advertisement carries.
#[derive(Clone, Copy)]
enum Offer {
    Nothing,
    /// The `user:password@` of the URL.
    Url,
    Token,
}

#[derive(Clone)]
struct Session {
    base: HttpUrl,
    authorization: Option<String>,
    /// The credentials not offered yet, for an upload-pack the server refuses (HTTP 401) where
    /// it listed the branches without them.
    more: Vec<String>,
}

impl SmartHttp {
    pub(super) fn new(ctx: Arc<FetchContext>) -> SmartHttp {
        SmartHttp {
            ctx,
            session: Arc::new(Mutex::new(None)),
        }
    }
}

impl SmartSubtransport for SmartHttp {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, Error> {
        match action {
            Service::UploadPackLs => {
                let base = HttpUrl::parse(url).map_err(|m| self.fail(HttpProblem::Other(m)))?;
                let (session, response) = self.advertise(base).map_err(|p| self.fail(p))?;
                *lock(&self.session) = Some(session);
                Ok(Box::new(Download::Streaming(response)))
            }
            Service::UploadPack => {
                if lock(&self.session).is_none() {
                    return Err(self.fail(HttpProblem::Other(
                        "upload-pack before the ref advertisement (internal error)".into(),
                    )));
                }
                Ok(Box::new(Download::Pending {
                    ctx: self.ctx.clone(),
                    session: self.session.clone(),
                    body: Vec::new(),
                }))
            }
            Service::ReceivePackLs | Service::ReceivePack => Err(self.fail(HttpProblem::Other(
                "gitmoor only fetches; it never pushes".into(),
            ))),
        }
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl SmartHttp {
    /// Records the problem for the fetch's error and hands libgit2 an error of the right kind.
    fn fail(&self, problem: HttpProblem) -> Error {
        let err = problem.to_git_error();
        self.ctx.record(problem);
        err
    }

    /// The ref advertisement: follows redirects, offers the URL's credentials then the token.
    fn advertise(&self, mut base: HttpUrl) -> Result<(Session, Response), HttpProblem> {
        let first = base.clone();
        // As libgit2 did: the first request without credentials, then (after a 401) the URL's
        // own, then the token. Each is offered once.
        let mut offers = vec![(Offer::Nothing, None)];
        if let Some((user, pass)) = &base.userinfo {
            offers.push((Offer::Url, Some(basic(user, pass))));
        }
        if let Some(token) = &self.ctx.token {
            offers.push((Offer::Token, Some(basic(super::TOKEN_USER, token))));
        }
        let mut offer = 0;
        let mut redirects = 0;
        loop {
            let home = base.same_origin(&first);
            // Credentials go only to the server they were given for.
            let (offered, authorization) = match &offers[offer] {
                (kind, auth) if home => (*kind, auth.clone()),
                _ => (Offer::Nothing, None),
            };
            let path = format!("{}/info/refs?service=git-upload-pack", base.path);
            let mut headers = vec![
                ("User-Agent", USER_AGENT),
                ("Accept", "*/*"),
                ("Pragma", "no-cache"),
            ];
            if let Some(a) = &authorization {
                headers.push(("Authorization", a.as_str()));
            }
            let response = send(&self.ctx, &base, "GET", &path, &headers, &[])?;
            match response.status {
                200 => {
                    if response.media_type() != ADVERTISEMENT {
                        return Err(HttpProblem::Other(format!(
                            "the server answered {} with {:?}, not a Git ref advertisement: it \
                             does not speak Git's smart HTTP protocol (or the URL is not a \
                             repository)",
                            base.authority(),
                            response.header("content-type").unwrap_or("no content type"),
                        )));
                    }
                    return Ok((
                        Session {
                            more: if home {
                                offers[offer + 1..]
                                    .iter()
                                    .filter_map(|(_, a)| a.clone())
                                    .collect()
                            } else {
                                Vec::new()
                            },
                            base,
                            authorization,
                        },
                        response,
                    ));
                }
                301 | 302 | 303 | 307 | 308 => {
                    redirects += 1;
                    let location = response.header("location").unwrap_or_default();
                    if redirects > MAX_REDIRECTS {
                        return Err(HttpProblem::Other(format!(
                            "more than {MAX_REDIRECTS} redirects"
                        )));
                    }
                    let target = base.join(location).map_err(HttpProblem::Other)?;
                    if first.https && !target.https {
                        return Err(HttpProblem::Other(format!(
                            "the server redirects from https to http ({}); gitmoor does not \
                             follow a redirect to a plain-text connection",
                            target.authority()
                        )));
                    }
                    let suffix = "/info/refs";
                    let path = target.path.strip_suffix(suffix).ok_or_else(|| {
                        HttpProblem::Other(format!(
                            "a redirect to a path that is not a repository's {suffix}"
                        ))
                    })?;
                    base = HttpUrl {
                        path: path.to_string(),
                        ..target
                    };
                }
                401 if home && offer + 1 < offers.len() => offer += 1,
                401 => {
                    return Err(HttpProblem::Auth(match offered {
                        _ if !home => format!(
                            "{} (where the remote redirected) asks for credentials; gitmoor \
                             sends them only to the server the URL names",
                            base.authority()
                        ),
                        Offer::Token => "the remote refused the credentials".to_string(),
                        Offer::Url => "the remote refused the credentials in the URL (and no \
                                       token_file is set)"
                            .to_string(),
                        Offer::Nothing => {
                            "the remote asks for credentials and no token_file is set".to_string()
                        }
                    }));
                }
                403 => {
                    return Err(HttpProblem::Auth(if home {
                        format!(
                            "the remote refused access (HTTP 403){}",
                            if authorization.is_some() {
                                ""
                            } else {
                                " and no credentials were sent"
                            }
                        )
                    } else {
                        format!(
                            "{} (where the remote redirected) refused access (HTTP 403); gitmoor \
                             sends credentials only to the server the URL names",
                            base.authority()
                        )
                    }));
                }
                404 => {
                    return Err(HttpProblem::Unreachable(
                        "no repository at this URL (HTTP 404)".to_string(),
                    ))
                }
                status => {
                    return Err(HttpProblem::Unreachable(format!(
                        "the server answered HTTP {status}"
                    )))
                }
            }
        }
    }
}

fn send(
    ctx: &FetchContext,
    url: &HttpUrl,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpProblem> {
    let tls = if url.https {
        Some(super::trust::connector(ctx.ca_pem.as_deref()).map_err(HttpProblem::Tls)?)
    } else {
        None
    };
    let req = Request {
        method,
        path_and_query: if path.is_empty() { "/" } else { path },
        headers,
        body,
    };
    http1::send(url, tls.as_ref(), &req).map_err(|e| match e {
        HttpError::Tls(m) => HttpProblem::Tls(m),
        HttpError::Connect(m) | HttpError::Protocol(m) => HttpProblem::Unreachable(m),
        HttpError::Io(e) => HttpProblem::Unreachable(format!("{}: {e}", url.authority())),
    })
}

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What libgit2 reads and writes for one request: the advertisement's body, or an
/// upload-pack round whose request body libgit2 writes first, sent at the first read.
enum Download {
    Streaming(Response),
    Pending {
        ctx: Arc<FetchContext>,
        /// The connection's session: a credential found to work here is kept for the next
        /// round.
        session: Arc<Mutex<Option<Session>>>,
        body: Vec<u8>,
    },
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Download::Pending { ctx, session, body } = self {
            match upload_pack(ctx, session, body) {
                Ok(response) => *self = Download::Streaming(response),
                Err(problem) => {
                    let message = problem.to_string();
                    ctx.record(problem);
                    return Err(io::Error::other(message));
                }
            }
        }
        match self {
            Download::Streaming(response) => response.read(buf),
            Download::Pending { .. } => Ok(0),
        }
    }
}

/// One round of negotiation: the POST of `body`, retried with the next credential while the
/// server answers 401 (some list branches to anyone and ask only here).
fn upload_pack(
    ctx: &FetchContext,
    shared: &Mutex<Option<Session>>,
    body: &[u8],
) -> Result<Response, HttpProblem> {
    let mut session = lock(shared).clone().ok_or_else(|| {
        HttpProblem::Other("upload-pack without a session (internal error)".into())
    })?;
    let path = format!("{}/git-upload-pack", session.base.path);
    loop {
        let mut headers = vec![
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/x-git-upload-pack-request"),
            ("Accept", RESULT),
        ];
        if let Some(a) = &session.authorization {
            headers.push(("Authorization", a.as_str()));
        }
        let r = send(ctx, &session.base, "POST", &path, &headers, body)?;
        return match (r.status, r.media_type()) {
            (200, media) if media == RESULT => {
                *lock(shared) = Some(session);
                Ok(r)
            }
            (200, media) => Err(HttpProblem::Other(format!(
                "the server answered upload-pack with {media:?}, not {RESULT}"
            ))),
            (401, _) if !session.more.is_empty() => {
                session.authorization = Some(session.more.remove(0));
                continue;
            }
            (401 | 403, _) => Err(HttpProblem::Auth(format!(
                "the remote refused upload-pack (HTTP {}) after it listed the branches{}",
                r.status,
                if session.authorization.is_some() || ctx.token.is_some() {
                    ""
                } else {
                    " (and no token_file is set)"
                }
            ))),
            (status, _) => Err(HttpProblem::Unreachable(format!(
                "the server answered upload-pack with HTTP {status}"
            ))),
        };
    }
}

impl Write for Download {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Download::Pending { body, .. } => {
                body.extend_from_slice(data);
                Ok(data.len())
            }
            Download::Streaming(_) => Err(io::Error::other(
                "a request body written after the response began (internal error)",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl HttpProblem {
    /// The libgit2 error for it: its code and class tell the kind apart.
    fn to_git_error(&self) -> Error {
        let (code, class) = match self {
            HttpProblem::Auth(_) => (ErrorCode::Auth, ErrorClass::Http),
            HttpProblem::Tls(_) => (ErrorCode::Certificate, ErrorClass::Ssl),
            HttpProblem::Unreachable(_) => (ErrorCode::GenericError, ErrorClass::Net),
            HttpProblem::Other(_) => (ErrorCode::GenericError, ErrorClass::Http),
        };
        Error::new(code, class, self.to_string())
    }
}
