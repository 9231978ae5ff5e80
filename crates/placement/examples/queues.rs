//! Queue admission at scale: how many queued jobs one placement batch decides per
//! second with many queues, cohorts and a deep backlog (issue 16's measure: 1,000
//! queues and 100,000 pending jobs).
//!
//! ```sh
//! cargo run --release -p placement --example queues -- [--queues 1000] [--jobs 100000] [--nodes 2000] [--seed 1] [--flavors 0] [--tree 0]
//! ```
//!
//! With `--tree 1` the cohorts form one tree, as `Cohort` objects: every ten cohorts
//! under a department, every department under one company cohort, so every queue may
//! borrow from any other through the tree (and fair sharing runs down it).
//!
//! With `--flavors N` (N > 0) the nodes are spread over N sites and each queue's quota
//! is split into N flavours, one per site (`sites: [sK]`), each with 1/N of the queue's
//! share, instead of one flat quota: admission then tries each job's flavours in order.
//!
//! The estate: `--nodes` identical Linux nodes (64 cores, 256Gi, 8 H100s) in one site;
//! `--queues` queues in cohorts of 10, each with a nominal quota of an equal share of
//! the estate's cpu, memory and GPUs (so the estate is exactly subscribed), a third of
//! them StrictFIFO, weights 1–3. The backlog: `--jobs` jobs spread over the queues,
//! priorities 0–9, 1–8 cores, 2–16Gi, a quarter of them asking 1–8 GPUs and a tenth of
//! them gangs of 2–4. All pending at once in one batch, as a scheduler pass would see
//! them after a burst.
//!
//! Prints one JSON line: the sizes, jobs admitted and waiting, instances decided per
//! second (wall time of building the batch and `place_batch`), and the number of gangs
//! left partly placed (always 0, or the run fails).

// A benchmark driver, not the library: it reads the clock and the arguments, which the
// crate's clippy.toml forbids in `placement` itself.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use placement::{Batch, Fleet, Options, Queues, place_batch};
use serde_json::json;

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a whole number"))
        })
        .unwrap_or(default)
}

fn main() {
    let queues = arg("--queues", 1_000);
    let jobs = arg("--jobs", 100_000);
    let nodes = arg("--nodes", 2_000);
    let mut rng = Rng(arg("--seed", 1).max(1));
    let flavors = arg("--flavors", 0);
    let tree = arg("--tree", 0) > 0;
    let site_count = flavors.max(1);

    let sites: Vec<api::Site> = (1..=site_count)
        .map(|k| {
            serde_json::from_value(json!({
                "apiVersion": "meridian.dev/v1", "kind": "Site",
                "metadata": {"name": format!("s{k}")},
                "spec": {"provider": "onprem", "region": "eu-central", "jurisdiction": "DE"}
            }))
            .expect("site")
        })
        .collect();
    let node_list: Vec<api::Node> = (0..nodes)
        .map(|i| {
            serde_json::from_value(json!({
                "apiVersion": "meridian.dev/v1", "kind": "Node",
                "metadata": {"name": format!("n{i:05}")},
                "spec": {"site": format!("s{}", i % site_count + 1),
                         "os": {"family": "linux"}, "arch": "amd64",
                         "drivers": ["exec"],
                         "capacity": {"cpu": 64, "memory": "256Gi",
                                      "gpus": [{"model": "H100", "count": 8}]}},
                "status": {"phase": "Ready"}
            }))
            .expect("node")
        })
        .collect();
    let share = |total: u64| (total / queues.max(1)).max(1);
    let part = |total: u64| (share(total) / site_count).max(1);
    let queue_list: Vec<api::queue::Queue> = (0..queues)
        .map(|i| {
            let mut spec = json!({
                "cohort": format!("c{:03}", i / 10),
                "weight": 1 + i % 3,
                "strategy": if i % 3 == 0 { "StrictFIFO" } else { "BestEffortFIFO" },
            });
            if flavors == 0 {
                spec["quota"] = json!({
                    "cpu": {"nominal": share(nodes * 64).to_string()},
                    "memory": {"nominal": format!("{}Gi", share(nodes * 256))},
                    "gpus": {"nominal": share(nodes * 8)}
                });
            } else {
                spec["flavors"] = (1..=site_count)
                    .map(|k| {
                        json!({"name": format!("f{k}"), "sites": [format!("s{k}")],
                        "quota": {
                            "cpu": {"nominal": part(nodes * 64).to_string()},
                            "memory": {"nominal": format!("{}Gi", part(nodes * 256))},
                            "gpus": {"nominal": part(nodes * 8)}
                        }})
                    })
                    .collect();
            }
            serde_json::from_value(json!({
                "apiVersion": "meridian.dev/v1", "kind": "Queue",
                "metadata": {"name": format!("q{i:04}")},
                "spec": spec
            }))
            .expect("queue")
        })
        .collect();

    let started = Instant::now();
    let cohort = |name: String, parent: Option<String>| -> api::queue::Cohort {
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Cohort",
            "metadata": {"name": name},
            "spec": {"parent": parent}
        }))
        .expect("cohort")
    };
    let cohort_list: Vec<api::queue::Cohort> = if tree {
        let teams = queues.div_ceil(10);
        (0..teams)
            .map(|c| cohort(format!("c{c:03}"), Some(format!("d{:02}", c / 10))))
            .chain(
                (0..teams.div_ceil(10)).map(|d| cohort(format!("d{d:02}"), Some("company".into()))),
            )
            .collect()
    } else {
        Vec::new()
    };
    let mut compiled = Queues::with_cohorts(&queue_list, &cohort_list);
    let mut workloads = Vec::with_capacity(jobs as usize);
    for j in 0..jobs {
        let queue = format!("q{:04}", rng.below(queues));
        let replicas = if rng.below(10) == 0 {
            2 + rng.below(3)
        } else {
            1
        };
        let mut resources =
            json!({"cpu": 1 + rng.below(8), "memory": format!("{}Gi", 2 + rng.below(15))});
        if rng.below(4) == 0 {
            resources["gpu"] = json!({"count": 1 + rng.below(8)});
        }
        let name = format!("j{j:06}");
        compiled.assign("bench", &name, &queue);
        let w: api::Workload = serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "bench",
                         "creationTimestamp": format!("2026-12-06T{:02}:{:02}:{:02}Z", j / 3600 % 24, j / 60 % 60, j % 60)},
            "spec": {"type": "job", "replicas": replicas, "priority": rng.below(10),
                     "queue": queue,
                     "gang": if replicas > 1 { Some(replicas) } else { None },
                     "task": {"driver": "exec", "command": ["/bin/true"], "resources": resources,
                              "os": {"family": "linux"}}}
        }))
        .expect("workload");
        workloads.push(w);
    }
    let mut fleet = Fleet::new(&sites, &node_list).expect("fleet");
    let built = started.elapsed();
    let started = Instant::now();
    let mut batch = Batch::new();
    batch.set_queues(Arc::new(compiled));
    for w in &workloads {
        batch
            .add(w, 0..w.spec.replicas as u32)
            .expect("add to the batch");
    }
    let decisions = place_batch(&mut fleet, &batch, &Options::default());
    let elapsed = started.elapsed();

    let mut placed_of: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for d in &decisions {
        if d.is_placed() {
            *placed_of.entry(d.workload.name.as_str()).or_default() += 1;
        }
    }
    let admitted = placed_of.len();
    let partial_gangs = workloads
        .iter()
        .filter(|w| w.spec.gang.is_some())
        .filter(|w| {
            let n = placed_of
                .get(w.metadata.name.as_str())
                .copied()
                .unwrap_or(0);
            n > 0 && n < w.spec.replicas as u32
        })
        .count();
    assert_eq!(partial_gangs, 0, "a gang was left partly placed");
    let decided = decisions.len();
    println!(
        "{}",
        json!({
            "queues": queues,
            "flavors": flavors,
            "tree": tree,
            "cohorts": queues.div_ceil(10),
            "nodes": nodes,
            "jobs": jobs,
            "instances": decided,
            "admitted_jobs": admitted,
            "waiting_jobs": jobs as usize - admitted,
            "partial_gangs": partial_gangs,
            "generate_ms": built.as_millis(),
            "place_ms": elapsed.as_millis(),
            "decisions_per_s": (decided as f64 / elapsed.as_secs_f64()).round(),
        })
    );
}
