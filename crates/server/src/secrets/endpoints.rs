//! The two Secret endpoints that are not object verbs:
//!
//! - `GET /meridian/v1/namespaces/{ns}/allocations/{name}/secrets`: what an agent fetches
//!   before it starts a task ([`api::secret::AllocationSecrets`]): the values of exactly
//!   the secret keys the allocation's task references (`env[].valueFrom.secretRef`, and
//!   `secrets[]` with its keys, every key when none is listed). Only the node credential
//!   of the allocation's node (`spec.node`) and admins may call it; as
//!   [`crate::node_restriction::check_event`], a node asking about an allocation that is
//!   not on its node, or does not exist, gets 403 and learns nothing. Authorization comes
//!   before any Secret is read or opened. A missing secret or key answers 404 naming the
//!   secret, the key and the project (never a value) so the agent waits with that reason.
//! - `POST /meridian/v1/admin/secrets/rotate-key` (global admins): a new key, then every
//!   Secret re-sealed under it through [`crate::registry::Registry::commit`], in batches
//!   guarded by each secret's revision; the previous keys stay (see [`super::keyring`]).

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use api::kinds::{ALLOCATION, Allocation, SECRET};
use api::secret::{AllocationSecrets, KeyRotation};
use store::{Compare, Op};

use crate::app::AppState;
use crate::auth::{Principal, Role, Verb, authorize, require_global_admin};
use crate::error::{ApiError, ApiResult};
use crate::registry::{Mutation, Registry, decode, encode, kind_prefix, object_key};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/meridian/v1/namespaces/{ns}/allocations/{name}/secrets",
            get(allocation_secrets),
        )
        .route("/meridian/v1/admin/secrets/rotate-key", post(rotate_key))
}

/// What a task references: secret name → keys (`None`: every key of the secret).
pub fn references(task: &api::kinds::Task) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let mut refs: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut add = |name: &str, key: Option<&str>| {
        let entry = refs
            .entry(name.to_owned())
            .or_insert_with(|| Some(BTreeSet::new()));
        match (entry.as_mut(), key) {
            (Some(keys), Some(k)) => {
                keys.insert(k.to_owned());
            }
            (_, None) => *entry = None,
            (None, Some(_)) => {}
        }
    };
    for value in task.env.values() {
        if let Some(r) = value.secret_ref() {
            add(&r.name, Some(&r.key));
        }
    }
    for files in &task.secrets {
        if files.keys.is_empty() {
            add(&files.name, None);
        } else {
            for k in &files.keys {
                add(&files.name, Some(k));
            }
        }
    }
    refs
}

async fn allocation_secrets(
    State(state): State<AppState>,
    who: Principal,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let node_forbidden = || {
        ApiError::forbidden(format!(
            "allocations/secrets is forbidden: node credential {id} of node {node:?} may fetch \
             secrets only for allocations on its node, not for {ns}/{name}",
            id = who.id,
            node = who.node.as_deref().unwrap_or_default(),
        ))
    };
    match who.role {
        Role::Node => {}
        Role::Admin => authorize(&who, Verb::Get, SECRET, Some(&ns), None)?,
        Role::Operator | Role::Viewer => {
            return Err(ApiError::forbidden(format!(
                "allocations/secrets is forbidden: token {id} (role {role}) cannot fetch an \
                 allocation's secrets: only the agent of the allocation's node (and admins) \
                 may; read the Secret itself with `meridian get secret NAME -o yaml`",
                id = who.id,
                role = who.role.as_str(),
            )));
        }
    }
    let (kv, _) = state
        .store()
        .get(&object_key(ALLOCATION, Some(&ns), &name))
        .await?;
    let Some(kv) = kv else {
        return Err(if who.role == Role::Node {
            node_forbidden()
        } else {
            ApiError::not_found(ALLOCATION.plural, &name)
        });
    };
    let value = decode(&kv)?;
    if who.role == Role::Node {
        let on_its_node = value.pointer("/spec/node").and_then(Value::as_str);
        if who.node.is_none() || on_its_node != who.node.as_deref() {
            return Err(node_forbidden());
        }
    }
    let allocation: Allocation = serde_json::from_value(value)
        .map_err(|e| ApiError::internal(format!("allocation {ns}/{name} does not decode: {e}")))?;
    let refs = allocation
        .spec
        .task
        .as_deref()
        .map(references)
        .unwrap_or_default();
    let mut out = AllocationSecrets::default();
    for (secret, keys) in refs {
        let (kv, _) = state
            .store()
            .get(&object_key(SECRET, Some(&ns), &secret))
            .await?;
        let Some(kv) = kv else {
            return Err(missing(
                &secret,
                format!(
                    "secret {secret:?} not found in project {ns:?}: allocation {name:?} references it; \
                     create it (meridian create secret {secret} -n {ns} --from-literal KEY=VALUE)"
                ),
            ));
        };
        let values = super::values(&state.secrets, &decode(&kv)?)?;
        let chosen = match keys {
            None => values,
            Some(keys) => {
                let mut chosen = BTreeMap::new();
                for key in keys {
                    match values.get(&key) {
                        Some(v) => {
                            chosen.insert(key, v.clone());
                        }
                        None => {
                            let has: Vec<&str> = values.keys().map(String::as_str).collect();
                            return Err(missing(
                                &secret,
                                format!(
                                    "secret {secret:?} in project {ns:?} has no key {key:?} \
                                     (allocation {name:?} references it; the secret has {}); \
                                     add the key to the secret or change the workload",
                                    if has.is_empty() {
                                        "no keys".to_owned()
                                    } else {
                                        format!("keys {}", has.join(", "))
                                    }
                                ),
                            ));
                        }
                    }
                }
                chosen
            }
        };
        out.secrets.insert(secret, chosen);
    }
    Ok(axum::Json(out).into_response())
}

fn missing(secret: &str, message: String) -> ApiError {
    let mut e = ApiError::new(StatusCode::NOT_FOUND, "NotFound", message);
    e.kind = Some(SECRET.plural.to_owned());
    e.name = Some(secret.to_owned());
    e
}

/// Secrets re-sealed per transaction.
const BATCH: usize = 64;
/// Passes over every Secret before a rotation reports what is left.
const PASSES: usize = 8;

async fn rotate_key(State(state): State<AppState>, who: Principal) -> ApiResult<Response> {
    require_global_admin(&who, "rotate the secrets key")?;
    let _rotation = state.secrets.rotation.lock().await;
    let key_id = state
        .secrets
        .keyring
        .rotate()
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let mut reencrypted = 0;
    let mut remaining = 0;
    for _ in 0..PASSES {
        let kvs = state
            .store()
            .read_prefix(&kind_prefix(SECRET, None))
            .await?;
        let mut stale = Vec::new();
        for kv in kvs {
            let object = decode(&kv)?;
            if super::sealed_with(&object).as_deref() != Some(key_id.as_str()) {
                stale.push((kv, object));
            }
        }
        remaining = stale.len();
        if stale.is_empty() {
            break;
        }
        // Each secret: a guard, a put and its audit entry; no more than one transaction
        // holds (etcd's --max-txn-ops).
        let per_commit = state.registry.batch_len((0, 0, 0), (1, 1, 1), BATCH);
        for batch in stale.chunks(per_commit) {
            let mut compares = Vec::with_capacity(batch.len());
            let mut ops = Vec::with_capacity(batch.len());
            let mut audits = Vec::with_capacity(batch.len());
            for (kv, object) in batch {
                // One that does not open (its key lost, or altered) is logged, left as it
                // is and counted in `remaining`; the others are re-sealed.
                let Ok(open) = super::open(&state.secrets, object.clone()) else {
                    continue;
                };
                let stored = super::seal(&state.secrets, &open)?.unwrap_or(open);
                let bytes = encode(&stored);
                let ns = registry_ns(object);
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                audits.push(Registry::audit_record(
                    &who,
                    "reencrypt",
                    SECRET,
                    ns.as_deref(),
                    name,
                    Some(&bytes),
                ));
                compares.push(Compare::ModRevision(kv.key.clone(), kv.mod_revision));
                ops.push(Op::put(kv.key.clone(), bytes));
            }
            let mut audits = audits.into_iter();
            let Some(first) = audits.next() else {
                continue;
            };
            let mut mutation = Mutation::new(compares, ops, first);
            mutation.more_audit = audits.collect();
            // A secret written meanwhile fails the batch; the next pass reads it again.
            let count = mutation.ops.len();
            if state.registry.commit(mutation).await?.succeeded {
                reencrypted += count;
            }
        }
    }
    if remaining > 0 {
        // Count what the last pass could not re-seal.
        remaining = 0;
        for kv in state
            .store()
            .read_prefix(&kind_prefix(SECRET, None))
            .await?
        {
            if super::sealed_with(&decode(&kv)?).as_deref() != Some(key_id.as_str()) {
                remaining += 1;
            }
        }
    }
    tracing::info!(key_id = %key_id, reencrypted, remaining, actor = %who.actor(), "secrets key rotated");
    let rotated = KeyRotation {
        key_ids: state.secrets.keyring.ids(),
        key_id,
        reencrypted,
        remaining,
    };
    Ok(axum::Json(rotated).into_response())
}

fn registry_ns(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
}
