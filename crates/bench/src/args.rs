//! The flags of `meridian bench`: one definition each, for parsing and `--help`.

use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable creates through the API from concurrent clients; throughput and latency
    #[command(
        after_help = "Examples:\n  meridian bench create --server http://127.0.0.1:7420 --token \"$T\" --clients 64 --count 20000\n  meridian bench create --clients 64 --duration 20s --rate 1000   # paced open loop"
    )]
    Create(CreateArgs),
    /// Watch fan-out: W watchers, E paced creates; commit-to-delivery latency
    #[command(
        after_help = "Example:\n  ulimit -n 4096; meridian bench watch --watchers 1000 --events 200 --rate 50"
    )]
    Watch(WatchArgs),
    /// Resident memory of a server spawned here: idle, then with N stored objects
    #[command(after_help = "Example:\n  meridian bench rss --objects 100000")]
    Rss(RssArgs),
    /// kill -9 durability experiment: no acknowledged write may be lost
    #[command(after_help = "Example:\n  meridian bench crash --runs 20 --clients 8")]
    Crash(CrashArgs),
    /// Placement engine alone, on one thread: decisions/s and time per decision on a
    /// generated fleet and workload mix (no server needed)
    #[command(
        after_help = "Examples:\n  meridian bench placement --nodes 10000 --instances 100000\n  meridian bench placement --nodes 1000,10000,100000 --instances 100000   # growth table\n  meridian bench placement --nodes 300 --instances 1000 --json\n\nWith --json: one JSON object, or for a list of --nodes a JSON array of objects (one per\nsize, in order). Keys: nodes, sites, classes, workloads, instances, placed, unplaceable,\npreemptions, gangs, seed, generate_ms, build_fleet_ms, build_batch_ms, total_ms,\nplacements_per_sec (instances decided per second of decision time), p50_us, p90_us,\np99_us, max_us (per instance; a gang's time is split over its members), max_unit_us."
    )]
    Placement(PlacementArgs),
    /// Trace replay: a GPU cluster trace's tasks placed on its nodes through the real
    /// placement code on a simulated clock, per scoring policy (no server needed)
    #[command(
        after_help = "Example:\n  meridian bench queue --trace openb_pod_list_default.csv --nodes openb_node_list_all_node.csv\n\nThe trace is the Alibaba GPU trace of Weng et al., \"Beware of Fragmentation: Scheduling\nGPU-Sharing Workloads with Fragmentation Gradient Descent\", USENIX ATC 2023\n(alibaba/clusterdata, cluster-trace-gpu-v2023). Policies: fgd (fragmentation gradient\ndescent, placement's default for GPU work), bestfit (binpack), randomfit (a random node\nwith room, seeded). Reported per policy: GPU allocation ratio at every 5% of the arrived\nGPU demand, allocation ratio and unallocated GPUs at the first task that did not fit,\nqueueing delay (mean, p95) overall and per QoS class, preemptions, partial gangs (always\n0, checked); and the inflation experiment (tasks drawn from the trace, no departures,\nuntil their demand reaches the cluster's GPUs) unless --no-inflation."
    )]
    Queue(QueueArgs),
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The tasks: an `openb_pod_list_*.csv` file (name,cpu_milli,memory_mib,num_gpu,
    /// gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time)
    #[arg(long, value_name = "FILE")]
    pub trace: std::path::PathBuf,
    /// The nodes: an `openb_node_list_*.csv` file (sn,cpu_milli,memory_mib,gpu,model)
    #[arg(long, value_name = "FILE")]
    pub nodes: std::path::PathBuf,
    /// Policies to compare, in one run: fgd, bestfit, randomfit
    #[arg(long, default_value = "fgd,bestfit,randomfit", value_name = "P[,P...]")]
    pub policy: String,
    /// Seed of the inflation draws and of random fit
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the inflation experiment (replay the trace's arrivals and departures only)
    #[arg(long)]
    pub no_inflation: bool,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Nodes in the generated fleet; a comma-separated list (1000,10000,100000) runs each
    /// size in turn and prints the growth table
    #[arg(long, default_value = "10000", value_name = "N[,N...]")]
    pub nodes: String,
    /// Instances to place (replicas over the generated workloads)
    #[arg(long, default_value_t = 100_000, value_name = "M")]
    pub instances: usize,
    /// Seed of the generators (same seed, same fleet and workloads)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give every service and VM a dynamic host port, and every tenth also the static
    /// port 9100 (host ports then count as a node resource)
    #[arg(long)]
    pub ports: bool,
    /// Give every project a quota of this share of the fleet's cpu, memory and GPUs and
    /// of the instances (0.25: a quarter), so every decision checks a quota
    #[arg(long, value_name = "SHARE", value_parser = parse_share)]
    pub quota: Option<f64>,
    /// Print JSON instead of a table: one object, or an array for a list of sizes
    #[arg(long)]
    pub json: bool,
}

/// The project of `create` and `watch` is the global `--project`/`-n` (default `bench`).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Concurrent clients (one connection each)
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Objects to create (default 20000 unless --duration)
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Create for this long instead of a count (e.g. 20s, 2m, 500ms)
    #[arg(long, value_parser = api::duration::parse_nonzero)]
    pub duration: Option<Duration>,
    /// Size of each request body in bytes (padded with an annotation)
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Target objects/s, paced open loop; 0 = as fast as possible (closed loop)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// PID of the server process (on this machine), to report its CPU time per object
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Declare each workload's data as personal, to stay in the EU on ISO 27001 sites, so
    /// that admission policies (the sovereignty pack) have real work to do
    #[arg(long)]
    pub personal_data: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch streams to open (each is one HTTP/1.1 connection: mind `ulimit -n`)
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Objects to create while watching
    #[arg(long, default_value_t = 200)]
    pub events: usize,
    /// Creates per second
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Size of each created object's request body in bytes
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Decode every event fully with the API client (as a real client would) instead of
    /// the light reader that only finds each event's sequence number
    #[arg(long)]
    pub parse: bool,
}

#[derive(Debug, Args)]
pub struct RssArgs {
    /// Objects to load
    #[arg(long, default_value_t = 100_000)]
    pub objects: u64,
    /// Concurrent clients loading them
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Size of each request body in bytes
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
}

#[derive(Debug, Args)]
pub struct CrashArgs {
    /// Kill-and-restart experiments to run
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Concurrent writers
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Earliest kill, in ms after the writers start
    #[arg(long, default_value_t = 200)]
    pub min_ms: u64,
    /// Latest kill, in ms after the writers start
    #[arg(long, default_value_t = 1500)]
    pub max_ms: u64,
    /// Size of each request body in bytes
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
}

/// A share for `--quota`: a number above 0 and at most 1.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err(format!(
            "{s:?} is not a share above 0 and at most 1 (0.25 is a quarter)"
        )),
    }
}
