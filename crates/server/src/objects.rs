//! The resource endpoints: create, get, list, update, patch, apply, delete and the `/status`
//! subresource of every kind, in the Kubernetes dialect. Watches are in [`crate::watch`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, WARNING};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use api::{KindInfo, LabelSelector};
use policy::{AdmissionResult, Operation};
use store::{Compare, KeyValue, Op, OpResult, RangeRequest};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize, check_subresource, node_may_access};
use crate::error::{ApiError, ApiResult};
use crate::field_validation::{FieldValidation, with_warnings};
use crate::policies::{self, PolicyEngine};
use crate::registry::{self, Mutation, Registry, decode, encode, kind_prefix, object_key};
use crate::tables::{self, TableRequest};

const BASE: &str = "/apis/meridian.dev/v1";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            &format!("{BASE}/{{plural}}"),
            get(list_global).post(create_global),
        )
        .route(
            &format!("{BASE}/{{plural}}/{{name}}"),
            get(get_global)
                .put(put_global)
                .patch(patch_global)
                .delete(delete_global),
        )
        .route(
            &format!("{BASE}/{{plural}}/{{name}}/status"),
            get(get_global)
                .put(put_status_global)
                .patch(patch_status_global),
        )
        .route(
            &format!("{BASE}/namespaces/{{ns}}/{{plural}}"),
            get(list_ns).post(create_ns),
        )
        .route(
            &format!("{BASE}/namespaces/{{ns}}/{{plural}}/{{name}}"),
            get(get_ns).put(put_ns).patch(patch_ns).delete(delete_ns),
        )
        .route(
            &format!("{BASE}/namespaces/{{ns}}/{{plural}}/{{name}}/status"),
            get(get_ns).put(put_status_ns).patch(patch_status_ns),
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
    pub field_manager: Option<String>,
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

/// The object an endpoint addresses.
pub struct Target {
    pub kind: &'static KindInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Target {
    pub(crate) fn resolve(
        plural: &str,
        namespace: Option<String>,
        name: Option<String>,
    ) -> ApiResult<Self> {
        let kind = api::KINDS
            .iter()
            .find(|k| k.plural == plural)
            .ok_or_else(|| ApiError::not_found_path(&format!("{BASE}/{plural}")))?;
        match (kind.namespaced(), &namespace) {
            (false, Some(_)) => {
                return Err(ApiError::not_found_path(&format!(
                    "{BASE}/namespaces/…/{plural} ({} is not project-scoped)",
                    kind.kind
                )));
            }
            (true, None) if name.is_some() => {
                return Err(ApiError::not_found_path(&format!(
                    "{BASE}/{plural}/… ({} is project-scoped: use {BASE}/namespaces/PROJECT/{plural}/NAME)",
                    kind.kind
                )));
            }
            _ => {}
        }
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }

    fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn key(&self) -> String {
        object_key(self.kind, self.ns(), self.name())
    }
}

// ---- route adapters: global and namespaced paths share one implementation ----

async fn list_global(
    State(s): State<AppState>,
    who: Principal,
    Path(plural): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    list(s, who, Target::resolve(&plural, None, None)?, q, table).await
}

async fn list_ns(
    State(s): State<AppState>,
    who: Principal,
    Path((ns, plural)): Path<(String, String)>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    list(s, who, Target::resolve(&plural, Some(ns), None)?, q, table).await
}

async fn create_global(
    State(s): State<AppState>,
    who: Principal,
    Path(plural): Path<String>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    create(
        s,
        who,
        Target::resolve(&plural, None, None)?,
        q,
        &headers,
        &body,
    )
    .await
}

async fn create_ns(
    State(s): State<AppState>,
    who: Principal,
    Path((ns, plural)): Path<(String, String)>,
    Query(q): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    create(
        s,
        who,
        Target::resolve(&plural, Some(ns), None)?,
        q,
        &headers,
        &body,
    )
    .await
}

async fn get_global(
    State(s): State<AppState>,
    who: Principal,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    get_one(s, who, Target::resolve(&plural, None, Some(name))?, table).await
}

async fn get_ns(
    State(s): State<AppState>,
    who: Principal,
    Path((ns, plural, name)): Path<(String, String, String)>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let table = q.table(&headers)?;
    get_one(
        s,
        who,
        Target::resolve(&plural, Some(ns), Some(name))?,
        table,
    )
    .await
}

macro_rules! write_adapters {
    ($global:ident, $ns:ident, $imp:ident, $status:expr) => {
        async fn $global(
            State(s): State<AppState>,
            who: Principal,
            Path((plural, name)): Path<(String, String)>,
            Query(q): Query<Params>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            let t = Target::resolve(&plural, None, Some(name))?;
            $imp(s, who, t, q, &headers, &body, $status).await
        }

        async fn $ns(
            State(s): State<AppState>,
            who: Principal,
            Path((ns, plural, name)): Path<(String, String, String)>,
            Query(q): Query<Params>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            let t = Target::resolve(&plural, Some(ns), Some(name))?;
            $imp(s, who, t, q, &headers, &body, $status).await
        }
    };
}

write_adapters!(put_global, put_ns, put, false);
write_adapters!(put_status_global, put_status_ns, put, true);
write_adapters!(patch_global, patch_ns, patch, false);
write_adapters!(patch_status_global, patch_status_ns, patch, true);

async fn delete_global(
    State(s): State<AppState>,
    who: Principal,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    body: Bytes,
) -> ApiResult<Response> {
    delete(
        s,
        who,
        Target::resolve(&plural, None, Some(name))?,
        q,
        &body,
    )
    .await
}

async fn delete_ns(
    State(s): State<AppState>,
    who: Principal,
    Path((ns, plural, name)): Path<(String, String, String)>,
    Query(q): Query<Params>,
    body: Bytes,
) -> ApiResult<Response> {
    delete(
        s,
        who,
        Target::resolve(&plural, Some(ns), Some(name))?,
        q,
        &body,
    )
    .await
}

// ---- bodies ----

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("application/json", |v| {
            v.split(';').next().unwrap_or(v).trim()
        })
}

/// Parse a JSON or YAML body into a JSON value. YAML goes through `api::yaml` (alias
/// expansion bounded by the body's size, nesting capped: 400 naming the limit).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
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

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, axum::Json(value)).into_response()
}

fn meta_str<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(value: &mut Value) -> ApiResult<&mut serde_json::Map<String, Value>> {
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
fn check_type(target: &Target, value: &mut Value) -> ApiResult<()> {
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
fn check_namespace(target: &Target, value: &mut Value) -> ApiResult<()> {
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

/// Validate with the `api` crate and return the normalized object.
fn validate(target: &Target, value: Value) -> ApiResult<Value> {
    let name = meta_str(&value, "name").unwrap_or_default().to_owned();
    match api::validate::object_from_value_as(target.kind, value) {
        Ok(obj) => Ok(obj.to_value()),
        Err(errors) => Err(ApiError::invalid(target.kind.kind, &name, &errors)),
    }
}

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

// ---- create ----

async fn create(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    // Permission before reading the body: parsing and field validation cost work.
    authorize(&who, Verb::Create, target.kind, target.ns(), None)?;
    let mut value = parse_body(headers, body)?;
    let warnings = q.field_validation()?.apply(target.kind, &mut value);
    let response = create_value(&state, &who, target, q.dry_run()?, value, "create").await?;
    Ok(with_warnings(response, &warnings))
}

/// Create `value` (already parsed) at `target` (a collection). Shared by POST and apply.
pub(crate) async fn create_value(
    state: &AppState,
    who: &Principal,
    mut target: Target,
    dry_run: bool,
    mut value: Value,
    verb: &str,
) -> ApiResult<Response> {
    check_type(&target, &mut value)?;
    check_namespace(&target, &mut value)?;
    {
        let meta = meta_mut(&mut value)?;
        let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let generated = generate_name(prefix);
            meta.insert("name".into(), Value::String(generated));
        }
        if let Some(url_name) = &target.name {
            let body_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
            if body_name != url_name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name:?}) does not match the name in the URL ({url_name:?})"
                )));
            }
        }
        for server_field in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            meta.remove(server_field);
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert(
            "creationTimestamp".into(),
            Value::String(registry::now_rfc3339()),
        );
        meta.insert("generation".into(), json!(1));
    }
    // Status belongs to controllers and agents: it is written through /status only.
    if target.kind.has_status
        && let Some(obj) = value.as_object_mut()
    {
        obj.remove("status");
    }
    // Permission first, so that a caller who may not write learns nothing from validation.
    let name = meta_str(&value, "name").unwrap_or_default().to_owned();
    authorize(who, Verb::Create, target.kind, target.ns(), Some(&name))?;
    let value = validate(&target, value)?;
    crate::node_restriction::check(who, None, &value)?;
    state.policies.check(target.kind, &value)?;
    let admission = admit(
        state,
        who,
        target.kind,
        Operation::Create,
        Some(&value),
        None,
    )
    .await?;
    target.name = Some(name.clone());
    let key = target.key();
    let bytes = encode(&value);
    if dry_run {
        let (existing, _) = state.store().get(&key).await?;
        if existing.is_some() {
            return Err(ApiError::already_exists(target.kind.plural, &name));
        }
        return Ok(written_response(StatusCode::CREATED, &value, &admission));
    }
    let mut compares = vec![Compare::Absent(key.clone())];
    let project_key = target.ns().map(|ns| object_key(project_kind(), None, ns));
    if let Some(pk) = &project_key {
        compares.push(Compare::Exists(pk.clone()));
    }
    let audit = Registry::audit_record(who, verb, target.kind, target.ns(), &name, Some(&bytes));
    let resp = state
        .registry
        .commit(Mutation::new(compares, vec![Op::put(key, bytes)], audit))
        .await?;
    if !resp.succeeded {
        let exists = matches!(resp.results.first(), Some(OpResult::Get(Some(_))));
        if exists {
            return Err(ApiError::already_exists(target.kind.plural, &name));
        }
        return Err(ApiError::not_found(
            "projects",
            target.ns().unwrap_or_default(),
        ));
    }
    let mut stored = value;
    if let Some(OpResult::Put { kv, .. }) = resp.results.first() {
        registry::set_resource_version(&mut stored, kv.mod_revision);
        sync_admission(state, target.kind, kv.mod_revision).await;
    }
    Ok(written_response(StatusCode::CREATED, &stored, &admission))
}

/// Admission by the installed policies: 403 listing the policies when a `deny` policy
/// fires (or is broken); otherwise the result, whose warnings go back to the client.
async fn admit(
    state: &AppState,
    who: &Principal,
    kind: &KindInfo,
    operation: Operation,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> ApiResult<AdmissionResult> {
    if state.policies.view().set.is_empty() {
        return Ok(AdmissionResult::default());
    }
    let started = std::time::Instant::now();
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
    if result.allowed() {
        Ok(result)
    } else {
        let subject = object.or(old_object);
        let name = subject
            .and_then(|o| meta_str(o, "name"))
            .unwrap_or_default();
        let denied = policies::denied(&result, kind.plural, name);
        crate::events::record_denial(state, who, operation, subject, &denied.message);
        Err(denied)
    }
}

/// After a write of a kind admission depends on, wait until admission has seen it.
async fn sync_admission(state: &AppState, kind: &KindInfo, revision: i64) {
    if PolicyEngine::affects_admission(kind.kind) {
        state.policies.wait_for(revision).await;
    }
}

/// A JSON response with the admission warnings as `Warning` headers.
fn written_response(code: StatusCode, value: &Value, admission: &AdmissionResult) -> Response {
    let mut response = json_response(code, value);
    for w in policies::warning_headers(admission) {
        response.headers_mut().append(WARNING, w);
    }
    response
}

fn project_kind() -> &'static KindInfo {
    api::kinds::PROJECT
}

// ---- get ----

pub(crate) async fn get_one(
    state: AppState,
    who: Principal,
    target: Target,
    table: Option<TableRequest>,
) -> ApiResult<Response> {
    authorize(
        &who,
        Verb::Get,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    let (kv, _) = state.store().get(&target.key()).await?;
    let kv = kv.ok_or_else(|| ApiError::not_found(target.kind.plural, target.name()))?;
    let value = decode(&kv)?;
    if !node_may_access(&who, &value) {
        return Err(ApiError::not_found(target.kind.plural, target.name()));
    }
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

// ---- list ----

/// Opaque continue token: the last key returned and the revision of the first page.
#[derive(serde::Serialize, Deserialize)]
struct ContinueToken {
    k: String,
    rv: i64,
}

fn encode_continue(key: &str, rv: i64) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        k: key.to_owned(),
        rv,
    })
    .expect("serializes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        ApiError::bad_request(
            "the continue token is not valid: it must be copied unchanged from a previous list",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !t.k.starts_with(prefix) {
        return Err(bad());
    }
    Ok(t)
}

/// Selectors of a list or watch, parsed once.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<api::selector::FieldSelector>,
    /// Only objects in this project (a project-scoped principal listing every project).
    project: Option<String>,
    project_kind: bool,
    /// A node agent's credential: only the objects of its node.
    node: Option<String>,
}

impl Filter {
    pub fn new(q: &Params, who: &Principal, target: &Target) -> ApiResult<Self> {
        let labels = match q.label_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => Some(LabelSelector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("labelSelector {s:?} is not valid: {e}"))
            })?),
            _ => None,
        };
        let fields = match q.field_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => {
                Some(api::selector::FieldSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("fieldSelector {s:?} is not valid: {e}"))
                })?)
            }
            _ => None,
        };
        Ok(Self {
            labels,
            fields,
            project: who.project.clone(),
            project_kind: target.kind.kind == "Project",
            node: (who.role == crate::auth::Role::Node)
                .then(|| who.node.clone().unwrap_or_default()),
        })
    }

    /// Whether every object passes (no selector, no project scope).
    pub fn is_trivial(&self) -> bool {
        self.labels.is_none()
            && self.fields.is_none()
            && self.project.is_none()
            && self.node.is_none()
    }

    pub fn matches(&self, object: &Value) -> bool {
        if let Some(node) = &self.node {
            let mine = match object.get("kind").and_then(Value::as_str) {
                Some("Allocation") => {
                    object.pointer("/spec/node").and_then(Value::as_str) == Some(node)
                }
                Some("Node") => meta_str(object, "name") == Some(node),
                _ => false,
            };
            if !mine {
                return false;
            }
        }
        if let Some(project) = &self.project {
            let visible = if self.project_kind {
                meta_str(object, "name") == Some(project)
            } else {
                meta_str(object, "namespace").is_none_or(|ns| ns == project)
            };
            if !visible {
                return false;
            }
        }
        if let Some(sel) = &self.labels {
            let empty = serde_json::Map::new();
            let labels = object
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let map: std::collections::BTreeMap<String, String> = labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            if !sel.matches(&map) {
                return false;
            }
        }
        if let Some(sel) = &self.fields
            && !sel.matches(object)
        {
            return false;
        }
        true
    }
}

/// The key prefix a list or watch reads, narrowed to the principal's project when scoped.
pub fn list_prefix(who: &Principal, target: &Target) -> String {
    match (target.ns(), &who.project) {
        (Some(ns), _) => kind_prefix(target.kind, Some(ns)),
        (None, Some(project)) if target.kind.namespaced() => {
            kind_prefix(target.kind, Some(project))
        }
        _ => kind_prefix(target.kind, None),
    }
}

pub(crate) async fn list(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    table: Option<TableRequest>,
) -> ApiResult<Response> {
    let verb = if q.is_watch() {
        Verb::Watch
    } else {
        Verb::List
    };
    authorize(&who, verb, target.kind, target.ns(), None)?;
    let filter = Filter::new(&q, &who, &target)?;
    if q.is_watch() {
        return crate::watch::watch(state, who, target, q, filter, table).await;
    }
    let prefix = list_prefix(&who, &target);
    let max = state.limits.max_page;
    let limit = q.limit.filter(|l| *l > 0).map_or(max, |l| l.min(max));
    let (mut start_after, first_rv) = match q.continue_.as_deref() {
        Some(t) if !t.is_empty() => {
            let t = decode_continue(t, &prefix)?;
            (Some(t.k), Some(t.rv))
        }
        _ => (None, None),
    };
    let mut items = Vec::new();
    let mut revision = first_rv;
    let more: bool;
    let mut last_key: Option<String> = None;
    'pages: loop {
        // With a selector most keys may not match: read in chunks, stop at `limit` matches.
        let chunk = (limit - items.len()).clamp(256.min(limit), max);
        let page = state
            .store()
            .range(RangeRequest {
                prefix: prefix.clone(),
                start_after: start_after.clone(),
                limit: chunk,
                count_only: false,
            })
            .await?;
        match revision {
            // A continue token's revision is the first page's: never one from the future
            // (a forged token), so that what the list answers is what the store holds.
            Some(rv) if rv < 1 || rv > page.revision => {
                return Err(ApiError::bad_request(
                    "the continue token is not valid: it must be copied unchanged from a previous list",
                ));
            }
            Some(_) => {}
            None => revision = Some(page.revision),
        }
        let scanned = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            last_key = Some(kv.key.clone());
            let object = decode(kv)?;
            if filter.matches(&object) {
                items.push(object);
            }
            if items.len() >= limit {
                more = page.more || i + 1 < scanned;
                break 'pages;
            }
        }
        if !page.more {
            more = false;
            break;
        }
        start_after.clone_from(&last_key);
    }
    let revision = revision.unwrap_or_default();
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if more && let Some(k) = &last_key {
        metadata["continue"] = Value::String(encode_continue(k, revision));
    }
    if let Some(req) = table {
        let t = tables::table(target.kind, &items, metadata, req, true);
        return Ok(json_response(StatusCode::OK, &t));
    }
    let list = json!({
        "apiVersion": api::API_VERSION,
        "kind": target.kind.list_kind(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

// ---- update ----

async fn put(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
    body: &[u8],
    status: bool,
) -> ApiResult<Response> {
    authorize(
        &who,
        Verb::Update,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    check_subresource(&who, target.kind, status, Verb::Update)?;
    let mut value = parse_body(headers, body)?;
    let warnings = q.field_validation()?.apply(target.kind, &mut value);
    check_type(&target, &mut value)?;
    check_namespace(&target, &mut value)?;
    let body_name = meta_str(&value, "name").unwrap_or_default();
    if body_name != target.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name:?}) does not match the name in the URL ({:?})",
            target.name()
        )));
    }
    let expected = match meta_str(&value, "resourceVersion") {
        Some(rv) => Some(parse_rv(rv)?),
        None => None,
    };
    let (current, _) = state.store().get(&target.key()).await?;
    let Some(current) = current else {
        return Err(ApiError::not_found(target.kind.plural, target.name()));
    };
    let Some(expected) = expected else {
        let name = target.name().to_owned();
        return Err(ApiError::invalid(
            target.kind.kind,
            &name,
            &api::FieldErrors(vec![api::FieldError {
                field: "metadata.resourceVersion".into(),
                message: "must be specified for an update: read the object, change it, and send it back with its resourceVersion".into(),
                line: None,
                column: None,
            }]),
        ));
    };
    let (stored, admission) = update_value(
        &state,
        &who,
        &target,
        &current,
        value,
        status,
        expected,
        q.dry_run()?,
        "update",
    )
    .await?;
    Ok(with_warnings(
        written_response(StatusCode::OK, &stored, &admission),
        &warnings,
    ))
}

fn parse_rv(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>().map_err(|_| {
        ApiError::bad_request(format!(
            "metadata.resourceVersion {rv:?} is not valid: copy it unchanged from the object you read"
        ))
    })
}

/// Replace the object at `current` with `candidate` (main resource) or take only its
/// status (`status == true`), guarded by `expected` (the `resourceVersion` the caller read).
#[allow(clippy::too_many_arguments)]
async fn update_value(
    state: &AppState,
    who: &Principal,
    target: &Target,
    current: &KeyValue,
    candidate: Value,
    status: bool,
    expected: i64,
    dry_run: bool,
    verb: &str,
) -> ApiResult<(Value, AdmissionResult)> {
    let old = decode(current)?;
    if !node_may_access(who, &old) {
        return Err(ApiError::not_found(target.kind.plural, target.name()));
    }
    let mut next = if status {
        let mut next = old.clone();
        match candidate.get("status") {
            Some(s) => next["status"] = s.clone(),
            None => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        next
    } else {
        let mut next = candidate;
        match old.get("status") {
            Some(s) if target.kind.has_status => next["status"] = s.clone(),
            _ if target.kind.has_status => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
            _ => {}
        }
        next
    };
    {
        // Server-owned metadata comes from the stored object.
        let old_meta = old.get("metadata").cloned().unwrap_or_default();
        let meta = meta_mut(&mut next)?;
        for field in ["uid", "creationTimestamp", "generation"] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("resourceVersion");
    }
    let mut next = validate(target, next)?;
    crate::node_restriction::check(who, Some(&old), &next)?;
    let admission = if status {
        // Status is written by controllers and agents; policies judge what users declare.
        AdmissionResult::default()
    } else {
        state.policies.check(target.kind, &next)?;
        admit(
            state,
            who,
            target.kind,
            Operation::Update,
            Some(&next),
            Some(&old),
        )
        .await?
    };
    if next.get("spec") != old.get("spec") {
        let generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        next["metadata"]["generation"] = json!(generation + 1);
    }
    // Nothing changed: answer the stored object without a write (and without an audit entry).
    let mut unchanged = old.clone();
    if let Some(m) = unchanged.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if dry_run || unchanged == next {
        if unchanged == next && expected != current.mod_revision {
            return Err(ApiError::conflict(target.kind.plural, target.name()));
        }
        registry::set_resource_version(&mut next, current.mod_revision);
        return Ok((next, admission));
    }
    let key = target.key();
    let bytes = encode(&next);
    let verb = if status {
        format!("{verb}-status")
    } else {
        verb.to_owned()
    };
    let audit = Registry::audit_record(
        who,
        &verb,
        target.kind,
        target.ns(),
        target.name(),
        Some(&bytes),
    );
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![Compare::ModRevision(key.clone(), expected)],
            vec![Op::put(key, bytes)],
            audit,
        ))
        .await?;
    if !resp.succeeded {
        return Err(match resp.results.first() {
            Some(OpResult::Get(None)) => ApiError::not_found(target.kind.plural, target.name()),
            _ => ApiError::conflict(target.kind.plural, target.name()),
        });
    }
    if let Some(OpResult::Put { kv, .. }) = resp.results.first() {
        registry::set_resource_version(&mut next, kv.mod_revision);
        if !status {
            sync_admission(state, target.kind, kv.mod_revision).await;
        }
    }
    Ok((next, admission))
}

// ---- patch and apply ----

enum PatchKind {
    Merge,
    Json,
    Apply,
}

fn patch_kind(headers: &HeaderMap) -> ApiResult<PatchKind> {
    match content_type(headers) {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok(PatchKind::Merge)
        }
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(format!(
            "patch content type {other:?} is not supported: use application/merge-patch+json, \
             application/json-patch+json or application/apply-patch+yaml"
        ))),
    }
}

async fn patch(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    headers: &HeaderMap,
    body: &[u8],
    status: bool,
) -> ApiResult<Response> {
    // Permission before reading the body: parsing and field validation cost work.
    authorize(
        &who,
        Verb::Patch,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    check_subresource(&who, target.kind, status, Verb::Patch)?;
    let kind = patch_kind(headers)?;
    let dry_run = q.dry_run()?;
    let validation = q.field_validation()?;
    let patch_value = match kind {
        PatchKind::Apply => {
            let mut h = HeaderMap::new();
            h.insert(
                CONTENT_TYPE,
                "application/yaml".parse().expect("valid header"),
            );
            let manifest = parse_body(&h, body)?;
            // Server-side apply sends whole manifests: as kube-apiserver, refuse one that
            // does not say what it is rather than guess.
            for field in ["apiVersion", "kind"] {
                if manifest
                    .get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::bad_request(format!(
                        "{field} must be set in an apply patch (application/apply-patch+yaml): \
                         send the whole manifest, with apiVersion: {} and kind: {}",
                        api::API_VERSION,
                        target.kind.kind
                    )));
                }
            }
            manifest
        }
        _ => parse_body(&HeaderMap::new(), body)?,
    };
    // Optimistic retries: a patch without a resourceVersion applies to the latest object.
    for _ in 0..8 {
        let (current, _) = state.store().get(&target.key()).await?;
        let Some(current) = current else {
            if matches!(kind, PatchKind::Apply) && !status {
                let collection = Target {
                    kind: target.kind,
                    namespace: target.namespace.clone(),
                    name: target.name.clone(),
                };
                let mut value = patch_value;
                let warnings = validation.apply(target.kind, &mut value);
                let response =
                    create_value(&state, &who, collection, dry_run, value, "apply").await?;
                return Ok(with_warnings(response, &warnings));
            }
            return Err(ApiError::not_found(target.kind.plural, target.name()));
        };
        let old = decode(&current)?;
        let mut next = old.clone();
        match kind {
            PatchKind::Merge => json_patch::merge(&mut next, &patch_value),
            PatchKind::Json => {
                let ops: json_patch::Patch =
                    serde_json::from_value(patch_value.clone()).map_err(|e| {
                        ApiError::bad_request(format!("the JSON patch is not valid: {e}"))
                    })?;
                json_patch::patch(&mut next, &ops).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!("the JSON patch cannot be applied: {e}"),
                    )
                })?;
            }
            PatchKind::Apply => {
                let mut manifest = patch_value.clone();
                check_type(&target, &mut manifest)?;
                check_namespace(&target, &mut manifest)?;
                apply_manifest(&mut next, &manifest, status);
            }
        }
        check_namespace(&target, &mut next)?;
        let warnings = validation.apply(target.kind, &mut next);
        let pinned = meta_str(&next, "resourceVersion")
            .filter(|rv| Some(*rv) != meta_str(&old, "resourceVersion"))
            .map(parse_rv)
            .transpose()?;
        let expected = pinned.unwrap_or(current.mod_revision);
        let verb = if matches!(kind, PatchKind::Apply) {
            "apply"
        } else {
            "patch"
        };
        match update_value(
            &state, &who, &target, &current, next, status, expected, dry_run, verb,
        )
        .await
        {
            Err(e) if e.reason == "Conflict" && pinned.is_none() => continue,
            Err(e) => return Err(e),
            Ok((stored, admission)) => {
                return Ok(with_warnings(
                    written_response(StatusCode::OK, &stored, &admission),
                    &warnings,
                ));
            }
        }
    }
    Err(ApiError::conflict(target.kind.plural, target.name()))
}

/// Apply a whole manifest onto the stored object: the manifest's spec, labels and
/// annotations replace the stored ones; status and server-owned metadata stay.
fn apply_manifest(object: &mut Value, manifest: &Value, status: bool) {
    if status {
        if let Some(s) = manifest.get("status") {
            object["status"] = s.clone();
        }
        return;
    }
    match manifest.get("spec") {
        Some(spec) => object["spec"] = spec.clone(),
        None => {
            if let Some(o) = object.as_object_mut() {
                o.remove("spec");
            }
        }
    }
    for field in ["labels", "annotations"] {
        match manifest.get("metadata").and_then(|m| m.get(field)) {
            Some(v) => object["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove(field);
                }
            }
        }
    }
}

// ---- delete ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    #[serde(default)]
    preconditions: Option<Preconditions>,
    #[serde(default)]
    dry_run: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    resource_version: Option<String>,
    uid: Option<String>,
}

pub(crate) async fn delete(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    body: &[u8],
) -> ApiResult<Response> {
    authorize(
        &who,
        Verb::Delete,
        target.kind,
        target.ns(),
        target.name.as_deref(),
    )?;
    let options: DeleteOptions = if body.is_empty() {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions are not valid: {e}")))?
    };
    let dry_run = q.dry_run()?
        || options
            .dry_run
            .as_ref()
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    let key = target.key();
    let (current, _) = state.store().get(&key).await?;
    let current = current.ok_or_else(|| ApiError::not_found(target.kind.plural, target.name()))?;
    let object = decode(&current)?;
    let mut expected = current.mod_revision;
    if let Some(p) = &options.preconditions {
        if let Some(uid) = &p.uid
            && meta_str(&object, "uid") != Some(uid)
        {
            return Err(ApiError::conflict(target.kind.plural, target.name()));
        }
        if let Some(rv) = &p.resource_version {
            expected = parse_rv(rv)?;
        }
    }
    if target.kind.kind == "Project" {
        ensure_project_empty(&state, target.name()).await?;
    }
    let admission = admit(
        &state,
        &who,
        target.kind,
        Operation::Delete,
        None,
        Some(&object),
    )
    .await?;
    if dry_run {
        return Ok(written_response(StatusCode::OK, &object, &admission));
    }
    let audit = Registry::audit_record(
        &who,
        "delete",
        target.kind,
        target.ns(),
        target.name(),
        None,
    );
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![Compare::ModRevision(key.clone(), expected)],
            vec![Op::Delete(key)],
            audit,
        ))
        .await?;
    if !resp.succeeded {
        return Err(match resp.results.first() {
            Some(OpResult::Get(None)) => ApiError::not_found(target.kind.plural, target.name()),
            _ => ApiError::conflict(target.kind.plural, target.name()),
        });
    }
    sync_admission(&state, target.kind, resp.revision).await;
    Ok(written_response(StatusCode::OK, &object, &admission))
}

/// A project is deleted only when nothing lives in it any more.
async fn ensure_project_empty(state: &AppState, project: &str) -> ApiResult<()> {
    for kind in api::KINDS.iter().filter(|k| k.namespaced()) {
        let page = state
            .store()
            .range(RangeRequest {
                prefix: kind_prefix(kind, Some(project)),
                limit: 1,
                count_only: true,
                ..RangeRequest::default()
            })
            .await?;
        if page.count > 0 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "project {project:?} still holds {} {}: delete them first \
                     (meridian delete {} --all -n {project})",
                    page.count, kind.plural, kind.singular
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_roundtrip_and_reject_other_prefixes() {
        let t = encode_continue("/registry/workloads/finance/a", 42);
        let back = decode_continue(&t, "/registry/workloads/").expect("valid");
        assert_eq!(back.k, "/registry/workloads/finance/a");
        assert_eq!(back.rv, 42);
        assert!(decode_continue(&t, "/registry/sites/").is_err());
        assert!(decode_continue("garbage!", "/registry/").is_err());
    }

    #[test]
    fn apply_replaces_spec_and_labels_but_keeps_status() {
        let mut stored = json!({
            "metadata": {"name": "a", "labels": {"x": "1"}, "uid": "u"},
            "spec": {"replicas": 1, "old": true},
            "status": {"phase": "Running"}
        });
        let manifest =
            json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"replicas": 2}});
        apply_manifest(&mut stored, &manifest, false);
        assert_eq!(stored["spec"], json!({"replicas": 2}));
        assert_eq!(stored["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(stored["metadata"]["uid"], json!("u"));
        assert_eq!(stored["status"]["phase"], json!("Running"));
    }
}
