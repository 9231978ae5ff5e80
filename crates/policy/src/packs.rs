//! The built-in policy packs, compiled in: ready-to-apply `Policy` objects
//! (`meridian policy install PACK`) and their Rego unit tests.
//!
//! | pack | default enforcement | policies |
//! | --- | --- | --- |
//! | `sovereignty` | `deny` (refused at admission) | residency declared, residency satisfiable, placement within residency, strict-sovereignty operator, allowed locations per project |
//! | `baseline` | `audit` (reported by the continuous audit only: existing hosts are not refused, they are findings to fix) | disk encryption, Secure Boot, supported OS, patch age, owner label, no root tasks (set its enforcement to `deny` to refuse them at admission) |
//! | `ai` | `warn` (accepted with a warning while teams adopt queues) | GPU queue, training data residency |
//! | `migration` | `audit` (concerns about imported VirtualMachines, read by `meridian migrate assess`) | critical (passthrough, RDM, shared disks, guests without virtio drivers), warning (snapshots, independent disks, end-of-life OS, Windows virtio drivers, USB, TPM, UEFI, Secure Boot, free space), information (CBT, hot-plug, DRS rules, names, VMware Tools) |
//!
//! Every policy maps to controls of named frameworks (GDPR, NIST SP 800-53, BSI C5,
//! ISO27001, EU AI Act). Once installed a policy is an ordinary object: edit its
//! enforcement, parameters or Rego like any other.

use std::collections::BTreeMap;

use api::kinds::{Control, Enforcement, PolicySpec};
use api::{ObjectMeta, Policy};

/// Label naming the pack a policy came from.
pub const PACK_LABEL: &str = "policy.meridian.dev/pack";
/// Annotation naming the Rego file a pack policy came from.
pub const SOURCE_ANNOTATION: &str = "policy.meridian.dev/source";

/// A built-in pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    pub name: &'static str,
    pub description: &'static str,
    /// Ready to apply.
    pub policies: Vec<Policy>,
}

impl Pack {
    /// `(file name, source)` of every Rego module of the pack, policies and tests, for
    /// [`crate::run_tests`].
    pub fn modules(&self) -> Vec<(String, &'static str)> {
        PACKS
            .iter()
            .filter(|p| p.name == self.name)
            .flat_map(|p| p.rules.iter())
            .flat_map(|r| {
                [
                    (format!("{}/{}.rego", self.name, r.file), r.rego),
                    (format!("{}/{}_test.rego", self.name, r.file), r.test),
                ]
            })
            .collect()
    }
}

struct PackDef {
    name: &'static str,
    description: &'static str,
    enforcement: Enforcement,
    rules: &'static [RuleDef],
}

struct RuleDef {
    /// Policy name without the pack prefix.
    name: &'static str,
    /// File stem under `packs/<pack>/`.
    file: &'static str,
    description: &'static str,
    targets: &'static [&'static str],
    controls: &'static [(&'static str, &'static str)],
    /// Default parameters as JSON, shown to users so they know what to tune.
    parameters: Option<&'static str>,
    rego: &'static str,
    test: &'static str,
}

const GDPR: &str = "GDPR";
const NIST: &str = "NIST SP 800-53";
const C5: &str = "BSI C5";
const ISO: &str = "ISO27001";
const AI_ACT: &str = "EU AI Act";

macro_rules! rego {
    ($pack:literal, $file:literal) => {
        (
            include_str!(concat!("../packs/", $pack, "/", $file, ".rego")),
            include_str!(concat!("../packs/", $pack, "/", $file, "_test.rego")),
        )
    };
}

const SOV_DECLARED: (&str, &str) = rego!("sovereignty", "residency_declared");
const SOV_SATISFIABLE: (&str, &str) = rego!("sovereignty", "residency_satisfiable");
const SOV_PLACEMENT: (&str, &str) = rego!("sovereignty", "placement_residency");
const SOV_STRICT: (&str, &str) = rego!("sovereignty", "strict_operator");
const SOV_LOCATIONS: (&str, &str) = rego!("sovereignty", "allowed_locations");
const BASE_DISK: (&str, &str) = rego!("baseline", "disk_encryption");
const BASE_BOOT: (&str, &str) = rego!("baseline", "secure_boot");
const BASE_OS: (&str, &str) = rego!("baseline", "os_supported");
const BASE_PATCH: (&str, &str) = rego!("baseline", "patch_age");
const BASE_OWNER: (&str, &str) = rego!("baseline", "owner_label");
const BASE_ROOT: (&str, &str) = rego!("baseline", "no_root");
const AI_QUEUE: (&str, &str) = rego!("ai", "gpu_queue");
const AI_DATA: (&str, &str) = rego!("ai", "training_data_residency");
const MIG_CRITICAL: (&str, &str) = rego!("migration", "critical");
const MIG_WARNING: (&str, &str) = rego!("migration", "warning");
const MIG_INFO: (&str, &str) = rego!("migration", "information");

static PACKS: &[PackDef] = &[
    PackDef {
        name: "sovereignty",
        description: "Data residency and sovereignty: personal and regulated data declare where they may be processed, \
                      residencies can be met, work stays within them and within each project's allowed locations, \
                      and strict sovereignty keeps work away from foreign-controlled operators.",
        enforcement: Enforcement::Deny,
        rules: &[
            RuleDef {
                name: "residency-declared",
                file: "residency_declared",
                description: "Personal and regulated data must declare a residency.",
                targets: &["Workload"],
                controls: &[(GDPR, "Art.44"), (ISO, "A.5.34")],
                parameters: Some(r#"{"classifications": ["personal", "regulated"]}"#),
                rego: SOV_DECLARED.0,
                test: SOV_DECLARED.1,
            },
            RuleDef {
                name: "residency-satisfiable",
                file: "residency_satisfiable",
                description: "A workload's residency must be satisfiable by at least one registered site.",
                targets: &["Workload"],
                controls: &[(GDPR, "Art.44"), (NIST, "SA-9(5)")],
                parameters: None,
                rego: SOV_SATISFIABLE.0,
                test: SOV_SATISFIABLE.1,
            },
            RuleDef {
                name: "placement-residency",
                file: "placement_residency",
                description: "Allocations must be on a site within their workload's residency.",
                targets: &["Allocation"],
                controls: &[(GDPR, "Art.44"), (NIST, "SA-9(5)")],
                parameters: None,
                rego: SOV_PLACEMENT.0,
                test: SOV_PLACEMENT.1,
            },
            RuleDef {
                name: "strict-operator",
                file: "strict_operator",
                description: "Strict-sovereignty workloads only on sites whose operator is under an allowed jurisdiction.",
                targets: &["Allocation"],
                controls: &[(GDPR, "Art.46"), (GDPR, "Art.48"), (C5, "INQ-01")],
                parameters: None,
                rego: SOV_STRICT.0,
                test: SOV_STRICT.1,
            },
            RuleDef {
                name: "allowed-locations",
                file: "allowed_locations",
                description: "Workloads and allocations stay within their project's allowed locations.",
                targets: &["Workload", "Allocation"],
                controls: &[(NIST, "AC-3"), (NIST, "SA-9(5)"), (ISO, "A.5.31")],
                parameters: Some(r#"{"defaultAllowedLocations": []}"#),
                rego: SOV_LOCATIONS.0,
                test: SOV_LOCATIONS.1,
            },
        ],
    },
    PackDef {
        name: "baseline",
        description: "Host posture for Windows and Linux nodes: disk encryption, Secure Boot, a supported OS version, \
                      security patches within 30 days, an owner for every node; and no task running as root.",
        enforcement: Enforcement::Audit,
        rules: &[
            RuleDef {
                name: "disk-encryption",
                file: "disk_encryption",
                description: "Node disks are encrypted at rest (BitLocker, LUKS).",
                targets: &["Node"],
                controls: &[(NIST, "SC-28"), (ISO, "A.8.24"), (C5, "CRY-03")],
                parameters: None,
                rego: BASE_DISK.0,
                test: BASE_DISK.1,
            },
            RuleDef {
                name: "secure-boot",
                file: "secure_boot",
                description: "Nodes boot with Secure Boot enabled.",
                targets: &["Node"],
                controls: &[(NIST, "SI-7"), (NIST, "CM-6"), (ISO, "A.8.9")],
                parameters: None,
                rego: BASE_BOOT.0,
                test: BASE_BOOT.1,
            },
            RuleDef {
                name: "os-supported",
                file: "os_supported",
                description: "Nodes run an OS version their vendor still supports.",
                targets: &["Node"],
                controls: &[(NIST, "SA-22"), (ISO, "A.8.8")],
                parameters: Some(
                    r#"{"supported": {"rhel": ["8", "9", "10"], "ubuntu": ["22.04", "24.04"], "debian": ["12", "13"], "amzn": ["2023"], "sles": ["15"], "windows-server": ["2019", "2022", "2025"]}}"#,
                ),
                rego: BASE_OS.0,
                test: BASE_OS.1,
            },
            RuleDef {
                name: "patch-age",
                file: "patch_age",
                description: "Nodes received security updates within the last 30 days.",
                targets: &["Node"],
                controls: &[(NIST, "SI-2"), (ISO, "A.8.8"), (C5, "OPS-22")],
                parameters: Some(r#"{"maxPatchAgeDays": 30}"#),
                rego: BASE_PATCH.0,
                test: BASE_PATCH.1,
            },
            RuleDef {
                name: "owner-label",
                file: "owner_label",
                description: "Every node has an owner label.",
                targets: &["Node"],
                controls: &[(NIST, "CM-8"), (ISO, "A.5.9"), (C5, "AM-01")],
                parameters: Some(r#"{"labelKey": "owner"}"#),
                rego: BASE_OWNER.0,
                test: BASE_OWNER.1,
            },
            RuleDef {
                name: "no-root",
                file: "no_root",
                description: "Tasks do not run as root (task.user root or uid 0), except in the projects allowedProjects lists.",
                targets: &["Workload"],
                controls: &[
                    (NIST, "AC-6"),
                    (NIST, "CM-7"),
                    (ISO, "A.8.2"),
                    (C5, "IDM-06"),
                ],
                parameters: Some(r#"{"allowedProjects": []}"#),
                rego: BASE_ROOT.0,
                test: BASE_ROOT.1,
            },
        ],
    },
    PackDef {
        name: "ai",
        description: "AI and GPU work: GPU workloads wait in a named queue and declare the residency of their training data.",
        enforcement: Enforcement::Warn,
        rules: &[
            RuleDef {
                name: "gpu-queue",
                file: "gpu_queue",
                description: "GPU workloads name a queue.",
                targets: &["Workload"],
                controls: &[(NIST, "SC-6"), (ISO, "A.8.6")],
                parameters: None,
                rego: AI_QUEUE.0,
                test: AI_QUEUE.1,
            },
            RuleDef {
                name: "training-data-residency",
                file: "training_data_residency",
                description: "GPU workloads declare the residency of their training data.",
                targets: &["Workload"],
                controls: &[(AI_ACT, "Art.10"), (GDPR, "Art.44")],
                parameters: None,
                rego: AI_DATA.0,
                test: AI_DATA.1,
            },
        ],
    },
    PackDef {
        name: "migration",
        description: "Virtualization modernization: concerns about imported VirtualMachines by category, as Forklift's \
                      (Critical: not ready; Warning: conditionally ready; Information). `meridian migrate assess` \
                      turns them into readiness; edit them like any policy.",
        enforcement: Enforcement::Audit,
        rules: &[
            RuleDef {
                name: "critical",
                file: "critical",
                description: "Concerns that block a move to KVM: passthrough or SR-IOV devices, raw device mappings, multi-writer disks, guests without virtio drivers.",
                targets: &["VirtualMachine"],
                controls: &[(NIST, "CM-8"), (ISO, "A.8.9")],
                parameters: None,
                rego: MIG_CRITICAL.0,
                test: MIG_CRITICAL.1,
            },
            RuleDef {
                name: "warning",
                file: "warning",
                description: "Concerns that need work: snapshots, independent disks, end-of-life guests, Windows virtio drivers, USB, vTPM, UEFI and Secure Boot, low free space for conversion.",
                targets: &["VirtualMachine"],
                controls: &[(NIST, "CM-8"), (NIST, "SA-22"), (ISO, "A.8.8")],
                parameters: Some(r#"{"minFreeMiB": 1024}"#),
                rego: MIG_WARNING.0,
                test: MIG_WARNING.1,
            },
            RuleDef {
                name: "information",
                file: "information",
                description: "Facts worth knowing: CBT off (cold migration only), hot-plug, DRS rules, names that are not RFC 1123, VMware Tools not running.",
                targets: &["VirtualMachine"],
                controls: &[(NIST, "CM-8")],
                parameters: None,
                rego: MIG_INFO.0,
                test: MIG_INFO.1,
            },
        ],
    },
];

/// Every built-in pack, with its policies ready to apply.
pub fn packs() -> Vec<Pack> {
    PACKS.iter().map(build).collect()
}

/// One pack by name.
pub fn pack(name: &str) -> Option<Pack> {
    PACKS.iter().find(|p| p.name == name).map(build)
}

fn build(def: &PackDef) -> Pack {
    let policies = def
        .rules
        .iter()
        .map(|r| {
            let mut meta = ObjectMeta::named(format!("{}-{}", def.name, r.name));
            meta.labels = BTreeMap::from([(PACK_LABEL.to_string(), def.name.to_string())]);
            meta.annotations = BTreeMap::from([(
                SOURCE_ANNOTATION.to_string(),
                format!("packs/{}/{}.rego", def.name, r.file),
            )]);
            Policy::new(
                meta,
                PolicySpec {
                    description: Some(r.description.to_string()),
                    enforcement: def.enforcement,
                    rego: r.rego.to_string(),
                    targets: r.targets.iter().map(|t| t.to_string()).collect(),
                    match_: None,
                    parameters: r
                        .parameters
                        .map(|p| serde_json::from_str(p).expect("pack parameters are JSON")),
                    controls: r
                        .controls
                        .iter()
                        .map(|(framework, id)| Control {
                            framework: framework.to_string(),
                            id: id.to_string(),
                        })
                        .collect(),
                    ..PolicySpec::default()
                },
            )
        })
        .collect();
    Pack {
        name: def.name,
        description: def.description,
        policies,
    }
}
