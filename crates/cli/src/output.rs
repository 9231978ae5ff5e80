//! kubectl-like output: aligned tables, JSON, YAML and `kind/name` lines.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use api::KindInfo;

use crate::args::Output;

/// Render rows as a table aligned like kubectl's (three spaces between columns).
pub fn table(headers: &[String], rows: &[Vec<String>], no_headers: bool) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate().take(columns) {
            if i + 1 == columns {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    if !no_headers {
        line(headers);
    }
    for row in rows {
        line(row);
    }
    out
}

/// kubectl's age format: 45s, 12m, 5h, 3d, 2y.
pub fn age(created: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(created) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    api::table::age(now.as_second() - created.as_second())
}

fn created(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("creationTimestamp")?.as_str()
}

pub fn name_of(object: &Value) -> &str {
    object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn namespace_of(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("namespace")?.as_str()
}

/// Table headers and rows of objects of one kind.
pub fn object_rows(
    kind: &KindInfo,
    objects: &[Value],
    wide: bool,
    with_namespace: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let now = jiff::Timestamp::now();
    let mut headers: Vec<String> = Vec::new();
    if with_namespace {
        headers.push("NAMESPACE".into());
    }
    headers.extend(
        api::table::columns(kind, wide)
            .iter()
            .map(|c| c.to_string()),
    );
    // Events have kubectl's columns (LAST SEEN first, no AGE); their times show as ages.
    let name_and_age = api::table::has_name_and_age(kind);
    let time_columns: Vec<bool> = api::table::columns(kind, wide)
        .iter()
        .map(|c| api::table::TIME_COLUMNS.contains(c))
        .collect();
    if name_and_age {
        headers.push("AGE".into());
    }
    let rows = objects
        .iter()
        .map(|o| {
            let mut row = Vec::new();
            if with_namespace {
                row.push(namespace_of(o).unwrap_or("").to_owned());
            }
            // Decoded, not validated: what the server answers is its own form (a
            // viewer's Secret carries the server-maintained `spec.keys`, which a write
            // may not).
            match api::validate::decode_as(kind, o.clone()) {
                Ok(typed) => row.extend(
                    api::table::row(&typed, wide)
                        .into_iter()
                        .zip(&time_columns)
                        .map(|(cell, time)| if *time { age(Some(&cell), now) } else { cell }),
                ),
                Err(_) => row.push(name_of(o).to_owned()),
            }
            if name_and_age {
                row.push(age(created(o), now));
            }
            row
        })
        .collect();
    (headers, rows)
}

/// Print objects in the chosen format. `single` prints one object rather than a list.
pub fn print_objects(
    kind: &KindInfo,
    objects: &[Value],
    output: Output,
    with_namespace: bool,
    no_headers: bool,
    single: bool,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match output {
        Output::Table | Output::Wide => {
            let (headers, rows) =
                object_rows(kind, objects, output == Output::Wide, with_namespace);
            out.write_all(table(&headers, &rows, no_headers).as_bytes())?;
        }
        Output::Json => {
            let value = as_document(kind, objects, single);
            serde_json::to_writer_pretty(&mut out, &value)?;
            out.write_all(b"\n")?;
        }
        Output::Yaml => {
            let value = as_document(kind, objects, single);
            out.write_all(serde_yaml_ng::to_string(&value)?.as_bytes())?;
        }
        Output::Name => {
            for o in objects {
                writeln!(out, "{}.{}/{}", kind.singular, api::GROUP, name_of(o))?;
            }
        }
    }
    Ok(())
}

fn as_document(kind: &KindInfo, objects: &[Value], single: bool) -> Value {
    if single && objects.len() == 1 {
        return objects[0].clone();
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": objects,
        "_kind": kind.list_kind(),
    })
    .as_object()
    .map(|m| {
        let mut m = m.clone();
        m.remove("_kind");
        Value::Object(m)
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let t = table(
            &["NAME".into(), "SITE".into(), "AGE".into()],
            &[
                vec!["a".into(), "onprem-frankfurt".into(), "5m".into()],
                vec!["long-name".into(), "x".into(), "2d".into()],
            ],
            false,
        );
        assert_eq!(
            t,
            "NAME        SITE               AGE\n\
             a           onprem-frankfurt   5m\n\
             long-name   x                  2d\n"
        );
    }

    #[test]
    fn ages_use_kubectl_units() {
        let now: jiff::Timestamp = "2026-01-10T00:00:00Z".parse().expect("time");
        assert_eq!(age(Some("2026-01-09T23:59:30Z"), now), "30s");
        assert_eq!(age(Some("2026-01-09T23:00:00Z"), now), "60m");
        assert_eq!(age(Some("2026-01-09T00:00:00Z"), now), "24h");
        assert_eq!(age(Some("2026-01-01T00:00:00Z"), now), "9d");
        assert_eq!(age(None, now), "<unknown>");
    }
}
