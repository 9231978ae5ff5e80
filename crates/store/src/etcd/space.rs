//! etcd's NOSPACE alarm, as the store's no-space state ([`crate::Store::space`]).
//!
//! When etcd's database reaches its `--quota-backend-bytes`, etcd answers writes with
//! "etcdserver: mvcc: database space exceeded" and raises a NOSPACE alarm; from then on it
//! refuses every request that would store anything (a Meridian delete too, since it
//! appends an audit entry) until an operator compacts, defragments and disarms the alarm
//! (`etcdctl alarm disarm`). Nothing Meridian does can end it.
//!
//! The state is entered when etcd refuses a write for space (the error becomes
//! [`StoreError::NoSpace`] with [`NoSpace::EtcdQuota`], which says what to do) and when
//! the store opens on a cluster with the alarm raised. While it holds, the store refuses
//! every transaction that stores a value (a put or an append) itself, as the SQLite
//! backend does on a full disk; transactions that only read or delete go to etcd.
//!
//! Why the store refuses rather than etcd: etcd 3.4 prices a transaction for its quota by
//! the puts at its top level only, and Meridian's audited writes put inside a nested
//! transaction (see [`super::txn`]), so etcd lets them through while its database is
//! below the quota, alarm or not, and the database would keep growing past the alarm.
//!
//! While the state holds, one task asks etcd for its alarms every [`POLL_INTERVAL`] and
//! ends the state once no NOSPACE alarm is left: writes resume, and `/readyz` and the
//! `meridian_store_no_space` metric recover. The state is entered and left with one log
//! line each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{AlarmAction, AlarmType, Client};

use crate::{NoSpace, SpaceStatus, StoreError};

/// How often a store in the no-space state asks etcd whether the alarm is still raised.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The words of etcd's refusal for lack of space.
const NO_SPACE_MESSAGE: &str = "database space exceeded";

/// Whether `err` is etcd refusing a request for lack of space.
pub(crate) fn is_no_space(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status) if status.message().contains(NO_SPACE_MESSAGE))
}

/// The no-space state of one store, shared with its alarm poller.
#[derive(Debug)]
pub(crate) struct SpaceState {
    endpoints: String,
    no_space: AtomicBool,
    refused: AtomicU64,
    /// A poller task is running.
    polling: AtomicBool,
}

impl SpaceState {
    pub(crate) fn new(endpoints: String) -> Arc<Self> {
        Arc::new(Self {
            endpoints,
            no_space: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            polling: AtomicBool::new(false),
        })
    }

    fn info(&self) -> NoSpace {
        NoSpace::EtcdQuota {
            endpoints: self.endpoints.clone(),
        }
    }

    /// etcd refused a request for space: enter the state (starting the poller) and
    /// return the error for the caller.
    pub(crate) fn refused(self: &Arc<Self>, client: &Client) -> StoreError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.enter(client);
        StoreError::NoSpace(self.info())
    }

    /// Enters the state (once) and starts the poller if none runs.
    pub(crate) fn enter(self: &Arc<Self>, client: &Client) {
        if !self.no_space.swap(true, Ordering::SeqCst) {
            tracing::error!(
                endpoints = %self.endpoints,
                "etcd raised its NOSPACE alarm: writes are refused until an operator \
                 compacts, defragments and disarms it (etcdctl alarm disarm)"
            );
        }
        if !self.polling.swap(true, Ordering::SeqCst) {
            let state = self.clone();
            let client = client.clone();
            // The store is used from async code only: a runtime is there.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { state.poll(client).await });
            } else {
                self.polling.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Whether the state holds (the store refuses what would store a value).
    pub(crate) fn is_no_space(&self) -> bool {
        self.no_space.load(Ordering::SeqCst)
    }

    /// The error a write refused in the state gets; counts one refusal.
    pub(crate) fn refuse(&self) -> StoreError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        StoreError::NoSpace(self.info())
    }

    fn leave(&self) {
        if self.no_space.swap(false, Ordering::SeqCst) {
            tracing::info!(endpoints = %self.endpoints, "etcd's NOSPACE alarm is gone: writes resume");
        }
    }

    /// Asks etcd for its alarms until none is NOSPACE (or the state ended otherwise).
    async fn poll(self: Arc<Self>, client: Client) {
        loop {
            while self.no_space.load(Ordering::SeqCst) {
                tokio::time::sleep(POLL_INTERVAL).await;
                match alarm_raised(&client).await {
                    Ok(false) => self.leave(),
                    Ok(true) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read etcd's alarms"),
                }
            }
            self.polling.store(false, Ordering::SeqCst);
            // A refusal between the loop's last check and the flag above started no
            // poller: carry on as that poller.
            if !self.no_space.load(Ordering::SeqCst) || self.polling.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }

    pub(crate) fn status(&self) -> SpaceStatus {
        SpaceStatus {
            no_space: self.no_space.load(Ordering::SeqCst).then(|| self.info()),
            refused_writes: self.refused.load(Ordering::Relaxed),
            size_bytes: None,
        }
    }
}

/// Whether any member has a NOSPACE alarm raised.
pub(crate) async fn alarm_raised(client: &Client) -> Result<bool, etcd_client::Error> {
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client
            .maintenance_client()
            .alarm(AlarmAction::Get, AlarmType::None, None),
    )
    .await
    .map_err(|_| etcd_client::Error::InvalidArgs("alarm list timed out".into()))??;
    Ok(resp
        .alarms()
        .iter()
        .any(|alarm| alarm.alarm() == AlarmType::Nospace))
}
