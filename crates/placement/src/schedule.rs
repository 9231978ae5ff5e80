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
    Alloc, AllocId, Class, ClassId, CountrySet, Fleet, NodeId, SiteId, UTIL_SCALE, WorkloadId,
};
use crate::score::{StaticScore, Weights};
use crate::windows::WindowsBuild;
use crate::workload::{Attr, Batch, Compiled};

/// Tuning of a placement run. The defaults are what the server uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub weights: Weights,
    /// How many top candidates an explanation lists (at least 1).
    pub candidates: usize,
    /// Whether an instance that fits nowhere may evict strictly lower-priority work.
    pub preemption: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            weights: Weights::default(),
            candidates: 3,
            preemption: true,
        }
    }
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

/// Restricts a search to one site and/or one GPU model (gangs).
#[derive(Debug, Clone, PartialEq)]
struct Restrict {
    site: Option<SiteId>,
    model: Option<String>,
}

impl Restrict {
    fn describe(&self, fleet: &Fleet) -> String {
        let mut parts = Vec::new();
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

fn better(a: &Cand, b: &Cand) -> bool {
    match a.score.total.total_cmp(&b.score.total) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.node < b.node,
    }
}

fn push_top(top: &mut Vec<Cand>, c: Cand, k: usize) {
    if top.iter().any(|x| x.node == c.node) {
        return;
    }
    let pos = top.iter().position(|x| better(&c, x)).unwrap_or(top.len());
    if pos < k {
        top.insert(pos, c);
        top.truncate(k);
    }
}

/// Candidates kept between searches for one workload.
const CACHE_K: usize = 16;
/// Beyond this many node changes since the last search, search again from scratch.
const CACHE_CHANGES: usize = 256;

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
}

/// Per class: whether a `matchExpression` holds on every node of the class, on none, or
/// on some (its attribute differs between them, so it is checked node by node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassMatch {
    No,
    Yes,
    Mixed,
}

/// An expression's [`ClassMatch`] per class, and the attribute's value where every
/// node of the class has the same, computed once per session (workloads repeat the same
/// expressions; the classes do not change within a batch).
#[derive(Debug)]
struct ExprMemo {
    matches: Vec<ClassMatch>,
    /// Index into `values` (`"absent"` for no value), `NONE` where nodes differ.
    value: Vec<u32>,
    values: Vec<String>,
}

impl std::ops::Index<usize> for ExprMemo {
    type Output = ClassMatch;
    fn index(&self, class: usize) -> &ClassMatch {
        &self.matches[class]
    }
}

type Memo = Arc<ExprMemo>;

fn class_matches(fleet: &Fleet, e: &crate::workload::Expr) -> Memo {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut values = Vec::new();
    let mut matches = Vec::with_capacity(fleet.classes.len());
    let mut value = Vec::with_capacity(fleet.classes.len());
    for c in &fleet.classes {
        if !e.attr.is_uniform(c) {
            matches.push(ClassMatch::Mixed);
            value.push(NONE);
            continue;
        }
        let v = e.attr.uniform_value(fleet, c);
        matches.push(if e.expr.matches(v.as_deref()) {
            ClassMatch::Yes
        } else {
            ClassMatch::No
        });
        let v = v.as_deref().unwrap_or("absent");
        value.push(match ids.get(v) {
            Some(&id) => id,
            None => {
                let id = values.len() as u32;
                values.push(v.to_string());
                ids.insert(v.to_string(), id);
                id
            }
        });
    }
    Arc::new(ExprMemo {
        matches,
        value,
        values,
    })
}

/// The memos of a workload's expressions and preferences.
struct Memos {
    exprs: Vec<Memo>,
    prefs: Vec<Vec<Memo>>,
}

/// Per spread key: whether domains are per node, the domain of each class (or node),
/// the domain names.
type DomainMaps = HashMap<String, (bool, Arc<Vec<u32>>, Arc<Vec<String>>)>;

impl<'a> Session<'a> {
    pub(crate) fn new(fleet: &'a mut Fleet, batch: &'a Batch, opts: &'a Options) -> Self {
        Session {
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

    fn k(&self) -> usize {
        self.opts.candidates.max(1)
    }

    fn plan(&self, wi: usize) -> &Plan {
        self.plans[wi].as_ref().expect("plan built")
    }

    // -- static evaluation, once per workload -----------------------------------------

    fn ensure_plan(&mut self, wi: usize) {
        if self.plans[wi].is_none() {
            let wl = &self.batch.workloads[wi];
            let wid = self
                .fleet
                .intern_workload(&wl.workload.namespace, &wl.workload.name);
            let fleet = &*self.fleet;
            let mut memo = |e: &crate::workload::Expr| match self.memo.get(&e.expr) {
                Some(m) => m.clone(),
                None => {
                    let m = class_matches(fleet, e);
                    self.memo.insert(e.expr.clone(), m.clone());
                    m
                }
            };
            let memos = Memos {
                exprs: wl.exprs.iter().map(&mut memo).collect(),
                prefs: wl
                    .prefs
                    .iter()
                    .map(|(_, exprs)| exprs.iter().map(&mut memo).collect())
                    .collect(),
            };
            let platforms = &mut self.platforms;
            let site_memos = &mut self.sites;
            let verdict = self
                .verdicts
                .entry(FilterKey::of(wl))
                .or_insert_with(|| {
                    let platform = platforms
                        .entry(PlatformKey::of(wl))
                        .or_insert_with(|| Arc::new(platform_memo(fleet, wl)));
                    let sites = site_memos
                        .entry(SiteKey::of(wl))
                        .or_insert_with(|| Arc::new(site_memo(fleet, wl)));
                    Arc::new(static_verdict(fleet, wl, &memos, platform, sites))
                })
                .clone();
            let plan = build_plan(
                fleet,
                wl,
                wi,
                wid,
                &self.opts.weights,
                &mut self.domains,
                &memos,
                &verdict,
            );
            self.plan_of_wid.insert(wid, wi);
            self.plans[wi] = Some(plan);
        }
    }

    // -- search --------------------------------------------------------------------

    /// Smallest replica count over the eligible spread domains.
    fn spread_min(&self, plan: &Plan) -> u32 {
        match &plan.spread {
            None => 0,
            Some(SpreadState::Domains {
                counts, eligible, ..
            }) => counts
                .iter()
                .zip(eligible)
                .filter(|(_, e)| **e)
                .map(|(c, _)| *c)
                .min()
                .unwrap_or(0),
            Some(SpreadState::Node) => {
                let wl = &self.batch.workloads[plan.wl];
                let Some(on) = self.fleet.replicas_on.get(&plan.wid) else {
                    return 0;
                };
                let counts: Vec<u32> = on
                    .iter()
                    .filter(|(n, _)| self.node_eligible(plan, wl, **n))
                    .map(|(_, c)| *c)
                    .collect();
                if (counts.len() as u32) < plan.eligible {
                    0
                } else {
                    counts.into_iter().min().unwrap_or(0)
                }
            }
        }
    }

    /// Whether a node passes every static filter (node-level ones included).
    fn node_eligible(&self, plan: &Plan, wl: &Compiled, n: NodeId) -> bool {
        let node = &self.fleet.nodes[n as usize];
        let fi = plan.by_class[node.class as usize];
        fi != NONE && !node.excluded && self.node_passes(&plan.feasible[fi as usize], wl, n)
    }

    /// The verdict for domain `d`: the spread score, or why it is refused.
    fn domain_spread(&self, plan: &Plan, d: u32, min: u32) -> Result<f64, Reason> {
        let (Some(SpreadState::Domains { names, counts, .. }), Some(s)) =
            (&plan.spread, &self.batch.workloads[plan.wl].spread)
        else {
            return Ok(0.0);
        };
        if d == NONE {
            return Err(Reason::SpreadKeyMissing);
        }
        let c = counts[d as usize];
        if c + 1 > min + s.max_skew {
            return Err(Reason::Spread {
                domain: names[d as usize].clone(),
                count: c,
                min,
            });
        }
        Ok(-self.opts.weights.spread * c.saturating_sub(min) as f64)
    }

    /// The spread verdict shared by every node of a class (domains that are class
    /// attributes).
    fn class_spread(&self, plan: &Plan, class: ClassId, min: u32) -> Result<f64, Reason> {
        match &plan.spread {
            Some(SpreadState::Domains {
                per_node: false,
                domain,
                ..
            }) => self.domain_spread(plan, domain[class as usize], min),
            _ => Ok(0.0),
        }
    }

    /// The per-node spread verdict (`node.name` domains, where the node runs `count`
    /// replicas, or per-node attributes such as labels).
    fn node_spread(&self, plan: &Plan, n: NodeId, count: u32, min: u32) -> Result<f64, Reason> {
        let wl = &self.batch.workloads[plan.wl];
        match (&plan.spread, &wl.spread) {
            (
                Some(SpreadState::Domains {
                    per_node: true,
                    domain,
                    ..
                }),
                _,
            ) => self.domain_spread(plan, domain[n as usize], min),
            (Some(SpreadState::Node), Some(s)) => {
                if count + 1 > min + s.max_skew {
                    return Err(Reason::Spread {
                        domain: self.fleet.nodes[n as usize].name.clone(),
                        count,
                        min,
                    });
                }
                Ok(-self.opts.weights.spread * count.saturating_sub(min) as f64)
            }
            _ => Ok(0.0),
        }
    }

    fn strategy_score(&self, wl: &Compiled, class: &Class, n: NodeId) -> f64 {
        let node = &self.fleet.nodes[n as usize];
        let cap = &class.key.capacity;
        let mut sum = 0.0;
        let mut dims = 0u32;
        if cap.cpu > 0 {
            sum += (node.used[0] + wl.res[0]) as f64 / cap.cpu as f64;
            dims += 1;
        }
        if cap.memory > 0 {
            sum += (node.used[1] + wl.res[1]) as f64 / cap.memory as f64;
            dims += 1;
        }
        let total = cap.gpu_total();
        if total > 0 {
            let used: u32 = node.gpu_used.iter().sum();
            let req = wl.gpu.as_ref().map_or(0, |g| g.count);
            sum += (used + req) as f64 / total as f64;
            dims += 1;
        }
        let util = if dims == 0 { 0.0 } else { sum / dims as f64 };
        let w = self.opts.weights.strategy;
        match wl.strategy {
            Strategy::Binpack => w * util,
            Strategy::Spread => w * (1.0 - util),
        }
    }

    /// GPU groups of a feasible class that a restriction allows.
    fn groups_for(&self, f: &Feasible, class: &Class, restrict: Option<&Restrict>) -> Vec<u8> {
        match restrict.and_then(|r| r.model.as_ref()) {
            None => f.groups.clone(),
            Some(m) => f
                .groups
                .iter()
                .copied()
                .filter(|g| class.key.capacity.gpus[*g as usize].model == *m)
                .collect(),
        }
    }

    fn class_allowed(&self, class: &Class, restrict: Option<&Restrict>) -> bool {
        restrict
            .and_then(|r| r.site)
            .is_none_or(|s| class.key.site == Ok(s))
    }

    /// Per-node preference bonus (preferences on labels and other per-node keys).
    fn bonus(&self, f: &Feasible, n: NodeId) -> f64 {
        if f.bonus.is_empty() {
            0.0
        } else {
            f.bonus[self.fleet.nodes[n as usize].pos as usize] as f64
        }
    }

    /// Whether a node passes the per-node static filters (`node.name`, labels, security
    /// facts).
    fn node_passes(&self, f: &Feasible, wl: &Compiled, n: NodeId) -> bool {
        !f.node_check || {
            let mut v = Vec::new();
            filter::node_failures(self.fleet, n, wl, false, &mut v);
            v.is_empty()
        }
    }

    /// The best `k` nodes for one more instance of the plan's workload, best first.
    fn search(&self, wi: usize, restrict: Option<&Restrict>, k: usize) -> Vec<Cand> {
        let plan = self.plan(wi);
        let wl = &self.batch.workloads[wi];
        let fleet = &*self.fleet;
        let specials = fleet.replicas_on.get(&plan.wid).filter(|m| !m.is_empty());
        let min = self.spread_min(plan);
        let gpu_count = wl.gpu.as_ref().map(|g| g.count);
        // Whether nodes of one class can differ in more than utilisation (per class,
        // also per-node expressions and preferences).
        let per_node = matches!(
            plan.spread,
            Some(SpreadState::Domains { per_node: true, .. })
        );
        let mut top: Vec<Cand> = Vec::with_capacity(k + 1);
        let kth = |top: &Vec<Cand>| (top.len() >= k).then(|| top[k - 1].score.total);

        // Classes by the best score any of their nodes could have now (static score,
        // the best per-node extras, the class's spread score, and the strategy score of
        // its fullest node for binpack or its emptiest for spread; node spread and
        // colocation are never positive), best first: the k-th candidate found in the
        // first classes prunes the rest.
        let mut classes: Vec<(f64, u32)> = Vec::with_capacity(plan.feasible.len());
        for (fi, f) in plan.feasible.iter().enumerate() {
            let hot = &fleet.hot[f.class as usize];
            if restrict.and_then(|r| r.site).is_some_and(|s| hot.site != s)
                || wl.res[0] > hot.cpu
                || wl.res[1] > hot.memory
            {
                continue;
            }
            let Ok(spread) = self.class_spread(plan, f.class, min) else {
                continue;
            };
            let strategy_max = match wl.strategy {
                Strategy::Binpack => f.shares.binpack_max(hot.max_key),
                Strategy::Spread => f.shares.spread_max(hot.min_key),
            };
            classes.push((
                f.total + f.bonus_max as f64 + spread + strategy_max,
                fi as u32,
            ));
        }
        let by_bound = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let sorted = FIRST_CLASSES.min(classes.len());
        if classes.len() > sorted {
            classes.select_nth_unstable_by(sorted - 1, by_bound);
        }
        classes[..sorted].sort_by(by_bound);
        for (i, &(bound, fi)) in classes.iter().enumerate() {
            if kth(&top).is_some_and(|t| bound < t) {
                // In the sorted part, every later class is bounded by this one's bound;
                // after it, classes come in no order.
                if i < sorted {
                    break;
                }
                continue;
            }
            let f = &plan.feasible[fi as usize];
            let class = &fleet.classes[f.class as usize];
            let cap = &class.key.capacity;
            if wl.res[0] > cap.cpu
                || wl.res[1] > cap.memory
                || (wl.res[2] > 0 && cap.ephemeral.is_none_or(|e| wl.res[2] > e))
            {
                continue;
            }
            let groups = self.groups_for(f, class, restrict);
            if let Some(c) = gpu_count
                && !groups.iter().any(|&g| cap.gpus[g as usize].count >= c)
            {
                continue;
            }
            let Ok(spread) = self.class_spread(plan, f.class, min) else {
                continue;
            };
            let shares = f.shares;
            let base = f.total + spread;
            let per_node = per_node || f.node_check || !f.bonus.is_empty();
            let extra_max = f.bonus_max as f64;
            // Evaluates one node whose strategy score is at most `strategy_max`; returns
            // its per-node extras (preference bonus and spread) when it fits.
            let visit = |top: &mut Vec<Cand>, n: NodeId, strategy_max: f64| -> Option<f64> {
                // Whether it fits first: the cheapest test, and the one that most
                // often fails on the fullest nodes.
                let gpu = filter::fit(fleet, n, &wl.res, gpu_count, &groups).ok()?;
                let node = &fleet.nodes[n as usize];
                if node.excluded || specials.is_some_and(|m| m.contains_key(&n)) {
                    return None;
                }
                let bonus = self.bonus(f, n);
                if per_node
                    && (kth(top).is_some_and(|t| base + bonus + strategy_max < t)
                        || !self.node_passes(f, wl, n))
                {
                    return None;
                }
                let node_spread = self.node_spread(plan, n, 0, min).ok()?;
                let strategy = self.strategy_score(wl, class, n);
                let score = f.score.with(strategy, bonus, spread + node_spread, 0.0);
                push_top(
                    top,
                    Cand {
                        node: n,
                        gpu,
                        score,
                    },
                    k,
                );
                Some(bonus + node_spread)
            };
            // Nodes that fit with the most per-node extras; `k` of them in one
            // utilisation group (names in order) end the class.
            let mut best = 0usize;
            let mut counts = |extras: Option<f64>| {
                if extras.is_some_and(|e| e >= extra_max) {
                    best += 1;
                }
                best >= k
            };
            match wl.strategy {
                Strategy::Binpack => {
                    // Fullest first; within one utilisation, names in order (one walk
                    // down the index, a utilisation group at a time).
                    let upper = binpack_bound(class, wl);
                    let mut nodes = class.index.range(..=(upper, NodeId::MAX)).rev().peekable();
                    let mut group: Vec<NodeId> = Vec::new();
                    'keys: while let Some(&&(key, _)) = nodes.peek() {
                        let strategy_max = shares.binpack_max(key);
                        if kth(&top).is_some_and(|t| base + extra_max + strategy_max < t) {
                            break;
                        }
                        group.clear();
                        while let Some(&&(k, n)) = nodes.peek()
                            && k == key
                        {
                            group.push(n);
                            nodes.next();
                        }
                        for &n in group.iter().rev() {
                            if counts(visit(&mut top, n, strategy_max)) {
                                break 'keys;
                            }
                        }
                    }
                }
                Strategy::Spread => {
                    // Emptiest first; ties in name order.
                    for &(key, n) in &class.index {
                        let strategy_max = shares.spread_max(key);
                        if kth(&top).is_some_and(|t| base + extra_max + strategy_max < t) {
                            break;
                        }
                        if counts(visit(&mut top, n, strategy_max)) {
                            break;
                        }
                    }
                }
            }
        }

        if let Some(on) = specials {
            for (&n, &count) in on {
                let node = &fleet.nodes[n as usize];
                let fi = plan.by_class[node.class as usize];
                if fi == NONE || node.excluded || wl.anti_affinity {
                    continue;
                }
                let f = &plan.feasible[fi as usize];
                let class = &fleet.classes[f.class as usize];
                if !self.class_allowed(class, restrict) || !self.node_passes(f, wl, n) {
                    continue;
                }
                let (Ok(s1), Ok(s2)) = (
                    self.class_spread(plan, f.class, min),
                    self.node_spread(plan, n, count, min),
                ) else {
                    continue;
                };
                let groups = self.groups_for(f, class, restrict);
                if let Ok(gpu) = filter::fit(fleet, n, &wl.res, gpu_count, &groups) {
                    let strategy = self.strategy_score(wl, class, n);
                    let colocation = if wl.type_ == WorkloadType::Service {
                        -self.opts.weights.colocation * count as f64
                    } else {
                        0.0
                    };
                    let score = f
                        .score
                        .with(strategy, self.bonus(f, n), s1 + s2, colocation);
                    push_top(
                        &mut top,
                        Cand {
                            node: n,
                            gpu,
                            score,
                        },
                        k,
                    );
                }
            }
        }
        top
    }

    /// The candidate `n` is for one more instance of the plan's workload now, scored
    /// exactly as [`Session::search`] scores it (`None` when it does not fit).
    fn rescore(&self, plan: &Plan, wl: &Compiled, n: NodeId, min: u32) -> Option<Cand> {
        let fleet = &*self.fleet;
        let node = &fleet.nodes[n as usize];
        let fi = plan.by_class[node.class as usize];
        if fi == NONE || node.excluded {
            return None;
        }
        let count = fleet
            .replicas_on
            .get(&plan.wid)
            .and_then(|m| m.get(&n))
            .copied()
            .unwrap_or(0);
        if count > 0 && wl.anti_affinity {
            return None;
        }
        let f = &plan.feasible[fi as usize];
        let class = &fleet.classes[f.class as usize];
        if !self.node_passes(f, wl, n) {
            return None;
        }
        let s1 = self.class_spread(plan, f.class, min).ok()?;
        let s2 = self.node_spread(plan, n, count, min).ok()?;
        let gpu = filter::fit(
            fleet,
            n,
            &wl.res,
            wl.gpu.as_ref().map(|g| g.count),
            &f.groups,
        )
        .ok()?;
        let strategy = self.strategy_score(wl, class, n);
        let colocation = if count > 0 && wl.type_ == WorkloadType::Service {
            -self.opts.weights.colocation * count as f64
        } else {
            0.0
        };
        Some(Cand {
            node: n,
            gpu,
            score: f
                .score
                .with(strategy, self.bonus(f, n), s1 + s2, colocation),
        })
    }

    /// The best `k` nodes for one more instance of the workload (as [`Session::search`]
    /// without a restriction), from the [`Cache`] when it still answers.
    fn best(&mut self, wi: usize, k: usize) -> Vec<Cand> {
        let cache = self.cache.take();
        let plan = self.plan(wi);
        let min = self.spread_min(plan);
        if let Some(mut c) = cache
            && c.wi == wi
            && c.release_gen == self.release_gen
            && c.min == min
            && self.touched.len() - c.seen <= CACHE_CHANGES
        {
            let wl = &self.batch.workloads[wi];
            let mut changed: Vec<NodeId> = self.touched[c.seen..].to_vec();
            changed.sort_unstable();
            changed.dedup();
            let above = |x: &Cand| {
                c.floor.is_none_or(|(score, node)| {
                    x.score.total > score || (x.score.total == score && x.node <= node)
                })
            };
            // Without spread, only the changed nodes' scores moved; with it, a listed
            // node's domain may have gained a replica.
            let (mut top, rest): (Vec<Cand>, Vec<Cand>) = std::mem::take(&mut c.top)
                .into_iter()
                .partition(|x| plan.spread.is_none() && changed.binary_search(&x.node).is_err());
            changed.extend(rest.iter().map(|x| x.node));
            changed.sort_unstable();
            changed.dedup();
            top.extend(
                changed
                    .into_iter()
                    .filter_map(|n| self.rescore(plan, wl, n, min))
                    .filter(above),
            );
            top.sort_by(|a, b| {
                b.score
                    .total
                    .total_cmp(&a.score.total)
                    .then(a.node.cmp(&b.node))
            });
            if top.len() >= k || c.floor.is_none() {
                let answer: Vec<Cand> = top.iter().take(k).cloned().collect();
                #[cfg(debug_assertions)]
                {
                    // A search from scratch finds candidates as good, rank by rank (it may
                    // miss a node better by a rounding error, which the list keeps).
                    let searched = self.search(wi, None, k);
                    assert_eq!(answer.len(), searched.len(), "as many candidates");
                    for (a, b) in answer.iter().zip(&searched) {
                        assert!(
                            (a.score.total - b.score.total).abs() < 1e-9,
                            "the cached candidates score as the searched ones: {a:?} {b:?}"
                        );
                    }
                }
                c.top = top;
                c.seen = self.touched.len();
                self.cache = Some(c);
                return answer;
            }
        }
        let top = self.search(wi, None, CACHE_K.max(k));
        let floor = (top.len() >= CACHE_K.max(k))
            .then(|| top.last().map(|x| (x.score.total, x.node)))
            .flatten();
        let answer = top.iter().take(k).cloned().collect();
        self.cache = Some(Cache {
            wi,
            top,
            floor,
            seen: self.touched.len(),
            release_gen: self.release_gen,
            min,
        });
        answer
    }

    // -- committing ----------------------------------------------------------------

    fn commit(&mut self, wi: usize, replica: u32, c: &Cand) -> AllocId {
        let wl = &self.batch.workloads[wi];
        let wid = self.plan(wi).wid;
        let id = self.fleet.insert_alloc(Alloc {
            workload: wid,
            replica,
            node: c.node,
            priority: wl.priority,
            res: wl.res,
            gpu: c.gpu,
            name: None,
        });
        self.count_replica(wi, c.node, true);
        self.touched.push(c.node);
        id
    }

    fn uncommit(&mut self, id: AllocId) -> Alloc {
        let a = self.fleet.release(id);
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
        chosen: &Cand,
        cands: &[Cand],
        preempted: Vec<Preemption>,
        notes: Vec<String>,
    ) -> Placement {
        let wl = &self.batch.workloads[wi];
        let plan = self.plan(wi);
        let class = self.fleet.class_of(chosen.node);
        let node = &self.fleet.nodes[chosen.node as usize].name;
        let site = self.fleet.site_name_of_class(class).to_string();
        let mut resources = wl.resources.clone();
        if let (Some(g), Some((group, _))) = (&mut resources.gpu, chosen.gpu) {
            g.model = Some(class.key.capacity.gpus[group as usize].model.clone());
        }
        let summary = format!(
            "placed on {node} in {site} (score {:.2}); {} of {} nodes passed the static filters",
            chosen.score.total,
            plan.eligible,
            self.fleet.nodes.len()
        );
        Placement {
            node: node.clone(),
            site,
            zone: class.key.zone.clone(),
            resources,
            priority: wl.priority,
            score: chosen.score,
            preempted,
            explanation: Explanation {
                summary,
                nodes: self.fleet.nodes.len() as u32,
                evaluated: Evaluated::StaticFilters,
                passed: plan.eligible,
                rejections: plan.static_rejections.clone(),
                candidates: cands.iter().map(|c| self.candidate(c)).collect(),
                suggestions: Vec::new(),
                notes,
            },
        }
    }

    // -- one instance ------------------------------------------------------------------

    pub(crate) fn place_one(&mut self, wi: usize, replica: u32) -> Outcome {
        self.ensure_plan(wi);
        if let Some((generation, e)) = &self.plan(wi).failed
            && *generation == self.release_gen
        {
            return Outcome::Unplaceable(e.clone());
        }
        let cands = self.best(wi, self.k());
        if let Some(best) = cands.first() {
            let best = best.clone();
            self.commit(wi, replica, &best);
            return Outcome::Placed(Box::new(self.placement(
                wi,
                &best,
                &cands,
                Vec::new(),
                Vec::new(),
            )));
        }
        let wl = &self.batch.workloads[wi];
        if self.opts.preemption
            && let Some((node, victims)) = self.find_victims(wi)
        {
            let mut preempted = Vec::new();
            let mut lacked = Vec::new();
            for v in victims {
                let a = self.uncommit(v);
                lacked.push(a.priority);
                let r = self.fleet.alloc_ref(&a);
                preempted.push(Preemption {
                    reason: format!(
                        "preempted by {} replica {replica} (priority {} > {}): node {} had no room",
                        wl.workload, wl.priority, a.priority, r.node
                    ),
                    allocation: r,
                });
            }
            let cands = self.search(wi, None, self.k());
            let best = cands
                .iter()
                .find(|c| c.node == node)
                .cloned()
                .or_else(|| cands.first().cloned())
                .expect("the victims' eviction makes room");
            self.commit(wi, replica, &best);
            let note = format!(
                "preempted {} lower-priority allocation(s) on {} (highest priority {})",
                preempted.len(),
                self.fleet.nodes[best.node as usize].name,
                lacked.iter().max().copied().unwrap_or_default()
            );
            return Outcome::Placed(Box::new(self.placement(
                wi,
                &best,
                &cands,
                preempted,
                vec![note],
            )));
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

    // -- explanations ---------------------------------------------------------------

    /// Every node under the first filter it fails, with the single changes that would
    /// make nodes fit.
    fn full_tally(&self, wi: usize) -> Tally {
        let plan = self.plan(wi);
        let wl = &self.batch.workloads[wi];
        let fleet = &*self.fleet;
        let min = self.spread_min(plan);
        let specials = fleet.replicas_on.get(&plan.wid);
        let gpu_count = wl.gpu.as_ref().map(|g| g.count);
        let mut tally = Tally::default();
        let mut class_all = Vec::new();
        let mut node_all = Vec::new();
        let mut dynamic = Vec::new();
        for (ci, class) in fleet.classes.iter().enumerate() {
            class_all.clear();
            filter::class_failures(fleet, class, wl, true, &mut class_all);
            if class_all.len() >= 2 {
                // Every node fails the class's first filter and more: counted under
                // that one, and no single change would make any of them fit.
                let hot = &fleet.hot[ci];
                if hot.excluded > 0 {
                    tally.reject(&Reason::Excluded, hot.excluded);
                }
                let rest = hot.nodes - hot.excluded;
                if rest > 0 {
                    let r = &class_all[0];
                    let agg = tally.reject(r, rest);
                    if let Reason::Expression(i) = r {
                        let v = wl.exprs[*i].attr.value(fleet, class, None);
                        agg.values
                            .insert(v.map_or_else(|| "absent".to_string(), |v| v.into_owned()));
                    }
                }
                continue;
            }
            let groups = wl
                .gpu
                .as_ref()
                .map(|g| filter::gpu_groups(class, g))
                .unwrap_or_default();
            let class_spread = self.class_spread(plan, ci as ClassId, min);
            for &n in &class.nodes {
                let node = &fleet.nodes[n as usize];
                if node.excluded {
                    tally.reject(&Reason::Excluded, 1);
                    continue;
                }
                node_all.clear();
                if plan.node_level {
                    filter::node_failures(fleet, n, wl, true, &mut node_all);
                }
                dynamic.clear();
                let mut short = [0u64; 4];
                if class_all.len() + node_all.len() <= 1 {
                    short = filter::shortfall(fleet, n, &wl.res, gpu_count, &groups);
                    if let Some(i) = short.iter().position(|x| *x > 0) {
                        dynamic.push(match i {
                            0 => Reason::Cpu,
                            1 => Reason::Memory,
                            2 => Reason::Ephemeral,
                            _ => Reason::Gpu,
                        });
                    }
                    let on_node = specials.and_then(|m| m.get(&n)).copied().unwrap_or(0);
                    if wl.anti_affinity && on_node > 0 {
                        dynamic.push(Reason::AntiAffinity);
                    }
                    if let Err(r) = &class_spread {
                        dynamic.push(r.clone());
                    } else if let Err(r) = self.node_spread(plan, n, on_node, min) {
                        dynamic.push(r);
                    }
                }
                let first = class_all.first().or(node_all.first()).or(dynamic.first());
                match first {
                    None => tally.pass(1),
                    Some(r) => {
                        let agg = tally.reject(r, 1);
                        let (cpu, memory, eph) = filter::free_of(fleet, n);
                        match r {
                            Reason::Cpu => agg.max_free = agg.max_free.max(cpu),
                            Reason::Memory => agg.max_free = agg.max_free.max(memory),
                            Reason::Ephemeral => {
                                agg.max_free = agg.max_free.max(eph.unwrap_or(0));
                            }
                            Reason::Gpu => {
                                agg.max_free =
                                    agg.max_free.max(filter::gpu_free(fleet, n, &groups) as u64);
                            }
                            Reason::Expression(i) => {
                                let v = wl.exprs[*i].attr.value(fleet, class, Some(node));
                                agg.values.insert(
                                    v.map_or_else(|| "absent".to_string(), |v| v.into_owned()),
                                );
                            }
                            _ => {}
                        }
                    }
                }
                if class_all.len() + node_all.len() + dynamic.len() == 1 {
                    let r = class_all
                        .first()
                        .or(node_all.first())
                        .or(dynamic.first())
                        .expect("one failure");
                    if r.is_capacity() {
                        let cap = &class.key.capacity;
                        let share = share_of(&short, cap);
                        tally.single(Change::Capacity, n, Some((share, short)));
                    } else {
                        tally.single(Change::Lift(r.clone()), n, None);
                    }
                }
            }
        }
        tally
    }

    fn explain_unplaceable(&self, wi: usize, notes: Vec<String>) -> Explanation {
        let wl = &self.batch.workloads[wi];
        let tally = self.full_tally(wi);
        let rejections = tally.rejections(self.fleet, wl);
        let suggestions = tally.suggestions(self.fleet, wl);
        let mut summary = format!("{} of {} nodes fit", tally.passed, tally.nodes);
        let top: Vec<String> = rejections.iter().take(3).map(ToString::to_string).collect();
        if !top.is_empty() {
            summary += ": ";
            summary += &top.join("; ");
        }
        if let Some(s) = suggestions.first() {
            summary += "; ";
            summary += &s.message;
        }
        Explanation {
            summary,
            nodes: tally.nodes,
            evaluated: Evaluated::AllFilters,
            passed: tally.passed,
            rejections,
            candidates: Vec::new(),
            suggestions,
            notes,
        }
    }

    /// A full explanation without placing (what `meridian explain` shows).
    pub(crate) fn explain_only(&mut self, wi: usize) -> Explanation {
        self.ensure_plan(wi);
        let cands = self.search(wi, None, self.k());
        if cands.is_empty() {
            return self.explain_unplaceable(wi, Vec::new());
        }
        let tally = self.full_tally(wi);
        let wl = &self.batch.workloads[wi];
        let best = self.candidate(&cands[0]);
        Explanation {
            summary: format!(
                "{} of {} nodes fit; best {} in {} (score {:.2})",
                tally.passed, tally.nodes, best.node, best.site, best.score.total
            ),
            nodes: tally.nodes,
            evaluated: Evaluated::AllFilters,
            passed: tally.passed,
            rejections: tally.rejections(self.fleet, wl),
            candidates: cands.iter().map(|c| self.candidate(c)).collect(),
            suggestions: Vec::new(),
            notes: Vec::new(),
        }
    }

    // -- preemption -------------------------------------------------------------------

    /// The node and the cheapest set of strictly lower-priority allocations on it whose
    /// eviction makes room: the lowest highest-victim priority, then the fewest victims,
    /// then the least evicted resources (as shares of the node), then the node name.
    fn find_victims(&self, wi: usize) -> Option<(NodeId, Vec<AllocId>)> {
        let plan = self.plan(wi);
        let wl = &self.batch.workloads[wi];
        let fleet = &*self.fleet;
        let min = self.spread_min(plan);
        let specials = fleet.replicas_on.get(&plan.wid);
        type Key = (i32, usize, u128, NodeId);
        let mut best: Option<(Key, Vec<AllocId>)> = None;
        for f in &plan.feasible {
            let class = &fleet.classes[f.class as usize];
            let cap = &class.key.capacity;
            if wl.res[0] > cap.cpu
                || wl.res[1] > cap.memory
                || (wl.res[2] > 0 && cap.ephemeral.is_none_or(|e| wl.res[2] > e))
            {
                continue;
            }
            if self.class_spread(plan, f.class, min).is_err() {
                continue;
            }
            let group_options: Vec<Option<u8>> = match &wl.gpu {
                Some(g) => f
                    .groups
                    .iter()
                    .copied()
                    .filter(|&i| cap.gpus[i as usize].count >= g.count)
                    .map(Some)
                    .collect(),
                None => vec![None],
            };
            for &n in &class.nodes {
                let node = &fleet.nodes[n as usize];
                if node.excluded {
                    continue;
                }
                let on_node = specials.and_then(|m| m.get(&n)).copied().unwrap_or(0);
                if (wl.anti_affinity && on_node > 0)
                    || self.node_spread(plan, n, on_node, min).is_err()
                {
                    continue;
                }
                if !self.node_passes(f, wl, n) {
                    continue;
                }
                let victims: Vec<(AllocId, &Alloc)> = node
                    .allocs
                    .iter()
                    .filter_map(|&a| fleet.allocs[a as usize].as_ref().map(|x| (a, x)))
                    .filter(|(_, a)| a.priority < wl.priority)
                    .collect();
                if victims.is_empty() {
                    continue;
                }
                for &group in &group_options {
                    if let Some((max_prio, chosen, share)) =
                        select_victims(fleet, n, wl, group, &victims)
                    {
                        let key = (max_prio, chosen.len(), share, n);
                        if best.as_ref().is_none_or(|(k, _)| key < *k) {
                            best = Some((key, chosen));
                        }
                    }
                }
            }
        }
        best.map(|((_, _, _, n), v)| (n, v))
    }

    // -- gangs --------------------------------------------------------------------------

    /// Places `replicas` one by one within `restrict`; returns what was placed.
    fn trial(
        &mut self,
        wi: usize,
        replicas: &[u32],
        restrict: Option<&Restrict>,
        k: usize,
    ) -> (Vec<(AllocId, Cand, Vec<Cand>)>, f64) {
        let mut placed = Vec::new();
        let mut total = 0.0;
        for &r in replicas {
            let cands = self.search(wi, restrict, k);
            let Some(best) = cands.first().cloned() else {
                break;
            };
            let id = self.commit(wi, r, &best);
            total += best.score.total;
            placed.push((id, best, cands));
        }
        (placed, total)
    }

    fn rollback(&mut self, placed: Vec<(AllocId, Cand, Vec<Cand>)>) {
        for (id, _, _) in placed.into_iter().rev() {
            self.uncommit(id);
        }
    }

    /// Places a gang all-or-nothing: in one site (and one GPU model when the request
    /// names none) if any can take every member, the best-scoring such group winning;
    /// else across sites with one GPU model; else across everything; else nowhere.
    pub(crate) fn place_gang(&mut self, wi: usize, replicas: &[u32]) -> Vec<Outcome> {
        self.ensure_plan(wi);
        let wl = &self.batch.workloads[wi];
        let size = wl.gang.unwrap_or(replicas.len() as u32);
        let fleet = &*self.fleet;
        let plan = self.plan(wi);
        let by_model = wl.gpu.as_ref().is_some_and(|g| g.model.is_none());
        let mut groups: Vec<Restrict> = Vec::new();
        let mut models: Vec<String> = Vec::new();
        // Best static score first.
        let mut order: Vec<u32> = (0..plan.feasible.len() as u32).collect();
        order
            .sort_by(|a, b| static_order(&plan.feasible[*a as usize], &plan.feasible[*b as usize]));
        for &fi in &order {
            let f = &plan.feasible[fi as usize];
            let class = &fleet.classes[f.class as usize];
            let Ok(site) = class.key.site else { continue };
            let class_models: Vec<Option<String>> = if by_model {
                f.groups
                    .iter()
                    .map(|g| Some(class.key.capacity.gpus[*g as usize].model.clone()))
                    .collect()
            } else {
                vec![None]
            };
            for model in class_models {
                if let Some(m) = &model
                    && !models.contains(m)
                {
                    models.push(m.clone());
                }
                let r = Restrict {
                    site: Some(site),
                    model,
                };
                if !groups.contains(&r) {
                    groups.push(r);
                }
            }
        }

        let mut best: Option<(f64, Restrict)> = None;
        let mut most_in_one = 0usize;
        for r in &groups {
            let (placed, total) = self.trial(wi, replicas, Some(r), 1);
            let ok = placed.len() == replicas.len();
            most_in_one = most_in_one.max(placed.len());
            self.rollback(placed);
            if ok && best.as_ref().is_none_or(|(t, _)| total > *t) {
                best = Some((total, r.clone()));
            }
        }
        let k = self.k();
        let mut note = None;
        let mut chosen = best.map(|(_, r)| Some(r));
        if chosen.is_none() {
            let mut fallbacks: Vec<Option<Restrict>> = models
                .iter()
                .map(|m| {
                    Some(Restrict {
                        site: None,
                        model: Some(m.clone()),
                    })
                })
                .collect();
            fallbacks.push(None);
            for r in fallbacks {
                let (placed, _) = self.trial(wi, replicas, r.as_ref(), 1);
                let ok = placed.len() == replicas.len();
                self.rollback(placed);
                if ok {
                    note = Some(format!(
                        "gang of {size}: no single site had room for all {} members; placed across sites",
                        replicas.len()
                    ));
                    chosen = Some(r);
                    break;
                }
            }
        }
        match chosen {
            Some(r) => {
                let (placed, _) = self.trial(wi, replicas, r.as_ref(), k);
                debug_assert_eq!(placed.len(), replicas.len());
                let note = note.unwrap_or_else(|| {
                    format!(
                        "gang of {size}: all {} members placed together in {}",
                        replicas.len(),
                        r.as_ref()
                            .map_or("any site".to_string(), |r| r.describe(self.fleet))
                    )
                });
                placed
                    .iter()
                    .map(|(_, best, cands)| {
                        Outcome::Placed(Box::new(self.placement(
                            wi,
                            best,
                            cands,
                            Vec::new(),
                            vec![note.clone()],
                        )))
                    })
                    .collect()
            }
            None => {
                let note = format!(
                    "gang of {size}: all {} members must be placed together; at most {most_in_one} fit in one site",
                    replicas.len()
                );
                let mut e = self.explain_unplaceable(wi, vec![note]);
                e.summary = format!("gang cannot be placed: {}", e.summary);
                replicas
                    .iter()
                    .map(|_| Outcome::Unplaceable(e.clone()))
                    .collect()
            }
        }
    }
}

fn is_capacity_code(c: ReasonCode) -> bool {
    use ReasonCode as R;
    matches!(c, R::Cpu | R::Memory | R::EphemeralStorage | R::Gpu)
}

/// Upper bounds of the strategy score of the nodes of one class from their
/// utilisation key (the key is rounded down, so the bounds allow one unit per
/// dimension).
#[derive(Debug, Clone, Copy)]
struct StrategyBound {
    weight: f64,
    dims: f64,
    /// Sum over dimensions of request / capacity.
    request: f64,
}

impl StrategyBound {
    fn new(cap: &crate::fleet::ClassHot, wl: &Compiled, weight: f64) -> Self {
        let mut dims = 0.0;
        let mut request = 0.0;
        if cap.cpu > 0 {
            dims += 1.0;
            request += wl.res[0] as f64 / cap.cpu as f64;
        }
        if cap.memory > 0 {
            dims += 1.0;
            request += wl.res[1] as f64 / cap.memory as f64;
        }
        let total = cap.gpu_total;
        if total > 0 {
            dims += 1.0;
            request += wl.gpu.as_ref().map_or(0, |g| g.count) as f64 / total as f64;
        }
        StrategyBound {
            weight,
            dims,
            request,
        }
    }

    /// The best binpack score of a node with utilisation key at most `key`.
    fn binpack_max(&self, key: u64) -> f64 {
        if self.dims == 0.0 {
            return 0.0;
        }
        let used = (key as f64 + self.dims) / UTIL_SCALE as f64;
        (self.weight * (used + self.request) / self.dims).min(self.weight) + 1e-9
    }

    /// The best spread score of a node with utilisation key at least `key`.
    fn spread_max(&self, key: u64) -> f64 {
        if self.dims == 0.0 {
            return self.weight;
        }
        let used = key as f64 / UTIL_SCALE as f64;
        self.weight * (1.0 - (used + self.request) / self.dims) + 1e-9
    }
}

/// The highest utilisation key a node of `class` can have and still fit the request.
fn binpack_bound(class: &Class, wl: &Compiled) -> u64 {
    let cap = &class.key.capacity;
    let mut k: u128 = 0;
    if cap.cpu > 0 {
        k += (cap.cpu - wl.res[0].min(cap.cpu)) as u128 * UTIL_SCALE / cap.cpu as u128;
    }
    if cap.memory > 0 {
        k += (cap.memory - wl.res[1].min(cap.memory)) as u128 * UTIL_SCALE / cap.memory as u128;
    }
    let total = cap.gpu_total();
    if total > 0 {
        let req = wl.gpu.as_ref().map_or(0, |g| g.count).min(total);
        k += (total - req) as u128 * UTIL_SCALE / total as u128;
    }
    u64::try_from(k).unwrap_or(u64::MAX)
}

/// Resources as shares of a node's capacity, summed (for comparing victim sets and
/// shortfalls).
fn share_of(v: &[u64; 4], cap: &crate::fleet::Capacity) -> u128 {
    let mut s = 0u128;
    let dims = [
        (v[0], cap.cpu),
        (v[1], cap.memory),
        (v[2], cap.ephemeral.unwrap_or(0)),
        (v[3], cap.gpu_total() as u64),
    ];
    for (x, c) in dims {
        if x > 0 {
            s += x as u128 * UTIL_SCALE / c.max(1) as u128;
        }
    }
    s
}

/// The victims to evict on node `n` (using GPU group `group`): the lowest priority
/// level that suffices, then greedily the fewest victims of at most that priority,
/// then any victim whose eviction turns out unnecessary is spared.
fn select_victims(
    fleet: &Fleet,
    n: NodeId,
    wl: &Compiled,
    group: Option<u8>,
    victims: &[(AllocId, &Alloc)],
) -> Option<(i32, Vec<AllocId>, u128)> {
    let (cpu, memory, eph) = filter::free_of(fleet, n);
    let node = &fleet.nodes[n as usize];
    let cap = &fleet.classes[node.class as usize].key.capacity;
    if wl.res[2] > 0 && eph.is_none() {
        return None;
    }
    let gpu_need = match (group, &wl.gpu) {
        (Some(g), Some(req)) => req.count.saturating_sub(
            cap.gpus[g as usize]
                .count
                .saturating_sub(node.gpu_used[g as usize]),
        ) as u64,
        _ => 0,
    };
    let need = [
        wl.res[0].saturating_sub(cpu),
        wl.res[1].saturating_sub(memory),
        wl.res[2].saturating_sub(eph.unwrap_or(0)),
        gpu_need,
    ];
    if need.iter().all(|x| *x == 0) {
        return None;
    }
    let gives = |a: &Alloc| -> [u64; 4] {
        let gpu = match (a.gpu, group) {
            (Some((g, c)), Some(want)) if g == want => c as u64,
            _ => 0,
        };
        [a.res[0], a.res[1], a.res[2], gpu]
    };
    let covers = |set: &[&(AllocId, &Alloc)]| -> bool {
        let mut sum = [0u64; 4];
        for (_, a) in set {
            for (s, g) in sum.iter_mut().zip(gives(a)) {
                *s = s.saturating_add(g);
            }
        }
        sum.iter().zip(&need).all(|(s, n)| s >= n)
    };
    let mut sorted: Vec<&(AllocId, &Alloc)> = victims.iter().collect();
    sorted.sort_by_key(|(id, a)| (a.priority, *id));
    // The lowest priority level whose victims (all at or below it) suffice.
    let mut level = None;
    for (i, (_, a)) in sorted.iter().enumerate() {
        let last_of_level = sorted
            .get(i + 1)
            .is_none_or(|(_, b)| b.priority != a.priority);
        if last_of_level && covers(&sorted[..=i]) {
            level = Some(a.priority);
            break;
        }
    }
    let level = level?;
    let mut pool: Vec<&(AllocId, &Alloc)> = sorted
        .into_iter()
        .filter(|(_, a)| a.priority <= level)
        .collect();
    let coverage = |a: &Alloc| -> u128 {
        gives(a)
            .iter()
            .zip(&need)
            .filter(|(_, n)| **n > 0)
            .map(|(g, n)| (*g).min(*n) as u128 * UTIL_SCALE / *n as u128)
            .sum()
    };
    pool.sort_by(|(ia, a), (ib, b)| {
        coverage(b)
            .cmp(&coverage(a))
            .then(a.priority.cmp(&b.priority))
            .then(ia.cmp(ib))
    });
    let mut chosen: Vec<&(AllocId, &Alloc)> = Vec::new();
    for v in pool {
        if covers(&chosen) {
            break;
        }
        chosen.push(v);
    }
    // Spare victims that are not needed, the most valuable (highest priority) first.
    let mut order: Vec<usize> = (0..chosen.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(chosen[i].1.priority), chosen[i].0));
    let mut keep = vec![true; chosen.len()];
    for i in order {
        keep[i] = false;
        let rest: Vec<&(AllocId, &Alloc)> = chosen
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| *v)
            .collect();
        if !covers(&rest) {
            keep[i] = true;
        }
    }
    let chosen: Vec<&(AllocId, &Alloc)> = chosen
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| v)
        .collect();
    let max_prio = chosen.iter().map(|(_, a)| a.priority).max()?;
    let mut total = [0u64; 4];
    for (_, a) in &chosen {
        for (t, g) in total.iter_mut().zip(gives(a)) {
            *t = t.saturating_add(g);
        }
    }
    let share = share_of(&total, cap);
    let mut ids: Vec<AllocId> = chosen.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    Some((max_prio, ids, share))
}

/// How many classes a search orders first by their bound (the rest only if needed).
const FIRST_CLASSES: usize = 32;

/// Best static score first, then class order.
fn static_order(a: &Feasible, b: &Feasible) -> std::cmp::Ordering {
    b.total.total_cmp(&a.total).then(a.class.cmp(&b.class))
}

/// A toleration, as a key (`api::kinds::Toleration` is not `Hash`).
type TolerationKey = (
    Option<String>,
    TolerationOperator,
    Option<String>,
    Option<TaintEffect>,
);

/// What the static filters of a workload depend on: workloads with equal keys pass and
/// fail the same nodes for the same reasons, so their [`Verdict`] is computed once per
/// session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FilterKey {
    residency: Option<CountrySet>,
    project: Option<CountrySet>,
    strict: bool,
    compliance: Vec<String>,
    os: Option<OsFamily>,
    arch: Option<Arch>,
    driver: Driver,
    windows: Option<(WindowsBuild, Isolation)>,
    tolerations: Vec<TolerationKey>,
    gpu: Option<(Option<String>, Option<u64>)>,
    exprs: Vec<api::MatchExpression>,
}

impl FilterKey {
    fn of(wl: &Compiled) -> FilterKey {
        FilterKey {
            residency: wl.residency.as_ref().map(|f| f.set),
            project: wl.project.as_ref().map(|(_, f)| f.set),
            strict: wl.strict,
            compliance: wl.compliance.clone(),
            os: wl.os,
            arch: wl.arch,
            driver: wl.driver,
            windows: wl.windows,
            tolerations: wl
                .tolerations
                .iter()
                .map(|t| (t.key.clone(), t.operator, t.value.clone(), t.effect))
                .collect(),
            gpu: wl.gpu.as_ref().map(|g| (g.model.clone(), g.memory)),
            exprs: wl.exprs.iter().map(|e| e.expr.clone()).collect(),
        }
    }
}

/// Which classes pass the static filters for a [`FilterKey`], and why the others'
/// nodes do not.
#[derive(Debug)]
struct Verdict {
    /// Classes that passed: id, nodes that passed, and whether per-node expressions
    /// must be checked node by node (their attributes differ within the class).
    passed: Vec<(ClassId, u32, bool)>,
    tally: Tally,
}

/// What the site filters depend on (a part of [`FilterKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SiteKey {
    residency: Option<CountrySet>,
    project: Option<CountrySet>,
    strict: bool,
    compliance: Vec<String>,
}

impl SiteKey {
    fn of(wl: &Compiled) -> SiteKey {
        SiteKey {
            residency: wl.residency.as_ref().map(|f| f.set),
            project: wl.project.as_ref().map(|(_, f)| f.set),
            strict: wl.strict,
            compliance: wl.compliance.clone(),
        }
    }
}

/// The first site filter each site fails for a [`SiteKey`], computed once per session.
fn site_memo(fleet: &Fleet, wl: &Compiled) -> Vec<Option<Reason>> {
    let mut buf = Vec::new();
    fleet
        .sites
        .iter()
        .map(|site| {
            buf.clear();
            filter::site_failures(site, wl, false, &mut buf);
            buf.pop()
        })
        .collect()
}

/// What the platform filters depend on (a part of [`FilterKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlatformKey {
    os: Option<OsFamily>,
    arch: Option<Arch>,
    driver: Driver,
    windows: Option<(WindowsBuild, Isolation)>,
    tolerations: Vec<TolerationKey>,
    gpu: Option<(Option<String>, Option<u64>)>,
}

impl PlatformKey {
    fn of(wl: &Compiled) -> PlatformKey {
        let f = FilterKey::of(wl);
        PlatformKey {
            os: f.os,
            arch: f.arch,
            driver: f.driver,
            windows: f.windows,
            tolerations: f.tolerations,
            gpu: f.gpu,
        }
    }
}

/// The first platform filter each class fails for a [`PlatformKey`], computed once per
/// session: an index into `reasons`, or `NONE`.
#[derive(Debug)]
struct PlatformMemo {
    first: Vec<u32>,
    reasons: Vec<Reason>,
}

fn platform_memo(fleet: &Fleet, wl: &Compiled) -> PlatformMemo {
    let mut ids: HashMap<Reason, u32> = HashMap::new();
    let mut reasons = Vec::new();
    let mut buf = Vec::new();
    let first = fleet
        .classes
        .iter()
        .map(|class| {
            buf.clear();
            filter::platform_failures(class, wl, false, &mut buf);
            match buf.pop() {
                None => NONE,
                Some(r) => *ids.entry(r).or_insert_with_key(|r| {
                    reasons.push(r.clone());
                    reasons.len() as u32 - 1
                }),
            }
        })
        .collect();
    PlatformMemo { first, reasons }
}

/// The static filters for one workload, over every class. Each class's nodes are
/// counted under the first filter the class fails, as [`filter::class_failures`] and
/// [`filter::node_failures`] would find it, but with the site filters evaluated once
/// per site and the platform filters and expressions looked up in the session's memos.
fn static_verdict(
    fleet: &Fleet,
    wl: &Compiled,
    memos: &Memos,
    platform: &PlatformMemo,
    sites: &[Option<Reason>],
) -> Verdict {
    let mut tally = Tally::default();
    let mut passed = Vec::new();
    let node_level = wl.exprs.iter().any(|e| e.attr.is_node_level());
    let mut excluded = 0u32;
    let mut platform_counts = vec![0u32; platform.reasons.len()];
    let mut expr_counts = vec![0u32; wl.exprs.len()];
    let mut expr_values: Vec<std::collections::BTreeSet<String>> =
        vec![Default::default(); wl.exprs.len()];
    // Values seen on failing classes, by id in the expression's memo.
    let mut seen: Vec<Vec<bool>> = memos
        .exprs
        .iter()
        .map(|m| vec![false; m.values.len()])
        .collect();
    let mut visit = |ci: ClassId, site_failed: bool, site_count: &mut u32, tally: &mut Tally| {
        let hot = &fleet.hot[ci as usize];
        excluded += hot.excluded;
        let rest = hot.nodes - hot.excluded;
        if rest == 0 {
            return;
        }
        if let Some(s) = filter::state_failure(hot.state) {
            tally.reject(&s, rest);
            return;
        }
        if hot.site == u32::MAX {
            let class = &fleet.classes[ci as usize];
            tally.reject(
                &Reason::UnknownSite(fleet.site_name_of_class(class).to_string()),
                rest,
            );
            return;
        }
        if site_failed {
            *site_count += rest;
            return;
        }
        let pf = platform.first[ci as usize];
        if pf != NONE {
            platform_counts[pf as usize] += rest;
            return;
        }
        let class = &fleet.classes[ci as usize];
        let m = |i: usize| memos.exprs[i][ci as usize];
        let class_level = (0..wl.exprs.len())
            .find(|&i| !wl.exprs[i].attr.is_node_level() && m(i) == ClassMatch::No);
        if let Some(i) = class_level {
            expr_counts[i] += rest;
            seen[i][memos.exprs[i].value[ci as usize] as usize] = true;
            return;
        }
        // Per-node expressions: once for the class when its nodes agree on their
        // attributes (pools share their labels), else node by node.
        let node_check = node_level && (0..wl.exprs.len()).any(|i| m(i) == ClassMatch::Mixed);
        if node_level && !node_check {
            let failed = (0..wl.exprs.len())
                .find(|&i| wl.exprs[i].attr.is_node_level() && m(i) == ClassMatch::No);
            if let Some(i) = failed {
                expr_counts[i] += rest;
                seen[i][memos.exprs[i].value[ci as usize] as usize] = true;
                return;
            }
        }
        let mut eligible = rest;
        if node_check {
            let mut out = Vec::new();
            for &n in &class.nodes {
                let node = &fleet.nodes[n as usize];
                if node.excluded {
                    continue;
                }
                out.clear();
                filter::node_failures(fleet, n, wl, false, &mut out);
                if let Some(Reason::Expression(i)) = out.first() {
                    expr_counts[*i] += 1;
                    let v = wl.exprs[*i].attr.value(fleet, class, Some(node));
                    expr_values[*i]
                        .insert(v.map_or_else(|| "absent".to_string(), |v| v.into_owned()));
                    eligible -= 1;
                }
            }
        }
        tally.pass(eligible);
        if eligible > 0 {
            passed.push((ci, eligible, node_check));
        }
    };
    for (failure, classes) in sites.iter().zip(&fleet.site_classes) {
        let mut count = 0;
        for &ci in classes {
            visit(ci, failure.is_some(), &mut count, &mut tally);
        }
        if let Some(r) = failure
            && count > 0
        {
            tally.reject(r, count);
        }
    }
    for &ci in &fleet.unknown_site_classes {
        visit(ci, false, &mut 0, &mut tally);
    }
    if excluded > 0 {
        tally.reject(&Reason::Excluded, excluded);
    }
    for (r, &n) in platform.reasons.iter().zip(&platform_counts) {
        if n > 0 {
            tally.reject(r, n);
        }
    }
    for (i, mut values) in expr_values.into_iter().enumerate() {
        if expr_counts[i] > 0 {
            for (v, s) in memos.exprs[i].values.iter().zip(&seen[i]) {
                if *s {
                    values.insert(v.clone());
                }
            }
            tally.reject(&Reason::Expression(i), expr_counts[i]).values = values;
        }
    }
    Verdict { passed, tally }
}

/// The static evaluation of one workload against every class: the filters'
/// [`Verdict`] (shared by workloads with the same [`FilterKey`]), then the static score
/// of every class that passed.
#[allow(clippy::too_many_arguments)]
fn build_plan(
    fleet: &Fleet,
    wl: &Compiled,
    wi: usize,
    wid: WorkloadId,
    w: &Weights,
    domains: &mut DomainMaps,
    memos: &Memos,
    verdict: &Verdict,
) -> Plan {
    let node_level = wl.exprs.iter().any(|e| e.attr.is_node_level());
    let (node_prefs, class_prefs): (Vec<usize>, Vec<usize>) =
        (0..wl.prefs.len()).partition(|&i| wl.prefs[i].1.iter().any(|e| e.attr.is_node_level()));
    let location: Option<u32> = wl
        .location
        .as_deref()
        .and_then(|l| fleet.site_by_name.get(l))
        .copied();
    let mut feasible: Vec<Feasible> = Vec::with_capacity(verdict.passed.len());
    // Untolerated `PreferNoSchedule` taints per taint set, as found.
    let mut untolerated: Vec<Option<usize>> = vec![None; fleet.taint_sets.len()];
    for &(ci, _, node_check) in &verdict.passed {
        let hot = &fleet.hot[ci as usize];
        let groups = wl
            .gpu
            .as_ref()
            .map(|g| filter::gpu_groups(&fleet.classes[ci as usize], g))
            .unwrap_or_default();
        let site = fleet.sites.get(hot.site as usize);
        let class_pref = |i: usize| {
            memos.prefs[i]
                .iter()
                .all(|m| m[ci as usize] == ClassMatch::Yes)
        };
        let mut score = StaticScore {
            preferences: class_prefs
                .iter()
                .filter(|&&i| class_pref(i))
                .map(|&i| wl.prefs[i].0 as f64)
                .sum(),
            locality: if location == Some(hot.site) {
                w.locality
            } else {
                0.0
            },
            taints: if hot.prefer_no_schedule {
                let set = hot.taint_set as usize;
                let n = *untolerated[set].get_or_insert_with(|| {
                    fleet.taint_sets[set]
                        .iter()
                        .filter(|t| {
                            t.effect == TaintEffect::PreferNoSchedule
                                && !wl.tolerations.iter().any(|tol| tol.tolerates(t))
                        })
                        .count()
                });
                -w.prefer_no_schedule * n as f64
            } else {
                -w.prefer_no_schedule * 0.0
            },
            gpu_avoidance: if wl.gpu.is_none() && hot.gpu_total > 0 {
                -w.gpu_avoidance
            } else {
                0.0
            },
            carbon_grams_per_kwh: site.and_then(|s| s.carbon),
            ..StaticScore::default()
        };
        score.cost_per_hour = site.and_then(|s| {
            let model = groups.first().map(|g| {
                fleet.classes[ci as usize].key.capacity.gpus[*g as usize]
                    .model
                    .as_str()
            });
            cost_per_hour(s, wl, model)
        });
        let uniform_prefs = node_prefs.iter().all(|&i| {
            memos.prefs[i]
                .iter()
                .all(|m| m[ci as usize] != ClassMatch::Mixed)
        });
        let (bonus, bonus_max) = if node_prefs.is_empty() {
            (Vec::new(), 0.0)
        } else if uniform_prefs {
            // Every node gets the same bonus: a class score.
            let b: f32 = node_prefs
                .iter()
                .filter(|&&i| class_pref(i))
                .map(|&i| wl.prefs[i].0 as f32)
                .sum();
            score.preferences += b as f64;
            (Vec::new(), 0.0)
        } else {
            let class = &fleet.classes[ci as usize];
            let bonus: Vec<f32> = class
                .nodes
                .iter()
                .map(|&n| {
                    let node = Some(&fleet.nodes[n as usize]);
                    node_prefs
                        .iter()
                        .map(|&i| &wl.prefs[i])
                        .filter(|(_, exprs)| exprs.iter().all(|e| e.matches(fleet, class, node)))
                        .map(|(weight, _)| *weight as f32)
                        .sum()
                })
                .collect();
            let bonus_max = bonus.iter().copied().fold(f32::MIN, f32::max);
            if bonus.iter().all(|b| *b == bonus_max) {
                // The same for every node: a class score.
                score.preferences += bonus_max as f64;
                (Vec::new(), 0.0)
            } else {
                (bonus, bonus_max)
            }
        };
        feasible.push(Feasible {
            class: ci,
            groups,
            score,
            total: 0.0,
            bonus,
            bonus_max,
            node_check,
            shares: StrategyBound::new(hot, wl, w.strategy),
        });
    }
    // Cost and carbon relative to the most expensive and dirtiest eligible site;
    // unknown counts as the worst.
    let max_cost = feasible
        .iter()
        .filter_map(|f| f.score.cost_per_hour)
        .fold(0.0, f64::max);
    let max_carbon = feasible
        .iter()
        .filter_map(|f| f.score.carbon_grams_per_kwh)
        .fold(0.0, f64::max);
    for f in &mut feasible {
        f.score.cost = match f.score.cost_per_hour {
            Some(c) if max_cost > 0.0 => -w.cost * c / max_cost,
            Some(_) => 0.0,
            None => -w.cost,
        };
        f.score.carbon = match f.score.carbon_grams_per_kwh {
            Some(c) if max_carbon > 0.0 => -w.carbon * c / max_carbon,
            Some(_) => 0.0,
            None => -w.carbon,
        };
        f.total = f.score.sum();
    }
    let mut by_class = vec![NONE; fleet.classes.len()];
    for (i, f) in feasible.iter().enumerate() {
        by_class[f.class as usize] = i as u32;
    }
    let spread = wl.spread.as_ref().map(|s| {
        if s.attr == Attr::NodeName {
            return SpreadState::Node;
        }
        let (per_node, domain, names) = domains
            .entry(s.key.clone())
            .or_insert_with(|| domain_map(fleet, &s.attr))
            .clone();
        let index = |n: NodeId| {
            if per_node {
                domain[n as usize]
            } else {
                domain[fleet.nodes[n as usize].class as usize]
            }
        };
        let mut counts = vec![0u32; names.len()];
        if let Some(on) = fleet.replicas_on.get(&wid) {
            for (&n, &c) in on {
                let d = index(n);
                if d != NONE {
                    counts[d as usize] += c;
                }
            }
        }
        let mut eligible = vec![false; names.len()];
        for f in &feasible {
            let class = &fleet.classes[f.class as usize];
            if per_node {
                for &n in &class.nodes {
                    let d = domain[n as usize];
                    if d != NONE && !fleet.nodes[n as usize].excluded && {
                        let mut v = Vec::new();
                        filter::node_failures(fleet, n, wl, false, &mut v);
                        v.is_empty()
                    } {
                        eligible[d as usize] = true;
                    }
                }
            } else if domain[f.class as usize] != NONE {
                eligible[domain[f.class as usize] as usize] = true;
            }
        }
        SpreadState::Domains {
            per_node,
            domain,
            names,
            counts,
            eligible,
        }
    });
    Plan {
        wl: wi,
        wid,
        feasible,
        by_class,
        node_level,
        spread,
        static_rejections: verdict.tally.rejections(fleet, wl),
        eligible: verdict.tally.passed,
        failed: None,
    }
}

/// The spread domains of an attribute: per class (or per node, for per-node
/// attributes), an id of its value, and the values.
fn domain_map(fleet: &Fleet, attr: &Attr) -> (bool, Arc<Vec<u32>>, Arc<Vec<String>>) {
    let per_node = attr.is_node_level();
    let mut ids: BTreeMap<String, u32> = BTreeMap::new();
    let mut names = Vec::new();
    let mut intern = |v: Option<std::borrow::Cow<'_, str>>| match v {
        None => NONE,
        Some(v) => *ids.entry(v.into_owned()).or_insert_with_key(|k| {
            names.push(k.clone());
            names.len() as u32 - 1
        }),
    };
    let domain: Vec<u32> = if per_node {
        fleet
            .nodes
            .iter()
            .map(|n| intern(attr.value(fleet, &fleet.classes[n.class as usize], Some(n))))
            .collect()
    } else {
        fleet
            .classes
            .iter()
            .map(|c| intern(attr.value(fleet, c, None)))
            .collect()
    };
    (per_node, Arc::new(domain), Arc::new(names))
}

/// What one instance costs per hour at a site, when the site prices what it uses.
fn cost_per_hour(
    site: &crate::fleet::SiteInfo,
    wl: &Compiled,
    gpu_model: Option<&str>,
) -> Option<f64> {
    let gpu = match (&wl.gpu, gpu_model) {
        (Some(g), Some(m)) => site.gpu_hour.get(m).map(|p| p * g.count as f64),
        _ => None,
    };
    if site.cpu_core_hour.is_none() && site.memory_gib_hour.is_none() && gpu.is_none() {
        return None;
    }
    let cpu = site.cpu_core_hour.unwrap_or(0.0) * wl.res[0] as f64 / 1000.0;
    let memory = site.memory_gib_hour.unwrap_or(0.0) * Memory(wl.res[1]).gib();
    Some(cpu + memory + gpu.unwrap_or(0.0))
}
