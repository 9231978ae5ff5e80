//! Hash-chained, append-only logs: Meridian's tamper-evident audit log.
//!
//! A log is a key prefix. A transaction appends to it with [`Op::Append`](crate::Op::Append);
//! the backend assigns, at commit time, `seq` = previous seq + 1 (the first entry has seq 1),
//! stores a [`ChainEntry`] under [`entry_key`]`(log, seq)` and rewrites the log's head
//! ([`ChainHead`]) under [`head_key`]`(log)`. Because the append sits in the same
//! transaction as the mutation it records, the two commit atomically and the chain order is
//! the commit order.
//!
//! Every entry commits to its predecessor:
//! `hash = sha256("meridian-chain-v1" || seq BE || revision BE || prev_hash || payload)`,
//! with an all-zero `prev_hash` for the first entry. [`verify`] (or the incremental
//! [`Verifier`], or [`verify_store`] against a live store) recomputes the chain and names the
//! first entry that was altered, removed, reordered or cut off the tail.
//!
//! The head key sorts after every entry key (`"head"` > any run of digits), so a range read
//! of the log returns the entries in seq order followed by the head.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::{KeyValue, RangeRequest, Revision, Store, StoreError};

/// Domain separator of the entry hash; bump the version if the hashed layout changes.
const HASH_DOMAIN: &[u8] = b"meridian-chain-v1";
/// Magic prefix of an encoded [`ChainEntry`].
const ENTRY_MAGIC: &[u8; 4] = b"MCE1";
/// Magic prefix of an encoded [`ChainHead`].
const HEAD_MAGIC: &[u8; 4] = b"MCH1";
/// Suffix of the head key.
const HEAD_SUFFIX: &str = "head";
/// Number of digits of the seq in an entry key.
const SEQ_DIGITS: usize = 20;
/// Length of the fixed part of an encoded entry.
const ENTRY_HEADER_LEN: usize = 4 + 8 + 8 + 32 + 32;
/// Length of an encoded head.
const HEAD_LEN: usize = 4 + 8 + 32;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The key an entry of `log` with sequence number `seq` is stored under.
pub fn entry_key(log: &str, seq: u64) -> String {
    format!("{log}{seq:0width$}", width = SEQ_DIGITS)
}

/// The key the head of `log` is stored under. It sorts after every entry key.
pub fn head_key(log: &str) -> String {
    format!("{log}{HEAD_SUFFIX}")
}

/// One entry of a hash-chained log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEntry {
    /// Position in the log, starting at 1.
    pub seq: u64,
    /// Store revision of the transaction that appended the entry. The SQLite backend knows
    /// it when it builds the entry; the etcd backend records the first revision the
    /// transaction could commit at (equal to the commit revision unless another write
    /// landed between its read of the head and its commit; always above the previous
    /// entry's commit revision, see [`crate::etcd`]).
    pub revision: Revision,
    /// Hash of the previous entry (zeros for the first).
    pub prev_hash: Hash,
    /// Hash of this entry, see [`ChainEntry::compute_hash`].
    pub hash: Hash,
    pub payload: Vec<u8>,
}

/// Why bytes could not be decoded as a [`ChainEntry`] or [`ChainHead`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("value is {len} bytes, shorter than the {min} bytes of the fixed header")]
    TooShort { len: usize, min: usize },
    #[error("value does not start with the magic bytes {expected:?}")]
    BadMagic { expected: &'static str },
    #[error("head value is {len} bytes, expected exactly {expected}")]
    BadLength { len: usize, expected: usize },
}

impl ChainEntry {
    /// Builds entry `seq` of a log, computing its hash.
    pub fn new(seq: u64, revision: Revision, prev_hash: Hash, payload: Vec<u8>) -> Self {
        let hash = hash_entry(seq, revision, &prev_hash, &payload);
        Self {
            seq,
            revision,
            prev_hash,
            hash,
            payload,
        }
    }

    /// Recomputes the hash from the entry's fields (ignoring the stored `hash`).
    pub fn compute_hash(&self) -> Hash {
        hash_entry(self.seq, self.revision, &self.prev_hash, &self.payload)
    }

    /// Encodes as `"MCE1" || seq BE || revision BE || prev_hash || hash || payload`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + self.payload.len());
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes what [`ChainEntry::encode`] wrote. Does not check the hash.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < ENTRY_HEADER_LEN {
            return Err(DecodeError::TooShort {
                len: bytes.len(),
                min: ENTRY_HEADER_LEN,
            });
        }
        if &bytes[..4] != ENTRY_MAGIC {
            return Err(DecodeError::BadMagic { expected: "MCE1" });
        }
        Ok(Self {
            seq: u64::from_be_bytes(array(&bytes[4..12])),
            revision: i64::from_be_bytes(array(&bytes[12..20])),
            prev_hash: array(&bytes[20..52]),
            hash: array(&bytes[52..84]),
            payload: bytes[ENTRY_HEADER_LEN..].to_vec(),
        })
    }
}

/// The head of a log: the seq and hash of its last entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// Seq of the last entry (0: empty log).
    pub seq: u64,
    /// Hash of the last entry (zeros: empty log).
    pub hash: Hash,
}

impl ChainHead {
    /// Encodes as `"MCH1" || seq BE || hash`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(HEAD_MAGIC);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out
    }

    /// Decodes what [`ChainHead::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != HEAD_LEN {
            return Err(DecodeError::BadLength {
                len: bytes.len(),
                expected: HEAD_LEN,
            });
        }
        if &bytes[..4] != HEAD_MAGIC {
            return Err(DecodeError::BadMagic { expected: "MCH1" });
        }
        Ok(Self {
            seq: u64::from_be_bytes(array(&bytes[4..12])),
            hash: array(&bytes[12..44]),
        })
    }
}

fn hash_entry(seq: u64, revision: Revision, prev_hash: &Hash, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(revision.to_be_bytes());
    h.update(prev_hash);
    h.update(payload);
    h.finalize().into()
}

/// Copies a slice whose length the caller has checked into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// What a successful verification saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// Number of entries (equal to the seq of the last one).
    pub entries: u64,
    /// The head: seq and hash of the last entry.
    pub head: ChainHead,
    /// Revision of the first entry (0 for an empty log).
    pub first_revision: Revision,
    /// Revision of the last entry (0 for an empty log).
    pub last_revision: Revision,
}

/// The first place a chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ChainBreak {
    /// The key where the break was found (an entry key or the head key).
    pub key: String,
    /// Seq of the entry (from its key), `None` for the head or a stray key.
    pub seq: Option<u64>,
    pub reason: BreakReason,
}

impl ChainBreak {
    fn describe(&self) -> String {
        match self.seq {
            Some(seq) => format!("entry {seq} (key {}): {}", self.key, self.reason),
            None if self.key.ends_with(HEAD_SUFFIX) => {
                format!("head (key {}): {}", self.key, self.reason)
            }
            None => format!("key {}: {}", self.key, self.reason),
        }
    }
}

/// How a chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BreakReason {
    #[error("hash mismatch: the entry was altered")]
    Altered,
    #[error("the entry was overwritten after it was appended (version {version}, expected 1)")]
    Overwritten { version: i64 },
    #[error("prev_hash does not match the hash of entry {prev_seq}: entry {prev_seq} was replaced")]
    LinkMismatch { prev_seq: u64 },
    #[error("entries {first}..={last} are missing: removed from the log")]
    Removed { first: u64, last: u64 },
    #[error("the key holds entry {found}: entries were reordered")]
    Reordered { found: u64 },
    #[error(
        "revision {revision} is older than revision {prev_revision} of the previous entry: entries were reordered"
    )]
    RevisionOrder {
        revision: Revision,
        prev_revision: Revision,
    },
    #[error("undecodable: {0}")]
    Undecodable(DecodeError),
    #[error("the head key is missing but the log has {entries} entries: the head was removed")]
    HeadMissing { entries: u64 },
    #[error("head says {head_seq} entries but only {found} exist: the tail was truncated")]
    Truncated { head_seq: u64, found: u64 },
    #[error("head says {head_seq} entries but {found} exist: entries were added behind the head")]
    HeadBehind { head_seq: u64, found: u64 },
    #[error("head hash does not match the hash of the last entry: the tail was replaced")]
    HeadHashMismatch,
    #[error("unexpected key under the log prefix")]
    UnexpectedKey,
}

/// Incremental verifier: feed the log's keys in key order with [`Verifier::push`] (pages of a
/// range read are fine), then call [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    log: String,
    expected_seq: u64,
    prev_hash: Hash,
    prev_revision: Revision,
    first_revision: Revision,
    head: Option<(String, Vec<u8>)>,
}

impl Verifier {
    /// A verifier for the log under prefix `log`.
    pub fn new(log: &str) -> Self {
        Self {
            log: log.to_owned(),
            expected_seq: 1,
            prev_hash: [0; 32],
            prev_revision: 0,
            first_revision: 0,
            head: None,
        }
    }

    /// Checks the next key of the log.
    pub fn push(&mut self, kv: &KeyValue) -> Result<(), ChainBreak> {
        let Some(suffix) = kv.key.strip_prefix(self.log.as_str()) else {
            return Err(self.stray(kv));
        };
        if suffix == HEAD_SUFFIX {
            self.head = Some((kv.key.clone(), kv.value.clone()));
            return Ok(());
        }
        if self.head.is_some() {
            // Nothing may sort after the head.
            return Err(self.stray(kv));
        }
        let Some(key_seq) = parse_seq(suffix) else {
            return Err(self.stray(kv));
        };
        let brk = |reason| ChainBreak {
            key: kv.key.clone(),
            seq: Some(key_seq),
            reason,
        };
        if key_seq < self.expected_seq {
            // Keys were not given in key order.
            return Err(brk(BreakReason::Reordered { found: key_seq }));
        }
        let entry = ChainEntry::decode(&kv.value).map_err(|e| brk(BreakReason::Undecodable(e)))?;
        if entry.seq != key_seq {
            return Err(brk(BreakReason::Reordered { found: entry.seq }));
        }
        if key_seq > self.expected_seq {
            return Err(brk(BreakReason::Removed {
                first: self.expected_seq,
                last: key_seq - 1,
            }));
        }
        if entry.compute_hash() != entry.hash {
            return Err(brk(BreakReason::Altered));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(brk(BreakReason::LinkMismatch {
                prev_seq: key_seq - 1,
            }));
        }
        if entry.revision < self.prev_revision {
            return Err(brk(BreakReason::RevisionOrder {
                revision: entry.revision,
                prev_revision: self.prev_revision,
            }));
        }
        if kv.version != 1 {
            return Err(brk(BreakReason::Overwritten {
                version: kv.version,
            }));
        }
        if key_seq == 1 {
            self.first_revision = entry.revision;
        }
        self.prev_hash = entry.hash;
        self.prev_revision = entry.revision;
        self.expected_seq = key_seq + 1;
        Ok(())
    }

    /// Checks the head against the last entry and summarizes.
    pub fn finish(self) -> Result<ChainSummary, ChainBreak> {
        let found = self.expected_seq - 1;
        let last = ChainHead {
            seq: found,
            hash: self.prev_hash,
        };
        let summary = ChainSummary {
            entries: found,
            head: last,
            first_revision: self.first_revision,
            last_revision: self.prev_revision,
        };
        let Some((key, value)) = self.head else {
            if found == 0 {
                return Ok(summary);
            }
            return Err(ChainBreak {
                key: head_key(&self.log),
                seq: None,
                reason: BreakReason::HeadMissing { entries: found },
            });
        };
        let brk = |reason| ChainBreak {
            key: key.clone(),
            seq: None,
            reason,
        };
        let head = ChainHead::decode(&value).map_err(|e| brk(BreakReason::Undecodable(e)))?;
        if head.seq > found {
            return Err(brk(BreakReason::Truncated {
                head_seq: head.seq,
                found,
            }));
        }
        if head.seq < found {
            return Err(brk(BreakReason::HeadBehind {
                head_seq: head.seq,
                found,
            }));
        }
        if head.hash != last.hash {
            return Err(brk(BreakReason::HeadHashMismatch));
        }
        Ok(summary)
    }

    fn stray(&self, kv: &KeyValue) -> ChainBreak {
        ChainBreak {
            key: kv.key.clone(),
            seq: None,
            reason: BreakReason::UnexpectedKey,
        }
    }
}

fn parse_seq(suffix: &str) -> Option<u64> {
    if suffix.len() != SEQ_DIGITS || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    suffix.parse().ok()
}

/// Verifies the whole log under prefix `log`, given every key under that prefix in key
/// order (as a range read returns them). Reports the first break.
pub fn verify(log: &str, kvs: &[KeyValue]) -> Result<ChainSummary, ChainBreak> {
    let mut verifier = Verifier::new(log);
    for kv in kvs {
        verifier.push(kv)?;
    }
    verifier.finish()
}

/// Error of [`verify_store`]: the store failed, or the chain is broken.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("chain broken at {0}")]
    Break(#[from] ChainBreak),
}

/// Number of keys [`verify_store`] reads per page.
const VERIFY_PAGE: usize = 1000;

/// Reads the log under prefix `log` from `store` page by page and verifies it.
pub async fn verify_store(store: &dyn Store, log: &str) -> Result<ChainSummary, VerifyError> {
    let mut verifier = Verifier::new(log);
    let mut start_after = None;
    loop {
        let page = store
            .range(RangeRequest {
                prefix: log.to_owned(),
                start_after: start_after.take(),
                limit: VERIFY_PAGE,
                count_only: false,
            })
            .await?;
        for kv in &page.kvs {
            verifier.push(kv)?;
        }
        if !page.more {
            break;
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
        if start_after.is_none() {
            break;
        }
    }
    Ok(verifier.finish()?)
}

impl fmt::Display for ChainSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries, revisions {}..={}, head {}",
            self.entries,
            self.first_revision,
            self.last_revision,
            hex::encode(self.head.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "/meridian/audit/";

    /// Builds a valid log of `n` entries (one per revision, starting at revision 10) with
    /// its head, as the key-values a range read returns.
    fn build(n: u64) -> Vec<KeyValue> {
        let mut kvs = Vec::new();
        let mut prev = [0u8; 32];
        for seq in 1..=n {
            let revision = 9 + seq as i64;
            let entry = ChainEntry::new(seq, revision, prev, format!("event {seq}").into_bytes());
            prev = entry.hash;
            kvs.push(kv(&entry_key(LOG, seq), entry.encode(), revision));
        }
        let head = ChainHead { seq: n, hash: prev };
        kvs.push(kv(&head_key(LOG), head.encode(), 9 + n as i64));
        kvs
    }

    fn kv(key: &str, value: Vec<u8>, revision: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: None,
        }
    }

    fn entry_at(kvs: &[KeyValue], seq: u64) -> ChainEntry {
        ChainEntry::decode(&kvs[seq as usize - 1].value).unwrap()
    }

    fn set_entry(kvs: &mut [KeyValue], seq: u64, entry: &ChainEntry) {
        kvs[seq as usize - 1].value = entry.encode();
    }

    #[test]
    fn keys_sort_entries_before_head() {
        assert_eq!(entry_key(LOG, 42), "/meridian/audit/00000000000000000042");
        assert!(entry_key(LOG, u64::MAX) < head_key(LOG));
    }

    #[test]
    fn encode_decode_round_trip() {
        let entry = ChainEntry::new(7, 99, [3; 32], b"payload".to_vec());
        assert_eq!(ChainEntry::decode(&entry.encode()).unwrap(), entry);
        let head = ChainHead {
            seq: 7,
            hash: entry.hash,
        };
        assert_eq!(ChainHead::decode(&head.encode()).unwrap(), head);
        assert!(matches!(
            ChainEntry::decode(b"short"),
            Err(DecodeError::TooShort { .. })
        ));
        assert!(matches!(
            ChainHead::decode(&entry.encode()),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn hash_covers_every_field() {
        let base = ChainEntry::new(1, 1, [0; 32], b"x".to_vec());
        let variants = [
            ChainEntry::new(2, 1, [0; 32], b"x".to_vec()),
            ChainEntry::new(1, 2, [0; 32], b"x".to_vec()),
            ChainEntry::new(1, 1, [1; 32], b"x".to_vec()),
            ChainEntry::new(1, 1, [0; 32], b"y".to_vec()),
        ];
        for v in variants {
            assert_ne!(v.hash, base.hash);
        }
    }

    #[test]
    fn valid_chain_verifies() {
        let kvs = build(50);
        let summary = verify(LOG, &kvs).unwrap();
        assert_eq!(summary.entries, 50);
        assert_eq!(summary.first_revision, 10);
        assert_eq!(summary.last_revision, 59);
        assert_eq!(summary.head.hash, entry_at(&kvs, 50).hash);
    }

    #[test]
    fn empty_log_verifies() {
        assert_eq!(verify(LOG, &[]).unwrap().entries, 0);
    }

    #[test]
    fn altered_payload_is_a_hash_mismatch() {
        let mut kvs = build(50);
        let mut e = entry_at(&kvs, 42);
        e.payload = b"forged".to_vec();
        set_entry(&mut kvs, 42, &e);
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.reason, BreakReason::Altered);
        assert_eq!(
            brk.to_string(),
            "entry 42 (key /meridian/audit/00000000000000000042): hash mismatch: the entry was altered"
        );
    }

    #[test]
    fn altered_and_rehashed_entry_breaks_the_next_link() {
        let mut kvs = build(50);
        let e = entry_at(&kvs, 42);
        let forged = ChainEntry::new(42, e.revision, e.prev_hash, b"forged".to_vec());
        set_entry(&mut kvs, 42, &forged);
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(43));
        assert_eq!(brk.reason, BreakReason::LinkMismatch { prev_seq: 42 });
    }

    #[test]
    fn rewritten_key_is_detected_by_its_version() {
        let mut kvs = build(5);
        kvs[2].version = 2;
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(3));
        assert_eq!(brk.reason, BreakReason::Overwritten { version: 2 });
    }

    #[test]
    fn removed_entry_is_a_gap() {
        let mut kvs = build(50);
        kvs.remove(41); // entry 42
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(43));
        assert_eq!(
            brk.reason,
            BreakReason::Removed {
                first: 42,
                last: 42
            }
        );
        assert!(brk.to_string().contains("entries 42..=42 are missing"));
    }

    #[test]
    fn removed_first_entry_is_a_gap() {
        let mut kvs = build(3);
        kvs.remove(0);
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.reason, BreakReason::Removed { first: 1, last: 1 });
    }

    #[test]
    fn swapped_entries_are_reordered() {
        let mut kvs = build(10);
        let (a, b) = (kvs[3].value.clone(), kvs[4].value.clone());
        kvs[3].value = b;
        kvs[4].value = a;
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(4));
        assert_eq!(brk.reason, BreakReason::Reordered { found: 5 });
    }

    #[test]
    fn keys_out_of_order_are_reordered() {
        let mut kvs = build(10);
        kvs.swap(3, 4);
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(5));
        assert!(matches!(brk.reason, BreakReason::Removed { .. }));
        let mut kvs = build(10);
        let moved = kvs.remove(2);
        kvs.insert(6, moved);
        let brk = verify(LOG, &kvs).unwrap_err();
        assert!(matches!(brk.reason, BreakReason::Removed { .. }));
    }

    #[test]
    fn rechained_entries_with_older_revision_are_reordered() {
        // A forger who rebuilds the whole chain cannot keep revisions monotonic when moving
        // an entry.
        let mut kvs = build(3);
        let e1 = entry_at(&kvs, 1);
        let e2 = ChainEntry::new(2, 1, e1.hash, b"moved".to_vec());
        set_entry(&mut kvs, 2, &e2);
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(2));
        assert_eq!(
            brk.reason,
            BreakReason::RevisionOrder {
                revision: 1,
                prev_revision: 10
            }
        );
    }

    #[test]
    fn truncated_tail_is_a_head_mismatch() {
        let mut kvs = build(50);
        kvs.remove(49); // entry 50, the head stays
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(
            brk.reason,
            BreakReason::Truncated {
                head_seq: 50,
                found: 49
            }
        );
        assert_eq!(
            brk.to_string(),
            "head (key /meridian/audit/head): head says 50 entries but only 49 exist: the tail was truncated"
        );
    }

    #[test]
    fn replaced_last_entry_is_a_head_hash_mismatch() {
        let mut kvs = build(5);
        let e = entry_at(&kvs, 5);
        let forged = ChainEntry::new(5, e.revision, e.prev_hash, b"forged".to_vec());
        set_entry(&mut kvs, 5, &forged);
        assert_eq!(
            verify(LOG, &kvs).unwrap_err().reason,
            BreakReason::HeadHashMismatch
        );
    }

    #[test]
    fn missing_head_is_detected() {
        let mut kvs = build(5);
        kvs.pop();
        assert_eq!(
            verify(LOG, &kvs).unwrap_err().reason,
            BreakReason::HeadMissing { entries: 5 }
        );
    }

    #[test]
    fn entries_behind_the_head_are_detected() {
        let mut kvs = build(5);
        let head = kvs.pop().unwrap();
        let stale = ChainHead {
            seq: 4,
            hash: entry_at(&kvs, 4).hash,
        };
        kvs.push(KeyValue {
            value: stale.encode(),
            ..head
        });
        assert_eq!(
            verify(LOG, &kvs).unwrap_err().reason,
            BreakReason::HeadBehind {
                head_seq: 4,
                found: 5
            }
        );
    }

    #[test]
    fn undecodable_entry_is_reported() {
        let mut kvs = build(5);
        kvs[1].value = b"garbage".to_vec();
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.seq, Some(2));
        assert!(matches!(brk.reason, BreakReason::Undecodable(_)));
        assert!(brk.to_string().starts_with(
            "entry 2 (key /meridian/audit/00000000000000000002): undecodable: value is 7 bytes"
        ));
    }

    #[test]
    fn stray_key_is_reported() {
        let mut kvs = build(3);
        kvs.insert(1, kv("/meridian/audit/0001x", vec![], 1));
        let brk = verify(LOG, &kvs).unwrap_err();
        assert_eq!(brk.reason, BreakReason::UnexpectedKey);
        assert_eq!(
            brk.to_string(),
            "key /meridian/audit/0001x: unexpected key under the log prefix"
        );
    }
}
