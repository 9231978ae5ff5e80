//! The `Queue` kind: where batch and AI jobs wait for quota, after Kueue's ClusterQueue
//! (nominal quota, cohorts with borrowing and lending limits, queueing strategies,
//! preemption, fair sharing) and Volcano's queues (weights).
//!
//! A queue is global (one per team or class of work); a job names it (`spec.queue`), or
//! its project's `spec.defaultQueue` names it. A queue bounds what its admitted jobs
//! reserve, per resource: the `nominal` quota is the queue's own; queues that name the
//! same `cohort` lend each other what they do not use (at most `lendingLimit` of each
//! one's nominal; all of it when unset) and borrow (at most `borrowingLimit` beyond their
//! nominal; unbounded by the queue when unset). A resource the queue does not list is not
//! bounded by it. Admission happens when the scheduler places: a job over its queue's
//! quota waits, with the typed reason in [`QueueWait`], and is never refused at create.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{COHORT, Condition, KindInfo, Object, QUEUE, ResourceTotals, Spec, string_enum};
use crate::quantity::{Cpu, Memory};

/// A queue: quota, cohort, strategy, preemption and fair-sharing weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Queues naming the same cohort lend each other unused quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Projects whose jobs may use this queue; every project when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    #[serde(default)]
    pub quota: QueueQuota,
    /// Resource flavours (Kueue's ResourceFlavors): the quota split by where it
    /// applies. A job of a queue with flavours is admitted into the first flavour, in
    /// this order, whose quota has room for all of it, and its instances go only to
    /// that flavour's nodes. `quota` still bounds the queue as a whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flavors: Vec<QueueFlavor>,
    /// `BestEffortFIFO` (default): a job that does not fit lets the ones behind it try.
    /// `StrictFIFO`: the queue's head blocks the jobs behind it until it is admitted.
    #[serde(default, skip_serializing_if = "is_default")]
    pub strategy: QueueingStrategy,
    #[serde(default, skip_serializing_if = "is_default")]
    pub preemption: QueuePreemption,
    /// Fair sharing: a queue's share of what its cohort lends is weighed by this
    /// (default 1); the queue with the lowest weighted share goes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Jobs whose instances are not all running this long after admission (`10m`) are
    /// evicted and requeued, waiting longer after each eviction (back-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_ready: Option<String>,
    /// How admission moves between flavours (Kueue's `flavorFungibility`); queues with
    /// `flavors` only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub flavor_fungibility: FlavorFungibility,
}

string_enum! {
    /// What admission does when a job fits a flavour only by borrowing from the cohort.
    #[derive(Default)]
    WhenCanBorrow {
        /// Admit it there, borrowing.
        #[default]
        Borrow = "Borrow",
        /// Look for a later flavour where it fits without borrowing first; borrow in the
        /// first that fits only if none does.
        TryNextFlavor = "TryNextFlavor",
    }
}

string_enum! {
    /// What admission does when a job fits a flavour only by preempting.
    #[derive(Default)]
    WhenCanPreempt {
        /// Look for a later flavour where it fits without preempting first.
        #[default]
        TryNextFlavor = "TryNextFlavor",
        /// Preempt in this flavour before trying the next.
        Preempt = "Preempt",
    }
}

/// How admission moves between a queue's flavours (Kueue's `flavorFungibility`, with
/// Kueue's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlavorFungibility {
    #[serde(default, skip_serializing_if = "is_default")]
    pub when_can_borrow: WhenCanBorrow,
    #[serde(default, skip_serializing_if = "is_default")]
    pub when_can_preempt: WhenCanPreempt,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Spec for QueueSpec {
    const KIND_INFO: &'static KindInfo = QUEUE;
}

impl QueueSpec {
    /// The fair-sharing weight (default 1; 0 means the queue borrows only when no
    /// other queue wants to).
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

/// A resource flavour of a queue: a part of the estate (sites, node labels) with its
/// own quota. Queues of a cohort lend and borrow per flavour name: what a flavour `spot`
/// lends is borrowed only by flavours named `spot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueFlavor {
    /// Unique in the queue; recorded in a job's `status.queue.flavor`.
    pub name: String,
    /// The sites whose nodes are in the flavour (any site when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
    /// Labels a node must carry, all of them (`pool: spot`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The flavour's quota, per resource, as `spec.quota`.
    #[serde(default)]
    pub quota: QueueQuota,
}

impl QueueFlavor {
    /// Where the flavour applies, for messages: `sites fra-1, ams-2 and labels pool=spot`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.sites.is_empty() {
            parts.push(format!("sites {}", self.sites.join(", ")));
        }
        if !self.node_selector.is_empty() {
            let labels: Vec<String> = self
                .node_selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.push(format!("labels {}", labels.join(", ")));
        }
        if parts.is_empty() {
            "every node".to_string()
        } else {
            parts.join(" and ")
        }
    }
}

impl QueueQuota {
    /// Whether the quota bounds nothing.
    pub fn is_empty(&self) -> bool {
        *self == QueueQuota::default()
    }
}

/// One resource's quota in a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuota<T> {
    /// The queue's own quota.
    pub nominal: T,
    /// At most this much beyond `nominal` borrowed from the cohort; unbounded by the
    /// queue when unset (no borrowing without a cohort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<T>,
    /// At most this much of `nominal` lent to the cohort; all of it when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lending_limit: Option<T>,
}

/// A queue's quota per resource; GPU models are the resource flavours (`gpusByModel`).
/// A resource not listed is not bounded by the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueQuota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ResourceQuota<Cpu>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ResourceQuota<Memory>>,
    /// GPUs of any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<ResourceQuota<u32>>,
    /// Allocations (placed instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<ResourceQuota<u32>>,
    /// GPUs per model (`H100: {nominal: 16}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpus_by_model: BTreeMap<String, ResourceQuota<u32>>,
}

string_enum! {
    /// How a queue orders its jobs (by priority, then age, in both).
    #[derive(Default)]
    QueueingStrategy {
        /// A job that does not fit lets the jobs behind it try.
        #[default]
        BestEffortFifo = "BestEffortFIFO",
        /// The head of the queue blocks the jobs behind it until it is admitted.
        StrictFifo = "StrictFIFO",
    }
}

string_enum! {
    /// Whether a job waiting in a queue may evict jobs of the same queue.
    #[derive(Default)]
    WithinQueue {
        #[default]
        Never = "Never",
        /// Jobs of strictly lower priority in the same queue are evicted when the
        /// queue's quota has no room.
        LowerPriority = "LowerPriority",
    }
}

string_enum! {
    /// Whether a queue within its nominal quota takes back what other queues of its
    /// cohort borrowed.
    #[derive(Default)]
    ReclaimWithinCohort {
        #[default]
        Never = "Never",
        /// Borrowing jobs of lower priority are evicted.
        LowerPriority = "LowerPriority",
        /// Any borrowing job is evicted.
        Any = "Any",
    }
}

string_enum! {
    /// Whether a queue below its fair share takes quota back from queues of its cohort
    /// above theirs (Kueue's fair-sharing preemption strategies).
    #[derive(Default)]
    FairSharingPreemption {
        /// Fair sharing only orders admissions.
        #[default]
        Never = "Never",
        /// A job of another queue of the cohort that borrows is evicted when, after the
        /// eviction and this job's admission, this queue's weighted share is still at
        /// most that queue's (Kueue's `LessThanOrEqualToFinalShare`).
        LessThanOrEqualToFinalShare = "LessThanOrEqualToFinalShare",
        /// A job of another queue of the cohort that borrows is evicted when, with this
        /// job admitted, this queue's weighted share is below that queue's share before
        /// the eviction (Kueue's `LessThanInitialShare`): it does not protect a queue
        /// from losing a large job, as the final-share rule does.
        LessThanInitialShare = "LessThanInitialShare",
    }
}

string_enum! {
    /// Whether a job that must borrow from its cohort may evict jobs of other queues.
    #[derive(Default)]
    BorrowWithinCohortPolicy {
        /// Only a job within its queue's nominal quota reclaims (`reclaimWithinCohort`).
        #[default]
        Never = "Never",
        /// Borrowing jobs of lower priority in other queues of the cohort are evicted.
        LowerPriority = "LowerPriority",
    }
}

/// Preemption for a job that needs more than its queue's nominal quota (Kueue's
/// `borrowWithinCohort`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BorrowWithinCohort {
    #[serde(default, skip_serializing_if = "is_default")]
    pub policy: BorrowWithinCohortPolicy,
    /// Jobs of a priority above this are never evicted this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority_threshold: Option<i32>,
}

/// What a waiting job may evict to be admitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueuePreemption {
    #[serde(default, skip_serializing_if = "is_default")]
    pub within_queue: WithinQueue,
    #[serde(default, skip_serializing_if = "is_default")]
    pub reclaim_within_cohort: ReclaimWithinCohort,
    /// Preemption to rebalance weighted shares within the cohort.
    #[serde(default, skip_serializing_if = "is_default")]
    pub fair_sharing: FairSharingPreemption,
    /// Fair-sharing strategies tried in order, instead of `fairSharing` (Kueue's
    /// `preemptionStrategies`, whose default is `[LessThanOrEqualToFinalShare,
    /// LessThanInitialShare]`): the jobs the first allows to evict, then, while the job
    /// still does not fit, those the next allows among the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fair_sharing_strategies: Vec<FairSharingPreemption>,
    /// Preemption in the cohort for a job that must borrow.
    #[serde(default, skip_serializing_if = "is_default")]
    pub borrow_within_cohort: BorrowWithinCohort,
}

impl QueuePreemption {
    /// The fair-sharing strategies to try, in order: `fairSharingStrategies`, or
    /// `fairSharing` alone; none when fair sharing does not preempt.
    pub fn fair_sharing_strategies(&self) -> Vec<FairSharingPreemption> {
        if self.fair_sharing_strategies.is_empty() {
            Some(self.fair_sharing)
                .filter(|s| *s != FairSharingPreemption::Never)
                .into_iter()
                .collect()
        } else {
            self.fair_sharing_strategies
                .iter()
                .copied()
                .filter(|s| *s != FairSharingPreemption::Never)
                .collect()
        }
    }
}

/// What Meridian observes of a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueStatus {
    /// Jobs waiting for admission.
    #[serde(default)]
    pub pending: u32,
    /// Jobs admitted (holding quota).
    #[serde(default)]
    pub admitted: u32,
    /// What admitted jobs reserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceTotals>,
    /// What admitted jobs reserve per flavour (queues with `spec.flavors`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flavor_usage: BTreeMap<String, ResourceTotals>,
    /// Fair sharing: what the queue borrows as a share of what its cohort lends, in
    /// thousandths, divided by the weight (0 when it borrows nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_share: Option<u64>,
    /// `Active` (`False` with reason `CohortNotFound` when no other queue names the
    /// cohort), `Borrowing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

pub type Queue = Object<QueueSpec, QueueStatus>;

/// A cohort (Kueue's `Cohort`): a node of a tree of cohorts through which queues lend
/// and borrow. Queues name their cohort (`QueueSpec::cohort`); a cohort may name a
/// `parent`, so a team's queues first share among themselves, then with the department's
/// other teams, then the organisation's. A cohort's own `quota` is nominal quota its
/// whole subtree may use (a budget held by the department, not by any one queue); its
/// `borrowingLimit` bounds what its subtree takes from the parent beyond what the subtree
/// has, its `lendingLimit` what of the subtree's quota the parent's other subtrees may
/// use. A cohort named by a queue or a cohort but not created is a root without quota of
/// its own, as it was before cohorts were objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CohortSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The cohort above this one; a root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Quota held by the cohort for its subtree, per resource, with the limits on what
    /// it borrows from and lends to its parent.
    #[serde(default)]
    pub quota: QueueQuota,
    /// Quota per flavour name: what this cohort holds for its queues' flavours of that
    /// name (`spot`), as `quota` does for their `spec.quota`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flavors: Vec<CohortFlavor>,
    /// Fair sharing between the cohort and its siblings under the same parent (default
    /// 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl CohortSpec {
    /// The fair-sharing weight (default 1).
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

/// A cohort's quota for the queue flavours of one name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CohortFlavor {
    /// The flavour name, as queues of the subtree name theirs.
    pub name: String,
    #[serde(default)]
    pub quota: QueueQuota,
}

/// What Meridian observes of a cohort (written by the scheduler). A queue's `Active`
/// condition says when its cohort tree is broken (a loop of parents).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CohortStatus {
    /// Queues in its subtree.
    #[serde(default)]
    pub queues: u32,
    /// What the admitted jobs of its subtree's queues reserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceTotals>,
    /// Fair sharing among its siblings: what its subtree borrows from its parent beyond
    /// its own quota, as a share of the parent's quota, in thousandths, divided by its
    /// weight (0 at a root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_share: Option<u64>,
}

impl Spec for CohortSpec {
    const KIND_INFO: &'static KindInfo = COHORT;
}

pub type Cohort = Object<CohortSpec, CohortStatus>;

/// Totals for tables: `cpu 12, memory 48Gi, H100 8` (what is not zero; `-` when
/// nothing is).
pub fn totals_summary(t: &ResourceTotals) -> String {
    let mut parts = Vec::new();
    if t.cpu.millis() > 0 {
        parts.push(format!("cpu {}", t.cpu));
    }
    if t.memory.bytes() > 0 {
        parts.push(format!("memory {}", t.memory));
    }
    if !t.gpus.is_zero() {
        parts.push(format!("gpus {}", t.gpus));
    }
    for (model, n) in &t.gpus_by_model {
        parts.push(format!("{model} {n}"));
    }
    if t.instances > 0 {
        parts.push(format!("instances {}", t.instances));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

/// A quota's bounds, for tables: `cpu 64, H100 16` (`-` when it bounds nothing).
pub fn quota_summary(quota: &QueueQuota) -> String {
    let mut parts = Vec::new();
    if let Some(q) = &quota.cpu {
        parts.push(format!("cpu {}", q.nominal));
    }
    if let Some(q) = &quota.memory {
        parts.push(format!("memory {}", q.nominal));
    }
    if let Some(q) = &quota.gpus {
        parts.push(format!("gpus {}", q.nominal));
    }
    for (model, q) in &quota.gpus_by_model {
        parts.push(format!("{model} {}", q.nominal));
    }
    if let Some(q) = &quota.instances {
        parts.push(format!("instances {}", q.nominal));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

string_enum! {
    /// Why a job waits in its queue: the typed reason in `WorkloadStatus.queue`.
    QueueReason {
        /// The queue the job names does not exist.
        QueueNotFound = "QueueNotFound",
        /// The queue does not admit the job's project (`spec.projects`).
        ProjectNotAllowed = "ProjectNotAllowed",
        /// The queue's nominal quota has no room and it has no cohort to borrow from.
        OverNominalQuota = "OverNominalQuota",
        /// Beyond the queue's nominal quota, and its cohort has no room to lend.
        WaitingForBorrowableQuota = "WaitingForBorrowableQuota",
        /// Borrowing would pass the queue's `borrowingLimit`.
        OverBorrowingLimit = "OverBorrowingLimit",
        /// A `StrictFIFO` queue's head has not been admitted yet.
        BehindQueueHead = "BehindQueueHead",
        /// Quota has room, but no nodes do (capacity, residency, topology...).
        NoCapacity = "NoCapacity",
        /// Evicted after `waitForReady`; requeued after a back-off.
        BackingOff = "BackingOff",
    }
}

/// Where a job stands in its queue (`WorkloadStatus.queue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueState {
    /// The queue (named by the job or its project's default).
    pub name: String,
    /// Whether the job holds quota (its instances are placed).
    #[serde(default)]
    pub admitted: bool,
    /// The flavour of its queue it was admitted into (queues with `spec.flavors`): its
    /// instances run on that flavour's nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// Pending jobs ahead of it in its queue (0 at the head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<QueueReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Evictions after `waitForReady`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requeues: u32,
    /// RFC 3339: not admitted again before this (back-off after an eviction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_at: Option<String>,
    /// RFC 3339: when its instances were first all placed in this admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why an instance waits in its queue, as placement reports it
/// (`Explanation.queue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueWait {
    pub queue: String,
    pub reason: QueueReason,
    pub message: String,
    /// Partial admission (`spec.minParallelism`): the job's pending instances admitted
    /// beside the ones that wait; the job counts as admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partially_admitted: Option<u32>,
}

/// The queue a workload waits in: the one it names (`spec.queue`, any type), else, for a
/// job, its project's `spec.defaultQueue`; `None` outside queues.
pub fn effective_queue<'a>(
    w: &'a crate::kinds::WorkloadSpec,
    project: Option<&'a crate::kinds::ProjectSpec>,
) -> Option<&'a str> {
    w.queue.as_deref().or_else(|| {
        (w.type_ == crate::kinds::WorkloadType::Job && w.schedule.is_none())
            .then(|| project?.default_queue.as_deref())
            .flatten()
    })
}

/// The order of jobs in a queue: higher priority first, then older (creation time),
/// then by project and name. `created` is RFC 3339 as stored (they compare as strings:
/// the server writes one format).
pub fn queue_order(a: (i32, &str, &str, &str), b: (i32, &str, &str, &str)) -> std::cmp::Ordering {
    b.0.cmp(&a.0)
        .then_with(|| a.1.cmp(b.1))
        .then_with(|| a.2.cmp(b.2))
        .then_with(|| a.3.cmp(b.3))
}

/// Usage against nominal quota for tables, per bounded resource:
/// `cpu 12/64, memory 48Gi/256Gi, H100 8/16`; `-` for a queue that bounds nothing.
pub fn usage_summary(quota: &QueueQuota, used: Option<&ResourceTotals>) -> String {
    let zero = ResourceTotals::default();
    let u = used.unwrap_or(&zero);
    let mut parts = Vec::new();
    if let Some(q) = &quota.cpu {
        parts.push(format!("cpu {}/{}", u.cpu, q.nominal));
    }
    if let Some(q) = &quota.memory {
        parts.push(format!("memory {}/{}", u.memory, q.nominal));
    }
    if let Some(q) = &quota.gpus {
        parts.push(format!("gpus {}/{}", u.gpus, q.nominal));
    }
    for (model, q) in &quota.gpus_by_model {
        let n = u.gpus_by_model.get(model).copied().unwrap_or_default();
        parts.push(format!("{model} {n}/{}", q.nominal));
    }
    if let Some(q) = &quota.instances {
        parts.push(format!("instances {}/{}", u.instances, q.nominal));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

/// [`usage_summary`] of a queue and, per flavour, of each flavour, prefixed with its
/// name: `cpu 4/8, onprem: cpu 4/32, azure: cpu 0/16`.
pub fn queue_usage_summary(spec: &QueueSpec, status: &QueueStatus) -> String {
    let mut parts = Vec::new();
    if !spec.quota.is_empty() || spec.flavors.is_empty() {
        parts.push(usage_summary(&spec.quota, status.usage.as_ref()));
    }
    for f in &spec.flavors {
        parts.push(format!(
            "{}: {}",
            f.name,
            usage_summary(&f.quota, status.flavor_usage.get(&f.name))
        ));
    }
    parts.join(", ")
}

/// The back-off before a job evicted `requeues` times is admitted again: 60 s doubling,
/// at most one hour (Kueue's `requeuingStrategy` default shape).
pub fn requeue_backoff_secs(requeues: u32) -> u64 {
    60u64
        .saturating_mul(1u64 << requeues.saturating_sub(1).min(6))
        .min(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_queue_reads_kueue_shaped_quota() {
        let q: QueueSpec = serde_json::from_value(json!({
            "cohort": "research",
            "quota": {
                "cpu": {"nominal": "64", "borrowingLimit": "32", "lendingLimit": "16"},
                "gpusByModel": {"H100": {"nominal": 16}}
            },
            "strategy": "StrictFIFO",
            "preemption": {"withinQueue": "LowerPriority", "reclaimWithinCohort": "Any"},
            "weight": 2,
            "waitForReady": "10m"
        }))
        .unwrap();
        assert_eq!(q.strategy, QueueingStrategy::StrictFifo);
        assert_eq!(q.quota.cpu.as_ref().unwrap().nominal.millis(), 64_000);
        assert_eq!(q.quota.gpus_by_model["H100"].nominal, 16);
        assert_eq!(q.weight(), 2);
        assert!(serde_json::from_value::<QueueSpec>(json!({"strategy": "FIFO"})).is_err());
        assert!(serde_json::from_value::<QueueSpec>(json!({"quota": {"gpu": {}}})).is_err());
    }

    #[test]
    fn jobs_order_by_priority_then_age() {
        let mut jobs = [
            (0, "2026-01-02T00:00:00Z", "p", "late"),
            (5, "2026-01-03T00:00:00Z", "p", "urgent"),
            (0, "2026-01-01T00:00:00Z", "p", "early"),
        ];
        jobs.sort_by(|a, b| queue_order(*a, *b));
        let names: Vec<_> = jobs.iter().map(|j| j.3).collect();
        assert_eq!(names, ["urgent", "early", "late"]);
    }

    #[test]
    fn the_usage_column_shows_each_flavor() {
        let spec: QueueSpec = serde_json::from_value(json!({
            "flavors": [
                {"name": "onprem", "sites": ["fra"], "quota": {"cpu": {"nominal": "32"}}},
                {"name": "spot", "nodeSelector": {"pool": "spot"},
                 "quota": {"cpu": {"nominal": "16"}}}
            ]
        }))
        .unwrap();
        let status: QueueStatus = serde_json::from_value(json!({
            "flavorUsage": {"onprem": {"cpu": "4"}}
        }))
        .unwrap();
        assert_eq!(
            queue_usage_summary(&spec, &status),
            "onprem: cpu 4/32, spot: cpu 0/16"
        );
        assert_eq!(spec.flavors[1].describe(), "labels pool=spot");
    }

    #[test]
    fn backoff_doubles_to_an_hour() {
        assert_eq!(requeue_backoff_secs(1), 60);
        assert_eq!(requeue_backoff_secs(2), 120);
        assert_eq!(requeue_backoff_secs(3), 240);
        assert_eq!(requeue_backoff_secs(40), 3600);
    }
}
