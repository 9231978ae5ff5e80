//! What placement answers: a [`Decision`] per instance, serialisable so the server can
//! store it on the Allocation (`spec.explanation`) and on the Workload status.

use std::fmt;

use api::kinds::Resources;
use serde::{Deserialize, Serialize};

use crate::explain::Explanation;
use crate::score::Score;

/// A workload by project (namespace) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An allocation the snapshot accounts for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationRef {
    pub namespace: String,
    pub workload: String,
    pub replica: u32,
    pub node: String,
    /// `metadata.name` of the Allocation object, when the snapshot was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub priority: i32,
}

/// The answer for one instance (a replica of a workload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub workload: WorkloadRef,
    pub replica: u32,
    pub outcome: Outcome,
}

/// Placed on a node, or not placeable (and why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    Placed(Box<Placement>),
    Unplaceable(Explanation),
}

/// Where an instance goes, what it reserves, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub node: String,
    pub site: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// What to reserve: the task's resources, with the GPU model set to the one chosen
    /// (copy this into `AllocationSpec.resources`).
    pub resources: Resources,
    /// The workload's priority (what later preemption decisions compare).
    pub priority: i32,
    pub score: Score,
    /// Lower-priority allocations evicted to make room; the caller stops them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preempted: Vec<Preemption>,
    pub explanation: Explanation,
}

/// An allocation evicted to make room for a higher-priority instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preemption {
    pub allocation: AllocationRef,
    /// For people: who preempted it and why.
    pub reason: String,
}

impl Decision {
    /// The chosen node, if placed.
    pub fn node(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Placed(p) => Some(&p.node),
            Outcome::Unplaceable(_) => None,
        }
    }

    /// The placement, if placed.
    pub fn placement(&self) -> Option<&Placement> {
        match &self.outcome {
            Outcome::Placed(p) => Some(p.as_ref()),
            Outcome::Unplaceable(_) => None,
        }
    }

    pub fn is_placed(&self) -> bool {
        matches!(self.outcome, Outcome::Placed(_))
    }

    /// The explanation, placed or not.
    pub fn explanation(&self) -> &Explanation {
        match &self.outcome {
            Outcome::Placed(p) => &p.explanation,
            Outcome::Unplaceable(e) => e,
        }
    }

    /// The explanation as JSON, for `AllocationSpec.explanation`.
    pub fn explanation_value(&self) -> serde_json::Value {
        serde_json::to_value(self.explanation()).expect("explanations serialize")
    }
}
