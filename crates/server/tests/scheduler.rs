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

// -- quotas and gangs (issue 16) -----------------------------------------------------------

/// A job in project `ns`: `replicas` instances of `cpu` cores and 1Gi, on Linux.
fn quota_job(ns: &str, name: &str, replicas: u32, cpu: u32) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "job", "replicas": replicas,
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": cpu, "memory": "1Gi"},
                          "os": {"family": "linux"}},
                 "data": {"classification": "internal"}}
    })
}

fn placed_of(allocs: &[Value], workload: &str) -> usize {
    allocs
        .iter()
        .filter(|a| a["spec"]["workload"] == workload)
        .count()
}

#[tokio::test]
async fn work_over_quota_waits_and_starts_once_quota_frees() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    r.client
        .create(
            kind("project"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
                    "metadata": {"name": "lab"},
                    "spec": {"quota": {"cpu": 3, "instances": 5}}}),
            false,
        )
        .await
        .expect("project");
    // Accepted at create (quota is not an admission rule)...
    for w in [
        quota_job("lab", "first", 1, 2),
        quota_job("lab", "second", 1, 2),
    ] {
        r.client
            .create(kind("wl"), Some("lab"), &w, false)
            .await
            .expect("create: over quota is accepted and waits");
    }
    pass().await;
    let allocs = allocations(&r.client).await;
    // Largest first, then batch (key) order: "first" gets the quota, "second" waits.
    assert_eq!(placed_of(&allocs, "first"), 1);
    assert_eq!(placed_of(&allocs, "second"), 0);
    let w = r
        .client
        .get(kind("wl"), Some("lab"), "second")
        .await
        .expect("get");
    let message = w["status"]["message"].as_str().expect("message");
    assert_eq!(
        message,
        "waiting for quota: project lab over its cpu quota: 2 used + 2 requested > 3"
    );
    let condition = w["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == scheduler::QUOTA_RESERVED)
        .expect("QuotaReserved condition")
        .clone();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "OverQuota");
    // Usage never exceeds the quota, and the project says what it uses.
    pass().await;
    let lab = r
        .client
        .get(kind("project"), None, "lab")
        .await
        .expect("lab");
    assert_eq!(lab["status"]["used"]["cpu"], "2", "{lab}");
    assert_eq!(lab["status"]["used"]["instances"], 1, "{lab}");

    // Deleting the first frees the quota: the second is placed, its condition gone.
    r.client
        .delete(kind("wl"), Some("lab"), "first")
        .await
        .expect("delete");
    pass().await;
    pass().await;
    let allocs = allocations(&r.client).await;
    assert_eq!(placed_of(&allocs, "first"), 0);
    assert_eq!(placed_of(&allocs, "second"), 1);
    let w = r
        .client
        .get(kind("wl"), Some("lab"), "second")
        .await
        .expect("get");
    let has_condition = w["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == scheduler::QUOTA_RESERVED));
    assert!(!has_condition, "{w}");

    // Lowering the quota below usage evicts nothing; the project says so, and new
    // work waits.
    r.client
        .patch(
            kind("project"),
            None,
            "lab",
            client::PatchType::Merge,
            &json!({"spec": {"quota": {"cpu": 1}}}),
            false,
        )
        .await
        .expect("lower the quota");
    r.client
        .create(
            kind("wl"),
            Some("lab"),
            &quota_job("lab", "third", 1, 1),
            false,
        )
        .await
        .expect("create");
    pass().await;
    let allocs = allocations(&r.client).await;
    assert_eq!(placed_of(&allocs, "second"), 1, "nothing is evicted");
    assert_eq!(placed_of(&allocs, "third"), 0);
    let lab = r
        .client
        .get(kind("project"), None, "lab")
        .await
        .expect("lab");
    let over = lab["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "OverQuota"))
        .unwrap_or_else(|| panic!("OverQuota condition: {lab}"));
    assert_eq!(over["status"], "True");
    assert!(
        over["message"]
            .as_str()
            .is_some_and(|m| m.contains("cpu 2 > 1") && m.contains("nothing is evicted")),
        "{over}"
    );
}

/// The reported defect through the real scheduler: higher-priority work that needs one
/// gang member's GPUs preempts the whole gang, never part of it.
#[tokio::test]
async fn preemption_never_leaves_a_gang_partly_placed() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    pass().await;
    // llm-finetune: a gang of 4 × 2 H100s filling Frankfurt's GPU node (the only H100s
    // in the EU).
    assert_eq!(placed_of(&allocations(&r.client).await, "llm-finetune"), 4);
    let urgent = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "urgent-inference", "namespace": "default"},
        "spec": {"type": "job", "replicas": 1, "priority": 1000,
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": 4, "memory": "16Gi",
                                        "gpu": {"count": 2, "model": "H100"}},
                          "os": {"family": "linux"}},
                 "data": {"classification": "internal", "residency": ["EU"]},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    });
    r.client
        .create(kind("wl"), Some("default"), &urgent, false)
        .await
        .expect("create");
    let report = pass().await;
    assert_eq!(report.preempted, 4, "the whole gang: {report:?}");
    let allocs = allocations(&r.client).await;
    assert_eq!(placed_of(&allocs, "urgent-inference"), 1);
    assert_eq!(placed_of(&allocs, "llm-finetune"), 0);
    // The gang, placed again as a unit, does not fit in the 6 H100s left: it waits whole.
    pass().await;
    pass().await;
    let allocs = allocations(&r.client).await;
    assert_eq!(placed_of(&allocs, "llm-finetune"), 0);
    let w = r
        .client
        .get(kind("wl"), Some("research"), "llm-finetune")
        .await
        .expect("get");
    let message = w["status"]["message"].as_str().expect("message");
    assert!(message.starts_with("gang cannot be placed"), "{message}");
}

/// A site `lab` (DE) with three 8-core Linux nodes, ready, and a gang job `train` of
/// two 6-core members in project `default`, placed.
async fn gang_estate(r: &TestServer) {
    r.client
        .create(
            kind("site"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Site", "metadata": {"name": "lab"},
                    "spec": {"provider": "onprem", "region": "lab", "jurisdiction": "DE"}}),
            false,
        )
        .await
        .expect("site");
    for n in ["n1", "n2", "n3"] {
        r.client
            .create(
                kind("node"),
                None,
                &json!({"apiVersion": "meridian.dev/v1", "kind": "Node", "metadata": {"name": n},
                        "spec": {"site": "lab", "os": {"family": "linux"}, "arch": "amd64",
                                 "capacity": {"cpu": 8, "memory": "32Gi"}, "drivers": ["exec"]}}),
                false,
            )
            .await
            .expect("node");
        testkit::mark_ready(&r.client, n).await;
    }
    let mut train = quota_job("default", "train", 2, 6);
    train["spec"]["gang"] = json!(2);
    r.client
        .create(kind("wl"), Some("default"), &train, false)
        .await
        .expect("gang");
}

/// (name, node, uid) of the gang's allocations.
async fn gang_members(c: &Client) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = allocations(c)
        .await
        .iter()
        .filter(|a| a["spec"]["workload"] == "train")
        .map(|a| {
            (
                a["metadata"]["name"].as_str().expect("name").to_owned(),
                a["spec"]["node"].as_str().expect("node").to_owned(),
                a["metadata"]["uid"].as_str().expect("uid").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_gang_member_on_a_lost_node_takes_the_whole_gang_with_it() {
    let r = TestServer::start().await;
    gang_estate(&r).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    pass().await;
    let before = gang_members(&r.client).await;
    assert_eq!(before.len(), 2, "{before:?}");
    let lost = before[0].1.clone();
    let mut node = r.client.get(kind("node"), None, &lost).await.expect("node");
    node["status"]["phase"] = json!("Lost");
    r.client
        .replace_status(kind("node"), None, &lost, &node)
        .await
        .expect("lost");
    let report = pass().await;
    assert_eq!(report.rescheduled, 2, "both members released: {report:?}");
    let after = gang_members(&r.client).await;
    assert_eq!(after.len(), 2, "placed again as a unit: {after:?}");
    assert!(after.iter().all(|(_, n, _)| *n != lost), "{after:?}");
    assert!(
        after
            .iter()
            .all(|(_, _, uid)| before.iter().all(|b| b.2 != *uid)),
        "every member is a new allocation: {before:?} → {after:?}"
    );
}

#[tokio::test]
async fn a_gang_that_cannot_be_completed_is_released_whole() {
    let r = TestServer::start().await;
    gang_estate(&r).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    pass().await;
    let members = gang_members(&r.client).await;
    assert_eq!(members.len(), 2, "{members:?}");
    // One member's allocation is deleted by hand, and higher-priority work that arrives
    // at once takes its room: the member cannot come back.
    r.client
        .delete(kind("alloc"), Some("default"), &members[0].0)
        .await
        .expect("delete a member");
    let mut hog = quota_job("default", "hog", 1, 4);
    hog["spec"]["priority"] = json!(100);
    r.client
        .create(kind("wl"), Some("default"), &hog, false)
        .await
        .expect("hog");
    // n3 is cordoned, so only the freed room is left for the missing member.
    let mut n3 = r.client.get(kind("node"), None, "n3").await.expect("n3");
    n3["spec"]["unschedulable"] = json!(true);
    r.client
        .replace(kind("node"), None, "n3", &n3)
        .await
        .expect("cordon");
    let report = pass().await;
    assert_eq!(placed_of(&allocations(&r.client).await, "hog"), 1);
    assert_eq!(report.gang_released, 1, "{report:?}");
    assert!(gang_members(&r.client).await.is_empty());
    let w = r
        .client
        .get(kind("wl"), Some("default"), "train")
        .await
        .expect("get");
    let message = w["status"]["message"].as_str().expect("message");
    assert!(message.starts_with("gang cannot be placed"), "{message}");
}

/// `POST /meridian/v1/plan` with `reserved`: the room held there is taken before the
/// items are placed (a caller chaining bodies sees what its earlier answers used), and a
/// reservation that is unknown, too large or malformed is refused naming it.
#[tokio::test]
async fn a_plan_holds_the_reserved_room_first() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let w = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "probe", "namespace": "finance"},
        "spec": {"type": "service", "replicas": 1,
                 "task": {"driver": "exec", "command": ["/bin/true"], "resources": {"cpu": "1", "memory": "1Gi"}}}
    });
    let plan = |body: Value| {
        let c = r.client.clone();
        async move {
            c.request_json(client::Method::POST, "/meridian/v1/plan", Some(&body))
                .await
        }
    };
    let first = plan(json!({"items": [w]})).await.expect("plan");
    let node = first["decisions"][0]["outcome"]["node"]
        .as_str()
        .expect("placed")
        .to_string();
    let n = r.client.get(kind("node"), None, &node).await.expect("node");
    let allocatable = match &n["spec"]["allocatable"] {
        Value::Null => n["spec"]["capacity"].clone(),
        a => a.clone(),
    };
    // The whole node held: the same workload goes elsewhere.
    let held = plan(
        json!({"items": [w], "reserved": [{"node": node, "resources": {
        "cpu": allocatable["cpu"], "memory": allocatable["memory"]}}]}),
    )
    .await
    .expect("plan");
    assert_ne!(
        held["decisions"][0]["outcome"]["node"], node,
        "the reserved node is full: {held}"
    );
    for (reserved, wanted) in [
        (
            json!([{"node": "nope", "resources": {"cpu": "1", "memory": "1Gi"}}]),
            "nope",
        ),
        (
            json!([{"node": node, "resources": {"cpu": "100000", "memory": "1Gi"}}]),
            "insufficient cpu",
        ),
        (json!([{"nod": node}]), "reserved:"),
    ] {
        let err = plan(json!({"items": [w], "reserved": reserved}))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some(400), "{err}");
        assert!(err.to_string().contains(wanted), "{wanted} in {err}");
        if wanted != "reserved:" {
            assert!(err.to_string().contains("reserved[0]"), "{err}");
        }
    }
}

/// A pass writes workload statuses many per transaction, each with its own audit entry:
/// 300 statuses take a handful of revisions, not 300, and the audit chain still verifies
/// with an entry per workload.
#[tokio::test]
async fn statuses_are_written_many_per_transaction_each_audited() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    const COUNT: usize = 300;
    for i in 0..COUNT {
        let mut w = quota_job("finance", &format!("too-big-{i}"), 1, 4000);
        w["spec"]["type"] = json!("service");
        r.client
            .create(kind("wl"), Some("finance"), &w, false)
            .await
            .expect("create");
    }
    let audit_before = audit_entries(&r).await;
    let report = scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    assert!(report.unplaceable >= COUNT, "{report:?}");
    let listed = r
        .client
        .list_all(kind("wl"), Some("finance"), &ListOptions::default())
        .await
        .expect("workloads");
    let mut revisions = std::collections::BTreeSet::new();
    for w in listed.iter().filter(|w| {
        w["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("too-big-"))
    }) {
        let message = w["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("cpu"), "every status says why: {w}");
        revisions.insert(w["metadata"]["resourceVersion"].to_string());
    }
    assert!(
        revisions.len() <= COUNT.div_ceil(128),
        "300 statuses in {} transactions",
        revisions.len()
    );
    let verify = r
        .client
        .request_json(client::Method::GET, "/meridian/v1/audit/verify", None)
        .await
        .expect("verify");
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(
        audit_entries(&r).await >= audit_before + COUNT as u64,
        "an audit entry per status written"
    );
}

async fn audit_entries(r: &TestServer) -> u64 {
    let verify = r
        .client
        .request_json(client::Method::GET, "/meridian/v1/audit/verify", None)
        .await
        .expect("verify");
    verify["entries"]
        .as_u64()
        .expect("entries in the verify answer")
}

/// One site and one ready 16-core node, `n0`.
async fn one_node(c: &Client) {
    c.create(
        kind("site"),
        None,
        &json!({"apiVersion": "meridian.dev/v1", "kind": "Site",
                "metadata": {"name": "fra"},
                "spec": {"provider": "onprem", "jurisdiction": "DE"}}),
        false,
    )
    .await
    .expect("site");
    c.create(
        kind("node"),
        None,
        &json!({"apiVersion": "meridian.dev/v1", "kind": "Node",
                "metadata": {"name": "n0"},
                "spec": {"site": "fra", "os": {"family": "linux"}, "arch": "amd64",
                         "drivers": ["exec"], "capacity": {"cpu": "16", "memory": "64Gi"}}}),
        false,
    )
    .await
    .expect("node");
    testkit::mark_ready(c, "n0").await;
}

/// A single-task service of `replicas` instances of `cpu` each, at `priority`.
fn service(name: &str, replicas: u32, priority: i32, cpu: &str) -> Value {
    json!({"apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "service", "replicas": replicas, "priority": priority,
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": cpu, "memory": "256Mi"}}}})
}

/// A pass starts at most `max_starts_per_pass` new instances: the highest priority
/// first, a workload's instances together, the rest in later passes; a workload larger
/// than the limit goes alone. What waits for a later pass has no status written yet.
/// (`x-huge`, last by name, is not even planned in the second pass: it waited in the first
/// and would again.)
#[tokio::test]
async fn a_pass_starts_at_most_its_limit_highest_priority_first() {
    let r = TestServer::start().await;
    let c = &r.client;
    one_node(c).await;
    for (name, replicas, priority) in [
        ("w0", 1, 0),
        ("w1", 1, 0),
        ("w2", 1, 5),
        ("big", 3, 7),
        ("w3", 1, 0),
        ("w4", 1, 9),
        ("x-huge", 6, -1),
    ] {
        let w = service(name, replicas, priority, "500m");
        c.create(kind("wl"), Some("default"), &w, false)
            .await
            .expect("workload");
    }
    let options = SchedulerOptions {
        max_starts_per_pass: 4,
        ..SchedulerOptions::default()
    };
    let mut memory = scheduler::PassCache::default();
    let mut placed_by_pass = Vec::new();
    for _ in 0..3 {
        let report = scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass");
        let allocs = allocations(c).await;
        let mut placed: Vec<String> = ["w0", "w1", "w2", "w3", "w4", "big", "x-huge"]
            .into_iter()
            .filter(|w| placed_of(&allocs, w) > 0)
            .map(str::to_owned)
            .collect();
        placed.sort();
        placed_by_pass.push((report.placed, report.deferred, report.pending, placed));
        if placed_by_pass.len() == 1 {
            let waiting = c.get(kind("wl"), Some("default"), "w0").await.expect("w0");
            assert!(waiting["status"].is_null(), "no status yet: {waiting}");
        }
    }
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        placed_by_pass,
        vec![
            (4, 10, 14, names(&["big", "w4"])),
            (4, 6, 10, names(&["big", "w0", "w1", "w2", "w3", "w4"])),
            (
                6,
                0,
                6,
                names(&["big", "w0", "w1", "w2", "w3", "w4", "x-huge"])
            ),
        ]
    );
    assert_eq!(allocations(c).await.len(), 14);
}

/// What does not fit takes no share of the limit once it waits for the fleet to change:
/// higher-priority instances that never fit do not starve lower-priority ones that do.
#[tokio::test]
async fn what_cannot_fit_does_not_hold_the_limit() {
    let r = TestServer::start().await;
    let c = &r.client;
    one_node(c).await;
    for w in [
        service("too-big", 2, 9, "100"),
        service("a", 1, 0, "500m"),
        service("b", 1, 0, "500m"),
    ] {
        c.create(kind("wl"), Some("default"), &w, false)
            .await
            .expect("workload");
    }
    let options = SchedulerOptions {
        max_starts_per_pass: 2,
        ..SchedulerOptions::default()
    };
    let mut memory = scheduler::PassCache::default();
    let mut reports = Vec::new();
    for _ in 0..5 {
        let report = scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass");
        reports.push(report);
        let allocs = allocations(c).await;
        if placed_of(&allocs, "a") == 1 && placed_of(&allocs, "b") == 1 {
            assert_eq!(placed_of(&allocs, "too-big"), 0);
            return;
        }
    }
    panic!("a and b never placed: {reports:#?}");
}
