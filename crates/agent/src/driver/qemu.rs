//! The `qemu` driver: a virtual machine from the task's disk (`qcow2` or `raw`, as a
//! virtio drive), optionally booting a kernel directly (`disk.kernel`, `initrd`,
//! `cmdline`). Memory (`-m`) is the task's memory in MiB, rounded up; vCPUs (`-smp`) its
//! cpu rounded up, at least 1.
//!
//! - **Acceleration**: KVM only when it is usable, which the presence of `/dev/kvm` does
//!   not prove (a VM without nested virtualization has the device but no hardware
//!   support): `/dev/kvm` must open read-write and, on x86, `/proc/cpuinfo` must list
//!   `vmx` or `svm`. Otherwise TCG (software emulation). `MERIDIAN_QEMU_ACCEL=kvm|tcg|auto`
//!   (or the agent's configuration) overrides the choice ([`choose_accel`]).
//! - **Console and files**: the serial console goes to QEMU's stdout, captured in the
//!   allocation's `stdout.log` like an `exec` task's output (rotated the same way); QEMU's
//!   own messages go to `stderr.log`. The QMP socket (`qmp.sock`) and the pid file
//!   (`qemu.pid`) are in the allocation's directory.
//! - **Stop**: over QMP ([`Qmp`], a small client with a time limit on every read): the
//!   ACPI power button (`system_powerdown`), up to the grace period for the guest to power
//!   off, then `quit`, then SIGKILL; [`Stopped`] says which one ended it. Without a QMP
//!   socket, SIGTERM (QEMU exits cleanly on it), grace, SIGKILL.
//! - **Adoption**: QEMU is a process in its own group, recorded with its start time like
//!   an `exec` task; a restarted agent finds the QMP socket again in the allocation's
//!   directory.
//!
//! What the guest sees ([`guest_view`]):
//! - **Ports**: user-mode networking, one virtio NIC (`-netdev user,id=meridian0,
//!   hostfwd=tcp::HOST-:TARGET,hostfwd=udp::HOST-:TARGET -device
//!   virtio-net-pci,netdev=meridian0`); the guest is `10.0.2.15/24` (gateway `10.0.2.2`)
//!   and listens on TARGET. Forwards listen on all the node's addresses, as a container's
//!   published ports do: endpoints give other services `node address:port`, health
//!   checks dial `127.0.0.1:port`. Without ports QEMU's default network stays.
//! - **Environment**: never on QEMU's command line nor in its environment (QEMU runs with
//!   a cleared one). The task's variables are in `guest.env`, a 0600 file in the
//!   allocation's directory (removed by cleanup), handed to the guest as the fw_cfg item
//!   `opt/meridian/env`: `NAME=value` entries each ended by a NUL byte (as
//!   `/proc/PID/environ`; values may hold line breaks). A Linux guest reads it from
//!   `/sys/firmware/qemu_fw_cfg/by_name/opt/meridian/env/raw` (module `qemu_fw_cfg`).
//! - **Volumes**: virtio-9p, one share per volume tagged with the volume's name
//!   (`-virtfs local,path=HOST,mount_tag=NAME,security_model=none[,readonly=on]`); the
//!   guest mounts it (`mount -t 9p -o trans=virtio,version=9p2000.L NAME MOUNTPATH`). The
//!   fw_cfg item `opt/meridian/mounts` lists `TAG MOUNTPATH ro|rw` lines so that a
//!   guest's init can do it without knowing the task.
//! - **Secrets**: the allocation's secret files as a read-only 9p share tagged
//!   [`SECRETS_TAG`]; `MERIDIAN_SECRETS_DIR` says [`SECRETS_MOUNT`], where the mounts list
//!   puts it.
//! - Not applied to a VM: `user` and `rlimits` (they belong to the guest's own
//!   accounts), `workingDir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use api::kinds::{Arch, DiskFormat, Driver as DriverKind, Task};

use super::exec::{self, create_dir, spawn_captured, stop_group, wait_group_exit};
use super::{Driver, DriverError, Handle, Launch, Record, Slot, Started, Stopped, qemu_binary};
use crate::probe::Probe;

/// The QMP socket's file name in the allocation's directory.
pub const QMP_SOCKET: &str = "qmp.sock";
/// QEMU's pid file in the allocation's directory.
pub const PID_FILE: &str = "qemu.pid";
/// Time limit of one QMP connection attempt or read.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long QEMU gets to exit after QMP `quit` before SIGKILL.
const QUIT_WAIT: Duration = Duration::from_secs(10);
/// Longest Unix socket path (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The guest's environment file in the allocation's directory (fw_cfg `opt/meridian/env`).
pub const GUEST_ENV_FILE: &str = "guest.env";
/// The guest's mounts list in the allocation's directory (fw_cfg `opt/meridian/mounts`).
pub const GUEST_MOUNTS_FILE: &str = "guest.mounts";
/// The 9p tag of the allocation's secret files.
pub const SECRETS_TAG: &str = "meridian-secrets";
/// Where the mounts list asks the guest to mount the secret files.
pub const SECRETS_MOUNT: &str = "/run/secrets/meridian";
/// Longest 9p mount tag QEMU takes.
const MAX_MOUNT_TAG: usize = 31;
/// The variables of the agent's environment QEMU keeps; everything else is cleared.
const QEMU_ENV: &[&str] = &["PATH", "HOME", "TMPDIR"];

/// What the node's configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelSetting {
    /// KVM when usable, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(AccelSetting::Auto),
            "kvm" => Ok(AccelSetting::Kvm),
            "tcg" => Ok(AccelSetting::Tcg),
            other => Err(format!(
                "MERIDIAN_QEMU_ACCEL={other:?} is not kvm, tcg or auto"
            )),
        }
    }
}

/// The acceleration QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Chooses the acceleration, and says why. `kvm_opens`: `/dev/kvm` opened read-write;
/// `cpuinfo`: the text of `/proc/cpuinfo`, if readable.
pub fn choose_accel(
    setting: AccelSetting,
    arch: Arch,
    kvm_opens: bool,
    cpuinfo: Option<&str>,
) -> (Accel, String) {
    match setting {
        AccelSetting::Kvm => return (Accel::Kvm, "kvm (set by the node's configuration)".into()),
        AccelSetting::Tcg => return (Accel::Tcg, "tcg (set by the node's configuration)".into()),
        AccelSetting::Auto => {}
    }
    if !kvm_opens {
        return (
            Accel::Tcg,
            "tcg (software emulation: /dev/kvm cannot be opened read-write)".into(),
        );
    }
    if arch == Arch::Amd64 {
        let has_flag = cpuinfo.is_some_and(|text| {
            text.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        });
        if !has_flag {
            return (
                Accel::Tcg,
                "tcg (software emulation: the CPU shows no vmx or svm, so /dev/kvm cannot run guests)"
                    .into(),
            );
        }
    }
    (Accel::Kvm, "kvm".into())
}

/// Whether `/dev/kvm` opens read-write.
pub fn kvm_device_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The `qemu` driver.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    /// `qemu-system-x86_64`, `qemu-system-aarch64`, or a path.
    pub binary: String,
    pub arch: Arch,
    pub accel: Accel,
    /// Why this acceleration, for the allocation's status.
    pub accel_reason: String,
}

impl QemuDriver {
    /// The driver for this host: its architecture's emulator and the acceleration
    /// [`choose_accel`] picks.
    pub fn detect(probe: &dyn Probe, arch: Arch, setting: AccelSetting) -> Self {
        let cpuinfo = probe.read("/proc/cpuinfo");
        let (accel, accel_reason) =
            choose_accel(setting, arch, kvm_device_opens(), cpuinfo.as_deref());
        QemuDriver {
            binary: qemu_binary(arch).to_owned(),
            arch,
            accel,
            accel_reason,
        }
    }
}

/// MiB of guest memory for `bytes`, rounded up.
pub fn memory_mib(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024).max(1)
}

/// vCPUs for `millis` millicores, rounded up, at least 1.
pub fn vcpus(millis: u64) -> u64 {
    millis.div_ceil(1000).max(1)
}

/// Doubles the commas of a value inside a QEMU option list (`file=a,,b` is the file `a,b`).
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// What the guest is given besides QEMU's arguments: the contents of the fw_cfg files
/// (written by [`Driver::start`], 0600).
#[derive(Default, PartialEq, Eq)]
pub struct GuestFiles {
    /// `NAME=value\0`… (`opt/meridian/env`).
    pub env: Vec<u8>,
    /// `TAG MOUNTPATH ro|rw` lines (`opt/meridian/mounts`).
    pub mounts: String,
}

impl std::fmt::Debug for GuestFiles {
    /// No values: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestFiles")
            .field("env_bytes", &self.env.len())
            .field("mounts", &self.mounts)
            .finish()
    }
}

/// QEMU's arguments for what the guest sees (ports, volumes, secrets, environment; see
/// the module doc), files in `dir`, and the files' contents.
pub fn guest_view(launch: &Launch, dir: &Path) -> Result<(Vec<String>, GuestFiles), DriverError> {
    let mut args: Vec<String> = Vec::new();
    let mut files = GuestFiles::default();
    if !launch.ports.is_empty() {
        let mut netdev = "user,id=meridian0".to_owned();
        for p in &launch.ports {
            netdev.push_str(&format!(
                ",hostfwd={}::{}-:{}",
                p.protocol.as_str(),
                p.port,
                p.target
            ));
        }
        args.extend([
            "-netdev".to_owned(),
            netdev,
            "-device".to_owned(),
            "virtio-net-pci,netdev=meridian0".to_owned(),
        ]);
    }
    let mut share = |what: &str, tag: &str, host: &Path, mount: &str, read_only: bool| {
        let ok_tag = !tag.is_empty()
            && tag.len() <= MAX_MOUNT_TAG
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok_tag {
            return Err(DriverError::Failed(format!(
                "{what}: {tag:?} cannot be a 9p mount tag (at most {MAX_MOUNT_TAG} letters, digits, '-', '_' or '.')"
            )));
        }
        if mount.contains(char::is_whitespace) || !mount.starts_with('/') {
            return Err(DriverError::Failed(format!(
                "{what}: the mount path {mount:?} must be absolute, without spaces"
            )));
        }
        let mut spec = format!(
            "local,path={},mount_tag={tag},security_model=none",
            qemu_escape(&host.to_string_lossy())
        );
        if read_only {
            spec.push_str(",readonly=on");
        }
        args.extend(["-virtfs".to_owned(), spec]);
        files.mounts.push_str(&format!(
            "{tag} {mount} {}\n",
            if read_only { "ro" } else { "rw" }
        ));
        Ok(())
    };
    for v in &launch.volumes {
        share(
            &format!("volume {}", v.name),
            &v.name,
            &v.host_path,
            &v.mount_path,
            v.read_only,
        )?;
    }
    if let Some(secrets) = &launch.secrets_dir {
        share(
            "the secrets directory",
            SECRETS_TAG,
            secrets,
            SECRETS_MOUNT,
            true,
        )?;
    }
    let mut env = launch.env.clone();
    if launch.secrets_dir.is_some() || env.contains_key("MERIDIAN_SECRETS_DIR") {
        env.insert("MERIDIAN_SECRETS_DIR".into(), SECRETS_MOUNT.into());
    }
    for (name, value) in &env {
        if name.contains(['=', '\0']) || value.contains('\0') {
            return Err(DriverError::Failed(format!(
                "task.env {name:?}: a name with '=' or NUL, or a value with NUL, cannot be passed to a guest"
            )));
        }
        files.env.extend_from_slice(name.as_bytes());
        files.env.push(b'=');
        files.env.extend_from_slice(value.as_bytes());
        files.env.push(0);
    }
    if !files.env.is_empty() {
        args.extend([
            "-fw_cfg".to_owned(),
            format!(
                "name=opt/meridian/env,file={}",
                qemu_escape(&dir.join(GUEST_ENV_FILE).to_string_lossy())
            ),
        ]);
    }
    if !files.mounts.is_empty() {
        args.extend([
            "-fw_cfg".to_owned(),
            format!(
                "name=opt/meridian/mounts,file={}",
                qemu_escape(&dir.join(GUEST_MOUNTS_FILE).to_string_lossy())
            ),
        ]);
    }
    Ok((args, files))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DriverError> {
    use std::io::Write;
    let io = |source| DriverError::Io {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io)
}

/// QEMU's arguments (without the program) for `task`, files in `dir`, and what the guest
/// is given in files.
pub fn command_line(
    task: &Task,
    launch: &Launch,
    dir: &Path,
    arch: Arch,
    accel: Accel,
) -> Result<(Vec<String>, GuestFiles), DriverError> {
    let disk = task
        .disk
        .as_ref()
        .ok_or(DriverError::Missing(DriverKind::Qemu, "spec.task.disk"))?;
    let qmp = dir.join(QMP_SOCKET);
    if qmp.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(DriverError::Failed(format!(
            "the QMP socket path {} is longer than a Unix socket path may be ({MAX_SOCKET_PATH} bytes): give the agent a shorter --data-dir",
            qmp.display()
        )));
    }
    let format = match disk.format {
        DiskFormat::Qcow2 => "qcow2",
        DiskFormat::Raw => "raw",
    };
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| (*s).to_owned()));
    if arch == Arch::Arm64 {
        push(&["-machine", "virt"]);
    }
    push(&["-accel", accel.as_str()]);
    match (accel, arch) {
        (Accel::Kvm, _) => push(&["-cpu", "host"]),
        (Accel::Tcg, Arch::Arm64) => push(&["-cpu", "max"]),
        (Accel::Tcg, Arch::Amd64) => {}
    }
    push(&[
        "-m",
        &format!("{}M", memory_mib(task.resources.memory.bytes())),
        "-smp",
        &vcpus(task.resources.cpu.millis()).to_string(),
        // The serial console on stdout (the allocation's stdout.log); no window, no
        // human monitor (QMP is the control channel).
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-drive",
        &format!(
            "file={},format={format},if=virtio",
            qemu_escape(&disk.image)
        ),
    ]);
    if let Some(kernel) = &disk.kernel {
        push(&["-kernel", kernel]);
        if let Some(initrd) = &disk.initrd {
            push(&["-initrd", initrd]);
        }
        let console = if arch == Arch::Arm64 {
            "console=ttyAMA0"
        } else {
            "console=ttyS0"
        };
        push(&["-append", disk.cmdline.as_deref().unwrap_or(console)]);
    }
    push(&[
        "-qmp",
        &format!(
            "unix:{},server=on,wait=off",
            qemu_escape(&qmp.to_string_lossy())
        ),
        "-pidfile",
        &dir.join(PID_FILE).to_string_lossy(),
    ]);
    let (view, files) = guest_view(launch, dir)?;
    args.extend(view);
    Ok((args, files))
}

#[async_trait]
impl Driver for QemuDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Qemu
    }

    async fn start(
        &self,
        task: &Task,
        launch: &Launch,
        slot: &Slot,
    ) -> Result<Started, DriverError> {
        let (args, files) = command_line(task, launch, &slot.dir, self.arch, self.accel)?;
        create_dir(&slot.dir)?;
        // A socket left by an earlier run would be mistaken for this one's.
        let _ = std::fs::remove_file(slot.dir.join(QMP_SOCKET));
        for (name, bytes) in [
            (GUEST_ENV_FILE, files.env.as_slice()),
            (GUEST_MOUNTS_FILE, files.mounts.as_bytes()),
        ] {
            let path = slot.dir.join(name);
            if bytes.is_empty() {
                let _ = std::fs::remove_file(&path);
            } else {
                write_private(&path, bytes)?;
            }
        }
        let mut cmd = tokio::process::Command::new(&self.binary);
        // Nothing of the agent's environment, nothing of the task's: the guest gets its
        // environment through fw_cfg.
        cmd.args(&args).env_clear().envs(
            QEMU_ENV
                .iter()
                .filter_map(|k| Some((*k, std::env::var_os(k)?))),
        );
        let child = spawn_captured(cmd, &self.binary, &slot.dir, slot.log_limit)?;
        let handle = Handle::spawned(DriverKind::Qemu, child, &slot.dir);
        let ports: Vec<String> = launch
            .ports
            .iter()
            .map(|p| format!("{}->{}/{}", p.port, p.target, p.protocol.as_str()))
            .collect();
        let message = format!(
            "virtual machine: {} vCPU, {} MiB, acceleration {}; ports [{}]",
            vcpus(task.resources.cpu.millis()),
            memory_mib(task.resources.memory.bytes()),
            self.accel_reason,
            ports.join(", ")
        );
        Ok(Started { handle, message })
    }

    async fn adopt(&self, record: &Record, dir: &Path) -> Option<Handle> {
        Handle::adopted_process(record, dir)
    }

    async fn exited(&self, handle: &mut Handle) -> Option<Option<i32>> {
        let code = handle.process_exit()?;
        handle.child = None;
        Some(code)
    }

    async fn stop(&self, handle: &mut Handle, grace: Duration) -> Stopped {
        stop_vm(handle, grace).await
    }

    async fn cleanup(&self, handle: &mut Handle) {
        for f in [QMP_SOCKET, PID_FILE, GUEST_ENV_FILE, GUEST_MOUNTS_FILE] {
            let _ = std::fs::remove_file(handle.dir.join(f));
        }
    }
}

/// Power button, grace, QMP `quit`, SIGKILL (see the module doc).
pub async fn stop_vm(handle: &mut Handle, grace: Duration) -> Stopped {
    let pid = handle.record.pid;
    if handle.process_exit().is_some() {
        return Stopped::AlreadyExited;
    }
    let socket = handle.dir.join(QMP_SOCKET);
    let mut qmp = match Qmp::connect(&socket, QMP_TIMEOUT).await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(pid, error = %e, "no QMP; stopping QEMU with signals");
            let how = stop_group(pid, grace, handle.child.as_mut()).await;
            if let Some(c) = handle.child.as_mut() {
                let _ = c.wait().await;
            }
            return how;
        }
    };
    match qmp.execute("system_powerdown").await {
        Ok(_) => {
            if wait_group_exit(pid, grace, handle.child.as_mut()).await {
                return Stopped::PoweredDown;
            }
        }
        Err(e) => tracing::warn!(pid, error = %e, "QMP system_powerdown failed"),
    }
    // The reply to `quit` may be lost when QEMU closes the socket first: wait either way.
    if let Err(e) = qmp.execute("quit").await {
        tracing::debug!(pid, error = %e, "QMP quit had no answer");
    }
    drop(qmp);
    if wait_group_exit(pid, QUIT_WAIT, handle.child.as_mut()).await {
        return Stopped::Quit;
    }
    exec::signal_group(pid, exec::Signal::Kill);
    if let Some(c) = handle.child.as_mut() {
        let _ = c.wait().await;
    }
    Stopped::Killed
}

/// A QMP protocol failure.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no QMP answer within {0:?}")]
    Timeout(Duration),
    #[error("QEMU closed the QMP connection")]
    Closed,
    #[error("not a QMP message: {0}")]
    Protocol(String),
    #[error("QMP {command} failed: {message}")]
    Command { command: String, message: String },
}

/// A QMP connection past the capabilities handshake.
pub struct Qmp {
    lines: tokio::io::Lines<BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>>,
    writer: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    timeout: Duration,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The QMP socket: a Unix socket in the allocation's directory.
#[cfg(unix)]
async fn connect_socket(
    path: &Path,
) -> std::io::Result<(
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
)> {
    let (read, write) = tokio::net::UnixStream::connect(path).await?.into_split();
    Ok((Box::new(read), Box::new(write)))
}

/// Windows has no QMP over a Unix socket here: the stop falls back to ending the process.
#[cfg(not(unix))]
async fn connect_socket(
    _path: &Path,
) -> std::io::Result<(
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
)> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "QMP over a Unix socket is not available on this platform",
    ))
}

impl Qmp {
    /// Connects, reads the greeting and sends `qmp_capabilities`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let (read, writer) = tokio::time::timeout(timeout, connect_socket(path))
            .await
            .map_err(|_| QmpError::Timeout(timeout))?
            .map_err(|source| QmpError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let mut qmp = Qmp {
            lines: BufReader::new(read).lines(),
            writer,
            timeout,
        };
        let greeting = qmp.read().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected the QMP greeting, got {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities").await?;
        Ok(qmp)
    }

    async fn read(&mut self) -> Result<Value, QmpError> {
        let line = tokio::time::timeout(self.timeout, self.lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout(self.timeout))??
            .ok_or(QmpError::Closed)?;
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }

    /// Runs `command` (no arguments) and returns its `return` value; events that arrive
    /// in between are skipped.
    pub async fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut text = json!({ "execute": command }).to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).await?;
        loop {
            let mut msg = self.read().await?;
            if let Some(r) = msg.get_mut("return") {
                return Ok(r.take());
            }
            if let Some(e) = msg.get("error") {
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    message: e["desc"].as_str().unwrap_or("unknown error").to_owned(),
                });
            }
            if msg.get("event").is_none() {
                return Err(QmpError::Protocol(msg.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_task(disk: Value, cpu: &str, memory: &str) -> Task {
        serde_json::from_value(json!({
            "driver": "qemu", "disk": disk,
            "resources": {"cpu": cpu, "memory": memory},
        }))
        .unwrap()
    }

    #[test]
    fn command_line_of_a_disk_vm() {
        let t = vm_task(json!({"image": "/img/a,b.qcow2"}), "1500m", "1Gi");
        let args = command_line(
            &t,
            &Launch::default(),
            Path::new("/d"),
            Arch::Amd64,
            Accel::Tcg,
        )
        .unwrap()
        .0;
        assert_eq!(
            args.join(" "),
            "-accel tcg -m 1024M -smp 2 -display none -serial stdio -monitor none \
             -drive file=/img/a,,b.qcow2,format=qcow2,if=virtio \
             -qmp unix:/d/qmp.sock,server=on,wait=off -pidfile /d/qemu.pid"
        );
    }

    #[test]
    fn command_line_of_a_kernel_boot() {
        let t = vm_task(
            json!({"image": "/img/root.raw", "format": "raw", "kernel": "/boot/vmlinuz",
                   "initrd": "/img/initrd.gz"}),
            "250m",
            "100000000",
        );
        let args = command_line(
            &t,
            &Launch::default(),
            Path::new("/d"),
            Arch::Amd64,
            Accel::Kvm,
        )
        .unwrap()
        .0;
        let line = args.join(" ");
        assert!(
            line.starts_with("-accel kvm -cpu host -m 96M -smp 1 "),
            "{line}"
        );
        assert!(line.contains("-drive file=/img/root.raw,format=raw,if=virtio"));
        assert!(
            line.contains(
                "-kernel /boot/vmlinuz -initrd /img/initrd.gz -append console=ttyS0 -qmp"
            ),
            "{line}"
        );
        let t = vm_task(
            json!({"image": "/i", "kernel": "/k", "cmdline": "console=ttyAMA0 quiet"}),
            "1",
            "64Mi",
        );
        let args = command_line(
            &t,
            &Launch::default(),
            Path::new("/d"),
            Arch::Arm64,
            Accel::Tcg,
        )
        .unwrap()
        .0;
        assert_eq!(&args[..4], ["-machine", "virt", "-accel", "tcg"]);
        assert_eq!(&args[4..6], ["-cpu", "max"]);
        let i = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[i + 1], "console=ttyAMA0 quiet");
    }

    #[test]
    fn command_line_refuses_what_qemu_cannot_take() {
        let mut t = vm_task(json!({"image": "/i"}), "1", "64Mi");
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let e = command_line(&t, &Launch::default(), &long, Arch::Amd64, Accel::Tcg).unwrap_err();
        assert!(e.to_string().contains("shorter --data-dir"), "{e}");
        t.disk = None;
        let e = command_line(
            &t,
            &Launch::default(),
            Path::new("/d"),
            Arch::Amd64,
            Accel::Tcg,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the qemu driver needs spec.task.disk");
    }

    #[test]
    fn what_the_guest_sees() {
        use crate::driver::BoundVolume;
        use api::task::{PortBinding, Protocol};
        let launch = Launch {
            env: [
                ("A", "1"),
                ("PEM", "x\ny"),
                ("MERIDIAN_SECRETS_DIR", "/host/s"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
            ports: vec![
                PortBinding {
                    name: "http".into(),
                    port: 31000,
                    target: 80,
                    protocol: Protocol::Tcp,
                },
                PortBinding {
                    name: "dns".into(),
                    port: 31001,
                    target: 53,
                    protocol: Protocol::Udp,
                },
            ],
            volumes: vec![BoundVolume {
                name: "data".into(),
                host_path: "/srv/a,b".into(),
                mount_path: "/data".into(),
                read_only: false,
            }],
            secrets_dir: Some("/d/secrets".into()),
            ..Launch::default()
        };
        let t = vm_task(json!({"image": "/i"}), "1", "64Mi");
        let (args, files) =
            command_line(&t, &launch, Path::new("/d"), Arch::Amd64, Accel::Tcg).unwrap();
        let line = args.join(" ");
        assert!(
            line.ends_with(
                "-pidfile /d/qemu.pid \
                 -netdev user,id=meridian0,hostfwd=tcp::31000-:80,hostfwd=udp::31001-:53 \
                 -device virtio-net-pci,netdev=meridian0 \
                 -virtfs local,path=/srv/a,,b,mount_tag=data,security_model=none \
                 -virtfs local,path=/d/secrets,mount_tag=meridian-secrets,security_model=none,readonly=on \
                 -fw_cfg name=opt/meridian/env,file=/d/guest.env \
                 -fw_cfg name=opt/meridian/mounts,file=/d/guest.mounts"
            ),
            "{line}"
        );
        // No value of the environment on the command line.
        assert!(!line.contains("PEM") && !line.contains("A=1"), "{line}");
        assert_eq!(
            files.env,
            b"A=1\0MERIDIAN_SECRETS_DIR=/run/secrets/meridian\0PEM=x\ny\0"
        );
        assert_eq!(
            files.mounts,
            "data /data rw\nmeridian-secrets /run/secrets/meridian ro\n"
        );
        assert!(!format!("{files:?}").contains("x\ny"));
        // Nothing to give: QEMU's defaults, no files.
        let (args, files) = guest_view(&Launch::default(), Path::new("/d")).unwrap();
        assert!(args.is_empty() && files == GuestFiles::default());
        // A volume name QEMU cannot take as a tag.
        let mut bad = launch;
        bad.volumes[0].name = "x".repeat(32);
        let e = guest_view(&bad, Path::new("/d")).unwrap_err().to_string();
        assert!(e.contains("cannot be a 9p mount tag"), "{e}");
    }

    #[test]
    fn sizes_round_up() {
        assert_eq!(memory_mib(1), 1);
        assert_eq!(memory_mib(128 * 1024 * 1024), 128);
        assert_eq!(memory_mib(128 * 1024 * 1024 + 1), 129);
        assert_eq!(vcpus(1), 1);
        assert_eq!(vcpus(1000), 1);
        assert_eq!(vcpus(1001), 2);
        assert_eq!(vcpus(0), 1);
    }

    #[test]
    fn kvm_only_when_usable() {
        let vmx = "processor\t: 0\nflags\t\t: fpu vme sse2 vmx ssse3\n";
        let plain = "processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 hypervisor\n";
        let auto = AccelSetting::Auto;
        assert_eq!(
            choose_accel(auto, Arch::Amd64, true, Some(vmx)).0,
            Accel::Kvm
        );
        let amd = "flags : fpu svm\n";
        assert_eq!(
            choose_accel(auto, Arch::Amd64, true, Some(amd)).0,
            Accel::Kvm
        );
        // The device is there but the CPU cannot virtualize (this development machine).
        let (accel, why) = choose_accel(auto, Arch::Amd64, true, Some(plain));
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("no vmx or svm"), "{why}");
        assert_eq!(choose_accel(auto, Arch::Amd64, true, None).0, Accel::Tcg);
        // The device does not open.
        assert_eq!(
            choose_accel(auto, Arch::Amd64, false, Some(vmx)).0,
            Accel::Tcg
        );
        // arm64 has no such flag: the device decides.
        assert_eq!(
            choose_accel(auto, Arch::Arm64, true, Some("")).0,
            Accel::Kvm
        );
        // The node's configuration wins.
        assert_eq!(
            choose_accel(AccelSetting::Kvm, Arch::Amd64, false, None).0,
            Accel::Kvm
        );
        assert_eq!(
            choose_accel(AccelSetting::Tcg, Arch::Amd64, true, Some(vmx)).0,
            Accel::Tcg
        );
    }

    #[test]
    fn accel_settings_parse() {
        assert_eq!("KVM".parse(), Ok(AccelSetting::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelSetting::Tcg));
        assert_eq!("auto".parse(), Ok(AccelSetting::Auto));
        assert_eq!(
            "hvf".parse::<AccelSetting>(),
            Err("MERIDIAN_QEMU_ACCEL=\"hvf\" is not kvm, tcg or auto".to_owned())
        );
    }
}
