//! Queues (issue 16, part 2): nominal quota, cohorts with borrowing and lending limits,
//! strict and best-effort FIFO, priorities, fair sharing by weighted dominant share,
//! gangs admitted whole, and the typed reasons a job waits for.

mod common;

use std::sync::Arc;

use api::queue::{Queue, QueueReason};
use api::{Node, Project, Site, Workload};
use common::{merge, node, site, workload};
use placement::{Batch, Decision, Fleet, Options, Queues, ReasonCode, place_batch};
use serde_json::{Value, json};

fn sites() -> Vec<Site> {
    vec![site("fra", "DE", json!({}))]
}

/// `n` nodes with 8 H100s, 64 cores and 512Gi each.
fn gpu_nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            node(
                &format!("g{i}"),
                "fra",
                json!({"spec": {"capacity": {"cpu": 64, "memory": "512Gi",
                    "gpus": [{"model": "H100", "memory": "80Gi", "count": 8}]}}}),
            )
        })
        .collect()
}

fn queue(name: &str, spec: Value) -> Queue {
    serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Queue",
        "metadata": {"name": name},
        "spec": spec
    }))
    .expect("queue")
}

/// A job of `replicas` instances of 1 core, 1Gi and `gpus` H100s (any model when
/// `model` is false), in `queue`, created at second `created` of the day.
fn job(name: &str, queue: &str, priority: i32, replicas: u32, gpus: u32, created: u32) -> Workload {
    let mut w = workload(
        name,
        json!({"metadata": {"namespace": "research",
                            "creationTimestamp": format!("2026-12-06T10:{:02}:{:02}Z", created / 60, created % 60)},
               "spec": {"type": "job", "replicas": replicas, "priority": priority,
                        "queue": queue,
                        "task": {"resources": {"cpu": 1, "memory": "1Gi",
                                               "gpu": {"count": gpus, "model": "H100"}}}}}),
    );
    if gpus == 0 {
        let mut v = serde_json::to_value(&w).expect("json");
        v["spec"]["task"]["resources"]
            .as_object_mut()
            .expect("resources")
            .remove("gpu");
        w = serde_json::from_value(v).expect("workload");
    }
    w
}

fn gang(mut w: Workload) -> Workload {
    w.spec.gang = Some(w.spec.replicas as u32);
    w
}

/// Places every replica of `workloads` through `queues`.
fn place_queued(
    fleet: &mut Fleet,
    queues: &[Queue],
    projects: &[Project],
    workloads: &[Workload],
) -> Vec<Decision> {
    place_known(fleet, queues, projects, workloads, workloads)
}

/// [`place_queued`] where `known` are every job the queues account for (those placed
/// by earlier batches too).
fn place_known(
    fleet: &mut Fleet,
    queues: &[Queue],
    projects: &[Project],
    known: &[Workload],
    workloads: &[Workload],
) -> Vec<Decision> {
    let mut q = Queues::new(queues);
    for w in known {
        if let Some(name) = &w.spec.queue {
            q.assign("research", &w.metadata.name, name);
        }
    }
    let mut batch = Batch::new();
    batch.set_queues(Arc::new(q));
    for w in workloads {
        let n = w.spec.replicas as u32;
        match projects.first() {
            Some(p) => batch.add_in_project(w, p, 0..n).expect("add"),
            None => batch.add(w, 0..n).expect("add"),
        }
    }
    let decisions = place_batch(fleet, &batch, &Options::default());
    for d in &decisions {
        let x = d.explanation();
        let sum: u32 = x.rejections.iter().map(|r| r.nodes).sum();
        assert_eq!(sum + x.passed, x.nodes, "counts add up: {}", x.render());
    }
    decisions
}

fn placed(decisions: &[Decision], name: &str) -> usize {
    decisions
        .iter()
        .filter(|d| d.workload.name == name && d.is_placed())
        .count()
}

/// The typed queue reason of `name`'s first waiting instance.
fn reason(decisions: &[Decision], name: &str) -> Option<(QueueReason, String)> {
    decisions
        .iter()
        .find(|d| d.workload.name == name && !d.is_placed())
        .and_then(|d| d.explanation().queue.clone())
        .map(|w| (w.reason, w.message))
}

#[test]
fn a_queue_admits_jobs_within_its_nominal_quota_and_the_rest_wait() {
    let nodes = gpu_nodes(4);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue(
        "train",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
    );
    let jobs = [
        job("a", "train", 0, 1, 4, 1),
        job("b", "train", 0, 1, 4, 2),
        job("c", "train", 0, 1, 4, 3),
    ];
    let d = place_queued(&mut fleet, &[q], &[], &jobs);
    assert_eq!(
        (placed(&d, "a"), placed(&d, "b"), placed(&d, "c")),
        (1, 1, 0)
    );
    let (why, message) = reason(&d, "c").expect("c waits in its queue");
    assert_eq!(why, QueueReason::OverNominalQuota);
    assert!(
        message.contains("queue train over its nominal H100 gpus quota: 8 used + 4 requested > 8"),
        "{message}"
    );
    let e = d[2].explanation();
    assert_eq!(e.rejections[0].reason, ReasonCode::Queue);
    assert!(
        e.summary.starts_with("waiting in queue train:"),
        "{}",
        e.summary
    );
}

#[test]
fn within_a_queue_higher_priority_goes_first_then_the_older_job() {
    let nodes = gpu_nodes(4);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue(
        "train",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
    );
    let jobs = [
        job("old", "train", 0, 1, 4, 1),
        job("new", "train", 0, 1, 4, 9),
        job("urgent", "train", 50, 1, 4, 30),
    ];
    let d = place_queued(&mut fleet, &[q], &[], &jobs);
    assert_eq!(placed(&d, "urgent"), 1);
    assert_eq!(placed(&d, "old"), 1);
    assert_eq!(
        placed(&d, "new"),
        0,
        "the newest job of equal priority waits"
    );
}

#[test]
fn queues_of_a_cohort_borrow_what_others_do_not_use_within_their_limits() {
    let nodes = gpu_nodes(4);
    let queues = [
        queue(
            "a",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
        ),
        queue(
            "b",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8, "lendingLimit": 4}}}}),
        ),
    ];
    // b is idle: a may use its 8 and the 4 b lends, not b's other 4.
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let jobs: Vec<Workload> = (0..4)
        .map(|i| job(&format!("a{i}"), "a", 0, 1, 4, i))
        .collect();
    let d = place_queued(&mut fleet, &queues, &[], &jobs);
    let admitted: usize = (0..4).map(|i| placed(&d, &format!("a{i}"))).sum();
    assert_eq!(admitted, 3, "8 nominal + 4 borrowed = 12 GPUs = three jobs");
    let (why, message) = reason(&d, "a3").expect("a3 waits");
    assert_eq!(why, QueueReason::WaitingForBorrowableQuota);
    assert!(message.contains("cohort lab"), "{message}");

    // A borrowing limit bounds it further.
    let limited = [
        queue(
            "a",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8, "borrowingLimit": 2}}}}),
        ),
        queue(
            "b",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
        ),
    ];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_queued(&mut fleet, &limited, &[], &jobs);
    let admitted: usize = (0..4).map(|i| placed(&d, &format!("a{i}"))).sum();
    assert_eq!(admitted, 2, "8 nominal + at most 2 borrowed: two jobs of 4");
    let (why, message) = reason(&d, "a2").expect("a2 waits");
    assert_eq!(why, QueueReason::OverBorrowingLimit);
    assert!(
        message.contains("may borrow at most 2 H100 gpus"),
        "{message}"
    );
}

#[test]
fn a_lender_whose_quota_is_borrowed_waits_for_it_without_reclaim() {
    let nodes = gpu_nodes(4);
    let queues = [
        queue(
            "a",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
        ),
        queue(
            "b",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
        ),
    ];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let first: Vec<Workload> = (0..4)
        .map(|i| job(&format!("a{i}"), "a", 0, 1, 4, i))
        .collect();
    let d = place_queued(&mut fleet, &queues, &[], &first);
    assert_eq!(
        d.iter().filter(|d| d.is_placed()).count(),
        4,
        "a borrows all of b's"
    );
    // b's own job now waits: its nominal quota is lent out.
    let mut all = first.clone();
    all.push(job("b0", "b", 0, 1, 4, 10));
    let d = place_known(
        &mut fleet,
        &queues,
        &[],
        &all,
        &[job("b0", "b", 0, 1, 4, 10)],
    );
    assert_eq!(placed(&d, "b0"), 0);
    let (why, message) = reason(&d, "b0").expect("b0 waits");
    assert_eq!(why, QueueReason::WaitingForBorrowableQuota);
    assert!(
        message.contains("lent to other queues of cohort lab"),
        "{message}"
    );
}

#[test]
fn strict_fifo_holds_the_jobs_behind_its_head_best_effort_lets_them_try() {
    let nodes = gpu_nodes(2);
    for (strategy, small_runs) in [("StrictFIFO", false), ("BestEffortFIFO", true)] {
        let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
        let q = queue(
            "train",
            json!({"strategy": strategy, "quota": {"gpusByModel": {"H100": {"nominal": 64}}}}),
        );
        // The head needs 24 GPUs in a gang; the estate has 16.
        let jobs = [
            gang(job("big", "train", 0, 3, 8, 1)),
            job("small", "train", 0, 1, 2, 2),
        ];
        let d = place_queued(&mut fleet, &[q], &[], &jobs);
        assert_eq!(placed(&d, "big"), 0, "{strategy}");
        assert_eq!(placed(&d, "small") == 1, small_runs, "{strategy}");
        if !small_runs {
            let (why, message) = reason(&d, "small").expect("small waits");
            assert_eq!(why, QueueReason::BehindQueueHead);
            assert!(message.contains("head research/big"), "{message}");
        }
        let (why, _) = reason(&d, "big").expect("big waits");
        assert_eq!(why, QueueReason::NoCapacity, "{strategy}");
    }
}

#[test]
fn a_gang_is_admitted_only_when_all_its_members_fit_the_queue() {
    let nodes = gpu_nodes(4);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue(
        "train",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 12}}}}),
    );
    let d = place_queued(
        &mut fleet,
        &[q],
        &[],
        &[gang(job("g", "train", 0, 4, 4, 1))],
    );
    assert_eq!(placed(&d, "g"), 0, "16 GPUs > 12: no member is placed");
    let (why, _) = reason(&d, "g").expect("waits");
    assert_eq!(why, QueueReason::OverNominalQuota);
    assert_eq!(fleet.free("g0").expect("node").gpus[0].1, 8, "nothing held");
}

#[test]
fn a_job_of_several_instances_is_admitted_whole() {
    let nodes = gpu_nodes(4);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue("cpu", json!({"quota": {"cpu": {"nominal": "10"}}}));
    let d = place_queued(&mut fleet, &[q], &[], &[job("shards", "cpu", 0, 12, 0, 1)]);
    assert_eq!(
        placed(&d, "shards"),
        0,
        "12 cores > 10: none of the 12 instances runs"
    );
}

#[test]
fn fair_sharing_splits_what_the_cohort_lends_by_weight() {
    // Queue `idle` lends 16 GPUs; `a` (weight 1) and `b` (weight 3) each want all of it.
    let nodes = gpu_nodes(3);
    let queues = [
        queue(
            "idle",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 16}}}}),
        ),
        queue(
            "a",
            json!({"cohort": "lab", "weight": 1, "quota": {"gpusByModel": {"H100": {"nominal": 4}}}}),
        ),
        queue(
            "b",
            json!({"cohort": "lab", "weight": 3, "quota": {"gpusByModel": {"H100": {"nominal": 4}}}}),
        ),
    ];
    let mut jobs = Vec::new();
    for i in 0..12 {
        jobs.push(job(&format!("a{i:02}"), "a", 0, 1, 2, i));
        jobs.push(job(&format!("b{i:02}"), "b", 0, 1, 2, i));
    }
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_queued(&mut fleet, &queues, &[], &jobs);
    let gpus = |prefix: &str| -> usize {
        d.iter()
            .filter(|d| d.workload.name.starts_with(prefix) && d.is_placed())
            .count()
            * 2
    };
    let (a, b) = (gpus("a"), gpus("b"));
    assert_eq!(a + b, 24, "16 lent + 4 + 4 nominal are all used");
    // Borrowed beyond nominal: b should hold about three times a's.
    let (ba, bb) = (a - 4, b - 4);
    assert!(
        bb >= 3 * ba - 2 && bb <= 3 * ba + 6,
        "a borrowed {ba}, b borrowed {bb}"
    );
    assert!(ba > 0, "a gets a share too");
}

#[test]
fn a_job_whose_queue_is_missing_or_closed_to_its_project_waits_saying_so() {
    let nodes = gpu_nodes(1);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue("finance-only", json!({"projects": ["finance"]}));
    let d = place_queued(
        &mut fleet,
        &[q],
        &[],
        &[
            job("lost", "nope", 0, 1, 1, 1),
            job("closed", "finance-only", 0, 1, 1, 2),
        ],
    );
    assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 0);
    let (why, message) = reason(&d, "lost").expect("lost waits");
    assert_eq!(why, QueueReason::QueueNotFound);
    assert!(message.contains("queue nope does not exist"), "{message}");
    let (why, message) = reason(&d, "closed").expect("closed waits");
    assert_eq!(why, QueueReason::ProjectNotAllowed);
    assert!(message.contains("finance"), "{message}");
}

#[test]
fn a_project_default_queue_applies_to_its_jobs() {
    let nodes = gpu_nodes(2);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue(
        "research-default",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 4}}}}),
    );
    let project: Project = serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Project",
        "metadata": {"name": "research"},
        "spec": {"defaultQueue": "research-default"}
    }))
    .expect("project");
    let mut jobs: Vec<Workload> = (0..2)
        .map(|i| job(&format!("j{i}"), "x", 0, 1, 4, i))
        .collect();
    for j in &mut jobs {
        j.spec.queue = None;
    }
    let mut q_set = Queues::new(std::slice::from_ref(&q));
    for j in &jobs {
        q_set.assign("research", &j.metadata.name, "research-default");
    }
    let mut batch = Batch::new();
    batch.set_queues(Arc::new(q_set));
    for j in &jobs {
        batch.add_in_project(j, &project, [0]).expect("add");
    }
    let d = place_batch(&mut fleet, &batch, &Options::default());
    assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 1);
    let why = d
        .iter()
        .find(|d| !d.is_placed())
        .and_then(|d| d.explanation().queue.clone())
        .expect("the second waits in the default queue");
    assert_eq!(why.queue, "research-default");
}

#[test]
fn a_request_that_names_no_model_is_held_to_the_queues_model_bounds() {
    let nodes = gpu_nodes(2);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let q = queue(
        "train",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 4}}}}),
    );
    let mut any = [job("x", "train", 0, 1, 4, 1), job("y", "train", 0, 1, 4, 2)];
    for j in &mut any {
        let mut v = serde_json::to_value(&*j).expect("json");
        merge(
            &mut v,
            json!({"spec": {"task": {"resources": {"gpu": {"model": null}}}}}),
        );
        v["spec"]["task"]["resources"]["gpu"]
            .as_object_mut()
            .expect("gpu")
            .remove("model");
        *j = serde_json::from_value(v).expect("workload");
    }
    let d = place_queued(&mut fleet, &[q], &[], &any);
    assert_eq!(
        d.iter().filter(|d| d.is_placed()).count(),
        1,
        "4 H100s: one job"
    );
}

#[test]
fn within_queue_preemption_evicts_lower_priority_jobs_of_the_same_queue_whole() {
    let nodes = gpu_nodes(4);
    let q = queue(
        "train",
        json!({"preemption": {"withinQueue": "LowerPriority"},
               "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
    );
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let low = gang(job("low", "train", 0, 2, 4, 1));
    let d = place_queued(
        &mut fleet,
        std::slice::from_ref(&q),
        &[],
        std::slice::from_ref(&low),
    );
    assert_eq!(placed(&d, "low"), 2);
    let high = job("high", "train", 10, 1, 4, 2);
    let d = place_known(
        &mut fleet,
        std::slice::from_ref(&q),
        &[],
        &[low.clone(), high.clone()],
        std::slice::from_ref(&high),
    );
    let p = d[0]
        .placement()
        .expect("high is admitted by preempting low");
    assert_eq!(
        p.preempted.len(),
        2,
        "the gang goes whole: {:?}",
        p.preempted
    );
    assert!(
        p.preempted[0]
            .reason
            .contains("give queue train back its quota"),
        "{}",
        p.preempted[0].reason
    );
    // Without the policy, it waits.
    let never = queue(
        "train",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
    );
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    place_queued(
        &mut fleet,
        std::slice::from_ref(&never),
        &[],
        std::slice::from_ref(&low),
    );
    let d = place_known(
        &mut fleet,
        std::slice::from_ref(&never),
        &[],
        &[low, high.clone()],
        &[high],
    );
    assert!(!d[0].is_placed());
}

#[test]
fn a_queue_reclaims_its_lent_quota_from_borrowers_of_its_cohort() {
    let nodes = gpu_nodes(4);
    let queues = |reclaim: &str| {
        [
            queue(
                "a",
                json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
            ),
            queue(
                "b",
                json!({"cohort": "lab",
                       "preemption": {"reclaimWithinCohort": reclaim},
                       "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
            ),
        ]
    };
    for (reclaim, reclaimed) in [("Any", true), ("LowerPriority", false), ("Never", false)] {
        let qs = queues(reclaim);
        let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
        // a borrows all of b's 8 GPUs with jobs of priority 5.
        let borrowers: Vec<Workload> = (0..4)
            .map(|i| job(&format!("a{i}"), "a", 5, 1, 4, i))
            .collect();
        let d = place_queued(&mut fleet, &qs, &[], &borrowers);
        assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 4);
        // b's own job of priority 0 reclaims with Any only.
        let own = job("b0", "b", 0, 1, 4, 10);
        let mut all = borrowers.clone();
        all.push(own.clone());
        let d = place_known(&mut fleet, &qs, &[], &all, &[own]);
        assert_eq!(d[0].is_placed(), reclaimed, "{reclaim}");
        if reclaimed {
            let p = d[0].placement().expect("placed");
            assert_eq!(p.preempted.len(), 1, "one borrowing job is enough");
            assert!(p.preempted[0].allocation.workload.starts_with('a'));
        }
    }
}
