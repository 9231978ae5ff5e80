//! Queues (issue 16, part 2): nominal quota, cohorts with borrowing and lending limits,
//! strict and best-effort FIFO, priorities, fair sharing by weighted dominant share,
//! gangs admitted whole, and the typed reasons a job waits for.

mod common;

use std::sync::Arc;

use api::queue::{Cohort, Queue, QueueReason};
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
    place_in_tree(fleet, Queues::new(queues), projects, known, workloads)
}

/// [`place_known`] with queues compiled with their cohort tree.
fn place_in_tree(
    fleet: &mut Fleet,
    mut q: Queues,
    projects: &[Project],
    known: &[Workload],
    workloads: &[Workload],
) -> Vec<Decision> {
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

// -- flavours (Kueue's ResourceFlavors) and fair-sharing preemption ------------------------

/// Two sites, `fra` and `ams`, with `n` nodes of 16 cores each; the last node of each
/// carries `pool: spot`.
fn two_sites(n: usize) -> (Vec<Site>, Vec<Node>) {
    let sites = vec![site("fra", "DE", json!({})), site("ams", "NL", json!({}))];
    let mut nodes = Vec::new();
    for s in ["fra", "ams"] {
        for i in 0..n {
            let pool = if i + 1 == n { "spot" } else { "standard" };
            nodes.push(node(
                &format!("{s}-{i}"),
                s,
                json!({"metadata": {"labels": {"pool": pool}},
                       "spec": {"capacity": {"cpu": 16, "memory": "64Gi"}}}),
            ));
        }
    }
    (sites, nodes)
}

/// A queue with the flavours `fra` (4 cores) then `ams` (8 cores), by site.
fn by_site() -> Queue {
    queue(
        "eu",
        json!({"flavors": [
            {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}},
            {"name": "ams", "sites": ["ams"], "quota": {"cpu": {"nominal": "8"}}}
        ]}),
    )
}

/// A job of one instance of `cpu` cores in `queue`.
fn cpu_job(name: &str, queue: &str, cpu: u32, created: u32) -> Workload {
    let mut w = job(name, queue, 0, 1, 0, created);
    w.spec.task.resources.cpu = api::Cpu::from_millis(u64::from(cpu) * 1000);
    w
}

#[test]
fn a_job_goes_to_the_first_flavor_with_room_and_only_to_its_nodes() {
    let (sites, nodes) = two_sites(2);
    let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
    let q = by_site();
    let jobs = [
        cpu_job("a", "eu", 4, 1),
        cpu_job("b", "eu", 4, 2),
        cpu_job("c", "eu", 8, 3),
    ];
    let d = place_queued(&mut fleet, std::slice::from_ref(&q), &[], &jobs);
    let a = d[0].placement().expect("a fits its first flavour");
    assert_eq!((a.flavor.as_deref(), a.site.as_str()), (Some("fra"), "fra"));
    assert!(
        a.explanation
            .notes
            .iter()
            .any(|n| n.contains("flavor fra of queue eu (sites fra)")),
        "{:?}",
        a.explanation.notes
    );
    // fra's 4 cores are taken: b goes to its second flavour, on ams's nodes only,
    // though fra's nodes have room.
    let b = d[1].placement().expect("b fits the second flavour");
    assert_eq!((b.flavor.as_deref(), b.site.as_str()), (Some("ams"), "ams"));
    // c needs 8: fra has none left, ams 4: it waits, saying why in both.
    let (why, message) = reason(&d, "c").expect("c waits");
    assert_eq!(why, QueueReason::OverNominalQuota);
    assert!(message.contains("queue eu (flavor fra)"), "{message}");
    let notes = &d[2].explanation().notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("flavor ams") && n.contains("waits there too")),
        "{notes:?}"
    );
    // The queue's report holds each flavour's usage.
    let mut qs = Queues::new(std::slice::from_ref(&q));
    for j in &jobs {
        qs.assign("research", &j.metadata.name, "eu");
    }
    let report = placement::queue_report(&fleet, &qs);
    let eu = &report["eu"];
    assert_eq!(eu.flavors["fra"].cpu.millis(), 4000);
    assert_eq!(eu.flavors["ams"].cpu.millis(), 4000);
    assert_eq!(eu.usage.cpu.millis(), 8000);
}

#[test]
fn a_node_selector_flavor_keeps_the_job_on_its_labelled_nodes_and_explain_says_so() {
    let (sites, nodes) = two_sites(3);
    let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
    let q = queue(
        "spot",
        json!({"flavors": [{"name": "spot", "nodeSelector": {"pool": "spot"},
                            "quota": {"cpu": {"nominal": "32"}}}]}),
    );
    let jobs: Vec<Workload> = (0..3)
        .map(|i| cpu_job(&format!("s{i}"), "spot", 8, i))
        .collect();
    let d = place_queued(&mut fleet, std::slice::from_ref(&q), &[], &jobs);
    // Two spot nodes (fra-2, ams-2) of 16 cores: room for four jobs of 8.
    for x in &d {
        let p = x.placement().expect("placed");
        assert!(p.node.ends_with("-2"), "only spot nodes: {}", p.node);
        assert_eq!(p.flavor.as_deref(), Some("spot"));
    }
    // Explain a fourth and a fifth: the fourth fits the last spot room; the nodes
    // outside the flavour are counted as such.
    let mut qs = Queues::new(std::slice::from_ref(&q));
    for j in &jobs {
        qs.assign("research", &j.metadata.name, "spot");
    }
    let extra = cpu_job("s9", "spot", 8, 9);
    let x = placement::explain_queued(&fleet, &extra, None, Arc::new(qs), &Options::default())
        .expect("explain");
    let text = x.render();
    assert!(
        text.contains("not in flavor spot of queue spot"),
        "explain names the flavour: {text}"
    );
    assert!(
        x.notes
            .iter()
            .any(|n| n.contains("would be admitted into flavor spot")),
        "{text}"
    );
}

#[test]
fn cohorts_lend_and_borrow_per_flavor() {
    let (sites, nodes) = two_sites(2);
    // a has only fra; b has fra and ams, each 4 cores; both in cohort lab.
    let qs = [
        queue(
            "a",
            json!({"cohort": "lab", "flavors": [
                {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}}]}),
        ),
        queue(
            "b",
            json!({"cohort": "lab", "flavors": [
                {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}},
                {"name": "ams", "sites": ["ams"], "quota": {"cpu": {"nominal": "4"}}}]}),
        ),
    ];
    let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
    // a borrows b's fra (8 in all), but not b's ams: another flavour's pool.
    let jobs = [cpu_job("a1", "a", 8, 1), cpu_job("a2", "a", 2, 2)];
    let d = place_queued(&mut fleet, &qs, &[], &jobs);
    let a1 = d[0].placement().expect("a borrows b's fra");
    assert_eq!(a1.flavor.as_deref(), Some("fra"));
    let (why, message) = reason(&d, "a2").expect("fra's pool is spent");
    assert_eq!(why, QueueReason::WaitingForBorrowableQuota, "{message}");
    assert!(message.contains("queue a (flavor fra)"), "{message}");
    // b's own fra is lent out: its job goes to its ams flavour.
    let mut known = jobs.to_vec();
    let b1 = cpu_job("b1", "b", 4, 3);
    known.push(b1.clone());
    let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&b1));
    let p = d[0].placement().expect("b1 admitted into ams");
    assert_eq!((p.flavor.as_deref(), p.site.as_str()), (Some("ams"), "ams"));
}

/// `flavorFungibility.whenCanBorrow`: a job of 6 cores fits flavour `fra` (4 of its own)
/// only by borrowing from the cohort, and `ams` (8) without. `Borrow` (the default)
/// admits it into `fra`, borrowing; `TryNextFlavor` into `ams`.
#[test]
fn when_can_borrow_try_next_flavor_prefers_a_flavor_without_borrowing() {
    let (sites, nodes) = two_sites(2);
    for (fungibility, want) in [
        (json!({}), "fra"),
        (json!({"whenCanBorrow": "TryNextFlavor"}), "ams"),
    ] {
        let qs = [
            queue(
                "a",
                json!({"cohort": "lab", "flavorFungibility": fungibility, "flavors": [
                    {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}},
                    {"name": "ams", "sites": ["ams"], "quota": {"cpu": {"nominal": "8"}}}]}),
            ),
            queue(
                "b",
                json!({"cohort": "lab", "flavors": [
                    {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}}]}),
            ),
        ];
        let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
        let d = place_queued(&mut fleet, &qs, &[], &[cpu_job("a1", "a", 6, 1)]);
        let p = d[0].placement().expect("admitted");
        assert_eq!(p.flavor.as_deref(), Some(want), "{fungibility}");
    }
}

/// `flavorFungibility.whenCanPreempt`: flavour `fra` (4 cores) is full with a job of
/// priority 0 and `ams` (8) is free. A job of priority 10 goes to `ams` by default
/// (`TryNextFlavor`), evicting nothing; with `Preempt` it evicts the job in `fra`.
#[test]
fn when_can_preempt_preempt_evicts_in_the_first_flavor() {
    let (sites, nodes) = two_sites(2);
    let prio_job = |name: &str, priority: i32, created: u32| {
        let mut w = cpu_job(name, "eu", 4, created);
        w.spec.priority = priority;
        w
    };
    for (fungibility, want, evicted) in [
        (json!({}), "ams", 0),
        (json!({"whenCanPreempt": "Preempt"}), "fra", 1),
    ] {
        let q = queue(
            "eu",
            json!({"preemption": {"withinQueue": "LowerPriority"},
                   "flavorFungibility": fungibility, "flavors": [
                {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}},
                {"name": "ams", "sites": ["ams"], "quota": {"cpu": {"nominal": "8"}}}]}),
        );
        let low = prio_job("low", 0, 1);
        let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
        let d = place_queued(
            &mut fleet,
            std::slice::from_ref(&q),
            &[],
            std::slice::from_ref(&low),
        );
        assert_eq!(
            d[0].placement().and_then(|p| p.flavor.as_deref()),
            Some("fra")
        );
        let high = prio_job("high", 10, 2);
        let d = place_known(
            &mut fleet,
            std::slice::from_ref(&q),
            &[],
            &[low.clone(), high.clone()],
            std::slice::from_ref(&high),
        );
        let p = d[0].placement().expect("admitted");
        assert_eq!(p.flavor.as_deref(), Some(want), "{fungibility}");
        assert_eq!(
            p.preempted.len(),
            evicted,
            "{fungibility}: {:?}",
            p.preempted
        );
    }
}

#[test]
fn flat_quotas_and_flavors_together_bound_the_queue_as_a_whole() {
    let (sites, nodes) = two_sites(2);
    let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
    let q = queue(
        "eu",
        json!({"quota": {"cpu": {"nominal": "6"}},
               "flavors": [
            {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "4"}}},
            {"name": "ams", "sites": ["ams"], "quota": {"cpu": {"nominal": "4"}}}]}),
    );
    let jobs = [cpu_job("a", "eu", 4, 1), cpu_job("b", "eu", 4, 2)];
    let d = place_queued(&mut fleet, std::slice::from_ref(&q), &[], &jobs);
    assert!(d[0].is_placed());
    let (why, message) = reason(&d, "b").expect("the queue's 6 cores bound both flavours");
    assert_eq!(why, QueueReason::OverNominalQuota);
    assert!(
        message.contains("queue eu over its nominal cpu"),
        "{message}"
    );
}

/// Three queues of cohort `lab` with 4 H100s each (c idle, lending them): `a` runs four
/// gangs of 2 × 2 GPUs (16: all of the cohort's), `b` asks for 8.
fn fair_share_setup(b_preemption: Value, a_weight: u32) -> (Vec<Queue>, Vec<Workload>) {
    let qs = vec![
        queue(
            "a",
            json!({"cohort": "lab", "weight": a_weight,
                   "quota": {"gpusByModel": {"H100": {"nominal": 4}}}}),
        ),
        queue(
            "b",
            json!({"cohort": "lab", "preemption": b_preemption,
                   "quota": {"gpusByModel": {"H100": {"nominal": 4}}}}),
        ),
        queue(
            "c",
            json!({"cohort": "lab", "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}),
        ),
    ];
    let gangs = (0..4)
        .map(|i| gang(job(&format!("a{i}"), "a", 5, 2, 2, i)))
        .collect();
    (qs, gangs)
}

#[test]
fn fair_sharing_preempts_whole_gangs_of_a_queue_above_its_share() {
    let nodes = gpu_nodes(4);
    let (qs, gangs) = fair_share_setup(json!({"fairSharing": "LessThanOrEqualToFinalShare"}), 1);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_queued(&mut fleet, &qs, &[], &gangs);
    assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 8);
    // b needs 8 (4 borrowed): a's share 750 (12 of 16 borrowed). Evicting one gang
    // leaves a at 500, b with the job at 250: not enough room yet; a second leaves a
    // at 250 = b's 250: fair, and room. (b0 is a gang of 4 × 2 GPUs, so the freed
    // GPUs fit it wherever they are.)
    let want = gang(job("b0", "b", 0, 4, 2, 20));
    let mut known = gangs.clone();
    known.push(want.clone());
    let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&want));
    assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 4, "b0 whole");
    let p = admitted_by_preemption(&d);
    assert_eq!(p.preempted.len(), 4, "two gangs, whole: {:?}", p.preempted);
    let mut by_job: std::collections::BTreeMap<&str, usize> = Default::default();
    for v in &p.preempted {
        *by_job.entry(v.allocation.workload.as_str()).or_default() += 1;
        assert!(v.reason.contains("for fair sharing"), "{}", v.reason);
    }
    assert!(
        by_job.values().all(|&n| n == 2),
        "each gang whole: {by_job:?}"
    );
    // The priority of b0 (0) is below a's (5): fair sharing does not look at it.
    assert!(p.preempted[0].reason.contains("queue b's weighted share"));
}

#[test]
fn fair_sharing_does_not_preempt_below_the_final_share_or_without_the_policy() {
    let nodes = gpu_nodes(4);
    for (policy, weight, why) in [
        (json!({}), 1, "no fairSharing policy"),
        (
            json!({"fairSharing": "LessThanOrEqualToFinalShare"}),
            4,
            "a's weight 4 keeps its weighted share below b's",
        ),
    ] {
        let (qs, gangs) = fair_share_setup(policy, weight);
        let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
        place_queued(&mut fleet, &qs, &[], &gangs);
        let want = gang(job("b0", "b", 0, 4, 2, 20));
        let mut known = gangs.clone();
        known.push(want.clone());
        let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&want));
        assert!(d.iter().all(|d| !d.is_placed()), "{why}");
        assert_eq!(
            fleet_allocations(&fleet),
            8,
            "{why}: nothing evicted, nothing left half-evicted"
        );
    }
}

/// One large job of `a` (a gang of 4 × 4 GPUs: all 16 of the cohort's, 12 borrowed) and
/// `b` asking for 8: evicting it leaves `a` at share 0, below `b`'s 250 with its job, so
/// the final-share rule keeps it; the initial-share rule compares with `a`'s 750 before
/// the eviction and takes it.
#[test]
fn fair_sharing_by_initial_share_takes_a_large_job_the_final_share_rule_keeps() {
    let nodes = gpu_nodes(4);
    for (strategy, admitted) in [
        ("LessThanOrEqualToFinalShare", false),
        ("LessThanInitialShare", true),
    ] {
        let (qs, _) = fair_share_setup(json!({ "fairSharing": strategy }), 1);
        let big = gang(job("a-big", "a", 5, 4, 4, 0));
        let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
        let d = place_queued(&mut fleet, &qs, &[], std::slice::from_ref(&big));
        assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 4, "{strategy}");
        let want = gang(job("b0", "b", 0, 4, 2, 20));
        let known = [big.clone(), want.clone()];
        let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&want));
        let placed = d.iter().filter(|d| d.is_placed()).count();
        if !admitted {
            assert_eq!(placed, 0, "{strategy}");
            assert_eq!(fleet_allocations(&fleet), 4, "{strategy}: nothing evicted");
            continue;
        }
        assert_eq!(placed, 4, "{strategy}: b0 whole");
        let p = admitted_by_preemption(&d);
        assert_eq!(p.preempted.len(), 4, "the gang whole: {:?}", p.preempted);
        assert!(
            p.preempted.iter().all(|v| v.allocation.workload == "a-big"
                && v.reason.contains("before the eviction (750)")),
            "{:?}",
            p.preempted
        );
    }
}

/// Kueue's default order, `[LessThanOrEqualToFinalShare, LessThanInitialShare]`: where
/// the final-share rule finds room (four gangs of 2 × 2), it alone evicts; where it keeps
/// the only job (one gang of 4 × 4), the initial-share rule takes it next.
#[test]
fn fair_sharing_strategies_are_tried_in_order() {
    let nodes = gpu_nodes(4);
    let policy =
        json!({"fairSharingStrategies": ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]});
    let want = gang(job("b0", "b", 0, 4, 2, 20));

    let (qs, gangs) = fair_share_setup(policy.clone(), 1);
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    place_queued(&mut fleet, &qs, &[], &gangs);
    let mut known = gangs.clone();
    known.push(want.clone());
    let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&want));
    assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 4, "b0 whole");
    let p = admitted_by_preemption(&d);
    assert_eq!(p.preempted.len(), 4, "two gangs, whole: {:?}", p.preempted);
    assert!(
        p.preempted
            .iter()
            .all(|v| v.reason.contains("(LessThanOrEqualToFinalShare)")),
        "the first strategy sufficed: {:?}",
        p.preempted
    );

    let (qs, _) = fair_share_setup(policy, 1);
    let big = gang(job("a-big", "a", 5, 4, 4, 0));
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    place_queued(&mut fleet, &qs, &[], std::slice::from_ref(&big));
    let known = [big.clone(), want.clone()];
    let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&want));
    assert_eq!(d.iter().filter(|d| d.is_placed()).count(), 4, "b0 whole");
    let p = admitted_by_preemption(&d);
    assert_eq!(p.preempted.len(), 4, "the gang whole: {:?}", p.preempted);
    assert!(
        p.preempted.iter().all(
            |v| v.allocation.workload == "a-big" && v.reason.contains("(LessThanInitialShare)")
        ),
        "the second strategy took what the first kept: {:?}",
        p.preempted
    );
}

/// `b` asks for 8 GPUs (4 of them borrowed) at priority 10 while `a`'s four gangs of
/// priority 5 hold all 16 of the cohort's. Reclaiming needs `b` within its nominal quota;
/// `borrowWithinCohort: LowerPriority` lets it evict lower-priority borrowing jobs anyway,
/// whole, unless their priority is above `maxPriorityThreshold`.
#[test]
fn borrow_within_cohort_evicts_lower_priority_jobs_of_borrowing_queues() {
    let nodes = gpu_nodes(4);
    for (policy, admitted, why) in [
        (
            json!({"reclaimWithinCohort": "Any"}),
            false,
            "reclaim needs b within nominal",
        ),
        (
            json!({"borrowWithinCohort": {"policy": "LowerPriority"}}),
            true,
            "borrowWithinCohort",
        ),
        (
            json!({"borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": 4}}),
            false,
            "a's priority 5 is above the threshold",
        ),
    ] {
        let (qs, gangs) = fair_share_setup(policy, 1);
        let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
        place_queued(&mut fleet, &qs, &[], &gangs);
        let want = gang(job("b0", "b", 10, 4, 2, 20));
        let mut known = gangs.clone();
        known.push(want.clone());
        let d = place_known(&mut fleet, &qs, &[], &known, std::slice::from_ref(&want));
        let placed = d.iter().filter(|d| d.is_placed()).count();
        if !admitted {
            assert_eq!(placed, 0, "{why}");
            assert_eq!(fleet_allocations(&fleet), 8, "{why}: nothing evicted");
            continue;
        }
        assert_eq!(placed, 4, "{why}: b0 whole");
        let p = admitted_by_preemption(&d);
        assert_eq!(p.preempted.len(), 4, "two gangs, whole: {:?}", p.preempted);
        assert!(
            p.preempted
                .iter()
                .all(|v| v.reason.contains("borrowWithinCohort")),
            "{:?}",
            p.preempted
        );
    }
}

/// The placement of the job that was admitted by evicting others.
fn admitted_by_preemption(d: &[Decision]) -> &placement::Placement {
    d.iter()
        .filter_map(Decision::placement)
        .find(|p| !p.preempted.is_empty())
        .expect("a job admitted by preemption")
}

fn fleet_allocations(fleet: &Fleet) -> usize {
    (0..4)
        .map(|i| fleet.allocations_on(&format!("g{i}")).len())
        .sum()
}

#[test]
fn a_job_admitted_into_a_flavor_places_its_missing_instances_there() {
    let (sites, nodes) = two_sites(2);
    let mut fleet = Fleet::new(&sites, &nodes).expect("fleet");
    let q = by_site();
    // Its status says it was admitted into ams: its instances go there, though fra,
    // first in the queue's order, has room.
    let p = cpu_job("p", "eu", 2, 1);
    let mut qs = Queues::new(std::slice::from_ref(&q));
    qs.assign("research", "p", "eu");
    qs.assign_flavor("research", "p", "eu", "ams");
    let mut batch = Batch::new();
    batch.set_queues(Arc::new(qs));
    batch.add(&p, [0]).expect("add");
    let d = place_batch(&mut fleet, &batch, &Options::default());
    let placed = d[0].placement().expect("placed");
    assert_eq!(
        (placed.flavor.as_deref(), placed.site.as_str()),
        (Some("ams"), "ams")
    );
}

/// Partial admission (`spec.minParallelism`, Kueue's): a job of 6 × 2 GPUs in a queue with
/// 8 GPUs left admits 4 (at least its minimum of 3), and the rest wait saying so; with a
/// minimum of 5, nothing is admitted; once the job runs, the rest join as room frees,
/// one at a time if need be; without the field, the job waits whole.
#[test]
fn a_job_with_min_parallelism_is_admitted_partially_and_the_rest_join_later() {
    let nodes = gpu_nodes(4);
    let q = queue(
        "train",
        json!({"quota": {"gpusByModel": {"H100": {"nominal": 12}}}}),
    );
    let holder = job("holder", "train", 0, 1, 4, 0);
    let with_min = |min: Option<u32>| {
        let mut w = job("sweep", "train", 0, 6, 2, 10);
        w.spec.min_parallelism = min;
        w
    };
    for (min, admitted) in [(None, 0), (Some(5), 0), (Some(3), 4)] {
        let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
        place_queued(
            &mut fleet,
            std::slice::from_ref(&q),
            &[],
            std::slice::from_ref(&holder),
        );
        let sweep = with_min(min);
        let known = [holder.clone(), sweep.clone()];
        let d = place_known(
            &mut fleet,
            std::slice::from_ref(&q),
            &[],
            &known,
            std::slice::from_ref(&sweep),
        );
        assert_eq!(placed(&d, "sweep"), admitted, "minParallelism {min:?}");
        assert_eq!(
            reason(&d, "sweep").map(|(r, _)| r),
            Some(QueueReason::OverNominalQuota),
            "minParallelism {min:?}: the rest wait for quota"
        );
        if admitted == 0 {
            continue;
        }
        let waiting = d
            .iter()
            .find(|d| d.workload.name == "sweep" && !d.is_placed())
            .expect("a waiting instance");
        let x = waiting.explanation();
        assert!(
            x.summary.starts_with("partially admitted: 4 of 6"),
            "{}",
            x.render()
        );
        assert_eq!(
            x.queue.as_ref().and_then(|q| q.partially_admitted),
            Some(4),
            "{}",
            x.render()
        );
        // It runs: the 2 that wait join one at a time once the quota has room for one.
        let q = queue(
            "train",
            json!({"quota": {"gpusByModel": {"H100": {"nominal": 14}}}}),
        );
        let rest = d
            .iter()
            .filter(|d| !d.is_placed())
            .map(|d| d.replica)
            .collect::<Vec<_>>();
        assert_eq!(rest.len(), 2);
        let mut qs = Queues::new(std::slice::from_ref(&q));
        qs.assign("research", "holder", "train");
        qs.assign("research", "sweep", "train");
        let mut batch = Batch::new();
        batch.set_queues(Arc::new(qs));
        batch.add(&sweep, rest.iter().copied()).expect("add");
        let d = place_batch(&mut fleet, &batch, &Options::default());
        assert_eq!(
            d.iter().filter(|d| d.is_placed()).count(),
            1,
            "one more fits the larger quota"
        );
    }
}

fn cohort(name: &str, spec: Value) -> Cohort {
    serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Cohort",
        "metadata": {"name": name},
        "spec": spec
    }))
    .expect("cohort")
}

fn h100(nominal: u32, limits: Value) -> Value {
    let mut q = json!({"nominal": nominal});
    merge(&mut q, limits);
    json!({"gpusByModel": {"H100": q}})
}

#[test]
fn a_cohort_tree_lends_between_teams_through_their_department() {
    let nodes = gpu_nodes(4);
    let queues = [
        queue(
            "a",
            json!({"cohort": "team-a", "quota": h100(8, json!({}))}),
        ),
        queue(
            "b",
            json!({"cohort": "team-b", "quota": h100(8, json!({}))}),
        ),
    ];
    let jobs: Vec<Workload> = (0..7)
        .map(|i| job(&format!("a{i}"), "a", 0, 1, 4, i))
        .collect();
    let admitted = |d: &[Decision]| -> usize { (0..7).map(|i| placed(d, &format!("a{i}"))).sum() };

    // Without cohort objects the two teams are separate roots: a has its own 8.
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_in_tree(&mut fleet, Queues::new(&queues), &[], &jobs, &jobs);
    assert_eq!(admitted(&d), 2);
    let (why, message) = reason(&d, "a2").expect("a2 waits");
    assert_eq!(why, QueueReason::OverNominalQuota, "{message}");

    // Under one department that holds 8 of its own, and team b lending at most 4 of its
    // 8: a may reach 8 + 8 + 4 = 20 GPUs, five jobs of 4.
    let tree = [
        cohort("org", json!({"quota": h100(8, json!({}))})),
        cohort("team-a", json!({"parent": "org"})),
        cohort(
            "team-b",
            json!({"parent": "org", "quota": h100(0, json!({"lendingLimit": 4}))}),
        ),
    ];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_in_tree(
        &mut fleet,
        Queues::with_cohorts(&queues, &tree),
        &[],
        &jobs,
        &jobs,
    );
    assert_eq!(
        admitted(&d),
        5,
        "8 own + 8 of the department + 4 team b lends"
    );
    let (why, message) = reason(&d, "a5").expect("a5 waits");
    assert_eq!(why, QueueReason::WaitingForBorrowableQuota, "{message}");
    assert!(message.contains("cohort team-a"), "{message}");

    // A borrowing limit on team a's cohort bounds what the whole team takes from the
    // department: 8 own + 4.
    let limited = [
        tree[0].clone(),
        cohort(
            "team-a",
            json!({"parent": "org", "quota": h100(0, json!({"borrowingLimit": 4}))}),
        ),
        tree[2].clone(),
    ];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_in_tree(
        &mut fleet,
        Queues::with_cohorts(&queues, &limited),
        &[],
        &jobs,
        &jobs,
    );
    assert_eq!(admitted(&d), 3, "8 own + at most 4 through team-a");
    let (why, message) = reason(&d, "a3").expect("a3 waits");
    assert_eq!(why, QueueReason::OverBorrowingLimit, "{message}");
    assert!(
        message.contains("cohort team-a may borrow at most"),
        "{message}"
    );
}

#[test]
fn team_b_keeps_what_its_lending_limit_keeps_while_team_a_borrows() {
    // Team a borrowed the department's 8 and what team b lends (4 of its 8): team b
    // still has the 4 its lending limit keeps, and waits for the rest.
    let nodes = gpu_nodes(4);
    let queues = [
        queue(
            "a",
            json!({"cohort": "team-a", "quota": h100(0, json!({}))}),
        ),
        queue(
            "b",
            json!({"cohort": "team-b", "quota": h100(8, json!({}))}),
        ),
    ];
    let tree = [
        cohort("org", json!({"quota": h100(8, json!({}))})),
        cohort("team-a", json!({"parent": "org"})),
        cohort(
            "team-b",
            json!({"parent": "org", "quota": h100(0, json!({"lendingLimit": 4}))}),
        ),
    ];
    let first: Vec<Workload> = (0..4)
        .map(|i| job(&format!("a{i}"), "a", 0, 1, 4, i))
        .collect();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let compiled = || Queues::with_cohorts(&queues, &tree);
    let d = place_in_tree(&mut fleet, compiled(), &[], &first, &first);
    // a takes the department's 8 and the 4 team b lends (a0–a2), not b's other 4.
    let a: usize = (0..4).map(|i| placed(&d, &format!("a{i}"))).sum();
    assert_eq!(a, 3, "{:?}", reason(&d, "a3"));
    // b's first job of 4 fits what team b keeps; its second waits for what it lent.
    let mut all = first.clone();
    all.extend([job("b0", "b", 0, 1, 4, 10), job("b1", "b", 0, 1, 4, 11)]);
    let d = place_in_tree(&mut fleet, compiled(), &[], &all, &all[4..]);
    assert_eq!(placed(&d, "b0"), 1);
    assert_eq!(placed(&d, "b1"), 0);
    let (why, message) = reason(&d, "b1").expect("b1 waits");
    assert_eq!(why, QueueReason::WaitingForBorrowableQuota, "{message}");
    assert!(message.contains("is lent to other queues"), "{message}");
}

#[test]
fn fair_sharing_runs_down_the_cohort_tree() {
    // The department holds 16 GPUs; team a has two queues, team b one. Hierarchical fair
    // sharing splits 8/8 between the teams, then team a's 8 as 4/4 (flat, each queue
    // would get about a third).
    let nodes = gpu_nodes(3);
    let queues = [
        queue(
            "a1",
            json!({"cohort": "team-a", "quota": h100(0, json!({}))}),
        ),
        queue(
            "a2",
            json!({"cohort": "team-a", "quota": h100(0, json!({}))}),
        ),
        queue(
            "b1",
            json!({"cohort": "team-b", "quota": h100(0, json!({}))}),
        ),
    ];
    let tree = [
        cohort("org", json!({"quota": h100(16, json!({}))})),
        cohort("team-a", json!({"parent": "org"})),
        cohort("team-b", json!({"parent": "org"})),
    ];
    let mut jobs = Vec::new();
    for i in 0..8 {
        for q in ["a1", "a2", "b1"] {
            jobs.push(job(&format!("{q}-{i}"), q, 0, 1, 2, i));
        }
    }
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let d = place_in_tree(
        &mut fleet,
        Queues::with_cohorts(&queues, &tree),
        &[],
        &jobs,
        &jobs,
    );
    let gpus = |q: &str| -> usize {
        d.iter()
            .filter(|d| d.workload.name.starts_with(&format!("{q}-")) && d.is_placed())
            .count()
            * 2
    };
    assert_eq!(
        (gpus("a1"), gpus("a2"), gpus("b1")),
        (4, 4, 8),
        "the teams split 8/8, team a's queues 4/4"
    );
}

#[test]
fn a_loop_of_cohort_parents_is_cut_at_its_first_cohort() {
    let queues = [queue(
        "a",
        json!({"cohort": "x", "quota": h100(8, json!({}))}),
    )];
    let tree = [
        cohort("x", json!({"parent": "y"})),
        cohort("y", json!({"parent": "x"})),
    ];
    let q = Queues::with_cohorts(&queues, &tree);
    assert_eq!(q.cohort_loops(), vec![("x", "y")]);
    // The queue still admits within its own quota.
    let jobs: Vec<Workload> = (0..3)
        .map(|i| job(&format!("a{i}"), "a", 0, 1, 4, i))
        .collect();
    let mut fleet = Fleet::new(&sites(), &gpu_nodes(2)).expect("fleet");
    let d = place_in_tree(&mut fleet, q, &[], &jobs, &jobs);
    assert_eq!(
        (0..3).map(|i| placed(&d, &format!("a{i}"))).sum::<usize>(),
        2
    );
}
