//! Test support for disk-full tests: a small tmpfs mounted on a temporary directory and a
//! filler that takes every free byte of it. Mounting needs root (or `CAP_SYS_ADMIN`); the
//! tests run as root locally and in CI, and [`Tmpfs::mount`] fails with a message saying
//! so rather than letting a test skip silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted until dropped (then unmounted and its directory removed).
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `"4m"`).
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a directory: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a {size} tmpfs on {} (disk-full tests need root or \
                 CAP_SYS_ADMIN to mount one): {}",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir: Some(dir) })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Writes `filler` in the mount until the filesystem is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let Ok(mut file) = std::fs::File::create(&path) else {
            return path;
        };
        for chunk in [64 * 1024, 4096, 512, 1] {
            let bytes = vec![0xA5u8; chunk];
            while file.write_all(&bytes).and_then(|()| file.flush()).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // Lazy: a store still closing may hold files open.
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
            drop(dir);
        }
    }
}
