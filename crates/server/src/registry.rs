//! How objects live in the store: key layout, encoding, and the audited write path.
//!
//! Keys: `/registry/{plural}/{name}` for global kinds and
//! `/registry/{plural}/{project}/{name}` for project-scoped kinds. Values are the object's
//! JSON without `metadata.resourceVersion`, which is the key's `mod_revision` and is filled in
//! on every read. Every write goes through [`Registry::commit`], which appends the audit
//! entry in the same transaction as the change, so the audit chain has exactly the committed
//! mutations, in commit order.
//!
//! The rule is kept by visibility, not convention: the store itself is private to this
//! module. Handlers and controllers get a [`ReadView`] (`AppState::store()`), which can
//! only read, and write through [`Registry::commit`]. The only other writes are the
//! narrowly named ones of the controllers that own them: admission denials
//! ([`Registry::append_audit`], an audit entry without a mutation), node leases
//! ([`Registry::hold_lease`], [`Registry::keep_alive`], liveness keys rather than objects,
//! unaudited) and history compaction ([`Registry::compact`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use api::KindInfo;
use store::{
    Compare, KeyValue, LeaseId, Op, OpResult, RangeRequest, RangeResponse, Revision, SpaceStatus,
    Store, StoreError, Txn, TxnResponse, WatchStream,
};

use crate::auth::{Principal, TOKEN_PREFIX, TokenRecord};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Prefix of the hash-chained audit log.
pub const AUDIT_LOG: &str = "/meridian/audit/";

/// Key of one object.
pub fn object_key(kind: &KindInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => format!("/registry/{}/{ns}/{name}", kind.plural),
        _ => format!("/registry/{}/{name}", kind.plural),
    }
}

/// Prefix of all objects of a kind, or of a kind in one project.
pub fn kind_prefix(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced() => format!("/registry/{}/{ns}/", kind.plural),
        _ => format!("/registry/{}/", kind.plural),
    }
}

/// Decode a stored object and stamp its `resourceVersion`.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut value: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut value, kv.mod_revision);
    Ok(value)
}

/// Encode an object for storage (without `resourceVersion`).
pub fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object).expect("a JSON value always serializes")
}

pub fn set_resource_version(value: &mut Value, revision: Revision) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_owned(),
            Value::String(revision.to_string()),
        );
    }
}

/// What an audit entry records. The store adds sequence, revision and the chain hashes.
///
/// Most entries are committed mutations (no `outcome`). Admission adds two things: a write
/// that `warn` policies flagged carries them in `policies` with `outcome: "allowed"`, in the
/// same entry as the write; a request a `deny` policy refused is an entry of its own with
/// `outcome: "denied"`, no `digest` (nothing was stored) and the policies that refused it
/// (`admission_audit.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: String,
    pub actor: String,
    pub verb: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// SHA-256 of the stored object after the change (absent for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Admission's decision when policies had something to say: `denied` (refused,
    /// nothing written) or `allowed` (written, with the warnings in `policies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The policies behind `outcome`, one entry per violation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyDecision>,
    /// Denials of the same actor left out of the log before this entry (over the
    /// per-actor rate; they are counted in the metrics).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One policy's part in an admission decision, as the audit log records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDecision {
    pub policy: String,
    /// `deny` or `warn`.
    pub enforcement: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Digest recorded in the audit log for a stored value.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Now, as an RFC 3339 timestamp with second precision (as Kubernetes writes them).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// A change to commit: guards, writes, and what the audit log says about it.
pub struct Mutation {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
    pub audit: AuditRecord,
    /// More entries when one transaction changes several objects (the scheduler's).
    pub more_audit: Vec<AuditRecord>,
}

impl Mutation {
    /// A mutation recorded by one audit entry.
    pub fn new(compares: Vec<Compare>, ops: Vec<Op>, audit: AuditRecord) -> Self {
        Self {
            compares,
            ops,
            audit,
            more_audit: Vec::new(),
        }
    }
}

/// What handlers and controllers may do with the store: read it. No method writes.
#[derive(Clone)]
pub struct ReadView {
    store: Arc<dyn Store>,
}

/// A read that also decodes what it read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored value {key} is corrupt")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Store(e) => ApiError::from(e),
            ReadError::Corrupt { key, source } => {
                ApiError::internal(format!("stored value {key} is corrupt: {source}"))
            }
        }
    }
}

impl ReadView {
    /// Reads of `store`. Only the registry's own store and offline tools make one.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Read one key, with the revision the read saw.
    pub async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        self.store.get(key).await
    }

    /// One page of keys under a prefix ([`RangeRequest`]).
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.store.range(req).await
    }

    /// Watch keys under `prefix` from revision `start` (0: changes after now).
    pub async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream, StoreError> {
        self.store.watch(prefix, start).await
    }

    pub async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.store.current_revision().await
    }

    /// The highest compacted revision (0 when nothing was compacted).
    pub async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.store.compacted_revision().await
    }

    /// A revision a watch of the whole store reaches, at or after every acknowledged write
    /// ([`Store::sync_revision`]; on etcd a marker write outside every resource, which
    /// changes no object).
    pub async fn sync_revision(&self) -> Result<Revision, StoreError> {
        self.store.sync_revision().await
    }

    /// Whether the store refuses writes for lack of disk space.
    pub fn space(&self) -> SpaceStatus {
        self.store.space()
    }

    /// Reads every key under `prefix` in pages of at most `page` keys, each at its own
    /// revision, handing each page to `each` as it comes.
    pub async fn for_each_page(
        &self,
        prefix: &str,
        page: usize,
        mut each: impl FnMut(RangeResponse),
    ) -> Result<(), StoreError> {
        let mut start_after = None;
        loop {
            let read = self
                .store
                .range(RangeRequest {
                    prefix: prefix.to_owned(),
                    start_after: start_after.take(),
                    limit: page,
                    count_only: false,
                })
                .await?;
            start_after = read.kvs.last().map(|kv| kv.key.clone());
            let more = read.more;
            each(read);
            if !more {
                return Ok(());
            }
        }
    }

    /// Every key under `prefix`, read in pages of 5,000.
    pub async fn read_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        self.for_each_page(prefix, 5_000, |page| out.extend(page.kvs))
            .await?;
        Ok(out)
    }

    /// How many keys there are under `prefix` (counted, none read).
    pub async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let page = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_owned(),
                limit: 1,
                count_only: true,
                ..RangeRequest::default()
            })
            .await?;
        Ok(page.count)
    }

    /// Every token record by digest, in one read, with the revision it saw (a watch on
    /// [`TOKEN_PREFIX`] from the next revision keeps a copy current).
    pub async fn tokens(&self) -> Result<(Vec<(String, TokenRecord)>, Revision), ReadError> {
        let page = self
            .store
            .range(RangeRequest {
                prefix: TOKEN_PREFIX.into(),
                ..RangeRequest::default()
            })
            .await?;
        let records = page
            .kvs
            .iter()
            .filter_map(|kv| {
                let digest = kv.key.strip_prefix(TOKEN_PREFIX)?;
                Some(
                    serde_json::from_slice::<TokenRecord>(&kv.value)
                        .map(|r| (digest.to_owned(), r))
                        .map_err(|source| ReadError::Corrupt {
                            key: kv.key.clone(),
                            source,
                        }),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok((records, page.revision))
    }
}

/// The audited write path to the store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    reads: Arc<ReadView>,
    metrics: Metrics,
    /// Set on the registry a leader's controllers write through ([`Registry::fenced`]).
    fence: Option<Fence>,
}

/// A leader's term, as its controllers' writes carry it: every commit is guarded by the
/// leader key's `mod_revision` at election, so a deposed leader that has not noticed
/// yet writes nothing (a new leader rewrote the key; an expired lease deleted it).
#[derive(Clone, Debug)]
pub struct Fence {
    pub key: String,
    pub revision: Revision,
    /// Cancelled when a fenced write finds the key moved: the term is over.
    pub term: tokio_util::sync::CancellationToken,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, metrics: Metrics) -> Self {
        Self {
            reads: Arc::new(ReadView::new(store.clone())),
            store,
            metrics,
            fence: None,
        }
    }

    /// The same registry, with every commit guarded by `fence` (for a leader's
    /// controllers).
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// The fence of this registry's commits, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Reads of the store (what `AppState::store()` hands out).
    pub fn reads(&self) -> &Arc<ReadView> {
        &self.reads
    }

    /// Commit a mutation with its audit entry. On a failed guard, returns the response
    /// with `succeeded == false` and the failure branch reading every compared key.
    pub async fn commit(&self, mutation: Mutation) -> Result<TxnResponse, StoreError> {
        let txn = txn_of(self.fence.as_ref(), mutation);
        let started = std::time::Instant::now();
        let response = self.store.txn(txn).await?;
        self.metrics.observe_commit(started.elapsed());
        if !response.succeeded
            && let Some(fence) = &self.fence
        {
            let moved = match response.results.last() {
                Some(OpResult::Get(kv)) => {
                    kv.as_ref().map(|kv| kv.mod_revision) != Some(fence.revision)
                }
                _ => true,
            };
            if moved {
                fence.term.cancel();
                return Err(StoreError::Fenced {
                    key: fence.key.clone(),
                });
            }
        }
        Ok(response)
    }

    /// The store's limit on operations per transaction (etcd's `--max-txn-ops`), `None`
    /// when it has none (SQLite).
    pub fn max_txn_ops(&self) -> Option<usize> {
        self.store.max_txn_ops()
    }

    /// What a commit of a mutation with `compares` guards, `ops` writes and `audits` audit
    /// entries costs against [`Registry::max_txn_ops`], as [`store::txn_ops`] counts the
    /// transaction [`Registry::commit`] builds: the fence adds a guard, the failure branch
    /// reads every guarded key, each entry is an append and the audit log's head one more
    /// write, and the appends nest the transaction under the head's guard.
    pub fn commit_cost(&self, compares: usize, ops: usize, audits: usize) -> usize {
        commit_cost(self.fence.is_some(), compares, ops, audits)
    }

    /// Whether such a commit fits one transaction of the store.
    pub fn fits(&self, compares: usize, ops: usize, audits: usize) -> bool {
        self.max_txn_ops()
            .is_none_or(|limit| self.commit_cost(compares, ops, audits) <= limit)
    }

    /// How many items of a uniform batch fit one commit (at least 1, at most `cap`): each
    /// item adds `per_item` (compares, ops, audit entries) to `shared` ones. For batches
    /// of independent changes (events, expiries, re-encryption), which split freely.
    pub fn batch_len(
        &self,
        shared: (usize, usize, usize),
        per_item: (usize, usize, usize),
        cap: usize,
    ) -> usize {
        let fits = |n: usize| {
            self.fits(
                shared.0 + n * per_item.0,
                shared.1 + n * per_item.1,
                shared.2 + n * per_item.2,
            )
        };
        let mut n = 1;
        while n < cap && fits(n + 1) {
            n += 1;
        }
        n
    }

    /// Writes `key` attached to a new lease of `ttl`, returning the lease. For liveness
    /// keys (a node's heartbeat lease), not objects: nothing is audited, as a lease's
    /// renewals are not.
    pub async fn hold_lease(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<LeaseId, StoreError> {
        let id = self.store.lease_grant(ttl).await?;
        self.store
            .txn(Txn {
                compares: vec![],
                success: vec![Op::Put {
                    key,
                    value,
                    lease: Some(id),
                }],
                failure: vec![],
            })
            .await?;
        Ok(id)
    }

    /// Renews a lease from [`Registry::hold_lease`]; returns its TTL.
    /// A renewer of leases to run on a runtime of its own ([`store::Store::lease_keeper`]);
    /// `None` when the store has none (renew with [`Registry::keep_alive`]).
    pub async fn lease_keeper(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn store::LeaseKeeper>>, StoreError> {
        self.store.lease_keeper().await
    }

    pub async fn keep_alive(&self, lease: LeaseId) -> Result<std::time::Duration, StoreError> {
        self.store.lease_keep_alive(lease).await
    }

    /// Drops history at and below `revision` (the compaction controller's). Not a
    /// transaction, so a fence cannot guard it: a fenced registry whose term is over
    /// refuses it, and a compaction a deposed leader starts anyway only drops history
    /// the new leader would drop a moment later.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if let Some(fence) = self.fence.as_ref().filter(|f| f.term.is_cancelled()) {
            return Err(StoreError::Fenced {
                key: fence.key.clone(),
            });
        }
        self.store.compact(revision).await
    }

    /// A consistent copy of the store in the new file `dest` (see [`crate::backup`]).
    pub async fn backup(&self, dest: &std::path::Path) -> Result<store::Backup, StoreError> {
        self.store.backup(dest).await
    }

    /// A new lease of `ttl` (a server's session, see [`crate::leader`]).
    pub async fn grant_lease(&self, ttl: std::time::Duration) -> Result<LeaseId, StoreError> {
        self.store.lease_grant(ttl).await
    }

    /// Revokes a lease, deleting the keys attached to it (a server resigning).
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.store.lease_revoke(lease).await
    }

    /// Writes `key` attached to `lease`, unaudited (a server's identity key).
    pub async fn put_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<KeyValue, StoreError> {
        let response = self
            .store
            .txn(Txn {
                compares: vec![],
                success: vec![Op::Put {
                    key: key.to_owned(),
                    value,
                    lease: Some(lease),
                }],
                failure: vec![],
            })
            .await?;
        match response.results.into_iter().next() {
            Some(OpResult::Put { kv, .. }) => Ok(kv),
            _ => Err(StoreError::InvalidArgument(format!(
                "the store answered a put of {key} without its result"
            ))),
        }
    }

    /// Deletes a bookkeeping key, unaudited (a published log session that ended).
    pub async fn delete_unaudited(&self, key: &str) -> Result<(), StoreError> {
        self.store
            .txn(Txn {
                compares: vec![],
                success: vec![Op::Delete(key.to_owned())],
                failure: vec![],
            })
            .await
            .map(drop)
    }

    /// Creates `key` attached to `lease` if it does not exist (a campaign for the lead):
    /// `Ok(Ok(kv))` with the written key, or `Ok(Err(holder))` with the key as it is.
    pub async fn create_leased(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<Result<KeyValue, Option<KeyValue>>, StoreError> {
        let response = self
            .store
            .txn(Txn {
                compares: vec![Compare::Absent(key.to_owned())],
                success: vec![Op::Put {
                    key: key.to_owned(),
                    value,
                    lease: Some(lease),
                }],
                failure: vec![Op::Get(key.to_owned())],
            })
            .await?;
        let succeeded = response.succeeded;
        match response.results.into_iter().next() {
            Some(OpResult::Put { kv, .. }) if succeeded => Ok(Ok(kv)),
            Some(OpResult::Get(holder)) => Ok(Err(holder)),
            _ => Err(StoreError::InvalidArgument(format!(
                "the store answered a guarded put of {key} without its result"
            ))),
        }
    }

    /// Build an audit record for `who` doing `verb` on an object.
    pub fn audit_record(
        who: &Principal,
        verb: &str,
        kind: &KindInfo,
        namespace: Option<&str>,
        name: &str,
        stored: Option<&[u8]>,
    ) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            actor: who.actor(),
            verb: verb.to_owned(),
            kind: kind.kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            digest: stored.map(digest),
            ..AuditRecord::default()
        }
    }

    /// Appends one audit entry that records no mutation (an admission denial): a
    /// transaction with only the `Append`, chained like every other entry.
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<TxnResponse, StoreError> {
        let started = std::time::Instant::now();
        let response = self
            .store
            .txn(Txn {
                compares: vec![],
                success: vec![Op::Append {
                    log: AUDIT_LOG.to_owned(),
                    payload: serde_json::to_vec(record).expect("audit record serializes"),
                }],
                failure: vec![],
            })
            .await?;
        self.metrics.observe_commit(started.elapsed());
        Ok(response)
    }
}

/// The transaction [`Registry::commit`] sends for `mutation`: the fence's guard last
/// (so its read is the failure branch's last result), a read of every guarded key on
/// failure, one append per audit entry.
fn txn_of(fence: Option<&Fence>, mutation: Mutation) -> Txn {
    let Mutation {
        mut compares,
        mut ops,
        audit,
        more_audit,
    } = mutation;
    if let Some(fence) = fence {
        compares.push(Compare::ModRevision(fence.key.clone(), fence.revision));
    }
    let failure = compares
        .iter()
        .map(|c| {
            Op::Get(match c {
                Compare::ModRevision(k, _)
                | Compare::Exists(k)
                | Compare::Absent(k)
                | Compare::Value(k, _) => k.clone(),
            })
        })
        .collect();
    for record in std::iter::once(&audit).chain(&more_audit) {
        ops.push(Op::Append {
            log: AUDIT_LOG.to_owned(),
            payload: serde_json::to_vec(record).expect("audit record serializes"),
        });
    }
    Txn {
        compares,
        success: ops,
        failure,
    }
}

/// [`Registry::commit_cost`], for a fenced registry or not.
fn commit_cost(fenced: bool, compares: usize, ops: usize, audits: usize) -> usize {
    let compares = compares + usize::from(fenced);
    if audits == 0 {
        return compares.max(ops);
    }
    compares.max(ops + audits + 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cost batches are sized by is what the store counts for the transaction
    /// `commit` sends.
    #[test]
    fn commit_cost_counts_the_transaction_commit_sends() {
        let fence = Fence {
            key: "/leader".into(),
            revision: 7,
            term: tokio_util::sync::CancellationToken::new(),
        };
        for (compares, ops, audits) in [
            (0, 1, 1),
            (1, 1, 1),
            (3, 1, 1),
            (1, 5, 5),
            (40, 2, 1),
            (5, 20, 7),
        ] {
            for fenced in [false, true] {
                let mutation = Mutation {
                    compares: (0..compares)
                        .map(|i| Compare::Absent(format!("/c/{i}")))
                        .collect(),
                    ops: (0..ops).map(|i| Op::put(format!("/o/{i}"), "v")).collect(),
                    audit: AuditRecord::default(),
                    more_audit: vec![AuditRecord::default(); audits - 1],
                };
                let txn = txn_of(fenced.then_some(&fence), mutation);
                assert_eq!(
                    commit_cost(fenced, compares, ops, audits),
                    store::txn_ops(&txn),
                    "{compares} compares, {ops} ops, {audits} audits, fenced {fenced}"
                );
            }
        }
    }
}
