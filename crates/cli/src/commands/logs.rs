//! `logs`: an allocation's output, streamed through the server as it arrives.

use std::io::Write;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::Value;

use api::logs::LogStream;
use client::{Client, ListOptions, LogOptions};

use crate::args::{LogStreamArg, LogsArgs};
use crate::config::Resolved;
use crate::exit::UserError;

/// The allocation `target` names: `NAME`, `allocation/NAME` or `workload/NAME` (its
/// first running allocation, by replica).
async fn resolve(client: &Client, ns: &str, target: &str) -> Result<String> {
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(target.to_owned());
    };
    let info = api::lookup_kind(kind);
    match info.map(|k| k.kind) {
        Some("Allocation") => Ok(name.to_owned()),
        Some("Workload") => {
            let workload = api::kinds::WORKLOAD;
            // A clear 404 for a workload that does not exist.
            client.get(workload, Some(ns), name).await?;
            let mut mine: Vec<Value> = client
                .list_all(api::kinds::ALLOCATION, Some(ns), &ListOptions::default())
                .await?
                .into_iter()
                .filter(|a| a.pointer("/spec/workload").and_then(Value::as_str) == Some(name))
                .collect();
            let running = |a: &Value| a.pointer("/status/phase") == Some(&Value::from("running"));
            mine.sort_by_key(|a| {
                (
                    !running(a),
                    a.pointer("/spec/replica").and_then(Value::as_u64),
                )
            });
            let Some(first) = mine.first() else {
                return Err(UserError::fail(format!(
                    "workload {name:?} has no allocations yet, so it has no logs: \
                     `meridian explain workload {name} -n {ns}` says why it waits"
                )));
            };
            let chosen = first["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if mine.len() > 1 {
                eprintln!(
                    "Found {} allocations of workload {name}, using allocation/{chosen}",
                    mine.len()
                );
            }
            Ok(chosen)
        }
        _ => Err(UserError::fail(format!(
            "{target:?}: logs reads allocations; use ALLOCATION, allocation/NAME or workload/NAME"
        ))),
    }
}

pub async fn logs(client: &Client, conn: &Resolved, args: &LogsArgs) -> Result<()> {
    let ns = conn.namespace.clone().unwrap_or_else(|| "default".into());
    let allocation = resolve(client, &ns, &args.target).await?;
    let stream = match (args.stderr, args.stream) {
        (true, _) => Some(LogStream::Stderr),
        (false, None) => None,
        (false, Some(LogStreamArg::Stdout)) => Some(LogStream::Stdout),
        (false, Some(LogStreamArg::Stderr)) => Some(LogStream::Stderr),
        (false, Some(LogStreamArg::All)) => Some(LogStream::All),
    };
    let opts = LogOptions {
        follow: args.follow,
        tail_lines: args.tail.and_then(|n| u64::try_from(n).ok()),
        limit_bytes: args.limit_bytes,
        stream,
    };
    let mut bytes = client.logs(&ns, &allocation, &opts).await?;
    // Plain blocking writes: the CLI's runtime has threads to spare, and stdout is ours.
    let mut out = std::io::stdout().lock();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let chunk = tokio::select! {
            _ = &mut interrupted => break,
            chunk = bytes.next() => chunk,
        };
        match chunk {
            None => break,
            Some(Ok(b)) => {
                // A reader that went away (`| head`) is no error.
                if out.write_all(&b).is_err() || out.flush().is_err() {
                    return Ok(());
                }
            }
            Some(Err(e)) => {
                let _ = out.flush();
                return Err(e).context(format!(
                    "the log stream of allocation {allocation} broke before its end"
                ));
            }
        }
    }
    let _ = out.flush();
    Ok(())
}
