//! Node drain on the server, `POST /meridian/v1/nodes/{name}/drain[?dryRun=All]`: cordon
//! the node, then evict (delete) the allocations of services and VMs on it, which the
//! scheduler places again elsewhere under the same rules; the instances of jobs are left
//! to finish, as `kubectl drain` leaves what it cannot move. The answer is an
//! [`api::drain::DrainResult`]; `meridian drain` and the console's Drain button both call
//! it, so a drain is one implementation.
//!
//! Authorized first (updating a Node: a global admin), before anything is read. Every
//! step is then a request to the API's own router in process with the caller's bearer
//! token (as the console's are), so admission, the audit log's actor and the caller's
//! permissions on each allocation are the API's; `Evicted` and `Drained` events are
//! recorded on the caller's behalf.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use api::drain::{DrainResult, DrainedInstance};
use api::kinds::{ALLOCATION, NODE, WORKLOAD, WorkloadType};
use api::{Allocation, EventSource, EventType, Node, ObjectReference, Workload};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize, bearer_token};
use crate::error::{ApiError, ApiResult};
use crate::ui::backend::{Backend, UiError, paths};

/// The drain endpoint's route.
pub const PATH: &str = "/meridian/v1/nodes/{name}/drain";

/// Why a job's instance stays on a drained node.
pub const JOB_KEPT: &str =
    "a job's instance: left to finish (delete the allocation to stop it now)";

/// The drain route; `api` is the API's router (authenticated), which every step calls.
pub fn routes(api: Router) -> Router<AppState> {
    Router::new().route(
        PATH,
        post(
            move |state: State<AppState>,
                  who: Principal,
                  headers: HeaderMap,
                  name: Path<String>,
                  query: Query<DrainQuery>| {
                drain(state, api.clone(), who, headers, name, query)
            },
        ),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainQuery {
    dry_run: Option<String>,
}

/// `dryRun` as Kubernetes spells it (`All`), or `true`/`false`.
fn dry_run(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("" | "false") => Ok(false),
        Some("All" | "true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: {other:?} is not a dry-run mode: use dryRun=All (or true), or leave it out"
        ))),
    }
}

/// An inner request's error, answered as it came (code, reason, message).
fn api_error(e: UiError) -> ApiError {
    const REASONS: &[&str] = &[
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Invalid",
        "Timeout",
        "TooManyRequests",
        "RequestEntityTooLarge",
        "ServiceUnavailable",
        "InsufficientStorage",
    ];
    let reason = REASONS
        .iter()
        .find(|r| **r == e.reason)
        .copied()
        .unwrap_or("InternalError");
    ApiError::new(e.code, reason, e.message)
}

async fn drain(
    State(state): State<AppState>,
    api: Router,
    who: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<DrainQuery>,
) -> ApiResult<Json<DrainResult>> {
    authorize(&who, Verb::Update, NODE, None, Some(&name))?;
    let dry_run = dry_run(query.dry_run.as_deref())?;
    let token = bearer_token(&headers)
        .ok_or_else(|| ApiError::unauthorized("no bearer token"))?
        .to_owned();
    let backend = Backend::new(api, token);
    let node_path = paths::object(NODE, None, Some(&name));
    let node: Node = backend.get_as(&node_path).await.map_err(api_error)?;
    let cordoned = !dry_run && !node.spec.unschedulable;
    if cordoned {
        backend
            .merge_patch(&node_path, &json!({"spec": {"unschedulable": true}}))
            .await
            .map_err(api_error)?;
    }
    let selector = format!("spec.node={name}");
    let on_node: Vec<Allocation> = backend
        .list_all(&format!(
            "{}{}",
            paths::object(ALLOCATION, None, None),
            paths::query(&[("fieldSelector", Some(&selector))])
        ))
        .await
        .map_err(api_error)?;
    let mut workloads: HashMap<(String, String), Option<Workload>> = HashMap::new();
    let mut result = DrainResult {
        node: name.clone(),
        dry_run,
        cordoned,
        evicted: Vec::new(),
        kept: Vec::new(),
    };
    for a in on_node {
        let ns = a.metadata.namespace.clone().unwrap_or_default();
        let key = (ns.clone(), a.spec.workload.clone());
        if !workloads.contains_key(&key) {
            let path = paths::object(WORKLOAD, Some(&ns), Some(&a.spec.workload));
            let workload = match backend.get_as::<Workload>(&path).await {
                Ok(w) => Some(w),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(api_error(e)),
            };
            workloads.insert(key.clone(), workload);
        }
        let workload = workloads.get(&key).and_then(Option::as_ref);
        let mut instance = DrainedInstance {
            namespace: ns.clone(),
            name: a.metadata.name.clone(),
            workload: a.spec.workload.clone(),
            reason: None,
        };
        if workload.is_some_and(|w| w.spec.type_ == WorkloadType::Job) {
            instance.reason = Some(JOB_KEPT.to_owned());
            result.kept.push(instance);
            continue;
        }
        if !dry_run {
            let path = paths::object(ALLOCATION, Some(&ns), Some(&a.metadata.name));
            match backend.delete(&path).await {
                Ok(_) => {}
                // Gone meanwhile (its workload deleted, the scheduler moved it): not ours.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(api_error(e)),
            }
            if let Some(w) = workload {
                record(
                    &state,
                    &who,
                    ObjectReference::of(w),
                    "Evicted",
                    format!(
                        "allocation {} evicted from node {name} by drain",
                        a.metadata.name
                    ),
                );
            }
        }
        result.evicted.push(instance);
    }
    if !dry_run {
        record(
            &state,
            &who,
            ObjectReference::of(&node),
            "Drained",
            format!(
                "drained: {} evicted, {} left",
                result.evicted.len(),
                result.kept.len()
            ),
        );
    }
    Ok(Json(result))
}

fn record(
    state: &AppState,
    who: &Principal,
    involved: ObjectReference,
    reason: &str,
    message: String,
) {
    state.events.record_as(
        who,
        &involved,
        EventType::Normal,
        reason,
        message,
        EventSource {
            component: "drain".to_owned(),
            host: String::new(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_takes_kubernetes_spelling_and_refuses_others() {
        assert!(!dry_run(None).unwrap());
        assert!(!dry_run(Some("false")).unwrap());
        assert!(dry_run(Some("All")).unwrap());
        assert!(dry_run(Some("true")).unwrap());
        let e = dry_run(Some("server")).unwrap_err();
        assert!(e.to_string().contains("dryRun=All"), "{e}");
    }
}
