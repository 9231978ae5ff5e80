//! Secrets: values sealed at rest, answered only to the callers who may read them.
//!
//! A Secret has three forms, all `api::secret::SecretSpec`s:
//!
//! - **open** (`spec.data`, base64, no `keys`, no `sealed`): what a writer sends once
//!   `stringData` is merged ([`normalize`]), what patches apply to, and what a caller who
//!   may read values gets (admins, and operators of the secret's project);
//! - **stored** (`spec.keys`, `spec.sealed`, no `data`): what the store holds ([`seal`]),
//!   so the database, its history, the audit digest and backups never hold a value;
//! - **keys only** (`spec.keys`, no `data`, no `sealed`): what viewers, admission policies,
//!   denial events and anyone else get ([`redact`]).
//!
//! `sealed` is never answered over the API. The write path ([`crate::objects`]) opens the
//! stored object before a patch and seals the result just before it encodes it, so every
//! write verb (POST, PUT, merge and JSON patches, server-side apply) goes through [`seal`].
//! The read paths (get, list, watch, tables, delete's answer) go through [`present`].
//! Node credentials never read Secret objects; their agent fetches the values of its
//! allocations' references through [`endpoints`].

pub mod endpoints;
pub mod keyring;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use api::kinds::SECRET;
use api::secret::SecretSpec;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
pub use keyring::Keyring;

/// The annotation in which `kubectl apply` (client-side) keeps the whole manifest it
/// applied: for a Secret that would be its values in clear, so the server drops it.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The keyring and what serializes rotations.
pub struct Secrets {
    pub keyring: Keyring,
    /// Held by a rotation from its new key to its last re-seal.
    pub(crate) rotation: tokio::sync::Mutex<()>,
}

impl Secrets {
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring,
            rotation: tokio::sync::Mutex::new(()),
        }
    }
}

/// Whether `object` is a Secret.
pub fn is_secret(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some(SECRET.kind)
}

/// Whether `who` may read the values of Secrets it can see (authorization of the project
/// is [`crate::auth::authorize`]'s): admins and operators; viewers and nodes never.
pub fn may_read_values(who: &Principal) -> bool {
    matches!(who.role, Role::Admin | Role::Operator)
}

/// `project/name`: the associated data a Secret's values are sealed with.
fn aad(object: &Value) -> String {
    let meta = object.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    format!("{}/{}", field("namespace"), field("name"))
}

fn name_of(object: &Value) -> String {
    aad(object)
}

/// The spec of a Secret. A stored one that does not decode is an internal error whose
/// message names the object only (serde's message could quote a value).
fn spec_of(object: &Value) -> ApiResult<SecretSpec> {
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    if spec.is_null() {
        return Ok(SecretSpec::default());
    }
    serde_json::from_value(spec).map_err(|_| {
        ApiError::internal(format!(
            "secret {} has a spec that does not decode",
            name_of(object)
        ))
    })
}

fn set_spec(object: &mut Value, spec: &SecretSpec) {
    object["spec"] = serde_json::to_value(spec).expect("a SecretSpec serializes");
}

/// A validated Secret as written, in its open form: `stringData` merged into `data`
/// (winning over it, as Kubernetes), `keys` and `sealed` gone, and kubectl's
/// last-applied annotation dropped. Other kinds are left alone.
pub fn normalize(object: &mut Value) -> ApiResult<()> {
    if !is_secret(object) {
        return Ok(());
    }
    let mut spec = spec_of(object)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    for (k, v) in std::mem::take(&mut spec.string_data) {
        spec.data.insert(k, b64.encode(v));
    }
    spec.keys.clear();
    spec.sealed = None;
    set_spec(object, &spec);
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    Ok(())
}

/// The stored form of an open Secret: values sealed under the current key with the
/// object's `project/name`, key names in clear. `None` for other kinds (stored as they are).
pub fn seal(secrets: &Secrets, object: &Value) -> ApiResult<Option<Value>> {
    if !is_secret(object) {
        return Ok(None);
    }
    let mut spec = spec_of(object)?;
    let mut data = std::mem::take(&mut spec.data);
    let b64 = base64::engine::general_purpose::STANDARD;
    for (k, v) in std::mem::take(&mut spec.string_data) {
        data.insert(k, b64.encode(v));
    }
    spec.keys = data.keys().cloned().collect();
    spec.sealed = Some(
        secrets
            .keyring
            .seal(&aad(object), &data)
            .map_err(ApiError::internal)?,
    );
    let mut stored = object.clone();
    set_spec(&mut stored, &spec);
    Ok(Some(stored))
}

/// The id of the key a stored Secret is sealed with (`None`: not sealed, or not a spec).
pub fn sealed_with(object: &Value) -> Option<String> {
    spec_of(object).ok()?.sealed.map(|s| s.key_id)
}

/// The values of a stored Secret, by key (base64).
pub fn values(secrets: &Secrets, object: &Value) -> ApiResult<BTreeMap<String, String>> {
    values_of(secrets, object, spec_of(object)?)
}

fn values_of(
    secrets: &Secrets,
    object: &Value,
    spec: SecretSpec,
) -> ApiResult<BTreeMap<String, String>> {
    match &spec.sealed {
        Some(sealed) => secrets
            .keyring
            .open(&aad(object), sealed)
            .map_err(|e| ApiError::internal(format!("secret {}: {e}", name_of(object)))),
        None => Ok(spec.data),
    }
}

/// The open form of a stored object (other kinds unchanged): what patches apply to and
/// what value readers get.
pub fn open(secrets: &Secrets, mut object: Value) -> ApiResult<Value> {
    if !is_secret(&object) {
        return Ok(object);
    }
    let mut spec = spec_of(&object)?;
    spec.data = values_of(secrets, &object, spec.clone())?;
    spec.string_data.clear();
    spec.keys.clear();
    spec.sealed = None;
    set_spec(&mut object, &spec);
    Ok(object)
}

/// The keys-only form of a Secret in any form (other kinds unchanged): type and key
/// names, no value, nothing sealed.
pub fn redact(object: &mut Value) {
    if !is_secret(object) {
        return;
    }
    let keys = match spec_of(object) {
        Ok(spec) => api::validate::secret_keys(&spec),
        Err(_) => Vec::new(),
    };
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        for field in ["data", "stringData", "sealed", "keys"] {
            spec.remove(field);
        }
        if !keys.is_empty() {
            spec.insert("keys".into(), serde_json::json!(keys));
        }
    }
}

/// A copy of `object` in its keys-only form when it is a Secret (for admission, which
/// judges declarations, not values); `None` for other kinds.
pub fn redacted(object: &Value) -> Option<Value> {
    is_secret(object).then(|| {
        let mut copy = object.clone();
        redact(&mut copy);
        copy
    })
}

/// What `who` gets of a stored object it may see: a Secret open for admins and
/// operators, keys only for everyone else; other kinds as they are.
pub fn present(secrets: &Secrets, who: &Principal, object: &mut Value) -> ApiResult<()> {
    if !is_secret(object) {
        return Ok(());
    }
    if may_read_values(who) {
        *object = open(secrets, std::mem::take(object))?;
    } else {
        redact(object);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secrets() -> (tempfile::TempDir, Secrets) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load_or_create(dir.path()).expect("keyring");
        (dir, Secrets::new(ring))
    }

    fn who(role: Role) -> Principal {
        Principal {
            id: "t".into(),
            role,
            project: None,
            node: None,
            site: None,
        }
    }

    #[test]
    fn sealed_at_rest_open_for_operators_keys_for_viewers() {
        let (_dir, s) = secrets();
        let mut written = json!({
            "apiVersion": "meridian.dev/v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "finance",
                         "annotations": {LAST_APPLIED: "{\"stringData\":{\"password\":\"hunter2\"}}"}},
            "spec": {"data": {"user": "YWRtaW4="}, "stringData": {"password": "hunter2"}}
        });
        normalize(&mut written).expect("normalize");
        assert_eq!(written["spec"]["data"]["password"], "aHVudGVyMg==");
        assert!(written["metadata"].get("annotations").is_none());
        let stored = seal(&s, &written).expect("seal").expect("a secret");
        let text = stored.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
            "{text}"
        );
        assert!(!text.contains("YWRtaW4"), "{text}");
        assert_eq!(stored["spec"]["keys"], json!(["password", "user"]));

        let mut as_operator = stored.clone();
        present(&s, &who(Role::Operator), &mut as_operator).expect("present");
        assert_eq!(
            as_operator["spec"],
            json!({"data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}})
        );

        let mut as_viewer = stored.clone();
        present(&s, &who(Role::Viewer), &mut as_viewer).expect("present");
        assert_eq!(as_viewer["spec"], json!({"keys": ["password", "user"]}));

        // Moved to another name, it does not open.
        let mut moved = stored;
        moved["metadata"]["name"] = json!("other");
        assert!(open(&s, moved).is_err());
    }
}
