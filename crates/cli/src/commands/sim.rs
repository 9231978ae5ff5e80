//! `sim nodes`: simulated nodes, like KWOK for Kubernetes, served by a [`sim::SimAgent`]
//! (`crates/sim/src/agent.rs` says what they report). This module checks the flags,
//! builds the nodes and prints progress.

use std::time::Duration;

use anyhow::{Context, Result};

use client::Client;
use sim::agent::{self, SimAgent};

use crate::args::SimNodesArgs;
use crate::exit::UserError;

fn node_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

pub async fn nodes(client: &Client, args: &SimNodesArgs) -> Result<()> {
    if args.count == 0 || args.count > 100_000 {
        return Err(UserError::fail("--count must be between 1 and 100000"));
    }
    api::validate::check_dns_label(&args.prefix)
        .map_err(|e| UserError::fail(format!("--prefix {:?}: {e}", args.prefix)))?;
    let cpu: api::Cpu = args.cpu.parse().map_err(|_| {
        UserError::fail(format!(
            "--cpu {:?} is not a quantity (e.g. --cpu 16 --memory 64Gi)",
            args.cpu
        ))
    })?;
    let memory: api::Memory = args.memory.parse().map_err(|_| {
        UserError::fail(format!(
            "--memory {:?} is not a quantity (e.g. --cpu 16 --memory 64Gi)",
            args.memory
        ))
    })?;
    agent::ensure_site(client, &args.site, &args.jurisdiction).await?;
    let nodes = (0..args.count)
        .map(|i| agent::simulated_node(&node_name(&args.prefix, i), &args.site, cpu, memory))
        .collect();
    let options = agent::Options {
        heartbeat: args.heartbeat,
        concurrency: args.concurrency.max(1),
        ..agent::Options::default()
    };
    let sim = SimAgent::register(client.clone(), nodes, options)
        .await
        .context("registering simulated nodes")?;
    eprintln!(
        "{} simulated nodes registered in site {}; heartbeating every {:?}",
        args.count, args.site, args.heartbeat
    );
    let report = |s: agent::Stats| {
        format!(
            "heartbeats {} (errors {}), allocations started {}, succeeded {}, failed {}",
            s.heartbeats, s.heartbeat_errors, s.started, s.succeeded, s.failed
        )
    };
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let until = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => server::shutdown_signal().await,
        }
    };
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => break,
            _ = tick.tick() => eprintln!("{}", report(sim.stats())),
        }
    }
    let stats = sim.stop().await;
    eprintln!("stopped: {}", report(stats));
    Ok(())
}
