//! The chaos estate: real processes, one fault at a time, and the invariants checked after
//! each (`tests/chaos.rs` runs one round of each fault; `scripts/bench-chaos` many).
//!
//! - a 3-member etcd cluster (`store::etcd::testing::EtcdCluster`: Debian's etcd 3.4 on
//!   loopback, data on /dev/shm);
//! - 3 `meridian server` processes on it (one etcd prefix, one shared data directory for
//!   the CA, secrets key and admin token, as `tests/ha.rs` does), each in a cgroup v2
//!   group of its own (so that its etcd connections can be cut, [`testkit::NetCut`]),
//!   behind a TCP load balancer with `/readyz` health checks ([`testkit::Balancer`]);
//! - 3 real `meridian agent` processes (each in its cgroup with the `sleep` tasks it
//!   runs), joined to one site, dialling the balancer;
//! - a client writing continuously through the balancer ([`writer`]).
//!
//! After each fault and its repair (`faults.rs`) the estate settles (conditions polled
//! with deadlines, never fixed sleeps): the servers agree on a leader whose controllers
//! run, writes are acknowledged again, the agents' nodes are Ready, a new workload is
//! placed and running (the new leader's controllers resume) and the scheduler has caught
//! up. Then the invariants (`checks.rs`, with `testkit::invariants`): no acknowledged write
//! lost, no instance slot with two live allocations, no node over-committed, and
//! `meridian audit verify` passes.
//!
//! Capacity is sized so that over-commitment would show: the writer's instances ask for a
//! sixth of a node's cpu less a margin, so a node holds 6 of them and the writer's up to
//! 12 instances fill two thirds of the 3 nodes; the probe asks for less than the margin,
//! so it fits on any Ready node however full, and the batch a leader is killed in (12
//! instances of 10m) fits in what the writer leaves free.

mod checks;
pub mod faults;
pub mod writer;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use api::kinds::{Allocation, AllocationPhase, Node, NodePhase};
use store::etcd::testing::EtcdCluster;
use testkit::{Balancer, Cgroup, ServerProcess, wait_until};

pub use checks::Checked;
pub use faults::{Fault, Outcome};
use writer::{PROJECT, Writer};

/// Environment variable: keep the work directory (data, logs) even when the test passes.
pub const KEEP_ENV: &str = "MERIDIAN_CHAOS_KEEP";

/// Servers, etcd members and agents.
pub const SERVERS: usize = 3;
pub const MEMBERS: usize = 3;
pub const AGENTS: usize = 3;
/// Instances of one node's cpu a workload instance is sized for.
const INSTANCES_PER_NODE: u64 = 6;
/// What each node keeps free whatever is placed (millicores): room for the probe.
const MARGIN_MILLIS: u64 = 100;
const PROBE_MILLIS: u64 = 50;
/// The etcd prefix of the deployment.
const PREFIX: &str = "/chaos";
/// Generous bounds: they only decide how long a broken estate takes to fail.
const SETTLE: Duration = Duration::from_secs(90);
const REQUEST: Duration = Duration::from_secs(10);

/// One server slot: its name, cgroup and (while it runs) its process.
pub struct Slot {
    pub name: String,
    process: Option<ServerProcess>,
    client: Option<client::Client>,
    cgroup: Cgroup,
}

/// A `meridian agent` process and the cgroup holding it and its tasks.
struct AgentProcess {
    child: Child,
    cgroup: Cgroup,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // The agent puts each task in cgroup v1 groups of its own (cpu, memory) and removes
        // them when the task stops; killed, it cannot: remove those its tasks are in.
        let task_groups = v1_task_groups(&self.cgroup.pids());
        self.cgroup.kill_all();
        let _ = self.child.wait();
        for dir in task_groups {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The agent's cgroup v1 directories (`/sys/fs/cgroup/{controller}/meridian/…`) that the
/// processes `pids` are in.
fn v1_task_groups(pids: &[i32]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.splitn(3, ':');
                    let (_, controller, path) = (fields.next()?, fields.next()?, fields.next()?);
                    (path.starts_with("/meridian/") && !controller.is_empty())
                        .then(|| PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}")))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The whole estate; every process is killed on drop.
pub struct Estate {
    // Fields drop in this order: the writer first, the etcd cluster after the servers,
    // the cgroups' parent after its children, the runtime last.
    writer: Option<Writer>,
    pub slots: Vec<Slot>,
    agents: Vec<AgentProcess>,
    balancer: Balancer,
    pub cluster: EtcdCluster,
    _cgroups: Cgroup,
    admin: client::Client,
    bin: PathBuf,
    /// Data directory shared by the servers, logs, agents' directories.
    work: Option<tempfile::TempDir>,
    /// Millicores of one writer instance.
    pub instance_millis: u64,
    /// Rounds run so far (names the probes and batches).
    pub round: u64,
    last_probe: Option<String>,
    /// "One leader at a time" violations seen during the current round.
    violations: Vec<String>,
    rt: tokio::runtime::Runtime,
}

impl Estate {
    /// Starts everything and waits until the agents' nodes are Ready and the writer
    /// writes.
    pub fn start(bin: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let cluster = rt
            .block_on(EtcdCluster::start(MEMBERS))
            .unwrap_or_else(|e| panic!("cannot start a 3-member etcd cluster: {e}"));
        let work = tempfile::Builder::new()
            .prefix("meridian-chaos-")
            .tempdir()
            .expect("a work directory");
        std::fs::create_dir_all(work.path().join("logs")).expect("logs directory");
        let group = format!("meridian-chaos-{}", std::process::id());
        let cgroups = Cgroup::create(&group);
        let balancer = rt.block_on(Balancer::start(SERVERS));
        let slots = (1..=SERVERS)
            .map(|i| Slot {
                name: format!("server-{i}"),
                process: None,
                client: None,
                cgroup: Cgroup::create(&format!("{group}/server-{i}")),
            })
            .collect();
        let mut estate = Estate {
            writer: None,
            slots,
            agents: Vec::new(),
            admin: client::Client::new(&balancer.url(), "none", None).expect("a client"),
            balancer,
            cluster,
            _cgroups: cgroups,
            bin: PathBuf::from(bin),
            work: Some(work),
            instance_millis: 0,
            round: 0,
            last_probe: None,
            violations: Vec::new(),
            rt,
        };
        eprintln!("chaos estate in {}", estate.work().display());
        // One after the other: the first creates the shared data directory.
        for slot in 0..SERVERS {
            estate.start_server(slot);
        }
        let token = estate.slots[0]
            .process
            .as_ref()
            .expect("server-1 runs")
            .token
            .clone();
        estate.admin = client::Client::new(&estate.balancer.url(), &token, None).expect("a client");
        estate.join_agents();
        let nodes = estate.wait_nodes_ready();
        let cpu = nodes
            .iter()
            .map(|n| n.spec.allocatable().cpu.millis())
            .min()
            .expect("nodes");
        estate.instance_millis = (cpu - MARGIN_MILLIS) / INSTANCES_PER_NODE;
        assert!(
            estate.instance_millis > MARGIN_MILLIS,
            "nodes of {cpu}m are too small for the chaos estate"
        );
        let writer = {
            let _entered = estate.rt.enter();
            Writer::start(estate.admin.clone(), estate.instance_millis)
        };
        estate.writer = Some(writer);
        estate.wait_writes("the writer's first writes", 10);
        estate
    }

    fn work(&self) -> &Path {
        self.work.as_ref().expect("the work directory").path()
    }

    fn writer(&self) -> &Writer {
        self.writer.as_ref().expect("the writer runs")
    }

    /// Runs `future` on the estate's runtime with the request time limit.
    fn call<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, client::ClientError>>,
    ) -> Result<T, String> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(REQUEST, future).await })
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("no answer within {REQUEST:?}")),
        }
    }

    /// Starts (or restarts) the server of `slot` and puts it behind the balancer.
    pub fn start_server(&mut self, slot: usize) {
        let url = self.cluster.url();
        let data = self.work().join("data");
        let log = self
            .work()
            .join("logs")
            .join(format!("{}.log", self.slots[slot].name));
        let name = self.slots[slot].name.clone();
        let process = ServerProcess::builder(&self.bin)
            .data_dir(&data)
            .cgroup(&self.slots[slot].cgroup)
            .log_file(&log)
            .env("MERIDIAN_LOG", "info")
            .args([
                "--store",
                &url,
                "--etcd-prefix",
                PREFIX,
                "--server-name",
                &name,
                "--leader-lease",
                "2s",
            ])
            .start();
        let addr = process
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("a server listens on host:port");
        self.balancer.set(slot, addr);
        self.slots[slot].client = Some(process.client());
        self.slots[slot].process = Some(process);
    }

    /// SIGKILL of the server of `slot`.
    pub fn kill_server(&mut self, slot: usize) {
        if let Some(mut process) = self.slots[slot].process.take() {
            process.kill9();
        }
        self.slots[slot].client = None;
    }

    pub fn cgroup(&self, slot: usize) -> &Cgroup {
        &self.slots[slot].cgroup
    }

    /// The slot of the server named `name`.
    pub fn slot_of(&self, name: &str) -> usize {
        self.slots
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }

    /// The leader as the server of `slot` sees it (`GET /meridian/v1/servers`).
    pub fn leader_seen_by(&self, slot: usize) -> Result<Option<String>, String> {
        let client = self.slots[slot]
            .client
            .as_ref()
            .ok_or_else(|| format!("{} is not running", self.slots[slot].name))?;
        let list = self.call(client.get_path("/meridian/v1/servers"))?;
        Ok(list["leader"].as_str().map(str::to_owned))
    }

    /// The leader every server of `slots` names, once they agree and it is one of them
    /// with its controllers running (`meridian_leader` is 1 on it).
    pub fn agreed_leader(&self, slots: &[usize]) -> Result<String, String> {
        let mut seen = Vec::new();
        for &slot in slots {
            seen.push((self.slots[slot].name.clone(), self.leader_seen_by(slot)?));
        }
        let Some(Some(leader)) = seen.first().map(|(_, l)| l.clone()) else {
            return Err(format!("no leader: {seen:?}"));
        };
        if seen
            .iter()
            .any(|(_, l)| l.as_deref() != Some(leader.as_str()))
        {
            return Err(format!("the servers disagree: {seen:?}"));
        }
        let slot = self
            .slots
            .iter()
            .position(|s| s.name == leader)
            .filter(|s| slots.contains(s))
            .ok_or_else(|| format!("the leader {leader} is not among {slots:?}"))?;
        if self.leads(slot)? {
            Ok(leader)
        } else {
            Err(format!(
                "{leader} is named leader but its controllers do not run yet"
            ))
        }
    }

    /// Whether the server of `slot` runs its controllers (`meridian_leader` is 1: its
    /// own view, served without the store).
    pub fn leads(&self, slot: usize) -> Result<bool, String> {
        let client = self.slots[slot]
            .client
            .as_ref()
            .ok_or_else(|| format!("{} is not running", self.slots[slot].name))?;
        let metrics = self.call(client.get_text("/metrics"))?;
        Ok(metrics.lines().any(|l| l.trim() == "meridian_leader 1"))
    }

    /// Watches the allocations of `workload` on the server of `slot`, creates it through
    /// that server, and returns as soon as its first allocation is committed.
    pub fn wait_first_allocation(&self, slot: usize, workload: &Value) {
        use futures::StreamExt;
        let name = workload["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let client = self.slots[slot].client.clone().expect("a running server");
        let options = client::ListOptions {
            label_selector: Some(format!("meridian.dev/workload={name}")),
            ..Default::default()
        };
        let watched = self.rt.block_on(async {
            tokio::time::timeout(SETTLE, async {
                let mut events = client
                    .watch(api::kinds::ALLOCATION, Some(PROJECT), &options)
                    .await
                    .map_err(|e| format!("watch: {e:#}"))?;
                client
                    .create(api::kinds::WORKLOAD, Some(PROJECT), workload, false)
                    .await
                    .map_err(|e| format!("create {name}: {e:#}"))?;
                while let Some(event) = events.next().await {
                    let event = event.map_err(|e| format!("watch: {e:#}"))?;
                    if event.type_ == api::WatchEvent::<Value>::ADDED {
                        return Ok(());
                    }
                }
                Err("the watch ended".to_owned())
            })
            .await
        });
        match watched {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("waiting for {name}'s first allocation: {e}"),
            Err(_) => panic!("{name} was not placed within {SETTLE:?}"),
        }
    }

    /// The slots whose server runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&s| self.slots[s].process.is_some())
            .collect()
    }

    /// Waits until the running servers agree on a leader with running controllers.
    pub fn wait_leader(&self, what: &str) -> String {
        let running = self.running();
        wait_until(SETTLE, what, || self.agreed_leader(&running))
    }

    fn join_agents(&mut self) {
        let site = json!({
            "apiVersion": "meridian.dev/v1", "kind": "Site",
            "metadata": {"name": "chaos"},
            "spec": {"provider": "onprem", "region": "chaos", "jurisdiction": "DE",
                     "operator": {"name": "Example", "jurisdiction": "DE"}},
        });
        self.call(self.admin.create(api::kinds::SITE, None, &site, false))
            .expect("create the site");
        let server = self.slots[0].process.as_ref().expect("server-1 runs");
        for i in 1..=AGENTS {
            let token =
                testkit::ok(&server.cli(&["node", "join-token", "create", "--site", "chaos"]));
            let name = format!("chaos-node-{i}");
            let cgroup = Cgroup::create(&format!("{}/agent-{i}", self._cgroups.relative()));
            let log_path = self.work().join("logs").join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path).expect("agent log");
            let mut cmd = cgroup.command(&self.bin);
            cmd.args(["agent", "--server", &self.balancer.url(), "--data-dir"])
                .arg(self.work().join(&name))
                .args(["--name", &name, "--heartbeat", "500ms", "--grace", "1s"])
                .args(["--join-token", token.trim()])
                .env("MERIDIAN_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log);
            let child = cmd.spawn().expect("the agent starts");
            self.agents.push(AgentProcess { child, cgroup });
        }
    }

    fn nodes(&self) -> Result<Vec<Node>, String> {
        typed(
            self.call(self.admin.list_all(
                api::kinds::NODE,
                None,
                &client::ListOptions::default(),
            ))?,
        )
    }

    fn allocations(&self) -> Result<Vec<Allocation>, String> {
        typed(self.call(self.admin.list_all(
            api::kinds::ALLOCATION,
            None,
            &client::ListOptions::default(),
        ))?)
    }

    fn workloads_raw(&self) -> Result<Vec<Value>, String> {
        self.call(
            self.admin
                .list_all(api::kinds::WORKLOAD, None, &client::ListOptions::default()),
        )
    }

    /// Waits until every agent's node is Ready.
    pub fn wait_nodes_ready(&self) -> Vec<Node> {
        wait_until(SETTLE, "every agent's node to be Ready", || {
            let nodes = self.nodes()?;
            let ready = nodes
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(NodePhase::Ready))
                .count();
            if ready == AGENTS {
                Ok(nodes)
            } else {
                Err(format!("{ready} of {AGENTS} nodes Ready"))
            }
        })
    }

    /// Waits until `more` writes were acknowledged after this call.
    pub fn wait_writes(&self, what: &str, more: u64) -> Duration {
        let start = Instant::now();
        let from = self.writer().acknowledged();
        wait_until(SETTLE, what, || {
            let now = self.writer().acknowledged();
            if now >= from + more {
                Ok(())
            } else {
                Err(format!(
                    "{} acknowledged since, {} failed in all",
                    now - from,
                    self.writer().failed()
                ))
            }
        });
        start.elapsed()
    }

    pub fn acknowledged(&self) -> u64 {
        self.writer().acknowledged()
    }

    /// The longest time without an acknowledged write between `from` and `to`.
    pub fn write_gap(&self, from: Instant, to: Instant) -> Duration {
        self.writer().longest_gap(from, to)
    }

    /// Creates a workload through the balancer (retrying until a server acknowledges it).
    pub fn create_workload(&self, body: &Value) {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        wait_until(
            SETTLE,
            &format!("workload {name} to be created"),
            || match self.call(
                self.admin
                    .create(api::kinds::WORKLOAD, Some(PROJECT), body, false),
            ) {
                Ok(_) => Ok(()),
                Err(e) if e.contains("already exists") => Ok(()),
                Err(e) => Err(e),
            },
        );
    }

    /// Deletes a workload (retrying until a server answers; gone is fine).
    pub fn delete_workload(&self, name: &str) {
        wait_until(
            SETTLE,
            &format!("workload {name} to be deleted"),
            || match self.call(self.admin.delete(api::kinds::WORKLOAD, Some(PROJECT), name)) {
                Ok(_) => Ok(()),
                Err(e) if e.contains("not found") => Ok(()),
                Err(e) => Err(e),
            },
        );
    }

    /// Live allocations of workload `name`, as a server of `slot` lists them.
    pub fn allocations_of(&self, slot: usize, name: &str) -> Result<usize, String> {
        let client = self.slots[slot]
            .client
            .as_ref()
            .ok_or("the server is not running")?;
        let list = self.call(client.list(
            api::kinds::ALLOCATION,
            Some(PROJECT),
            &client::ListOptions {
                label_selector: Some(format!("meridian.dev/workload={name}")),
                ..Default::default()
            },
        ))?;
        Ok(list["items"].as_array().map_or(0, Vec::len))
    }

    /// New work is placed and runs: creates a small probe workload and waits until its
    /// allocation is running on an agent; deletes the previous probe. Returns how long
    /// the placement took.
    pub fn probe(&mut self) -> Duration {
        let start = Instant::now();
        let name = format!("probe-{}", self.round);
        self.create_workload(&writer::workload(&name, 1, PROBE_MILLIS, 0));
        wait_until(SETTLE, &format!("{name} to be placed and running"), || {
            let allocations = self.allocations()?;
            let phases: Vec<AllocationPhase> = allocations
                .iter()
                .filter(|a| a.spec.workload == name)
                .map(|a| a.status.as_ref().map(|s| s.phase).unwrap_or_default())
                .collect();
            if phases.contains(&AllocationPhase::Running) {
                Ok(())
            } else {
                Err(format!("its allocations' phases: {phases:?}"))
            }
        });
        let took = start.elapsed();
        if let Some(previous) = self.last_probe.replace(name) {
            self.delete_workload(&previous);
        }
        took
    }

    /// Stops the writer until the guard drops.
    pub fn pause_writer(&self) -> writer::Paused {
        self.rt.block_on(self.writer().pause())
    }

    /// `etcdctl endpoint health` of member `index`: it serves again.
    pub fn member_healthy(&self, index: usize) -> Result<(), String> {
        let endpoint = &self.cluster.endpoints()[index];
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                endpoint,
                "--command-timeout",
                "2s",
                "endpoint",
                "health",
            ])
            .output()
            .map_err(|e| format!("etcdctl cannot run ({e}): apt-get install etcd-client"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The raft leader among the members (`None` while there is none).
    pub fn etcd_leader(&self) -> Option<usize> {
        self.rt.block_on(self.cluster.leader()).ok()
    }

    /// The client port of every member (what a cut blocks).
    pub fn etcd_ports(&self) -> Vec<u16> {
        self.cluster
            .endpoints()
            .iter()
            .filter_map(|e| e.rsplit(':').next()?.parse().ok())
            .collect()
    }

    /// Which servers the balancer sends traffic to.
    pub fn balanced(&self) -> Vec<usize> {
        self.balancer.healthy()
    }
}

impl Drop for Estate {
    fn drop(&mut self) {
        self.writer = None;
        let keep = std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some();
        if let Some(work) = keep.then(|| self.work.take()).flatten() {
            // The members' logs too: the cluster deletes its directory with it.
            for i in 1..=MEMBERS {
                let name = format!("m{i}.log");
                let _ = std::fs::copy(
                    self.cluster.dir().join(&name),
                    work.path().join("logs").join(format!("etcd-{name}")),
                );
            }
            let kept = work.keep();
            eprintln!(
                "chaos estate kept for inspection: {} (server and agent logs in logs/)",
                kept.display()
            );
        }
    }
}

/// Decodes a list's items as `T` (the API's own types: a renamed field fails to compile).
fn typed<T: serde::de::DeserializeOwned>(items: Vec<Value>) -> Result<Vec<T>, String> {
    items
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| format!("undecodable object: {e}")))
        .collect()
}
