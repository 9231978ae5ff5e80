//! A revisioned key-value store shaped after etcd, behind one trait.
//!
//! Every committed write gets the next value of one global, monotonic revision. Keys are
//! UTF-8 strings, values opaque bytes. The store offers get, list by prefix with pagination,
//! multi-key transactions with compare-and-swap guards, watches from a revision (answering
//! [`StoreError::Compacted`] when that revision is gone), leases with a TTL that delete their
//! keys on expiry, compaction of history, and hash-chained append-only logs ([`chain`]).
//!
//! This crate knows no resource kinds: it stores bytes under keys. Backends:
//! [`sqlite::SqliteStore`] (embedded default, WAL, group commit) and [`etcd::EtcdStore`]
//! (an etcd v3 cluster, for several servers). Every backend must pass [`conformance`], which
//! is written against the [`Store`] trait only.
//!
//! When its disk fills, a backend refuses writes with [`StoreError::NoSpace`] (like etcd's
//! NOSPACE alarm) and reports it in [`Store::space`]; deletes still work, so space can be
//! freed through the API, and writes resume by themselves when space is back.

// The store runs inside the server, whose stderr may be a file on a full disk: printing
// there panics. Log through `tracing` (whose writer drops what it cannot write).
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod chain;
pub mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod etcd_url;
pub mod sqlite;
#[cfg(unix)]
pub mod tmpfs;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The store's global, monotonic revision. The first write has revision 1; 0 means "none".
pub type Revision = i64;
/// Identifier of a lease.
pub type LeaseId = i64;

/// One key with its value and bookkeeping, as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key (for a delete event: the revision of the delete).
    pub mod_revision: Revision,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
    /// Lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A guard of a transaction. All guards must hold for the success branch to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals the given revision (0: the key does not exist).
    ModRevision(String, Revision),
    /// The key exists.
    Exists(String),
    /// The key does not exist.
    Absent(String),
    /// The key exists and its value equals the given bytes.
    Value(String, Vec<u8>),
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read a key as of the transaction.
    Get(String),
    /// Write a key, optionally attached to a lease (which must exist).
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    /// Delete a key if it exists.
    Delete(String),
    /// Append an entry to the hash-chained log named `log` (a key prefix). See [`chain`].
    Append { log: String, payload: Vec<u8> },
}

impl Op {
    /// A put without a lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
}

/// The result of one [`Op`], in the same position as the op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Get(Option<KeyValue>),
    /// The new key-value and the previous one, if the key existed.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The deleted key-value, if the key existed.
    Delete {
        prev: Option<KeyValue>,
    },
    /// The key and sequence number the entry was stored under.
    Append {
        key: String,
        seq: u64,
    },
}

/// A multi-key transaction: if every compare holds, run `success`, else `failure`.
/// A transaction that writes nothing does not advance the revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// Outcome of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (and so `success` ran).
    pub succeeded: bool,
    /// Store revision after the transaction (its own revision if it wrote).
    pub revision: Revision,
    pub results: Vec<OpResult>,
}

/// A range read over the keys starting with `prefix`, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: String,
    /// Return only keys strictly greater than this one (for pagination).
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Only count matching keys, return none.
    pub count_only: bool,
}

/// Answer to a [`RangeRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys match after the last one returned.
    pub more: bool,
    /// Number of keys matching the prefix (ignoring `start_after` and `limit`).
    pub count: u64,
    /// Store revision the read saw.
    pub revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv.value` holds the last value before the
/// delete and `kv.mod_revision` the revision of the delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key's previous value, when it had one.
    pub prev: Option<KeyValue>,
}

/// What [`Store::backup`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub format: BackupFormat,
    /// Size of the file.
    pub bytes: u64,
    /// The store's revision in the copy (for etcd, the cluster's revision when the
    /// snapshot began, in this store's numbering).
    pub revision: Revision,
}

/// The kind of file a backup is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupFormat {
    /// A SQLite database: the store's file as of one revision.
    Sqlite,
    /// An etcd snapshot (`etcdutl snapshot restore` reads it).
    EtcdSnapshot,
}

impl BackupFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupFormat::Sqlite => "sqlite",
            BackupFormat::EtcdSnapshot => "etcd-snapshot",
        }
    }
}

/// Errors of every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested revision is older than the oldest kept.
    #[error(
        "revision {requested} has been compacted (oldest available is {compacted}); re-list and watch from the current revision"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision asked for is in the future.
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The store is shutting down or its writer has stopped.
    #[error("store is closed")]
    Closed,
    /// The watcher fell too far behind and was dropped. Carries the last revision it fully
    /// received; re-watch from the next one.
    #[error(
        "watch fell behind and was cancelled after revision {0}; re-watch from the next revision"
    )]
    WatchLagged(Revision),
    /// The filesystem holding the store is full (etcd's NOSPACE alarm): writes that would
    /// grow the store are refused; reads, deletes, lease revocations and compaction work.
    #[error("{0}")]
    NoSpace(NoSpace),
    /// The transaction is larger than the backend accepts in one request (etcd refuses
    /// requests over its `--max-request-bytes`); it was not sent.
    #[error(
        "the write is {size} bytes, over the store's limit of {limit} bytes per transaction \
         (etcd's request size limit): store smaller objects or split the change"
    )]
    TooLarge { size: usize, limit: usize },
    /// The transaction has more operations than the backend accepts in one request
    /// (etcd's `--max-txn-ops`, counted as [`txn_ops`] counts); it was not sent.
    #[error(
        "the transaction needs {ops} operations, over the store's limit of {limit} per \
         transaction (etcd's --max-txn-ops, 128 by default): split the change, or run the \
         etcd members with a larger --max-txn-ops and give every server the same value with \
         --etcd-max-txn-ops"
    )]
    TooManyOps { ops: usize, limit: usize },
    /// A fenced write (a controller's, guarded by the leader key's revision) found the
    /// guard moved: the writer no longer leads, and nothing was written.
    #[error(
        "this server no longer leads (the leader key {key} changed since it was elected): \
         the controller's write was refused; the current leader's controllers carry on"
    )]
    Fenced { key: String },
    #[error("storage backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why writes are refused for lack of space, and what to do: the message of
/// [`StoreError::NoSpace`] and of [`SpaceStatus::no_space`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoSpace {
    /// SQLite: the filesystem holding the database is full.
    #[error(
        "the store is out of disk space (no space left on the filesystem of {dir}): writes are \
         refused until space is freed; reads and deletes still work. Free disk space on that \
         filesystem (deleting objects no longer needed stops the store from growing); writes \
         resume by themselves once {resume_mib} MiB are free there"
    )]
    Disk {
        /// The directory holding the database.
        dir: String,
        /// Free space (MiB) at which writes resume.
        resume_mib: u64,
    },
    /// etcd: the cluster's database reached its `--quota-backend-bytes` and etcd raised its
    /// NOSPACE alarm ("mvcc: database space exceeded"). etcd keeps refusing writes until
    /// an operator disarms the alarm, so recovery is not automatic.
    #[error(
        "the etcd cluster's database is over its space quota (etcd raised its NOSPACE alarm: \
         \"mvcc: database space exceeded\"): every write is refused, deletes included (each \
         carries an audit entry); reads still work. On the etcd cluster ({endpoints}): \
         compact old history (`etcdctl compact REVISION`, the current revision from \
         `etcdctl endpoint status -w json`), defragment every member (`etcdctl defrag \
         --cluster`), then `etcdctl alarm disarm`; if the data itself outgrew the quota, \
         restart the members with a larger --quota-backend-bytes (etcd's default is 2 GiB) \
         first. Writes resume once the alarm is disarmed"
    )]
    EtcdQuota {
        /// The cluster's client endpoints.
        endpoints: String,
    },
}

/// The store's disk-space condition, for readiness checks and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceStatus {
    /// `Some` while writes are refused for lack of disk space.
    pub no_space: Option<NoSpace>,
    /// Requests refused with [`StoreError::NoSpace`] since the store opened.
    pub refused_writes: u64,
    /// The store's size on disk (SQLite: the database and its WAL), when the backend
    /// knows it.
    pub size_bytes: Option<u64>,
}

/// A stream of watch events in revision order. Ends with `Err` when cancelled.
///
/// A backend feeds it in chunks of whole revisions: the events one transaction made
/// under the watched prefix are never split between chunks, so a reader can tell when
/// it holds everything a revision changed ([`WatchStream::at_revision_end`]).
pub struct WatchStream {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<Event>, StoreError>>,
    /// The rest of the chunk being read.
    chunk: std::collections::VecDeque<Event>,
}

impl WatchStream {
    /// Wraps a channel a backend feeds, each `Ok` a chunk of one or more whole revisions.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<Vec<Event>, StoreError>>) -> Self {
        Self {
            rx,
            chunk: std::collections::VecDeque::new(),
        }
    }

    /// The next event; `None` when the store closed the watch.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(event) = self.chunk.pop_front() {
                return Some(Ok(event));
            }
            match self.rx.recv().await? {
                Ok(chunk) => self.chunk = chunk.into(),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Whether no event is waiting right now (the end of a burst).
    pub fn is_empty(&self) -> bool {
        self.chunk.is_empty() && self.rx.is_empty()
    }

    /// Whether the events read so far hold every change of the newest revision among them
    /// (under the watched prefix): the next event, if any, is of a later revision.
    pub fn at_revision_end(&self) -> bool {
        self.chunk.is_empty()
    }
}

/// Renews leases; see [`Store::lease_keeper`].
#[async_trait]
pub trait LeaseKeeper: Send + Sync {
    /// Renew a lease; returns its TTL ([`StoreError::LeaseNotFound`] once it expired).
    async fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError>;
}

/// The key [`Store::sync_revision`] writes where it must mark a point in its own history.
pub const SYNC_KEY: &str = "/meridian/sync";

/// The store interface every backend implements and [`conformance`] checks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Read one key, with the revision the read saw.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError>;

    /// List keys under a prefix, in key order.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;

    /// Run a transaction atomically. Its writes are durable when this returns `Ok`.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;

    /// Watch keys under `prefix`, starting with events at revision `start` (inclusive).
    /// `start == 0` means "changes after the current revision". Events of one
    /// transaction arrive in op order. Fails with [`StoreError::Compacted`] when `start` is
    /// at or below the compacted revision.
    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream, StoreError>;

    /// The current revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// A revision at or after every write acknowledged before the call that a watch of the
    /// whole key space (`"/"`) delivers an event at: what a cache fed by such a watch waits
    /// for to read consistently. A store whose every revision carries one of its own
    /// events answers its current revision (the default). One whose revisions also count
    /// writes it never delivers (an etcd prefix: other prefixes, its own metadata) writes
    /// [`SYNC_KEY`] and answers that write's revision.
    async fn sync_revision(&self) -> Result<Revision, StoreError> {
        self.current_revision().await
    }

    /// Grant a lease that expires `ttl` after its last keep-alive.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renew a lease; returns its TTL.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError>;

    /// Revoke a lease now, deleting its keys.
    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError>;

    /// A renewer of leases for a caller that runs it on a thread and runtime of its own,
    /// so that renewals never wait for a runtime busy with other work (a leader's session
    /// while its controllers compute). Called on that runtime: a backend that talks over
    /// the network connects there. `None` (the default): renew through
    /// [`Store::lease_keep_alive`].
    async fn lease_keeper(&self) -> Result<Option<Arc<dyn LeaseKeeper>>, StoreError> {
        Ok(None)
    }

    /// Drop history at and below `revision`; watches cannot start there any more.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The highest compacted revision (0 when nothing was compacted).
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;

    /// Writes a consistent copy of the whole store to `dest` (a new file) while the store
    /// serves: SQLite's online backup (a database file) or etcd's snapshot (the cluster's
    /// database, every prefix in it).
    async fn backup(&self, dest: &std::path::Path) -> Result<Backup, StoreError>;

    /// Whether writes are refused for lack of disk space. Backends that cannot run out
    /// (or cannot tell) keep the default: never.
    fn space(&self) -> SpaceStatus {
        SpaceStatus::default()
    }

    /// The largest transaction the backend accepts, as [`txn_ops`] counts it (etcd's
    /// `--max-txn-ops`); `None` when there is no such limit (SQLite). A transaction over it
    /// fails with [`StoreError::TooManyOps`] and writes nothing: callers that batch
    /// independent changes split their batches to fit.
    fn max_txn_ops(&self) -> Option<usize> {
        None
    }
}

/// How many operations `txn` costs against an operation limit, counted as etcd counts a
/// request against its `--max-txn-ops`: the largest of the number of compares and the
/// ops of each branch, where a branch that appends to logs also writes each log's head
/// (one op per log). A transaction with appends is sent nested inside one guarded by the
/// log heads, and etcd counts a nested transaction against what its parent leaves: so
/// the guard level's own count (the number of logs) adds to the nested one.
pub fn txn_ops(txn: &Txn) -> usize {
    fn logs(ops: &[Op]) -> std::collections::BTreeSet<&str> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Append { log, .. } => Some(log.as_str()),
                _ => None,
            })
            .collect()
    }
    let success_logs = logs(&txn.success);
    let failure_logs = logs(&txn.failure);
    let inner = txn
        .compares
        .len()
        .max(txn.success.len() + success_logs.len())
        .max(txn.failure.len() + failure_logs.len());
    let all_logs = success_logs.union(&failure_logs).count();
    if all_logs == 0 {
        inner
    } else {
        inner + all_logs
    }
}

/// Convenience operations built on [`Store::txn`].
#[async_trait]
pub trait StoreExt: Store {
    /// Write `key` if its `mod_revision` equals `expected` (0: only if absent).
    /// Returns the new key-value, or `Err(current)` when the guard failed.
    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<Result<KeyValue, Option<KeyValue>>, StoreError> {
        let resp = self
            .txn(Txn {
                compares: vec![Compare::ModRevision(key.to_owned(), expected)],
                success: vec![Op::put(key, value)],
                failure: vec![Op::Get(key.to_owned())],
            })
            .await?;
        Ok(match resp.results.into_iter().next() {
            Some(OpResult::Put { kv, .. }) if resp.succeeded => Ok(kv),
            Some(OpResult::Get(current)) => Err(current),
            _ => Err(None),
        })
    }

    /// Write `key` unconditionally.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let resp = self
            .txn(Txn {
                success: vec![Op::put(key, value)],
                ..Txn::default()
            })
            .await?;
        match resp.results.into_iter().next() {
            Some(OpResult::Put { kv, .. }) => Ok(kv),
            _ => Err(StoreError::Backend("put returned no result".into())),
        }
    }

    /// Delete `key` unconditionally; returns the deleted value, if any.
    async fn delete(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self
            .txn(Txn {
                success: vec![Op::Delete(key.to_owned())],
                ..Txn::default()
            })
            .await?;
        match resp.results.into_iter().next() {
            Some(OpResult::Delete { prev }) => Ok(prev),
            _ => Err(StoreError::Backend("delete returned no result".into())),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
