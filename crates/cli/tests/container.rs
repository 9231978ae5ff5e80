//! A container workload end to end on the node's real container engine (Docker here): a
//! real server, a real agent, an image built at test time from the static busybox binary
//! (`support/image.rs`), its output through `meridian logs`, the agent killed and
//! restarted (it adopts the running container, and its logs go on without repeats), and
//! the workload deleted (the container is stopped and removed).
//!
//! Needs `docker` with a running engine and `busybox-static`: a missing one fails the test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::{ServerProcess, examples_dir, ok, stderr, stdout, wait_until};

#[path = "../../agent/tests/support/image.rs"]
mod image;
use image::{docker, docker_ok, need_engine};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");
const IMAGE: &str = "meridian-test/busybox-cli:1";

/// A `meridian agent` child process, killed on drop.
struct AgentProcess(Child);

impl AgentProcess {
    fn start(s: &ServerProcess, dir: &Path, token: Option<&str>) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["agent", "--server", &s.url, "--data-dir"])
            .arg(dir)
            .args([
                "--name",
                "box-host",
                "--heartbeat",
                "300ms",
                "--grace",
                "2s",
            ])
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = token {
            cmd.args(["--join-token", t]);
        }
        AgentProcess(cmd.spawn().expect("agent starts"))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes every container of the test's image (a replacement started by an agent the
/// test left behind included) and the image, however the test ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (_, ids, _) = docker(&["ps", "-a", "-q", "--filter", &format!("ancestor={IMAGE}")]);
        for id in ids.split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let _ = docker(&["rmi", "-f", IMAGE]);
    }
}

fn allocation(s: &ServerProcess, name: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&stdout(&s.cli(&["get", "allocation", name, "-o", "json"]))).ok()
}

/// The highest `tick N` in `text`.
fn last_tick(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_container_workload_logs_survives_an_agent_restart_and_is_removed() {
    need_engine();
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup;
    image::build_busybox_image(tmp.path(), IMAGE);

    // A lease long enough that the agent's restart does not lose the node (which would
    // replace the allocation: a new uid, a new container).
    let s = ServerProcess::start(BIN, &["--node-lease", "60s"]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    let token = s.join_token("onprem-frankfurt");
    let agent_dir = tmp.path().join("box-host");
    let mut agent = AgentProcess::start(&s, &agent_dir, Some(token.trim()));
    wait_until(
        Duration::from_secs(30),
        "the node offers containers",
        || {
            let out = stdout(&s.cli(&["get", "node", "box-host", "-o", "json"]));
            if out.contains("\"container\"") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );

    // A static host port of this test's own (dynamic ones start at 20000 in every test's
    // estate, and this host runs several estates at once).
    let port = 40000 + std::process::id() % 20000;
    s.apply(
        tmp.path(),
        "ticker.yaml",
        &format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: ticker, namespace: default}}\n\
             spec:\n  type: service\n  task:\n    driver: container\n    image: {IMAGE}\n\
             \x20   command: [/bin/sh, -c, \"echo started; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done\"]\n\
             \x20   env: {{GREETING: hello}}\n\
             \x20   ports: [{{name: http, port: {port}, target: 8080}}]\n\
             \x20   resources: {{cpu: 250m, memory: 32Mi}}\n"
        ),
    );
    let running = wait_until(
        Duration::from_secs(60),
        "ticker-0 running",
        || match allocation(&s, "ticker-0") {
            Some(a) if a["status"]["phase"] == "running" => Ok(a),
            other => Err(other.map(|a| a["status"].to_string())),
        },
    );
    let message = running["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("limits enforced by the engine: cpus 0.25, memory 33554432 bytes"),
        "{message}"
    );
    let uid = running["metadata"]["uid"].as_str().expect("uid").to_owned();
    let name = format!("meridian-{uid}");
    // The scheduler's host port, published by the engine to the task's target port.
    let host_port = running["spec"]["ports"][0]["port"]
        .as_u64()
        .expect("a host port");
    let published = docker_ok(&["port", &name, "8080/tcp"]);
    assert!(
        published.contains(&format!(":{host_port}")),
        "8080/tcp published on {host_port}: {published}"
    );
    let id_before = docker_ok(&["inspect", "--format", "{{.Id}}", &name]);
    assert_eq!(
        docker_ok(&[
            "inspect",
            "--format",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
            &name
        ])
        .trim(),
        "250000000 33554432"
    );

    // The output through the server, stdout and stderr apart.
    let logs = |args: &[&str]| {
        let mut all = vec!["logs", "ticker-0"];
        all.extend_from_slice(args);
        let o = s.cli(&all);
        (o.status.success(), stdout(&o), stderr(&o))
    };
    wait_until(
        Duration::from_secs(30),
        "ticks through meridian logs",
        || {
            let (ok, out, err) = logs(&[]);
            if ok && out.starts_with("started\n") && last_tick(&out) >= 2 {
                Ok(())
            } else {
                Err(format!("{out}{err}"))
            }
        },
    );
    assert_eq!(logs(&["--stderr"]).1, "oops\n");

    // The agent dies and comes back: the container ran on, the new agent adopts it (same
    // container, no second one) and its logs go on, without repeating what was stored.
    // (Logs are read through the agent: read them before it goes.)
    let tick_at_death = last_tick(&logs(&[]).1);
    drop(agent);
    std::thread::sleep(Duration::from_secs(1));
    agent = AgentProcess::start(&s, &agent_dir, None);
    wait_until(
        Duration::from_secs(30),
        "logs go on after the restart",
        || {
            let out = logs(&[]).1;
            let tick = last_tick(&out);
            if tick > tick_at_death + 5 {
                Ok(())
            } else {
                Err(tick)
            }
        },
    );
    let out = logs(&[]).1;
    assert_eq!(out.matches("started").count(), 1, "{out}");
    assert_eq!(out.matches("tick 1\n").count(), 1, "{out}");
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.Id}}", &name]),
        id_before,
        "the same container, adopted"
    );
    let (_, ids, _) = docker(&["ps", "-q", "--filter", &format!("label=meridian.uid={uid}")]);
    assert_eq!(ids.lines().count(), 1, "one container runs: {ids}");
    wait_until(Duration::from_secs(30), "ticker-0 running again", || {
        let a = allocation(&s, "ticker-0");
        match a.as_ref().map(|a| a["status"]["phase"].clone()) {
            Some(p) if p == "running" => Ok(()),
            _ => Err(a),
        }
    });

    // Deleted: the container is stopped and removed.
    ok(&s.cli(&["delete", "workload", "ticker"]));
    wait_until(Duration::from_secs(60), "the container is removed", || {
        let (_, ids, _) = docker(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]);
        if ids.trim().is_empty() {
            Ok(())
        } else {
            Err(ids)
        }
    });
    drop(agent);
}
