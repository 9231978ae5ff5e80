//! The invariants a fault must never break (DESIGN.md, "Invariants" 1 and 2), as pure
//! functions over what a client read back, so that the crash, HA and chaos tests and the
//! benchmarks share one definition. Each returns the violations it found, one readable
//! line each; an empty list is a pass.
//!
//! - [`lost_writes`]: every write a server acknowledged is still there, at the
//!   acknowledged `resourceVersion` or a later one (and, at the same version, with the
//!   content that was written).
//! - [`duplicated_instances`]: no instance slot of a workload holds two live allocations.
//!   The scheduler's rule (`server/src/rollout.rs`): an instance (replica index) holds at
//!   most one allocation per workload revision, so old and new revisions coexist during a
//!   rolling update but two of one revision never do.
//! - [`overcommitted_nodes`]: on no node do the allocations that hold resources ask for
//!   more cpu or memory than the node's allocatable.
//! - [`excess_instances`]: once the scheduler has caught up, no live allocation is of an
//!   index at or beyond its workload's `replicas`, nor of a workload that is gone.
//!
//! "Live" is what the scheduler counts ([`api::kinds::AllocationPhase::holds_resources`]):
//! every phase but succeeded, failed and lost.

use std::collections::{BTreeMap, HashMap};

use api::kinds::{Allocation, Node, Workload};
use serde_json::Value;

/// The annotation a test writer puts its write's sequence number in, so that an object
/// found at the acknowledged version can be checked to hold that write.
pub const SEQ_ANNOTATION: &str = "chaos.meridian.dev/seq";

/// One acknowledged write: the version the server answered and what was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub resource_version: i64,
    /// The writer's sequence number ([`SEQ_ANNOTATION`]).
    pub seq: u64,
}

/// What a client saw acknowledged, per object (project, name): its latest acknowledged
/// write, by version.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    latest: BTreeMap<(String, String), Ack>,
    /// Writes acknowledged in all.
    pub acknowledged: u64,
}

impl Ledger {
    /// Records an acknowledged write of `project/name`.
    pub fn record(&mut self, project: &str, name: &str, ack: Ack) {
        self.acknowledged += 1;
        let entry = self
            .latest
            .entry((project.to_owned(), name.to_owned()))
            .or_insert_with(|| ack.clone());
        if ack.resource_version >= entry.resource_version {
            *entry = ack;
        }
    }

    /// Objects written at least once.
    pub fn objects(&self) -> usize {
        self.latest.len()
    }

    /// The latest acknowledged write of each object.
    pub fn latest(&self) -> impl Iterator<Item = (&(String, String), &Ack)> {
        self.latest.iter()
    }
}

/// A stored object's `metadata.resourceVersion` as a number.
pub fn resource_version(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// Acknowledged writes missing from `found` (the objects read back, of every project),
/// found at an older version, or found at the acknowledged version with other content.
pub fn lost_writes(ledger: &Ledger, found: &[Value]) -> Vec<String> {
    let by_key: HashMap<(&str, &str), &Value> = found
        .iter()
        .filter_map(|o| {
            let meta = o.get("metadata")?;
            Some((
                (
                    meta.get("namespace").and_then(Value::as_str).unwrap_or(""),
                    meta.get("name")?.as_str()?,
                ),
                o,
            ))
        })
        .collect();
    let mut lost = Vec::new();
    for ((project, name), ack) in ledger.latest() {
        let Some(object) = by_key.get(&(project.as_str(), name.as_str())) else {
            lost.push(format!(
                "{project}/{name}: acknowledged at {} (write {}), now missing",
                ack.resource_version, ack.seq
            ));
            continue;
        };
        let rv = resource_version(object).unwrap_or(0);
        let seq = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SEQ_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok());
        if rv < ack.resource_version {
            lost.push(format!(
                "{project}/{name}: acknowledged at {} (write {}), found at older {rv}",
                ack.resource_version, ack.seq
            ));
        } else if rv == ack.resource_version && seq != Some(ack.seq) {
            lost.push(format!(
                "{project}/{name}: at the acknowledged version {rv} it holds write {seq:?}, \
                 not the acknowledged write {}",
                ack.seq
            ));
        }
    }
    lost
}

fn live(a: &Allocation) -> bool {
    a.status
        .as_ref()
        .map(|s| s.phase)
        .unwrap_or_default()
        .holds_resources()
}

/// Instance slots (project, workload, replica index, revision) held by more than one
/// live allocation.
pub fn duplicated_instances(allocations: &[Allocation]) -> Vec<String> {
    let mut slots: BTreeMap<(String, String, u32, u32), Vec<&str>> = BTreeMap::new();
    for a in allocations.iter().filter(|a| live(a)) {
        slots
            .entry((
                a.metadata.namespace.clone().unwrap_or_default(),
                a.spec.workload.clone(),
                a.spec.replica,
                a.spec.revision.unwrap_or(1),
            ))
            .or_default()
            .push(a.metadata.name.as_str());
    }
    slots
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|((project, workload, replica, revision), names)| {
            format!(
                "{project}/{workload} instance {replica} (revision {revision}) has {} live \
                 allocations: {names:?}",
                names.len()
            )
        })
        .collect()
}

/// Nodes whose live allocations ask for more cpu or memory than the node's allocatable
/// (allocations on a node that is not in `nodes` are reported too: they hold nothing
/// anywhere the scheduler can see).
pub fn overcommitted_nodes(nodes: &[Node], allocations: &[Allocation]) -> Vec<String> {
    let mut used: BTreeMap<&str, (u64, u64, usize)> = BTreeMap::new();
    for a in allocations.iter().filter(|a| live(a)) {
        let entry = used.entry(a.spec.node.as_str()).or_default();
        entry.0 += a.spec.resources.cpu.millis();
        entry.1 += a.spec.resources.memory.bytes();
        entry.2 += 1;
    }
    let mut over = Vec::new();
    for (node, (cpu, memory, count)) in used {
        let Some(n) = nodes.iter().find(|n| n.metadata.name == node) else {
            over.push(format!(
                "{count} live allocations on node {node}, which does not exist"
            ));
            continue;
        };
        let allocatable = n.spec.allocatable();
        let (cpu_cap, memory_cap) = (allocatable.cpu.millis(), allocatable.memory.bytes());
        if cpu > cpu_cap || memory > memory_cap {
            over.push(format!(
                "node {node} over-committed by {count} allocations: cpu {cpu}m of \
                 {cpu_cap}m, memory {memory} of {memory_cap} bytes"
            ));
        }
    }
    over
}

/// Live allocations the scheduler should have stopped by now: of an index at or beyond
/// the workload's `replicas` (a scale-down not carried out), or of a workload that no
/// longer exists.
pub fn excess_instances(workloads: &[Workload], allocations: &[Allocation]) -> Vec<String> {
    let replicas: HashMap<(&str, &str), i32> = workloads
        .iter()
        .map(|w| {
            (
                (
                    w.metadata.namespace.as_deref().unwrap_or(""),
                    w.metadata.name.as_str(),
                ),
                w.spec.replicas,
            )
        })
        .collect();
    allocations
        .iter()
        .filter(|a| live(a))
        .filter_map(|a| {
            let project = a.metadata.namespace.as_deref().unwrap_or("");
            match replicas.get(&(project, a.spec.workload.as_str())) {
                None => Some(format!(
                    "allocation {project}/{} is live but its workload {} is gone",
                    a.metadata.name, a.spec.workload
                )),
                Some(&n) if i64::from(a.spec.replica) >= i64::from(n) => Some(format!(
                    "allocation {project}/{} is live for index {} of {}, which has {n} \
                     replicas",
                    a.metadata.name, a.spec.replica, a.spec.workload
                )),
                Some(_) => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allocation(name: &str, replica: u32, revision: u32, node: &str, phase: &str) -> Allocation {
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": name, "namespace": "p"},
            "spec": {"workload": "w", "replica": replica, "node": node, "revision": revision,
                     "resources": {"cpu": "600m", "memory": "1Gi"}},
            "status": {"phase": phase},
        }))
        .expect("an allocation")
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Node",
            "metadata": {"name": name},
            "spec": {"site": "s", "os": {"family": "linux"}, "arch": "amd64",
                     "capacity": {"cpu": "1", "memory": "4Gi"}},
        }))
        .expect("a node")
    }

    #[test]
    fn two_live_allocations_of_one_slot_are_a_duplicate_but_two_revisions_are_not() {
        let ok = [
            allocation("w-0", 0, 1, "n1", "running"),
            allocation("w-0-r2", 0, 2, "n1", "pending"),
            allocation("w-0-retry", 0, 1, "n2", "failed"),
        ];
        assert!(duplicated_instances(&ok).is_empty());
        let bad = [
            allocation("w-0", 0, 1, "n1", "running"),
            allocation("w-0-x", 0, 1, "n2", "pending"),
        ];
        let found = duplicated_instances(&bad);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("p/w instance 0"), "{found:?}");
    }

    #[test]
    fn a_node_is_overcommitted_only_by_live_allocations() {
        let nodes = [node("n1")];
        let fits = [
            allocation("a", 0, 1, "n1", "running"),
            allocation("b", 1, 1, "n1", "succeeded"),
        ];
        assert!(overcommitted_nodes(&nodes, &fits).is_empty());
        let over = [
            allocation("a", 0, 1, "n1", "running"),
            allocation("b", 1, 1, "n1", "pending"),
        ];
        let found = overcommitted_nodes(&nodes, &over);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("cpu 1200m of 1000m"), "{found:?}");
    }

    #[test]
    fn a_write_is_lost_when_missing_older_or_different() {
        let mut ledger = Ledger::default();
        ledger.record(
            "p",
            "a",
            Ack {
                resource_version: 5,
                seq: 1,
            },
        );
        ledger.record(
            "p",
            "a",
            Ack {
                resource_version: 9,
                seq: 2,
            },
        );
        ledger.record(
            "p",
            "b",
            Ack {
                resource_version: 7,
                seq: 3,
            },
        );
        ledger.record(
            "p",
            "c",
            Ack {
                resource_version: 8,
                seq: 4,
            },
        );
        let object = |name: &str, rv: i64, seq: u64| {
            json!({"metadata": {"name": name, "namespace": "p", "resourceVersion": rv.to_string(),
                                "annotations": {SEQ_ANNOTATION: seq.to_string()}}})
        };
        let all_there = [object("a", 9, 2), object("b", 12, 9), object("c", 8, 4)];
        assert!(lost_writes(&ledger, &all_there).is_empty());
        let broken = [object("a", 5, 1), object("c", 8, 5)];
        let lost = lost_writes(&ledger, &broken);
        assert_eq!(lost.len(), 3, "{lost:?}");
        assert_eq!(ledger.acknowledged, 4);
    }
}
