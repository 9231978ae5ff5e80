//! Shared setup of the binary's end-to-end tests: a `meridian server` child process on
//! loopback with its admin token, CLI invocations against it, and output helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_meridian");

/// A `meridian server` child process, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub token: String,
    /// Its data directory.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// A server on 127.0.0.1 with a fresh data directory, and `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_listening("127.0.0.1:0", extra)
    }

    /// [`start`](Self::start) on another address (`0.0.0.0:0` is beyond loopback).
    pub fn start_listening(listen: &str, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Self::launch(tmp.path(), listen, extra);
        s._tmp = Some(tmp);
        s
    }

    /// A server on 127.0.0.1 over an existing data directory (kept after the server).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Self {
        Self::launch(dir, "127.0.0.1:0", extra)
    }

    fn launch(dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut url = None;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(u) = line.split("listening on ").nth(1) {
                url = Some(u.trim().to_owned());
                break;
            }
            seen.push(line);
        }
        let url = url.unwrap_or_else(|| panic!("server did not start: {seen:?}"));
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .expect("admin token file")
            .trim()
            .to_owned();
        Self {
            child,
            url,
            token,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// The CLI against this server as `token`, stdout and stderr captured.
    pub fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("MERIDIAN_SERVER", &self.url)
            .env("MERIDIAN_TOKEN", token)
            .env("MERIDIAN_CONFIG", self.dir.join("cli-config.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the CLI against this server as the admin.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token, args)
    }

    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        self.cli_with(token, args, None)
    }

    /// Runs the CLI as `token`, writing `stdin` to it if given.
    pub fn cli_with(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        run(self.command(token, args), stdin)
    }

    /// Writes `yaml` to `dir/name` and applies it.
    pub fn apply(&self, dir: &Path, name: &str, yaml: &str) {
        let file = dir.join(name);
        std::fs::write(&file, yaml).expect("write manifest");
        ok(&self.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    }

    /// SIGTERM, then waits (20 s at most) for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` with stdout and stderr captured and `stdin` (if given) as its input.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("command runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("command output")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stdout of a command that must have succeeded.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// The stderr of a command that must have failed.
pub fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "command should have failed:\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

/// The repository's `examples/`.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}
