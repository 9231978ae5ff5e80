//! The controllers' in-memory copy of the objects they decide on, kept current by a watch.
//!
//! Like a client-go informer (or the kube-apiserver's watch cache), an [`Informer`] lists
//! once and then follows one watch: a scheduler pass reads its [`Cache`] instead of the
//! whole desired state from the store, and each stored object is decoded once per
//! revision, when it changes, not once per pass.
//!
//! What is cached: sites, nodes, projects, workloads, allocations, queues, cohorts (decoded and
//! shared as `Arc`s), and the scheduler's per-node ledger revisions
//! ([`crate::scheduler::LEDGER_PREFIX`]). Allocations are cached slim ([`slim`]: without
//! `spec.explanation`, labels, annotations, and `spec.task` unless it has a health
//! check): controllers never read those, and never write a cached allocation back (they
//! create and delete allocations, guarded by revision).
//!
//! Soundness. The scheduler guards each node's placements with the node's ledger revision
//! and writes the ledger as the *last* operation of the transaction that creates the
//! allocations (`scheduler::commit_node`). Events of one transaction arrive in op order
//! (`store::conformance`), and the cache applies them in order, one watch for ledgers and
//! objects alike. So whatever prefix of the event history the cache holds, a ledger
//! revision it shows comes with every allocation that transaction wrote: a pass planned
//! on a cache that lags behind the store fails its ledger compare and plans again, it
//! never double-books a node. The same holds while listing, since ledgers are listed
//! before the objects (a placement committed after the ledger page bumps a ledger the
//! cache does not show yet).
//!
//! Freshness. A pass first asks the store for its current revision and waits until the
//! cache has applied that far ([`Informer::wait_for`]), so a pass sees every write that
//! happened before it started. A revision counts as applied only once every event of it
//! is (the store's watch streams come in chunks of whole revisions,
//! [`store::WatchStream::at_revision_end`]), so a pass never sees half a transaction (a consistent read, as the kube-apiserver's watch cache
//! gives with etcd's progress notifications). The watch covers the whole key space, so
//! every committed revision reaches the cache.
//!
//! Listing is in pages, each at its own revision: each key keeps the newest revision seen,
//! and the watch starts right after the first page's revision, so changes between pages
//! are replayed and the older of two versions never wins. A watch that falls behind or
//! hits compacted history lists again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::queue::{Cohort, Queue};
use api::{Allocation, Node, Project, Site, Workload};
use store::{Event, EventKind, KeyValue, Revision, StoreError};

use crate::error::ApiError;
use crate::registry::{self, ReadView};
use crate::scheduler::LEDGER_PREFIX;

/// Keys read per page while listing.
const PAGE: usize = 5_000;

/// Objects of one kind by store key (so in key order, as a range reads them), each with
/// its revision.
pub struct Objects<T> {
    by_key: BTreeMap<String, (Arc<T>, Revision)>,
    /// The revision of the newest put or delete seen (while listing: the newest
    /// `mod_revision`). With the count, it changes whenever any object of the kind does.
    changed: Revision,
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Self {
            by_key: BTreeMap::new(),
            changed: 0,
        }
    }
}

impl<T> Objects<T> {
    /// How many objects there are and the revision of the newest change among them.
    pub fn fingerprint(&self) -> (usize, Revision) {
        (self.by_key.len(), self.changed)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Each object with its revision, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<T>, Revision)> {
        self.by_key.values().map(|(o, r)| (o, *r))
    }

    fn put(&mut self, key: String, object: T, revision: Revision) {
        match self.by_key.get(&key) {
            // The listing saw a newer version than this replayed event.
            Some((_, held)) if *held >= revision => {}
            _ => {
                self.by_key.insert(key, (Arc::new(object), revision));
            }
        }
        self.changed = self.changed.max(revision);
    }

    fn delete(&mut self, key: &str, revision: Revision) {
        if let Some((_, held)) = self.by_key.get(key)
            && *held < revision
        {
            self.by_key.remove(key);
        }
        self.changed = self.changed.max(revision);
    }

    /// Whether the held version of `key` is at least `revision` (a replayed event older
    /// than what is held changes nothing, and need not be decoded).
    fn holds(&self, key: &str, revision: Revision) -> bool {
        self.by_key.get(key).is_some_and(|(_, r)| *r >= revision)
    }
}

/// What the scheduler decides on, as of one point of the store's history.
#[derive(Default)]
pub struct Cache {
    /// The newest revision applied (listing: the newest page's revision).
    pub revision: Revision,
    /// Each node's ledger revision, by node name.
    pub ledgers: HashMap<String, Revision>,
    pub sites: Objects<Site>,
    pub nodes: Objects<Node>,
    pub projects: Objects<Project>,
    pub workloads: Objects<Workload>,
    pub allocations: Objects<Allocation>,
    pub queues: Objects<Queue>,
    pub cohorts: Objects<Cohort>,
    /// Stored objects that do not decode, by key, with the error: a pass refuses to plan
    /// on a view with holes (as it did when it decoded the store's rows itself).
    pub broken: BTreeMap<String, String>,
}

/// Which cached kind a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Ledger,
    Site,
    Node,
    Project,
    Workload,
    Allocation,
    Queue,
    Cohort,
}

/// The prefixes the cache lists, ledgers first (see the module documentation).
fn slots() -> [(Slot, String); 8] {
    let kinds = |k| registry::kind_prefix(k, None);
    [
        (Slot::Ledger, LEDGER_PREFIX.to_owned()),
        (Slot::Site, kinds(api::kinds::SITE)),
        (Slot::Node, kinds(api::kinds::NODE)),
        (Slot::Project, kinds(api::kinds::PROJECT)),
        (Slot::Workload, kinds(api::kinds::WORKLOAD)),
        (Slot::Allocation, kinds(api::kinds::ALLOCATION)),
        (Slot::Queue, kinds(api::kinds::QUEUE)),
        (Slot::Cohort, kinds(api::kinds::COHORT)),
    ]
}

/// One change, decoded outside the cache's lock.
enum Change {
    Put(Slot, KeyValue, Option<Box<Decoded>>),
    Delete(Slot, String, Revision),
    Broken(String, Revision, String),
}

// Always boxed (`Change::Put`): the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Decoded {
    Site(Site),
    Node(Node),
    Project(Project),
    Workload(Workload),
    Allocation(Allocation),
    Queue(Queue),
    Cohort(Cohort),
}

/// A stored object decoded straight into its type (not through a `serde_json::Value`),
/// with its `resourceVersion`.
fn typed<S, T>(kv: &KeyValue) -> Result<api::kinds::Object<S, T>, String>
where
    api::kinds::Object<S, T>: serde::de::DeserializeOwned,
{
    let mut object: api::kinds::Object<S, T> = serde_json::from_slice(&kv.value)
        .map_err(|e| format!("stored object {} does not decode: {e}", kv.key))?;
    object.metadata.resource_version = Some(kv.mod_revision.to_string());
    Ok(object)
}

fn decode_as(slot: Slot, kv: &KeyValue) -> Result<Option<Box<Decoded>>, String> {
    Ok(Some(Box::new(match slot {
        Slot::Ledger => return Ok(None),
        Slot::Site => Decoded::Site(typed(kv)?),
        Slot::Node => Decoded::Node(typed(kv)?),
        Slot::Project => Decoded::Project(typed(kv)?),
        Slot::Workload => Decoded::Workload(compact(typed(kv)?)),
        Slot::Allocation => Decoded::Allocation(slim(typed(kv)?)),
        Slot::Queue => Decoded::Queue(typed(kv)?),
        Slot::Cohort => Decoded::Cohort(typed(kv)?),
    })))
}

/// An allocation as the cache keeps it: without what controllers never read of one.
/// Controllers never write a cached allocation back (they create and delete allocations,
/// guarded by revision), so nothing stored is lost. At 100,000 allocations this is about
/// 150 MB (BENCHMARKS.md, "Slim cached allocations"):
/// - `spec.explanation`: about half of a placed allocation's stored bytes;
/// - `spec.task`, unless it has a health check (`rollout` asks only whether it has one);
/// - labels and annotations (a map with one label takes a 544-byte tree node).
fn slim(mut a: Allocation) -> Allocation {
    a.spec.explanation = None;
    if a.spec.task.as_ref().is_some_and(|t| t.health.is_none()) {
        a.spec.task = None;
    }
    a.metadata.labels = BTreeMap::new();
    a.metadata.annotations = BTreeMap::new();
    a.metadata.managed_fields = Vec::new();
    a
}

/// A workload with its status's lists at their length: decoding grows a list to at least
/// four entries, and most workloads have two conditions and one revision. Nothing is left
/// out: the scheduler writes a workload's status back from the cached object.
fn compact(mut w: Workload) -> Workload {
    if let Some(status) = &mut w.status {
        status.conditions.shrink_to_fit();
        status.history.shrink_to_fit();
    }
    w
}

impl Cache {
    /// Lists every cached prefix, ledgers first. Returns the cache and the revision of
    /// the first page: a watch from the next revision misses nothing.
    pub async fn list(store: &ReadView) -> Result<(Cache, Revision), ApiError> {
        let mut cache = Cache::default();
        let mut first = None;
        for (slot, prefix) in slots() {
            store
                .for_each_page(&prefix, PAGE, |page| {
                    first.get_or_insert(page.revision);
                    cache.revision = cache.revision.max(page.revision);
                    let changes: Vec<Change> = crate::scheduler::compute(|| {
                        page.kvs
                            .into_iter()
                            .map(|kv| Change::of_put(slot, kv))
                            .collect()
                    });
                    for change in changes {
                        cache.apply(change);
                    }
                })
                .await?;
        }
        Ok((cache, first.unwrap_or(0)))
    }

    /// The changes `events` make, decoded outside any lock: an event older than the
    /// version held (replayed after a listing) is not decoded at all.
    fn changes(&self, events: Vec<Event>) -> Vec<(Event, Option<Slot>, bool)> {
        events
            .into_iter()
            .map(|e| {
                let slot = slot_of(&e.kv.key);
                let stale = slot.is_some_and(|s| {
                    e.kind == EventKind::Put && self.holds(s, &e.kv.key, e.kv.mod_revision)
                });
                (e, slot, stale)
            })
            .collect()
    }

    fn holds(&self, slot: Slot, key: &str, revision: Revision) -> bool {
        match slot {
            Slot::Ledger => false,
            Slot::Site => self.sites.holds(key, revision),
            Slot::Node => self.nodes.holds(key, revision),
            Slot::Project => self.projects.holds(key, revision),
            Slot::Workload => self.workloads.holds(key, revision),
            Slot::Allocation => self.allocations.holds(key, revision),
            Slot::Queue => self.queues.holds(key, revision),
            Slot::Cohort => self.cohorts.holds(key, revision),
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Put(Slot::Ledger, kv, _) => {
                if let Some(node) = kv.key.strip_prefix(LEDGER_PREFIX) {
                    let held = self.ledgers.entry(node.to_owned()).or_insert(0);
                    *held = (*held).max(kv.mod_revision);
                }
                self.broken.remove(&kv.key);
            }
            Change::Delete(Slot::Ledger, key, revision) => {
                // As for objects, a replayed delete older than the listed ledger is stale.
                if let Some(node) = key.strip_prefix(LEDGER_PREFIX)
                    && self.ledgers.get(node).is_some_and(|held| *held < revision)
                {
                    self.ledgers.remove(node);
                }
            }
            // A replayed older version: nothing to store.
            Change::Put(_, _, None) => {}
            Change::Put(_, kv, Some(object)) => {
                let revision = kv.mod_revision;
                self.broken.remove(&kv.key);
                let key = kv.key;
                match *object {
                    Decoded::Site(o) => self.sites.put(key, o, revision),
                    Decoded::Node(o) => self.nodes.put(key, o, revision),
                    Decoded::Project(o) => self.projects.put(key, o, revision),
                    Decoded::Workload(o) => self.workloads.put(key, o, revision),
                    Decoded::Allocation(o) => self.allocations.put(key, o, revision),
                    Decoded::Queue(o) => self.queues.put(key, o, revision),
                    Decoded::Cohort(o) => self.cohorts.put(key, o, revision),
                }
            }
            Change::Delete(slot, key, revision) => {
                self.broken.remove(&key);
                match slot {
                    Slot::Ledger => {}
                    Slot::Site => self.sites.delete(&key, revision),
                    Slot::Node => self.nodes.delete(&key, revision),
                    Slot::Project => self.projects.delete(&key, revision),
                    Slot::Workload => self.workloads.delete(&key, revision),
                    Slot::Allocation => self.allocations.delete(&key, revision),
                    Slot::Queue => self.queues.delete(&key, revision),
                    Slot::Cohort => self.cohorts.delete(&key, revision),
                }
            }
            Change::Broken(key, revision, error) => {
                tracing::error!(%key, revision, %error, "a stored object does not decode; scheduler passes stop until it is fixed");
                self.broken.insert(key, error);
            }
        }
    }

    /// Fails, saying which, when a cached object did not decode.
    pub fn check(&self) -> Result<(), String> {
        match self.broken.first_key_value() {
            None => Ok(()),
            Some((_, error)) => Err(error.clone()),
        }
    }
}

impl Change {
    fn of_put(slot: Slot, kv: KeyValue) -> Change {
        match decode_as(slot, &kv) {
            Ok(object) => Change::Put(slot, kv, object),
            Err(error) => Change::Broken(kv.key, kv.mod_revision, error),
        }
    }

    /// Decodes what [`Cache::changes`] planned (the CPU-bound part, without the lock).
    fn decode_all(planned: Vec<(Event, Option<Slot>, bool)>) -> Vec<Change> {
        planned
            .into_iter()
            .filter_map(|(e, slot, stale)| {
                let slot = slot?;
                Some(match (e.kind, stale) {
                    (EventKind::Put, true) => Change::Put(slot, e.kv, None),
                    (EventKind::Put, false) => Change::of_put(slot, e.kv),
                    (EventKind::Delete, _) => Change::Delete(slot, e.kv.key, e.kv.mod_revision),
                })
            })
            .collect()
    }
}

fn slot_of(key: &str) -> Option<Slot> {
    if key.starts_with(LEDGER_PREFIX) {
        return Some(Slot::Ledger);
    }
    let rest = key.strip_prefix("/registry/")?;
    let plural = &rest[..rest.find('/')?];
    Some(match plural {
        p if p == api::kinds::SITE.plural => Slot::Site,
        p if p == api::kinds::NODE.plural => Slot::Node,
        p if p == api::kinds::PROJECT.plural => Slot::Project,
        p if p == api::kinds::WORKLOAD.plural => Slot::Workload,
        p if p == api::kinds::ALLOCATION.plural => Slot::Allocation,
        p if p == api::kinds::QUEUE.plural => Slot::Queue,
        p if p == api::kinds::COHORT.plural => Slot::Cohort,
        _ => return None,
    })
}

/// A [`Cache`] kept current by a watch of the whole key space.
pub struct Informer {
    cache: Mutex<Cache>,
    /// The revision applied so far, for [`Informer::wait_for`].
    applied: tokio::sync::watch::Sender<Revision>,
}

/// Events applied under one lock at most.
const BATCH: usize = 1_024;

impl Informer {
    /// Lists and starts following the store; the watch ends on `shutdown`.
    pub async fn start(
        store: Arc<ReadView>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Informer>, ApiError> {
        let (cache, first) = Cache::list(&store).await?;
        let (applied, _) = tokio::sync::watch::channel(cache.revision);
        let informer = Arc::new(Informer {
            cache: Mutex::new(cache),
            applied,
        });
        tokio::spawn(Arc::clone(&informer).follow(store, first + 1, shutdown));
        Ok(informer)
    }

    /// Runs `f` on the cache as it is now. Waiting for the lock and `f` run off the
    /// runtime's workers ([`crate::scheduler::compute`]): the lock is held while a pass
    /// copies its snapshot out, or while a burst of events is applied.
    pub fn read<R>(&self, f: impl FnOnce(&Cache) -> R) -> R {
        crate::scheduler::compute(|| f(&self.cache.lock().expect("informer cache lock")))
    }

    /// Waits until the cache has applied revision `revision`, at most `timeout`.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> Result<(), ApiError> {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "the scheduler's cache has not caught up with the store: it holds revision {}, \
                 the store is at {revision}",
                *self.applied.borrow()
            ))),
        }
    }

    /// Follows the store from `from` until shutdown, listing again when the watch fails.
    async fn follow(
        self: Arc<Self>,
        store: Arc<ReadView>,
        mut from: Revision,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                s = store.watch("/", from) => s,
            };
            let ended = match stream {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(100);
                    self.drain(&mut stream, &mut from, &shutdown).await
                }
                Err(e) => e,
            };
            if shutdown.is_cancelled() {
                return;
            }
            match ended {
                StoreError::Compacted { .. } | StoreError::WatchLagged(_) => {
                    tracing::info!(error = %ended, "scheduler cache: listing again");
                    match Cache::list(&store).await {
                        Ok((cache, first)) => {
                            let revision = cache.revision;
                            crate::scheduler::compute(|| {
                                let mut held = self.cache.lock().expect("informer cache lock");
                                let old = std::mem::replace(&mut *held, cache);
                                drop(held);
                                drop(old);
                            });
                            self.applied.send_modify(|r| *r = (*r).max(revision));
                            from = first + 1;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduler cache: listing failed; retrying");
                        }
                    }
                }
                e => tracing::warn!(error = %e, "scheduler cache: watch ended; watching again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Applies the stream's events until it ends; returns why it ended. `from` follows the
    /// revision applied.
    async fn drain(
        &self,
        stream: &mut store::WatchStream,
        from: &mut Revision,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> StoreError {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return StoreError::Closed,
                e = stream.next() => e,
            };
            let mut events = Vec::new();
            let mut failed = None;
            match first {
                None => return StoreError::Closed,
                Some(Err(e)) => return e,
                Some(Ok(e)) => events.push(e),
            }
            // Take what is already waiting too (one lock for a burst), and always the rest
            // of the newest revision: the applied revision is announced only whole.
            while !stream.at_revision_end() || (events.len() < BATCH && !stream.is_empty()) {
                match stream.next().await {
                    Some(Ok(e)) => events.push(e),
                    Some(Err(e)) => {
                        failed = Some(e);
                        break;
                    }
                    None => {
                        failed = Some(StoreError::Closed);
                        break;
                    }
                }
            }
            // Every event read so far belongs to a revision the stream delivered whole
            // (it ends only between chunks of whole revisions).
            let newest = events.last().map_or(0, |e| e.kv.mod_revision);
            let planned = self.read(|cache| cache.changes(events));
            let changes = crate::scheduler::compute(|| Change::decode_all(planned));
            crate::scheduler::compute(|| {
                let mut cache = self.cache.lock().expect("informer cache lock");
                for change in changes {
                    cache.apply(change);
                }
                cache.revision = cache.revision.max(newest);
            });
            if newest > 0 {
                *from = newest + 1;
                self.applied.send_modify(|r| *r = (*r).max(newest));
            }
            if let Some(e) = failed {
                return e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, revision: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: None,
        }
    }

    fn site(name: &str) -> String {
        serde_json::json!({
            "apiVersion": "meridian.io/v1", "kind": "Site",
            "metadata": {"name": name},
            "spec": {"jurisdiction": "DE", "provider": "onprem"}
        })
        .to_string()
    }

    fn key(name: &str) -> String {
        format!("{}{name}", registry::kind_prefix(api::kinds::SITE, None))
    }

    #[test]
    fn keys_map_to_their_kind_and_others_are_ignored() {
        assert_eq!(slot_of(&key("fra")), Some(Slot::Site));
        assert_eq!(slot_of("/meridian/scheduler/nodes/n1"), Some(Slot::Ledger));
        assert_eq!(slot_of("/meridian/audit/log/0001"), None);
        assert_eq!(slot_of("/registry/secrets/p/s"), None);
        assert_eq!(slot_of("/registry/"), None);
    }

    #[test]
    fn an_older_version_replayed_after_a_newer_listing_does_not_win() {
        let mut cache = Cache::default();
        cache.apply(Change::of_put(Slot::Site, kv(&key("fra"), &site("fra"), 7)));
        // The watch replays the put at 5 and the delete at 6, both older than the listing.
        let planned = cache.changes(vec![Event {
            kind: EventKind::Put,
            kv: kv(&key("fra"), "not even JSON", 5),
            prev: None,
        }]);
        for change in Change::decode_all(planned) {
            cache.apply(change);
        }
        cache.apply(Change::Delete(Slot::Site, key("fra"), 6));
        assert!(
            cache.broken.is_empty(),
            "a replayed older put is not decoded"
        );
        assert_eq!(cache.sites.len(), 1);
        assert_eq!(cache.sites.fingerprint(), (1, 7));
        // A newer delete removes it, and the fingerprint moves.
        cache.apply(Change::Delete(Slot::Site, key("fra"), 9));
        assert_eq!(cache.sites.fingerprint(), (0, 9));
    }

    #[test]
    fn ledgers_keep_their_newest_revision_and_broken_objects_are_reported() {
        let mut cache = Cache::default();
        let ledger = format!("{LEDGER_PREFIX}n1");
        cache.apply(Change::of_put(Slot::Ledger, kv(&ledger, "n1", 4)));
        cache.apply(Change::of_put(Slot::Ledger, kv(&ledger, "n1", 3)));
        assert_eq!(cache.ledgers.get("n1"), Some(&4));
        cache.apply(Change::Delete(Slot::Ledger, ledger.clone(), 2));
        assert_eq!(cache.ledgers.get("n1"), Some(&4), "a replayed older delete");
        cache.apply(Change::Delete(Slot::Ledger, ledger, 5));
        assert_eq!(cache.ledgers.get("n1"), None);
        cache.apply(Change::of_put(Slot::Site, kv(&key("bad"), "{", 5)));
        let err = cache.check().expect_err("a broken object stops passes");
        assert!(err.contains(&key("bad")), "{err}");
        cache.apply(Change::of_put(Slot::Site, kv(&key("bad"), &site("bad"), 6)));
        cache.check().expect("fixed by a newer version");
    }

    #[test]
    fn allocations_are_cached_slim() {
        let alloc = |name: &str, task: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "meridian.dev/v1", "kind": "Allocation",
                "metadata": {"name": name, "namespace": "p",
                             "labels": {"meridian.dev/workload": "w"},
                             "annotations": {"note": "x"}},
                "spec": {"workload": "w", "replica": 0, "node": "n1", "site": "fra",
                         "resources": {"cpu": "1", "memory": "1Gi"},
                         "task": task,
                         "explanation": {"summary": "placed on n1", "nodes": 1, "passed": 1,
                                         "evaluated": "staticFilters", "rejections": []}}
            })
            .to_string()
        };
        let key = |name: &str| {
            format!(
                "{}{name}",
                registry::kind_prefix(api::kinds::ALLOCATION, Some("p"))
            )
        };
        let plain = serde_json::json!({"driver": "exec", "command": ["/bin/true"],
                                       "resources": {"cpu": "1", "memory": "1Gi"}});
        let mut checked = plain.clone();
        checked["health"] = serde_json::json!({"command": {"command": ["/bin/true"]}});
        let mut cache = Cache::default();
        cache.apply(Change::of_put(
            Slot::Allocation,
            kv(&key("w-0"), &alloc("w-0", plain), 3),
        ));
        cache.apply(Change::of_put(
            Slot::Allocation,
            kv(&key("w-1"), &alloc("w-1", checked), 4),
        ));
        cache.check().expect("decodes");
        let cached: Vec<_> = cache.allocations.iter().collect();
        let [(a, 3), (b, 4)] = cached[..] else {
            panic!("both cached at their revisions")
        };
        assert_eq!(a.spec.node, "n1");
        for x in [a, b] {
            assert!(x.spec.explanation.is_none(), "{:?}", x.spec.explanation);
            assert!(x.metadata.labels.is_empty() && x.metadata.annotations.is_empty());
        }
        // The task goes unless the rollout needs to know it has a health check.
        assert!(a.spec.task.is_none());
        assert!(b.spec.task.as_ref().is_some_and(|t| t.health.is_some()));
    }

    mod with_a_store {
        use std::time::Duration;

        use store::sqlite::{SqliteOptions, SqliteStore};
        use store::{Op, Store, Txn};

        use super::*;

        async fn put(store: &Arc<SqliteStore>, ops: Vec<Op>) -> Revision {
            let resp = store
                .txn(Txn {
                    success: ops,
                    ..Txn::default()
                })
                .await
                .expect("txn");
            resp.revision
        }

        fn site_put(name: &str) -> Op {
            Op::put(key(name), site(name))
        }

        fn names(cache: &Cache) -> Vec<String> {
            cache
                .sites
                .iter()
                .map(|(s, _)| s.metadata.name.clone())
                .collect()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[expect(
            clippy::await_holding_lock,
            reason = "the test holds the cache on purpose while the store commits, so that the watch falls behind"
        )]
        async fn follows_puts_deletes_and_ledgers_and_lists_again_after_falling_behind() {
            let dir = tempfile::tempdir().unwrap();
            let options = SqliteOptions {
                watch_buffer: 1,
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open(&dir.path().join("db"), options)
                .await
                .unwrap();
            put(&store, vec![site_put("a"), site_put("b")]).await;
            let reads = Arc::new(ReadView::new(store.clone()));
            let shutdown = tokio_util::sync::CancellationToken::new();
            let informer = Informer::start(reads.clone(), shutdown.clone())
                .await
                .expect("start");
            assert_eq!(informer.read(names), ["a", "b"]);

            // One transaction: a new site, a deleted one, a ledger.
            let rev = put(
                &store,
                vec![
                    site_put("c"),
                    Op::Delete(key("a")),
                    Op::put(format!("{LEDGER_PREFIX}n1"), "n1"),
                    Op::put("/meridian/audit/log/x", "ignored"),
                ],
            )
            .await;
            informer
                .wait_for(rev, Duration::from_secs(10))
                .await
                .expect("caught up");
            informer.read(|c| {
                assert_eq!(names(c), ["b", "c"]);
                assert_eq!(c.ledgers.get("n1"), Some(&rev));
                assert_eq!(c.sites.fingerprint(), (2, rev));
                assert_eq!(c.revision, rev);
            });

            // Hold the cache while 40 transactions commit: the watch (one event of
            // buffer) falls behind and is cut off; the informer lists again.
            let mut last = rev;
            {
                let _held = informer.cache.lock().unwrap();
                for i in 0..40 {
                    last = put(&store, vec![site_put(&format!("s{i:02}"))]).await;
                }
            }
            informer
                .wait_for(last, Duration::from_secs(10))
                .await
                .expect("caught up after listing again");
            informer.read(|c| {
                assert_eq!(c.sites.len(), 42, "{:?}", names(c));
                assert!(c.revision >= last);
            });
            let err = informer
                .wait_for(last + 1_000, Duration::from_millis(50))
                .await
                .expect_err("a revision never written is never reached");
            assert!(err.to_string().contains("not caught up"), "{err}");
            shutdown.cancel();
        }
    }
}
