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
//! which is Kueue's ClusterQueue accounting. Cohorts form trees (Kueue's hierarchical
//! cohorts, `Cohort` objects with a `parent`): per resource, a cohort's subtree quota is
//! its own nominal plus what each child (queue or cohort) lends it, and its usage what
//! each child draws beyond what it keeps; a node may use what it keeps, plus what its
//! parent has available, up to its `borrowingLimit` beyond what it stores there:
//!
//! ```text
//! quota(c)     = own(c) + Σ (quota(k) - guaranteed(k))   over children k
//! usage(c)     = Σ max(0, usage(k) - guaranteed(k))
//! available(n) = quota(n) - usage(n)                                 at a root
//!              = max(0, guaranteed(n) - usage(n))
//!                + min(available(parent), quota(n) - guaranteed(n)
//!                      - max(0, usage(n) - guaranteed(n)) + borrowingLimit(n))
//! q may reach    usage(q) + available(q)
//! ```
//!
//! where a cohort's `guaranteed` is what its `lendingLimit` keeps from its parent. With
//! one level this is the formula above. Usage counts every allocation the snapshot
//! holds for a job of the queue (admitted earlier, or placed in this batch), so one batch
//! cannot overshoot.
//!
//! Flavours (`spec.flavors`, Kueue's ResourceFlavors): a queue's quota split by where it
//! applies (sites, node labels). A job of a queue with flavours is admitted into one of
//! them, the first in the queue's order whose quota has room for all of it and whose
//! nodes take it (Kueue's flavour fungibility), and is placed on that flavour's nodes
//! only. The accounting above holds per flavour: a cohort's pool of flavour `spot` is
//! what its queues' flavours named `spot` lend. A queue's flat `quota` still bounds the
//! queue as a whole. Each allocation counts in the flavour its job was admitted into
//! ([`Queues::assign_flavor`], from the job's status), else the first flavour of its
//! queue whose selector its node matches.
//!
//! Order: within a queue, higher priority first, then older ([`api::queue::queue_order`]);
//! across queues, the queue with the lowest weighted share of what its cohort lends goes
//! first (fair sharing by dominant resource share, as Kueue's fair sharing and Volcano's
//! DRF), then the head's priority and age. A `StrictFIFO` queue whose head does not fit
//! holds the jobs behind it; `BestEffortFIFO` lets them try.

use std::collections::{BTreeMap, HashMap};

use api::queue::{Cohort, Queue, QueuePreemption, QueueReason, QueueingStrategy, ResourceQuota};

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    /// What allocation `a` (of GPU model `model`) holds of this resource, as
    /// [`Usage::add`] counts it.
    pub(crate) fn amount(&self, a: &crate::fleet::Alloc, model: Option<&str>) -> u64 {
        let gpus = a.gpu.map_or(0, |(_, n)| u64::from(n));
        match self {
            Res::Cpu => a.res[0],
            Res::Memory => a.res[1],
            Res::Gpus => gpus,
            Res::Instances => 1,
            Res::Model(m) => {
                if model == Some(m.as_str()) {
                    gpus
                } else {
                    0
                }
            }
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

/// A flavour of a queue, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledFlavor {
    pub name: String,
    /// Where it applies, for messages.
    pub describe: String,
    pub sites: Vec<String>,
    pub labels: Vec<(String, String)>,
    /// The same restriction as match expressions (`site.name In [...]`,
    /// `node.labels.KEY In [VALUE]`), which placement adds to a job admitted into it.
    pub exprs: Vec<api::MatchExpression>,
    pub bounds: Vec<(Res, Bound)>,
}

impl CompiledFlavor {
    fn new(f: &api::queue::QueueFlavor) -> CompiledFlavor {
        use api::selector::{MatchExpression, Operator};
        let mut exprs = Vec::new();
        if !f.sites.is_empty() {
            exprs.push(MatchExpression {
                key: "site.name".into(),
                operator: Operator::In,
                values: f.sites.clone(),
            });
        }
        for (k, v) in &f.node_selector {
            exprs.push(MatchExpression {
                key: format!("node.labels.{k}"),
                operator: Operator::In,
                values: vec![v.clone()],
            });
        }
        CompiledFlavor {
            name: f.name.clone(),
            describe: f.describe(),
            sites: f.sites.clone(),
            labels: f
                .node_selector
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            exprs,
            bounds: bounds_of(&f.quota),
        }
    }

    /// Whether node `n` of `fleet` is in the flavour.
    pub(crate) fn has_node(&self, fleet: &crate::Fleet, n: crate::fleet::NodeId) -> bool {
        let node = &fleet.nodes[n as usize];
        let site = fleet.site_name_of_class(fleet.class_of(n));
        (self.sites.is_empty() || self.sites.iter().any(|s| s == site))
            && self
                .labels
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v))
    }
}

/// A queue's bounds per resource, in a fixed order (cpu, memory, gpus, instances,
/// models).
fn bounds_of(quota: &api::queue::QueueQuota) -> Vec<(Res, Bound)> {
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
    bounds
}

/// What a queue's jobs hold: in all, and per flavour (in the queue's flavour order).
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    pub total: Usage,
    pub flavors: Vec<Usage>,
}

impl Held {
    /// The usage of the queue as a whole (`None`) or of one of its flavours.
    pub(crate) fn of(&self, flavor: Option<u16>) -> &Usage {
        match flavor {
            Some(f) => &self.flavors[f as usize],
            None => &self.total,
        }
    }

    pub(crate) fn count(
        &mut self,
        a: &crate::fleet::Alloc,
        model: Option<&str>,
        flavor: Option<u16>,
        added: bool,
    ) {
        let parts = std::iter::once(&mut self.total)
            .chain(flavor.and_then(|f| self.flavors.get_mut(f as usize)));
        for u in parts {
            if added {
                u.add(a, model);
            } else {
                u.remove(a, model);
            }
        }
    }
}

/// What every queue's jobs hold ([`Held`]; `tally[q]`), and per cohort and key
/// ([`Queues::keys`]) what its subtree draws beyond what its children keep, kept in step
/// with the queues' usage by [`Tally::count`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub queues: Vec<Held>,
    pub cohorts: Vec<Vec<u64>>,
}

impl std::ops::Index<usize> for Tally {
    type Output = Held;

    fn index(&self, q: usize) -> &Held {
        &self.queues[q]
    }
}

impl Tally {
    /// The tally of `held`: each cohort's draw summed from the deepest cohorts up.
    pub(crate) fn new(queues: &Queues, held: Vec<Held>) -> Tally {
        let mut t = Tally {
            cohorts: vec![vec![0; queues.keys.len()]; queues.cohorts.len()],
            queues: held,
        };
        for (q, keyed) in queues.keyed.iter().enumerate() {
            let Some(c) = queues.cohort_of[q] else {
                continue;
            };
            for e in keyed {
                let drawn = e
                    .res
                    .of(t.queues[q].of(e.part))
                    .saturating_sub(e.bound.guaranteed());
                t.cohorts[c as usize][e.key] += drawn;
            }
        }
        let mut order: Vec<u32> = (0..queues.cohorts.len() as u32).collect();
        order.sort_by_key(|&c| std::cmp::Reverse(queues.cohorts[c as usize].depth));
        for c in order {
            let cohort = &queues.cohorts[c as usize];
            let Some(p) = cohort.parent else { continue };
            for k in 0..queues.keys.len() {
                let drawn = t.cohorts[c as usize][k].saturating_sub(cohort.guaranteed[k]);
                t.cohorts[p as usize][k] += drawn;
            }
        }
        t
    }

    /// Counts allocation `a` in (or out of) queue `q`'s usage (in flavour `flavor`),
    /// and what that changes in the draws of its cohorts up the tree.
    pub(crate) fn count(
        &mut self,
        queues: &Queues,
        q: u32,
        a: &crate::fleet::Alloc,
        model: Option<&str>,
        flavor: Option<u16>,
        added: bool,
    ) {
        if let Some(cohort) = queues.cohort_of[q as usize] {
            for Keyed {
                key: k,
                part,
                res: r,
                bound: b,
            } in &queues.keyed[q as usize]
            {
                if part.is_some() && *part != flavor {
                    continue;
                }
                let used = r.of(self.queues[q as usize].of(*part));
                let amount = r.amount(a, model);
                let now = if added {
                    used.saturating_add(amount)
                } else {
                    used.saturating_sub(amount)
                };
                let g = b.guaranteed();
                self.draw(
                    queues,
                    cohort,
                    *k,
                    used.saturating_sub(g),
                    now.saturating_sub(g),
                );
            }
        }
        self.queues[q as usize].count(a, model, flavor, added);
    }

    /// A child of cohort `c` now draws `now` of key `k` where it drew `was`: the cohort's
    /// usage moves by the difference, and so on up while what it draws changes.
    fn draw(&mut self, queues: &Queues, mut c: u32, k: usize, mut was: u64, mut now: u64) {
        while was != now {
            let cohort = &queues.cohorts[c as usize];
            let usage = &mut self.cohorts[c as usize][k];
            let before = usage.saturating_sub(cohort.guaranteed[k]);
            *usage = (*usage + now).saturating_sub(was);
            (was, now) = (before, usage.saturating_sub(cohort.guaranteed[k]));
            match cohort.parent {
                Some(p) => c = p,
                None => break,
            }
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
    pub fungibility: api::queue::FlavorFungibility,
    pub weight: u32,
    /// Bounded resources of the queue as a whole, in a fixed order (cpu, memory, gpus,
    /// instances, models).
    pub bounds: Vec<(Res, Bound)>,
    /// Its flavours, in the order admission tries them (none: one quota everywhere).
    pub flavors: Vec<CompiledFlavor>,
}

impl CompiledQueue {
    fn new(q: &Queue) -> CompiledQueue {
        CompiledQueue {
            name: q.metadata.name.clone(),
            cohort: q.spec.cohort.clone(),
            projects: q.spec.projects.clone(),
            strategy: q.spec.strategy,
            preemption: q.spec.preemption.clone(),
            fungibility: q.spec.flavor_fungibility,
            weight: q.spec.weight(),
            bounds: bounds_of(&q.spec.quota),
            flavors: q.spec.flavors.iter().map(CompiledFlavor::new).collect(),
        }
    }

    /// The bounds of the queue as a whole (`None`) or of one of its flavours.
    pub(crate) fn bounds_in(&self, flavor: Option<u16>) -> &[(Res, Bound)] {
        match flavor {
            Some(f) => &self.flavors[f as usize].bounds,
            None => &self.bounds,
        }
    }

    pub(crate) fn bound(&self, flavor: Option<u16>, r: &Res) -> Option<&Bound> {
        self.bounds_in(flavor)
            .iter()
            .find(|(x, _)| x == r)
            .map(|(_, b)| b)
    }

    /// Whether the queue, or flavour `flavor` of it, bounds some GPU model.
    pub(crate) fn bounds_models(&self, flavor: Option<u16>) -> bool {
        let models = |b: &[(Res, Bound)]| b.iter().any(|(r, _)| matches!(r, Res::Model(_)));
        models(&self.bounds) || flavor.is_some_and(|f| models(self.bounds_in(Some(f))))
    }

    /// The index of the flavour named `name`.
    pub(crate) fn flavor_id(&self, name: &str) -> Option<u16> {
        self.flavors
            .iter()
            .position(|f| f.name == name)
            .map(|i| i as u16)
    }

    /// The first flavour whose selector node `n` matches (for allocations whose job
    /// records none).
    pub(crate) fn flavor_of_node(
        &self,
        fleet: &crate::Fleet,
        n: crate::fleet::NodeId,
    ) -> Option<u16> {
        self.flavors
            .iter()
            .position(|f| f.has_node(fleet, n))
            .map(|i| i as u16)
    }

    /// Every part of the queue with bounds: the whole, then each flavour.
    fn parts(&self) -> impl Iterator<Item = Option<u16>> {
        std::iter::once(None).chain((0..self.flavors.len() as u16).map(Some))
    }

    /// The name of a part (`None` for the whole queue).
    pub(crate) fn flavor_name(&self, flavor: Option<u16>) -> Option<&str> {
        flavor.map(|f| self.flavors[f as usize].name.as_str())
    }
}

/// A resource a queue in a cohort bounds: its key ([`Queues::keys`]), the part (the
/// whole queue, or one of its flavours) and the bound.
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub key: usize,
    pub part: Option<u16>,
    pub res: Res,
    pub bound: Bound,
}

/// A cohort, compiled: a node of a cohort tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledCohort {
    pub name: String,
    /// The cohort above (`None`: a root).
    pub parent: Option<u32>,
    /// The cohorts below.
    pub cohorts: Vec<u32>,
    /// The queues that name it.
    pub queues: Vec<u32>,
    /// Every queue of its subtree.
    pub members: Vec<u32>,
    /// Its own quota.
    pub bounds: Vec<(Res, Bound)>,
    /// Its own quota per flavour name.
    pub flavors: Vec<(String, Vec<(Res, Bound)>)>,
    pub weight: u32,
    /// Set when its parents looped back to it: the parent it names, which was ignored
    /// (it is a root).
    pub loop_through: Option<String>,
    /// Per key ([`Queues::keys`]): its subtree's quota, what it keeps from its parent, and
    /// its own borrowing limit. Static: they follow from the specs alone.
    pub quota: Vec<u64>,
    pub guaranteed: Vec<u64>,
    pub borrowing: Vec<Option<u64>>,
    /// How far below its root it is (0 at a root).
    pub depth: u32,
    /// The root of its tree (itself at a root).
    pub root: u32,
}

impl CompiledCohort {
    /// Its amounts of key `k`, with `usage` what its subtree draws now.
    fn amounts(&self, k: usize, usage: &Tally, c: u32) -> Amounts {
        Amounts {
            quota: self.quota[k],
            usage: usage.cohorts[c as usize][k],
            guaranteed: self.guaranteed[k],
            borrowing: self.borrowing[k],
        }
    }

    fn bound(&self, part: Option<&str>, r: &Res) -> Option<&Bound> {
        let bounds = match part {
            None => &self.bounds,
            Some(name) => &self.flavors.iter().find(|(n, _)| n == name)?.1,
        };
        bounds.iter().find(|(x, _)| x == r).map(|(_, b)| b)
    }
}

/// A node's amounts of one resource (in one part) in the cohort tree.
#[derive(Debug, Clone, Copy, Default)]
struct Amounts {
    /// Its subtree's quota (a queue's nominal).
    quota: u64,
    /// What its subtree uses: a queue's usage; for a cohort what its children draw beyond
    /// what they keep.
    usage: u64,
    /// What it keeps from its parent.
    guaranteed: u64,
    borrowing: Option<u64>,
}

impl Amounts {
    /// What the node has available when its parent has `above` available: what it keeps
    /// and has not used, plus what its parent has, up to its borrowing limit beyond what
    /// it stores there; and whether its borrowing limit is what bounds it.
    fn take(&self, above: u64) -> (u64, bool) {
        let local = self.guaranteed.saturating_sub(self.usage);
        match self.borrowing {
            Some(limit) => {
                let most = (self.quota - self.guaranteed)
                    .saturating_add(limit)
                    .saturating_sub(self.drawn());
                if most < above {
                    (local + most, true)
                } else {
                    (local + above, false)
                }
            }
            None => (local + above, false),
        }
    }

    /// What it draws from its parent.
    fn drawn(&self) -> u64 {
        self.usage.saturating_sub(self.guaranteed)
    }
}

/// How much of a resource a queue may hold now, and what sets it (see
/// [`Queues::limit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueLimit {
    pub limit: u64,
    pub reason: QueueReason,
    /// The cohort whose `borrowingLimit` sets it (`OverBorrowingLimit` of a cohort).
    pub limited_by: Option<String>,
}

/// The queues of an estate and which queue each job counts against, for a [`Batch`]
/// (`Batch::set_queues`).
///
/// [`Batch`]: crate::Batch
#[derive(Debug, Clone, Default)]
pub struct Queues {
    pub(crate) list: Vec<CompiledQueue>,
    pub(crate) ids: HashMap<String, u32>,
    /// Every cohort named by a queue, a `Cohort` object or a cohort's parent.
    pub(crate) cohorts: Vec<CompiledCohort>,
    /// Each queue's cohort.
    pub(crate) cohort_of: Vec<Option<u32>>,
    /// Every (part, resource) some queue in a cohort bounds (the part: a flavour name, or
    /// `None` for queues' `quota`), indexed by the cohorts' per-key amounts.
    pub(crate) keys: Vec<(Option<String>, Res)>,
    /// Per queue: the keys it bounds, with the part and the bound.
    pub(crate) keyed: Vec<Vec<Keyed>>,
    /// (project, workload) → queue, and the flavour it was admitted into when its job
    /// records one: every job whose allocations count against a queue.
    pub(crate) assigned: HashMap<(String, String), (u32, Option<u16>)>,
}

impl Queues {
    /// Compiles the queues (any order; names are unique), their cohorts flat.
    pub fn new<'a>(queues: impl IntoIterator<Item = &'a Queue>) -> Queues {
        Queues::with_cohorts(queues, [])
    }

    /// Compiles the queues and the cohort tree (any order; names are unique). A cohort
    /// whose parents loop back to it is made a root (the first such in name order; see
    /// [`Queues::cohort_loops`]).
    pub fn with_cohorts<'a>(
        queues: impl IntoIterator<Item = &'a Queue>,
        cohorts: impl IntoIterator<Item = &'a Cohort>,
    ) -> Queues {
        let mut out = Queues::default();
        let mut list: Vec<&Queue> = queues.into_iter().collect();
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let objects: BTreeMap<&str, &Cohort> = cohorts
            .into_iter()
            .map(|c| (c.metadata.name.as_str(), c))
            .collect();
        // Every cohort name, in order: named by a queue, an object, or as a parent.
        let mut names: std::collections::BTreeSet<&str> = objects.keys().copied().collect();
        names.extend(list.iter().filter_map(|q| q.spec.cohort.as_deref()));
        names.extend(objects.values().filter_map(|c| c.spec.parent.as_deref()));
        let cohort_ids: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i as u32))
            .collect();
        out.cohorts = names
            .iter()
            .map(|&name| match objects.get(name) {
                Some(c) => CompiledCohort {
                    name: name.to_string(),
                    parent: c.spec.parent.as_deref().map(|p| cohort_ids[p]),
                    bounds: bounds_of(&c.spec.quota),
                    flavors: c
                        .spec
                        .flavors
                        .iter()
                        .map(|f| (f.name.clone(), bounds_of(&f.quota)))
                        .collect(),
                    weight: c.spec.weight(),
                    ..CompiledCohort::default()
                },
                None => CompiledCohort {
                    name: name.to_string(),
                    weight: 1,
                    ..CompiledCohort::default()
                },
            })
            .collect();
        out.break_loops();
        for c in 0..out.cohorts.len() {
            if let Some(p) = out.cohorts[c].parent {
                out.cohorts[p as usize].cohorts.push(c as u32);
            }
        }
        for q in list {
            let id = out.list.len() as u32;
            let c = CompiledQueue::new(q);
            let cohort = c.cohort.as_deref().map(|n| cohort_ids[n]);
            if let Some(k) = cohort {
                out.cohorts[k as usize].queues.push(id);
                let mut at = Some(k);
                while let Some(k) = at {
                    out.cohorts[k as usize].members.push(id);
                    at = out.cohorts[k as usize].parent;
                }
            }
            out.cohort_of.push(cohort);
            out.ids.insert(c.name.clone(), id);
            out.list.push(c);
        }
        out.index_keys();
        out
    }

    /// Numbers every (part, resource) bounded in a cohort tree and computes each
    /// cohort's static amounts per key, from the deepest cohorts up.
    fn index_keys(&mut self) {
        let mut index: HashMap<(Option<String>, Res), usize> = HashMap::new();
        let mut key = |part: Option<&str>, r: &Res, keys: &mut Vec<(Option<String>, Res)>| {
            let k = (part.map(str::to_string), r.clone());
            *index.entry(k.clone()).or_insert_with(|| {
                keys.push(k);
                keys.len() - 1
            })
        };
        let mut keys = Vec::new();
        for c in &self.cohorts {
            for (r, _) in &c.bounds {
                key(None, r, &mut keys);
            }
            for (name, bounds) in &c.flavors {
                for (r, _) in bounds {
                    key(Some(name), r, &mut keys);
                }
            }
        }
        self.keyed = (0..self.list.len())
            .map(|q| {
                let queue = &self.list[q];
                if self.cohort_of[q].is_none() {
                    return Vec::new();
                }
                queue
                    .parts()
                    .flat_map(|part| {
                        queue
                            .bounds_in(part)
                            .iter()
                            .map(move |(r, b)| (part, r.clone(), *b))
                    })
                    .map(|(part, res, bound)| Keyed {
                        key: key(queue.flavor_name(part), &res, &mut keys),
                        part,
                        res,
                        bound,
                    })
                    .collect()
            })
            .collect();
        self.keys = keys;
        let n = self.keys.len();
        for c in 0..self.cohorts.len() {
            let mut depth = 0;
            let mut at = self.cohorts[c].parent;
            while let Some(p) = at {
                depth += 1;
                at = self.cohorts[p as usize].parent;
            }
            let mut root = c as u32;
            while let Some(p) = self.cohorts[root as usize].parent {
                root = p;
            }
            let cohort = &mut self.cohorts[c];
            cohort.depth = depth;
            cohort.root = root;
            cohort.quota = vec![0; n];
            cohort.guaranteed = vec![0; n];
            cohort.borrowing = vec![None; n];
        }
        // Own quota, and what each queue lends its cohort.
        for c in 0..self.cohorts.len() {
            for (k, (part, r)) in self.keys.iter().enumerate() {
                if let Some(b) = self.cohorts[c].bound(part.as_deref(), r).copied() {
                    let cohort = &mut self.cohorts[c];
                    cohort.quota[k] = b.nominal;
                    cohort.borrowing[k] = b.borrowing;
                }
            }
        }
        for (q, keyed) in self.keyed.iter().enumerate() {
            if let Some(c) = self.cohort_of[q] {
                for e in keyed {
                    let quota = &mut self.cohorts[c as usize].quota[e.key];
                    *quota = quota.saturating_add(e.bound.lendable());
                }
            }
        }
        // Deepest first: each cohort's guarantee, then what it lends its parent.
        let mut order: Vec<u32> = (0..self.cohorts.len() as u32).collect();
        order.sort_by_key(|&c| std::cmp::Reverse(self.cohorts[c as usize].depth));
        for c in order {
            for k in 0..n {
                let (part, r) = &self.keys[k];
                let lending = self.cohorts[c as usize]
                    .bound(part.as_deref(), r)
                    .and_then(|b| b.lending);
                let cohort = &mut self.cohorts[c as usize];
                let quota = cohort.quota[k];
                cohort.guaranteed[k] = quota - lending.unwrap_or(quota).min(quota);
                let lent = quota - cohort.guaranteed[k];
                if let Some(p) = cohort.parent {
                    let up = &mut self.cohorts[p as usize].quota[k];
                    *up = up.saturating_add(lent);
                }
            }
        }
    }

    /// The key of `r` in part `flavor` of queue `q`, when the queue bounds it there and
    /// is in a cohort.
    fn key_of(&self, q: u32, flavor: Option<u16>, r: &Res) -> Option<(usize, Bound)> {
        self.keyed[q as usize]
            .iter()
            .find(|e| e.part == flavor && e.res == *r)
            .map(|e| (e.key, e.bound))
    }

    /// Makes a root of the first cohort (in name order) of every loop of parents.
    fn break_loops(&mut self) {
        for start in 0..self.cohorts.len() {
            let mut path = vec![start as u32];
            while let Some(p) = self.cohorts[*path.last().expect("a start") as usize].parent {
                if let Some(at) = path.iter().position(|&c| c == p) {
                    let cut = *path[at..].iter().min().expect("a loop");
                    let parent = self.cohorts[cut as usize].parent.take().expect("in a loop");
                    let name = self.cohorts[parent as usize].name.clone();
                    self.cohorts[cut as usize].loop_through = Some(name);
                    break;
                }
                path.push(p);
            }
        }
    }

    /// Cohorts whose parents loop, with the parent ignored: `(cohort, parent)`.
    pub fn cohort_loops(&self) -> Vec<(&str, &str)> {
        self.cohorts
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.loop_through.as_deref()?)))
            .collect()
    }

    /// For the queue named `queue`: the cohort of its tree whose parents looped, made
    /// a root, and the parent it names (see [`Queues::cohort_loops`]).
    pub fn loop_above(&self, queue: &str) -> Option<(&str, &str)> {
        let q = *self.ids.get(queue)?;
        let root = &self.cohorts[self.root_of(q)? as usize];
        Some((root.name.as_str(), root.loop_through.as_deref()?))
    }

    /// The root of queue `q`'s cohort tree.
    pub(crate) fn root_of(&self, q: u32) -> Option<u32> {
        let mut c = self.cohort_of[q as usize]?;
        while let Some(p) = self.cohorts[c as usize].parent {
            c = p;
        }
        Some(c)
    }

    /// Records that the allocations of job `namespace/name` count against `queue` (the
    /// queue it names, or its project's default). Unknown queues are ignored here: the
    /// job waits with `QueueNotFound` when it is placed.
    pub fn assign(&mut self, namespace: &str, name: &str, queue: &str) {
        if let Some(&id) = self.ids.get(queue) {
            self.assigned
                .insert((namespace.to_string(), name.to_string()), (id, None));
        }
    }

    /// Records that job `namespace/name` of `queue` was admitted into its flavour
    /// `flavor` (`status.queue.flavor`): its allocations count in that flavour, and the
    /// instances it still lacks go there too. A flavour the queue no longer has is
    /// ignored (its allocations count where their nodes are).
    pub fn assign_flavor(&mut self, namespace: &str, name: &str, queue: &str, flavor: &str) {
        if let Some(&id) = self.ids.get(queue) {
            let f = self.list[id as usize].flavor_id(flavor);
            self.assigned
                .insert((namespace.to_string(), name.to_string()), (id, f));
        }
    }

    /// Whether no queue is known.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Flavour `flavor` of queue `q` (`None`: the queue as a whole) as it appears in
    /// queue `p` of its cohort: the flavour of the same name, if `p` has it.
    pub(crate) fn same_part(&self, q: u32, flavor: Option<u16>, p: u32) -> Option<Option<u16>> {
        match flavor {
            None => Some(None),
            Some(_) if p == q => Some(flavor),
            Some(f) => {
                let name = &self.list[q as usize].flavors[f as usize].name;
                self.list[p as usize].flavor_id(name).map(Some)
            }
        }
    }

    /// How much of `r` queue `q` (or its flavour `flavor`) may hold in all now, given
    /// every queue's usage, and which rule sets that: its nominal quota (no cohort, or
    /// nothing else in the tree lends it), a borrowing limit (its own or a cohort's on the
    /// way up), or what the cohort tree (of the same flavour name) has left.
    pub(crate) fn limit(
        &self,
        q: u32,
        flavor: Option<u16>,
        r: &Res,
        usage: &Tally,
    ) -> Option<QueueLimit> {
        let queue = &self.list[q as usize];
        let b = queue.bound(flavor, r)?;
        let nominal = QueueLimit {
            limit: b.nominal,
            reason: QueueReason::OverNominalQuota,
            limited_by: None,
        };
        let (Some(cohort), Some((k, _))) = (self.cohort_of[q as usize], self.key_of(q, flavor, r))
        else {
            return Some(nominal);
        };
        let mine = Amounts {
            quota: b.nominal,
            usage: r.of(usage[q as usize].of(flavor)),
            guaranteed: b.guaranteed(),
            borrowing: b.borrowing,
        };
        let mut root = cohort;
        while let Some(p) = self.cohorts[root as usize].parent {
            root = p;
        }
        if self.cohorts[root as usize].quota[k] <= mine.quota - mine.guaranteed {
            // Nothing in the tree but the queue's own lending: nothing to borrow.
            return Some(nominal);
        }
        let (from_cohort, mut set_by) = self.available(cohort, k, usage);
        let (available, mine_set) = mine.take(from_cohort);
        if mine_set {
            set_by = Some(None);
        }
        let limit = mine.usage.saturating_add(available);
        Some(match set_by {
            Some(by) => QueueLimit {
                limit,
                reason: QueueReason::OverBorrowingLimit,
                limited_by: by.map(|c| self.cohorts[c as usize].name.clone()),
            },
            None => QueueLimit {
                limit,
                reason: QueueReason::WaitingForBorrowableQuota,
                limited_by: None,
            },
        })
    }

    /// What cohort `c` has available of key `k` for its subtree (from the root down),
    /// and whose borrowing limit set it (`Some(Some(c))` for a cohort's; `None`: the
    /// root's pool).
    fn available(&self, c: u32, k: usize, usage: &Tally) -> (u64, Option<Option<u32>>) {
        let cohort = &self.cohorts[c as usize];
        let a = cohort.amounts(k, usage, c);
        match cohort.parent {
            None => (a.quota.saturating_sub(a.usage), None),
            Some(p) => {
                let (above, set_by) = self.available(p, k, usage);
                let (available, mine) = a.take(above);
                (available, if mine { Some(Some(c)) } else { set_by })
            }
        }
    }

    /// Fair sharing: what queue `q` borrows beyond its nominal quota as a share of what
    /// its cohort lends, the largest over its resources and flavours (dominant resource
    /// share), in thousandths, divided by its weight. 0 when it borrows nothing;
    /// `u64::MAX` for a borrowing queue of weight 0.
    pub(crate) fn weighted_share(&self, q: u32, usage: &Tally) -> u64 {
        self.weighted_share_with(q, usage, None)
    }

    /// [`Queues::weighted_share`] with `extra` added to the queue's usage (of flavour
    /// `extra.1`, if any): its share were a job admitted.
    pub(crate) fn weighted_share_with(
        &self,
        q: u32,
        usage: &Tally,
        extra: Option<(&Usage, Option<u16>)>,
    ) -> u64 {
        let queue = &self.list[q as usize];
        let Some(cohort) = self.cohort_of[q as usize] else {
            return 0;
        };
        let mut share = 0u64;
        for part in queue.parts() {
            for (r, b) in queue.bounds_in(part) {
                let mut used = r.of(usage[q as usize].of(part));
                if let Some((u, f)) = extra
                    && (part.is_none() || part == f)
                {
                    used = used.saturating_add(r.of(u));
                }
                let borrowed = used.saturating_sub(b.nominal);
                if borrowed == 0 {
                    continue;
                }
                let pool = self
                    .key_of(q, part, r)
                    .map_or(0, |(k, _)| self.cohorts[cohort as usize].quota[k]);
                let s = (u128::from(borrowed) * 1000 / u128::from(pool.max(1))) as u64;
                share = share.max(s);
            }
        }
        match (share, queue.weight) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            (s, w) => s / u64::from(w),
        }
    }

    /// Fair sharing of cohort `c` among its siblings: what its subtree draws from its
    /// parent beyond its own quota, as a share of the parent's quota, the largest over
    /// the resources its subtree bounds (dominant resource share), in thousandths,
    /// divided by its weight. 0 for a root.
    pub(crate) fn cohort_share(&self, c: u32, usage: &Tally) -> u64 {
        let cohort = &self.cohorts[c as usize];
        let Some(parent) = cohort.parent else {
            return 0;
        };
        let mut share = 0u64;
        for k in 0..self.keys.len() {
            let borrowed = usage.cohorts[c as usize][k].saturating_sub(cohort.quota[k]);
            if borrowed == 0 {
                continue;
            }
            let pool = self.cohorts[parent as usize].quota[k];
            share = share.max((u128::from(borrowed) * 1000 / u128::from(pool.max(1))) as u64);
        }
        match (share, cohort.weight) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            (s, w) => s / u64::from(w),
        }
    }

    /// Queue `q`'s cohorts, from the root of its tree down to its own (empty without a
    /// cohort).
    pub(crate) fn cohort_path(&self, q: u32) -> Vec<u32> {
        let mut path = Vec::new();
        let mut at = self.cohort_of[q as usize];
        while let Some(c) = at {
            path.push(c);
            at = self.cohorts[c as usize].parent;
        }
        path.reverse();
        path
    }

    /// Whether queue `q` would borrow from its cohort with `extra` added to its usage in
    /// flavour `flavor` (or the queue as a whole).
    pub(crate) fn would_borrow(
        &self,
        q: u32,
        usage: &Tally,
        extra: &Usage,
        flavor: Option<u16>,
    ) -> bool {
        let queue = &self.list[q as usize];
        if queue.cohort.is_none() {
            return false;
        }
        [None, flavor].into_iter().any(|part| {
            queue.bounds_in(part).iter().any(|(r, b)| {
                r.of(usage[q as usize].of(part)).saturating_add(r.of(extra)) > b.nominal
            })
        })
    }

    pub(crate) fn borrowing(&self, q: u32, usage: &Tally) -> bool {
        let queue = &self.list[q as usize];
        queue.parts().any(|part| {
            queue
                .bounds_in(part)
                .iter()
                .any(|(r, b)| r.of(usage[q as usize].of(part)) > b.nominal)
        })
    }
}

/// Which of two queues goes first by fair sharing, each given as its cohort path
/// ([`Queues::cohort_path`]), id and weighted share: in one tree, the lower share where
/// their paths part (between the two siblings under their nearest common cohort, a
/// cohort's share from `cohort_shares`), as Kueue's hierarchical fair sharing runs a
/// tournament down the tree; in different trees (or outside cohorts), the queues' own
/// shares.
pub(crate) fn share_order(
    a: (&[u32], u32, u64),
    b: (&[u32], u32, u64),
    cohort_shares: &[u64],
) -> std::cmp::Ordering {
    if a.0.first() != b.0.first() {
        return a.2.cmp(&b.2);
    }
    // The nodes below the root, cohorts then the queue: (is a queue, id, share).
    fn nodes<'p>(
        (path, q, share): (&'p [u32], u32, u64),
        cohort_shares: &'p [u64],
    ) -> impl Iterator<Item = (bool, u32, u64)> + 'p {
        path.iter()
            .map(|&c| (false, c, cohort_shares[c as usize]))
            .chain(std::iter::once((true, q, share)))
    }
    nodes(a, cohort_shares)
        .zip(nodes(b, cohort_shares))
        .find(|(x, y)| (x.0, x.1) != (y.0, y.1))
        .map_or(std::cmp::Ordering::Equal, |(x, y)| x.2.cmp(&y.2))
}

/// What a queue holds after a batch, for `Queue.status` (see [`queue_report`]).
///
/// [`queue_report`]: crate::queue_report
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueUsage {
    pub usage: api::kinds::ResourceTotals,
    /// What it holds per flavour (queues with `spec.flavors`).
    pub flavors: BTreeMap<String, api::kinds::ResourceTotals>,
    /// [`Queues::weighted_share`].
    pub weighted_share: u64,
    /// Whether it uses more than its nominal quota of some resource.
    pub borrowing: bool,
}

/// Each queue's usage on `fleet` (every allocation of a job assigned to it).
pub fn queue_report(fleet: &crate::Fleet, queues: &Queues) -> BTreeMap<String, QueueUsage> {
    queue_usages(queues, &usage_of(fleet, queues, &HashMap::new()))
}

/// [`queue_report`] and [`cohort_report`] at once, counting the fleet's allocations once.
pub fn queue_and_cohort_report(
    fleet: &crate::Fleet,
    queues: &Queues,
) -> (BTreeMap<String, QueueUsage>, BTreeMap<String, CohortUsage>) {
    let tally = usage_of(fleet, queues, &HashMap::new());
    (queue_usages(queues, &tally), cohort_usages(queues, &tally))
}

fn queue_usages(queues: &Queues, usage: &Tally) -> BTreeMap<String, QueueUsage> {
    queues
        .list
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let u = &usage[i];
            (
                q.name.clone(),
                QueueUsage {
                    usage: u.total.totals(),
                    flavors: q
                        .flavors
                        .iter()
                        .zip(&u.flavors)
                        .map(|(f, u)| (f.name.clone(), u.totals()))
                        .collect(),
                    weighted_share: queues.weighted_share(i as u32, usage),
                    borrowing: queues.borrowing(i as u32, usage),
                },
            )
        })
        .collect()
}

/// What a cohort's subtree holds after a batch, for `Cohort.status` (see
/// [`cohort_report`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CohortUsage {
    /// Queues in its subtree.
    pub queues: u32,
    /// What their jobs hold.
    pub usage: api::kinds::ResourceTotals,
    /// Its weighted share among its siblings ([`Queues::cohort_share`]).
    pub weighted_share: u64,
}

/// Each cohort's usage on `fleet` (every allocation of a job of a queue of its subtree).
pub fn cohort_report(fleet: &crate::Fleet, queues: &Queues) -> BTreeMap<String, CohortUsage> {
    cohort_usages(queues, &usage_of(fleet, queues, &HashMap::new()))
}

fn cohort_usages(queues: &Queues, tally: &Tally) -> BTreeMap<String, CohortUsage> {
    queues
        .cohorts
        .iter()
        .enumerate()
        .map(|(c, cohort)| {
            let mut sum = Usage::default();
            for &q in &cohort.members {
                let u = &tally[q as usize].total;
                sum.cpu = sum.cpu.saturating_add(u.cpu);
                sum.memory = sum.memory.saturating_add(u.memory);
                sum.gpus = sum.gpus.saturating_add(u.gpus);
                sum.instances = sum.instances.saturating_add(u.instances);
                for (m, n) in &u.by_model {
                    let e = sum.by_model.entry(m.clone()).or_default();
                    *e = e.saturating_add(*n);
                }
            }
            (
                cohort.name.clone(),
                CohortUsage {
                    queues: cohort.members.len() as u32,
                    usage: sum.totals(),
                    weighted_share: queues.cohort_share(c as u32, tally),
                },
            )
        })
        .collect()
}

/// Usage per queue (and flavour) over the fleet's live allocations; `extra` maps
/// workload ids of the batch to their queue and flavour (jobs the snapshot has not seen
/// yet, and flavours chosen in this batch).
pub(crate) fn usage_of(
    fleet: &crate::Fleet,
    queues: &Queues,
    extra: &HashMap<crate::fleet::WorkloadId, (u32, Option<u16>)>,
) -> Tally {
    let mut held: Vec<Held> = queues
        .list
        .iter()
        .map(|q| Held {
            total: Usage::default(),
            flavors: vec![Usage::default(); q.flavors.len()],
        })
        .collect();
    for a in fleet.allocs.iter().flatten() {
        if let Some((q, f)) = queue_of(fleet, queues, extra, a) {
            held[q as usize].count(a, fleet.model_of_alloc(a), f, true);
        }
    }
    Tally::new(queues, held)
}

/// The queue and flavour allocation `a` counts in: its job's (from `extra`, else as
/// assigned), in the flavour recorded for the job, else the first flavour of its queue
/// whose selector its node matches.
pub(crate) fn queue_of(
    fleet: &crate::Fleet,
    queues: &Queues,
    extra: &HashMap<crate::fleet::WorkloadId, (u32, Option<u16>)>,
    a: &crate::fleet::Alloc,
) -> Option<(u32, Option<u16>)> {
    let (q, f) = extra.get(&a.workload).copied().or_else(|| {
        let key = &fleet.workload_names[a.workload as usize];
        queues.assigned.get(key).copied()
    })?;
    let queue = &queues.list[q as usize];
    if queue.flavors.is_empty() {
        return Some((q, None));
    }
    Some((q, f.or_else(|| queue.flavor_of_node(fleet, a.node))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn queue(name: &str, cohort: &str, cpu: u64, lending: Option<u64>) -> Queue {
        let mut q = json!({"nominal": cpu.to_string()});
        if let Some(l) = lending {
            q["lendingLimit"] = json!(l.to_string());
        }
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Queue",
            "metadata": {"name": name},
            "spec": {"cohort": cohort, "quota": {"cpu": q, "instances": {"nominal": 4}}}
        }))
        .expect("queue")
    }

    fn cohort(name: &str, parent: Option<&str>, lending: Option<u64>) -> Cohort {
        let mut spec = json!({"parent": parent});
        if let Some(l) = lending {
            spec["quota"] = json!({"cpu": {"nominal": "2", "lendingLimit": l.to_string()}});
        }
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Cohort",
            "metadata": {"name": name}, "spec": spec
        }))
        .expect("cohort")
    }

    fn alloc(cores: u64) -> crate::fleet::Alloc {
        crate::fleet::Alloc {
            workload: 0,
            replica: 0,
            node: 0,
            priority: 0,
            res: [cores * 1000, 0, 0],
            gpu: None,
            devices: Vec::new(),
            ports: Vec::new(),
            name: None,
        }
    }

    proptest! {
        /// However allocations come and go, the draws kept in step up the tree equal a
        /// recount from the queues' usage.
        #[test]
        fn the_tally_kept_in_step_equals_a_recount(
            steps in proptest::collection::vec((0u32..4, 1u64..6, any::<bool>()), 1..60),
        ) {
            let queues = [
                queue("a1", "team-a", 4, None),
                queue("a2", "team-a", 2, Some(1)),
                queue("b1", "team-b", 3, Some(3)),
                queue("c1", "org", 1, None),
            ];
            let cohorts = [
                cohort("org", None, None),
                cohort("team-a", Some("org"), Some(1)),
                cohort("team-b", Some("org"), None),
            ];
            let qs = Queues::with_cohorts(&queues, &cohorts);
            let empty = || qs.list.iter().map(|_| Held::default()).collect::<Vec<_>>();
            let mut tally = Tally::new(&qs, empty());
            let mut held: Vec<Vec<u64>> = vec![Vec::new(); 4];
            for (q, cores, add) in steps {
                if add || held[q as usize].is_empty() {
                    held[q as usize].push(cores);
                    tally.count(&qs, q, &alloc(cores), None, None, true);
                } else {
                    let cores = held[q as usize].pop().expect("held");
                    tally.count(&qs, q, &alloc(cores), None, None, false);
                }
                let recount = Tally::new(&qs, tally.queues.clone());
                prop_assert_eq!(&tally.cohorts, &recount.cohorts);
            }
        }
    }
}
