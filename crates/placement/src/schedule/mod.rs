//! The scheduler: a session places one batch on a fleet snapshot.
//!
//! Per session (once per batch, shared by its workloads): the verdict of each
//! `matchExpression` per class of identical nodes ([`ExprMemo`]; per-node attributes
//! such as labels are evaluated once per class when every node of the class has the same
//! value), the site filters per site and the platform filters (OS, architecture, driver,
//! Windows build, taints, GPU model) per class, and the whole static verdict per
//! [`FilterKey`] (workloads with the same constraints pass the same classes for the same
//! reasons). Nodes are counted under the first filter they fail, exactly as
//! [`filter::class_failures`] and [`filter::node_failures`] would find it.
//!
//! Per workload (once per batch, however many replicas): the classes that pass are
//! scored statically (cost, carbon, locality, preferences, `PreferNoSchedule` taints).
//!
//! Per search: classes are bounded by the best score any of their nodes could have now
//! (the strategy score of their fullest node for binpack, their emptiest for spread),
//! visited best bound first, and abandoned as soon as that bound cannot beat the
//! candidates already found (branch and bound, so the answer is the same as scoring every
//! node). Within a class, nodes are indexed by utilisation: binpack walks down from the
//! fullest node that could still fit, spread walks up from the emptiest, and the first
//! nodes that fit are the class's best. Nodes that already run a replica of the workload
//! (anti-affinity, colocation, per-node spread) are scored one by one.
//!
//! Per instance: a workload's replicas are placed one after another, and between two of
//! them only the nodes that changed can have changed rank, so the best candidates of the
//! last search are kept ([`Cache`]) and only the changed nodes are scored again; a search
//! runs when the kept list runs short.
//!
//! Here: [`Options`], the [`Session`] of one batch, committing and undoing placements,
//! and placing one instance. Elsewhere: the per-session memos in `memo`, the static
//! evaluation of a workload in `plan`, the search in `search`, explanations of unplaceable
//! instances in `explain`, preemption in `preempt`, gangs in `gang`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api::Memory;
use api::explanation::{
    Candidate, Evaluated, Explanation, Outcome, Placement, Preemption, ReasonCode, Rejection, Score,
};
use api::kinds::{
    Arch, Driver, Isolation, OsFamily, Strategy, TaintEffect, TolerationOperator, WorkloadType,
};

use crate::explain::{Change, Tally};
use crate::filter::{self, Reason};
use crate::fleet::{
    Alloc, AllocId, Class, ClassId, CountrySet, Fleet, MILLI, NodeId, SiteId, UTIL_SCALE,
    WorkloadId,
};
use crate::frag::{Shape, TaskMix};
use crate::score::{StaticScore, Weights};
use crate::windows::WindowsBuild;
use crate::workload::{Attr, Batch, Compiled};

mod explain;
mod gang;
mod memo;
mod plan;
mod preempt;
mod queue;
mod quota;
mod search;

use memo::*;
use search::*;

/// Tuning of a placement run. The defaults are what the server uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub weights: Weights,
    /// How many top candidates an explanation lists (at least 1).
    pub candidates: usize,
    /// Whether an instance that fits nowhere may evict strictly lower-priority work.
    pub preemption: bool,
    /// How GPU work with the binpack strategy is scored ([`GpuScoring`]).
    pub gpu_scoring: GpuScoring,
    /// The mix of GPU tasks fragmentation is measured against; `None`: the batch's own
    /// GPU requests (see [`crate::frag`]).
    pub task_mix: Option<Arc<TaskMix>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            weights: Weights::default(),
            candidates: 3,
            preemption: true,
            gpu_scoring: GpuScoring::default(),
            task_mix: None,
        }
    }
}

/// The strategy score of GPU work placed with `strategy: binpack`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GpuScoring {
    /// The node where the task raises GPU fragmentation least, measured against the
    /// expected task mix ([`crate::frag`], after Weng et al., USENIX ATC 2023):
    /// `strategy × (1/2 − Δ / (2 × the largest node's GPUs))`.
    #[default]
    Fragmentation,
    /// Best fit: the node fullest after placing (mean utilisation of cpu, memory and
    /// GPUs), as for work without GPUs.
    BestFit,
}

const NONE: u32 = u32::MAX;

/// A class that passed the static filters for a workload.
#[derive(Debug, Clone)]
struct Feasible {
    class: ClassId,
    /// GPU groups of the class matching the request's model and memory.
    groups: Vec<u8>,
    score: StaticScore,
    total: f64,
    /// Per-node preference bonus by position in the class (empty when every node of
    /// the class gets the same, which is then part of `score`).
    bonus: Vec<f32>,
    /// The largest bonus in `bonus` (0 when empty).
    bonus_max: f32,
    /// Whether per-node `matchExpressions` must be checked node by node (their
    /// attributes differ between the class's nodes).
    node_check: bool,
    /// Bounds of the strategy score on the class's nodes.
    shares: StrategyBound,
}

/// Replica counts per spread domain.
#[derive(Debug, Clone)]
enum SpreadState {
    /// Domains are values of an attribute (site, zone, a label...).
    Domains {
        /// Whether `domain` is indexed by node id (per-node attributes such as labels)
        /// rather than by class id.
        per_node: bool,
        /// Domain id per class or node, or `NONE` without the attribute (shared by the
        /// workloads of a session that spread over the same key).
        domain: Arc<Vec<u32>>,
        names: Arc<Vec<String>>,
        counts: Vec<u32>,
        /// Whether a domain has a node that passes the static filters.
        eligible: Vec<bool>,
    },
    /// The domain is the node (`node.name`).
    Node,
}

impl SpreadState {
    /// The domain of node `n` of class `class`, when the domains are values.
    fn domain_of(&self, class: ClassId, n: NodeId) -> Option<u32> {
        match self {
            SpreadState::Domains {
                per_node, domain, ..
            } => Some(domain[if *per_node { n } else { class } as usize]),
            SpreadState::Node => None,
        }
    }
}

/// A workload's static verdicts and scores, for one batch.
#[derive(Debug, Clone)]
struct Plan {
    wl: usize,
    wid: WorkloadId,
    /// In class order.
    feasible: Vec<Feasible>,
    /// Class id → index into `feasible`, or `NONE`.
    by_class: Vec<u32>,
    /// Whether some `matchExpressions` read per-node attributes.
    node_level: bool,
    spread: Option<SpreadState>,
    static_rejections: Vec<Rejection>,
    eligible: u32,
    /// Set when an instance failed; valid while nothing has been released since.
    failed: Option<(u64, Explanation)>,
}

#[derive(Debug, Clone)]
struct Cand {
    node: NodeId,
    gpu: Option<(u8, u32)>,
    score: Score,
}

/// Restricts a search to one site, one topology domain and/or one GPU model (gangs).
#[derive(Debug, Clone, PartialEq)]
struct Restrict {
    site: Option<SiteId>,
    model: Option<String>,
    domain: Option<TopoDomain>,
}

/// One value of a gang's topology key (`placement.topology.level`).
#[derive(Debug, Clone, PartialEq)]
struct TopoDomain {
    /// The key as written (`rack`).
    key: String,
    /// Its value here (`r12`).
    name: String,
    /// Domain id per class, or per node when `per_node` ([`plan::domain_map`]).
    map: Arc<Vec<u32>>,
    per_node: bool,
    id: u32,
}

impl Restrict {
    /// Whether every node of `class` may be in the restriction's domain (per-node
    /// domains are checked node by node).
    fn allows_class(&self, class: ClassId) -> bool {
        match &self.domain {
            Some(d) if !d.per_node => d.map[class as usize] == d.id,
            _ => true,
        }
    }

    fn allows_node(&self, fleet: &Fleet, n: NodeId) -> bool {
        match &self.domain {
            Some(d) => {
                let at = if d.per_node {
                    n
                } else {
                    fleet.nodes[n as usize].class
                };
                d.map[at as usize] == d.id
            }
            None => true,
        }
    }

    fn describe(&self, fleet: &Fleet) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.domain {
            parts.push(format!("{} {}", d.key, d.name));
        }
        if let Some(s) = self.site {
            parts.push(format!("site {}", fleet.sites[s as usize].name));
        }
        if let Some(m) = &self.model {
            parts.push(format!("{m} GPUs"));
        }
        if parts.is_empty() {
            "any site".to_string()
        } else {
            parts.join(" with ")
        }
    }
}

/// The best candidates of a workload's last search, kept current between its instances
/// (its replicas are placed one after another). Invariant: every node not in `top`
/// either fits nowhere or ranks below `floor` for this workload. Between two of its
/// instances, a node's score for the workload can only rise, or a node start to fit,
/// if the node itself changed (it is in `Session::touched`), a placement was undone
/// (`release_gen`) or the least-loaded spread domain changed (`min`): scores are static
/// per class except utilisation, colocation and spread, and spread only counts up.
/// So re-scoring the listed and the changed nodes keeps the invariant, and the list
/// answers for as long as it holds `k` candidates.
#[derive(Debug, Clone)]
struct Cache {
    wi: usize,
    top: Vec<Cand>,
    /// Rank (score, node) of the last candidate when the search filled the list; `None`
    /// when it found fewer (no other node fits).
    floor: Option<(f64, NodeId)>,
    /// Length of `Session::touched` when the list was last brought up to date.
    seen: usize,
    release_gen: u64,
    min: u32,
}

/// One batch on one fleet.
pub(crate) struct Session<'a> {
    fleet: &'a mut Fleet,
    batch: &'a Batch,
    opts: &'a Options,
    plans: Vec<Option<Plan>>,
    plan_of_wid: HashMap<WorkloadId, usize>,
    release_gen: u64,
    /// Nodes whose allocations changed, in order (for [`Cache`]).
    touched: Vec<NodeId>,
    cache: Option<Cache>,
    /// Spread domains per spread key, computed once per session.
    domains: DomainMaps,
    memo: HashMap<api::MatchExpression, Memo>,
    verdicts: HashMap<FilterKey, Arc<Verdict>>,
    platforms: HashMap<PlatformKey, Arc<PlatformMemo>>,
    sites: HashMap<SiteKey, Arc<Vec<Option<Reason>>>>,
    /// Queued jobs' queues and the queues' usage, when the batch has queues.
    queues: Option<queue::QueueView>,
    /// Per workload: the flavour of its queue it is being admitted into, whose nodes
    /// alone it may use ([`Session::wl`] is then the workload as admitted there).
    flavor: Vec<Option<u16>>,
    /// The task mix of fragmentation scoring (empty: best fit), and the largest node's
    /// GPUs in milli-GPUs (what a change of fragmentation is scaled by).
    mix: Vec<Shape>,
    frag_scale: f64,
}

/// Per spread key: whether domains are per node, the domain of each class (or node),
/// the domain names.
type DomainMaps = HashMap<String, (bool, Arc<Vec<u32>>, Arc<Vec<String>>)>;

impl<'a> Session<'a> {
    pub(crate) fn new(fleet: &'a mut Fleet, batch: &'a Batch, opts: &'a Options) -> Self {
        for wl in batch.workloads.iter().filter(|w| w.gang.is_some()) {
            fleet.mark_gang(&wl.workload.namespace, &wl.workload.name);
        }
        let queues = batch
            .queues
            .as_ref()
            .map(|q| queue::QueueView::new(fleet, batch, q));
        let mix = match (opts.gpu_scoring, &opts.task_mix) {
            (GpuScoring::BestFit, _) => Vec::new(),
            (GpuScoring::Fragmentation, Some(m)) => m.shapes(),
            (GpuScoring::Fragmentation, None) => {
                let mut m = TaskMix::new();
                let mut replicas = vec![0u64; batch.workloads.len()];
                for inst in &batch.instances {
                    replicas[inst.workload] += 1;
                }
                for (w, n) in batch.workloads.iter().zip(replicas) {
                    if let Some(g) = &w.gpu {
                        m.add(w.res[0], w.res[1], api::GpuCount::from_milli(g.milli), n);
                    }
                }
                m.shapes()
            }
        };
        let frag_scale = fleet
            .classes
            .iter()
            .map(|c| c.key.capacity.gpu_milli_total())
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        Session {
            queues,
            flavor: vec![None; batch.workloads.len()],
            mix,
            frag_scale,
            fleet,
            batch,
            opts,
            plans: vec![None; batch.workloads.len()],
            plan_of_wid: HashMap::new(),
            release_gen: 0,
            touched: Vec::new(),
            cache: None,
            domains: HashMap::new(),
            memo: HashMap::new(),
            verdicts: HashMap::new(),
            platforms: HashMap::new(),
            sites: HashMap::new(),
        }
    }

    /// Drops the static evaluation of a workload whose instances are all decided; a
    /// later instance would build it again from the fleet (spread counts included).
    pub(crate) fn forget(&mut self, wi: usize) {
        if let Some(p) = self.plans.get_mut(wi) {
            *p = None;
        }
        if self.cache.as_ref().is_some_and(|c| c.wi == wi) {
            self.cache = None;
        }
    }

    /// Workload `wi` as placement sees it: as compiled, or, while it is admitted into a
    /// flavour of its queue, with the flavour's match expressions too.
    pub(crate) fn wl(&self, wi: usize) -> &'a Compiled {
        let batch: &'a Batch = self.batch;
        match self.flavor[wi] {
            Some(f) => batch.flavored(wi, f).expect("a flavour of its queue"),
            None => &batch.workloads[wi],
        }
    }

    fn k(&self) -> usize {
        self.opts.candidates.max(1)
    }

    fn plan(&self, wi: usize) -> &Plan {
        self.plans[wi].as_ref().expect("plan built")
    }

    // -- committing ----------------------------------------------------------------

    fn commit(&mut self, wi: usize, replica: u32, c: &Cand) -> AllocId {
        let wl = self.wl(wi);
        let wid = self.plan(wi).wid;
        let ports = if wl.ports.is_empty() {
            Vec::new()
        } else {
            filter::pick_ports(&self.fleet.nodes[c.node as usize].ports, &wl.ports)
        };
        let alloc = Alloc {
            workload: wid,
            replica,
            node: c.node,
            priority: wl.priority,
            res: wl.res,
            gpu: c.gpu,
            devices: Vec::new(),
            ports,
            name: None,
        };
        if let Some(q) = self.queues.as_mut() {
            q.count(self.fleet, &alloc, true);
        }
        let id = self.fleet.insert_alloc(alloc);
        self.count_replica(wi, c.node, true);
        self.touched.push(c.node);
        id
    }

    fn uncommit(&mut self, id: AllocId) -> Alloc {
        let a = self.fleet.release(id);
        if let Some(q) = self.queues.as_mut() {
            q.count(self.fleet, &a, false);
        }
        self.release_gen += 1;
        self.touched.push(a.node);
        if let Some(&wi) = self.plan_of_wid.get(&a.workload) {
            self.count_replica(wi, a.node, false);
        }
        a
    }

    /// Keeps the spread counts of a plan current as its replicas come and go.
    fn count_replica(&mut self, wi: usize, n: NodeId, added: bool) {
        let class = self.fleet.nodes[n as usize].class;
        if let Some(Some(Plan {
            spread: Some(spread),
            ..
        })) = self.plans.get_mut(wi)
            && let Some(d) = spread.domain_of(class, n)
            && d != NONE
            && let SpreadState::Domains { counts, .. } = spread
        {
            counts[d as usize] = if added {
                counts[d as usize] + 1
            } else {
                counts[d as usize].saturating_sub(1)
            };
        }
    }

    fn candidate(&self, c: &Cand) -> Candidate {
        let class = self.fleet.class_of(c.node);
        Candidate {
            node: self.fleet.nodes[c.node as usize].name.clone(),
            site: self.fleet.site_name_of_class(class).to_string(),
            score: c.score,
        }
    }

    fn placement(
        &self,
        wi: usize,
        id: AllocId,
        chosen: &Cand,
        cands: &[Cand],
        preempted: Vec<Preemption>,
        mut notes: Vec<String>,
    ) -> Placement {
        let wl = self.wl(wi);
        let plan = self.plan(wi);
        let class = self.fleet.class_of(chosen.node);
        let node = &self.fleet.nodes[chosen.node as usize].name;
        let site = self.fleet.site_name_of_class(class).to_string();
        let mut resources = wl.resources.clone();
        if let (Some(g), Some((group, _))) = (&mut resources.gpu, chosen.gpu) {
            let held = &class.key.capacity.gpus[group as usize];
            g.model = Some(held.model.clone());
            // The devices the allocation holds, numbered as the node lists its GPUs.
            g.devices = self.fleet.allocs[id as usize]
                .as_ref()
                .map(|a| {
                    a.devices
                        .iter()
                        .filter_map(|&d| held.index.get(d as usize).copied())
                        .collect()
                })
                .unwrap_or_default();
        }
        let summary = format!(
            "placed on {node} in {site} (score {:.2}); {} of {} nodes passed the static filters",
            chosen.score.total,
            plan.eligible,
            self.fleet.nodes.len()
        );
        let held = self.fleet.allocs[id as usize]
            .as_ref()
            .map_or(&[][..], |a| a.ports.as_slice());
        let ports = wl
            .ports
            .iter()
            .zip(held)
            .map(|(p, key)| {
                let host = (key & 0xFFFF) as u16;
                api::task::PortBinding {
                    name: p.name.clone(),
                    port: host,
                    target: p.target.unwrap_or(host),
                    protocol: p.protocol,
                }
            })
            .collect();
        let flavor = self.flavor_name(wi);
        if let Some(f) = self.flavor[wi] {
            notes.insert(0, format!("admitted into {}", self.flavor_note(wi, f)));
        }
        Placement {
            node: node.clone(),
            site,
            zone: class.key.zone.clone(),
            resources,
            priority: wl.priority,
            score: chosen.score,
            preempted,
            ports,
            flavor,
            explanation: Explanation {
                summary,
                nodes: self.fleet.nodes.len() as u32,
                evaluated: Evaluated::StaticFilters,
                passed: plan.eligible,
                rejections: plan.static_rejections.clone(),
                candidates: cands.iter().map(|c| self.candidate(c)).collect(),
                suggestions: Vec::new(),
                notes,
                queue: None,
            },
        }
    }

    // -- one instance ------------------------------------------------------------------

    pub(crate) fn place_one(&mut self, wi: usize, replica: u32) -> Outcome {
        self.ensure_plan(wi);
        // Quota first: work over its project's quota waits, whatever the capacity.
        if let Some(b) = self.quota_breach(wi, 1) {
            return Outcome::Unplaceable(self.over_quota(wi, &b, Vec::new()));
        }
        if let Some((generation, e)) = &self.plan(wi).failed
            && *generation == self.release_gen
        {
            return Outcome::Unplaceable(e.clone());
        }
        let mut cands = self.best(wi, self.k());
        let mut model_breach = None;
        if self.checks_models(wi) {
            // The request names no GPU model; the quota bounds some: keep the candidates
            // whose model has room, else search within the models that have.
            let before = cands.len();
            let mut first = None;
            cands.retain(|c| match self.cand_breach(wi, c) {
                Some(b) => {
                    first.get_or_insert(b);
                    false
                }
                None => true,
            });
            if cands.is_empty() && before > 0 {
                let k = self.k();
                for model in self.models_within_quota(wi) {
                    let r = Restrict {
                        site: None,
                        model: Some(model),
                        domain: None,
                    };
                    cands.extend(self.search(wi, Some(&r), k));
                }
                cands.sort_by(|a, b| {
                    b.score
                        .total
                        .total_cmp(&a.score.total)
                        .then(a.node.cmp(&b.node))
                });
                cands.truncate(k);
            }
            model_breach = first;
        }
        if let Some(best) = cands.first() {
            let best = best.clone();
            let id = self.commit(wi, replica, &best);
            return Outcome::Placed(Box::new(self.placement(
                wi,
                id,
                &best,
                &cands,
                Vec::new(),
                Vec::new(),
            )));
        }
        let wl = self.wl(wi);
        if self.opts.preemption
            && let Some((node, victims)) = self.find_victims(wi)
        {
            let mut preempted = Vec::new();
            let mut lacked = Vec::new();
            let node_name = self.fleet.nodes[node as usize].name.clone();
            for v in victims {
                let a = self.uncommit(v);
                lacked.push(a.priority);
                let r = self.fleet.alloc_ref(&a);
                let reason = if a.node == node {
                    format!(
                        "preempted by {} replica {replica} (priority {} > {}): node {} had no room",
                        wl.workload, wl.priority, a.priority, r.node
                    )
                } else {
                    format!(
                        "preempted with its gang: a member on node {node_name} was preempted by {} replica {replica} (priority {} > {}), and a gang is preempted whole",
                        wl.workload, wl.priority, a.priority
                    )
                };
                preempted.push(Preemption {
                    reason,
                    allocation: r,
                });
            }
            let cands = self.search(wi, None, self.k());
            // The node the victims were evicted from, even when it does not rank among
            // the best (scores other than binpack need not rank it first), so the
            // choice made for it (GPU model within quota) holds.
            let best = cands
                .iter()
                .find(|c| c.node == node)
                .cloned()
                .or_else(|| {
                    let plan = self.plan(wi);
                    let min = self.spread_min(plan);
                    self.rescore(plan, wl, node, min)
                })
                .or_else(|| cands.first().cloned())
                .expect("the victims' eviction makes room");
            let id = self.commit(wi, replica, &best);
            let note = format!(
                "preempted {} lower-priority allocation(s) on {} (highest priority {})",
                preempted.len(),
                self.fleet.nodes[best.node as usize].name,
                lacked.iter().max().copied().unwrap_or_default()
            );
            return Outcome::Placed(Box::new(self.placement(
                wi,
                id,
                &best,
                &cands,
                preempted,
                vec![note],
            )));
        }
        if let Some(b) = model_breach {
            // Nodes had room, but only for GPUs of models over their bound.
            return Outcome::Unplaceable(self.over_quota(wi, &b, Vec::new()));
        }
        let mut e = self.explain_unplaceable(wi, Vec::new());
        if self.opts.preemption && e.suggestions.iter().any(|s| is_capacity_code(s.relaxes)) {
            e.notes.push(format!(
                "no set of allocations with priority below {} on one node makes room",
                wl.priority
            ));
        }
        let generation = self.release_gen;
        if let Some(p) = self.plans[wi].as_mut() {
            p.failed = Some((generation, e.clone()));
        }
        Outcome::Unplaceable(e)
    }
}

fn is_capacity_code(c: ReasonCode) -> bool {
    use ReasonCode as R;
    matches!(c, R::Cpu | R::Memory | R::EphemeralStorage | R::Gpu)
}

/// Resources as shares of a node's capacity, summed (for comparing victim sets and
/// shortfalls).
fn share_of(v: &[u64; 4], cap: &crate::fleet::Capacity) -> u128 {
    let mut s = 0u128;
    let dims = [
        (v[0], cap.cpu),
        (v[1], cap.memory),
        (v[2], cap.ephemeral.unwrap_or(0)),
        (v[3], cap.gpu_milli_total() as u64),
    ];
    for (x, c) in dims {
        if x > 0 {
            s += x as u128 * UTIL_SCALE / c.max(1) as u128;
        }
    }
    s
}

/// Best static score first, then class order.
fn static_order(a: &Feasible, b: &Feasible) -> std::cmp::Ordering {
    b.total.total_cmp(&a.total).then(a.class.cmp(&b.class))
}
