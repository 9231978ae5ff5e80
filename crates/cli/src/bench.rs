//! Load generators and measurements behind `meridian bench` (figures go to BENCHMARKS.md).
//!
//! Everything here is bounded in count and time and talks to loopback servers only:
//!
//! - `create`: durable creates through the HTTP API from C concurrent clients, closed loop
//!   or paced open loop (`--rate`); latency of a paced request is measured from its
//!   *intended* start, so a stalled server cannot hide its stall (no coordinated omission).
//! - `watch`: W watch streams, then E paced creates; per (watcher, event) the time from the
//!   writer's acknowledgement, and from the writer's send, to the watcher's receipt.
//! - `rss`: resident memory of a server this command spawns, idle, after loading N objects
//!   and after a restart over those N objects.
//! - `crash`: the kill -9 durability experiment: acknowledged writes must survive, and the
//!   audit chain must verify afterwards.
//! - `placement`: the scheduler core alone, in this process, on one thread: a generated
//!   fleet and workload mix (`sim`), decisions per second and time per decision.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};

use client::{Client, ClientError, ListOptions};

use crate::args::Global;
use crate::config;

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
    /// the light reader that only finds each event's sequence number (always for https)
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

pub async fn run(global: &Global, cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Create(a) => create(global, a).await,
        BenchCommand::Watch(a) => watch(global, a).await,
        BenchCommand::Rss(a) => rss(a).await,
        BenchCommand::Crash(a) => crash(a).await,
        BenchCommand::Placement(a) => placement(a),
    }
}

// ---- shared pieces ----

fn workload_kind() -> &'static api::KindInfo {
    api::kinds::WORKLOAD
}

/// Annotation holding the sequence number of a benchmark object.
const SEQ_ANNOTATION: &str = "bench.meridian.dev/seq";
/// [`SEQ_ANNOTATION`] as a key in compact JSON, then the opening quote of its value.
const SEQ_KEY: &[u8] = b"\"bench.meridian.dev/seq\":\"";
/// Annotation holding the wall-clock send time, in unix nanoseconds.
const SENT_ANNOTATION: &str = "bench.meridian.dev/sent-unix-nanos";
const PAD_ANNOTATION: &str = "bench.meridian.dev/pad";
/// Label naming the run (so watches select exactly one run's objects).
const RUN_LABEL: &str = "bench-run";

/// A valid Workload whose JSON request body is `size` bytes (or its minimum when smaller).
fn workload(name: &str, project: &str, run: &str, seq: u64, size: usize) -> Value {
    let sent = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut object = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": project,
            "labels": {"app": "bench", RUN_LABEL: run},
            "annotations": {
                SEQ_ANNOTATION: seq.to_string(),
                SENT_ANNOTATION: format!("{sent:020}"),
                PAD_ANNOTATION: "",
            },
        },
        "spec": {
            "type": "service",
            "task": {
                "driver": "exec",
                "command": ["/bin/true"],
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
        },
    });
    let base = serde_json::to_vec(&object).map_or(0, |v| v.len());
    if size > base {
        object["metadata"]["annotations"][PAD_ANNOTATION] = Value::String("x".repeat(size - base));
    }
    object
}

/// Personal data kept in the EU on ISO 27001 sites (as examples/workloads.yaml's payroll-api).
fn declare_personal_data(object: &mut Value) {
    object["spec"]["data"] = json!({"classification": "personal", "residency": ["EU"]});
    object["spec"]["compliance"] = json!(["ISO27001"]);
}

/// A short random id: runs never collide on names.
fn run_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The whole error chain on one line.
fn describe(e: &ClientError) -> String {
    let mut out = match e {
        ClientError::Api(s) => format!("HTTP {} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn resource_version(object: &Value) -> Option<i64> {
    object
        .get("metadata")?
        .get("resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

/// Create the project unless it exists.
async fn ensure_project(client: &Client, project: &str) -> Result<()> {
    let kind = api::kinds::PROJECT;
    let object = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Project",
        "metadata": {"name": project},
        "spec": {"description": "load generated by meridian bench"},
    });
    match client.create(kind, None, &object, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(409) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the project {project:?}: {}",
            describe(&e)
        )),
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ms_f(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"))
}

/// A two-column table of figures.
fn print_table(title: &str, rows: &[(&str, String)]) {
    println!("{title}");
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

/// Latency rows p50/p90/p99/max of unsorted durations.
fn latency_rows(prefix: &str, mut lat: Vec<Duration>) -> Vec<(String, String)> {
    lat.sort_unstable();
    let f = |q: f64| percentile(&lat, q).map_or_else(|| "-".to_owned(), ms);
    vec![
        (format!("{prefix} p50"), f(0.50)),
        (format!("{prefix} p90"), f(0.90)),
        (format!("{prefix} p99"), f(0.99)),
        (
            format!("{prefix} max"),
            lat.last().map_or_else(|| "-".to_owned(), |d| ms(*d)),
        ),
    ]
}

// ---- create ----

/// What a create load does.
struct LoadSpec {
    clients: usize,
    /// Stop after this many objects (None: after `duration`).
    count: Option<u64>,
    duration: Option<Duration>,
    /// Objects per second; 0 for closed loop.
    rate: f64,
    size: usize,
    /// Declare personal data kept in the EU (see [`declare_personal_data`]).
    personal_data: bool,
    project: String,
    run: String,
}

/// What a create load measured.
struct LoadResult {
    created: u64,
    errors: u64,
    /// Distinct error messages and how often each occurred.
    error_messages: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Run creates from `spec.clients` workers, each with its own client (connection).
async fn run_creates(clients: Vec<Client>, spec: &LoadSpec) -> LoadResult {
    let spec_count = spec
        .count
        .or_else(|| {
            // A paced run of a fixed duration is a fixed count.
            (spec.rate > 0.0)
                .then(|| {
                    spec.duration
                        .map(|d| (d.as_secs_f64() * spec.rate).ceil() as u64)
                })
                .flatten()
        })
        .unwrap_or(u64::MAX);
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let deadline = spec.duration.map(|d| start + d);
    let mut tasks = Vec::new();
    for client in clients {
        let next = Arc::clone(&next);
        let (project, run, size, rate, personal_data) = (
            spec.project.clone(),
            spec.run.clone(),
            spec.size,
            spec.rate,
            spec.personal_data,
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut created = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= spec_count {
                    break;
                }
                let intended = if rate > 0.0 {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at).await;
                    at
                } else {
                    let now = tokio::time::Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        break;
                    }
                    now
                };
                let name = format!("b-{run}-{i}");
                let mut object = workload(&name, &project, &run, i, size);
                if personal_data {
                    declare_personal_data(&mut object);
                }
                match client
                    .create(workload_kind(), Some(&project), &object, false)
                    .await
                {
                    Ok(_) => {
                        created += 1;
                        latencies.push(intended.elapsed());
                    }
                    Err(e) => *errors.entry(describe(&e)).or_default() += 1,
                }
            }
            (created, latencies, errors)
        }));
    }
    let mut result = LoadResult {
        created: 0,
        errors: 0,
        error_messages: BTreeMap::new(),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok((created, latencies, errors)) => {
                result.created += created;
                result.latencies.extend(latencies);
                for (m, n) in errors {
                    result.errors += n;
                    *result.error_messages.entry(m).or_default() += n;
                }
            }
            Err(e) => {
                result.errors += 1;
                *result
                    .error_messages
                    .entry(format!("worker failed: {e}"))
                    .or_default() += 1;
            }
        }
    }
    result.elapsed = start.elapsed();
    result
}

fn report_errors(messages: &BTreeMap<String, u64>) {
    for (m, n) in messages.iter().take(10) {
        eprintln!("  error x{n}: {m}");
    }
}

/// Size of a stored object as the API returns it.
async fn stored_size(client: &Client, project: &str, name: &str) -> Option<usize> {
    let object = client
        .get(workload_kind(), Some(project), name)
        .await
        .ok()?;
    serde_json::to_vec(&object).ok().map(|v| v.len())
}

fn clients_for(conn: &config::Resolved, n: usize) -> Result<Vec<Client>> {
    (0..n).map(|_| config::client(conn)).collect()
}

async fn create(global: &Global, args: &CreateArgs) -> Result<()> {
    if args.clients == 0 {
        bail!(crate::exit::UserError::msg("--clients must be at least 1"));
    }
    let conn = config::resolve(global)?;
    let project = global.namespace.clone().unwrap_or_else(|| "bench".into());
    let clients = clients_for(&conn, args.clients)?;
    ensure_project(&clients[0], &project).await?;
    let spec = LoadSpec {
        clients: args.clients,
        count: args.count.or(if args.duration.is_none() {
            Some(20_000)
        } else {
            None
        }),
        duration: args.duration,
        rate: args.rate,
        size: args.size,
        personal_data: args.personal_data,
        project,
        run: run_id(),
    };
    let probe = clients[0].clone();
    let cpu_before = args.server_pid.and_then(process_cpu);
    let own_before = process_cpu(std::process::id());
    let result = run_creates(clients, &spec).await;
    let server_cpu = args
        .server_pid
        .and_then(process_cpu)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let own_cpu = process_cpu(std::process::id())
        .zip(own_before)
        .map(|(after, before)| after.saturating_sub(before));
    let stored = stored_size(&probe, &spec.project, &format!("b-{}-0", spec.run)).await;
    print_create(&spec, &conn.server, &result, stored, server_cpu, own_cpu);
    if result.errors > 0 {
        report_errors(&result.error_messages);
        bail!("{} of the creates failed", result.errors);
    }
    Ok(())
}

fn print_create(
    spec: &LoadSpec,
    server: &str,
    r: &LoadResult,
    stored: Option<usize>,
    server_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
) {
    let secs = r.elapsed.as_secs_f64();
    let mut rows: Vec<(String, String)> = vec![
        ("server".into(), server.to_owned()),
        ("clients".into(), spec.clients.to_string()),
        (
            "mode".into(),
            if spec.rate > 0.0 {
                format!(
                    "open loop, paced at {} objects/s (latency from intended start)",
                    spec.rate
                )
            } else {
                "closed loop (as fast as possible)".into()
            },
        ),
        (
            "object".into(),
            format!(
                "Workload, request body {} B, stored {}",
                spec.size,
                stored.map_or_else(|| "?".into(), |s| format!("{s} B"))
            ),
        ),
        ("created".into(), r.created.to_string()),
        ("errors".into(), r.errors.to_string()),
        ("elapsed".into(), format!("{secs:.2} s")),
        (
            "throughput".into(),
            format!("{:.0} objects/s", r.created as f64 / secs.max(1e-9)),
        ),
    ];
    rows.extend(latency_rows("latency", r.latencies.clone()));
    let per_object = |cpu: Duration| {
        format!(
            "{:.2} s, {:.0} µs/object, {:.2} cores",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / (r.created.max(1) as f64),
            cpu.as_secs_f64() / secs.max(1e-9)
        )
    };
    if let Some(cpu) = server_cpu {
        rows.push(("server CPU".into(), per_object(cpu)));
    }
    if let Some(cpu) = own_cpu {
        rows.push(("load generator CPU".into(), per_object(cpu)));
    }
    let rows: Vec<(&str, String)> = rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    print_table("bench create", &rows);
}

/// CPU time (user + system, all threads) of a process so far, from /proc/PID/stat.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture's user ABI.
    Some(Duration::from_millis(ticks * 10))
}

// ---- watch ----

/// The soft limit of open files of this process, from /proc (None: unknown or unlimited).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The revision of the project's workloads now (watches start after it).
async fn current_revision(client: &Client, project: &str) -> Result<String> {
    let page = client
        .list(
            workload_kind(),
            Some(project),
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot list workloads: {}", describe(&e)))?;
    page.get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the list has no resourceVersion")
}

struct WatcherOutcome {
    /// (sequence number, receipt time)
    received: Vec<(u64, Instant)>,
    error: Option<String>,
}

async fn watch(global: &Global, args: &WatchArgs) -> Result<()> {
    if args.watchers == 0 || args.events == 0 || args.rate <= 0.0 {
        bail!(crate::exit::UserError::msg(
            "--watchers, --events and --rate must be positive"
        ));
    }
    let needed = args.watchers as u64 + 128;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        bail!(crate::exit::UserError::msg(format!(
            "{} watchers need about {needed} open files but this process may open {limit}: \
             raise the limit first (`ulimit -n {}`), for the server process too",
            args.watchers,
            needed.next_power_of_two()
        )));
    }
    let conn = config::resolve(global)?;
    let project = global.namespace.clone().unwrap_or_else(|| "bench".into());
    let client = config::client(&conn)?;
    ensure_project(&client, &project).await?;
    let run = run_id();
    let from = current_revision(&client, &project).await?;

    // Open every watch before the first write; each is its own connection.
    let opened = Instant::now();
    let watch_client = config::client(&conn)?;
    let opts = ListOptions {
        label_selector: Some(format!("{RUN_LABEL}={run}")),
        resource_version: Some(from.clone()),
        ..Default::default()
    };
    let raw = !args.parse && conn.server.starts_with("http://");
    let path = format!(
        "{}?watch=true&labelSelector={RUN_LABEL}%3D{run}&resourceVersion={from}",
        client::resource_path(workload_kind(), Some(&project), None)
    );
    let streams: Vec<Result<Watcher>> = futures::stream::iter(0..args.watchers)
        .map(|_| {
            let (c, o) = (watch_client.clone(), opts.clone());
            let (project, path, conn) = (project.clone(), path.clone(), &conn);
            async move {
                if raw {
                    RawWatch::open(&conn.server, &conn.token, &path)
                        .await
                        .map(Watcher::Raw)
                } else {
                    c.watch(workload_kind(), Some(&project), &o)
                        .await
                        .map(Watcher::Typed)
                        .map_err(|e| anyhow::anyhow!(describe(&e)))
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut events_streams = Vec::with_capacity(streams.len());
    for s in streams {
        match s {
            Ok(s) => events_streams.push(s),
            Err(e) => bail!(
                "cannot open watch {} of {}: {e:#} (is the server's `ulimit -n` high enough?)",
                events_streams.len() + 1,
                args.watchers,
            ),
        }
    }
    let open_time = opened.elapsed();

    let expected = args.events;
    let write_time = Duration::from_secs_f64(args.events as f64 / args.rate);
    let deadline = tokio::time::Instant::now() + write_time + Duration::from_secs(30);
    let watchers: Vec<_> = events_streams
        .into_iter()
        .map(|mut events| {
            tokio::spawn(async move {
                let mut out = WatcherOutcome {
                    received: Vec::with_capacity(expected),
                    error: None,
                };
                while out.received.len() < expected {
                    let delivery = match tokio::time::timeout_at(deadline, events.next()).await {
                        Err(_) => Delivery::Failed("timed out waiting for events".into()),
                        Ok(d) => d,
                    };
                    match delivery {
                        Delivery::Seq(seq) => out.received.push((seq, Instant::now())),
                        Delivery::Other => {}
                        Delivery::Failed(e) => {
                            out.error = Some(e);
                            break;
                        }
                    }
                }
                out
            })
        })
        .collect();

    // Paced writes; each create runs in its own task so a slow ack does not delay the next.
    let start = tokio::time::Instant::now();
    let mut writes = Vec::with_capacity(args.events);
    for i in 0..args.events {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / args.rate)).await;
        let (c, project, run, size) = (client.clone(), project.clone(), run.clone(), args.size);
        writes.push(tokio::spawn(async move {
            let name = format!("w-{run}-{i}");
            let object = workload(&name, &project, &run, i as u64, size);
            let sent = Instant::now();
            let r = c
                .create(workload_kind(), Some(&project), &object, false)
                .await;
            (sent, Instant::now(), r.map_err(|e| describe(&e)))
        }));
    }
    let mut sent_ack: Vec<Option<(Instant, Instant)>> = vec![None; args.events];
    let mut write_errors: BTreeMap<String, u64> = BTreeMap::new();
    for (i, w) in writes.into_iter().enumerate() {
        match w.await {
            Ok((sent, ack, Ok(_))) => sent_ack[i] = Some((sent, ack)),
            Ok((_, _, Err(m))) => *write_errors.entry(m).or_default() += 1,
            Err(e) => *write_errors.entry(e.to_string()).or_default() += 1,
        }
    }
    let acked = sent_ack.iter().filter(|s| s.is_some()).count();

    let mut after_ack: Vec<f64> = Vec::new();
    let mut after_send: Vec<f64> = Vec::new();
    let mut commit: Vec<Duration> = sent_ack
        .iter()
        .flatten()
        .map(|(s, a)| a.duration_since(*s))
        .collect();
    commit.sort_unstable();
    let mut watcher_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut delivered = 0u64;
    let mut early = 0u64;
    for w in watchers {
        let out = w.await.context("a watcher task failed")?;
        if let Some(e) = out.error {
            *watcher_errors.entry(e).or_default() += 1;
        }
        for (seq, at) in out.received {
            let Some(Some((sent, ack))) = usize::try_from(seq).ok().and_then(|s| sent_ack.get(s))
            else {
                continue;
            };
            delivered += 1;
            let signed = |from: Instant| {
                if at >= from {
                    at.duration_since(from).as_secs_f64() * 1000.0
                } else {
                    -(from.duration_since(at).as_secs_f64() * 1000.0)
                }
            };
            let a = signed(*ack);
            if a < 0.0 {
                early += 1;
            }
            after_ack.push(a);
            after_send.push(signed(*sent));
        }
    }
    after_ack.sort_unstable_by(f64::total_cmp);
    after_send.sort_unstable_by(f64::total_cmp);
    let expected_total = (acked * args.watchers) as u64;
    let missed = expected_total.saturating_sub(delivered);
    let p = |v: &[f64], q| ms_f(percentile(v, q));
    let rows: Vec<(&str, String)> = vec![
        ("server", conn.server.clone()),
        (
            "watchers",
            format!(
                "{} ({})",
                args.watchers,
                if raw {
                    "light reader: finds the sequence number in each line"
                } else {
                    "API client: decodes every event"
                }
            ),
        ),
        (
            "watches opened in",
            format!("{:.2} s", open_time.as_secs_f64()),
        ),
        (
            "events",
            format!(
                "{} creates at {}/s, request body {} B",
                args.events, args.rate, args.size
            ),
        ),
        ("creates acked", acked.to_string()),
        ("deliveries", format!("{delivered} of {expected_total}")),
        ("missed", missed.to_string()),
        (
            "create (send→ack) p50",
            ms_f(percentile(&commit, 0.5).map(|d| d.as_secs_f64() * 1e3)),
        ),
        (
            "create (send→ack) p99",
            ms_f(percentile(&commit, 0.99).map(|d| d.as_secs_f64() * 1e3)),
        ),
        ("ack→delivery p50", p(&after_ack, 0.5)),
        ("ack→delivery p90", p(&after_ack, 0.9)),
        ("ack→delivery p99", p(&after_ack, 0.99)),
        ("ack→delivery max", ms_f(after_ack.last().copied())),
        ("delivered before ack", format!("{early} of {delivered}")),
        ("send→delivery p50", p(&after_send, 0.5)),
        ("send→delivery p90", p(&after_send, 0.9)),
        ("send→delivery p99", p(&after_send, 0.99)),
        ("send→delivery max", ms_f(after_send.last().copied())),
    ];
    print_table("bench watch", &rows);
    report_errors(&write_errors);
    report_errors(&watcher_errors);
    if missed > 0 || acked < args.events {
        bail!(
            "{missed} deliveries missed, {} creates failed",
            args.events - acked
        );
    }
    Ok(())
}

/// What a watcher saw next.
enum Delivery {
    /// An `ADDED` event of the benchmark object with this sequence number.
    Seq(u64),
    /// Any other event.
    Other,
    /// The stream failed or ended.
    Failed(String),
}

/// A watch stream, read by the API client or by the light reader.
enum Watcher {
    Typed(client::WatchEvents),
    Raw(RawWatch),
}

impl Watcher {
    async fn next(&mut self) -> Delivery {
        match self {
            Watcher::Typed(events) => match events.next().await {
                None => Delivery::Failed("the server ended the stream".into()),
                Some(Err(e)) => Delivery::Failed(describe(&e)),
                Some(Ok(ev)) => match ev.type_.as_str() {
                    "ADDED" => ev
                        .object
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(SEQ_ANNOTATION))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                        .map_or(Delivery::Other, Delivery::Seq),
                    "ERROR" => Delivery::Failed(format!("ERROR event: {}", ev.object)),
                    _ => Delivery::Other,
                },
            },
            Watcher::Raw(raw) => raw.next().await,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A watch over plain HTTP/1.1 that reads the chunked body itself and only looks for the
/// event type and the sequence annotation in each line, so that the load generator spends
/// little CPU per event (it shares the machine with the server).
struct RawWatch {
    stream: tokio::net::TcpStream,
    /// Bytes read, not yet de-chunked.
    wire: Vec<u8>,
    /// De-chunked body, not yet split into lines.
    body: Vec<u8>,
    /// Bytes left of the current chunk.
    chunk_left: usize,
    /// The CRLF after a chunk's data is due.
    chunk_crlf: bool,
    ended: bool,
}

impl RawWatch {
    async fn open(server: &str, token: &str, path: &str) -> Result<RawWatch> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = server
            .strip_prefix("http://")
            .context("the light watch reader speaks plain http only (use --parse)")?
            .trim_end_matches('/');
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
            token.trim()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut wire = Vec::with_capacity(8192);
        let head_end = loop {
            if let Some(end) = find(&wire, b"\r\n\r\n") {
                break end;
            }
            if wire.len() > 64 * 1024 || stream.read_buf(&mut wire).await? == 0 {
                bail!("the server closed the watch before answering");
            }
        };
        let head = String::from_utf8_lossy(&wire[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            bail!(
                "the watch was refused: {}",
                String::from_utf8_lossy(&wire).trim()
            );
        }
        if !head.contains("transfer-encoding: chunked") {
            bail!("the watch answer is not chunked: {head}");
        }
        wire.drain(..head_end + 4);
        let mut raw = RawWatch {
            stream,
            wire,
            body: Vec::with_capacity(8192),
            chunk_left: 0,
            chunk_crlf: false,
            ended: false,
        };
        raw.dechunk()?;
        Ok(raw)
    }

    /// Move complete chunk data from `wire` to `body`.
    fn dechunk(&mut self) -> Result<()> {
        loop {
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(self.wire.len());
                if n == 0 {
                    return Ok(());
                }
                self.body.extend(self.wire.drain(..n));
                self.chunk_left -= n;
                self.chunk_crlf = self.chunk_left == 0;
                continue;
            }
            if self.chunk_crlf {
                if self.wire.len() < 2 {
                    return Ok(());
                }
                self.wire.drain(..2);
                self.chunk_crlf = false;
                continue;
            }
            let Some(eol) = find(&self.wire, b"\r\n") else {
                return Ok(());
            };
            let line = String::from_utf8_lossy(&self.wire[..eol]).into_owned();
            let hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            self.wire.drain(..eol + 2);
            if size == 0 {
                self.ended = true;
                return Ok(());
            }
            self.chunk_left = size;
        }
    }

    async fn next(&mut self) -> Delivery {
        use tokio::io::AsyncReadExt;
        const ADDED: &[u8] = b"{\"type\":\"ADDED\"";
        const ERROR: &[u8] = b"{\"type\":\"ERROR\"";
        loop {
            if let Some(eol) = self.body.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=eol).collect();
                if line.starts_with(ERROR) {
                    return Delivery::Failed(String::from_utf8_lossy(&line).trim().to_owned());
                }
                if !line.starts_with(ADDED) {
                    return Delivery::Other;
                }
                let Some(at) = find(&line, SEQ_KEY) else {
                    return Delivery::Other;
                };
                let digits = &line[at + SEQ_KEY.len()..];
                let end = digits
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(digits.len());
                return std::str::from_utf8(&digits[..end])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .map_or(Delivery::Other, Delivery::Seq);
            }
            if self.ended {
                return Delivery::Failed("the server ended the stream".into());
            }
            self.wire.reserve(16 * 1024);
            match self.stream.read_buf(&mut self.wire).await {
                Ok(0) => return Delivery::Failed("the server closed the connection".into()),
                Ok(_) => {
                    if let Err(e) = self.dechunk() {
                        return Delivery::Failed(format!("{e:#}"));
                    }
                }
                Err(e) => return Delivery::Failed(format!("watch read failed: {e}")),
            }
        }
    }
}

// ---- spawned servers (rss, crash) ----

/// A `meridian server` child process on 127.0.0.1 with a free port. Killed on drop.
struct ServerProcess {
    child: Child,
    url: String,
    token: String,
    /// The last lines of its stderr, for diagnostics.
    stderr_tail: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    async fn start(data_dir: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the meridian binary")?;
        let mut child = Command::new(exe)
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env("MERIDIAN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `meridian server`")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        {
            let tail = Arc::clone(&tail);
            // Keeps draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("meridian server listening on ")
                        && let Some(tx) = url_tx.take()
                    {
                        let _ = tx.send(url.trim().to_owned());
                    }
                    if let Ok(mut t) = tail.lock() {
                        if t.len() >= 50 {
                            t.remove(0);
                        }
                        t.push(line);
                    }
                }
            });
        }
        let mut server = ServerProcess {
            child,
            url: String::new(),
            token: String::new(),
            stderr_tail: tail,
        };
        match tokio::time::timeout(Duration::from_secs(30), url_rx).await {
            Ok(Ok(url)) => server.url = url,
            _ => bail!(
                "the server did not start; its stderr:\n{}",
                server.stderr_tail()
            ),
        }
        let token_file = data_dir.join(server::ADMIN_TOKEN_FILE);
        server.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?
            .trim()
            .to_owned();
        Ok(server)
    }

    fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.url, &self.token, None)?)
    }

    fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("cannot read the server's /proc status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok((
            field("VmRSS:").context("no VmRSS")?,
            field("VmHWM:").context("no VmHWM")?,
        ))
    }

    /// SIGKILL and reap.
    fn kill(&mut self) -> Result<()> {
        self.child.kill().context("cannot kill the server")?;
        self.child.wait().context("cannot reap the server")?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("cannot create a temporary directory")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

// ---- rss ----

async fn rss(args: &RssArgs) -> Result<()> {
    let dir = temp_dir("meridian-bench-rss-")?;
    let mut server = ServerProcess::start(dir.path()).await?;
    let settle = Duration::from_secs(2);
    tokio::time::sleep(settle).await;
    let (idle, _) = server.memory_kib()?;
    let clients = (0..args.clients.max(1))
        .map(|_| server.client())
        .collect::<Result<Vec<_>>>()?;
    let project = "bench".to_owned();
    ensure_project(&clients[0], &project).await?;
    let spec = LoadSpec {
        clients: clients.len(),
        count: Some(args.objects),
        duration: None,
        rate: 0.0,
        size: args.size,
        personal_data: false,
        project,
        run: run_id(),
    };
    let load = run_creates(clients, &spec).await;
    if load.errors > 0 {
        report_errors(&load.error_messages);
        bail!("{} creates failed while loading", load.errors);
    }
    tokio::time::sleep(settle).await;
    let (loaded, peak) = server.memory_kib()?;
    let stored = stored_size(
        &server.client()?,
        &spec.project,
        &format!("b-{}-0", spec.run),
    )
    .await;

    // A full list of every object (paged), as a controller's initial sync would do.
    let all = server
        .client()?
        .list_all(
            workload_kind(),
            None,
            &ListOptions {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot list: {}", describe(&e)))?;
    let listed = all.len();
    drop(all);
    tokio::time::sleep(settle).await;
    let (after_list, peak_list) = server.memory_kib()?;

    server.kill()?;
    let disk = dir_size(dir.path());
    let restarted = ServerProcess::start(dir.path()).await?;
    tokio::time::sleep(settle).await;
    let (restart_idle, _) = restarted.memory_kib()?;
    drop(restarted);

    let rows: Vec<(&str, String)> = vec![
        (
            "objects",
            format!(
                "{} Workloads (request body {} B, stored {})",
                load.created,
                args.size,
                stored.map_or_else(|| "?".into(), |s| format!("{s} B"))
            ),
        ),
        (
            "load",
            format!(
                "{:.1} s, {:.0} objects/s",
                load.elapsed.as_secs_f64(),
                load.created as f64 / load.elapsed.as_secs_f64().max(1e-9)
            ),
        ),
        ("RSS idle, empty store", mib(idle)),
        ("RSS idle after loading", mib(loaded)),
        ("RSS peak while loading (VmHWM)", mib(peak)),
        (
            "RSS after listing all (paged 500)",
            format!("{} ({listed} listed)", mib(after_list)),
        ),
        ("RSS peak after listing (VmHWM)", mib(peak_list)),
        ("RSS idle after restart", mib(restart_idle)),
        (
            "store on disk",
            format!("{:.1} MiB", disk as f64 / 1048576.0),
        ),
    ];
    print_table("bench rss", &rows);
    Ok(())
}

// ---- crash ----

struct CrashRun {
    kill_after: Duration,
    acked: usize,
    lost: usize,
    /// Acknowledged objects found with an older resourceVersion than acknowledged.
    regressed: usize,
    /// Objects found that were never acknowledged (in flight at the kill, committed).
    unacked_present: usize,
    errors_before_kill: BTreeMap<String, u64>,
    audit: std::result::Result<String, String>,
}

async fn crash(args: &CrashArgs) -> Result<()> {
    if args.runs == 0 || args.clients == 0 || args.min_ms > args.max_ms {
        bail!(crate::exit::UserError::msg(
            "--runs and --clients must be positive and --min-ms at most --max-ms"
        ));
    }
    println!(
        "bench crash: {} runs, {} writers, kill -9 after {}–{} ms",
        args.runs, args.clients, args.min_ms, args.max_ms
    );
    println!(
        "  {:>3}  {:>8}  {:>6}  {:>4}  {:>9}  {:>8}  audit",
        "run", "kill ms", "acked", "lost", "rv older", "inflight"
    );
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let kill_after =
            Duration::from_millis(rand::thread_rng().gen_range(args.min_ms..=args.max_ms));
        let r = crash_run(args.clients, kill_after, args.size).await?;
        println!(
            "  {:>3}  {:>8}  {:>6}  {:>4}  {:>9}  {:>8}  {}",
            i + 1,
            r.kill_after.as_millis(),
            r.acked,
            r.lost,
            r.regressed,
            r.unacked_present,
            match &r.audit {
                Ok(m) => m.clone(),
                Err(m) => format!("FAILED: {m}"),
            }
        );
        report_errors(&r.errors_before_kill);
        runs.push(r);
    }
    let acked: usize = runs.iter().map(|r| r.acked).sum();
    let lost: usize = runs.iter().map(|r| r.lost + r.regressed).sum();
    let audit_failed = runs.iter().filter(|r| r.audit.is_err()).count();
    println!(
        "total: {acked} acknowledged writes, {lost} lost, audit chain verified after {} of {} runs",
        runs.len() - audit_failed,
        runs.len()
    );
    if lost > 0 || audit_failed > 0 {
        bail!(
            "durability violated: {lost} acknowledged writes lost, {audit_failed} audit failures"
        );
    }
    Ok(())
}

/// One experiment: start, write, kill -9, restart, check, verify the audit chain offline.
async fn crash_run(clients: usize, kill_after: Duration, size: usize) -> Result<CrashRun> {
    let dir = temp_dir("meridian-bench-crash-")?;
    let mut server = ServerProcess::start(dir.path()).await?;
    let killed = Arc::new(AtomicBool::new(false));
    let run = run_id();
    let mut writers = Vec::new();
    for w in 0..clients {
        let client = server.client()?;
        let killed = Arc::clone(&killed);
        let run = run.clone();
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<(String, i64)> = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let give_up = Instant::now() + Duration::from_secs(60);
            for seq in 0u64.. {
                let name = format!("c{w}-{seq}");
                let object = workload(&name, "default", &run, seq, size);
                match client
                    .create(workload_kind(), Some("default"), &object, false)
                    .await
                {
                    Ok(created) => {
                        let rv = resource_version(&created).unwrap_or(i64::MAX);
                        acked.push((name, rv));
                    }
                    Err(_) if killed.load(Ordering::SeqCst) => break,
                    Err(e) => {
                        *errors.entry(describe(&e)).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                if Instant::now() > give_up {
                    break;
                }
            }
            (acked, errors)
        }));
    }
    tokio::time::sleep(kill_after).await;
    killed.store(true, Ordering::SeqCst);
    server.kill()?;
    let mut acked: Vec<(String, i64)> = Vec::new();
    let mut errors_before_kill = BTreeMap::new();
    for w in writers {
        let (a, e) = w.await.context("a writer task failed")?;
        acked.extend(a);
        for (m, n) in e {
            *errors_before_kill.entry(m).or_insert(0) += n;
        }
    }

    let mut restarted = ServerProcess::start(dir.path()).await?;
    let found: HashMap<String, i64> = restarted
        .client()?
        .list_all(
            workload_kind(),
            Some("default"),
            &ListOptions {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot list after the restart: {}", describe(&e)))?
        .iter()
        .filter_map(|o| {
            let name = o.pointer("/metadata/name")?.as_str()?.to_owned();
            Some((name, resource_version(o)?))
        })
        .collect();
    restarted.kill()?;

    let mut lost = 0;
    let mut regressed = 0;
    for (name, rv) in &acked {
        match found.get(name) {
            None => lost += 1,
            Some(found_rv) if found_rv < rv => regressed += 1,
            Some(_) => {}
        }
    }
    let acked_names: std::collections::HashSet<&str> =
        acked.iter().map(|(n, _)| n.as_str()).collect();
    let unacked_present = found
        .keys()
        .filter(|n| !acked_names.contains(n.as_str()))
        .count();
    let audit = verify_audit(dir.path())?;
    Ok(CrashRun {
        kill_after,
        acked: acked.len(),
        lost,
        regressed,
        unacked_present,
        errors_before_kill,
        audit,
    })
}

/// `meridian audit verify --data-dir D` (offline; the server must be stopped).
fn verify_audit(data_dir: &Path) -> Result<std::result::Result<String, String>> {
    let exe: PathBuf = std::env::current_exe().context("cannot find the meridian binary")?;
    let out = Command::new(exe)
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .env("MERIDIAN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("cannot run `meridian audit verify`")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    Ok(if out.status.success() {
        // "audit log intact: N entries, head H" → "ok, N entries"
        let stdout = text(&out.stdout);
        let entries = stdout
            .strip_prefix("audit log intact: ")
            .and_then(|r| r.split(',').next())
            .unwrap_or(&stdout);
        Ok(format!("ok, {entries}"))
    } else {
        Err(format!("{}: {}", out.status, text(&out.stderr)))
    })
}

// ---- placement ----

/// Largest fleet and mix the command accepts (memory, not time, is the limit).
const MAX_NODES: usize = 1_000_000;
const MAX_INSTANCES: usize = 10_000_000;

/// `--nodes`: one count or a comma-separated list.
fn parse_node_counts(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let n: usize = part.replace('_', "").parse().map_err(|_| {
            crate::exit::UserError::fail(format!(
                "--nodes: {part:?} is not a node count (write e.g. --nodes 10000 or --nodes 1000,10000,100000)"
            ))
        })?;
        if n == 0 || n > MAX_NODES {
            bail!(crate::exit::UserError::msg(format!(
                "--nodes: {n} is outside 1..={MAX_NODES}"
            )));
        }
        out.push(n);
    }
    Ok(out)
}

fn placement_json(r: &sim::PlacementReport) -> Value {
    json!({
        "nodes": r.nodes,
        "sites": r.sites,
        "classes": r.classes,
        "workloads": r.workloads,
        "instances": r.instances,
        "placed": r.placed,
        "unplaceable": r.unplaceable,
        "preemptions": r.preemptions,
        "gangs": r.gangs,
        "seed": r.seed,
        "generate_ms": r.generate_ms,
        "build_fleet_ms": r.build_fleet_ms,
        "build_batch_ms": r.build_batch_ms,
        "total_ms": r.total_ms,
        "placements_per_sec": r.placements_per_sec,
        "p50_us": r.p50_us,
        "p90_us": r.p90_us,
        "p99_us": r.p99_us,
        "max_us": r.max_us,
        "max_unit_us": r.max_unit_us,
    })
}

/// 12345 → "12,345".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.1} µs")
    }
}

fn print_placement(r: &sim::PlacementReport) {
    let title = format!(
        "placement: {} nodes ({} sites, {} classes), {} instances ({} workloads), seed {}, one thread",
        thousands(r.nodes as u64),
        r.sites,
        thousands(r.classes as u64),
        thousands(r.instances as u64),
        thousands(r.workloads as u64),
        r.seed
    );
    let rows = [
        ("placed", thousands(r.placed as u64)),
        ("unplaceable", thousands(r.unplaceable as u64)),
        ("preemptions", thousands(r.preemptions as u64)),
        ("gangs", thousands(r.gangs as u64)),
        ("generate objects", format!("{:.1} ms", r.generate_ms)),
        ("build snapshot", format!("{:.1} ms", r.build_fleet_ms)),
        ("build batch", format!("{:.1} ms", r.build_batch_ms)),
        ("decisions", format!("{:.1} ms", r.total_ms)),
        (
            "decisions/s",
            thousands(r.placements_per_sec.round() as u64),
        ),
        ("p50", us(r.p50_us)),
        ("p90", us(r.p90_us)),
        ("p99", us(r.p99_us)),
        ("max", us(r.max_us)),
        ("max unit (gang whole)", us(r.max_unit_us)),
    ];
    print_table(&title, &rows);
}

/// The growth table: one row per size.
fn print_growth(reports: &[sim::PlacementReport]) {
    let header = [
        "NODES",
        "SITES",
        "CLASSES",
        "INSTANCES",
        "PLACED",
        "UNPLACEABLE",
        "SNAPSHOT",
        "DECISIONS",
        "DECISIONS/S",
        "P50",
        "P99",
        "MAX",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                thousands(r.nodes as u64),
                r.sites.to_string(),
                thousands(r.classes as u64),
                thousands(r.instances as u64),
                thousands(r.placed as u64),
                thousands(r.unplaceable as u64),
                format!("{:.0} ms", r.build_fleet_ms),
                format!("{:.0} ms", r.total_ms),
                thousands(r.placements_per_sec.round() as u64),
                us(r.p50_us),
                us(r.p99_us),
                us(r.max_us),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("   ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn placement(args: &PlacementArgs) -> Result<()> {
    let sizes = parse_node_counts(&args.nodes)?;
    if args.instances > MAX_INSTANCES {
        bail!(crate::exit::UserError::msg(format!(
            "--instances: {} is more than {MAX_INSTANCES}",
            args.instances
        )));
    }
    let mut reports = Vec::new();
    for &nodes in &sizes {
        if sizes.len() > 1 {
            eprintln!("placing {} instances on {} nodes...", args.instances, nodes);
        }
        let r = sim::bench::placement(nodes, args.instances, args.seed)
            .context("generated objects were refused (a generator bug)")?;
        reports.push(r);
    }
    if args.json {
        let value = match reports.as_slice() {
            [one] => placement_json(one),
            many => Value::Array(many.iter().map(placement_json).collect()),
        };
        println!("{value}");
    } else if let [one] = reports.as_slice() {
        print_placement(one);
    } else {
        print_growth(&reports);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[7u32], 0.5), Some(7));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn the_light_reader_finds_the_sequence_annotation() {
        let o = workload("b-abc-1", "bench", "abc", 42, 300);
        let line = serde_json::to_vec(&json!({"type": "ADDED", "object": o})).unwrap();
        let at = find(&line, SEQ_KEY).expect("key present");
        assert!(line[at + SEQ_KEY.len()..].starts_with(b"42\""));
    }

    #[test]
    fn bench_objects_have_the_requested_size_and_validate() {
        let o = workload("b-abc-1", "bench", "abc", 1, 1024);
        assert_eq!(serde_json::to_vec(&o).unwrap().len(), 1024);
        let small = workload("b-abc-2", "bench", "abc", 2, 10);
        assert!(serde_json::to_vec(&small).unwrap().len() > 10);
        api::validate::object_from_value_as(workload_kind(), o).expect("valid workload");
    }
}
