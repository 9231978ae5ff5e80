//! Group commit of hash-chain appends: the transactions with appends that queue while one
//! commits go to etcd together, in one transaction.
//!
//! Every audited write appends to the one audit chain, and an append commits guarded by
//! the chain's head ([`super::txn`]), so one server's appends cannot overlap: each would
//! wait for the one before it to commit, a quorum round with an fsync. As the SQLite writer
//! does with its transactions, the appender task takes every append queued meanwhile and
//! commits them as one etcd transaction: one round for the group, whatever its size, with
//! the entries chained in queue order.
//!
//! - **Members are independent.** A group holds transactions whose keys do not overlap
//!   (no key one writes is read, compared or written by another; several may compare the
//!   same key, as fenced controller writes compare the leader key), so each member's
//!   compares and reads see what they would see alone.
//! - **One transaction.** The group's compares are the head guards and every member's
//!   compares; on success it runs every member's success branch in queue order, then
//!   moves the heads. Its failure branch reads the heads and every compared key, so when
//!   it fails the appender knows why: a moved head (another server appended) means reading
//!   the heads and trying again; members whose own compares failed commit alone, where
//!   their failure branches run, and the rest commit again as a group. So every member's
//!   outcome is the one it would have had alone; the members of a group share one commit
//!   revision, as the writes of one etcd transaction do, and their entries record the same
//!   revision ([`crate::chain::Verifier`] requires revisions that never decrease).
//! - **Limits.** A group stays within etcd's limits on compares and ops per transaction
//!   ([`super::EtcdOptions::max_txn_ops`]) and on request size
//!   ([`super::EtcdOptions::max_txn_bytes`]); the next transaction that would not fit
//!   starts the next group.
//! - **Failures.** A group etcd refused before applying anything (no space, a lease that
//!   expired, a limit) is retried member by member, so each gets its own answer. A group
//!   whose outcome is unknown (etcd unreachable or too slow to answer) fails every
//!   member with that error, as one transaction would: none is retried, since replaying
//!   writes that may have been applied could write twice.
//! - **Not cancelled with a caller.** The group commits in the appender's task, so a
//!   caller that stops waiting (its client disconnected) cannot cancel the others' commit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};

use etcd_client::{TxnOp, TxnOpResponse};
use tokio::sync::{mpsc, oneshot};

use super::txn::{Heads, KnownHeads, MAX_APPEND_ATTEMPTS, encoded_size};
use super::{EtcdError, EtcdStore, Retry, header_revision};
use crate::chain;
use crate::{Compare, Op, StoreError, Txn, TxnResponse};

/// Transactions in one group at most (etcd's limit on ops binds first with its default).
const MAX_MEMBERS: usize = 256;

/// A transaction with appends, waiting for the appender.
pub(super) struct Pending {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnResponse, StoreError>>,
}

/// Where transactions with appends queue for the appender.
pub(super) type Appends = mpsc::UnboundedSender<Pending>;

/// Starts the appender of `store`, fed by `queue`; it ends when the store is dropped.
pub(super) fn start(store: &Arc<EtcdStore>, queue: mpsc::UnboundedReceiver<Pending>) {
    tokio::spawn(run(Arc::downgrade(store), queue));
}

/// Queues `txn` (checked against the limits already) and waits for its answer.
pub(super) async fn append(appends: &Appends, txn: Txn) -> Result<TxnResponse, StoreError> {
    let (reply, answer) = oneshot::channel();
    appends
        .send(Pending { txn, reply })
        .map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

async fn run(store: Weak<EtcdStore>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut known = KnownHeads::default();
    let mut next: Option<Pending> = None;
    loop {
        let first = match next.take() {
            Some(held) => held,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let Some(store) = store.upgrade() else {
            return;
        };
        let mut group = Group::new(&store, first);
        while let Ok(pending) = queue.try_recv() {
            if let Err(pending) = group.add(pending) {
                next = Some(pending);
                break;
            }
        }
        store.commit_group(group.members, &mut known).await;
    }
}

/// The keys a transaction reads (compares, gets) and writes (puts, deletes); appends are
/// the appender's to chain.
#[derive(Default)]
struct Keys {
    read: HashSet<String>,
    written: HashSet<String>,
}

impl Keys {
    fn of(txn: &Txn) -> Keys {
        let mut keys = Keys::default();
        for compare in &txn.compares {
            keys.read.insert(compared_key(compare).to_owned());
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                Op::Get(key) => {
                    keys.read.insert(key.clone());
                }
                Op::Put { key, .. } | Op::Delete(key) => {
                    keys.written.insert(key.clone());
                }
                Op::Append { .. } => {}
            }
        }
        keys
    }

    /// Whether a transaction with these keys and one with `other`'s could see each other's
    /// writes.
    fn overlap(&self, other: &Keys) -> bool {
        self.written
            .iter()
            .any(|k| other.written.contains(k) || other.read.contains(k))
            || self.read.iter().any(|k| other.written.contains(k))
    }

    fn extend(&mut self, other: Keys) {
        self.read.extend(other.read);
        self.written.extend(other.written);
    }
}

fn compared_key(compare: &Compare) -> &str {
    match compare {
        Compare::ModRevision(key, _)
        | Compare::Exists(key)
        | Compare::Absent(key)
        | Compare::Value(key, _) => key,
    }
}

fn logs_of(txn: &Txn) -> impl Iterator<Item = &String> {
    txn.success
        .iter()
        .chain(&txn.failure)
        .filter_map(|op| match op {
            Op::Append { log, .. } => Some(log),
            _ => None,
        })
}

/// The transactions of one group and what they add up to against etcd's limits.
struct Group {
    members: Vec<Pending>,
    keys: Keys,
    logs: BTreeSet<String>,
    /// The group's compares: a guard per log and every member's compares.
    compares: usize,
    /// The success branch: every member's success ops and a head per log.
    ops: usize,
    /// Estimated request size, with the failure branch's reads.
    bytes: usize,
    max_ops: usize,
    max_bytes: usize,
    prefix_len: usize,
}

impl Group {
    fn new(store: &EtcdStore, first: Pending) -> Group {
        let mut group = Group {
            members: Vec::new(),
            keys: Keys::default(),
            logs: BTreeSet::new(),
            compares: 0,
            ops: 0,
            bytes: 0,
            max_ops: store.options.max_txn_ops,
            max_bytes: store.options.max_txn_bytes,
            prefix_len: store.keys.data_prefix_len(),
        };
        let keys = Keys::of(&first.txn);
        group.join(first, keys);
        group
    }

    /// Adds `pending` if it fits and touches no key of the group; hands it back otherwise.
    fn add(&mut self, pending: Pending) -> Result<(), Pending> {
        let keys = Keys::of(&pending.txn);
        let (compares, ops, bytes) = self.with(&pending.txn);
        if self.members.len() >= MAX_MEMBERS
            || compares > self.max_ops
            || ops > self.max_ops
            || bytes > self.max_bytes
            || keys.overlap(&self.keys)
        {
            return Err(pending);
        }
        self.join(pending, keys);
        Ok(())
    }

    fn join(&mut self, pending: Pending, keys: Keys) {
        (self.compares, self.ops, self.bytes) = self.with(&pending.txn);
        self.logs.extend(logs_of(&pending.txn).cloned());
        self.keys.extend(keys);
        self.members.push(pending);
    }

    /// The group's compares, success ops and size with `txn` in it.
    fn with(&self, txn: &Txn) -> (usize, usize, usize) {
        let new_logs = logs_of(txn)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|log| !self.logs.contains(*log))
            .count();
        let reads: usize = txn
            .compares
            .iter()
            .map(|c| self.prefix_len + compared_key(c).len() + 32)
            .sum();
        (
            self.compares + txn.compares.len() + new_logs,
            self.ops + txn.success.len() + new_logs,
            self.bytes + encoded_size(txn, self.prefix_len) + reads,
        )
    }
}

/// What one try of a group came to.
enum Tried {
    /// Committed: each member's answer, in order.
    Committed(Vec<TxnResponse>),
    /// Another server moved a chain head since it was read.
    HeadsMoved,
    /// The members (by index) whose own compares failed.
    Refused(Vec<usize>),
}

impl EtcdStore {
    /// Commits `members`, as a group while there are several, and answers each.
    async fn commit_group(&self, mut members: Vec<Pending>, known: &mut KnownHeads) {
        for _ in 0..MAX_APPEND_ATTEMPTS {
            if members.len() <= 1 {
                for member in members {
                    self.commit_alone(member, known).await;
                }
                return;
            }
            match self.try_group(&members, known).await {
                Ok(Tried::Committed(answers)) => {
                    for (member, answer) in members.into_iter().zip(answers) {
                        let _ = member.reply.send(Ok(answer));
                    }
                    return;
                }
                Ok(Tried::HeadsMoved) => {
                    tracing::debug!("chain head moved by another writer, retrying the group");
                    *known = KnownHeads::default();
                }
                Ok(Tried::Refused(refused)) if !refused.is_empty() => {
                    let mut rest = Vec::with_capacity(members.len() - refused.len());
                    for (i, member) in members.into_iter().enumerate() {
                        if refused.contains(&i) {
                            self.commit_alone(member, known).await;
                        } else {
                            rest.push(member);
                        }
                    }
                    members = rest;
                }
                // Refused though every compare holds: not expected; each alone is safe.
                Ok(Tried::Refused(_)) => {
                    for member in members {
                        self.commit_alone(member, known).await;
                    }
                    return;
                }
                Err(e) if not_applied(&e) => {
                    for member in members {
                        self.commit_alone(member, known).await;
                    }
                    return;
                }
                Err(e) => {
                    *known = KnownHeads::default();
                    for member in members {
                        let _ = member.reply.send(Err(shared(&e)));
                    }
                    return;
                }
            }
        }
        for member in members {
            let _ = member.reply.send(Err(EtcdError::Data(format!(
                "gave up appending after {MAX_APPEND_ATTEMPTS} attempts: the chain heads kept moving"
            ))
            .into()));
        }
    }

    async fn commit_alone(&self, member: Pending, known: &mut KnownHeads) {
        let result = self.append_with(&member.txn, known).await;
        if result.is_err() {
            // The transaction may have committed without its answer reaching us.
            *known = KnownHeads::default();
        }
        let _ = member.reply.send(result);
    }

    async fn try_group(
        &self,
        members: &[Pending],
        known: &mut KnownHeads,
    ) -> Result<Tried, StoreError> {
        let logs: Vec<String> = members
            .iter()
            .flat_map(|m| logs_of(&m.txn))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (read_at, read) = match known.of(&logs) {
            Some(cached) => cached,
            None => self.read_heads(&logs).await?,
        };
        let mut heads = Heads::new(&read, self.to_meridian(read_at) + 1);
        let mut compares = self.head_guards(&read);
        let mut success = Vec::new();
        let mut spans = Vec::with_capacity(members.len());
        for member in members {
            compares.extend(self.compares(&member.txn.compares));
            let mut mine = heads.fork();
            let start = success.len();
            success.extend(self.branch_ops(&member.txn.success, &mut mine)?);
            heads.follow(&mine);
            spans.push((start..success.len(), mine));
        }
        success.extend(self.head_puts(&heads));
        // What decides the outcome, read when the group fails.
        let checked: Vec<String> = logs
            .iter()
            .map(|log| chain::head_key(log))
            .chain(
                members
                    .iter()
                    .flat_map(|m| m.txn.compares.iter().map(|c| compared_key(c).to_owned())),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let failure: Vec<TxnOp> = checked
            .iter()
            .map(|key| TxnOp::get(self.keys.data(key), None))
            .collect();
        let request = etcd_client::Txn::new()
            .when(compares)
            .and_then(success)
            .or_else(failure);
        let resp = self
            .send_txn("appending a group to a hash chain", Retry::Write, &request)
            .await?;
        let revision = header_revision(resp.header())?;
        let responses = resp.op_responses();
        if resp.succeeded() {
            let mut answers = Vec::with_capacity(members.len());
            for (member, (span, mine)) in members.iter().zip(&spans) {
                let mine_responses = responses.get(span.clone()).ok_or_else(|| {
                    EtcdError::Data(format!(
                        "a group's transaction answered {} ops, fewer than it sent",
                        responses.len()
                    ))
                })?;
                let results = self.results(&member.txn.success, mine_responses, revision, mine)?;
                answers.push(TxnResponse {
                    succeeded: true,
                    revision: self.to_meridian(revision),
                    results,
                });
            }
            known.committed(revision, &read, &heads);
            return Ok(Tried::Committed(answers));
        }
        let mut now: HashMap<&str, Option<etcd_client::KeyValue>> = HashMap::new();
        for (key, response) in checked.iter().zip(responses) {
            let TxnOpResponse::Get(get) = response else {
                return Err(EtcdError::Data("a group's reads answered a non-read".into()).into());
            };
            now.insert(key.as_str(), get.kvs().first().cloned());
        }
        let mod_revision = |key: &str| {
            now.get(key)
                .and_then(Option::as_ref)
                .map_or(0, etcd_client::KeyValue::mod_revision)
        };
        if read
            .iter()
            .any(|(log, (_, held))| mod_revision(&chain::head_key(log)) != *held)
        {
            return Ok(Tried::HeadsMoved);
        }
        let holds = |compare: &Compare| {
            let kv = now.get(compared_key(compare)).and_then(Option::as_ref);
            match compare {
                Compare::ModRevision(_, 0) | Compare::Absent(_) => kv.is_none(),
                Compare::ModRevision(_, revision) => {
                    kv.is_some_and(|kv| kv.mod_revision() == self.to_etcd(*revision))
                }
                Compare::Exists(_) => kv.is_some(),
                Compare::Value(_, value) => kv.is_some_and(|kv| kv.value() == value.as_slice()),
            }
        };
        Ok(Tried::Refused(
            members
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.txn.compares.iter().all(holds))
                .map(|(i, _)| i)
                .collect(),
        ))
    }
}

/// Whether etcd refused the group before applying any of it, so its members can be tried
/// one by one.
fn not_applied(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NoSpace(_)
            | StoreError::TooLarge { .. }
            | StoreError::TooManyOps { .. }
            | StoreError::InvalidArgument(_)
            | StoreError::LeaseNotFound(_)
    ) || e.to_string().contains("requested lease not found")
}

/// The error of a group whose outcome is unknown, for each of its members.
fn shared(e: &StoreError) -> StoreError {
    let unavailable = match e {
        StoreError::Backend(source) => source
            .downcast_ref::<EtcdError>()
            .is_some_and(EtcdError::is_unavailable),
        _ => false,
    };
    EtcdError::Group {
        message: e.to_string(),
        unavailable,
    }
    .into()
}
