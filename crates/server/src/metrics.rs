//! Prometheus metrics: request counts and latency by route and status, store commit
//! latency, open watches, open connections and why connections closed, the store's
//! disk-space state (`meridian_store_no_space`, 0 or 1, and
//! `meridian_store_writes_refused_no_space_total`, read from the store when scraped).
//! Rendered in the text exposition format at `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// One policy's part in one admission decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    enforcement: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CohortLabels {
    cohort: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// All server metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    commit: Histogram,
    watches: Gauge<i64, AtomicI64>,
    sched_pass: Histogram,
    sched_placed: Counter,
    sched_unplaceable: Gauge<i64, AtomicI64>,
    sched_pending: Gauge<i64, AtomicI64>,
    sched_conflicts: Counter,
    admission: Histogram,
    admission_denied: Counter,
    admission_decisions: Family<DecisionLabels, Counter>,
    admission_audit: Family<EventLabels, Counter>,
    store_no_space: Gauge<i64, AtomicI64>,
    leader: Gauge<i64, AtomicI64>,
    leader_terms: Counter,
    store_size: Gauge<i64, AtomicI64>,
    queue_pending: Family<QueueLabels, Gauge<i64, AtomicI64>>,
    queue_admitted: Family<QueueLabels, Gauge<i64, AtomicI64>>,
    queue_share: Family<QueueLabels, Gauge<i64, AtomicI64>>,
    cohort_share: Family<CohortLabels, Gauge<i64, AtomicI64>>,
    store_refused: Counter<u64, AtomicU64>,
    connections: Gauge<i64, AtomicI64>,
    connections_max: Gauge<i64, AtomicI64>,
    connections_closed: Family<CloseLabels, Counter>,
    events: Family<EventLabels, Counter>,
    watches_opened: Family<SourceLabels, Counter>,
    watch_lagged: Counter,
    lists: Family<SourceLabels, Counter>,
    gets: Family<SourceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meridian");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let commit = latency_histogram();
        let watches = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template and method (watches: until headers)",
            latency.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Latency of durable store transactions issued by the API",
            commit.clone(),
        );
        registry.register("watches", "Open watch streams", watches.clone());
        let sched_pass = latency_histogram();
        let sched_placed = Counter::default();
        let sched_unplaceable = Gauge::<i64, AtomicI64>::default();
        let sched_pending = Gauge::<i64, AtomicI64>::default();
        let sched_conflicts = Counter::default();
        registry.register(
            "scheduler_pass_duration_seconds",
            "Duration of scheduler passes (read, place, commit)",
            sched_pass.clone(),
        );
        registry.register(
            "scheduler_placements",
            "Allocations committed by the scheduler",
            sched_placed.clone(),
        );
        registry.register(
            "scheduler_unplaceable_instances",
            "Instances the last pass could not place",
            sched_unplaceable.clone(),
        );
        registry.register(
            "scheduler_pending_instances",
            "Instances without an allocation at the start of the last pass",
            sched_pending.clone(),
        );
        registry.register(
            "scheduler_conflicts",
            "Node transactions that lost a race and were planned again",
            sched_conflicts.clone(),
        );
        // 10 µs .. 0.25 s in steps of 1.5x: admission is CPU work measured in
        // microseconds, and its p50 and p99 should be readable from the buckets.
        let admission = Histogram::new(exponential_buckets(0.00001, 1.5, 26));
        let admission_denied = Counter::default();
        registry.register(
            "admission_duration_seconds",
            "Time policy admission adds to a write (requests checked against at least one policy)",
            admission.clone(),
        );
        registry.register(
            "admission_denied",
            "Writes refused by a deny policy (or a broken one)",
            admission_denied.clone(),
        );
        let admission_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "admission_decisions",
            "Admission decisions by policy, its enforcement and the outcome (denied: the \
             policy refused the request; warned: it let the request through with a warning), \
             one per policy and request",
            admission_decisions.clone(),
        );
        let admission_audit = Family::<EventLabels, Counter>::default();
        registry.register(
            "admission_audit_entries",
            "Admission denials for the audit log, by outcome (appended, suppressed: over the \
             actor's rate and counted in its next entry, failed: the store refused the append)",
            admission_audit.clone(),
        );
        let store_no_space = Gauge::<i64, AtomicI64>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        let leader_terms = Counter::default();
        let store_size = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "store_size_bytes",
            "Size of the store on disk (SQLite: database and WAL); absent on etcd (see etcd's \
             etcd_mvcc_db_total_size_in_bytes)",
            store_size.clone(),
        );
        registry.register(
            "leader",
            "1 while this server leads (runs the controllers), else 0",
            leader.clone(),
        );
        registry.register(
            "leader_terms",
            "Terms this server has won (leader elections) since it started",
            leader_terms.clone(),
        );
        let queue_pending = Family::<QueueLabels, Gauge<i64, AtomicI64>>::default();
        let queue_admitted = Family::<QueueLabels, Gauge<i64, AtomicI64>>::default();
        let queue_share = Family::<QueueLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "queue_pending_workloads",
            "Jobs waiting for admission, by queue (as of the leader's last scheduler pass)",
            queue_pending.clone(),
        );
        registry.register(
            "queue_admitted_workloads",
            "Jobs admitted (holding quota), by queue",
            queue_admitted.clone(),
        );
        registry.register(
            "queue_weighted_share",
            "Fair sharing: what a queue borrows as thousandths of what its cohort lends, \
             divided by its weight (0 when it borrows nothing)",
            queue_share.clone(),
        );
        let cohort_share = Family::<CohortLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "cohort_weighted_share",
            "Fair sharing in a cohort tree: what a cohort's subtree borrows from its parent as \
             thousandths of the parent's quota, divided by its weight (0 at a root)",
            cohort_share.clone(),
        );
        let store_refused = Counter::<u64, AtomicU64>::default();
        registry.register(
            "store_no_space",
            "1 while the store refuses writes because its disk is full (NOSPACE), else 0",
            store_no_space.clone(),
        );
        registry.register(
            "store_writes_refused_no_space",
            "Store requests refused because its disk is full",
            store_refused.clone(),
        );
        let connections = Gauge::<i64, AtomicI64>::default();
        let connections_max = Gauge::<i64, AtomicI64>::default();
        let connections_closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "connections_max",
            "Most client connections open at once (--max-connections)",
            connections_max.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections closed, by reason (client, error, header_timeout, idle_timeout, \
             evicted, rejected, tls_handshake, shutdown)",
            connections_closed.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Events handed to the recorder, by outcome (recorded, deduplicated, written, \
             dropped_queue_full, dropped_rate_limited, write_failed, expired)",
            events.clone(),
        );
        let watches_opened = Family::<SourceLabels, Counter>::default();
        registry.register(
            "watches_opened",
            "Watch streams opened, by what serves them (hub: the server's shared watch; \
             store: a store watch of their own, from before the hub's window)",
            watches_opened.clone(),
        );
        let lists = Family::<SourceLabels, Counter>::default();
        registry.register(
            "lists",
            "Lists served, by where their pages came from (cache: the server's list cache; \
             store: the store)",
            lists.clone(),
        );
        let gets = Family::<SourceLabels, Counter>::default();
        registry.register(
            "gets",
            "Single objects read, by where they came from (cache: the server's list cache, \
             for a GET with resourceVersion; store: the store)",
            gets.clone(),
        );
        let watch_lagged = Counter::default();
        registry.register(
            "watch_hub_lagged",
            "Watchers the shared watch cut off for falling behind",
            watch_lagged.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                commit,
                watches,
                sched_pass,
                sched_placed,
                sched_unplaceable,
                sched_pending,
                sched_conflicts,
                admission,
                admission_denied,
                admission_decisions,
                admission_audit,
                store_no_space,
                leader,
                leader_terms,
                store_size,
                queue_pending,
                queue_admitted,
                queue_share,
                cohort_share,
                store_refused,
                connections,
                connections_max,
                connections_closed,
                events,
                watches_opened,
                watch_lagged,
                lists,
                gets,
            }),
        }
    }

    pub fn observe_request(&self, route: &str, method: &str, code: u16, elapsed: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_commit(&self, elapsed: Duration) {
        self.inner.commit.observe(elapsed.as_secs_f64());
    }

    /// Records one admission decision.
    pub fn observe_admission(&self, elapsed: Duration, allowed: bool) {
        self.inner.admission.observe(elapsed.as_secs_f64());
        if !allowed {
            self.inner.admission_denied.inc();
        }
    }

    /// Counts one policy's part in an admission decision (`enforcement`: `deny` or
    /// `warn`; `outcome`: `denied` or `warned`).
    pub fn admission_decision(
        &self,
        policy: &str,
        enforcement: &'static str,
        outcome: &'static str,
    ) {
        self.inner
            .admission_decisions
            .get_or_create(&DecisionLabels {
                policy: policy.to_owned(),
                enforcement,
                outcome,
            })
            .inc();
    }

    /// Counts what became of an admission denial's audit entry.
    pub fn admission_audit(&self, outcome: &'static str) {
        self.inner
            .admission_audit
            .get_or_create(&EventLabels { outcome })
            .inc();
    }

    /// Records one scheduler pass.
    pub fn observe_pass(
        &self,
        elapsed: Duration,
        pending: usize,
        placed: usize,
        unplaceable: usize,
        conflicts: usize,
    ) {
        let i = &self.inner;
        i.sched_pass.observe(elapsed.as_secs_f64());
        i.sched_placed.inc_by(placed as u64);
        i.sched_conflicts.inc_by(conflicts as u64);
        i.sched_pending.set(pending as i64);
        i.sched_unplaceable.set(unplaceable as i64);
    }

    /// Copies the store's disk-space state (the store counts refusals itself).
    /// The queues' pending and admitted jobs and weighted shares after a scheduler pass:
    /// `(queue, pending, admitted, share)`; queues not listed are dropped.
    pub fn observe_queues(&self, queues: &[(String, u32, u32, u64)]) {
        let inner = &self.inner;
        inner.queue_pending.clear();
        inner.queue_admitted.clear();
        inner.queue_share.clear();
        for (queue, pending, admitted, share) in queues {
            let labels = QueueLabels {
                queue: queue.clone(),
            };
            inner
                .queue_pending
                .get_or_create(&labels)
                .set(i64::from(*pending));
            inner
                .queue_admitted
                .get_or_create(&labels)
                .set(i64::from(*admitted));
            inner
                .queue_share
                .get_or_create(&labels)
                .set(i64::try_from(*share).unwrap_or(i64::MAX));
        }
    }

    /// Each `Cohort` object's weighted share, as of the scheduler's last pass.
    pub fn observe_cohorts(&self, cohorts: &[(String, u64)]) {
        let family = &self.inner.cohort_share;
        family.clear();
        for (cohort, share) in cohorts {
            family
                .get_or_create(&CohortLabels {
                    cohort: cohort.clone(),
                })
                .set(i64::try_from(*share).unwrap_or(i64::MAX));
        }
    }

    /// Whether this server leads; a new term counts in `leader_terms`.
    pub fn set_leader(&self, leading: bool) {
        self.inner.leader.set(i64::from(leading));
        if leading {
            self.inner.leader_terms.inc();
        }
    }

    pub fn observe_store_space(&self, space: &store::SpaceStatus) {
        let i = &self.inner;
        i.store_no_space.set(i64::from(space.no_space.is_some()));
        if let Some(bytes) = space.size_bytes {
            i.store_size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        i.store_refused
            .inner()
            .fetch_max(space.refused_writes, Ordering::Relaxed);
    }

    pub(crate) fn set_max_connections(&self, max: usize) {
        self.inner
            .connections_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
    }

    pub(crate) fn connection_opened(&self) {
        self.inner.connections.inc();
    }

    /// An admitted connection is gone.
    pub(crate) fn connection_closed(&self) {
        self.inner.connections.dec();
    }

    /// Counts a connection that ended (or was refused), by reason.
    pub(crate) fn connection_ended(&self, reason: &'static str) {
        self.inner
            .connections_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }

    /// Counts a watch stream opened, by what serves it (`hub` or `store`).
    pub(crate) fn watch_opened(&self, source: &'static str) {
        self.inner
            .watches_opened
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    /// The count of watch streams opened from `source` so far (tests).
    #[cfg(test)]
    pub(crate) fn watches_opened(&self, source: &'static str) -> u64 {
        self.inner
            .watches_opened
            .get_or_create(&SourceLabels { source })
            .get()
    }

    /// Counts a list by where its pages came from.
    pub(crate) fn list_served(&self, source: &'static str) {
        self.inner
            .lists
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    /// Counts a GET by where its object came from.
    pub(crate) fn get_served(&self, source: &'static str) {
        self.inner
            .gets
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    /// Counts a watcher the shared watch cut off for falling behind.
    pub(crate) fn watch_lagged(&self) {
        self.inner.watch_lagged.inc();
    }

    /// Count an open watch until the guard drops.
    pub fn watch_guard(&self) -> WatchGuard {
        self.inner.watches.inc();
        WatchGuard {
            metrics: self.clone(),
        }
    }

    /// The text exposition.
    /// Counts `n` events of an outcome of the event recorder (`crate::events`).
    pub fn events(&self, outcome: &'static str, n: u64) {
        self.inner
            .events
            .get_or_create(&EventLabels { outcome })
            .inc_by(n);
    }

    /// The count of one event outcome so far (tests and benchmarks).
    pub fn events_count(&self, outcome: &'static str) -> u64 {
        self.inner
            .events
            .get_or_create(&EventLabels { outcome })
            .get()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Decrements the watch gauge when dropped.
pub struct WatchGuard {
    metrics: Metrics,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.metrics.inner.watches.dec();
    }
}
