//! Explanations: why an instance went where it went, or why it could not be placed, in
//! the form people act on.
//!
//! - **Rejections**: nodes counted per reason, each node under the *first* filter it
//!   fails (see [`crate::filter`] for the order), so `passed` plus the counts is exactly
//!   `nodes`: `412 nodes: jurisdiction US not in [EU]`.
//! - **Candidates**: the best nodes with their score breakdown.
//! - **Suggestions**: the smallest changes that would make it fit, found by checking
//!   which nodes fail exactly one rule: `would fit if residency allowed CH`,
//!   `needs 2 more free H100 GPUs on one node in [EU] (closest: fra-gpu-01)`.
//!
//! The types that cross the wire ([`Explanation`](api::Explanation), its rejections,
//! candidates and suggestions) live in `api::explanation`; this module builds them.

use std::collections::{BTreeMap, BTreeSet};

use api::explanation::{ReasonCode, Rejection, Suggestion};
use api::kinds::{Isolation, TaintEffect};
use api::{Cpu, Memory};

use crate::filter::Reason;
use crate::fleet::{Fleet, NodeId};
use crate::windows::{self, WindowsHost};
use crate::workload::Compiled;

/// Aggregates of the nodes rejected for one reason.
#[derive(Debug, Clone, Default)]
pub(crate) struct Agg {
    pub count: u32,
    /// Largest free amount of the resource (capacity reasons).
    pub max_free: u64,
    /// Attribute values seen (expressions).
    pub values: BTreeSet<String>,
}

/// A change that would lift one rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    Lift(Reason),
    Capacity,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeAgg {
    pub nodes: u32,
    pub first_node: Option<NodeId>,
    /// The node closest to fitting and what it lacks (capacity).
    pub closest: Option<((u32, u128, NodeId), [u64; 4])>,
}

/// Counts per reason, built node by node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub nodes: u32,
    pub passed: u32,
    pub groups: BTreeMap<Reason, Agg>,
    pub singles: BTreeMap<Change, ChangeAgg>,
}

impl Tally {
    pub(crate) fn reject(&mut self, reason: &Reason, count: u32) -> &mut Agg {
        self.nodes += count;
        if !self.groups.contains_key(reason) {
            self.groups.insert(reason.clone(), Agg::default());
        }
        let agg = self.groups.get_mut(reason).expect("inserted above");
        agg.count += count;
        agg
    }

    pub(crate) fn pass(&mut self, count: u32) {
        self.nodes += count;
        self.passed += count;
    }

    /// Records that `node` fails only `change`.
    pub(crate) fn single(
        &mut self,
        change: Change,
        node: NodeId,
        capacity: Option<(u128, [u64; 4])>,
    ) {
        let agg = self.singles.entry(change).or_default();
        agg.nodes += 1;
        agg.first_node.get_or_insert(node);
        if let Some((share, short)) = capacity {
            let dims = short.iter().filter(|x| **x > 0).count() as u32;
            let key = (dims, share, node);
            if agg.closest.as_ref().is_none_or(|(k, _)| key < *k) {
                agg.closest = Some((key, short));
            }
        }
    }

    /// Rejections, largest count first (then filter order).
    pub(crate) fn rejections(&self, fleet: &Fleet, wl: &Compiled) -> Vec<Rejection> {
        let mut out: Vec<(&Reason, Rejection)> = self
            .groups
            .iter()
            .map(|(r, agg)| {
                (
                    r,
                    Rejection {
                        reason: code(r, wl),
                        nodes: agg.count,
                        message: message(r, agg, fleet, wl),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| b.1.nodes.cmp(&a.1.nodes).then_with(|| a.0.cmp(b.0)));
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Suggestions, the ones opening most nodes first, at most five.
    pub(crate) fn suggestions(&self, fleet: &Fleet, wl: &Compiled) -> Vec<Suggestion> {
        let mut out: Vec<(u32, &Change, Suggestion)> = Vec::new();
        for (change, agg) in &self.singles {
            if let Some(s) = suggestion(change, agg, fleet, wl) {
                out.push((agg.nodes, change, s));
            }
        }
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut seen = BTreeSet::new();
        out.into_iter()
            .map(|(_, _, s)| s)
            .filter(|s| seen.insert(s.message.clone()))
            .take(5)
            .collect()
    }
}

pub(crate) fn code(r: &Reason, wl: &Compiled) -> ReasonCode {
    match r {
        Reason::Excluded => ReasonCode::Excluded,
        Reason::NotReady(_) => ReasonCode::NotReady,
        Reason::Unschedulable => ReasonCode::Unschedulable,
        Reason::UnknownSite(_) => ReasonCode::UnknownSite,
        Reason::Residency { .. } => ReasonCode::Residency,
        Reason::ProjectFence { .. } => ReasonCode::ProjectLocations,
        Reason::Sovereignty { .. } => ReasonCode::Sovereignty,
        Reason::Certifications { .. } => ReasonCode::Certifications,
        Reason::Os { .. } => ReasonCode::Os,
        Reason::Arch { .. } => ReasonCode::Arch,
        Reason::Driver(_) => ReasonCode::Driver,
        Reason::Volume { .. } => ReasonCode::Volume,
        Reason::WindowsBuild { .. } => ReasonCode::WindowsBuild,
        Reason::Taint { .. } => ReasonCode::Taint,
        Reason::GpuModel => ReasonCode::GpuModel,
        Reason::GpuSharing(_) => ReasonCode::GpuSharing,
        Reason::Expression(i) => {
            if wl.exprs[*i].attr.is_security() {
                ReasonCode::Security
            } else {
                ReasonCode::Placement
            }
        }
        Reason::Cpu => ReasonCode::Cpu,
        Reason::Memory => ReasonCode::Memory,
        Reason::Ephemeral => ReasonCode::EphemeralStorage,
        Reason::Gpu => ReasonCode::Gpu,
        Reason::Port { .. } | Reason::DynamicPorts => ReasonCode::Port,
        Reason::AntiAffinity => ReasonCode::AntiAffinity,
        Reason::SpreadKeyMissing | Reason::Spread { .. } => ReasonCode::Spread,
    }
}

fn taint_text(key: &str, value: Option<&str>, effect: TaintEffect) -> String {
    match value {
        Some(v) => format!("{key}={v}:{effect}"),
        None => format!("{key}:{effect}"),
    }
}

/// Milli-GPUs as people write them: `2`, `0.25`.
fn gpus(milli: u64) -> String {
    api::GpuCount::from_milli(u32::try_from(milli).unwrap_or(u32::MAX)).to_string()
}

fn gpu_text(wl: &Compiled) -> String {
    match &wl.gpu {
        Some(g) => match &g.model {
            Some(m) => format!("{m} GPUs"),
            None => "GPUs".to_string(),
        },
        None => "GPUs".to_string(),
    }
}

fn mem(bytes: u64) -> String {
    Memory(bytes).to_string()
}

/// The message of a rejection group (without the count).
pub(crate) fn message(r: &Reason, agg: &Agg, fleet: &Fleet, wl: &Compiled) -> String {
    match r {
        Reason::Excluded => "excluded (lost or draining)".to_string(),
        Reason::NotReady(Some(p)) => format!("node is {p}"),
        Reason::NotReady(None) => "no agent has reported from the node".to_string(),
        Reason::Unschedulable => "cordoned (unschedulable)".to_string(),
        Reason::UnknownSite(s) => format!("site {s} is not known"),
        Reason::Residency { jurisdiction } => format!(
            "jurisdiction {jurisdiction} not in {}",
            wl.residency.as_ref().map(|f| f.list()).unwrap_or_default()
        ),
        Reason::ProjectFence { jurisdiction } => {
            let (name, fence) = wl.project.as_ref().expect("a fence failed");
            format!(
                "jurisdiction {jurisdiction} not in project {name}'s allowed locations {}",
                fence.list()
            )
        }
        Reason::Sovereignty { site } => {
            let info = fleet
                .site_by_name
                .get(site)
                .map(|&s| &fleet.sites[s as usize]);
            match info.and_then(|i| i.operator_jurisdiction.as_ref().map(|j| (i, j))) {
                Some((i, j)) => format!(
                    "site {site} is operated by {} ({j}), not in {} (sovereignty: strict)",
                    i.operator_name.as_deref().unwrap_or("?"),
                    wl.residency_text()
                ),
                None => format!("site {site} declares no operator (sovereignty: strict)"),
            }
        }
        Reason::Certifications { missing } => {
            if missing.len() == 1 {
                format!("site lacks certification {}", missing[0])
            } else {
                format!("site lacks certifications {}", missing.join(", "))
            }
        }
        Reason::Os { have, want } => format!("os {have}, task needs {want}"),
        Reason::Arch { have, want } => format!("arch {have}, task needs {want}"),
        Reason::Driver(d) => format!("driver {d} not offered"),
        Reason::Volume {
            name,
            read_only: false,
        } => format!("node lacks volume {name}"),
        Reason::Volume {
            name,
            read_only: true,
        } => format!("volume {name} is read-only on the node (mount it with readOnly: true)"),
        Reason::WindowsBuild {
            host,
            image,
            isolation,
        } => match (host, isolation) {
            (None, _) => format!("Windows node reports no build (image {image})"),
            (Some(h), Isolation::Process) => {
                format!("Windows build {h} cannot process-isolate image {image}")
            }
            (Some(h), Isolation::Hyperv) => format!(
                "Windows build {h} is older than image {image} (Hyper-V isolation needs the host at least as new)"
            ),
        },
        Reason::Taint { key, value, effect } => {
            format!(
                "untolerated taint {}",
                taint_text(key, value.as_deref(), *effect)
            )
        }
        Reason::GpuModel => {
            let g = wl.gpu.as_ref().expect("a GPU filter failed");
            match (&g.model, g.memory) {
                (Some(m), Some(b)) => format!("no {m} GPUs with {} memory", mem(b)),
                (Some(m), None) => format!("no {m} GPUs"),
                (None, Some(b)) => format!("no GPUs with {} memory", mem(b)),
                (None, None) => "no GPUs".to_string(),
            }
        }
        Reason::GpuSharing(model) => {
            let share = wl.gpu.as_ref().map_or(0, |g| g.milli);
            format!(
                "node GPUs of model {model} are not shareable (the request is {} of one GPU; ask for whole GPUs, or for a model whose nodes share)",
                gpus(u64::from(share))
            )
        }
        Reason::Expression(i) => {
            let e = &wl.exprs[*i].expr;
            let mut values: Vec<&str> = agg.values.iter().map(String::as_str).take(3).collect();
            if agg.values.len() > 3 {
                values.push("…");
            }
            match &wl.exprs[*i].flavor {
                Some(f) => format!(
                    "not in {f}, where the job was admitted ({e} not met: {} is {})",
                    e.key,
                    values.join(", ")
                ),
                None => format!("{e} not met ({} is {})", e.key, values.join(", ")),
            }
        }
        Reason::Cpu => format!(
            "insufficient cpu (need {}, largest free {})",
            Cpu(wl.res[0]),
            Cpu(agg.max_free)
        ),
        Reason::Memory => format!(
            "insufficient memory (need {}, largest free {})",
            mem(wl.res[1]),
            mem(agg.max_free)
        ),
        Reason::Ephemeral => format!(
            "insufficient ephemeral storage (need {}, largest free {})",
            mem(wl.res[2]),
            mem(agg.max_free)
        ),
        Reason::Gpu => {
            let need = wl.gpu.as_ref().map_or(0, |g| g.milli);
            if need < crate::fleet::MILLI {
                format!(
                    "insufficient {} (need {} of one GPU, largest free on one device {})",
                    gpu_text(wl),
                    gpus(u64::from(need)),
                    gpus(agg.max_free)
                )
            } else {
                format!(
                    "insufficient {} (need {}, largest free {})",
                    gpu_text(wl),
                    gpus(u64::from(need)),
                    gpus(agg.max_free)
                )
            }
        }
        Reason::Port { port, protocol } => {
            format!("host port {port}/{protocol} is taken")
        }
        Reason::DynamicPorts => format!(
            "no free host port in {}-{}",
            api::task::DYNAMIC_PORT_MIN,
            api::task::DYNAMIC_PORT_MAX
        ),
        Reason::AntiAffinity => "already runs a replica (antiAffinity)".to_string(),
        Reason::SpreadKeyMissing => format!(
            "has no {} (spread needs it)",
            wl.spread.as_ref().map_or("", |s| s.key.as_str())
        ),
        Reason::Spread { domain, count, min } => {
            let s = wl.spread.as_ref().expect("a spread filter failed");
            format!(
                "spread: {}={domain} has {count} replicas, the least-loaded {min} (maxSkew {})",
                s.key, s.max_skew
            )
        }
    }
}

fn suggestion(
    change: &Change,
    agg: &ChangeAgg,
    fleet: &Fleet,
    wl: &Compiled,
) -> Option<Suggestion> {
    let node_name = |n: Option<NodeId>| {
        n.map(|n| fleet.nodes[n as usize].name.clone())
            .unwrap_or_default()
    };
    let (relaxes, message) = match change {
        Change::Capacity => {
            let ((_, _, node), short) = agg.closest.as_ref()?;
            let mut parts = Vec::new();
            if short[0] > 0 {
                parts.push(format!("{} more free cpu", Cpu(short[0])));
            }
            if short[1] > 0 {
                parts.push(format!("{} more free memory", mem(short[1])));
            }
            if short[2] > 0 {
                parts.push(format!("{} more free ephemeral storage", mem(short[2])));
            }
            if short[3] > 0 {
                let noun = gpu_text(wl);
                let noun = if short[3] <= u64::from(crate::fleet::MILLI) {
                    noun.trim_end_matches('s').to_string()
                } else {
                    noun
                };
                parts.push(format!("{} more free {noun}", gpus(short[3])));
            }
            let code = if short[3] > 0 {
                ReasonCode::Gpu
            } else if short[0] > 0 {
                ReasonCode::Cpu
            } else if short[1] > 0 {
                ReasonCode::Memory
            } else {
                ReasonCode::EphemeralStorage
            };
            let place = if wl.residency.is_some() || wl.project.is_some() {
                format!(" in {}", wl.residency_text())
            } else {
                String::new()
            };
            (
                code,
                format!(
                    "needs {} on one node{place} (closest: {})",
                    parts.join(" and "),
                    fleet.nodes[*node as usize].name
                ),
            )
        }
        Change::Lift(r) => {
            let message = match r {
                Reason::Residency { jurisdiction } => {
                    format!("would fit if residency allowed {jurisdiction}")
                }
                Reason::ProjectFence { jurisdiction } => format!(
                    "would fit if project {} allowed {jurisdiction}",
                    wl.project.as_ref().map_or("", |(n, _)| n.as_str())
                ),
                Reason::Sovereignty { site } => {
                    format!("would fit with sovereignty: standard (site {site})")
                }
                Reason::Certifications { missing } => format!(
                    "would fit without compliance requirement {}",
                    missing.join(", ")
                ),
                Reason::Arch { have, .. } => format!("would fit if the task were built for {have}"),
                Reason::WindowsBuild {
                    host: Some(h),
                    image,
                    isolation: Isolation::Process,
                } if windows::compatible(
                    WindowsHost {
                        build: *h,
                        edition: windows::Edition::Server,
                    },
                    *image,
                    Isolation::Hyperv,
                ) =>
                {
                    "would fit with isolation: hyperv".to_string()
                }
                Reason::WindowsBuild { host: Some(h), .. } => {
                    format!("would fit with an image built for Windows {h}")
                }
                Reason::Volume {
                    name,
                    read_only: false,
                } => format!(
                    "would fit if node {} offered volume {name} (meridian agent --volume {name}=PATH)",
                    node_name(agg.first_node)
                ),
                Reason::Volume {
                    name,
                    read_only: true,
                } => format!("would fit with volume {name} mounted readOnly: true"),
                Reason::Port { port, protocol } => format!(
                    "would fit on node {} if host port {port}/{protocol} were free (or with port: 0, a dynamic port)",
                    node_name(agg.first_node)
                ),
                Reason::Taint { key, value, effect } => format!(
                    "would fit if toleration for {} were added",
                    taint_text(key, value.as_deref(), *effect)
                ),
                Reason::Expression(i) => match &wl.exprs[*i].flavor {
                    Some(f) => format!(
                        "would fit outside {f} (another flavor with room, or more quota elsewhere)"
                    ),
                    None => format!(
                        "would fit without placement expression {}",
                        wl.exprs[*i].expr
                    ),
                },
                Reason::Unschedulable if agg.nodes == 1 => {
                    format!(
                        "would fit if node {} were uncordoned",
                        node_name(agg.first_node)
                    )
                }
                Reason::Unschedulable => {
                    format!(
                        "would fit if one of {} cordoned nodes were uncordoned",
                        agg.nodes
                    )
                }
                Reason::NotReady(None) if agg.nodes == 1 => {
                    format!(
                        "would fit once an agent runs on node {}",
                        node_name(agg.first_node)
                    )
                }
                Reason::NotReady(None) => format!(
                    "would fit once agents run on one of {} nodes without one",
                    agg.nodes
                ),
                Reason::NotReady(_) if agg.nodes == 1 => {
                    format!(
                        "would fit when node {} is Ready again",
                        node_name(agg.first_node)
                    )
                }
                Reason::NotReady(_) => format!(
                    "would fit when one of {} not-ready nodes is Ready again",
                    agg.nodes
                ),
                Reason::AntiAffinity => "would fit without antiAffinity".to_string(),
                Reason::Spread { count, min, .. } => {
                    let s = wl.spread.as_ref()?;
                    format!(
                        "would fit with spread maxSkew {} over {}",
                        count + 1 - min,
                        s.key
                    )
                }
                _ => return None,
            };
            (code(r, wl), message)
        }
    };
    Some(Suggestion {
        relaxes,
        message,
        nodes: agg.nodes,
    })
}
