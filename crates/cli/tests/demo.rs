//! `meridian demo --exit`: the example estate loads, simulated agents make its instances
//! run, and (on Linux) a real agent on this machine runs the demo's local service.

use std::process::Command;

use testkit::{ok, run, stderr};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// The number before `word` in `text` (`"12 running"` → 12).
fn count_before(text: &str, word: &str) -> Option<u64> {
    let head = &text[..text.find(word)?];
    head.split_whitespace().last()?.parse().ok()
}

#[test]
fn demo_runs_instances_on_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--exit", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("MERIDIAN_LOG", "warn");
    let out = run(cmd, None);
    ok(&out);
    let text = stderr(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("Instances: "))
        .unwrap_or_else(|| panic!("no Instances line:\n{text}"));
    let running = count_before(line, "running on").expect("a count");
    assert!(running > 0, "{line}");
    assert!(line.contains("(simulated agents)"), "{line}");
    let local = text
        .lines()
        .find(|l| l.starts_with("Local agent: "))
        .unwrap_or_else(|| panic!("no Local agent line:\n{text}"));
    if cfg!(target_os = "linux") {
        assert!(
            local.contains("runs default/local-clock"),
            "{local}\n{text}"
        );
        assert!(line.contains("1 on "), "the local service runs: {line}");
        assert!(text.contains("logs workload/local-clock"), "{text}");
    }
}

#[test]
fn demo_without_local_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "demo",
        "--exit",
        "--no-local-agent",
        "--listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(dir.path())
    .env("MERIDIAN_LOG", "warn");
    let out = run(cmd, None);
    ok(&out);
    let text = stderr(&out);
    assert!(
        text.contains("Local agent: not started (--no-local-agent)"),
        "{text}"
    );
    assert!(text.contains(" running on "), "{text}");
}
