//! Discovery and schema documents: `/version`, `/api`, `/apis`, `/apis/meridian.dev/v1`,
//! and OpenAPI v3 at `/openapi/v3` (generated from the `api` crate's types).

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(core_versions))
        .route("/apis", get(groups))
        .route("/apis/meridian.dev", get(group))
        .route("/apis/meridian.dev/v1", get(resources))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/apis/meridian.dev/v1", get(openapi_v1))
}

async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "31",
        "gitVersion": format!("v1.31.0+meridian-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": crate::COMMIT,
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        "meridianVersion": env!("CARGO_PKG_VERSION"),
    }))
}

async fn core_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    }))
}

fn group_doc() -> Value {
    let gv = json!({"groupVersion": api::API_VERSION, "version": api::VERSION});
    json!({
        "name": api::GROUP,
        "versions": [gv],
        "preferredVersion": gv,
    })
}

async fn groups() -> Json<Value> {
    Json(json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group_doc()],
    }))
}

async fn group() -> Json<Value> {
    let mut doc = group_doc();
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Json(doc)
}

/// The `APIResourceList` of `meridian.dev/v1`.
pub fn resource_list() -> Value {
    let mut resources = Vec::new();
    for k in api::KINDS {
        resources.push(json!({
            "name": k.plural,
            "singularName": k.singular,
            "namespaced": k.namespaced(),
            "kind": k.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": k.short_names,
            "categories": ["meridian"],
        }));
        if k.has_status {
            resources.push(json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": k.namespaced(),
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if k == api::kinds::ALLOCATION {
            // The task's output (`crate::logs`), like pods/log.
            resources.push(json!({
                "name": format!("{}/log", k.plural),
                "singularName": "",
                "namespaced": true,
                "kind": k.kind,
                "verbs": ["get"],
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api::API_VERSION,
        "resources": resources,
    })
}

async fn resources() -> Json<Value> {
    Json(resource_list())
}

async fn openapi_index() -> Json<Value> {
    Json(json!({
        "paths": {
            "apis/meridian.dev/v1": {"serverRelativeURL": "/openapi/v3/apis/meridian.dev/v1"}
        }
    }))
}

async fn openapi_v1() -> Json<Value> {
    Json(openapi_document())
}

/// OpenAPI 3.0 document of every kind and its endpoints.
pub fn openapi_document() -> Value {
    let mut schemas = serde_json::Map::new();
    for (name, schema) in api::schema::openapi_schemas() {
        schemas.insert(name, schema);
    }
    schemas.insert(
        "Status".into(),
        json!({"type": "object", "description": "Kubernetes-style error or success status",
               "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
               "status": {"type": "string"}, "message": {"type": "string"},
               "reason": {"type": "string"}, "code": {"type": "integer"},
               "details": {"type": "object"}}}),
    );
    let mut paths = serde_json::Map::new();
    for k in api::KINDS {
        let gvk = json!([{"group": api::GROUP, "version": api::VERSION, "kind": k.kind}]);
        if let Some(s) = schemas.get_mut(k.kind).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
        let one = json!({"$ref": format!("#/components/schemas/{}", k.kind)});
        let ok = |description: &str, schema: &Value| {
            json!({"description": description,
                   "content": {"application/json": {"schema": schema}}})
        };
        let list_schema = json!({"type": "object", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object"}, "items": {"type": "array", "items": one}}});
        let errors =
            json!({"default": ok("error", &json!({"$ref": "#/components/schemas/Status"}))});
        let body = json!({"required": true, "content": {
            "application/json": {"schema": one}, "application/yaml": {"schema": one}}});
        let patch_body = json!({"required": true, "content": {
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "array"}},
            "application/apply-patch+yaml": {"schema": one}}});
        let base = if k.namespaced() {
            format!(
                "/apis/meridian.dev/v1/namespaces/{{namespace}}/{}",
                k.plural
            )
        } else {
            format!("/apis/meridian.dev/v1/{}", k.plural)
        };
        let merge = |mut responses: Value| {
            if let (Some(r), Some(e)) = (responses.as_object_mut(), errors.as_object()) {
                r.extend(e.clone());
            }
            responses
        };
        // As kube-apiserver publishes them: kubectl looks for `fieldValidation` among the
        // parameters of the PATCH operation carrying the kind's GVK before it relies on
        // server-side validation.
        let op_gvk = json!({"group": api::GROUP, "version": api::VERSION, "kind": k.kind});
        let query = |name: &str, description: &str| {
            json!({"name": name, "in": "query", "description": description,
                   "schema": {"type": "string"}, "uniqueItems": true})
        };
        let write_params = json!([
            query("dryRun", "All: validate and admit, write nothing."),
            query(
                "fieldManager",
                "Name of the writer (accepted, not recorded)."
            ),
            query(
                "fieldValidation",
                "Strict (default), Warn or Ignore: what to do with fields the kind does not declare."
            ),
        ]);
        let read_params = json!([
            query("labelSelector", "Label selector (kubectl -l)."),
            query(
                "fieldSelector",
                "Field selector: metadata.name, metadata.namespace."
            ),
            query(
                "resourceVersion",
                "Watch from this revision; list at least this revision (0: any, unset: the newest).",
            ),
            query("limit", "Page size."),
            query("continue", "Token of the next page."),
            query("watch", "Stream changes."),
        ]);
        let op = |mut operation: Value, action: &str, params: &Value| {
            if let Some(o) = operation.as_object_mut() {
                o.insert("x-kubernetes-group-version-kind".into(), op_gvk.clone());
                o.insert("x-kubernetes-action".into(), json!(action));
                o.insert("parameters".into(), params.clone());
            }
            operation
        };
        let path_params = |named: bool| {
            let mut p = Vec::new();
            if named {
                p.push(json!({"name": "name", "in": "path", "required": true,
                              "description": "name of the object", "schema": {"type": "string"}}));
            }
            if k.namespaced() {
                p.push(json!({"name": "namespace", "in": "path", "required": true,
                              "description": "the project", "schema": {"type": "string"}}));
            }
            Value::Array(p)
        };
        let none = json!([]);
        paths.insert(base.clone(), json!({
            "get": op(json!({"operationId": format!("list{}", k.kind), "tags": [k.kind],
                    "description": format!("List or watch {} (labelSelector, fieldSelector, limit, continue, watch, resourceVersion)", k.plural),
                    "responses": merge(json!({"200": ok("list", &list_schema)}))}), "list", &read_params),
            "post": op(json!({"operationId": format!("create{}", k.kind), "tags": [k.kind],
                     "requestBody": body,
                     "responses": merge(json!({"201": ok("created", &one)}))}), "post", &write_params),
            "parameters": path_params(false),
        }));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": op(json!({"operationId": format!("read{}", k.kind), "tags": [k.kind],
                        "responses": merge(json!({"200": ok("the object", &one)}))}), "get", &none),
                "put": op(json!({"operationId": format!("replace{}", k.kind), "tags": [k.kind],
                        "requestBody": body,
                        "responses": merge(json!({"200": ok("replaced", &one)}))}), "put", &write_params),
                "patch": op(json!({"operationId": format!("patch{}", k.kind), "tags": [k.kind],
                          "requestBody": patch_body,
                          "responses": merge(json!({"200": ok("patched", &one)}))}), "patch", &write_params),
                "delete": op(json!({"operationId": format!("delete{}", k.kind), "tags": [k.kind],
                           "responses": merge(json!({"200": ok("deleted", &one)}))}), "delete", &none),
                "parameters": path_params(true),
            }),
        );
        if k.has_status {
            paths.insert(
                format!("{base}/{{name}}/status"),
                json!({
                    "get": op(json!({"operationId": format!("read{}Status", k.kind), "tags": [k.kind],
                            "responses": merge(json!({"200": ok("the object", &one)}))}), "get", &none),
                    "put": op(json!({"operationId": format!("replace{}Status", k.kind), "tags": [k.kind],
                            "requestBody": body,
                            "responses": merge(json!({"200": ok("replaced", &one)}))}), "put", &write_params),
                    "patch": op(json!({"operationId": format!("patch{}Status", k.kind), "tags": [k.kind],
                              "requestBody": patch_body,
                              "responses": merge(json!({"200": ok("patched", &one)}))}), "patch", &write_params),
                    "parameters": path_params(true),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Meridian", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"BearerToken": []}],
    })
}
