//! The agent's runtime: join once, register the host's facts on its Node, heartbeat, and
//! run the allocations placed on the node.
//!
//! - **Credential**: a join token is exchanged once for a node credential, kept in
//!   `DATA_DIR/credential.json` (mode 0600); restarts reuse it.
//! - **Liveness**: a heartbeat every `heartbeat` interval renews the node's lease; the
//!   server marks the node Lost when it expires.
//! - **Work**: the allocations of this node (the only ones its credential can see) are
//!   listed and watched; a reconcile loop starts what should run, stops what should not
//!   (SIGTERM to the process group, grace period, SIGKILL), restarts per policy
//!   (`always`, `on-failure` with exponential backoff and a limit, `never`) and reports
//!   each allocation's status.
//! - **Drivers**: each task runs with the driver its `task.driver` names ([`crate::driver`]:
//!   `exec`, `qemu`, `container`), if the node offers it; otherwise the allocation fails
//!   with a message saying what the node offers.
//! - **Health**: a task with `task.health` is checked while it runs ([`crate::health`]);
//!   the outcome is in the allocation's status (`health`, condition `Healthy`), and
//!   `failureThreshold` failures in a row stop the task and restart it per its policy, as
//!   a failed exit.
//! - **Restarts of the agent**: what runs is recorded in `DATA_DIR/state.json` (the
//!   driver, pid and the process's start time, so a reused pid is never mistaken for a
//!   task; a container's name). A restarted agent adopts the tasks of allocations still
//!   assigned to it and stops the others, so it never leaves an orphan and never starts a
//!   second copy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use api::Allocation;
use api::EventType;
use api::kinds::{
    AllocationPhase, AllocationSpec, AllocationStatus, Condition, ConditionStatus, DesiredState,
    HealthState, HealthStatus, RestartPolicy, WorkloadType,
};
use client::{Client, ListOptions, Method};

use crate::driver::{self, Drivers, Handle, Slot};
use crate::health;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    /// Needed on the first start only.
    pub join_token: Option<String>,
    pub site: Option<String>,
    /// The node's name (default: the hostname).
    pub name: String,
    pub data_dir: PathBuf,
    /// PEM of the server's CA, when it uses a private one.
    pub ca_pem: Option<Vec<u8>>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<api::kinds::Taint>,
    pub heartbeat: Duration,
    pub facts_interval: Duration,
    /// SIGTERM → SIGKILL.
    pub grace: Duration,
    /// Bytes per log file before it rotates.
    pub log_limit: u64,
    /// QEMU acceleration; `None`: `MERIDIAN_QEMU_ACCEL` (`kvm`, `tcg`, `auto`), else auto.
    pub qemu_accel: Option<driver::qemu::AccelSetting>,
    /// Host volumes offered to tasks (`--volume NAME=PATH[:ro]`), reported in the Node's
    /// status.
    pub volumes: BTreeMap<String, crate::view::NodeVolume>,
    /// The address other nodes reach this one at (`--advertise-address`); `None`: the
    /// local address of the route to the server, else of the default route.
    pub advertise_address: Option<String>,
    /// The `meridian` binary that launches `exec` tasks; `None`: this executable.
    pub launcher: Option<PathBuf>,
}

impl AgentConfig {
    pub fn new(server: &str, name: &str, data_dir: &Path) -> Self {
        AgentConfig {
            server: server.to_owned(),
            join_token: None,
            site: None,
            name: name.to_owned(),
            data_dir: data_dir.to_path_buf(),
            ca_pem: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            heartbeat: Duration::from_secs(2),
            facts_interval: Duration::from_secs(300),
            grace: Duration::from_secs(10),
            log_limit: 10 * 1024 * 1024,
            qemu_accel: None,
            volumes: BTreeMap::new(),
            advertise_address: None,
            launcher: None,
        }
    }

    /// The QEMU acceleration setting: the configuration's, else `MERIDIAN_QEMU_ACCEL`.
    fn qemu_accel(&self) -> Result<driver::qemu::AccelSetting> {
        match (self.qemu_accel, std::env::var("MERIDIAN_QEMU_ACCEL")) {
            (Some(a), _) => Ok(a),
            (None, Ok(v)) => v.parse().map_err(anyhow::Error::msg),
            (None, Err(_)) => Ok(driver::qemu::AccelSetting::Auto),
        }
    }
}

/// The node credential, as stored in the data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credential {
    server: String,
    node: String,
    site: String,
    token: String,
}

/// What runs, across agent restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// `namespace/name` → task.
    tasks: BTreeMap<String, TaskRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskRecord {
    uid: String,
    restarts: u32,
    /// What the driver needs to find the task again (driver, pid, start time...).
    #[serde(flatten)]
    task: driver::Record,
}

const CREDENTIAL_FILE: &str = "credential.json";
const STATE_FILE: &str = "state.json";

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Loads the credential, or joins with the join token and stores it.
async fn credential(config: &AgentConfig) -> Result<Credential> {
    let path = config.data_dir.join(CREDENTIAL_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let c: Credential = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt; remove it and join again", path.display()))?;
        if c.node != config.name {
            bail!(
                "{} belongs to node {:?}, not {:?}: use --name {} or another --data-dir",
                path.display(),
                c.node,
                config.name,
                c.node
            );
        }
        return Ok(c);
    }
    let Some(join_token) = &config.join_token else {
        bail!(
            "no credential in {} and no --join-token: create one with `meridian node join-token create --site SITE`",
            config.data_dir.display()
        );
    };
    let joiner = Client::new(&config.server, join_token, config.ca_pem.as_deref())?;
    let resp = joiner
        .request_json(
            Method::POST,
            "/meridian/v1/nodes/join",
            Some(&json!({"node": config.name, "site": config.site})),
        )
        .await
        .context("joining the server")?;
    let c = Credential {
        server: config.server.clone(),
        node: config.name.clone(),
        site: resp["site"].as_str().unwrap_or_default().to_owned(),
        token: resp["token"]
            .as_str()
            .context("the join answer has no credential")?
            .to_owned(),
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    write_private(&path, &serde_json::to_vec_pretty(&c)?)?;
    tracing::info!(
        "joined site {} as node {}; credential stored",
        c.site,
        c.node
    );
    Ok(c)
}

/// Registers or refreshes the Node from the host's facts.
async fn register(client: &Client, config: &AgentConfig, site: &str) -> Result<()> {
    let options = crate::facts::Options::for_this_host(config.data_dir.clone())?;
    // Probing runs commands (lsblk, nvidia-smi…): off the async threads.
    let facts = tokio::task::spawn_blocking(move || {
        crate::facts::discover(&crate::probe::HostProbe::default(), &options)
    })
    .await?;
    let mut spec = serde_json::to_value(crate::facts::node_spec(&facts, site))?;
    if !config.taints.is_empty() {
        spec["taints"] = serde_json::to_value(&config.taints)?;
    }
    let node_kind = api::kinds::NODE;
    match client.get(node_kind, None, &config.name).await {
        Err(e) if e.is_not_found() => {
            let node = json!({
                "apiVersion": api::API_VERSION, "kind": api::kinds::NODE.kind,
                "metadata": {"name": config.name, "labels": config.labels},
                "spec": spec,
            });
            client.create(node_kind, None, &node, false).await?;
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {
            // A merge of the facts only: labels, taints, cordoning and the site are an
            // administrator's once the Node exists (the server refuses a node credential
            // that changes them, as Kubernetes' NodeRestriction does); `--labels` and
            // `--taints` apply when the agent registers the Node.
            if let Some(spec) = spec.as_object_mut() {
                spec.remove("taints");
            }
            let patch = json!({"spec": spec});
            client
                .patch(
                    node_kind,
                    None,
                    &config.name,
                    client::PatchType::Merge,
                    &patch,
                    false,
                )
                .await?;
        }
    }
    let mut node = client.get(node_kind, None, &config.name).await?;
    let status = node
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})))
        .context("a Node is not an object")?;
    status["security"] = serde_json::to_value(crate::facts::security_status(&facts))?;
    status["agentVersion"] = json!(env!("CARGO_PKG_VERSION"));
    let volumes: Vec<api::task::HostVolume> = config
        .volumes
        .iter()
        .map(|(name, v)| api::task::HostVolume {
            name: name.clone(),
            read_only: v.read_only,
        })
        .collect();
    status["volumes"] = serde_json::to_value(volumes)?;
    status["addresses"] = serde_json::to_value(addresses(config).await)?;
    client
        .replace_status(node_kind, None, &config.name, &node)
        .await?;
    Ok(())
}

/// The node's addresses: `InternalIP` (the advertised address, else the local address
/// of the route to the server unless it is loopback, else that of the default route, else
/// the loopback one) and `Hostname`.
async fn addresses(config: &AgentConfig) -> Vec<api::task::NodeAddress> {
    use api::task::{NodeAddress, NodeAddressType};
    let mut out = Vec::new();
    let ip = match &config.advertise_address {
        Some(a) => Some(a.clone()),
        None => route_address(&config.server).await.map(|ip| ip.to_string()),
    };
    if let Some(address) = ip {
        out.push(NodeAddress {
            type_: NodeAddressType::InternalIp,
            address,
        });
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| config.name.clone());
    out.push(NodeAddress {
        type_: NodeAddressType::Hostname,
        address: hostname,
    });
    out
}

/// The local address the kernel picks to reach `server` (a URL), or, when that is
/// loopback, to reach the documentation network 192.0.2.1 (the default route). A UDP
/// `connect` sends nothing.
async fn route_address(server: &str) -> Option<std::net::IpAddr> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        && !authority.ends_with(']');
    let target = if has_port {
        authority.to_owned()
    } else if server.starts_with("https") {
        format!("{authority}:443")
    } else {
        format!("{authority}:80")
    };
    let local = |to: std::net::SocketAddr| {
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = std::net::UdpSocket::bind(bind).ok()?;
        s.connect(to).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    };
    let mut loopback = None;
    if let Ok(addrs) = tokio::net::lookup_host(target).await {
        for a in addrs {
            match local(a) {
                Some(ip) if !ip.is_loopback() => return Some(ip),
                Some(ip) => loopback = loopback.or(Some(ip)),
                None => {}
            }
        }
    }
    local(std::net::SocketAddr::from(([192, 0, 2, 1], 9)))
        .filter(|ip| !ip.is_loopback())
        .or(loopback)
}

/// Runs the agent until `shutdown`. Tasks keep running when the agent stops (a restarted
/// agent adopts them); they are stopped when their allocation goes away.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", config.data_dir.display()))?;
    let cred = credential(&config).await?;
    let client = Client::new(&config.server, &cred.token, config.ca_pem.as_deref())?;
    register(&client, &config, &cred.site)
        .await
        .context("registering the node")?;
    tracing::info!("agent running: node {} in site {}", config.name, cred.site);

    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        config.name.clone(),
        config.heartbeat,
        shutdown.clone(),
    ));
    let facts = {
        let client = client.clone();
        let config = config.clone();
        let site = cred.site.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(config.facts_interval) => {}
                }
                if let Err(e) = register(&client, &config, &site).await {
                    tracing::warn!(error = %format!("{e:#}"), "facts refresh failed");
                }
            }
        })
    };
    let logs = tokio::spawn(crate::logs::serve(
        client.clone(),
        config.name.clone(),
        config.data_dir.clone(),
        shutdown.clone(),
    ));
    let accel = config.qemu_accel()?;
    let arch = crate::facts::arch_of(std::env::consts::ARCH)
        .context("this agent was built for an architecture Meridian does not know")?;
    // Probing runs commands (`docker info`): off the async threads.
    let drivers = tokio::task::spawn_blocking(move || {
        Drivers::detect(&crate::probe::HostProbe::default(), arch, accel)
    })
    .await?;
    let mut drivers = drivers;
    if let Some(launcher) = &config.launcher {
        drivers.replace(Box::new(driver::exec::ExecDriver::new(launcher.clone())));
    }
    tracing::info!(drivers = ?drivers, "drivers available");
    #[cfg(unix)]
    let switch_users = crate::users::is_root();
    #[cfg(not(unix))]
    let switch_users = false;
    #[cfg(unix)]
    if switch_users {
        // Off the async threads: runs useradd.
        match tokio::task::spawn_blocking(crate::users::ensure_default).await? {
            Ok(()) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "no default task user: tasks without task.user will fail until it exists"
            ),
        }
    } else {
        tracing::warn!(
            "the agent is not root: tasks run as the agent's own user, and tasks that ask for another user fail"
        );
    }
    let mut runner = Runner::new(client, &config, drivers, switch_users);
    runner.adopt().await;
    runner.run(shutdown).await;
    heartbeat.abort();
    facts.abort();
    logs.abort();
    Ok(())
}

async fn heartbeat_loop(
    client: Client,
    node: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let path = format!("/meridian/v1/nodes/{node}/heartbeat");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = client.request_json(Method::POST, &path, None).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// One task this agent runs (or ran).
struct Local {
    record: TaskRecord,
    /// The running task; `None` once it exited (waiting for a restart, or done).
    handle: Option<Handle>,
    /// When to start again after an exit (restart backoff); `None` while running.
    restart_at: Option<tokio::time::Instant>,
    /// Finished for good (succeeded, or failed past its restart policy).
    done: bool,
    /// Health checks, while it runs, if the task has them.
    health: Option<health::Tracker>,
}

impl Local {
    fn finished(record: TaskRecord) -> Self {
        Local {
            record,
            handle: None,
            restart_at: None,
            done: true,
            health: None,
        }
    }
}

struct Runner {
    client: Client,
    drivers: Drivers,
    node: String,
    data_dir: PathBuf,
    grace: Duration,
    log_limit: u64,
    /// The node's allocations as last seen: `namespace/name` → object.
    desired: HashMap<String, Allocation>,
    local: HashMap<String, Local>,
    /// What shapes each task's view (directories, node, volumes, users).
    view: crate::view::Context,
    /// The `meridian` binary that launches exec tasks and command health checks.
    launcher: PathBuf,
    /// Allocations waiting (for a secret) before their task can start.
    waiting: HashMap<String, Waiting>,
}

/// An allocation that cannot start yet, and when to try again.
struct Waiting {
    uid: String,
    retry_at: tokio::time::Instant,
    attempts: u32,
    message: String,
}

/// Why a task did not start.
enum StartError {
    /// Not yet (a secret is missing): the allocation stays pending and the agent retries.
    Wait(String),
    /// For good: the allocation fails with this.
    Fail(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for StartError {
    fn from(e: E) -> Self {
        StartError::Fail(e.into())
    }
}

/// How a task's command health check runs: through the launcher as the task (`exec` on
/// Unix), else on the node with the task's environment only.
fn health_runs(launcher: &Path, task: &api::kinds::Task, launch: &driver::Launch) -> health::Runs {
    #[cfg(unix)]
    if task.driver == api::kinds::Driver::Exec {
        return health::Runs::Launcher {
            path: launcher.to_path_buf(),
            spec: driver::exec::launch_spec("", &[], launch),
        };
    }
    let _ = (launcher, task);
    health::Runs::Env(launch.env.clone())
}

/// An allocation as the server sent it, decoded: the one place the agent reads allocation
/// JSON, so everything after it works on [`Allocation`] fields.
pub(crate) fn decode(value: Value) -> Result<Allocation> {
    serde_json::from_value(value).context("the server sent an allocation this agent cannot read")
}

/// `namespace/name`
fn key_of(a: &Allocation) -> String {
    format!(
        "{}/{}",
        a.metadata.namespace.as_deref().unwrap_or_default(),
        a.metadata.name
    )
}

fn uid_of(a: &Allocation) -> String {
    a.metadata.uid.clone().unwrap_or_default()
}

/// Restart decision after an exit with `code` (`None`: killed or unknown).
fn should_restart(spec: &AllocationSpec, code: Option<i32>, restarts: u32) -> Option<Duration> {
    let restart = spec.restart.as_ref();
    let policy = restart.map(|r| r.policy).unwrap_or(match spec.type_ {
        Some(WorkloadType::Job) => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    });
    let failed = code != Some(0);
    let limit =
        restart
            .and_then(|r| r.max_retries)
            .unwrap_or(if policy == RestartPolicy::OnFailure {
                3
            } else {
                u32::MAX
            });
    let again = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => failed && restarts < limit,
        RestartPolicy::Never => false,
    };
    if !again {
        return None;
    }
    let base = restart
        .and_then(|r| r.backoff.as_deref())
        .and_then(parse_backoff)
        .unwrap_or(Duration::from_secs(1));
    let factor = 1u32 << restarts.min(6);
    Some(base.saturating_mul(factor).min(Duration::from_secs(300)))
}

fn parse_backoff(s: &str) -> Option<Duration> {
    api::duration::parse(s).ok()
}

impl Runner {
    fn new(client: Client, config: &AgentConfig, drivers: Drivers, switch_users: bool) -> Self {
        Runner {
            launcher: config.launcher.clone().unwrap_or_else(|| {
                std::env::current_exe().unwrap_or_else(|_| PathBuf::from("meridian"))
            }),
            waiting: HashMap::new(),
            client,
            drivers,
            node: config.name.clone(),
            data_dir: config.data_dir.clone(),
            grace: config.grace,
            log_limit: config.log_limit,
            desired: HashMap::new(),
            local: HashMap::new(),
            view: crate::view::Context {
                data_dir: config.data_dir.clone(),
                node: config.name.clone(),
                volumes: config.volumes.clone(),
                switch_users,
            },
        }
    }

    fn state_path(&self) -> PathBuf {
        self.data_dir.join(STATE_FILE)
    }

    fn save(&self) {
        let state = State {
            tasks: self
                .local
                .iter()
                .filter(|(_, l)| !l.done && l.restart_at.is_none())
                .map(|(k, l)| (k.clone(), l.record.clone()))
                .collect(),
        };
        match serde_json::to_vec_pretty(&state) {
            Ok(bytes) => {
                if let Err(e) = write_private(&self.state_path(), &bytes) {
                    tracing::error!(error = %format!("{e:#}"), "cannot save the agent state");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the agent state"),
        }
    }

    fn alloc_dir(&self, key: &str) -> PathBuf {
        self.view.alloc_dir(key)
    }

    /// Takes over the tasks a previous agent started that are still alive.
    async fn adopt(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.state_path()) else {
            return;
        };
        let Ok(state) = serde_json::from_str::<State>(&text) else {
            tracing::warn!("the agent state file is corrupt; ignoring it");
            return;
        };
        for (key, record) in state.tasks {
            let Ok(d) = self.drivers.get(record.task.driver) else {
                tracing::warn!(allocation = %key, driver = %record.task.driver, "cannot adopt a task of a driver this node no longer offers");
                continue;
            };
            if let Some(handle) = d.adopt(&record.task, &self.alloc_dir(&key)).await {
                tracing::info!(allocation = %key, pid = record.task.pid, driver = %record.task.driver, "adopted a running task");
                self.local.insert(
                    key,
                    Local {
                        record,
                        handle: Some(handle),
                        restart_at: None,
                        done: false,
                        health: None,
                    },
                );
            }
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let alloc = api::kinds::ALLOCATION;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // List, then watch from the list's revision: the desired set is exact.
            let all = ListOptions::default();
            let listed = tokio::select! {
                () = shutdown.cancelled() => return,
                l = self.client.list_all_at(alloc, None, &all) => l,
            };
            let (items, rv) = match listed {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list allocations; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.desired = items
                .into_iter()
                .filter_map(|a| match decode(a) {
                    Ok(a) => Some((key_of(&a), a)),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "skipping an allocation");
                        None
                    }
                })
                .collect();
            self.reconcile().await;
            let opts = ListOptions {
                resource_version: rv,
                ..ListOptions::default()
            };
            let mut events = match self.client.watch(alloc, None, &opts).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch allocations; relisting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => self.reconcile().await,
                    e = events.next() => match e {
                        Some(Ok(ev)) => {
                            let deleted = match ev.type_.as_str() {
                                "ADDED" | "MODIFIED" => false,
                                "DELETED" => true,
                                _ => continue,
                            };
                            let a = match decode(ev.object) {
                                Ok(a) => a,
                                Err(e) => {
                                    tracing::warn!(error = %format!("{e:#}"), "skipping a watch event");
                                    continue;
                                }
                            };
                            if deleted {
                                self.desired.remove(&key_of(&a));
                            } else {
                                self.desired.insert(key_of(&a), a);
                            }
                            self.reconcile().await;
                        }
                        _ => break,
                    },
                }
            }
        }
    }

    /// Starts, stops and restarts tasks so that what runs is what is assigned.
    async fn reconcile(&mut self) {
        let mut changed = false;
        // Stop what is no longer assigned (deleted, replaced, or asked to stop).
        let stale: Vec<String> = self
            .local
            .iter()
            .filter(|(k, l)| {
                self.desired.get(*k).is_none_or(|a| {
                    uid_of(a) != l.record.uid || a.spec.desired_state == DesiredState::Stop
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(mut l) = self.local.remove(&k) {
                if let Some(mut h) = l.handle.take()
                    && let Ok(d) = self.drivers.get(h.record.driver)
                {
                    tracing::info!(allocation = %k, pid = h.record.pid, driver = %h.record.driver, "stopping a task no longer assigned here");
                    let how = d.stop(&mut h, self.grace).await;
                    tracing::info!(allocation = %k, "task stopped: {how}");
                    d.cleanup(&mut h).await;
                }
                self.remove_secrets(&k);
                changed = true;
            }
        }
        // Waits of allocations that are gone or replaced.
        let desired = &self.desired;
        self.waiting
            .retain(|k, w| desired.get(k).is_some_and(|a| uid_of(a) == w.uid));
        // Exits, and health checks of what still runs.
        let keys: Vec<String> = self.local.keys().cloned().collect();
        let now = tokio::time::Instant::now();
        for k in keys {
            let Some(l) = self.local.get_mut(&k) else {
                continue;
            };
            let Some(h) = l.handle.as_mut() else {
                continue;
            };
            let Ok(d) = self.drivers.get(h.record.driver) else {
                continue;
            };
            let (code, why) = match d.exited(h).await {
                Some(code) => {
                    let how = code.map_or("a signal".to_owned(), |c| format!("code {c}"));
                    (code, format!("exited with {how}"))
                }
                None => {
                    // A task adopted after an agent restart: its checks start again.
                    if l.health.is_none()
                        && let Some(a) = self.desired.get(&k)
                        && let Some(task) = &a.spec.task
                        && let Some(check) = task.health.clone()
                    {
                        // Secrets are not fetched again: secret variables are left out.
                        if let Ok(view) = self.view.launch(&k, a, task, None) {
                            let check = health::resolve_ports(*check, &view.launch.ports);
                            let runs = health_runs(&self.launcher, task, &view.launch);
                            l.health = Some(health::Tracker::new(check, runs, now));
                        }
                    }
                    let verdict = match l.health.as_mut() {
                        Some(t) => t.poll(now).await,
                        None => None,
                    };
                    match verdict {
                        None | Some(health::Verdict::Unchanged) => continue,
                        Some(health::Verdict::Changed) => {
                            self.report_health(&k).await;
                            continue;
                        }
                        Some(health::Verdict::Unhealthy) => {
                            let message = l
                                .health
                                .as_ref()
                                .and_then(|t| t.status.message.clone())
                                .unwrap_or_default();
                            let failures = l
                                .health
                                .as_ref()
                                .map_or(0, |t| t.status.consecutive_failures);
                            tracing::warn!(allocation = %k, failures, %message, "unhealthy; stopping the task");
                            let how = d.stop(h, self.grace).await;
                            tracing::info!(allocation = %k, "unhealthy task stopped: {how}");
                            (
                                None,
                                format!(
                                    "unhealthy ({failures} failed health checks in a row, last: {message})"
                                ),
                            )
                        }
                    }
                }
            };
            d.cleanup(h).await;
            l.handle = None;
            changed = true;
            self.exited(&k, code, why).await;
        }
        // Starts: new assignments, and restarts whose backoff is over.
        let wanted: Vec<(String, Allocation)> = self
            .desired
            .iter()
            .filter(|(k, a)| {
                a.spec.desired_state != DesiredState::Stop
                    && self.waiting.get(*k).is_none_or(|w| w.retry_at <= now)
                    && match self.local.get(*k) {
                        None => !matches!(
                            a.status.as_ref().map(|s| s.phase),
                            Some(
                                AllocationPhase::Succeeded
                                    | AllocationPhase::Failed
                                    | AllocationPhase::Lost
                            )
                        ),
                        Some(l) => !l.done && l.restart_at.is_some_and(|t| t <= now),
                    }
            })
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        for (k, a) in wanted {
            let restarts = self.local.get(&k).map_or(0, |l| l.record.restarts);
            changed = true;
            match self.start(&k, &a, restarts).await {
                Ok((local, message)) => {
                    self.waiting.remove(&k);
                    self.local.insert(k, local);
                    self.report(&a, AllocationPhase::Running, None, restarts, Some(message))
                        .await;
                }
                Err(StartError::Wait(message)) => {
                    let w = self.waiting.entry(k.clone()).or_insert_with(|| Waiting {
                        uid: uid_of(&a),
                        retry_at: now,
                        attempts: 0,
                        message: String::new(),
                    });
                    let delay = Duration::from_millis(500)
                        .saturating_mul(1 << w.attempts.min(6))
                        .min(Duration::from_secs(30));
                    w.attempts += 1;
                    w.retry_at = now + delay;
                    if w.message != message {
                        w.message = message.clone();
                        tracing::info!(allocation = %k, %message, "task waits");
                        self.report(&a, AllocationPhase::Pending, None, restarts, Some(message))
                            .await;
                    }
                }
                Err(StartError::Fail(e)) => {
                    self.waiting.remove(&k);
                    self.remove_secrets(&k);
                    let e = format!("{e:#}");
                    tracing::warn!(allocation = %k, error = %e, "task did not start");
                    let driver = a
                        .spec
                        .task
                        .as_ref()
                        .map_or(api::kinds::Driver::Exec, |t| t.driver);
                    self.local.insert(
                        k.clone(),
                        Local::finished(TaskRecord {
                            uid: uid_of(&a),
                            restarts,
                            task: driver::Record {
                                driver,
                                pid: 0,
                                start_time: 0,
                                container: None,
                            },
                        }),
                    );
                    self.report(&a, AllocationPhase::Failed, None, restarts, Some(e))
                        .await;
                }
            }
        }
        if changed {
            self.save();
        }
    }

    /// After a task ended (`why`: how, for the status): restart it per its policy, or
    /// report it succeeded or failed.
    async fn exited(&mut self, k: &str, code: Option<i32>, why: String) {
        let Some(a) = self.desired.get(k).cloned() else {
            return;
        };
        let Some(l) = self.local.get_mut(k) else {
            return;
        };
        l.health = None;
        match should_restart(&a.spec, code, l.record.restarts) {
            Some(delay) => {
                l.record.restarts += 1;
                l.restart_at = Some(tokio::time::Instant::now() + delay);
                let message = format!(
                    "{why}; restarting in {} ms (restart {})",
                    delay.as_millis(),
                    l.record.restarts
                );
                let restarts = l.record.restarts;
                // Waiting out the back-off is not running: a crash loop shows as such.
                self.report(
                    &a,
                    AllocationPhase::Restarting,
                    code,
                    restarts,
                    Some(message),
                )
                .await;
            }
            None => {
                l.done = true;
                let restarts = l.record.restarts;
                self.remove_secrets(k);
                let phase = if code == Some(0) {
                    AllocationPhase::Succeeded
                } else {
                    AllocationPhase::Failed
                };
                // An exit speaks for itself (phase and exit code); a health failure does not.
                let message = why.starts_with("unhealthy").then_some(why);
                self.report(&a, phase, code, restarts, message).await;
            }
        }
    }

    async fn start(
        &self,
        key: &str,
        a: &Allocation,
        restarts: u32,
    ) -> Result<(Local, String), StartError> {
        let task = a
            .spec
            .task
            .clone()
            .context("the allocation carries no valid task")?;
        let d = self.drivers.get(task.driver)?;
        let secrets = if crate::secrets::needed(&task) {
            Some(self.fetch_secrets(a).await?)
        } else {
            None
        };
        let view = match self.view.launch(key, a, &task, secrets.as_ref()) {
            Ok(v) => v,
            Err(e @ crate::view::ViewError::Waiting(_)) => {
                return Err(StartError::Wait(e.to_string()));
            }
            Err(e) => return Err(StartError::Fail(e.into())),
        };
        drop(secrets);
        crate::view::prepare(&view).with_context(|| {
            format!(
                "cannot prepare the task's directory {}",
                view.launch.task_dir.display()
            )
        })?;
        let launch = &view.launch;
        let uid = uid_of(a);
        let slot = Slot {
            dir: self.alloc_dir(key),
            id: format!("{}-{}", key.replace('/', "_"), &uid[..8.min(uid.len())]),
            uid: uid.clone(),
            log_limit: self.log_limit,
        };
        let started = d.start(&task, launch, &slot).await?;
        let h = &started.handle;
        tracing::info!(pid = h.record.pid, driver = %task.driver, "running allocation {key}");
        let health = task.health.clone().map(|check| {
            let check = health::resolve_ports(*check, &launch.ports);
            let runs = health_runs(&self.launcher, &task, launch);
            health::Tracker::new(check, runs, tokio::time::Instant::now())
        });
        let mut message = started.message;
        for note in &view.notes {
            message.push_str("; ");
            message.push_str(note);
        }
        Ok((
            Local {
                record: TaskRecord {
                    uid,
                    restarts,
                    task: h.record.clone(),
                },
                handle: Some(started.handle),
                restart_at: None,
                done: false,
                health,
            },
            message,
        ))
    }

    /// The values of the secrets `a`'s task references, from the server (only for
    /// allocations on this node). Any failure is a wait: the secret may be created, the
    /// server reached again.
    async fn fetch_secrets(
        &self,
        a: &Allocation,
    ) -> Result<api::secret::AllocationSecrets, StartError> {
        let project = a.metadata.namespace.as_deref().unwrap_or_default();
        let path = crate::secrets::path(project, &a.metadata.name);
        let answer = self
            .client
            .request_json(Method::GET, &path, None)
            .await
            .map_err(|e| {
                let e = e.to_string();
                StartError::Wait(if e.starts_with("secret ") {
                    format!("waiting for {e}")
                } else {
                    format!("waiting for secrets: {e}")
                })
            })?;
        // serde's message could quote a value: not passed on.
        serde_json::from_value(answer).map_err(|_| {
            StartError::Wait(
                "waiting for secrets: the server's answer is not an AllocationSecrets (is the server older than the agent?)".to_owned(),
            )
        })
    }

    /// Removes the secret files of the allocation `key` (its task is gone for good).
    fn remove_secrets(&self, key: &str) {
        let dir = self.alloc_dir(key).join("secrets");
        if let Err(e) = crate::secrets::remove(&dir) {
            tracing::warn!(allocation = %key, error = %e, "cannot remove the secret files");
        }
    }

    /// The `health` and `conditions` of an allocation's status, from its tracker.
    fn health_status(&self, key: &str) -> Option<(HealthStatus, Vec<Condition>)> {
        let t = self.local.get(key)?.health.as_ref()?;
        let (status, reason) = match t.status.state {
            HealthState::Healthy => (ConditionStatus::True, "HealthCheckPassed"),
            HealthState::Unhealthy => (ConditionStatus::False, "HealthCheckFailed"),
            HealthState::Unknown => (ConditionStatus::Unknown, "NotCheckedYet"),
        };
        let condition = Condition {
            type_: "Healthy".to_owned(),
            status,
            reason: Some(reason.to_owned()),
            message: t.status.message.clone(),
            last_transition_time: Some(t.transition_time.clone()),
            last_update_time: None,
        };
        Some((t.status.clone(), vec![condition]))
    }

    /// Writes the health of a running allocation into its current status.
    async fn report_health(&mut self, key: &str) {
        let Some((health, conditions)) = self.health_status(key) else {
            return;
        };
        let Some(a) = self.desired.get(key).cloned() else {
            return;
        };
        self.write_status(&a, "health", |object| {
            let status = object.status.get_or_insert_with(|| AllocationStatus {
                phase: AllocationPhase::Running,
                ..AllocationStatus::default()
            });
            status.health = Some(health.clone());
            status.conditions = conditions.clone();
        })
        .await;
    }

    /// Writes the allocation's status (retrying once on a conflict with a fresh read).
    async fn report(
        &mut self,
        a: &Allocation,
        phase: AllocationPhase,
        code: Option<i32>,
        restarts: u32,
        message: Option<String>,
    ) {
        let mut status = AllocationStatus {
            phase,
            restarts,
            exit_code: code,
            message,
            ..AllocationStatus::default()
        };
        if phase == AllocationPhase::Running {
            status.started_at = Some(jiff::Timestamp::now().to_string());
            if let Some((health, conditions)) = self.health_status(&key_of(a)) {
                status.health = Some(health);
                status.conditions = conditions;
            }
        }
        self.write_status(a, "status", |object| object.status = Some(status.clone()))
            .await;
        self.record_event(a, &status);
    }

    /// Records what happened to a task as an Event on its allocation (`Started`,
    /// `BackOff`, `Unhealthy`, `Completed`, `Failed`), in the background: an event that
    /// cannot be written is not worth holding the reconcile loop for.
    fn record_event(&self, a: &Allocation, status: &AllocationStatus) {
        let message = status.message.clone().unwrap_or_default();
        let code = status
            .exit_code
            .map(|c| format!(" (exit code {c})"))
            .unwrap_or_default();
        let (type_, reason, message) = match status.phase {
            AllocationPhase::Running => (EventType::Normal, "Started", {
                if message.is_empty() {
                    format!("Started task on node {}", self.node)
                } else {
                    message
                }
            }),
            AllocationPhase::Restarting if message.starts_with("unhealthy") => {
                (EventType::Warning, "Unhealthy", message)
            }
            AllocationPhase::Restarting => (
                EventType::Warning,
                "BackOff",
                format!("Back-off restarting failed task{code}: {message}"),
            ),
            AllocationPhase::Succeeded => {
                (EventType::Normal, "Completed", format!("Task exited{code}"))
            }
            AllocationPhase::Failed => (
                EventType::Warning,
                "Failed",
                format!(
                    "Task failed{code}{}",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
            ),
            AllocationPhase::Pending | AllocationPhase::Lost => return,
        };
        let record = api::EventRecord {
            involved_object: api::ObjectReference::of(a),
            type_,
            reason: reason.to_owned(),
            message,
            component: "meridian-agent".to_owned(),
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.record_event(&record).await {
                tracing::debug!(error = %e, reason = %record.reason, "event not recorded");
            }
        });
    }

    /// Writes the allocation's status as `edit` makes it, retrying once on a conflict
    /// with a fresh read; `what` names the write in the warning when it fails.
    async fn write_status(&mut self, a: &Allocation, what: &str, edit: impl Fn(&mut Allocation)) {
        let alloc = api::kinds::ALLOCATION;
        let ns = a.metadata.namespace.as_deref().unwrap_or_default();
        let name = a.metadata.name.as_str();
        let mut object = a.clone();
        for attempt in 0..2 {
            edit(&mut object);
            let body = match serde_json::to_value(&object) {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(allocation = %name, error = %e, "cannot encode {what}");
                    return;
                }
            };
            match self
                .client
                .replace_status(alloc, Some(ns), name, &body)
                .await
            {
                Ok(stored) => {
                    match decode(stored) {
                        Ok(stored) => {
                            self.desired.insert(key_of(&stored), stored);
                        }
                        Err(e) => {
                            tracing::warn!(allocation = %name, error = %format!("{e:#}"), "cannot read back {what}");
                        }
                    }
                    return;
                }
                Err(e) if attempt == 0 && !e.is_not_found() => {
                    match self.client.get(alloc, Some(ns), name).await.map(decode) {
                        Ok(Ok(fresh)) => object = fresh,
                        _ => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(allocation = %name, error = %e, "cannot report {what}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(type_: &str, restart: Value) -> AllocationSpec {
        AllocationSpec {
            workload: "w".into(),
            replica: 0,
            node: "n".into(),
            site: None,
            desired_state: DesiredState::Run,
            resources: Default::default(),
            task: None,
            workload_generation: None,
            revision: None,
            template_hash: None,
            type_: Some(serde_json::from_value(json!(type_)).unwrap()),
            restart: serde_json::from_value(restart).unwrap(),
            explanation: None,
            ports: Vec::new(),
        }
    }

    #[test]
    fn restart_policies() {
        // Services restart whatever the exit, with exponential backoff.
        let svc = alloc("service", Value::Null);
        assert_eq!(
            should_restart(&svc, Some(0), 0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            should_restart(&svc, Some(1), 3),
            Some(Duration::from_secs(8))
        );
        // Jobs restart on failure, 3 times by default.
        let job = alloc("job", Value::Null);
        assert_eq!(should_restart(&job, Some(0), 0), None);
        assert!(should_restart(&job, Some(2), 2).is_some());
        assert_eq!(should_restart(&job, Some(2), 3), None);
        // Explicit policies.
        let never = alloc("service", json!({"policy": "never"}));
        assert_eq!(should_restart(&never, Some(1), 0), None);
        let limited = alloc(
            "job",
            json!({"policy": "on-failure", "maxRetries": 1, "backoff": "200ms"}),
        );
        assert_eq!(
            should_restart(&limited, None, 0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(should_restart(&limited, None, 1), None);
    }
}
