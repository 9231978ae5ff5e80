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

/// The welcome text's lines work as typed: over https, `meridian get workloads -A` with
/// the printed `export` line, and kubectl with the kubeconfig `meridian kubeconfig`
/// prints (kubectl sends its token only over TLS). The demo serves until stopped.
#[test]
fn the_welcome_lines_work_over_https_with_the_cli_and_kubectl() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Command::new(BIN)
        .args([
            "demo",
            "--no-local-agent",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("MERIDIAN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meridian demo starts");
    // Killed on every way out of the test, panics included.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr_pipe = demo.stderr.take().expect("stderr");
    let demo = Kill(demo);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut text = String::new();
    while !text.contains("Press Ctrl-C to stop.") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(e) => panic!("the demo printed no welcome ({e}):\n{text}"),
        }
    }

    // export MERIDIAN_SERVER=https://… MERIDIAN_TOKEN=… MERIDIAN_CA_FILE=…
    let export = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("export "))
        .unwrap_or_else(|| panic!("no export line:\n{text}"));
    let env: Vec<(String, String)> = export
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("KEY=VALUE");
            (k.to_owned(), v.trim_matches('\'').to_owned())
        })
        .collect();
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["MERIDIAN_SERVER", "MERIDIAN_TOKEN", "MERIDIAN_CA_FILE"],
        "{export}"
    );
    assert!(env[0].1.starts_with("https://127.0.0.1:"), "{export}");
    assert_eq!(
        std::path::Path::new(&env[2].1),
        dir.path().join("ca.crt"),
        "{export}"
    );
    assert!(text.contains("Fingerprint  sha256:"), "{text}");
    for line in [
        "get workloads -A",
        "kubeconfig > demo.kubeconfig",
        "kubectl --kubeconfig demo.kubeconfig get workloads -A",
    ] {
        assert!(text.contains(line), "the welcome shows {line:?}:\n{text}");
    }

    // As a new user's shell would run them: no config file, no kubeconfig of their own.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let meridian = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOME", &home)
            .env_remove("MERIDIAN_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KUBECONFIG");
        run(cmd, None)
    };
    let workloads = ok(&meridian(&["get", "workloads", "-A"]));
    assert!(workloads.contains("payroll-api"), "{workloads}");
    let kubeconfig = ok(&meridian(&["kubeconfig"]));
    assert!(
        kubeconfig.contains("certificate-authority-data"),
        "{kubeconfig}"
    );
    let kubeconfig_file = home.join("demo.kubeconfig");
    std::fs::write(&kubeconfig_file, kubeconfig).expect("write kubeconfig");
    let kubectl = std::env::var("MERIDIAN_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let mut cmd = Command::new(&kubectl);
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig_file)
        .args(["get", "workloads", "-A"])
        .env("HOME", &home)
        .env("KUBECACHEDIR", home.join("kube-cache"));
    let listed = cmd.output().unwrap_or_else(|e| {
        panic!("kubectl ({kubectl}) must be installed (scripts/test installs it): {e}")
    });
    let listed = ok(&listed);
    assert!(listed.contains("payroll-api"), "{listed}");
    drop(demo);
}
