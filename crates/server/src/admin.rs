//! Meridian-specific endpoints under `/meridian/v1`: tokens and the audit log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use store::{Compare, Op, OpResult, RangeRequest};

use crate::app::AppState;
use crate::auth::{
    Principal, Role, TOKEN_PREFIX, TokenRecord, generate_token, generate_token_id, hash_token,
    require_global_admin,
};
use crate::error::{ApiError, ApiResult};
use crate::registry::{AUDIT_LOG, AuditRecord, Mutation, Registry, now_rfc3339, object_key};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/meridian/v1/tokens", get(list_tokens).post(create_token))
        .route("/meridian/v1/tokens/{id}", delete(revoke_token))
        .route("/meridian/v1/audit", get(audit_log))
        .route("/meridian/v1/audit/verify", get(audit_verify))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    pub role: Role,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Set by the join exchange only (role `node`).
    #[serde(skip)]
    pub node: Option<String>,
    /// Set by the join exchange only: the join token's site.
    #[serde(skip)]
    pub site: Option<String>,
}

async fn create_token(
    State(state): State<AppState>,
    who: Principal,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require_global_admin(&who, "create tokens")?;
    let req: TokenRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "token request is not valid: {e} (expected {{\"role\": \"admin|operator|viewer\", \"project\": \"…\"}})"
        ))
    })?;
    if req.role == Role::Node {
        return Err(ApiError::bad_request(
            "node credentials are issued to agents through join tokens: run `meridian node join-token create` and start `meridian agent --join-token`",
        ));
    }
    let (token, record) = issue_token(&state, &who, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "id": record.id,
            "role": record.role,
            "project": record.project,
            "created": record.created,
        })),
    )
        .into_response())
}

/// A new token for `req`: `((clear token, digest, record), ops that store it, audit)`.
/// The caller commits the ops (with its own compares) and then adds the record to the
/// token cache.
pub fn issue_token_ops(
    who: &Principal,
    req: TokenRequest,
) -> ((String, String, TokenRecord), Vec<Op>, AuditRecord) {
    let token = generate_token();
    let digest = hash_token(&token);
    let record = TokenRecord {
        id: generate_token_id(),
        role: req.role,
        project: req.project.clone(),
        node: req.node.clone(),
        site: req.site.clone(),
        description: req.description,
        created: now_rfc3339(),
        created_by: who.actor(),
    };
    let key = format!("{TOKEN_PREFIX}{digest}");
    let audit = AuditRecord {
        time: now_rfc3339(),
        actor: who.actor(),
        verb: "create".into(),
        kind: "Token".into(),
        namespace: None,
        name: record.id.clone(),
        digest: None,
        ..AuditRecord::default()
    };
    let value = serde_json::to_vec(&record).expect("token record serializes");
    ((token, digest, record), vec![Op::put(key, value)], audit)
}

/// Create and store a token; returns the clear token (shown once) and its record.
pub async fn issue_token(
    state: &AppState,
    who: &Principal,
    req: TokenRequest,
) -> ApiResult<(String, TokenRecord)> {
    let project = req.project.clone();
    let ((token, digest, record), ops, audit) = issue_token_ops(who, req);
    let key = format!("{TOKEN_PREFIX}{digest}");
    let mut compares = vec![Compare::Absent(key)];
    if let Some(p) = &project {
        let project = api::kinds::PROJECT;
        compares.push(Compare::Exists(object_key(project, None, p)));
    }
    let resp = state
        .registry
        .commit(Mutation::new(compares, ops, audit))
        .await?;
    if !resp.succeeded {
        return Err(match resp.results.get(1) {
            Some(OpResult::Get(None)) => {
                ApiError::not_found("projects", project.as_deref().unwrap_or_default())
            }
            _ => ApiError::internal("token digest collision"),
        });
    }
    state.tokens.insert(digest, record.clone());
    Ok((token, record))
}

/// Every token record with its key.
async fn all_tokens(state: &AppState) -> ApiResult<Vec<(String, TokenRecord)>> {
    let (records, _) = state.store().tokens().await?;
    Ok(records
        .into_iter()
        .map(|(digest, r)| (format!("{TOKEN_PREFIX}{digest}"), r))
        .collect())
}

async fn list_tokens(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    require_global_admin(&who, "list tokens")?;
    let items: Vec<TokenRecord> = all_tokens(&state)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn revoke_token(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_global_admin(&who, "revoke tokens")?;
    let tokens = all_tokens(&state).await?;
    let (key, record) = tokens
        .into_iter()
        .find(|(_, r)| r.id == id)
        .ok_or_else(|| ApiError::not_found("tokens", &id))?;
    let audit = AuditRecord {
        time: now_rfc3339(),
        actor: who.actor(),
        verb: "delete".into(),
        kind: "Token".into(),
        namespace: None,
        name: id.clone(),
        digest: None,
        ..AuditRecord::default()
    };
    let mut ops = vec![Op::Delete(key.clone())];
    if let Some(node) = &record.node {
        // The node's name is free to join again (only if this credential still holds it).
        let name_key = format!("{}{node}", crate::nodes::NODE_NAME_PREFIX);
        if let (Some(kv), _) = state.store().get(&name_key).await?
            && kv.value == record.id.as_bytes()
        {
            ops.push(Op::Delete(name_key));
        }
    }
    state
        .registry
        .commit(Mutation::new(
            vec![Compare::Exists(key.clone())],
            ops,
            audit,
        ))
        .await?;
    if let Some(digest) = key.strip_prefix(TOKEN_PREFIX) {
        state.tokens.remove(digest);
    }
    Ok(Json(json!({ "revoked": record.id })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    /// RFC 3339 time: only entries at or after it.
    since: Option<String>,
    /// Only entries with a sequence number greater than this.
    after: Option<u64>,
    limit: Option<usize>,
}

/// One audit entry as the API shows it.
pub fn entry_json(entry: &store::chain::ChainEntry) -> Value {
    let record: Value = serde_json::from_slice::<AuditRecord>(&entry.payload)
        .ok()
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or_else(|| json!({"undecodable": true}));
    let mut out = json!({
        "seq": entry.seq,
        "revision": entry.revision,
        "hash": hex::encode(entry.hash),
    });
    if let (Some(o), Some(r)) = (out.as_object_mut(), record.as_object()) {
        o.extend(r.clone());
    }
    out
}

async fn audit_log(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    require_estate_reader(&who, "read")?;
    let since = match q.since.as_deref() {
        Some(s) => Some(s.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::bad_request(format!(
                "since {s:?} is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z): {e}"
            ))
        })?),
        None => None,
    };
    let limit = q
        .limit
        .unwrap_or(state.limits.max_page)
        .min(state.limits.max_page);
    let mut items = Vec::new();
    let mut start_after = q.after.map(|seq| format!("{AUDIT_LOG}{seq:020}"));
    'pages: loop {
        let page = state
            .store()
            .range(RangeRequest {
                prefix: AUDIT_LOG.into(),
                start_after: start_after.clone(),
                limit: 1_000,
                count_only: false,
            })
            .await?;
        for kv in &page.kvs {
            start_after = Some(kv.key.clone());
            let Ok(entry) = store::chain::ChainEntry::decode(&kv.value) else {
                continue;
            };
            let value = entry_json(&entry);
            if let Some(since) = since {
                let at = value
                    .get("time")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                if at.is_some_and(|t| t < since) {
                    continue;
                }
            }
            items.push(value);
            if items.len() >= limit {
                break 'pages;
            }
        }
        if !page.more {
            break;
        }
    }
    Ok(Json(json!({ "items": items })))
}

/// The audit log names every project's objects and actors: it is for unscoped users
/// (admin, operator, viewer), never a project-scoped token or a node credential.
fn require_estate_reader(who: &Principal, verb: &str) -> ApiResult<()> {
    let why = if who.role == Role::Node {
        "is a node credential"
    } else if who.project.is_some() {
        "is scoped to a project"
    } else {
        return Ok(());
    };
    Err(ApiError::forbidden(format!(
        "token {} {why} and cannot {verb} the estate's audit log: it needs a token without \
         project scope (meridian token create --role viewer)",
        who.id
    )))
}

async fn audit_verify(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    require_estate_reader(&who, "verify")?;
    Ok(Json(crate::audit::verify(state.store()).await?))
}

/// Used by the server's start-up: a token record that exists or not.
pub async fn any_token(state: &AppState) -> ApiResult<bool> {
    Ok(state.store().count(TOKEN_PREFIX).await? > 0)
}

/// Write a token record directly (bootstrap of the first admin token).
pub async fn bootstrap_admin(state: &AppState) -> ApiResult<String> {
    let (token, _) = issue_token(
        state,
        &Principal::system(),
        TokenRequest {
            role: Role::Admin,
            project: None,
            description: "bootstrap admin token".into(),
            node: None,
            site: None,
        },
    )
    .await?;
    Ok(token)
}

/// Ensure the `default` project exists (as Kubernetes has a `default` namespace).
pub async fn ensure_default_project(state: &AppState) -> ApiResult<()> {
    let kind = api::kinds::PROJECT;
    let key = object_key(kind, None, "default");
    if state.store().get(&key).await?.0.is_some() {
        return Ok(());
    }
    let object = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Project",
        "metadata": {
            "name": "default",
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now_rfc3339(),
            "generation": 1,
        },
        "spec": {"description": "the default project"},
    });
    let bytes = crate::registry::encode(&object);
    let audit = Registry::audit_record(
        &Principal::system(),
        "create",
        kind,
        None,
        "default",
        Some(&bytes),
    );
    state
        .registry
        .commit(Mutation::new(
            vec![Compare::Absent(key.clone())],
            vec![Op::put(key, bytes)],
            audit,
        ))
        .await?;
    Ok(())
}
