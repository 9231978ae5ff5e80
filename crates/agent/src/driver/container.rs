//! The `container` driver: an OCI image run by `podman` or `docker` through their command
//! line.
//!
//! - start: `ENGINE run -d --name meridian-<allocation uid> --label … --cpus X --memory Yb
//!   [-e K=V]… [--workdir DIR] [--entrypoint PROGRAM] IMAGE [rest of command] [args]`
//!   ([`run_args`]; `task.command` overrides the image's entrypoint, as its field says);
//!   `ENGINE logs -f NAME` streams the output into the allocation's `stdout.log` and
//!   `stderr.log`;
//! - status: `ENGINE inspect --format '{{.State.Running}} {{.State.ExitCode}}' NAME`
//!   ([`parse_inspect`]);
//! - stop: `ENGINE stop -t <grace seconds> NAME` (the engine sends SIGTERM, then SIGKILL),
//!   then `ENGINE rm -f NAME`.
//!
//! The container's name comes from the allocation's uid, so a restarted agent finds it
//! again (adoption is `inspect` saying it runs).
//!
//! Not exercised end to end here: the development machine has a docker CLI but no engine
//! (so the driver is not offered there, see [`super::available`]). The command lines and
//! the parsing are unit-tested.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use api::kinds::{Driver as DriverKind, Task};

use super::exec::{capture, create_dir};
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

/// Time limit of `inspect`, `rm` and `run -d` (which may pull the image: generous).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

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

/// The arguments of `ENGINE run` (without the program) for `task`.
pub fn run_args(task: &Task, launch: &Launch, name: &str) -> Result<Vec<String>, DriverError> {
    let image = task
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or(DriverError::Missing(
            DriverKind::Container,
            "spec.task.image",
        ))?;
    let mut args: Vec<String> = ["run", "-d", "--name", name, "--label"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(format!("dev.meridian.allocation={name}"));
    let r = &task.resources;
    if r.cpu.millis() > 0 {
        args.extend(["--cpus".to_owned(), cpus_arg(r.cpu.millis())]);
    }
    if r.memory.bytes() > 0 {
        args.extend(["--memory".to_owned(), format!("{}b", r.memory.bytes())]);
    }
    for (k, v) in &launch.env {
        args.extend(["-e".to_owned(), format!("{k}={v}")]);
    }
    if let Some(wd) = &task.working_dir {
        args.extend(["--workdir".to_owned(), wd.clone()]);
    }
    let mut command = task.command.iter();
    if let Some(entrypoint) = command.next() {
        args.extend(["--entrypoint".to_owned(), entrypoint.clone()]);
    }
    args.push(image.to_owned());
    args.extend(command.cloned());
    args.extend(task.args.iter().cloned());
    Ok(args)
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

/// The `container` driver.
#[derive(Debug, Clone)]
pub struct ContainerDriver {
    pub engine: Engine,
}

impl ContainerDriver {
    pub fn new(engine: Engine) -> Self {
        ContainerDriver { engine }
    }

    /// Runs the engine with `args`: its stdout if it succeeded in time, else what went wrong.
    async fn engine(&self, args: &[String], limit: Duration) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new(self.engine.program());
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .map_err(|_| {
                format!(
                    "{} {} took more than {limit:?}",
                    self.engine.program(),
                    args[0]
                )
            })?
            .map_err(|e| format!("cannot run {}: {e}", self.engine.program()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{} {} failed: {}",
                self.engine.program(),
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `Some(None)` running, `Some(Some(code))` exited, `None` unknown (gone or no answer).
    async fn state(&self, name: &str) -> Option<Option<i32>> {
        let out = self
            .engine(&inspect_args(name), INSPECT_TIMEOUT)
            .await
            .ok()?;
        parse_inspect(&out)
    }

    /// Streams the container's output into the allocation's log files.
    fn follow_logs(
        &self,
        name: &str,
        slot_dir: &Path,
        log_limit: u64,
    ) -> Option<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(self.engine.program());
        cmd.args(["logs", "-f", name])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().ok()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(capture(out, slot_dir.join("stdout.log"), log_limit));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(capture(err, slot_dir.join("stderr.log"), log_limit));
        }
        Some(child)
    }
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
        let args = run_args(task, launch, &name)?;
        create_dir(&slot.dir)?;
        // A container of an earlier run of this allocation would hold the name.
        let _ = self
            .engine(&["rm".into(), "-f".into(), name.clone()], INSPECT_TIMEOUT)
            .await;
        self.engine(&args, RUN_TIMEOUT)
            .await
            .map_err(DriverError::Failed)?;
        let mut handle = container_handle(
            Record {
                driver: DriverKind::Container,
                pid: 0,
                start_time: 0,
                container: Some(name.clone()),
            },
            &slot.dir,
        );
        handle.log_follower = self.follow_logs(&name, &slot.dir, slot.log_limit);
        let message = format!(
            "container {name} ({}): cpus {}, memory {} bytes",
            self.engine.program(),
            cpus_arg(task.resources.cpu.millis()),
            task.resources.memory.bytes()
        );
        Ok(Started { handle, message })
    }

    async fn adopt(&self, record: &Record, dir: &Path) -> Option<Handle> {
        let name = record.container.as_deref()?;
        match self.state(name).await {
            Some(None) => Some(container_handle(record.clone(), dir)),
            _ => None,
        }
    }

    async fn exited(&self, handle: &mut Handle) -> Option<Option<i32>> {
        let name = handle.record.container.clone().unwrap_or_default();
        match self.state(&name).await {
            Some(None) => None,
            Some(code) => Some(code),
            // Removed behind the agent's back, or the engine is gone.
            None => Some(None),
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
                Stopped::Killed
            }
        }
    }

    async fn cleanup(&self, handle: &mut Handle) {
        if let Some(mut f) = handle.log_follower.take() {
            let _ = f.kill().await;
        }
        if let Some(name) = handle.record.container.clone() {
            let _ = self
                .engine(&["rm".into(), "-f".into(), name], INSPECT_TIMEOUT)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: serde_json::Value) -> Task {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn run_command_line() {
        let t = task(json!({
            "driver": "container", "image": "registry.example.com/app:1.2",
            "command": ["/bin/server", "--port"], "args": ["8080"],
            "env": {"A": "1", "B": "x=y"}, "workingDir": "/srv",
            "resources": {"cpu": "500m", "memory": "256Mi"},
        }));
        let args = run_args(&t, &Launch::default(), "meridian-1234").unwrap();
        assert_eq!(
            args.join(" "),
            "run -d --name meridian-1234 --label dev.meridian.allocation=meridian-1234 \
             --cpus 0.5 --memory 268435456b -e A=1 -e B=x=y --workdir /srv \
             --entrypoint /bin/server registry.example.com/app:1.2 --port 8080"
        );
        // Without a command the image's entrypoint runs, with the args.
        let t = task(json!({
            "driver": "container", "image": "nginx", "args": ["-g", "daemon off;"],
            "resources": {"cpu": "2", "memory": "1Gi"},
        }));
        let args = run_args(&t, &Launch::default(), "meridian-u").unwrap();
        assert_eq!(
            args[6..].join(" "),
            "--cpus 2 --memory 1073741824b nginx -g daemon off;"
        );
        assert_eq!(args.last().map(String::as_str), Some("daemon off;"));
        let t = task(json!({"driver": "container", "resources": {"cpu": "1", "memory": "1Mi"}}));
        assert_eq!(
            run_args(&t, &Launch::default(), "n")
                .unwrap_err()
                .to_string(),
            "the container driver needs spec.task.image"
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
    fn stop_and_inspect() {
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
    }

    #[test]
    fn names_come_from_the_allocation_uid() {
        assert_eq!(container_name("5f0c-77"), "meridian-5f0c-77");
    }
}
