//! The trace replay without the CLI, for quick measurements while tuning:
//! `cargo run --release -p sim --example replay -- NODES.csv PODS.csv [fgd,bestfit,randomfit] [SEED]`
//! (`meridian bench queue` is the command; this prints its headline figures only).

use std::time::Instant;

use sim::replay::{Policy, ReplayOptions, replay};
use sim::trace::{parse_nodes, parse_tasks};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: replay NODES.csv PODS.csv [POLICIES] [SEED]");
        std::process::exit(2);
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let nodes = parse_nodes(&args[1], &read(&args[1])).unwrap_or_else(|e| panic!("{e}"));
    let tasks = parse_tasks(&args[2], &read(&args[2])).unwrap_or_else(|e| panic!("{e}"));
    let policies = args
        .get(3)
        .map(|s| s.split(',').filter_map(Policy::parse).collect())
        .unwrap_or_else(|| Policy::ALL.to_vec());
    let seed = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let opts = ReplayOptions {
        policies,
        seed,
        inflation: true,
    };
    let t = Instant::now();
    let (summary, reports) = replay(&nodes, &tasks, &opts).unwrap_or_else(|e| panic!("{e}"));
    println!("{summary:?}");
    for r in &reports {
        let x = &r.replay;
        println!(
            "{:<9} replay: first failure {:?}; never started {}; delay mean {:.0} s p95 {} s; attempts {}",
            r.policy.name(),
            x.first_failure
                .as_ref()
                .map(|f| (f.arrived, f.allocation, f.unallocated_gpus)),
            x.never_started,
            x.delay.mean_s,
            x.delay.p95_s,
            x.attempts
        );
        if let Some(i) = &r.inflation {
            println!(
                "{:<9} inflation: first failure {:?}; at 100%: alloc {:.4} unalloc {:.1}; failed {}/{}",
                r.policy.name(),
                i.first_failure
                    .as_ref()
                    .map(|f| (f.arrived, f.allocation, f.unallocated_gpus)),
                i.final_allocation,
                i.final_unallocated_gpus,
                i.failed,
                i.submitted
            );
        }
    }
    println!("{:.1} s", t.elapsed().as_secs_f64());
}
