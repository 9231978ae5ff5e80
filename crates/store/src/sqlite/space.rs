//! Running out of disk space: the NOSPACE state, the reserve file, and recovery.
//!
//! Like etcd's NOSPACE alarm: when SQLite reports a full disk (`SQLITE_FULL`, or an I/O
//! error while the filesystem is nearly full), the writer fails the whole batch (nothing
//! of it is committed or published) and enters the NOSPACE state. In that state it refuses
//! every request that would grow the store with [`StoreError::NoSpace`], counted in
//! [`SpaceStatus::refused_writes`], and lets through what frees space or writes nothing:
//! transactions whose executed branch has no `Put` (a delete with its audit `Append` is
//! allowed; an `Append` without a `Delete` is not), lease revocations and compaction. The
//! state is entered and left with one log line each, never one per request.
//!
//! Why a reserve file: a delete is itself a write (WAL frames, a history row), so on a
//! truly full disk even deletes would fail and space could not be freed through the API.
//! At open, when space allows, the store writes `<db>.reserve` (ballast, 16 MiB by
//! default); entering NOSPACE deletes it, which gives deletes the room they need. The
//! failed batch is then retried once under the NOSPACE rules, so a delete that happened to
//! share a batch with the put that hit the wall succeeds; the refused requests' earlier
//! attempt was rolled back, so none of them can appear later.
//!
//! Why free space decides recovery, not a retry: a write that fails on a full disk costs
//! an fsync'd batch and would make the state flap. While in NOSPACE the writer checks the
//! filesystem (`statvfs`) before each batch and every [`SpaceOptions::check_interval`];
//! when [`SpaceOptions::resume_free_bytes`] are free beyond the reserve it recreates the
//! reserve and leaves the state. Without `statvfs` (not Unix) it retries after the
//! interval. Deleting rows does not shrink an SQLite file (freed pages are reused by
//! later writes), so the way back is freeing disk space on the filesystem.
//!
//! The reserve is written as zeros: on a compressing or deduplicating filesystem it holds
//! no space and deletes on a full disk may fail too (they fail cleanly, with `NoSpace`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::{NoSpace, SpaceStatus, StoreError};

/// How the store behaves when its disk fills. See the module documentation.
#[derive(Clone, Debug)]
pub struct SpaceOptions {
    /// Size of the reserve file `<db>.reserve`, deleted on entering NOSPACE so deletes can
    /// commit on a full disk. 0: no reserve.
    pub reserve_bytes: u64,
    /// Free space on the filesystem (beyond the reserve to recreate) at which writes
    /// resume.
    pub resume_free_bytes: u64,
    /// How often the writer checks free space while in NOSPACE and idle.
    pub check_interval: Duration,
}

impl Default for SpaceOptions {
    fn default() -> Self {
        Self {
            reserve_bytes: 16 << 20,
            resume_free_bytes: 64 << 20,
            check_interval: Duration::from_secs(2),
        }
    }
}

/// The NOSPACE state, shared between the writer (which enters and leaves it) and the
/// store (which reports it).
#[derive(Debug)]
pub(crate) struct SpaceState {
    db: PathBuf,
    opts: SpaceOptions,
    no_space: AtomicBool,
    refused: AtomicU64,
}

impl SpaceState {
    pub(crate) fn new(db: &Path, opts: SpaceOptions) -> Self {
        Self {
            db: db.to_owned(),
            opts,
            no_space: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_no_space(&self) -> bool {
        self.no_space.load(Ordering::SeqCst)
    }

    /// The error refused requests get; counts one refusal.
    pub(crate) fn refuse(&self) -> StoreError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        StoreError::NoSpace(self.no_space_info())
    }

    fn no_space_info(&self) -> NoSpace {
        NoSpace::Disk {
            dir: self.dir().display().to_string(),
            resume_mib: self.opts.resume_free_bytes.div_ceil(1 << 20),
        }
    }

    pub(crate) fn status(&self) -> SpaceStatus {
        SpaceStatus {
            no_space: self.is_no_space().then(|| self.no_space_info()),
            refused_writes: self.refused.load(Ordering::Relaxed),
            size_bytes: Some(self.size_bytes()),
        }
    }

    /// The database file and its WAL, in bytes.
    fn size_bytes(&self) -> u64 {
        let mut wal = self.db.clone().into_os_string();
        wal.push("-wal");
        [self.db.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    pub(crate) fn check_interval(&self) -> Duration {
        self.opts.check_interval.max(Duration::from_millis(10))
    }

    fn dir(&self) -> &Path {
        match self.db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    fn reserve_path(&self) -> PathBuf {
        let mut path = self.db.as_os_str().to_owned();
        path.push(".reserve");
        PathBuf::from(path)
    }

    /// Whether the filesystem has less than the resume threshold free: an I/O error then
    /// is most likely the disk filling (e.g. `ENOSPC` from `fsync`, which SQLite reports as
    /// an I/O error, not `SQLITE_FULL`).
    pub(crate) fn is_low(&self) -> bool {
        free_bytes(self.dir()).is_some_and(|free| free < self.opts.resume_free_bytes)
    }

    /// Writes the reserve file when it is missing and the filesystem has room for it and
    /// the resume threshold. Called at open and when leaving NOSPACE.
    pub(crate) fn ensure_reserve(&self) {
        let size = self.opts.reserve_bytes;
        let path = self.reserve_path();
        if size == 0 || std::fs::metadata(&path).is_ok_and(|m| m.len() >= size) {
            return;
        }
        let free = free_bytes(self.dir());
        if free.is_some_and(|free| free < size.saturating_add(self.opts.resume_free_bytes)) {
            tracing::warn!(
                path = %path.display(),
                free_bytes = free,
                "not enough free disk space to write the store's reserve file; deletes may \
                 fail if the disk fills"
            );
            return;
        }
        if let Err(e) = write_reserve(&path, size) {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(path = %path.display(), error = %e, "cannot write the store's reserve file");
        }
    }

    /// Enters NOSPACE (idempotent): deletes the reserve and logs once.
    pub(crate) fn enter(&self, cause: &dyn std::fmt::Display) {
        if self.no_space.swap(true, Ordering::SeqCst) {
            return;
        }
        let reserve = self.reserve_path();
        let freed = match std::fs::metadata(&reserve) {
            Ok(meta) => match std::fs::remove_file(&reserve) {
                Ok(()) => meta.len(),
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        tracing::error!(
            dir = %self.dir().display(),
            cause = %cause,
            reserve_freed_bytes = freed,
            free_bytes = free_bytes(self.dir()),
            resume_free_bytes = self.opts.resume_free_bytes,
            "store out of disk space (NOSPACE): refusing writes, allowing reads and deletes; \
             free disk space on this filesystem"
        );
    }

    /// In NOSPACE: leaves the state when enough space is free again (recreating the
    /// reserve). Returns whether the store is still in NOSPACE.
    pub(crate) fn poll(&self) -> bool {
        if !self.is_no_space() {
            return false;
        }
        let reserve_missing = self.opts.reserve_bytes > 0
            && std::fs::metadata(self.reserve_path())
                .map_or(true, |m| m.len() < self.opts.reserve_bytes);
        let needed = self
            .opts
            .resume_free_bytes
            .saturating_add(if reserve_missing {
                self.opts.reserve_bytes
            } else {
                0
            });
        let free = free_bytes(self.dir());
        if free.is_some_and(|free| free < needed) {
            return true;
        }
        if reserve_missing {
            self.ensure_reserve();
        }
        self.no_space.store(false, Ordering::SeqCst);
        tracing::warn!(
            dir = %self.dir().display(),
            free_bytes = free,
            "store has disk space again: writes resume"
        );
        false
    }
}

/// Free space on the filesystem holding `dir`, for an unprivileged user (`f_bavail`).
#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let (blocks, size) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Some(blocks.saturating_mul(size))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

fn write_reserve(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Whether an SQLite error means the disk is full.
pub(crate) fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Whether an SQLite error is an I/O error (which a full disk can cause, e.g. on `fsync`).
pub(crate) fn is_io(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure)
}
