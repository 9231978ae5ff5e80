//! The `exec` driver: a real process in its own process group, with arguments,
//! environment and working directory; cpu and memory limits through cgroup v1 when the
//! host lets the agent create cgroups (on Windows, a Job Object: [`crate::windows`] has
//! the arithmetic, `super::job` the thin cfg(windows) layer); stdout and stderr captured
//! to size-capped files that rotate once (`stdout.log`, `stdout.log.1`).
//!
//! Stopping sends SIGTERM to the whole process group, waits for the grace period, then
//! sends SIGKILL, so nothing the task started is left behind.
//!
//! The helpers for process groups ([`signal_group`], [`group_alive`], [`stop_group`]),
//! start times ([`start_time`]) and log capture ([`capture`]) serve the `qemu` driver too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use api::kinds::{Driver as DriverKind, Task};

use super::{Driver, DriverError, Handle, Launch, Record, Slot, Started, Stopped};

/// Where the limits of a task live (cgroup v1), if the host allowed creating them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroups {
    pub dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Removes the task's cgroup directories (they must be empty: the task is gone).
    pub fn remove(&self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The `exec` driver. On Unix a task starts through the launcher (`meridian launch`,
/// [`crate::launch`]): clean environment, user, working directory, rlimits, volumes, no
/// inherited descriptors.
#[derive(Debug, Clone)]
pub struct ExecDriver {
    launcher: PathBuf,
}

impl Default for ExecDriver {
    /// The launcher is this very binary (`meridian`).
    fn default() -> Self {
        ExecDriver::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("meridian")))
    }
}

impl ExecDriver {
    /// A driver whose launcher is the `meridian` binary at `launcher` (tests, whose own
    /// executable is not `meridian`).
    pub fn new(launcher: PathBuf) -> Self {
        ExecDriver { launcher }
    }

    /// The `meridian` binary that launches tasks.
    pub fn launcher(&self) -> &Path {
        &self.launcher
    }
}

/// What the launcher does for `program args` in `launch`'s view.
#[cfg(unix)]
pub fn launch_spec(program: &str, args: &[String], launch: &Launch) -> crate::launch::Spec {
    let task_dir = &launch.task_dir;
    crate::launch::Spec {
        program: program.to_owned(),
        args: args.to_vec(),
        env: launch.env.clone(),
        // Only root switches; an agent that is not root runs tasks as itself.
        user: launch
            .user
            .as_ref()
            .filter(|_| nix::unistd::geteuid().is_root())
            .map(|u| crate::launch::Ids {
                uid: u.uid,
                gid: u.gid,
                groups: u.groups.clone(),
            }),
        working_dir: launch.working_dir.clone(),
        rlimits: launch.rlimits.clone(),
        mounts: launch
            .volumes
            .iter()
            .map(|v| crate::launch::Mount {
                source: v.host_path.clone(),
                target: task_dir.join(&v.mount_path),
                read_only: v.read_only,
            })
            .collect(),
    }
}

#[async_trait]
impl Driver for ExecDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Exec
    }

    async fn start(
        &self,
        task: &Task,
        launch: &Launch,
        slot: &Slot,
    ) -> Result<Started, DriverError> {
        let mut argv = task.command.iter().chain(task.args.iter());
        let program = argv.next().ok_or(DriverError::NoCommand)?.clone();
        let args: Vec<String> = argv.cloned().collect();
        create_dir(&slot.dir)?;
        #[cfg(unix)]
        {
            let spec = launch_spec(&program, &args, launch);
            let (channel, stdin) =
                crate::launch::Channel::new().map_err(|source| DriverError::Io {
                    path: slot.dir.clone(),
                    source,
                })?;
            let mut cmd = tokio::process::Command::new(&self.launcher);
            cmd.arg("launch").env_clear().stdin(stdin);
            let child = spawn_logged(
                cmd,
                &self.launcher.display().to_string(),
                &slot.dir,
                slot.log_limit,
            )?;
            let mut handle = Handle::spawned(DriverKind::Exec, child, &slot.dir);
            // Limits first: the launcher waits for its spec, so the task starts limited.
            let (cgroups, limits) = limit(handle.record.pid, &slot.id, task);
            handle.cgroups = cgroups;
            if let Err(e) = channel.handshake(&spec).await {
                if let Some(c) = handle.child.as_mut() {
                    let _ = c.start_kill();
                    let _ = c.wait().await;
                }
                handle.cgroups.remove();
                return Err(DriverError::Failed(e));
            }
            Ok(Started {
                handle,
                message: limits,
            })
        }
        #[cfg(windows)]
        {
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&args)
                .env_clear()
                .envs(&launch.env)
                .current_dir(&launch.working_dir);
            let child = spawn_captured(cmd, &program, &slot.dir, slot.log_limit)?;
            let handle = Handle::spawned(DriverKind::Exec, child, &slot.dir);
            let limits = super::job::limit(handle.child.as_ref(), task);
            Ok(Started {
                handle,
                message: limits,
            })
        }
    }

    async fn adopt(&self, record: &Record, dir: &Path) -> Option<Handle> {
        Handle::adopted_process(record, dir)
    }

    async fn exited(&self, handle: &mut Handle) -> Option<Option<i32>> {
        let code = handle.process_exit()?;
        // The group may hold stragglers the main process left: end them too.
        stop_group(handle.record.pid, Duration::from_millis(200), None).await;
        handle.child = None;
        Some(code)
    }

    async fn stop(&self, handle: &mut Handle, grace: Duration) -> Stopped {
        let how = stop_group(handle.record.pid, grace, handle.child.as_mut()).await;
        if let Some(c) = handle.child.as_mut() {
            let _ = c.wait().await;
        }
        how
    }

    async fn cleanup(&self, handle: &mut Handle) {
        handle.cgroups.remove();
        handle.cgroups = Cgroups::default();
    }
}

/// Creates the allocation directory.
pub(crate) fn create_dir(dir: &Path) -> Result<(), DriverError> {
    std::fs::create_dir_all(dir).map_err(|source| DriverError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Spawns `cmd` in a new process group with stdin closed and stdout/stderr captured to
/// `dir/stdout.log` and `dir/stderr.log` (rotated at `log_limit` bytes).
pub(crate) fn spawn_captured(
    mut cmd: tokio::process::Command,
    program: &str,
    dir: &Path,
    log_limit: u64,
) -> Result<tokio::process::Child, DriverError> {
    cmd.stdin(std::process::Stdio::null());
    spawn_logged(cmd, program, dir, log_limit)
}

/// [`spawn_captured`] with the caller's stdin.
pub(crate) fn spawn_logged(
    mut cmd: tokio::process::Command,
    program: &str,
    dir: &Path,
    log_limit: u64,
) -> Result<tokio::process::Child, DriverError> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|source| DriverError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(capture(out, dir.join("stdout.log"), log_limit));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(capture(err, dir.join("stderr.log"), log_limit));
    }
    Ok(child)
}

/// Root of the cgroup v1 hierarchies.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The smallest `cpu.cfs_quota_us` the kernel accepts (1 ms of a 100 ms period: 10m).
const MIN_CFS_QUOTA_US: u64 = 1000;

/// Applies cpu and memory limits in cgroup v1 (`cpu.cfs_quota_us` over a 100 ms period,
/// `memory.limit_in_bytes`) and moves the process in. Best effort: says what it did.
#[cfg_attr(windows, allow(dead_code))]
fn limit(pid: u32, id: &str, task: &Task) -> (Cgroups, String) {
    let r = &task.resources;
    let mut dirs = Vec::new();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    // 100_000 µs period: millicores × 100, and at least the kernel's minimum quota (1 ms,
    // that is 10m): below it the kernel refuses the write and nothing would be limited.
    let asked_quota = r.cpu.millis() * 100;
    let cpu_quota = if asked_quota > 0 {
        asked_quota.max(MIN_CFS_QUOTA_US)
    } else {
        0
    };
    let memory = r.memory.bytes();
    let plans: [(&str, &str, String, bool); 2] = [
        (
            "cpu",
            "cpu.cfs_quota_us",
            cpu_quota.to_string(),
            cpu_quota > 0,
        ),
        (
            "memory",
            "memory.limit_in_bytes",
            memory.to_string(),
            memory > 0,
        ),
    ];
    for (controller, file, value, wanted) in plans {
        if !wanted {
            continue;
        }
        let dir = Path::new(CGROUP_ROOT)
            .join(controller)
            .join("meridian")
            .join(id);
        let created = !dir.exists();
        let applied = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                if controller == "cpu" {
                    std::fs::write(dir.join("cpu.cfs_period_us"), "100000")?;
                }
                std::fs::write(dir.join(file), &value)
            })
            .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
        match applied {
            Ok(()) => {
                dirs.push(dir);
                done.push(controller);
            }
            Err(e) => {
                // Nothing of this task may stay behind (the directory is empty: the
                // process was not moved in).
                if created {
                    let _ = std::fs::remove_dir(&dir);
                }
                failed.push(format!("{controller}: {e}"));
            }
        }
    }
    let mut text = if done.is_empty() {
        "no limits enforced".to_owned()
    } else {
        format!(
            "limits enforced with cgroup v1: {}",
            done.iter()
                .map(|c| match *c {
                    "cpu" if asked_quota < MIN_CFS_QUOTA_US => format!(
                        "cpu {}m (raised to the kernel's minimum, {}m)",
                        r.cpu.millis(),
                        MIN_CFS_QUOTA_US / 100
                    ),
                    "cpu" => format!("cpu {}m", r.cpu.millis()),
                    _ => format!("memory {} bytes", memory),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !failed.is_empty() {
        text.push_str(&format!(" (not enforced: {})", failed.join("; ")));
    }
    (Cgroups { dirs }, text)
}

/// A task's log file, rotated once past `limit` bytes (the previous one kept as `.1`).
pub(crate) struct LogFile {
    path: PathBuf,
    file: tokio::fs::File,
    written: u64,
    limit: u64,
}

impl LogFile {
    /// Opens `path` for appending; `None` when it cannot be opened.
    pub(crate) async fn open(path: PathBuf, limit: u64) -> Option<Self> {
        let file = Self::append(&path).ok()?;
        let written = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        Some(Self {
            path,
            file,
            written,
            limit,
        })
    }

    fn append(path: &Path) -> std::io::Result<tokio::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(tokio::fs::File::from_std)
    }

    /// Appends `bytes`, rotating first when they would pass the limit.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.written + bytes.len() as u64 > self.limit && self.written > 0 {
            self.file.flush().await?;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            // A failed rename appends to the same file rather than losing output.
            let _ = std::fs::rename(&self.path, PathBuf::from(rotated));
            self.file = Self::append(&self.path)?;
            self.written = 0;
        }
        self.file.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub(crate) async fn flush(&mut self) {
        let _ = self.file.flush().await;
    }
}

/// Copies a task's output into its log file until the pipe closes.
pub(crate) async fn capture(mut pipe: impl AsyncRead + Unpin, path: PathBuf, limit: u64) {
    let Some(mut file) = LogFile::open(path, limit).await else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if file.write(&buf[..n]).await.is_err() {
            return;
        }
    }
    file.flush().await;
}

/// How a task's processes are asked to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The gentle way (SIGTERM; on Windows `taskkill /T`, a close request).
    Terminate,
    /// For good (SIGKILL; on Windows `taskkill /T /F`).
    Kill,
}

/// Sends `signal` to the process group `pgid` (the task and everything it started).
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    group::signal(pgid, signal)
}

/// Whether any process of group `pgid` is alive.
pub fn group_alive(pgid: u32) -> bool {
    group::alive(pgid)
}

/// Process groups on Unix: `killpg` (nix is a Unix-only dependency).
#[cfg(unix)]
mod group {
    use nix::sys::signal::{Signal as Unix, killpg};
    use nix::unistd::Pid;

    pub fn signal(pgid: u32, signal: super::Signal) -> bool {
        let signal = match signal {
            super::Signal::Terminate => Unix::SIGTERM,
            super::Signal::Kill => Unix::SIGKILL,
        };
        i32::try_from(pgid).is_ok_and(|p| killpg(Pid::from_raw(p), signal).is_ok())
    }

    pub fn alive(pgid: u32) -> bool {
        i32::try_from(pgid).is_ok_and(|p| killpg(Pid::from_raw(p), None).is_ok())
    }
}

/// The task's process tree on Windows, through the system's own tools (no unsafe code):
/// `taskkill /T` ends the tree, `tasklist` says whether the leader still runs.
#[cfg(windows)]
mod group {
    use std::process::{Command, Stdio};

    pub fn signal(pid: u32, signal: super::Signal) -> bool {
        let mut command = Command::new("taskkill");
        command.args(["/PID", &pid.to_string(), "/T"]);
        if signal == super::Signal::Kill {
            command.arg("/F");
        }
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn alive(pid: u32) -> bool {
        Command::new("tasklist")
            .args(["/FI", &format!("PID eq {pid}"), "/NH", "/FO", "CSV"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("\"{pid}\"")))
    }
}

/// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL; says which ended it.
///
/// `leader` is the group's leader when it is this process's child: it is reaped while
/// waiting. Until then it is a zombie, and a zombie still counts as a member of the group
/// (`kill(-pgid, 0)` succeeds), so without reaping every stop would last the whole grace
/// period even when the task exits at once on SIGTERM.
pub async fn stop_group(
    pgid: u32,
    grace: Duration,
    leader: Option<&mut tokio::process::Child>,
) -> Stopped {
    if !signal_group(pgid, Signal::Terminate) {
        return Stopped::AlreadyExited;
    }
    if wait_group_exit(pgid, grace, leader).await {
        return Stopped::Terminated;
    }
    signal_group(pgid, Signal::Kill);
    Stopped::Killed
}

/// Waits up to `limit` for every process of group `pgid` to be gone; reaps `leader` (see
/// [`stop_group`]). Whether the group is gone.
pub async fn wait_group_exit(
    pgid: u32,
    limit: Duration,
    mut leader: Option<&mut tokio::process::Child>,
) -> bool {
    let poll = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        match leader.as_deref_mut() {
            // Wakes as soon as the leader exits (and reaps it).
            Some(child) => {
                if let Ok(Ok(_)) = tokio::time::timeout(poll, child.wait()).await {
                    leader = None;
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), to tell a process from a later one that reused its pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs cgroup v1 with the cpu controller writable (root on the project's machines;
    /// `../shared/MACHINE.md`): fails, never skips, without it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_cpu_limit_below_the_kernels_minimum_is_raised_and_leaves_nothing_behind() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id().expect("pid");
        let id = format!("test-min-quota-{pid}");
        let task: Task = serde_json::from_value(serde_json::json!({
            "driver": "exec", "command": ["sleep", "600"],
            "resources": {"cpu": "5m", "memory": "0"}
        }))
        .expect("a task");
        let (cgroups, text) = limit(pid, &id, &task);
        let dir = Path::new(CGROUP_ROOT).join("cpu/meridian").join(&id);
        assert_eq!(cgroups.dirs, vec![dir.clone()], "{text}");
        assert!(
            text.contains("raised to the kernel's minimum, 10m"),
            "{text}"
        );
        let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).expect("quota");
        assert_eq!(quota.trim(), "1000");
        child.kill().await.expect("kill");
        child.wait().await.expect("reaped");
        cgroups.remove();
        assert!(!dir.exists(), "the task's cgroup is removed");
    }

    #[test]
    fn start_time_skips_a_command_name_with_spaces() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[tokio::test]
    async fn stopping_a_child_does_not_wait_out_the_grace_period() {
        // A task that exits on SIGTERM: its zombie must not keep the group "alive".
        let mut child = tokio::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id().expect("pid");
        let stopped = tokio::time::timeout(
            Duration::from_secs(60),
            stop_group(pid, Duration::from_secs(600), Some(&mut child)),
        )
        .await;
        assert_eq!(
            stopped.ok(),
            Some(Stopped::Terminated),
            "stop_group waited for the grace period"
        );
        assert!(!group_alive(pid));
        assert!(child.try_wait().expect("status").is_some());
    }

    #[test]
    fn own_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
    }
}
