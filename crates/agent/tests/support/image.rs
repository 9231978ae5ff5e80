//! A container image for tests, built at test time from the static busybox binary (no
//! registry is reachable): `/bin/busybox`, a link per applet and `PATH=/bin`, imported
//! with `docker import`. Shared by the agent's driver test and the CLI's end-to-end test
//! (`#[path]`-included: std only).
//!
//! Needs `docker` with a running engine, `busybox-static` and `tar`; a missing one fails
//! the test (it never skips).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// `docker ARGS`: (success, stdout, stderr).
pub fn docker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run docker ({e}): install docker.io and start the engine")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker ARGS`, which must succeed: its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let (ok, out, err) = docker(args);
    assert!(ok, "docker {} failed: {err}", args.join(" "));
    out
}

/// Fails unless an engine answers `docker info`.
pub fn need_engine() {
    let (ok, out, err) = docker(&["info"]);
    let answered = ok
        && !out.contains("Cannot connect to the Docker daemon")
        && !out.contains("ERROR: error during connect");
    assert!(
        answered,
        "no container engine answers `docker info` (start dockerd): {out}{err}"
    );
}

/// Builds the image `tag` in `dir` (a scratch directory).
pub fn build_busybox_image(dir: &Path, tag: &str) {
    let busybox = Path::new("/bin/busybox");
    let is_static = Command::new("sh")
        .args([
            "-c",
            "[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        is_static,
        "a static /bin/busybox is missing: apt-get install -y busybox-static"
    );
    let root = dir.join("rootfs");
    for d in ["bin", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let applets = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let packed = Command::new("tar")
        .args([
            "-C",
            &root.to_string_lossy(),
            "-cf",
            &tar.to_string_lossy(),
            ".",
        ])
        .status()
        .expect("tar runs");
    assert!(packed.success(), "tar failed");
    docker_ok(&["import", "-c", "ENV PATH=/bin", &tar.to_string_lossy(), tag]);
}
