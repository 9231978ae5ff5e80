//! `discover` end to end on recorded hosts, and once on this machine.

use agent::{Disk, HostFacts, HostProbe, Options, RecordedProbe, discover, node_spec};
use api::kinds::{Arch, Driver, GpuDevice, LsmMode, NodeOs, OsFamily, SecurityFacts};
use api::{Cpu, Memory};

const LSBLK: &[&str] = &["-J", "-b", "-o", "NAME,TYPE,FSTYPE,MOUNTPOINT,SIZE"];
const NVIDIA_SMI: &[&str] = &[
    "--query-gpu=name,memory.total",
    "--format=csv,noheader,nounits",
];
const SECURE_BOOT: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
const RPM: &[&str] = &["-qa", "--qf", r"%{NAME} %{INSTALLTIME}\n"];

fn options(family: OsFamily, arch: Arch) -> Options {
    Options {
        family,
        arch,
        data_dir: "/var/lib/meridian".into(),
        now: "2024-06-13T12:00:00Z".parse().unwrap(),
    }
}

fn linux() -> Options {
    options(OsFamily::Linux, Arch::Amd64)
}

fn linux_os(distro: &str, version: &str, kernel: &str) -> NodeOs {
    NodeOs {
        family: OsFamily::Linux,
        distro: Some(distro.into()),
        version: Some(version.into()),
        build: None,
        kernel: Some(kernel.into()),
    }
}

/// A RHEL 9.4 database server: root on LVM on LUKS, UEFI Secure Boot, TPM, SELinux
/// enforcing, FIPS mode, updated a month ago, podman and QEMU installed.
fn rhel9() -> RecordedProbe {
    RecordedProbe::new()
        .file(
            "/etc/os-release",
            include_str!("../testdata/rhel9/os-release"),
        )
        .file(
            "/proc/sys/kernel/osrelease",
            "5.14.0-427.13.1.el9_4.x86_64\n",
        )
        .file("/proc/sys/kernel/hostname", "db-01.example.internal\n")
        .file("/sys/devices/system/cpu/online", "0-31\n")
        .file("/proc/meminfo", include_str!("../testdata/rhel9/meminfo"))
        .command("lsblk", LSBLK, include_str!("../testdata/rhel9/lsblk.json"))
        .dir("/var/lib/meridian")
        .command(
            "df",
            &["-B1", "--output=size", "/var/lib/meridian"],
            "    1B-blocks\n426636591104\n",
        )
        .bytes(SECURE_BOOT, &[0x06, 0, 0, 0, 1])
        .dir("/sys/class/tpm/tpm0")
        .file(
            "/sys/kernel/security/lsm",
            "lockdown,capability,yama,selinux,bpf\n",
        )
        .file("/sys/fs/selinux/enforce", "1")
        .file(
            "/etc/selinux/config",
            "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
        )
        .file("/proc/sys/crypto/fips_enabled", "1\n")
        .command(
            "rpm",
            RPM,
            include_str!("../testdata/rhel9/rpm-installtime"),
        )
        .command("podman", &["info"], "host:\n  arch: amd64\n")
        .program("qemu-system-x86_64")
}

/// An Ubuntu 22.04 web server on a cloud VM: plain root, a LUKS data disk, Secure Boot,
/// vTPM, AppArmor enforcing, docker.
fn ubuntu2204() -> RecordedProbe {
    RecordedProbe::new()
        .file(
            "/etc/os-release",
            include_str!("../testdata/ubuntu2204/os-release"),
        )
        .file("/proc/sys/kernel/osrelease", "5.15.0-105-generic\n")
        .file("/proc/sys/kernel/hostname", "web-03\n")
        .file("/sys/devices/system/cpu/online", "0-7\n")
        .file(
            "/proc/meminfo",
            "MemTotal:       32859256 kB\nMemFree: 1 kB\n",
        )
        .command(
            "lsblk",
            LSBLK,
            include_str!("../testdata/ubuntu2204/lsblk.json"),
        )
        .dir("/var/lib/meridian")
        .command(
            "df",
            &["-B1", "--output=size", "/var/lib/meridian"],
            "    1B-blocks\n1081101176832\n",
        )
        .bytes(SECURE_BOOT, &[0x06, 0, 0, 0, 1])
        .dir("/sys/class/tpm/tpm0")
        .file(
            "/sys/kernel/security/lsm",
            "lockdown,capability,landlock,yama,integrity,apparmor\n",
        )
        .file("/sys/module/apparmor/parameters/enabled", "Y\n")
        .file(
            "/sys/kernel/security/apparmor/profiles",
            include_str!("../testdata/ubuntu2204/apparmor-profiles"),
        )
        .file("/proc/sys/crypto/fips_enabled", "0\n")
        .dir("/var/lib/dpkg")
        .file(
            "/var/log/dpkg.log",
            include_str!("../testdata/ubuntu2204/dpkg.log"),
        )
        .command("docker", &["info"], "Client:\n Version: 26.1.3\n")
}

/// A Debian 12 VM booted by a BIOS (this machine's recorded files): no Secure Boot, no
/// TPM, AppArmor on but its profiles unreadable (the agent is not root), the last upgrade
/// in the rotated dpkg log, the data directory not created yet.
fn debian12() -> RecordedProbe {
    RecordedProbe::new()
        .file(
            "/etc/os-release",
            include_str!("../testdata/debian12/os-release"),
        )
        .file("/proc/sys/kernel/osrelease", "6.1.0-21-amd64\n")
        .file("/proc/sys/kernel/hostname", "build-vm\n")
        .file("/proc/cpuinfo", include_str!("../testdata/debian12/cpuinfo"))
        .file("/proc/meminfo", include_str!("../testdata/debian12/meminfo"))
        .command(
            "lsblk",
            LSBLK,
            include_str!("../testdata/debian12/lsblk.json"),
        )
        .command(
            "df",
            &["-B1", "--output=size", "/var/lib"],
            "   1B-blocks\n270553174016\n",
        )
        .dir("/sys/firmware/acpi")
        .dir("/sys/class/net")
        .file(
            "/sys/kernel/security/lsm",
            "lockdown,capability,landlock,yama,apparmor,tomoyo\n",
        )
        .file("/sys/module/apparmor/parameters/enabled", "Y\n")
        .file("/proc/sys/crypto/fips_enabled", "0\n")
        .dir("/var/lib/dpkg")
        .file(
            "/var/log/dpkg.log",
            "2024-06-01 00:00:01 startup archives unpack\n2024-06-01 00:00:02 install tree:amd64 <none> 2.1.0-1\n",
        )
        .file(
            "/var/log/dpkg.log.1",
            "2024-05-03 11:00:00 upgrade tzdata:all 2024a-0+deb12u1 2024a-1+deb12u1\n",
        )
}

/// An Ubuntu 22.04 GPU server: 8×H100 80GB, 2 TiB of memory, docker; little else known.
fn gpu_h100() -> RecordedProbe {
    RecordedProbe::new()
        .file(
            "/etc/os-release",
            include_str!("../testdata/ubuntu2204/os-release"),
        )
        .file("/proc/sys/kernel/osrelease", "5.15.0-105-generic\n")
        .file("/proc/sys/kernel/hostname", "gpu-07\n")
        .file("/sys/devices/system/cpu/online", "0-191\n")
        .file("/proc/meminfo", "MemTotal:       2113663312 kB\n")
        .command(
            "nvidia-smi",
            NVIDIA_SMI,
            include_str!("../testdata/gpu-h100/nvidia-smi.csv"),
        )
        .command("docker", &["info"], "Server:\n Containers: 3\n")
}

#[test]
fn rhel9_with_luks_selinux_and_fips() {
    let facts = discover(&rhel9(), &linux());
    assert_eq!(
        facts,
        HostFacts {
            hostname: "db-01.example.internal".into(),
            os: linux_os("rhel", "9.4", "5.14.0-427.13.1.el9_4.x86_64"),
            os_name: Some("Red Hat Enterprise Linux 9.4 (Plow)".into()),
            arch: Arch::Amd64,
            capacity: api::kinds::NodeResources {
                cpu: Cpu::from_cores(32),
                memory: Memory::from_bytes(131_535_872 * 1024),
                ephemeral_storage: Some(Memory::from_bytes(426_636_591_104)),
                gpus: vec![],
            },
            drivers: vec![Driver::Exec, Driver::Qemu, Driver::Container],
            security: SecurityFacts {
                disk_encryption: Some(true),
                secure_boot: Some(true),
                tpm: Some(true),
                selinux: Some(LsmMode::Enforcing),
                apparmor: Some(LsmMode::Disabled),
                fips: Some(true),
                // Newest rpm install 2024-05-14T09:00Z; gpg-pubkey imports do not count.
                patch_age_days: Some(30),
            },
            disks: vec![Disk {
                name: "nvme0n1".into(),
                size: Some(Memory::from_bytes(512_110_190_592)),
            }],
        }
    );
}

#[test]
fn ubuntu2204_with_apparmor() {
    let facts = discover(&ubuntu2204(), &linux());
    assert_eq!(facts.hostname, "web-03");
    assert_eq!(facts.os, linux_os("ubuntu", "22.04", "5.15.0-105-generic"));
    assert_eq!(facts.os_name.as_deref(), Some("Ubuntu 22.04.4 LTS"));
    assert_eq!(facts.capacity.cpu, Cpu::from_cores(8));
    assert_eq!(facts.capacity.memory, Memory::from_bytes(32_859_256 * 1024));
    assert_eq!(
        facts.capacity.ephemeral_storage,
        Some(Memory::from_bytes(1_081_101_176_832))
    );
    assert_eq!(facts.drivers, [Driver::Exec, Driver::Container]);
    assert_eq!(
        facts.security,
        SecurityFacts {
            // Root is a plain ext4 partition; the encrypted data disk does not count.
            disk_encryption: Some(false),
            secure_boot: Some(true),
            tpm: Some(true),
            selinux: Some(LsmMode::Disabled),
            apparmor: Some(LsmMode::Enforcing),
            fips: Some(false),
            // Last upgrade 2024-05-14 06:25:40; the later `install` is not an update.
            patch_age_days: Some(30),
        }
    );
    let names: Vec<&str> = facts.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sda", "sdb"]);
}

#[test]
fn debian12_vm_without_secure_boot() {
    let facts = discover(&debian12(), &linux());
    assert_eq!(facts.hostname, "build-vm");
    assert_eq!(facts.os, linux_os("debian", "12", "6.1.0-21-amd64"));
    assert_eq!(facts.capacity.cpu, Cpu::from_cores(2), "from /proc/cpuinfo");
    assert_eq!(facts.capacity.memory, Memory::from_bytes(24_684_084 * 1024));
    assert_eq!(
        facts.capacity.ephemeral_storage,
        Some(Memory::from_bytes(270_553_174_016)),
        "the data directory's nearest existing parent"
    );
    assert_eq!(facts.drivers, [Driver::Exec]);
    assert_eq!(
        facts.security,
        SecurityFacts {
            disk_encryption: Some(false),
            secure_boot: Some(false),
            tpm: Some(false),
            selinux: Some(LsmMode::Disabled),
            apparmor: None,
            fips: Some(false),
            patch_age_days: Some(41),
        }
    );
}

#[test]
fn gpu_host_with_eight_h100() {
    let facts = discover(&gpu_h100(), &linux());
    assert_eq!(
        facts.capacity.gpus,
        [GpuDevice {
            model: "H100".into(),
            memory: Some(Memory::from_gib(80)),
            count: 8,
            shareable: None,
        }]
    );
    assert_eq!(facts.capacity.gpu_count(), 8);
    assert_eq!(facts.capacity.cpu, Cpu::from_cores(192));
    assert_eq!(facts.capacity.memory.to_string(), "2113663312Ki");
    // Nothing recorded: unknown, not false.
    assert_eq!(facts.capacity.ephemeral_storage, None);
    assert_eq!(facts.security.disk_encryption, None);
    assert_eq!(facts.security.secure_boot, None);
    assert_eq!(facts.security.tpm, None);
    assert_eq!(facts.security.selinux, None);
    assert_eq!(facts.security.apparmor, None);
    assert_eq!(facts.security.patch_age_days, None);

    let spec = node_spec(&facts, "frankfurt-1");
    assert_eq!(spec.site, "frankfurt-1");
    assert_eq!(spec.capacity, facts.capacity);
    assert_eq!(spec.drivers, [Driver::Exec, Driver::Container]);
    assert!(spec.taints.is_empty() && !spec.unschedulable && spec.allocatable.is_none());
    // What the agent registers is a valid Node manifest.
    let node = api::Node::new(api::ObjectMeta::named("gpu-07"), spec);
    api::object_from_value(serde_json::to_value(&node).unwrap()).unwrap();
}

#[test]
fn windows_server_2022() {
    let probe = RecordedProbe::new()
        .command(
            "reg",
            &[
                "query",
                r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion",
            ],
            include_str!("../testdata/windows2022/reg-query.txt"),
        )
        .command(
            "powershell",
            &[
                "-NoProfile",
                "-NonInteractive",
                "-Command",
                "(Get-CimInstance Win32_ComputerSystem).TotalPhysicalMemory",
            ],
            "68718940160\r\n",
        )
        .command("hostname", &[], "WIN-7R3K2M9\r\n")
        .command("docker", &["info"], "Server:\r\n")
        .program("qemu-system-x86_64");
    let facts = discover(&probe, &options(OsFamily::Windows, Arch::Amd64));
    assert_eq!(facts.hostname, "WIN-7R3K2M9");
    assert_eq!(
        facts.os,
        NodeOs {
            family: OsFamily::Windows,
            distro: Some("windows-server".into()),
            version: Some("2022".into()),
            build: Some("10.0.20348".into()),
            kernel: Some("10.0.20348.2461".into()),
        }
    );
    assert_eq!(
        facts.os_name.as_deref(),
        Some("Windows Server 2022 Datacenter")
    );
    assert_eq!(facts.capacity.memory, Memory::from_bytes(68_718_940_160));
    assert!(facts.capacity.cpu >= Cpu::from_cores(1));
    assert_eq!(
        facts.drivers,
        [Driver::Exec, Driver::Qemu, Driver::Container]
    );
    assert_eq!(
        facts.security,
        SecurityFacts::default(),
        "not discovered yet"
    );
}

#[test]
fn an_empty_host_is_all_unknown() {
    let facts = discover(&RecordedProbe::new(), &linux());
    assert_eq!(facts.hostname, "");
    assert_eq!(facts.os.family, OsFamily::Linux);
    assert_eq!(facts.os.distro, None);
    assert_eq!(facts.capacity.memory, Memory::default());
    assert!(
        facts.capacity.cpu >= Cpu::from_cores(1),
        "this process's CPUs"
    );
    assert_eq!(facts.security, SecurityFacts::default());
    assert_eq!(facts.drivers, [Driver::Exec]);
}

#[test]
#[cfg(target_os = "linux")]
fn this_machine() {
    let options = Options::for_this_host(std::env::temp_dir()).unwrap();
    let facts = discover(&HostProbe::default(), &options);
    assert_eq!(facts.os.family, OsFamily::Linux);
    assert!(facts.capacity.cpu >= Cpu::from_cores(1), "{facts:?}");
    assert!(facts.capacity.memory > Memory::default(), "{facts:?}");
    assert!(facts.os.kernel.as_deref().is_some_and(|k| !k.is_empty()));
    assert!(!facts.hostname.is_empty());
    assert!(facts.drivers.contains(&Driver::Exec));
    assert_eq!(facts.arch, agent::arch_of(std::env::consts::ARCH).unwrap());
}
