//! Events as Kubernetes' core `v1` events: `/api/v1/events` and
//! `/api/v1/namespaces/{ns}/events[/{name}]`, so that `kubectl get events`, `kubectl
//! describe <kind> <name>` (which lists the object's events with
//! `fieldSelector=involvedObject.name=…,involvedObject.namespace=…,involvedObject.kind=…,involvedObject.uid=…`)
//! and the Python client work unchanged.
//!
//! Every request is served by the `meridian.dev/v1` `events` endpoints (same
//! authorization: a project-scoped token reads its project's events only; a node
//! credential reads none and records through `POST /meridian/v1/events`), and the answer
//! is translated at this edge. The stored Event already has the core fields at the top
//! level ([`api::event`]), so translating is rewriting `apiVersion` (`meridian.dev/v1` ↔
//! `v1`) in objects, lists, watch events and table rows; field selectors on
//! `involvedObject.*`, `reason` and `type` match the stored JSON as it is.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::Value;

use api::kinds::EVENT;

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::objects::{self, Params, Target};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(list_all))
        .route("/api/v1/namespaces/{ns}/events", get(list_ns).post(create))
        .route(
            "/api/v1/namespaces/{ns}/events/{name}",
            get(get_one).delete(delete),
        )
}

/// The entry of `events` in the `/api/v1` resource list.
pub fn api_resource() -> Value {
    serde_json::json!({
        "name": "events",
        "singularName": "event",
        "namespaced": true,
        "kind": "Event",
        "verbs": ["create", "delete", "get", "list", "watch"],
        "shortNames": EVENT.short_names,
    })
}

fn events(ns: Option<String>, name: Option<String>) -> ApiResult<Target> {
    Target::resolve(EVENT.plural, ns, name)
}

/// Rewrites Meridian's `apiVersion` to core `v1` in an object, a list, a watch event or a
/// table.
fn to_core(value: &mut Value) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    if map.get("apiVersion").and_then(Value::as_str) == Some(api::API_VERSION) {
        map.insert("apiVersion".into(), Value::String("v1".into()));
    }
    if let Some(items) = map.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(to_core);
    }
    if let Some(object) = map.get_mut("object") {
        to_core(object);
    }
    if let Some(rows) = map.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(object) = row.get_mut("object") {
                to_core(object);
            }
        }
    }
}

fn core_line(line: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(line) {
        Ok(mut v) => {
            to_core(&mut v);
            let mut out = serde_json::to_vec(&v).expect("a JSON value always serializes");
            out.push(b'\n');
            out
        }
        // Not JSON (never expected): passed on unchanged.
        Err(_) => line.to_vec(),
    }
}

/// Translates a successful response: a watch stream line by line, anything else whole.
async fn translate(response: Response, watch: bool) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    if watch {
        let mut pending: Vec<u8> = Vec::new();
        let stream = body.into_data_stream().filter_map(move |chunk| {
            let out = match chunk {
                Ok(chunk) => {
                    pending.extend_from_slice(&chunk);
                    let mut out = Vec::new();
                    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=i).collect();
                        out.extend(core_line(&line[..i]));
                    }
                    (!out.is_empty()).then(|| Ok(Bytes::from(out)))
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("cannot read an events response").into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return ApiError::internal("an events response is not JSON").into_response();
    };
    to_core(&mut value);
    (parts.status, axum::Json(value)).into_response()
}

async fn list(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(headers)?;
    let watch = q.is_watch();
    Ok(translate(objects::list(state, who, target, q, table).await?, watch).await)
}

async fn list_all(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    list(state, who, events(None, None)?, q, &headers).await
}

async fn list_ns(
    State(state): State<AppState>,
    who: Principal,
    Path(ns): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    list(state, who, events(Some(ns), None)?, q, &headers).await
}

async fn get_one(
    State(state): State<AppState>,
    who: Principal,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    let target = events(Some(ns), Some(name))?;
    Ok(translate(
        objects::get_one(state, who, target, table, q.resource_version.as_deref()).await?,
        false,
    )
    .await)
}

/// A core `v1` Event created by a Kubernetes client (`kubectl create -f`, client-go's
/// recorder, the Python client): stored as Meridian's, validated the same way.
async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(ns): Path<String>,
    Query(q): Query<Params>,
    body: Bytes,
) -> ApiResult<Response> {
    // Permission before reading the body.
    authorize(&who, Verb::Create, EVENT, Some(&ns), None)?;
    let mut event: Value = serde_json::from_slice(&body)
        .or_else(|_| api::yaml::from_slice(&body))
        .map_err(|e| ApiError::bad_request(format!("the Event is not valid JSON or YAML: {e}")))?;
    if let Some(map) = event.as_object_mut() {
        match map.get("apiVersion").and_then(Value::as_str) {
            None | Some("v1") => {
                map.insert("apiVersion".into(), Value::String(api::API_VERSION.into()));
            }
            Some(v) if v == api::API_VERSION => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "apiVersion {v:?} is not served here: send a v1 Event"
                )));
            }
        }
    }
    let response = objects::create_value(
        &state,
        &who,
        events(Some(ns), None)?,
        q.dry_run()?,
        event,
        "create",
    )
    .await?;
    Ok(translate(response, false).await)
}

async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    body: Bytes,
) -> ApiResult<Response> {
    let target = events(Some(ns), Some(name))?;
    let response = objects::delete(state, who, target, q, &body).await?;
    Ok(translate(response, false).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_versions_become_core() {
        let mut list = json!({"apiVersion": "meridian.dev/v1", "kind": "EventList",
            "items": [{"apiVersion": "meridian.dev/v1", "kind": "Event"}]});
        to_core(&mut list);
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["items"][0]["apiVersion"], "v1");
        let line = core_line(
            br#"{"type":"ADDED","object":{"apiVersion":"meridian.dev/v1","kind":"Event"}}"#,
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["object"]["apiVersion"], "v1");
        assert!(line.ends_with(b"\n"));
        let mut table = json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table",
            "rows": [{"object": {"apiVersion": "meridian.dev/v1", "kind": "Event"}}]});
        to_core(&mut table);
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["rows"][0]["object"]["apiVersion"], "v1");
    }
}
