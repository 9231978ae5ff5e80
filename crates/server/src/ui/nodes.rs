//! Nodes: the list (by site, paged), a node's detail (facts, security posture,
//! conditions, allocations) and, for those the API lets patch Nodes, cordon, uncordon
//! and drain.

use axum::extract::{Form, Path, Query};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use api::kinds::{ALLOCATION, NODE};
use api::{Allocation, AnyObject, Node};

use super::backend::{UiError, paths};
use super::page::{self, Nav, badge};
use super::session::{CsrfForm, Session};
use crate::auth::{Verb, authorize};

const PAGE: usize = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    site: Option<String>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

/// One row of the list; also what live updates replace a row with.
pub fn row(node: &Node) -> Markup {
    let name = &node.metadata.name;
    let cells = api::table::row(&AnyObject::Node(node.clone()), false);
    let phase = node
        .status
        .as_ref()
        .and_then(|st| st.phase)
        .map_or("Unknown", |p| p.as_str());
    html! {
        tr data-key=(name) {
            th scope="row" { a href={ "/ui/nodes/" (paths::enc(name)) } { (name) } }
            // Every column of `meridian get nodes` but NAME and STATUS, which come last.
            @for cell in cells.iter().skip(1).take(cells.len().saturating_sub(2)) { td { (cell) } }
            td { (badge(phase)) @if node.spec.unschedulable { " " span.tag { "cordoned" } } }
        }
    }
}

pub async fn list(session: Session, Query(q): Query<ListQuery>) -> Result<Response, UiError> {
    let site = q.site.as_deref().filter(|s| !s.is_empty());
    let selector = site.map(|s| format!("spec.site={s}"));
    let limit = PAGE.to_string();
    let path = format!(
        "{}{}",
        paths::object(NODE, None, None),
        paths::query(&[
            ("limit", Some(&limit)),
            ("fieldSelector", selector.as_deref()),
            ("continue", q.continue_.as_deref()),
        ])
    );
    let page_result: Result<api::List<Node>, UiError> = session.api.get_as(&path).await;
    let (nodes, next, revision, error) = match page_result {
        Ok(p) => (
            p.items,
            p.metadata.continue_.filter(|c| !c.is_empty()),
            p.metadata.resource_version,
            None,
        ),
        Err(e) => (Vec::new(), None, None, Some(e)),
    };
    let columns = api::table::columns(NODE, false);
    let live = format!(
        "/ui/live/nodes{}",
        paths::query(&[("site", site), ("rv", revision.as_deref())])
    );
    let href = |c: Option<&str>| {
        format!(
            "/ui/nodes{}",
            paths::query(&[("site", site), ("continue", c)])
        )
    };
    let body = html! {
        h1 { "Nodes" @if let Some(s) = site { " in site " (s) } }
        @if let Some(e) = &error { (page::inline_error(e)) }
        p.live-status aria-live="polite" data-live-status {}
        table.list.fixed {
            caption.visually-hidden { "Nodes" }
            thead { tr {
                @for c in columns.iter().take(columns.len() - 1) { th scope="col" { (c) } }
                th scope="col" { "STATUS" }
            } }
            tbody data-live=(live) { @for n in &nodes { (row(n)) } }
        }
        @if nodes.is_empty() && error.is_none() { p { "No nodes." } }
        nav.pager aria-label="Pages" {
            @if q.continue_.is_some() { a href=(href(None)) { "First page" } }
            @if let Some(c) = &next { a href=(href(Some(c))) rel="next" { "Next page" } }
        }
    };
    Ok(page::document("Nodes", Some(&session), Nav::Nodes, body).into_response())
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "unknown".to_owned(),
    }
}

pub async fn detail(session: Session, Path(name): Path<String>) -> Result<Response, UiError> {
    let node: Node = session
        .api
        .get_as(&paths::object(NODE, None, Some(&name)))
        .await?;
    let selector = format!("spec.node={name}");
    let allocations: Result<(Vec<Allocation>, Option<String>), UiError> = session
        .api
        .list_all_at(&format!(
            "{}{}",
            paths::object(ALLOCATION, None, None),
            paths::query(&[("fieldSelector", Some(&selector))])
        ))
        .await;
    // The node's own changes and those of its allocations refresh the page's regions.
    let mut live = vec![format!(
        "/ui/live/nodes{}",
        paths::query(&[
            ("name", Some(&name)),
            ("rv", node.metadata.resource_version.as_deref()),
        ])
    )];
    if let Ok((_, rv)) = &allocations {
        live.push(format!(
            "/ui/live/allocations{}",
            paths::query(&[("node", Some(&name)), ("rv", rv.as_deref())])
        ));
    }
    let allocations = allocations.map(|(list, _)| list);
    // Whether to offer the actions at all: the API decides again when they are sent.
    let may_patch = authorize(&session.who, Verb::Patch, NODE, None, Some(&name)).is_ok();
    let spec = &node.spec;
    let status = node.status.clone().unwrap_or_default();
    let a = spec.allocatable();
    let security = status.security.clone().unwrap_or_default();
    let action = |verb: &str, label: &str| {
        page::post_button(
            &format!("/ui/nodes/{}/{verb}", paths::enc(&name)),
            &session.csrf,
            label,
            (verb == "drain").then_some(
                "Drain this node? Its services and VMs are evicted and placed elsewhere.",
            ),
        )
    };
    let body = html! {
        nav aria-label="Breadcrumb" { a href="/ui/nodes" { "Nodes" } " / " }
        div data-refresh=(live.join(" ")) {
        h1 data-region="title" { (name) " " (badge(status.phase.map_or("Unknown", |p| p.as_str()))) @if spec.unschedulable { " " span.tag { "cordoned" } } }
        p.live-status aria-live="polite" data-live-status {}
        @if may_patch {
            div.actions role="group" aria-label="Node actions" data-region="actions" {
                @if spec.unschedulable { (action("uncordon", "Uncordon")) } @else { (action("cordon", "Cordon")) }
                (action("drain", "Drain"))
            }
        }
        section aria-labelledby="facts" data-region="facts" {
            h2 #facts { "Facts" }
            (page::facts(&[
                ("Site", spec.site.clone()),
                ("Zone", spec.zone.clone().unwrap_or_else(|| "—".to_owned())),
                ("OS", format!("{} {} {}", spec.os.family, spec.os.distro.as_deref().unwrap_or(""), spec.os.version.as_deref().unwrap_or(""))),
                ("Architecture", spec.arch.to_string()),
                ("Allocatable", format!("cpu {}, memory {}, {} GPUs", a.cpu, a.memory.approx(), a.gpu_count())),
                ("Allocated", status.allocated.as_ref().map_or("—".to_owned(), |u| format!("cpu {}, memory {}, {} instances", u.cpu, u.memory.approx(), u.instances))),
                ("Drivers", spec.drivers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
                ("Taints", if spec.taints.is_empty() { "—".to_owned() } else { spec.taints.iter().map(|t| format!("{}={}:{}", t.key, t.value.as_deref().unwrap_or(""), t.effect)).collect::<Vec<_>>().join(", ") }),
                ("Labels", node.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")),
                ("Heartbeat", status.heartbeat_time.clone().unwrap_or_else(|| "never".to_owned())),
                ("Agent", status.agent_version.clone().unwrap_or_else(|| "—".to_owned())),
            ]))
        }
        section aria-labelledby="posture" data-region="posture" {
            h2 #posture { "Security posture" }
            (page::facts(&[
                ("Disk encryption", yes_no(security.disk_encryption)),
                ("Secure boot", yes_no(security.secure_boot)),
                ("TPM", yes_no(security.tpm)),
                ("SELinux", security.selinux.map_or("unknown".to_owned(), |m| m.to_string())),
                ("AppArmor", security.apparmor.map_or("unknown".to_owned(), |m| m.to_string())),
                ("FIPS", yes_no(security.fips)),
                ("Patch age", security.patch_age_days.map_or("unknown".to_owned(), |d| format!("{d} days"))),
            ]))
        }
        @if !status.conditions.is_empty() {
            section aria-labelledby="conditions" data-region="conditions" {
                h2 #conditions { "Conditions" }
                table.list {
                    caption.visually-hidden { "Conditions" }
                    thead { tr { th scope="col" { "Condition" } th scope="col" { "Status" } th scope="col" { "Reason" } th scope="col" { "Message" } } }
                    tbody { @for c in &status.conditions { tr { td { (c.type_) } td { (c.status.as_str()) } td { (c.reason.as_deref().unwrap_or("")) } td { (c.message.as_deref().unwrap_or("")) } } } }
                }
            }
        }
        section aria-labelledby="allocs" data-region="allocs" {
            h2 #allocs { "Allocations" }
            @match &allocations {
                Ok(list) if list.is_empty() => p { "No allocations on this node." },
                Ok(list) => table.list {
                    caption.visually-hidden { "Allocations" }
                    thead { tr { th scope="col" { "NAME" } th scope="col" { "PROJECT" } th scope="col" { "WORKLOAD" } th scope="col" { "DESIRED" } th scope="col" { "PHASE" } } }
                    tbody {
                        @for al in list {
                            @let ns = al.metadata.namespace.as_deref().unwrap_or_default();
                            tr {
                                th scope="row" { a href=(super::workloads::instance_href(ns, &al.metadata.name)) { (al.metadata.name) } }
                                td { (ns) }
                                td { a href=(super::workloads::detail_href(ns, &al.spec.workload)) { (al.spec.workload) } }
                                td { (al.spec.desired_state.to_string()) }
                                td { (badge(al.status.as_ref().map_or("pending", |s| s.phase.as_str()))) }
                            }
                        }
                    }
                },
                Err(e) => (page::inline_error(e)),
            }
        }
        }
    };
    Ok(page::document(&name, Some(&session), Nav::Nodes, body).into_response())
}

async fn set_cordon(session: &Session, name: &str, on: bool) -> Result<(), UiError> {
    session
        .api
        .merge_patch(
            &paths::object(NODE, None, Some(name)),
            &json!({"spec": {"unschedulable": on}}),
        )
        .await
        .map(drop)
}

fn back(name: &str) -> Response {
    Redirect::to(&format!("/ui/nodes/{}", paths::enc(name))).into_response()
}

pub async fn cordon(
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_post(&headers, form.csrf.as_deref())?;
    set_cordon(&session, &name, true).await?;
    Ok(back(&name))
}

pub async fn uncordon(
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_post(&headers, form.csrf.as_deref())?;
    set_cordon(&session, &name, false).await?;
    Ok(back(&name))
}

/// Drains the node through the API's drain endpoint (as `meridian drain` does), as the
/// signed-in principal; its events say what was evicted and what stays.
pub async fn drain(
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_post(&headers, form.csrf.as_deref())?;
    session
        .api
        .post_json(
            &format!("/meridian/v1/nodes/{}/drain", paths::enc(&name)),
            &json!({}),
        )
        .await?;
    Ok(back(&name))
}
