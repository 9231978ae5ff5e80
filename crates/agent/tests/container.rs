//! The `container` driver against the node's real container engine (Docker Engine here):
//! an image built at test time from the static busybox binary (`docker import` of a tar
//! of `/bin/busybox` and its applet links, tagged `meridian-test/busybox:1`), run with
//! everything a task can be given, and checked from outside: the published port, the
//! environment and the user inside (`docker exec`), the limits the engine applied
//! (`docker inspect`), volumes, secret files, logs, stop, adoption by a new driver and
//! cleanup.
//!
//! Needs `docker` with a running engine and `busybox-static`; a missing one fails the
//! test (it never skips). The tests remove the containers and the image they create.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::driver::container::{ContainerDriver, Engine, container_name};
use agent::driver::{BoundVolume, Driver, Identity, Launch, Slot, Stopped};
use api::kinds::Task;
use api::task::{PortBinding, Protocol, Rlimits};

const IMAGE: &str = "meridian-test/busybox:1";
/// Set in the environment of the process that runs the driver: it must not reach a task.
const AGENT_SECRET: &str = "agent-admin-token-must-not-leak";

#[path = "support/image.rs"]
mod image;
use image::{docker, docker_ok, need_engine};

/// Builds `meridian-test/busybox:1`.
fn build_image(dir: &Path) {
    image::build_busybox_image(dir, IMAGE);
}

/// Removes what the test made, even when it fails: its containers, and the image when
/// the test built it.
struct Cleanup {
    containers: Vec<String>,
    image: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = docker(&["rm", "-f", name]);
        }
        if self.image {
            let _ = docker(&["rmi", "-f", IMAGE]);
        }
    }
}

/// A free TCP port on the host.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Polls `f` every 100 ms until it is true, for at most `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const UID: u32 = 4321;
const GID: u32 = 4322;

/// The task: serves `/data` over HTTP on 8080, writes to stdout and stderr, echoes what
/// the host drops into `/data/say`, and exits 0 on SIGTERM.
const SCRIPT: &str = "echo hello-from-container > /data/index.html
echo to-stdout
echo to-stderr >&2
trap 'echo got-TERM; exit 0' TERM
httpd -f -p 8080 -h /data &
while true; do
  if [ -f /data/say ]; then cat /data/say; rm -f /data/say; fi
  sleep 0.2
done";

/// Runs `name` of this test binary again with `MERIDIAN_TOKEN` in its environment (a
/// test cannot set its own environment without `unsafe`), and fails if it fails.
fn rerun_with_agent_secret(name: &str) -> bool {
    if std::env::var("MERIDIAN_TOKEN").as_deref() == Ok(AGENT_SECRET) {
        return false;
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("MERIDIAN_TOKEN", AGENT_SECRET)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{name} failed with MERIDIAN_TOKEN set (output above)"
    );
    true
}

#[test]
fn a_container_runs_as_its_task_says_end_to_end() {
    if rerun_with_agent_secret("a_container_runs_as_its_task_says_end_to_end") {
        return;
    }
    need_engine();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(end_to_end());
}

async fn end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let uid = format!("e2e-{}", std::process::id());
    let quitter_uid = format!("{uid}-q");
    let _cleanup = Cleanup {
        containers: vec![container_name(&uid), container_name(&quitter_uid)],
        image: true,
    };
    build_image(tmp.path());

    // Volumes: one the task writes to, one it may only read; a secret file of the task's
    // user, mode 0400, as the runtime writes them.
    let data = tmp.path().join("data");
    let conf = tmp.path().join("conf");
    let secrets = tmp.path().join("alloc/secrets");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(secrets.join("db")).unwrap();
    set_mode(&data, 0o777);
    std::fs::write(conf.join("app.conf"), "x=1\n").unwrap();
    let secret_file = secrets.join("db/password");
    std::fs::write(&secret_file, "s3cret-file-value").unwrap();
    set_mode(&secret_file, 0o400);
    std::os::unix::fs::chown(&secret_file, Some(UID), Some(GID)).expect("chown (run as root)");
    set_mode(&secrets, 0o755);

    let host_port = free_port();
    let slot = Slot {
        dir: tmp.path().join("alloc"),
        id: format!("default_web-0-{uid}"),
        uid: uid.clone(),
        log_limit: 1024 * 1024,
    };
    let task: Task = serde_json::from_value(serde_json::json!({
        "driver": "container", "image": IMAGE,
        "command": ["/bin/sh", "-c", SCRIPT],
        "workingDir": "/tmp",
        "resources": {"cpu": "500m", "memory": "64Mi"},
    }))
    .unwrap();
    let env: BTreeMap<String, String> = [
        ("GREETING", "hello world"),
        ("DB_PASSWORD", "s3cret-env-value"),
        ("PEM", "line one\nline two"),
        ("MERIDIAN_ALLOCATION", "default/web-0"),
        (
            "MERIDIAN_SECRETS_DIR",
            "/host/path/that/the/container/cannot/see",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let launch = Launch {
        env: env.clone(),
        user: Some(Identity {
            name: None,
            uid: UID,
            gid: GID,
            groups: Vec::new(),
        }),
        task_dir: slot.dir.join("task"),
        working_dir: slot.dir.join("task"),
        ports: vec![PortBinding {
            name: "http".into(),
            port: host_port,
            target: 8080,
            protocol: Protocol::Tcp,
        }],
        volumes: vec![
            BoundVolume {
                name: "data".into(),
                host_path: data.clone(),
                mount_path: "/data".into(),
                read_only: false,
            },
            BoundVolume {
                name: "conf".into(),
                host_path: conf.clone(),
                mount_path: "/conf".into(),
                read_only: true,
            },
        ],
        secrets_dir: Some(secrets.clone()),
        rlimits: Rlimits {
            nofile: Some(2048),
            nproc: None,
            core: Some(0),
        },
    };

    let driver = ContainerDriver::new(Engine::Docker);
    let started = driver
        .start(&task, &launch, &slot)
        .await
        .expect("the container starts");
    println!("start message: {}", started.message);
    assert!(
        started.message.contains("cpus 0.5, memory 67108864 bytes")
            && started.message.contains(&format!("user {UID}:{GID}")),
        "{}",
        started.message
    );
    let handle = started.handle;
    let name = container_name(&uid);
    assert_eq!(handle.record.container.as_deref(), Some(name.as_str()));
    // The env file lived only for `run`.
    assert!(!slot.dir.join("container.env").exists());

    // The published host port answers, and the health check that names the port agrees.
    eventually(
        Duration::from_secs(20),
        "the published port answers",
        || http_get(host_port, "/index.html").is_some_and(|t| t.contains("hello-from-container")),
    );
    let check: api::kinds::HealthCheck = serde_json::from_value(
        serde_json::json!({"http": {"port": "http", "path": "/index.html"}}),
    )
    .unwrap();
    let check = agent::health::resolve_ports(check, &launch.ports);
    let outcome = agent::health::run(&check, &agent::health::Runs::Env(BTreeMap::new())).await;
    assert!(outcome.healthy, "{outcome:?}");

    // The limits, the user, the ulimits and the labels, as the engine holds them.
    let inspected = docker_ok(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.Config.User}} {{.HostConfig.Init}} {{json .HostConfig.Ulimits}} {{index .Config.Labels \"meridian.allocation\"}} {{.Config.WorkingDir}}",
        &name,
    ]);
    assert_eq!(
        inspected.trim(),
        format!(
            "500000000 67108864 {UID}:{GID} true [{{\"Hard\":0,\"Name\":\"core\",\"Soft\":0}},{{\"Hard\":2048,\"Name\":\"nofile\",\"Soft\":2048}}] default_web-0-{uid} /tmp"
        )
    );
    // No value of the environment on the command line the engine recorded.
    let cmdline = docker_ok(&[
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{json .Args}}",
        &name,
    ]);
    assert!(!cmdline.contains("s3cret"), "{cmdline}");

    // Inside: the user, the environment (the task's, never the agent's), the mounts.
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    };
    assert_eq!(exec(&["id", "-u"]).1.trim(), UID.to_string());
    assert_eq!(exec(&["id", "-g"]).1.trim(), GID.to_string());
    let inside = exec(&["env"]).1;
    for line in [
        "GREETING=hello world",
        "DB_PASSWORD=s3cret-env-value",
        "MERIDIAN_ALLOCATION=default/web-0",
        "MERIDIAN_SECRETS_DIR=/run/secrets/meridian",
    ] {
        assert!(
            inside.lines().any(|l| l == line),
            "{line} missing in:\n{inside}"
        );
    }
    assert!(
        !inside.contains(AGENT_SECRET),
        "the agent's token leaked:\n{inside}"
    );
    assert!(!inside.contains("MERIDIAN_TOKEN"), "{inside}");
    assert_eq!(
        exec(&["sh", "-c", "echo \"$PEM\""]).1,
        "line one\nline two\n"
    );
    assert_eq!(exec(&["pwd"]).1.trim(), "/tmp");
    let (wrote, _, err) = exec(&["touch", "/conf/new"]);
    assert!(!wrote && err.contains("Read-only file system"), "{err}");
    assert_eq!(exec(&["cat", "/conf/app.conf"]).1, "x=1\n");
    assert_eq!(
        exec(&["cat", "/run/secrets/meridian/db/password"]).1,
        "s3cret-file-value"
    );
    let (wrote, _, err) = exec(&["touch", "/run/secrets/meridian/x"]);
    assert!(!wrote && err.contains("Read-only file system"), "{err}");
    // The task wrote into its read-write volume, as its user.
    use std::os::unix::fs::MetadataExt;
    let index = std::fs::metadata(data.join("index.html")).unwrap();
    assert_eq!((index.uid(), index.gid()), (UID, GID));

    // Logs: stdout and stderr apart, in the allocation's files.
    let stdout = slot.dir.join("stdout.log");
    let stderr = slot.dir.join("stderr.log");
    eventually(Duration::from_secs(10), "logs captured", || {
        read(&stdout).contains("to-stdout") && read(&stderr).contains("to-stderr")
    });
    assert!(!read(&stdout).contains("to-stderr"));

    // Adoption: the agent goes away (its handle and driver with it), the container keeps
    // running, and a new driver adopts it from the record; logs resume without repeats.
    let record = handle.record.clone();
    drop(handle);
    // The driver keeps nothing between calls: a new instance is what a restarted agent has.
    std::fs::write(data.join("say"), "while-no-agent\n").unwrap();
    eventually(
        Duration::from_secs(5),
        "the task read what was dropped",
        || !data.join("say").exists(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let driver = ContainerDriver::new(Engine::Docker);
    let mut handle = driver
        .adopt(&record, &slot.dir)
        .await
        .expect("a new driver adopts the running container");
    assert_eq!(driver.exited(&mut handle).await, None);
    std::fs::write(data.join("say"), "after-adoption\n").unwrap();
    eventually(
        Duration::from_secs(10),
        "logs resume after adoption",
        || read(&stdout).contains("after-adoption"),
    );
    let out = read(&stdout);
    assert_eq!(out.matches("to-stdout").count(), 1, "{out}");
    assert!(out.contains("while-no-agent"), "{out}");

    // Stop with grace: SIGTERM reaches the task (through --init), which exits 0 at once.
    let t0 = Instant::now();
    let how = driver.stop(&mut handle, Duration::from_secs(20)).await;
    let took = t0.elapsed();
    assert_eq!(how, Stopped::Terminated);
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
    assert_eq!(driver.exited(&mut handle).await, Some(Some(0)));
    assert!(driver.adopt(&record, &slot.dir).await.is_none());
    driver.cleanup(&mut handle).await;
    assert!(read(&stdout).contains("got-TERM"), "{}", read(&stdout));
    // Cleanup removed the container.
    let (_, listed, _) = docker(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]);
    assert_eq!(listed.trim(), "", "the container is still there");
    assert_eq!(driver.exited(&mut handle).await, Some(None));

    // A task that ignores SIGTERM is killed once the grace period is over.
    let quitter: Task = serde_json::from_value(serde_json::json!({
        "driver": "container", "image": IMAGE,
        "command": ["/bin/sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.2; done"],
        "resources": {"cpu": "250m", "memory": "32Mi"},
    }))
    .unwrap();
    let qslot = Slot {
        dir: tmp.path().join("quitter"),
        id: format!("default_quitter-0-{quitter_uid}"),
        uid: quitter_uid.clone(),
        log_limit: 1024 * 1024,
    };
    let started = driver
        .start(&quitter, &Launch::default(), &qslot)
        .await
        .expect("the second container starts");
    assert!(
        started.message.contains("the image's user"),
        "{}",
        started.message
    );
    let mut qhandle = started.handle;
    eventually(Duration::from_secs(10), "the quitter is ready", || {
        read(&qslot.dir.join("stdout.log")).contains("ready")
    });
    let how = driver.stop(&mut qhandle, Duration::from_secs(1)).await;
    assert_eq!(how, Stopped::Killed);
    assert_eq!(driver.exited(&mut qhandle).await, Some(Some(137)));
    driver.cleanup(&mut qhandle).await;
    let (_, listed, _) = docker(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("name=^{}$", container_name(&quitter_uid)),
    ]);
    assert_eq!(listed.trim(), "");
}

#[tokio::test]
async fn an_image_the_node_lacks_fails_with_what_to_do() {
    need_engine();
    let tmp = tempfile::tempdir().unwrap();
    let uid = format!("absent-{}", std::process::id());
    let _cleanup = Cleanup {
        containers: vec![container_name(&uid)],
        image: false,
    };
    let task: Task = serde_json::from_value(serde_json::json!({
        "driver": "container", "image": "meridian-test/absent:1",
        "resources": {"cpu": "1", "memory": "16Mi"},
    }))
    .unwrap();
    let slot = Slot {
        dir: tmp.path().join("alloc"),
        id: "default_absent-0".into(),
        uid: uid.clone(),
        log_limit: 1024,
    };
    let t0 = Instant::now();
    let e = ContainerDriver::new(Engine::Docker)
        .start(&task, &Launch::default(), &slot)
        .await
        .expect_err("no such image here");
    assert_eq!(
        e.to_string(),
        "image meridian-test/absent:1 is not on this node; load it with docker load or docker import (the container driver pulls nothing)"
    );
    // Nothing was pulled (no registry is asked: it would take far longer).
    assert!(t0.elapsed() < Duration::from_secs(10));
    let (ok, _, _) = docker(&["inspect", &container_name(&uid)]);
    assert!(!ok, "no container was created");
}

#[test]
fn the_node_offers_the_container_driver_when_the_engine_answers() {
    need_engine();
    let probe = agent::HostProbe::default();
    assert!(agent::driver::container_engine(&probe).is_some());
    assert!(
        agent::driver::available(&probe, api::kinds::Arch::Amd64)
            .contains(&api::kinds::Driver::Container)
    );
}
