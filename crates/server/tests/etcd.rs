//! The server on the etcd backend (`--store etcd://…`) end to end: a real 3-member etcd
//! cluster, objects created through the HTTP API, a restart that finds them, the audit
//! chain verified through the API and against the store, and an object over etcd's request
//! limit refused with 413 before it reaches etcd.
//!
//! Needs `etcd` (Debian: `apt-get install etcd-server`); fails saying so without it.

use std::path::Path;

use serde_json::{Value, json};

use server::{EtcdConfig, ServerConfig, StoreBackend};
use store::etcd::testing::{ClusterTls, EtcdCluster};
use store::etcd::{EtcdOptions, EtcdStore};
use testkit::{TestServer, kind};

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
