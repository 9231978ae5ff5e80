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
}

impl CompiledCohort {
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
    fn with_lending(mut self, lending: Option<u64>) -> Amounts {
        self.guaranteed = self.quota - lending.unwrap_or(self.quota).min(self.quota);
        self
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
        out
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
    fn root_of(&self, q: u32) -> Option<u32> {
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

    /// The queues that share quota with `q`: every queue of its cohort tree, `q`
    /// included (none without a cohort).
    pub(crate) fn peers(&self, q: u32) -> &[u32] {
        match self.root_of(q) {
            Some(root) => &self.cohorts[root as usize].members,
            None => &[],
        }
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

    /// Queue `p`'s amounts of `r` in the part named `part` (its flavour of that name, or
    /// the whole queue), when it bounds `r` there.
    fn queue_amounts(
        &self,
        p: u32,
        part: Option<&str>,
        r: &Res,
        usage: &[Held],
    ) -> Option<Amounts> {
        let queue = &self.list[p as usize];
        let f = match part {
            None => None,
            Some(name) => Some(queue.flavor_id(name)?),
        };
        let b = queue.bound(f, r)?;
        Some(Amounts {
            quota: b.nominal,
            usage: r.of(usage[p as usize].of(f)),
            guaranteed: b.guaranteed(),
            borrowing: b.borrowing,
        })
    }

    /// Cohort `c`'s amounts of `r` in the part named `part`, from its subtree.
    fn cohort_amounts(&self, c: u32, part: Option<&str>, r: &Res, usage: &[Held]) -> Amounts {
        let cohort = &self.cohorts[c as usize];
        let own = cohort.bound(part, r);
        let mut a = Amounts {
            quota: own.map_or(0, |b| b.nominal),
            borrowing: own.and_then(|b| b.borrowing),
            ..Amounts::default()
        };
        let children = cohort
            .queues
            .iter()
            .filter_map(|&q| self.queue_amounts(q, part, r, usage))
            .chain(
                cohort
                    .cohorts
                    .iter()
                    .map(|&k| self.cohort_amounts(k, part, r, usage)),
            );
        for k in children {
            a.quota = a.quota.saturating_add(k.quota - k.guaranteed);
            a.usage = a.usage.saturating_add(k.drawn());
        }
        a.with_lending(own.and_then(|b| b.lending))
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
        usage: &[Held],
    ) -> Option<QueueLimit> {
        let queue = &self.list[q as usize];
        let part = queue.flavor_name(flavor);
        let mine = self.queue_amounts(q, part, r, usage)?;
        let nominal = QueueLimit {
            limit: mine.quota,
            reason: QueueReason::OverNominalQuota,
            limited_by: None,
        };
        let Some(cohort) = self.cohort_of[q as usize] else {
            return Some(nominal);
        };
        // The path from the queue up to the root, with each node's amounts.
        let mut path = vec![(None, mine)];
        let mut at = Some(cohort);
        while let Some(c) = at {
            path.push((Some(c), self.cohort_amounts(c, part, r, usage)));
            at = self.cohorts[c as usize].parent;
        }
        let (_, root) = path.last().expect("a root");
        if root.quota <= mine.quota - mine.guaranteed {
            // Nothing in the tree but the queue's own lending: nothing to borrow.
            return Some(nominal);
        }
        // Down from the root: what each node has available, and whose limit set it.
        let mut available = root.quota.saturating_sub(root.usage);
        let mut set_by: Option<Option<u32>> = None;
        for (node, a) in path.iter().rev().skip(1) {
            let mut from_parent = available;
            if let Some(limit) = a.borrowing {
                let most = (a.quota - a.guaranteed)
                    .saturating_add(limit)
                    .saturating_sub(a.drawn());
                if most < from_parent {
                    from_parent = most;
                    set_by = Some(*node);
                }
            }
            available = a.guaranteed.saturating_sub(a.usage) + from_parent;
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

    /// Fair sharing: what queue `q` borrows beyond its nominal quota as a share of what
    /// its cohort lends, the largest over its resources and flavours (dominant resource
    /// share), in thousandths, divided by its weight. 0 when it borrows nothing;
    /// `u64::MAX` for a borrowing queue of weight 0.
    pub(crate) fn weighted_share(&self, q: u32, usage: &[Held]) -> u64 {
        self.weighted_share_with(q, usage, None)
    }

    /// [`Queues::weighted_share`] with `extra` added to the queue's usage (of flavour
    /// `extra.1`, if any): its share were a job admitted.
    pub(crate) fn weighted_share_with(
        &self,
        q: u32,
        usage: &[Held],
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
                    .cohort_amounts(cohort, queue.flavor_name(part), r, usage)
                    .quota;
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
    fn cohort_share(&self, c: u32, usage: &[Held]) -> u64 {
        let cohort = &self.cohorts[c as usize];
        let Some(parent) = cohort.parent else {
            return 0;
        };
        let mut keys: std::collections::BTreeSet<(Option<&str>, &Res)> = cohort
            .bounds
            .iter()
            .map(|(r, _)| (None, r))
            .chain(
                cohort
                    .flavors
                    .iter()
                    .flat_map(|(n, b)| b.iter().map(move |(r, _)| (Some(n.as_str()), r))),
            )
            .collect();
        for &q in &cohort.members {
            let queue = &self.list[q as usize];
            for part in queue.parts() {
                for (r, _) in queue.bounds_in(part) {
                    keys.insert((queue.flavor_name(part), r));
                }
            }
        }
        let mut share = 0u64;
        for (part, r) in keys {
            let a = self.cohort_amounts(c, part, r, usage);
            let borrowed = a.usage.saturating_sub(a.quota);
            if borrowed == 0 {
                continue;
            }
            let pool = self.cohort_amounts(parent, part, r, usage).quota;
            share = share.max((u128::from(borrowed) * 1000 / u128::from(pool.max(1))) as u64);
        }
        match (share, cohort.weight) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            (s, w) => s / u64::from(w),
        }
    }

    /// Fair sharing across a cohort tree: the weighted shares from the root down to
    /// queue `q` (each cohort's on the way, then the queue's), each with its node
    /// (queues by id, cohorts as `u32::MAX - id`). Compared by [`share_order`].
    pub(crate) fn share_path(&self, q: u32, usage: &[Held]) -> Vec<(u32, u64)> {
        let mut path = vec![(q, self.weighted_share(q, usage))];
        let mut at = self.cohort_of[q as usize];
        while let Some(c) = at {
            path.push((u32::MAX - c, self.cohort_share(c, usage)));
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
        usage: &[Held],
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

    pub(crate) fn borrowing(&self, q: u32, usage: &[Held]) -> bool {
        let queue = &self.list[q as usize];
        queue.parts().any(|part| {
            queue
                .bounds_in(part)
                .iter()
                .any(|(r, b)| r.of(usage[q as usize].of(part)) > b.nominal)
        })
    }
}

/// Which of two queues goes first by fair sharing ([`Queues::share_path`]): in one tree,
/// the lower share where their paths part (between the two siblings under their
/// nearest common cohort, as Kueue's hierarchical fair sharing runs a tournament down
/// the tree); in different trees, the queues' own shares.
pub(crate) fn share_order(a: &[(u32, u64)], b: &[(u32, u64)]) -> std::cmp::Ordering {
    let (Some(first_a), Some(first_b)) = (a.first(), b.first()) else {
        return std::cmp::Ordering::Equal;
    };
    if first_a.0 != first_b.0 {
        let last = |p: &[(u32, u64)]| p.last().map_or(0, |x| x.1);
        return last(a).cmp(&last(b));
    }
    a.iter()
        .zip(b)
        .find(|(x, y)| x.0 != y.0)
        .map_or(std::cmp::Ordering::Equal, |(x, y)| x.1.cmp(&y.1))
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
    let usage = usage_of(fleet, queues, &HashMap::new());
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
                    weighted_share: queues.weighted_share(i as u32, &usage),
                    borrowing: queues.borrowing(i as u32, &usage),
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
) -> Vec<Held> {
    let mut usage: Vec<Held> = queues
        .list
        .iter()
        .map(|q| Held {
            total: Usage::default(),
            flavors: vec![Usage::default(); q.flavors.len()],
        })
        .collect();
    for a in fleet.allocs.iter().flatten() {
        if let Some((q, f)) = queue_of(fleet, queues, extra, a) {
            usage[q as usize].count(a, fleet.model_of_alloc(a), f, true);
        }
    }
    usage
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
