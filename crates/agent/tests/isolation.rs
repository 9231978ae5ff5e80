//! What an `exec` task sees, read from `/proc` of real tasks: its environment (exactly
//! the expected names), uid/gid, working directory, descriptors, rlimits, a read-only
//! volume and secret files. Through the exec driver directly (`Driver::start` with a
//! `Launch` built by `view::Context`), and through a whole agent started with an admin
//! token in its own environment, against a real server.
//!
//! Needs root (it switches users, mounts and creates `meridian-task`), and the `meridian`
//! binary, the launcher: `$MERIDIAN_BIN`, else built here with `cargo build --workspace
//! --all-features --bin meridian` into the same target directory (the test's own
//! executable is not `meridian`).

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use agent::driver::exec::ExecDriver;
use agent::driver::{Driver, Handle, Slot};
use agent::view::{Context, NodeVolume, View};
use api::kinds::{Allocation, Task};
use api::secret::AllocationSecrets;

/// The `meridian` binary (the launcher).
fn meridian() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("MERIDIAN_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/isolation-<hash>
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target");
        let mut cmd = Command::new(env!("CARGO"));
        // Only what a developer's shell passes: the variables cargo sets for test
        // processes (CARGO_PKG_*, …) would make build scripts run again and rebuild all.
        // The workspace with every feature, as `scripts/test` builds it: the binary the
        // suite's other tests run is then already fresh and is not rebuilt under them (a
        // `-p cli` build without features replaced it with one lacking the etcd backend,
        // midway through the suite).
        cmd.args([
            "build",
            "--quiet",
            "--workspace",
            "--all-features",
            "--bin",
            "meridian",
        ])
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| {
            let k = k.to_string_lossy();
            [
                "PATH",
                "HOME",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "RUSTUP_TOOLCHAIN",
                "CARGO_INCREMENTAL",
            ]
            .contains(&k.as_ref())
        }))
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p cli failed");
        profile_dir.join("meridian")
    })
    .clone()
}

fn allocation(task: serde_json::Value) -> (Allocation, Task) {
    let a: Allocation = serde_json::from_value(serde_json::json!({
        "apiVersion": "meridian.dev/v1", "kind": "Allocation",
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "0123456789abcdef"},
        "spec": {"workload": "web", "replica": 0, "node": "n1", "desiredState": "run",
                 "resources": {"cpu": "100m", "memory": "16Mi"},
                 "ports": [{"name": "http", "port": 20001, "target": 20001},
                           {"name": "admin-api", "port": 20002, "target": 20002}],
                 "task": task},
    }))
    .expect("a valid allocation");
    let t = *a.spec.task.clone().expect("a task");
    (a, t)
}

/// A data directory the task users can traverse, with a host volume `data` holding
/// `hello.txt`.
struct Node {
    dir: tempfile::TempDir,
    context: Context,
}

fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(volume.join("hello.txt"), "from the host\n").unwrap();
    let data_dir = dir.path().join("data");
    let context = Context {
        data_dir,
        node: "n1".into(),
        volumes: [(
            "data".to_owned(),
            NodeVolume {
                path: volume,
                read_only: false,
            },
        )]
        .into(),
        switch_users: true,
    };
    Node { dir, context }
}

fn slot(view: &View) -> Slot {
    Slot {
        dir: view.launch.task_dir.parent().unwrap().to_path_buf(),
        id: format!("isolation-test-{}", std::process::id()),
        uid: "0123456789abcdef".into(),
        log_limit: 1 << 20,
    }
}

async fn start(view: &View, task: &Task) -> Handle {
    agent::view::prepare(view).expect("prepare");
    let driver = ExecDriver::new(meridian());
    driver
        .start(task, &view.launch, &slot(view))
        .await
        .expect("the task starts")
        .handle
}

async fn stop(mut handle: Handle) {
    let driver = ExecDriver::new(meridian());
    driver.stop(&mut handle, Duration::from_secs(2)).await;
    driver.cleanup(&mut handle).await;
}

fn environ(pid: u32) -> Vec<(String, String)> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    String::from_utf8_lossy(&bytes)
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn status_line(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn limit_line(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| {
            l[name.len()..]
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn fds(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    fds
}

/// The test process gets a descriptor without close-on-exec, as an agent inherits one
/// from a careless parent; the task must not see it.
fn leak_a_descriptor() -> i32 {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    let fd = open("/dev/null", OFlag::O_RDONLY, Mode::empty()).expect("open /dev/null");
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
    assert_eq!(
        flags & libc_cloexec(),
        0,
        "the leaked descriptor is inheritable"
    );
    fd
}

fn libc_cloexec() -> i32 {
    nix::fcntl::FdFlag::FD_CLOEXEC.bits()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_task_sees_its_env_user_directory_limits_and_nothing_else() {
    let leaked = leak_a_descriptor();
    let node = node();
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec", "command": ["sleep", "30"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "user": "65534:65534",
        "env": {"GREETING": "hi"},
        "rlimits": {"nofile": 256, "core": 0},
    }));
    let view = node
        .context
        .launch("shop/web-0", &a, &task, None)
        .expect("a view");
    let handle = start(&view, &task).await;
    let pid = handle.record.pid;

    let env = environ(pid);
    let names: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let expected: BTreeSet<&str> = [
        "GREETING",
        "HOME",
        "LOGNAME",
        "MERIDIAN_ALLOCATION",
        "MERIDIAN_ALLOC_DIR",
        "MERIDIAN_NAMESPACE",
        "MERIDIAN_NODE",
        "MERIDIAN_PORT_ADMIN_API",
        "MERIDIAN_PORT_HTTP",
        "MERIDIAN_TASK_DIR",
        "MERIDIAN_WORKLOAD",
        "PATH",
        "USER",
    ]
    .into();
    assert_eq!(names, expected, "exactly the task's view");
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("MERIDIAN_PORT_HTTP"), Some("20001"));
    assert_eq!(get("MERIDIAN_ALLOCATION"), Some("shop/web-0"));
    let task_dir = view.launch.task_dir.clone();
    assert_eq!(get("HOME"), task_dir.to_str());
    // 65534 is `nobody` in /etc/passwd: the name comes from the node's database.
    assert_eq!(get("USER"), Some("nobody"));

    assert_eq!(status_line(pid, "Uid"), "65534 65534 65534 65534");
    assert_eq!(status_line(pid, "Gid"), "65534 65534 65534 65534");
    assert_eq!(status_line(pid, "Groups"), "");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd"),
        task_dir
    );
    // The command opens and closes files as it starts (`sleep` reads its locale): wait
    // for it to settle, then only 0, 1 and 2 may be open, never the leaked descriptor.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut open = fds(pid);
    while open != ["0", "1", "2"] && std::time::Instant::now() < deadline {
        assert!(
            !open.contains(&leaked.to_string()),
            "descriptor {leaked} leaked: {open:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        open = fds(pid);
    }
    let links: Vec<String> = open
        .iter()
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map_or_else(|e| e.to_string(), |l| l.display().to_string())
        })
        .collect();
    assert_eq!(
        open,
        ["0", "1", "2"],
        "descriptors open in the task: {links:?}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(limit_line(pid, "Max open files"), "256 256");
    assert_eq!(limit_line(pid, "Max core file size"), "0 0");
    // The task directory is the task user's; logs are beside it, not in it.
    let meta = std::fs::metadata(&task_dir).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert!(task_dir.parent().unwrap().join("stdout.log").exists());
    stop(handle).await;
    let _ = nix::unistd::close(leaked);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_user_is_meridian_task_with_user_and_logname() {
    agent::users::ensure_default().expect("root creates meridian-task");
    let account = nix::unistd::User::from_name("meridian-task")
        .unwrap()
        .expect("meridian-task exists");
    let node = node();
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec", "command": ["sleep", "30"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "env": {"PATH": "/usr/bin:/bin"},
    }));
    let view = node.context.launch("shop/web-0", &a, &task, None).unwrap();
    let handle = start(&view, &task).await;
    let pid = handle.record.pid;
    let uid = account.uid.as_raw();
    assert_eq!(status_line(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    let env = environ(pid);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("USER"), Some("meridian-task"));
    assert_eq!(get("LOGNAME"), Some("meridian-task"));
    assert_eq!(get("PATH"), Some("/usr/bin:/bin"), "the task's PATH");
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_volume_is_bound_and_cannot_be_written() {
    let node = node();
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec",
        "command": ["/bin/sh", "-c", "cat data/hello.txt; touch data/new && echo WROTE; touch rw/new && echo WROTE-RW; sleep 30"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "user": "65534:65534",
        "volumes": [{"name": "data", "mountPath": "data", "readOnly": true},
                    {"name": "data", "mountPath": "rw"}],
    }));
    let view = node.context.launch("shop/web-0", &a, &task, None).unwrap();
    let handle = start(&view, &task).await;
    let dir = slot(&view).dir;
    let out = testkit::wait_until(Duration::from_secs(10), "the task's output", || {
        let out = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
        out.contains("WROTE-RW").then_some(out)
    });
    assert!(out.contains("from the host"), "{out}");
    assert!(
        !out.contains("WROTE\n"),
        "wrote to a read-only volume: {out}"
    );
    let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(err.contains("Read-only file system"), "{err}");
    // The writable mount wrote through to the host; the host's mounts are untouched.
    assert!(node.dir.path().join("volume/new").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(view.launch.task_dir.to_str().unwrap()));
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_arrive_as_env_and_read_only_files_of_the_task_user() {
    let node = node();
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec", "command": ["sleep", "30"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "user": "65534:65534",
        "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretRef": {"name": "payroll-db", "key": "password"}}}],
        "secrets": [{"name": "tls"}],
    }));
    let secrets: AllocationSecrets = serde_json::from_value(serde_json::json!({"secrets": {
        "payroll-db": {"password": "aHVudGVyMg=="},
        "tls": {"key.pem": "S0VZ"},
    }}))
    .unwrap();
    let view = node
        .context
        .launch("shop/web-0", &a, &task, Some(&secrets))
        .unwrap();
    assert!(
        !format!("{view:?}").contains("hunter2"),
        "Debug shows no value"
    );
    let handle = start(&view, &task).await;
    let pid = handle.record.pid;
    let env = environ(pid);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_owned());
    assert_eq!(get("DB_PASSWORD").as_deref(), Some("hunter2"));
    let secrets_dir = PathBuf::from(get("MERIDIAN_SECRETS_DIR").expect("MERIDIAN_SECRETS_DIR"));
    let file = secrets_dir.join("tls/key.pem");
    assert_eq!(std::fs::read(&file).unwrap(), b"KEY");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    let dir_meta = std::fs::metadata(secrets_dir.join("tls")).unwrap();
    assert_eq!(dir_meta.permissions().mode() & 0o777, 0o500);
    stop(handle).await;
    agent::secrets::remove(&secrets_dir).unwrap();
    assert!(!secrets_dir.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_that_cannot_happen_fails_the_start_with_the_reason() {
    let node = node();
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec", "command": ["/no/such/program"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "user": "65534:65534",
    }));
    let view = node.context.launch("shop/web-0", &a, &task, None).unwrap();
    agent::view::prepare(&view).unwrap();
    let e = ExecDriver::new(meridian())
        .start(&task, &view.launch, &slot(&view))
        .await
        .expect_err("no such program");
    assert!(
        e.to_string().contains("cannot run \"/no/such/program\""),
        "{e}"
    );
    // An absolute mount path that is not a directory on the node: refused up front.
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec", "command": ["true"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "user": "65534:65534",
        "volumes": [{"name": "data", "mountPath": "/no/such/dir"}],
    }));
    let e = node
        .context
        .launch("shop/web-0", &a, &task, None)
        .expect_err("no mount point");
    assert!(
        e.to_string()
            .contains("task.volumes[0].mountPath /no/such/dir: no such directory on node n1"),
        "{e}"
    );
}

/// A whole agent, started with an admin token in its environment, runs a task that must
/// not see it.
#[test]
fn a_real_agent_keeps_its_own_environment_from_tasks() {
    let bin = meridian();
    let server = testkit::ServerProcess::start(&bin, &[]);
    testkit::ok(
        &server.cli(&[
            "apply",
            "-f",
            testkit::examples_dir()
                .join("sites.yaml")
                .to_str()
                .expect("utf-8"),
        ]),
    );
    let token = server.join_token("onprem-frankfurt");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data_dir = dir.path().join("agent");
    let marker = format!("{}", 8_100_000 + std::process::id() % 100_000);
    let mut agent = Command::new(&bin)
        .args(["agent", "--server", &server.url, "--data-dir"])
        .arg(&data_dir)
        .args(["--name", "iso-1", "--heartbeat", "300ms", "--grace", "2s"])
        .args(["--join-token", token.trim()])
        .arg("--volume")
        .arg(format!("scratch={}:ro", dir.path().display()))
        .env("MERIDIAN_TOKEN", "secret-admin-token")
        .env("MERIDIAN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut agent);
    testkit::wait_until(
        Duration::from_secs(30),
        "the node registered with its volume",
        || {
            let out = testkit::stdout(&server.cli(&["get", "node", "iso-1", "-o", "json"]));
            let n: serde_json::Value = serde_json::from_str(&out).ok()?;
            (n["status"]["volumes"][0]["name"] == "scratch"
                && n["status"]["volumes"][0]["readOnly"] == true
                && n["status"]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2))
            .then_some(())
        },
    );
    let manifest = dir.path().join("w.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {{name: iso, namespace: default}}\n\
             spec:\n  type: service\n  replicas: 1\n  task:\n    driver: exec\n\
             \x20   command: [sleep, \"{marker}\"]\n\
             \x20   user: \"65534:65534\"\n\
             \x20   resources: {{cpu: 100m, memory: 16Mi}}\n"
        ),
    )
    .unwrap();
    testkit::ok(&server.cli(&["apply", "-f", manifest.to_str().unwrap()]));
    let pid = testkit::wait_until(Duration::from_secs(30), "iso-0 running", || {
        let out = testkit::stdout(&server.cli(&["get", "allocation", "iso-0", "-o", "json"]));
        let a: serde_json::Value = serde_json::from_str(&out).ok()?;
        if a["status"]["phase"] != "running" {
            return None;
        }
        let state = std::fs::read_to_string(data_dir.join("state.json")).ok()?;
        let state: serde_json::Value = serde_json::from_str(&state).ok()?;
        state["tasks"]["default/iso-0"]["pid"].as_u64()
    }) as u32;
    let env = environ(pid);
    assert!(
        !env.iter()
            .any(|(k, v)| k == "MERIDIAN_TOKEN" || v.contains("secret-admin-token")),
        "the agent's token reached the task: {env:?}"
    );
    assert!(!env.iter().any(|(k, _)| k == "MERIDIAN_LOG"));
    assert_eq!(status_line(pid, "Uid"), "65534 65534 65534 65534");
    assert_eq!(fds(pid), ["0", "1", "2"]);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, data_dir.join("allocations/default_iso-0/task"));
    // A task that references a secret the server does not give: pending, saying why,
    // never started (whether the server lacks the secret or the secrets endpoint).
    let manifest = dir.path().join("s.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: needs-secret, namespace: default}\n\
         spec:\n  type: service\n  replicas: 1\n  task:\n    driver: exec\n\
         \x20   command: [sleep, \"30\"]\n\
         \x20   user: \"65534:65534\"\n\
         \x20   env: [{name: PW, valueFrom: {secretRef: {name: payroll-db, key: password}}}]\n\
         \x20   resources: {cpu: 100m, memory: 16Mi}\n",
    )
    .unwrap();
    testkit::ok(&server.cli(&["apply", "-f", manifest.to_str().unwrap()]));
    let message = testkit::wait_until(Duration::from_secs(30), "needs-secret-0 waits", || {
        let out =
            testkit::stdout(&server.cli(&["get", "allocation", "needs-secret-0", "-o", "json"]));
        let a: serde_json::Value = serde_json::from_str(&out).ok()?;
        (a["status"]["phase"] == "pending")
            .then(|| a["status"]["message"].as_str().map(str::to_owned))
            .flatten()
    });
    assert!(message.starts_with("waiting for secret"), "{message}");
    assert!(
        !data_dir
            .join("allocations/default_needs-secret-0/stdout.log")
            .exists(),
        "started without its secret"
    );
    testkit::ok(&server.cli(&["delete", "workload", "iso"]));
    testkit::wait_until(Duration::from_secs(30), "the task stopped", || {
        (!Path::new(&format!("/proc/{pid}")).exists() || status_line(pid, "State").starts_with('Z'))
            .then_some(())
    });
}

/// A command health check of an exec task runs as the task: its user, its environment,
/// its working directory.
#[tokio::test(flavor = "multi_thread")]
async fn command_health_checks_run_as_the_task() {
    let node = node();
    let (a, task) = allocation(serde_json::json!({
        "driver": "exec", "command": ["sleep", "30"],
        "resources": {"cpu": "100m", "memory": "16Mi"},
        "user": "65534:65534",
        "env": {"GREETING": "hi"},
    }));
    let view = node.context.launch("shop/web-0", &a, &task, None).unwrap();
    agent::view::prepare(&view).unwrap();
    let runs = agent::health::Runs::Launcher {
        path: meridian(),
        spec: agent::driver::exec::launch_spec("", &[], &view.launch),
    };
    let check = |script: &str| -> api::kinds::HealthCheck {
        serde_json::from_value(
            serde_json::json!({"command": {"command": ["/bin/sh", "-c", script]}, "timeout": "30s"}),
        )
        .unwrap()
    };
    let as_task = format!(
        "test \"$(id -u):$(id -g)\" = 65534:65534 && test \"$GREETING\" = hi && test \"$(pwd)\" = {}",
        view.launch.task_dir.display()
    );
    let ok = agent::health::run(&check(&as_task), &runs).await;
    assert!(ok.healthy, "{ok:?}");
    let bad = agent::health::run(&check("exit 3"), &runs).await;
    assert_eq!(bad.message, "exit code 3");
}
