//! The `container` driver: an OCI image run by `podman` or `docker` through their command
//! line. Run end to end against Docker Engine 20.10 (fuse-overlayfs, cgroup v1) by
//! `crates/agent/tests/container.rs`.
//!
//! - **Start** ([`run_plan`]): `ENGINE run -d --name meridian-<allocation uid> --pull never
//!   --init --label meridian.allocation=<slot id> --label meridian.uid=<uid> --cpus X
//!   --memory Yb [--user UID:GID] [--env-file FILE] [-e NAME]… [-p HOST:TARGET/PROTO]…
//!   [-v HOST:MOUNT[:ro]]… [-v SECRETS:/run/secrets/meridian:ro] [--workdir DIR]
//!   [--ulimit nofile=N:N]… [--entrypoint PROGRAM] IMAGE [rest of command] [args]`.
//!   `task.command` overrides the image's entrypoint, as its field says.
//! - **Image**: never pulled. `ENGINE image inspect IMAGE` first; an image the node lacks
//!   fails the start with "image X is not on this node; load it with docker load or
//!   docker import" (`--pull never` on `run` says the same to the engine).
//! - **Environment**: no value is ever on a command line (the argv of every process is
//!   readable in `/proc` by every user). Values go into `container.env`, a 0600 file in
//!   the allocation's directory handed over with `--env-file` and removed as soon as
//!   `run` returns (the CLI reads it before asking the engine). A value the env-file
//!   format cannot carry (a line break, a carriage return, more than
//!   [`MAX_ENV_FILE_VALUE`] bytes) goes as `-e NAME` with the value in the CLI's own
//!   environment, unless NAME is one of the CLI's own variables ([`steers_the_cli`]),
//!   which is refused. Every engine command runs with a cleared environment plus the
//!   engine's own variables ([`CLI_ENV`]): nothing of the agent's environment reaches the
//!   container. `MERIDIAN_SECRETS_DIR` is rewritten to [`SECRETS_MOUNT`], where the
//!   allocation's secret files are mounted read-only.
//! - **User**: `--user UID:GID` from [`Launch::user`]; without one the image's user
//!   stands (the start message says so).
//! - **Ports**: `-p HOST:TARGET/PROTO`, published on all the node's addresses (the
//!   engine's default, as an `exec` task listening on `0.0.0.0`): endpoints give other
//!   services `node address:port` and health checks dial `127.0.0.1:port`.
//! - **Init**: `--init` (the engine's `docker-init`/`catatonit`): PID 1 of a container
//!   ignores SIGTERM unless it installs a handler, so without it `stop` would always wait
//!   out the grace period and SIGKILL an ordinary program; with it the task sees SIGTERM
//!   as an `exec` task does, and zombies are reaped.
//! - **Logs**: `ENGINE logs -f NAME` streams the container's stdout and stderr into the
//!   allocation's `stdout.log` and `stderr.log` (rotated like an `exec` task's). After
//!   an agent restart the follower starts again after the last line it wrote: it follows
//!   with `--timestamps`, strips them, and records the last one per stream ([`LogMarks`]).
//! - **Status**: `ENGINE inspect --format '{{.State.Running}} {{.State.ExitCode}}' NAME`
//!   ([`parse_inspect`]).
//! - **Stop**: `ENGINE stop -t <grace seconds> NAME` (the engine sends SIGTERM, then
//!   SIGKILL; exit code 137 means it took SIGKILL); **cleanup**: `ENGINE rm -f NAME`.
//! - **Adoption**: the container's name comes from the allocation's uid and is in the
//!   task's [`Record`], so a restarted agent finds it again (`inspect` says it runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use api::kinds::{Driver as DriverKind, Task};

use super::exec::{LogFile, create_dir};
use super::{Driver, DriverError, Handle, Launch, Record, Slot, Started, Stopped};

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    /// The program.
    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }
}

/// Time limit of `inspect`, `rm` and `run -d` (no pull: the image is local).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a container sees the allocation's secret files (`<secret>/<key>`).
pub const SECRETS_MOUNT: &str = "/run/secrets/meridian";
/// The env file's name in the allocation's directory (present only during `run`).
pub const ENV_FILE: &str = "container.env";
/// Longest value written to the env file: the CLI reads it line by line with a 64 KiB
/// line buffer.
pub const MAX_ENV_FILE_VALUE: usize = 60 * 1024;
/// Rotation limit of the log files of an adopted container (the agent's default).
pub const ADOPTED_LOG_LIMIT: u64 = 10 * 1024 * 1024;

/// The variables of the agent's environment that the engine's CLI keeps (where the
/// engine is, its configuration, where to find its helpers); everything else is cleared.
pub const CLI_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_API_VERSION",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "REGISTRY_AUTH_FILE",
];

/// Whether a variable of this name, set in the CLI's environment, would change what the
/// CLI does (which engine it talks to, its configuration).
pub fn steers_the_cli(name: &str) -> bool {
    CLI_ENV.contains(&name) || name.starts_with("DOCKER_") || name.starts_with("CONTAINER")
}

/// The container's name for an allocation.
pub fn container_name(uid: &str) -> String {
    format!("meridian-{uid}")
}

/// `--cpus` from millicores: `0.5`, `2`, `1.25`.
pub fn cpus_arg(millis: u64) -> String {
    let whole = millis / 1000;
    let frac = millis % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

/// How the task's environment reaches the container.
#[derive(Default, PartialEq, Eq)]
pub struct EnvDelivery {
    /// The env file's text (`NAME=value` lines); empty when every value goes otherwise.
    pub file: String,
    /// Variables passed as `-e NAME`, their values in the CLI's environment.
    pub through_cli: BTreeMap<String, String>,
}

impl std::fmt::Debug for EnvDelivery {
    /// Names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvDelivery")
            .field("file_lines", &self.file.lines().count())
            .field("through_cli", &self.through_cli.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The container's environment: the launch's, with `MERIDIAN_SECRETS_DIR` pointing where
/// the container sees the secret files.
pub fn container_env(launch: &Launch) -> BTreeMap<String, String> {
    let mut env = launch.env.clone();
    if launch.secrets_dir.is_some() || env.contains_key("MERIDIAN_SECRETS_DIR") {
        env.insert("MERIDIAN_SECRETS_DIR".into(), SECRETS_MOUNT.into());
    }
    env
}

/// Splits `env` between the env file and the CLI's environment (see the module doc).
/// Errors name the variable, never its value.
pub fn env_delivery(
    env: &BTreeMap<String, String>,
    engine: Engine,
) -> Result<EnvDelivery, DriverError> {
    let mut out = EnvDelivery::default();
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.chars().any(char::is_whitespace) {
            return Err(DriverError::Failed(format!(
                "task.env {name:?}: not a name a container's environment can hold"
            )));
        }
        if value.contains('\0') {
            return Err(DriverError::Failed(format!(
                "task.env {name}: its value holds a NUL byte, which no environment can hold"
            )));
        }
        let fits_the_file = !value.contains(['\n', '\r']) && value.len() <= MAX_ENV_FILE_VALUE;
        if fits_the_file {
            out.file.push_str(name);
            out.file.push('=');
            out.file.push_str(value);
            out.file.push('\n');
        } else if steers_the_cli(name) {
            return Err(DriverError::Failed(format!(
                "task.env {name}: its value has a line break or is longer than {MAX_ENV_FILE_VALUE} bytes, \
                 so it cannot go through {}'s --env-file, and {name} is one of the {} command's own \
                 variables, so it cannot go through its environment either: rename the variable or \
                 deliver the value as a secret file (task.secrets)",
                engine.program(),
                engine.program()
            )));
        } else {
            out.through_cli.insert(name.clone(), value.clone());
        }
    }
    Ok(out)
}

/// What `ENGINE run` gets: its arguments (without the program; no value of the
/// environment) and the environment to deliver.
#[derive(Debug)]
pub struct RunPlan {
    pub args: Vec<String>,
    pub env: EnvDelivery,
    /// The image, for the `image inspect` check.
    pub image: String,
}

/// A host path as `-v` takes it (its syntax splits on `:`).
fn bind_source(what: &str, path: &Path) -> Result<String, DriverError> {
    let text = path
        .to_str()
        .ok_or_else(|| DriverError::Failed(format!("{what}: the path {path:?} is not UTF-8")))?;
    if text.contains(':') || !path.is_absolute() {
        return Err(DriverError::Failed(format!(
            "{what}: {text:?} cannot be bound into a container (it must be absolute and hold no ':')"
        )));
    }
    Ok(text.to_owned())
}

/// A path inside the container, as `-v` and `--workdir` take it.
fn container_path(what: &str, path: &str) -> Result<String, DriverError> {
    if !path.starts_with('/') || path.contains(':') {
        return Err(DriverError::Failed(format!(
            "{what}: {path:?} must be an absolute path inside the container, without ':'"
        )));
    }
    Ok(path.to_owned())
}

/// The `ENGINE run` of `task` in `slot` as `launch` says it sees the world; `env_file`
/// is where the env file will be.
pub fn run_plan(
    engine: Engine,
    task: &Task,
    launch: &Launch,
    slot: &Slot,
    env_file: &Path,
) -> Result<RunPlan, DriverError> {
    let image = task
        .image
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .ok_or(DriverError::Missing(
            DriverKind::Container,
            "spec.task.image",
        ))?;
    let name = container_name(&slot.uid);
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| (*s).to_owned()));
    push(&["run", "-d", "--name", &name, "--pull", "never", "--init"]);
    push(&["--label", &format!("meridian.allocation={}", slot.id)]);
    push(&["--label", &format!("meridian.uid={}", slot.uid)]);
    let r = &task.resources;
    if r.cpu.millis() > 0 {
        push(&["--cpus", &cpus_arg(r.cpu.millis())]);
    }
    if r.memory.bytes() > 0 {
        push(&["--memory", &format!("{}b", r.memory.bytes())]);
    }
    if let Some(user) = &launch.user {
        push(&["--user", &format!("{}:{}", user.uid, user.gid)]);
    }
    let env = env_delivery(&container_env(launch), engine)?;
    if !env.file.is_empty() {
        let file = bind_source("the env file", env_file)?;
        push(&["--env-file", &file]);
    }
    for name in env.through_cli.keys() {
        push(&["-e", name]);
    }
    for p in &launch.ports {
        push(&[
            "-p",
            &format!("{}:{}/{}", p.port, p.target, p.protocol.as_str()),
        ]);
    }
    for v in &launch.volumes {
        let what = format!("volume {}", v.name);
        let mut spec = format!(
            "{}:{}",
            bind_source(&what, &v.host_path)?,
            container_path(&what, &v.mount_path)?
        );
        if v.read_only {
            spec.push_str(":ro");
        }
        push(&["-v", &spec]);
    }
    if let Some(dir) = &launch.secrets_dir {
        let source = bind_source("the secrets directory", dir)?;
        push(&["-v", &format!("{source}:{SECRETS_MOUNT}:ro")]);
    }
    if let Some(wd) = &task.working_dir {
        push(&["--workdir", &container_path("task.workingDir", wd)?]);
    }
    let limits = &launch.rlimits;
    for (what, value) in [
        ("nofile", limits.nofile),
        ("nproc", limits.nproc),
        ("core", limits.core),
    ] {
        if let Some(n) = value {
            push(&["--ulimit", &format!("{what}={n}:{n}")]);
        }
    }
    let mut command = task.command.iter();
    if let Some(entrypoint) = command.next() {
        push(&["--entrypoint", entrypoint]);
    }
    push(&[image]);
    args.extend(command.cloned());
    args.extend(task.args.iter().cloned());
    Ok(RunPlan {
        args,
        env,
        image: image.to_owned(),
    })
}

/// The arguments of `ENGINE stop`.
pub fn stop_args(name: &str, grace: Duration) -> Vec<String> {
    // Whole seconds, rounded up: a grace period is never shortened.
    let secs = grace.as_millis().div_ceil(1000);
    vec!["stop".into(), "-t".into(), secs.to_string(), name.into()]
}

/// The arguments of `ENGINE inspect`.
pub fn inspect_args(name: &str) -> Vec<String> {
    vec![
        "inspect".into(),
        "--format".into(),
        "{{.State.Running}} {{.State.ExitCode}}".into(),
        name.into(),
    ]
}

/// What `inspect` says: `Some(None)` running, `Some(Some(code))` exited, `None` not
/// understood.
pub fn parse_inspect(out: &str) -> Option<Option<i32>> {
    let mut parts = out.split_whitespace();
    let running = parts.next()?;
    let code: i32 = parts.next()?.parse().ok()?;
    match running {
        "true" => Some(None),
        "false" => Some(Some(code)),
        _ => None,
    }
}

/// A container as `inspect` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Running,
    Exited(i32),
    /// The engine does not know it (removed).
    Gone,
    /// The engine did not answer in time, or said something else: nothing is known.
    NoAnswer(String),
}

/// Whether an engine's error says the container does not exist (docker: "No such
/// container" / "No such object"; podman: "no such container").
pub fn is_no_such_container(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("no such container") || e.contains("no such object")
}

/// The arguments of `ENGINE logs -f --timestamps`, from `since` (RFC 3339) when resuming.
/// Each line comes prefixed with the engine's timestamp of it, which the follower strips
/// and records ([`LogMarks`]).
pub fn logs_args(name: &str, since: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "logs".to_owned(),
        "-f".to_owned(),
        "--timestamps".to_owned(),
    ];
    if let Some(since) = since {
        args.extend(["--since".to_owned(), since.to_owned()]);
    }
    args.push(name.to_owned());
    args
}

/// The engine's timestamp of the last line the follower wrote to each log file, kept
/// beside the logs (`.stdout.logmark`, `.stderr.logmark`), so that an adopting agent
/// resumes exactly after it: `--since` the older of the two marks, and each stream skips
/// what its own mark says it has. (A file's modification time would not do: it comes
/// from a coarser clock than the engine's, so the last line came again.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogMarks {
    pub stdout: Option<jiff::Timestamp>,
    pub stderr: Option<jiff::Timestamp>,
}

impl LogMarks {
    fn path(dir: &Path, stream: &str) -> PathBuf {
        dir.join(format!(".{stream}.logmark"))
    }

    /// The marks recorded in `dir`.
    pub fn read(dir: &Path) -> Self {
        let read = |stream| {
            std::fs::read_to_string(Self::path(dir, stream))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Self {
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }

    /// Where to resume: the older mark; from the start (`None`) when a stream has none,
    /// since such a stream has written nothing yet.
    pub fn since(&self) -> Option<String> {
        Some(self.stdout?.min(self.stderr?).to_string())
    }

    fn is_empty(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }
}

/// When the allocation's log files were last written (RFC 3339, nanoseconds), if any:
/// where to resume for logs written before the follower kept marks.
fn last_log_write(dir: &Path) -> Option<String> {
    ["stdout.log", "stderr.log"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok()?.modified().ok())
        .max()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string())
}

/// Splits a line of `logs --timestamps` into the engine's timestamp and the task's bytes.
pub fn split_timestamp(line: &[u8]) -> (Option<jiff::Timestamp>, &[u8]) {
    let Some(space) = line.iter().position(|b| *b == b' ') else {
        return (None, line);
    };
    match std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    {
        Some(t) => (Some(t), &line[space + 1..]),
        None => (None, line),
    }
}

/// Copies one stream of `logs --timestamps` into its log file without the timestamps,
/// skipping lines at or before `after` (already written), and records the last line's
/// timestamp in `stream`'s mark after each chunk is written.
async fn capture_stamped(
    pipe: impl tokio::io::AsyncRead + Unpin,
    dir: PathBuf,
    stream: &'static str,
    limit: u64,
    after: Option<jiff::Timestamp>,
) {
    use tokio::io::AsyncBufReadExt;
    let Some(mut file) = LogFile::open(dir.join(format!("{stream}.log")), limit).await else {
        return;
    };
    let mark = LogMarks::path(&dir, stream);
    let mut reader = tokio::io::BufReader::with_capacity(16 * 1024, pipe);
    let mut line = Vec::new();
    let mut chunk = Vec::new();
    let mut last = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let (at, text) = split_timestamp(&line);
        if at.is_some() && at <= after {
            continue;
        }
        chunk.extend_from_slice(text);
        last = at.or(last);
        // Write what has arrived once the engine pauses (or every 16 KiB), then the mark.
        if reader.buffer().is_empty() || chunk.len() >= 16 * 1024 {
            if file.write(&chunk).await.is_err() {
                return;
            }
            chunk.clear();
            file.flush().await;
            if let Some(t) = last {
                let _ = std::fs::write(&mark, t.to_string());
            }
        }
    }
    if !chunk.is_empty() && file.write(&chunk).await.is_ok() {
        file.flush().await;
        if let Some(t) = last {
            let _ = std::fs::write(&mark, t.to_string());
        }
    }
}

/// The `container` driver.
#[derive(Debug, Clone)]
pub struct ContainerDriver {
    pub engine: Engine,
}

impl ContainerDriver {
    pub fn new(engine: Engine) -> Self {
        ContainerDriver { engine }
    }

    /// The engine's CLI with a cleared environment plus its own variables ([`CLI_ENV`]).
    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.engine.program());
        cmd.env_clear()
            .envs(
                CLI_ENV
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            )
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs the engine with `args` (and `env` added to its environment): its stdout if
    /// it succeeded in time, else what went wrong.
    async fn run_engine(
        &self,
        args: &[String],
        env: &BTreeMap<String, String>,
        limit: Duration,
    ) -> Result<String, String> {
        let mut cmd = self.command();
        cmd.args(args).envs(env);
        let program = self.engine.program();
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .map_err(|_| format!("{program} {} took more than {limit:?}", args[0]))?
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{program} {} failed: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    async fn engine(&self, args: &[String], limit: Duration) -> Result<String, String> {
        self.run_engine(args, &BTreeMap::new(), limit).await
    }

    /// `Some(None)` running, `Some(Some(code))` exited, `None` unknown (gone or no answer).
    async fn state(&self, name: &str) -> Option<Option<i32>> {
        match self.inspect(name).await {
            State::Running => Some(None),
            State::Exited(code) => Some(Some(code)),
            State::Gone | State::NoAnswer(_) => None,
        }
    }

    /// What the engine says about the container.
    async fn inspect(&self, name: &str) -> State {
        match self.engine(&inspect_args(name), INSPECT_TIMEOUT).await {
            Ok(out) => match parse_inspect(&out) {
                Some(None) => State::Running,
                Some(Some(code)) => State::Exited(code),
                None => State::NoAnswer(format!("cannot read {out:?}")),
            },
            Err(e) if is_no_such_container(&e) => State::Gone,
            Err(e) => State::NoAnswer(e),
        }
    }

    /// Removes the container, whatever its state.
    async fn remove(&self, name: &str) {
        let _ = self
            .engine(&["rm".into(), "-f".into(), name.into()], INSPECT_TIMEOUT)
            .await;
    }

    /// Fails unless the image is on the node (nothing is pulled).
    async fn image_present(&self, image: &str) -> Result<(), DriverError> {
        let args = ["image", "inspect", "--format", "{{.Id}}", image].map(String::from);
        self.engine(&args, INSPECT_TIMEOUT).await.map(drop).map_err(|e| {
            let program = self.engine.program();
            DriverError::Failed(if e.contains("No such image") || e.contains("image not known") {
                format!(
                    "image {image} is not on this node; load it with {program} load or {program} import (the container driver pulls nothing)"
                )
            } else {
                e
            })
        })
    }

    /// Streams the container's output into the allocation's log files: from the start,
    /// or after what `marks` say was written (an adopted container).
    fn follow_logs(
        &self,
        name: &str,
        slot_dir: &Path,
        log_limit: u64,
        since: Option<&str>,
        marks: LogMarks,
    ) -> Option<tokio::process::Child> {
        let mut cmd = self.command();
        cmd.args(logs_args(name, since))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().ok()?;
        let dir = slot_dir.to_path_buf();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(capture_stamped(
                out,
                dir.clone(),
                "stdout",
                log_limit,
                marks.stdout,
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(capture_stamped(err, dir, "stderr", log_limit, marks.stderr));
        }
        Some(child)
    }
}

/// Writes the env file, readable by its owner only.
fn write_env_file(path: &Path, text: &str) -> Result<(), DriverError> {
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
    let mut file = options.open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

fn container_handle(record: Record, dir: &Path) -> Handle {
    Handle {
        record,
        dir: dir.to_path_buf(),
        child: None,
        cgroups: super::exec::Cgroups::default(),
        log_follower: None,
    }
}

/// What the start message says about the launch.
fn describe(engine: Engine, name: &str, task: &Task, launch: &Launch) -> String {
    let user = match &launch.user {
        Some(u) => format!("user {}:{}", u.uid, u.gid),
        None => "the image's user (no task user given)".to_owned(),
    };
    let ports: Vec<String> = launch
        .ports
        .iter()
        .map(|p| format!("{}->{}/{}", p.port, p.target, p.protocol.as_str()))
        .collect();
    format!(
        "container {name} ({}): limits enforced by the engine: cpus {}, memory {} bytes; {user}; ports [{}]",
        engine.program(),
        cpus_arg(task.resources.cpu.millis()),
        task.resources.memory.bytes(),
        ports.join(", ")
    )
}

#[async_trait]
impl Driver for ContainerDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Container
    }

    async fn start(
        &self,
        task: &Task,
        launch: &Launch,
        slot: &Slot,
    ) -> Result<Started, DriverError> {
        let name = container_name(&slot.uid);
        let env_file: PathBuf = slot.dir.join(ENV_FILE);
        let plan = run_plan(self.engine, task, launch, slot, &env_file)?;
        create_dir(&slot.dir)?;
        self.image_present(&plan.image).await?;
        // A container of an earlier run of this allocation would hold the name.
        self.remove(&name).await;
        if !plan.env.file.is_empty() {
            write_env_file(&env_file, &plan.env.file)?;
        }
        let ran = self
            .run_engine(&plan.args, &plan.env.through_cli, RUN_TIMEOUT)
            .await;
        // The CLI read the file before asking the engine: its values need not stay.
        let _ = std::fs::remove_file(&env_file);
        if let Err(e) = ran {
            // `run` may have created the container before failing (a port taken).
            self.remove(&name).await;
            return Err(DriverError::Failed(e));
        }
        let mut handle = container_handle(
            Record {
                driver: DriverKind::Container,
                pid: 0,
                start_time: 0,
                container: Some(name.clone()),
            },
            &slot.dir,
        );
        handle.log_follower =
            self.follow_logs(&name, &slot.dir, slot.log_limit, None, LogMarks::default());
        let message = describe(self.engine, &name, task, launch);
        Ok(Started { handle, message })
    }

    async fn adopt(&self, record: &Record, dir: &Path) -> Option<Handle> {
        let name = record.container.as_deref()?;
        match self.inspect(name).await {
            State::Exited(_) | State::Gone => None,
            // Running, or no answer yet: the container was running when the last agent
            // saw it; `exited` asks again on every tick.
            state => {
                if let State::NoAnswer(e) = &state {
                    tracing::warn!(container = %name, error = %e, "adopting a container the engine did not describe");
                }
                let mut handle = container_handle(record.clone(), dir);
                // What the container wrote while no agent listened, and on.
                // (Logs written before the follower kept marks: from the files' last write.)
                let marks = LogMarks::read(dir);
                let since = if marks.is_empty() {
                    last_log_write(dir)
                } else {
                    marks.since()
                };
                handle.log_follower =
                    self.follow_logs(name, dir, ADOPTED_LOG_LIMIT, since.as_deref(), marks);
                Some(handle)
            }
        }
    }

    async fn exited(&self, handle: &mut Handle) -> Option<Option<i32>> {
        let name = handle.record.container.clone().unwrap_or_default();
        match self.inspect(&name).await {
            State::Running => None,
            State::Exited(code) => Some(Some(code)),
            // Removed behind the agent's back.
            State::Gone => Some(None),
            // A slow or restarting engine is no exit: removing and restarting a container
            // that may well run would be worse than asking again on the next tick.
            State::NoAnswer(e) => {
                tracing::warn!(container = %name, error = %e, "the container engine did not say whether the container runs");
                None
            }
        }
    }

    async fn stop(&self, handle: &mut Handle, grace: Duration) -> Stopped {
        let name = handle.record.container.clone().unwrap_or_default();
        if !matches!(self.state(&name).await, Some(None)) {
            return Stopped::AlreadyExited;
        }
        let limit = grace + INSPECT_TIMEOUT;
        match self.engine(&stop_args(&name, grace), limit).await {
            Ok(_) => match self.state(&name).await {
                // The engine's SIGKILL after -t shows as exit code 137.
                Some(Some(137)) => Stopped::Killed,
                _ => Stopped::Terminated,
            },
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "stop failed; removing it by force");
                self.remove(&name).await;
                Stopped::Killed
            }
        }
    }

    async fn cleanup(&self, handle: &mut Handle) {
        if let Some(mut f) = handle.log_follower.take() {
            // `logs -f` ends with the container; give it a moment to flush the last lines.
            if tokio::time::timeout(Duration::from_secs(2), f.wait())
                .await
                .is_err()
            {
                let _ = f.kill().await;
            }
        }
        if let Some(name) = handle.record.container.clone() {
            self.remove(&name).await;
        }
        let _ = std::fs::remove_file(handle.dir.join(ENV_FILE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{BoundVolume, Identity};
    use api::task::{PortBinding, Protocol, Rlimits};
    use serde_json::json;

    fn task(v: serde_json::Value) -> Task {
        serde_json::from_value(v).unwrap()
    }

    fn slot() -> Slot {
        Slot {
            dir: "/data/allocations/default_web-0".into(),
            id: "default_web-0-1234".into(),
            uid: "1234".into(),
            log_limit: 1024,
        }
    }

    fn plan(t: &Task, launch: &Launch) -> Result<RunPlan, DriverError> {
        run_plan(
            Engine::Docker,
            t,
            launch,
            &slot(),
            Path::new("/data/allocations/default_web-0/container.env"),
        )
    }

    #[test]
    fn run_command_line() {
        let t = task(json!({
            "driver": "container", "image": "registry.example.com/app:1.2",
            "command": ["/bin/server", "--port"], "args": ["8080"],
            "env": {"A": "1", "B": "x=y"}, "workingDir": "/srv",
            "resources": {"cpu": "500m", "memory": "256Mi"},
        }));
        let launch = Launch {
            env: [("A", "1"), ("B", "x=y")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            ..Launch::default()
        };
        let p = plan(&t, &launch).unwrap();
        assert_eq!(
            p.args.join(" "),
            "run -d --name meridian-1234 --pull never --init \
             --label meridian.allocation=default_web-0-1234 --label meridian.uid=1234 \
             --cpus 0.5 --memory 268435456b \
             --env-file /data/allocations/default_web-0/container.env --workdir /srv \
             --entrypoint /bin/server registry.example.com/app:1.2 --port 8080"
        );
        assert_eq!(p.env.file, "A=1\nB=x=y\n");
        assert!(p.env.through_cli.is_empty());
        assert_eq!(p.image, "registry.example.com/app:1.2");
        // Without a command the image's entrypoint runs, with the args; no env, no file.
        let t = task(json!({
            "driver": "container", "image": "nginx", "args": ["-g", "daemon off;"],
            "resources": {"cpu": "2", "memory": "1Gi"},
        }));
        let args = plan(&t, &Launch::default()).unwrap().args;
        assert_eq!(
            args[11..].join(" "),
            "--cpus 2 --memory 1073741824b nginx -g daemon off;"
        );
        assert_eq!(args.last().map(String::as_str), Some("daemon off;"));
        let t = task(json!({"driver": "container", "resources": {"cpu": "1", "memory": "1Mi"}}));
        assert_eq!(
            plan(&t, &Launch::default()).unwrap_err().to_string(),
            "the container driver needs spec.task.image"
        );
    }

    #[test]
    fn what_the_task_sees_is_on_the_command_line_without_values() {
        let t = task(json!({
            "driver": "container", "image": "app:1",
            "resources": {"cpu": "1", "memory": "64Mi"},
        }));
        let launch = Launch {
            env: [
                ("PASSWORD", "hunter2"),
                ("PEM", "-----BEGIN-----\nabc\n-----END-----"),
                ("MERIDIAN_SECRETS_DIR", "/data/allocations/x/secrets"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
            user: Some(Identity {
                name: Some("app".into()),
                uid: 1000,
                gid: 1001,
                groups: Vec::new(),
            }),
            ports: vec![
                PortBinding {
                    name: "http".into(),
                    port: 31000,
                    target: 8080,
                    protocol: Protocol::Tcp,
                },
                PortBinding {
                    name: "dns".into(),
                    port: 31001,
                    target: 53,
                    protocol: Protocol::Udp,
                },
            ],
            volumes: vec![
                BoundVolume {
                    name: "data".into(),
                    host_path: "/srv/data".into(),
                    mount_path: "/data".into(),
                    read_only: false,
                },
                BoundVolume {
                    name: "conf".into(),
                    host_path: "/srv/conf".into(),
                    mount_path: "/etc/app".into(),
                    read_only: true,
                },
            ],
            secrets_dir: Some("/data/allocations/x/secrets".into()),
            rlimits: Rlimits {
                nofile: Some(4096),
                nproc: None,
                core: Some(0),
            },
            ..Launch::default()
        };
        let p = plan(&t, &launch).unwrap();
        let line = p.args.join(" ");
        assert!(
            line.contains(
                "--user 1000:1001 --env-file /data/allocations/default_web-0/container.env -e PEM \
                 -p 31000:8080/tcp -p 31001:53/udp -v /srv/data:/data -v /srv/conf:/etc/app:ro \
                 -v /data/allocations/x/secrets:/run/secrets/meridian:ro \
                 --ulimit nofile=4096:4096 --ulimit core=0:0 app:1"
            ),
            "{line}"
        );
        // No value on the command line; the secrets directory is where the container sees it.
        assert!(
            !line.contains("hunter2") && !line.contains("BEGIN"),
            "{line}"
        );
        assert_eq!(
            p.env.file,
            "MERIDIAN_SECRETS_DIR=/run/secrets/meridian\nPASSWORD=hunter2\n"
        );
        assert_eq!(p.env.through_cli.keys().collect::<Vec<_>>(), ["PEM"]);
        // Debug output names variables, never values.
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("PEM"),
            "{debug}"
        );
    }

    #[test]
    fn values_that_fit_nowhere_are_refused_by_name() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let e = env_delivery(&env("DOCKER_HOST", "tcp://x\n"), Engine::Docker).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("task.env DOCKER_HOST: its value has a line break"),
            "{text}"
        );
        assert!(!text.contains("tcp://x"), "{text}");
        // A one-line value of such a name is fine: it goes in the file.
        assert_eq!(
            env_delivery(&env("PATH", "/app/bin:/bin"), Engine::Docker)
                .unwrap()
                .file,
            "PATH=/app/bin:/bin\n"
        );
        let long = "x".repeat(MAX_ENV_FILE_VALUE + 1);
        let d = env_delivery(&env("BLOB", &long), Engine::Podman).unwrap();
        assert!(d.file.is_empty() && d.through_cli.contains_key("BLOB"));
        assert!(env_delivery(&env("A B", "1"), Engine::Docker).is_err());
        assert!(env_delivery(&env("A", "a\0b"), Engine::Docker).is_err());
        assert!(steers_the_cli("DOCKER_CERT_PATH") && steers_the_cli("CONTAINERS_CONF"));
        assert!(!steers_the_cli("MERIDIAN_TOKEN"));
    }

    #[test]
    fn paths_a_bind_cannot_take_are_refused() {
        let t = task(
            json!({"driver": "container", "image": "a", "workingDir": "srv",
                            "resources": {"cpu": "1", "memory": "1Mi"}}),
        );
        let e = plan(&t, &Launch::default()).unwrap_err().to_string();
        assert!(
            e.starts_with("task.workingDir: \"srv\" must be an absolute path"),
            "{e}"
        );
        let t = task(json!({"driver": "container", "image": "a",
                            "resources": {"cpu": "1", "memory": "1Mi"}}));
        let launch = Launch {
            volumes: vec![BoundVolume {
                name: "odd".into(),
                host_path: "/srv/a:b".into(),
                mount_path: "/x".into(),
                read_only: false,
            }],
            ..Launch::default()
        };
        let e = plan(&t, &launch).unwrap_err().to_string();
        assert!(
            e.starts_with("volume odd: \"/srv/a:b\" cannot be bound"),
            "{e}"
        );
    }

    #[test]
    fn cpus_are_decimal_cores() {
        assert_eq!(cpus_arg(500), "0.5");
        assert_eq!(cpus_arg(1250), "1.25");
        assert_eq!(cpus_arg(2000), "2");
        assert_eq!(cpus_arg(1), "0.001");
    }

    #[test]
    fn stop_inspect_and_logs() {
        assert_eq!(
            stop_args("n", Duration::from_millis(1500)).join(" "),
            "stop -t 2 n"
        );
        assert_eq!(stop_args("n", Duration::from_secs(10))[2], "10");
        assert_eq!(
            inspect_args("n")[2],
            "{{.State.Running}} {{.State.ExitCode}}"
        );
        assert_eq!(parse_inspect("true 0\n"), Some(None));
        assert_eq!(parse_inspect("false 3\n"), Some(Some(3)));
        assert_eq!(parse_inspect("Error: no such container"), None);
        assert_eq!(parse_inspect(""), None);
        assert!(is_no_such_container(
            "docker inspect failed: Error: No such object: meridian-x"
        ));
        assert!(is_no_such_container(
            "docker rm failed: Error response from daemon: No such container: meridian-x"
        ));
        assert!(is_no_such_container(
            "podman inspect failed: Error: no such container meridian-x"
        ));
        assert!(!is_no_such_container("docker inspect took more than 10s"));
        assert!(!is_no_such_container(
            "docker inspect failed: Cannot connect to the Docker daemon"
        ));
        assert_eq!(logs_args("n", None).join(" "), "logs -f --timestamps n");
        assert_eq!(
            logs_args("n", Some("2026-12-06T08:00:00.5Z")).join(" "),
            "logs -f --timestamps --since 2026-12-06T08:00:00.5Z n"
        );
    }

    #[test]
    fn engine_timestamps_are_split_from_the_task_output() {
        let (at, text) = split_timestamp(b"2026-12-06T08:00:00.123456789Z to stdout\n");
        assert_eq!(
            at,
            Some("2026-12-06T08:00:00.123456789Z".parse().expect("timestamp"))
        );
        assert_eq!(text, b"to stdout\n");
        // Output that does not start with a timestamp passes unchanged.
        assert_eq!(
            split_timestamp(b"plain line\n"),
            (None, &b"plain line\n"[..])
        );
        assert_eq!(split_timestamp(b"nospace"), (None, &b"nospace"[..]));
    }

    #[test]
    fn marks_resume_from_the_older_stream_and_from_the_start_without_one() {
        let t = |s: &str| Some(s.parse::<jiff::Timestamp>().expect("timestamp"));
        let both = LogMarks {
            stdout: t("2026-12-06T08:00:02Z"),
            stderr: t("2026-12-06T08:00:01Z"),
        };
        assert_eq!(both.since().as_deref(), Some("2026-12-06T08:00:01Z"));
        let one = LogMarks {
            stdout: t("2026-12-06T08:00:02Z"),
            stderr: None,
        };
        assert_eq!(one.since(), None);
        assert!(!one.is_empty());
        assert!(LogMarks::default().is_empty());
    }

    /// The adoption case of the end-to-end test, without an engine: a follower that
    /// resumes replays from the older mark, and each stream writes only what it had not.
    #[tokio::test]
    async fn a_resumed_follower_writes_each_line_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = b"2026-12-06T08:00:00.000000001Z one\n2026-12-06T08:00:00.000000002Z two\n";
        capture_stamped(
            &first[..],
            dir.path().to_path_buf(),
            "stdout",
            1 << 20,
            None,
        )
        .await;
        let marks = LogMarks::read(dir.path());
        assert_eq!(
            marks.stdout,
            Some("2026-12-06T08:00:00.000000002Z".parse().expect("timestamp"))
        );
        // The engine replays from --since, inclusive.
        let replay = b"2026-12-06T08:00:00.000000002Z two\n2026-12-06T08:00:00.000000003Z three\n";
        capture_stamped(
            &replay[..],
            dir.path().to_path_buf(),
            "stdout",
            1 << 20,
            marks.stdout,
        )
        .await;
        let log = std::fs::read_to_string(dir.path().join("stdout.log")).expect("log");
        assert_eq!(log, "one\ntwo\nthree\n");
    }

    #[test]
    fn names_come_from_the_allocation_uid() {
        assert_eq!(container_name("5f0c-77"), "meridian-5f0c-77");
    }
}
