//! The search for the best nodes of one instance: classes visited best bound first and
//! abandoned when their bound cannot beat the candidates found (branch and bound, so the
//! answer is the one scoring every node would give); nodes within a class walked by
//! utilisation; the kept candidates of the last search ([`Cache`]) brought up to date
//! with the nodes that changed.

use super::*;

impl Session<'_> {
    // -- search --------------------------------------------------------------------

    /// Smallest replica count over the eligible spread domains.
    pub(super) fn spread_min(&self, plan: &Plan) -> u32 {
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
                let wl = self.wl(plan.wl);
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
    pub(super) fn node_eligible(&self, plan: &Plan, wl: &Compiled, n: NodeId) -> bool {
        let node = &self.fleet.nodes[n as usize];
        let fi = plan.by_class[node.class as usize];
        fi != NONE && !node.excluded && self.node_passes(&plan.feasible[fi as usize], wl, n)
    }

    /// The verdict for domain `d`: the spread score, or why it is refused.
    pub(super) fn domain_spread(&self, plan: &Plan, d: u32, min: u32) -> Result<f64, Reason> {
        let (Some(SpreadState::Domains { names, counts, .. }), Some(s)) =
            (&plan.spread, &self.wl(plan.wl).spread)
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
    pub(super) fn class_spread(
        &self,
        plan: &Plan,
        class: ClassId,
        min: u32,
    ) -> Result<f64, Reason> {
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
    pub(super) fn node_spread(
        &self,
        plan: &Plan,
        n: NodeId,
        count: u32,
        min: u32,
    ) -> Result<f64, Reason> {
        let wl = self.wl(plan.wl);
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

    /// Whether a workload's strategy score is the fragmentation one: GPU work placed
    /// with binpack, when fragmentation scoring is on (a mix to measure against).
    pub(super) fn by_fragmentation(&self, wl: &Compiled) -> bool {
        !self.mix.is_empty() && wl.gpu.is_some() && wl.strategy == Strategy::Binpack
    }

    /// Whether work without GPUs placed with binpack pays for the GPUs it strands on GPU
    /// nodes (the cpu and memory it takes may leave the node's GPUs unusable for the
    /// mix), when fragmentation scoring is on.
    pub(super) fn strands_gpus(&self, wl: &Compiled) -> bool {
        !self.mix.is_empty() && wl.gpu.is_none() && wl.strategy == Strategy::Binpack
    }

    /// The strategy score of one more instance of `wl` on node `n` of `class`, holding
    /// `gpu` (the group and milli-GPUs [`filter::fit`] chose).
    pub(super) fn strategy_score(
        &self,
        wl: &Compiled,
        class: &Class,
        n: NodeId,
        gpu: Option<(u8, u32)>,
    ) -> f64 {
        let node = &self.fleet.nodes[n as usize];
        let cap = &class.key.capacity;
        if let (true, Some((group, milli))) = (self.by_fragmentation(wl), gpu) {
            // Fragmentation gradient descent: the smaller the rise of the node's
            // fragmentation, the higher the score, within 0..=strategy; among nodes
            // where it rises alike, the fuller (best fit) by a small margin.
            let d = crate::frag::delta(&self.mix, cap, node, &wl.res, group, milli);
            let w = self.opts.weights.strategy;
            let descent = (0.5 - d / (2.0 * self.frag_scale)).clamp(0.0, 1.0);
            let fit = self.utilisation(wl, class, n);
            return w * ((1.0 - TIE_BREAK) * descent + TIE_BREAK * fit);
        }
        // Work without GPUs on a GPU node: the binpack score less what it strands (the
        // rise of fragmentation, never negative for work that takes no GPU), so it is
        // still at most the binpack score the search bounds it by.
        let stranding = if !cap.gpus.is_empty() && self.strands_gpus(wl) {
            let d = crate::frag::delta(&self.mix, cap, node, &wl.res, 0, 0);
            self.opts.weights.strategy * d.max(0.0) / self.frag_scale
        } else {
            0.0
        };
        let util = self.utilisation(wl, class, n);
        let w = self.opts.weights.strategy;
        match wl.strategy {
            Strategy::Binpack => (w * util - stranding).max(0.0),
            Strategy::Spread => w * (1.0 - util),
        }
    }

    /// Mean utilisation of cpu, memory and GPUs of node `n` after one more instance.
    fn utilisation(&self, wl: &Compiled, class: &Class, n: NodeId) -> f64 {
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
        let total = cap.gpu_milli_total();
        if total > 0 {
            let used: u32 = node.gpu_used.iter().sum();
            let req = wl.gpu.as_ref().map_or(0, |g| g.milli);
            sum += (used + req) as f64 / total as f64;
            dims += 1;
        }
        if dims == 0 { 0.0 } else { sum / dims as f64 }
    }

    /// GPU groups of a feasible class that a restriction allows.
    pub(super) fn groups_for(
        &self,
        f: &Feasible,
        class: &Class,
        restrict: Option<&Restrict>,
    ) -> Vec<u8> {
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

    pub(super) fn class_allowed(&self, class: &Class, restrict: Option<&Restrict>) -> bool {
        restrict
            .and_then(|r| r.site)
            .is_none_or(|s| class.key.site == Ok(s))
    }

    /// Per-node preference bonus (preferences on labels and other per-node keys).
    pub(super) fn bonus(&self, f: &Feasible, n: NodeId) -> f64 {
        if f.bonus.is_empty() {
            0.0
        } else {
            f.bonus[self.fleet.nodes[n as usize].pos as usize] as f64
        }
    }

    /// Whether a node passes the per-node static filters (`node.name`, labels, security
    /// facts).
    pub(super) fn node_passes(&self, f: &Feasible, wl: &Compiled, n: NodeId) -> bool {
        !f.node_check || {
            let mut v = Vec::new();
            filter::node_failures(self.fleet, n, wl, false, &mut v);
            v.is_empty()
        }
    }

    /// The best `k` nodes for one more instance of the plan's workload, best first.
    pub(super) fn search(&self, wi: usize, restrict: Option<&Restrict>, k: usize) -> Vec<Cand> {
        let plan = self.plan(wi);
        let wl = self.wl(wi);
        let fleet = &*self.fleet;
        let specials = fleet.replicas_on.get(&plan.wid).filter(|m| !m.is_empty());
        let min = self.spread_min(plan);
        let gpu_count = wl.gpu.as_ref().map(|g| g.milli);
        // Fragmentation scores do not follow utilisation: every node of a class is
        // bounded by the largest strategy score, and visited.
        let fragmentation = self.by_fragmentation(wl);
        let strands = self.strands_gpus(wl);
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
                || restrict.is_some_and(|r| !r.allows_class(f.class))
                || wl.res[0] > hot.cpu
                || wl.res[1] > hot.memory
            {
                continue;
            }
            let Ok(spread) = self.class_spread(plan, f.class, min) else {
                continue;
            };
            let strategy_max = match wl.strategy {
                _ if fragmentation => self.opts.weights.strategy,
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
                && !groups
                    .iter()
                    .any(|&g| cap.gpus[g as usize].count.saturating_mul(MILLI) >= c)
            {
                continue;
            }
            let Ok(spread) = self.class_spread(plan, f.class, min) else {
                continue;
            };
            let shares = f.shares;
            // Work without GPUs on GPU nodes: scores below binpack's by what each node
            // strands, so no utilisation order: every node is visited.
            let visit_all = fragmentation || (strands && !cap.gpus.is_empty());
            let base = f.total + spread;
            let per_node = per_node || f.node_check || !f.bonus.is_empty();
            let extra_max = f.bonus_max as f64;
            // Evaluates one node whose strategy score is at most `strategy_max`; returns
            // its per-node extras (preference bonus and spread) when it fits.
            let visit = |top: &mut Vec<Cand>, n: NodeId, strategy_max: f64| -> Option<f64> {
                // Whether it fits first: the cheapest test, and the one that most
                // often fails on the fullest nodes.
                let gpu = filter::fit(fleet, n, &wl.res, gpu_count, &groups, &wl.port_need).ok()?;
                let node = &fleet.nodes[n as usize];
                if node.excluded
                    || specials.is_some_and(|m| m.contains_key(&n))
                    || restrict.is_some_and(|r| !r.allows_node(fleet, n))
                {
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
                let strategy = self.strategy_score(wl, class, n, gpu);
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
                _ if visit_all => {
                    let strategy_max = if fragmentation {
                        self.opts.weights.strategy
                    } else {
                        shares.binpack_max(fleet.hot[f.class as usize].max_key)
                    };
                    if kth(&top).is_some_and(|t| base + extra_max + strategy_max < t) {
                        continue;
                    }
                    // Nodes nobody uses (utilisation key 0, first in the index, in name
                    // order) are in the same state and score alike unless per-node
                    // extras tell them apart: past the first `k` that fit, none can
                    // enter the list.
                    let mut empty_fits = 0usize;
                    for &(key, n) in &class.index {
                        if key == 0 && !per_node && empty_fits >= k {
                            continue;
                        }
                        if visit(&mut top, n, strategy_max).is_some() && key == 0 {
                            empty_fits += 1;
                        }
                    }
                }
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
                if !self.class_allowed(class, restrict)
                    || restrict.is_some_and(|r| !r.allows_node(fleet, n))
                    || !self.node_passes(f, wl, n)
                {
                    continue;
                }
                let (Ok(s1), Ok(s2)) = (
                    self.class_spread(plan, f.class, min),
                    self.node_spread(plan, n, count, min),
                ) else {
                    continue;
                };
                let groups = self.groups_for(f, class, restrict);
                if let Ok(gpu) = filter::fit(fleet, n, &wl.res, gpu_count, &groups, &wl.port_need) {
                    let strategy = self.strategy_score(wl, class, n, gpu);
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
    pub(super) fn rescore(&self, plan: &Plan, wl: &Compiled, n: NodeId, min: u32) -> Option<Cand> {
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
            wl.gpu.as_ref().map(|g| g.milli),
            &f.groups,
            &wl.port_need,
        )
        .ok()?;
        let strategy = self.strategy_score(wl, class, n, gpu);
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
    pub(super) fn best(&mut self, wi: usize, k: usize) -> Vec<Cand> {
        let cache = self.cache.take();
        let plan = self.plan(wi);
        let min = self.spread_min(plan);
        if let Some(mut c) = cache
            && c.wi == wi
            && c.release_gen == self.release_gen
            && c.min == min
            && self.touched.len() - c.seen <= CACHE_CHANGES
        {
            let wl = self.wl(wi);
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

/// The share of the fragmentation score that is best fit (a tie-break between nodes
/// whose fragmentation rises alike).
const TIE_BREAK: f64 = 0.01;

/// Candidates kept between searches for one workload.
const CACHE_K: usize = 16;
/// Beyond this many node changes since the last search, search again from scratch.
const CACHE_CHANGES: usize = 256;

/// How many classes a search orders first by their bound (the rest only if needed).
pub(super) const FIRST_CLASSES: usize = 32;

/// Upper bounds of the strategy score of the nodes of one class from their
/// utilisation key (the key is rounded down, so the bounds allow one unit per
/// dimension).
#[derive(Debug, Clone, Copy)]
pub(super) struct StrategyBound {
    weight: f64,
    dims: f64,
    /// Sum over dimensions of request / capacity.
    request: f64,
}

impl StrategyBound {
    pub(super) fn new(cap: &crate::fleet::ClassHot, wl: &Compiled, weight: f64) -> Self {
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
        let total = cap.gpu_total.saturating_mul(MILLI);
        if total > 0 {
            dims += 1.0;
            request += wl.gpu.as_ref().map_or(0, |g| g.milli) as f64 / total as f64;
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
pub(super) fn binpack_bound(class: &Class, wl: &Compiled) -> u64 {
    let cap = &class.key.capacity;
    let mut k: u128 = 0;
    if cap.cpu > 0 {
        k += (cap.cpu - wl.res[0].min(cap.cpu)) as u128 * UTIL_SCALE / cap.cpu as u128;
    }
    if cap.memory > 0 {
        k += (cap.memory - wl.res[1].min(cap.memory)) as u128 * UTIL_SCALE / cap.memory as u128;
    }
    let total = cap.gpu_milli_total();
    if total > 0 {
        let req = wl.gpu.as_ref().map_or(0, |g| g.milli).min(total);
        k += (total - req) as u128 * UTIL_SCALE / total as u128;
    }
    u64::try_from(k).unwrap_or(u64::MAX)
}
