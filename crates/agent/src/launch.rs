//! The launcher: how an `exec` task (and a command health check) starts with exactly what
//! its [`crate::driver::Launch`] says, and nothing of the agent's.
//!
//! `unsafe_code` is forbidden, so `CommandExt::pre_exec` is not available to run code
//! between `fork` and `exec`. Instead the agent starts the `meridian` binary itself as a
//! small launcher (`meridian launch`, a hidden subcommand; [`main`]) with an empty
//! environment, in the task's process group, its stdout and stderr already the task's
//! logs. The launcher, single-threaded and before anything else:
//!
//! 1. reads the [`Spec`] (JSON) from its stdin, which is one end of a Unix socket pair:
//!    secret values travel neither on the command line (world-readable in `/proc`) nor
//!    through a file; then points stdin at `/dev/null`;
//! 2. with volumes, enters a private mount namespace (`unshare(CLONE_NEWNS)`, `/` made
//!    a slave so nothing propagates back to the host), bind-mounts each volume at its
//!    target and remounts the read-only ones read-only;
//! 3. sets the `rlimits`;
//! 4. marks every descriptor above 2 close-on-exec (the socket included);
//! 5. enters the working directory (as root: the directories above the agent's data
//!    directory need not be searchable by task users);
//! 6. drops to the task's user: supplementary groups, gid, uid (in that order), and
//!    checks the user can read and search the working directory;
//! 7. `exec`s the program with exactly the spec's environment.
//!
//! The process keeps its pid across the `exec`, so the driver's handle (pid and start
//! time), process-group signals and adoption after an agent restart work as before.
//!
//! The agent learns whether the launch worked from the socket ([`Channel::handshake`]):
//! a failing step writes one line to it and exits 127; a successful `exec` closes it
//! (close-on-exec) and the agent reads end-of-file. So "cannot mount volume data" or
//! "cannot enter the working directory as uid 999" fail the allocation with that
//! message instead of hiding in `stderr.log`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The exit code of a launcher that could not start the task.
pub const FAILED: i32 = 127;

/// What the launcher does, sent over its stdin. Holds the task's environment, which may
/// hold secret values: never log it or write it to a file ([`std::fmt::Debug`] shows
/// variable names only).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The whole environment of the task.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Switch to this account; `None`: stay who the launcher is.
    #[serde(default)]
    pub user: Option<Ids>,
    pub working_dir: PathBuf,
    #[serde(default)]
    pub rlimits: api::task::Rlimits,
    /// Bind mounts in a private mount namespace (none: no namespace).
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("program", &self.program)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("user", &self.user)
            .field("working_dir", &self.working_dir)
            .field("rlimits", &self.rlimits)
            .field("mounts", &self.mounts)
            .finish_non_exhaustive()
    }
}

/// Numeric identity to switch to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (empty: none).
    #[serde(default)]
    pub groups: Vec<u32>,
}

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

#[cfg(unix)]
pub use unix::{Channel, main};

#[cfg(unix)]
mod unix {
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{FAILED, Spec};

    /// The agent's end of the socket a launcher reads its spec from.
    #[derive(Debug)]
    pub struct Channel {
        ours: UnixStream,
    }

    impl Channel {
        /// A channel, and the launcher's end to give it as stdin.
        pub fn new() -> std::io::Result<(Channel, Stdio)> {
            let (ours, theirs) = UnixStream::pair()?;
            Ok((Channel { ours }, Stdio::from(OwnedFd::from(theirs))))
        }

        /// Sends `spec` and waits until the launcher `exec`s the program (`Ok`) or says
        /// why it could not (`Err`, one line; the launcher then exits 127). The
        /// `Command` that held the launcher's end must be dropped first: end-of-file only
        /// comes once every copy of that end is closed.
        pub async fn handshake(self, spec: &Spec) -> Result<(), String> {
            let bytes = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
            self.ours
                .set_nonblocking(true)
                .map_err(|e| format!("the launcher's socket: {e}"))?;
            let mut stream = tokio::net::UnixStream::from_std(self.ours)
                .map_err(|e| format!("the launcher's socket: {e}"))?;
            let talk = async {
                stream.write_all(&bytes).await?;
                stream.shutdown().await?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await?;
                Ok::<_, std::io::Error>(answer)
            };
            match tokio::time::timeout(Duration::from_secs(30), talk).await {
                Err(_) => Err("the launcher did not start the task within 30 s".into()),
                Ok(Err(e)) => Err(format!("the launcher did not answer: {e}")),
                Ok(Ok(answer)) if answer.is_empty() => Ok(()),
                Ok(Ok(answer)) => Err(answer.trim_end().to_owned()),
            }
        }
    }

    /// `meridian launch`: reads a [`Spec`] from stdin, prepares the process and `exec`s
    /// the task. Returns only on failure, after telling the agent; the caller exits
    /// [`FAILED`]. Must run before any thread is started.
    pub fn main() -> i32 {
        let channel = match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) if is_socket(&fd) => UnixStream::from(fd),
            Ok(_) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "meridian launch: stdin is not the agent's socket: `meridian launch` is started by the agent, not by hand"
                );
                return FAILED;
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "meridian launch: no stdin: {e}");
                return FAILED;
            }
        };
        let mut reply = match channel.try_clone() {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "meridian launch: {e}");
                return FAILED;
            }
        };
        let e = match run(channel) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        // The agent reads it; stderr (the task's log) keeps it for people.
        let _ = reply.write_all(e.as_bytes());
        let _ = writeln!(std::io::stderr(), "meridian launch: {e}");
        FAILED
    }

    fn is_socket(fd: &OwnedFd) -> bool {
        use std::os::unix::fs::FileTypeExt;
        fd.try_clone()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.file_type().is_socket())
    }

    fn run(mut channel: UnixStream) -> Result<std::convert::Infallible, String> {
        let mut bytes = Vec::new();
        channel.read_to_end(&mut bytes).map_err(|e| {
            format!("cannot read the launch spec from stdin ({e}): `meridian launch` is started by the agent, not by hand")
        })?;
        let spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the launch spec is not valid: {e}"))?;
        drop(bytes);
        let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| format!("stdin: {e}"))?;
        drop(null);
        if !spec.mounts.is_empty() {
            mounts(&spec)?;
        }
        rlimits(&spec.rlimits)?;
        close_on_exec();
        // The working directory is entered before the user changes: the directories above
        // the agent's data directory need not be searchable by task users. Then the
        // user must be able to use it.
        nix::unistd::chdir(&spec.working_dir).map_err(|e| {
            format!(
                "cannot enter the working directory {}: {e}",
                spec.working_dir.display()
            )
        })?;
        if let Some(ids) = &spec.user {
            use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
            let groups: Vec<Gid> = ids.groups.iter().map(|g| Gid::from_raw(*g)).collect();
            setgroups(&groups)
                .map_err(|e| format!("cannot set the groups {:?}: {e}", ids.groups))?;
            setgid(Gid::from_raw(ids.gid))
                .map_err(|e| format!("cannot switch to gid {}: {e}", ids.gid))?;
            setuid(Uid::from_raw(ids.uid))
                .map_err(|e| format!("cannot switch to uid {}: {e}", ids.uid))?;
            use nix::unistd::AccessFlags;
            nix::unistd::access(".", AccessFlags::R_OK | AccessFlags::X_OK).map_err(|e| {
                format!(
                    "uid {} cannot use the working directory {}: {e}",
                    ids.uid,
                    spec.working_dir.display()
                )
            })?;
        }
        let e = std::process::Command::new(&spec.program)
            .args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .exec();
        Err(format!("cannot run {:?}: {e}", spec.program))
    }

    #[cfg(target_os = "linux")]
    fn mounts(spec: &Spec) -> Result<(), String> {
        use nix::mount::{MsFlags, mount};
        use nix::sched::{CloneFlags, unshare};
        const NONE: Option<&str> = None;
        unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("cannot create a mount namespace for the volumes: {e}"))?;
        // Mounts made here stay here; the host's later mounts still show.
        mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_SLAVE, NONE)
            .map_err(|e| format!("cannot make / a slave mount: {e}"))?;
        for m in &spec.mounts {
            mount(
                Some(&m.source),
                &m.target,
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .map_err(|e| {
                format!(
                    "cannot bind {} at {}: {e}",
                    m.source.display(),
                    m.target.display()
                )
            })?;
            if m.read_only {
                mount(
                    NONE,
                    &m.target,
                    NONE,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    NONE,
                )
                .map_err(|e| format!("cannot make {} read-only: {e}", m.target.display()))?;
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn mounts(_: &Spec) -> Result<(), String> {
        Err("volumes for exec tasks need Linux (mount namespaces)".into())
    }

    fn rlimits(r: &api::task::Rlimits) -> Result<(), String> {
        use nix::sys::resource::{Resource, setrlimit};
        for (name, resource, value) in [
            ("nofile", Resource::RLIMIT_NOFILE, r.nofile),
            ("nproc", Resource::RLIMIT_NPROC, r.nproc),
            ("core", Resource::RLIMIT_CORE, r.core),
        ] {
            if let Some(v) = value {
                setrlimit(resource, v, v)
                    .map_err(|e| format!("cannot set rlimits.{name} to {v}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Marks every descriptor above 2 close-on-exec: whatever the agent inherited from
    /// its own parent without the flag does not reach the task.
    fn close_on_exec() {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
            // No /proc: the usual range.
            Err(_) => (3..1024).collect(),
        };
        for fd in fds.into_iter().filter(|fd| *fd > 2) {
            let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
    }
}
