//! Meridian-specific placement endpoints: `explain` (why a workload's instances go where
//! they go, or why not) and `plan` (what-if placement of manifests against the live fleet,
//! writing nothing).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use api::explanation::{Explained, Plan, Reservation, WorkloadRef};
use api::{AnyObject, Workload};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::registry::object_key;
use crate::scheduler;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/apis/meridian.dev/v1/namespaces/{ns}/workloads/{name}/explain",
            get(explain),
        )
        .route("/meridian/v1/plan", post(plan))
}

async fn explain(
    State(state): State<AppState>,
    who: Principal,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Explained>> {
    let kind = api::kinds::WORKLOAD;
    authorize(&who, Verb::Get, kind, Some(&ns), Some(&name))?;
    let (kv, _) = state
        .store()
        .get(&object_key(kind, Some(&ns), &name))
        .await?;
    let kv = kv.ok_or_else(|| ApiError::not_found(kind.plural, &name))?;
    let workload: Workload =
        serde_json::from_value(crate::registry::decode(&kv)?).map_err(ApiError::internal)?;
    let live = scheduler::live_fleet(&state).await?;
    let project = live.projects.get(&ns);
    let queued = api::queue::effective_queue(&workload.spec, project.map(|p| &p.spec)).is_some();
    let options = placement::Options::default();
    let explanation = if queued {
        placement::explain_queued(
            &live.fleet,
            &workload,
            project,
            live.queues.clone(),
            &options,
        )
    } else {
        placement::explain(&live.fleet, &workload, project, &options)
    }
    .map_err(|e| ApiError::bad_request(format!("workload {ns}/{name} cannot be scheduled: {e}")))?;
    Ok(Json(Explained {
        workload: WorkloadRef {
            namespace: ns,
            name,
        },
        status: workload.status,
        explanation,
    }))
}

/// Body of a plan: manifests (Workloads) as JSON objects, or a List of them; a List may
/// carry `reserved` ([`api::explanation::Reservation`]s: what earlier what-if answers placed),
/// held on the live fleet before its items are placed.
async fn plan(
    State(state): State<AppState>,
    who: Principal,
    body: axum::body::Bytes,
) -> ApiResult<Json<Plan>> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the plan body is not JSON: {e}")))?;
    let (items, reserved) = match value {
        Value::Array(items) => (items, None),
        Value::Object(mut o) if o.contains_key("items") => (
            o["items"].as_array().cloned().unwrap_or_default(),
            o.remove("reserved"),
        ),
        other => (vec![other], None),
    };
    let mut workloads = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match api::validate::object_from_value(item) {
            Ok(AnyObject::Workload(mut w)) => {
                let ns = w
                    .metadata
                    .namespace
                    .get_or_insert_with(|| "default".to_owned())
                    .clone();
                authorize(&who, Verb::Get, api::kinds::WORKLOAD, Some(&ns), None)?;
                workloads.push(w);
            }
            Ok(other) => {
                return Err(ApiError::bad_request(format!(
                    "item {i}: plan takes Workloads, not a {}",
                    other.kind_info().kind
                )));
            }
            Err(errors) => {
                return Err(ApiError::bad_request(format!("item {i}: {errors}")));
            }
        }
    }
    let scheduler::LiveFleet {
        mut fleet,
        projects,
        ..
    } = scheduler::live_fleet(&state).await?;
    // Parsed once every item is authorized: holding room costs little, and answers nothing
    // the items' plan would not.
    let reserved: Vec<Reservation> = match reserved {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("reserved: {e}")))?,
    };
    for (i, r) in reserved.iter().enumerate() {
        let holder = WorkloadRef {
            namespace: String::new(),
            name: format!("reserved-{i}"),
        };
        // The highest priority: nothing in this plan preempts what was already planned.
        fleet
            .reserve(&holder, 0, &r.node, &r.resources, i32::MAX)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "reserved[{i}]: {e}; the fleet changed since the answer it comes from: plan again from the first body"
                ))
            })?;
    }
    let mut batch = placement::Batch::new();
    for w in &workloads {
        let ns = w.metadata.namespace.clone().unwrap_or_default();
        let n = u32::try_from(w.spec.replicas.max(0)).unwrap_or(0);
        let added = match projects.get(&ns) {
            Some(p) => batch.add_in_project(w, p, 0..n),
            None => batch.add(w, 0..n),
        };
        added.map_err(|e| ApiError::bad_request(format!("{ns}/{}: {e}", w.metadata.name)))?;
    }
    let decisions = placement::place_batch(&mut fleet, &batch, &placement::Options::default());
    Ok(Json(Plan { decisions }))
}
