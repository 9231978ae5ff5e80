//! The console's way to the API: every read and action is a request to the API's own
//! router, in process, with the signed-in token as its bearer. Authentication,
//! authorization (roles, project scope, node restrictions), selectors, pagination,
//! admission and the audit log are therefore the API's, not a second implementation, and
//! an error the console shows is the API's `Status` message, word for word.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

/// An API error as the console shows it: the API's status code and message.
#[derive(Debug, Clone)]
pub struct UiError {
    pub code: StatusCode,
    pub reason: String,
    pub message: String,
}

impl UiError {
    pub fn new(code: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn is_not_found(&self) -> bool {
        self.code == StatusCode::NOT_FOUND
    }
}

/// The API, called as one principal.
#[derive(Clone)]
pub struct Backend {
    api: Router,
    token: String,
}

impl Backend {
    pub fn new(api: Router, token: String) -> Self {
        Self { api, token }
    }

    /// Sends a request and returns the response as the API gave it (streams stay
    /// streams: logs, watches).
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Response, UiError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| UiError::bad_request(format!("cannot build the request: {e}")))?;
        let response = self
            .api
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| UiError::internal(format!("the API did not answer: {e}")))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_of(response).await)
        }
    }

    /// A JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Value, UiError> {
        let response = self.raw(method, path_and_query, body).await?;
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| UiError::internal(format!("cannot read the API's answer: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| UiError::internal(format!("the API's answer is not JSON: {e}")))
    }

    pub async fn get(&self, path_and_query: &str) -> Result<Value, UiError> {
        self.json(Method::GET, path_and_query, None).await
    }

    /// A typed answer (the `api` crate's types, so a renamed field fails to compile).
    pub async fn get_as<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, UiError> {
        let value = self.get(path_and_query).await?;
        serde_json::from_value(value)
            .map_err(|e| UiError::internal(format!("unexpected answer from {path_and_query}: {e}")))
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, UiError> {
        self.json(
            Method::PATCH,
            path,
            Some((
                "application/merge-patch+json",
                patch.to_string().into_bytes(),
            )),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, UiError> {
        self.json(
            Method::POST,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, UiError> {
        self.json(Method::DELETE, path, None).await
    }
}

/// The API's `Status` body of a failed response, kept as it is.
async fn error_of(response: Response) -> UiError {
    let code = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    match serde_json::from_slice::<api::Status>(&bytes) {
        Ok(status) => UiError {
            code,
            reason: status.reason,
            message: status.message,
        },
        Err(_) => UiError::new(
            code,
            code.canonical_reason().unwrap_or("Error"),
            String::from_utf8_lossy(&bytes).trim().to_owned(),
        ),
    }
}

/// API paths, built from parts that are percent-encoded (a name cannot add a segment or
/// a query).
pub mod paths {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

    /// Everything but RFC 3986's unreserved characters.
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    pub fn enc(s: &str) -> String {
        utf8_percent_encode(s, COMPONENT).to_string()
    }

    /// `/apis/meridian.dev/v1[/namespaces/{ns}]/{plural}[/{name}]`.
    pub fn object(kind: &api::KindInfo, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = String::from("/apis/meridian.dev/v1");
        if let Some(ns) = namespace {
            path.push_str("/namespaces/");
            path.push_str(&enc(ns));
        }
        path.push('/');
        path.push_str(kind.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(&enc(name));
        }
        path
    }

    /// A query string from pairs, empty values left out (`?a=1&b=2`, or nothing).
    pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
        let parts: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| {
                v.filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", enc(v)))
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

impl Backend {
    /// Every object of a list, page after page (the API's `limit` and `continue`).
    pub async fn list_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, UiError> {
        self.list_all_at(path).await.map(|(items, _)| items)
    }

    /// Like [`Backend::list_all`], with the first page's resource version: where a watch
    /// of the same objects starts so that it misses nothing the list did not show.
    pub async fn list_all_at<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(Vec<T>, Option<String>), UiError> {
        let mut items = Vec::new();
        let mut revision: Option<String> = None;
        let mut next: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &next {
                Some(c) => format!("{path}{sep}limit=5000&continue={}", paths::enc(c)),
                None => format!("{path}{sep}limit=5000"),
            };
            let page: api::List<T> = self.get_as(&page_path).await?;
            items.extend(page.items);
            if revision.is_none() {
                revision = page.metadata.resource_version;
            }
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => next = Some(c),
                _ => return Ok((items, revision)),
            }
        }
    }
}
