//! OpenAPI v2 (Swagger 2.0) at `/openapi/v2`, for the clients that predate OpenAPI v3:
//! kubectl before 1.27 validates manifests against it (`kubectl apply` with its default
//! `--validate=true`) and reads `kubectl explain` from it.
//!
//! The document is derived from the OpenAPI v3 one ([`crate::discovery`]): component
//! schemas become `definitions`, `$ref`s are rewritten, and what Swagger 2.0 cannot say
//! (`nullable`, `oneOf`/`anyOf`) is folded into enums or left open, so that validation
//! is never stricter than the server. Every kind keeps `x-kubernetes-group-version-kind`,
//! by which kubectl finds the schema of a manifest.
//!
//! kubectl asks for protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`)
//! and cannot read JSON in its place, so that is answered with the `definitions` encoded
//! as gnostic's `openapi.v2.Document` message (the fields kubectl reads: swagger, info,
//! definitions with types, properties, items, additionalProperties, required, enum,
//! descriptions and vendor extensions; paths only in JSON); anything else gets JSON.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi/v2", get(serve))
}

/// JSON and protobuf forms, built once.
fn encoded() -> &'static (Bytes, Bytes) {
    static DOC: OnceLock<(Bytes, Bytes)> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = document();
        let json = serde_json::to_vec(&doc).expect("a JSON value always serializes");
        (Bytes::from(json), Bytes::from(protobuf::document(&doc)))
    })
}

async fn serve(headers: HeaderMap) -> Response {
    let wants_protobuf = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').next().unwrap_or_default().trim())
        .next()
        .is_some_and(|m| m.starts_with("application/com.github.proto-openapi.spec.v2"));
    let (json, pb) = encoded();
    let (body, content_type) = if wants_protobuf {
        // Go's mime parser (client-go) refuses the `@` of the requested media type.
        (pb.clone(), "application/octet-stream")
    } else {
        (json.clone(), "application/json")
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Swagger 2.0 document.
pub fn document() -> Value {
    let v3 = crate::discovery::openapi_document();
    let mut definitions = Map::new();
    if let Some(schemas) = v3.pointer("/components/schemas").and_then(Value::as_object) {
        for (name, schema) in schemas {
            definitions.insert(name.clone(), schema_to_v2(schema));
        }
    }
    let mut paths = Map::new();
    if let Some(v3_paths) = v3.get("paths").and_then(Value::as_object) {
        for (path, item) in v3_paths {
            paths.insert(path.clone(), path_to_v2(item));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Meridian", "version": env!("CARGO_PKG_VERSION")},
        "consumes": ["application/json", "application/yaml"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

fn rewrite_ref(r: &str) -> String {
    r.replace("#/components/schemas/", "#/definitions/")
}

/// A v3 schema as Swagger 2.0 can say it.
pub fn schema_to_v2(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        // `true` (anything) and `false` have no Swagger form: an open schema.
        return json!({});
    };
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "$ref" => {
                out.insert(
                    "$ref".into(),
                    Value::String(rewrite_ref(value.as_str().unwrap_or_default())),
                );
            }
            "nullable" | "oneOf" | "anyOf" | "not" | "writeOnly" | "deprecated" | "examples" => {}
            "type" => match value {
                Value::Array(types) => {
                    if let Some(t) = types.iter().find(|t| t.as_str() != Some("null")) {
                        out.insert("type".into(), t.clone());
                    }
                }
                Value::String(t) if t == "null" => {}
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "properties" => {
                let props: Map<String, Value> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), schema_to_v2(v)))
                    .collect();
                out.insert("properties".into(), Value::Object(props));
            }
            "items" => {
                out.insert("items".into(), schema_to_v2(value));
            }
            "additionalProperties" => {
                out.insert(
                    "additionalProperties".into(),
                    match value {
                        Value::Bool(b) => Value::Bool(*b),
                        other => schema_to_v2(other),
                    },
                );
            }
            "allOf" => {
                let all: Vec<Value> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(schema_to_v2)
                    .collect();
                out.insert("allOf".into(), Value::Array(all));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // One `$ref` in `allOf` (how a documented reference is written) is the reference.
    if let Some(Value::Array(all)) = out.get("allOf")
        && all.len() == 1
        && let Some(r) = all[0].get("$ref").cloned()
    {
        out.remove("allOf");
        out.insert("$ref".into(), r);
    }
    // A choice among constants (a documented enum) is an enum.
    for choice in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alternatives)) = obj.get(choice)
            && !out.contains_key("enum")
        {
            let mut values = Vec::new();
            let mut kind = None;
            let all_constants = alternatives.iter().all(|a| {
                let constants = a
                    .get("enum")
                    .and_then(Value::as_array)
                    .cloned()
                    .or_else(|| a.get("const").map(|c| vec![c.clone()]));
                match constants {
                    Some(c) => {
                        values.extend(c);
                        if kind.is_none() {
                            kind = a.get("type").cloned();
                        }
                        true
                    }
                    None => false,
                }
            });
            if all_constants && !values.is_empty() {
                out.insert("enum".into(), Value::Array(values));
                if !out.contains_key("type") {
                    out.insert("type".into(), kind.unwrap_or_else(|| json!("string")));
                }
            }
        }
    }
    // Swagger requires `items` on arrays; kubectl refuses a document without.
    if out.get("type").and_then(Value::as_str) == Some("array") && !out.contains_key("items") {
        out.insert("items".into(), json!({}));
    }
    Value::Object(out)
}

fn path_to_v2(item: &Value) -> Value {
    let mut out = Map::new();
    let Some(item) = item.as_object() else {
        return Value::Object(out);
    };
    for (method, op) in item {
        if method == "parameters" {
            out.insert("parameters".into(), params_to_v2(op));
            continue;
        }
        let Some(op) = op.as_object() else { continue };
        let mut o = Map::new();
        for (key, value) in op {
            match key.as_str() {
                "requestBody" => {}
                "parameters" => {
                    o.insert("parameters".into(), params_to_v2(value));
                }
                "responses" => {
                    let responses: Map<String, Value> = value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(code, r)| {
                            let schema = r
                                .pointer("/content/application~1json/schema")
                                .map(schema_to_v2);
                            let mut resp = json!({"description": r.get("description").cloned().unwrap_or(json!(""))});
                            if let Some(s) = schema {
                                resp["schema"] = s;
                            }
                            (code.clone(), resp)
                        })
                        .collect();
                    o.insert("responses".into(), Value::Object(responses));
                }
                _ => {
                    o.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(body) = op.get("requestBody") {
            let schema = body
                .get("content")
                .and_then(Value::as_object)
                .and_then(|c| c.values().next())
                .and_then(|c| c.get("schema"))
                .map_or_else(|| json!({"type": "object"}), schema_to_v2);
            let params = o
                .entry("parameters")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(p) = params.as_array_mut() {
                p.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
            }
            let consumes: Vec<Value> = body
                .get("content")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(media, _)| Value::String(media.clone()))
                .collect();
            o.insert("consumes".into(), Value::Array(consumes));
        }
        out.insert(method.clone(), Value::Object(o));
    }
    Value::Object(out)
}

/// v3 parameters (`schema: {type}`) as v2 ones (`type` beside `in`).
fn params_to_v2(params: &Value) -> Value {
    let converted = params
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut p = p.clone();
            if let Some(o) = p.as_object_mut() {
                let t = o
                    .remove("schema")
                    .and_then(|s| s.get("type").cloned())
                    .unwrap_or(json!("string"));
                o.insert("type".into(), t);
            }
            p
        })
        .collect();
    Value::Array(converted)
}

/// The protobuf wire encoding of the document, as gnostic's `openapi.v2.Document`
/// (`openapiv2/OpenAPIv2.proto`). Only what kubectl reads is encoded; field numbers are
/// those of that file.
mod protobuf {
    use serde_json::Value;

    /// A message being written.
    #[derive(Default)]
    struct Message(Vec<u8>);

    impl Message {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }

        fn tag(&mut self, field: u32, wire_type: u8) {
            self.varint(u64::from(field) << 3 | u64::from(wire_type));
        }

        fn bytes(&mut self, field: u32, data: &[u8]) {
            self.tag(field, 2);
            self.varint(data.len() as u64);
            self.0.extend_from_slice(data);
        }

        fn string(&mut self, field: u32, s: &str) {
            if !s.is_empty() {
                self.bytes(field, s.as_bytes());
            }
        }

        fn message(&mut self, field: u32, m: Message) {
            self.bytes(field, &m.0);
        }

        fn boolean(&mut self, field: u32, b: bool) {
            self.tag(field, 0);
            self.varint(u64::from(b));
        }
    }

    /// `openapi.v2.Any` holding a value as YAML (field 2), as kube-openapi reads it.
    fn any(value: &Value) -> Message {
        let mut m = Message::default();
        let yaml = serde_yaml_ng::to_string(value).unwrap_or_default();
        m.string(2, &yaml);
        m
    }

    fn named(name: &str, value: Message) -> Message {
        let mut m = Message::default();
        m.string(1, name);
        m.message(2, value);
        m
    }

    fn schema(s: &Value) -> Message {
        let mut m = Message::default();
        let Some(obj) = s.as_object() else {
            return m;
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
        m.string(1, text("$ref"));
        m.string(2, text("format"));
        m.string(3, text("title"));
        m.string(4, text("description"));
        for r in obj
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.string(19, r.as_str().unwrap_or_default());
        }
        for e in obj
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.message(20, any(e));
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(b)) => {
                let mut item = Message::default();
                item.boolean(2, *b);
                m.message(21, item);
            }
            Some(other @ Value::Object(_)) => {
                let mut item = Message::default();
                item.message(1, schema(other));
                m.message(21, item);
            }
            _ => {}
        }
        if let Some(t) = obj.get("type").and_then(Value::as_str) {
            let mut item = Message::default();
            item.string(1, t);
            m.message(22, item);
        }
        if let Some(items) = obj.get("items") {
            let mut item = Message::default();
            match items {
                Value::Array(list) => list.iter().for_each(|i| item.message(1, schema(i))),
                one => item.message(1, schema(one)),
            }
            m.message(23, item);
        }
        for a in obj
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.message(24, schema(a));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            let mut p = Message::default();
            for (name, s) in props {
                p.message(1, named(name, schema(s)));
            }
            m.message(25, p);
        }
        for (key, value) in obj {
            if key.starts_with("x-") {
                m.message(31, named(key, any(value)));
            }
        }
        m
    }

    pub fn document(doc: &Value) -> Vec<u8> {
        let mut d = Message::default();
        d.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
        let mut info = Message::default();
        info.string(1, doc["info"]["title"].as_str().unwrap_or_default());
        info.string(2, doc["info"]["version"].as_str().unwrap_or_default());
        d.message(2, info);
        let mut definitions = Message::default();
        for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
            definitions.message(1, named(name, schema(s)));
        }
        d.message(9, definitions);
        d.0
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn varints_and_fields_use_the_wire_format() {
            let mut m = Message::default();
            m.varint(300);
            assert_eq!(m.0, [0xac, 0x02]);
            let mut m = Message::default();
            m.string(1, "2.0");
            assert_eq!(m.0, [0x0a, 3, b'2', b'.', b'0']);
            let mut m = Message::default();
            m.boolean(2, true);
            assert_eq!(m.0, [0x10, 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_definition_with_its_gvk_and_refs_resolve() {
        let doc = document();
        let defs = doc["definitions"].as_object().expect("definitions");
        for k in api::KINDS {
            let d = &defs[k.kind];
            assert_eq!(
                d["x-kubernetes-group-version-kind"][0]["kind"], k.kind,
                "{}",
                k.kind
            );
            assert_eq!(
                d["properties"]["spec"].is_object(),
                k.has_spec(),
                "{}",
                k.kind
            );
        }
        let text = serde_json::to_string(&doc).expect("json");
        assert!(!text.contains("#/components/"), "a v3 reference is left");
        for r in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = r.split('"').next().expect("name");
            assert!(defs.contains_key(name), "dangling $ref {name}");
        }
        assert!(!text.contains("\"nullable\""));
        assert!(!text.contains("\"oneOf\"") && !text.contains("\"anyOf\""));
        let patch =
            &doc["paths"]["/apis/meridian.dev/v1/namespaces/{namespace}/workloads/{name}"]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
        );
    }

    #[test]
    fn arrays_always_have_items_and_types_are_single() {
        fn walk(v: &Value) {
            match v {
                Value::Object(o) => {
                    if o.get("type").and_then(Value::as_str) == Some("array") {
                        assert!(o.contains_key("items"), "{v}");
                    }
                    if let Some(t) = o.get("type")
                        && o.contains_key("properties")
                    {
                        assert!(t.is_string(), "{v}");
                    }
                    o.values().for_each(walk);
                }
                Value::Array(a) => a.iter().for_each(walk),
                _ => {}
            }
        }
        walk(&document()["definitions"]);
    }
}
