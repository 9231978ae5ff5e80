//! `meridian rollout …` and `meridian scale` end to end: a real server process, simulated
//! nodes (`meridian sim nodes`, which report every allocation placed on them as
//! running), and the CLI as a user runs it.

use std::process::{Child, Command, Stdio};

use testkit::{ServerProcess, failed, ok};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// `meridian sim nodes` against `s`, killed on drop.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim(s: &ServerProcess, count: usize) -> Sim {
    let child = Command::new(BIN)
        .args([
            "sim",
            "nodes",
            "--count",
            &count.to_string(),
            "--cpu",
            "4",
            "--memory",
            "8Gi",
            "--heartbeat",
            "1s",
        ])
        .env("MERIDIAN_SERVER", &s.url)
        .env("MERIDIAN_TOKEN", &s.token)
        .env("MERIDIAN_CONFIG", s.dir.join("cli-config.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim nodes start");
    Sim(child)
}

const WEB: &str = "apiVersion: meridian.dev/v1
kind: Workload
metadata: {name: web, namespace: default}
spec:
  type: service
  replicas: 4
  update: {maxSurge: 1, maxUnavailable: 1}
  task:
    driver: exec
    command: [/bin/sleep, \"3600\"]
    env: {VERSION: \"1\"}
    resources: {cpu: 100m, memory: 64Mi}
";

#[test]
fn rollout_status_history_undo_pause_resume_restart_and_scale() {
    let s = ServerProcess::start(BIN, &[]);
    let _sim = sim(&s, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    s.apply(dir.path(), "web.yaml", WEB);
    let out = ok(&s.cli(&["rollout", "status", "workload/web", "--timeout", "60s"]));
    assert!(out.contains("successfully rolled out"), "{out}");

    // A new version rolls out; status waits for it and history shows both revisions.
    s.apply(
        dir.path(),
        "web.yaml",
        &WEB.replace("VERSION: \"1\"", "VERSION: \"2\""),
    );
    let out = ok(&s.cli(&["rollout", "status", "web", "--timeout", "60s"]));
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = ok(&s.cli(&["rollout", "history", "web"]));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines[0], "workload.meridian.dev/web", "{history}");
    assert!(lines[1].starts_with("REVISION"), "{history}");
    assert_eq!(lines.len(), 4, "{history}");
    assert!(lines[3].contains("current"), "{history}");
    let shown = ok(&s.cli(&["rollout", "history", "web", "--revision", "1"]));
    assert!(
        shown.contains("VERSION: '1'") || shown.contains("VERSION: \"1\""),
        "{shown}"
    );

    // Undo: back to the first template, as a new revision 3.
    let out = ok(&s.cli(&["rollout", "undo", "web"]));
    assert!(out.contains("rolled back to revision 1"), "{out}");
    ok(&s.cli(&["rollout", "status", "web", "--timeout", "60s"]));
    let w = ok(&s.cli(&["get", "workload", "web", "-o", "json"]));
    let w: serde_json::Value = serde_json::from_str(&w).expect("json");
    assert_eq!(w["spec"]["task"]["env"]["VERSION"], "1", "{w:#}");
    assert_eq!(w["status"]["updateRevision"], 3, "{w:#}");
    assert_eq!(w["status"]["availableReplicas"], 4, "{w:#}");
    let allocs = ok(&s.cli(&["get", "allocations", "-o", "wide"]));
    assert!(allocs.contains("REVISION"), "{allocs}");

    // Pause holds a change back; resume lets it through.
    ok(&s.cli(&["rollout", "pause", "web"]));
    let again = failed(&s.cli(&["rollout", "pause", "web"]));
    assert!(again.contains("already paused"), "{again}");
    // (apply sets the whole spec, so the manifest says paused too)
    s.apply(
        dir.path(),
        "web.yaml",
        &WEB.replace("VERSION: \"1\"", "VERSION: \"4\"")
            .replace("replicas: 4", "replicas: 4\n  paused: true"),
    );
    let out = ok(&s.cli(&["rollout", "status", "web", "--watch=false"]));
    assert!(out.contains("Waiting for workload"), "{out}");
    ok(&s.cli(&["rollout", "resume", "web"]));
    ok(&s.cli(&["rollout", "status", "web", "--timeout", "60s"]));

    // Restart replaces every instance with the same spec.
    let before = ok(&s.cli(&["get", "allocations", "-o", "name"]));
    let out = ok(&s.cli(&["rollout", "restart", "web"]));
    assert!(out.contains("restarted"), "{out}");
    ok(&s.cli(&["rollout", "status", "web", "--timeout", "60s"]));
    let after = ok(&s.cli(&["get", "allocations", "-o", "name"]));
    assert!(
        before.lines().all(|l| !after.lines().any(|a| a == l)),
        "every instance replaced:\n{before}\n{after}"
    );

    // Scale, with and without a precondition.
    let refused = failed(&s.cli(&["scale", "web", "--replicas", "2", "--current-replicas", "9"]));
    assert!(refused.contains("--current-replicas 9"), "{refused}");
    let out = ok(&s.cli(&["scale", "workload/web", "--replicas", "2"]));
    assert_eq!(out.trim(), "workload.meridian.dev/web scaled");
    ok(&s.cli(&["rollout", "status", "web", "--timeout", "60s"]));
    let w = ok(&s.cli(&["get", "workload", "web", "-o", "json"]));
    let w: serde_json::Value = serde_json::from_str(&w).expect("json");
    assert_eq!(w["status"]["replicas"], 2, "{w:#}");

    // Wrong targets are named.
    let wrong = failed(&s.cli(&["rollout", "status", "node/web"]));
    assert!(wrong.contains("only workloads are rolled out"), "{wrong}");
    let missing = failed(&s.cli(&["rollout", "undo", "web", "--to-revision", "42"]));
    assert!(missing.contains("no revision 42"), "{missing}");
}
