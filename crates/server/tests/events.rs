//! Events through a real server on loopback: the recorder's series, rate limit and TTL,
//! the core `v1` view kubectl and client-go read, admission denials as Warning events,
//! and what a node credential may record.

use std::time::Duration;

use serde_json::{Value, json};

use api::{EventRecord, EventType, ObjectReference};
use client::{Client, ClientError};
use server::EventOptions;
use server::ServerConfig;

use testkit::{TestServer as Running, kind, load_examples, seed_allocation};

async fn start_with(config: ServerConfig) -> Running {
    Running::start_with(config).await
}

async fn server(events: EventOptions) -> Running {
    start_with(ServerConfig {
        scheduler: None,
        events,
        ..ServerConfig::default()
    })
    .await
}

fn workload_ref(name: &str) -> ObjectReference {
    ObjectReference::new(
        api::kinds::WORKLOAD,
        Some("default"),
        name,
        Some(&format!("uid-{name}")),
    )
}

async fn core_events(r: &Running, query: &str) -> Value {
    r.client
        .get_path(&format!("/api/v1/namespaces/default/events{query}"))
        .await
        .expect("core events")
}

fn items(list: &Value) -> &Vec<Value> {
    list["items"].as_array().expect("items")
}

fn code(e: ClientError) -> u16 {
    match e {
        ClientError::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_repeated_event_is_one_event_with_a_count_and_few_writes() {
    let r = server(EventOptions::default()).await;
    let w = workload_ref("crashy");
    for _ in 0..100 {
        r.state.events.record(
            &w,
            EventType::Warning,
            "BackOff",
            "restarting after exit code 1",
            "test",
        );
    }
    r.state.events.flush().await;
    let list = core_events(&r, "").await;
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "EventList");
    let [event] = items(&list).as_slice() else {
        panic!("one event: {list:#}")
    };
    assert_eq!(event["apiVersion"], "v1");
    assert_eq!(event["count"], 100);
    assert_eq!(event["reason"], "BackOff");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["source"]["component"], "test");
    assert_eq!(event["involvedObject"]["uid"], "uid-crashy");
    let m = &r.state.metrics;
    assert_eq!(m.events_count("deduplicated"), 99);
    let writes = m.events_count("written");
    assert!((1..=3).contains(&writes), "{writes} writes");
    // The audit log names the component.
    let audit = r
        .client
        .get_path("/meridian/v1/audit")
        .await
        .expect("audit");
    let events: Vec<&Value> = items(&audit)
        .iter()
        .filter(|e| e["kind"] == "Event")
        .collect();
    assert_eq!(events.len() as u64, writes);
    assert!(events.iter().all(|e| {
        e["actor"]
            .as_str()
            .is_some_and(|a| a.contains("system:test"))
    }));
}

#[tokio::test]
async fn a_flood_of_distinct_messages_about_one_object_is_capped() {
    let r = server(EventOptions::default()).await;
    let w = workload_ref("flooded");
    for i in 0..1000 {
        r.state.events.record(
            &w,
            EventType::Warning,
            "Unhealthy",
            format!("probe {i} failed"),
            "test",
        );
    }
    // Another object has its own budget.
    r.state.events.record(
        &workload_ref("quiet"),
        EventType::Normal,
        "Started",
        "started",
        "test",
    );
    r.state.events.flush().await;
    let flooded = core_events(&r, "?fieldSelector=involvedObject.name=flooded").await;
    let n = items(&flooded).len();
    assert!((25..=27).contains(&n), "{n} events kept of 1000");
    let quiet = core_events(&r, "?fieldSelector=involvedObject.name=quiet").await;
    assert_eq!(items(&quiet).len(), 1);
    let dropped = r.state.metrics.events_count("dropped_rate_limited")
        + r.state.metrics.events_count("dropped_queue_full");
    assert_eq!(dropped as usize, 1000 - n);
}

#[tokio::test]
async fn events_expire_after_their_ttl() {
    let r = server(EventOptions {
        ttl: Duration::from_secs(1),
        ..EventOptions::default()
    })
    .await;
    r.state.events.record(
        &workload_ref("short-lived"),
        EventType::Normal,
        "Scheduled",
        "placed",
        "test",
    );
    r.state.events.flush().await;
    assert_eq!(items(&core_events(&r, "").await).len(), 1);
    let mut left = usize::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = items(&core_events(&r, "").await).len();
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "the event outlived its TTL");
    assert!(r.state.metrics.events_count("expired") >= 1);
}

#[tokio::test]
async fn the_core_view_lists_watches_and_selects_by_involved_object() {
    let r = server(EventOptions::default()).await;
    // Discovery lists events in the core group, as kubectl expects.
    let core = r.client.get_path("/api/v1").await.expect("discovery");
    assert!(
        core["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|res| res["name"] == "events" && res["namespaced"] == true),
        "{core:#}"
    );
    for (name, type_, reason) in [
        ("w1", EventType::Normal, "Scheduled"),
        ("w1", EventType::Warning, "FailedScheduling"),
        ("w2", EventType::Normal, "Scheduled"),
    ] {
        r.state.events.record(
            &workload_ref(name),
            type_,
            reason,
            format!("{reason} {name}"),
            "scheduler",
        );
    }
    r.state.events.flush().await;
    // What `kubectl describe workload w1` asks.
    let described = core_events(
        &r,
        "?fieldSelector=involvedObject.name%3Dw1,involvedObject.namespace%3Ddefault,\
         involvedObject.kind%3DWorkload,involvedObject.uid%3Duid-w1&limit=500",
    )
    .await;
    let reasons: Vec<&str> = items(&described)
        .iter()
        .map(|e| e["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons.len(), 2, "{described:#}");
    assert!(reasons.contains(&"Scheduled") && reasons.contains(&"FailedScheduling"));
    let warnings = core_events(&r, "?fieldSelector=type%3DWarning").await;
    assert_eq!(items(&warnings).len(), 1);
    assert_eq!(items(&warnings)[0]["involvedObject"]["name"], "w1");
    let all = r.client.get_path("/api/v1/events").await.expect("all");
    assert_eq!(items(&all).len(), 3);
    // Get by name.
    let name = items(&warnings)[0]["metadata"]["name"]
        .as_str()
        .expect("name");
    let one = r
        .client
        .get_path(&format!("/api/v1/namespaces/default/events/{name}"))
        .await
        .expect("get");
    assert_eq!(one["apiVersion"], "v1");
    assert_eq!(one["reason"], "FailedScheduling");
    // The meridian.dev view has the same objects.
    let native = r
        .client
        .get_path("/apis/meridian.dev/v1/namespaces/default/events")
        .await
        .expect("native");
    assert_eq!(native["apiVersion"], "meridian.dev/v1");
    assert_eq!(items(&native).len(), 3);

    // A watch with a selector: ADDED for what exists, then new events, as core v1.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/namespaces/default/events?watch=true&fieldSelector=involvedObject.name%3Dw2",
            r.url
        ))
        .bearer_auth(&r.token)
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status(), 200);
    r.state.events.record(
        &workload_ref("w2"),
        EventType::Warning,
        "Preempted",
        "preempted by w9",
        "scheduler",
    );
    r.state.events.flush().await;
    let mut buffer = Vec::new();
    let mut lines: Vec<Value> = Vec::new();
    while lines.len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("a watch event in time")
            .expect("chunk")
            .expect("stream open");
        buffer.extend_from_slice(&chunk);
        while let Some(i) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=i).collect();
            lines.push(serde_json::from_slice(&line).expect("a JSON line"));
        }
    }
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["apiVersion"], "v1");
    assert_eq!(lines[0]["object"]["reason"], "Scheduled");
    assert_eq!(lines[1]["object"]["reason"], "Preempted");
    assert_eq!(lines[1]["object"]["involvedObject"]["name"], "w2");
}

#[tokio::test]
async fn a_core_v1_event_can_be_created_and_is_validated() {
    let r = server(EventOptions::default()).await;
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "w.1", "namespace": "default"},
        "involvedObject": {"kind": "Workload", "name": "w", "namespace": "default"},
        "reason": "Pulled", "message": "image pulled", "type": "Normal",
        "source": {"component": "kubectl"},
        "firstTimestamp": "2026-12-06T05:00:00Z", "lastTimestamp": "2026-12-06T05:00:00Z",
        "count": 1,
    });
    let created = r
        .client
        .request_json(
            client::Method::POST,
            "/api/v1/namespaces/default/events",
            Some(&event),
        )
        .await
        .expect("create");
    assert_eq!(created["apiVersion"], "v1");
    let mut long = event.clone();
    long["metadata"]["name"] = json!("w.2");
    long["message"] = json!("x".repeat(1025));
    long["reason"] = json!("not camel");
    let e = r
        .client
        .request_json(
            client::Method::POST,
            "/api/v1/namespaces/default/events",
            Some(&long),
        )
        .await
        .expect_err("refused");
    assert_eq!(code(e), 422);
}

#[tokio::test]
async fn an_admission_denial_is_a_warning_event_on_the_object() {
    let r = server(EventOptions::default()).await;
    let rego = "package needs_owner\n\ndeny contains msg if {\n  not input.object.metadata.labels.owner\n  msg := \"workloads need an owner label\"\n}\n";
    r.client
        .create(
            kind("Policy"),
            None,
            &json!({
                "apiVersion": "meridian.dev/v1", "kind": "Policy",
                "metadata": {"name": "needs-owner"},
                "spec": {"enforcement": "deny", "targets": ["Workload"], "rego": rego}
            }),
            false,
        )
        .await
        .expect("policy");
    let workload = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "ownerless", "namespace": "default"},
        "spec": {"type": "service", "replicas": 1,
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": "100m", "memory": "64Mi"}}}
    });
    let e = r
        .client
        .create(kind("Workload"), Some("default"), &workload, false)
        .await
        .expect_err("denied");
    assert_eq!(code(e), 403);
    r.state.events.flush().await;
    let list = core_events(&r, "?fieldSelector=reason%3DPolicyDenied").await;
    let [event] = items(&list).as_slice() else {
        panic!("one denial event: {list:#}")
    };
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["involvedObject"]["kind"], "Workload");
    assert_eq!(event["involvedObject"]["name"], "ownerless");
    assert_eq!(event["source"]["component"], "admission");
    let message = event["message"].as_str().expect("message");
    assert!(message.contains("needs-owner"), "{message}");
}

#[tokio::test]
async fn a_node_records_events_only_about_allocations_on_its_node() {
    let r = server(EventOptions::default()).await;
    load_examples(&r.client).await;
    let token = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/join-tokens",
            Some(&json!({"site": "onprem-frankfurt", "ttlSeconds": 600})),
        )
        .await
        .expect("join token")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let joined: Value = reqwest::Client::new()
        .post(format!("{}/meridian/v1/nodes/join", r.url))
        .bearer_auth(&token)
        .json(&json!({"node": "edge-01"}))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("json");
    let node =
        Client::new(&r.url, joined["token"].as_str().expect("credential"), None).expect("client");
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
    let record = |name: &str, namespace: Option<&str>| EventRecord {
        involved_object: ObjectReference {
            kind: "Allocation".into(),
            namespace: namespace.map(Into::into),
            name: name.into(),
            // A uid the node makes up is replaced by the stored one.
            uid: Some("made-up".into()),
            ..ObjectReference::default()
        },
        type_: EventType::Warning,
        reason: "BackOff".into(),
        message: "restarting in 10s".into(),
        component: "meridian-agent".into(),
    };
    node.record_event(&record("mine", Some("default")))
        .await
        .expect("its own allocation");
    for other in [
        record("theirs", Some("default")),
        record("nothing", Some("default")),
    ] {
        assert_eq!(
            code(node.record_event(&other).await.expect_err("not its own")),
            403
        );
    }
    // Nor about its Node or anything else, nor through the generic create paths.
    let mut about_node = record("edge-01", None);
    about_node.involved_object.kind = "Node".into();
    assert_eq!(
        code(node.record_event(&about_node).await.expect_err("node")),
        403
    );
    let forged = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "theirs.1", "namespace": "default"},
        "involvedObject": {"kind": "Allocation", "name": "theirs", "namespace": "default"},
        "reason": "Killed", "type": "Normal",
    });
    assert_eq!(
        code(
            node.request_json(
                client::Method::POST,
                "/api/v1/namespaces/default/events",
                Some(&forged)
            )
            .await
            .expect_err("generic path")
        ),
        403
    );
    r.state.events.flush().await;
    let list = core_events(&r, "?fieldSelector=involvedObject.kind%3DAllocation").await;
    let [event] = items(&list).as_slice() else {
        panic!("one event: {list:#}")
    };
    assert_eq!(event["involvedObject"]["name"], "mine");
    assert_eq!(event["involvedObject"]["uid"], "uid-mine");
    assert_eq!(event["source"]["host"], "edge-01");
    assert_eq!(event["source"]["component"], "meridian-agent");
}

#[tokio::test]
async fn a_project_scoped_viewer_reads_its_projects_events_only() {
    let r = server(EventOptions::default()).await;
    r.client
        .create(
            kind("Project"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
                    "metadata": {"name": "payments"}}),
            false,
        )
        .await
        .expect("project");
    for project in ["default", "payments"] {
        r.state.events.record(
            &ObjectReference::new(api::kinds::WORKLOAD, Some(project), "w", None),
            EventType::Normal,
            "Scheduled",
            format!("placed in {project}"),
            "scheduler",
        );
    }
    r.state.events.flush().await;
    let token = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/tokens",
            Some(&json!({"role": "viewer", "project": "payments"})),
        )
        .await
        .expect("token")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let viewer = Client::new(&r.url, &token, None).expect("client");
    let all = viewer.get_path("/api/v1/events").await.expect("list");
    let [event] = items(&all).as_slice() else {
        panic!("its project's event only: {all:#}")
    };
    assert_eq!(event["metadata"]["namespace"], "payments");
    let other = viewer
        .get_path("/api/v1/namespaces/default/events")
        .await
        .expect_err("another project");
    assert_eq!(code(other), 404);
    // A viewer records nothing.
    let record = EventRecord {
        involved_object: ObjectReference::new(api::kinds::WORKLOAD, Some("payments"), "w", None),
        type_: EventType::Normal,
        reason: "Started".into(),
        message: String::new(),
        component: "x".into(),
    };
    assert_eq!(
        code(viewer.record_event(&record).await.expect_err("viewer")),
        403
    );
}

/// Event write cost: workloads created per second through the API, each followed by an
/// event as the scheduler will record one, with the recorder on and off. A figure, not
/// an assertion: `cargo nextest run -p server --run-ignored only -E 'test(event_write_cost)'
/// --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn event_write_cost() {
    const N: usize = 400;
    for enabled in [false, true] {
        let r = server(EventOptions {
            enabled,
            ..EventOptions::default()
        })
        .await;
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let c = r.client.clone();
            let events = r.state.events.clone();
            tasks.push(tokio::spawn(async move {
                for i in (worker..N).step_by(8) {
                    let name = format!("w{i}");
                    let w = json!({
                        "apiVersion": "meridian.dev/v1", "kind": "Workload",
                        "metadata": {"name": name, "namespace": "default"},
                        "spec": {"type": "service", "replicas": 1,
                                 "task": {"driver": "exec", "command": ["/bin/true"],
                                          "resources": {"cpu": "100m", "memory": "64Mi"}}}
                    });
                    let created = c
                        .create(api::kinds::WORKLOAD, Some("default"), &w, false)
                        .await
                        .expect("create");
                    let uid = created["metadata"]["uid"].as_str().map(str::to_owned);
                    events.record(
                        &ObjectReference::new(
                            api::kinds::WORKLOAD,
                            Some("default"),
                            name.clone(),
                            uid.as_deref(),
                        ),
                        EventType::Normal,
                        "Scheduled",
                        format!("placed {name}"),
                        "scheduler",
                    );
                }
            }));
        }
        for t in tasks {
            t.await.expect("worker");
        }
        r.state.events.flush().await;
        let elapsed = started.elapsed();
        println!(
            "events {}: {N} workloads in {:.2} s = {:.0} creates/s; event writes {}, events written {}",
            if enabled { "on " } else { "off" },
            elapsed.as_secs_f64(),
            N as f64 / elapsed.as_secs_f64(),
            r.state.metrics.events_count("written"),
            items(&core_events(&r, "").await).len(),
        );
    }
}
