//! Endpoints as Kubernetes' core `v1` `Endpoints`: `/api/v1/endpoints` and
//! `/api/v1/namespaces/{ns}/endpoints[/{name}]`, read-only views of the workloads'
//! `status.endpoints` (the scheduler keeps those: a workload's ready instances that have
//! ports, with their node's address and host ports), so that `kubectl get endpoints` and
//! the Python client find one service from another.
//!
//! Each request is served by listing or getting the `Workload`s (same authorization, label
//! selectors and pagination), and the answer is translated here: one `Endpoints` object per
//! workload, named like it ([`api::task::core_endpoints`]); a table has kubectl's columns
//! `NAME`, `ENDPOINTS`, `AGE`. There is no watch: watch the workloads.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use api::kinds::{WORKLOAD, Workload};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, Params, Target};
use crate::tables;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/endpoints", get(list_all))
        .route("/api/v1/namespaces/{ns}/endpoints", get(list_ns))
        .route("/api/v1/namespaces/{ns}/endpoints/{name}", get(get_one))
}

/// The entry of `endpoints` in the `/api/v1` resource list.
pub fn api_resource() -> Value {
    json!({
        "name": "endpoints",
        "singularName": "endpoints",
        "namespaced": true,
        "kind": "Endpoints",
        "verbs": ["get", "list"],
        "shortNames": ["ep"],
    })
}

/// The `Endpoints` view of a workload object.
fn of_workload(w: &Value) -> ApiResult<Value> {
    let w: Workload = serde_json::from_value(w.clone())
        .map_err(|e| ApiError::internal(format!("a stored workload does not decode: {e}")))?;
    let endpoints = w
        .status
        .as_ref()
        .map(|s| s.endpoints.as_slice())
        .unwrap_or(&[]);
    let mut v = api::task::core_endpoints(&w.metadata, endpoints);
    if let Some(rv) = &w.metadata.resource_version {
        v["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok(v)
}

async fn body_of(response: Response) -> ApiResult<Option<Value>> {
    if !response.status().is_success() {
        return Ok(None);
    }
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|_| ApiError::internal("cannot read a workloads response"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| ApiError::internal("a workloads response is not JSON"))
}

fn table(objects: &[(Value, String)], list_metadata: Value, req: tables::TableRequest) -> Value {
    let rows = objects
        .iter()
        .map(|(o, summary)| {
            tables::row_with_cells(tables::name_and_age_cells(o, &[summary]), o, req)
        })
        .collect();
    tables::generic(
        tables::name_and_age(&[(
            "Endpoints",
            "Addresses and host ports of the ready instances.",
        )]),
        rows,
        list_metadata,
        req,
    )
}

fn summary(w: &Value) -> String {
    let endpoints: Vec<api::task::Endpoint> = w
        .pointer("/status/endpoints")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    api::task::endpoints_summary(&endpoints)
}

async fn list(
    state: AppState,
    who: Principal,
    ns: Option<String>,
    q: Params,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    if q.is_watch() {
        return Err(ApiError::method_not_allowed(
            "endpoints cannot be watched here: watch the workloads (status.endpoints) instead",
        ));
    }
    let table_req = q.table(headers)?;
    let target = Target::resolve(WORKLOAD.plural, ns, None)?;
    let response = objects::list(state, who, target, q, None).await?;
    let status = response.status();
    let Some(list) = body_of(response).await? else {
        return Ok(status.into_response());
    };
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let metadata = list.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut views = Vec::with_capacity(items.len());
    for w in &items {
        views.push((of_workload(w)?, summary(w)));
    }
    let body = match table_req {
        Some(req) => table(&views, metadata, req),
        None => json!({
            "apiVersion": "v1",
            "kind": "EndpointsList",
            "metadata": metadata,
            "items": views.into_iter().map(|(v, _)| v).collect::<Vec<_>>(),
        }),
    };
    Ok(axum::Json(body).into_response())
}

async fn list_all(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    list(state, who, None, q, &headers).await
}

async fn list_ns(
    State(state): State<AppState>,
    who: Principal,
    Path(ns): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    list(state, who, Some(ns), q, &headers).await
}

async fn get_one(
    State(state): State<AppState>,
    who: Principal,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table_req = q.table(&headers)?;
    let target = Target::resolve(WORKLOAD.plural, Some(ns), Some(name))?;
    let response =
        objects::get_one(state, who, target, None, q.resource_version.as_deref()).await?;
    let status = response.status();
    let Some(w) = body_of(response).await? else {
        return Ok(status.into_response());
    };
    let view = of_workload(&w)?;
    let body = match table_req {
        Some(req) => table(&[(view, summary(&w))], tables::single_metadata(&w), req),
        None => view,
    };
    Ok(axum::Json(body).into_response())
}
