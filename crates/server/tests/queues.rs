//! Queues through the real scheduler and store (issue 16): jobs over their queue's
//! quota wait with a typed reason and a position, `Queue.status` counts and sums them,
//! and a job not ready within `waitForReady` is evicted and requeued with a back-off.

use serde_json::{Value, json};

use client::{Client, ListOptions};
use server::scheduler::{self, SchedulerOptions};

use testkit::{TestServer, kind, load_examples};

/// A job of `replicas` instances of `cpu` cores in project `research`, in `queue`.
fn job(name: &str, queue: &str, cpu: u32, priority: i32) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": name, "namespace": "research"},
        "spec": {"type": "job", "replicas": 1, "queue": queue, "priority": priority,
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": cpu, "memory": "1Gi"},
                          "os": {"family": "linux"}},
                 "data": {"classification": "internal"}}
    })
}

fn queue(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "meridian.dev/v1", "kind": "Queue",
           "metadata": {"name": name}, "spec": spec})
}

async fn add_queue(c: &Client, name: &str, spec: Value) {
    c.create(kind("queue"), None, &queue(name, spec), false)
        .await
        .expect("queue");
}

/// Creates job `name` (see [`job`]): accepted at create whatever its queue says.
async fn add_job(c: &Client, name: &str, queue: &str, cpu: u32, priority: i32) {
    c.create(
        kind("wl"),
        Some("research"),
        &job(name, queue, cpu, priority),
        false,
    )
    .await
    .expect("accepted at create: quota waits, it does not refuse");
}

/// A queue's `Active` condition.
fn active_condition(q: &Value) -> Value {
    q["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Active"))
        .cloned()
        .unwrap_or_else(|| panic!("Active condition: {q}"))
}

async fn placed(c: &Client, workload: &str) -> usize {
    c.list_all(kind("alloc"), Some("research"), &ListOptions::default())
        .await
        .expect("allocations")
        .iter()
        .filter(|a| a["spec"]["workload"] == workload)
        .count()
}

async fn queue_state(c: &Client, workload: &str) -> Value {
    let w = c
        .get(kind("wl"), Some("research"), workload)
        .await
        .expect("workload");
    w["status"]["queue"].clone()
}

#[tokio::test]
async fn queued_jobs_wait_in_order_with_their_reason_and_the_queue_counts_them() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    add_queue(
        &r.client,
        "small",
        json!({"quota": {"cpu": {"nominal": "4"}}}),
    )
    .await;
    // Created within one second: the same creation time, so the name decides.
    for name in ["j1", "j2", "j3"] {
        add_job(&r.client, name, "small", 2, 0).await;
    }
    pass().await;
    assert_eq!(placed(&r.client, "j1").await, 1);
    assert_eq!(placed(&r.client, "j2").await, 1);
    assert_eq!(placed(&r.client, "j3").await, 0);
    let j3 = queue_state(&r.client, "j3").await;
    assert_eq!(j3["name"], "small");
    assert_eq!(j3["admitted"], false, "{j3}");
    assert_eq!(j3["reason"], "OverNominalQuota", "{j3}");
    assert_eq!(j3["position"], 0, "{j3}");
    assert!(
        j3["message"].as_str().is_some_and(
            |m| m.contains("queue small over its nominal cpu quota: 4 used + 2 requested > 4")
        ),
        "{j3}"
    );
    let j1 = queue_state(&r.client, "j1").await;
    assert_eq!(j1["admitted"], true, "{j1}");
    assert!(j1["admittedAt"].is_string(), "{j1}");

    // A later job of higher priority goes ahead of the ones waiting.
    add_job(&r.client, "urgent", "small", 2, 10).await;
    pass().await;
    assert_eq!(queue_state(&r.client, "urgent").await["position"], 0);
    assert_eq!(queue_state(&r.client, "j3").await["position"], 1);

    let q = r
        .client
        .get(kind("queue"), None, "small")
        .await
        .expect("queue");
    assert_eq!(q["status"]["pending"], 2, "{q}");
    assert_eq!(q["status"]["admitted"], 2, "{q}");
    assert_eq!(q["status"]["usage"]["cpu"], "4", "{q}");
    let active = active_condition(&q);
    assert_eq!(active["status"], "True", "{q}");
    let metrics = r.state.metrics.render();
    for line in [
        r#"meridian_queue_pending_workloads{queue="small"} 2"#,
        r#"meridian_queue_admitted_workloads{queue="small"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in the metrics");
    }

    // Quota frees: the head of the queue (urgent) is admitted, then three.
    r.client
        .delete(kind("wl"), Some("research"), "j1")
        .await
        .expect("delete");
    pass().await;
    pass().await;
    assert_eq!(placed(&r.client, "urgent").await, 1);
    assert_eq!(placed(&r.client, "j3").await, 0);
    assert_eq!(queue_state(&r.client, "j3").await["position"], 0);
}

#[tokio::test]
async fn a_queue_alone_in_its_cohort_says_so_and_an_unknown_queue_is_a_waiting_reason() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    add_queue(
        &r.client,
        "lonely",
        json!({"cohort": "nobody-else", "quota": {"cpu": {"nominal": "2"}}}),
    )
    .await;
    add_job(&r.client, "lost", "no-such-queue", 1, 0).await;
    add_job(&r.client, "big", "lonely", 4, 0).await;
    scheduler::pass(&r.state, &options).await.expect("pass");
    let q = r
        .client
        .get(kind("queue"), None, "lonely")
        .await
        .expect("queue");
    let active = active_condition(&q);
    assert_eq!(active["status"], "False", "{q}");
    assert_eq!(active["reason"], "CohortNotFound", "{q}");
    let lost = queue_state(&r.client, "lost").await;
    assert_eq!(lost["reason"], "QueueNotFound", "{lost}");
    let big = queue_state(&r.client, "big").await;
    assert_eq!(big["reason"], "OverNominalQuota", "{big}");
    assert!(
        big["message"]
            .as_str()
            .is_some_and(|m| m.contains("cohort nobody-else has no other queue")),
        "{big}"
    );
    assert_eq!(
        placed(&r.client, "lost").await + placed(&r.client, "big").await,
        0
    );
}

#[tokio::test]
async fn a_job_not_ready_within_wait_for_ready_is_evicted_and_requeued_with_backoff() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    add_queue(&r.client, "impatient", json!({"waitForReady": "1s"})).await;
    add_job(&r.client, "slow", "impatient", 1, 0).await;
    pass().await;
    assert_eq!(placed(&r.client, "slow").await, 1, "admitted and placed");
    assert_eq!(queue_state(&r.client, "slow").await["admitted"], true);
    // No agent runs it: after waitForReady it gives its resources back.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    pass().await;
    assert_eq!(placed(&r.client, "slow").await, 0, "evicted");
    let state = queue_state(&r.client, "slow").await;
    assert_eq!(state["reason"], "BackingOff", "{state}");
    assert_eq!(state["requeues"], 1, "{state}");
    assert_eq!(state["admitted"], false, "{state}");
    assert!(state["requeueAt"].is_string(), "{state}");
    // It stays out while it backs off.
    pass().await;
    pass().await;
    assert_eq!(placed(&r.client, "slow").await, 0, "backing off");
    assert_eq!(queue_state(&r.client, "slow").await["reason"], "BackingOff");
}

#[tokio::test]
async fn a_finished_job_leaves_its_queue_and_frees_its_quota() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    add_queue(
        &r.client,
        "one-at-a-time",
        json!({"quota": {"cpu": {"nominal": "2"}}}),
    )
    .await;
    for name in ["first", "second"] {
        add_job(&r.client, name, "one-at-a-time", 2, 0).await;
    }
    pass().await;
    assert_eq!(placed(&r.client, "first").await, 1);
    assert_eq!(placed(&r.client, "second").await, 0);
    // The first job's instance succeeds, as an agent reports it.
    let allocs = r
        .client
        .list_all(kind("alloc"), Some("research"), &ListOptions::default())
        .await
        .expect("allocations");
    let mut a = allocs
        .into_iter()
        .find(|a| a["spec"]["workload"] == "first")
        .expect("first's allocation");
    a["status"] = json!({"phase": "succeeded", "exitCode": 0,
                         "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"});
    let name = a["metadata"]["name"].as_str().expect("name").to_owned();
    r.client
        .replace_status(kind("alloc"), Some("research"), &name, &a)
        .await
        .expect("status");
    pass().await;
    pass().await;
    let first = queue_state(&r.client, "first").await;
    assert_eq!(
        first["admitted"], false,
        "a finished job is not admitted: {first}"
    );
    assert!(first.get("reason").is_none(), "nor waiting: {first}");
    assert_eq!(
        placed(&r.client, "second").await,
        1,
        "its quota went to the next"
    );
    let q = r
        .client
        .get(kind("queue"), None, "one-at-a-time")
        .await
        .expect("queue");
    assert_eq!(q["status"]["admitted"], 1, "{q}");
    assert_eq!(q["status"]["pending"], 0, "{q}");
}

/// The node allocation(s) of `workload` run on.
async fn nodes_of(c: &Client, workload: &str) -> Vec<String> {
    c.list_all(kind("alloc"), Some("research"), &ListOptions::default())
        .await
        .expect("allocations")
        .iter()
        .filter(|a| a["spec"]["workload"] == workload)
        .map(|a| a["spec"]["node"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_job_goes_to_its_queues_second_flavor_when_the_first_is_full_and_runs_only_there() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    add_queue(
        &r.client,
        "eu",
        json!({"flavors": [
            {"name": "fra", "sites": ["onprem-frankfurt"], "quota": {"cpu": {"nominal": "4"}}},
            {"name": "weu", "sites": ["azure-westeurope"], "quota": {"cpu": {"nominal": "8"}}}
        ]}),
    )
    .await;
    // Created within one second: the name decides the order.
    add_job(&r.client, "j1", "eu", 4, 0).await;
    add_job(&r.client, "j2", "eu", 4, 0).await;
    pass().await;
    let first = queue_state(&r.client, "j1").await;
    assert_eq!(
        (first["admitted"].clone(), first["flavor"].clone()),
        (json!(true), json!("fra")),
        "{first}"
    );
    assert!(
        nodes_of(&r.client, "j1")
            .await
            .iter()
            .all(|n| n.starts_with("fra-"))
    );
    // fra's 4 cores are j1's: j2 is admitted into weu, and placed on its nodes only,
    // though Frankfurt's nodes have room (and score better for cost).
    let second = queue_state(&r.client, "j2").await;
    assert_eq!(second["admitted"], true, "{second}");
    assert_eq!(second["flavor"], "weu", "{second}");
    let nodes = nodes_of(&r.client, "j2").await;
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].starts_with("azure-weu-"), "{nodes:?}");
    // Another pass keeps both where they are, flavours recorded.
    pass().await;
    assert_eq!(queue_state(&r.client, "j2").await["flavor"], "weu");
    // The queue's status counts each flavour.
    let q = r
        .client
        .get(kind("queue"), None, "eu")
        .await
        .expect("queue");
    assert_eq!(q["status"]["flavorUsage"]["fra"]["cpu"], "4", "{q}");
    assert_eq!(q["status"]["flavorUsage"]["weu"]["cpu"], "4", "{q}");
    // meridian explain says where j2 goes and why the other nodes do not count.
    let x: Value = r
        .client
        .request_json(
            client::Method::GET,
            "/apis/meridian.dev/v1/namespaces/research/workloads/j2/explain",
            None,
        )
        .await
        .expect("explain");
    let text = x.to_string();
    assert!(
        text.contains("flavor weu of queue eu (sites azure-westeurope)"),
        "{x:#}"
    );
    assert!(text.contains("not in flavor weu of queue eu"), "{x:#}");
    // A third job of 8 cores fits neither: it waits, and says so for both.
    add_job(&r.client, "j3", "eu", 8, 0).await;
    pass().await;
    let third = queue_state(&r.client, "j3").await;
    assert_eq!(third["admitted"], false, "{third}");
    assert_eq!(third["reason"], "OverNominalQuota", "{third}");
    assert!(
        third["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue eu (flavor fra)")),
        "{third}"
    );
    assert!(third.get("flavor").is_none(), "{third}");
}

#[tokio::test]
async fn a_queue_below_its_fair_share_preempts_a_borrowing_queue_above_it() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    for (name, nominal, preemption) in [
        ("a", "4", json!({})),
        (
            "b",
            "4",
            json!({"fairSharing": "LessThanOrEqualToFinalShare"}),
        ),
        ("c", "8", json!({})),
    ] {
        add_queue(
            &r.client,
            name,
            json!({"cohort": "lab", "preemption": preemption,
                   "quota": {"cpu": {"nominal": nominal}}}),
        )
        .await;
    }
    // a takes all 16 cores the cohort has, at priority 5.
    for i in 0..4 {
        add_job(&r.client, &format!("a{i}"), "a", 4, 5).await;
    }
    pass().await;
    let mut held = 0;
    for i in 0..4 {
        held += placed(&r.client, &format!("a{i}")).await;
    }
    assert_eq!(held, 4);
    // b asks for 8 at priority 0: two of a's jobs go (a's share 750 → 250, b's 250).
    add_job(&r.client, "b0", "b", 8, 0).await;
    pass().await;
    pass().await;
    assert_eq!(
        placed(&r.client, "b0").await,
        1,
        "{}",
        queue_state(&r.client, "b0").await
    );
    let mut held = 0;
    for i in 0..4 {
        held += placed(&r.client, &format!("a{i}")).await;
    }
    assert_eq!(held, 2, "two of a's jobs preempted");
    r.state.events.flush().await;
    let events = r
        .client
        .list_all(kind("event"), None, &ListOptions::default())
        .await
        .expect("events");
    let preempted = events.iter().filter(|e| e["reason"] == "Preempted").count();
    assert_eq!(preempted, 2, "{events:#?}");
    // The preempted jobs wait in a, which says so.
    let waiting: Vec<Value> = {
        let mut v = Vec::new();
        for i in 0..4 {
            let s = queue_state(&r.client, &format!("a{i}")).await;
            if s["admitted"] == false {
                v.push(s);
            }
        }
        v
    };
    assert_eq!(waiting.len(), 2, "{waiting:?}");
}

/// A flavour naming a site that does not exist yet is accepted (so that applying a
/// directory works in any order) with a warning naming the field, and the queue says
/// `SiteNotFound` until the site exists.
#[tokio::test]
async fn a_flavor_naming_an_unknown_site_is_accepted_with_a_warning_and_a_condition() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = std::sync::Arc::clone(&warnings);
    let c = r
        .client
        .clone()
        .with_warning_handler(std::sync::Arc::new(move |w: &str| {
            seen.lock().unwrap().push(w.to_owned());
        }));
    c.create(
        kind("queue"),
        None,
        &queue(
            "typo",
            json!({"flavors": [
                {"name": "fra", "sites": ["onprem-frankfurt", "onprem-frankfrut"],
                 "quota": {"cpu": {"nominal": "4"}}}]}),
        ),
        false,
    )
    .await
    .expect("accepted: the site may come later");
    let said = warnings.lock().unwrap().clone();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("spec.flavors[0].sites[1]"), "{said:?}");
    assert!(
        said[0].contains("site onprem-frankfrut does not exist"),
        "{said:?}"
    );

    let options = SchedulerOptions::default();
    scheduler::pass(&r.state, &options).await.expect("pass");
    let q = c.get(kind("queue"), None, "typo").await.expect("queue");
    let a = active_condition(&q);
    assert_eq!(a["status"], "False", "{q}");
    assert_eq!(a["reason"], "SiteNotFound", "{q}");
    assert!(
        a["message"]
            .as_str()
            .is_some_and(|m| m.contains("onprem-frankfrut")),
        "{q}"
    );

    // The site arrives: the condition clears.
    let mut site = c
        .get(kind("site"), None, "onprem-frankfurt")
        .await
        .expect("site");
    site["metadata"] = json!({"name": "onprem-frankfrut"});
    site.as_object_mut().expect("object").remove("status");
    c.create(kind("site"), None, &site, false)
        .await
        .expect("the second site");
    scheduler::pass(&r.state, &options).await.expect("pass");
    let q = c.get(kind("queue"), None, "typo").await.expect("queue");
    assert_eq!(active_condition(&q)["status"], "True", "{q}");
}

/// Partial admission through the scheduler: a job of 5 × 2 cores with `minParallelism: 2`
/// in a queue of 6 cores runs 3 and says the other 2 wait for quota; once the quota
/// grows, they join.
#[tokio::test]
async fn a_job_with_min_parallelism_starts_partly_and_the_rest_join_when_quota_grows() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    add_queue(
        &r.client,
        "sweeps",
        json!({"quota": {"cpu": {"nominal": "6"}}}),
    )
    .await;
    let mut sweep = job("sweep", "sweeps", 2, 0);
    sweep["spec"]["replicas"] = json!(5);
    sweep["spec"]["minParallelism"] = json!(2);
    r.client
        .create(kind("wl"), Some("research"), &sweep, false)
        .await
        .expect("create");
    pass().await;
    assert_eq!(
        placed(&r.client, "sweep").await,
        3,
        "as many as the quota holds"
    );
    let w = r
        .client
        .get(kind("wl"), Some("research"), "sweep")
        .await
        .expect("workload");
    assert_eq!(w["status"]["queue"]["admitted"], true, "{w}");
    let message = w["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("partially admitted: 3 of 5"),
        "the status says why 2 wait: {message}"
    );

    let mut q = r
        .client
        .get(kind("queue"), None, "sweeps")
        .await
        .expect("queue");
    q["spec"]["quota"]["cpu"]["nominal"] = json!("10");
    r.client
        .replace(kind("queue"), None, "sweeps", &q)
        .await
        .expect("grow the quota");
    pass().await;
    assert_eq!(placed(&r.client, "sweep").await, 5, "the rest joined");
}

/// `GET /meridian/v1/queues/{name}/pendingworkloads` lists the jobs waiting in a queue
/// in admission order with their reasons, pages with `limit` and `offset`, shows a
/// project-scoped token its own project's jobs only, and names a bad limit or an unknown
/// queue.
#[tokio::test]
async fn pending_workloads_of_a_queue_are_listed_in_order_with_their_reasons() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    add_queue(
        &r.client,
        "small",
        json!({"quota": {"cpu": {"nominal": "2"}}}),
    )
    .await;
    add_job(&r.client, "first", "small", 2, 0).await;
    add_job(&r.client, "low", "small", 2, 0).await;
    add_job(&r.client, "high", "small", 2, 5).await;
    scheduler::pass(&r.state, &SchedulerOptions::default())
        .await
        .expect("pass");
    let path = "/meridian/v1/queues/small/pendingworkloads";
    let all: Value = r.client.get_path(path).await.expect("pending");
    assert_eq!(all["kind"], "PendingWorkloadsSummary", "{all}");
    assert_eq!(all["total"], 2, "{all}");
    let names: Vec<&str> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default())
        .collect();
    // high (priority 5) was admitted ahead of them; the two of priority 0 wait, in order
    // of creation, then name.
    assert_eq!(names, ["first", "low"], "{all}");
    assert_eq!(all["items"][1]["positionInQueue"], 1, "{all}");
    assert_eq!(all["items"][0]["positionInQueue"], 0, "{all}");
    assert_eq!(all["items"][0]["reason"], "OverNominalQuota", "{all}");
    assert!(
        all["items"][1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue small")),
        "{all}"
    );

    let page: Value = r
        .client
        .get_path(&format!("{path}?limit=1&offset=1"))
        .await
        .expect("a page");
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["name"], "low");

    // Another project's token sees none of research's jobs.
    let other = r.new_token("viewer", Some("finance")).await;
    let theirs: Value = r
        .client_as(&other)
        .get_path(path)
        .await
        .expect("pending as another project");
    assert_eq!(theirs["total"], 0, "{theirs}");

    let err = r
        .client
        .get_path(&format!("{path}?limit=0"))
        .await
        .expect_err("limit 0");
    assert!(err.to_string().contains("limit 0"), "{err}");
    let err = r
        .client
        .get_path("/meridian/v1/queues/nope/pendingworkloads")
        .await
        .expect_err("unknown queue");
    assert!(err.to_string().contains("nope"), "{err}");
}

fn cohort(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "meridian.dev/v1", "kind": "Cohort",
           "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn a_team_borrows_through_its_cohort_tree_and_a_loop_of_parents_is_refused() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    let pass = async || scheduler::pass(&r.state, &options).await.expect("pass");
    // A department holding 2 cores of its own, over two teams of one queue each.
    for (name, spec) in [
        ("org", json!({"quota": {"cpu": {"nominal": "2"}}})),
        ("team-a", json!({"parent": "org"})),
        ("team-b", json!({"parent": "org"})),
    ] {
        r.client
            .create(kind("cohort"), None, &cohort(name, spec), false)
            .await
            .expect("cohort");
    }
    add_queue(
        &r.client,
        "qa",
        json!({"cohort": "team-a", "quota": {"cpu": {"nominal": "1"}}}),
    )
    .await;
    add_queue(
        &r.client,
        "qb",
        json!({"cohort": "team-b", "quota": {"cpu": {"nominal": "1"}}}),
    )
    .await;
    // qa may reach its 1 + the department's 2 + the 1 team b lends: 4 cores.
    add_job(&r.client, "a1", "qa", 3, 0).await;
    pass().await;
    add_job(&r.client, "a2", "qa", 2, 0).await;
    pass().await;
    assert_eq!(
        placed(&r.client, "a1").await,
        1,
        "{}",
        queue_state(&r.client, "a1").await
    );
    assert_eq!(placed(&r.client, "a2").await, 0);
    let a2 = queue_state(&r.client, "a2").await;
    assert_eq!(a2["reason"], "WaitingForBorrowableQuota", "{a2}");
    assert!(
        a2["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 used + 2 requested > 4")),
        "{a2}"
    );
    // Each cohort reports its subtree: queues and what their jobs hold.
    let org = r
        .client
        .get(kind("cohort"), None, "org")
        .await
        .expect("org");
    assert_eq!(org["status"]["queues"], 2, "{org}");
    assert_eq!(org["status"]["usage"]["cpu"], "3", "{org}");
    let team_a = r
        .client
        .get(kind("cohort"), None, "team-a")
        .await
        .expect("team-a");
    assert_eq!(team_a["status"]["queues"], 1, "{team_a}");
    assert_eq!(team_a["status"]["usage"]["cpu"], "3", "{team_a}");
    // It borrows 2 of the 3 it holds from the department's quota of 4 (org's own 2, qb's
    // 1 lent, its own queue's 1): 2/4 = 500 thousandths.
    assert_eq!(team_a["status"]["weightedShare"], 500, "{team_a}");
    let metrics = r.state.metrics.render();
    assert!(
        metrics.contains(r#"meridian_cohort_weighted_share{cohort="team-a"} 500"#),
        "{metrics}"
    );
    // Alone in team-a but under a Cohort object: active, not CohortNotFound.
    let qa = r.client.get(kind("queue"), None, "qa").await.expect("qa");
    assert_eq!(active_condition(&qa)["status"], "True", "{qa}");

    // The department under team a would be a loop: refused, naming the field.
    let mut org = r
        .client
        .get(kind("cohort"), None, "org")
        .await
        .expect("org");
    org["spec"]["parent"] = json!("team-a");
    let err = r
        .client
        .replace(kind("cohort"), None, "org", &org)
        .await
        .expect_err("a loop of parents");
    let text = err.to_string();
    assert!(
        text.contains("spec.parent") && text.contains("org -> team-a -> org"),
        "{text}"
    );
    let cohorts = r
        .client
        .list_all(kind("cohort"), None, &ListOptions::default())
        .await
        .expect("cohorts");
    // These three and the examples' `shared`.
    assert_eq!(cohorts.len(), 4);
}

#[tokio::test]
async fn a_cohort_tree_deeper_than_sixteen_levels_is_refused() {
    let r = TestServer::start().await;
    for i in 0..=16 {
        let spec = if i == 0 {
            json!({})
        } else {
            json!({"parent": format!("c{:02}", i - 1)})
        };
        let created = r
            .client
            .create(
                kind("cohort"),
                None,
                &cohort(&format!("c{i:02}"), spec),
                false,
            )
            .await;
        if i < 16 {
            created.unwrap_or_else(|e| panic!("c{i:02}, {i} levels below the root: {e}"));
        } else {
            let text = created.expect_err("17 levels").to_string();
            assert!(
                text.contains("spec.parent") && text.contains("more than 16 levels deep"),
                "{text}"
            );
        }
    }
}
