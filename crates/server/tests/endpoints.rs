//! Ports and endpoints against a real server and store: the scheduler reserves host ports
//! per node (static ones once, dynamic ones distinct), explains a taken port, and
//! publishes a workload's ready instances as `status.endpoints` and core `v1` Endpoints.

use client::Method;
use serde_json::{Value, json};

use client::{Client, ListOptions};
use server::scheduler::{self, SchedulerOptions};

use testkit::{TestServer, kind};

async fn estate(c: &Client, nodes: usize) {
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
    for i in 0..nodes {
        let name = format!("n{i}");
        c.create(
            kind("node"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Node",
                    "metadata": {"name": name},
                    "spec": {"site": "fra", "os": {"family": "linux"}, "arch": "amd64",
                             "drivers": ["exec"],
                             "capacity": {"cpu": "8", "memory": "16Gi"}}}),
            false,
        )
        .await
        .expect("node");
        let mut n = c.get(kind("node"), None, &name).await.expect("node");
        n["status"] = json!({"phase": "Ready",
            "addresses": [{"type": "Hostname", "address": name},
                          {"type": "InternalIP", "address": format!("10.0.0.{}", i + 1)}]});
        c.replace_status(kind("node"), None, &name, &n)
            .await
            .expect("node status");
    }
}

fn service(name: &str, replicas: i32, ports: Value) -> Value {
    json!({"apiVersion": "meridian.dev/v1", "kind": "Workload",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": "service", "replicas": replicas,
                    "task": {"driver": "exec", "command": ["/bin/app"], "ports": ports,
                             "health": {"tcp": {"port": "http"}},
                             "resources": {"cpu": "100m", "memory": "64Mi"}}}})
}

async fn allocations(c: &Client, workload: &str) -> Vec<Value> {
    c.list_all(kind("alloc"), Some("default"), &ListOptions::default())
        .await
        .expect("allocations")
        .into_iter()
        .filter(|a| a["spec"]["workload"] == workload)
        .collect()
}

/// Reports the allocations of `workload` running and healthy, as their agent would.
async fn run_all(c: &Client, workload: &str) {
    for mut a in allocations(c, workload).await {
        a["status"] = json!({"phase": "running", "startedAt": "2026-01-01T00:00:00Z",
            "health": {"state": "healthy"}});
        let name = a["metadata"]["name"].as_str().expect("name").to_owned();
        c.replace_status(kind("alloc"), Some("default"), &name, &a)
            .await
            .expect("status");
    }
}

#[tokio::test]
async fn ports_are_reserved_and_ready_instances_published_as_endpoints() {
    let r = TestServer::start().await;
    let c = &r.client;
    estate(c, 1).await;
    c.create(
        kind("workload"),
        Some("default"),
        &service(
            "api",
            3,
            json!([{"name": "http", "port": 0}, {"name": "metrics", "port": 9100}]),
        ),
        false,
    )
    .await
    .expect("workload");
    let options = SchedulerOptions::default();
    scheduler::pass(&r.state, &options).await.expect("pass");

    // One node, a static port: one instance; the others wait, saying why.
    let allocs = allocations(c, "api").await;
    assert_eq!(allocs.len(), 1, "{allocs:#?}");
    assert_eq!(
        allocs[0]["spec"]["ports"],
        json!([{"name": "http", "port": 20000, "target": 20000},
               {"name": "metrics", "port": 9100, "target": 9100}])
    );
    let w = c
        .get(kind("workload"), Some("default"), "api")
        .await
        .unwrap();
    let message = w["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("host port 9100/tcp is taken"), "{message}");
    let x: Value = c
        .request_json(
            Method::GET,
            "/apis/meridian.dev/v1/namespaces/default/workloads/api/explain",
            None,
        )
        .await
        .expect("explain");
    assert!(
        x.to_string().contains("host port 9100/tcp is taken"),
        "{x:#}"
    );

    // Dynamic ports only: three instances on the node, three distinct host ports.
    c.create(
        kind("workload"),
        Some("default"),
        &service(
            "web",
            3,
            json!([{"name": "http", "port": 0, "target": 8080}]),
        ),
        false,
    )
    .await
    .expect("workload");
    scheduler::pass(&r.state, &options).await.expect("pass");
    let web = allocations(c, "web").await;
    let mut ports: Vec<u64> = web
        .iter()
        .map(|a| a["spec"]["ports"][0]["port"].as_u64().unwrap())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![20001, 20002, 20003], "20000 is api's");
    assert!(web.iter().all(|a| a["spec"]["ports"][0]["target"] == 8080));

    // Nothing ready yet: no endpoints. Then running and healthy: all three.
    let w = c
        .get(kind("workload"), Some("default"), "web")
        .await
        .unwrap();
    assert!(w["status"].get("endpoints").is_none(), "{w:#}");
    run_all(c, "web").await;
    scheduler::pass(&r.state, &options).await.expect("pass");
    let w = c
        .get(kind("workload"), Some("default"), "web")
        .await
        .unwrap();
    let eps = w["status"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 3, "{w:#}");
    assert!(
        eps.iter()
            .all(|e| e["address"] == "10.0.0.1" && e["node"] == "n0")
    );

    // Core v1 Endpoints for kubectl and the Python client.
    let ep: Value = c
        .request_json(
            Method::GET,
            "/api/v1/namespaces/default/endpoints/web",
            None,
        )
        .await
        .expect("core endpoints");
    assert_eq!(ep["kind"], "Endpoints");
    assert_eq!(ep["subsets"].as_array().unwrap().len(), 3, "{ep:#}");
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "10.0.0.1");
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    let list: Value = c
        .request_json(Method::GET, "/api/v1/namespaces/default/endpoints", None)
        .await
        .expect("core endpoints list");
    assert_eq!(list["kind"], "EndpointsList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["api", "web"]);
    let discovery: Value = c
        .request_json(Method::GET, "/api/v1", None)
        .await
        .expect("discovery");
    assert!(discovery.to_string().contains("\"Endpoints\""));

    // An instance that stops being healthy leaves the endpoints.
    let mut a = allocations(c, "web").await.remove(0);
    a["status"]["health"] = json!({"state": "unhealthy"});
    let name = a["metadata"]["name"].as_str().unwrap().to_owned();
    c.replace_status(kind("alloc"), Some("default"), &name, &a)
        .await
        .unwrap();
    scheduler::pass(&r.state, &options).await.expect("pass");
    let w = c
        .get(kind("workload"), Some("default"), "web")
        .await
        .unwrap();
    let eps = w["status"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 2);
    assert!(eps.iter().all(|e| e["allocation"] != name.as_str()));
}

#[tokio::test]
async fn bad_ports_and_volumes_name_the_field() {
    let r = TestServer::start().await;
    let mut w = service(
        "bad",
        1,
        json!([{"name": "http", "port": 70000}, {"name": "http", "port": 80}]),
    );
    w["spec"]["task"]["volumes"] = json!([{"name": "data", "mountPath": "../x"}]);
    w["spec"]["task"]["health"] = json!({"http": {"port": "admin"}});
    let err = r
        .client
        .create(kind("workload"), Some("default"), &w, false)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "spec.task.ports[0].port: 70000 is not a port",
        "spec.task.ports[1].name: port http is named twice",
        "spec.task.volumes[0].mountPath",
        "spec.task.health.http.port: names port admin, which is not in spec.task.ports",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    assert!(
        r.client
            .get(kind("workload"), Some("default"), "bad")
            .await
            .is_err(),
        "nothing half-applied"
    );
}

/// Passes until one plans nothing (the estate is settled), at most five; the last report.
async fn settle(r: &TestServer, memory: &mut scheduler::PassCache) -> scheduler::PassReport {
    let options = SchedulerOptions::default();
    for _ in 0..5 {
        let report = scheduler::pass_with(&r.state, &options, memory)
            .await
            .expect("pass");
        if report.planned == 0 {
            return report;
        }
    }
    panic!("five passes and the settled estate is still planned");
}

/// A settled workload (rolled out, its instances running) is not planned again while nothing
/// it depends on changes, and is planned again, with the right outcome, when its instances'
/// status, its node's address or its spec changes.
#[tokio::test]
async fn a_settled_workload_is_planned_again_only_when_what_it_reads_changes() {
    let r = TestServer::start().await;
    let c = &r.client;
    estate(c, 1).await;
    c.create(
        kind("workload"),
        Some("default"),
        &service("web", 2, json!([{"name": "http", "port": 0}])),
        false,
    )
    .await
    .expect("workload");
    let options = SchedulerOptions::default();
    let mut memory = scheduler::PassCache::default();
    let first = scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");
    assert_eq!((first.placed, first.planned), (2, 1));
    // While it rolls out (its instances not yet running) it is planned every pass.
    let again = scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");
    assert_eq!(again.planned, 1);

    // Its instances run and are healthy: planned again, its endpoints published.
    run_all(c, "web").await;
    let report = scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");
    assert_eq!(report.planned, 1);
    let w = c
        .get(kind("workload"), Some("default"), "web")
        .await
        .unwrap();
    assert_eq!(w["status"]["runningReplicas"], 2, "{w:#}");
    let eps = w["status"]["endpoints"].as_array().expect("endpoints");
    assert!(eps.iter().all(|e| e["address"] == "10.0.0.1"), "{w:#}");
    settle(&r, &mut memory).await;

    // Its node's address changes: planned again, the endpoints follow.
    let mut n = c.get(kind("node"), None, "n0").await.expect("node");
    n["status"]["addresses"] = json!([{"type": "InternalIP", "address": "10.0.0.99"}]);
    c.replace_status(kind("node"), None, "n0", &n)
        .await
        .expect("node status");
    let report = scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");
    assert_eq!(report.planned, 1);
    let w = c
        .get(kind("workload"), Some("default"), "web")
        .await
        .unwrap();
    let eps = w["status"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 2);
    assert!(eps.iter().all(|e| e["address"] == "10.0.0.99"), "{w:#}");
    settle(&r, &mut memory).await;

    // Scaled up: planned again, the new instance placed.
    let mut w = c
        .get(kind("workload"), Some("default"), "web")
        .await
        .unwrap();
    w["spec"]["replicas"] = json!(3);
    c.replace(kind("workload"), Some("default"), "web", &w)
        .await
        .expect("scale");
    let report = scheduler::pass_with(&r.state, &options, &mut memory)
        .await
        .expect("pass");
    assert_eq!((report.planned, report.placed), (1, 1));
    assert_eq!(allocations(c, "web").await.len(), 3);
}
