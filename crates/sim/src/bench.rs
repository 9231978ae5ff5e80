//! The placement benchmark behind `meridian bench placement`: generate a fleet and a
//! workload mix, build the placement snapshot, then decide every instance on one thread
//! and time each decision.
//!
//! This module (and only this module of the crate) reads the clock.
//!
//! How decisions are timed: the whole mix is one [`Batch`], decided by a
//! [`placement::Placer`], which is [`placement::place_batch`] taken one unit at a time
//! (the same code, the same order and the same decisions): each call to
//! [`placement::Placer::step`] is timed on its own. A unit is one instance, or a whole
//! gang, which is placed all-or-nothing in one step; a gang's time is split evenly over
//! its members for the percentiles (and reported whole as `max_unit_us`). So the cost of
//! compiling each workload and evaluating its static filters once, which `place_batch`
//! pays at the workload's first instance, is in the figures, as it is in the server.
//! Building the snapshot ([`Fleet::new`]) and the batch are timed separately and not
//! counted as decision time.

use std::time::{Duration, Instant};

use placement::{Batch, Fleet, FleetError, Options, Outcome, PlacementError, Placer};

use crate::{FleetSpec, WorkloadSpec};

/// What went wrong building the benchmark's input (generated objects are valid, so this
/// means a generator bug).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("building the fleet snapshot")]
    Fleet(#[from] FleetError),
    #[error("adding a workload to the batch")]
    Placement(#[from] PlacementError),
    #[error("workload {workload} names project {project}, which the fleet does not have")]
    UnknownProject { workload: String, project: String },
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementReport {
    pub seed: u64,
    pub nodes: usize,
    pub sites: usize,
    /// Classes of identical nodes in the snapshot (what the static filters iterate).
    pub classes: usize,
    pub workloads: usize,
    pub instances: usize,
    pub placed: usize,
    pub unplaceable: usize,
    /// Allocations evicted by higher-priority instances.
    pub preemptions: usize,
    /// Gangs decided (each one unit).
    pub gangs: usize,
    /// Generating the API objects.
    pub generate_ms: f64,
    /// Building the placement snapshot from the objects ([`Fleet::new`]).
    pub build_fleet_ms: f64,
    /// Compiling the workloads into the batch.
    pub build_batch_ms: f64,
    /// Sum of the decision times.
    pub total_ms: f64,
    /// Instances decided (placed or found unplaceable) per second of decision time.
    pub placements_per_sec: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// Slowest decision per instance.
    pub max_us: f64,
    /// Slowest unit, a gang counted whole.
    pub max_unit_us: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e3
}

/// Gives services and VMs ports (see [`placement`]).
pub fn add_ports(workloads: &mut [api::Workload]) {
    let served = workloads
        .iter_mut()
        .filter(|w| w.spec.type_ != api::kinds::WorkloadType::Job);
    for (i, w) in served.enumerate() {
        let port = |name: &str, port| api::task::Port {
            name: name.into(),
            port,
            target: None,
            protocol: api::task::Protocol::Tcp,
        };
        w.spec.task.ports = vec![port("http", 0)];
        if i % 10 == 0 {
            w.spec.task.ports.push(port("metrics", 9100));
        }
    }
}

/// Gives every project a quota of `share` of the whole fleet's cpu, memory and GPUs and of
/// `instances` allocations (see [`placement_with_quota`]).
pub fn set_quotas(fleet: &mut crate::SimFleet, instances: usize, share: f64) {
    let (mut cpu, mut memory, mut gpus) = (0u64, 0u64, 0u64);
    for n in &fleet.nodes {
        let a = n.spec.allocatable();
        cpu += a.cpu.millis();
        memory += a.memory.bytes();
        gpus += u64::from(a.gpu_count());
    }
    let part = |n: u64| (n as f64 * share) as u64;
    let quota = api::kinds::Quota {
        cpu: Some(api::Cpu::from_millis(part(cpu))),
        memory: Some(api::Memory::from_bytes(part(memory))),
        gpus: Some(u32::try_from(part(gpus)).unwrap_or(u32::MAX)),
        instances: Some(u32::try_from(part(instances as u64)).unwrap_or(u32::MAX)),
        gpus_by_model: Default::default(),
    };
    for p in &mut fleet.projects {
        p.spec.quota = Some(quota.clone());
    }
}

/// Runs the benchmark: `nodes` nodes, `instances` instances, both generated from `seed`.
/// With `ports`, every service and VM listens on a dynamic host port, and every tenth
/// also on the static port 9100, so host ports are a resource the scheduler accounts for.
pub fn placement(
    nodes: usize,
    instances: usize,
    seed: u64,
    ports: bool,
) -> Result<PlacementReport, BenchError> {
    placement_with_quota(nodes, instances, seed, ports, None)
}

/// [`placement`], and with `quota` every project's quota is that share of the fleet's
/// cpu, memory and GPUs and of the instances ([`set_quotas`]), so every decision checks
/// a quota (and some wait for one).
pub fn placement_with_quota(
    nodes: usize,
    instances: usize,
    seed: u64,
    ports: bool,
    quota: Option<f64>,
) -> Result<PlacementReport, BenchError> {
    let t = Instant::now();
    let mut fleet = FleetSpec::new(nodes, seed).generate();
    let mut workloads = WorkloadSpec::new(instances, seed).generate(&fleet);
    if ports {
        add_ports(&mut workloads);
    }
    if let Some(share) = quota {
        set_quotas(&mut fleet, instances, share);
    }
    let generate = t.elapsed();

    let t = Instant::now();
    let mut snapshot = Fleet::new(&fleet.sites, &fleet.nodes)?;
    let build_fleet = t.elapsed();
    let classes = snapshot.class_count();

    let t = Instant::now();
    let mut batch = Batch::new();
    for w in &workloads {
        let ns = w.metadata.namespace.as_deref().unwrap_or("default");
        let project = fleet
            .project(ns)
            .ok_or_else(|| BenchError::UnknownProject {
                workload: w.metadata.name.clone(),
                project: ns.to_string(),
            })?;
        batch.add_in_project(w, project, 0..w.spec.replicas.max(0) as u32)?;
    }
    let build_batch = t.elapsed();

    let options = Options::default();
    let mut samples: Vec<u64> = Vec::with_capacity(batch.len());
    let mut total = Duration::ZERO;
    let mut max_unit = Duration::ZERO;
    let mut gangs = 0;
    let mut placer = Placer::new(&mut snapshot, &batch, &options);
    loop {
        let t = Instant::now();
        let Some(decided) = placer.step() else { break };
        let dt = t.elapsed();
        let members = decided.len().max(1);
        total += dt;
        max_unit = max_unit.max(dt);
        if members > 1 {
            gangs += 1;
        }
        let each = dt.as_nanos() as u64 / members as u64;
        samples.extend(std::iter::repeat_n(each, members));
    }
    let (mut placed, mut unplaceable, mut preemptions) = (0, 0, 0);
    for i in 0..batch.len() {
        match placer.outcome(i) {
            Some(Outcome::Placed(p)) => {
                placed += 1;
                preemptions += p.preempted.len();
            }
            Some(Outcome::Unplaceable(_)) | None => unplaceable += 1,
        }
    }
    drop(placer);
    samples.sort_unstable();
    let decided = samples.len();
    Ok(PlacementReport {
        seed,
        nodes: fleet.nodes.len(),
        sites: fleet.sites.len(),
        classes,
        workloads: workloads.len(),
        instances: batch.len(),
        placed,
        unplaceable,
        preemptions,
        gangs,
        generate_ms: ms(generate),
        build_fleet_ms: ms(build_fleet),
        build_batch_ms: ms(build_batch),
        total_ms: ms(total),
        placements_per_sec: if total.is_zero() {
            0.0
        } else {
            decided as f64 / total.as_secs_f64()
        },
        p50_us: percentile_us(&samples, 0.50),
        p90_us: percentile_us(&samples, 0.90),
        p99_us: percentile_us(&samples, 0.99),
        max_us: samples.last().map_or(0.0, |n| *n as f64 / 1e3),
        max_unit_us: max_unit.as_secs_f64() * 1e6,
    })
}
