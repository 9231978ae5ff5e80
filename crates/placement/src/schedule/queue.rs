//! Queue admission inside a session: each queued job's queue, the queues' usage kept
//! current by every commit and release of the batch, and the bounds a job must fit
//! (see [`crate::queue`] for the accounting).

use api::queue::{QueueReason, QueueWait};

use super::quota::{Breach, QueueBreach};
use super::*;
use crate::fleet::Usage;
use crate::queue::{Queues, Res, Tally};

/// The session's view of the queues.
pub(crate) struct QueueView {
    pub queues: Arc<Queues>,
    /// Per batch workload: its queue, or why it cannot use the one it names; `None`
    /// for work outside queues.
    pub of: Vec<Option<Result<u32, QueueWait>>>,
    /// Per queue: what its jobs' allocations hold now, in all and per flavour.
    pub usage: Tally,
    /// The queue of each batch job, by workload id, and the flavour it is admitted
    /// into (recorded in its status, or chosen in this batch).
    by_wid: HashMap<WorkloadId, (u32, Option<u16>)>,
    /// Queues whose usage changed since [`Session::changed_queues`] last took them.
    changed: Vec<u32>,
}

impl QueueView {
    pub(crate) fn new(fleet: &mut Fleet, batch: &Batch, queues: &Arc<Queues>) -> QueueView {
        let mut of = Vec::with_capacity(batch.workloads.len());
        let mut by_wid = HashMap::new();
        for wl in &batch.workloads {
            let Some(name) = &wl.queue else {
                of.push(None);
                continue;
            };
            let ns = &wl.workload.namespace;
            let resolved = match queues.ids.get(name) {
                None => Err(QueueWait {
                    queue: name.clone(),
                    reason: QueueReason::QueueNotFound,
                    message: format!(
                        "queue {name} does not exist: create it (meridian get queues lists them) or name another in spec.queue"
                    ),
                    partially_admitted: None,
                }),
                Some(&id) => {
                    let q = &queues.list[id as usize];
                    if q.projects.is_empty() || q.projects.iter().any(|p| p == ns) {
                        let key = (ns.clone(), wl.workload.name.clone());
                        let flavor = queues
                            .assigned
                            .get(&key)
                            .and_then(|&(aq, f)| (aq == id).then_some(f).flatten());
                        by_wid.insert(fleet.intern_workload(ns, &wl.workload.name), (id, flavor));
                        Ok(id)
                    } else {
                        Err(QueueWait {
                            queue: name.clone(),
                            reason: QueueReason::ProjectNotAllowed,
                            message: format!(
                                "queue {name} admits jobs of projects {} only, not {ns}",
                                q.projects.join(", ")
                            ),
                            partially_admitted: None,
                        })
                    }
                }
            };
            of.push(Some(resolved));
        }
        // A job with allocations but no recorded flavour stays in the flavour of its
        // nodes (the first that matches one of them).
        for a in fleet.allocs.iter().flatten() {
            if let Some((q, f @ None)) = by_wid.get_mut(&a.workload) {
                *f = queues.list[*q as usize].flavor_of_node(fleet, a.node);
            }
        }
        let usage = crate::queue::usage_of(fleet, queues, &by_wid);
        QueueView {
            queues: queues.clone(),
            of,
            usage,
            by_wid,
            changed: Vec::new(),
        }
    }

    /// The queue and flavour whose usage allocation `a` counts in.
    fn queue_of(&self, fleet: &Fleet, a: &Alloc) -> Option<(u32, Option<u16>)> {
        crate::queue::queue_of(fleet, &self.queues, &self.by_wid, a)
    }

    /// Counts allocation `a` in (or out of) its queue's usage.
    pub(crate) fn count(&mut self, fleet: &Fleet, a: &Alloc, added: bool) {
        if let Some((q, f)) = self.queue_of(fleet, a) {
            self.usage
                .count(&self.queues, q, a, fleet.model_of_alloc(a), f, added);
            self.changed.push(q);
        }
    }
}

impl Session<'_> {
    // -- queues -------------------------------------------------------------------------

    /// Workload `wi`'s queue, when it has one it may use.
    pub(crate) fn queue_id(&self, wi: usize) -> Option<u32> {
        match self.queues.as_ref()?.of.get(wi)? {
            Some(Ok(q)) => Some(*q),
            _ => None,
        }
    }

    /// Why workload `wi` cannot use the queue it names (it does not exist, or does not
    /// admit its project).
    pub(crate) fn queue_refusal(&self, wi: usize) -> Option<&QueueWait> {
        match self.queues.as_ref()?.of.get(wi)? {
            Some(Err(w)) => Some(w),
            _ => None,
        }
    }

    /// The name of workload `wi`'s queue (named, or its project's default), if any.
    pub(crate) fn queue_name(&self, wi: usize) -> Option<&str> {
        self.wl(wi).queue.as_deref()
    }

    /// The flavours of workload `wi`'s queue (0 without flavours or a queue).
    pub(crate) fn queue_flavors(&self, wi: usize) -> u16 {
        match (self.queue_id(wi), self.queues.as_ref()) {
            (Some(q), Some(v)) => v.queues.list[q as usize].flavors.len() as u16,
            _ => 0,
        }
    }

    /// The `flavorFungibility` of job `wi`'s queue (Kueue's defaults outside a queue).
    pub(crate) fn fungibility(&self, wi: usize) -> api::queue::FlavorFungibility {
        match (self.queue_id(wi), self.queues.as_ref()) {
            (Some(q), Some(v)) => v.queues.list[q as usize].fungibility,
            _ => api::queue::FlavorFungibility::default(),
        }
    }

    /// Whether `members` instances of job `wi`, in the flavour it is being admitted into,
    /// would make its queue borrow from the cohort.
    pub(crate) fn would_borrow(&self, wi: usize, members: u64) -> bool {
        let (Some(q), Some(v)) = (self.queue_id(wi), self.queues.as_ref()) else {
            return false;
        };
        let request = self.request(wi, members);
        v.queues
            .would_borrow(q, &v.usage, &request, self.flavor[wi])
    }

    /// The flavour job `wi` is admitted into already (it holds allocations there, or
    /// its status records it): the only one its other instances may use.
    pub(crate) fn pinned_flavor(&self, wi: usize) -> Option<u16> {
        let v = self.queues.as_ref()?;
        let wl = &self.batch.workloads[wi];
        let wid = self
            .fleet
            .workload_ids
            .get(&(wl.workload.namespace.clone(), wl.workload.name.clone()))?;
        v.by_wid.get(wid)?.1
    }

    /// Admits workload `wi` into flavour `flavor` of its queue for what follows (its
    /// instances go to that flavour's nodes and count in its quota), or into none.
    pub(crate) fn set_flavor(&mut self, wi: usize, flavor: Option<u16>) {
        if self.flavor[wi] == flavor {
            return;
        }
        self.forget(wi);
        self.flavor[wi] = flavor;
        let wl = &self.batch.workloads[wi];
        let wid = self
            .fleet
            .intern_workload(&wl.workload.namespace, &wl.workload.name);
        if let Some(v) = self.queues.as_mut()
            && let Some(entry) = v.by_wid.get_mut(&wid)
        {
            entry.1 = flavor;
        }
    }

    /// The name of the flavour job `wi` is being admitted into.
    pub(crate) fn flavor_name(&self, wi: usize) -> Option<String> {
        let f = self.flavor[wi]?;
        let q = self.queue_id(wi)?;
        let v = self.queues.as_ref()?;
        Some(v.queues.list[q as usize].flavors[f as usize].name.clone())
    }

    /// Where flavour `f` of job `wi`'s queue applies, for notes.
    pub(crate) fn flavor_note(&self, wi: usize, f: u16) -> String {
        let (Some(q), Some(v)) = (self.queue_id(wi), self.queues.as_ref()) else {
            return String::new();
        };
        let queue = &v.queues.list[q as usize];
        let flavor = &queue.flavors[f as usize];
        format!(
            "flavor {} of queue {} ({}): placed on its nodes only",
            flavor.name, queue.name, flavor.describe
        )
    }

    /// The breach of queue bound `r` (of the queue as a whole, or of flavour `flavor`)
    /// by `requested` more (nothing requested breaches nothing).
    fn queue_check(&self, q: u32, flavor: Option<u16>, r: &Res, requested: u64) -> Option<Breach> {
        if requested == 0 {
            return None;
        }
        let view = self.queues.as_ref()?;
        let limit = view.queues.limit(q, flavor, r, &view.usage)?;
        let used = r.of(view.usage[q as usize].of(flavor));
        if used.saturating_add(requested) <= limit.limit {
            return None;
        }
        view.queues.breach(q, flavor, r, used, requested, limit)
    }

    /// The parts of workload `wi`'s queue it counts in: the whole, and the flavour it
    /// is being admitted into.
    fn queue_parts(&self, wi: usize) -> impl Iterator<Item = Option<u16>> {
        std::iter::once(None).chain(self.flavor[wi].map(Some))
    }

    /// What `members` instances of workload `wi` request, as a queue usage.
    pub(crate) fn request(&self, wi: usize, members: u64) -> Usage {
        let wl = self.wl(wi);
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        let mut u = Usage {
            cpu: wl.res[0] * members,
            memory: wl.res[1] * members,
            gpus,
            instances: members,
            by_model: BTreeMap::new(),
        };
        if let Some(model) = wl.gpu.as_ref().and_then(|g| g.model.clone()) {
            u.by_model.insert(model, gpus);
        }
        u
    }

    /// The first queue bound that `members` more instances of workload `wi` would break,
    /// of those known before choosing nodes: the queue's, then its flavour's.
    pub(super) fn queue_breach(&self, wi: usize, members: u64) -> Option<Breach> {
        let q = self.queue_id(wi)?;
        let wl = self.wl(wi);
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        self.queue_parts(wi).find_map(|f| {
            self.queue_check(q, f, &Res::Cpu, wl.res[0] * members)
                .or_else(|| self.queue_check(q, f, &Res::Memory, wl.res[1] * members))
                .or_else(|| self.queue_check(q, f, &Res::Gpus, gpus))
                .or_else(|| self.queue_check(q, f, &Res::Instances, members))
                .or_else(|| {
                    let model = wl.gpu.as_ref()?.model.as_ref()?;
                    self.queue_check(q, f, &Res::Model(model.clone()), gpus)
                })
        })
    }

    /// Whether workload `wi`'s queue (or flavour) bounds GPU models its request does
    /// not name.
    pub(super) fn queue_checks_models(&self, wi: usize) -> bool {
        let wl = self.wl(wi);
        wl.gpu.as_ref().is_some_and(|g| g.model.is_none())
            && self.queue_id(wi).is_some_and(|q| {
                self.queues.as_ref().expect("queued").queues.list[q as usize]
                    .bounds_models(self.flavor[wi])
            })
    }

    /// The breach of queue bound of `model` by `members` more instances of `wi`.
    pub(super) fn queue_model_breach(
        &self,
        wi: usize,
        model: &str,
        members: u64,
    ) -> Option<Breach> {
        let q = self.queue_id(wi)?;
        let wl = self.wl(wi);
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        self.queue_parts(wi)
            .find_map(|f| self.queue_check(q, f, &Res::Model(model.to_string()), gpus))
    }

    /// The queue's usage by model now, as a whole and in the job's flavour (for a
    /// gang's trial).
    pub(super) fn queue_models_used(&self, wi: usize) -> [BTreeMap<String, u64>; 2] {
        match (self.queue_id(wi), self.queues.as_ref()) {
            (Some(q), Some(v)) => {
                let held = &v.usage[q as usize];
                [
                    held.total.by_model.clone(),
                    self.flavor[wi]
                        .map(|f| held.of(Some(f)).by_model.clone())
                        .unwrap_or_default(),
                ]
            }
            _ => Default::default(),
        }
    }

    /// The per-model queue bound a gang's trial placement broke: usage rose above what
    /// the queue (or its flavour) may hold since `before`.
    pub(super) fn queue_trial_breach(
        &self,
        wi: usize,
        before: &[BTreeMap<String, u64>; 2],
    ) -> Option<Breach> {
        let q = self.queue_id(wi)?;
        let view = self.queues.as_ref()?;
        let queue = &view.queues.list[q as usize];
        self.queue_parts(wi).find_map(|part| {
            let before = &before[usize::from(part.is_some())];
            queue.bounds_in(part).iter().find_map(|(r, _)| {
                let Res::Model(model) = r else { return None };
                let was = before.get(model).copied().unwrap_or(0);
                let now = r.of(view.usage[q as usize].of(part));
                let added = now.saturating_sub(was);
                if added == 0 {
                    return None;
                }
                let limit = view.queues.limit(q, part, r, &view.usage)?;
                if now <= limit.limit {
                    return None;
                }
                view.queues.breach(q, part, r, was, added, limit)
            })
        })
    }

    /// The explanation of a job its queue refuses (unknown queue, project not
    /// admitted): every node counted under `queue`.
    pub(crate) fn queue_refused(&self, w: &QueueWait) -> Explanation {
        let nodes = self.fleet.nodes.len() as u32;
        Explanation {
            summary: format!("waiting in queue {}: {}", w.queue, w.message),
            nodes,
            evaluated: Evaluated::AllFilters,
            passed: 0,
            rejections: vec![Rejection {
                reason: ReasonCode::Queue,
                nodes,
                message: w.message.clone(),
            }],
            candidates: Vec::new(),
            suggestions: Vec::new(),
            notes: Vec::new(),
            queue: Some(w.clone()),
        }
    }

    /// The explanation of a job held behind its `StrictFIFO` queue's head.
    pub(crate) fn behind_head(&self, wi: usize, head: &WorkloadRef) -> Explanation {
        let queue = self.queue_name(wi).unwrap_or_default().to_string();
        self.queue_refused(&QueueWait {
            message: format!(
                "queue {queue} is StrictFIFO and its head {head} is not admitted yet; jobs behind it wait"
            ),
            queue,
            reason: QueueReason::BehindQueueHead,
            partially_admitted: None,
        })
    }

    /// Whether queued job `wi` may be admitted with `members` instances at once: the
    /// explanation of its wait when its project's or its queue's quota has no room for
    /// all of them (a job is admitted whole, as Kueue admits a workload).
    /// Whether job `wi` holds an allocation (it runs, partly at least).
    pub(crate) fn runs(&self, wi: usize) -> bool {
        let wl = self.wl(wi);
        let Some(wid) = self
            .fleet
            .workload_id(&wl.workload.namespace, &wl.workload.name)
        else {
            return false;
        };
        self.fleet
            .allocs
            .iter()
            .flatten()
            .any(|a| a.workload == wid)
    }

    pub(crate) fn queue_admission(&self, wi: usize, members: u64) -> Option<Explanation> {
        let b = self.quota_breach(wi, members)?;
        let note = format!(
            "all {members} pending instances of {} must fit at once",
            self.wl(wi).workload
        );
        Some(self.over_quota(wi, &b, vec![note]))
    }

    /// Queue preemption (`spec.preemption`): when job `wi` waits only for its queue's
    /// quota, evicts whole jobs until `members` instances of it fit: jobs of strictly
    /// lower priority in its own queue (`withinQueue: LowerPriority`); when what it
    /// lacks is its own nominal quota lent out, jobs of other queues of its cohort that
    /// borrow (`reclaimWithinCohort`: `Any`, or `LowerPriority`); and, with `fairSharing:
    /// LessThanOrEqualToFinalShare`, when its cohort has nothing left to lend, jobs of
    /// borrowing queues of its cohort whose weighted share stays at least its own
    /// (with this job admitted) after the eviction, from the queue of the highest share
    /// first (with `LessThanInitialShare`: whose share before the eviction is above its
    /// own; with `fairSharingStrategies`, each strategy in order, the jobs one refuses
    /// weighed again by the next). Lowest priority first, the newest allocations first among equals; a job
    /// goes whole, so a gang is preempted whole or not at all; with flavours, only jobs
    /// in the same flavour. Returns the evicted allocations with why (to give back with
    /// [`Session::restore`] if the job still does not fit), or `None`, evicting
    /// nothing, when no such set makes room.
    pub(crate) fn queue_preempt(
        &mut self,
        wi: usize,
        members: u64,
    ) -> Option<Vec<(Alloc, String)>> {
        use api::queue::{
            BorrowWithinCohortPolicy, FairSharingPreemption, ReclaimWithinCohort, WithinQueue,
        };
        let q = self.queue_id(wi)?;
        let flavor = self.flavor[wi];
        let view = self.queues.as_ref()?;
        let policy = view.queues.list[q as usize].preemption.clone();
        let strategies = policy.fair_sharing_strategies();
        let fair = !strategies.is_empty();
        let borrow = &policy.borrow_within_cohort;
        let borrow_lower = borrow.policy == BorrowWithinCohortPolicy::LowerPriority;
        if policy.within_queue == WithinQueue::Never
            && policy.reclaim_within_cohort == ReclaimWithinCohort::Never
            && !fair
            && !borrow_lower
        {
            return None;
        }
        let b = self.quota_breach(wi, members)?;
        let within_nominal = b.within_nominal()?;
        let pool_empty = b.queue_reason() == Some(QueueReason::WaitingForBorrowableQuota);
        let wl = self.wl(wi);
        let (priority, name) = (wl.priority, wl.workload.to_string());
        let queue_name = view.queues.list[q as usize].name.clone();
        // Queues of the same cohort tree share quota; a root per allocation, not a scan
        // of a tree of maybe a thousand queues.
        let root = view.queues.root_of(q);
        // Victim jobs: (priority, newest allocation, its allocations), classic (by
        // `withinQueue` or `reclaimWithinCohort`) or by fair sharing (with its queue).
        type Job = (i32, AllocId, Vec<AllocId>);
        let mut classic: HashMap<WorkloadId, (u32, Job)> = HashMap::new();
        let mut by_share: HashMap<WorkloadId, (u32, Job)> = HashMap::new();
        for (id, a) in self.fleet.allocs.iter().enumerate() {
            let Some(a) = a else { continue };
            let Some((qa, fa)) = view.queue_of(self.fleet, a) else {
                continue;
            };
            // With flavours, only the same flavour's quota is short.
            if flavor.is_some() && view.queues.same_part(q, flavor, qa) != Some(fa) {
                continue;
            }
            let (borrowing, peer) = (
                qa != q && view.queues.borrowing(qa, &view.usage),
                root.is_some() && view.queues.root_of(qa) == root,
            );
            let eligible = if qa == q {
                policy.within_queue == WithinQueue::LowerPriority && a.priority < priority
            } else if within_nominal {
                peer && borrowing
                    && match policy.reclaim_within_cohort {
                        ReclaimWithinCohort::Never => false,
                        ReclaimWithinCohort::Any => true,
                        ReclaimWithinCohort::LowerPriority => a.priority < priority,
                    }
            } else {
                // `borrowWithinCohort`: this job must borrow; lower-priority jobs of
                // borrowing peers go, up to the threshold.
                peer && borrowing
                    && borrow_lower
                    && a.priority < priority
                    && borrow
                        .max_priority_threshold
                        .is_none_or(|max| a.priority <= max)
            };
            let add = |e: &mut Job| {
                e.0 = e.0.min(a.priority);
                e.1 = e.1.max(id as AllocId);
                e.2.push(id as AllocId);
            };
            if eligible {
                add(&mut classic
                    .entry(a.workload)
                    .or_insert((qa, (a.priority, 0, Vec::new())))
                    .1);
            } else if fair && pool_empty && qa != q && peer && borrowing {
                add(&mut by_share
                    .entry(a.workload)
                    .or_insert((qa, (a.priority, 0, Vec::new())))
                    .1);
            }
        }
        if classic.is_empty() && by_share.is_empty() {
            return None;
        }
        let mut order: Vec<(u32, Job)> = classic.into_values().collect();
        order.sort_by(|(_, a), (_, b)| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut evicted = Vec::new();
        let reclaim = format!(
            "preempted by {name} (priority {priority}) to give queue {queue_name} back its quota"
        );
        let borrowing = format!(
            "preempted by {name} (priority {priority}), which borrows in its cohort (queue {queue_name}'s borrowWithinCohort: LowerPriority)"
        );
        for (qa, (_, _, allocs)) in order {
            let why = if qa != q && !within_nominal {
                &borrowing
            } else {
                &reclaim
            };
            for id in allocs {
                evicted.push((self.uncommit(id), why.clone()));
            }
            if self.quota_breach(wi, members).is_none() {
                return Some(evicted);
            }
        }
        // Fair sharing, each strategy in turn: from the queue of the highest share, the
        // job whose eviction the strategy allows; the jobs it does not allow are weighed
        // again by the next strategy.
        let request = self.request(wi, members);
        let mut candidates: Vec<(u32, Job)> = by_share.into_values().collect();
        for strategy in strategies {
            let initial_share = strategy == FairSharingPreemption::LessThanInitialShare;
            let mut refused = Vec::new();
            while !candidates.is_empty() {
                let view = self.queues.as_ref().expect("queued");
                let share = |p: u32| view.queues.weighted_share(p, &view.usage);
                let pick = (0..candidates.len())
                    .min_by(|&i, &j| {
                        let (a, b) = (&candidates[i], &candidates[j]);
                        share(b.0)
                            .cmp(&share(a.0))
                            .then(a.1.0.cmp(&b.1.0))
                            .then(b.1.1.cmp(&a.1.1))
                    })
                    .expect("a candidate");
                let (qa, (job_priority, newest, allocs)) = candidates.swap_remove(pick);
                let before = share(qa);
                let mut taken = Vec::with_capacity(allocs.len());
                for id in allocs {
                    taken.push(self.uncommit(id));
                }
                let view = self.queues.as_ref().expect("queued");
                let mine =
                    view.queues
                        .weighted_share_with(q, &view.usage, Some((&request, flavor)));
                let after = view.queues.weighted_share(qa, &view.usage);
                let fair_to_take = if initial_share {
                    mine < before
                } else {
                    mine <= after
                };
                if !fair_to_take {
                    // Not fair by this strategy: give it back (under new ids) for the next.
                    let ids = self.restore(taken.into_iter().map(|a| (a, String::new())).collect());
                    refused.push((qa, (job_priority, newest, ids)));
                    continue;
                }
                let other = view.queues.list[qa as usize].name.clone();
                let why = if initial_share {
                    format!(
                        "preempted by {name} (priority {priority}) for fair sharing (LessThanInitialShare): queue {queue_name}'s weighted share with it admitted ({mine}) is below queue {other}'s before the eviction ({before})"
                    )
                } else {
                    format!(
                        "preempted by {name} (priority {priority}) for fair sharing (LessThanOrEqualToFinalShare): queue {queue_name}'s weighted share with it admitted ({mine}) stays at most queue {other}'s after the eviction ({after})"
                    )
                };
                evicted.extend(taken.into_iter().map(|a| (a, why.clone())));
                if self.quota_breach(wi, members).is_none() {
                    return Some(evicted);
                }
            }
            candidates = refused;
        }
        self.restore(evicted);
        None
    }

    /// Gives back allocations [`Session::queue_preempt`] evicted.
    pub(crate) fn restore(&mut self, allocs: Vec<(Alloc, String)>) -> Vec<AllocId> {
        let mut ids = Vec::with_capacity(allocs.len());
        for (a, _) in allocs {
            let node = a.node;
            if let Some(q) = self.queues.as_mut() {
                q.count(self.fleet, &a, true);
            }
            let wid = a.workload;
            ids.push(self.fleet.insert_alloc(a));
            self.touched.push(node);
            if let Some(&wi) = self.plan_of_wid.get(&wid) {
                self.count_replica(wi, node, true);
            }
        }
        ids
    }

    /// What the allocations [`Session::queue_preempt`] evicted look like in a placement.
    pub(crate) fn queue_preemptions(&self, evicted: &[(Alloc, String)]) -> Vec<Preemption> {
        evicted
            .iter()
            .map(|(a, why)| Preemption {
                allocation: self.fleet.alloc_ref(a),
                reason: why.clone(),
            })
            .collect()
    }

    /// Queue `q`'s weighted share now, for ordering (see [`Queues::weighted_share`]).
    pub(crate) fn queue_share(&self, q: u32) -> u64 {
        self.queues
            .as_ref()
            .map_or(0, |v| v.queues.weighted_share(q, &v.usage))
    }

    /// Every cohort's weighted share among its siblings now (see
    /// [`Queues::cohort_share`]).
    pub(crate) fn cohort_shares(&self) -> Vec<u64> {
        self.queues.as_ref().map_or_else(Vec::new, |v| {
            (0..v.queues.cohorts.len() as u32)
                .map(|c| v.queues.cohort_share(c, &v.usage))
                .collect()
        })
    }

    /// The queues whose usage changed since the last call (each once), and the cohorts
    /// above them (whose shares that changes), taken.
    pub(crate) fn changed_queues(&mut self) -> (Vec<u32>, Vec<u32>) {
        let Some(v) = self.queues.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let mut queues = std::mem::take(&mut v.changed);
        queues.sort_unstable();
        queues.dedup();
        let mut cohorts: Vec<u32> = queues
            .iter()
            .flat_map(|&q| v.queues.cohort_path(q))
            .collect();
        cohorts.sort_unstable();
        cohorts.dedup();
        (queues, cohorts)
    }

    /// Cohort `c`'s weighted share among its siblings now.
    pub(crate) fn cohort_share(&self, c: u32) -> u64 {
        self.queues
            .as_ref()
            .map_or(0, |v| v.queues.cohort_share(c, &v.usage))
    }

    /// How many queues there are.
    pub(crate) fn queue_count(&self) -> usize {
        self.queues.as_ref().map_or(0, |v| v.queues.list.len())
    }

    /// Queue `q`'s cohorts from the root of its tree down (empty without a cohort).
    pub(crate) fn cohort_path(&self, q: u32) -> Vec<u32> {
        self.queues
            .as_ref()
            .map_or_else(Vec::new, |v| v.queues.cohort_path(q))
    }

    /// The strategy of queue `q`.
    pub(crate) fn queue_strategy(&self, q: u32) -> api::queue::QueueingStrategy {
        self.queues
            .as_ref()
            .map_or_else(Default::default, |v| v.queues.list[q as usize].strategy)
    }

    /// Marks an unplaceable explanation of a queued job: its queue had room, the fleet
    /// did not (`NoCapacity`), unless it already waits for its queue.
    pub(crate) fn tag_queue(&self, wi: usize, e: &mut Explanation) {
        if e.queue.is_some() {
            return;
        }
        if let Some(name) = self.queue_name(wi)
            && self.queue_id(wi).is_some()
        {
            e.queue = Some(QueueWait {
                queue: name.to_string(),
                reason: QueueReason::NoCapacity,
                message: format!(
                    "queue {name} has quota for it; no node can take it: {}",
                    e.summary
                ),
                partially_admitted: None,
            });
        }
    }
}

use api::explanation::WorkloadRef;

impl Queues {
    /// The breach of queue `q`'s bound on `r` (of the queue, or of its flavour
    /// `flavor`) when `used` and `requested` pass `limit`.
    pub(super) fn breach(
        &self,
        q: u32,
        flavor: Option<u16>,
        r: &Res,
        used: u64,
        requested: u64,
        limit: crate::queue::QueueLimit,
    ) -> Option<Breach> {
        let queue = &self.list[q as usize];
        let bound = queue.bound(flavor, r)?;
        Some(Breach::queue(
            r,
            used,
            requested,
            limit.limit,
            QueueBreach {
                queue: queue.name.clone(),
                flavor: queue.flavor_name(flavor).map(str::to_string),
                cohort: queue.cohort.clone(),
                reason: limit.reason,
                limited_by: limit.limited_by,
                nominal: bound.nominal,
                pool_left: limit.limit.saturating_sub(bound.guaranteed()),
            },
        ))
    }
}
