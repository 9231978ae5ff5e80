//! A cgroup v2 group for the test processes of one role (a server, an agent and its tasks),
//! so that a test can find every process of it, kill them all at once, and match its
//! sockets in the firewall (`iptables -m cgroup --path`, [`crate::EtcdCut`]).
//!
//! A process joins its group before it runs: [`Cgroup::command`] starts `/bin/sh`, which
//! writes its own pid to `cgroup.procs` and then `exec`s the program, so the program keeps
//! that pid and every socket and child it makes belongs to the group (a socket's cgroup is
//! fixed when it is created; moving a process later would leave its connections behind).
//!
//! Needs root and a cgroup2 mount (pure v2 at `/sys/fs/cgroup`, or the hybrid layout's
//! `/sys/fs/cgroup/unified`); [`Cgroup::create`] panics naming what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One cgroup v2 directory, made for the test and removed (its processes killed) on drop.
#[derive(Debug)]
pub struct Cgroup {
    /// Absolute path of the directory.
    dir: PathBuf,
    /// Path below the cgroup2 root, as `iptables -m cgroup --path` takes it.
    relative: String,
}

impl Cgroup {
    /// Creates `name` (a relative path such as `meridian-chaos-123/server-1`) under the
    /// cgroup2 root, and its parents. An existing group is reused after its processes
    /// are killed (left over by a crashed test run).
    pub fn create(name: &str) -> Self {
        let root = cgroup2_root().unwrap_or_else(|| {
            panic!(
                "no cgroup2 hierarchy is mounted (looked in /proc/self/mounts): the chaos \
                 tests put each process in a cgroup v2 group to match its sockets with \
                 iptables and to kill its tasks; mount one (mount -t cgroup2 none \
                 /sys/fs/cgroup/unified) or run them on a machine that has one"
            )
        });
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {} (the chaos tests need root): {e}",
                dir.display()
            )
        });
        let group = Self {
            dir,
            relative: name.trim_matches('/').to_owned(),
        };
        group.kill_all();
        group
    }

    /// The group's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The group's path below the cgroup2 root (`iptables -m cgroup --path`).
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// A command that runs `program` inside this group (same pid: the shell `exec`s it).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(&self.dir, program)
    }

    /// The pids in the group now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// SIGKILLs every process of the group and waits (10 s at most) until it is empty.
    /// Uses `cgroup.kill` where the kernel has it, else signals each pid listed.
    pub fn kill_all(&self) {
        let kill_file = self.dir.join("cgroup.kill");
        if kill_file.exists() {
            let _ = std::fs::write(&kill_file, "1");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                signal_kill(pid);
            }
            if std::time::Instant::now() >= deadline {
                // A zombie whose parent has not reaped it yet still counts; leave it.
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A command that runs `program` in the cgroup directory `dir`.
pub(crate) fn command_in(dir: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(dir)
        .arg(program);
    cmd
}

#[cfg(unix)]
fn signal_kill(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

#[cfg(not(unix))]
fn signal_kill(_pid: i32) {}

/// Where the cgroup2 hierarchy is mounted, from `/proc/self/mounts`.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(point))
    })
}
