//! Gangs: every member placed or none, one site preferred; members are tried on a copy of
//! the accounting and rolled back when the gang does not fit whole. A gang is admitted
//! only when all its members fit the project's quota at once.

use super::*;

impl Session<'_> {
    // -- gangs --------------------------------------------------------------------------

    /// Places `replicas` one by one within `restrict`; returns what was placed.
    pub(super) fn trial(
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

    /// Tries each group (a site, a topology domain, a GPU model) for every member and
    /// returns the best-scoring group that takes them all, and the most members any
    /// group took.
    fn best_group(
        &mut self,
        wi: usize,
        replicas: &[u32],
        groups: &[Restrict],
        checks_models: bool,
        models_before: &quota::ModelsUsed,
        quota_blocked: &mut Option<quota::Breach>,
    ) -> (Option<(f64, Restrict)>, usize) {
        let mut best: Option<(f64, Restrict)> = None;
        let mut most_in_one = 0usize;
        for r in groups {
            let (placed, total) = self.trial(wi, replicas, Some(r), 1);
            let mut ok = placed.len() == replicas.len();
            if ok
                && checks_models
                && let Some(b) = self.trial_breach(wi, models_before)
            {
                ok = false;
                quota_blocked.get_or_insert(b);
            }
            most_in_one = most_in_one.max(placed.len());
            self.rollback(placed);
            if ok && best.as_ref().is_none_or(|(t, _)| total > *t) {
                best = Some((total, r.clone()));
            }
        }
        (best, most_in_one)
    }

    pub(super) fn rollback(&mut self, placed: Vec<(AllocId, Cand, Vec<Cand>)>) {
        for (id, _, _) in placed.into_iter().rev() {
            self.uncommit(id);
        }
    }

    /// Places a gang all-or-nothing: in one site (and one GPU model when the request
    /// names none) if any can take every member, the best-scoring such group winning;
    /// else across sites with one GPU model; else across everything; else nowhere.
    pub(crate) fn place_gang(&mut self, wi: usize, replicas: &[u32]) -> Vec<Outcome> {
        self.ensure_plan(wi);
        let wl = self.wl(wi);
        let size = wl.gang.unwrap_or(replicas.len() as u32);
        // Quota for every member at once: a gang never holds part of its quota.
        if let Some(b) = self.quota_breach(wi, replicas.len() as u64) {
            let note = format!(
                "gang of {size}: all {} members must fit project {}'s quota at once",
                replicas.len(),
                wl.workload.namespace
            );
            let e = self.over_quota(wi, &b, vec![note]);
            return replicas
                .iter()
                .map(|_| Outcome::Unplaceable(e.clone()))
                .collect();
        }
        let checks_models = self.checks_models(wi);
        let models_before = if checks_models {
            self.models_used(wi)
        } else {
            Default::default()
        };
        let mut quota_blocked = None;
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
                    domain: None,
                };
                if !groups.contains(&r) {
                    groups.push(r);
                }
            }
        }

        // Topology: every member in one domain of `placement.topology.level`; the
        // groups to try are the domains (with a GPU model each when the request names
        // none) instead of the sites.
        let topology = wl.topology.clone();
        let site_groups = match &topology {
            Some((key, attr, _)) => {
                let (per_node, map, names) = plan::domain_map(fleet, attr);
                let mut domains: Vec<Restrict> = Vec::new();
                for &fi in &order {
                    let f = &plan.feasible[fi as usize];
                    let class = &fleet.classes[f.class as usize];
                    let mut ids: Vec<u32> = if per_node {
                        class.nodes.iter().map(|n| map[*n as usize]).collect()
                    } else {
                        vec![map[f.class as usize]]
                    };
                    ids.sort_unstable();
                    ids.dedup();
                    let class_models: Vec<Option<String>> = if by_model {
                        f.groups
                            .iter()
                            .map(|g| Some(class.key.capacity.gpus[*g as usize].model.clone()))
                            .collect()
                    } else {
                        vec![None]
                    };
                    for id in ids.into_iter().filter(|id| *id != NONE) {
                        for model in &class_models {
                            let r = Restrict {
                                site: None,
                                model: model.clone(),
                                domain: Some(TopoDomain {
                                    key: key.clone(),
                                    name: names[id as usize].clone(),
                                    map: map.clone(),
                                    per_node,
                                    id,
                                }),
                            };
                            if !domains.contains(&r) {
                                domains.push(r);
                            }
                        }
                    }
                }
                Some(std::mem::replace(&mut groups, domains))
            }
            None => None,
        };

        let (mut best, mut most_in_one) = self.best_group(
            wi,
            replicas,
            &groups,
            checks_models,
            &models_before,
            &mut quota_blocked,
        );
        if best.is_none()
            && let Some((key, _, required)) = &topology
        {
            if *required {
                let note = format!(
                    "gang of {size}: placement.topology requires all {} members in one {key}; at most {most_in_one} fit in one",
                    replicas.len()
                );
                let mut e = self.explain_unplaceable(wi, vec![note]);
                e.summary = format!("gang cannot be placed in one {key}: {}", e.summary);
                return replicas
                    .iter()
                    .map(|_| Outcome::Unplaceable(e.clone()))
                    .collect();
            }
            // Preferred: no domain can take them all; place as a gang goes without it.
            let sites = site_groups.unwrap_or_default();
            (best, most_in_one) = self.best_group(
                wi,
                replicas,
                &sites,
                checks_models,
                &models_before,
                &mut quota_blocked,
            );
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
                        domain: None,
                    })
                })
                .collect();
            fallbacks.push(None);
            for r in fallbacks {
                let (placed, _) = self.trial(wi, replicas, r.as_ref(), 1);
                let mut ok = placed.len() == replicas.len();
                if ok
                    && checks_models
                    && let Some(b) = self.trial_breach(wi, &models_before)
                {
                    ok = false;
                    quota_blocked.get_or_insert(b);
                }
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
                    .map(|(id, best, cands)| {
                        Outcome::Placed(Box::new(self.placement(
                            wi,
                            *id,
                            best,
                            cands,
                            Vec::new(),
                            vec![note.clone()],
                        )))
                    })
                    .collect()
            }
            None => {
                if let Some(b) = &quota_blocked {
                    // Nodes had room, but only for GPUs of models over their bound.
                    let note = format!(
                        "gang of {size}: all {} members must fit project {}'s quota at once; where they fit, their GPU model's bound does not allow them",
                        replicas.len(),
                        self.wl(wi).workload.namespace
                    );
                    let e = self.over_quota(wi, b, vec![note]);
                    return replicas
                        .iter()
                        .map(|_| Outcome::Unplaceable(e.clone()))
                        .collect();
                }
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
