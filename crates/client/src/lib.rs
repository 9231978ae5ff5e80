//! Typed HTTP client for Meridian's API, shared by the CLI, the agent and the tests.
//!
//! It speaks the Kubernetes dialect the server serves: objects travel as JSON, errors come
//! back as `Status` objects and surface as [`ClientError::Api`], watches are streams of
//! [`api::WatchEvent`]s. The client does no file I/O: callers pass the CA certificate's PEM.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use api::{KindInfo, Status, WatchEvent};

mod logs;
pub mod unverified;
pub use logs::{ByteStream, LogOptions, log_path};

/// HTTP methods, for [`Client::request_json`].
pub use reqwest::Method;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a `Status` (4xx or 5xx).
    #[error("{}", .0.message)]
    Api(Box<Status>),
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the Meridian server at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The client configuration is unusable.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// HTTP status code of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether the user can fix the cause (bad input, not found, denied): a 4xx.
    pub fn is_user_error(&self) -> bool {
        matches!(self.code(), Some(c) if (400..500).contains(&c))
            || matches!(self, ClientError::Config(_))
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The events of a watch, in order. The stream ends when the server closes it.
pub type WatchEvents = std::pin::Pin<Box<dyn Stream<Item = Result<WatchEvent<Value>>> + Send>>;

/// The events of a watch undecoded, one JSON line each (see [`Client::watch_lines`]).
pub type WatchLines = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Options of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_bookmarks: bool,
}

/// How a PATCH body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// RFC 6902 JSON patch.
    Json,
    /// Create-or-update of a whole manifest.
    Apply,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// What `apply` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'%')
    .add(b'"')
    .add(b'<')
    .add(b'>');
const QUERY: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+').add(b',').add(b'!');

/// One path segment, percent-encoded (a name cannot add a segment or a query).
pub fn path_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The text of a `Warning` header value: `299 - "text"` gives `text`.
pub fn warning_text(value: &str) -> &str {
    let rest = value.trim();
    let rest = rest
        .strip_prefix("299")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('-'))
        .map(str::trim_start)
        .unwrap_or(rest);
    rest.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(rest)
}

/// The path of a collection or an object.
pub fn resource_path(kind: &KindInfo, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut path = String::from("/apis/meridian.dev/v1");
    if let (true, Some(ns)) = (kind.namespaced(), namespace) {
        path.push_str("/namespaces/");
        path.push_str(&path_segment(ns));
    }
    path.push('/');
    path.push_str(kind.plural);
    if let Some(name) = name {
        path.push('/');
        path.push_str(&path_segment(name));
    }
    path
}

/// TLS that trusts `ca_pem` (a private CA's PEM certificates) or, without it, the
/// system's roots.
pub fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| {
                    ClientError::Config(format!("the CA certificate is not valid PEM: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    ClientError::Config(format!("the CA certificate is not usable: {e}"))
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Config(format!("TLS setup failed: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Called with the text of every `Warning` header the server sends (admission warnings
/// of `warn` policies), as kubectl's warning handler.
pub type WarningHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// A Meridian API client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    warnings: Option<WarningHandler>,
}

impl Client {
    /// A client for `server` (e.g. `https://127.0.0.1:7420`) with a bearer token and, for
    /// TLS with a private CA, that CA's PEM certificate (else the system's roots).
    pub fn new(server: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Self> {
        Self::with_tls(server, Some(token), tls_config(ca_pem)?)
    }

    /// A client that sends no token and does **not** verify the server's certificate: only
    /// for fetching the CA certificate a server publishes before the caller trusts it (see
    /// [`unverified`]). Nothing it reads is to be believed until the CA's fingerprint is
    /// checked.
    pub fn unverified(server: &str) -> Result<Self> {
        Self::with_tls(server, None, unverified::tls_config()?)
    }

    fn with_tls(server: &str, token: Option<&str>, tls: rustls::ClientConfig) -> Result<Self> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "server URL {server:?} must start with http:// or https://"
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut auth =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    ClientError::Config(
                        "the token contains characters not allowed in a header".into(),
                    )
                })?;
            auth.set_sensitive(true);
            headers.insert(AUTHORIZATION, auth);
        }
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            warnings: None,
        })
    }

    /// Calls `handler` with each warning the server returns (`Warning: 299 - "text"`).
    pub fn with_warning_handler(mut self, handler: WarningHandler) -> Self {
        self.warnings = Some(handler);
        self
    }

    /// Base URL of the server.
    pub fn server(&self) -> &str {
        &self.base
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            source,
        }
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        if let Some((ct, bytes)) = body {
            req = req.header(CONTENT_TYPE, ct).body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        if let Some(handler) = &self.warnings {
            for w in resp.headers().get_all(reqwest::header::WARNING) {
                if let Ok(text) = w.to_str() {
                    handler(warning_text(text));
                }
            }
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        Err(status_error(code, &bytes))
    }

    /// Send a request and decode a JSON answer.
    pub async fn request_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let body = body.map(|b| {
            (
                "application/json",
                serde_json::to_vec(b).expect("a JSON value always serializes"),
            )
        });
        let resp = self.send(method, path_and_query, body).await?;
        resp.json::<Value>()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Asks the server's event recorder to record an event (`POST /meridian/v1/events`,
    /// answered 202 once queued). The server names, deduplicates, counts, rate-limits
    /// and expires events, so an agent calls this on every occurrence and keeps no
    /// state. A node credential may only record events about allocations on its own
    /// node (403 otherwise); the server sets `source.host` to the node's name.
    ///
    /// ```ignore
    /// client.record_event(&api::EventRecord {
    ///     involved_object: api::ObjectReference::of(&allocation),
    ///     type_: api::EventType::Warning,
    ///     reason: "BackOff".into(),
    ///     message: "restarting in 20s after exit code 1".into(),
    ///     component: "meridian-agent".into(),
    /// }).await?;
    /// ```
    pub async fn record_event(&self, record: &api::EventRecord) -> Result<()> {
        let body = serde_json::to_value(record).expect("an event record serializes");
        self.request_json(Method::POST, "/meridian/v1/events", Some(&body))
            .await
            .map(drop)
    }

    /// POST to `path` and write the (streamed) answer to `out`; returns the answer's
    /// headers and the bytes written (`meridian backup`).
    pub async fn download(
        &self,
        path_and_query: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<(reqwest::header::HeaderMap, u64)> {
        use tokio::io::AsyncWriteExt;
        let mut resp = self.send(Method::POST, path_and_query, None).await?;
        let headers = resp.headers().clone();
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            out.write_all(&chunk)
                .await
                .map_err(|e| ClientError::Decode(format!("writing the answer: {e}")))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|e| ClientError::Decode(format!("writing the answer: {e}")))?;
        Ok((headers, written))
    }

    /// GET a path and decode JSON (discovery, audit, tokens).
    pub async fn get_path(&self, path_and_query: &str) -> Result<Value> {
        self.request_json(Method::GET, path_and_query, None).await
    }

    /// GET a path as text (metrics).
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let resp = self.send(Method::GET, path, None).await?;
        resp.text().await.map_err(|e| self.transport(e))
    }

    pub async fn get(&self, kind: &KindInfo, namespace: Option<&str>, name: &str) -> Result<Value> {
        self.get_path(&resource_path(kind, namespace, Some(name)))
            .await
    }

    /// One page of a list (`namespace: None` lists every project for project kinds).
    pub async fn list(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value> {
        let path = format!(
            "{}{}",
            resource_path(kind, namespace, None),
            query(opts, false)
        );
        self.get_path(&path).await
    }

    /// Every item of a list, following `continue` tokens.
    pub async fn list_all(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Vec<Value>> {
        Ok(self.list_all_at(kind, namespace, opts).await?.0)
    }

    /// Every item of a list and the `resourceVersion` of the list (to watch from).
    pub async fn list_all_at(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let mut opts = opts.clone();
        let mut items = Vec::new();
        let mut revision = None;
        loop {
            let mut page = self.list(kind, namespace, &opts).await?;
            if revision.is_none() {
                revision = page
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            if let Some(Value::Array(a)) = page.get_mut("items").map(Value::take) {
                items.extend(a);
            }
            match page
                .get("metadata")
                .and_then(|m| m.get("continue"))
                .and_then(Value::as_str)
            {
                Some(c) if !c.is_empty() => opts.continue_token = Some(c.to_owned()),
                _ => return Ok((items, revision)),
            }
        }
    }

    pub async fn create(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let path = format!(
            "{}{}",
            resource_path(kind, namespace, None),
            if dry_run { "?dryRun=All" } else { "" }
        );
        self.request_json(Method::POST, &path, Some(object)).await
    }

    /// PUT the whole object (its `metadata.resourceVersion` guards the write).
    pub async fn replace(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value> {
        self.request_json(
            Method::PUT,
            &resource_path(kind, namespace, Some(name)),
            Some(object),
        )
        .await
    }

    /// PUT the status subresource.
    pub async fn replace_status(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value> {
        let path = format!("{}/status", resource_path(kind, namespace, Some(name)));
        self.request_json(Method::PUT, &path, Some(object)).await
    }

    pub async fn patch(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let path = format!(
            "{}{}",
            resource_path(kind, namespace, Some(name)),
            if dry_run { "?dryRun=All" } else { "" }
        );
        let body = serde_json::to_vec(patch).expect("a JSON value always serializes");
        let resp = self
            .send(
                Method::PATCH,
                &path,
                Some((patch_type.content_type(), body)),
            )
            .await?;
        resp.json::<Value>()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Create or update a whole manifest; says whether it was created, changed or unchanged.
    pub async fn apply(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        object: &Value,
        dry_run: bool,
    ) -> Result<(Value, ApplyOutcome)> {
        let name = object
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Config("the manifest has no metadata.name".into()))?;
        let before = match self.get(kind, namespace, name).await {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let after = self
            .patch(kind, namespace, name, PatchType::Apply, object, dry_run)
            .await?;
        let rv = |v: &Value| {
            v.get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .cloned()
        };
        let outcome = match &before {
            None => ApplyOutcome::Created,
            Some(b) if rv(b) == rv(&after) => ApplyOutcome::Unchanged,
            Some(_) => ApplyOutcome::Configured,
        };
        Ok((after, outcome))
    }

    pub async fn delete(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        self.request_json(
            Method::DELETE,
            &resource_path(kind, namespace, Some(name)),
            None,
        )
        .await
    }

    /// Watch a collection. Without `resource_version` the stream starts with the current
    /// objects as `ADDED` events.
    pub async fn watch(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<WatchEvents> {
        let lines = self.watch_lines(kind, namespace, opts).await?;
        Ok(Box::pin(lines.map(|line| {
            line.and_then(|line| {
                serde_json::from_slice::<WatchEvent<Value>>(&line)
                    .map_err(|e| ClientError::Decode(format!("bad watch event: {e}")))
            })
        })))
    }

    /// Watch a collection like [`Client::watch`], but hand over each event undecoded: one
    /// item per newline-delimited JSON line as the server sent it (newline included, blank
    /// lines skipped; a line split across chunks comes whole).
    ///
    /// For callers that need only a few bytes of each event and cannot afford to decode
    /// every one, such as the watch fan-out load generator of `meridian bench watch`, which
    /// shares the machine with the server it measures. Everything else about the request
    /// (TLS, authentication, chunked transfer, errors as [`ClientError::Api`]) is the same as
    /// [`Client::watch`]'s; a broken stream yields one [`ClientError::Decode`] and ends.
    pub async fn watch_lines(
        &self,
        kind: &KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<WatchLines> {
        let path = format!(
            "{}{}",
            resource_path(kind, namespace, None),
            query(opts, true)
        );
        let resp = self.send(Method::GET, &path, None).await?;
        Ok(Box::pin(split_lines(resp.bytes_stream())))
    }
}

fn status_error(code: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<Status>(body) {
        Ok(status) if status.kind == "Status" => ClientError::Api(Box::new(status)),
        _ => {
            let text = String::from_utf8_lossy(body);
            ClientError::Api(Box::new(Status::failure(
                code.as_u16(),
                code.canonical_reason().unwrap_or("Unknown"),
                if text.trim().is_empty() {
                    format!("the server answered {code}")
                } else {
                    format!("the server answered {code}: {}", text.trim())
                },
            )))
        }
    }
}

fn query(opts: &ListOptions, watch: bool) -> String {
    let mut parts = Vec::new();
    let mut push = |k: &str, v: &str| parts.push(format!("{k}={}", utf8_percent_encode(v, QUERY)));
    if watch {
        push("watch", "true");
    }
    if let Some(s) = &opts.label_selector {
        push("labelSelector", s);
    }
    if let Some(s) = &opts.field_selector {
        push("fieldSelector", s);
    }
    if let Some(l) = opts.limit {
        push("limit", &l.to_string());
    }
    if let Some(c) = &opts.continue_token {
        push("continue", c);
    }
    if let Some(rv) = &opts.resource_version {
        push("resourceVersion", rv);
    }
    if let Some(t) = opts.timeout_seconds {
        push("timeoutSeconds", &t.to_string());
    }
    if opts.allow_bookmarks {
        push("allowWatchBookmarks", "true");
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Split a byte stream into its non-blank lines (a watch's newline-delimited JSON events).
/// After a read error, one [`ClientError::Decode`] and the end.
fn split_lines<S, B, E>(bytes: S) -> impl Stream<Item = Result<Bytes>> + Send
where
    S: Stream<Item = std::result::Result<B, E>> + Send + Unpin + 'static,
    B: AsRef<[u8]> + Send,
    E: std::fmt::Display + Send,
{
    futures::stream::unfold(
        (bytes, BytesMut::new(), false),
        |(mut bytes, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(pos + 1).freeze();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some((Ok(line), (bytes, buf, false)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(chunk.as_ref()),
                    Some(Err(e)) => {
                        return Some((
                            Err(ClientError::Decode(format!("watch stream broke: {e}"))),
                            (bytes, buf, true),
                        ));
                    }
                    None => return None,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_kubernetes_layout() {
        let wl = api::kinds::WORKLOAD;
        assert_eq!(
            resource_path(wl, Some("finance"), Some("payroll-api")),
            "/apis/meridian.dev/v1/namespaces/finance/workloads/payroll-api"
        );
        assert_eq!(
            resource_path(wl, None, None),
            "/apis/meridian.dev/v1/workloads"
        );
        let site = api::kinds::SITE;
        assert_eq!(
            resource_path(site, Some("ignored"), Some("a")),
            "/apis/meridian.dev/v1/sites/a"
        );
    }

    #[test]
    fn selectors_are_escaped_in_queries() {
        let q = query(
            &ListOptions {
                label_selector: Some("app in (a,b),tier!=web".into()),
                ..Default::default()
            },
            true,
        );
        assert_eq!(
            q,
            "?watch=true&labelSelector=app%20in%20(a%2Cb)%2Ctier%21%3Dweb"
        );
    }

    #[test]
    fn watch_lines_come_whole_across_chunks() {
        let chunks: Vec<std::result::Result<&[u8], String>> = vec![
            Ok(b"{\"type\":\"ADDED\"}\n{\"ty"),
            Ok(b"pe\":\"MODIFIED\"}\n\n"),
            Ok(b"{\"type\":\"DELETED\"}\n"),
            Err("reset".into()),
            Ok(b"never read\n"),
        ];
        let lines: Vec<Result<Bytes>> =
            futures::executor::block_on(split_lines(futures::stream::iter(chunks)).collect());
        let text: Vec<String> = lines
            .iter()
            .map(|l| match l {
                Ok(b) => String::from_utf8_lossy(b).into_owned(),
                Err(e) => format!("error: {e}"),
            })
            .collect();
        assert_eq!(
            text,
            [
                "{\"type\":\"ADDED\"}\n",
                "{\"type\":\"MODIFIED\"}\n",
                "{\"type\":\"DELETED\"}\n",
                "error: unexpected answer from the server: watch stream broke: reset",
            ]
        );
    }
}
