//! The read side: a small pool of WAL reader connections, used from `spawn_blocking`.
//!
//! Each read runs in one read transaction, so the data it returns and the revision it
//! reports (from `meta`) are one consistent snapshot. Readers never block the writer, and
//! the writer never blocks them (WAL).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row};
use tokio::sync::Semaphore;

use super::schema::{self, prefix_end, sql_err};
use crate::{Event, EventKind, KeyValue, RangeRequest, RangeResponse, Revision, StoreError};

/// A bounded pool of read connections, opened lazily.
pub(crate) struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf, size: usize, busy_timeout: Duration) -> Self {
        Self {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `f` inside one read transaction on a pooled connection, off the async runtime.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pool.take()?;
            let result = in_read_txn(&mut conn, f);
            pool.give_back(conn);
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) => Err(StoreError::Backend(format!("read task failed: {e}").into())),
        }
    }

    /// Closes the pool: pending and later reads fail with [`StoreError::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        self.idle.lock().unwrap().clear();
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        if let Some(conn) = self.idle.lock().unwrap().pop() {
            return Ok(conn);
        }
        schema::open_reader(&self.path, self.busy_timeout)
    }

    fn give_back(&self, conn: Connection) {
        if !self.closed.load(Ordering::SeqCst) {
            self.idle.lock().unwrap().push(conn);
        }
    }
}

fn in_read_txn<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = conn.transaction().map_err(sql_err)?;
    let result = f(&txn);
    // A read transaction has nothing to commit; ending it releases the snapshot.
    if let Err(e) = txn.finish() {
        tracing::warn!(error = %e, "ending a read transaction failed");
    }
    result
}

/// Converts a stored key to a string.
pub(crate) fn key_string(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|e| StoreError::Backend(format!("stored key is not UTF-8: {e}").into()))
}

/// Columns: key, value, create_revision, mod_revision, version, lease.
pub(crate) const KV_COLUMNS: &str = "key, value, create_revision, mod_revision, version, lease";

/// Reads a row selected with [`KV_COLUMNS`]; the key stays raw bytes (checked by the caller).
pub(crate) fn raw_kv(row: &Row<'_>) -> rusqlite::Result<(Vec<u8>, KeyValue)> {
    Ok((
        row.get(0)?,
        KeyValue {
            key: String::new(),
            value: row.get(1)?,
            create_revision: row.get(2)?,
            mod_revision: row.get(3)?,
            version: row.get(4)?,
            lease: row.get(5)?,
        },
    ))
}

fn finish_kv((key, mut kv): (Vec<u8>, KeyValue)) -> Result<KeyValue, StoreError> {
    kv.key = key_string(key)?;
    Ok(kv)
}

/// The current key-value of `key`, if any.
pub(crate) fn load_kv(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let raw = conn
        .prepare_cached(&format!("SELECT {KV_COLUMNS} FROM kv WHERE key = ?1"))
        .and_then(|mut stmt| stmt.query_row([key.as_bytes()], raw_kv).optional())
        .map_err(sql_err)?;
    match raw {
        Some((_, mut kv)) => {
            kv.key = key.to_owned();
            Ok(Some(kv))
        }
        None => Ok(None),
    }
}

/// `get` in a read transaction.
pub(crate) fn get(
    conn: &Connection,
    key: &str,
) -> Result<(Option<KeyValue>, Revision), StoreError> {
    let kv = load_kv(conn, key)?;
    Ok((kv, schema::meta(conn, "revision")?))
}

/// `range` in a read transaction.
pub(crate) fn range(conn: &Connection, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
    let revision = schema::meta(conn, "revision")?;
    let lo = req.prefix.as_bytes();
    let hi = prefix_end(&req.prefix);
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM kv WHERE key >= ?1 AND key < ?2")
        .and_then(|mut stmt| stmt.query_row(rusqlite::params![lo, hi], |row| row.get(0)))
        .map_err(sql_err)?;
    let count = u64::try_from(count).unwrap_or_default();
    if req.count_only {
        return Ok(RangeResponse {
            kvs: Vec::new(),
            more: false,
            count,
            revision,
        });
    }
    // Start strictly after `start_after` when it lies inside the prefix, else at the prefix.
    let (start, exclusive) = match req.start_after.as_deref() {
        Some(after) if after.as_bytes() >= lo => (after.as_bytes(), true),
        _ => (lo, false),
    };
    let op = if exclusive { ">" } else { ">=" };
    // Fetch one extra row to learn whether more follow.
    let fetch = if req.limit == 0 {
        -1
    } else {
        i64::try_from(req.limit).unwrap_or(i64::MAX - 1) + 1
    };
    let sql =
        format!("SELECT {KV_COLUMNS} FROM kv WHERE key {op} ?1 AND key < ?2 ORDER BY key LIMIT ?3");
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params![start, hi, fetch], raw_kv)
        .map_err(sql_err)?;
    let mut kvs = Vec::new();
    for row in rows {
        kvs.push(finish_kv(row.map_err(sql_err)?)?);
    }
    let more = req.limit != 0 && kvs.len() > req.limit;
    kvs.truncate(if req.limit == 0 { kvs.len() } else { req.limit });
    Ok(RangeResponse {
        kvs,
        more,
        count,
        revision,
    })
}

/// A page of history for a watch replay.
pub(crate) struct HistoryPage {
    /// `(revision, idx, event)` in order.
    pub(crate) events: Vec<(Revision, i64, Event)>,
    /// The store's revision in the snapshot the page was read from.
    pub(crate) revision: Revision,
    /// The compacted revision in that snapshot.
    pub(crate) compacted: Revision,
}

/// Reads up to `limit` history rows under `prefix` strictly after position `after`
/// (`(revision, idx)`), in order.
pub(crate) fn history_page(
    conn: &Connection,
    prefix: &str,
    after: (Revision, i64),
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let (revision, compacted) = schema::revisions(conn)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT revision, idx, key, kind, value, create_revision, version, lease,
                    prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease
             FROM history
             WHERE (revision, idx) > (?1, ?2) AND key >= ?3 AND key < ?4
             ORDER BY revision, idx
             LIMIT ?5",
        )
        .map_err(sql_err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(
            rusqlite::params![
                after.0,
                after.1,
                prefix.as_bytes(),
                prefix_end(prefix),
                limit
            ],
            |row| {
                let revision: Revision = row.get(0)?;
                let kind: i64 = row.get(3)?;
                let prev_value: Option<Vec<u8>> = row.get(8)?;
                let prev = match prev_value {
                    Some(value) => Some(KeyValue {
                        key: String::new(),
                        value,
                        create_revision: row.get(9)?,
                        mod_revision: row.get(10)?,
                        version: row.get(11)?,
                        lease: row.get(12)?,
                    }),
                    None => None,
                };
                Ok((
                    revision,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    Event {
                        kind: if kind == 1 {
                            EventKind::Delete
                        } else {
                            EventKind::Put
                        },
                        kv: KeyValue {
                            key: String::new(),
                            value: row.get(4)?,
                            create_revision: row.get(5)?,
                            mod_revision: revision,
                            version: row.get(6)?,
                            lease: row.get(7)?,
                        },
                        prev,
                    },
                ))
            },
        )
        .map_err(sql_err)?;
    let mut events = Vec::new();
    for row in rows {
        let (rev, idx, key, mut event) = row.map_err(sql_err)?;
        let key = key_string(key)?;
        if let Some(prev) = event.prev.as_mut() {
            prev.key.clone_from(&key);
        }
        event.kv.key = key;
        events.push((rev, idx, event));
    }
    Ok(HistoryPage {
        events,
        revision,
        compacted,
    })
}
