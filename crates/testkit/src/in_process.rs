//! A server in the test's own process: `Server::bind` on loopback port 0 over a temporary
//! data directory, `Server::run` on a task, a typed client with the bootstrap admin token,
//! and shutdown when dropped. Tests reach its [`AppState`] to drive controllers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use client::Client;
use serde_json::json;
use server::{AppState, Server, ServerConfig, ServerInfo, TlsMode};
use tokio_util::sync::CancellationToken;

/// A running in-process server; stopped (its task cancelled) on drop.
pub struct TestServer {
    /// The admin's client.
    pub client: Client,
    pub url: String,
    /// The bootstrap admin token.
    pub token: String,
    pub info: ServerInfo,
    pub state: AppState,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// How to start a [`TestServer`] beyond its [`ServerConfig`].
pub struct Builder {
    config: ServerConfig,
    listen: SocketAddr,
    data_dir: Option<PathBuf>,
    store: Option<Arc<dyn store::Store>>,
    tls: Option<TlsMode>,
}

impl Builder {
    /// Listen on `addr` instead of `127.0.0.1:0` (`0.0.0.0:0` is beyond loopback: TLS).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Keep the data in `dir` (not removed afterwards) instead of a temporary directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Serve with `tls` as configured (e.g. `TlsMode::Generated` on loopback); without
    /// this, a loopback test server serves plain HTTP (`TlsMode::InsecureHttp`, set
    /// explicitly in `start`) and one beyond loopback the config's mode.
    pub fn tls(mut self, tls: TlsMode) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serve `store` (`Server::bind_with_store`) instead of opening one in the data dir.
    pub fn store(mut self, store: Arc<dyn store::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Binds, starts serving on a task, and connects the admin's client.
    pub async fn start(self) -> TestServer {
        let (tmp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = tempfile::tempdir().expect("a temporary data directory");
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        // Plain HTTP on loopback unless asked otherwise: tests speak raw HTTP on sockets
        // and pay no handshake per connection.
        let tls = self.tls.unwrap_or(if self.listen.ip().is_loopback() {
            TlsMode::InsecureHttp
        } else {
            self.config.tls.clone()
        });
        let config = ServerConfig {
            listen: self.listen,
            data_dir: data_dir.clone(),
            tls,
            ..self.config
        };
        let server = match self.store {
            Some(store) => Server::bind_with_store(config, store).await,
            None => Server::bind(config).await,
        }
        .unwrap_or_else(|e| panic!("the test server does not bind: {e:#}"));
        let info = server.info().clone();
        let state = server.state().clone();
        // A fresh data directory makes an admin token; a restarted server's is in its file.
        let token = info.new_admin_token.clone().unwrap_or_else(|| {
            std::fs::read_to_string(&info.admin_token_file)
                .unwrap_or_else(|e| panic!("{}: {e}", info.admin_token_file.display()))
                .trim()
                .to_owned()
        });
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(server.run(async move { cancelled.cancelled().await }));
        // The election writes at start (the server's identity, the leader key, the term's
        // audit entry): wait for them, so that a test's first reads see a settled store.
        // A server that does not lead (another one on the same etcd prefix) is not waited
        // for beyond a few seconds.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while state.leadership.term().is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let client = client_for(&info, &token);
        TestServer {
            client,
            url: info.url.clone(),
            token,
            info,
            state,
            stop,
            task: Some(task),
            data_dir,
            _tmp: tmp,
        }
    }
}

fn client_for(info: &ServerInfo, token: &str) -> Client {
    let ca = info
        .ca_file
        .as_ref()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    Client::new(&info.url, token, ca.as_deref()).expect("a client for the test server")
}

impl TestServer {
    /// A server without its own scheduler, so that tests run passes themselves and no
    /// scheduler writes show up in the watches they count.
    pub async fn start() -> Self {
        Self::start_with(ServerConfig {
            scheduler: None,
            ..ServerConfig::default()
        })
        .await
    }

    /// A server with `config`; its listen address and data directory are the test's.
    pub async fn start_with(config: ServerConfig) -> Self {
        Self::builder(config).start().await
    }

    /// For a listen address, data directory or store of the test's choosing.
    pub fn builder(config: ServerConfig) -> Builder {
        Builder {
            config,
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            data_dir: None,
            store: None,
            tls: None,
        }
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.info.local_addr
    }

    /// A client with another token.
    pub fn client_as(&self, token: &str) -> Client {
        client_for(&self.info, token)
    }

    /// A new token with `role`, limited to `project` if given (through the admin API).
    pub async fn new_token(&self, role: &str, project: Option<&str>) -> String {
        let resp = self
            .client
            .request_json(
                client::Method::POST,
                "/meridian/v1/tokens",
                Some(&json!({"role": role, "project": project})),
            )
            .await
            .unwrap_or_else(|e| panic!("a {role} token: {e}"));
        resp["token"].as_str().expect("the new token").to_owned()
    }

    /// Shuts down and returns how `Server::run` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().expect("running");
        task.await.expect("the server task does not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
