//! `rollout status|history|undo|pause|resume|restart` and `scale`, after kubectl's verbs
//! of the same names: the server rolls out; these read and steer it.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use serde_json::{Value, json};

use api::Workload;
use api::kinds::{ConditionStatus, WorkloadType};
use client::{Client, ListOptions, PatchType};

use crate::args::{RolloutCommand, RolloutTarget, ScaleArgs};
use crate::config::Resolved;
use crate::exit::UserError;

/// The workload a `[workload/]NAME` argument names.
fn workload_name(target: &str) -> Result<&str> {
    match target.split_once('/') {
        None => Ok(target),
        Some((kind, name)) => match api::lookup_kind(kind) {
            Some(k) if k.kind == api::kinds::WORKLOAD.kind => Ok(name),
            _ => Err(UserError::fail(format!(
                "{target:?}: only workloads are rolled out; use NAME or workload/NAME"
            ))),
        },
    }
}

fn project(conn: &Resolved) -> String {
    conn.namespace.clone().unwrap_or_else(|| "default".into())
}

async fn fetch(client: &Client, ns: &str, name: &str) -> Result<Workload> {
    let value = client.get(api::kinds::WORKLOAD, Some(ns), name).await?;
    Ok(serde_json::from_value(value)?)
}

fn refuse_jobs(w: &Workload, verb: &str) -> Result<()> {
    if w.spec.type_ == WorkloadType::Job {
        return Err(UserError::fail(format!(
            "workload {:?} is a job: jobs are not rolled out (each instance runs to completion), so there is nothing to {verb}",
            w.metadata.name
        )));
    }
    Ok(())
}

pub async fn rollout(client: &Client, conn: &Resolved, command: &RolloutCommand) -> Result<()> {
    let ns = project(conn);
    match command {
        RolloutCommand::Status(a) => status(client, &ns, a).await,
        RolloutCommand::History(a) => history(client, &ns, &a.target, a.revision).await,
        RolloutCommand::Undo(a) => undo(client, &ns, &a.target, a.to_revision).await,
        RolloutCommand::Pause(t) => pause(client, &ns, t, true).await,
        RolloutCommand::Resume(t) => pause(client, &ns, t, false).await,
        RolloutCommand::Restart(t) => restart(client, &ns, t).await,
    }
}

/// Where a rollout stands, as one line; `Ok(true)` when it is done.
fn progress(w: &Workload) -> Result<(bool, String)> {
    let name = &w.metadata.name;
    let Some(s) = &w.status else {
        return Ok((
            false,
            format!("Waiting for workload {name:?} rollout to start..."),
        ));
    };
    if s.observed_generation < w.metadata.generation {
        return Ok((
            false,
            format!("Waiting for workload {name:?} spec update to be observed..."),
        ));
    }
    if let Some(c) = s.condition("Progressing")
        && c.status == ConditionStatus::False
    {
        return Err(UserError::fail(format!(
            "workload {name:?} rollout stopped ({}): {}",
            c.reason.as_deref().unwrap_or("unknown"),
            c.message.as_deref().unwrap_or("")
        )));
    }
    let want = s.desired_replicas;
    let line = if s.updated_replicas < want {
        format!(
            "Waiting for workload {name:?} rollout to finish: {} out of {want} new instances have been updated...",
            s.updated_replicas
        )
    } else if s.replicas > s.updated_replicas.min(want) {
        format!(
            "Waiting for workload {name:?} rollout to finish: {} old instances are pending termination...",
            s.replicas - s.updated_replicas.min(want)
        )
    } else if s.available_replicas < want {
        format!(
            "Waiting for workload {name:?} rollout to finish: {} of {want} updated instances are available...",
            s.available_replicas
        )
    } else if s.update_revision.is_some() && s.current_revision != s.update_revision {
        // The counts are there; the scheduler has not yet recorded the revision as the
        // current one (it does so in the pass that sees them), so `history` would not
        // mark it yet.
        format!("Waiting for workload {name:?} rollout to be recorded as complete...")
    } else {
        return Ok((true, format!("workload {name:?} successfully rolled out")));
    };
    Ok((false, line))
}

async fn status(client: &Client, ns: &str, args: &crate::args::RolloutStatusArgs) -> Result<()> {
    let name = workload_name(&args.target)?;
    let w = fetch(client, ns, name).await?;
    refuse_jobs(&w, "wait for")?;
    let (done, line) = progress(&w)?;
    println!("{line}");
    if done || !args.watch {
        return Ok(());
    }
    let mut last = line;
    let wait = async {
        let opts = ListOptions {
            field_selector: Some(format!("metadata.name={name}")),
            resource_version: w.metadata.resource_version.clone(),
            ..ListOptions::default()
        };
        let mut events = client.watch(api::kinds::WORKLOAD, Some(ns), &opts).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            if event.type_ == "DELETED" {
                return Err(UserError::fail(format!("workload {name:?} was deleted")));
            }
            if event.type_ != "ADDED" && event.type_ != "MODIFIED" {
                continue;
            }
            let w: Workload = serde_json::from_value(event.object)?;
            let (done, line) = progress(&w)?;
            if line != last {
                println!("{line}");
                last = line;
            }
            if done {
                return Ok(());
            }
        }
        Err(UserError::fail(
            "the watch ended before the rollout did; run the command again",
        ))
    };
    match args.timeout {
        Some(limit) if limit > Duration::ZERO => {
            tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
                Err(UserError::fail(format!(
                    "timed out waiting for the rollout of workload {name:?} ({})",
                    api::Duration(limit)
                )))
            })
        }
        _ => wait.await,
    }
}

async fn history(client: &Client, ns: &str, target: &str, revision: Option<u32>) -> Result<()> {
    let name = workload_name(target)?;
    let w = fetch(client, ns, name).await?;
    let s = w.status.unwrap_or_default();
    if let Some(n) = revision {
        let entry = s.history.iter().find(|r| r.revision == n).ok_or_else(|| {
            UserError::fail(format!(
                "workload {name:?} has no revision {n} (it keeps {})",
                revisions(&s.history)
            ))
        })?;
        println!("workload.meridian.dev/{name} with revision #{n}");
        print!("{}", serde_yaml_ng::to_string(&entry.template)?);
        return Ok(());
    }
    println!("workload.meridian.dev/{name}");
    let rows: Vec<Vec<String>> = s
        .history
        .iter()
        .map(|r| {
            let mut marks = Vec::new();
            if s.current_revision == Some(r.revision) {
                marks.push("current");
            }
            if s.update_revision == Some(r.revision) && s.current_revision != Some(r.revision) {
                marks.push("rolling out");
            }
            vec![
                r.revision.to_string(),
                r.created_at.clone().unwrap_or_default(),
                marks.join(", "),
                r.change_cause.clone().unwrap_or_else(|| "<none>".into()),
            ]
        })
        .collect();
    let headers: Vec<String> = ["REVISION", "CREATED", "STATE", "CHANGE-CAUSE"]
        .map(String::from)
        .to_vec();
    print!("{}", crate::output::table(&headers, &rows, false));
    Ok(())
}

fn revisions(history: &[api::WorkloadRevision]) -> String {
    let list: Vec<String> = history.iter().map(|r| r.revision.to_string()).collect();
    if list.is_empty() {
        "none yet".into()
    } else {
        list.join(", ")
    }
}

async fn undo(client: &Client, ns: &str, target: &str, to: Option<u32>) -> Result<()> {
    let name = workload_name(target)?;
    let mut w = fetch(client, ns, name).await?;
    refuse_jobs(&w, "undo")?;
    let s = w.status.clone().unwrap_or_default();
    let current = s.update_revision;
    let entry = match to.filter(|&n| n > 0) {
        Some(n) => s.history.iter().find(|r| r.revision == n),
        // The revision before the newest.
        None => s
            .history
            .iter()
            .filter(|r| Some(r.revision) != current)
            .max_by_key(|r| r.revision),
    }
    .cloned()
    .ok_or_else(|| {
        UserError::fail(match to {
            Some(n) if n > 0 => format!(
                "workload {name:?} has no revision {n} (it keeps {})",
                revisions(&s.history)
            ),
            _ => format!("workload {name:?} has no previous revision to return to"),
        })
    })?;
    if api::WorkloadTemplate::of(&w.spec) == *entry.template {
        println!(
            "workload.meridian.dev/{name} skipped rollback (the spec already is revision {})",
            entry.revision
        );
        return Ok(());
    }
    entry.template.apply_to(&mut w.spec);
    let object = serde_json::to_value(&w)?;
    client
        .replace(api::kinds::WORKLOAD, Some(ns), name, &object)
        .await?;
    println!(
        "workload.meridian.dev/{name} rolled back to revision {}",
        entry.revision
    );
    Ok(())
}

async fn pause(client: &Client, ns: &str, t: &RolloutTarget, paused: bool) -> Result<()> {
    let name = workload_name(&t.target)?;
    let w = fetch(client, ns, name).await?;
    refuse_jobs(&w, if paused { "pause" } else { "resume" })?;
    let verb = if paused { "paused" } else { "resumed" };
    if w.spec.paused == paused {
        return Err(UserError::fail(format!(
            "workload {name:?} is {}",
            if paused {
                "already paused"
            } else {
                "not paused"
            }
        )));
    }
    merge(client, ns, name, json!({"spec": {"paused": paused}})).await?;
    println!("workload.meridian.dev/{name} {verb}");
    Ok(())
}

async fn restart(client: &Client, ns: &str, t: &RolloutTarget) -> Result<()> {
    let name = workload_name(&t.target)?;
    let w = fetch(client, ns, name).await?;
    refuse_jobs(&w, "restart")?;
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)?
        .to_string();
    merge(client, ns, name, json!({"spec": {"restartedAt": now}})).await?;
    println!("workload.meridian.dev/{name} restarted");
    Ok(())
}

async fn merge(client: &Client, ns: &str, name: &str, patch: Value) -> Result<()> {
    client
        .patch(
            api::kinds::WORKLOAD,
            Some(ns),
            name,
            PatchType::Merge,
            &patch,
            false,
        )
        .await?;
    Ok(())
}

pub async fn scale(client: &Client, conn: &Resolved, args: &ScaleArgs) -> Result<()> {
    let ns = project(conn);
    let name = workload_name(&args.target)?;
    if let Some(expected) = args.current_replicas {
        let w = fetch(client, &ns, name).await?;
        if w.spec.replicas != expected {
            return Err(UserError::fail(format!(
                "workload {name:?} has {} replicas, not --current-replicas {expected}; nothing changed",
                w.spec.replicas
            )));
        }
    }
    merge(
        client,
        &ns,
        name,
        json!({"spec": {"replicas": args.replicas}}),
    )
    .await?;
    println!("workload.meridian.dev/{name} scaled");
    Ok(())
}
