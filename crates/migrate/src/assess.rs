//! Assessment: per VM, its concerns (the `migration` Rego pack, run by `policy`), its
//! size on the target (as-is, or from utilisation × a comfort factor), its data
//! classification and residency (the plan's mapping rules), and per target site a
//! readiness with reasons and a monthly cost.
//!
//! Placement is never decided here: [`whatif_workloads`] builds one `vm` Workload per VM
//! and target (restricted to the site by `site.name In [target]`), the caller asks the
//! server's what-if endpoint (`POST /meridian/v1/plan`), and [`assess`] reads its
//! decisions. A VM refused with its residency but placed without it is refused *by*
//! residency (or its project's allowed locations, or sovereignty): the engine says so,
//! this module only compares its two answers.

use std::collections::HashMap;

use api::explanation::{Decision, Outcome, ReasonCode};
use api::kinds::{Classification, Sovereignty};
use api::migrate::{MappingRule, Sizing, VirtualMachine, VirtualMachineSpec};
use api::{Site, Workload};
use policy::{AuditOptions, FleetContext, PolicySet, audit};
use serde::Serialize;
use serde_json::{Value, json};

/// Label a policy may carry to give its concerns a category (else the name decides:
/// `…-critical`, `…-warning`, anything else Information).
pub const CATEGORY_LABEL: &str = "migration.meridian.dev/category";

/// Forklift's concern categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    Critical,
    Warning,
    Information,
}

impl Category {
    /// From a policy's label or name.
    pub fn of_policy(name: &str, label: Option<&str>) -> Category {
        let key = label.unwrap_or(name).to_ascii_lowercase();
        if key.ends_with("critical") {
            Category::Critical
        } else if key.ends_with("warning") {
            Category::Warning
        } else {
            Category::Information
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Critical => "Critical",
            Category::Warning => "Warning",
            Category::Information => "Information",
        }
    }
}

/// One concern about one VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Concern {
    pub category: Category,
    pub policy: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Runs the policies over the VM objects (as JSON), on `threads` threads: one list of
/// concerns per VM, in order, and the number of evaluations. `categories` maps a policy
/// name to its category (see [`Category::of_policy`]).
pub fn concerns(
    vms: &[Value],
    set: &PolicySet,
    categories: &HashMap<String, Category>,
    threads: usize,
) -> (Vec<Vec<Concern>>, u64, Vec<String>) {
    let options = AuditOptions {
        threads: std::num::NonZeroUsize::new(threads.max(1)).expect("at least one"),
        ..AuditOptions::default()
    };
    let run = audit(vms, set, &FleetContext::default(), options);
    let errors = run.errors.iter().map(ToString::to_string).collect();
    let mut out: Vec<Vec<Concern>> = run
        .results
        .iter()
        .map(|r| {
            let mut list: Vec<Concern> = r
                .violations
                .iter()
                .map(|v| Concern {
                    category: categories
                        .get(&*v.policy)
                        .copied()
                        .unwrap_or_else(|| Category::of_policy(&v.policy, None)),
                    policy: v.policy.to_string(),
                    message: v.message.clone(),
                    field: v.field.clone(),
                })
                .collect();
            list.sort_by(|a, b| (a.category, &a.message).cmp(&(b.category, &b.message)));
            list
        })
        .collect();
    out.resize(vms.len(), Vec::new());
    (out, run.evaluations, errors)
}

/// What the mapping rules give a VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapped {
    pub classification: Classification,
    pub residency: Vec<String>,
    pub sovereignty: Sovereignty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Index of the rule that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
}

/// The first rule that matches the VM (every field it sets must match,
/// case-insensitively), or the defaults (`internal`, anywhere).
pub fn map(vm: &VirtualMachineSpec, rules: &[MappingRule]) -> Mapped {
    let eq = |a: &Option<String>, b: &Option<String>| match a {
        None => true,
        Some(want) => b
            .as_deref()
            .is_some_and(|have| have.eq_ignore_ascii_case(want)),
    };
    let contains = |want: &Option<String>, have: Option<&str>| match want {
        None => true,
        Some(w) => have.is_some_and(|h| h.to_ascii_lowercase().contains(&w.to_ascii_lowercase())),
    };
    for (i, rule) in rules.iter().enumerate() {
        let m = &rule.match_;
        let folder = match &m.folder {
            None => true,
            Some(prefix) => vm.source.folder.as_deref().is_some_and(|f| {
                f.to_ascii_lowercase()
                    .starts_with(&prefix.to_ascii_lowercase())
            }),
        };
        let tag = match &m.tag {
            None => true,
            Some(t) => match t.split_once('=') {
                Some((k, v)) => vm
                    .tags
                    .iter()
                    .any(|(tk, tv)| tk.eq_ignore_ascii_case(k) && tv.eq_ignore_ascii_case(v)),
                None => vm.tags.keys().any(|k| k.eq_ignore_ascii_case(t)),
            },
        };
        if folder
            && tag
            && eq(&m.datacenter, &vm.source.datacenter)
            && eq(&m.cluster, &vm.source.cluster)
            && contains(&m.annotation, vm.annotation.as_deref())
            && contains(&m.name, Some(&vm.name))
        {
            return Mapped {
                classification: rule.classification.unwrap_or_default(),
                residency: rule.residency.clone(),
                sovereignty: rule.sovereignty.unwrap_or_default(),
                project: rule.project.clone(),
                rule: Some(i),
            };
        }
    }
    Mapped::default()
}

/// A VM's size on the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Size {
    pub cpus: u32,
    pub memory_mib: u64,
    /// `asIs`, `performance`, or `asIs (no utilisation)`.
    pub basis: &'static str,
}

/// As-is, or from utilisation: vCPUs × use × comfort (at least 1), active memory ×
/// comfort (at least 512 MiB, rounded up to 256 MiB); never more than the source has.
pub fn size(vm: &VirtualMachineSpec, sizing: &Sizing) -> Size {
    let as_is = Size {
        cpus: vm.cpus.max(1),
        memory_mib: vm.memory_mib.max(1),
        basis: "asIs",
    };
    if sizing.mode != "performance" {
        return as_is;
    }
    let Some(u) = &vm.utilization else {
        return Size {
            basis: "asIs (no utilisation)",
            ..as_is
        };
    };
    let cpus = match u.cpu_percent {
        Some(p) => ((f64::from(vm.cpus) * p / 100.0 * sizing.comfort_factor).ceil() as u32)
            .clamp(1, as_is.cpus),
        None => as_is.cpus,
    };
    let memory_mib = match u.memory_active_mib {
        Some(a) => {
            let want = (a as f64 * sizing.comfort_factor).ceil() as u64;
            (want.max(512).div_ceil(256) * 256).min(as_is.memory_mib)
        }
        None => as_is.memory_mib,
    };
    Size {
        cpus,
        memory_mib,
        basis: "performance",
    }
}

/// Hours in a month, as cloud price lists count them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Monthly cost of a size at a site, from its pricing (`None` without prices).
pub fn monthly_cost(site: &Site, size: &Size) -> Option<f64> {
    let p = site.spec.pricing.as_ref()?;
    let cpu = p.cpu_core_hour? * f64::from(size.cpus);
    let memory = p.memory_gib_hour.unwrap_or(0.0) * size.memory_mib as f64 / 1024.0;
    Some((cpu + memory) * HOURS_PER_MONTH)
}

/// The what-if workload name for VM `vm` at target number `target`; `bare` is the variant
/// without data policy.
pub fn whatif_name(vm: &str, target: usize, bare: bool) -> String {
    let mut name = format!("{}{target}-{vm}", if bare { "b" } else { "m" });
    name.truncate(63);
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// One `vm` Workload per target for a VM, sized, with its mapped data policy (or without
/// it: `bare`), pinned to the target site.
pub fn whatif_workload(
    vm: &VirtualMachine,
    project: &str,
    size: &Size,
    mapped: &Mapped,
    target: (usize, &str),
    bare: bool,
) -> Workload {
    let mut spec = json!({
        "type": "vm",
        "replicas": 1,
        "task": {
            "driver": "qemu",
            "disk": {"image": format!("migrate/{}.qcow2", vm.metadata.name), "format": "qcow2"},
            "resources": {"cpu": size.cpus.to_string(), "memory": format!("{}Mi", size.memory_mib)},
        },
        "placement": {"matchExpressions": [{"key": "site.name", "operator": "In", "values": [target.1]}]},
    });
    // No `task.os`: the guest's OS does not constrain the KVM host's.
    if !bare {
        spec["data"] = json!({
            "classification": mapped.classification,
            "residency": mapped.residency,
            "sovereignty": mapped.sovereignty,
        });
    }
    let value = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Workload",
        "metadata": {"name": whatif_name(&vm.metadata.name, target.0, bare), "namespace": project},
        "spec": spec,
    });
    serde_json::from_value(value).expect("the what-if workload is a valid Workload")
}

/// Azure Migrate's readiness (ordered from best to worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Readiness {
    Ready,
    #[serde(rename = "Conditionally ready")]
    ConditionallyReady,
    #[serde(rename = "Not ready")]
    NotReady,
    Unknown,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "Ready",
            Readiness::ConditionallyReady => "Conditionally ready",
            Readiness::NotReady => "Not ready",
            Readiness::Unknown => "Unknown",
        }
    }
}

/// A VM at one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetAssessment {
    pub site: String,
    pub readiness: Readiness,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cost: Option<f64>,
    /// The cost as-is (unsized), to compare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cost_as_is: Option<f64>,
}

/// One VM's assessment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmAssessment {
    /// The VirtualMachine object's name.
    pub vm: String,
    /// The source name.
    pub name: String,
    pub project: String,
    pub size: Size,
    pub mapped: Mapped,
    pub disk_mib: u64,
    pub concerns: Vec<Concern>,
    pub targets: Vec<TargetAssessment>,
}

impl VmAssessment {
    /// The best target: most ready, then cheapest, then by name.
    pub fn best(&self) -> Option<&TargetAssessment> {
        self.targets.iter().min_by(|a, b| {
            (a.readiness, a.monthly_cost.unwrap_or(f64::MAX), &a.site)
                .partial_cmp(&(b.readiness, b.monthly_cost.unwrap_or(f64::MAX), &b.site))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    }

    /// The best target where the what-if placed it (most ready, then cheapest): where a
    /// wave can take it without over-committing the site. `None` when no target had room
    /// (or none allows it).
    pub fn best_placed(&self) -> Option<&TargetAssessment> {
        self.targets
            .iter()
            .filter(|t| {
                t.node.is_some()
                    && matches!(
                        t.readiness,
                        Readiness::Ready | Readiness::ConditionallyReady
                    )
            })
            .min_by(|a, b| {
                (a.readiness, a.monthly_cost.unwrap_or(f64::MAX), &a.site)
                    .partial_cmp(&(b.readiness, b.monthly_cost.unwrap_or(f64::MAX), &b.site))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    }

    /// The targets a wave may take it to, best first (most ready, then cheapest, then by
    /// name), as indexes into `targets`: those Ready or Conditionally ready there, that
    /// is, refused by no rule (capacity aside).
    pub fn ranked_targets(&self) -> Vec<usize> {
        let mut ranked: Vec<usize> = (0..self.targets.len())
            .filter(|&t| {
                matches!(
                    self.targets[t].readiness,
                    Readiness::Ready | Readiness::ConditionallyReady
                )
            })
            .collect();
        ranked.sort_by(|&a, &b| {
            let (a, b) = (&self.targets[a], &self.targets[b]);
            (a.readiness, a.monthly_cost.unwrap_or(f64::MAX), &a.site)
                .partial_cmp(&(b.readiness, b.monthly_cost.unwrap_or(f64::MAX), &b.site))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        ranked
    }

    /// Keeps only `placed` (target index and node) as where the what-if placed it, or no
    /// target at all: what the plan's own placement decided, for [`Self::best_placed`].
    pub fn settle(&mut self, placed: Option<(usize, String)>) {
        for (t, target) in self.targets.iter_mut().enumerate() {
            target.node = match &placed {
                Some((chosen, node)) if *chosen == t => Some(node.clone()),
                _ => None,
            };
        }
    }

    /// The overall readiness: the best target's, or Unknown without targets.
    pub fn readiness(&self) -> Readiness {
        self.best().map_or(Readiness::Unknown, |t| t.readiness)
    }
}

/// What to assess against.
pub struct Inputs<'a> {
    pub vms: &'a [VirtualMachine],
    /// Per VM, in order.
    pub concerns: Vec<Vec<Concern>>,
    pub sizes: &'a [Size],
    pub mapped: &'a [Mapped],
    /// Project of each VM's target workload.
    pub projects: &'a [String],
    pub targets: &'a [Site],
    /// The plan endpoint's decisions for the workloads of [`whatif_workload`], with and
    /// without data policy (bare ones only needed for VMs refused with it).
    pub decisions: &'a [Decision],
}

/// Capacity-like reasons: the target could take the VM with more room.
fn capacity_only(codes: &[ReasonCode]) -> bool {
    codes.iter().all(|c| {
        matches!(
            c,
            ReasonCode::Cpu
                | ReasonCode::Memory
                | ReasonCode::EphemeralStorage
                | ReasonCode::Quota
                | ReasonCode::Queue
                | ReasonCode::Placement
        )
    })
}

/// What a chain of what-if bodies placed so far: sent as the next body's `reserved`
/// (`POST /meridian/v1/plan`), so that a later body sees the room the earlier ones used and
/// no node's room is counted twice. CPU, memory and ephemeral storage are summed per node;
/// a placement holding GPUs is kept on its own (its devices are the node's business).
#[derive(Debug, Clone, Default)]
pub struct Held {
    per_node: std::collections::BTreeMap<String, [u64; 3]>,
    with_gpus: Vec<api::explanation::Reservation>,
}

impl Held {
    /// Adds the placements among `decisions`.
    pub fn add(&mut self, decisions: &[Decision]) {
        for d in decisions {
            let Outcome::Placed(p) = &d.outcome else {
                continue;
            };
            let r = &p.resources;
            if r.gpu.as_ref().is_some_and(|g| !g.count.is_zero()) {
                self.with_gpus.push(api::explanation::Reservation {
                    node: p.node.clone(),
                    resources: r.clone(),
                });
                continue;
            }
            let sums = self.per_node.entry(p.node.clone()).or_default();
            sums[0] += r.cpu.millis();
            sums[1] += r.memory.bytes();
            sums[2] += r.ephemeral_storage.map_or(0, |m| m.bytes());
        }
    }

    /// The `reserved` list of the next body.
    pub fn reservations(&self) -> Vec<api::explanation::Reservation> {
        let mut out: Vec<api::explanation::Reservation> = self
            .per_node
            .iter()
            .map(
                |(node, [cpu, memory, ephemeral])| api::explanation::Reservation {
                    node: node.clone(),
                    resources: api::kinds::Resources {
                        cpu: api::quantity::Cpu(*cpu),
                        memory: api::quantity::Memory(*memory),
                        ephemeral_storage: (*ephemeral > 0)
                            .then_some(api::quantity::Memory(*ephemeral)),
                        gpu: None,
                    },
                },
            )
            .collect();
        out.extend(self.with_gpus.iter().cloned());
        out
    }
}

/// Readiness per VM per target from concerns and placement answers.
pub fn assess(inputs: &Inputs<'_>) -> Vec<VmAssessment> {
    let by_name: HashMap<(&str, &str), &Decision> = inputs
        .decisions
        .iter()
        .map(|d| ((d.workload.namespace.as_str(), d.workload.name.as_str()), d))
        .collect();
    let mut out = Vec::with_capacity(inputs.vms.len());
    for (i, vm) in inputs.vms.iter().enumerate() {
        let concerns = inputs.concerns.get(i).cloned().unwrap_or_default();
        let size = inputs.sizes[i];
        let project = inputs.projects[i].as_str();
        let as_is = Size {
            cpus: vm.spec.cpus.max(1),
            memory_mib: vm.spec.memory_mib.max(1),
            basis: "asIs",
        };
        let unknown = vm.spec.os.family.is_none() && vm.spec.disks.is_empty();
        let critical: Vec<String> = concerns
            .iter()
            .filter(|c| c.category == Category::Critical)
            .map(|c| c.message.clone())
            .collect();
        let warnings = concerns.iter().any(|c| c.category == Category::Warning);
        let mut targets = Vec::new();
        for (t, site) in inputs.targets.iter().enumerate() {
            let site_name = site.metadata.name.as_str();
            let mut reasons = critical.clone();
            let mut readiness = if !critical.is_empty() {
                Readiness::NotReady
            } else if unknown {
                reasons.push("the source reports neither a guest OS nor disks: re-export with VMware Tools running, or import vDisk".into());
                Readiness::Unknown
            } else if warnings {
                Readiness::ConditionallyReady
            } else {
                Readiness::Ready
            };
            let name = whatif_name(&vm.metadata.name, t, false);
            let mut node = None;
            match by_name.get(&(project, name.as_str())).map(|d| &d.outcome) {
                Some(Outcome::Placed(p)) => node = Some(p.node.clone()),
                Some(Outcome::Unplaceable(e)) => {
                    let bare = whatif_name(&vm.metadata.name, t, true);
                    let bare_outcome = by_name.get(&(project, bare.as_str())).map(|d| &d.outcome);
                    let codes: Vec<ReasonCode> = e.rejections.iter().map(|r| r.reason).collect();
                    // Refused for capacity alone says nothing about the data policy (the
                    // bare what-if ran in another batch, with the room this one used).
                    let capacity = capacity_only(&codes);
                    match bare_outcome {
                        Some(Outcome::Placed(_)) if !capacity => {
                            readiness = Readiness::NotReady;
                            reasons.push(format!(
                                "site {site_name} is outside what the VM's data policy allows (residency {:?}, {} sovereignty, or the project's allowed locations): {}",
                                inputs.mapped[i].residency, inputs.mapped[i].sovereignty, e.summary
                            ));
                        }
                        _ => {
                            if capacity {
                                readiness = readiness.max(Readiness::ConditionallyReady);
                                reasons.push(format!(
                                    "site {site_name} lacks free capacity for it now: {}",
                                    e.summary
                                ));
                            } else {
                                readiness = Readiness::NotReady;
                                reasons.push(format!(
                                    "cannot be placed at site {site_name}: {}",
                                    e.summary
                                ));
                            }
                        }
                    }
                }
                None => {
                    if readiness != Readiness::NotReady {
                        readiness = Readiness::Unknown;
                    }
                    reasons.push(format!("no placement answer for site {site_name}"));
                }
            }
            if readiness == Readiness::ConditionallyReady {
                reasons.extend(
                    concerns
                        .iter()
                        .filter(|c| c.category == Category::Warning)
                        .map(|c| c.message.clone()),
                );
            }
            targets.push(TargetAssessment {
                site: site_name.to_string(),
                readiness,
                reasons,
                node,
                monthly_cost: monthly_cost(site, &size),
                monthly_cost_as_is: monthly_cost(site, &as_is),
            });
        }
        out.push(VmAssessment {
            vm: vm.metadata.name.clone(),
            name: vm.spec.name.clone(),
            project: project.to_string(),
            size,
            mapped: inputs.mapped[i].clone(),
            disk_mib: vm.spec.disk_mib(),
            concerns,
            targets,
        });
    }
    out
}

/// Counts per readiness of the VMs' best targets.
pub fn summary(assessments: &[VmAssessment]) -> Vec<(Readiness, usize)> {
    let mut counts: HashMap<Readiness, usize> = HashMap::new();
    for a in assessments {
        *counts.entry(a.readiness()).or_default() += 1;
    }
    let mut out: Vec<_> = counts.into_iter().collect();
    out.sort();
    out
}

/// The built-in `migration` pack's policies compiled, with their categories.
pub fn builtin_policies() -> (PolicySet, HashMap<String, Category>) {
    let pack = policy::pack("migration").expect("the migration pack is built in");
    policies(&pack.policies)
}

/// Compiles policies and reads their categories (label, else name).
pub fn policies(list: &[api::Policy]) -> (PolicySet, HashMap<String, Category>) {
    let categories = list
        .iter()
        .map(|p| {
            let label = p.metadata.labels.get(CATEGORY_LABEL).map(String::as_str);
            (
                p.metadata.name.clone(),
                Category::of_policy(&p.metadata.name, label),
            )
        })
        .collect();
    let (set, errors) = PolicySet::compile(list, policy::CompileOptions::default());
    debug_assert!(errors.is_empty() || !list.is_empty());
    (set, categories)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::migrate::{MappingRule, Utilization, VmMatch, VmSource};

    fn vm() -> VirtualMachineSpec {
        VirtualMachineSpec {
            uuid: "u-1".into(),
            name: "Payroll_DB".into(),
            source: VmSource {
                kind: "rvtools".into(),
                folder: Some("/Finance/Payroll".into()),
                datacenter: Some("DC-Frankfurt".into()),
                ..Default::default()
            },
            cpus: 8,
            memory_mib: 32768,
            utilization: Some(Utilization {
                cpu_percent: Some(20.0),
                memory_active_mib: Some(4000),
                percentile: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn mapping_first_match_wins() {
        let rules = vec![
            MappingRule {
                match_: VmMatch {
                    folder: Some("/finance".into()),
                    ..Default::default()
                },
                classification: Some(Classification::Personal),
                residency: vec!["EU".into()],
                project: Some("finance".into()),
                ..Default::default()
            },
            MappingRule::default(),
        ];
        let m = map(&vm(), &rules);
        assert_eq!(m.rule, Some(0));
        assert_eq!(m.residency, ["EU"]);
        let mut other = vm();
        other.source.folder = Some("/Lab".into());
        assert_eq!(map(&other, &rules).rule, Some(1));
        assert_eq!(map(&other, &[]).rule, None);
    }

    #[test]
    fn right_sizing() {
        let perf = Sizing {
            mode: "performance".into(),
            comfort_factor: 1.3,
        };
        let s = size(&vm(), &perf);
        // 8 × 20% × 1.3 = 2.08 → 3; 4000 × 1.3 = 5200 → 5376.
        assert_eq!((s.cpus, s.memory_mib), (3, 5376));
        let mut idle = vm();
        idle.utilization = None;
        assert_eq!(size(&idle, &perf).basis, "asIs (no utilisation)");
        assert_eq!(size(&vm(), &Sizing::default()).cpus, 8);
    }

    #[test]
    fn builtin_pack_finds_concerns() {
        let (set, categories) = builtin_policies();
        let mut spec = vm();
        spec.passthrough = vec!["PCI device 0".into()];
        spec.os.family = Some("windows".into());
        let object = crate::objects::to_object(&spec, "finance");
        let (found, evaluations, errors) = concerns(
            &[serde_json::to_value(&object).unwrap()],
            &set,
            &categories,
            1,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(evaluations, 3);
        let cats: Vec<Category> = found[0].iter().map(|c| c.category).collect();
        assert!(cats.contains(&Category::Critical), "{found:?}");
        assert!(cats.contains(&Category::Warning), "{found:?}");
        assert!(cats.contains(&Category::Information), "{found:?}");
    }

    #[test]
    fn whatif_workloads_validate() {
        let object = crate::objects::to_object(&vm(), "finance");
        let s = size(&vm(), &Sizing::default());
        let w = whatif_workload(
            &object,
            "finance",
            &s,
            &Mapped::default(),
            (3, "onprem-frankfurt"),
            false,
        );
        api::validate::validate(&api::AnyObject::Workload(w)).unwrap();
    }
}
