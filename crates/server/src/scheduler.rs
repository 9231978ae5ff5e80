//! The scheduler controller: places pending workload instances and commits Allocations.
//!
//! Level-triggered: each pass takes the whole desired state (sites, nodes, projects,
//! workloads, allocations, queues), asks the pure `placement` crate where the missing
//! instances go, and commits the answers. It wakes on any change under `/registry/`
//! (debounced) and at least every `resync` interval, and does not care why it woke.
//!
//! The desired state comes from an [`Informer`]: an in-memory copy fed by one watch, in
//! which each object is decoded once per revision, when it changes. A pass asks the store
//! for its current revision and waits for the cache to reach it, then shares the cached
//! objects (`Arc`s) instead of reading and decoding the store. See [`crate::informer`] for
//! why a cache that lags can never make the scheduler double-book a node.
//!
//! What the scheduler remembers between passes ([`PassCache`]) is an optimization, never
//! a source of truth: the cache, and which workloads did not fit. While neither such a
//! workload nor any site, node, project or allocation changed, planning it again would
//! give the same answer, so it is skipped (and planned again after 5 minutes regardless),
//! like kube-scheduler's unschedulable queue. A backlog that cannot be placed then costs
//! a pass its snapshot, not a re-plan. Likewise a workload whose last plan had nothing to
//! do (nothing to place or stop, no status to write, no event, nothing waiting on the
//! clock) is not planned again while neither it, its allocations nor the addresses of
//! their nodes changed (and for 5 minutes at most): a pass over a settled estate of
//! 100,000 workloads plans the few that changed, not all of them.
//!
//! Safety against racing schedulers and crashes:
//! - An instance's Allocation has a deterministic name, `{workload}-{replica}`, and is
//!   created with `Compare::Absent`: an instance is never placed twice.
//! - Every node has a ledger key (`/meridian/scheduler/nodes/{node}`) that each placement
//!   on the node rewrites in the same transaction, guarded by the ledger revision the pass
//!   read *before* it read the allocations. A pass that planned against a stale view of a
//!   node fails its compare-and-swap and plans again, so two schedulers never double-book
//!   a node. All placements on one node commit in one transaction.
//! - A pass killed midway leaves whole transactions or nothing; the next pass (on this or
//!   another server) places what is still missing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use api::{Allocation, EventType, Node, ObjectReference, Project, Site, Workload};
use placement::{Batch, Decision, Fleet, Options, Outcome};
use store::{Compare, Op, OpResult, Revision};

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::informer::{self, Informer};
use crate::queues::{self, QueueContext};
use crate::registry::{self, AuditRecord, Mutation, Registry, encode, object_key};
use crate::{periodic, rollout};

/// Prefix of the per-node ledger keys.
pub const LEDGER_PREFIX: &str = "/meridian/scheduler/nodes/";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// A pass runs at least this often, changes or not.
    pub resync: Duration,
    /// Changes arriving within this window are handled by one pass.
    pub debounce: Duration,
    /// Node transactions in flight at once.
    pub concurrency: usize,
    /// New instances a pass plans to start, at most (the rest wait for the next pass,
    /// highest priority and oldest first): what bounds a pass's memory and time when a
    /// large backlog arrives at once. A workload's instances are never split, and a
    /// workload with more instances than this still goes, alone.
    pub max_starts_per_pass: usize,
    pub placement: Options,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(10),
            debounce: Duration::from_millis(50),
            concurrency: 64,
            max_starts_per_pass: MAX_STARTS_PER_PASS,
            placement: Options::default(),
        }
    }
}

/// [`SchedulerOptions::max_starts_per_pass`] by default.
pub const MAX_STARTS_PER_PASS: usize = 50_000;

/// The scheduler's identity in the audit log.
pub fn principal() -> Principal {
    Principal {
        id: "system:scheduler".into(),
        role: Role::Admin,
        project: None,
        node: None,
        site: None,
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub pending: usize,
    pub placed: usize,
    pub unplaceable: usize,
    /// Of the unplaceable, instances not planned again: neither their workload nor the
    /// fleet changed since they last did not fit.
    pub waiting: usize,
    /// Node transactions that lost a race and will be planned again.
    pub conflicts: usize,
    pub preempted: usize,
    pub removed: usize,
    /// Placements refused by admission policies.
    pub denied: usize,
    /// Allocations released from lost or deleted nodes, to be placed again.
    pub rescheduled: usize,
    /// Nodes and projects whose `status.allocated`/`status.used` changed and was written.
    pub usage_written: usize,
    /// Allocations of gangs that were partly placed and could not be completed in this
    /// pass, released so that the gang waits whole ([`release_broken_gangs`]).
    pub gang_released: usize,
    /// Workloads planned; the others were quiet (see the module documentation).
    pub planned: usize,
    /// Of the pending, instances left for the next pass: the pass had planned
    /// [`SchedulerOptions::max_starts_per_pass`] already.
    pub deferred: usize,
}

/// Whether an instance of `w` that was on a lost node is placed again: services and VMs
/// always; jobs unless their restart policy is `never` (like Nomad's reschedule policy).
fn replaced_when_lost(w: &Workload) -> bool {
    match w.spec.type_ {
        api::kinds::WorkloadType::Job => w
            .spec
            .restart
            .as_ref()
            .is_none_or(|r| r.policy != api::kinds::RestartPolicy::Never),
        _ => true,
    }
}

/// Releases the allocations whose node is gone or `Lost` (or that the agent reported
/// `lost`) when their workload is replaced when lost: they are deleted, so the instance
/// is pending again and placed in this pass, elsewhere. The others stay as they are (a
/// job that must not run twice). A gang is all-or-nothing: when one of its members is
/// released and fewer than `spec.gang` of the others hold resources, they are released
/// with it, and the whole gang is placed again as one unit (Volcano restarts a gang job
/// whose member was evicted; Kueue evicts a workload whole). Returns how many were
/// released.
async fn release_lost(state: &AppState, snap: &mut Snapshot) -> Result<usize, ApiError> {
    use api::kinds::{AllocationPhase, NodePhase};
    let phases: HashMap<&str, Option<NodePhase>> = snap
        .nodes
        .iter()
        .map(|n| {
            (
                n.metadata.name.as_str(),
                n.status.as_ref().and_then(|s| s.phase),
            )
        })
        .collect();
    let workloads: HashMap<(&str, &str), &Workload> = snap
        .workloads
        .iter()
        .map(|(w, _)| {
            (
                (
                    w.metadata.namespace.as_deref().unwrap_or_default(),
                    w.metadata.name.as_str(),
                ),
                &**w,
            )
        })
        .collect();
    let mut release = Vec::new();
    for ((ns, name), (a, rev)) in &snap.allocations {
        let phase = a.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if matches!(phase, AllocationPhase::Succeeded | AllocationPhase::Failed) {
            continue;
        }
        let node_lost = match phases.get(a.spec.node.as_str()) {
            None => true,
            Some(p) => *p == Some(NodePhase::Lost),
        };
        if !node_lost && phase != AllocationPhase::Lost {
            continue;
        }
        let replaced = workloads
            .get(&(ns.as_str(), a.spec.workload.as_str()))
            .is_some_and(|w| replaced_when_lost(w));
        if replaced {
            release.push((ns.clone(), name.clone(), *rev, a.spec.node.clone()));
        }
    }
    // Gangs that lost a member: (project, workload) → `spec.gang`.
    let gangs: HashMap<(String, String), u32> = release
        .iter()
        .filter_map(|(ns, name, _, _)| {
            let (a, _) = snap.allocations.get(&(ns.clone(), name.clone()))?;
            let w = workloads.get(&(ns.as_str(), a.spec.workload.as_str()))?;
            Some(((ns.clone(), a.spec.workload.clone()), w.spec.gang?))
        })
        .collect();
    if !gangs.is_empty() {
        let listed: HashSet<(String, String)> = release
            .iter()
            .map(|(ns, name, _, _)| (ns.clone(), name.clone()))
            .collect();
        // The members that stay, per gang; fewer than `spec.gang` go too.
        // (project, allocation, revision, node), as `release` holds them.
        type Member = (String, String, Revision, String);
        let mut rest: HashMap<(String, String), Vec<Member>> = HashMap::new();
        for ((ns, name), (a, rev)) in &snap.allocations {
            let key = (ns.clone(), a.spec.workload.clone());
            let holds = a
                .status
                .as_ref()
                .map(|s| s.phase)
                .unwrap_or_default()
                .holds_resources();
            if holds && gangs.contains_key(&key) && !listed.contains(&(ns.clone(), name.clone())) {
                rest.entry(key).or_default().push((
                    ns.clone(),
                    name.clone(),
                    *rev,
                    a.spec.node.clone(),
                ));
            }
        }
        for (key, members) in rest {
            if members.len() >= gangs[&key] as usize {
                continue;
            }
            for member in members {
                tracing::info!(allocation = %member.1, project = %member.0, workload = %key.1, "a member of its gang was lost; releasing the gang whole");
                release.push(member);
            }
        }
    }
    let mut released = 0;
    for (ns, name, rev, node) in release {
        if remove_allocation(state, &ns, &name, rev).await? {
            tracing::info!(allocation = %name, project = %ns, %node, "released from a lost node; placing it again");
            released += 1;
        }
        snap.allocations.remove(&(ns, name));
    }
    Ok(released)
}

/// The allocations that hold resources on a node of the snapshot (an allocation left on a
/// deleted node holds nothing anywhere).
fn held(snap: &Snapshot) -> Vec<&Allocation> {
    let nodes: HashSet<&str> = snap
        .nodes
        .iter()
        .map(|n| n.metadata.name.as_str())
        .collect();
    snap.allocations
        .values()
        .filter(|(a, _)| nodes.contains(a.spec.node.as_str()))
        .map(|(a, _)| &**a)
        .collect()
}

/// Run passes until shutdown.
pub async fn run(state: AppState, options: SchedulerOptions) {
    let mut wake = match state.store().watch("/registry/", 0).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "scheduler cannot watch the registry; resyncing only");
            None
        }
    };
    let mut memory = PassCache::default();
    // The cache a pass reads; listing it may fail (the store is unreachable), and is
    // retried before each pass until it works.
    let mut retry = Duration::from_millis(100);
    while memory.informer.is_none() {
        match Informer::start(state.store().clone(), state.shutdown.clone()).await {
            Ok(informer) => memory.informer = Some(informer),
            Err(e) => {
                tracing::warn!(error = %e, "scheduler cannot list the store; retrying");
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut last = PassReport::default();
    loop {
        let started = std::time::Instant::now();
        let result = pass_with(&state, &options, &mut memory).await;
        if let Ok(r) = &result {
            state.metrics.observe_pass(
                started.elapsed(),
                r.pending,
                r.placed,
                r.unplaceable,
                r.conflicts,
            );
        }
        match result {
            // A pass that did what the last one did (a resync that found the same
            // backlog) is not news.
            Ok(report) if report != PassReport::default() && report != last => {
                tracing::info!(?report, "scheduler pass");
                last = report;
            }
            Ok(report) => {
                tracing::debug!(?report, "scheduler pass");
                last = report;
            }
            // The store logs a full disk once, entering and leaving; every pass failing on
            // it meanwhile is not news.
            Err(e) if state.store().space().no_space.is_some() => {
                tracing::debug!(error = %e, "scheduler pass failed: the store is out of disk space");
            }
            Err(e) => tracing::warn!(error = %e, "scheduler pass failed; retrying"),
        }
        // Wait for a change (then let a burst settle) or the resync interval.
        let woke = async {
            match wake.as_mut() {
                Some(w) => w.next().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(memory.recheck_in.map_or(options.resync, |r| r.min(options.resync))) => {}
            alive = woke => {
                if !alive {
                    wake = state.store().watch("/registry/", 0).await.ok();
                }
                tokio::time::sleep(options.debounce).await;
                // Drain what arrived meanwhile: one pass handles all of it.
                if let Some(w) = wake.as_mut() {
                    while let Ok(Some(_)) =
                        tokio::time::timeout(Duration::from_millis(1), w.next()).await
                    {}
                }
            }
        }
    }
}

/// Everything a pass decides on, as of one point of the store's history (or, while the
/// cache lags, a prefix of it that is still safe: see [`crate::informer`]).
struct Snapshot {
    ledgers: HashMap<String, Revision>,
    sites: Vec<Site>,
    nodes: Vec<Node>,
    projects: BTreeMap<String, Project>,
    /// Store revisions of nodes and projects, by name (their usage is written back).
    revisions: HashMap<(&'static str, String), Revision>,
    workloads: Vec<(Arc<Workload>, Revision)>,
    /// By (project, name), with their revision.
    allocations: BTreeMap<(String, String), (Arc<Allocation>, Revision)>,
    /// Changes whenever a site, node, project or allocation is created, changed or
    /// deleted, or a queue's spec changes: what can make an unplaceable instance
    /// placeable.
    fleet_key: FleetKey,
    /// Queues, and which queue each job waits in.
    queues: QueueContext,
}

/// Per kind (sites, nodes, projects, allocations; queues by spec): how many keys and
/// their newest revision. Revisions only grow, so any create, update or delete changes
/// one of them.
type FleetKey = [(usize, Revision); 5];

/// How many queues and cohorts there are and a hash of their names and specs (a queue's
/// status, which the scheduler writes, is left out).
fn queue_fingerprint(
    queues: &[(api::queue::Queue, Revision)],
    cohorts: &[(api::queue::Cohort, Revision)],
) -> (usize, Revision) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (q, _) in queues {
        q.metadata.name.hash(&mut h);
        serde_json::to_string(&q.spec)
            .unwrap_or_default()
            .hash(&mut h);
    }
    for (c, _) in cohorts {
        c.metadata.name.hash(&mut h);
        serde_json::to_string(&c.spec)
            .unwrap_or_default()
            .hash(&mut h);
    }
    (queues.len() + cohorts.len(), h.finish() as Revision)
}

/// How long an unplaceable workload is left alone while nothing in the fleet changes,
/// before it is planned again anyway (kube-scheduler's unschedulable pods wait 5 min).
const UNPLACEABLE_RETRY: Duration = Duration::from_secs(300);

/// What the scheduler keeps from one pass to the next (see the module documentation).
#[derive(Default)]
pub struct PassCache {
    /// Workloads none of whose pending instances fitted, and the fleet they were planned
    /// against.
    waiting: HashMap<(String, String), Waiting>,
    /// The objects, kept current by a watch ([`crate::informer`]); without one (a single
    /// pass) each pass lists the store.
    informer: Option<Arc<Informer>>,
    /// When the last pass's plans change by themselves (an instance becomes available
    /// after `minReadySeconds`, a rollout's deadline passes).
    recheck_in: Option<Duration>,
    /// Workloads whose last plan had nothing to do, with what that plan read.
    quiet: HashMap<(String, String), Quiet>,
    /// Workloads whose plan only started instances and was left for a later pass
    /// ([`Starts`]).
    deferred: HashMap<(String, String), Deferred>,
}

/// A workload whose last plan had nothing to do: nothing to place or stop, no status to
/// write, no event, no `recheck_in`.
struct Quiet {
    /// Its store revision when it was planned.
    revision: Revision,
    /// [`plan_inputs`] of its instances then.
    inputs: u64,
    since: std::time::Instant,
}

/// How long a quiet workload goes without being planned at most.
const QUIET_REPLAN: Duration = Duration::from_secs(300);

/// What a workload's plan reads besides the workload: its allocations (name and store
/// revision) and the addresses of their nodes (its endpoints), as a hash.
fn plan_inputs(instances: &[rollout::Instance<'_>], addresses: &HashMap<&str, &str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for i in instances {
        i.allocation.metadata.name.hash(&mut h);
        i.store_revision.hash(&mut h);
        addresses.get(i.allocation.spec.node.as_str()).hash(&mut h);
    }
    h.finish()
}

struct Waiting {
    revision: Revision,
    fleet: FleetKey,
    since: std::time::Instant,
    /// Its pending instances.
    instances: usize,
}

impl PassCache {
    /// The waiting entry of a workload if planning it again would change nothing.
    fn unchanged(
        &self,
        key: &(String, String),
        revision: Revision,
        fleet: &FleetKey,
    ) -> Option<&Waiting> {
        self.waiting.get(key).filter(|w| {
            w.revision == revision && w.fleet == *fleet && w.since.elapsed() < UNPLACEABLE_RETRY
        })
    }
}

/// Runs CPU-bound work of a pass without holding up the runtime's other tasks: on the
/// multi-threaded runtime the worker hands its queue to another thread first.
pub(crate) fn compute<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

async fn snapshot(state: &AppState, memory: &mut PassCache) -> Result<Snapshot, ApiError> {
    match &memory.informer {
        Some(informer) => {
            // A consistent read: the cache holds every write made before the pass began.
            let now = state.store().sync_revision().await?;
            informer.wait_for(now, CACHE_WAIT).await?;
            informer.read(snapshot_of)
        }
        None => {
            let (cache, _) = informer::Cache::list(state.store()).await?;
            compute(|| snapshot_of(&cache))
        }
    }
}

/// How long a pass waits for the cache to catch up with the store before it fails (and
/// the next pass tries again).
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// What a pass decides on, from the cache (objects are shared, not copied, except sites,
/// nodes and projects, whose usage the pass rewrites).
fn snapshot_of(cache: &informer::Cache) -> Result<Snapshot, ApiError> {
    cache.check().map_err(ApiError::internal)?;
    {
        let mut snap = Snapshot {
            ledgers: cache.ledgers.clone(),
            sites: cache.sites.iter().map(|(s, _)| Site::clone(s)).collect(),
            nodes: Vec::with_capacity(cache.nodes.len()),
            projects: BTreeMap::new(),
            revisions: HashMap::with_capacity(cache.nodes.len() + cache.projects.len()),
            workloads: cache
                .workloads
                .iter()
                .map(|(w, rev)| (Arc::clone(w), rev))
                .collect(),
            allocations: cache
                .allocations
                .iter()
                .map(|(a, rev)| {
                    let ns = a.metadata.namespace.clone().unwrap_or_default();
                    ((ns, a.metadata.name.clone()), (Arc::clone(a), rev))
                })
                .collect(),
            fleet_key: [
                cache.sites.fingerprint(),
                cache.nodes.fingerprint(),
                cache.projects.fingerprint(),
                cache.allocations.fingerprint(),
                (0, 0),
            ],
            queues: QueueContext::new(Vec::new(), Vec::new(), std::iter::empty(), &BTreeMap::new()),
        };
        for (n, rev) in cache.nodes.iter() {
            snap.revisions
                .insert((api::kinds::NODE.kind, n.metadata.name.clone()), rev);
            snap.nodes.push(Node::clone(n));
        }
        for (p, rev) in cache.projects.iter() {
            snap.revisions
                .insert((api::kinds::PROJECT.kind, p.metadata.name.clone()), rev);
            snap.projects
                .insert(p.metadata.name.clone(), Project::clone(p));
        }
        let queues: Vec<(api::queue::Queue, Revision)> = cache
            .queues
            .iter()
            .map(|(q, rev)| (api::queue::Queue::clone(q), rev))
            .collect();
        let cohorts: Vec<(api::queue::Cohort, Revision)> = cache
            .cohorts
            .iter()
            .map(|(c, rev)| (api::queue::Cohort::clone(c), rev))
            .collect();
        snap.fleet_key[4] = queue_fingerprint(&queues, &cohorts);
        snap.queues = QueueContext::new(
            queues,
            cohorts,
            snap.workloads.iter().map(|(w, _)| &**w),
            &snap.projects,
        );
        Ok(snap)
    }
}

/// One scheduling pass.
pub async fn pass(state: &AppState, options: &SchedulerOptions) -> Result<PassReport, ApiError> {
    pass_with(state, options, &mut PassCache::default()).await
}

/// One pass that uses and updates what earlier passes left in `memory`.
pub async fn pass_with(
    state: &AppState,
    options: &SchedulerOptions,
    memory: &mut PassCache,
) -> Result<PassReport, ApiError> {
    // How long each phase took, logged at debug level.
    let mut phases = Phases::default();
    // Snapshot: everything the pass decides on (from the cache, once it has caught up
    // with the store); instances on lost nodes are released first.
    let mut snap = snapshot(state, memory).await?;
    phases.done("snapshot");
    let mut report = PassReport {
        rescheduled: release_lost(state, &mut snap).await?,
        ..PassReport::default()
    };
    phases.done("release_lost");
    // Plan: per workload, which instances stop and which start (`rollout.rs`), and the
    // periodic jobs' runs (`periodic.rs`).
    let now = jiff::Timestamp::now();
    let mut plans = {
        let memory = &*memory;
        compute(|| plan_rollouts(&snap, now, memory, options.max_starts_per_pass))
    };
    report.planned = plans.by_workload.len() + plans.periodic.len() + plans.quiet.len();
    report.deferred = plans.deferred.iter().map(|(_, d)| d.starts).sum();
    memory.deferred = plans.deferred.drain(..).collect();
    phases.done("plan_rollouts");
    report.removed = stop_allocations(state, &plans).await?;
    // Queued jobs admitted but not all running within their queue's `waitForReady`
    // give their resources back and wait again, after a back-off.
    let evicted = evict_unready(state, &snap, now).await?;
    report.removed += evicted.len();
    report.usage_written = write_usage(state, &snap, options).await?;
    report.removed += run_periodic(state, &plans).await?;
    memory.recheck_in = plans
        .by_workload
        .values()
        .filter_map(|p| p.recheck_in)
        .chain(plans.periodic.values().filter_map(|p| p.recheck_in))
        .chain((report.deferred > 0).then_some(Duration::ZERO))
        .min();
    phases.done("stop_evict_usage_periodic");
    // Place: what the plans start, and where it goes. A workload that did not fit last
    // time is skipped while neither it nor the fleet changed (this pass released or
    // removed nothing, which would change the fleet too).
    let fleet_settled = report.rescheduled == 0 && report.removed == 0;
    let placing = place(&snap, &plans, memory, options, fleet_settled, now)?;
    phases.done("place");
    if let Some(at) = placing.backing_off.values().min() {
        let wait = Duration::from_secs(at.duration_since(now).as_secs().max(1) as u64);
        memory.recheck_in = Some(memory.recheck_in.map_or(wait, |r| r.min(wait)));
    }
    report.pending = placing.pending_of.values().sum::<usize>() + report.deferred;
    report.waiting = placing.skipped.iter().map(|k| placing.pending_of[k]).sum();
    report.unplaceable = report.waiting;
    // Commit: one guarded transaction per node.
    let committed = commit_placements(state, &snap, &plans, &placing, options, &mut report).await?;
    report.gang_released = release_broken_gangs(state, &snap, &plans, &placing).await?;
    phases.done("commit_placements");
    // Status: what the plans say, and why the rest waits.
    let workloads = snap.workloads.len();
    let counts = write_statuses(
        state, &mut snap, &mut plans, &placing, &committed, &evicted, memory, options, now,
    )
    .await?;
    write_queue_statuses(state, &snap, &placing, &counts, now).await?;
    phases.done("write_statuses");
    tracing::debug!(
        workloads,
        allocations = snap.allocations.len(),
        pending = report.pending,
        placed = report.placed,
        phases = %phases,
        "scheduler pass phases"
    );
    Ok(report)
}

/// The phases of one pass, how long each took and the process's resident memory after
/// it (Linux; for finding what a large pass costs).
struct Phases {
    started: std::time::Instant,
    done: Vec<(&'static str, Duration, Option<u64>)>,
}

/// The process's resident set size in MiB, where `/proc` tells it.
fn rss_mib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096 / (1024 * 1024))
}

impl Default for Phases {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    fn done(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        let rss = tracing::enabled!(tracing::Level::DEBUG)
            .then(rss_mib)
            .flatten();
        self.done.push((phase, now - self.started, rss));
        self.started = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (phase, took, rss)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{phase}={:.1}ms", took.as_secs_f64() * 1e3)?;
            if let Some(mib) = rss {
                write!(f, "/{mib}MiB")?;
            }
        }
        Ok(())
    }
}

/// Evicts the queued jobs that were admitted but whose instances are not all running
/// within their queue's `waitForReady`: their allocations are deleted and they wait
/// again after a back-off (Kueue's `waitForPodsReady`). Returns their new queue states.
async fn evict_unready(
    state: &AppState,
    snap: &Snapshot,
    now: jiff::Timestamp,
) -> Result<HashMap<(String, String), api::queue::QueueState>, ApiError> {
    let mut evicted = HashMap::new();
    if snap.queues.of.is_empty() {
        return Ok(evicted);
    }
    for (w, _) in &snap.workloads {
        let key = (
            w.metadata.namespace.clone().unwrap_or_default(),
            w.metadata.name.clone(),
        );
        let Some(limit) = queues::unready(&snap.queues, &key, w, now) else {
            continue;
        };
        let prev = w
            .status
            .as_ref()
            .and_then(|s| s.queue.clone())
            .unwrap_or_default();
        for ((ns, name), (a, rev)) in &snap.allocations {
            if *ns == key.0 && a.spec.workload == key.1 {
                remove_allocation(state, ns, name, *rev).await?;
            }
        }
        let next = queues::requeued(&prev, limit, now);
        let message = next.message.clone().unwrap_or_default();
        tracing::info!(workload = %key.1, project = %key.0, "{message}");
        state.events.record(
            &ObjectReference::of(&**w),
            EventType::Warning,
            "Evicted",
            message,
            SOURCE,
        );
        evicted.insert(key, next);
    }
    Ok(evicted)
}

/// Writes each queue's status (pending and admitted jobs, usage, weighted share,
/// conditions) where it changed, and the queue metrics.
async fn write_queue_statuses(
    state: &AppState,
    snap: &Snapshot,
    placing: &Placing,
    counts: &HashMap<String, queues::Counts>,
    now: jiff::Timestamp,
) -> Result<(), ApiError> {
    let kind = api::kinds::QUEUE;
    let mut metrics = Vec::with_capacity(snap.queues.queues.len());
    let sites: HashSet<&str> = snap
        .sites
        .iter()
        .map(|s| s.metadata.name.as_str())
        .collect();
    let site_exists = |name: &str| sites.contains(name);
    for (name, (q, rev)) in &snap.queues.queues {
        let c = counts.get(name).copied().unwrap_or_default();
        let usage = placing.queue_usage.get(name);
        let mut want = queues::queue_status(&snap.queues, name, q, c, usage, &site_exists, now);
        metrics.push((
            name.clone(),
            c.pending,
            c.admitted,
            usage.map_or(0, |u| u.weighted_share),
        ));
        if usage.is_none() {
            // No fleet was built this pass: keep the usage last written.
            want.usage = q.status.as_ref().and_then(|s| s.usage.clone());
            want.weighted_share = q.status.as_ref().and_then(|s| s.weighted_share);
        }
        if q.status.as_ref() == Some(&want) {
            continue;
        }
        write_global_status(state, kind, name, q, &want, *rev).await?;
    }
    state.metrics.observe_queues(&metrics);
    // Cohort objects: their subtree's queues, usage and share (when a fleet was built).
    let mut shares = Vec::new();
    for (name, (c, rev)) in &snap.queues.cohorts {
        let Some(u) = placing.cohort_usage.get(name) else {
            continue;
        };
        shares.push((name.clone(), u.weighted_share));
        let want = api::queue::CohortStatus {
            queues: u.queues,
            usage: Some(u.usage.clone()),
            weighted_share: Some(u.weighted_share),
        };
        if c.status.as_ref() != Some(&want) {
            write_global_status(state, api::kinds::COHORT, name, c, &want, *rev).await?;
        }
    }
    if !placing.cohort_usage.is_empty() {
        state.metrics.observe_cohorts(&shares);
    }
    Ok(())
}

/// Writes `status` into global object `name` of `kind` (`object` as cached), guarded by
/// its revision `rev` (a change since makes the next pass write it again).
async fn write_global_status<T: serde::Serialize, S: serde::Serialize>(
    state: &AppState,
    kind: &'static api::kinds::KindInfo,
    name: &str,
    object: &T,
    status: &S,
    rev: Revision,
) -> Result<(), ApiError> {
    let mut object = serde_json::to_value(object).map_err(ApiError::internal)?;
    object["status"] = serde_json::to_value(status).map_err(ApiError::internal)?;
    let key = object_key(kind, None, name);
    let bytes = encode(&object);
    let audit = Registry::audit_record(
        &principal(),
        "update-status",
        kind,
        None,
        name,
        Some(&bytes),
    );
    state
        .registry
        .commit(Mutation::new(
            vec![Compare::ModRevision(key.clone(), rev)],
            vec![Op::put(key, bytes)],
            audit,
        ))
        .await?;
    Ok(())
}

/// The placement half of a pass.
struct Placing {
    decisions: Vec<Decision>,
    /// Instances to place, by workload.
    pending_of: BTreeMap<(String, String), usize>,
    /// Workloads not planned again: nothing changed since they did not fit.
    skipped: HashSet<(String, String)>,
    /// Queued jobs backing off after an eviction, and until when.
    backing_off: HashMap<(String, String), jiff::Timestamp>,
    /// What each queue holds after the placements (when a fleet was built).
    queue_usage: BTreeMap<String, placement::QueueUsage>,
    /// What each cohort's subtree holds likewise.
    cohort_usage: BTreeMap<String, placement::CohortUsage>,
}

impl Placing {
    /// By workload: its first unplaceable decision (the one its status explains) and how
    /// many of its instances did not fit.
    fn unplaceable(&self) -> BTreeMap<(String, String), (&Decision, usize)> {
        let mut out: BTreeMap<(String, String), (&Decision, usize)> = BTreeMap::new();
        for d in &self.decisions {
            if let Outcome::Unplaceable(_) = &d.outcome {
                out.entry((d.workload.namespace.clone(), d.workload.name.clone()))
                    .or_insert((d, 0))
                    .1 += 1;
            }
        }
        out
    }
}

/// What the commits did, by workload.
#[derive(Default)]
struct Committed {
    /// Placements committed.
    placed: HashMap<(String, String), u32>,
    /// The first refusal by admission.
    refused: BTreeMap<(String, String), String>,
}

/// Stops what the plans stop: allocations of deleted workloads and those the rollouts
/// replace or scale down. Returns how many it deleted.
async fn stop_allocations(state: &AppState, plans: &Plans) -> Result<usize, ApiError> {
    let mut removed = 0;
    for ((ns, name), (_, rev)) in &plans.orphans {
        if remove_allocation(state, ns, name, *rev).await? {
            removed += 1;
        }
    }
    for (key, plan) in &plans.by_workload {
        for (name, rev, why) in &plan.remove {
            if remove_allocation(state, &key.0, name, *rev).await? {
                tracing::debug!(allocation = %name, project = %key.0, ?why, "allocation stopped");
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Gangs are all-or-nothing while they run, too: a gang workload whose missing members
/// did not fit in this pass, while fewer than `spec.gang` of its members hold resources
/// (a member was deleted, or preempted by a server without gang-safe preemption), has
/// those members released, so the gang waits whole and holds nothing; the next pass
/// places it as one unit. A gang with at least `spec.gang` members placed is whole
/// (Volcano's `minAvailable`): its other replicas wait without touching it. Returns how
/// many allocations it released.
async fn release_broken_gangs(
    state: &AppState,
    snap: &Snapshot,
    plans: &Plans,
    placing: &Placing,
) -> Result<usize, ApiError> {
    let waiting: HashMap<(String, String), u32> = placing
        .unplaceable()
        .into_keys()
        .filter_map(|key| {
            let size = plans.workloads.get(&key)?.spec.gang?;
            Some((key, size))
        })
        .collect();
    if waiting.is_empty() {
        return Ok(0);
    }
    let holds = |a: &Allocation| {
        a.status
            .as_ref()
            .map(|s| s.phase)
            .unwrap_or_default()
            .holds_resources()
    };
    let mut members: HashMap<(String, String), Vec<(&str, Revision)>> = HashMap::new();
    for ((ns, name), (a, rev)) in &snap.allocations {
        let key = (ns.clone(), a.spec.workload.clone());
        if holds(a) && waiting.contains_key(&key) {
            members.entry(key).or_default().push((name.as_str(), *rev));
        }
    }
    let mut released = 0;
    for (key, held) in members {
        if held.len() >= waiting[&key] as usize {
            continue;
        }
        for (name, rev) in held {
            if remove_allocation(state, &key.0, name, rev).await? {
                tracing::info!(allocation = %name, project = %key.0, workload = %key.1, "its gang cannot be completed; released so the gang waits whole");
                released += 1;
            }
        }
    }
    Ok(released)
}

/// Asks the placement engine where the plans' new instances go (off the request
/// workers).
fn place(
    snap: &Snapshot,
    plans: &Plans,
    memory: &PassCache,
    options: &SchedulerOptions,
    fleet_settled: bool,
    now: jiff::Timestamp,
) -> Result<Placing, ApiError> {
    compute(|| {
        let mut batch = Batch::new();
        let queued = snap.queues.active();
        if queued {
            batch.set_queues(snap.queues.compiled.clone());
        }
        let mut planned = 0;
        let mut pending_of: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut skipped: HashSet<(String, String)> = HashSet::new();
        let mut backing_off = HashMap::new();
        for (w, rev) in &snap.workloads {
            let ns = w.metadata.namespace.clone().unwrap_or_default();
            let key = (ns.clone(), w.metadata.name.clone());
            let missing = match plans.by_workload.get(&key) {
                Some(p) if !p.place.is_empty() => p.place.clone(),
                _ => continue,
            };
            pending_of.insert(key.clone(), missing.len());
            let in_queue = snap.queues.of.contains_key(&key);
            if in_queue && let Some(at) = queues::backing_off(w, now) {
                backing_off.insert(key, at);
                continue;
            }
            // Jobs of a StrictFIFO queue are planned every pass: whether they may go
            // depends on the jobs ahead of them, not on themselves alone. (In a
            // best-effort queue a job that did not fit does not hold others back, and
            // its queue's and cohort's usage are the allocations the fleet key covers.)
            if fleet_settled
                && !snap.queues.strict(&key)
                && let Some(still) = memory.unchanged(&key, *rev, &snap.fleet_key)
                && still.instances == missing.len()
            {
                skipped.insert(key);
                continue;
            }
            planned += 1;
            let added = match snap.projects.get(&ns) {
                Some(p) => batch.add_in_project(w, p, missing),
                None => batch.add(w, missing),
            };
            if let Err(e) = added {
                tracing::warn!(workload = %w.metadata.name, project = %ns, error = %e, "cannot schedule workload");
            }
        }
        let mut queue_usage = BTreeMap::new();
        let mut cohort_usage = BTreeMap::new();
        let decisions = if planned == 0 && !queued {
            Vec::new()
        } else {
            let allocations = held(snap);
            let workloads = snap.workloads.iter().map(|(w, _)| &**w);
            let mut fleet = Fleet::from_objects(&snap.sites, &snap.nodes, allocations, workloads)
                .map_err(|e| {
                ApiError::internal(format!("cannot build the fleet snapshot: {e}"))
            })?;
            let decisions = if planned == 0 {
                Vec::new()
            } else {
                placement::place_batch(&mut fleet, &batch, &options.placement)
            };
            if queued {
                (queue_usage, cohort_usage) =
                    placement::queue_and_cohort_report(&fleet, &snap.queues.compiled);
            }
            decisions
        };
        Ok(Placing {
            decisions,
            pending_of,
            skipped,
            backing_off,
            queue_usage,
            cohort_usage,
        })
    })
}

/// A node, its ledger revision, and the allocations to create on it.
type NodeJob = (String, Revision, Vec<NewAllocation>);

/// Commits the placements, per node, each node's in one transaction guarded by its ledger
/// revision (with the preemptions they need, after admission).
async fn commit_placements(
    state: &AppState,
    snap: &Snapshot,
    plans: &Plans,
    placing: &Placing,
    options: &SchedulerOptions,
    report: &mut PassReport,
) -> Result<Committed, ApiError> {
    // Group placements by node; one guarded transaction per node.
    // (By index: the stream's futures below hold no borrowed argument.)
    let mut per_node: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in placing.decisions.iter().enumerate() {
        match &d.outcome {
            Outcome::Placed(p) => per_node.entry(p.node.clone()).or_default().push(i),
            Outcome::Unplaceable(_) => report.unplaceable += 1,
        }
    }
    let workload_of = |d: &Decision| {
        let key = (d.workload.namespace.clone(), d.workload.name.clone());
        let w = &**plans.workloads.get(&key)?;
        let plan = plans.by_workload.get(&key)?;
        let target = plan.target.as_ref()?;
        let name = plan
            .names
            .get(&d.replica)
            .cloned()
            .unwrap_or_else(|| rollout::allocation_name(&w.metadata.name, d.replica, target.0));
        Some((w, target, name))
    };
    // Each node's allocations are built just before its transaction, so a pass holds
    // the objects of the transactions in flight, not those of a whole backlog (for
    // 100,000 instances, hundreds of MiB of JSON).
    let build = |node: String, ds: Vec<usize>| -> Result<NodeJob, ApiError> {
        let ledger_rev = snap.ledgers.get(&node).copied().unwrap_or(0);
        let mut items = Vec::with_capacity(ds.len());
        for d in ds.into_iter().map(|i| &placing.decisions[i]) {
            let Some((w, target, name)) = workload_of(d) else {
                continue;
            };
            let mut victims = Vec::new();
            for v in d
                .placement()
                .map(|p| p.preempted.as_slice())
                .unwrap_or_default()
            {
                let name = v.allocation.name.clone().unwrap_or_else(|| {
                    rollout::allocation_name(&v.allocation.workload, v.allocation.replica, 1)
                });
                if let Some((_, rev)) = snap
                    .allocations
                    .get(&(v.allocation.namespace.clone(), name.clone()))
                {
                    victims.push((v.allocation.namespace.clone(), name, *rev));
                }
            }
            // Allocations pass admission like any write (a policy can forbid a placement).
            let for_admission = if state.policies.view().set.is_empty() {
                None
            } else {
                Some(serde_json::to_value(w).map_err(ApiError::internal)?)
            };
            items.push(NewAllocation {
                object: allocation_object(w, d, target, &name),
                victims,
                workload: for_admission,
            });
        }
        Ok((node, ledger_rev, items))
    };
    let build = &build;
    let commits = futures::stream::iter(per_node)
        .map(|(node, ds)| async move {
            let (node, rev, items) = build(node, ds)?;
            commit_node(state, node, rev, items).await
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut committed: HashMap<(String, String), u32> = HashMap::new();
    let mut refused: BTreeMap<(String, String), String> = BTreeMap::new();
    for outcome in commits {
        match outcome? {
            NodeCommit::Committed {
                placed,
                preempted,
                denied,
                conflicted,
            } => {
                report.conflicts += usize::from(conflicted);
                report.placed += placed.len();
                report.preempted += preempted;
                report.denied += denied.len();
                for key in placed {
                    *committed.entry(key).or_default() += 1;
                }
                for (key, message) in denied {
                    refused.entry(key).or_insert(message);
                }
            }
            NodeCommit::Conflict => report.conflicts += 1,
        }
    }

    Ok(Committed {
        placed: committed,
        refused,
    })
}

/// Writes every workload's status: its plan's, with why the rest waits (or, with
/// `autoRevert`, the reverted spec). Concurrently, so the store group-commits them
/// instead of one fsync each. The workloads none of whose pending instances fitted wait
/// for a change ([`PassCache::waiting`]).
#[allow(clippy::too_many_arguments)]
async fn write_statuses(
    state: &AppState,
    snap: &mut Snapshot,
    plans: &mut Plans,
    placing: &Placing,
    committed: &Committed,
    evicted: &HashMap<(String, String), api::queue::QueueState>,
    memory: &mut PassCache,
    options: &SchedulerOptions,
    now: jiff::Timestamp,
) -> Result<HashMap<String, queues::Counts>, ApiError> {
    let unplaceable = placing.unplaceable();
    let (pending_of, skipped) = (&placing.pending_of, &placing.skipped);
    let (refused, committed) = (&committed.refused, &committed.placed);
    // Queued jobs: where each waiting one stands, and each queue's counts.
    let waiting_in_queue: HashSet<(String, String)> = unplaceable
        .keys()
        .chain(skipped.iter())
        .chain(placing.backing_off.keys())
        .chain(evicted.keys())
        .filter(|k| snap.queues.of.contains_key(*k))
        .cloned()
        .collect();
    let positions = queues::positions(&snap.queues, &plans.workloads, &waiting_in_queue);
    // The flavour each queued job was placed in, this pass.
    let flavors: HashMap<(String, String), &str> = placing
        .decisions
        .iter()
        .filter_map(|d| {
            let f = d.placement()?.flavor.as_deref()?;
            Some(((d.workload.namespace.clone(), d.workload.name.clone()), f))
        })
        .collect();
    let mut counts: HashMap<String, queues::Counts> = HashMap::new();
    // Workloads whose plan had nothing to do, not to be planned again while nothing
    // changes (see the module documentation).
    let mut quiet: HashMap<(String, String), Quiet> = plans
        .still_quiet
        .iter()
        .filter_map(|key| memory.quiet.remove_entry(key))
        .collect();
    quiet.extend(plans.quiet.drain(..));
    // Workload status: the rollout's counts and conditions, and why the rest waits.
    // Written many per transaction (see `write_workloads`).
    let mut still_waiting = HashMap::new();
    // Building 100,000 statuses takes seconds: off the runtime's workers (so that the
    // session lease's renewals and the API keep their threads), a slice of workloads at a
    // time, each slice's transactions written while the next is built. A pass holds the
    // writes in flight, not a whole backlog's.
    //
    // The pass lets go of each workload once its status is built: the cache holds the
    // version the write makes, and a pass that writes every status would otherwise hold two
    // versions of every workload until it ends (BENCHMARKS.md, "A pass lets go of what it
    // has written").
    let mut workloads = std::mem::take(&mut snap.workloads).into_iter();
    let snap = &*snap;
    let (batches, mut ready_batches) = tokio::sync::mpsc::channel(options.concurrency.max(1));
    let produce = async {
        // Owned here, so the writer's stream ends once this is done.
        let batches = batches;
        let mut batcher = Batcher::new(state);
        loop {
            let slice: Vec<(Arc<Workload>, Revision)> =
                workloads.by_ref().take(STATUS_SLICE).collect();
            if slice.is_empty() {
                break;
            }
            let ready = compute(|| -> Result<Vec<Vec<WorkloadWrite>>, ApiError> {
                let mut ready = Vec::new();
                let mut emit = |write: WorkloadWrite| ready.extend(batcher.push(write));
                for (held, rev) in slice {
                    let ns = held.metadata.namespace.clone().unwrap_or_default();
                    let key = (ns, held.metadata.name.clone());
                    plans.workloads.remove(&key);
                    let (w, rev) = (&*held, &rev);
                    if skipped.contains(&key) {
                        if let Some(q) = snap.queues.of.get(&key) {
                            counts.entry(q.clone()).or_default().pending += 1;
                        }
                        // Its status already says why it waits: it was written, or found right, by
                        // the pass that planned it at this very revision.
                        if let Some(entry) = memory.waiting.remove(&key) {
                            still_waiting.insert(key, entry);
                        }
                        continue;
                    }
                    let Some(plan) = plans.by_workload.remove(&key) else {
                        if let Some(p) = plans.periodic.remove(&key) {
                            record_events(state, w, &p.events);
                            if let Some(write) = WorkloadWrite::status(w, *rev, p.status)? {
                                emit(write);
                            }
                        }
                        continue;
                    };
                    let pending = pending_of.get(&key).copied().unwrap_or(0);
                    let message = refused.get(&key).cloned().or_else(|| {
                        unplaceable
                            .get(&key)
                            .map(|(d, _)| d.explanation().summary.clone())
                    });
                    let none_fitted = unplaceable.get(&key).is_some_and(|(_, n)| *n == pending);
                    let queue = snap.queues.of.get(&key);
                    if pending > 0
                        && none_fitted
                        && !refused.contains_key(&key)
                        && !snap.queues.strict(&key)
                    {
                        let entry = Waiting {
                            revision: *rev,
                            fleet: snap.fleet_key,
                            since: std::time::Instant::now(),
                            instances: pending,
                        };
                        still_waiting.insert(key.clone(), entry);
                    }
                    // Waiting for the project's quota: says so in a condition (Kueue's
                    // `QuotaReserved`), gone once nothing waits for quota.
                    let quota_wait = unplaceable.get(&key).and_then(|(d, _)| {
                        d.explanation()
                            .rejections
                            .iter()
                            .find(|r| r.reason == placement::ReasonCode::Quota)
                            .map(|r| r.message.clone())
                    });
                    let mut status = plan.status;
                    finish_status(
                        &mut status,
                        committed.get(&key).copied().unwrap_or(0),
                        message.clone(),
                        quota_wait
                            .as_deref()
                            .filter(|_| pending > 0)
                            .map(|why| (pending, why)),
                    );
                    let mut queue_wait = None;
                    if let Some(q) = queue {
                        let prev = w.status.as_ref().and_then(|s| s.queue.as_ref());
                        let qs = if let Some(e) = evicted.get(&key) {
                            e.clone()
                        } else {
                            let wait = if let Some(at) = placing.backing_off.get(&key) {
                                Some(api::queue::QueueWait {
                                    queue: q.clone(),
                                    reason: api::queue::QueueReason::BackingOff,
                                    message: format!(
                                        "backing off after an eviction until {at}: {}",
                                        prev.and_then(|p| p.message.as_deref()).unwrap_or_default()
                                    ),
                                    partially_admitted: None,
                                })
                            } else {
                                unplaceable
                                    .get(&key)
                                    .and_then(|(d, _)| d.explanation().queue.clone())
                            };
                            // A finished job (Complete or Failed) holds nothing and leaves its
                            // queue's counts, as Kueue's finished workloads do.
                            let finished = ["Complete", "Failed"].iter().any(|t| {
                                status
                                    .condition(t)
                                    .is_some_and(|c| c.status == api::kinds::ConditionStatus::True)
                            });
                            let holds =
                                !finished && (status.placed_replicas > 0 || status.replicas > 0);
                            let mut qs = queues::state(
                                q,
                                prev,
                                wait.as_ref(),
                                positions.get(&key).copied(),
                                holds,
                                flavors.get(&key).copied(),
                                now,
                            );
                            if placing.backing_off.contains_key(&key) {
                                qs.requeue_at = prev.and_then(|p| p.requeue_at.clone());
                            } else if wait.is_none() {
                                qs.requeue_at = None;
                            }
                            qs
                        };
                        let c = counts.entry(q.clone()).or_default();
                        if qs.admitted {
                            c.admitted += 1;
                        } else if pending > 0 || qs.reason.is_some() {
                            c.pending += 1;
                        }
                        if status.message.is_none() && !qs.admitted {
                            status.message.clone_from(&qs.message);
                        }
                        queue_wait = qs
                            .reason
                            .filter(|r| *r != api::queue::QueueReason::NoCapacity);
                        status.queue = Some(qs);
                    }
                    record_events(state, w, &plan.events);
                    if let Some(message) = &message
                        && pending > 0
                    {
                        state.events.record(
                            &ObjectReference::of(w),
                            EventType::Warning,
                            if refused.contains_key(&key) {
                                "FailedAdmission"
                            } else if queue_wait.is_some() {
                                "Pending"
                            } else if quota_wait.is_some() {
                                "OverQuota"
                            } else {
                                "FailedScheduling"
                            },
                            format!("{pending} instances not placed: {message}"),
                            SOURCE,
                        );
                    }
                    let write = match plan.revert_to {
                        Some(to) => Some(WorkloadWrite::revert(w, *rev, status, &to)?),
                        None => WorkloadWrite::status(w, *rev, status)?,
                    };
                    if let Some(write) = write {
                        emit(write);
                    }
                }
                Ok(ready)
            })?;
            for batch in ready {
                if batches.send(batch).await.is_err() {
                    return Ok(());
                }
            }
        }
        if let Some(batch) = batcher.finish() {
            let _ = batches.send(batch).await;
        }
        Ok::<(), ApiError>(())
    };
    let batches = futures::stream::poll_fn(|cx| ready_batches.poll_recv(cx));
    let (produced, written) = tokio::join!(
        produce,
        write_workloads(state, batches, options.concurrency)
    );
    produced?;
    // The status write is the waiting workload's newest revision: not a change that calls
    // for planning it again.
    for (key, revision) in &written.revisions {
        if let Some(entry) = still_waiting.get_mut(key) {
            entry.revision = *revision;
        }
    }
    memory.waiting = still_waiting;
    memory.quiet = quiet;
    match written.failed {
        Some(e) => Err(e),
        None => Ok(counts),
    }
}

/// What a pass adds to a plan's status: the instances it placed (`placed`), why the rest
/// wait (`message`), and the `QuotaReserved` condition while `quota_wait` says some
/// (how many, why) wait for their project's quota.
fn finish_status(
    status: &mut api::kinds::WorkloadStatus,
    placed: u32,
    message: Option<String>,
    quota_wait: Option<(usize, &str)>,
) {
    match quota_wait {
        Some((pending, why)) => rollout::set_condition(
            &mut status.conditions,
            QUOTA_RESERVED,
            api::kinds::ConditionStatus::False,
            "OverQuota",
            format!("{pending} instances wait for quota: {why}"),
            jiff::Timestamp::now(),
            false,
        ),
        None => status.conditions.retain(|c| c.type_ != QUOTA_RESERVED),
    }
    status.placed_replicas = status
        .placed_replicas
        .saturating_add(placed)
        .min(status.desired_replicas);
    status.message = message;
}

/// The Workload condition that says its instances wait for their project's quota
/// (status `False`, reason `OverQuota`), as Kueue's.
pub const QUOTA_RESERVED: &str = "QuotaReserved";

/// Events of the scheduler's writes (`source.component`).
const SOURCE: &str = "scheduler";

/// What a plan did (a rollout step, a stop, a revert, a periodic run), as events on the
/// workload and in the server's log.
fn record_events(state: &AppState, w: &Workload, events: &[(bool, &'static str, String)]) {
    let involved = ObjectReference::of(w);
    let project = w.metadata.namespace.as_deref().unwrap_or_default();
    for (warning, reason, message) in events {
        if *warning {
            tracing::warn!(workload = %w.metadata.name, project, reason, "{message}");
        } else {
            tracing::info!(workload = %w.metadata.name, project, reason, "{message}");
        }
        let type_ = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        state
            .events
            .record(&involved, type_, reason, message.clone(), "rollout");
    }
}

/// Starts and deletes periodic jobs' runs (and the runs of deleted periodic jobs).
/// Returns how many it deleted.
async fn run_periodic(state: &AppState, plans: &Plans) -> Result<usize, ApiError> {
    let wl_kind = api::kinds::WORKLOAD;
    let mut deleted = 0;
    let mut deletes: Vec<(String, String, Revision)> = plans.orphan_runs.clone();
    for ((ns, _), p) in &plans.periodic {
        for (name, rev) in &p.delete {
            deletes.push((ns.clone(), name.clone(), *rev));
        }
    }
    for (ns, name, rev) in deletes {
        let key = object_key(wl_kind, Some(&ns), &name);
        let audit = Registry::audit_record(&principal(), "delete", wl_kind, Some(&ns), &name, None);
        let resp = state
            .registry
            .commit(Mutation::new(
                vec![Compare::ModRevision(key.clone(), rev)],
                vec![Op::Delete(key)],
                audit,
            ))
            .await?;
        if resp.succeeded {
            deleted += 1;
        }
    }
    for ((ns, _), p) in &plans.periodic {
        let Some(run) = &p.start else { continue };
        let mut value = serde_json::to_value(run).map_err(ApiError::internal)?;
        value["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        value["metadata"]["creationTimestamp"] = json!(registry::now_rfc3339());
        value["metadata"]["generation"] = json!(1);
        let value = api::validate::object_from_value_as(wl_kind, value)
            .map(|o| o.to_value())
            .map_err(|e| ApiError::internal(format!("the scheduler built an invalid run: {e}")))?;
        let key = object_key(wl_kind, Some(ns), &run.metadata.name);
        let bytes = encode(&value);
        let audit = Registry::audit_record(
            &principal(),
            "create",
            wl_kind,
            Some(ns),
            &run.metadata.name,
            Some(&bytes),
        );
        // Already started (by this or another server): nothing to do.
        state
            .registry
            .commit(Mutation::new(
                vec![Compare::Absent(key.clone())],
                vec![Op::put(key, bytes)],
                audit,
            ))
            .await?;
    }
    Ok(deleted)
}

/// The bounds of `quota` that `used` exceeds, as `gpus 3 > 1`, in a fixed order.
fn over_quota(used: &api::kinds::ResourceTotals, quota: &api::kinds::Quota) -> Vec<String> {
    let mut over = Vec::new();
    if let Some(q) = quota.cpu.filter(|q| used.cpu > *q) {
        over.push(format!("cpu {} > {q}", used.cpu));
    }
    if let Some(q) = quota.memory.filter(|q| used.memory > *q) {
        over.push(format!("memory {} > {q}", used.memory));
    }
    if let Some(q) = quota.gpus.filter(|q| used.gpus > *q) {
        over.push(format!("gpus {} > {q}", used.gpus));
    }
    if let Some(q) = quota.instances.filter(|q| used.instances > *q) {
        over.push(format!("instances {} > {q}", used.instances));
    }
    for (model, q) in &quota.gpus_by_model {
        let n = used.gpus_by_model.get(model).copied().unwrap_or_default();
        if n > *q {
            over.push(format!("{model} gpus {n} > {q}"));
        }
    }
    over
}

/// `Project.status.conditions` with `OverQuota` set from `used` (True while usage is
/// above a bound of the quota, which happens when the quota is lowered: nothing is
/// evicted, new placements wait) or removed when there is nothing to say.
fn quota_conditions(
    project: &Project,
    used: &api::kinds::ResourceTotals,
) -> Vec<api::kinds::Condition> {
    use api::kinds::{Condition, ConditionStatus};
    let mut conditions = project
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let over = project
        .spec
        .quota
        .as_ref()
        .map(|q| over_quota(used, q))
        .unwrap_or_default();
    let had = conditions.iter().position(|c| c.type_ == QUOTA_CONDITION);
    match (had, over.is_empty()) {
        (Some(i), true) => {
            conditions.remove(i);
        }
        (None, true) => {}
        (had, false) => {
            let message = format!(
                "usage is above the quota ({}); nothing is evicted, new placements that need more of it wait",
                over.join(", ")
            );
            match had {
                Some(i) => conditions[i].message = Some(message),
                None => conditions.push(Condition {
                    type_: QUOTA_CONDITION.to_string(),
                    status: ConditionStatus::True,
                    reason: Some("QuotaBelowUsage".to_string()),
                    message: Some(message),
                    last_transition_time: Some(registry::now_rfc3339()),
                    last_update_time: None,
                }),
            }
        }
    }
    conditions
}

/// The Project condition that says usage is above the quota.
const QUOTA_CONDITION: &str = "OverQuota";

/// Writes `Node.status.allocated` and `Project.status.used` where they changed, from the
/// allocations of the snapshot that hold resources (`AllocationPhase::holds_resources`,
/// summed by `ResourceTotals::add_allocation`), and a Project's `OverQuota` condition.
/// A project's usage counts the allocations on nodes of the snapshot: the same ones the
/// placement fleet accounts for and enforces quotas against ([`held`]). Returns how many
/// it wrote; a write that lost a race (a heartbeat) is retried by the next pass.
async fn write_usage(
    state: &AppState,
    snap: &Snapshot,
    options: &SchedulerOptions,
) -> Result<usize, ApiError> {
    use api::kinds::ResourceTotals;
    let nodes: HashSet<&str> = snap
        .nodes
        .iter()
        .map(|n| n.metadata.name.as_str())
        .collect();
    let mut per_node: HashMap<&str, ResourceTotals> = HashMap::new();
    let mut per_project: HashMap<&str, ResourceTotals> = HashMap::new();
    for ((ns, _), (a, _)) in &snap.allocations {
        let phase = a.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if !phase.holds_resources() || !nodes.contains(a.spec.node.as_str()) {
            continue;
        }
        per_node
            .entry(a.spec.node.as_str())
            .or_default()
            .add_allocation(&a.spec);
        per_project
            .entry(ns.as_str())
            .or_default()
            .add_allocation(&a.spec);
    }
    let mut writes: Vec<(&'static api::KindInfo, String, Revision, Value)> = Vec::new();
    for n in &snap.nodes {
        let want = per_node
            .remove(n.metadata.name.as_str())
            .unwrap_or_default();
        let have = n.status.as_ref().and_then(|s| s.allocated.clone());
        if have.as_ref() == Some(&want) || (have.is_none() && want == ResourceTotals::default()) {
            continue;
        }
        let mut node = n.clone();
        node.status.get_or_insert_with(Default::default).allocated = Some(want);
        let key = (api::kinds::NODE.kind, n.metadata.name.clone());
        if let Some(rev) = snap.revisions.get(&key) {
            writes.push((
                api::kinds::NODE,
                n.metadata.name.clone(),
                *rev,
                serde_json::to_value(&node).map_err(ApiError::internal)?,
            ));
        }
    }
    for (name, p) in &snap.projects {
        let want = per_project.remove(name.as_str()).unwrap_or_default();
        let have = p.status.as_ref().and_then(|s| s.used.clone());
        let conditions = quota_conditions(p, &want);
        let had = p
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        if conditions == had
            && (have.as_ref() == Some(&want)
                || (have.is_none() && want == ResourceTotals::default()))
        {
            continue;
        }
        let over = |cs: &[api::kinds::Condition]| cs.iter().any(|c| c.type_ == QUOTA_CONDITION);
        if over(&conditions) && !over(had) {
            let message = conditions
                .iter()
                .find(|c| c.type_ == QUOTA_CONDITION)
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
            state.events.record(
                &ObjectReference::of(p),
                EventType::Warning,
                QUOTA_CONDITION,
                message,
                SOURCE,
            );
        }
        let mut project = p.clone();
        let status = project.status.get_or_insert_with(Default::default);
        status.used = Some(want);
        status.conditions = conditions;
        let key = (api::kinds::PROJECT.kind, name.clone());
        if let Some(rev) = snap.revisions.get(&key) {
            writes.push((
                api::kinds::PROJECT,
                name.clone(),
                *rev,
                serde_json::to_value(&project).map_err(ApiError::internal)?,
            ));
        }
    }
    let mut commits = Vec::with_capacity(writes.len());
    for (kind, name, rev, object) in writes {
        let key = object_key(kind, None, &name);
        let bytes = encode(&object);
        let audit = Registry::audit_record(
            &principal(),
            "update-status",
            kind,
            None,
            &name,
            Some(&bytes),
        );
        commits.push(state.registry.commit(Mutation::new(
            vec![Compare::ModRevision(key.clone(), rev)],
            vec![Op::put(key, bytes)],
            audit,
        )));
    }
    let results = futures::stream::iter(commits)
        .buffer_unordered(options.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut written = 0;
    for r in results {
        if r?.succeeded {
            written += 1;
        }
    }
    Ok(written)
}

/// An allocation's (project, name).
type AllocationKey = (String, String);

/// The rollout plans of a pass.
struct Plans {
    /// Every workload of the snapshot (shared, not copied): `write_statuses` lets go of
    /// each once its status is built.
    workloads: HashMap<(String, String), Arc<Workload>>,
    by_workload: HashMap<(String, String), rollout::Plan>,
    /// Periodic jobs' plans, by (project, name).
    periodic: HashMap<(String, String), periodic::Plan>,
    /// Runs whose periodic job is gone: (project, name, revision).
    orphan_runs: Vec<(String, String, Revision)>,
    /// Allocations whose workload is gone.
    orphans: Vec<(AllocationKey, (Arc<Allocation>, Revision))>,
    /// Quiet workloads not planned in this pass (their [`PassCache::quiet`] entries stand).
    still_quiet: Vec<(String, String)>,
    /// Workloads planned in this pass and found quiet: their plans are not kept.
    quiet: Vec<((String, String), Quiet)>,
    /// Plans that only start instances, left for the next pass (see [`Starts`]), for
    /// [`PassCache::deferred`].
    deferred: Vec<((String, String), Deferred)>,
}

/// A workload whose plan only started instances and was left for a later pass, with what
/// that plan read: while both stay the same, its plan would be the same. (Ordered only to
/// sit in [`Starts`]'s heap.)
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deferred {
    revision: Revision,
    /// [`plan_inputs`] of its instances then.
    inputs: u64,
    /// The instances it starts.
    starts: usize,
}

/// Which workloads' new instances a pass starts, when more wait than
/// [`SchedulerOptions::max_starts_per_pass`]: the highest priority first, then the oldest
/// (as queues order jobs), then by name. Only plans that do nothing but start instances
/// are left out (a plan that stops some is carried out whole), and queued jobs never are:
/// where they stand in their queue depends on all of them. Workloads waiting for the
/// fleet to change ([`PassCache::unchanged`]) are not counted. Kept as plans are made, so a
/// pass holds the plans it carries out, not a whole backlog's. A workload left out by the
/// last pass whose plan would be the same again is not even planned once the pass has
/// enough that go before it ([`Starts::goes_after_all`]).
struct Starts {
    limit: usize,
    held: usize,
    /// The plans counted so far, the one that would go last on top.
    ranked: std::collections::BinaryHeap<(StartRank, Deferred)>,
}

/// Lower priority, then a newer creation, then the name, ranks later.
type StartRank = (std::cmp::Reverse<i32>, String, (String, String));

impl Starts {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            held: 0,
            ranked: std::collections::BinaryHeap::new(),
        }
    }

    /// Counts the plan of `w` (`key`, at store `revision`, having read `inputs`) that
    /// starts `starts` instances; returns the workloads whose plans no longer fit,
    /// possibly this one.
    fn count(
        &mut self,
        w: &Workload,
        key: &(String, String),
        at: Deferred,
    ) -> Vec<((String, String), Deferred)> {
        let created = w.metadata.creation_timestamp.clone().unwrap_or_default();
        self.ranked.push((
            (std::cmp::Reverse(w.spec.priority), created, key.clone()),
            at,
        ));
        self.held += at.starts;
        let mut out = Vec::new();
        while self.held > self.limit && self.ranked.len() > 1 {
            let Some(((_, _, key), at)) = self.ranked.pop() else {
                break;
            };
            self.held -= at.starts;
            out.push((key, at));
        }
        out
    }

    /// Whether `w`'s plan, were it counted now, would be the one left out: the pass
    /// already starts as many as it may, all ranked before `w`.
    fn goes_after_all(&self, w: &Workload, key: &(String, String)) -> bool {
        self.held >= self.limit
            && self.ranked.peek().is_some_and(|((last, created, k), _)| {
                let mine = (
                    std::cmp::Reverse(w.spec.priority),
                    w.metadata.creation_timestamp.as_deref().unwrap_or_default(),
                    key,
                );
                mine > (*last, created.as_str(), k)
            })
    }
}

/// Plans the instances (`rollout::plan`) of every workload of the snapshot that is not
/// quiet (see the module documentation).
fn plan_rollouts(
    snap: &Snapshot,
    now: jiff::Timestamp,
    memory: &PassCache,
    max_starts: usize,
) -> Plans {
    let (quiet, deferred_before) = (&memory.quiet, &memory.deferred);
    let workloads: HashMap<(String, String), Arc<Workload>> = snap
        .workloads
        .iter()
        .map(|(w, _)| {
            (
                (
                    w.metadata.namespace.clone().unwrap_or_default(),
                    w.metadata.name.clone(),
                ),
                Arc::clone(w),
            )
        })
        .collect();
    let mut instances: HashMap<(String, String), Vec<rollout::Instance<'_>>> = HashMap::new();
    let mut orphans = Vec::new();
    for ((ns, name), (a, rev)) in &snap.allocations {
        let key = (ns.clone(), a.spec.workload.clone());
        if workloads.contains_key(&key) {
            instances.entry(key).or_default().push(rollout::Instance {
                allocation: a,
                store_revision: *rev,
            });
        } else {
            orphans.push(((ns.clone(), name.clone()), (a.clone(), *rev)));
        }
    }
    // Periodic jobs and their runs.
    let mut runs: HashMap<(String, String), Vec<(&Workload, Revision)>> = HashMap::new();
    let mut orphan_runs = Vec::new();
    for (w, rev) in &snap.workloads {
        let Some(parent) = w.metadata.labels.get(periodic::PERIODIC_LABEL) else {
            continue;
        };
        let ns = w.metadata.namespace.clone().unwrap_or_default();
        let key = (ns.clone(), parent.clone());
        match workloads.get(&key) {
            Some(p) if p.spec.schedule.is_some() => {
                runs.entry(key).or_default().push((&**w, *rev));
            }
            _ => orphan_runs.push((ns, w.metadata.name.clone(), *rev)),
        }
    }
    // Where other services reach a node: its first InternalIP, else its first address.
    let addresses: HashMap<&str, &str> = snap
        .nodes
        .iter()
        .filter_map(|n| {
            let addrs = &n.status.as_ref()?.addresses;
            let a = addrs
                .iter()
                .find(|a| a.type_ == api::task::NodeAddressType::InternalIp)
                .or(addrs.first())?;
            Some((n.metadata.name.as_str(), a.address.as_str()))
        })
        .collect();
    let mut by_workload = HashMap::new();
    let mut periodic = HashMap::new();
    let mut still_quiet = Vec::new();
    let mut quiet_now = Vec::new();
    let mut starts = Starts::new(max_starts);
    let mut deferred = Vec::new();
    for (w, revision) in &snap.workloads {
        let key = (
            w.metadata.namespace.clone().unwrap_or_default(),
            w.metadata.name.clone(),
        );
        if w.spec.schedule.is_some() {
            let mine = runs.get(&key).map(Vec::as_slice).unwrap_or_default();
            periodic.insert(key, periodic::plan(w, mine, now));
            continue;
        }
        let mine = instances.get(&key).map(Vec::as_slice).unwrap_or_default();
        // Queued jobs are planned every pass: where they stand depends on the others.
        let inputs = (!snap.queues.of.contains_key(&key)).then(|| plan_inputs(mine, &addresses));
        if let Some(read) = inputs {
            let unchanged = quiet.get(&key).is_some_and(|q| {
                q.revision == *revision && q.inputs == read && q.since.elapsed() < QUIET_REPLAN
            });
            if unchanged {
                still_quiet.push(key);
                continue;
            }
            // Left out last time, and would be again: not planned at all.
            if let Some(d) = deferred_before.get(&key)
                && d.revision == *revision
                && d.inputs == read
                && starts.goes_after_all(w, &key)
            {
                deferred.push((key, *d));
                continue;
            }
        }
        let mut plan = rollout::plan(w, mine, now);
        plan.status.endpoints = rollout::endpoints(mine, |n| addresses.get(n).copied());
        // Nothing to do and nothing to write: quiet from now on, and the plan is not kept.
        if let Some(read) = inputs
            && is_idle(&plan)
        {
            let mut status = std::mem::take(&mut plan.status);
            finish_status(&mut status, 0, None, None);
            if w.status.as_ref() == Some(&status) {
                let entry = Quiet {
                    revision: *revision,
                    inputs: read,
                    since: std::time::Instant::now(),
                };
                quiet_now.push((key, entry));
                continue;
            }
            plan.status = status;
        }
        // A workload none of whose instances fitted, while nothing changed since, takes
        // no share of the limit: `place` skips it, and it would starve what fits. Queued
        // jobs are never left out (they have no `inputs`).
        let only_starts = !plan.place.is_empty()
            && plan.remove.is_empty()
            && memory.unchanged(&key, *revision, &snap.fleet_key).is_none();
        let left = match inputs {
            Some(inputs) if only_starts => {
                let at = Deferred {
                    revision: *revision,
                    inputs,
                    starts: plan.place.len(),
                };
                starts.count(w, &key, at)
            }
            _ => Vec::new(),
        };
        by_workload.insert(key, plan);
        for (key, at) in left {
            by_workload.remove(&key);
            deferred.push((key, at));
        }
    }
    Plans {
        workloads,
        by_workload,
        periodic,
        orphan_runs,
        orphans,
        still_quiet,
        quiet: quiet_now,
        deferred,
    }
}

/// Whether a plan has nothing to do: nothing to place or stop, no revert, no event, and
/// nothing that changes with time alone.
fn is_idle(plan: &rollout::Plan) -> bool {
    plan.place.is_empty()
        && plan.remove.is_empty()
        && plan.revert_to.is_none()
        && plan.recheck_in.is_none()
        && plan.events.is_empty()
}

/// The Allocation for a placed decision.
fn allocation_object(
    w: &Workload,
    d: &Decision,
    (revision, hash): &(u32, String),
    name: &str,
) -> Value {
    let p = d
        .placement()
        .expect("only placed decisions become allocations");
    let ns = d.workload.namespace.clone();
    json!({
        "apiVersion": api::API_VERSION,
        "kind": "Allocation",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"meridian.dev/workload": w.metadata.name},
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": registry::now_rfc3339(),
            "generation": 1,
        },
        "spec": {
            "workload": w.metadata.name,
            "replica": d.replica,
            "node": p.node,
            "site": p.site,
            "desiredState": "run",
            "resources": serde_json::to_value(&p.resources).unwrap_or_default(),
            "task": serde_json::to_value(&w.spec.task).unwrap_or_default(),
            "workloadGeneration": w.metadata.generation,
            "revision": revision,
            "templateHash": hash,
            "type": w.spec.type_,
            "restart": w.spec.restart,
            "explanation": d.explanation(),
            "ports": p.ports,
        },
        "status": {"phase": "pending"},
    })
}

/// An Allocation to create.
struct NewAllocation {
    object: Value,
    /// The allocations it evicts: (project, name, revision).
    victims: Vec<(String, String, Revision)>,
    /// Its Workload, when admission policies are installed.
    workload: Option<Value>,
}

enum NodeCommit {
    Committed {
        /// The (project, workload) of every committed placement.
        placed: Vec<(String, String)>,
        preempted: usize,
        /// Placements refused by admission: (project, workload) and the refusal.
        denied: Vec<((String, String), String)>,
        /// A later transaction of the node's (past the store's operation limit) found the
        /// ledger moved: the placements after it wait for the next pass.
        conflicted: bool,
    },
    Conflict,
}

/// Commit every placement on one node (and evict its victims) in one transaction guarded
/// by the node's ledger revision, or in several, each guarded by the ledger revision the
/// previous one wrote, where one would exceed the store's operation limit.
async fn commit_node(
    state: &AppState,
    node: String,
    ledger_rev: Revision,
    items: Vec<NewAllocation>,
) -> Result<NodeCommit, ApiError> {
    let who = principal();
    let mut denied = Vec::new();
    let mut admitted = Vec::with_capacity(items.len());
    for NewAllocation {
        object,
        victims,
        workload,
    } in items
    {
        let Some(workload) = workload else {
            admitted.push((object, victims));
            continue;
        };
        let result = state.policies.admit(
            policy::Operation::Create,
            Some(&object),
            None,
            &who,
            Some(&workload),
        );
        if result.allowed() {
            admitted.push((object, victims));
        } else {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let name = object["spec"]["workload"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let message = result
                .denial_message()
                .unwrap_or_else(|| "admission denied".to_owned());
            tracing::info!(workload = %name, project = %ns, node = %node, %message, "placement refused by policy");
            denied.push((
                (ns, name),
                format!("placement on node {node} refused: {message}"),
            ));
        }
    }
    let items = admitted;
    if items.is_empty() {
        return Ok(NodeCommit::Committed {
            placed: Vec::new(),
            preempted: 0,
            denied,
            conflicted: false,
        });
    }
    let alloc_kind = api::kinds::ALLOCATION;
    let ledger = format!("{LEDGER_PREFIX}{node}");
    // One unit per placement: its guards, writes, audit entries and events.
    let mut units: Vec<PlacementUnit> = Vec::with_capacity(items.len());
    let mut evicted: HashSet<String> = HashSet::new();
    // Each object is let go of once encoded: a node may take hundreds of placements, and
    // while its transaction is in flight a decoded object costs several times its bytes.
    for (object, victims) in items {
        // Validate what we write, exactly as the API would.
        let object = api::validate::object_from_value_as(alloc_kind, object)
            .map(|o| o.to_value())
            .map_err(|e| {
                ApiError::internal(format!("the scheduler built an invalid Allocation: {e}"))
            })?;
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = object_key(alloc_kind, Some(&ns), &name);
        let bytes = encode(&object);
        let workload = object["spec"]["workload"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut unit = PlacementUnit {
            compares: vec![Compare::Absent(key.clone())],
            ops: Vec::new(),
            audit: vec![Registry::audit_record(
                &who,
                "create",
                alloc_kind,
                Some(&ns),
                &name,
                Some(&bytes),
            )],
            events: vec![(
                ObjectReference::new(
                    alloc_kind,
                    Some(&ns),
                    &name,
                    object["metadata"]["uid"].as_str(),
                ),
                EventType::Normal,
                "Scheduled",
                format!("Successfully assigned {ns}/{name} to {node}"),
            )],
            placed: (ns.clone(), workload),
            preempted: 0,
        };
        unit.ops.push(Op::put(key, bytes));
        for (vns, vname, vrev) in &victims {
            let vkey = object_key(alloc_kind, Some(vns), vname);
            if !evicted.insert(vkey.clone()) {
                continue;
            }
            unit.compares
                .push(Compare::ModRevision(vkey.clone(), *vrev));
            unit.ops.push(Op::Delete(vkey));
            unit.events.push((
                ObjectReference::new(alloc_kind, Some(vns), vname, None),
                EventType::Warning,
                "Preempted",
                format!("Preempted on node {node} by {ns}/{name}, of higher priority"),
            ));
            unit.audit.push(Registry::audit_record(
                &who,
                "preempt",
                alloc_kind,
                Some(vns),
                vname,
                None,
            ));
            unit.preempted += 1;
        }
        units.push(unit);
    }
    // As few transactions as the store's operation limit allows (etcd's --max-txn-ops;
    // one on SQLite), each guarded by the ledger revision the previous one wrote: a
    // prefix of placements that fit the node fits it too, and another writer's commit
    // in between stops the rest (placed again next pass).
    let mut chunks: Vec<Vec<PlacementUnit>> = Vec::new();
    let mut size = (1, 1, 0); // (compares, ops, audit entries): the ledger's guard and put
    for unit in units {
        let grown = (
            size.0 + unit.compares.len(),
            size.1 + unit.ops.len(),
            size.2 + unit.audit.len(),
        );
        if !state.registry.fits(
            1 + unit.compares.len(),
            1 + unit.ops.len(),
            unit.audit.len(),
        ) {
            let message = format!(
                "placement on node {node} refused: it evicts {} allocations, more than one \
                 store transaction holds (--etcd-max-txn-ops {})",
                unit.preempted,
                state.registry.max_txn_ops().unwrap_or_default()
            );
            tracing::warn!(%message, "placement does not fit one transaction");
            denied.push((unit.placed, message));
            continue;
        }
        match chunks.last_mut() {
            Some(chunk) if state.registry.fits(grown.0, grown.1, grown.2) => {
                size = grown;
                chunk.push(unit);
            }
            _ => {
                size = (
                    1 + unit.compares.len(),
                    1 + unit.ops.len(),
                    unit.audit.len(),
                );
                chunks.push(vec![unit]);
            }
        }
    }
    let mut guard = ledger_rev;
    let mut placed = Vec::new();
    let mut preempted = 0;
    let mut conflicted = false;
    for chunk in chunks {
        let mut compares = vec![Compare::ModRevision(ledger.clone(), guard)];
        let mut ops = Vec::new();
        let mut audit = Vec::new();
        for unit in &chunk {
            compares.extend(unit.compares.iter().cloned());
            ops.extend(unit.ops.iter().cloned());
            audit.extend(unit.audit.iter().cloned());
        }
        ops.push(Op::put(ledger.clone(), node.as_bytes().to_vec()));
        let ledger_at = ops.len() - 1;
        let mut audit = audit.into_iter();
        let first = audit.next().expect("every unit has an audit entry");
        let resp = state
            .registry
            .commit(Mutation {
                compares,
                ops,
                audit: first,
                more_audit: audit.collect(),
            })
            .await?;
        if !resp.succeeded {
            conflicted = true;
            break;
        }
        guard = match resp.results.get(ledger_at) {
            Some(OpResult::Put { kv, .. }) => kv.mod_revision,
            _ => resp.revision,
        };
        for unit in chunk {
            for (involved, type_, reason, message) in unit.events {
                state
                    .events
                    .record(&involved, type_, reason, message, SOURCE);
            }
            placed.push(unit.placed);
            preempted += unit.preempted;
        }
    }
    if conflicted && placed.is_empty() && denied.is_empty() {
        return Ok(NodeCommit::Conflict);
    }
    Ok(NodeCommit::Committed {
        placed,
        preempted,
        denied,
        conflicted,
    })
}

/// One placement of [`commit_node`]: what it guards, writes, audits and reports.
struct PlacementUnit {
    compares: Vec<Compare>,
    ops: Vec<Op>,
    audit: Vec<AuditRecord>,
    events: Vec<(ObjectReference, EventType, &'static str, String)>,
    placed: (String, String),
    preempted: usize,
}

/// Remove an allocation that no workload wants any more.
async fn remove_allocation(
    state: &AppState,
    ns: &str,
    name: &str,
    rev: Revision,
) -> Result<bool, ApiError> {
    let alloc_kind = api::kinds::ALLOCATION;
    let key = object_key(alloc_kind, Some(ns), name);
    let audit = Registry::audit_record(&principal(), "delete", alloc_kind, Some(ns), name, None);
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![Compare::ModRevision(key.clone(), rev)],
            vec![Op::Delete(key)],
            audit,
        ))
        .await?;
    Ok(resp.succeeded)
}

/// A workload's new object, to write guarded by the revision it was read at.
struct WorkloadWrite {
    /// (namespace, name).
    key: (String, String),
    read_at: Revision,
    bytes: Vec<u8>,
    verb: &'static str,
}

impl WorkloadWrite {
    /// Its `status`, when that changed.
    fn status(
        w: &Workload,
        rev: Revision,
        status: api::kinds::WorkloadStatus,
    ) -> Result<Option<Self>, ApiError> {
        if w.status.as_ref() == Some(&status) {
            return Ok(None);
        }
        let mut object = serde_json::to_value(w).map_err(ApiError::internal)?;
        object["status"] = serde_json::to_value(&status).map_err(ApiError::internal)?;
        Ok(Some(Self::of(w, rev, &object, "update-status")))
    }

    /// `autoRevert`: the spec returns to `to`'s template (a new generation, rolled out
    /// like any change), with the status that says why.
    fn revert(
        w: &Workload,
        rev: Revision,
        status: api::kinds::WorkloadStatus,
        to: &api::WorkloadRevision,
    ) -> Result<Self, ApiError> {
        let mut reverted = Workload::clone(w);
        to.template.apply_to(&mut reverted.spec);
        reverted.metadata.generation = Some(w.metadata.generation.unwrap_or(1) + 1);
        reverted.status = Some(status);
        let object = serde_json::to_value(&reverted).map_err(ApiError::internal)?;
        Ok(Self::of(w, rev, &object, "revert"))
    }

    fn of(w: &Workload, read_at: Revision, object: &Value, verb: &'static str) -> Self {
        Self {
            key: (
                w.metadata.namespace.clone().unwrap_or_default(),
                w.metadata.name.clone(),
            ),
            read_at,
            bytes: encode(object),
            verb,
        }
    }

    fn store_key(&self) -> String {
        object_key(api::kinds::WORKLOAD, Some(&self.key.0), &self.key.1)
    }
}

/// Workloads one transaction writes at most (fewer where the store's op limit says so).
const WORKLOADS_PER_COMMIT: usize = 128;
/// Bytes of workload objects one transaction writes at most (etcd refuses requests over
/// 1.5 MiB by default), unless one object alone is larger.
const WORKLOAD_BYTES_PER_COMMIT: usize = 512 * 1024;

/// What [`write_workloads`] wrote.
#[derive(Default)]
struct Written {
    /// The new revision of each workload written.
    revisions: Vec<((String, String), Revision)>,
    /// The last error, when a commit failed (the others still ran).
    failed: Option<ApiError>,
}

/// Workloads whose statuses are built at a time (see `write_statuses`).
const STATUS_SLICE: usize = 1_024;

/// Groups workload writes into the batches of one transaction each: at most the store's
/// op limit or [`WORKLOADS_PER_COMMIT`], and [`WORKLOAD_BYTES_PER_COMMIT`] (unless one
/// object alone is larger).
struct Batcher {
    per_commit: usize,
    current: Vec<WorkloadWrite>,
    bytes: usize,
}

impl Batcher {
    fn new(state: &AppState) -> Self {
        Self {
            per_commit: state
                .registry
                .batch_len((0, 0, 0), (1, 1, 1), WORKLOADS_PER_COMMIT),
            current: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds `write`; returns the batch it did not fit in, which is full.
    fn push(&mut self, write: WorkloadWrite) -> Option<Vec<WorkloadWrite>> {
        let full = !self.current.is_empty()
            && (self.current.len() >= self.per_commit
                || self.bytes + write.bytes.len() > WORKLOAD_BYTES_PER_COMMIT);
        let done = full.then(|| {
            self.bytes = 0;
            std::mem::replace(&mut self.current, Vec::with_capacity(self.per_commit))
        });
        self.bytes += write.bytes.len();
        self.current.push(write);
        done
    }

    /// The last batch, if any.
    fn finish(self) -> Option<Vec<WorkloadWrite>> {
        (!self.current.is_empty()).then_some(self.current)
    }
}

/// Writes batches of workload objects ([`Batcher`]), one transaction each, each object
/// guarded by the revision it was read at and audited by its own entry, `concurrency`
/// transactions at a time (which the store group-commits). A workload changed since it
/// was read is left out, and the rest of its transaction written again: a lost race is
/// fine, the next pass writes it again.
async fn write_workloads(
    state: &AppState,
    batches: impl futures::Stream<Item = Vec<WorkloadWrite>>,
    concurrency: usize,
) -> Written {
    let outcomes = batches
        .map(|batch| commit_workloads(state, batch))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut written = Written::default();
    for outcome in outcomes {
        match outcome {
            Ok(revisions) => written.revisions.extend(revisions),
            Err(e) => written.failed = Some(e),
        }
    }
    written
}

/// Commits one batch of [`write_workloads`]; when a guard fails, again without the
/// workloads that moved.
async fn commit_workloads(
    state: &AppState,
    mut batch: Vec<WorkloadWrite>,
) -> Result<Vec<((String, String), Revision)>, ApiError> {
    let who = principal();
    while !batch.is_empty() {
        let mut compares = Vec::with_capacity(batch.len());
        let mut ops = Vec::with_capacity(batch.len());
        let mut audits = Vec::with_capacity(batch.len());
        for write in &batch {
            let key = write.store_key();
            audits.push(Registry::audit_record(
                &who,
                write.verb,
                api::kinds::WORKLOAD,
                Some(&write.key.0),
                &write.key.1,
                Some(&write.bytes),
            ));
            compares.push(Compare::ModRevision(key.clone(), write.read_at));
            ops.push(Op::put(key, write.bytes.clone()));
        }
        let audit = audits.remove(0);
        let response = state
            .registry
            .commit(Mutation {
                compares,
                ops,
                audit,
                more_audit: audits,
            })
            .await?;
        if response.succeeded {
            let revision = response.revision;
            return Ok(batch.into_iter().map(|w| (w.key, revision)).collect());
        }
        // The failure branch read every guarded key: keep those still at their revision.
        let before = batch.len();
        let mut results = response.results.iter();
        batch.retain(|write| match results.next() {
            Some(OpResult::Get(Some(kv))) => kv.mod_revision == write.read_at,
            _ => false,
        });
        if batch.len() == before {
            // Nothing moved that a retry could leave out: the next pass writes again.
            break;
        }
    }
    Ok(Vec::new())
}

/// A read-only view for `explain` and `plan`: the live fleet.
pub async fn live_fleet(state: &AppState) -> Result<LiveFleet, ApiError> {
    let snap = snapshot(state, &mut PassCache::default()).await?;
    let allocations = held(&snap);
    let workloads = snap.workloads.iter().map(|(w, _)| &**w);
    let fleet = Fleet::from_objects(&snap.sites, &snap.nodes, allocations, workloads)
        .map_err(|e| ApiError::internal(format!("cannot build the fleet snapshot: {e}")))?;
    Ok(LiveFleet {
        fleet,
        projects: Arc::new(snap.projects),
        queues: snap.queues.compiled.clone(),
    })
}

/// The estate as the scheduler sees it now, for what-if answers.
pub struct LiveFleet {
    pub fleet: Fleet,
    pub projects: Arc<BTreeMap<String, Project>>,
    /// The queues, accounting for every job of the estate.
    pub queues: Arc<placement::Queues>,
}
