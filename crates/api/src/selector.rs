//! Selectors: kubectl's `-l` label selectors ([`LabelSelector`]), `matchExpressions` as in
//! Kubernetes node affinity ([`MatchExpression`], used by workload placement), and field
//! selectors (`metadata.name=x`, [`FieldSelector`]).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A selector that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?}: {message}")]
pub struct SelectorError {
    pub input: String,
    pub message: String,
}

/// The operator of a [`Requirement`] in a label selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorOp {
    /// `a=b` or `a==b`
    Equals,
    /// `a!=b` (also matches objects without the label, as in Kubernetes)
    NotEquals,
    /// `a in (x,y)`
    In,
    /// `a notin (x,y)` (also matches objects without the label)
    NotIn,
    /// `a`
    Exists,
    /// `!a`
    DoesNotExist,
}

/// One comma-separated term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: SelectorOp,
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a label value (or its absence) satisfies this term.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self.op {
            SelectorOp::Equals | SelectorOp::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            SelectorOp::NotEquals | SelectorOp::NotIn => {
                !value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            SelectorOp::Exists => value.is_some(),
            SelectorOp::DoesNotExist => value.is_none(),
        }
    }
}

/// A kubectl label selector: `tier=core,env!=dev,zone in (a,b),gpu,!legacy`.
/// The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

fn selector_error(input: &str, message: impl Into<String>) -> SelectorError {
    SelectorError {
        input: input.to_string(),
        message: message.into(),
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A small cursor over the selector text.
struct Cursor<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }
    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }
    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }
    /// Whether the next word is `word` followed by a non-word character.
    fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.starts_with(word) && !rest[word.len()..].chars().next().is_some_and(is_value_char) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }
}

impl LabelSelector {
    /// Parses kubectl `-l` syntax.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let mut c = Cursor { input, pos: 0 };
        let mut requirements = Vec::new();
        c.skip_ws();
        if c.at_end() {
            return Ok(LabelSelector::default());
        }
        loop {
            c.skip_ws();
            let negated = c.eat("!");
            c.skip_ws();
            let key = c.take_while(is_key_char);
            if key.is_empty() {
                return Err(selector_error(
                    input,
                    format!("expected a label key at position {}", c.pos + 1),
                ));
            }
            if let Err(msg) = crate::validate::check_label_key(key) {
                return Err(selector_error(input, format!("label key {key:?}: {msg}")));
            }
            c.skip_ws();
            let requirement = if negated {
                Requirement {
                    key: key.to_string(),
                    op: SelectorOp::DoesNotExist,
                    values: vec![],
                }
            } else if c.eat("==") || c.eat("=") {
                c.skip_ws();
                let value = c.take_while(is_value_char);
                Requirement {
                    key: key.to_string(),
                    op: SelectorOp::Equals,
                    values: vec![value.to_string()],
                }
            } else if c.eat("!=") {
                c.skip_ws();
                let value = c.take_while(is_value_char);
                Requirement {
                    key: key.to_string(),
                    op: SelectorOp::NotEquals,
                    values: vec![value.to_string()],
                }
            } else if c.eat_word("in") || c.eat_word("notin") {
                let op = if c.input[..c.pos].ends_with("notin") {
                    SelectorOp::NotIn
                } else {
                    SelectorOp::In
                };
                c.skip_ws();
                if !c.eat("(") {
                    return Err(selector_error(
                        input,
                        format!("expected '(' after {key:?} in/notin"),
                    ));
                }
                let mut values = Vec::new();
                loop {
                    c.skip_ws();
                    let value = c.take_while(is_value_char);
                    values.push(value.to_string());
                    c.skip_ws();
                    if c.eat(")") {
                        break;
                    }
                    if !c.eat(",") {
                        return Err(selector_error(
                            input,
                            format!("expected ',' or ')' in the value list of {key:?}"),
                        ));
                    }
                }
                values.retain(|v| !v.is_empty());
                if values.is_empty() {
                    return Err(selector_error(
                        input,
                        format!("the value list of {key:?} is empty"),
                    ));
                }
                Requirement {
                    key: key.to_string(),
                    op,
                    values,
                }
            } else {
                Requirement {
                    key: key.to_string(),
                    op: SelectorOp::Exists,
                    values: vec![],
                }
            };
            for v in &requirement.values {
                if let Err(msg) = crate::validate::check_label_value(v) {
                    return Err(selector_error(input, format!("value {v:?}: {msg}")));
                }
            }
            requirements.push(requirement);
            c.skip_ws();
            if c.at_end() {
                break;
            }
            if !c.eat(",") {
                return Err(selector_error(
                    input,
                    format!(
                        "unexpected {:?} at position {} (terms are separated by ',')",
                        c.rest().chars().next().unwrap_or(' '),
                        c.pos + 1
                    ),
                ));
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// A selector requiring each `key=value`.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
        LabelSelector {
            requirements: labels
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: SelectorOp::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
        }
    }

    /// Whether labels satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(labels.get(&r.key).map(String::as_str)))
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.op {
                SelectorOp::Equals => write!(f, "{}={}", r.key, r.values[0])?,
                SelectorOp::NotEquals => write!(f, "{}!={}", r.key, r.values[0])?,
                SelectorOp::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                SelectorOp::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                SelectorOp::Exists => write!(f, "{}", r.key)?,
                SelectorOp::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

/// Operator of a [`MatchExpression`], as in Kubernetes node affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The value, as an integer, is greater than the single integer in `values`.
    Gt,
    /// The value, as an integer, is less than the single integer in `values`.
    Lt,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
        })
    }
}

/// Strings that YAML authors may write as numbers or booleans (`values: [8]`).
pub(crate) fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    let raw = Vec::<Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|s| match s {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::U(u) => u.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        })
        .collect())
}

/// `{key, operator, values}`: a requirement on one attribute of a node or its site
/// (`site.provider`, `node.os.family`, a node label...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchExpression {
    pub key: String,
    pub operator: Operator,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_strings"
    )]
    pub values: Vec<String>,
}

impl MatchExpression {
    /// An expression.
    pub fn new(key: &str, operator: Operator, values: &[&str]) -> Self {
        MatchExpression {
            key: key.to_string(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// Whether an attribute value (or its absence) satisfies the expression. `NotIn` and
    /// `DoesNotExist` match an absent attribute; `Gt`/`Lt` need both sides to be integers.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => !value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.trim().parse::<i64>(), bound.trim().parse::<i64>())
                else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }

    /// Checks that the values fit the operator; the message says what to write.
    pub fn check(&self) -> Result<(), String> {
        if self.key.trim().is_empty() {
            return Err("key must not be empty".to_string());
        }
        match self.operator {
            Operator::In | Operator::NotIn if self.values.is_empty() => Err(format!(
                "operator {} needs at least one value in values",
                self.operator
            )),
            Operator::Exists | Operator::DoesNotExist if !self.values.is_empty() => Err(format!(
                "operator {} takes no values; remove values",
                self.operator
            )),
            Operator::Gt | Operator::Lt
                if self.values.len() != 1 || self.values[0].trim().parse::<i64>().is_err() =>
            {
                Err(format!(
                    "operator {} needs exactly one integer value, e.g. values: [\"8\"]",
                    self.operator
                ))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for MatchExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists | Operator::DoesNotExist => {
                write!(f, "{} {}", self.key, self.operator)
            }
            _ => write!(
                f,
                "{} {} [{}]",
                self.key,
                self.operator,
                self.values.join(", ")
            ),
        }
    }
}

/// One term of a [`FieldSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// Dotted path, e.g. `metadata.name` or `spec.node`.
    pub path: String,
    /// `false` for `=`/`==`, `true` for `!=`.
    pub negated: bool,
    pub value: String,
}

/// A kubectl field selector: `metadata.name=x,metadata.namespace!=y`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `path=value`, `path==value`, `path!=value` terms separated by commas. Empty
    /// terms are skipped, as Kubernetes' `fields.ParseSelector` does: kr8s asks for one
    /// object by name with `metadata.name=NAME,`.
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for term in input.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            // As Kubernetes does: the term splits at the first operator, so `a=x!=y` is
            // `a` equal to `x!=y`.
            let split = term.char_indices().find_map(|(i, _)| {
                let rest = &term[i..];
                ["!=", "==", "="]
                    .into_iter()
                    .find(|op| rest.starts_with(op))
                    .map(|op| (&term[..i], op == "!=", &rest[op.len()..]))
            });
            let Some((path, negated, value)) = split else {
                return Err(selector_error(
                    input,
                    format!("{term:?} is not path=value or path!=value"),
                ));
            };
            let path = path.trim();
            if path.is_empty()
                || !path.split('.').all(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                })
            {
                return Err(selector_error(
                    input,
                    format!("{path:?} is not a field path such as metadata.name"),
                ));
            }
            requirements.push(FieldRequirement {
                path: path.to_string(),
                negated,
                value: value.trim().to_string(),
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether an object (as JSON) satisfies every term. A missing field reads as `""`.
    pub fn matches(&self, object: &serde_json::Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_string(object, &r.path);
            (actual == r.value) != r.negated
        })
    }

    /// The value required by an `=` term on `path`, if any (for index look-ups such as
    /// `metadata.name` or `spec.node`).
    pub fn equals(&self, path: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.path == path && !r.negated)
            .map(|r| r.value.as_str())
    }
}

/// The value at a dotted path, as a string (`""` when missing or not a scalar).
pub fn field_string(object: &serde_json::Value, path: &str) -> String {
    let mut v = object;
    for segment in path.split('.') {
        match v.get(segment) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // `==` when the value starts with `=`, which `=` would swallow into the operator.
            let op = match (r.negated, r.value.starts_with('=')) {
                (true, _) => "!=",
                (false, false) => "=",
                (false, true) => "==",
            };
            write!(f, "{}{op}{}", r.path, r.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_operator() {
        let l = labels(&[("tier", "core"), ("env", "prod"), ("zone", "a")]);
        let yes = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(yes(""));
        assert!(yes("tier=core"));
        assert!(yes("tier==core"));
        assert!(!yes("tier=edge"));
        assert!(yes("env!=dev"));
        assert!(!yes("env!=prod"));
        assert!(yes("missing!=x"), "!= matches absent labels");
        assert!(yes("zone in (a, b)"));
        assert!(!yes("zone in (b)"));
        assert!(yes("zone notin (b,c)"));
        assert!(!yes("zone notin (a)"));
        assert!(yes("missing notin (a)"));
        assert!(yes("tier"));
        assert!(!yes("missing"));
        assert!(yes("!missing"));
        assert!(!yes("!tier"));
        assert!(yes("tier=core, env in (prod), !legacy,zone"));
        assert!(!yes("tier=core,env=dev"));
        assert!(yes("meridian.dev/x notin (y)"));
    }

    #[test]
    fn parse_errors_and_display() {
        for bad in [
            "=x", "a in x", "a in (x", "a in ()", "a b", "a=b,", "a=b c", "A B=c",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        let s = LabelSelector::parse("a=b,c!=d,e in (f,g),h notin (i),j,!k").unwrap();
        assert_eq!(s.to_string(), "a=b,c!=d,e in (f,g),h notin (i),j,!k");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
        let e = LabelSelector::parse("a in x").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid selector \"a in x\": "),
            "{e}"
        );
        // A key called `in` still works.
        assert!(LabelSelector::parse("inside=1").is_ok());
    }

    #[test]
    fn match_expressions() {
        let e = MatchExpression::new("site.provider", Operator::NotIn, &["aws"]);
        assert!(e.matches(Some("azure")));
        assert!(!e.matches(Some("aws")));
        assert!(e.matches(None));
        let e = MatchExpression::new("k", Operator::In, &["a", "b"]);
        assert!(e.matches(Some("b")) && !e.matches(None) && !e.matches(Some("c")));
        let e = MatchExpression::new("k", Operator::Exists, &[]);
        assert!(e.matches(Some("")) && !e.matches(None));
        let e = MatchExpression::new("k", Operator::DoesNotExist, &[]);
        assert!(!e.matches(Some("")) && e.matches(None));
        let e = MatchExpression::new("gpus", Operator::Gt, &["4"]);
        assert!(e.matches(Some("8")) && !e.matches(Some("4")) && !e.matches(Some("x")));
        assert!(!e.matches(None));
        let e = MatchExpression::new("gpus", Operator::Lt, &["4"]);
        assert!(e.matches(Some("-1")) && !e.matches(Some("10")));
        assert!(
            MatchExpression::new("k", Operator::In, &[])
                .check()
                .is_err()
        );
        assert!(
            MatchExpression::new("k", Operator::Exists, &["a"])
                .check()
                .is_err()
        );
        assert!(
            MatchExpression::new("k", Operator::Gt, &["a"])
                .check()
                .is_err()
        );
        assert!(
            MatchExpression::new("k", Operator::Gt, &["1"])
                .check()
                .is_ok()
        );
        let parsed: MatchExpression =
            serde_json::from_value(json!({"key": "gpus", "operator": "Gt", "values": [8]}))
                .unwrap();
        assert_eq!(parsed.values, vec!["8"]);
    }

    #[test]
    fn field_selectors() {
        let obj =
            json!({"metadata": {"name": "x", "namespace": "finance"}, "spec": {"replica": 2}});
        let yes = |s: &str| FieldSelector::parse(s).unwrap().matches(&obj);
        assert!(yes("metadata.name=x"));
        assert!(yes("metadata.name==x"));
        assert!(!yes("metadata.name=y"));
        assert!(yes("metadata.namespace!=research"));
        assert!(yes("metadata.name=x,metadata.namespace=finance"));
        assert!(!yes("metadata.name=x,metadata.namespace!=finance"));
        assert!(yes("spec.replica=2"));
        assert!(yes("spec.missing="));
        assert!(FieldSelector::parse("metadata.name").is_err());
        // Empty terms are skipped, as Kubernetes does (kr8s sends `metadata.name=x,`).
        assert_eq!(
            FieldSelector::parse("metadata.name=a,"),
            FieldSelector::parse("metadata.name=a")
        );
        assert_eq!(FieldSelector::parse(",,"), Ok(FieldSelector::default()));
        assert!(FieldSelector::parse("a..b=c").is_err());
        let f = FieldSelector::parse("spec.node=n1,metadata.name!=a").unwrap();
        assert_eq!(f.equals("spec.node"), Some("n1"));
        assert_eq!(f.equals("metadata.name"), None);
        assert_eq!(f.to_string(), "spec.node=n1,metadata.name!=a");
    }

    #[test]
    fn field_selector_splits_at_the_first_operator_and_displays_back() {
        let f = FieldSelector::parse("a=x!=y").unwrap();
        assert_eq!(
            (f.requirements[0].negated, &*f.requirements[0].value),
            (false, "x!=y")
        );
        // Found by crates/api/tests/fuzz.rs: `a= =b` is `a` equal to `=b`, shown as `a===b`.
        let f = FieldSelector::parse("a= =b").unwrap();
        assert_eq!(f.requirements[0].value, "=b");
        assert_eq!(f.to_string(), "a===b");
        assert_eq!(FieldSelector::parse(&f.to_string()), Ok(f));
    }
}
