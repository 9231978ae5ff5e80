//! What the scheduler answers, on the wire: a [`Decision`] per instance and the
//! [`Explanation`] of each, which the server stores on the Allocation
//! (`AllocationSpec.explanation`), answers from `explain` ([`Explained`]) and `plan`
//! ([`Plan`]), and the CLI prints.
//!
//! `placement` builds these types directly (it re-exports them), so a field renamed here
//! fails to compile in the scheduler and in the CLI alike; the JSON shape is the one
//! stored objects already carry.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{Resources, WorkloadStatus};

/// A node's score for one instance, by component. `total` is their sum. Higher is better.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub total: f64,
    /// Binpack or spread.
    pub strategy: f64,
    /// Sum of the weights of the matching `placement.preferences`.
    pub preferences: f64,
    /// Topology spread (0 in the least-loaded domain).
    pub spread: f64,
    /// Replicas of the same service already on the node.
    pub colocation: f64,
    pub cost: f64,
    pub carbon: f64,
    /// Data locality (`data.location`).
    pub locality: f64,
    /// Untolerated `PreferNoSchedule` taints.
    pub taints: f64,
    /// A GPU node for work that needs no GPU.
    pub gpu_avoidance: f64,
    /// What one instance costs per hour here, when the site has prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_hour: Option<f64>,
    /// The site's carbon intensity, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_grams_per_kwh: Option<f64>,
}

/// Scores are finite: they are sums of finite weights and of prices and carbon
/// intensities that validation keeps finite, and JSON cannot carry NaN anyway. On finite
/// numbers `==` is an equivalence, so an [`AllocationSpec`](crate::kinds::AllocationSpec)
/// that carries an explanation can stay `Eq`.
impl Eq for Score {}

/// Which filters the rejection counts cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Evaluated {
    /// Every filter, capacity included (unplaceable instances, `placement::explain`).
    AllFilters,
    /// The static filters (everything but capacity, anti-affinity and spread): placed
    /// instances, where checking every node's capacity would cost more than placing.
    StaticFilters,
}

/// A machine-readable reason code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ReasonCode {
    Excluded,
    NotReady,
    Unschedulable,
    UnknownSite,
    Residency,
    ProjectLocations,
    Sovereignty,
    Certifications,
    Os,
    Arch,
    Driver,
    Volume,
    WindowsBuild,
    Taint,
    GpuModel,
    /// A share of a GPU (`count: 0.25`) and the node's matching GPUs are not shareable
    /// (`GpuDevice.shareable: false`).
    GpuSharing,
    Placement,
    Security,
    Cpu,
    Memory,
    EphemeralStorage,
    Gpu,
    Port,
    AntiAffinity,
    Spread,
    Gang,
    /// The project's quota (`Project.spec.quota`) has no room: the instance waits.
    Quota,
    /// The job's queue does not admit it yet (quota, cohort, strategy): it waits.
    Queue,
}

/// Nodes rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub reason: ReasonCode,
    pub nodes: u32,
    /// `jurisdiction US not in [EU]`
    pub message: String,
}

impl fmt::Display for Rejection {
    /// `412 nodes: jurisdiction US not in [EU]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.nodes == 1 { "node" } else { "nodes" };
        write!(f, "{} {noun}: {}", self.nodes, self.message)
    }
}

/// A node that could take the instance, with its score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub node: String,
    pub site: String,
    pub score: Score,
}

/// A change that would make the instance fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// The rule the change relaxes.
    pub relaxes: ReasonCode,
    /// `would fit if residency allowed CH`
    pub message: String,
    /// How many nodes the change would open up.
    pub nodes: u32,
}

/// Why a decision is what it is: rejection counts per reason that add up to the node
/// count, the best candidates with their scores, and the smallest changes that would make
/// an unplaceable instance fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// One line for people (`WorkloadStatus.message`).
    pub summary: String,
    /// Nodes considered: every node of the snapshot.
    pub nodes: u32,
    pub evaluated: Evaluated,
    /// Nodes that passed every evaluated filter; `passed + Σ rejections.nodes == nodes`.
    pub passed: u32,
    /// Largest count first.
    pub rejections: Vec<Rejection>,
    /// Best first (placed instances and `placement::explain`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Jobs in a queue that wait for it (quota, strategy), with the typed reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::queue::QueueWait>,
}

impl Explanation {
    /// Rejections as lines: `412 nodes: jurisdiction US not in [EU]`.
    pub fn lines(&self) -> Vec<String> {
        self.rejections.iter().map(ToString::to_string).collect()
    }

    /// The number of nodes rejected for `code`.
    pub fn rejected_for(&self, code: ReasonCode) -> u32 {
        self.rejections
            .iter()
            .filter(|r| r.reason == code)
            .map(|r| r.nodes)
            .sum()
    }

    /// Everything, one item a line, for a terminal.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.summary);
        for r in &self.rejections {
            out += &format!("  {r}\n");
        }
        for c in &self.candidates {
            out += &format!(
                "  candidate {} ({}): score {:.2}\n",
                c.node, c.site, c.score.total
            );
        }
        for s in &self.suggestions {
            out += &format!("  {} ({} nodes)\n", s.message, s.nodes);
        }
        for n in &self.notes {
            out += &format!("  note: {n}\n");
        }
        out
    }
}

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

/// An allocation a placement snapshot accounts for.
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
    /// Host ports reserved on the node, one per `task.ports` entry (copy this into
    /// `AllocationSpec.ports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::task::PortBinding>,
    /// The flavour of its queue a queued job was admitted into (its queue has
    /// `spec.flavors`); the node is one of that flavour's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
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

    /// The explanation, placed or not (what `AllocationSpec.explanation` stores).
    pub fn explanation(&self) -> &Explanation {
        match &self.outcome {
            Outcome::Placed(p) => &p.explanation,
            Outcome::Unplaceable(e) => e,
        }
    }
}

/// The answer of `GET .../workloads/{name}/explain`: where one more instance would go
/// now, or why it cannot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explained {
    pub workload: WorkloadRef,
    /// The workload's status as stored (`null` before the scheduler first saw it).
    pub status: Option<WorkloadStatus>,
    pub explanation: Explanation,
}

/// An instance `POST /meridian/v1/plan` takes as already placed, besides the live fleet's
/// allocations: what a caller's earlier what-if answers placed on `node` (the body's
/// `reserved` list). A caller that plans more than one body may send fits in chains them
/// this way, so the second body sees the room the first used; nothing is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reservation {
    pub node: String,
    /// What it holds there (one instance's, or the sum of several).
    pub resources: Resources,
}

/// The answer of `POST /meridian/v1/plan`: one decision per instance, nothing written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub decisions: Vec<Decision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_keep_their_json_shape() {
        let e = Explanation {
            summary: "placed on a".into(),
            nodes: 2,
            evaluated: Evaluated::StaticFilters,
            passed: 1,
            rejections: vec![Rejection {
                reason: ReasonCode::Residency,
                nodes: 1,
                message: "jurisdiction US not in [EU]".into(),
            }],
            candidates: vec![Candidate {
                node: "a".into(),
                site: "fra".into(),
                score: Score {
                    total: 1.5,
                    strategy: 1.5,
                    ..Score::default()
                },
            }],
            suggestions: Vec::new(),
            notes: Vec::new(),
            queue: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["evaluated"], "staticFilters");
        assert_eq!(v["rejections"][0]["reason"], "residency");
        assert_eq!(v["candidates"][0]["score"]["gpuAvoidance"], 0.0);
        assert!(v.get("suggestions").is_none() && v.get("notes").is_none());
        assert_eq!(serde_json::from_value::<Explanation>(v).unwrap(), e);
    }
}
