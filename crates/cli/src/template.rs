//! kubectl's `-o jsonpath=TEMPLATE` and `-o custom-columns=SPEC`.
//!
//! A template is text with `{…}` actions, as kubectl's: `{.metadata.name}` (a JSONPath
//! relative to the current object; several results are joined by spaces, strings printed
//! raw, anything else as JSON), `{"\n"}` (a string literal), and `{range EXPR}…{end}`
//! (the body once per result of `EXPR`, which becomes the current object). Expressions
//! are RFC 9535 JSONPath (`serde_json_path`) with kubectl's leading `.` for `$.`;
//! kubectl's filters `[?(@.x=="y")]` are RFC 9535 filters already.

use serde_json::Value;
use serde_json_path::JsonPath;

/// A parsed `-o` value of `get`.
#[derive(Debug, Clone)]
pub enum Format {
    JsonPath(Template),
    CustomColumns(Vec<(String, JsonPath)>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template(Vec<Node>);

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Path(JsonPath),
    Range(JsonPath, Vec<Node>),
}

/// `.a.b` → `$.a.b`; `{$.a}` stays; `[0]` → `$[0]`; `.` alone is the current object.
fn compile(expr: &str) -> Result<JsonPath, String> {
    let e = expr.trim();
    let full = if e.starts_with('$') {
        e.to_owned()
    } else if e == "." || e == "@" {
        "$".to_owned()
    } else if e.starts_with('.') || e.starts_with('[') {
        format!("${e}")
    } else {
        format!("$.{e}")
    };
    JsonPath::parse(&full).map_err(|err| format!("{expr:?} is not a JSONPath expression: {err}"))
}

impl Template {
    /// Parses `TEMPLATE` of `-o jsonpath=TEMPLATE`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut stack: Vec<(Option<JsonPath>, Vec<Node>)> = vec![(None, Vec::new())];
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Node::Text(rest.to_owned()));
                break;
            };
            if open > 0 {
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Node::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = closing(after).ok_or_else(|| {
                format!("unclosed action at {:?}: add the missing }}", &rest[open..])
            })?;
            let action = after[..close].trim();
            rest = &after[close + 1..];
            if let Some(expr) = action.strip_prefix("range ") {
                stack.push((Some(compile(expr)?), Vec::new()));
            } else if action == "end" {
                if stack.len() == 1 {
                    return Err("{end} without {range …}".to_owned());
                }
                let (path, body) = stack.pop().expect("a range");
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Node::Range(path.expect("ranges have paths"), body));
            } else if let Some(literal) = string_literal(action) {
                stack.last_mut().expect("root").1.push(Node::Text(literal));
            } else if action.is_empty() {
                return Err("an empty action {}: write a JSONPath such as {.metadata.name}".into());
            } else {
                stack
                    .last_mut()
                    .expect("root")
                    .1
                    .push(Node::Path(compile(action)?));
            }
        }
        if stack.len() > 1 {
            return Err("{range …} without {end}".to_owned());
        }
        Ok(Template(stack.pop().expect("root").1))
    }

    /// The template applied to `root`.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render(&self.0, root, &mut out);
        out
    }
}

/// The position of the `}` closing an action, skipping those inside string literals.
fn closing(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => return Some(i),
            None => {}
        }
    }
    None
}

/// `"text"` with `\n`, `\t`, `\"` and `\\`, as kubectl's `{"\n"}`.
fn string_literal(action: &str) -> Option<String> {
    let inner = action.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render(nodes: &[Node], current: &Value, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let found: Vec<String> = p.query(current).all().into_iter().map(text_of).collect();
                out.push_str(&found.join(" "));
            }
            Node::Range(p, body) => {
                for item in p.query(current).all() {
                    render(body, item, out);
                }
            }
        }
    }
}

/// Parses `NAME:EXPR,NAME:EXPR` of `-o custom-columns=`.
pub fn parse_columns(spec: &str) -> Result<Vec<(String, JsonPath)>, String> {
    let mut columns = Vec::new();
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, expr) = part.split_once(':').ok_or_else(|| {
            format!("custom-columns: {part:?} is not NAME:EXPRESSION (e.g. NAME:.metadata.name)")
        })?;
        let expr = expr.trim();
        let expr = expr
            .strip_prefix('{')
            .and_then(|e| e.strip_suffix('}'))
            .unwrap_or(expr);
        columns.push((name.trim().to_owned(), compile(expr)?));
    }
    if columns.is_empty() {
        return Err("custom-columns: give at least one NAME:EXPRESSION".into());
    }
    Ok(columns)
}

/// One row of custom columns for `object`: several results joined by commas, none as
/// `<none>`.
pub fn column_cells(columns: &[(String, JsonPath)], object: &Value) -> Vec<String> {
    columns
        .iter()
        .map(|(_, p)| {
            let found: Vec<String> = p.query(object).all().into_iter().map(text_of).collect();
            if found.is_empty() {
                "<none>".to_owned()
            } else {
                found.join(",")
            }
        })
        .collect()
}

/// Parses `-o jsonpath=…` or `-o custom-columns=…`.
pub fn parse_format(value: &str) -> Result<Format, String> {
    if let Some(t) = value.strip_prefix("jsonpath=") {
        return Template::parse(t).map(Format::JsonPath);
    }
    if let Some(c) = value.strip_prefix("custom-columns=") {
        return parse_columns(c).map(Format::CustomColumns);
    }
    Err(format!("unknown output format {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app": "x"}}, "spec": {"replicas": 2}},
            {"metadata": {"name": "b"}, "spec": {"replicas": 0}}
        ]})
    }

    #[test]
    fn kubectl_templates_render() {
        let t = Template::parse("{.items[*].metadata.name}").unwrap();
        assert_eq!(t.render(&list()), "a b");
        let t = Template::parse(
            r#"{range .items[*]}{.metadata.name}{"\t"}{.spec.replicas}{"\n"}{end}"#,
        )
        .unwrap();
        assert_eq!(t.render(&list()), "a\t2\nb\t0\n");
        let t = Template::parse("name={.items[0].metadata.name}!").unwrap();
        assert_eq!(t.render(&list()), "name=a!");
        let t = Template::parse(r#"{.items[?(@.spec.replicas>0)].metadata.name}"#).unwrap();
        assert_eq!(t.render(&list()), "a");
        let t = Template::parse("{.items[0].metadata.labels}").unwrap();
        assert_eq!(t.render(&list()), r#"{"app":"x"}"#);
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(Template::parse("{.a").unwrap_err().contains("unclosed"));
        assert!(
            Template::parse("{range .items[*]}x")
                .unwrap_err()
                .contains("without {end}")
        );
        assert!(
            Template::parse("{end}")
                .unwrap_err()
                .contains("without {range")
        );
        assert!(
            Template::parse("{.a[}")
                .unwrap_err()
                .contains("not a JSONPath")
        );
    }

    #[test]
    fn custom_columns() {
        let cols = parse_columns("NAME:.metadata.name,APP:.metadata.labels.app").unwrap();
        let items = list();
        let rows: Vec<Vec<String>> = items["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| column_cells(&cols, o))
            .collect();
        assert_eq!(rows, vec![vec!["a", "x"], vec!["b", "<none>"]]);
        assert!(
            parse_columns("NAME")
                .unwrap_err()
                .contains("NAME:EXPRESSION")
        );
    }
}
