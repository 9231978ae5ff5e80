//! The backend conformance suite, written against the [`Store`] trait only.
//!
//! Every backend must pass it. Each check is a `pub async fn check_*(store)` that takes a
//! fresh, empty store and panics with a message saying what broke; [`run_all`] runs them
//! all, each on a new store. A backend's test file runs one check per test with
//! [`conformance_tests!`](crate::conformance_tests), given an async function that returns a
//! fresh store and what keeps it alive:
//!
//! ```text
//! async fn fresh() -> (TempDir, Arc<dyn Store>) { … }
//! store::conformance_tests!(fresh);
//! ```
//!
//! Checks wait for events with a generous timeout that only guards against hangs; none
//! asserts how fast anything is. Lease checks use TTLs of about one second and so take a
//! few seconds of wall time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::chain::{self, ChainEntry, ChainHead};
use crate::{
    Compare, Event, EventKind, KeyValue, Op, OpResult, RangeRequest, Revision, Store, StoreError,
    StoreExt, Txn, TxnResponse, WatchStream,
};

/// Upper bound on any single wait; reaching it means the backend hung.
const HANG: Duration = Duration::from_secs(30);
/// The TTL of leases the checks expect to expire.
const SHORT_TTL: Duration = Duration::from_secs(1);
/// The audit-style log the chain checks append to.
const LOG: &str = "/conformance/audit/";

/// Declares one `#[tokio::test]` per check in a backend's test file. `$fresh` is an async
/// function returning `(guard, Arc<dyn Store>)`: a fresh, empty store and whatever keeps it
/// alive (a temporary directory, a cluster), dropped when the check ends.
///
/// ```text
/// store::conformance_tests!(fresh);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@each $fresh;
            check_revisions_start_at_one_and_increase,
    check_get_put_delete,
    check_version_and_create_revision,
    check_range_prefix_in_key_order,
    check_range_pagination,
    check_range_prefix_boundaries,
    check_cas_mod_revision,
    check_cas_exists_absent_value,
    check_txn_failure_branch,
    check_txn_multi_key_atomic,
    check_txn_error_rolls_back_whole_txn,
    check_txn_rejects_duplicate_keys,
    check_noop_txn_keeps_revision,
    check_watch_replays_then_goes_live,
    check_watch_from_now,
    check_watch_future_revision,
    check_watch_prefix_isolation,
    check_watch_delete_carries_last_value,
    check_watch_after_compaction,
    check_compaction_keeps_current_keys,
    check_lease_expiry_deletes_keys,
    check_lease_keep_alive,
    check_lease_keeper_on_its_own_runtime,
    check_lease_revoke,
    check_put_with_unknown_lease_fails,
    check_failed_txn_does_not_affect_others,
    check_chain_append,
    check_chain_concurrent_commit_order,
    check_concurrent_cas_counter,
    check_sync_revision_is_reached_by_a_root_watch,
        );
    };
    (@each $fresh:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $fresh().await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    check_revisions_start_at_one_and_increase(make().await).await;
    check_get_put_delete(make().await).await;
    check_version_and_create_revision(make().await).await;
    check_range_prefix_in_key_order(make().await).await;
    check_range_pagination(make().await).await;
    check_range_prefix_boundaries(make().await).await;
    check_cas_mod_revision(make().await).await;
    check_cas_exists_absent_value(make().await).await;
    check_txn_failure_branch(make().await).await;
    check_txn_multi_key_atomic(make().await).await;
    check_txn_error_rolls_back_whole_txn(make().await).await;
    check_txn_rejects_duplicate_keys(make().await).await;
    check_noop_txn_keeps_revision(make().await).await;
    check_watch_replays_then_goes_live(make().await).await;
    check_watch_from_now(make().await).await;
    check_watch_future_revision(make().await).await;
    check_watch_prefix_isolation(make().await).await;
    check_watch_delete_carries_last_value(make().await).await;
    check_watch_after_compaction(make().await).await;
    check_compaction_keeps_current_keys(make().await).await;
    check_lease_expiry_deletes_keys(make().await).await;
    check_lease_keep_alive(make().await).await;
    check_lease_keeper_on_its_own_runtime(make().await).await;
    check_lease_revoke(make().await).await;
    check_put_with_unknown_lease_fails(make().await).await;
    check_failed_txn_does_not_affect_others(make().await).await;
    check_chain_append(make().await).await;
    check_chain_concurrent_commit_order(make().await).await;
    check_concurrent_cas_counter(make().await).await;
    check_sync_revision_is_reached_by_a_root_watch(make().await).await;
}

// ---------------------------------------------------------------------------------------
// helpers

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {HANG:?} waiting for {what}"),
    }
}

async fn next_event(stream: &mut WatchStream, what: &str) -> Event {
    match within(what, stream.next()).await {
        Some(Ok(event)) => event,
        Some(Err(e)) => panic!("watch failed while waiting for {what}: {e}"),
        None => panic!("watch ended while waiting for {what}"),
    }
}

async fn put(store: &Arc<dyn Store>, key: &str, value: &str) -> KeyValue {
    store
        .put(key, value.as_bytes().to_vec())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

async fn txn(store: &Arc<dyn Store>, t: Txn) -> TxnResponse {
    store
        .txn(t.clone())
        .await
        .unwrap_or_else(|e| panic!("txn {t:?} failed: {e}"))
}

async fn get(store: &Arc<dyn Store>, key: &str) -> Option<KeyValue> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .0
}

async fn revision(store: &Arc<dyn Store>) -> Revision {
    store
        .current_revision()
        .await
        .unwrap_or_else(|e| panic!("current_revision: {e}"))
}

async fn range(store: &Arc<dyn Store>, req: RangeRequest) -> crate::RangeResponse {
    store
        .range(req.clone())
        .await
        .unwrap_or_else(|e| panic!("range {req:?}: {e}"))
}

async fn watch(store: &Arc<dyn Store>, prefix: &str, start: Revision) -> WatchStream {
    store
        .watch(prefix, start)
        .await
        .unwrap_or_else(|e| panic!("watch {prefix} from {start}: {e}"))
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

fn prefix(p: &str) -> RangeRequest {
    RangeRequest {
        prefix: p.to_owned(),
        ..RangeRequest::default()
    }
}

fn append(log: &str, payload: &str) -> Op {
    Op::Append {
        log: log.to_owned(),
        payload: payload.as_bytes().to_vec(),
    }
}

// ---------------------------------------------------------------------------------------
// basics

/// An empty store is at revision 0; the first write gets revision 1 and each write the next.
pub async fn check_revisions_start_at_one_and_increase(store: Arc<dyn Store>) {
    assert_eq!(
        revision(&store).await,
        0,
        "an empty store must be at revision 0"
    );
    let a = put(&store, "/rev/a", "1").await;
    assert_eq!(a.mod_revision, 1, "the first write must get revision 1");
    let b = put(&store, "/rev/b", "2").await;
    assert_eq!(b.mod_revision, 2, "the second write must get revision 2");
    let c = put(&store, "/rev/a", "3").await;
    assert_eq!(c.mod_revision, 3, "the third write must get revision 3");
    assert_eq!(
        revision(&store).await,
        3,
        "current_revision after three writes"
    );
    let (kv, rev) = store.get("/rev/b").await.expect("get");
    assert_eq!(rev, 3, "get must report the store revision it read at");
    assert_eq!(kv.map(|kv| kv.mod_revision), Some(2));
}

/// Get, put, overwrite and delete one key.
pub async fn check_get_put_delete(store: Arc<dyn Store>) {
    assert_eq!(
        get(&store, "/gpd/k").await,
        None,
        "a fresh store has no keys"
    );
    put(&store, "/gpd/k", "v1").await;
    let kv = get(&store, "/gpd/k").await.expect("key written by put");
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.key, "/gpd/k");
    assert_eq!(kv.lease, None);
    put(&store, "/gpd/k", "v2").await;
    assert_eq!(get(&store, "/gpd/k").await.expect("key").value, b"v2");

    let prev = store.delete("/gpd/k").await.expect("delete");
    assert_eq!(
        prev.map(|kv| kv.value),
        Some(b"v2".to_vec()),
        "delete must return the deleted value"
    );
    assert_eq!(
        get(&store, "/gpd/k").await,
        None,
        "deleted key must be gone"
    );

    let before = revision(&store).await;
    let prev = store
        .delete("/gpd/k")
        .await
        .expect("delete of a missing key");
    assert_eq!(prev, None, "deleting a missing key returns nothing");
    assert_eq!(
        revision(&store).await,
        before,
        "deleting a missing key must not advance the revision"
    );

    let resp = txn(
        &store,
        Txn {
            success: vec![Op::put("/gpd/x", "x"), Op::Get("/gpd/x".into())],
            ..Txn::default()
        },
    )
    .await;
    match &resp.results[1] {
        OpResult::Get(Some(kv)) => assert_eq!(kv.value, b"x", "a get sees earlier ops of its txn"),
        other => panic!("expected the get to see the put of the same txn, got {other:?}"),
    }
}

/// `version` counts writes since creation; `create_revision` is the creating write; a
/// delete resets both.
pub async fn check_version_and_create_revision(store: Arc<dyn Store>) {
    let first = put(&store, "/ver/k", "a").await;
    assert_eq!(first.version, 1, "a new key has version 1");
    assert_eq!(first.create_revision, first.mod_revision);
    let second = put(&store, "/ver/k", "b").await;
    assert_eq!(second.version, 2, "an overwrite increments the version");
    assert_eq!(
        second.create_revision, first.create_revision,
        "an overwrite keeps create_revision"
    );
    assert!(second.mod_revision > first.mod_revision);
    store.delete("/ver/k").await.expect("delete");
    let again = put(&store, "/ver/k", "c").await;
    assert_eq!(
        again.version, 1,
        "a key recreated after delete starts at version 1"
    );
    assert_eq!(
        again.create_revision, again.mod_revision,
        "a key recreated after delete gets a new create_revision"
    );
    assert!(again.create_revision > second.mod_revision);

    let resp = txn(
        &store,
        Txn {
            success: vec![Op::put("/ver/k", "d")],
            ..Txn::default()
        },
    )
    .await;
    match &resp.results[0] {
        OpResult::Put { kv, prev } => {
            assert_eq!(kv.version, 2);
            assert_eq!(prev.as_ref().map(|p| p.value.as_slice()), Some(&b"c"[..]));
        }
        other => panic!("expected a put result, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// range

/// A range returns the keys under a prefix in key order, with count and revision.
pub async fn check_range_prefix_in_key_order(store: Arc<dyn Store>) {
    for k in ["c", "a", "e", "b", "d"] {
        put(&store, &format!("/rng/{k}"), k).await;
    }
    put(&store, "/other/z", "z").await;
    let resp = range(&store, prefix("/rng/")).await;
    assert_eq!(
        keys(&resp.kvs),
        ["/rng/a", "/rng/b", "/rng/c", "/rng/d", "/rng/e"],
        "range must return the prefix's keys in key order"
    );
    assert_eq!(resp.count, 5);
    assert!(!resp.more);
    assert_eq!(
        resp.revision,
        revision(&store).await,
        "range reports its revision"
    );
    assert_eq!(resp.kvs[0].value, b"a");
    let empty = range(&store, prefix("/none/")).await;
    assert!(empty.kvs.is_empty() && empty.count == 0 && !empty.more);
}

/// Pagination with `start_after` + `limit`, `more` and `count`, and `count_only`.
pub async fn check_range_pagination(store: Arc<dyn Store>) {
    for i in 0..10 {
        put(&store, &format!("/page/{i:02}"), "v").await;
    }
    let mut seen = Vec::new();
    let mut start_after = None;
    let mut pages = 0;
    loop {
        let resp = range(
            &store,
            RangeRequest {
                prefix: "/page/".into(),
                start_after: start_after.clone(),
                limit: 3,
                count_only: false,
            },
        )
        .await;
        pages += 1;
        assert_eq!(resp.count, 10, "count ignores start_after and limit");
        assert!(resp.kvs.len() <= 3, "limit must be honoured");
        seen.extend(resp.kvs.iter().map(|kv| kv.key.clone()));
        if !resp.more {
            break;
        }
        assert_eq!(resp.kvs.len(), 3, "a page with more after it must be full");
        start_after = resp.kvs.last().map(|kv| kv.key.clone());
        assert!(pages < 10, "pagination does not terminate");
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/page/{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "pages must cover every key exactly once, in order"
    );
    assert_eq!(pages, 4);

    let exact = range(
        &store,
        RangeRequest {
            prefix: "/page/".into(),
            start_after: Some("/page/04".into()),
            limit: 5,
            count_only: false,
        },
    )
    .await;
    assert_eq!(exact.kvs.len(), 5);
    assert!(
        !exact.more,
        "more must be false when the page ends exactly at the last key"
    );

    let all = range(&store, prefix("/page/")).await;
    assert_eq!(all.kvs.len(), 10, "limit 0 means no limit");
    let counted = range(
        &store,
        RangeRequest {
            prefix: "/page/".into(),
            count_only: true,
            ..RangeRequest::default()
        },
    )
    .await;
    assert!(counted.kvs.is_empty(), "count_only returns no keys");
    assert_eq!(counted.count, 10);
}

/// A prefix matches byte-wise: `/a/` does not match `/a`, `/ab` or `/a0`.
pub async fn check_range_prefix_boundaries(store: Arc<dyn Store>) {
    for k in [
        "/a",
        "/a/",
        "/a/x",
        "/a/y/z",
        "/a/\u{e9}t\u{e9}",
        "/ab",
        "/a0",
        "/b",
    ] {
        put(&store, k, "v").await;
    }
    let resp = range(&store, prefix("/a/")).await;
    assert_eq!(
        keys(&resp.kvs),
        ["/a/", "/a/x", "/a/y/z", "/a/\u{e9}t\u{e9}"],
        "prefix /a/ must match exactly the keys starting with /a/"
    );
    assert_eq!(resp.count, 4);
    let resp = range(&store, prefix("/a")).await;
    assert_eq!(resp.count, 7, "prefix /a matches /a, /a/..., /a0 and /ab");
    let resp = range(&store, prefix("")).await;
    assert_eq!(resp.count, 8, "the empty prefix matches every key");
    let resp = range(
        &store,
        RangeRequest {
            prefix: "/a/".into(),
            start_after: Some("/".into()),
            ..RangeRequest::default()
        },
    )
    .await;
    assert_eq!(
        resp.kvs.len(),
        4,
        "start_after before the prefix starts at the prefix"
    );
}

// ---------------------------------------------------------------------------------------
// transactions

/// Compare-and-swap on `mod_revision`, including "only if absent" (0).
pub async fn check_cas_mod_revision(store: Arc<dyn Store>) {
    let created = store
        .put_if("/cas/k", b"1".to_vec(), 0)
        .await
        .expect("put_if")
        .expect("put_if with 0 must create an absent key");
    let refused = store
        .put_if("/cas/k", b"x".to_vec(), 0)
        .await
        .expect("put_if");
    assert_eq!(
        refused,
        Err(Some(created.clone())),
        "put_if with 0 must fail on an existing key and return it"
    );
    let updated = store
        .put_if("/cas/k", b"2".to_vec(), created.mod_revision)
        .await
        .expect("put_if")
        .expect("put_if with the current mod_revision must succeed");
    assert_eq!(updated.value, b"2");
    let stale = store
        .put_if("/cas/k", b"3".to_vec(), created.mod_revision)
        .await
        .expect("put_if");
    assert_eq!(
        stale,
        Err(Some(updated)),
        "put_if with a stale mod_revision must fail"
    );
    assert_eq!(get(&store, "/cas/k").await.expect("key").value, b"2");
}

/// `Exists`, `Absent` and `Value` guards, alone and combined.
pub async fn check_cas_exists_absent_value(store: Arc<dyn Store>) {
    put(&store, "/cmp/k", "v").await;
    let cases: Vec<(Vec<Compare>, bool, &str)> = vec![
        (
            vec![Compare::Exists("/cmp/k".into())],
            true,
            "Exists on a present key",
        ),
        (
            vec![Compare::Exists("/cmp/no".into())],
            false,
            "Exists on a missing key",
        ),
        (
            vec![Compare::Absent("/cmp/no".into())],
            true,
            "Absent on a missing key",
        ),
        (
            vec![Compare::Absent("/cmp/k".into())],
            false,
            "Absent on a present key",
        ),
        (
            vec![Compare::Value("/cmp/k".into(), b"v".to_vec())],
            true,
            "Value equal",
        ),
        (
            vec![Compare::Value("/cmp/k".into(), b"w".to_vec())],
            false,
            "Value different",
        ),
        (
            vec![Compare::Value("/cmp/no".into(), b"".to_vec())],
            false,
            "Value on a missing key",
        ),
        (
            vec![Compare::ModRevision("/cmp/no".into(), 0)],
            true,
            "ModRevision 0 on a missing key",
        ),
        (
            vec![
                Compare::Exists("/cmp/k".into()),
                Compare::Absent("/cmp/k".into()),
            ],
            false,
            "all compares must hold",
        ),
    ];
    for (compares, expected, what) in cases {
        let resp = txn(
            &store,
            Txn {
                compares,
                ..Txn::default()
            },
        )
        .await;
        assert_eq!(resp.succeeded, expected, "{what}");
    }
}

/// A failed compare is not an error: the failure branch runs and reports its results.
pub async fn check_txn_failure_branch(store: Arc<dyn Store>) {
    put(&store, "/fb/k", "current").await;
    let before = revision(&store).await;
    let resp = txn(
        &store,
        Txn {
            compares: vec![Compare::Value("/fb/k".into(), b"expected".to_vec())],
            success: vec![Op::put("/fb/success", "s")],
            failure: vec![Op::Get("/fb/k".into()), Op::put("/fb/failure", "f")],
        },
    )
    .await;
    assert!(!resp.succeeded);
    assert_eq!(resp.results.len(), 2, "one result per failure op");
    match &resp.results[0] {
        OpResult::Get(Some(kv)) => assert_eq!(kv.value, b"current"),
        other => panic!("failure branch get: expected the key, got {other:?}"),
    }
    assert!(matches!(resp.results[1], OpResult::Put { .. }));
    assert_eq!(resp.revision, before + 1, "the failure branch wrote");
    assert_eq!(
        get(&store, "/fb/success").await,
        None,
        "success ops must not run"
    );
    assert!(
        get(&store, "/fb/failure").await.is_some(),
        "failure ops must run"
    );
}

/// The writes of one transaction share one revision and are seen together.
pub async fn check_txn_multi_key_atomic(store: Arc<dyn Store>) {
    put(&store, "/multi/old", "o").await;
    let before = revision(&store).await;
    let mut w = watch(&store, "/multi/", before + 1).await;
    let resp = txn(
        &store,
        Txn {
            success: vec![
                Op::put("/multi/b", "1"),
                Op::put("/multi/a", "2"),
                Op::Delete("/multi/old".into()),
                Op::put("/multi/c", "3"),
            ],
            ..Txn::default()
        },
    )
    .await;
    assert!(resp.succeeded);
    assert_eq!(
        resp.revision,
        before + 1,
        "a multi-key txn advances the revision once"
    );
    let listed = range(&store, prefix("/multi/")).await;
    assert_eq!(keys(&listed.kvs), ["/multi/a", "/multi/b", "/multi/c"]);
    assert!(
        listed.kvs.iter().all(|kv| kv.mod_revision == resp.revision),
        "every key of the txn carries the txn's revision"
    );
    let mut order = Vec::new();
    for i in 0..4 {
        let e = next_event(&mut w, "the events of a multi-key txn").await;
        assert_eq!(e.kv.mod_revision, resp.revision);
        assert_eq!(
            w.at_revision_end(),
            i == 3,
            "a reader can tell that it holds all of a txn's events only after the last \
             (event {i} of 4)"
        );
        order.push((e.kind, e.kv.key));
    }
    assert_eq!(
        order,
        [
            (EventKind::Put, "/multi/b".to_owned()),
            (EventKind::Put, "/multi/a".to_owned()),
            (EventKind::Delete, "/multi/old".to_owned()),
            (EventKind::Put, "/multi/c".to_owned()),
        ],
        "events of one txn arrive in op order"
    );
}

/// A transaction that fails with an error leaves no trace, not even its earlier ops.
pub async fn check_txn_error_rolls_back_whole_txn(store: Arc<dyn Store>) {
    put(&store, "/err/k", "before").await;
    let before = revision(&store).await;
    let result = store
        .txn(Txn {
            success: vec![
                Op::put("/err/k", "after"),
                Op::put("/err/new", "n"),
                Op::Put {
                    key: "/err/leased".into(),
                    value: b"l".to_vec(),
                    lease: Some(424_242),
                },
            ],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::LeaseNotFound(424_242))),
        "put with an unknown lease must fail with LeaseNotFound, got {result:?}"
    );
    assert_eq!(
        revision(&store).await,
        before,
        "a failed txn must not advance the revision"
    );
    assert_eq!(get(&store, "/err/k").await.expect("key").value, b"before");
    assert_eq!(
        get(&store, "/err/new").await,
        None,
        "earlier ops of a failed txn must not apply"
    );
}

/// A branch that writes the same key twice is refused, as etcd does.
pub async fn check_txn_rejects_duplicate_keys(store: Arc<dyn Store>) {
    let result = store
        .txn(Txn {
            success: vec![Op::put("/dup/k", "1"), Op::Delete("/dup/k".into())],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidArgument(_))),
        "a txn writing a key twice must be refused, got {result:?}"
    );
    assert_eq!(revision(&store).await, 0);
}

/// Transactions that write nothing do not advance the revision.
pub async fn check_noop_txn_keeps_revision(store: Arc<dyn Store>) {
    put(&store, "/noop/k", "v").await;
    let before = revision(&store).await;
    let noops = [
        Txn::default(),
        Txn {
            success: vec![Op::Get("/noop/k".into())],
            ..Txn::default()
        },
        Txn {
            compares: vec![Compare::Absent("/noop/k".into())],
            success: vec![Op::put("/noop/k", "x")],
            failure: vec![],
        },
        Txn {
            success: vec![Op::Delete("/noop/missing".into())],
            ..Txn::default()
        },
    ];
    for t in noops {
        let resp = txn(&store, t.clone()).await;
        assert_eq!(
            resp.revision, before,
            "a txn that writes nothing reports the current revision: {t:?}"
        );
        assert_eq!(
            revision(&store).await,
            before,
            "a txn that writes nothing must not advance the revision: {t:?}"
        );
    }
    assert_eq!(
        put(&store, "/noop/next", "n").await.mod_revision,
        before + 1,
        "no revision was skipped"
    );
}

// ---------------------------------------------------------------------------------------
// watch

/// A watch from a past revision replays history, then continues live, with no gap and no
/// duplicate, while writes keep coming.
pub async fn check_watch_replays_then_goes_live(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for i in 0..20 {
        expected.push(put(&store, &format!("/wl/{i}"), "v").await.mod_revision);
        put(&store, &format!("/elsewhere/{i}"), "v").await;
    }
    let start = expected[2];
    let expected: Vec<Revision> = expected.into_iter().filter(|r| *r >= start).collect();
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 20..70 {
                revs.push(put(&store, &format!("/wl/{i}"), "v").await.mod_revision);
            }
            revs
        })
    };
    let mut w = watch(&store, "/wl/", start).await;
    let live = within("the concurrent writer", writer)
        .await
        .expect("writer task");
    let expected: Vec<Revision> = expected.into_iter().chain(live).collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let e = next_event(&mut w, "replayed and live events").await;
        assert_eq!(e.kind, EventKind::Put);
        got.push(e.kv.mod_revision);
    }
    assert_eq!(
        got, expected,
        "watch must deliver every revision once, in order"
    );
    let last = put(&store, "/wl/last", "v").await;
    let e = next_event(&mut w, "a live event after catch-up").await;
    assert_eq!(
        e.kv.mod_revision, last.mod_revision,
        "no duplicate after catch-up"
    );
}

/// `start == 0` delivers only changes after the current revision.
pub async fn check_watch_from_now(store: Arc<dyn Store>) {
    put(&store, "/now/old", "o").await;
    let mut w = watch(&store, "/now/", 0).await;
    let new = put(&store, "/now/new", "n").await;
    let e = next_event(&mut w, "the first event after watching from now").await;
    assert_eq!(
        e.kv.key, "/now/new",
        "a watch from 0 must not replay older changes"
    );
    assert_eq!(e.kv.mod_revision, new.mod_revision);
}

/// A watch may start beyond the current revision; it delivers from that revision on.
pub async fn check_watch_future_revision(store: Arc<dyn Store>) {
    put(&store, "/fut/a", "a").await;
    let current = revision(&store).await;
    let mut w = watch(&store, "/fut/", current + 3).await;
    for i in 0..4 {
        put(&store, &format!("/fut/{i}"), "v").await;
    }
    let e = next_event(&mut w, "the first event at the future revision").await;
    assert_eq!(
        e.kv.mod_revision,
        current + 3,
        "events before the start are skipped"
    );
    let e = next_event(&mut w, "the next event").await;
    assert_eq!(e.kv.mod_revision, current + 4);
}

/// A watch sees only its prefix, matched byte-wise.
pub async fn check_watch_prefix_isolation(store: Arc<dyn Store>) {
    let mut w = watch(&store, "/p/", 0).await;
    for k in ["/q/x", "/p", "/p0", "/pp/x", "/"] {
        put(&store, k, "outside").await;
    }
    put(&store, "/p/x", "inside").await;
    let e = next_event(&mut w, "the event under the prefix").await;
    assert_eq!(
        e.kv.key, "/p/x",
        "a watch must not see keys outside its prefix"
    );
    assert_eq!(e.kv.value, b"inside");
    let from_start = {
        let mut w = watch(&store, "/p/", 1).await;
        next_event(&mut w, "the replayed event under the prefix").await
    };
    assert_eq!(
        from_start.kv.key, "/p/x",
        "a replay must not see keys outside its prefix"
    );
}

/// Put events carry the previous value; delete events carry the last value.
pub async fn check_watch_delete_carries_last_value(store: Arc<dyn Store>) {
    let first = put(&store, "/del/k", "first").await;
    let second = put(&store, "/del/k", "last").await;
    let prev = store
        .delete("/del/k")
        .await
        .expect("delete")
        .expect("deleted kv");
    let deleted_at = revision(&store).await;
    let mut w = watch(&store, "/del/", first.mod_revision).await;
    let e1 = next_event(&mut w, "the create event").await;
    assert_eq!(
        (e1.kind, e1.prev.clone()),
        (EventKind::Put, None),
        "a create has no prev"
    );
    let e2 = next_event(&mut w, "the update event").await;
    assert_eq!(e2.kv, second);
    assert_eq!(
        e2.prev,
        Some(first),
        "an update carries the previous key-value"
    );
    let e3 = next_event(&mut w, "the delete event").await;
    assert_eq!(e3.kind, EventKind::Delete);
    assert_eq!(e3.kv.key, "/del/k");
    assert_eq!(
        e3.kv.value, b"last",
        "a delete event carries the last value"
    );
    assert_eq!(
        e3.kv.mod_revision, deleted_at,
        "a delete event carries the delete's revision"
    );
    assert_eq!(
        e3.prev,
        Some(prev),
        "a delete event carries the deleted key-value as prev"
    );
}

/// A watch at or below the compacted revision fails with `Compacted`; above it, it works.
pub async fn check_watch_after_compaction(store: Arc<dyn Store>) {
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(put(&store, &format!("/cw/{i}"), "v").await.mod_revision);
    }
    store.compact(revs[2]).await.expect("compact");
    assert_eq!(
        store
            .compacted_revision()
            .await
            .expect("compacted_revision"),
        revs[2]
    );
    for start in [revs[0], revs[2]] {
        match store.watch("/cw/", start).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!((requested, compacted), (start, revs[2]));
            }
            Err(e) => panic!("watch from compacted revision {start}: expected Compacted, got {e}"),
            Ok(_) => panic!("watch from compacted revision {start} must fail with Compacted"),
        }
    }
    let mut w = watch(&store, "/cw/", revs[3]).await;
    assert_eq!(
        next_event(&mut w, "replay after compaction")
            .await
            .kv
            .mod_revision,
        revs[3]
    );
    assert_eq!(
        next_event(&mut w, "replay after compaction")
            .await
            .kv
            .mod_revision,
        revs[4]
    );
    let future = store.compact(revs[4] + 10).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "compacting a future revision must fail with FutureRevision, got {future:?}"
    );
}

/// Compaction drops history, never current keys.
pub async fn check_compaction_keeps_current_keys(store: Arc<dyn Store>) {
    put(&store, "/ck/a", "a1").await;
    put(&store, "/ck/b", "b").await;
    put(&store, "/ck/a", "a2").await;
    put(&store, "/ck/c", "c").await;
    store.delete("/ck/c").await.expect("delete");
    let current = revision(&store).await;
    store
        .compact(current)
        .await
        .expect("compact at the current revision");
    let resp = range(&store, prefix("/ck/")).await;
    assert_eq!(
        keys(&resp.kvs),
        ["/ck/a", "/ck/b"],
        "compaction must keep current keys"
    );
    assert_eq!(resp.kvs[0].value, b"a2");
    assert_eq!(resp.kvs[0].version, 2, "compaction keeps versions");
    let mut w = watch(&store, "/ck/", current + 1).await;
    put(&store, "/ck/d", "d").await;
    assert_eq!(
        next_event(&mut w, "a live event after compaction")
            .await
            .kv
            .key,
        "/ck/d"
    );
}

// ---------------------------------------------------------------------------------------
// leases

/// An expired lease deletes its keys, with delete events.
pub async fn check_lease_expiry_deletes_keys(store: Arc<dyn Store>) {
    let lease = store.lease_grant(SHORT_TTL).await.expect("lease_grant");
    let mut w = watch(&store, "/exp/", 0).await;
    let kv = store
        .txn(Txn {
            success: vec![Op::Put {
                key: "/exp/k".into(),
                value: b"v".to_vec(),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
        .expect("put with lease");
    assert!(kv.succeeded);
    put(&store, "/exp/unleased", "stays").await;
    assert_eq!(
        get(&store, "/exp/k").await.expect("leased key").lease,
        Some(lease)
    );
    let mut deleted = None;
    while deleted.is_none() {
        let e = next_event(&mut w, "the delete event of the expired lease's key").await;
        if e.kind == EventKind::Delete {
            deleted = Some(e);
        }
    }
    let deleted = deleted.expect("delete event");
    assert_eq!(deleted.kv.key, "/exp/k");
    assert_eq!(deleted.kv.value, b"v");
    assert_eq!(
        get(&store, "/exp/k").await,
        None,
        "an expired lease's key must be deleted"
    );
    assert!(
        get(&store, "/exp/unleased").await.is_some(),
        "keys without the lease stay"
    );
    let renewed = store.lease_keep_alive(lease).await;
    assert!(
        matches!(renewed, Err(StoreError::LeaseNotFound(id)) if id == lease),
        "keep-alive of an expired lease must fail with LeaseNotFound, got {renewed:?}"
    );
}

/// Keep-alives keep a lease and its keys past the TTL.
pub async fn check_lease_keep_alive(store: Arc<dyn Store>) {
    let lease = store.lease_grant(SHORT_TTL).await.expect("lease_grant");
    store
        .txn(Txn {
            success: vec![Op::Put {
                key: "/ka/k".into(),
                value: b"v".to_vec(),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
        .expect("put with lease");
    let until = tokio::time::Instant::now() + SHORT_TTL * 3;
    while tokio::time::Instant::now() < until {
        let ttl = store
            .lease_keep_alive(lease)
            .await
            .expect("keep-alive of a live lease");
        assert!(ttl >= SHORT_TTL, "keep-alive returns the TTL ({ttl:?})");
        tokio::time::sleep(SHORT_TTL / 10).await;
    }
    assert!(
        get(&store, "/ka/k").await.is_some(),
        "a lease kept alive must keep its keys"
    );
    store.lease_revoke(lease).await.expect("revoke");
}

/// [`Store::lease_keeper`], made and used on a thread and runtime of its own, keeps a
/// lease alive past its TTL while the store's runtime only waits, and answers
/// `LeaseNotFound` once the lease is revoked.
pub async fn check_lease_keeper_on_its_own_runtime(store: Arc<dyn Store>) {
    let lease = store.lease_grant(SHORT_TTL).await.expect("lease_grant");
    store
        .txn(Txn {
            success: vec![Op::Put {
                key: "/keeper/k".into(),
                value: b"v".to_vec(),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
        .expect("put with lease");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (revoked_tx, revoked_rx) = std::sync::mpsc::channel::<()>();
    let thread_store = Arc::clone(&store);
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let Some(keeper) = thread_store.lease_keeper().await.expect("lease_keeper") else {
                let _ = done_tx.send(());
                return None;
            };
            let until = tokio::time::Instant::now() + SHORT_TTL * 3;
            while tokio::time::Instant::now() < until {
                let ttl = keeper
                    .keep_alive(lease)
                    .await
                    .expect("the keeper renews a live lease");
                assert!(ttl >= SHORT_TTL, "keep-alive returns the TTL ({ttl:?})");
                tokio::time::sleep(SHORT_TTL / 10).await;
            }
            let _ = done_tx.send(());
            revoked_rx.recv().expect("revoked");
            Some(keeper.keep_alive(lease).await)
        })
    });
    within("the keeper's renewals", done_rx)
        .await
        .expect("the keeper thread reports");
    assert!(
        get(&store, "/keeper/k").await.is_some(),
        "a lease kept alive by the keeper keeps its keys"
    );
    store.lease_revoke(lease).await.expect("revoke");
    let _ = revoked_tx.send(());
    let after = tokio::task::spawn_blocking(move || thread.join().expect("keeper thread"))
        .await
        .expect("join");
    if let Some(after) = after {
        assert!(
            matches!(after, Err(StoreError::LeaseNotFound(id)) if id == lease),
            "the keeper answers LeaseNotFound for a revoked lease: {after:?}"
        );
    }
}

/// Revoking a lease deletes its keys in one revision, with delete events.
pub async fn check_lease_revoke(store: Arc<dyn Store>) {
    let lease = store
        .lease_grant(Duration::from_secs(600))
        .await
        .expect("lease_grant");
    let leased = |key: &str| Op::Put {
        key: key.to_owned(),
        value: key.as_bytes().to_vec(),
        lease: Some(lease),
    };
    txn(
        &store,
        Txn {
            success: vec![leased("/rv/a"), leased("/rv/b"), Op::put("/rv/free", "f")],
            ..Txn::default()
        },
    )
    .await;
    let before = revision(&store).await;
    let mut w = watch(&store, "/rv/", 0).await;
    store.lease_revoke(lease).await.expect("revoke");
    let mut deleted = Vec::new();
    for _ in 0..2 {
        let e = next_event(&mut w, "the delete events of the revoked lease").await;
        assert_eq!(e.kind, EventKind::Delete);
        assert_eq!(
            e.kv.mod_revision,
            before + 1,
            "a revoke deletes in one revision"
        );
        deleted.push(e.kv.key);
    }
    deleted.sort();
    assert_eq!(deleted, ["/rv/a", "/rv/b"]);
    assert_eq!(revision(&store).await, before + 1);
    assert_eq!(keys(&range(&store, prefix("/rv/")).await.kvs), ["/rv/free"]);
    assert!(matches!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(
        matches!(
            store.lease_revoke(lease).await,
            Err(StoreError::LeaseNotFound(_))
        ),
        "revoking a revoked lease must fail with LeaseNotFound"
    );
    let put_after = store
        .txn(Txn {
            success: vec![leased("/rv/c")],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(put_after, Err(StoreError::LeaseNotFound(_))),
        "put with a revoked lease"
    );
}

/// A put with a lease that does not exist fails with `LeaseNotFound`.
pub async fn check_put_with_unknown_lease_fails(store: Arc<dyn Store>) {
    let result = store
        .txn(Txn {
            success: vec![Op::Put {
                key: "/ul/k".into(),
                value: b"v".to_vec(),
                lease: Some(987_654_321),
            }],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::LeaseNotFound(987_654_321))),
        "expected LeaseNotFound, got {result:?}"
    );
    assert_eq!(get(&store, "/ul/k").await, None);
    assert_eq!(revision(&store).await, 0);
    assert!(matches!(
        store.lease_keep_alive(987_654_321).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

/// Concurrent transactions are independent: some failing does not affect the others.
pub async fn check_failed_txn_does_not_affect_others(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let lease = (i % 2 == 0).then_some(555_555);
            store
                .txn(Txn {
                    success: vec![Op::Put {
                        key: format!("/iso/{i:02}"),
                        value: b"v".to_vec(),
                        lease,
                    }],
                    ..Txn::default()
                })
                .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = within("a concurrent txn", task).await.expect("txn task");
        if i % 2 == 0 {
            assert!(
                matches!(result, Err(StoreError::LeaseNotFound(_))),
                "txn {i}: {result:?}"
            );
        } else {
            assert!(
                result.is_ok(),
                "txn {i} must not be affected by failing ones: {result:?}"
            );
        }
    }
    let resp = range(&store, prefix("/iso/")).await;
    assert_eq!(resp.count, 16);
    assert_eq!(
        revision(&store).await,
        16,
        "only the successful txns took revisions"
    );
}

// ---------------------------------------------------------------------------------------
// hash-chained logs

/// Appends get consecutive seqs, keys and hashes; the log verifies.
pub async fn check_chain_append(store: Arc<dyn Store>) {
    let r1 = txn(
        &store,
        Txn {
            success: vec![Op::put("/obj/a", "a"), append(LOG, "created a")],
            ..Txn::default()
        },
    )
    .await;
    assert_eq!(
        r1.results[1],
        OpResult::Append {
            key: chain::entry_key(LOG, 1),
            seq: 1
        },
        "the first append gets seq 1"
    );
    let r2 = txn(
        &store,
        Txn {
            success: vec![
                append(LOG, "second"),
                append(LOG, "third"),
                append("/conformance/other/", "x"),
            ],
            ..Txn::default()
        },
    )
    .await;
    let seqs: Vec<u64> = r2
        .results
        .iter()
        .map(|r| match r {
            OpResult::Append { seq, .. } => *seq,
            other => panic!("expected an append result, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, [2, 3, 1], "seqs are consecutive per log");

    let entry = get(&store, &chain::entry_key(LOG, 1))
        .await
        .expect("entry 1");
    let decoded = ChainEntry::decode(&entry.value).expect("entry 1 decodes");
    assert_eq!(decoded.seq, 1);
    assert_eq!(decoded.payload, b"created a");
    assert_eq!(decoded.prev_hash, [0; 32], "the first entry links to zeros");
    assert_eq!(
        decoded.revision, r1.revision,
        "an entry records its txn's revision"
    );
    assert_eq!(decoded.hash, decoded.compute_hash());
    let third = get(&store, &chain::entry_key(LOG, 3))
        .await
        .expect("entry 3");
    let third = ChainEntry::decode(&third.value).expect("entry 3 decodes");
    assert_eq!(third.revision, r2.revision);

    let head = get(&store, &chain::head_key(LOG)).await.expect("head key");
    let head = ChainHead::decode(&head.value).expect("head decodes");
    assert_eq!(head.seq, 3);
    assert_eq!(head.hash, third.hash);

    let summary = chain::verify_store(store.as_ref(), LOG)
        .await
        .expect("the log verifies");
    assert_eq!(summary.entries, 3);
    let kvs = range(&store, prefix(LOG)).await.kvs;
    assert_eq!(chain::verify(LOG, &kvs).expect("verify"), summary);
    let other = chain::verify_store(store.as_ref(), "/conformance/other/").await;
    assert_eq!(other.expect("the other log verifies").entries, 1);
}

/// Appends from concurrent transactions are chained in commit (revision) order.
pub async fn check_chain_concurrent_commit_order(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut appended = Vec::new();
            for i in 0..8 {
                let resp = store
                    .txn(Txn {
                        success: vec![
                            Op::put(format!("/co/{t}"), format!("{i}")),
                            append(LOG, &format!("task {t} write {i}")),
                        ],
                        ..Txn::default()
                    })
                    .await
                    .expect("txn with append");
                match &resp.results[1] {
                    OpResult::Append { seq, .. } => appended.push((resp.revision, *seq)),
                    other => panic!("expected an append result, got {other:?}"),
                }
            }
            appended
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(
            within("a concurrent appender", task)
                .await
                .expect("appender task"),
        );
    }
    all.sort();
    let seqs: Vec<u64> = all.iter().map(|(_, seq)| *seq).collect();
    let expected: Vec<u64> = (1..=128).collect();
    assert_eq!(
        seqs, expected,
        "chain order must equal commit order, with no gap"
    );
    let summary = chain::verify_store(store.as_ref(), LOG)
        .await
        .expect("the log verifies");
    assert_eq!(summary.entries, 128);
}

// ---------------------------------------------------------------------------------------
// concurrency

/// 64 tasks doing CAS increments on one counter never lose an update.
pub async fn check_concurrent_cas_counter(store: Arc<dyn Store>) {
    const TASKS: usize = 64;
    const INCREMENTS: usize = 4;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            let mut attempts = 0;
            while won < INCREMENTS {
                attempts += 1;
                assert!(attempts < 100_000, "CAS increments make no progress");
                let (current, _) = store.get("/counter").await.expect("get counter");
                let (value, expected) = match &current {
                    Some(kv) => (
                        std::str::from_utf8(&kv.value)
                            .ok()
                            .and_then(|s| s.parse::<usize>().ok())
                            .expect("counter holds a number"),
                        kv.mod_revision,
                    ),
                    None => (0, 0),
                };
                let next = (value + 1).to_string().into_bytes();
                if store
                    .put_if("/counter", next, expected)
                    .await
                    .expect("put_if")
                    .is_ok()
                {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += within("a CAS incrementer", task)
            .await
            .expect("incrementer task");
    }
    let value = get(&store, "/counter").await.expect("counter");
    assert_eq!(
        value.value,
        total.to_string().into_bytes(),
        "the counter must equal the number of successful CAS writes"
    );
    assert_eq!(
        value.version as usize, total,
        "one version per successful CAS"
    );
}

/// A watch of the whole key space reaches the revision `sync_revision` answers, even after
/// writes the watch never delivers (a compaction's record, on etcd).
pub async fn check_sync_revision_is_reached_by_a_root_watch(store: Arc<dyn Store>) {
    put(&store, "/sync/old", "v").await;
    let written = put(&store, "/sync/k", "v").await.mod_revision;
    let mut w = watch(&store, "/", written).await;
    store.compact(written - 1).await.expect("compact");
    let sync = within("sync_revision", store.sync_revision())
        .await
        .expect("sync_revision");
    assert!(
        sync >= written,
        "sync revision {sync} is before the acknowledged write at {written}"
    );
    loop {
        let e = next_event(&mut w, "an event at the sync revision").await;
        if e.kv.mod_revision >= sync && w.at_revision_end() {
            break;
        }
    }
}
