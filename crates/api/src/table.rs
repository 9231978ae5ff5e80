//! Columns of `meridian get` tables, per kind, as kubectl prints them. The caller adds
//! `NAMESPACE` in front when listing across projects and `AGE` at the end, except for
//! events ([`has_name_and_age`]), whose columns are kubectl's (`LAST SEEN`, `TYPE`,
//! `REASON`, `OBJECT`, `MESSAGE`); their time columns ([`TIME_COLUMNS`]) hold RFC 3339
//! timestamps that the caller, which has a clock, shows as ages.

use crate::kinds::*;
use crate::quantity::{Cpu, Memory};

const NONE: &str = "<none>";

/// Column headers for a kind (`wide` is `-o wide`), without `AGE`.
pub fn columns(info: &KindInfo, wide: bool) -> Vec<&'static str> {
    let (base, extra): (&[&str], &[&str]) = match info.kind {
        "Site" => (
            &[
                "NAME",
                "PROVIDER",
                "REGION",
                "JURISDICTION",
                "OPERATOR",
                "CERTIFICATIONS",
            ],
            &["ZONES", "NODES", "CARBON"],
        ),
        "Node" => (
            &[
                "NAME",
                "SITE",
                "OS",
                "ARCH",
                "CPU-FREE",
                "MEMORY-FREE",
                "STATUS",
            ],
            &["ZONE", "GPUS", "DRIVERS"],
        ),
        "Workload" => (
            &[
                "NAME",
                "TYPE",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "DRIVER",
                "RESIDENCY",
                "PRIORITY",
            ],
            &[
                "PLACED",
                "REVISION",
                "OS",
                "CPU",
                "MEMORY",
                "GPU",
                "COMPLIANCE",
            ],
        ),
        "Allocation" => (
            &["NAME", "WORKLOAD", "NODE", "DESIRED", "PHASE"],
            &["SITE", "RESTARTS", "REVISION", "CPU", "MEMORY"],
        ),
        "Policy" => (
            &["NAME", "ENFORCEMENT", "TARGETS"],
            &["PROJECTS", "CONTROLS"],
        ),
        "Project" => (
            &["NAME", "OWNERS", "ALLOWED-LOCATIONS"],
            &["QUOTA", "DESCRIPTION"],
        ),
        "Secret" => (&["NAME", "TYPE", "DATA"], &["KEYS"]),
        "VirtualMachine" => (
            &[
                "NAME",
                "SOURCE-NAME",
                "CPUS",
                "MEMORY",
                "DISK",
                "OS",
                "POWER",
            ],
            &["DATACENTER", "CLUSTER", "FOLDER", "PHASE", "WORKLOAD"],
        ),
        "MigrationPlan" => (&["NAME", "TARGETS", "RULES", "WAVES"], &["BANDWIDTH"]),
        "Queue" => (
            &["NAME", "COHORT", "STRATEGY", "PENDING", "ADMITTED", "USAGE"],
            &["WEIGHT", "SHARE", "PROJECTS"],
        ),
        "Cohort" => (
            &["NAME", "PARENT", "QUEUES", "QUOTA", "USAGE", "WEIGHT"],
            &["SHARE", "FLAVORS"],
        ),
        "Event" => (
            &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            &["SOURCE", "COUNT", "FIRST SEEN", "NAME"],
        ),
        _ => (&["NAME"], &[]),
    };
    let mut out = base.to_vec();
    if wide {
        out.extend_from_slice(extra);
    }
    out
}

/// Columns whose cells are RFC 3339 timestamps, shown as ages (`5m`) by the caller.
pub const TIME_COLUMNS: &[&str] = &["LAST SEEN", "FIRST SEEN"];

/// Whether the first column is the name and the caller adds `AGE` (every kind but
/// `Event`, whose table is kubectl's `get events` table).
pub fn has_name_and_age(info: &KindInfo) -> bool {
    info.has_spec()
}

/// `workload/payroll-api`, as kubectl's `OBJECT` column.
pub fn object_ref(o: &crate::event::ObjectReference) -> String {
    format!("{}/{}", o.kind.to_ascii_lowercase(), o.name)
}

fn join(values: &[String]) -> String {
    if values.is_empty() {
        NONE.to_string()
    } else {
        values.join(",")
    }
}

fn or_none(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => NONE.to_string(),
    }
}

/// `linux rhel 9.4`, `windows 10.0.20348`.
fn node_os(os: &NodeOs) -> String {
    let mut parts = vec![os.family.to_string()];
    if os.family == OsFamily::Windows {
        if let Some(b) = os.build.as_ref().or(os.version.as_ref()) {
            parts.push(b.clone());
        }
    } else {
        parts.extend(os.distro.iter().cloned());
        parts.extend(os.version.iter().cloned());
    }
    parts.join(" ")
}

fn gpus(devices: &[GpuDevice]) -> String {
    let v: Vec<String> = devices
        .iter()
        .map(|g| format!("{}x{}", g.count, g.model))
        .collect();
    join(&v)
}

/// One row, in the order of [`columns`], without `AGE`.
pub fn row(obj: &AnyObject, wide: bool) -> Vec<String> {
    let name = obj.name().to_string();
    let (base, extra): (Vec<String>, Vec<String>) = match obj {
        AnyObject::Site(o) => {
            let s = &o.spec;
            let operator = s
                .operator
                .as_ref()
                .map(|op| format!("{} ({})", op.name, op.jurisdiction));
            let nodes = o
                .status
                .as_ref()
                .map(|st| format!("{}/{}", st.ready_nodes, st.nodes));
            let carbon = s
                .carbon
                .as_ref()
                .map(|c| format!("{}g/kWh", c.grams_per_kwh));
            (
                vec![
                    name,
                    s.provider.clone(),
                    or_none(s.region.as_deref()),
                    s.jurisdiction.clone(),
                    or_none(operator.as_deref()),
                    join(&s.certifications),
                ],
                vec![
                    join(&s.zones),
                    or_none(nodes.as_deref()),
                    or_none(carbon.as_deref()),
                ],
            )
        }
        AnyObject::Node(o) => {
            let s = &o.spec;
            let a = s.allocatable();
            let mut status = o
                .status
                .as_ref()
                .and_then(|st| st.phase)
                .map_or("Unknown".to_string(), |p| p.to_string());
            if s.unschedulable {
                status.push_str(",SchedulingDisabled");
            }
            let used = o.status.as_ref().and_then(|st| st.allocated.clone());
            let (cpu_used, memory_used) =
                used.map_or((Cpu::default(), Memory::default()), |u| (u.cpu, u.memory));
            let cpu_free = a.cpu.checked_sub(cpu_used).unwrap_or_default();
            let memory_free = a.memory.checked_sub(memory_used).unwrap_or_default();
            (
                vec![
                    name,
                    s.site.clone(),
                    node_os(&s.os),
                    s.arch.to_string(),
                    format!("{cpu_free}/{}", a.cpu),
                    format!("{}/{}", memory_free.approx(), a.memory.approx()),
                    status,
                ],
                vec![
                    or_none(s.zone.as_deref()),
                    gpus(&a.gpus),
                    join(
                        &s.drivers
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>(),
                    ),
                ],
            )
        }
        AnyObject::Workload(o) => {
            let s = &o.spec;
            let st = o.status.clone().unwrap_or_default();
            let residency = s
                .data
                .as_ref()
                .map(|d| d.residency.clone())
                .unwrap_or_default();
            let os = s.task.os.as_ref().map(|os| match &os.build {
                Some(b) => format!("{} {b}", os.family),
                None => os.family.to_string(),
            });
            let r = &s.task.resources;
            let gpu = r.gpu.as_ref().map(|g| match &g.model {
                Some(m) => format!("{}x{m}", g.count),
                None => g.count.to_string(),
            });
            (
                vec![
                    name,
                    s.type_.to_string(),
                    format!("{}/{}", st.ready_replicas, s.replicas),
                    st.updated_replicas.to_string(),
                    st.available_replicas.to_string(),
                    s.task.driver.to_string(),
                    join(&residency),
                    s.priority.to_string(),
                ],
                vec![
                    format!("{}/{}", st.placed_replicas, s.replicas),
                    or_none(st.update_revision.map(|r| r.to_string()).as_deref()),
                    or_none(os.as_deref()),
                    r.cpu.to_string(),
                    r.memory.to_string(),
                    or_none(gpu.as_deref()),
                    join(&s.compliance),
                ],
            )
        }
        AnyObject::Allocation(o) => {
            let s = &o.spec;
            let st = o.status.clone().unwrap_or_default();
            (
                vec![
                    name,
                    s.workload.clone(),
                    s.node.clone(),
                    s.desired_state.to_string(),
                    st.phase.to_string(),
                ],
                vec![
                    or_none(s.site.as_deref()),
                    st.restarts.to_string(),
                    or_none(s.revision.map(|r| r.to_string()).as_deref()),
                    s.resources.cpu.to_string(),
                    s.resources.memory.to_string(),
                ],
            )
        }
        AnyObject::Policy(o) => {
            let s = &o.spec;
            let projects = s
                .match_
                .as_ref()
                .map(|m| m.projects.clone())
                .unwrap_or_default();
            let controls: Vec<String> = s
                .controls
                .iter()
                .map(|c| format!("{}:{}", c.framework, c.id))
                .collect();
            (
                vec![name, s.enforcement.to_string(), join(&s.targets)],
                vec![
                    if projects.is_empty() {
                        "*".to_string()
                    } else {
                        projects.join(",")
                    },
                    join(&controls),
                ],
            )
        }
        AnyObject::Project(o) => {
            let s = &o.spec;
            let quota = s.quota.as_ref().map(|q| {
                let mut parts = Vec::new();
                if let Some(c) = q.cpu {
                    parts.push(format!("cpu={c}"));
                }
                if let Some(m) = q.memory {
                    parts.push(format!("memory={m}"));
                }
                if let Some(g) = q.gpus {
                    parts.push(format!("gpus={g}"));
                }
                for (model, g) in &q.gpus_by_model {
                    parts.push(format!("gpus.{model}={g}"));
                }
                if let Some(n) = q.instances {
                    parts.push(format!("instances={n}"));
                }
                parts.join(",")
            });
            (
                vec![name, join(&s.owners), join(&s.allowed_locations)],
                vec![or_none(quota.as_deref()), or_none(s.description.as_deref())],
            )
        }
        AnyObject::Secret(o) => {
            let keys = crate::validate::secret_keys(&o.spec);
            (
                vec![
                    name,
                    o.spec.type_.clone().unwrap_or_else(|| "Opaque".into()),
                    keys.len().to_string(),
                ],
                vec![or_none(
                    Some(keys.join(",").as_str()).filter(|k| !k.is_empty()),
                )],
            )
        }
        AnyObject::VirtualMachine(o) => {
            let v = &o.spec;
            let status = o.status.clone().unwrap_or_default();
            let gib = |mib: u64| format!("{}Gi", mib.div_ceil(1024));
            (
                vec![
                    name,
                    or_none(Some(&v.name)),
                    v.cpus.to_string(),
                    gib(v.memory_mib),
                    gib(v.disk_mib()),
                    or_none(v.os.tools.as_deref().or(v.os.configured.as_deref())),
                    or_none(v.power_state.as_deref()),
                ],
                vec![
                    or_none(v.source.datacenter.as_deref()),
                    or_none(v.source.cluster.as_deref()),
                    or_none(v.source.folder.as_deref()),
                    or_none(status.phase.as_deref()),
                    or_none(status.workload.as_deref()),
                ],
            )
        }
        AnyObject::MigrationPlan(o) => {
            let waves = o.status.as_ref().map_or(0, |s| s.waves.len());
            (
                vec![
                    name,
                    join(&o.spec.targets),
                    o.spec.mapping.len().to_string(),
                    waves.to_string(),
                ],
                vec![
                    o.spec
                        .bandwidth_mbps
                        .map_or_else(|| NONE.to_string(), |b| format!("{b}Mbps")),
                ],
            )
        }
        AnyObject::Queue(o) => {
            let status = o.status.clone().unwrap_or_default();
            (
                vec![
                    name,
                    or_none(o.spec.cohort.as_deref()),
                    o.spec.strategy.to_string(),
                    status.pending.to_string(),
                    status.admitted.to_string(),
                    crate::queue::queue_usage_summary(&o.spec, &status),
                ],
                vec![
                    o.spec.weight().to_string(),
                    status
                        .weighted_share
                        .map_or_else(|| "0".to_string(), |s| s.to_string()),
                    if o.spec.projects.is_empty() {
                        "*".to_string()
                    } else {
                        join(&o.spec.projects)
                    },
                ],
            )
        }
        AnyObject::Cohort(o) => (
            vec![
                name,
                or_none(o.spec.parent.as_deref()),
                o.status.as_ref().map_or(0, |s| s.queues).to_string(),
                crate::queue::quota_summary(&o.spec.quota),
                o.status
                    .as_ref()
                    .and_then(|s| s.usage.as_ref())
                    .map_or_else(|| NONE.to_string(), crate::queue::totals_summary),
                o.spec.weight().to_string(),
            ],
            vec![
                o.status
                    .as_ref()
                    .and_then(|s| s.weighted_share)
                    .unwrap_or(0)
                    .to_string(),
                if o.spec.flavors.is_empty() {
                    NONE.to_string()
                } else {
                    o.spec
                        .flavors
                        .iter()
                        .map(|f| format!("{}: {}", f.name, crate::queue::quota_summary(&f.quota)))
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            ],
        ),
        AnyObject::Event(e) => (
            vec![
                or_none(e.last_seen()),
                e.type_.to_string(),
                or_none(Some(&e.reason)),
                object_ref(&e.involved_object),
                e.message.clone(),
            ],
            vec![
                or_none(Some(&e.from())),
                e.count.max(1).to_string(),
                or_none(e.first_seen()),
                name,
            ],
        ),
    };
    let mut out = base;
    if wide {
        out.extend(extra);
    }
    out
}

/// kubectl's short age of something `seconds` old: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_manifests;

    #[test]
    fn rows_match_columns_for_every_example() {
        for (file, text) in crate::examples::FILES {
            for m in parse_manifests(file, text).unwrap() {
                for wide in [false, true] {
                    let cols = columns(m.object.kind_info(), wide);
                    let row = row(&m.object, wide);
                    assert_eq!(cols.len(), row.len(), "{file} {}", m.object.name());
                    assert!(row.iter().all(|c| !c.is_empty()), "{row:?}");
                }
            }
        }
    }

    #[test]
    fn workload_row() {
        let text = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata: {name: w, namespace: p}\nspec:\n  type: job\n  replicas: 3\n  priority: 10\n  task: {driver: exec, command: [x], resources: {cpu: 1, memory: 1Gi}}\n  data: {residency: [EU, CH]}\n";
        let m = parse_manifests("w.yaml", text).unwrap();
        assert_eq!(
            row(&m[0].object, false),
            ["w", "job", "0/3", "0", "0", "exec", "EU,CH", "10"]
        );
        assert_eq!(columns(m[0].object.kind_info(), false)[2], "READY");
    }

    #[test]
    fn event_row() {
        let e = crate::event::Event::new(
            "w.1",
            crate::event::ObjectReference::new(WORKLOAD, Some("p"), "w", None),
            crate::event::EventType::Warning,
            "FailedScheduling",
            "0/3 nodes fit",
            crate::event::EventSource {
                component: "scheduler".into(),
                host: String::new(),
            },
            "2026-12-06T05:00:00Z",
        );
        let any = AnyObject::Event(e);
        assert!(!has_name_and_age(any.kind_info()));
        assert_eq!(
            row(&any, false),
            [
                "2026-12-06T05:00:00Z",
                "Warning",
                "FailedScheduling",
                "workload/w",
                "0/3 nodes fit"
            ]
        );
        let cols = columns(any.kind_info(), true);
        assert_eq!(cols.len(), row(&any, true).len());
        assert_eq!(cols[6], "COUNT");
    }
}
