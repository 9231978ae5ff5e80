//! `meridian bench rss`: resident memory of a server, idle, loaded, after a full list and
//! after a restart.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use client::ListOptions;

use crate::RssArgs;
use crate::load::{
    LoadSpec, describe, ensure_project, report_errors, run_creates, run_id, stored_size,
};
use crate::report::{mib, print_table};
use crate::spawn::{ServerProcess, dir_size, temp_dir};

/// `meridian bench rss`: starts servers from the binary `meridian` and prints their
/// resident memory.
pub async fn rss(meridian: &Path, args: &RssArgs) -> Result<()> {
    let dir = temp_dir("meridian-bench-rss-")?;
    let mut server = ServerProcess::start(meridian, dir.path()).await?;
    let settle = Duration::from_secs(2);
    tokio::time::sleep(settle).await;
    let (idle, _) = server.memory_kib()?;
    let clients = (0..args.clients.max(1))
        .map(|_| server.client())
        .collect::<Result<Vec<_>>>()?;
    let project = "bench".to_owned();
    ensure_project(&clients[0], &project).await?;
    let spec = LoadSpec {
        clients: clients.len(),
        count: Some(args.objects),
        duration: None,
        rate: 0.0,
        size: args.size,
        personal_data: false,
        project,
        run: run_id(),
    };
    let load = run_creates(clients, &spec).await;
    if load.errors > 0 {
        report_errors(&load.error_messages);
        bail!("{} creates failed while loading", load.errors);
    }
    tokio::time::sleep(settle).await;
    let (loaded, peak) = server.memory_kib()?;
    let stored = stored_size(
        &server.client()?,
        &spec.project,
        &format!("b-{}-0", spec.run),
    )
    .await;

    // A full list of every object (paged), as a controller's initial sync would do.
    let all = server
        .client()?
        .list_all(
            api::kinds::WORKLOAD,
            None,
            &ListOptions {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot list: {}", describe(&e)))?;
    let listed = all.len();
    drop(all);
    tokio::time::sleep(settle).await;
    let (after_list, peak_list) = server.memory_kib()?;

    server.kill()?;
    let disk = dir_size(dir.path());
    let restarted = ServerProcess::start(meridian, dir.path()).await?;
    tokio::time::sleep(settle).await;
    let (restart_idle, _) = restarted.memory_kib()?;
    drop(restarted);

    let rows: Vec<(&str, String)> = vec![
        (
            "objects",
            format!(
                "{} Workloads (request body {} B, stored {})",
                load.created,
                args.size,
                stored.map_or_else(|| "?".into(), |s| format!("{s} B"))
            ),
        ),
        (
            "load",
            format!(
                "{:.1} s, {:.0} objects/s",
                load.elapsed.as_secs_f64(),
                load.created as f64 / load.elapsed.as_secs_f64().max(1e-9)
            ),
        ),
        ("RSS idle, empty store", mib(idle)),
        ("RSS idle after loading", mib(loaded)),
        ("RSS peak while loading (VmHWM)", mib(peak)),
        (
            "RSS after listing all (paged 500)",
            format!("{} ({listed} listed)", mib(after_list)),
        ),
        ("RSS peak after listing (VmHWM)", mib(peak_list)),
        ("RSS idle after restart", mib(restart_idle)),
        (
            "store on disk",
            format!("{:.1} MiB", disk as f64 / 1048576.0),
        ),
    ];
    print_table("bench rss", &rows);
    Ok(())
}
