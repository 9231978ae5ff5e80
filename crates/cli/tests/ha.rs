//! Several `meridian server` processes on one etcd cluster: they all serve the API, one
//! leads the controllers, and when the leader is killed (SIGKILL, no resignation) another
//! takes over and its controllers carry on. Real processes: a 3-member etcd cluster, two
//! servers sharing one data directory (CA, secrets key, admin token), the CLI.
//!
//! Needs `etcd` (Debian: `apt-get install etcd-server`); fails saying so without it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use store::etcd::testing::EtcdCluster;
use testkit::{ServerProcess, examples_dir, ok, stderr, stdout, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// Two servers, `server-a` and `server-b`, sharing one data directory (CA, secrets key,
/// admin token) and one prefix of a fresh 3-member etcd cluster.
struct HaEstate {
    a: ServerProcess,
    b: ServerProcess,
    _dir: tempfile::TempDir,
    _cluster: EtcdCluster,
    _runtime: tokio::runtime::Runtime,
}

impl HaEstate {
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let cluster = runtime
            .block_on(EtcdCluster::start(3))
            .unwrap_or_else(|e| panic!("cannot start a 3-member etcd cluster: {e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let a = replica(&cluster, dir.path(), "server-a");
        let b = replica(&cluster, dir.path(), "server-b");
        Self {
            a,
            b,
            _dir: dir,
            _cluster: cluster,
            _runtime: runtime,
        }
    }
}

fn replica(cluster: &EtcdCluster, dir: &Path, name: &str) -> ServerProcess {
    ServerProcess::builder(BIN)
        .data_dir(dir)
        .args([
            "--store",
            &cluster.url(),
            "--etcd-prefix",
            "/ha-test",
            "--server-name",
            name,
            "--leader-lease",
            "2s",
        ])
        .start()
}

/// The servers' list as one of them answers it.
fn servers(s: &ServerProcess) -> Value {
    serde_json::from_str(
        &s.get_text("/meridian/v1/servers")
            .expect("GET /meridian/v1/servers"),
    )
    .expect("JSON")
}

fn leader(s: &ServerProcess) -> Option<String> {
    servers(s)["leader"].as_str().map(str::to_owned)
}

fn workload(name: &str) -> String {
    format!(
        "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  \
         type: service\n  replicas: 1\n  task:\n    driver: exec\n    command: [/bin/sleep, \
         \"600\"]\n    resources: {{cpu: 100m, memory: 64Mi}}\n    os: {{family: linux}}\n"
    )
}

/// Waits until the scheduler placed `name`'s instance (an allocation exists).
fn wait_placed(s: &ServerProcess, name: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("workload {name} to be placed"),
        || {
            let out = s.cli(&["get", "allocations", "-o", "json"]);
            let list: Value = serde_json::from_str(&stdout(&out)).ok()?;
            list["items"]
                .as_array()?
                .iter()
                .any(|a| a["spec"]["workload"] == name)
                .then_some(())
        },
    );
}

#[test]
fn a_killed_leader_is_replaced_and_the_new_leaders_controllers_carry_on() {
    // Bound in this order so that they drop as the fields do: servers first.
    let HaEstate {
        _runtime,
        _cluster,
        _dir,
        a,
        b,
    } = HaEstate::start();

    // Both serve, both are listed, exactly one leads.
    let listed = wait_until(Duration::from_secs(30), "two servers, one leader", || {
        let list = servers(&b);
        let items = list["items"].as_array()?.clone();
        let leaders = items.iter().filter(|s| s["leader"] == true).count();
        (items.len() == 2 && leaders == 1).then_some(list)
    });
    let first = listed["leader"].as_str().expect("a leader").to_owned();
    assert_eq!(
        leader(&a).as_deref(),
        Some(first.as_str()),
        "both servers agree"
    );
    let table = ok(&a.cli(&["get", "servers"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&first) && l.contains('*')),
        "the leader is marked: {table}"
    );

    // Writes through either server; the leader's scheduler places them.
    for file in ["projects.yaml", "sites.yaml", "nodes.yaml"] {
        ok(&b.cli(&[
            "apply",
            "-f",
            examples_dir().join(file).to_str().expect("utf-8"),
        ]));
    }
    a.mark_nodes_ready();
    let files = tempfile::tempdir().expect("tempdir");
    a.apply(files.path(), "before.yaml", &workload("before"));
    wait_placed(&b, "before");

    // Kill the leader: no resignation, its lease has to expire.
    let (mut dead, survivor) = if first == "server-a" { (a, b) } else { (b, a) };
    let killed = Instant::now();
    dead.kill9();
    let second = wait_until(
        Duration::from_secs(30),
        "the surviving server to lead",
        || leader(&survivor).filter(|l| *l != first),
    );
    eprintln!(
        "failover: {second} leads {:?} after the SIGKILL of {first}",
        killed.elapsed()
    );
    // The new leader's scheduler places new work; the old leader's placement stands.
    survivor.apply(files.path(), "after.yaml", &workload("after"));
    wait_placed(&survivor, "after");
    let out = ok(&survivor.cli(&["get", "allocations", "-o", "json"]));
    let list: Value = serde_json::from_str(&out).expect("JSON");
    let before = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["spec"]["workload"] == "before")
        .count();
    assert_eq!(
        before, 1,
        "no allocation duplicated by the new leader: {out}"
    );
    // The dead server's identity went with its lease.
    wait_until(
        Duration::from_secs(30),
        "the dead server to leave the list",
        || (servers(&survivor)["items"].as_array()?.len() == 1).then_some(()),
    );
    // Both terms are in the audit log, and the chain verifies.
    ok(&survivor.cli(&["audit", "verify"]));
    let log = ok(&survivor.cli(&["audit", "log"]));
    assert!(
        log.contains("server/server-a") && log.contains("server/server-b"),
        "each term is an audit entry: {log}"
    );

    // A backup on etcd is an etcd snapshot, which `meridian restore` sends to etcdutl.
    let snapshot = files.path().join("etcd.snapshot");
    let said = ok(&survivor.cli(&["backup", "--out", snapshot.to_str().expect("utf-8")]));
    assert!(said.contains("(etcd-snapshot, "), "{said}");
    assert!(said.contains("etcdutl snapshot restore"), "{said}");
    let out = std::process::Command::new(BIN)
        .arg("restore")
        .arg(&snapshot)
        .arg("--data-dir")
        .arg(files.path().join("restored"))
        .output()
        .expect("run meridian restore");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        testkit::stderr(&out).contains("is an etcd snapshot"),
        "{}",
        testkit::stderr(&out)
    );
}

/// A `meridian agent` child process, killed on drop (with the task it started, which
/// carries `marker` in its command line).
struct Agent(std::process::Child, String);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-f", &self.1])
            .status();
    }
}

#[test]
fn logs_are_read_through_a_server_the_agent_does_not_reach() {
    // Bound in this order so that they drop as the fields do: servers first.
    let HaEstate {
        _runtime,
        _cluster,
        _dir,
        a,
        b,
    } = HaEstate::start();
    ok(&a.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    // The agent dials server a only.
    let token = ok(&a.cli(&["node", "join-token", "create", "--site", "onprem-frankfurt"]));
    let work = tempfile::tempdir().expect("tempdir");
    let marker = format!("{}", 700_000 + std::process::id() % 100_000);
    let _agent = Agent(
        std::process::Command::new(BIN)
            .args(["agent", "--server", &a.url, "--data-dir"])
            .arg(work.path().join("agent"))
            .args(["--name", "ha-logs", "--heartbeat", "300ms", "--grace", "2s"])
            .args(["--join-token", token.trim()])
            .env("MERIDIAN_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("agent starts"),
        marker.clone(),
    );
    a.apply(
        work.path(),
        "printer.yaml",
        &format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: printer}}\nspec:\n  \
             type: service\n  replicas: 1\n  task:\n    driver: exec\n    command: [/bin/sh, -c, \
             \"echo one; echo two; echo oops >&2; exec sleep {marker}\"]\n    resources: {{cpu: \
             100m, memory: 32Mi}}\n"
        ),
    );
    // Read through server b: the session is published, mirrored by a, answered by the
    // agent through a, and relayed to b.
    let read = wait_until(
        Duration::from_secs(60),
        "the task's output read through the other server",
        || {
            let o = b.cli(&["logs", "printer-0"]);
            if o.status.success() && stdout(&o).contains("two") {
                Ok(stdout(&o))
            } else {
                Err(format!("{}{}", stdout(&o), stderr(&o)))
            }
        },
    );
    assert_eq!(read, "one\ntwo\n");
    assert_eq!(ok(&b.cli(&["logs", "printer-0", "--stderr"])), "oops\n");
    // And through the agent's own server, as before.
    assert_eq!(ok(&a.cli(&["logs", "printer-0", "--tail", "1"])), "two\n");
}

/// A list through one server sees every write acknowledged through the other before it.
/// Lists are served from each server's list cache (on by default with etcd), and a list
/// first waits until that cache holds the cluster's current revision (a consistent read,
/// as the kube-apiserver's watch cache gives): without that wait, server B's copy, one
/// etcd watch behind, would miss the create A has just acknowledged.
#[test]
fn a_list_through_one_server_sees_what_was_written_through_the_other() {
    let HaEstate {
        _runtime,
        _cluster,
        _dir,
        a,
        b,
    } = HaEstate::start();
    let (through_a, through_b) = (a.client(), b.client());
    let workloads = testkit::kind("Workload");
    _runtime.block_on(async {
        let project = serde_json::json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
            "metadata": {"name": "finance"}, "spec": {}});
        through_a
            .create(testkit::kind("Project"), None, &project, false)
            .await
            .expect("project");
        for i in 0..30 {
            let name = format!("w{i:02}");
            let object: Value = serde_json::json!({
                "apiVersion": "meridian.dev/v1", "kind": "Workload",
                "metadata": {"name": name},
                "spec": {"type": "service", "replicas": 1, "task": {"driver": "exec",
                    "command": ["/bin/sleep", "600"],
                    "resources": {"cpu": "100m", "memory": "64Mi"}, "os": {"family": "linux"}}}
            });
            through_a
                .create(workloads, Some("finance"), &object, false)
                .await
                .expect("create through server A");
            let listed = through_b
                .list_all(workloads, Some("finance"), &client::ListOptions::default())
                .await
                .expect("list through server B");
            assert!(
                listed
                    .iter()
                    .any(|w| w["metadata"]["name"] == name.as_str()),
                "server B's list right after A acknowledged {name} misses it"
            );
            assert_eq!(listed.len(), i + 1);
        }
    });
    let metrics = b.get_text("/metrics").expect("metrics");
    assert!(
        metrics.contains("meridian_lists_total{source=\"cache\"}"),
        "server B served its lists from its cache: {}",
        metrics
            .lines()
            .filter(|l| l.contains("meridian_lists"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
