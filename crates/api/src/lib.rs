//! Meridian's resource model: the wire and manifest types every process shares.
//!
//! This crate does no I/O and knows nothing of HTTP, SQL or async runtimes. It owns:
//! - the Kubernetes-style envelope ([`ObjectMeta`], [`List`], [`Status`], [`WatchEvent`]);
//! - the kinds (`Site`, `Node`, `Workload`, `Allocation`, `Policy`, `Project`, `Event`, `Secret`, `VirtualMachine`, `MigrationPlan`, `Queue`, `Cohort`) and the
//!   [`KindInfo`] table that names them (singular, plural, short names, scope);
//! - parsing of manifests (YAML, multi-document YAML, JSON) with errors that name the
//!   source, the document, the field path and, for syntax errors, line and column;
//! - the one safe YAML decoder ([`yaml`]): alias expansion bounded by the input size
//!   (billion laughs), nesting depth capped, merge keys applied; request bodies by media
//!   type ([`body`]);
//! - durations ([`duration`]: one grammar, `1h30m`, `500ms`, `7d`, for manifests and
//!   every CLI flag), quantities (`250m`, `4Gi`), GPU counts ([`gpu`]: whole or `0.25`), label selectors, jurisdictions and blocs;
//! - strict validation: unknown fields are refused (with a suggestion), names are RFC 1123
//!   labels, jurisdictions are ISO 3166-1 codes or blocs, and every problem is reported;
//! - what the scheduler answers on the wire ([`explanation`]: decisions and their
//!   explanations, stored on Allocations and answered by `explain` and `plan`);
//! - `get` table columns per kind ([`table`]) and OpenAPI schemas ([`openapi_schemas`]);
//! - the example manifests of `examples/`, compiled in ([`examples::FILES`]).

pub mod body;
pub mod drain;
pub mod duration;
pub mod event;
pub mod examples;
pub mod explanation;
pub mod gpu;
pub mod jurisdiction;
pub mod kinds;
pub mod logs;
pub mod manifest;
pub mod meta;
pub mod migrate;
pub mod quantity;
pub mod queue;
pub mod residency;
pub mod rollout;
pub mod schedule;
pub mod schema;
pub mod secret;
pub mod selector;
pub mod table;
pub mod task;
pub mod validate;
pub mod yaml;

pub use duration::{Duration, DurationError};
pub use event::{Event, EventRecord, EventSource, EventType, ObjectReference};
pub use explanation::Explanation;
pub use gpu::GpuCount;
pub use kinds::{Allocation, Node, Object, Policy, Project, Site, Spec, Workload};
pub use kinds::{AnyObject, KINDS, KindInfo, Scope, lookup_kind};
pub use manifest::{Manifest, ManifestError, parse_manifests};
pub use meta::{List, ListMeta, ObjectMeta, Status, StatusCause, StatusDetails, WatchEvent};
pub use quantity::{Cpu, Memory, QuantityError};
pub use rollout::{
    IntOrPercent, UpdateStrategy, UpdateStrategyType, WorkloadRevision, WorkloadTemplate,
};
pub use schema::openapi_schemas;
pub use selector::{FieldSelector, LabelSelector, MatchExpression, Operator, SelectorError};
pub use validate::{FieldError, FieldErrors, object_from_value, object_from_value_as};
pub use yaml::YamlError;

/// API group of every Meridian kind.
pub const GROUP: &str = "meridian.dev";
/// The one served version.
pub const VERSION: &str = "v1";
/// `apiVersion` of every Meridian object.
pub const API_VERSION: &str = "meridian.dev/v1";
