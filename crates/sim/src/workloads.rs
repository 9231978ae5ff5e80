//! The workload generator: a mix of services, batch jobs, Windows services, regulated
//! work under strict sovereignty, VMs and GPU jobs (some of them gangs), with the
//! constraints real estates write: residency, OS and Windows build, GPU model, spread,
//! anti-affinity, tolerations, `matchExpressions`, required certifications, preferences
//! and priorities.

use std::collections::BTreeMap;

use api::kinds::{
    Arch, Classification, DataPolicy, Disk, DiskFormat, Driver, GpuRequest, Isolation, OsFamily,
    OsRequirement, Placement, Preference, Resources, Restart, RestartPolicy, Sovereignty, Spread,
    Strategy, TaintEffect, Task, Toleration, TolerationOperator, WorkloadSpec as ApiWorkloadSpec,
    WorkloadType,
};
use api::{Cpu, MatchExpression, Memory, ObjectMeta, Operator, Workload};
use rand::prelude::*;
use rand::rngs::StdRng;

use crate::catalog;
use crate::fleet::SimFleet;

/// What workloads to generate: `instances` replicas in total (exactly), the same for the
/// same seed and fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub instances: usize,
    pub seed: u64,
}

impl WorkloadSpec {
    pub fn new(instances: usize, seed: u64) -> WorkloadSpec {
        WorkloadSpec { instances, seed }
    }

    /// Workloads for `fleet`: GPU jobs ask for models the fleet has, and jobs that name
    /// the site where their data lives name one of its sites. Each workload's namespace
    /// is one of `fleet.projects`; replica counts add up to `instances`.
    pub fn generate(&self, fleet: &SimFleet) -> Vec<Workload> {
        generate(self, fleet)
    }
}

/// The kinds of workload, with their share of instances and replica range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    Web,
    Worker,
    Batch,
    Windows,
    Arm,
    Regulated,
    Vm,
    GpuInfer,
    GpuTrain,
}

impl Template {
    const ALL: [Template; 9] = [
        Template::Web,
        Template::Worker,
        Template::Batch,
        Template::Windows,
        Template::Arm,
        Template::Regulated,
        Template::Vm,
        Template::GpuInfer,
        Template::GpuTrain,
    ];

    /// Share of all instances (per mille).
    fn share(self) -> u32 {
        match self {
            Template::Web => 320,
            Template::Worker => 110,
            Template::Batch => 200,
            Template::Windows => 190,
            Template::Arm => 40,
            Template::Regulated => 50,
            Template::Vm => 30,
            Template::GpuInfer => 8,
            Template::GpuTrain => 4,
        }
    }

    fn replicas(self) -> (usize, usize) {
        match self {
            Template::Web => (2, 24),
            Template::Worker => (1, 12),
            Template::Batch => (8, 160),
            Template::Windows => (1, 16),
            Template::Arm => (2, 20),
            Template::Regulated => (1, 10),
            Template::Vm => (1, 4),
            Template::GpuInfer => (1, 8),
            Template::GpuTrain => (2, 8),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Template::Web => "web",
            Template::Worker => "worker",
            Template::Batch => "batch",
            Template::Windows => "win",
            Template::Arm => "arm",
            Template::Regulated => "reg",
            Template::Vm => "vm",
            Template::GpuInfer => "infer",
            Template::GpuTrain => "train",
        }
    }
}

struct Ctx<'a> {
    rng: StdRng,
    fleet: &'a SimFleet,
    /// GPU model → (most on one node, total).
    gpus: BTreeMap<String, (u32, u32)>,
    supply: Supply,
}

/// What kind of capacity a workload needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Linux,
    Arm,
    Windows,
    Gpu,
    Qemu,
}

const NEEDS: usize = 5;

impl Template {
    fn need(self) -> Need {
        match self {
            Template::Web | Template::Worker | Template::Batch | Template::Regulated => Need::Linux,
            Template::Arm => Need::Arm,
            Template::Windows => Need::Windows,
            Template::Vm => Need::Qemu,
            Template::GpuInfer | Template::GpuTrain => Need::Gpu,
        }
    }
}

/// Allocatable cores per site and kind of capacity, so that demand goes roughly where
/// the fleet has capacity: a project or residency is chosen with a probability in
/// proportion to the capacity it allows (as an estate grows its fleet where its work is).
struct Supply {
    /// Per site: jurisdiction, operator jurisdiction, certifications, cores per [`Need`].
    sites: Vec<(String, String, Vec<String>, [f64; NEEDS])>,
    /// Per need, per project.
    projects: Vec<Vec<f64>>,
    /// Per need, per project, per residency option.
    residencies: Vec<Vec<Vec<f64>>>,
    /// Per case of [`REGULATED`].
    regulated: Vec<f64>,
}

/// Strictly sovereign work: (project, residency, certification the site must hold).
const REGULATED: &[(&str, &str, &str)] = &[
    ("public-de", "DE", "C5"),
    ("health-fr", "FR", "HDS"),
    ("health-fr", "FR", "SecNumCloud"),
    ("finance", "EU", "ISO27001"),
    ("finance", "DE", "ISO27001"),
    ("payments", "CH", "ISO27001"),
    ("data-platform", "GB", "ISO27001"),
];

impl Supply {
    fn new(fleet: &SimFleet) -> Supply {
        let index: BTreeMap<&str, usize> = fleet
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.metadata.name.as_str(), i))
            .collect();
        let mut sites: Vec<(String, String, Vec<String>, [f64; NEEDS])> = fleet
            .sites
            .iter()
            .map(|s| {
                (
                    s.spec.jurisdiction.clone(),
                    s.spec
                        .operator
                        .as_ref()
                        .map(|o| o.jurisdiction.clone())
                        .unwrap_or_default(),
                    s.spec.certifications.clone(),
                    [0.0; NEEDS],
                )
            })
            .collect();
        for n in &fleet.nodes {
            let ready = n
                .status
                .as_ref()
                .is_none_or(|s| s.phase != Some(api::kinds::NodePhase::NotReady));
            let Some(&i) = index.get(n.spec.site.as_str()) else {
                continue;
            };
            if !ready || n.spec.unschedulable {
                continue;
            }
            let cores = n.spec.allocatable().cpu.cores();
            let cores_of = &mut sites[i].3;
            let spec = &n.spec;
            if !spec.capacity.gpus.is_empty() {
                cores_of[Need::Gpu as usize] += cores;
            } else if spec.os.family == OsFamily::Windows {
                cores_of[Need::Windows as usize] += cores;
            } else {
                cores_of[Need::Linux as usize] += cores;
                if spec.arch == Arch::Arm64 {
                    cores_of[Need::Arm as usize] += cores;
                }
                if spec.drivers.contains(&Driver::Qemu) {
                    cores_of[Need::Qemu as usize] += cores;
                }
            }
        }
        let mut supply = Supply {
            sites,
            projects: Vec::new(),
            residencies: Vec::new(),
            regulated: Vec::new(),
        };
        supply.regulated = REGULATED
            .iter()
            .map(|(p, r, c)| {
                let fence = catalog::PROJECTS[project_index(p)].allowed;
                supply.capacity(Need::Linux as usize, fence, &[r], Some(c))
            })
            .collect();
        for need in 0..NEEDS {
            let mut p = Vec::new();
            let mut r = Vec::new();
            for catalog::ProjectDef {
                allowed: fence,
                residencies: options,
                ..
            } in catalog::PROJECTS
            {
                p.push(supply.capacity(need, fence, &[], None));
                r.push(
                    options
                        .iter()
                        .map(|o| supply.capacity(need, fence, o, None))
                        .collect(),
                );
            }
            supply.projects.push(p);
            supply.residencies.push(r);
        }
        supply
    }

    /// Cores of kind `need` in sites that `fence` and `residency` allow (and, with
    /// `strict`, whose operator they allow too, holding the certification).
    fn capacity(
        &self,
        need: usize,
        fence: &[&str],
        residency: &[&str],
        strict: Option<&str>,
    ) -> f64 {
        let ok = |j: &str| {
            (fence.is_empty() || api::jurisdiction::allows(fence, j))
                && (residency.is_empty() || api::jurisdiction::allows(residency, j))
        };
        self.sites
            .iter()
            .filter(|(j, op, certs, _)| {
                ok(j) && strict.is_none_or(|cert| ok(op) && certs.iter().any(|c| c == cert))
            })
            .map(|s| s.3[need])
            .sum()
    }
}

/// An index drawn in proportion to `weights` (uniformly when they are all zero).
fn weighted(rng: &mut StdRng, weights: &[f64]) -> usize {
    match rand::distributions::WeightedIndex::new(weights) {
        Ok(w) => w.sample(rng),
        Err(_) => rng.gen_range(0..weights.len()),
    }
}

fn expr(key: &str, operator: Operator, values: &[&str]) -> MatchExpression {
    MatchExpression::new(key, operator, values)
}

fn cpu(millis: u64) -> Cpu {
    Cpu::from_millis(millis)
}

fn mib(n: u64) -> Memory {
    Memory::from_mib(n)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("non-empty choice")
}

fn linux() -> Option<OsRequirement> {
    Some(OsRequirement {
        family: OsFamily::Linux,
        build: None,
        isolation: None,
    })
}

fn container(image: String, resources: Resources) -> Task {
    Task {
        driver: Driver::Container,
        command: Vec::new(),
        args: Vec::new(),
        env: BTreeMap::new(),
        working_dir: None,
        image: Some(image),
        disk: None,
        resources,
        os: linux(),
        arch: None,
        health: None,
        ..Default::default()
    }
}

fn exec(command: &[&str], resources: Resources) -> Task {
    Task {
        driver: Driver::Exec,
        command: command.iter().map(|s| s.to_string()).collect(),
        args: Vec::new(),
        env: BTreeMap::new(),
        working_dir: None,
        image: None,
        disk: None,
        resources,
        os: linux(),
        arch: None,
        health: None,
        ..Default::default()
    }
}

fn toleration(key: &str, value: Option<&str>, effect: TaintEffect) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: if value.is_some() {
            TolerationOperator::Equal
        } else {
            TolerationOperator::Exists
        },
        value: value.map(str::to_string),
        effect: Some(effect),
    }
}

fn gpu_toleration() -> Toleration {
    toleration("nvidia.com/gpu", None, TaintEffect::NoSchedule)
}

fn restart(policy: RestartPolicy) -> Option<Restart> {
    Some(match policy {
        RestartPolicy::OnFailure => Restart {
            policy,
            max_retries: Some(3),
            backoff: Some("30s".into()),
        },
        _ => Restart {
            policy,
            max_retries: None,
            backoff: None,
        },
    })
}

/// A residency within the project's allowed locations (empty: the project's fence),
/// in proportion to the capacity of kind `need` it allows.
fn residency(ctx: &mut Ctx<'_>, project: usize, need: Need) -> Vec<String> {
    let options = catalog::PROJECTS[project].residencies;
    let i = weighted(
        &mut ctx.rng,
        &ctx.supply.residencies[need as usize][project],
    );
    options[i].iter().map(|s| s.to_string()).collect()
}

fn project_index(name: &str) -> usize {
    catalog::PROJECTS
        .iter()
        .position(|p| p.name == name)
        .expect("a project of the catalogue")
}

/// A project, in proportion to the capacity of kind `need` its fence allows.
fn project(ctx: &mut Ctx<'_>, need: Need) -> usize {
    weighted(&mut ctx.rng, &ctx.supply.projects[need as usize])
}

fn classification(rng: &mut StdRng) -> Classification {
    *pick(
        rng,
        &[
            Classification::Public,
            Classification::Internal,
            Classification::Internal,
            Classification::Confidential,
            Classification::Personal,
        ],
    )
}

fn data(rng: &mut StdRng, residency: Vec<String>) -> Option<DataPolicy> {
    Some(DataPolicy {
        classification: classification(rng),
        residency,
        sovereignty: Sovereignty::Standard,
        location: None,
    })
}

/// Preferences services commonly state.
fn preferences(ctx: &mut Ctx<'_>, team: &str) -> Vec<Preference> {
    let mut out = Vec::new();
    let n = *pick(&mut ctx.rng, &[0, 0, 1, 1, 2]);
    let mut options: Vec<u8> = vec![0, 1, 2, 3];
    options.shuffle(&mut ctx.rng);
    for o in options.into_iter().take(n) {
        out.push(match o {
            0 => Preference {
                weight: 30,
                match_expressions: vec![expr("site.provider", Operator::In, &["onprem"])],
            },
            1 => Preference {
                weight: -50,
                match_expressions: vec![expr("lifecycle", Operator::In, &["spot"])],
            },
            2 => Preference {
                weight: 20,
                match_expressions: vec![expr(
                    "site.jurisdiction",
                    Operator::In,
                    catalog::LOW_CARBON,
                )],
            },
            _ => Preference {
                weight: 40,
                match_expressions: vec![expr("team", Operator::In, &[team])],
            },
        });
    }
    out
}

/// Required expressions services commonly state.
fn requirements(ctx: &mut Ctx<'_>) -> Vec<MatchExpression> {
    match ctx.rng.gen_range(0..10) {
        0 => vec![expr("site.provider", Operator::NotIn, &["aws"])],
        1 => vec![expr("tier", Operator::In, &["prod"])],
        2 => vec![expr(
            "site.labels.tier",
            Operator::NotIn,
            &["edge", "legacy"],
        )],
        _ => Vec::new(),
    }
}

fn zone_spread(rng: &mut StdRng, replicas: usize, p: f64) -> Option<Spread> {
    (replicas >= 3 && rng.gen_bool(p)).then(|| Spread {
        key: "site.zone".into(),
        max_skew: rng.gen_range(1..=2),
    })
}

struct Drafted {
    spec: ApiWorkloadSpec,
    project: usize,
    team: &'static str,
}

fn base(type_: WorkloadType, replicas: usize, task: Task) -> ApiWorkloadSpec {
    ApiWorkloadSpec {
        type_,
        replicas: replicas as i32,
        task,
        data: None,
        compliance: Vec::new(),
        placement: None,
        tolerations: Vec::new(),
        priority: 0,
        gang: None,
        queue: None,
        min_parallelism: None,
        restart: restart(match type_ {
            WorkloadType::Job => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }),
        update: None,
        paused: false,
        revision_history_limit: None,
        restarted_at: None,
        parallelism: None,
        backoff_limit: None,
        active_deadline: None,
        schedule: None,
        concurrency_policy: None,
        successful_jobs_history_limit: None,
        failed_jobs_history_limit: None,
    }
}

fn draft(ctx: &mut Ctx<'_>, t: Template, name: &str, replicas: usize) -> Drafted {
    let team = *pick(&mut ctx.rng, catalog::TEAMS);
    let need = t.need();
    let mut project = project(ctx, need);
    let rng = &mut ctx.rng;
    let spec = match t {
        Template::Web => {
            let res = Resources {
                cpu: cpu(*pick(rng, &[100, 250, 250, 500, 500, 1000])),
                memory: mib(*pick(rng, &[128, 256, 256, 512, 1024, 2048])),
                ephemeral_storage: None,
                gpu: None,
            };
            let mut task = container(
                format!(
                    "registry.example.com/{team}/{name}:1.{}",
                    rng.gen_range(0..40)
                ),
                res,
            );
            if rng.gen_bool(0.1) {
                task.os = None;
            }
            let mut s = base(WorkloadType::Service, replicas, task);
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            let anti = replicas <= 6 && rng.gen_bool(0.2);
            let spread = zone_spread(rng, replicas, 0.5);
            let strategy = if rng.gen_bool(0.8) {
                Strategy::Binpack
            } else {
                Strategy::Spread
            };
            s.priority = 50 * rng.gen_range(2..=20);
            if rng.gen_bool(0.25) {
                s.compliance.push("ISO27001".into());
            } else if rng.gen_bool(0.05) {
                s.compliance.push("SOC2".into());
            }
            if catalog::PROJECTS[project].name == "payments" && ctx.rng.gen_bool(0.5) {
                s.compliance.push("PCI-DSS".into());
            }
            if ctx.rng.gen_bool(0.1) {
                s.tolerations.push(Toleration {
                    key: Some("spot".into()),
                    operator: TolerationOperator::Exists,
                    value: None,
                    effect: Some(TaintEffect::PreferNoSchedule),
                });
            }
            s.placement = Some(Box::new(Placement {
                strategy,
                match_expressions: requirements(ctx),
                preferences: preferences(ctx, team),
                spread,
                anti_affinity: anti,
                topology: None,
            }));
            s
        }
        Template::Worker => {
            let res = Resources {
                cpu: cpu(*pick(rng, &[500, 1000, 2000])),
                memory: mib(*pick(rng, &[512, 1024, 2048, 4096])),
                ephemeral_storage: None,
                gpu: None,
            };
            let path = format!("/opt/{name}/bin/worker");
            let task = exec(&[&path, "--queue", team], res);
            let mut s = base(WorkloadType::Service, replicas, task);
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            s.priority = 50 * rng.gen_range(2..=12);
            let mut exprs = requirements(ctx);
            if ctx.rng.gen_bool(0.3) {
                exprs.push(expr(
                    "node.os.distro",
                    Operator::In,
                    &["rhel", "rocky", "ubuntu"],
                ));
            }
            let spread = zone_spread(&mut ctx.rng, replicas, 0.3);
            s.placement = Some(Box::new(Placement {
                strategy: Strategy::Binpack,
                match_expressions: exprs,
                preferences: preferences(ctx, team),
                spread,
                anti_affinity: false,
                topology: None,
            }));
            s
        }
        Template::Batch => {
            let res = Resources {
                cpu: cpu(*pick(rng, &[500, 1000, 1000, 2000, 4000])),
                memory: mib(1024 * *pick(rng, &[1, 2, 4, 8, 16])),
                ephemeral_storage: rng
                    .gen_bool(0.3)
                    .then(|| Memory::from_gib(rng.gen_range(10..=50))),
                gpu: None,
            };
            let task = if rng.gen_bool(0.5) {
                container(format!("registry.example.com/{team}/{name}:batch"), res)
            } else {
                exec(&["/usr/local/bin/run-shard"], res)
            };
            let mut s = base(WorkloadType::Job, replicas, task);
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            s.priority = rng.gen_range(0..=50);
            s.queue = Some("batch".into());
            if rng.gen_bool(0.4) {
                s.tolerations.push(toleration(
                    "dedicated",
                    Some("batch"),
                    TaintEffect::NoSchedule,
                ));
            }
            if rng.gen_bool(0.5) {
                s.tolerations.push(Toleration {
                    key: Some("spot".into()),
                    operator: TolerationOperator::Exists,
                    value: None,
                    effect: None,
                });
            }
            let strategy = if rng.gen_bool(0.5) {
                Strategy::Spread
            } else {
                Strategy::Binpack
            };
            let spread = rng.gen_bool(0.3).then(|| Spread {
                key: "site.name".into(),
                max_skew: rng.gen_range(4..=10),
            });
            if rng.gen_bool(0.15) {
                // Keep the work near its data: a site the residency allows.
                let fence = catalog::PROJECTS[project].allowed;
                let allowed: Vec<&str> = ctx
                    .fleet
                    .sites
                    .iter()
                    .filter(|site| {
                        let j = site.spec.jurisdiction.as_str();
                        (fence.is_empty() || api::jurisdiction::allows(fence, j))
                            && s.data.as_ref().is_none_or(|d| {
                                d.residency.is_empty() || api::jurisdiction::allows(&d.residency, j)
                            })
                    })
                    .map(|site| site.metadata.name.as_str())
                    .collect();
                if let Some(site) = allowed.choose(&mut ctx.rng)
                    && let Some(d) = s.data.as_mut()
                {
                    d.location = Some(site.to_string());
                }
            }
            s.placement = Some(Box::new(Placement {
                strategy,
                match_expressions: Vec::new(),
                preferences: Vec::new(),
                spread,
                anti_affinity: false,
                topology: None,
            }));
            s
        }
        Template::Windows => {
            let res = Resources {
                cpu: cpu(*pick(rng, &[250, 500, 1000, 2000])),
                memory: mib(1024 * *pick(rng, &[1, 2, 2, 4])),
                ephemeral_storage: None,
                gpu: None,
            };
            let task = if rng.gen_bool(0.7) {
                let (build, _, _) = *pick(
                    rng,
                    &[
                        catalog::WINDOWS_BUILDS[0],
                        catalog::WINDOWS_BUILDS[1],
                        catalog::WINDOWS_BUILDS[1],
                        catalog::WINDOWS_BUILDS[2],
                    ],
                );
                let tag = match build {
                    "10.0.17763" => "ltsc2019",
                    "10.0.20348" => "ltsc2022",
                    _ => "ltsc2025",
                };
                let isolation = if rng.gen_bool(0.75) {
                    Isolation::Process
                } else {
                    Isolation::Hyperv
                };
                let mut t = container(
                    format!(
                        "mcr.microsoft.com/dotnet/framework/aspnet:4.8-windowsservercore-{tag}"
                    ),
                    res,
                );
                t.os = Some(OsRequirement {
                    family: OsFamily::Windows,
                    build: Some(build.to_string()),
                    isolation: Some(isolation),
                });
                t
            } else {
                let mut t = exec(&["C:\\Program Files\\Example\\service.exe"], res);
                t.os = Some(OsRequirement {
                    family: OsFamily::Windows,
                    build: None,
                    isolation: None,
                });
                t
            };
            let job = rng.gen_bool(0.2);
            let mut s = base(
                if job {
                    WorkloadType::Job
                } else {
                    WorkloadType::Service
                },
                replicas,
                task,
            );
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            s.priority = if job {
                rng.gen_range(0..=50)
            } else {
                50 * rng.gen_range(2..=16)
            };
            if rng.gen_bool(0.6) {
                s.tolerations
                    .push(toleration("os", Some("windows"), TaintEffect::NoSchedule));
            }
            let anti = replicas <= 6 && rng.gen_bool(0.2);
            let spread = zone_spread(rng, replicas, 0.3);
            if rng.gen_bool(0.2) {
                s.compliance.push("ISO27001".into());
            }
            s.placement = Some(Box::new(Placement {
                strategy: Strategy::Binpack,
                match_expressions: requirements(ctx),
                preferences: preferences(ctx, team),
                spread,
                anti_affinity: anti,
                topology: None,
            }));
            s
        }
        Template::Arm => {
            let res = Resources {
                cpu: cpu(*pick(rng, &[250, 500, 1000, 2000])),
                memory: mib(*pick(rng, &[256, 512, 1024, 2048])),
                ephemeral_storage: None,
                gpu: None,
            };
            let mut task = container(format!("registry.example.com/{team}/{name}:arm64"), res);
            task.arch = Some(Arch::Arm64);
            let mut s = base(WorkloadType::Service, replicas, task);
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            s.priority = 50 * rng.gen_range(2..=12);
            let spread = zone_spread(rng, replicas, 0.5);
            s.placement = Some(Box::new(Placement {
                strategy: Strategy::Binpack,
                match_expressions: Vec::new(),
                preferences: preferences(ctx, team),
                spread,
                anti_affinity: false,
                topology: None,
            }));
            s
        }
        Template::Regulated => {
            let rng = &mut ctx.rng;
            let (p, residency, cert) = REGULATED[weighted(rng, &ctx.supply.regulated)];
            project = project_index(p);
            let res = Resources {
                cpu: cpu(*pick(rng, &[500, 1000, 2000, 4000])),
                memory: mib(1024 * *pick(rng, &[1, 2, 4, 8, 16])),
                ephemeral_storage: None,
                gpu: None,
            };
            let task = if rng.gen_bool(0.5) {
                exec(&["/opt/ledger/bin/ledger", "serve"], res)
            } else {
                container(format!("registry.example.com/{team}/{name}:signed"), res)
            };
            let mut s = base(WorkloadType::Service, replicas, task);
            s.data = Some(DataPolicy {
                classification: if rng.gen_bool(0.5) {
                    Classification::Regulated
                } else {
                    Classification::Personal
                },
                residency: vec![residency.to_string()],
                sovereignty: Sovereignty::Strict,
                location: None,
            });
            s.compliance.push(cert.to_string());
            s.priority = 50 * rng.gen_range(10..=18);
            let mut exprs = Vec::new();
            if rng.gen_bool(0.7) {
                exprs.push(expr(
                    "node.security.diskEncryption",
                    Operator::In,
                    &["true"],
                ));
            }
            if rng.gen_bool(0.3) {
                exprs.push(expr("node.security.secureBoot", Operator::In, &["true"]));
            }
            if rng.gen_bool(0.2) {
                exprs.push(expr("node.security.patchAgeDays", Operator::Lt, &["60"]));
            }
            let spread = zone_spread(rng, replicas, 0.3);
            s.placement = Some(Box::new(Placement {
                strategy: Strategy::Binpack,
                match_expressions: exprs,
                preferences: Vec::new(),
                spread,
                anti_affinity: false,
                topology: None,
            }));
            s
        }
        Template::Vm => {
            let res = Resources {
                cpu: cpu(1000 * *pick(rng, &[1, 2, 4])),
                memory: mib(1024 * *pick(rng, &[2, 4, 8, 16])),
                ephemeral_storage: Some(Memory::from_gib(rng.gen_range(50..=200))),
                gpu: None,
            };
            let task = Task {
                driver: Driver::Qemu,
                command: Vec::new(),
                args: Vec::new(),
                env: BTreeMap::new(),
                working_dir: None,
                image: None,
                disk: Some(Box::new(Disk {
                    image: format!("/var/lib/meridian/images/{name}.qcow2"),
                    format: DiskFormat::Qcow2,
                    kernel: None,
                    initrd: None,
                    cmdline: None,
                })),
                resources: res,
                os: None,
                arch: Some(Arch::Amd64),
                health: None,
                ..Default::default()
            };
            let mut s = base(WorkloadType::Vm, replicas, task);
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            s.priority = 50 * rng.gen_range(6..=10);
            if rng.gen_bool(0.5) {
                s.compliance.push("ISO27001".into());
            }
            s.placement = Some(Box::new(Placement {
                anti_affinity: replicas > 1 && rng.gen_bool(0.5),
                ..Placement::default()
            }));
            s
        }
        Template::GpuInfer | Template::GpuTrain => {
            let train = t == Template::GpuTrain;
            let wanted: &[&str] = if train {
                &["H100", "A100", "L40S"]
            } else {
                &["L4", "T4", "A10G", "L40S"]
            };
            // A model in proportion to the GPUs the fleet has of it.
            let present: Vec<(&String, &(u32, u32))> = ctx.gpus.iter().collect();
            let preferred: Vec<(&String, &(u32, u32))> = present
                .iter()
                .copied()
                .filter(|(m, _)| wanted.contains(&m.as_str()))
                .collect();
            let choices = if preferred.is_empty() {
                &present
            } else {
                &preferred
            };
            let (model, max) = choices
                .choose_weighted(rng, |(_, (_, total))| *total)
                .map(|(m, (max, _))| (Some((*m).clone()), *max))
                .unwrap_or((Some("L4".into()), 1));
            let count = if train {
                *pick(
                    rng,
                    &[1u32, 2, 4, 8]
                        .iter()
                        .copied()
                        .filter(|c| *c <= max)
                        .collect::<Vec<_>>(),
                )
            } else {
                1
            };
            let any_model = train && rng.gen_bool(0.2);
            let res = Resources {
                cpu: cpu(if train { 8000 * u64::from(count) } else { 4000 }),
                memory: Memory::from_gib(if train { 64 * u64::from(count) } else { 16 }),
                ephemeral_storage: None,
                gpu: Some(GpuRequest {
                    count: count.into(),
                    devices: Vec::new(),
                    model: if any_model { None } else { model },
                    memory: (any_model && rng.gen_bool(0.5)).then(|| Memory::from_gib(40)),
                }),
            };
            let task = if train {
                exec(&["/opt/venv/bin/torchrun", "train.py"], res)
            } else {
                container(format!("registry.example.com/{team}/{name}:cuda12"), res)
            };
            let mut s = base(
                if train {
                    WorkloadType::Job
                } else {
                    WorkloadType::Service
                },
                replicas,
                task,
            );
            if train {
                const TRAINING: &[&str] = &["research", "ml-platform", "data-platform"];
                let name = pick::<&str>(rng, TRAINING);
                project = project_index(name);
                s.queue = Some("gpu-training".into());
                s.priority = 200;
                if replicas >= 2 {
                    s.gang = Some(replicas as u32);
                }
            } else {
                s.priority = 300;
            }
            s.tolerations.push(gpu_toleration());
            let r = residency(ctx, project, need);
            let rng = &mut ctx.rng;
            s.data = data(rng, r);
            let spread = if train {
                None
            } else {
                zone_spread(rng, replicas, 0.3)
            };
            s.placement = Some(Box::new(Placement {
                strategy: Strategy::Binpack,
                match_expressions: Vec::new(),
                preferences: preferences(ctx, team),
                spread,
                anti_affinity: false,
                topology: None,
            }));
            s
        }
    };
    Drafted {
        spec,
        project,
        team,
    }
}

fn gpu_totals(fleet: &SimFleet) -> BTreeMap<String, (u32, u32)> {
    let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for n in &fleet.nodes {
        for g in &n.spec.capacity.gpus {
            let e = out.entry(g.model.clone()).or_default();
            e.0 = e.0.max(g.count);
            e.1 += g.count;
        }
    }
    out
}

fn generate(spec: &WorkloadSpec, fleet: &SimFleet) -> Vec<Workload> {
    let mut ctx = Ctx {
        rng: StdRng::seed_from_u64(spec.seed ^ 0x005E_ED0F_3041_0AD5),
        fleet,
        gpus: gpu_totals(fleet),
        supply: Supply::new(fleet),
    };
    // Pick templates by share of instances over mean replicas, so that the instance
    // shares come out as stated.
    let weights: Vec<f64> = Template::ALL
        .iter()
        .map(|t| {
            let (lo, hi) = t.replicas();
            f64::from(t.share()) / ((lo + hi) as f64 / 2.0)
        })
        .collect();
    let choose = rand::distributions::WeightedIndex::new(&weights).expect("positive weights");
    let mut out = Vec::new();
    let mut remaining = spec.instances;
    while remaining > 0 {
        let t = Template::ALL[choose.sample(&mut ctx.rng)];
        let (lo, hi) = t.replicas();
        let replicas = ctx.rng.gen_range(lo..=hi).min(remaining);
        remaining -= replicas;
        let name = format!("{}-{:05}", t.prefix(), out.len());
        let d = draft(&mut ctx, t, &name, replicas);
        let mut meta = ObjectMeta::named(name.clone());
        meta.namespace = Some(catalog::PROJECTS[d.project].name.to_string());
        meta.labels = [
            ("app".to_string(), name),
            ("team".to_string(), d.team.to_string()),
        ]
        .into_iter()
        .collect();
        out.push(Workload::new(meta, d.spec));
    }
    out
}
