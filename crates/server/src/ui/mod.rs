//! The web console at `/ui/`: server-rendered HTML for people who do not open a terminal
//! (auditors, on-call engineers, managers), served by the API server on its port, with
//! its TLS.
//!
//! Trust: the console is a client of the API that happens to run in the same process.
//! A browser signs in with an API token (`session.rs`: an `HttpOnly`, `SameSite=Strict`
//! cookie, `Secure` under TLS; CSRF checks on every POST), and every read and action is a
//! request to the API's router with that token as its bearer (`backend.rs`). So the
//! console has no authorization of its own: what a viewer or a project-scoped token may
//! see and do is decided by `auth::authorize` in the API's handlers, and a refused action
//! shows the API's message. The console only asks `authorize` beforehand whether to show
//! an action's button at all.
//!
//! Pages: `estate.rs` (sites by jurisdiction and bloc, capacity, node counts),
//! `workloads.rs` (list with filters and the API's continue tokens, detail with
//! instances, rollout, events and the placement explanation; instance detail with logs),
//! `nodes.rs` (list, detail, cordon and drain), `compliance.rs` (frameworks, policies,
//! findings, the OSCAL report; the audit log and its chain). `live.rs` streams rows that
//! changed (server-sent events fed by the API's watch). Assets (`assets/`) are compiled
//! into the binary; no CDN, no JavaScript toolchain.

pub(crate) mod backend;
mod compliance;
mod estate;
mod live;
mod migrations;
mod nodes;
mod page;
mod queues;
mod residency;
mod session;
mod workload_actions;
mod workloads;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::app::AppState;

/// What the console's handlers share: the server's state and the API's router (with its
/// authentication layer), which the console calls as the signed-in principal.
#[derive(Clone)]
pub struct UiState {
    pub app: AppState,
    pub api: Router,
}

const CSS_PATH: &str = "/ui/assets/console.css";
const JS_PATH: &str = "/ui/assets/console.js";
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes; `api` is the API router the console calls.
pub fn routes(state: &AppState, api: Router) -> Router<AppState> {
    let ui = UiState {
        app: state.clone(),
        api,
    };
    Router::new()
        .route("/", get(root))
        .route("/ui", get(estate::overview))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/workloads", get(workloads::list))
        .route(
            "/ui/namespaces/{ns}/workloads/{name}",
            get(workloads::detail),
        )
        .route(
            "/ui/namespaces/{ns}/workloads/{name}/{action}",
            post(workload_actions::act),
        )
        .route(
            "/ui/namespaces/{ns}/allocations/{name}",
            get(workloads::instance),
        )
        .route(
            "/ui/namespaces/{ns}/allocations/{name}/log",
            get(workloads::log),
        )
        .route("/ui/nodes", get(nodes::list))
        .route("/ui/nodes/{name}", get(nodes::detail))
        .route("/ui/nodes/{name}/cordon", post(nodes::cordon))
        .route("/ui/nodes/{name}/uncordon", post(nodes::uncordon))
        .route("/ui/nodes/{name}/drain", post(nodes::drain))
        .route("/ui/queues", get(queues::list))
        .route("/ui/queues/{name}", get(queues::detail))
        .route("/ui/residency", get(residency::view))
        .route("/ui/migrations", get(migrations::list))
        .route(
            "/ui/namespaces/{ns}/migrationplans/{name}",
            get(migrations::detail),
        )
        .route("/ui/compliance", get(compliance::overview))
        .route("/ui/compliance/report", get(compliance::report))
        .route("/ui/audit", get(compliance::audit))
        .route("/ui/live/{plural}", get(live::stream))
        .route(CSS_PATH, get(css))
        .route(JS_PATH, get(js))
        .layer(middleware::from_fn(same_origin))
        .layer(middleware::from_fn(security_headers))
        .with_state(ui)
}

/// Whether a console path streams (live updates, followed logs): exempt from the
/// per-request time limit, as the API's watches are.
pub fn is_stream(path: &str) -> bool {
    path.starts_with("/ui/live/") || (path.starts_with("/ui/namespaces/") && path.ends_with("/log"))
}

/// `GET /`: browsers go to the console; API clients keep the API's 404 `Status`.
async fn root(req: Request) -> Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        Redirect::to("/ui/").into_response()
    } else {
        crate::error::ApiError::not_found_path(req.uri().path()).into_response()
    }
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Every console POST (sign-in included, against login forgery) must come from the
/// console's own pages; a session's POSTs also carry its CSRF token
/// ([`session::Session::check_post`]).
async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::POST
        && let Err(e) =
            session::check_origin(req.headers(), req.uri().authority().map(|a| a.as_str()))
    {
        return e.into_response();
    }
    next.run(req).await
}

/// Headers on every console response: a strict content security policy (only this
/// origin's script and style; no inline script, no framing), no MIME sniffing, no
/// caching of pages that hold estate data.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
