//! Signing in and out, the session cookie, and the checks every console action passes.
//!
//! The session is the API token itself, kept by the browser in a cookie the page's
//! scripts cannot read (`HttpOnly`), that is never sent with a request another site
//! starts (`SameSite=Strict`), only over TLS when the server serves TLS (`Secure`), and
//! only to `/ui` (`Path`). The server keeps no session state: any replica serves any
//! request, and revoking the token (`meridian token revoke`) ends every console session
//! that used it at its next request, as it ends the API's.
//!
//! Every POST is checked twice against cross-site request forgery: the request must come
//! from this origin (`Origin`, or `Sec-Fetch-Site`, when the browser sends them), and it
//! must carry the session's CSRF token (the form field `csrf` or the `X-CSRF-Token`
//! header). That token is derived from the session token with SHA-256 under a label of
//! its own: another site can neither read it from our pages nor compute it without the
//! session token, and the server needs nothing stored to check it.

use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::backend::{Backend, UiError};
use super::{UiState, page};
use crate::auth::{Principal, Role};

/// The session cookie's name.
pub const COOKIE: &str = "meridian_console";

/// A signed-in browser: who it is, the API as that principal, and its CSRF token.
#[derive(Clone)]
pub struct Session {
    pub who: Principal,
    pub api: Backend,
    pub csrf: String,
}

impl Session {
    /// Refuses a POST that lacks the session's CSRF token (its origin is checked for
    /// every console POST by [`super::same_origin`]).
    pub fn check_post(&self, headers: &HeaderMap, form_token: Option<&str>) -> Result<(), UiError> {
        let sent = form_token.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        match sent {
            Some(t) if digest(t) == digest(&self.csrf) => Ok(()),
            Some(_) => Err(csrf_refused(
                "the form's CSRF token does not match this session",
            )),
            None => Err(csrf_refused("the request carries no CSRF token")),
        }
    }
}

fn csrf_refused(why: &str) -> UiError {
    UiError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{why}: reload the page and try again (the console refuses actions that may come from another site)"
        ),
    )
}

/// Compared as digests, so the comparison takes the same time whatever the input.
fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The CSRF token of a session token.
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"meridian console csrf v1\0");
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

/// The request's origin is this server's, as far as the browser says (a client that
/// sends neither header is not a browser, which cross-site forgery needs). `authority`
/// is the request's `Host` header or, in HTTP/2, its `:authority`.
pub fn check_origin(headers: &HeaderMap, authority: Option<&str>) -> Result<(), UiError> {
    let refused = |what: &str| {
        UiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{what}: the console accepts actions only from its own pages"),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refused(&format!("a {site} request")));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or(authority)
            .unwrap_or_default();
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or_default();
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(refused(&format!("a request from origin {origin:?}")));
        }
    }
    Ok(())
}

/// The session token in the `Cookie` header, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Why there is no session: pages send the browser to the sign-in page, streams and
/// scripts get a 401.
pub struct SignInFirst {
    next: String,
    page: bool,
    message: &'static str,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        if self.page {
            let to = format!(
                "/ui/login{}",
                super::backend::paths::query(&[("next", Some(&self.next))])
            );
            Redirect::to(&to).into_response()
        } else {
            UiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", self.message).into_response()
        }
    }
}

impl FromRequestParts<UiState> for Session {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, SignInFirst> {
        let page = parts.method == axum::http::Method::GET
            && parts
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
        let next = parts
            .uri
            .path_and_query()
            .map_or("/ui", |p| p.as_str())
            .to_owned();
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(SignInFirst {
                next,
                page,
                message: "not signed in: sign in at /ui/login",
            });
        };
        match state.app.tokens.authenticate(&token) {
            Some(who) if who.role != Role::Node => Ok(Session {
                who,
                csrf: csrf_token(&token),
                api: Backend::new(state.api.clone(), token),
            }),
            _ => Err(SignInFirst {
                next,
                page,
                message: "the session's token is not valid any more (revoked?): sign in again",
            }),
        }
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only console paths are places to go after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/") || n.starts_with("/ui?"))
                && !n.contains('\\') =>
        {
            n.to_owned()
        }
        _ => "/ui".to_owned(),
    }
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    login_form(&safe_next(q.next.as_deref()), None, StatusCode::OK)
}

fn login_form(next: &str, error: Option<&str>, code: StatusCode) -> Response {
    let body = html! {
        section.signin aria-labelledby="signin-title" {
            h1 #signin-title { "Sign in to Meridian" }
            p { "Use an API token, as with " code { "meridian login" } " or " code { "kubectl --token" } ". "
                "An admin creates one with " code { "meridian token create --role viewer" } "." }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" required autocomplete="off" spellcheck="false" autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    (code, page::document("Sign in", None, page::Nav::None, body)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    match state.app.tokens.authenticate(token) {
        None => login_form(
            &next,
            Some("The token is not valid (unknown or revoked)."),
            StatusCode::UNAUTHORIZED,
        ),
        Some(who) if who.role == Role::Node => login_form(
            &next,
            Some("A node credential belongs to an agent and cannot sign in to the console."),
            StatusCode::FORBIDDEN,
        ),
        Some(_) => {
            let mut response = Redirect::to(&next).into_response();
            let cookie = format!(
                "{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{}",
                if state.app.tls { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

pub async fn logout(
    State(state): State<UiState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = session.check_post(&headers, form.csrf.as_deref()) {
        return e.into_response();
    }
    let mut response = Redirect::to("/ui/login").into_response();
    let cookie = format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if state.app.tls { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("a header value"));
        }
        h
    }

    #[test]
    fn only_console_paths_are_places_to_go_after_sign_in() {
        assert_eq!(safe_next(Some("/ui/nodes?site=x")), "/ui/nodes?site=x");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for hostile in [
            "//evil.example/ui",
            "https://evil.example/",
            "/uix",
            "/ui\\..\\",
            "/apis",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/ui", "{hostile}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn origin_must_be_this_host() {
        let host = Some("127.0.0.1:7420");
        assert!(check_origin(&headers(&[]), host).is_ok(), "not a browser");
        assert!(check_origin(&headers(&[("origin", "https://127.0.0.1:7420")]), host).is_ok());
        assert!(
            check_origin(
                &headers(&[
                    ("origin", "https://127.0.0.1:7420"),
                    ("host", "127.0.0.1:7420")
                ]),
                None
            )
            .is_ok()
        );
        for bad in ["https://evil.example", "null", "https://127.0.0.1:7421"] {
            assert!(
                check_origin(&headers(&[("origin", bad)]), host).is_err(),
                "{bad}"
            );
        }
        assert!(check_origin(&headers(&[("sec-fetch-site", "cross-site")]), host).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-site")]), host).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-origin")]), host).is_ok());
    }

    #[test]
    fn csrf_token_is_per_session_and_not_the_token() {
        let a = csrf_token("mrd_a");
        assert_eq!(a, csrf_token("mrd_a"));
        assert_ne!(a, csrf_token("mrd_b"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("mrd_a"));
        assert_ne!(a, crate::auth::hash_token("mrd_a"), "not the stored digest");
    }
}
