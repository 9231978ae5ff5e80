//! The checks after a fault: waiting until the scheduler has caught up, then the
//! invariants of `testkit::invariants` on what the servers answer, and the audit chain.

use api::kinds::{Allocation, NodePhase, Workload};
use testkit::invariants::{
    duplicated_instances, excess_instances, lost_writes, overcommitted_nodes,
};
use testkit::wait_until;

use super::{Estate, SETTLE, typed};

impl Estate {
    /// Waits until the scheduler has caught up with the (paused) writer: no live
    /// allocation beyond a workload's replicas or of a workload that is gone, and every
    /// instance placed unless no Ready node has room for it.
    pub fn wait_converged(&self) {
        wait_until(SETTLE, "the scheduler to catch up", || {
            let workloads: Vec<Workload> = typed(self.workloads_raw()?)?;
            let allocations = self.allocations()?;
            let nodes = self.nodes()?;
            let excess = excess_instances(&workloads, &allocations);
            if !excess.is_empty() {
                return Err(format!("not yet stopped: {excess:?}"));
            }
            let live: Vec<&Allocation> = allocations
                .iter()
                .filter(|a| {
                    a.status
                        .as_ref()
                        .map(|s| s.phase)
                        .unwrap_or_default()
                        .holds_resources()
                })
                .collect();
            let missing: Vec<String> = workloads
                .iter()
                .flat_map(|w| {
                    (0..u32::try_from(w.spec.replicas).unwrap_or(0)).filter_map(|i| {
                        let placed = live
                            .iter()
                            .any(|a| a.spec.workload == w.metadata.name && a.spec.replica == i);
                        (!placed).then(|| format!("{}-{i}", w.metadata.name))
                    })
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let room: Vec<String> = nodes
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(NodePhase::Ready))
                .filter_map(|n| {
                    let used: u64 = live
                        .iter()
                        .filter(|a| a.spec.node == n.metadata.name)
                        .map(|a| a.spec.resources.cpu.millis())
                        .sum();
                    let free = n.spec.allocatable().cpu.millis().saturating_sub(used);
                    (free >= self.instance_millis)
                        .then(|| format!("{} ({free}m free)", n.metadata.name))
                })
                .collect();
            if room.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "instances {missing:?} unplaced while {room:?} have room"
                ))
            }
        });
    }

    /// The invariants, read through the balancer: acknowledged writes, duplicated
    /// instances, over-committed nodes, and the audit chain through `meridian audit
    /// verify` on a running server.
    pub fn check(&self) -> Checked {
        let ledger = self.writer().ledger();
        let read = wait_until(SETTLE, "the objects to be read for the checks", || {
            Ok::<_, String>((self.workloads_raw()?, self.allocations()?, self.nodes()?))
        });
        let (workloads, allocations, nodes) = read;
        let slot = *self.running().first().expect("a running server");
        let verify = self.slots[slot]
            .process
            .as_ref()
            .expect("running")
            .cli(&["audit", "verify"]);
        Checked {
            lost: lost_writes(&ledger, &workloads),
            duplicated: duplicated_instances(&allocations),
            overcommitted: overcommitted_nodes(&nodes, &allocations),
            leaders: Vec::new(),
            audit: if verify.status.success() {
                None
            } else {
                Some(format!(
                    "{}{}",
                    testkit::stdout(&verify),
                    testkit::stderr(&verify)
                ))
            },
            acknowledged_objects: ledger.objects(),
        }
    }
}

/// What the checks found after one fault: every list empty is a pass.
#[derive(Debug, Default)]
pub struct Checked {
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub overcommitted: Vec<String>,
    /// Two servers running controllers at once.
    pub leaders: Vec<String>,
    /// `meridian audit verify`'s output when it failed.
    pub audit: Option<String>,
    pub acknowledged_objects: usize,
}

impl Checked {
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.overcommitted.is_empty()
            && self.leaders.is_empty()
            && self.audit.is_none()
    }
}
