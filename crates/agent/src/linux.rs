//! Pure parsers for what a Linux host says about itself. No I/O: each takes the text (or
//! bytes) a [`crate::Probe`] returned and is tested on output recorded on real hosts.

use api::Memory;
use api::kinds::LsmMode;
use jiff::Timestamp;

/// The fields of `/etc/os-release` (os-release(5)) that Meridian reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`: `rhel`, `ubuntu`, `debian`, `amzn`…
    pub id: Option<String>,
    /// `ID_LIKE`, split: `["rhel", "fedora"]`.
    pub id_like: Vec<String>,
    /// `VERSION_ID`: `9.4`, `22.04`, `12`.
    pub version_id: Option<String>,
    /// `PRETTY_NAME`: `Ubuntu 22.04.4 LTS`.
    pub pretty_name: Option<String>,
}

/// Parses os-release(5): `KEY=value` lines, values optionally in single or double quotes,
/// backslash escapes inside double quotes, `#` comments.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut out = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        let value = (!value.is_empty()).then_some(value);
        match key.trim() {
            "ID" => out.id = value,
            "ID_LIKE" => {
                out.id_like = value
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
            }
            "VERSION_ID" => out.version_id = value,
            "PRETTY_NAME" => out.pretty_name = value,
            _ => {}
        }
    }
    out
}

fn unquote(raw: &str) -> String {
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return raw.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `MemTotal` of `/proc/meminfo` (in KiB, though the file says `kB`).
pub fn parse_meminfo_total(text: &str) -> Option<Memory> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(Memory::from_bytes(kib.checked_mul(Memory::KI)?)),
        Some(_) => None,
    }
}

/// The number of CPUs in a kernel CPU list such as `/sys/devices/system/cpu/online`
/// (`0-63`, `0,2-5,8`).
pub fn parse_cpu_list(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut count = 0u64;
    for part in text.split(',') {
        count += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<u64>().ok()?;
                1
            }
        };
    }
    Some(count)
}

/// The number of `processor` entries in `/proc/cpuinfo`.
pub fn parse_cpuinfo_count(text: &str) -> Option<u64> {
    let n = text
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count() as u64;
    (n > 0).then_some(n)
}

/// The size in bytes from `df -B1 --output=size PATH` (a header, then one number).
pub fn parse_df_size(text: &str) -> Option<Memory> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let _header = lines.next()?;
    lines.next()?.parse().ok().map(Memory::from_bytes)
}

/// A whole disk from `lsblk` (partitions, LVM volumes and mappings are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name: `nvme0n1`, `sda`, `vda`.
    pub name: String,
    pub size: Option<Memory>,
}

/// What `lsblk -J -b -o NAME,TYPE,FSTYPE,MOUNTPOINT,SIZE` says about the disks and the
/// root file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lsblk {
    pub disks: Vec<Disk>,
    /// Whether `/` is on an encrypted device: some device on the path from its disk down
    /// to it is a `crypt` mapping or a `crypto_LUKS` container. `None` when no device is
    /// mounted on `/` (a container, or root on the network or in memory).
    pub root_encrypted: Option<bool>,
}

/// Parses lsblk's JSON tree. Accepts what util-linux 2.27 onwards writes: sizes as numbers
/// (2.33+) or strings, `mountpoint` as a string or `mountpoints` (2.37+) as a list.
pub fn parse_lsblk(text: &str) -> Option<Lsblk> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let devices = value.get("blockdevices")?.as_array()?;
    let mut out = Lsblk::default();
    for device in devices {
        let field = |name| device.get(name).and_then(|v| v.as_str());
        if field("type") == Some("disk") {
            let name = field("name").unwrap_or_default().to_string();
            // zram swap devices are memory, not disks.
            if !name.starts_with("zram") {
                out.disks.push(Disk {
                    name,
                    size: size_of(device),
                });
            }
        }
        if let Some(encrypted) = root_below(device, false) {
            out.root_encrypted = Some(encrypted);
        }
    }
    Some(out)
}

fn size_of(device: &serde_json::Value) -> Option<Memory> {
    match device.get("size")? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .map(Memory::from_bytes)
}

/// Whether `device` or one of its descendants is mounted on `/`, and if so whether the
/// path to it passes an encryption layer.
fn root_below(device: &serde_json::Value, encrypted_above: bool) -> Option<bool> {
    let field = |name| device.get(name).and_then(|v| v.as_str());
    let encrypted =
        encrypted_above || field("type") == Some("crypt") || field("fstype") == Some("crypto_LUKS");
    let mounted_on_root = field("mountpoint") == Some("/")
        || device
            .get("mountpoints")
            .and_then(|m| m.as_array())
            .is_some_and(|m| m.iter().any(|p| p.as_str() == Some("/")));
    if mounted_on_root {
        return Some(encrypted);
    }
    device
        .get("children")?
        .as_array()?
        .iter()
        .find_map(|child| root_below(child, encrypted))
}

/// The efivar `SecureBoot-8be4df61-…`: four attribute bytes, then the value (1 = on).
pub fn parse_secure_boot_efivar(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [_, _, _, _, value, ..] => Some(*value == 1),
        _ => None,
    }
}

/// `mokutil --sb-state`: `SecureBoot enabled` or `SecureBoot disabled`.
pub fn parse_mokutil_sb_state(text: &str) -> Option<bool> {
    text.lines().find_map(|l| match l.trim() {
        "SecureBoot enabled" => Some(true),
        "SecureBoot disabled" => Some(false),
        _ => None,
    })
}

/// Whether the active LSM list (`/sys/kernel/security/lsm`: `lockdown,capability,…`)
/// names `module`.
pub fn lsm_active(list: &str, module: &str) -> bool {
    list.trim().split(',').any(|m| m.trim() == module)
}

/// SELinux mode from `/sys/fs/selinux/enforce` (`1` enforcing, `0` permissive).
pub fn parse_selinux_enforce(text: &str) -> Option<LsmMode> {
    match text.trim() {
        "1" => Some(LsmMode::Enforcing),
        "0" => Some(LsmMode::Permissive),
        _ => None,
    }
}

/// `SELINUX=` of `/etc/selinux/config`: whether SELinux is configured off.
pub fn selinux_config_disabled(text: &str) -> bool {
    text.lines().any(|l| {
        l.trim()
            .strip_prefix("SELINUX=")
            .is_some_and(|v| v.trim().trim_matches('"') == "disabled")
    })
}

/// AppArmor mode from `/sys/module/apparmor/parameters/enabled` (`Y`/`N`) and the loaded
/// profiles (`/sys/kernel/security/apparmor/profiles`, readable by root only): any
/// profile in `enforce` mode → enforcing; profiles, none enforced → permissive (they only
/// log); none loaded → permissive (nothing is confined). `N` → disabled. Enabled with the
/// profile list unreadable → `None`: the mode depends on the profiles.
pub fn apparmor_mode(enabled: &str, profiles: Option<&str>) -> Option<LsmMode> {
    match enabled.trim() {
        "N" => Some(LsmMode::Disabled),
        "Y" => {
            let profiles = profiles?;
            let enforced = profiles
                .lines()
                .any(|l| l.trim_end().ends_with("(enforce)"));
            Some(if enforced {
                LsmMode::Enforcing
            } else {
                LsmMode::Permissive
            })
        }
        _ => None,
    }
}

/// `/proc/sys/crypto/fips_enabled`: `1` or `0`.
pub fn parse_fips_enabled(text: &str) -> Option<bool> {
    match text.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// The time of the last `upgrade` line of a dpkg log (`/var/log/dpkg.log`):
/// `2024-05-14 06:25:11 upgrade libssl3:amd64 3.0.2-0ubuntu1.14 3.0.2-0ubuntu1.15`.
/// dpkg writes local time; it is read as UTC, so an age in days may be off by one.
pub fn last_dpkg_upgrade(log: &str) -> Option<Timestamp> {
    log.lines().rev().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (date, time, action) = (fields.next()?, fields.next()?, fields.next()?);
        if action != "upgrade" {
            return None;
        }
        let civil: jiff::civil::DateTime = format!("{date}T{time}").parse().ok()?;
        civil
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    })
}

/// The newest install time of `rpm -qa --qf '%{NAME} %{INSTALLTIME}\n'` (an update
/// installs the package anew, so this is the last update or install), skipping the
/// `gpg-pubkey` pseudo-packages, whose times are when keys were imported.
pub fn last_rpm_install(text: &str) -> Option<Timestamp> {
    text.lines()
        .filter_map(|line| {
            let (name, time) = line.trim().rsplit_once(' ')?;
            if name == "gpg-pubkey" {
                return None;
            }
            Timestamp::from_second(time.parse().ok()?).ok()
        })
        .max()
}

/// Whole days from `then` to `now`; zero if `then` is in the future.
pub fn days_between(then: Timestamp, now: Timestamp) -> u32 {
    let seconds = now.duration_since(then).as_secs().max(0);
    u32::try_from(seconds / 86_400).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RHEL9: &str = include_str!("../testdata/rhel9/os-release");
    const UBUNTU2204: &str = include_str!("../testdata/ubuntu2204/os-release");
    const DEBIAN12: &str = include_str!("../testdata/debian12/os-release");

    #[test]
    fn os_release_of_recorded_hosts() {
        let rhel = parse_os_release(RHEL9);
        assert_eq!(rhel.id.as_deref(), Some("rhel"));
        assert_eq!(rhel.id_like, ["fedora"]);
        assert_eq!(rhel.version_id.as_deref(), Some("9.4"));
        assert_eq!(
            rhel.pretty_name.as_deref(),
            Some("Red Hat Enterprise Linux 9.4 (Plow)")
        );

        let ubuntu = parse_os_release(UBUNTU2204);
        assert_eq!(ubuntu.id.as_deref(), Some("ubuntu"), "unquoted value");
        assert_eq!(ubuntu.id_like, ["debian"]);
        assert_eq!(ubuntu.version_id.as_deref(), Some("22.04"));
        assert_eq!(ubuntu.pretty_name.as_deref(), Some("Ubuntu 22.04.4 LTS"));

        let debian = parse_os_release(DEBIAN12);
        assert_eq!(debian.id.as_deref(), Some("debian"));
        assert_eq!(debian.version_id.as_deref(), Some("12"));
    }

    #[test]
    fn os_release_quoting() {
        let text =
            "# comment\nID='sles'\nPRETTY_NAME=\"A \\\"quoted\\\" \\$name\"\nVERSION_ID=\nBROKEN\n";
        let r = parse_os_release(text);
        assert_eq!(r.id.as_deref(), Some("sles"));
        assert_eq!(r.pretty_name.as_deref(), Some("A \"quoted\" $name"));
        assert_eq!(r.version_id, None, "empty is absent");
        assert_eq!(parse_os_release(""), OsRelease::default());
    }

    #[test]
    fn meminfo() {
        let text = include_str!("../testdata/debian12/meminfo");
        assert_eq!(
            parse_meminfo_total(text),
            Some(Memory::from_bytes(24_684_084 * 1024))
        );
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 1 MB\n"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-63\n"), Some(64));
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5,8"), Some(6));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("5-2"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn cpuinfo() {
        let text = include_str!("../testdata/debian12/cpuinfo");
        assert_eq!(parse_cpuinfo_count(text), Some(2));
        assert_eq!(parse_cpuinfo_count("model name : x\n"), None);
    }

    #[test]
    fn df_size() {
        assert_eq!(
            parse_df_size("   1B-blocks\n270553174016\n"),
            Some(Memory::from_bytes(270_553_174_016))
        );
        assert_eq!(parse_df_size("   1B-blocks\n"), None);
        assert_eq!(parse_df_size(""), None);
    }

    #[test]
    fn lsblk_root_on_lvm_on_luks() {
        let l = parse_lsblk(include_str!("../testdata/rhel9/lsblk.json")).unwrap();
        assert_eq!(l.root_encrypted, Some(true));
        assert_eq!(
            l.disks,
            [Disk {
                name: "nvme0n1".into(),
                size: Some(Memory::from_bytes(512_110_190_592))
            }]
        );
    }

    #[test]
    fn lsblk_plain_root_with_an_encrypted_data_disk() {
        // Ubuntu: root on a plain partition; the LUKS data disk does not make root
        // encrypted.
        let l = parse_lsblk(include_str!("../testdata/ubuntu2204/lsblk.json")).unwrap();
        assert_eq!(l.root_encrypted, Some(false));
        let names: Vec<&str> = l.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sdb"]);
    }

    #[test]
    fn lsblk_old_and_new_shapes() {
        // util-linux < 2.33: sizes as strings; 2.37+: `mountpoints` lists.
        let old = r#"{"blockdevices": [{"name": "vda", "type": "disk", "fstype": null,
            "mountpoint": null, "size": "10737418240", "children": [
            {"name": "vda1", "type": "part", "fstype": "crypto_LUKS", "mountpoint": null, "size": "10736369664",
             "children": [{"name": "root", "type": "crypt", "fstype": "ext4", "mountpoint": "/", "size": "10719592448"}]}]}]}"#;
        let l = parse_lsblk(old).unwrap();
        assert_eq!(l.root_encrypted, Some(true));
        assert_eq!(l.disks[0].size, Some(Memory::from_gib(10)));

        let new = r#"{"blockdevices": [{"name": "sda", "type": "disk", "fstype": null,
            "mountpoints": [null], "size": 1073741824, "children": [
            {"name": "sda1", "type": "part", "fstype": "btrfs", "mountpoints": ["/home", "/"], "size": 1072693248}]}]}"#;
        assert_eq!(parse_lsblk(new).unwrap().root_encrypted, Some(false));
    }

    #[test]
    fn lsblk_without_root_or_garbage() {
        // This machine, a microVM: root is on the disk itself, no partitions.
        let l = parse_lsblk(include_str!("../testdata/debian12/lsblk.json")).unwrap();
        assert_eq!(l.root_encrypted, Some(false));
        assert_eq!(l.disks.len(), 1, "zram is not a disk");

        let no_root = r#"{"blockdevices": [{"name": "sdb", "type": "disk", "fstype": "xfs", "mountpoint": "/data", "size": 1}]}"#;
        assert_eq!(parse_lsblk(no_root).unwrap().root_encrypted, None);
        assert_eq!(parse_lsblk("lsblk: unknown column"), None);
        assert_eq!(parse_lsblk("{}"), None);
    }

    #[test]
    fn secure_boot_sources() {
        assert_eq!(parse_secure_boot_efivar(&[6, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_secure_boot_efivar(&[6, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_secure_boot_efivar(&[6, 0, 0, 0]), None);
        assert_eq!(parse_mokutil_sb_state("SecureBoot enabled\n"), Some(true));
        assert_eq!(parse_mokutil_sb_state("SecureBoot disabled\n"), Some(false));
        assert_eq!(
            parse_mokutil_sb_state("EFI variables are not supported on this system\n"),
            None
        );
    }

    #[test]
    fn lsms() {
        let list = "lockdown,capability,landlock,yama,integrity,apparmor\n";
        assert!(lsm_active(list, "apparmor"));
        assert!(!lsm_active(list, "selinux"));
        assert!(!lsm_active(list, "lock"));
        assert_eq!(parse_selinux_enforce("1"), Some(LsmMode::Enforcing));
        assert_eq!(parse_selinux_enforce("0\n"), Some(LsmMode::Permissive));
        assert_eq!(parse_selinux_enforce(""), None);
        assert!(selinux_config_disabled(
            "# comment\nSELINUX=disabled\nSELINUXTYPE=targeted\n"
        ));
        assert!(!selinux_config_disabled("SELINUX=enforcing\n"));
        assert!(!selinux_config_disabled("# SELINUX=disabled\n"));
    }

    #[test]
    fn apparmor_modes() {
        let profiles = include_str!("../testdata/ubuntu2204/apparmor-profiles");
        assert_eq!(
            apparmor_mode("Y\n", Some(profiles)),
            Some(LsmMode::Enforcing)
        );
        let complain = "/usr/bin/man (complain)\nman_filter (complain)\n";
        assert_eq!(
            apparmor_mode("Y", Some(complain)),
            Some(LsmMode::Permissive)
        );
        assert_eq!(apparmor_mode("Y", Some("")), Some(LsmMode::Permissive));
        assert_eq!(apparmor_mode("Y", None), None, "profiles unreadable");
        assert_eq!(apparmor_mode("N\n", None), Some(LsmMode::Disabled));
        assert_eq!(apparmor_mode("", None), None);
    }

    #[test]
    fn fips() {
        assert_eq!(parse_fips_enabled("1\n"), Some(true));
        assert_eq!(parse_fips_enabled("0\n"), Some(false));
        assert_eq!(parse_fips_enabled("?"), None);
    }

    #[test]
    fn dpkg_log_last_upgrade() {
        let log = include_str!("../testdata/ubuntu2204/dpkg.log");
        assert_eq!(
            last_dpkg_upgrade(log),
            Some("2024-05-14T06:25:40Z".parse().unwrap())
        );
        assert_eq!(
            last_dpkg_upgrade("2024-05-14 06:25:11 install foo:amd64 <none> 1.0\n"),
            None,
            "an install is not an upgrade"
        );
        assert_eq!(last_dpkg_upgrade(""), None);
    }

    #[test]
    fn rpm_last_install() {
        let text = include_str!("../testdata/rhel9/rpm-installtime");
        assert_eq!(
            last_rpm_install(text),
            Some(Timestamp::from_second(1_715_677_200).unwrap())
        );
        assert_eq!(last_rpm_install("gpg-pubkey 1900000000\n"), None);
        assert_eq!(last_rpm_install(""), None);
    }

    #[test]
    fn days() {
        let t: Timestamp = "2024-05-14T06:25:40Z".parse().unwrap();
        let now: Timestamp = "2024-06-13T06:25:39Z".parse().unwrap();
        assert_eq!(days_between(t, now), 29);
        assert_eq!(days_between(now, t), 0, "the future is zero days ago");
    }
}
