//! `meridian bench crash`: the kill -9 durability experiment. Writers create objects
//! against a spawned server, which is killed at a random moment and restarted: every
//! acknowledged write must be there, at its acknowledged revision or later, and the audit
//! chain must verify.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;

use client::ListOptions;

use crate::load::{describe, report_errors, resource_version, run_id, workload};
use crate::spawn::{ServerProcess, temp_dir, verify_audit};
use crate::{CrashArgs, UsageError};

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

/// `meridian bench crash`: runs the experiments with servers started from the binary
/// `meridian`; fails when an acknowledged write was lost or an audit chain did not verify.
pub async fn crash(meridian: &Path, args: &CrashArgs) -> Result<()> {
    if args.runs == 0 || args.clients == 0 || args.min_ms > args.max_ms {
        bail!(UsageError(
            "--runs and --clients must be positive and --min-ms at most --max-ms".into()
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
        let r = crash_run(meridian, args.clients, kill_after, args.size).await?;
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
async fn crash_run(
    meridian: &Path,
    clients: usize,
    kill_after: Duration,
    size: usize,
) -> Result<CrashRun> {
    let dir = temp_dir("meridian-bench-crash-")?;
    let mut server = ServerProcess::start(meridian, dir.path()).await?;
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
                    .create(api::kinds::WORKLOAD, Some("default"), &object, false)
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

    let mut restarted = ServerProcess::start(meridian, dir.path()).await?;
    let found: HashMap<String, i64> = restarted
        .client()?
        .list_all(
            api::kinds::WORKLOAD,
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
    let acked_names: HashSet<&str> = acked.iter().map(|(n, _)| n.as_str()).collect();
    let unacked_present = found
        .keys()
        .filter(|n| !acked_names.contains(n.as_str()))
        .count();
    let audit = verify_audit(meridian, dir.path())?;
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
