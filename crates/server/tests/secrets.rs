//! Secrets through a real server (issue 22, part 3): values sealed at rest in the SQLite
//! file, a private key file, who reads what (admin and operators values, viewers keys,
//! nodes nothing) on every read path (get, list, watch, tables), the agent's fetch for
//! allocations on its own node, key rotation across a restart, patches and apply on the
//! open form, and no value in the audit log, error bodies, events or the server's logs.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use client::{ClientError, PatchType};
use server::ServerConfig;

use testkit::{TestServer, kind, seed_allocation};

const SECRETS: &str = "/apis/meridian.dev/v1/namespaces/finance/secrets";
/// Values no other test data contains, so finding them anywhere is a leak.
const PASSWORD: &str = "pw-Zq8v-3d1b7c-LEAK";
const USER: &str = "user-Kx2r-9a4f-LEAK";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every form a value could leak in: clear, base64, and base64 of the JSON a seal would
/// wrap it in.
fn leaks(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for v in [PASSWORD, USER] {
        for form in [
            v.to_owned(),
            b64(v),
            b64(v).trim_end_matches('=').to_owned(),
        ] {
            if text.contains(&form) {
                found.push(form);
            }
        }
    }
    found
}

fn assert_no_leak(what: &str, text: &str) {
    let found = leaks(text);
    assert!(
        found.is_empty(),
        "{what} holds a secret value {found:?}:\n{text}"
    );
}

fn assert_no_sealed(what: &str, text: &str) {
    for word in ["sealed", "ciphertext", "nonce"] {
        assert!(!text.contains(word), "{what} holds {word:?}:\n{text}");
    }
}

async fn server() -> TestServer {
    TestServer::start_with(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .await
}

async fn project(r: &TestServer, name: &str) {
    r.client
        .create(
            kind("project"),
            None,
            &json!({"apiVersion": "meridian.dev/v1", "kind": "Project", "metadata": {"name": name}}),
            false,
        )
        .await
        .expect("project");
}

fn secret(name: &str) -> Value {
    json!({
        "apiVersion": "meridian.dev/v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "finance"},
        "spec": {"data": {"user": b64(USER)}, "stringData": {"password": PASSWORD}}
    })
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A raw request: status and body text.
async fn raw(
    r: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let mut req = http()
        .request(method, format!("{}{path}", r.url))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

async fn get_text(r: &TestServer, token: &str, path: &str) -> (u16, String) {
    raw(r, reqwest::Method::GET, path, token, &[], None).await
}

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

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

/// Every byte of the SQLite database and its WAL, as text (lossy).
fn database_bytes(r: &TestServer) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(r.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(server::DB_FILE) {
            all.extend(std::fs::read(&path).expect("db file"));
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

async fn stored(r: &TestServer, name: &str) -> Value {
    let key = server::registry::object_key(kind("secret"), Some("finance"), name);
    let (kv, _) = r.state.store().get(&key).await.expect("read");
    server::registry::decode(&kv.expect("stored")).expect("decodes")
}

#[tokio::test]
async fn values_are_sealed_at_rest_and_the_key_file_is_private() {
    let r = server().await;
    project(&r, "finance").await;
    let created = r
        .client
        .create(kind("secret"), Some("finance"), &secret("db"), false)
        .await
        .expect("created");
    // The writer (an admin) gets the open form back: data, no stringData, nothing sealed.
    assert_eq!(created["spec"]["data"]["password"], b64(PASSWORD));
    assert!(created["spec"].get("stringData").is_none());
    assert!(created["spec"].get("sealed").is_none());

    let at_rest = stored(&r, "db").await;
    assert_eq!(at_rest["spec"]["keys"], json!(["password", "user"]));
    assert!(at_rest["spec"].get("data").is_none(), "{at_rest}");
    assert!(at_rest["spec"].get("stringData").is_none(), "{at_rest}");
    assert_eq!(
        at_rest["spec"]["sealed"]["keyId"].as_str().map(str::len),
        Some(16)
    );
    assert_no_leak("the stored object", &at_rest.to_string());

    // Nowhere in the database file or its WAL (history, audit log included).
    let db = database_bytes(&r);
    assert!(
        db.contains("payload") || db.len() > 4096,
        "read the database"
    );
    assert_no_leak("the SQLite files", &db);

    // Also with rusqlite: every column of every row of every table.
    let conn = rusqlite::Connection::open_with_flags(
        r.data_dir().join(server::DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database read-only");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("a query")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("names");
    assert!(tables.iter().any(|t| t == "kv"), "{tables:?}");
    let mut cells = 0;
    for table in &tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("a query");
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("a row") {
            for i in 0..columns {
                let text = match row.get::<_, rusqlite::types::Value>(i).expect("a cell") {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
                    _ => continue,
                };
                cells += 1;
                assert_no_leak(&format!("table {table}"), &text);
            }
        }
    }
    assert!(cells > 10, "read the tables ({cells} cells)");

    // The key file: 32 bytes, owner-only, named by its id in secrets.keys/.
    use std::os::unix::fs::PermissionsExt as _;
    let key_file = r.data_dir().join("secrets.key");
    let meta = std::fs::metadata(&key_file).expect("secrets.key exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let key_id = at_rest["spec"]["sealed"]["keyId"].as_str().expect("key id");
    let copy = r
        .data_dir()
        .join("secrets.keys")
        .join(format!("{key_id}.key"));
    assert_eq!(
        std::fs::metadata(&copy)
            .expect("the key by id")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let dir_mode = std::fs::metadata(r.data_dir().join("secrets.keys"))
        .expect("keys dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "secrets.keys/ is owner-only");
}

#[tokio::test]
async fn viewers_see_keys_operators_values_and_nodes_nothing() {
    let r = server().await;
    project(&r, "finance").await;
    project(&r, "research").await;
    let (_, list) = get_text(&r, &r.token, SECRETS).await;
    let before: Value = serde_json::from_str(&list).expect("list");
    let rv = before["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    r.client
        .create(kind("secret"), Some("finance"), &secret("db"), false)
        .await
        .expect("created");
    r.client
        .patch(
            kind("secret"),
            Some("finance"),
            "db",
            PatchType::Merge,
            &json!({"metadata": {"labels": {"tier": "db"}}}),
            false,
        )
        .await
        .expect("patched");

    let viewer = r.new_token("viewer", None).await;
    let scoped_viewer = r.new_token("viewer", Some("finance")).await;
    let operator = r.new_token("operator", Some("finance")).await;
    let other_operator = r.new_token("operator", Some("research")).await;

    let paths = [
        format!("{SECRETS}/db"),
        SECRETS.to_owned(),
        "/apis/meridian.dev/v1/secrets".to_owned(),
        format!("{SECRETS}?labelSelector=tier%3Ddb"),
        format!("{SECRETS}?watch=true&timeoutSeconds=1&resourceVersion={rv}"),
        format!("{SECRETS}?watch=true&timeoutSeconds=1"),
    ];
    for token in [&viewer, &scoped_viewer] {
        for path in &paths {
            for accept in ["application/json", TABLE] {
                for include in ["", "&includeObject=Object", "?includeObject=Object"] {
                    if include.starts_with('&') != path.contains('?') && !include.is_empty() {
                        continue;
                    }
                    let full = format!("{path}{include}");
                    let (status, body) = raw(
                        &r,
                        reqwest::Method::GET,
                        &full,
                        token,
                        &[("Accept", accept)],
                        None,
                    )
                    .await;
                    let what = format!("viewer {full} ({accept})");
                    assert_eq!(status, 200, "{what}: {body}");
                    assert_no_leak(&what, &body);
                    assert_no_sealed(&what, &body);
                    assert!(body.contains("password"), "{what} names the keys: {body}");
                }
            }
        }
    }
    // The viewer's copy: type and keys.
    let v = r
        .client_as(&viewer)
        .get(kind("secret"), Some("finance"), "db")
        .await
        .expect("viewer get");
    assert_eq!(v["spec"], json!({"keys": ["password", "user"]}));
    // The watch delivered the creation and the patch, keys only.
    let (_, body) = get_text(
        &r,
        &viewer,
        &format!("{SECRETS}?watch=true&timeoutSeconds=1&resourceVersion={rv}"),
    )
    .await;
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(events[1]["type"], "MODIFIED");
    assert_eq!(
        events[1]["object"]["spec"]["keys"],
        json!(["password", "user"])
    );

    // The project's operator and the admin read values, on every path; never `sealed`.
    for token in [&operator, &r.token] {
        for path in &paths[..5] {
            let (status, body) = get_text(&r, token, path).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert!(body.contains(&b64(PASSWORD)), "{path}: {body}");
            assert_no_sealed(path, &body);
        }
        let (_, body) = get_text(&r, token, &paths[4]).await;
        for line in body.lines() {
            let e: Value = serde_json::from_str(line).expect("event");
            assert_eq!(
                e["object"]["spec"]["data"]["password"],
                b64(PASSWORD),
                "{line}"
            );
        }
    }
    // An operator of another project: 404, as any object outside its scope.
    let e = r
        .client_as(&other_operator)
        .get(kind("secret"), Some("finance"), "db")
        .await
        .expect_err("other project");
    assert_eq!(code(e), 404);
    let (status, body) = get_text(&r, &other_operator, "/apis/meridian.dev/v1/secrets").await;
    assert_eq!(status, 200);
    assert_no_leak("another project's operator listing every project", &body);
    assert!(!body.contains("\"db\""), "{body}");

    // A viewer writes nothing, and its refusal does not echo the body.
    let (status, body) = raw(
        &r,
        reqwest::Method::POST,
        SECRETS,
        &viewer,
        &[("Content-Type", "application/json")],
        Some(serde_json::to_vec(&secret("db2")).expect("json")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_no_leak("a refused create", &body);

    // A node credential does not read Secret objects at all.
    let node = node_credential(&r, "fra-new-01").await;
    for path in [format!("{SECRETS}/db"), SECRETS.to_owned()] {
        let (status, body) = get_text(&r, &node, &path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_no_leak("a node's read", &body);
    }
}

async fn node_credential(r: &TestServer, node: &str) -> String {
    // A site for the join token.
    let site = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Site",
        "metadata": {"name": "onprem-frankfurt"},
        "spec": {"provider": "onprem", "region": "frankfurt", "jurisdiction": "DE",
                 "operator": {"name": "Example Bank AG", "jurisdiction": "DE"}}
    });
    r.client
        .apply(kind("site"), None, &site, false)
        .await
        .expect("a site");
    let token = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/join-tokens",
            Some(&json!({"site": "onprem-frankfurt", "ttlSeconds": 600})),
        )
        .await
        .expect("join token")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let resp = http()
        .post(format!("{}/meridian/v1/nodes/join", r.url))
        .bearer_auth(&token)
        .json(&json!({"node": node}))
        .send()
        .await
        .expect("join");
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.expect("json");
    body["token"].as_str().expect("credential").to_owned()
}

async fn allocation(r: &TestServer, name: &str, node: &str, task: Value) {
    seed_allocation(
        &r.state,
        &json!({
            "apiVersion": "meridian.dev/v1", "kind": "Allocation",
            "metadata": {"name": name, "namespace": "finance"},
            "spec": {"workload": "w", "node": node,
                     "resources": {"cpu": "100m", "memory": "32Mi"},
                     "task": task},
        }),
    )
    .await;
}

fn fetch_path(allocation: &str) -> String {
    format!("/meridian/v1/namespaces/finance/allocations/{allocation}/secrets")
}

#[tokio::test]
async fn an_agent_fetches_only_what_its_allocations_reference() {
    let r = server().await;
    project(&r, "finance").await;
    r.client
        .create(kind("secret"), Some("finance"), &secret("db"), false)
        .await
        .expect("db");
    r.client
        .create(
            kind("secret"),
            Some("finance"),
            &json!({"kind": "Secret", "metadata": {"name": "tls", "namespace": "finance"},
                    "spec": {"stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}}),
            false,
        )
        .await
        .expect("tls");
    let task = json!({
        "driver": "exec", "command": ["/bin/true"], "resources": {"cpu": "100m", "memory": "32Mi"},
        "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretRef": {"name": "db", "key": "password"}}},
                {"name": "MODE", "value": "prod"}],
        "secrets": [{"name": "tls"}]
    });
    allocation(&r, "mine-0", "fra-new-01", task.clone()).await;
    allocation(&r, "theirs-0", "fra-new-02", task).await;
    allocation(
        &r,
        "no-secret-0",
        "fra-new-01",
        json!({"driver": "exec", "command": ["/bin/true"], "resources": {"cpu": "100m", "memory": "32Mi"},
               "env": [{"name": "X", "valueFrom": {"secretRef": {"name": "absent", "key": "k"}}}]}),
    )
    .await;
    allocation(
        &r,
        "no-key-0",
        "fra-new-01",
        json!({"driver": "exec", "command": ["/bin/true"], "resources": {"cpu": "100m", "memory": "32Mi"},
               "secrets": [{"name": "db", "keys": ["user", "missing-key"]}]}),
    )
    .await;
    let node = node_credential(&r, "fra-new-01").await;

    // Its own allocation: exactly the referenced keys (db's password, not its user; every
    // key of tls).
    let (status, body) = get_text(&r, &node, &fetch_path("mine-0")).await;
    assert_eq!(status, 200, "{body}");
    let got: api::secret::AllocationSecrets = serde_json::from_str(&body).expect("the answer");
    assert_eq!(
        serde_json::to_value(&got).expect("json"),
        json!({"secrets": {
            "db": {"password": b64(PASSWORD)},
            "tls": {"tls.crt": b64("CERT"), "tls.key": b64("KEY")}
        }})
    );
    // Another node's allocation, or one that does not exist: 403, nothing learnt.
    for name in ["theirs-0", "nothing-0"] {
        let (status, body) = get_text(&r, &node, &fetch_path(name)).await;
        assert_eq!(status, 403, "{name}: {body}");
        assert_no_leak("a refused fetch", &body);
    }
    // A missing secret or key: 404 naming the secret, the key and the project.
    let (status, body) = get_text(&r, &node, &fetch_path("no-secret-0")).await;
    assert_eq!(status, 404, "{body}");
    let status_obj: Value = serde_json::from_str(&body).expect("a Status");
    let msg = status_obj["message"].as_str().expect("message");
    assert!(
        msg.contains("\"absent\"") && msg.contains("\"finance\""),
        "{msg}"
    );
    assert_eq!(status_obj["details"]["name"], "absent");
    let (status, body) = get_text(&r, &node, &fetch_path("no-key-0")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("missing-key") && body.contains("\\\"db\\\"") && body.contains("finance"),
        "{body}"
    );
    assert_no_leak("a missing key", &body);

    // Viewers and operators do not fetch; admins do.
    for role in ["viewer", "operator"] {
        let token = r.new_token(role, Some("finance")).await;
        let (status, body) = get_text(&r, &token, &fetch_path("mine-0")).await;
        assert_eq!(status, 403, "{role}: {body}");
        assert_no_leak(role, &body);
    }
    let (status, body) = get_text(&r, &r.token, &fetch_path("theirs-0")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&b64(PASSWORD)));
}

#[tokio::test]
async fn patches_and_apply_work_on_values_and_reseal_them() {
    let r = server().await;
    project(&r, "finance").await;
    let operator = r.client_as(&r.new_token("operator", Some("finance")).await);
    operator
        .create(kind("secret"), Some("finance"), &secret("db"), false)
        .await
        .expect("created");
    let sealed_before = stored(&r, "db").await["spec"]["sealed"].clone();

    // Merge patch: a new key through stringData; the others stay.
    let v = operator
        .patch(
            kind("secret"),
            Some("finance"),
            "db",
            PatchType::Merge,
            &json!({"spec": {"stringData": {"host": "db.internal"}}}),
            false,
        )
        .await
        .expect("merge patch");
    assert_eq!(
        v["spec"]["data"],
        json!({"host": b64("db.internal"), "password": b64(PASSWORD), "user": b64(USER)})
    );
    assert_eq!(v["metadata"]["generation"], 2);
    let at_rest = stored(&r, "db").await;
    assert_eq!(at_rest["spec"]["keys"], json!(["host", "password", "user"]));
    assert_ne!(at_rest["spec"]["sealed"], sealed_before, "re-sealed");
    assert!(at_rest["spec"].get("data").is_none());

    // JSON patch on the open form: remove a key, test a value.
    let v = operator
        .patch(
            kind("secret"),
            Some("finance"),
            "db",
            PatchType::Json,
            &json!([{"op": "test", "path": "/spec/data/user", "value": b64(USER)},
                    {"op": "remove", "path": "/spec/data/host"}]),
            false,
        )
        .await
        .expect("json patch");
    assert_eq!(
        v["spec"]["data"],
        json!({"password": b64(PASSWORD), "user": b64(USER)})
    );
    // A failed test names the path, never a value.
    let e = operator
        .patch(
            kind("secret"),
            Some("finance"),
            "db",
            PatchType::Json,
            &json!([{"op": "test", "path": "/spec/data/user", "value": "d3Jvbmc="}]),
            false,
        )
        .await
        .expect_err("test fails");
    assert_no_leak("a failed JSON patch", &message(e));

    // PUT of what was read, unchanged: no write, same generation.
    let read = operator
        .get(kind("secret"), Some("finance"), "db")
        .await
        .expect("read");
    let same = operator
        .replace(kind("secret"), Some("finance"), "db", &read)
        .await
        .expect("put unchanged");
    assert_eq!(
        same["metadata"]["generation"],
        read["metadata"]["generation"]
    );
    assert_eq!(
        same["metadata"]["resourceVersion"],
        read["metadata"]["resourceVersion"]
    );

    // Server-side apply replaces the spec; the kubectl last-applied annotation is dropped.
    let manifest = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "finance",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                        format!("{{\"stringData\":{{\"password\":\"{PASSWORD}\"}}}}")}},
        "spec": {"type": "app/db", "stringData": {"password": PASSWORD}}
    });
    let (v, _) = operator
        .apply(kind("secret"), Some("finance"), &manifest, false)
        .await
        .expect("apply");
    assert_eq!(
        v["spec"],
        json!({"type": "app/db", "data": {"password": b64(PASSWORD)}})
    );
    assert!(v["metadata"].get("annotations").is_none(), "{v}");
    let at_rest = stored(&r, "db").await;
    assert_eq!(at_rest["spec"]["keys"], json!(["password"]));
    assert_no_leak("the applied secret at rest", &at_rest.to_string());
    assert_no_leak("the SQLite files after patches", &database_bytes(&r));

    // Client-sent `sealed` or `keys` are refused, naming the field.
    for spec in [
        json!({"keys": ["a"]}),
        json!({"sealed": {"keyId": "x", "nonce": "x", "ciphertext": "x"}}),
    ] {
        let e = operator
            .patch(
                kind("secret"),
                Some("finance"),
                "db",
                PatchType::Merge,
                &json!({ "spec": spec }),
                false,
            )
            .await
            .expect_err("server fields");
        assert_eq!(code(e), 422);
    }
}

#[tokio::test]
async fn rotate_key_reencrypts_and_values_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    };
    let r = TestServer::builder(config())
        .data_dir(dir.path())
        .start()
        .await;
    project(&r, "finance").await;
    for name in ["a", "b", "c"] {
        r.client
            .create(kind("secret"), Some("finance"), &secret(name), false)
            .await
            .expect("created");
    }
    let old_key = stored(&r, "a").await["spec"]["sealed"]["keyId"]
        .as_str()
        .expect("key id")
        .to_owned();
    for role in ["operator", "viewer"] {
        let token = r.new_token(role, None).await;
        let e = r
            .client_as(&token)
            .request_json(
                client::Method::POST,
                "/meridian/v1/admin/secrets/rotate-key",
                None,
            )
            .await
            .expect_err("admins only");
        assert_eq!(code(e), 403);
    }
    let rotated = r
        .client
        .request_json(
            client::Method::POST,
            "/meridian/v1/admin/secrets/rotate-key",
            None,
        )
        .await
        .expect("rotated");
    assert_eq!(rotated["reencrypted"], 3, "{rotated}");
    assert_eq!(rotated["remaining"], 0, "{rotated}");
    let new_key = rotated["keyId"].as_str().expect("key id").to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(rotated["keyIds"].as_array().map(Vec::len), Some(2));
    for name in ["a", "b", "c"] {
        assert_eq!(
            stored(&r, name).await["spec"]["sealed"]["keyId"],
            new_key.as_str()
        );
    }
    // The rotation is audited, one entry per secret, with a digest and no value.
    let (_, audit) = get_text(&r, &r.token, "/meridian/v1/audit?limit=1000").await;
    assert_eq!(audit.matches("reencrypt").count(), 3, "{audit}");
    assert_no_leak("the audit log", &audit);
    r.stop().await.expect("stopped");

    // After a restart: the new key is current, the old one still held, values intact.
    let r = TestServer::builder(config())
        .data_dir(dir.path())
        .start()
        .await;
    let key_file = std::fs::read(dir.path().join("secrets.key")).expect("key");
    assert_eq!(key_file.len(), 32);
    assert!(
        dir.path()
            .join("secrets.keys")
            .join(format!("{old_key}.key"))
            .exists()
    );
    for name in ["a", "b", "c"] {
        let v = r
            .client
            .get(kind("secret"), Some("finance"), name)
            .await
            .expect("read after restart");
        assert_eq!(v["spec"]["data"]["password"], b64(PASSWORD));
        assert_eq!(v["spec"]["data"]["user"], b64(USER));
    }
    r.client
        .create(kind("secret"), Some("finance"), &secret("d"), false)
        .await
        .expect("a write after restart");
    assert_eq!(
        stored(&r, "d").await["spec"]["sealed"]["keyId"],
        new_key.as_str()
    );
}

/// A `tracing` writer into a shared buffer: what the server logged during the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn values_never_reach_the_audit_log_errors_events_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init();
    let r = server().await;
    project(&r, "finance").await;
    r.client
        .create(kind("secret"), Some("finance"), &secret("db"), false)
        .await
        .expect("created");

    // A bad base64 value: the error names the key, not the value.
    let mut bad = secret("bad");
    bad["spec"]["data"]["token"] = json!(format!("{PASSWORD}!!"));
    let (status, body) = raw(
        &r,
        reqwest::Method::POST,
        SECRETS,
        &r.token,
        &[("Content-Type", "application/json")],
        Some(serde_json::to_vec(&bad).expect("json")),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("spec.data.token"), "{body}");
    assert_no_leak("a 422 for bad base64", &body);
    // Too many bytes, an unknown field, a wrong type: no value echoed either.
    for spec in [
        json!({"stringData": {"password": PASSWORD}, "dta": {"x": PASSWORD}}),
        json!({"stringData": {"password": [PASSWORD]}}),
    ] {
        let mut body = secret("odd");
        body["spec"] = spec;
        let (status, text) = raw(
            &r,
            reqwest::Method::POST,
            SECRETS,
            &r.token,
            &[("Content-Type", "application/json")],
            Some(serde_json::to_vec(&body).expect("json")),
        )
        .await;
        assert!(status >= 400, "{text}");
        assert_no_leak("an invalid secret's error", &text);
    }
    // An already-existing secret: 409 without the body.
    let (status, body) = raw(
        &r,
        reqwest::Method::POST,
        SECRETS,
        &r.token,
        &[("Content-Type", "application/json")],
        Some(serde_json::to_vec(&secret("db")).expect("json")),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_no_leak("a 409", &body);

    // Admission policies judge keys, never values: a deny policy that prints the whole
    // spec it was given (the refusal is also recorded as an event).
    let policy = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Policy",
        "metadata": {"name": "print-secrets"},
        "spec": {"enforcement": "deny", "targets": ["Secret"],
                 "rego": "package printsecrets\n\ndeny contains msg if {\n  input.object.metadata.name == \"printed\"\n  msg := sprintf(\"saw %v\", [input.object.spec])\n}\n",
                 "controls": [{"framework": "NIST SP 800-53", "id": "SC-28"}]}
    });
    r.client
        .create(kind("policy"), None, &policy, false)
        .await
        .expect("policy");
    let e = r
        .client
        .create(kind("secret"), Some("finance"), &secret("printed"), false)
        .await
        .expect_err("denied");
    let msg = message(e);
    assert!(
        msg.contains("password") && msg.contains("user"),
        "keys shown: {msg}"
    );
    assert_no_leak("a policy denial", &msg);
    assert_no_sealed("a policy denial", &msg);

    // Events, the audit log (through the API and in the database), the logs.
    // The denial's Warning event (recorded asynchronously) names the secret, not a value.
    let mut events = String::new();
    for _ in 0..50 {
        events = get_text(&r, &r.token, "/api/v1/namespaces/finance/events")
            .await
            .1;
        if events.contains("printed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        events.contains("printed"),
        "the denial is an event: {events}"
    );
    assert_no_leak("events", &events);
    let (_, audit) = get_text(&r, &r.token, "/meridian/v1/audit?limit=1000").await;
    assert!(audit.contains("\"Secret\""), "{audit}");
    assert!(audit.contains("sha256:"), "a digest is recorded: {audit}");
    assert_no_leak("the audit log", &audit);
    assert_no_leak("the SQLite files", &database_bytes(&r));
    r.stop().await.expect("stopped");
    let logged = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    assert!(
        logged.contains("secrets key"),
        "the logs were captured: {logged}"
    );
    assert_no_leak("the server's logs", &logged);
    let _ = std::io::stderr().flush();
}

/// Secret read latency through the API: `GET` of one secret as a project operator (read,
/// open, answer) and the agent's fetch (authorize, read the allocation, read and open the
/// secret), sequential requests over loopback HTTP/1.1 with keep-alive. Prints p50, p99 and
/// max. A measurement, not a test:
/// `cargo test --release -p server --test secrets -- --ignored --nocapture secret_read_latency`
/// (`SECRETS_BENCH_N` sets the request count, default 2,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run explicitly in release mode"]
async fn secret_read_latency() {
    let n: usize = std::env::var("SECRETS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let r = server().await;
    project(&r, "finance").await;
    r.client
        .create(kind("secret"), Some("finance"), &secret("db"), false)
        .await
        .expect("db");
    allocation(
        &r,
        "bench-0",
        "fra-new-01",
        json!({"driver": "exec", "command": ["/bin/true"], "resources": {"cpu": "100m", "memory": "32Mi"},
               "env": [{"name": "P", "valueFrom": {"secretRef": {"name": "db", "key": "password"}}}],
               "secrets": [{"name": "db"}]}),
    )
    .await;
    let node = node_credential(&r, "fra-new-01").await;
    let operator = r.new_token("operator", Some("finance")).await;
    let viewer = r.new_token("viewer", Some("finance")).await;
    let http = http();
    let runs = [
        (
            "GET secret (operator, decrypts)",
            format!("{SECRETS}/db"),
            operator.clone(),
        ),
        (
            "GET secret (viewer, keys only)",
            format!("{SECRETS}/db"),
            viewer,
        ),
        ("agent fetch (node credential)", fetch_path("bench-0"), node),
        (
            "GET allocation (operator, no secret)",
            "/apis/meridian.dev/v1/namespaces/finance/allocations/bench-0".to_owned(),
            operator,
        ),
    ];
    println!("| request | n | p50 | p99 | max |\n| --- | --- | --- | --- | --- |");
    for (what, path, token) in runs {
        let url = format!("{}{path}", r.url);
        for _ in 0..100 {
            let resp = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("warm-up");
            assert_eq!(resp.status().as_u16(), 200, "{what}");
            resp.bytes().await.expect("body");
        }
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            let started = std::time::Instant::now();
            let resp = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            resp.bytes().await.expect("body");
            took.push(started.elapsed());
            assert_eq!(status, 200, "{what}");
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        println!(
            "| {what} | {n} | {:.0} µs | {:.0} µs | {:.0} µs |",
            at(0.50).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
            took[took.len() - 1].as_secs_f64() * 1e6
        );
    }
}
