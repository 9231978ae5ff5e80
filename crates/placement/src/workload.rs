//! Workloads compiled for placement, and the batch of instances to place.
//!
//! A workload is compiled once per batch, whatever its replica count: quantities become
//! integers, residency becomes a country set, selector keys become [`Attr`]s.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use api::kinds::{
    Arch, Driver, Isolation, OsFamily, Sovereignty, Strategy, Toleration, WorkloadType,
};
use api::{MatchExpression, Project, Workload};

use crate::fleet::{Class, CountrySet, Fleet, NodeInfo, SiteInfo};
use crate::windows::WindowsBuild;
use api::explanation::WorkloadRef;

/// A workload that cannot be placed as written (the API's validation normally catches
/// these first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("workload {workload}: {message}")]
    InvalidWorkload { workload: String, message: String },
    #[error("workload {0} was added to the batch twice with different specs")]
    DuplicateWorkload(String),
}

/// A node or site attribute a selector can name.
///
/// Keys: `site.name`, `site.provider`, `site.region`, `site.jurisdiction`,
/// `site.operator.jurisdiction`, `site.operator.name`, `site.labels.KEY`, `site.zone` (or
/// `node.zone`), `node.name`, `node.os.family`, `node.os.distro`, `node.os.version`,
/// `node.os.build`, `node.os.kernel`, `node.arch`, `node.gpu.model`, `node.gpu.count`,
/// `node.security.{diskEncryption,secureBoot,tpm,selinux,apparmor,fips,patchAgeDays}`,
/// `node.labels.KEY`; any other key is a node label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Attr {
    SiteName,
    SiteProvider,
    SiteRegion,
    SiteJurisdiction,
    SiteOperatorJurisdiction,
    SiteOperatorName,
    SiteLabel(String),
    Zone,
    NodeName,
    NodeKernel,
    OsFamily,
    OsDistro,
    OsVersion,
    OsBuild,
    Arch,
    GpuModel,
    GpuCount,
    Security(SecurityKey),
    NodeLabel(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SecurityKey {
    DiskEncryption,
    SecureBoot,
    Tpm,
    Selinux,
    Apparmor,
    Fips,
    PatchAgeDays,
}

impl Attr {
    pub(crate) fn parse(key: &str) -> Attr {
        match key {
            "site.name" => Attr::SiteName,
            "site.provider" => Attr::SiteProvider,
            "site.region" => Attr::SiteRegion,
            "site.jurisdiction" => Attr::SiteJurisdiction,
            "site.operator.jurisdiction" => Attr::SiteOperatorJurisdiction,
            "site.operator.name" => Attr::SiteOperatorName,
            "site.zone" | "node.zone" => Attr::Zone,
            "node.name" => Attr::NodeName,
            "node.os.kernel" => Attr::NodeKernel,
            "node.os.family" => Attr::OsFamily,
            "node.os.distro" => Attr::OsDistro,
            "node.os.version" => Attr::OsVersion,
            "node.os.build" => Attr::OsBuild,
            "node.arch" => Attr::Arch,
            "node.gpu.model" => Attr::GpuModel,
            "node.gpu.count" => Attr::GpuCount,
            "node.security.diskEncryption" => Attr::Security(SecurityKey::DiskEncryption),
            "node.security.secureBoot" => Attr::Security(SecurityKey::SecureBoot),
            "node.security.tpm" => Attr::Security(SecurityKey::Tpm),
            "node.security.selinux" => Attr::Security(SecurityKey::Selinux),
            "node.security.apparmor" => Attr::Security(SecurityKey::Apparmor),
            "node.security.fips" => Attr::Security(SecurityKey::Fips),
            "node.security.patchAgeDays" => Attr::Security(SecurityKey::PatchAgeDays),
            _ => {
                if let Some(k) = key.strip_prefix("site.labels.") {
                    Attr::SiteLabel(k.to_string())
                } else if let Some(k) = key.strip_prefix("node.labels.") {
                    Attr::NodeLabel(k.to_string())
                } else {
                    Attr::NodeLabel(key.to_string())
                }
            }
        }
    }

    /// Whether the value may differ between nodes of one class (so it is read per
    /// node).
    pub(crate) fn is_node_level(&self) -> bool {
        matches!(
            self,
            Attr::NodeName | Attr::NodeKernel | Attr::NodeLabel(_) | Attr::Security(_)
        )
    }

    /// Whether every node of `class` has the same value of this attribute (always for
    /// class attributes; for per-node ones, when the class says so).
    pub(crate) fn is_uniform(&self, class: &Class) -> bool {
        let u = &class.uniform;
        match self {
            _ if class.nodes.len() <= 1 => true,
            Attr::NodeName => false,
            Attr::NodeKernel => u.kernel,
            Attr::NodeLabel(k) => !u.mixed_labels.contains(k),
            Attr::Security(s) => u.security[*s as usize],
            _ => true,
        }
    }

    /// The value every node of `class` has, when [`Attr::is_uniform`].
    pub(crate) fn uniform_value<'a>(
        &self,
        fleet: &'a Fleet,
        class: &'a Class,
    ) -> Option<Cow<'a, str>> {
        let first = class.nodes.first().map(|&n| &fleet.nodes[n as usize]);
        self.value(fleet, class, first)
    }

    pub(crate) fn is_security(&self) -> bool {
        matches!(self, Attr::Security(_))
    }

    /// The attribute's value on a node of `class` (`node` is needed only for node-level
    /// attributes).
    pub(crate) fn value<'a>(
        &self,
        fleet: &'a Fleet,
        class: &'a Class,
        node: Option<&'a NodeInfo>,
    ) -> Option<Cow<'a, str>> {
        let site: Option<&'a SiteInfo> = fleet.site_of_class(class);
        let k = &class.key;
        let b = |v: Option<bool>| v.map(|v| Cow::Borrowed(if v { "true" } else { "false" }));
        match self {
            Attr::SiteName => Some(Cow::Borrowed(fleet.site_name_of_class(class))),
            Attr::SiteProvider => site.map(|s| Cow::Borrowed(s.provider.as_str())),
            Attr::SiteRegion => site.and_then(|s| s.region.as_deref()).map(Cow::Borrowed),
            Attr::SiteJurisdiction => site.map(|s| Cow::Borrowed(s.jurisdiction.as_str())),
            Attr::SiteOperatorJurisdiction => site
                .and_then(|s| s.operator_jurisdiction.as_deref())
                .map(Cow::Borrowed),
            Attr::SiteOperatorName => site
                .and_then(|s| s.operator_name.as_deref())
                .map(Cow::Borrowed),
            Attr::SiteLabel(l) => site
                .and_then(|s| s.labels.get(l))
                .map(|v| Cow::Borrowed(v.as_str())),
            Attr::Zone => k.zone.as_deref().map(Cow::Borrowed),
            Attr::NodeName => node.map(|n| Cow::Borrowed(n.name.as_str())),
            Attr::NodeKernel => node.and_then(|n| n.kernel.as_deref()).map(Cow::Borrowed),
            Attr::OsFamily => Some(Cow::Borrowed(k.os.as_str())),
            Attr::OsDistro => k.distro.as_deref().map(Cow::Borrowed),
            Attr::OsVersion => k.os_version.as_deref().map(Cow::Borrowed),
            Attr::OsBuild => k.os_build.as_deref().map(Cow::Borrowed),
            Attr::Arch => Some(Cow::Borrowed(k.arch.as_str())),
            Attr::GpuModel => k
                .capacity
                .gpus
                .first()
                .map(|g| Cow::Borrowed(g.model.as_str())),
            Attr::GpuCount => Some(Cow::Owned(k.capacity.gpu_total().to_string())),
            Attr::Security(s) => {
                let sec = &node?.security;
                match s {
                    SecurityKey::DiskEncryption => b(sec.disk_encryption),
                    SecurityKey::SecureBoot => b(sec.secure_boot),
                    SecurityKey::Tpm => b(sec.tpm),
                    SecurityKey::Fips => b(sec.fips),
                    SecurityKey::Selinux => sec.selinux.map(|m| Cow::Borrowed(m.as_str())),
                    SecurityKey::Apparmor => sec.apparmor.map(|m| Cow::Borrowed(m.as_str())),
                    SecurityKey::PatchAgeDays => {
                        sec.patch_age_days.map(|d| Cow::Owned(d.to_string()))
                    }
                }
            }
            Attr::NodeLabel(l) => node?.labels.get(l).map(|v| Cow::Borrowed(v.as_str())),
        }
    }
}

/// A match expression with its key resolved.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub expr: MatchExpression,
    pub attr: Attr,
    /// Set on the expressions a queue's flavour adds (`flavor gpu-spot of queue
    /// training`): explanations say the node is outside the flavour.
    pub flavor: Option<Arc<str>>,
}

impl Expr {
    pub(crate) fn matches(&self, fleet: &Fleet, class: &Class, node: Option<&NodeInfo>) -> bool {
        self.expr
            .matches(self.attr.value(fleet, class, node).as_deref())
    }
}

/// GPUs one replica needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GpuReq {
    /// Milli-GPUs: whole GPUs × 1000, or a share of one device (1..=999).
    pub milli: u32,
    pub model: Option<String>,
    pub memory: Option<u64>,
}

impl GpuReq {
    /// Whether it is a share of one device (below one GPU).
    pub(crate) fn is_share(&self) -> bool {
        self.milli < api::gpu::MILLI_PER_GPU
    }
}

/// An allowed set of jurisdictions, as written and expanded.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub codes: Vec<String>,
    pub set: CountrySet,
}

impl Fence {
    fn new(codes: &[String]) -> Fence {
        Fence {
            codes: codes.to_vec(),
            set: CountrySet::expand(codes),
        }
    }

    pub(crate) fn list(&self) -> String {
        format!("[{}]", self.codes.join(", "))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SpreadReq {
    pub key: String,
    pub attr: Attr,
    pub max_skew: u32,
}

/// A port of `task.ports`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortReq {
    pub name: String,
    /// 0: any free port of the dynamic range.
    pub port: u16,
    pub target: Option<u16>,
    pub protocol: api::task::Protocol,
}

impl PortReq {
    /// The key of a host port in a node's used set: the number, and the protocol above it.
    pub(crate) fn key(port: u16, protocol: api::task::Protocol) -> u32 {
        port as u32 | ((protocol == api::task::Protocol::Udp) as u32) << 16
    }
}

/// The host ports a workload needs on a node: static ones by key, and how many dynamic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PortNeed {
    pub fixed: Vec<u32>,
    pub dynamic: u32,
}

impl PortNeed {
    fn of(ports: &[PortReq]) -> PortNeed {
        PortNeed {
            fixed: ports
                .iter()
                .filter(|p| p.port != 0)
                .map(|p| PortReq::key(p.port, p.protocol))
                .collect(),
            dynamic: ports.iter().filter(|p| p.port == 0).count() as u32,
        }
    }
}

/// A workload, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub workload: WorkloadRef,
    pub type_: WorkloadType,
    pub priority: i32,
    pub gang: Option<u32>,
    /// Queued jobs: the fewest pending replicas a partial admission admits.
    pub min_parallelism: Option<u32>,
    /// cpu millicores, memory bytes, ephemeral bytes.
    pub res: [u64; 3],
    pub gpu: Option<GpuReq>,
    pub resources: api::kinds::Resources,
    pub driver: Driver,
    pub os: Option<OsFamily>,
    pub windows: Option<(WindowsBuild, Isolation)>,
    pub arch: Option<Arch>,
    pub residency: Option<Fence>,
    /// The project's `allowedLocations` fence and the project's name.
    pub project: Option<(String, Fence)>,
    /// The project's quota, when it sets a bound.
    pub quota: Option<Arc<QuotaLimits>>,
    pub strict: bool,
    pub compliance: Vec<String>,
    pub exprs: Vec<Expr>,
    pub prefs: Vec<(i32, Vec<Expr>)>,
    pub spread: Option<SpreadReq>,
    /// Gangs: the key all members share, its attribute, and whether it is required.
    pub topology: Option<(String, Attr, bool)>,
    pub anti_affinity: bool,
    pub strategy: Strategy,
    pub tolerations: Vec<Toleration>,
    pub location: Option<String>,
    /// Host ports, in `task.ports` order.
    pub ports: Vec<PortReq>,
    /// What they need of a node (computed once: the search checks it per node).
    pub port_need: PortNeed,
    /// Host volumes: name and whether the task writes to it (mounts it read-write).
    pub volumes: Vec<(String, bool)>,
    /// The queue it waits in (named, or its project's default for jobs); used when the
    /// batch has queues ([`Batch::set_queues`]).
    pub queue: Option<String>,
    /// `metadata.creationTimestamp` (RFC 3339), for the order within a queue.
    pub created: String,
    /// The spec, to tell a re-added workload from a different one.
    spec: api::kinds::WorkloadSpec,
}

impl Compiled {
    pub(crate) fn new(w: &Workload, project: Option<&Project>) -> Result<Compiled, PlacementError> {
        let workload = WorkloadRef {
            namespace: w.metadata.namespace.clone().unwrap_or_default(),
            name: w.metadata.name.clone(),
        };
        let invalid = |message: String| PlacementError::InvalidWorkload {
            workload: workload.to_string(),
            message,
        };
        let spec = &w.spec;
        let task = &spec.task;
        let windows = match &task.os {
            Some(os) if os.family == OsFamily::Windows => match &os.build {
                Some(b) => Some((
                    WindowsBuild::parse(b).ok_or_else(|| {
                        invalid(format!(
                            "task.os.build {b:?} is not a Windows build such as 10.0.20348"
                        ))
                    })?,
                    os.isolation.unwrap_or(Isolation::Process),
                )),
                None => None,
            },
            _ => None,
        };
        let data = spec.data.clone().unwrap_or_default();
        for code in &data.residency {
            if !api::jurisdiction::is_valid(code) {
                return Err(invalid(format!(
                    "data.residency: {code:?} is not a jurisdiction or bloc"
                )));
            }
        }
        let compile = |list: &[MatchExpression]| -> Result<Vec<Expr>, PlacementError> {
            list.iter()
                .map(|e| {
                    e.check()
                        .map_err(|m| invalid(format!("match expression {e}: {m}")))?;
                    Ok(Expr {
                        expr: e.clone(),
                        attr: Attr::parse(&e.key),
                        flavor: None,
                    })
                })
                .collect()
        };
        let placement = spec.placement.clone().unwrap_or_default();
        let exprs = compile(&placement.match_expressions)?;
        let prefs = placement
            .preferences
            .iter()
            .map(|p| Ok((p.weight.clamp(-100, 100), compile(&p.match_expressions)?)))
            .collect::<Result<Vec<_>, PlacementError>>()?;
        let spread = match &placement.spread {
            Some(s) if s.max_skew < 1 => {
                return Err(invalid(format!(
                    "placement.spread.maxSkew must be at least 1, not {}",
                    s.max_skew
                )));
            }
            Some(s) => Some(SpreadReq {
                key: s.key.clone(),
                attr: Attr::parse(&s.key),
                max_skew: s.max_skew as u32,
            }),
            None => None,
        };
        let topology = placement.topology.as_ref().map(|t| {
            (
                t.level.clone(),
                Attr::parse(&t.level),
                t.mode == api::kinds::TopologyMode::Required,
            )
        });
        let r = &task.resources;
        let gang = match spec.gang {
            Some(0) | None => None,
            Some(n) => Some(n),
        };
        let mut compliance = spec.compliance.clone();
        compliance.sort();
        compliance.dedup();
        let queue = api::queue::effective_queue(spec, project.map(|p| &p.spec)).map(str::to_owned);
        let quota = project
            .and_then(|p| p.spec.quota.as_ref())
            .map(QuotaLimits::of)
            .filter(|q| !q.is_unbounded())
            .map(Arc::new);
        let project = project
            .filter(|p| !p.spec.allowed_locations.is_empty())
            .map(|p| {
                (
                    p.metadata.name.clone(),
                    Fence::new(&p.spec.allowed_locations),
                )
            });
        let mut ports = Vec::with_capacity(task.ports.len());
        for (i, p) in task.ports.iter().enumerate() {
            let port = u16::try_from(p.port)
                .map_err(|_| invalid(format!("task.ports[{i}].port: {} is not a port", p.port)))?;
            let target = p
                .target
                .map(|t| {
                    u16::try_from(t).ok().filter(|t| *t > 0).ok_or_else(|| {
                        invalid(format!("task.ports[{i}].target: {t} is not a port"))
                    })
                })
                .transpose()?;
            ports.push(PortReq {
                name: p.name.clone(),
                port,
                target,
                protocol: p.protocol,
            });
        }
        let mut volumes: Vec<(String, bool)> = task
            .volumes
            .iter()
            .map(|v| (v.name.clone(), !v.read_only))
            .collect();
        volumes.sort();
        volumes.dedup();
        Ok(Compiled {
            port_need: PortNeed::of(&ports),
            ports,
            volumes,
            workload,
            type_: spec.type_,
            priority: spec.priority,
            gang,
            min_parallelism: spec.min_parallelism.filter(|_| gang.is_none()),
            res: [
                r.cpu.millis(),
                r.memory.bytes(),
                r.ephemeral_storage.map_or(0, |m| m.bytes()),
            ],
            gpu: r
                .gpu
                .as_ref()
                .filter(|g| !g.count.is_zero())
                .map(|g| GpuReq {
                    milli: g.count.milli(),
                    model: g.model.clone(),
                    memory: g.memory.map(|m| m.bytes()),
                }),
            resources: r.clone(),
            driver: task.driver,
            os: task.os.as_ref().map(|o| o.family),
            windows,
            arch: task.arch,
            residency: (!data.residency.is_empty()).then(|| Fence::new(&data.residency)),
            project,
            quota,
            strict: data.sovereignty == Sovereignty::Strict,
            compliance,
            exprs,
            prefs,
            spread,
            topology,
            anti_affinity: placement.anti_affinity,
            strategy: placement.strategy,
            tolerations: spec.tolerations.clone(),
            location: data.location,
            queue,
            created: w.metadata.creation_timestamp.clone().unwrap_or_default(),
            spec: spec.clone(),
        })
    }

    /// Whether the site's country is allowed by the residency and the project fence.
    pub(crate) fn allows_country(&self, idx: Option<u16>) -> bool {
        self.residency.as_ref().is_none_or(|f| f.set.contains(idx))
            && self
                .project
                .as_ref()
                .is_none_or(|(_, f)| f.set.contains(idx))
    }

    /// The allowed set, for messages: `[EU]`, or `[EU] within project finance's [EU]`.
    pub(crate) fn residency_text(&self) -> String {
        match (&self.residency, &self.project) {
            (Some(r), _) => r.list(),
            (None, Some((_, p))) => p.list(),
            (None, None) => "anywhere".to_string(),
        }
    }
}

/// A project's quota (`Project.spec.quota`) in the units placement counts: cpu
/// millicores, memory bytes, milli-GPUs, allocations, milli-GPUs per model. `None` does
/// not bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QuotaLimits {
    pub cpu: Option<u64>,
    pub memory: Option<u64>,
    pub gpus: Option<u64>,
    pub instances: Option<u64>,
    pub by_model: BTreeMap<String, u64>,
}

/// Whole GPUs of a quota in milli-GPUs (a quota of `gpus: 1` admits four 0.25 shares).
fn milli_gpus(n: u32) -> u64 {
    u64::from(n) * u64::from(api::gpu::MILLI_PER_GPU)
}

impl QuotaLimits {
    pub(crate) fn of(q: &api::kinds::Quota) -> QuotaLimits {
        QuotaLimits {
            cpu: q.cpu.map(|c| c.millis()),
            memory: q.memory.map(|m| m.bytes()),
            gpus: q.gpus.map(milli_gpus),
            instances: q.instances.map(u64::from),
            by_model: q
                .gpus_by_model
                .iter()
                .map(|(m, n)| (m.clone(), milli_gpus(*n)))
                .collect(),
        }
    }

    fn is_unbounded(&self) -> bool {
        self.cpu.is_none()
            && self.memory.is_none()
            && self.gpus.is_none()
            && self.instances.is_none()
            && self.by_model.is_empty()
    }
}

/// One instance to place: a replica of a workload of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instance {
    pub workload: usize,
    pub replica: u32,
}

/// The pending instances to place together. Each workload is compiled once, however
/// many of its replicas are pending.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) workloads: Vec<Compiled>,
    /// The estate's queues, when queued jobs are admitted by them.
    pub(crate) queues: Option<Arc<crate::queue::Queues>>,
    /// Per workload whose queue has flavours: the workload as admitted into each flavour
    /// (its match expressions and the flavour's), in the queue's flavour order.
    pub(crate) flavored: Vec<Vec<Compiled>>,
    pub(crate) instances: Vec<Instance>,
    seen: HashSet<(usize, u32)>,
    index: HashMap<WorkloadRef, usize>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds replicas of a workload (its `metadata.namespace` is the project).
    pub fn add(
        &mut self,
        workload: &Workload,
        replicas: impl IntoIterator<Item = u32>,
    ) -> Result<(), PlacementError> {
        self.push(Compiled::new(workload, None)?, replicas)
    }

    /// Adds replicas of a workload whose project fences where its work may run
    /// (`allowedLocations`): both the workload's residency and the fence must allow a
    /// site. The project's quota (`spec.quota`) bounds what its instances may reserve,
    /// counting the fleet's allocations of the project and this batch's placements: an
    /// instance (a gang: all its members at once) that would go over is unplaceable
    /// with [`api::explanation::ReasonCode::Quota`].
    pub fn add_in_project(
        &mut self,
        workload: &Workload,
        project: &Project,
        replicas: impl IntoIterator<Item = u32>,
    ) -> Result<(), PlacementError> {
        self.push(Compiled::new(workload, Some(project))?, replicas)
    }

    /// Admits queued jobs through `queues`: a job that names a queue (or whose project
    /// has a default queue) is placed only within its queue's quota, in its queue's order
    /// (see [`crate::queue`]). Without queues, `spec.queue` is ignored.
    pub fn set_queues(&mut self, queues: Arc<crate::queue::Queues>) {
        self.flavored = self
            .workloads
            .iter()
            .map(|c| flavored(&queues, c))
            .collect();
        self.queues = Some(queues);
    }

    /// Adds every replica (`0..spec.replicas`) of a workload.
    pub fn add_all(&mut self, workload: &Workload) -> Result<(), PlacementError> {
        let n = workload.spec.replicas.max(0) as u32;
        self.add(workload, 0..n)
    }

    fn push(
        &mut self,
        c: Compiled,
        replicas: impl IntoIterator<Item = u32>,
    ) -> Result<(), PlacementError> {
        let index = match self.index.get(&c.workload) {
            Some(&i) if self.workloads[i].spec == c.spec => i,
            Some(_) => return Err(PlacementError::DuplicateWorkload(c.workload.to_string())),
            None => {
                self.index.insert(c.workload.clone(), self.workloads.len());
                if let Some(q) = &self.queues {
                    self.flavored.push(flavored(q, &c));
                }
                self.workloads.push(c);
                self.workloads.len() - 1
            }
        };
        for replica in replicas {
            if self.seen.insert((index, replica)) {
                self.instances.push(Instance {
                    workload: index,
                    replica,
                });
            }
        }
        Ok(())
    }

    /// Workload `wi` as admitted into flavour `flavor` of its queue.
    pub(crate) fn flavored(&self, wi: usize, flavor: u16) -> Option<&Compiled> {
        self.flavored.get(wi)?.get(flavor as usize)
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

/// Workload `c` as admitted into each flavour of its queue (none outside queues or when
/// its queue has no flavours): its own match expressions, then the flavour's.
fn flavored(queues: &crate::queue::Queues, c: &Compiled) -> Vec<Compiled> {
    let Some(q) = c.queue.as_ref().and_then(|q| queues.ids.get(q)) else {
        return Vec::new();
    };
    let queue = &queues.list[*q as usize];
    queue
        .flavors
        .iter()
        .map(|f| {
            let mut v = c.clone();
            let note: Arc<str> = format!("flavor {} of queue {}", f.name, queue.name).into();
            v.exprs.extend(f.exprs.iter().map(|e| Expr {
                expr: e.clone(),
                attr: Attr::parse(&e.key),
                flavor: Some(note.clone()),
            }));
            v
        })
        .collect()
}
