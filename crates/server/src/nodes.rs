//! Node agents: join tokens, the join exchange, heartbeats and the node-lifecycle
//! controller.
//!
//! - `POST /meridian/v1/join-tokens` (global admin): a short-lived, single-use join token
//!   (`mjt_…`, 256 bits, stored as its SHA-256 digest under `/meridian/join-tokens/`,
//!   optionally bound to a site).
//! - `POST /meridian/v1/nodes/join` (authenticated by the join token itself, the only
//!   route outside the bearer-token middleware): exchanges the join token, once, for a
//!   node credential bound to one node name (role `node`: it reads its own allocations
//!   and writes its own Node and its allocations' status, nothing else). The join token
//!   is deleted in the same transaction that stores the credential, so two agents racing
//!   with one token cannot both join.
//! - `POST /meridian/v1/nodes/{name}/heartbeat` (the node's credential): renews the
//!   node's lease (`/meridian/leases/nodes/{name}`, TTL 10 s by default). Renewal touches
//!   memory only; the Node object is written on transitions (to `Ready`) and at most once
//!   a minute (`status.heartbeatTime`), as Kubernetes separates Lease renewals from
//!   NodeStatus updates.
//! - [`run_lifecycle`]: when a node's lease expires (its key is deleted by the store), the
//!   node is marked `Lost`; the scheduler then places its services elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use store::{Compare, EventKind, LeaseId, Op};

use crate::admin::{TokenRequest, issue_token_ops};
use crate::app::AppState;
use crate::auth::{Principal, Role, hash_token, require_global_admin};
use crate::controller::{ControllerError, Report};
use crate::error::{ApiError, ApiResult};
use crate::registry::{self, AuditRecord, Mutation, Registry, now_rfc3339, object_key};

/// Key prefix of join tokens.
pub const JOIN_PREFIX: &str = "/meridian/join-tokens/";
/// Key prefix of the node names held by node credentials (`{prefix}{node}` → token id):
/// one credential per node name, so two hosts cannot join as one node.
pub const NODE_NAME_PREFIX: &str = "/meridian/node-names/";
/// Key prefix of node leases.
pub const LEASE_PREFIX: &str = "/meridian/leases/nodes/";
/// Longest join token lifetime.
pub const MAX_JOIN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Liveness settings.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// A node whose agent has not renewed its lease for this long is `Lost`.
    pub lease_ttl: Duration,
    /// `status.heartbeatTime` is written at most this often.
    pub status_interval: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            lease_ttl: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
        }
    }
}

/// Node leases held by this server (node → lease, last status write).
#[derive(Default)]
pub struct NodeLeases {
    inner: Mutex<HashMap<String, (LeaseId, tokio::time::Instant)>>,
    pub options: NodeOptions,
}

impl NodeLeases {
    pub fn new(options: NodeOptions) -> Self {
        NodeLeases {
            inner: Mutex::new(HashMap::new()),
            options,
        }
    }
}

/// Routes that need a bearer token.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/meridian/v1/join-tokens", post(create_join_token))
        .route("/meridian/v1/nodes/{name}/heartbeat", post(heartbeat))
}

/// The join exchange: authenticated by the join token, outside the token middleware.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/meridian/v1/nodes/join", post(join))
}

/// A stored join token: everything but the secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// RFC 3339.
    pub expires: String,
    pub created_by: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinTokenRequest {
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

async fn create_join_token(
    State(state): State<AppState>,
    who: Principal,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    require_global_admin(&who, "create join tokens")?;
    let req: JoinTokenRequest = if body.is_empty() {
        JoinTokenRequest {
            site: None,
            ttl_seconds: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "join token request is not valid: {e} (expected {{\"site\": \"…\", \"ttlSeconds\": 3600}})"
            ))
        })?
    };
    let ttl = Duration::from_secs(req.ttl_seconds.unwrap_or(3600));
    if ttl.is_zero() || ttl > MAX_JOIN_TTL {
        return Err(ApiError::bad_request(format!(
            "ttlSeconds must be between 1 and {} (7 days)",
            MAX_JOIN_TTL.as_secs()
        )));
    }
    // A join token binds its node to one site: whoever holds the token can add a host to
    // that site and nowhere else (an unbound token would let its holder pick any site,
    // residency included).
    let Some(site) = req.site.as_deref().filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request(
            "site is required: a join token binds the node that uses it to one site \
             (meridian node join-token create --site SITE)",
        ));
    };
    let compares = vec![Compare::Exists(object_key(api::kinds::SITE, None, site))];
    let token = generate("mjt_");
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(ttl.as_secs() as i64))
        .map_err(ApiError::internal)?;
    let record = JoinRecord {
        id: crate::auth::generate_token_id(),
        site: req.site.clone(),
        expires: expires.to_string(),
        created_by: who.actor(),
    };
    let key = format!("{JOIN_PREFIX}{}", hash_token(&token));
    let audit = AuditRecord {
        time: now_rfc3339(),
        actor: who.actor(),
        verb: "create".into(),
        kind: "JoinToken".into(),
        namespace: None,
        name: record.id.clone(),
        digest: None,
        ..AuditRecord::default()
    };
    let resp = state
        .registry
        .commit(Mutation::new(
            compares,
            vec![Op::put(
                key,
                serde_json::to_vec(&record).expect("serializes"),
            )],
            audit,
        ))
        .await?;
    if !resp.succeeded {
        return Err(ApiError::not_found("sites", site));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "id": record.id, "site": record.site, "expires": record.expires})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinRequest {
    /// The node's name (usually its hostname).
    node: String,
    #[serde(default)]
    site: Option<String>,
}

async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let token = crate::auth::bearer_token(&headers)
        .filter(|t| t.starts_with("mjt_"))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "joining needs a join token (mjt_…) as the bearer token: meridian node join-token create",
            )
        })?;
    let req: JoinRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "join request is not valid: {e} (expected {{\"node\": \"NAME\", \"site\": \"SITE\"}})"
        ))
    })?;
    if let Err(e) = api::validate::check_dns_subdomain(&req.node) {
        return Err(ApiError::bad_request(format!(
            "node name {:?}: {e}",
            req.node
        )));
    }
    let key = format!("{JOIN_PREFIX}{}", hash_token(token));
    let (kv, _) = state.store().get(&key).await?;
    let invalid =
        || ApiError::unauthorized("the join token is not valid (unknown, used or expired)");
    let kv = kv.ok_or_else(invalid)?;
    let record: JoinRecord = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
    let expires: jiff::Timestamp = record.expires.parse().map_err(ApiError::internal)?;
    if expires < jiff::Timestamp::now() {
        return Err(invalid());
    }
    let Some(site) = record.site.clone() else {
        return Err(ApiError::forbidden(
            "this join token is bound to no site (it predates site-bound tokens): \
             create a new one with meridian node join-token create --site SITE",
        ));
    };
    if let Some(asked) = req.site.as_deref().filter(|asked| *asked != site) {
        return Err(ApiError::forbidden(format!(
            "this join token is for site {site:?}, not {asked:?}"
        )));
    }
    let (exists, _) = state
        .store()
        .get(&object_key(api::kinds::SITE, None, &site))
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found("sites", &site));
    }
    let who = Principal {
        id: format!("join:{}", record.id),
        role: Role::Admin,
        project: None,
        node: None,
        site: None,
    };
    let (credential, mut ops, audit) = issue_token_ops(
        &who,
        TokenRequest {
            role: Role::Node,
            project: None,
            description: format!("node {} (join token {})", req.node, record.id),
            node: Some(req.node.clone()),
            site: Some(site.clone()),
        },
    );
    // A join creates a new node: the name must be free of both a Node and a credential
    // (a credential whose agent has not registered its Node yet holds the name too).
    let node_key = object_key(api::kinds::NODE, None, &req.node);
    let name_key = format!("{NODE_NAME_PREFIX}{}", req.node);
    ops.push(Op::put(
        name_key.clone(),
        credential.2.id.clone().into_bytes(),
    ));
    ops.push(Op::Delete(key.clone()));
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![
                Compare::ModRevision(key, kv.mod_revision),
                Compare::Absent(node_key.clone()),
                Compare::Absent(name_key.clone()),
            ],
            ops,
            audit,
        ))
        .await?;
    if !resp.succeeded {
        let (holder, _) = state.store().get(&name_key).await?;
        let (node, _) = state.store().get(&node_key).await?;
        if holder.is_none() && node.is_none() {
            return Err(invalid());
        }
        let held_by = holder
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .map_or_else(String::new, |id| format!(" by node credential {id}"));
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!(
                "node {name:?} is already registered{held_by}: a join creates a new node. \
                 Start the agent with another --name; or, if this host replaces that node, an \
                 admin removes the old one first (meridian delete node {name}; meridian token \
                 revoke ID). The join token was not used.",
                name = req.node
            ),
        ));
    }
    state
        .tokens
        .insert(credential.1.clone(), credential.2.clone());
    tracing::info!(node = %req.node, %site, "node joined");
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": credential.0, "node": req.node, "site": site, "id": credential.2.id})),
    )
        .into_response())
}

async fn heartbeat(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let allowed = match who.role {
        Role::Node => who.node.as_deref() == Some(name.as_str()),
        Role::Admin => who.project.is_none(),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "token {} cannot heartbeat for node {name:?}: only that node's credential can",
            who.id
        )));
    }
    let leases = &state.nodes;
    let ttl = leases.options.lease_ttl;
    let key = format!("{LEASE_PREFIX}{name}");
    let mut known = leases.inner.lock().expect("lease lock").get(&name).copied();
    if known.is_none() {
        // Another replica may hold the node's lease (the agent heartbeated there before):
        // renew that one rather than replace it, or the other replica's lease, which the
        // key is no longer attached to, would be renewed in vain while this one expires.
        if let Ok((Some(kv), _)) = state.store().get(&key).await
            && let Some(id) = kv.lease
        {
            known = Some((id, tokio::time::Instant::now()));
        }
    }
    let renewed = match known {
        Some((id, _)) => state.registry.keep_alive(id).await.is_ok(),
        None => false,
    };
    if renewed && let Some(entry) = known {
        leases
            .inner
            .lock()
            .expect("lease lock")
            .entry(name.clone())
            .or_insert(entry);
    }
    let mut write_status = !renewed;
    if !renewed {
        let id = state
            .registry
            .hold_lease(key, now_rfc3339().into_bytes(), ttl)
            .await?;
        leases
            .inner
            .lock()
            .expect("lease lock")
            .insert(name.clone(), (id, tokio::time::Instant::now()));
    } else if let Some((_, last)) = known
        && last.elapsed() >= leases.options.status_interval
    {
        write_status = true;
    }
    let phase = if write_status {
        let phase = mark(&state, &name, "Ready", None).await?;
        if let Some(e) = leases.inner.lock().expect("lease lock").get_mut(&name) {
            e.1 = tokio::time::Instant::now();
        }
        phase
    } else {
        "Ready".to_owned()
    };
    Ok(Json(
        json!({"node": name, "phase": phase, "leaseTtlSeconds": ttl.as_secs()}),
    ))
}

/// Sets a node's `status.phase` (and heartbeat time, message); returns the phase.
async fn mark(
    state: &AppState,
    name: &str,
    phase: &str,
    message: Option<String>,
) -> Result<String, ControllerError> {
    let node_kind = api::kinds::NODE;
    let key = object_key(node_kind, None, name);
    for _ in 0..5 {
        let (kv, _) = state.store().get(&key).await?;
        let Some(kv) = kv else {
            return Err(ApiError::not_found(
                "nodes",
                &format!("{name} (register the Node before heartbeating)"),
            )
            .into());
        };
        let mut node = registry::decode(&kv)?;
        let status = node
            .as_object_mut()
            .map(|o| o.entry("status").or_insert_with(|| json!({})))
            .ok_or_else(|| {
                ControllerError::other(format!("stored Node {name} is not an object"))
            })?;
        if phase == "Ready" {
            status["heartbeatTime"] = json!(now_rfc3339());
        }
        if status["phase"] == phase && phase != "Ready" {
            return Ok(phase.to_owned());
        }
        status["phase"] = json!(phase);
        match &message {
            Some(m) => status["message"] = json!(m),
            None => {
                if let Some(o) = status.as_object_mut() {
                    o.remove("message");
                }
            }
        }
        let bytes = registry::encode(&node);
        let audit = Registry::audit_record(
            &Principal::system(),
            "update-status",
            node_kind,
            None,
            name,
            Some(&bytes),
        );
        let resp = state
            .registry
            .commit(Mutation::new(
                vec![Compare::ModRevision(key.clone(), kv.mod_revision)],
                vec![Op::put(key.clone(), bytes)],
                audit,
            ))
            .await?;
        if resp.succeeded {
            return Ok(phase.to_owned());
        }
    }
    Err(ApiError::conflict("nodes", name).into())
}

/// The node-lifecycle controller: a node whose lease expired is `Lost`.
pub async fn run_lifecycle(state: AppState) {
    let mut from = match state.store().current_revision().await {
        Ok(r) => r + 1,
        Err(e) => {
            tracing::error!(error = %Report(&e), "node lifecycle cannot start");
            return;
        }
    };
    // After a (re)start, nodes that were Ready but have no lease get one lease TTL to
    // heartbeat before they are declared lost.
    let grace = state.nodes.options.lease_ttl;
    let sweep_state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = sweep_state.shutdown.cancelled() => {}
            () = tokio::time::sleep(grace * 2) => sweep(&sweep_state).await,
        }
    });
    loop {
        let mut events = match state.store().watch(LEASE_PREFIX, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %Report(&e), "node lifecycle cannot watch leases; retrying");
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                from = state
                    .store()
                    .current_revision()
                    .await
                    .map_or(from, |r| r + 1);
                sweep(&state).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = state.shutdown.cancelled() => return,
                e = events.next() => e,
            };
            let Some(Ok(event)) = next else { break };
            from = event.kv.mod_revision + 1;
            if event.kind != EventKind::Delete {
                continue;
            }
            let Some(node) = event.kv.key.strip_prefix(LEASE_PREFIX) else {
                continue;
            };
            lost(&state, node).await;
        }
    }
}

async fn lost(state: &AppState, node: &str) {
    state.nodes.inner.lock().expect("lease lock").remove(node);
    let ttl = state.nodes.options.lease_ttl;
    let message = format!(
        "no heartbeat from the agent for {} s (lease expired)",
        ttl.as_secs()
    );
    match mark(state, node, "Lost", Some(message)).await {
        Ok(_) => tracing::warn!(%node, "node lost: its lease expired"),
        Err(ControllerError::Api(e)) if e.code == StatusCode::NOT_FOUND => {}
        Err(e) => tracing::error!(%node, error = %Report(&e), "cannot mark the node lost"),
    }
}

/// Marks lost the nodes that report heartbeats (`status.heartbeatTime`) and are not
/// Lost, but hold no lease (after a restart of every server, or a missed event).
async fn sweep(state: &AppState) {
    let Ok(nodes) = state
        .store()
        .read_prefix(&registry::kind_prefix(api::kinds::NODE, None))
        .await
    else {
        return;
    };
    for kv in nodes {
        let Ok(node) = registry::decode(&kv) else {
            continue;
        };
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if node.pointer("/status/heartbeatTime").is_none() || node["status"]["phase"] == "Lost" {
            continue;
        }
        let lease = format!("{LEASE_PREFIX}{name}");
        if let Ok((None, _)) = state.store().get(&lease).await {
            lost(state, &name).await;
        }
    }
}

/// Shared lease table, created with the server.
pub fn leases(options: NodeOptions) -> Arc<NodeLeases> {
    Arc::new(NodeLeases::new(options))
}
