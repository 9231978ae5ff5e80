//! The server on the etcd backend (`--store etcd://…`) end to end: a real 3-member etcd
//! cluster, objects created through the HTTP API, a restart that finds them, the audit
//! chain verified through the API and against the store, and an object over etcd's request
//! limit refused with 413 before it reaches etcd; etcd's NOSPACE alarm answered 507 (not
//! ready, the metric set, reads served); batched writes (placements on one node, a
//! secrets key rotation) split to fit the members' `--max-txn-ops`; the scheduler placing
//! while another application writes to the same cluster under its own prefix.
//!
//! Needs `etcd` (Debian: `apt-get install etcd-server`); fails saying so without it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use server::{EtcdConfig, ServerConfig, StoreBackend};
use store::etcd::testing::{ClusterTls, EtcdCluster};
use store::etcd::{EtcdOptions, EtcdStore};
use testkit::{TestServer, kind, wait_until_async};

fn workload(name: &str, argument: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": {
            "type": "service",
            "replicas": 1,
            "task": {
                "driver": "exec",
                "command": ["/bin/echo", argument],
                "resources": {"cpu": "100m", "memory": "64Mi"},
                "os": {"family": "linux"}
            }
        }
    })
}

fn site(name: &str, note: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Site",
        "metadata": {"name": name, "annotations": {"note": note}},
        "spec": {
            "provider": "onprem",
            "region": "frankfurt",
            "jurisdiction": "DE",
            "operator": {"name": "Example Bank AG", "jurisdiction": "DE"},
        }
    })
}

async fn start(cluster: &EtcdCluster, data_dir: &Path) -> TestServer {
    let mut etcd = EtcdConfig::new(cluster.endpoints());
    etcd.prefix = "/meridian-test".into();
    TestServer::builder(ServerConfig {
        store: StoreBackend::Etcd(etcd),
        scheduler: None,
        ..ServerConfig::default()
    })
    .data_dir(data_dir)
    .start()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_etcd_keeps_objects_across_restarts_and_its_chain_verifies() {
    let mut cluster = EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("cannot start a 3-member etcd cluster: {e}"));
    // The data directory still holds the TLS CA, the secrets key and the admin token.
    let data_dir = tempfile::tempdir().expect("tempdir");
    let sites = kind("Site");

    let server = start(&cluster, data_dir.path()).await;
    for i in 0..3 {
        server
            .client
            .create(sites, None, &site(&format!("site-{i}"), "small"), false)
            .await
            .unwrap_or_else(|e| panic!("create site-{i}: {e}"));
    }
    let before = server
        .client
        .get(sites, None, "site-1")
        .await
        .expect("get site-1");

    // Over etcd's request limit (1.5 MiB) but under the body limit (3 MiB): 413, naming
    // the size and the limit, and nothing written.
    let project = json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
        "metadata": {"name": "big"}, "spec": {}});
    server
        .client
        .create(kind("Project"), None, &project, false)
        .await
        .expect("create the project");
    let workloads = kind("Workload");
    let big = workload("too-big", &"x".repeat(2 * 1024 * 1024));
    let err = server
        .client
        .create(workloads, Some("big"), &big, false)
        .await
        .expect_err("an object over the store's request limit must be refused");
    assert_eq!(err.code(), Some(413), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&store::etcd::DEFAULT_MAX_TXN_BYTES.to_string()),
        "the message names the limit: {message}"
    );
    assert!(
        server
            .client
            .get(workloads, Some("big"), "too-big")
            .await
            .is_err(),
        "the refused object was not written"
    );
    server.stop().await.expect("the server stops cleanly");

    let restarted = start(&cluster, data_dir.path()).await;
    let after = restarted
        .client
        .get(sites, None, "site-1")
        .await
        .expect("site-1 after the restart");
    assert_eq!(after, before, "the object is unchanged across the restart");
    let listed = restarted
        .client
        .list_all(sites, None, &Default::default())
        .await
        .expect("list sites");
    assert_eq!(listed.len(), 3, "every site is there after the restart");
    restarted
        .client
        .create(sites, None, &site("site-3", "after restart"), false)
        .await
        .expect("create after the restart");

    let verified = restarted
        .client
        .get_path("/meridian/v1/audit/verify")
        .await
        .expect("audit verify");
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["entries"].as_u64().unwrap_or(0) >= 5, "{verified}");

    // The same chain, read straight from etcd.
    let mut options = EtcdOptions::new(cluster.endpoints());
    options.prefix = "/meridian-test".into();
    let store = EtcdStore::open(options).await.expect("open the etcd store");
    let summary = store::chain::verify_store(store.as_ref(), "/meridian/audit/")
        .await
        .expect("the audit chain verifies");
    assert_eq!(Some(summary.entries), verified["entries"].as_u64());

    // With the whole cluster gone, requests answer 503 (retry later), not 500.
    for member in 0..3 {
        cluster.kill(member);
    }
    let err = restarted
        .client
        .get(sites, None, "site-1")
        .await
        .expect_err("no store, no answer");
    assert_eq!(err.code(), Some(503), "{err}");
}

/// A CA, and a certificate it signs for 127.0.0.1 usable by servers and clients, written as
/// `ca.crt`, `etcd.crt` and `etcd.key` in `dir`.
fn write_test_pki(dir: &Path) -> ClusterTls {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meridian test etcd CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "meridian test etcd");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
    let tls = ClusterTls {
        ca: dir.join("ca.crt"),
        cert: dir.join("etcd.crt"),
        key: dir.join("etcd.key"),
        client_cert_auth: true,
    };
    std::fs::write(&tls.ca, ca.pem()).expect("write ca.crt");
    std::fs::write(&tls.cert, cert.pem()).expect("write etcd.crt");
    std::fs::write(&tls.key, key.serialize_pem()).expect("write etcd.key");
    tls
}

/// `--etcd-ca`, `--etcd-cert` and `--etcd-key`: the server talks TLS with a client
/// certificate to a cluster that requires one; without the certificate it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_etcd_over_tls_with_a_client_certificate() {
    let pki = tempfile::tempdir().expect("tempdir");
    let tls = write_test_pki(pki.path());
    let cluster = EtcdCluster::start_tls(3, tls.clone())
        .await
        .unwrap_or_else(|e| panic!("cannot start a 3-member etcd cluster with TLS: {e}"));
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut etcd = EtcdConfig::new(cluster.endpoints());
    etcd.ca = Some(tls.ca.clone());
    etcd.cert = Some(tls.cert.clone());
    etcd.key = Some(tls.key.clone());
    let server = TestServer::builder(ServerConfig {
        store: StoreBackend::Etcd(etcd.clone()),
        scheduler: None,
        ..ServerConfig::default()
    })
    .data_dir(data_dir.path())
    .start()
    .await;
    server
        .client
        .create(kind("Site"), None, &site("over-tls", "tls"), false)
        .await
        .expect("create over TLS to etcd");
    server.stop().await.expect("stop");

    // Without a client certificate the cluster refuses the connection.
    let mut no_identity = etcd;
    no_identity.cert = None;
    no_identity.key = None;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let refused = server::Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: other_dir.path().to_path_buf(),
        store: StoreBackend::Etcd(no_identity),
        tls: server::TlsMode::InsecureHttp,
        scheduler: None,
        ..ServerConfig::default()
    })
    .await;
    let Err(err) = refused else {
        panic!("a server without a client certificate must not open the store")
    };
    assert!(
        format!("{err:#}").contains("cannot open the etcd store"),
        "{err:#}"
    );
}

/// A server on a one-member cluster whose member gets `args`, the server told
/// `max_txn_ops`.
async fn start_on(cluster: &EtcdCluster, data_dir: &Path, max_txn_ops: usize) -> TestServer {
    let mut etcd = EtcdConfig::new(cluster.endpoints());
    etcd.max_txn_ops = max_txn_ops;
    TestServer::builder(ServerConfig {
        store: StoreBackend::Etcd(etcd),
        scheduler: None,
        ..ServerConfig::default()
    })
    .data_dir(data_dir)
    .start()
    .await
}

/// etcd's NOSPACE alarm raised: a server that opens the store reports it at once; a create
/// is 507 InsufficientStorage saying what to do on the etcd cluster, `/readyz` is 503,
/// `meridian_store_no_space` is 1, and reads are still served.
///
/// The alarm is raised through etcd's API rather than by filling the quota: etcd 3.4 prices
/// only a transaction's top-level puts against `--quota-backend-bytes`, and Meridian's
/// audited writes put inside a nested transaction, so they never trip it themselves (the
/// store test fills the quota with plain puts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_etcd_with_nospace_answers_507_and_is_not_ready() {
    let cluster = EtcdCluster::start_args(1, &[])
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = start_on(&cluster, data_dir.path(), 128).await;
    let sites = kind("Site");
    server
        .client
        .create(sites, None, &site("before", "small"), false)
        .await
        .expect("a create before the alarm");
    server.stop().await.expect("the server stops cleanly");

    cluster
        .raise_nospace()
        .await
        .expect("raise the NOSPACE alarm");

    let server = start_on(&cluster, data_dir.path(), 128).await;
    let err = server
        .client
        .create(sites, None, &site("after", "small"), false)
        .await
        .expect_err("a create while etcd is out of space");
    assert_eq!(err.code(), Some(507), "{err}");
    let message = err.to_string();
    for words in [
        "NOSPACE",
        "etcdctl defrag",
        "etcdctl alarm disarm",
        "--quota-backend-bytes",
    ] {
        assert!(message.contains(words), "{words:?} missing from: {message}");
    }
    let ready = server
        .client
        .get_text("/readyz")
        .await
        .expect_err("not ready while etcd is out of space");
    assert_eq!(ready.code(), Some(503), "{ready}");
    let metrics = server.client.get_text("/metrics").await.expect("metrics");
    assert!(
        metrics.lines().any(|l| l == "meridian_store_no_space 1"),
        "{metrics}"
    );
    server
        .client
        .get(sites, None, "before")
        .await
        .expect("reads are served");
}

/// Leader election while etcd's NOSPACE alarm is raised. A leader keeps its term (lease
/// renewals are not writes: etcd serves them under the alarm); a server started meanwhile
/// cannot open a session (etcd refuses lease grants) and serves reads without
/// campaigning; once the alarm is cleared and the leader resigns, that server opens a
/// session and leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_under_nospace_keeps_the_leader_and_resumes_after_it() {
    let cluster = EtcdCluster::start_args(1, &[])
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    let on_etcd = |dir: &Path| {
        TestServer::builder(ServerConfig {
            store: StoreBackend::Etcd(EtcdConfig::new(cluster.endpoints())),
            scheduler: None,
            election: server::leader::ElectionOptions {
                lease_ttl: Duration::from_secs(1),
            },
            ..ServerConfig::default()
        })
        .data_dir(dir)
        .start()
    };
    let leads = |server: &TestServer, what: &'static str| {
        let leadership = server.state.leadership.clone();
        wait_until_async(Duration::from_secs(15), what, move || {
            let term = leadership.term();
            async move { term.ok_or("not leading") }
        })
    };
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = on_etcd(dir_a.path()).await;
    let term = leads(&a, "the first server to lead").await;

    // The second replica gets the first's key material and admin token, as replicas do:
    // no token could be minted under the alarm.
    for entry in std::fs::read_dir(dir_a.path()).expect("the first server's directory") {
        let path = entry.expect("an entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir_b.path().join(path.file_name().expect("a name")))
                .expect("copied");
        }
    }
    cluster
        .raise_nospace()
        .await
        .expect("raise the NOSPACE alarm");
    let b = on_etcd(dir_b.path()).await;
    // Three lease TTLs under the alarm.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        a.state.leadership.term(),
        Some(term),
        "the leader kept its term"
    );
    assert_eq!(a.state.leadership.terms_won(), 1);
    assert!(
        b.state.leadership.session().is_none(),
        "no session can be opened while etcd refuses lease grants"
    );
    b.client
        .get_path("/meridian/v1/servers")
        .await
        .expect("the new server serves reads");

    cluster.disarm_nospace().await.expect("disarm the alarm");
    a.stop().await.expect("the leader stops and resigns");
    let new_term = leads(&b, "the second server to lead once the alarm is gone").await;
    assert!(new_term > term, "{new_term} after {term}");
    b.client
        .create(kind("Site"), None, &site("after", "writes resumed"), false)
        .await
        .expect("a create once the alarm is gone");
}

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {
            "site": "onprem-frankfurt",
            "os": {"family": "linux", "distro": "debian", "version": "12"},
            "arch": "amd64",
            "capacity": {"cpu": "64", "memory": "256Gi"},
            "allocatable": {"cpu": "64", "memory": "256Gi"},
            "drivers": ["exec"]
        }
    })
}

/// Against etcd members with `--max-txn-ops 16` (and the server told so), the batched
/// writes split to fit: 20 placements on one node (one transaction each of at most 6, each
/// guarded by the ledger revision the previous one wrote), a secrets key rotation over 20
/// secrets, and the events they record; every placement lands once and the audit chain
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_etcd_splits_batches_to_its_txn_op_limit() {
    let cluster = EtcdCluster::start_args(1, &["--max-txn-ops", "16"])
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = start_on(&cluster, data_dir.path(), 16).await;
    let c = &server.client;
    let mut frankfurt = site("onprem-frankfurt", "big node");
    frankfurt["metadata"]["annotations"] = json!({});
    c.create(kind("Site"), None, &frankfurt, false)
        .await
        .expect("site");
    c.create(kind("Node"), None, &node("big"), false)
        .await
        .expect("node");
    testkit::mark_ready(c, "big").await;
    let project = json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
        "metadata": {"name": "finance"}, "spec": {}});
    c.create(kind("Project"), None, &project, false)
        .await
        .expect("project");
    let mut many = workload("many", "hello");
    many["spec"]["replicas"] = json!(20);
    c.create(kind("Workload"), Some("finance"), &many, false)
        .await
        .expect("workload");

    let report = server::scheduler::pass(&server.state, &Default::default())
        .await
        .expect("a scheduler pass");
    assert_eq!(report.placed, 20, "{report:?}");
    assert_eq!(report.conflicts, 0, "{report:?}");
    let allocations = c
        .list_all(kind("Allocation"), Some("finance"), &Default::default())
        .await
        .expect("allocations");
    assert_eq!(allocations.len(), 20);
    assert!(allocations.iter().all(|a| a["spec"]["node"] == "big"));

    for i in 0..20 {
        let secret = json!({"apiVersion": "meridian.dev/v1", "kind": "Secret",
            "metadata": {"name": format!("s{i}"), "namespace": "finance"},
            "spec": {"stringData": {"password": "hunter2"}}});
        c.create(kind("Secret"), Some("finance"), &secret, false)
            .await
            .unwrap_or_else(|e| panic!("secret s{i}: {e}"));
    }
    let rotated = c
        .request_json(
            client::Method::POST,
            "/meridian/v1/admin/secrets/rotate-key",
            None,
        )
        .await
        .expect("the rotation commits in batches that fit");
    assert_eq!(rotated["reencrypted"], 20, "{rotated}");
    assert_eq!(rotated["remaining"], 0, "{rotated}");

    // The 20 Scheduled events reach the store too (the recorder's batches split as well).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = c
            .list_all(kind("Event"), Some("finance"), &Default::default())
            .await
            .expect("events");
        let scheduled = events.iter().filter(|e| e["reason"] == "Scheduled").count();
        if scheduled == 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{scheduled} of 20 Scheduled events stored after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let verified = c
        .get_path("/meridian/v1/audit/verify")
        .await
        .expect("audit verify");
    assert_eq!(verified["ok"], true, "{verified}");
}

/// On an etcd cluster another application writes to (its own prefix), the cluster's
/// revision runs ahead of anything this server's watches deliver. The scheduler's cache
/// waits for a revision of this store's own (`Store::sync_revision`), so a workload is
/// placed while the other tenant writes; waiting for the cluster's current revision, a
/// pass would wait for the cache until its 30 s limit and fail, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_places_while_another_prefix_of_the_cluster_is_written() {
    let cluster = EtcdCluster::start(1)
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    let mut other = EtcdOptions::new(cluster.endpoints());
    other.prefix = "/another-application".into();
    let other = EtcdStore::open(other)
        .await
        .expect("the other tenant's store");
    let stop = tokio_util::sync::CancellationToken::new();
    let puts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (stop, puts) = (stop.clone(), Arc::clone(&puts));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                use store::StoreExt as _;
                other
                    .put(&format!("/noise/{}", i % 10), i.to_le_bytes().to_vec())
                    .await
                    .expect("the other tenant writes");
                i += 1;
                puts.store(i, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            i
        })
    };

    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut etcd = EtcdConfig::new(cluster.endpoints());
    etcd.prefix = "/meridian-test".into();
    let server = TestServer::builder(ServerConfig {
        store: StoreBackend::Etcd(etcd),
        scheduler: Some(server::scheduler::SchedulerOptions::default()),
        ..ServerConfig::default()
    })
    .data_dir(data_dir.path())
    .start()
    .await;
    let c = &server.client;
    let mut frankfurt = site("onprem-frankfurt", "shared cluster");
    frankfurt["metadata"]["annotations"] = json!({});
    c.create(kind("Site"), None, &frankfurt, false)
        .await
        .expect("site");
    c.create(kind("Node"), None, &node("n1"), false)
        .await
        .expect("node");
    testkit::mark_ready(c, "n1").await;
    let project = json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
        "metadata": {"name": "finance"}, "spec": {}});
    c.create(kind("Project"), None, &project, false)
        .await
        .expect("project");
    // The other tenant has been writing all along (how many puts a second depends on the
    // machine's load; a fixed count at the end failed under load).
    while puts.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = puts.load(std::sync::atomic::Ordering::SeqCst);
    c.create(
        kind("Workload"),
        Some("finance"),
        &workload("web", "hello"),
        false,
    )
    .await
    .expect("workload");

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let allocations = c
            .list_all(kind("Allocation"), Some("finance"), &Default::default())
            .await
            .expect("allocations");
        if allocations.iter().any(|a| a["spec"]["node"] == "n1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the workload is not placed 20 s after its create while another prefix is written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.cancel();
    let written = writer.await.expect("the other tenant's writer");
    assert!(
        written > before,
        "the other tenant wrote while the workload was placed ({before} puts before, {written} in all)"
    );
}
