//! Compliance (frameworks → policies → findings → objects, the OSCAL report) and the
//! audit log with its chain's verification.
//!
//! The compliance endpoints answer JSON built by the `policy` crate's `to_json`
//! functions; the structs here name the fields the console reads, so a renamed field
//! shows as an error on this page rather than as an empty table.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::backend::{UiError, paths};
use super::page::{self, Nav, badge};
use super::session::Session;
use crate::registry::AuditRecord;

#[derive(Deserialize)]
struct Status {
    summary: Summary,
    #[serde(default)]
    broken: Vec<Broken>,
}

#[derive(Deserialize)]
struct Summary {
    findings: u64,
    #[serde(default)]
    policies: Vec<PolicySummary>,
    #[serde(default)]
    frameworks: Vec<FrameworkSummary>,
}

#[derive(Deserialize)]
struct PolicySummary {
    policy: String,
    enforcement: String,
    state: String,
    findings: u64,
    objects: u64,
    #[serde(default)]
    controls: Vec<Control>,
}

#[derive(Deserialize)]
struct FrameworkSummary {
    framework: String,
    controls: u64,
    passing: u64,
    /// The failing controls' ids.
    failing: Vec<String>,
    findings: u64,
}

#[derive(Deserialize, Clone)]
struct Control {
    framework: String,
    id: String,
}

#[derive(Deserialize)]
struct Broken {
    policy: String,
    error: String,
}

#[derive(Deserialize)]
struct Findings {
    findings: Vec<Finding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Finding {
    enforcement: String,
    object: FindingObject,
    message: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    last_seen: Option<String>,
}

#[derive(Deserialize)]
struct FindingObject {
    kind: String,
    namespace: Option<String>,
    name: String,
}

#[derive(Deserialize)]
pub struct ComplianceQuery {
    policy: Option<String>,
}

/// A link to an object's console page, where there is one.
fn object_href(o: &FindingObject) -> Option<String> {
    match (o.kind.as_str(), o.namespace.as_deref()) {
        ("Workload", Some(ns)) => Some(super::workloads::detail_href(ns, &o.name)),
        ("Allocation", Some(ns)) => Some(super::workloads::instance_href(ns, &o.name)),
        ("Node", _) => Some(format!("/ui/nodes/{}", paths::enc(&o.name))),
        _ => None,
    }
}

pub async fn overview(
    session: Session,
    Query(q): Query<ComplianceQuery>,
) -> Result<Response, UiError> {
    let status: Status = session.api.get_as("/meridian/v1/compliance/status").await?;
    let selected = q.policy.as_deref().filter(|p| !p.is_empty());
    let findings: Option<Result<Findings, UiError>> = match selected {
        Some(p) => Some(
            session
                .api
                .get_as(&format!(
                    "/meridian/v1/compliance/findings{}",
                    paths::query(&[("policy", Some(p))])
                ))
                .await,
        ),
        None => None,
    };
    // Framework → the policies that map to one of its controls.
    let mut by_framework: BTreeMap<&str, Vec<&PolicySummary>> = BTreeMap::new();
    for p in &status.summary.policies {
        let mut seen = Vec::new();
        for c in &p.controls {
            if !seen.contains(&c.framework.as_str()) {
                seen.push(c.framework.as_str());
                by_framework
                    .entry(c.framework.as_str())
                    .or_default()
                    .push(p);
            }
        }
        if p.controls.is_empty() {
            by_framework.entry("(no framework)").or_default().push(p);
        }
    }
    let policy_href = |p: &str| {
        format!(
            "/ui/compliance{}#findings",
            paths::query(&[("policy", Some(p))])
        )
    };
    let body = html! {
        h1 { "Compliance" }
        p {
            (status.summary.findings) " open findings. "
            a href="/ui/compliance/report" download { "Download the OSCAL assessment results" }
        }
        @if !status.broken.is_empty() {
            section aria-labelledby="broken" {
                h2 #broken { "Broken policies" }
                ul { @for b in &status.broken { li { strong { (b.policy) } ": " (b.error) } } }
            }
        }
        section aria-labelledby="frameworks" {
            h2 #frameworks { "Frameworks" }
            table.list {
                caption.visually-hidden { "Frameworks" }
                thead { tr { th scope="col" { "Framework" } th scope="col" { "Controls" } th scope="col" { "Passing" } th scope="col" { "Failing" } th scope="col" { "Findings" } } }
                tbody {
                    @for f in &status.summary.frameworks {
                        tr {
                            th scope="row" { a href={ "#fw-" (paths::enc(&f.framework)) } { (f.framework) } }
                            td { (f.controls) } td { (f.passing) } td { (f.failing.len()) @if !f.failing.is_empty() { " (" (f.failing.join(", ")) ")" } } td { (f.findings) }
                        }
                    }
                }
            }
        }
        @for (framework, policies) in &by_framework {
            @let id = format!("fw-{}", paths::enc(framework));
            section aria-labelledby=(id) {
                h2 #(id) { (framework) }
                table.list {
                    caption.visually-hidden { "Policies of " (framework) }
                    thead { tr { th scope="col" { "Policy" } th scope="col" { "Enforcement" } th scope="col" { "State" } th scope="col" { "Findings" } th scope="col" { "Objects" } th scope="col" { "Controls" } } }
                    tbody {
                        @for p in policies {
                            tr {
                                th scope="row" { a href=(policy_href(&p.policy)) { (p.policy) } }
                                td { (p.enforcement) }
                                td { (badge(&p.state)) }
                                td { (p.findings) }
                                td { (p.objects) }
                                td { (p.controls.iter().filter(|c| c.framework == *framework).map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")) }
                            }
                        }
                    }
                }
            }
        }
        @if let (Some(policy), Some(findings)) = (selected, &findings) {
            section aria-labelledby="findings" {
                h2 #findings { "Findings of " (policy) }
                @match findings {
                    Err(e) => (page::inline_error(e)),
                    Ok(f) if f.findings.is_empty() => p { "No findings." },
                    Ok(f) => table.list {
                        caption.visually-hidden { "Findings" }
                        thead { tr { th scope="col" { "Object" } th scope="col" { "Enforcement" } th scope="col" { "Field" } th scope="col" { "Message" } th scope="col" { "Last seen" } } }
                        tbody {
                            @for x in &f.findings {
                                @let label = format!("{}/{}{}", x.object.kind.to_lowercase(), x.object.name, x.object.namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_default());
                                tr {
                                    th scope="row" { @if let Some(href) = object_href(&x.object) { a href=(href) { (label) } } @else { (label) } }
                                    td { (x.enforcement) }
                                    td { (x.field.as_deref().unwrap_or("")) }
                                    td { (x.message) }
                                    td { (page::age(x.last_seen.as_deref())) }
                                }
                            }
                        }
                    },
                }
            }
        }
    };
    Ok(page::document("Compliance", Some(&session), Nav::Compliance, body).into_response())
}

/// The API's OSCAL assessment results, as a file.
pub async fn report(session: Session) -> Result<Response, UiError> {
    let upstream = session
        .api
        .raw(
            Method::GET,
            "/meridian/v1/compliance/report?format=oscal",
            None,
        )
        .await?;
    let mut response = Response::new(Body::new(upstream.into_body()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"meridian-oscal-assessment-results.json\""),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct AuditPage {
    items: Vec<AuditEntry>,
}

#[derive(Deserialize)]
struct AuditEntry {
    seq: u64,
    #[serde(flatten)]
    record: Option<AuditRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Verification {
    ok: bool,
    #[serde(default)]
    entries: u64,
    #[serde(default)]
    head: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    first_bad_seq: Option<u64>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    /// Show the entries up to this sequence number (newest first); the latest without.
    before: Option<u64>,
}

const AUDIT_PAGE: u64 = 50;

pub async fn audit(session: Session, Query(q): Query<AuditQuery>) -> Result<Response, UiError> {
    let verification: Verification = session.api.get_as("/meridian/v1/audit/verify").await?;
    // Entries are numbered from 1; the page ends at `before - 1` or the newest.
    let end = q.before.map_or(verification.entries, |b| {
        b.saturating_sub(1).min(verification.entries)
    });
    let after = end.saturating_sub(AUDIT_PAGE);
    let page: AuditPage = session
        .api
        .get_as(&format!(
            "/meridian/v1/audit?after={after}&limit={}",
            end - after
        ))
        .await?;
    let mut items = page.items;
    items.reverse();
    let body = html! {
        h1 { "Audit log" }
        section aria-labelledby="chain" {
            h2 #chain { "Hash chain" }
            @if verification.ok {
                p { (badge("Verified")) " " (verification.entries) " entries verified; head "
                    code { (verification.head.as_deref().unwrap_or("—")) } }
            } @else {
                p.error role="alert" { (badge("Broken")) " The chain is broken"
                    @if let Some(seq) = verification.first_bad_seq { " at entry " (seq) } ": "
                    (verification.error.as_deref().unwrap_or("")) }
            }
        }
        table.list {
            caption.visually-hidden { "Audit entries, newest first" }
            thead { tr { th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Actor" } th scope="col" { "Verb" } th scope="col" { "Object" } th scope="col" { "Outcome" } } }
            tbody {
                @for e in &items {
                    tr {
                        td { (e.seq) }
                        @if let Some(r) = &e.record {
                            td { (r.time) }
                            td { (r.actor) }
                            td { (r.verb) }
                            td { (r.kind.to_lowercase()) "/" (r.name) @if let Some(ns) = &r.namespace { " -n " (ns) } }
                            td { (r.outcome.as_deref().unwrap_or("allowed"))
                                @for p in &r.policies { br; small { (p.policy) " (" (p.enforcement) "): " (p.message) } } }
                        } @else {
                            td colspan="5" { "(an entry this server cannot decode)" }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.before.is_some() { a href="/ui/audit" { "Newest" } }
            @if after > 0 { a href={ "/ui/audit?before=" (after + 1) } rel="next" { "Older entries" } }
        }
    };
    Ok(page::document("Audit log", Some(&session), Nav::Audit, body).into_response())
}
