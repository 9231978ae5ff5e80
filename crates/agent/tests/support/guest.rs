//! A tiny Linux guest for QEMU tests, built at test time: the Debian cloud kernel and a
//! busybox initramfs whose `/init` prints `GUEST-READY` on the console. Shared by the
//! agent's driver test and the CLI's end-to-end test (`#[path]`-included: std only).
//!
//! Needs `qemu-system-x86_64` (package `qemu-system-x86`), `/boot/vmlinuz-*-cloud-amd64`
//! (`linux-image-cloud-amd64`), a static `/bin/busybox` (`busybox-static`) and `cpio`;
//! `scripts/test` installs them. A missing tool fails the test, it does not skip it.
//!
//! [`bootable_disk`] puts kernel and initramfs on a raw disk a PC BIOS boots by itself
//! (for `meridian migrate run`'s end-to-end test); it also needs `mkfs.fat` (`dosfstools`),
//! `mcopy` (`mtools`), `syslinux` (`syslinux`) and its MBR code (`syslinux-common`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `program` is a file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

pub fn need(what: &str, ok: bool, package: &str) {
    assert!(
        ok,
        "{what} is missing: install it (apt-get install -y {package}) or run scripts/test, which does"
    );
}

/// The Debian cloud kernel and its modules directory.
pub fn cloud_kernel() -> (PathBuf, PathBuf) {
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

pub fn check_tools() {
    need(
        "qemu-system-x86_64",
        on_path("qemu-system-x86_64"),
        "qemu-system-x86",
    );
    let static_busybox = Command::new("/bin/busybox")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::read("/bin/busybox").is_ok_and(|b| is_static_elf64(&b));
    need("a static /bin/busybox", static_busybox, "busybox-static");
    need("cpio", on_path("cpio"), "cpio");
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`), so
/// runs without the host's libraries.
pub fn is_static_elf64(b: &[u8]) -> bool {
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
pub fn initramfs(dir: &Path, modules: &Path, acpi: bool) -> PathBuf {
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

/// The modules a networked guest loads, in order (virtio PCI, its NIC, fw_cfg in sysfs),
/// relative to the modules directory.
pub const NETWORK_MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/firmware/qemu_fw_cfg.ko",
];

/// Builds `initrd-net.gz` in `dir`: a guest on QEMU's user-mode network (`10.0.2.15/24`)
/// that copies the fw_cfg items `opt/meridian/env` and `opt/meridian/mounts` into `/www`
/// and serves `/www` over HTTP on port 8080, then prints `GUEST-READY`.
pub fn initramfs_networked(dir: &Path, modules: &Path) -> PathBuf {
    let root = dir.join("root-net");
    for d in ["bin", "proc", "sys", "dev", "lib", "www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let mut init = String::from(
        "#!/bin/busybox sh\nset -x\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n",
    );
    for module in NETWORK_MODULES {
        let src = modules.join(module);
        need(
            &src.display().to_string(),
            src.is_file(),
            "linux-image-cloud-amd64",
        );
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&src, root.join("lib").join(&name)).unwrap();
        init.push_str(&format!("insmod /lib/{name}\n"));
    }
    init.push_str(
        "ip link set lo up\n\
         ip link set eth0 up\n\
         ip addr add 10.0.2.15/24 dev eth0\n\
         ip route add default via 10.0.2.2\n\
         for item in env mounts; do\n\
           cat /sys/firmware/qemu_fw_cfg/by_name/opt/meridian/$item/raw > /www/$item\n\
         done\n\
         httpd -p 8080 -h /www\n\
         echo GUEST-READY > /dev/console\n\
         while true; do sleep 3600; done\n",
    );
    std::fs::write(root.join("init"), init).unwrap();
    set_executable(&root.join("init"));
    let image = dir.join("initrd-net.gz");
    let packed = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | cpio -o -H newc --quiet | gzip -1 > \"$2\"")
        .args(["sh", &root.to_string_lossy(), &image.to_string_lossy()])
        .status()
        .expect("sh runs");
    assert!(packed.success(), "cpio | gzip failed");
    image
}

pub fn set_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// syslinux's MBR boot code (package `syslinux-common`).
pub const MBR_CODE: &str = "/usr/lib/syslinux/mbr/mbr.bin";

/// The path of `program` in `PATH` or the sbin directories (not on a user's `PATH`).
fn tool(program: &str, package: &str) -> PathBuf {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = dirs
        .into_iter()
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    need(program, found.is_some(), package);
    found.expect("checked")
}

fn run(program: &Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the tools [`bootable_disk`] needs; fails naming the package of a missing one.
pub fn check_boot_tools() {
    tool("mkfs.fat", "dosfstools");
    tool("mcopy", "mtools");
    tool("syslinux", "syslinux");
    need(MBR_CODE, Path::new(MBR_CODE).is_file(), "syslinux-common");
}

/// Builds `name` in `dir`: a 32 MiB raw disk a PC BIOS boots with no `-kernel`: syslinux's
/// MBR code, one active FAT16 partition from 1 MiB holding `kernel`, `initrd` and a
/// `syslinux.cfg` that boots them with `console=ttyS0`, and SYSLINUX installed in it. Made
/// without mounting anything: `mkfs.fat --offset`, mtools (`-i disk@@offset`),
/// `syslinux --offset`, and the partition table written here.
pub fn bootable_disk(dir: &Path, name: &str, kernel: &Path, initrd: &Path) -> PathBuf {
    const MIB: u64 = 1 << 20;
    const SIZE_MIB: u64 = 32;
    const START_SECTOR: u64 = 2048;
    check_boot_tools();
    let disk = dir.join(name);
    let offset = (START_SECTOR * 512).to_string();
    let image = |offset: &str| std::ffi::OsString::from(format!("{}@@{offset}", disk.display()));
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(SIZE_MIB * MIB))
        .unwrap();
    let blocks_kib = ((SIZE_MIB * MIB - START_SECTOR * 512) / 1024).to_string();
    run(
        &tool("mkfs.fat", "dosfstools"),
        &[
            "-F".as_ref(),
            "16".as_ref(),
            "-n".as_ref(),
            "MERIDIAN".as_ref(),
            "--offset".as_ref(),
            START_SECTOR.to_string().as_ref(),
            disk.as_os_str(),
            blocks_kib.as_ref(),
        ],
    );
    let config = dir.join("syslinux.cfg");
    std::fs::write(
        &config,
        "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.gz\n  APPEND console=ttyS0 quiet\n",
    )
    .unwrap();
    let mcopy = tool("mcopy", "mtools");
    for (from, to) in [
        (kernel, "::vmlinuz"),
        (initrd, "::initrd.gz"),
        (config.as_path(), "::syslinux.cfg"),
    ] {
        run(
            &mcopy,
            &[
                "-i".as_ref(),
                image(&offset).as_os_str(),
                from.as_os_str(),
                to.as_ref(),
            ],
        );
    }
    run(
        &tool("syslinux", "syslinux"),
        &[
            "--install".as_ref(),
            "--offset".as_ref(),
            offset.as_ref(),
            disk.as_os_str(),
        ],
    );
    // The MBR: boot code, one active FAT16 (LBA) partition, the boot signature.
    let code = std::fs::read(MBR_CODE).unwrap();
    assert!(
        code.len() <= 440,
        "{MBR_CODE} is larger than an MBR's code area"
    );
    let mut mbr = vec![0u8; 512];
    mbr[..code.len()].copy_from_slice(&code);
    let sectors = SIZE_MIB * MIB / 512 - START_SECTOR;
    let mut entry = vec![0x80, 0xfe, 0xff, 0xff, 0x0e, 0xfe, 0xff, 0xff];
    entry.extend_from_slice(&(START_SECTOR as u32).to_le_bytes());
    entry.extend_from_slice(&(sectors as u32).to_le_bytes());
    mbr[446..462].copy_from_slice(&entry);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    use std::io::{Seek, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.write_all(&mbr).unwrap();
    disk
}
