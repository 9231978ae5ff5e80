//! The real binary as a child process: `meridian server` on a port the kernel picks, ready
//! once `/readyz` answers, killed on drop; and the CLI run against it.
//!
//! The binary's path is the caller's: `env!("CARGO_BIN_EXE_meridian")` exists only in the
//! CLI crate's tests, and a benchmark finds the binary its own way.

use std::ffi::OsString;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::wait::wait_until_async;

/// How long a server may take to print its address and then to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A `meridian server` child process; killed (SIGKILL) and reaped on drop, panics included.
/// Its data directory is removed with it when it was a temporary one, else kept (so that
/// a crash test can start another server on it).
pub struct ServerProcess {
    child: Child,
    bin: PathBuf,
    pub url: String,
    /// The admin token (`admin.token` in the data directory).
    pub token: String,
    /// Its data directory.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// How to start a [`ServerProcess`].
pub struct Builder {
    bin: PathBuf,
    listen: String,
    data_dir: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cgroup: Option<PathBuf>,
    log_file: Option<PathBuf>,
}

impl Builder {
    /// Run the server inside `group` (see [`crate::Cgroup::command`]): its pid is the
    /// server's, its sockets are the group's.
    pub fn cgroup(mut self, group: &crate::Cgroup) -> Self {
        self.cgroup = Some(group.dir().to_path_buf());
        self
    }

    /// Append everything the server prints on stderr to `path` (else it is discarded
    /// once the server listens).
    pub fn log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_path_buf());
        self
    }

    /// Listen on `addr` instead of `127.0.0.1:0` (plain HTTP with `--insecure-http` unless
    /// the arguments ask for TLS; `0.0.0.0:0` is beyond loopback: TLS).
    pub fn listen(mut self, addr: &str) -> Self {
        addr.clone_into(&mut self.listen);
        self
    }

    /// Use (and keep) `dir` as the data directory instead of a temporary one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// More arguments after `server --listen … --data-dir …`.
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for the server (`MERIDIAN_LOG` is `warn` unless set).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Spawns the server and returns once it answers `/readyz`; panics with its stderr if
    /// it exits or prints no address first.
    pub fn start(self) -> ServerProcess {
        let (tmp, dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = tempfile::tempdir().expect("a temporary data directory");
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mut cmd = match &self.cgroup {
            Some(dir) => crate::cgroup::command_in(dir, &self.bin),
            None => Command::new(&self.bin),
        };
        cmd.args(["server", "--listen", &self.listen, "--data-dir"])
            .arg(&dir);
        // Plain HTTP on loopback unless the caller asks for TLS (`--tls`, `--tls-cert`);
        // beyond loopback the server's default, TLS with a generated CA.
        let asks_tls = self.args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == "--tls" || a.starts_with("--tls-cert")
        });
        let loopback = self
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if loopback && !asks_tls {
            cmd.arg("--insecure-http");
        }
        cmd.args(&self.args)
            .env("MERIDIAN_LOG", "warn")
            .envs(self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{} server: {e}", self.bin.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        // Construct the guard before waiting, so that a failed start still kills the child.
        let mut server = ServerProcess {
            child,
            bin: self.bin,
            url: String::new(),
            token: String::new(),
            dir,
            _tmp: tmp,
        };
        let log = self.log_file.map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open the server log {}: {e}", path.display()))
        });
        server.url = listening_url(stderr, log);
        server.token = std::fs::read_to_string(server.dir.join("admin.token"))
            .expect("admin.token in the data directory")
            .trim()
            .to_owned();
        server.wait_ready();
        server
    }
}

/// Reads the server's stderr until "listening on URL" and keeps draining it afterwards (so
/// that the server never blocks on a full pipe); panics with what it printed if the server
/// exits or stays silent.
/// With `log`, every line is also appended to it.
fn listening_url(stderr: std::process::ChildStderr, mut log: Option<std::fs::File>) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = log.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => match line.split_once("listening on ") {
                Some((_, url)) => return url.trim().to_owned(),
                None => seen.push(line),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "the server exited before listening; stderr:\n{}",
                seen.join("\n")
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "the server printed no address within {START_TIMEOUT:?}; stderr:\n{}",
                seen.join("\n")
            ),
        }
    }
}

impl ServerProcess {
    /// A server on 127.0.0.1 with a temporary data directory and `args` after
    /// `meridian server`.
    pub fn start(bin: impl AsRef<Path>, args: &[&str]) -> Self {
        Self::builder(bin).args(args).start()
    }

    /// A server on 127.0.0.1 over the data directory `dir` (kept afterwards).
    pub fn start_in(bin: impl AsRef<Path>, dir: &Path, args: &[&str]) -> Self {
        Self::builder(bin).data_dir(dir).args(args).start()
    }

    pub fn builder(bin: impl AsRef<Path>) -> Builder {
        Builder {
            bin: bin.as_ref().to_path_buf(),
            listen: "127.0.0.1:0".to_owned(),
            data_dir: None,
            args: Vec::new(),
            env: Vec::new(),
            cgroup: None,
            log_file: None,
        }
    }

    /// The generated CA's certificate (when the server serves TLS).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A typed client as the admin.
    pub fn client(&self) -> client::Client {
        let ca = self
            .url
            .starts_with("https://")
            .then(|| std::fs::read(self.ca_file()).expect("the generated CA"));
        client::Client::new(&self.url, &self.token, ca.as_deref()).expect("a client")
    }

    /// Reports every node `Ready`, as agents would on joining (the scheduler places
    /// nothing on a node whose agent never reported); see [`crate::mark_ready`].
    pub fn mark_nodes_ready(&self) {
        let client = self.client();
        block_on_thread(async move {
            let nodes = client
                .list_all(api::kinds::NODE, None, &client::ListOptions::default())
                .await
                .expect("nodes");
            for n in nodes {
                let name = n["metadata"]["name"].as_str().expect("name").to_owned();
                crate::mark_ready(&client, &name).await;
            }
        });
    }

    /// Polls `/readyz` until it answers 200.
    fn wait_ready(&mut self) {
        let client = self.client();
        let what = format!("{}/readyz to answer 200", self.url);
        block_on_thread(async move {
            wait_until_async(START_TIMEOUT, &what, || client.get_text("/readyz")).await;
        });
    }

    /// GETs `path` as the admin; blocks (from sync tests and async ones alike).
    pub fn get_text(&self, path: &str) -> Result<String, client::ClientError> {
        let client = self.client();
        let path = path.to_owned();
        block_on_thread(async move { client.get_text(&path).await })
    }

    /// The value of the unlabelled metric `name` (e.g. `meridian_watches`) from
    /// `/metrics`; panics if it is missing.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get_text("/metrics").expect("/metrics");
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CLI (this server's binary) against this server as `token`, stdout and stderr
    /// captured. `MERIDIAN_CONFIG` points into the data directory, so no user's
    /// configuration is read.
    pub fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
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
    /// A join token for `site` (5 minutes), as `meridian node join-token create` prints it.
    pub fn join_token(&self, site: &str) -> String {
        crate::ok(&self.cli(&[
            "node",
            "join-token",
            "create",
            "--site",
            site,
            "--ttl",
            "5m",
        ]))
        .trim()
        .to_owned()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token, args)
    }

    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        self.cli_with(token, args, None)
    }

    /// Runs the CLI as `token`, writing `stdin` to it if given.
    pub fn cli_with(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        crate::run(self.command(token, args), stdin)
    }

    /// Writes `yaml` to `dir/name` and applies it; panics if that fails.
    pub fn apply(&self, dir: &Path, name: &str, yaml: &str) {
        let file = dir.join(name);
        std::fs::write(&file, yaml).expect("write manifest");
        crate::ok(&self.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    }

    /// SIGKILL, and reaps it: a crash.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// SIGTERM, then waits (20 s at most) for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate();
        crate::wait_until(STOP_TIMEOUT, "the server to exit on SIGTERM", || {
            self.child.try_wait().expect("wait for the server")
        })
    }

    #[cfg(unix)]
    fn terminate(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = i32::try_from(self.child.id()).expect("a pid");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM the server");
    }

    #[cfg(not(unix))]
    fn terminate(&mut self) {
        // No SIGTERM: the hard way is the only one.
        let _ = self.child.kill();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `future` to completion on a thread of its own with its own runtime, so that sync
/// helpers work from sync tests and from inside a tokio runtime alike (where `block_on`
/// would panic); a panic in it is the caller's.
fn block_on_thread<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
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

/// A `meridian agent` child process (the server's binary) against `server`, with its data
/// directory `dir`, a 300 ms heartbeat and a 2 s stop grace; killed (SIGKILL) on drop.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    pub fn start(server: &ServerProcess, dir: &Path, name: &str, join_token: Option<&str>) -> Self {
        let mut cmd = Command::new(&server.bin);
        cmd.args(["agent", "--server", &server.url, "--data-dir"])
            .arg(dir)
            .args(["--name", name, "--heartbeat", "300ms", "--grace", "2s"])
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = join_token {
            cmd.args(["--join-token", t]);
        }
        AgentProcess {
            child: cmd.spawn().expect("agent starts"),
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
