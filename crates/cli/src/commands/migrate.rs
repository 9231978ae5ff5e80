//! `meridian migrate import|assess|plan|run`: the `migrate` crate's steps with the
//! server's objects and endpoints around them. The decisions are the crate's (sources,
//! concerns, readiness, waves, conversion) and the placement engine's (`POST
//! /meridian/v1/plan`); this module fetches, writes and prints.
//!
//! The argument types live here, as `secret.rs`'s do: they are only parsed (no I/O).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt as _;
use serde_json::{Value, json};

use api::Site;
use api::explanation::{Decision, Outcome, Plan};
use api::kinds::{MIGRATION_PLAN, POLICY, SITE, VIRTUAL_MACHINE};
use api::migrate::{MigrationPlanSpec, VirtualMachine};
use client::{Client, ListOptions};
use migrate::assess::{self, VmAssessment};
use migrate::objects::{Change, change, to_object};
use migrate::waves;

use crate::config::Resolved;
use crate::exit::UserError;

/// `meridian migrate …`
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Import VMs from RVTools exports (XLSX, or a directory of its CSV files) and OVF/OVA
    /// files as VirtualMachine objects; re-importing updates them (the VM UUID is the identity)
    #[command(
        after_help = "Examples:\n  meridian migrate import RVTools_export.xlsx -n finance\n  meridian migrate import exports/csv/ appliance.ova --dry-run\n\nBad rows are reported with file, sheet, row and column; the rest imports. Exit code 1\nwhen any row or file was refused (after the summary of what was imported)."
    )]
    Import(ImportArgs),
    /// Assess imported VMs: concerns (the `migration` policy pack), readiness per target
    /// site from what-if placement, right-sizing and monthly cost
    #[command(
        after_help = "Examples:\n  meridian migrate assess -n finance\n  meridian migrate assess -n finance --target-site onprem-frankfurt --sizing performance -o csv\n  meridian migrate assess -n finance --plan wave-plan -o json"
    )]
    Assess(AssessArgs),
    /// Plan migration waves: dependency groups, capacity per wave, transfer and downtime
    /// estimates; table, JSON, CSV or a self-contained HTML report
    #[command(
        after_help = "Examples:\n  meridian migrate plan -n finance --plan q1-moves\n  meridian migrate plan -n finance --plan q1-moves --html report.html"
    )]
    Plan(PlanArgs),
    /// Convert one wave's disks to qcow2 (qemu-img, resumable) and run each VM as a `vm`
    /// Workload whose VirtualMachine status links to it
    #[command(
        after_help = "Example:\n  meridian migrate run q1-moves --wave 1 -n finance --source-dir /mnt/export --disk-dir /var/lib/meridian/disks"
    )]
    Run(RunArgs),
    /// Undo `migrate run` for one wave: delete the wave's `vm` Workloads, remove the
    /// converted disks (never the source disks) and reset the statuses so the wave can run
    /// again
    #[command(
        after_help = "Examples:\n  meridian migrate rollback q1-moves --wave 1 -n finance\n  meridian migrate rollback q1-moves --wave 1 -n finance --keep-disks\n\nIdempotent: rolling back a wave that is not (or no longer) run changes nothing."
    )]
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// RVTools .xlsx, RVTools .csv files or a directory of them, .ovf, .ova
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Import templates and SRM placeholders too
    #[arg(long)]
    pub include_templates: bool,
    /// OVF: the DeploymentOptionSection configuration (default: the descriptor's default)
    #[arg(long, value_name = "ID")]
    pub deployment_option: Option<String>,
    /// Read and report, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Writes in flight at once
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SizingMode {
    AsIs,
    Performance,
}

#[derive(Debug, Args)]
pub struct AssessArgs {
    /// Target site (repeatable; default: the plan's targets, else every site)
    #[arg(long = "target-site", value_name = "SITE")]
    pub target_sites: Vec<String>,
    /// MigrationPlan whose mapping rules, sizing and targets to use
    #[arg(long, value_name = "NAME")]
    pub plan: Option<String>,
    /// Right-sizing (default: the plan's, else as-is)
    #[arg(long, value_enum)]
    pub sizing: Option<SizingMode>,
    /// Headroom factor for performance sizing
    #[arg(long, value_name = "FACTOR")]
    pub comfort_factor: Option<f64>,
    /// Output: table, json or csv
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Format,
    /// Threads evaluating policies
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub assess: AssessArgs,
    /// Also write the self-contained HTML report to this file
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The MigrationPlan
    pub plan: String,
    /// Which wave (1-based)
    #[arg(long)]
    pub wave: u32,
    /// Where the VMs' source disk files are (an extracted OVA, a datastore copy)
    #[arg(long, value_name = "DIR")]
    pub source_dir: PathBuf,
    /// Where converted qcow2 disks go (as the target nodes see it; default: the plan's storagePath)
    #[arg(long, value_name = "DIR")]
    pub disk_dir: Option<PathBuf>,
    /// Convert only; create no Workload
    #[arg(long)]
    pub convert_only: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The MigrationPlan
    pub plan: String,
    /// Which wave (1-based)
    #[arg(long)]
    pub wave: u32,
    /// Keep the converted qcow2 disks (a later `migrate run` then reuses them)
    #[arg(long)]
    pub keep_disks: bool,
    /// Where `migrate run` put converted disks, if not the plan's storagePath (its
    /// leftovers are removed too: disks converted before an interrupted run)
    #[arg(long, value_name = "DIR")]
    pub disk_dir: Option<PathBuf>,
    /// How long to wait for the wave's VMs to stop
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = api::duration::parse_nonzero)]
    pub timeout: std::time::Duration,
}

pub(super) fn project(conn: &Resolved) -> String {
    conn.namespace.clone().unwrap_or_else(|| "default".into())
}

pub async fn migrate(client: &Client, conn: &Resolved, cmd: &MigrateCommand) -> Result<()> {
    match cmd {
        MigrateCommand::Import(a) => import(Some(client), conn, a).await,
        MigrateCommand::Assess(a) => assess_cmd(client, conn, a).await,
        MigrateCommand::Plan(a) => plan_cmd(client, conn, a).await,
        MigrateCommand::Run(a) => super::migrate_run::run(client, conn, a).await,
        MigrateCommand::Rollback(a) => super::migrate_run::rollback(client, conn, a).await,
    }
}

pub(super) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(10),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

pub async fn import(client: Option<&Client>, conn: &Resolved, args: &ImportArgs) -> Result<()> {
    let project = project(conn);
    let options = migrate::ImportOptions {
        include_templates: args.include_templates,
        deployment_option: args.deployment_option.clone(),
    };
    let files = args.files.clone();
    let started = std::time::Instant::now();
    let inventory = tokio::task::spawn_blocking(move || {
        let sources = migrate::sources_for(&files)?;
        Ok::<_, migrate::SourceError>(migrate::read_all(&sources, &options))
    })
    .await
    .context("the import worker stopped")?
    .map_err(|e| UserError::fail(e.to_string()))?;
    let read_in = started.elapsed();
    for issue in &inventory.issues {
        eprintln!("{issue}");
    }
    let refused = inventory.errors();
    let read: Vec<String> = inventory
        .read
        .iter()
        .map(|(sheet, rows)| format!("{sheet} {rows}"))
        .collect();
    eprintln!(
        "read {} VMs in {:.2}s ({}; {} templates/placeholders skipped{}; {} error(s), {} warning(s))",
        inventory.vms.len(),
        read_in.as_secs_f64(),
        read.join(", "),
        inventory.skipped_templates,
        if args.include_templates {
            ""
        } else {
            ", --include-templates keeps them"
        },
        refused,
        inventory.issues.len() - refused
    );
    let Some(client) = client.filter(|_| !args.dry_run) else {
        println!(
            "dry run: {} VirtualMachines would be written to project {project}",
            inventory.vms.len()
        );
        return finish(refused);
    };
    let existing: HashMap<String, Value> = client
        .list_all(VIRTUAL_MACHINE, Some(&project), &ListOptions::default())
        .await
        .with_context(|| format!("cannot list the VirtualMachines of project {project}"))?
        .into_iter()
        .map(|v| (crate::output::name_of(&v).to_string(), v))
        .collect();
    let changes: Vec<(String, Change)> = inventory
        .vms
        .iter()
        .map(|vm| {
            let object = to_object(vm, &project);
            let c = change(&object, existing.get(&object.metadata.name));
            (object.metadata.name, c)
        })
        .collect();
    let bar = progress(changes.len() as u64, "writing");
    let write_started = std::time::Instant::now();
    let project_ref = project.as_str();
    let results: Vec<(String, &'static str, Option<String>)> = futures::stream::iter(changes)
        .map(|(name, c)| {
            let bar = &bar;
            async move {
                let result = match &c {
                    Change::Create(v) => client
                        .create(VIRTUAL_MACHINE, Some(project_ref), v, false)
                        .await
                        .map(|_| "created"),
                    Change::Update(v) => client
                        .replace(VIRTUAL_MACHINE, Some(project_ref), &name, v)
                        .await
                        .map(|_| "updated"),
                    Change::Unchanged => Ok("unchanged"),
                };
                bar.inc(1);
                match result {
                    Ok(what) => (name, what, None),
                    Err(e) => (name, "failed", Some(e.to_string())),
                }
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (name, what, error) in &results {
        *counts.entry(what).or_default() += 1;
        if let Some(e) = error {
            eprintln!("VirtualMachine {project}/{name}: not written: {e}");
        }
    }
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    println!(
        "imported {} VMs into project {project} in {:.2}s: {} created, {} updated, {} unchanged, {} failed",
        results.len() - n("failed"),
        write_started.elapsed().as_secs_f64(),
        n("created"),
        n("updated"),
        n("unchanged"),
        n("failed")
    );
    finish(refused + n("failed"))
}

fn finish(errors: usize) -> Result<()> {
    if errors > 0 {
        Err(UserError::fail(format!(
            "{errors} row(s), file(s) or object(s) were refused (listed above); the rest was imported"
        )))
    } else {
        Ok(())
    }
}

/// Everything an assessment produces, for `assess` and `plan`.
struct Assessed {
    vms: Vec<VirtualMachine>,
    assessed: Vec<VmAssessment>,
    spec: MigrationPlanSpec,
    plan_name: Option<String>,
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v)
        .with_context(|| format!("the server's {what} is not what this client expects"))
}

async fn assessment(client: &Client, conn: &Resolved, args: &AssessArgs) -> Result<Assessed> {
    let project = project(conn);
    let spec: MigrationPlanSpec = match &args.plan {
        Some(name) => {
            let v = client
                .get(MIGRATION_PLAN, Some(&project), name)
                .await
                .with_context(|| format!("cannot read MigrationPlan {project}/{name}"))?;
            decode::<api::migrate::MigrationPlan>(v, "MigrationPlan")?.spec
        }
        None => MigrationPlanSpec::default(),
    };
    let mut sizing = spec.sizing.clone().unwrap_or_default();
    if let Some(mode) = args.sizing {
        sizing.mode = match mode {
            SizingMode::AsIs => "asIs".into(),
            SizingMode::Performance => "performance".into(),
        };
    }
    if let Some(c) = args.comfort_factor {
        sizing.comfort_factor = c;
    }
    let mut vms: Vec<VirtualMachine> = client
        .list_all(VIRTUAL_MACHINE, Some(&project), &ListOptions::default())
        .await?
        .into_iter()
        .map(|v| decode(v, "VirtualMachine"))
        .collect::<Result<_>>()?;
    if !spec.vms.is_empty() {
        vms.retain(|v| spec.vms.contains(&v.metadata.name));
    }
    if vms.is_empty() {
        return Err(UserError::fail(format!(
            "project {project} has no VirtualMachines to assess: run `meridian migrate import FILE -n {project}` first"
        )));
    }
    let sites: Vec<Site> = client
        .list_all(SITE, None, &ListOptions::default())
        .await?
        .into_iter()
        .map(|v| decode(v, "Site"))
        .collect::<Result<_>>()?;
    let wanted: Vec<String> = if !args.target_sites.is_empty() {
        args.target_sites.clone()
    } else {
        spec.targets.clone()
    };
    let targets: Vec<Site> = if wanted.is_empty() {
        sites
    } else {
        let mut out = Vec::new();
        for w in &wanted {
            match sites.iter().find(|s| &s.metadata.name == w) {
                Some(s) => out.push(s.clone()),
                None => {
                    return Err(UserError::fail(format!(
                        "target site {w:?} does not exist (see `meridian get sites`)"
                    )));
                }
            }
        }
        out
    };
    // Installed migration policies (maybe edited) win over the built-in pack.
    let installed: Vec<api::Policy> = client
        .list_all(
            POLICY,
            None,
            &ListOptions {
                label_selector: Some(format!("{}=migration", policy::packs::PACK_LABEL)),
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .map(|v| decode(v, "Policy"))
        .collect::<Result<_>>()?;
    let values: Vec<Value> = vms
        .iter()
        .map(|v| serde_json::to_value(v).expect("objects serialize"))
        .collect();
    let threads = args.threads;
    let (found, evaluations, errors, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let (set, categories) = if installed.is_empty() {
            assess::builtin_policies()
        } else {
            assess::policies(&installed)
        };
        let (found, evaluations, errors) = assess::concerns(&values, &set, &categories, threads);
        (found, evaluations, errors, started.elapsed())
    })
    .await?;
    for e in &errors {
        eprintln!("policy error: {e}");
    }
    eprintln!(
        "concerns: {evaluations} policy evaluations over {} VMs in {:.2}s",
        vms.len(),
        took.as_secs_f64()
    );
    let mapped: Vec<assess::Mapped> = vms
        .iter()
        .map(|v| assess::map(&v.spec, &spec.mapping))
        .collect();
    let sizes: Vec<assess::Size> = vms.iter().map(|v| assess::size(&v.spec, &sizing)).collect();
    let projects: Vec<String> = mapped
        .iter()
        .map(|m| m.project.clone().unwrap_or_else(|| project.clone()))
        .collect();
    // What-if placement, with the data policy, then without it for the refused ones.
    let mut workloads = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        for (t, site) in targets.iter().enumerate() {
            workloads.push(assess::whatif_workload(
                vm,
                &projects[i],
                &sizes[i],
                &mapped[i],
                (t, &site.metadata.name),
                false,
            ));
        }
    }
    // Chained: each body holds what the earlier ones placed, so every target's free room
    // is counted once over all VMs (as if the estate moved there).
    let mut held = assess::Held::default();
    let mut decisions = whatif(client, &workloads, &mut held).await?;
    let refused: std::collections::HashSet<(String, String)> = decisions
        .iter()
        .filter(|d| matches!(d.outcome, Outcome::Unplaceable(_)))
        .map(|d| (d.workload.namespace.clone(), d.workload.name.clone()))
        .collect();
    let mut bare = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        for (t, site) in targets.iter().enumerate() {
            let name = assess::whatif_name(&vm.metadata.name, t, false);
            if refused.contains(&(projects[i].clone(), name)) {
                bare.push(assess::whatif_workload(
                    vm,
                    &projects[i],
                    &sizes[i],
                    &mapped[i],
                    (t, &site.metadata.name),
                    true,
                ));
            }
        }
    }
    if !bare.is_empty() {
        // After everything placed with its data policy; what these place is not kept.
        decisions.extend(whatif(client, &bare, &mut held.clone()).await?);
    }
    let assessed = assess::assess(&assess::Inputs {
        vms: &vms,
        concerns: found,
        sizes: &sizes,
        mapped: &mapped,
        projects: &projects,
        targets: &targets,
        decisions: &decisions,
    });
    Ok(Assessed {
        vms,
        assessed,
        spec,
        plan_name: args.plan.clone(),
    })
}

/// Most workloads in one what-if body (the server's request size limit stays untouched).
const WHATIF_BODY: usize = 500;

/// The server's what-if placement, in bodies of at most [`WHATIF_BODY`] workloads, each
/// carrying what `held` holds (`reserved`) and adding what it placed: later bodies see
/// the room earlier ones used.
async fn whatif(
    client: &Client,
    workloads: &[api::Workload],
    held: &mut assess::Held,
) -> Result<Vec<Decision>> {
    let mut out = Vec::new();
    let bar = progress(workloads.len() as u64, "what-if placement");
    for chunk in workloads.chunks(WHATIF_BODY) {
        let body = json!({"items": chunk, "reserved": held.reservations()});
        let answer = client
            .request_json(client::Method::POST, "/meridian/v1/plan", Some(&body))
            .await
            .context("the server's what-if placement (POST /meridian/v1/plan) failed")?;
        let plan: Plan = decode(answer, "plan")?;
        held.add(&plan.decisions);
        out.extend(plan.decisions);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The plan's own placement: each VM placed at one target only, chained over all VMs
/// (the assessment counted each target as if the whole estate moved there, so a VM took
/// room at every target). Round `r` tries each VM not placed yet at its `r`-th ranked
/// target, holding everything placed in earlier rounds: most VMs land at their best
/// target, the rest where room is left. The assessment then keeps only that placement.
async fn place_plan(client: &Client, a: &mut Assessed) -> Result<()> {
    let ranked: Vec<Vec<usize>> = a.assessed.iter().map(|v| v.ranked_targets()).collect();
    let rounds = ranked.iter().map(Vec::len).max().unwrap_or(0);
    let mut placed: Vec<Option<(usize, String)>> = vec![None; a.assessed.len()];
    let mut held = assess::Held::default();
    for round in 0..rounds {
        let mut workloads = Vec::new();
        let mut asked = Vec::new();
        for (i, v) in a.assessed.iter().enumerate() {
            let Some(&t) = ranked[i].get(round).filter(|_| placed[i].is_none()) else {
                continue;
            };
            workloads.push(assess::whatif_workload(
                &a.vms[i],
                &v.project,
                &v.size,
                &v.mapped,
                (t, &v.targets[t].site),
                false,
            ));
            asked.push((i, t, assess::whatif_name(&a.vms[i].metadata.name, t, false)));
        }
        if workloads.is_empty() {
            break;
        }
        let decisions = whatif(client, &workloads, &mut held).await?;
        let nodes: HashMap<(&str, &str), &str> = decisions
            .iter()
            .filter_map(|d| {
                Some((
                    (d.workload.namespace.as_str(), d.workload.name.as_str()),
                    d.node()?,
                ))
            })
            .collect();
        for (i, t, name) in asked {
            if let Some(node) = nodes.get(&(a.assessed[i].project.as_str(), name.as_str())) {
                placed[i] = Some((t, (*node).to_string()));
            }
        }
    }
    for (v, p) in a.assessed.iter_mut().zip(placed) {
        v.settle(p);
    }
    Ok(())
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |c| format!("{c:.2}"))
}

async fn assess_cmd(client: &Client, conn: &Resolved, args: &AssessArgs) -> Result<()> {
    let a = assessment(client, conn, args).await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&a.assessed)?),
        Format::Csv => {
            println!("vm,name,site,readiness,cpus,memoryMiB,monthlyCost,monthlyCostAsIs,reasons");
            for v in &a.assessed {
                for t in &v.targets {
                    println!(
                        "{},{},{},{},{},{},{},{},{}",
                        v.vm,
                        waves::csv_field(&v.name),
                        waves::csv_field(&t.site),
                        t.readiness.as_str(),
                        v.size.cpus,
                        v.size.memory_mib,
                        money(t.monthly_cost),
                        money(t.monthly_cost_as_is),
                        waves::csv_field(&t.reasons.join("; "))
                    );
                }
            }
        }
        Format::Table | Format::Html => {
            let headers: Vec<String> = [
                "VM",
                "SITE",
                "READINESS",
                "CPUS",
                "MEMORY",
                "MONTHLY",
                "REASONS",
            ]
            .iter()
            .map(ToString::to_string)
            .collect();
            let mut rows = Vec::new();
            for v in &a.assessed {
                for t in &v.targets {
                    rows.push(vec![
                        v.name.clone(),
                        t.site.clone(),
                        t.readiness.as_str().to_string(),
                        v.size.cpus.to_string(),
                        format!("{}Mi", v.size.memory_mib),
                        money(t.monthly_cost),
                        first_reason(&t.reasons),
                    ]);
                }
            }
            print!("{}", crate::output::table(&headers, &rows, false));
            let summary: Vec<String> = assess::summary(&a.assessed)
                .into_iter()
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            eprintln!("best target per VM: {}", summary.join(", "));
        }
    }
    Ok(())
}

fn first_reason(reasons: &[String]) -> String {
    match reasons {
        [] => "-".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
    }
}

async fn plan_cmd(client: &Client, conn: &Resolved, args: &PlanArgs) -> Result<()> {
    let mut a = assessment(client, conn, &args.assess).await?;
    place_plan(client, &mut a).await?;
    let plan = waves::plan(&a.vms, &a.assessed, &a.spec);
    let title = format!(
        "Migration plan {} (project {})",
        a.plan_name.as_deref().unwrap_or("(unsaved)"),
        project(conn)
    );
    if let Some(path) = &args.html {
        std::fs::write(path, waves::html(&title, &a.assessed, &plan))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    match args.assess.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Format::Csv => print!("{}", waves::csv(&plan)),
        Format::Html => print!("{}", waves::html(&title, &a.assessed, &plan)),
        Format::Table => {
            let headers: Vec<String> =
                ["WAVE", "VMS", "DISK", "CPUS", "TRANSFER", "WINDOW", "NOTES"]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
            let rows: Vec<Vec<String>> = plan
                .waves
                .iter()
                .map(|w| {
                    vec![
                        w.number.to_string(),
                        w.vms.len().to_string(),
                        format!("{}Gi", w.disk_mib.div_ceil(1024)),
                        w.cpus.to_string(),
                        waves::hours(w.transfer_secs),
                        w.window.clone().unwrap_or_else(|| "-".into()),
                        if w.notes.is_empty() {
                            "-".into()
                        } else {
                            w.notes.join("; ")
                        },
                    ]
                })
                .collect();
            print!("{}", crate::output::table(&headers, &rows, false));
            if !plan.excluded.is_empty() {
                eprintln!(
                    "{} VM(s) are in no wave (Not ready or Unknown; -o json lists why)",
                    plan.excluded.len()
                );
            }
        }
    }
    if let Some(name) = &a.plan_name {
        // Record the waves on the plan's status.
        let project = project(conn);
        let mut current = client.get(MIGRATION_PLAN, Some(&project), name).await?;
        current["status"] = json!({"waves": plan.waves.iter().map(|w| json!({
            "number": w.number,
            "vms": w.vms.iter().map(|v| v.vm.clone()).collect::<Vec<_>>(),
            "sites": w.vms.iter().map(|v| (v.vm.clone(), v.site.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "phase": "Planned",
        })).collect::<Vec<_>>()});
        client
            .replace_status(MIGRATION_PLAN, Some(&project), name, &current)
            .await
            .with_context(|| {
                format!("cannot record the waves on MigrationPlan {project}/{name}")
            })?;
    }
    Ok(())
}
