//! The virtualization-modernization kinds: `VirtualMachine` (a source VM as an inventory
//! import found it: RVTools, OVF/OVA, later a live vSphere collector) and `MigrationPlan`
//! (how VMs map to classification, residency and projects, and how they move in waves).
//!
//! A `VirtualMachine` is facts, not desired state: `spec` holds what the source said, in
//! one normalized shape whatever the source (units are MiB, booleans are `None` when the
//! source did not say). Its identity is the source's VM UUID: [`vm_object_name`] derives
//! the object name from it, so a re-import of the same export updates the same objects.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{Condition, KindInfo, MIGRATION_PLAN, Object, Spec, VIRTUAL_MACHINE};

/// Label carrying the source VM's UUID (lowercase), for selectors.
pub const UUID_LABEL: &str = "migrate.meridian.dev/uuid";
/// Label carrying the source kind (`rvtools`, `ovf`).
pub const SOURCE_LABEL: &str = "migrate.meridian.dev/source";
/// Label a Workload created by `meridian migrate run` carries: the VirtualMachine's name.
pub const VM_LABEL: &str = "migrate.meridian.dev/vm";

/// The object name of the VirtualMachine whose source UUID is `uuid`: `vm-` and the UUID's
/// hex digits and dashes, lowercased (anything else dropped), at most 63 characters. A pure
/// function of the UUID, so re-imports find the same object.
pub fn vm_object_name(uuid: &str) -> String {
    let mut name = String::from("vm-");
    for ch in uuid.chars() {
        if ch.is_ascii_alphanumeric() {
            name.push(ch.to_ascii_lowercase());
        } else if (ch == '-' || ch == ' ' || ch == '_') && !name.ends_with('-') {
            name.push('-');
        }
        if name.len() >= 63 {
            break;
        }
    }
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// Where a VM was found: the source and its place in the vCenter inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSource {
    /// `rvtools`, `rvtools-csv`, `ovf`, `ova`, `vsphere`.
    pub kind: String,
    /// The file it was read from (base name), when it came from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Inventory folder path (`/Finance/Payroll`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_pool: Option<String>,
    /// vApp (or OVF VirtualSystemCollection) the VM belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapp: Option<String>,
}

/// The guest OS, as the configuration and as VMware Tools report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestOs {
    /// `OS according to the configuration file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured: Option<String>,
    /// `OS according to the VMware Tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<String>,
    /// `windows`, `linux` or `other`, derived from the two above (Tools first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

/// One virtual disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmDisk {
    /// `Hard disk 1`.
    pub label: String,
    pub capacity_mib: u64,
    /// Backing file (`[ds1] web01/web01.vmdk`) or OVF file reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin: Option<bool>,
    /// `persistent`, `independent_persistent`, `independent_nonpersistent`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `sharingNone`, `sharingMultiWriter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<String>,
    /// Raw device mapping: `physical` or `virtual` compatibility mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdm: Option<String>,
    /// Controller (`SCSI controller 0`, `NVME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The disk file's format, for OVF disks (`vmdk`, `vhdx`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A guest partition (RVTools `vPartition`, from VMware Tools).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmPartition {
    pub path: String,
    pub capacity_mib: u64,
    pub free_mib: u64,
}

/// One network adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmNic {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `vmxnet3`, `e1000e`, `SR-IOV passthrough`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// A snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSnapshot {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<u64>,
}

/// VMware Tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmTools {
    /// `toolsOk`, `toolsOld`, `toolsNotInstalled`, `toolsNotRunning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Measured use, when the source has it (RVTools: vCPU/vMemory usage at export time;
/// a collector: percentiles over a period).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Utilization {
    /// CPU use as a percentage of the VM's vCPUs (0–100), at the chosen percentile or a
    /// point sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Memory actively used, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_active_mib: Option<u64>,
    /// Which percentile the figures are (`95`); absent for a point sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<u8>,
}

/// What a source said about one VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualMachineSpec {
    /// The source's identity of the VM (vSphere instance or BIOS UUID).
    pub uuid: String,
    /// The name in the source (not necessarily a valid object name).
    pub name: String,
    pub source: VmSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub template: bool,
    pub cpus: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores_per_socket: Option<u32>,
    pub memory_mib: u64,
    #[serde(default)]
    pub os: GuestOs,
    /// `bios` or `efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    /// A virtual TPM is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<VmTools>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<VmDisk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<VmPartition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<VmNic>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<VmSnapshot>,
    /// Changed block tracking (needed for warm migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cbt: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_hot_add: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_hot_add: Option<bool>,
    /// PCI passthrough and SR-IOV devices, as described by the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough: Vec<String>,
    /// USB controllers or devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb: Option<bool>,
    /// DRS affinity or anti-affinity rules the VM is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affinity_rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// Tags and custom attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<Utilization>,
}

impl VirtualMachineSpec {
    /// Total provisioned disk, MiB.
    pub fn disk_mib(&self) -> u64 {
        self.disks.iter().map(|d| d.capacity_mib).sum()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What Meridian observed of a VM's migration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualMachineStatus {
    /// `Imported`, `Converting`, `Converted`, `Running`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The MigrationPlan and wave that moved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    /// The Workload running it on Meridian (same project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Converted disk images, as the node sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Spec for VirtualMachineSpec {
    const KIND_INFO: &'static KindInfo = VIRTUAL_MACHINE;
}

/// A `VirtualMachine` object.
pub type VirtualMachine = Object<VirtualMachineSpec, VirtualMachineStatus>;

/// Which VMs a mapping rule applies to: every given field must match (case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmMatch {
    /// Folder path prefix (`/Finance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A substring of the annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// `key=value`, or `key` for any value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A substring of the source VM name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A mapping rule: VMs it matches get this classification, residency and project. The
/// first matching rule wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingRule {
    #[serde(rename = "match", default)]
    pub match_: VmMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<crate::kinds::Classification>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residency: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sovereignty: Option<crate::kinds::Sovereignty>,
    /// The project the VM's Workload goes to (default: the plan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// Right-sizing: `asIs` keeps the source's vCPUs and memory; `performance` sizes from
/// utilisation (the percentile the source reports × `comfortFactor`), falling back to
/// as-is for VMs without utilisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sizing {
    #[serde(default = "default_sizing_mode")]
    pub mode: String,
    #[serde(default = "default_comfort")]
    pub comfort_factor: f64,
}

fn default_sizing_mode() -> String {
    "asIs".into()
}

fn default_comfort() -> f64 {
    1.3
}

impl Default for Sizing {
    fn default() -> Self {
        Sizing {
            mode: default_sizing_mode(),
            comfort_factor: default_comfort(),
        }
    }
}

/// A maintenance window: cold cut-overs happen inside one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// RFC 3339 start (`2027-01-09T22:00:00Z`).
    pub start: String,
    /// Length (`8h`).
    pub duration: String,
}

/// How waves are cut.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveLimits {
    /// Most VMs in one wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vms: Option<u32>,
    /// Most provisioned disk in one wave, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk_gib: Option<u64>,
    /// Most vCPUs brought up on the targets in one wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpus: Option<u32>,
}

/// A plan that moves VMs of its project to Meridian targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationPlanSpec {
    /// Target Site names (default: every site).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// VM object names to move (default: every VirtualMachine of the project).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapping: Vec<MappingRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<Sizing>,
    /// Transfer bandwidth from the source, megabits per second (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<WaveLimits>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// Directory on the target node where converted disks are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_path: Option<String>,
}

/// One wave as planned or run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveStatus {
    pub number: u32,
    pub vms: Vec<String>,
    /// The target site planned for each VM (VirtualMachine name → Site name): where the
    /// plan's what-if placement found room for it, and where `migrate run` places it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sites: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// What Meridian observed of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationPlanStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Spec for MigrationPlanSpec {
    const KIND_INFO: &'static KindInfo = MIGRATION_PLAN;
}

/// A `MigrationPlan` object.
pub type MigrationPlan = Object<MigrationPlanSpec, MigrationPlanStatus>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_come_from_the_uuid() {
        assert_eq!(
            vm_object_name("4210C3E5-1B2F-4A3D-9E8F-0123456789AB"),
            "vm-4210c3e5-1b2f-4a3d-9e8f-0123456789ab"
        );
        assert_eq!(vm_object_name("{abc}"), "vm-abc");
        assert!(vm_object_name(&"a".repeat(200)).len() <= 63);
    }

    #[test]
    fn a_plan_with_bad_fields_is_refused_with_their_paths() {
        let text = "apiVersion: meridian.dev/v1\nkind: MigrationPlan\nmetadata: {name: q1, namespace: finance}\nspec:\n  mapping:\n    - match: {folder: /Finance}\n      residency: [EU, XX]\n  sizing: {mode: magic, comfortFactor: 0}\n  bandwidthMbps: 0\n  maintenanceWindows:\n    - {start: saturday, duration: 8h}\n";
        let errors = crate::parse_manifests("plan.yaml", text).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        for field in [
            "spec.mapping[0].residency[1]",
            "spec.sizing.mode",
            "spec.sizing.comfortFactor",
            "spec.bandwidthMbps",
            "spec.maintenanceWindows[0].start",
        ] {
            assert!(all.contains(field), "{field} in {all}");
        }
        let good = "apiVersion: meridian.dev/v1\nkind: MigrationPlan\nmetadata: {name: q1, namespace: finance}\nspec:\n  targets: [onprem-frankfurt]\n  mapping:\n    - match: {tag: app=payroll}\n      classification: personal\n      residency: [EU]\n  waves: {maxVms: 20}\n";
        crate::parse_manifests("plan.yaml", good).unwrap();
    }
}
