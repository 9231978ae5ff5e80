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
