//! The agent's only window on its host: reading files and running commands.
//!
//! Every fact is discovered through a [`Probe`], so the parsers never touch the host and
//! [`crate::discover`] can be replayed on a [`RecordedProbe`] holding files and command
//! output recorded on real machines. [`HostProbe`] is the real one.
//!
//! Failures are absences: a file that cannot be read, a command that is missing, fails,
//! or outlives its timeout all answer `None`, and the fact that needed them stays unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads files and runs commands on a host.
pub trait Probe {
    /// The bytes of a file, or `None` if it cannot be read.
    fn read_bytes(&self, path: &str) -> Option<Vec<u8>>;

    /// Whether a file or directory exists.
    fn exists(&self, path: &str) -> bool;

    /// The standard output of `program args…` if it ran to success within the probe's
    /// timeout; `None` if it is missing, failed or was killed.
    fn run(&self, program: &str, args: &[&str]) -> Option<String>;

    /// Whether `program` is an executable file in a directory of `PATH`.
    fn on_path(&self, program: &str) -> bool;

    /// A file as text (lossy UTF-8), or `None` if it cannot be read.
    fn read(&self, path: &str) -> Option<String> {
        self.read_bytes(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// The real host, through `std::fs` and `std::process`.
#[derive(Debug, Clone)]
pub struct HostProbe {
    /// How long a command may run before it is killed (2 s by default).
    pub timeout: Duration,
}

impl Default for HostProbe {
    fn default() -> Self {
        HostProbe {
            timeout: Duration::from_secs(2),
        }
    }
}

impl Probe for HostProbe {
    fn read_bytes(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }

    fn run(&self, program: &str, args: &[&str]) -> Option<String> {
        run_with_timeout(program, args, self.timeout)
    }

    fn on_path(&self, program: &str) -> bool {
        let Some(path) = std::env::var_os("PATH") else {
            return false;
        };
        let names: &[&str] = if cfg!(windows) { &["", ".exe"] } else { &[""] };
        std::env::split_paths(&path).any(|dir| {
            names
                .iter()
                .any(|ext| dir.join(format!("{program}{ext}")).is_file())
        })
    }
}

/// Runs a command with stdin and stderr closed, reading stdout on a thread so a chatty
/// command never blocks on a full pipe, and kills it at the deadline.
fn run_with_timeout(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            tracing::debug!(program, %error, "probe: command did not start");
            return None;
        }
    };
    let deadline = Instant::now() + timeout;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout.read_to_end(&mut out).map(|_| out);
        let _ = tx.send(read);
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                tracing::warn!(program, ?args, ?timeout, "probe: command timed out; killed");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => {
                tracing::debug!(program, %error, "probe: waiting for command failed");
                let _ = child.kill();
                return None;
            }
        }
    };
    if !status.success() {
        tracing::debug!(program, ?args, %status, "probe: command failed");
        return None;
    }
    // A grandchild that inherited stdout can hold the pipe open after the command exits;
    // do not wait for it beyond the deadline.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let out = rx
        .recv_timeout(remaining.max(Duration::from_millis(100)))
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A host replayed from recordings: files, directories, command outputs and programs on
/// `PATH`. Anything not recorded is absent.
#[derive(Debug, Clone, Default)]
pub struct RecordedProbe {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    commands: BTreeMap<(String, Vec<String>), String>,
    programs: BTreeSet<String>,
}

impl RecordedProbe {
    pub fn new() -> Self {
        RecordedProbe::default()
    }

    /// Records a text file.
    pub fn file(self, path: &str, contents: &str) -> Self {
        self.bytes(path, contents.as_bytes())
    }

    /// Records a binary file.
    pub fn bytes(mut self, path: &str, contents: &[u8]) -> Self {
        self.files.insert(path.to_string(), contents.to_vec());
        self
    }

    /// Records a directory (directories above recorded files exist without this).
    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.insert(path.trim_end_matches('/').to_string());
        self
    }

    /// Records a command that succeeds with `stdout`; the program is also on `PATH`.
    pub fn command(mut self, program: &str, args: &[&str], stdout: &str) -> Self {
        let args = args.iter().map(|a| a.to_string()).collect();
        self.commands
            .insert((program.to_string(), args), stdout.to_string());
        self.programs.insert(program.to_string());
        self
    }

    /// Records a program on `PATH` (whose runs fail unless recorded with [`Self::command`]).
    pub fn program(mut self, program: &str) -> Self {
        self.programs.insert(program.to_string());
        self
    }
}

impl Probe for RecordedProbe {
    fn read_bytes(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).cloned()
    }

    fn exists(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        let below = |p: &String| {
            p.strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        self.files.keys().any(below) || self.dirs.iter().any(below)
    }

    fn run(&self, program: &str, args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.commands.get(&(program.to_string(), args)).cloned()
    }

    fn on_path(&self, program: &str) -> bool {
        self.programs.contains(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn host_probe_runs_commands_and_reads_files() {
        let probe = HostProbe::default();
        assert_eq!(probe.run("echo", &["hello"]).as_deref(), Some("hello\n"));
        assert_eq!(probe.run("false", &[]), None, "a failing command is absent");
        assert_eq!(probe.run("meridian-no-such-program", &[]), None);
        assert!(probe.on_path("sh"));
        assert!(!probe.on_path("meridian-no-such-program"));
        let dir = std::env::temp_dir();
        assert!(probe.exists(&dir.to_string_lossy()));
        assert!(probe.read("/meridian/no/such/file").is_none());
    }

    #[test]
    #[cfg(unix)]
    fn host_probe_kills_a_command_at_the_deadline() {
        let probe = HostProbe {
            timeout: Duration::from_millis(100),
        };
        assert_eq!(probe.run("sleep", &["30"]), None);
    }

    #[test]
    #[cfg(unix)]
    fn host_probe_reads_large_output() {
        // More than a pipe buffer (64 KiB): must not deadlock.
        let probe = HostProbe::default();
        let out = probe
            .run(
                "sh",
                &[
                    "-c",
                    "i=0; while [ $i -lt 20000 ]; do echo 0123456789; i=$((i+1)); done",
                ],
            )
            .unwrap();
        assert_eq!(out.len(), 20000 * 11);
    }

    #[test]
    fn recorded_probe_replays() {
        let probe = RecordedProbe::new()
            .file("/etc/os-release", "ID=debian\n")
            .dir("/sys/firmware/")
            .command("uname", &["-r"], "6.1.0\n")
            .program("qemu-system-x86_64");
        assert_eq!(
            probe.read("/etc/os-release").as_deref(),
            Some("ID=debian\n")
        );
        assert!(probe.exists("/etc"));
        assert!(probe.exists("/etc/"));
        assert!(!probe.exists("/et"));
        assert!(probe.exists("/sys/firmware"));
        assert!(!probe.exists("/sys/firmware/efi"));
        assert_eq!(probe.run("uname", &["-r"]).as_deref(), Some("6.1.0\n"));
        assert_eq!(probe.run("uname", &["-a"]), None);
        assert!(probe.on_path("uname"));
        assert!(probe.on_path("qemu-system-x86_64"));
        assert!(!probe.on_path("docker"));
    }
}
