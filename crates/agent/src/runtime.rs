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
//! - **Restarts of the agent**: what runs is recorded in `DATA_DIR/state.json` (pid and the
//!   process's start time, so a reused pid is never mistaken for a task). A restarted
//!   agent adopts the processes of allocations still assigned to it and stops the others,
//!   so it never leaves an orphan and never starts a second copy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use api::kinds::{Restart, RestartPolicy, Task, WorkloadType};
use client::{Client, ListOptions, Method};

use crate::exec;

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
    pid: u32,
    start_time: u64,
    restarts: u32,
}

const CREDENTIAL_FILE: &str = "credential.json";
const STATE_FILE: &str = "state.json";

fn kind(name: &str) -> &'static api::KindInfo {
    api::lookup_kind(name).expect("built-in kind")
}

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
    tracing::info!(node = %c.node, site = %c.site, "joined; credential stored");
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
    let node_kind = kind("Node");
    match client.get(node_kind, None, &config.name).await {
        Err(e) if e.is_not_found() => {
            let node = json!({
                "apiVersion": api::API_VERSION, "kind": "Node",
                "metadata": {"name": config.name, "labels": config.labels},
                "spec": spec,
            });
            client.create(node_kind, None, &node, false).await?;
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {
            // A merge: fields an administrator owns (unschedulable, other labels) stay.
            let patch = json!({"metadata": {"labels": config.labels}, "spec": spec});
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
    client
        .replace_status(node_kind, None, &config.name, &node)
        .await?;
    Ok(())
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
    tracing::info!(node = %config.name, site = %cred.site, "agent running");

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
    let mut runner = Runner::new(client, &config);
    runner.adopt();
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
    /// `None` for a process adopted after an agent restart (not our child).
    child: Option<tokio::process::Child>,
    cgroups: exec::Cgroups,
    /// When to start again after an exit (restart backoff); `None` while running.
    restart_at: Option<tokio::time::Instant>,
    /// Finished for good (succeeded, or failed past its restart policy).
    done: bool,
}

struct Runner {
    client: Client,
    node: String,
    data_dir: PathBuf,
    grace: Duration,
    log_limit: u64,
    /// The node's allocations as last seen: `namespace/name` → object.
    desired: HashMap<String, Value>,
    local: HashMap<String, Local>,
}

fn key_of(a: &Value) -> String {
    format!(
        "{}/{}",
        a["metadata"]["namespace"].as_str().unwrap_or_default(),
        a["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn uid_of(a: &Value) -> String {
    a["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

/// Restart decision after an exit with `code` (`None`: killed or unknown).
fn should_restart(a: &Value, code: Option<i32>, restarts: u32) -> Option<Duration> {
    let restart: Option<Restart> = serde_json::from_value(a["spec"]["restart"].clone()).ok();
    let type_: Option<WorkloadType> = serde_json::from_value(a["spec"]["type"].clone()).ok();
    let policy = restart.as_ref().map(|r| r.policy).unwrap_or(match type_ {
        Some(WorkloadType::Job) => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    });
    let failed = code != Some(0);
    let limit = restart.as_ref().and_then(|r| r.max_retries).unwrap_or(
        if policy == RestartPolicy::OnFailure {
            3
        } else {
            u32::MAX
        },
    );
    let again = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => failed && restarts < limit,
        RestartPolicy::Never => false,
    };
    if !again {
        return None;
    }
    let base = restart
        .as_ref()
        .and_then(|r| r.backoff.as_deref())
        .and_then(parse_backoff)
        .unwrap_or(Duration::from_secs(1));
    let factor = 1u32 << restarts.min(6);
    Some((base * factor).min(Duration::from_secs(300)))
}

fn parse_backoff(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

impl Runner {
    fn new(client: Client, config: &AgentConfig) -> Self {
        Runner {
            client,
            node: config.name.clone(),
            data_dir: config.data_dir.clone(),
            grace: config.grace,
            log_limit: config.log_limit,
            desired: HashMap::new(),
            local: HashMap::new(),
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

    /// Takes over the processes a previous agent started that are still alive.
    fn adopt(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.state_path()) else {
            return;
        };
        let Ok(state) = serde_json::from_str::<State>(&text) else {
            tracing::warn!("the agent state file is corrupt; ignoring it");
            return;
        };
        for (key, record) in state.tasks {
            let alive = exec::start_time(record.pid) == Some(record.start_time);
            if alive {
                tracing::info!(allocation = %key, pid = record.pid, "adopted a running task");
                self.local.insert(
                    key,
                    Local {
                        record,
                        child: None,
                        cgroups: exec::Cgroups::default(),
                        restart_at: None,
                        done: false,
                    },
                );
            }
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let alloc = kind("Allocation");
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
            self.desired = items.into_iter().map(|a| (key_of(&a), a)).collect();
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
                            match ev.type_.as_str() {
                                "ADDED" | "MODIFIED" => {
                                    self.desired.insert(key_of(&ev.object), ev.object);
                                }
                                "DELETED" => {
                                    self.desired.remove(&key_of(&ev.object));
                                }
                                _ => continue,
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
                    uid_of(a) != l.record.uid || a["spec"]["desiredState"] == "stop"
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(mut l) = self.local.remove(&k) {
                if !l.done && l.restart_at.is_none() {
                    tracing::info!(allocation = %k, pid = l.record.pid, "stopping a task no longer assigned here");
                    exec::stop_group(l.record.pid, self.grace, l.child.as_mut()).await;
                    if let Some(c) = l.child.as_mut() {
                        let _ = c.wait().await;
                    }
                }
                l.cgroups.remove();
                changed = true;
            }
        }
        // Exits.
        let keys: Vec<String> = self.local.keys().cloned().collect();
        for k in keys {
            let Some(l) = self.local.get_mut(&k) else {
                continue;
            };
            if l.done || l.restart_at.is_some() {
                continue;
            }
            let exited = match l.child.as_mut() {
                Some(c) => match c.try_wait() {
                    Ok(Some(status)) => Some(status.code()),
                    Ok(None) => None,
                    Err(_) => Some(None),
                },
                None => (!exec::group_alive(l.record.pid)).then_some(None),
            };
            let Some(code) = exited else { continue };
            // The group may hold stragglers the main process left: end them too.
            exec::stop_group(l.record.pid, Duration::from_millis(200), None).await;
            l.cgroups.remove();
            l.child = None;
            changed = true;
            let Some(a) = self.desired.get(&k).cloned() else {
                continue;
            };
            match should_restart(&a, code, l.record.restarts) {
                Some(delay) => {
                    l.record.restarts += 1;
                    l.restart_at = Some(tokio::time::Instant::now() + delay);
                    let message = format!(
                        "exited with {}; restarting in {} ms (restart {})",
                        code.map_or("a signal".to_owned(), |c| format!("code {c}")),
                        delay.as_millis(),
                        l.record.restarts
                    );
                    let restarts = l.record.restarts;
                    self.report(&a, "running", code, restarts, Some(message))
                        .await;
                }
                None => {
                    l.done = true;
                    let phase = if code == Some(0) {
                        "succeeded"
                    } else {
                        "failed"
                    };
                    let restarts = l.record.restarts;
                    self.report(&a, phase, code, restarts, None).await;
                }
            }
        }
        // Starts: new assignments, and restarts whose backoff is over.
        let now = tokio::time::Instant::now();
        let wanted: Vec<(String, Value)> = self
            .desired
            .iter()
            .filter(|(k, a)| {
                a["spec"]["desiredState"] != "stop"
                    && match self.local.get(*k) {
                        None => !matches!(
                            a.pointer("/status/phase").and_then(Value::as_str),
                            Some("succeeded" | "failed" | "lost")
                        ),
                        Some(l) => !l.done && l.restart_at.is_some_and(|t| t <= now),
                    }
            })
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        for (k, a) in wanted {
            let restarts = self.local.get(&k).map_or(0, |l| l.record.restarts);
            changed = true;
            match self.start(&k, &a, restarts) {
                Ok((local, limits)) => {
                    self.local.insert(k, local);
                    self.report(&a, "running", None, restarts, Some(limits))
                        .await;
                }
                Err(e) => {
                    tracing::warn!(allocation = %k, error = %e, "task did not start");
                    self.local.insert(
                        k.clone(),
                        Local {
                            record: TaskRecord {
                                uid: uid_of(&a),
                                pid: 0,
                                start_time: 0,
                                restarts,
                            },
                            child: None,
                            cgroups: exec::Cgroups::default(),
                            restart_at: None,
                            done: true,
                        },
                    );
                    self.report(&a, "failed", None, restarts, Some(e.to_string()))
                        .await;
                }
            }
        }
        if changed {
            self.save();
        }
    }

    fn start(&self, key: &str, a: &Value, restarts: u32) -> Result<(Local, String)> {
        let mut task: Task = serde_json::from_value(a["spec"]["task"].clone())
            .context("the allocation carries no valid task")?;
        task.env
            .insert("MERIDIAN_ALLOCATION".into(), key.to_owned());
        task.env.insert("MERIDIAN_NODE".into(), self.node.clone());
        if task.driver != api::kinds::Driver::Exec {
            bail!(
                "driver {} is not available on this agent (it offers exec)",
                serde_json::to_value(task.driver)?.as_str().unwrap_or("?")
            );
        }
        let dir = self
            .data_dir
            .join("allocations")
            .join(key.replace('/', "_"));
        let id = format!(
            "{}-{}",
            key.replace('/', "_"),
            &uid_of(a)[..8.min(uid_of(a).len())]
        );
        let started = exec::start(&task, &dir, &id, self.log_limit)?;
        let start_time = exec::start_time(started.pid).unwrap_or_default();
        tracing::info!(allocation = %key, pid = started.pid, "task started");
        Ok((
            Local {
                record: TaskRecord {
                    uid: uid_of(a),
                    pid: started.pid,
                    start_time,
                    restarts,
                },
                child: Some(started.child),
                cgroups: started.cgroups,
                restart_at: None,
                done: false,
            },
            started.limits,
        ))
    }

    /// Writes the allocation's status (retrying once on a conflict with a fresh read).
    async fn report(
        &mut self,
        a: &Value,
        phase: &str,
        code: Option<i32>,
        restarts: u32,
        message: Option<String>,
    ) {
        let alloc = kind("Allocation");
        let ns = a["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = a["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut status = json!({"phase": phase});
        if restarts > 0 {
            status["restarts"] = json!(restarts);
        }
        if let Some(c) = code {
            status["exitCode"] = json!(c);
        }
        if let Some(m) = message {
            status["message"] = json!(m);
        }
        if phase == "running" {
            status["startedAt"] = json!(jiff::Timestamp::now().to_string());
        }
        let mut object = a.clone();
        for attempt in 0..2 {
            object["status"] = status.clone();
            match self
                .client
                .replace_status(alloc, Some(&ns), &name, &object)
                .await
            {
                Ok(stored) => {
                    self.desired.insert(key_of(&stored), stored);
                    return;
                }
                Err(e) if attempt == 0 && !e.is_not_found() => {
                    match self.client.get(alloc, Some(&ns), &name).await {
                        Ok(fresh) => object = fresh,
                        Err(_) => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(allocation = %name, error = %e, "cannot report status");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(type_: &str, restart: Value) -> Value {
        json!({"spec": {"type": type_, "restart": restart}})
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
