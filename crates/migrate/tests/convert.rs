//! `qemu-img` conversion: a VMDK made in the test (from a raw disk with known content)
//! becomes a checked qcow2 with the same content; a second run resumes (skips the done
//! disk); a failed conversion leaves no target. Needs `qemu-img` (Debian `qemu-utils`):
//! fails, never skips, without it.

use std::path::Path;
use std::process::Command;

use migrate::convert::{Converted, DiskJob, convert, part_path};

fn qemu_img(args: &[&str]) {
    let status = Command::new("qemu-img")
        .args(args)
        .status()
        .expect("qemu-img runs (apt-get install -y --no-install-recommends qemu-utils)");
    assert!(status.success(), "qemu-img {args:?}");
}

fn content(path: &Path, format: &str) -> Vec<u8> {
    let raw = path.with_extension("check.raw");
    qemu_img(&[
        "convert",
        "-f",
        format,
        "-O",
        "raw",
        path.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    std::fs::read(raw).unwrap()
}

#[test]
fn vmdk_to_qcow2_checked_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let mut data = vec![0u8; 4 << 20];
    for (i, b) in data.iter_mut().enumerate().step_by(4096) {
        *b = (i / 4096) as u8;
    }
    data[..16].copy_from_slice(b"MERIDIAN-MIGRATE");
    std::fs::write(&raw, &data).unwrap();
    let vmdk = dir.path().join("disk.vmdk");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        raw.to_str().unwrap(),
        vmdk.to_str().unwrap(),
    ]);

    let job = DiskJob {
        source: vmdk,
        format: Some("vmdk".into()),
        target: dir.path().join("out/vm-1/disk0.qcow2"),
    };
    let mut seen = Vec::new();
    assert_eq!(convert(&job, |p| seen.push(p)).unwrap(), Converted::Done);
    assert_eq!(seen.last(), Some(&100.0));
    assert!(!part_path(&job.target).exists());
    assert_eq!(content(&job.target, "qcow2"), data);
    // Resumed: the done disk is checked, not converted again.
    assert_eq!(convert(&job, |_| {}).unwrap(), Converted::AlreadyDone);

    // A source that is not a VMDK: an error naming it, no target left behind.
    let bogus = dir.path().join("bogus.vmdk");
    std::fs::write(&bogus, b"not a disk").unwrap();
    let bad = DiskJob {
        source: bogus,
        format: Some("vmdk".into()),
        target: dir.path().join("out/vm-2/disk0.qcow2"),
    };
    let err = convert(&bad, |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("bogus.vmdk") && err.contains("qemu-img convert failed"),
        "{err}"
    );
    assert!(!bad.target.exists() && !part_path(&bad.target).exists());
}
