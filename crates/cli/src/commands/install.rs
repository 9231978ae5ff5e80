//! `meridian install server|agent` and `meridian uninstall server|agent`: the system user,
//! directories with safe modes, an environment file for flags and secrets, and a hardened
//! systemd unit; then `systemctl daemon-reload` and `enable --now` when systemd runs.
//!
//! The unit text is made in one place, [`unit`], which `install` writes and
//! `install … --print-unit` prints for `scripts/package-deb`, so the package and a
//! `meridian install` run the same unit.
//!
//! Why the two units differ: the server needs nothing of root (no capability at all, or only
//! `CAP_NET_BIND_SERVICE` below port 1024) and runs as the `meridian` system user in a
//! read-only file system but for its data directory. The agent runs as root because it runs
//! tasks as other users (`setuid`/`setgid`), creates their cgroups and mount namespaces and
//! owns their directories; its bounding set keeps only those capabilities ([`AGENT_CAPS`]).
//!
//! Every step checks before it acts, so a second run changes nothing and says so. `--root`
//! installs under a prefix (tests, packaging): paths are taken inside it, users are added
//! with `useradd --prefix` to its `etc/passwd` and systemctl is never called.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::exit::UserError;

/// The server's system user and group.
pub const SERVER_USER: &str = "meridian";
/// The unprivileged account the agent runs tasks as by default (`api::task::DEFAULT_TASK_USER`).
pub const TASK_USER: &str = api::task::DEFAULT_TASK_USER;
/// Where configuration (environment files, the server's CA for agents) lives.
pub const CONFIG_DIR: &str = "/etc/meridian";
/// Where `meridian install` writes units (the package ships them in `/lib/systemd/system`).
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const SERVER_DATA_DIR: &str = "/var/lib/meridian";
pub const AGENT_DATA_DIR: &str = "/var/lib/meridian-agent";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7420";

/// The agent's capabilities, each with why it needs it (written into the unit as comments).
pub const AGENT_CAPS: &[(&str, &str)] = &[
    ("CAP_SETUID", "run each task as its user (task.user)"),
    ("CAP_SETGID", "and with that user's groups"),
    ("CAP_KILL", "signal tasks that run as other users"),
    (
        "CAP_SYS_ADMIN",
        "mount namespaces and bind mounts of task volumes; create and write cgroups",
    ),
    (
        "CAP_CHOWN",
        "give a task's directory, logs and secrets to the task's user",
    ),
    (
        "CAP_DAC_OVERRIDE",
        "read and clean up task directories owned by other users",
    ),
    ("CAP_FOWNER", "set modes on files of task directories"),
    (
        "CAP_SYS_RESOURCE",
        "raise a task's resource limits (task.rlimits) above the agent's",
    ),
    ("CAP_NET_BIND_SERVICE", "tasks with host ports below 1024"),
];

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(subcommand)]
    pub role: InstallRole,
}

#[derive(Debug, Subcommand)]
pub enum InstallRole {
    /// Install the API server as the systemd service meridian-server
    #[command(
        after_help = "Examples:\n  sudo meridian install server\n  sudo meridian install server --listen 0.0.0.0:443 --dry-run\n  meridian install server --print-unit --bin /usr/bin/meridian"
    )]
    Server(ServerInstall),
    /// Install the node agent as the systemd service meridian-agent (runs as root)
    #[command(
        after_help = "Example:\n  meridian node join-token create --site onprem-frankfurt > token   # on the server\n  sudo meridian install agent --server https://meridian:7420 --join-token-file token --ca-file ca.crt"
    )]
    Agent(AgentInstall),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Print what would be done (files, modes, unit text) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Install under this directory instead of / (tests and packaging); never calls systemctl
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Path of the meridian binary the unit runs; the running binary is copied there unless
    /// it is that file [default: this binary when it is in /usr/bin or /usr/local/bin, else
    /// /usr/local/bin/meridian]
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Print the systemd unit to stdout and do nothing else
    #[arg(long)]
    pub print_unit: bool,
    /// Do not enable and start the service
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Debug, Args)]
pub struct ServerInstall {
    #[command(flatten)]
    pub common: Common,
    /// Address the server listens on (the unit keeps CAP_NET_BIND_SERVICE only below 1024)
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Directory of the store, tokens and certificates
    #[arg(long, default_value = SERVER_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct AgentInstall {
    #[command(flatten)]
    pub common: Common,
    /// URL of the Meridian server (written to agent.env)
    #[arg(long)]
    pub server: Option<String>,
    /// File holding the join token (written to agent.env, mode 0600; never on a command line)
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
    /// Site the node is in (when the join token does not name one)
    #[arg(long)]
    pub site: Option<String>,
    /// CA certificate of the server (PEM): copied to /etc/meridian/ca.crt
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Directory for the agent's credential, state and task logs
    #[arg(long, default_value = AGENT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(subcommand)]
    pub role: UninstallRole,
}

#[derive(Debug, Subcommand)]
pub enum UninstallRole {
    /// Stop and remove the meridian-server service (data kept unless --purge)
    Server(UninstallCommon),
    /// Stop and remove the meridian-agent service (data kept unless --purge)
    Agent(UninstallCommon),
}

#[derive(Debug, Args)]
pub struct UninstallCommon {
    /// Also delete the data directory, the environment file and the system user
    #[arg(long)]
    pub purge: bool,
    /// Print what would be done and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Uninstall from under this directory instead of /
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Data directory to delete with --purge [default: the role's]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn unit_name(self) -> &'static str {
        match self {
            Role::Server => "meridian-server.service",
            Role::Agent => "meridian-agent.service",
        }
    }

    fn env_file(self) -> String {
        match self {
            Role::Server => format!("{CONFIG_DIR}/server.env"),
            Role::Agent => format!("{CONFIG_DIR}/agent.env"),
        }
    }

    fn default_data_dir(self) -> &'static str {
        match self {
            Role::Server => SERVER_DATA_DIR,
            Role::Agent => AGENT_DATA_DIR,
        }
    }
}

/// What a unit is made from.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub role: Role,
    /// The binary, as the unit names it.
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    /// The server's default listen address (the environment file may change it).
    pub listen: SocketAddr,
}

/// The systemd unit: the one definition, for `meridian install` and the Debian package.
pub fn unit(spec: &UnitSpec) -> String {
    let bin = spec.bin.display();
    let data = spec.data_dir.display();
    let env_file = spec.role.env_file();
    let mut u = String::new();
    match spec.role {
        Role::Server => {
            let bind_low = spec.listen.port() < 1024;
            let caps = if bind_low { "CAP_NET_BIND_SERVICE" } else { "" };
            let _ = write!(
                u,
                "\
# Written by `meridian install server` (the same text as the Debian package's unit).
# Flags go in {env_file}: MERIDIAN_LISTEN (address) and
# MERIDIAN_SERVER_ARGS (more flags of `meridian server`, split on spaces).
# Runs as the unprivileged user {SERVER_USER} with no capability{cap_note},
# in a read-only file system but for its data directory.
[Unit]
Description=Meridian API server
Documentation=https://github.com/meridian/meridian/blob/main/docs/install.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={SERVER_USER}
Group={SERVER_USER}
Environment=MERIDIAN_LISTEN={listen}
EnvironmentFile=-{env_file}
ExecStart={bin} server --listen ${{MERIDIAN_LISTEN}} --data-dir {data} $MERIDIAN_SERVER_ARGS
Restart=on-failure
RestartSec=2s
TimeoutStopSec=30s
LimitNOFILE=1048576
UMask=0077

CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={data}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
PrivateMounts=yes
RemoveIPC=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
",
                cap_note = if bind_low {
                    "\n# but CAP_NET_BIND_SERVICE (it listens below port 1024)"
                } else {
                    ""
                },
                listen = spec.listen,
            );
        }
        Role::Agent => {
            let caps: Vec<&str> = AGENT_CAPS.iter().map(|(c, _)| *c).collect();
            let _ = write!(
                u,
                "\
# Written by `meridian install agent` (the same text as the Debian package's unit).
# The agent runs as root: it runs each task as the task's user, creates cgroups and mount
# namespaces and owns task directories. Its capabilities are bounded to what that needs:
"
            );
            for (cap, why) in AGENT_CAPS {
                let _ = writeln!(u, "#   {cap}: {why}");
            }
            let _ = write!(
                u,
                "\
# Tasks inherit this sandbox: the file system is read-only but for the data directory and
# cgroups; give tasks more (host volumes) with a drop-in: `systemctl edit meridian-agent`,
# `[Service]` `ReadWritePaths=/srv/data`. Flags go in {env_file} (0600, read by systemd):
# MERIDIAN_SERVER, MERIDIAN_JOIN_TOKEN (first start only) and MERIDIAN_AGENT_ARGS.
[Unit]
Description=Meridian node agent
Documentation=https://github.com/meridian/meridian/blob/main/docs/install.md
After=network-online.target docker.service
Wants=network-online.target
ConditionPathExists={env_file}

[Service]
Type=simple
User=root
EnvironmentFile={env_file}
ExecStart={bin} agent --data-dir {data} $MERIDIAN_AGENT_ARGS
Restart=on-failure
RestartSec=2s
# Tasks get their grace period (--grace, 10s) before SIGKILL; the agent stops them first.
KillMode=mixed
TimeoutStopSec=60s
LimitNOFILE=65536
Delegate=yes

CapabilityBoundingSet={caps}
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={data} /sys/fs/cgroup
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
",
                caps = caps.join(" "),
            );
        }
    }
    u
}

/// The environment file of a server install.
fn server_env(listen: SocketAddr) -> String {
    format!(
        "\
# Read by systemd for meridian-server.service (written by `meridian install server`).
# MERIDIAN_LISTEN: the address; MERIDIAN_SERVER_ARGS: more flags of `meridian server`,
# split on spaces (e.g. --tls-san meridian.example.com). MERIDIAN_LOG: log filter.
MERIDIAN_LISTEN=\"{listen}\"
MERIDIAN_SERVER_ARGS=\"\"
MERIDIAN_LOG=\"info\"
"
    )
}

/// The environment file of an agent install; `token` is the join token itself.
fn agent_env(server: &str, token: Option<&str>, agent_args: &str) -> String {
    let mut s = String::from(
        "\
# Read by systemd for meridian-agent.service (written by `meridian install agent`); mode
# 0600: it holds the join token, used on the first start only (the agent then keeps its
# credential in its data directory, and the line can be removed).
",
    );
    let _ = writeln!(s, "MERIDIAN_SERVER=\"{server}\"");
    if let Some(token) = token {
        let _ = writeln!(s, "MERIDIAN_JOIN_TOKEN=\"{token}\"");
    }
    let _ = writeln!(s, "MERIDIAN_AGENT_ARGS=\"{agent_args}\"");
    s.push_str("MERIDIAN_LOG=\"info\"\n");
    s
}

/// A value written in double quotes into an environment file that both systemd and `sh`
/// read the same way (`"a b"` is one value with a space for both): no quotes, escapes,
/// expansions or line breaks inside.
fn check_env_value(what: &str, value: &str) -> anyhow::Result<()> {
    if let Some(c) = value.chars().find(|c| {
        c.is_control()
            || matches!(
                c,
                '"' | '\'' | '\\' | '$' | '`' | ';' | '&' | '|' | '<' | '>'
            )
    }) {
        bail!(UserError::msg(format!(
            "{what} contains {c:?}, which an environment file cannot hold"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Steps: each checks the current state, then acts (or says what it would do).

struct Installer {
    root: PathBuf,
    dry_run: bool,
    changed: usize,
}

/// The owner of a path, by numeric ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
}

const ROOT_OWNER: Owner = Owner { uid: 0, gid: 0 };
/// The server's user in a dry run, before it exists.
const PENDING_USER: Owner = Owner {
    uid: u32::MAX,
    gid: u32::MAX,
};

impl Installer {
    fn new(root: Option<&Path>, dry_run: bool) -> Self {
        Installer {
            root: root.map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            dry_run,
            changed: 0,
        }
    }

    fn prefixed(&self) -> bool {
        self.root != Path::new("/")
    }

    /// `path` (absolute) inside the root.
    fn at(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn did(&mut self, line: String) {
        self.changed += 1;
        if self.dry_run {
            println!("would {line}");
        } else {
            println!("{line}");
        }
    }

    fn same(&self, line: String) {
        println!("unchanged: {line}");
    }

    /// `user:group` by name where the root's account files name the ids.
    fn label(&self, owner: Owner) -> String {
        let name = |file: &str, id: u32| {
            if id == u32::MAX {
                return SERVER_USER.to_string();
            }
            std::fs::read_to_string(self.at(Path::new(file)))
                .ok()
                .and_then(|text| {
                    text.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
                    })
                })
                .unwrap_or_else(|| id.to_string())
        };
        let pending = if owner.uid == u32::MAX || owner.gid == u32::MAX {
            " (once created)"
        } else {
            ""
        };
        format!(
            "{}:{}{pending}",
            name("/etc/passwd", owner.uid),
            name("/etc/group", owner.gid)
        )
    }

    /// A user's ids from the root's `etc/passwd`.
    fn lookup_user(&self, name: &str) -> Option<Owner> {
        let passwd = std::fs::read_to_string(self.at(Path::new("/etc/passwd"))).ok()?;
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            (f.next()? == name).then_some(())?;
            let _pw = f.next()?;
            Some(Owner {
                uid: f.next()?.parse().ok()?,
                gid: f.next()?.parse().ok()?,
            })
        })
    }

    fn lookup_group(&self, name: &str) -> Option<u32> {
        let group = std::fs::read_to_string(self.at(Path::new("/etc/group"))).ok()?;
        group.lines().find_map(|line| {
            let mut f = line.split(':');
            (f.next()? == name).then_some(())?;
            let _pw = f.next()?;
            f.next()?.parse().ok()
        })
    }

    /// A system user with its own group, no login and no home created.
    fn system_user(&mut self, name: &str, home: &Path, comment: &str) -> anyhow::Result<()> {
        if self.lookup_user(name).is_some() {
            self.same(format!("system user {name}"));
            return Ok(());
        }
        let mut cmd = Command::new("useradd");
        if self.prefixed() {
            if !self.at(Path::new("/etc/passwd")).exists() {
                println!(
                    "skipped: system user {name} ({} has no etc/passwd; files stay owned by root)",
                    self.root.display()
                );
                return Ok(());
            }
            cmd.arg("--prefix").arg(&self.root);
        }
        cmd.args(["--system", "--user-group", "--no-create-home"])
            .arg("--home-dir")
            .arg(home)
            .args(["--shell", "/usr/sbin/nologin", "--comment", comment, name]);
        self.did(format!(
            "create system user {name} (home {})",
            home.display()
        ));
        if !self.dry_run {
            run(&mut cmd)?;
        }
        Ok(())
    }

    fn dir(&mut self, path: &Path, mode: u32, owner: Owner) -> anyhow::Result<()> {
        let at = self.at(path);
        let what = format!(
            "{} mode {mode:04o} owner {}",
            path.display(),
            self.label(owner)
        );
        match std::fs::metadata(&at) {
            Ok(m) if !m.is_dir() => {
                bail!(UserError::msg(format!(
                    "{} exists and is not a directory",
                    at.display()
                )))
            }
            Ok(m) => {
                if m.mode() & 0o7777 == mode && m.uid() == owner.uid && m.gid() == owner.gid {
                    self.same(format!("directory {what}"));
                } else {
                    self.did(format!("set directory {what}"));
                    if !self.dry_run {
                        set_mode_owner(&at, mode, owner)?;
                    }
                }
            }
            Err(_) => {
                self.did(format!("create directory {what}"));
                if !self.dry_run {
                    std::fs::create_dir_all(&at)
                        .with_context(|| format!("cannot create {}", at.display()))?;
                    set_mode_owner(&at, mode, owner)?;
                }
            }
        }
        Ok(())
    }

    /// A file with these contents; `show` prints the text in a dry run (not for secrets).
    fn file(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        owner: Owner,
        show: Option<&str>,
    ) -> anyhow::Result<()> {
        let at = self.at(path);
        let what = format!(
            "{} ({} bytes, mode {mode:04o}, owner {})",
            path.display(),
            contents.len(),
            self.label(owner)
        );
        let current = std::fs::read(&at).ok();
        let meta = std::fs::metadata(&at).ok();
        let same_text = current.as_deref() == Some(contents);
        let same_meta = meta.as_ref().is_some_and(|m| {
            m.mode() & 0o7777 == mode && m.uid() == owner.uid && m.gid() == owner.gid
        });
        if same_text && same_meta {
            self.same(format!("file {what}"));
            return Ok(());
        }
        let verb = match (&current, same_text) {
            (None, _) => "write",
            (Some(_), false) => "rewrite",
            (Some(_), true) => "set mode and owner of",
        };
        self.did(format!("{verb} file {what}"));
        if self.dry_run {
            if let (Some(text), false) = (show, same_text) {
                println!("--- {}\n{text}---", path.display());
            }
            return Ok(());
        }
        if !same_text {
            write_atomic(&at, contents, mode)?;
        }
        set_mode_owner(&at, mode, owner)
    }

    fn remove(&mut self, path: &Path, what: &str) -> anyhow::Result<()> {
        let at = self.at(path);
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            return Ok(());
        };
        self.did(format!("remove {what} {}", path.display()));
        if !self.dry_run {
            if meta.is_dir() {
                std::fs::remove_dir_all(&at)
            } else {
                std::fs::remove_file(&at)
            }
            .with_context(|| format!("cannot remove {}", at.display()))?;
        }
        Ok(())
    }

    fn systemd_running(&self) -> bool {
        !self.prefixed() && Path::new("/run/systemd/system").exists()
    }
}

fn set_mode_owner(path: &Path, mode: u32, owner: Owner) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("cannot chown {} (run as root)", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Writes through a temporary file created with `mode` (never readable by others, even
/// briefly) and renamed over the path.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().context("a file path without a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().context("a file path without a name")?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o700)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// The binary path the unit names, and whether to copy the running binary there.
fn binary(common: &Common) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    let exe = std::env::current_exe().context("cannot find the running meridian binary")?;
    let target = match &common.bin {
        Some(bin) => bin.clone(),
        None if common.root.is_none()
            && (exe.starts_with("/usr/bin") || exe.starts_with("/usr/local/bin")) =>
        {
            exe.clone()
        }
        None => PathBuf::from("/usr/local/bin/meridian"),
    };
    if !target.is_absolute() {
        bail!(UserError::msg(format!(
            "--bin {} must be an absolute path",
            target.display()
        )));
    }
    Ok((target, Some(exe)))
}

// ---------------------------------------------------------------------------------------
// Verbs.

pub fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let (role, common) = match &args.role {
        InstallRole::Server(a) => (Role::Server, &a.common),
        InstallRole::Agent(a) => (Role::Agent, &a.common),
    };
    let (bin, source) = binary(common)?;
    let spec = match &args.role {
        InstallRole::Server(a) => UnitSpec {
            role,
            bin: bin.clone(),
            data_dir: a.data_dir.clone(),
            listen: a.listen,
        },
        InstallRole::Agent(a) => UnitSpec {
            role,
            bin: bin.clone(),
            data_dir: a.data_dir.clone(),
            listen: DEFAULT_LISTEN.parse().expect("a socket address"),
        },
    };
    if !spec.data_dir.is_absolute() {
        bail!(UserError::msg("--data-dir must be an absolute path"));
    }
    check_env_value("--data-dir", &spec.data_dir.to_string_lossy())?;
    let unit_text = unit(&spec);
    if common.print_unit {
        print!("{unit_text}");
        return Ok(());
    }
    let mut inst = Installer::new(common.root.as_deref(), common.dry_run);
    if common.dry_run {
        println!("dry run: nothing is changed");
    }
    let config = Path::new(CONFIG_DIR);

    // The binary.
    if let Some(source) = source {
        let at = inst.at(&bin);
        let same = std::fs::canonicalize(&source).ok() == std::fs::canonicalize(&at).ok();
        if same {
            inst.same(format!("binary {}", bin.display()));
        } else {
            let contents = std::fs::read(&source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            inst.file(&bin, &contents, 0o755, ROOT_OWNER, None)?;
        }
    }

    match &args.role {
        InstallRole::Server(a) => {
            inst.system_user(SERVER_USER, &a.data_dir, "Meridian API server")?;
            let user = match inst.lookup_user(SERVER_USER) {
                Some(user) => user,
                None if inst.dry_run => PENDING_USER,
                // Not created (a prefix without etc/passwd): root keeps the files.
                None => ROOT_OWNER,
            };
            inst.dir(
                config,
                0o750,
                Owner {
                    uid: 0,
                    gid: user.gid,
                },
            )?;
            inst.dir(&a.data_dir, 0o700, user)?;
            let env = server_env(a.listen);
            inst.file(
                Path::new(&role.env_file()),
                env.as_bytes(),
                0o600,
                ROOT_OWNER,
                Some(&env),
            )?;
        }
        InstallRole::Agent(a) => {
            let Some(server) = a.server.as_deref() else {
                bail!(UserError::msg(
                    "meridian install agent needs --server URL (and --join-token-file on the first install)"
                ));
            };
            check_env_value("--server", server)?;
            let token = match &a.join_token_file {
                Some(file) => {
                    let t = std::fs::read_to_string(file).with_context(|| {
                        format!("cannot read the join token file {}", file.display())
                    })?;
                    let t = t.trim().to_string();
                    if t.is_empty() {
                        bail!(UserError::msg(format!("{} is empty", file.display())));
                    }
                    check_env_value("the join token", &t)?;
                    Some(t)
                }
                None => None,
            };
            let mut agent_args = Vec::new();
            if let Some(site) = &a.site {
                check_env_value("--site", site)?;
                agent_args.push(format!("--site {site}"));
            }
            inst.system_user(TASK_USER, Path::new("/nonexistent"), "Meridian tasks")?;
            let group = inst.lookup_group(SERVER_USER).unwrap_or(0);
            inst.dir(config, 0o750, Owner { uid: 0, gid: group })?;
            if let Some(ca) = &a.ca_file {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("cannot read --ca-file {}", ca.display()))?;
                let dest = config.join("ca.crt");
                inst.file(&dest, &pem, 0o644, ROOT_OWNER, None)?;
                agent_args.push(format!("--ca-file {}", dest.display()));
            }
            inst.dir(&a.data_dir, 0o700, ROOT_OWNER)?;
            let env = agent_env(server, token.as_deref(), &agent_args.join(" "));
            let shown = agent_env(
                server,
                token.as_ref().map(|_| "<the token, not shown>"),
                &agent_args.join(" "),
            );
            inst.file(
                Path::new(&role.env_file()),
                env.as_bytes(),
                0o600,
                ROOT_OWNER,
                Some(&shown),
            )?;
        }
    }
    let unit_path = Path::new(UNIT_DIR).join(role.unit_name());
    inst.file(
        &unit_path,
        unit_text.as_bytes(),
        0o644,
        ROOT_OWNER,
        Some(&unit_text),
    )?;

    start(&mut inst, role, &spec, common.no_start)?;
    if inst.changed == 0 {
        println!(
            "nothing changed: {} is installed as asked",
            role.unit_name()
        );
    } else if common.dry_run {
        println!("dry run: {} change(s) not made", inst.changed);
    }
    Ok(())
}

/// Reloads systemd and enables and (re)starts the unit when systemd runs; otherwise says
/// how to run it.
fn start(inst: &mut Installer, role: Role, spec: &UnitSpec, no_start: bool) -> anyhow::Result<()> {
    let name = role.unit_name();
    if inst.systemd_running() {
        if inst.dry_run {
            println!("would run: systemctl daemon-reload; systemctl enable --now {name}");
            return Ok(());
        }
        if inst.changed > 0 {
            run(Command::new("systemctl").arg("daemon-reload"))?;
        }
        if no_start {
            println!("not started (--no-start): systemctl enable --now {name}");
        } else if inst.changed > 0 {
            run(Command::new("systemctl").args(["enable", name]))?;
            run(Command::new("systemctl").args(["restart", name]))?;
            println!("enabled and started {name}: systemctl status {name}");
        } else {
            run(Command::new("systemctl").args(["enable", "--now", name]))?;
        }
        return Ok(());
    }
    if inst.prefixed() {
        println!(
            "installed under {} (systemctl not called): on the target, systemctl daemon-reload && systemctl enable --now {name}",
            inst.root.display()
        );
        return Ok(());
    }
    println!("systemd is not running here (no /run/systemd/system): the unit is not started.");
    println!("On a systemd host: systemctl daemon-reload && systemctl enable --now {name}");
    println!("To run it now in the foreground, as the unit would:");
    println!("  {}", direct_command(spec));
    Ok(())
}

/// The unit's command line as a shell command: the environment file read as root, then
/// (for the server) the user switched with `setpriv`.
pub fn direct_command(spec: &UnitSpec) -> String {
    let bin = spec.bin.display();
    let data = spec.data_dir.display();
    let env_file = spec.role.env_file();
    match spec.role {
        Role::Server => format!(
            "sh -c 'MERIDIAN_LISTEN={listen}; set -a; . {env_file}; exec /usr/bin/setpriv --reuid={SERVER_USER} --regid={SERVER_USER} --init-groups {bin} server --listen \"$MERIDIAN_LISTEN\" --data-dir {data} $MERIDIAN_SERVER_ARGS'",
            listen = spec.listen
        ),
        Role::Agent => format!(
            "sh -c 'set -a; . {env_file}; exec {bin} agent --data-dir {data} $MERIDIAN_AGENT_ARGS'"
        ),
    }
}

pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    let (role, a) = match &args.role {
        UninstallRole::Server(a) => (Role::Server, a),
        UninstallRole::Agent(a) => (Role::Agent, a),
    };
    let mut inst = Installer::new(a.root.as_deref(), a.dry_run);
    if a.dry_run {
        println!("dry run: nothing is changed");
    }
    let name = role.unit_name();
    let unit_path = Path::new(UNIT_DIR).join(name);
    let installed = inst.at(&unit_path).exists();
    if inst.systemd_running() && installed {
        inst.did(format!("stop and disable {name}"));
        if !inst.dry_run {
            // Not loaded or already stopped is fine: the unit file goes next.
            let _ = Command::new("systemctl")
                .args(["disable", "--now", name])
                .status();
        }
    }
    inst.remove(&unit_path, "unit")?;
    if inst.systemd_running() && installed && !inst.dry_run {
        run(Command::new("systemctl").arg("daemon-reload"))?;
    }
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(role.default_data_dir()));
    let env_file = PathBuf::from(role.env_file());
    if a.purge {
        inst.remove(&data_dir, "data directory")?;
        inst.remove(&env_file, "environment file")?;
        if role == Role::Agent {
            inst.remove(&Path::new(CONFIG_DIR).join("ca.crt"), "CA certificate")?;
        }
        let config = inst.at(Path::new(CONFIG_DIR));
        let empty = std::fs::read_dir(&config).is_ok_and(|mut d| d.next().is_none());
        if empty {
            inst.remove(Path::new(CONFIG_DIR), "empty directory")?;
        }
        let user = match role {
            Role::Server => SERVER_USER,
            Role::Agent => TASK_USER,
        };
        if inst.lookup_user(user).is_some() {
            inst.did(format!("delete system user {user}"));
            if !inst.dry_run {
                let mut cmd = Command::new("userdel");
                if inst.prefixed() {
                    cmd.arg("--prefix").arg(&inst.root);
                }
                run(cmd.arg(user))?;
            }
        }
    } else {
        for (path, what) in [
            (&data_dir, "data directory"),
            (&env_file, "environment file"),
        ] {
            if inst.at(path).exists() {
                println!("kept: {what} {} (--purge deletes it)", path.display());
            }
        }
    }
    if inst.changed == 0 {
        println!("nothing changed: {name} is not installed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: Role, listen: &str) -> UnitSpec {
        UnitSpec {
            role,
            bin: "/usr/bin/meridian".into(),
            data_dir: role.default_data_dir().into(),
            listen: listen.parse().unwrap(),
        }
    }

    #[test]
    fn the_server_keeps_a_capability_only_below_port_1024() {
        let high = unit(&spec(Role::Server, "0.0.0.0:7420"));
        assert!(high.contains("\nCapabilityBoundingSet=\n"), "{high}");
        assert!(high.contains("\nAmbientCapabilities=\n"), "{high}");
        let low = unit(&spec(Role::Server, "0.0.0.0:443"));
        assert!(
            low.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"),
            "{low}"
        );
        assert!(low.contains("ExecStart=/usr/bin/meridian server --listen ${MERIDIAN_LISTEN} --data-dir /var/lib/meridian $MERIDIAN_SERVER_ARGS"));
    }

    #[test]
    fn the_agent_unit_names_each_capability_and_why() {
        let text = unit(&spec(Role::Agent, DEFAULT_LISTEN));
        for (cap, why) in AGENT_CAPS {
            assert!(text.contains(&format!("#   {cap}: {why}")), "{cap}");
        }
        assert!(text.contains("User=root"));
        assert!(text.contains("ReadWritePaths=/var/lib/meridian-agent /sys/fs/cgroup"));
    }

    #[test]
    fn environment_values_cannot_smuggle_shell() {
        assert!(check_env_value("t", "abc.DEF-123_x:/=").is_ok());
        for bad in ["a b\nc", "$(x)", "a\"b", "a`b`", "a;b"] {
            assert!(check_env_value("t", bad).is_err(), "{bad}");
        }
    }
}
