//! Explanations of unplaceable instances: every node counted under the first filter it
//! fails, capacity included, and the smallest changes that would make the instance fit
//! (the types are `api::explanation`'s; [`crate::explain`] words them).

use super::*;

impl Session<'_> {
    // -- explanations ---------------------------------------------------------------

    /// Every node under the first filter it fails, with the single changes that would
    /// make nodes fit.
    pub(super) fn full_tally(&self, wi: usize) -> Tally {
        let plan = self.plan(wi);
        let wl = self.wl(wi);
        let fleet = &*self.fleet;
        let min = self.spread_min(plan);
        let specials = fleet.replicas_on.get(&plan.wid);
        let gpu_count = wl.gpu.as_ref().map(|g| g.milli);
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
                    if let Err(r) = filter::ports_fit(fleet, n, &wl.port_need) {
                        dynamic.push(r);
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
                                agg.max_free = agg.max_free.max(filter::gpu_free(
                                    fleet,
                                    n,
                                    &groups,
                                    gpu_count.unwrap_or(0),
                                )
                                    as u64);
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

    pub(super) fn explain_unplaceable(&self, wi: usize, notes: Vec<String>) -> Explanation {
        let wl = self.wl(wi);
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
            queue: None,
        }
    }

    /// A full explanation without placing (what `meridian explain` shows).
    pub(crate) fn explain_only(&mut self, wi: usize) -> Explanation {
        if let Some(w) = self.queue_refusal(wi) {
            return self.queue_refused(&w.clone());
        }
        // A queue with flavours: the flavour the job holds, else the first where it
        // would be admitted, else its first; explained on that flavour's nodes.
        let n = self.queue_flavors(wi);
        if n > 0 {
            let tries: Vec<u16> = match self.pinned_flavor(wi) {
                Some(f) => vec![f],
                None => (0..n).collect(),
            };
            let fits = tries.iter().copied().find(|&f| {
                self.set_flavor(wi, Some(f));
                self.ensure_plan(wi);
                self.quota_breach(wi, 1).is_none() && !self.search(wi, None, 1).is_empty()
            });
            let f = fits.unwrap_or(tries[0]);
            self.set_flavor(wi, Some(f));
            let mut e = self.explain_in_place(wi);
            let how = if fits.is_some() {
                "would be admitted into"
            } else {
                "waits for"
            };
            e.notes
                .insert(0, format!("{how} {}", self.flavor_note(wi, f)));
            return e;
        }
        self.explain_in_place(wi)
    }

    /// [`Session::explain_only`] for the workload as it is (in its flavour, if set).
    fn explain_in_place(&mut self, wi: usize) -> Explanation {
        self.ensure_plan(wi);
        if let Some(b) = self.quota_breach(wi, 1) {
            return self.over_quota(wi, &b, Vec::new());
        }
        let cands = self.search(wi, None, self.k());
        if cands.is_empty() {
            let mut e = self.explain_unplaceable(wi, Vec::new());
            self.tag_queue(wi, &mut e);
            return e;
        }
        let tally = self.full_tally(wi);
        let wl = self.wl(wi);
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
            queue: None,
        }
    }
}
