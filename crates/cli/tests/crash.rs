//! The kill -9 durability experiment against the real binary: concurrent writers create
//! objects, the server is killed with SIGKILL at a random moment, restarted on the same data
//! directory, and every acknowledged create must be there (with at least the acknowledged
//! resourceVersion); the audit chain must verify offline afterwards.
//!
//! `meridian bench crash --runs 20` runs the same experiment at length (BENCHMARKS.md).
//!
//! The same for the scheduler: killed in the middle of committing a batch of placements,
//! restarted, it must end with every instance placed exactly once and no node over-committed.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use testkit::{ServerProcess, kind, wait_until_async};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");
const RUNS: usize = 3;
const WRITERS: usize = 8;

fn workloads() -> &'static api::KindInfo {
    api::kinds::WORKLOAD
}

fn workload(name: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"pad": "x".repeat(600)},
        },
        "spec": {
            "type": "service",
            "task": {"driver": "exec", "command": ["/bin/true"],
                     "resources": {"cpu": "100m", "memory": "64Mi"}},
        },
    })
}

fn resource_version(object: &Value) -> i64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .expect("objects carry a numeric resourceVersion")
}

/// One run; returns the number of acknowledged writes (all verified present).
async fn one_run(run: usize, kill_after: Duration) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = ServerProcess::start_in(BIN, dir.path(), &[]);
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = server.client();
        let killed = Arc::clone(&killed);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let give_up = Instant::now() + Duration::from_secs(30);
            for seq in 0u64.. {
                let name = format!("w{w}-{seq}");
                match client
                    .create(workloads(), Some("default"), &workload(&name), false)
                    .await
                {
                    Ok(created) => acked.push((name, resource_version(&created))),
                    Err(_) if killed.load(Ordering::SeqCst) => break,
                    Err(e) => panic!("create {name} failed before the kill: {e:?}"),
                }
                assert!(Instant::now() < give_up, "writer {w} never stopped");
            }
            acked
        }));
    }
    // The sleep is the experiment's random kill moment, not a wait for a condition.
    tokio::time::sleep(kill_after).await;
    killed.store(true, Ordering::SeqCst);
    server.kill9();
    let mut acked: Vec<(String, i64)> = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(!acked.is_empty(), "run {run}: no write was acknowledged");

    let mut restarted = ServerProcess::start_in(BIN, dir.path(), &[]);
    let found: HashMap<String, i64> = restarted
        .client()
        .list_all(
            workloads(),
            Some("default"),
            &client::ListOptions {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .expect("list after restart")
        .iter()
        .map(|o| {
            let name = o.pointer("/metadata/name").and_then(Value::as_str);
            (name.expect("name").to_owned(), resource_version(o))
        })
        .collect();
    restarted.kill9();

    let lost: Vec<&str> = acked
        .iter()
        .filter(|(name, rv)| found.get(name).is_none_or(|f| f < rv))
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "run {run} (kill after {kill_after:?}): {} of {} acknowledged writes lost or older: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );

    let verify = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .env("MERIDIAN_LOG", "warn")
        .output()
        .expect("run audit verify");
    assert!(
        verify.status.success(),
        "run {run}: audit chain does not verify after the crash: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    acked.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let mut total = 0;
    for run in 1..=RUNS {
        let kill_after = Duration::from_millis(rand::thread_rng().gen_range(200..=900));
        total += one_run(run, kill_after).await;
    }
    eprintln!("{RUNS} kill -9 runs: {total} acknowledged writes, 0 lost");
}

const NODES: usize = 120;
const SCHED_WORKLOADS: usize = 120;
const REPLICAS: usize = 5;

fn node(i: usize) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Node",
        "metadata": {"name": format!("node-{i:03}")},
        "spec": {"site": "dc1", "os": {"family": "linux"}, "arch": "amd64",
                 "capacity": {"cpu": "4", "memory": "8Gi"}, "drivers": ["exec"]},
    })
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": format!("svc-{i:03}"), "namespace": "default"},
        "spec": {
            "type": "service", "replicas": REPLICAS,
            "task": {"driver": "exec", "command": ["/bin/true"],
                     "resources": {"cpu": "500m", "memory": "512Mi"}, "os": {"family": "linux"}},
        },
    })
}

async fn allocations(c: &client::Client) -> Vec<Value> {
    c.list_all(kind("Allocation"), None, &client::ListOptions::default())
        .await
        .expect("list allocations")
}

/// How many scheduler passes have ended (from `/metrics`).
async fn scheduler_passes(c: &client::Client) -> u64 {
    let metrics = c.get_text("/metrics").await.expect("metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("meridian_scheduler_pass_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no scheduler pass count in:\n{metrics}"))
}

/// Every instance has exactly one allocation and no node holds more cpu than it has.
fn check_placements(allocs: &[Value], run: usize) {
    let mut per_instance: HashMap<(String, u64), usize> = HashMap::new();
    let mut cpu: HashMap<String, u64> = HashMap::new();
    for a in allocs {
        let w = a["spec"]["workload"].as_str().expect("workload").to_owned();
        let r = a["spec"]["replica"].as_u64().expect("replica");
        *per_instance.entry((w, r)).or_default() += 1;
        let millis = a["spec"]["resources"]["cpu"]
            .as_str()
            .expect("cpu")
            .parse::<api::Cpu>()
            .expect("a cpu quantity")
            .millis();
        *cpu.entry(a["spec"]["node"].as_str().expect("node").to_owned())
            .or_default() += millis;
    }
    let duplicated: Vec<_> = per_instance.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "run {run}: duplicated instances {duplicated:?}"
    );
    assert_eq!(
        per_instance.len(),
        SCHED_WORKLOADS * REPLICAS,
        "run {run}: every instance is placed"
    );
    for (node, used) in cpu {
        assert!(
            used <= 4_000,
            "run {run}: node {node} over-committed: {used}m of 4000m"
        );
    }
}

/// One run: pending work created without a scheduler, then a server with the scheduler is
/// killed with SIGKILL `kill_after` after its first allocation is visible; returns the
/// allocations that survived the kill.
async fn scheduler_run(run: usize, kill_after: Duration) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = ServerProcess::start_in(BIN, dir.path(), &["--no-scheduler"]);
    let c = setup.client();
    let site = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Site",
        "metadata": {"name": "dc1"},
        "spec": {"provider": "onprem", "region": "dc1", "jurisdiction": "DE",
                 "operator": {"name": "Example", "jurisdiction": "DE"}},
    });
    c.create(kind("Site"), None, &site, false)
        .await
        .expect("site");
    for i in 0..NODES {
        let n = c
            .create(kind("Node"), None, &node(i), false)
            .await
            .expect("node");
        testkit::mark_ready(&c, n["metadata"]["name"].as_str().expect("name")).await;
    }
    for i in 0..SCHED_WORKLOADS {
        c.create(kind("Workload"), Some("default"), &service(i), false)
            .await
            .expect("workload");
    }
    drop(setup);

    // The scheduler starts placing at once; kill it in the middle of its commits.
    let mut scheduling = ServerProcess::start_in(BIN, dir.path(), &[]);
    let c = scheduling.client();
    let first = client::ListOptions {
        limit: Some(1),
        ..Default::default()
    };
    // A tight loop on purpose, not `wait_until`: the kill must land inside the batch, and
    // polling at intervals could notice the first allocation only after the last.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = c
            .list(kind("Allocation"), None, &first)
            .await
            .expect("list allocations");
        if page["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {run}: nothing was ever placed"
        );
    }
    // The sleep is the experiment's random kill moment, not a wait for a condition.
    tokio::time::sleep(kill_after).await;
    scheduling.kill9();

    let inspect = ServerProcess::start_in(BIN, dir.path(), &["--no-scheduler"]);
    let survived = allocations(&inspect.client()).await.len();
    drop(inspect);

    let finishing = ServerProcess::start_in(BIN, dir.path(), &[]);
    let c = finishing.client();
    wait_until_async(
        Duration::from_secs(60),
        &format!("run {run}: every instance placed after the restart"),
        || async {
            let placed = allocations(&c).await.len();
            if placed >= SCHED_WORKLOADS * REPLICAS {
                Ok(())
            } else {
                Err(format!("{placed} allocations"))
            }
        },
    )
    .await;
    // One more pass must end after that: nothing may change any more.
    let passes = scheduler_passes(&c).await;
    wait_until_async(
        Duration::from_secs(30),
        &format!("run {run}: a scheduler pass after every instance was placed"),
        || async { scheduler_passes(&c).await > passes },
    )
    .await;
    check_placements(&allocations(&c).await, run);
    survived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_killed_mid_batch_loses_and_duplicates_nothing() {
    let mut survived = Vec::new();
    for (run, ms) in [(1, 0), (2, 5), (3, 20)] {
        survived.push(scheduler_run(run, Duration::from_millis(ms)).await);
    }
    eprintln!(
        "allocations committed before kill -9 (of {}): {survived:?}; all runs ended with every instance placed once",
        SCHED_WORKLOADS * REPLICAS
    );
    assert!(
        survived.iter().any(|n| *n < SCHED_WORKLOADS * REPLICAS),
        "no run was killed in the middle of a batch: {survived:?}"
    );
}
