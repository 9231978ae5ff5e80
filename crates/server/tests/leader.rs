//! The leader election and the fence on controller writes, on the embedded SQLite store
//! (one server, which leads): the server lists itself as leader, a write fenced with the
//! current term commits, and one fenced with an older term writes nothing, fails with
//! `Fenced` and ends that term; a leader whose lease renewals hang steps down within its
//! lease. (Several servers on etcd: `crates/cli/tests/ha.rs`, `crates/cli/tests/chaos.rs`.)

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

/// A store the server can be cut off from, as by a network partition that drops packets:
/// once `cut`, lease renewals never answer (no error, no reply). Leases are granted with
/// a far longer TTL underneath, since their expiry is the unreachable store's business:
/// nothing in this process tells the leader that its lease is gone.
struct Partitioned {
    inner: std::sync::Arc<store::sqlite::SqliteStore>,
    cut: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl store::Store for Partitioned {
    async fn get(
        &self,
        key: &str,
    ) -> Result<(Option<store::KeyValue>, store::Revision), StoreError> {
        self.inner.get(key).await
    }
    async fn range(&self, req: store::RangeRequest) -> Result<store::RangeResponse, StoreError> {
        self.inner.range(req).await
    }
    async fn txn(&self, txn: store::Txn) -> Result<store::TxnResponse, StoreError> {
        self.inner.txn(txn).await
    }
    async fn watch(
        &self,
        prefix: &str,
        start: store::Revision,
    ) -> Result<store::WatchStream, StoreError> {
        self.inner.watch(prefix, start).await
    }
    async fn current_revision(&self) -> Result<store::Revision, StoreError> {
        self.inner.current_revision().await
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<store::LeaseId, StoreError> {
        self.inner.lease_grant(ttl * 100).await
    }
    async fn lease_keep_alive(&self, id: store::LeaseId) -> Result<Duration, StoreError> {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.lease_keep_alive(id).await
    }
    async fn lease_revoke(&self, id: store::LeaseId) -> Result<(), StoreError> {
        self.inner.lease_revoke(id).await
    }
    async fn compact(&self, revision: store::Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<store::Revision, StoreError> {
        self.inner.compacted_revision().await
    }
    async fn backup(&self, dest: &std::path::Path) -> Result<store::Backup, StoreError> {
        self.inner.backup(dest).await
    }
    fn space(&self) -> store::SpaceStatus {
        self.inner.space()
    }
}

/// A leader whose lease renewals hang (a partition from its store: no error ever comes
/// back) stops its controllers once its lease TTL has passed since its last successful
/// renewal was sent, before the lease can have expired in the store and another server
/// taken over; it does not wait for the hanging call (the etcd backend retries reads for
/// 15 s). The chaos test (`crates/cli/tests/chaos.rs`) checks the same with real
/// processes and an iptables cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_steps_down_within_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = store::sqlite::SqliteStore::open(
        &dir.path().join("store.db"),
        store::sqlite::SqliteOptions::default(),
    )
    .await
    .expect("a store");
    let store = std::sync::Arc::new(Partitioned {
        inner,
        cut: std::sync::atomic::AtomicBool::new(false),
    });
    let server = TestServer::builder(server::ServerConfig {
        scheduler: None,
        election: server::leader::ElectionOptions {
            lease_ttl: Duration::from_secs(1),
        },
        ..server::ServerConfig::default()
    })
    .store(store.clone())
    .start()
    .await;
    let leadership = server.state.leadership.clone();
    let term = wait_until_async(Duration::from_secs(10), "the server to lead", || {
        let term = leadership.term();
        async move { term.ok_or("not leading yet") }
    })
    .await;

    store.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    // The bound is generous: without the renewal deadline the term never ends here.
    wait_until_async(
        Duration::from_secs(30),
        "the cut-off leader to end its term",
        || {
            let now = leadership.term();
            async move {
                if now == Some(term) {
                    Err(format!("still leading in term {term}"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .await;
}

/// A leader whose runtime is busy keeps its lease: renewals run on a thread of their own.
/// Both runtime workers are held for 3 s, three times the lease TTL; the lease is renewed
/// meanwhile, so the store never expires it and the term goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_runtime_is_busy_keeps_its_term() {
    let server = TestServer::builder(server::ServerConfig {
        scheduler: None,
        election: server::leader::ElectionOptions {
            lease_ttl: Duration::from_secs(1),
        },
        ..server::ServerConfig::default()
    })
    .start()
    .await;
    let leadership = server.state.leadership.clone();
    let term = wait_until_async(Duration::from_secs(10), "the server to lead", || {
        let term = leadership.term();
        async move { term.ok_or("not leading yet") }
    })
    .await;
    let (_, lease) = leadership.session().expect("a session");

    // Both workers busy (CPU-bound work that never yields), as a large scheduler pass is.
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async { std::thread::sleep(Duration::from_secs(3)) }))
        .collect();
    for b in busy {
        b.await.expect("busy task");
    }
    // Let the store's expiry and the renewer catch up, as they would after a late wake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        leadership.term(),
        Some(term),
        "the term survived the busy runtime"
    );
    assert_eq!(leadership.terms_won(), 1, "no new campaign");
    server
        .state
        .registry
        .keep_alive(lease)
        .await
        .expect("the session lease is still alive");
}
