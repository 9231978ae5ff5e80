//! `meridian bench placement`: the scheduler core alone, in this process, on one thread
//! (the measurement is `sim::bench::placement`; this is its command line and its tables).

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::report::{print_columns, print_table, thousands, us};
use crate::{PlacementArgs, UsageError};

/// Largest fleet and mix the command accepts (memory, not time, is the limit).
const MAX_NODES: usize = 1_000_000;
const MAX_INSTANCES: usize = 10_000_000;

/// `--nodes`: one count or a comma-separated list.
fn parse_node_counts(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let n: usize = part.replace('_', "").parse().map_err(|_| {
            UsageError(format!(
                "--nodes: {part:?} is not a node count (write e.g. --nodes 10000 or --nodes 1000,10000,100000)"
            ))
        })?;
        if n == 0 || n > MAX_NODES {
            bail!(UsageError(format!(
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
    print_columns("", &header, &rows);
}

/// `meridian bench placement`: the placement benchmark of `sim`, one run per fleet size,
/// printed as a table, a growth table or JSON.
pub fn placement(args: &PlacementArgs) -> Result<()> {
    let sizes = parse_node_counts(&args.nodes)?;
    if args.instances > MAX_INSTANCES {
        bail!(UsageError(format!(
            "--instances: {} is more than {MAX_INSTANCES}",
            args.instances
        )));
    }
    let mut reports = Vec::new();
    for &nodes in &sizes {
        if sizes.len() > 1 {
            eprintln!("placing {} instances on {} nodes...", args.instances, nodes);
        }
        let r = sim::bench::placement_with_quota(
            nodes,
            args.instances,
            args.seed,
            args.ports,
            args.quota,
        )
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
    fn node_counts_are_one_or_a_list() {
        assert_eq!(parse_node_counts("10000").unwrap(), [10_000]);
        assert_eq!(
            parse_node_counts("1000, 10_000,100000").unwrap(),
            [1_000, 10_000, 100_000]
        );
        for bad in ["", "ten", "0", "1000001", "10,-1"] {
            let e = parse_node_counts(bad).unwrap_err();
            assert!(e.is::<UsageError>(), "{bad:?}: {e:#}");
        }
    }
}
