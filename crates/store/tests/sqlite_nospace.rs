//! The SQLite store on a really full disk (a 4 MiB tmpfs filled by a filler file), driven
//! through the [`Store`] trait: writes are refused with `NoSpace`, reads, deletes and lease
//! revocation work, writes resume by themselves once the filler is gone, and no
//! acknowledged write is lost and no refused one appears, also after a reopen.
//! Needs root to mount the tmpfs; fails (never skips) without it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::sqlite::{SpaceOptions, SqliteOptions, SqliteStore};
use store::tmpfs::Tmpfs;
use store::{Op, RangeRequest, Store, StoreError, StoreExt, Txn};

const VALUE: usize = 16 * 1024;

fn options() -> SqliteOptions {
    SqliteOptions {
        space: SpaceOptions {
            reserve_bytes: 512 * 1024,
            resume_free_bytes: 512 * 1024,
            check_interval: Duration::from_millis(50),
        },
        ..SqliteOptions::default()
    }
}

async fn open(dir: &Path) -> Arc<dyn Store> {
    SqliteStore::open(&dir.join("store.db"), options())
        .await
        .expect("open store")
}

async fn keys(store: &dyn Store) -> BTreeSet<String> {
    let resp = store
        .range(RangeRequest {
            prefix: "/k/".into(),
            ..RangeRequest::default()
        })
        .await
        .expect("range");
    resp.kvs.into_iter().map(|kv| kv.key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_allows_deletes_and_recovers() {
    let fs = Tmpfs::mount("4m").unwrap_or_else(|e| panic!("{e}"));
    let store = open(fs.path()).await;
    assert!(
        fs.path().join("store.db.reserve").exists(),
        "the reserve file is written at open"
    );
    let lease = store.lease_grant(Duration::from_secs(600)).await.unwrap();
    store
        .txn(Txn {
            success: vec![Op::Put {
                key: "/k/leased".into(),
                value: vec![1; 100],
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
        .unwrap();
    let mut acked = BTreeSet::from(["/k/leased".to_owned()]);
    let mut refused = BTreeSet::new();
    for i in 0..8 {
        let key = format!("/k/before-{i}");
        store.put(&key, vec![7; VALUE]).await.unwrap();
        acked.insert(key);
    }

    let filler = fs.fill();
    // SQLite may still find room in pages it already has; write until the wall.
    let mut first_refusal = None;
    for i in 0..2_000 {
        let key = format!("/k/fill-{i}");
        match store.put(&key, vec![9; VALUE]).await {
            Ok(_) => {
                acked.insert(key);
            }
            Err(StoreError::NoSpace(no_space)) => {
                refused.insert(key);
                first_refusal = Some(no_space);
                break;
            }
            Err(e) => panic!("a write on a full disk failed with {e}, not NoSpace"),
        }
    }
    let no_space = first_refusal.expect("writes on a full disk are refused with NoSpace");
    let message = no_space.to_string();
    assert!(
        message.contains(&fs.path().display().to_string()) && message.contains("Free disk space"),
        "the error names the filesystem and what to do: {message}"
    );
    let status = store.space();
    assert_eq!(status.no_space.as_ref(), Some(&no_space));
    assert!(status.refused_writes >= 1);
    assert!(
        !fs.path().join("store.db.reserve").exists(),
        "entering NOSPACE frees the reserve"
    );

    // Still refused: puts, appends without a delete, lease grants.
    for i in 0..3 {
        let key = format!("/k/refused-{i}");
        let err = store.put(&key, vec![1; 10]).await.unwrap_err();
        assert!(matches!(err, StoreError::NoSpace(_)), "{err}");
        refused.insert(key);
    }
    let err = store
        .txn(Txn {
            success: vec![Op::Append {
                log: "/log/".into(),
                payload: b"x".to_vec(),
            }],
            ..Txn::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSpace(_)), "{err}");
    let err = store.lease_grant(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, StoreError::NoSpace(_)), "{err}");
    assert!(store.space().refused_writes >= 6);

    // Reads work; a delete with its audit entry, a lease revocation and compaction work.
    assert_eq!(keys(&*store).await, acked);
    let (kv, _) = store.get("/k/before-0").await.unwrap();
    assert_eq!(kv.expect("acknowledged key").value, vec![7; VALUE]);
    store
        .txn(Txn {
            success: vec![
                Op::Delete("/k/before-0".into()),
                Op::Append {
                    log: "/log/".into(),
                    payload: b"deleted /k/before-0".to_vec(),
                },
            ],
            ..Txn::default()
        })
        .await
        .expect("a delete works on a full disk");
    acked.remove("/k/before-0");
    store.lease_revoke(lease).await.expect("revoke works");
    acked.remove("/k/leased");
    let revision = store.current_revision().await.unwrap();
    store.compact(revision - 1).await.expect("compaction works");
    assert_eq!(keys(&*store).await, acked);
    assert!(store.space().no_space.is_some(), "still full");

    // Space returns: the store notices by itself.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.space().no_space.is_some() {
        assert!(Instant::now() < deadline, "NOSPACE did not clear");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fs.path().join("store.db.reserve").exists(),
        "the reserve is written again"
    );
    store
        .put("/k/after", vec![3; 100])
        .await
        .expect("writes resume");
    acked.insert("/k/after".into());
    assert_eq!(keys(&*store).await, acked);

    // Durable: the same after a reopen; nothing refused ever appears.
    // Dropping the last reference starts the close; `open` waits for the lock.
    drop(store);
    let store = open(fs.path()).await;
    let found = keys(&*store).await;
    assert_eq!(found, acked);
    assert!(found.is_disjoint(&refused));
}
