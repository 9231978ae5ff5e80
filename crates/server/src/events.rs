//! The event recorder: what happened to objects, as `Event`s (see [`api::event`] for the
//! shape), written so that a crash loop cannot flood the store.
//!
//! # Calling it
//!
//! Controllers call [`Recorder::record`] on `state.events`; it never blocks and never
//! fails:
//!
//! ```ignore
//! use api::{EventType, ObjectReference};
//! // in the scheduler, after committing a node's allocations:
//! state.events.record(
//!     &ObjectReference::of(&allocation),        // or ObjectReference::new(kinds::WORKLOAD, Some(ns), name, uid)
//!     EventType::Normal,
//!     "Scheduled",
//!     format!("placed {name} on {node} in {site}"),
//!     "scheduler",                              // source component; the audit actor is system:scheduler
//! );
//! // when nothing fits: Warning "FailedScheduling" with the explanation's summary;
//! // preemption: Normal "Preempted" on the evicted allocation.
//! ```
//!
//! The involved object's `uid` should be set (`ObjectReference::of` does it): `kubectl
//! describe` finds events by name, namespace, kind and uid. Agents record through
//! `POST /meridian/v1/events` ([`routes`], `client::Client::record_event`): a node
//! credential only about allocations on its own node, with `source.host` set by the
//! server to the node's name.
//!
//! # What happens to a record
//!
//! [`Recorder::record`] puts the occurrence on a bounded channel (full: dropped and
//! counted as `meridian_events{outcome="dropped_queue_full"}`). One background task owns
//! everything else:
//!
//! - **Series** (client-go's `EventLogger`): occurrences with the same involved object,
//!   type, reason, message and source are one Event whose `count` grows and whose
//!   `lastTimestamp` moves; a series idle for the dedup window (10 min, or the TTL when
//!   shorter) is forgotten, and the next occurrence starts a new Event.
//! - **Rate limit** (client-go's `EventSourceObjectSpamFilter`): a token bucket per
//!   involved object (burst 25, one token every 5 s) pays for each *new* series; a new
//!   series without a token is dropped (`dropped_rate_limited`). Repeats of a known series
//!   cost no token: they only move its count, so a crash loop writing the same message
//!   is one Event with an exact count, and a flood of distinct messages about one object
//!   is capped at the burst plus the refill.
//! - **Writes**: every flush interval (1 s) each changed series is written once, through
//!   [`Registry::commit`] like every write, one transaction per project per flush (with a
//!   guard that the project exists) and one audit entry per Event, attributed to
//!   `system:<component>` (or to the node credential that posted it). So a series costs
//!   at most one write per flush interval however often it happens.
//! - **Expiry**: a sweep (every TTL/4, between 250 ms and 1 min) deletes Events whose
//!   `lastTimestamp` is older than the TTL (default 1 h, `EventOptions::ttl`), each delete
//!   guarded by the revision it read and audited. kube-apiserver attaches events to etcd
//!   leases instead; here a lease's expiry would delete objects under `/registry/` with no
//!   audit entry (the store knows no audit log), breaking invariant 4, and an Event whose
//!   series goes on would need a new lease at every update. The sweep reads only the
//!   events prefix, which the rate limit and the TTL keep small.
//!
//! Recorder writes skip admission (an admission denial is itself recorded as an event)
//! and are not validated by the API: the recorder truncates messages to 1,024 bytes and
//! callers pass CamelCase reasons. Events of global objects (Nodes, Sites) go in the
//! `default` project. The in-memory state is per server process: after a restart a
//! repeating event starts a new series.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use api::event::{Event, EventRecord, EventSource, EventType, ObjectReference, truncate_message};
use api::kinds::{EVENT, PROJECT};
use store::{Compare, Op, RangeRequest};

use crate::app::AppState;
use crate::auth::{Principal, Role, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::registry::{self, AuditRecord, Mutation, Registry, object_key};

/// How the recorder deduplicates, rate-limits, writes and expires events.
#[derive(Clone, Debug)]
pub struct EventOptions {
    /// Events whose last occurrence is older are deleted (default 1 h).
    pub ttl: Duration,
    /// Changed series are written at most once per interval (default 1 s).
    pub flush_interval: Duration,
    /// New series an involved object may start at once (default 25).
    pub burst: u32,
    /// One more new series per this interval (default 5 s).
    pub refill_every: Duration,
    /// Occurrences queued for the recorder task before new ones are dropped (4,096).
    pub queue: usize,
    /// Series and buckets kept in memory at most (10,000).
    pub max_series: usize,
    /// `false`: `record` drops everything (benchmarks compare with it).
    pub enabled: bool,
}

impl Default for EventOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            flush_interval: Duration::from_secs(1),
            burst: 25,
            refill_every: Duration::from_secs(5),
            queue: 4096,
            max_series: 10_000,
            enabled: true,
        }
    }
}

impl EventOptions {
    /// How long an idle series is remembered (its next occurrence then starts a new Event).
    fn dedup_window(&self) -> Duration {
        self.ttl.min(Duration::from_secs(600))
    }

    fn sweep_every(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(60))
    }
}

enum Message {
    Record(Box<Occurrence>),
    /// Write every pending change now, then answer (tests, shutdown).
    Flush(oneshot::Sender<()>),
}

struct Occurrence {
    involved: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
    source: EventSource,
    actor: Principal,
}

/// Records events without blocking its caller. Cheap to clone; held in `AppState` as
/// `events`.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
    metrics: Metrics,
    enabled: bool,
}

impl Recorder {
    /// Starts the recorder's task (series, writes, expiry sweep). It stops when
    /// `shutdown` is cancelled, after writing what is pending.
    pub fn start(
        registry: Registry,
        metrics: Metrics,
        options: EventOptions,
        shutdown: CancellationToken,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let enabled = options.enabled;
        let task = Task {
            registry,
            metrics: metrics.clone(),
            options,
            series: HashMap::new(),
            buckets: HashMap::new(),
            last_name: 0,
        };
        tokio::spawn(task.run(rx, shutdown));
        Recorder {
            tx,
            metrics,
            enabled,
        }
    }

    /// Records that `reason` happened to `involved`, reported by the server component
    /// `source` (`scheduler`, `rollout`, `admission`, `drain`): the audit log names
    /// `system:<source>`. Never blocks; `message` is cut to 1,024 bytes.
    pub fn record(
        &self,
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
        source: &str,
    ) {
        self.record_as(
            &system_principal(source),
            involved,
            type_,
            reason,
            message.into(),
            EventSource {
                component: source.to_owned(),
                host: String::new(),
            },
        );
    }

    /// Like [`Recorder::record`] on behalf of an authenticated caller (the audit actor)
    /// with a full source (component and host).
    pub fn record_as(
        &self,
        who: &Principal,
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: String,
        source: EventSource,
    ) {
        if !self.enabled {
            return;
        }
        let occurrence = Occurrence {
            involved: involved.clone(),
            type_,
            reason: reason.to_owned(),
            message: truncate_message(message),
            source,
            actor: who.clone(),
        };
        match self.tx.try_send(Message::Record(Box::new(occurrence))) {
            Ok(()) => self.metrics.events("recorded", 1),
            Err(_) => self.metrics.events("dropped_queue_full", 1),
        }
    }

    /// Waits until everything recorded before the call is written (tests; a shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The audit identity of a server component: `system:<component>`, as the scheduler's.
pub fn system_principal(component: &str) -> Principal {
    Principal {
        id: format!("system:{component}"),
        role: Role::Admin,
        project: None,
        node: None,
        site: None,
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    involved: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
    source: EventSource,
}

struct Series {
    name: String,
    uid: String,
    count: i32,
    first: String,
    last: String,
    /// Changed since it was last written.
    dirty: bool,
    /// Written at least once (the next write is an update).
    stored: bool,
    seen: Instant,
    actor: Principal,
}

/// A token bucket per involved object.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The involved object's identity for rate limiting (not its uid: a deleted and
/// recreated object shares its predecessor's budget).
type ObjectKey = (String, Option<String>, String);

struct Task {
    registry: Registry,
    metrics: Metrics,
    options: EventOptions,
    series: HashMap<SeriesKey, Series>,
    buckets: HashMap<ObjectKey, Bucket>,
    last_name: i128,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>, shutdown: CancellationToken) {
        let mut flush = tokio::time::interval(self.options.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(self.options.sweep_every());
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Record(o)) => self.observe(*o),
                    Some(Message::Flush(done)) => {
                        while let Ok(m) = rx.try_recv() {
                            match m {
                                Message::Record(o) => self.observe(*o),
                                Message::Flush(other) => { let _ = other.send(()); }
                            }
                        }
                        self.write().await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = flush.tick() => self.write().await,
                _ = sweep.tick() => {
                    self.forget_idle();
                    self.expire().await;
                }
                () = shutdown.cancelled() => break,
            }
        }
        while let Ok(Message::Record(o)) = rx.try_recv() {
            self.observe(*o);
        }
        self.write().await;
    }

    fn observe(&mut self, o: Occurrence) {
        let now = registry::now_rfc3339();
        let key = SeriesKey {
            involved: o.involved,
            type_: o.type_,
            reason: o.reason,
            message: o.message,
            source: o.source,
        };
        if let Some(series) = self.series.get_mut(&key) {
            series.count = series.count.saturating_add(1);
            series.last = now;
            series.dirty = true;
            series.seen = Instant::now();
            self.metrics.events("deduplicated", 1);
            return;
        }
        if !self.take_token(&key.involved) || self.series.len() >= self.options.max_series {
            self.metrics.events("dropped_rate_limited", 1);
            return;
        }
        let name = self.name_for(&key.involved.name);
        self.series.insert(
            key,
            Series {
                name,
                uid: uuid::Uuid::new_v4().to_string(),
                count: 1,
                first: now.clone(),
                last: now,
                dirty: true,
                stored: false,
                seen: Instant::now(),
                actor: o.actor,
            },
        );
    }

    fn take_token(&mut self, involved: &ObjectReference) -> bool {
        let now = Instant::now();
        let burst = f64::from(self.options.burst);
        let refill = self.options.refill_every.as_secs_f64().max(1e-3);
        if self.buckets.len() >= self.options.max_series {
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() / refill < burst);
        }
        let bucket = self
            .buckets
            .entry((
                involved.kind.clone(),
                involved.namespace.clone(),
                involved.name.clone(),
            ))
            .or_insert(Bucket {
                tokens: burst,
                at: now,
            });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() / refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `{object}.{nanoseconds since the epoch, hex}`, as Kubernetes names events, unique
    /// within this recorder; the object's part is cut so the name stays within 253.
    fn name_for(&mut self, object: &str) -> String {
        let nanos = jiff::Timestamp::now()
            .as_nanosecond()
            .max(self.last_name + 1);
        self.last_name = nanos;
        let mut prefix = object.to_owned();
        let mut end = prefix.len().min(253 - 1 - 32);
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        prefix.truncate(end);
        let prefix = prefix.trim_end_matches(['.', '-']);
        format!("{prefix}.{nanos:x}")
    }

    fn forget_idle(&mut self) {
        let window = self.options.dedup_window();
        self.series
            .retain(|_, s| s.dirty || s.seen.elapsed() < window);
    }

    /// Writes every changed series: transactions per project, guarded by the project's
    /// existence, at most 256 events each and no more than the store's operation limit
    /// holds (etcd's --max-txn-ops: 63 at its default of 128).
    async fn write(&mut self) {
        let mut by_project: HashMap<String, Vec<SeriesKey>> = HashMap::new();
        for (key, series) in &self.series {
            if series.dirty {
                by_project
                    .entry(key.involved.event_namespace().to_owned())
                    .or_default()
                    .push(key.clone());
            }
        }
        // Shared: the project's guard; each event: a put and its audit entry.
        let per_commit = self.registry.batch_len((1, 0, 0), (0, 1, 1), 256);
        for (project, keys) in by_project {
            for chunk in keys.chunks(per_commit) {
                self.write_chunk(&project, chunk).await;
            }
        }
    }

    async fn write_chunk(&mut self, project: &str, keys: &[SeriesKey]) {
        let mut ops = Vec::with_capacity(keys.len());
        let mut audit: Vec<AuditRecord> = Vec::with_capacity(keys.len());
        for key in keys {
            let series = &self.series[key];
            let event = event_of(project, key, series);
            let value = serde_json::to_value(&event).expect("events serialize");
            let bytes = registry::encode(&value);
            audit.push(Registry::audit_record(
                &series.actor,
                if series.stored { "update" } else { "create" },
                EVENT,
                Some(project),
                &series.name,
                Some(&bytes),
            ));
            ops.push(Op::put(
                object_key(EVENT, Some(project), &series.name),
                bytes,
            ));
        }
        let first = audit.remove(0);
        let mut mutation = Mutation::new(
            vec![Compare::Exists(object_key(PROJECT, None, project))],
            ops,
            first,
        );
        mutation.more_audit = audit;
        let outcome = self.registry.commit(mutation).await;
        let n = keys.len() as u64;
        match outcome {
            Ok(r) if r.succeeded => {
                self.metrics.events("written", n);
                for key in keys {
                    if let Some(s) = self.series.get_mut(key) {
                        s.dirty = false;
                        s.stored = true;
                    }
                }
            }
            Ok(_) => {
                // The project is gone: its events go with it.
                self.metrics.events("write_failed", n);
                for key in keys {
                    self.series.remove(key);
                }
            }
            Err(e) => {
                // Kept dirty: the next flush tries again.
                self.metrics.events("write_failed", n);
                tracing::warn!(project, error = %e, "cannot write events");
            }
        }
    }

    /// Deletes events whose last occurrence is older than the TTL, each guarded by the
    /// revision read, in transactions of at most 256 (fewer where the store's operation
    /// limit says so).
    async fn expire(&mut self) {
        let Ok(ttl) = jiff::SignedDuration::try_from(self.options.ttl) else {
            return;
        };
        let cutoff = jiff::Timestamp::now() - ttl;
        let prefix = format!("/registry/{}/", EVENT.plural);
        let mut start_after = None;
        let mut expired: Vec<(String, i64, Option<String>, String)> = Vec::new();
        loop {
            let page = match self
                .registry
                .reads()
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: 1000,
                    count_only: false,
                })
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read events to expire");
                    return;
                }
            };
            for kv in &page.kvs {
                let Ok(event) = serde_json::from_slice::<Event>(&kv.value) else {
                    continue;
                };
                let old = event
                    .last_seen()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_none_or(|t| t < cutoff);
                if old {
                    expired.push((
                        kv.key.clone(),
                        kv.mod_revision,
                        event.metadata.namespace.clone(),
                        event.metadata.name.clone(),
                    ));
                }
            }
            if !page.more {
                break;
            }
            start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
        let who = system_principal("events");
        // Each expiry: a guard, a delete and its audit entry.
        let per_commit = self.registry.batch_len((0, 0, 0), (1, 1, 1), 256);
        for chunk in expired.chunks(per_commit) {
            let mut audit: Vec<AuditRecord> = chunk
                .iter()
                .map(|(_, _, ns, name)| {
                    Registry::audit_record(&who, "delete", EVENT, ns.as_deref(), name, None)
                })
                .collect();
            let first = audit.remove(0);
            let mut mutation = Mutation::new(
                chunk
                    .iter()
                    .map(|(k, rev, _, _)| Compare::ModRevision(k.clone(), *rev))
                    .collect(),
                chunk.iter().map(|(k, ..)| Op::Delete(k.clone())).collect(),
                first,
            );
            mutation.more_audit = audit;
            match self.registry.commit(mutation).await {
                Ok(r) if r.succeeded => self.metrics.events("expired", chunk.len() as u64),
                // One changed since it was read: the next sweep sees it again.
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot expire events"),
            }
        }
    }
}

fn event_of(project: &str, key: &SeriesKey, series: &Series) -> Event {
    let mut event = Event::new(
        series.name.clone(),
        key.involved.clone(),
        key.type_,
        key.reason.clone(),
        key.message.clone(),
        key.source.clone(),
        &series.first,
    );
    event.metadata.namespace = Some(project.to_owned());
    event.metadata.uid = Some(series.uid.clone());
    event.metadata.creation_timestamp = Some(series.first.clone());
    event.count = series.count;
    event.last_timestamp = Some(series.last.clone());
    event
}

/// Records a Warning `PolicyDenied` event about an object whose create, update or delete
/// admission refused (`objects.rs` calls it), attributed to `system:admission`.
pub fn record_denial(
    state: &AppState,
    who: &Principal,
    operation: policy::Operation,
    object: Option<&Value>,
    message: &str,
) {
    let Some(involved) = object.and_then(ObjectReference::of_value) else {
        return;
    };
    let verb = match operation {
        policy::Operation::Create => "create",
        policy::Operation::Update => "update",
        policy::Operation::Delete => "delete",
    };
    state.events.record(
        &involved,
        EventType::Warning,
        "PolicyDenied",
        format!("{verb} by {} denied: {message}", who.id),
        "admission",
    );
}

// ---- the HTTP door: POST /meridian/v1/events ----

pub fn routes() -> Router<AppState> {
    Router::new().route("/meridian/v1/events", post(record_handler))
}

/// Records an [`EventRecord`] through the recorder (202: queued). A node credential may
/// record events only about allocations on its own node (Kubernetes' NodeRestriction for
/// events): the server reads the allocation, takes its namespace and uid from the store
/// and sets `source.host` to the node; other principals need `create` on `events` in the
/// involved object's project.
async fn record_handler(
    State(state): State<AppState>,
    who: Principal,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // Authorization that needs no body first: viewers and unknown roles stop here.
    if who.role == Role::Viewer {
        authorize(&who, Verb::Create, EVENT, who.project.as_deref(), None)?;
    }
    let record: EventRecord = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the event record is not valid: {e}")))?;
    check_record(&record)?;
    let mut involved = record.involved_object;
    let mut source = EventSource {
        component: if record.component.is_empty() {
            "meridian-agent".to_owned()
        } else {
            record.component
        },
        host: String::new(),
    };
    if who.role == Role::Node {
        let node = who.node.clone().unwrap_or_default();
        involved = crate::node_restriction::check_event(&state, &who, &node, &involved).await?;
        source.host = node;
    } else {
        let ns = involved.event_namespace().to_owned();
        authorize(&who, Verb::Create, EVENT, Some(&ns), None)?;
    }
    state.events.record_as(
        &who,
        &involved,
        record.type_,
        &record.reason,
        record.message,
        source,
    );
    let mut status = api::Status::success();
    status.code = 202;
    status.message = "queued for the event recorder".to_owned();
    Ok((StatusCode::ACCEPTED, axum::Json(status)).into_response())
}

fn check_record(record: &EventRecord) -> ApiResult<()> {
    let o = &record.involved_object;
    let mut problems = Vec::new();
    if o.kind.is_empty() || o.name.is_empty() {
        problems.push("involvedObject.kind and involvedObject.name are required".to_owned());
    }
    if record.reason.len() > api::event::MAX_REASON_BYTES
        || !api::event::is_camel_case(&record.reason)
    {
        problems.push(format!(
            "reason {:?} must be CamelCase (FailedScheduling), at most {} bytes",
            record.reason,
            api::event::MAX_REASON_BYTES
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(problems.join("; ")))
    }
}
