//! The resource endpoints: create, get, list, update, patch, apply, delete and the `/status`
//! subresource of every kind, in the Kubernetes dialect. Watches are in [`crate::watch`].
//!
//! Split along its seams: `target.rs` (which object a URL addresses: one extractor for the
//! global and project-scoped paths), `list.rs` (lists, continue tokens, selectors),
//! `write.rs` (create and update), `apply.rs` (patches and server-side apply),
//! `delete.rs`. This file has the routes, the query parameters, the checks every body
//! passes and admission.

mod apply;
mod delete;
mod list;
mod target;
mod write;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, WARNING};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use api::KindInfo;
use policy::{AdmissionResult, Operation};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize, node_may_access};
use crate::error::{ApiError, ApiResult};
use crate::field_validation::FieldValidation;
use crate::policies::{self, PolicyEngine};
use crate::registry::decode;
use crate::tables::{self, TableRequest};

pub(crate) use delete::delete;
pub(crate) use list::list;
pub use list::{Filter, list_prefix};
pub use target::Target;
use target::TargetPath;
pub(crate) use write::create_value;

const BASE: &str = "/apis/meridian.dev/v1";

/// The same handlers serve the global paths (`{BASE}/{plural}…`) and the project-scoped
/// ones (`{BASE}/namespaces/{ns}/{plural}…`): [`TargetPath`] reads either.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            &format!("{BASE}/{{plural}}"),
            get(list_handler).post(create_handler),
        )
        .route(
            &format!("{BASE}/{{plural}}/{{name}}"),
            get(get_handler)
                .put(put_handler)
                .patch(patch_handler)
                .delete(delete_handler),
        )
        .route(
            &format!("{BASE}/{{plural}}/{{name}}/status"),
            get(get_handler)
                .put(put_status_handler)
                .patch(patch_status_handler),
        )
        .route(
            &format!("{BASE}/namespaces/{{ns}}/{{plural}}"),
            get(list_handler).post(create_handler),
        )
        .route(
            &format!("{BASE}/namespaces/{{ns}}/{{plural}}/{{name}}"),
            get(get_handler)
                .put(put_handler)
                .patch(patch_handler)
                .delete(delete_handler),
        )
        .route(
            &format!("{BASE}/namespaces/{{ns}}/{{plural}}/{{name}}/status"),
            get(get_handler)
                .put(put_status_handler)
                .patch(patch_status_handler),
        )
}

/// Query parameters of every resource endpoint (unknown ones are ignored, as Kubernetes does).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: Option<bool>,
    pub dry_run: Option<String>,
    /// Accepted and ignored (kubectl's server-side apply sends them); `force` must still
    /// parse as a boolean.
    #[allow(dead_code)]
    pub field_manager: Option<String>,
    #[allow(dead_code)]
    pub force: Option<bool>,
    /// `Strict` (the default), `Warn` or `Ignore`: what to do with unknown fields.
    pub field_validation: Option<String>,
    /// What the rows of a `Table` carry: `None`, `Metadata` (default) or `Object`.
    pub include_object: Option<String>,
}

impl Params {
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun={other:?} is not supported: use dryRun=All"
            ))),
        }
    }

    /// What to do with unknown fields in a write.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        FieldValidation::parse(self.field_validation.as_deref())
    }

    /// A `Table` instead of objects, when the `Accept` header asks for one.
    pub fn table(&self, headers: &HeaderMap) -> ApiResult<Option<TableRequest>> {
        TableRequest::from_request(headers, self.include_object.as_deref())
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true" | "1" | ""))
    }
}

// ---- handlers: extract, resolve the target, delegate ----

async fn list_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    list(s, who, path.resolve()?, q, table).await
}

async fn create_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    write::create(s, who, path.resolve()?, q, &headers, &body).await
}

async fn get_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    get_one(
        s,
        who,
        path.resolve()?,
        table,
        q.resource_version.as_deref(),
    )
    .await
}

async fn put_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    write::put(s, who, path.resolve()?, q, &headers, &body, false).await
}

async fn put_status_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    write::put(s, who, path.resolve()?, q, &headers, &body, true).await
}

async fn patch_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    apply::patch(s, who, path.resolve()?, q, &headers, &body, false).await
}

async fn patch_status_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    apply::patch(s, who, path.resolve()?, q, &headers, &body, true).await
}

async fn delete_handler(
    State(s): State<AppState>,
    who: Principal,
    path: TargetPath,
    Query(q): Query<Params>,
    body: Bytes,
) -> ApiResult<Response> {
    delete(s, who, path.resolve()?, q, &body).await
}

// ---- bodies ----

pub(super) fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("application/json", |v| {
            v.split(';').next().unwrap_or(v).trim()
        })
}

/// Parse a JSON or YAML body into a JSON value. YAML goes through `api::yaml` (alias
/// expansion bounded by the body's size, nesting capped: 400 naming the limit).
pub(super) fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            api::body::BodyError::Empty.to_string(),
        ));
    }
    let ct = content_type(headers);
    let Some(format) = api::body::BodyFormat::from_media_type(ct) else {
        return Err(ApiError::unsupported_media_type(format!(
            "content type {ct:?} is not supported: send application/json or application/yaml"
        )));
    };
    api::body::decode_body(format, body).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(super) fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, axum::Json(value)).into_response()
}

pub(super) fn meta_str<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get("metadata")?.get(field)?.as_str()
}

pub(super) fn meta_mut(value: &mut Value) -> ApiResult<&mut serde_json::Map<String, Value>> {
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let obj = value.as_object_mut().expect("checked above");
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Fill `apiVersion` and `kind` when absent and check them when present.
pub(super) fn check_type(target: &Target, value: &mut Value) -> ApiResult<()> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    match obj.get("kind").and_then(Value::as_str) {
        None => {
            obj.insert("kind".into(), Value::String(target.kind.kind.into()));
        }
        Some(k) if k == target.kind.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the body is a {k} but the URL addresses {}: send it to the {} endpoint",
                target.kind.plural,
                api::lookup_kind(k).map_or("right", |i| i.plural)
            )));
        }
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        None => {
            obj.insert("apiVersion".into(), Value::String(api::API_VERSION.into()));
        }
        Some(v) if v == api::API_VERSION => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "apiVersion {v:?} is not served: use {}",
                api::API_VERSION
            )));
        }
    }
    Ok(())
}

/// Make the body's namespace agree with the URL's.
pub(super) fn check_namespace(target: &Target, value: &mut Value) -> ApiResult<()> {
    let meta = meta_mut(value)?;
    let body_ns = meta.get("namespace").and_then(Value::as_str);
    match (target.kind.namespaced(), target.ns(), body_ns) {
        (true, Some(url), Some(body)) if url != body => Err(ApiError::bad_request(format!(
            "the namespace of the object ({body:?}) does not match the namespace of the request ({url:?})"
        ))),
        (true, Some(url), _) => {
            meta.insert("namespace".into(), Value::String(url.to_owned()));
            Ok(())
        }
        (true, None, _) => Err(ApiError::bad_request(format!(
            "{} is project-scoped: send it to {BASE}/namespaces/PROJECT/{}",
            target.kind.kind, target.kind.plural
        ))),
        (false, _, Some(ns)) if !ns.is_empty() => Err(ApiError::bad_request(format!(
            "{} is not project-scoped: remove metadata.namespace ({ns:?})",
            target.kind.kind
        ))),
        (false, _, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

/// Validate with the `api` crate and return the normalized object (a Secret in its open
/// form: `stringData` merged into `data`, see [`crate::secrets::normalize`]).
pub(super) fn validate(target: &Target, value: Value) -> ApiResult<Value> {
    let name = meta_str(&value, "name").unwrap_or_default().to_owned();
    match api::validate::object_from_value_as(target.kind, value) {
        Ok(obj) => {
            let mut value = obj.to_value();
            crate::secrets::normalize(&mut value)?;
            Ok(value)
        }
        Err(errors) => Err(ApiError::invalid(target.kind.kind, &name, &errors)),
    }
}

/// A stored object as the write path works on it: a Secret open (patches apply to its
/// values, and a write that changes nothing is recognised as such); other kinds as stored.
/// Callers have authorized a write first.
pub(super) fn decode_for_write(state: &AppState, kv: &store::KeyValue) -> ApiResult<Value> {
    crate::secrets::open(&state.secrets, decode(kv)?)
}

/// What a write stores: a Secret sealed ([`crate::secrets::seal`]), other kinds as they are.
/// Every write verb encodes through here.
pub(super) fn encode_for_store(state: &AppState, value: &Value) -> ApiResult<Vec<u8>> {
    Ok(match crate::secrets::seal(&state.secrets, value)? {
        Some(sealed) => crate::registry::encode(&sealed),
        None => crate::registry::encode(value),
    })
}

// ---- admission ----

/// How a request reaches admission: its verb as the audit log names it, and whether it
/// is a dry run (judged, not audited).
#[derive(Clone, Copy, Debug)]
pub(super) struct Request<'a> {
    pub verb: &'a str,
    pub dry_run: bool,
}

/// Admission by the installed policies: 403 listing the policies when a `deny` policy
/// fires (or is broken), recorded in the audit log unless a dry run; otherwise the
/// result, whose warnings go back to the client (and into the write's audit entry:
/// `admission_audit::with_warnings`).
pub(super) async fn admit(
    state: &AppState,
    who: &Principal,
    kind: &KindInfo,
    request: Request<'_>,
    operation: Operation,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> ApiResult<AdmissionResult> {
    if state.policies.view().set.is_empty() {
        return Ok(AdmissionResult::default());
    }
    let started = std::time::Instant::now();
    // Policies judge what a Secret declares (type, key names), never its values.
    let object_keys = object.and_then(crate::secrets::redacted);
    let old_keys = old_object.and_then(crate::secrets::redacted);
    let object = object_keys.as_ref().or(object);
    let old_object = old_keys.as_ref().or(old_object);
    let workload = match object.or(old_object) {
        Some(o) => policies::allocation_workload(state, o).await,
        None => None,
    };
    let result = state
        .policies
        .admit(operation, object, old_object, who, workload.as_ref());
    state
        .metrics
        .observe_admission(started.elapsed(), result.allowed());
    crate::admission_audit::count(state, &result);
    if result.allowed() {
        Ok(result)
    } else {
        let subject = object.or(old_object);
        let name = subject
            .and_then(|o| meta_str(o, "name"))
            .unwrap_or_default();
        let denied = policies::denied(&result, kind.plural, name);
        if !request.dry_run {
            let refused = crate::admission_audit::Refused {
                verb: request.verb,
                kind,
                namespace: subject
                    .filter(|_| kind.namespaced())
                    .and_then(|o| meta_str(o, "namespace")),
                name,
            };
            crate::admission_audit::record_denial(state, who, &refused, &result).await;
        }
        crate::events::record_denial(state, who, operation, subject, &denied.message);
        Err(denied)
    }
}

/// After a write of a kind admission depends on, wait until admission has seen it.
pub(super) async fn sync_admission(state: &AppState, kind: &KindInfo, revision: i64) {
    if PolicyEngine::affects_admission(kind.kind) {
        state.policies.wait_for(revision).await;
    }
}

/// A JSON response with the admission warnings as `Warning` headers.
pub(super) fn written_response(
    code: StatusCode,
    value: &Value,
    admission: &AdmissionResult,
) -> Response {
    let mut response = json_response(code, value);
    for w in policies::warning_headers(admission) {
        response.headers_mut().append(WARNING, w);
    }
    response
}

// ---- get ----

/// One object (`GET …/{name}`), as a Table when asked. `resource_version` as Kubernetes
/// reads it for a get: unset, the newest (a read of the store); `0`, any version (from the
/// list cache when the server keeps one); `N`, one not older than N (from the list cache
/// once it has N, else from the store).
pub(crate) async fn get_one(
    state: AppState,
    who: Principal,
    target: Target,
    table: Option<TableRequest>,
    resource_version: Option<&str>,
) -> ApiResult<Response> {
    authorize(
        &who,
        Verb::Get,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    let key = target.key();
    let cached = match resource_version.and_then(|rv| rv.parse::<store::Revision>().ok()) {
        Some(at_least) if state.watch_hub.caught_up(at_least, list::CACHE_WAIT).await => {
            state.watch_hub.object(&key, at_least)
        }
        _ => None,
    };
    state
        .metrics
        .get_served(if cached.is_some() { "cache" } else { "store" });
    let kv = match cached {
        Some((kv, _)) => kv,
        None => state.store().get(&key).await?.0,
    };
    let kv = kv.ok_or_else(|| ApiError::not_found(target.kind.plural, target.name()))?;
    let mut value = decode(&kv)?;
    if !node_may_access(&who, &value) {
        return Err(ApiError::not_found(target.kind.plural, target.name()));
    }
    crate::secrets::present(&state.secrets, &who, &mut value)?;
    if let Some(req) = table {
        let metadata = tables::single_metadata(&value);
        let t = tables::table(
            target.kind,
            std::slice::from_ref(&value),
            metadata,
            req,
            true,
        );
        return Ok(json_response(StatusCode::OK, &t));
    }
    Ok(json_response(StatusCode::OK, &value))
}
