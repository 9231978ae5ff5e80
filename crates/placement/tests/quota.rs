//! Project quotas and gang-safe preemption (issue 16): work over its project's quota
//! waits with a typed reason, one batch never overshoots a quota, a gang is admitted
//! only if all its members fit the quota at once, and preemption never leaves a gang
//! partly placed.

mod common;

use std::collections::BTreeMap;

use api::{Node, Project, Site, Workload};
use common::{merge, node, site, workload};
use placement::{Batch, Decision, Fleet, Options, ReasonCode, place_batch};
use proptest::prelude::*;
use serde_json::{Value, json};

fn sites() -> Vec<Site> {
    vec![site("fra", "DE", json!({}))]
}

/// Project `name` with `quota` (a `spec.quota` object).
fn project(name: &str, quota: Value) -> Project {
    serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Project",
        "metadata": {"name": name},
        "spec": {"quota": quota}
    }))
    .expect("project")
}

/// A node with `gpus` GPUs of `model`, 64 cores and 512Gi.
fn gpu_node(name: &str, model: &str, gpus: u32) -> Node {
    node(
        name,
        "fra",
        json!({"spec": {"capacity": {"cpu": 64, "memory": "512Gi",
            "gpus": [{"model": model, "memory": "80Gi", "count": gpus}]}}}),
    )
}

/// A job in project `ns`: `replicas` instances of 1 core, 1Gi and `gpus` GPUs each
/// (any model), a gang of all of them when `gang`.
fn job(ns: &str, name: &str, priority: i32, replicas: u32, gpus: u32, gang: bool) -> Workload {
    let mut w = workload(
        name,
        json!({"metadata": {"namespace": ns},
               "spec": {"type": "job", "replicas": replicas, "priority": priority,
                        "task": {"resources": {"cpu": 1, "memory": "1Gi"}}}}),
    );
    let mut v = serde_json::to_value(&w).expect("json");
    if gpus > 0 {
        merge(
            &mut v,
            json!({"spec": {"task": {"resources": {"gpu": {"count": gpus}}}}}),
        );
    }
    if gang {
        merge(&mut v, json!({"spec": {"gang": replicas}}));
    }
    w = serde_json::from_value(v).expect("workload");
    w
}

/// Places every replica of `workloads`, each in its project when `projects` has it.
fn place_in(fleet: &mut Fleet, projects: &[Project], workloads: &[Workload]) -> Vec<Decision> {
    let mut batch = Batch::new();
    for w in workloads {
        let ns = w.metadata.namespace.as_deref().unwrap_or("");
        let n = w.spec.replicas as u32;
        match projects.iter().find(|p| p.metadata.name == ns) {
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

/// Live allocations of workload `name` on the fleet.
fn live(fleet: &Fleet, nodes: &[Node], name: &str) -> usize {
    nodes
        .iter()
        .flat_map(|n| fleet.allocations_on(&n.metadata.name))
        .filter(|a| a.workload == name)
        .count()
}

fn placed(decisions: &[Decision], name: &str) -> usize {
    decisions
        .iter()
        .filter(|d| d.workload.name == name && d.is_placed())
        .count()
}

// -- gang-safe preemption -----------------------------------------------------------

/// The reported defect: a gang of 8 (8 GPUs each) fills eight 8-GPU nodes; higher-
/// priority work needs one node's GPUs. Before the fix one member was preempted and 7
/// of 8 stayed placed, holding 56 GPUs for a gang that cannot run.
#[test]
fn preempting_a_gang_member_preempts_the_whole_gang() {
    let nodes: Vec<Node> = (0..8)
        .map(|i| gpu_node(&format!("g{i}"), "H100", 8))
        .collect();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let gang = job("research", "train", 10, 8, 8, true);
    let d = place_in(&mut fleet, &[], std::slice::from_ref(&gang));
    assert_eq!(placed(&d, "train"), 8);

    let urgent = job("ops", "urgent", 100, 1, 8, false);
    let d = place_in(&mut fleet, &[], &[urgent]);
    let p = d[0].placement().expect("urgent preempts");
    assert_eq!(
        p.preempted.len(),
        8,
        "every member of the gang goes: {:?}",
        p.preempted
    );
    let alive = live(&fleet, &nodes, "train");
    assert!(alive == 0 || alive == 8, "{alive} of 8 gang members left");
    assert_eq!(alive, 0);
    let elsewhere = p
        .preempted
        .iter()
        .filter(|v| v.allocation.node != p.node)
        .collect::<Vec<_>>();
    assert_eq!(elsewhere.len(), 7);
    assert!(
        elsewhere[0].reason.contains("preempted with its gang"),
        "{}",
        elsewhere[0].reason
    );
    // The fleet holds only the urgent job's 8 GPUs.
    let free: u32 = nodes
        .iter()
        .map(|n| fleet.free(&n.metadata.name).expect("node").gpus[0].1)
        .sum();
    assert_eq!(free, 56);
    // Placed again as a whole, the gang no longer fits: all 8 wait, none holds a GPU.
    let d = place_in(&mut fleet, &[], &[gang]);
    assert_eq!(placed(&d, "train"), 0);
    assert_eq!(live(&fleet, &nodes, "train"), 0);
}

/// At the same priority, a victim set that breaks no gang beats one that does, though
/// it evicts more on the node itself.
#[test]
fn preemption_prefers_breaking_no_gang() {
    let nodes: Vec<Node> = (0..3)
        .map(|i| gpu_node(&format!("g{i}"), "H100", 8))
        .collect();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    // A gang of 2 × 8 GPUs on two nodes; the third holds two 4-GPU jobs.
    let gang = job("research", "pair", 10, 2, 8, true);
    let halves = job("research", "halves", 10, 2, 4, false);
    let d = place_in(&mut fleet, &[], &[gang, halves]);
    assert_eq!(placed(&d, "pair") + placed(&d, "halves"), 4);

    let urgent = job("ops", "urgent", 100, 1, 8, false);
    let d = place_in(&mut fleet, &[], &[urgent]);
    let p = d[0].placement().expect("placed");
    let victims: Vec<&str> = p
        .preempted
        .iter()
        .map(|v| v.allocation.workload.as_str())
        .collect();
    assert_eq!(victims, vec!["halves", "halves"], "{:?}", p.preempted);
    assert_eq!(live(&fleet, &nodes, "pair"), 2);
}

// -- quotas ---------------------------------------------------------------------------

#[test]
fn a_gang_over_the_gpu_quota_waits_with_the_reason() {
    let nodes: Vec<Node> = (0..8)
        .map(|i| gpu_node(&format!("g{i}"), "H100", 8))
        .collect();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let finance = project("finance", json!({"cpu": 40, "gpus": 1}));
    let one = job("finance", "one", 0, 1, 1, false);
    let d = place_in(&mut fleet, std::slice::from_ref(&finance), &[one]);
    assert!(d[0].is_placed());

    let gang = job("finance", "train", 0, 8, 8, true);
    let d = place_in(&mut fleet, std::slice::from_ref(&finance), &[gang]);
    assert_eq!(placed(&d, "train"), 0);
    let x = d[0].explanation();
    assert_eq!(x.rejections.len(), 1);
    assert_eq!(x.rejections[0].reason, ReasonCode::Quota);
    assert_eq!(x.rejected_for(ReasonCode::Quota), 8);
    assert_eq!(
        x.rejections[0].message,
        "project finance over its gpus quota: 1 used + 64 requested > 1"
    );
    assert!(
        x.summary.starts_with("waiting for quota: "),
        "{}",
        x.summary
    );
    assert!(
        x.notes.iter().any(|n| n.contains("all 8 members must fit")),
        "{:?}",
        x.notes
    );
    assert_eq!(live(&fleet, &nodes, "train"), 0);
    let used = fleet.project_usage("finance").expect("usage");
    assert_eq!((used.gpus, used.instances), (api::GpuCount::whole(1), 1));
}

#[test]
fn one_batch_never_overshoots_a_quota() {
    let nodes = vec![node(
        "n1",
        "fra",
        json!({"spec": {"capacity": {"cpu": 64}}}),
    )];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let p = project("finance", json!({"cpu": "4", "instances": 10}));
    let many = job("finance", "many", 0, 10, 0, false);
    let d = place_in(&mut fleet, std::slice::from_ref(&p), &[many]);
    assert_eq!(placed(&d, "many"), 4);
    let waiting: Vec<&Decision> = d.iter().filter(|d| !d.is_placed()).collect();
    assert_eq!(waiting.len(), 6);
    assert_eq!(
        waiting[0].explanation().rejections[0].message,
        "project finance over its cpu quota: 4 used + 1 requested > 4"
    );
    // Another project on the same fleet is not bounded by finance's quota.
    let other = job("ops", "other", 0, 6, 0, false);
    let d = place_in(&mut fleet, &[p], &[other]);
    assert_eq!(placed(&d, "other"), 6);
}

#[test]
fn a_gang_is_admitted_only_if_all_members_fit_the_quota() {
    let nodes: Vec<Node> = (0..4)
        .map(|i| gpu_node(&format!("g{i}"), "H100", 8))
        .collect();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let p = project("finance", json!({"gpus": 24}));
    let d = place_in(
        &mut fleet,
        std::slice::from_ref(&p),
        &[job("finance", "four", 0, 4, 8, true)],
    );
    assert_eq!(placed(&d, "four"), 0, "32 GPUs > 24: none placed");
    let d = place_in(&mut fleet, &[p], &[job("finance", "three", 0, 3, 8, true)]);
    assert_eq!(placed(&d, "three"), 3, "24 GPUs fit");
}

#[test]
fn the_instances_bound_counts_allocations() {
    let nodes = vec![node("n1", "fra", json!({}))];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let p = project("finance", json!({"instances": 2}));
    let d = place_in(&mut fleet, &[p], &[job("finance", "x", 0, 3, 0, false)]);
    assert_eq!(placed(&d, "x"), 2);
    assert_eq!(
        d[2].explanation().rejections[0].message,
        "project finance over its instances quota: 2 used + 1 requested > 2"
    );
}

#[test]
fn gpus_by_model_bounds_the_model_the_gpus_land_on() {
    let nodes = vec![gpu_node("a-h100", "H100", 8), gpu_node("b-l4", "L4", 8)];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let p = project("finance", json!({"gpusByModel": {"H100": 4}}));
    // Any model: the first 4-GPU instance may take H100s, the next must go to the L4s.
    let d = place_in(
        &mut fleet,
        std::slice::from_ref(&p),
        &[job("finance", "any", 0, 3, 4, false)],
    );
    assert_eq!(placed(&d, "any"), 3);
    let used = fleet.project_usage("finance").expect("usage");
    assert_eq!(used.gpus_by_model.get("H100").copied(), Some(4.into()));
    assert_eq!(used.gpus_by_model.get("L4").copied(), Some(8.into()));
    // Naming the model: waits, with the model in the reason.
    let mut h100 = job("finance", "h100", 0, 1, 1, false);
    h100.spec.task.resources.gpu.as_mut().expect("gpu").model = Some("H100".into());
    let d = place_in(&mut fleet, std::slice::from_ref(&p), &[h100]);
    assert_eq!(
        d[0].explanation().rejections[0].message,
        "project finance over its H100 gpus quota: 4 used + 1 requested > 4"
    );
    // A gang of any model that only fits on H100s (no L4 left) waits for quota.
    let d = place_in(&mut fleet, &[p], &[job("finance", "g", 0, 1, 1, true)]);
    assert_eq!(d[0].explanation().rejections[0].reason, ReasonCode::Quota);
}

#[test]
fn a_lowered_quota_evicts_nothing_and_holds_back_only_what_needs_more() {
    let nodes = vec![gpu_node("g0", "H100", 8)];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let generous = project("finance", json!({"gpus": 8}));
    let d = place_in(
        &mut fleet,
        &[generous],
        &[job("finance", "gpu", 0, 4, 1, false)],
    );
    assert_eq!(placed(&d, "gpu"), 4);
    // The quota drops below usage: nothing is evicted, GPU work waits, cpu work runs.
    let lowered = project("finance", json!({"gpus": 2}));
    let d = place_in(
        &mut fleet,
        std::slice::from_ref(&lowered),
        &[
            job("finance", "more", 0, 1, 1, false),
            job("finance", "cpu", 0, 1, 0, false),
        ],
    );
    assert_eq!(live(&fleet, &nodes, "gpu"), 4);
    assert_eq!(placed(&d, "more"), 0);
    assert_eq!(placed(&d, "cpu"), 1);
}

#[test]
fn explain_names_the_quota() {
    let nodes = vec![gpu_node("g0", "H100", 8)];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let p = project("finance", json!({"gpus": 1}));
    let w = job("finance", "w", 0, 1, 1, false);
    place_in(
        &mut fleet,
        std::slice::from_ref(&p),
        std::slice::from_ref(&w),
    );
    let x = placement::explain(&fleet, &w, Some(&p), &Options::default()).expect("explain");
    assert_eq!(
        x.summary,
        "waiting for quota: project finance over its gpus quota: 1 used + 1 requested > 1"
    );
    assert!(
        x.render()
            .contains("1 node: project finance over its gpus quota")
    );
}

#[test]
fn quota_is_enforced_against_existing_allocations() {
    let nodes = vec![node("n1", "fra", json!({}))];
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    // Placed earlier without a quota (another pass, an older server).
    place_in(&mut fleet, &[], &[job("finance", "old", 0, 3, 0, false)]);
    let p = project("finance", json!({"cpu": 4}));
    let d = place_in(&mut fleet, &[p], &[job("finance", "new", 0, 3, 0, false)]);
    assert_eq!(placed(&d, "new"), 1);
}

// -- property: usage after a batch never exceeds a quota -----------------------------

fn arb_workload(i: usize) -> impl Strategy<Value = Workload> {
    (0..3usize, 1..5u32, 0..3u32, any::<bool>(), 0..3i32, 1..4u32).prop_map(
        move |(ns, replicas, gpus, gang, priority, cpu)| {
            let mut w = job(
                ["a", "b", "c"][ns],
                &format!("w{i}"),
                priority * 10,
                replicas,
                gpus,
                gang,
            );
            w.spec.task.resources.cpu = api::Cpu::from_cores(u64::from(cpu));
            w
        },
    )
}

fn arb_quota(name: &'static str) -> impl Strategy<Value = Project> {
    (0..12u32, 0..10u32, 0..6u32, 0..6u32, any::<bool>()).prop_map(
        move |(cpu, gpus, instances, h100, by_model)| {
            let mut q = json!({"cpu": cpu, "gpus": gpus, "instances": instances});
            if by_model {
                q["gpusByModel"] = json!({"H100": h100});
            }
            project(name, q)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn usage_after_a_batch_never_exceeds_the_quota(
        workloads in (1..8usize).prop_flat_map(|n| (0..n).map(arb_workload).collect::<Vec<_>>()),
        projects in (arb_quota("a"), arb_quota("b")),
        nodes in 1..5usize,
    ) {
        let mut fleet_nodes: Vec<Node> = (0..nodes)
            .map(|i| gpu_node(&format!("h{i}"), "H100", 4))
            .collect();
        fleet_nodes.push(gpu_node("l0", "L4", 4));
        let mut fleet = Fleet::new(&sites(), &fleet_nodes).expect("fleet");
        let projects = [projects.0, projects.1];
        // Two batches: the second sees the first's allocations, and preempts.
        let (first, second) = workloads.split_at(workloads.len() / 2);
        let mut decisions = place_in(&mut fleet, &projects, first);
        decisions.extend(place_in(&mut fleet, &projects, second));
        for p in &projects {
            let name = p.metadata.name.as_str();
            let q = p.spec.quota.as_ref().expect("quota");
            let used = fleet.project_usage(name).unwrap_or_default();
            prop_assert!(used.cpu <= q.cpu.expect("cpu"), "{name}: {used:?} over {q:?}");
            prop_assert!(used.gpus <= q.gpus.expect("gpus"), "{name}: {used:?} over {q:?}");
            prop_assert!(used.instances <= q.instances.expect("n"), "{name}: {used:?} over {q:?}");
            for (model, limit) in &q.gpus_by_model {
                let n = used.gpus_by_model.get(model).copied().unwrap_or_default();
                prop_assert!(n <= *limit, "{name}: {model} {n} > {limit}");
            }
        }
        // Gangs: all members live or none, whatever was preempted.
        let mut per: BTreeMap<&str, (u32, usize)> = BTreeMap::new();
        for w in &workloads {
            if w.spec.gang.is_some() {
                per.insert(&w.metadata.name, (w.spec.replicas as u32, live(&fleet, &fleet_nodes, &w.metadata.name)));
            }
        }
        for (name, (size, alive)) in per {
            prop_assert!(alive == 0 || alive == size as usize, "gang {name}: {alive} of {size} live");
        }
        // Every unplaceable instance of a bounded project that is over names a reason.
        for d in decisions.iter().filter(|d| !d.is_placed()) {
            prop_assert!(!d.explanation().summary.is_empty());
        }
    }
}
