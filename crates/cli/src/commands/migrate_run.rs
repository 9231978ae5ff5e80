//! `meridian migrate run|rollback PLAN --wave N`: a wave's disks converted (the `migrate`
//! crate's `convert`, resumable per disk) and its VMs run as `vm` Workloads; and the way
//! back: the wave's Workloads deleted, its converted disks removed, the statuses reset so
//! the wave can run again.
//!
//! Both only write what Meridian owns: the source disks are read (by `qemu-img`) and
//! never written or removed; rollback removes only the qcow2 files `run` writes
//! (`DIR/<vm>/disk<i>.qcow2` and their `.part` files) and the files the VirtualMachine's
//! status lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use api::kinds::{ALLOCATION, MIGRATION_PLAN, VIRTUAL_MACHINE, WORKLOAD};
use api::migrate::{MigrationPlan, VM_LABEL, VirtualMachine, WaveStatus};
use client::{Client, ListOptions};
use migrate::assess;

use super::migrate::{RollbackArgs, RunArgs, decode, progress, project};
use crate::config::Resolved;
use crate::exit::UserError;

/// Annotation on a migrated VM's Workload: the MigrationPlan that created it.
pub const PLAN_ANNOTATION: &str = "migrate.meridian.dev/plan";
/// Annotation on a migrated VM's Workload: the wave that created it.
pub const WAVE_ANNOTATION: &str = "migrate.meridian.dev/wave";
/// Annotation on a migrated VM's Workload: the source VM's UUID.
pub const SOURCE_UUID_ANNOTATION: &str = "migrate.meridian.dev/source-uuid";

async fn read_plan(client: &Client, project: &str, name: &str) -> Result<MigrationPlan> {
    let value = client
        .get(MIGRATION_PLAN, Some(project), name)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                UserError::fail(format!(
                    "MigrationPlan {project}/{name} does not exist (see `meridian get migrationplans -n {project}`)"
                ))
            } else {
                anyhow::Error::new(e).context(format!("cannot read MigrationPlan {project}/{name}"))
            }
        })?;
    decode(value, "MigrationPlan")
}

fn find_wave(plan: &MigrationPlan, project: &str, number: u32) -> Result<WaveStatus> {
    let waves = plan.status.clone().unwrap_or_default().waves;
    let name = &plan.metadata.name;
    waves
        .iter()
        .find(|w| w.number == number)
        .cloned()
        .ok_or_else(|| {
            UserError::fail(format!(
                "--wave {number}: MigrationPlan {project}/{name} has no wave {number} (it has {}): run `meridian migrate plan --plan {name} -n {project}` first",
                waves.len()
            ))
        })
}

/// Where converted disks go: the flag, else the plan's `storagePath`.
fn disk_dir(flag: Option<&PathBuf>, plan: &MigrationPlan) -> Option<PathBuf> {
    flag.cloned()
        .or_else(|| plan.spec.storage_path.clone().map(PathBuf::from))
}

/// The converted disk `run` writes for a VM's disk number `index`.
fn target_disk(dir: &Path, vm: &str, index: usize) -> PathBuf {
    dir.join(vm).join(format!("disk{index}.qcow2"))
}

/// The Workload name for a VirtualMachine.
fn workload_name(vm: &str) -> String {
    let name = format!("mig-{vm}");
    name[..name.len().min(63)].trim_end_matches('-').to_string()
}

/// Records a wave's phase on the plan's status.
async fn set_wave_phase(
    client: &Client,
    project: &str,
    plan: &str,
    number: u32,
    phase: &str,
) -> Result<()> {
    let mut current = client.get(MIGRATION_PLAN, Some(project), plan).await?;
    let Some(waves) = current
        .pointer_mut("/status/waves")
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    let mut changed = false;
    for w in waves.iter_mut() {
        if w["number"] == number && w["phase"] != phase {
            w["phase"] = json!(phase);
            changed = true;
        }
    }
    if changed {
        client
            .replace_status(MIGRATION_PLAN, Some(project), plan, &current)
            .await
            .with_context(|| {
                format!("cannot record wave {number}'s phase on MigrationPlan {project}/{plan}")
            })?;
    }
    Ok(())
}

pub async fn run(client: &Client, conn: &Resolved, args: &RunArgs) -> Result<()> {
    let project = project(conn);
    let plan = read_plan(client, &project, &args.plan).await?;
    let wave = find_wave(&plan, &project, args.wave)?;
    let disk_dir = disk_dir(args.disk_dir.as_ref(), &plan).ok_or_else(|| {
        UserError::fail("say where converted disks go: --disk-dir DIR or spec.storagePath")
    })?;
    if !args.source_dir.is_dir() {
        return Err(UserError::fail(format!(
            "--source-dir {}: not a directory",
            args.source_dir.display()
        )));
    }
    for vm_name in &wave.vms {
        let mut object = client.get(VIRTUAL_MACHINE, Some(&project), vm_name).await?;
        let vm: VirtualMachine = decode(object.clone(), "VirtualMachine")?;
        let mut converted = Vec::new();
        for (i, disk) in vm.spec.disks.iter().enumerate() {
            let Some(file) = disk
                .path
                .as_deref()
                .and_then(|p| p.rsplit(['/', ' ', ']']).next())
                .filter(|f| !f.is_empty())
            else {
                return Err(UserError::fail(format!(
                    "VM {}: {} names no disk file; re-import from an OVF/OVA or an RVTools vDisk sheet",
                    vm.spec.name, disk.label
                )));
            };
            let job = migrate::convert::DiskJob {
                source: args.source_dir.join(file),
                format: disk.format.clone(),
                target: target_disk(&disk_dir, &vm.metadata.name, i),
            };
            let bar = progress(100, &format!("{} {}", vm.spec.name, disk.label));
            let job2 = job.clone();
            let bar2 = bar.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                migrate::convert::convert(&job2, |p| bar2.set_position(p as u64))
            })
            .await?;
            bar.finish_and_clear();
            let outcome = outcome.map_err(|e| UserError::fail(e.to_string()))?;
            eprintln!(
                "{} {}: {:?} -> {}",
                vm.spec.name,
                disk.label,
                outcome,
                job.target.display()
            );
            converted.push(job.target.display().to_string());
        }
        let mut workload_name = None;
        if !args.convert_only && !converted.is_empty() {
            let name = self::workload_name(&vm.metadata.name);
            // The plan's data policy for the VM and its targets: the scheduler places it
            // only where the assessment could.
            let mapped = assess::map(&vm.spec, &plan.spec.mapping);
            let mut spec = json!({
                "type": "vm",
                "task": {
                    "driver": "qemu",
                    "disk": {"image": converted[0], "format": "qcow2"},
                    "resources": {"cpu": vm.spec.cpus.max(1).to_string(), "memory": format!("{}Mi", vm.spec.memory_mib.max(1))},
                },
                "data": {
                    "classification": mapped.classification,
                    "residency": mapped.residency,
                    "sovereignty": mapped.sovereignty,
                },
            });
            // The site the plan found room at; else any of the plan's targets.
            let sites = match wave.sites.get(vm_name) {
                Some(site) => vec![site.clone()],
                None => plan.spec.targets.clone(),
            };
            if !sites.is_empty() {
                spec["placement"] = json!({"matchExpressions": [
                    {"key": "site.name", "operator": "In", "values": sites},
                ]});
            }
            // No `task.os`: a Windows guest runs on a Linux KVM host.
            let workload = json!({
                "apiVersion": api::API_VERSION,
                "kind": "Workload",
                "metadata": {
                    "name": name,
                    "namespace": project,
                    "labels": {VM_LABEL: vm.metadata.name},
                    "annotations": {
                        PLAN_ANNOTATION: args.plan,
                        WAVE_ANNOTATION: args.wave.to_string(),
                        SOURCE_UUID_ANNOTATION: vm.spec.uuid,
                    },
                },
                "spec": spec,
            });
            client
                .apply(WORKLOAD, Some(&project), &workload, false)
                .await
                .with_context(|| format!("cannot create Workload {project}/{name}"))?;
            workload_name = Some(name);
        }
        object["status"] = json!({
            "phase": if workload_name.is_some() { "Running" } else { "Converted" },
            "plan": args.plan,
            "wave": args.wave,
            "workload": workload_name,
            "disks": converted,
        });
        client
            .replace_status(VIRTUAL_MACHINE, Some(&project), vm_name, &object)
            .await?;
        println!(
            "{}: {}",
            vm.spec.name,
            workload_name.map_or("converted".to_string(), |w| format!(
                "running as workload/{w}"
            ))
        );
    }
    set_wave_phase(
        client,
        &project,
        &args.plan,
        args.wave,
        if args.convert_only {
            "Converted"
        } else {
            "Running"
        },
    )
    .await
}

/// Removes `path` if it is there; whether it was.
fn remove_if_there(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(UserError::fail(format!(
            "cannot remove the converted disk {}: {e}",
            path.display()
        ))),
    }
}

pub async fn rollback(client: &Client, conn: &Resolved, args: &RollbackArgs) -> Result<()> {
    let project = project(conn);
    let plan = read_plan(client, &project, &args.plan).await?;
    let wave = find_wave(&plan, &project, args.wave)?;
    let dir = disk_dir(args.disk_dir.as_ref(), &plan);
    let in_wave: BTreeSet<&str> = wave.vms.iter().map(String::as_str).collect();

    // 1. The wave's Workloads: those `run` labelled with one of the wave's VMs.
    let labelled = client
        .list_all(
            WORKLOAD,
            Some(&project),
            &ListOptions {
                label_selector: Some(VM_LABEL.to_string()),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot list the Workloads of project {project}"))?;
    let mut deleted = BTreeSet::new();
    for w in &labelled {
        let vm = w["metadata"]["labels"][VM_LABEL]
            .as_str()
            .unwrap_or_default();
        if !in_wave.contains(vm) {
            continue;
        }
        let name = crate::output::name_of(w).to_string();
        match client.delete(WORKLOAD, Some(&project), &name).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot delete Workload {project}/{name}")));
            }
        }
        eprintln!("workload/{name} deleted (VM {vm})");
        deleted.insert(name);
    }

    // 2. Their VMs stopped: no allocation of them left (the agents stop QEMU first), so no
    // disk is removed under a running guest.
    let deadline = std::time::Instant::now() + args.timeout;
    loop {
        let allocations = client
            .list_all(ALLOCATION, Some(&project), &ListOptions::default())
            .await
            .with_context(|| format!("cannot list the Allocations of project {project}"))?;
        let left: Vec<String> = allocations
            .iter()
            .filter(|a| {
                a["spec"]["workload"]
                    .as_str()
                    .is_some_and(|w| deleted.contains(w))
            })
            .map(|a| {
                format!(
                    "{} on node {}",
                    crate::output::name_of(a),
                    a["spec"]["node"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(UserError::fail(format!(
                "the wave's VMs did not stop within --timeout {:?}: {} still allocated (their nodes' agents stop them); run `meridian migrate rollback` again later, or with a longer --timeout",
                args.timeout,
                left.join(", ")
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // 3. Per VM: converted disks removed, status reset.
    let mut removed_disks = 0;
    let mut reset = 0;
    for vm_name in &wave.vms {
        let object = match client.get(VIRTUAL_MACHINE, Some(&project), vm_name).await {
            Ok(o) => o,
            Err(e) if e.is_not_found() => {
                eprintln!("VirtualMachine {project}/{vm_name} no longer exists: skipped");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let vm: VirtualMachine = decode(object.clone(), "VirtualMachine")?;
        let status = vm.status.clone().unwrap_or_default();
        if status.plan.as_deref().is_some_and(|p| p != args.plan) {
            eprintln!(
                "VM {}: run by MigrationPlan {}, not {}: left as it is",
                vm.spec.name,
                status.plan.as_deref().unwrap_or_default(),
                args.plan
            );
            continue;
        }
        if !args.keep_disks {
            // What the status lists, and what `run` writes (an interrupted run converts
            // disks before it records them).
            let mut disks: BTreeSet<PathBuf> = status.disks.iter().map(PathBuf::from).collect();
            if let Some(dir) = &dir {
                disks.extend((0..vm.spec.disks.len()).map(|i| target_disk(dir, vm_name, i)));
            }
            for disk in &disks {
                let name = disk.to_string_lossy();
                if !name.ends_with(".qcow2") {
                    eprintln!(
                        "VM {}: {} is not a disk `migrate run` writes: left in place",
                        vm.spec.name,
                        disk.display()
                    );
                    continue;
                }
                for file in [disk.clone(), migrate::convert::part_path(disk)] {
                    if remove_if_there(&file)? {
                        eprintln!("VM {}: removed {}", vm.spec.name, file.display());
                        removed_disks += 1;
                    }
                }
                // The VM's directory goes once empty (`remove_dir` refuses a non-empty one).
                if let Some(parent) = disk.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
        if vm.status.is_some_and(|s| s != Default::default()) {
            let mut object = object;
            object["status"] = json!({});
            client
                .replace_status(VIRTUAL_MACHINE, Some(&project), vm_name, &object)
                .await
                .with_context(|| {
                    format!("cannot reset the status of VirtualMachine {project}/{vm_name}")
                })?;
            reset += 1;
        }
    }
    set_wave_phase(client, &project, &args.plan, args.wave, "Planned").await?;
    println!(
        "rolled back wave {} of MigrationPlan {project}/{}: {} workload(s) deleted, {} disk file(s) removed{}, {} VirtualMachine status(es) reset",
        args.wave,
        args.plan,
        deleted.len(),
        removed_disks,
        if args.keep_disks {
            " (--keep-disks)"
        } else {
            ""
        },
        reset
    );
    Ok(())
}
