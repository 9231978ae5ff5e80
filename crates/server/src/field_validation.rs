//! Server-side field validation, as Kubernetes does it: the `fieldValidation` query
//! parameter of create, update and patch says what to do with fields a kind does not
//! declare.
//!
//! - `Strict` (Meridian's default when the parameter is absent): refuse the request with a
//!   422 whose `details.causes[].field` names each unknown field (the `api` crate's
//!   decoding does that already).
//! - `Warn`: drop the unknown fields and answer a `Warning: 299` header per field, which
//!   kubectl prints as `Warning: unknown field "spec.foo"`.
//! - `Ignore`: drop them silently.
//!
//! Kubernetes' default is `Warn`; Meridian keeps `Strict`, because a misspelt field in a
//! placement or residency rule silently dropped would place work where it must not run.
//! kubectl sends `Strict` by default anyway (`--validate=true`).

use axum::http::HeaderValue;
use axum::http::header::WARNING;
use axum::response::Response;
use serde_json::Value;

use api::KindInfo;

use crate::error::{ApiError, ApiResult};

/// At most this many `Warning` headers name unknown fields; one more counts the rest.
const MAX_WARNINGS: usize = 50;

/// What to do with unknown fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    /// The `fieldValidation` query parameter.
    pub fn parse(param: Option<&str>) -> ApiResult<Self> {
        match param {
            None | Some("" | "Strict") => Ok(Self::Strict),
            Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation={other:?} is not valid: use Strict, Warn or Ignore"
            ))),
        }
    }

    /// Apply the mode to an object about to be validated: with `Warn` or `Ignore`,
    /// remove the fields `kind` does not declare. Returns the warnings to send.
    pub fn apply(self, kind: &KindInfo, value: &mut Value) -> Vec<String> {
        if self == Self::Strict {
            return Vec::new();
        }
        let removed = prune_unknown(kind, value);
        if self == Self::Ignore {
            return Vec::new();
        }
        let total = removed.len();
        let mut warnings: Vec<String> = removed
            .into_iter()
            .take(MAX_WARNINGS)
            .map(|path| format!("unknown field {path:?}"))
            .collect();
        if total > MAX_WARNINGS {
            warnings.push(format!(
                "{} more unknown fields were dropped",
                total - MAX_WARNINGS
            ));
        }
        warnings
    }
}

/// Remove every field of `value` that `kind`'s types do not declare; returns their
/// dotted paths (`spec.task.comand`).
///
/// One walk of the value beside the kind's OpenAPI schema (the one `/openapi/v3`
/// publishes, generated from the `api` types) finds them all, in time linear in the size
/// of the body: a caller who sends a large object with many unknown fields costs one
/// pass, not one decode per field. Where the schema cannot say (a value that is one of
/// several shapes), decoding reports what is left, a few times at most.
pub fn prune_unknown(kind: &KindInfo, value: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    let schemas = schemas();
    if let Some(schema) = schemas.get(kind.kind) {
        let mut path = String::new();
        prune_by_schema(schemas, schema, value, &mut path, &mut removed, 0);
    }
    // What the walk could not decide (untagged shapes). Each round decodes the whole
    // object, so the rounds are few.
    for _ in 0..MAX_DECODE_ROUNDS {
        let Err(errors) = api::validate::decode_as(kind, value.clone()) else {
            break;
        };
        let Some(unknown) = errors
            .iter()
            .find(|e| e.message.starts_with("unknown field"))
        else {
            break;
        };
        if !remove_path(value, &unknown.field) {
            break;
        }
        removed.push(unknown.field.clone());
    }
    removed
}

/// Decodes after the schema walk: enough for the shapes the schema leaves open.
const MAX_DECODE_ROUNDS: usize = 8;
/// The schema walk stops below this depth (validation refuses such objects anyway).
const MAX_DEPTH: usize = 64;

/// The component schemas, generated once.
fn schemas() -> &'static serde_json::Map<String, Value> {
    static SCHEMAS: std::sync::OnceLock<serde_json::Map<String, Value>> =
        std::sync::OnceLock::new();
    SCHEMAS.get_or_init(api::schema::openapi_schemas)
}

/// Follow `$ref` and single-element `allOf` (how schemars wraps a documented or optional
/// reference) to the schema that describes the value.
fn resolve<'a>(schemas: &'a serde_json::Map<String, Value>, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(api::schema::REF_PREFIX))
        {
            match schemas.get(name) {
                Some(s) => schema = s,
                None => return schema,
            }
        } else if let Some([only]) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            schema = only;
        } else {
            return schema;
        }
    }
    schema
}

fn prune_by_schema(
    schemas: &serde_json::Map<String, Value>,
    schema: &Value,
    value: &mut Value,
    path: &mut String,
    removed: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(schemas, schema);
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                // A map (`labels`): every key is allowed; its values have one schema.
                if let Some(values) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    for (key, item) in map.iter_mut() {
                        let len = push_key(path, key);
                        prune_by_schema(schemas, values, item, path, removed, depth + 1);
                        path.truncate(len);
                    }
                }
                return;
            };
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            map.retain(|key, _| {
                let keep = !closed || properties.contains_key(key);
                if !keep {
                    let len = push_key(path, key);
                    removed.push(path.clone());
                    path.truncate(len);
                }
                keep
            });
            for (key, item) in map.iter_mut() {
                if let Some(property) = properties.get(key) {
                    let len = push_key(path, key);
                    prune_by_schema(schemas, property, item, path, removed, depth + 1);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    prune_by_schema(schemas, item_schema, item, path, removed, depth + 1);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// Append `.key` (or `key` at the root) to a dotted path; returns the length to cut back to.
fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    len
}

/// Remove the field at a dotted path with `[i]` indices (`spec.a[0].b`).
fn remove_path(value: &mut Value, path: &str) -> bool {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        }
        while let Some(close) = rest.find(']') {
            match rest[1..close].parse::<usize>() {
                Ok(i) => segments.push(Segment::Index(i)),
                Err(_) => return false,
            }
            rest = &rest[close + 1..];
        }
    }
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        current = match (segment, current) {
            (Segment::Key(k), Value::Object(m)) => match m.get_mut(*k) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, current) {
        (Segment::Key(k), Value::Object(m)) => m.remove(*k).is_some(),
        _ => false,
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Add `Warning: 299 - "…"` headers to a response.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append(WARNING, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workload() -> Value {
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "p", "bogus": 1},
            "spec": {"type": "service", "replicas": 1, "color": "blue",
                     "task": {"driver": "exec", "command": ["x"], "comand": ["y"],
                              "resources": {"cpu": 1, "memory": "1Gi"}},
                     "placement": {"matchExpressions": [
                         {"key": "site.name", "operator": "In", "values": ["a"], "weight": 3}]}},
        })
    }

    #[test]
    fn warn_removes_every_unknown_field_and_names_it() {
        let kind = api::kinds::WORKLOAD;
        let mut value = workload();
        let mut warnings = FieldValidation::Warn.apply(kind, &mut value);
        warnings.sort();
        assert_eq!(
            warnings,
            [
                r#"unknown field "metadata.bogus""#,
                r#"unknown field "spec.color""#,
                r#"unknown field "spec.placement.matchExpressions[0].weight""#,
                r#"unknown field "spec.task.comand""#,
            ]
        );
        assert!(api::validate::object_from_value_as(kind, value.clone()).is_ok());
        assert_eq!(value["spec"]["task"]["command"], json!(["x"]));
    }

    #[test]
    fn strict_leaves_the_object_and_ignore_is_silent() {
        let kind = api::kinds::WORKLOAD;
        let mut value = workload();
        assert!(FieldValidation::Strict.apply(kind, &mut value).is_empty());
        assert_eq!(value, workload());
        assert!(FieldValidation::Ignore.apply(kind, &mut value).is_empty());
        assert!(value["spec"].get("color").is_none());
        assert!(FieldValidation::parse(Some("Loose")).is_err());
        assert_eq!(
            FieldValidation::parse(None).expect("default"),
            FieldValidation::Strict
        );
    }
}
