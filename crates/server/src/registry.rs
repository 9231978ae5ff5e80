//! How objects live in the store: key layout, encoding, and the audited write path.
//!
//! Keys: `/registry/{plural}/{name}` for global kinds and
//! `/registry/{plural}/{project}/{name}` for project-scoped kinds. Values are the object's
//! JSON without `metadata.resourceVersion`, which is the key's `mod_revision` and is filled in
//! on every read. Every write goes through [`Registry::commit`], which appends the audit
//! entry in the same transaction as the change, so the audit chain has exactly the committed
//! mutations, in commit order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use api::KindInfo;
use store::{Compare, KeyValue, Op, Revision, Store, Txn, TxnResponse};

use crate::auth::Principal;
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The audited write path to the store.
#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Store>,
    metrics: Metrics,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, metrics: Metrics) -> Self {
        Self { store, metrics }
    }

    /// Commit a mutation with its audit entry. On a failed guard, returns the response
    /// with `succeeded == false` and the failure branch reading every compared key.
    pub async fn commit(&self, mutation: Mutation) -> Result<TxnResponse, ApiError> {
        let Mutation {
            compares,
            mut ops,
            audit,
            more_audit,
        } = mutation;
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
        let started = std::time::Instant::now();
        let response = self
            .store
            .txn(Txn {
                compares,
                success: ops,
                failure,
            })
            .await?;
        self.metrics.observe_commit(started.elapsed());
        Ok(response)
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
        }
    }
}
