//! Runs the backend conformance suite against [`EtcdStore`] on a real 3-member etcd cluster
//! (one fresh cluster per check: the checks expect dense revisions, so nothing else may
//! write to the cluster meanwhile), plus etcd-specific tests: a write after `kill -9` of the
//! leader, the request-size refusal, the op-count limit counted as etcd counts it, etcd's
//! NOSPACE alarm and the way out of it, the schema version, reopening a prefix, and prefix
//! isolation.
//!
//! Needs `etcd` (Debian: `apt-get install etcd-server`); without it every test fails saying
//! so. At most [`CLUSTERS`] clusters run at once, to keep a 2-core machine responsive
//! enough for etcd's 1 s election timeout.

use std::sync::Arc;
use std::time::Duration;

use store::chain;
use store::etcd::testing::EtcdCluster;
use store::etcd::{EtcdOptions, EtcdStore};
use store::{Op, OpResult, Store, StoreError, StoreExt, Txn};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Clusters running at the same time.
const CLUSTERS: usize = 2;
static SLOTS: Semaphore = Semaphore::const_new(CLUSTERS);

/// A running cluster and the permit that let it start.
struct Running {
    cluster: EtcdCluster,
    _slot: SemaphorePermit<'static>,
}

async fn cluster() -> Running {
    let slot = SLOTS.acquire().await.expect("semaphore open");
    let cluster = EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("cannot start a 3-member etcd cluster: {e}"));
    Running {
        cluster,
        _slot: slot,
    }
}

async fn open(cluster: &EtcdCluster, prefix: &str) -> Arc<EtcdStore> {
    let mut options = EtcdOptions::new(cluster.endpoints());
    options.prefix = prefix.to_owned();
    EtcdStore::open(options)
        .await
        .unwrap_or_else(|e| panic!("open the etcd store: {e}"))
}

/// A fresh store on a fresh cluster (the guard keeps the cluster running).
async fn fresh() -> (Running, Arc<dyn Store>) {
    let running = cluster().await;
    let store: Arc<dyn Store> = open(&running.cluster, "/meridian").await;
    (running, store)
}

store::conformance_tests!(fresh);

/// Creates `key` once: retried until it is there, since a write whose answer was lost to the
/// failover may have been applied (then `put_if` finds the key and that counts).
async fn create_through_failover(store: &Arc<EtcdStore>, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.put_if(key, b"v".to_vec(), 0).await {
            Ok(Ok(_)) => return,
            Ok(Err(Some(existing))) if existing.value == b"v" => return,
            Ok(Err(other)) => panic!("{key} holds something else: {other:?}"),
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no write succeeded within 60 s of the failover; last error: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// After `kill -9` of the leader, writes succeed again (on the new leader), acknowledged
/// writes are all there, a watch resumes, and the chain still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_succeeds_after_kill_9_of_the_leader() {
    let mut running = cluster().await;
    let store = open(&running.cluster, "/meridian").await;
    for i in 0..10 {
        store
            .txn(Txn {
                success: vec![
                    Op::put(format!("/k/{i}"), "v"),
                    Op::Append {
                        log: "/audit/".into(),
                        payload: format!("write {i}").into_bytes(),
                    },
                ],
                ..Txn::default()
            })
            .await
            .expect("write before the failover");
    }
    let mut watch = store.watch("/k/", 0).await.expect("watch");
    let leader = running.cluster.leader().await.expect("a leader");
    running.cluster.kill(leader);

    create_through_failover(&store, "/k/after").await;
    let event = tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .expect("the watch delivers the write made after the failover")
        .expect("watch open")
        .expect("watch event");
    assert_eq!(event.kv.key, "/k/after");
    let listed = store
        .range(store::RangeRequest {
            prefix: "/k/".into(),
            ..Default::default()
        })
        .await
        .expect("range after the failover");
    assert_eq!(listed.count, 11, "every acknowledged write survives");
    let resp = store
        .txn(Txn {
            success: vec![Op::Append {
                log: "/audit/".into(),
                payload: b"after".to_vec(),
            }],
            ..Txn::default()
        })
        .await
        .expect("append after the failover");
    assert!(matches!(resp.results[0], OpResult::Append { seq: 11, .. }));
    let summary = chain::verify_store(store.as_ref(), "/audit/")
        .await
        .expect("the chain verifies");
    assert_eq!(summary.entries, 11);

    // The killed member rejoins and the cluster keeps serving.
    running.cluster.restart(leader).expect("restart the member");
    create_through_failover(&store, "/k/rejoined").await;
}

/// A transaction over the request limit is refused before it reaches etcd, with the size
/// and the limit; one just under it goes through; nothing was written by the refused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_write_is_refused_before_etcd() {
    let running = cluster().await;
    let store = open(&running.cluster, "/meridian").await;
    let limit = store.options().max_txn_bytes;
    let result = store.put("/big", vec![b'x'; 2 * 1024 * 1024]).await;
    match result {
        Err(StoreError::TooLarge { size, limit: l }) => {
            assert!(size > 2 * 1024 * 1024, "size counts the value: {size}");
            assert_eq!(l, limit);
            let message = StoreError::TooLarge { size, limit: l }.to_string();
            assert!(message.contains(&size.to_string()) && message.contains(&l.to_string()));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.expect("revision"), 0);
    // An append counts its entry: a payload over the limit is refused the same way.
    let append = store
        .txn(Txn {
            success: vec![Op::Append {
                log: "/audit/".into(),
                payload: vec![b'y'; limit],
            }],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(append, Err(StoreError::TooLarge { .. })),
        "{append:?}"
    );
    // A write exactly at the limit is sent, and etcd (at its default request limit)
    // takes it: the headroom covers what the estimate leaves out. One byte more is refused.
    let prefix_len = "/meridian/kv".len();
    let empty = store::etcd::txn::encoded_size(
        &Txn {
            success: vec![Op::put("/fits", Vec::new())],
            ..Txn::default()
        },
        prefix_len,
    );
    let at_limit = vec![b'z'; limit - empty];
    let kv = store
        .put("/fits", at_limit.clone())
        .await
        .expect("a write at the limit goes through etcd");
    assert_eq!(kv.mod_revision, 1);
    assert_eq!(kv.value.len(), limit - empty);
    let mut over = at_limit;
    over.push(b'z');
    assert!(matches!(
        store.put("/fits", over).await,
        Err(StoreError::TooLarge { .. })
    ));
}

/// A transaction with more ops than etcd's `--max-txn-ops` (128 by default) is refused by
/// the store before it is sent, with a message naming the limit and the settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_ops_names_the_etcd_setting() {
    let running = cluster().await;
    let store = open(&running.cluster, "/meridian").await;
    assert_eq!(store.max_txn_ops(), Some(128));
    let result = store
        .txn(Txn {
            success: (0..200)
                .map(|i| Op::put(format!("/many/{i}"), "v"))
                .collect(),
            ..Txn::default()
        })
        .await;
    match result {
        Err(
            e @ StoreError::TooManyOps {
                ops: 200,
                limit: 128,
            },
        ) => {
            let message = e.to_string();
            assert!(message.contains("--max-txn-ops"), "{message}");
            assert!(message.contains("--etcd-max-txn-ops"), "{message}");
        }
        other => panic!("expected TooManyOps, got {other:?}"),
    }
}

/// A one-member cluster whose members get `args`, with its slot.
async fn one_member(args: &[&str]) -> Running {
    let slot = SLOTS.acquire().await.expect("semaphore open");
    let cluster = EtcdCluster::start_args(1, args)
        .await
        .unwrap_or_else(|e| panic!("cannot start a one-member etcd cluster: {e}"));
    Running {
        cluster,
        _slot: slot,
    }
}

async fn open_with(
    cluster: &EtcdCluster,
    configure: impl FnOnce(&mut EtcdOptions),
) -> Arc<EtcdStore> {
    let mut options = EtcdOptions::new(cluster.endpoints());
    configure(&mut options);
    EtcdStore::open(options)
        .await
        .unwrap_or_else(|e| panic!("open the etcd store: {e}"))
}

/// `n` puts, and `n` puts plus one audit append, as transactions.
fn puts(n: usize, tag: &str) -> Txn {
    Txn {
        success: (0..n)
            .map(|i| Op::put(format!("/ops/{tag}/{i}"), "v"))
            .collect(),
        ..Txn::default()
    }
}

fn puts_with_append(n: usize, tag: &str) -> Txn {
    let mut txn = puts(n, tag);
    txn.success.push(Op::Append {
        log: "/log/".into(),
        payload: b"entry".to_vec(),
    });
    txn
}

/// The store counts ops as etcd does (`store::txn_ops`): against members started with
/// `--max-txn-ops 16`, a transaction it counts at 16 commits and one it counts at 17 is
/// refused, by etcd when the store is told a larger limit, by the store itself (before
/// sending) when it is told the members' value; plain and with an audit append (whose
/// chain head and nested transaction count too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_op_limit_counts_as_etcd_does() {
    let running = one_member(&["--max-txn-ops", "16"]).await;
    // Told more than the members allow: etcd decides.
    let loose = open_with(&running.cluster, |o| o.max_txn_ops = 1000).await;
    for (txn, ops) in [(puts(16, "a"), 16), (puts_with_append(13, "b"), 16)] {
        assert_eq!(store::txn_ops(&txn), ops);
        loose
            .txn(txn)
            .await
            .unwrap_or_else(|e| panic!("a transaction of {ops} ops under etcd's 16: {e}"));
    }
    for (txn, ops) in [(puts(17, "c"), 17), (puts_with_append(14, "d"), 17)] {
        assert_eq!(store::txn_ops(&txn), ops);
        match loose.txn(txn).await {
            Err(StoreError::InvalidArgument(message)) => {
                assert!(message.contains("--etcd-max-txn-ops (1000)"), "{message}");
            }
            other => panic!("etcd should refuse {ops} ops over its 16, got {other:?}"),
        }
    }
    // Told the members' value: refused before sending, named.
    let strict = open_with(&running.cluster, |o| o.max_txn_ops = 16).await;
    assert_eq!(strict.max_txn_ops(), Some(16));
    strict.txn(puts(16, "e")).await.expect("16 ops fit");
    match strict.txn(puts_with_append(14, "f")).await {
        Err(StoreError::TooManyOps { ops: 17, limit: 16 }) => {}
        other => panic!("expected TooManyOps {{ ops: 17, limit: 16 }}, got {other:?}"),
    }
    let (kv, _) = strict.get("/ops/f/0").await.expect("read");
    assert!(kv.is_none(), "a refused transaction wrote nothing");
}

/// etcd over its `--quota-backend-bytes` raises its NOSPACE alarm: writes fail with
/// `StoreError::NoSpace` saying what to do, `Store::space` reports it, reads and plain
/// deletes still work, an audited write does not; after compaction (through the store),
/// defragmentation and `alarm disarm` writes work again and the state clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_alarm_is_the_stores_no_space() {
    let running = one_member(&["--quota-backend-bytes", "2097152"]).await;
    let store = open(&running.cluster, "/meridian").await;
    assert!(store.space().no_space.is_none());
    let value = vec![b'x'; 64 * 1024];
    let mut written = 0;
    let refusal = loop {
        assert!(
            written < 200,
            "2 MiB quota never hit after {written} writes of 64 KiB"
        );
        match store
            .put(&format!("/fill/{written:04}"), value.clone())
            .await
        {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
    };
    assert!(written > 0, "the first write was refused: {refusal}");
    let StoreError::NoSpace(no_space) = &refusal else {
        panic!("a write over etcd's quota failed with {refusal:?}, not NoSpace");
    };
    assert!(
        matches!(no_space, store::NoSpace::EtcdQuota { .. }),
        "{no_space:?}"
    );
    let message = refusal.to_string();
    for words in [
        "NOSPACE",
        "etcdctl compact",
        "etcdctl defrag",
        "etcdctl alarm disarm",
        "--quota-backend-bytes",
        &running.cluster.endpoints()[0],
    ] {
        assert!(message.contains(words), "{words:?} missing from: {message}");
    }
    let space = store.space();
    assert_eq!(space.no_space.as_ref(), Some(no_space));
    assert!(space.refused_writes >= 1);
    // Refused again, whatever the write; an audited delete stores its entry, so it is
    // refused too; reads and a plain delete work.
    assert!(matches!(
        store.put("/small", b"v".to_vec()).await,
        Err(StoreError::NoSpace(_))
    ));
    let audited_delete = store
        .txn(Txn {
            success: vec![
                Op::Delete("/fill/0000".into()),
                Op::Append {
                    log: "/log/".into(),
                    payload: b"delete".to_vec(),
                },
            ],
            ..Txn::default()
        })
        .await;
    assert!(
        matches!(audited_delete, Err(StoreError::NoSpace(_))),
        "{:?}",
        audited_delete.map(|r| r.succeeded)
    );
    let (kv, _) = store.get("/fill/0001").await.expect("reads work");
    assert_eq!(kv.expect("written before the alarm").value, value);
    // etcd checks its quota against the size it last committed, so fast writes overshoot
    // it: free nearly everything, so that the database is under the quota once compacted
    // and defragmented.
    for i in 1..written {
        let deleted = store.delete(&format!("/fill/{i:04}")).await;
        assert!(deleted.expect("a plain delete works").is_some());
    }
    // Reopening on a cluster with the alarm raised reports it at once.
    let reopened = open(&running.cluster, "/meridian").await;
    assert!(reopened.space().no_space.is_some());

    // What the message says: compact (the store's compaction works over the quota),
    // defragment, disarm.
    let revision = store.current_revision().await.expect("revision");
    store
        .compact(revision)
        .await
        .expect("compaction over the quota");
    let mut client = etcd_client::Client::connect(running.cluster.endpoints(), None)
        .await
        .expect("connect");
    client.defragment().await.expect("defragment");
    // `etcdctl alarm disarm`: every raised alarm, by its member.
    let raised = client
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .expect("list alarms");
    assert!(!raised.alarms().is_empty(), "the NOSPACE alarm is raised");
    for alarm in raised.alarms() {
        let mut options = etcd_client::AlarmOptions::new();
        options.with_member(alarm.member_id());
        client
            .alarm(
                etcd_client::AlarmAction::Deactivate,
                alarm.alarm(),
                Some(options),
            )
            .await
            .expect("disarm");
    }
    // Both stores learn it from their alarm pollers, then write again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.space().no_space.is_some() || reopened.space().no_space.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the alarm poller never noticed the disarm"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store
        .put("/after", b"v".to_vec())
        .await
        .expect("a write after the disarm");
    let audited = store
        .txn(Txn {
            success: vec![
                Op::put("/after-audited", "v"),
                Op::Append {
                    log: "/log/".into(),
                    payload: b"create".to_vec(),
                },
            ],
            ..Txn::default()
        })
        .await;
    assert!(audited.is_ok(), "{:?}", audited.err());
}

/// `{prefix}/meta/schema` holds the layout version: written when a prefix is initialised,
/// added to a prefix that lacks it (an older build's), and a newer one is refused at open
/// with both versions and what to do, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_version_is_refused() {
    let running = one_member(&[]).await;
    let store = open(&running.cluster, "/meridian").await;
    store.put("/k", b"v".to_vec()).await.expect("write");
    let mut client = etcd_client::Client::connect(running.cluster.endpoints(), None)
        .await
        .expect("connect");
    let schema = |resp: etcd_client::GetResponse| {
        resp.kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    };
    let written = schema(
        client
            .get("/meridian/meta/schema", None)
            .await
            .expect("get"),
    );
    assert_eq!(written, Some(store::etcd::SCHEMA_VERSION.to_string()));

    // A prefix from before the key existed gets it at the next open.
    client
        .delete("/meridian/meta/schema", None)
        .await
        .expect("delete");
    let _ = open(&running.cluster, "/meridian").await;
    let written = schema(
        client
            .get("/meridian/meta/schema", None)
            .await
            .expect("get"),
    );
    assert_eq!(written, Some(store::etcd::SCHEMA_VERSION.to_string()));

    let newer = store::etcd::SCHEMA_VERSION + 1;
    client
        .put("/meridian/meta/schema", newer.to_string(), None)
        .await
        .expect("mark newer");
    let before = client
        .get(
            "/meridian",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    let mut options = EtcdOptions::new(running.cluster.endpoints());
    options.prefix = "/meridian".into();
    let refused = EtcdStore::open(options)
        .await
        .err()
        .expect("a newer schema is refused");
    let message = refused.to_string();
    for words in [
        "newer Meridian",
        &format!("schema version {newer}"),
        &format!("up to {}", store::etcd::SCHEMA_VERSION),
        "--etcd-prefix /meridian",
        "restore the etcd snapshot",
    ] {
        assert!(message.contains(words), "{words:?} missing from: {message}");
    }
    let after = client
        .get(
            "/meridian",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    assert_eq!(
        before.header().map(|h| h.revision()),
        after.header().map(|h| h.revision()),
        "the refused open wrote nothing"
    );
}

/// Reopening a prefix keeps its revisions; another prefix on the same cluster is a separate
/// store whose revisions are monotonic but not dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_reopen_and_stay_apart() {
    let running = cluster().await;
    let a = open(&running.cluster, "/tenant-a").await;
    a.put("/x", b"a".to_vec()).await.expect("put a");
    let b = open(&running.cluster, "/tenant-b").await;
    assert_eq!(b.current_revision().await.expect("revision"), 0);
    assert_eq!(
        b.get("/x").await.expect("get").0,
        None,
        "prefixes are apart"
    );
    let first_b = b.put("/x", b"b".to_vec()).await.expect("put b");
    assert_eq!(first_b.mod_revision, 1);
    let second_a = a.put("/y", b"a".to_vec()).await.expect("put a again");
    assert_eq!(
        second_a.mod_revision, 4,
        "writes under another prefix (its initialisation and its put) leave gaps in this one"
    );
    let base = a.base_revision();
    drop(a);
    let reopened = open(&running.cluster, "/tenant-a").await;
    assert_eq!(reopened.base_revision(), base, "reopening keeps the base");
    let (kv, revision) = reopened.get("/y").await.expect("get after reopen");
    assert_eq!(kv.map(|kv| kv.mod_revision), Some(4));
    assert_eq!(revision, 4);

    // A prefix holding data without its base key is refused, and stays refused.
    let urls: Vec<String> = running
        .cluster
        .endpoints()
        .iter()
        .map(|e| format!("http://{e}"))
        .collect();
    let mut raw = etcd_client::Client::connect(&urls, None)
        .await
        .expect("an etcd client");
    raw.delete("/tenant-a/meta/base", None)
        .await
        .expect("delete the base key");
    for _ in 0..2 {
        let mut options = EtcdOptions::new(running.cluster.endpoints());
        options.prefix = "/tenant-a".into();
        let Err(err) = EtcdStore::open(options).await else {
            panic!("a prefix with data and no base key must be refused")
        };
        assert!(err.to_string().contains("refusing to renumber"), "{err}");
    }
}

/// On a cluster another tenant writes to, the current revision runs ahead of anything this
/// prefix's watch delivers; the sync revision is one it does deliver (the scheduler's cache
/// waits for it before each pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_revision_is_reached_while_another_prefix_writes() {
    let running = cluster().await;
    let a = open(&running.cluster, "/tenant-a").await;
    let b = open(&running.cluster, "/tenant-b").await;
    let mine = a.put("/x", b"a".to_vec()).await.expect("put a");
    let mut w = a.watch("/", mine.mod_revision + 1).await.expect("watch a");
    for i in 0..5 {
        b.put(&format!("/y{i}"), b"b".to_vec())
            .await
            .expect("put b");
    }
    let current = a.current_revision().await.expect("revision");
    assert!(
        current > mine.mod_revision,
        "the other tenant's writes move this prefix's current revision ({current})"
    );
    let sync = a.sync_revision().await.expect("sync revision");
    assert!(sync > current, "sync {sync}, current {current}");
    let e = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("the watch delivers the sync point")
        .expect("stream open")
        .expect("event");
    assert_eq!(e.kv.key, store::SYNC_KEY);
    assert_eq!(
        e.kv.mod_revision, sync,
        "the first event this prefix sees after its own write is the sync marker: \
         no revision between was this prefix's"
    );
    assert!(w.at_revision_end());
}

/// An unreachable cluster fails with a message naming the endpoints tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_names_its_endpoints() {
    let mut options = EtcdOptions::new(vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()]);
    options.retry_for = Duration::from_millis(500);
    options.connect_timeout = Duration::from_millis(500);
    let Err(err) = EtcdStore::open(options).await else {
        panic!("opening an unreachable cluster must fail")
    };
    let message = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        message.contains("127.0.0.1:1,127.0.0.1:2"),
        "the error names the endpoints: {message}"
    );
}

/// Two stores on one prefix (two servers) appending to one log at the same time never fork
/// it: seqs are consecutive in commit order, each entry's recorded revision lies between the
/// commit revision of the entries before its own group (exclusive) and its own commit
/// revision (inclusive), and it verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_append_to_one_chain_without_forking() {
    let running = cluster().await;
    let stores = [
        open(&running.cluster, "/meridian").await,
        open(&running.cluster, "/meridian").await,
    ];
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..4 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut appended = Vec::new();
                for i in 0..8 {
                    let resp = store
                        .txn(Txn {
                            success: vec![
                                Op::put(format!("/obj/{s}-{t}"), format!("{i}")),
                                Op::Append {
                                    log: "/audit/".into(),
                                    payload: format!("server {s} task {t} write {i}").into_bytes(),
                                },
                            ],
                            ..Txn::default()
                        })
                        .await
                        .expect("txn with an append");
                    match &resp.results[1] {
                        OpResult::Append { seq, .. } => appended.push((resp.revision, *seq)),
                        other => panic!("expected an append result, got {other:?}"),
                    }
                }
                appended
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("appender"));
    }
    all.sort_unstable();
    let seqs: Vec<u64> = all.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=64).collect::<Vec<u64>>(), "no fork, no gap");
    let (mut previous_commit, mut last_commit) = (0, 0);
    for (commit, seq) in &all {
        if *commit != last_commit {
            previous_commit = last_commit;
            last_commit = *commit;
        }
        let (kv, _) = stores[0]
            .get(&chain::entry_key("/audit/", *seq))
            .await
            .expect("get entry");
        let entry = chain::ChainEntry::decode(&kv.expect("entry").value).expect("decodes");
        assert!(
            previous_commit < entry.revision && entry.revision <= *commit,
            "entry {seq} records revision {} outside ({previous_commit}, {commit}]",
            entry.revision
        );
    }
    let summary = chain::verify_store(stores[1].as_ref(), "/audit/")
        .await
        .expect("the chain verifies");
    assert_eq!(summary.entries, 64);
}

/// Endpoints of two clusters are refused at open, naming both: the client would otherwise
/// spread the store's keys over the two. An endpoint that does not answer is not a reason
/// to refuse (a member may be down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_two_clusters_are_refused() {
    let one = one_member(&[]).await;
    let two = one_member(&[]).await;
    let mut endpoints = one.cluster.endpoints();
    endpoints.extend(two.cluster.endpoints());
    let Err(err) = EtcdStore::open(EtcdOptions::new(endpoints)).await else {
        panic!("endpoints of two clusters must be refused");
    };
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::InvalidArgument(_)) && message.contains("different clusters"),
        "{message}"
    );
    for endpoint in one
        .cluster
        .endpoints()
        .iter()
        .chain(&two.cluster.endpoints())
    {
        assert!(
            message.contains(endpoint.as_str()),
            "names {endpoint}: {message}"
        );
    }

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let mut endpoints = one.cluster.endpoints();
    endpoints.push(dead);
    EtcdStore::open(EtcdOptions::new(endpoints))
        .await
        .expect("one cluster with a member down opens");
}

/// Appends queued while one commits go to etcd as one group (fewer commit revisions than
/// writes), and each transaction still gets the outcome it would have had alone: creates of
/// free keys commit with consecutive entries, creates of taken keys run their failure branch
/// and append nothing, and of four updates guarded by the same `mod_revision` of one key
/// (never grouped together: they overlap) exactly one commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_commit_in_groups_with_each_outcome_its_own() {
    let running = cluster().await;
    let store = open(&running.cluster, "/meridian").await;
    for j in 0..8 {
        store
            .put(&format!("/taken/{j}"), b"first".to_vec())
            .await
            .expect("put");
    }
    let shared = store
        .put("/shared", b"v0".to_vec())
        .await
        .expect("put")
        .mod_revision;
    let append = |what: String| Op::Append {
        log: "/audit/".into(),
        payload: what.into_bytes(),
    };
    let create = |key: String| Txn {
        compares: vec![store::Compare::Absent(key.clone())],
        success: vec![Op::put(key.clone(), "new"), append(format!("create {key}"))],
        failure: vec![Op::Get(key)],
    };
    let mut txns: Vec<(&'static str, Txn)> = Vec::new();
    for i in 0..40 {
        txns.push(("free", create(format!("/free/{i}"))));
    }
    for j in 0..8 {
        txns.push(("taken", create(format!("/taken/{j}"))));
    }
    for u in 0..4 {
        txns.push((
            "update",
            Txn {
                compares: vec![store::Compare::ModRevision("/shared".into(), shared)],
                success: vec![
                    Op::put("/shared", format!("v{u}")),
                    append(format!("update {u}")),
                ],
                failure: vec![Op::Get("/shared".into())],
            },
        ));
    }
    let start = Arc::new(tokio::sync::Barrier::new(txns.len()));
    let tasks: Vec<_> = txns
        .into_iter()
        .map(|(kind, txn)| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                (kind, store.txn(txn).await.expect("txn"))
            })
        })
        .collect();
    let mut revisions = std::collections::BTreeSet::new();
    let mut seqs = Vec::new();
    let mut updates = 0;
    for task in tasks {
        let (kind, resp) = task.await.expect("task");
        match kind {
            "free" => {
                assert!(resp.succeeded, "a create of a free key commits");
                revisions.insert(resp.revision);
                let OpResult::Append { seq, .. } = &resp.results[1] else {
                    panic!("expected an append result, got {:?}", resp.results[1]);
                };
                seqs.push(*seq);
            }
            "taken" => {
                assert!(!resp.succeeded, "a create of a taken key fails its compare");
                let OpResult::Get(Some(kv)) = &resp.results[0] else {
                    panic!("the failure branch reads the key: {:?}", resp.results);
                };
                assert_eq!(kv.value, b"first");
            }
            _ => {
                if resp.succeeded {
                    updates += 1;
                    let OpResult::Append { seq, .. } = &resp.results[1] else {
                        panic!("expected an append result, got {:?}", resp.results[1]);
                    };
                    seqs.push(*seq);
                }
            }
        }
    }
    assert_eq!(updates, 1, "exactly one of the guarded updates commits");
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=41).collect::<Vec<u64>>(),
        "no gap, no entry twice"
    );
    assert!(
        revisions.len() < 40,
        "40 concurrent creates committed at {} revisions: no group formed",
        revisions.len()
    );
    let summary = chain::verify_store(store.as_ref(), "/audit/")
        .await
        .expect("the chain verifies");
    assert_eq!(summary.entries, 41);
}

/// A group etcd refuses as a whole (here: one member puts under a revoked lease) is retried
/// member by member: that member alone fails, with `LeaseNotFound`, and the others commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_group_is_retried_member_by_member() {
    let running = cluster().await;
    let store = open(&running.cluster, "/meridian").await;
    let lease = store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    store.lease_revoke(lease).await.expect("revoke");
    let txn = |i: usize| {
        let key = format!("/obj/{i}");
        Txn {
            compares: vec![store::Compare::Absent(key.clone())],
            success: vec![
                Op::Put {
                    key,
                    value: b"v".to_vec(),
                    lease: (i == 10).then_some(lease),
                },
                Op::Append {
                    log: "/audit/".into(),
                    payload: format!("write {i}").into_bytes(),
                },
            ],
            failure: Vec::new(),
        }
    };
    let start = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            let txn = txn(i);
            tokio::spawn(async move {
                start.wait().await;
                (i, store.txn(txn).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, result) = task.await.expect("task");
        if i == 10 {
            assert!(
                matches!(result, Err(StoreError::LeaseNotFound(id)) if id == lease),
                "{result:?}"
            );
        } else {
            assert!(result.expect("the others commit").succeeded);
        }
    }
    let summary = chain::verify_store(store.as_ref(), "/audit/")
        .await
        .expect("the chain verifies");
    assert_eq!(summary.entries, 19);
}
