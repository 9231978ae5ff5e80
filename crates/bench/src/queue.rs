//! `meridian bench queue`: a GPU cluster trace replayed through placement on a simulated
//! clock, per scoring policy (the replay is `sim::replay`; this is its command line, the
//! file reading and the tables).
//!
//! The trace is the Alibaba GPU trace of Weng et al., "Beware of Fragmentation:
//! Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC 2023
//! (<https://www.usenix.org/conference/atc23/presentation/weng>).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sim::replay::{Delay, Failure, Point, Policy, PolicyReport, ReplayOptions, TraceSummary};

use crate::report::{print_columns, thousands};
use crate::{QueueArgs, UsageError};

/// `--policy`: names from [`Policy::name`], comma-separated, each once.
fn parse_policies(s: &str) -> Result<Vec<Policy>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let Some(p) = Policy::parse(part) else {
            bail!(UsageError(format!(
                "--policy: {part:?} is not a policy (use fgd, bestfit, randomfit, comma-separated)"
            )));
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `meridian bench queue`.
pub fn queue(args: &QueueArgs) -> Result<()> {
    let policies = parse_policies(&args.policy)?;
    let nodes_name = args.nodes.display().to_string();
    let trace_name = args.trace.display().to_string();
    let nodes = sim::trace::parse_nodes(&nodes_name, &read(&args.nodes)?)
        .map_err(|e| UsageError(e.to_string()))?;
    let tasks = sim::trace::parse_tasks(&trace_name, &read(&args.trace)?)
        .map_err(|e| UsageError(e.to_string()))?;
    let opts = ReplayOptions {
        policies,
        seed: args.seed,
        inflation: !args.no_inflation,
    };
    let started = Instant::now();
    let (summary, reports) =
        sim::replay::replay(&nodes, &tasks, &opts).context("replaying the trace")?;
    let elapsed = started.elapsed();
    if args.json {
        println!(
            "{}",
            report_json(&summary, &reports, args.seed, elapsed.as_secs_f64())
        );
    } else {
        print_report(&summary, &reports, &trace_name, args.seed);
        println!("replayed in {:.1} s (all policies)", elapsed.as_secs_f64());
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn failure_text(f: Option<&Failure>) -> (String, String, String) {
    match f {
        None => ("never".into(), "-".into(), "-".into()),
        Some(f) => (
            pct(f.arrived),
            pct(f.allocation),
            format!("{:.1}", f.unallocated_gpus),
        ),
    }
}

/// The allocation ratio at 25%, 50%, ... of the arrived demand (the full series is in
/// the JSON).
fn series_text(points: &[Point]) -> String {
    points
        .iter()
        .filter(|p| ((p.arrived * 20.0).round() as u32).is_multiple_of(2))
        .map(|p| format!("{:.0}", p.allocation * 100.0))
        .collect::<Vec<_>>()
        .join(" ")
}

fn delay_text(d: &Delay) -> String {
    format!(
        "{:.0} s / {} s ({})",
        d.mean_s,
        d.p95_s,
        thousands(d.tasks as u64)
    )
}

fn print_report(summary: &TraceSummary, reports: &[PolicyReport], trace: &str, seed: u64) {
    println!(
        "trace {trace}: {} tasks ({} need GPUs, {} a share of one), {} nodes ({} with GPUs, {} GPUs); demand {:.0} GPUs; seed {seed}",
        thousands(summary.tasks as u64),
        thousands(summary.gpu_tasks as u64),
        thousands(summary.shared_gpu_tasks as u64),
        thousands(summary.nodes as u64),
        thousands(summary.gpu_nodes as u64),
        thousands(summary.gpus),
        summary.gpu_demand,
    );
    println!();
    println!("replay (arrivals and departures as traced; waiting tasks retried as others leave):");
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let x = &r.replay;
            let (arrived, alloc, unalloc) = failure_text(x.first_failure.as_ref());
            vec![
                r.policy.name().to_string(),
                arrived,
                alloc,
                unalloc,
                pct(x.peak_allocation),
                thousands(x.placed_on_arrival as u64),
                thousands(x.never_started as u64),
                delay_text(&x.delay),
                x.preemptions.to_string(),
                x.partial_gangs.to_string(),
            ]
        })
        .collect();
    print_columns(
        "  ",
        &[
            "POLICY",
            "1ST FAIL AT",
            "ALLOC THEN",
            "UNALLOC GPUS",
            "PEAK ALLOC",
            "ON ARRIVAL",
            "NEVER RAN",
            "DELAY MEAN/P95 (TASKS)",
            "PREEMPTED",
            "PARTIAL GANGS",
        ],
        &rows,
    );
    println!("  allocation % at every 10% of the trace's GPU demand arrived:");
    for r in reports {
        println!(
            "    {:<9}  {}",
            r.policy.name(),
            series_text(&r.replay.series)
        );
    }
    println!("  queueing delay by QoS class, mean / p95 (tasks):");
    for r in reports {
        let parts: Vec<String> = r
            .replay
            .delay_by_qos
            .iter()
            .map(|(q, d)| format!("{q} {}", delay_text(d)))
            .collect();
        println!("    {:<9}  {}", r.policy.name(), parts.join("; "));
    }
    if reports.iter().any(|r| r.inflation.is_some()) {
        println!();
        println!(
            "inflation (tasks drawn from the trace, no departures, until their demand reaches the cluster's GPUs):"
        );
        let rows: Vec<Vec<String>> = reports
            .iter()
            .filter_map(|r| Some((r.policy, r.inflation.as_ref()?)))
            .map(|(p, x)| {
                let (arrived, alloc, unalloc) = failure_text(x.first_failure.as_ref());
                vec![
                    p.name().to_string(),
                    arrived,
                    alloc,
                    unalloc,
                    pct(x.final_allocation),
                    format!("{:.1}", x.final_unallocated_gpus),
                    format!(
                        "{}/{}",
                        thousands(x.failed as u64),
                        thousands(x.submitted as u64)
                    ),
                ]
            })
            .collect();
        print_columns(
            "  ",
            &[
                "POLICY",
                "1ST FAIL AT",
                "ALLOC THEN",
                "UNALLOC GPUS",
                "ALLOC AT 100%",
                "UNALLOC AT 100%",
                "FAILED/SUBMITTED",
            ],
            &rows,
        );
        println!("  allocation % at every 10% of the cluster's GPUs arrived:");
        for r in reports {
            if let Some(x) = &r.inflation {
                println!("    {:<9}  {}", r.policy.name(), series_text(&x.series));
            }
        }
        println!(
            "  fairness at the first failure: held share of the allocated GPUs vs entitled (one queue per QoS class, admitted by Meridian's queues; max deviation):"
        );
        for r in reports {
            if let Some(x) = &r.inflation {
                let parts: Vec<String> = x
                    .fairness
                    .iter()
                    .map(|(q, s)| format!("{q} {} vs {}", pct(s.held), pct(s.entitled)))
                    .collect();
                println!(
                    "    {:<9}  {}; max deviation {}",
                    r.policy.name(),
                    parts.join(", "),
                    pct(x.max_deviation())
                );
            }
        }
    }
}

fn points_json(points: &[Point]) -> Value {
    Value::Array(
        points
            .iter()
            .map(|p| json!({"arrived": p.arrived, "allocation": p.allocation}))
            .collect(),
    )
}

fn failure_json(f: Option<&Failure>) -> Value {
    f.map_or(Value::Null, |f| {
        json!({"task": f.task, "at": f.at, "arrived": f.arrived, "allocation": f.allocation,
               "unallocated_gpus": f.unallocated_gpus})
    })
}

fn delay_json(d: &Delay) -> Value {
    json!({"tasks": d.tasks, "mean_s": d.mean_s, "p95_s": d.p95_s})
}

fn report_json(summary: &TraceSummary, reports: &[PolicyReport], seed: u64, secs: f64) -> Value {
    json!({
        "seed": seed,
        "elapsed_s": secs,
        "trace": {
            "nodes": summary.nodes, "gpu_nodes": summary.gpu_nodes, "gpus": summary.gpus,
            "tasks": summary.tasks, "gpu_tasks": summary.gpu_tasks,
            "shared_gpu_tasks": summary.shared_gpu_tasks, "gpu_demand": summary.gpu_demand,
        },
        "policies": reports.iter().map(|r| {
            let x = &r.replay;
            json!({
                "policy": r.policy.name(),
                "replay": {
                    "tasks": x.tasks,
                    "placed_on_arrival": x.placed_on_arrival,
                    "started": x.started,
                    "never_started": x.never_started,
                    "attempts": x.attempts,
                    "series": points_json(&x.series),
                    "first_failure": failure_json(x.first_failure.as_ref()),
                    "peak_allocation": x.peak_allocation,
                    "delay": delay_json(&x.delay),
                    "delay_by_qos": x.delay_by_qos.iter()
                        .map(|(q, d)| (q.clone(), delay_json(d)))
                        .collect::<serde_json::Map<String, Value>>(),
                    "preemptions": x.preemptions,
                    "partial_gangs": x.partial_gangs,
                },
                "inflation": r.inflation.as_ref().map_or(Value::Null, |x| json!({
                    "submitted": x.submitted,
                    "failed": x.failed,
                    "series": points_json(&x.series),
                    "first_failure": failure_json(x.first_failure.as_ref()),
                    "final_allocation": x.final_allocation,
                    "final_unallocated_gpus": x.final_unallocated_gpus,
                    "fairness": x.fairness.iter().map(|(q, s)| {
                        (q.clone(), json!({"entitled": s.entitled, "held": s.held}))
                    }).collect::<serde_json::Map<String, Value>>(),
                    "max_deviation": x.max_deviation(),
                })),
            })
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_named() {
        assert_eq!(
            parse_policies("fgd,bestfit, randomfit,fgd").unwrap(),
            [Policy::Fragmentation, Policy::BestFit, Policy::RandomFit]
        );
        let e = parse_policies("fgd,worstfit").unwrap_err();
        assert!(e.is::<UsageError>(), "{e:#}");
    }
}
