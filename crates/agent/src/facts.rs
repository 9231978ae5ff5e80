//! [`discover`]: everything the agent reports about its host, read through a [`Probe`].
//!
//! Where each fact comes from (Linux):
//!
//! | fact | source |
//! |---|---|
//! | distro, version, name | `/etc/os-release` (else `/usr/lib/os-release`): `ID`, `VERSION_ID`, `PRETTY_NAME` |
//! | kernel | `/proc/sys/kernel/osrelease` |
//! | hostname | `/proc/sys/kernel/hostname`, else `hostname` |
//! | cpu | `/sys/devices/system/cpu/online`, else `/proc/cpuinfo`, else the CPUs this process may use |
//! | memory | `MemTotal` of `/proc/meminfo` |
//! | ephemeral storage | `df -B1 --output=size` of the data directory (or its nearest existing parent) |
//! | disks, disk encryption | `lsblk -J -b -o NAME,TYPE,FSTYPE,MOUNTPOINT,SIZE`: `/` below a `crypt` or `crypto_LUKS` device |
//! | GPUs | `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` |
//! | secure boot | the `SecureBoot` efivar, else `mokutil --sb-state`; no `/sys/firmware/efi` (BIOS boot) is off |
//! | TPM | `/sys/class/tpm/tpm0` |
//! | SELinux | `/sys/fs/selinux/enforce`; disabled when `/sys/kernel/security/lsm` does not list it or `/etc/selinux/config` says so |
//! | AppArmor | `/sys/module/apparmor/parameters/enabled` and the loaded profiles' modes; disabled when the LSM list does not name it |
//! | FIPS | `/proc/sys/crypto/fips_enabled`; off when the kernel has no FIPS support |
//! | patch age | dpkg hosts: the last `upgrade` in `/var/log/dpkg.log` or `.1`; rpm hosts: the newest package install time |
//! | drivers | `exec` always; `qemu` when `qemu-system-<arch>` is on `PATH`; `container` when `podman info` or `docker info` succeeds from an engine ([`crate::driver::available`]) |
//!
//! On Windows the OS comes from `reg query` of the `CurrentVersion` key
//! ([`crate::windows`]), memory from PowerShell's `Win32_ComputerSystem`; GPUs and drivers
//! as on Linux. Windows security facts are not discovered yet (all unknown).
//!
//! A fact that cannot be read is unknown (`None`), never a guess; a reading that proves
//! absence (no EFI firmware, no TPM device, an LSM not loaded) is `false`/`disabled`.

use std::path::{Path, PathBuf};

use api::kinds::{
    Arch, Driver, GpuDevice, LsmMode, NodeOs, NodeResources, NodeSpec, OsFamily, SecurityFacts,
};
use api::{Cpu, Memory};
use jiff::Timestamp;

use crate::gpu;
use crate::linux::{self, Disk, Lsblk};
use crate::probe::Probe;
use crate::windows;

/// Everything the agent knows about its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub os: NodeOs,
    /// For people: `Red Hat Enterprise Linux 9.4 (Plow)`, `Windows Server 2022 Datacenter`.
    pub os_name: Option<String>,
    pub arch: Arch,
    pub capacity: NodeResources,
    /// What the agent can run here.
    pub drivers: Vec<Driver>,
    pub security: SecurityFacts,
    /// Whole disks (the Node object has no field for them yet; for logs and later use).
    pub disks: Vec<Disk>,
}

/// What the agent knows without probing: the platform it was built for, where it keeps
/// its data and what time it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub family: OsFamily,
    pub arch: Arch,
    /// The agent's data directory (absolute); its file system is the node's ephemeral
    /// storage. It need not exist yet: its nearest existing parent is measured.
    pub data_dir: PathBuf,
    /// Patch age is counted up to this time.
    pub now: Timestamp,
}

/// Why the agent cannot describe this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error(
        "this agent was built for the {arch} architecture, which Meridian does not schedule on (it knows amd64 and arm64)"
    )]
    UnsupportedArch { arch: String },
}

impl Options {
    /// This process's platform and the current time.
    pub fn for_this_host(data_dir: impl Into<PathBuf>) -> Result<Options, FactsError> {
        let arch = arch_of(std::env::consts::ARCH).ok_or_else(|| FactsError::UnsupportedArch {
            arch: std::env::consts::ARCH.to_string(),
        })?;
        Ok(Options {
            family: if cfg!(windows) {
                OsFamily::Windows
            } else {
                OsFamily::Linux
            },
            arch,
            data_dir: data_dir.into(),
            now: Timestamp::now(),
        })
    }
}

/// Rust's architecture name (`std::env::consts::ARCH`) as Meridian's.
pub fn arch_of(rust_arch: &str) -> Option<Arch> {
    match rust_arch {
        "x86_64" => Some(Arch::Amd64),
        "aarch64" => Some(Arch::Arm64),
        _ => None,
    }
}

/// Discovers the host's facts. Never fails: what cannot be read stays unknown, except
/// that an unreadable memory size is 0 and an unreadable CPU count is the CPUs this
/// process may use (both logged as warnings).
pub fn discover(probe: &dyn Probe, options: &Options) -> HostFacts {
    let mut facts = match options.family {
        OsFamily::Linux => discover_linux(probe, options),
        OsFamily::Windows => discover_windows(probe, options),
    };
    facts.capacity.gpus = gpus(probe);
    facts.drivers = drivers(probe, options.arch);
    facts
}

fn discover_linux(probe: &dyn Probe, options: &Options) -> HostFacts {
    let release = ["/etc/os-release", "/usr/lib/os-release"]
        .into_iter()
        .find_map(|p| probe.read(p))
        .map(|t| linux::parse_os_release(&t))
        .unwrap_or_default();
    let kernel = probe
        .read("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let cpus = probe
        .read("/sys/devices/system/cpu/online")
        .and_then(|t| linux::parse_cpu_list(&t))
        .or_else(|| {
            probe
                .read("/proc/cpuinfo")
                .and_then(|t| linux::parse_cpuinfo_count(&t))
        });
    let memory = probe
        .read("/proc/meminfo")
        .and_then(|t| linux::parse_meminfo_total(&t));
    let lsblk = probe
        .run(
            "lsblk",
            &["-J", "-b", "-o", "NAME,TYPE,FSTYPE,MOUNTPOINT,SIZE"],
        )
        .and_then(|t| linux::parse_lsblk(&t));
    HostFacts {
        hostname: hostname(probe, Some("/proc/sys/kernel/hostname")),
        os: NodeOs {
            family: OsFamily::Linux,
            distro: release.id,
            version: release.version_id,
            build: None,
            kernel,
        },
        os_name: release.pretty_name,
        arch: options.arch,
        capacity: NodeResources {
            cpu: cpu_or_parallelism(cpus),
            memory: memory_or_zero(memory),
            ephemeral_storage: ephemeral_storage(probe, options),
            gpus: Vec::new(),
        },
        drivers: Vec::new(),
        security: linux_security(probe, lsblk.as_ref(), options.now),
        disks: lsblk.map(|l| l.disks).unwrap_or_default(),
    }
}

fn discover_windows(probe: &dyn Probe, options: &Options) -> HostFacts {
    let registry = probe
        .run("reg", &["query", windows::CURRENT_VERSION_KEY])
        .map(|t| windows::parse_reg_query(&t))
        .and_then(|values| windows::from_registry(&values));
    let memory = probe
        .run("powershell", windows::MEMORY_COMMAND)
        .and_then(|t| windows::parse_total_physical_memory(&t));
    let (os, os_name) = match registry {
        Some(w) => (w.os, Some(w.product_name)),
        None => (
            NodeOs {
                family: OsFamily::Windows,
                distro: None,
                version: None,
                build: None,
                kernel: None,
            },
            None,
        ),
    };
    HostFacts {
        hostname: hostname(probe, None),
        os,
        os_name,
        arch: options.arch,
        capacity: NodeResources {
            cpu: cpu_or_parallelism(None),
            memory: memory_or_zero(memory),
            ephemeral_storage: None,
            gpus: Vec::new(),
        },
        drivers: Vec::new(),
        security: SecurityFacts::default(),
        disks: Vec::new(),
    }
}

/// The host name from `file` (Linux) or else the `hostname` command; empty if neither
/// answers.
fn hostname(probe: &dyn Probe, file: Option<&str>) -> String {
    let clean = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    file.and_then(|f| probe.read(f))
        .and_then(clean)
        .or_else(|| probe.run("hostname", &[]).and_then(clean))
        .unwrap_or_default()
}

fn cpu_or_parallelism(cpus: Option<u64>) -> Cpu {
    let cpus = cpus.unwrap_or_else(|| {
        tracing::warn!("host facts: CPU count unreadable; using the CPUs this process may use");
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
    });
    Cpu::from_cores(cpus)
}

fn memory_or_zero(memory: Option<Memory>) -> Memory {
    memory.unwrap_or_else(|| {
        tracing::warn!("host facts: memory size unreadable; reporting 0");
        Memory::default()
    })
}

fn ephemeral_storage(probe: &dyn Probe, options: &Options) -> Option<Memory> {
    let dir = ancestors(&options.data_dir).find(|p| probe.exists(p))?;
    probe
        .run("df", &["-B1", "--output=size", &dir])
        .and_then(|t| linux::parse_df_size(&t))
}

/// `path` and its ancestors, nearest first.
fn ancestors(path: &Path) -> impl Iterator<Item = String> + '_ {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_string_lossy().into_owned())
}

fn gpus(probe: &dyn Probe) -> Vec<GpuDevice> {
    probe
        .run("nvidia-smi", gpu::NVIDIA_SMI_ARGS)
        .map(|t| gpu::parse_nvidia_smi(&t))
        .unwrap_or_default()
}

fn drivers(probe: &dyn Probe, arch: Arch) -> Vec<Driver> {
    crate::driver::available(probe, arch)
}

const SECURE_BOOT_EFIVAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
const LSM_LIST: &str = "/sys/kernel/security/lsm";
/// The dpkg logs the agent can read; older ones are compressed.
const DPKG_LOGS: &[&str] = &["/var/log/dpkg.log", "/var/log/dpkg.log.1"];
const RPM_INSTALL_TIMES: &[&str] = &["-qa", "--qf", r"%{NAME} %{INSTALLTIME}\n"];

fn linux_security(probe: &dyn Probe, lsblk: Option<&Lsblk>, now: Timestamp) -> SecurityFacts {
    let lsm = probe.read(LSM_LIST);
    let lsm_absent = |module| {
        lsm.as_deref()
            .is_some_and(|l| !linux::lsm_active(l, module))
    };
    let secure_boot = probe
        .read_bytes(SECURE_BOOT_EFIVAR)
        .and_then(|b| linux::parse_secure_boot_efivar(&b))
        .or_else(|| {
            probe
                .run("mokutil", &["--sb-state"])
                .and_then(|t| linux::parse_mokutil_sb_state(&t))
        })
        .or_else(|| {
            // Booted by a BIOS: no UEFI, so no Secure Boot.
            (probe.exists("/sys/firmware") && !probe.exists("/sys/firmware/efi")).then_some(false)
        });
    let selinux = probe
        .read("/sys/fs/selinux/enforce")
        .and_then(|t| linux::parse_selinux_enforce(&t))
        .or_else(|| {
            let configured_off = probe
                .read("/etc/selinux/config")
                .is_some_and(|c| linux::selinux_config_disabled(&c));
            (lsm_absent("selinux") || configured_off).then_some(LsmMode::Disabled)
        });
    let apparmor = match probe.read("/sys/module/apparmor/parameters/enabled") {
        Some(enabled) => linux::apparmor_mode(
            &enabled,
            probe
                .read("/sys/kernel/security/apparmor/profiles")
                .as_deref(),
        ),
        None => lsm_absent("apparmor").then_some(LsmMode::Disabled),
    };
    let fips = match probe.read("/proc/sys/crypto/fips_enabled") {
        Some(t) => linux::parse_fips_enabled(&t),
        // A kernel built without FIPS support is not in FIPS mode.
        None => probe.exists("/proc/sys/kernel").then_some(false),
    };
    let last_update = if probe.exists("/var/lib/dpkg") {
        DPKG_LOGS
            .iter()
            .find_map(|p| probe.read(p).and_then(|l| linux::last_dpkg_upgrade(&l)))
    } else {
        probe
            .run("rpm", RPM_INSTALL_TIMES)
            .and_then(|t| linux::last_rpm_install(&t))
    };
    SecurityFacts {
        disk_encryption: lsblk.and_then(|l| l.root_encrypted),
        secure_boot,
        tpm: if probe.exists("/sys/class/tpm/tpm0") {
            Some(true)
        } else {
            probe.exists("/sys/class").then_some(false)
        },
        selinux,
        apparmor,
        fips,
        patch_age_days: last_update.map(|t| linux::days_between(t, now)),
    }
}

/// The Node spec an agent registers with: the facts, in `site`, schedulable, with no
/// taints (labels and taints are the administrator's, in metadata and the stored spec).
pub fn node_spec(facts: &HostFacts, site: &str) -> NodeSpec {
    NodeSpec {
        site: site.to_string(),
        zone: None,
        os: facts.os.clone(),
        arch: facts.arch,
        capacity: facts.capacity.clone(),
        allocatable: None,
        drivers: facts.drivers.clone(),
        taints: Vec::new(),
        unschedulable: false,
    }
}

/// The security facts the agent reports in the Node's status.
pub fn security_status(facts: &HostFacts) -> SecurityFacts {
    facts.security.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn ancestors_nearest_first() {
        let list: Vec<String> = ancestors(Path::new("/var/lib/meridian")).collect();
        assert_eq!(list, ["/var/lib/meridian", "/var/lib", "/var", "/"]);
    }

    #[test]
    fn arch_names() {
        assert_eq!(arch_of("x86_64"), Some(Arch::Amd64));
        assert_eq!(arch_of("aarch64"), Some(Arch::Arm64));
        assert_eq!(arch_of("riscv64"), None);
    }
}
