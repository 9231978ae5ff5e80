//! Server-side printing: `meta.k8s.io/v1` `Table` responses, as kube-apiserver gives them
//! to `kubectl get`.
//!
//! A client asks for a table with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
//! (or `v=v1beta1`); lists, single objects and watch events then come back as a `Table`
//! whose columns are the ones `meridian get` prints ([`api::table`]: one definition of
//! the columns for both), with the `-o wide` columns at priority 1 and `Age` computed
//! here. `includeObject=None|Metadata|Object` (default `Metadata`) says what each row
//! carries besides its cells: nothing, a `PartialObjectMetadata`, or the whole object.
//! On a watch only the first event's table carries the column definitions, as in
//! Kubernetes.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use serde_json::{Map, Value, json};

use api::KindInfo;

use crate::error::{ApiError, ApiResult};

/// What each row of a table carries besides its cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// A request for tables rather than objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRequest {
    /// `v1` or `v1beta1` of `meta.k8s.io`.
    pub version: &'static str,
    pub include: IncludeObject,
}

impl TableRequest {
    /// `Some` when the `Accept` header prefers a Table (its first media type that the
    /// server can serve is one); `includeObject` is the query parameter.
    pub fn from_request(
        headers: &HeaderMap,
        include_object: Option<&str>,
    ) -> ApiResult<Option<Self>> {
        let Some(version) = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(preference)
            .flatten()
        else {
            return Ok(None);
        };
        let include = match include_object {
            None | Some("") | Some("Metadata") => IncludeObject::Metadata,
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "includeObject={other:?} is not valid: use None, Metadata or Object"
                )));
            }
        };
        Ok(Some(Self { version, include }))
    }
}

/// For one media range of an `Accept` header: `None` when the server cannot serve it
/// (look further), `Some(None)` for plain JSON, `Some(Some(version))` for a Table.
fn preference(range: &str) -> Option<Option<&'static str>> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if !matches!(media, "application/json" | "application/*" | "*/*") {
        return None;
    }
    let (mut as_, mut version, mut group) = (None, None, None);
    for p in parts {
        match p.split_once('=') {
            Some(("as", v)) => as_ = Some(v),
            Some(("v", v)) => version = Some(v),
            Some(("g", v)) => group = Some(v),
            _ => {}
        }
    }
    match (as_, group, version) {
        (None, _, _) => Some(None),
        (Some("Table"), Some("meta.k8s.io"), Some("v1")) => Some(Some("v1")),
        (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => Some(Some("v1beta1")),
        // PartialObjectMetadata and other conversions are not served.
        _ => None,
    }
}

/// Title case of a `meridian get` header (`ALLOWED-LOCATIONS` → `Allowed-Locations`);
/// kubectl prints column names upper-cased, so both CLIs show the same headers.
fn title(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut start = true;
    for c in header.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn column(name: &str, kind: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({
        "name": name,
        "type": kind,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// Column definitions of a kind: the `meridian get` columns, then `Age` (not for events,
/// whose columns are kubectl's own), then the `-o wide` columns at priority 1.
pub fn column_definitions(kind: &KindInfo) -> Vec<Value> {
    let base = api::table::columns(kind, false).len();
    let all = api::table::columns(kind, true);
    let name_and_age = api::table::has_name_and_age(kind);
    let mut out = Vec::with_capacity(all.len() + 1);
    for (i, header) in all.iter().enumerate() {
        let priority = u8::from(i >= base);
        out.push(if name_and_age && i == 0 {
            column(
                "Name",
                "string",
                "name",
                "Name must be unique within a project (or globally for global kinds).",
                0,
            )
        } else if *header == "NAME" {
            column("Name", "string", "name", "", priority)
        } else {
            column(&title(header), "string", "", "", priority)
        });
        if name_and_age && i + 1 == base {
            out.push(column(
                "Age",
                "date",
                "",
                "Time since creationTimestamp.",
                0,
            ));
        }
    }
    out
}

/// The cells of one object, in the order of [`column_definitions`].
fn cells(kind: &KindInfo, object: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let base = api::table::columns(kind, false).len();
    let wide = api::table::columns(kind, true).len();
    let mut row = match api::validate::decode_as(kind, object.clone()) {
        Ok(typed) => api::table::row(&typed, true),
        Err(_) => {
            // A stored object always decodes; should one not, the name still shows.
            let mut r = vec![String::new(); wide];
            r[0] = name_of(object).to_owned();
            r
        }
    };
    let headers = api::table::columns(kind, true);
    for (cell, header) in row.iter_mut().zip(&headers) {
        if api::table::TIME_COLUMNS.contains(header) {
            *cell = age(Some(cell.as_str()), now);
        }
    }
    let mut out: Vec<Value> = Vec::with_capacity(row.len() + 1);
    let extra = row.split_off(base.min(row.len()));
    out.extend(row.into_iter().map(Value::String));
    if api::table::has_name_and_age(kind) {
        out.push(Value::String(age(created(object), now)));
    }
    out.extend(extra.into_iter().map(Value::String));
    out
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn created(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
}

/// The age column: see [`api::table::age`].
pub fn age(created: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(created) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    api::table::age(now.as_second() - created.as_second())
}

/// What a row carries besides its cells.
fn row_object(object: &Value, include: IncludeObject, version: &str) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": format!("meta.k8s.io/{version}"),
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

/// A row from precomputed cells.
pub fn row_with_cells(cells: Vec<Value>, object: &Value, req: TableRequest) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(o) = row_object(object, req.include, req.version) {
        row.insert("object".into(), o);
    }
    Value::Object(row)
}

/// A `Table` of `objects` of one kind. `list_metadata` is the list's `metadata`
/// (`resourceVersion`, `continue`); `headers` whether to include the column definitions.
pub fn table(
    kind: &KindInfo,
    objects: &[Value],
    list_metadata: Value,
    req: TableRequest,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row_with_cells(cells(kind, o, now), o, req))
        .collect();
    generic(
        if headers {
            column_definitions(kind)
        } else {
            Vec::new()
        },
        rows,
        list_metadata,
        req,
    )
}

/// A `Table` from column definitions and rows (namespaces use it with their own columns).
pub fn generic(
    columns: Vec<Value>,
    rows: Vec<Value>,
    list_metadata: Value,
    req: TableRequest,
) -> Value {
    let mut table = Map::new();
    table.insert("kind".into(), json!("Table"));
    table.insert(
        "apiVersion".into(),
        Value::String(format!("meta.k8s.io/{}", req.version)),
    );
    table.insert("metadata".into(), list_metadata);
    if !columns.is_empty() {
        table.insert("columnDefinitions".into(), Value::Array(columns));
    }
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

/// The `metadata` of a table of one object: its `resourceVersion`.
pub fn single_metadata(object: &Value) -> Value {
    match object.pointer("/metadata/resourceVersion") {
        Some(rv) => json!({ "resourceVersion": rv }),
        None => json!({}),
    }
}

/// The definition of the name and age columns, for tables of other things (namespaces).
pub fn name_and_age(extra: &[(&str, &str)]) -> Vec<Value> {
    let mut out = vec![column("Name", "string", "name", "Name must be unique.", 0)];
    for (name, description) in extra {
        out.push(column(name, "string", "", description, 0));
    }
    out.push(column(
        "Age",
        "date",
        "",
        "Time since creationTimestamp.",
        0,
    ));
    out
}

/// Cells `name, extra…, age` of an object.
pub fn name_and_age_cells(object: &Value, extra: &[&str]) -> Vec<Value> {
    let mut out = vec![Value::String(name_of(object).to_owned())];
    out.extend(extra.iter().map(|e| Value::String((*e).to_owned())));
    out.push(Value::String(age(created(object), jiff::Timestamp::now())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn kubectl_accept_headers_ask_for_tables() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let req = TableRequest::from_request(&accept(kubectl), None)
            .expect("valid")
            .expect("a table");
        assert_eq!(req.version, "v1");
        assert_eq!(req.include, IncludeObject::Metadata);
        let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json";
        let req = TableRequest::from_request(&accept(beta), Some("Object"))
            .expect("valid")
            .expect("a table");
        assert_eq!(
            (req.version, req.include),
            ("v1beta1", IncludeObject::Object)
        );
        for plain in [
            "application/json",
            "*/*",
            "application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
        ] {
            assert_eq!(
                TableRequest::from_request(&accept(plain), None).expect("valid"),
                None
            );
        }
        assert_eq!(
            TableRequest::from_request(&HeaderMap::new(), None).expect("valid"),
            None
        );
        assert!(TableRequest::from_request(&accept(kubectl), Some("All")).is_err());
    }

    #[test]
    fn workload_rows_follow_the_column_definitions() {
        let kind = api::kinds::WORKLOAD;
        let object = json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "p", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "resourceVersion": "7", "labels": {"app": "x"}},
            "spec": {"type": "job", "replicas": 3, "priority": 10,
                     "task": {"driver": "exec", "command": ["x"], "resources": {"cpu": 1, "memory": "1Gi"}},
                     "data": {"residency": ["EU"]}},
            "status": {"placedReplicas": 2, "readyReplicas": 1},
        });
        let req = TableRequest {
            version: "v1",
            include: IncludeObject::Metadata,
        };
        let t = table(
            kind,
            std::slice::from_ref(&object),
            json!({"resourceVersion": "9"}),
            req,
            true,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        let columns = t["columnDefinitions"].as_array().expect("columns");
        let cells = t["rows"][0]["cells"].as_array().expect("cells");
        assert_eq!(columns.len(), cells.len());
        let by_name = |n: &str| {
            let i = columns
                .iter()
                .position(|c| c["name"] == n)
                .unwrap_or_else(|| panic!("{n}: {columns:?}"));
            (cells[i].clone(), columns[i]["priority"].clone())
        };
        assert_eq!(by_name("Name"), (json!("w"), json!(0)));
        assert_eq!(by_name("Ready"), (json!("1/3"), json!(0)));
        assert_eq!(by_name("Placed"), (json!("2/3"), json!(1)));
        assert_eq!(by_name("Type"), (json!("job"), json!(0)));
        assert_eq!(by_name("Residency"), (json!("EU"), json!(0)));
        assert_eq!(by_name("Os").1, json!(1));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "p");
        let none = TableRequest {
            include: IncludeObject::None,
            ..req
        };
        let t = table(kind, std::slice::from_ref(&object), json!({}), none, false);
        assert!(t.get("columnDefinitions").is_none());
        assert!(t["rows"][0].get("object").is_none());
    }

    #[test]
    fn titles_match_kubectl_upper_casing() {
        assert_eq!(title("ALLOWED-LOCATIONS"), "Allowed-Locations");
        assert_eq!(title("NAME"), "Name");
        assert_eq!(
            title("ALLOWED-LOCATIONS").to_uppercase(),
            "ALLOWED-LOCATIONS"
        );
    }
}
