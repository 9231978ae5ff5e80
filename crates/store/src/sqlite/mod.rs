//! The embedded default backend: SQLite in WAL mode with group commit.
//!
//! - [`writer`]: one thread owns the write connection and commits queued transactions as
//!   one SQLite transaction (one fsync) per batch, each transaction in its own savepoint.
//! - [`read`]: `get` and `range` on a small pool of WAL reader connections, each in one read
//!   transaction, off the async runtime.
//! - [`watch`]: fan-out of committed batches to watchers, with replay from history.
//! - [`lease`]: in-memory lease deadlines and the expiry task.
//! - [`schema`]: tables and connection set-up.
//! - [`space`]: the NOSPACE state on a full disk (writes refused, deletes allowed, the
//!   reserve file) and its recovery when free space returns.
//!
//! Watch semantics of this backend:
//! - `start == 0` watches changes after the last revision published to watchers.
//! - `start` at or below the compacted revision fails with [`StoreError::Compacted`].
//! - `start` beyond the current revision is accepted: the watch waits for that revision
//!   (as etcd does), and never fails with [`StoreError::FutureRevision`].
//! - A watcher whose queue is full (see [`SqliteOptions::watch_buffer`]) is cancelled: its
//!   stream ends with [`StoreError::WatchLagged`] carrying the last revision it fully
//!   received; re-watch from the next one. The writer never waits for a watcher.
//! - When the store closes, streams end with [`StoreError::Closed`].

mod backup;
mod lease;
mod read;
mod schema;
mod space;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch as signal};

use self::lease::LeaseTable;
use self::read::ReadPool;
pub use self::space::SpaceOptions;
use self::space::SpaceState;
use self::watch::{Forwarder, Hub};
#[cfg(feature = "etcd")]
pub(crate) use self::writer::validate;
use self::writer::{WriterHandle, WriterShared};
use crate::{
    KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, SpaceStatus, Store, StoreError, Txn,
    TxnResponse, WatchStream,
};

/// Tuning of a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// `synchronous=FULL` when true (every acknowledged commit is fsynced and survives power
    /// loss); `NORMAL` otherwise (survives a process crash, not an OS crash).
    pub fsync: bool,
    /// Per-watcher queue length, in committed batches (the stream itself buffers as many
    /// batches again). A watcher that falls further behind is cancelled with
    /// [`StoreError::WatchLagged`].
    pub watch_buffer: usize,
    /// Maximum number of read connections (and concurrent reads).
    pub read_connections: usize,
    /// Maximum number of requests committed together in one group commit.
    pub max_batch: usize,
    /// How long a connection waits on a lock held by another process before failing.
    pub busy_timeout: Duration,
    /// Behaviour on a full disk (the NOSPACE state; see [`space`]).
    pub space: SpaceOptions,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            watch_buffer: 1024,
            read_connections: 4,
            max_batch: 1024,
            busy_timeout: Duration::from_secs(5),
            space: SpaceOptions::default(),
        }
    }
}

/// Renews leases in the table it shares with the store ([`Store::lease_keeper`]): memory
/// only, so any thread may.
struct LeaseKeeper {
    leases: Arc<LeaseTable>,
}

#[async_trait]
impl crate::LeaseKeeper for LeaseKeeper {
    async fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        self.leases.keep_alive(id)
    }
}

/// The SQLite backend. Open with [`SqliteStore::open`]; it shuts down when [`close`] is
/// called or the last reference is dropped.
///
/// [`close`]: SqliteStore::close
pub struct SqliteStore {
    path: PathBuf,
    opts: SqliteOptions,
    writer: WriterHandle,
    reads: Arc<ReadPool>,
    hub: Arc<Hub>,
    leases: Arc<LeaseTable>,
    compacted: Arc<AtomicI64>,
    space: Arc<SpaceState>,
    closed: AtomicBool,
    shutdown: signal::Sender<bool>,
    writer_done: signal::Receiver<bool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .field("revision", &self.hub.revision())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. Must be called within a Tokio
    /// runtime: the store spawns its lease-expiry task there.
    pub async fn open(path: &Path, opts: SqliteOptions) -> Result<Arc<Self>, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::InvalidArgument(
                "SqliteStore::open must be called within a Tokio runtime".into(),
            )
        })?;
        let owned = path.to_owned();
        let o = opts.clone();
        let space = Arc::new(SpaceState::new(path, opts.space.clone()));
        let reserve = Arc::clone(&space);
        let (lock, conn, checkpoint, revision, compacted, leases) =
            tokio::task::spawn_blocking(move || {
                let lock = schema::lock(&owned, o.busy_timeout)?;
                let conn = schema::open_writer(&owned, o.fsync, o.busy_timeout)?;
                let checkpoint = schema::open_checkpointer(&owned, o.busy_timeout)?;
                let (revision, compacted) = schema::revisions(&conn)?;
                let leases = load_leases(&conn)?;
                reserve.ensure_reserve();
                Ok::<_, StoreError>((lock, conn, checkpoint, revision, compacted, leases))
            })
            .await
            .map_err(|e| StoreError::Backend(format!("open task failed: {e}").into()))??;

        let hub = Arc::new(Hub::new(revision, opts.watch_buffer));
        let lease_table = Arc::new(LeaseTable::default());
        for (id, ttl) in leases {
            // Deadlines restart at now + TTL after a restart.
            lease_table.insert(id, ttl);
        }
        let compacted = Arc::new(AtomicI64::new(compacted));
        let checkpoint_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (writer, writer_done) = writer::spawn(
            conn,
            lock,
            WriterShared {
                hub: Arc::clone(&hub),
                space: Arc::clone(&space),
                leases: Arc::clone(&lease_table),
                compacted: Arc::clone(&compacted),
            },
            opts.max_batch,
            runtime,
            Arc::clone(&checkpoint_stop),
        )?;
        writer::spawn_checkpointer(checkpoint, Duration::from_millis(500), checkpoint_stop)?;
        let (shutdown, shutdown_rx) = signal::channel(false);
        tokio::spawn(lease::run_expiry(
            Arc::clone(&lease_table),
            writer.clone(),
            shutdown_rx,
        ));
        tracing::info!(path = %path.display(), revision, "store opened");
        Ok(Arc::new(Self {
            path: path.to_owned(),
            reads: Arc::new(ReadPool::new(
                path.to_owned(),
                opts.read_connections,
                opts.busy_timeout,
            )),
            opts,
            writer,
            hub,
            leases: lease_table,
            compacted,
            space,
            closed: AtomicBool::new(false),
            shutdown,
            writer_done,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shuts down: requests already queued are committed, later ones fail with
    /// [`StoreError::Closed`], watches end with [`StoreError::Closed`]. Returns when the
    /// writer has stopped. Idempotent.
    pub async fn close(&self) {
        self.begin_close();
        let mut done = self.writer_done.clone();
        // An error means the writer thread is gone, which is what we wait for.
        let _ = done.wait_for(|done| *done).await;
    }

    fn begin_close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.writer.shutdown();
        let _ = self.shutdown.send(true);
        self.reads.close();
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.begin_close();
    }
}

fn load_leases(conn: &rusqlite::Connection) -> Result<Vec<(LeaseId, Duration)>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, ttl_ms FROM leases")
        .map_err(schema::sql_err)?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
        .map_err(schema::sql_err)?;
    let mut leases = Vec::new();
    for row in rows {
        let (id, ttl_ms) = row.map_err(schema::sql_err)?;
        leases.push((
            id,
            Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
        ));
    }
    Ok(leases)
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        self.check_open()?;
        let key = key.to_owned();
        self.reads.read(move |conn| read::get(conn, &key)).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.check_open()?;
        self.reads.read(move |conn| read::range(conn, &req)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.check_open()?;
        writer::validate(&txn)?;
        self.writer.txn(txn).await
    }

    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream, StoreError> {
        self.check_open()?;
        if start < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "watch start revision {start} is negative"
            )));
        }
        let sub = self.hub.register(prefix)?;
        let start = if start == 0 { sub.revision + 1 } else { start };
        // Revisions above the one published at registration arrive live; older ones come
        // from history.
        let first = if start <= sub.revision {
            Some(Forwarder::first_page(&self.reads, prefix, start).await?)
        } else {
            None
        };
        let (tx, rx) = mpsc::channel(self.opts.watch_buffer.max(1));
        let forwarder = Forwarder {
            prefix: prefix.to_owned(),
            sub,
            out: tx,
            pool: Arc::clone(&self.reads),
            last: start - 1,
        };
        tokio::spawn(forwarder.run(first));
        Ok(WatchStream::new(rx))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.check_open()?;
        Ok(self.hub.revision())
    }

    async fn backup(&self, dest: &Path) -> Result<crate::Backup, StoreError> {
        self.check_open()?;
        let source = self.path.clone();
        let dest = dest.to_path_buf();
        let busy = self.opts.busy_timeout;
        tokio::task::spawn_blocking(move || backup::online(&source, &dest, busy))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.check_open()?;
        if ttl.is_zero() {
            return Err(StoreError::InvalidArgument(
                "lease TTL must be positive".into(),
            ));
        }
        self.writer.grant(ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        self.check_open()?;
        self.leases.keep_alive(id)
    }

    async fn lease_keeper(&self) -> Result<Option<Arc<dyn crate::LeaseKeeper>>, StoreError> {
        self.check_open()?;
        Ok(Some(Arc::new(LeaseKeeper {
            leases: Arc::clone(&self.leases),
        })))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.check_open()?;
        self.writer.revoke(id).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.check_open()?;
        self.writer.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.check_open()?;
        Ok(self.compacted.load(Ordering::SeqCst))
    }

    fn space(&self) -> SpaceStatus {
        self.space.status()
    }
}
