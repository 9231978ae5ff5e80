//! Rego as OPA means it: source rewrites and compile-time checks that make regorus
//! evaluate a module the way OPA 1.x does, where regorus differs.
//!
//! Every module Meridian compiles (policies, their libraries, test files) goes through
//! [`prepare`] before regorus sees it:
//!
//! 1. **A newline ends an expression.** A line that starts with `(` after a line ending in
//!    a term is a new expression in OPA; regorus reads it as a call of the term above. A
//!    `;` is inserted at the end of such a line when it is inside a body (innermost open
//!    bracket is `{`).
//! 2. **Negation binds its dynamic terms first.** OPA's compiler (stage
//!    `RewriteDynamicTerms`, with `RewriteExprTerms` for nested calls) binds the refs and
//!    nested calls of a negated call to variables *before* the `not`, so
//!    `not f(input.x.missing)` and `not obj[input.missing]` are undefined, not true (OPA
//!    issues #1877, #4743). Each such term gets a guard `_ = (term);` inserted before the
//!    `not` (repeating the literal's `with` modifiers); a brace-less rule body is wrapped in
//!    braces.
//! 3. **`sprintf` with too few arguments** prints Go's `%!v(MISSING)` in OPA; regorus
//!    raises an error. When the format is a string literal and the arguments an array
//!    literal (the common case), the verbs without an argument are rewritten to print
//!    the same text.
//!
//! Rewrites keep lines where they are (inserted text has no newline), so only columns on
//! a rewritten line move; [`Prepared::original_column`] maps a position in the rewritten
//! source back for error messages.
//!
//! [`check`] finds at compile time what OPA's compiler or a run would refuse later:
//! constant regular expressions that do not compile.

use std::collections::BTreeSet;

use regorus::Value;
use regorus::unstable::{
    Expr, Literal, LiteralStmt, Module, Parser, Query, Rule, RuleHead, Source,
};

/// A module ready for regorus: the rewritten source and where text was inserted.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub source: String,
    /// `(line, column in the rewritten source where the insertion starts, length)`,
    /// 1-based, in source order.
    shifts: Vec<(u32, u32, i64)>,
}

impl Prepared {
    /// The column in the original source of `column` on `line` of the rewritten one.
    pub fn original_column(&self, line: u32, column: u32) -> u32 {
        let mut col = i64::from(column);
        for &(l, c, len) in self.shifts.iter().rev() {
            if l == line && c < column {
                col -= len;
            }
        }
        u32::try_from(col.max(1)).unwrap_or(1)
    }

    /// The character column in the original source of a position regorus reports on the
    /// rewritten one (regorus counts a tab as four columns).
    pub fn original_position(&self, line: u32, regorus_column: u32) -> u32 {
        let text = self
            .source
            .lines()
            .nth((line as usize).saturating_sub(1))
            .unwrap_or_default();
        let mut col = 1u32;
        let mut chars = 1u32;
        for c in text.chars() {
            if col >= regorus_column {
                break;
            }
            col += if c == '\t' { 4 } else { 1 };
            chars += 1;
        }
        self.original_column(line, chars)
    }
}

/// A problem [`check`] found, with its position in the original source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Rewrites `source` (file name `file`, Rego v1 unless `v0`) as described in the module
/// doc. When it does not parse, it is returned unchanged: regorus then reports the error.
pub(crate) fn prepare(file: &str, source: &str, v0: bool) -> Prepared {
    let split = split_newline_calls(source);
    let Some(module) = parse(file, &split.source, v0) else {
        return split;
    };
    let mut edits = Vec::new();
    let mut walker = Walker {
        text: &split.source,
        names: global_names(&module),
        edits: &mut edits,
    };
    walk(&module, &split.source, &mut walker);
    apply(split, edits)
}

/// Compile-time checks of a prepared module (see the module doc).
pub(crate) fn check(file: &str, prepared: &Prepared, v0: bool) -> Vec<Finding> {
    let Some(module) = parse(file, &prepared.source, v0) else {
        return Vec::new();
    };
    let mut checker = Checker {
        prepared,
        functions: module_functions(&module),
        findings: Vec::new(),
    };
    walk(&module, &prepared.source, &mut checker);
    checker.findings
}

/// The compile-time checks, expression by expression.
struct Checker<'a> {
    prepared: &'a Prepared,
    functions: BTreeSet<String>,
    findings: Vec<Finding>,
}

impl Visitor for Checker<'_> {
    fn expr(&mut self, e: &Expr) {
        check_regex(e, self.prepared, &mut self.findings);
        check_arity(e, self.prepared, &self.functions, &mut self.findings);
    }
}

/// Names of the functions a module defines (they may shadow a built-in).
fn module_functions(module: &Module) -> BTreeSet<String> {
    module
        .policy
        .iter()
        .filter_map(|rule| match rule.as_ref() {
            Rule::Spec {
                head: RuleHead::Func { refr, .. },
                ..
            } => call_name(refr),
            _ => None,
        })
        .collect()
}

/// Extensions Meridian registers (crate::builtins) and their arity.
const EXTENSIONS: [(&str, usize); 8] = [
    ("net.cidr_intersects", 2),
    ("crypto.md5", 1),
    ("crypto.sha1", 1),
    ("crypto.sha256", 1),
    ("crypto.hmac.sha1", 2),
    ("crypto.hmac.sha256", 2),
    ("crypto.hmac.sha512", 2),
    ("crypto.hmac.equal", 2),
];

/// A call of a built-in with too few or too many arguments (OPA's type checker refuses
/// it; regorus only fails when the call runs). One extra argument is OPA's output form
/// (`count(xs, n)`).
fn check_arity(
    e: &Expr,
    prepared: &Prepared,
    functions: &BTreeSet<String>,
    out: &mut Vec<Finding>,
) {
    let Expr::Call { fcn, params, .. } = e else {
        return;
    };
    let Some(name) = call_name(fcn) else {
        return;
    };
    if functions.contains(&name) {
        return;
    }
    let arity = match regorus::unstable::BUILTINS.get(name.as_str()) {
        Some((_, n)) => usize::from(*n),
        None => match EXTENSIONS.iter().find(|(n, _)| *n == name) {
            Some(&(_, n)) => n,
            None => return,
        },
    };
    let given = params.len();
    if given == arity || given == arity + 1 {
        return;
    }
    let (line, column) = position(&prepared.source, fcn.span().start as usize);
    out.push(Finding {
        line,
        column: prepared.original_column(line, column),
        message: format!(
            "{name} takes {arity} argument{} but is given {given}",
            if arity == 1 { "" } else { "s" }
        ),
    });
}

/// Parses a module with regorus's parser (Rego v1 unless `v0`).
pub(crate) fn parse(file: &str, source: &str, v0: bool) -> Option<Module> {
    let src = Source::from_contents(file.to_string(), source.to_string()).ok()?;
    let mut parser = Parser::new(&src).ok()?;
    if !v0 {
        parser.enable_rego_v1().ok()?;
    }
    parser.parse().ok()
}

/// Whether a module is written in Rego v0: it does not parse as v1 but does as v0 (a file
/// with `import rego.v1` parses both ways and is v1).
pub(crate) fn is_v0(file: &str, source: &str) -> bool {
    parse(file, source, false).is_none() && parse(file, source, true).is_some()
}

/// A rule named `test_*`, as found in a prepared module.
#[derive(Debug, Clone)]
pub(crate) struct TestRule {
    pub name: String,
    /// Byte range of the name in the prepared source.
    pub name_range: (usize, usize),
    pub line: u32,
    pub column: u32,
    /// Lines of the statements of its body (of every body), in order.
    pub stmt_lines: Vec<u32>,
}

/// The `test_*` rules of a module, in source order.
pub(crate) fn test_rules(module: &Module, text: &str) -> Vec<TestRule> {
    let mut out = Vec::new();
    for rule in &module.policy {
        let Rule::Spec { head, bodies, .. } = rule.as_ref() else {
            continue;
        };
        let refr = match head {
            RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
            RuleHead::Func { .. } => continue,
        };
        let Expr::Var { span, .. } = refr.as_ref() else {
            continue;
        };
        if !span.text().starts_with("test_") {
            continue;
        }
        let (line, column) = position(text, span.start as usize);
        out.push(TestRule {
            name: span.text().to_string(),
            name_range: (span.start as usize, span.end as usize),
            line,
            column,
            stmt_lines: bodies
                .iter()
                .flat_map(|b| b.query.stmts.iter().map(|s| s.span.line))
                .collect(),
        });
    }
    out
}

/// `prepared` with the given byte ranges replaced.
pub(crate) fn replace(prepared: Prepared, replacements: Vec<(usize, usize, String)>) -> Prepared {
    let edits = replacements
        .into_iter()
        .map(|(start, end, text)| Edit {
            at: start,
            len: end - start,
            text,
        })
        .collect();
    apply(prepared, edits)
}

// ---------------------------------------------------------------------------------------
// 1. newline-terminated expressions

/// Inserts `;` at the end of a line inside a body when the next non-blank line starts with
/// `(` and the line ends in a term (identifier, number, string, `]`, `)`, `}`).
fn split_newline_calls(source: &str) -> Prepared {
    const KEYWORDS: [&str; 13] = [
        "if", "else", "contains", "in", "not", "some", "every", "with", "as", "default", "import",
        "package", "or",
    ];
    let bytes = source.as_bytes();
    let mut stack: Vec<u8> = Vec::new();
    // (offset just after the last significant byte of the line, that byte)
    let mut last: Option<(usize, usize)> = None;
    let mut inserts: Vec<usize> = Vec::new();
    let mut i = 0;
    let mut line_start_pending = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                line_start_pending = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if line_start_pending {
            line_start_pending = false;
            if b == b'('
                && stack.last().is_none_or(|&c| c == b'{')
                && let Some((end, start)) = last
            {
                let tail = &source[start..end];
                let ends_term = tail
                    .bytes()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"_\"`)]}".contains(&c));
                let word: String = tail
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if ends_term && !KEYWORDS.contains(&word.as_str()) {
                    inserts.push(end);
                }
            }
        }
        match b {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                last = Some((i, start));
                continue;
            }
            b'`' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                last = Some((i, start));
                continue;
            }
            b'(' | b'[' | b'{' => stack.push(b),
            b')' | b']' | b'}' => {
                stack.pop();
            }
            _ => {}
        }
        // Track the token that ends here: a run of identifier characters or one byte.
        if b.is_ascii_alphanumeric() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            last = Some((i, start));
            continue;
        }
        i += 1;
        last = Some((i, i - 1));
    }
    let mut out = String::with_capacity(source.len() + inserts.len());
    let mut shifts = Vec::new();
    let mut prev = 0;
    for at in inserts {
        out.push_str(&source[prev..at]);
        out.push(';');
        let (line, column) = position(source, at);
        shifts.push((line, column, 1));
        prev = at;
    }
    out.push_str(&source[prev..]);
    Prepared {
        source: out,
        shifts,
    }
}

/// 1-based line and column of byte `offset`.
fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |p| p + 1)..]
        .chars()
        .count()
        + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

// ---------------------------------------------------------------------------------------
// 2. and 3.: edits found by walking the module

/// Replace `len` bytes at `at` with `text`.
struct Edit {
    at: usize,
    len: usize,
    text: String,
}

fn apply(base: Prepared, mut edits: Vec<Edit>) -> Prepared {
    if edits.is_empty() {
        return base;
    }
    edits.sort_by_key(|e| (e.at, e.len));
    let src = &base.source;
    let mut out = String::with_capacity(src.len() + 64 * edits.len());
    let mut shifts = base.shifts.clone();
    let mut prev = 0;
    for e in edits {
        if e.at < prev {
            continue; // overlapping edits: keep the first
        }
        out.push_str(&src[prev..e.at]);
        let (line, _) = position(src, e.at);
        let (_, column) = position(&out, out.len());
        let delta = i64::try_from(e.text.len()).unwrap_or(0) - i64::try_from(e.len).unwrap_or(0);
        out.push_str(&e.text);
        if delta != 0 {
            shifts.push((line, column, delta));
        }
        prev = e.at + e.len;
    }
    out.push_str(&src[prev..]);
    Prepared {
        source: out,
        shifts,
    }
}

/// Names that are refs in OPA when used bare: rules of the module and import aliases.
fn global_names(module: &Module) -> BTreeSet<String> {
    let mut names = BTreeSet::from(["input".to_string(), "data".to_string()]);
    for rule in &module.policy {
        let refr = match rule.as_ref() {
            Rule::Spec { head, .. } => match head {
                RuleHead::Compr { refr, .. }
                | RuleHead::Set { refr, .. }
                | RuleHead::Func { refr, .. } => refr.clone(),
            },
            Rule::Default { refr, .. } => refr.clone(),
        };
        if let Some(name) = ref_head(&refr) {
            names.insert(name);
        }
    }
    for import in &module.imports {
        let alias = match &import.r#as {
            Some(span) => Some(span.text().to_string()),
            None => match import.refr.as_ref() {
                Expr::RefDot { field, .. } => Some(field.0.text().to_string()),
                Expr::Var { span, .. } => Some(span.text().to_string()),
                _ => None,
            },
        };
        if let Some(a) = alias.filter(|a| a != "v1" && a != "keywords") {
            names.insert(a);
        }
    }
    names
}

/// The variable a ref starts with.
fn ref_head(e: &Expr) -> Option<String> {
    match e {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => ref_head(refr),
        _ => None,
    }
}

struct Walker<'a> {
    text: &'a str,
    names: BTreeSet<String>,
    edits: &'a mut Vec<Edit>,
}

impl Visitor for Walker<'_> {
    fn expr(&mut self, e: &Expr) {
        if let Expr::Call { fcn, params, .. } = e {
            self.sprintf(fcn, params);
        }
    }

    fn negated(&mut self, stmt: &LiteralStmt, expr: &Expr, braced: bool) {
        self.negation(stmt, expr, braced);
    }
}

impl Walker<'_> {
    /// Guards for `not expr`, inserted before the literal.
    fn negation(&mut self, stmt: &LiteralStmt, expr: &Expr, braced: bool) {
        let mut guards = Vec::new();
        match expr {
            Expr::Call { params, .. } => {
                for p in params {
                    self.dyn_one(p, &mut guards);
                }
            }
            Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::BinExpr { lhs, rhs, .. } => {
                self.dyn_one(lhs, &mut guards);
                self.dyn_one(rhs, &mut guards);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    self.dyn_one(k, &mut guards);
                }
                self.dyn_one(value, &mut guards);
                self.dyn_one(collection, &mut guards);
            }
            Expr::AssignExpr { lhs, rhs, .. } => {
                self.dyn_in_term(lhs, &mut guards);
                self.dyn_in_term(rhs, &mut guards);
            }
            other => self.dyn_in_term(other, &mut guards),
        }
        if guards.is_empty() {
            return;
        }
        let with = match (stmt.with_mods.first(), stmt.with_mods.last()) {
            (Some(first), Some(last)) => {
                // A string's span may stop before its closing quote.
                let end =
                    (last.span.end as usize).max(literal_range(self.text, last.r#as.span()).1);
                let mods = &self.text[first.span.start as usize..end];
                if mods.starts_with("with") {
                    format!(" {mods}")
                } else {
                    format!(" with {mods}")
                }
            }
            _ => String::new(),
        };
        let mut text = String::new();
        if !braced {
            text.push_str("{ ");
        }
        for g in &guards {
            text.push_str("_ = (");
            text.push_str(g);
            text.push(')');
            text.push_str(&with);
            text.push_str("; ");
        }
        let start = stmt.span.start as usize;
        self.edits.push(Edit {
            at: start,
            len: 0,
            text,
        });
        if !braced {
            self.edits.push(Edit {
                at: closing_quote(self.text, stmt.span.start as usize, stmt.span.end as usize),
                len: 0,
                text: " }".into(),
            });
        }
    }

    /// OPA's `rewriteDynamicsInTerm`: for a ref, its dynamic indices; otherwise the term.
    fn dyn_in_term(&self, e: &Expr, guards: &mut Vec<String>) {
        match e {
            Expr::RefDot { refr, .. } => self.dyn_in_term(refr, guards),
            Expr::RefBrack { refr, index, .. } => {
                self.dyn_in_term(refr, guards);
                self.dyn_one(index, guards);
            }
            // A call as the subject of a ref is bound first (`not f(x).y`).
            Expr::Call { .. } => self.guard(e, guards),
            Expr::Var { .. } => {}
            other => self.dyn_one(other, guards),
        }
    }

    /// OPA's `rewriteDynamicsOne` (with nested calls bound by `RewriteExprTerms`).
    fn dyn_one(&self, e: &Expr, guards: &mut Vec<String>) {
        match e {
            Expr::Var { span, .. } if self.names.contains(span.text()) => self.guard(e, guards),
            Expr::RefDot { .. }
            | Expr::RefBrack { .. }
            | Expr::Call { .. }
            | Expr::UnaryExpr { .. }
            | Expr::BinExpr { .. }
            | Expr::BoolExpr { .. }
            | Expr::ArithExpr { .. }
            | Expr::Membership { .. } => self.guard(e, guards),
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for i in items {
                    self.dyn_one(i, guards);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.dyn_one(k, guards);
                    self.dyn_one(v, guards);
                }
            }
            _ => {}
        }
    }

    fn guard(&self, e: &Expr, guards: &mut Vec<String>) {
        let span = e.span();
        let text = &self.text[span.start as usize..span.end as usize];
        // Newlines are whitespace inside a term, except in comprehension bodies: keep
        // those terms out (rare) rather than move lines.
        if text.contains('\n') && text.contains('|') {
            return;
        }
        let text = text.replace(['\n', '\r'], " ");
        if !guards.contains(&text) {
            guards.push(text);
        }
    }

    /// `sprintf("…%s…%d…", [a])`: verbs past the arguments print `%!d(MISSING)`.
    fn sprintf(&mut self, fcn: &Expr, params: &[regorus::unstable::ExprRef]) {
        let Expr::Var { span, .. } = fcn else {
            return;
        };
        if span.text() != "sprintf" || params.len() != 2 {
            return;
        }
        let (Some(format), Expr::Array { items, .. }) = (string_value(&params[0]), &*params[1])
        else {
            return;
        };
        let Some(rewritten) = missing_verbs(&format, items.len()) else {
            return;
        };
        let Ok(literal) = serde_json::to_string(&rewritten) else {
            return;
        };
        let (at, end) = literal_range(self.text, params[0].span());
        self.edits.push(Edit {
            at,
            len: end - at,
            text: literal,
        });
    }
}

/// Byte range of a string literal's source, quotes included (regorus's span of a string
/// may cover only its content).
fn literal_range(text: &str, span: &regorus::unstable::Span) -> (usize, usize) {
    let (mut start, mut end) = (span.start as usize, span.end as usize);
    let bytes = text.as_bytes();
    if let Some(&q) = start.checked_sub(1).and_then(|i| bytes.get(i))
        && (q == b'"' || q == b'`')
        && bytes.get(start) != Some(&q)
    {
        start -= 1;
        if bytes.get(end) == Some(&q) {
            end += 1;
        }
    }
    (start, end)
}

/// `end`, or just after the closing quote when `text[start..end]` stops inside a string.
fn closing_quote(text: &str, start: usize, end: usize) -> usize {
    let inner = &text[start..end];
    let quotes = inner.matches('"').count() - inner.matches("\\\"").count();
    let next = text.as_bytes().get(end);
    if (quotes % 2 == 1 && next == Some(&b'"'))
        || (inner.matches('`').count() % 2 == 1 && next == Some(&b'`'))
    {
        end + 1
    } else {
        end
    }
}

/// The value of a string literal.
fn string_value(e: &Expr) -> Option<String> {
    match e {
        Expr::String { value, .. } | Expr::RawString { value, .. } => match value {
            Value::String(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The format with every verb after the first `given` replaced by Go's
/// `%!VERB(MISSING)` text (`%%` escaped); `None` when every verb has an argument.
fn missing_verbs(format: &str, given: usize) -> Option<String> {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    let mut verbs = 0;
    let mut changed = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push_str("%%");
            continue;
        }
        let mut spec = String::from("%");
        let mut verb = None;
        for d in chars.by_ref() {
            if d.is_ascii_digit() || "+-# .*".contains(d) {
                spec.push(d);
            } else {
                verb = Some(d);
                break;
            }
        }
        let Some(verb) = verb else {
            out.push_str(&spec);
            break;
        };
        verbs += 1;
        if verbs > given {
            out.push_str(&format!("%%!{verb}(MISSING)"));
            changed = true;
        } else {
            out.push_str(&spec);
            out.push(verb);
        }
    }
    changed.then_some(out)
}

// ---------------------------------------------------------------------------------------
// checks

/// What a walk over a module's expressions looks at.
trait Visitor {
    /// Every expression, outermost first.
    fn expr(&mut self, _e: &Expr) {}
    /// A `not` literal (after its expression was walked); `braced`: its query is written
    /// in braces (a brace-less rule body has exactly one literal).
    fn negated(&mut self, _stmt: &LiteralStmt, _expr: &Expr, _braced: bool) {}
}

/// Walks every rule head, body, comprehension and `every` of `module` (whose source is
/// `text`) with `v`.
fn walk(module: &Module, text: &str, v: &mut dyn Visitor) {
    fn expr(e: &Expr, text: &str, v: &mut dyn Visitor) {
        v.expr(e);
        match e {
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|i| expr(i, text, v));
            }
            Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, x)| {
                expr(k, text, v);
                expr(x, text, v);
            }),
            Expr::ArrayCompr { term, query: q, .. } | Expr::SetCompr { term, query: q, .. } => {
                expr(term, text, v);
                query(q, text, false, v);
            }
            Expr::ObjectCompr {
                key,
                value,
                query: q,
                ..
            } => {
                expr(key, text, v);
                expr(value, text, v);
                query(q, text, false, v);
            }
            Expr::Call { fcn, params, .. } => {
                expr(fcn, text, v);
                params.iter().for_each(|p| expr(p, text, v));
            }
            Expr::UnaryExpr { expr: x, .. } | Expr::RefDot { refr: x, .. } => expr(x, text, v),
            Expr::RefBrack { refr, index, .. } => {
                expr(refr, text, v);
                expr(index, text, v);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                expr(lhs, text, v);
                expr(rhs, text, v);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    expr(k, text, v);
                }
                expr(value, text, v);
                expr(collection, text, v);
            }
            _ => {}
        }
    }
    /// `rule_body`: the query is a rule body, which may be written without braces.
    fn query(q: &Query, text: &str, rule_body: bool, v: &mut dyn Visitor) {
        let braced = !rule_body || text[q.span.start as usize..].starts_with('{');
        for stmt in &q.stmts {
            for w in &stmt.with_mods {
                expr(&w.refr, text, v);
                expr(&w.r#as, text, v);
            }
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if let Some(k) = key {
                        expr(k, text, v);
                    }
                    expr(value, text, v);
                    expr(collection, text, v);
                }
                Literal::Expr { expr: e, .. } => expr(e, text, v),
                Literal::NotExpr { expr: e, .. } => {
                    expr(e, text, v);
                    v.negated(stmt, e, braced);
                }
                Literal::Every {
                    domain, query: q, ..
                } => {
                    expr(domain, text, v);
                    query(q, text, false, v);
                }
            }
        }
    }
    for rule in &module.policy {
        match rule.as_ref() {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        expr(refr, text, v);
                        if let Some(a) = assign {
                            expr(&a.value, text, v);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        expr(refr, text, v);
                        if let Some(k) = key {
                            expr(k, text, v);
                        }
                    }
                    RuleHead::Func {
                        refr, args, assign, ..
                    } => {
                        expr(refr, text, v);
                        args.iter().for_each(|a| expr(a, text, v));
                        if let Some(a) = assign {
                            expr(&a.value, text, v);
                        }
                    }
                }
                for body in bodies {
                    if let Some(a) = &body.assign {
                        expr(&a.value, text, v);
                    }
                    query(&body.query, text, true, v);
                }
            }
            Rule::Default { value, .. } => expr(value, text, v),
        }
    }
}

/// The dotted name of a call's function (`regex.match`).
fn call_name(fcn: &Expr) -> Option<String> {
    match fcn {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, field, .. } => {
            Some(format!("{}.{}", call_name(refr)?, field.0.text()))
        }
        _ => None,
    }
}

/// Built-ins whose argument at the given position is a regular expression.
const REGEX_ARGS: [(&str, usize); 6] = [
    ("regex.match", 0),
    ("re_match", 0),
    ("regex.split", 0),
    ("regex.find_n", 0),
    ("regex.find_all_string_submatch_n", 0),
    ("regex.replace", 1),
];

fn check_regex(e: &Expr, prepared: &Prepared, out: &mut Vec<Finding>) {
    let Expr::Call { fcn, params, .. } = e else {
        return;
    };
    let Some(name) = call_name(fcn) else {
        return;
    };
    let Some(&(_, arg)) = REGEX_ARGS.iter().find(|(n, _)| *n == name) else {
        return;
    };
    let Some(param) = params.get(arg) else {
        return;
    };
    let Some(pattern) = string_value(param) else {
        return;
    };
    if let Err(err) = regex::Regex::new(&pattern) {
        let (start, _) = literal_range(&prepared.source, param.span());
        let (line, column) = position(&prepared.source, start);
        let first = err.to_string();
        let reason = first
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .map_or_else(
                || first.clone(),
                |l| l.trim_start_matches("error:").trim().to_string(),
            );
        out.push(Finding {
            line,
            column: prepared.original_column(line, column),
            message: format!("invalid regex {pattern:?} in {name}: {reason}"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_verbs_follow_go() {
        assert_eq!(
            missing_verbs("%s needs %d GPUs (%.2f%%)", 1).as_deref(),
            Some("%s needs %%!d(MISSING) GPUs (%%!f(MISSING)%%)")
        );
        assert_eq!(missing_verbs("%s and %v", 2), None);
    }

    #[test]
    fn newline_paren_gets_a_semicolon_only_in_bodies() {
        let p = split_newline_calls("p if {\n\tx := a.b\n\t(x + 1) == 2\n}\nq := f(\n1)\n");
        assert_eq!(
            p.source,
            "p if {\n\tx := a.b;\n\t(x + 1) == 2\n}\nq := f(\n1)\n"
        );
        let p = split_newline_calls("p if {\n\tsome x in xs\n\t(x) > 1 # c\n}\n");
        assert_eq!(p.source, "p if {\n\tsome x in xs;\n\t(x) > 1 # c\n}\n");
        // After a keyword the parenthesis continues the expression.
        let p = split_newline_calls("p if {\n\tnot\n\t(x)\n}\n");
        assert!(!p.source.contains(';'));
    }

    #[test]
    fn columns_map_back() {
        let p = prepare(
            "t.rego",
            "package t\n\np if {\n\tnot f(input.x)\n}\n\nf(x) if x\n",
            false,
        );
        assert!(
            p.source.contains("_ = (input.x); not f(input.x)"),
            "{}",
            p.source
        );
        let col = p.source.lines().nth(3).unwrap().find("not").unwrap() as u32 + 1;
        assert_eq!(p.original_column(4, col), 2);
    }
}
