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
pub mod queue;
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
pub use queue::{
    CohortUsage, QueueUsage, Queues, cohort_report, queue_and_cohort_report, queue_report,
};
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
    /// Instances outside queues, in [`placement_order`].
    order: Vec<usize>,
    next: usize,
    /// Queued jobs, one lane per queue.
    lanes: Vec<Lane>,
    /// Each lane's queue's weighted share, kept current as usage changes.
    shares: Vec<u64>,
    /// Each cohort's weighted share among its siblings, kept current likewise.
    cohort_shares: Vec<u64>,
    /// The lane of each queue that has one.
    lane_of: Vec<Option<usize>>,
    members: Vec<Vec<usize>>,
    /// Undecided instances per workload.
    pending: Vec<usize>,
    outcomes: Vec<Option<Outcome>>,
    last: Vec<usize>,
}

/// The queued jobs of one queue, in its order (priority, then age).
struct Lane {
    queue: u32,
    /// Its queue's cohorts, from the root of its tree down.
    path: Vec<u32>,
    /// Batch workload indexes.
    jobs: Vec<usize>,
    next: usize,
    /// A `StrictFIFO` queue's head that did not fit: the jobs behind it wait.
    blocked_by: Option<usize>,
}

impl<'a> Placer<'a> {
    pub fn new(fleet: &'a mut Fleet, batch: &'a Batch, options: &'a Options) -> Placer<'a> {
        let n = batch.instances.len();
        let order = placement_order(fleet, batch);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); batch.workloads.len()];
        for (i, inst) in batch.instances.iter().enumerate() {
            members[inst.workload].push(i);
        }
        let mut session = Session::new(fleet, batch, options);
        let mut outcomes = vec![None; n];
        // Queued jobs leave the common order for their queue's lane; jobs whose queue
        // refuses them wait, decided now.
        let mut lanes: Vec<Lane> = Vec::new();
        let mut queued = vec![false; batch.workloads.len()];
        for wi in 0..batch.workloads.len() {
            if members[wi].is_empty() {
                continue;
            }
            if let Some(w) = session.queue_refusal(wi) {
                let e = session.queue_refused(w);
                for &i in &members[wi] {
                    outcomes[i] = Some(Outcome::Unplaceable(e.clone()));
                }
                queued[wi] = true;
            } else if let Some(q) = session.queue_id(wi) {
                match lanes.iter_mut().find(|l| l.queue == q) {
                    Some(l) => l.jobs.push(wi),
                    None => lanes.push(Lane {
                        queue: q,
                        path: session.cohort_path(q),
                        jobs: vec![wi],
                        next: 0,
                        blocked_by: None,
                    }),
                }
                queued[wi] = true;
            }
        }
        for lane in &mut lanes {
            lane.jobs.sort_by(|&a, &b| {
                let key = |wi: usize| {
                    let w = &batch.workloads[wi];
                    (
                        w.priority,
                        w.created.as_str(),
                        w.workload.namespace.as_str(),
                        w.workload.name.as_str(),
                    )
                };
                api::queue::queue_order(key(a), key(b))
            });
        }
        let order = order
            .into_iter()
            .filter(|&i| !queued[batch.instances[i].workload])
            .collect();
        let pending = members
            .iter()
            .map(|m| m.iter().filter(|&&i| outcomes[i].is_none()).count())
            .collect();
        let shares = lanes.iter().map(|l| session.queue_share(l.queue)).collect();
        let cohort_shares = session.cohort_shares();
        let mut lane_of = vec![None; session.queue_count()];
        for (i, l) in lanes.iter().enumerate() {
            lane_of[l.queue as usize] = Some(i);
        }
        // Shares are current as of now: what changed before is in them.
        let _ = session.changed_queues();
        Placer {
            session,
            batch,
            order,
            next: 0,
            shares,
            cohort_shares,
            lane_of,
            lanes,
            pending,
            members,
            outcomes,
            last: Vec::new(),
        }
    }

    /// The lane whose head goes next: lowest weighted share first (fair sharing, down
    /// the cohort tree: [`queue::share_order`]), then the head's priority, then its age.
    fn next_lane(&self) -> Option<usize> {
        let batch = self.batch;
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.next < l.jobs.len())
            .min_by(|(i, a), (j, b)| {
                let (ha, hb) = (
                    &batch.workloads[a.jobs[a.next]],
                    &batch.workloads[b.jobs[b.next]],
                );
                queue::share_order(
                    (&a.path, a.queue, self.shares[*i]),
                    (&b.path, b.queue, self.shares[*j]),
                    &self.cohort_shares,
                )
                .then_with(|| {
                    api::queue::queue_order(
                        (
                            ha.priority,
                            ha.created.as_str(),
                            ha.workload.namespace.as_str(),
                            ha.workload.name.as_str(),
                        ),
                        (
                            hb.priority,
                            hb.created.as_str(),
                            hb.workload.namespace.as_str(),
                            hb.workload.name.as_str(),
                        ),
                    )
                })
                .then(a.queue.cmp(&b.queue))
            })
            .map(|(i, _)| i)
    }

    /// Decides the head job of lane `li`: every pending instance of it, admitted by its
    /// queue at once or waiting.
    fn step_lane(&mut self, li: usize) {
        let batch = self.batch;
        let lane = &mut self.lanes[li];
        let wi = lane.jobs[lane.next];
        lane.next += 1;
        let blocked_by = lane.blocked_by;
        let strict =
            self.session.queue_strategy(lane.queue) == api::queue::QueueingStrategy::StrictFifo;
        let idx: Vec<usize> = self.members[wi]
            .iter()
            .copied()
            .filter(|&i| self.outcomes[i].is_none())
            .collect();
        let outcomes: Vec<Outcome> = if let Some(head) = blocked_by {
            let e = self
                .session
                .behind_head(wi, &batch.workloads[head].workload);
            idx.iter()
                .map(|_| Outcome::Unplaceable(e.clone()))
                .collect()
        } else {
            self.admit(wi, &idx)
        };
        let mut waits = false;
        for (j, mut o) in idx.into_iter().zip(outcomes) {
            if let Outcome::Unplaceable(e) = &mut o {
                self.session.tag_queue(wi, e);
                waits = true;
            }
            self.outcomes[j] = Some(o);
            self.last.push(j);
        }
        if waits && strict && blocked_by.is_none() {
            self.lanes[li].blocked_by = Some(wi);
        }
        self.refresh_shares();
        self.pending[wi] = 0;
        self.session.forget(wi);
    }

    /// Recomputes the shares of the queues whose usage changed (the job admitted, the
    /// jobs its admission or work outside queues evicted) and of the cohorts above them.
    fn refresh_shares(&mut self) {
        let (queues, cohorts) = self.session.changed_queues();
        for q in queues {
            if let Some(li) = self.lane_of[q as usize] {
                self.shares[li] = self.session.queue_share(q);
            }
        }
        for c in cohorts {
            self.cohort_shares[c as usize] = self.session.cohort_share(c);
        }
    }

    /// Admits queued job `wi` (its pending instances `idx`), or says why it waits.
    /// Without flavours: placed within its queue's quota, else after the preemption its
    /// queue allows. With flavours (Kueue's flavour fungibility, by default): into the
    /// first flavour, in the queue's order, where the whole job fits without preempting,
    /// else the first where it fits by preempting; with `whenCanBorrow: TryNextFlavor`,
    /// first into one where it fits without borrowing; with `whenCanPreempt: Preempt`,
    /// preempting in a flavour before trying the next. A job already admitted into one
    /// flavour stays there.
    fn admit(&mut self, wi: usize, idx: &[usize]) -> Vec<Outcome> {
        let n = self.session.queue_flavors(wi);
        if n == 0 {
            let first = self.place_job(wi, idx);
            if first.iter().any(|o| matches!(o, Outcome::Placed(_))) {
                return first;
            }
            return self
                .preempt_and_place(wi, idx)
                .or_else(|| self.place_partially(wi, idx))
                .unwrap_or(first);
        }
        let pinned = self.session.pinned_flavor(wi);
        let flavors: Vec<u16> = match pinned {
            Some(f) => vec![f],
            None => (0..n).collect(),
        };
        let fungibility = self.session.fungibility(wi);
        let placed = |out: &[Outcome]| out.iter().any(|o| matches!(o, Outcome::Placed(_)));
        // `whenCanBorrow: TryNextFlavor`: a flavour where the job fits without borrowing
        // first.
        if fungibility.when_can_borrow == api::queue::WhenCanBorrow::TryNextFlavor {
            for &f in &flavors {
                self.session.set_flavor(wi, Some(f));
                if self.session.would_borrow(wi, idx.len() as u64) {
                    continue;
                }
                let out = self.place_job(wi, idx);
                if placed(&out) {
                    return out;
                }
            }
        }
        let preempt_first = fungibility.when_can_preempt == api::queue::WhenCanPreempt::Preempt;
        let mut waits: Vec<(u16, Vec<Outcome>)> = Vec::new();
        for &f in &flavors {
            self.session.set_flavor(wi, Some(f));
            let out = self.place_job(wi, idx);
            if placed(&out) {
                return out;
            }
            // `whenCanPreempt: Preempt`: preempt here before trying the next flavour.
            if preempt_first && let Some(out) = self.preempt_and_place(wi, idx) {
                return out;
            }
            waits.push((f, out));
        }
        if !preempt_first {
            for &f in &flavors {
                self.session.set_flavor(wi, Some(f));
                if let Some(out) = self.preempt_and_place(wi, idx) {
                    return out;
                }
            }
        }
        for &f in &flavors {
            self.session.set_flavor(wi, Some(f));
            if let Some(out) = self.place_partially(wi, idx) {
                return out;
            }
        }
        // It waits: why, in its first flavour, with a note on each of the others.
        let notes: Vec<String> = waits
            .iter()
            .skip(1)
            .filter_map(|(f, out)| match out.first() {
                Some(Outcome::Unplaceable(e)) => Some(format!(
                    "{}; it waits there too: {}",
                    self.session.flavor_note(wi, *f),
                    e.summary
                )),
                _ => None,
            })
            .collect();
        self.session.set_flavor(wi, pinned);
        let (f, mut first) = waits.swap_remove(0);
        for o in &mut first {
            if let Outcome::Unplaceable(e) = o {
                e.notes
                    .insert(0, format!("tried in {}", self.session.flavor_note(wi, f)));
                e.notes.extend(notes.iter().cloned());
            }
        }
        first
    }

    /// Queue preemption for job `wi` (see `Session::queue_preempt`), then its placement;
    /// `None`, evicting nothing, when that does not place it.
    fn preempt_and_place(&mut self, wi: usize, idx: &[usize]) -> Option<Vec<Outcome>> {
        let evicted = self.session.queue_preempt(wi, idx.len() as u64)?;
        let mut retry = self.place_job(wi, idx);
        match retry.iter_mut().find_map(|o| match o {
            Outcome::Placed(p) => Some(p),
            Outcome::Unplaceable(_) => None,
        }) {
            Some(p) => {
                p.preempted.extend(self.session.queue_preemptions(&evicted));
                Some(retry)
            }
            None => {
                self.session.restore(evicted);
                None
            }
        }
    }

    /// Partial admission (`spec.minParallelism`, Kueue's): when the queue's quota has no
    /// room for every pending instance of job `wi`, even by preempting, as many as fit
    /// it, at least `minParallelism` (or every pending one, when fewer; 1 once the job runs),
    /// found by bisection; the rest wait, saying why. `None` when no such count fits, or
    /// none of the admitted instances finds a node.
    fn place_partially(&mut self, wi: usize, idx: &[usize]) -> Option<Vec<Outcome>> {
        let min = self.batch.workloads[wi].min_parallelism? as usize;
        let all = idx.len();
        let floor = if self.session.runs(wi) {
            1
        } else {
            min.min(all)
        };
        if floor >= all || self.session.queue_admission(wi, floor as u64).is_some() {
            return None;
        }
        // The most that fit: `lo` fits, `hi` does not (quota use grows with the count).
        let (mut lo, mut hi) = (floor, all);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.session.queue_admission(wi, mid as u64).is_none() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut why = self.session.queue_admission(wi, all as u64)?;
        let partly = format!(
            "partially admitted: {lo} of {all} pending instances fit the queue's quota (spec.minParallelism: {min}); the rest wait"
        );
        why.summary = format!("{partly}: {}", why.summary);
        if let Some(q) = why.queue.as_mut() {
            q.message = format!("{partly}: {}", q.message);
            q.partially_admitted = Some(lo as u32);
        }
        let batch = self.batch;
        let mut out: Vec<Outcome> = idx[..lo]
            .iter()
            .map(|&j| self.session.place_one(wi, batch.instances[j].replica))
            .collect();
        if !out.iter().any(|o| matches!(o, Outcome::Placed(_))) {
            return None;
        }
        out.extend(idx[lo..].iter().map(|_| Outcome::Unplaceable(why.clone())));
        Some(out)
    }

    /// Places the pending instances `idx` of queued job `wi`: a gang all together, else
    /// all of them within the quota at once, then one by one.
    fn place_job(&mut self, wi: usize, idx: &[usize]) -> Vec<Outcome> {
        let batch = self.batch;
        if batch.workloads[wi].gang.is_some() {
            let replicas: Vec<u32> = idx.iter().map(|&j| batch.instances[j].replica).collect();
            self.session.place_gang(wi, &replicas)
        } else if let Some(e) = self.session.queue_admission(wi, idx.len() as u64) {
            idx.iter()
                .map(|_| Outcome::Unplaceable(e.clone()))
                .collect()
        } else {
            idx.iter()
                .map(|&j| self.session.place_one(wi, batch.instances[j].replica))
                .collect()
        }
    }

    /// Decides the next unit: returns the batch indexes of the instances just decided
    /// (one, all members of a gang, or every pending instance of a queued job), or
    /// `None` when every instance is decided.
    pub fn step(&mut self) -> Option<&[usize]> {
        let batch = self.batch;
        self.last.clear();
        while self
            .order
            .get(self.next)
            .is_some_and(|&i| self.outcomes[i].is_some())
        {
            self.next += 1;
        }
        let free = self.order.get(self.next).copied();
        let lane = self.next_lane();
        // Work outside queues goes first at equal priority; a queue's head first when
        // its priority is higher.
        let take_lane = match (free, lane) {
            (None, None) => return None,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some(i), Some(l)) => {
                let head = &self.lanes[l];
                batch.workloads[head.jobs[head.next]].priority
                    > batch.workloads[batch.instances[i].workload].priority
            }
        };
        if take_lane {
            self.step_lane(lane.expect("a lane"));
            return Some(&self.last);
        }
        let i = free.expect("an instance");
        self.next += 1;
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
        let preempted = self.last.iter().any(
            |&j| matches!(&self.outcomes[j], Some(Outcome::Placed(p)) if !p.preempted.is_empty()),
        );
        if preempted && !self.lanes.is_empty() {
            self.refresh_shares();
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

/// [`explain`] for a job in a queue: its queue's refusal or quota first (with the
/// typed reason in `Explanation.queue`), then the nodes as [`explain`] gives them.
/// `queues` must account for every job of the estate ([`Queues::assign`]).
pub fn explain_queued(
    fleet: &Fleet,
    workload: &Workload,
    project: Option<&Project>,
    queues: std::sync::Arc<Queues>,
    options: &Options,
) -> Result<Explanation, PlacementError> {
    let mut batch = Batch::new();
    batch.set_queues(queues);
    match project {
        Some(p) => batch.add_in_project(workload, p, [0])?,
        None => batch.add(workload, [0])?,
    }
    let mut copy = fleet.clone();
    let mut session = Session::new(&mut copy, &batch, options);
    Ok(session.explain_only(0))
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
