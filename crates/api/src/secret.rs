//! The `Secret` kind: named, project-scoped values (passwords, tokens, certificates) that
//! tasks receive as environment variables or files, and that nobody else reads.
//!
//! Clients write `spec.data` (base64, as Kubernetes) or `spec.stringData` (plain text,
//! merged into `data`, as `kubectl` does). The server never stores either: it keeps the
//! values encrypted with an AEAD under a key in its data directory ([`Sealed`]), the key
//! names in clear (`spec.keys`, what a viewer may see), and answers `data` only to callers
//! allowed to read values. `sealed` and `keys` are the server's: a client that sends them
//! is refused.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{KindInfo, Object, SECRET, Spec};

/// Most keys in one secret.
pub const MAX_KEYS: usize = 64;
/// Most bytes of all values of one secret together (as Kubernetes' 1 MiB).
pub const MAX_BYTES: usize = 1024 * 1024;

/// A secret's desired content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Free-form type (`Opaque` when absent), as Kubernetes' `type`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Values by key, base64-encoded. Answered only to callers that may read values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values by key in plain text, for writing: merged into `data` (winning over it) and
    /// never stored or answered as such.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// The key names, sorted (server-maintained; what a viewer sees).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// The values at rest (server-maintained, never answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

/// Values encrypted at rest: the JSON map of key → base64 value, sealed with an AEAD
/// (AES-256-GCM) under the server key `keyId`, the object's project and name as associated
/// data (a sealed value moved to another secret does not open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sealed {
    /// Which key sealed it (the first 16 hex digits of the key's SHA-256).
    pub key_id: String,
    /// The nonce, base64.
    pub nonce: String,
    /// Ciphertext and tag, base64.
    pub ciphertext: String,
}

/// A secret has no observed state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretStatus {}

impl Spec for SecretSpec {
    const KIND_INFO: &'static KindInfo = SECRET;
}

/// A `Secret` object.
pub type Secret = Object<SecretSpec, SecretStatus>;

/// What an agent receives for one allocation on its node
/// (`GET /meridian/v1/namespaces/{ns}/allocations/{name}/secrets`): the values of the
/// secret keys its task references (`env[].valueFrom.secretRef` and `secrets[]`), base64,
/// by secret and key. Nothing else: a secret the task does not name is not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocationSecrets {
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// What a key rotation answers (`POST /meridian/v1/admin/secrets/rotate-key`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRotation {
    /// The new current key's id.
    pub key_id: String,
    /// Every key the server holds, sorted (older ones open history and backups).
    pub key_ids: Vec<String>,
    /// Secrets re-sealed under the new key.
    pub reencrypted: usize,
    /// Secrets still under an older key: written during the rotation every pass (run it
    /// again), or that do not open (the server log names them).
    pub remaining: usize,
}
