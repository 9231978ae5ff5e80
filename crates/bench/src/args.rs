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
    /// Bypass Meridian: send each create straight to this etcd cluster as the etcd
    /// transaction a Meridian create commits (object put guarded on its absence and the
    /// project's existence, audit entry, audit chain head compare-and-put, after a read of
    /// the head). Needs a build with the `etcd` feature
    #[arg(long, value_name = "etcd://HOST:PORT[,...]", value_parser = parse_raw_etcd)]
    pub raw_etcd: Option<EtcdEndpoints>,
    /// With --raw-etcd: `shared`, one audit chain for every client, its appends serialised
    /// in this process as one Meridian server serialises them; `per-client`, one chain per
    /// client, so nothing is serialised (etcd's own ceiling for transactions of that shape)
    #[arg(long, value_enum, default_value_t = RawChain::Shared, requires = "raw_etcd")]
    pub raw_chain: RawChain,
    /// With --raw-etcd: the key prefix to write under (as `meridian server --etcd-prefix`);
    /// each run writes its own object names, and with `per-client` its own chains
    #[arg(
        long,
        default_value = "/meridian-raw-bench",
        value_name = "PREFIX",
        requires = "raw_etcd"
    )]
    pub raw_prefix: String,
}

/// How `--raw-etcd` chains its audit entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RawChain {
    /// One chain, appends serialised in this process (as in one Meridian server).
    Shared,
    /// One chain per client: nothing serialised.
    PerClient,
}

/// The endpoints of an etcd cluster, `HOST:PORT` each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEndpoints(pub Vec<String>);

/// `--raw-etcd`: an etcd URL, parsed as `meridian server --store` parses it.
fn parse_raw_etcd(s: &str) -> Result<EtcdEndpoints, String> {
    store::etcd_url::parse_url(s).map(EtcdEndpoints)
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
    /// Servers to spread the watchers over, round-robin (same token; for several servers
    /// on one etcd cluster); the writer always writes through --server. Default: --server
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', value_parser = parse_http_url)]
    pub watch_servers: Vec<String>,
}

/// A server URL of `--watch-servers`: http:// or https://.
fn parse_http_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("{s:?} is not a server URL: expected http://HOST:PORT or https://HOST:PORT")
        })?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s.to_owned())
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        bench: BenchCommand,
    }

    fn parse(args: &[&str]) -> Result<BenchCommand, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.bench)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn raw_etcd_takes_an_etcd_url_and_its_options_need_it() {
        let Ok(BenchCommand::Create(a)) = parse(&[
            "create",
            "--raw-etcd",
            "etcd://127.0.0.1:2379,127.0.0.1:2380",
            "--raw-chain",
            "per-client",
        ]) else {
            panic!("create with --raw-etcd parses");
        };
        assert_eq!(
            a.raw_etcd.map(|e| e.0),
            Some(vec![
                "127.0.0.1:2379".to_owned(),
                "127.0.0.1:2380".to_owned()
            ])
        );
        assert_eq!(a.raw_chain, RawChain::PerClient);
        assert_eq!(a.raw_prefix, "/meridian-raw-bench");

        let Ok(BenchCommand::Create(a)) = parse(&["create"]) else {
            panic!("create parses");
        };
        assert!(a.raw_etcd.is_none());
        assert_eq!(a.raw_chain, RawChain::Shared);

        let e = parse(&["create", "--raw-etcd", "http://127.0.0.1:2379"]).unwrap_err();
        assert!(e.contains("--raw-etcd") && e.contains("etcd://"), "{e}");
        let e = parse(&["create", "--raw-etcd", "etcd://a"]).unwrap_err();
        assert!(e.contains("--raw-etcd") && e.contains("no port"), "{e}");
        let e = parse(&["create", "--raw-chain", "shared"]).unwrap_err();
        assert!(e.contains("--raw-etcd"), "{e}");
        let e = parse(&["create", "--raw-etcd", "etcd://a:1", "--raw-chain", "x"]).unwrap_err();
        assert!(e.contains("--raw-chain"), "{e}");
    }

    #[test]
    fn watch_servers_is_a_list_of_http_urls() {
        let Ok(BenchCommand::Watch(a)) = parse(&[
            "watch",
            "--watch-servers",
            "http://127.0.0.1:1,https://h:2",
            "--watch-servers",
            "http://127.0.0.1:3",
        ]) else {
            panic!("watch with --watch-servers parses");
        };
        assert_eq!(
            a.watch_servers,
            ["http://127.0.0.1:1", "https://h:2", "http://127.0.0.1:3"]
        );
        let Ok(BenchCommand::Watch(a)) = parse(&["watch"]) else {
            panic!("watch parses");
        };
        assert!(a.watch_servers.is_empty());
        let e = parse(&["watch", "--watch-servers", "127.0.0.1:1"]).unwrap_err();
        assert!(
            e.contains("--watch-servers") && e.contains("http://"),
            "{e}"
        );
        let e = parse(&["watch", "--watch-servers", "http://"]).unwrap_err();
        assert!(
            e.contains("--watch-servers") && e.contains("no host"),
            "{e}"
        );
    }
}
