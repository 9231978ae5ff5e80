//! Manifest files: multi-document YAML, a JSON object, a JSON array of objects, a stream
//! of JSON objects, and `List`s (`kind: List` or `kind: WorkloadList` with `items`).
//!
//! Every document is decoded and validated, and every error of every document is returned,
//! each naming the source, the document's position in the file (1-based, empty documents
//! counted), the field path and, where known, the line and column in the file.
//!
//! YAML goes through [`crate::yaml`] (alias expansion and nesting bounded, merge keys
//! applied). YAML documents are split on `---` lines (as kubectl does), so a syntax error in one
//! document does not hide the others; line numbers stay absolute within the file.

use std::fmt;

use crate::kinds::AnyObject;
use crate::validate::{FieldError, FieldErrors, object_from_value};
use crate::yaml;

/// One object read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where the text came from (a file name, `-` for stdin, a URL).
    pub source: String,
    /// 1-based position of the document in the source.
    pub doc: usize,
    pub object: AnyObject,
}

/// One problem in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub source: String,
    pub doc: usize,
    pub error: FieldError,
}

impl ManifestError {
    /// `(line, column)` in the source, 1-based, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        Some((self.error.line?, self.error.column.unwrap_or(1)))
    }
}

impl fmt::Display for ManifestError {
    /// `workloads.yaml doc 2: spec.task.resources.memory: "12Zi" is not a quantity (...)`,
    /// or for syntax errors `workloads.yaml doc 2: line 7 column 3: <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} doc {}: ", self.source, self.doc)?;
        if self.error.field.is_empty()
            && let Some(line) = self.error.line
        {
            write!(f, "line {line} column {}: ", self.error.column.unwrap_or(1))?;
        }
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for ManifestError {}

/// Parses every document of `text`; `source` names it in errors.
pub fn parse_manifests(source: &str, text: &str) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().chars().next();
    let mut out = Output {
        source,
        manifests: Vec::new(),
        errors: Vec::new(),
    };
    if matches!(first, Some('{') | Some('[')) {
        let mut json = Output {
            source,
            manifests: Vec::new(),
            errors: Vec::new(),
        };
        parse_json(&mut json, text);
        // `[a, b]` is also YAML flow syntax; if JSON cannot read it, YAML may.
        let json_syntax_error = json
            .errors
            .iter()
            .any(|e| e.error.line.is_some() && e.error.field.is_empty());
        if json_syntax_error {
            parse_yaml(&mut out, text);
            if out.errors.is_empty() {
                return Ok(out.manifests);
            }
        }
        out = json;
    } else {
        parse_yaml(&mut out, text);
    }
    if out.errors.is_empty() {
        Ok(out.manifests)
    } else {
        Err(out.errors)
    }
}

struct Output<'a> {
    source: &'a str,
    manifests: Vec<Manifest>,
    errors: Vec<ManifestError>,
}

impl Output<'_> {
    fn error(&mut self, doc: usize, error: FieldError) {
        self.errors.push(ManifestError {
            source: self.source.to_string(),
            doc,
            error,
        });
    }

    /// Decodes one document, expanding lists, locating field errors with `locate`.
    fn document(
        &mut self,
        doc: usize,
        value: serde_json::Value,
        locate: &dyn Fn(&str) -> Option<(usize, usize)>,
    ) {
        let list_items = match &value {
            serde_json::Value::Object(map) => {
                let is_list = map
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .is_some_and(|k| k.ends_with("List"));
                if is_list && map.get("items").is_some_and(|i| i.is_array()) {
                    map.get("items").and_then(|i| i.as_array()).cloned()
                } else {
                    None
                }
            }
            _ => None,
        };
        let objects: Vec<(String, serde_json::Value)> = match list_items {
            Some(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| (format!("items[{i}]"), item))
                .collect(),
            None => vec![(String::new(), value)],
        };
        for (prefix, value) in objects {
            match object_from_value(value) {
                Ok(object) => self.manifests.push(Manifest {
                    source: self.source.to_string(),
                    doc,
                    object,
                }),
                Err(errors) => {
                    let errors = if prefix.is_empty() {
                        errors
                    } else {
                        errors.prefixed(&prefix)
                    };
                    self.field_errors(doc, errors, locate);
                }
            }
        }
    }

    fn field_errors(
        &mut self,
        doc: usize,
        errors: FieldErrors,
        locate: &dyn Fn(&str) -> Option<(usize, usize)>,
    ) {
        for mut e in errors {
            if e.line.is_none()
                && let Some((line, column)) = locate(&e.field)
            {
                e.line = Some(line);
                e.column = Some(column);
            }
            self.error(doc, e);
        }
    }
}

/// A syntax error with its position taken out of the message (the caller prints it first).
fn syntax_error(message: &str, line: usize, column: usize) -> FieldError {
    let own = format!(" at line {line} column {column}");
    let message = message.replacen(&own, "", 1);
    let mut error = FieldError::new("", message);
    error.line = Some(line);
    error.column = Some(column);
    error
}

fn parse_json(out: &mut Output<'_>, text: &str) {
    let mut doc = 0;
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for value in stream {
        match value {
            Ok(serde_json::Value::Array(items)) => {
                for item in items {
                    doc += 1;
                    out.document(doc, item, &|_| None);
                }
            }
            Ok(value) => {
                doc += 1;
                out.document(doc, value, &|_| None);
            }
            Err(e) => {
                out.error(doc + 1, syntax_error(&e.to_string(), e.line(), e.column()));
                break;
            }
        }
    }
}

/// Whether a line is a document separator (`---`, optionally followed by content).
fn is_separator(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Whether a line carries nothing (blank, a comment, or the `...` end marker).
fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t == "..."
}

fn parse_yaml(out: &mut Output<'_>, text: &str) {
    let lines: Vec<&str> = text.split('\n').collect();
    // Documents as line ranges [start, end); `start` may be a separator line.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        if is_separator(line) {
            ranges.push((start, i));
            start = i;
        }
    }
    ranges.push((start, lines.len()));
    // Text before the first separator is a document only if it has content.
    if ranges.len() > 1 && lines[ranges[0].0..ranges[0].1].iter().all(|l| is_blank(l)) {
        ranges.remove(0);
    }
    for (index, &(start, end)) in ranges.iter().enumerate() {
        let doc = index + 1;
        if lines[start..end].iter().enumerate().all(|(i, l)| {
            if i == 0 && is_separator(l) {
                is_blank(&l[3..])
            } else {
                is_blank(l)
            }
        }) {
            continue;
        }
        // Keep line and column numbers absolute: blank out everything before the document
        // and the `---` marker itself.
        let mut padded = "\n".repeat(start);
        for (i, line) in lines[start..end].iter().enumerate() {
            if i == 0 && is_separator(line) {
                padded.push_str("   ");
                padded.push_str(&line[3..]);
            } else {
                padded.push_str(line);
            }
            padded.push('\n');
        }
        let locate = |field: &str| locate_yaml(&lines, start, end, field);
        // The budget is the document's own size, not the padding's.
        let budget = yaml::budget(padded.len() - start);
        match yaml::from_str_with_budget(&padded, budget) {
            Ok(serde_json::Value::Null) => {}
            Ok(value) => out.document(doc, value, &locate),
            Err(e) => {
                let error = match e.location() {
                    Some((line, column)) => syntax_error(&e.to_string(), line, column),
                    None => FieldError::new("", e.to_string()),
                };
                out.error(doc, error);
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some((n, after)) = r.split_once(']') else {
                break;
            };
            if let Ok(n) = n.parse() {
                out.push(Segment::Index(n));
            }
            rest = after;
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// If `line` has a mapping key starting at byte column `col` (after spaces and `- `
/// markers), the key.
fn key_at(line: &str, col: usize) -> Option<&str> {
    if col > line.len() || !line.is_char_boundary(col) {
        return None;
    }
    let (before, rest) = line.split_at(col);
    if !before.chars().all(|c| c == ' ' || c == '-') {
        return None;
    }
    let rest_unquoted = rest.trim_start_matches(['"', '\'']);
    let end = rest_unquoted.find(':')?;
    let key = rest_unquoted[..end].trim_end_matches(['"', '\'']);
    let after = &rest_unquoted[end + 1..];
    (after.is_empty() || after.starts_with([' ', '\t', '\r'])).then_some(key)
}

/// A dash item marker at column `col`.
fn item_at(line: &str, col: usize) -> bool {
    line.len() > col
        && line[..col].chars().all(|c| c == ' ' || c == '-')
        && line[col..].starts_with('-')
        && line[col + 1..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == '\r')
}

/// Best-effort line and column of a field path in a block-style YAML document: the
/// deepest segment found. Flow mappings (`{cpu: 1, memory: 2Gi}`) are searched on
/// their line.
fn locate_yaml(lines: &[&str], start: usize, end: usize, path: &str) -> Option<(usize, usize)> {
    let content = |i: usize| !is_blank(lines[i]) && !is_separator(lines[i]);
    let mut lo = start;
    let mut hi = end;
    // Column where the children of the current node start.
    let mut child_col = (lo..hi)
        .find(|&i| content(i))
        .map(|i| indent_of(lines[i]))?;
    let mut best: Option<(usize, usize)> = None;
    // Set when the current value is written inline (flow style): (line, byte offset).
    let mut inline: Option<(usize, usize)> = None;
    for seg in segments(path) {
        if let Some((line, from)) = inline {
            if let Segment::Key(k) = seg {
                let text = &lines[line][from..];
                let found = [format!("{{{k}:"), format!(" {k}:"), format!(",{k}:")]
                    .iter()
                    .filter_map(|p| text.find(p.as_str()).map(|i| i + 1))
                    .min();
                match found {
                    Some(i) => {
                        best = Some((line + 1, from + i + 1));
                        inline = Some((line, from + i + k.len()));
                    }
                    None => break,
                }
            }
            continue;
        }
        match seg {
            Segment::Key(k) => {
                let Some(i) =
                    (lo..hi).find(|&i| content(i) && key_at(lines[i], child_col) == Some(k))
                else {
                    break;
                };
                best = Some((i + 1, child_col + 1));
                let line = lines[i];
                let after_colon = line[child_col..].find(':').map(|c| child_col + c + 1);
                let value = after_colon.map(|c| line[c..].trim()).unwrap_or("");
                if !value.is_empty() && !value.starts_with('#') {
                    inline = Some((i, after_colon.unwrap_or(child_col)));
                    continue;
                }
                let key_col = child_col;
                lo = i + 1;
                hi = (lo..hi)
                    .find(|&j| {
                        content(j)
                            && (indent_of(lines[j]) < key_col
                                || (indent_of(lines[j]) == key_col && !item_at(lines[j], key_col)))
                    })
                    .unwrap_or(hi);
                match (lo..hi).find(|&j| content(j)) {
                    Some(j) => child_col = indent_of(lines[j]),
                    None => break,
                }
            }
            Segment::Index(n) => {
                let items: Vec<usize> =
                    (lo..hi).filter(|&j| item_at(lines[j], child_col)).collect();
                let Some(&i) = items.get(n) else { break };
                best = Some((i + 1, child_col + 1));
                let next = items.get(n + 1).copied().unwrap_or(hi);
                let rest = lines[i][child_col + 1..].trim_start();
                let item_col = lines[i].len() - rest.len();
                if rest.is_empty() {
                    lo = i + 1;
                    hi = next;
                    match (lo..hi).find(|&j| content(j)) {
                        Some(j) => child_col = indent_of(lines[j]),
                        None => break,
                    }
                } else if key_at(lines[i], item_col).is_some() {
                    lo = i;
                    hi = next;
                    child_col = item_col;
                } else {
                    inline = Some((i, item_col));
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: meridian.dev/v1
kind: Workload
metadata:
  name: payroll-api
  namespace: finance
spec:
  type: service
  task:
    driver: exec
    command: [/bin/app]
    resources: {cpu: 500m, memory: 256Mi}
";

    fn messages(r: Result<Vec<Manifest>, Vec<ManifestError>>) -> Vec<String> {
        r.unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn bad_quantity_in_doc_2() {
        let text = format!("{GOOD}---\n{}", GOOD.replace("256Mi", "12Zi"));
        let errors = parse_manifests("workloads.yaml", &text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            r#"workloads.yaml doc 2: spec.task.resources.memory: "12Zi" is not a quantity (use e.g. 512Mi, 4Gi)"#
        );
        // The line of the flow mapping, in file coordinates.
        assert_eq!(errors[0].error.line, Some(23));
    }

    #[test]
    fn unknown_field_with_suggestion_and_line() {
        let text = GOOD.replace("    command:", "    comand:");
        let errors = parse_manifests("w.yaml", &text).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            r#"w.yaml doc 1: spec.task.comand: unknown field (did you mean "command"?)"#
        );
        assert_eq!(errors[0].location(), Some((10, 5)));
    }

    #[test]
    fn syntax_error_has_absolute_line_and_other_docs_still_checked() {
        let bad = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata:\n  name: [x\n";
        let text = format!("{GOOD}---\n{bad}---\n{}", GOOD.replace("500m", "lots"));
        let errors = parse_manifests("w.yaml", &text).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let syntax = &errors[0];
        assert_eq!(syntax.doc, 2);
        assert!(syntax.error.line.unwrap() >= 15, "{syntax:?}");
        let s = syntax.to_string();
        assert!(
            s.starts_with(&format!(
                "w.yaml doc 2: line {} column ",
                syntax.error.line.unwrap()
            )),
            "{s}"
        );
        assert!(
            !s.contains(&format!(" at line {} column", syntax.error.line.unwrap())),
            "{s}"
        );
        assert_eq!(errors[1].doc, 3);
        assert!(
            errors[1]
                .to_string()
                .contains("spec.task.resources.cpu: \"lots\" is not a quantity")
        );
    }

    #[test]
    fn multi_doc_counting_skips_empty_documents() {
        let text = format!(
            "# leading comment\n---\n{GOOD}---\n# nothing here\n---\n---\n{}",
            GOOD.replace("payroll-api", "b")
        );
        let manifests = parse_manifests("w.yaml", &text).unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[0].doc, 1);
        assert_eq!(manifests[1].doc, 4);
        assert_eq!(manifests[1].object.name(), "b");
        let errs = parse_manifests("w.yaml", &format!("{text}---\nkind: Nope\n")).unwrap_err();
        assert_eq!(errs[0].doc, 5);
    }

    #[test]
    fn all_errors_across_documents() {
        let text = format!(
            "{}---\n{}",
            GOOD.replace("payroll-api", "Bad_Name"),
            GOOD.replace("service", "vm")
        );
        let errors = messages(parse_manifests("w.yaml", &text));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("w.yaml doc 1: metadata.name: \"Bad_Name\"")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("w.yaml doc 2: spec.task.driver")),
            "{errors:#?}"
        );
    }

    #[test]
    fn json_object_array_and_list() {
        let obj = r#"{"apiVersion":"meridian.dev/v1","kind":"Project","metadata":{"name":"a"}}"#;
        assert_eq!(parse_manifests("p.json", obj).unwrap().len(), 1);
        let arr = format!("[{obj}, {}]", obj.replace("\"a\"", "\"b\""));
        let m = parse_manifests("p.json", &arr).unwrap();
        assert_eq!((m[1].doc, m[1].object.name()), (2, "b"));
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{obj}, {}]}}"#,
            obj.replace("\"a\"", "\"Bad\"")
        );
        let e = messages(parse_manifests("p.json", &list));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.json doc 1: items[1].metadata.name: \"Bad\""),
            "{e:?}"
        );
        let typed_list = format!(
            r#"{{"apiVersion":"meridian.dev/v1","kind":"ProjectList","metadata":{{}},"items":[{obj}]}}"#
        );
        assert_eq!(parse_manifests("p.json", &typed_list).unwrap().len(), 1);
        let stream = format!("{obj}\n{}", obj.replace("\"a\"", "\"c\""));
        assert_eq!(parse_manifests("p.json", &stream).unwrap().len(), 2);
    }

    #[test]
    fn json_syntax_error() {
        let e = parse_manifests(
            "p.json",
            "{\n  \"kind\": \"Project\",\n  \"metadata\" {}\n}",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].error.line, Some(3));
        assert!(
            e[0].to_string().starts_with("p.json doc 1: line 3 column "),
            "{}",
            e[0]
        );
    }

    #[test]
    fn yaml_list_and_flow_sequence() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: meridian.dev/v1\n  kind: Project\n  metadata: {name: a}\n";
        assert_eq!(parse_manifests("l.yaml", list).unwrap().len(), 1);
        let e = parse_manifests("l.yaml", &list.replace("name: a", "name: A")).unwrap_err();
        assert_eq!(e[0].error.field, "items[0].metadata.name");
        assert_eq!(e[0].error.line, Some(6));
    }

    #[test]
    fn no_is_a_string_in_yaml() {
        let text = "apiVersion: meridian.dev/v1\nkind: Project\nmetadata: {name: nordics}\nspec:\n  allowedLocations: [NO, SE, DK]\n";
        let m = parse_manifests("p.yaml", text).unwrap();
        let crate::AnyObject::Project(p) = &m[0].object else {
            panic!()
        };
        assert_eq!(p.spec.allowed_locations, ["NO", "SE", "DK"]);
    }

    #[test]
    fn alias_bomb_is_refused_with_doc_and_line_others_still_parsed() {
        let text = format!("{GOOD}---\n{}", crate::yaml::tests::billion_laughs());
        let errors = parse_manifests("bomb.yaml", &text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].doc, 2);
        let message = errors[0].to_string();
        assert!(
            message.starts_with("bomb.yaml doc 2: YAML aliases expand beyond the limit"),
            "{message}"
        );
    }

    #[test]
    fn anchors_and_merge_keys_work_in_manifests() {
        let text = "apiVersion: meridian.dev/v1\nkind: Workload\nmetadata:\n  name: a\n  namespace: finance\n\
                    spec:\n  type: service\n  task: &task\n    driver: exec\n    command: [/bin/app]\n    \
                    resources: &small {cpu: 500m, memory: 256Mi}\n---\napiVersion: meridian.dev/v1\n\
                    kind: Workload\nmetadata:\n  name: b\n  namespace: finance\n  labels: &labels {team: payroll}\n  \
                    annotations: *labels\nspec:\n  type: service\n  \
                    task:\n    <<: {driver: exec, resources: {cpu: 1, memory: 1Gi}}\n    command: [/bin/b]\n";
        let manifests = parse_manifests("w.yaml", text).unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[1].object.meta().annotations["team"], "payroll");
        // Anchors do not cross documents.
        let bad = format!("{text}---\n{}", "a: *small\n");
        let errors = parse_manifests("w.yaml", &bad).unwrap_err();
        assert_eq!(errors[0].doc, 3);
    }

    #[test]
    fn locator() {
        let text = "spec:\n  task:\n    command:\n    - a\n    - b\n  placement:\n    preferences:\n    - weight: 500\n      matchExpressions:\n      - key: x\n        operator: In\n";
        let lines: Vec<&str> = text.split('\n').collect();
        let l = |p: &str| locate_yaml(&lines, 0, lines.len(), p);
        assert_eq!(l("spec.task.command[1]"), Some((5, 5)));
        assert_eq!(l("spec.placement.preferences[0].weight"), Some((8, 7)));
        assert_eq!(
            l("spec.placement.preferences[0].matchExpressions[0].operator"),
            Some((11, 9))
        );
        assert_eq!(l("spec.task.missing"), Some((2, 3)));
        assert_eq!(l("nothing"), None);
    }
}
