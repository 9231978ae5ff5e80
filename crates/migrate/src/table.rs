//! A sheet as the RVTools reader sees it, whatever the file format: a header row and data
//! rows of [`Cell`]s, each row with its number in the file, and typed accessors that
//! report a bad cell with its sheet, row and column.

use crate::source::{Issue, Location, Severity};

/// One cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
}

/// A data row; `number` is 1-based as a spreadsheet shows it (CSV: the line).
#[derive(Debug, Clone)]
pub struct Row {
    pub number: usize,
    pub cells: Vec<Cell>,
}

/// A sheet: its name, the file it came from, headers (as written and normalized) and rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub file: String,
    pub sheet: String,
    /// Headers as written.
    pub headers: Vec<String>,
    /// Headers normalized: lowercase ASCII letters and digits only, so `Provisioned MiB`,
    /// `provisioned mib` and `Provisioned_MiB` are one key.
    pub keys: Vec<String>,
    pub rows: Vec<Row>,
    /// Whether columns are spreadsheet letters (XLSX) or numbers (CSV).
    pub lettered: bool,
}

/// `Provisioned MiB` → `provisionedmib`.
pub fn normalize(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// 0 → `A`, 27 → `AB`.
pub fn column_letter(mut index: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

impl Table {
    /// Builds a table from rows of cells: the first row with any non-empty cell is the
    /// header; rows with no value are dropped (a sheet's declared range may be far larger
    /// than its data).
    pub fn from_rows(
        file: &str,
        sheet: &str,
        rows: impl IntoIterator<Item = Row>,
        lettered: bool,
    ) -> Option<Table> {
        let mut rows = rows
            .into_iter()
            .filter(|r| r.cells.iter().any(|c| !matches!(c, Cell::Empty)));
        let header = rows.next()?;
        let headers: Vec<String> = header
            .cells
            .iter()
            .map(|c| match c {
                Cell::Text(t) => t.trim().trim_start_matches('\u{feff}').to_string(),
                Cell::Number(n) => n.to_string(),
                Cell::Bool(b) => b.to_string(),
                Cell::Empty => String::new(),
            })
            .collect();
        let keys = headers.iter().map(|h| normalize(h)).collect();
        Some(Table {
            file: file.to_string(),
            sheet: sheet.to_string(),
            headers,
            keys,
            rows: rows.collect(),
            lettered,
        })
    }

    /// The first column whose normalized header is one of `names` (already normalized),
    /// in the order of `names`.
    pub fn column(&self, names: &[&str]) -> Option<usize> {
        names
            .iter()
            .find_map(|n| self.keys.iter().position(|k| k == n))
    }

    /// Where a cell is, for messages: `sheet vInfo, row 12, column AB (Provisioned MiB)`.
    pub fn at(&self, row: &Row, column: Option<usize>) -> Location {
        Location {
            file: self.file.clone(),
            sheet: Some(self.sheet.clone()),
            row: Some(row.number),
            column: column.map(|c| {
                let name = self.headers.get(c).cloned().unwrap_or_default();
                if self.lettered {
                    format!("{} ({name})", column_letter(c))
                } else {
                    format!("{} ({name})", c + 1)
                }
            }),
            line: None,
        }
    }

    pub fn issue(
        &self,
        severity: Severity,
        row: &Row,
        column: Option<usize>,
        message: impl Into<String>,
    ) -> Issue {
        Issue {
            severity,
            at: self.at(row, column),
            message: message.into(),
        }
    }
}

/// A cell as text, trimmed, `None` when empty (a short row has no cell: also `None`).
pub fn text(row: &Row, column: Option<usize>) -> Option<String> {
    match row.cells.get(column?)? {
        Cell::Empty => None,
        Cell::Text(t) => {
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_string())
        }
        Cell::Number(n) => Some(if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{}", *n as i64)
        } else {
            n.to_string()
        }),
        Cell::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
    }
}

/// A cell as a number: numbers as stored, text with thousands separators (`1,024`) or a
/// decimal comma (`1,5`) as CSV exports of some locales write them. `Err` says what the
/// cell held.
pub fn number(row: &Row, column: Option<usize>) -> Result<Option<f64>, String> {
    let Some(cell) = column.and_then(|c| row.cells.get(c)) else {
        return Ok(None);
    };
    match cell {
        Cell::Empty => Ok(None),
        Cell::Number(n) => Ok(Some(*n)),
        Cell::Bool(_) => Err("a boolean where a number belongs".into()),
        Cell::Text(t) => parse_number(t).map_err(|()| format!("{:?} is not a number", t.trim())),
    }
}

pub(crate) fn parse_number(text: &str) -> Result<Option<f64>, ()> {
    let t = text.trim().replace(['\u{a0}', ' ', '\''], "");
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = t.parse::<f64>() {
        return Ok(Some(n));
    }
    // 1,024 or 1,234,567 (thousands) vs 1,5 (decimal comma).
    let thousands = {
        let parts: Vec<&str> = t.trim_start_matches('-').split(',').collect();
        parts.len() > 1
            && !parts[0].is_empty()
            && parts[0].len() <= 3
            && parts[1..]
                .iter()
                .all(|p| p.len() == 3 || p.split('.').next().is_some_and(|q| q.len() == 3))
    };
    let candidate = if thousands {
        t.replace(',', "")
    } else {
        t.replace('.', "").replace(',', ".")
    };
    candidate.parse::<f64>().map(Some).map_err(|_| ())
}

/// A cell as a boolean: `True`/`False`, `Yes`/`No`, `1`/`0`, `enabled`/`disabled`,
/// `on`/`off`. `Err` for anything else.
pub fn boolean(row: &Row, column: Option<usize>) -> Result<Option<bool>, String> {
    let Some(cell) = column.and_then(|c| row.cells.get(c)) else {
        return Ok(None);
    };
    match cell {
        Cell::Empty => Ok(None),
        Cell::Bool(b) => Ok(Some(*b)),
        Cell::Number(n) => Ok(Some(*n != 0.0)),
        Cell::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "yes" | "1" | "enabled" | "on" | "y" => Ok(Some(true)),
            "false" | "no" | "0" | "disabled" | "off" | "n" => Ok(Some(false)),
            other => Err(format!("{other:?} is neither True nor False")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
        assert_eq!(column_letter(27), "AB");
        assert_eq!(column_letter(701), "ZZ");
        assert_eq!(column_letter(702), "AAA");
    }

    #[test]
    fn numbers_in_locale_forms() {
        assert_eq!(parse_number("1,024"), Ok(Some(1024.0)));
        assert_eq!(parse_number("1,234,567"), Ok(Some(1_234_567.0)));
        assert_eq!(parse_number("1,5"), Ok(Some(1.5)));
        assert_eq!(parse_number(" 42 "), Ok(Some(42.0)));
        assert_eq!(parse_number(""), Ok(None));
        assert!(parse_number("lots").is_err());
    }

    #[test]
    fn headers_normalize() {
        assert_eq!(normalize("Provisioned MiB"), "provisionedmib");
        assert_eq!(normalize("In use MB"), "inusemb");
        assert_eq!(
            normalize("OS according to the VMware Tools"),
            "osaccordingtothevmwaretools"
        );
    }
}
