//! An `opa test`-like runner: every rule named `test_*` of the given modules is evaluated
//! and passes when it is `true` (`meridian policy test DIR`).

use std::fmt;
use std::time::Duration;

use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};

use crate::error::{CompileError, CompileErrorKind, EvalError};
use crate::prelude::{PRELUDE_PATH, prelude_data, prelude_source};

/// Time limit of one test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Pass,
    /// The rule was false or undefined.
    Fail,
    /// The rule could not be evaluated.
    Error(EvalError),
}

/// One test rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The module (file) it is in.
    pub file: String,
    /// `data.pkg` of the module.
    pub package: String,
    /// `test_...`.
    pub name: String,
    pub outcome: TestOutcome,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.outcome == TestOutcome::Pass
    }
}

/// What a test run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Every test, in module order then source order.
    pub results: Vec<TestResult>,
    /// Modules that do not parse or compile; no test runs when there is one.
    pub errors: Vec<CompileError>,
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
}

/// `opa test -v` style: one line per test, failures with their error, then the counts.
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{e}")?;
        }
        let mut file = None;
        for r in &self.results {
            if file != Some(&r.file) {
                writeln!(f, "{}:", r.file)?;
                file = Some(&r.file);
            }
            let name = format!("{}.{}", r.package, r.name);
            match &r.outcome {
                TestOutcome::Pass => writeln!(f, "{name}: PASS")?,
                TestOutcome::Fail => writeln!(f, "{name}: FAIL")?,
                TestOutcome::Error(e) => writeln!(f, "{name}: ERROR\n  {e}")?,
            }
        }
        if !self.results.is_empty() {
            writeln!(f, "{}", "-".repeat(80))?;
        }
        if self.failed() == 0 && self.errors.is_empty() {
            write!(f, "PASS: {}/{}", self.passed(), self.results.len())
        } else {
            if self.passed() > 0 {
                writeln!(f, "PASS: {}/{}", self.passed(), self.results.len())?;
            }
            write!(f, "FAIL: {}/{}", self.failed(), self.results.len())?;
            if !self.errors.is_empty() {
                write!(f, " ({} module(s) did not compile)", self.errors.len())?;
            }
            Ok(())
        }
    }
}

/// Runs the tests of `modules` (`(file name, Rego source)`; policies and their
/// `*_test.rego` together, as `opa test DIR` loads a directory). Meridian's prelude
/// (`data.meridian.lib`) is loaded too. Rego v1 syntax.
pub fn run_tests<N: AsRef<str>, S: AsRef<str>>(modules: &[(N, S)]) -> TestReport {
    let mut report = TestReport::default();
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: std::num::NonZeroU32::new(32).expect("non-zero"),
    });
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
    let mut packages = Vec::new();
    for (file, source) in modules {
        let file = file.as_ref();
        match engine.add_policy(file.to_string(), source.as_ref().to_string()) {
            Ok(package) => packages.push((file.to_string(), package)),
            Err(e) => report.errors.push(CompileError::from_regorus(
                file,
                CompileErrorKind::Syntax,
                &e,
            )),
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

    // Test names, from the parsed modules, in source order, each once.
    let mut tests: Vec<(String, String, String)> = Vec::new();
    for module in engine.get_modules().iter() {
        let file = module.package.span.source.get_path().clone();
        let Some((_, package)) = packages.iter().find(|(f, _)| *f == file) else {
            continue; // the prelude
        };
        for rule in &module.policy {
            let Rule::Spec { head, .. } = rule.as_ref() else {
                continue;
            };
            let refr = match head {
                RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
                RuleHead::Func { .. } => continue,
            };
            let Expr::Var { span, .. } = refr.as_ref() else {
                continue;
            };
            let name = span.text();
            if name.starts_with("test_")
                && !tests
                    .iter()
                    .any(|(f, p, n)| *f == file && p == package && n == name)
            {
                tests.push((file.clone(), package.clone(), name.to_string()));
            }
        }
    }

    for (file, package, name) in tests {
        engine.set_input(Value::Undefined);
        let outcome = match engine.eval_rule(format!("{package}.{name}")) {
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
        report.results.push(TestResult {
            file,
            package,
            name,
            outcome,
        });
    }
    report
}
