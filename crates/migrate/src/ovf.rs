//! OVF descriptors ([`OvfFile`]) and OVA archives ([`OvaFile`]).
//!
//! Elements are matched by local name, so OVF 1.x and 2.x namespaces and the prefixes
//! writers choose (`ovf:`, `rasd:`, `vmw:`, none) all read. What is covered:
//! - one `VirtualSystem`, or a `VirtualSystemCollection` of several (nested too): each is a
//!   VM, its collection recorded as its vApp;
//! - `DeploymentOptionSection`: hardware items restricted with `ovf:configuration` count
//!   only for the chosen configuration (the default one unless asked);
//! - units in every form writers use: `byte * 2^20`, `byte * 2 ^ 20`, `byte*2^30`,
//!   `MegaBytes`, `GigaBytes`, `KB`, `MB`, `GB`, `byte` ([`allocation_units`]);
//! - disks from the `DiskSection` (capacity, file, format), NICs with their networks,
//!   USB controllers, PCI passthrough and vTPM devices, VMware's `vmw:Config` (firmware,
//!   secure boot, hot-add, CBT);
//! - OVA: a tar whose first entry must be the `.ovf`; the `.mf` manifest's SHA-1 and
//!   SHA-256 digests are checked against every file it names.
//!
//! A broken or truncated descriptor is an error with its line and column.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use api::migrate::{GuestOs, VirtualMachineSpec, VmDisk, VmNic, VmSource};
use roxmltree::{Document, Node};
use sha2::Digest;

use crate::source::{
    ImportOptions, Inventory, Issue, Location, Severity, Source, SourceError, base_name,
};

/// An `.ovf` descriptor on disk.
pub struct OvfFile {
    path: PathBuf,
}

impl OvfFile {
    pub fn new(path: &Path) -> Self {
        OvfFile {
            path: path.to_path_buf(),
        }
    }
}

impl Source for OvfFile {
    fn kind(&self) -> &'static str {
        "ovf"
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self, options: &ImportOptions) -> Result<Inventory, SourceError> {
        let bytes = std::fs::read(&self.path).map_err(|e| SourceError::io(&self.path, e))?;
        let file = base_name(&self.path);
        let text = decode_text(&bytes, &file)?;
        parse_descriptor(&text, &file, "ovf", options)
    }
}

/// An `.ova` archive on disk.
pub struct OvaFile {
    path: PathBuf,
}

impl OvaFile {
    pub fn new(path: &Path) -> Self {
        OvaFile {
            path: path.to_path_buf(),
        }
    }
}

impl Source for OvaFile {
    fn kind(&self) -> &'static str {
        "ova"
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self, options: &ImportOptions) -> Result<Inventory, SourceError> {
        let file = std::fs::File::open(&self.path).map_err(|e| SourceError::io(&self.path, e))?;
        read_ova(
            std::io::BufReader::new(file),
            &base_name(&self.path),
            options,
        )
    }
}

fn decode_text(bytes: &[u8], file: &str) -> Result<String, SourceError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        SourceError::invalid(
            Location::file(file),
            format!(
                "the descriptor is not UTF-8 (invalid byte at offset {}); OVF descriptors are UTF-8 XML",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Reads an OVA: the descriptor (first entry), the manifest, and every other entry hashed
/// to check the manifest's digests.
pub fn read_ova(
    reader: impl Read,
    file: &str,
    options: &ImportOptions,
) -> Result<Inventory, SourceError> {
    let mut archive = tar::Archive::new(reader);
    let at = || Location::file(file);
    let entries = archive.entries().map_err(|e| {
        SourceError::invalid(
            at(),
            format!("not a tar archive ({e}); an OVA is a tar file"),
        )
    })?;
    let mut descriptor: Option<(String, String)> = None;
    let mut manifest: Option<(String, String)> = None;
    // name → (sha1, sha256) of each entry.
    let mut digests: HashMap<String, (String, String)> = HashMap::new();
    let mut names = Vec::new();
    for (i, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| {
            SourceError::invalid(
                at(),
                format!("entry {}: the archive is damaged or truncated ({e})", i + 1),
            )
        })?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if i == 0 && !lower.ends_with(".ovf") {
            return Err(SourceError::invalid(
                at(),
                format!(
                    "the first entry is {name:?}, not the .ovf descriptor; the OVF standard puts the descriptor first (repack it with `tar -cf x.ova x.ovf x.mf disks...`)"
                ),
            ));
        }
        let mut sha1 = sha1::Sha1::new();
        let mut sha256 = sha2::Sha256::new();
        let keep = lower.ends_with(".ovf") || lower.ends_with(".mf");
        let mut kept = Vec::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buffer).map_err(|e| {
                SourceError::invalid(
                    at(),
                    format!("entry {name:?}: the archive is truncated or damaged ({e})"),
                )
            })?;
            if n == 0 {
                break;
            }
            sha1.update(&buffer[..n]);
            sha256.update(&buffer[..n]);
            if keep {
                kept.extend_from_slice(&buffer[..n]);
            }
        }
        let base = name.rsplit('/').next().unwrap_or(&name).to_string();
        digests.insert(
            base.clone(),
            (hex::encode(sha1.finalize()), hex::encode(sha256.finalize())),
        );
        names.push(base.clone());
        if lower.ends_with(".ovf") && descriptor.is_none() {
            descriptor = Some((base, decode_text(&kept, file)?));
        } else if lower.ends_with(".mf") {
            manifest = Some((base, String::from_utf8_lossy(&kept).into_owned()));
        }
    }
    let Some((ovf_name, text)) = descriptor else {
        return Err(SourceError::invalid(
            at(),
            "the archive holds no .ovf descriptor",
        ));
    };
    let inner = format!("{file}/{ovf_name}");
    if let Some((mf_name, mf)) = &manifest {
        verify_manifest(file, mf_name, mf, &digests)?;
    }
    let mut inventory = parse_descriptor(&text, &inner, "ova", options)?;
    if manifest.is_none() {
        inventory.issues.push(Issue {
            severity: Severity::Warning,
            at: at(),
            message: "no .mf manifest: the files' integrity was not checked".into(),
        });
    }
    for vm in &mut inventory.vms {
        vm.source.file = Some(file.to_string());
        for disk in &vm.disks {
            if let Some(p) = &disk.path
                && !names.contains(p)
            {
                inventory.issues.push(Issue {
                    severity: Severity::Warning,
                    at: at(),
                    message: format!(
                        "VM {:?}: disk file {p:?} is not in the archive; it cannot be converted from this OVA",
                        vm.name
                    ),
                });
            }
        }
    }
    Ok(inventory)
}

/// Checks each `SHA1(name)= hex` / `SHA256(name)= hex` line of a manifest.
fn verify_manifest(
    file: &str,
    mf_name: &str,
    mf: &str,
    digests: &HashMap<String, (String, String)>,
) -> Result<(), SourceError> {
    for (i, line) in mf.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = || Location {
            line: Some(i as u32 + 1),
            ..Location::file(format!("{file}/{mf_name}"))
        };
        let parsed = line.split_once('(').and_then(|(algo, rest)| {
            let (name, rest) = rest.split_once(')')?;
            let digest = rest.trim_start().strip_prefix('=')?.trim();
            Some((
                algo.trim().to_ascii_uppercase(),
                name.trim(),
                digest.to_ascii_lowercase(),
            ))
        });
        let Some((algo, name, expected)) = parsed else {
            return Err(SourceError::invalid(
                at(),
                format!("not a manifest line ({line:?}); expected `SHA256(file)= hex`"),
            ));
        };
        let Some((sha1, sha256)) = digests.get(name) else {
            return Err(SourceError::invalid(
                at(),
                format!("the manifest lists {name:?}, which is not in the archive"),
            ));
        };
        let actual = match algo.as_str() {
            "SHA1" => sha1,
            "SHA256" => sha256,
            other => {
                return Err(SourceError::invalid(
                    at(),
                    format!("digest {other} is not supported; OVF manifests use SHA1 or SHA256"),
                ));
            }
        };
        if *actual != expected {
            return Err(SourceError::invalid(
                at(),
                format!(
                    "{algo} of {name:?} is {actual}, the manifest says {expected}: the file is corrupt or was changed; download the OVA again"
                ),
            ));
        }
    }
    Ok(())
}

/// `byte * 2^20` → 1048576; `MegaBytes` → 1048576; `None` for a unit this reader does not
/// know.
pub fn allocation_units(units: &str) -> Option<u64> {
    let compact: String = units
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let named = match compact.as_str() {
        "" | "byte" | "bytes" | "b" => Some(1),
        "kilobytes" | "kb" | "kib" | "kilobyte" => Some(1 << 10),
        "megabytes" | "mb" | "mib" | "megabyte" => Some(1 << 20),
        "gigabytes" | "gb" | "gib" | "gigabyte" => Some(1 << 30),
        "terabytes" | "tb" | "tib" | "terabyte" => Some(1 << 40),
        _ => None,
    };
    if named.is_some() {
        return named;
    }
    // byte*2^20, byte*1024, byte*2^10*1024 ...
    let mut factors = compact.split('*');
    if !matches!(factors.next(), Some("byte" | "bytes")) {
        return None;
    }
    let mut total: u64 = 1;
    for factor in factors {
        let value = match factor.split_once('^') {
            Some((base, exp)) => base
                .parse::<u64>()
                .ok()?
                .checked_pow(exp.parse::<u32>().ok()?)?,
            None => factor.parse::<u64>().ok()?,
        };
        total = total.checked_mul(value)?;
    }
    Some(total)
}

fn local<'a>(node: Node<'a, 'a>, name: &str) -> bool {
    node.is_element() && node.tag_name().name().eq_ignore_ascii_case(name)
}

fn child<'a>(node: Node<'a, 'a>, name: &str) -> Option<Node<'a, 'a>> {
    node.children().find(|c| local(*c, name))
}

fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// An attribute by local name, whatever its namespace.
fn attr(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.attributes()
        .find(|a| a.name() == name)
        .map(|a| a.value().to_string())
}

/// Parses a descriptor's text; `file` names it in messages.
pub fn parse_descriptor(
    text: &str,
    file: &str,
    kind: &str,
    options: &ImportOptions,
) -> Result<Inventory, SourceError> {
    let doc = Document::parse(text).map_err(|e| {
        let (row, col) = match e {
            // Reported where the root opened; the problem is where the text stops.
            roxmltree::Error::UnclosedRootNode => {
                let row = text.lines().count().max(1) as u32;
                let col = text.lines().last().map_or(0, |l| l.chars().count()) as u32 + 1;
                (row, col)
            }
            _ => (e.pos().row, e.pos().col),
        };
        SourceError::Invalid {
            at: Location {
                line: Some(row),
                column: Some(col.to_string()),
                ..Location::file(file)
            },
            message: format!("the OVF descriptor is not well-formed XML: {e}; it may be truncated: take it from the source again"),
        }
    })?;
    let root = doc.root_element();
    if !local(root, "Envelope") {
        return Err(SourceError::invalid(
            Location {
                line: Some(doc.text_pos_at(root.range().start).row),
                ..Location::file(file)
            },
            format!(
                "the root element is <{}>, not an OVF <Envelope>",
                root.tag_name().name()
            ),
        ));
    }
    let mut inventory = Inventory::default();
    let line_of = |n: Node<'_, '_>| doc.text_pos_at(n.range().start).row;

    // References: file id → href.
    let files: HashMap<String, String> = child(root, "References")
        .into_iter()
        .flat_map(|r| r.children().filter(|c| local(*c, "File")))
        .filter_map(|f| Some((attr(f, "id")?, attr(f, "href")?)))
        .collect();
    // Disks: disk id → (capacity MiB, file href, format).
    let mut disks: HashMap<String, (u64, Option<String>, Option<String>)> = HashMap::new();
    for d in root
        .children()
        .filter(|c| local(*c, "DiskSection"))
        .flat_map(|s| s.children().filter(|c| local(*c, "Disk")))
    {
        let at = |column: &str| Location {
            line: Some(line_of(d)),
            column: Some(column.into()),
            ..Location::file(file)
        };
        let Some(id) = attr(d, "diskId") else {
            inventory.issues.push(Issue {
                severity: Severity::Error,
                at: at("ovf:diskId"),
                message: "a Disk without ovf:diskId; the disk is ignored".into(),
            });
            continue;
        };
        let units_text = attr(d, "capacityAllocationUnits").unwrap_or_else(|| "byte".into());
        let Some(units) = allocation_units(&units_text) else {
            inventory.issues.push(Issue {
                severity: Severity::Error,
                at: at("ovf:capacityAllocationUnits"),
                message: format!("disk {id}: unknown allocation units {units_text:?} (expected e.g. `byte * 2^30`); the disk is ignored"),
            });
            continue;
        };
        let capacity = attr(d, "capacity").unwrap_or_default();
        let Ok(capacity) = capacity.trim().parse::<u64>() else {
            inventory.issues.push(Issue {
                severity: Severity::Error,
                at: at("ovf:capacity"),
                message: format!(
                    "disk {id}: capacity {capacity:?} is not a whole number; the disk is ignored"
                ),
            });
            continue;
        };
        let mib = (u128::from(capacity) * u128::from(units)).div_ceil(1 << 20) as u64;
        let format = attr(d, "format").map(|f| {
            let l = f.to_ascii_lowercase();
            if l.contains("vmdk") {
                "vmdk".to_string()
            } else if l.contains("vhdx") {
                "vhdx".to_string()
            } else if l.contains("vhd") {
                "vpc".to_string()
            } else if l.contains("qcow") {
                "qcow2".to_string()
            } else {
                f
            }
        });
        let href = attr(d, "fileRef").and_then(|r| files.get(&r).cloned());
        disks.insert(id, (mib, href, format));
    }

    // The deployment option: asked, else the default, else the first.
    let configurations: Vec<(String, bool)> = root
        .children()
        .filter(|c| local(*c, "DeploymentOptionSection"))
        .flat_map(|s| s.children().filter(|c| local(*c, "Configuration")))
        .filter_map(|c| {
            Some((
                attr(c, "id")?,
                attr(c, "default").is_some_and(|d| d == "true"),
            ))
        })
        .collect();
    let chosen = match &options.deployment_option {
        Some(asked) => {
            if !configurations.iter().any(|(id, _)| id == asked) {
                let known: Vec<&str> = configurations.iter().map(|(i, _)| i.as_str()).collect();
                return Err(SourceError::invalid(
                    Location::file(file),
                    format!(
                        "deployment option {asked:?} is not in the descriptor (it has: {})",
                        known.join(", ")
                    ),
                ));
            }
            Some(asked.clone())
        }
        None => configurations
            .iter()
            .find(|(_, d)| *d)
            .or(configurations.first())
            .map(|(id, _)| id.clone()),
    };

    let mut systems = Vec::new();
    collect_systems(root, None, &mut systems);
    if systems.is_empty() {
        return Err(SourceError::invalid(
            Location::file(file),
            "the descriptor has no VirtualSystem",
        ));
    }
    let context = Context {
        file,
        kind,
        disks: &disks,
        chosen: chosen.as_deref(),
        line_of: &line_of,
    };
    for (system, vapp) in systems {
        if let Some(vm) = read_system(&context, system, vapp, &mut inventory.issues) {
            inventory.vms.push(vm);
        }
    }
    inventory.read.push((file.to_string(), inventory.vms.len()));
    Ok(inventory)
}

struct Context<'a> {
    file: &'a str,
    kind: &'a str,
    disks: &'a HashMap<String, (u64, Option<String>, Option<String>)>,
    chosen: Option<&'a str>,
    line_of: &'a dyn Fn(Node<'_, '_>) -> u32,
}

fn collect_systems<'a>(
    node: Node<'a, 'a>,
    vapp: Option<String>,
    out: &mut Vec<(Node<'a, 'a>, Option<String>)>,
) {
    for c in node.children().filter(|c| c.is_element()) {
        if local(c, "VirtualSystem") {
            out.push((c, vapp.clone()));
        } else if local(c, "VirtualSystemCollection") {
            let name = child_text(c, "Name").or_else(|| attr(c, "id"));
            collect_systems(c, name.or(vapp.clone()), out);
        }
    }
}

fn read_system(
    cx: &Context<'_>,
    system: Node<'_, '_>,
    vapp: Option<String>,
    issues: &mut Vec<Issue>,
) -> Option<VirtualMachineSpec> {
    let at = |n: Node<'_, '_>, column: Option<&str>| Location {
        line: Some((cx.line_of)(n)),
        column: column.map(str::to_string),
        ..Location::file(cx.file)
    };
    let id = attr(system, "id").unwrap_or_default();
    let name = child_text(system, "Name").unwrap_or_else(|| id.clone());
    if name.is_empty() {
        issues.push(Issue {
            severity: Severity::Error,
            at: at(system, None),
            message: "a VirtualSystem with neither ovf:id nor Name; it is ignored".into(),
        });
        return None;
    }
    let mut vm = VirtualMachineSpec {
        name: name.clone(),
        source: VmSource {
            kind: cx.kind.to_string(),
            file: Some(cx.file.to_string()),
            vapp,
            ..Default::default()
        },
        ..Default::default()
    };
    if let Some(os) = system
        .children()
        .find(|c| local(*c, "OperatingSystemSection"))
    {
        let described = child_text(os, "Description").or_else(|| attr(os, "osType"));
        vm.os = GuestOs {
            family: crate::rvtools::os_family(
                described.as_deref().or(attr(os, "osType").as_deref()),
            )
            .map(str::to_string),
            configured: described,
            tools: None,
        };
    }
    if let Some(a) = system.children().find(|c| local(*c, "AnnotationSection")) {
        vm.annotation = child_text(a, "Annotation");
    }
    let Some(hardware) = system
        .children()
        .find(|c| local(*c, "VirtualHardwareSection"))
    else {
        issues.push(Issue {
            severity: Severity::Error,
            at: at(system, None),
            message: format!("VirtualSystem {name:?} has no VirtualHardwareSection; it is ignored"),
        });
        return None;
    };
    if let Some(system_node) = child(hardware, "System") {
        vm.hardware_version = child_text(system_node, "VirtualSystemType");
    }
    let mut uuid = None;
    let mut cpu_seen = false;
    let mut memory_seen = false;
    let mut nic_index = 0;
    for item in hardware.children().filter(|c| c.is_element()) {
        let tag = item.tag_name().name();
        if tag == "Config" || tag == "ExtraConfig" {
            let key = attr(item, "key").unwrap_or_default();
            let value = attr(item, "value").unwrap_or_default();
            let truth = value.eq_ignore_ascii_case("true");
            match key.as_str() {
                "firmware" => vm.firmware = Some(value.to_ascii_lowercase()),
                "bootOptions.efiSecureBootEnabled" | "uefi.secureBoot.enabled" => {
                    vm.secure_boot = Some(truth);
                }
                "cpuHotAddEnabled" | "vcpu.hotadd" => vm.cpu_hot_add = Some(truth),
                "memoryHotAddEnabled" | "mem.hotadd" => vm.memory_hot_add = Some(truth),
                "changeTrackingEnabled" | "ctkEnabled" => vm.cbt = Some(truth),
                "uuid.bios" | "uuid" | "instanceUuid" => uuid = Some(value),
                "hardware.cpuPerSocket" | "cpuid.coresPerSocket" => {
                    vm.cores_per_socket = value.parse().ok();
                }
                _ => {}
            }
            continue;
        }
        if !(tag == "Item" || tag == "StorageItem" || tag == "EthernetPortItem") {
            continue;
        }
        // Items restricted to other deployment options do not count.
        if let Some(configs) = attr(item, "configuration")
            && !configs.split_whitespace().any(|c| Some(c) == cx.chosen)
        {
            continue;
        }
        let resource_type = child_text(item, "ResourceType")
            .and_then(|t| t.parse::<u32>().ok())
            .unwrap_or(0);
        let subtype = child_text(item, "ResourceSubType").unwrap_or_default();
        let label = child_text(item, "ElementName")
            .or_else(|| child_text(item, "Caption"))
            .unwrap_or_default();
        let quantity = || -> Result<u64, String> {
            let q = child_text(item, "VirtualQuantity").unwrap_or_default();
            q.parse::<u64>()
                .map_err(|_| format!("VirtualQuantity {q:?} is not a whole number"))
        };
        match resource_type {
            3 => match quantity() {
                Ok(n) => {
                    vm.cpus = n as u32;
                    cpu_seen = true;
                }
                Err(e) => issues.push(Issue {
                    severity: Severity::Error,
                    at: at(item, Some("VirtualQuantity")),
                    message: format!("VM {name:?}: CPU item: {e}"),
                }),
            },
            4 => {
                let units_text =
                    child_text(item, "AllocationUnits").unwrap_or_else(|| "MegaBytes".into());
                match (quantity(), allocation_units(&units_text)) {
                    (Ok(n), Some(unit)) => {
                        vm.memory_mib = (u128::from(n) * u128::from(unit)).div_ceil(1 << 20) as u64;
                        memory_seen = true;
                    }
                    (Err(e), _) => issues.push(Issue {
                        severity: Severity::Error,
                        at: at(item, Some("VirtualQuantity")),
                        message: format!("VM {name:?}: memory item: {e}"),
                    }),
                    (_, None) => issues.push(Issue {
                        severity: Severity::Error,
                        at: at(item, Some("AllocationUnits")),
                        message: format!("VM {name:?}: unknown memory units {units_text:?} (expected e.g. `byte * 2^20`)"),
                    }),
                }
            }
            10 => {
                nic_index += 1;
                let lower = subtype.to_ascii_lowercase();
                if lower.contains("sriov") || lower.contains("passthrough") {
                    vm.passthrough.push(format!("network adapter {subtype}"));
                }
                vm.nics.push(VmNic {
                    label: if label.is_empty() {
                        format!("Network adapter {nic_index}")
                    } else {
                        label
                    },
                    network: child_text(item, "Connection"),
                    adapter: (!subtype.is_empty()).then(|| subtype.clone()),
                    mac: child_text(item, "Address"),
                    connected: child_text(item, "AutomaticAllocation")
                        .map(|a| a.eq_ignore_ascii_case("true")),
                    ip_address: None,
                });
            }
            17 => {
                let host = child_text(item, "HostResource").unwrap_or_default();
                let disk_id = host.rsplit('/').next().unwrap_or_default().to_string();
                match cx.disks.get(&disk_id) {
                    Some((mib, href, format)) => vm.disks.push(VmDisk {
                        label: if label.is_empty() {
                            format!("Hard disk {}", vm.disks.len() + 1)
                        } else {
                            label
                        },
                        capacity_mib: *mib,
                        path: href.clone(),
                        format: format.clone(),
                        mode: item
                            .children()
                            .find(|c| c.tag_name().name() == "Config" && attr(*c, "key").as_deref() == Some("backing.diskMode"))
                            .and_then(|c| attr(c, "value")),
                        ..Default::default()
                    }),
                    None => issues.push(Issue {
                        severity: Severity::Error,
                        at: at(item, Some("HostResource")),
                        message: format!("VM {name:?}: disk {host:?} is not in the DiskSection; the disk is ignored"),
                    }),
                }
            }
            23 => vm.usb = Some(true),
            1 if subtype.to_ascii_lowercase().contains("pcipassthrough") => {
                vm.passthrough
                    .push(if label.is_empty() { subtype } else { label });
            }
            1 if subtype.to_ascii_lowercase().contains("vtpm") => vm.tpm = Some(true),
            _ => {}
        }
    }
    if !cpu_seen || !memory_seen {
        let what = if cpu_seen { "memory" } else { "CPU" };
        issues.push(Issue {
            severity: Severity::Error,
            at: at(hardware, None),
            message: format!(
                "VM {name:?} has no {what} item (ResourceType {}); it is refused",
                if cpu_seen { 4 } else { 3 }
            ),
        });
        return None;
    }
    vm.usb.get_or_insert(false);
    vm.uuid = uuid.unwrap_or_else(|| derived_uuid(&id, &name));
    Some(vm)
}

/// An OVF without a VMware UUID: a stable identity from the system's id and name (the same
/// appliance re-imported updates the same object).
fn derived_uuid(id: &str, name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("ovf\0{id}\0{name}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_in_every_form() {
        assert_eq!(allocation_units("byte * 2^20"), Some(1 << 20));
        assert_eq!(allocation_units("byte * 2 ^ 20"), Some(1 << 20));
        assert_eq!(allocation_units("byte*2^30"), Some(1 << 30));
        assert_eq!(allocation_units("MegaBytes"), Some(1 << 20));
        assert_eq!(allocation_units("GigaBytes"), Some(1 << 30));
        assert_eq!(allocation_units("byte * 1024"), Some(1024));
        assert_eq!(allocation_units("byte"), Some(1));
        assert_eq!(allocation_units("furlongs"), None);
    }
}
