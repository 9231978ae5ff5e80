//! The static evaluation of a workload, once per batch however many replicas it has:
//! which classes pass the static filters ([`super::memo`]) and the static part of their
//! score (cost, carbon, locality, preferences, `PreferNoSchedule` taints), and its spread
//! domains.

use super::*;

impl Session<'_> {
    // -- static evaluation, once per workload -----------------------------------------

    pub(super) fn ensure_plan(&mut self, wi: usize) {
        if self.plans[wi].is_none() {
            let wl = self.wl(wi);
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
}

/// The static evaluation of one workload against every class: the filters'
/// [`Verdict`] (shared by workloads with the same [`FilterKey`]), then the static score
/// of every class that passed.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_plan(
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
pub(super) fn domain_map(fleet: &Fleet, attr: &Attr) -> (bool, Arc<Vec<u32>>, Arc<Vec<String>>) {
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
pub(super) fn cost_per_hour(
    site: &crate::fleet::SiteInfo,
    wl: &Compiled,
    gpu_model: Option<&str>,
) -> Option<f64> {
    let gpu = match (&wl.gpu, gpu_model) {
        (Some(g), Some(m)) => site
            .gpu_hour
            .get(m)
            .map(|p| p * g.milli as f64 / MILLI as f64),
        _ => None,
    };
    if site.cpu_core_hour.is_none() && site.memory_gib_hour.is_none() && gpu.is_none() {
        return None;
    }
    let cpu = site.cpu_core_hour.unwrap_or(0.0) * wl.res[0] as f64 / 1000.0;
    let memory = site.memory_gib_hour.unwrap_or(0.0) * Memory(wl.res[1]).gib();
    Some(cpu + memory + gpu.unwrap_or(0.0))
}
