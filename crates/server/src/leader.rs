//! Replicas and their leader. Any number of servers share one store and serve the API;
//! the controllers that write (the scheduler with rollouts and periodic jobs, node
//! lifecycle, compaction) run on one of them, the leader, elected through the store as
//! etcd's own `concurrency.Election` does it:
//!
//! - Each server holds a **session**, a store lease of [`ElectionOptions::lease_ttl`]
//!   kept alive every third of it, and publishes its identity under
//!   [`SERVERS_PREFIX`]`{name}` on that lease (`GET /meridian/v1/servers`). A server
//!   that dies stops renewing; its keys go when the lease expires.
//! - A server **campaigns** by creating [`LEADER_KEY`] on its lease, guarded on the key's
//!   absence. The winner's term is the key's `mod_revision`; the others watch the key and
//!   campaign again when it is deleted (the leader's lease expired or it resigned).
//! - Every controller write of the term is **fenced**: the controllers get an
//!   [`AppState`] whose registry adds `mod_revision(LEADER_KEY) == term` to each
//!   transaction ([`Registry::fenced`]), so a deposed leader that has not noticed yet
//!   (a long GC-like pause, a partition) cannot write: its transaction fails, the
//!   registry answers [`store::StoreError::Fenced`] and ends the term.
//! - A leader **steps down** when its session cannot be renewed within the lease TTL
//!   (it may have expired), when the key changes or goes, or when a fenced write failed;
//!   its controllers' shutdown token is cancelled and their tasks aborted. On shutdown a
//!   server **resigns** (revokes its lease), so another takes over at once rather than
//!   after the TTL.
//!
//! Controllers that only read and keep per-server state run on every replica: the policy
//! engine (admission needs its compiled policies everywhere; each replica audits and keeps
//! its findings, which it writes nowhere), the token cache, the event recorder (its
//! expiry sweep deletes with revision guards, so two replicas sweeping is harmless).
//!
//! With SQLite one process owns the database, so there is one server and it leads: the
//! same code runs, on the store's in-process leases.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use store::{EventKind, KeyValue, LeaseId, StoreError};

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::controller::Report;
use crate::error::{ApiError, ApiResult};
use crate::registry::{AuditRecord, Fence, now_rfc3339};

/// The key the leader holds on its session lease.
pub const LEADER_KEY: &str = "/meridian/leader/controllers";
/// Key prefix of the servers' identities, one per server on its session lease.
pub const SERVERS_PREFIX: &str = "/meridian/servers/";

/// Election timing.
#[derive(Clone, Debug)]
pub struct ElectionOptions {
    /// The session lease: a leader that stops renewing is replaced after at most this
    /// long (plus the store's own expiry granularity). Kubernetes' controllers use 15 s.
    pub lease_ttl: Duration,
}

impl Default for ElectionOptions {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(3),
        }
    }
}

/// What a server publishes about itself, and the leader key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerIdentity {
    /// Unique among the replicas (`--server-name`; default host name and port).
    pub name: String,
    /// Where clients and other replicas reach it.
    pub url: String,
    pub version: String,
    pub commit: String,
    /// RFC 3339.
    pub start_time: String,
}

/// What this server knows of the election, for `/readyz`-like questions and tests.
#[derive(Debug, Default)]
pub struct Leadership {
    inner: std::sync::Mutex<LeaderState>,
}

#[derive(Clone, Debug, Default)]
struct LeaderState {
    /// The term (leader key revision) while this server leads.
    term: Option<store::Revision>,
    /// How many terms this server has won since it started.
    terms: u64,
    /// This server's identity and session lease, while it has a session.
    session: Option<(ServerIdentity, LeaseId)>,
}

impl Leadership {
    /// This server's term, while it leads.
    pub fn term(&self) -> Option<store::Revision> {
        self.inner.lock().expect("leadership lock").term
    }

    /// This server's identity and session lease, while it has a session (keys that must
    /// go with the server, such as published log sessions, are put on the lease).
    pub fn session(&self) -> Option<(ServerIdentity, LeaseId)> {
        self.inner.lock().expect("leadership lock").session.clone()
    }

    fn set_session(&self, session: Option<(ServerIdentity, LeaseId)>) {
        self.inner.lock().expect("leadership lock").session = session;
    }

    /// Terms won since start.
    pub fn terms_won(&self) -> u64 {
        self.inner.lock().expect("leadership lock").terms
    }

    fn set(&self, term: Option<store::Revision>) {
        let mut inner = self.inner.lock().expect("leadership lock");
        if term.is_some() {
            inner.terms += 1;
        }
        inner.term = term;
    }
}

/// Starts a leader's controllers with the fenced state; returns their tasks.
pub type Controllers = Box<dyn Fn(AppState) -> Vec<JoinHandle<()>> + Send + Sync>;

/// Runs this server's part in the election until `state.shutdown`: keeps its session and
/// identity, campaigns, and runs `controllers` while it leads. Resigns on shutdown.
pub async fn run(
    state: AppState,
    identity: ServerIdentity,
    options: ElectionOptions,
    leadership: Arc<Leadership>,
    controllers: Controllers,
) {
    let value = serde_json::to_vec(&identity).expect("identity serializes");
    let identity_key = format!("{SERVERS_PREFIX}{}", identity.name);
    let retry = (options.lease_ttl / 3).max(Duration::from_millis(100));
    while !state.shutdown.is_cancelled() {
        // A session: a lease, the identity on it, its renewals.
        let granted = tokio::time::Instant::now();
        let lease = match open_session(&state, &identity_key, &value, &options).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %Report(&e), "cannot open a session in the store; retrying");
                if sleep_or_shutdown(&state, retry).await {
                    return;
                }
                continue;
            }
        };
        leadership.set_session(Some((identity.clone(), lease)));
        let session = CancellationToken::new();
        let renewer = spawn_renewer(
            state.clone(),
            lease,
            granted,
            options.clone(),
            session.clone(),
        );
        lead_while(
            &state,
            &identity,
            &value,
            lease,
            &session,
            &leadership,
            &controllers,
            retry,
        )
        .await;
        renewer.cancel();
        leadership.set_session(None);
        if state.shutdown.is_cancelled() {
            // Resign: the keys on the lease go now, and another server campaigns at once.
            if let Err(e) = state.registry.revoke_lease(lease).await {
                tracing::warn!(error = %Report(&e), "could not resign (revoke the session lease)");
            }
            return;
        }
        tracing::warn!(server = %identity.name, "session lost; opening a new one");
    }
}

async fn open_session(
    state: &AppState,
    identity_key: &str,
    value: &[u8],
    options: &ElectionOptions,
) -> Result<LeaseId, StoreError> {
    let lease = state.registry.grant_lease(options.lease_ttl).await?;
    state
        .registry
        .put_leased(identity_key, value.to_vec(), lease)
        .await?;
    Ok(lease)
}

/// Runs [`renew`] on a thread and runtime of its own, with the store's
/// [`store::LeaseKeeper`] (a connection of its own on etcd), so that a runtime busy with a
/// scheduler pass or a burst of requests never delays a renewal past the lease: a leader
/// steps down because the store does not answer, never because its own CPU is busy. Falls
/// back to a task on the caller's runtime when no thread can be started. Cancel the
/// returned token to stop renewing.
fn spawn_renewer(
    state: AppState,
    lease: LeaseId,
    granted: tokio::time::Instant,
    options: ElectionOptions,
    session: CancellationToken,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let (thread_state, thread_session, thread_stop, thread_options) = (
        state.clone(),
        session.clone(),
        stop.clone(),
        options.clone(),
    );
    let started = std::thread::Builder::new()
        .name("meridian-lease".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the lease renewal runtime; ending the session");
                    thread_session.cancel();
                    return;
                }
            };
            runtime.block_on(async move {
                let keeper = match thread_state.registry.lease_keeper().await {
                    Ok(keeper) => keeper,
                    Err(e) => {
                        tracing::warn!(error = %Report(&e), "no separate lease renewer; renewing through the store");
                        None
                    }
                };
                tokio::select! {
                    () = thread_stop.cancelled() => {}
                    () = renew(thread_state, keeper, lease, granted, thread_options, thread_session) => {}
                }
            });
        });
    // The thread stops with the runtime that started it too: a task of that runtime
    // holds a guard that cancels `stop` when the runtime drops it.
    let guard = stop.clone().drop_guard();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _guard = guard;
        stopped.cancelled().await;
    });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the lease renewal thread; renewing on the runtime");
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = renew(state, None, lease, granted, options, session) => {}
            }
        });
    }
    stop
}

/// Keeps the session lease alive; cancels `session` when it is gone, or when no renewal
/// succeeded for a whole TTL (it may have expired in the store: a leader must assume so).
///
/// The TTL is counted from when the last successful renewal was *sent* (`granted`, the
/// grant's, at first), which is no later than the store renewed it, so the session ends
/// here before the lease can have expired there; and a renewal is abandoned once that
/// deadline passes, since a store cut off by the network may not answer for much longer
/// (the etcd backend retries for 15 s) while another server takes over.
async fn renew(
    state: AppState,
    keeper: Option<std::sync::Arc<dyn store::LeaseKeeper>>,
    lease: LeaseId,
    granted: tokio::time::Instant,
    options: ElectionOptions,
    session: CancellationToken,
) {
    let every = options.lease_ttl / 3;
    let deadline = |last_ok: tokio::time::Instant| last_ok + options.lease_ttl;
    let mut last_ok = granted;
    loop {
        // Never past the deadline: a retry after a quick failure must not overshoot it.
        let next = (tokio::time::Instant::now() + every).min(deadline(last_ok));
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        let sent = tokio::time::Instant::now();
        let renewal = async {
            match &keeper {
                Some(keeper) => keeper.keep_alive(lease).await,
                None => state.registry.keep_alive(lease).await,
            }
        };
        let renewed = tokio::time::timeout_at(deadline(last_ok), renewal).await;
        match renewed {
            Ok(Ok(_)) => last_ok = sent,
            Ok(Err(StoreError::LeaseNotFound(_))) => {
                tracing::warn!(lease, "the session lease expired");
                session.cancel();
                return;
            }
            Ok(Err(e)) if tokio::time::Instant::now() < deadline(last_ok) => {
                tracing::debug!(error = %Report(&e), "renewing the session lease failed; retrying");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %Report(&e), "cannot renew the session lease within its TTL");
                session.cancel();
                return;
            }
            Err(_) => {
                tracing::warn!(
                    ttl = ?options.lease_ttl,
                    "the session lease was not renewed within its TTL (the store does not answer)"
                );
                session.cancel();
                return;
            }
        }
    }
}

/// Campaigns and leads for as long as the session lives.
#[allow(clippy::too_many_arguments)]
async fn lead_while(
    state: &AppState,
    identity: &ServerIdentity,
    value: &[u8],
    lease: LeaseId,
    session: &CancellationToken,
    leadership: &Leadership,
    controllers: &Controllers,
    retry: Duration,
) {
    loop {
        if session.is_cancelled() || state.shutdown.is_cancelled() {
            return;
        }
        let term = match state
            .registry
            .create_leased(LEADER_KEY, value.to_vec(), lease)
            .await
        {
            Ok(Ok(kv)) => kv.mod_revision,
            // Ours already (a campaign whose answer was lost, then retried).
            Ok(Err(Some(holder))) if holder.lease == Some(lease) => holder.mod_revision,
            Ok(Err(holder)) => {
                follow(state, holder, session, retry).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %Report(&e), "campaign for the lead failed; retrying");
                if sleep_or_shutdown(state, retry).await {
                    return;
                }
                continue;
            }
        };
        lead(
            state,
            identity,
            term,
            lease,
            session,
            leadership,
            controllers,
        )
        .await;
    }
}

/// Waits while another server leads: until its key is deleted (or changes hands), the
/// session ends, or `retry` passes with no news (a missed event costs one retry).
async fn follow(
    state: &AppState,
    holder: Option<KeyValue>,
    session: &CancellationToken,
    retry: Duration,
) {
    let Some(holder) = holder else { return };
    let Ok(mut watch) = state
        .store()
        .watch(LEADER_KEY, holder.mod_revision + 1)
        .await
    else {
        sleep_or_shutdown(state, retry).await;
        return;
    };
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = session.cancelled() => return,
            () = tokio::time::sleep(retry * 3) => return,
            event = watch.next() => match event {
                Some(Ok(e)) if e.kv.key == LEADER_KEY && e.kind == EventKind::Delete => return,
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// One term: runs the controllers on a fenced state until the term ends.
async fn lead(
    state: &AppState,
    identity: &ServerIdentity,
    term: store::Revision,
    lease: LeaseId,
    session: &CancellationToken,
    leadership: &Leadership,
    controllers: &Controllers,
) {
    let ends = state.shutdown.child_token();
    let fence = Fence {
        key: LEADER_KEY.to_owned(),
        revision: term,
        term: ends.clone(),
    };
    let mut fenced = state.clone();
    fenced.registry = state.registry.fenced(fence);
    fenced.shutdown = ends.clone();
    tracing::info!(server = %identity.name, term, "leading: starting the controllers");
    let record = AuditRecord {
        time: now_rfc3339(),
        actor: format!("system:server/{}", identity.name),
        verb: "lead".to_owned(),
        kind: "Server".to_owned(),
        name: identity.name.clone(),
        ..AuditRecord::default()
    };
    if let Err(e) = fenced.registry.append_audit(&record).await {
        tracing::warn!(error = %Report(&e), "cannot record the new term in the audit log");
    }
    // Said once the term's own writes are done, so that whoever waits for the lead (tests,
    // say) sees a store the election no longer changes.
    leadership.set(Some(term));
    state.metrics.set_leader(true);
    let tasks = controllers(fenced);
    let watch = state.store().watch(LEADER_KEY, term + 1).await;
    match watch {
        Ok(mut watch) => loop {
            tokio::select! {
                () = ends.cancelled() => break,
                () = session.cancelled() => break,
                event = watch.next() => match event {
                    Some(Ok(e)) if e.kv.key == LEADER_KEY
                        && (e.kind == EventKind::Delete || e.kv.lease != Some(lease)) => break,
                    Some(Ok(_)) => {}
                    // The watch broke: ask the key itself before going on.
                    _ => match state.store().get(LEADER_KEY).await {
                        Ok((Some(kv), _)) if kv.mod_revision == term => {
                            match state.store().watch(LEADER_KEY, term + 1).await {
                                Ok(w) => watch = w,
                                Err(_) => break,
                            }
                        }
                        _ => break,
                    },
                },
            }
        },
        Err(e) => {
            tracing::warn!(error = %Report(&e), "cannot watch the leader key; stepping down");
        }
    }
    ends.cancel();
    leadership.set(None);
    state.metrics.set_leader(false);
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    if !state.shutdown.is_cancelled() {
        tracing::warn!(server = %identity.name, term, "no longer leading: controllers stopped");
    }
}

/// Sleeps `d`; true when the server shuts down meanwhile.
async fn sleep_or_shutdown(state: &AppState, d: Duration) -> bool {
    tokio::select! {
        () = state.shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// `GET /meridian/v1/servers`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/meridian/v1/servers", get(list_servers))
}

/// The replicas and which one leads. For global principals (not nodes, not project
/// tokens): the servers' addresses are the operators' business.
async fn list_servers(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    if who.role == Role::Node || who.project.is_some() {
        return Err(ApiError::forbidden(format!(
            "token {} (role {}) cannot list servers: it needs a role without project scope (admin, operator or viewer)",
            who.id,
            who.role.as_str()
        )));
    }
    let store = state.store();
    let (leader, _) = store.get(LEADER_KEY).await?;
    let leader: Option<(ServerIdentity, store::Revision)> = leader.and_then(|kv| {
        serde_json::from_slice(&kv.value)
            .ok()
            .map(|id| (id, kv.mod_revision))
    });
    let kvs = store.read_prefix(SERVERS_PREFIX).await?;
    let items: Vec<Value> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<ServerIdentity>(&kv.value).ok())
        .map(|id| {
            let term = leader
                .as_ref()
                .filter(|(l, _)| l.name == id.name)
                .map(|(_, term)| *term);
            let mut item = serde_json::to_value(&id).expect("identity serializes");
            item["leader"] = json!(term.is_some());
            if let Some(term) = term {
                item["term"] = json!(term);
            }
            item
        })
        .collect();
    Ok(Json(json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "ServerList",
        "leader": leader.map(|(l, _)| l.name),
        "items": items,
    })))
}
