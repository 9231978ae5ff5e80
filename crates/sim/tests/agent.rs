//! Simulated agents against a real server on loopback (SQLite store, its scheduler and
//! node lifecycle): nodes adopted or registered become `Ready` with a fresh heartbeat,
//! and allocations go through the phases the real agent reports.

use std::time::Duration;

use serde_json::{Value, json};

use client::{Client, ListOptions};
use server::ServerConfig;
use sim::SimAgent;
use sim::agent::{self, Options};

/// A server with its scheduler (the simulated agents need placements), fsync off.
async fn start_server() -> testkit::TestServer {
    testkit::TestServer::start_with(ServerConfig {
        fsync: false,
        ..ServerConfig::default()
    })
    .await
}

/// Quick phases, so the test takes seconds.
fn fast() -> Options {
    Options {
        heartbeat: Duration::from_millis(500),
        start_delay: Duration::from_millis(100),
        jitter: Duration::from_millis(100),
        job_duration: Duration::from_millis(500),
        ..Options::default()
    }
}

async fn apply(c: &Client, kind: &api::KindInfo, ns: Option<&str>, object: Value) {
    c.apply(kind, ns, &object, false).await.expect("apply");
}

fn workload(name: &str, type_: &str, replicas: u32, task_extra: Value) -> Value {
    let mut task = json!({"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": "100m", "memory": "64Mi"},
                          "os": {"family": "linux"}});
    for (k, v) in task_extra.as_object().expect("an object") {
        task[k] = v.clone();
    }
    json!({"apiVersion": "meridian.dev/v1", "kind": "Workload",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": type_, "replicas": replicas, "task": task}})
}

async fn allocations_of(c: &Client, workload: &str) -> Vec<Value> {
    c.list_all(
        api::kinds::ALLOCATION,
        Some("default"),
        &ListOptions::default(),
    )
    .await
    .expect("list allocations")
    .into_iter()
    .filter(|a| a["spec"]["workload"] == workload)
    .collect()
}

/// Polls `check` every 100 ms for 30 s; panics with the last state if it never holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for _ in 0..300 {
        match check().await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s; last: {last}");
}

fn assert_ready(node: &Value) {
    let status = &node["status"];
    assert_eq!(status["phase"], "Ready", "{node:#}");
    assert_eq!(status["agentVersion"], agent::agent_version(), "{node:#}");
    let beat: jiff::Timestamp = status["heartbeatTime"]
        .as_str()
        .expect("a heartbeat time")
        .parse()
        .expect("RFC 3339");
    let age = jiff::Timestamp::now().duration_since(beat);
    assert!(
        age < jiff::SignedDuration::from_secs(60),
        "heartbeat {age:?} old"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_nodes_run_services_jobs_and_failures() {
    let server = start_server().await;
    let c = &server.client;
    apply(
        c,
        api::kinds::PROJECT,
        None,
        json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
               "metadata": {"name": "default"}, "spec": {}}),
    )
    .await;
    agent::ensure_site(c, "lab", "DE").await.expect("site");
    // Nodes an administrator registered, as the demo's examples are.
    for name in ["lab-1", "lab-2"] {
        let node =
            agent::simulated_node(name, "lab", "8".parse().unwrap(), "32Gi".parse().unwrap());
        apply(
            c,
            api::kinds::NODE,
            None,
            serde_json::to_value(node).unwrap(),
        )
        .await;
    }
    let sim = SimAgent::adopt(c.clone(), vec!["lab-1".into(), "lab-2".into()], fast())
        .await
        .expect("adopt");
    assert_eq!(sim.nodes(), ["lab-1", "lab-2"]);
    for name in sim.nodes() {
        let node = c.get(api::kinds::NODE, None, name).await.expect("node");
        assert_ready(&node);
    }

    let wl = api::kinds::WORKLOAD;
    let health = json!({"health": {"tcp": {"port": 8080}, "initialDelay": "300ms"}});
    apply(
        c,
        wl,
        Some("default"),
        workload("web", "service", 2, health),
    )
    .await;
    apply(
        c,
        wl,
        Some("default"),
        workload("batch", "job", 1, json!({})),
    )
    .await;
    let fail = json!({"env": {agent::FAIL_ENV: "1"}});
    apply(
        c,
        wl,
        Some("default"),
        workload("broken", "service", 1, fail),
    )
    .await;

    eventually("web running and healthy", || async {
        let all = allocations_of(c, "web").await;
        if all.len() != 2 {
            return Err(format!("{} allocations", all.len()));
        }
        for a in &all {
            let s = &a["status"];
            let healthy = s["phase"] == "running"
                && s["startedAt"].is_string()
                && s["health"]["state"] == "healthy"
                && s["conditions"][0]["type"] == "Healthy"
                && s["conditions"][0]["status"] == "True";
            if !healthy {
                return Err(format!("{s}"));
            }
        }
        Ok(())
    })
    .await;
    eventually("the job succeeded", || async {
        let all = allocations_of(c, "batch").await;
        match all.first() {
            Some(a) if a["status"]["phase"] == "succeeded" && a["status"]["exitCode"] == 0 => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eventually("the failure knob failed", || async {
        let all = allocations_of(c, "broken").await;
        if all
            .iter()
            .any(|a| a["status"]["phase"] == "failed" && a["status"]["exitCode"] == 1)
        {
            Ok(())
        } else {
            Err(format!("{all:?}"))
        }
    })
    .await;

    // Deleted work is forgotten; the nodes stay Ready with fresh heartbeats.
    c.delete(wl, Some("default"), "web").await.expect("delete");
    eventually("web's allocations removed", || async {
        match allocations_of(c, "web").await.len() {
            0 => Ok(()),
            n => Err(format!("{n} left")),
        }
    })
    .await;
    for name in sim.nodes() {
        let node = c.get(api::kinds::NODE, None, name).await.expect("node");
        assert_ready(&node);
    }
    let stats = sim.stop().await;
    assert!(stats.started >= 3, "{stats:?}");
    assert!(stats.succeeded >= 1 && stats.failed >= 1, "{stats:?}");
    assert!(stats.heartbeats >= 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_nodes_are_ready() {
    let server = start_server().await;
    let c = &server.client;
    agent::ensure_site(c, "sim", "FR").await.expect("site");
    let nodes = (0..3)
        .map(|i| {
            agent::simulated_node(
                &format!("sim-{i}"),
                "sim",
                "4".parse().unwrap(),
                "8Gi".parse().unwrap(),
            )
        })
        .collect();
    let sim = SimAgent::register(c.clone(), nodes, fast())
        .await
        .expect("register");
    assert_eq!(sim.nodes().len(), 3);
    for name in sim.nodes() {
        let node = c.get(api::kinds::NODE, None, name).await.expect("node");
        assert_eq!(node["metadata"]["labels"][agent::SIMULATED_LABEL], "true");
        assert_ready(&node);
    }
    sim.stop().await;
}
