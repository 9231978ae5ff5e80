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
        removed
            .into_iter()
            .map(|path| format!("unknown field {path:?}"))
            .collect()
    }
}

/// Remove every field of `value` that `kind`'s types do not declare; returns their
/// dotted paths (`spec.task.comand`). Decoding reports the first unknown field only, so
/// this decodes, removes, and decodes again until no unknown field is left (or another
/// kind of error comes first: validation will report that one).
pub fn prune_unknown(kind: &KindInfo, value: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    // An object has finitely many fields; the bound only guards against a path that
    // cannot be removed being reported again.
    for _ in 0..256 {
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
        let kind = api::lookup_kind("Workload").expect("kind");
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
        let kind = api::lookup_kind("Workload").expect("kind");
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
