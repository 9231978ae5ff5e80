//! Meridian's API server: the Kubernetes-dialect HTTP API over the revisioned store.
//!
//! Start-up runs in a testable order: [`ServerConfig`] (no side effects) →
//! [`Server::bind`] (opens the store, bootstraps the first admin token and the `default`
//! project, prepares TLS, binds the socket) → [`Server::run`] (serves until the shutdown
//! future resolves, then drains connections and closes watches).
//!
//! Modules: `app` (state, router, middleware), `objects` (resource CRUD), `watch`,
//! `discovery` (discovery and OpenAPI), `admin` (tokens, audit log), `auth` (roles,
//! project scope, who writes allocations), `node_restriction` (what a node credential may
//! write), `registry` (key layout and the audited write path), `events` (the event
//! recorder) and `core_events` (events as core `/api/v1` events), `conn` (connection
//! timeouts and cap), `metrics`, `tls`, `error`. The trust model is `docs/security.md`.

// stderr may be a file on a full disk, where `eprintln!` panics: log through `tracing`,
// whose writer drops what it cannot write.
#![deny(clippy::print_stderr, clippy::print_stdout)]

// The public surface is deliberate: what `meridian` (serve.rs, args.rs, the audit
// command) and the integration tests use. Everything else is private.
//
// - `audit`: `verify_offline`, for `meridian audit verify --data-dir`.
// - `registry`: `Registry`, `Mutation`, key layout and encoding; the tests seed objects
//   the API refuses (an Allocation) through `Registry::commit`, as the scheduler does.
// - `scheduler`: `SchedulerOptions`; `pass`, `pass_with`, `PassCache` and `principal` for the
//   tests, which drive passes themselves.
// - `tls`: `SubjectName` (`--tls-san`); `fingerprint`, `pem_fingerprint` and
//   `parse_fingerprint` (the CA check of `meridian login`); `hostname` and `host_addresses`
//   for the tests.
mod admin;
mod admission_audit;
mod app;
/// The commit this binary was built from (`MERIDIAN_COMMIT` at build time, else `git
/// rev-parse HEAD`, else `unknown`; see `build.rs`).
pub const COMMIT: &str = env!("MERIDIAN_COMMIT");

pub mod audit;
mod audit_thread;
mod auth;
mod backup;
mod compaction;
mod conn;
mod controller;
mod core_endpoints;
mod core_events;
mod discovery;
mod drain;
mod error;
mod events;
mod field_validation;
mod informer;
pub mod leader;
mod logs;
mod metrics;
mod namespaces;
mod node_restriction;
mod nodes;
mod objects;
mod openapi_v2;
mod periodic;
mod placement_api;
mod policies;
mod policy_api;
mod queue_api;
mod queues;
pub mod registry;
mod residency;
mod rollout;
pub mod scheduler;
mod secrets;
mod tables;
pub mod tls;
mod ui;
mod watch;
mod watch_cache;
mod watch_hub;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use store::{EventKind, Store};

pub use app::{AppState, CA_PATH, Limits};
pub use conn::ConnOptions;
pub use events::{EventOptions, Recorder};
pub use nodes::NodeOptions;
pub use policies::PolicyOptions;
pub use scheduler::SchedulerOptions;

use crate::auth::{TOKEN_PREFIX, TokenCache, TokenRecord};
use crate::controller::Report;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// File (in the data directory) holding the first admin token, mode 0600 (read by
/// `meridian bench` to reach a server it started).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// SQLite database file inside the data directory (the disk-full test opens it itself).
pub const DB_FILE: &str = "meridian.db";

/// How to serve: TLS always, unless plain HTTP is asked for explicitly on loopback.
#[derive(Clone, Debug, Default)]
pub enum TlsMode {
    /// TLS with a CA generated in the data directory (`ca.crt`, kept) and a server
    /// certificate it signs (see [`tls::ensure_generated`]). The default.
    #[default]
    Generated,
    /// TLS with these PEM files (the operator's certificate and key).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP (`--insecure-http`), for tests and benchmarks: refused unless the
    /// listen address is loopback.
    InsecureHttp,
}

/// Where the store lives (`--store`).
#[derive(Clone, Debug, Default)]
pub enum StoreBackend {
    /// SQLite in the data directory: the embedded default.
    #[default]
    Sqlite,
    /// An etcd cluster, shared by every server of a deployment.
    Etcd(EtcdConfig),
}

/// Whether lists are served from the server's copy of the objects (`--list-cache`, see
/// [`watch_hub`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListCache {
    /// On with etcd, where a list would otherwise range over the cluster; off with SQLite,
    /// whose reads are local and whose pages the OS caches.
    #[default]
    Auto,
    On,
    Off,
}

impl ListCache {
    /// Whether the cache is kept with `store`.
    pub fn enabled(self, store: &StoreBackend) -> bool {
        match self {
            ListCache::Auto => matches!(store, StoreBackend::Etcd(_)),
            ListCache::On => true,
            ListCache::Off => false,
        }
    }
}

/// Key prefix of a deployment in etcd unless `--etcd-prefix` says otherwise.
pub const DEFAULT_ETCD_PREFIX: &str = "/meridian";

/// How to reach the etcd cluster (`--store etcd://…`, `--etcd-*`). Holds paths only; the
/// files are read when the server binds.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client endpoints, `HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Key prefix of this deployment in etcd.
    pub prefix: String,
    /// CA bundle (PEM) of the etcd members' certificates: TLS to etcd when set.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for clusters that authenticate clients.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Most operations in one etcd transaction: the members' `--max-txn-ops`
    /// (`--etcd-max-txn-ops`, default 128). Batched controller writes split to fit it.
    pub max_txn_ops: usize,
}

/// etcd's default `--max-txn-ops`, the default of `--etcd-max-txn-ops`.
pub const DEFAULT_ETCD_MAX_TXN_OPS: usize = 128;

impl EtcdConfig {
    /// A configuration for `endpoints` with the default prefix and no TLS.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: DEFAULT_ETCD_PREFIX.to_owned(),
            ca: None,
            cert: None,
            key: None,
            max_txn_ops: DEFAULT_ETCD_MAX_TXN_OPS,
        }
    }

    /// The store options, reading the TLS files.
    #[cfg(feature = "etcd")]
    fn options(&self) -> Result<store::etcd::EtcdOptions> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the etcd {what} {}", path.display()))
        };
        let tls = match (&self.ca, &self.cert, &self.key) {
            (None, None, None) => None,
            (ca, cert, key) => {
                let identity = match (cert, key) {
                    (Some(cert), Some(key)) => Some((
                        read(cert, "client certificate (--etcd-cert)")?,
                        read(key, "client key (--etcd-key)")?,
                    )),
                    (None, None) => None,
                    _ => bail!("--etcd-cert and --etcd-key go together"),
                };
                Some(store::etcd::EtcdTls {
                    ca_pem: ca
                        .as_ref()
                        .map(|ca| read(ca, "CA (--etcd-ca)"))
                        .transpose()?,
                    identity,
                })
            }
        };
        let mut options = store::etcd::EtcdOptions::new(self.endpoints.clone());
        options.prefix = self.prefix.clone();
        options.tls = tls;
        options.max_txn_ops = self.max_txn_ops;
        Ok(options)
    }
}

/// Server configuration. Building it has no side effects.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The store: SQLite in `data_dir` (default) or an etcd cluster. The data directory
    /// still holds the TLS CA, the secrets key and the admin token file.
    pub store: StoreBackend,
    pub tls: TlsMode,
    /// fsync every commit (group-committed). Off only for throwaway demos and benchmarks.
    pub fsync: bool,
    pub limits: Limits,
    /// History older than this is compacted; watches cannot resume from before it.
    pub compaction_interval: Duration,
    /// Run the scheduler controller in this server (`None`: do not place anything).
    pub scheduler: Option<scheduler::SchedulerOptions>,
    /// Admission and the continuous audit.
    pub policy: policies::PolicyOptions,
    /// Node liveness (lease TTL).
    pub nodes: nodes::NodeOptions,
    /// Header read and idle timeouts, connection cap.
    pub connections: conn::ConnOptions,
    /// Extra names (DNS or IP) for the generated server certificate (`--tls-san`).
    pub tls_san: Vec<tls::SubjectName>,
    /// The event recorder: TTL (default 1 h), dedup and rate limits.
    pub events: events::EventOptions,
    /// This server's name among the replicas of one store (`--server-name`; default
    /// the host name and the port it listens on).
    pub name: Option<String>,
    /// The leader election's session lease (`--leader-lease`).
    pub election: leader::ElectionOptions,
    /// Whether lists are served from the server's copy of the objects (`--list-cache`).
    pub list_cache: ListCache,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            data_dir: PathBuf::from("./meridian-data"),
            store: StoreBackend::Sqlite,
            tls: TlsMode::Generated,
            fsync: true,
            limits: Limits::default(),
            compaction_interval: Duration::from_secs(5 * 60),
            scheduler: Some(scheduler::SchedulerOptions::default()),
            policy: policies::PolicyOptions::default(),
            nodes: nodes::NodeOptions::default(),
            connections: conn::ConnOptions::default(),
            tls_san: Vec::new(),
            events: events::EventOptions::default(),
            name: None,
            election: leader::ElectionOptions::default(),
            list_cache: ListCache::default(),
        }
    }
}

/// What a started server tells its caller.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// Base URL clients use (`http://…` or `https://…`).
    pub url: String,
    pub local_addr: SocketAddr,
    /// CA certificate clients must trust, when TLS uses a generated CA.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of that CA (`sha256:AB:CD:…`, see [`tls::fingerprint`]), which
    /// `meridian login` shows for the user to compare.
    pub ca_fingerprint: Option<String>,
    /// The admin token, only when this start created it (print it once).
    pub new_admin_token: Option<String>,
    pub admin_token_file: PathBuf,
}

/// A bound, ready server.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    info: ServerInfo,
    token_sync: tokio::task::JoinHandle<()>,
    compaction_interval: Duration,
    scheduler: Option<scheduler::SchedulerOptions>,
    connections: Arc<conn::Connections>,
    identity: leader::ServerIdentity,
    election: leader::ElectionOptions,
}

impl Server {
    /// Open the store (SQLite in `config.data_dir`, or etcd), bootstrap, prepare TLS and
    /// bind.
    pub async fn bind(config: ServerConfig) -> Result<Server> {
        // Refused before anything is created.
        if matches!(config.tls, TlsMode::InsecureHttp) && !config.listen.ip().is_loopback() {
            return Err(insecure_beyond_loopback(&config));
        }
        prepare_data_dir(&config.data_dir)?;
        let store: Arc<dyn Store> = match &config.store {
            StoreBackend::Sqlite => store::sqlite::SqliteStore::open(
                &config.data_dir.join(DB_FILE),
                store::sqlite::SqliteOptions {
                    fsync: config.fsync,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?,
            #[cfg(feature = "etcd")]
            StoreBackend::Etcd(etcd) => store::etcd::EtcdStore::open(etcd.options()?)
                .await
                .with_context(|| {
                    format!(
                        "cannot open the etcd store (--store etcd://{}, prefix {})",
                        etcd.endpoints.join(","),
                        etcd.prefix
                    )
                })?,
            #[cfg(not(feature = "etcd"))]
            StoreBackend::Etcd(_) => bail!(
                "this meridian was built without the etcd backend (--store etcd://…): build it \
                 with `cargo build --release --features etcd` (which needs protoc: \
                 apt-get install protobuf-compiler libprotobuf-dev), or use the .deb or image, \
                 which have it"
            ),
        };
        Self::bind_with_store(config, store).await
    }

    /// Like [`Server::bind`] with a store the caller opened (another backend, tests).
    pub async fn bind_with_store(config: ServerConfig, store: Arc<dyn Store>) -> Result<Server> {
        let tls = prepare_tls(&config)?;
        let metrics = Metrics::new();
        let file_limit = conn::raise_nofile_limit();
        let nofile = file_limit.map(|l| l.now);
        let max_connections = match (config.connections.max_connections, nofile) {
            (Some(0), _) => bail!("--max-connections must be at least 1"),
            (Some(max), _) => max,
            (None, Some(nofile)) => conn::default_max_connections(nofile),
            (None, None) => 8192,
        };
        if let Some(nofile) = nofile
            && max_connections as u64 >= nofile
        {
            tracing::warn!(
                max_connections,
                nofile,
                "--max-connections is not below the open-file limit: at the cap, accepting \
                 fails with \"Too many open files\"; lower it or raise the limit (ulimit -n)"
            );
        }
        tracing::info!(
            open_file_limit = nofile,
            raised_from = file_limit.filter(|l| l.was != l.now).map(|l| l.was),
            max_connections,
            header_read_timeout = ?config.connections.header_read_timeout,
            idle_timeout = ?config.connections.idle_timeout,
            "connection limits"
        );
        let connections =
            conn::Connections::new(config.connections.clone(), max_connections, metrics.clone());
        let keyring = secrets::Keyring::load_or_create(&config.data_dir).with_context(|| {
            format!(
                "cannot load the secrets key in {} (--data-dir)",
                config.data_dir.display()
            )
        })?;
        let registry = Registry::new(store, metrics.clone());
        let policies = policies::PolicyEngine::load(registry.reads(), config.policy.clone())
            .await
            .context("cannot load the policies")?;
        let shutdown = CancellationToken::new();
        let events = events::Recorder::start(
            registry.clone(),
            metrics.clone(),
            config.events.clone(),
            shutdown.clone(),
        );
        let watch_hub = watch_hub::WatchHub::new(
            Arc::clone(registry.reads()),
            metrics.clone(),
            watch_hub::HubLimits {
                objects: config.list_cache.enabled(&config.store),
                ..watch_hub::HubLimits::default()
            },
        );
        let state = AppState {
            events,
            policies,
            nodes: nodes::leases(config.nodes.clone()),
            registry,
            tokens: TokenCache::default(),
            metrics,
            limits: Arc::new(config.limits.clone()),
            shutdown,
            watch_cache: Arc::new(watch_cache::EventCache::default()),
            watch_hub,
            secrets: Arc::new(secrets::Secrets::new(keyring)),
            ca_pem: tls.ca_pem.clone(),
            leadership: Arc::default(),
            data_dir: Arc::new(config.data_dir.clone()),
            backup_lock: Arc::default(),
            log_sessions: Arc::new(logs::LogSessions::new(logs::SessionLimits::default())),
            relay_http: Arc::default(),
            tls: tls.acceptor.is_some(),
        };
        let token_sync = start_token_sync(&state).await?;

        let admin_token_file = config.data_dir.join(ADMIN_TOKEN_FILE);
        let new_admin_token = if admin::any_token(&state).await.map_err(api_error)? {
            None
        } else {
            let token = admin::bootstrap_admin(&state).await.map_err(api_error)?;
            tls::write_private(&admin_token_file, format!("{token}\n").as_bytes())?;
            Some(token)
        };
        admin::ensure_default_project(&state)
            .await
            .map_err(api_error)?;

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
        let local_addr = listener.local_addr()?;
        let host = if local_addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            match local_addr.ip() {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            }
        };
        let scheme = if tls.acceptor.is_some() {
            "https"
        } else {
            "http"
        };
        let info = ServerInfo {
            url: format!("{scheme}://{host}:{}", local_addr.port()),
            local_addr,
            ca_file: tls.ca_file,
            ca_fingerprint: tls.ca_fingerprint,
            new_admin_token,
            admin_token_file,
        };
        let identity = leader::ServerIdentity {
            name: config.name.clone().unwrap_or_else(|| {
                let host = tls::hostname().unwrap_or_else(|| "meridian".to_owned());
                format!("{host}:{}", local_addr.port())
            }),
            url: info.url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: COMMIT.to_owned(),
            start_time: registry::now_rfc3339(),
        };
        Ok(Server {
            state,
            listener,
            tls: tls.acceptor,
            info,
            token_sync,
            compaction_interval: config.compaction_interval,
            scheduler: config.scheduler.clone(),
            connections,
            identity,
            election: config.election.clone(),
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Shared state (for in-process controllers and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves, then stop accepting, end watches and drain
    /// in-flight requests (at most 10 s).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let Server {
            state,
            listener,
            tls,
            info,
            token_sync,
            compaction_interval,
            scheduler,
            connections,
            identity,
            election,
        } = self;
        let policy_controller = tokio::spawn(policies::run(state.clone()));
        let watch_hub = tokio::spawn(Arc::clone(&state.watch_hub).run(state.shutdown.clone()));
        let log_mirror = tokio::spawn(logs::mirror(state.clone(), state.log_sessions.clone()));
        // The controllers that write run on the leader only, on a fenced state.
        let controllers: leader::Controllers = Box::new(move |fenced: AppState| {
            let mut tasks = vec![
                tokio::spawn(compaction::run(fenced.clone(), compaction_interval)),
                tokio::spawn(nodes::run_lifecycle(fenced.clone())),
            ];
            if let Some(options) = scheduler.clone() {
                tasks.push(tokio::spawn(scheduler::run(fenced, options)));
            }
            tasks
        });
        let election = tokio::spawn(leader::run(
            state.clone(),
            identity,
            election,
            state.leadership.clone(),
            controllers,
        ));
        let router = app::router(state.clone());
        let tasks = TaskTracker::new();
        tracing::info!(url = %info.url, "serving");
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            tasks.spawn(connections.clone().serve(
                stream,
                peer,
                tls.clone(),
                router.clone(),
                state.shutdown.clone(),
            ));
        }
        tracing::info!("shutting down: closing watches and draining requests");
        state.shutdown.cancel();
        drop(listener);
        tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within 10 s");
        }
        token_sync.abort();
        policy_controller.abort();
        watch_hub.abort();
        log_mirror.abort();
        // The election task stops its controllers and resigns (revokes its session lease)
        // so that another replica leads at once.
        if tokio::time::timeout(Duration::from_secs(5), election)
            .await
            .is_err()
        {
            tracing::warn!("resigning the lead took more than 5 s");
        }
        Ok(())
    }
}

/// The refusal of plain HTTP beyond loopback.
fn insecure_beyond_loopback(config: &ServerConfig) -> anyhow::Error {
    anyhow::anyhow!(
        "--insecure-http serves plain HTTP and is allowed only on a loopback address \
         (127.0.0.1, ::1), not on --listen {}: drop --insecure-http (TLS with a generated CA \
         is the default) or listen on 127.0.0.1",
        config.listen
    )
}

/// How a bound server serves: the TLS acceptor (none for `--insecure-http`), and the
/// generated CA with its file and fingerprint.
struct Tls {
    acceptor: Option<TlsAcceptor>,
    ca_file: Option<PathBuf>,
    ca_pem: Option<Arc<[u8]>>,
    ca_fingerprint: Option<String>,
}

/// TLS as `config.tls` asks: the generated CA and certificate (made or renewed in the
/// data directory) or the operator's files; plain HTTP only on a loopback address.
fn prepare_tls(config: &ServerConfig) -> Result<Tls> {
    let ip = config.listen.ip();
    let material = match &config.tls {
        TlsMode::InsecureHttp if ip.is_loopback() => {
            tracing::warn!(
                listen = %config.listen,
                "serving plain HTTP (--insecure-http): for tests and benchmarks on this machine only"
            );
            if !config.tls_san.is_empty() {
                tracing::warn!("--tls-san is ignored with --insecure-http");
            }
            return Ok(Tls {
                acceptor: None,
                ca_file: None,
                ca_pem: None,
                ca_fingerprint: None,
            });
        }
        TlsMode::InsecureHttp => return Err(insecure_beyond_loopback(config)),
        TlsMode::Generated => {
            let host = tls::hostname();
            let addresses = if ip.is_unspecified() {
                tls::host_addresses(ip, host.as_deref())
            } else {
                Vec::new()
            };
            let names = tls::subject_names(ip, &config.tls_san, host.as_deref(), &addresses);
            tls::ensure_generated(&config.data_dir, &names)?
        }
        TlsMode::Files { cert, key } => {
            if !config.tls_san.is_empty() {
                tracing::warn!(
                    "--tls-san applies only to the generated certificate, not to --tls-cert; \
                     it is ignored"
                );
            }
            tls::TlsMaterial {
                cert: cert.clone(),
                key: key.clone(),
                ca: None,
            }
        }
    };
    let acceptor = TlsAcceptor::from(tls::server_config(&material)?);
    // Absolute, as clients are told to use it from anywhere.
    let ca_file = material
        .ca
        .map(|path| std::fs::canonicalize(&path).unwrap_or(path));
    let (ca_pem, ca_fingerprint) = match &ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the generated CA {}", path.display()))?;
            let fingerprint = tls::pem_fingerprint(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            tracing::info!(
                ca = %path.display(),
                fingerprint = %fingerprint,
                "TLS with the generated CA: clients trust this file, or check this fingerprint \
                 at `meridian login`"
            );
            (Some(Arc::from(pem)), Some(fingerprint))
        }
        None => {
            tracing::info!(cert = %material.cert.display(), "TLS with the operator's certificate");
            (None, None)
        }
    };
    Ok(Tls {
        acceptor: Some(acceptor),
        ca_file,
        ca_pem,
        ca_fingerprint,
    })
}

/// Create the data directory owner-only (0700), tighten an existing wider one, and make
/// the database files owner-only (0600) before SQLite opens them: SQLite gives `-wal` and
/// `-shm` the mode of the database file, and an empty file is a new database.
fn prepare_data_dir(dir: &std::path::Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        restrict(dir, 0o700, "--data-dir")?;
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let path = dir.join(format!("{DB_FILE}{suffix}"));
            if path.exists() {
                restrict(&path, 0o600, "the database file")?;
            } else if matches!(suffix, "" | ".lock") {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Remove the permissions `path` has beyond `mode`, with a warning when it had any.
#[cfg(unix)]
fn restrict(path: &std::path::Path, mode: u32, what: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if current & !mode != 0 {
        tracing::warn!(
            path = %path.display(),
            "{what} was open to other users (mode {current:o}); setting {:o}",
            current & mode
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))
            .with_context(|| {
                format!(
                    "cannot restrict {} to mode {:o}; chmod it",
                    path.display(),
                    mode
                )
            })?;
    }
    Ok(())
}

fn api_error(e: error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Load every token record and keep the cache current with a watch, so that tokens
/// created or revoked through any server replica take effect everywhere.
async fn start_token_sync(state: &AppState) -> Result<tokio::task::JoinHandle<()>> {
    let revision = load_tokens(state).await?;
    let state = state.clone();
    Ok(tokio::spawn(async move {
        let mut from = revision + 1;
        loop {
            match state.store().watch(TOKEN_PREFIX, from).await {
                Ok(mut events) => {
                    while let Some(event) = events.next().await {
                        let Ok(event) = event else { break };
                        from = event.kv.mod_revision + 1;
                        let Some(digest) = event.kv.key.strip_prefix(TOKEN_PREFIX) else {
                            continue;
                        };
                        match event.kind {
                            EventKind::Put => {
                                if let Ok(r) =
                                    serde_json::from_slice::<TokenRecord>(&event.kv.value)
                                {
                                    state.tokens.insert(digest.to_owned(), r);
                                }
                            }
                            EventKind::Delete => state.tokens.remove(digest),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %Report(&e), "token watch failed; reloading tokens");
                    match load_tokens(&state).await {
                        Ok(rev) => from = rev + 1,
                        Err(e) => tracing::error!(error = format!("{e:#}"), "cannot reload tokens"),
                    }
                }
            }
            if state.shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

async fn load_tokens(state: &AppState) -> Result<i64> {
    let (records, revision) = state.store().tokens().await?;
    for (digest, record) in records {
        state.tokens.insert(digest, record);
    }
    Ok(revision)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
