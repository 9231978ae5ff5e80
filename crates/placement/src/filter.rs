//! The hard filters, in their fixed order.
//!
//! A node is rejected for the first filter it fails, in this order (the order of
//! [`Reason`]'s variants), so that rejection counts add up to the number of nodes:
//!
//! 1. node state: excluded (lost or draining), not ready, cordoned;
//! 2. site: unknown site, residency, the project's allowed locations, strict sovereignty
//!    (the operator's jurisdiction), certifications;
//! 3. platform: OS family, architecture, driver, Windows build;
//! 4. taints (`NoSchedule` and `NoExecute`), GPU model and memory;
//! 5. `matchExpressions` (site and class attributes, then per-node ones such as
//!    `node.name`), in the order written; `node.security.*` keys are security facts;
//! 6. capacity: cpu, memory, ephemeral storage, GPU count;
//! 7. anti-affinity, topology spread.
//!
//! Groups 1 to 5 are *static*: they do not depend on what is allocated, so they are
//! evaluated once per class of identical nodes and cached per workload for the batch.

use api::kinds::{Arch, Driver, Isolation, NodePhase, OsFamily, TaintEffect};

use crate::fleet::{Class, Fleet, GpuGroup, MILLI, NodeId, SiteInfo, offers};
use crate::windows::{self, WindowsBuild};
use crate::workload::{Compiled, GpuReq, PortNeed, PortReq};

/// Why a node was rejected; the variant order is the filter order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reason {
    Excluded,
    /// Not `Ready`: `NotReady`, `Lost`, or (`None`) no agent has ever reported.
    NotReady(Option<NodePhase>),
    Unschedulable,
    UnknownSite(String),
    Residency {
        jurisdiction: String,
    },
    ProjectFence {
        jurisdiction: String,
    },
    Sovereignty {
        site: String,
    },
    Certifications {
        missing: Vec<String>,
    },
    Os {
        have: OsFamily,
        want: OsFamily,
    },
    Arch {
        have: Arch,
        want: Arch,
    },
    Driver(Driver),
    /// The node lacks the host volume, or (`read_only`) offers it read-only to a task
    /// that writes.
    Volume {
        name: String,
        read_only: bool,
    },
    WindowsBuild {
        host: Option<WindowsBuild>,
        image: WindowsBuild,
        isolation: Isolation,
    },
    Taint {
        key: String,
        value: Option<String>,
        effect: TaintEffect,
    },
    GpuModel,
    /// A share of a device was asked for and the node's GPUs of the model (`Some`, the
    /// first such model) that match are not shareable.
    GpuSharing(String),
    /// Index into the workload's `matchExpressions`.
    Expression(usize),
    Cpu,
    Memory,
    Ephemeral,
    Gpu,
    /// A static host port is taken on the node.
    Port {
        port: u16,
        protocol: api::task::Protocol,
    },
    /// The dynamic port range is exhausted on the node.
    DynamicPorts,
    AntiAffinity,
    SpreadKeyMissing,
    Spread {
        domain: String,
        count: u32,
        min: u32,
    },
}

impl Reason {
    pub(crate) fn is_capacity(&self) -> bool {
        matches!(
            self,
            Reason::Cpu | Reason::Memory | Reason::Ephemeral | Reason::Gpu
        )
    }
}

/// Whether a GPU group satisfies the request's model and memory, and for a share of a
/// device, whether its devices are shareable.
pub(crate) fn gpu_group_matches(g: &GpuGroup, req: &GpuReq) -> bool {
    gpu_model_matches(g, req) && (g.shareable || !req.is_share())
}

/// Whether a GPU group satisfies the request's model and memory.
fn gpu_model_matches(g: &GpuGroup, req: &GpuReq) -> bool {
    req.model.as_ref().is_none_or(|m| *m == g.model)
        && req
            .memory
            .is_none_or(|need| g.memory.is_some_and(|have| have >= need))
}

/// The class's GPU groups that satisfy the request's model and memory.
pub(crate) fn gpu_groups(class: &Class, req: &GpuReq) -> Vec<u8> {
    class
        .key
        .capacity
        .gpus
        .iter()
        .enumerate()
        .filter(|(_, g)| gpu_group_matches(g, req))
        .map(|(i, _)| i as u8)
        .collect()
}

/// The static filters that `class` fails for `wl`, in filter order: only the first
/// unless `all`. Per-node expressions (`node.name`) are not evaluated here.
pub(crate) fn class_failures(
    fleet: &Fleet,
    class: &Class,
    wl: &Compiled,
    all: bool,
    out: &mut Vec<Reason>,
) {
    class_failures_but_expressions(fleet, class, wl, all, out);
    if !all && !out.is_empty() {
        return;
    }
    for (i, e) in wl.exprs.iter().enumerate() {
        if !e.attr.is_node_level() && !e.matches(fleet, class, None) {
            out.push(Reason::Expression(i));
            if !all {
                return;
            }
        }
    }
}

/// [`class_failures`] up to the `matchExpressions` (which the scheduler looks up in
/// its per-session memo instead).
pub(crate) fn class_failures_but_expressions(
    fleet: &Fleet,
    class: &Class,
    wl: &Compiled,
    all: bool,
    out: &mut Vec<Reason>,
) {
    macro_rules! fail {
        ($r:expr) => {{
            out.push($r);
            if !all {
                return;
            }
        }};
    }
    let k = &class.key;
    match k.phase {
        Some(p @ (NodePhase::NotReady | NodePhase::Lost)) => fail!(Reason::NotReady(Some(p))),
        None => fail!(Reason::NotReady(None)),
        Some(NodePhase::Ready) => {}
    }
    if k.unschedulable {
        fail!(Reason::Unschedulable);
    }
    match fleet.site_of_class(class) {
        None => fail!(Reason::UnknownSite(
            fleet.site_name_of_class(class).to_string()
        )),
        Some(site) => {
            let before = out.len();
            site_failures(site, wl, all, out);
            if !all && out.len() > before {
                return;
            }
        }
    }
    platform_failures(class, wl, all, out);
}

/// The platform filters (OS, architecture, driver, Windows build, taints, GPU model)
/// that `class` fails for `wl`, in filter order: only the first unless `all`.
pub(crate) fn platform_failures(class: &Class, wl: &Compiled, all: bool, out: &mut Vec<Reason>) {
    macro_rules! fail {
        ($r:expr) => {{
            out.push($r);
            if !all {
                return;
            }
        }};
    }
    let k = &class.key;
    let os_ok = wl.os.is_none_or(|want| want == k.os);
    if let Some(want) = wl.os
        && !os_ok
    {
        fail!(Reason::Os { have: k.os, want });
    }
    if let Some(want) = wl.arch
        && want != k.arch
    {
        fail!(Reason::Arch { have: k.arch, want });
    }
    if !offers(k.drivers, wl.driver) {
        fail!(Reason::Driver(wl.driver));
    }
    for (name, writes) in &wl.volumes {
        match k.volumes.iter().find(|(n, _)| n == name) {
            None => fail!(Reason::Volume {
                name: name.clone(),
                read_only: false,
            }),
            Some((_, true)) if *writes => fail!(Reason::Volume {
                name: name.clone(),
                read_only: true,
            }),
            Some(_) => {}
        }
    }
    if let Some((image, isolation)) = wl.windows
        && os_ok
    {
        let ok = k
            .windows
            .is_some_and(|h| windows::compatible(h, image, isolation));
        if !ok {
            fail!(Reason::WindowsBuild {
                host: k.windows.map(|h| h.build),
                image,
                isolation,
            });
        }
    }
    for t in &class.taints {
        if matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
            && !wl.tolerations.iter().any(|tol| tol.tolerates(t))
        {
            fail!(Reason::Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect,
            });
        }
    }
    if let Some(g) = &wl.gpu
        && !class
            .key
            .capacity
            .gpus
            .iter()
            .any(|x| gpu_group_matches(x, g))
    {
        // The model is there but may not be shared: say so, it is not a missing model.
        match class
            .key
            .capacity
            .gpus
            .iter()
            .find(|x| gpu_model_matches(x, g))
        {
            Some(x) => fail!(Reason::GpuSharing(x.model.clone())),
            None => fail!(Reason::GpuModel),
        }
    }
}

/// Why no node of a class takes new work whatever the workload: not ready, lost,
/// cordoned (from [`crate::fleet::ClassHot::state`]).
pub(crate) fn state_failure(state: u8) -> Option<Reason> {
    match state {
        1 => Some(Reason::NotReady(Some(NodePhase::NotReady))),
        2 => Some(Reason::NotReady(Some(NodePhase::Lost))),
        4 => Some(Reason::NotReady(None)),
        3 => Some(Reason::Unschedulable),
        _ => None,
    }
}

/// The site filters (residency, the project's fence, strict sovereignty,
/// certifications) that `site` fails for `wl`, in filter order: only the first unless
/// `all`. The same for every class of the site.
pub(crate) fn site_failures(site: &SiteInfo, wl: &Compiled, all: bool, out: &mut Vec<Reason>) {
    macro_rules! fail {
        ($r:expr) => {{
            out.push($r);
            if !all {
                return;
            }
        }};
    }
    if let Some(r) = &wl.residency
        && !r.set.contains(site.jurisdiction_idx)
    {
        fail!(Reason::Residency {
            jurisdiction: site.jurisdiction.clone()
        });
    }
    if let Some((_, f)) = &wl.project
        && !f.set.contains(site.jurisdiction_idx)
    {
        fail!(Reason::ProjectFence {
            jurisdiction: site.jurisdiction.clone()
        });
    }
    if wl.strict
        && (wl.residency.is_some() || wl.project.is_some())
        && !wl.allows_country(site.operator_idx)
    {
        fail!(Reason::Sovereignty {
            site: site.name.clone()
        });
    }
    if !wl.compliance.is_empty() {
        let missing: Vec<String> = wl
            .compliance
            .iter()
            .filter(|c| site.certifications.binary_search(c).is_err())
            .cloned()
            .collect();
        if !missing.is_empty() {
            fail!(Reason::Certifications { missing });
        }
    }
}

/// The per-node expressions `node` fails (the first only unless `all`).
pub(crate) fn node_failures(
    fleet: &Fleet,
    node: NodeId,
    wl: &Compiled,
    all: bool,
    out: &mut Vec<Reason>,
) {
    let n = &fleet.nodes[node as usize];
    let class = &fleet.classes[n.class as usize];
    for (i, e) in wl.exprs.iter().enumerate() {
        if e.attr.is_node_level() && !e.matches(fleet, class, Some(n)) {
            out.push(Reason::Expression(i));
            if !all {
                return;
            }
        }
    }
}

/// Free resources of a node: cpu, memory, ephemeral (`None` when not reported).
pub(crate) fn free_of(fleet: &Fleet, node: NodeId) -> (u64, u64, Option<u64>) {
    let n = &fleet.nodes[node as usize];
    let cap = &fleet.classes[n.class as usize].key.capacity;
    (
        cap.cpu.saturating_sub(n.used[0]),
        cap.memory.saturating_sub(n.used[1]),
        cap.ephemeral.map(|e| e.saturating_sub(n.used[2])),
    )
}

/// The room a request of `milli` milli-GPUs can use in one group of a node, in
/// milli-GPUs: for a share, the most free on one device; for whole GPUs, the devices
/// nobody uses (× 1000).
pub(crate) fn group_room(devices: &[u16], milli: u32) -> u32 {
    if milli < MILLI {
        devices
            .iter()
            .map(|u| MILLI.saturating_sub(u32::from(*u)))
            .max()
            .unwrap_or(0)
    } else {
        devices.iter().filter(|u| **u == 0).count() as u32 * MILLI
    }
}

/// The largest room among `groups` of a node for a request of `milli` milli-GPUs
/// ([`group_room`]).
pub(crate) fn gpu_free(fleet: &Fleet, node: NodeId, groups: &[u8], milli: u32) -> u32 {
    let n = &fleet.nodes[node as usize];
    groups
        .iter()
        .map(|&g| group_room(&n.devices[g as usize], milli))
        .max()
        .unwrap_or(0)
}

/// Whether `res` (and `gpu` milli-GPUs from one of `groups`) fits on `node` now: the
/// GPU group to use (the fullest that fits) with the milli-GPUs, or the first capacity
/// filter that fails. A share needs one device with that much room; whole GPUs need as
/// many devices that nobody uses.
pub(crate) fn fit(
    fleet: &Fleet,
    node: NodeId,
    res: &[u64; 3],
    gpu: Option<u32>,
    groups: &[u8],
    ports: &PortNeed,
) -> Result<Option<(u8, u32)>, Reason> {
    ports_fit(fleet, node, ports)?;
    let (cpu, memory, eph) = free_of(fleet, node);
    if res[0] > cpu {
        return Err(Reason::Cpu);
    }
    if res[1] > memory {
        return Err(Reason::Memory);
    }
    if res[2] > 0 && eph.is_none_or(|e| res[2] > e) {
        return Err(Reason::Ephemeral);
    }
    match gpu {
        None => Ok(None),
        Some(milli) => {
            let n = &fleet.nodes[node as usize];
            groups
                .iter()
                .map(|&g| (group_room(&n.devices[g as usize], milli), g))
                .filter(|(room, _)| *room >= milli)
                .min()
                .map(|(_, g)| Some((g, milli)))
                .ok_or(Reason::Gpu)
        }
    }
}

/// Whether the node has the static host ports free, and enough free ports in the dynamic
/// range: the first port that is taken otherwise.
pub(crate) fn ports_fit(fleet: &Fleet, node: NodeId, need: &PortNeed) -> Result<(), Reason> {
    if need.fixed.is_empty() && need.dynamic == 0 {
        return Ok(());
    }
    let used = &fleet.nodes[node as usize].ports;
    if let Some(&taken) = need.fixed.iter().find(|k| used.contains(k)) {
        return Err(Reason::Port {
            port: (taken & 0xFFFF) as u16,
            protocol: if taken >> 16 == 1 {
                api::task::Protocol::Udp
            } else {
                api::task::Protocol::Tcp
            },
        });
    }
    if need.dynamic > 0 {
        let range = (api::task::DYNAMIC_PORT_MAX - api::task::DYNAMIC_PORT_MIN) as u32 + 1;
        let in_range = used
            .iter()
            .filter(|k| {
                let p = (**k & 0xFFFF) as u16;
                (api::task::DYNAMIC_PORT_MIN..=api::task::DYNAMIC_PORT_MAX).contains(&p)
            })
            .count() as u32;
        if range.saturating_sub(in_range) < need.dynamic {
            return Err(Reason::DynamicPorts);
        }
    }
    Ok(())
}

/// Picks the host ports of `ports` on a node whose used ports are `used`: static ones as
/// asked, dynamic ones the lowest free of the dynamic range (so the choice is
/// deterministic). `None` if the node cannot take them.
pub(crate) fn pick_ports(used: &std::collections::BTreeSet<u32>, ports: &[PortReq]) -> Vec<u32> {
    let mut picked: Vec<u32> = Vec::with_capacity(ports.len());
    let mut next = [api::task::DYNAMIC_PORT_MIN; 2];
    for p in ports {
        if p.port != 0 {
            picked.push(PortReq::key(p.port, p.protocol));
            continue;
        }
        let proto = (p.protocol == api::task::Protocol::Udp) as usize;
        let mut candidate = next[proto];
        loop {
            let key = PortReq::key(candidate, p.protocol);
            if !used.contains(&key) && !picked.contains(&key) {
                picked.push(key);
                break;
            }
            if candidate == api::task::DYNAMIC_PORT_MAX {
                // ports_fit said there is room: unreachable, but never loop forever.
                picked.push(key);
                break;
            }
            candidate += 1;
        }
        next[proto] = candidate.saturating_add(1).min(api::task::DYNAMIC_PORT_MAX);
    }
    picked
}

/// What `node` lacks for the request: cpu, memory, ephemeral, milli-GPUs (0 where
/// enough).
pub(crate) fn shortfall(
    fleet: &Fleet,
    node: NodeId,
    res: &[u64; 3],
    gpu: Option<u32>,
    groups: &[u8],
) -> [u64; 4] {
    let (cpu, memory, eph) = free_of(fleet, node);
    [
        res[0].saturating_sub(cpu),
        res[1].saturating_sub(memory),
        if res[2] > 0 {
            res[2].saturating_sub(eph.unwrap_or(0))
        } else {
            0
        },
        gpu.map_or(0, |c| {
            c.saturating_sub(gpu_free(fleet, node, groups, c)) as u64
        }),
    ]
}
