//! Errors: [`CompileError`] (a policy refused when it is stored) and [`EvalError`] /
//! [`PolicyError`] (a policy that could not be evaluated on one input).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use api::kinds::Enforcement;

use crate::compat::Prepared;

/// What kind of problem made a policy uncompilable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompileErrorKind {
    /// The Rego does not parse.
    Syntax,
    /// The Rego parses but does not compile (unknown function, unsafe variable, conflicting
    /// rules, an error while evaluating it on an empty input).
    Semantic,
    /// The module does not follow Meridian's contract (no `deny` or `violation` rule, a
    /// package that is not a dotted path of identifiers).
    Contract,
    /// Another field of the spec is wrong (targets, parameters, the Rego version annotation).
    Spec,
}

/// A policy that cannot be compiled, with where and why, for the `Status` of a refused
/// `apply` (field `spec.rego`, line and column of the Rego source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// `metadata.name` of the policy.
    pub policy: String,
    pub kind: CompileErrorKind,
    /// The field of the Policy the error concerns (`spec.rego`, `spec.targets[0]`...).
    pub field: String,
    /// 1-based line in `spec.rego`.
    pub line: Option<u32>,
    /// 1-based column in `spec.rego`.
    pub column: Option<u32>,
    /// What is wrong and, where possible, what to do.
    pub message: String,
    /// The offending source line with a caret under the column, as regorus prints it.
    pub snippet: Option<String>,
}

impl CompileError {
    pub(crate) fn new(
        policy: &str,
        kind: CompileErrorKind,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CompileError {
            policy: policy.to_string(),
            kind,
            field: field.into(),
            line: None,
            column: None,
            message: message.into(),
            snippet: None,
        }
    }

    /// Builds an error from a regorus error, whose text looks like
    /// `\n--> file:4:5\n  |\n4 | x :=\n  |   ^\nerror: expecting ...`.
    pub(crate) fn from_regorus(
        policy: &str,
        kind: CompileErrorKind,
        err: &dyn fmt::Display,
    ) -> Self {
        let text = format!("{err:#}");
        let located = Located::parse(&text);
        CompileError {
            policy: policy.to_string(),
            kind,
            field: "spec.rego".into(),
            line: located.line,
            column: located.column,
            message: located.message,
            snippet: located.snippet,
        }
    }
}

impl CompileError {
    /// Moves a position reported on a module rewritten by [`crate::compat`] back to the
    /// source the user wrote, with that source's line as the snippet.
    pub(crate) fn relocate(&mut self, prepared: &Prepared, original: &str) {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            let column = prepared.original_position(line, column);
            self.column = Some(column);
            self.snippet = crate::compile::snippet(original, line, column);
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {:?}: {}", self.policy, self.field)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " line {l}, column {c}")?,
            (Some(l), None) => write!(f, " line {l}")?,
            _ => {}
        }
        write!(f, ": {}", self.message)?;
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileError {}

/// Why one evaluation of one policy failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The evaluation ran over the time limit and was stopped.
    #[error(
        "evaluation ran over its time limit of {} ms and was stopped (a loop over a large collection, or a recursion?)",
        limit.as_millis()
    )]
    TimedOut { limit: Duration },
    /// A runtime error in the Rego (a builtin failing, conflicting values for a rule...).
    #[error("{}", fmt_located(message, *line, *column))]
    Runtime {
        message: String,
        line: Option<u32>,
        column: Option<u32>,
    },
}

fn fmt_located(message: &str, line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("Rego error at line {l}, column {c}: {message}"),
        _ => format!("Rego error: {message}"),
    }
}

impl EvalError {
    pub(crate) fn runtime(text: &str) -> Self {
        let located = Located::parse(text);
        EvalError::Runtime {
            message: located.message,
            line: located.line,
            column: located.column,
        }
    }

    /// The same error with its column moved back to the source the user wrote.
    pub(crate) fn relocated(self, prepared: &Prepared) -> Self {
        match self {
            EvalError::Runtime {
                message,
                line: Some(line),
                column: Some(column),
            } => EvalError::Runtime {
                message,
                line: Some(line),
                column: Some(prepared.original_position(line, column)),
            },
            other => other,
        }
    }

    /// Whether the policy ran over its time limit.
    pub fn is_timeout(&self) -> bool {
        matches!(self, EvalError::TimedOut { .. })
    }
}

/// A policy that could not be evaluated on an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub policy: Arc<str>,
    pub enforcement: Enforcement,
    pub error: EvalError,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {:?} ({}) could not be evaluated: {}",
            &*self.policy, self.enforcement, self.error
        )
    }
}

impl std::error::Error for PolicyError {}

/// A regorus message split into location, snippet and message.
struct Located {
    line: Option<u32>,
    column: Option<u32>,
    message: String,
    snippet: Option<String>,
}

impl Located {
    fn parse(text: &str) -> Located {
        let mut line = None;
        let mut column = None;
        let mut message = None;
        let mut snippet = Vec::new();
        for l in text.lines() {
            if let Some(loc) = l.trim_start().strip_prefix("--> ") {
                // `file:line:col`; the file name may itself contain ':'.
                let mut parts = loc.rsplitn(3, ':');
                column = parts.next().and_then(|c| c.trim().parse().ok());
                line = parts.next().and_then(|c| c.trim().parse().ok());
            } else if let Some(m) = l.strip_prefix("error: ") {
                message = Some(m.trim().to_string());
            } else if line.is_some() && message.is_none() && !l.trim().is_empty() {
                snippet.push(l.to_string());
            }
        }
        match message {
            Some(message) if line.is_some() => Located {
                line,
                column,
                message,
                snippet: (!snippet.is_empty()).then(|| snippet.join("\n")),
            },
            _ => Located {
                line: None,
                column: None,
                message: text.trim().to_string(),
                snippet: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regorus_locations() {
        let text =
            "\n--> p.rego:4:5\n  |\n4 |   x := \n  |     ^\nerror: expecting `}` while parsing set";
        let l = Located::parse(text);
        assert_eq!((l.line, l.column), (Some(4), Some(5)));
        assert_eq!(l.message, "expecting `}` while parsing set");
        assert!(l.snippet.unwrap().contains("4 |   x :="));

        let l = Located::parse("execution exceeded time limit");
        assert_eq!(l.line, None);
        assert_eq!(l.message, "execution exceeded time limit");
    }
}
