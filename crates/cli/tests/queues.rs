//! Queues from the command line against a real server process (issue 16):
//! `meridian get queues` lists pending and admitted jobs with usage against quota,
//! `meridian explain` says why a queued job waits, and a queue of a cohort no other
//! queue names is marked inactive.

use std::time::Duration;

use testkit::{ServerProcess, ok, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

const MANIFESTS: &str = r#"
apiVersion: meridian.dev/v1
kind: Project
metadata: {name: research}
spec: {defaultQueue: small}
---
apiVersion: meridian.dev/v1
kind: Queue
metadata: {name: small}
spec:
  cohort: alone
  quota:
    cpu: {nominal: "2"}
---
apiVersion: meridian.dev/v1
kind: Workload
metadata: {name: big, namespace: research}
spec:
  type: job
  task:
    driver: exec
    command: ["/bin/true"]
    resources: {cpu: 4, memory: 1Gi}
"#;

#[test]
fn get_queues_and_explain_say_where_a_job_waits_and_why() {
    let s = ServerProcess::start(BIN, &[]);
    let file = s.dir.join("queues.yaml");
    std::fs::write(&file, MANIFESTS).expect("write manifests");
    ok(&s.cli(&["apply", "-f", file.to_str().expect("path")]));

    // The project's default queue takes the job; it needs 4 cores of a queue of 2.
    let table = wait_until(Duration::from_secs(30), "the queue counts the job", || {
        let out = ok(&s.cli(&["get", "queues"]));
        out.lines()
            .any(|l| l.starts_with("small") && l.split_whitespace().nth(3) == Some("1"))
            .then_some(out)
    });
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "COHORT", "STRATEGY", "PENDING", "ADMITTED", "USAGE", "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("BestEffortFIFO"), "{table}");
    assert!(table.contains("cpu 0/2"), "{table}");

    let explain = ok(&s.cli(&["explain", "workload", "big", "-n", "research"]));
    assert!(
        explain.contains("Queue:      small, position 0"),
        "{explain}"
    );
    assert!(explain.contains("OverNominalQuota"), "{explain}");
    assert!(
        explain.contains("queue small over its nominal cpu quota: 0 used + 4 requested > 2"),
        "{explain}"
    );
    assert!(
        explain.contains("cohort alone has no other queue"),
        "{explain}"
    );

    // describe lists the jobs waiting in the queue, in order, with their reasons.
    let described = ok(&s.cli(&["describe", "queue", "small"]));
    let pending = described
        .split("Pending Workloads:")
        .nth(1)
        .unwrap_or_else(|| panic!("a Pending Workloads section: {described}"));
    let row: Vec<&str> = pending
        .lines()
        .find(|l| l.contains("big"))
        .unwrap_or_else(|| panic!("big is listed: {described}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["0", "research", "big", "0", "OverNominalQuota"],
        "{described}"
    );

    let q = ok(&s.cli(&["get", "queue", "small", "-o", "json"]));
    let q: serde_json::Value = serde_json::from_str(&q).expect("json");
    let active = q["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Active"))
        .cloned()
        .unwrap_or_else(|| panic!("Active condition: {q}"));
    assert_eq!(active["status"], "False");
    assert_eq!(active["reason"], "CohortNotFound");

    // Raising the quota admits it (no nodes: it then waits for capacity, admitted by
    // quota, with the reason saying so).
    std::fs::write(
        &file,
        MANIFESTS.replace(r#"{nominal: "2"}"#, r#"{nominal: "8"}"#),
    )
    .expect("write manifests");
    ok(&s.cli(&["apply", "-f", file.to_str().expect("path")]));
    wait_until(
        Duration::from_secs(30),
        "the job waits for capacity",
        || {
            let out = ok(&s.cli(&["get", "workload", "big", "-n", "research", "-o", "json"]));
            let w: serde_json::Value = serde_json::from_str(&out).expect("json");
            (w["status"]["queue"]["reason"] == "NoCapacity").then_some(())
        },
    );
}

const COHORTS: &str = r#"
apiVersion: meridian.dev/v1
kind: Cohort
metadata: {name: company}
spec:
  quota:
    gpusByModel:
      H100: {nominal: 8}
---
apiVersion: meridian.dev/v1
kind: Cohort
metadata: {name: research}
spec:
  parent: company
  weight: 2
  quota:
    cpu: {nominal: "16", borrowingLimit: "8"}
  flavors:
    - name: spot
      quota: {cpu: {nominal: "4"}}
"#;

#[test]
fn get_cohorts_shows_the_tree_and_a_loop_is_refused_naming_the_field() {
    let s = ServerProcess::start(BIN, &[]);
    let file = s.dir.join("cohorts.yaml");
    std::fs::write(&file, COHORTS).expect("write manifests");
    ok(&s.cli(&["apply", "-f", file.to_str().expect("path")]));
    let table = ok(&s.cli(&["get", "cohorts", "-o", "wide"]));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME", "PARENT", "QUEUES", "QUOTA", "USAGE", "WEIGHT", "SHARE", "FLAVORS", "AGE"
        ],
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("research")
            && l.contains("company")
            && l.contains("cpu 16")
            && l.contains("spot: cpu 4")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("company") && l.contains("H100 8")),
        "{table}"
    );

    // describe lists what is under a cohort.
    let described = ok(&s.cli(&["describe", "cohort", "company"]));
    let members = described
        .split("Members:")
        .nth(1)
        .unwrap_or_else(|| panic!("a Members section: {described}"));
    let row: Vec<&str> = members
        .lines()
        .find(|l| l.contains("research"))
        .unwrap_or_else(|| panic!("research is listed: {described}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["Cohort", "research", "cpu", "16", "-"], "{described}");

    // The company under research would be a loop: refused (exit 1), the field named.
    let looped = COHORTS.replacen("spec:\n  quota:", "spec:\n  parent: research\n  quota:", 1);
    std::fs::write(&file, looped).expect("write manifests");
    let out = s.cli(&["apply", "-f", file.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.parent") && err.contains("company -> research -> company"),
        "{err}"
    );
}
