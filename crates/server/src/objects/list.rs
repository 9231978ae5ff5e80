//! Lists: pages read in chunks under a key prefix, selectors applied as they are read,
//! opaque continue tokens (the last key and the first page's revision).
//!
//! Pages come from the server's list cache ([`crate::watch_hub`]) when it keeps one and
//! holds what the list must see, else from the store:
//! - no `resourceVersion` (kubectl's lists): a consistent read, as the kube-apiserver's
//!   cache serves it: the store's current revision is read (on etcd, a quorum read) and
//!   the cache must have applied it, so a list sees every write acknowledged before it;
//! - `resourceVersion=0`: whatever the cache holds now (client-go's first list);
//! - `resourceVersion=N`: at least revision N;
//! - a continued list: at least the first page's revision.
//!
//! A cache that has not reached the revision within [`CACHE_WAIT`] (its feed is
//! restarting, or, on an etcd cluster shared with others, the newest revision is not one
//! of this store's writes) leaves the list to the store.

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use api::LabelSelector;
use store::{RangeRequest, Revision};

use super::{Params, Target, json_response, meta_str};
use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::registry::{decode, kind_prefix};
use crate::tables::{self, TableRequest};

/// Opaque continue token: the last key returned and the revision of the first page.
#[derive(serde::Serialize, Deserialize)]
struct ContinueToken {
    k: String,
    rv: i64,
}

fn encode_continue(key: &str, rv: i64) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        k: key.to_owned(),
        rv,
    })
    .expect("serializes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        ApiError::bad_request(
            "the continue token is not valid: it must be copied unchanged from a previous list",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !t.k.starts_with(prefix) {
        return Err(bad());
    }
    Ok(t)
}

/// What a stored object's bytes must contain to match a label selector, tested before
/// the object is decoded: one group per term that needs the label (`a=b`, `a in (x,y)`,
/// `a`), each group met when any one of its strings occurs. Each string is a JSON string
/// (`"a"`, `"b"`), found whatever the spacing of the stored JSON. A necessary condition
/// only: the selector still decides on the decoded object. Most objects a selective
/// selector refuses are thus skipped without being parsed.
struct Prefilter {
    groups: Vec<Vec<memchr::memmem::Finder<'static>>>,
}

impl Prefilter {
    fn new(selector: &LabelSelector) -> Self {
        use api::selector::SelectorOp;
        let token = |s: &str| {
            let quoted = serde_json::to_string(s).expect("a string serializes");
            memchr::memmem::Finder::new(quoted.as_bytes()).into_owned()
        };
        let mut groups = Vec::new();
        for r in &selector.requirements {
            match r.op {
                SelectorOp::Equals | SelectorOp::In | SelectorOp::Exists => {
                    groups.push(vec![token(&r.key)]);
                }
                SelectorOp::NotEquals | SelectorOp::NotIn | SelectorOp::DoesNotExist => {}
            }
            if matches!(r.op, SelectorOp::Equals | SelectorOp::In) && !r.values.is_empty() {
                groups.push(r.values.iter().map(|v| token(v)).collect());
            }
        }
        Prefilter { groups }
    }

    fn may_match(&self, bytes: &[u8]) -> bool {
        self.groups
            .iter()
            .all(|any| any.iter().any(|f| f.find(bytes).is_some()))
    }
}

/// Selectors of a list or watch, parsed once.
pub struct Filter {
    labels: Option<LabelSelector>,
    prefilter: Option<Prefilter>,
    fields: Option<api::selector::FieldSelector>,
    /// Only objects in this project (a project-scoped principal listing every project).
    project: Option<String>,
    project_kind: bool,
    /// A node agent's credential: only the objects of its node.
    node: Option<String>,
}

impl Filter {
    pub fn new(q: &Params, who: &Principal, target: &Target) -> ApiResult<Self> {
        let labels = match q.label_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => Some(LabelSelector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("labelSelector {s:?} is not valid: {e}"))
            })?),
            _ => None,
        };
        let fields = match q.field_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => {
                Some(api::selector::FieldSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("fieldSelector {s:?} is not valid: {e}"))
                })?)
            }
            _ => None,
        };
        Ok(Self {
            prefilter: labels.as_ref().map(Prefilter::new),
            labels,
            fields,
            project: who.project.clone(),
            project_kind: target.kind == api::kinds::PROJECT,
            node: (who.role == crate::auth::Role::Node)
                .then(|| who.node.clone().unwrap_or_default()),
        })
    }

    /// Whether a stored object may match, from its bytes alone (`false`: it cannot).
    pub fn may_match(&self, stored: &[u8]) -> bool {
        self.prefilter.as_ref().is_none_or(|p| p.may_match(stored))
    }

    /// Whether every object passes (no selector, no project scope).
    pub fn is_trivial(&self) -> bool {
        self.labels.is_none()
            && self.fields.is_none()
            && self.project.is_none()
            && self.node.is_none()
    }

    pub fn matches(&self, object: &Value) -> bool {
        if let Some(node) = &self.node {
            let mine = match object.get("kind").and_then(Value::as_str) {
                Some("Allocation") => {
                    object.pointer("/spec/node").and_then(Value::as_str) == Some(node)
                }
                Some("Node") => meta_str(object, "name") == Some(node),
                _ => false,
            };
            if !mine {
                return false;
            }
        }
        if let Some(project) = &self.project {
            let visible = if self.project_kind {
                meta_str(object, "name") == Some(project)
            } else {
                meta_str(object, "namespace").is_none_or(|ns| ns == project)
            };
            if !visible {
                return false;
            }
        }
        if let Some(sel) = &self.labels {
            let empty = serde_json::Map::new();
            let labels = object
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let map: std::collections::BTreeMap<String, String> = labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            if !sel.matches(&map) {
                return false;
            }
        }
        if let Some(sel) = &self.fields
            && !sel.matches(object)
        {
            return false;
        }
        true
    }
}

/// The key prefix a list or watch reads, narrowed to the principal's project when scoped.
pub fn list_prefix(who: &Principal, target: &Target) -> String {
    match (target.ns(), &who.project) {
        (Some(ns), _) => kind_prefix(target.kind, Some(ns)),
        (None, Some(project)) if target.kind.namespaced() => {
            kind_prefix(target.kind, Some(project))
        }
        _ => kind_prefix(target.kind, None),
    }
}

/// How long a list waits for the list cache to reach the revision it must see.
pub(super) const CACHE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The revision a list served from the list cache must include, when the cache can serve
/// it (see the module documentation).
async fn cache_revision(
    state: &AppState,
    q: &Params,
    continued: Option<Revision>,
) -> ApiResult<Option<Revision>> {
    if !state.watch_hub.keeps_objects() {
        return Ok(None);
    }
    let given = q
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse::<Revision>().ok());
    let at_least = match (continued, given) {
        (Some(rv), _) => rv,
        (None, Some(rv)) => rv,
        (None, None) => state.store().current_revision().await?,
    };
    Ok(state
        .watch_hub
        .caught_up(at_least, CACHE_WAIT)
        .await
        .then_some(at_least))
}

pub(crate) async fn list(
    state: AppState,
    who: Principal,
    target: Target,
    q: Params,
    table: Option<TableRequest>,
) -> ApiResult<Response> {
    let verb = if q.is_watch() {
        Verb::Watch
    } else {
        Verb::List
    };
    authorize(&who, verb, target.kind, target.ns(), None)?;
    let filter = Filter::new(&q, &who, &target)?;
    if q.is_watch() {
        return crate::watch::watch(state, who, target, q, filter, table).await;
    }
    let prefix = list_prefix(&who, &target);
    let max = state.limits.max_page;
    let limit = q.limit.filter(|l| *l > 0).map_or(max, |l| l.min(max));
    let (mut start_after, first_rv) = match q.continue_.as_deref() {
        Some(t) if !t.is_empty() => {
            let t = decode_continue(t, &prefix)?;
            (Some(t.k), Some(t.rv))
        }
        _ => (None, None),
    };
    let cached = cache_revision(&state, &q, first_rv).await?;
    state
        .metrics
        .list_served(if cached.is_some() { "cache" } else { "store" });
    let mut items = match table {
        Some(req) => Items::Table(Vec::new(), req),
        None => Items::Json {
            body: Vec::new(),
            len: 0,
        },
    };
    let mut revision = first_rv;
    let more: bool;
    let mut last_key: Option<String> = None;
    'pages: loop {
        // With a selector most keys may not match: read in chunks, stop at `limit` matches.
        let chunk = (limit - items.len()).clamp(256.min(limit), max);
        let from_cache = cached.and_then(|at_least| {
            state
                .watch_hub
                .page(&prefix, start_after.as_deref(), chunk, at_least)
        });
        let page = match from_cache {
            Some((kvs, more, revision)) => store::RangeResponse {
                kvs,
                more,
                count: 0,
                revision,
            },
            None => {
                state
                    .store()
                    .range(RangeRequest {
                        prefix: prefix.clone(),
                        start_after: start_after.clone(),
                        limit: chunk,
                        count_only: false,
                    })
                    .await?
            }
        };
        match revision {
            // A continue token's revision is the first page's: never one from the future
            // (a forged token), so that what the list answers is what the store holds.
            Some(rv) if rv < 1 || rv > page.revision => {
                return Err(ApiError::bad_request(
                    "the continue token is not valid: it must be copied unchanged from a previous list",
                ));
            }
            Some(_) => {}
            None => revision = Some(page.revision),
        }
        let scanned = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            last_key = Some(kv.key.clone());
            if !filter.may_match(&kv.value) {
                continue;
            }
            let mut object = decode(kv)?;
            // Selectors match the stored form (a Secret's values are not there to match).
            if filter.matches(&object) {
                crate::secrets::present(&state.secrets, &who, &mut object)?;
                items.push(object)?;
            }
            if items.len() >= limit {
                more = page.more || i + 1 < scanned;
                break 'pages;
            }
        }
        if !page.more {
            more = false;
            break;
        }
        start_after.clone_from(&last_key);
    }
    let revision = revision.unwrap_or_default();
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if more && let Some(k) = &last_key {
        metadata["continue"] = Value::String(encode_continue(k, revision));
    }
    match items {
        Items::Table(items, req) => {
            let t = tables::table(target.kind, &items, metadata, req, true);
            Ok(json_response(StatusCode::OK, &t))
        }
        Items::Json { body, .. } => {
            let head = json!({
                "apiVersion": api::API_VERSION,
                "kind": target.kind.list_kind(),
                "metadata": metadata,
            });
            let mut out = serde_json::to_vec(&head).map_err(ApiError::internal)?;
            out.pop(); // the head's closing brace
            out.reserve(body.len() + 12);
            out.extend_from_slice(b",\"items\":[");
            out.extend_from_slice(&body);
            out.extend_from_slice(b"]}");
            Ok((
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                out,
            )
                .into_response())
        }
    }
}

/// The objects a list answers, gathered as the pages are read. Each is serialized as it
/// comes: decoded, an object takes several times the memory of its JSON (about 12 KB for a
/// placed Allocation of 3 KB), and a page holds up to `max_page` of them. A Table keeps
/// them decoded, for its columns.
enum Items {
    Json {
        /// The objects, comma-separated.
        body: Vec<u8>,
        len: usize,
    },
    Table(Vec<Value>, TableRequest),
}

impl Items {
    fn push(&mut self, object: Value) -> ApiResult<()> {
        match self {
            Items::Json { body, len } => {
                if *len > 0 {
                    body.push(b',');
                }
                serde_json::to_writer(&mut *body, &object).map_err(ApiError::internal)?;
                *len += 1;
            }
            Items::Table(items, _) => items.push(object),
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Items::Json { len, .. } => *len,
            Items::Table(items, _) => items.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefilter_never_refuses_an_object_the_selector_matches() {
        let object =
            json!({"metadata": {"name": "a", "labels": {"team": "ui-test", "tier": "web"}}});
        let compact = serde_json::to_vec(&object).unwrap();
        let pretty = serde_json::to_vec_pretty(&object).unwrap();
        let labels: std::collections::BTreeMap<String, String> =
            [("team", "ui-test"), ("tier", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        for (text, expect_may) in [
            ("team=ui-test", true),
            ("team in (x, ui-test)", true),
            ("tier", true),
            ("team!=other", true),
            ("!owner", true),
            ("team=other", false),
            ("owner", false),
            ("team in (x, y)", false),
        ] {
            let sel = LabelSelector::parse(text).unwrap();
            let p = Prefilter::new(&sel);
            for bytes in [&compact, &pretty] {
                assert_eq!(p.may_match(bytes), expect_may, "{text}");
            }
            // Necessary: whatever the selector matches, the prefilter lets through.
            if sel.matches(&labels) {
                assert!(p.may_match(&compact), "{text}");
            }
        }
    }

    #[test]
    fn continue_tokens_roundtrip_and_reject_other_prefixes() {
        let t = encode_continue("/registry/workloads/finance/a", 42);
        let back = decode_continue(&t, "/registry/workloads/").expect("valid");
        assert_eq!(back.k, "/registry/workloads/finance/a");
        assert_eq!(back.rv, 42);
        assert!(decode_continue(&t, "/registry/sites/").is_err());
        assert!(decode_continue("garbage!", "/registry/").is_err());
    }
}
