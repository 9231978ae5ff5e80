//! Watch fan-out.
//!
//! The writer publishes each committed batch once, as one `Arc<Batch>`, to the [`Hub`]. The
//! hub hands that `Arc` to every subscriber whose prefix the batch touches with a
//! non-blocking `try_send` into the subscriber's bounded queue: publishing costs one prefix
//! check and one reference-count increment per watcher, runs no SQL, copies no value, and
//! never waits for a slow watcher. A watcher whose queue is full is cut off; its stream ends
//! with [`StoreError::WatchLagged`].
//!
//! Each watch has a forwarder task that first replays history from SQLite (in pages, from
//! the requested revision), then turns the live batches into owned [`Event`]s for its
//! stream, skipping revisions the replay already covered. The subscription is registered
//! *before* the replay reads, so every commit is either in the replay's snapshot or in the
//! live queue (or both, deduplicated by revision): no gaps, no duplicates.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use tokio::sync::mpsc;

use super::read::{self, HistoryPage, ReadPool};
use crate::{Event, Revision, StoreError};

/// History rows read per replay page.
pub(crate) const REPLAY_PAGE: usize = 512;

/// The events of one committed transaction.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) revision: Revision,
    pub(crate) events: Vec<Event>,
}

/// The writing transactions of one group commit, in revision order.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) txns: Vec<Committed>,
}

impl Batch {
    fn touches(&self, prefix: &str) -> bool {
        self.txns
            .iter()
            .any(|t| t.events.iter().any(|e| e.kv.key.starts_with(prefix)))
    }
}

const END_NONE: u8 = 0;
const END_LAGGED: u8 = 1;
const END_CLOSED: u8 = 2;

/// Why the hub dropped a subscriber.
#[derive(Debug)]
struct EndReason(AtomicU8);

impl EndReason {
    fn new() -> Self {
        Self(AtomicU8::new(END_NONE))
    }
    fn set(&self, reason: u8) {
        self.0.store(reason, Ordering::SeqCst);
    }
    fn get(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Subscriber {
    prefix: String,
    tx: mpsc::Sender<Arc<Batch>>,
    end: Arc<EndReason>,
}

struct HubInner {
    subscribers: Vec<Subscriber>,
    closed: bool,
}

/// Live subscribers and the last published revision.
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    /// Last published revision; written under `inner`'s lock.
    revision: AtomicI64,
    buffer: usize,
}

/// A registered subscriber's end of the hub.
pub(crate) struct Subscription {
    rx: mpsc::Receiver<Arc<Batch>>,
    end: Arc<EndReason>,
    /// The last revision published before registration.
    pub(crate) revision: Revision,
}

impl Hub {
    pub(crate) fn new(revision: Revision, buffer: usize) -> Self {
        Self {
            inner: Mutex::new(HubInner {
                subscribers: Vec::new(),
                closed: false,
            }),
            revision: AtomicI64::new(revision),
            buffer: buffer.max(1),
        }
    }

    /// The last published revision.
    pub(crate) fn revision(&self) -> Revision {
        self.revision.load(Ordering::SeqCst)
    }

    pub(crate) fn register(&self, prefix: &str) -> Result<Subscription, StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let end = Arc::new(EndReason::new());
        inner.subscribers.push(Subscriber {
            prefix: prefix.to_owned(),
            tx,
            end: Arc::clone(&end),
        });
        Ok(Subscription {
            rx,
            end,
            revision: self.revision.load(Ordering::SeqCst),
        })
    }

    /// Publishes a committed batch whose last revision is `revision`.
    /// Makes `revision` the one new watches start after, before its events are published:
    /// the writer answers its callers in between, so that an acknowledged write never waits
    /// behind the fan-out of its own event. A watch registered in that gap skips the batch
    /// when it arrives (its `last` is already `revision`).
    pub(crate) fn advance(&self, revision: Revision) {
        let _inner = self.inner.lock().unwrap();
        self.revision.store(revision, Ordering::SeqCst);
    }

    pub(crate) fn publish(&self, revision: Revision, batch: Batch) {
        let batch = Arc::new(batch);
        let mut inner = self.inner.lock().unwrap();
        self.revision.store(revision, Ordering::SeqCst);
        inner.subscribers.retain(|sub| {
            if !batch.touches(&sub.prefix) {
                return !sub.tx.is_closed();
            }
            match sub.tx.try_send(Arc::clone(&batch)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(prefix = %sub.prefix, "watcher fell behind; cancelling it");
                    sub.end.set(END_LAGGED);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Ends every subscription with [`StoreError::Closed`] and refuses new ones.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.closed = true;
        for sub in inner.subscribers.drain(..) {
            sub.end.set(END_CLOSED);
        }
    }
}

/// Feeds one watch stream: replay from history, then live batches.
pub(crate) struct Forwarder {
    pub(crate) prefix: String,
    pub(crate) sub: Subscription,
    pub(crate) out: mpsc::Sender<Result<Vec<Event>, StoreError>>,
    pub(crate) pool: Arc<ReadPool>,
    /// Every revision up to this one has been delivered (or had nothing for this prefix).
    pub(crate) last: Revision,
}

/// Outcome of a delivery step.
enum Flow {
    Continue,
    /// The stream's receiver is gone.
    Stop,
}

impl Forwarder {
    /// Reads the first replay page, or fails with [`StoreError::Compacted`] when `start` is
    /// gone. Called by `watch` itself so the error reaches its caller.
    pub(crate) async fn first_page(
        pool: &Arc<ReadPool>,
        prefix: &str,
        start: Revision,
    ) -> Result<HistoryPage, StoreError> {
        let page = read_page(pool, prefix, (start, -1)).await?;
        if page.compacted >= start {
            return Err(StoreError::Compacted {
                requested: start,
                compacted: page.compacted,
            });
        }
        Ok(page)
    }

    /// Runs until the stream's receiver goes away, the store closes or the watcher lags.
    pub(crate) async fn run(mut self, first: Option<HistoryPage>) {
        match self.replay(first).await {
            Ok(Flow::Continue) => self.live().await,
            Ok(Flow::Stop) => {}
            Err(e) => {
                let _ = self.out.send(Err(e)).await;
            }
        }
    }

    /// Sends history page by page, each chunk ending at a revision's end: the events of
    /// the last revision of a full page wait for the next page, which may hold more of it.
    async fn replay(&mut self, mut page: Option<HistoryPage>) -> Result<Flow, StoreError> {
        let mut held: Vec<(Revision, Event)> = Vec::new();
        while let Some(current) = page.take() {
            let full = current.events.len() >= REPLAY_PAGE;
            let cursor = current
                .events
                .last()
                .map(|(revision, idx, _)| (*revision, *idx));
            held.extend(current.events.into_iter().map(|(r, _, e)| (r, e)));
            let send = match cursor {
                Some((last, _)) if full => held.iter().take_while(|(r, _)| *r < last).count(),
                _ => held.len(),
            };
            let rest = held.split_off(send);
            let chunk: Vec<Event> = std::mem::replace(&mut held, rest)
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            if !chunk.is_empty() && self.out.send(Ok(chunk)).await.is_err() {
                return Ok(Flow::Stop);
            }
            match cursor {
                Some(cursor) if full => {
                    let next = read_page(&self.pool, &self.prefix, cursor).await?;
                    if next.compacted >= cursor.0 {
                        return Err(StoreError::Compacted {
                            requested: cursor.0,
                            compacted: next.compacted,
                        });
                    }
                    page = Some(next);
                }
                // The last page: its snapshot covers every revision up to its revision.
                _ => self.last = self.last.max(current.revision),
            }
        }
        Ok(Flow::Continue)
    }

    async fn live(mut self) {
        loop {
            let batch = tokio::select! {
                batch = self.sub.rx.recv() => batch,
                () = self.out.closed() => return,
            };
            let Some(batch) = batch else {
                let err = match self.sub.end.get() {
                    END_LAGGED => StoreError::WatchLagged(self.last),
                    _ => StoreError::Closed,
                };
                let _ = self.out.send(Err(err)).await;
                return;
            };
            if let Flow::Stop = self.deliver(&batch).await {
                return;
            }
        }
    }

    /// Sends the batch's events under the prefix as one chunk (a batch holds whole
    /// transactions).
    async fn deliver(&mut self, batch: &Batch) -> Flow {
        let mut chunk = Vec::new();
        for txn in &batch.txns {
            if txn.revision <= self.last {
                continue;
            }
            chunk.extend(
                txn.events
                    .iter()
                    .filter(|e| e.kv.key.starts_with(&self.prefix))
                    .cloned(),
            );
            self.last = txn.revision;
        }
        if !chunk.is_empty() && self.out.send(Ok(chunk)).await.is_err() {
            return Flow::Stop;
        }
        Flow::Continue
    }
}

async fn read_page(
    pool: &Arc<ReadPool>,
    prefix: &str,
    after: (Revision, i64),
) -> Result<HistoryPage, StoreError> {
    let prefix = prefix.to_owned();
    pool.read(move |conn| read::history_page(conn, &prefix, after, REPLAY_PAGE))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};

    fn batch(revision: Revision, key: &str) -> Batch {
        Batch {
            txns: vec![Committed {
                revision,
                events: vec![Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.to_owned(),
                        value: vec![],
                        create_revision: revision,
                        mod_revision: revision,
                        version: 1,
                        lease: None,
                    },
                    prev: None,
                }],
            }],
        }
    }

    #[test]
    fn full_queue_cuts_the_subscriber_off() {
        let hub = Hub::new(0, 2);
        let mut sub = hub.register("/a/").unwrap();
        let other = hub.register("/b/").unwrap();
        for rev in 1..=3 {
            hub.publish(rev, batch(rev, "/a/x"));
        }
        assert_eq!(sub.end.get(), END_LAGGED);
        assert_eq!(other.end.get(), END_NONE);
        assert!(sub.rx.try_recv().is_ok());
        assert!(sub.rx.try_recv().is_ok());
        assert!(matches!(
            sub.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(hub.revision(), 3);
        hub.close();
        assert_eq!(other.end.get(), END_CLOSED);
        assert!(matches!(hub.register("/"), Err(StoreError::Closed)));
    }
}
