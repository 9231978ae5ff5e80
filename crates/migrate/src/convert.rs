//! Disk conversion with `qemu-img`: VMDK, VHDX, VHD (`vpc`) or raw to qcow2, with progress,
//! checked with `qemu-img check`, resumable per disk.
//!
//! Each disk is written to `<target>.part` (flushed while written and after), checked and
//! renamed into place (the directory flushed too), so a disk whose target exists is done,
//! even after a crash: a re-run skips it (and checks it again). The source file is only
//! read.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One disk to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskJob {
    pub source: PathBuf,
    /// `vmdk`, `vhdx`, `vpc`, `raw`, `qcow2`; `None`: let qemu-img detect it.
    pub format: Option<String>,
    pub target: PathBuf,
}

/// What happened to a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converted {
    /// Converted and checked now.
    Done,
    /// Already converted by an earlier run (checked again).
    AlreadyDone,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot run {tool}: {source}; install it (Debian: apt-get install qemu-utils)")]
    Tool {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Failed { path: String, message: String },
}

fn failed(path: &Path, message: impl Into<String>) -> ConvertError {
    ConvertError::Failed {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The partial file of a target.
pub fn part_path(target: &Path) -> PathBuf {
    let mut p = target.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Converts one disk, calling `progress` with 0–100 as qemu-img reports it.
pub fn convert(job: &DiskJob, mut progress: impl FnMut(f64)) -> Result<Converted, ConvertError> {
    if !job.source.is_file() {
        return Err(failed(
            &job.source,
            "the source disk does not exist or is not a file",
        ));
    }
    if job.target.is_file() {
        check(&job.target)?;
        progress(100.0);
        return Ok(Converted::AlreadyDone);
    }
    if let Some(dir) = job.target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, format!("cannot create it: {e}")))?;
    }
    let part = part_path(&job.target);
    let mut cmd = Command::new("qemu-img");
    cmd.arg("convert").arg("-p");
    if let Some(f) = &job.format {
        cmd.args(["-f", f]);
    }
    cmd.args(["-O", "qcow2"])
        .arg(&job.source)
        .arg(&part)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ConvertError::Tool {
        tool: "qemu-img",
        source,
    })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let writeback = EarlyWriteback::start(part.clone());
    // `-p` prints `    (12.34/100%)` lines ending in `\r`.
    let mut buffer = [0u8; 256];
    let mut pending = String::new();
    loop {
        let n = stdout.read(&mut buffer).unwrap_or(0);
        if n == 0 {
            break;
        }
        pending.push_str(&String::from_utf8_lossy(&buffer[..n]));
        while let Some(end) = pending.find(['\r', '\n']) {
            let line: String = pending.drain(..=end).collect();
            if let Some(p) = parse_progress(&line) {
                progress(p);
            }
        }
    }
    let status = child.wait().map_err(|source| ConvertError::Tool {
        tool: "qemu-img",
        source,
    });
    writeback.stop();
    let status = status?;
    let stderr = errors.join().unwrap_or_default();
    if !status.success() {
        let _ = std::fs::remove_file(&part);
        return Err(failed(
            &job.source,
            format!("qemu-img convert failed ({status}): {}", stderr.trim()),
        ));
    }
    // `qemu-img convert` writes through the page cache without flushing (its default
    // cache mode for the target is `unsafe`): the disk is made durable before it is
    // renamed into place, since a target that exists counts as done.
    sync_file(&part)?;
    check(&part)?;
    std::fs::rename(&part, &job.target).map_err(|e| {
        failed(
            &job.target,
            format!("cannot move the converted disk in place: {e}"),
        )
    })?;
    if let Some(dir) = job.target.parent() {
        sync_file(dir)?;
    }
    progress(100.0);
    Ok(Converted::Done)
}

/// How often [`EarlyWriteback`] flushes what qemu-img wrote so far.
const WRITEBACK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Flushes the partial disk to storage while qemu-img still writes it, so that the final
/// `fsync` finds little left: the disk writes overlap the conversion instead of following
/// it (`qemu-img convert` itself never flushes: its default cache mode for the target is
/// `unsafe`).
struct EarlyWriteback {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl EarlyWriteback {
    fn start(path: PathBuf) -> EarlyWriteback {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::park_timeout(WRITEBACK_EVERY);
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                // Best effort: the final `fsync` is the one that counts.
                if let Ok(file) = std::fs::File::open(&path) {
                    let _ = file.sync_data();
                }
            }
        });
        EarlyWriteback { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// `fsync` of a file or directory.
fn sync_file(path: &Path) -> Result<(), ConvertError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| failed(path, format!("cannot flush it to disk: {e}")))
}

fn parse_progress(line: &str) -> Option<f64> {
    let inner = line.trim().strip_prefix('(')?;
    let (value, _) = inner.split_once('/')?;
    value.trim().parse().ok()
}

/// `qemu-img check` of a qcow2 image.
pub fn check(path: &Path) -> Result<(), ConvertError> {
    let out = Command::new("qemu-img")
        .args(["check", "-q", "-f", "qcow2"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ConvertError::Tool {
            tool: "qemu-img",
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            path,
            format!(
                "qemu-img check found problems ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("    (12.34/100%)\r"), Some(12.34));
        assert_eq!(parse_progress("(100.00/100%)"), Some(100.0));
        assert_eq!(parse_progress("garbage"), None);
    }
}
