//! Watches on etcd: one etcd watch (with previous key-values) per [`WatchStream`], fed by a
//! task that converts events and resumes the etcd watch (from the next revision) on another
//! member when its connection breaks or etcd cancels it because its member lost the leader.
//!
//! Semantics, as the trait asks:
//! - `start == 0` watches from the revision after the current one (read when the watch
//!   starts, so nothing committed after `watch` returns is missed).
//! - `start` at or below the compacted revision recorded by `Store::compact` fails
//!   with [`StoreError::Compacted`] at once; when etcd itself reports the start compacted
//!   (an operator's compaction), the stream ends with [`StoreError::Compacted`].
//! - `start` beyond the current revision is accepted; etcd delivers from it on.
//! - A delete event carries the last value (from etcd's previous key-value) and the
//!   delete's revision; events of one transaction arrive in op order, as etcd sends them.
//! - A slow reader is never cancelled (no [`StoreError::WatchLagged`]): its feeding task
//!   waits once `CHANNEL` (1024) responses are queued, and etcd holds the rest for that
//!   watch.
//! - If the cluster stays unreachable for [`super::EtcdOptions::retry_for`], the stream
//!   ends with an error naming the endpoints tried and the last revision delivered.

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use tokio::sync::mpsc;

use super::{EtcdError, EtcdStore, Keys, MAX_DECODE, convert_kv};
use crate::{Event, EventKind, KeyValue, Revision, StoreError, WatchStream};

/// Watch responses buffered per watcher before the feeding task waits for the reader.
const CHANNEL: usize = 1024;

impl EtcdStore {
    pub(super) async fn start_watch(
        &self,
        prefix: &str,
        start: Revision,
    ) -> Result<WatchStream, StoreError> {
        let compacted = self.recorded_compaction().await?;
        let start = if start == 0 {
            self.to_meridian(self.etcd_revision().await?) + 1
        } else {
            start
        };
        if start <= compacted {
            return Err(StoreError::Compacted {
                requested: start,
                compacted,
            });
        }
        let mut feed = Feed {
            client: self.client.clone(),
            keys: self.keys.clone(),
            base: self.base,
            key: self.keys.data(prefix),
            endpoints: self.endpoints(),
            retry_for: self.options.retry_for,
            next: self.to_etcd(start),
        };
        let stream = feed.open().await.map_err(|e| match e {
            Opened::Failed(e) => e,
            Opened::Compacted(compacted) => StoreError::Compacted {
                requested: start,
                compacted: (compacted - self.base).max(0),
            },
        })?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(async move { feed.run(stream, tx).await });
        Ok(WatchStream::new(rx))
    }
}

/// Everything the feeding task needs, detached from the store.
struct Feed {
    client: Client,
    keys: Keys,
    base: i64,
    /// The etcd key prefix watched.
    key: Vec<u8>,
    endpoints: String,
    retry_for: Duration,
    /// The next etcd revision to deliver.
    next: i64,
}

/// Why an etcd watch could not be opened.
enum Opened {
    Failed(StoreError),
    /// etcd says the start revision is compacted (etcd revision).
    Compacted(i64),
}

impl Feed {
    /// Opens the etcd watch from `self.next`, retrying while the cluster is unavailable.
    async fn open(&mut self) -> Result<etcd_client::WatchStream, Opened> {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let options = WatchOptions::new()
                .with_prefix()
                .with_prev_key()
                .with_start_revision(self.next);
            let mut client = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_DECODE);
            let attempt = async {
                let mut stream = client.watch(self.key.clone(), Some(options)).await?;
                // Wait for etcd to confirm the watch, so later writes are seen.
                let first = stream.message().await?;
                Ok::<_, etcd_client::Error>((stream, first))
            };
            let err = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok((stream, Some(resp)))) => {
                    if resp.compact_revision() > 0 {
                        return Err(Opened::Compacted(resp.compact_revision()));
                    }
                    if resp.canceled() {
                        return Err(Opened::Failed(
                            EtcdError::Data(format!(
                                "etcd refused the watch: {}",
                                resp.cancel_reason()
                            ))
                            .into(),
                        ));
                    }
                    return Ok(stream);
                }
                Ok(Ok((_, None))) => "the watch stream closed at once".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 10s".to_owned(),
            };
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(Opened::Failed(
                    EtcdError::Data(format!(
                        "cannot watch on the etcd cluster (tried {}): {err}",
                        self.endpoints
                    ))
                    .into(),
                ));
            }
            tracing::debug!(error = %err, "etcd watch unavailable, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Forwards events until the reader goes away or the watch fails for good.
    async fn run(
        &mut self,
        mut stream: etcd_client::WatchStream,
        tx: mpsc::Sender<Result<Vec<Event>, StoreError>>,
    ) {
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = tx.closed() => return,
            };
            // etcd cancels a watch whose member lost its leader (the client asks for a
            // leader); like a broken connection, that resumes on another member.
            let message = match message {
                Ok(Some(resp)) if resp.canceled() && resp.compact_revision() == 0 => {
                    tracing::debug!(reason = resp.cancel_reason(), "etcd cancelled a watch");
                    Ok(None)
                }
                other => other,
            };
            let Ok(Some(resp)) = message else {
                // The member went away: resume on another from the next revision.
                tracing::debug!(next = self.next, "etcd watch broke, resuming");
                match self.open().await {
                    Ok(resumed) => {
                        stream = resumed;
                        continue;
                    }
                    Err(Opened::Failed(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Err(Opened::Compacted(compacted)) => {
                        let _ = tx.send(Err(self.compacted(compacted))).await;
                        return;
                    }
                }
            };
            if resp.compact_revision() > 0 {
                let _ = tx.send(Err(self.compacted(resp.compact_revision()))).await;
                return;
            }
            // etcd never splits a revision between responses (this store does not ask for
            // fragments), so a response is a chunk of whole revisions.
            let chunk: Result<Vec<Event>, EtcdError> =
                resp.events().iter().map(|e| self.event(e)).collect();
            let failed = chunk.is_err();
            let chunk = match chunk {
                Ok(chunk) if chunk.is_empty() => continue,
                other => other.map_err(StoreError::from),
            };
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    }

    fn compacted(&self, etcd_compacted: i64) -> StoreError {
        StoreError::Compacted {
            requested: (self.next - self.base).max(0),
            compacted: (etcd_compacted - self.base).max(0),
        }
    }

    fn event(&mut self, event: &etcd_client::Event) -> Result<Event, EtcdError> {
        let kv = event
            .kv()
            .ok_or_else(|| EtcdError::Data("watch event without a key".into()))?;
        self.next = self.next.max(kv.mod_revision() + 1);
        let prev = event
            .prev_kv()
            .map(|prev| convert_kv(&self.keys, self.base, prev))
            .transpose()?;
        match event.event_type() {
            EventType::Put => Ok(Event {
                kind: EventKind::Put,
                kv: convert_kv(&self.keys, self.base, kv)?,
                prev,
            }),
            EventType::Delete => Ok(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: self.keys.strip(kv.key())?,
                    value: prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                    create_revision: 0,
                    mod_revision: (kv.mod_revision() - self.base).max(0),
                    version: 0,
                    lease: None,
                },
                prev,
            }),
        }
    }
}
