//! Workloads: the list (filters by project, label selector and phase; pages with the
//! API's continue tokens), a workload's detail (instances, rollout, events and, while
//! instances wait, the scheduler's explanation), and an instance's detail with its logs.

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use api::explanation::{Explained, Explanation};
use api::kinds::{ALLOCATION, EVENT, PROJECT, WORKLOAD};
use api::{Allocation, AnyObject, Event, Project, Workload};

use super::backend::{UiError, paths};
use super::page::{self, Nav, badge};
use super::session::Session;
use crate::rollout::reason;

/// Rows per page unless the query asks otherwise (at most [`MAX_PAGE`]).
const PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// API pages read for one console page when a phase filter leaves rows out.
const MAX_SCANNED_PAGES: usize = 20;

/// Phases the list filters by, derived from the status the scheduler writes.
pub const PHASES: &[&str] = &[
    "Running",
    "Progressing",
    "Waiting",
    "Complete",
    "Failed",
    "Stopped",
];

/// A workload's phase for people: `Waiting` while instances are not placed.
pub fn phase(w: &Workload) -> &'static str {
    let Some(s) = &w.status else {
        return "Waiting";
    };
    let is_true = |t: &str| {
        s.condition(t)
            .is_some_and(|c| c.status == api::kinds::ConditionStatus::True)
    };
    if is_true(reason::FAILED) {
        "Failed"
    } else if is_true(reason::COMPLETE) {
        "Complete"
    } else if s.desired_replicas == 0 && w.spec.replicas == 0 {
        "Stopped"
    } else if s.placed_replicas < s.desired_replicas {
        "Waiting"
    } else if s.ready_replicas >= s.desired_replicas && !is_true(reason::PROGRESSING) {
        "Running"
    } else if s.ready_replicas >= s.desired_replicas {
        // Progressing=True with every replica ready: a finished rollout reports
        // Progressing with reason NewRevisionAvailable, as Kubernetes does.
        let done = s
            .condition(reason::PROGRESSING)
            .and_then(|c| c.reason.as_deref())
            .is_some_and(|r| r == reason::NEW_REVISION_AVAILABLE);
        if done { "Running" } else { "Progressing" }
    } else {
        "Progressing"
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    project: Option<String>,
    label: Option<String>,
    phase: Option<String>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
    limit: Option<usize>,
}

/// The list's columns after NAME: `meridian get workloads`'s.
fn columns() -> Vec<&'static str> {
    api::table::columns(WORKLOAD, false)
        .into_iter()
        .skip(1)
        .collect()
}

/// One row of the list; also what live updates replace a row with.
pub fn row(w: &Workload) -> Markup {
    let ns = w.metadata.namespace.as_deref().unwrap_or_default();
    let name = &w.metadata.name;
    let cells = api::table::row(&AnyObject::Workload(w.clone()), false);
    html! {
        tr data-key={ (ns) "/" (name) } {
            th scope="row" { a href=(detail_href(ns, name)) { (name) } }
            td { (ns) }
            td { (badge(phase(w))) }
            @for cell in cells.iter().skip(1) { td { (cell) } }
        }
    }
}

pub fn detail_href(ns: &str, name: &str) -> String {
    format!(
        "/ui/namespaces/{}/workloads/{}",
        paths::enc(ns),
        paths::enc(name)
    )
}

pub fn instance_href(ns: &str, name: &str) -> String {
    format!(
        "/ui/namespaces/{}/allocations/{}",
        paths::enc(ns),
        paths::enc(name)
    )
}

pub async fn list(session: Session, Query(q): Query<ListQuery>) -> Result<Response, UiError> {
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let label = q.label.as_deref().map(str::trim).filter(|l| !l.is_empty());
    let wanted_phase = q.phase.as_deref().filter(|p| PHASES.contains(p));
    let projects: Vec<Project> = session
        .api
        .list_all(&paths::object(PROJECT, None, None))
        .await
        .unwrap_or_default();
    let base = paths::object(WORKLOAD, project, None);
    let mut rows: Vec<Workload> = Vec::new();
    let mut next = q.continue_.clone().filter(|c| !c.is_empty());
    let mut revision = None;
    let mut error = None;
    let mut scanned = 0usize;
    for _ in 0..MAX_SCANNED_PAGES {
        let limit_text = limit.to_string();
        let path = format!(
            "{base}{}",
            paths::query(&[
                ("limit", Some(&limit_text)),
                ("labelSelector", label),
                ("continue", next.as_deref()),
            ])
        );
        let page: api::List<Workload> = match session.api.get_as(&path).await {
            Ok(p) => p,
            Err(e) => {
                error = Some(e);
                next = None;
                break;
            }
        };
        revision = revision.or(page.metadata.resource_version.clone());
        scanned += page.items.len();
        rows.extend(
            page.items
                .into_iter()
                .filter(|w| wanted_phase.is_none_or(|p| phase(w) == p)),
        );
        next = page.metadata.continue_.filter(|c| !c.is_empty());
        if next.is_none() || rows.len() >= limit || wanted_phase.is_none() {
            break;
        }
    }
    let filters_query = |c: Option<&str>| {
        let limit_text = (limit != PAGE).then(|| limit.to_string());
        format!(
            "/ui/workloads{}",
            paths::query(&[
                ("project", project),
                ("label", label),
                ("phase", wanted_phase),
                ("limit", limit_text.as_deref()),
                ("continue", c),
            ])
        )
    };
    let live = format!(
        "/ui/live/workloads{}",
        paths::query(&[("project", project), ("rv", revision.as_deref()),])
    );
    let body = html! {
        h1 { "Workloads" }
        form.filters method="get" action="/ui/workloads" role="search" aria-label="Filter workloads" {
            label for="f-project" { "Project" }
            select #f-project name="project" {
                option value="" { "All projects" }
                @for p in &projects {
                    @let n = p.metadata.name.as_str();
                    option value=(n) selected[project == Some(n)] { (n) }
                }
            }
            label for="f-label" { "Labels" }
            input #f-label type="text" name="label" value=(label.unwrap_or_default()) placeholder="app=web,tier!=db" aria-describedby="f-label-help";
            label for="f-phase" { "Phase" }
            select #f-phase name="phase" {
                option value="" { "Any phase" }
                @for p in PHASES {
                    option value=(p) selected[wanted_phase == Some(*p)] { (p) }
                }
            }
            button type="submit" { "Filter" }
            small #f-label-help { "Label selector, as kubectl -l: key=value, key!=value, key in (a,b), key" }
        }
        @if let Some(e) = &error { (page::inline_error(e)) }
        p.live-status aria-live="polite" data-live-status {}
        table.list.fixed {
            caption.visually-hidden { "Workloads" }
            thead { tr {
                th scope="col" { "NAME" } th scope="col" { "PROJECT" } th scope="col" { "PHASE" }
                @for c in columns() { th scope="col" { (c) } }
            } }
            tbody data-live=(live) {
                @for w in &rows { (row(w)) }
            }
        }
        @if rows.is_empty() && error.is_none() && next.is_none() { p { "No workloads match." } }
        @if wanted_phase.is_some() && rows.len() < limit && next.is_some() {
            p { (rows.len()) " matches among the " (scanned) " workloads read for this page; the next page reads on." }
        }
        nav.pager aria-label="Pages" {
            @if q.continue_.as_deref().is_some_and(|c| !c.is_empty()) {
                a href=(filters_query(None)) { "First page" }
            }
            @if let Some(c) = &next {
                a href=(filters_query(Some(c))) rel="next" { "Next page" }
            }
        }
    };
    Ok(page::document("Workloads", Some(&session), Nav::Workloads, body).into_response())
}

/// One row of a workload's instances; also what live updates replace a row with.
pub fn instance_row(a: &Allocation) -> Markup {
    let ns = a.metadata.namespace.as_deref().unwrap_or_default();
    let name = &a.metadata.name;
    let cells = api::table::row(&AnyObject::Allocation(a.clone()), true);
    html! {
        tr data-key={ (ns) "/" (name) } {
            th scope="row" { a href=(instance_href(ns, name)) { (name) } }
            @for (i, cell) in cells.iter().enumerate().skip(1) {
                @if i == 2 {
                    td { a href={ "/ui/nodes/" (paths::enc(cell)) } { (cell) } }
                } @else if i == 4 {
                    td { (badge(cell)) }
                } @else {
                    td { (cell) }
                }
            }
        }
    }
}

fn instances_table(allocations: &[Allocation], live: Option<&str>) -> Markup {
    let columns = api::table::columns(ALLOCATION, true);
    html! {
        table.list.fixed {
            caption.visually-hidden { "Instances" }
            thead { tr { @for c in &columns { th scope="col" { (c) } } } }
            tbody data-live=[live] {
                @for a in allocations { (instance_row(a)) }
            }
        }
    }
}

fn events_table(events: &[Event]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No events." }
        } @else {
            table.list {
                caption.visually-hidden { "Events" }
                thead { tr { th scope="col" { "LAST SEEN" } th scope="col" { "TYPE" } th scope="col" { "REASON" } th scope="col" { "COUNT" } th scope="col" { "MESSAGE" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (page::age(e.last_timestamp.as_deref().or(e.first_timestamp.as_deref()))) }
                            td { (e.type_.as_str()) }
                            td { (e.reason) }
                            td { (e.count) }
                            td { (e.message) }
                        }
                    }
                }
            }
        }
    }
}

/// A reason's wire name (`residency`, `capacity`), as `meridian explain` shows it.
fn reason_name(reason: api::explanation::ReasonCode) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// The scheduler's explanation: reasons with node counts, top candidates, and the
/// smallest change that would fit.
pub fn explanation(e: &Explanation) -> Markup {
    html! {
        p { strong { (e.summary) } }
        p { (e.passed) " of " (e.nodes) " nodes pass every rule." }
        @if !e.rejections.is_empty() {
            h3 { "Why nodes were rejected" }
            table.list {
                caption.visually-hidden { "Rejections by reason" }
                thead { tr { th scope="col" { "Reason" } th scope="col" { "Nodes" } th scope="col" { "Detail" } } }
                tbody {
                    @for r in &e.rejections {
                        tr { td { (reason_name(r.reason)) } td { (r.nodes) } td { (r.message) } }
                    }
                }
            }
        }
        @if !e.candidates.is_empty() {
            h3 { "Top candidates" }
            table.list {
                caption.visually-hidden { "Top candidates" }
                thead { tr { th scope="col" { "Node" } th scope="col" { "Site" } th scope="col" { "Score" } } }
                tbody {
                    @for c in &e.candidates {
                        tr {
                            td { a href={ "/ui/nodes/" (paths::enc(&c.node)) } { (c.node) } }
                            td { (c.site) }
                            td { (format!("{:.1}", c.score.total)) }
                        }
                    }
                }
            }
        }
        @if !e.suggestions.is_empty() {
            h3 { "Smallest change that would fit" }
            ul {
                @for s in &e.suggestions {
                    li { (s.message) " (" (s.nodes) " " (if s.nodes == 1 { "node" } else { "nodes" }) ")" }
                }
            }
        }
    }
}

pub async fn detail(
    session: Session,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let w: Workload = session
        .api
        .get_as(&paths::object(WORKLOAD, Some(&ns), Some(&name)))
        .await?;
    let selector = format!("spec.workload={name}");
    let alloc_path = format!(
        "{}{}",
        paths::object(ALLOCATION, Some(&ns), None),
        paths::query(&[("fieldSelector", Some(&selector))])
    );
    let allocations: api::List<Allocation> = session.api.get_as(&alloc_path).await?;
    let event_selector = format!("involvedObject.kind=Workload,involvedObject.name={name}");
    let events: Result<Vec<Event>, UiError> = session
        .api
        .list_all(&format!(
            "{}{}",
            paths::object(EVENT, Some(&ns), None),
            paths::query(&[("fieldSelector", Some(&event_selector))])
        ))
        .await;
    let current = phase(&w);
    let explained: Option<Result<Explained, UiError>> = if current == "Waiting" {
        Some(
            session
                .api
                .get_as(&format!(
                    "{}/explain",
                    paths::object(WORKLOAD, Some(&ns), Some(&name))
                ))
                .await,
        )
    } else {
        None
    };
    let live = format!(
        "/ui/live/allocations{}",
        paths::query(&[
            ("project", Some(&ns)),
            ("workload", Some(&name)),
            ("rv", allocations.metadata.resource_version.as_deref()),
        ])
    );
    let status = w.status.clone().unwrap_or_default();
    let task = &w.spec.task;
    let data = w.spec.data.clone().unwrap_or_default();
    let body = html! {
        nav aria-label="Breadcrumb" { a href="/ui/workloads" { "Workloads" } " / " (ns) " / " }
        h1 { (name) " " (badge(current)) }
        (super::workload_actions::actions(&session, &w))
        section aria-labelledby="spec" {
            h2 #spec { "Specification" }
            (page::facts(&[
                ("Project", ns.clone()),
                ("Type", w.spec.type_.to_string()),
                ("Replicas", w.spec.replicas.to_string()),
                ("Driver", task.driver.to_string()),
                ("Resources", format!("cpu {}, memory {}", task.resources.cpu, task.resources.memory)),
                ("Data", format!("{} · residency {} · sovereignty {}", data.classification, if data.residency.is_empty() { "any".to_owned() } else { data.residency.join(", ") }, data.sovereignty)),
                ("Priority", w.spec.priority.to_string()),
                ("Labels", if w.metadata.labels.is_empty() { "—".to_owned() } else { w.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ") }),
                ("Created", w.metadata.creation_timestamp.clone().unwrap_or_default()),
            ]))
        }
        section aria-labelledby="rollout" {
            h2 #rollout { "Rollout" }
            (page::facts(&[
                ("Desired", status.desired_replicas.to_string()),
                ("Placed", status.placed_replicas.to_string()),
                ("Ready", status.ready_replicas.to_string()),
                ("Up to date", status.updated_replicas.to_string()),
                ("Available", status.available_replicas.to_string()),
                ("Revision", format!("current {} · update {}", status.current_revision.map_or("—".to_owned(), |r| r.to_string()), status.update_revision.map_or("—".to_owned(), |r| r.to_string()))),
                ("Paused", if w.spec.paused { "yes".to_owned() } else { "no".to_owned() }),
            ]))
            @if let Some(m) = &status.message { p { (m) } }
            @if !status.conditions.is_empty() {
                table.list {
                    caption.visually-hidden { "Conditions" }
                    thead { tr { th scope="col" { "Condition" } th scope="col" { "Status" } th scope="col" { "Reason" } th scope="col" { "Message" } } }
                    tbody {
                        @for c in &status.conditions {
                            tr { td { (c.type_) } td { (c.status.as_str()) } td { (c.reason.as_deref().unwrap_or("")) } td { (c.message.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        }
        @if let Some(explained) = &explained {
            section.explain aria-labelledby="why" {
                h2 #why { "Why it waits" }
                @if let Some(qs) = &status.queue {
                    p.queue {
                        "Queue " a href={ "/ui/queues/" (paths::enc(&qs.name)) } { (qs.name) }
                        @if let Some(pos) = qs.position { ": position " (pos) " (jobs ahead of it: " (pos) ")" }
                        @if let Some(r) = qs.reason { ", " (r) }
                        @if let Some(m) = &qs.message { " — " (m) }
                    }
                }
                @match explained {
                    Ok(x) => (explanation(&x.explanation)),
                    Err(e) => (page::inline_error(e)),
                }
            }
        }
        section aria-labelledby="instances" {
            h2 #instances { "Instances" }
            p.live-status aria-live="polite" data-live-status {}
            (instances_table(&allocations.items, Some(&live)))
            @if allocations.items.is_empty() { p { "No instances." } }
        }
        section aria-labelledby="events" {
            h2 #events { "Events" }
            @match &events {
                Ok(ev) => (events_table(ev)),
                Err(e) => (page::inline_error(e)),
            }
        }
    };
    Ok(page::document(&name, Some(&session), Nav::Workloads, body).into_response())
}

pub async fn instance(
    session: Session,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let a: Allocation = session
        .api
        .get_as(&paths::object(ALLOCATION, Some(&ns), Some(&name)))
        .await?;
    let status = a.status.clone();
    let log_url = format!("{}/log", instance_href(&ns, &name));
    let body = html! {
        nav aria-label="Breadcrumb" {
            a href="/ui/workloads" { "Workloads" } " / " (ns) " / "
            a href=(detail_href(&ns, &a.spec.workload)) { (a.spec.workload) } " / "
        }
        h1 { (name) " " (badge(status.as_ref().map_or("pending", |s| s.phase.as_str()))) }
        (page::facts(&[
            ("Workload", a.spec.workload.clone()),
            ("Node", a.spec.node.clone()),
            ("Site", a.spec.site.clone().unwrap_or_default()),
            ("Desired", a.spec.desired_state.to_string()),
            ("Revision", a.spec.revision.map_or("—".to_owned(), |r| r.to_string())),
            ("Restarts", status.as_ref().map_or(0, |s| s.restarts).to_string()),
            ("Exit code", status.as_ref().and_then(|s| s.exit_code).map_or("—".to_owned(), |c| c.to_string())),
            ("Started", status.as_ref().and_then(|s| s.started_at.clone()).unwrap_or_default()),
            ("Message", status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()),
        ]))
        p { a href={ "/ui/nodes/" (paths::enc(&a.spec.node)) } { "Node " (a.spec.node) } }
        section aria-labelledby="logs" {
            h2 #logs { "Logs" }
            div.log-controls data-log=(log_url) {
                label { input type="checkbox" name="follow" checked; " Follow" }
                label for="tail" { "Last lines" }
                select #tail name="tailLines" {
                    option value="100" { "100" }
                    option value="1000" selected { "1000" }
                    option value="" { "All" }
                }
                label for="stream" { "Stream" }
                select #stream name="container" {
                    option value="all" selected { "stdout and stderr" }
                    option value="stdout" { "stdout" }
                    option value="stderr" { "stderr" }
                }
                button type="button" data-log-start { "Show" }
                a href={ (log_url) "?download=1" } download { "Download" }
            }
            p.log-state aria-live="polite" data-log-state {}
            pre.log tabindex="0" aria-label="Log output" data-log-output {}
            noscript { p { a href=(log_url) { "Open the log as text" } } }
        }
        @if let Some(e) = &a.spec.explanation {
            section aria-labelledby="placement" {
                h2 #placement { "Placement" }
                (explanation(e))
            }
        }
    };
    Ok(page::document(&name, Some(&session), Nav::Workloads, body).into_response())
}

#[derive(Deserialize)]
pub struct LogQuery {
    follow: Option<bool>,
    #[serde(rename = "tailLines")]
    tail_lines: Option<String>,
    container: Option<String>,
    download: Option<String>,
}

/// The API's log stream, passed through as it arrives (follow, tail) or as a download.
pub async fn log(
    session: Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, UiError> {
    let follow = q.follow.unwrap_or(false) && q.download.is_none();
    let tail = q
        .tail_lines
        .as_deref()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    let path = format!(
        "{}/log{}",
        paths::object(ALLOCATION, Some(&ns), Some(&name)),
        paths::query(&[
            ("follow", follow.then_some("true")),
            ("tailLines", tail),
            ("container", q.container.as_deref()),
        ])
    );
    let upstream = session.api.raw(Method::GET, &path, None).await?;
    let mut response = Response::new(Body::new(upstream.into_body()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if q.download.is_some() {
        let file: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}.log\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}
