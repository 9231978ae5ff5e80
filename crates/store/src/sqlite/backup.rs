//! Online backup: SQLite's backup API copies the database page by page from a read
//! connection. Done in one step, the copy is one read transaction of the WAL database: a
//! consistent snapshot at one revision, taken while the writer goes on committing (WAL
//! readers do not block the writer, nor it them).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::{Backup as SqliteBackup, StepResult};

use super::schema::{open_reader, sql_err};
use crate::{Backup, BackupFormat, StoreError};

/// Copies the database at `source` into the new file `dest`, then checks the copy.
pub(crate) fn online(source: &Path, dest: &Path, busy: Duration) -> Result<Backup, StoreError> {
    if dest.exists() {
        return Err(StoreError::InvalidArgument(format!(
            "{} exists: a backup writes a new file",
            dest.display()
        )));
    }
    let src = open_reader(source, busy)?;
    let mut out = Connection::open(dest).map_err(sql_err)?;
    {
        let backup = SqliteBackup::new(&src, &mut out).map_err(sql_err)?;
        // -1: every page in one step, so one read transaction, one revision. Busy or
        // locked (a checkpoint holding the database): the step is tried again.
        let deadline = std::time::Instant::now() + busy;
        loop {
            match backup.step(-1).map_err(sql_err)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => {
                    return Err(StoreError::InvalidArgument(format!(
                        "the online backup did not finish within {busy:?} ({other:?})"
                    )));
                }
            }
        }
    }
    // The copy is a database in rollback-journal mode, standing alone (no -wal beside it).
    out.pragma_update(None, "journal_mode", "DELETE")
        .map_err(sql_err)?;
    let check: String = out
        .pragma_query_value(None, "quick_check", |row| row.get(0))
        .map_err(sql_err)?;
    if check != "ok" {
        return Err(StoreError::InvalidArgument(format!(
            "the backup in {} fails SQLite's quick_check: {check}",
            dest.display()
        )));
    }
    let revision: i64 = out
        .query_row(
            "SELECT value FROM meta WHERE name = 'revision'",
            [],
            |row| row.get(0),
        )
        .map_err(sql_err)?;
    drop(out);
    let bytes = std::fs::metadata(dest)
        .map_err(|e| StoreError::Backend(Box::new(e)))?
        .len();
    Ok(Backup {
        format: BackupFormat::Sqlite,
        bytes,
        revision,
    })
}
