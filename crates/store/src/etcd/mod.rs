//! The scale-out backend: an etcd v3 cluster (3.4 or later), through the `etcd-client` crate.
//!
//! Several Meridian servers can share one store this way; etcd does the consensus. Every
//! trait operation maps onto one etcd request (or a few, for appends):
//! - [`txn`]: transactions (compares and ops become one etcd `Txn`), hash-chain appends
//!   (guarded by a compare on the chain head, see below), the request-size limit, and
//!   `get`/`range`.
//! - [`group`]: group commit of the transactions with appends that queue while one commits.
//! - [`watch`]: watches from a revision with previous values, resumed on another member when
//!   the connection breaks or the member loses its leader.
//! - [`lease`]: leases are etcd leases (grant, keep-alive, revoke; etcd deletes the keys of
//!   an expired lease, with delete events).
//! - [`space`]: etcd's NOSPACE alarm as the store's no-space state.
//! - [`testing`]: a throw-away etcd cluster of real `etcd` processes for tests.
//!
//! # Key layout
//!
//! Everything lives under one prefix (default `/meridian`, [`EtcdOptions::prefix`]): a
//! Meridian key `K` is the etcd key `{prefix}/kv{K}`, and the store's own bookkeeping sits
//! under `{prefix}/meta/` (outside every range and watch of Meridian keys). Two deployments
//! with different prefixes share a cluster without seeing each other.
//!
//! # Schema version
//!
//! `{prefix}/meta/schema` holds the version of this layout ([`SCHEMA_VERSION`]), written
//! with the base when a prefix is initialised (and added to a prefix initialised before
//! the key existed). [`EtcdStore::open`] refuses a prefix whose version is newer than the
//! build's, naming both and what to do, as the SQLite backend refuses a newer
//! `PRAGMA user_version`: an older binary never writes a layout it does not know.
//!
//! # Revisions
//!
//! Meridian revisions are etcd revisions shifted by a base: `meridian = etcd - base`, where
//! `base` is the etcd revision at which this prefix was initialised (the `create_revision`
//! of `{prefix}/meta/base`, written once, by whichever server opens the prefix first, in a
//! transaction guarded on its absence). So an empty store is at revision 0 and its first
//! write gets revision 1, as [`crate::conformance`] requires, every server of a deployment
//! computes the same numbers, and a revision means the same etcd state everywhere. On a
//! cluster shared with other prefixes or other users, their writes (and lease expiries)
//! also advance etcd's revision: Meridian revisions then stay monotonic but are no longer
//! dense. Nothing in Meridian assumes density; the conformance suite does, and runs on a
//! cluster of its own.
//!
//! Compaction is etcd's (physical) compaction at `revision + base`. etcd does not report its
//! compacted revision, so `Store::compact` records it under `{prefix}/meta/compacted`
//! before compacting (a crash in between leaves the record ahead of etcd, which only
//! refuses watches etcd could still serve); a watch that etcd itself reports compacted
//! (an operator's `etcdctl compact` or etcd's auto-compaction) also fails with
//! [`StoreError::Compacted`].
//!
//! # The hash chain
//!
//! The SQLite writer builds a chain entry at commit time. Against etcd the commit revision is
//! not known before the transaction commits (any write anywhere in the cluster advances it),
//! so an append reads the log heads (at etcd revision `R`), builds the entries, and commits
//! one etcd transaction guarded by `mod_revision(head) == observed` for every log it appends
//! to; the caller's compares and ops run in a nested transaction inside it, so a moved head
//! never runs the caller's failure branch. On a moved head the append retries with the new
//! head; two servers never fork a chain. One task per process commits the appends
//! ([`group`]), so they do not race each other: the transactions that queue while one
//! commits go to etcd together, as one transaction with the entries chained in queue
//! order. The heads a commit left (with its commit revision as `R`) serve the next one
//! without a read: a head another server moved meanwhile fails the guard, and the appender
//! reads the heads and retries. The revision an entry records (and hashes) is `R + 1` in
//! Meridian numbering: the first revision the transaction could commit at. It is at most the
//! commit revision, equal to it when nothing else was written in between, and above the
//! commit revision of the previous group's entries (which the read at `R` saw); the entries
//! of one group share it. So entry revisions never decrease along the chain, as
//! [`crate::chain::Verifier`] requires.
//!
//! # Limits and failures
//!
//! A transaction whose encoded size (as [`txn::encoded_size`] estimates it, generously)
//! exceeds [`EtcdOptions::max_txn_bytes`] (by default etcd's request limit less headroom
//! for the gRPC framing) fails with [`StoreError::TooLarge`] before it is sent; one with
//! more ops than [`EtcdOptions::max_txn_ops`] (etcd's `--max-txn-ops`, counted by
//! [`crate::txn_ops`]) fails with [`StoreError::TooManyOps`] before it is sent, naming the
//! setting; [`crate::Store::max_txn_ops`] reports the limit so callers split batches.
//! When etcd's database is over its quota, writes fail with [`StoreError::NoSpace`]
//! ([`space`]). Reads
//! are retried on another member while the cluster is unavailable (for
//! [`EtcdOptions::retry_for`]); writes only when etcd certainly did not apply them (no
//! connection, or a member without a leader), since replaying an unconditional put whose
//! outcome is unknown would write twice. An unreachable cluster is an
//! [`EtcdError::Unreachable`] naming the endpoints tried ([`EtcdError::is_unavailable`]).

mod group;
pub mod lease;
pub mod space;
#[cfg(unix)]
pub mod testing;
pub mod txn;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, GetOptions, TxnOp, TxnOpResponse,
};

use space::is_no_space;

use crate::{
    KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse,
    WatchStream,
};

/// Default key prefix of a deployment.
pub const DEFAULT_PREFIX: &str = "/meridian";
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const ETCD_DEFAULT_REQUEST_LIMIT: usize = 1536 * 1024;
/// Default [`EtcdOptions::max_txn_bytes`]: etcd's default request limit minus 64 KiB of
/// headroom for the gRPC and protobuf framing the estimate does not count.
pub const DEFAULT_MAX_TXN_BYTES: usize = ETCD_DEFAULT_REQUEST_LIMIT - 64 * 1024;
/// etcd's default `--max-txn-ops`, the default of [`EtcdOptions::max_txn_ops`].
pub const ETCD_DEFAULT_MAX_TXN_OPS: usize = 128;
/// Version of the key layout this build reads and writes (`{prefix}/meta/schema`).
pub const SCHEMA_VERSION: u64 = 1;

/// The certificates for TLS to etcd, as PEM.
#[derive(Clone, Default)]
pub struct EtcdTls {
    /// CA bundle that signed the etcd members' certificates (system roots are not used).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for clusters that require client authentication.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

/// How to reach the cluster and how to use it.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client endpoints, `host:port` (the scheme follows [`EtcdOptions::tls`]).
    pub endpoints: Vec<String>,
    /// Key prefix of this deployment (no trailing slash needed).
    pub prefix: String,
    /// TLS to the cluster; plain HTTP/2 when `None`.
    pub tls: Option<EtcdTls>,
    /// Largest transaction sent, in bytes (see [`StoreError::TooLarge`]).
    pub max_txn_bytes: usize,
    /// Most operations in one transaction, as [`crate::txn_ops`] counts them: the
    /// members' `--max-txn-ops` (see [`StoreError::TooManyOps`]).
    pub max_txn_ops: usize,
    /// Deadline of one unary request.
    pub request_timeout: Duration,
    /// Deadline of establishing a connection to one member.
    pub connect_timeout: Duration,
    /// How long a request that may be retried is retried while the cluster is unavailable
    /// (a leader election after a member died takes a few seconds).
    pub retry_for: Duration,
}

impl EtcdOptions {
    /// Options for `endpoints` with every other setting at its default.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: DEFAULT_PREFIX.to_owned(),
            tls: None,
            max_txn_bytes: DEFAULT_MAX_TXN_BYTES,
            max_txn_ops: ETCD_DEFAULT_MAX_TXN_OPS,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retry_for: Duration::from_secs(15),
        }
    }
}

pub use crate::etcd_url::parse_url;

/// Why the etcd backend failed; carried in [`StoreError::Backend`]. The message holds
/// etcd's error (callers print store errors with `to_string`), so it is not also a `source`.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot reach the etcd cluster (tried {endpoints}) while {what}: {cause}")]
    Unreachable {
        endpoints: String,
        what: &'static str,
        cause: etcd_client::Error,
    },
    #[error("etcd did not answer within {timeout:?} (tried {endpoints}) while {what}")]
    Timeout {
        endpoints: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error("etcd failed while {what}: {cause}")]
    Request {
        what: &'static str,
        cause: etcd_client::Error,
    },
    #[error("cannot configure the etcd client: {0}")]
    Config(String),
    #[error("unexpected data in etcd: {0}")]
    Data(String),
    /// The error of a group commit whose outcome is unknown, as each of its transactions
    /// reports it ([`group`]).
    #[error("{message}")]
    Group { message: String, unavailable: bool },
}

impl EtcdError {
    /// The cluster could not be reached or did not answer in time: a later retry may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            EtcdError::Unreachable { .. }
                | EtcdError::Timeout { .. }
                | EtcdError::Group {
                    unavailable: true,
                    ..
                }
        )
    }
}

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// A [`Store`] on an etcd cluster. Cheap to share behind an `Arc`.
pub struct EtcdStore {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    /// etcd revision of this prefix's initialisation: Meridian revision = etcd − base.
    pub(crate) base: i64,
    pub(crate) options: EtcdOptions,
    /// Where transactions with appends queue for this process's appender, which commits
    /// them in groups ([`group`]) and remembers the heads its last commit left, so the
    /// next one need not read them.
    appends: group::Appends,
    /// etcd's NOSPACE alarm, as this store saw it.
    pub(crate) space: Arc<space::SpaceState>,
}

/// The etcd keys of a deployment.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `{prefix}/kv`: prepended to every Meridian key.
    data: String,
    /// `{prefix}/meta/base`.
    base: String,
    /// `{prefix}/meta/compacted`.
    compacted: String,
    /// `{prefix}/meta/schema`.
    schema: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Self {
            data: format!("{prefix}/kv"),
            base: format!("{prefix}/meta/base"),
            compacted: format!("{prefix}/meta/compacted"),
            schema: format!("{prefix}/meta/schema"),
        }
    }

    /// The etcd key of a Meridian key.
    pub(crate) fn data(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + key.len());
        out.extend_from_slice(self.data.as_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// Length of the prefix every Meridian key gets.
    pub(crate) fn data_prefix_len(&self) -> usize {
        self.data.len()
    }

    /// The Meridian key of an etcd key under the data prefix.
    pub(crate) fn strip(&self, key: &[u8]) -> Result<String, EtcdError> {
        let rest = key.strip_prefix(self.data.as_bytes()).ok_or_else(|| {
            EtcdError::Data(format!(
                "key {:?} is outside the data prefix {}",
                String::from_utf8_lossy(key),
                self.data
            ))
        })?;
        String::from_utf8(rest.to_vec()).map_err(|_| {
            EtcdError::Data(format!(
                "key {:?} is not UTF-8",
                String::from_utf8_lossy(key)
            ))
        })
    }
}

/// Largest gRPC message accepted from etcd (a page of a large list, a burst of watch
/// events); tonic's default of 4 MiB is below what one etcd response can hold.
pub(crate) const MAX_DECODE: usize = 256 * 1024 * 1024;

/// The KV client of `client`, accepting responses up to [`MAX_DECODE`].
pub(crate) fn kv_client(client: &Client) -> etcd_client::KvClient {
    client.kv_client().max_decoding_message_size(MAX_DECODE)
}

/// Converts an etcd key-value under the data prefix of `keys` (Meridian revisions are etcd
/// revisions minus `base`).
pub(crate) fn convert_kv(
    keys: &Keys,
    base: i64,
    kv: &etcd_client::KeyValue,
) -> Result<KeyValue, EtcdError> {
    Ok(KeyValue {
        key: keys.strip(kv.key())?,
        value: kv.value().to_vec(),
        create_revision: (kv.create_revision() - base).max(0),
        mod_revision: (kv.mod_revision() - base).max(0),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    })
}

/// The first key after every key starting with `prefix` (etcd's `range_end` of a prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): every key after the prefix.
    vec![0]
}

/// A client of the cluster `options` names, its tasks on the calling runtime.
async fn connect(options: &EtcdOptions) -> Result<Client, StoreError> {
    connect_to(options, &endpoint_urls(options)).await
}

/// The endpoints as URLs (`http://` or, with TLS, `https://` when they name no scheme).
fn endpoint_urls(options: &EtcdOptions) -> Vec<String> {
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    options
        .endpoints
        .iter()
        .map(|e| {
            if e.contains("://") {
                e.clone()
            } else {
                format!("{scheme}://{e}")
            }
        })
        .collect()
}

/// Refuses endpoints of different clusters: a client balances requests over its
/// endpoints, so a mistyped one that belongs to another cluster would split the store's
/// data between two clusters. Each endpoint that answers in time says its cluster ID;
/// one that does not is skipped (a member may be down while the store opens).
async fn check_one_cluster(options: &EtcdOptions) -> Result<(), StoreError> {
    let urls = endpoint_urls(options);
    if urls.len() < 2 {
        return Ok(());
    }
    let mut seen: Vec<(String, u64)> = Vec::with_capacity(urls.len());
    for url in urls {
        let status = async {
            let mut client = connect_to(options, std::slice::from_ref(&url)).await?;
            client
                .status()
                .await
                .map_err(|e| StoreError::from(EtcdError::Config(e.to_string())))
        };
        match tokio::time::timeout(options.connect_timeout, status).await {
            Ok(Ok(status)) => {
                if let Some(header) = status.header() {
                    seen.push((url, header.cluster_id()));
                }
            }
            Ok(Err(e)) => tracing::debug!(%url, error = %e, "etcd endpoint did not answer at open"),
            Err(_) => tracing::debug!(%url, "etcd endpoint did not answer at open"),
        }
    }
    if let Some((url, id)) = seen.iter().find(|(_, id)| *id != seen[0].1) {
        return Err(StoreError::InvalidArgument(format!(
            "the etcd endpoints belong to different clusters: {} is in cluster {:x}, {url} in \
             cluster {id:x}; give --store the client URLs of one cluster's members",
            seen[0].0, seen[0].1
        )));
    }
    Ok(())
}

/// A client of `urls`, with the options' timeouts and TLS, its tasks on the calling runtime.
async fn connect_to(options: &EtcdOptions, urls: &[String]) -> Result<Client, StoreError> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        // A member cut off from its leader answers "no leader" at once (a safe retry)
        // instead of holding the request until it times out.
        .with_require_leader(true);
    if let Some(tls) = &options.tls {
        let mut config = etcd_client::TlsOptions::new();
        if let Some(ca) = &tls.ca_pem {
            config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(etcd_client::Identity::from_pem(cert, key));
        }
        connect = connect.with_tls(config);
    }
    Client::connect(urls, Some(connect))
        .await
        .map_err(|e| EtcdError::Config(e.to_string()).into())
}

impl EtcdStore {
    /// Connects to the cluster, checks it answers, and initialises the prefix if it is new.
    pub async fn open(options: EtcdOptions) -> Result<Arc<Self>, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::InvalidArgument(
                "no etcd endpoints given".into(),
            ));
        }
        check_one_cluster(&options).await?;
        let client = connect(&options).await?;
        if options.max_txn_ops == 0 {
            return Err(StoreError::InvalidArgument(
                "--etcd-max-txn-ops must be at least 1 (etcd's --max-txn-ops, 128 by default)"
                    .into(),
            ));
        }
        let keys = Keys::new(&options.prefix);
        let (appends, queue) = tokio::sync::mpsc::unbounded_channel();
        let mut store = Self {
            client,
            keys,
            base: 0,
            space: space::SpaceState::new(options.endpoints.join(",")),
            options,
            appends,
        };
        store.base = store.init_base().await?;
        store.check_schema().await?;
        match space::alarm_raised(&store.client).await {
            Ok(true) => store.space.enter(&store.client),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read etcd's alarms"),
        }
        tracing::info!(
            endpoints = %store.endpoints(),
            prefix = %store.options.prefix,
            base = store.base,
            "etcd store opened"
        );
        let store = Arc::new(store);
        group::start(&store, queue);
        Ok(store)
    }

    /// Reads the prefix's base revision, writing it if the prefix is new. A prefix that
    /// holds data without its base key is refused (and left as it is): a new base would
    /// number revisions below ones clients have seen.
    async fn init_base(&self) -> Result<i64, StoreError> {
        // A read first: an initialised prefix needs no write (which etcd would refuse
        // while its NOSPACE alarm is raised, even when the guard fails).
        if let Some(kv) = self.read_meta(&self.keys.base).await? {
            return Ok(kv.create_revision());
        }
        let base_key = self.keys.base.clone();
        let data_key = self.keys.data.clone();
        let txn = etcd_client::Txn::new()
            .when([
                EtcdCompare::version(base_key.clone(), CompareOp::Equal, 0),
                // Over a range: holds when no key under the data prefix exists.
                EtcdCompare::version(data_key.clone(), CompareOp::Equal, 0).with_prefix(),
            ])
            .and_then([
                TxnOp::put(
                    base_key.clone(),
                    "meridian store base revision: its create_revision",
                    None,
                ),
                TxnOp::put(self.keys.schema.clone(), SCHEMA_VERSION.to_string(), None),
            ])
            .or_else([
                TxnOp::get(base_key, None),
                TxnOp::get(
                    data_key,
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            ]);
        // Guarded on the keys' absence, so a replay only reads.
        let resp = self
            .call("initialising the key prefix", Retry::Read, |c| {
                let txn = txn.clone();
                async move { kv_client(&c).txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(header_revision(resp.header())?);
        }
        let mut reads = resp.op_responses().into_iter();
        let (Some(TxnOpResponse::Get(base)), Some(TxnOpResponse::Get(data))) =
            (reads.next(), reads.next())
        else {
            return Err(EtcdError::Data("unexpected answer to the base read".into()).into());
        };
        match base.kvs().first() {
            Some(kv) => Ok(kv.create_revision()),
            None => Err(EtcdError::Data(format!(
                "{} holds {} keys but its base revision key {} is missing: refusing to \
                 renumber revisions; restore {} (from a snapshot) or use another --etcd-prefix",
                self.keys.data,
                data.count(),
                self.keys.base,
                self.keys.base
            ))
            .into()),
        }
    }

    /// Checks the prefix's schema version: refuses a newer one, writes ours where a prefix
    /// initialised before the key existed has none.
    async fn check_schema(&self) -> Result<(), StoreError> {
        let key = self.keys.schema.clone();
        if let Some(kv) = self.read_meta(&key).await? {
            return self.check_schema_value(kv.value());
        }
        let txn = etcd_client::Txn::new()
            .when([EtcdCompare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), SCHEMA_VERSION.to_string(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        // Guarded on the key's absence, so a replay only reads.
        let resp = match self
            .call("checking the schema version", Retry::Read, |c| {
                let txn = txn.clone();
                async move { kv_client(&c).txn(txn).await }
            })
            .await
        {
            Ok(resp) => resp,
            // A prefix from before the key existed, on a cluster out of space: the key is
            // written at a later open.
            Err(StoreError::NoSpace(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if resp.succeeded() {
            return Ok(());
        }
        let stored = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        };
        let Some(stored) = stored else {
            return Err(EtcdError::Data("unexpected answer to the schema read".into()).into());
        };
        self.check_schema_value(&stored)
    }

    /// Reads one bookkeeping key.
    async fn read_meta(&self, key: &str) -> Result<Option<etcd_client::KeyValue>, StoreError> {
        let key = key.to_owned();
        let resp = self
            .call("reading the prefix's bookkeeping", Retry::Read, |c| {
                let key = key.clone();
                async move { kv_client(&c).get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().cloned())
    }

    /// Refuses a schema version newer than this build's, or one that is not a version.
    fn check_schema_value(&self, stored: &[u8]) -> Result<(), StoreError> {
        let key = &self.keys.schema;
        let version = std::str::from_utf8(stored)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        match version {
            Some(v) if v <= SCHEMA_VERSION => Ok(()),
            Some(newer) => Err(StoreError::InvalidArgument(format!(
                "the store under --etcd-prefix {} was written by a newer Meridian (schema \
                 version {newer} in {key}; this build knows versions up to {SCHEMA_VERSION}): \
                 run the newer meridian binary, or restore the etcd snapshot taken before \
                 the upgrade; this build does not write to it",
                self.options.prefix
            ))),
            None => Err(EtcdError::Data(format!(
                "{key} does not hold a schema version ({:?}): restore it from a snapshot, or \
                 use another --etcd-prefix",
                String::from_utf8_lossy(stored)
            ))
            .into()),
        }
    }

    /// The endpoints, for messages.
    pub(crate) fn endpoints(&self) -> String {
        self.options.endpoints.join(",")
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// The etcd revision this prefix was initialised at (Meridian revision 0).
    pub fn base_revision(&self) -> i64 {
        self.base
    }

    /// Meridian revision of an etcd revision (0 for anything at or before the base).
    pub(crate) fn to_meridian(&self, etcd: i64) -> Revision {
        (etcd - self.base).max(0)
    }

    /// etcd revision of a Meridian revision.
    pub(crate) fn to_etcd(&self, revision: Revision) -> i64 {
        revision + self.base
    }

    /// Converts an etcd key-value under the data prefix.
    pub(crate) fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, EtcdError> {
        convert_kv(&self.keys, self.base, kv)
    }

    /// Runs one request with the deadline and retry policy, mapping errors.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &'static str,
        retry: Retry,
        mut f: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.options.retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt =
                tokio::time::timeout(self.options.request_timeout, f(self.client.clone())).await;
            let err = match attempt {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(_) => {
                    // A timed-out write may or may not have been applied.
                    if retry == Retry::Read && tokio::time::Instant::now() < deadline {
                        continue;
                    }
                    return Err(EtcdError::Timeout {
                        endpoints: self.endpoints(),
                        what,
                        timeout: self.options.request_timeout,
                    }
                    .into());
                }
            };
            let retryable = match retry {
                Retry::Read => is_unavailable(&err),
                Retry::Write => is_not_applied(&err),
            };
            if retryable && tokio::time::Instant::now() + backoff < deadline {
                tracing::debug!(what, error = %err, "etcd unavailable, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            if !retryable {
                // The error's kind, for classifying what is not yet known to be transient.
                tracing::warn!(what, error = ?err, "etcd request failed");
            }
            return Err(self.map_err(what, err));
        }
    }

    /// Maps an etcd error that has no more specific meaning to the caller.
    pub(crate) fn map_err(&self, what: &'static str, err: etcd_client::Error) -> StoreError {
        if let etcd_client::Error::GRpcStatus(status) = &err {
            let msg = status.message();
            if msg.contains("duplicate key given in txn request") {
                return StoreError::InvalidArgument(
                    "a transaction branch writes a key more than once".into(),
                );
            }
            if is_no_space(&err) {
                return self.space.refused(&self.client);
            }
            if msg.contains("too many operations in txn request") {
                // The store counts ops before sending, so etcd's limit is below ours.
                return StoreError::InvalidArgument(format!(
                    "etcd refused the transaction for its number of operations: the members' \
                     --max-txn-ops is below this server's --etcd-max-txn-ops ({}); give the \
                     server the members' value",
                    self.options.max_txn_ops
                ));
            }
            if msg.contains("request is too large") {
                return StoreError::InvalidArgument(format!(
                    "etcd refused the request as too large (its --max-request-bytes is below \
                     this store's limit of {} bytes): {msg}",
                    self.options.max_txn_bytes
                ));
            }
        }
        if is_unavailable(&err) {
            return EtcdError::Unreachable {
                endpoints: self.endpoints(),
                what,
                cause: err,
            }
            .into();
        }
        EtcdError::Request { what, cause: err }.into()
    }

    /// The current etcd revision (of the cluster, as a linearizable read sees it).
    pub(crate) async fn etcd_revision(&self) -> Result<i64, StoreError> {
        let key = self.keys.base.clone();
        let resp = self
            .call("reading the current revision", Retry::Read, |c| {
                let key = key.clone();
                async move {
                    kv_client(&c)
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(header_revision(resp.header())?)
    }

    /// The compacted revision recorded under the prefix (Meridian numbering).
    async fn recorded_compaction(&self) -> Result<Revision, StoreError> {
        let key = self.keys.compacted.clone();
        let resp = self
            .call("reading the compacted revision", Retry::Read, |c| {
                let key = key.clone();
                async move { kv_client(&c).get(key, None).await }
            })
            .await?;
        match resp.kvs().first() {
            None => Ok(0),
            Some(kv) => parse_revision(kv.value()).ok_or_else(|| {
                EtcdError::Data(format!("{} does not hold a revision", self.keys.compacted)).into()
            }),
        }
    }
}

/// When a failed request is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// While the cluster is unavailable: reads, and writes whose replay is harmless.
    Read,
    /// Only when etcd certainly did not apply the request.
    Write,
}

/// The cluster (or the member asked) cannot serve now; a read may be retried.
///
/// Besides `Unavailable` and `DeadlineExceeded`, a member killed while it answers makes
/// tonic report the broken HTTP/2 stream as `Unknown`, `Cancelled` or `Internal` with
/// the transport's words ("h2 protocol error", "connection reset", "operation was
/// canceled"): for a read that is the same condition.
fn is_unavailable(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            let msg = status.message();
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) || msg.contains("no leader")
                || msg.contains("leader changed")
                || (matches!(
                    status.code(),
                    tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal
                ) && is_broken_stream(msg))
        }
        _ => false,
    }
}

/// Words of a connection that broke under a request (tonic's and hyper's messages).
fn is_broken_stream(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "transport error",
        "h2 protocol error",
        "connection reset",
        "connection closed",
        "broken pipe",
        "operation was canceled",
        "error reading a body",
        "stream closed",
    ]
    .iter()
    .any(|words| message.contains(words))
}

/// etcd certainly did not apply the request: no connection was made, or the member had no
/// leader to propose to. Only these are retried for writes.
fn is_not_applied(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            let msg = status.message();
            msg.contains("etcdserver: no leader")
                || (status.code() == tonic::Code::Unavailable
                    && (msg.contains("tcp connect error")
                        || msg.contains("error trying to connect")
                        || msg.contains("Connection refused")
                        || msg.contains("connection refused")))
        }
        _ => false,
    }
}

/// The revision of a response header.
pub(crate) fn header_revision(
    header: Option<&etcd_client::ResponseHeader>,
) -> Result<i64, EtcdError> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| EtcdError::Data("response without a header".into()))
}

fn parse_revision(value: &[u8]) -> Option<Revision> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        self.get_key(key).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.range_keys(req).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.run_txn(txn).await
    }

    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream, StoreError> {
        self.start_watch(prefix, start).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.to_meridian(self.etcd_revision().await?))
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.grant(ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        self.keep_alive(id).await
    }

    async fn lease_keeper(&self) -> Result<Option<Arc<dyn crate::LeaseKeeper>>, StoreError> {
        Ok(Some(Arc::new(lease::Keeper {
            client: connect(&self.options).await?,
            timeout: self.options.request_timeout,
        })))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.revoke(id).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let recorded = self.recorded_compaction().await?;
        if revision <= recorded {
            return Ok(());
        }
        // Record first (guarded, so concurrent compactions only move it forward), then
        // compact: a crash in between leaves the record ahead of etcd, never behind.
        let key = self.keys.compacted.clone();
        let value = revision.to_string();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (recorded, mod_revision) = {
                let key = key.clone();
                let resp = self
                    .call("reading the compacted revision", Retry::Read, |c| {
                        let key = key.clone();
                        async move { kv_client(&c).get(key, None).await }
                    })
                    .await?;
                match resp.kvs().first() {
                    None => (0, 0),
                    Some(kv) => (parse_revision(kv.value()).unwrap_or(0), kv.mod_revision()),
                }
            };
            if revision <= recorded {
                break;
            }
            let txn = etcd_client::Txn::new()
                .when([EtcdCompare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    mod_revision,
                )])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
            let resp = match self
                .call("recording the compacted revision", Retry::Read, |c| {
                    let txn = txn.clone();
                    async move { kv_client(&c).txn(txn).await }
                })
                .await
            {
                Ok(resp) => resp,
                // Over its quota, etcd refuses the record but still compacts, which is the
                // first step out of NOSPACE: compact, leaving the record behind (a watch
                // from a revision in between is answered Compacted by etcd itself).
                Err(StoreError::NoSpace(_)) => {
                    tracing::warn!(
                        revision,
                        "etcd is out of space: compacting without recording the compacted revision"
                    );
                    break;
                }
                Err(e) => return Err(e),
            };
            if resp.succeeded() || attempts > 20 {
                break;
            }
        }
        let etcd_rev = self.to_etcd(revision);
        let result = self
            .call("compacting", Retry::Read, |c| async move {
                kv_client(&c)
                    .compact(
                        etcd_rev,
                        Some(etcd_client::CompactionOptions::new().with_physical()),
                    )
                    .await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another server (or an operator) compacted at or past it already.
            Err(StoreError::Backend(e)) if e.to_string().contains("compacted") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.recorded_compaction().await
    }

    /// etcd's revisions count every write to the cluster: other prefixes', and this
    /// store's metadata (outside the data prefix). A watch of this store never sees those,
    /// so the current revision may never be reached: mark a point with a write of its own.
    async fn sync_revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .txn(crate::Txn {
                success: vec![crate::Op::put(crate::SYNC_KEY, Vec::new())],
                ..crate::Txn::default()
            })
            .await?;
        Ok(resp.revision)
    }

    async fn backup(&self, dest: &std::path::Path) -> Result<crate::Backup, StoreError> {
        self.snapshot(dest).await
    }

    fn space(&self) -> crate::SpaceStatus {
        self.space.status()
    }

    fn max_txn_ops(&self) -> Option<usize> {
        Some(self.options.max_txn_ops)
    }
}

impl EtcdStore {
    /// etcd's snapshot (Maintenance.Snapshot, what `etcdctl snapshot save` asks one member
    /// for) streamed into the new file `dest`, flushed to disk. Not retried: a snapshot that
    /// breaks off leaves no file.
    async fn snapshot(&self, dest: &std::path::Path) -> Result<crate::Backup, StoreError> {
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| StoreError::Backend(Box::new(e));
        let revision = self.etcd_revision().await? - self.base;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(io)?;
        let result = async {
            let mut stream = self
                .client
                .maintenance_client()
                .snapshot()
                .await
                .map_err(|e| self.map_err("taking a snapshot", e))?;
            let mut bytes = 0u64;
            while let Some(part) = stream
                .message()
                .await
                .map_err(|e| self.map_err("taking a snapshot", e))?
            {
                file.write_all(part.blob()).await.map_err(io)?;
                bytes += part.blob().len() as u64;
            }
            file.sync_all().await.map_err(io)?;
            Ok(bytes)
        }
        .await;
        match result {
            Ok(bytes) => Ok(crate::Backup {
                format: crate::BackupFormat::EtcdSnapshot,
                bytes,
                revision,
            }),
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a"), b"/b");
        assert_eq!(prefix_end(b"/a\xff"), b"/b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/meridian/");
        assert_eq!(keys.data("/x"), b"/meridian/kv/x");
        assert_eq!(keys.strip(b"/meridian/kv/x").unwrap(), "/x");
        assert!(keys.strip(b"/other/x").is_err());
        assert_eq!(keys.base, "/meridian/meta/base");
    }
}
