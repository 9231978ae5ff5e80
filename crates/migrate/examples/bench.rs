//! The migrate benchmark: writes an RVTools-shaped XLSX of N VMs (vInfo, vCPU, vMemory,
//! vDisk, vNetwork, vPartition, vSnapshot, vTools; a mix of Windows and Linux guests,
//! passthrough, RDM, snapshots, templates), then times, in this one process, reading it
//! ([`migrate::read_all`]), building the objects, and assessing it (the `migration` Rego
//! pack over every VM, mapping, right-sizing, readiness against a what-if answer made
//! locally: the server's placement is timed by `meridian migrate assess` itself).
//!
//! `cargo run --release -p migrate --example bench -- [VMS] [RUNS] [--keep PATH]`
//! prints one line per run and the median. Figures go to notes, not to tests.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

use api::explanation::{Decision, Evaluated, Explanation, Outcome, WorkloadRef};
use migrate::assess;
use rust_xlsxwriter::Workbook;

fn write_estate(path: &std::path::Path, vms: usize) {
    let mut book = Workbook::new();
    let os = [
        "Microsoft Windows Server 2019 (64-bit)",
        "Red Hat Enterprise Linux 8 (64-bit)",
        "Microsoft Windows Server 2012 (64-bit)",
        "Ubuntu Linux (64-bit)",
        "Red Hat Enterprise Linux 6 (64-bit)",
        "Microsoft Windows Server 2022 (64-bit)",
    ];
    let uuid = |i: usize| format!("42{:06x}-0000-4000-8000-{:012x}", i % 0xffffff, i);
    {
        let ws = book.add_worksheet();
        ws.set_name("vInfo").unwrap();
        let headers = [
            "VM",
            "Powerstate",
            "Template",
            "SRM Placeholder",
            "CPUs",
            "Memory",
            "Provisioned MiB",
            "In Use MiB",
            "CBT",
            "Firmware",
            "EFI Secure boot",
            "Annotation",
            "Datacenter",
            "Cluster",
            "Host",
            "Folder",
            "OS according to the configuration file",
            "OS according to the VMware Tools",
            "VM UUID",
            "VI SDK Server",
        ];
        for (c, h) in headers.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for i in 0..vms {
            let r = i as u32 + 1;
            let template = i % 97 == 0;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_string(r, 1, "poweredOn").unwrap();
            ws.write_boolean(r, 2, template).unwrap();
            ws.write_boolean(r, 3, false).unwrap();
            ws.write_number(r, 4, [2.0, 4.0, 8.0, 16.0][i % 4]).unwrap();
            ws.write_number(r, 5, [4096.0, 8192.0, 16384.0, 32768.0][i % 4])
                .unwrap();
            ws.write_number(r, 6, 61440.0 + (i % 10) as f64 * 1024.0)
                .unwrap();
            ws.write_number(r, 7, 30000.0).unwrap();
            ws.write_boolean(r, 8, i % 3 != 0).unwrap();
            ws.write_string(r, 9, if i % 2 == 0 { "efi" } else { "bios" })
                .unwrap();
            ws.write_boolean(r, 10, i % 4 == 0).unwrap();
            ws.write_string(r, 11, format!("app=app{}; owner=team{}", i / 5, i % 7))
                .unwrap();
            ws.write_string(r, 12, ["DC-Frankfurt", "DC-Paris", "DC-Dallas"][i % 3])
                .unwrap();
            ws.write_string(r, 13, format!("cluster-{}", i % 12))
                .unwrap();
            ws.write_string(r, 14, format!("esx{:03}", i % 200))
                .unwrap();
            ws.write_string(
                r,
                15,
                format!("/{}/app{}", ["Finance", "HR", "Lab"][i % 3], i / 5),
            )
            .unwrap();
            ws.write_string(r, 16, os[i % os.len()]).unwrap();
            ws.write_string(r, 17, os[i % os.len()]).unwrap();
            ws.write_string(r, 18, uuid(i)).unwrap();
            ws.write_string(r, 19, "vc01.example.com").unwrap();
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vCPU").unwrap();
        for (c, h) in ["VM", "Cores p/s", "Hot Add", "Overall", "Max", "VM UUID"]
            .iter()
            .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for i in 0..vms {
            let r = i as u32 + 1;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_number(r, 1, 2.0).unwrap();
            ws.write_boolean(r, 2, i % 5 == 0).unwrap();
            ws.write_number(r, 3, (i % 40) as f64 * 100.0).unwrap();
            ws.write_number(r, 4, 9600.0).unwrap();
            ws.write_string(r, 5, uuid(i)).unwrap();
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vMemory").unwrap();
        for (c, h) in ["VM", "Hot Add", "Active", "VM UUID"].iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for i in 0..vms {
            let r = i as u32 + 1;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_boolean(r, 1, false).unwrap();
            ws.write_number(r, 2, 1024.0 + (i % 8) as f64 * 256.0)
                .unwrap();
            ws.write_string(r, 3, uuid(i)).unwrap();
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vDisk").unwrap();
        let headers = [
            "VM",
            "Disk",
            "Capacity MiB",
            "Disk Mode",
            "Sharing mode",
            "Thin",
            "Raw",
            "Path",
            "VM UUID",
        ];
        for (c, h) in headers.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        let mut r = 1;
        for i in 0..vms {
            for d in 0..2 {
                ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
                ws.write_string(r, 1, format!("Hard disk {}", d + 1))
                    .unwrap();
                ws.write_number(r, 2, 40960.0 * (d + 1) as f64).unwrap();
                ws.write_string(
                    r,
                    3,
                    if i % 50 == 1 && d == 1 {
                        "independent_persistent"
                    } else {
                        "persistent"
                    },
                )
                .unwrap();
                ws.write_string(
                    r,
                    4,
                    if i % 200 == 7 && d == 1 {
                        "sharingMultiWriter"
                    } else {
                        "sharingNone"
                    },
                )
                .unwrap();
                ws.write_boolean(r, 5, true).unwrap();
                ws.write_boolean(r, 6, i % 150 == 3 && d == 1).unwrap();
                ws.write_string(r, 7, format!("[ds{}] vm-{i:05}/vm-{i:05}_{d}.vmdk", i % 20))
                    .unwrap();
                ws.write_string(r, 8, uuid(i)).unwrap();
                r += 1;
            }
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vNetwork").unwrap();
        for (c, h) in [
            "VM",
            "NIC label",
            "Adapter",
            "Network",
            "Connected",
            "VM UUID",
        ]
        .iter()
        .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for i in 0..vms {
            let r = i as u32 + 1;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_string(r, 1, "Network adapter 1").unwrap();
            ws.write_string(
                r,
                2,
                if i % 300 == 11 {
                    "SR-IOV passthrough"
                } else {
                    "vmxnet3"
                },
            )
            .unwrap();
            ws.write_string(r, 3, format!("VLAN-{}", i % 40)).unwrap();
            ws.write_boolean(r, 4, true).unwrap();
            ws.write_string(r, 5, uuid(i)).unwrap();
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vPartition").unwrap();
        for (c, h) in ["VM", "Disk", "Capacity MiB", "Free MiB", "VM UUID"]
            .iter()
            .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for i in 0..vms {
            let r = i as u32 + 1;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_string(r, 1, if i % 2 == 0 { "C:\\" } else { "/" })
                .unwrap();
            ws.write_number(r, 2, 40000.0).unwrap();
            ws.write_number(r, 3, if i % 40 == 5 { 300.0 } else { 12000.0 })
                .unwrap();
            ws.write_string(r, 4, uuid(i)).unwrap();
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vSnapshot").unwrap();
        for (c, h) in ["VM", "Name", "Size MiB (total)", "VM UUID"]
            .iter()
            .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for (r, i) in (0..vms).filter(|i| i % 25 == 2).enumerate() {
            let r = r as u32 + 1;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_string(r, 1, "before-patch").unwrap();
            ws.write_number(r, 2, 2048.0).unwrap();
            ws.write_string(r, 3, uuid(i)).unwrap();
        }
    }
    {
        let ws = book.add_worksheet();
        ws.set_name("vTools").unwrap();
        for (c, h) in ["VM", "Tools", "Tools Version", "VM UUID"]
            .iter()
            .enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for i in 0..vms {
            let r = i as u32 + 1;
            ws.write_string(r, 0, format!("vm-{i:05}")).unwrap();
            ws.write_string(
                r,
                1,
                if i % 30 == 0 {
                    "toolsNotRunning"
                } else {
                    "toolsOk"
                },
            )
            .unwrap();
            ws.write_string(r, 2, "12352").unwrap();
            ws.write_string(r, 3, uuid(i)).unwrap();
        }
    }
    book.save(path).unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut vms = 10_000;
    let mut runs = 5;
    let mut keep: Option<PathBuf> = None;
    let mut positional = 0;
    while let Some(a) = args.next() {
        if a == "--keep" {
            keep = args.next().map(PathBuf::from);
        } else {
            match positional {
                0 => vms = a.parse().expect("VMS is a number"),
                _ => runs = a.parse().expect("RUNS is a number"),
            }
            positional += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = keep.unwrap_or_else(|| dir.path().join("estate.xlsx"));
    let started = Instant::now();
    write_estate(&path, vms);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "wrote {} ({} VMs, {:.1} MiB) in {:.2}s",
        path.display(),
        vms,
        size as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (set, categories) = assess::builtin_policies();
    let site: api::Site = serde_json::from_value(serde_json::json!({
        "apiVersion": "meridian.dev/v1", "kind": "Site", "metadata": {"name": "onprem-frankfurt"},
        "spec": {"provider": "onprem", "region": "frankfurt", "jurisdiction": "DE",
                 "pricing": {"cpuCoreHour": 0.031, "memoryGiBHour": 0.004}}
    }))
    .unwrap();
    println!("run  read+normalize  objects  concerns(evals/s)  readiness  total");
    let (mut reads, mut totals, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let t0 = Instant::now();
        let sources = migrate::sources_for(std::slice::from_ref(&path)).unwrap();
        let inventory = migrate::read_all(&sources, &migrate::ImportOptions::default());
        let read = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let objects: Vec<api::migrate::VirtualMachine> = inventory
            .vms
            .iter()
            .map(|v| migrate::objects::to_object(v, "bench"))
            .collect();
        let values: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect();
        let build = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let (found, evaluations, errors) = assess::concerns(&values, &set, &categories, threads);
        assert!(errors.is_empty(), "{errors:?}");
        let concerns = t2.elapsed().as_secs_f64();
        let t3 = Instant::now();
        let sizing = api::migrate::Sizing {
            mode: "performance".into(),
            comfort_factor: 1.3,
        };
        let mapped: Vec<assess::Mapped> =
            objects.iter().map(|o| assess::map(&o.spec, &[])).collect();
        let sizes: Vec<assess::Size> = objects
            .iter()
            .map(|o| assess::size(&o.spec, &sizing))
            .collect();
        let projects = vec!["bench".to_string(); objects.len()];
        // Stand-in for the server's answer: every VM placed (the server's what-if is timed
        // by `meridian migrate assess`, which prints it).
        let decisions: Vec<Decision> = objects
            .iter()
            .map(|o| Decision {
                workload: WorkloadRef {
                    namespace: "bench".into(),
                    name: assess::whatif_name(&o.metadata.name, 0, false),
                },
                replica: 0,
                outcome: Outcome::Unplaceable(Explanation {
                    summary: "stand-in".into(),
                    nodes: 0,
                    evaluated: Evaluated::AllFilters,
                    passed: 0,
                    rejections: Vec::new(),
                    candidates: Vec::new(),
                    suggestions: Vec::new(),
                    notes: Vec::new(),
                    queue: None,
                }),
            })
            .collect();
        let assessed = assess::assess(&assess::Inputs {
            vms: &objects,
            concerns: found,
            sizes: &sizes,
            mapped: &mapped,
            projects: &projects,
            targets: std::slice::from_ref(&site),
            decisions: &decisions,
        });
        let readiness = t3.elapsed().as_secs_f64();
        let total = t0.elapsed().as_secs_f64();
        let rate = evaluations as f64 / concerns;
        println!(
            "{run:>3}  {read:>13.3}s  {build:>6.3}s  {concerns:>7.3}s ({rate:>7.0})  {readiness:>8.3}s  {total:.3}s   [{} VMs, {} skipped, {} issues, {} assessed]",
            inventory.vms.len(),
            inventory.skipped_templates,
            inventory.issues.len(),
            assessed.len()
        );
        reads.push(read);
        totals.push(total);
        rates.push(rate);
    }
    println!(
        "median over {runs} runs: read+normalize {:.3}s, import+assess {:.3}s, {:.0} policy evaluations/s ({threads} threads)",
        median(reads),
        median(totals),
        median(rates)
    );
}
