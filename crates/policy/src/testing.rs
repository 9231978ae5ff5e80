//! An `opa test`-like runner: every rule named `test_*` of the given modules is evaluated
//! and passes when it is `true` (`meridian policy test DIR`).
//!
//! As in OPA: modules may be Rego v0 or v1 (detected per file unless a version is given),
//! each definition of a test is a test of its own (`test_x`, `test_x#01`...), a failing
//! test names the expression that failed, and built-in errors are errors (a test that hits
//! one reports ERROR rather than failing silently). Tests are timed with the clock the
//! caller passes in [`TestOptions::clock`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};
use serde::Serialize;

use crate::compat::{self, Prepared};
use crate::error::{CompileError, CompileErrorKind, EvalError};
use crate::prelude::{PRELUDE_PATH, prelude_data, prelude_source};

/// Time limit of one test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The Rego syntax of the modules of a test run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RegoVersion {
    /// Per file: v1, or v0 when the file parses only as v0 (`opa test` needs
    /// `--v0-compatible` for those).
    #[default]
    Detect,
    V0,
    V1,
}

/// How tests run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    pub rego_version: RegoVersion,
    /// Run only tests whose full name (`data.pkg.test_x`) contains this text.
    pub run: Option<String>,
    /// A data document loaded at the root of `data` (a bundle's `data.json`), as
    /// `opa test DIR` loads the bundle's data; must be an object.
    pub data: Option<serde_json::Value>,
    /// The clock tests are timed with (`Instant::now`); without one, durations are zero
    /// (this crate reads no clock of its own).
    pub clock: Option<fn() -> Instant>,
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Pass,
    /// The rule was false or undefined.
    Fail,
    /// The rule could not be evaluated.
    Error(EvalError),
}

/// Where a failing test stopped: the first expression of its body that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedAt {
    pub line: u32,
    /// The source line of the expression, trimmed.
    pub text: String,
}

/// One test rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The module (file) it is in.
    pub file: String,
    /// `data.pkg` of the module.
    pub package: String,
    /// `test_...`, with `#01`, `#02`... for the second and later definitions of a name.
    pub name: String,
    /// Line and column of the rule head.
    pub line: u32,
    pub column: u32,
    pub outcome: TestOutcome,
    /// For a failure: the expression that did not hold, when it can be told.
    pub failed_at: Option<FailedAt>,
    pub duration: Duration,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.outcome == TestOutcome::Pass
    }

    /// `data.pkg.test_x`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }
}

/// What a test run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Every test, in module order then source order.
    pub results: Vec<TestResult>,
    /// Modules that do not parse or compile; no test runs when there is one.
    pub errors: Vec<CompileError>,
    /// Files read as Rego v0.
    pub v0_files: Vec<String>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Whether everything compiled, at least one test ran and every test passed (the CLI
    /// exits non-zero otherwise).
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && !self.results.is_empty() && self.failed() == 0
    }

    /// `opa test` without `-v`: failures with where they failed, then the counts.
    pub fn summary(&self) -> String {
        self.render(false)
    }

    /// `opa test -v`: every test, grouped by file.
    pub fn verbose(&self) -> String {
        self.render(true)
    }

    /// `opa test --format json`: one object per test.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out: Vec<serde_json::Value> = self
            .errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "location": {"file": e.policy, "row": e.line, "col": e.column},
                    "error": {"code": "rego_compile_error", "message": e.message},
                })
            })
            .collect();
        for r in &self.results {
            let mut o = serde_json::json!({
                "location": {"file": r.file, "row": r.line, "col": r.column},
                "package": r.package,
                "name": r.name,
                "duration": u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX),
            });
            match &r.outcome {
                TestOutcome::Pass => {}
                TestOutcome::Fail => {
                    o["fail"] = true.into();
                    if let Some(at) = &r.failed_at {
                        o["failed_at"] = serde_json::json!({"row": at.line, "text": at.text});
                    }
                }
                TestOutcome::Error(e) => {
                    o["error"] =
                        serde_json::json!({"code": "eval_error", "message": e.to_string()});
                }
            }
            out.push(o);
        }
        serde_json::Value::Array(out)
    }

    fn render(&self, verbose: bool) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for e in &self.errors {
            // `file:line:col: message`, as compilers print it.
            let at = match (e.line, e.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}", e.policy),
                (Some(l), None) => format!("{}:{l}", e.policy),
                _ => e.policy.clone(),
            };
            let _ = writeln!(s, "{at}: {}", e.message);
            if let Some(snippet) = &e.snippet {
                let _ = writeln!(s, "{snippet}");
            }
        }
        let line = "-".repeat(80);
        let failures: Vec<&TestResult> = self.results.iter().filter(|r| !r.passed()).collect();
        if !failures.is_empty() {
            let _ = writeln!(s, "FAILURES\n{line}");
            for r in &failures {
                let _ = writeln!(s, "{}: {}", r.full_name(), outcome_word(r));
                match (&r.outcome, &r.failed_at) {
                    (TestOutcome::Error(e), _) => {
                        let _ = writeln!(s, "\n  {e}\n");
                    }
                    (_, Some(at)) => {
                        let _ = writeln!(s, "\n  {}:{}:\n    {}\n", r.file, at.line, at.text);
                    }
                    _ => {
                        let _ = writeln!(s);
                    }
                }
            }
            let _ = writeln!(s, "SUMMARY\n{line}");
        }
        let mut file = None;
        for r in &self.results {
            if !verbose && r.passed() {
                continue;
            }
            if file != Some(&r.file) {
                let _ = writeln!(s, "{}:", r.file);
                file = Some(&r.file);
            }
            let _ = writeln!(
                s,
                "{}: {} ({})",
                r.full_name(),
                outcome_word(r),
                Micros(r.duration)
            );
        }
        if (verbose && !self.results.is_empty()) || !failures.is_empty() {
            let _ = writeln!(s, "{line}");
        }
        let total = self.results.len();
        if self.passed() > 0 || total == 0 {
            let _ = writeln!(s, "PASS: {}/{}", self.passed(), total);
        }
        if self.failed() > 0 {
            let errored = self
                .results
                .iter()
                .filter(|r| matches!(r.outcome, TestOutcome::Error(_)))
                .count();
            let failed = self.failed() - errored;
            if failed > 0 {
                let _ = writeln!(s, "FAIL: {failed}/{total}");
            }
            if errored > 0 {
                let _ = writeln!(s, "ERROR: {errored}/{total}");
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "{} module(s) did not compile", self.errors.len());
        }
        s.trim_end().to_string()
    }
}

fn outcome_word(r: &TestResult) -> &'static str {
    match r.outcome {
        TestOutcome::Pass => "PASS",
        TestOutcome::Fail => "FAIL",
        TestOutcome::Error(_) => "ERROR",
    }
}

/// A duration printed like Go's (`850µs`, `1.2ms`).
struct Micros(Duration);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us < 1000 {
            write!(f, "{us}µs")
        } else {
            write!(f, "{:.1}ms", self.0.as_secs_f64() * 1000.0)
        }
    }
}

/// The verbose form (every test).
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verbose())
    }
}

/// Runs the tests of `modules` (`(file name, Rego source)`; policies and their
/// `*_test.rego` together, as `opa test DIR` loads a directory) with the syntax of each file
/// detected. Meridian's prelude (`data.meridian.lib`) is loaded too.
pub fn run_tests<N: AsRef<str>, S: AsRef<str>>(modules: &[(N, S)]) -> TestReport {
    run_tests_with(modules, &TestOptions::default())
}

/// [`run_tests`] with options.
pub fn run_tests_with<N: AsRef<str>, S: AsRef<str>>(
    modules: &[(N, S)],
    options: &TestOptions,
) -> TestReport {
    let mut report = TestReport::default();
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: std::num::NonZeroU32::new(32).expect("non-zero"),
    });
    crate::builtins::register(&mut engine);
    if let Err(e) = engine
        .add_policy(PRELUDE_PATH.into(), prelude_source().into())
        .and_then(|_| engine.add_data(prelude_data()))
    {
        report.errors.push(CompileError::from_regorus(
            "prelude",
            CompileErrorKind::Semantic,
            &e,
        ));
        return report;
    }

    if let Some(data) = &options.data
        && let Err(e) = engine.add_data(crate::input::to_rego(data))
    {
        report.errors.push(CompileError::from_regorus(
            "data",
            CompileErrorKind::Spec,
            &e,
        ));
        return report;
    }

    // Prepare every module, name each definition of a test, load.
    struct Loaded {
        file: String,
        source: String,
        package: String,
        tests: Vec<(String, compat::TestRule)>,
    }
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (file, source) in modules {
        let (file, source) = (file.as_ref(), source.as_ref());
        let v0 = match options.rego_version {
            RegoVersion::V0 => true,
            RegoVersion::V1 => false,
            RegoVersion::Detect => compat::is_v0(file, source),
        };
        if v0 {
            report.v0_files.push(file.to_string());
        }
        let prepared = compat::prepare(file, source, v0);
        let (prepared, tests) = name_tests(file, prepared, v0, &mut seen);
        engine.set_rego_v0(v0);
        match engine.add_policy(file.to_string(), prepared.source.clone()) {
            Ok(package) => loaded.push(Loaded {
                file: file.to_string(),
                source: source.to_string(),
                package,
                tests,
            }),
            Err(e) => {
                let mut ce = CompileError::from_regorus(file, CompileErrorKind::Syntax, &e);
                ce.relocate(&prepared, source);
                if !v0 && compat::is_v0(file, source) {
                    ce.message.push_str(
                        " (the file is Rego v0, pre-1.0 syntax: run with --v0-compatible, or \
                         leave --rego-version out to detect it)",
                    );
                }
                report.errors.push(ce);
            }
        }
    }
    if !report.errors.is_empty() {
        return report;
    }
    if let Err(e) = engine.eval_query("true".into(), false) {
        report.errors.push(CompileError::from_regorus(
            "modules",
            CompileErrorKind::Semantic,
            &e,
        ));
        return report;
    }

    engine.set_enable_coverage(true);
    for module in &loaded {
        for (display, rule) in &module.tests {
            let full = format!("{}.{display}", module.package);
            if options
                .run
                .as_ref()
                .is_some_and(|r| !full.contains(r.as_str()))
            {
                continue;
            }
            engine.set_input(Value::Undefined);
            engine.clear_coverage_data();
            let started = options.clock.map(|now| now());
            let result = engine.eval_rule(format!("{}.{}", module.package, rule.name));
            let duration = match (options.clock, started) {
                (Some(now), Some(t)) => now().duration_since(t),
                _ => Duration::ZERO,
            };
            let outcome = match result {
                Ok(Value::Bool(true)) => TestOutcome::Pass,
                Ok(_) => TestOutcome::Fail,
                Err(e) => {
                    let timed_out = e.chain().any(|c| {
                        matches!(
                            c.downcast_ref::<LimitError>(),
                            Some(LimitError::TimeLimitExceeded { .. })
                        )
                    });
                    TestOutcome::Error(if timed_out {
                        EvalError::TimedOut {
                            limit: TEST_TIMEOUT,
                        }
                    } else {
                        EvalError::runtime(&format!("{e:#}"))
                    })
                }
            };
            let failed_at = (outcome == TestOutcome::Fail)
                .then(|| failed_at(&engine, &module.file, &module.source, rule))
                .flatten();
            report.results.push(TestResult {
                file: module.file.clone(),
                package: module.package.clone(),
                name: display.clone(),
                line: rule.line,
                column: rule.column,
                outcome,
                failed_at,
                duration,
            });
        }
    }
    report
}

/// Finds the `test_*` rules of a prepared module and renames the second and later
/// definitions of a name in a package (`test_x` → `test_x__2`) so that each runs on its
/// own; returns the module and `(name shown, rule)` per test.
fn name_tests(
    file: &str,
    prepared: Prepared,
    v0: bool,
    seen: &mut BTreeMap<(String, String), usize>,
) -> (Prepared, Vec<(String, compat::TestRule)>) {
    // A module that does not parse gets its error from regorus when it is loaded.
    let Some(module) = compat::parse(file, &prepared.source, v0) else {
        return (prepared, Vec::new());
    };
    let package = package_of(&module);
    let rules = compat::test_rules(&module, &prepared.source);
    let mut renames = Vec::new();
    let mut tests = Vec::new();
    for mut rule in rules {
        let n = seen
            .entry((package.clone(), rule.name.clone()))
            .or_insert(0);
        let display = if *n == 0 {
            rule.name.clone()
        } else {
            format!("{}#{n:02}", rule.name)
        };
        if *n > 0 {
            let renamed = format!("{}__{n}", rule.name);
            renames.push((rule.name_range.0, rule.name_range.1, renamed.clone()));
            rule.name = renamed;
        }
        *n += 1;
        tests.push((display, rule));
    }
    (compat::replace(prepared, renames), tests)
}

fn package_of(module: &regorus::unstable::Module) -> String {
    let span = module.package.refr.span();
    format!("data.{}", span.text())
}

/// The statement of the test's body that did not hold: the last one evaluated (coverage
/// marks the lines of evaluated expressions) before the first that was not.
fn failed_at(
    engine: &Engine,
    file: &str,
    source: &str,
    rule: &compat::TestRule,
) -> Option<FailedAt> {
    let report = engine.get_coverage_report().ok()?;
    let covered = &report.files.iter().find(|f| f.path == file)?.covered;
    let mut last = None;
    for &line in &rule.stmt_lines {
        if !covered.contains(&line) {
            break;
        }
        last = Some(line);
    }
    let line = last.or_else(|| rule.stmt_lines.first().copied())?;
    let text = source.lines().nth((line as usize).checked_sub(1)?)?.trim();
    Some(FailedAt {
        line,
        text: text.to_string(),
    })
}
