//! Watch streams in the Kubernetes dialect: newline-delimited JSON events
//! (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`), resumable from a `resourceVersion`.
//!
//! Without a `resourceVersion` (or with `"0"`) the stream starts with an `ADDED` event per
//! existing object, then follows changes; with `resourceVersion=N` it delivers every change
//! after N, or answers 410 Expired when N was compacted. Selectors apply to the object
//! before and after each change, so an object that starts or stops matching appears as
//! `ADDED` or `DELETED`, as in Kubernetes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use store::{EventKind, RangeRequest, StoreError};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::objects::{Filter, Params, Target, list_prefix};
use crate::registry::decode;
use crate::tables::{self, TableRequest};
use crate::watch_cache::{Decoded, EventCache};

/// Interval of `BOOKMARK` events when the client asked for them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(15);

pub(crate) fn line(kind: &str, object: &Value) -> Bytes {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    let mut out =
        serde_json::to_vec(&Line { kind, object }).expect("a JSON value always serializes");
    out.push(b'\n');
    Bytes::from(out)
}

/// Watch lines as `Table`s (see [`crate::tables`]): only the first carries the column
/// definitions.
struct TableLines {
    kind: &'static api::KindInfo,
    req: TableRequest,
    headers_sent: bool,
}

impl TableLines {
    fn line(&mut self, event: &str, object: &Value) -> Bytes {
        let table = tables::table(
            self.kind,
            std::slice::from_ref(object),
            tables::single_metadata(object),
            self.req,
            !self.headers_sent,
        );
        self.headers_sent = true;
        line(event, &table)
    }
}

pub async fn watch(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    filter: Filter,
    table: Option<TableRequest>,
) -> ApiResult<Response> {
    let mut tables = table.map(|req| TableLines {
        kind: target.kind,
        req,
        headers_sent: false,
    });
    let prefix = list_prefix(&who, &target);
    // Secrets: the shared cache holds their keys-only form (see `watch_cache`); a watcher
    // who may read values gets each event's object opened from the event itself.
    let open_secrets = target.kind == api::kinds::SECRET && crate::secrets::may_read_values(&who);
    let store = state.store().clone();
    let mut initial = Vec::new();
    let start = match q.resource_version.as_deref() {
        None | Some("" | "0") => {
            // Synthetic ADDED events for the current state, then changes after it.
            let mut start_after = None;
            let mut revision = 0;
            loop {
                let page = store
                    .range(RangeRequest {
                        prefix: prefix.clone(),
                        start_after: start_after.clone(),
                        limit: 1_000,
                        count_only: false,
                    })
                    .await?;
                if revision == 0 {
                    revision = page.revision;
                }
                for kv in &page.kvs {
                    let mut object = decode(kv)?;
                    if filter.matches(&object) {
                        crate::secrets::present(&state.secrets, &who, &mut object)?;
                        initial.push(match &mut tables {
                            Some(t) => t.line("ADDED", &object),
                            None => line("ADDED", &object),
                        });
                    }
                }
                if !page.more {
                    break;
                }
                start_after = page.kvs.last().map(|kv| kv.key.clone());
            }
            revision + 1
        }
        Some(rv) => {
            let rv: i64 = rv.parse().ok().filter(|rv| *rv > 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "resourceVersion {rv:?} is not valid: copy it from a list or an event"
                ))
            })?;
            let current = store.current_revision().await?;
            if rv > current {
                // Kubernetes' answer to a revision from the future (a client that talked
                // to another cluster, or made one up): retry later or list again.
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!(
                        "Too large resource version: {rv}, current: {current}; \
                         list again to get a current resourceVersion"
                    ),
                ));
            }
            rv + 1
        }
    };
    let mut events = match state.watch_hub.watch(&prefix, start).await {
        Ok(w) => w,
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            return Err(ApiError::expired(format!(
                "too old resource version: {} ({}); list again and watch from the list's resourceVersion",
                requested - 1,
                compacted
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let timeout = q
        .timeout_seconds
        .map_or(state.limits.max_watch, Duration::from_secs)
        .min(state.limits.max_watch);
    let bookmarks = q.allow_watch_bookmarks.unwrap_or(false);
    let kind = target.kind;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let guard = state.metrics.watch_guard();
    let shutdown = state.shutdown.clone();
    let cache = Arc::clone(&state.watch_cache);
    let secrets = Arc::clone(&state.secrets);
    tokio::spawn(async move {
        let _guard = guard;
        for l in initial {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        let mut last_rv = start - 1;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    let object = json!({
                        "apiVersion": api::API_VERSION,
                        "kind": kind.kind,
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    });
                    if tx.send(Ok(line("BOOKMARK", &object))).await.is_err() {
                        return;
                    }
                }
                event = events.next() => {
                    let event = match event {
                        Some(Ok(e)) => e,
                        Some(Err(e)) => {
                            let status = ApiError::from(e).to_status();
                            let value = serde_json::to_value(status).unwrap_or_default();
                            let _ = tx.send(Ok(line("ERROR", &value))).await;
                            return;
                        }
                        None => return,
                    };
                    // A bookmark promises every change up to its revision: only a
                    // revision the stream has delivered whole counts.
                    last_rv = if events.at_revision_end() {
                        event.kv.mod_revision
                    } else {
                        last_rv.max(event.kv.mod_revision - 1)
                    };
                    let Some((kind, decoded)) = translate(&event, &filter, &cache) else { continue };
                    let opened = if open_secrets {
                        match decode(&event.kv)
                            .and_then(|o| crate::secrets::open(&secrets, o))
                        {
                            Ok(o) => Some(o),
                            Err(e) => {
                                let value = serde_json::to_value(e.to_status()).unwrap_or_default();
                                let _ = tx.send(Ok(line("ERROR", &value))).await;
                                return;
                            }
                        }
                    } else {
                        None
                    };
                    let out = match (&mut tables, &opened) {
                        (Some(t), _) => t.line(kind, opened.as_ref().unwrap_or(&decoded.object)),
                        (None, Some(o)) => line(kind, o),
                        (None, None) => decoded.line(kind),
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("valid header"),
    );
    Ok(response)
}

/// Turn a store event into the type of its watch event and the decoded object, honouring
/// selector transitions. Decoding is shared through the server's [`EventCache`]; without
/// selectors no decode is needed beyond the cached one.
fn translate(
    event: &store::Event,
    filter: &Filter,
    cache: &EventCache,
) -> Option<(&'static str, Arc<Decoded>)> {
    let decoded = |kv: &store::KeyValue| match cache.get(kv) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(key = %kv.key, error = %e, "undecodable object in watch");
            None
        }
    };
    match event.kind {
        EventKind::Put => {
            let object = decoded(&event.kv)?;
            let now = filter.matches(&object.object);
            let before = match &event.prev {
                None => None,
                Some(_) if filter.is_trivial() => Some(true),
                Some(prev) => decoded(prev).map(|p| filter.matches(&p.object)),
            };
            match (before, now) {
                (None | Some(false), true) => Some(("ADDED", object)),
                (Some(true), true) => Some(("MODIFIED", object)),
                (Some(true), false) => Some(("DELETED", object)),
                (_, false) => None,
            }
        }
        EventKind::Delete => {
            let object = decoded(&event.kv)?;
            filter
                .matches(&object.object)
                .then_some(("DELETED", object))
        }
    }
}
