//! Health checks of running tasks (`spec.task.health`): an HTTP GET, a TCP connection or
//! a command, every `interval` after `initialDelay`, each within `timeout`.
//!
//! HTTP and TCP checks go to the node's loopback (`127.0.0.1:port`): the task serves on
//! the host (an `exec` task, a container publishing the port, a VM with a forwarded
//! port). The HTTP client is a few lines of HTTP/1.0 (`GET`, `Connection: close`); any
//! 2xx or 3xx status is healthy. A command check of an `exec` task runs as the task
//! ([`Runs::Launcher`]: the launcher, with the task's user, environment, working
//! directory, rlimits and volumes); of other drivers, on the node with the task's
//! environment and nothing else ([`Runs::Env`]). Exit code 0 is healthy.
//!
//! A [`Tracker`] per running allocation runs one check at a time in the background and
//! keeps the outcome as an [`api::kinds::HealthStatus`]. The runtime polls it on its
//! reconcile tick, reports changes in the Allocation's status, and restarts the task per
//! its restart policy once `failureThreshold` checks in a row failed
//! ([`Verdict::Unhealthy`]).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use api::kinds::{HealthCheck, HealthState, HealthStatus};
use api::task::PortRef;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub healthy: bool,
    /// What was seen: `HTTP 200`, `connection refused`, `exit code 1`.
    pub message: String,
}

/// What a finished check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing worth reporting (still healthy).
    Unchanged,
    /// The state or the count of failures changed: report it.
    Changed,
    /// `failureThreshold` failures in a row: report it and restart the task.
    Unhealthy,
}

/// How a command check runs.
#[derive(Clone)]
pub enum Runs {
    /// On the node, with exactly this environment.
    Env(BTreeMap<String, String>),
    /// Through the launcher at `path`, as the task: `spec` with the check's program.
    #[cfg(unix)]
    Launcher {
        path: std::path::PathBuf,
        spec: crate::launch::Spec,
    },
}

impl std::fmt::Debug for Runs {
    /// Variable names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runs::Env(env) => f
                .debug_tuple("Env")
                .field(&env.keys().collect::<Vec<_>>())
                .finish(),
            #[cfg(unix)]
            Runs::Launcher { path, spec } => f
                .debug_struct("Launcher")
                .field("path", path)
                .field("spec", spec)
                .finish(),
        }
    }
}

/// The health of one running task.
#[derive(Debug)]
pub struct Tracker {
    check: HealthCheck,
    runs: Runs,
    next_at: Instant,
    pending: Option<JoinHandle<Outcome>>,
    pub status: HealthStatus,
    /// RFC 3339 time of the last change of `status.state`.
    pub transition_time: String,
}

impl Tracker {
    /// Starts tracking a task started at `started` (first check after `initialDelay`).
    pub fn new(check: HealthCheck, runs: Runs, started: Instant) -> Self {
        Tracker {
            next_at: started + check.initial_delay(),
            check,
            runs,
            pending: None,
            status: HealthStatus::default(),
            transition_time: jiff::Timestamp::now().to_string(),
        }
    }

    /// Collects a finished check (returning what it changed) and starts the next one when
    /// it is due. Never waits for a check.
    pub async fn poll(&mut self, now: Instant) -> Option<Verdict> {
        let mut verdict = None;
        if self.pending.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(job) = self.pending.take()
        {
            let outcome = job.await.unwrap_or_else(|e| Outcome {
                healthy: false,
                message: format!("the check did not finish: {e}"),
            });
            verdict = Some(self.record(outcome, &jiff::Timestamp::now().to_string()));
        }
        if self.pending.is_none() && now >= self.next_at {
            self.next_at = now + self.check.interval();
            let check = self.check.clone();
            let runs = self.runs.clone();
            self.pending = Some(tokio::spawn(async move { run(&check, &runs).await }));
        }
        verdict
    }

    /// Takes the outcome of a check at time `now` (RFC 3339).
    pub fn record(&mut self, outcome: Outcome, now: &str) -> Verdict {
        let before = self.status.state;
        self.status.last_check_time = Some(now.to_owned());
        self.status.message = Some(outcome.message);
        let verdict = if outcome.healthy {
            self.status.consecutive_failures = 0;
            self.status.state = HealthState::Healthy;
            if before == HealthState::Healthy {
                Verdict::Unchanged
            } else {
                Verdict::Changed
            }
        } else {
            self.status.consecutive_failures += 1;
            if self.status.consecutive_failures >= self.check.failure_threshold() {
                self.status.state = HealthState::Unhealthy;
                Verdict::Unhealthy
            } else {
                Verdict::Changed
            }
        };
        if self.status.state != before {
            self.transition_time = now.to_owned();
        }
        verdict
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Some(job) = self.pending.take() {
            job.abort();
        }
    }
}

/// The check with its named ports replaced by the allocation's host ports (a name the
/// allocation has no port for stays, and fails each check saying so).
pub fn resolve_ports(mut check: HealthCheck, ports: &[api::task::PortBinding]) -> HealthCheck {
    let resolve = |p: &mut PortRef| {
        if let Some(n) = p.resolve(ports) {
            *p = PortRef::Number(n);
        }
    };
    if let Some(h) = check.http.as_mut() {
        resolve(&mut h.port);
    }
    if let Some(t) = check.tcp.as_mut() {
        resolve(&mut t.port);
    }
    check
}

fn number(p: &PortRef) -> Result<u16, Outcome> {
    match p {
        PortRef::Number(n) => Ok(*n),
        PortRef::Name(name) => Err(Outcome {
            healthy: false,
            message: format!("the allocation has no port named {name}"),
        }),
    }
}

/// Runs one check within its timeout.
pub async fn run(check: &HealthCheck, runs: &Runs) -> Outcome {
    let limit = check.timeout();
    let job = async {
        if let Some(h) = &check.http {
            match number(&h.port) {
                Ok(port) => http(port, &h.path).await,
                Err(o) => o,
            }
        } else if let Some(t) = &check.tcp {
            let port = match number(&t.port) {
                Ok(port) => port,
                Err(o) => return o,
            };
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => Outcome {
                    healthy: true,
                    message: format!("port {port} accepts connections"),
                },
                Err(e) => Outcome {
                    healthy: false,
                    message: format!("port {port}: {e}"),
                },
            }
        } else if let Some(c) = &check.command {
            command(&c.command, runs).await
        } else {
            Outcome {
                healthy: false,
                message: "the health check has no http, tcp or command".into(),
            }
        }
    };
    tokio::time::timeout(limit, job)
        .await
        .unwrap_or_else(|_| Outcome {
            healthy: false,
            message: format!("no answer within {}", humanize(limit)),
        })
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

async fn http(port: u16, path: &str) -> Outcome {
    let fail = |message: String| Outcome {
        healthy: false,
        message,
    };
    let mut stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s,
        Err(e) => return fail(format!("GET http://127.0.0.1:{port}{path}: {e}")),
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: meridian-agent\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return fail(format!("GET http://127.0.0.1:{port}{path}: {e}"));
    }
    // The status line is all that matters: read at most 1 KiB.
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match stream.read(&mut buf[len..]).await {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return fail(format!("GET http://127.0.0.1:{port}{path}: {e}")),
        }
        if buf[..len].contains(&b'\n') {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    match parse_status_line(head.lines().next().unwrap_or_default()) {
        Some(code) => Outcome {
            healthy: (200..400).contains(&code),
            message: format!("HTTP {code}"),
        },
        None => fail(format!(
            "GET http://127.0.0.1:{port}{path}: not an HTTP answer"
        )),
    }
}

/// The status code of an HTTP status line (`HTTP/1.1 200 OK`).
pub fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

async fn command(argv: &[String], runs: &Runs) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome {
            healthy: false,
            message: "the command check has no program".into(),
        };
    };
    let status = match runs {
        Runs::Env(env) => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .env_clear()
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                // A check that outlives its timeout is dropped, and killed with it.
                .kill_on_drop(true);
            cmd.status().await
        }
        #[cfg(unix)]
        Runs::Launcher { path, spec } => {
            let mut spec = spec.clone();
            spec.program = program.clone();
            spec.args = args.to_vec();
            let (channel, stdin) = match crate::launch::Channel::new() {
                Ok(c) => c,
                Err(e) => {
                    return Outcome {
                        healthy: false,
                        message: format!("cannot run {program:?}: {e}"),
                    };
                }
            };
            let mut cmd = tokio::process::Command::new(path);
            cmd.arg("launch")
                .env_clear()
                .stdin(stdin)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let spawned = cmd.spawn();
            // Our copy of the launcher's end of the socket: closed, or the handshake
            // would never read end-of-file.
            drop(cmd);
            match spawned {
                Ok(mut child) => match channel.handshake(&spec).await {
                    Ok(()) => child.wait().await,
                    Err(e) => {
                        let _ = child.wait().await;
                        return Outcome {
                            healthy: false,
                            message: format!("cannot run {program:?}: {e}"),
                        };
                    }
                },
                Err(e) => Err(e),
            }
        }
    };
    match status {
        Ok(s) if s.success() => Outcome {
            healthy: true,
            message: "exit code 0".into(),
        },
        Ok(s) => Outcome {
            healthy: false,
            message: match s.code() {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            },
        },
        Err(e) => Outcome {
            healthy: false,
            message: format!("cannot run {program:?}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value) -> HealthCheck {
        serde_json::from_value(v).unwrap()
    }

    fn outcome(healthy: bool, message: &str) -> Outcome {
        Outcome {
            healthy,
            message: message.into(),
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 302 Found"), Some(302));
        assert_eq!(parse_status_line("HTTP/1.1 503"), Some(503));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[tokio::test]
    async fn failures_in_a_row_make_a_task_unhealthy() {
        let c = check(json!({"tcp": {"port": 1}, "failureThreshold": 2}));
        let mut t = Tracker::new(c, Runs::Env(BTreeMap::new()), Instant::now());
        assert_eq!(t.status.state, HealthState::Unknown);
        assert_eq!(t.record(outcome(true, "HTTP 200"), "t1"), Verdict::Changed);
        assert_eq!(t.status.state, HealthState::Healthy);
        assert_eq!(t.transition_time, "t1");
        assert_eq!(
            t.record(outcome(true, "HTTP 200"), "t2"),
            Verdict::Unchanged
        );
        assert_eq!(t.record(outcome(false, "HTTP 500"), "t3"), Verdict::Changed);
        // One failure is not enough to change the state.
        assert_eq!(t.status.state, HealthState::Healthy);
        assert_eq!(t.status.consecutive_failures, 1);
        // A success in between starts the count again.
        assert_eq!(
            t.record(outcome(true, "HTTP 200"), "t4"),
            Verdict::Unchanged
        );
        assert_eq!(t.status.consecutive_failures, 0);
        assert_eq!(t.record(outcome(false, "HTTP 500"), "t5"), Verdict::Changed);
        assert_eq!(
            t.record(outcome(false, "HTTP 502"), "t6"),
            Verdict::Unhealthy
        );
        assert_eq!(t.status.state, HealthState::Unhealthy);
        assert_eq!(t.status.message.as_deref(), Some("HTTP 502"));
        assert_eq!(t.status.last_check_time.as_deref(), Some("t6"));
        assert_eq!(t.transition_time, "t6");
    }

    #[tokio::test]
    async fn tcp_and_http_checks_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // A tiny HTTP server: 200 on /ok, 503 elsewhere.
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let answer = if req.starts_with("GET /ok ") {
                    "HTTP/1.0 200 OK\r\n\r\nfine"
                } else {
                    "HTTP/1.0 503 Service Unavailable\r\n\r\n"
                };
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let env = Runs::Env(BTreeMap::new());
        let ok = run(&check(json!({"http": {"port": port, "path": "/ok"}})), &env).await;
        assert_eq!(ok, outcome(true, "HTTP 200"));
        let bad = run(
            &check(json!({"http": {"port": port, "path": "/bad"}})),
            &env,
        )
        .await;
        assert_eq!(bad, outcome(false, "HTTP 503"));
        let tcp = run(&check(json!({"tcp": {"port": port}})), &env).await;
        assert!(tcp.healthy, "{tcp:?}");
        server.abort();
        // A port nobody listens on (the listener is gone).
        let _ = server.await;
        let closed = run(&check(json!({"tcp": {"port": port}})), &env).await;
        assert!(!closed.healthy, "{closed:?}");
    }

    #[tokio::test]
    async fn command_checks_use_the_exit_code_and_the_task_env() {
        let env = Runs::Env(BTreeMap::from([("WANTED".to_owned(), "yes".to_owned())]));
        let c = |script: &str| check(json!({"command": {"command": ["/bin/sh", "-c", script]}}));
        let ok = run(&c("test \"$WANTED\" = yes"), &env).await;
        assert_eq!(ok, outcome(true, "exit code 0"));
        let bad = run(&c("exit 3"), &env).await;
        assert_eq!(bad, outcome(false, "exit code 3"));
        let slow = run(
            &check(json!({"command": {"command": ["/bin/sleep", "30"]}, "timeout": "200ms"})),
            &env,
        )
        .await;
        assert_eq!(slow, outcome(false, "no answer within 200ms"));
        let missing = run(
            &check(json!({"command": {"command": ["/nonexistent/check"]}})),
            &env,
        )
        .await;
        assert!(!missing.healthy && missing.message.starts_with("cannot run"));
    }
}
