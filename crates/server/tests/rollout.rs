//! Rollouts against a real server and store: a changed workload is rolled out within
//! its surge and unavailability limits, a failing revision stops and reverts, undo and
//! pause work, and the workload, node and project status are true. Scheduler passes are
//! driven by the test; an "agent" here reports every allocation of the test's choosing
//! as running (or failed), through the API as an agent would.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use client::{Client, ListOptions, PatchType};
use server::scheduler::{self, PassCache, SchedulerOptions};

use testkit::{TestServer, kind};

async fn start() -> TestServer {
    TestServer::start().await
}

async fn estate(c: &Client) {
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
    for i in 0..3 {
        c.create(
            kind("node"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Node",
                    "metadata": {"name": format!("n{i}")},
                    "spec": {"site": "fra", "os": {"family": "linux"}, "arch": "amd64",
                             "drivers": ["exec"],
                             "capacity": {"cpu": "8", "memory": "16Gi"}}}),
            false,
        )
        .await
        .expect("node");
        testkit::mark_ready(c, &format!("n{i}")).await;
    }
}

fn service(replicas: i32, command: &str, update: Value) -> Value {
    json!({"apiVersion": "meridian.dev/v1", "kind": "Workload",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "service", "replicas": replicas, "update": update,
                    "task": {"driver": "exec", "command": [command],
                             "resources": {"cpu": "500m", "memory": "256Mi"}}}})
}

async fn allocations(c: &Client) -> Vec<Value> {
    c.list_all(kind("alloc"), Some("default"), &ListOptions::default())
        .await
        .expect("allocations")
}

async fn workload(c: &Client) -> Value {
    c.get(kind("workload"), Some("default"), "web")
        .await
        .expect("workload")
}

/// Reports every pending allocation as running, or failed when its command is
/// `/bin/broken`, as an agent would.
async fn agent_step(c: &Client) {
    for a in allocations(c).await {
        if a["status"]["phase"] != "pending" {
            continue;
        }
        let broken = a["spec"]["task"]["command"][0] == "/bin/broken";
        let job = a["spec"]["type"] == "job";
        let mut a = a.clone();
        a["status"] = if job && !broken {
            json!({"phase": "succeeded", "exitCode": 0, "startedAt": "2026-01-01T00:00:00Z",
                   "finishedAt": "2026-01-01T00:00:01Z"})
        } else if broken {
            json!({"phase": "failed", "exitCode": 1, "startedAt": "2026-01-01T00:00:00Z",
                   "finishedAt": "2026-01-01T00:00:01Z"})
        } else {
            json!({"phase": "running", "startedAt": "2026-01-01T00:00:00Z"})
        };
        let name = a["metadata"]["name"].as_str().expect("name").to_owned();
        c.replace_status(kind("alloc"), Some("default"), &name, &a)
            .await
            .expect("status");
    }
}

fn running(allocs: &[Value]) -> usize {
    allocs
        .iter()
        .filter(|a| a["status"]["phase"] == "running")
        .count()
}

/// Passes and agent steps until nothing changes; returns the fewest running instances
/// seen between steps.
async fn settle(r: &TestServer, memory: &mut PassCache) -> usize {
    let options = SchedulerOptions::default();
    let mut least = usize::MAX;
    let mut quiet = 0;
    for _ in 0..60 {
        let report = scheduler::pass_with(&r.state, &options, memory)
            .await
            .expect("pass");
        least = least.min(running(&allocations(&r.client).await));
        agent_step(&r.client).await;
        if report.placed == 0 && report.removed == 0 {
            quiet += 1;
            if quiet == 3 {
                return least;
            }
        } else {
            quiet = 0;
        }
    }
    panic!("no steady state after 60 passes");
}

#[tokio::test]
async fn a_changed_command_is_rolled_out_within_its_limits() {
    let r = start().await;
    estate(&r.client).await;
    let mut memory = PassCache::default();
    r.client
        .create(
            kind("workload"),
            Some("default"),
            &service(6, "/bin/v1", json!({"maxSurge": 1, "maxUnavailable": 1})),
            false,
        )
        .await
        .expect("create");
    settle(&r, &mut memory).await;
    let w = workload(&r.client).await;
    assert_eq!(w["status"]["availableReplicas"], 6, "{w:#}");
    assert_eq!(w["status"]["currentRevision"], 1);
    assert_eq!(w["status"]["runningReplicas"], 6);

    // Node and project usage are written from the allocations: 6 x 500m over 3 nodes.
    let nodes = r
        .client
        .list_all(kind("node"), None, &ListOptions::default())
        .await
        .expect("nodes");
    let total: u64 = nodes
        .iter()
        .map(|n| {
            n["status"]["allocated"]["cpu"]
                .as_str()
                .map_or(0, |c| c.parse::<api::Cpu>().expect("cpu").millis())
        })
        .sum();
    assert_eq!(total, 3000, "{nodes:#?}");
    let project = r
        .client
        .get(kind("project"), None, "default")
        .await
        .expect("project");
    assert_eq!(project["status"]["used"]["cpu"], "3", "{project:#}");

    // Scaling rolls nothing out.
    r.client
        .patch(
            kind("workload"),
            Some("default"),
            "web",
            PatchType::Merge,
            &json!({"spec": {"replicas": 7}}),
            false,
        )
        .await
        .expect("scale");
    settle(&r, &mut memory).await;
    let allocs = allocations(&r.client).await;
    assert_eq!(allocs.len(), 7);
    assert!(
        allocs.iter().all(|a| a["spec"]["revision"] == 1),
        "{allocs:#?}"
    );

    // A new command: replaced a few at a time, never fewer than 7 - 1 running.
    r.client
        .patch(
            kind("workload"),
            Some("default"),
            "web",
            PatchType::Merge,
            &json!({"spec": {"task": {"command": ["/bin/v2"]}}}),
            false,
        )
        .await
        .expect("change");
    let least = settle(&r, &mut memory).await;
    assert!(least >= 6, "availability fell to {least}");
    let allocs = allocations(&r.client).await;
    assert_eq!(allocs.len(), 7);
    for a in &allocs {
        assert_eq!(a["spec"]["task"]["command"][0], "/bin/v2", "{a:#}");
        assert_eq!(a["spec"]["revision"], 2);
        assert!(
            a["metadata"]["name"]
                .as_str()
                .expect("name")
                .ends_with("-r2"),
            "{a:#}"
        );
    }
    let w = workload(&r.client).await;
    let s = &w["status"];
    assert_eq!(
        (s["updatedReplicas"].clone(), s["availableReplicas"].clone()),
        (json!(7), json!(7)),
        "{w:#}"
    );
    assert_eq!(s["currentRevision"], 2);
    assert_eq!(s["observedGeneration"], w["metadata"]["generation"]);
    let conditions: BTreeMap<String, Value> = s["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| (c["type"].as_str().expect("type").to_owned(), c.clone()))
        .collect();
    assert_eq!(conditions["Progressing"]["reason"], "NewRevisionAvailable");
    assert_eq!(conditions["Available"]["status"], "True");
    assert_eq!(s["history"].as_array().expect("history").len(), 2);

    // What happened is in events: on the workload, the rollout's steps; on allocations,
    // where they were scheduled.
    r.state.events.flush().await;
    let events = r
        .client
        .list_all(
            kind("event"),
            Some("default"),
            &ListOptions {
                field_selector: Some("involvedObject.name=web".into()),
                ..ListOptions::default()
            },
        )
        .await
        .expect("events");
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    for want in ["RevisionRecorded", "RolloutStep", "RolloutComplete"] {
        assert!(reasons.contains(&want), "{want} in {reasons:?}");
    }
    let scheduled = r
        .client
        .list_all(
            kind("event"),
            Some("default"),
            &ListOptions {
                field_selector: Some("reason=Scheduled".into()),
                ..ListOptions::default()
            },
        )
        .await
        .expect("events");
    assert!(scheduled.len() >= 14, "{scheduled:#?}");
    assert!(
        scheduled
            .iter()
            .all(|e| e["involvedObject"]["kind"] == "Allocation"
                && e["message"].as_str().is_some_and(|m| m.contains(" to n"))),
        "{scheduled:#?}"
    );
}

#[tokio::test]
async fn a_failing_revision_stops_and_auto_reverts() {
    let r = start().await;
    estate(&r.client).await;
    let mut memory = PassCache::default();
    r.client
        .create(
            kind("workload"),
            Some("default"),
            &service(4, "/bin/v1", json!({"autoRevert": true})),
            false,
        )
        .await
        .expect("create");
    settle(&r, &mut memory).await;
    r.client
        .patch(
            kind("workload"),
            Some("default"),
            "web",
            PatchType::Merge,
            &json!({"spec": {"task": {"command": ["/bin/broken"]}}}),
            false,
        )
        .await
        .expect("change");
    let least = settle(&r, &mut memory).await;
    // 25% of 4: one instance may be unavailable.
    assert!(least >= 3, "availability fell to {least}");
    let w = workload(&r.client).await;
    assert_eq!(
        w["spec"]["task"]["command"][0], "/bin/v1",
        "reverted: {w:#}"
    );
    let s = &w["status"];
    assert_eq!(s["updateRevision"], 3, "{w:#}");
    assert_eq!(s["availableReplicas"], 4, "{w:#}");
    let revisions: Vec<u64> = s["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["revision"].as_u64().expect("revision"))
        .collect();
    assert_eq!(revisions, [2, 3]);
    // The failed instance of revision 2 is gone; the old ones served throughout.
    let allocs = allocations(&r.client).await;
    assert!(
        allocs
            .iter()
            .all(|a| a["spec"]["task"]["command"][0] == "/bin/v1"),
        "{allocs:#?}"
    );
}

#[tokio::test]
async fn a_paused_rollout_waits_and_recreate_stops_old_first() {
    let r = start().await;
    estate(&r.client).await;
    let mut memory = PassCache::default();
    r.client
        .create(
            kind("workload"),
            Some("default"),
            &service(3, "/bin/v1", json!({"strategy": "recreate"})),
            false,
        )
        .await
        .expect("create");
    settle(&r, &mut memory).await;
    r.client
        .patch(
            kind("workload"),
            Some("default"),
            "web",
            PatchType::Merge,
            &json!({"spec": {"paused": true, "task": {"command": ["/bin/v2"]}}}),
            false,
        )
        .await
        .expect("change");
    settle(&r, &mut memory).await;
    let allocs = allocations(&r.client).await;
    assert!(
        allocs.iter().all(|a| a["spec"]["revision"] == 1),
        "paused: nothing replaced {allocs:#?}"
    );
    let w = workload(&r.client).await;
    let progressing = w["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .expect("Progressing");
    assert_eq!(progressing["reason"], "RolloutPaused", "{w:#}");

    r.client
        .patch(
            kind("workload"),
            Some("default"),
            "web",
            PatchType::Merge,
            &json!({"spec": {"paused": false}}),
            false,
        )
        .await
        .expect("resume");
    // Recreate: the first pass stops every old instance and starts none.
    let options = SchedulerOptions::default();
    let report = scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");
    assert_eq!((report.removed, report.placed), (3, 0), "{report:?}");
    settle(&r, &mut memory).await;
    let allocs = allocations(&r.client).await;
    assert_eq!(allocs.len(), 3);
    assert!(
        allocs.iter().all(|a| a["spec"]["revision"] == 2),
        "{allocs:#?}"
    );
}

#[tokio::test]
async fn bad_update_settings_name_the_field() {
    let r = start().await;
    let err = r
        .client
        .create(
            kind("workload"),
            Some("default"),
            &service(2, "/bin/v1", json!({"maxSurge": "150%"})),
            false,
        )
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("spec.update.maxSurge") && text.contains("\"150%\" exceeds 100%"),
        "{text}"
    );
    let mut job = service(2, "/bin/v1", json!({"maxSurge": 1}));
    job["spec"]["type"] = json!("job");
    let err = r
        .client
        .create(kind("workload"), Some("default"), &job, false)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("spec.update"), "{err}");
}

fn job(replicas: i32, command: &str, extra: Value) -> Value {
    let mut w = service(replicas, command, Value::Null);
    w["metadata"]["name"] = json!("batch");
    let spec = w["spec"].as_object_mut().expect("spec");
    spec.remove("update");
    spec.insert("type".into(), json!("job"));
    for (k, v) in extra.as_object().expect("extra") {
        spec.insert(k.clone(), v.clone());
    }
    w
}

#[tokio::test]
async fn jobs_run_within_their_parallelism_and_retry_within_their_backoff_limit() {
    let r = start().await;
    estate(&r.client).await;
    let options = SchedulerOptions::default();
    let mut memory = PassCache::default();
    r.client
        .create(
            kind("workload"),
            Some("default"),
            &job(5, "/bin/work", json!({"parallelism": 2})),
            false,
        )
        .await
        .expect("create");
    let mut most_live = 0;
    for _ in 0..20 {
        scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass");
        let live = allocations(&r.client)
            .await
            .iter()
            .filter(|a| a["spec"]["workload"] == "batch")
            .filter(|a| a["status"]["phase"] == "pending" || a["status"]["phase"] == "running")
            .count();
        most_live = most_live.max(live);
        agent_step(&r.client).await;
    }
    assert_eq!(most_live, 2, "parallelism 2");
    let w = r
        .client
        .get(kind("workload"), Some("default"), "batch")
        .await
        .expect("job");
    assert_eq!(w["status"]["succeededReplicas"], 5, "{w:#}");
    let complete = w["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "Complete" && c["status"] == "True");
    assert!(complete, "{w:#}");
    r.client
        .delete(kind("workload"), Some("default"), "batch")
        .await
        .expect("delete");
    scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");

    // A failing job: the failed instance is placed once more (backoffLimit 1), then the
    // job fails.
    r.client
        .create(
            kind("workload"),
            Some("default"),
            &job(1, "/bin/broken", json!({"backoffLimit": 1})),
            false,
        )
        .await
        .expect("create");
    for _ in 0..8 {
        scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass");
        agent_step(&r.client).await;
    }
    let mut names: Vec<String> = allocations(&r.client)
        .await
        .iter()
        .map(|a| a["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["batch-0", "batch-0-retry1"]);
    let w = r
        .client
        .get(kind("workload"), Some("default"), "batch")
        .await
        .expect("job");
    let failed = w["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_else(|| panic!("{w:#}"));
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{w:#}");
}

#[tokio::test]
async fn a_periodic_job_starts_runs_and_its_runs_go_with_it() {
    let r = start().await;
    estate(&r.client).await;
    let options = SchedulerOptions::default();
    let mut memory = PassCache::default();
    let mut periodic = job(1, "/bin/report", json!({"schedule": "*/1 * * * *"}));
    periodic["metadata"]["name"] = json!("report");
    r.client
        .create(kind("workload"), Some("default"), &periodic, false)
        .await
        .expect("create");
    // Pretend the last run was ten minutes ago: one run is due now (not ten).
    let mut w = r
        .client
        .get(kind("workload"), Some("default"), "report")
        .await
        .expect("get");
    let ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(600);
    w["status"] =
        json!({"lastScheduleTime": ago.round(jiff::Unit::Minute).expect("round").to_string()});
    r.client
        .replace_status(kind("workload"), Some("default"), "report", &w)
        .await
        .expect("status");
    for _ in 0..6 {
        scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass");
        agent_step(&r.client).await;
    }
    let workloads = r
        .client
        .list_all(kind("workload"), Some("default"), &ListOptions::default())
        .await
        .expect("workloads");
    let runs: Vec<&Value> = workloads
        .iter()
        .filter(|w| w["metadata"]["labels"]["meridian.dev/periodic"] == "report")
        .collect();
    assert_eq!(runs.len(), 1, "{workloads:#?}");
    let run = runs[0];
    assert!(run["spec"].get("schedule").is_none(), "{run:#}");
    assert_eq!(run["status"]["succeededReplicas"], 1, "{run:#}");
    let parent = workloads
        .iter()
        .find(|w| w["metadata"]["name"] == "report")
        .expect("parent");
    assert!(
        parent["status"]["lastScheduleTime"].is_string(),
        "{parent:#}"
    );
    assert!(parent["status"].get("activeRuns").is_none(), "{parent:#}");
    // The periodic job itself placed nothing: every allocation is the run's.
    let allocs = allocations(&r.client).await;
    assert!(
        allocs
            .iter()
            .all(|a| a["spec"]["workload"] == run["metadata"]["name"]),
        "{allocs:#?}"
    );

    r.client
        .delete(kind("workload"), Some("default"), "report")
        .await
        .expect("delete");
    for _ in 0..2 {
        scheduler::pass_with(&r.state, &options, &mut memory)
            .await
            .expect("pass");
    }
    let left = r
        .client
        .list_all(kind("workload"), Some("default"), &ListOptions::default())
        .await
        .expect("workloads");
    assert!(left.is_empty(), "{left:#?}");
    assert!(allocations(&r.client).await.is_empty());
}
