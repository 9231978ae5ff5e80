//! The server's drain endpoint (`POST /meridian/v1/nodes/{name}/drain`): refused before
//! any work to those who may not change nodes; a dry run writes nothing; a drain cordons
//! the node, evicts the instances of services and VMs, keeps the jobs' and says why, and
//! records what it did as events on the caller's behalf.

use serde_json::{Value, json};

use api::drain::DrainResult;
use client::{Client, ListOptions, Method};
use testkit::{TestServer, kind, load_examples, seed_allocation};

const NODE: &str = "fra-rhel-01";

/// Stores allocations on [`NODE`] as the scheduler would: two of the service
/// `payroll-api`, one of the job `month-end-close` (both in `finance`).
async fn seed(r: &TestServer) {
    for (name, workload) in [
        ("payroll-api-0", "payroll-api"),
        ("payroll-api-1", "payroll-api"),
        ("month-end-close-0", "month-end-close"),
    ] {
        seed_allocation(
            &r.state,
            &json!({
                "apiVersion": "meridian.dev/v1", "kind": "Allocation",
                "metadata": {"name": name, "namespace": "finance"},
                "spec": {"workload": workload, "replica": 0, "node": NODE,
                         "resources": {"cpu": "1", "memory": "1Gi"}},
            }),
        )
        .await;
    }
}

async fn drain(c: &Client, node: &str, query: &str) -> client::Result<DrainResult> {
    let answer = c
        .request_json(
            Method::POST,
            &format!("/meridian/v1/nodes/{node}/drain{query}"),
            None,
        )
        .await?;
    Ok(serde_json::from_value(answer).expect("a DrainResult"))
}

async fn allocations_on_node(c: &Client) -> Vec<String> {
    let mut names: Vec<String> = c
        .list_all(
            kind("alloc"),
            None,
            &ListOptions {
                field_selector: Some(format!("spec.node={NODE}")),
                ..Default::default()
            },
        )
        .await
        .expect("allocations")
        .iter()
        .map(|a| a["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

async fn unschedulable(c: &Client) -> bool {
    let node = c.get(kind("node"), None, NODE).await.expect("node");
    node["spec"]["unschedulable"] == Value::Bool(true)
}

fn names(instances: &[api::drain::DrainedInstance]) -> Vec<&str> {
    let mut v: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn drain_is_refused_before_any_work_to_those_who_may_not_change_nodes() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    seed(&r).await;
    let before = allocations_on_node(&r.client).await;
    for (role, project) in [
        ("viewer", None),
        ("operator", None),
        ("operator", Some("finance")),
        ("admin", Some("finance")),
    ] {
        let token = r.new_token(role, project).await;
        let e = drain(&r.client_as(&token), NODE, "")
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Some(403), "{role} {project:?}: {e}");
        assert!(e.to_string().contains("nodes is forbidden"), "{e}");
    }
    assert!(
        !unschedulable(&r.client).await,
        "a refused drain cordons nothing"
    );
    assert_eq!(allocations_on_node(&r.client).await, before);

    let e = drain(&r.client, "no-such-node", "").await.expect_err("404");
    assert_eq!(e.code(), Some(404), "{e}");
    assert!(e.to_string().contains("no-such-node"), "{e}");
    let e = drain(&r.client, NODE, "?dryRun=maybe")
        .await
        .expect_err("400");
    assert_eq!(e.code(), Some(400), "{e}");
    assert!(e.to_string().contains("dryRun"), "{e}");
}

#[tokio::test]
async fn drain_cordons_evicts_services_keeps_jobs_and_records_it() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    seed(&r).await;
    let before = allocations_on_node(&r.client).await;

    let dry = drain(&r.client, NODE, "?dryRun=All")
        .await
        .expect("dry run");
    assert!(dry.dry_run && !dry.cordoned);
    assert_eq!(names(&dry.evicted), ["payroll-api-0", "payroll-api-1"]);
    assert_eq!(names(&dry.kept), ["month-end-close-0"]);
    assert!(!unschedulable(&r.client).await, "a dry run cordons nothing");
    assert_eq!(allocations_on_node(&r.client).await, before);

    let done = drain(&r.client, NODE, "").await.expect("drain");
    assert!(!done.dry_run && done.cordoned);
    assert_eq!(names(&done.evicted), ["payroll-api-0", "payroll-api-1"]);
    assert_eq!(done.kept.len(), 1);
    assert!(
        done.kept[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("job")),
        "{:?}",
        done.kept
    );
    assert!(unschedulable(&r.client).await);
    assert_eq!(
        allocations_on_node(&r.client).await,
        ["month-end-close-0"],
        "the job's instance stays"
    );

    // Again: the node is already cordoned, nothing is left to evict.
    let again = drain(&r.client, NODE, "").await.expect("drain again");
    assert!(!again.cordoned && again.evicted.is_empty() && again.kept.len() == 1);

    r.state.events.flush().await;
    let events = r
        .client
        .list_all(kind("event"), None, &ListOptions::default())
        .await
        .expect("events");
    let find = |reason: &str, object: &str| {
        events.iter().any(|e| {
            e["reason"] == reason
                && e["involvedObject"]["name"] == object
                && e["source"]["component"] == "drain"
        })
    };
    assert!(find("Evicted", "payroll-api"), "{events:#?}");
    assert!(find("Drained", NODE), "{events:#?}");
}
