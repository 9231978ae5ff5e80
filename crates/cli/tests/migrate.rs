//! `meridian migrate import|assess|plan` against a real server: an RVTools CSV export and an
//! OVF import idempotently, a bad row is named and the rest imported, readiness per site
//! comes from the server's what-if placement (residency from the plan's mapping rules),
//! and the plan writes waves and a self-contained HTML report. End to end on a real guest:
//! a bootable disk converted from VMDK by `migrate run` boots through a real agent's qemu
//! driver, and `migrate rollback` undoes the wave (needs the tools `support/guest.rs`
//! lists; a missing one fails the test).

use std::time::Duration;

use testkit::{ServerProcess, failed, ok, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_meridian");

const ESTATE: &str = r#"
apiVersion: meridian.dev/v1
kind: Site
metadata: {name: onprem-frankfurt}
spec:
  provider: onprem
  region: frankfurt
  jurisdiction: DE
  operator: {name: Example Bank AG, jurisdiction: DE}
  pricing: {cpuCoreHour: 0.031, memoryGiBHour: 0.004}
---
apiVersion: meridian.dev/v1
kind: Site
metadata: {name: aws-us-east-1}
spec:
  provider: aws
  region: us-east-1
  jurisdiction: US
  operator: {name: Amazon, jurisdiction: US}
  pricing: {cpuCoreHour: 0.048, memoryGiBHour: 0.006}
---
apiVersion: meridian.dev/v1
kind: Node
metadata: {name: fra-kvm-01}
spec:
  site: onprem-frankfurt
  os: {family: linux, distro: rhel, version: "9.4"}
  arch: amd64
  capacity: {cpu: 64, memory: 512Gi}
  allocatable: {cpu: 62, memory: 496Gi}
  drivers: [exec, qemu]
---
apiVersion: meridian.dev/v1
kind: Node
metadata: {name: use-kvm-01}
spec:
  site: aws-us-east-1
  os: {family: linux, distro: rhel, version: "9.4"}
  arch: amd64
  capacity: {cpu: 64, memory: 512Gi}
  allocatable: {cpu: 62, memory: 496Gi}
  drivers: [exec, qemu]
---
apiVersion: meridian.dev/v1
kind: MigrationPlan
metadata: {name: q1}
spec:
  targets: [onprem-frankfurt, aws-us-east-1]
  mapping:
    - match: {folder: /Finance}
      classification: personal
      residency: [EU]
  bandwidthMbps: 1000
  waves: {maxVms: 2}
  maintenanceWindows:
    - {start: "2027-01-09T22:00:00Z", duration: 8h}
"#;

const OVF: &str = r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="f1" ovf:href="appliance-1.vmdk"/></References>
  <DiskSection><Info>d</Info><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^30"/></DiskSection>
  <VirtualSystem ovf:id="appliance">
    <Info>a</Info>
    <Name>appliance</Name>
    <OperatingSystemSection ovf:id="101"><Info>o</Info><Description>Ubuntu Linux (64-bit)</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>h</Info>
      <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#;

#[test]
fn import_assess_and_plan() {
    let s = ServerProcess::start(BIN, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    s.apply(dir.path(), "estate.yaml", ESTATE);
    s.mark_nodes_ready();

    let csv = dir.path().join("export");
    std::fs::create_dir(&csv).unwrap();
    std::fs::write(
        csv.join("RVTools_tabvInfo.csv"),
        "VM,CPUs,Memory,Folder,VM UUID,OS according to the VMware Tools,Template,CBT\n\
         payroll-db,4,8192,/Finance/Payroll,4210c3e5-0000-0000-0000-000000000001,Red Hat Enterprise Linux 8 (64-bit),False,True\n\
         lab-01,2,2048,/Lab,4210c3e5-0000-0000-0000-000000000002,Ubuntu Linux (64-bit),False,True\n\
         broken,many,2048,/Lab,4210c3e5-0000-0000-0000-000000000003,,False,True\n",
    )
    .unwrap();
    std::fs::write(
        csv.join("RVTools_tabvDisk.csv"),
        "VM,Disk,Capacity MiB,Raw,VM UUID\n\
         payroll-db,Hard disk 1,40960,False,4210c3e5-0000-0000-0000-000000000001\n\
         lab-01,Hard disk 1,20480,False,4210c3e5-0000-0000-0000-000000000002\n",
    )
    .unwrap();
    let ovf = dir.path().join("appliance.ovf");
    std::fs::write(&ovf, OVF).unwrap();
    let args = [
        "migrate",
        "import",
        csv.to_str().unwrap(),
        ovf.to_str().unwrap(),
    ];

    // Dry run: no server writes.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = s.cli(&dry);
    assert!(
        stdout(&out).contains("3 VirtualMachines would be written"),
        "{}",
        stderr(&out)
    );

    // The bad row is named; the rest is imported; exit code 1 says something was refused.
    let out = failed(&s.cli(&args));
    assert!(
        out.contains("RVTools_tabvInfo.csv, sheet vInfo, row 4, column 2 (CPUs): error: \"many\" is not a number"),
        "{out}"
    );
    let out2 = s.cli(&args);
    assert!(
        stdout(&out2).contains("imported 3 VMs into project default")
            && stdout(&out2).contains("0 created, 0 updated, 3 unchanged"),
        "re-import is idempotent: {}",
        stdout(&out2)
    );
    let table = ok(&s.cli(&["get", "virtualmachines"]));
    assert!(
        table.contains("vm-4210c3e5-0000-0000-0000-000000000001"),
        "{table}"
    );
    assert!(
        table.contains("payroll-db") && table.contains("appliance"),
        "{table}"
    );

    // Readiness per site: the Finance VM's EU residency rules out the US site (the
    // placement engine's what-if says so); the lab VM may go anywhere.
    let json = ok(&s.cli(&["migrate", "assess", "--plan", "q1", "-o", "json"]));
    let assessed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let find = |name: &str, site: &str| {
        let vm = assessed
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {json}"));
        vm["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["site"] == site)
            .cloned()
            .unwrap()
    };
    let us = find("payroll-db", "aws-us-east-1");
    assert_eq!(us["readiness"], "Not ready", "{us}");
    assert!(us["reasons"].to_string().contains("residency"), "{us}");
    let de = find("payroll-db", "onprem-frankfurt");
    assert_ne!(de["readiness"], "Not ready", "{de}");
    assert!(de["monthlyCost"].as_f64().unwrap() > 0.0, "{de}");
    let lab_us = find("lab-01", "aws-us-east-1");
    assert_ne!(lab_us["readiness"], "Not ready", "{lab_us}");

    let table = ok(&s.cli(&["migrate", "assess", "--plan", "q1"]));
    assert!(table.lines().next().unwrap().starts_with("VM"), "{table}");

    // Waves (at most 2 VMs each), the HTML report, the plan's status.
    let html = dir.path().join("report.html");
    let waves = ok(&s.cli(&[
        "migrate",
        "plan",
        "--plan",
        "q1",
        "--html",
        html.to_str().unwrap(),
    ]));
    assert!(waves.starts_with("WAVE"), "{waves}");
    assert!(waves.contains("2027-01-09T22:00:00Z for 8h"), "{waves}");
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(
        report.contains("<h2>Waves</h2>") && report.contains("payroll-db"),
        "{report}"
    );
    assert!(
        !report.contains("src=") && !report.contains("href="),
        "no external assets"
    );
    let plan = ok(&s.cli(&["get", "migrationplan", "q1", "-o", "json"]));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let planned: usize = plan["status"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["vms"].as_array().unwrap().len())
        .sum();
    assert_eq!(planned, 3, "{plan}");
    let csv_out = ok(&s.cli(&["migrate", "plan", "--plan", "q1", "-o", "csv"]));
    assert!(csv_out.starts_with("wave,vm,name"), "{csv_out}");
}

#[path = "../../agent/tests/support/guest.rs"]
mod guest;

/// An OVF descriptor for one small VM whose only disk is `boot.vmdk`.
const BOOT_OVF: &str = r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="f1" ovf:href="boot.vmdk"/></References>
  <DiskSection><Info>d</Info><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="32" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#monolithicSparse"/></DiskSection>
  <VirtualSystem ovf:id="tiny-linux">
    <Info>a</Info>
    <Name>tiny-linux</Name>
    <OperatingSystemSection ovf:id="101"><Info>o</Info><Description>Other Linux (64-bit)</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>h</Info>
      <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>128</rasd:VirtualQuantity></Item>
      <Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#;

fn json_of(s: &ServerProcess, args: &[&str]) -> serde_json::Value {
    let out = ok(&s.cli(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Kills a QEMU by pid if the test fails while it runs (a VM outlives its agent by design).
struct KillOnPanic(std::cell::Cell<Option<u32>>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if let Some(pid) = self.0.get()
            && std::thread::panicking()
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// The whole journey on a real guest: a bootable raw disk (MBR, FAT partition, SYSLINUX,
/// the Debian cloud kernel and a busybox initramfs) converted to VMDK as an export would
/// hold it, imported from an OVF, assessed, planned, then `migrate run --wave 1` converts
/// it to qcow2 and runs it through a real agent's qemu driver (TCG): the guest boots from
/// the converted disk — no `-kernel`: the BIOS runs SYSLINUX from it — and prints its
/// marker on the serial console. `migrate rollback` then stops and deletes it, removes the
/// converted disk, resets the statuses; it is idempotent, the wave runs again, and the
/// source files are byte-identical throughout.
#[test]
fn a_converted_vm_boots_from_its_disk_and_rolls_back() {
    use testkit::{AgentProcess, examples_dir, wait_until};
    guest::check_tools();
    guest::check_boot_tools();
    let (kernel, modules) = guest::cloud_kernel();
    let qemu_img_runs = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    guest::need("qemu-img", qemu_img_runs, "qemu-utils");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // The export: the VMDK and its OVF descriptor.
    let initrd = guest::initramfs(dir, &modules, true);
    let raw = guest::bootable_disk(dir, "boot.raw", &kernel, &initrd);
    let source = dir.join("export");
    std::fs::create_dir(&source).unwrap();
    let vmdk = source.join("boot.vmdk");
    let converted = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vmdk"])
        .arg(&raw)
        .arg(&vmdk)
        .status()
        .expect("qemu-img runs");
    assert!(converted.success());
    let ovf = source.join("tiny-linux.ovf");
    std::fs::write(&ovf, BOOT_OVF).unwrap();
    let originals: Vec<(std::path::PathBuf, Vec<u8>)> = [&vmdk, &ovf]
        .iter()
        .map(|p| ((*p).clone(), std::fs::read(p).unwrap()))
        .collect();
    let untouched = || {
        for (path, bytes) in &originals {
            assert!(
                std::fs::read(path).unwrap() == *bytes,
                "{} changed",
                path.display()
            );
        }
    };

    // A server, one real agent joined at onprem-frankfurt, the plan.
    let s = ServerProcess::start(BIN, &["--node-lease", "5s"]);
    ok(&s.cli(&[
        "apply",
        "-f",
        examples_dir().join("sites.yaml").to_str().unwrap(),
    ]));
    let token = s.join_token("onprem-frankfurt");
    let agent_dir = dir.join("h");
    let _agent = AgentProcess::start(&s, &agent_dir, "kvm-1", Some(token.trim()));
    wait_until(Duration::from_secs(30), "the agent is Ready", || {
        let out = stdout(&s.cli(&["get", "nodes"]));
        if out.contains("Ready") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let disks = dir.join("disks");
    s.apply(
        dir,
        "plan.yaml",
        &format!(
            "apiVersion: meridian.dev/v1\nkind: MigrationPlan\nmetadata: {{name: boot, namespace: default}}\n\
             spec:\n  targets: [onprem-frankfurt]\n  storagePath: {}\n",
            disks.display()
        ),
    );

    // Import, assess, plan.
    let out = ok(&s.cli(&["migrate", "import", ovf.to_str().unwrap()]));
    assert!(out.contains("1 created"), "{out}");
    let vms = json_of(&s, &["get", "virtualmachines", "-o", "json"]);
    let vm = vms["items"][0].clone();
    let vm_name = vm["metadata"]["name"].as_str().unwrap().to_string();
    let uuid = vm["spec"]["uuid"].as_str().unwrap().to_string();
    let assessed = json_of(&s, &["migrate", "assess", "--plan", "boot", "-o", "json"]);
    let target = &assessed[0]["targets"][0];
    assert_eq!(target["site"], "onprem-frankfurt", "{assessed}");
    assert_eq!(target["node"], "kvm-1", "{assessed}");
    assert!(
        ["Ready", "Conditionally ready"].contains(&target["readiness"].as_str().unwrap()),
        "{assessed}"
    );
    ok(&s.cli(&["migrate", "plan", "--plan", "boot"]));

    // Bad input: named.
    let err = failed(&s.cli(&["migrate", "run", "nope", "--wave", "1", "--source-dir", "/"]));
    assert!(
        err.contains("MigrationPlan default/nope does not exist"),
        "{err}"
    );
    let err = failed(&s.cli(&["migrate", "rollback", "boot", "--wave", "7"]));
    assert!(
        err.contains("--wave 7") && err.contains("has no wave 7"),
        "{err}"
    );
    let err = failed(&s.cli(&["migrate", "rollback", "nope", "--wave", "1"]));
    assert!(
        err.contains("MigrationPlan default/nope does not exist"),
        "{err}"
    );

    // Run wave 1: converted, then running as a `vm` Workload.
    let out = ok(&s.cli(&[
        "migrate",
        "run",
        "boot",
        "--wave",
        "1",
        "--source-dir",
        source.to_str().unwrap(),
    ]));
    let workload = format!("mig-{vm_name}");
    assert!(
        out.contains(&format!("tiny-linux: running as workload/{workload}")),
        "{out}"
    );
    let qcow2 = disks.join(&vm_name).join("disk0.qcow2");
    assert!(qcow2.is_file(), "{} converted", qcow2.display());
    untouched();

    // The VirtualMachine links to its Workload, the Workload back to the source VM.
    let status = json_of(&s, &["get", "virtualmachine", &vm_name, "-o", "json"])["status"].clone();
    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(status["workload"], workload.as_str(), "{status}");
    assert_eq!(status["plan"], "boot", "{status}");
    assert_eq!(status["wave"], 1, "{status}");
    assert_eq!(status["disks"][0], qcow2.to_str().unwrap(), "{status}");
    let w = json_of(&s, &["get", "workload", &workload, "-o", "json"]);
    assert_eq!(
        w["metadata"]["labels"]["migrate.meridian.dev/vm"],
        vm_name.as_str()
    );
    assert_eq!(
        w["metadata"]["annotations"]["migrate.meridian.dev/source-uuid"],
        uuid.as_str()
    );
    assert_eq!(w["spec"]["task"]["disk"]["image"], qcow2.to_str().unwrap());
    let plan = json_of(&s, &["get", "migrationplan", "boot", "-o", "json"]);
    assert_eq!(plan["status"]["waves"][0]["phase"], "Running", "{plan}");

    // The guest boots from the converted disk: the allocation runs, QEMU has the qcow2 as
    // its drive and no kernel of its own, and the console shows SYSLINUX, then the marker.
    let allocation = format!("{workload}-0");
    wait_until(
        Duration::from_secs(60),
        "the VM's allocation running",
        || {
            let out = stdout(&s.cli(&["get", "allocation", &allocation, "-o", "json"]));
            match serde_json::from_str::<serde_json::Value>(&out) {
                Ok(a) if a["status"]["phase"] == "running" => Ok(()),
                _ => Err(out),
            }
        },
    );
    let slot = agent_dir.join(format!("allocations/default_{allocation}"));
    let guard = KillOnPanic(std::cell::Cell::new(None));
    let pid: u32 = wait_until(Duration::from_secs(30), "QEMU's pid file", || {
        std::fs::read_to_string(slot.join("qemu.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or(())
    });
    guard.0.set(Some(pid));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains(&format!("file={},format=qcow2", qcow2.display())),
        "{cmdline}"
    );
    assert!(!cmdline.contains("-kernel"), "{cmdline}");
    let console = slot.join("stdout.log");
    let text = wait_until(
        Duration::from_secs(120),
        "GUEST-READY on the converted guest's console",
        || match std::fs::read_to_string(&console) {
            Ok(text) if text.contains("GUEST-READY") => Ok(text),
            other => Err(other.map(|t| {
                t.lines()
                    .rev()
                    .take(10)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })),
        },
    );
    assert!(
        text.contains("SYSLINUX"),
        "the BIOS booted the disk's loader: {text}"
    );

    // Roll back: the VM stops, its Workload and converted disk go, the statuses reset.
    let out = ok(&s.cli(&["migrate", "rollback", "boot", "--wave", "1"]));
    assert!(
        out.contains("1 workload(s) deleted") && out.contains("1 VirtualMachine status(es) reset"),
        "{out}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || !std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .windows(4)
                .any(|w| w == b"qemu"),
        "QEMU stopped"
    );
    guard.0.set(None);
    assert!(
        !qcow2.exists() && !disks.join(&vm_name).exists(),
        "converted disk removed"
    );
    let err = failed(&s.cli(&["get", "workload", &workload]));
    assert!(err.contains("not found"), "{err}");
    let vm = json_of(&s, &["get", "virtualmachine", &vm_name, "-o", "json"]);
    assert!(
        vm["status"].as_object().is_none_or(|o| o.is_empty()),
        "{vm}"
    );
    let plan = json_of(&s, &["get", "migrationplan", "boot", "-o", "json"]);
    assert_eq!(plan["status"]["waves"][0]["phase"], "Planned", "{plan}");
    untouched();

    // Idempotent: nothing left to undo.
    let out = ok(&s.cli(&["migrate", "rollback", "boot", "--wave", "1"]));
    assert!(
        out.contains("0 workload(s) deleted, 0 disk file(s) removed")
            && out.contains("0 VirtualMachine status(es) reset"),
        "{out}"
    );

    // The wave runs again; a rollback with --keep-disks keeps the converted disk, which
    // the next rollback removes.
    let out = ok(&s.cli(&[
        "migrate",
        "run",
        "boot",
        "--wave",
        "1",
        "--source-dir",
        source.to_str().unwrap(),
    ]));
    assert!(out.contains("running as workload/"), "{out}");
    let out = ok(&s.cli(&["migrate", "rollback", "boot", "--wave", "1", "--keep-disks"]));
    assert!(
        out.contains("1 workload(s) deleted, 0 disk file(s) removed (--keep-disks)"),
        "{out}"
    );
    assert!(qcow2.is_file());
    let out = ok(&s.cli(&["migrate", "rollback", "boot", "--wave", "1"]));
    assert!(
        out.contains("0 workload(s) deleted, 1 disk file(s) removed"),
        "{out}"
    );
    assert!(!qcow2.exists());
    untouched();
}

/// A site with room for 100 one-vCPU VMs and an estate of 600: the assessment's what-if
/// placement (bodies of 500) counts the site's free room once over all of them, and the
/// waves hold exactly what fits, the rest left out saying why. Before the bodies were
/// chained, the second body saw the whole site free again (200 VMs "placed"), and the
/// waves took every VM, capacity or not.
#[test]
fn assessment_and_waves_never_overcommit_a_site() {
    const VMS: usize = 600;
    let s = ServerProcess::start(BIN, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    s.apply(
        dir.path(),
        "estate.yaml",
        r#"
apiVersion: meridian.dev/v1
kind: Site
metadata: {name: small-dc}
spec:
  provider: onprem
  region: frankfurt
  jurisdiction: DE
  operator: {name: Example Bank AG, jurisdiction: DE}
---
apiVersion: meridian.dev/v1
kind: Node
metadata: {name: small-kvm-01}
spec:
  site: small-dc
  os: {family: linux, distro: debian, version: "12"}
  arch: amd64
  capacity: {cpu: 100, memory: 2000Gi}
  allocatable: {cpu: 100, memory: 2000Gi}
  drivers: [exec, qemu]
---
apiVersion: meridian.dev/v1
kind: MigrationPlan
metadata: {name: big}
spec:
  targets: [small-dc]
  waves: {maxVms: 40}
"#,
    );
    s.mark_nodes_ready();
    let csv = dir.path().join("export");
    std::fs::create_dir(&csv).unwrap();
    let mut info = String::from(
        "VM,CPUs,Memory,Folder,VM UUID,OS according to the VMware Tools,Template,CBT\n",
    );
    let mut disks = String::from("VM,Disk,Capacity MiB,Raw,VM UUID\n");
    for i in 0..VMS {
        let uuid = format!("4210c3e5-0000-0000-0001-{i:012}");
        info.push_str(&format!(
            "app-{i:03},1,1024,/apps/{i:03},{uuid},Ubuntu Linux (64-bit),False,True\n"
        ));
        disks.push_str(&format!("app-{i:03},Hard disk 1,10240,False,{uuid}\n"));
    }
    std::fs::write(csv.join("RVTools_tabvInfo.csv"), info).unwrap();
    std::fs::write(csv.join("RVTools_tabvDisk.csv"), disks).unwrap();
    let out = ok(&s.cli(&["migrate", "import", csv.to_str().unwrap()]));
    assert!(out.contains(&format!("{VMS} created")), "{out}");

    let assessed = json_of(&s, &["migrate", "assess", "--plan", "big", "-o", "json"]);
    let assessed = assessed.as_array().unwrap();
    assert_eq!(assessed.len(), VMS);
    let placed = assessed
        .iter()
        .filter(|v| !v["targets"][0]["node"].is_null())
        .count();
    assert_eq!(placed, 100, "the site has room for 100 one-vCPU VMs");
    let waiting = assessed
        .iter()
        .find(|v| v["targets"][0]["node"].is_null())
        .unwrap();
    assert!(
        waiting["targets"][0]["reasons"]
            .to_string()
            .contains("lacks free capacity"),
        "{waiting}"
    );

    let plan = json_of(&s, &["migrate", "plan", "--plan", "big", "-o", "json"]);
    let cpus: u64 = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["cpus"].as_u64().unwrap())
        .sum();
    assert_eq!(cpus, 100, "the waves hold what fits the site: {plan}");
    let excluded = plan["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), VMS - 100);
    assert!(
        excluded[0].to_string().contains("no free capacity"),
        "{}",
        excluded[0]
    );
}

/// Two sites with room for 100 one-vCPU VMs each and 150 VMs: the assessment counts each
/// site as if the whole estate moved there (so the same 100 VMs fit at both), but the plan
/// places each VM at one site only: the cheaper site takes 100, the other the remaining
/// 50, and `migrate run` would place each VM at its planned site.
#[test]
fn the_plan_fills_the_next_site_when_the_best_is_full() {
    const VMS: usize = 150;
    let s = ServerProcess::start(BIN, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut estate = String::new();
    for (site, price) in [("cheap-dc", "0.02"), ("dear-dc", "0.05")] {
        estate.push_str(&format!(
            "apiVersion: meridian.dev/v1\nkind: Site\nmetadata: {{name: {site}}}\n\
             spec:\n  provider: onprem\n  region: r\n  jurisdiction: DE\n  operator: {{name: Example Bank AG, jurisdiction: DE}}\n\
             \x20 pricing: {{cpuCoreHour: {price}, memoryGiBHour: 0.004}}\n---\n\
             apiVersion: meridian.dev/v1\nkind: Node\nmetadata: {{name: {site}-kvm}}\n\
             spec:\n  site: {site}\n  os: {{family: linux, distro: debian, version: \"12\"}}\n  arch: amd64\n\
             \x20 capacity: {{cpu: 100, memory: 2000Gi}}\n  allocatable: {{cpu: 100, memory: 2000Gi}}\n  drivers: [qemu]\n---\n"
        ));
    }
    estate.push_str(
        "apiVersion: meridian.dev/v1\nkind: MigrationPlan\nmetadata: {name: two}\n\
         spec:\n  targets: [cheap-dc, dear-dc]\n  waves: {maxVms: 50}\n",
    );
    s.apply(dir.path(), "estate.yaml", &estate);
    s.mark_nodes_ready();
    let csv = dir.path().join("export");
    std::fs::create_dir(&csv).unwrap();
    let mut info = String::from(
        "VM,CPUs,Memory,Folder,VM UUID,OS according to the VMware Tools,Template,CBT\n",
    );
    for i in 0..VMS {
        info.push_str(&format!(
            "web-{i:03},1,1024,/web/{i:03},4210c3e5-0000-0000-0002-{i:012},Ubuntu Linux (64-bit),False,True\n"
        ));
    }
    std::fs::write(csv.join("RVTools_tabvInfo.csv"), info).unwrap();
    ok(&s.cli(&["migrate", "import", csv.to_str().unwrap()]));

    let plan = json_of(&s, &["migrate", "plan", "--plan", "two", "-o", "json"]);
    let mut per_site: std::collections::BTreeMap<String, usize> = Default::default();
    for w in plan["waves"].as_array().unwrap() {
        for v in w["vms"].as_array().unwrap() {
            *per_site
                .entry(v["site"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(
        per_site,
        [("cheap-dc".to_string(), 100), ("dear-dc".to_string(), 50)].into(),
        "{plan}"
    );
    assert!(plan["excluded"].as_array().unwrap().is_empty(), "{plan}");
    // The plan's status records each VM's site, for `migrate run`.
    let stored = json_of(&s, &["get", "migrationplan", "two", "-o", "json"]);
    let sites: usize = stored["status"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["sites"].as_object().unwrap().len())
        .sum();
    assert_eq!(sites, VMS, "{stored}");
}
