//! `POST /meridian/v1/admin/backup`: a consistent copy of the store taken while it
//! serves ([`store::Store::backup`]: SQLite's online backup, or an etcd snapshot), streamed
//! to the caller (`meridian backup --out FILE`). Global admins only, decided before
//! anything is copied; one backup at a time per server (409 while one runs); audited.
//!
//! The copy is written first to a file of its own under `DATA_DIR/.backups/` (removed when
//! the answer ends, however it ends), so the answer can say its size and revision up
//! front and a slow reader holds no store transaction open.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use rand::RngCore;

use crate::app::AppState;
use crate::auth::{Principal, require_global_admin};
use crate::error::{ApiError, ApiResult};
use crate::registry::{AuditRecord, now_rfc3339};

/// The endpoint. Exempt from the per-request time limit (`app.rs`): copying a large
/// store takes as long as it takes, and cutting it off would only waste the copy.
pub const PATH: &str = "/meridian/v1/admin/backup";

/// Headers of the answer besides its length and type.
pub const FORMAT_HEADER: &str = "x-meridian-backup-format";
pub const REVISION_HEADER: &str = "x-meridian-backup-revision";

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, post(backup))
}

/// The backup file, removed (with its directory) when dropped.
struct Staged {
    dir: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn backup(State(state): State<AppState>, who: Principal) -> ApiResult<Response> {
    require_global_admin(&who, "take a backup of the store")?;
    let Ok(_running) = state.backup_lock.clone().try_lock_owned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            "a backup is already being taken on this server: wait for it to finish".to_owned(),
        ));
    };
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let dir = state.data_dir.join(".backups").join(hex::encode(id));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let staged = Staged { dir: dir.clone() };
    let file = dir.join("backup");
    let taken = state.registry.backup(&file).await?;
    let record = AuditRecord {
        time: now_rfc3339(),
        actor: who.actor(),
        verb: "backup".to_owned(),
        kind: "Store".to_owned(),
        name: format!("{}@{}", taken.format.as_str(), taken.revision),
        ..AuditRecord::default()
    };
    state.registry.append_audit(&record).await?;
    tracing::info!(
        actor = %who.actor(),
        format = taken.format.as_str(),
        revision = taken.revision,
        bytes = taken.bytes,
        "backup taken"
    );
    let opened = tokio::fs::File::open(&file)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the backup: {e}")))?;
    // The directory goes when the stream is dropped: after the last byte, or when the
    // reader goes away.
    let staged = Arc::new(staged);
    let body = tokio_util::io::ReaderStream::new(opened).map(move |chunk| {
        let _keep = &staged;
        chunk
    });
    let extension = match taken.format {
        store::BackupFormat::Sqlite => "db",
        store::BackupFormat::EtcdSnapshot => "snapshot",
    };
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(taken.bytes));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!(
            "attachment; filename=\"meridian-{}.{extension}\"",
            taken.revision
        ))
        .expect("an ASCII header"),
    );
    headers.insert(
        FORMAT_HEADER,
        HeaderValue::from_static(taken.format.as_str()),
    );
    headers.insert(REVISION_HEADER, HeaderValue::from(taken.revision));
    Ok(response)
}
