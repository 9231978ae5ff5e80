//! Windows container build compatibility, as Microsoft documents it.
//!
//! Source: "Windows container version compatibility",
//! <https://learn.microsoft.com/virtualization/windowscontainers/deploy-containers/version-compatibility>
//! (its host/image tables as dated January 2025; the page's source is
//! `virtualization/windowscontainers/deploy-containers/version-compatibility.md` in
//! MicrosoftDocs/Virtualization-Documentation). In short:
//!
//! - **Process isolation** shares the host's kernel, so the container image's build
//!   (`major.minor.build`, e.g. `10.0.20348`) must equal the host's. The revision (the
//!   fourth part, the monthly update) may differ — except on Windows Server 2016 hosts
//!   (and for 2016 images): before version 1809 the revisions must match too.
//! - Exceptions that allow another build: Windows Server 2025 hosts process-isolate
//!   Windows Server 2022 (`10.0.20348`) images; Windows 11 hosts (client builds 22000 and
//!   later) process-isolate Windows Server 2022 images.
//! - Windows 10 client hosts cannot process-isolate Windows Server images at all (there
//!   is no Windows Server image of a Windows 10 client build): only Hyper-V isolation.
//! - **Hyper-V isolation** runs the container in a utility VM with its own kernel, so an
//!   image may be older than the host, never newer.
//!
//! The rules are the [`RULES`] table; an image runs on a host when any row allows it.
//! Each row, and each cell of the documented host/image matrix, has its own test.
//! A revision is checked only when both the host's and the image's are known (a node
//! reports its full build; a task may give `10.0.14393.1944` or just `10.0.14393`).

use std::fmt;

use api::kinds::Isolation;

/// A Windows build `major.minor.build`, with the revision (the fourth part) when known.
/// Only Windows Server 2016 compares revisions; every other rule compares
/// [`WindowsBuild::base`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowsBuild {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
    pub revision: Option<u32>,
}

impl WindowsBuild {
    /// Windows Server 2016 (and Windows 10 1607).
    pub const WS2016: WindowsBuild = WindowsBuild::new(10, 0, 14393);
    /// Windows Server 2019 (and Windows 10 1809).
    pub const WS2019: WindowsBuild = WindowsBuild::new(10, 0, 17763);
    /// Windows Server 2022.
    pub const WS2022: WindowsBuild = WindowsBuild::new(10, 0, 20348);
    /// The first Windows 11 build (21H2).
    pub const WIN11: WindowsBuild = WindowsBuild::new(10, 0, 22000);
    /// Windows Server 2025 (and Windows 11 24H2).
    pub const WS2025: WindowsBuild = WindowsBuild::new(10, 0, 26100);

    pub const fn new(major: u32, minor: u32, build: u32) -> Self {
        WindowsBuild {
            major,
            minor,
            build,
            revision: None,
        }
    }

    /// Parses `10.0.20348` or `10.0.20348.2113` (the revision kept).
    pub fn parse(s: &str) -> Option<WindowsBuild> {
        let parts = api::validate::parse_windows_build(s.trim())?;
        Some(WindowsBuild {
            revision: parts.get(3).copied(),
            ..WindowsBuild::new(parts[0], parts[1], parts[2])
        })
    }

    /// `major.minor.build` without the revision.
    pub const fn base(self) -> WindowsBuild {
        WindowsBuild::new(self.major, self.minor, self.build)
    }
}

impl fmt::Display for WindowsBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)?;
        match self.revision {
            Some(r) => write!(f, ".{r}"),
            None => Ok(()),
        }
    }
}

/// Server or client edition of a Windows host; the Windows 11 exception is for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edition {
    Server,
    Client,
}

/// Builds that only ever shipped as client editions (Windows 11 21H2, 22H2, 23H2).
const CLIENT_ONLY_BUILDS: &[u32] = &[22000, 22621, 22631];

/// A Windows host as the compatibility rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowsHost {
    pub build: WindowsBuild,
    pub edition: Edition,
}

impl WindowsHost {
    /// From a node's OS facts. A distro naming a server (`windows-server`) is a server;
    /// another named distro (`windows`, `windows-11`) is a client; without a distro the
    /// host counts as a server (the conservative reading) unless its build only ever
    /// shipped as a client.
    pub fn from_facts(distro: Option<&str>, build: WindowsBuild) -> WindowsHost {
        let edition = match distro {
            Some(d) if d.to_ascii_lowercase().contains("server") => Edition::Server,
            Some(_) => Edition::Client,
            None if build.major == 10
                && build.minor == 0
                && CLIENT_ONLY_BUILDS.contains(&build.build) =>
            {
                Edition::Client
            }
            None => Edition::Server,
        };
        WindowsHost { build, edition }
    }
}

/// Which hosts a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Server editions at or after this build.
    ServerFrom(WindowsBuild),
    /// Client editions at or after this build.
    ClientFrom(WindowsBuild),
}

/// What the image's build must be, relative to the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageMatch {
    /// Equal to the host's `major.minor.build`; before Windows Server 2019 (build 17763)
    /// the revision too, when both are known.
    SameAsHost,
    /// The host's or older.
    NotNewerThanHost,
    /// Exactly this build.
    Exactly(WindowsBuild),
}

/// One row of the compatibility table: under `isolation`, on hosts matching `host`, an
/// image matching `image` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub isolation: Isolation,
    pub host: HostMatch,
    pub image: ImageMatch,
    /// Where the row comes from, for people.
    pub note: &'static str,
}

/// The compatibility table (see the module docs for the source).
pub const RULES: &[Rule] = &[
    Rule {
        isolation: Isolation::Process,
        host: HostMatch::ServerFrom(WindowsBuild::WS2016),
        image: ImageMatch::SameAsHost,
        note: "process isolation shares the host kernel: image build must equal host build \
               (on Windows Server 2016, the revision too)",
    },
    Rule {
        isolation: Isolation::Process,
        host: HostMatch::ServerFrom(WindowsBuild::WS2025),
        image: ImageMatch::Exactly(WindowsBuild::WS2022),
        note: "Windows Server 2025 hosts may process-isolate Windows Server 2022 images",
    },
    Rule {
        isolation: Isolation::Process,
        host: HostMatch::ClientFrom(WindowsBuild::WIN11),
        image: ImageMatch::SameAsHost,
        note: "Windows 11 hosts may process-isolate an image of their own build; \
               Windows 10 hosts process-isolate no Windows Server image",
    },
    Rule {
        isolation: Isolation::Process,
        host: HostMatch::ClientFrom(WindowsBuild::WIN11),
        image: ImageMatch::Exactly(WindowsBuild::WS2022),
        note: "Windows 11 hosts may process-isolate Windows Server 2022 images",
    },
    Rule {
        isolation: Isolation::Hyperv,
        host: HostMatch::Any,
        image: ImageMatch::NotNewerThanHost,
        note: "Hyper-V isolation brings its own kernel: the image may be older, never newer",
    },
];

/// Whether two revisions are compatible where revisions must match: equal, or one
/// unknown (nothing to compare).
fn same_revision(a: Option<u32>, b: Option<u32>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

impl Rule {
    /// Whether this row allows `image` on `host` under `isolation`.
    pub fn allows(&self, host: WindowsHost, image: WindowsBuild, isolation: Isolation) -> bool {
        if self.isolation != isolation {
            return false;
        }
        let host_build = host.build.base();
        let host_ok = match self.host {
            HostMatch::Any => true,
            HostMatch::ServerFrom(from) => host.edition == Edition::Server && host_build >= from,
            HostMatch::ClientFrom(from) => host.edition == Edition::Client && host_build >= from,
        };
        host_ok
            && match self.image {
                ImageMatch::SameAsHost => {
                    image.base() == host_build
                        && (host_build >= WindowsBuild::WS2019
                            || same_revision(image.revision, host.build.revision))
                }
                ImageMatch::NotNewerThanHost => image.base() <= host_build,
                ImageMatch::Exactly(b) => image.base() == b,
            }
    }
}

/// Whether a container image built for `image` runs on `host` under `isolation`.
pub fn compatible(host: WindowsHost, image: WindowsBuild, isolation: Isolation) -> bool {
    RULES.iter().any(|r| r.allows(host, image, isolation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(build: WindowsBuild, edition: Edition) -> WindowsHost {
        WindowsHost { build, edition }
    }

    // One test per row of RULES.

    fn build(s: &str) -> WindowsBuild {
        WindowsBuild::parse(s).unwrap()
    }

    #[test]
    fn rule_process_same_build() {
        let r = RULES[0];
        let h = host(WindowsBuild::WS2022, Edition::Server);
        assert!(r.allows(h, WindowsBuild::WS2022, Isolation::Process));
        assert!(!r.allows(h, WindowsBuild::WS2019, Isolation::Process));
        assert!(!r.allows(h, WindowsBuild::WS2022, Isolation::Hyperv));
        // Not for clients (Windows 10 clients process-isolate nothing).
        let client = host(build("10.0.19045"), Edition::Client);
        assert!(!r.allows(client, build("10.0.19045"), Isolation::Process));
        // Revisions: only Windows Server 2016 compares them, and only when both are known.
        let ws2016 = host(build("10.0.14393.1914"), Edition::Server);
        assert!(!r.allows(ws2016, build("10.0.14393.1944"), Isolation::Process));
        assert!(r.allows(ws2016, build("10.0.14393.1914"), Isolation::Process));
        assert!(r.allows(ws2016, build("10.0.14393"), Isolation::Process));
        let ws2019 = host(build("10.0.17763.4010"), Edition::Server);
        assert!(r.allows(ws2019, build("10.0.17763.3287"), Isolation::Process));
    }

    #[test]
    fn rule_ws2025_process_isolates_ws2022() {
        let r = RULES[1];
        let h = host(WindowsBuild::WS2025, Edition::Server);
        assert!(r.allows(h, WindowsBuild::WS2022, Isolation::Process));
        assert!(!r.allows(h, WindowsBuild::WS2019, Isolation::Process));
        assert!(!r.allows(h, WindowsBuild::WS2022, Isolation::Hyperv));
        // A Windows 11 24H2 client has the same build but is not a server.
        let client = host(WindowsBuild::WS2025, Edition::Client);
        assert!(!r.allows(client, WindowsBuild::WS2022, Isolation::Process));
        // Windows Server 2022 hosts gain nothing from this row.
        let ws2022 = host(WindowsBuild::WS2022, Edition::Server);
        assert!(!r.allows(ws2022, WindowsBuild::WS2022, Isolation::Process));
    }

    #[test]
    fn rule_windows11_process_isolates_its_own_build() {
        let r = RULES[2];
        let win11 = host(WindowsBuild::WS2025, Edition::Client);
        assert!(r.allows(win11, WindowsBuild::WS2025, Isolation::Process));
        let win10 = host(build("10.0.19045"), Edition::Client);
        assert!(!r.allows(win10, build("10.0.19045"), Isolation::Process));
        let server = host(WindowsBuild::WS2025, Edition::Server);
        assert!(!r.allows(server, WindowsBuild::WS2025, Isolation::Process));
    }

    #[test]
    fn rule_windows11_process_isolates_ws2022() {
        let r = RULES[3];
        assert!(r.allows(
            host(WindowsBuild::new(10, 0, 22631), Edition::Client),
            WindowsBuild::WS2022,
            Isolation::Process
        ));
        assert!(!r.allows(
            host(WindowsBuild::new(10, 0, 22631), Edition::Server),
            WindowsBuild::WS2022,
            Isolation::Process
        ));
        assert!(!r.allows(
            host(WindowsBuild::new(10, 0, 19045), Edition::Client),
            WindowsBuild::WS2022,
            Isolation::Process
        ));
        assert!(!r.allows(
            host(WindowsBuild::new(10, 0, 22631), Edition::Client),
            WindowsBuild::WS2019,
            Isolation::Process
        ));
    }

    #[test]
    fn rule_hyperv_older_or_same() {
        let r = RULES[4];
        let h = host(WindowsBuild::WS2022, Edition::Server);
        assert!(r.allows(h, WindowsBuild::WS2016, Isolation::Hyperv));
        assert!(r.allows(h, WindowsBuild::WS2022, Isolation::Hyperv));
        assert!(!r.allows(h, WindowsBuild::WS2025, Isolation::Hyperv));
        assert!(!r.allows(h, WindowsBuild::WS2016, Isolation::Process));
    }

    // One test per row of the documented host/image matrix.
    macro_rules! matrix {
        ($($name:ident: host $host:expr, $edition:ident, image $image:expr, $iso:ident => $ok:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let host = WindowsHost {
                        build: WindowsBuild::parse($host).unwrap(),
                        edition: Edition::$edition,
                    };
                    let image = WindowsBuild::parse($image).unwrap();
                    assert_eq!(
                        compatible(host, image, Isolation::$iso),
                        $ok,
                        "host {} {:?}, image {}, {:?}",
                        $host, Edition::$edition, $image, Isolation::$iso
                    );
                }
            )*
        };
    }

    matrix! {
        ws2022_runs_ws2022_process: host "10.0.20348", Server, image "10.0.20348", Process => true;
        ws2022_runs_ws2022_hyperv: host "10.0.20348", Server, image "10.0.20348", Hyperv => true;
        ws2022_refuses_ws2019_process: host "10.0.20348", Server, image "10.0.17763", Process => false;
        ws2022_runs_ws2019_hyperv: host "10.0.20348", Server, image "10.0.17763", Hyperv => true;
        ws2022_runs_ws2016_hyperv: host "10.0.20348", Server, image "10.0.14393", Hyperv => true;
        ws2019_refuses_ws2022_process: host "10.0.17763", Server, image "10.0.20348", Process => false;
        ws2019_refuses_ws2022_hyperv: host "10.0.17763", Server, image "10.0.20348", Hyperv => false;
        ws2019_runs_ws2019_process: host "10.0.17763", Server, image "10.0.17763", Process => true;
        ws2019_runs_ws2016_hyperv: host "10.0.17763", Server, image "10.0.14393", Hyperv => true;
        ws2016_runs_ws2016_process: host "10.0.14393", Server, image "10.0.14393", Process => true;
        ws2016_refuses_ws2019_hyperv: host "10.0.14393", Server, image "10.0.17763", Hyperv => false;
        ws2025_runs_ws2025_process: host "10.0.26100", Server, image "10.0.26100", Process => true;
        ws2025_runs_ws2022_process: host "10.0.26100", Server, image "10.0.20348", Process => true;
        ws2025_refuses_ws2019_process: host "10.0.26100", Server, image "10.0.17763", Process => false;
        ws2025_runs_ws2019_hyperv: host "10.0.26100", Server, image "10.0.17763", Hyperv => true;
        ws2022_refuses_ws2025_process: host "10.0.20348", Server, image "10.0.26100", Process => false;
        ws2022_refuses_ws2025_hyperv: host "10.0.20348", Server, image "10.0.26100", Hyperv => false;
        ws2016_refuses_another_revision_process: host "10.0.14393.1914", Server, image "10.0.14393.1944", Process => false;
        ws2016_runs_the_same_revision_process: host "10.0.14393.1914", Server, image "10.0.14393.1914", Process => true;
        ws2016_runs_another_revision_hyperv: host "10.0.14393.1914", Server, image "10.0.14393.1944", Hyperv => true;
        ws2019_ignores_revisions_process: host "10.0.17763.4010", Server, image "10.0.17763.3287", Process => true;
        ws2025_runs_ws2022_hyperv: host "10.0.26100", Server, image "10.0.20348", Hyperv => true;
        win11_21h2_runs_ws2022_process: host "10.0.22000", Client, image "10.0.20348", Process => true;
        win11_23h2_runs_ws2022_process: host "10.0.22631", Client, image "10.0.20348", Process => true;
        win11_24h2_runs_ws2022_process: host "10.0.26100", Client, image "10.0.20348", Process => true;
        win11_refuses_ws2019_process: host "10.0.22631", Client, image "10.0.17763", Process => false;
        win11_runs_ws2019_hyperv: host "10.0.22631", Client, image "10.0.17763", Hyperv => true;
        win10_refuses_ws2022_process: host "10.0.19045", Client, image "10.0.20348", Process => false;
        win10_1809_refuses_ws2019_process: host "10.0.17763", Client, image "10.0.17763", Process => false;
        win10_1809_runs_ws2019_hyperv: host "10.0.17763", Client, image "10.0.17763", Hyperv => true;
        win10_2004_refuses_2004_process: host "10.0.19041", Client, image "10.0.19041", Process => false;
        win10_runs_ws2016_hyperv: host "10.0.19045", Client, image "10.0.14393", Hyperv => true;
        win11_24h2_runs_ws2025_process: host "10.0.26100", Client, image "10.0.26100", Process => true;
        revision_does_not_matter: host "10.0.20348.2113", Server, image "10.0.20348.587", Process => true;
    }

    #[test]
    fn edition_from_facts() {
        let b = WindowsBuild::WS2022;
        assert_eq!(
            WindowsHost::from_facts(Some("windows-server"), b).edition,
            Edition::Server
        );
        assert_eq!(
            WindowsHost::from_facts(Some("windows-11"), b).edition,
            Edition::Client
        );
        assert_eq!(WindowsHost::from_facts(None, b).edition, Edition::Server);
        assert_eq!(
            WindowsHost::from_facts(None, WindowsBuild::new(10, 0, 22631)).edition,
            Edition::Client
        );
        assert_eq!(
            WindowsHost::from_facts(None, WindowsBuild::WS2025).edition,
            Edition::Server,
            "26100 is also Windows Server 2025: without a distro, assume a server"
        );
    }

    #[test]
    fn parse_and_display() {
        let b = WindowsBuild::parse("10.0.20348.2113").unwrap();
        assert_eq!(b.base(), WindowsBuild::WS2022);
        assert_eq!(b.revision, Some(2113));
        assert_eq!(b.to_string(), "10.0.20348.2113");
        assert_eq!(WindowsBuild::WS2022.to_string(), "10.0.20348");
        assert_eq!(WindowsBuild::parse("10.0"), None);
        assert_eq!(WindowsBuild::parse("ltsc2022"), None);
    }
}
