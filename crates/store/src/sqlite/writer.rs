//! The writer thread and group commit.
//!
//! One OS thread owns the write connection. Callers send requests through a channel with a
//! oneshot for the answer. The thread takes every queued request (up to `max_batch`),
//! applies each in order inside its own SAVEPOINT (so a transaction that fails, say on an
//! unknown lease, leaves no trace and does not disturb the others), commits ONE SQLite
//! transaction for the whole batch (one WAL fsync), and only then answers the callers and
//! publishes the batch's events to watchers. A transaction that writes nothing does not
//! advance the revision.
//!
//! If anything of the batch fails below the level of one request (the savepoint machinery,
//! the commit), every request of the batch fails with the same error, nothing of it is
//! published, and the writer reloads its in-memory state (revision, lease counter, chain
//! heads) from the database. SQLite may roll back the whole transaction on such errors
//! (`SQLITE_FULL` does), after which the batch's savepoints no longer exist: that is why a
//! savepoint error abandons the batch instead of carrying on in autocommit mode.
//!
//! A full disk is such a failure; it puts the writer in the NOSPACE state ([`super::space`]),
//! where the batch is retried once with only the requests that free space or write nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{oneshot, watch};

use super::lease::LeaseTable;
use super::read::load_kv;
use super::schema::{self, sql_err};
use super::space::{self, SpaceState};
use super::watch::{Batch, Committed, Hub};
use crate::chain::{self, ChainEntry, ChainHead};
use crate::{
    Compare, Event, EventKind, KeyValue, LeaseId, Op, OpResult, Revision, StoreError, Txn,
    TxnResponse,
};

/// A request to the writer thread.
pub(crate) enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResponse, StoreError>>,
    },
    Grant {
        ttl: Duration,
        reply: oneshot::Sender<Result<LeaseId, StoreError>>,
    },
    Revoke {
        id: LeaseId,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Finish the requests queued before this one, then stop.
    Shutdown,
}

/// The callers' side of the writer: cheap to clone.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Request>,
}

impl WriterHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(|reply| Request::Txn { txn, reply }).await
    }

    pub(crate) async fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.call(|reply| Request::Grant { ttl, reply }).await
    }

    pub(crate) async fn revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.call(|reply| Request::Revoke { id, reply }).await
    }

    pub(crate) async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.call(|reply| Request::Compact { revision, reply })
            .await
    }

    /// Asks the writer to stop after the requests already queued.
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown);
    }
}

/// What the writer shares with the rest of the store.
pub(crate) struct WriterShared {
    pub(crate) hub: Arc<Hub>,
    pub(crate) space: Arc<SpaceState>,
    pub(crate) leases: Arc<LeaseTable>,
    pub(crate) compacted: Arc<AtomicI64>,
}

/// The writer's in-memory view of the database, reloaded after a failed commit.
struct State {
    revision: Revision,
    compacted: Revision,
    next_lease_id: LeaseId,
    /// Cache of `chain_heads`; a log missing here is read from the table.
    heads: HashMap<String, ChainHead>,
}

impl State {
    fn load(conn: &Connection) -> Result<Self, StoreError> {
        Ok(Self {
            revision: schema::meta(conn, "revision")?,
            compacted: schema::meta(conn, "compacted")?,
            next_lease_id: schema::meta(conn, "next_lease_id")?,
            heads: HashMap::new(),
        })
    }
}

/// Starts the writer thread on `conn`, holding the database's `lock` until it exits. `done`
/// turns true when the thread has exited.
pub(crate) fn spawn(
    conn: Connection,
    lock: std::fs::File,
    shared: WriterShared,
    max_batch: usize,
    runtime: tokio::runtime::Handle,
    checkpoint_stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(WriterHandle, watch::Receiver<bool>), StoreError> {
    let state = State::load(&conn)?;
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = watch::channel(false);
    let writer = Writer {
        conn,
        rx,
        state,
        shared,
        max_batch: max_batch.max(1),
    };
    let exit = ExitGuard {
        hub: Arc::clone(&writer.shared.hub),
        lock: Some(lock),
        done: done_tx,
        checkpoint_stop,
    };
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let _exit = exit;
            // Dropped before `_exit`, so the connection is closed when `done` fires.
            let mut writer = writer;
            // Lease deadlines use Tokio's clock, which needs the runtime's context.
            let _runtime = runtime.enter();
            writer.run();
        })
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok((WriterHandle { tx }, done_rx))
}

/// Copies the WAL into the database in the background (PASSIVE: never blocks the writer
/// or readers), every `every`, until `stop` is set. The writer's own automatic checkpoint
/// is off, so commits never pay for it.
pub(crate) fn spawn_checkpointer(
    conn: Connection,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            // Logged when it starts and stops failing, not every time: on a full disk it
            // fails until space is freed.
            let mut failing = false;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying quietly");
                    }
                    Err(_) => {}
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("WAL checkpoint works again");
                    }
                    Ok(()) => {}
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Runs when the writer thread ends, normally or by panic: ends every watch, releases the
/// database lock and signals `done`.
struct ExitGuard {
    hub: Arc<Hub>,
    lock: Option<std::fs::File>,
    done: watch::Sender<bool>,
    checkpoint_stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("store writer panicked; the store is closed");
        }
        self.hub.close();
        self.checkpoint_stop.store(true, Ordering::Relaxed);
        drop(self.lock.take());
        let _ = self.done.send(true);
    }
}

struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Request>,
    state: State,
    shared: WriterShared,
    max_batch: usize,
}

/// What a committed attempt at a batch produced, to apply and answer after the commit.
struct Attempt {
    results: Vec<Result<Answer, StoreError>>,
    effects: Vec<Effect>,
    committed: Vec<Committed>,
}

impl Writer {
    fn run(&mut self) {
        loop {
            let first = if self.shared.space.is_no_space() {
                // Idle in NOSPACE: look at the disk now and then, so the state clears (and
                // readiness returns) without waiting for a write.
                match self.rx.recv_timeout(self.shared.space.check_interval()) {
                    Ok(request) => request,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.shared.space.poll();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.rx.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let shutdown = batch.iter().position(|r| matches!(r, Request::Shutdown));
            if let Some(pos) = shutdown {
                // Requests queued after the shutdown are dropped: their callers see Closed.
                batch.truncate(pos);
            }
            self.process(batch);
            if shutdown.is_some() {
                tracing::debug!("store writer stopping");
                return;
            }
        }
    }

    /// Applies a batch in one SQLite transaction, then publishes and answers. On a full
    /// disk, enters NOSPACE and tries the batch once more under its rules.
    fn process(&mut self, batch: Vec<Request>) {
        let (works, replies): (Vec<Work>, Vec<Reply>) =
            batch.into_iter().filter_map(Work::of).unzip();
        if works.is_empty() {
            return;
        }
        let space = Arc::clone(&self.shared.space);
        let mut no_space = space.poll();
        let attempt = loop {
            let failure = match self.attempt(&works, no_space) {
                Ok(attempt) => break attempt,
                Err(failure) => failure,
            };
            match State::load(&self.conn) {
                Ok(state) => self.state = state,
                Err(e) => tracing::error!(error = %e, "store writer could not reload its state"),
            }
            let full = space::is_full(&failure) || (space::is_io(&failure) && space.is_low());
            if full && !no_space {
                space.enter(&failure);
                no_space = true;
                continue;
            }
            if full {
                for reply in replies {
                    reply.send(Err(space.refuse()));
                }
            } else {
                tracing::error!(error = %failure, "store writer failed to commit a batch; failing its requests");
                fail_all(replies, &failure);
            }
            return;
        };

        // Durable: now make it visible.
        self.shared
            .compacted
            .store(self.state.compacted, Ordering::SeqCst);
        for effect in attempt.effects {
            match effect {
                Effect::Grant(id, ttl) => self.shared.leases.insert(id, ttl),
                Effect::Revoke(id) => self.shared.leases.remove(id),
            }
        }
        // Answer first, then fan out: callers are not delayed behind a thousand watchers.
        // `advance` first, so a reader of the revision after the answer sees its own write.
        self.shared.hub.advance(self.state.revision);
        for (reply, result) in replies.into_iter().zip(attempt.results) {
            reply.send(result);
        }
        if !attempt.committed.is_empty() {
            self.shared.hub.publish(
                self.state.revision,
                Batch {
                    txns: attempt.committed,
                },
            );
        }
        if works.iter().any(|w| matches!(w, Work::Compact(_))) {
            self.reclaim();
        }
    }

    /// After a compaction: returns the pages it freed to the filesystem (a store created
    /// with `auto_vacuum = INCREMENTAL`; older stores keep their free pages for reuse),
    /// so the file shrinks with its history instead of only ever growing.
    fn reclaim(&mut self) {
        let incremental = self
            .conn
            .pragma_query_value(None, "auto_vacuum", |row| row.get::<_, i64>(0))
            .is_ok_and(|mode| mode == 2);
        if !incremental {
            return;
        }
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |row| row.get(0))
            .unwrap_or(0);
        if free == 0 {
            return;
        }
        // The vacuum frees one page per step: the pragma is read to its end.
        match self
            .conn
            .pragma_query(None, "incremental_vacuum", |_row| Ok(()))
        {
            Ok(()) => tracing::debug!(pages = free, "returned free pages after compaction"),
            Err(e) => tracing::warn!(error = %e, "incremental vacuum after compaction failed"),
        }
    }

    /// One attempt at a batch: every request in its savepoint, then one commit. `Err`
    /// means nothing of the batch was committed; the caller reloads the state.
    fn attempt(&mut self, works: &[Work], no_space: bool) -> Result<Attempt, rusqlite::Error> {
        let start_revision = self.state.revision;
        let start_lease_id = self.state.next_lease_id;
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(works.len());
        let mut effects = Vec::new();
        let mut committed = Vec::new();
        let space = &*self.shared.space;
        for work in works {
            let rules = Rules { no_space, space };
            results.push(apply_work(
                &mut tx,
                &mut self.state,
                work,
                rules,
                &mut effects,
                &mut committed,
            )?);
            if tx.is_autocommit() {
                // SQLite rolled the batch back behind an error a request reported as its
                // own: carrying on would commit the next requests one by one.
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("SQLite rolled back the batch's transaction".into()),
                ));
            }
        }
        finish_batch(tx, &self.state, start_revision, start_lease_id)?;
        Ok(Attempt {
            results,
            effects,
            committed,
        })
    }
}

/// Writes the batch's bookkeeping and commits.
fn finish_batch(
    tx: Transaction<'_>,
    state: &State,
    start_revision: Revision,
    start_lease_id: LeaseId,
) -> Result<(), rusqlite::Error> {
    if state.revision != start_revision {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'revision'",
            [state.revision],
        )?;
    }
    if state.next_lease_id != start_lease_id {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'next_lease_id'",
            [state.next_lease_id],
        )?;
    }
    tx.commit()
}

/// A side effect on in-memory state, applied only after the batch commits.
enum Effect {
    Grant(LeaseId, Duration),
    Revoke(LeaseId),
}

/// What a request asks the writer to do, apart from where its answer goes (so that a
/// batch can be attempted twice).
enum Work {
    Txn(Txn),
    Grant(Duration),
    Revoke(LeaseId),
    Compact(Revision),
}

impl Work {
    /// Splits a request; `None` for `Shutdown`.
    fn of(request: Request) -> Option<(Work, Reply)> {
        Some(match request {
            Request::Txn { txn, reply } => (Work::Txn(txn), Reply::Txn(reply)),
            Request::Grant { ttl, reply } => (Work::Grant(ttl), Reply::Lease(reply)),
            Request::Revoke { id, reply } => (Work::Revoke(id), Reply::Unit(reply)),
            Request::Compact { revision, reply } => (Work::Compact(revision), Reply::Unit(reply)),
            Request::Shutdown => return None,
        })
    }
}

/// Where an answer goes.
enum Reply {
    Txn(oneshot::Sender<Result<TxnResponse, StoreError>>),
    Lease(oneshot::Sender<Result<LeaseId, StoreError>>),
    Unit(oneshot::Sender<Result<(), StoreError>>),
}

/// A successful answer.
enum Answer {
    Txn(TxnResponse),
    Lease(LeaseId),
    Unit,
}

impl Reply {
    fn send(self, result: Result<Answer, StoreError>) {
        // A caller that stopped waiting is not an error.
        match (self, result) {
            (Reply::Txn(tx), Ok(Answer::Txn(resp))) => drop(tx.send(Ok(resp))),
            (Reply::Lease(tx), Ok(Answer::Lease(id))) => drop(tx.send(Ok(id))),
            (Reply::Unit(tx), Ok(Answer::Unit)) => drop(tx.send(Ok(()))),
            (Reply::Txn(tx), Err(e)) => drop(tx.send(Err(e))),
            (Reply::Lease(tx), Err(e)) => drop(tx.send(Err(e))),
            (Reply::Unit(tx), Err(e)) => drop(tx.send(Err(e))),
            (reply, Ok(_)) => {
                tracing::error!("store writer produced an answer of the wrong kind");
                reply.send(Err(StoreError::Backend(
                    "internal: wrong answer kind".into(),
                )));
            }
        }
    }
}

fn fail_all(replies: Vec<Reply>, cause: &dyn std::fmt::Display) {
    for reply in replies {
        reply.send(Err(StoreError::Backend(
            format!("commit failed: {cause}").into(),
        )));
    }
}

/// What a request may do in this attempt.
#[derive(Clone, Copy)]
struct Rules<'a> {
    /// NOSPACE: refuse what would grow the store.
    no_space: bool,
    space: &'a SpaceState,
}

/// Applies one request in its own savepoint. `Ok` carries the request's own answer (which
/// may be an error that was rolled back); `Err` means the batch must be abandoned: the
/// savepoint machinery failed, or the disk is full (SQLite may then have rolled back the
/// whole transaction, and the batch is retried under the NOSPACE rules).
fn apply_work(
    tx: &mut Transaction<'_>,
    state: &mut State,
    work: &Work,
    rules: Rules<'_>,
    effects: &mut Vec<Effect>,
    committed: &mut Vec<Committed>,
) -> Result<Result<Answer, StoreError>, rusqlite::Error> {
    Ok(match work {
        Work::Txn(txn) => match in_savepoint(tx, |conn| apply_txn(conn, state, txn, rules))? {
            Ok(applied) => Ok(Answer::Txn(applied.commit(state, committed))),
            Err(e) => Err(e),
        },
        Work::Grant(ttl) => {
            if rules.no_space {
                return Ok(Err(rules.space.refuse()));
            }
            let id = state.next_lease_id;
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
            let result = in_savepoint(tx, |conn| {
                conn.prepare_cached("INSERT INTO leases (id, ttl_ms) VALUES (?1, ?2)")
                    .and_then(|mut stmt| stmt.execute(params![id, ttl_ms]))
                    .map_err(sql_err)
            })?;
            match result {
                Ok(_) => {
                    state.next_lease_id += 1;
                    effects.push(Effect::Grant(id, *ttl));
                    Ok(Answer::Lease(id))
                }
                Err(e) => Err(e),
            }
        }
        Work::Revoke(id) => match in_savepoint(tx, |conn| apply_revoke(conn, state, *id))? {
            Ok(applied) => {
                applied.commit(state, committed);
                effects.push(Effect::Revoke(*id));
                Ok(Answer::Unit)
            }
            Err(e) => Err(e),
        },
        Work::Compact(revision) => {
            let revision = *revision;
            if revision > state.revision {
                return Ok(Err(StoreError::FutureRevision {
                    requested: revision,
                    current: state.revision,
                }));
            }
            if revision <= state.compacted {
                return Ok(Ok(Answer::Unit));
            }
            let result = in_savepoint(tx, |conn| {
                conn.execute("DELETE FROM history WHERE revision <= ?1", [revision])
                    .map_err(sql_err)?;
                schema::set_meta(conn, "compacted", revision)
            })?;
            match result {
                Ok(()) => {
                    state.compacted = revision;
                    Ok(Answer::Unit)
                }
                Err(e) => Err(e),
            }
        }
    })
}

/// Runs `f` in a savepoint: released when `f` succeeds, rolled back when it fails. The outer
/// error is a failure of the savepoint itself.
fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<Result<T, StoreError>, rusqlite::Error> {
    let mut sp = tx.savepoint()?;
    match f(&sp) {
        Ok(value) => {
            sp.commit()?;
            Ok(Ok(value))
        }
        // A full disk is the batch's failure, not this request's: SQLite may have rolled
        // back the whole transaction.
        Err(StoreError::Backend(e)) if e.downcast_ref().is_some_and(space::is_full) => {
            match e.downcast::<rusqlite::Error>() {
                Ok(e) => Err(*e),
                Err(e) => Ok(Err(StoreError::Backend(e))),
            }
        }
        Err(e) => {
            sp.rollback()?;
            sp.finish()?;
            Ok(Err(e))
        }
    }
}

/// The effects of one writing request, kept aside until its savepoint is released.
struct Applied {
    response: TxnResponse,
    ctx: TxnCtx,
}

impl Applied {
    /// Folds a released request into the writer state; returns its response.
    fn commit(self, state: &mut State, committed: &mut Vec<Committed>) -> TxnResponse {
        let Applied { response, ctx } = self;
        state.heads.extend(ctx.heads);
        if !ctx.events.is_empty() {
            state.revision = ctx.revision;
            committed.push(Committed {
                revision: ctx.revision,
                events: ctx.events,
            });
        }
        response
    }
}

/// The writes of one transaction in progress.
struct TxnCtx {
    /// The revision this transaction gets if it writes.
    revision: Revision,
    events: Vec<Event>,
    /// Chain heads this transaction moved, by log.
    heads: BTreeMap<String, ChainHead>,
}

fn apply_txn(
    conn: &Connection,
    state: &State,
    txn: &Txn,
    rules: Rules<'_>,
) -> Result<Applied, StoreError> {
    let mut succeeded = true;
    for compare in &txn.compares {
        if !eval(conn, compare)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    if rules.no_space && !frees_or_reads(ops) {
        return Err(rules.space.refuse());
    }
    let mut ctx = TxnCtx {
        revision: state.revision + 1,
        events: Vec::new(),
        heads: BTreeMap::new(),
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Get(key) => OpResult::Get(load_kv(conn, key)?),
            Op::Put { key, value, lease } => {
                if let Some(id) = *lease {
                    ensure_lease(conn, id)?;
                }
                let (kv, prev) = write_put(conn, &mut ctx, key.clone(), value.clone(), *lease)?;
                OpResult::Put { kv, prev }
            }
            Op::Delete(key) => {
                let prev = match load_kv(conn, key)? {
                    Some(prev) => {
                        write_delete(conn, &mut ctx, prev.clone())?;
                        Some(prev)
                    }
                    None => None,
                };
                OpResult::Delete { prev }
            }
            Op::Append { log, payload } => {
                append(conn, state, &mut ctx, log.clone(), payload.clone())?
            }
        });
    }
    write_heads(conn, &mut ctx)?;
    let revision = if ctx.events.is_empty() {
        state.revision
    } else {
        ctx.revision
    };
    Ok(Applied {
        response: TxnResponse {
            succeeded,
            revision,
            results,
        },
        ctx,
    })
}

/// Whether a branch may run in NOSPACE: it writes no `Put`, and appends (audit entries)
/// only alongside a delete, the way an audited delete does.
fn frees_or_reads(ops: &[Op]) -> bool {
    let puts = ops.iter().any(|op| matches!(op, Op::Put { .. }));
    let appends = ops.iter().any(|op| matches!(op, Op::Append { .. }));
    let deletes = ops.iter().any(|op| matches!(op, Op::Delete(_)));
    !puts && (!appends || deletes)
}

fn apply_revoke(conn: &Connection, state: &State, id: LeaseId) -> Result<Applied, StoreError> {
    ensure_lease(conn, id)?;
    let keys: Vec<Vec<u8>> = {
        let mut stmt = conn
            .prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")
            .map_err(sql_err)?;
        let rows = stmt.query_map([id], |row| row.get(0)).map_err(sql_err)?;
        rows.collect::<Result<_, _>>().map_err(sql_err)?
    };
    let mut ctx = TxnCtx {
        revision: state.revision + 1,
        events: Vec::new(),
        heads: BTreeMap::new(),
    };
    for key in keys {
        let key = super::read::key_string(key)?;
        if let Some(prev) = load_kv(conn, &key)? {
            write_delete(conn, &mut ctx, prev)?;
        }
    }
    conn.prepare_cached("DELETE FROM leases WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map_err(sql_err)?;
    let revision = if ctx.events.is_empty() {
        state.revision
    } else {
        ctx.revision
    };
    Ok(Applied {
        response: TxnResponse {
            succeeded: true,
            revision,
            results: Vec::new(),
        },
        ctx,
    })
}

fn ensure_lease(conn: &Connection, id: LeaseId) -> Result<(), StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM leases WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([id], |_| Ok(())).optional())
        .map_err(sql_err)?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::LeaseNotFound(id))
    }
}

fn eval(conn: &Connection, compare: &Compare) -> Result<bool, StoreError> {
    Ok(match compare {
        Compare::ModRevision(key, revision) => {
            let current = load_kv(conn, key)?.map_or(0, |kv| kv.mod_revision);
            current == *revision
        }
        Compare::Exists(key) => load_kv(conn, key)?.is_some(),
        Compare::Absent(key) => load_kv(conn, key)?.is_none(),
        Compare::Value(key, value) => load_kv(conn, key)?.is_some_and(|kv| kv.value == *value),
    })
}

fn write_put(
    conn: &Connection,
    ctx: &mut TxnCtx,
    key: String,
    value: Vec<u8>,
    lease: Option<LeaseId>,
) -> Result<(KeyValue, Option<KeyValue>), StoreError> {
    let prev = load_kv(conn, &key)?;
    let kv = KeyValue {
        create_revision: prev.as_ref().map_or(ctx.revision, |p| p.create_revision),
        mod_revision: ctx.revision,
        version: prev.as_ref().map_or(1, |p| p.version + 1),
        lease,
        key,
        value,
    };
    conn.prepare_cached(
        "INSERT INTO kv (key, value, create_revision, mod_revision, version, lease)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
             create_revision = excluded.create_revision, mod_revision = excluded.mod_revision,
             version = excluded.version, lease = excluded.lease",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            kv.key.as_bytes(),
            kv.value,
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease
        ])
    })
    .map_err(sql_err)?;
    record(
        conn,
        ctx,
        Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: prev.clone(),
        },
    )?;
    Ok((kv, prev))
}

/// Deletes an existing key. The event carries the last value, `mod_revision` = the delete's
/// revision, and (as etcd's tombstones) `create_revision` = `version` = 0, no lease.
fn write_delete(conn: &Connection, ctx: &mut TxnCtx, prev: KeyValue) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM kv WHERE key = ?1")
        .and_then(|mut stmt| stmt.execute([prev.key.as_bytes()]))
        .map_err(sql_err)?;
    let kv = KeyValue {
        key: prev.key.clone(),
        value: prev.value.clone(),
        create_revision: 0,
        mod_revision: ctx.revision,
        version: 0,
        lease: None,
    };
    record(
        conn,
        ctx,
        Event {
            kind: EventKind::Delete,
            kv,
            prev: Some(prev),
        },
    )
}

/// Appends the event to history and to the transaction's events.
fn record(conn: &Connection, ctx: &mut TxnCtx, event: Event) -> Result<(), StoreError> {
    let idx = i64::try_from(ctx.events.len()).unwrap_or(i64::MAX);
    let kind: i64 = match event.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    };
    let prev = event.prev.as_ref();
    conn.prepare_cached(
        "INSERT INTO history (revision, idx, key, kind, value, create_revision, version, lease,
             prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            ctx.revision,
            idx,
            event.kv.key.as_bytes(),
            kind,
            event.kv.value,
            event.kv.create_revision,
            event.kv.version,
            event.kv.lease,
            prev.map(|p| p.value.as_slice()),
            prev.map(|p| p.create_revision),
            prev.map(|p| p.mod_revision),
            prev.map(|p| p.version),
            prev.and_then(|p| p.lease),
        ])
    })
    .map_err(sql_err)?;
    ctx.events.push(event);
    Ok(())
}

fn append(
    conn: &Connection,
    state: &State,
    ctx: &mut TxnCtx,
    log: String,
    payload: Vec<u8>,
) -> Result<OpResult, StoreError> {
    let head = match ctx.heads.get(&log).or_else(|| state.heads.get(&log)) {
        Some(head) => *head,
        None => load_head(conn, &log)?,
    };
    let seq = head.seq + 1;
    let entry = ChainEntry::new(seq, ctx.revision, head.hash, payload);
    let key = chain::entry_key(&log, seq);
    write_put(conn, ctx, key.clone(), entry.encode(), None)?;
    ctx.heads.insert(
        log,
        ChainHead {
            seq,
            hash: entry.hash,
        },
    );
    Ok(OpResult::Append { key, seq })
}

fn load_head(conn: &Connection, log: &str) -> Result<ChainHead, StoreError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM chain_heads WHERE log = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([log.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sql_err)?;
    let Some((seq, hash)) = row else {
        return Ok(ChainHead::default());
    };
    let hash: [u8; 32] = hash.try_into().map_err(|_| {
        StoreError::Backend(format!("chain head of {log} has a malformed hash").into())
    })?;
    Ok(ChainHead {
        seq: u64::try_from(seq).unwrap_or_default(),
        hash,
    })
}

/// Persists the heads this transaction moved, in `chain_heads` and as `{log}head` keys.
fn write_heads(conn: &Connection, ctx: &mut TxnCtx) -> Result<(), StoreError> {
    let heads: Vec<(String, ChainHead)> = ctx
        .heads
        .iter()
        .map(|(log, head)| (log.clone(), *head))
        .collect();
    for (log, head) in heads {
        conn.prepare_cached(
            "INSERT INTO chain_heads (log, seq, hash) VALUES (?1, ?2, ?3)
             ON CONFLICT (log) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                log.as_bytes(),
                i64::try_from(head.seq).unwrap_or(i64::MAX),
                head.hash.as_slice()
            ])
        })
        .map_err(sql_err)?;
        write_put(conn, ctx, chain::head_key(&log), head.encode(), None)?;
    }
    Ok(())
}

/// Rejects malformed transactions before they reach the writer.
pub(crate) fn validate(txn: &Txn) -> Result<(), StoreError> {
    for compare in &txn.compares {
        let key = match compare {
            Compare::ModRevision(key, _)
            | Compare::Exists(key)
            | Compare::Absent(key)
            | Compare::Value(key, _) => key,
        };
        if key.is_empty() {
            return Err(StoreError::InvalidArgument(
                "compare on an empty key".into(),
            ));
        }
    }
    for (branch, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
        let mut written = HashSet::new();
        for op in ops {
            let key = match op {
                Op::Get(key) => {
                    if key.is_empty() {
                        return Err(StoreError::InvalidArgument("get of an empty key".into()));
                    }
                    continue;
                }
                Op::Put { key, .. } | Op::Delete(key) => key,
                Op::Append { log, .. } => {
                    if log.is_empty() {
                        return Err(StoreError::InvalidArgument(
                            "append to a log with an empty name".into(),
                        ));
                    }
                    continue;
                }
            };
            if key.is_empty() {
                return Err(StoreError::InvalidArgument(format!(
                    "{branch} branch writes an empty key"
                )));
            }
            if !written.insert(key.as_str()) {
                return Err(StoreError::InvalidArgument(format!(
                    "{branch} branch writes key {key} more than once"
                )));
            }
        }
    }
    Ok(())
}
