//! `GET /meridian/v1/queues/{name}/pendingworkloads`: the jobs waiting in a queue, in the
//! order the queue admits them, with why each waits (Kueue's visibility API, its
//! `pendingworkloads` of a ClusterQueue).
//!
//! The order and the reasons are the scheduler's: each waiting job's
//! `status.queue.position`, `reason` and `message`, written by its last pass. A principal
//! scoped to a project sees that project's jobs only, with their positions in the whole
//! queue (as Kueue's LocalQueue view gives `positionInClusterQueue`).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::registry::{kind_prefix, object_key};

/// Items one answer holds when the request names no `limit` (Kueue's default).
const DEFAULT_LIMIT: usize = 1_000;
/// The most items one answer may hold.
const MAX_LIMIT: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/meridian/v1/queues/{name}/pendingworkloads",
        get(pending_workloads),
    )
}

#[derive(Debug, Deserialize)]
struct Params {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// What a pending job's stored object says, decoded without the rest of it.
#[derive(Deserialize)]
struct Stored {
    metadata: StoredMeta,
    #[serde(default)]
    spec: StoredSpec,
    #[serde(default)]
    status: Option<StoredStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
}

#[derive(Default, Deserialize)]
struct StoredSpec {
    #[serde(default)]
    priority: i32,
}

#[derive(Deserialize)]
struct StoredStatus {
    #[serde(default)]
    queue: Option<api::queue::QueueState>,
}

async fn pending_workloads(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> ApiResult<Json<Value>> {
    let queue_kind = api::kinds::QUEUE;
    authorize(&who, Verb::Get, queue_kind, None, Some(&name))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: give 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"
        )));
    }
    let offset = params.offset.unwrap_or(0);
    let (queue, _) = state
        .store()
        .get(&object_key(queue_kind, None, &name))
        .await?;
    if queue.is_none() {
        return Err(ApiError::not_found(queue_kind.plural, &name));
    }
    // A project-scoped principal reads its own project's workloads only.
    let prefix = kind_prefix(api::kinds::WORKLOAD, who.project.as_deref());
    let kvs = state.store().read_prefix(&prefix).await?;
    let mut pending: Vec<(u32, Value)> = crate::scheduler::compute(|| {
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice::<Stored>(&kv.value).ok())
            .filter_map(|w| {
                let q = w.status?.queue?;
                if q.name != name || q.admitted {
                    return None;
                }
                let position = q.position?;
                Some((
                    position,
                    json!({
                        "namespace": w.metadata.namespace,
                        "name": w.metadata.name,
                        "priority": w.spec.priority,
                        "creationTimestamp": w.metadata.creation_timestamp,
                        "positionInQueue": position,
                        "reason": q.reason,
                        "message": q.message,
                    }),
                ))
            })
            .collect()
    });
    pending.sort_by(|(a, x), (b, y)| {
        a.cmp(b)
            .then_with(|| x["namespace"].as_str().cmp(&y["namespace"].as_str()))
            .then_with(|| x["name"].as_str().cmp(&y["name"].as_str()))
    });
    let total = pending.len();
    let items: Vec<Value> = pending
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, item)| item)
        .collect();
    Ok(Json(json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "PendingWorkloadsSummary",
        "queue": name,
        "total": total,
        "offset": offset,
        "items": items,
    })))
}
