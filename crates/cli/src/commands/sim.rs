//! `sim nodes`: simulated nodes, like KWOK for Kubernetes. They register as Node objects
//! (labelled `meridian.dev/simulated=true`), heartbeat like agents (each node renews its
//! lease every `--heartbeat`, staggered over the interval), and report every allocation
//! placed on them as `running`. They run nothing, so thousands fit next to real agents
//! for scale tests and demos.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::{Value, json};

use client::{Client, ListOptions, Method};

use crate::args::SimNodesArgs;
use crate::exit::UserError;

/// Label of simulated nodes.
pub const SIMULATED_LABEL: &str = "meridian.dev/simulated";

fn node_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

#[derive(Default)]
struct Counters {
    heartbeats: AtomicU64,
    heartbeat_errors: AtomicU64,
    started: AtomicU64,
}

pub async fn nodes(client: &Client, args: &SimNodesArgs) -> Result<()> {
    if args.count == 0 || args.count > 100_000 {
        return Err(UserError::fail("--count must be between 1 and 100000"));
    }
    api::validate::check_dns_label(&args.prefix)
        .map_err(|e| UserError::fail(format!("--prefix {:?}: {e}", args.prefix)))?;
    for (flag, value) in [("--cpu", &args.cpu), ("--memory", &args.memory)] {
        let ok = if flag == "--cpu" {
            value.parse::<api::Cpu>().is_ok()
        } else {
            value.parse::<api::Memory>().is_ok()
        };
        if !ok {
            return Err(UserError::fail(format!(
                "{flag} {value:?} is not a quantity (e.g. --cpu 16 --memory 64Gi)"
            )));
        }
    }
    ensure_site(client, args).await?;
    register(client, args).await?;
    eprintln!(
        "{} simulated nodes registered in site {}; heartbeating every {:?}",
        args.count, args.site, args.heartbeat
    );
    let counters = Arc::new(Counters::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let heartbeats = tokio::spawn(heartbeat_loop(
        client.clone(),
        args.prefix.clone(),
        args.count,
        args.heartbeat,
        args.concurrency.max(1),
        counters.clone(),
        stop.clone(),
    ));
    let runner = tokio::spawn(run_allocations(
        client.clone(),
        format!("{}-", args.prefix),
        counters.clone(),
        stop.clone(),
    ));
    let report = {
        let counters = counters.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => eprintln!(
                        "heartbeats {} (errors {}), allocations started {}",
                        counters.heartbeats.load(Ordering::Relaxed),
                        counters.heartbeat_errors.load(Ordering::Relaxed),
                        counters.started.load(Ordering::Relaxed),
                    ),
                }
            }
        })
    };
    match args.duration {
        Some(d) => tokio::time::sleep(d).await,
        None => server::shutdown_signal().await,
    }
    stop.cancel();
    let _ = heartbeats.await;
    let _ = runner.await;
    let _ = report.await;
    eprintln!(
        "stopped: heartbeats {} (errors {}), allocations started {}",
        counters.heartbeats.load(Ordering::Relaxed),
        counters.heartbeat_errors.load(Ordering::Relaxed),
        counters.started.load(Ordering::Relaxed),
    );
    Ok(())
}

async fn ensure_site(client: &Client, args: &SimNodesArgs) -> Result<()> {
    match client.get(api::kinds::SITE, None, &args.site).await {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let site = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Site",
        "metadata": {"name": args.site, "labels": {SIMULATED_LABEL: "true"}},
        "spec": {"provider": "onprem", "region": args.site, "jurisdiction": args.jurisdiction,
                 "operator": {"name": "Simulation", "jurisdiction": args.jurisdiction}},
    });
    client
        .create(api::kinds::SITE, None, &site, false)
        .await
        .with_context(|| format!("creating site {}", args.site))?;
    Ok(())
}

async fn register(client: &Client, args: &SimNodesArgs) -> Result<()> {
    let results = futures::stream::iter(0..args.count)
        .map(|i| {
            let node = json!({
                "apiVersion": "meridian.dev/v1", "kind": "Node",
                "metadata": {"name": node_name(&args.prefix, i),
                             "labels": {SIMULATED_LABEL: "true"}},
                "spec": {"site": args.site, "os": {"family": "linux", "distro": "simulated"},
                         "arch": "amd64",
                         "capacity": {"cpu": args.cpu, "memory": args.memory},
                         "drivers": ["exec", "container"]},
            });
            async move { client.apply(api::kinds::NODE, None, &node, false).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(anyhow::Error::from(e).context("registering simulated nodes"));
    }
    Ok(())
}

/// Every node heartbeats once per `interval`, spread evenly over it.
async fn heartbeat_loop(
    client: Client,
    prefix: String,
    count: usize,
    interval: Duration,
    concurrency: usize,
    counters: Arc<Counters>,
    stop: tokio_util::sync::CancellationToken,
) {
    // Send in small slices, one slice per tick, so the load is smooth.
    let slices = (interval.as_millis() / 50).clamp(1, count as u128) as usize;
    let per_slice = count.div_ceil(slices);
    let mut tick = tokio::time::interval(interval / slices as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let batch: Vec<usize> = (0..per_slice).map(|k| (next + k) % count).collect();
        next = (next + per_slice) % count;
        let client = &client;
        let prefix = &prefix;
        let results = futures::stream::iter(batch)
            .map(|i| async move {
                let path = format!("/meridian/v1/nodes/{}/heartbeat", node_name(prefix, i));
                client.request_json(Method::POST, &path, None).await
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        for r in results {
            let c = if r.is_ok() {
                &counters.heartbeats
            } else {
                &counters.heartbeat_errors
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reports allocations placed on simulated nodes as running (and gone when deleted).
async fn run_allocations(
    client: Client,
    node_prefix: String,
    counters: Arc<Counters>,
    stop: tokio_util::sync::CancellationToken,
) {
    let alloc = api::kinds::ALLOCATION;
    loop {
        let mut events = match client.watch(alloc, None, &ListOptions::default()).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch allocations; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                e = events.next() => e,
            };
            let Some(Ok(event)) = event else { break };
            if event.type_ != "ADDED" && event.type_ != "MODIFIED" {
                continue;
            }
            let a = event.object;
            let on_sim = a
                .pointer("/spec/node")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(&node_prefix));
            let phase = a
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("pending");
            if !on_sim || phase != "pending" {
                continue;
            }
            let ns = a["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let name = a["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut running = a.clone();
            running["status"] =
                json!({"phase": "running", "startedAt": jiff::Timestamp::now().to_string()});
            if client
                .replace_status(alloc, Some(&ns), &name, &running)
                .await
                .is_ok()
            {
                counters.started.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
