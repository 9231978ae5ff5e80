//! The conversion benchmark: `meridian migrate run`'s disk conversion
//! ([`migrate::convert::convert`]: `qemu-img convert -p` with its progress parsed, then
//! `qemu-img check`, then the rename into place) against `qemu-img convert` alone, on the
//! same VMDK.
//!
//! The disk is generated: a sparse raw image of SIZE GiB with one MiB of pseudo-random
//! (incompressible) data in every fourth MiB, converted once to a monolithic sparse VMDK,
//! the form an export holds. Each run converts it to qcow2 both ways, alternating which
//! goes first (the source stays in the page cache: one untimed conversion warms it; `sync`
//! before each timing, so none starts behind another's write-back), and prints the times
//! and the throughput ratios (`qemu-img` time / ours: 1.0 is no overhead): against
//! `qemu-img convert` alone, and against `qemu-img convert` then an `fsync` of its output,
//! the durable equivalent of ours (which flushes the disk before renaming it into place).
//!
//! `cargo run --release -p migrate --example convert_bench -- [SIZE_GIB] [RUNS] [--dir DIR]`
//! (default 2 GiB, 5 runs, a temporary directory under `target/`). Needs `qemu-img`
//! (Debian `qemu-utils`). Figures go to BENCHMARKS.md, not to tests.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use migrate::convert::{Converted, DiskJob, convert};

const MIB: u64 = 1 << 20;

fn qemu_img(args: &[&std::ffi::OsStr]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs (apt-get install -y --no-install-recommends qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A sparse raw disk with data in every fourth MiB.
fn write_raw(path: &Path, gib: u64) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the raw disk");
    let size = gib << 30;
    file.set_len(size).expect("size the raw disk");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; MIB as usize];
    let mut written = 0;
    for at in (0..size).step_by(4 * MIB as usize) {
        for word in chunk.chunks_exact_mut(8) {
            // xorshift64: cheap, incompressible enough for a disk image.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.seek(SeekFrom::Start(at)).expect("seek");
        file.write_all(&chunk).expect("write");
        written += MIB;
    }
    file.sync_all().expect("sync");
    written
}

/// Flushes every file system's dirty pages (outside the timings), so that each timed
/// conversion starts from the same state, not behind the previous one's write-back.
fn settle() {
    let _ = Command::new("sync").status();
}

/// `qemu-img convert` alone; with `durable`, followed by an `fsync` of its output (what
/// makes the result survive a crash, which qemu-img's default cache mode does not do).
fn qemu_img_alone(source: &Path, target: &Path, durable: bool) -> Duration {
    let _ = std::fs::remove_file(target);
    settle();
    let started = Instant::now();
    qemu_img(&[
        "convert".as_ref(),
        "-f".as_ref(),
        "vmdk".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        source.as_os_str(),
        target.as_os_str(),
    ]);
    if durable {
        std::fs::File::open(target)
            .and_then(|f| f.sync_all())
            .expect("fsync");
    }
    started.elapsed()
}

fn ours(source: &Path, target: &Path) -> Duration {
    let _ = std::fs::remove_file(target);
    let job = DiskJob {
        source: source.to_path_buf(),
        format: Some("vmdk".into()),
        target: target.to_path_buf(),
    };
    let mut updates = 0u32;
    settle();
    let started = Instant::now();
    let outcome = convert(&job, |_| updates += 1).expect("the conversion succeeds");
    let took = started.elapsed();
    assert_eq!(outcome, Converted::Done);
    assert!(updates > 1, "progress was reported ({updates} updates)");
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut dir: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        if a == "--dir" {
            dir = Some(args.next().expect("--dir DIR").into());
        } else {
            positional.push(a);
        }
    }
    let gib: u64 = positional
        .first()
        .map_or(2, |s| s.parse().expect("SIZE_GIB is a whole number"));
    let runs: usize = positional
        .get(1)
        .map_or(5, |s| s.parse().expect("RUNS is a whole number"));
    let base = dir.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/convert-bench")
    });
    std::fs::create_dir_all(&base).expect("the work directory");
    let work = tempfile::tempdir_in(&base).expect("a temporary directory");
    let raw = work.path().join("disk.raw");
    let vmdk = work.path().join("disk.vmdk");
    let data = write_raw(&raw, gib);
    qemu_img(&[
        "convert".as_ref(),
        "-f".as_ref(),
        "raw".as_ref(),
        "-O".as_ref(),
        "vmdk".as_ref(),
        raw.as_os_str(),
        vmdk.as_os_str(),
    ]);
    std::fs::remove_file(&raw).expect("remove the raw disk");
    let vmdk_bytes = std::fs::metadata(&vmdk).expect("the VMDK").len();
    println!(
        "source: {gib} GiB virtual VMDK (monolithic sparse), {} MiB of data, {} MiB file; {runs} runs",
        data / MIB,
        vmdk_bytes / MIB
    );
    let plain = work.path().join("plain.qcow2");
    let mine = work.path().join("out/vm/disk0.qcow2");
    qemu_img_alone(&vmdk, &plain, false); // warms the page cache
    println!(
        "run  qemu-img  qemu-img+fsync  migrate run's convert  ratio qemu-img/ours  ratio (qemu-img+fsync)/ours"
    );
    let (mut qs, mut ds, mut ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut durable_ratios) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        // The three in a rotating order: none always runs first.
        let (mut q, mut d, mut m) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for step in 0..3 {
            match (run + step) % 3 {
                0 => q = qemu_img_alone(&vmdk, &plain, false),
                1 => d = qemu_img_alone(&vmdk, &plain, true),
                _ => m = ours(&vmdk, &mine),
            }
        }
        let ratio = q.as_secs_f64() / m.as_secs_f64();
        let durable = d.as_secs_f64() / m.as_secs_f64();
        println!(
            "{run:>3}  {:>7.3} s  {:>12.3} s  {:>19.3} s  {ratio:>18.3}  {durable:>26.3}",
            q.as_secs_f64(),
            d.as_secs_f64(),
            m.as_secs_f64()
        );
        ratios.push(ratio);
        durable_ratios.push(durable);
        qs.push(q.as_secs_f64());
        ds.push(d.as_secs_f64());
        ms.push(m.as_secs_f64());
    }
    let (q, d, m) = (median(qs), median(ds), median(ms));
    let virtual_mib = (gib << 30) as f64 / MIB as f64;
    println!(
        "median: qemu-img {q:.3} s ({:.0} MiB/s of virtual disk), qemu-img+fsync {d:.3} s ({:.0} MiB/s), ours {m:.3} s ({:.0} MiB/s)",
        virtual_mib / q,
        virtual_mib / d,
        virtual_mib / m,
    );
    println!(
        "median ratios: qemu-img/ours {:.3}, (qemu-img+fsync)/ours {:.3}",
        median(ratios),
        median(durable_ratios)
    );
}
