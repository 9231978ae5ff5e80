//! Periodic jobs (a job workload with `spec.schedule`), as Kubernetes CronJobs: at each
//! time the schedule fires, a *run* starts: a job workload `{name}-{minutes since 1970}`
//! with the periodic job's spec (less the schedule), labelled
//! [`PERIODIC_LABEL`]`={name}`. The periodic job itself places nothing.
//!
//! A pure function of the periodic job, its runs and the time ([`plan`]); the scheduler
//! creates and deletes what it says. Rules:
//! - One run per due time, at most: a time missed while no server ran is made up once
//!   (the latest), not once per miss. A run's name is its time, so two schedulers never
//!   start one twice (create-if-absent).
//! - `concurrencyPolicy`: `Allow` starts the run beside active ones, `Forbid` skips it
//!   (and says so), `Replace` deletes the active runs and starts it.
//! - Finished runs beyond `successfulJobsHistoryLimit` (3) and `failedJobsHistoryLimit`
//!   (1) are deleted, oldest first; runs whose periodic job is gone are deleted too (the
//!   scheduler's part).

use std::time::Duration;

use api::kinds::{ConcurrencyPolicy, ConditionStatus, Workload, WorkloadStatus};
use api::schedule::Schedule;
use jiff::Timestamp;
use store::Revision;

/// Label on every run, naming its periodic job.
pub const PERIODIC_LABEL: &str = "meridian.dev/periodic";
/// Annotation on every run: the RFC 3339 time it was due.
pub const SCHEDULED_AT: &str = "meridian.dev/scheduled-at";

/// What a pass does for one periodic job.
#[derive(Debug, Default)]
pub struct Plan {
    /// A run to create.
    pub start: Option<Workload>,
    /// Runs to delete: (name, store revision).
    pub delete: Vec<(String, Revision)>,
    pub status: WorkloadStatus,
    /// When the next run is due.
    pub recheck_in: Option<Duration>,
    /// What happened, for events: (warning?, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
}

/// A run is finished when its `Complete` or `Failed` condition is true.
fn finished(run: &Workload) -> Option<bool> {
    let status = run.status.as_ref()?;
    let is = |t: &str| {
        status
            .condition(t)
            .is_some_and(|c| c.status == ConditionStatus::True)
    };
    if is("Complete") {
        Some(true)
    } else if is("Failed") {
        Some(false)
    } else {
        None
    }
}

/// Plans one pass for the periodic job `w` and its runs at `now`.
pub fn plan(w: &Workload, runs: &[(&Workload, Revision)], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let prev = w.status.clone().unwrap_or_default();
    let mut status = WorkloadStatus {
        observed_generation: w.metadata.generation,
        last_schedule_time: prev.last_schedule_time.clone(),
        conditions: prev.conditions.clone(),
        ..WorkloadStatus::default()
    };
    let Some(schedule) = w
        .spec
        .schedule
        .as_deref()
        .and_then(|s| s.parse::<Schedule>().ok())
    else {
        plan.status = status;
        return plan;
    };
    let mut runs: Vec<(&Workload, Revision)> = runs.to_vec();
    runs.sort_by(|a, b| a.0.metadata.name.cmp(&b.0.metadata.name));
    let active: Vec<&(&Workload, Revision)> =
        runs.iter().filter(|(r, _)| finished(r).is_none()).collect();

    // The latest time due since the last run (or since the job was created).
    let since = prev
        .last_schedule_time
        .as_deref()
        .or(w.metadata.creation_timestamp.as_deref())
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map_or(now.as_second(), |t| t.as_second());
    // The latest time due (found directly: a long outage costs nothing to catch up on).
    let due = schedule
        .last_at_or_before(now.as_second())
        .filter(|&t| t > since);
    if let Some(next) = schedule.next_after(now.as_second()) {
        let wait = u64::try_from(next - now.as_second()).unwrap_or(0);
        plan.recheck_in = Some(Duration::from_secs(wait));
    }

    let mut deleted: Vec<&str> = Vec::new();
    if let Some(due) = due {
        let at = Timestamp::from_second(due).unwrap_or(now);
        status.last_schedule_time = Some(at.to_string());
        let policy = w.spec.concurrency_policy.unwrap_or_default();
        let start = match policy {
            ConcurrencyPolicy::Forbid if !active.is_empty() => {
                plan.events.push((
                    true,
                    "RunSkipped",
                    format!(
                        "run due at {at} skipped: {} still active (concurrencyPolicy Forbid)",
                        active[0].0.metadata.name
                    ),
                ));
                false
            }
            ConcurrencyPolicy::Replace => {
                for (r, rev) in &active {
                    plan.delete.push((r.metadata.name.clone(), *rev));
                    deleted.push(r.metadata.name.as_str());
                    plan.events.push((
                        false,
                        "RunReplaced",
                        format!("{} stopped for the run due at {at}", r.metadata.name),
                    ));
                }
                true
            }
            _ => true,
        };
        if start {
            let run = run_of(w, due, &at);
            plan.events.push((
                false,
                "RunStarted",
                format!("{} started (due at {at})", run.metadata.name),
            ));
            plan.start = Some(run);
        }
    }

    // History limits, oldest first.
    for (ok, limit) in [
        (true, w.spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, w.spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&(&Workload, Revision)> = runs
            .iter()
            .filter(|(r, _)| finished(r) == Some(ok))
            .collect();
        let excess = done.len().saturating_sub(limit as usize);
        for (r, rev) in done.into_iter().take(excess) {
            plan.delete.push((r.metadata.name.clone(), *rev));
        }
    }
    status.active_runs = active
        .iter()
        .map(|(r, _)| r.metadata.name.clone())
        .filter(|n| !deleted.contains(&n.as_str()))
        .chain(plan.start.iter().map(|r| r.metadata.name.clone()))
        .collect();
    plan.status = status;
    plan
}

/// The run of `w` due at `due` (Unix seconds).
fn run_of(w: &Workload, due: i64, at: &Timestamp) -> Workload {
    let mut run = Workload::clone(w);
    run.metadata = api::ObjectMeta {
        name: format!("{}-{}", w.metadata.name, due / 60),
        namespace: w.metadata.namespace.clone(),
        labels: w.metadata.labels.clone(),
        ..api::ObjectMeta::default()
    };
    run.metadata
        .labels
        .insert(PERIODIC_LABEL.to_owned(), w.metadata.name.clone());
    run.metadata
        .annotations
        .insert(SCHEDULED_AT.to_owned(), at.to_string());
    run.spec.schedule = None;
    run.spec.concurrency_policy = None;
    run.spec.successful_jobs_history_limit = None;
    run.spec.failed_jobs_history_limit = None;
    run.status = None;
    run
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn periodic(policy: &str) -> Workload {
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": "report", "namespace": "default",
                         "creationTimestamp": "2026-12-06T10:00:30Z"},
            "spec": {"type": "job", "replicas": 1, "schedule": "*/5 * * * *",
                     "concurrencyPolicy": policy,
                     "task": {"driver": "exec", "command": ["/bin/report"],
                              "resources": {"cpu": "100m", "memory": "64Mi"}}}
        }))
        .unwrap()
    }

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn a_run_starts_when_due_and_once_for_many_missed_times() {
        let w = periodic("Allow");
        let p = plan(&w, &[], at("2026-12-06T10:03:00Z"));
        assert!(p.start.is_none());
        assert_eq!(p.recheck_in, Some(Duration::from_secs(120)));
        // Down for an hour: one run, for the latest time.
        let p = plan(&w, &[], at("2026-12-06T11:02:00Z"));
        let run = p.start.expect("a run");
        assert_eq!(
            run.metadata.name,
            format!("report-{}", at("2026-12-06T11:00:00Z").as_second() / 60)
        );
        assert_eq!(run.metadata.labels[PERIODIC_LABEL], "report");
        assert!(run.spec.schedule.is_none());
        assert_eq!(
            p.status.last_schedule_time.as_deref(),
            Some("2026-12-06T11:00:00Z")
        );
        assert_eq!(p.status.active_runs, [run.metadata.name]);
    }

    #[test]
    fn forbid_skips_and_replace_stops_the_active_run() {
        let mut w = periodic("Forbid");
        let active = run_of(
            &w,
            at("2026-12-06T10:05:00Z").as_second(),
            &at("2026-12-06T10:05:00Z"),
        );
        w.status = Some(WorkloadStatus {
            last_schedule_time: Some("2026-12-06T10:05:00Z".into()),
            ..WorkloadStatus::default()
        });
        let now = at("2026-12-06T10:10:05Z");
        let p = plan(&w, &[(&active, 7)], now);
        assert!(p.start.is_none() && p.delete.is_empty());
        assert_eq!(p.events[0].1, "RunSkipped");
        w.spec.concurrency_policy = Some(ConcurrencyPolicy::Replace);
        let p = plan(&w, &[(&active, 7)], now);
        assert_eq!(p.delete, [(active.metadata.name, 7)]);
        assert!(p.start.is_some());
    }
}
