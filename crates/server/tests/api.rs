//! The HTTP API end to end: a real server on loopback with a real SQLite store, driven by
//! the real client.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use client::{Client, ClientError, ListOptions, PatchType};
use server::ServerConfig;
use testkit::{TestServer, kind, wait_until_async};

/// A plain HTTP client for requests the Meridian client would not send.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn project(name: &str) -> Value {
    json!({"apiVersion": "meridian.dev/v1", "kind": "Project", "metadata": {"name": name}, "spec": {}})
}

fn workload(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "type": "service",
            "replicas": 2,
            "task": {
                "driver": "exec",
                "command": ["/usr/bin/python3", "-m", "http.server", "8080"],
                "resources": {"cpu": "500m", "memory": "256Mi"},
                "os": {"family": "linux"}
            },
            "data": {"classification": "personal", "residency": ["EU"]}
        }
    })
}

fn site(name: &str, jurisdiction: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Site",
        "metadata": {"name": name},
        "spec": {
            "provider": "onprem",
            "region": "frankfurt",
            "jurisdiction": jurisdiction,
            "operator": {"name": "Example Bank AG", "jurisdiction": jurisdiction},
        }
    })
}

fn api_code(e: &ClientError) -> u16 {
    e.code()
        .unwrap_or_else(|| panic!("expected an API error, got {e}"))
}

async fn setup_finance(ts: &TestServer) -> Client {
    let c = ts.client.clone();
    c.create(kind("project"), None, &project("finance"), false)
        .await
        .expect("project");
    c
}

#[tokio::test]
async fn auth_is_required_and_health_is_public() {
    let ts = TestServer::start().await;
    let http = http();
    let r = http
        .get(format!("{}/healthz", ts.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/apis/meridian.dev/v1/sites", ts.url))
        .send()
        .await
        .expect("sites");
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("status body");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    let bad = ts.client_as("mrd_not-a-token");
    let err = bad
        .list(kind("site"), None, &ListOptions::default())
        .await
        .expect_err("401");
    assert_eq!(api_code(&err), 401);
}

#[tokio::test]
async fn create_get_update_conflict_delete() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    let wl = kind("workload");
    let created = c
        .create(
            wl,
            Some("finance"),
            &workload("payroll-api", json!({"app": "payroll"})),
            false,
        )
        .await
        .expect("created");
    assert_eq!(created["metadata"]["namespace"], "finance");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].as_str().is_some());
    let rv1 = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();

    let again = c
        .create(
            wl,
            Some("finance"),
            &workload("payroll-api", json!({})),
            false,
        )
        .await
        .expect_err("exists");
    assert_eq!(api_code(&again), 409);

    let mut changed = created.clone();
    changed["spec"]["replicas"] = json!(3);
    let updated = c
        .replace(wl, Some("finance"), "payroll-api", &changed)
        .await
        .expect("update");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_ne!(
        updated["metadata"]["resourceVersion"].as_str(),
        Some(rv1.as_str())
    );

    // Writing with the stale resourceVersion is a conflict.
    let stale = c
        .replace(wl, Some("finance"), "payroll-api", &changed)
        .await
        .expect_err("stale");
    assert_eq!(api_code(&stale), 409);
    let ClientError::Api(status) = &stale else {
        panic!("api error")
    };
    assert_eq!(status.reason, "Conflict");
    assert!(
        status.message.contains("latest version"),
        "{}",
        status.message
    );

    let got = c
        .get(wl, Some("finance"), "payroll-api")
        .await
        .expect("get");
    assert_eq!(got["spec"]["replicas"], 3);
    // Canonical quantities come back as Kubernetes writes them.
    assert_eq!(got["spec"]["task"]["resources"]["memory"], "256Mi");

    c.delete(wl, Some("finance"), "payroll-api")
        .await
        .expect("delete");
    let gone = c
        .get(wl, Some("finance"), "payroll-api")
        .await
        .expect_err("gone");
    assert_eq!(api_code(&gone), 404);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    let mut bad = workload("bad", json!({}));
    bad["spec"]["task"]["resources"]["memory"] = json!("12Zi");
    let err = c
        .create(kind("wl"), Some("finance"), &bad, false)
        .await
        .expect_err("invalid");
    assert_eq!(api_code(&err), 422);
    let ClientError::Api(status) = err else {
        panic!()
    };
    let causes = &status.details.expect("details").causes;
    assert!(
        causes
            .iter()
            .any(|c| c.field == "spec.task.resources.memory"),
        "{causes:?}"
    );
    // A workload in a project that does not exist.
    let err = c
        .create(
            kind("wl"),
            Some("nowhere"),
            &workload("a", json!({})),
            false,
        )
        .await
        .expect_err("no project");
    assert_eq!(api_code(&err), 404);
}

#[tokio::test]
async fn merge_patch_apply_dry_run_and_status() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    let wl = kind("wl");
    // Apply creates, then updates, then is a no-op.
    let manifest = workload("api", json!({"tier": "web"}));
    let (_, first) = c
        .apply(wl, Some("finance"), &manifest, false)
        .await
        .expect("apply");
    assert_eq!(first, client::ApplyOutcome::Created);
    let (_, same) = c
        .apply(wl, Some("finance"), &manifest, false)
        .await
        .expect("apply");
    assert_eq!(same, client::ApplyOutcome::Unchanged);
    let mut m2 = manifest.clone();
    m2["spec"]["replicas"] = json!(5);
    let (after, changed) = c
        .apply(wl, Some("finance"), &m2, false)
        .await
        .expect("apply");
    assert_eq!(changed, client::ApplyOutcome::Configured);
    assert_eq!(after["spec"]["replicas"], 5);

    // Merge patch changes one field and keeps the rest.
    let patched = c
        .patch(
            wl,
            Some("finance"),
            "api",
            PatchType::Merge,
            &json!({"metadata": {"labels": {"team": "pay"}}}),
            false,
        )
        .await
        .expect("patch");
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"tier": "web", "team": "pay"})
    );
    assert_eq!(patched["spec"]["replicas"], 5);

    // JSON patch.
    let patched = c
        .patch(
            wl,
            Some("finance"),
            "api",
            PatchType::Json,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 1}]),
            false,
        )
        .await
        .expect("json patch");
    assert_eq!(patched["spec"]["replicas"], 1);

    // Dry run writes nothing.
    let dry = c
        .patch(
            wl,
            Some("finance"),
            "api",
            PatchType::Merge,
            &json!({"spec": {"replicas": 9}}),
            true,
        )
        .await
        .expect("dry run");
    assert_eq!(dry["spec"]["replicas"], 9);
    let now = c.get(wl, Some("finance"), "api").await.expect("get");
    assert_eq!(now["spec"]["replicas"], 1);
    let dry_create = c
        .create(wl, Some("finance"), &workload("never", json!({})), true)
        .await
        .expect("dry create");
    assert_eq!(dry_create["metadata"]["name"], "never");
    assert!(c.get(wl, Some("finance"), "never").await.is_err());

    // Status goes through /status only; a spec write keeps it.
    let mut with_status = now.clone();
    with_status["status"] = json!({"placedReplicas": 1, "desiredReplicas": 1});
    let s = c
        .replace_status(wl, Some("finance"), "api", &with_status)
        .await
        .expect("status");
    assert_eq!(s["status"]["placedReplicas"], 1);
    assert_eq!(
        s["metadata"]["generation"], now["metadata"]["generation"],
        "status does not bump generation"
    );
    let mut spec_write = s.clone();
    spec_write["status"] = json!({"placedReplicas": 0});
    spec_write["spec"]["replicas"] = json!(2);
    let w = c
        .replace(wl, Some("finance"), "api", &spec_write)
        .await
        .expect("update");
    assert_eq!(
        w["status"]["placedReplicas"], 1,
        "a spec update cannot change status"
    );
}

#[tokio::test]
async fn lists_paginate_and_select_by_label() {
    let ts = TestServer::start().await;
    paginate_and_select(&ts).await;
    assert!(
        ts.client
            .get_text("/metrics")
            .await
            .expect("metrics")
            .contains("meridian_lists_total{source=\"store\"}"),
        "without the list cache, lists read the store"
    );
}

/// The same lists served from the list cache (`--list-cache on`), which SQLite stores do
/// not keep by default: the same answers, and the metric says where they came from.
#[tokio::test]
async fn lists_from_the_list_cache_paginate_and_select_by_label() {
    let ts = TestServer::start_with(ServerConfig {
        list_cache: server::ListCache::On,
        ..ServerConfig::default()
    })
    .await;
    paginate_and_select(&ts).await;
    let metrics = ts.client.get_text("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("meridian_lists_total{source=\"cache\"}")
            && !metrics.contains("meridian_lists_total{source=\"store\"}"),
        "every list came from the cache: {}",
        metrics
            .lines()
            .filter(|l| l.contains("meridian_lists"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A server that keeps the list cache on its SQLite store, without a scheduler.
async fn list_cache_server() -> TestServer {
    TestServer::start_with(ServerConfig {
        list_cache: server::ListCache::On,
        scheduler: None,
        ..ServerConfig::default()
    })
    .await
}

/// A list served from the list cache sees every write acknowledged before it (a consistent
/// read: the cache waits until it has the store's current revision), also right after a
/// create, an update and a delete; `resourceVersion=0` lists whatever the cache holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_from_the_list_cache_sees_the_writes_before_it() {
    let ts = list_cache_server().await;
    let c = setup_finance(&ts).await;
    let wl = kind("wl");
    let names = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    for i in 0..40 {
        let name = format!("w{i:02}");
        c.create(wl, Some("finance"), &workload(&name, json!({})), false)
            .await
            .expect("create");
        let listed = c
            .list_all(wl, Some("finance"), &ListOptions::default())
            .await
            .expect("list");
        assert_eq!(listed.len(), i + 1, "the list right after creating {name}");
        assert!(names(&listed).contains(&name));
    }
    let mut changed = workload("w07", json!({"tier": "changed"}));
    let current = c.get(wl, Some("finance"), "w07").await.expect("get");
    changed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    c.replace(wl, Some("finance"), "w07", &changed)
        .await
        .expect("update");
    let tiered = c
        .list_all(
            wl,
            Some("finance"),
            &ListOptions {
                label_selector: Some("tier=changed".into()),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(names(&tiered), ["w07"], "the update is listed at once");
    c.delete(wl, Some("finance"), "w03").await.expect("delete");
    let listed = c
        .list_all(wl, Some("finance"), &ListOptions::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 39);
    assert!(
        !names(&listed).contains(&"w03".to_owned()),
        "the delete is listed at once"
    );
    let any = c
        .list(
            wl,
            Some("finance"),
            &ListOptions {
                resource_version: Some("0".into()),
                ..Default::default()
            },
        )
        .await
        .expect("resourceVersion=0");
    assert!(!any["items"].as_array().expect("items").is_empty());
}

/// A GET with `resourceVersion` is served from the list cache, as Kubernetes reads it: `0`
/// any version, `N` one not older than N, so a GET at the revision a write answered sees
/// that write. A GET without one reads the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_a_resource_version_comes_from_the_list_cache() {
    let ts = list_cache_server().await;
    let c = setup_finance(&ts).await;
    let wl = kind("wl");
    let path = client::resource_path(wl, Some("finance"), Some("w1"));
    let created = c
        .create(wl, Some("finance"), &workload("w1", json!({})), false)
        .await
        .expect("create");
    let at = |rv: &str| {
        let (c, url) = (c.clone(), format!("{path}?resourceVersion={rv}"));
        async move { c.get_path(&url).await }
    };
    let rv1 = created["metadata"]["resourceVersion"].clone();
    let got = at(rv1.as_str().expect("a resourceVersion"))
        .await
        .expect("get");
    assert_eq!(got["metadata"]["resourceVersion"], rv1);
    let mut changed = workload("w1", json!({"tier": "changed"}));
    changed["metadata"]["resourceVersion"] = rv1.clone();
    let updated = c
        .replace(wl, Some("finance"), "w1", &changed)
        .await
        .expect("update");
    let rv2 = updated["metadata"]["resourceVersion"].clone();
    assert_ne!(rv1, rv2);
    let got = at(rv2.as_str().expect("a resourceVersion"))
        .await
        .expect("get");
    assert_eq!(
        got["metadata"]["resourceVersion"], rv2,
        "not older than asked"
    );
    assert_eq!(got["metadata"]["labels"]["tier"], "changed");
    let any = at("0").await.expect("resourceVersion=0");
    assert_eq!(any["metadata"]["name"], "w1");
    let missing = c
        .get_path(&format!(
            "{}?resourceVersion=0",
            client::resource_path(wl, Some("finance"), Some("nope"))
        ))
        .await
        .expect_err("no such workload");
    assert!(missing.to_string().contains("not found"), "{missing}");
    c.get(wl, Some("finance"), "w1").await.expect("a plain get");
    let metrics = ts.client.get_text("/metrics").await.expect("metrics");
    let count = |source: &str| -> u64 {
        let prefix = format!("meridian_gets_total{{source=\"{source}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count("cache"),
        4,
        "the GETs with a resourceVersion:\n{metrics}"
    );
    assert!(count("store") >= 1, "the plain GET reads the store");
}

async fn paginate_and_select(ts: &TestServer) {
    let c = setup_finance(ts).await;
    let wl = kind("wl");
    for i in 0..25 {
        let tier = if i % 5 == 0 { "batch" } else { "web" };
        c.create(
            wl,
            Some("finance"),
            &workload(&format!("w{i:02}"), json!({"tier": tier})),
            false,
        )
        .await
        .expect("create");
    }
    let page = c
        .list(
            wl,
            Some("finance"),
            &ListOptions {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(page["kind"], "WorkloadList");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(10));
    assert!(page["metadata"]["continue"].as_str().is_some());
    let all = c
        .list_all(
            wl,
            Some("finance"),
            &ListOptions {
                limit: Some(7),
                ..Default::default()
            },
        )
        .await
        .expect("all");
    assert_eq!(all.len(), 25);
    let names: Vec<&str> = all
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no duplicates across pages");
    let batch = c
        .list_all(
            wl,
            Some("finance"),
            &ListOptions {
                label_selector: Some("tier=batch".into()),
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("selected");
    assert_eq!(batch.len(), 5);
    let not_batch = c
        .list_all(
            wl,
            None,
            &ListOptions {
                label_selector: Some("tier!=batch".into()),
                ..Default::default()
            },
        )
        .await
        .expect("selected");
    assert_eq!(not_batch.len(), 20);
    let by_name = c
        .list_all(
            wl,
            Some("finance"),
            &ListOptions {
                field_selector: Some("metadata.name=w03".into()),
                ..Default::default()
            },
        )
        .await
        .expect("field selector");
    assert_eq!(by_name.len(), 1);
}

#[tokio::test]
async fn watch_streams_changes_and_resumes() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    let wl = kind("wl");
    let created = c
        .create(wl, Some("finance"), &workload("a", json!({})), false)
        .await
        .expect("create");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    // Without a resourceVersion: the current state first.
    let mut w = c
        .watch(wl, Some("finance"), &ListOptions::default())
        .await
        .expect("watch");
    let first = w.next().await.expect("event").expect("ok");
    assert_eq!(first.type_, "ADDED");
    // The watch is established (its first event arrived): change the object meanwhile.
    let c2 = c.clone();
    tokio::spawn(async move {
        c2.patch(
            wl,
            Some("finance"),
            "a",
            PatchType::Merge,
            &json!({"spec": {"replicas": 4}}),
            false,
        )
        .await
        .expect("patch");
        c2.delete(wl, Some("finance"), "a").await.expect("delete");
    });
    let modified = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("in time")
        .expect("event")
        .expect("ok");
    assert_eq!(modified.type_, "MODIFIED");
    assert_eq!(modified.object["spec"]["replicas"], 4);
    let deleted = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("in time")
        .expect("event")
        .expect("ok");
    assert_eq!(deleted.type_, "DELETED");

    // Resume from the creation's resourceVersion: the same two changes replay.
    let mut resumed = c
        .watch(
            wl,
            Some("finance"),
            &ListOptions {
                resource_version: Some(rv),
                ..Default::default()
            },
        )
        .await
        .expect("resume");
    let a = resumed.next().await.expect("event").expect("ok");
    let b = resumed.next().await.expect("event").expect("ok");
    assert_eq!(
        (a.type_.as_str(), b.type_.as_str()),
        ("MODIFIED", "DELETED")
    );
}

#[tokio::test]
async fn rbac_viewer_and_project_scope() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    c.create(kind("project"), None, &project("research"), false)
        .await
        .expect("project");
    c.create(
        kind("wl"),
        Some("finance"),
        &workload("pay", json!({})),
        false,
    )
    .await
    .expect("wl");
    c.create(
        kind("wl"),
        Some("research"),
        &workload("train", json!({})),
        false,
    )
    .await
    .expect("wl");
    c.create(kind("site"), None, &site("fra", "DE"), false)
        .await
        .expect("site");

    let viewer = ts.client_as(&ts.new_token("viewer", None).await);
    assert!(viewer.get(kind("wl"), Some("finance"), "pay").await.is_ok());
    let err = viewer
        .create(
            kind("wl"),
            Some("finance"),
            &workload("x", json!({})),
            false,
        )
        .await
        .expect_err("viewer cannot write");
    assert_eq!(api_code(&err), 403);
    assert!(err.to_string().contains("viewer"), "{err}");

    let scoped = ts.client_as(&ts.new_token("operator", Some("finance")).await);
    assert!(scoped.get(kind("wl"), Some("finance"), "pay").await.is_ok());
    let hidden = scoped
        .get(kind("wl"), Some("research"), "train")
        .await
        .expect_err("hidden");
    assert_eq!(api_code(&hidden), 404, "other projects do not leak");
    let all = scoped
        .list_all(kind("wl"), None, &ListOptions::default())
        .await
        .expect("list -A");
    assert_eq!(all.len(), 1, "only its own project: {all:?}");
    assert!(
        scoped.get(kind("site"), None, "fra").await.is_ok(),
        "sites are readable"
    );
    let err = scoped
        .delete(kind("site"), None, "fra")
        .await
        .expect_err("no global writes");
    assert_eq!(api_code(&err), 403);
    let err = scoped
        .request_json(
            client::Method::POST,
            "/meridian/v1/tokens",
            Some(&json!({"role": "admin"})),
        )
        .await
        .expect_err("no token minting");
    assert_eq!(api_code(&err), 403);
}

#[tokio::test]
async fn audit_log_records_every_mutation_and_verifies() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    c.create(kind("site"), None, &site("fra", "DE"), false)
        .await
        .expect("site");
    c.delete(kind("site"), None, "fra").await.expect("delete");
    let log = c.get_path("/meridian/v1/audit").await.expect("log");
    let items = log["items"].as_array().expect("items");
    let verbs: Vec<(&str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["verb"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        verbs.contains(&("create", "Site")) && verbs.contains(&("delete", "Site")),
        "{verbs:?}"
    );
    assert!(
        items
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| !a.contains("mrd_"))),
        "no secrets in the log"
    );
    let verify = c
        .get_path("/meridian/v1/audit/verify")
        .await
        .expect("verify");
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn discovery_openapi_metrics_and_limits() {
    let ts = TestServer::start().await;
    let c = ts.client.clone();
    let list = c
        .get_path("/apis/meridian.dev/v1")
        .await
        .expect("discovery");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for plural in [
        "sites",
        "nodes",
        "workloads",
        "allocations",
        "policies",
        "projects",
        "workloads/status",
        "allocations/log",
    ] {
        assert!(names.contains(&plural), "{plural} missing from {names:?}");
    }
    let wl = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "workloads")
        .expect("workloads");
    assert_eq!(wl["namespaced"], true);
    assert!(
        wl["shortNames"]
            .as_array()
            .expect("short")
            .contains(&json!("wl"))
    );
    let openapi = c
        .get_path("/openapi/v3/apis/meridian.dev/v1")
        .await
        .expect("openapi");
    for k in [
        "Site",
        "Node",
        "Workload",
        "Allocation",
        "Policy",
        "Project",
    ] {
        assert!(
            openapi["components"]["schemas"][k].is_object(),
            "schema of {k}"
        );
    }
    c.get_path("/apis/meridian.dev/v1/sites")
        .await
        .expect("a request to count");
    let metrics = c.get_text("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("meridian_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("meridian_store_commit_duration_seconds"));
    assert!(metrics.contains("meridian_watches"));

    // A body over the limit is refused with 413 and a Status.
    let huge = "x".repeat(4 * 1024 * 1024);
    let http = http();
    let r = http
        .post(format!("{}/apis/meridian.dev/v1/sites", ts.url))
        .bearer_auth(&ts.token)
        .header("content-type", "application/json")
        .body(format!("{{\"pad\": \"{huge}\"}}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("status");
    assert_eq!(body["reason"], "RequestEntityTooLarge");
}

#[tokio::test]
async fn compacted_history_answers_410_expired() {
    let ts = TestServer::start_with(ServerConfig {
        compaction_interval: Duration::from_millis(100),
        scheduler: None,
        ..ServerConfig::default()
    })
    .await;
    let c = setup_finance(&ts).await;
    let wl = kind("wl");
    let first = c
        .create(wl, Some("finance"), &workload("a", json!({})), false)
        .await
        .expect("create");
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    c.patch(
        wl,
        Some("finance"),
        "a",
        PatchType::Merge,
        &json!({"spec": {"replicas": 3}}),
        false,
    )
    .await
    .expect("patch");
    // Compaction runs every 100 ms and lags one interval: poll until the old revision is gone.
    let expired = wait_until_async(
        Duration::from_secs(20),
        "history before the patch to be compacted (a watch from it answers 410)",
        || async {
            let opts = ListOptions {
                resource_version: Some(rv.clone()),
                ..Default::default()
            };
            c.watch(wl, Some("finance"), &opts).await.err()
        },
    )
    .await;
    assert_eq!(api_code(&expired), 410, "{expired}");
    let ClientError::Api(status) = expired else {
        panic!("{expired}")
    };
    assert_eq!(status.reason, "Expired");
    // A fresh list and a watch from its resourceVersion work.
    let list = c
        .list(wl, Some("finance"), &ListOptions::default())
        .await
        .expect("list");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    assert!(
        c.watch(
            wl,
            Some("finance"),
            &ListOptions {
                resource_version: Some(rv),
                ..Default::default()
            }
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn projects_answer_as_core_namespaces() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    let list = c.get_path("/api/v1/namespaces").await.expect("namespaces");
    assert_eq!(list["kind"], "NamespaceList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["default", "finance"]);
    assert_eq!(list["items"][0]["kind"], "Namespace");
    let created = c
        .request_json(
            client::Method::POST,
            "/api/v1/namespaces",
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}})),
        )
        .await
        .expect("create namespace");
    assert_eq!(created["kind"], "Namespace");
    // It is a project like any other.
    let project = c.get(kind("project"), None, "ops").await.expect("project");
    assert_eq!(project["kind"], "Project");
    // A project-scoped token sees only its own namespace.
    let scoped = ts.client_as(&ts.new_token("viewer", Some("finance")).await);
    let mine = scoped.get_path("/api/v1/namespaces").await.expect("list");
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    let err = scoped
        .get_path("/api/v1/namespaces/ops")
        .await
        .expect_err("hidden");
    assert_eq!(api_code(&err), 404);
}

/// A delete without a resourceVersion precondition is not refused because a controller
/// wrote the object's status meanwhile (it was answered 409 "the object has been
/// modified", seen by scripts/bench-agent while the scheduler wrote workload status).
/// With a precondition it still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_not_refused_for_a_concurrent_status_write() {
    let ts = TestServer::start().await;
    let c = setup_finance(&ts).await;
    let wl = kind("workload");
    let stop = tokio_util::sync::CancellationToken::new();
    for round in 0..25 {
        let name = format!("busy-{round}");
        c.create(wl, Some("finance"), &workload(&name, json!({})), false)
            .await
            .expect("create");
        // Two writers rewrite its status as fast as they can, like controllers.
        let mut writers = Vec::new();
        for w in 0..2 {
            let c = c.clone();
            let name = name.clone();
            let stop = stop.child_token();
            writers.push(tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.is_cancelled() {
                    let Ok(mut o) = c.get(kind("workload"), Some("finance"), &name).await else {
                        break;
                    };
                    n += 1;
                    o["status"] = json!({"desiredReplicas": n, "placedReplicas": w});
                    let _ = c
                        .replace_status(kind("workload"), Some("finance"), &name, &o)
                        .await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let deleted = c.delete(wl, Some("finance"), &name).await;
        for w in writers {
            w.abort();
        }
        deleted.unwrap_or_else(|e| panic!("round {round}: delete refused: {e}"));
    }
    stop.cancel();
    // A stale resourceVersion precondition is still a conflict.
    let created = c
        .create(wl, Some("finance"), &workload("pinned", json!({})), false)
        .await
        .expect("create");
    let rv = created["metadata"]["resourceVersion"].as_str().expect("rv");
    let mut o = created.clone();
    o["status"] = json!({"desiredReplicas": 1});
    c.replace_status(wl, Some("finance"), "pinned", &o)
        .await
        .expect("status");
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1",
                      "preconditions": {"resourceVersion": rv}});
    let resp = http()
        .delete(format!(
            "{}/apis/meridian.dev/v1/namespaces/finance/workloads/pinned",
            ts.url
        ))
        .bearer_auth(&ts.token)
        .json(&body)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn trailing_slashes_answer_as_without_them() {
    // kr8s asks for `/version/`; the kube-apiserver answers it like `/version`.
    let r = TestServer::start().await;
    for path in ["/version", "/api", "/apis", "/api/v1/namespaces"] {
        let plain = r.client.get_path(path).await.expect(path);
        let slashed = r
            .client
            .get_path(&format!("{path}/"))
            .await
            .unwrap_or_else(|e| panic!("{path}/: {e}"));
        assert_eq!(plain, slashed, "{path}");
    }
}
