//! Live updates: server-sent events of the rows that changed, fed by the API's watch
//! (itself the store's `ReadView::watch` through the shared watch cache) as the
//! signed-in principal, from the revision the page was rendered at. Each event carries
//! the row as the list renders it, so the page replaces it in place and a row is drawn
//! by one function whether it arrives with the page or later.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use api::kinds::{ALLOCATION, NODE, WORKLOAD};
use api::{Allocation, Node, Workload};

use super::backend::{UiError, paths};
use super::session::Session;

#[derive(Deserialize)]
pub struct LiveQuery {
    project: Option<String>,
    site: Option<String>,
    workload: Option<String>,
    node: Option<String>,
    name: Option<String>,
    rv: Option<String>,
}

/// A field selector of the non-empty `field=value` pairs, `None` when all are empty.
fn selector(pairs: &[(&str, Option<&str>)]) -> Option<String> {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(field, value)| {
            value
                .filter(|v| !v.is_empty())
                .map(|v| format!("{field}={v}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Which rows a stream carries.
#[derive(Clone, Copy)]
enum Rows {
    Workloads,
    Nodes,
    Allocations,
}

impl Rows {
    /// The row's key (`data-key`) and its markup (`None` when it cannot be decoded).
    fn render(self, object: Value) -> Option<(String, String)> {
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match self {
            Rows::Workloads => {
                let w: Workload = serde_json::from_value(object).ok()?;
                Some((
                    format!("{ns}/{}", w.metadata.name),
                    super::workloads::row(&w).into_string(),
                ))
            }
            Rows::Allocations => {
                let a: Allocation = serde_json::from_value(object).ok()?;
                Some((
                    format!("{ns}/{}", a.metadata.name),
                    super::workloads::instance_row(&a).into_string(),
                ))
            }
            Rows::Nodes => {
                let n: Node = serde_json::from_value(object).ok()?;
                Some((n.metadata.name.clone(), super::nodes::row(&n).into_string()))
            }
        }
    }
}

pub async fn stream(
    session: Session,
    Path(plural): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, UiError> {
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let (rows, base, selector) = match plural.as_str() {
        "workloads" => (
            Rows::Workloads,
            paths::object(WORKLOAD, project, None),
            None,
        ),
        "nodes" => (
            Rows::Nodes,
            paths::object(NODE, None, None),
            selector(&[
                ("spec.site", q.site.as_deref()),
                ("metadata.name", q.name.as_deref()),
            ]),
        ),
        "allocations" => (
            Rows::Allocations,
            paths::object(ALLOCATION, project, None),
            selector(&[
                ("spec.workload", q.workload.as_deref()),
                ("spec.node", q.node.as_deref()),
            ]),
        ),
        other => {
            return Err(UiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no live view of {other:?}: workloads, nodes or allocations"),
            ));
        }
    };
    let path = format!(
        "{base}{}",
        paths::query(&[
            ("watch", Some("true")),
            ("resourceVersion", q.rv.as_deref()),
            ("fieldSelector", selector.as_deref()),
        ])
    );
    let upstream = session.api.raw(Method::GET, &path, None).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let mut body = upstream.into_body().into_data_stream();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                () = tx.closed() => return,
            };
            let Some(Ok(chunk)) = chunk else {
                let _ = tx
                    .send(Ok(Event::default().event("end").data("the watch ended")))
                    .await;
                return;
            };
            buffer.extend_from_slice(&chunk);
            while let Some(at) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=at).collect();
                let Some(event) = to_event(rows, &line) else {
                    continue;
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One watch line as an SSE event: `row` (ADDED, MODIFIED, DELETED with the row's
/// markup) or `expired` (the page is too old: reload).
fn to_event(rows: Rows, line: &[u8]) -> Option<Event> {
    let event: Value = serde_json::from_slice(line).ok()?;
    let type_ = event.get("type").and_then(Value::as_str)?.to_owned();
    let object = event.get("object").cloned().unwrap_or(Value::Null);
    match type_.as_str() {
        "ADDED" | "MODIFIED" | "DELETED" => {
            let (key, html) = rows.render(object)?;
            Some(
                Event::default()
                    .event("row")
                    .data(json!({"type": type_, "key": key, "html": html}).to_string()),
            )
        }
        "ERROR" => {
            let message = object
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the watch failed")
                .to_owned();
            Some(Event::default().event("expired").data(message))
        }
        _ => None,
    }
}
