//! `meridian logs`: an allocation's captured output, read through the server.
//!
//! Clients use the Kubernetes `pods/log` subresource's shape:
//! `GET /apis/meridian.dev/v1/namespaces/{ns}/allocations/{name}/log` with `follow`,
//! `tailLines`, `limitBytes` and `container` (`stdout`, `stderr` or `all`: the streams of
//! a task stand in for a pod's containers). The answer is `text/plain`, streamed.
//! Permission is `get` on `allocations/log`: every role may read the logs of the projects
//! it sees (like Kubernetes' `view` role, which includes `pods/log`); a project-scoped
//! token gets 403 for another project's, decided before anything is read; a node
//! credential reads only the logs of allocations on its own node.
//!
//! Agents only dial out, so the server never connects to a node (unlike kubelet's
//! inbound port, which hybrid estates behind NAT or firewalls cannot offer). Instead:
//!
//! 1. the reader's request queues an [`api::logs::LogSession`] (random, unguessable id)
//!    for the allocation's node in [`LogSessions`], an in-memory registry bounded per node
//!    and in total (429 beyond);
//! 2. the node's agent long-polls `GET /meridian/v1/nodes/{node}/log-sessions` (answered
//!    at once when sessions wait, else after at most 25 s with none);
//! 3. it answers each session with `POST /meridian/v1/nodes/{node}/log-sessions/{id}`,
//!    whose streaming request body the server pipes into the reader's response, or with
//!    `POST …/{id}/error` and a `Status` when it cannot (the allocation is not on it);
//! 4. either side closing ends the session: a reader that goes away ends the upload
//!    handler, whose answer tells the agent to stop; an upload that ends ends the reader's
//!    response.
//!
//! Only the node's own credential polls and answers its sessions. A node that does not
//! answer within 10 s gets the reader a 503 naming the node. Reads that do not follow
//! are limited in bytes and time.
//!
//! With several servers on one store (see [`crate::leader`]) the reader and the agent may
//! reach different ones. A session is then also published in the store under
//! [`SESSIONS_PREFIX`]`{node}/{id}` (on the reader's server's session lease, deleted when
//! the session ends); every server mirrors the sessions other servers published into its
//! own node queues ([`mirror`]), so the agent's poll finds them wherever it lands, and an
//! upload (or refusal) for a mirrored session is relayed to the reader's server as the
//! same request with the agent's own credential, which that server checks as usual. A
//! session is answered once: a second answer, through another server, gets 404.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use futures::StreamExt;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use api::logs::{LogSession, LogSessionList, LogStream};

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::registry::{self, Registry, object_key};

/// Key prefix of the log sessions published for other servers: `{prefix}{node}/{id}`.
pub const SESSIONS_PREFIX: &str = "/meridian/log-sessions/";

/// A session as published in the store: which server holds its reader.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Published {
    server: String,
    url: String,
    node: String,
    session: LogSession,
}

/// Bounds of the session registry and of each session.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Sessions open or waiting per node.
    pub per_node: usize,
    /// Sessions open or waiting in this server.
    pub total: usize,
    /// How long a reader waits for the node's agent to start answering.
    pub answer_within: Duration,
    /// How long an agent's poll waits when no session is pending.
    pub poll_wait: Duration,
    /// Largest answer of a read that does not follow (and the default `limitBytes`).
    pub max_bytes: u64,
    /// Longest read that does not follow.
    pub max_read: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_node: 32,
            total: 1024,
            answer_within: Duration::from_secs(10),
            poll_wait: Duration::from_secs(25),
            max_bytes: 64 * 1024 * 1024,
            max_read: Duration::from_secs(120),
        }
    }
}

/// What the agent did with a session.
enum Answer {
    /// The bytes, as they arrive (an error aborts the reader's response).
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
    /// It cannot serve it.
    Refused(Box<api::Status>),
}

#[derive(Default)]
struct NodeQueue {
    /// Sessions not yet handed to the agent.
    pending: VecDeque<LogSession>,
    /// Sessions of the node, pending or open.
    count: usize,
    /// Wakes the agent's poll.
    wake: Arc<Notify>,
}

struct Open {
    node: String,
    session: LogSession,
    /// Taken by the agent's first answer.
    answer: Option<oneshot::Sender<Answer>>,
}

#[derive(Default)]
struct Inner {
    total: usize,
    nodes: HashMap<String, NodeQueue>,
    open: HashMap<String, Open>,
    /// Sessions other servers published (id → node and the reader's server's URL).
    mirrored: HashMap<String, (String, String)>,
}

/// The in-memory registry of log sessions (pending and open), per node.
pub struct LogSessions {
    inner: Mutex<Inner>,
    pub limits: SessionLimits,
}

/// Removes its session from the registry (and from the store, when it was published)
/// when the reader's request or response ends.
struct Guard {
    sessions: Arc<LogSessions>,
    id: String,
    published: Option<(Registry, String)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.sessions.close(&self.id);
        if let Some((registry, key)) = self.published.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = registry.delete_unaudited(&key).await {
                    tracing::debug!(%key, error = %e, "could not unpublish a log session");
                }
            });
        }
    }
}

impl LogSessions {
    pub fn new(limits: SessionLimits) -> Self {
        LogSessions {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("log sessions lock")
    }

    /// Queues `session` for `node` and wakes its agent; 429 beyond the limits.
    fn open(
        self: &Arc<Self>,
        node: &str,
        session: LogSession,
    ) -> ApiResult<(Guard, oneshot::Receiver<Answer>)> {
        let mut inner = self.lock();
        let per_node = inner.nodes.get(node).map_or(0, |q| q.count);
        if per_node >= self.limits.per_node || inner.total >= self.limits.total {
            let (what, limit) = if per_node >= self.limits.per_node {
                (format!("node {node:?}"), self.limits.per_node)
            } else {
                ("this server".to_owned(), self.limits.total)
            };
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!(
                    "{what} already has {limit} log sessions open, the most it serves at once: \
                     end a `meridian logs -f` or try again later"
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let id = session.id.clone();
        inner.total += 1;
        let queue = inner.nodes.entry(node.to_owned()).or_default();
        queue.count += 1;
        queue.pending.push_back(session.clone());
        queue.wake.notify_waiters();
        inner.open.insert(
            id.clone(),
            Open {
                node: node.to_owned(),
                session,
                answer: Some(tx),
            },
        );
        Ok((
            Guard {
                sessions: Arc::clone(self),
                id,
                published: None,
            },
            rx,
        ))
    }

    /// Queues a session another server published, for `node`'s agent here; its answer is
    /// relayed to `url`. Bounded like the sessions of this server.
    fn mirror(&self, node: &str, session: LogSession, url: String) {
        let mut inner = self.lock();
        if inner.open.contains_key(&session.id)
            || inner.mirrored.contains_key(&session.id)
            || inner.mirrored.len() >= self.limits.total
        {
            return;
        }
        inner
            .mirrored
            .insert(session.id.clone(), (node.to_owned(), url));
        let queue = inner.nodes.entry(node.to_owned()).or_default();
        queue.pending.push_back(session);
        queue.wake.notify_waiters();
    }

    /// Forgets a mirrored session (its reader's server unpublished it).
    fn unmirror(&self, id: &str) {
        let mut inner = self.lock();
        if let Some((node, _)) = inner.mirrored.remove(id)
            && let Some(q) = inner.nodes.get_mut(&node)
        {
            q.pending.retain(|s| s.id != id);
        }
    }

    /// The server to relay the answer of mirrored session `id` of `node` to, once.
    fn take_relay(&self, node: &str, id: &str) -> Option<String> {
        let mut inner = self.lock();
        if inner.mirrored.get(id).is_none_or(|(n, _)| n != node) {
            return None;
        }
        let (_, url) = inner.mirrored.remove(id)?;
        if let Some(q) = inner.nodes.get_mut(node) {
            q.pending.retain(|s| s.id != id);
        }
        Some(url)
    }

    fn close(&self, id: &str) {
        let mut inner = self.lock();
        let Some(open) = inner.open.remove(id) else {
            return;
        };
        inner.total -= 1;
        if let Some(q) = inner.nodes.get_mut(&open.node) {
            q.count -= 1;
            q.pending.retain(|s| s.id != id);
        }
    }

    /// The node's waker (kept for the node's lifetime, so a poll never misses a wake).
    fn waker(&self, node: &str) -> Arc<Notify> {
        Arc::clone(&self.lock().nodes.entry(node.to_owned()).or_default().wake)
    }

    fn take_pending(&self, node: &str) -> Vec<LogSession> {
        self.lock()
            .nodes
            .get_mut(node)
            .map(|q| q.pending.drain(..).collect())
            .unwrap_or_default()
    }

    /// The answer channel of session `id` of `node`, once.
    fn claim(&self, node: &str, id: &str) -> Option<(oneshot::Sender<Answer>, LogSession)> {
        let mut inner = self.lock();
        let open = inner.open.get_mut(id).filter(|o| o.node == node)?;
        let answer = open.answer.take()?;
        let session = open.session.clone();
        if let Some(q) = inner.nodes.get_mut(node) {
            q.pending.retain(|s| s.id != id);
        }
        Some((answer, session))
    }

    /// Sessions open or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().total
    }
}

const LOG_PATH: &str = "/apis/meridian.dev/v1/namespaces/{ns}/allocations/{name}/log";
const POLL_PATH: &str = "/meridian/v1/nodes/{node}/log-sessions";
const UPLOAD_PATH: &str = "/meridian/v1/nodes/{node}/log-sessions/{id}";
const REFUSE_PATH: &str = "/meridian/v1/nodes/{node}/log-sessions/{id}/error";

/// The log subresource and the agents' session endpoints, sharing one registry (the
/// server's, which [`mirror`] also feeds).
pub fn routes(sessions: Arc<LogSessions>) -> Router<AppState> {
    Router::new()
        .route(LOG_PATH, get(read_log))
        .route(POLL_PATH, get(poll))
        .route(UPLOAD_PATH, post(upload).put(upload))
        .route(REFUSE_PATH, post(refuse))
        .layer(Extension(sessions))
}

/// Whether a request is an agent's upload, which lasts as long as its session (a
/// follow has no end): the per-request time limit does not apply to it.
pub fn is_upload(path: &str) -> bool {
    path.strip_prefix("/meridian/v1/nodes/")
        .and_then(|rest| rest.split_once("/log-sessions/"))
        .is_some_and(|(_, id)| !id.is_empty() && !id.contains('/'))
}

/// Query parameters of the log subresource (Kubernetes' names; unknown ones are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogParams {
    follow: Option<String>,
    tail_lines: Option<String>,
    limit_bytes: Option<String>,
    container: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
}

fn flag(name: &str, value: Option<&str>) -> ApiResult<bool> {
    match value {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}={other:?} is not a boolean: use {name}=true or {name}=false"
        ))),
    }
}

fn number(name: &str, value: Option<&str>, min: u64) -> ApiResult<Option<u64>> {
    value
        .map(|v| {
            v.parse::<u64>().ok().filter(|n| *n >= min).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}={v:?} is not a whole number of at least {min}"
                ))
            })
        })
        .transpose()
}

/// Parses the query into a session (without id and allocation).
fn session_of(q: &LogParams, limits: &SessionLimits) -> ApiResult<LogSession> {
    if flag("previous", q.previous.as_deref())? {
        return Err(ApiError::bad_request(
            "previous=true is not supported: an allocation keeps one log across restarts, \
             read it without previous",
        ));
    }
    if flag("timestamps", q.timestamps.as_deref())? {
        return Err(ApiError::bad_request(
            "timestamps=true is not supported: the agent stores output without timestamps",
        ));
    }
    if q.since_seconds.is_some() || q.since_time.is_some() {
        return Err(ApiError::bad_request(
            "sinceSeconds and sinceTime are not supported: the agent stores output without \
             timestamps; use tailLines",
        ));
    }
    let stream = match q.container.as_deref() {
        None | Some("") => LogStream::Stdout,
        Some(c) => LogStream::parse(c).ok_or_else(|| {
            ApiError::bad_request(format!(
                "container={c:?} is not a stream of an allocation: use stdout, stderr or all"
            ))
        })?,
    };
    let follow = flag("follow", q.follow.as_deref())?;
    let tail_lines = number("tailLines", q.tail_lines.as_deref(), 0)?;
    let limit = number("limitBytes", q.limit_bytes.as_deref(), 1)?;
    let limit_bytes = match (limit, follow) {
        (Some(l), false) => l.min(limits.max_bytes),
        (Some(l), true) => l,
        (None, false) => limits.max_bytes,
        (None, true) => u64::MAX,
    };
    Ok(LogSession {
        id: String::new(),
        namespace: String::new(),
        allocation: String::new(),
        uid: String::new(),
        stream,
        follow,
        tail_lines,
        limit_bytes,
    })
}

fn session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `get` on `allocations/log` in `namespace`, decided before anything is read, so that
/// the answer says nothing of what exists in a project the caller does not see.
pub fn authorize_log(who: &Principal, namespace: &str) -> ApiResult<()> {
    match (&who.project, who.role) {
        (_, Role::Node) => Ok(()), // checked on the allocation: its own node only
        (Some(p), _) if p != namespace => Err(ApiError::forbidden(format!(
            "allocations/log is forbidden: token {id} (role {role} scoped to project {p:?}) \
             cannot get allocations/log in project {namespace:?}; ask an admin for a token \
             of that project",
            id = who.id,
            role = who.role.as_str(),
        ))),
        _ => Ok(()),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        message,
    )
}

async fn read_log(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<LogSessions>>,
    who: Principal,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogParams>,
) -> ApiResult<Response> {
    authorize_log(&who, &ns)?;
    let mut session = session_of(&q, &sessions.limits)?;
    let alloc_kind = api::kinds::ALLOCATION;
    let (kv, _) = state
        .store()
        .get(&object_key(alloc_kind, Some(&ns), &name))
        .await?;
    let allocation =
        registry::decode(&kv.ok_or_else(|| ApiError::not_found("allocations", &name))?)?;
    let node = allocation
        .pointer("/spec/node")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if who.role == Role::Node && who.node.as_deref() != Some(node.as_str()) {
        return Err(ApiError::forbidden(format!(
            "allocations/log is forbidden: node credential {id} of node {own:?} cannot read \
             the logs of allocation {name:?}, which is not on its node",
            id = who.id,
            own = who.node.as_deref().unwrap_or_default(),
        )));
    }
    if node.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "allocation {name:?} has no node yet, so it has no logs: \
                 `meridian explain workload WORKLOAD -n {ns}` says why it waits"
            ),
        ));
    }
    let node_kind = api::kinds::NODE;
    let (node_kv, _) = state
        .store()
        .get(&object_key(node_kind, None, &node))
        .await?;
    let Some(node_kv) = node_kv else {
        return Err(unavailable(format!(
            "allocation {name:?} is on node {node:?}, which is not registered: no agent serves \
             its logs; `meridian get nodes` lists the nodes"
        )));
    };
    let node_object = registry::decode(&node_kv)?;
    if node_object.pointer("/status/phase").and_then(Value::as_str) == Some("Lost") {
        return Err(unavailable(format!(
            "node {node:?} of allocation {name:?} is Lost (its agent stopped heartbeating), so \
             its logs cannot be read until it is back: `meridian get node {node}`"
        )));
    }
    session.id = session_id();
    session.namespace = ns.clone();
    session.allocation = name.clone();
    session.uid = allocation
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let published = session.clone();
    let (mut guard, answer) = sessions.open(&node, session)?;
    guard.published = publish(&state, &node, published).await;
    let within = sessions.limits.answer_within;
    let answer = tokio::select! {
        () = state.shutdown.cancelled() => {
            return Err(unavailable("the server is shutting down".to_owned()));
        }
        a = tokio::time::timeout(within, answer) => a,
    };
    let rx = match answer {
        Ok(Ok(Answer::Stream(rx))) => rx,
        Ok(Ok(Answer::Refused(status))) => {
            let (code, reason) = match status.code {
                400 => (StatusCode::BAD_REQUEST, "BadRequest"),
                404 => (StatusCode::NOT_FOUND, "NotFound"),
                409 | 410 => (StatusCode::CONFLICT, "Conflict"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            };
            return Err(ApiError::new(
                code,
                reason,
                format!("node {node:?} cannot serve the logs: {}", status.message),
            ));
        }
        Ok(Err(_)) | Err(_) => {
            return Err(unavailable(format!(
                "node {node:?} did not answer within {} s; is its agent running? \
                 `meridian get node {node}`",
                within.as_secs()
            )));
        }
    };
    // The guard travels with the body: the session ends when the response does.
    let body = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Only the node's own credential polls and answers its sessions.
fn node_only(who: &Principal, node: &str) -> ApiResult<()> {
    if who.role == Role::Node && who.node.as_deref() == Some(node) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {} cannot serve the log sessions of node {node:?}: only that node's own \
             credential can",
            who.id
        )))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollParams {
    timeout_seconds: Option<u64>,
}

async fn poll(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<LogSessions>>,
    who: Principal,
    Path(node): Path<String>,
    Query(q): Query<PollParams>,
) -> ApiResult<Json<LogSessionList>> {
    node_only(&who, &node)?;
    // Well inside the per-request time limit.
    let mut wait = sessions
        .limits
        .poll_wait
        .min(state.limits.request_timeout / 2);
    if let Some(t) = q.timeout_seconds {
        wait = wait.min(Duration::from_secs(t));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let wake = sessions.waker(&node);
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pending = sessions.take_pending(&node);
        if !pending.is_empty() {
            return Ok(Json(LogSessionList { sessions: pending }));
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(deadline) => break,
            () = state.shutdown.cancelled() => break,
        }
    }
    Ok(Json(LogSessionList::default()))
}

async fn upload(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<LogSessions>>,
    who: Principal,
    Path((node, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    node_only(&who, &node)?;
    let Some((answer, session)) = sessions.claim(&node, &id) else {
        return match sessions.take_relay(&node, &id) {
            Some(url) => {
                relay(
                    &state,
                    &url,
                    &format!("{node}/log-sessions/{id}"),
                    &headers,
                    body,
                )
                .await
            }
            None => Err(ApiError::not_found("log-sessions", &id)),
        };
    };
    let (tx, rx) = mpsc::channel(8);
    if answer.send(Answer::Stream(rx)).is_err() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "Gone",
            "the reader of this log session went away",
        ));
    }
    let deadline =
        (!session.follow).then(|| tokio::time::Instant::now() + sessions.limits.max_read);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let mut data = body.into_data_stream();
    let mut sent: u64 = 0;
    let ended = loop {
        let next = tokio::select! {
            () = tx.closed() => break "the reader went away",
            () = state.shutdown.cancelled() => break "the server is shutting down",
            () = &mut until_deadline => break "the time limit of a read that does not follow",
            next = data.next() => next,
        };
        match next {
            None => break "complete",
            Some(Err(e)) => {
                tracing::debug!(%node, error = %e, "a log upload broke");
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "the upload from node {node} broke"
                    ))))
                    .await;
                break "the upload broke";
            }
            Some(Ok(mut bytes)) => {
                let room = session.limit_bytes - sent;
                if bytes.len() as u64 > room {
                    bytes.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                }
                sent += bytes.len() as u64;
                if !bytes.is_empty() && tx.send(Ok(bytes)).await.is_err() {
                    break "the reader went away";
                }
                if sent >= session.limit_bytes {
                    break "limitBytes";
                }
            }
        }
    };
    tracing::debug!(%node, allocation = %session.allocation, bytes = sent, ended, "log session ended");
    Ok(Json(json!({"ended": ended, "bytes": sent})).into_response())
}

async fn refuse(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<LogSessions>>,
    who: Principal,
    Path((node, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    node_only(&who, &node)?;
    let status: api::Status = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the refusal of a log session is not a Status: {e}"))
    })?;
    let Some((answer, _)) = sessions.claim(&node, &id) else {
        return match sessions.take_relay(&node, &id) {
            Some(url) => {
                let path = format!("{node}/log-sessions/{id}/error");
                relay(&state, &url, &path, &headers, Body::from(body)).await
            }
            None => Err(ApiError::not_found("log-sessions", &id)),
        };
    };
    let _ = answer.send(Answer::Refused(Box::new(status)));
    Ok(Json(json!({"ended": "refused"})).into_response())
}

/// Publishes a session for the other servers when there are any (see the module doc);
/// returns the key to delete when it ends.
async fn publish(state: &AppState, node: &str, session: LogSession) -> Option<(Registry, String)> {
    let (identity, lease) = state.leadership.session()?;
    let servers = state
        .store()
        .count(crate::leader::SERVERS_PREFIX)
        .await
        .unwrap_or(0);
    if servers < 2 {
        return None;
    }
    let key = format!("{SESSIONS_PREFIX}{node}/{}", session.id);
    let value = Published {
        server: identity.name,
        url: identity.url,
        node: node.to_owned(),
        session,
    };
    let bytes = serde_json::to_vec(&value).expect("a session serializes");
    match state.registry.put_leased(&key, bytes, lease).await {
        Ok(_) => Some((state.registry.clone(), key)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot publish a log session for the other servers");
            None
        }
    }
}

/// Sends an agent's answer to the server holding the reader: the same request, with the
/// agent's own credential, which that server checks like any other.
async fn relay(
    state: &AppState,
    url: &str,
    path: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let http = state
        .relay_client()
        .map_err(|e| unavailable(format!("cannot relay the log session to {url}: {e}")))?;
    let mut request = http.post(format!("{url}/meridian/v1/nodes/{path}"));
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = headers.get(&name) {
            request = request.header(name, v.clone());
        }
    }
    let answer = request
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| unavailable(format!("cannot relay the log session to {url}: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| unavailable(format!("the relay to {url} broke: {e}")))?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(bytes),
    )
        .into_response())
}

/// Mirrors the sessions other servers publish into this server's node queues, until
/// shutdown: one watch on [`SESSIONS_PREFIX`], re-listed whenever it breaks.
pub async fn mirror(state: AppState, sessions: Arc<LogSessions>) {
    loop {
        let from = match state
            .store()
            .range(store::RangeRequest {
                prefix: SESSIONS_PREFIX.to_owned(),
                ..store::RangeRequest::default()
            })
            .await
        {
            Ok(listed) => {
                for kv in &listed.kvs {
                    mirror_one(&state, &sessions, &kv.value);
                }
                listed.revision + 1
            }
            Err(_) => {
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let Ok(mut watch) = state.store().watch(SESSIONS_PREFIX, from).await else {
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        loop {
            let event = tokio::select! {
                () = state.shutdown.cancelled() => return,
                e = watch.next() => e,
            };
            let Some(Ok(event)) = event else { break };
            match event.kind {
                store::EventKind::Put => mirror_one(&state, &sessions, &event.kv.value),
                store::EventKind::Delete => {
                    if let Some(id) = event.kv.key.rsplit('/').next() {
                        sessions.unmirror(id);
                    }
                }
            }
        }
    }
}

fn mirror_one(state: &AppState, sessions: &LogSessions, value: &[u8]) {
    let Ok(published) = serde_json::from_slice::<Published>(value) else {
        return;
    };
    let ours = state
        .leadership
        .session()
        .is_some_and(|(identity, _)| identity.name == published.server);
    if !ours {
        sessions.mirror(&published.node, published.session, published.url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> LogSession {
        LogSession {
            id: id.into(),
            namespace: "default".into(),
            allocation: "a-0".into(),
            uid: String::new(),
            stream: LogStream::Stdout,
            follow: false,
            tail_lines: None,
            limit_bytes: 10,
        }
    }

    #[test]
    fn the_registry_is_bounded_per_node_and_in_total() {
        let s = Arc::new(LogSessions::new(SessionLimits {
            per_node: 2,
            total: 3,
            ..SessionLimits::default()
        }));
        let a = s.open("n1", session("a")).expect("first");
        let _b = s.open("n1", session("b")).expect("second");
        let e = s.open("n1", session("c")).err().expect("per node");
        assert_eq!(e.code, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.message.contains("node \"n1\""), "{}", e.message);
        let _c = s.open("n2", session("c")).expect("other node");
        let e = s.open("n3", session("d")).err().expect("total");
        assert!(e.message.contains("this server"), "{}", e.message);
        // Closing frees the place; a pending session is no longer handed out.
        drop(a);
        assert_eq!(s.len(), 2);
        let pending: Vec<String> = s.take_pending("n1").into_iter().map(|p| p.id).collect();
        assert_eq!(pending, ["b"]);
        let _d = s.open("n3", session("d")).expect("room again");
    }

    #[test]
    fn a_session_is_claimed_once_and_only_by_its_node() {
        let s = Arc::new(LogSessions::new(SessionLimits::default()));
        let _g = s.open("n1", session("x")).expect("open");
        assert!(s.claim("n2", "x").is_none());
        assert!(s.claim("n1", "x").is_some());
        assert!(s.claim("n1", "x").is_none(), "answered once");
    }

    #[test]
    fn query_parameters_are_checked() {
        let limits = SessionLimits::default();
        let q = LogParams {
            follow: Some("true".into()),
            tail_lines: Some("2".into()),
            container: Some("stderr".into()),
            ..LogParams::default()
        };
        let s = session_of(&q, &limits).expect("valid");
        assert!(s.follow);
        assert_eq!(s.tail_lines, Some(2));
        assert_eq!(s.stream, LogStream::Stderr);
        assert_eq!(s.limit_bytes, u64::MAX);
        let plain = session_of(&LogParams::default(), &limits).expect("defaults");
        assert_eq!(plain.limit_bytes, limits.max_bytes);
        let bad = LogParams {
            container: Some("web".into()),
            ..LogParams::default()
        };
        let e = session_of(&bad, &limits).expect_err("bad container");
        assert!(e.message.contains("stdout, stderr or all"), "{}", e.message);
        let bad = LogParams {
            tail_lines: Some("-1".into()),
            ..LogParams::default()
        };
        assert!(session_of(&bad, &limits).is_err());
    }

    #[test]
    fn uploads_are_recognised_by_path() {
        assert!(is_upload("/meridian/v1/nodes/n1/log-sessions/abc"));
        assert!(!is_upload("/meridian/v1/nodes/n1/log-sessions"));
        assert!(!is_upload("/meridian/v1/nodes/n1/log-sessions/abc/error"));
        assert!(!is_upload(
            "/apis/meridian.dev/v1/namespaces/a/allocations/b/log"
        ));
    }

    #[test]
    fn other_projects_are_forbidden_before_reading() {
        let viewer = Principal {
            id: "t".into(),
            role: Role::Viewer,
            project: Some("finance".into()),
            node: None,
            site: None,
        };
        assert!(authorize_log(&viewer, "finance").is_ok());
        let e = authorize_log(&viewer, "research").expect_err("other project");
        assert_eq!(e.code, StatusCode::FORBIDDEN);
        assert!(e.message.contains("allocations/log"), "{}", e.message);
    }
}
