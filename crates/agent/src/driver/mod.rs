//! Drivers: how the agent runs a task. One module per driver behind the [`Driver`] trait:
//!
//! - [`exec`]: a process in its own process group, cgroup v1 limits, captured logs;
//! - [`qemu`]: a virtual machine (QEMU, KVM when usable, else TCG), its serial console in
//!   the allocation's `stdout.log`, stopped through QMP;
//! - [`container`]: `podman` or `docker` through their command line (run end to end
//!   against Docker Engine 20.10 by `tests/container.rs`).
//!
//! Every driver keeps what it needs in a [`Handle`]: a pid and its start time for the
//! process drivers (so a restarted agent adopts the process, never a stranger that reused
//! the pid), a container name for the container driver. The runtime persists
//! [`Handle::record`] in `state.json` and rebuilds handles with [`Driver::adopt`].
//!
//! [`available`] decides what a node offers (its Node's `spec.drivers`): `exec` always;
//! `qemu` when `qemu-system-<arch>` is on `PATH`; `container` when `podman info` or
//! `docker info` succeeds and says it reached an engine ([`engine_answered`]). A docker
//! CLI without a daemon is not a container driver.

pub mod container;
pub mod exec;
#[cfg(windows)]
pub mod job;
pub mod qemu;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use api::kinds::{Arch, Driver as DriverKind, Task};

use crate::probe::Probe;

/// Where an allocation lives on the node and what identifies it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// `DATA_DIR/allocations/{namespace}_{name}`: logs, QMP socket, pid file.
    pub dir: PathBuf,
    /// A name unique on the node (`{namespace}_{name}-{uid prefix}`): cgroups.
    pub id: String,
    /// The allocation's `metadata.uid`: container names.
    pub uid: String,
    /// Bytes per log file before it rotates.
    pub log_limit: u64,
}

/// What the task sees, resolved by the runtime from the allocation, the agent's
/// configuration and the secrets fetched for the allocation. Drivers apply all of it and
/// persist none of it (it may hold secret values: never log it, never write it to
/// `state.json`).
#[derive(Clone, Default)]
pub struct Launch {
    /// The task's whole environment: its `env` with secret references resolved, plus the
    /// agent's `MERIDIAN_*` variables about the allocation. Nothing of the agent's own.
    pub env: std::collections::BTreeMap<String, String>,
    /// The account to run as; `None` runs as the agent's own user (an agent that is not
    /// root cannot switch, and says so).
    pub user: Option<Identity>,
    /// The allocation's own directory for the task (`<slot.dir>/task`), which survives
    /// restarts of the task; the default working directory. Logs are beside it, in
    /// `slot.dir`.
    pub task_dir: PathBuf,
    /// The working directory: `task.workingDir` resolved against `task_dir`.
    pub working_dir: PathBuf,
    /// Host ports assigned by the scheduler.
    pub ports: Vec<api::task::PortBinding>,
    /// Host volumes, resolved to host paths.
    pub volumes: Vec<BoundVolume>,
    /// Where the secret files were written (`<slot.dir>/secrets`), if the task has any.
    pub secrets_dir: Option<PathBuf>,
    /// Process limits.
    pub rlimits: api::task::Rlimits,
}

impl std::fmt::Debug for Launch {
    /// Names of variables only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("user", &self.user)
            .field("task_dir", &self.task_dir)
            .field("working_dir", &self.working_dir)
            .field("ports", &self.ports)
            .field("volumes", &self.volumes)
            .field("secrets_dir", &self.secrets_dir)
            .field("rlimits", &self.rlimits)
            .finish()
    }
}

/// A resolved account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Option<String>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's from `/etc/group` when `task.user` names no group,
    /// none otherwise.
    pub groups: Vec<u32>,
}

/// A node's host volume as a task mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundVolume {
    pub name: String,
    /// The directory on the node.
    pub host_path: PathBuf,
    /// Where the task sees it (`task.volumes[].mountPath`).
    pub mount_path: String,
    pub read_only: bool,
}

/// What survives an agent restart, per task (in `state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `exec` for records written before drivers existed.
    #[serde(default = "default_driver")]
    pub driver: DriverKind,
    /// The process (group) id; 0 when there is no host process (containers).
    #[serde(default)]
    pub pid: u32,
    /// Start time of `pid` in clock ticks since boot.
    #[serde(default)]
    pub start_time: u64,
    /// The container's name (`container` driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

fn default_driver() -> DriverKind {
    DriverKind::Exec
}

/// A running (or exited, not yet cleaned up) task.
#[derive(Debug)]
pub struct Handle {
    pub record: Record,
    /// The allocation's directory.
    pub dir: PathBuf,
    /// `None` for a process adopted after an agent restart (not our child), and for
    /// containers.
    pub child: Option<tokio::process::Child>,
    /// The task's cgroups (`exec`), removed when it is gone.
    pub cgroups: exec::Cgroups,
    /// A process streaming the container's logs (`container` driver).
    pub log_follower: Option<tokio::process::Child>,
}

impl Handle {
    /// A handle for a process this agent just started.
    pub fn spawned(driver: DriverKind, child: tokio::process::Child, dir: &Path) -> Self {
        let pid = child.id().unwrap_or_default();
        Handle {
            record: Record {
                driver,
                pid,
                start_time: exec::start_time(pid).unwrap_or_default(),
                container: None,
            },
            dir: dir.to_path_buf(),
            child: Some(child),
            cgroups: exec::Cgroups::default(),
            log_follower: None,
        }
    }

    /// A handle for a process recorded by an earlier agent, if that very process (same
    /// pid, same start time) is still alive.
    pub fn adopted_process(record: &Record, dir: &Path) -> Option<Self> {
        (record.pid != 0 && exec::start_time(record.pid) == Some(record.start_time)).then(|| {
            Handle {
                record: record.clone(),
                dir: dir.to_path_buf(),
                child: None,
                cgroups: exec::Cgroups::default(),
                log_follower: None,
            }
        })
    }

    /// `Some(exit code)` once the task's process has exited (`Some(None)`: killed by a
    /// signal or unknown); `None` while it runs. Process drivers only.
    pub fn process_exit(&mut self) -> Option<Option<i32>> {
        match self.child.as_mut() {
            Some(c) => match c.try_wait() {
                Ok(Some(status)) => Some(status.code()),
                Ok(None) => None,
                Err(_) => Some(None),
            },
            None => (!exec::group_alive(self.record.pid)).then_some(None),
        }
    }
}

/// A task that started, and what the driver says about it for the allocation's status
/// (limits enforced, acceleration used...).
#[derive(Debug)]
pub struct Started {
    pub handle: Handle,
    pub message: String,
}

/// How a task ended when it was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was gone before anything was sent.
    AlreadyExited,
    /// It exited within the grace period after SIGTERM (`exec`), `docker stop` (container).
    Terminated,
    /// The guest powered off after an ACPI power-button press (QMP `system_powerdown`).
    PoweredDown,
    /// The guest ignored the power button for the grace period; QEMU quit on QMP `quit`.
    Quit,
    /// It outlived everything else and was killed (SIGKILL).
    Killed,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::AlreadyExited => "had already exited",
            Stopped::Terminated => "terminated within the grace period",
            Stopped::PoweredDown => "powered down (ACPI) within the grace period",
            Stopped::Quit => "ignored the power button; QEMU quit on QMP quit",
            Stopped::Killed => "killed (SIGKILL) after the grace period",
        })
    }
}

/// Why a task could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("the task has no command: set spec.task.command")]
    NoCommand,
    #[error("the {0} driver needs {1}")]
    Missing(DriverKind, &'static str),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// A way of running tasks.
#[async_trait]
pub trait Driver: Send + Sync {
    /// Which driver this is.
    fn kind(&self) -> DriverKind;

    /// Starts `task` in `slot`, as `launch` says it sees the world.
    async fn start(
        &self,
        task: &Task,
        launch: &Launch,
        slot: &Slot,
    ) -> Result<Started, DriverError>;

    /// Rebuilds the handle of a task a previous agent started, if it still runs.
    async fn adopt(&self, record: &Record, dir: &Path) -> Option<Handle>;

    /// `Some(exit code)` once the task has exited (`Some(None)` when the code is unknown),
    /// `None` while it runs.
    async fn exited(&self, handle: &mut Handle) -> Option<Option<i32>>;

    /// Stops the task: the gentle way first, then, after `grace`, the hard way.
    async fn stop(&self, handle: &mut Handle, grace: Duration) -> Stopped;

    /// Frees what the task held once it is gone (cgroups, the container).
    async fn cleanup(&self, handle: &mut Handle);
}

/// The drivers this node offers, by kind.
pub struct Drivers {
    drivers: Vec<Box<dyn Driver>>,
}

impl std::fmt::Debug for Drivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.drivers.iter().map(|d| d.kind()))
            .finish()
    }
}

impl Drivers {
    /// The drivers that work on this host (see [`available`]).
    pub fn detect(probe: &dyn Probe, arch: Arch, accel: qemu::AccelSetting) -> Self {
        // The same tests as `available`, in the same order.
        let mut drivers: Vec<Box<dyn Driver>> = vec![Box::new(exec::ExecDriver::default())];
        if probe.on_path(qemu_binary(arch)) {
            drivers.push(Box::new(qemu::QemuDriver::detect(probe, arch, accel)));
        }
        if let Some(engine) = container_engine(probe) {
            drivers.push(Box::new(container::ContainerDriver::new(engine)));
        }
        Drivers { drivers }
    }

    /// Exactly these drivers (tests).
    pub fn with(drivers: Vec<Box<dyn Driver>>) -> Self {
        Drivers { drivers }
    }

    /// The driver of this kind, or an error that says what the node offers.
    pub fn get(&self, kind: DriverKind) -> Result<&dyn Driver, DriverError> {
        self.drivers
            .iter()
            .find(|d| d.kind() == kind)
            .map(AsRef::as_ref)
            .ok_or_else(|| {
                let offered: Vec<&str> = self.drivers.iter().map(|d| d.kind().as_str()).collect();
                let hint = match kind {
                    DriverKind::Exec => "",
                    DriverKind::Qemu => "; install QEMU (qemu-system-x86_64 or qemu-system-aarch64) and restart the agent",
                    DriverKind::Container => "; install podman or docker with a running engine and restart the agent",
                };
                DriverError::Failed(format!(
                    "driver {kind} is not available on this node (it offers {}){hint}",
                    offered.join(", ")
                ))
            })
    }

    /// Puts `driver` in the place of the one of its kind (the exec driver with another
    /// launcher), or adds it.
    pub fn replace(&mut self, driver: Box<dyn Driver>) {
        self.drivers.retain(|d| d.kind() != driver.kind());
        self.drivers.insert(0, driver);
    }

    /// The kinds offered.
    pub fn kinds(&self) -> Vec<DriverKind> {
        self.drivers.iter().map(|d| d.kind()).collect()
    }
}

/// The QEMU system emulator for `arch`.
pub fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-system-x86_64",
        Arch::Arm64 => "qemu-system-aarch64",
    }
}

/// The drivers that work on this host, in the order the Node lists them.
pub fn available(probe: &dyn Probe, arch: Arch) -> Vec<DriverKind> {
    let mut drivers = vec![DriverKind::Exec];
    if probe.on_path(qemu_binary(arch)) {
        drivers.push(DriverKind::Qemu);
    }
    if container_engine(probe).is_some() {
        drivers.push(DriverKind::Container);
    }
    drivers
}

/// `podman` or `docker`, whichever answers `info` from a running engine (podman first: it
/// needs no daemon).
pub fn container_engine(probe: &dyn Probe) -> Option<container::Engine> {
    [container::Engine::Podman, container::Engine::Docker]
        .into_iter()
        .find(|e| {
            probe
                .run(e.program(), &["info"])
                .is_some_and(|out| engine_answered(&out))
        })
}

/// Whether the output of a successful `docker info`/`podman info` comes from an engine.
/// Old docker CLIs exit 0 without a daemon, printing the client part and an error in
/// place of the server part.
pub fn engine_answered(info: &str) -> bool {
    !(info.contains("Cannot connect to the Docker daemon")
        || info.contains("Is the docker daemon running")
        || info.contains("ERROR: error during connect"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::RecordedProbe;

    #[test]
    fn a_docker_cli_without_an_engine_is_no_container_driver() {
        // The command fails (what docker 28 does without a daemon): not offered.
        let p = RecordedProbe::new().program("docker");
        assert_eq!(available(&p, Arch::Amd64), [DriverKind::Exec]);
        // An old client exits 0 but says there is no daemon: not offered either.
        let p = RecordedProbe::new().command(
            "docker",
            &["info"],
            "Client:\n Version: 19.03\n\nServer:\nERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
        );
        assert_eq!(available(&p, Arch::Amd64), [DriverKind::Exec]);
        assert!(container_engine(&p).is_none());
    }

    #[test]
    fn engines_and_qemu_are_offered_when_they_work() {
        let p = RecordedProbe::new()
            .command("docker", &["info"], "Server:\n Containers: 3\n")
            .program("qemu-system-x86_64");
        assert_eq!(
            available(&p, Arch::Amd64),
            [DriverKind::Exec, DriverKind::Qemu, DriverKind::Container]
        );
        assert_eq!(container_engine(&p), Some(container::Engine::Docker));
        // The x86 emulator does not make an arm64 node a qemu node.
        assert_eq!(
            available(&p, Arch::Arm64),
            [DriverKind::Exec, DriverKind::Container]
        );
        let p = RecordedProbe::new()
            .command("podman", &["info"], "host:\n  arch: amd64\n")
            .command("docker", &["info"], "Server:\n");
        assert_eq!(container_engine(&p), Some(container::Engine::Podman));
    }

    #[test]
    fn the_runtime_gets_the_drivers_the_node_offers() {
        let p = RecordedProbe::new()
            .program("qemu-system-x86_64")
            .program("docker");
        let d = Drivers::detect(&p, Arch::Amd64, qemu::AccelSetting::Tcg);
        assert_eq!(d.kinds(), available(&p, Arch::Amd64));
        assert_eq!(d.kinds(), [DriverKind::Exec, DriverKind::Qemu]);
        assert!(d.get(DriverKind::Container).is_err());
    }

    #[test]
    fn old_state_records_are_exec_tasks() {
        let r: Record = serde_json::from_str(r#"{"pid": 42, "startTime": 7}"#).unwrap();
        assert_eq!(r.driver, DriverKind::Exec);
        assert_eq!((r.pid, r.start_time, r.container), (42, 7, None));
    }

    #[test]
    fn a_missing_driver_says_what_the_node_offers() {
        let d = Drivers::with(vec![Box::new(exec::ExecDriver::default())]);
        assert!(d.get(DriverKind::Exec).is_ok());
        let Err(e) = d.get(DriverKind::Qemu) else {
            panic!("qemu is not offered")
        };
        assert_eq!(
            e.to_string(),
            "driver qemu is not available on this node (it offers exec); install QEMU (qemu-system-x86_64 or qemu-system-aarch64) and restart the agent"
        );
    }
}
