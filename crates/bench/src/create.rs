//! `meridian bench create`: durable creates from concurrent clients, closed loop or paced.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::load::{
    LoadResult, LoadSpec, ensure_project, report_errors, run_creates, run_id, stored_size,
};
use crate::report::{latency_rows, print_table};
use crate::{CreateArgs, Target, UsageError};

/// `meridian bench create`: prints the figures; fails when any create failed.
pub async fn create(target: &Target, args: &CreateArgs) -> Result<()> {
    if args.clients == 0 {
        bail!(UsageError("--clients must be at least 1".into()));
    }
    if let Some(endpoints) = &args.raw_etcd {
        return raw_etcd(target, args, &endpoints.0).await;
    }
    let spec = load_spec(target, args);
    let clients = target.clients(args.clients)?;
    ensure_project(&clients[0], &spec.project).await?;
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
    print_create(&spec, &target.server, &result, stored, server_cpu, own_cpu);
    if result.errors > 0 {
        report_errors(&result.error_messages);
        bail!("{} of the creates failed", result.errors);
    }
    Ok(())
}

/// `--raw-etcd`: the same load as etcd transactions of a create's shape (`raw_etcd.rs`).
#[cfg(feature = "etcd")]
async fn raw_etcd(target: &Target, args: &CreateArgs, endpoints: &[String]) -> Result<()> {
    let spec = load_spec(target, args);
    let creators = crate::raw_etcd::creators(
        endpoints,
        &args.raw_prefix,
        &spec.project,
        &spec.run,
        args.raw_chain,
        args.clients,
    )
    .await?;
    let stored = crate::raw_etcd::stored_form(crate::load::workload(
        &format!("b-{}-0", spec.run),
        &spec.project,
        &spec.run,
        0,
        spec.size,
    ))
    .ok()
    .map(|(_, bytes)| bytes.len());
    let own_before = process_cpu(std::process::id());
    let result = crate::load::run_load(creators, &spec).await;
    let own_cpu = process_cpu(std::process::id())
        .zip(own_before)
        .map(|(after, before)| after.saturating_sub(before));
    let chain = match args.raw_chain {
        crate::RawChain::Shared => "one audit chain, appends serialised here as in one server",
        crate::RawChain::PerClient => "one audit chain per client, nothing serialised",
    };
    let server = format!(
        "raw etcd txns at etcd://{} under {} ({chain})",
        endpoints.join(","),
        args.raw_prefix
    );
    print_create(&spec, &server, &result, stored, None, own_cpu);
    if result.errors > 0 {
        report_errors(&result.error_messages);
        bail!("{} of the creates failed", result.errors);
    }
    Ok(())
}

#[cfg(not(feature = "etcd"))]
async fn raw_etcd(_: &Target, _: &CreateArgs, _: &[String]) -> Result<()> {
    bail!(UsageError(
        "--raw-etcd needs a meridian built with the etcd feature (cargo build -p cli --features etcd)"
            .into()
    ))
}

fn load_spec(target: &Target, args: &CreateArgs) -> LoadSpec {
    LoadSpec {
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
        project: target.project(),
        run: run_id(),
    }
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
