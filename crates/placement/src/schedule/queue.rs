//! Queue admission inside a session: each queued job's queue, the queues' usage kept
//! current by every commit and release of the batch, and the bounds a job must fit
//! (see [`crate::queue`] for the accounting).

use api::queue::{QueueReason, QueueWait};

use super::quota::{Breach, QueueBreach};
use super::*;
use crate::fleet::Usage;
use crate::queue::{Queues, Res};

/// The session's view of the queues.
pub(crate) struct QueueView {
    pub queues: Arc<Queues>,
    /// Per batch workload: its queue, or why it cannot use the one it names; `None`
    /// for work outside queues.
    pub of: Vec<Option<Result<u32, QueueWait>>>,
    /// Per queue: what its jobs' allocations hold now.
    pub usage: Vec<Usage>,
    /// The queue of each batch job, by workload id.
    by_wid: HashMap<WorkloadId, u32>,
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
                }),
                Some(&id) => {
                    let q = &queues.list[id as usize];
                    if q.projects.is_empty() || q.projects.iter().any(|p| p == ns) {
                        by_wid.insert(fleet.intern_workload(ns, &wl.workload.name), id);
                        Ok(id)
                    } else {
                        Err(QueueWait {
                            queue: name.clone(),
                            reason: QueueReason::ProjectNotAllowed,
                            message: format!(
                                "queue {name} admits jobs of projects {} only, not {ns}",
                                q.projects.join(", ")
                            ),
                        })
                    }
                }
            };
            of.push(Some(resolved));
        }
        let usage = crate::queue::usage_of(fleet, queues, &by_wid);
        QueueView {
            queues: queues.clone(),
            of,
            usage,
            by_wid,
        }
    }

    /// The queue whose usage allocation `a` counts in.
    fn queue_of(&self, fleet: &Fleet, a: &Alloc) -> Option<u32> {
        self.by_wid.get(&a.workload).copied().or_else(|| {
            self.queues
                .assigned
                .get(&fleet.workload_names[a.workload as usize])
                .copied()
        })
    }

    /// Counts allocation `a` in (or out of) its queue's usage.
    pub(crate) fn count(&mut self, fleet: &Fleet, a: &Alloc, added: bool) {
        if let Some(q) = self.queue_of(fleet, a) {
            let model = fleet.model_of_alloc(a);
            let u = &mut self.usage[q as usize];
            if added {
                u.add(a, model);
            } else {
                u.remove(a, model);
            }
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
        self.batch.workloads[wi].queue.as_deref()
    }

    /// The breach of queue bound `r` by `requested` more (nothing requested breaches
    /// nothing).
    fn queue_check(&self, q: u32, r: &Res, requested: u64) -> Option<Breach> {
        if requested == 0 {
            return None;
        }
        let view = self.queues.as_ref()?;
        let (limit, reason) = view.queues.limit(q, r, &view.usage)?;
        let used = r.of(&view.usage[q as usize]);
        if used.saturating_add(requested) <= limit {
            return None;
        }
        let queue = &view.queues.list[q as usize];
        let bound = queue.bound(r)?;
        let pool_left = limit.saturating_sub(bound.guaranteed());
        Some(Breach::queue(
            r,
            used,
            requested,
            limit,
            QueueBreach {
                queue: queue.name.clone(),
                cohort: queue.cohort.clone(),
                reason,
                nominal: bound.nominal,
                pool_left,
            },
        ))
    }

    /// The first queue bound that `members` more instances of workload `wi` would break,
    /// of those known before choosing nodes.
    pub(super) fn queue_breach(&self, wi: usize, members: u64) -> Option<Breach> {
        let q = self.queue_id(wi)?;
        let wl = &self.batch.workloads[wi];
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        self.queue_check(q, &Res::Cpu, wl.res[0] * members)
            .or_else(|| self.queue_check(q, &Res::Memory, wl.res[1] * members))
            .or_else(|| self.queue_check(q, &Res::Gpus, gpus))
            .or_else(|| self.queue_check(q, &Res::Instances, members))
            .or_else(|| {
                let model = wl.gpu.as_ref()?.model.as_ref()?;
                self.queue_check(q, &Res::Model(model.clone()), gpus)
            })
    }

    /// Whether workload `wi`'s queue bounds GPU models its request does not name.
    pub(super) fn queue_checks_models(&self, wi: usize) -> bool {
        let wl = &self.batch.workloads[wi];
        wl.gpu.as_ref().is_some_and(|g| g.model.is_none())
            && self.queue_id(wi).is_some_and(|q| {
                self.queues.as_ref().expect("queued").queues.list[q as usize].bounds_models()
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
        let wl = &self.batch.workloads[wi];
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        self.queue_check(q, &Res::Model(model.to_string()), gpus)
    }

    /// The queue's usage by model now (for a gang's trial).
    pub(super) fn queue_models_used(&self, wi: usize) -> BTreeMap<String, u64> {
        match (self.queue_id(wi), self.queues.as_ref()) {
            (Some(q), Some(v)) => v.usage[q as usize].by_model.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// The per-model queue bound a gang's trial placement broke: usage rose above what
    /// the queue may hold since `before`.
    pub(super) fn queue_trial_breach(
        &self,
        wi: usize,
        before: &BTreeMap<String, u64>,
    ) -> Option<Breach> {
        let q = self.queue_id(wi)?;
        let view = self.queues.as_ref()?;
        let queue = &view.queues.list[q as usize];
        queue.bounds.iter().find_map(|(r, _)| {
            let Res::Model(model) = r else { return None };
            let was = before.get(model).copied().unwrap_or(0);
            let now = r.of(&view.usage[q as usize]);
            let added = now.saturating_sub(was);
            if added == 0 {
                return None;
            }
            // Judge against the usage before the trial: take the trial's part out.
            let (limit, reason) = view.queues.limit(q, r, &view.usage)?;
            (now > limit).then(|| {
                let bound = queue.bound(r).expect("bounded");
                Breach::queue(
                    r,
                    was,
                    added,
                    limit,
                    QueueBreach {
                        queue: queue.name.clone(),
                        cohort: queue.cohort.clone(),
                        reason,
                        nominal: bound.nominal,
                        pool_left: limit.saturating_sub(bound.guaranteed()),
                    },
                )
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
        })
    }

    /// Whether queued job `wi` may be admitted with `members` instances at once: the
    /// explanation of its wait when its project's or its queue's quota has no room for
    /// all of them (a job is admitted whole, as Kueue admits a workload).
    pub(crate) fn queue_admission(&self, wi: usize, members: u64) -> Option<Explanation> {
        let b = self.quota_breach(wi, members)?;
        let note = format!(
            "all {members} pending instances of {} must fit at once",
            self.batch.workloads[wi].workload
        );
        Some(self.over_quota(wi, &b, vec![note]))
    }

    /// Queue preemption (`spec.preemption`): when job `wi` waits only for its queue's
    /// quota, evicts whole jobs until `members` instances of it fit: jobs of strictly
    /// lower priority in its own queue (`withinQueue: LowerPriority`), or, when what it
    /// lacks is its own nominal quota lent out, jobs of other queues of its cohort that
    /// borrow (`reclaimWithinCohort`: `Any`, or `LowerPriority`). Lowest priority first,
    /// the newest allocations first among equals; a gang goes whole. Returns the evicted
    /// allocations (to give back with [`Session::restore`] if the job still does not
    /// fit), or `None`, evicting nothing, when no such set makes room.
    pub(crate) fn queue_preempt(&mut self, wi: usize, members: u64) -> Option<Vec<Alloc>> {
        use api::queue::{ReclaimWithinCohort, WithinQueue};
        let q = self.queue_id(wi)?;
        let view = self.queues.as_ref()?;
        let policy = view.queues.list[q as usize].preemption.clone();
        if policy.within_queue == WithinQueue::Never
            && policy.reclaim_within_cohort == ReclaimWithinCohort::Never
        {
            return None;
        }
        let b = self.quota_breach(wi, members)?;
        let within_nominal = b.within_nominal()?;
        let view = self.queues.as_ref()?;
        let priority = self.batch.workloads[wi].priority;
        let peers = view.queues.peers(q);
        let borrowing = |qa: u32| {
            let queue = &view.queues.list[qa as usize];
            queue
                .bounds
                .iter()
                .any(|(r, bound)| r.of(&view.usage[qa as usize]) > bound.nominal)
        };
        // Victim jobs: (priority, newest allocation, workload, its allocations).
        let mut jobs: HashMap<WorkloadId, (i32, AllocId, Vec<AllocId>)> = HashMap::new();
        for (id, a) in self.fleet.allocs.iter().enumerate() {
            let Some(a) = a else { continue };
            let Some(qa) = view.queue_of(self.fleet, a) else {
                continue;
            };
            let eligible = if qa == q {
                policy.within_queue == WithinQueue::LowerPriority && a.priority < priority
            } else {
                within_nominal
                    && peers.contains(&qa)
                    && borrowing(qa)
                    && match policy.reclaim_within_cohort {
                        ReclaimWithinCohort::Never => false,
                        ReclaimWithinCohort::Any => true,
                        ReclaimWithinCohort::LowerPriority => a.priority < priority,
                    }
            };
            if eligible {
                let e = jobs
                    .entry(a.workload)
                    .or_insert((a.priority, 0, Vec::new()));
                e.0 = e.0.min(a.priority);
                e.1 = e.1.max(id as AllocId);
                e.2.push(id as AllocId);
            }
        }
        if jobs.is_empty() {
            return None;
        }
        let mut order: Vec<(i32, AllocId, Vec<AllocId>)> = jobs.into_values().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut evicted = Vec::new();
        for (_, _, allocs) in order {
            for id in allocs {
                evicted.push(self.uncommit(id));
            }
            if self.quota_breach(wi, members).is_none() {
                return Some(evicted);
            }
        }
        self.restore(evicted);
        None
    }

    /// Gives back allocations [`Session::queue_preempt`] evicted.
    pub(crate) fn restore(&mut self, allocs: Vec<Alloc>) {
        for a in allocs {
            let node = a.node;
            if let Some(q) = self.queues.as_mut() {
                q.count(self.fleet, &a, true);
            }
            let wid = a.workload;
            self.fleet.insert_alloc(a);
            self.touched.push(node);
            if let Some(&wi) = self.plan_of_wid.get(&wid) {
                self.count_replica(wi, node, true);
            }
        }
    }

    /// What the allocations [`Session::queue_preempt`] evicted look like in a placement.
    pub(crate) fn queue_preemptions(&self, wi: usize, evicted: &[Alloc]) -> Vec<Preemption> {
        let wl = &self.batch.workloads[wi];
        let queue = self.queue_name(wi).unwrap_or_default();
        evicted
            .iter()
            .map(|a| Preemption {
                allocation: self.fleet.alloc_ref(a),
                reason: format!(
                    "preempted by {} (priority {}) to give queue {queue} back its quota",
                    wl.workload, wl.priority
                ),
            })
            .collect()
    }

    /// The weighted share of every queue now, for ordering (see
    /// [`Queues::weighted_share`]).
    pub(crate) fn queue_share(&self, q: u32) -> u64 {
        self.queues
            .as_ref()
            .map_or(0, |v| v.queues.weighted_share(q, &v.usage))
    }

    /// The queues whose weighted share a change of queue `q`'s usage can change: its
    /// cohort (itself included).
    pub(crate) fn queue_cohort(&self, q: u32) -> Vec<u32> {
        match self.queues.as_ref() {
            Some(v) if v.queues.list[q as usize].cohort.is_some() => v.queues.peers(q).to_vec(),
            _ => vec![q],
        }
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
            });
        }
    }
}

use api::explanation::WorkloadRef;
