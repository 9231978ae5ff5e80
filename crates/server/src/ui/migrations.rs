//! Migration plans (`meridian migrate`): the list across the projects the principal
//! sees (targets, mapping rules, waves and how far they got), and a plan's detail: its
//! limits, residency mapping and maintenance windows, its waves with their phases, and
//! the virtual machines of one wave with their source, size, planned target site, phase
//! and the Workload each runs as once migrated.

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use api::AnyObject;
use api::kinds::{MIGRATION_PLAN, VIRTUAL_MACHINE};
use api::migrate::{MigrationPlan, VirtualMachine};

use super::backend::{UiError, paths};
use super::page::{self, Nav, badge};
use super::session::Session;

const PAGE: usize = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    project: Option<String>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    wave: Option<u32>,
}

pub fn detail_href(ns: &str, name: &str) -> String {
    format!(
        "/ui/namespaces/{}/migrationplans/{}",
        paths::enc(ns),
        paths::enc(name)
    )
}

/// Waves per phase, as `3 Planned, 1 Running`; `not planned` before `migrate plan`.
fn progress(plan: &MigrationPlan) -> String {
    let waves = plan.status.as_ref().map(|s| &s.waves[..]).unwrap_or(&[]);
    if waves.is_empty() {
        return "not planned".to_owned();
    }
    let mut by_phase: BTreeMap<&str, usize> = BTreeMap::new();
    for w in waves {
        *by_phase
            .entry(w.phase.as_deref().unwrap_or("Unknown"))
            .or_default() += 1;
    }
    by_phase
        .iter()
        .map(|(phase, n)| format!("{n} {phase}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(plan: &MigrationPlan) -> Markup {
    let ns = plan.metadata.namespace.as_deref().unwrap_or_default();
    let name = &plan.metadata.name;
    let cells = api::table::row(&AnyObject::MigrationPlan(plan.clone()), false);
    let vms: usize = plan
        .status
        .as_ref()
        .map_or(0, |s| s.waves.iter().map(|w| w.vms.len()).sum());
    html! {
        tr data-key={ (ns) "/" (name) } {
            td { (ns) }
            th scope="row" { a href=(detail_href(ns, name)) { (name) } }
            @for cell in cells.iter().skip(1) { td { (cell) } }
            td { (vms) }
            td { (progress(plan)) }
        }
    }
}

pub async fn list(session: Session, Query(q): Query<ListQuery>) -> Result<Response, UiError> {
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let limit = PAGE.to_string();
    let path = format!(
        "{}{}",
        paths::object(MIGRATION_PLAN, project, None),
        paths::query(&[
            ("limit", Some(&limit)),
            ("continue", q.continue_.as_deref()),
        ])
    );
    let result: Result<api::List<MigrationPlan>, UiError> = session.api.get_as(&path).await;
    let (plans, next, error) = match result {
        Ok(p) => (
            p.items,
            p.metadata.continue_.filter(|c| !c.is_empty()),
            None,
        ),
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let columns = api::table::columns(MIGRATION_PLAN, false);
    let href = |c: Option<&str>| {
        format!(
            "/ui/migrations{}",
            paths::query(&[("project", project), ("continue", c)])
        )
    };
    let body = html! {
        h1 { "Migration plans" }
        p { "Virtual machines on their way off VMware: imported with " code { "meridian migrate import" }
            ", assessed, planned in waves that respect residency and target capacity, then converted and run with "
            code { "meridian migrate run" } "." }
        form.filters method="get" action="/ui/migrations" role="search" aria-label="Filter migration plans" {
            label for="project" { "Project" }
            input #project type="text" name="project" value=(project.unwrap_or_default());
            button type="submit" { "Filter" }
        }
        @if let Some(e) = &error { (page::inline_error(e)) }
        table.list.fixed {
            caption.visually-hidden { "Migration plans" }
            thead { tr {
                th scope="col" { "PROJECT" }
                @for c in &columns { th scope="col" { (c) } }
                th scope="col" { "VMS" }
                th scope="col" { "PROGRESS" }
            } }
            tbody { @for p in &plans { (row(p)) } }
        }
        @if plans.is_empty() && error.is_none() {
            p { "No migration plans. Import an RVTools export or OVF with "
                code { "meridian migrate import" } ", then " code { "meridian migrate plan --name NAME" } "." }
        }
        nav.pager aria-label="Pages" {
            @if q.continue_.is_some() { a href=(href(None)) { "First page" } }
            @if let Some(c) = &next { a href=(href(Some(c))) rel="next" { "Next page" } }
        }
    };
    Ok(page::document("Migration plans", Some(&session), Nav::Migrations, body).into_response())
}

fn vm_row(vm: &VirtualMachine, target: Option<&str>) -> Markup {
    let cells = api::table::row(&AnyObject::VirtualMachine(vm.clone()), true);
    let status = vm.status.clone().unwrap_or_default();
    let ns = vm.metadata.namespace.as_deref().unwrap_or_default();
    let source = [
        vm.spec.source.datacenter.as_deref(),
        vm.spec.source.folder.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    html! {
        tr {
            th scope="row" { (vm.spec.name) }
            td { (vm.metadata.name) }
            td { (cells.get(2).map_or("", String::as_str)) }
            td { (cells.get(3).map_or("", String::as_str)) }
            td { (cells.get(4).map_or("", String::as_str)) }
            td { (cells.get(5).map_or("", String::as_str)) }
            td { (source) }
            td { (target.unwrap_or("—")) }
            td { (badge(status.phase.as_deref().unwrap_or("Not migrated"))) }
            td {
                @if let Some(w) = &status.workload {
                    a href=(super::workloads::detail_href(ns, w)) { (w) }
                } @else { "—" }
            }
        }
    }
}

pub async fn detail(
    session: Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, UiError> {
    let plan: MigrationPlan = session
        .api
        .get_as(&paths::object(MIGRATION_PLAN, Some(&ns), Some(&name)))
        .await?;
    let spec = &plan.spec;
    let status = plan.status.clone().unwrap_or_default();
    let shown = q
        .wave
        .or_else(|| status.waves.first().map(|w| w.number))
        .and_then(|n| status.waves.iter().find(|w| w.number == n));
    let vms: Option<Result<Vec<VirtualMachine>, UiError>> = match shown {
        Some(_) => Some(
            session
                .api
                .list_all(&paths::object(VIRTUAL_MACHINE, Some(&ns), None))
                .await,
        ),
        None => None,
    };
    let limits = spec.waves.clone().unwrap_or_default();
    let or_any = |v: Option<String>| v.unwrap_or_else(|| "no limit".to_owned());
    let body = html! {
        nav aria-label="Breadcrumb" { a href="/ui/migrations" { "Migration plans" } " / " (ns) " / " }
        h1 { "Migration plan " (name) }
        section aria-labelledby="plan" {
            h2 #plan { "Plan" }
            (page::facts(&[
                ("Project", ns.clone()),
                ("Targets", if spec.targets.is_empty() { "every site the project may use".to_owned() } else { spec.targets.join(", ") }),
                ("Bandwidth", spec.bandwidth_mbps.map_or_else(|| "default (1000 Mbit/s)".to_owned(), |b| format!("{b} Mbit/s"))),
                ("VMs per wave", or_any(limits.max_vms.map(|v| v.to_string()))),
                ("Disk per wave", or_any(limits.max_disk_gib.map(|v| format!("{v} GiB")))),
                ("vCPUs per wave", or_any(limits.max_cpus.map(|v| v.to_string()))),
                ("Maintenance windows", if spec.maintenance_windows.is_empty() { "none".to_owned() } else {
                    spec.maintenance_windows.iter().map(|w| format!("{} for {}", w.start, w.duration)).collect::<Vec<_>>().join("; ") }),
                ("Progress", progress(&plan)),
            ]))
        }
        section aria-labelledby="mapping" {
            h2 #mapping { "Residency mapping" }
            @if spec.mapping.is_empty() {
                p { "No mapping rules: every VM keeps the project's defaults." }
            } @else {
                table.list {
                    caption.visually-hidden { "Mapping rules, first match wins" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Matches" } th scope="col" { "Classification" } th scope="col" { "Residency" } th scope="col" { "Project" } } }
                    tbody {
                        @for (i, rule) in spec.mapping.iter().enumerate() {
                            tr {
                                th scope="row" { (i + 1) }
                                td { (matches(&rule.match_)) }
                                td { (rule.classification.map_or_else(|| "—".to_owned(), |c| c.to_string())) }
                                td { (if rule.residency.is_empty() { "—".to_owned() } else { rule.residency.join(", ") }) }
                                td { (rule.project.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="waves" {
            h2 #waves { "Waves" }
            @if status.waves.is_empty() {
                p { "Not planned yet: " code { "meridian migrate plan --name " (name) " -n " (ns) } " records the waves here." }
            } @else {
                table.list {
                    caption.visually-hidden { "Waves" }
                    thead { tr { th scope="col" { "Wave" } th scope="col" { "VMs" } th scope="col" { "Phase" } } }
                    tbody {
                        @for w in &status.waves {
                            tr {
                                th scope="row" {
                                    a href={ (detail_href(&ns, &name)) "?wave=" (w.number) "#vms" }
                                      aria-current=[shown.is_some_and(|s| s.number == w.number).then_some("true")] {
                                        "Wave " (w.number)
                                    }
                                }
                                td { (w.vms.len()) }
                                td { (badge(w.phase.as_deref().unwrap_or("Unknown"))) }
                            }
                        }
                    }
                }
            }
        }
        @if let (Some(wave), Some(vms)) = (shown, &vms) {
            section aria-labelledby="vms" {
                h2 #vms { "Wave " (wave.number) ": virtual machines" }
                @match vms {
                    Err(e) => (page::inline_error(e)),
                    Ok(all) => {
                        @let by_name: BTreeMap<&str, &VirtualMachine> = all.iter().map(|v| (v.metadata.name.as_str(), v)).collect();
                        table.list {
                            caption.visually-hidden { "Virtual machines of wave " (wave.number) }
                            thead { tr {
                                th scope="col" { "Name" } th scope="col" { "Object" } th scope="col" { "vCPUs" }
                                th scope="col" { "Memory" } th scope="col" { "Disk" } th scope="col" { "Guest OS" }
                                th scope="col" { "Source" } th scope="col" { "Target site" }
                                th scope="col" { "Phase" } th scope="col" { "Runs as" }
                            } }
                            tbody {
                                @for vm in &wave.vms {
                                    @match by_name.get(vm.as_str()) {
                                        Some(v) => (vm_row(v, wave.sites.get(vm.as_str()).map(String::as_str))),
                                        None => tr { th scope="row" { (vm) } td colspan="9" { "not found: deleted or re-imported under another UUID" } },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::document(
        &format!("Migration plan {name}"),
        Some(&session),
        Nav::Migrations,
        body,
    )
    .into_response())
}

/// A mapping rule's conditions as text (`folder /Finance, tag app=payroll`).
fn matches(m: &api::migrate::VmMatch) -> String {
    let parts: Vec<String> = [
        ("folder", &m.folder),
        ("datacenter", &m.datacenter),
        ("cluster", &m.cluster),
        ("annotation", &m.annotation),
        ("tag", &m.tag),
        ("name", &m.name),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
    .collect();
    if parts.is_empty() {
        "every VM".to_owned()
    } else {
        parts.join(", ")
    }
}
