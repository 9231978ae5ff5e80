//! Simulated agents: [`SimAgent`] serves Node objects as the real agent (`crates/agent`)
//! would, without running anything, so a demo or a test sees nodes `Ready` and instances
//! go through their phases on hosts that do not exist (like KWOK for Kubernetes).
//!
//! This module is the crate's I/O exception: it talks to a server through [`client`],
//! reads the clock (tokio's) and draws jitter from the operating system's randomness. The
//! generators ([`crate::FleetSpec`], [`crate::WorkloadSpec`]) still do neither.
//!
//! What a simulated agent does, with the same API calls as the real one:
//!
//! - **Nodes**: [`SimAgent::register`] creates (or updates, by apply) Node objects such as
//!   [`simulated_node`] builds; [`SimAgent::adopt`] takes over Nodes that exist (the
//!   demo's example nodes). Either way it writes `status.agentVersion` (`sim/<version>`,
//!   [`agent_version`]) and heartbeats each node at once, then every
//!   [`Options::heartbeat`] (`POST /meridian/v1/nodes/{name}/heartbeat`, spread over the
//!   interval), which the server answers by marking the node `Ready` with a fresh
//!   `status.heartbeatTime` and renewing its lease.
//! - **Allocations**: listed, then watched from the list's revision, and listed again
//!   every [`Options::resync`] or when the watch ends. Each allocation placed on one of
//!   its nodes is reported, through the `/status` subresource, as the real agent reports
//!   it ([`api::kinds::AllocationStatus`]):
//!   - `pending` (as placed) → `running` with `startedAt` after [`Options::start_delay`]
//!     plus up to [`Options::jitter`];
//!   - a task with a health check: `health` `unknown` and condition `Healthy=Unknown`
//!     (`NotCheckedYet`) when it starts, then `healthy` and `Healthy=True`
//!     (`HealthCheckPassed`) after the check's `initialDelay`;
//!   - a job (`spec.type: job`): `succeeded`, exit code 0, `finishedAt`, after
//!     [`Options::job_duration`] plus up to the jitter;
//!   - `spec.desiredState: stop`, or a deleted allocation: forgotten. Like the real agent,
//!     which stops the task and writes nothing, it reports nothing.
//!   - An allocation already `succeeded`, `failed` or `lost` is left alone.
//! - **Failure injection** (tests and demos), through the task's environment:
//!   - [`FAIL_ENV`] (`MERIDIAN_SIM_FAIL=1`): the instance goes `failed` with exit code 1
//!     instead of `running` (a new revision that does not start);
//!   - [`UNHEALTHY_ENV`] (`MERIDIAN_SIM_UNHEALTHY=1`): it runs, and its health check
//!     reports `unhealthy` (`Healthy=False`, `HealthCheckFailed`) after the initial delay.
//!     The real agent would then restart the task; the simulation leaves it running.
//!
//! The client's credential decides what an agent may do: an admin token serves any node
//! (the demo, tests); a node credential only its own node, as for the real agent.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use api::kinds::{
    Allocation, AllocationPhase, AllocationStatus, Condition, ConditionStatus, DesiredState,
    HealthState, HealthStatus, Node, WorkloadType,
};
use client::{Client, ClientError, ListOptions, Method};

/// Label of the nodes [`simulated_node`] builds (and of the site [`ensure_site`] creates).
pub const SIMULATED_LABEL: &str = "meridian.dev/simulated";

/// Task environment variable: `1` makes the instance fail (exit code 1) instead of running.
pub const FAIL_ENV: &str = "MERIDIAN_SIM_FAIL";

/// Task environment variable: `1` makes the instance's health check report `unhealthy`.
pub const UNHEALTHY_ENV: &str = "MERIDIAN_SIM_UNHEALTHY";

/// What a simulated agent reports as `status.agentVersion`: `sim/<version>`.
pub fn agent_version() -> String {
    format!("sim/{}", env!("CARGO_PKG_VERSION"))
}

/// How a simulated agent behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time between two heartbeats of one node (the server's lease is 10 s by default).
    pub heartbeat: Duration,
    /// Time from placement to `running`.
    pub start_delay: Duration,
    /// Up to this much is added, at random, to the start delay and the job duration.
    pub jitter: Duration,
    /// Time from `running` to `succeeded`, for jobs.
    pub job_duration: Duration,
    /// The allocations are listed again this often (besides the watch).
    pub resync: Duration,
    /// Requests in flight at once (registration, heartbeats, status writes).
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            heartbeat: Duration::from_secs(2),
            start_delay: Duration::from_secs(1),
            jitter: Duration::from_millis(500),
            job_duration: Duration::from_secs(5),
            resync: Duration::from_secs(60),
            concurrency: 32,
        }
    }
}

/// Why a simulated agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimAgentError {
    #[error("no nodes to serve")]
    NoNodes,
    #[error("node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error("site {site}: {source}")]
    Site {
        site: String,
        #[source]
        source: ClientError,
    },
    #[error("node {0} cannot be encoded: {1}")]
    Encode(String, #[source] serde_json::Error),
}

/// What an agent did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub heartbeats: u64,
    pub heartbeat_errors: u64,
    /// Instances reported `running`.
    pub started: u64,
    /// Jobs reported `succeeded`.
    pub succeeded: u64,
    /// Instances reported `failed` (the failure knob).
    pub failed: u64,
    /// Status writes the server refused or did not answer.
    pub status_errors: u64,
}

#[derive(Default)]
struct Counters {
    heartbeats: AtomicU64,
    heartbeat_errors: AtomicU64,
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    status_errors: AtomicU64,
}

impl Counters {
    fn stats(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            heartbeats: get(&self.heartbeats),
            heartbeat_errors: get(&self.heartbeat_errors),
            started: get(&self.started),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            status_errors: get(&self.status_errors),
        }
    }

    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A Linux node of `cpu` and `memory` in `site`, labelled [`SIMULATED_LABEL`], offering
/// the `exec` and `container` drivers.
pub fn simulated_node(name: &str, site: &str, cpu: api::Cpu, memory: api::Memory) -> Node {
    let mut metadata = api::ObjectMeta::named(name);
    metadata
        .labels
        .insert(SIMULATED_LABEL.to_owned(), "true".to_owned());
    Node::new(
        metadata,
        api::kinds::NodeSpec {
            site: site.to_owned(),
            zone: None,
            os: api::kinds::NodeOs {
                family: api::kinds::OsFamily::Linux,
                distro: Some("simulated".to_owned()),
                version: None,
                build: None,
                kernel: None,
            },
            arch: api::kinds::Arch::Amd64,
            capacity: api::kinds::NodeResources {
                cpu,
                memory,
                ..api::kinds::NodeResources::default()
            },
            allocatable: None,
            drivers: vec![api::kinds::Driver::Exec, api::kinds::Driver::Container],
            taints: Vec::new(),
            unschedulable: false,
        },
    )
}

/// Creates an on-premises site named `name` in `jurisdiction` (operated there, labelled
/// [`SIMULATED_LABEL`]) unless a site of that name exists.
pub async fn ensure_site(
    client: &Client,
    name: &str,
    jurisdiction: &str,
) -> Result<(), SimAgentError> {
    let err = |source| SimAgentError::Site {
        site: name.to_owned(),
        source,
    };
    match client.get(api::kinds::SITE, None, name).await {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(err(e)),
    }
    let site = json!({
        "apiVersion": api::API_VERSION, "kind": "Site",
        "metadata": {"name": name, "labels": {SIMULATED_LABEL: "true"}},
        "spec": {"provider": "onprem", "region": name, "jurisdiction": jurisdiction,
                 "operator": {"name": "Simulation", "jurisdiction": jurisdiction}},
    });
    client
        .create(api::kinds::SITE, None, &site, false)
        .await
        .map_err(err)?;
    Ok(())
}

/// A running simulated agent for a set of nodes. Stop it with [`SimAgent::stop`]; dropped,
/// it stops too (its tasks are cancelled).
pub struct SimAgent {
    nodes: Arc<[String]>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl SimAgent {
    /// Creates or updates (`apply`) `nodes`, then serves them.
    pub async fn register(
        client: Client,
        nodes: Vec<Node>,
        options: Options,
    ) -> Result<SimAgent, SimAgentError> {
        let concurrency = options.concurrency.max(1);
        let results = futures::stream::iter(nodes)
            .map(|node| {
                let client = &client;
                async move {
                    let name = node.metadata.name.clone();
                    let value = serde_json::to_value(&node)
                        .map_err(|e| SimAgentError::Encode(name.clone(), e))?;
                    let (stored, _) = client
                        .apply(api::kinds::NODE, None, &value, false)
                        .await
                        .map_err(|source| SimAgentError::Node {
                            node: name.clone(),
                            source,
                        })?;
                    announce(client, &name, Some(stored)).await?;
                    Ok::<_, SimAgentError>(name)
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        let names = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Self::start(client, names, options).await
    }

    /// Serves Nodes that exist (registered by an administrator or an earlier agent).
    pub async fn adopt(
        client: Client,
        names: Vec<String>,
        options: Options,
    ) -> Result<SimAgent, SimAgentError> {
        let concurrency = options.concurrency.max(1);
        let results = futures::stream::iter(names)
            .map(|name| {
                let client = &client;
                async move {
                    announce(client, &name, None).await?;
                    Ok::<_, SimAgentError>(name)
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        let names = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Self::start(client, names, options).await
    }

    async fn start(
        client: Client,
        mut names: Vec<String>,
        options: Options,
    ) -> Result<SimAgent, SimAgentError> {
        if names.is_empty() {
            return Err(SimAgentError::NoNodes);
        }
        names.sort();
        names.dedup();
        let nodes: Arc<[String]> = names.into();
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        // One heartbeat each before anything else, so the nodes are Ready when this returns.
        heartbeat_all(&client, &nodes, options.concurrency.max(1), &counters).await;
        let tasks = vec![
            tokio::spawn(heartbeat_loop(
                client.clone(),
                nodes.clone(),
                options.clone(),
                counters.clone(),
                stop.clone(),
            )),
            tokio::spawn(
                Runner {
                    client,
                    nodes: nodes.iter().cloned().collect(),
                    options,
                    counters: counters.clone(),
                    tracked: HashMap::new(),
                    due: BinaryHeap::new(),
                    seq: 0,
                }
                .run(stop.clone()),
            ),
        ];
        Ok(SimAgent {
            nodes,
            counters,
            stop,
            tasks,
        })
    }

    /// The nodes it serves, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// What it did so far.
    pub fn stats(&self) -> Stats {
        self.counters.stats()
    }

    /// Stops heartbeating and reporting, and waits for its tasks to end. The nodes become
    /// `Lost` once their leases expire, as when a real agent stops.
    pub async fn stop(mut self) -> Stats {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.counters.stats()
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Writes `status.agentVersion` on a node (`stored`: the node as just written, if known),
/// retrying once with a fresh read on a conflict.
async fn announce(client: &Client, name: &str, stored: Option<Value>) -> Result<(), SimAgentError> {
    let node_kind = api::kinds::NODE;
    let err = |source| SimAgentError::Node {
        node: name.to_owned(),
        source,
    };
    let mut node = match stored {
        Some(n) => n,
        None => client.get(node_kind, None, name).await.map_err(err)?,
    };
    for attempt in 0..2 {
        if !node["status"].is_object() {
            node["status"] = json!({});
        }
        node["status"]["agentVersion"] = json!(agent_version());
        match client.replace_status(node_kind, None, name, &node).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt == 0 && e.code() == Some(409) => {
                node = client.get(node_kind, None, name).await.map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

async fn heartbeat(client: &Client, node: &str, counters: &Counters) {
    let path = format!("/meridian/v1/nodes/{node}/heartbeat");
    match client.request_json(Method::POST, &path, None).await {
        Ok(_) => Counters::add(&counters.heartbeats),
        Err(e) => {
            tracing::debug!(node, error = %e, "heartbeat failed");
            Counters::add(&counters.heartbeat_errors);
        }
    }
}

async fn heartbeat_all(client: &Client, nodes: &[String], concurrency: usize, counters: &Counters) {
    futures::stream::iter(nodes)
        .for_each_concurrent(concurrency, |n| heartbeat(client, n, counters))
        .await;
}

/// Every node heartbeats once per interval, in small slices spread evenly over it so the
/// load on the server is smooth.
async fn heartbeat_loop(
    client: Client,
    nodes: Arc<[String]>,
    options: Options,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let count = nodes.len();
    let slices = (options.heartbeat.as_millis() / 50).clamp(1, count as u128) as usize;
    let per_slice = count.div_ceil(slices);
    let mut tick = tokio::time::interval(options.heartbeat / slices as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and every node has just heartbeated.
    tick.tick().await;
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let batch: Vec<&String> = (0..per_slice.min(count))
            .map(|k| &nodes[(next + k) % count])
            .collect();
        next = (next + per_slice) % count;
        tokio::select! {
            () = stop.cancelled() => return,
            () = futures::stream::iter(batch).for_each_concurrent(
                options.concurrency.max(1),
                |n| heartbeat(&client, n, &counters),
            ) => {}
        }
    }
}

/// The next thing to report of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// `running` (or `failed`, with the failure knob).
    Start,
    /// The health check's verdict.
    Health,
    /// A job's `succeeded`.
    Finish,
}

/// An allocation this agent reports on.
struct Tracked {
    uid: String,
    /// Bumped whenever the allocation is (re)tracked: steps of an older epoch are stale.
    epoch: u64,
    /// The allocation as last seen or written.
    object: Allocation,
}

/// A step due at a time: `(when, sequence, key, epoch, step)`.
type Due = Reverse<(Instant, u64, String, u64, Step)>;

/// Drives the allocations on the agent's nodes through their phases.
struct Runner {
    client: Client,
    nodes: HashSet<String>,
    options: Options,
    counters: Arc<Counters>,
    /// `namespace/name` → allocation.
    tracked: HashMap<String, Tracked>,
    due: BinaryHeap<Due>,
    seq: u64,
}

fn key_of(a: &Allocation) -> String {
    format!(
        "{}/{}",
        a.metadata.namespace.as_deref().unwrap_or_default(),
        a.metadata.name
    )
}

fn env_flag(a: &Allocation, var: &str) -> bool {
    a.spec
        .task
        .as_ref()
        .and_then(|t| t.env.get(var))
        .and_then(|v| v.literal())
        .is_some_and(|v| matches!(v, "1" | "true" | "yes"))
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn healthy_condition(state: HealthState, now: &str) -> Condition {
    let (status, reason) = match state {
        HealthState::Healthy => (ConditionStatus::True, "HealthCheckPassed"),
        HealthState::Unhealthy => (ConditionStatus::False, "HealthCheckFailed"),
        HealthState::Unknown => (ConditionStatus::Unknown, "NotCheckedYet"),
    };
    Condition {
        type_: "Healthy".to_owned(),
        status,
        reason: Some(reason.to_owned()),
        message: None,
        last_transition_time: Some(now.to_owned()),
        last_update_time: None,
    }
}

impl Runner {
    async fn run(mut self, stop: CancellationToken) {
        let alloc = api::kinds::ALLOCATION;
        loop {
            // List, then watch from the list's revision: what is tracked is exact.
            let all = ListOptions::default();
            let listed = tokio::select! {
                () = stop.cancelled() => return,
                l = self.client.list_all_at(alloc, None, &all) => l,
            };
            let (items, revision) = match listed {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list allocations; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            self.resync(items);
            let opts = ListOptions {
                resource_version: revision,
                ..ListOptions::default()
            };
            let mut events = match self.client.watch(alloc, None, &opts).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch allocations; listing again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let resync_at = Instant::now() + self.options.resync;
            loop {
                let next_due = self
                    .due
                    .peek()
                    .map_or(resync_at, |Reverse((t, ..))| (*t).min(resync_at));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(next_due) => {
                        if Instant::now() >= resync_at {
                            break;
                        }
                        self.run_due(&stop).await;
                    }
                    e = events.next() => match e {
                        Some(Ok(ev)) => match ev.type_.as_str() {
                            "ADDED" | "MODIFIED" => {
                                self.observe(ev.object);
                            }
                            "DELETED" => self.forget(&ev.object),
                            _ => {}
                        },
                        // An error or the end of the stream (e.g. 410 Expired): list again.
                        _ => break,
                    },
                }
            }
        }
    }

    /// Replaces what is tracked with a fresh list.
    fn resync(&mut self, items: Vec<Value>) {
        let mut seen = HashSet::new();
        for item in items {
            if let Some(k) = self.observe(item) {
                seen.insert(k);
            }
        }
        self.tracked.retain(|k, _| seen.contains(k));
    }

    fn forget(&mut self, object: &Value) {
        if let Ok(a) = serde_json::from_value::<Allocation>(object.clone()) {
            self.tracked.remove(&key_of(&a));
        }
    }

    fn schedule(&mut self, key: &str, epoch: u64, step: Step, after: Duration) {
        self.seq += 1;
        self.due.push(Reverse((
            Instant::now() + after,
            self.seq,
            key.to_owned(),
            epoch,
            step,
        )));
    }

    fn jittered(&self, base: Duration) -> Duration {
        let jitter = self.options.jitter.as_millis() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter)
        };
        base + Duration::from_millis(extra)
    }

    /// Takes a listed or watched allocation; returns its key when it is on one of the
    /// agent's nodes and to be reported on.
    fn observe(&mut self, object: Value) -> Option<String> {
        let a: Allocation = match serde_json::from_value(object) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "an allocation this agent cannot read; ignored");
                return None;
            }
        };
        if !self.nodes.contains(&a.spec.node) {
            return None;
        }
        let key = key_of(&a);
        let uid = a.metadata.uid.clone().unwrap_or_default();
        if a.spec.desired_state == DesiredState::Stop {
            // The real agent stops the task and writes nothing: neither does this one.
            self.tracked.remove(&key);
            return None;
        }
        if let Some(t) = self.tracked.get_mut(&key)
            && t.uid == uid
        {
            t.object = a;
            return Some(key);
        }
        let status = a.status.clone().unwrap_or_default();
        let epoch = self.seq + 1;
        self.seq = epoch;
        match status.phase {
            AllocationPhase::Succeeded | AllocationPhase::Failed | AllocationPhase::Lost => {
                return None;
            }
            AllocationPhase::Pending => {
                let delay = self.jittered(self.options.start_delay);
                self.schedule(&key, epoch, Step::Start, delay);
            }
            // Running already (reported by an earlier agent): carry on from there.
            AllocationPhase::Running | AllocationPhase::Restarting => {
                self.after_start(&key, epoch, &a);
            }
        }
        self.tracked.insert(
            key.clone(),
            Tracked {
                uid,
                epoch,
                object: a,
            },
        );
        Some(key)
    }

    /// Schedules what follows `running`: the health verdict, a job's end.
    fn after_start(&mut self, key: &str, epoch: u64, a: &Allocation) {
        let health = a.spec.task.as_ref().and_then(|t| t.health.as_ref());
        let reported = a
            .status
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .is_some_and(|h| h.state != HealthState::Unknown);
        if let Some(check) = health
            && !reported
        {
            self.schedule(key, epoch, Step::Health, check.initial_delay());
        }
        if a.spec.type_ == Some(WorkloadType::Job) {
            let d = self.jittered(self.options.job_duration);
            self.schedule(key, epoch, Step::Finish, d);
        }
    }

    /// Reports every step that is due, `concurrency` writes at a time.
    async fn run_due(&mut self, stop: &CancellationToken) {
        let now = Instant::now();
        let mut batch = Vec::new();
        while let Some(Reverse((t, ..))) = self.due.peek()
            && *t <= now
        {
            let Some(Reverse((_, _, key, epoch, step))) = self.due.pop() else {
                break;
            };
            let Some(tracked) = self.tracked.get(&key) else {
                continue;
            };
            if tracked.epoch != epoch {
                continue;
            }
            batch.push((key, epoch, step, tracked.object.clone()));
        }
        let client = &self.client;
        let counters = &self.counters;
        let written: Vec<_> = tokio::select! {
            () = stop.cancelled() => return,
            w = futures::stream::iter(batch)
                .map(|(key, epoch, step, a)| async move {
                    let stored = report(client, counters, a, step).await;
                    (key, epoch, step, stored)
                })
                .buffer_unordered(self.options.concurrency.max(1))
                .collect() => w,
        };
        for (key, epoch, step, stored) in written {
            let Some(a) = stored else { continue };
            let Some(t) = self.tracked.get_mut(&key) else {
                continue;
            };
            if t.epoch != epoch {
                continue;
            }
            t.object = a.clone();
            if step == Step::Start
                && a.status.as_ref().map(|s| s.phase) == Some(AllocationPhase::Running)
            {
                self.after_start(&key, epoch, &a);
            }
        }
    }
}

/// The status `step` gives `a`.
fn next_status(a: &Allocation, step: Step) -> AllocationStatus {
    let now = now_rfc3339();
    let mut status = a.status.clone().unwrap_or_default();
    let check = a.spec.task.as_ref().and_then(|t| t.health.as_deref());
    match step {
        Step::Start if env_flag(a, FAIL_ENV) => {
            status = AllocationStatus {
                phase: AllocationPhase::Failed,
                exit_code: Some(1),
                message: Some(format!("simulated failure ({FAIL_ENV}=1)")),
                finished_at: Some(now),
                ..AllocationStatus::default()
            };
        }
        Step::Start => {
            status = AllocationStatus {
                phase: AllocationPhase::Running,
                started_at: Some(now.clone()),
                message: Some("simulated: nothing runs".to_owned()),
                ..AllocationStatus::default()
            };
            if check.is_some() {
                status.health = Some(HealthStatus::default());
                status.conditions = vec![healthy_condition(HealthState::Unknown, &now)];
            }
        }
        Step::Health => {
            let threshold = check.map_or(1, api::kinds::HealthCheck::failure_threshold);
            let health = if env_flag(a, UNHEALTHY_ENV) {
                HealthStatus {
                    state: HealthState::Unhealthy,
                    consecutive_failures: threshold,
                    message: Some(format!("simulated check failed ({UNHEALTHY_ENV}=1)")),
                    last_check_time: Some(now.clone()),
                }
            } else {
                HealthStatus {
                    state: HealthState::Healthy,
                    consecutive_failures: 0,
                    message: Some("simulated check passed".to_owned()),
                    last_check_time: Some(now.clone()),
                }
            };
            let mut condition = healthy_condition(health.state, &now);
            condition.message = health.message.clone();
            status.health = Some(health);
            status.conditions = vec![condition];
        }
        Step::Finish => {
            status.phase = AllocationPhase::Succeeded;
            status.exit_code = Some(0);
            status.message = None;
            status.finished_at = Some(now);
        }
    }
    status
}

/// Writes the status `step` gives `a` (once more with a fresh read on a conflict);
/// returns the allocation as stored.
async fn report(
    client: &Client,
    counters: &Counters,
    mut a: Allocation,
    step: Step,
) -> Option<Allocation> {
    let alloc = api::kinds::ALLOCATION;
    let ns = a.metadata.namespace.clone().unwrap_or_default();
    let name = a.metadata.name.clone();
    for attempt in 0..2 {
        let status = next_status(&a, step);
        let phase = status.phase;
        a.status = Some(status);
        let body = match serde_json::to_value(&a) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(allocation = %name, error = %e, "cannot encode a status");
                return None;
            }
        };
        match client.replace_status(alloc, Some(&ns), &name, &body).await {
            Ok(stored) => {
                match phase {
                    AllocationPhase::Running if step == Step::Start => {
                        Counters::add(&counters.started);
                    }
                    AllocationPhase::Succeeded => Counters::add(&counters.succeeded),
                    AllocationPhase::Failed => Counters::add(&counters.failed),
                    _ => {}
                }
                return serde_json::from_value(stored).ok();
            }
            Err(e) if attempt == 0 && e.code() == Some(409) => {
                let fresh = client.get(alloc, Some(&ns), &name).await.ok()?;
                let fresh: Allocation = serde_json::from_value(fresh).ok()?;
                if fresh.metadata.uid != a.metadata.uid
                    || fresh.spec.desired_state == DesiredState::Stop
                {
                    return None;
                }
                a = fresh;
            }
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(allocation = %name, error = %e, "cannot report a status");
                    Counters::add(&counters.status_errors);
                }
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(type_: &str, env: Value, health: Value) -> Allocation {
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": "w-0", "namespace": "p", "uid": "u1"},
            "spec": {"workload": "w", "node": "n", "type": type_,
                     "resources": {"cpu": "1", "memory": "1Gi"},
                     "task": {"driver": "exec", "command": ["/bin/true"], "env": env,
                              "resources": {"cpu": "1", "memory": "1Gi"}, "health": health}},
        }))
        .expect("a valid allocation")
    }

    #[test]
    fn phases_as_the_real_agent_reports_them() {
        let check = json!({"tcp": {"port": 80}, "initialDelay": "2s"});
        let svc = allocation("service", json!({}), check);
        let started = next_status(&svc, Step::Start);
        assert_eq!(started.phase, AllocationPhase::Running);
        assert!(started.started_at.is_some());
        assert_eq!(
            started.health.as_ref().map(|h| h.state),
            Some(HealthState::Unknown)
        );
        assert_eq!(started.conditions[0].status, ConditionStatus::Unknown);

        let mut running = svc;
        running.status = Some(started.clone());
        let healthy = next_status(&running, Step::Health);
        assert_eq!(healthy.phase, AllocationPhase::Running);
        assert_eq!(healthy.started_at, started.started_at);
        assert_eq!(
            healthy.health.as_ref().map(|h| h.state),
            Some(HealthState::Healthy)
        );
        assert_eq!(healthy.conditions[0].type_, "Healthy");
        assert_eq!(healthy.conditions[0].status, ConditionStatus::True);
        assert_eq!(
            healthy.conditions[0].reason.as_deref(),
            Some("HealthCheckPassed")
        );

        let job = allocation("job", json!({}), Value::Null);
        let mut running = job.clone();
        running.status = Some(next_status(&job, Step::Start));
        let done = next_status(&running, Step::Finish);
        assert_eq!(done.phase, AllocationPhase::Succeeded);
        assert_eq!(done.exit_code, Some(0));
        assert!(done.started_at.is_some() && done.finished_at.is_some());
    }

    #[test]
    fn failure_knobs() {
        let failing = allocation("service", json!({FAIL_ENV: "1"}), Value::Null);
        let s = next_status(&failing, Step::Start);
        assert_eq!(s.phase, AllocationPhase::Failed);
        assert_eq!(s.exit_code, Some(1));

        let sick = allocation(
            "service",
            json!({UNHEALTHY_ENV: "1"}),
            json!({"tcp": {"port": 80}}),
        );
        let s = next_status(&sick, Step::Health);
        assert_eq!(
            s.health.as_ref().map(|h| h.state),
            Some(HealthState::Unhealthy)
        );
        assert_eq!(s.conditions[0].status, ConditionStatus::False);
    }

    #[test]
    fn simulated_nodes_are_valid() {
        let node = simulated_node(
            "sim-00000",
            "sim",
            "16".parse().unwrap(),
            "64Gi".parse().unwrap(),
        );
        let value = serde_json::to_value(&node).unwrap();
        let text = serde_json::to_string(&value).unwrap();
        api::parse_manifests("node.json", &text).expect("a valid Node");
    }
}
