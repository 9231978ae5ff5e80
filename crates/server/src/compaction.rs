//! History compaction, as kube-apiserver does it for etcd: every interval, compact the
//! store to the revision that was current one interval ago. Watches can therefore resume
//! from any revision younger than one interval; older ones answer 410 Expired, and clients
//! re-list. Without this, the store's history would grow with every write forever.

use std::time::Duration;

use crate::app::AppState;
use crate::controller::Report;

/// A store larger than this after compaction is worth a warning: etcd's recommended
/// largest backend (`--quota-backend-bytes` up to 8 GiB), and where SQLite's full scans
/// (a restart's reload, a full audit) take long.
pub const LARGE_STORE_BYTES: u64 = 8 << 30;

/// Run until shutdown.
pub async fn run(state: AppState, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let current = match state.store().current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %Report(&e), "compaction: cannot read the revision");
                continue;
            }
        };
        if let Some(target) = previous.filter(|r| *r > 0) {
            match state.registry.compact(target).await {
                Ok(()) => {
                    tracing::debug!(revision = target, "compacted history");
                    warn_if_large(&state);
                }
                Err(e) => {
                    tracing::warn!(error = %Report(&e), revision = target, "compaction failed");
                }
            }
        }
        previous = Some(current);
    }
}

/// Warns when the store is still large after compaction: its live objects, not history,
/// are what takes the space.
fn warn_if_large(state: &AppState) {
    if let Some(bytes) = state.store().space().size_bytes
        && bytes > LARGE_STORE_BYTES
    {
        tracing::warn!(
            size_mib = bytes >> 20,
            "the store is larger than 8 GiB after compaction: delete objects no longer \
             needed (finished jobs, old events), or move to etcd (docs/operations.md)"
        );
    }
}
