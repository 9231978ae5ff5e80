//! `meridian migrate import|assess|plan` against a real server: an RVTools CSV export and an
//! OVF import idempotently, a bad row is named and the rest imported, readiness per site
//! comes from the server's what-if placement (residency from the plan's mapping rules),
//! and the plan writes waves and a self-contained HTML report.

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
