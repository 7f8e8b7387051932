//! Webhooks: verify a delivery, then nudge the daemon when it announces a push to the configured
//! branch. The payload is read only to decide whether to nudge: the daemon then fetches the
//! configured branch as at any poll, so a delivery never chooses a ref or a commit, and a replayed
//! one costs at most a fetch.
//!
//! | route | header | value |
//! |---|---|---|
//! | `/hooks/github` | `X-Hub-Signature-256` | `sha256=` + hex HMAC-SHA256 of the body |
//! | `/hooks/gitea` | `X-Gitea-Signature` | hex HMAC-SHA256 of the body (Forgejo sends it too) |
//! | `/hooks/gitlab` | `X-Gitlab-Token` | the secret itself |
//! | `/hooks/generic` | `X-Gitmoor-Signature-256` | `sha256=` + hex HMAC-SHA256 of the body |
//!
//! Comparisons are constant-time. A missing or bad signature is 401, checked before the body is
//! parsed. A valid push to the branch is 202; a ping is 200; anything else (another branch, a
//! tag, another event) is 204 and changes nothing.
//!
//! The routes must be reachable by the forges, so anyone can send to them, and the HMAC
//! signatures can only be checked once the whole body is in memory. What an unauthenticated
//! client can make the server hold is therefore bounded before verification:
//! - what can be judged from the headers is judged first, without reading a byte of the body: a
//!   missing signature header, GitLab's token (the secret itself, not an HMAC of the body), and a
//!   `Content-Length` over `webhook_max_body_bytes` (413);
//! - at most [`MAX_DELIVERIES_IN_FLIGHT`] deliveries are read and verified at once, so the buffers
//!   held are at most that many times `webhook_max_body_bytes`; one more waits up to
//!   [`SLOT_WAIT`] for a slot (holding no buffer), then is answered 503;
//! - the body must arrive within `webhook_read_timeout_secs` (408), so a sender that stalls
//!   gives its slot back; the body is read in chunks and refused (413) as soon as it grows past
//!   the limit, whatever `Content-Length` said.
//!
//! Request headers themselves are not timed out here (`axum::serve` sets no header read timeout);
//! the Nginx in front does that (`client_header_timeout`, see docs/status.md).

use super::AppState;
use crate::config::Config;
use crate::trigger::Why;
use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// How many deliveries may be read and verified at the same time. A forge sends one delivery per
/// push, so a handful covers bursts (and the daemon merges their nudges anyway); the cap is what
/// bounds the memory unauthenticated clients can pin: this many times `webhook_max_body_bytes`.
pub const MAX_DELIVERIES_IN_FLIGHT: usize = 4;

/// How long a delivery waits for a slot before 503. An honest delivery holds its slot for
/// microseconds (its body arrives with its headers), so a burst of them (a forge sends one per
/// push, and GitHub and GitLab do not retry a failed one) overlaps only briefly and waits in line
/// here instead of being refused; only slots held by stalled senders make it run out.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// The webhook secret and what a delivery is checked against.
pub struct HookConfig {
    secret: Vec<u8>,
    branch: String,
    pub max_body: usize,
    /// How long a delivery may take to send its body (`webhook_read_timeout_secs`).
    pub read_timeout: Duration,
    /// Slots for deliveries being read and verified ([`MAX_DELIVERIES_IN_FLIGHT`]).
    in_flight: Semaphore,
    /// Unix seconds of the last logged rejection (one warning a minute at most).
    last_warn: AtomicI64,
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("secret", &"***")
            .field("branch", &self.branch)
            .field("max_body", &self.max_body)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl HookConfig {
    pub fn new(
        secret: Vec<u8>,
        branch: &str,
        max_body: usize,
        read_timeout: Duration,
    ) -> HookConfig {
        HookConfig {
            secret,
            branch: branch.to_string(),
            max_body,
            read_timeout,
            in_flight: Semaphore::new(MAX_DELIVERIES_IN_FLIGHT),
            last_warn: AtomicI64::new(0),
        }
    }

    /// Logs a refused delivery: a warning at most once a minute (so a flood cannot fill the log),
    /// the rest at debug level.
    fn log_refusal(&self, p: Provider, why: &str) {
        let now = chrono::Utc::now().timestamp();
        let last = self.last_warn.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(provider = p.name(), reason = %why, "webhook delivery refused (more within a minute are logged at debug level)");
        } else {
            debug!(provider = p.name(), reason = %why, "webhook delivery refused");
        }
    }

    /// Reads `webhook_secret_file`; None when it is not configured (then no route exists).
    pub fn from_config(cfg: &Config) -> anyhow::Result<Option<Arc<HookConfig>>> {
        let Some(path) = &cfg.webhook_secret_file else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read webhook_secret_file {}; create it (e.g. `openssl rand -hex 32 > {}; chmod 600 {}`) or remove the key",
                path.display(),
                path.display(),
                path.display()
            )
        })?;
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let secret = bytes[..end].to_vec();
        if secret.is_empty() {
            anyhow::bail!(
                "webhook_secret_file {} is empty; put a long random secret in it",
                path.display()
            );
        }
        if let Some(w) = crate::spec::host_secrets::permission_warning(path) {
            warn!("{w}");
        }
        Ok(Some(Arc::new(HookConfig::new(
            secret,
            &cfg.branch,
            cfg.webhook_max_body_bytes,
            Duration::from_secs(cfg.webhook_read_timeout_secs),
        ))))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    Gitea,
    GitLab,
    Generic,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::GitLab => "gitlab",
            Provider::Generic => "generic",
        }
    }

    fn signature_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-Hub-Signature-256",
            Provider::Gitea => "X-Gitea-Signature",
            Provider::GitLab => "X-Gitlab-Token",
            Provider::Generic => "X-Gitmoor-Signature-256",
        }
    }

    fn event_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-GitHub-Event",
            Provider::Gitea => "X-Gitea-Event",
            Provider::GitLab => "X-Gitlab-Event",
            Provider::Generic => "X-Gitmoor-Event",
        }
    }
}

fn hmac_hex_ok(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig).is_ok()
}

/// HMAC-SHA256 of `body` as `sha256=<hex>` (what GitHub and the generic hook send).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The signature header's value; Err names it when it is missing (or not text).
fn signature(p: Provider, headers: &HeaderMap) -> Result<&str, String> {
    let name = p.signature_header();
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("missing {name}"))
}

/// What can be checked before the body is read, so that a delivery that cannot be authentic costs
/// no read at all: the signature header is there, and for GitLab, whose token is the secret
/// itself rather than an HMAC of the body, that it is right. Err says what is wrong, for the 401.
pub fn verify_headers(p: Provider, secret: &[u8], headers: &HeaderMap) -> Result<(), String> {
    signature(p, headers)?;
    match p {
        Provider::GitLab => verify(p, secret, headers, b""),
        Provider::GitHub | Provider::Gitea | Provider::Generic => Ok(()),
    }
}

/// Checks a delivery's signature. Err says what is wrong, for the 401's body.
pub fn verify(p: Provider, secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let name = p.signature_header();
    let value = signature(p, headers)?;
    let ok = match p {
        Provider::GitHub | Provider::Generic => value
            .strip_prefix("sha256=")
            .is_some_and(|h| hmac_hex_ok(secret, body, h)),
        Provider::Gitea => hmac_hex_ok(secret, body, value),
        // Hashing both sides first makes the comparison constant-time in the length too.
        Provider::GitLab => {
            bool::from(Sha256::digest(value.as_bytes()).ct_eq(&Sha256::digest(secret)))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad {name}"))
    }
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ping,
    /// A push to the configured branch (or a generic delivery that names no ref).
    Nudge,
    /// Another branch, a tag, another event.
    Ignore(String),
}

#[derive(serde::Deserialize)]
struct Payload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

/// Decides from the event header and the payload's `ref`. Err: a push whose body is not JSON.
pub fn decide(
    p: Provider,
    headers: &HeaderMap,
    body: &[u8],
    branch: &str,
) -> Result<Decision, String> {
    let event = headers
        .get(p.event_header())
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (p, event.as_deref()) {
        (Provider::GitHub | Provider::Generic, Some("ping")) => return Ok(Decision::Ping),
        (Provider::GitHub | Provider::Gitea, Some("push"))
        | (Provider::GitLab, Some("Push Hook"))
        | (Provider::Generic, _)
        // No event header: judge by the payload.
        | (_, None) => {}
        (_, Some(other)) => return Ok(Decision::Ignore(format!("event {other}"))),
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let json: Vec<u8> = if form {
        form_field(body, "payload").ok_or("the form has no payload field")?
    } else {
        body.to_vec()
    };
    if p == Provider::Generic && json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decision::Nudge);
    }
    let parsed: Payload = match serde_json::from_slice(&json) {
        Ok(v) => v,
        Err(_) if p == Provider::Generic => return Ok(Decision::Nudge),
        Err(_) => return Err("the payload is not a JSON object".into()),
    };
    match parsed.git_ref {
        None if p == Provider::Generic => Ok(Decision::Nudge),
        None => Ok(Decision::Ignore("no ref in the payload".into())),
        Some(r) if r == format!("refs/heads/{branch}") => Ok(Decision::Nudge),
        Some(r) if p == Provider::Generic && r == branch => Ok(Decision::Nudge),
        Some(r) => Ok(Decision::Ignore(format!("ref {r}"))),
    }
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<Vec<u8>> {
    for pair in body.split(|b| *b == b'&') {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        if kv.next()? == name.as_bytes() {
            return Some(percent_decode(kv.next().unwrap_or_default()));
        }
    }
    None
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// An answer given while the body may still be unread: `Connection: close` tells the client the
/// connection ends here, since what it still sends will not be read.
fn refuse(status: StatusCode, body: String) -> Response {
    let mut resp = text(status, body);
    resp.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    /// It grew past the limit.
    TooLarge,
    /// The connection failed or the body was malformed.
    Broken,
}

/// Reads a body chunk by chunk and stops as soon as it passes `max` bytes, so no more than `max`
/// (plus one chunk) is ever held. (`axum::body::to_bytes` caps the size too, but its error does
/// not say whether the cap or the connection failed without a dependency on http-body-util.)
async fn read_capped(body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ReadError::Broken)?;
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Verifies a delivery and acts on it. The order matters: everything that can be refused from
/// the headers is refused before the body is read, the body is read only in one of the
/// [`MAX_DELIVERIES_IN_FLIGHT`] slots and within the read timeout, and only a verified body is
/// parsed.
async fn handle(p: Provider, s: AppState, req: Request) -> Response {
    let Some(cfg) = s.hooks.clone() else {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    };
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if let Err(why) = verify_headers(p, &cfg.secret, &headers) {
        s.hub.count_webhook(p.name(), "unauthorized");
        cfg.log_refusal(p, &why);
        return refuse(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body as u64) {
        s.hub.count_webhook(p.name(), "too_large");
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes\n", cfg.max_body),
        );
    }
    // Held until the body is read and verified; dropped before the nudge, which needs no slot.
    let Ok(Ok(slot)) = tokio::time::timeout(SLOT_WAIT, cfg.in_flight.acquire()).await else {
        s.hub.count_webhook(p.name(), "busy");
        cfg.log_refusal(p, "busy: too many deliveries being read at once");
        let mut resp = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many deliveries at once; retry later\n".into(),
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return resp;
    };
    let body = match tokio::time::timeout(cfg.read_timeout, read_capped(body, cfg.max_body)).await {
        Ok(Ok(body)) => body,
        Ok(Err(ReadError::TooLarge)) => {
            s.hub.count_webhook(p.name(), "too_large");
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes\n", cfg.max_body),
            );
        }
        Ok(Err(ReadError::Broken)) => {
            s.hub.count_webhook(p.name(), "bad_request");
            return refuse(
                StatusCode::BAD_REQUEST,
                "the body could not be read\n".into(),
            );
        }
        Err(_) => {
            s.hub.count_webhook(p.name(), "timeout");
            cfg.log_refusal(
                p,
                "the body did not arrive within webhook_read_timeout_secs",
            );
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s\n",
                    cfg.read_timeout.as_secs()
                ),
            );
        }
    };
    if let Err(why) = verify(p, &cfg.secret, &headers, &body) {
        s.hub.count_webhook(p.name(), "unauthorized");
        cfg.log_refusal(p, &why);
        return text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    drop(slot);
    match decide(p, &headers, &body, &cfg.branch) {
        Ok(Decision::Ping) => {
            s.hub.count_webhook(p.name(), "ping");
            info!(provider = p.name(), "webhook ping");
            text(StatusCode::OK, "pong\n".into())
        }
        Ok(Decision::Nudge) => {
            s.hub.count_webhook(p.name(), "accepted");
            info!(provider = p.name(), branch = %cfg.branch, "webhook: push to the branch; reconcile requested");
            s.hub.set_pending("webhook");
            s.trigger.nudge_for(Why::Webhook { provider: p.name() });
            text(
                StatusCode::ACCEPTED,
                format!("reconcile requested: gitmoor fetches {} now\n", cfg.branch),
            )
        }
        Ok(Decision::Ignore(what)) => {
            s.hub.count_webhook(p.name(), "ignored");
            debug!(provider = p.name(), what = %what, "webhook ignored");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(why) => {
            s.hub.count_webhook(p.name(), "bad_request");
            text(StatusCode::BAD_REQUEST, format!("{why}\n"))
        }
    }
}

// The handlers take the raw request (not a `Bytes` extractor) so that `handle` decides when, and
// whether, the body is read.

pub async fn github(State(s): State<AppState>, req: Request) -> Response {
    handle(Provider::GitHub, s, req).await
}

pub async fn gitea(State(s): State<AppState>, req: Request) -> Response {
    handle(Provider::Gitea, s, req).await
}

pub async fn gitlab(State(s): State<AppState>, req: Request) -> Response {
    handle(Provider::GitLab, s, req).await
}

pub async fn generic(State(s): State<AppState>, req: Request) -> Response {
    handle(Provider::Generic, s, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_documented_example_signature_verifies() {
        // The example from GitHub's "Validating webhook deliveries".
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(SECRET, body), sig);
        let h = headers(&[("x-hub-signature-256", sig)]);
        assert_eq!(verify(Provider::GitHub, SECRET, &h, body), Ok(()));
        assert!(verify(Provider::GitHub, SECRET, &h, b"Hello, World?").is_err());
        assert!(verify(Provider::GitHub, b"other", &h, body).is_err());
    }

    #[test]
    fn each_provider_checks_its_own_header() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign(SECRET, body);
        let hex_only = sig.trim_start_matches("sha256=").to_string();
        let secret_text = std::str::from_utf8(SECRET).unwrap();
        let table: Vec<(Provider, HeaderMap, bool)> = vec![
            (
                Provider::GitHub,
                headers(&[("x-hub-signature-256", &sig)]),
                true,
            ),
            (
                Provider::GitHub,
                headers(&[("x-hub-signature-256", &hex_only)]),
                false,
            ),
            (
                Provider::GitHub,
                headers(&[("x-gitea-signature", &hex_only)]),
                false,
            ),
            (
                Provider::Gitea,
                headers(&[("x-gitea-signature", &hex_only)]),
                true,
            ),
            (
                Provider::Gitea,
                headers(&[("x-gitea-signature", "zz")]),
                false,
            ),
            (
                Provider::GitLab,
                headers(&[("x-gitlab-token", secret_text)]),
                true,
            ),
            (
                Provider::GitLab,
                headers(&[("x-gitlab-token", "It's a Secret")]),
                false,
            ),
            (
                Provider::Generic,
                headers(&[("x-gitmoor-signature-256", &sig)]),
                true,
            ),
            (Provider::Generic, headers(&[]), false),
        ];
        for (p, h, want) in table {
            assert_eq!(verify(p, SECRET, &h, body).is_ok(), want, "{p:?} {h:?}");
        }
        let err = verify(Provider::GitHub, SECRET, &HeaderMap::new(), body).unwrap_err();
        assert_eq!(err, "missing X-Hub-Signature-256");
    }

    #[test]
    fn only_a_push_to_the_branch_nudges() {
        let push = |r: &str| format!(r#"{{"ref":"{r}","after":"0123","commits":[]}}"#);
        let gh = |ev: &str| headers(&[("x-github-event", ev)]);
        let d = |p, h: &HeaderMap, b: &str| decide(p, h, b.as_bytes(), "main");
        assert_eq!(
            d(Provider::GitHub, &gh("push"), &push("refs/heads/main")),
            Ok(Decision::Nudge)
        );
        assert!(matches!(
            d(Provider::GitHub, &gh("push"), &push("refs/heads/dev")),
            Ok(Decision::Ignore(_))
        ));
        assert!(matches!(
            d(Provider::GitHub, &gh("push"), &push("refs/tags/main")),
            Ok(Decision::Ignore(_))
        ));
        assert_eq!(d(Provider::GitHub, &gh("ping"), "{}"), Ok(Decision::Ping));
        assert!(matches!(
            d(Provider::GitHub, &gh("issues"), "{}"),
            Ok(Decision::Ignore(_))
        ));
        assert!(d(Provider::GitHub, &gh("push"), "not json").is_err());
        let gl = headers(&[("x-gitlab-event", "Push Hook")]);
        assert_eq!(
            d(Provider::GitLab, &gl, &push("refs/heads/main")),
            Ok(Decision::Nudge)
        );
        let gl_tag = headers(&[("x-gitlab-event", "Tag Push Hook")]);
        assert!(matches!(
            d(Provider::GitLab, &gl_tag, &push("refs/tags/v1")),
            Ok(Decision::Ignore(_))
        ));
        let gt = headers(&[("x-gitea-event", "push")]);
        assert_eq!(
            d(Provider::Gitea, &gt, &push("refs/heads/main")),
            Ok(Decision::Nudge)
        );
        let none = HeaderMap::new();
        assert_eq!(d(Provider::Generic, &none, ""), Ok(Decision::Nudge));
        assert_eq!(
            d(Provider::Generic, &none, r#"{"ref":"main"}"#),
            Ok(Decision::Nudge)
        );
        assert!(matches!(
            d(Provider::Generic, &none, r#"{"ref":"refs/heads/x"}"#),
            Ok(Decision::Ignore(_))
        ));
        // GitHub's form-encoded deliveries carry the JSON in `payload`.
        let form = headers(&[
            ("x-github-event", "push"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        let body = "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D";
        assert_eq!(d(Provider::GitHub, &form, body), Ok(Decision::Nudge));
    }

    #[test]
    fn percent_decoding_keeps_what_it_cannot_read() {
        assert_eq!(percent_decode(b"a%20b+c"), b"a b c");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn a_missing_or_empty_secret_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |file: &std::path::Path| {
            Config::parse(
                &format!("repo: x\nwebhook_secret_file: {}\n", file.display()),
                std::path::Path::new("/c.yaml"),
            )
            .unwrap()
        };
        let missing = dir.path().join("nope");
        let err = format!("{:#}", HookConfig::from_config(&cfg(&missing)).unwrap_err());
        assert!(
            err.contains("webhook_secret_file") && err.contains("nope"),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = format!("{:#}", HookConfig::from_config(&cfg(&empty)).unwrap_err());
        assert!(err.contains("is empty"), "{err}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cret\r\n").unwrap();
        let h = HookConfig::from_config(&cfg(&ok)).unwrap().unwrap();
        assert_eq!(h.secret, b"s3cret");
        let none = Config::parse("repo: x\n", std::path::Path::new("/c.yaml")).unwrap();
        assert!(HookConfig::from_config(&none).unwrap().is_none());
    }

    #[test]
    fn what_the_headers_alone_can_refuse_is_refused_before_the_body() {
        let gl = |t: &str| headers(&[("x-gitlab-token", t)]);
        let secret_text = std::str::from_utf8(SECRET).unwrap();
        assert_eq!(
            verify_headers(Provider::GitLab, SECRET, &gl(secret_text)),
            Ok(())
        );
        assert_eq!(
            verify_headers(Provider::GitLab, SECRET, &gl("guess")),
            Err("bad X-Gitlab-Token".into())
        );
        assert_eq!(
            verify_headers(Provider::GitHub, SECRET, &HeaderMap::new()),
            Err("missing X-Hub-Signature-256".into())
        );
        // An HMAC needs the body: a present header passes here and is checked after the read.
        let gh = headers(&[("x-hub-signature-256", "sha256=00")]);
        assert_eq!(verify_headers(Provider::GitHub, SECRET, &gh), Ok(()));
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_its_limit_and_no_further() {
        let body = || Body::from(vec![b'x'; 10]);
        assert_eq!(read_capped(body(), 10).await.map(|b| b.len()), Ok(10));
        assert_eq!(read_capped(body(), 9).await, Err(ReadError::TooLarge));
        // In chunks, whatever Content-Length said: refused at the chunk that crosses the limit,
        // before the endless rest is awaited.
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"12345")),
            Ok(Bytes::from_static(b"67890")),
        ])
        .chain(futures_util::stream::pending());
        assert_eq!(
            read_capped(Body::from_stream(chunks), 8).await,
            Err(ReadError::TooLarge)
        );
        let broken =
            futures_util::stream::iter(vec![Err::<Bytes, _>(std::io::Error::other("reset"))]);
        assert_eq!(
            read_capped(Body::from_stream(broken), 8).await,
            Err(ReadError::Broken)
        );
    }

    /// The app state with hooks configured (`read_timeout` short), and its hook config.
    fn app(read_timeout: Duration) -> (AppState, Arc<HookConfig>) {
        let cfg = Config::parse("repo: x\n", std::path::Path::new("/c.yaml")).unwrap();
        let hooks = Arc::new(HookConfig::new(SECRET.to_vec(), "main", 1024, read_timeout));
        let state = AppState {
            hub: Arc::new(crate::status::StatusHub::new(&cfg)),
            trigger: crate::trigger::Trigger::default(),
            hooks: Some(hooks.clone()),
            refresh_secs: 10,
        };
        (state, hooks)
    }

    /// A delivery whose body never ends: what a sender that stalls looks like to the handler.
    fn stalled(path: &str, pairs: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method("POST").uri(path);
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        b.body(Body::from_stream(never)).unwrap()
    }

    #[tokio::test]
    async fn a_stalled_body_is_refused_without_waiting_when_the_headers_suffice() {
        let (s, _) = app(Duration::from_secs(3600));
        let wrong_token = stalled(
            "/hooks/gitlab",
            &[("x-gitlab-token", "guess"), ("content-length", "99999999")],
        );
        let resp = handle(Provider::GitLab, s.clone(), wrong_token).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let unsigned = stalled("/hooks/github", &[("x-github-event", "push")]);
        let resp = handle(Provider::GitHub, s.clone(), unsigned).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let too_big = stalled(
            "/hooks/github",
            &[
                ("x-hub-signature-256", "sha256=00"),
                ("content-length", "1025"),
            ],
        );
        let resp = handle(Provider::GitHub, s, too_big).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_and_gives_its_slot_back() {
        let (s, hooks) = app(Duration::from_millis(50));
        let sig = [("x-hub-signature-256", "sha256=00")];
        let resp = handle(Provider::GitHub, s.clone(), stalled("/hooks/github", &sig)).await;
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            hooks.in_flight.available_permits(),
            MAX_DELIVERIES_IN_FLIGHT
        );
        let counters = s.hub.counters();
        assert_eq!(
            counters.webhooks.get(&("github".into(), "timeout".into())),
            Some(&1)
        );
    }

    #[tokio::test]
    async fn a_delivery_beyond_the_slots_is_busy_after_a_short_wait() {
        let (s, hooks) = app(Duration::from_secs(3600));
        let held = hooks
            .in_flight
            .try_acquire_many(MAX_DELIVERIES_IN_FLIGHT as u32)
            .unwrap();
        let sig = [("x-hub-signature-256", "sha256=00")];
        let started = std::time::Instant::now();
        let resp = handle(Provider::GitHub, s.clone(), stalled("/hooks/github", &sig)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["retry-after"], "5");
        assert!(started.elapsed() >= SLOT_WAIT);
        let body = br#"{"zen":"hi"}"#;
        let ping = || {
            Request::builder()
                .method("POST")
                .uri("/hooks/github")
                .header("x-github-event", "ping")
                .header("x-hub-signature-256", sign(SECRET, body))
                .body(Body::from(&body[..]))
                .unwrap()
        };
        // A slot that frees up within the wait lets the waiting delivery in.
        let (resp, ()) = tokio::join!(handle(Provider::GitHub, s.clone(), ping()), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        });
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = handle(Provider::GitHub, s, ping()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let h = HookConfig::new(
            b"hunter2-secret".to_vec(),
            "main",
            1024,
            Duration::from_secs(10),
        );
        assert!(!format!("{h:?}").contains("hunter2"));
    }
}
