//! Shared setup of the server's integration tests: a real server on loopback with a
//! real SQLite store, its state for driving controllers, and the example estate.
#![allow(dead_code)]

use client::Client;
use server::{AppState, Server, ServerConfig};

pub struct Running {
    pub state: AppState,
    pub client: Client,
    pub url: String,
    pub token: String,
    stop: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A server without its own scheduler, so tests drive passes themselves.
pub async fn start() -> Running {
    start_with(ServerConfig {
        scheduler: None,
        ..ServerConfig::default()
    })
    .await
}

/// A server with `config` (its listen address and data directory are the test's).
pub async fn start_with(config: ServerConfig) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..config
    })
    .await
    .expect("bind");
    let info = server.info().clone();
    let state = server.state().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(server.run(async move { s.cancelled().await }));
    let token = info.new_admin_token.clone().expect("token");
    let client = Client::new(&info.url, &token, None).expect("client");
    Running {
        state,
        client,
        url: info.url,
        token,
        stop,
        _dir: dir,
    }
}

pub async fn load_examples(c: &Client) {
    let mut manifests = Vec::new();
    for (file, text) in api::examples::FILES {
        manifests.extend(api::parse_manifests(file, text).expect("examples parse"));
    }
    let rank = |k: &str| {
        ["Project", "Site", "Node", "Workload"]
            .iter()
            .position(|x| *x == k)
    };
    manifests.sort_by_key(|m| rank(m.object.kind_info().kind));
    for m in manifests {
        let info = m.object.kind_info();
        let ns = info
            .namespaced()
            .then(|| m.object.namespace().unwrap_or("default").to_owned());
        c.apply(info, ns.as_deref(), &m.object.to_value(), false)
            .await
            .expect("apply");
    }
}

pub fn kind(name: &str) -> &'static api::KindInfo {
    api::lookup_kind(name).expect("kind")
}

/// Store an Allocation as the scheduler would (the API refuses allocations written by
/// hand): for tests that need one on a given node without running a placement pass.
pub async fn seed_allocation(state: &AppState, value: &serde_json::Value) {
    use server::registry::{Mutation, Registry, encode, object_key};
    let info = kind("Allocation");
    let ns = value["metadata"]["namespace"].as_str().expect("namespace");
    let name = value["metadata"]["name"].as_str().expect("name");
    let mut value = value.clone();
    value["metadata"]["uid"] = serde_json::json!(format!("uid-{name}"));
    let value = api::validate::object_from_value_as(info, value)
        .expect("a valid allocation")
        .to_value();
    let key = object_key(info, Some(ns), name);
    let bytes = encode(&value);
    let audit = Registry::audit_record(
        &server::scheduler::principal(),
        "create",
        info,
        Some(ns),
        name,
        Some(&bytes),
    );
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![store::Compare::Absent(key.clone())],
            vec![store::Op::put(key, bytes)],
            audit,
        ))
        .await
        .expect("commit");
    assert!(resp.succeeded, "allocation {name} exists already");
}
