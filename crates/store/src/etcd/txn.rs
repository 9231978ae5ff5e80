//! Reads, transactions and hash-chain appends on etcd.
//!
//! A [`Txn`] becomes one etcd transaction: each [`Compare`] one etcd compare, each [`Op`]
//! one etcd op in the same position (puts and deletes ask for the previous key-value, so
//! results carry `prev`), so results map back by index. etcd's answer to a put holds only
//! the previous key-value; the new one is derived from it and the commit revision
//! (`version` + 1, the same `create_revision`, or a new key at the commit revision).
//!
//! A transaction with [`Op::Append`] reads the heads of its logs first and nests the
//! caller's transaction inside one guarded by the heads' `mod_revision`s (see the module
//! docs of [`super`] for why and for the revision an entry records).

use std::collections::BTreeMap;

use etcd_client::{
    Compare as EtcdCompare, CompareOp, DeleteOptions, GetOptions, PutOptions, TxnOp, TxnOpResponse,
};

use super::{EtcdError, EtcdStore, Retry, header_revision, kv_client, prefix_end};
use crate::chain::{self, ChainEntry, ChainHead};
use crate::{
    Compare, KeyValue, LeaseId, Op, OpResult, RangeRequest, RangeResponse, Revision, StoreError,
    Txn, TxnResponse,
};

/// Bytes counted per compare or op on top of its keys and values (protobuf tags, lengths,
/// revisions, the lease): generous, so the estimate stays above the encoded size.
const PER_ITEM_OVERHEAD: usize = 32;
/// How often an append is retried when another server moved a head in between.
pub(super) const MAX_APPEND_ATTEMPTS: usize = 1000;

/// Estimated encoded size of `txn` against etcd, with keys under `prefix_len` bytes of
/// prefix. Appends count their entry, entry key and head.
pub fn encoded_size(txn: &Txn, prefix_len: usize) -> usize {
    let key = |k: &str| prefix_len + k.len() + PER_ITEM_OVERHEAD;
    let mut size = 0;
    for compare in &txn.compares {
        size += match compare {
            Compare::ModRevision(k, _) | Compare::Exists(k) | Compare::Absent(k) => key(k),
            Compare::Value(k, v) => key(k) + v.len(),
        };
    }
    for op in txn.success.iter().chain(&txn.failure) {
        size += match op {
            Op::Get(k) | Op::Delete(k) => key(k),
            Op::Put { key: k, value, .. } => key(k) + value.len(),
            Op::Append { log, payload } => {
                key(&chain::entry_key(log, 0))
                    + 4
                    + 8
                    + 8
                    + 32
                    + 32
                    + payload.len()
                    + key(&chain::head_key(log))
                    + 4
                    + 8
                    + 32
            }
        };
    }
    size + PER_ITEM_OVERHEAD
}

impl EtcdStore {
    pub(super) async fn get_key(
        &self,
        key: &str,
    ) -> Result<(Option<KeyValue>, Revision), StoreError> {
        let etcd_key = self.keys.data(key);
        let resp = self
            .call("reading a key", Retry::Read, |c| {
                let etcd_key = etcd_key.clone();
                async move { kv_client(&c).get(etcd_key, None).await }
            })
            .await?;
        let revision = self.to_meridian(header_revision(resp.header())?);
        let kv = resp.kvs().first().map(|kv| self.kv(kv)).transpose()?;
        Ok((kv, revision))
    }

    pub(super) async fn range_keys(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let prefix = self.keys.data(&req.prefix);
        let end = prefix_end(&prefix);
        let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
        if req.count_only {
            let resp = self
                .call("counting keys", Retry::Read, |c| {
                    let (prefix, end) = (prefix.clone(), end.clone());
                    async move {
                        kv_client(&c)
                            .get(
                                prefix,
                                Some(GetOptions::new().with_range(end).with_count_only()),
                            )
                            .await
                    }
                })
                .await?;
            return Ok(RangeResponse {
                kvs: Vec::new(),
                more: false,
                count: u64::try_from(resp.count()).unwrap_or(0),
                revision: self.to_meridian(header_revision(resp.header())?),
            });
        }
        let from = match &req.start_after {
            Some(after) => {
                let mut after = self.keys.data(after);
                after.push(0);
                after.max(prefix.clone())
            }
            None => prefix.clone(),
        };
        // The page and the count of the whole prefix, read at one revision.
        let page = TxnOp::get(
            from,
            Some(GetOptions::new().with_range(end.clone()).with_limit(limit)),
        );
        let mut ops = vec![page];
        if req.start_after.is_some() {
            ops.push(TxnOp::get(
                prefix,
                Some(GetOptions::new().with_range(end).with_count_only()),
            ));
        }
        let txn = etcd_client::Txn::new().and_then(ops);
        let resp = self
            .call("listing keys", Retry::Read, |c| {
                let txn = txn.clone();
                async move { kv_client(&c).txn(txn).await }
            })
            .await?;
        let revision = self.to_meridian(header_revision(resp.header())?);
        let mut responses = resp.op_responses().into_iter();
        let Some(TxnOpResponse::Get(page)) = responses.next() else {
            return Err(EtcdError::Data("range answered without its page".into()).into());
        };
        let count = match responses.next() {
            Some(TxnOpResponse::Get(counted)) => counted.count(),
            _ => page.count(),
        };
        let kvs = page
            .kvs()
            .iter()
            .map(|kv| self.kv(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResponse {
            kvs,
            more: page.more(),
            count: u64::try_from(count).unwrap_or(0),
            revision,
        })
    }

    /// Sends one etcd transaction (retried as [`Retry`] says).
    pub(super) async fn send_txn(
        &self,
        what: &'static str,
        retry: Retry,
        request: &etcd_client::Txn,
    ) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call(what, retry, |c| {
            let request = request.clone();
            async move { kv_client(&c).txn(request).await }
        })
        .await
    }

    pub(super) async fn run_txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        crate::sqlite::validate(&txn)?;
        let size = encoded_size(&txn, self.keys.data_prefix_len());
        if size > self.options.max_txn_bytes {
            return Err(StoreError::TooLarge {
                size,
                limit: self.options.max_txn_bytes,
            });
        }
        if self.space.is_no_space()
            && (stores_something(&txn.success) || stores_something(&txn.failure))
        {
            return Err(self.space.refuse());
        }
        let ops = crate::txn_ops(&txn);
        if ops > self.options.max_txn_ops {
            return Err(StoreError::TooManyOps {
                ops,
                limit: self.options.max_txn_ops,
            });
        }
        let appends = txn
            .success
            .iter()
            .chain(&txn.failure)
            .any(|op| matches!(op, Op::Append { .. }));
        if appends {
            return super::group::append(&self.appends, txn).await;
        }
        let request = etcd_client::Txn::new()
            .when(self.compares(&txn.compares))
            .and_then(self.ops(&txn.success, &mut Heads::default())?)
            .or_else(self.ops(&txn.failure, &mut Heads::default())?);
        let resp = self
            .send_txn("committing a transaction", Retry::Write, &request)
            .await
            .map_err(|e| self.lease_error(e, &txn))?;
        let revision = header_revision(resp.header())?;
        let succeeded = resp.succeeded();
        let branch = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let results = self.results(branch, &resp.op_responses(), revision, &Heads::default())?;
        Ok(TxnResponse {
            succeeded,
            revision: self.to_meridian(revision),
            results,
        })
    }

    /// A transaction with appends, alone: read the heads (unless `known` holds them),
    /// build the entries, commit guarded by the heads; retry when another server appended
    /// in between. The appender ([`super::group`]) runs it for a group of one.
    pub(super) async fn append_with(
        &self,
        txn: &Txn,
        known: &mut KnownHeads,
    ) -> Result<TxnResponse, StoreError> {
        let logs: Vec<String> = {
            let mut logs: Vec<String> = txn
                .success
                .iter()
                .chain(&txn.failure)
                .filter_map(|op| match op {
                    Op::Append { log, .. } => Some(log.clone()),
                    _ => None,
                })
                .collect();
            logs.sort();
            logs.dedup();
            logs
        };
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let (read_at, read) = match known.of(&logs) {
                Some(cached) => cached,
                None => self.read_heads(&logs).await?,
            };
            // The first revision this transaction can commit at (Meridian numbering).
            let entry_revision = self.to_meridian(read_at) + 1;
            let mut success_heads = Heads::new(&read, entry_revision);
            let mut failure_heads = Heads::new(&read, entry_revision);
            let inner = etcd_client::Txn::new()
                .when(self.compares(&txn.compares))
                .and_then(self.ops(&txn.success, &mut success_heads)?)
                .or_else(self.ops(&txn.failure, &mut failure_heads)?);
            let request = etcd_client::Txn::new()
                .when(self.head_guards(&read))
                .and_then([TxnOp::txn(inner)]);
            let resp = self
                .send_txn("appending to a hash chain", Retry::Write, &request)
                .await
                .map_err(|e| self.lease_error(e, txn))?;
            if !resp.succeeded() {
                tracing::debug!("chain head moved by another writer, retrying the append");
                *known = KnownHeads::default();
                continue;
            }
            let revision = header_revision(resp.header())?;
            let Some(TxnOpResponse::Txn(inner)) = resp.op_responses().into_iter().next() else {
                return Err(
                    EtcdError::Data("append answered without its transaction".into()).into(),
                );
            };
            let succeeded = inner.succeeded();
            let (branch, heads) = if succeeded {
                (&txn.success, &success_heads)
            } else {
                (&txn.failure, &failure_heads)
            };
            let results = self.results(branch, &inner.op_responses(), revision, heads)?;
            known.committed(revision, &read, heads);
            return Ok(TxnResponse {
                succeeded,
                revision: self.to_meridian(revision),
                results,
            });
        }
        Err(EtcdError::Data(format!(
            "gave up appending after {MAX_APPEND_ATTEMPTS} attempts: the chain heads kept moving"
        ))
        .into())
    }

    /// A compare per log: its head key's `mod_revision` is still the one read.
    pub(super) fn head_guards(&self, read: &HeadsRead) -> Vec<EtcdCompare> {
        read.iter()
            .map(|(log, (_, mod_revision))| {
                EtcdCompare::mod_revision(
                    self.keys.data(&chain::head_key(log)),
                    CompareOp::Equal,
                    *mod_revision,
                )
            })
            .collect()
    }

    /// Reads the heads of `logs` at one revision: (etcd revision, log → (head, mod_revision)).
    pub(super) async fn read_heads(
        &self,
        logs: &[String],
    ) -> Result<(i64, BTreeMap<String, (ChainHead, i64)>), StoreError> {
        let ops: Vec<TxnOp> = logs
            .iter()
            .map(|log| TxnOp::get(self.keys.data(&chain::head_key(log)), None))
            .collect();
        let request = etcd_client::Txn::new().and_then(ops);
        let resp = self
            .send_txn("reading chain heads", Retry::Read, &request)
            .await?;
        let revision = header_revision(resp.header())?;
        let mut heads = BTreeMap::new();
        for (log, op) in logs.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(get) = op else {
                return Err(EtcdError::Data("head read answered a non-read".into()).into());
            };
            let head = match get.kvs().first() {
                None => (ChainHead::default(), 0),
                Some(kv) => {
                    let head = ChainHead::decode(kv.value()).map_err(|e| {
                        EtcdError::Data(format!("chain head of {log} is undecodable: {e}"))
                    })?;
                    (head, kv.mod_revision())
                }
            };
            heads.insert(log.clone(), head);
        }
        Ok((revision, heads))
    }

    pub(super) fn compares(&self, compares: &[Compare]) -> Vec<EtcdCompare> {
        compares
            .iter()
            .map(|compare| match compare {
                Compare::ModRevision(key, 0) => {
                    EtcdCompare::mod_revision(self.keys.data(key), CompareOp::Equal, 0)
                }
                Compare::ModRevision(key, revision) => EtcdCompare::mod_revision(
                    self.keys.data(key),
                    CompareOp::Equal,
                    self.to_etcd(*revision),
                ),
                Compare::Exists(key) => {
                    EtcdCompare::version(self.keys.data(key), CompareOp::Greater, 0)
                }
                Compare::Absent(key) => {
                    EtcdCompare::version(self.keys.data(key), CompareOp::Equal, 0)
                }
                Compare::Value(key, value) => {
                    EtcdCompare::value(self.keys.data(key), CompareOp::Equal, value.clone())
                }
            })
            .collect()
    }

    /// The etcd ops of one branch; appends advance `heads` and put the moved heads last.
    fn ops(&self, ops: &[Op], heads: &mut Heads) -> Result<Vec<TxnOp>, StoreError> {
        let mut out = self.branch_ops(ops, heads)?;
        out.extend(self.head_puts(heads));
        Ok(out)
    }

    /// The etcd ops of one branch, without the heads; appends advance `heads`.
    pub(super) fn branch_ops(
        &self,
        ops: &[Op],
        heads: &mut Heads,
    ) -> Result<Vec<TxnOp>, StoreError> {
        let mut out = Vec::with_capacity(ops.len() + 1);
        for op in ops {
            out.push(match op {
                Op::Get(key) => TxnOp::get(self.keys.data(key), None),
                Op::Put { key, value, lease } => {
                    let mut options = PutOptions::new().with_prev_key();
                    if let Some(lease) = lease {
                        options = options.with_lease(*lease);
                    }
                    TxnOp::put(self.keys.data(key), value.clone(), Some(options))
                }
                Op::Delete(key) => TxnOp::delete(
                    self.keys.data(key),
                    Some(DeleteOptions::new().with_prev_key()),
                ),
                Op::Append { log, payload } => {
                    let entry = heads.append(log, payload.clone())?;
                    TxnOp::put(
                        self.keys.data(&chain::entry_key(log, entry.seq)),
                        entry.encode(),
                        None,
                    )
                }
            });
        }
        Ok(out)
    }

    /// A put of each head `heads` moved.
    pub(super) fn head_puts(&self, heads: &Heads) -> Vec<TxnOp> {
        heads
            .moved()
            .map(|(log, head)| {
                TxnOp::put(self.keys.data(&chain::head_key(log)), head.encode(), None)
            })
            .collect()
    }

    /// Maps etcd's op responses back onto the ops of the branch that ran.
    pub(super) fn results(
        &self,
        ops: &[Op],
        responses: &[TxnOpResponse],
        revision: i64,
        heads: &Heads,
    ) -> Result<Vec<OpResult>, StoreError> {
        let mut results = Vec::with_capacity(ops.len());
        let mut appended: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let response = responses.get(i).ok_or_else(|| {
                EtcdError::Data(format!(
                    "transaction answered {} ops of {}",
                    responses.len(),
                    ops.len()
                ))
            })?;
            results.push(match (op, response) {
                (Op::Get(_), TxnOpResponse::Get(get)) => {
                    OpResult::Get(get.kvs().first().map(|kv| self.kv(kv)).transpose()?)
                }
                (Op::Put { key, value, lease }, TxnOpResponse::Put(put)) => {
                    let prev = put.prev_key().map(|kv| self.kv(kv)).transpose()?;
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev
                            .as_ref()
                            .map_or(self.to_meridian(revision), |p| p.create_revision),
                        mod_revision: self.to_meridian(revision),
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    OpResult::Put { kv, prev }
                }
                (Op::Delete(_), TxnOpResponse::Delete(delete)) => OpResult::Delete {
                    prev: delete
                        .prev_kvs()
                        .first()
                        .map(|kv| self.kv(kv))
                        .transpose()?,
                },
                (Op::Append { log, .. }, TxnOpResponse::Put(_)) => {
                    let seq = appended
                        .entry(log.as_str())
                        .and_modify(|s| *s += 1)
                        .or_insert_with(|| heads.first_seq(log));
                    OpResult::Append {
                        key: chain::entry_key(log, *seq),
                        seq: *seq,
                    }
                }
                (op, response) => {
                    return Err(
                        EtcdError::Data(format!("etcd answered {response:?} to {op:?}")).into(),
                    );
                }
            });
        }
        Ok(results)
    }

    /// Names the lease etcd did not find, when that is why a transaction failed.
    fn lease_error(&self, err: StoreError, txn: &Txn) -> StoreError {
        let StoreError::Backend(source) = &err else {
            return err;
        };
        if !source.to_string().contains("requested lease not found") {
            return err;
        }
        let leases: Vec<LeaseId> = txn
            .success
            .iter()
            .chain(&txn.failure)
            .filter_map(|op| match op {
                Op::Put {
                    lease: Some(lease), ..
                } => Some(*lease),
                _ => None,
            })
            .collect();
        match leases.first() {
            Some(first) => StoreError::LeaseNotFound(*first),
            None => err,
        }
    }
}

/// Whether a branch writes a value (what the store refuses while etcd's NOSPACE alarm is
/// raised).
fn stores_something(ops: &[Op]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Put { .. } | Op::Append { .. }))
}

/// The chain heads this process's last append left (etcd revision, log → (head,
/// `mod_revision`)), as of that append's commit revision: they stand in for a read of the
/// heads until another server moves one (the append's guard fails, and it reads).
#[derive(Debug, Default)]
pub(crate) struct KnownHeads {
    revision: i64,
    heads: HeadsRead,
}

/// Log → (head, the head key's `mod_revision`; 0 when the log has no head yet).
pub(super) type HeadsRead = BTreeMap<String, (ChainHead, i64)>;

impl KnownHeads {
    /// The heads of `logs`, when every one is known.
    pub(super) fn of(&self, logs: &[String]) -> Option<(i64, HeadsRead)> {
        let heads = logs
            .iter()
            .map(|log| self.heads.get(log).map(|head| (log.clone(), *head)))
            .collect::<Option<BTreeMap<_, _>>>()?;
        Some((self.revision, heads))
    }

    /// An append committed at `revision` from the heads `read`, leaving `branch`'s.
    pub(super) fn committed(&mut self, revision: i64, read: &HeadsRead, branch: &Heads) {
        self.revision = revision;
        for (log, (head, mod_revision)) in read {
            let now = branch.current.get(log).copied().unwrap_or(*head);
            let mod_revision = if now == *head {
                *mod_revision
            } else {
                revision
            };
            self.heads.insert(log.clone(), (now, mod_revision));
        }
    }
}

/// The chain heads a branch starts from and moves, with the revision its entries record.
#[derive(Debug, Default)]
pub(super) struct Heads {
    start: BTreeMap<String, ChainHead>,
    current: BTreeMap<String, ChainHead>,
    revision: Revision,
}

impl Heads {
    pub(super) fn new(read: &BTreeMap<String, (ChainHead, i64)>, revision: Revision) -> Self {
        let start: BTreeMap<String, ChainHead> = read
            .iter()
            .map(|(log, (head, _))| (log.clone(), *head))
            .collect();
        Self {
            current: start.clone(),
            start,
            revision,
        }
    }

    fn append(&mut self, log: &str, payload: Vec<u8>) -> Result<ChainEntry, StoreError> {
        let head = self
            .current
            .get_mut(log)
            .ok_or_else(|| EtcdError::Data(format!("append to {log} without its head read")))?;
        let entry = ChainEntry::new(head.seq + 1, self.revision, head.hash, payload);
        *head = ChainHead {
            seq: entry.seq,
            hash: entry.hash,
        };
        Ok(entry)
    }

    /// A branch that starts where this one is now (the next member of a group).
    pub(super) fn fork(&self) -> Heads {
        Heads {
            start: self.current.clone(),
            current: self.current.clone(),
            revision: self.revision,
        }
    }

    /// Moves on to where `branch`, a [`Heads::fork`] of this one, left the heads.
    pub(super) fn follow(&mut self, branch: &Heads) {
        self.current.clone_from(&branch.current);
    }

    /// The heads this branch moved.
    fn moved(&self) -> impl Iterator<Item = (&String, &ChainHead)> {
        self.current
            .iter()
            .filter(|(log, head)| self.start.get(*log) != Some(head))
    }

    /// Seq of the first entry this branch appended to `log`.
    fn first_seq(&self, log: &str) -> u64 {
        self.start.get(log).map_or(1, |head| head.seq + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_values_and_appends() {
        let small = Txn {
            success: vec![Op::put("/k", "v")],
            ..Txn::default()
        };
        let big = Txn {
            success: vec![Op::put("/k", vec![0u8; 2_000_000])],
            ..Txn::default()
        };
        assert!(encoded_size(&small, 12) < 200);
        assert!(encoded_size(&big, 12) > 2_000_000);
        let append = Txn {
            success: vec![Op::Append {
                log: "/log/".into(),
                payload: vec![0u8; 1000],
            }],
            ..Txn::default()
        };
        assert!(encoded_size(&append, 12) > 1000 + 84 + 44);
    }
}
