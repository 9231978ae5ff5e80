//! The fleet generator: sites in many jurisdictions and providers, each with a few node
//! pools (identical nodes, as clouds and data centres provision them), and nodes drawn
//! into those pools.

use std::collections::BTreeMap;

use api::kinds::{
    Arch, Carbon, Driver, GpuDevice, LsmMode, NodeOs, NodePhase, NodeResources, NodeSpec,
    NodeStatus, OsFamily, Pricing, ProjectSpec, SecurityFacts, SiteOperator, SiteSpec, Taint,
    TaintEffect,
};
use api::{Cpu, Memory, Node, ObjectMeta, Project, Site};
use rand::distributions::WeightedIndex;
use rand::prelude::*;
use rand::rngs::StdRng;

use crate::catalog::{self, Kind, Region, Shape};

/// What fleet to generate. Everything not given has a default drawn from real estates;
/// the same spec always gives the same fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub nodes: usize,
    pub seed: u64,
    /// Number of sites; by default one per 200 nodes, at least 24 and at most 500.
    pub sites: Option<usize>,
    /// Share of Windows nodes (default 0.30).
    pub windows_share: f64,
    /// Share of GPU nodes (default 0.06).
    pub gpu_share: f64,
    /// Share of Linux arm64 nodes (default 0.10).
    pub arm_share: f64,
    /// Share of nodes whose agent reports `NotReady` (default 0.01).
    pub not_ready_share: f64,
    /// Share of cordoned nodes (default 0.005).
    pub cordoned_share: f64,
}

impl FleetSpec {
    pub fn new(nodes: usize, seed: u64) -> FleetSpec {
        FleetSpec {
            nodes,
            seed,
            sites: None,
            windows_share: 0.30,
            gpu_share: 0.06,
            arm_share: 0.10,
            not_ready_share: 0.01,
            cordoned_share: 0.005,
        }
    }

    /// The number of sites this spec gives.
    pub fn site_count(&self) -> usize {
        self.sites
            .unwrap_or((self.nodes / 200).clamp(24, 500))
            .max(1)
    }

    /// Generates the fleet.
    pub fn generate(&self) -> SimFleet {
        generate(self)
    }
}

/// A generated fleet: API objects as an administrator (or the agents) would register them.
#[derive(Debug, Clone, PartialEq)]
pub struct SimFleet {
    /// In name order.
    pub sites: Vec<Site>,
    /// Grouped by site and pool, in name order within a pool.
    pub nodes: Vec<Node>,
    /// The estate's projects with their allowed locations ([`crate::WorkloadSpec`] puts
    /// workloads in them).
    pub projects: Vec<Project>,
}

impl SimFleet {
    /// The GPU models the fleet has, with the most GPUs on one node of that model.
    pub fn gpu_models(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for n in &self.nodes {
            for g in &n.spec.capacity.gpus {
                let e = out.entry(g.model.clone()).or_insert(0);
                *e = (*e).max(g.count);
            }
        }
        out
    }

    /// The project named `name`.
    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.metadata.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Linux,
    Arm,
    Windows,
    Gpu,
}

const CATEGORIES: [Category; 4] = [
    Category::Linux,
    Category::Arm,
    Category::Windows,
    Category::Gpu,
];

/// Identical nodes of one site.
#[derive(Debug, Clone)]
struct Pool {
    name: String,
    category: Category,
    cpu: u64,
    memory_gib: u64,
    ephemeral_gib: u64,
    os: NodeOs,
    arch: Arch,
    drivers: Vec<Driver>,
    taints: Vec<Taint>,
    gpus: Vec<GpuDevice>,
    labels: BTreeMap<String, String>,
    weight: u32,
    next: usize,
}

#[derive(Debug, Clone)]
struct SiteDraft {
    name: String,
    region: Region,
    zones: Vec<String>,
    pools: Vec<Pool>,
    weight: f64,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn zones(r: &Region) -> Vec<String> {
    let region = r.region;
    match (r.provider, r.kind) {
        ("aws", _) => ["a", "b", "c"]
            .iter()
            .map(|z| format!("{region}{z}"))
            .collect(),
        ("azure", _) => (1..=3).map(|z| format!("{region}-{z}")).collect(),
        ("gcp", _) => ["a", "b", "c"]
            .iter()
            .map(|z| format!("{region}-{z}"))
            .collect(),
        (_, Kind::Edge) => vec![format!("{region}-1")],
        (_, Kind::Onprem | Kind::Vmware) => vec![format!("{region}-a"), format!("{region}-b")],
        ("exoscale" | "swisscom" | "hetzner", _) => vec![format!("{region}-1")],
        _ => vec![format!("{region}-1"), format!("{region}-2")],
    }
}

fn site_object(d: &SiteDraft, rng: &mut StdRng) -> Site {
    let r = &d.region;
    let mut certs: Vec<String> = Vec::new();
    for c in catalog::baseline_certs(r.provider).iter().chain(r.certs) {
        if !certs.iter().any(|x| x == c) {
            certs.push(c.to_string());
        }
    }
    let factor = catalog::country_factor(r.country) * rng.gen_range(0.95..1.05);
    let cpu = round_to(catalog::core_hour(r.provider) * factor, 4);
    let gpu_hour: BTreeMap<String, f64> = catalog::gpu_models(r.provider)
        .iter()
        .filter_map(|m| catalog::GPUS.iter().find(|g| g.0 == *m))
        .map(|(m, _, price)| (m.to_string(), round_to(price * factor, 2)))
        .collect();
    // Some of the estate's own data centres buy green electricity.
    let green = matches!(r.kind, Kind::Onprem) && rng.gen_bool(0.3);
    let grams =
        catalog::carbon(r.country) * rng.gen_range(0.9..1.1) * if green { 0.4 } else { 1.0 };
    let tier = match r.kind {
        Kind::Onprem => "core",
        Kind::Vmware => "legacy",
        Kind::Edge => "edge",
        Kind::Cloud if r.operator_country == "US" => "cloud",
        Kind::Cloud => "sovereign-cloud",
    };
    let mut meta = ObjectMeta::named(d.name.clone());
    meta.labels = labels(&[("tier", tier)]);
    Site::new(
        meta,
        SiteSpec {
            provider: r.provider.to_string(),
            region: Some(r.region.to_string()),
            zones: d.zones.clone(),
            jurisdiction: r.country.to_string(),
            operator: Some(SiteOperator {
                name: r.operator.to_string(),
                jurisdiction: r.operator_country.to_string(),
            }),
            certifications: certs,
            pricing: Some(Pricing {
                cpu_core_hour: Some(cpu),
                memory_gib_hour: Some(round_to(cpu * 0.13, 5)),
                gpu_hour,
            }),
            carbon: Some(Carbon {
                grams_per_kwh: grams.round(),
            }),
        },
    )
}

/// A pool's OS for a Linux distribution of the provider.
fn linux_os(provider: &str, arch: Arch, rng: &mut StdRng) -> NodeOs {
    let list = catalog::distros(provider);
    let (distro, version, kernel) = list[rng.gen_range(0..list.len())];
    let kernel = match arch {
        Arch::Amd64 => kernel.to_string(),
        Arch::Arm64 => kernel
            .replace("x86_64", "aarch64")
            .replace("amd64", "arm64"),
    };
    NodeOs {
        family: OsFamily::Linux,
        distro: Some(distro.to_string()),
        version: Some(version.to_string()),
        build: None,
        kernel: Some(kernel),
    }
}

fn windows_os(build: &str, version: &str, edge: bool) -> NodeOs {
    NodeOs {
        family: OsFamily::Windows,
        distro: Some(
            if edge {
                "windows-11-iot"
            } else {
                "windows-server"
            }
            .to_string(),
        ),
        version: Some(if edge { "24H2" } else { version }.to_string()),
        build: Some(build.to_string()),
        kernel: None,
    }
}

fn pick_weighted<'a, T>(items: &'a [(T, u32)], rng: &mut StdRng) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| *w).sum();
    let mut x = rng.gen_range(0..total);
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

struct PoolBuilder<'a> {
    region: &'a Region,
    pools: Vec<Pool>,
}

impl PoolBuilder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        code: &str,
        category: Category,
        shape: (&str, u64, u64, u64),
        os: NodeOs,
        arch: Arch,
        drivers: &[Driver],
        gpus: Vec<GpuDevice>,
        rng: &mut StdRng,
    ) -> &mut Pool {
        let n = self
            .pools
            .iter()
            .filter(|p| p.name.starts_with(code))
            .count()
            + 1;
        let name = format!("{code}{n}");
        let tier = *pick_weighted(&[("prod", 7), ("staging", 2), ("dev", 1)], rng);
        let team = if rng.gen_bool(0.6) {
            "shared"
        } else {
            catalog::TEAMS[rng.gen_range(0..catalog::TEAMS.len())]
        };
        let mut l = labels(&[
            ("pool", &name),
            ("tier", tier),
            ("team", team),
            (catalog::shape_label(self.region.provider), shape.0),
        ]);
        let mut taints = Vec::new();
        if !gpus.is_empty() {
            taints.push(Taint {
                key: "nvidia.com/gpu".into(),
                value: Some("present".into()),
                effect: TaintEffect::NoSchedule,
            });
            l.insert("accelerator".into(), gpus[0].model.to_ascii_lowercase());
        }
        self.pools.push(Pool {
            name,
            category,
            cpu: shape.1,
            memory_gib: shape.2,
            ephemeral_gib: shape.3,
            os,
            arch,
            drivers: drivers.to_vec(),
            taints,
            gpus,
            labels: l,
            weight: rng.gen_range(1..=4),
            next: 0,
        });
        self.pools.last_mut().expect("just pushed")
    }
}

fn shape_tuple(s: &Shape) -> (&'static str, u64, u64, u64) {
    (s.name, s.cpu, s.memory_gib, s.ephemeral_gib)
}

fn choose_shapes<'a>(menu: &'a [Shape], n: usize, rng: &mut StdRng) -> Vec<&'a Shape> {
    let mut idx: Vec<usize> = (0..menu.len()).collect();
    idx.shuffle(rng);
    idx.truncate(n.min(menu.len()));
    idx.sort_unstable();
    idx.into_iter().map(|i| &menu[i]).collect()
}

/// The pools of a site. `forced_gpus` gives the core sites known GPU models so that
/// even the smallest fleet has several.
fn pools(r: &Region, forced_gpus: &[(&str, u32)], rng: &mut StdRng) -> Vec<Pool> {
    let mut b = PoolBuilder {
        region: r,
        pools: Vec::new(),
    };
    use Driver::{Container, Exec, Qemu};
    let cloud = r.kind == Kind::Cloud;
    // Linux amd64
    match r.kind {
        Kind::Cloud => {
            for s in choose_shapes(catalog::CLOUD_LINUX, rng.gen_range(2..=3), rng) {
                let os = linux_os(r.provider, Arch::Amd64, rng);
                let pool = b.add(
                    "lnx",
                    Category::Linux,
                    shape_tuple(s),
                    os,
                    Arch::Amd64,
                    &[Exec, Container],
                    Vec::new(),
                    rng,
                );
                if rng.gen_bool(0.15) {
                    pool.labels.insert("lifecycle".into(), "spot".into());
                    pool.taints.push(Taint {
                        key: "spot".into(),
                        value: Some("true".into()),
                        effect: TaintEffect::PreferNoSchedule,
                    });
                } else if rng.gen_bool(0.08) {
                    pool.labels.insert("dedicated".into(), "batch".into());
                    pool.taints.push(Taint {
                        key: "dedicated".into(),
                        value: Some("batch".into()),
                        effect: TaintEffect::NoSchedule,
                    });
                }
            }
        }
        Kind::Onprem | Kind::Vmware => {
            let n = if r.kind == Kind::Vmware {
                2
            } else {
                rng.gen_range(2..=3)
            };
            for (i, s) in choose_shapes(catalog::ONPREM_LINUX, n, rng)
                .into_iter()
                .enumerate()
            {
                let os = linux_os(r.provider, Arch::Amd64, rng);
                // The first pool hosts VMs (the VMware exit path); the others containers.
                let drivers: &[Driver] = match (r.kind, i) {
                    (Kind::Vmware, _) => &[Exec, Container, Qemu],
                    (_, 0) => &[Exec, Qemu],
                    _ => &[Exec, Container],
                };
                b.add(
                    "lnx",
                    Category::Linux,
                    shape_tuple(s),
                    os,
                    Arch::Amd64,
                    drivers,
                    Vec::new(),
                    rng,
                );
            }
        }
        Kind::Edge => {
            let s = &catalog::EDGE[rng.gen_range(0..catalog::EDGE.len())];
            let os = linux_os("edge", Arch::Amd64, rng);
            b.add(
                "lnx",
                Category::Linux,
                shape_tuple(s),
                os,
                Arch::Amd64,
                &[Exec, Container],
                Vec::new(),
                rng,
            );
        }
    }
    // Linux arm64 (Graviton, Cobalt, Axion, Ampere)
    if cloud
        && matches!(
            r.provider,
            "aws" | "azure" | "gcp" | "hetzner" | "scaleway" | "ovhcloud"
        )
    {
        let s = &catalog::ARM[rng.gen_range(0..catalog::ARM.len())];
        let os = linux_os(r.provider, Arch::Arm64, rng);
        b.add(
            "arm",
            Category::Arm,
            shape_tuple(s),
            os,
            Arch::Arm64,
            &[Exec, Container],
            Vec::new(),
            rng,
        );
    }
    // Windows
    if r.kind == Kind::Edge {
        let s = &catalog::EDGE[0];
        let os = windows_os("10.0.26100", "24H2", true);
        b.add(
            "win",
            Category::Windows,
            shape_tuple(s),
            os,
            Arch::Amd64,
            &[Exec, Container],
            Vec::new(),
            rng,
        );
    } else {
        let n = if rng.gen_bool(0.5) { 2 } else { 1 };
        let mut builds: Vec<(&(&str, &str, u32), u32)> =
            catalog::WINDOWS_BUILDS.iter().map(|b| (b, b.2)).collect();
        for _ in 0..n {
            let &(build, version, _) = *pick_weighted(&builds, rng);
            builds.retain(|(b, _)| b.0 != build);
            let s = &catalog::WINDOWS[rng.gen_range(0..catalog::WINDOWS.len())];
            let pool = b.add(
                "win",
                Category::Windows,
                shape_tuple(s),
                windows_os(build, version, false),
                Arch::Amd64,
                &[Exec, Container],
                Vec::new(),
                rng,
            );
            // Kubernetes habit: keep Linux-only work off Windows nodes.
            if rng.gen_bool(0.25) {
                pool.taints.push(Taint {
                    key: "os".into(),
                    value: Some("windows".into()),
                    effect: TaintEffect::NoSchedule,
                });
            }
        }
    }
    // GPUs
    let models = catalog::gpu_models(r.provider);
    let mut gpu_pools: Vec<(String, u32)> = forced_gpus
        .iter()
        .map(|(m, c)| (m.to_string(), *c))
        .collect();
    if gpu_pools.is_empty() && !models.is_empty() && rng.gen_bool(0.45) {
        let n = rng.gen_range(1..=2usize).min(models.len());
        let mut m: Vec<&str> = models.to_vec();
        m.shuffle(rng);
        for model in m.into_iter().take(n) {
            let count = match model {
                "H100" | "A100" => 8,
                "L40S" => 4,
                _ => *[1, 4].choose(rng).expect("non-empty"),
            };
            gpu_pools.push((model.to_string(), count));
        }
    }
    for (model, count) in gpu_pools {
        let (_, memory, _) = catalog::GPUS
            .iter()
            .find(|g| g.0 == model)
            .copied()
            .unwrap_or(("?", 16, 1.0));
        let (cpu, mem, eph) = catalog::gpu_shape(&model, count);
        let os = NodeOs {
            family: OsFamily::Linux,
            distro: Some("ubuntu".into()),
            version: Some("22.04".into()),
            build: None,
            kernel: Some("5.15.0-105-generic".into()),
        };
        let name = format!("gpu-{}x{count}", model.to_ascii_lowercase());
        let gpus = vec![GpuDevice {
            model: model.clone(),
            memory: Some(Memory::from_gib(memory)),
            count,
            shareable: None,
        }];
        b.add(
            "gpu",
            Category::Gpu,
            (name.as_str(), cpu, mem, eph),
            os,
            Arch::Amd64,
            &[Exec, Container],
            gpus,
            rng,
        );
    }
    b.pools
}

/// GPU pools the first core sites always have.
fn forced_gpus(core_index: usize) -> &'static [(&'static str, u32)] {
    match core_index {
        0 => &[("H100", 8)],
        1 => &[("A100", 8)],
        2 => &[("L4", 1), ("T4", 4)],
        3 => &[("L40S", 4)],
        4 => &[("H100", 8)],
        _ => &[],
    }
}

fn site_weight(r: &Region) -> f64 {
    match r.kind {
        Kind::Cloud if r.operator_country == "US" => 1.0,
        Kind::Cloud => 0.6,
        Kind::Onprem => 1.2,
        Kind::Vmware => 0.6,
        Kind::Edge => 0.1,
    }
}

fn drafts(spec: &FleetSpec, rng: &mut StdRng) -> Vec<SiteDraft> {
    let count = spec.site_count();
    let mut regions: Vec<(Region, usize)> = catalog::CORE.iter().map(|r| (*r, 1)).collect();
    let mut more: Vec<Region> = catalog::MORE.to_vec();
    more.shuffle(rng);
    let mut round = 1;
    while regions.len() < count {
        // After every place is taken once, further sites are more landing zones (or
        // data halls) of the same places.
        if round > 1 {
            more = catalog::CORE.iter().chain(catalog::MORE).copied().collect();
            more.shuffle(rng);
        }
        for r in &more {
            if regions.len() >= count {
                break;
            }
            regions.push((*r, round));
        }
        round += 1;
    }
    regions.truncate(count);
    regions
        .into_iter()
        .enumerate()
        .map(|(i, (r, n))| {
            let base = format!("{}-{}", r.provider, r.region);
            let name = if n == 1 { base } else { format!("{base}-{n}") };
            let forced = if n == 1 && i < catalog::CORE.len() {
                forced_gpus(i)
            } else {
                &[]
            };
            SiteDraft {
                zones: zones(&r),
                pools: pools(&r, forced, rng),
                weight: site_weight(&r) * rng.gen_range(0.5..1.5),
                region: r,
                name,
            }
        })
        .collect()
}

fn security(pool: &Pool, rng: &mut StdRng) -> SecurityFacts {
    let windows = pool.os.family == OsFamily::Windows;
    let distro = pool.os.distro.as_deref().unwrap_or("");
    let rhel_like = matches!(distro, "rhel" | "rocky" | "amzn" | "azurelinux");
    let debian_like = matches!(distro, "ubuntu" | "debian" | "sles");
    SecurityFacts {
        disk_encryption: Some(rng.gen_bool(0.93)),
        secure_boot: Some(rng.gen_bool(if windows { 0.95 } else { 0.8 })),
        tpm: Some(rng.gen_bool(0.85)),
        selinux: rhel_like.then(|| {
            if rng.gen_bool(0.85) {
                LsmMode::Enforcing
            } else {
                LsmMode::Permissive
            }
        }),
        apparmor: debian_like.then(|| {
            if rng.gen_bool(0.9) {
                LsmMode::Enforcing
            } else {
                LsmMode::Disabled
            }
        }),
        fips: Some(rng.gen_bool(if windows { 0.05 } else { 0.08 })),
        patch_age_days: Some(if rng.gen_bool(0.9) {
            rng.gen_range(0..=45)
        } else {
            rng.gen_range(46..=200)
        }),
    }
}

/// What the OS and agents keep for themselves.
fn allocatable(pool: &Pool) -> NodeResources {
    let reserve_millis = match pool.cpu {
        0..=8 => 500,
        9..=32 => 1000,
        _ => 2000,
    };
    let memory_mib = pool.memory_gib * 1024;
    let reserve_mib = (memory_mib / 20).max(2048);
    NodeResources {
        cpu: Cpu::from_millis(pool.cpu * 1000 - reserve_millis),
        memory: Memory::from_mib(memory_mib - reserve_mib),
        ephemeral_storage: (pool.ephemeral_gib > 0)
            .then(|| Memory::from_gib(pool.ephemeral_gib - pool.ephemeral_gib / 10)),
        gpus: pool.gpus.clone(),
    }
}

fn node_object(
    site: &SiteDraft,
    pool_index: usize,
    zone: &str,
    rng: &mut StdRng,
    spec: &FleetSpec,
) -> Node {
    let pool = &site.pools[pool_index];
    let seq = pool.next;
    let mut meta = ObjectMeta::named(format!("{}-{}-{seq:05}", site.name, pool.name));
    meta.labels = pool.labels.clone();
    if matches!(site.region.kind, Kind::Onprem | Kind::Vmware | Kind::Edge) {
        meta.labels
            .insert("rack".into(), format!("{zone}-r{:02}", (seq / 16) % 40 + 1));
    }
    let phase = if rng.gen_bool(spec.not_ready_share) {
        NodePhase::NotReady
    } else {
        NodePhase::Ready
    };
    Node::new(
        meta,
        NodeSpec {
            site: site.name.clone(),
            zone: Some(zone.to_string()),
            os: pool.os.clone(),
            arch: pool.arch,
            capacity: NodeResources {
                cpu: Cpu::from_cores(pool.cpu),
                memory: Memory::from_gib(pool.memory_gib),
                ephemeral_storage: (pool.ephemeral_gib > 0)
                    .then(|| Memory::from_gib(pool.ephemeral_gib)),
                gpus: pool.gpus.clone(),
            },
            allocatable: Some(allocatable(pool)),
            drivers: pool.drivers.clone(),
            taints: pool.taints.clone(),
            unschedulable: rng.gen_bool(spec.cordoned_share),
        },
    )
    .with_status(NodeStatus {
        phase: Some(phase),
        security: Some(security(pool, rng)),
        agent_version: Some("0.1.0".into()),
        ..NodeStatus::default()
    })
}

trait WithStatus<T> {
    fn with_status(self, status: T) -> Self;
}

impl WithStatus<NodeStatus> for Node {
    fn with_status(mut self, status: NodeStatus) -> Self {
        self.status = Some(status);
        self
    }
}

fn projects() -> Vec<Project> {
    catalog::PROJECTS
        .iter()
        .map(|&catalog::ProjectDef { name, allowed, .. }| {
            let mut meta = ObjectMeta::named(name);
            meta.labels = labels(&[("cost-center", &format!("cc-{}", 4100 + 100 * name.len()))]);
            Project::new(
                meta,
                ProjectSpec {
                    description: Some(format!("Generated project {name}.")),
                    owners: vec![format!("group:{name}")],
                    allowed_locations: allowed.iter().map(|s| s.to_string()).collect(),
                    quota: None,
                    default_queue: None,
                },
            )
        })
        .collect()
}

fn generate(spec: &FleetSpec) -> SimFleet {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut drafts = drafts(spec, &mut rng);
    let sites: Vec<Site> = {
        let mut v: Vec<Site> = drafts.iter().map(|d| site_object(d, &mut rng)).collect();
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        v
    };

    // Per category: which sites offer it, by weight.
    let linux_share = (1.0 - spec.windows_share - spec.gpu_share - spec.arm_share).max(0.0);
    let shares = [
        linux_share,
        spec.arm_share.max(0.0),
        spec.windows_share.max(0.0),
        spec.gpu_share.max(0.0),
    ];
    let mut site_pick: Vec<Option<WeightedIndex<f64>>> = Vec::new();
    for c in CATEGORIES {
        let w: Vec<f64> = drafts
            .iter()
            .map(|d| {
                if d.pools.iter().any(|p| p.category == c) {
                    d.weight
                } else {
                    0.0
                }
            })
            .collect();
        site_pick.push(WeightedIndex::new(&w).ok());
    }
    let category_pick = WeightedIndex::new(shares)
        .unwrap_or_else(|_| WeightedIndex::new([1.0, 0.0, 0.0, 0.0]).expect("one positive weight"));

    let mut assignments: Vec<(usize, usize, usize)> = Vec::with_capacity(spec.nodes);
    for _ in 0..spec.nodes {
        let mut ci = category_pick.sample(&mut rng);
        if site_pick[ci].is_none() {
            ci = 0;
        }
        let c = CATEGORIES[ci];
        let s = site_pick[ci]
            .as_ref()
            .expect("linux everywhere")
            .sample(&mut rng);
        let d = &drafts[s];
        let candidates: Vec<(usize, u32)> = d
            .pools
            .iter()
            .enumerate()
            .filter(|(_, p)| p.category == c)
            .map(|(i, p)| (i, p.weight))
            .collect();
        let p = *pick_weighted(&candidates, &mut rng);
        let z = rng.gen_range(0..d.zones.len());
        assignments.push((s, p, z));
    }
    assignments.sort_unstable();
    let mut nodes = Vec::with_capacity(spec.nodes);
    for (s, p, z) in assignments {
        let zone = drafts[s].zones[z].clone();
        let node = node_object(&drafts[s], p, &zone, &mut rng, spec);
        drafts[s].pools[p].next += 1;
        nodes.push(node);
    }
    SimFleet {
        sites,
        nodes,
        projects: projects(),
    }
}
