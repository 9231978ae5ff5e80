//! Projects seen as Kubernetes namespaces at `/api/v1/namespaces`, as OpenShift does, so
//! that `kubectl get namespaces` and `kubectl create namespace` work. Every request is
//! served by the `Project` endpoints and its objects are translated at this edge.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, Params, Target};
use crate::tables::{self, TableRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1", get(resources))
        .route("/api/v1/namespaces", get(list).post(create))
        .route("/api/v1/namespaces/{name}", get(get_one).delete(delete))
}

async fn resources() -> axum::Json<Value> {
    axum::Json(json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [{
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": false,
            "kind": "Namespace",
            "verbs": ["create", "delete", "get", "list", "watch"],
            "shortNames": ["ns"],
        }, crate::core_events::api_resource(), crate::core_endpoints::api_resource()],
    }))
}

fn projects(name: Option<String>) -> ApiResult<Target> {
    Target::resolve("projects", None, name)
}

/// A Project as a core/v1 Namespace.
fn to_namespace(project: &Value) -> Value {
    let mut meta = project.get("metadata").cloned().unwrap_or_default();
    if let Some(m) = meta.as_object_mut() {
        m.remove("generation");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// Translate a successful Project response (object or list) into namespaces, or into a
/// `Table` of them (name, status, age) when the client asked for one.
async fn translate(response: Response, table: Option<TableRequest>) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let status = response.status();
    let Ok(body) = axum::body::to_bytes(response.into_body(), usize::MAX).await else {
        return ApiError::internal("cannot read a project response").into_response();
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return ApiError::internal("a project response is not JSON").into_response();
    };
    let out = if let Some(items) = value.get("items").and_then(Value::as_array) {
        json!({
            "apiVersion": "v1",
            "kind": "NamespaceList",
            "metadata": value.get("metadata").cloned().unwrap_or_default(),
            "items": items.iter().map(to_namespace).collect::<Vec<_>>(),
        })
    } else {
        to_namespace(&value)
    };
    let out = match table {
        None => out,
        Some(req) => {
            let (items, metadata) = match out.get("items").and_then(Value::as_array) {
                Some(items) => (items.clone(), out["metadata"].clone()),
                None => (vec![out.clone()], tables::single_metadata(&out)),
            };
            let rows = items
                .iter()
                .map(|ns| {
                    let cells = tables::name_and_age_cells(ns, &["Active"]);
                    tables::row_with_cells(cells, ns, req)
                })
                .collect();
            let columns = tables::name_and_age(&[("Status", "The phase of the namespace.")]);
            tables::generic(columns, rows, metadata, req)
        }
    };
    (status, axum::Json(out)).into_response()
}

async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    if q.is_watch() {
        return Err(ApiError::method_not_allowed(
            "watching namespaces is served at /apis/meridian.dev/v1/projects?watch=true",
        ));
    }
    Ok(translate(
        objects::list(state, who, projects(None)?, q, None).await?,
        table,
    )
    .await)
}

async fn get_one(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    Ok(translate(
        objects::get_one(
            state,
            who,
            projects(Some(name))?,
            None,
            q.resource_version.as_deref(),
        )
        .await?,
        table,
    )
    .await)
}

async fn create(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<Params>,
    _headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let namespace: Value = serde_json::from_slice(&body)
        .or_else(|_| api::yaml::from_slice(&body))
        .map_err(|e| {
            ApiError::bad_request(format!("the Namespace is not valid JSON or YAML: {e}"))
        })?;
    let mut meta = namespace.get("metadata").cloned().unwrap_or_default();
    if let Some(m) = meta.as_object_mut() {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "name" | "generateName" | "labels" | "annotations"
            )
        });
    }
    let project = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Project",
        "metadata": meta,
        "spec": {},
    });
    let response = objects::create_value(
        &state,
        &who,
        projects(None)?,
        q.dry_run()?,
        project,
        "create",
    )
    .await?;
    Ok(translate(response, None).await)
}

async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    Query(q): Query<Params>,
    body: Bytes,
) -> ApiResult<Response> {
    let response = objects::delete(state, who, projects(Some(name))?, q, &body).await?;
    Ok(translate(response, None).await.into_response())
}
