//! The `qemu` driver on a real guest: a busybox initramfs built at test time, booted on
//! the Debian cloud kernel with TCG (this machine has no usable KVM), its serial console
//! read from the allocation's `stdout.log`, stopped through QMP.
//!
//! Needs `qemu-system-x86_64` (package `qemu-system-x86`), `/boot/vmlinuz-*-cloud-amd64`
//! (`linux-image-cloud-amd64`), a static `/bin/busybox` (`busybox-static`) and `cpio`;
//! `scripts/test` installs them. A missing tool fails the test, it does not skip it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agent::driver::qemu::{AccelSetting, QemuDriver};
use agent::driver::{Driver, Handle, Slot, Stopped};
use agent::{HostProbe, Probe};
use api::kinds::{Arch, Task};

/// How long a TCG guest may take to print its marker (it takes about 2 s here).
const BOOT_DEADLINE: Duration = Duration::from_secs(60);

fn need(what: &str, ok: bool, package: &str) {
    assert!(
        ok,
        "{what} is missing: install it (apt-get install -y {package}) or run scripts/test, which does"
    );
}

/// The Debian cloud kernel and its modules directory.
fn cloud_kernel() -> (PathBuf, PathBuf) {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    kernels.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64"))
    });
    kernels.sort();
    let kernel = kernels.pop();
    need(
        "/boot/vmlinuz-*-cloud-amd64",
        kernel.is_some(),
        "linux-image-cloud-amd64",
    );
    let kernel = kernel.expect("checked");
    let version = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .expect("vmlinuz-VERSION")
        .to_owned();
    (kernel, Path::new("/lib/modules").join(version))
}

fn check_tools() {
    need(
        "qemu-system-x86_64",
        HostProbe::default().on_path("qemu-system-x86_64"),
        "qemu-system-x86",
    );
    let static_busybox = Command::new("/bin/busybox")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::read("/bin/busybox").is_ok_and(|b| is_static_elf64(&b));
    need("a static /bin/busybox", static_busybox, "busybox-static");
    need("cpio", HostProbe::default().on_path("cpio"), "cpio");
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`), so
/// runs without the host's libraries.
fn is_static_elf64(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")) as usize)
    };
    if !b.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        b.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// Builds `initrd.gz` in `dir`: busybox, an `/init` that mounts proc, sys and devtmpfs and
/// prints `GUEST-READY` on the console. With `acpi`, it also loads the power button
/// drivers and runs `acpid`, whose handler powers the guest off.
fn initramfs(dir: &Path, modules: &Path, acpi: bool) -> PathBuf {
    let root = dir.join("root");
    for d in ["bin", "proc", "sys", "dev", "lib", "etc/acpi/PWRF"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let mut init = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n",
    );
    if acpi {
        for (module, from) in [
            ("evdev.ko", "kernel/drivers/input/evdev.ko"),
            ("button.ko", "kernel/drivers/acpi/button.ko"),
        ] {
            let src = modules.join(from);
            need(
                &src.display().to_string(),
                src.is_file(),
                "linux-image-cloud-amd64",
            );
            std::fs::copy(&src, root.join("lib").join(module)).unwrap();
        }
        let handler = root.join("etc/acpi/PWRF/00000080");
        std::fs::write(&handler, "#!/bin/sh\npoweroff -f\n").unwrap();
        set_executable(&handler);
        // Ready only once acpid listens on the input devices: a press before is lost.
        init.push_str(
            "insmod /lib/evdev.ko\n\
             insmod /lib/button.ko\n\
             acpid -d -c /etc/acpi &\n\
             until ls -l /proc/$!/fd 2>/dev/null | grep -q /dev/input/event; do sleep 0.1; done\n",
        );
    }
    init.push_str("echo GUEST-READY > /dev/console\nwhile true; do sleep 3600; done\n");
    std::fs::write(root.join("init"), init).unwrap();
    set_executable(&root.join("init"));
    let image = dir.join("initrd.gz");
    let packed = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | cpio -o -H newc --quiet | gzip -1 > \"$2\"")
        .args(["sh", &root.to_string_lossy(), &image.to_string_lossy()])
        .status()
        .expect("sh runs");
    assert!(packed.success(), "cpio | gzip failed");
    image
}

fn set_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

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

/// Boots a guest and stops it with `grace`; returns how it stopped.
async fn boot_and_stop(acpi: bool, grace: Duration) -> Stopped {
    check_tools();
    let (kernel, modules) = cloud_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let initrd = initramfs(tmp.path(), &modules, acpi);
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
        .start(&vm_task(&disk, &kernel, &initrd), &slot)
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
