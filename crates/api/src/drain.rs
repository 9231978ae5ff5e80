//! What a node drain did (`POST /meridian/v1/nodes/{name}/drain`): the node is cordoned,
//! then the instances of services and VMs on it are evicted (their allocations deleted,
//! so the scheduler places them again elsewhere under the same rules) and the instances
//! of jobs are left to finish, as `kubectl drain` leaves what it cannot move.

use serde::{Deserialize, Serialize};

/// The answer of a drain (or of its dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainResult {
    pub node: String,
    /// Nothing was written: the lists say what a drain would do.
    pub dry_run: bool,
    /// Whether this drain cordoned the node (`false`: it already was, or a dry run).
    pub cordoned: bool,
    /// Instances evicted (or that would be).
    pub evicted: Vec<DrainedInstance>,
    /// Instances left on the node, each with its reason.
    pub kept: Vec<DrainedInstance>,
}

/// One instance on the drained node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainedInstance {
    pub namespace: String,
    /// The allocation's name.
    pub name: String,
    pub workload: String,
    /// Why it stays (kept instances only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
