//! The kinds: the [`KINDS`] table that names them, the typed envelope [`Object`], the spec
//! and status of each kind, and [`AnyObject`] for code that handles every kind.
//!
//! Field names here are the manifest contract documented in `DESIGN.md`: renaming one is a
//! breaking change.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::gpu::GpuCount;
use crate::meta::ObjectMeta;
use crate::quantity::{Cpu, Memory};
use crate::rollout::{UpdateStrategy, WorkloadRevision};
use crate::selector::MatchExpression;
use crate::validate::FieldErrors;

// ---------------------------------------------------------------------------------------
// The kind table

/// Whether objects of a kind live in a project (namespace) or globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Project,
}

/// Names and scope of a kind, as discovery publishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindInfo {
    /// `Workload`
    pub kind: &'static str,
    /// `workloads`
    pub plural: &'static str,
    /// `workload`
    pub singular: &'static str,
    /// `wl`
    pub short_names: &'static [&'static str],
    pub scope: Scope,
    /// Whether the kind has a `/status` subresource.
    pub has_status: bool,
}

impl KindInfo {
    /// Whether objects carry `metadata.namespace` (the project).
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Project
    }

    /// `WorkloadList`
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether a manifest may leave `spec` out (it then means an empty spec).
    pub fn spec_optional(&self) -> bool {
        self.kind == PROJECT.kind
    }

    /// Whether objects have a `spec` (every kind but `Event`, whose core `v1` fields sit
    /// at the top level).
    pub fn has_spec(&self) -> bool {
        self.kind != EVENT.kind
    }
}

// Typed constants for each kind: code names a kind with these (`api::kinds::WORKLOAD`), so
// a rename fails to compile; [`lookup_kind`] is for names users type (`meridian get wl`).

/// The `Site` kind.
pub const SITE: &KindInfo = &KindInfo {
    kind: "Site",
    plural: "sites",
    singular: "site",
    short_names: &["st"],
    scope: Scope::Global,
    has_status: true,
};

/// The `Node` kind.
pub const NODE: &KindInfo = &KindInfo {
    kind: "Node",
    plural: "nodes",
    singular: "node",
    short_names: &["no"],
    scope: Scope::Global,
    has_status: true,
};

/// The `Workload` kind.
pub const WORKLOAD: &KindInfo = &KindInfo {
    kind: "Workload",
    plural: "workloads",
    singular: "workload",
    short_names: &["wl"],
    scope: Scope::Project,
    has_status: true,
};

/// The `Allocation` kind.
pub const ALLOCATION: &KindInfo = &KindInfo {
    kind: "Allocation",
    plural: "allocations",
    singular: "allocation",
    short_names: &["alloc"],
    scope: Scope::Project,
    has_status: true,
};

/// The `Policy` kind.
pub const POLICY: &KindInfo = &KindInfo {
    kind: "Policy",
    plural: "policies",
    singular: "policy",
    short_names: &["pol"],
    scope: Scope::Global,
    has_status: true,
};

/// The `Project` kind.
pub const PROJECT: &KindInfo = &KindInfo {
    kind: "Project",
    plural: "projects",
    singular: "project",
    short_names: &["proj"],
    scope: Scope::Global,
    has_status: true,
};

/// The `Event` kind: core `v1` fields at the top level, no `spec` (see [`crate::event`]).
pub const EVENT: &KindInfo = &KindInfo {
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    scope: Scope::Project,
    has_status: false,
};

/// The `Secret` kind (see [`crate::secret`]).
pub const SECRET: &KindInfo = &KindInfo {
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    short_names: &[],
    scope: Scope::Project,
    has_status: false,
};

/// The `VirtualMachine` kind: a source VM as an inventory import found it (see
/// [`crate::migrate`]).
pub const VIRTUAL_MACHINE: &KindInfo = &KindInfo {
    kind: "VirtualMachine",
    plural: "virtualmachines",
    singular: "virtualmachine",
    short_names: &["svm"],
    scope: Scope::Project,
    has_status: true,
};

/// The `MigrationPlan` kind: how VMs move to Meridian targets, in waves (see
/// [`crate::migrate`]).
pub const MIGRATION_PLAN: &KindInfo = &KindInfo {
    kind: "MigrationPlan",
    plural: "migrationplans",
    singular: "migrationplan",
    short_names: &["mplan"],
    scope: Scope::Project,
    has_status: true,
};

/// The `Queue` kind: where batch and AI jobs wait for quota (see [`crate::queue`]).
pub const QUEUE: &KindInfo = &KindInfo {
    kind: "Queue",
    plural: "queues",
    singular: "queue",
    short_names: &["q"],
    scope: Scope::Global,
    has_status: true,
};

/// The `Cohort` kind: a node of the tree through which queues lend and borrow quota (see
/// [`crate::queue::CohortSpec`]).
pub const COHORT: &KindInfo = &KindInfo {
    kind: "Cohort",
    plural: "cohorts",
    singular: "cohort",
    short_names: &["coh"],
    scope: Scope::Global,
    has_status: true,
};

/// Every kind Meridian serves, in the order `get all` and discovery list them: the
/// constants above, so a kind is renamed in one place.
pub static KINDS: &[KindInfo] = &[
    *SITE,
    *NODE,
    *WORKLOAD,
    *ALLOCATION,
    *POLICY,
    *PROJECT,
    *SECRET,
    *EVENT,
    *VIRTUAL_MACHINE,
    *MIGRATION_PLAN,
    *QUEUE,
    *COHORT,
];

/// Finds a kind by kind, singular, plural or short name, ignoring case
/// (`Workload`, `workload`, `workloads`, `wl`).
pub fn lookup_kind(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| {
        k.kind.eq_ignore_ascii_case(name)
            || k.singular.eq_ignore_ascii_case(name)
            || k.plural.eq_ignore_ascii_case(name)
            || k.short_names.iter().any(|s| s.eq_ignore_ascii_case(name))
    })
}

/// A spec type knows its kind, so typed objects can be built without spelling it.
pub trait Spec {
    /// The kind's entry in [`KINDS`] (one of the constants such as [`WORKLOAD`]).
    const KIND_INFO: &'static KindInfo;
    /// `Workload`
    const KIND: &'static str = Self::KIND_INFO.kind;

    /// The kind's entry in [`KINDS`].
    fn kind_info() -> &'static KindInfo {
        Self::KIND_INFO
    }
}

// ---------------------------------------------------------------------------------------
// The envelope

/// A typed object: `{apiVersion, kind, metadata, spec, status}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S, T> {
    /// Always `meridian.dev/v1`.
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state, written by users.
    pub spec: S,
    /// Observed state, written by Meridian through the `/status` subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<T>,
}

impl<S: Spec, T> Object<S, T> {
    /// An object of `S`'s kind without status.
    pub fn new(metadata: ObjectMeta, spec: S) -> Self {
        Object {
            api_version: crate::API_VERSION.to_string(),
            kind: S::KIND.to_string(),
            metadata,
            spec,
            status: None,
        }
    }
}

pub type Site = Object<SiteSpec, SiteStatus>;
pub type Node = Object<NodeSpec, NodeStatus>;
pub type Workload = Object<WorkloadSpec, WorkloadStatus>;
pub type Allocation = Object<AllocationSpec, AllocationStatus>;
pub type Policy = Object<PolicySpec, PolicyStatus>;
pub type Project = Object<ProjectSpec, ProjectStatus>;

/// Any object of any kind.
// A value is decoded and used at once, never held in bulk: the size of its largest
// variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyObject {
    Site(Site),
    Node(Node),
    Workload(Workload),
    Allocation(Allocation),
    Policy(Policy),
    Project(Project),
    Secret(crate::secret::Secret),
    /// The one kind without `spec`: see [`crate::event`].
    Event(crate::event::Event),
    VirtualMachine(crate::migrate::VirtualMachine),
    MigrationPlan(crate::migrate::MigrationPlan),
    Queue(crate::queue::Queue),
    Cohort(crate::queue::Cohort),
}

/// Every variant, for the fields all shapes share (`apiVersion`, `metadata`).
macro_rules! each_kind {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            AnyObject::Site($o) => $body,
            AnyObject::Node($o) => $body,
            AnyObject::Workload($o) => $body,
            AnyObject::Allocation($o) => $body,
            AnyObject::Policy($o) => $body,
            AnyObject::Project($o) => $body,
            AnyObject::Secret($o) => $body,
            AnyObject::Event($o) => $body,
            AnyObject::VirtualMachine($o) => $body,
            AnyObject::MigrationPlan($o) => $body,
            AnyObject::Queue($o) => $body,
            AnyObject::Cohort($o) => $body,
        }
    };
}

/// Like [`each_kind`] for the `Object<Spec, Status>` kinds, with `$event` for `Event`.
macro_rules! each_spec_kind {
    ($self:expr, $o:ident => $body:expr, $event:expr) => {
        match $self {
            AnyObject::Site($o) => $body,
            AnyObject::Node($o) => $body,
            AnyObject::Workload($o) => $body,
            AnyObject::Allocation($o) => $body,
            AnyObject::Policy($o) => $body,
            AnyObject::Project($o) => $body,
            AnyObject::Secret($o) => $body,
            AnyObject::Event(_) => $event,
            AnyObject::VirtualMachine($o) => $body,
            AnyObject::MigrationPlan($o) => $body,
            AnyObject::Queue($o) => $body,
            AnyObject::Cohort($o) => $body,
        }
    };
}

impl AnyObject {
    /// Decodes an object from JSON by its `kind`, refusing unknown fields, without the
    /// semantic checks of [`crate::validate::object_from_value`] (use this for what the
    /// store or the server hands back).
    pub fn from_value(value: serde_json::Value) -> Result<AnyObject, FieldErrors> {
        crate::validate::decode(value)
    }

    /// The kind's names and scope.
    pub fn kind_info(&self) -> &'static KindInfo {
        match self {
            AnyObject::Site(_) => SITE,
            AnyObject::Node(_) => NODE,
            AnyObject::Workload(_) => WORKLOAD,
            AnyObject::Allocation(_) => ALLOCATION,
            AnyObject::Policy(_) => POLICY,
            AnyObject::Project(_) => PROJECT,
            AnyObject::Secret(_) => SECRET,
            AnyObject::Event(_) => EVENT,
            AnyObject::VirtualMachine(_) => VIRTUAL_MACHINE,
            AnyObject::MigrationPlan(_) => MIGRATION_PLAN,
            AnyObject::Queue(_) => QUEUE,
            AnyObject::Cohort(_) => COHORT,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        each_kind!(self, o => &o.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each_kind!(self, o => &mut o.metadata)
    }

    pub fn name(&self) -> &str {
        &self.meta().name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    /// `apiVersion` as written.
    pub fn api_version(&self) -> &str {
        each_kind!(self, o => &o.api_version)
    }

    /// Whether a status is present.
    pub fn has_status(&self) -> bool {
        each_spec_kind!(self, o => o.status.is_some(), false)
    }

    /// Drops the status (what the server does on create and on a spec update).
    pub fn clear_status(&mut self) {
        each_spec_kind!(self, o => o.status = None, ());
    }

    /// Copies the status of `other` (of the same kind) into `self`, as a `/status`
    /// update does. Returns `false`, changing nothing, if the kinds differ.
    pub fn take_status_from(&mut self, other: AnyObject) -> bool {
        match (self, other) {
            (AnyObject::Site(a), AnyObject::Site(b)) => a.status = b.status,
            (AnyObject::Node(a), AnyObject::Node(b)) => a.status = b.status,
            (AnyObject::Workload(a), AnyObject::Workload(b)) => a.status = b.status,
            (AnyObject::Allocation(a), AnyObject::Allocation(b)) => a.status = b.status,
            (AnyObject::Policy(a), AnyObject::Policy(b)) => a.status = b.status,
            (AnyObject::Project(a), AnyObject::Project(b)) => a.status = b.status,
            (AnyObject::Secret(a), AnyObject::Secret(b)) => a.status = b.status,
            (AnyObject::VirtualMachine(a), AnyObject::VirtualMachine(b)) => a.status = b.status,
            (AnyObject::MigrationPlan(a), AnyObject::MigrationPlan(b)) => a.status = b.status,
            (AnyObject::Queue(a), AnyObject::Queue(b)) => a.status = b.status,
            (AnyObject::Cohort(a), AnyObject::Cohort(b)) => a.status = b.status,
            _ => return false,
        }
        true
    }

    /// The spec as JSON (for comparing specs to decide whether `generation` moves); for
    /// an `Event`, everything but `metadata`.
    pub fn spec_value(&self) -> serde_json::Value {
        each_spec_kind!(
            self,
            o => serde_json::to_value(&o.spec).expect("specs serialize"),
            {
                let mut v = self.to_value();
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                }
                v
            }
        )
    }

    /// The object as JSON.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("objects serialize")
    }
}

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        crate::validate::decode(value).map_err(serde::de::Error::custom)
    }
}

macro_rules! any_from {
    ($($variant:ident),*) => {
        $(impl From<$variant> for AnyObject {
            fn from(o: $variant) -> Self {
                AnyObject::$variant(o)
            }
        })*
    };
}
any_from!(Site, Node, Workload, Allocation, Policy, Project);

impl From<crate::secret::Secret> for AnyObject {
    fn from(o: crate::secret::Secret) -> Self {
        AnyObject::Secret(o)
    }
}

impl From<crate::migrate::VirtualMachine> for AnyObject {
    fn from(o: crate::migrate::VirtualMachine) -> Self {
        AnyObject::VirtualMachine(o)
    }
}

impl From<crate::migrate::MigrationPlan> for AnyObject {
    fn from(o: crate::migrate::MigrationPlan) -> Self {
        AnyObject::MigrationPlan(o)
    }
}

impl From<crate::queue::Queue> for AnyObject {
    fn from(o: crate::queue::Queue) -> Self {
        AnyObject::Queue(o)
    }
}

impl From<crate::queue::Cohort> for AnyObject {
    fn from(o: crate::queue::Cohort) -> Self {
        AnyObject::Cohort(o)
    }
}

impl From<crate::event::Event> for AnyObject {
    fn from(e: crate::event::Event) -> Self {
        AnyObject::Event(e)
    }
}

// ---------------------------------------------------------------------------------------
// Shared vocabulary

macro_rules! string_enum {
    (
        $(#[$m:meta])*
        $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }
    ) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            JsonSchema,
        )]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The manifest spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Operating system family.
    OsFamily { Linux = "linux", Windows = "windows" }
}

string_enum! {
    /// CPU architecture, with Go/Kubernetes names.
    Arch { Amd64 = "amd64", Arm64 = "arm64" }
}

string_enum! {
    /// How an agent runs a task.
    #[derive(Default)]
    Driver {
        /// A process on the host (a Windows service process or a Linux process).
        #[default]
        Exec = "exec",
        /// A virtual machine from a disk image.
        Qemu = "qemu",
        /// An OCI container image.
        Container = "container",
    }
}

string_enum! {
    /// Effect of a node taint.
    TaintEffect {
        NoSchedule = "NoSchedule",
        PreferNoSchedule = "PreferNoSchedule",
        NoExecute = "NoExecute",
    }
}

string_enum! {
    /// `Equal` (key and value match) or `Exists` (key matches, any value).
    TolerationOperator { Equal = "Equal", Exists = "Exists" }
}

string_enum! {
    /// Status of a condition.
    ConditionStatus { True = "True", False = "False", Unknown = "Unknown" }
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// e.g. `Ready`, `Placed`, `DiskPressure`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// RFC 3339: when the condition was last refreshed (a rollout's last progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
}

/// Totals of cpu, memory and GPUs (site capacity, node allocations, project usage).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceTotals {
    #[serde(default)]
    pub cpu: Cpu,
    #[serde(default)]
    pub memory: Memory,
    /// Whole GPUs, or with shared GPUs a decimal (`2.75`: two whole GPUs and three
    /// quarter shares).
    #[serde(default)]
    pub gpus: GpuCount,
    /// Allocations counted (node allocations, project usage).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub instances: u32,
    /// GPUs by model (`H100: 16`), of those whose model is known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpus_by_model: BTreeMap<String, GpuCount>,
}

impl ResourceTotals {
    /// Counts one allocation's reservation: what `Project.status.used` and
    /// `Node.status.allocated` sum, and what project quotas are enforced against. The
    /// caller decides whether the allocation holds resources
    /// ([`AllocationPhase::holds_resources`]).
    pub fn add_allocation(&mut self, spec: &AllocationSpec) {
        let r = &spec.resources;
        self.cpu = self.cpu.saturating_add(r.cpu);
        self.memory = self.memory.saturating_add(r.memory);
        self.instances = self.instances.saturating_add(1);
        if let Some(g) = r.gpu.as_ref().filter(|g| !g.count.is_zero()) {
            self.gpus = self.gpus.saturating_add(g.count);
            if let Some(model) = &g.model {
                let n = self.gpus_by_model.entry(model.clone()).or_default();
                *n = n.saturating_add(g.count);
            }
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn default_replicas() -> i32 {
    1
}

fn default_max_skew() -> i32 {
    1
}

/// An optional string that YAML authors may write as a number (`version: 2022`).
fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| match s {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::F(f) => f.to_string(),
    }))
}

// ---------------------------------------------------------------------------------------
// Site

/// A place capacity lives: a cloud region, a data centre, an edge location.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteSpec {
    /// `azure`, `aws`, `gcp`, `onprem`, `edge`, a sovereign provider...
    pub provider: String,
    /// The provider's region name (`westeurope`, `us-east-1`, `frankfurt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Availability zones or rooms; nodes name theirs in `spec.zone`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// ISO 3166-1 alpha-2 code of the country where the hardware is.
    pub jurisdiction: String,
    /// The legal entity that operates the site and its home jurisdiction (what
    /// `sovereignty: strict` checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<SiteOperator>,
    /// `ISO27001`, `SOC2`, `C5`, `SecNumCloud`, `HDS`...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certifications: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon: Option<Carbon>,
}

impl Spec for SiteSpec {
    const KIND_INFO: &'static KindInfo = SITE;
}

/// The operator of a site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteOperator {
    /// Legal name, e.g. `Example Bank AG`.
    pub name: String,
    /// ISO 3166-1 alpha-2 code of the operator's (or its parent's) home jurisdiction.
    pub jurisdiction: String,
}

/// Prices per resource-hour, in the estate's accounting currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(
        rename = "cpuCoreHour",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_core_hour: Option<f64>,
    #[serde(
        rename = "memoryGiBHour",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_gib_hour: Option<f64>,
    /// GPU model (`H100`, `A100`, `L4`) to price per GPU-hour.
    #[serde(
        rename = "gpuHour",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub gpu_hour: BTreeMap<String, f64>,
}

/// Carbon intensity of the site's electricity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Carbon {
    #[serde(rename = "gramsPerKWh")]
    pub grams_per_kwh: f64,
}

/// What Meridian observes of a site (aggregated from its nodes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteStatus {
    #[serde(default)]
    pub nodes: u32,
    #[serde(default)]
    pub ready_nodes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ResourceTotals>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<ResourceTotals>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------
// Node

/// A host registered by an agent (or pre-registered by an administrator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Name of the Site the node is in.
    pub site: String,
    /// One of the site's zones, if it has zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub os: NodeOs,
    pub arch: Arch,
    pub capacity: NodeResources,
    /// What is left for Meridian after the OS and system reservations; defaults to
    /// `capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<NodeResources>,
    /// Drivers the agent offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<Driver>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Cordoned: nothing new is placed here (drain).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unschedulable: bool,
}

impl Spec for NodeSpec {
    const KIND_INFO: &'static KindInfo = NODE;
}

impl NodeSpec {
    /// `allocatable`, or `capacity` when not set.
    pub fn allocatable(&self) -> &NodeResources {
        self.allocatable.as_ref().unwrap_or(&self.capacity)
    }
}

/// The operating system of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeOs {
    pub family: OsFamily,
    /// `rhel`, `ubuntu`, `debian`, `windows-server`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    /// `9.4`, `22.04`, `2022`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub version: Option<String>,
    /// Windows build, `major.minor.build`: `10.0.20348` is Windows Server 2022.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// Capacity of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResources {
    pub cpu: Cpu,
    pub memory: Memory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Memory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuDevice>,
}

impl NodeResources {
    /// Number of GPUs of every model.
    pub fn gpu_count(&self) -> u32 {
        self.gpus.iter().map(|g| g.count).sum()
    }
}

/// A group of identical GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuDevice {
    /// `H100`, `A100`, `L4`...
    pub model: String,
    /// Memory of one GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    pub count: u32,
    /// Whether a device may be shared by fractional requests (`gpu: {count: 0.25}`),
    /// time-sliced by the driver. Absent: shareable. Sharing is opt-in per workload (only
    /// requests below one GPU share, whole-GPU requests always get devices of their own),
    /// so the default costs nothing; declare `false` where co-tenants must not share a
    /// device (no memory isolation between them), and fractional requests go elsewhere
    /// with the placement reason `gpuSharing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shareable: Option<bool>,
}

impl GpuDevice {
    /// `shareable`, with its default (true).
    pub fn is_shareable(&self) -> bool {
        self.shareable.unwrap_or(true)
    }
}

/// Keeps work off a node unless the work tolerates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

/// Lets work onto a tainted node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default = "default_toleration_operator")]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Empty tolerates every effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

fn default_toleration_operator() -> TolerationOperator {
    TolerationOperator::Equal
}

impl Toleration {
    /// Whether this toleration tolerates `taint`, with Kubernetes semantics.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match (&self.key, self.operator) {
            (None, TolerationOperator::Exists) => true,
            (None, TolerationOperator::Equal) => false,
            (Some(k), _) if *k != taint.key => false,
            (Some(_), TolerationOperator::Exists) => true,
            (Some(_), TolerationOperator::Equal) => {
                self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        }
    }
}

string_enum! {
    /// Phase of a node, from heartbeats.
    NodePhase { Ready = "Ready", NotReady = "NotReady", Lost = "Lost" }
}

string_enum! {
    /// Mode of a Linux security module.
    LsmMode { Enforcing = "enforcing", Permissive = "permissive", Disabled = "disabled" }
}

/// Security facts an agent discovers on its host; policies and compliance checks read
/// them. `None` means the agent could not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_encryption: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<LsmMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor: Option<LsmMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fips: Option<bool>,
    /// Days since the last OS security update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_age_days: Option<u32>,
}

/// What Meridian observes of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// RFC 3339 time of the last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityFacts>,
    /// Sum of the resources of the allocations placed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<ResourceTotals>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Host volumes the agent offers to tasks (`--volume NAME=PATH[:ro]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::task::HostVolume>,
    /// Addresses other nodes reach this one at (endpoints use the first InternalIP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<crate::task::NodeAddress>,
}

// ---------------------------------------------------------------------------------------
// Workload

string_enum! {
    /// What kind of work.
    WorkloadType {
        /// Runs until stopped; restarted when it exits.
        Service = "service",
        /// Runs to completion.
        Job = "job",
        /// A virtual machine (driver `qemu`).
        Vm = "vm",
    }
}

string_enum! {
    /// Disk image format for the `qemu` driver.
    DiskFormat { Qcow2 = "qcow2", Raw = "raw" }
}

string_enum! {
    /// Windows isolation mode.
    Isolation { Process = "process", Hyperv = "hyperv" }
}

string_enum! {
    /// Sensitivity of the data a workload handles.
    #[derive(Default)]
    Classification {
        Public = "public",
        #[default]
        Internal = "internal",
        Confidential = "confidential",
        /// Personal data (GDPR).
        Personal = "personal",
        /// Sector-regulated data (health, finance, public sector).
        Regulated = "regulated",
    }
}

string_enum! {
    /// How residency is enforced.
    #[derive(Default)]
    Sovereignty {
        /// The site's location must be within the residency list.
        #[default]
        Standard = "standard",
        /// The site's operator must also be under an allowed jurisdiction.
        Strict = "strict",
    }
}

string_enum! {
    /// How replicas are packed.
    #[derive(Default)]
    Strategy {
        /// Fill the fullest nodes that fit (fewer, busier nodes).
        #[default]
        Binpack = "binpack",
        /// Prefer the emptiest nodes.
        Spread = "spread",
    }
}

string_enum! {
    /// When an exited task is restarted.
    RestartPolicy { Always = "always", OnFailure = "on-failure", Never = "never" }
}

/// What to run, where it may run and how it is handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(rename = "type")]
    pub type_: WorkloadType,
    /// Instances to run (default 1).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    pub task: Task,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataPolicy>,
    /// Certifications every site running this must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compliance: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Box<Placement>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Higher runs first and may preempt lower (default 0).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// Jobs only: this many replicas are placed all together or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<u32>,
    /// Name of the queue a job waits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Jobs in a queue, not gangs: when the queue's quota has no room for every instance
    /// the job would run at once (`parallelism`, or `replicas`), admit as many as fit,
    /// at least this many (Kueue's partial admission, its `job-min-parallelism`); the
    /// rest wait, and join one by one once the job runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_parallelism: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// How a change to what runs is rolled out (services and VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateStrategy>,
    /// A paused workload keeps its instances as they are: no rollout step is taken
    /// until it is resumed (missing instances are still placed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Revisions kept in `status.history` for `rollout undo` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// RFC 3339; changing it rolls every instance out again (`meridian rollout restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// Jobs: at most this many instances run at once (default: all of `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Jobs: how many failed instances are placed again, in all, before the job fails
    /// (default 0; restarts in place follow `restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<u32>,
    /// Jobs: running longer than this since the first instance was placed stops every
    /// instance and fails the job (`DeadlineExceeded`), e.g. `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline: Option<String>,
    /// Jobs: a cron schedule (`*/15 * * * *`, `@daily`; UTC) makes this a periodic job,
    /// which runs nothing itself: at each time it starts a run, a job workload named
    /// `{name}-{minutes since 1970}` with this spec, like a Kubernetes CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Periodic jobs: what a new run does while an earlier one is still active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// Periodic jobs: finished runs kept (default 3 that succeeded, 1 that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<u32>,
}

string_enum! {
    /// A periodic job's answer to a run that is due while an earlier one is active.
    #[derive(Default)]
    ConcurrencyPolicy {
        /// Both run.
        #[default]
        Allow = "Allow",
        /// The new run is skipped.
        Forbid = "Forbid",
        /// The active runs are stopped and the new one starts.
        Replace = "Replace",
    }
}

impl WorkloadSpec {
    /// The update strategy, defaults filled in.
    pub fn update_strategy(&self) -> UpdateStrategy {
        self.update.clone().unwrap_or_default()
    }
}

impl Spec for WorkloadSpec {
    const KIND_INFO: &'static KindInfo = WORKLOAD;
}

/// The unit an agent runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    pub driver: Driver,
    /// Program and arguments (`exec`), or the container entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables: a map of `NAME: value`, or Kubernetes' list of `{name,
    /// value}` and `{name, valueFrom: {secretRef: {name, key}}}`. The task sees these and
    /// the agent's `MERIDIAN_*` variables about the allocation, nothing of the agent's own
    /// environment.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::task::deserialize_env"
    )]
    pub env: crate::task::Env,
    /// Working directory; relative paths are inside the allocation's task directory
    /// (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The account the task runs as: `name`, `uid`, `name:group` or `uid:gid`. Default:
    /// the agent's unprivileged `meridian-task` account; `root` must be asked for, and the
    /// baseline policy `baseline-no-root` refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports the task listens on; host ports are a node resource the scheduler assigns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::task::Port>,
    /// Host volumes of the node, by name; a node without them is not a candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::task::VolumeMount>,
    /// Secrets delivered as files (`$MERIDIAN_SECRETS_DIR/<secret>/<key>`, mode 0400).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::task::SecretFiles>,
    /// Process resource limits (`setrlimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimits: Option<crate::task::Rlimits>,
    /// Container image (`container` driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Disk image (`qemu` driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Box<Disk>>,
    pub resources: Resources,
    /// OS requirement; without it any OS will do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsRequirement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// How the agent checks that the running task works; a task failing it
    /// `failureThreshold` times in a row is restarted per its restart policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Box<HealthCheck>>,
}

/// A VM disk, and optionally a kernel to boot directly (without a boot loader on the disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disk {
    /// Path or URL of the image, as the agent sees it.
    pub image: String,
    #[serde(default = "default_disk_format")]
    pub format: DiskFormat,
    /// Path of a kernel image on the node to boot directly (QEMU `-kernel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Path of an initial ramdisk on the node (QEMU `-initrd`); needs `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Kernel command line (QEMU `-append`); needs `kernel`. Default `console=ttyS0`, so
    /// the kernel's console reaches the allocation's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// A health check: exactly one of `http`, `tcp` or `command`, and its timing. Durations
/// are strings such as `10s`, `500ms` or `1m30s`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// An HTTP GET on the node's loopback: a 2xx or 3xx answer is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A TCP connection to the node's loopback: accepted is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// A program run on the node: exit code 0 is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandCheck>,
    /// Time between checks (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time one check may take before it counts as failed (default `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Failures in a row that make the task unhealthy and restart it (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Time after the start before the first check (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
}

impl HealthCheck {
    /// Default time between checks.
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
    /// Default time limit of one check.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
    /// Default failures in a row before the task is restarted.
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

    /// `interval`, or its default (an invalid value, refused by validation, also gives
    /// the default).
    pub fn interval(&self) -> std::time::Duration {
        duration_or(self.interval.as_deref(), Self::DEFAULT_INTERVAL)
    }

    /// `timeout`, or its default.
    pub fn timeout(&self) -> std::time::Duration {
        duration_or(self.timeout.as_deref(), Self::DEFAULT_TIMEOUT)
    }

    /// `initialDelay`, or none.
    pub fn initial_delay(&self) -> std::time::Duration {
        duration_or(self.initial_delay.as_deref(), std::time::Duration::ZERO)
    }

    /// `failureThreshold`, or its default.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
            .unwrap_or(Self::DEFAULT_FAILURE_THRESHOLD)
            .max(1)
    }
}

fn duration_or(s: Option<&str>, default: std::time::Duration) -> std::time::Duration {
    s.and_then(|s| crate::duration::parse(s).ok())
        .unwrap_or(default)
}

/// An HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    /// A port number, or the name of one of the task's ports.
    pub port: crate::task::PortRef,
    /// Default `/`.
    #[serde(default = "default_http_path")]
    pub path: String,
}

fn default_http_path() -> String {
    "/".to_owned()
}

/// A TCP health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheck {
    /// A port number, or the name of one of the task's ports.
    pub port: crate::task::PortRef,
}

/// A command health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandCheck {
    /// Program and arguments, e.g. `["/usr/bin/pg_isready", "-q"]`.
    pub command: Vec<String>,
}

fn default_disk_format() -> DiskFormat {
    DiskFormat::Qcow2
}

/// Resources one replica needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Memory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Memory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequest>,
}

/// GPUs one replica needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuRequest {
    /// Whole GPUs (`2`), or a share of one GPU below 1 (`0.25`; milli-GPUs `"250m"`),
    /// which lands on one shareable device with that much room. Above 1, whole only.
    pub count: GpuCount,
    /// In an Allocation: the indexes of the devices it holds on its node, counted over
    /// the node's GPUs in the order the node lists them (what the agent exposes as
    /// `NVIDIA_VISIBLE_DEVICES`). Set by the scheduler; a Workload leaves it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<u32>,
    /// A model (`H100`); any model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Minimum memory per GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// The OS a task needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsRequirement {
    pub family: OsFamily,
    /// Windows build the task was built for (`10.0.20348`). With `process` isolation the
    /// node's build must match; with `hyperv` the node's build must be the same or newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Windows only; `process` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
}

/// What data a workload handles and where it may be processed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataPolicy {
    #[serde(default)]
    pub classification: Classification,
    /// Jurisdictions (ISO 3166-1 alpha-2) or blocs (`EU`, `EEA`...) the work may run in;
    /// empty means anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residency: Vec<String>,
    #[serde(default)]
    pub sovereignty: Sovereignty,
    /// Name of the Site where the data lives, to keep work close to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Placement constraints and preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub strategy: Strategy,
    /// Required: every expression must match the node (keys such as `site.provider`,
    /// `site.jurisdiction`, `node.os.distro` or a node label).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<MatchExpression>,
    /// Preferred: the weights of the matching preferences add to a node's score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<Preference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
    /// At most one replica per node.
    #[serde(default, skip_serializing_if = "is_false")]
    pub anti_affinity: bool,
    /// Gangs: keep every member in one domain of a key (one site, zone or rack) so
    /// training traffic stays local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

/// Where a gang's members go together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// The key whose value every member shares: `site.name`, `site.zone`, or a node
    /// label (`rack`, `node.labels.block`).
    pub level: String,
    /// `required`: all in one domain or none placed; `preferred` (default): one domain
    /// when one can take them all, else as gangs go without it.
    #[serde(default)]
    pub mode: TopologyMode,
}

string_enum! {
    /// Whether a gang's topology is a rule or a wish.
    #[derive(Default)]
    TopologyMode {
        Required = "required",
        #[default]
        Preferred = "preferred",
    }
}

/// A weighted preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preference {
    /// -100 (avoid) to 100 (prefer).
    pub weight: i32,
    pub match_expressions: Vec<MatchExpression>,
}

/// Spread replicas evenly over the values of a key (`site.zone`, `site.name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spread {
    pub key: String,
    /// Largest allowed difference in replica count between two values (default 1).
    #[serde(default = "default_max_skew")]
    pub max_skew: i32,
}

/// Restart handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restart {
    pub policy: RestartPolicy,
    /// Give up after this many restarts (`on-failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Delay before a restart, e.g. `10s`, `1m30s`; doubled on each retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// What Meridian observes of a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub desired_replicas: u32,
    #[serde(default)]
    pub placed_replicas: u32,
    #[serde(default)]
    pub running_replicas: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub succeeded_replicas: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_replicas: u32,
    /// Instances that exist (placed, not finished), of any revision.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas: u32,
    /// Instances of the newest revision (`updateRevision`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub updated_replicas: u32,
    /// Running, and healthy when there is a health check.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ready_replicas: u32,
    /// Ready for at least `update.minReadySeconds`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub available_replicas: u32,
    /// The revision every instance ran when the last rollout completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u32>,
    /// The revision of the spec as it is now (the rollout's target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<u32>,
    /// `Available`, `Progressing` (services, VMs); `Complete`, `Failed` (jobs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Why replicas are not placed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Periodic jobs: RFC 3339 time of the last run started (or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// Periodic jobs: the runs that have not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_runs: Vec<String>,
    /// Jobs: RFC 3339 time the first instance was placed (`activeDeadline` counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Recent revisions, oldest first, bounded by `spec.revisionHistoryLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<WorkloadRevision>,
    /// The ready instances that have ports, as other services reach them (node address
    /// and host ports), sorted by allocation name. `meridian get endpoints` lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<crate::task::Endpoint>,
    /// Jobs in a queue: admitted or not, position and why they wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::queue::QueueState>,
}

impl WorkloadStatus {
    /// The condition of this type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

// ---------------------------------------------------------------------------------------
// Allocation

string_enum! {
    /// What the agent should do with an allocation.
    #[derive(Default)]
    DesiredState {
        #[default]
        Run = "run",
        Stop = "stop",
    }
}

string_enum! {
    /// What the agent reports of an allocation.
    #[derive(Default)]
    AllocationPhase {
        #[default]
        Pending = "pending",
        Running = "running",
        /// The task exited and waits out its back-off before the next start (a crash
        /// loop shows here, not as `running`).
        Restarting = "restarting",
        Succeeded = "succeeded",
        Failed = "failed",
        /// The node was lost; the scheduler replaces the allocation.
        Lost = "lost",
    }
}

impl AllocationPhase {
    /// Whether an allocation in this phase still reserves its node's resources (and
    /// counts against its project's quota): every phase but `succeeded`, `failed` and
    /// `lost`.
    pub fn holds_resources(self) -> bool {
        !matches!(
            self,
            AllocationPhase::Succeeded | AllocationPhase::Failed | AllocationPhase::Lost
        )
    }
}

/// One placed instance of a workload on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocationSpec {
    /// Name of the Workload, in the same project.
    pub workload: String,
    /// Replica index, 0-based.
    #[serde(default)]
    pub replica: u32,
    /// Name of the Node.
    pub node: String,
    /// Name of the node's Site (copied for listing and audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default)]
    pub desired_state: DesiredState,
    /// Resources reserved on the node (a copy of the task's).
    pub resources: Resources,
    /// The task to run, copied from the workload when placed, so the agent needs nothing
    /// else and later workload edits do not change a running instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Box<Task>>,
    /// The workload's `metadata.generation` this allocation was placed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_generation: Option<i64>,
    /// The workload revision this allocation runs (`status.history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// Hash of the workload template it runs; what a rollout compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// The workload's type, copied so the agent knows how to treat an exit.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<WorkloadType>,
    /// The workload's restart policy, copied for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Why this node: the scheduler's structured explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Box<crate::explanation::Explanation>>,
    /// Host ports assigned by the scheduler, one per `task.ports` entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::task::PortBinding>,
}

impl Spec for AllocationSpec {
    const KIND_INFO: &'static KindInfo = ALLOCATION;
}

/// What the agent reports of an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocationStatus {
    #[serde(default)]
    pub phase: AllocationPhase,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The task's health check, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// `Healthy` (from the health check), when the task has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

string_enum! {
    /// What the last health checks said.
    #[derive(Default)]
    HealthState {
        /// Not checked yet since the (re)start.
        #[default]
        Unknown = "unknown",
        Healthy = "healthy",
        /// Failed `failureThreshold` times in a row.
        Unhealthy = "unhealthy",
    }
}

/// The outcome of an allocation's health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthStatus {
    #[serde(default)]
    pub state: HealthState,
    /// Failures in a row, up to now.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// What the last check saw (`HTTP 200`, `connection refused`, `exit code 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time of the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Policy

string_enum! {
    /// What a violation does.
    #[derive(Default)]
    Enforcement {
        /// Admission refuses the object.
        #[default]
        Deny = "deny",
        /// Admission accepts it and returns a warning.
        Warn = "warn",
        /// Only the continuous audit reports it.
        Audit = "audit",
    }
}

/// A Rego policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub enforcement: Enforcement,
    /// A Rego module; violations are the `deny` (or `violation`) set it produces.
    pub rego: String,
    /// Kinds the policy looks at (`Workload`, `Node`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Restricts the policy to some projects; all when absent.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub match_: Option<PolicyMatch>,
    /// Handed to the module as `data.parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Controls of compliance frameworks the policy provides evidence for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    /// Library modules the policy imports (`import data.lib.k8s`), compiled with it: the
    /// other `.rego` files of a bundle (`meridian policy install DIR`). Only the `deny`
    /// and `violation` rules of `rego`'s own package are the policy's violations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<PolicyModule>,
    /// A data document loaded at the root of `data` (a bundle's `data.json` or
    /// `data.yaml`), as `opa eval -d data.json` does; must be an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// A library module of a policy: a file name (for errors) and its Rego source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyModule {
    /// File name, e.g. `lib/k8s.rego`; errors name it with line and column.
    pub name: String,
    pub rego: String,
}

impl Spec for PolicySpec {
    const KIND_INFO: &'static KindInfo = POLICY;
}

/// Which objects a policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
}

/// A control of a compliance framework, e.g. `{framework: ISO27001, id: A.5.23}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Control {
    pub framework: String,
    pub id: String,
}

/// What the audit found for a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyStatus {
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_audit_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------
// Project

/// A tenant, exposed as a Kubernetes namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// People or groups accountable for the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Jurisdictions or blocs the project's work may run in; anywhere when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_locations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The queue the project's jobs wait in when they name none (`spec.queue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue: Option<String>,
}

impl Spec for ProjectSpec {
    const KIND_INFO: &'static KindInfo = PROJECT;
}

/// Upper bounds on what a project's allocations may reserve in total, enforced by the
/// scheduler when it places: work that would go over waits (pending, with the reason),
/// it is not refused. Every bound is optional; an absent one does not limit. Lowering a
/// bound below what the project uses evicts nothing: new placements wait until usage
/// falls below it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// GPUs of any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Allocations (placed instances) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// GPUs per model, named as in `task.resources.gpu.model` and node GPUs
    /// (`{H100: 16}`); models not listed are bounded by `gpus` only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpus_by_model: BTreeMap<String, u32>,
}

/// What Meridian observes of a project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectStatus {
    /// `Active` or `Terminating`, as for a namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What the project's allocations reserve now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<ResourceTotals>,
    /// `OverQuota`: usage is above a bound of `spec.quota` (the quota was lowered);
    /// nothing is evicted, new placements wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotas_read_as_before_and_count_instances_and_models() {
        // A quota written before instances and gpusByModel existed reads unchanged.
        let old: Quota =
            serde_json::from_value(json!({"cpu": "96", "memory": "384Gi", "gpus": 0})).unwrap();
        assert_eq!(old.instances, None);
        assert!(old.gpus_by_model.is_empty());
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            json!({"cpu": "96", "memory": "384Gi", "gpus": 0})
        );
        let new: Quota =
            serde_json::from_value(json!({"instances": 10, "gpusByModel": {"H100": 16}})).unwrap();
        assert_eq!(new.gpus_by_model["H100"], 16);
        assert!(serde_json::from_value::<Quota>(json!({"gpusbymodel": {}})).is_err());

        // Usage: what add_allocation sums, and zero instances are not written.
        assert_eq!(
            serde_json::to_value(ResourceTotals::default()).unwrap(),
            json!({"cpu": "0", "memory": "0", "gpus": 0})
        );
        let spec: AllocationSpec = serde_json::from_value(json!({
            "workload": "train", "node": "n1",
            "resources": {"cpu": "2", "memory": "1Gi", "gpu": {"count": 4, "model": "H100"}}
        }))
        .unwrap();
        let mut used = ResourceTotals::default();
        used.add_allocation(&spec);
        used.add_allocation(&spec);
        assert_eq!((used.gpus, used.instances), (GpuCount::whole(8), 2));
        assert_eq!(used.gpus_by_model["H100"], 8);
        assert_eq!(used.cpu.millis(), 4000);
        // Shared GPUs add up in milli-GPUs and show as decimals.
        let share: AllocationSpec = serde_json::from_value(json!({
            "workload": "infer", "node": "n1",
            "resources": {"cpu": "1", "memory": "1Gi",
                          "gpu": {"count": 0.25, "model": "H100", "devices": [3]}}
        }))
        .unwrap();
        assert_eq!(share.resources.gpu.as_ref().unwrap().devices, [3]);
        used.add_allocation(&share);
        used.add_allocation(&share);
        assert_eq!(used.gpus.to_string(), "8.5");
        assert_eq!(
            serde_json::to_value(&used).unwrap()["gpusByModel"],
            json!({"H100": 8.5})
        );
        assert!(AllocationPhase::Running.holds_resources());
        assert!(!AllocationPhase::Succeeded.holds_resources());
    }

    #[test]
    fn lookup_by_every_name() {
        for name in ["Workload", "workload", "WORKLOADS", "wl", "WL"] {
            assert_eq!(lookup_kind(name).unwrap().kind, "Workload", "{name}");
        }
        assert_eq!(lookup_kind("pol").unwrap().kind, "Policy");
        assert_eq!(lookup_kind("policies").unwrap().kind, "Policy");
        assert_eq!(lookup_kind("no").unwrap().kind, "Node");
        assert_eq!(lookup_kind("st").unwrap().kind, "Site");
        assert_eq!(lookup_kind("alloc").unwrap().kind, "Allocation");
        assert_eq!(lookup_kind("proj").unwrap().kind, "Project");
        assert_eq!(lookup_kind("ev").unwrap().kind, "Event");
        assert!(lookup_kind("events").unwrap().namespaced());
        assert!(!EVENT.has_spec() && !EVENT.has_status && WORKLOAD.has_spec());
        assert!(lookup_kind("pods").is_none());
        assert!(lookup_kind("Workload").unwrap().namespaced());
        assert!(!lookup_kind("Site").unwrap().namespaced());
        assert_eq!(lookup_kind("nodes").unwrap().list_kind(), "NodeList");
    }

    #[test]
    fn constants_are_the_table() {
        let constants = [
            SITE,
            NODE,
            WORKLOAD,
            ALLOCATION,
            POLICY,
            PROJECT,
            SECRET,
            EVENT,
            VIRTUAL_MACHINE,
            MIGRATION_PLAN,
            QUEUE,
            COHORT,
        ];
        assert_eq!(KINDS.len(), constants.len());
        for (table, constant) in KINDS.iter().zip(constants) {
            assert_eq!(table, constant);
            assert_eq!(lookup_kind(constant.kind), Some(constant));
        }
        assert_eq!(SiteSpec::kind_info(), SITE);
        assert_eq!(NodeSpec::KIND, "Node");
        assert_eq!(WorkloadSpec::KIND_INFO, WORKLOAD);
        assert_eq!(AllocationSpec::KIND, "Allocation");
        assert_eq!(PolicySpec::kind_info(), POLICY);
        assert_eq!(ProjectSpec::KIND, "Project");
        assert!(PROJECT.spec_optional());
        assert!(!WORKLOAD.spec_optional());
    }

    #[test]
    fn typed_roundtrip_and_any() {
        let p = Project::new(ObjectMeta::named("finance"), ProjectSpec::default());
        let any = AnyObject::from(p);
        assert_eq!(any.kind_info().kind, "Project");
        assert_eq!(any.name(), "finance");
        assert_eq!(
            any.to_value(),
            json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
                   "metadata": {"name": "finance"}, "spec": {}})
        );
        let back: AnyObject = serde_json::from_value(any.to_value()).unwrap();
        assert_eq!(back, any);
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "gpu".into(),
            value: Some("h100".into()),
            effect: TaintEffect::NoSchedule,
        };
        let t = |key: Option<&str>, op, value: Option<&str>, effect| Toleration {
            key: key.map(Into::into),
            operator: op,
            value: value.map(Into::into),
            effect,
        };
        use TolerationOperator::*;
        assert!(t(Some("gpu"), Equal, Some("h100"), None).tolerates(&taint));
        assert!(!t(Some("gpu"), Equal, Some("a100"), None).tolerates(&taint));
        assert!(t(Some("gpu"), Exists, None, Some(TaintEffect::NoSchedule)).tolerates(&taint));
        assert!(!t(Some("gpu"), Exists, None, Some(TaintEffect::NoExecute)).tolerates(&taint));
        assert!(t(None, Exists, None, None).tolerates(&taint));
        assert!(!t(Some("other"), Exists, None, None).tolerates(&taint));
    }
}
