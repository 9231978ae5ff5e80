//! `explain` and `plan` (the scheduler's reasoning, for people) and `cordon`, `uncordon`,
//! `drain` (taking a node out of service, as kubectl does).

use anyhow::{Context, Result};
use serde_json::Value;

use api::explanation::{Explained, Explanation, Outcome, Plan};
use client::Client;

use crate::args::{DrainArgs, ExplainArgs, Output, PlanArgs};
use crate::config::Resolved;
use crate::exit::UserError;
use crate::manifests;

fn print_json_or_yaml(value: &Value, output: Output) -> Result<bool> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Human text of one explanation: summary, reason counts, candidates, suggestions.
pub fn explanation_text(e: &Explanation, indent: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!("{indent}{}\n", e.summary));
    if let Some(q) = &e.queue {
        out.push_str(&format!("{indent}Queue {}: {}\n", q.queue, q.reason));
    }
    if !e.rejections.is_empty() {
        out.push_str(&format!(
            "{indent}Nodes considered: {}, passed: {}\n",
            e.nodes, e.passed
        ));
        for r in &e.rejections {
            let n = r.nodes;
            out.push_str(&format!(
                "{indent}  {n} node{}: {}\n",
                if n == 1 { "" } else { "s" },
                r.message
            ));
        }
    }
    if !e.candidates.is_empty() {
        out.push_str(&format!("{indent}Top candidates:\n"));
        for c in &e.candidates {
            // As JSON writes a number (`40.0`, not `40`): what this line always showed.
            let total = Value::from(c.score.total);
            out.push_str(&format!(
                "{indent}  {} ({}) score {total}\n",
                c.node, c.site
            ));
        }
    }
    for sug in &e.suggestions {
        out.push_str(&format!("{indent}Suggestion: {}\n", sug.message));
    }
    for note in &e.notes {
        out.push_str(&format!("{indent}Note: {note}\n"));
    }
    out
}

/// The server's answer, decoded into the `api` type both sides share.
fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .with_context(|| format!("the server's {what} answer is not one this meridian reads"))
}

pub async fn explain(client: &Client, conn: &Resolved, args: &ExplainArgs) -> Result<()> {
    let info = crate::commands::resources::kind(&args.kind)?;
    if info != api::kinds::WORKLOAD {
        return Err(UserError::fail(format!(
            "explain works on workloads, not {}: meridian explain workload NAME",
            info.plural
        )));
    }
    let ns = conn.namespace.clone().unwrap_or_else(|| "default".into());
    let path = format!(
        "{}/explain",
        client::resource_path(info, Some(&ns), Some(&args.name))
    );
    let resp = client.get_path(&path).await?;
    if print_json_or_yaml(&resp, args.output)? {
        return Ok(());
    }
    let explained: Explained = decode(resp, "explain")?;
    println!("Workload:   {ns}/{}", args.name);
    if let Some(status) = &explained.status {
        println!(
            "Replicas:   {}/{} placed",
            status.placed_replicas, status.desired_replicas
        );
        if let Some(m) = &status.message {
            println!("Waiting:    {m}");
        }
        if let Some(q) = &status.queue {
            let mut line = format!("Queue:      {}", q.name);
            if q.admitted {
                line.push_str(", admitted");
            } else if let Some(p) = q.position {
                line.push_str(&format!(", position {p} (jobs ahead of it: {p})"));
            }
            if let Some(r) = q.reason {
                line.push_str(&format!(", {r}"));
            }
            println!("{line}");
        }
    }
    println!("One more instance now:");
    print!("{}", explanation_text(&explained.explanation, "  "));
    Ok(())
}

pub async fn plan(client: &Client, conn: &Resolved, args: &PlanArgs) -> Result<()> {
    let loaded = manifests::load(&args.files, false)?;
    let mut items = Vec::new();
    for m in loaded {
        if m.object.kind_info() != api::kinds::WORKLOAD {
            return Err(UserError::fail(format!(
                "{} doc {}: plan takes Workloads, not a {}",
                m.source,
                m.doc,
                m.object.kind_info().kind
            )));
        }
        let mut v = m.object.to_value();
        if m.object.namespace().is_none() {
            v["metadata"]["namespace"] =
                Value::String(conn.namespace.clone().unwrap_or_else(|| "default".into()));
        }
        items.push(v);
    }
    let resp = client
        .request_json(
            client::Method::POST,
            "/meridian/v1/plan",
            Some(&Value::Array(items)),
        )
        .await?;
    if print_json_or_yaml(&resp, args.output)? {
        return Ok(());
    }
    let plan: Plan = decode(resp, "plan")?;
    for d in &plan.decisions {
        let w = format!("{}-{}", d.workload, d.replica);
        match &d.outcome {
            Outcome::Placed(p) => println!("{w}  ->  {} ({})", p.node, p.site),
            Outcome::Unplaceable(e) => {
                println!("{w}  ->  cannot be placed");
                print!("{}", explanation_text(e, "    "));
            }
        }
    }
    Ok(())
}

/// Sets `spec.unschedulable` (kubectl cordon/uncordon).
pub async fn cordon(client: &Client, node: &str, on: bool) -> Result<()> {
    client
        .patch(
            api::kinds::NODE,
            None,
            node,
            client::PatchType::Merge,
            &serde_json::json!({"spec": {"unschedulable": on}}),
            false,
        )
        .await?;
    println!("node/{node} {}", if on { "cordoned" } else { "uncordoned" });
    Ok(())
}

/// Asks the server to drain the node (`POST /meridian/v1/nodes/{name}/drain`): it
/// cordons the node, then evicts (deletes) the allocations of services and VMs on it,
/// which the scheduler places again elsewhere under the same rules; jobs are left to
/// finish, as `kubectl drain` leaves what it cannot move.
pub async fn drain(client: &Client, args: &DrainArgs) -> Result<()> {
    let node = &args.node;
    let path = format!(
        "/meridian/v1/nodes/{}/drain{}",
        client::path_segment(node),
        if args.dry_run { "?dryRun=All" } else { "" }
    );
    let answer = client
        .request_json(client::Method::POST, &path, None)
        .await?;
    let result: api::drain::DrainResult =
        serde_json::from_value(answer).context("the server's drain answer")?;
    let would = if result.dry_run { " would be" } else { "" };
    if result.cordoned {
        println!("node/{node} cordoned");
    }
    for e in &result.evicted {
        println!("allocation/{} -n {}{would} evicted", e.name, e.namespace);
    }
    for k in &result.kept {
        eprintln!(
            "allocation {}/{} stays: {}",
            k.namespace,
            k.name,
            k.reason.as_deref().unwrap_or("kept")
        );
    }
    println!(
        "node/{node}{would} drained ({} evicted, {} left)",
        result.evicted.len(),
        result.kept.len()
    );
    Ok(())
}
