//! Wave plans: ready VMs grouped by dependency hints, packed into waves within the plan's
//! limits, each with its transfer time from disk sizes and bandwidth and its downtime for
//! a cold migration, matched to maintenance windows; and the reports (CSV and a
//! self-contained HTML page).
//!
//! Dependency hints, joined transitively (union-find): the same vApp, the same inventory
//! folder, the same `app=` token in the annotation or `app` tag, a small network (at most
//! [`SMALL_NETWORK`] VMs: a private segment, not a shared VLAN). A group is never split
//! across waves unless it alone exceeds a wave's limits (then it is split and says so).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use api::migrate::{MigrationPlanSpec, VirtualMachine};
use serde::Serialize;

use crate::assess::{Category, Readiness, VmAssessment};

/// A network with at most this many VMs is a dependency hint.
pub const SMALL_NETWORK: usize = 8;
/// Cut-over overhead per VM beyond the copy (shut down, convert, boot, check), seconds.
pub const CUTOVER_SECS: u64 = 15 * 60;
/// Default transfer bandwidth, megabits per second.
pub const DEFAULT_MBPS: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveVm {
    pub vm: String,
    pub name: String,
    pub group: String,
    pub site: String,
    pub readiness: Readiness,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    /// Cold migration: the VM is off while its disks copy, plus the cut-over.
    pub downtime_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub number: u32,
    pub vms: Vec<WaveVm>,
    pub disk_mib: u64,
    pub cpus: u32,
    /// All of the wave's disks over the plan's bandwidth, one after the other.
    pub transfer_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WavePlan {
    pub bandwidth_mbps: u32,
    pub waves: Vec<Wave>,
    /// VMs left out (Not ready, Unknown) and why.
    pub excluded: Vec<(String, String)>,
}

struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn find(&mut self, i: usize) -> usize {
        let mut root = i;
        while self.parent[root] != root {
            root = self.parent[root];
        }
        let mut i = i;
        while self.parent[i] != root {
            let next = self.parent[i];
            self.parent[i] = root;
            i = next;
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[a.max(b)] = a.min(b);
        }
    }
}

/// The `app=NAME` token of an annotation (`app=payroll; owner=x`).
fn app_token(vm: &VirtualMachine) -> Option<String> {
    if let Some(app) = vm
        .spec
        .tags
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("app"))
    {
        return Some(app.1.to_ascii_lowercase());
    }
    let a = vm.spec.annotation.as_deref()?;
    a.split([';', ',', ' ', '\n'])
        .find_map(|t| t.trim().strip_prefix("app="))
        .map(str::to_ascii_lowercase)
}

/// Dependency groups: a group id (its first VM's name) per VM.
pub fn groups(vms: &[VirtualMachine]) -> Vec<String> {
    let mut g = Groups {
        parent: (0..vms.len()).collect(),
    };
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, vm) in vms.iter().enumerate() {
        let s = &vm.spec.source;
        if let Some(v) = &s.vapp {
            by_key.entry(format!("vapp:{v}")).or_default().push(i);
        }
        if let Some(f) = &s.folder {
            by_key.entry(format!("folder:{f}")).or_default().push(i);
        }
        if let Some(a) = app_token(vm) {
            by_key.entry(format!("app:{a}")).or_default().push(i);
        }
        for n in vm.spec.nics.iter().filter_map(|n| n.network.as_ref()) {
            by_key.entry(format!("net:{n}")).or_default().push(i);
        }
    }
    for (key, members) in &by_key {
        if key.starts_with("net:") && members.len() > SMALL_NETWORK {
            continue;
        }
        for w in members.windows(2) {
            g.union(w[0], w[1]);
        }
    }
    (0..vms.len())
        .map(|i| {
            let root = g.find(i);
            vms[root].spec.name.clone()
        })
        .collect()
}

/// Seconds to copy `mib` MiB at `mbps` megabits per second.
pub fn transfer_secs(mib: u64, mbps: u32) -> u64 {
    ((mib as f64 * 8.388_608) / f64::from(mbps.max(1))).ceil() as u64
}

/// Plans waves for assessed VMs (same order as `vms`).
pub fn plan(
    vms: &[VirtualMachine],
    assessed: &[VmAssessment],
    spec: &MigrationPlanSpec,
) -> WavePlan {
    let mbps = spec.bandwidth_mbps.unwrap_or(DEFAULT_MBPS);
    let limits = spec.waves.clone().unwrap_or_default();
    let group_of = groups(vms);
    let mut excluded = Vec::new();
    let mut grouped: BTreeMap<String, Vec<WaveVm>> = BTreeMap::new();
    for (i, a) in assessed.iter().enumerate() {
        let Some(first) = a.best() else {
            excluded.push((a.name.clone(), "no target site".to_string()));
            continue;
        };
        if matches!(first.readiness, Readiness::NotReady | Readiness::Unknown) {
            excluded.push((
                a.name.clone(),
                format!("{}: {}", first.readiness.as_str(), first.reasons.join("; ")),
            ));
            continue;
        }
        // Only where the what-if placed it: the assessment's answers are chained (each
        // target's free capacity is counted once over all VMs), so the VMs a site takes
        // across every wave fit it together; a VM no target had room for waits.
        let Some(best) = a.best_placed() else {
            excluded.push((
                a.name.clone(),
                format!(
                    "no free capacity for it at its target sites now (add capacity or free some, then plan again): {}",
                    first.reasons.join("; ")
                ),
            ));
            continue;
        };
        grouped
            .entry(group_of[i].clone())
            .or_default()
            .push(WaveVm {
                vm: a.vm.clone(),
                name: a.name.clone(),
                group: group_of[i].clone(),
                site: best.site.clone(),
                readiness: best.readiness,
                cpus: a.size.cpus,
                memory_mib: a.size.memory_mib,
                disk_mib: a.disk_mib,
                downtime_secs: transfer_secs(a.disk_mib, mbps) + CUTOVER_SECS,
                monthly_cost: best.monthly_cost,
            });
    }
    // Ready groups first, then by size (small first: a pilot wave), then by name.
    let mut order: Vec<(String, Vec<WaveVm>)> = grouped.into_iter().collect();
    order.sort_by_key(|(name, members)| {
        (
            members.iter().map(|m| m.readiness).max(),
            members.iter().map(|m| m.disk_mib).sum::<u64>(),
            name.clone(),
        )
    });
    let fits = |w: &Wave, vms: usize, disk: u64, cpus: u32| {
        limits
            .max_vms
            .is_none_or(|m| w.vms.len() + vms <= m as usize)
            && limits
                .max_disk_gib
                .is_none_or(|m| (w.disk_mib + disk).div_ceil(1024) <= m)
            && limits.max_cpus.is_none_or(|m| w.cpus + cpus <= m)
    };
    let mut waves: Vec<Wave> = Vec::new();
    let new_wave = |n: usize| Wave {
        number: n as u32 + 1,
        vms: Vec::new(),
        disk_mib: 0,
        cpus: 0,
        transfer_secs: 0,
        window: None,
        notes: Vec::new(),
    };
    for (group, members) in order {
        let disk: u64 = members.iter().map(|m| m.disk_mib).sum();
        let cpus: u32 = members.iter().map(|m| m.cpus).sum();
        let slot = waves
            .iter()
            .position(|w| fits(w, members.len(), disk, cpus));
        let index = match slot {
            Some(i) => i,
            None => {
                waves.push(new_wave(waves.len()));
                waves.len() - 1
            }
        };
        if fits(&waves[index], members.len(), disk, cpus) {
            let w = &mut waves[index];
            w.disk_mib += disk;
            w.cpus += cpus;
            w.vms.extend(members);
            continue;
        }
        // The group alone is larger than a wave: split it, in order.
        let mut current = index;
        let parts = members.len();
        for m in members {
            if !fits(&waves[current], 1, m.disk_mib, m.cpus) && !waves[current].vms.is_empty() {
                waves.push(new_wave(waves.len()));
                current = waves.len() - 1;
                waves[current].notes.push(format!(
                    "dependency group {group} ({parts} VMs) exceeds one wave's limits and is split"
                ));
            }
            let w = &mut waves[current];
            w.disk_mib += m.disk_mib;
            w.cpus += m.cpus;
            w.vms.push(m);
        }
    }
    for (i, w) in waves.iter_mut().enumerate() {
        w.transfer_secs = transfer_secs(w.disk_mib, mbps);
        if let Some(window) = spec.maintenance_windows.get(i) {
            w.window = Some(format!("{} for {}", window.start, window.duration));
            if let Ok(d) = api::duration::parse(&window.duration) {
                let need = w.transfer_secs + CUTOVER_SECS;
                if need > d.as_secs() {
                    w.notes.push(format!(
                        "needs {} but the window lasts {}: raise the bandwidth or lower waves.maxDiskGiB",
                        hours(need),
                        hours(d.as_secs())
                    ));
                }
            }
        } else if !spec.maintenance_windows.is_empty() {
            w.notes
                .push("no maintenance window left for this wave: add one".into());
        }
    }
    WavePlan {
        bandwidth_mbps: mbps,
        waves,
        excluded,
    }
}

/// `2h05m`.
pub fn hours(secs: u64) -> String {
    format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
}

/// One CSV row per VM and wave.
pub fn csv(plan: &WavePlan) -> String {
    let mut out = String::from(
        "wave,vm,name,group,site,readiness,cpus,memoryMiB,diskMiB,downtime,monthlyCost\n",
    );
    for w in &plan.waves {
        for v in &w.vms {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                w.number,
                csv_field(&v.vm),
                csv_field(&v.name),
                csv_field(&v.group),
                csv_field(&v.site),
                v.readiness.as_str(),
                v.cpus,
                v.memory_mib,
                v.disk_mib,
                hours(v.downtime_secs),
                v.monthly_cost.map_or(String::new(), |c| format!("{c:.2}"))
            );
        }
    }
    out
}

/// RFC 4180 quoting when needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML report (inline CSS, no script, no external asset) for a manager:
/// readiness summary, concerns by category, monthly cost per site before and after
/// right-sizing, and the waves.
pub fn html(title: &str, assessed: &[VmAssessment], plan: &WavePlan) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#f3f3f3}}\
         .Ready{{color:#176f2c}}.Conditionally{{color:#9a6700}}.Not{{color:#b42318}}.Unknown{{color:#555}}\
         </style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    // Readiness.
    h.push_str("<h2>Readiness</h2><table><tr><th>Readiness</th><th>VMs</th></tr>");
    for (r, n) in crate::assess::summary(assessed) {
        let _ = write!(
            h,
            "<tr><td class=\"{}\">{}</td><td>{n}</td></tr>",
            r.as_str().split(' ').next().unwrap_or_default(),
            r.as_str()
        );
    }
    h.push_str("</table>");
    // Concerns by category.
    let mut concerns: BTreeMap<(Category, String), usize> = BTreeMap::new();
    for a in assessed {
        for c in &a.concerns {
            let key = c
                .message
                .split_once(": ")
                .map_or(c.message.as_str(), |(_, rest)| rest);
            *concerns.entry((c.category, key.to_string())).or_default() += 1;
        }
    }
    h.push_str("<h2>Concerns</h2><table><tr><th>Category</th><th>Concern</th><th>VMs</th></tr>");
    for ((cat, msg), n) in &concerns {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
            cat.as_str(),
            esc(msg)
        );
    }
    h.push_str("</table>");
    // Cost per site, as-is and right-sized, for the VMs whose best target it is.
    let mut cost: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
    for a in assessed {
        if let Some(t) = a.best() {
            let e = cost.entry(t.site.clone()).or_default();
            e.0 += 1;
            e.1 += t.monthly_cost_as_is.unwrap_or(0.0);
            e.2 += t.monthly_cost.unwrap_or(0.0);
        }
    }
    h.push_str("<h2>Monthly cost per target site</h2><table><tr><th>Site</th><th>VMs</th><th>As-is</th><th>Right-sized</th></tr>");
    for (site, (n, before, after)) in &cost {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{n}</td><td>{before:.2}</td><td>{after:.2}</td></tr>",
            esc(site)
        );
    }
    h.push_str("</table>");
    // Waves.
    let _ = write!(
        h,
        "<h2>Waves</h2><p>Bandwidth {} Mbit/s; cold migration: each VM is off while its disks copy, plus {} for the cut-over.</p>\
         <table><tr><th>Wave</th><th>VMs</th><th>Disk GiB</th><th>vCPUs</th><th>Transfer</th><th>Window</th><th>Notes</th></tr>",
        plan.bandwidth_mbps,
        hours(CUTOVER_SECS)
    );
    for w in &plan.waves {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.number,
            w.vms.len(),
            w.disk_mib.div_ceil(1024),
            w.cpus,
            hours(w.transfer_secs),
            esc(w.window.as_deref().unwrap_or("-")),
            esc(&w.notes.join("; "))
        );
    }
    h.push_str("</table>");
    for w in &plan.waves {
        let _ = write!(
            h,
            "<h3>Wave {}</h3><table><tr><th>VM</th><th>Group</th><th>Site</th><th>Readiness</th><th>vCPUs</th><th>Memory MiB</th><th>Disk GiB</th><th>Downtime</th></tr>",
            w.number
        );
        for v in &w.vms {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&v.name),
                esc(&v.group),
                esc(&v.site),
                v.readiness.as_str(),
                v.cpus,
                v.memory_mib,
                v.disk_mib.div_ceil(1024),
                hours(v.downtime_secs)
            );
        }
        h.push_str("</table>");
    }
    if !plan.excluded.is_empty() {
        h.push_str("<h2>Not in a wave</h2><table><tr><th>VM</th><th>Why</th></tr>");
        for (vm, why) in &plan.excluded {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(vm), esc(why));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::migrate::{VirtualMachineSpec, VmNic, VmSource};

    fn vm(name: &str, folder: &str, network: &str) -> VirtualMachine {
        crate::objects::to_object(
            &VirtualMachineSpec {
                uuid: format!("uuid-{name}"),
                name: name.into(),
                source: VmSource {
                    kind: "rvtools".into(),
                    folder: Some(folder.into()),
                    ..Default::default()
                },
                nics: vec![VmNic {
                    label: "n".into(),
                    network: Some(network.into()),
                    ..Default::default()
                }],
                cpus: 2,
                memory_mib: 1024,
                ..Default::default()
            },
            "p",
        )
    }

    #[test]
    fn groups_follow_folders_and_small_networks() {
        let vms = vec![
            vm("a", "/x", "lan-1"),
            vm("b", "/y", "lan-1"),
            vm("c", "/y", "lan-2"),
            vm("d", "/z", "lan-3"),
        ];
        let g = groups(&vms);
        assert_eq!(g, ["a", "a", "a", "d"]);
    }

    #[test]
    fn transfer_time() {
        // 100 GiB at 1 Gbit/s: 102400 × 8.388608 / 1000 ≈ 859 s.
        assert_eq!(transfer_secs(102_400, 1000), 859);
        assert_eq!(hours(3_900), "1h05m");
    }
}
