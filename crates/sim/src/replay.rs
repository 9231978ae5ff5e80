//! Trace replay behind `meridian bench queue`: the tasks of a GPU cluster trace
//! ([`crate::trace`]) placed on its nodes through the real placement code, on a simulated
//! clock, under several scoring policies in one run.
//!
//! Each policy gets a fresh snapshot ([`Fleet`]) of the trace's nodes; every task becomes
//! a Workload of one replica (its cpu, memory and GPU request, a share of one GPU for
//! `gpu_milli` below 1000; its allowed GPU models as a `node.gpu.model In [...]`
//! expression; its QoS class as its project) and is placed by [`placement::place_batch`],
//! the function the server's scheduler runs. Two experiments per policy:
//!
//! - **Replay**: arrivals at `creation_time`; a task that starts runs for as long as it ran
//!   in the trace (deletion minus start) and then leaves, releasing what it held.
//!   A task that does not fit waits; waiting tasks are tried again, in the [`Queue`]'s
//!   order, whenever a task leaves (best-effort FIFO: a waiting task does not block the
//!   ones behind it; within one round, a task shaped like one that just failed is not
//!   tried again). Reported: the GPU allocation ratio at every 5% of the trace's GPU
//!   demand having arrived, the allocation ratio and unallocated GPUs at the first
//!   arrival that did not fit, queueing delay (start minus arrival) overall and per
//!   QoS class, preemptions and partial gangs.
//! - **Inflation** (the experiment of Weng et al., USENIX ATC 2023, whose trace this
//!   is): tasks drawn from the trace with a seeded generator, the same draws for every
//!   policy, submitted without departures until their GPU demand reaches the cluster's
//!   GPU capacity; reported at every 5% of capacity arrived and at the first task that
//!   did not fit.
//!
//! Policies: [`Policy::Fragmentation`] (placement's default for GPU work,
//! [`placement::GpuScoring::Fragmentation`]), [`Policy::BestFit`]
//! ([`placement::GpuScoring::BestFit`]), and [`Policy::RandomFit`], a baseline that
//! exists only here: a uniformly random node among those with room (the first of a
//! seeded shuffle that [`Fleet::apply`] accepts), so that placement itself stays
//! deterministic.
//!
//! A queue layer plugs in through [`Queue`]: it orders the waiting tasks before each
//! round and admits (or holds) each one; by default ([`Fifo`]) arrival order and
//! everything admitted.
//!
//! No I/O, no clock: the caller reads the files and times the run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::sync::Arc;

use api::explanation::{
    AllocationRef, Decision, Evaluated, Explanation, Outcome, Placement, Score, WorkloadRef,
};
use api::{Node, Site, Workload};
use placement::{Batch, Fleet, GpuScoring, Options, TaskMix};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;

use crate::trace::{TraceNode, TraceTask};

/// A placement policy the replay compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// Fragmentation gradient descent (placement's default for GPU work).
    Fragmentation,
    /// Best fit (Meridian's binpack score).
    BestFit,
    /// A random node with room.
    RandomFit,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Fragmentation, Policy::BestFit, Policy::RandomFit];

    /// `fgd`, `bestfit`, `randomfit`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fragmentation => "fgd",
            Policy::BestFit => "bestfit",
            Policy::RandomFit => "randomfit",
        }
    }

    /// From its [`Policy::name`].
    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Hooks between the waiting tasks and placement: where queues plug in.
pub trait Queue {
    /// Orders the waiting tasks (indexes into the trace's tasks, in arrival order when
    /// called) before a round tries them. FIFO by default.
    fn order(&mut self, _now: u64, _tasks: &[TraceTask], _pending: &mut [usize]) {}
    /// Whether a task may be tried now (quota, fair share, a reservation...).
    fn admit(&mut self, _now: u64, _task: &TraceTask) -> bool {
        true
    }
    /// A task started (it holds its resources until [`Queue::finished`]).
    fn started(&mut self, _now: u64, _task: &TraceTask) {}
    /// A task that had started left.
    fn finished(&mut self, _now: u64, _task: &TraceTask) {}
}

/// Arrival order, everything admitted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo;

impl Queue for Fifo {}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    pub policies: Vec<Policy>,
    /// Seeds the inflation draws and random fit.
    pub seed: u64,
    /// Whether to run the inflation experiment too.
    pub inflation: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            policies: Policy::ALL.to_vec(),
            seed: 1,
            inflation: true,
        }
    }
}

/// The GPU allocation ratio once some demand had arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Arrived GPU demand: of the trace's total (replay) or of the cluster's GPUs
    /// (inflation), 0..=1.
    pub arrived: f64,
    /// Allocated GPUs over the cluster's GPUs, 0..=1.
    pub allocation: f64,
}

/// The first task that did not fit when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub task: String,
    /// Simulated seconds (replay), or the number of tasks submitted before (inflation).
    pub at: u64,
    pub arrived: f64,
    pub allocation: f64,
    /// GPUs not allocated then (the cluster's GPUs minus allocated, shares counted).
    pub unallocated_gpus: f64,
}

/// Queueing delay of the tasks that started: seconds from arrival to start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delay {
    pub tasks: usize,
    pub mean_s: f64,
    pub p95_s: u64,
}

impl Delay {
    fn of(mut v: Vec<u64>) -> Delay {
        if v.is_empty() {
            return Delay::default();
        }
        v.sort_unstable();
        let rank = (v.len() * 95).div_ceil(100).max(1);
        Delay {
            tasks: v.len(),
            mean_s: v.iter().sum::<u64>() as f64 / v.len() as f64,
            p95_s: v[rank - 1],
        }
    }
}

/// The replay's figures for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFigures {
    pub tasks: usize,
    /// Started when they arrived.
    pub placed_on_arrival: usize,
    /// Started at all (on arrival or later).
    pub started: usize,
    /// Still waiting when the trace ended.
    pub never_started: usize,
    pub series: Vec<Point>,
    pub first_failure: Option<Failure>,
    pub peak_allocation: f64,
    pub delay: Delay,
    /// Per QoS class (which stand in for queues).
    pub delay_by_qos: BTreeMap<String, Delay>,
    pub preemptions: usize,
    pub partial_gangs: usize,
    /// Placement attempts (arrivals and retries).
    pub attempts: usize,
}

/// The inflation experiment's figures for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct InflationFigures {
    pub submitted: usize,
    pub failed: usize,
    pub series: Vec<Point>,
    pub first_failure: Option<Failure>,
    /// When the arrived demand reached the cluster's GPUs.
    pub final_allocation: f64,
    pub final_unallocated_gpus: f64,
    /// Per queue (one per QoS class, admitted by Meridian's queues): its entitled share
    /// of the GPUs and the share of the allocated GPUs it held at the first failure (or
    /// at the end when nothing failed).
    pub fairness: BTreeMap<String, Share>,
}

/// A queue's entitled and actual share of the allocated GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Share {
    pub entitled: f64,
    pub held: f64,
}

impl InflationFigures {
    /// The largest deviation of a queue's held share from its entitled share.
    pub fn max_deviation(&self) -> f64 {
        self.fairness
            .values()
            .map(|s| (s.held - s.entitled).abs())
            .fold(0.0, f64::max)
    }
}

/// All figures of one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyReport {
    pub policy: Policy,
    pub replay: ReplayFigures,
    pub inflation: Option<InflationFigures>,
}

/// What the trace is.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    pub nodes: usize,
    pub gpu_nodes: usize,
    pub gpus: u64,
    pub tasks: usize,
    pub gpu_tasks: usize,
    pub shared_gpu_tasks: usize,
    /// Sum of the tasks' GPU requests, in GPUs.
    pub gpu_demand: f64,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("building the snapshot of the trace's nodes")]
    Fleet(#[from] placement::FleetError),
    #[error("task {task}: {source}")]
    Task {
        task: String,
        #[source]
        source: placement::PlacementError,
    },
    #[error("the trace's objects are not valid API objects: {0}")]
    Object(String),
    #[error("policy {policy}: {count} gangs were left partly placed")]
    PartialGangs { policy: &'static str, count: usize },
}

/// The site every trace node is in.
const SITE: &str = "trace";

/// Replays `tasks` on `nodes` for every policy of `opts`, with the FIFO queue.
pub fn replay(
    nodes: &[TraceNode],
    tasks: &[TraceTask],
    opts: &ReplayOptions,
) -> Result<(TraceSummary, Vec<PolicyReport>), ReplayError> {
    replay_with(nodes, tasks, opts, &mut || Box::new(Fifo))
}

/// [`replay`] with a queue of the caller's (a fresh one per policy and experiment).
pub fn replay_with(
    nodes: &[TraceNode],
    tasks: &[TraceTask],
    opts: &ReplayOptions,
    queue: &mut dyn FnMut() -> Box<dyn Queue>,
) -> Result<(TraceSummary, Vec<PolicyReport>), ReplayError> {
    let site: Site = object(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Site",
        "metadata": {"name": SITE},
        "spec": {"provider": "onprem", "jurisdiction": "SG"},
    }))?;
    let node_objects: Vec<Node> = nodes.iter().map(node_object).collect::<Result<_, _>>()?;
    let base = Fleet::new(&[site], &node_objects)?;
    let workloads: Vec<Workload> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| workload_object(i, t))
        .collect::<Result<_, _>>()?;
    let summary = TraceSummary {
        nodes: nodes.len(),
        gpu_nodes: nodes.iter().filter(|n| n.gpus > 0).count(),
        gpus: nodes.iter().map(|n| u64::from(n.gpus)).sum(),
        tasks: tasks.len(),
        gpu_tasks: tasks.iter().filter(|t| t.gpu_milli > 0).count(),
        shared_gpu_tasks: tasks
            .iter()
            .filter(|t| t.gpu_milli > 0 && t.gpu_milli < 1000)
            .count(),
        gpu_demand: tasks.iter().map(|t| u64::from(t.gpu_milli)).sum::<u64>() as f64 / 1000.0,
    };
    let mut reports = Vec::new();
    for &policy in &opts.policies {
        let mut sim = Sim::new(&base, nodes, tasks, &workloads, policy, opts.seed);
        let replay = sim.replay(queue().as_mut())?;
        if replay.partial_gangs > 0 {
            return Err(ReplayError::PartialGangs {
                policy: policy.name(),
                count: replay.partial_gangs,
            });
        }
        let inflation = if opts.inflation {
            let mut sim = Sim::new(&base, nodes, tasks, &workloads, policy, opts.seed);
            Some(sim.inflate(opts.seed)?)
        } else {
            None
        };
        reports.push(PolicyReport {
            policy,
            replay,
            inflation,
        });
    }
    Ok((summary, reports))
}

fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ReplayError> {
    serde_json::from_value(v).map_err(|e| ReplayError::Object(e.to_string()))
}

fn node_object(n: &TraceNode) -> Result<Node, ReplayError> {
    let gpus = match &n.model {
        Some(m) if n.gpus > 0 => json!([{"model": m, "count": n.gpus}]),
        _ => json!([]),
    };
    object(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Node",
        "metadata": {"name": n.name},
        "spec": {
            "site": SITE, "os": {"family": "linux"}, "arch": "amd64",
            "capacity": {"cpu": format!("{}m", n.cpu_milli), "memory": format!("{}Mi", n.memory_mib), "gpus": gpus},
            "drivers": ["exec", "container"],
        },
        "status": {"phase": "Ready"},
    }))
}

/// The project of a task: its QoS class, as a name.
fn project_of(t: &TraceTask) -> String {
    let p: String = t
        .qos
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if p.is_empty() { "default".into() } else { p }
}

fn workload_object(i: usize, t: &TraceTask) -> Result<Workload, ReplayError> {
    let mut resources =
        json!({"cpu": format!("{}m", t.cpu_milli), "memory": format!("{}Mi", t.memory_mib)});
    if t.gpu_milli > 0 {
        resources["gpu"] = json!({"count": format!("{}m", t.gpu_milli)});
    }
    let mut spec = json!({
        "type": "job",
        "queue": project_of(t),
        "task": {"driver": "container", "image": "trace", "resources": resources},
    });
    if !t.gpu_spec.is_empty() && t.gpu_milli > 0 {
        spec["placement"] = json!({"matchExpressions": [
            {"key": "node.gpu.model", "operator": "In", "values": t.gpu_spec}
        ]});
    }
    object(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": format!("t{i}"), "namespace": project_of(t)},
        "spec": spec,
    }))
}

/// One policy's cluster.
struct Sim<'a> {
    fleet: Fleet,
    nodes: &'a [TraceNode],
    tasks: &'a [TraceTask],
    workloads: &'a [Workload],
    policy: Policy,
    options: Options,
    mix: TaskMix,
    rng: StdRng,
    gpu_capacity: u64,
    allocated: u64,
    /// Node of each running task.
    running: Vec<Option<u32>>,
    preemptions: usize,
    partial_gangs: usize,
    attempts: usize,
    /// Meridian's queues, one per QoS class (the inflation experiment admits through
    /// them), and each queue's GPUs held, in milli-GPUs.
    queues: Option<(Arc<placement::Queues>, BTreeMap<String, u64>)>,
}

impl<'a> Sim<'a> {
    fn new(
        base: &Fleet,
        nodes: &'a [TraceNode],
        tasks: &'a [TraceTask],
        workloads: &'a [Workload],
        policy: Policy,
        seed: u64,
    ) -> Sim<'a> {
        Sim {
            fleet: base.clone(),
            nodes,
            tasks,
            workloads,
            policy,
            options: Options {
                gpu_scoring: match policy {
                    Policy::BestFit => GpuScoring::BestFit,
                    _ => GpuScoring::Fragmentation,
                },
                candidates: 1,
                ..Options::default()
            },
            mix: TaskMix::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x05ee_df17),
            gpu_capacity: nodes.iter().map(|n| u64::from(n.gpus) * 1000).sum(),
            allocated: 0,
            running: vec![None; tasks.len()],
            preemptions: 0,
            partial_gangs: 0,
            attempts: 0,
            queues: None,
        }
    }

    fn allocation(&self) -> f64 {
        self.allocated as f64 / self.gpu_capacity.max(1) as f64
    }

    fn unallocated(&self) -> f64 {
        self.gpu_capacity.saturating_sub(self.allocated) as f64 / 1000.0
    }

    /// Counts a task's shape in the mix fragmentation is measured against (the tasks
    /// that arrived so far).
    fn arrived(&mut self, i: usize) {
        let t = &self.tasks[i];
        if self.policy == Policy::Fragmentation && t.gpu_milli > 0 {
            self.mix.add(
                t.cpu_milli,
                t.memory_mib * 1024 * 1024,
                api::GpuCount::from_milli(t.gpu_milli),
                1,
            );
            self.options.task_mix = Some(Arc::new(self.mix.clone()));
        }
    }

    /// Places task `i` (instance `replica` of its workload); returns the tasks it
    /// preempted, `None` when it did not fit.
    fn place(&mut self, i: usize) -> Result<Option<Vec<usize>>, ReplayError> {
        self.attempts += 1;
        let t = &self.tasks[i];
        let node = match self.policy {
            Policy::RandomFit => self.random_fit(i, 0),
            _ => {
                let mut batch = Batch::new();
                batch
                    .add(&self.workloads[i], [0])
                    .map_err(|source| ReplayError::Task {
                        task: t.name.clone(),
                        source,
                    })?;
                let decisions = placement::place_batch(&mut self.fleet, &batch, &self.options);
                // One unit, one decision: a gang would be all placed or none.
                let placed = decisions
                    .iter()
                    .filter(|d| matches!(d.outcome, Outcome::Placed(_)))
                    .count();
                if placed > 0 && placed < decisions.len() {
                    self.partial_gangs += 1;
                }
                match decisions.into_iter().next().map(|d| d.outcome) {
                    Some(Outcome::Placed(p)) => {
                        let mut victims = Vec::new();
                        for v in &p.preempted {
                            if let Ok(j) = v.allocation.workload[1..].parse::<usize>() {
                                victims.push(j);
                            }
                        }
                        self.preemptions += victims.len();
                        for &j in &victims {
                            if self.running[j].take().is_some() {
                                self.allocated -= u64::from(self.tasks[j].gpu_milli);
                            }
                        }
                        let node = self.node_index(&p.node);
                        if !victims.is_empty() {
                            self.running[i] = node;
                            self.allocated += u64::from(t.gpu_milli);
                            return Ok(Some(victims));
                        }
                        node
                    }
                    _ => None,
                }
            }
        };
        Ok(node.map(|n| {
            self.running[i] = Some(n);
            self.allocated += u64::from(t.gpu_milli);
            Vec::new()
        }))
    }

    fn node_index(&self, name: &str) -> Option<u32> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
            .or_else(|| self.nodes.iter().position(|n| n.name == name))
            .map(|i| i as u32)
    }

    /// Random fit: the first node of a seeded shuffle that takes instance `replica` of
    /// task `i`.
    fn random_fit(&mut self, i: usize, replica: u32) -> Option<u32> {
        let t = &self.tasks[i];
        let w = &self.workloads[i];
        let mut order: Vec<u32> = (0..self.nodes.len() as u32).collect();
        order.shuffle(&mut self.rng);
        for n in order {
            let node = &self.nodes[n as usize];
            if t.gpu_milli > 0
                && (node.gpus == 0
                    || (!t.gpu_spec.is_empty()
                        && !node.model.as_ref().is_some_and(|m| t.gpu_spec.contains(m))))
            {
                continue;
            }
            let decision = Decision {
                workload: WorkloadRef {
                    namespace: w.metadata.namespace.clone().unwrap_or_default(),
                    name: w.metadata.name.clone(),
                },
                replica,
                outcome: Outcome::Placed(Box::new(Placement {
                    node: node.name.clone(),
                    site: SITE.into(),
                    zone: None,
                    resources: w.spec.task.resources.clone(),
                    priority: 0,
                    score: Score::default(),
                    preempted: Vec::new(),
                    ports: Vec::new(),
                    flavor: None,
                    explanation: Explanation {
                        summary: String::new(),
                        nodes: 0,
                        evaluated: Evaluated::StaticFilters,
                        passed: 0,
                        rejections: Vec::new(),
                        candidates: Vec::new(),
                        suggestions: Vec::new(),
                        notes: Vec::new(),
                        queue: None,
                    },
                })),
            };
            if self.fleet.apply(&decision).is_ok() {
                return Some(n);
            }
        }
        None
    }

    fn release(&mut self, i: usize) {
        let Some(n) = self.running[i].take() else {
            return;
        };
        let w = &self.workloads[i];
        self.fleet.remove_allocation(&AllocationRef {
            namespace: w.metadata.namespace.clone().unwrap_or_default(),
            workload: w.metadata.name.clone(),
            replica: 0,
            node: self.nodes[n as usize].name.clone(),
            name: None,
            priority: 0,
        });
        self.allocated -= u64::from(self.tasks[i].gpu_milli);
    }

    fn replay(&mut self, queue: &mut dyn Queue) -> Result<ReplayFigures, ReplayError> {
        let tasks = self.tasks;
        let mut order: Vec<usize> = (0..tasks.len()).collect();
        order.sort_by_key(|&i| (tasks[i].creation, i));
        let demand: u64 = tasks.iter().map(|t| u64::from(t.gpu_milli)).sum();
        let mut arrived = 0u64;
        let mut marks = Marks::new();
        let mut departures: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        let mut pending: Vec<usize> = Vec::new();
        let mut delays: Vec<(usize, u64)> = Vec::new();
        let mut first_failure = None;
        let mut placed_on_arrival = 0;
        let mut peak = 0.0f64;
        let mut next = 0;
        loop {
            let arrival = order.get(next).map(|&i| tasks[i].creation);
            let departure = departures.peek().map(|Reverse((t, _))| *t);
            let (now, leaving) = match (arrival, departure) {
                (None, None) => break,
                (Some(a), Some(d)) if d <= a => (d, true),
                (None, Some(d)) => (d, true),
                (Some(a), _) => (a, false),
            };
            if leaving {
                // Everything that leaves at this moment, then one round for the waiting.
                while let Some(&Reverse((t, i))) = departures.peek() {
                    if t != now {
                        break;
                    }
                    departures.pop();
                    if self.running[i].is_some() {
                        self.release(i);
                        queue.finished(now, &tasks[i]);
                    }
                }
                if !pending.is_empty() {
                    queue.order(now, tasks, &mut pending);
                    let mut failed: HashSet<(u64, u64, u32, &[String])> = HashSet::new();
                    let mut still = Vec::with_capacity(pending.len());
                    for &i in &pending {
                        let t = &tasks[i];
                        let shape = (
                            t.cpu_milli,
                            t.memory_mib,
                            t.gpu_milli,
                            t.gpu_spec.as_slice(),
                        );
                        if failed.contains(&shape) || !queue.admit(now, t) {
                            still.push(i);
                            continue;
                        }
                        match self.place(i)? {
                            Some(victims) => {
                                queue.started(now, t);
                                delays.push((i, now - t.creation));
                                departures.push(Reverse((now + t.duration(), i)));
                                still.extend(victims);
                            }
                            None => {
                                failed.insert(shape);
                                still.push(i);
                            }
                        }
                    }
                    pending = still;
                }
            } else {
                let i = order[next];
                next += 1;
                let t = &tasks[i];
                arrived += u64::from(t.gpu_milli);
                self.arrived(i);
                let admitted = queue.admit(now, t);
                let placed = if admitted { self.place(i)? } else { None };
                match placed {
                    Some(victims) => {
                        placed_on_arrival += 1;
                        queue.started(now, t);
                        delays.push((i, 0));
                        departures.push(Reverse((now + t.duration(), i)));
                        pending.extend(victims);
                    }
                    None => {
                        // A task the queue holds back did not fail to fit.
                        if admitted && first_failure.is_none() {
                            first_failure = Some(Failure {
                                task: t.name.clone(),
                                at: now,
                                arrived: arrived as f64 / demand.max(1) as f64,
                                allocation: self.allocation(),
                                unallocated_gpus: self.unallocated(),
                            });
                        }
                        pending.push(i);
                    }
                }
                marks.reach(arrived as f64 / demand.max(1) as f64, self.allocation());
            }
            peak = peak.max(self.allocation());
        }
        let mut by_qos: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for &(i, d) in &delays {
            by_qos.entry(tasks[i].qos.clone()).or_default().push(d);
        }
        Ok(ReplayFigures {
            tasks: tasks.len(),
            placed_on_arrival,
            started: delays.len(),
            never_started: pending.len(),
            series: marks.points,
            first_failure,
            peak_allocation: peak,
            delay: Delay::of(delays.iter().map(|(_, d)| *d).collect()),
            delay_by_qos: by_qos.into_iter().map(|(q, v)| (q, Delay::of(v))).collect(),
            preemptions: self.preemptions,
            partial_gangs: self.partial_gangs,
            attempts: self.attempts,
        })
    }

    fn inflate(&mut self, seed: u64) -> Result<InflationFigures, ReplayError> {
        let tasks = self.tasks;
        let entitled = self.admit_through_queues()?;
        let mut draws = StdRng::seed_from_u64(seed);
        let mut marks = Marks::new();
        let mut arrived = 0u64;
        let mut submitted = 0;
        let mut failed = 0;
        let mut first_failure = None;
        let mut fairness = None;
        // Instances of one task drawn twice are distinct workloads: replica numbers.
        let mut copies = vec![0u32; tasks.len()];
        if tasks.is_empty() || self.gpu_capacity == 0 {
            return Ok(InflationFigures {
                submitted,
                failed,
                series: Vec::new(),
                first_failure,
                final_allocation: 0.0,
                final_unallocated_gpus: self.unallocated(),
                fairness: BTreeMap::new(),
            });
        }
        while arrived < self.gpu_capacity {
            let i = rand::Rng::gen_range(&mut draws, 0..tasks.len());
            let t = &tasks[i];
            submitted += 1;
            arrived += u64::from(t.gpu_milli);
            self.arrived(i);
            let ok = self.place_copy(i, copies[i])?;
            copies[i] += 1;
            if !ok {
                failed += 1;
                if first_failure.is_none() {
                    fairness = Some(self.shares(&entitled));
                    first_failure = Some(Failure {
                        task: t.name.clone(),
                        at: submitted as u64 - 1,
                        arrived: arrived as f64 / self.gpu_capacity as f64,
                        allocation: self.allocation(),
                        unallocated_gpus: self.unallocated(),
                    });
                }
            }
            marks.reach(arrived as f64 / self.gpu_capacity as f64, self.allocation());
        }
        Ok(InflationFigures {
            submitted,
            failed,
            series: marks.points,
            first_failure,
            final_allocation: self.allocation(),
            final_unallocated_gpus: self.unallocated(),
            fairness: fairness.unwrap_or_else(|| self.shares(&entitled)),
        })
    }

    /// Builds Meridian's queues for the inflation experiment: one per QoS class, in one
    /// cohort, each with a nominal quota of the cluster's GPUs in proportion to its
    /// class's share of the trace's GPU demand (its entitled share), lending what it does
    /// not use. Returns the entitled shares.
    fn admit_through_queues(&mut self) -> Result<BTreeMap<String, f64>, ReplayError> {
        let mut demand: BTreeMap<String, u64> = BTreeMap::new();
        for t in self.tasks {
            *demand.entry(project_of(t)).or_default() += u64::from(t.gpu_milli);
        }
        let total: u64 = demand.values().sum::<u64>().max(1);
        let gpus = self.gpu_capacity / 1000;
        let mut objects = Vec::new();
        let mut entitled = BTreeMap::new();
        for (q, d) in &demand {
            let share = *d as f64 / total as f64;
            entitled.insert(q.clone(), share);
            let nominal = ((gpus as f64) * share).round() as u64;
            let queue: api::queue::Queue = object(json!({
                "apiVersion": "meridian.dev/v1", "kind": "Queue",
                "metadata": {"name": q},
                "spec": {"cohort": "trace", "quota": {"gpus": {"nominal": nominal}}},
            }))?;
            objects.push(queue);
        }
        let mut queues = placement::Queues::new(&objects);
        for (w, t) in self.workloads.iter().zip(self.tasks) {
            queues.assign(&project_of(t), &w.metadata.name, &project_of(t));
        }
        self.queues = Some((Arc::new(queues), BTreeMap::new()));
        Ok(entitled)
    }

    /// Each queue's entitled share and its share of the GPUs allocated now.
    fn shares(&self, entitled: &BTreeMap<String, f64>) -> BTreeMap<String, Share> {
        let held = self.queues.as_ref().map(|(_, h)| h);
        let total: u64 = held.map_or(0, |h| h.values().sum::<u64>()).max(1);
        entitled
            .iter()
            .map(|(q, e)| {
                let h = held.and_then(|h| h.get(q)).copied().unwrap_or(0);
                (
                    q.clone(),
                    Share {
                        entitled: *e,
                        held: h as f64 / total as f64,
                    },
                )
            })
            .collect()
    }

    /// Places copy `replica` of task `i` for good (the inflation experiment never
    /// releases); whether it fit.
    fn place_copy(&mut self, i: usize, replica: u32) -> Result<bool, ReplayError> {
        let t = &self.tasks[i];
        self.attempts += 1;
        let placed = match self.policy {
            Policy::RandomFit => self.random_fit(i, replica).is_some(),
            _ => {
                let mut batch = Batch::new();
                if let Some((queues, _)) = &self.queues {
                    batch.set_queues(queues.clone());
                }
                batch
                    .add(&self.workloads[i], [replica])
                    .map_err(|source| ReplayError::Task {
                        task: t.name.clone(),
                        source,
                    })?;
                let d = placement::place_batch(&mut self.fleet, &batch, &self.options);
                matches!(d.first().map(|d| &d.outcome), Some(Outcome::Placed(_)))
            }
        };
        if placed {
            self.allocated += u64::from(t.gpu_milli);
            if let Some((_, held)) = &mut self.queues {
                *held.entry(project_of(t)).or_default() += u64::from(t.gpu_milli);
            }
        }
        Ok(placed)
    }
}

/// The series: a point each time the arrived demand passes another 5%.
struct Marks {
    next: u32,
    points: Vec<Point>,
}

impl Marks {
    fn new() -> Marks {
        Marks {
            next: 1,
            points: Vec::new(),
        }
    }

    fn reach(&mut self, arrived: f64, allocation: f64) {
        while self.next <= 100 && arrived + 1e-12 >= f64::from(self.next) / 20.0 {
            self.points.push(Point {
                arrived: f64::from(self.next) / 20.0,
                allocation,
            });
            self.next += 1;
        }
    }
}
