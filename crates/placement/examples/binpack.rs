//! Bin-packing instances through the scheduler core, for measuring placement quality
//! (`scripts/bench-quality` compares the result with CP-SAT's optimum).
//!
//! ```sh
//! cargo run --release -p placement --example binpack -- --input instances.json
//! cargo run --release -p placement --example binpack < instances.json
//! ```
//!
//! Input (one JSON document, from `--input FILE` or stdin):
//!
//! ```json
//! {"instances": [
//!   {"name": "i1",
//!    "node": {"cpu_milli": 8000, "memory_mib": 32768},
//!    "nodes": 12,
//!    "type": "job",
//!    "items": [{"cpu_milli": 250, "memory_mib": 512, "count": 10},
//!              {"cpu_milli": 2000, "memory_mib": 8192, "count": 3}]}
//! ]}
//! ```
//!
//! - `node`: the shape of every node; `nodes`: how many (all identical, Linux amd64,
//!   driver `exec`, in one site `s1`, named `n0000`, `n0001`, … so that name order is
//!   index order).
//! - `items`: one Workload per entry (`g000`, `g001`, … in project `bench`) with
//!   `replicas = count` (default 1), requesting `cpu_milli` millicores and `memory_mib`
//!   MiB; default placement (strategy binpack), no other constraint.
//! - `type` (optional): the workload type, `job` (default: pure bin-packing) or
//!   `service`. Services also pay a colocation penalty per replica of the same service
//!   already on a node (`Weights::colocation`), which spreads small replicas over more
//!   nodes on purpose, so their node count depends on the fleet's size.
//!
//! Each instance is placed on a fresh fleet with one [`placement::place_batch`] call
//! (the workloads in item order, each with all its replicas) and default
//! [`placement::Options`].
//!
//! Output: one JSON object per instance and per line, in input order:
//! `{"name", "nodes", "items", "placed", "unplaceable", "nodes_used", "elapsed_us"}`,
//! where `items` is the number of replicas, `nodes_used` the number of distinct nodes
//! holding at least one, and `elapsed_us` the wall time of building the fleet and batch
//! and placing (microseconds). With `--assignment`, also `"assignment"`: for every
//! replica, in item order, the index of its node or `null` when unplaceable.
//!
//! Everything but `elapsed_us` is deterministic: the same input gives the same output.
//!
//! Exit codes: 0 success, 2 unreadable or invalid input.

// A benchmark driver, not the library: it reads files and the clock, which the crate's
// clippy.toml forbids in `placement` itself.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Instant;

use api::{Node, Site, Workload};
use placement::{Batch, Fleet, Options, place_batch};
use serde::Deserialize;
use serde_json::{Value, json};

const USAGE: &str =
    "usage: binpack [--input FILE] [--assignment]   (JSON on stdin without --input)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    instances: Vec<Instance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Instance {
    name: String,
    node: Shape,
    nodes: u32,
    #[serde(default = "job", rename = "type")]
    type_: String,
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shape {
    cpu_milli: u64,
    memory_mib: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    cpu_milli: u64,
    memory_mib: u64,
    #[serde(default = "one")]
    count: u32,
}

fn job() -> String {
    "job".to_string()
}

fn one() -> u32 {
    1
}

struct Args {
    input: Option<String>,
    assignment: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        input: None,
        assignment: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" => args.input = Some(it.next().ok_or("--input needs a file name")?),
            "--assignment" => args.assignment = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Places one instance on a fresh fleet and returns its result line.
fn run(inst: &Instance, assignment: bool) -> Result<Value, String> {
    let what = |e: String| format!("instance {}: {e}", inst.name);
    if !matches!(inst.type_.as_str(), "service" | "job") {
        return Err(what(format!(
            "type {:?} is not \"job\" or \"service\"",
            inst.type_
        )));
    }
    let start = Instant::now();
    let site: Site = from_json(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Site",
        "metadata": {"name": "s1"},
        "spec": {"provider": "onprem", "region": "s1", "jurisdiction": "DE"}
    }))
    .map_err(what)?;
    let nodes = (0..inst.nodes)
        .map(|i| {
            from_json::<Node>(json!({
                "apiVersion": "meridian.dev/v1", "kind": "Node",
                "metadata": {"name": format!("n{i:04}")},
                "spec": {
                    "site": "s1",
                    "os": {"family": "linux"}, "arch": "amd64",
                    "capacity": {"cpu": format!("{}m", inst.node.cpu_milli),
                                 "memory": format!("{}Mi", inst.node.memory_mib)},
                    "drivers": ["exec"]
                },
                "status": {"phase": "Ready"}
            }))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(what)?;
    let mut fleet = Fleet::new(&[site], &nodes).map_err(|e| what(e.to_string()))?;
    let mut batch = Batch::new();
    for (g, item) in inst.items.iter().enumerate() {
        let w: Workload = from_json(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": format!("g{g:03}"), "namespace": "bench"},
            "spec": {
                "type": inst.type_, "replicas": item.count,
                "task": {"driver": "exec", "command": ["/bin/true"],
                         "resources": {"cpu": format!("{}m", item.cpu_milli),
                                       "memory": format!("{}Mi", item.memory_mib)}}
            }
        }))
        .map_err(what)?;
        batch.add_all(&w).map_err(|e| what(e.to_string()))?;
    }
    let decisions = place_batch(&mut fleet, &batch, &Options::default());
    let elapsed = start.elapsed();

    let node_index = |name: &str| name[1..].parse::<u32>().expect("nodes are named n%04d");
    let chosen: Vec<Option<u32>> = decisions.iter().map(|d| d.node().map(node_index)).collect();
    let used: BTreeSet<u32> = chosen.iter().flatten().copied().collect();
    let placed = chosen.iter().filter(|c| c.is_some()).count();
    let mut line = json!({
        "name": inst.name,
        "nodes": inst.nodes,
        "items": decisions.len(),
        "placed": placed,
        "unplaceable": decisions.len() - placed,
        "nodes_used": used.len(),
        "elapsed_us": elapsed.as_micros() as u64,
    });
    if assignment {
        line["assignment"] = json!(chosen);
    }
    Ok(line)
}

fn main() {
    let result = parse_args().and_then(|args| {
        let text = match &args.input {
            Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
            None => {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| format!("stdin: {e}"))?;
                s
            }
        };
        let input: Input = serde_json::from_str(&text).map_err(|e| format!("input: {e}"))?;
        for inst in &input.instances {
            println!("{}", run(inst, args.assignment)?);
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("binpack: {e}");
        std::process::exit(2);
    }
}
