//! The server on a really full disk: the database on a 4 MiB tmpfs filled by a filler
//! file. Writes answer 507 with a `Status` saying why and what to do; reads and DELETE work;
//! `/readyz` is 503 with the reason while `/healthz` and `/livez` stay ok; the metrics say
//! so; writes resume by themselves once the filler is gone; no acknowledged object is
//! missing and no refused one present. Needs root to mount the tmpfs; fails (never skips)
//! without it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use client::{Client, ClientError, Method};
use server::ServerConfig;
use store::sqlite::{SpaceOptions, SqliteOptions, SqliteStore};
use store::tmpfs::Tmpfs;
use testkit::{TestServer, wait_until_async};

const SITES: &str = "/apis/meridian.dev/v1/sites";

/// A Site carrying an 8 KiB annotation, so that a few writes fill pages quickly.
fn site(name: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Site",
        "metadata": {"name": name, "annotations": {"note": "x".repeat(8 * 1024)}},
        "spec": {
            "provider": "onprem",
            "region": "frankfurt",
            "jurisdiction": "DE",
            "operator": {"name": "Example Bank AG", "jurisdiction": "DE"},
        }
    })
}

async fn create(c: &Client, name: &str) -> Result<Value, ClientError> {
    c.request_json(Method::POST, SITES, Some(&site(name))).await
}

async fn site_names(c: &Client) -> BTreeSet<String> {
    let list = c.get_path(SITES).await.expect("list sites");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

fn api_status(e: &ClientError) -> &api::Status {
    match e {
        ClientError::Api(status) => status,
        other => panic!("expected an API error, got {other}"),
    }
}

/// The value of an unlabelled metric in the text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (n, v) = line.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_507_keeps_reads_and_deletes_and_recovers() {
    let fs = Tmpfs::mount("4m").unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::open(
        &fs.path().join(server::DB_FILE),
        SqliteOptions {
            space: SpaceOptions {
                reserve_bytes: 512 * 1024,
                resume_free_bytes: 512 * 1024,
                check_interval: Duration::from_millis(50),
            },
            ..SqliteOptions::default()
        },
    )
    .await
    .expect("open store");
    let server = TestServer::builder(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .data_dir(fs.path())
    .store(store)
    .start()
    .await;
    let c = server.client.clone();

    let mut acked = BTreeSet::new();
    for i in 0..4 {
        let name = format!("before-{i}");
        create(&c, &name)
            .await
            .expect("create before the disk fills");
        acked.insert(name);
    }
    let filler = fs.fill();

    // SQLite may still find room in pages it has; create until the wall.
    let mut refused = BTreeSet::new();
    let mut first = None;
    for i in 0..500 {
        let name = format!("fill-{i}");
        match create(&c, &name).await {
            Ok(_) => {
                acked.insert(name);
            }
            Err(e) => {
                refused.insert(name);
                first = Some(e);
                break;
            }
        }
    }
    let err = first.expect("a create on a full disk fails");
    let status = api_status(&err);
    assert_eq!(status.code, 507, "{status:?}");
    assert_eq!(status.kind, "Status");
    assert_eq!(status.reason, "InsufficientStorage");
    let dir = fs.path().display().to_string();
    assert!(
        status.message.contains(&dir) && status.message.contains("Free disk space"),
        "the message names the filesystem and what to do: {}",
        status.message
    );
    let err = create(&c, "refused-again").await.expect_err("still full");
    assert_eq!(api_status(&err).code, 507);
    refused.insert("refused-again".to_owned());

    // Reads work.
    let got = c
        .get_path(&format!("{SITES}/before-1"))
        .await
        .expect("get works on a full disk");
    assert_eq!(got["metadata"]["name"], "before-1");
    assert_eq!(site_names(&c).await, acked);

    // Readiness says why; liveness does not care.
    let err = c.get_text("/readyz").await.expect_err("not ready");
    let status = api_status(&err);
    assert_eq!(status.code, 503);
    assert_eq!(status.reason, "InsufficientStorage");
    assert!(status.message.contains(&dir), "{}", status.message);
    for path in ["/healthz", "/livez"] {
        assert_eq!(c.get_text(path).await.expect(path), "ok");
    }
    let metrics = c.get_text("/metrics").await.expect("metrics");
    assert_eq!(metric(&metrics, "meridian_store_no_space"), 1.0);
    assert!(metric(&metrics, "meridian_store_writes_refused_no_space_total") >= 2.0);

    // DELETE works, so space can be managed through the API.
    c.request_json(Method::DELETE, &format!("{SITES}/before-0"), None)
        .await
        .expect("delete works on a full disk");
    acked.remove("before-0");
    let err = c
        .get_path(&format!("{SITES}/before-0"))
        .await
        .expect_err("deleted");
    assert!(err.is_not_found(), "{err}");

    // Space returns: writes resume by themselves.
    std::fs::remove_file(&filler).expect("remove filler");
    wait_until_async(
        Duration::from_secs(30),
        "/readyz to answer 200 once space returned",
        || c.get_text("/readyz"),
    )
    .await;
    let metrics = c.get_text("/metrics").await.expect("metrics");
    assert_eq!(metric(&metrics, "meridian_store_no_space"), 0.0);
    create(&c, "after").await.expect("writes resume");
    acked.insert("after".to_owned());

    let names = site_names(&c).await;
    assert_eq!(names, acked, "every acknowledged object is there");
    assert!(names.is_disjoint(&refused), "no refused object appears");

    server.stop().await.expect("the server stops cleanly");
}
