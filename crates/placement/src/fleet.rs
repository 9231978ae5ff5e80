//! The fleet snapshot: sites, nodes grouped into equivalence classes, and what is
//! allocated where.
//!
//! API objects are converted here, once, into compact internal structs: quantities are
//! integers, jurisdictions are indexes into [`api::jurisdiction::COUNTRIES`], nodes are
//! numbered in name order (so a node's id is also its tie-break rank), and nodes that no
//! filter can tell apart share a [`Class`]. Filters that do not depend on free capacity
//! run once per class instead of once per node; within a class, nodes are indexed by
//! utilisation so that the best-fitting node is found without a scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use api::explanation::{AllocationRef, Decision, Outcome};
use api::kinds::{Arch, Driver, LsmMode, NodePhase, OsFamily, Taint, TaintEffect};
use api::{Allocation, Node, Site, Workload};

use crate::windows::{WindowsBuild, WindowsHost};

pub(crate) type SiteId = u32;
pub(crate) type NodeId = u32;
pub(crate) type ClassId = u32;
pub(crate) type AllocId = u32;
pub(crate) type WorkloadId = u32;

/// Fixed-point scale of utilisation keys (1.0 = fully used).
pub(crate) const UTIL_SCALE: u128 = 1_000_000_000;

/// Why a snapshot could not be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("site {0:?} appears twice in the snapshot")]
    DuplicateSite(String),
    #[error("node {0:?} appears twice in the snapshot")]
    DuplicateNode(String),
    #[error("node {0:?} is not in the snapshot")]
    UnknownNode(String),
    #[error("allocation {allocation:?} has no namespace (project)")]
    MissingNamespace { allocation: String },
    #[error("decision for {workload} replica {replica} is not a placement")]
    NotPlaced { workload: String, replica: u32 },
    #[error("node {node:?} has no room for {workload} replica {replica}: {reason}")]
    NoRoom {
        node: String,
        workload: String,
        replica: u32,
        reason: String,
    },
}

/// A set of countries, as bits over the index of [`api::jurisdiction::COUNTRIES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct CountrySet([u64; 4]);

impl CountrySet {
    /// The countries of every code (countries or blocs); unknown codes add nothing.
    pub(crate) fn expand<S: AsRef<str>>(codes: &[S]) -> CountrySet {
        let mut set = CountrySet::default();
        for code in codes {
            for country in api::jurisdiction::expand(code.as_ref()) {
                if let Some(i) = country_index(country) {
                    set.0[i / 64] |= 1 << (i % 64);
                }
            }
        }
        set
    }

    pub(crate) fn contains(&self, index: Option<u16>) -> bool {
        index.is_some_and(|i| self.0[i as usize / 64] & (1 << (i % 64)) != 0)
    }
}

/// Index of an ISO 3166-1 alpha-2 code in [`api::jurisdiction::COUNTRIES`].
pub(crate) fn country_index(code: &str) -> Option<usize> {
    api::jurisdiction::COUNTRIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
}

/// A site, pre-digested.
#[derive(Debug, Clone)]
pub(crate) struct SiteInfo {
    pub name: String,
    pub provider: String,
    pub region: Option<String>,
    pub jurisdiction: String,
    pub jurisdiction_idx: Option<u16>,
    pub operator_name: Option<String>,
    pub operator_jurisdiction: Option<String>,
    pub operator_idx: Option<u16>,
    /// Sorted.
    pub certifications: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub cpu_core_hour: Option<f64>,
    pub memory_gib_hour: Option<f64>,
    pub gpu_hour: BTreeMap<String, f64>,
    pub carbon: Option<f64>,
}

/// A group of identical GPUs on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GpuGroup {
    pub model: String,
    pub memory: Option<u64>,
    pub count: u32,
    /// Whether shares of a device (`count: 0.25`) may land on it.
    pub shareable: bool,
    /// The node-wide index of each device of the group (devices are numbered over the
    /// node's GPUs in the order the node lists them), what an allocation reports.
    pub index: Vec<u32>,
}

/// What a node offers to Meridian (its allocatable resources).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Capacity {
    pub cpu: u64,
    pub memory: u64,
    /// `None`: the node does not report ephemeral storage, so none can be promised.
    pub ephemeral: Option<u64>,
    pub gpus: Vec<GpuGroup>,
}

impl Capacity {
    pub(crate) fn gpu_total(&self) -> u32 {
        self.gpus.iter().map(|g| g.count).sum()
    }

    /// Every GPU of the node in milli-GPUs.
    pub(crate) fn gpu_milli_total(&self) -> u32 {
        self.gpu_total().saturating_mul(MILLI)
    }
}

/// Milli-GPUs per GPU: GPU amounts in placement are milli-GPUs, so that shares of a
/// device (`0.25` is 250) and whole devices (1000 each) add up in one unit.
pub(crate) const MILLI: u32 = api::gpu::MILLI_PER_GPU;

/// Security facts of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Security {
    pub disk_encryption: Option<bool>,
    pub secure_boot: Option<bool>,
    pub tpm: Option<bool>,
    pub selinux: Option<LsmMode>,
    pub apparmor: Option<LsmMode>,
    pub fips: Option<bool>,
    pub patch_age_days: Option<u32>,
}

/// Everything a filter or a static score can read of a node except its name, kernel,
/// labels and security facts (which often differ from node to node, `rack` or patch
/// age, and are read per node): nodes with equal keys are interchangeable for every
/// decision that does not look at those.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClassKey {
    /// `Err(name)` when the node names a site that is not in the snapshot.
    pub site: Result<SiteId, String>,
    pub zone: Option<String>,
    pub os: OsFamily,
    pub distro: Option<String>,
    pub os_version: Option<String>,
    pub os_build: Option<String>,
    pub windows: Option<WindowsHost>,
    pub arch: Arch,
    /// Bit `1 << driver index` per offered driver.
    pub drivers: u8,
    pub taints: Vec<(String, Option<String>, TaintEffect)>,
    pub unschedulable: bool,
    pub phase: Option<NodePhase>,
    pub capacity: Capacity,
    /// Host volumes offered: name and whether read-only, sorted.
    pub volumes: Vec<(String, bool)>,
}

/// Nodes that no filter can tell apart.
#[derive(Debug, Clone)]
pub(crate) struct Class {
    pub key: ClassKey,
    pub taints: Vec<Taint>,
    /// Members, in id (name) order.
    pub nodes: Vec<NodeId>,
    /// Members by `(utilisation key, id)`.
    pub index: BTreeSet<(u64, NodeId)>,
    /// Which per-node attributes every member has alike.
    pub uniform: Uniform,
}

/// What the per-workload passes over every class read of a class, packed (a class is
/// large; these passes touch thousands of classes per workload).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassHot {
    /// The site, or `u32::MAX` for a site not in the snapshot.
    pub site: u32,
    pub nodes: u32,
    /// Members excluded from new work ([`Fleet::exclude`]).
    pub excluded: u32,
    /// 0 ready and schedulable, 1 not ready, 2 lost, 3 cordoned, 4 never reported (no agent).
    pub state: u8,
    /// Whether the class has `PreferNoSchedule` taints.
    pub prefer_no_schedule: bool,
    pub gpu_total: u32,
    pub cpu: u64,
    pub memory: u64,
    /// The largest and smallest utilisation key of a member (bounds for the search).
    pub max_key: u64,
    pub min_key: u64,
    /// The class's taints, as an index into [`Fleet::taint_sets`] (classes with the same
    /// taints share one).
    pub taint_set: u32,
}

impl ClassHot {
    fn of(class: &Class) -> ClassHot {
        let k = &class.key;
        ClassHot {
            site: k.site.as_ref().map_or(u32::MAX, |s| *s),
            nodes: class.nodes.len() as u32,
            excluded: 0,
            state: match k.phase {
                Some(NodePhase::NotReady) => 1,
                Some(NodePhase::Lost) => 2,
                // No agent has ever reported: nothing would run there.
                None => 4,
                _ if k.unschedulable => 3,
                _ => 0,
            },
            prefer_no_schedule: class
                .taints
                .iter()
                .any(|t| t.effect == TaintEffect::PreferNoSchedule),
            gpu_total: k.capacity.gpu_total(),
            cpu: k.capacity.cpu,
            memory: k.capacity.memory,
            max_key: 0,
            min_key: 0,
            taint_set: 0,
        }
    }
}

/// The per-node attributes (labels, kernel, security facts) that every node of a class
/// has alike: pools of identical hosts usually share their labels, so expressions and
/// preferences on those labels can be evaluated once per class instead of once per
/// node, with the same result.
#[derive(Debug, Clone, Default)]
pub(crate) struct Uniform {
    /// Label keys whose value (or absence) differs between members.
    pub mixed_labels: BTreeSet<String>,
    pub kernel: bool,
    /// Per security fact, in [`crate::workload::SecurityKey`] order.
    pub security: [bool; 7],
}

impl Uniform {
    fn of(nodes: &[&NodeInfo]) -> Uniform {
        let Some((first, rest)) = nodes.split_first() else {
            return Uniform::default();
        };
        let mut u = Uniform {
            mixed_labels: BTreeSet::new(),
            kernel: true,
            security: [true; 7],
        };
        for n in rest {
            for (k, v) in &n.labels {
                if first.labels.get(k) != Some(v) {
                    u.mixed_labels.insert(k.clone());
                }
            }
            for k in first.labels.keys() {
                if !n.labels.contains_key(k) {
                    u.mixed_labels.insert(k.clone());
                }
            }
            u.kernel &= n.kernel == first.kernel;
            let (a, b) = (&first.security, &n.security);
            let same = [
                a.disk_encryption == b.disk_encryption,
                a.secure_boot == b.secure_boot,
                a.tpm == b.tpm,
                a.selinux == b.selinux,
                a.apparmor == b.apparmor,
                a.fips == b.fips,
                a.patch_age_days == b.patch_age_days,
            ];
            for (u, s) in u.security.iter_mut().zip(same) {
                *u &= s;
            }
        }
        u
    }
}

/// A node's mutable state.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub class: ClassId,
    /// Position in the class's `nodes`.
    pub pos: u32,
    pub kernel: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub security: Security,
    /// cpu millicores, memory bytes, ephemeral bytes.
    pub used: [u64; 3],
    /// Per GPU group of the class: milli-GPUs in use (the sum of `devices`).
    pub gpu_used: Vec<u32>,
    /// Per GPU group, per device: milli-GPUs in use (1000 when a whole-GPU request holds
    /// it; shares add up to at most 1000).
    pub devices: Vec<Vec<u16>>,
    /// Host ports in use, by [`crate::workload::PortReq::key`].
    pub ports: BTreeSet<u32>,
    pub allocs: Vec<AllocId>,
    pub util: u64,
    pub excluded: bool,
}

/// One allocation the snapshot accounts for.
#[derive(Debug, Clone)]
pub(crate) struct Alloc {
    pub workload: WorkloadId,
    pub replica: u32,
    pub node: NodeId,
    pub priority: i32,
    pub res: [u64; 3],
    /// GPU group index on the node and milli-GPUs held.
    pub gpu: Option<(u8, u32)>,
    /// The devices of that group it holds (indexes within the group): one for a share,
    /// `count` for whole GPUs. Empty when inserted: [`Fleet::insert_alloc`] picks them.
    pub devices: Vec<u16>,
    /// Host ports held, by [`crate::workload::PortReq::key`].
    pub ports: Vec<u32>,
    /// `metadata.name` of the Allocation object, when it came from one.
    pub name: Option<String>,
}

/// A fleet snapshot: the input of placement. Build it with [`Fleet::new`] (or
/// [`Fleet::from_objects`]), add existing allocations, then place batches; a batch
/// accounts for its own placements, and [`Fleet::apply`] accounts for decisions made
/// elsewhere.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub(crate) sites: Vec<SiteInfo>,
    pub(crate) site_by_name: HashMap<String, SiteId>,
    pub(crate) classes: Vec<Class>,
    /// Per class, in class order.
    pub(crate) hot: Vec<ClassHot>,
    /// The distinct taint lists of the classes.
    pub(crate) taint_sets: Vec<Vec<Taint>>,
    /// Classes per site, in id order.
    pub(crate) site_classes: Vec<Vec<ClassId>>,
    /// Classes of nodes naming a site that is not in the snapshot.
    pub(crate) unknown_site_classes: Vec<ClassId>,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) node_by_name: HashMap<String, NodeId>,
    pub(crate) allocs: Vec<Option<Alloc>>,
    pub(crate) workload_ids: HashMap<(String, String), WorkloadId>,
    pub(crate) workload_names: Vec<(String, String)>,
    /// Replicas per node, per workload.
    pub(crate) replicas_on: HashMap<WorkloadId, BTreeMap<NodeId, u32>>,
    /// Per workload id: its project's index into `usage`.
    pub(crate) workload_project: Vec<u32>,
    /// Per workload id: whether it is a gang (its members are preempted together).
    pub(crate) gang: Vec<bool>,
    /// Project names, by project index.
    pub(crate) project_names: Vec<String>,
    pub(crate) project_ids: HashMap<String, u32>,
    /// What each project's accounted allocations reserve, by project index: the usage
    /// project quotas are enforced against, kept current by every insert and release.
    pub(crate) usage: Vec<Usage>,
}

/// The GPU model of the group allocation `a` holds on its node, if it holds GPUs.
fn alloc_model<'f>(classes: &'f [Class], nodes: &[NodeInfo], a: &Alloc) -> Option<&'f str> {
    let class = nodes[a.node as usize].class as usize;
    a.gpu.and_then(|(group, _)| {
        classes[class]
            .key
            .capacity
            .gpus
            .get(group as usize)
            .map(|g| g.model.as_str())
    })
}

/// What one project's allocations reserve (the same sums as `Project.status.used`,
/// [`api::kinds::ResourceTotals::add_allocation`]): cpu millicores, memory bytes,
/// milli-GPUs, allocations, and milli-GPUs per model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub cpu: u64,
    pub memory: u64,
    pub gpus: u64,
    pub instances: u64,
    pub by_model: BTreeMap<String, u64>,
}

impl Usage {
    /// The same sums as `ResourceTotals` (`Project.status.used`, `Queue.status.usage`).
    pub(crate) fn totals(&self) -> api::kinds::ResourceTotals {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let gpus = |n: u64| api::GpuCount::from_milli(clamp(n));
        api::kinds::ResourceTotals {
            cpu: api::Cpu::from_millis(self.cpu),
            memory: api::Memory::from_bytes(self.memory),
            gpus: gpus(self.gpus),
            instances: clamp(self.instances),
            gpus_by_model: self
                .by_model
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(m, n)| (m.clone(), gpus(*n)))
                .collect(),
        }
    }

    pub(crate) fn add(&mut self, a: &Alloc, model: Option<&str>) {
        self.cpu = self.cpu.saturating_add(a.res[0]);
        self.memory = self.memory.saturating_add(a.res[1]);
        self.instances += 1;
        if let Some((_, count)) = a.gpu {
            self.gpus = self.gpus.saturating_add(u64::from(count));
            if let Some(m) = model {
                match self.by_model.get_mut(m) {
                    Some(n) => *n = n.saturating_add(u64::from(count)),
                    None => {
                        self.by_model.insert(m.to_string(), u64::from(count));
                    }
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, a: &Alloc, model: Option<&str>) {
        self.cpu = self.cpu.saturating_sub(a.res[0]);
        self.memory = self.memory.saturating_sub(a.res[1]);
        self.instances = self.instances.saturating_sub(1);
        if let Some((_, count)) = a.gpu {
            self.gpus = self.gpus.saturating_sub(u64::from(count));
            if let Some(n) = model.and_then(|m| self.by_model.get_mut(m)) {
                *n = n.saturating_sub(u64::from(count));
            }
        }
    }
}

fn driver_bit(d: Driver) -> u8 {
    1 << Driver::ALL.iter().position(|x| *x == d).unwrap_or(0)
}

pub(crate) fn offers(drivers: u8, d: Driver) -> bool {
    drivers & driver_bit(d) != 0
}

fn site_info(site: &Site) -> SiteInfo {
    let s = &site.spec;
    let mut certifications = s.certifications.clone();
    certifications.sort();
    certifications.dedup();
    let pricing = s.pricing.clone().unwrap_or_default();
    SiteInfo {
        name: site.metadata.name.clone(),
        provider: s.provider.clone(),
        region: s.region.clone(),
        jurisdiction: s.jurisdiction.clone(),
        jurisdiction_idx: country_index(&s.jurisdiction).map(|i| i as u16),
        operator_name: s.operator.as_ref().map(|o| o.name.clone()),
        operator_jurisdiction: s.operator.as_ref().map(|o| o.jurisdiction.clone()),
        operator_idx: s
            .operator
            .as_ref()
            .and_then(|o| country_index(&o.jurisdiction))
            .map(|i| i as u16),
        certifications,
        labels: site.metadata.labels.clone(),
        cpu_core_hour: pricing.cpu_core_hour,
        memory_gib_hour: pricing.memory_gib_hour,
        gpu_hour: pricing.gpu_hour,
        carbon: s.carbon.as_ref().map(|c| c.grams_per_kwh),
    }
}

/// The used-port keys of assigned bindings.
fn port_keys(ports: &[api::task::PortBinding]) -> Vec<u32> {
    ports
        .iter()
        .map(|b| crate::workload::PortReq::key(b.port, b.protocol))
        .collect()
}

fn class_key(node: &Node, site: Result<SiteId, String>) -> ClassKey {
    let spec = &node.spec;
    let alloc = spec.allocatable();
    let mut gpus: Vec<GpuGroup> = Vec::new();
    let mut next = 0u32;
    for g in &alloc.gpus {
        let memory = g.memory.map(|m| m.bytes());
        let shareable = g.is_shareable();
        let index = next..next.saturating_add(g.count);
        next = index.end;
        match gpus
            .iter_mut()
            .find(|x| x.model == g.model && x.memory == memory && x.shareable == shareable)
        {
            Some(x) => {
                x.count += g.count;
                x.index.extend(index);
            }
            None => gpus.push(GpuGroup {
                model: g.model.clone(),
                memory,
                count: g.count,
                shareable,
                index: index.collect(),
            }),
        }
    }
    let windows = match (spec.os.family, spec.os.build.as_deref()) {
        (OsFamily::Windows, Some(b)) => WindowsBuild::parse(b)
            .map(|build| WindowsHost::from_facts(spec.os.distro.as_deref(), build)),
        _ => None,
    };
    let status = node.status.as_ref();
    ClassKey {
        site,
        zone: spec.zone.clone(),
        os: spec.os.family,
        distro: spec.os.distro.clone(),
        os_version: spec.os.version.clone(),
        os_build: spec.os.build.clone(),
        windows,
        arch: spec.arch,
        drivers: spec.drivers.iter().fold(0, |acc, d| acc | driver_bit(*d)),
        taints: spec
            .taints
            .iter()
            .map(|t| (t.key.clone(), t.value.clone(), t.effect))
            .collect(),
        unschedulable: spec.unschedulable,
        phase: status.and_then(|s| s.phase),
        capacity: Capacity {
            cpu: alloc.cpu.millis(),
            memory: alloc.memory.bytes(),
            ephemeral: alloc.ephemeral_storage.map(|m| m.bytes()),
            gpus,
        },
        volumes: {
            let mut v: Vec<(String, bool)> = status
                .map(|s| {
                    s.volumes
                        .iter()
                        .map(|v| (v.name.clone(), v.read_only))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        },
    }
}

/// Sum of per-dimension utilisation (cpu, memory, GPUs) in [`UTIL_SCALE`] units
/// (`gpu_used` in milli-GPUs per group).
pub(crate) fn util_key(cap: &Capacity, used: &[u64; 3], gpu_used: &[u32]) -> u64 {
    let mut k: u128 = 0;
    if cap.cpu > 0 {
        k += used[0] as u128 * UTIL_SCALE / cap.cpu as u128;
    }
    if cap.memory > 0 {
        k += used[1] as u128 * UTIL_SCALE / cap.memory as u128;
    }
    let total = cap.gpu_milli_total();
    if total > 0 {
        let g: u32 = gpu_used.iter().sum();
        k += g.min(total) as u128 * UTIL_SCALE / total as u128;
    }
    u64::try_from(k).unwrap_or(u64::MAX)
}

/// The devices of GPU group `group` a request of `milli` milli-GPUs would take on a
/// node whose per-device use is `devices`: a share goes to the fullest device that still
/// has room for it (best fit, which keeps whole devices free for whole-GPU requests);
/// whole GPUs take the first devices nobody uses. `None` when the group has no room.
pub(crate) fn pick_devices(devices: &[u16], milli: u32) -> Option<Vec<u16>> {
    if milli < MILLI {
        devices
            .iter()
            .enumerate()
            .filter(|(_, used)| u32::from(**used) + milli <= MILLI)
            .max_by_key(|(i, used)| (**used, std::cmp::Reverse(*i)))
            .map(|(i, _)| vec![i as u16])
    } else {
        let n = milli.div_ceil(MILLI) as usize;
        let free: Vec<u16> = devices
            .iter()
            .enumerate()
            .filter(|(_, used)| **used == 0)
            .map(|(i, _)| i as u16)
            .take(n)
            .collect();
        (free.len() == n).then_some(free)
    }
}

/// Milli-GPUs each held device carries: the share, or a whole device.
pub(crate) fn per_device(milli: u32) -> u16 {
    milli.min(MILLI) as u16
}

impl Fleet {
    /// A snapshot of `sites` and `nodes`, with nothing allocated yet. Nodes naming a site
    /// that is not in `sites` stay in the snapshot (and are refused, with that reason).
    pub fn new(sites: &[Site], nodes: &[Node]) -> Result<Fleet, FleetError> {
        let mut site_list: Vec<&Site> = sites.iter().collect();
        site_list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut site_by_name = HashMap::new();
        let mut infos = Vec::with_capacity(site_list.len());
        for s in site_list {
            if site_by_name
                .insert(s.metadata.name.clone(), infos.len() as SiteId)
                .is_some()
            {
                return Err(FleetError::DuplicateSite(s.metadata.name.clone()));
            }
            infos.push(site_info(s));
        }

        let mut node_list: Vec<&Node> = nodes.iter().collect();
        node_list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut fleet = Fleet {
            sites: infos,
            site_by_name,
            classes: Vec::new(),
            hot: Vec::new(),
            taint_sets: Vec::new(),
            site_classes: Vec::new(),
            unknown_site_classes: Vec::new(),
            nodes: Vec::with_capacity(node_list.len()),
            node_by_name: HashMap::with_capacity(node_list.len()),
            allocs: Vec::new(),
            workload_ids: HashMap::new(),
            workload_names: Vec::new(),
            replicas_on: HashMap::new(),
            workload_project: Vec::new(),
            gang: Vec::new(),
            project_names: Vec::new(),
            project_ids: HashMap::new(),
            usage: Vec::new(),
        };
        let mut class_ids: HashMap<ClassKey, ClassId> = HashMap::new();
        for n in node_list {
            let id = fleet.nodes.len() as NodeId;
            if fleet
                .node_by_name
                .insert(n.metadata.name.clone(), id)
                .is_some()
            {
                return Err(FleetError::DuplicateNode(n.metadata.name.clone()));
            }
            let site = fleet
                .site_by_name
                .get(&n.spec.site)
                .copied()
                .ok_or_else(|| n.spec.site.clone());
            let key = class_key(n, site);
            let class = match class_ids.get(&key) {
                Some(c) => *c,
                None => {
                    let c = fleet.classes.len() as ClassId;
                    fleet.classes.push(Class {
                        key: key.clone(),
                        taints: n.spec.taints.clone(),
                        nodes: Vec::new(),
                        index: BTreeSet::new(),
                        uniform: Uniform::default(),
                    });
                    class_ids.insert(key, c);
                    c
                }
            };
            let groups = fleet.classes[class as usize].key.capacity.gpus.len();
            let pos = fleet.classes[class as usize].nodes.len() as u32;
            fleet.classes[class as usize].nodes.push(id);
            fleet.classes[class as usize].index.insert((0, id));
            let sec = n
                .status
                .as_ref()
                .and_then(|s| s.security.clone())
                .unwrap_or_default();
            fleet.nodes.push(NodeInfo {
                name: n.metadata.name.clone(),
                class,
                pos,
                kernel: n.spec.os.kernel.clone(),
                labels: n.metadata.labels.clone(),
                security: Security {
                    disk_encryption: sec.disk_encryption,
                    secure_boot: sec.secure_boot,
                    tpm: sec.tpm,
                    selinux: sec.selinux,
                    apparmor: sec.apparmor,
                    fips: sec.fips,
                    patch_age_days: sec.patch_age_days,
                },
                used: [0; 3],
                gpu_used: vec![0; groups],
                devices: fleet.classes[class as usize]
                    .key
                    .capacity
                    .gpus
                    .iter()
                    .map(|g| vec![0; g.count as usize])
                    .collect(),
                ports: BTreeSet::new(),
                allocs: Vec::new(),
                util: 0,
                excluded: false,
            });
        }
        fleet.hot = fleet.classes.iter().map(ClassHot::of).collect();
        type TaintKey = (String, Option<String>, TaintEffect);
        let mut sets: HashMap<&[TaintKey], u32> = HashMap::new();
        for (hot, class) in fleet.hot.iter_mut().zip(&fleet.classes) {
            let n = sets.len() as u32;
            hot.taint_set = *sets.entry(class.key.taints.as_slice()).or_insert_with(|| {
                fleet.taint_sets.push(class.taints.clone());
                n
            });
        }
        fleet.site_classes = vec![Vec::new(); fleet.sites.len()];
        for (ci, class) in fleet.classes.iter().enumerate() {
            match class.key.site {
                Ok(s) => fleet.site_classes[s as usize].push(ci as ClassId),
                Err(_) => fleet.unknown_site_classes.push(ci as ClassId),
            }
        }
        for class in &mut fleet.classes {
            let members: Vec<&NodeInfo> = class
                .nodes
                .iter()
                .map(|&n| &fleet.nodes[n as usize])
                .collect();
            class.uniform = Uniform::of(&members);
        }
        Ok(fleet)
    }

    /// A snapshot with the existing allocations accounted for; each allocation's
    /// priority is its workload's (0 when the workload is gone).
    pub fn from_objects<'w, 'a>(
        sites: &[Site],
        nodes: &[Node],
        allocations: impl IntoIterator<Item = &'a Allocation>,
        workloads: impl IntoIterator<Item = &'w Workload>,
    ) -> Result<Fleet, FleetError> {
        let mut fleet = Fleet::new(sites, nodes)?;
        let priorities: HashMap<(&str, &str), i32> = workloads
            .into_iter()
            .map(|w| {
                if w.spec.gang.is_some() {
                    fleet.mark_gang(
                        w.metadata.namespace.as_deref().unwrap_or(""),
                        &w.metadata.name,
                    );
                }
                (
                    (
                        w.metadata.namespace.as_deref().unwrap_or(""),
                        w.metadata.name.as_str(),
                    ),
                    w.spec.priority,
                )
            })
            .collect();
        for a in allocations {
            let ns = a.metadata.namespace.as_deref().unwrap_or("");
            let priority = priorities
                .get(&(ns, a.spec.workload.as_str()))
                .copied()
                .unwrap_or(0);
            fleet.add_allocation(a, priority)?;
        }
        Ok(fleet)
    }

    /// Accounts for an existing allocation with its workload's `priority` (what
    /// preemption compares). Allocations that no longer hold resources (phase
    /// `succeeded`, `failed` or `lost`) are skipped: returns `Ok(false)`. An allocation
    /// that no longer fits (the node shrank) is still accounted for: the node is then
    /// full, never over-committed further.
    pub fn add_allocation(&mut self, a: &Allocation, priority: i32) -> Result<bool, FleetError> {
        let phase = a.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if !phase.holds_resources() {
            return Ok(false);
        }
        let ns = a
            .metadata
            .namespace
            .clone()
            .ok_or_else(|| FleetError::MissingNamespace {
                allocation: a.metadata.name.clone(),
            })?;
        let node = *self
            .node_by_name
            .get(&a.spec.node)
            .ok_or_else(|| FleetError::UnknownNode(a.spec.node.clone()))?;
        let r = &a.spec.resources;
        let res = [
            r.cpu.millis(),
            r.memory.bytes(),
            r.ephemeral_storage.map_or(0, |m| m.bytes()),
        ];
        let mut devices = Vec::new();
        let gpu = r.gpu.as_ref().filter(|g| !g.count.is_zero()).and_then(|g| {
            let milli = g.count.milli();
            let groups = &self.class_of(node).key.capacity.gpus;
            // The devices the allocation says it holds, when they are one group's and
            // as many as it needs; else the group is chosen as a placement would.
            if let Some((group, local)) = self.local_devices(node, &g.devices)
                && local.len() == milli.div_ceil(MILLI) as usize
                && (milli >= MILLI || groups[group as usize].shareable)
            {
                devices = local;
                return Some((group, milli));
            }
            let dev = &self.nodes[node as usize].devices;
            let fits = |i: usize| pick_devices(&dev[i], milli).is_some();
            let matching: Vec<usize> = (0..groups.len())
                .filter(|&i| g.model.as_ref().is_none_or(|m| *m == groups[i].model))
                .collect();
            let group = matching
                .iter()
                .copied()
                .find(|&i| fits(i))
                .or_else(|| matching.first().copied())
                .or(if groups.is_empty() { None } else { Some(0) })?;
            Some((group as u8, milli))
        });
        let wid = self.intern_workload(&ns, &a.spec.workload);
        self.insert_alloc(Alloc {
            workload: wid,
            replica: a.spec.replica,
            node,
            priority,
            res,
            gpu,
            devices,
            ports: port_keys(&a.spec.ports),
            name: Some(a.metadata.name.clone()).filter(|n| !n.is_empty()),
        });
        Ok(true)
    }

    /// Node-wide device indexes (as an allocation reports them) as one GPU group's
    /// local ones; `None` unless every index is a distinct device of one group.
    fn local_devices(&self, node: NodeId, indexes: &[u32]) -> Option<(u8, Vec<u16>)> {
        let first = *indexes.first()?;
        let groups = &self.class_of(node).key.capacity.gpus;
        let group = groups.iter().position(|g| g.index.contains(&first))?;
        let mut local = Vec::with_capacity(indexes.len());
        for i in indexes {
            let d = groups[group].index.iter().position(|x| x == i)? as u16;
            if local.contains(&d) {
                return None;
            }
            local.push(d);
        }
        Some((group as u8, local))
    }

    /// Accounts for a placement decided elsewhere (or in an earlier batch): the node's
    /// free resources shrink and the preempted allocations are released. Refuses a
    /// decision that does not fit, so a snapshot never over-commits a node.
    pub fn apply(&mut self, decision: &Decision) -> Result<(), FleetError> {
        let Outcome::Placed(p) = &decision.outcome else {
            return Err(FleetError::NotPlaced {
                workload: decision.workload.to_string(),
                replica: decision.replica,
            });
        };
        self.hold(
            &decision.workload,
            decision.replica,
            &p.node,
            &p.resources,
            p.priority,
            &p.preempted,
            &p.ports,
        )
    }

    /// Holds `resources` on `node` for an instance decided outside this snapshot that no
    /// allocation shows (a what-if caller chaining its answers: `POST /meridian/v1/plan`'s
    /// `reserved`): [`Fleet::apply`] of such a placement, without ports or preemption.
    /// Refuses what does not fit, so the snapshot never over-commits a node.
    pub fn reserve(
        &mut self,
        workload: &api::explanation::WorkloadRef,
        replica: u32,
        node: &str,
        resources: &api::kinds::Resources,
        priority: i32,
    ) -> Result<(), FleetError> {
        self.hold(workload, replica, node, resources, priority, &[], &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        workload: &api::explanation::WorkloadRef,
        replica: u32,
        node_name: &str,
        r: &api::kinds::Resources,
        priority: i32,
        preempted: &[api::explanation::Preemption],
        port_bindings: &[api::task::PortBinding],
    ) -> Result<(), FleetError> {
        let node = *self
            .node_by_name
            .get(node_name)
            .ok_or_else(|| FleetError::UnknownNode(node_name.to_string()))?;
        let mut released = Vec::new();
        for v in preempted {
            if let Some(id) = self.find_alloc(&v.allocation) {
                released.push(self.release(id));
            }
        }
        let res = [
            r.cpu.millis(),
            r.memory.bytes(),
            r.ephemeral_storage.map_or(0, |m| m.bytes()),
        ];
        let gpu_req =
            r.gpu
                .as_ref()
                .filter(|g| !g.count.is_zero())
                .map(|g| crate::workload::GpuReq {
                    milli: g.count.milli(),
                    model: g.model.clone(),
                    memory: g.memory.map(|m| m.bytes()),
                });
        let held = r
            .gpu
            .as_ref()
            .and_then(|g| self.local_devices(node, &g.devices));
        let class = self.class_of(node);
        let groups: Vec<u8> = (0..class.key.capacity.gpus.len() as u8)
            .filter(|&i| {
                gpu_req.as_ref().is_some_and(|g| {
                    crate::filter::gpu_group_matches(&class.key.capacity.gpus[i as usize], g)
                })
            })
            .collect();
        let ports = crate::workload::PortNeed {
            fixed: port_keys(port_bindings),
            dynamic: 0,
        };
        // The decision's devices when they are free in a matching group; else the
        // group and devices a placement would choose now.
        let named = held.filter(|(group, local)| {
            let need = gpu_req.as_ref().map_or(0, |g| g.milli);
            let dev = &self.nodes[node as usize].devices[*group as usize];
            groups.contains(group)
                && local.len() == need.div_ceil(MILLI) as usize
                && local
                    .iter()
                    .all(|&d| u32::from(dev[d as usize]) + u32::from(per_device(need)) <= MILLI)
        });
        let fitted = crate::filter::fit(
            self,
            node,
            &res,
            gpu_req.as_ref().map(|g| g.milli),
            match &named {
                Some((group, _)) => std::slice::from_ref(group),
                None => &groups,
            },
            &ports,
        );
        match fitted {
            Ok(gpu) => {
                let wid = self.intern_workload(&workload.namespace, &workload.name);
                self.insert_alloc(Alloc {
                    workload: wid,
                    replica,
                    node,
                    priority,
                    res,
                    gpu,
                    devices: named.map(|(_, d)| d).unwrap_or_default(),
                    ports: ports.fixed,
                    name: None,
                });
                Ok(())
            }
            Err(reason) => {
                for a in released {
                    self.insert_alloc(a);
                }
                Err(FleetError::NoRoom {
                    node: node_name.to_string(),
                    workload: workload.to_string(),
                    replica,
                    reason: match reason {
                        crate::filter::Reason::Cpu => "insufficient cpu",
                        crate::filter::Reason::Memory => "insufficient memory",
                        crate::filter::Reason::Ephemeral => "insufficient ephemeral storage",
                        crate::filter::Reason::Gpu => "insufficient GPUs",
                        _ => "a host port is taken",
                    }
                    .to_string(),
                })
            }
        }
    }

    /// Keeps new work off `node` (a lost or draining node) in every later batch.
    pub fn exclude(&mut self, node: &str) -> Result<(), FleetError> {
        let id = *self
            .node_by_name
            .get(node)
            .ok_or_else(|| FleetError::UnknownNode(node.to_string()))?;
        let node = &mut self.nodes[id as usize];
        if !node.excluded {
            node.excluded = true;
            self.hot[node.class as usize].excluded += 1;
        }
        Ok(())
    }

    /// Excludes `node` and releases every allocation on it; returns what was released
    /// (in workload, replica order) so the caller can place it again
    /// ([`crate::reschedule`] does both).
    pub fn drain(&mut self, node: &str) -> Result<Vec<AllocationRef>, FleetError> {
        self.exclude(node)?;
        let id = self.node_by_name[node];
        let ids = self.nodes[id as usize].allocs.clone();
        let mut out: Vec<AllocationRef> = ids
            .into_iter()
            .map(|a| {
                let alloc = self.release(a);
                self.alloc_ref(&alloc)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Stops accounting for an allocation (it finished, was stopped or was preempted
    /// elsewhere); returns whether the snapshot had it.
    pub fn remove_allocation(&mut self, allocation: &AllocationRef) -> bool {
        match self.find_alloc(allocation) {
            Some(id) => {
                self.release(id);
                true
            }
            None => false,
        }
    }

    /// The allocations the snapshot accounts for on `node`, sorted.
    pub fn allocations_on(&self, node: &str) -> Vec<AllocationRef> {
        let Some(&id) = self.node_by_name.get(node) else {
            return Vec::new();
        };
        let mut out: Vec<AllocationRef> = self.nodes[id as usize]
            .allocs
            .iter()
            .filter_map(|&a| self.allocs[a as usize].as_ref())
            .map(|a| self.alloc_ref(a))
            .collect();
        out.sort();
        out
    }

    /// Free resources of `node`: cpu millicores, memory bytes, ephemeral bytes (`None`
    /// when the node reports none) and free GPUs per model.
    pub fn free(&self, node: &str) -> Option<FreeResources> {
        let id = *self.node_by_name.get(node)?;
        let n = &self.nodes[id as usize];
        let cap = &self.class_of(id).key.capacity;
        Some(FreeResources {
            cpu_millis: cap.cpu.saturating_sub(n.used[0]),
            memory_bytes: cap.memory.saturating_sub(n.used[1]),
            ephemeral_bytes: cap.ephemeral.map(|e| e.saturating_sub(n.used[2])),
            gpus: cap
                .gpus
                .iter()
                .zip(&n.devices)
                .map(|(g, d)| {
                    (
                        g.model.clone(),
                        d.iter().filter(|u| **u == 0).count() as u32,
                    )
                })
                .collect(),
            gpu_shares: cap
                .gpus
                .iter()
                .zip(&n.devices)
                .map(|(g, d)| {
                    let free = d.iter().map(|u| MILLI.saturating_sub(u32::from(*u))).sum();
                    (g.model.clone(), api::GpuCount::from_milli(free))
                })
                .collect(),
        })
    }

    /// Marks a workload as a gang: preemption then evicts all of its members or none
    /// ([`Fleet::from_objects`] marks the workloads it is given; a batch marks its own).
    pub fn mark_gang(&mut self, namespace: &str, name: &str) {
        let id = self.intern_workload(namespace, name);
        self.gang[id as usize] = true;
    }

    /// What the allocations this snapshot accounts for reserve in `project`, summed as
    /// `Project.status.used` is (GPUs by the model of the node they hold); `None` when
    /// the project has none and never had.
    pub fn project_usage(&self, project: &str) -> Option<api::kinds::ResourceTotals> {
        Some(self.usage[*self.project_ids.get(project)? as usize].totals())
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of sites.
    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    /// Number of equivalence classes the nodes fall into (a measure of how much work
    /// the static filters do per workload).
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    // -- internals ------------------------------------------------------------------

    /// Capacity of every node together: cpu millicores, memory bytes, milli-GPUs.
    pub(crate) fn capacity_totals(&self) -> [u128; 3] {
        let mut t = [0u128; 3];
        for class in &self.classes {
            let cap = &class.key.capacity;
            let n = class.nodes.len() as u128;
            t[0] += u128::from(cap.cpu) * n;
            t[1] += u128::from(cap.memory) * n;
            t[2] += u128::from(cap.gpu_milli_total()) * n;
        }
        t
    }

    pub(crate) fn class_of(&self, node: NodeId) -> &Class {
        &self.classes[self.nodes[node as usize].class as usize]
    }

    pub(crate) fn site_of_class(&self, class: &Class) -> Option<&SiteInfo> {
        class
            .key
            .site
            .as_ref()
            .ok()
            .map(|&s| &self.sites[s as usize])
    }

    pub(crate) fn site_name_of_class<'a>(&'a self, class: &'a Class) -> &'a str {
        match &class.key.site {
            Ok(s) => &self.sites[*s as usize].name,
            Err(name) => name,
        }
    }

    pub(crate) fn intern_workload(&mut self, namespace: &str, name: &str) -> WorkloadId {
        let key = (namespace.to_string(), name.to_string());
        if let Some(id) = self.workload_ids.get(&key) {
            return *id;
        }
        let id = self.workload_names.len() as WorkloadId;
        let project = match self.project_ids.get(namespace) {
            Some(p) => *p,
            None => {
                let p = self.project_names.len() as u32;
                self.project_names.push(namespace.to_string());
                self.project_ids.insert(namespace.to_string(), p);
                self.usage.push(Usage::default());
                p
            }
        };
        self.workload_project.push(project);
        self.gang.push(false);
        self.workload_names.push(key.clone());
        self.workload_ids.insert(key, id);
        id
    }

    /// Accounts `a` to (or, with `added` false, off) its project's usage; its GPUs
    /// count under the model of its GPU group on its node.
    /// The GPU model allocation `a` holds, if it holds GPUs.
    pub(crate) fn model_of_alloc(&self, a: &Alloc) -> Option<&str> {
        alloc_model(&self.classes, &self.nodes, a)
    }

    fn count_usage(&mut self, a: &Alloc, added: bool) {
        let project = self.workload_project[a.workload as usize] as usize;
        let model = alloc_model(&self.classes, &self.nodes, a);
        let usage = &mut self.usage[project];
        if added {
            usage.add(a, model);
        } else {
            usage.remove(a, model);
        }
    }

    pub(crate) fn workload_id(&self, namespace: &str, name: &str) -> Option<WorkloadId> {
        self.workload_ids
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }

    pub(crate) fn alloc_ref(&self, a: &Alloc) -> AllocationRef {
        let (ns, wl) = &self.workload_names[a.workload as usize];
        AllocationRef {
            namespace: ns.clone(),
            workload: wl.clone(),
            replica: a.replica,
            name: a.name.clone(),
            node: self.nodes[a.node as usize].name.clone(),
            priority: a.priority,
        }
    }

    fn find_alloc(&self, r: &AllocationRef) -> Option<AllocId> {
        let node = *self.node_by_name.get(&r.node)?;
        let wid = self.workload_id(&r.namespace, &r.workload)?;
        self.nodes[node as usize].allocs.iter().copied().find(|&a| {
            self.allocs[a as usize]
                .as_ref()
                .is_some_and(|x| x.workload == wid && x.replica == r.replica)
        })
    }

    fn reindex(&mut self, node: NodeId, before: u64) {
        let n = &self.nodes[node as usize];
        let class = &mut self.classes[n.class as usize];
        let after = util_key(&class.key.capacity, &n.used, &n.gpu_used);
        if after != before {
            class.index.remove(&(before, node));
            class.index.insert((after, node));
            let hot = &mut self.hot[n.class as usize];
            hot.max_key = class.index.last().map_or(0, |x| x.0);
            hot.min_key = class.index.first().map_or(0, |x| x.0);
            self.nodes[node as usize].util = after;
        }
    }

    pub(crate) fn insert_alloc(&mut self, mut a: Alloc) -> AllocId {
        let id = self.allocs.len() as AllocId;
        let node = a.node;
        let before = self.nodes[node as usize].util;
        {
            let n = &mut self.nodes[node as usize];
            for (u, r) in n.used.iter_mut().zip(a.res) {
                *u = u.saturating_add(r);
            }
            if let Some((g, c)) = a.gpu {
                n.gpu_used[g as usize] = n.gpu_used[g as usize].saturating_add(c);
                let dev = &mut n.devices[g as usize];
                if a.devices.is_empty() {
                    // No room (an existing allocation on a node that shrank): the least
                    // used devices, so the node is full, never over-committed further.
                    a.devices = pick_devices(dev, c).unwrap_or_else(|| {
                        let mut order: Vec<u16> = (0..dev.len() as u16).collect();
                        order.sort_by_key(|&d| (dev[d as usize], d));
                        order.truncate(c.div_ceil(MILLI) as usize);
                        order
                    });
                }
                for &d in &a.devices {
                    if let Some(u) = dev.get_mut(d as usize) {
                        *u = u.saturating_add(per_device(c));
                    }
                }
            }
            n.ports.extend(a.ports.iter().copied());
            n.allocs.push(id);
        }
        *self
            .replicas_on
            .entry(a.workload)
            .or_default()
            .entry(node)
            .or_insert(0) += 1;
        self.count_usage(&a, true);
        self.allocs.push(Some(a));
        self.reindex(node, before);
        id
    }

    pub(crate) fn release(&mut self, id: AllocId) -> Alloc {
        let a = self.allocs[id as usize]
            .take()
            .expect("an allocation is released once");
        let node = a.node;
        let before = self.nodes[node as usize].util;
        {
            let n = &mut self.nodes[node as usize];
            for (u, r) in n.used.iter_mut().zip(a.res) {
                *u = u.saturating_sub(r);
            }
            if let Some((g, c)) = a.gpu {
                n.gpu_used[g as usize] = n.gpu_used[g as usize].saturating_sub(c);
                let dev = &mut n.devices[g as usize];
                for &d in &a.devices {
                    if let Some(u) = dev.get_mut(d as usize) {
                        *u = u.saturating_sub(per_device(c));
                    }
                }
            }
            for p in &a.ports {
                n.ports.remove(p);
            }
            n.allocs.retain(|x| *x != id);
        }
        if let Some(m) = self.replicas_on.get_mut(&a.workload)
            && let Some(c) = m.get_mut(&node)
        {
            *c -= 1;
            if *c == 0 {
                m.remove(&node);
            }
        }
        self.count_usage(&a, false);
        self.reindex(node, before);
        a
    }
}

/// Free resources of one node, as [`Fleet::free`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeResources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_bytes: Option<u64>,
    /// `(model, devices nobody uses)` per GPU group.
    pub gpus: Vec<(String, u32)>,
    /// `(model, free milli-GPUs over every device, shares included)` per GPU group.
    pub gpu_shares: Vec<(String, api::GpuCount)>,
}
