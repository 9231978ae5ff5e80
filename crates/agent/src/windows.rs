//! Windows facts: builds, product names and the registry's
//! `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion` values; and the arithmetic of
//! task limits as Job Object limits ([`job_limits`]).
//!
//! Everything here is pure and compiles on every platform, so it is tested on Linux. The
//! registry is read with `reg query` through the [`crate::Probe`], like any other command;
//! nothing here calls a Windows API (the Job Object itself is `crate::driver::job`,
//! compiled on Windows only).
//!
//! `ProductName` is not trusted for the version: Windows 11 still says `Windows 10 Pro`
//! there. The build number decides, with `InstallationType` telling server from client
//! (build 26100 is both Windows Server 2025 and Windows 11 24H2).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use api::kinds::{NodeOs, OsFamily};

/// The registry key `reg query` reads.
pub const CURRENT_VERSION_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";

/// A Windows version `major.minor.build[.revision]`: `10.0.20348.2461`. The revision is
/// the update revision (`UBR`), which moves with each monthly update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowsVersion {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    pub revision: Option<u32>,
}

impl WindowsVersion {
    /// `major.minor.build`, what `NodeOs.build` holds: `10.0.20348`.
    pub fn build_string(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// Not `major.minor.build` or `major.minor.build.revision`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Windows version (use e.g. 10.0.20348 or 10.0.20348.2461)")]
pub struct InvalidWindowsVersion(pub String);

impl FromStr for WindowsVersion {
    type Err = InvalidWindowsVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = api::validate::parse_windows_build(s.trim())
            .ok_or_else(|| InvalidWindowsVersion(s.to_string()))?;
        Ok(WindowsVersion {
            major: parts[0],
            minor: parts[1],
            build: parts[2],
            revision: parts.get(3).copied(),
        })
    }
}

impl fmt::Display for WindowsVersion {
    /// Every part that is known: `10.0.20348.2461`, or `10.0.20348` without a revision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)?;
        if let Some(r) = self.revision {
            write!(f, ".{r}")?;
        }
        Ok(())
    }
}

/// Server or client installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstallKind {
    Server,
    Client,
}

impl InstallKind {
    /// From `InstallationType` (`Server`, `Server Core`, `Nano Server`, `Client`), or from
    /// `ProductName` when that is missing.
    pub fn from_registry(installation_type: Option<&str>, product_name: Option<&str>) -> Self {
        let server = match installation_type {
            Some(t) => t.contains("Server"),
            None => product_name.is_some_and(|p| p.contains("Server")),
        };
        if server {
            InstallKind::Server
        } else {
            InstallKind::Client
        }
    }

    /// `windows-server` or `windows-client`, the `NodeOs.distro`.
    pub fn distro(self) -> &'static str {
        match self {
            InstallKind::Server => "windows-server",
            InstallKind::Client => "windows-client",
        }
    }
}

/// A Windows release: its name and the `NodeOs.version` Meridian reports for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// `Windows Server 2022`, `Windows 11 23H2`.
    pub name: &'static str,
    /// `2022`, `11`; `None` for a server build not in the table.
    pub version: Option<&'static str>,
}

/// Release builds (Microsoft's "Windows Server release information" and "Windows 11/10
/// release information"). Unlisted client builds fall back to Windows 10 or 11.
const PRODUCTS: &[(u32, InstallKind, &str, &str)] = &[
    (14393, InstallKind::Server, "Windows Server 2016", "2016"),
    (17763, InstallKind::Server, "Windows Server 2019", "2019"),
    (20348, InstallKind::Server, "Windows Server 2022", "2022"),
    (25398, InstallKind::Server, "Windows Server 23H2", "23H2"),
    (26100, InstallKind::Server, "Windows Server 2025", "2025"),
    (17763, InstallKind::Client, "Windows 10 1809", "10"),
    (19044, InstallKind::Client, "Windows 10 21H2", "10"),
    (19045, InstallKind::Client, "Windows 10 22H2", "10"),
    (22000, InstallKind::Client, "Windows 11 21H2", "11"),
    (22621, InstallKind::Client, "Windows 11 22H2", "11"),
    (22631, InstallKind::Client, "Windows 11 23H2", "11"),
    (26100, InstallKind::Client, "Windows 11 24H2", "11"),
    (26200, InstallKind::Client, "Windows 11 25H2", "11"),
];

/// The release a build number is, for a server or a client installation.
pub fn product(build: u32, kind: InstallKind) -> Product {
    if let Some(&(_, _, name, version)) = PRODUCTS
        .iter()
        .find(|&&(b, k, _, _)| b == build && k == kind)
    {
        return Product {
            name,
            version: Some(version),
        };
    }
    match kind {
        InstallKind::Server => Product {
            name: "Windows Server",
            version: None,
        },
        InstallKind::Client if build >= 22000 => Product {
            name: "Windows 11",
            version: Some("11"),
        },
        InstallKind::Client => Product {
            name: "Windows 10",
            version: Some("10"),
        },
    }
}

/// Parses `reg query <key>` output into value name → data. Value lines are
/// `    Name    REG_TYPE    data`; `REG_DWORD` and `REG_QWORD` data (`0x4d2`) become
/// decimal (`1234`); key lines (`HKEY_…`) and blank lines are skipped.
pub fn parse_reg_query(text: &str) -> HashMap<String, String> {
    let mut values = HashMap::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            continue;
        }
        let line = line.trim();
        let Some(at) = line.find("    REG_") else {
            continue;
        };
        let name = line[..at].trim();
        let rest = line[at..].trim_start();
        let (kind, data) = rest.split_once("    ").unwrap_or((rest, ""));
        let data = data.trim();
        let data = match kind {
            "REG_DWORD" | "REG_QWORD" => match data
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                Some(n) => n.to_string(),
                None => continue,
            },
            _ => data.to_string(),
        };
        values.insert(name.to_string(), data);
    }
    values
}

/// The OS of a Windows host from its `CurrentVersion` registry values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsOs {
    /// Family `windows`, distro `windows-server`/`windows-client`, version `2022`/`11`,
    /// build `10.0.20348`, and as kernel the full version with the update revision
    /// (`10.0.20348.2461`), which is what patch levels are compared by.
    pub os: NodeOs,
    pub version: WindowsVersion,
    /// For people: `Windows Server 2022 Datacenter`, `Windows 11 Pro` (corrected from
    /// the registry's `Windows 10 Pro` on Windows 11).
    pub product_name: String,
}

/// Reads `CurrentMajorVersionNumber`, `CurrentMinorVersionNumber`, `CurrentBuildNumber`,
/// `UBR`, `ProductName`, `EditionID` and `InstallationType` (numbers in decimal, as
/// [`parse_reg_query`] leaves them, or `0x` hex). `None` without a build number.
pub fn from_registry(values: &HashMap<String, String>) -> Option<WindowsOs> {
    let get = |k: &str| values.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let number = |k: &str| {
        let v = get(k)?;
        match v.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    };
    let build = number("CurrentBuildNumber").or_else(|| number("CurrentBuild"))?;
    let version = WindowsVersion {
        major: number("CurrentMajorVersionNumber").unwrap_or(10),
        minor: number("CurrentMinorVersionNumber").unwrap_or(0),
        build,
        revision: number("UBR"),
    };
    let kind = InstallKind::from_registry(get("InstallationType"), get("ProductName"));
    let product = product(build, kind);
    let product_name = match get("ProductName") {
        Some(p) if kind == InstallKind::Client && build >= 22000 => {
            p.replacen("Windows 10", "Windows 11", 1)
        }
        Some(p) => p.to_string(),
        None => match get("EditionID") {
            Some(edition) => format!("{} {edition}", product.name),
            None => product.name.to_string(),
        },
    };
    // A server build outside the table still names its year: "Windows Server 2028 …".
    let version_name = product.version.map(str::to_string).or_else(|| {
        product_name
            .split_whitespace()
            .find(|w| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    });
    Some(WindowsOs {
        os: NodeOs {
            family: OsFamily::Windows,
            distro: Some(kind.distro().to_string()),
            version: version_name,
            build: Some(version.build_string()),
            kernel: Some(version.to_string()),
        },
        version,
        product_name,
    })
}

/// `TotalPhysicalMemory` printed by PowerShell (a number of bytes on one line).
pub fn parse_total_physical_memory(text: &str) -> Option<api::Memory> {
    text.trim().parse().ok().map(api::Memory::from_bytes)
}

/// The PowerShell command that prints the physical memory in bytes.
pub const MEMORY_COMMAND: &[&str] = &[
    "-NoProfile",
    "-NonInteractive",
    "-Command",
    "(Get-CimInstance Win32_ComputerSystem).TotalPhysicalMemory",
];

/// A task's resources as Job Object limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Maximum working set of the job's processes, in bytes (`JOB_OBJECT_LIMIT_WORKINGSET`).
    pub working_set: Option<u64>,
    /// The CPU rate cap as hundredths of a percent of the whole machine, 1 to 10000
    /// (`JOBOBJECT_CPU_RATE_CONTROL_INFORMATION.CpuRate` with `HARD_CAP`): 1500m on an
    /// 8-core machine is 1875 (18.75%).
    pub cpu_rate: Option<u32>,
    /// The first `ceil(cpu)` logical processors (`JOB_OBJECT_LIMIT_AFFINITY`): what the
    /// safe Job Object API can enforce of the cpu request.
    pub affinity: Option<u64>,
}

/// Translates a task's cpu (millicores) and memory (bytes) for a machine of
/// `machine_cpus` logical processors. Zero means no limit; a request of the whole
/// machine or more is no cpu limit either.
pub fn job_limits(cpu_millis: u64, memory_bytes: u64, machine_cpus: u32) -> JobLimits {
    let machine_millis = u64::from(machine_cpus) * 1000;
    let cpu_limited = cpu_millis > 0 && machine_millis > 0 && cpu_millis < machine_millis;
    let cpu_rate = cpu_limited.then(|| {
        // Round up: a limit never gives less than was requested.
        let rate = (cpu_millis * 10_000).div_ceil(machine_millis);
        u32::try_from(rate.clamp(1, 10_000)).unwrap_or(10_000)
    });
    let affinity = cpu_limited.then(|| {
        let cores = cpu_millis.div_ceil(1000).min(64);
        if cores >= 64 {
            u64::MAX
        } else {
            (1u64 << cores) - 1
        }
    });
    JobLimits {
        working_set: (memory_bytes > 0).then_some(memory_bytes),
        cpu_rate,
        affinity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn versions_parse_and_print() {
        let v: WindowsVersion = "10.0.20348.2461".parse().unwrap();
        assert_eq!(
            v,
            WindowsVersion {
                major: 10,
                minor: 0,
                build: 20348,
                revision: Some(2461)
            }
        );
        assert_eq!(v.to_string(), "10.0.20348.2461");
        assert_eq!(v.build_string(), "10.0.20348");
        let v: WindowsVersion = " 10.0.17763 ".parse().unwrap();
        assert_eq!(v.revision, None);
        assert_eq!(v.to_string(), "10.0.17763");
        for bad in [
            "",
            "10.0",
            "10.0.x",
            "10..20348",
            "10.0.20348.1.2",
            "-10.0.1",
        ] {
            assert!(bad.parse::<WindowsVersion>().is_err(), "{bad}");
        }
        assert_eq!(
            "10".parse::<WindowsVersion>().unwrap_err().to_string(),
            r#""10" is not a Windows version (use e.g. 10.0.20348 or 10.0.20348.2461)"#
        );
    }

    #[test]
    fn products_by_build() {
        use InstallKind::*;
        let name = |b, k| product(b, k).name;
        let version = |b, k| product(b, k).version;
        assert_eq!(name(17763, Server), "Windows Server 2019");
        assert_eq!(name(20348, Server), "Windows Server 2022");
        assert_eq!(name(26100, Server), "Windows Server 2025");
        assert_eq!(version(26100, Server), Some("2025"));
        assert_eq!(name(26100, Client), "Windows 11 24H2");
        assert_eq!(version(26100, Client), Some("11"));
        assert_eq!(name(22621, Client), "Windows 11 22H2");
        assert_eq!(name(22631, Client), "Windows 11 23H2");
        assert_eq!(name(19045, Client), "Windows 10 22H2");
        assert_eq!(product(27000, Client).version, Some("11"), "future client");
        assert_eq!(product(19041, Client).version, Some("10"));
        assert_eq!(product(30000, Server).version, None, "unknown server");
    }

    #[test]
    fn install_kinds() {
        use InstallKind::*;
        assert_eq!(InstallKind::from_registry(Some("Server"), None), Server);
        assert_eq!(
            InstallKind::from_registry(Some("Server Core"), None),
            Server
        );
        assert_eq!(
            InstallKind::from_registry(Some("Nano Server"), None),
            Server
        );
        assert_eq!(InstallKind::from_registry(Some("Client"), None), Client);
        let ws = Some("Windows Server 2019 Standard");
        assert_eq!(InstallKind::from_registry(None, ws), Server);
        assert_eq!(InstallKind::from_registry(None, None), Client);
    }

    #[test]
    fn reg_query_of_server_2022() {
        let values = parse_reg_query(include_str!("../testdata/windows2022/reg-query.txt"));
        assert_eq!(values["CurrentMajorVersionNumber"], "10", "DWORD 0xa");
        assert_eq!(values["CurrentMinorVersionNumber"], "0");
        assert_eq!(values["CurrentBuildNumber"], "20348");
        assert_eq!(values["UBR"], "2461");
        assert_eq!(values["ProductName"], "Windows Server 2022 Datacenter");
        assert_eq!(values["InstallationType"], "Server Core");
        assert_eq!(values["SystemRoot"], r"C:\Windows");
        assert!(!values.contains_key("Accessibility"), "subkeys are skipped");

        let os = from_registry(&values).unwrap();
        assert_eq!(
            os.os,
            NodeOs {
                family: OsFamily::Windows,
                distro: Some("windows-server".into()),
                version: Some("2022".into()),
                build: Some("10.0.20348".into()),
                kernel: Some("10.0.20348.2461".into()),
            }
        );
        assert_eq!(os.product_name, "Windows Server 2022 Datacenter");
    }

    #[test]
    fn registry_of_windows_11() {
        // Windows 11 still names itself Windows 10 in ProductName.
        let values = map(&[
            ("CurrentMajorVersionNumber", "10"),
            ("CurrentMinorVersionNumber", "0"),
            ("CurrentBuildNumber", "22631"),
            ("UBR", "0xdf1"),
            ("ProductName", "Windows 10 Pro"),
            ("EditionID", "Professional"),
            ("InstallationType", "Client"),
        ]);
        let os = from_registry(&values).unwrap();
        assert_eq!(os.os.distro.as_deref(), Some("windows-client"));
        assert_eq!(os.os.version.as_deref(), Some("11"));
        assert_eq!(os.os.build.as_deref(), Some("10.0.22631"));
        assert_eq!(os.os.kernel.as_deref(), Some("10.0.22631.3569"));
        assert_eq!(os.product_name, "Windows 11 Pro");
    }

    #[test]
    fn registry_of_26100_server_and_client() {
        let server = map(&[
            ("CurrentBuildNumber", "26100"),
            ("InstallationType", "Server"),
            ("EditionID", "ServerDatacenter"),
        ]);
        let os = from_registry(&server).unwrap();
        assert_eq!(os.os.version.as_deref(), Some("2025"));
        assert_eq!(
            os.os.build.as_deref(),
            Some("10.0.26100"),
            "10.0 by default"
        );
        assert_eq!(os.os.kernel.as_deref(), Some("10.0.26100"), "no UBR");
        assert_eq!(os.product_name, "Windows Server 2025 ServerDatacenter");

        let client = map(&[
            ("CurrentBuildNumber", "26100"),
            ("ProductName", "Windows 10 Enterprise"),
        ]);
        let os = from_registry(&client).unwrap();
        assert_eq!(os.os.distro.as_deref(), Some("windows-client"));
        assert_eq!(os.os.version.as_deref(), Some("11"));
        assert_eq!(os.product_name, "Windows 11 Enterprise");
    }

    #[test]
    fn registry_of_an_unlisted_server_build() {
        let values = map(&[
            ("CurrentBuildNumber", "30000"),
            ("ProductName", "Windows Server 2028 Standard"),
            ("InstallationType", "Server"),
        ]);
        let os = from_registry(&values).unwrap();
        assert_eq!(os.os.version.as_deref(), Some("2028"), "year from the name");
        assert!(from_registry(&map(&[("ProductName", "Windows")])).is_none());
    }

    #[test]
    fn physical_memory() {
        assert_eq!(
            parse_total_physical_memory("68718940160\r\n"),
            Some(api::Memory::from_bytes(68_718_940_160))
        );
        assert_eq!(parse_total_physical_memory(""), None);
    }

    #[test]
    fn job_limits_from_resources() {
        // 1.5 cores of 8: 18.75% of the machine, two processors.
        let l = job_limits(1500, 256 * 1024 * 1024, 8);
        assert_eq!(l.cpu_rate, Some(1875));
        assert_eq!(l.affinity, Some(0b11));
        assert_eq!(l.working_set, Some(268_435_456));
        // Rates round up and never reach 0.
        assert_eq!(job_limits(1, 0, 64).cpu_rate, Some(1));
        assert_eq!(job_limits(333, 0, 3).cpu_rate, Some(1110));
        // The whole machine, or nothing asked: no cpu limit.
        assert_eq!(
            job_limits(8000, 0, 8),
            JobLimits {
                working_set: None,
                cpu_rate: None,
                affinity: None
            }
        );
        assert_eq!(job_limits(0, 0, 8).cpu_rate, None);
        assert_eq!(job_limits(500, 0, 0).cpu_rate, None);
        // Large machines: the mask saturates.
        assert_eq!(job_limits(100_000, 0, 128).affinity, Some(u64::MAX));
    }
}
