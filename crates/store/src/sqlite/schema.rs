//! The on-disk schema: creation, version check and connection set-up.
//!
//! Tables (schema version 1, kept in `PRAGMA user_version`):
//!
//! - `meta(name, value)`: `revision` (current), `compacted` (highest compacted revision),
//!   `next_lease_id`.
//! - `kv`: the current value of every live key. Keys are stored as BLOBs so that range
//!   bounds compare byte-wise (`memcmp`), which makes prefix ranges index scans.
//! - `history`: one row per event, keyed by `(revision, idx)` where `idx` is the event's
//!   position within its transaction; holds the new key-value and the previous one so a
//!   watch can replay events exactly. Compaction deletes rows at and below a revision.
//! - `leases(id, ttl_ms)`: granted leases. Deadlines live in memory only.
//! - `chain_heads(log, seq, hash)`: the head of every hash-chained log, authoritative for
//!   appends (the `{log}head` key mirrors it for verification).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{Revision, StoreError};

/// Current schema version.
pub(crate) const SCHEMA_VERSION: i64 = 1;

const CREATE: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0), ('next_lease_id', 1);
CREATE TABLE kv (
    key             BLOB PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER
);
CREATE INDEX kv_by_lease ON kv (lease) WHERE lease IS NOT NULL;
CREATE TABLE history (
    revision             INTEGER NOT NULL,
    idx                  INTEGER NOT NULL,
    key                  BLOB NOT NULL,
    kind                 INTEGER NOT NULL, -- 0 put, 1 delete
    value                BLOB NOT NULL,
    create_revision      INTEGER NOT NULL,
    version              INTEGER NOT NULL,
    lease                INTEGER,
    prev_value           BLOB,             -- NULL: the key did not exist before
    prev_create_revision INTEGER,
    prev_mod_revision    INTEGER,
    prev_version         INTEGER,
    prev_lease           INTEGER,
    PRIMARY KEY (revision, idx)
);
CREATE TABLE leases (
    id     INTEGER PRIMARY KEY,
    ttl_ms INTEGER NOT NULL
);
CREATE TABLE chain_heads (
    log  BLOB PRIMARY KEY,
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
);
";

/// Takes the exclusive lock file `<path>.lock`, waiting up to `wait` for another holder (a
/// store in this process that is still shutting down) to let go. Only one store may write a
/// database: the writer keeps the revision in memory. The OS releases the lock if the
/// process dies.
pub(crate) fn lock(path: &Path, wait: Duration) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Backend(
                    format!(
                        "{} is in use by another Meridian store (lock {} is held); stop the \
                         other server or use another data directory",
                        path.display(),
                        std::path::Path::new(&lock_path).display()
                    )
                    .into(),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::Backend(Box::new(e))),
        }
    }
}

pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Opens the writer connection: WAL mode, the requested durability, and the schema created
/// or checked.
pub(crate) fn open_writer(
    path: &Path,
    fsync: bool,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(busy_timeout).map_err(sql_err)?;
    // A new database returns the pages compaction frees to the filesystem
    // (`writer::reclaim`). Only an empty file takes this, and only before WAL mode writes
    // its header; on an existing store it changes nothing.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(sql_err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(
            format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )
            .into(),
        ));
    }
    let sync = if fsync { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(sql_err)?;
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(sql_err)?;
    // Checkpoints run on a background thread (`writer::spawn_checkpointer`), not inside the
    // writer's COMMIT, where they would stall the group commit every few hundred writes.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(sql_err)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the connection of the checkpoint thread.
pub(crate) fn open_checkpointer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(busy_timeout).map_err(sql_err)?;
    Ok(conn)
}

/// Opens a read connection. It refuses writes.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(busy_timeout).map_err(sql_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql_err)?;
    match version {
        0 => {
            let has_tables: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table')",
                    [],
                    |row| row.get(0),
                )
                .map_err(sql_err)?;
            if has_tables {
                return Err(StoreError::Backend(
                    "database has tables but no Meridian schema version; refusing to use it".into(),
                ));
            }
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {CREATE} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(sql_err)
        }
        SCHEMA_VERSION => Ok(()),
        newer if newer > SCHEMA_VERSION => Err(StoreError::Backend(
            format!(
                "the store was written by a newer Meridian (schema version {newer}; this build \
                 knows version {SCHEMA_VERSION}): run that version or a later one (downgrades \
                 are not supported; restore a backup taken before the upgrade to go back)"
            )
            .into(),
        )),
        other => Err(StoreError::Backend(
            format!(
                "database schema version {other} is not supported (this build knows version \
                 {SCHEMA_VERSION}); use a matching Meridian version"
            )
            .into(),
        )),
    }
}

/// Reads one `meta` value.
pub(crate) fn meta(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(sql_err)?
        .ok_or_else(|| StoreError::Backend(format!("meta value {name} is missing").into()))
}

/// Writes one `meta` value.
pub(crate) fn set_meta(conn: &Connection, name: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute(rusqlite::params![name, value]))
        .map_err(sql_err)?;
    Ok(())
}

/// `(current revision, compacted revision)`.
pub(crate) fn revisions(conn: &Connection) -> Result<(Revision, Revision), StoreError> {
    Ok((meta(conn, "revision")?, meta(conn, "compacted")?))
}

/// The exclusive upper bound of the keys starting with `prefix`, byte-wise. Keys are UTF-8,
/// which never contains the byte 0xFF, so `[0xFF]` bounds the empty prefix.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0xFF]);
        assert!(b"/a/zzz".as_slice() < prefix_end("/a/").as_slice());
        assert!(b"/ab".as_slice() > prefix_end("/a/").as_slice());
    }
}
