//! Runs the backend conformance suite against [`SqliteStore`], one check per test, plus
//! SQLite-specific tests: persistence across reopen, group commit under concurrent writers,
//! watch lag and fan-out, and shutdown.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::chain::{self, ChainEntry};
use store::conformance;
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{EventKind, KeyValue, Op, OpResult, RangeRequest, Store, StoreError, StoreExt, Txn};
use tempfile::TempDir;

const LOG: &str = "/meridian/audit/";

async fn open(dir: &Path, opts: SqliteOptions) -> Arc<SqliteStore> {
    SqliteStore::open(&dir.join("store.db"), opts)
        .await
        .expect("open store")
}

/// A fresh store in its own temporary directory (kept alive by the returned guard).
async fn fresh() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), SqliteOptions::default()).await;
    (dir, store)
}

store::conformance_tests!(fresh);

/// `run_all` itself works (every check on a fresh store, fsync off to keep it quick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_against_sqlite() {
    let root = tempfile::tempdir().expect("tempdir");
    let counter = Mutex::new(0u32);
    conformance::run_all(|| {
        let n = {
            let mut c = counter.lock().unwrap();
            *c += 1;
            *c
        };
        let dir = root.path().join(format!("store-{n}"));
        async move {
            std::fs::create_dir_all(&dir).expect("store dir");
            let opts = SqliteOptions {
                fsync: false,
                ..SqliteOptions::default()
            };
            open(&dir, opts).await as Arc<dyn Store>
        }
    })
    .await;
}

async fn append_txn(store: &SqliteStore, key: &str, payload: &str) -> store::TxnResponse {
    store
        .txn(Txn {
            success: vec![
                Op::put(key, payload),
                Op::Append {
                    log: LOG.into(),
                    payload: payload.as_bytes().to_vec(),
                },
            ],
            ..Txn::default()
        })
        .await
        .expect("txn")
}

async fn log_kvs(store: &SqliteStore) -> Vec<KeyValue> {
    store
        .range(RangeRequest {
            prefix: LOG.into(),
            ..RangeRequest::default()
        })
        .await
        .expect("range log")
        .kvs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_persists_across_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rev, lease) = {
        let store = open(dir.path(), SqliteOptions::default()).await;
        for i in 0..5 {
            append_txn(&store, &format!("/obj/{i}"), &format!("write {i}")).await;
        }
        store.delete("/obj/0").await.expect("delete");
        let lease = store
            .lease_grant(Duration::from_secs(600))
            .await
            .expect("grant");
        store
            .txn(Txn {
                success: vec![Op::Put {
                    key: "/leased".into(),
                    value: b"l".to_vec(),
                    lease: Some(lease),
                }],
                ..Txn::default()
            })
            .await
            .expect("leased put");
        store.compact(3).await.expect("compact");
        let rev = store.current_revision().await.expect("revision");
        store.close().await;
        assert!(matches!(store.get("/obj/1").await, Err(StoreError::Closed)));
        assert!(matches!(
            store.put("/obj/x", b"x".to_vec()).await,
            Err(StoreError::Closed)
        ));
        (rev, lease)
    };

    let store = open(dir.path(), SqliteOptions::default()).await;
    assert_eq!(
        store.current_revision().await.unwrap(),
        rev,
        "revision survives reopen"
    );
    assert_eq!(
        store.compacted_revision().await.unwrap(),
        3,
        "compaction survives reopen"
    );
    assert!(matches!(
        store.watch("/obj/", 3).await,
        Err(StoreError::Compacted { .. })
    ));
    let (kv, _) = store.get("/obj/4").await.unwrap();
    assert_eq!(kv.expect("key survives reopen").value, b"write 4");
    assert_eq!(
        store.get("/obj/0").await.unwrap().0,
        None,
        "delete survives reopen"
    );
    assert_eq!(
        store
            .lease_keep_alive(lease)
            .await
            .expect("lease survives reopen"),
        Duration::from_secs(600)
    );
    assert_eq!(
        store.get("/leased").await.unwrap().0.unwrap().lease,
        Some(lease)
    );

    // History before the restart replays; the chain continues and verifies.
    let mut w = store.watch("/obj/", 4).await.expect("watch");
    let e = w.next().await.expect("event").expect("event");
    assert_eq!(e.kv.mod_revision, 4);
    let next = append_txn(&store, "/obj/5", "write 5").await;
    assert_eq!(next.revision, rev + 1, "revisions continue after reopen");
    assert_eq!(
        next.results[1],
        OpResult::Append {
            key: chain::entry_key(LOG, 6),
            seq: 6
        },
        "the chain continues after reopen"
    );
    let summary = chain::verify(LOG, &log_kvs(&store).await).expect("chain verifies");
    assert_eq!(summary.entries, 6);
    let lease2 = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert!(lease2 > lease, "lease ids are never reused");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_stored_log_is_detected() {
    let (_dir, store) = fresh().await;
    for i in 0..5 {
        store
            .txn(Txn {
                success: vec![Op::Append {
                    log: LOG.into(),
                    payload: format!("entry {i}").into_bytes(),
                }],
                ..Txn::default()
            })
            .await
            .unwrap();
    }
    chain::verify_store(store.as_ref(), LOG)
        .await
        .expect("intact");
    // Someone with write access rewrites entry 3 with a forged but self-consistent entry.
    let key = chain::entry_key(LOG, 3);
    let original = ChainEntry::decode(&store.get(&key).await.unwrap().0.unwrap().value).unwrap();
    let forged = ChainEntry::new(3, original.revision, original.prev_hash, b"forged".to_vec());
    store.put(&key, forged.encode()).await.unwrap();
    let err = chain::verify_store(store.as_ref(), LOG).await.unwrap_err();
    assert!(
        err.to_string().contains("entry 3") && err.to_string().contains("overwritten"),
        "{err}"
    );
    // Truncating the tail is caught by the head.
    store.delete(&chain::entry_key(LOG, 5)).await.unwrap();
    store.delete(&chain::entry_key(LOG, 4)).await.unwrap();
    store.delete(&key).await.unwrap();
    let err = chain::verify_store(store.as_ref(), LOG).await.unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// 64 concurrent writers with fsync on all complete; group commit batches them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_with_fsync_complete() {
    let (_dir, store) = fresh().await;
    let mut tasks = Vec::new();
    for t in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                store
                    .put(&format!("/load/{t}/{i}"), vec![0u8; 256])
                    .await
                    .expect("put");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    assert_eq!(store.current_revision().await.unwrap(), 640);
    let resp = store
        .range(RangeRequest {
            prefix: "/load/".into(),
            count_only: true,
            ..RangeRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.count, 640);
}

/// A watcher that does not read is cancelled with `WatchLagged`; the writer never waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_cancelled_with_lagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SqliteOptions {
        fsync: false,
        watch_buffer: 4,
        ..SqliteOptions::default()
    };
    let store = open(dir.path(), opts).await;
    let mut slow = store.watch("/lag/", 0).await.unwrap();
    let mut healthy = store.watch("/other/", 0).await.unwrap();
    for i in 0..100 {
        store
            .put(&format!("/lag/{i}"), b"v".to_vec())
            .await
            .unwrap();
    }
    store.put("/other/x", b"v".to_vec()).await.unwrap();
    let mut last = 0;
    let lagged_at = loop {
        match slow.next().await {
            Some(Ok(e)) => {
                assert_eq!(e.kv.mod_revision, last + 1, "no gap before the lag");
                last = e.kv.mod_revision;
            }
            Some(Err(StoreError::WatchLagged(rev))) => break rev,
            other => panic!("expected events then WatchLagged, got {other:?}"),
        }
    };
    assert_eq!(
        lagged_at, last,
        "WatchLagged carries the last revision delivered"
    );
    assert!(
        last < 100,
        "the slow watcher cannot have received everything"
    );
    assert!(
        slow.next().await.is_none(),
        "the stream ends after WatchLagged"
    );
    // Re-watching from the next revision recovers without gap.
    let mut again = store.watch("/lag/", lagged_at + 1).await.unwrap();
    let e = again.next().await.unwrap().unwrap();
    assert_eq!(e.kv.mod_revision, lagged_at + 1);
    // Other watchers are unaffected.
    assert_eq!(healthy.next().await.unwrap().unwrap().kv.key, "/other/x");
}

/// Many watchers on one prefix all receive every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_many_watchers() {
    let (_dir, store) = fresh().await;
    let mut watchers = Vec::new();
    for _ in 0..1000 {
        watchers.push(store.watch("/fan/", 0).await.unwrap());
    }
    for i in 0..10 {
        store
            .put(&format!("/fan/{i}"), vec![7u8; 1024])
            .await
            .unwrap();
    }
    for w in &mut watchers {
        for rev in 1..=10 {
            let e = w.next().await.unwrap().unwrap();
            assert_eq!((e.kind, e.kv.mod_revision), (EventKind::Put, rev));
        }
    }
}

/// Closing ends watches with `Closed` and fails later calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_watches_and_refuses_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), SqliteOptions::default()).await;
    let mut w = store.watch("/", 0).await.unwrap();
    store.put("/k", b"v".to_vec()).await.unwrap();
    store.close().await;
    assert_eq!(w.next().await.unwrap().unwrap().kv.key, "/k");
    assert!(matches!(w.next().await, Some(Err(StoreError::Closed))));
    assert!(matches!(store.watch("/", 0).await, Err(StoreError::Closed)));
    assert!(matches!(
        store.lease_grant(Duration::from_secs(1)).await,
        Err(StoreError::Closed)
    ));
    store.close().await; // idempotent
    drop(store);
    // Dropping the last reference also shuts down, and the file can be reopened.
    let store = open(dir.path(), SqliteOptions::default()).await;
    assert_eq!(store.current_revision().await.unwrap(), 1);
    drop(store);
    let store = open(dir.path(), SqliteOptions::default()).await;
    assert!(store.get("/k").await.unwrap().0.is_some());
}

/// A file that is not a Meridian store is refused, not overwritten.
#[tokio::test]
async fn foreign_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
    }
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no Meridian schema version"),
        "{err}"
    );
}

/// Environment variable that turns [`crash_child_process`] into the writer to be killed.
const CRASH_CHILD_DIR: &str = "STORE_TEST_CRASH_CHILD_DIR";

/// Child side of [`acknowledged_writes_survive_kill_9`]: does nothing in a normal run. With
/// the variable set, writes forever from 8 tasks and prints `ack KEY` after each
/// acknowledged write, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_process() {
    let Ok(dir) = std::env::var(CRASH_CHILD_DIR) else {
        return;
    };
    let store = open(Path::new(&dir), SqliteOptions::default()).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{t}/{i}");
                let resp = append_txn(&store, &key, &key).await;
                println!("ack {key} {}", resp.revision);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Every write acknowledged before `kill -9` is there after reopening, and the audit chain
/// still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let acked = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("read child output");
            if let Some(rest) = line.strip_prefix("ack ") {
                let (key, rev) = rest.split_once(' ').expect("ack line");
                acked.push((key.to_owned(), rev.parse::<i64>().expect("revision")));
                if acked.len() >= 300 {
                    break;
                }
            }
        }
        // SIGKILL on Unix: no destructor, no clean shutdown.
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        acked
    })
    .await
    .expect("reader task");
    assert!(
        acked.len() >= 300,
        "the child wrote too little: {}",
        acked.len()
    );

    let store = open(dir.path(), SqliteOptions::default()).await;
    let max_acked = acked.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
    assert!(store.current_revision().await.unwrap() >= max_acked);
    for (key, rev) in &acked {
        let (kv, _) = store.get(key).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged write {key} was lost"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
    }
    chain::verify_store(store.as_ref(), LOG)
        .await
        .expect("the audit chain verifies after a crash");
}

/// A replay longer than one page is delivered whole and in order, then continues live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replay_spans_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SqliteOptions {
        fsync: false,
        ..SqliteOptions::default()
    };
    let store = open(dir.path(), opts).await;
    for t in 0..13 {
        let success = (0..100)
            .map(|i| Op::put(format!("/long/{t:02}/{i:03}"), "v"))
            .collect();
        store
            .txn(Txn {
                success,
                ..Txn::default()
            })
            .await
            .unwrap();
        store
            .put(&format!("/noise/{t}"), b"n".to_vec())
            .await
            .unwrap();
    }
    let mut w = store.watch("/long/", 1).await.unwrap();
    let mut expected = (0..13).flat_map(|t| (0..100).map(move |i| (t, i)));
    for _ in 0..1300 {
        let e = w.next().await.unwrap().unwrap();
        let (t, i) = expected.next().unwrap();
        assert_eq!(e.kv.key, format!("/long/{t:02}/{i:03}"));
        assert_eq!(e.kv.mod_revision, t * 2 + 1);
        // Pages of history end inside transactions; the stream's chunks never do.
        assert!(
            !w.at_revision_end() || i == 99,
            "chunk ended inside txn {t} at op {i}"
        );
    }
    assert!(w.at_revision_end(), "the replay ends with a whole revision");
    store.put("/long/live", b"v".to_vec()).await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().kv.key, "/long/live");
}
