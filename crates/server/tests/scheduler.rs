//! The scheduler controller against a real store: places the example estate, never
//! double-books a node when two schedulers race, and keeps its explanations.

use std::collections::HashMap;

use serde_json::{Value, json};

use client::{Client, ListOptions};
use server::AppState;
use server::scheduler::{self, SchedulerOptions};

use testkit::{TestServer, kind, load_examples};

async fn allocations(c: &Client) -> Vec<Value> {
    c.list_all(kind("alloc"), None, &ListOptions::default())
        .await
        .expect("allocations")
}

fn millis(cpu: &str) -> u64 {
    cpu.parse::<api::Cpu>().expect("cpu").millis()
}

/// cpu requested per node never exceeds the node's allocatable cpu.
async fn assert_no_overcommit(c: &Client) {
    let nodes = c
        .list_all(kind("node"), None, &ListOptions::default())
        .await
        .expect("nodes");
    let mut capacity = HashMap::new();
    for n in &nodes {
        let alloc = n["spec"]
            .get("allocatable")
            .unwrap_or(&n["spec"]["capacity"]);
        capacity.insert(
            n["metadata"]["name"].as_str().expect("name").to_owned(),
            millis(alloc["cpu"].as_str().expect("cpu")),
        );
    }
    let mut used: HashMap<String, u64> = HashMap::new();
    for a in allocations(c).await {
        let node = a["spec"]["node"].as_str().expect("node").to_owned();
        *used.entry(node).or_default() +=
            millis(a["spec"]["resources"]["cpu"].as_str().expect("cpu"));
    }
    for (node, used) in used {
        assert!(
            used <= capacity[&node],
            "node {node} over-committed: {used}m > {}m",
            capacity[&node]
        );
    }
}

#[tokio::test]
async fn places_the_example_estate_with_explanations() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let report = scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    assert!(report.placed > 0, "{report:?}");
    assert_eq!(report.conflicts, 0);
    let allocs = allocations(&r.client).await;
    // Gang of 4 with H100s, EU only: Frankfurt's GPU node, never Zurich (CH).
    let llm: Vec<&Value> = allocs
        .iter()
        .filter(|a| a["spec"]["workload"] == "llm-finetune")
        .collect();
    assert_eq!(llm.len(), 4);
    assert!(
        llm.iter().all(|a| a["spec"]["site"] == "onprem-frankfurt"),
        "{llm:?}"
    );
    // Every allocation carries its explanation and a copy of the task.
    assert!(
        allocs
            .iter()
            .all(|a| a["spec"]["explanation"].is_object() && a["spec"]["task"].is_object())
    );
    // Workload status says how many are placed.
    let w = r
        .client
        .get(kind("wl"), Some("research"), "llm-finetune")
        .await
        .expect("wl");
    assert_eq!(w["status"]["placedReplicas"], 4);
    assert_eq!(w["status"]["desiredReplicas"], 4);
    // A second pass finds nothing to do.
    let again = scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    assert_eq!(again.placed, 0, "{again:?}");
    assert_no_overcommit(&r.client).await;

    // Scaling down removes the allocations beyond the count.
    r.client
        .patch(
            kind("wl"),
            Some("finance"),
            "payroll-api",
            client::PatchType::Merge,
            &json!({"spec": {"replicas": 1}}),
            false,
        )
        .await
        .expect("scale down");
    let report = scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(
        r.client
            .get(kind("alloc"), Some("finance"), "payroll-api-1")
            .await
            .is_err()
    );

    // explain answers for a placed workload with candidates or reasons.
    let explained = r
        .client
        .get_path("/apis/meridian.dev/v1/namespaces/research/workloads/llm-finetune/explain")
        .await
        .expect("explain");
    let e = &explained["explanation"];
    let rejected: u64 = e["rejections"]
        .as_array()
        .expect("rejections")
        .iter()
        .map(|r| r["nodes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        rejected + e["passed"].as_u64().expect("passed"),
        e["nodes"].as_u64().expect("nodes"),
        "reason counts add up: {e}"
    );
}

#[tokio::test]
async fn an_unplaceable_workload_says_why() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let too_big = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "too-big", "namespace": "finance"},
        "spec": {"type": "service", "replicas": 1,
                 "task": {"driver": "exec", "command": ["/bin/true"], "resources": {"cpu": "4000", "memory": "1Gi"}},
                 "data": {"classification": "personal", "residency": ["EU"]}}
    });
    r.client
        .create(kind("wl"), Some("finance"), &too_big, false)
        .await
        .expect("create");
    let report = scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    assert!(report.unplaceable >= 1, "{report:?}");
    let w = r
        .client
        .get(kind("wl"), Some("finance"), "too-big")
        .await
        .expect("get");
    assert_eq!(w["status"]["placedReplicas"], 0);
    let message = w["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("cpu"),
        "the message names the missing resource: {message}"
    );
    // plan shows the same without writing anything.
    let plan = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/plan",
            Some(&json!([too_big])),
        )
        .await
        .expect("plan");
    assert_eq!(plan["decisions"][0]["outcome"]["result"], "unplaceable");
    let before = allocations(&r.client).await.len();
    let _ = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/plan",
            Some(&json!([too_big])),
        )
        .await;
    assert_eq!(
        allocations(&r.client).await.len(),
        before,
        "plan writes nothing"
    );
}

#[tokio::test]
async fn racing_schedulers_never_double_book() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    // Many small services competing for the same few EU Linux nodes.
    for i in 0..12 {
        let w = json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": format!("svc-{i}"), "namespace": "finance"},
            "spec": {"type": "service", "replicas": 3,
                     "task": {"driver": "exec", "command": ["/bin/sleep", "1"], "resources": {"cpu": "6", "memory": "8Gi"}},
                     "data": {"classification": "internal", "residency": ["EU"]}}
        });
        r.client
            .create(kind("wl"), Some("finance"), &w, false)
            .await
            .expect("create");
    }
    // Two schedulers, several rounds each, at the same time.
    let (a, b) = (r.state.clone(), r.state.clone());
    let run = |state: AppState| async move {
        let mut conflicts = 0;
        for _ in 0..4 {
            let report = scheduler::pass(&state, &SchedulerOptions::default())
                .await
                .expect("pass");
            conflicts += report.conflicts;
        }
        conflicts
    };
    let (ca, cb) = tokio::join!(tokio::spawn(run(a)), tokio::spawn(run(b)));
    let _ = (ca.expect("a"), cb.expect("b"));
    assert_no_overcommit(&r.client).await;
    // No instance placed twice: names are unique by construction; check the count.
    let allocs = allocations(&r.client).await;
    let mut names: Vec<String> = allocs
        .iter()
        .map(|a| format!("{}/{}", a["metadata"]["namespace"], a["metadata"]["name"]))
        .collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total);
    // The audit chain still verifies after concurrent multi-object transactions.
    let verify = r
        .client
        .get_path("/meridian/v1/audit/verify")
        .await
        .expect("verify");
    assert_eq!(verify["ok"], true, "{verify}");
}

/// Where each instance of `workload` runs: replica → node.
async fn placements_of(c: &Client, workload: &str) -> HashMap<u64, String> {
    allocations(c)
        .await
        .iter()
        .filter(|a| a["spec"]["workload"] == workload)
        .map(|a| {
            (
                a["spec"]["replica"].as_u64().expect("replica"),
                a["spec"]["node"].as_str().expect("node").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn service_instances_on_a_lost_or_deleted_node_are_placed_again_elsewhere() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    scheduler::pass(&r.state, &options).await.expect("pass");
    let before = placements_of(&r.client, "payroll-api").await;
    assert_eq!(before.len(), 2, "{before:?}");
    let lost = before[&0].clone();

    // The node-lifecycle controller (or an operator) marks the node Lost.
    let mut node = r.client.get(kind("node"), None, &lost).await.expect("node");
    node["status"] = json!({"phase": "Lost"});
    r.client
        .replace_status(kind("node"), None, &lost, &node)
        .await
        .expect("status");
    let report = scheduler::pass(&r.state, &options).await.expect("pass");
    assert!(report.rescheduled >= 1, "{report:?}");
    let after = placements_of(&r.client, "payroll-api").await;
    assert_eq!(after.len(), 2, "both replicas placed again: {after:?}");
    assert!(after.values().all(|n| *n != lost), "{after:?}");
    assert_no_overcommit(&r.client).await;
    // A second pass changes nothing: the state is stable.
    let again = scheduler::pass(&r.state, &options).await.expect("pass");
    assert_eq!(
        (again.placed, again.rescheduled, again.conflicts),
        (0, 0, 0),
        "{again:?}"
    );

    // A deleted node: its instances are placed again too, and passes keep working.
    let gone = after[&0].clone();
    r.client
        .delete(kind("node"), None, &gone)
        .await
        .expect("deleted");
    let report = scheduler::pass(&r.state, &options).await.expect("pass");
    assert!(report.rescheduled >= 1, "{report:?}");
    let last = placements_of(&r.client, "payroll-api").await;
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(last.values().all(|n| *n != gone && *n != lost), "{last:?}");
}

#[tokio::test]
async fn a_workload_that_does_not_fit_waits_for_a_change_before_it_is_planned_again() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let mut memory = scheduler::PassCache::default();
    let mut pass = async || {
        scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass")
    };
    let first = pass().await;
    assert!(first.placed > 0, "{first:?}");
    assert_eq!((first.unplaceable, first.waiting), (1, 0), "{first:?}");

    // The first pass placed the rest (a fleet change), so the second plans it again, and
    // so does the third: the second wrote the nodes' and projects' usage (a fleet change
    // too). The status it wrote is not a change. Then it waits, and its status keeps
    // saying why.
    let second = pass().await;
    assert_eq!((second.unplaceable, second.waiting), (1, 0), "{second:?}");
    assert!(second.usage_written > 0, "{second:?}");
    let third = pass().await;
    assert_eq!(
        (third.unplaceable, third.usage_written),
        (1, 0),
        "{third:?}"
    );
    let report = pass().await;
    assert_eq!(
        (
            report.pending,
            report.unplaceable,
            report.waiting,
            report.placed
        ),
        (1, 1, 1, 0),
        "{report:?}"
    );
    let status = |w: Value| {
        w["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before = status(
        r.client
            .get(kind("wl"), Some("finance"), "fraud-model-train")
            .await
            .expect("workload"),
    );
    assert!(!before.is_empty(), "fraud-model-train says why it waits");
    let report = pass().await;
    assert_eq!(report.waiting, 1, "{report:?}");
    let after = status(
        r.client
            .get(kind("wl"), Some("finance"), "fraud-model-train")
            .await
            .expect("workload"),
    );
    assert_eq!(before, after, "a waiting workload keeps its explanation");

    // Any change to the fleet plans it again (here a site's label)...
    r.client
        .patch(
            kind("site"),
            None,
            "onprem-frankfurt",
            client::PatchType::Merge,
            &json!({"metadata": {"labels": {"rack": "b7"}}}),
            false,
        )
        .await
        .expect("label the site");
    let report = pass().await;
    assert_eq!((report.unplaceable, report.waiting), (1, 0), "{report:?}");
    assert_eq!(pass().await.waiting, 1);

    // ...and so does a change to the workload, which the pass sees as it is now.
    for replicas in [2, 1] {
        r.client
            .patch(
                kind("wl"),
                Some("finance"),
                "fraud-model-train",
                client::PatchType::Merge,
                &json!({"spec": {"replicas": replicas}}),
                false,
            )
            .await
            .expect("scale");
        let report = pass().await;
        assert_eq!(
            (report.pending, report.waiting),
            (replicas, 0),
            "{report:?}"
        );
    }
    let report = pass().await;
    assert_eq!(report.waiting, 1, "{report:?}");

    // ...and freeing the H100s it needs places it.
    r.client
        .delete(kind("wl"), Some("research"), "llm-finetune")
        .await
        .expect("delete llm-finetune");
    let freed = pass().await;
    assert_eq!(freed.removed, 4, "{freed:?}");
    let placed = pass().await;
    assert_eq!((placed.placed, placed.waiting), (1, 0), "{placed:?}");
    assert!(
        allocations(&r.client)
            .await
            .iter()
            .any(|a| a["spec"]["workload"] == "fraud-model-train")
    );
}
