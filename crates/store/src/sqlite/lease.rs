//! Lease deadlines, kept in memory only, and the task that expires leases.
//!
//! Granting and revoking a lease goes through the writer (durably); a keep-alive only moves
//! an in-memory deadline, so 1,000 agents renewing every 2 s cost no disk writes. After a
//! restart every lease gets a fresh deadline of now + TTL, as etcd does on leader change.
//!
//! Expiry is decided here: [`LeaseTable::take_expired`] removes an expired lease from the
//! table under its lock (from then on a keep-alive answers `LeaseNotFound`), and the expiry
//! task revokes it through the writer, which deletes its keys in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::writer::WriterHandle;
use crate::{LeaseId, StoreError};

/// How long to wait before retrying the revocation of an expired lease that failed.
const RETRY_REVOKE: Duration = Duration::from_secs(1);
/// How long the expiry task sleeps when no lease exists.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

/// The live leases and their deadlines.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    leases: Mutex<HashMap<LeaseId, Lease>>,
    /// Woken when a deadline may have moved earlier (a grant).
    changed: Notify,
}

impl LeaseTable {
    /// Adds (or re-adds) a lease whose deadline is now + `ttl`.
    pub(crate) fn insert(&self, id: LeaseId, ttl: Duration) {
        self.insert_with_deadline(id, ttl, Instant::now() + ttl);
    }

    fn insert_with_deadline(&self, id: LeaseId, ttl: Duration, deadline: Instant) {
        self.leases
            .lock()
            .unwrap()
            .insert(id, Lease { ttl, deadline });
        self.changed.notify_one();
    }

    pub(crate) fn remove(&self, id: LeaseId) {
        self.leases.lock().unwrap().remove(&id);
    }

    /// Moves the lease's deadline to now + TTL; returns the TTL.
    pub(crate) fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        let mut leases = self.leases.lock().unwrap();
        let lease = leases.get_mut(&id).ok_or(StoreError::LeaseNotFound(id))?;
        lease.deadline = Instant::now() + lease.ttl;
        Ok(lease.ttl)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.leases
            .lock()
            .unwrap()
            .values()
            .map(|l| l.deadline)
            .min()
    }

    /// Removes and returns the leases whose deadline has passed, with their TTLs.
    fn take_expired(&self, now: Instant) -> Vec<(LeaseId, Duration)> {
        let mut leases = self.leases.lock().unwrap();
        let expired: Vec<(LeaseId, Duration)> = leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, l)| (*id, l.ttl))
            .collect();
        for (id, _) in &expired {
            leases.remove(id);
        }
        expired
    }
}

/// Revokes expired leases until `shutdown` turns true or the writer closes.
pub(crate) async fn run_expiry(
    table: Arc<LeaseTable>,
    writer: WriterHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wake_at = table
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + IDLE_WAIT);
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            () = table.changed.notified() => continue,
            () = tokio::time::sleep_until(wake_at) => {}
        }
        for (id, ttl) in table.take_expired(Instant::now()) {
            match writer.revoke(id).await {
                Ok(()) => tracing::debug!(lease = id, "lease expired and was revoked"),
                // Revoked meanwhile by a client.
                Err(StoreError::LeaseNotFound(_)) => {}
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::error!(lease = id, error = %e, "revoking an expired lease failed; will retry");
                    table.insert_with_deadline(id, ttl, Instant::now() + RETRY_REVOKE);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keep_alive_moves_the_deadline_and_expiry_removes() {
        let table = LeaseTable::default();
        table.insert(1, Duration::from_secs(10));
        table.insert(2, Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(table.keep_alive(1).unwrap(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(table.take_expired(Instant::now()).is_empty());
        table.keep_alive(1).unwrap();
        tokio::time::advance(Duration::from_secs(7)).await;
        let expired = table.take_expired(Instant::now());
        assert_eq!(expired, vec![(2, Duration::from_secs(20))]);
        assert!(matches!(
            table.keep_alive(2),
            Err(StoreError::LeaseNotFound(2))
        ));
        assert!(table.keep_alive(1).is_ok());
    }
}
