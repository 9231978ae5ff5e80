//! The leader election and the fence on controller writes, on the embedded SQLite store
//! (one server, which leads): the server lists itself as leader, a write fenced with the
//! current term commits, and one fenced with an older term writes nothing, fails with
//! `Fenced` and ends that term. (Several servers on etcd: `crates/cli/tests/ha.rs`.)

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use server::leader::LEADER_KEY;
use server::registry::{AuditRecord, Fence, Mutation};
use store::{Op, StoreError};
use testkit::{TestServer, wait_until_async};

fn record(name: &str) -> AuditRecord {
    AuditRecord {
        time: "2026-12-06T00:00:00Z".into(),
        actor: "test".into(),
        verb: "create".into(),
        kind: "Test".into(),
        name: name.into(),
        ..AuditRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_fenced_with_an_old_term_writes_nothing() {
    let server = TestServer::start().await;
    let state = server.state.clone();
    let leadership = state.leadership.clone();
    let term = wait_until_async(Duration::from_secs(10), "the server to lead", || {
        let term = leadership.term();
        async move { term.ok_or("not leading yet") }
    })
    .await;

    let list: Value = server
        .client
        .get_path("/meridian/v1/servers")
        .await
        .expect("servers");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["leader"], true, "{list}");
    assert_eq!(items[0]["term"], term, "{list}");
    assert_eq!(list["leader"], items[0]["name"], "{list}");

    // The current term: the write commits.
    let current = CancellationToken::new();
    let fenced = state.registry.fenced(Fence {
        key: LEADER_KEY.into(),
        revision: term,
        term: current.clone(),
    });
    let ok = fenced
        .commit(Mutation::new(
            vec![],
            vec![Op::put("/test/fenced/current", b"1".to_vec())],
            record("current"),
        ))
        .await
        .expect("a write of the current term");
    assert!(ok.succeeded);
    assert!(!current.is_cancelled());

    // An older term (a deposed leader that has not noticed): nothing is written, the
    // error says why, and the term's token is cancelled so its controllers stop.
    let old = CancellationToken::new();
    let deposed = state.registry.fenced(Fence {
        key: LEADER_KEY.into(),
        revision: term - 1,
        term: old.clone(),
    });
    let before = state.store().current_revision().await.expect("revision");
    let err = deposed
        .commit(Mutation::new(
            vec![],
            vec![Op::put("/test/fenced/old", b"1".to_vec())],
            record("old"),
        ))
        .await
        .expect_err("a write of an old term");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("no longer leads"), "{err}");
    assert!(old.is_cancelled(), "the deposed term ends");
    let (kv, _) = state.store().get("/test/fenced/old").await.expect("get");
    assert!(kv.is_none(), "the fenced write wrote nothing");
    assert_eq!(
        state.store().current_revision().await.expect("revision"),
        before,
        "no revision (and no audit entry) for the fenced write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_listed_for_global_roles_only() {
    let server = TestServer::start().await;
    let viewer = server.new_token("viewer", None).await;
    let scoped = server.new_token("operator", Some("default")).await;
    server
        .client_as(&viewer)
        .get_path("/meridian/v1/servers")
        .await
        .expect("a viewer lists the servers");
    let err = server
        .client_as(&scoped)
        .get_path("/meridian/v1/servers")
        .await
        .expect_err("a project-scoped token does not");
    assert!(err.to_string().contains("cannot list servers"), "{err}");
}
