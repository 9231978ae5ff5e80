//! What a task sees, end to end: a real server, a real agent joined with a token, and a
//! workload with a secret (as a variable and as a file), two ports (one dynamic, one
//! named in its health check), a host volume and the default unprivileged user. Read back
//! from the running process (`/proc`), the workload's endpoints and `meridian get
//! endpoints`; the secret's value never appears in the allocation, events or agent state.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::{ServerProcess, examples_dir, ok, stdout, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

struct Agent(Child);

/// Kills the task by its marker however the test ends (tasks outlive their agent by
/// design).
struct KillTask(String);

impl Drop for KillTask {
    fn drop(&mut self) {
        for pid in pgrep(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pgrep(marker: &str) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_task_sees_its_secret_ports_volume_and_user_and_is_published_as_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("shared");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("greeting"), "hello from the host\n").unwrap();
    let s = ServerProcess::start(BIN, &["--node-lease", "30s"]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().unwrap(),
    ]));
    ok(&s.cli(&[
        "create",
        "secret",
        "db",
        "--from-literal",
        "password=hunter2-very-secret",
        "-n",
        "default",
    ]));
    let token = s.join_token("onprem-frankfurt");
    let _agent = Agent(
        Command::new(BIN)
            .args(["agent", "--server", &s.url, "--data-dir"])
            .arg(dir.path().join("agent"))
            .args([
                "--name",
                "view-node",
                "--heartbeat",
                "300ms",
                "--grace",
                "2s",
            ])
            .args(["--join-token", token.trim()])
            .arg("--volume")
            .arg(format!("shared={}:ro", volume.display()))
            .args(["--advertise-address", "10.9.8.7"])
            // The agent's default log level (info), into a file: what an operator reads.
            .env_remove("MERIDIAN_LOG")
            // An admin token in the agent's environment must never reach a task.
            .env("MERIDIAN_TOKEN", &s.token)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(30), "the agent is Ready", || {
        let out = stdout(&s.cli(&["get", "nodes"]));
        if out.contains("Ready") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let marker = format!("task-view-{}", std::process::id());
    let _cleanup = KillTask(marker.clone());
    let manifest = format!(
        r#"apiVersion: meridian.dev/v1
kind: Workload
metadata: {{name: web, namespace: default}}
spec:
  type: service
  replicas: 1
  task:
    driver: exec
    command: ["/usr/bin/python3", "-c", "import os,socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', int(os.environ['MERIDIAN_PORT_HTTP']))); s.listen(); time.sleep(3600)", "{marker}"]
    ports:
      - {{name: http, port: 0}}
      - {{name: admin, port: 0}}
    env:
      - {{name: MODE, value: production}}
      - name: DB_PASSWORD
        valueFrom: {{secretRef: {{name: db, key: password}}}}
    secrets: [{{name: db}}]
    volumes: [{{name: shared, mountPath: data, readOnly: true}}]
    health: {{tcp: {{port: http}}, interval: 1s}}
    resources: {{cpu: 100m, memory: 64Mi}}
"#
    );
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifest).unwrap();
    ok(&s.cli(&["apply", "-f", file.to_str().unwrap()]));

    let pid = wait_until(Duration::from_secs(60), "the task runs", || {
        match pgrep(&marker).as_slice() {
            [pid] => Ok(*pid),
            other => Err(format!("{other:?}")),
        }
    });
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let get = |k: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    assert_eq!(get("DB_PASSWORD").as_deref(), Some("hunter2-very-secret"));
    assert_eq!(get("MODE").as_deref(), Some("production"));
    assert!(
        get("MERIDIAN_TOKEN").is_none(),
        "the agent's token leaked: {env:?}"
    );
    let http: u16 = get("MERIDIAN_PORT_HTTP").unwrap().parse().unwrap();
    let admin: u16 = get("MERIDIAN_PORT_ADMIN").unwrap().parse().unwrap();
    assert!(
        (20000..=32000).contains(&http) && http != admin,
        "{http} {admin}"
    );
    // The default account, not root.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid_line.split_whitespace().nth(1).unwrap().eq("0"),
        "{uid_line}"
    );
    // The secret as a file, 0400; the volume, read-only, inside the task's directory.
    let secrets_dir = get("MERIDIAN_SECRETS_DIR").unwrap();
    let secret_file = Path::new(&secrets_dir).join("db").join("password");
    let meta = std::fs::metadata(&secret_file).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    let root = format!("/proc/{pid}/root");
    let seen = std::fs::read_to_string(
        Path::new(&root)
            .join(cwd.strip_prefix("/").unwrap())
            .join("data/greeting"),
    );
    // The mount lives in the task's namespace: read it through /proc/PID/root.
    assert_eq!(seen.unwrap(), "hello from the host\n");

    // Healthy on its named port, then published with the advertised address.
    let endpoints = wait_until(Duration::from_secs(60), "the endpoint is published", || {
        let out = ok(&s.cli(&["get", "endpoints", "-n", "default"]));
        if out.contains(&format!("10.9.8.7:{http}")) {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(
        endpoints.lines().any(|l| l.starts_with("web")),
        "{endpoints}"
    );

    // The value is nowhere but in the task: not in the allocation, its events, the
    // agent's state file or the server's audit log.
    let alloc = ok(&s.cli(&["get", "allocations", "-n", "default", "-o", "json"]));
    let events = ok(&s.cli(&["get", "events", "-A", "-o", "json"]));
    let state =
        std::fs::read_to_string(dir.path().join("agent").join("state.json")).unwrap_or_default();
    let audit = ok(&s.cli(&["audit", "log"]));
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(
        log.contains("joined site onprem-frankfurt as node view-node"),
        "{log}"
    );
    assert!(log.contains("running allocation default/web-0"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
    for (what, text) in [
        ("allocation", &alloc),
        ("events", &events),
        ("agent state", &state),
        ("audit", &audit),
        ("agent log", &log),
    ] {
        assert!(
            !text.contains("hunter2-very-secret"),
            "the secret is in the {what}"
        );
    }
}
