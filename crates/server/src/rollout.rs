//! Rollouts and true workload status: for one workload and its allocations, which
//! instances a scheduler pass starts and stops, and what the workload's status says.
//!
//! A pure function of the workload, its allocations and the time ([`plan`]); the
//! scheduler (`scheduler.rs`) reads, plans, commits. The rules are Kubernetes
//! Deployments' (`maxSurge`, `maxUnavailable`, `minReadySeconds`, progress deadline,
//! revision history, pause, undo) with Nomad's `autoRevert`:
//!
//! - What runs is the workload's template ([`api::WorkloadTemplate`]); its hash names the
//!   revision. A hash not yet in `status.history` is recorded first, in a pass that does
//!   nothing else for the workload, so that every allocation names a revision that is on
//!   record (the first revision of a new workload is recorded and placed at once).
//! - Instances are replica indices. An index holds at most one allocation per revision;
//!   the allocation of revision 1 is `{workload}-{index}`, later ones
//!   `{workload}-{index}-r{revision}`, so old and new coexist during a surge and the
//!   create-if-absent guard still places an instance once.
//! - Rolling: new instances start while the instances that exist stay within
//!   `replicas + maxSurge`; old ones stop while the available ones stay at or above
//!   `replicas - maxUnavailable` (unavailable old ones first). Recreate: every old
//!   instance stops, then new ones start.
//! - An instance is available once it runs, is healthy if it has a health check, and has
//!   been so for `minReadySeconds`.
//! - A rollout whose new instances fail (an allocation `failed`, or restarted
//!   [`CRASH_LOOP_RESTARTS`] times) or that makes no progress within its deadline stops:
//!   `Progressing=False` with the reason, and no further step until the spec changes;
//!   with `autoRevert` the spec returns to the last revision that was fully available.
//! - Jobs are not rolled out: each index runs once, at the revision current when it was
//!   placed.

use std::collections::BTreeMap;
use std::time::Duration;

use api::kinds::{
    Allocation, AllocationPhase, Condition, ConditionStatus, HealthState, Workload, WorkloadStatus,
    WorkloadType,
};
use api::rollout::{CHANGE_CAUSE_ANNOTATIONS, DEFAULT_REVISION_HISTORY};
use api::{UpdateStrategyType, WorkloadRevision, WorkloadTemplate};
use jiff::Timestamp;
use store::Revision;

/// Restarts of a new instance that count as a failing rollout (a crash loop).
pub const CRASH_LOOP_RESTARTS: u32 = 3;

/// Condition and reason names, as Kubernetes spells them where it has them.
pub mod reason {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const COMPLETE: &str = "Complete";
    pub const FAILED: &str = "Failed";
    pub const MINIMUM_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MINIMUM_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    pub const NEW_REVISION_AVAILABLE: &str = "NewRevisionAvailable";
    pub const ROLLING: &str = "RevisionUpdating";
    pub const PAUSED: &str = "RolloutPaused";
    pub const DEADLINE: &str = "ProgressDeadlineExceeded";
    pub const NEW_FAILED: &str = "NewInstancesFailed";
    pub const JOB_COMPLETE: &str = "Completed";
    pub const JOB_FAILED: &str = "InstancesFailed";
}

/// The name of the allocation of `index` at `revision`.
pub fn allocation_name(workload: &str, index: u32, revision: u32) -> String {
    if revision <= 1 {
        format!("{workload}-{index}")
    } else {
        format!("{workload}-{index}-r{revision}")
    }
}

/// One allocation of the workload, with its store revision.
#[derive(Clone, Copy)]
pub struct Instance<'a> {
    pub allocation: &'a Allocation,
    pub store_revision: Revision,
}

/// Why an allocation is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its index is at or beyond `replicas`.
    ScaledDown,
    /// It runs an old revision and the rollout replaces it.
    Replaced,
    /// A second allocation of the same index and revision.
    Duplicate,
}

/// What a pass does for one workload.
#[derive(Debug, Default)]
pub struct Plan {
    /// Indices to place, at `target`.
    pub place: Vec<u32>,
    /// Allocations to stop: (name, store revision, why).
    pub remove: Vec<(String, Revision, Removal)>,
    /// The revision new allocations run: (number, template hash).
    pub target: Option<(u32, String)>,
    /// The status to write (the scheduler adds the placement message).
    pub status: WorkloadStatus,
    /// With `autoRevert`, the revision to return the spec to (boxed: a pass holds a plan
    /// per workload, and a revision with its template is most of a plan's size).
    pub revert_to: Option<Box<WorkloadRevision>>,
    /// When the plan would change without any write (an instance becomes available, a
    /// deadline passes): the scheduler looks again by then.
    pub recheck_in: Option<Duration>,
    /// What happened, for events: (warning?, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
    /// Allocation names other than [`allocation_name`]'s, by index (a job's retries).
    pub names: BTreeMap<u32, String>,
}

/// Whether an allocation serves: running, and healthy if it has a health check.
pub fn is_ready(a: &Allocation) -> bool {
    let Some(st) = a.status.as_ref() else {
        return false;
    };
    let has_check = a.spec.task.as_ref().is_some_and(|t| t.health.is_some());
    st.phase == AllocationPhase::Running
        && (!has_check || st.health.as_ref().map(|h| h.state) == Some(HealthState::Healthy))
}

/// A workload's endpoints: its ready instances that have ports, meant to run, with the
/// address of their node (`address_of`, by node name), sorted by allocation name.
pub fn endpoints<'a>(
    instances: &[Instance<'a>],
    address_of: impl Fn(&str) -> Option<&'a str>,
) -> Vec<api::task::Endpoint> {
    let mut out: Vec<api::task::Endpoint> = instances
        .iter()
        .map(|i| i.allocation)
        .filter(|a| {
            !a.spec.ports.is_empty()
                && a.spec.desired_state == api::kinds::DesiredState::Run
                && is_ready(a)
        })
        .map(|a| api::task::Endpoint {
            allocation: a.metadata.name.clone(),
            node: a.spec.node.clone(),
            address: address_of(&a.spec.node).unwrap_or(&a.spec.node).to_owned(),
            ports: a.spec.ports.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.allocation.cmp(&b.allocation));
    out
}

/// Plans one pass for `w` given its allocations at `now`.
pub fn plan(w: &Workload, instances: &[Instance<'_>], now: Timestamp) -> Plan {
    let prev = w.status.clone().unwrap_or_default();
    let replicas = u32::try_from(w.spec.replicas.max(0)).unwrap_or(0);
    let template = WorkloadTemplate::of(&w.spec);
    let hash = template.hash();
    let mut plan = Plan::default();
    let mut status = WorkloadStatus {
        observed_generation: w.metadata.generation,
        desired_replicas: replicas,
        conditions: prev.conditions.clone(),
        current_revision: prev.current_revision,
        history: prev.history.clone(),
        ..WorkloadStatus::default()
    };

    // The revision of the spec as it is.
    let first = status.history.is_empty();
    let newest = status.history.iter().map(|r| r.revision).max().unwrap_or(0);
    let recorded_only = match status.history.iter().position(|r| r.template_hash == hash) {
        Some(i) if status.history[i].revision == newest => false,
        found => {
            // New, or an older template again (undo): it becomes the newest revision.
            if let Some(i) = found {
                status.history.remove(i);
            }
            status.history.push(WorkloadRevision {
                revision: newest + 1,
                template_hash: hash.clone(),
                created_at: Some(now.to_string()),
                change_cause: CHANGE_CAUSE_ANNOTATIONS
                    .iter()
                    .find_map(|a| w.metadata.annotations.get(*a).cloned()),
                template: Box::new(template),
            });
            trim_history(&mut status.history, &w.spec, prev.current_revision);
            if !first {
                plan.events.push((
                    false,
                    "RevisionRecorded",
                    format!("revision {} recorded; rolling out", newest + 1),
                ));
            }
            !first
        }
    };
    let target = status
        .history
        .last()
        .map(|r| r.revision)
        .expect("the spec's revision is recorded");
    status.update_revision = Some(target);
    if first {
        status.current_revision = Some(target);
    }
    // Allocations from before revisions were recorded run the first recorded one.
    let first_hash = status
        .history
        .first()
        .map(|r| r.template_hash.clone())
        .unwrap_or_default();
    let hash_of = |a: &Allocation| -> String {
        a.spec
            .template_hash
            .clone()
            .unwrap_or_else(|| first_hash.clone())
    };

    let strategy = w.spec.update_strategy();
    let min_ready = Duration::from_secs(u64::from(strategy.min_ready_seconds));
    let mut recheck: Option<Duration> = None;
    let mut soonest = |d: Duration| {
        recheck = Some(recheck.map_or(d, |r| r.min(d)));
    };

    // Classify every allocation.
    let mut seen: Vec<Seen<'_>> = Vec::with_capacity(instances.len());
    for i in instances {
        let a = i.allocation;
        let st = a.status.clone().unwrap_or_default();
        let live = !matches!(
            st.phase,
            AllocationPhase::Succeeded | AllocationPhase::Failed | AllocationPhase::Lost
        );
        let running = st.phase == AllocationPhase::Running;
        let has_check = a.spec.task.as_ref().is_some_and(|t| t.health.is_some());
        let healthy = st.health.as_ref().map(|h| h.state);
        let ready = is_ready(a);
        let mut available = false;
        if ready {
            let since = if has_check {
                st.conditions
                    .iter()
                    .find(|c| c.type_ == "Healthy")
                    .and_then(|c| c.last_transition_time.as_deref())
                    .or(st.started_at.as_deref())
            } else {
                st.started_at.as_deref()
            };
            let since = since.and_then(|s| s.parse::<Timestamp>().ok());
            let ran = since
                .map(|s| now.duration_since(s))
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::ZERO);
            if ran >= min_ready {
                available = true;
            } else {
                soonest(min_ready - ran);
            }
        }
        let new = hash_of(a) == hash;
        let failing = match st.phase {
            AllocationPhase::Failed => Some(format!(
                "{} failed{}",
                a.metadata.name,
                st.exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default()
            )),
            _ if live && st.restarts >= CRASH_LOOP_RESTARTS => Some(format!(
                "{} restarted {} times{}",
                a.metadata.name,
                st.restarts,
                st.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            _ if live && healthy == Some(HealthState::Unhealthy) => {
                Some(format!("{} is unhealthy", a.metadata.name))
            }
            _ => None,
        };
        if running {
            status.running_replicas += 1;
        }
        if ready {
            status.ready_replicas += 1;
        }
        if available {
            status.available_replicas += 1;
        }
        match st.phase {
            AllocationPhase::Succeeded => status.succeeded_replicas += 1,
            AllocationPhase::Failed => status.failed_replicas += 1,
            _ => {}
        }
        if live {
            status.replicas += 1;
            if new {
                status.updated_replicas += 1;
            }
        }
        seen.push(Seen {
            name: a.metadata.name.as_str(),
            rev: i.store_revision,
            index: a.spec.replica,
            new,
            live,
            available,
            ready,
            failing,
            phase: st.phase,
        });
    }
    status.placed_replicas = {
        let mut indices: Vec<u32> = seen
            .iter()
            .filter(|s| s.index < replicas)
            .map(|s| s.index)
            .collect();
        indices.sort_unstable();
        indices.dedup();
        u32::try_from(indices.len()).unwrap_or(u32::MAX)
    };

    // Beyond the count: stopped. Two allocations of one index and revision: one stays.
    let mut by_index: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, s) in seen.iter().enumerate() {
        if s.index >= replicas {
            plan.remove
                .push((s.name.to_owned(), s.rev, Removal::ScaledDown));
        } else {
            by_index.entry(s.index).or_default().push(i);
        }
    }
    for members in by_index.values() {
        let news: Vec<usize> = members.iter().copied().filter(|&i| seen[i].new).collect();
        for &dup in news.iter().skip(1) {
            if seen[dup].live {
                plan.remove
                    .push((seen[dup].name.to_owned(), seen[dup].rev, Removal::Duplicate));
            }
        }
    }
    let missing: Vec<u32> = (0..replicas)
        .filter(|i| !by_index.contains_key(i))
        .collect();

    if w.spec.type_ == WorkloadType::Job {
        plan.target = Some((target, hash));
        plan_job(
            w,
            &seen,
            replicas,
            recorded_only,
            now,
            &mut status,
            &mut plan,
        );
        if let Some(d) = plan.recheck_in {
            soonest(d);
        }
        plan.status = status;
        plan.recheck_in = recheck;
        return plan;
    }

    // Rollout state.
    let old_live = seen.iter().filter(|s| s.live && !s.new).count();
    let new_failing: Option<String> = seen
        .iter()
        .filter(|s| s.new && s.index < replicas)
        .find_map(|s| s.failing.clone());
    let complete = old_live == 0
        && status.replicas == replicas
        && status.updated_replicas >= replicas
        && status.available_replicas >= replicas
        && missing.is_empty();
    let prev_progressing = prev.condition(reason::PROGRESSING).cloned();
    let stopped_before = prev_progressing.as_ref().is_some_and(|c| {
        c.status == ConditionStatus::False
            && prev.update_revision == Some(target)
            && matches!(
                c.reason.as_deref(),
                Some(reason::DEADLINE | reason::NEW_FAILED)
            )
    });
    let (surge, unavailable) = strategy.limits(replicas);
    let rolling = !complete && !recorded_only;
    let progressed = status.updated_replicas != prev.updated_replicas
        || status.available_replicas != prev.available_replicas
        || prev.update_revision != Some(target);
    let last_progress = prev_progressing
        .as_ref()
        .and_then(|c| c.last_update_time.as_deref())
        .and_then(|t| t.parse::<Timestamp>().ok());
    let deadline = strategy.progress_deadline();
    let mut stop: Option<(&'static str, String)> = None;
    if rolling && !stopped_before && !w.spec.paused {
        if let Some(why) = &new_failing {
            stop = Some((
                reason::NEW_FAILED,
                format!("revision {target} stopped: {why}"),
            ));
        } else if !progressed && let Some(since) = last_progress {
            let idle = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
            if idle > deadline {
                stop = Some((
                    reason::DEADLINE,
                    format!(
                        "revision {target} made no progress for {}",
                        api::Duration(deadline)
                    ),
                ));
            } else {
                soonest(deadline - idle + Duration::from_secs(1));
            }
        } else {
            soonest(deadline + Duration::from_secs(1));
        }
    }
    let stopped = stopped_before || stop.is_some();

    // Steps.
    if !recorded_only {
        plan.place.clone_from(&missing);
        // Finished instances of an old revision hold nothing and tell nothing new.
        for s in &seen {
            if !s.live && !s.new && s.index < replicas {
                plan.remove
                    .push((s.name.to_owned(), s.rev, Removal::Replaced));
            }
        }
    }
    if rolling && !stopped && !w.spec.paused {
        let strategy_type = strategy.strategy_for(w.spec.type_);
        let olds: Vec<usize> = (0..seen.len())
            .filter(|&i| seen[i].live && !seen[i].new && seen[i].index < replicas)
            .collect();
        match strategy_type {
            UpdateStrategyType::Recreate => {
                for &i in &olds {
                    plan.remove
                        .push((seen[i].name.to_owned(), seen[i].rev, Removal::Replaced));
                }
                // New instances start once every old one is gone (the next pass).
                if !olds.is_empty() {
                    plan.place.clear();
                }
            }
            UpdateStrategyType::Rolling => {
                let total = seen.iter().filter(|s| s.live && s.index < replicas).count() as u64;
                let has_new = |index: u32| {
                    by_index
                        .get(&index)
                        .is_some_and(|m| m.iter().any(|&i| seen[i].new && seen[i].live))
                };
                // Up: replacements for old instances, within the surge.
                let room = (u64::from(replicas) + u64::from(surge))
                    .saturating_sub(total + missing.len() as u64);
                let mut wanting: Vec<u32> = olds
                    .iter()
                    .map(|&i| seen[i].index)
                    .filter(|&index| !has_new(index))
                    .collect();
                wanting.sort_unstable();
                wanting.dedup();
                plan.place
                    .extend(wanting.iter().take(usize::try_from(room).unwrap_or(0)));
                // Down: old instances, keeping availability at replicas - maxUnavailable.
                let floor = u64::from(replicas.saturating_sub(unavailable));
                let mut budget = u64::from(status.available_replicas).saturating_sub(floor);
                let mut order = olds;
                // Unavailable first (free), then those whose replacement is available,
                // then the highest indices.
                let replacement_ready = |index: u32| {
                    by_index
                        .get(&index)
                        .is_some_and(|m| m.iter().any(|&i| seen[i].new && seen[i].available))
                };
                order.sort_by_key(|&i| {
                    (
                        seen[i].available,
                        !replacement_ready(seen[i].index),
                        std::cmp::Reverse(seen[i].index),
                    )
                });
                for i in order {
                    if seen[i].available {
                        if budget == 0 {
                            break;
                        }
                        budget -= 1;
                    }
                    plan.remove
                        .push((seen[i].name.to_owned(), seen[i].rev, Removal::Replaced));
                }
            }
        }
    }

    // The status says what holds once this pass's stops are done (a stopped instance is
    // gone the moment its allocation is deleted), so it never claims more availability
    // than there is.
    for (name, _, _) in &plan.remove {
        let Some(s) = seen.iter().find(|s| s.name == name) else {
            continue;
        };
        if !s.live {
            continue;
        }
        status.replicas -= 1;
        if s.new {
            status.updated_replicas -= 1;
        }
        if s.phase == AllocationPhase::Running {
            status.running_replicas -= 1;
        }
        if s.ready {
            status.ready_replicas -= 1;
        }
        if s.available {
            status.available_replicas -= 1;
        }
    }

    // Conditions.
    let floor = replicas.saturating_sub(unavailable);
    set_condition(
        &mut status.conditions,
        reason::AVAILABLE,
        if status.available_replicas >= floor {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        if status.available_replicas >= floor {
            reason::MINIMUM_AVAILABLE
        } else {
            reason::MINIMUM_UNAVAILABLE
        },
        format!(
            "{} of {replicas} instances available (at least {floor} wanted)",
            status.available_replicas
        ),
        now,
        false,
    );
    let (state, why, message) = if complete {
        (
            ConditionStatus::True,
            reason::NEW_REVISION_AVAILABLE,
            format!("revision {target} is available on all {replicas} instances"),
        )
    } else if let Some((why, message)) = &stop {
        (ConditionStatus::False, *why, message.clone())
    } else if stopped_before {
        let c = prev_progressing.clone().expect("stopped before");
        (
            ConditionStatus::False,
            if c.reason.as_deref() == Some(reason::DEADLINE) {
                reason::DEADLINE
            } else {
                reason::NEW_FAILED
            },
            c.message.unwrap_or_default(),
        )
    } else if w.spec.paused {
        (
            ConditionStatus::Unknown,
            reason::PAUSED,
            format!(
                "paused: {} of {replicas} instances run revision {target}; meridian rollout resume goes on",
                status.updated_replicas
            ),
        )
    } else {
        (
            ConditionStatus::True,
            reason::ROLLING,
            format!(
                "rolling out revision {target}: {} of {replicas} instances updated, {} available",
                status.updated_replicas, status.available_replicas
            ),
        )
    };
    set_condition(
        &mut status.conditions,
        reason::PROGRESSING,
        state,
        why,
        message,
        now,
        progressed || stop.is_some() || prev_progressing.is_none(),
    );
    if complete {
        if prev.current_revision != Some(target) && !first {
            plan.events.push((
                false,
                "RolloutComplete",
                format!("revision {target} is available on all {replicas} instances"),
            ));
        }
        status.current_revision = Some(target);
    }
    if let Some((why, message)) = &stop {
        plan.events.push((true, why, message.clone()));
        if strategy.auto_revert
            && let Some(good) = status.current_revision.filter(|&c| c != target)
            && let Some(entry) = status.history.iter().find(|r| r.revision == good)
        {
            plan.events.push((
                true,
                "RollingBack",
                format!("autoRevert: returning to revision {good}"),
            ));
            plan.revert_to = Some(Box::new(entry.clone()));
        }
    }
    if rolling && !stopped && !w.spec.paused && (!plan.place.is_empty() || !plan.remove.is_empty())
    {
        let replaced = plan
            .remove
            .iter()
            .filter(|(_, _, r)| *r == Removal::Replaced)
            .count();
        if replaced > 0 || plan.place.len() > missing.len() {
            plan.events.push((
                false,
                "RolloutStep",
                format!(
                    "revision {target}: starting {} and stopping {replaced} instances ({} of {replicas} updated, {} available)",
                    plan.place.len(),
                    status.updated_replicas,
                    status.available_replicas
                ),
            ));
        }
    }
    plan.target = Some((target, hash));
    plan.status = status;
    plan.recheck_in = recheck;
    plan
}

/// One allocation of the workload, classified for the plan.
struct Seen<'a> {
    name: &'a str,
    rev: Revision,
    index: u32,
    /// Runs the spec's revision.
    new: bool,
    /// Not finished (succeeded, failed or lost).
    live: bool,
    available: bool,
    ready: bool,
    /// Why it counts as a failing instance of its revision.
    failing: Option<String>,
    phase: AllocationPhase,
}

/// Jobs: every index runs until it succeeds once, at most `parallelism` at a time; a
/// failed index is placed again (`{name}-retry{n}`) while the failures stay within
/// `backoffLimit`, beyond which, or past `activeDeadline`, the job fails and its running
/// instances stop. Without `backoffLimit` a failed index stays failed and the others go
/// on.
fn plan_job(
    w: &Workload,
    seen: &[Seen<'_>],
    replicas: u32,
    recorded_only: bool,
    now: Timestamp,
    status: &mut WorkloadStatus,
    plan: &mut Plan,
) {
    let prev = w.status.clone().unwrap_or_default();
    status.start_time = prev.start_time.clone();
    for s in seen.iter().filter(|s| s.index >= replicas) {
        plan.remove
            .push((s.name.to_owned(), s.rev, Removal::ScaledDown));
    }
    let in_range = || seen.iter().filter(|s| s.index < replicas);
    let failures = u32::try_from(
        in_range()
            .filter(|s| s.phase == AllocationPhase::Failed)
            .count(),
    )
    .unwrap_or(u32::MAX);
    let mut stop: Option<(&'static str, String)> = None;
    if let Some(limit) = w.spec.backoff_limit
        && failures > limit
    {
        stop = Some((
            "BackoffLimitExceeded",
            format!("{failures} instances failed, more than backoffLimit {limit}"),
        ));
    }
    let started = status
        .start_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    if let (Some(limit), Some(started)) = (
        w.spec
            .active_deadline
            .as_deref()
            .and_then(|d| api::duration::parse(d).ok()),
        started,
    ) {
        let ran = Duration::try_from(now.duration_since(started)).unwrap_or(Duration::ZERO);
        if ran >= limit {
            stop.get_or_insert((
                "DeadlineExceeded",
                format!(
                    "the job ran longer than activeDeadline {}",
                    api::Duration(limit)
                ),
            ));
        } else if status.succeeded_replicas < replicas {
            plan.recheck_in = Some(limit - ran);
        }
    }
    let complete = replicas > 0 && status.succeeded_replicas >= replicas;
    if let Some((why, message)) = &stop {
        if !complete {
            for s in in_range().filter(|s| s.live) {
                plan.remove
                    .push((s.name.to_owned(), s.rev, Removal::Replaced));
            }
            if prev
                .condition(reason::FAILED)
                .is_none_or(|c| c.status != ConditionStatus::True)
            {
                plan.events.push((true, why, message.clone()));
            }
            set_condition(
                &mut status.conditions,
                reason::FAILED,
                ConditionStatus::True,
                why,
                message.clone(),
                now,
                false,
            );
        }
    } else if !recorded_only && !complete {
        let live = in_range().filter(|s| s.live).count();
        let parallelism = w.spec.parallelism.unwrap_or(replicas).max(1) as usize;
        let mut room = parallelism.saturating_sub(live);
        let retry = w.spec.backoff_limit.is_some();
        let target = plan.target.as_ref().map_or(1, |t| t.0);
        for index in 0..replicas {
            if room == 0 {
                break;
            }
            let mine: Vec<&Seen<'_>> = in_range().filter(|s| s.index == index).collect();
            let settled = mine
                .iter()
                .any(|s| s.live || s.phase != AllocationPhase::Failed);
            let failed = mine.len();
            if settled || (failed > 0 && !retry) {
                continue;
            }
            if failed > 0 {
                plan.names.insert(
                    index,
                    format!(
                        "{}-retry{failed}",
                        allocation_name(&w.metadata.name, index, target)
                    ),
                );
            }
            plan.place.push(index);
            room -= 1;
        }
        if !plan.place.is_empty() && status.start_time.is_none() {
            status.start_time = Some(now.to_string());
        }
    }
    job_conditions(status, replicas, w.spec.backoff_limit.is_none(), now);
}

/// Jobs: `Complete` when every index succeeded, `Failed` when one failed for good.
fn job_conditions(status: &mut WorkloadStatus, replicas: u32, fail_on_any: bool, now: Timestamp) {
    if replicas > 0 && status.succeeded_replicas >= replicas {
        set_condition(
            &mut status.conditions,
            reason::COMPLETE,
            ConditionStatus::True,
            reason::JOB_COMPLETE,
            format!("{replicas} of {replicas} instances succeeded"),
            now,
            false,
        );
    }
    if fail_on_any && status.failed_replicas > 0 && status.condition(reason::FAILED).is_none() {
        set_condition(
            &mut status.conditions,
            reason::FAILED,
            ConditionStatus::True,
            reason::JOB_FAILED,
            format!("{} of {replicas} instances failed", status.failed_replicas),
            now,
            false,
        );
    }
}

/// Keeps the newest `revisionHistoryLimit` revisions (and always the current one).
fn trim_history(
    history: &mut Vec<WorkloadRevision>,
    spec: &api::kinds::WorkloadSpec,
    current: Option<u32>,
) {
    let limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY)
        .max(1) as usize;
    while history.len() > limit {
        let Some(i) = history
            .iter()
            .position(|r| Some(r.revision) != current)
            .filter(|&i| i + 1 < history.len())
        else {
            break;
        };
        history.remove(i);
    }
}

/// Sets a condition; its transition time moves only when its status does, its update
/// time when `touched` or on a transition.
pub(crate) fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: Timestamp,
    touched: bool,
) {
    let now = now.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now.clone());
                c.last_update_time = Some(now);
            } else if touched || c.last_update_time.is_none() {
                c.last_update_time = Some(now);
            }
            c.status = status;
            c.reason = Some(reason.to_owned());
            c.message = Some(message);
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_transition_time: Some(now.clone()),
            last_update_time: Some(now),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn workload(replicas: i32, command: &str, update: serde_json::Value) -> Workload {
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": {"type": "service", "replicas": replicas, "update": update,
                     "task": {"driver": "exec", "command": [command],
                              "resources": {"cpu": "100m", "memory": "64Mi"}}}
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-12-06T10:00:00Z".parse().unwrap()
    }

    fn alloc(w: &Workload, index: u32, revision: u32, phase: &str) -> Allocation {
        let hash = w
            .status
            .as_ref()
            .and_then(|s| s.history.iter().find(|r| r.revision == revision))
            .map(|r| r.template_hash.clone());
        serde_json::from_value(json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": allocation_name("web", index, revision), "namespace": "default"},
            "spec": {"workload": "web", "replica": index, "node": "n1",
                     "resources": {"cpu": "100m", "memory": "64Mi"},
                     "revision": revision, "templateHash": hash},
            "status": {"phase": phase, "startedAt": "2026-12-06T09:00:00Z"}
        }))
        .unwrap()
    }

    /// Runs passes of a simulated estate where placed instances start at once, until the
    /// plan is quiet; returns the least availability seen.
    fn settle(w: &mut Workload, allocs: &mut Vec<Allocation>) -> u32 {
        let mut least = u32::MAX;
        for _ in 0..100 {
            let instances: Vec<Instance<'_>> = allocs
                .iter()
                .map(|a| Instance {
                    allocation: a,
                    store_revision: 1,
                })
                .collect();
            let p = plan(w, &instances, now());
            least = least.min(p.status.available_replicas);
            let changed = w.status.as_ref() != Some(&p.status);
            w.status = Some(p.status.clone());
            if p.place.is_empty() && p.remove.is_empty() && p.revert_to.is_none() && !changed {
                return least;
            }
            let removed: Vec<String> = p.remove.iter().map(|(n, _, _)| n.clone()).collect();
            allocs.retain(|a| !removed.contains(&a.metadata.name));
            let (target, _) = p.target.clone().unwrap();
            for index in p.place {
                allocs.push(alloc(w, index, target, "running"));
            }
        }
        panic!("no steady state after 100 passes");
    }

    #[test]
    fn a_changed_command_rolls_out_within_the_limits() {
        let mut w = workload(8, "/bin/v1", json!({"maxSurge": 2, "maxUnavailable": 1}));
        let mut allocs = Vec::new();
        settle(&mut w, &mut allocs);
        assert_eq!(allocs.len(), 8);
        assert_eq!(w.status.as_ref().unwrap().current_revision, Some(1));
        w.spec.task.command = vec!["/bin/v2".into()];
        let least = settle(&mut w, &mut allocs);
        assert!(least >= 7, "availability fell to {least}");
        let s = w.status.as_ref().unwrap();
        assert_eq!(
            (s.updated_replicas, s.available_replicas),
            (8, 8),
            "{s:#?}\n{allocs:#?}"
        );
        assert_eq!(s.current_revision, Some(2));
        assert!(allocs.iter().all(|a| a.spec.revision == Some(2)));
        assert!(allocs.iter().all(|a| a.metadata.name.ends_with("-r2")));
        let progressing = s.condition(reason::PROGRESSING).unwrap();
        assert_eq!(
            progressing.reason.as_deref(),
            Some(reason::NEW_REVISION_AVAILABLE)
        );
    }

    #[test]
    fn scaling_rolls_nothing_out() {
        let mut w = workload(2, "/bin/v1", json!(null));
        let mut allocs = Vec::new();
        settle(&mut w, &mut allocs);
        w.spec.replicas = 4;
        settle(&mut w, &mut allocs);
        assert_eq!(allocs.len(), 4);
        assert!(allocs.iter().all(|a| a.spec.revision == Some(1)));
        assert_eq!(w.status.as_ref().unwrap().history.len(), 1);
    }

    #[test]
    fn surge_zero_stops_one_before_starting_one() {
        let mut w = workload(3, "/bin/v1", json!({"maxSurge": 0, "maxUnavailable": 1}));
        let mut allocs = Vec::new();
        settle(&mut w, &mut allocs);
        w.spec.task.command = vec!["/bin/v2".into()];
        // The recording pass does nothing else.
        let instances: Vec<Instance<'_>> = allocs
            .iter()
            .map(|a| Instance {
                allocation: a,
                store_revision: 1,
            })
            .collect();
        let p = plan(&w, &instances, now());
        assert!(p.place.is_empty() && p.remove.is_empty());
        assert_eq!(p.status.update_revision, Some(2));
        w.status = Some(p.status);
        let least = settle(&mut w, &mut allocs);
        assert_eq!(least, 2);
        assert_eq!(allocs.len(), 3);
    }

    #[test]
    fn failing_new_instances_stop_the_rollout_and_auto_revert() {
        let mut w = workload(4, "/bin/v1", json!({"autoRevert": true}));
        let mut allocs = Vec::new();
        settle(&mut w, &mut allocs);
        w.spec.task.command = vec!["/bin/broken".into()];
        let mut revert = None;
        for _ in 0..10 {
            let instances: Vec<Instance<'_>> = allocs
                .iter()
                .map(|a| Instance {
                    allocation: a,
                    store_revision: 1,
                })
                .collect();
            let p = plan(&w, &instances, now());
            w.status = Some(p.status.clone());
            if p.revert_to.is_some() {
                revert = p.revert_to;
                break;
            }
            let removed: Vec<String> = p.remove.iter().map(|(n, _, _)| n.clone()).collect();
            allocs.retain(|a| !removed.contains(&a.metadata.name));
            for index in p.place {
                allocs.push(alloc(&w, index, 2, "failed"));
            }
        }
        let revert = revert.expect("the rollout reverts");
        assert_eq!(revert.revision, 1);
        let s = w.status.as_ref().unwrap();
        let c = s.condition(reason::PROGRESSING).unwrap();
        assert_eq!(c.status, ConditionStatus::False);
        assert_eq!(c.reason.as_deref(), Some(reason::NEW_FAILED));
        // Old instances still serve: never below replicas - maxUnavailable (4 - 1).
        let old = allocs.iter().filter(|a| a.spec.revision == Some(1)).count();
        assert!(old >= 3, "{old} old instances left");
        // Back to the old template: it becomes revision 3 and the old instances match.
        revert.template.apply_to(&mut w.spec);
        let least = settle(&mut w, &mut allocs);
        assert!(least >= 3);
        let s = w.status.as_ref().unwrap();
        assert_eq!(s.update_revision, Some(3));
        assert_eq!(
            s.history.iter().map(|r| r.revision).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(allocs.len(), 4);
    }

    #[test]
    fn min_ready_seconds_holds_instances_back_and_asks_for_a_recheck() {
        let w = workload(1, "/bin/v1", json!({"minReadySeconds": 30}));
        let mut a = alloc(&w, 0, 1, "running");
        a.status.as_mut().unwrap().started_at = Some("2026-12-06T09:59:50Z".into());
        let p = plan(
            &w,
            &[Instance {
                allocation: &a,
                store_revision: 1,
            }],
            now(),
        );
        assert_eq!(p.status.ready_replicas, 1);
        assert_eq!(p.status.available_replicas, 0);
        assert_eq!(p.recheck_in, Some(Duration::from_secs(20)));
    }

    #[test]
    fn a_stalled_rollout_stops_at_its_deadline() {
        let mut w = workload(2, "/bin/v1", json!({"progressDeadline": "1m"}));
        let mut allocs = Vec::new();
        settle(&mut w, &mut allocs);
        w.spec.task.command = vec!["/bin/v2".into()];
        let inst = |allocs: &[Allocation]| -> Vec<Allocation> { allocs.to_vec() };
        let snapshot = inst(&allocs);
        let instances: Vec<Instance<'_>> = snapshot
            .iter()
            .map(|a| Instance {
                allocation: a,
                store_revision: 1,
            })
            .collect();
        let p = plan(&w, &instances, now());
        w.status = Some(p.status);
        let p = plan(&w, &instances, now());
        w.status = Some(p.status);
        // Nothing starts (the new instance stays pending): two minutes later it stops.
        let later: Timestamp = "2026-12-06T10:02:00Z".parse().unwrap();
        let p = plan(&w, &instances, later);
        let c = p.status.condition(reason::PROGRESSING).unwrap();
        assert_eq!(c.reason.as_deref(), Some(reason::DEADLINE), "{c:?}");
        assert!(p.place.is_empty() && p.remove.is_empty());
    }
}
