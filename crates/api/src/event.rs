//! The `Event` kind: what happened to an object, as Kubernetes' core `v1` `Event`.
//!
//! # Shape
//!
//! Every other Meridian kind is `Object<Spec, Status>`. An Event is stored and served with
//! the core `v1` fields at the top level (`involvedObject`, `reason`, `message`, `type`,
//! `count`, `firstTimestamp`, `lastTimestamp`, `source`, `reportingComponent`, ...) and no
//! `spec` or `status`, because that is the shape every Kubernetes client already reads:
//! `kubectl get events`, `kubectl describe` (which lists a kind's events through
//! `GET /api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name=…`) and the
//! Python client's `V1Event` decode it unchanged. The core view
//! (`server::core_events`) then only rewrites `apiVersion` (`meridian.dev/v1` ↔ `v1`),
//! and field selectors (`involvedObject.name=x`) work on the stored JSON as they are. The
//! price is a second shape in [`crate::AnyObject`] (`AnyObject::Event`), whose spec-less
//! variant answers "no status" and whose "spec" (for `generation`) is the whole body but
//! `metadata`. Converting at the edge instead would have needed a conversion in every
//! list, watch, table and field selector path for the same result.
//!
//! Events are project-scoped (`metadata.namespace`): an Event about a global object (a
//! Node, a Site) is put in the `default` project, as Kubernetes puts Node events in
//! `default`. The server writes them through its recorder (deduplicated, rate-limited,
//! expired after a TTL); see `server::events`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{EVENT, KindInfo};
use crate::meta::ObjectMeta;

/// Longest `reason` the API accepts.
pub const MAX_REASON_BYTES: usize = 128;
/// Longest `message` the API accepts (the recorder truncates longer ones).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The project of events about global objects (Nodes, Sites, Policies, Projects).
pub const GLOBAL_EVENTS_PROJECT: &str = "default";

/// `Normal` or `Warning`, as in Kubernetes.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum EventType {
    #[default]
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to the object an event is about (core `v1` `ObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

impl ObjectReference {
    /// A reference to an object of `kind` (its `apiVersion` is Meridian's).
    pub fn new(
        kind: &KindInfo,
        namespace: Option<&str>,
        name: impl Into<String>,
        uid: Option<&str>,
    ) -> Self {
        ObjectReference {
            kind: kind.kind.to_owned(),
            namespace: namespace.filter(|_| kind.namespaced()).map(str::to_owned),
            name: name.into(),
            uid: uid.map(str::to_owned),
            api_version: Some(crate::API_VERSION.to_owned()),
            resource_version: None,
            field_path: None,
        }
    }

    /// A reference to a typed object (`ObjectReference::of(&workload)`).
    pub fn of<S: crate::kinds::Spec, T>(object: &crate::kinds::Object<S, T>) -> Self {
        let m = &object.metadata;
        Self::new(
            S::KIND_INFO,
            m.namespace.as_deref(),
            m.name.clone(),
            m.uid.as_deref(),
        )
    }

    /// A reference to an object as JSON (`kind`, `metadata.namespace`, `.name`, `.uid`);
    /// `None` for a kind Meridian does not serve.
    pub fn of_value(object: &serde_json::Value) -> Option<Self> {
        let kind = crate::kinds::lookup_kind(object.get("kind")?.as_str()?)?;
        let meta = |f: &str| object.get("metadata")?.get(f)?.as_str();
        Some(Self::new(
            kind,
            meta("namespace"),
            meta("name").unwrap_or_default(),
            meta("uid"),
        ))
    }

    /// The project an event about this object lives in: its own, or
    /// [`GLOBAL_EVENTS_PROJECT`] for a global object.
    pub fn event_namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(GLOBAL_EVENTS_PROJECT)
    }
}

/// Who reported an event (core `v1` `EventSource`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub component: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// A repeating event (core `v1` `EventSeries`), accepted for compatibility.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSeries {
    #[serde(default)]
    pub count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_time: Option<String>,
}

/// An event, with the fields of Kubernetes' core `v1` `Event` at the top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// `meridian.dev/v1` (served as `v1` under `/api/v1`).
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object the event is about.
    pub involved_object: ObjectReference,
    /// A short CamelCase reason (`Scheduled`, `FailedScheduling`, `BackOff`).
    #[serde(default)]
    pub reason: String,
    /// What happened, for a person.
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default)]
    pub type_: EventType,
    /// How many times it happened in the current series.
    #[serde(default)]
    pub count: i32,
    /// When the series started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    /// When it last happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    #[serde(default)]
    pub source: EventSource,
    /// `system:scheduler`, `meridian-agent`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_instance: Option<String>,
    /// `events.k8s.io`'s MicroTime, accepted for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<EventSeries>,
}

impl Event {
    /// An event of one occurrence at `now` (RFC 3339) in the involved object's project.
    pub fn new(
        name: impl Into<String>,
        involved: ObjectReference,
        type_: EventType,
        reason: impl Into<String>,
        message: impl Into<String>,
        source: EventSource,
        now: &str,
    ) -> Self {
        let namespace = involved.event_namespace().to_owned();
        Event {
            api_version: crate::API_VERSION.to_owned(),
            kind: EVENT.kind.to_owned(),
            metadata: ObjectMeta::namespaced(namespace, name),
            reporting_component: Some(source.component.clone()).filter(|c| !c.is_empty()),
            involved_object: involved,
            reason: reason.into(),
            message: message.into(),
            type_,
            count: 1,
            first_timestamp: Some(now.to_owned()),
            last_timestamp: Some(now.to_owned()),
            source,
            reporting_instance: None,
            event_time: None,
            action: None,
            related: None,
            series: None,
        }
    }

    /// `lastTimestamp`, else `eventTime`, else `firstTimestamp`, else creation: when the
    /// event last happened, as kubectl reads it.
    pub fn last_seen(&self) -> Option<&str> {
        self.last_timestamp
            .as_deref()
            .or(self.event_time.as_deref())
            .or(self.first_timestamp.as_deref())
            .or(self.metadata.creation_timestamp.as_deref())
    }

    /// `firstTimestamp`, else `eventTime`, else creation.
    pub fn first_seen(&self) -> Option<&str> {
        self.first_timestamp
            .as_deref()
            .or(self.event_time.as_deref())
            .or(self.metadata.creation_timestamp.as_deref())
    }

    /// `source.component`, else `reportingComponent`, with the host: the FROM column.
    pub fn from(&self) -> String {
        let component = if self.source.component.is_empty() {
            self.reporting_component.clone().unwrap_or_default()
        } else {
            self.source.component.clone()
        };
        match (component.is_empty(), self.source.host.is_empty()) {
            (_, true) => component,
            (true, false) => self.source.host.clone(),
            (false, false) => format!("{component}, {}", self.source.host),
        }
    }
}

/// What a client asks the server's event recorder to record
/// (`POST /meridian/v1/events`): the recorder names, deduplicates, counts, rate-limits
/// and expires it. A node agent may only record events about allocations on its node;
/// the server sets `source.host` to the node's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventRecord {
    pub involved_object: ObjectReference,
    #[serde(rename = "type", default)]
    pub type_: EventType,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// The reporting component (`meridian-agent`); the server derives the host.
    #[serde(default)]
    pub component: String,
}

/// Cuts `message` to at most [`MAX_MESSAGE_BYTES`] at a character boundary, ending it with
/// `…` when something was cut (what the recorder does before writing).
pub fn truncate_message(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_MESSAGE_BYTES - ELLIPSIS.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(ELLIPSIS);
    message
}

/// Whether `reason` is CamelCase: an ASCII letter first, then letters and digits.
pub fn is_camel_case(reason: &str) -> bool {
    let mut chars = reason.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_fields_at_the_top_level() {
        let involved = ObjectReference::new(crate::kinds::WORKLOAD, Some("p"), "w", Some("u1"));
        let e = Event::new(
            "w.1",
            involved,
            EventType::Warning,
            "FailedScheduling",
            "0/3 nodes fit",
            EventSource {
                component: "scheduler".into(),
                host: String::new(),
            },
            "2026-12-06T05:00:00Z",
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["involvedObject"]["name"], "w");
        assert_eq!(v["involvedObject"]["kind"], "Workload");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["count"], 1);
        assert_eq!(v["metadata"]["namespace"], "p");
        assert!(v.get("spec").is_none());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        // A Node's event lives in `default`.
        let node = ObjectReference::new(crate::kinds::NODE, Some("x"), "n1", None);
        assert_eq!(node.namespace, None);
        assert_eq!(node.event_namespace(), "default");
        // What kubectl and the Python client send decodes.
        let k: Event = serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Event",
            "metadata": {"name": "x.1", "namespace": "p"},
            "involvedObject": {"kind": "Workload", "name": "w", "namespace": "p", "fieldPath": "spec"},
            "reason": "Started", "message": "m", "type": "Normal",
            "eventTime": "2026-12-06T05:00:00.000000Z", "reportingInstance": "h",
            "series": {"count": 2, "lastObservedTime": "2026-12-06T05:00:00.000000Z"},
        }))
        .unwrap();
        assert_eq!(k.series.unwrap().count, 2);
    }

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate_message(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_message("short".into()), "short");
        assert!(is_camel_case("FailedScheduling"));
        assert!(!is_camel_case("failed"));
        assert!(!is_camel_case("Failed Scheduling"));
        assert!(!is_camel_case(""));
    }
}
