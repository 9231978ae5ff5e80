//! Verifying the audit log: the hash chain under [`AUDIT_LOG`], through the API
//! (`GET /meridian/v1/audit/verify`, in `admin.rs`) or offline, on a stopped server's data
//! directory ([`verify_offline`], for `meridian audit verify --data-dir`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use store::{KeyValue, StoreError};

use crate::DB_FILE;
use crate::registry::{AUDIT_LOG, ReadView};

/// The verification result as JSON: `{"ok": true, "entries": N, "head": …}` or the first
/// bad entry (`{"ok": false, "error": …, "firstBadSeq": N}`).
pub(crate) fn verify_json(kvs: &[KeyValue]) -> Value {
    match store::chain::verify(AUDIT_LOG, kvs) {
        Ok(summary) => {
            json!({"ok": true, "entries": summary.entries, "head": hex::encode(summary.head.hash)})
        }
        Err(brk) => json!({"ok": false, "error": brk.to_string(), "firstBadSeq": brk.seq}),
    }
}

/// Reads and verifies the whole audit log through the API's view of the store.
pub(crate) async fn verify(store: &ReadView) -> Result<Value, StoreError> {
    Ok(verify_json(&store.read_prefix(AUDIT_LOG).await?))
}

/// Why an offline verification could not run (a broken chain is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("no Meridian store there ({DB_FILE} is missing)")]
    NoStore { db: PathBuf },
    #[error("cannot open {}", db.display())]
    Open {
        db: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot read the audit log")]
    Read(#[source] StoreError),
}

/// Verifies the audit log of the store in `data_dir` (the server must not be running on
/// it: the store takes its lock). Answers the JSON of the API's `/meridian/v1/audit/verify`.
pub async fn verify_offline(data_dir: &Path) -> Result<Value, OfflineError> {
    let db = data_dir.join(DB_FILE);
    if !db.exists() {
        return Err(OfflineError::NoStore { db });
    }
    let store = store::sqlite::SqliteStore::open(&db, store::sqlite::SqliteOptions::default())
        .await
        .map_err(|source| OfflineError::Open {
            db: db.clone(),
            source,
        })?;
    let reads = ReadView::new(store);
    verify(&reads).await.map_err(OfflineError::Read)
}
