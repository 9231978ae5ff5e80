//! History compaction, as kube-apiserver does it for etcd: every interval, compact the
//! store to the revision that was current one interval ago. Watches can therefore resume
//! from any revision younger than one interval; older ones answer 410 Expired, and clients
//! re-list. Without this, the store's history would grow with every write forever.

use std::time::Duration;

use crate::app::AppState;
use crate::controller::Report;

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
                Ok(()) => tracing::debug!(revision = target, "compacted history"),
                Err(e) => {
                    tracing::warn!(error = %Report(&e), revision = target, "compaction failed");
                }
            }
        }
        previous = Some(current);
    }
}
