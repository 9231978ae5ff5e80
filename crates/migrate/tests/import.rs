//! Imports of generated RVTools workbooks (both column generations), CSV exports and
//! hand-written OVF descriptors and OVA archives, good and bad.

use std::path::{Path, PathBuf};

use migrate::{ImportOptions, Inventory, Severity, read_all, sources_for};
use rust_xlsxwriter::{Format, Workbook};

/// A cell to write.
#[derive(Clone)]
enum V {
    S(&'static str),
    N(f64),
    B(bool),
}
use V::{B, N, S};

fn write_xlsx(path: &Path, sheets: &[(&str, Vec<Vec<V>>)]) {
    let mut book = Workbook::new();
    for (name, rows) in sheets {
        let ws = book.add_worksheet();
        ws.set_name(*name).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let (r, c) = (r as u32, c as u16);
                match v {
                    S("") => {}
                    S(s) => {
                        ws.write_string(r, c, *s).unwrap();
                    }
                    N(n) => {
                        ws.write_number(r, c, *n).unwrap();
                    }
                    B(b) => {
                        ws.write_boolean(r, c, *b).unwrap();
                    }
                }
            }
        }
    }
    book.save(path).unwrap();
}

fn import(paths: &[PathBuf], options: &ImportOptions) -> Inventory {
    let sources = sources_for(paths).unwrap();
    read_all(&sources, options)
}

/// vInfo of the RVTools 4.x generation (`MiB`), and of the older one (`MB`, other case).
fn info(generation_mib: bool) -> Vec<Vec<V>> {
    let (prov, inuse) = if generation_mib {
        ("Provisioned MiB", "In Use MiB")
    } else {
        ("Provisioned MB", "In use MB")
    };
    vec![
        vec![
            S("VM"),
            S("Powerstate"),
            S("Template"),
            S("SRM Placeholder"),
            S("CPUs"),
            S("Memory"),
            S(prov),
            S(inuse),
            S("CBT"),
            S("Firmware"),
            S("EFI Secure boot"),
            S("Annotation"),
            S("Datacenter"),
            S("Cluster"),
            S("Host"),
            S("Folder"),
            S(if generation_mib {
                "OS according to the configuration file"
            } else {
                "OS ACCORDING TO THE VMWARE TOOLS"
            }),
            S("VM UUID"),
            S("VI SDK Server"),
        ],
        vec![
            S("web-01"),
            S("poweredOn"),
            B(false),
            B(false),
            N(4.0),
            N(8192.0),
            N(61440.0),
            N(30000.0),
            B(true),
            S("efi"),
            B(true),
            S("app=payroll"),
            S("DC-Frankfurt"),
            S("Prod"),
            S("esx01"),
            S("/Finance/Payroll"),
            S("Microsoft Windows Server 2012 (64-bit)"),
            S("4210c3e5-1b2f-4a3d-9e8f-0123456789ab"),
            S("vc01.example.com"),
        ],
        // A short row: ends after Memory.
        vec![
            S("db_02"),
            S("poweredOff"),
            S("False"),
            S("False"),
            N(2.0),
            N(4096.0),
        ],
        // A template and an SRM placeholder: skipped by default.
        vec![
            S("tmpl-rhel9"),
            S("poweredOff"),
            B(true),
            B(false),
            N(2.0),
            N(2048.0),
        ],
        vec![
            S("srm-web"),
            S("poweredOff"),
            B(false),
            B(true),
            N(2.0),
            N(2048.0),
        ],
        // A bad row: CPUs is not a number.
        vec![
            S("broken"),
            S("poweredOn"),
            B(false),
            B(false),
            S("four"),
            N(1024.0),
        ],
    ]
}

fn with_uuids(mut rows: Vec<Vec<V>>) -> Vec<Vec<V>> {
    // The short rows get UUIDs in column R (17) so they are identifiable.
    let uuids = [
        "",
        "",
        "5e3a0000-0000-0000-0000-000000000002",
        "5e3a0000-0000-0000-0000-000000000003",
        "5e3a0000-0000-0000-0000-000000000004",
        "5e3a0000-0000-0000-0000-000000000005",
    ];
    for (i, row) in rows.iter_mut().enumerate().skip(2) {
        while row.len() < 17 {
            row.push(S(""));
        }
        row.push(S(uuids[i]));
    }
    rows
}

fn children(mib: bool) -> Vec<(&'static str, Vec<Vec<V>>)> {
    let cap = if mib { "Capacity MiB" } else { "Capacity MB" };
    vec![
        (
            "vDisk",
            vec![
                vec![
                    S("VM"),
                    S("Disk"),
                    S(cap),
                    S("Disk Mode"),
                    S("Sharing mode"),
                    S("Thin"),
                    S("Raw"),
                    S("Raw Comp. Mode"),
                    S("VM UUID"),
                ],
                vec![
                    S("web-01"),
                    S("Hard disk 1"),
                    N(40960.0),
                    S("persistent"),
                    S("sharingNone"),
                    B(true),
                    B(false),
                    S(""),
                    S("4210c3e5-1b2f-4a3d-9e8f-0123456789ab"),
                ],
                vec![
                    S("web-01"),
                    S("Hard disk 2"),
                    N(20480.0),
                    S("independent_persistent"),
                    S("sharingMultiWriter"),
                    B(false),
                    B(true),
                    S("physicalMode"),
                    S("4210c3e5-1b2f-4a3d-9e8f-0123456789ab"),
                ],
                // Joined by name (no UUID in the row).
                vec![S("db_02"), S("Hard disk 1"), N(10240.0)],
                // A bad capacity: reported, the disk kept with size 0.
                vec![S("db_02"), S("Hard disk 2"), S("big")],
                // A VM that is not in vInfo.
                vec![S("ghost"), S("Hard disk 1"), N(1.0)],
                // A disk of a skipped template: silently ignored.
                vec![S("tmpl-rhel9"), S("Hard disk 1"), N(1.0)],
            ],
        ),
        (
            "vSnapshot",
            vec![
                vec![S("VM"), S("Name"), S("Size MiB (total)")],
                vec![S("web-01"), S("before-patch"), N(2048.0)],
            ],
        ),
        (
            "vNetwork",
            vec![
                vec![
                    S("VM"),
                    S("NIC label"),
                    S("Adapter"),
                    S("Network"),
                    S("Connected"),
                ],
                vec![
                    S("web-01"),
                    S("Network adapter 1"),
                    S("vmxnet3"),
                    S("VLAN-100"),
                    B(true),
                ],
                vec![
                    S("web-01"),
                    S("Network adapter 2"),
                    S("SR-IOV passthrough"),
                    S("VLAN-200"),
                    B(true),
                ],
            ],
        ),
        (
            "vCPU",
            vec![
                vec![
                    S("VM"),
                    S("Cores p/s"),
                    S("Hot Add"),
                    S("Overall"),
                    S("Max"),
                ],
                vec![S("web-01"), N(2.0), B(true), N(1200.0), N(9600.0)],
            ],
        ),
        (
            "vMemory",
            vec![
                vec![S("VM"), S("Hot Add"), S("Active")],
                vec![S("web-01"), B(false), N(2048.0)],
            ],
        ),
        (
            "vPartition",
            vec![
                vec![
                    S("VM"),
                    S("Disk"),
                    S(cap),
                    S(if mib { "Free MiB" } else { "Free MB" }),
                ],
                vec![S("web-01"), S("C:\\"), N(40000.0), N(1000.0)],
            ],
        ),
        (
            "vTools",
            vec![
                vec![S("VM"), S("Tools"), S("Tools Version")],
                vec![S("web-01"), S("toolsOld"), S("11265")],
            ],
        ),
        (
            "vUSB",
            vec![
                vec![S("VM"), S("Device")],
                vec![S("db_02"), S("USB dongle")],
            ],
        ),
        (
            "vHost",
            vec![
                vec![S("Host"), S("Datacenter")],
                vec![S("esx01"), S("DC-Frankfurt")],
            ],
        ),
    ]
}

fn workbook(dir: &Path, mib: bool) -> PathBuf {
    let path = dir.join(if mib {
        "rvtools4.xlsx"
    } else {
        "rvtools3.xlsx"
    });
    let mut sheets = vec![("vInfo", with_uuids(info(mib)))];
    sheets.extend(children(mib));
    write_xlsx(&path, &sheets);
    path
}

fn check_estate(inv: &Inventory, mib: bool) {
    let names: Vec<&str> = inv.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["web-01", "db_02"], "{:#?}", inv.issues);
    assert_eq!(inv.skipped_templates, 2);
    let web = &inv.vms[0];
    assert_eq!(web.uuid, "4210c3e5-1b2f-4a3d-9e8f-0123456789ab");
    assert_eq!((web.cpus, web.memory_mib), (4, 8192));
    assert_eq!(web.cores_per_socket, Some(2));
    assert_eq!(web.cpu_hot_add, Some(true));
    assert_eq!(web.memory_hot_add, Some(false));
    assert_eq!(web.cbt, Some(true));
    assert_eq!(web.firmware.as_deref(), Some("efi"));
    assert_eq!(web.secure_boot, Some(true));
    assert_eq!(web.source.vcenter.as_deref(), Some("vc01.example.com"));
    assert_eq!(web.source.folder.as_deref(), Some("/Finance/Payroll"));
    assert_eq!(web.disks.len(), 2);
    assert_eq!(web.disks[0].capacity_mib, 40960);
    assert_eq!(web.disks[1].rdm.as_deref(), Some("physical"));
    assert_eq!(web.disks[1].sharing.as_deref(), Some("sharingMultiWriter"));
    assert_eq!(web.disks[1].mode.as_deref(), Some("independent_persistent"));
    assert_eq!(web.snapshots.len(), 1);
    assert_eq!(web.nics.len(), 2);
    assert_eq!(web.passthrough.len(), 1, "SR-IOV adapter");
    assert_eq!(web.partitions[0].free_mib, 1000);
    assert_eq!(
        web.tools.as_ref().unwrap().status.as_deref(),
        Some("toolsOld")
    );
    assert_eq!(web.os.family.as_deref(), Some("windows"));
    if mib {
        assert!(web.os.configured.is_some() && web.os.tools.is_none());
    } else {
        assert!(web.os.tools.is_some() && web.os.configured.is_none());
    }
    let u = web.utilization.as_ref().unwrap();
    assert_eq!(u.cpu_percent, Some(12.5));
    assert_eq!(u.memory_active_mib, Some(2048));
    let db = &inv.vms[1];
    assert_eq!(db.disks.len(), 2, "joined by name");
    assert_eq!(db.usb, Some(true));
    assert_eq!(web.usb, Some(false));

    // The bad rows, each named by sheet, row and column.
    let text: Vec<String> = inv.issues.iter().map(ToString::to_string).collect();
    let find = |needle: &str| {
        text.iter()
            .find(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no issue with {needle:?} in {text:#?}"))
    };
    let cpus = find("\"four\" is not a number");
    assert!(
        cpus.contains("sheet vInfo, row 6, column E (CPUs)"),
        "{cpus}"
    );
    assert!(cpus.contains("refused"), "{cpus}");
    let cap = find("\"big\" is not a number");
    let col = if mib {
        "C (Capacity MiB)"
    } else {
        "C (Capacity MB)"
    };
    assert!(
        cap.contains(&format!("sheet vDisk, row 5, column {col}")),
        "{cap}"
    );
    find("VM \"ghost\" is not in vInfo");
    assert!(!text.iter().any(|t| t.contains("tmpl-rhel9")), "{text:#?}");
    assert_eq!(inv.errors(), 2, "{text:#?}");
}

#[test]
fn rvtools_xlsx_both_generations() {
    let dir = tempfile::tempdir().unwrap();
    for mib in [true, false] {
        let path = workbook(dir.path(), mib);
        let inv = import(&[path], &ImportOptions::default());
        check_estate(&inv, mib);
    }
}

#[test]
fn templates_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path(), true);
    let inv = import(
        &[path],
        &ImportOptions {
            include_templates: true,
            ..Default::default()
        },
    );
    assert_eq!(inv.vms.len(), 4);
    assert!(inv.vms.iter().filter(|v| v.template).count() == 2);
}

#[test]
fn a_declared_million_rows_reads_only_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.xlsx");
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name("vInfo").unwrap();
    for (c, h) in ["VM", "CPUs", "Memory", "VM UUID"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "only").unwrap();
    ws.write_number(1, 1, 1.0).unwrap();
    ws.write_number(1, 2, 512.0).unwrap();
    ws.write_string(1, 3, "00000000-0000-0000-0000-000000000001")
        .unwrap();
    // A formatted blank cell at the bottom makes the sheet declare 1,048,576 rows.
    ws.write_blank(1_048_575, 60, &Format::new().set_bold())
        .unwrap();
    book.save(&path).unwrap();
    let inv = import(&[path], &ImportOptions::default());
    assert_eq!(inv.vms.len(), 1, "{:?}", inv.issues);
    assert_eq!(inv.read, [("vInfo".to_string(), 1)]);
}

#[test]
fn rvtools_csv_one_file_per_sheet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("RVTools_tabvInfo.csv"),
        "\u{feff}VM;CPUs;Memory;Provisioned MB;VM UUID;OS according to the VMware Tools;Template\n\
         app-01;2;4096;1,024;11111111-0000-0000-0000-000000000001;Red Hat Enterprise Linux 6 (64-bit);False\n\
         app-02;x;4096;1024;11111111-0000-0000-0000-000000000002;;False\n\
         tmpl;1;1024;1024;11111111-0000-0000-0000-000000000003;;True\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("RVTools_tabvDisk.csv"),
        "VM;Disk;Capacity MB;VM UUID\napp-01;Hard disk 1;20480;11111111-0000-0000-0000-000000000001\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.csv"), "a,b\n1,2\n").unwrap();
    let inv = import(&[dir.path().to_path_buf()], &ImportOptions::default());
    assert_eq!(inv.vms.len(), 1, "{:#?}", inv.issues);
    assert_eq!(inv.vms[0].os.family.as_deref(), Some("linux"));
    assert_eq!(inv.vms[0].disks[0].capacity_mib, 20480);
    let text: Vec<String> = inv.issues.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("RVTools_tabvInfo.csv, sheet vInfo, row 3, column 2 (CPUs)")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.contains("notes.csv")), "{text:#?}");
    assert_eq!(inv.skipped_templates, 1);
}

const OVF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:id="file1" ovf:href="app-disk1.vmdk" ovf:size="1024"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="16" ovf:capacityAllocationUnits="byte * 2^30" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:diskId="vmdisk2" ovf:capacity="512" ovf:capacityAllocationUnits="byte * 2 ^ 20"/>
  </DiskSection>
  <NetworkSection><Info>n</Info><Network ovf:name="VM Network"/></NetworkSection>
  <DeploymentOptionSection>
    <Info>sizes</Info>
    <Configuration ovf:id="small"><Label>Small</Label></Configuration>
    <Configuration ovf:id="large" ovf:default="true"><Label>Large</Label></Configuration>
  </DeploymentOptionSection>
  <VirtualSystemCollection ovf:id="app-vapp">
    <Info>two tiers</Info>
    <Name>app-vapp</Name>
    <VirtualSystem ovf:id="app">
      <Info>app</Info>
      <Name>app-server</Name>
      <OperatingSystemSection ovf:id="80" vmw:osType="rhel6_64Guest"><Info>os</Info><Description>Red Hat Enterprise Linux 6 (64-bit)</Description></OperatingSystemSection>
      <VirtualHardwareSection>
        <Info>hw</Info>
        <System><vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType></System>
        <Item ovf:configuration="small"><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
        <Item ovf:configuration="large"><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>8</rasd:VirtualQuantity></Item>
        <Item><rasd:AllocationUnits>byte*2^30</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>4</rasd:VirtualQuantity></Item>
        <Item><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:ResourceType>17</rasd:ResourceType></Item>
        <Item><rasd:ElementName>Network adapter 1</rasd:ElementName><rasd:Connection>VM Network</rasd:Connection><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
        <Item><rasd:ElementName>USB controller</rasd:ElementName><rasd:ResourceType>23</rasd:ResourceType></Item>
        <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
        <vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="true"/>
        <vmw:ExtraConfig ovf:required="false" vmw:key="uuid.bios" vmw:value="42 10 aa bb"/>
      </VirtualHardwareSection>
    </VirtualSystem>
    <VirtualSystem ovf:id="db">
      <Info>db</Info>
      <Name>db-server</Name>
      <AnnotationSection><Info>a</Info><Annotation>owner=dba</Annotation></AnnotationSection>
      <VirtualHardwareSection>
        <Info>hw</Info>
        <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>4</rasd:VirtualQuantity></Item>
        <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
        <Item><rasd:HostResource>ovf:/disk/vmdisk2</rasd:HostResource><rasd:ResourceType>17</rasd:ResourceType></Item>
        <Item><rasd:ElementName>PCI device 0</rasd:ElementName><rasd:ResourceSubType>vmware.pcipassthrough</rasd:ResourceSubType><rasd:ResourceType>1</rasd:ResourceType></Item>
      </VirtualHardwareSection>
    </VirtualSystem>
  </VirtualSystemCollection>
</Envelope>
"#;

#[test]
fn ovf_collection_options_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.ovf");
    std::fs::write(&path, OVF).unwrap();
    let inv = import(std::slice::from_ref(&path), &ImportOptions::default());
    assert_eq!(inv.vms.len(), 2, "{:#?}", inv.issues);
    let app = &inv.vms[0];
    assert_eq!(app.cpus, 8, "the default deployment option (large)");
    assert_eq!(app.memory_mib, 4096);
    assert_eq!(app.disks[0].capacity_mib, 16 * 1024);
    assert_eq!(app.disks[0].format.as_deref(), Some("vmdk"));
    assert_eq!(app.disks[0].path.as_deref(), Some("app-disk1.vmdk"));
    assert_eq!(app.firmware.as_deref(), Some("efi"));
    assert_eq!(app.secure_boot, Some(true));
    assert_eq!(app.usb, Some(true));
    assert_eq!(app.uuid, "42 10 aa bb");
    assert_eq!(app.source.vapp.as_deref(), Some("app-vapp"));
    assert_eq!(app.os.family.as_deref(), Some("linux"));
    let db = &inv.vms[1];
    assert_eq!((db.cpus, db.memory_mib), (4, 2048));
    assert_eq!(db.disks[0].capacity_mib, 512);
    assert_eq!(db.passthrough, ["PCI device 0"]);
    assert_eq!(db.annotation.as_deref(), Some("owner=dba"));
    // Same descriptor, same identities.
    let again = import(&[path], &ImportOptions::default());
    assert_eq!(again.vms[1].uuid, db.uuid);

    let small = migrate::ovf::parse_descriptor(
        OVF,
        "app.ovf",
        "ovf",
        &ImportOptions {
            deployment_option: Some("small".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(small.vms[0].cpus, 2);
}

#[test]
fn truncated_ovf_names_line_and_column() {
    let cut = &OVF[..OVF.find("<VirtualSystem ovf:id=\"db\">").unwrap() + 40];
    let err = migrate::ovf::parse_descriptor(cut, "cut.ovf", "ovf", &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cut.ovf:"), "{err}");
    assert!(err.contains("not well-formed XML"), "{err}");
    let line = err.split(':').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(line > 40, "{err}");
}

fn ova(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn ova_manifest_digests_are_checked() {
    use sha2::Digest;
    let disk = b"not really a vmdk".as_slice();
    let sha256 = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let sha1 = |b: &[u8]| hex::encode(sha1::Sha1::digest(b));
    let mf = format!(
        "SHA256(app.ovf)= {}\nSHA1(app-disk1.vmdk)= {}\n",
        sha256(OVF.as_bytes()),
        sha1(disk)
    );
    let good = ova(&[
        ("app.ovf", OVF.as_bytes()),
        ("app.mf", mf.as_bytes()),
        ("app-disk1.vmdk", disk),
    ]);
    let inv =
        migrate::ovf::read_ova(good.as_slice(), "app.ova", &ImportOptions::default()).unwrap();
    assert_eq!(inv.vms.len(), 2);
    assert_eq!(inv.vms[0].source.kind, "ova");

    let bad = ova(&[
        ("app.ovf", OVF.as_bytes()),
        ("app.mf", mf.as_bytes()),
        ("app-disk1.vmdk", b"tampered"),
    ]);
    let err = migrate::ovf::read_ova(bad.as_slice(), "app.ova", &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("app.ova/app.mf:2"), "{err}");
    assert!(err.contains("SHA1 of \"app-disk1.vmdk\""), "{err}");

    let misordered = ova(&[("app-disk1.vmdk", disk), ("app.ovf", OVF.as_bytes())]);
    let err = migrate::ovf::read_ova(misordered.as_slice(), "x.ova", &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not the .ovf descriptor"), "{err}");
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ovf");
    std::fs::write(&bad, "<Envelope><VirtualSystem>").unwrap();
    let good = dir.path().join("good.ovf");
    std::fs::write(&good, OVF).unwrap();
    let inv = import(&[bad, good], &ImportOptions::default());
    assert_eq!(inv.vms.len(), 2);
    assert_eq!(inv.errors(), 1);
    assert!(
        inv.issues[0].to_string().starts_with("bad.ovf:1:"),
        "{}",
        inv.issues[0]
    );
    assert_eq!(inv.issues[0].severity, Severity::Error);
}
