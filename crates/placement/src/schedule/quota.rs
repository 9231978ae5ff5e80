//! Project quotas: an instance, or a whole gang at once, is placed only if its project's
//! usage plus what it requests stays within every bound of `Project.spec.quota`.
//!
//! Usage is the fleet's ([`crate::fleet::Usage`]): every allocation the snapshot accounts
//! for, and every placement and preemption of this batch as it happens, so one batch
//! cannot overshoot a quota however many of the project's instances it places. A bound
//! already exceeded (the quota was lowered) evicts nothing: it only keeps new work that
//! needs more of that resource waiting. Work that needs none of a resource (no GPUs)
//! is not held back by that resource's bound.
//!
//! GPUs count under the model of the node that holds them. A request that names a model
//! is checked against that model's bound before anything is searched; one that names
//! none may land on any model, so each candidate is checked against the bound of its
//! node's model (and the gang as a whole after its trial placement).

use super::*;

/// How a bound's quantities are written in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Cpu,
    Memory,
    Count,
    /// Milli-GPUs, shown as GPUs (`0.25`).
    Gpu,
}

/// One bound of a project's quota, or of a job's queue, that a placement would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Breach {
    /// `cpu`, `memory`, `gpus`, `instances`, or `H100 gpus`.
    resource: String,
    unit: Unit,
    used: u64,
    requested: u64,
    limit: u64,
    /// Set when the bound is the job's queue's, not its project's.
    queue: Option<QueueBreach>,
}

/// Which queue rule a breach is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QueueBreach {
    pub queue: String,
    /// The flavour whose bound it is (`None`: the queue's own `quota`).
    pub flavor: Option<String>,
    pub cohort: Option<String>,
    pub reason: api::queue::QueueReason,
    /// The cohort whose `borrowingLimit` binds (`OverBorrowingLimit` of a cohort).
    pub limited_by: Option<String>,
    pub nominal: u64,
    /// What the cohort's pool leaves the queue beyond what it keeps.
    pub pool_left: u64,
}

impl Breach {
    /// For a queue's bound: whether the job's queue would stay within its nominal
    /// quota of the resource (so what it lacks is lent out, and may be reclaimed).
    pub(super) fn within_nominal(&self) -> Option<bool> {
        let q = self.queue.as_ref()?;
        Some(self.used.saturating_add(self.requested) <= q.nominal)
    }

    /// The queue rule broken, for a queue's bound.
    pub(super) fn queue_reason(&self) -> Option<api::queue::QueueReason> {
        self.queue.as_ref().map(|q| q.reason)
    }

    /// A breach of a queue's bound on `r`.
    pub(super) fn queue(
        r: &crate::queue::Res,
        used: u64,
        requested: u64,
        limit: u64,
        queue: QueueBreach,
    ) -> Breach {
        use crate::queue::Res;
        Breach {
            resource: r.label(),
            unit: match r {
                Res::Cpu => Unit::Cpu,
                Res::Memory => Unit::Memory,
                Res::Instances => Unit::Count,
                Res::Gpus | Res::Model(_) => Unit::Gpu,
            },
            used,
            requested,
            limit,
            queue: Some(queue),
        }
    }

    /// Why a queued job waits, in words and as its typed reason.
    fn queue_wait(&self, q: &QueueBreach) -> api::queue::QueueWait {
        use api::queue::QueueReason as R;
        let name = match &q.flavor {
            Some(f) => format!("{} (flavor {f})", q.queue),
            None => q.queue.clone(),
        };
        let res = &self.resource;
        let cohort = q.cohort.as_deref().unwrap_or_default();
        let want = self.used.saturating_add(self.requested);
        let sums = format!(
            "{} used + {} requested > {}",
            self.show(self.used),
            self.show(self.requested),
            self.show(self.limit)
        );
        let message = match q.reason {
            R::OverBorrowingLimit if q.limited_by.is_some() => format!(
                "queue {name} needs to borrow {} {res} beyond its nominal {}; cohort {} may borrow at most that much more from its parent (its borrowingLimit), so {} is left for the queue: {sums}",
                self.show(want.saturating_sub(q.nominal)),
                self.show(q.nominal),
                q.limited_by.as_deref().unwrap_or_default(),
                self.show(self.limit.saturating_sub(q.nominal.min(self.limit)))
            ),
            R::OverBorrowingLimit => format!(
                "queue {name} may borrow at most {} {res} beyond its nominal {} from cohort {cohort}: {sums}",
                self.show(self.limit.saturating_sub(q.nominal)),
                self.show(q.nominal)
            ),
            R::WaitingForBorrowableQuota if want > q.nominal => format!(
                "queue {name} needs to borrow {} {res} beyond its nominal {}; cohort {cohort} has {} left for it: {sums}",
                self.show(want - q.nominal),
                self.show(q.nominal),
                self.show(
                    self.limit
                        .saturating_sub(q.nominal.min(self.limit))
                        .min(q.pool_left)
                )
            ),
            R::WaitingForBorrowableQuota => format!(
                "queue {name}'s nominal {res} ({}) is lent to other queues of cohort {cohort}; it waits until they return it: {sums}",
                self.show(q.nominal)
            ),
            _ if q.cohort.is_some() => format!(
                "queue {name} over its nominal {res} quota: {sums}; its cohort {cohort} has no other queue to borrow from"
            ),
            _ => format!("queue {name} over its nominal {res} quota: {sums}"),
        };
        api::queue::QueueWait {
            queue: q.queue.clone(),
            reason: q.reason,
            message,
            partially_admitted: None,
        }
    }

    fn show(&self, n: u64) -> String {
        match self.unit {
            Unit::Cpu => api::Cpu::from_millis(n).to_string(),
            Unit::Memory => api::Memory::from_bytes(n).to_string(),
            Unit::Count => n.to_string(),
            Unit::Gpu => {
                api::GpuCount::from_milli(u32::try_from(n).unwrap_or(u32::MAX)).to_string()
            }
        }
    }

    /// `project finance over its gpus quota: 1 used + 8 requested > 1`
    pub(super) fn message(&self, project: &str) -> String {
        format!(
            "project {project} over its {} quota: {} used + {} requested > {}",
            self.resource,
            self.show(self.used),
            self.show(self.requested),
            self.show(self.limit)
        )
    }
}

/// The breach of `limit` by `requested` more on top of `used`, if any. Nothing requested
/// breaches nothing, even above a lowered bound.
fn check(
    resource: &str,
    unit: Unit,
    used: u64,
    requested: u64,
    limit: Option<u64>,
) -> Option<Breach> {
    let limit = limit?;
    (requested > 0 && used.saturating_add(requested) > limit).then(|| Breach {
        resource: resource.to_string(),
        unit,
        used,
        requested,
        limit,
        queue: None,
    })
}

impl Session<'_> {
    // -- quotas -------------------------------------------------------------------------

    /// The project's usage now (zero when the snapshot has none of its allocations).
    fn usage_of(&self, wi: usize) -> Option<&crate::fleet::Usage> {
        let ns = &self.wl(wi).workload.namespace;
        let p = *self.fleet.project_ids.get(ns.as_str())?;
        self.fleet.usage.get(p as usize)
    }

    /// The first bound that `members` more instances of workload `wi` would break, of
    /// those known before choosing nodes: cpu, memory, GPUs, allocations and, when the
    /// request names a model, that model's GPUs.
    pub(super) fn quota_breach(&self, wi: usize, members: u64) -> Option<Breach> {
        self.project_breach(wi, members)
            .or_else(|| self.queue_breach(wi, members))
    }

    fn project_breach(&self, wi: usize, members: u64) -> Option<Breach> {
        let wl = self.wl(wi);
        let q = wl.quota.as_deref()?;
        let zero = crate::fleet::Usage::default();
        let u = self.usage_of(wi).unwrap_or(&zero);
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        check("cpu", Unit::Cpu, u.cpu, wl.res[0] * members, q.cpu)
            .or_else(|| {
                check(
                    "memory",
                    Unit::Memory,
                    u.memory,
                    wl.res[1] * members,
                    q.memory,
                )
            })
            .or_else(|| check("gpus", Unit::Gpu, u.gpus, gpus, q.gpus))
            .or_else(|| check("instances", Unit::Count, u.instances, members, q.instances))
            .or_else(|| {
                let model = wl.gpu.as_ref()?.model.as_ref()?;
                let used = u.by_model.get(model).copied().unwrap_or(0);
                check(
                    &format!("{model} gpus"),
                    Unit::Gpu,
                    used,
                    gpus,
                    q.by_model.get(model).copied(),
                )
            })
    }

    /// Whether candidates must be checked against per-model bounds: the request names
    /// no model and the quota bounds some.
    pub(super) fn checks_models(&self, wi: usize) -> bool {
        let wl = self.wl(wi);
        (wl.gpu.as_ref().is_some_and(|g| g.model.is_none())
            && wl.quota.as_ref().is_some_and(|q| !q.by_model.is_empty()))
            || self.queue_checks_models(wi)
    }

    /// The breach of the bound of `model` by `members` more instances of `wi`.
    pub(super) fn model_breach(&self, wi: usize, model: &str, members: u64) -> Option<Breach> {
        self.project_model_breach(wi, model, members)
            .or_else(|| self.queue_model_breach(wi, model, members))
    }

    fn project_model_breach(&self, wi: usize, model: &str, members: u64) -> Option<Breach> {
        let wl = self.wl(wi);
        let limit = wl.quota.as_ref()?.by_model.get(model).copied();
        let used = self
            .usage_of(wi)
            .and_then(|u| u.by_model.get(model).copied())
            .unwrap_or(0);
        let gpus = wl.gpu.as_ref().map_or(0, |g| u64::from(g.milli)) * members;
        check(&format!("{model} gpus"), Unit::Gpu, used, gpus, limit)
    }

    /// The GPU model candidate `c` would hold.
    pub(super) fn model_of(&self, c: &Cand) -> Option<&str> {
        let (group, _) = c.gpu?;
        self.fleet
            .class_of(c.node)
            .key
            .capacity
            .gpus
            .get(group as usize)
            .map(|g| g.model.as_str())
    }

    /// The breach of a candidate's model bound by one more instance (for requests that
    /// name no model; `None` when it is within its bound).
    pub(super) fn cand_breach(&self, wi: usize, c: &Cand) -> Option<Breach> {
        let model = self.model_of(c)?;
        self.model_breach(wi, model, 1)
    }

    /// GPU models of the classes workload `wi` may use whose bound one more instance
    /// keeps (the searches to try when the best candidates' models are over).
    pub(super) fn models_within_quota(&self, wi: usize) -> Vec<String> {
        let plan = self.plan(wi);
        let mut models: Vec<String> = Vec::new();
        for f in &plan.feasible {
            let gpus = &self.fleet.classes[f.class as usize].key.capacity.gpus;
            for g in &f.groups {
                let m = &gpus[*g as usize].model;
                if !models.contains(m) {
                    models.push(m.clone());
                }
            }
        }
        models.retain(|m| self.model_breach(wi, m, 1).is_none());
        models.sort();
        models
    }

    /// The per-model breach a gang's trial placement made: a model bound whose usage
    /// rose above it since `before` (the usage by model before the trial).
    pub(super) fn trial_breach(&self, wi: usize, before: &ModelsUsed) -> Option<Breach> {
        self.project_trial_breach(wi, &before.0)
            .or_else(|| self.queue_trial_breach(wi, &before.1))
    }

    fn project_trial_breach(&self, wi: usize, before: &BTreeMap<String, u64>) -> Option<Breach> {
        let wl = self.wl(wi);
        let q = wl.quota.as_deref()?;
        let after = &self.usage_of(wi)?.by_model;
        q.by_model.iter().find_map(|(model, limit)| {
            let was = before.get(model).copied().unwrap_or(0);
            let now = after.get(model).copied().unwrap_or(0);
            check(
                &format!("{model} gpus"),
                Unit::Gpu,
                was,
                now.saturating_sub(was),
                Some(*limit),
            )
        })
    }

    /// The usage by model of workload `wi`'s project and of its queue now.
    pub(super) fn models_used(&self, wi: usize) -> ModelsUsed {
        let project = self
            .usage_of(wi)
            .map(|u| u.by_model.clone())
            .unwrap_or_default();
        (project, self.queue_models_used(wi))
    }

    /// The explanation of an instance that waits for its project's quota: every node
    /// counted under `quota`, since no node may take it while the project is over.
    pub(super) fn over_quota(&self, wi: usize, b: &Breach, mut notes: Vec<String>) -> Explanation {
        if let Some(q) = &b.queue {
            let wait = b.queue_wait(q);
            let mut e = self.queue_refused(&wait);
            notes.push(format!(
                "waits (not refused): admitted once queue {} has room (its jobs finish, other queues of its cohort return what they borrowed, or its quota is raised)",
                q.queue
            ));
            e.notes = notes;
            return e;
        }
        let wl = self.wl(wi);
        let message = b.message(&wl.workload.namespace);
        let nodes = self.fleet.nodes.len() as u32;
        notes.push(format!(
            "waits (not refused): placed once project {}'s usage falls (its allocations finish or are deleted) or its quota is raised",
            wl.workload.namespace
        ));
        Explanation {
            summary: format!("waiting for quota: {message}"),
            nodes,
            evaluated: Evaluated::AllFilters,
            passed: 0,
            rejections: vec![Rejection {
                reason: ReasonCode::Quota,
                nodes,
                message,
            }],
            candidates: Vec::new(),
            suggestions: Vec::new(),
            notes,
            queue: None,
        }
    }
}

/// GPUs used by model, of a job's project and of its queue (before a gang's trial).
pub(super) type ModelsUsed = (BTreeMap<String, u64>, [BTreeMap<String, u64>; 2]);
