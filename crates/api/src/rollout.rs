//! How a changed workload is rolled out, and the revisions it keeps.
//!
//! The model is Kubernetes Deployments' (`maxUnavailable`, `maxSurge`, `minReadySeconds`,
//! `progressDeadlineSeconds`, revision history, pause, undo) with Nomad's update stanza
//! where it adds something (`autoRevert`). What runs is a workload's *template*
//! ([`WorkloadTemplate`]: task, data policy, compliance, placement, tolerations, restart
//! policy, `restartedAt`); a change to it is a new revision, identified by the template's
//! hash ([`WorkloadTemplate::hash`]), which every allocation carries. A change to anything
//! else (`replicas`, `priority`, `update`, `paused`) rolls nothing out.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kinds::{DataPolicy, Placement, Restart, Task, Toleration, WorkloadSpec, WorkloadType};

/// Default `maxUnavailable` and `maxSurge` of a rolling update (Kubernetes' defaults).
pub const DEFAULT_MAX_UNAVAILABLE: IntOrPercent = IntOrPercent::Percent(25);
/// See [`DEFAULT_MAX_UNAVAILABLE`].
pub const DEFAULT_MAX_SURGE: IntOrPercent = IntOrPercent::Percent(25);
/// Default `progressDeadline`: a rollout that makes no progress for this long stops.
pub const DEFAULT_PROGRESS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);
/// Default `revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY: u32 = 10;

/// An absolute count or a percentage of the desired replicas (`2` or `"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    Int(u32),
    /// 0–100.
    Percent(u32),
}

impl IntOrPercent {
    /// The count for `replicas` desired instances, rounding a percentage up (surge) or
    /// down (unavailable), as Kubernetes does.
    pub fn resolve(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for IntOrPercent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (digits, percent) = match s.strip_suffix('%') {
            Some(d) => (d, true),
            None => (s, false),
        };
        let n: u32 = digits.parse().map_err(|_| {
            format!("{s:?} is neither a count nor a percentage (e.g. 1 or \"25%\")")
        })?;
        Ok(if percent {
            IntOrPercent::Percent(n)
        } else {
            IntOrPercent::Int(n)
        })
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrPercent::Int(n) => s.serialize_u32(*n),
            IntOrPercent::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(IntOrPercent::Int(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for IntOrPercent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntOrPercent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A count (2) or a percentage of the replicas (\"25%\").",
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+%$"}]
        })
    }
}

crate::kinds::string_enum! {
    /// How instances of an old revision are replaced.
    #[derive(Default)]
    UpdateStrategyType {
        /// A few at a time, within `maxUnavailable` and `maxSurge` (services).
        #[default]
        Rolling = "rolling",
        /// All old instances stop before new ones start (VMs, which own their disks).
        Recreate = "recreate",
    }
}

/// `spec.update`: how a new revision replaces the old one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateStrategy {
    /// `rolling` (default for services) or `recreate` (default for VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<UpdateStrategyType>,
    /// How many instances may be unavailable during the update (default 25%, rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
    /// How many instances may run beyond `replicas` during the update (default 25%,
    /// rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrPercent>,
    /// An instance counts as available once it has run (and, with a health check, been
    /// healthy) this long.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_ready_seconds: u32,
    /// A rollout that makes no progress for this long stops (`Progressing=False`,
    /// `ProgressDeadlineExceeded`); default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// When the rollout stops (deadline, failing new instances), return to the last
    /// revision that was fully available.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_revert: bool,
}

impl UpdateStrategy {
    /// The strategy in force for a workload of type `type_`.
    pub fn strategy_for(&self, type_: WorkloadType) -> UpdateStrategyType {
        self.strategy.unwrap_or(match type_ {
            WorkloadType::Vm => UpdateStrategyType::Recreate,
            _ => UpdateStrategyType::Rolling,
        })
    }

    /// (max surge, max unavailable) for `replicas` desired instances. Both zero would
    /// never progress, so unavailable is then 1, as in Kubernetes.
    pub fn limits(&self, replicas: u32) -> (u32, u32) {
        let surge = self
            .max_surge
            .unwrap_or(DEFAULT_MAX_SURGE)
            .resolve(replicas, true);
        let mut unavailable = self
            .max_unavailable
            .unwrap_or(DEFAULT_MAX_UNAVAILABLE)
            .resolve(replicas, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        (surge, unavailable)
    }

    /// The progress deadline (validated at admission; an unparsable one is the default).
    pub fn progress_deadline(&self) -> std::time::Duration {
        self.progress_deadline
            .as_deref()
            .and_then(|d| crate::duration::parse(d).ok())
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE)
    }
}

/// What runs: the part of a workload whose change is a new revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadTemplate {
    pub task: Task,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compliance: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Box<Placement>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

impl WorkloadTemplate {
    /// The template of a workload spec.
    pub fn of(spec: &WorkloadSpec) -> Self {
        WorkloadTemplate {
            task: spec.task.clone(),
            data: spec.data.clone(),
            compliance: spec.compliance.clone(),
            placement: spec.placement.clone(),
            tolerations: spec.tolerations.clone(),
            restart: spec.restart.clone(),
            restarted_at: spec.restarted_at.clone(),
        }
    }

    /// Writes this template into `spec` (undo, auto-revert).
    pub fn apply_to(&self, spec: &mut WorkloadSpec) {
        spec.task = self.task.clone();
        spec.data = self.data.clone();
        spec.compliance = self.compliance.clone();
        spec.placement = self.placement.clone();
        spec.tolerations = self.tolerations.clone();
        spec.restart = self.restart.clone();
        spec.restarted_at = self.restarted_at.clone();
    }

    /// A stable hash of the template (16 hex digits, FNV-1a over its canonical JSON, in
    /// the spirit of Kubernetes' `pod-template-hash`). Field order is the struct's, so
    /// equal templates hash equally whatever order the manifest wrote them in.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// One revision in a workload's history (`status.history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRevision {
    /// 1, 2, …; a revision rolled back to is renumbered as the newest, as in Kubernetes.
    pub revision: u32,
    /// [`WorkloadTemplate::hash`] of `template`.
    pub template_hash: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The workload's `meridian.dev/change-cause` (or `kubernetes.io/change-cause`)
    /// annotation when the revision was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    pub template: Box<WorkloadTemplate>,
}

/// The annotations whose value is recorded as a revision's change cause.
pub const CHANGE_CAUSE_ANNOTATIONS: [&str; 2] =
    ["meridian.dev/change-cause", "kubernetes.io/change-cause"];

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let p = IntOrPercent::Percent(25);
        assert_eq!(p.resolve(10, true), 3);
        assert_eq!(p.resolve(10, false), 2);
        assert_eq!(p.resolve(1, true), 1);
        assert_eq!(p.resolve(1, false), 0);
        assert_eq!(IntOrPercent::Int(2).resolve(10, false), 2);
    }

    #[test]
    fn both_limits_zero_still_progresses() {
        let u = UpdateStrategy {
            max_surge: Some(IntOrPercent::Int(0)),
            max_unavailable: Some(IntOrPercent::Percent(10)),
            ..UpdateStrategy::default()
        };
        assert_eq!(u.limits(4), (0, 1));
        assert_eq!(UpdateStrategy::default().limits(100), (25, 25));
    }

    #[test]
    fn int_or_percent_reads_and_writes_both_forms() {
        let v: IntOrPercent = serde_json::from_value(serde_json::json!("30%")).unwrap();
        assert_eq!(v, IntOrPercent::Percent(30));
        let v: IntOrPercent = serde_json::from_value(serde_json::json!(3)).unwrap();
        assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(3));
        assert_eq!(
            serde_json::to_value(IntOrPercent::Percent(5)).unwrap(),
            serde_json::json!("5%")
        );
        assert!(serde_json::from_value::<IntOrPercent>(serde_json::json!("x%")).is_err());
        assert!(serde_json::from_value::<IntOrPercent>(serde_json::json!(-1)).is_err());
    }
}
