//! `meridian server` processes that `rss` and `crash` start, stop and kill, each on a
//! temporary data directory, and the offline audit check run on what they leave.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use client::Client;

/// A `meridian server` child process on 127.0.0.1 with a free port. Killed on drop.
pub struct ServerProcess {
    child: Child,
    url: String,
    token: String,
    /// The last lines of its stderr, for diagnostics.
    stderr_tail: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// `meridian server` of the binary `meridian` on `data_dir`; returns once it listens.
    pub async fn start(meridian: &Path, data_dir: &Path) -> Result<Self> {
        let mut child = Command::new(meridian)
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            // A benchmark on this machine: plain HTTP on loopback, no TLS in the figures.
            .arg("--insecure-http")
            .arg("--data-dir")
            .arg(data_dir)
            .env("MERIDIAN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{} server`", meridian.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        {
            let tail = Arc::clone(&tail);
            // Keeps draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("meridian server listening on ")
                        && let Some(tx) = url_tx.take()
                    {
                        let _ = tx.send(url.trim().to_owned());
                    }
                    if let Ok(mut t) = tail.lock() {
                        if t.len() >= 50 {
                            t.remove(0);
                        }
                        t.push(line);
                    }
                }
            });
        }
        let mut server = ServerProcess {
            child,
            url: String::new(),
            token: String::new(),
            stderr_tail: tail,
        };
        match tokio::time::timeout(Duration::from_secs(30), url_rx).await {
            Ok(Ok(url)) => server.url = url,
            _ => bail!(
                "the server did not start; its stderr:\n{}",
                server.stderr_tail()
            ),
        }
        let token_file = data_dir.join(server::ADMIN_TOKEN_FILE);
        server.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?
            .trim()
            .to_owned();
        Ok(server)
    }

    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.url, &self.token, None)?)
    }

    fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("cannot read the server's /proc status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Ok((
            field("VmRSS:").context("no VmRSS")?,
            field("VmHWM:").context("no VmHWM")?,
        ))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("cannot kill the server")?;
        self.child.wait().context("cannot reap the server")?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("cannot create a temporary directory")
}

pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `meridian audit verify --data-dir D` (offline; the server must be stopped).
pub fn verify_audit(
    meridian: &Path,
    data_dir: &Path,
) -> Result<std::result::Result<String, String>> {
    let out = Command::new(meridian)
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .env("MERIDIAN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("cannot run `meridian audit verify`")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    Ok(if out.status.success() {
        // "audit log intact: N entries, head H" → "ok, N entries"
        let stdout = text(&out.stdout);
        let entries = stdout
            .strip_prefix("audit log intact: ")
            .and_then(|r| r.split(',').next())
            .unwrap_or(&stdout);
        Ok(format!("ok, {entries}"))
    } else {
        Err(format!("{}: {}", out.status, text(&out.stderr)))
    })
}
