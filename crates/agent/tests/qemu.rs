//! The `qemu` driver on a real guest: a busybox initramfs built at test time, booted on
//! the Debian cloud kernel with TCG (this machine has no usable KVM), its serial console
//! read from the allocation's `stdout.log`, stopped through QMP.
//!
//! The tools it needs are listed in `support/guest.rs`; a missing tool fails the test.

use std::path::Path;
use std::time::Duration;

use agent::HostProbe;
use agent::driver::qemu::{AccelSetting, QemuDriver};
use agent::driver::{Driver, Handle, Slot, Stopped};
use api::kinds::{Arch, Task};

#[path = "support/guest.rs"]
mod guest;

/// How long a TCG guest may take to print its marker (it takes about 2 s here).
const BOOT_DEADLINE: Duration = Duration::from_secs(60);

fn vm_task(disk: &Path, kernel: &Path, initrd: &Path) -> Task {
    serde_json::from_value(serde_json::json!({
        "driver": "qemu",
        "disk": {
            "image": disk, "format": "raw",
            "kernel": kernel, "initrd": initrd, "cmdline": "console=ttyS0 quiet",
        },
        "resources": {"cpu": "1", "memory": "128Mi"},
    }))
    .expect("a valid task")
}

/// Waits for `GUEST-READY` in the console log; fails with QEMU's stderr if QEMU exits.
async fn wait_for_marker(handle: &mut Handle, dir: &Path) {
    let log = dir.join("stdout.log");
    let deadline = tokio::time::Instant::now() + BOOT_DEADLINE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("GUEST-READY") {
            return;
        }
        if let Some(code) = handle.process_exit() {
            panic!(
                "QEMU exited ({code:?}) before the guest was ready.\nstdout:\n{text}\nstderr:\n{}",
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no GUEST-READY within {BOOT_DEADLINE:?}.\nstdout:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills QEMU's process group if the test panics, so a failed test leaves no VM behind
/// (the driver itself never kills on drop: tasks outlive agent restarts).
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            agent::driver::exec::signal_group(self.0, agent::driver::exec::Signal::Kill);
        }
    }
}

/// Boots a guest and stops it with `grace`; returns how it stopped.
async fn boot_and_stop(acpi: bool, grace: Duration) -> Stopped {
    guest::check_tools();
    let (kernel, modules) = guest::cloud_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let initrd = guest::initramfs(tmp.path(), &modules, acpi);
    let disk = tmp.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1024 * 1024]).unwrap();
    let driver = QemuDriver::detect(&HostProbe::default(), Arch::Amd64, AccelSetting::Auto);
    let slot = Slot {
        dir: tmp.path().join("alloc"),
        id: "default_vm-0-1234".into(),
        uid: "1234".into(),
        log_limit: 10 * 1024 * 1024,
    };
    let started = driver
        .start(
            &vm_task(&disk, &kernel, &initrd),
            &agent::driver::Launch::default(),
            &slot,
        )
        .await
        .expect("QEMU starts");
    assert!(
        started.message.contains("1 vCPU, 128 MiB, acceleration "),
        "{}",
        started.message
    );
    let mut handle = started.handle;
    let pid = handle.record.pid;
    assert!(pid > 0);
    let _guard = KillOnPanic(pid);
    // QEMU wrote its pid file; the QMP socket is in the allocation's directory.
    wait_for_marker(&mut handle, &slot.dir).await;
    let pidfile = std::fs::read_to_string(slot.dir.join("qemu.pid")).unwrap_or_default();
    assert_eq!(pidfile.trim(), pid.to_string());
    assert!(slot.dir.join("qmp.sock").exists());
    // A restarted agent would find this very QEMU again.
    assert!(driver.adopt(&handle.record, &slot.dir).await.is_some());

    let how = driver.stop(&mut handle, grace).await;
    // Gone: not a process any more (reaped), and not adoptable.
    assert_eq!(
        agent::driver::exec::start_time(pid),
        None,
        "QEMU still runs"
    );
    assert!(driver.adopt(&handle.record, &slot.dir).await.is_none());
    assert_eq!(driver.exited(&mut handle).await, Some(Some(0)));
    driver.cleanup(&mut handle).await;
    assert!(!slot.dir.join("qmp.sock").exists());
    how
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_with_acpi_powers_off_on_the_power_button() {
    // The grace period is generous: the guest handles the button in well under a second.
    let how = boot_and_stop(true, Duration::from_secs(60)).await;
    assert_eq!(how, Stopped::PoweredDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_ignoring_the_power_button_is_quit_through_qmp() {
    // A bare busybox init ignores ACPI: after the grace period, QMP `quit`.
    let how = boot_and_stop(false, Duration::from_secs(1)).await;
    assert_eq!(how, Stopped::Quit);
}

/// A free TCP port on the host.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the host's loopback: the body, if the answer came.
fn http_body(port: u16, path: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let at = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&all[..at]);
    status
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code == "200")
        .then(|| all[at + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_serves_on_its_forwarded_port_and_reads_its_environment_from_fw_cfg() {
    use agent::driver::{BoundVolume, Launch};
    use api::task::{PortBinding, Protocol};

    guest::check_tools();
    let (kernel, modules) = guest::cloud_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let initrd = guest::initramfs_networked(tmp.path(), &modules);
    let disk = tmp.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1024 * 1024]).unwrap();
    let shared = tmp.path().join("shared");
    let secrets = tmp.path().join("alloc/secrets");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&secrets).unwrap();
    let host_port = free_port();
    let launch = Launch {
        env: [
            ("GREETING", "hello world"),
            ("PEM", "line one\nline two"),
            ("MERIDIAN_SECRETS_DIR", "/host/only"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
        ports: vec![PortBinding {
            name: "http".into(),
            port: host_port,
            target: 8080,
            protocol: Protocol::Tcp,
        }],
        volumes: vec![BoundVolume {
            name: "shared".into(),
            host_path: shared.clone(),
            mount_path: "/mnt/shared".into(),
            read_only: true,
        }],
        secrets_dir: Some(secrets),
        ..Launch::default()
    };
    let driver = QemuDriver::detect(&HostProbe::default(), Arch::Amd64, AccelSetting::Auto);
    let slot = Slot {
        dir: tmp.path().join("alloc"),
        id: "default_vm-0-5678".into(),
        uid: "5678".into(),
        log_limit: 10 * 1024 * 1024,
    };
    let started = driver
        .start(&vm_task(&disk, &kernel, &initrd), &launch, &slot)
        .await
        .expect("QEMU starts");
    assert!(
        started
            .message
            .contains(&format!("ports [{host_port}->8080/tcp]")),
        "{}",
        started.message
    );
    let mut handle = started.handle;
    let pid = handle.record.pid;
    let _guard = KillOnPanic(pid);
    wait_for_marker(&mut handle, &slot.dir).await;

    // QEMU's command line and environment hold no value of the task's environment, and
    // nothing of the agent's but PATH, HOME and TMPDIR.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains("hello world") && !cmdline.contains("line one"));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for entry in environ.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let name = entry.split('=').next().unwrap_or_default();
        assert!(
            ["PATH", "HOME", "TMPDIR"].contains(&name),
            "QEMU's environment holds {name}"
        );
    }
    // The guest's environment file is its owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(slot.dir.join("guest.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The host reaches the guest's port 8080 through the forwarded host port, and the
    // guest read exactly its environment and mounts list from fw_cfg.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let env = loop {
        if let Some(body) = http_body(host_port, "/env") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the forwarded port did not answer; console:\n{}",
            std::fs::read_to_string(slot.dir.join("stdout.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        env,
        b"GREETING=hello world\0MERIDIAN_SECRETS_DIR=/run/secrets/meridian\0PEM=line one\nline two\0"
    );
    assert_eq!(
        http_body(host_port, "/mounts").unwrap(),
        b"shared /mnt/shared ro\nmeridian-secrets /run/secrets/meridian ro\n"
    );

    let how = driver.stop(&mut handle, Duration::from_secs(1)).await;
    assert_eq!(how, Stopped::Quit);
    driver.cleanup(&mut handle).await;
    assert!(!slot.dir.join("guest.env").exists());
    assert!(!slot.dir.join("guest.mounts").exists());
}
