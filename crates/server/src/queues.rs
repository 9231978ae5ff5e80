//! Queues in the scheduler: which queue each job waits in, the placement engine's view
//! of the queues, where each waiting job stands (`WorkloadStatus.queue`), `Queue.status`
//! and the queue metrics, and eviction of jobs not ready within `waitForReady`.
//!
//! Admission itself is placement's (`placement::queue`): a queued job is placed only
//! within its queue's quota, in its queue's order. This module feeds it and reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use api::kinds::{Condition, ConditionStatus, Project, Workload};
use api::queue::{Cohort, Queue, QueueReason, QueueState, QueueWait};
use store::Revision;

/// The queues of a pass.
pub(crate) struct QueueContext {
    /// Every queue, by name, with its store revision.
    pub queues: BTreeMap<String, (Queue, Revision)>,
    /// The `Cohort` objects, by name, with their store revisions.
    pub cohorts: BTreeMap<String, (Cohort, Revision)>,
    /// For placement.
    pub compiled: Arc<placement::Queues>,
    /// (project, workload) → its queue's name, for every workload in a queue (the queue
    /// may not exist).
    pub of: HashMap<(String, String), String>,
}

impl QueueContext {
    pub(crate) fn new<'a>(
        queues: Vec<(Queue, Revision)>,
        cohorts: Vec<(Cohort, Revision)>,
        workloads: impl IntoIterator<Item = &'a Workload>,
        projects: &BTreeMap<String, Project>,
    ) -> QueueContext {
        let mut compiled = placement::Queues::with_cohorts(
            queues.iter().map(|(q, _)| q),
            cohorts.iter().map(|(c, _)| c),
        );
        let mut of = HashMap::new();
        for w in workloads {
            let ns = w.metadata.namespace.as_deref().unwrap_or_default();
            let project = projects.get(ns).map(|p| &p.spec);
            if let Some(q) = api::queue::effective_queue(&w.spec, project) {
                compiled.assign(ns, &w.metadata.name, q);
                // The flavour it was placed in (kept only while it holds allocations).
                if let Some(f) = w
                    .status
                    .as_ref()
                    .and_then(|s| s.queue.as_ref())
                    .filter(|s| s.name == q)
                    .and_then(|s| s.flavor.as_deref())
                {
                    compiled.assign_flavor(ns, &w.metadata.name, q, f);
                }
                of.insert((ns.to_string(), w.metadata.name.clone()), q.to_string());
            }
        }
        QueueContext {
            queues: queues
                .into_iter()
                .map(|(q, rev)| (q.metadata.name.clone(), (q, rev)))
                .collect(),
            cohorts: cohorts
                .into_iter()
                .map(|(c, rev)| (c.metadata.name.clone(), (c, rev)))
                .collect(),
            compiled: Arc::new(compiled),
            of,
        }
    }

    /// Whether job `key` waits in a `StrictFIFO` queue: its head blocks the jobs behind
    /// it, so such jobs are planned every pass, together.
    pub(crate) fn strict(&self, key: &(String, String)) -> bool {
        self.of
            .get(key)
            .and_then(|q| self.queues.get(q))
            .is_some_and(|(q, _)| q.spec.strategy == api::queue::QueueingStrategy::StrictFifo)
    }

    /// Whether queues matter in this pass: some exist or some job names one.
    pub(crate) fn active(&self) -> bool {
        !self.queues.is_empty() || !self.of.is_empty()
    }
}

/// Warnings for a queue's flavours that name sites that do not exist (yet): a typo would
/// leave a flavour without nodes, its jobs waiting for no visible reason. As Kubernetes
/// resolves references later, the write is accepted (so that `kubectl apply -f dir/`
/// works in any order) with a `Warning` naming the field, and the queue's `Active`
/// condition says `SiteNotFound` until the site exists ([`queue_status`]). Other kinds
/// get none.
pub(crate) async fn flavor_site_warnings(
    state: &crate::app::AppState,
    kind: &api::kinds::KindInfo,
    value: &serde_json::Value,
) -> Result<Vec<String>, crate::error::ApiError> {
    let mut warnings = Vec::new();
    if kind.kind != api::kinds::QUEUE.kind {
        return Ok(warnings);
    }
    let Some(flavors) = value["spec"]["flavors"].as_array() else {
        return Ok(warnings);
    };
    for (i, f) in flavors.iter().enumerate() {
        let sites = f["sites"].as_array().map(Vec::as_slice).unwrap_or_default();
        for (j, site) in sites.iter().enumerate() {
            let Some(site) = site.as_str() else { continue };
            let key = crate::registry::object_key(api::kinds::SITE, None, site);
            if state.store().get(&key).await?.0.is_none() {
                warnings.push(format!(
                    "spec.flavors[{i}].sites[{j}]: site {site} does not exist: the flavour has no nodes there until it is created (meridian get sites lists them)"
                ));
            }
        }
    }
    Ok(warnings)
}

/// Refuses a `Cohort` whose parents lead back to it (422 naming `spec.parent`), following
/// the stored cohorts (at most [`MAX_COHORT_DEPTH`] levels; deeper is refused too). Other
/// kinds pass. A loop two concurrent writes make anyway is cut by placement
/// (`Queues::cohort_loops`) and reported in the queues' `Active` condition.
pub(crate) async fn check_cohort_parent(
    state: &crate::app::AppState,
    kind: &api::kinds::KindInfo,
    value: &serde_json::Value,
) -> Result<(), crate::error::ApiError> {
    if kind.kind != api::kinds::COHORT.kind {
        return Ok(());
    }
    let name = value["metadata"]["name"].as_str().unwrap_or_default();
    let mut chain = vec![name.to_string()];
    let mut parent = value["spec"]["parent"].as_str().map(str::to_string);
    while let Some(p) = parent {
        let refuse = |message: String| {
            let errors = api::FieldErrors(vec![api::FieldError::new("spec.parent", message)]);
            Err(crate::error::ApiError::invalid("Cohort", name, &errors))
        };
        chain.push(p.clone());
        if p == name {
            return refuse(format!(
                "the parents lead back to cohort {name} ({}): a cohort tree has no loops; name a cohort outside it, or leave parent out for a root",
                chain.join(" -> ")
            ));
        }
        if chain.len() > MAX_COHORT_DEPTH {
            return refuse(format!(
                "the cohort tree above {name} is more than {MAX_COHORT_DEPTH} levels deep ({} ...): flatten it",
                chain[..4].join(" -> ")
            ));
        }
        let key = crate::registry::object_key(api::kinds::COHORT, None, &p);
        let (stored, _) = state.store().get(&key).await?;
        parent = stored
            .and_then(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
            .and_then(|v| v["spec"]["parent"].as_str().map(str::to_string));
    }
    Ok(())
}

/// How deep a cohort tree may be (Kueue sets no limit; an organisation, its
/// departments and teams need a handful).
pub(crate) const MAX_COHORT_DEPTH: usize = 16;

/// The first site a queue's flavours name that `exists` does not know, with its flavour.
fn missing_flavor_site<'q>(
    q: &'q Queue,
    exists: &dyn Fn(&str) -> bool,
) -> Option<(&'q str, &'q str)> {
    q.spec.flavors.iter().find_map(|f| {
        f.sites
            .iter()
            .find(|s| !exists(s))
            .map(|s| (f.name.as_str(), s.as_str()))
    })
}

/// Where each waiting job stands in its queue: jobs ahead of it that also wait, in the
/// queue's order (priority, then age).
pub(crate) fn positions(
    ctx: &QueueContext,
    workloads: &HashMap<(String, String), std::sync::Arc<Workload>>,
    waiting: &HashSet<(String, String)>,
) -> HashMap<(String, String), u32> {
    type Lane<'a> = Vec<(&'a (String, String), &'a Workload)>;
    let mut lanes: BTreeMap<&str, Lane<'_>> = BTreeMap::new();
    for key in waiting {
        if let (Some(q), Some(w)) = (ctx.of.get(key), workloads.get(key)) {
            lanes.entry(q.as_str()).or_default().push((key, &**w));
        }
    }
    let mut out = HashMap::new();
    for jobs in lanes.values_mut() {
        jobs.sort_by(|(ka, a), (kb, b)| {
            api::queue::queue_order(
                (
                    a.spec.priority,
                    a.metadata.creation_timestamp.as_deref().unwrap_or_default(),
                    &ka.0,
                    &ka.1,
                ),
                (
                    b.spec.priority,
                    b.metadata.creation_timestamp.as_deref().unwrap_or_default(),
                    &kb.0,
                    &kb.1,
                ),
            )
        });
        for (i, (key, _)) in jobs.iter().enumerate() {
            out.insert((*key).clone(), i as u32);
        }
    }
    out
}

/// A job's queue state after this pass. `wait` is why it waits (from its first
/// unplaceable decision), `None` when nothing of it waits (a job partially admitted
/// counts as admitted while the rest of it waits); `holds` whether it holds
/// allocations; `flavor` the flavour this pass placed it in (else it keeps the one it
/// was admitted into, while it holds it).
pub(crate) fn state(
    name: &str,
    prev: Option<&QueueState>,
    wait: Option<&QueueWait>,
    position: Option<u32>,
    holds: bool,
    flavor: Option<&str>,
    now: jiff::Timestamp,
) -> QueueState {
    let prev = prev.filter(|p| p.name == name);
    // A partial admission (`spec.minParallelism`) admits the job while the rest waits.
    let admitted = holds && wait.is_none_or(|w| w.partially_admitted.is_some());
    let was_admitted = prev.is_some_and(|p| p.admitted);
    let flavor = holds
        .then(|| {
            flavor
                .map(str::to_string)
                .or_else(|| prev.and_then(|p| p.flavor.clone()))
        })
        .flatten();
    QueueState {
        name: name.to_string(),
        admitted,
        flavor,
        position: if admitted { None } else { position },
        reason: wait.map(|w| w.reason),
        message: wait.map(|w| w.message.clone()),
        requeues: prev.map_or(0, |p| p.requeues),
        requeue_at: prev.and_then(|p| p.requeue_at.clone()),
        admitted_at: match (admitted, was_admitted) {
            (true, true) => prev.and_then(|p| p.admitted_at.clone()),
            (true, false) => Some(now.to_string()),
            (false, _) => None,
        },
    }
}

/// Whether job `w`, admitted by a queue with `waitForReady`, overstayed it without all its
/// instances running: returns the timeout when it must be evicted and requeued.
pub(crate) fn unready(
    ctx: &QueueContext,
    key: &(String, String),
    w: &Workload,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let queue = ctx.of.get(key)?;
    let (q, _) = ctx.queues.get(queue)?;
    let limit: std::time::Duration = q
        .spec
        .wait_for_ready
        .as_deref()?
        .parse::<api::duration::Duration>()
        .ok()?
        .into();
    let status = w.status.as_ref()?;
    let state = status.queue.as_ref()?;
    let since: jiff::Timestamp = state.admitted_at.as_deref()?.parse().ok()?;
    let waited = now.duration_since(since);
    let all_running =
        status.running_replicas + status.succeeded_replicas >= status.desired_replicas.max(1);
    (state.admitted && !all_running && waited.as_secs() >= 0 && waited.unsigned_abs() >= limit)
        .then_some(limit)
}

/// The queue state of a job evicted after `waitForReady`: back off, then wait again.
pub(crate) fn requeued(
    prev: &QueueState,
    limit: std::time::Duration,
    now: jiff::Timestamp,
) -> QueueState {
    let requeues = prev.requeues.saturating_add(1);
    let backoff = api::queue::requeue_backoff_secs(requeues);
    let at = now
        .checked_add(jiff::SignedDuration::from_secs(backoff as i64))
        .unwrap_or(now);
    QueueState {
        name: prev.name.clone(),
        admitted: false,
        flavor: None,
        position: None,
        reason: Some(QueueReason::BackingOff),
        message: Some(format!(
            "evicted: its instances were not all running {} after admission (queue {}'s waitForReady); requeued after {backoff}s (eviction {requeues})",
            api::duration::Duration::from(limit),
            prev.name
        )),
        requeues,
        requeue_at: Some(at.to_string()),
        admitted_at: None,
    }
}

/// Whether a job backs off after an eviction until a time still to come; returns that time.
pub(crate) fn backing_off(w: &Workload, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let at: jiff::Timestamp = w
        .status
        .as_ref()?
        .queue
        .as_ref()?
        .requeue_at
        .as_deref()?
        .parse()
        .ok()?;
    (at > now).then_some(at)
}

/// Per queue: jobs waiting and admitted in this pass.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub pending: u32,
    pub admitted: u32,
}

/// The status each queue should have: counts, usage, weighted share and conditions.
pub(crate) fn queue_status(
    ctx: &QueueContext,
    name: &str,
    q: &Queue,
    counts: Counts,
    usage: Option<&placement::QueueUsage>,
    site_exists: &dyn Fn(&str) -> bool,
    now: jiff::Timestamp,
) -> api::queue::QueueStatus {
    let prev = q.status.clone().unwrap_or_default();
    let mut conditions = prev.conditions;
    let missing_site = missing_flavor_site(q, site_exists);
    let (active, reason, message) = match &q.spec.cohort {
        _ if missing_site.is_some() => {
            let (flavor, site) = missing_site.unwrap_or_default();
            (
                ConditionStatus::False,
                "SiteNotFound",
                format!(
                    "flavor {flavor} names site {site}, which does not exist: its jobs cannot run there (create the site, or correct spec.flavors)"
                ),
            )
        }
        Some(_) if ctx.compiled.loop_above(name).is_some() => {
            let (cut, parent) = ctx.compiled.loop_above(name).unwrap_or_default();
            (
                ConditionStatus::False,
                "CohortLoop",
                format!(
                    "the parents of cohort {cut} loop back to it through cohort {parent}: {cut} is treated as a root, so this queue borrows only within it (correct spec.parent of the cohorts in the loop)"
                ),
            )
        }
        Some(c)
            if !ctx.cohorts.contains_key(c)
                && !ctx.queues.values().any(|(o, _)| {
                    o.metadata.name != name && o.spec.cohort.as_deref() == Some(c)
                }) =>
        {
            (
                ConditionStatus::False,
                "CohortNotFound",
                format!(
                    "no other queue is in cohort {c} and no Cohort object has that name: this queue has nothing to borrow and lends to no one (name the cohort in another queue, create the Cohort, or remove spec.cohort)"
                ),
            )
        }
        _ => (ConditionStatus::True, "Ready", "admitting jobs".to_string()),
    };
    set(&mut conditions, "Active", active, reason, message, now);
    let borrowing = usage.is_some_and(|u| u.borrowing);
    set(
        &mut conditions,
        "Borrowing",
        if borrowing {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        if borrowing {
            "Borrowing"
        } else {
            "WithinNominal"
        },
        if borrowing {
            "uses more than its nominal quota of some resource, lent by its cohort".to_string()
        } else {
            "within its nominal quota".to_string()
        },
        now,
    );
    api::queue::QueueStatus {
        pending: counts.pending,
        admitted: counts.admitted,
        usage: Some(usage.map(|u| u.usage.clone()).unwrap_or_default()),
        flavor_usage: usage.map(|u| u.flavors.clone()).unwrap_or_default(),
        weighted_share: usage.map(|u| u.weighted_share).filter(|s| *s > 0),
        conditions,
    }
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) {
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(transition),
        last_update_time: None,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}
