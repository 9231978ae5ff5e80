//! Queues: the list (pending and admitted jobs, usage against quota, as `meridian get
//! queues` shows them) and a queue's detail: quota per resource (nominal, borrowing and
//! lending limits, used), its cohort's other queues, conditions. The list also shows the
//! cohort tree (`Cohort` objects: parent, quota, weight).

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use api::AnyObject;
use api::kinds::{COHORT, QUEUE};
use api::queue::{Cohort, Queue, ResourceQuota};

use super::backend::{UiError, paths};
use super::page::{self, Nav, badge};
use super::session::Session;

const PAGE: usize = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

/// The `Active` condition's state, for the status column.
fn state(q: &Queue) -> &'static str {
    let active = q
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Active"));
    match active.map(|c| c.status) {
        Some(api::kinds::ConditionStatus::True) => "Active",
        Some(_) => "Inactive",
        None => "Unknown",
    }
}

/// One row of the list; also what live updates replace a row with.
pub fn row(q: &Queue) -> Markup {
    let name = &q.metadata.name;
    let cells = api::table::row(&AnyObject::Queue(q.clone()), false);
    html! {
        tr data-key=(name) {
            th scope="row" { a href={ "/ui/queues/" (paths::enc(name)) } { (name) } }
            @for cell in cells.iter().skip(1) { td { (cell) } }
            td { (badge(state(q))) }
        }
    }
}

pub async fn list(session: Session, Query(q): Query<ListQuery>) -> Result<Response, UiError> {
    let limit = PAGE.to_string();
    let path = format!(
        "{}{}",
        paths::object(QUEUE, None, None),
        paths::query(&[
            ("limit", Some(&limit)),
            ("continue", q.continue_.as_deref()),
        ])
    );
    let result: Result<api::List<Queue>, UiError> = session.api.get_as(&path).await;
    let (queues, next, error) = match result {
        Ok(p) => (
            p.items,
            p.metadata.continue_.filter(|c| !c.is_empty()),
            None,
        ),
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let columns = api::table::columns(QUEUE, false);
    // The cohorts: few (teams, departments), so the first page of them is all of them
    // in practice; the API lists the rest.
    let cohorts: Result<api::List<Cohort>, UiError> = session
        .api
        .get_as(&format!(
            "{}?limit={PAGE}",
            paths::object(COHORT, None, None)
        ))
        .await;
    let cohort_columns = api::table::columns(COHORT, true);
    let href = |c: Option<&str>| format!("/ui/queues{}", paths::query(&[("continue", c)]));
    let body = html! {
        h1 { "Queues" }
        p { "Where batch and AI jobs wait for quota. A job is admitted, whole, when its queue has quota for all its instances and nodes fit them; "
            a href="/ui/workloads" { "workloads" } " show each waiting job's position and reason." }
        @if let Some(e) = &error { (page::inline_error(e)) }
        table.list.fixed {
            caption.visually-hidden { "Queues" }
            thead { tr {
                @for c in &columns { th scope="col" { (c) } }
                th scope="col" { "STATUS" }
            } }
            tbody { @for q in &queues { (row(q)) } }
        }
        @if queues.is_empty() && error.is_none() { p { "No queues. Jobs that name none run without queueing." } }
        nav.pager aria-label="Pages" {
            @if q.continue_.is_some() { a href=(href(None)) { "First page" } }
            @if let Some(c) = &next { a href=(href(Some(c))) rel="next" { "Next page" } }
        }
        h2 { "Cohorts" }
        p { "Queues of a cohort lend each other unused quota; a cohort may hold quota of its own and sit under a parent, so teams share first within their cohort, then across their department." }
        @match &cohorts {
            Err(e) => (page::inline_error(e)),
            Ok(list) if list.items.is_empty() => p { "No cohort objects: cohorts named by queues are roots without quota of their own." },
            Ok(list) => table.list {
                caption.visually-hidden { "Cohorts" }
                thead { tr { @for c in &cohort_columns { th scope="col" { (c) } } } }
                tbody { @for c in &list.items {
                    @let cells = api::table::row(&AnyObject::Cohort(c.clone()), true);
                    tr {
                        th scope="row" { (c.metadata.name) }
                        @for cell in cells.iter().skip(1) { td { (cell) } }
                    }
                } }
            },
        }
    };
    Ok(page::document("Queues", Some(&session), Nav::Queues, body).into_response())
}

/// A quota row: resource, nominal, borrowing limit, lending limit, used.
fn quota_row<T: std::fmt::Display>(name: &str, q: &ResourceQuota<T>, used: String) -> Markup {
    let or_dash = |v: &Option<T>| v.as_ref().map_or("-".to_string(), ToString::to_string);
    html! {
        tr {
            th scope="row" { (name) }
            td { (q.nominal) }
            td { (or_dash(&q.borrowing_limit)) }
            td { (or_dash(&q.lending_limit)) }
            td { (used) }
        }
    }
}

pub async fn detail(session: Session, Path(name): Path<String>) -> Result<Response, UiError> {
    let q: Queue = session
        .api
        .get_as(&paths::object(QUEUE, None, Some(&name)))
        .await?;
    let status = q.status.clone().unwrap_or_default();
    let used = status.usage.clone().unwrap_or_default();
    let quota = &q.spec.quota;
    let body = html! {
        h1 { "Queue " (name) }
        @if let Some(d) = &q.spec.description { p { (d) } }
        dl.facts {
            dt { "Status" } dd { (badge(state(&q))) }
            dt { "Cohort" } dd { (q.spec.cohort.as_deref().unwrap_or("none")) }
            dt { "Strategy" } dd { (q.spec.strategy) }
            dt { "Preemption" } dd {
                "within the queue: " (q.spec.preemption.within_queue)
                "; reclaim within the cohort: " (q.spec.preemption.reclaim_within_cohort)
            }
            dt { "Fair-sharing weight" } dd { (q.spec.weight()) }
            dt { "Weighted share" } dd { (status.weighted_share.unwrap_or(0)) " ‰" }
            dt { "Wait for ready" } dd { (q.spec.wait_for_ready.as_deref().unwrap_or("-")) }
            dt { "Projects" } dd {
                @if q.spec.projects.is_empty() { "every project" } @else { (q.spec.projects.join(", ")) }
            }
            dt { "Jobs" } dd { (status.pending) " pending, " (status.admitted) " admitted" }
        }
        h2 { "Quota" }
        table.list {
            caption.visually-hidden { "Quota per resource" }
            thead { tr {
                th scope="col" { "Resource" } th scope="col" { "Nominal" }
                th scope="col" { "Borrowing limit" } th scope="col" { "Lending limit" }
                th scope="col" { "Used" }
            } }
            tbody {
                @if let Some(c) = &quota.cpu { (quota_row("cpu", c, used.cpu.to_string())) }
                @if let Some(m) = &quota.memory { (quota_row("memory", m, used.memory.to_string())) }
                @if let Some(g) = &quota.gpus { (quota_row("GPUs (any model)", g, used.gpus.to_string())) }
                @for (model, g) in &quota.gpus_by_model {
                    (quota_row(&format!("{model} GPUs"), g,
                        used.gpus_by_model.get(model).copied().unwrap_or_default().to_string()))
                }
                @if let Some(i) = &quota.instances { (quota_row("instances", i, used.instances.to_string())) }
            }
        }
        h2 { "Conditions" }
        @if status.conditions.is_empty() { p { "None yet: the scheduler has not reported on this queue." } }
        @else {
            table.list {
                caption.visually-hidden { "Conditions" }
                thead { tr { th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Reason" } th scope="col" { "Message" } } }
                tbody { @for c in &status.conditions { tr {
                    th scope="row" { (c.type_) }
                    td { (c.status) }
                    td { (c.reason.as_deref().unwrap_or("")) }
                    td { (c.message.as_deref().unwrap_or("")) }
                } } }
            }
        }
    };
    Ok(page::document(&format!("Queue {name}"), Some(&session), Nav::Queues, body).into_response())
}
