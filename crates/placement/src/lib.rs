//! The scheduler core of Meridian: a pure, deterministic function from a fleet snapshot
//! and a batch of pending instances to placement decisions that explain themselves.
//!
//! This crate does no I/O, has no async, reads no clock and draws no random numbers: the
//! same [`Fleet`] and [`Batch`] always give the same [`Decision`]s (ties go to the node
//! whose name sorts first). The server's scheduler controller builds the snapshot from
//! the store, calls [`place_batch`], and commits the decisions; `meridian plan` calls it
//! on a copy and writes nothing.
//!
//! - [`Fleet`]: sites and nodes converted once into compact structs (integer quantities,
//!   country bitsets), nodes grouped into classes of identical nodes, allocations
//!   accounted per node; [`Fleet::apply`] accounts for decisions made elsewhere.
//! - [`place_batch`] decides a whole batch; [`Placer`] is the same, one instance (or one
//!   gang) at a time, for callers that observe or time each decision.
//! - Hard filters, in this fixed order (a node is counted under the first it fails):
//!   node state (excluded, not ready, cordoned); site (known, residency, the project's
//!   allowed locations, strict sovereignty, certifications); platform (OS, arch,
//!   driver, Windows build per [`windows::RULES`]); taints (`NoSchedule`, `NoExecute`)
//!   and GPU model; `matchExpressions` (site and node attributes, labels, security
//!   facts); capacity (cpu, memory, ephemeral storage, GPUs); anti-affinity; topology
//!   spread (`maxSkew` is hard, like Kubernetes' `DoNotSchedule`). No decision breaks
//!   them.
//! - [`Score`]: binpack or spread, weighted preferences, spread, colocation, cost,
//!   carbon, data locality, `PreferNoSchedule` taints, GPU avoidance.
//! - Preemption of strictly lower-priority work (a gang is preempted whole or not at
//!   all), gangs placed all-or-nothing (one site preferred), rescheduling away from lost
//!   or drained nodes ([`reschedule`]).
//! - Project quotas (`Project.spec.quota`, given with [`Batch::add_in_project`]): an
//!   instance, or a gang with all its members, is placed only within its project's
//!   quota, counting the fleet's allocations and the batch's own placements; work over
//!   it is unplaceable with [`ReasonCode::Quota`] and waits.
//! - [`Explanation`]: rejection counts per reason that add up to the node count, top
//!   candidates with score breakdowns, and the smallest changes that would make an
//!   unplaceable instance fit.

mod explain;
mod filter;
mod fleet;
pub mod frag;
mod schedule;
mod score;
pub mod windows;
mod workload;

// What placement answers crosses the wire: those types live in `api::explanation`.
pub use api::explanation::{
    AllocationRef, Candidate, Decision, Evaluated, Explanation, Outcome, Placement, Preemption,
    ReasonCode, Rejection, Score, Suggestion, WorkloadRef,
};
pub use fleet::{Fleet, FleetError, FreeResources};
pub use frag::TaskMix;
pub use schedule::{GpuScoring, Options};
pub use score::Weights;
pub use workload::{Batch, PlacementError};

use api::{Project, Workload};

use schedule::Session;

/// Places a batch: one [`Decision`] per instance, in the batch's order.
///
/// Instances are considered in [`placement_order`]: by priority (highest first), so
/// higher-priority work gets capacity first; within one priority, larger requests first
/// (by their dominant share of the fleet's capacity), so that small instances fill the
/// gaps large ones leave rather than the other way round; then in batch order. A gang's
/// instances are considered together, at the first of them. The fleet accounts for
/// every placement and preemption, so the next batch sees them.
pub fn place_batch(fleet: &mut Fleet, batch: &Batch, options: &Options) -> Vec<Decision> {
    let mut placer = Placer::new(fleet, batch, options);
    while placer.step().is_some() {}
    placer.finish()
}

/// [`place_batch`] one unit at a time: each [`Placer::step`] decides the next instance
/// in [`placement_order`], or every member of a gang at once, exactly as `place_batch` does
/// (which is this loop). For callers that want to observe or time each decision (the
/// placement benchmark); the decisions are the same.
pub struct Placer<'a> {
    session: Session<'a>,
    batch: &'a Batch,
    order: Vec<usize>,
    next: usize,
    members: Vec<Vec<usize>>,
    /// Undecided instances per workload.
    pending: Vec<usize>,
    outcomes: Vec<Option<Outcome>>,
    last: Vec<usize>,
}

impl<'a> Placer<'a> {
    pub fn new(fleet: &'a mut Fleet, batch: &'a Batch, options: &'a Options) -> Placer<'a> {
        let n = batch.instances.len();
        let order = placement_order(fleet, batch);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); batch.workloads.len()];
        for (i, inst) in batch.instances.iter().enumerate() {
            members[inst.workload].push(i);
        }
        Placer {
            session: Session::new(fleet, batch, options),
            batch,
            order,
            next: 0,
            pending: members.iter().map(Vec::len).collect(),
            members,
            outcomes: vec![None; n],
            last: Vec::new(),
        }
    }

    /// Decides the next unit: returns the batch indexes of the instances just decided
    /// (one, or all members of a gang), or `None` when every instance is decided.
    pub fn step(&mut self) -> Option<&[usize]> {
        let batch = self.batch;
        let i = loop {
            let i = *self.order.get(self.next)?;
            self.next += 1;
            if self.outcomes[i].is_none() {
                break i;
            }
        };
        self.last.clear();
        let inst = batch.instances[i];
        if batch.workloads[inst.workload].gang.is_some() {
            let idx = &self.members[inst.workload];
            let replicas: Vec<u32> = idx.iter().map(|&j| batch.instances[j].replica).collect();
            for (j, o) in idx
                .iter()
                .zip(self.session.place_gang(inst.workload, &replicas))
            {
                self.outcomes[*j] = Some(o);
                self.last.push(*j);
            }
        } else {
            self.outcomes[i] = Some(self.session.place_one(inst.workload, inst.replica));
            self.last.push(i);
        }
        let pending = &mut self.pending[inst.workload];
        *pending = pending.saturating_sub(self.last.len());
        if *pending == 0 {
            // Its static evaluation is not needed any more (and is rebuilt if it were).
            self.session.forget(inst.workload);
        }
        Some(&self.last)
    }

    /// The outcome of instance `i` of the batch, once decided.
    pub fn outcome(&self, i: usize) -> Option<&Outcome> {
        self.outcomes.get(i).and_then(Option::as_ref)
    }

    /// Decides what is left and returns one [`Decision`] per instance, in batch order.
    pub fn finish(mut self) -> Vec<Decision> {
        while self.step().is_some() {}
        let batch = self.batch;
        batch
            .instances
            .iter()
            .zip(self.outcomes)
            .map(|(inst, o)| Decision {
                workload: batch.workloads[inst.workload].workload.clone(),
                replica: inst.replica,
                outcome: o.expect("every instance is decided"),
            })
            .collect()
    }
}

/// The order in which [`place_batch`] considers the batch's instances (indices into the
/// batch, which lists instances in the order they were added): priority, highest first;
/// then size, largest first; then batch order.
///
/// Size is the dominant share: the largest, over cpu, memory and GPUs, of the request
/// divided by the whole fleet's capacity of that resource (every node counted, whatever
/// its state or load, so the order does not depend on what is placed). Largest first
/// with binpack scoring is best-fit decreasing, the classic bin-packing heuristic: on
/// `scripts/bench-quality`'s default instances it brought the nodes used from 1.054 to
/// 1.009 times the optimum on average (BENCHMARKS.md). The order is a pure function of
/// the fleet's capacities and the batch, so placement stays deterministic.
pub fn placement_order(fleet: &Fleet, batch: &Batch) -> Vec<usize> {
    let total = fleet.capacity_totals();
    let size: Vec<u128> = batch
        .workloads
        .iter()
        .map(|w| {
            let gpus = w.gpu.as_ref().map_or(0, |g| u64::from(g.milli));
            [w.res[0], w.res[1], gpus]
                .iter()
                .zip(total)
                .filter(|(_, t)| *t > 0)
                .map(|(r, t)| u128::from(*r) * fleet::UTIL_SCALE / t)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut order: Vec<usize> = (0..batch.instances.len()).collect();
    order.sort_by_key(|&i| {
        let w = batch.instances[i].workload;
        (
            std::cmp::Reverse(batch.workloads[w].priority),
            std::cmp::Reverse(size[w]),
            i,
        )
    });
    order
}

/// Why rescheduling failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RescheduleError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// What [`reschedule`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescheduled {
    /// Allocations released from the node.
    pub released: Vec<AllocationRef>,
    /// New decisions for the released allocations whose workload was given.
    pub decisions: Vec<Decision>,
    /// Released allocations whose workload was not given (not placed again).
    pub orphaned: Vec<AllocationRef>,
}

/// Re-places the allocations of a lost or drained node under the same rules: the node
/// is excluded (for this and every later batch on this fleet), its allocations are
/// released, and the instances whose workload is in `workloads` are placed again
/// (within their project's allowed locations, when the project is in `projects`). The
/// caller passes the workloads it wants re-placed (services and VMs; jobs follow their
/// restart policy).
pub fn reschedule(
    fleet: &mut Fleet,
    node: &str,
    workloads: &[Workload],
    projects: &[Project],
    options: &Options,
) -> Result<Rescheduled, RescheduleError> {
    let released = fleet.drain(node)?;
    let mut batch = Batch::new();
    let mut orphaned = Vec::new();
    for r in &released {
        let w = workloads.iter().find(|w| {
            w.metadata.name == r.workload
                && w.metadata.namespace.as_deref().unwrap_or("") == r.namespace
        });
        match w {
            Some(w) => match projects.iter().find(|p| p.metadata.name == r.namespace) {
                Some(p) => batch.add_in_project(w, p, [r.replica])?,
                None => batch.add(w, [r.replica])?,
            },
            None => orphaned.push(r.clone()),
        }
    }
    let decisions = place_batch(fleet, &batch, options);
    Ok(Rescheduled {
        released,
        decisions,
        orphaned,
    })
}

/// Explains where one more instance of `workload` would go, without placing it: every
/// node under the first filter it fails (capacity included), the top candidates, and
/// suggestions when nothing fits (`meridian explain`).
pub fn explain(
    fleet: &Fleet,
    workload: &Workload,
    project: Option<&Project>,
    options: &Options,
) -> Result<Explanation, PlacementError> {
    let mut batch = Batch::new();
    match project {
        Some(p) => batch.add_in_project(workload, p, [0])?,
        None => batch.add(workload, [0])?,
    }
    let mut copy = fleet.clone();
    let mut session = Session::new(&mut copy, &batch, options);
    Ok(session.explain_only(0))
}
