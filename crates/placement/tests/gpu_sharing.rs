//! Shared GPUs (issue 16): shares of one device (`gpu: {count: 0.25}`) packed onto
//! devices tracked one by one, device indexes in placements, GPUs that may not be shared,
//! quotas in milli-GPUs, and the fragmentation score (after Weng et al., "Beware of
//! Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent",
//! USENIX ATC 2023).

mod common;

use std::sync::Arc;

use api::{GpuCount, Node, Project, Site, Workload};
use common::{merge, node, site, workload};
use placement::{
    Batch, Decision, Fleet, GpuScoring, Options, Outcome, ReasonCode, TaskMix, place_batch,
};
use serde_json::{Value, json};

fn sites() -> Vec<Site> {
    vec![site("fra", "DE", json!({}))]
}

/// A node with 32 cores, 256Gi and the GPU groups `gpus` (`capacity.gpus`).
fn gpu_node(name: &str, gpus: Value) -> Node {
    node(
        name,
        "fra",
        json!({"spec": {"capacity": {"cpu": 32, "memory": "256Gi", "gpus": gpus}}}),
    )
}

/// A job of `replicas` instances, each 1 core, 1Gi and `gpu` (a `resources.gpu`).
fn job(name: &str, replicas: u32, gpu: Value) -> Workload {
    let mut v = serde_json::to_value(workload(name, json!({}))).unwrap();
    merge(
        &mut v,
        json!({"spec": {"type": "job", "replicas": replicas,
                        "task": {"resources": {"gpu": gpu}}}}),
    );
    serde_json::from_value(v).unwrap()
}

fn place(fleet: &mut Fleet, workloads: &[&Workload], opts: &Options) -> Vec<Decision> {
    let mut batch = Batch::new();
    for w in workloads {
        batch.add_all(w).unwrap();
    }
    place_batch(fleet, &batch, opts)
}

/// The device indexes a decision holds (empty when unplaceable).
fn devices(d: &Decision) -> Vec<u32> {
    d.placement()
        .and_then(|p| p.resources.gpu.as_ref())
        .map(|g| g.devices.clone())
        .unwrap_or_default()
}

#[test]
fn shares_pack_onto_one_device_before_the_next() {
    let mut fleet = Fleet::new(
        &sites(),
        &[gpu_node("n1", json!([{"model": "L4", "count": 2}]))],
    )
    .unwrap();
    let halves = job("halves", 3, json!({"count": 0.5}));
    let d = place(&mut fleet, &[&halves], &Options::default());
    let held: Vec<Vec<u32>> = d.iter().map(devices).collect();
    assert_eq!(
        held,
        [vec![0], vec![0], vec![1]],
        "two halves fill device 0 first"
    );
    let p = d[0].placement().unwrap();
    let g = p.resources.gpu.as_ref().unwrap();
    assert_eq!(
        (g.count, g.model.as_deref()),
        (GpuCount::from_milli(500), Some("L4"))
    );
    // Device 1 is half used and device 0 full: a whole GPU does not fit, half does.
    let whole = job("whole", 1, json!({"count": 1}));
    let d = place(&mut fleet, &[&whole], &Options::default());
    let Outcome::Unplaceable(e) = &d[0].outcome else {
        panic!("a whole GPU needs a device nobody uses: {:?}", d[0]);
    };
    assert_eq!(e.rejections[0].reason, ReasonCode::Gpu);
    assert!(
        e.rejections[0].message.contains("need 1, largest free 0"),
        "{}",
        e.render()
    );
    let half = job("half", 1, json!({"count": "500m"}));
    assert_eq!(
        devices(&place(&mut fleet, &[&half], &Options::default())[0]),
        [1]
    );
    let more = job("more", 1, json!({"count": 0.1}));
    let d = place(&mut fleet, &[&more], &Options::default());
    let Outcome::Unplaceable(e) = &d[0].outcome else {
        panic!("every device is full: {:?}", d[0]);
    };
    assert!(
        e.rejections[0].message.contains("need 0.1 of one GPU"),
        "{}",
        e.render()
    );
    let free = fleet.free("n1").unwrap();
    assert_eq!(free.gpus, [("L4".to_string(), 0)]);
    assert_eq!(free.gpu_shares, [("L4".to_string(), GpuCount::default())]);
}

#[test]
fn whole_gpus_take_free_devices_and_name_them_across_groups() {
    let n = gpu_node(
        "n1",
        json!([{"model": "L4", "count": 2}, {"model": "A100", "count": 3}]),
    );
    let mut fleet = Fleet::new(&sites(), &[n]).unwrap();
    let share = job("share", 1, json!({"count": 0.25, "model": "A100"}));
    let pair = job("pair", 2, json!({"count": 2, "model": "A100"}));
    let d = place(&mut fleet, &[&share, &pair], &Options::default());
    // Larger requests go first: the first pair takes A100s 0 and 1 of the group (node
    // devices 2 and 3); the second finds one free device and waits; the share takes
    // device 4.
    let by_name = |name: &str| {
        d.iter()
            .filter(|x| x.workload.name == name)
            .map(devices)
            .collect::<Vec<_>>()
    };
    assert_eq!(by_name("pair"), [vec![2, 3], vec![]]);
    assert_eq!(by_name("share"), [vec![4]]);
    assert_eq!(
        fleet.free("n1").unwrap().gpus,
        [("L4".to_string(), 2), ("A100".to_string(), 0)]
    );
}

#[test]
fn gpus_that_may_not_be_shared_refuse_shares_with_their_reason() {
    let locked = gpu_node(
        "a-locked",
        json!([{"model": "A100", "count": 8, "shareable": false}]),
    );
    let mut fleet = Fleet::new(&sites(), std::slice::from_ref(&locked)).unwrap();
    let share = job("share", 1, json!({"count": 0.5}));
    let d = place(&mut fleet, &[&share], &Options::default());
    let Outcome::Unplaceable(e) = &d[0].outcome else {
        panic!("no shareable GPU: {:?}", d[0]);
    };
    assert_eq!(e.rejections[0].reason, ReasonCode::GpuSharing);
    assert!(
        e.rejections[0]
            .message
            .starts_with("node GPUs of model A100 are not shareable"),
        "{}",
        e.render()
    );
    // Whole GPUs are fine there, and a share goes to GPUs that may be shared.
    let whole = job("whole", 1, json!({"count": 1}));
    assert_eq!(
        place(&mut fleet, &[&whole], &Options::default())[0].node(),
        Some("a-locked")
    );
    let open = gpu_node("b-open", json!([{"model": "L4", "count": 1}]));
    let mut fleet = Fleet::new(&sites(), &[locked, open]).unwrap();
    let d = place(&mut fleet, &[&share], &Options::default());
    assert_eq!(d[0].node(), Some("b-open"));
}

#[test]
fn quotas_count_shares_in_milli_gpus() {
    let project: Project = serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Project",
        "metadata": {"name": "p"}, "spec": {"quota": {"gpus": 1}}
    }))
    .unwrap();
    let mut fleet = Fleet::new(
        &sites(),
        &[gpu_node("n1", json!([{"model": "L4", "count": 4}]))],
    )
    .unwrap();
    let quarters = job("quarters", 5, json!({"count": 0.25}));
    let mut batch = Batch::new();
    batch.add_in_project(&quarters, &project, 0..5).unwrap();
    let d = place_batch(&mut fleet, &batch, &Options::default());
    let placed = d.iter().filter(|x| x.node().is_some()).count();
    assert_eq!(placed, 4, "a quota of 1 GPU admits four quarters, not five");
    let Outcome::Unplaceable(e) = &d[4].outcome else {
        panic!("the fifth waits: {:?}", d[4]);
    };
    assert_eq!(e.rejections[0].reason, ReasonCode::Quota);
    assert_eq!(
        e.rejections[0].message,
        "project p over its gpus quota: 1 used + 0.25 requested > 1"
    );
    let used = fleet.project_usage("p").unwrap();
    assert_eq!(used.gpus, GpuCount::whole(1));
    assert_eq!(used.gpus_by_model["L4"].to_string(), "1");
    // Every quarter on the same device.
    assert!(d.iter().take(4).all(|x| devices(x) == [0]));
}

#[test]
fn allocations_keep_their_devices_in_a_new_snapshot() {
    let nodes = [gpu_node("n1", json!([{"model": "L4", "count": 2}]))];
    let a: api::Allocation = serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Allocation",
        "metadata": {"name": "old-0", "namespace": "p"},
        "spec": {"workload": "old", "node": "n1",
                 "resources": {"cpu": 1, "memory": "1Gi",
                               "gpu": {"count": 0.5, "model": "L4", "devices": [1]}}},
        "status": {"phase": "running"}
    }))
    .unwrap();
    let mut fleet = Fleet::from_objects(&sites(), &nodes, &[a], []).unwrap();
    let whole = job("whole", 1, json!({"count": 1}));
    let half = job("half", 1, json!({"count": 0.5}));
    let d = place(&mut fleet, &[&whole, &half], &Options::default());
    assert_eq!(devices(&d[0]), [0], "device 1 holds the old share");
    assert_eq!(devices(&d[1]), [1], "the new half joins it");
}

/// Node `x-half`: one GPU, half of it used; node `y-busy`: one free GPU, 29 of its 32
/// cores used. A half-GPU task: best fit prefers the fuller `y-busy` (and strands half a
/// GPU on each node); fragmentation gradient descent fills `x-half`, leaving `y-busy`'s
/// GPU whole for the whole-GPU tasks that make up the mix.
#[test]
fn the_fragmentation_score_strands_fewer_gpus_than_best_fit() {
    let run = |scoring: GpuScoring| {
        let nodes = [
            gpu_node("x-half", json!([{"model": "L4", "count": 1}])),
            gpu_node("y-busy", json!([{"model": "L4", "count": 1}])),
        ];
        let mut fleet = Fleet::new(&sites(), &nodes).unwrap();
        let pin = |name: &str, node: &str, patch: Value| {
            let mut v = serde_json::to_value(workload(name, json!({}))).unwrap();
            merge(&mut v, patch);
            merge(
                &mut v,
                json!({"spec": {"placement": {"matchExpressions": [
                    {"key": "node.name", "operator": "In", "values": [node]}]}}}),
            );
            serde_json::from_value::<Workload>(v).unwrap()
        };
        let setup = [
            pin(
                "old-half",
                "x-half",
                json!({"spec": {"task": {"resources": {"gpu": {"count": 0.5}}}}}),
            ),
            pin(
                "old-cpu",
                "y-busy",
                json!({"spec": {"task": {"resources": {"cpu": 29}}}}),
            ),
        ];
        let d = place(&mut fleet, &[&setup[0], &setup[1]], &Options::default());
        assert!(d.iter().all(|x| x.node().is_some()), "{d:?}");
        let mut mix = TaskMix::new();
        mix.add(1000, 1 << 30, GpuCount::whole(1), 9);
        mix.add(1000, 1 << 30, GpuCount::from_milli(500), 1);
        let opts = Options {
            gpu_scoring: scoring,
            task_mix: Some(Arc::new(mix)),
            ..Options::default()
        };
        let half = job("half", 1, json!({"count": 0.5}));
        let d = place(&mut fleet, &[&half], &opts);
        let whole_free: u32 = ["x-half", "y-busy"]
            .iter()
            .map(|n| fleet.free(n).unwrap().gpus[0].1)
            .sum();
        (d[0].node().map(str::to_string), whole_free)
    };
    assert_eq!(
        run(GpuScoring::BestFit),
        (Some("y-busy".to_string()), 0),
        "best fit takes the fuller node and strands two halves"
    );
    assert_eq!(
        run(GpuScoring::Fragmentation),
        (Some("x-half".to_string()), 1),
        "fragmentation gradient descent keeps a whole GPU free"
    );
    assert_eq!(Options::default().gpu_scoring, GpuScoring::Fragmentation);
}

/// Work without GPUs on GPU nodes, with fragmentation scoring on: `a` keeps 8 free cores
/// and `b` 6; after a 4-core task `b` could no longer host the mix's 4-core GPU tasks,
/// so its GPU would be stranded. Best fit takes the fuller `b`; the fragmentation score
/// takes `a`.
#[test]
fn cpu_work_keeps_off_cores_that_gpu_tasks_need() {
    let run = |scoring: GpuScoring| {
        let nodes = [
            gpu_node("a", json!([{"model": "L4", "count": 1}])),
            gpu_node("b", json!([{"model": "L4", "count": 1}])),
        ];
        let mut fleet = Fleet::new(&sites(), &nodes).unwrap();
        for (name, node, cpu) in [("old-a", "a", 24), ("old-b", "b", 26)] {
            let mut v = serde_json::to_value(workload(name, json!({}))).unwrap();
            merge(
                &mut v,
                json!({"spec": {"task": {"resources": {"cpu": cpu}},
                                "placement": {"matchExpressions": [
                                    {"key": "node.name", "operator": "In", "values": [node]}]}}}),
            );
            let w: Workload = serde_json::from_value(v).unwrap();
            assert!(place(&mut fleet, &[&w], &Options::default())[0].node() == Some(node));
        }
        let mut mix = TaskMix::new();
        mix.add(4000, 1 << 30, GpuCount::whole(1), 1);
        let opts = Options {
            gpu_scoring: scoring,
            task_mix: Some(Arc::new(mix)),
            ..Options::default()
        };
        let mut v = serde_json::to_value(workload("batch", json!({}))).unwrap();
        merge(
            &mut v,
            json!({"spec": {"type": "job", "task": {"resources": {"cpu": 4}}}}),
        );
        let batch: Workload = serde_json::from_value(v).unwrap();
        place(&mut fleet, &[&batch], &opts)[0]
            .node()
            .map(str::to_string)
    };
    assert_eq!(run(GpuScoring::BestFit).as_deref(), Some("b"));
    assert_eq!(run(GpuScoring::Fragmentation).as_deref(), Some("a"));
}
