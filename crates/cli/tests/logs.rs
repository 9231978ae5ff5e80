//! `meridian logs` end to end: a real server process, a real agent process running an
//! exec task, the CLI reading the task's output through the server (the agent only dials
//! out), and the refusals a user meets (another project, a node without an agent, a
//! workload not placed yet).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use testkit::{ServerProcess, examples_dir, ok, stderr, stdout, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// A `meridian agent` child process, killed on drop.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills every process whose command line holds the marker, however the test ends (tasks
/// outlive their agent by design).
struct KillAllOnDrop(String);

impl Drop for KillAllOnDrop {
    fn drop(&mut self) {
        for pid in processes_with(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Pids of live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(marker) && !text.contains("cargo") && !text.contains(BIN) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn logs_prints_tails_and_follows_what_a_task_writes() {
    let s = ServerProcess::start(BIN, &[]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().expect("utf-8"),
    ]));
    let tmp = tempfile::tempdir().expect("tempdir");
    let token = ok(&s.cli(&["node", "join-token", "create", "--site", "onprem-frankfurt"]));
    let _agent = AgentProcess(
        Command::new(BIN)
            .args(["agent", "--server", &s.url, "--data-dir"])
            .arg(tmp.path().join("agent"))
            .args(["--name", "logs-a", "--heartbeat", "300ms", "--grace", "2s"])
            .args(["--join-token", token.trim()])
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent starts"),
    );
    // The task prints three lines and one on stderr, then waits for the test's signal
    // (a file) to print one more: a line written after `logs -f` started.
    let go = tmp.path().join("go");
    let marker = format!("{}", 800_000 + std::process::id() % 100_000);
    let _cleanup = KillAllOnDrop(marker.clone());
    s.apply(
        tmp.path(),
        "printer.yaml",
        &format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: printer, namespace: default}}\n\
             spec:\n  type: service\n  replicas: 1\n  task:\n    driver: exec\n\
             \x20   command: [/bin/sh, -c, \"echo line 1; echo line 2; echo line 3; echo oops >&2; \
             i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done; \
             echo late line; exec sleep {marker}\"]\n\
             \x20   resources: {{cpu: 100m, memory: 32Mi}}\n",
            go = go.display()
        ),
    );
    let stored = wait_until(
        Duration::from_secs(60),
        "the task's output readable through the server",
        || {
            let o = s.cli(&["logs", "printer-0"]);
            let out = stdout(&o);
            if o.status.success() && out.contains("line 3") {
                Ok(out)
            } else {
                Err(format!("{out}{}", stderr(&o)))
            }
        },
    );
    assert_eq!(stored, "line 1\nline 2\nline 3\n");

    assert_eq!(
        ok(&s.cli(&["logs", "printer-0", "--tail", "2"])),
        "line 2\nline 3\n"
    );
    assert_eq!(ok(&s.cli(&["logs", "printer-0", "--stderr"])), "oops\n");
    assert_eq!(
        ok(&s.cli(&["logs", "printer-0", "--stream", "all"])),
        "line 1\nline 2\nline 3\noops\n"
    );
    assert_eq!(
        ok(&s.cli(&["logs", "workload/printer", "--tail", "1"])),
        "line 3\n"
    );
    assert_eq!(
        ok(&s.cli(&["logs", "printer-0", "--limit-bytes", "5"])),
        "line "
    );

    // Follow: what is stored, then a line the task writes after the request started.
    let mut follow = s
        .command(&s.token, &["logs", "printer-0", "-f", "--tail", "1"])
        .spawn()
        .expect("logs -f runs");
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(follow.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in lines.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no {what} from logs -f: {e}"))
    };
    assert_eq!(next("stored line"), "line 3");
    std::fs::write(&go, "").expect("signal the task");
    assert_eq!(next("new line"), "late line");
    // Ctrl-C ends it cleanly.
    Command::new("kill")
        .args(["-INT", &follow.id().to_string()])
        .status()
        .expect("kill");
    let status = follow.wait().expect("logs -f exits");
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean end");

    // Deleting the workload stops the task, and a follow ends by itself with it.
    let mut follow = s
        .command(&s.token, &["logs", "printer-0", "-f", "--tail", "1"])
        .spawn()
        .expect("logs -f runs");
    let mut first = String::new();
    BufReader::new(follow.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first, "late line\n");
    ok(&s.cli(&["delete", "workload", "printer"]));
    wait_until(
        Duration::from_secs(30),
        "the task stopped with its workload",
        || processes_with(&marker).is_empty(),
    );
    let ended = wait_until(
        Duration::from_secs(30),
        "logs -f to end once its allocation went away",
        || follow.try_wait().expect("wait"),
    );
    assert_eq!(ended.code(), Some(0), "logs -f exits 0");
}

#[test]
fn logs_refusals_say_what_to_do() {
    // Only the scheduler writes allocations: jobs pinned to a node, that never restart,
    // so they stay where they were placed even when their node goes away.
    let s = ServerProcess::start(BIN, &[]);
    for file in ["projects.yaml", "sites.yaml", "nodes.yaml"] {
        ok(&s.cli(&[
            "apply",
            "-f",
            examples_dir().join(file).to_str().expect("utf-8"),
        ]));
    }
    s.mark_nodes_ready();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pinned_job = |name: &str, node: &str| {
        format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  type: job\n  replicas: 1\n  restart: {{policy: never}}\n  task:\n    driver: exec\n\
             \x20   command: [/bin/true]\n    resources: {{cpu: 100m, memory: 32Mi}}\n  placement:\n\
             \x20   matchExpressions: [{{key: node.name, operator: In, values: [{node}]}}]\n"
        )
    };
    s.apply(
        tmp.path(),
        "ghost.yaml",
        &pinned_job("ghost", "fra-rhel-02"),
    );
    s.apply(
        tmp.path(),
        "quiet.yaml",
        &pinned_job("quiet", "fra-rhel-01"),
    );
    wait_until(
        Duration::from_secs(30),
        "the scheduler to place both jobs",
        || {
            let out = stdout(&s.cli(&["get", "allocations"]));
            if out.contains("ghost-0") && out.contains("quiet-0") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    ok(&s.cli(&["delete", "node", "fra-rhel-02"]));

    let missing = s.cli(&["logs", "nothing-0"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    // A viewer of another project: 403, whatever exists there.
    let viewer = ok(&s.cli(&["token", "create", "--role", "viewer", "-n", "research"]));
    let denied = s.cli_as(viewer.trim(), &["logs", "ghost-0"]);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    assert!(
        stderr(&denied).contains("cannot get allocations/log in project \"default\""),
        "{}",
        stderr(&denied)
    );
    let denied = s.cli_as(viewer.trim(), &["logs", "nothing-0"]);
    assert!(stderr(&denied).contains("forbidden"), "{}", stderr(&denied));

    // On a node nobody registered: no agent can answer.
    let ghost = s.cli(&["logs", "ghost-0"]);
    assert!(!ghost.status.success());
    assert!(
        stderr(&ghost).contains("node \"fra-rhel-02\", which is not registered"),
        "{}",
        stderr(&ghost)
    );

    // A workload that has no allocation yet.
    s.apply(
        tmp.path(),
        "waiting.yaml",
        &pinned_job("waiting", "no-such-node"),
    );
    let waiting = s.cli(&["logs", "workload/waiting"]);
    assert_eq!(waiting.status.code(), Some(1), "{}", stderr(&waiting));
    assert!(
        stderr(&waiting).contains("has no allocations yet")
            && stderr(&waiting).contains("meridian explain workload waiting"),
        "{}",
        stderr(&waiting)
    );

    // A registered node whose agent does not run: the server gives up after 10 s.
    let quiet = s.cli(&["logs", "quiet-0"]);
    assert!(!quiet.status.success());
    assert!(
        stderr(&quiet).contains("node \"fra-rhel-01\" did not answer")
            && stderr(&quiet).contains("meridian get node fra-rhel-01"),
        "{}",
        stderr(&quiet)
    );
}
