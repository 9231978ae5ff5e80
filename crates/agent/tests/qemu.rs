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
