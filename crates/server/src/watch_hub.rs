//! One store watch per server, shared by every API watch.
//!
//! Without it each API watch (kubectl, informers, every agent following its node) opens
//! its own store watch: on etcd, a thousand watchers are a thousand etcd watches, and etcd
//! slowed its own writes about sixty-fold feeding them (BENCHMARKS.md, "etcd against
//! SQLite"). As the kube-apiserver's watch cache does, a [`WatchHub`] follows the whole
//! store with one watch, keeps a window of recent events, and serves each API watch from
//! that window and then live:
//!
//! - A watch from a revision inside the window (or from now, or from the future) is served
//!   here: its backlog is copied from the window and it is registered for what follows
//!   under one lock with the feed, so it misses nothing and sees nothing twice.
//! - A watch from before the window, from history the store has compacted, or whose backlog
//!   would be large ([`HubLimits::backlog_events`]) falls back to a store watch of its own, which replays history (or fails with `Compacted`, a 410
//!   to the client): the answers are the same, only the cost differs.
//! - A watcher whose queue is full is cut off with [`StoreError::WatchLagged`] after what
//!   it was sent (the store's own behaviour for a slow SQLite watcher); the API watch
//!   ends with an error and the client watches again from its last revision.
//! - When the feed's watch fails, every watch it serves ends (the client watches again)
//!   and the feed restarts from the store's current revision with an empty window.
//!
//! Events reach watchers in chunks of whole revisions, as the store's own streams do
//! ([`store::WatchStream::at_revision_end`]).
//!
//! # The list cache
//!
//! With [`HubLimits::objects`] the hub also keeps every object under `/registry/` as of the
//! newest revision it received whole, and lists are served from that copy
//! ([`WatchHub::page`]) instead of the store, as the kube-apiserver serves lists from its
//! watch cache: on etcd a list then costs one read of the current revision, not a range
//! read of every object. The copy is listed when the feed starts (page by page, each page
//! at its own revision; each key keeps its newest version, and the watch from the first
//! page's revision replays what changed meanwhile) and is served once the feed has passed
//! the last page's revision. While the feed is down, lists go to the store.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{Event, EventKind, KeyValue, Revision, StoreError, WatchStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::ReadView;

/// How much recent history the window keeps.
#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    /// Events kept at most.
    pub events: usize,
    /// Bytes of keys and values kept at most.
    pub bytes: usize,
    /// Chunks queued per watcher before it is cut off as lagging.
    pub queue: usize,
    /// The most events, and bytes, one watch's backlog may copy from the window; a watch
    /// whose backlog is larger goes to the store, which replays history page by page as
    /// the client reads (so that many watches from old revisions cannot each hold a copy
    /// of the window).
    pub backlog_events: usize,
    pub backlog_bytes: usize,
    /// Keep a copy of every object under `/registry/` and serve lists from it (see the
    /// module documentation).
    pub objects: bool,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            events: 20_000,
            bytes: 64 << 20,
            queue: 1_024,
            backlog_events: 1_024,
            backlog_bytes: 4 << 20,
            objects: false,
        }
    }
}

/// One revision-whole run of events in the window.
struct Chunk {
    events: Vec<Event>,
    /// The newest revision among them.
    last: Revision,
    bytes: usize,
}

struct Watcher {
    prefix: String,
    /// Events before this revision were not asked for.
    from: Revision,
    tx: mpsc::Sender<Result<Vec<Event>, StoreError>>,
}

#[derive(Default)]
struct State {
    /// Whether the feed follows the store (else every watch goes to the store).
    live: bool,
    /// Every event at or after this revision is in the window (or yet to come).
    low: Revision,
    /// Every revision up to this one has been received whole.
    head: Revision,
    window: VecDeque<Chunk>,
    events: usize,
    bytes: usize,
    watchers: Vec<Watcher>,
    /// With [`HubLimits::objects`]: every object under [`OBJECTS`], by key, as of `head`
    /// once `head` has reached `listed`.
    objects: Option<BTreeMap<String, KeyValue>>,
    /// The revision of the listing's last page.
    listed: Revision,
}

/// The keys the list cache holds: every API object.
const OBJECTS: &str = "/registry/";

/// Keys read per page while listing the objects.
const LIST_PAGE: usize = 5_000;

impl State {
    /// The revision the list cache can serve, if it can.
    fn servable(&self) -> Option<Revision> {
        (self.live && self.objects.is_some() && self.head >= self.listed).then_some(self.head)
    }
}

/// The server's shared watch (see the module documentation).
pub struct WatchHub {
    store: Arc<ReadView>,
    metrics: Metrics,
    limits: HubLimits,
    state: Mutex<State>,
    /// The revision the list cache serves (0 while it cannot), for [`WatchHub::caught_up`].
    servable: tokio::sync::watch::Sender<Revision>,
}

impl WatchHub {
    pub fn new(store: Arc<ReadView>, metrics: Metrics, limits: HubLimits) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            limits,
            state: Mutex::default(),
            servable: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Whether this hub keeps the list cache.
    pub fn keeps_objects(&self) -> bool {
        self.limits.objects
    }

    /// Waits (at most `timeout`) until the list cache serves revision `revision` or a
    /// later one; `false` when it does not by then (or keeps no objects).
    pub async fn caught_up(&self, revision: Revision, timeout: Duration) -> bool {
        if !self.limits.objects {
            return false;
        }
        let mut rx = self.servable.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|r| *r > 0 && *r >= revision));
        matches!(reached.await, Ok(Ok(_)))
    }

    /// One page of the objects under `prefix` after `start_after`, at most `limit`, from
    /// the list cache, if it serves `at_least` or a later revision: the objects, whether
    /// more follow, and the revision they are as of (a store range's answer).
    pub fn page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        at_least: Revision,
    ) -> Option<(Vec<KeyValue>, bool, Revision)> {
        let state = self.state.lock().expect("watch hub lock");
        let revision = state.servable().filter(|r| *r >= at_least)?;
        let objects = state.objects.as_ref()?;
        let lower = match start_after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Included(prefix),
        };
        let mut keys = objects
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        let kvs: Vec<KeyValue> = keys
            .by_ref()
            .take(limit)
            .map(|(_, kv)| kv.clone())
            .collect();
        let more = keys.next().is_some();
        Some((kvs, more, revision))
    }

    /// The object at `key` from the list cache, if it serves `at_least` or a later
    /// revision: the object (`None` when there is none) and the revision it is as of.
    pub fn object(&self, key: &str, at_least: Revision) -> Option<(Option<KeyValue>, Revision)> {
        let state = self.state.lock().expect("watch hub lock");
        let revision = state.servable().filter(|r| *r >= at_least)?;
        let objects = state.objects.as_ref()?;
        Some((objects.get(key).cloned(), revision))
    }

    /// Watches keys under `prefix` from revision `start` (inclusive; 0: after now), as
    /// [`store::Store::watch`] does.
    pub async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream, StoreError> {
        // History the store has compacted is gone for every watch, as without the hub
        // (a 410 to the client), even where the window still holds it.
        let servable = start == 0 || start > self.store.compacted_revision().await?;
        if servable && let Some(stream) = self.register(prefix, start) {
            self.metrics.watch_opened("hub");
            return Ok(stream);
        }
        let stream = self.store.watch(prefix, start).await?;
        self.metrics.watch_opened("store");
        Ok(stream)
    }

    /// Registers a watch served from the window, or `None` when the window cannot serve it.
    fn register(&self, prefix: &str, start: Revision) -> Option<WatchStream> {
        let mut state = self.state.lock().expect("watch hub lock");
        if !state.live {
            return None;
        }
        let from = if start == 0 { state.head + 1 } else { start };
        if from < state.low {
            return None;
        }
        let mut backlog = Vec::new();
        let mut bytes = 0;
        let newer = state.window.iter().filter(|c| c.last >= from);
        for e in newer.flat_map(|c| &c.events) {
            if e.kv.mod_revision < from || !e.kv.key.starts_with(prefix) {
                continue;
            }
            bytes += e.kv.key.len() + e.kv.value.len();
            if backlog.len() == self.limits.backlog_events || bytes > self.limits.backlog_bytes {
                return None;
            }
            backlog.push(e.clone());
        }
        let (tx, rx) = mpsc::channel(self.limits.queue.max(1));
        if !backlog.is_empty() {
            tx.try_send(Ok(backlog))
                .expect("a new queue has room for one chunk");
        }
        state.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            from,
            tx,
        });
        Some(WatchStream::new(rx))
    }

    /// How many watches the hub serves now (for tests and metrics).
    pub fn watchers(&self) -> usize {
        self.state.lock().expect("watch hub lock").watchers.len()
    }

    /// Follows the store until `shutdown`, restarting after a failed watch.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let ended = self.follow(&shutdown).await;
            self.stop();
            if shutdown.is_cancelled() {
                return;
            }
            match ended {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "shared watch ended; watches go to the store until it resumes");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One run of the feed: from the current revision until the watch fails.
    async fn follow(&self, shutdown: &CancellationToken) -> Result<(), StoreError> {
        let (head, objects, listed) = if self.limits.objects {
            let (objects, first, last) = self.list_objects().await?;
            (first, Some(objects), last)
        } else {
            (self.store.current_revision().await?, None, 0)
        };
        let mut stream = self.store.watch("/", head + 1).await?;
        {
            let mut state = self.state.lock().expect("watch hub lock");
            *state = State {
                live: true,
                low: head + 1,
                head,
                objects,
                listed,
                ..State::default()
            };
            self.servable.send_replace(state.servable().unwrap_or(0));
        }
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                e = stream.next() => e,
            };
            let mut events = vec![first.ok_or(StoreError::Closed)??];
            while !stream.at_revision_end() {
                events.push(stream.next().await.ok_or(StoreError::Closed)??);
            }
            self.publish(events);
        }
    }

    /// Every object under [`OBJECTS`], page by page: the objects, the first page's
    /// revision (a watch from the next one misses nothing) and the last page's.
    async fn list_objects(
        &self,
    ) -> Result<(BTreeMap<String, KeyValue>, Revision, Revision), StoreError> {
        let mut objects = BTreeMap::new();
        let (mut first, mut last) = (None, 0);
        self.store
            .for_each_page(OBJECTS, LIST_PAGE, |page| {
                first.get_or_insert(page.revision);
                last = page.revision;
                objects.extend(page.kvs.into_iter().map(|kv| (kv.key.clone(), kv)));
            })
            .await?;
        Ok((objects, first.unwrap_or(last), last))
    }

    /// Adds a revision-whole run of events to the window and hands it to the watchers.
    fn publish(&self, events: Vec<Event>) {
        let last = events.last().map_or(0, |e| e.kv.mod_revision);
        let bytes = events
            .iter()
            .map(|e| e.kv.key.len() + e.kv.value.len())
            .sum();
        let mut state = self.state.lock().expect("watch hub lock");
        state.watchers.retain(|w| {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| e.kv.mod_revision >= w.from && e.kv.key.starts_with(&w.prefix))
                .cloned()
                .collect();
            if mine.is_empty() {
                return !w.tx.is_closed();
            }
            let from = mine[0].kv.mod_revision;
            match w.tx.try_send(Ok(mine)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.watch_lagged();
                    // Cut off after what it was sent: every revision before this run's.
                    let tx = w.tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(Err(StoreError::WatchLagged(from - 1))).await;
                    });
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        state.head = state.head.max(last);
        if let Some(objects) = state.objects.as_mut() {
            apply(objects, &events);
        }
        self.servable.send_replace(state.servable().unwrap_or(0));
        state.events += events.len();
        state.bytes += bytes;
        state.window.push_back(Chunk {
            events,
            last,
            bytes,
        });
        while state.window.len() > 1
            && (state.events > self.limits.events || state.bytes > self.limits.bytes)
        {
            let Some(old) = state.window.pop_front() else {
                break;
            };
            state.events -= old.events.len();
            state.bytes -= old.bytes;
            state.low = old.last + 1;
        }
    }

    /// The feed stopped: the watches it served end (their clients watch again), and new
    /// ones go to the store until it resumes.
    fn stop(&self) {
        let mut state = self.state.lock().expect("watch hub lock");
        *state = State::default();
        self.servable.send_replace(0);
    }
}

/// Applies events to the list cache's objects. An event older than the version held (the
/// watch replaying what changed while the objects were listed) changes nothing.
fn apply(objects: &mut BTreeMap<String, KeyValue>, events: &[Event]) {
    for e in events {
        if !e.kv.key.starts_with(OBJECTS) {
            continue;
        }
        let newer = objects
            .get(&e.kv.key)
            .is_none_or(|held| held.mod_revision < e.kv.mod_revision);
        if !newer {
            continue;
        }
        match e.kind {
            EventKind::Put => {
                objects.insert(e.kv.key.clone(), e.kv.clone());
            }
            EventKind::Delete => {
                objects.remove(&e.kv.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use store::sqlite::{SqliteOptions, SqliteStore};
    use store::{Op, RangeRequest, Store, Txn};

    use super::*;

    async fn hub(limits: HubLimits) -> (tempfile::TempDir, Arc<SqliteStore>, Arc<WatchHub>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), SqliteOptions::default())
            .await
            .unwrap();
        let hub = WatchHub::new(
            Arc::new(ReadView::new(store.clone())),
            Metrics::default(),
            limits,
        );
        tokio::spawn(Arc::clone(&hub).run(CancellationToken::new()));
        (dir, store, hub)
    }

    async fn put(store: &SqliteStore, ops: Vec<Op>) -> Revision {
        let txn = Txn {
            success: ops,
            ..Txn::default()
        };
        store.txn(txn).await.expect("txn").revision
    }

    /// Waits until the hub has received `revision`.
    async fn reached(hub: &WatchHub, revision: Revision) {
        for _ in 0..500 {
            {
                let state = hub.state.lock().unwrap();
                if state.live && state.head >= revision {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the hub never reached revision {revision}");
    }

    async fn next(w: &mut WatchStream) -> Event {
        tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("no error")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_backlog_then_live_without_gaps_or_repeats() {
        let (_dir, store, hub) = hub(HubLimits::default()).await;
        reached(&hub, 0).await;
        let mut revs = Vec::new();
        for i in 0..5 {
            revs.push(put(&store, vec![Op::put(format!("/a/{i}"), "v")]).await);
        }
        put(&store, vec![Op::put("/b/other", "v")]).await;
        reached(&hub, revs[4] + 1).await;
        let mut w = hub.watch("/a/", revs[2]).await.unwrap();
        assert_eq!(hub.watchers(), 1, "served by the hub, not the store");
        for i in 2..5 {
            assert_eq!(next(&mut w).await.kv.key, format!("/a/{i}"));
        }
        // A transaction of several keys arrives whole, after the backlog.
        let rev = put(
            &store,
            vec![
                Op::put("/a/x", "1"),
                Op::put("/b/y", "2"),
                Op::put("/a/z", "3"),
            ],
        )
        .await;
        let x = next(&mut w).await;
        assert_eq!((x.kv.key.as_str(), x.kv.mod_revision), ("/a/x", rev));
        assert!(!w.at_revision_end(), "the rest of the revision is in hand");
        assert_eq!(next(&mut w).await.kv.key, "/a/z");
        assert!(w.at_revision_end());
        // From now, and from the future.
        let mut now = hub.watch("/a/", 0).await.unwrap();
        let mut later = hub.watch("/a/", rev + 2).await.unwrap();
        let first = put(&store, vec![Op::put("/a/n", "v")]).await;
        put(&store, vec![Op::put("/a/m", "v")]).await;
        assert_eq!(next(&mut now).await.kv.mod_revision, first);
        assert_eq!(next(&mut later).await.kv.key, "/a/m");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_from_before_the_window_goes_to_the_store() {
        let limits = HubLimits {
            events: 2,
            ..HubLimits::default()
        };
        let (_dir, store, hub) = hub(limits).await;
        reached(&hub, 0).await;
        let mut last = 0;
        for i in 0..6 {
            last = put(&store, vec![Op::put(format!("/a/{i}"), "v")]).await;
        }
        reached(&hub, last).await;
        let mut w = hub.watch("/a/", 1).await.unwrap();
        assert_eq!(hub.watchers(), 0, "the window no longer holds revision 1");
        assert_eq!(hub.metrics.watches_opened("store"), 1);
        assert_eq!(hub.metrics.watches_opened("hub"), 0);
        for i in 0..6 {
            assert_eq!(next(&mut w).await.kv.key, format!("/a/{i}"));
        }
        // A backlog over its bound goes to the store too (which pages history).
        let small = WatchHub::new(
            Arc::new(ReadView::new(store.clone())),
            Metrics::default(),
            HubLimits {
                backlog_events: 2,
                ..HubLimits::default()
            },
        );
        tokio::spawn(Arc::clone(&small).run(CancellationToken::new()));
        reached(&small, last).await;
        let more = put(&store, vec![Op::put("/a/6", "v"), Op::put("/a/7", "v")]).await;
        put(&store, vec![Op::put("/a/8", "v")]).await;
        reached(&small, more + 1).await;
        let mut two = small.watch("/a/", more).await.unwrap();
        assert_eq!(
            small.metrics.watches_opened("hub"),
            0,
            "3 events of backlog, bound 2"
        );
        for key in ["/a/6", "/a/7", "/a/8"] {
            assert_eq!(next(&mut two).await.kv.key, key);
        }
        let _one = small.watch("/a/", more + 1).await.unwrap();
        assert_eq!(small.metrics.watches_opened("hub"), 1, "1 event of backlog");
        store.compact(3).await.unwrap();
        let Err(e) = hub.watch("/a/", 2).await else {
            panic!("a compacted start must fail")
        };
        assert!(matches!(e, StoreError::Compacted { .. }), "{e}");
    }

    /// The list cache pages as the store does: objects written before the hub started
    /// (listed) and while it lists and after (from the feed), changed and deleted, in key
    /// order, with `more` where the store says so; it serves no revision it has not reached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_list_cache_pages_as_the_store_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), SqliteOptions::default())
            .await
            .unwrap();
        let key = |i: usize| format!("/registry/workloads/p/w{i:02}");
        for i in 0..30 {
            put(&store, vec![Op::put(key(i), format!("v{i}"))]).await;
        }
        put(&store, vec![Op::put("/other/key", "x")]).await;
        let hub = WatchHub::new(
            Arc::new(ReadView::new(store.clone())),
            Metrics::default(),
            HubLimits {
                objects: true,
                ..HubLimits::default()
            },
        );
        assert!(
            hub.page("/registry/", None, 10, 0).is_none(),
            "not listed yet"
        );
        tokio::spawn(Arc::clone(&hub).run(CancellationToken::new()));
        for i in 0..10 {
            put(&store, vec![Op::put(key(i * 3), "changed")]).await;
        }
        for i in 25..30 {
            put(&store, vec![Op::Delete(key(i))]).await;
        }
        let last = put(&store, vec![Op::put("/registry/workloads/q/a", "v")]).await;
        assert!(hub.caught_up(last, Duration::from_secs(10)).await);
        for (prefix, limit) in [
            ("/registry/workloads/p/", 7),
            ("/registry/workloads/", 100),
            ("/registry/", 4),
        ] {
            let mut start_after: Option<String> = None;
            loop {
                let (kvs, more, revision) = hub
                    .page(prefix, start_after.as_deref(), limit, last)
                    .expect("served from the cache");
                assert!(revision >= last);
                let want = store
                    .range(RangeRequest {
                        prefix: prefix.into(),
                        start_after: start_after.clone(),
                        limit,
                        count_only: false,
                    })
                    .await
                    .unwrap();
                assert_eq!(kvs, want.kvs, "{prefix} after {start_after:?}");
                assert_eq!(more, want.more, "{prefix} after {start_after:?}");
                if !more {
                    break;
                }
                start_after = kvs.last().map(|kv| kv.key.clone());
            }
        }
        assert!(hub.page("/registry/", None, 10, last + 5).is_none());
        assert!(!hub.caught_up(last + 5, Duration::from_millis(50)).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_that_does_not_read_is_cut_off_after_what_it_was_sent() {
        let limits = HubLimits {
            queue: 1,
            ..HubLimits::default()
        };
        let (_dir, store, hub) = hub(limits).await;
        reached(&hub, 0).await;
        let mut w = hub.watch("/a/", 0).await.unwrap();
        let first = put(&store, vec![Op::put("/a/1", "v")]).await;
        let mut last = first;
        for i in 2..5 {
            last = put(&store, vec![Op::put(format!("/a/{i}"), "v")]).await;
        }
        reached(&hub, last).await;
        assert_eq!(hub.watchers(), 0, "cut off");
        assert!(
            hub.metrics
                .render()
                .contains("meridian_watch_hub_lagged_total 1")
        );
        assert_eq!(next(&mut w).await.kv.mod_revision, first);
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(StoreError::WatchLagged(at)))) => assert_eq!(at, first),
            other => panic!("expected WatchLagged, got {other:?}"),
        }
    }
}
