//! Why a policy did or did not fire on one input (`meridian policy eval --explain`): for
//! every body of its `deny`/`violation` rules, whether it held and, when it did not, the
//! first statement that failed — the part of `opa eval --explain fails|full` people read.
//!
//! Each prefix `s1; …; sk` of a body is evaluated as a rule of its own, added to a clone of
//! the policy's prepared engine in the policy's package (so its rules, imports and
//! parameters resolve as in the body); the first prefix with no solution names the
//! statement that failed. A prefix that cannot stand alone (Rego reorders statements, so
//! `sk` may use a variable a later statement binds) is skipped.

use regorus::Value;
use regorus::unstable::{Expr, Rule, RuleHead};
use serde::Serialize;

use crate::compat;
use crate::compile::{CompiledPolicy, VIOLATION_RULES};
use crate::error::EvalError;

/// What happened to one statement of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StatementOutcome {
    /// It held (for some binding of the statements before it).
    Held,
    /// The first statement with no solution: the body stops here.
    Failed,
    /// After the failing statement.
    NotReached,
}

/// One statement of a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementExplanation {
    /// 1-based line in `spec.rego`.
    pub line: u32,
    /// The statement as written.
    pub text: String,
    pub outcome: StatementOutcome,
}

/// One body of a violation rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BodyExplanation {
    /// `deny` or `violation`.
    pub rule: String,
    /// Line of the rule head.
    pub line: u32,
    /// Whether every statement held: the body produced a violation.
    pub held: bool,
    pub statements: Vec<StatementExplanation>,
}

impl CompiledPolicy {
    /// Explains every body of the policy's violation rules on `input` (the complete input
    /// document, as [`CompiledPolicy::evaluate`] takes it).
    pub fn explain(&self, input: &Value) -> Result<Vec<BodyExplanation>, EvalError> {
        let (engine, prepared, v0) = self.parts();
        let file = format!("{}.rego", self.name());
        let Some(module) = compat::parse(&file, &prepared.source, v0) else {
            return Ok(Vec::new());
        };
        let original = self.policy().spec.rego.as_str();
        let text = prepared.source.as_str();
        let imports: Vec<&str> = module
            .imports
            .iter()
            .map(|i| line_of(text, i.span.start as usize))
            .collect();
        let input = self.input_for(input);
        let mut out = Vec::new();
        for (r, rule) in module.policy.iter().enumerate() {
            let Rule::Spec { head, bodies, .. } = rule.as_ref() else {
                continue;
            };
            let (RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. }) = head else {
                continue;
            };
            let Expr::Var { span, .. } = refr.as_ref() else {
                continue;
            };
            let name = span.text();
            if !VIOLATION_RULES.contains(&name) {
                continue;
            }
            for (b, body) in bodies.iter().enumerate() {
                if body.is_else {
                    continue;
                }
                let stmts: Vec<(u32, &str)> = body
                    .query
                    .stmts
                    .iter()
                    .map(|s| {
                        let start = s.span.start as usize;
                        let end = statement_end(text, s);
                        (s.span.line, &text[start..end])
                    })
                    .collect();
                let mut failed = None;
                for k in 1..=stmts.len() {
                    let rule_name = format!("__meridian_explain_{r}_{b}_{k}");
                    let body_text: Vec<&str> = stmts[..k].iter().map(|(_, t)| *t).collect();
                    let module_text = format!(
                        "package {}\n{}\n{rule_name} {}{{\n{}\n}}\n",
                        self.package().trim_start_matches("data."),
                        imports.join("\n"),
                        if v0 { "= true " } else { "if " },
                        body_text.join("\n"),
                    );
                    let mut e = engine.clone();
                    e.set_rego_v0(v0);
                    if e.add_policy(format!("{rule_name}.rego"), module_text)
                        .is_err()
                    {
                        continue;
                    }
                    e.set_input(input.clone());
                    match e.eval_rule(format!("{}.{rule_name}", self.package())) {
                        Ok(Value::Bool(true)) => {}
                        Ok(_) => {
                            failed = Some(k);
                            break;
                        }
                        // A prefix that cannot stand alone (unsafe variable) or errors:
                        // judge it with the next one.
                        Err(_) => {}
                    }
                }
                let statements = stmts
                    .iter()
                    .enumerate()
                    .map(|(i, (line, _))| StatementExplanation {
                        line: *line,
                        text: original
                            .lines()
                            .nth((*line as usize).saturating_sub(1))
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                        outcome: match failed {
                            Some(k) if i + 1 == k => StatementOutcome::Failed,
                            Some(k) if i + 1 > k => StatementOutcome::NotReached,
                            _ => StatementOutcome::Held,
                        },
                    })
                    .collect();
                out.push(BodyExplanation {
                    rule: name.to_string(),
                    line: span.line,
                    held: failed.is_none(),
                    statements,
                });
            }
        }
        Ok(out)
    }
}

/// The whole source line holding `offset`.
fn line_of(text: &str, offset: usize) -> &str {
    let start = text[..offset].rfind('\n').map_or(0, |p| p + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |p| offset + p);
    &text[start..end]
}

/// End of a statement's source, its `with` modifiers and a closing quote included.
fn statement_end(text: &str, stmt: &regorus::unstable::LiteralStmt) -> usize {
    let mut end = stmt.span.end as usize;
    if let Some(w) = stmt.with_mods.last() {
        end = end.max(w.span.end as usize);
    }
    let bytes = text.as_bytes();
    let inner = &text[stmt.span.start as usize..end];
    if inner.matches('"').count() % 2 == 1 && bytes.get(end) == Some(&b'"') {
        end += 1;
    }
    end
}
