//! Shared state, the router, and the middleware every request passes (authentication,
//! metrics, per-request timeout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::auth::{Principal, TokenCache};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::{
    admin, backup, core_endpoints, core_events, discovery, events, leader, namespaces, nodes,
    objects, openapi_v2, placement_api, policy_api, queue_api,
};

/// Limits on what one request may ask.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted request body (413 beyond).
    pub max_body_bytes: usize,
    /// Largest page a list returns, whatever `limit` asks.
    pub max_page: usize,
    /// Time limit of every request but watches (504 beyond).
    pub request_timeout: Duration,
    /// Longest watch before the server closes it (clients re-watch).
    pub max_watch: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 3 * 1024 * 1024,
            max_page: 5_000,
            request_timeout: Duration::from_secs(60),
            max_watch: Duration::from_secs(30 * 60),
        }
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub tokens: TokenCache,
    pub metrics: Metrics,
    pub limits: Arc<Limits>,
    /// Cancelled when the server shuts down; watches end on it.
    pub shutdown: CancellationToken,
    /// Decoded watch events shared by every watcher.
    pub watch_cache: Arc<crate::watch_cache::EventCache>,
    /// The one store watch API watches share (see [`crate::watch_hub`]).
    pub watch_hub: Arc<crate::watch_hub::WatchHub>,
    /// Compiled policies, fleet context and audit findings.
    pub policies: Arc<crate::policies::PolicyEngine>,
    /// Node leases renewed by agents' heartbeats.
    pub nodes: Arc<crate::nodes::NodeLeases>,
    /// The event recorder: `state.events.record(...)` (see [`crate::events`]).
    pub events: crate::events::Recorder,
    /// The keys that seal Secret values (see [`crate::secrets`]).
    pub secrets: Arc<crate::secrets::Secrets>,
    /// The generated CA's certificate (PEM), served unauthenticated at
    /// [`CA_PATH`] for `meridian login`; `None` with `--tls-cert` or `--insecure-http`.
    pub ca_pem: Option<Arc<[u8]>>,
    /// Whether this server leads the controllers (see [`crate::leader`]).
    pub leadership: Arc<crate::leader::Leadership>,
    /// The server's data directory (backups are staged in it).
    pub data_dir: Arc<std::path::PathBuf>,
    /// Held while a backup is taken (one at a time).
    pub backup_lock: Arc<tokio::sync::Mutex<()>>,
    /// Log sessions waiting for or served by agents (see [`crate::logs`]).
    pub log_sessions: Arc<crate::logs::LogSessions>,
    /// The HTTP client that relays log sessions to other servers, made on first use.
    pub relay_http: Arc<std::sync::OnceLock<reqwest::Client>>,
    /// Whether connections are TLS (the console marks its cookie `Secure` then).
    pub tls: bool,
}

impl AppState {
    /// The client for relaying to other servers: it trusts the generated CA (which the
    /// servers of one store share), else the system's roots.
    pub fn relay_client(&self) -> Result<reqwest::Client, String> {
        if let Some(c) = self.relay_http.get() {
            return Ok(c.clone());
        }
        let tls = client::tls_config(self.ca_pem.as_deref()).map_err(|e| e.to_string())?;
        let built = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(self.relay_http.get_or_init(|| built).clone())
    }

    /// Reads of the store. Writes go through `registry` ([`Registry::commit`]).
    pub fn store(&self) -> &Arc<crate::registry::ReadView> {
        self.registry.reads()
    }
}

/// Build the router with all routes and middleware.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(discovery::routes())
        .merge(openapi_v2::routes())
        .merge(objects::routes())
        .merge(admin::routes())
        .merge(leader::routes())
        .merge(queue_api::routes())
        .merge(backup::routes())
        .merge(namespaces::routes())
        .merge(core_events::routes())
        .merge(core_endpoints::routes())
        .merge(events::routes())
        .merge(placement_api::routes())
        .merge(policy_api::routes())
        .merge(crate::residency::routes())
        .merge(nodes::routes())
        .merge(crate::logs::routes(state.log_sessions.clone()))
        .merge(crate::secrets::endpoints::routes())
        .route("/metrics", get(metrics));
    // Endpoints made of other API requests (in process, with the caller's token) call
    // the routes above, authenticated.
    let inner = api
        .clone()
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone());
    let api = api
        .merge(crate::drain::routes(inner))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .route(CA_PATH, get(ca_certificate))
        .merge(nodes::public_routes())
        .merge(crate::ui::routes(
            &state,
            api.clone().with_state(state.clone()),
        ))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Where the generated CA's certificate is served, without authentication (like
/// Kubernetes' `kube-public/cluster-info`): public by nature, static bytes, nothing to
/// compute before the (absent) permission check. A client fetching it cannot yet trust
/// the connection, so it must compare the certificate's fingerprint with the one the
/// server logs at start (`meridian login` does).
pub const CA_PATH: &str = "/meridian/v1/ca.crt";

async fn ca_certificate(State(state): State<AppState>) -> Response {
    match &state.ca_pem {
        Some(pem) => (
            [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem.to_vec(),
        )
            .into_response(),
        None => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NotFound",
            "this server has no generated CA (it serves the operator's --tls-cert, or plain \
             HTTP): ask its operator for the CA that signed its certificate (--ca-file)",
        )
        .into_response(),
    }
}

async fn health() -> &'static str {
    "ok"
}

/// Not ready while shutting down, when the store is unreachable, or when it refuses writes
/// for lack of disk space (503 with the store's message; `/healthz` and `/livez` stay ok:
/// the process is fine and serves reads and deletes).
async fn ready(State(state): State<AppState>) -> Response {
    if let Some(no_space) = state.store().space().no_space {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "InsufficientStorage",
            no_space.to_string(),
        )
        .into_response();
    }
    match state.store().current_revision().await {
        Ok(_) if !state.shutdown.is_cancelled() => "ok".into_response(),
        Ok(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "shutting down",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.observe_store_space(&state.store().space());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found_path(req.uri().path())
}

/// Bearer-token authentication. Puts the [`Principal`] into the request extensions.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match crate::auth::bearer_token(req.headers()) {
        None => {
            return ApiError::unauthorized(
                "no bearer token: pass one with MERIDIAN_TOKEN, `meridian login`, or kubectl --token",
            )
            .into_response();
        }
        Some(token) => state.tokens.authenticate(token),
    };
    match principal {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => ApiError::unauthorized("the bearer token is not valid (unknown or revoked)")
            .into_response(),
    }
}

/// Metrics by route template, and the per-request timeout (watches excepted).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let is_watch = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch")
    }) || crate::logs::is_upload(req.uri().path())
        || crate::ui::is_stream(req.uri().path())
        || req.uri().path() == crate::backup::PATH;
    let response = if is_watch {
        next.run(req).await
    } else {
        match tokio::time::timeout(state.limits.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::timeout(format!(
                "the request did not complete within {}s",
                state.limits.request_timeout.as_secs()
            ))
            .into_response(),
        }
    };
    let response = as_status(response, &state.limits).await;
    state.metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Every error answers a Kubernetes `Status`: errors raised by axum's extractors and
/// layers (a query parameter that does not parse, a path that is not UTF-8, a body over
/// the limit) come as text; they are rewrapped here, keeping their code and message.
async fn as_status(response: Response, limits: &Limits) -> Response {
    use axum::http::{StatusCode, header::CONTENT_TYPE};
    let code = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // The console's error pages (`ui`) are HTML for people, and stay so.
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(code.is_client_error() || code.is_server_error()) || is_json {
        return response;
    }
    if code == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large(format!(
            "the request body is larger than the limit of {} bytes",
            limits.max_body_bytes
        ))
        .into_response();
    }
    // Extractor rejections are a line of text; anything longer is cut.
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::UNPROCESSABLE_ENTITY => "Invalid",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        c if c.is_server_error() => "InternalError",
        _ => "BadRequest",
    };
    let message = if text.is_empty() {
        code.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::new(code, reason, message).into_response()
}

/// Extract the authenticated principal (set by [`authenticate`]).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("not authenticated"))
    }
}
