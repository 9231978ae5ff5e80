//! The log subresource and the agents' log sessions against a real server: a node
//! credential polls and answers only its own node's sessions, the reader gets exactly
//! what the agent uploads, an agent's refusal and a Lost node are clear errors, and a
//! reader that goes away ends the agent's upload.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use client::{Client, ClientError, LogOptions, Method};

use testkit::{TestServer, kind, load_examples, seed_allocation};

async fn join_node(r: &TestServer, node: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let token = r
        .client
        .request_json(
            Method::POST,
            "/meridian/v1/join-tokens",
            Some(&json!({"site": "onprem-frankfurt"})),
        )
        .await
        .expect("join token")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/meridian/v1/nodes/join", r.url))
        .bearer_auth(token)
        .json(&json!({"node": node}))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("json");
    let c = Client::new(&r.url, resp["token"].as_str().expect("credential"), None).expect("client");
    c.create(
        kind("node"),
        None,
        &json!({
            "apiVersion": "meridian.dev/v1", "kind": "Node",
            "metadata": {"name": node},
            "spec": {"site": "onprem-frankfurt", "os": {"family": "linux"}, "arch": "amd64",
                     "capacity": {"cpu": "8", "memory": "32Gi"}, "drivers": ["exec"]},
        }),
        false,
    )
    .await
    .expect("the node registers itself");
    c
}

fn code(e: ClientError) -> u16 {
    match e {
        ClientError::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn message(e: ClientError) -> String {
    match e {
        ClientError::Api(s) => s.message,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// One session from `node`'s poll.
async fn poll_one(c: &Client, node: &str) -> Value {
    let list = c
        .get_path(&format!(
            "/meridian/v1/nodes/{node}/log-sessions?timeoutSeconds=20"
        ))
        .await
        .expect("poll");
    let sessions = list["sessions"].as_array().expect("sessions").clone();
    assert_eq!(sessions.len(), 1, "{list}");
    sessions[0].clone()
}

fn chunks(parts: &[&'static str]) -> impl futures::Stream<Item = std::io::Result<Bytes>> + use<> {
    futures::stream::iter(
        parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn a_node_serves_only_its_own_log_sessions() {
    let r = TestServer::start().await;
    load_examples(&r.client).await;
    let n1 = join_node(&r, "n1").await;
    let n2 = join_node(&r, "n2").await;
    seed_allocation(
        &r.state,
        &json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": "a-0", "namespace": "default"},
            "spec": {"workload": "a", "node": "n2", "resources": {"cpu": "100m", "memory": "32Mi"}},
        }),
    )
    .await;

    // Another node's sessions: neither another node nor an admin may poll them.
    let e = n1
        .get_path("/meridian/v1/nodes/n2/log-sessions?timeoutSeconds=1")
        .await
        .expect_err("n1 polls n2");
    assert_eq!(code(e), 403);
    let e = r
        .client
        .get_path("/meridian/v1/nodes/n2/log-sessions?timeoutSeconds=1")
        .await
        .expect_err("admin polls n2");
    assert_eq!(code(e), 403);
    // Nor read the logs of another node's allocation.
    let e = n1
        .logs("default", "a-0", &LogOptions::default())
        .await
        .err()
        .expect("n1 reads n2's logs");
    assert_eq!(code(e), 403);

    // A read waits for n2's agent, which polls and gets the request.
    let reader = {
        let c = r.client.clone();
        tokio::spawn(async move {
            let opts = LogOptions {
                tail_lines: Some(5),
                ..LogOptions::default()
            };
            let mut stream = c.logs("default", "a-0", &opts).await?;
            let mut got = Vec::new();
            while let Some(chunk) = stream.next().await {
                got.extend_from_slice(&chunk?);
            }
            Ok::<_, ClientError>(String::from_utf8_lossy(&got).into_owned())
        })
    };
    let session = poll_one(&n2, "n2").await;
    assert_eq!(session["allocation"], "a-0");
    assert_eq!(session["namespace"], "default");
    assert_eq!(session["tailLines"], 5);
    let id = session["id"].as_str().expect("id").to_owned();
    assert!(id.len() >= 43, "an unguessable id: {id}");

    // n1 can answer it neither as itself nor as n2.
    let e = n1
        .send_stream(
            Method::POST,
            &format!("/meridian/v1/nodes/n1/log-sessions/{id}"),
            chunks(&["forged\n"]),
        )
        .await
        .expect_err("not n1's session");
    assert_eq!(code(e), 404);
    let e = n1
        .send_stream(
            Method::POST,
            &format!("/meridian/v1/nodes/n2/log-sessions/{id}"),
            chunks(&["forged\n"]),
        )
        .await
        .expect_err("n1 is not n2");
    assert_eq!(code(e), 403);

    let done = n2
        .send_stream(
            Method::POST,
            &format!("/meridian/v1/nodes/n2/log-sessions/{id}"),
            chunks(&["hello\n", "world\n"]),
        )
        .await
        .expect("n2 answers");
    assert_eq!(done["ended"], "complete", "{done}");
    let text = reader.await.expect("reader task").expect("logs");
    assert_eq!(text, "hello\nworld\n");
    // Answered once.
    let e = n2
        .send_stream(
            Method::POST,
            &format!("/meridian/v1/nodes/n2/log-sessions/{id}"),
            chunks(&["again\n"]),
        )
        .await
        .expect_err("answered");
    assert_eq!(code(e), 404);

    // The agent's refusal reaches the reader with its reason.
    let reader = {
        let c = r.client.clone();
        tokio::spawn(async move {
            c.logs("default", "a-0", &LogOptions::default())
                .await
                .map(|_| ())
        })
    };
    let session = poll_one(&n2, "n2").await;
    let id = session["id"].as_str().expect("id");
    n2.request_json(
        Method::POST,
        &format!("/meridian/v1/nodes/n2/log-sessions/{id}/error"),
        Some(
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "code": 404, "reason": "NotFound",
                     "message": "allocation default/a-0 is not on node n2"}),
        ),
    )
    .await
    .expect("refuse");
    let e = reader.await.expect("task").expect_err("refused");
    assert!(
        message(e).contains("node \"n2\" cannot serve the logs: allocation default/a-0"),
        "the agent's reason is passed on"
    );

    // A reader that goes away ends the agent's upload, even one that never ends.
    let reader = {
        let c = r.client.clone();
        tokio::spawn(async move {
            let opts = LogOptions {
                follow: true,
                ..LogOptions::default()
            };
            let mut stream = c.logs("default", "a-0", &opts).await?;
            let first = stream.next().await.transpose()?;
            drop(stream);
            Ok::<_, ClientError>(first)
        })
    };
    let session = poll_one(&n2, "n2").await;
    assert_eq!(session["follow"], true);
    let id = session["id"].as_str().expect("id").to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let upload = {
        let n2 = n2.clone();
        tokio::spawn(async move {
            n2.send_stream(
                Method::POST,
                &format!("/meridian/v1/nodes/n2/log-sessions/{id}"),
                body,
            )
            .await
        })
    };
    tx.send(Ok(Bytes::from_static(b"first\n")))
        .await
        .expect("send");
    let first = reader.await.expect("task").expect("read");
    assert_eq!(first.as_deref(), Some(&b"first\n"[..]));
    let ended = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("the upload ends when its reader goes")
        .expect("task")
        .expect("answer");
    assert_eq!(ended["ended"], "the reader went away", "{ended}");
    drop(tx);

    // A Lost node is not asked.
    let mut node = r.client.get(kind("node"), None, "n2").await.expect("node");
    node["status"] = json!({"phase": "Lost"});
    r.client
        .replace_status(kind("node"), None, "n2", &node)
        .await
        .expect("mark lost");
    let e = r
        .client
        .logs("default", "a-0", &LogOptions::default())
        .await
        .err()
        .expect("lost");
    assert_eq!(code(e), 503);
}
