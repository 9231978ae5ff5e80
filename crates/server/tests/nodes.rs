//! Node agents against a real server: join tokens exchanged once for a node credential
//! that can do nothing but its own node's business, heartbeats renewing a lease, and a
//! node whose lease expires marked Lost, after which its services are placed elsewhere.

use std::time::Duration;

use serde_json::{Value, json};

use client::{Client, ClientError, ListOptions};
use server::NodeOptions;
use server::ServerConfig;
use server::scheduler::{self, SchedulerOptions};

use testkit::{TestServer, kind, load_examples, seed_allocation, wait_until_async};

async fn server(lease_ttl: Duration) -> TestServer {
    TestServer::start_with(ServerConfig {
        scheduler: None,
        nodes: NodeOptions {
            lease_ttl,
            ..NodeOptions::default()
        },
        ..ServerConfig::default()
    })
    .await
}

async fn join_token(c: &Client, site: Option<&str>, ttl: u64) -> String {
    let resp = c
        .request_json(
            client::Method::POST,
            "/meridian/v1/join-tokens",
            Some(&json!({"site": site, "ttlSeconds": ttl})),
        )
        .await
        .expect("join token");
    resp["token"].as_str().expect("token").to_owned()
}

/// The join exchange with a plain HTTP client: status and body.
async fn join(r: &TestServer, token: &str, node: &str, site: Option<&str>) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::new()
        .post(format!("{}/meridian/v1/nodes/join", r.url))
        .bearer_auth(token)
        .json(&json!({"node": node, "site": site}))
        .send()
        .await
        .expect("join request");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("json"))
}

fn node_object(name: &str, site: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"site": site, "os": {"family": "linux"}, "arch": "amd64",
                 "capacity": {"cpu": "8", "memory": "32Gi"}, "drivers": ["exec"]},
    })
}

fn code(e: ClientError) -> u16 {
    match e {
        ClientError::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_join_token_is_exchanged_once_for_a_credential_limited_to_its_node() {
    let r = server(Duration::from_secs(10)).await;
    load_examples(&r.client).await;
    let token = join_token(&r.client, Some("onprem-frankfurt"), 600).await;

    // A token bound to a site refuses another site.
    let (status, body) = join(&r, &token, "edge-01", Some("ovh-sbg")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = join(&r, &token, "edge-01", None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["site"], "onprem-frankfurt");
    let credential = body["token"].as_str().expect("credential").to_owned();
    // Single use.
    let (status, _) = join(&r, &token, "edge-02", None).await;
    assert_eq!(status, 401);
    // A join token is no API token, and an API token cannot join.
    assert_eq!(
        code(
            Client::new(&r.url, &token, None)
                .expect("client")
                .get_path("/apis/meridian.dev/v1/sites")
                .await
                .expect_err("join tokens are not API tokens")
        ),
        401
    );
    let (status, _) = join(&r, &r.token, "edge-03", Some("onprem-frankfurt")).await;
    assert_eq!(status, 401);

    let node = Client::new(&r.url, &credential, None).expect("client");
    // Its own Node: create, read, update; status too.
    node.create(
        kind("node"),
        None,
        &node_object("edge-01", "onprem-frankfurt"),
        false,
    )
    .await
    .expect("registers itself");
    let mut me = node.get(kind("node"), None, "edge-01").await.expect("get");
    me["status"] = json!({"phase": "Ready"});
    node.replace_status(kind("node"), None, "edge-01", &me)
        .await
        .expect("own status");
    // Nothing else.
    assert_eq!(
        code(
            node.create(
                kind("node"),
                None,
                &node_object("edge-99", "onprem-frankfurt"),
                false
            )
            .await
            .expect_err("not another node")
        ),
        403
    );
    assert_eq!(
        code(
            node.get(kind("node"), None, "fra-rhel-01")
                .await
                .expect_err("not another node")
        ),
        403
    );
    for k in ["workload", "site", "project", "policy", "node"] {
        let e = node
            .list(kind(k), None, &ListOptions::default())
            .await
            .expect_err("cannot list");
        assert_eq!(code(e), 403, "{k}");
    }
    assert_eq!(
        code(
            node.request_json(
                client::Method::POST,
                "/meridian/v1/tokens",
                Some(&json!({"role": "admin"}))
            )
            .await
            .expect_err("no tokens")
        ),
        403
    );

    // Allocations: only its own, status only.
    r.client
        .create(
            kind("workload"),
            Some("default"),
            &json!({
                "apiVersion": "meridian.dev/v1", "kind": "Workload",
                "metadata": {"name": "edge-svc", "namespace": "default"},
                "spec": {"type": "service", "replicas": 1,
                         "task": {"driver": "exec", "command": ["/bin/true"],
                                  "resources": {"cpu": "1", "memory": "1Gi"}}},
            }),
            false,
        )
        .await
        .expect("workload");
    for (name, on) in [("mine", "edge-01"), ("theirs", "fra-rhel-01")] {
        seed_allocation(
            &r.state,
            &json!({
                "apiVersion": "meridian.dev/v1", "kind": "Allocation",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"workload": "edge-svc", "replica": 0, "node": on,
                         "resources": {"cpu": "1", "memory": "1Gi"}},
            }),
        )
        .await;
    }
    let mine = node
        .list_all(kind("alloc"), None, &ListOptions::default())
        .await
        .expect("list own allocations");
    let names: Vec<&str> = mine
        .iter()
        .map(|a| a["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["mine"]);
    assert_eq!(
        code(
            node.get(kind("alloc"), Some("default"), "theirs")
                .await
                .expect_err("hidden")
        ),
        404
    );
    let mut a = mine[0].clone();
    a["status"] = json!({"phase": "running"});
    node.replace_status(kind("alloc"), Some("default"), "mine", &a)
        .await
        .expect("own allocation status");
    a["spec"]["node"] = json!("fra-rhel-01");
    assert_eq!(
        code(
            node.replace(kind("alloc"), Some("default"), "mine", &a)
                .await
                .expect_err("spec is the scheduler's")
        ),
        403
    );
    assert_eq!(
        code(
            node.delete(kind("alloc"), Some("default"), "mine")
                .await
                .expect_err("no deletes")
        ),
        403
    );
    // Heartbeats only for itself.
    assert_eq!(
        code(
            node.request_json(
                client::Method::POST,
                "/meridian/v1/nodes/fra-rhel-01/heartbeat",
                None
            )
            .await
            .expect_err("not for others")
        ),
        403
    );
    let hb = node
        .request_json(
            client::Method::POST,
            "/meridian/v1/nodes/edge-01/heartbeat",
            None,
        )
        .await
        .expect("heartbeat");
    assert_eq!(hb["phase"], "Ready");
}

#[tokio::test]
async fn a_node_without_heartbeats_is_lost_and_its_services_move() {
    let r = server(Duration::from_secs(1)).await;
    load_examples(&r.client).await;
    let options = SchedulerOptions::default();
    scheduler::pass(&r.state, &options).await.expect("pass");
    let on_node =
        |allocs: &[Value], node: &str| allocs.iter().filter(|a| a["spec"]["node"] == node).count();
    let allocs = r
        .client
        .list_all(kind("alloc"), None, &ListOptions::default())
        .await
        .expect("allocations");
    let payroll = allocs
        .iter()
        .find(|a| a["spec"]["workload"] == "payroll-api")
        .expect("payroll placed");
    let node = payroll["spec"]["node"].as_str().expect("node").to_owned();
    assert!(on_node(&allocs, &node) > 0);

    // The node's agent heartbeats (with an admin token here), then stops.
    let path = format!("/meridian/v1/nodes/{node}/heartbeat");
    for _ in 0..3 {
        r.client
            .request_json(client::Method::POST, &path, None)
            .await
            .expect("heartbeat");
        // The sleep is the agent's cadence under test, not a wait: heartbeats 300 ms
        // apart keep a 1 s lease alive.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let n = r.client.get(kind("node"), None, &node).await.expect("node");
    assert_eq!(n["status"]["phase"], "Ready", "{n}");

    let n = wait_until_async(
        Duration::from_secs(10),
        &format!("node {node} to be marked Lost"),
        || async {
            let n = r.client.get(kind("node"), None, &node).await.expect("node");
            if n["status"]["phase"] == "Lost" {
                Ok(n)
            } else {
                Err(n["status"].clone())
            }
        },
    )
    .await;
    assert!(
        n["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("lease expired"),
        "{n}"
    );
    let report = scheduler::pass(&r.state, &options).await.expect("pass");
    assert!(report.rescheduled > 0, "{report:?}");
    let allocs = r
        .client
        .list_all(kind("alloc"), None, &ListOptions::default())
        .await
        .expect("allocations");
    let moved: Vec<&Value> = allocs
        .iter()
        .filter(|a| a["spec"]["workload"] == "payroll-api")
        .collect();
    assert_eq!(moved.len(), 2);
    assert!(moved.iter().all(|a| a["spec"]["node"] != node.as_str()));

    // Heartbeats again: Ready.
    let hb = r
        .client
        .request_json(client::Method::POST, &path, None)
        .await
        .expect("heartbeat");
    assert_eq!(hb["phase"], "Ready");
}
