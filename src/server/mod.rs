//! The status server (axum): `/health`, `/status`, the status page `/`, `/metrics`, and the
//! webhooks `/hooks/{github,gitea,gitlab,generic}` when a webhook secret is configured.
//!
//! It only reads the status hub and nudges the daemon: no request calls Docker or Git, and no
//! webhook chooses what is deployed (it asks for a fetch of the configured branch, nothing else).
//!
//! Exposure: only `/hooks/` is meant to be public (the forges must reach it, and `hooks` bounds
//! what an unauthenticated sender can cost). `/`, `/status` and `/metrics` show error messages,
//! file paths and the repo URL, so they belong behind authentication or an allow-list in the
//! Nginx in front; docs/status.md gives the configuration.

pub mod client;
pub mod hooks;
pub mod metrics;
pub mod page;
pub mod text;

use crate::status::StatusHub;
use crate::trigger::Trigger;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<StatusHub>,
    pub trigger: Trigger,
    /// None: no webhook routes at all.
    pub hooks: Option<Arc<hooks::HookConfig>>,
    /// The status page's meta refresh.
    pub refresh_secs: u64,
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/status", get(status_json))
        .route("/", get(status_page))
        .route("/metrics", get(metrics_text));
    if state.hooks.is_some() {
        // No `DefaultBodyLimit` layer: the hook handlers take the raw request and read the body
        // themselves, capped in size, time and concurrency (see `hooks`).
        r = r.merge(
            Router::new()
                .route("/hooks/github", post(hooks::github))
                .route("/hooks/gitea", post(hooks::gitea))
                .route("/hooks/gitlab", post(hooks::gitlab))
                .route("/hooks/generic", post(hooks::generic)),
        );
    }
    r.fallback(not_found).with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
///
/// `axum::serve` sets no read timeout on request headers (hyper's `header_read_timeout` needs a
/// timer that `axum::serve` does not configure, and it offers no way to set one), so a client
/// that sends its headers slowly holds a connection here. The server listens on loopback by
/// default and is meant to be reached through Nginx, whose `client_header_timeout` and
/// `client_body_timeout` bound slow clients before they reach it (docs/status.md).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "the status server stopped");
    }
}

fn with_type(mut resp: Response, content_type: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn health(State(s): State<AppState>) -> Response {
    match s.hub.health() {
        Ok(()) => with_type("ok\n".into_response(), "text/plain; charset=utf-8"),
        Err(why) => with_type(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {why}\n"),
            )
                .into_response(),
            "text/plain; charset=utf-8",
        ),
    }
}

async fn status_json(State(s): State<AppState>) -> Response {
    match serde_json::to_vec_pretty(&s.hub.doc()) {
        Ok(body) => with_type(body.into_response(), "application/json"),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn status_page(State(s): State<AppState>) -> Response {
    let html = page::render(&s.hub.doc(), s.refresh_secs, chrono::Utc::now().timestamp());
    let mut resp = with_type(html.into_response(), "text/html; charset=utf-8");
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let body = metrics::render_view(&s.hub.metric_view());
    with_type(
        body.into_response(),
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

async fn not_found() -> Response {
    with_type(
        (StatusCode::NOT_FOUND, "not found\n").into_response(),
        "text/plain; charset=utf-8",
    )
}
