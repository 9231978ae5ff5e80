//! The Kubernetes envelope: [`ObjectMeta`], [`List`], [`Status`] (the error body of every
//! API response) and [`WatchEvent`].

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::KindInfo;
use crate::validate::FieldErrors;

/// `metadata` of every object. Users write `name`, `namespace`, `labels` and `annotations`;
/// the server sets the rest and validation ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique within the kind (and the project, for project-scoped kinds). Empty when
    /// `generateName` asks the server to pick one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// The project, for project-scoped kinds (a project is exposed as a namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The store revision of the last write, as a string (clients must treat it as opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Incremented by the server on every change of `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// RFC 3339, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// RFC 3339, set by the server when deletion waits on finalizers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<serde_json::Value>,
}

impl ObjectMeta {
    /// Metadata with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Metadata with a name and a namespace (project).
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..Default::default()
        }
    }
}

/// `metadata` of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Token for the next page, when the list was cut by `limit`.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<i64>,
}

/// A list response: `{apiVersion, kind: WorkloadList, metadata, items}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

impl<T> List<T> {
    /// A `meridian.dev/v1` list of `info`'s kind at store revision `resource_version`.
    pub fn new(info: &KindInfo, items: Vec<T>, resource_version: Option<String>) -> Self {
        List {
            api_version: crate::API_VERSION.to_string(),
            kind: info.list_kind(),
            metadata: ListMeta {
                resource_version,
                ..Default::default()
            },
            items,
        }
    }
}

/// One cause of a failure, usually an invalid field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Path of the field, e.g. `spec.task.resources.memory`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// What a failure was about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource (plural), as Kubernetes does, e.g. `workloads`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

impl StatusDetails {
    /// Details naming one object of a kind.
    pub fn for_object(info: &KindInfo, name: impl Into<String>) -> Self {
        StatusDetails {
            name: name.into(),
            group: crate::GROUP.to_string(),
            kind: info.plural.to_string(),
            ..Default::default()
        }
    }
}

/// The body of every API error (and of a successful delete), as Kubernetes defines it, so
/// that kubectl and every Kubernetes client shows it properly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    /// `Success` or `Failure`.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason, e.g. `NotFound`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// The HTTP status code.
    pub code: u16,
}

/// Kubernetes `Status.reason` strings and their HTTP codes.
pub mod reason {
    pub const NOT_FOUND: (&str, u16) = ("NotFound", 404);
    pub const ALREADY_EXISTS: (&str, u16) = ("AlreadyExists", 409);
    pub const CONFLICT: (&str, u16) = ("Conflict", 409);
    pub const INVALID: (&str, u16) = ("Invalid", 422);
    pub const FORBIDDEN: (&str, u16) = ("Forbidden", 403);
    pub const UNAUTHORIZED: (&str, u16) = ("Unauthorized", 401);
    pub const BAD_REQUEST: (&str, u16) = ("BadRequest", 400);
    pub const METHOD_NOT_ALLOWED: (&str, u16) = ("MethodNotAllowed", 405);
    pub const NOT_ACCEPTABLE: (&str, u16) = ("NotAcceptable", 406);
    pub const EXPIRED: (&str, u16) = ("Expired", 410);
    pub const REQUEST_ENTITY_TOO_LARGE: (&str, u16) = ("RequestEntityTooLarge", 413);
    pub const UNSUPPORTED_MEDIA_TYPE: (&str, u16) = ("UnsupportedMediaType", 415);
    pub const TOO_MANY_REQUESTS: (&str, u16) = ("TooManyRequests", 429);
    pub const INTERNAL_ERROR: (&str, u16) = ("InternalError", 500);
    pub const SERVICE_UNAVAILABLE: (&str, u16) = ("ServiceUnavailable", 503);
    pub const TIMEOUT: (&str, u16) = ("Timeout", 504);
}

macro_rules! status_helpers {
    ($($(#[$doc:meta])* $fn:ident => $const:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn(message: impl Into<String>) -> Self {
                Status::failure(reason::$const.1, reason::$const.0, message)
            }
        )*
    };
}

impl Status {
    /// A failure with an HTTP code, a Kubernetes reason and a message for people.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            api_version: "v1".to_string(),
            kind: "Status".to_string(),
            metadata: ListMeta::default(),
            status: "Failure".to_string(),
            message: message.into(),
            reason: reason.to_string(),
            details: None,
            code,
        }
    }

    /// A success (the answer to a delete, for instance).
    pub fn success() -> Self {
        Status {
            status: "Success".to_string(),
            reason: String::new(),
            code: 200,
            ..Status::failure(200, "", "")
        }
    }

    /// The same status with details.
    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(details);
        self
    }

    /// Whether this is a `Success`.
    pub fn is_success(&self) -> bool {
        self.status == "Success"
    }

    status_helpers! {
        /// 404 `NotFound`.
        not_found => NOT_FOUND;
        /// 409 `AlreadyExists`.
        already_exists => ALREADY_EXISTS;
        /// 409 `Conflict` (a stale `resourceVersion`).
        conflict => CONFLICT;
        /// 422 `Invalid` without causes; see [`Status::invalid_object`].
        invalid => INVALID;
        /// 403 `Forbidden`.
        forbidden => FORBIDDEN;
        /// 401 `Unauthorized`.
        unauthorized => UNAUTHORIZED;
        /// 400 `BadRequest`.
        bad_request => BAD_REQUEST;
        /// 405 `MethodNotAllowed`.
        method_not_allowed => METHOD_NOT_ALLOWED;
        /// 406 `NotAcceptable`.
        not_acceptable => NOT_ACCEPTABLE;
        /// 410 `Expired` (a watch or continue token from a compacted revision).
        expired => EXPIRED;
        /// 413 `RequestEntityTooLarge`.
        request_entity_too_large => REQUEST_ENTITY_TOO_LARGE;
        /// 415 `UnsupportedMediaType`.
        unsupported_media_type => UNSUPPORTED_MEDIA_TYPE;
        /// 429 `TooManyRequests`.
        too_many_requests => TOO_MANY_REQUESTS;
        /// 500 `InternalError` (say nothing internal in the message).
        internal_error => INTERNAL_ERROR;
        /// 503 `ServiceUnavailable`.
        service_unavailable => SERVICE_UNAVAILABLE;
        /// 504 `Timeout`.
        timeout => TIMEOUT;
    }

    /// 404 for one object, worded as Kubernetes does:
    /// `workloads.meridian.dev "payroll-api" not found`.
    pub fn object_not_found(info: &KindInfo, name: &str) -> Self {
        Status::not_found(format!(
            "{}.{} {name:?} not found",
            info.plural,
            crate::GROUP
        ))
        .with_details(StatusDetails::for_object(info, name))
    }

    /// 409 `AlreadyExists` for one object.
    pub fn object_already_exists(info: &KindInfo, name: &str) -> Self {
        Status::already_exists(format!(
            "{}.{} {name:?} already exists",
            info.plural,
            crate::GROUP
        ))
        .with_details(StatusDetails::for_object(info, name))
    }

    /// 422 `Invalid` with one cause per field error, worded as Kubernetes does:
    /// `Workload.meridian.dev "x" is invalid: spec.replicas: must be 0 or more`.
    pub fn invalid_object(info: &KindInfo, name: &str, errors: &FieldErrors) -> Self {
        let causes = errors
            .0
            .iter()
            .map(|e| StatusCause {
                reason: "FieldValueInvalid".to_string(),
                message: e.message.clone(),
                field: e.field.clone(),
            })
            .collect();
        Status::invalid(format!(
            "{}.{} {name:?} is invalid: {errors}",
            info.kind,
            crate::GROUP
        ))
        .with_details(StatusDetails {
            causes,
            ..StatusDetails::for_object(info, name)
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.message.is_empty(), self.reason.is_empty()) {
            (false, _) => f.write_str(&self.message),
            (true, false) => write!(f, "{} ({})", self.reason, self.code),
            (true, true) => write!(f, "{} ({})", self.status, self.code),
        }
    }
}

impl std::error::Error for Status {}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent<T> {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub type_: String,
    pub object: T,
}

impl<T> WatchEvent<T> {
    pub const ADDED: &'static str = "ADDED";
    pub const MODIFIED: &'static str = "MODIFIED";
    pub const DELETED: &'static str = "DELETED";
    pub const BOOKMARK: &'static str = "BOOKMARK";
    pub const ERROR: &'static str = "ERROR";

    /// An event of type `type_`.
    pub fn new(type_: &str, object: T) -> Self {
        WatchEvent {
            type_: type_.to_string(),
            object,
        }
    }
    pub fn added(object: T) -> Self {
        Self::new(Self::ADDED, object)
    }
    pub fn modified(object: T) -> Self {
        Self::new(Self::MODIFIED, object)
    }
    pub fn deleted(object: T) -> Self {
        Self::new(Self::DELETED, object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_skips_empty_and_refuses_unknown() {
        let m = ObjectMeta::named("a");
        assert_eq!(serde_json::to_value(&m).unwrap(), json!({"name": "a"}));
        let e = serde_json::from_value::<ObjectMeta>(json!({"name": "a", "nmae": "b"}));
        assert!(e.is_err());
        let m: ObjectMeta = serde_json::from_value(json!({
            "name": "a", "resourceVersion": "7", "generation": 2,
            "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"x": "y"}
        }))
        .unwrap();
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        assert_eq!(m.labels["x"], "y");
    }

    #[test]
    fn status_shapes() {
        let s = Status::expired("too old resource version: 5 (10)");
        assert_eq!(s.code, 410);
        assert_eq!(s.reason, "Expired");
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["status"], "Failure");
        let info = crate::kinds::WORKLOAD;
        let nf = Status::object_not_found(info, "payroll-api");
        assert_eq!(
            nf.message,
            r#"workloads.meridian.dev "payroll-api" not found"#
        );
        assert_eq!(nf.details.as_ref().unwrap().kind, "workloads");
        assert_eq!(Status::conflict("x").code, 409);
        assert_eq!(Status::invalid("x").code, 422);
        assert_eq!(Status::unauthorized("x").code, 401);
        assert_eq!(Status::timeout("x").code, 504);
        assert_eq!(Status::request_entity_too_large("x").code, 413);
        assert_eq!(Status::unsupported_media_type("x").code, 415);
        assert_eq!(Status::method_not_allowed("x").code, 405);
        assert!(Status::success().is_success());
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn list_and_watch_shapes() {
        let info = crate::kinds::WORKLOAD;
        let l = List::new(info, vec![1, 2], Some("9".into()));
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "meridian.dev/v1", "kind": "WorkloadList",
                   "metadata": {"resourceVersion": "9"}, "items": [1, 2]})
        );
        let lm = ListMeta {
            continue_: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&lm).unwrap(),
            json!({"continue": "abc"})
        );
        let w = WatchEvent::added(json!({"a": 1}));
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"type": "ADDED", "object": {"a": 1}})
        );
    }
}
