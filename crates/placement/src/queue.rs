//! Queues compiled for placement: admission by quota with cohorts, borrowing and
//! lending, in the order each queue's strategy and fair sharing give.
//!
//! A queued job is admitted when its queue's quota has room for every pending instance
//! at once (a gang: every member) and placement finds nodes for them; otherwise it waits
//! with a typed [`QueueReason`]. Per resource a queue has a `nominal` quota; in a cohort,
//! the part of it above `nominal - lendingLimit` is lent to the cohort's pool (all of it
//! without a lending limit) and the queue may use, beyond what it keeps, what the pool
//! has left, up to `nominal + borrowingLimit`:
//!
//! ```text
//! guaranteed(q) = nominal(q) - lendable(q)        pool = Σ lendable(p) over the cohort
//! drawn(p)      = max(0, used(p) - guaranteed(p))
//! q may reach     min(nominal(q) + borrowingLimit(q), guaranteed(q) + pool - Σ drawn(p ≠ q))
//! ```
//!
//! which is Kueue's ClusterQueue accounting. Usage counts every allocation the snapshot
//! holds for a job of the queue (admitted earlier, or placed in this batch), so one batch
//! cannot overshoot.
//!
//! Order: within a queue, higher priority first, then older ([`api::queue::queue_order`]);
//! across queues, the queue with the lowest weighted share of what its cohort lends goes
//! first (fair sharing by dominant resource share, as Kueue's fair sharing and Volcano's
//! DRF), then the head's priority and age. A `StrictFIFO` queue whose head does not fit
//! holds the jobs behind it; `BestEffortFIFO` lets them try.

use std::collections::{BTreeMap, HashMap};

use api::queue::{Queue, QueuePreemption, QueueReason, QueueingStrategy, ResourceQuota};

use crate::fleet::Usage;

/// One resource's quota, in placement's integer units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub nominal: u64,
    pub borrowing: Option<u64>,
    pub lending: Option<u64>,
}

impl Bound {
    fn of<T: Copy>(q: &ResourceQuota<T>, unit: impl Fn(T) -> u64) -> Bound {
        Bound {
            nominal: unit(q.nominal),
            borrowing: q.borrowing_limit.map(&unit),
            lending: q.lending_limit.map(&unit),
        }
    }

    /// What the queue lends its cohort.
    pub(crate) fn lendable(&self) -> u64 {
        self.lending.unwrap_or(self.nominal).min(self.nominal)
    }

    /// What the queue keeps for itself.
    pub(crate) fn guaranteed(&self) -> u64 {
        self.nominal - self.lendable()
    }
}

/// A resource a queue can bound.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Res {
    Cpu,
    Memory,
    Gpus,
    Instances,
    Model(String),
}

impl Res {
    /// How the resource is named in messages.
    pub(crate) fn label(&self) -> String {
        match self {
            Res::Cpu => "cpu".into(),
            Res::Memory => "memory".into(),
            Res::Gpus => "gpus".into(),
            Res::Instances => "instances".into(),
            Res::Model(m) => format!("{m} gpus"),
        }
    }

    /// This resource's amount in a usage.
    pub(crate) fn of(&self, u: &Usage) -> u64 {
        match self {
            Res::Cpu => u.cpu,
            Res::Memory => u.memory,
            Res::Gpus => u.gpus,
            Res::Instances => u.instances,
            Res::Model(m) => u.by_model.get(m).copied().unwrap_or(0),
        }
    }
}

/// A queue, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledQueue {
    pub name: String,
    pub cohort: Option<String>,
    pub projects: Vec<String>,
    pub strategy: QueueingStrategy,
    pub preemption: QueuePreemption,
    pub weight: u32,
    /// Bounded resources, in a fixed order (cpu, memory, gpus, instances, models).
    pub bounds: Vec<(Res, Bound)>,
}

impl CompiledQueue {
    fn new(q: &Queue) -> CompiledQueue {
        let quota = &q.spec.quota;
        let mut bounds = Vec::new();
        if let Some(c) = &quota.cpu {
            bounds.push((Res::Cpu, Bound::of(c, |c: api::Cpu| c.millis())));
        }
        if let Some(m) = &quota.memory {
            bounds.push((Res::Memory, Bound::of(m, |m: api::Memory| m.bytes())));
        }
        // GPUs in milli-GPUs, as placement counts them (shares of one device).
        let milli = |n: u32| u64::from(n) * u64::from(api::gpu::MILLI_PER_GPU);
        if let Some(g) = &quota.gpus {
            bounds.push((Res::Gpus, Bound::of(g, milli)));
        }
        if let Some(i) = &quota.instances {
            bounds.push((Res::Instances, Bound::of(i, u64::from)));
        }
        for (model, g) in &quota.gpus_by_model {
            bounds.push((Res::Model(model.clone()), Bound::of(g, milli)));
        }
        CompiledQueue {
            name: q.metadata.name.clone(),
            cohort: q.spec.cohort.clone(),
            projects: q.spec.projects.clone(),
            strategy: q.spec.strategy,
            preemption: q.spec.preemption.clone(),
            weight: q.spec.weight(),
            bounds,
        }
    }

    pub(crate) fn bound(&self, r: &Res) -> Option<&Bound> {
        self.bounds.iter().find(|(x, _)| x == r).map(|(_, b)| b)
    }

    /// Whether the queue bounds some GPU model.
    pub(crate) fn bounds_models(&self) -> bool {
        self.bounds.iter().any(|(r, _)| matches!(r, Res::Model(_)))
    }
}

/// The queues of an estate and which queue each job counts against, for a [`Batch`]
/// (`Batch::set_queues`).
///
/// [`Batch`]: crate::Batch
#[derive(Debug, Clone, Default)]
pub struct Queues {
    pub(crate) list: Vec<CompiledQueue>,
    pub(crate) ids: HashMap<String, u32>,
    /// Cohort name → its queues.
    pub(crate) cohorts: HashMap<String, Vec<u32>>,
    /// (project, workload) → queue: every job whose allocations count against a queue.
    pub(crate) assigned: HashMap<(String, String), u32>,
}

impl Queues {
    /// Compiles the queues (any order; names are unique).
    pub fn new<'a>(queues: impl IntoIterator<Item = &'a Queue>) -> Queues {
        let mut out = Queues::default();
        let mut list: Vec<&Queue> = queues.into_iter().collect();
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for q in list {
            let id = out.list.len() as u32;
            let c = CompiledQueue::new(q);
            if let Some(cohort) = &c.cohort {
                out.cohorts.entry(cohort.clone()).or_default().push(id);
            }
            out.ids.insert(c.name.clone(), id);
            out.list.push(c);
        }
        out
    }

    /// Records that the allocations of job `namespace/name` count against `queue` (the
    /// queue it names, or its project's default). Unknown queues are ignored here: the
    /// job waits with `QueueNotFound` when it is placed.
    pub fn assign(&mut self, namespace: &str, name: &str, queue: &str) {
        if let Some(&id) = self.ids.get(queue) {
            self.assigned
                .insert((namespace.to_string(), name.to_string()), id);
        }
    }

    /// Whether no queue is known.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The queues of a cohort other than `q`.
    pub(crate) fn peers(&self, q: u32) -> &[u32] {
        match &self.list[q as usize].cohort {
            Some(c) => self.cohorts.get(c).map_or(&[][..], Vec::as_slice),
            None => &[],
        }
    }

    /// How much of `r` queue `q` may hold in all now, given every queue's usage, and
    /// which rule sets that: its nominal quota (no cohort), its borrowing limit, or what
    /// the cohort's pool has left.
    pub(crate) fn limit(&self, q: u32, r: &Res, usage: &[Usage]) -> Option<(u64, QueueReason)> {
        let queue = &self.list[q as usize];
        let b = queue.bound(r)?;
        let peers = self.peers(q);
        if queue.cohort.is_none() || peers.len() <= 1 {
            return Some((b.nominal, QueueReason::OverNominalQuota));
        }
        let mut pool = 0u64;
        let mut drawn_by_others = 0u64;
        for &p in peers {
            let Some(pb) = self.list[p as usize].bound(r) else {
                continue;
            };
            pool = pool.saturating_add(pb.lendable());
            if p != q {
                let used = r.of(&usage[p as usize]);
                drawn_by_others =
                    drawn_by_others.saturating_add(used.saturating_sub(pb.guaranteed()));
            }
        }
        let by_pool = b
            .guaranteed()
            .saturating_add(pool.saturating_sub(drawn_by_others));
        match b.borrowing {
            Some(limit) if b.nominal.saturating_add(limit) < by_pool => Some((
                b.nominal.saturating_add(limit),
                QueueReason::OverBorrowingLimit,
            )),
            _ => Some((by_pool, QueueReason::WaitingForBorrowableQuota)),
        }
    }

    /// Fair sharing: what queue `q` borrows beyond its nominal quota as a share of what
    /// its cohort lends, the largest over its resources (dominant resource share), in
    /// thousandths, divided by its weight. 0 when it borrows nothing; `u64::MAX` for a
    /// borrowing queue of weight 0.
    pub(crate) fn weighted_share(&self, q: u32, usage: &[Usage]) -> u64 {
        let queue = &self.list[q as usize];
        if queue.cohort.is_none() {
            return 0;
        }
        let mut share = 0u64;
        for (r, b) in &queue.bounds {
            let borrowed = r.of(&usage[q as usize]).saturating_sub(b.nominal);
            if borrowed == 0 {
                continue;
            }
            let pool: u64 = self
                .peers(q)
                .iter()
                .filter_map(|&p| self.list[p as usize].bound(r))
                .map(Bound::lendable)
                .sum();
            let s = (u128::from(borrowed) * 1000 / u128::from(pool.max(1))) as u64;
            share = share.max(s);
        }
        match (share, queue.weight) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            (s, w) => s / u64::from(w),
        }
    }
}

/// What a queue holds after a batch, for `Queue.status` (see [`queue_report`]).
///
/// [`queue_report`]: crate::queue_report
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueUsage {
    pub usage: api::kinds::ResourceTotals,
    /// [`Queues::weighted_share`].
    pub weighted_share: u64,
    /// Whether it uses more than its nominal quota of some resource.
    pub borrowing: bool,
}

/// Each queue's usage on `fleet` (every allocation of a job assigned to it).
pub fn queue_report(fleet: &crate::Fleet, queues: &Queues) -> BTreeMap<String, QueueUsage> {
    let usage = usage_of(fleet, queues, &HashMap::new());
    queues
        .list
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let u = &usage[i];
            let borrowing = q.bounds.iter().any(|(r, b)| r.of(u) > b.nominal);
            (
                q.name.clone(),
                QueueUsage {
                    usage: u.totals(),
                    weighted_share: queues.weighted_share(i as u32, &usage),
                    borrowing,
                },
            )
        })
        .collect()
}

/// Usage per queue over the fleet's live allocations; `extra` maps workload ids of the
/// batch to their queue (jobs the snapshot has not seen yet).
pub(crate) fn usage_of(
    fleet: &crate::Fleet,
    queues: &Queues,
    extra: &HashMap<crate::fleet::WorkloadId, u32>,
) -> Vec<Usage> {
    let mut usage = vec![Usage::default(); queues.list.len()];
    for a in fleet.allocs.iter().flatten() {
        let q = extra.get(&a.workload).copied().or_else(|| {
            let key = &fleet.workload_names[a.workload as usize];
            queues.assigned.get(key).copied()
        });
        if let Some(q) = q {
            usage[q as usize].add(a, fleet.model_of_alloc(a));
        }
    }
    usage
}
