//! Leases are etcd leases: granted, renewed and revoked by etcd, which deletes a lease's keys
//! (in one revision, with delete events) when it expires or is revoked. They live in the
//! cluster, not under the prefix. etcd raises TTLs below its minimum (1.5 × the election
//! timeout, rounded up to whole seconds: 2 s with the default settings); a TTL is rounded up
//! to whole seconds.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::Client;

use super::{EtcdError, EtcdStore, Retry};
use crate::{LeaseId, StoreError};

/// Renews leases over a connection of its own ([`crate::Store::lease_keeper`]): its tasks
/// run on the runtime that made it, not the store's.
pub(super) struct Keeper {
    pub(super) client: Client,
    /// Deadline of one renewal.
    pub(super) timeout: Duration,
}

#[async_trait]
impl crate::LeaseKeeper for Keeper {
    async fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        let result = match tokio::time::timeout(self.timeout, renew(self.client.clone(), id)).await
        {
            Ok(Ok(ttl)) => Ok(ttl),
            Ok(Err(cause)) => Err(StoreError::from(EtcdError::Request {
                what: "renewing a lease",
                cause,
            })),
            Err(_) => {
                return Err(StoreError::Backend(
                    format!(
                        "renewing lease {id:x}: etcd did not answer within {:?}",
                        self.timeout
                    )
                    .into(),
                ));
            }
        };
        granted_ttl(result, id)
    }
}

/// One renewal of lease `id`: `lease_keep_alive` sends one and reads its answer (failing for
/// an unknown lease; dropping the keeper and stream ends the call), then its TTL is read.
async fn renew(
    mut c: Client,
    id: LeaseId,
) -> Result<etcd_client::LeaseTimeToLiveResponse, etcd_client::Error> {
    let (_keeper, _stream) = c.lease_keep_alive(id).await?;
    c.lease_time_to_live(id, None).await
}

/// The granted TTL a renewal answered, or `LeaseNotFound` for a lease etcd no longer has.
fn granted_ttl(
    result: Result<etcd_client::LeaseTimeToLiveResponse, StoreError>,
    id: LeaseId,
) -> Result<Duration, StoreError> {
    match result {
        Ok(ttl) if ttl.ttl() > 0 => Ok(Duration::from_secs(
            u64::try_from(ttl.granted_ttl()).unwrap_or(0),
        )),
        Ok(_) => Err(StoreError::LeaseNotFound(id)),
        Err(e) if lease_missing(&e) => Err(StoreError::LeaseNotFound(id)),
        Err(e) => Err(e),
    }
}

impl EtcdStore {
    pub(super) async fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let resp = self
            .call("granting a lease", Retry::Write, |mut c| async move {
                c.lease_grant(seconds, None).await
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(StoreError::InvalidArgument(format!(
                "etcd refused the lease: {}",
                resp.error()
            )));
        }
        Ok(resp.id())
    }

    pub(super) async fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        let result = self
            .call("renewing a lease", Retry::Read, |c| renew(c, id))
            .await;
        granted_ttl(result, id)
    }

    pub(super) async fn revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        // Replaying a revoke is harmless: the second one answers "not found".
        let result = self
            .call("revoking a lease", Retry::Write, |mut c| async move {
                c.lease_revoke(id).await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if lease_missing(&e) => Err(StoreError::LeaseNotFound(id)),
            Err(e) => Err(e),
        }
    }
}

/// Whether etcd answered that the lease does not exist.
fn lease_missing(err: &StoreError) -> bool {
    let text = match err {
        StoreError::Backend(source) => {
            let mut text = source.to_string();
            let mut cause = source.source();
            while let Some(c) = cause {
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
        _ => return false,
    };
    text.contains("lease not found")
}
