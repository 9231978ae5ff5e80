//! [`CompiledPolicy`]: a `Policy` object parsed, checked and prepared once, evaluated
//! with clones of its prepared engine.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use api::kinds::{Control, Enforcement};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use regorus::rvm::program::Program;
use regorus::rvm::vm::VmError;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};
use sha2::{Digest, Sha256};

use crate::compat::{self, Prepared};
use crate::error::{CompileError, CompileErrorKind, EvalError};
use crate::input::{key, to_json, to_rego};
use crate::prelude::{PRELUDE_PACKAGE, PRELUDE_PATH, prelude_data, prelude_source};

/// Annotation that selects the Rego syntax of a policy: `v1` (the default, OPA 1.x) or
/// `v0` (pre-1.0 syntax, for Gatekeeper templates that have not been migrated).
pub const REGO_VERSION_ANNOTATION: &str = "policy.meridian.dev/rego-version";

/// Annotation `"true"` makes built-in errors (a division by zero, `object.get` on a
/// non-object...) errors, as `opa eval --strict-builtin-errors` does: a `deny` policy then
/// fails closed on them. By default, as in OPA, a built-in error makes its expression
/// undefined.
pub const STRICT_ANNOTATION: &str = "policy.meridian.dev/strict-builtin-errors";

/// The rules a policy module may define; their values are its violations.
pub const VIOLATION_RULES: [&str; 2] = ["deny", "violation"];

/// Default time limit of one evaluation of one policy.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// How policies are compiled and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    /// Wall-clock limit of one evaluation of one policy on one input.
    pub timeout: Duration,
    /// Interpreter steps between two reads of the clock (the cost of the limit).
    pub check_interval: NonZeroU32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            timeout: DEFAULT_TIMEOUT,
            check_interval: NonZeroU32::new(32).expect("non-zero"),
        }
    }
}

/// A violation as a policy produced it, before it is attributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawViolation {
    pub message: String,
    pub field: Option<String>,
}

/// A compiled policy: cheap to clone (an `Arc`), `Send + Sync`, evaluated any number of
/// times concurrently.
#[derive(Clone)]
pub struct CompiledPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    policy: api::Policy,
    name: Arc<str>,
    enforcement: Enforcement,
    /// Kinds targeted; `None` for every kind.
    kinds: Option<Vec<&'static str>>,
    /// Projects matched; empty for every project.
    projects: Vec<String>,
    controls: Arc<[Control]>,
    package: String,
    /// Full paths of the violation rules the module defines (`data.pkg.deny`...).
    rules: Vec<String>,
    /// `spec.parameters`, also given as `input.parameters`.
    parameters: Option<Value>,
    /// Prepared engine: modules parsed and analysed, data loaded, timer set.
    engine: Engine,
    /// The violation rules compiled to regorus's bytecode VM, with the data document it
    /// runs against; `None` when the VM compiler does not support the module (the
    /// interpreter then evaluates it).
    program: Option<(Arc<Program>, Value)>,
    check_interval: NonZeroU32,
    timeout: Duration,
    /// Built-in errors are errors ([`STRICT_ANNOTATION`]); else undefined, as in OPA.
    strict: bool,
    digest: String,
    /// `spec.rego` as regorus runs it (see [`crate::compat`]), to map error positions back.
    prepared: Prepared,
    /// `spec.rego` is Rego v0.
    v0: bool,
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("name", &self.inner.name)
            .field("enforcement", &self.inner.enforcement)
            .field("kinds", &self.inner.kinds)
            .field("projects", &self.inner.projects)
            .field("package", &self.inner.package)
            .field("rules", &self.inner.rules)
            .finish_non_exhaustive()
    }
}

impl CompiledPolicy {
    /// Compiles a policy: parses its Rego (syntax errors carry line and column), checks
    /// the contract (a `deny` or `violation` rule), loads its parameters, prepares the
    /// engine and evaluates it once on an empty input so that compile-time problems are
    /// found now rather than on the first request.
    pub fn compile(policy: &api::Policy, options: CompileOptions) -> Result<Self, CompileError> {
        let name = policy.metadata.name.as_str();
        let spec = &policy.spec;
        let err = |kind, field: &str, msg: String| CompileError::new(name, kind, field, msg);

        // Targets.
        let mut kinds = Some(Vec::new());
        for (i, t) in spec.targets.iter().enumerate() {
            if t == "*" {
                kinds = None;
                break;
            }
            match api::lookup_kind(t) {
                Some(k) => {
                    if let Some(ks) = kinds.as_mut().filter(|ks| !ks.contains(&k.kind)) {
                        ks.push(k.kind);
                    }
                }
                None => {
                    let known: Vec<&str> = api::KINDS.iter().map(|k| k.kind).collect();
                    return Err(err(
                        CompileErrorKind::Spec,
                        &format!("spec.targets[{i}]"),
                        format!("{t:?} is not a kind (known kinds: {})", known.join(", ")),
                    ));
                }
            }
        }
        if kinds.as_ref().is_some_and(Vec::is_empty) {
            kinds = None;
        }

        // Parameters.
        let parameters = match &spec.parameters {
            None | Some(serde_json::Value::Null) => None,
            Some(p @ serde_json::Value::Object(_)) => Some(to_rego(p)),
            Some(_) => {
                return Err(err(
                    CompileErrorKind::Spec,
                    "spec.parameters",
                    "must be an object (`{name: value, ...}`), given to the module as data.parameters and input.parameters".into(),
                ));
            }
        };

        // Rego version.
        let v0 = match policy
            .metadata
            .annotations
            .get(REGO_VERSION_ANNOTATION)
            .map(String::as_str)
        {
            None | Some("v1") => false,
            Some("v0") => true,
            Some(other) => {
                return Err(err(
                    CompileErrorKind::Spec,
                    &format!("metadata.annotations[{REGO_VERSION_ANNOTATION}]"),
                    format!("{other:?} is not a Rego version: use v1 (default) or v0"),
                ));
            }
        };

        let strict = match policy
            .metadata
            .annotations
            .get(STRICT_ANNOTATION)
            .map(String::as_str)
        {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(err(
                    CompileErrorKind::Spec,
                    &format!("metadata.annotations[{STRICT_ANNOTATION}]"),
                    format!("{other:?} is not a boolean: use \"true\" or \"false\" (default)"),
                ));
            }
        };

        let mut engine = Engine::new();
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: options.timeout,
            check_interval: options.check_interval,
        });
        engine
            .add_policy(PRELUDE_PATH.into(), prelude_source().into())
            .and_then(|_| engine.add_data(prelude_data()))
            .map_err(|e| CompileError::from_regorus(name, CompileErrorKind::Semantic, &e))?;
        engine.set_rego_v0(v0);
        engine.set_strict_builtin_errors(strict);
        crate::builtins::register(&mut engine);
        for (i, module) in spec.modules.iter().enumerate() {
            add_module(
                &mut engine,
                name,
                &format!("spec.modules[{i}].rego"),
                &module.name,
                &module.rego,
                v0,
            )?;
        }
        match &spec.data {
            None | Some(serde_json::Value::Null) => {}
            Some(d @ serde_json::Value::Object(_)) => engine
                .add_data(to_rego(d))
                .map_err(|e| CompileError::from_regorus(name, CompileErrorKind::Spec, &e))?,
            Some(_) => {
                return Err(err(
                    CompileErrorKind::Spec,
                    "spec.data",
                    "must be an object: it is loaded at the root of `data`, as a bundle's data.json".into(),
                ));
            }
        }
        let path = format!("{name}.rego");
        let (package, prepared) =
            add_module(&mut engine, name, "spec.rego", &path, &spec.rego, v0)?;
        if package == PRELUDE_PACKAGE || package.starts_with(&format!("{PRELUDE_PACKAGE}.")) {
            return Err(err(
                CompileErrorKind::Contract,
                "spec.rego",
                format!(
                    "package {} is reserved for Meridian's prelude: choose another package",
                    package.trim_start_matches("data.")
                ),
            ));
        }
        if !package
            .split('.')
            .all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        {
            return Err(err(
                CompileErrorKind::Contract,
                "spec.rego",
                format!(
                    "package {} must be a dotted path of identifiers (e.g. `package meridian.residency`)",
                    package.trim_start_matches("data.")
                ),
            ));
        }
        let mut rules = Vec::new();
        for rule in VIOLATION_RULES {
            let declared = engine
                .has_declared_rule_rooted_at(&path, rule)
                .map_err(|e| CompileError::from_regorus(name, CompileErrorKind::Semantic, &e))?;
            if declared {
                rules.push(format!("{package}.{rule}"));
            }
        }
        if rules.is_empty() {
            return Err(err(
                CompileErrorKind::Contract,
                "spec.rego",
                format!(
                    "package {} defines neither `deny` nor `violation`: a policy reports what it finds as \
                     `deny contains msg if {{ ... }}` (strings) or \
                     `violation contains {{\"msg\": msg, \"field\": \"spec.x\"}} if {{ ... }}`",
                    package.trim_start_matches("data.")
                ),
            ));
        }
        if let Some(p) = &parameters {
            let data = crate::input::object([("parameters", p.clone())]);
            engine
                .add_data(data)
                .map_err(|e| CompileError::from_regorus(name, CompileErrorKind::Spec, &e))?;
        }

        // Analyse now (unknown functions, unsafe variables, recursion...).
        engine.eval_query("true".into(), false).map_err(|e| {
            let mut ce = CompileError::from_regorus(name, CompileErrorKind::Semantic, &e);
            ce.relocate(&prepared, &spec.rego);
            ce
        })?;

        let program = vm_program(&engine, &rules, parameters.as_ref());
        let compiled = CompiledPolicy {
            inner: Arc::new(Inner {
                policy: policy.clone(),
                name: Arc::from(name),
                enforcement: spec.enforcement,
                kinds,
                projects: spec
                    .match_
                    .as_ref()
                    .map(|m| m.projects.clone())
                    .unwrap_or_default(),
                controls: Arc::from(spec.controls.clone()),
                package,
                rules,
                parameters,
                engine,
                program,
                check_interval: options.check_interval,
                timeout: options.timeout,
                strict,
                digest: hex::encode(Sha256::digest(spec.rego.as_bytes())),
                prepared,
                v0,
            }),
        };

        // Warm up on an empty input: a policy that fails before it sees any object (a
        // constant division by zero, a type error) is refused here, not at admission.
        let empty = crate::input::object([("object", Value::new_object())]);
        if let Err(e) = compiled.evaluate(&empty) {
            let mut ce = match &e {
                EvalError::Runtime {
                    message,
                    line,
                    column,
                } => {
                    let mut ce = err(
                        CompileErrorKind::Semantic,
                        "spec.rego",
                        format!("fails on an empty input: {message}"),
                    );
                    ce.line = *line;
                    ce.column = *column;
                    ce
                }
                EvalError::TimedOut { .. } => err(
                    CompileErrorKind::Semantic,
                    "spec.rego",
                    format!("on an empty input, {e}"),
                ),
            };
            ce.snippet = None;
            return Err(ce);
        }
        Ok(compiled)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `metadata.name`, shared.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.inner.name
    }

    pub fn enforcement(&self) -> Enforcement {
        self.inner.enforcement
    }

    /// The kinds targeted, `None` for every kind.
    pub fn kinds(&self) -> Option<&[&'static str]> {
        self.inner.kinds.as_deref()
    }

    /// The projects matched, empty for every project.
    pub fn projects(&self) -> &[String] {
        &self.inner.projects
    }

    pub fn controls(&self) -> &Arc<[Control]> {
        &self.inner.controls
    }

    /// The Policy object this was compiled from.
    pub fn policy(&self) -> &api::Policy {
        &self.inner.policy
    }

    /// `data.<package>` of the module.
    pub fn package(&self) -> &str {
        &self.inner.package
    }

    /// SHA-256 of `spec.rego`, hex (to tell evaluated versions apart in evidence).
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Time limit of one evaluation.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Whether the policy applies to an object of `kind` in `project` (`None` for global
    /// objects). With `match.projects`, only objects of those projects (and the Project
    /// objects themselves) match.
    pub fn matches(&self, kind: &str, project: Option<&str>) -> bool {
        let kind_ok = self
            .inner
            .kinds
            .as_ref()
            .is_none_or(|ks| ks.contains(&kind));
        kind_ok && self.matches_project(project)
    }

    /// Whether `match.projects` lets an object of `project` through.
    pub(crate) fn matches_project(&self, project: Option<&str>) -> bool {
        self.inner.projects.is_empty()
            || project.is_some_and(|p| self.inner.projects.iter().any(|q| q == p))
    }

    /// A fresh evaluator for the audit: a VM loaded with the policy's program, or a clone
    /// of the prepared interpreter engine when the module needs the interpreter.
    pub(crate) fn evaluator(&self) -> Evaluator {
        match &self.inner.program {
            Some((program, data)) => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                // Data was accepted once at compile time; the same value is accepted again.
                if vm.set_data(data.clone()).is_ok() {
                    vm.set_execution_timer_config(Some(ExecutionTimerConfig {
                        limit: self.inner.timeout,
                        check_interval: self.inner.check_interval,
                    }));
                    vm.set_max_instructions(VM_MAX_INSTRUCTIONS);
                    vm.set_strict_builtin_errors(self.inner.strict);
                    return Evaluator::Vm(Box::new(vm));
                }
                Evaluator::Interpreter(Box::new(self.inner.engine.clone()))
            }
            None => Evaluator::Interpreter(Box::new(self.inner.engine.clone())),
        }
    }

    /// The prepared engine, `spec.rego` as regorus runs it and whether it is Rego v0 (for
    /// [`crate::explain`]).
    pub(crate) fn parts(&self) -> (&Engine, &Prepared, bool) {
        (&self.inner.engine, &self.inner.prepared, self.inner.v0)
    }

    /// Full paths of the violation rules the module defines (`data.pkg.deny`...).
    pub fn rules(&self) -> &[String] {
        &self.inner.rules
    }

    /// Whether evaluations run on regorus's bytecode VM (else on its interpreter).
    pub fn compiled_to_vm(&self) -> bool {
        self.inner.program.is_some()
    }

    /// Evaluates the policy on a complete `input` document with the interpreter and
    /// strict errors (a runtime error is an error, reported with its Rego line): what
    /// admission does, so that a broken `deny` policy fails closed.
    pub fn evaluate(&self, input: &Value) -> Result<Vec<RawViolation>, EvalError> {
        let mut evaluator = Evaluator::Interpreter(Box::new(self.inner.engine.clone()));
        self.evaluate_with(&mut evaluator, input)
    }

    /// Evaluates the policy on a JSON `input` document (converts it first; for tools and
    /// tests, the hot paths convert once per object).
    pub fn evaluate_json(&self, input: &serde_json::Value) -> Result<Vec<RawViolation>, EvalError> {
        self.evaluate(&to_rego(input))
    }

    /// Evaluates the policy as the audit does: on the bytecode VM when the module
    /// compiled to it, where (as in OPA without `--strict-builtin-errors`) a runtime
    /// error inside a rule body makes that body undefined rather than failing.
    pub fn evaluate_audit(&self, input: &Value) -> Result<Vec<RawViolation>, EvalError> {
        let mut evaluator = self.evaluator();
        self.evaluate_with(&mut evaluator, input)
    }

    /// Evaluates with an evaluator obtained from [`Self::evaluator`], reused across
    /// inputs. After a timeout, throw the evaluator away: it may be mid-state.
    pub(crate) fn evaluate_with(
        &self,
        evaluator: &mut Evaluator,
        input: &Value,
    ) -> Result<Vec<RawViolation>, EvalError> {
        let input = self.input_for(input);
        let mut out = Vec::new();
        match evaluator {
            Evaluator::Vm(vm) => {
                vm.set_input(input.clone());
                for rule in &self.inner.rules {
                    match vm.execute_entry_point_by_name(rule) {
                        Ok(value) => collect(&self.inner.name, &value, &mut out),
                        Err(
                            VmError::TimeLimitExceeded { .. }
                            | VmError::InstructionLimitExceeded { .. },
                        ) => {
                            return Err(EvalError::TimedOut {
                                limit: self.inner.timeout,
                            });
                        }
                        // The VM's errors name a program counter, not a line: evaluate
                        // again on the interpreter, whose error names the Rego line
                        // and column (errors are rare; their diagnosis is worth it).
                        Err(_) => {
                            let mut engine =
                                Evaluator::Interpreter(Box::new(self.inner.engine.clone()));
                            return self.evaluate_with(&mut engine, &input);
                        }
                    }
                }
            }
            Evaluator::Interpreter(engine) => {
                engine.set_input(input);
                for rule in &self.inner.rules {
                    let value = engine
                        .eval_rule(rule.clone())
                        .map_err(|e| self.interpreter_error(&e))?;
                    collect(&self.inner.name, &value, &mut out);
                }
            }
        }
        Ok(out)
    }

    fn interpreter_error(&self, e: &anyhow::Error) -> EvalError {
        let timed_out = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<LimitError>(),
                Some(LimitError::TimeLimitExceeded { .. })
            )
        });
        if timed_out {
            EvalError::TimedOut {
                limit: self.inner.timeout,
            }
        } else {
            EvalError::runtime(&format!("{e:#}")).relocated(&self.inner.prepared)
        }
    }

    /// The input with `parameters` added when the policy has some (Gatekeeper's
    /// `input.parameters`); otherwise the shared input itself.
    pub(crate) fn input_for(&self, input: &Value) -> Value {
        match &self.inner.parameters {
            None => input.clone(),
            Some(p) => {
                let mut v = input.clone();
                if let Ok(map) = v.as_object_mut() {
                    map.insert(key("parameters"), p.clone());
                }
                v
            }
        }
    }
}

/// Instructions one evaluation may run on the VM before it is stopped like a timeout
/// (regorus's default, 25,000, is too low for policies that walk a fleet).
const VM_MAX_INSTRUCTIONS: usize = 50_000_000;

/// What evaluates a policy: regorus's bytecode VM, or its tree-walking interpreter.
pub(crate) enum Evaluator {
    Vm(Box<RegoVM>),
    Interpreter(Box<Engine>),
}

/// Compiles the violation rules to VM bytecode; `None` when regorus's VM compiler does not
/// support something the module uses (the interpreter then evaluates it).
fn vm_program(
    engine: &Engine,
    rules: &[String],
    parameters: Option<&Value>,
) -> Option<(Arc<Program>, Value)> {
    let mut engine = engine.clone();
    let first: regorus::Rc<str> = rules.first()?.as_str().into();
    let compiled = engine.compile_with_entrypoint(&first).ok()?;
    let entry_points: Vec<&str> = rules.iter().map(String::as_str).collect();
    let program = Compiler::compile_from_policy(&compiled, &entry_points).ok()?;
    let mut data = prelude_data();
    if let (Some(p), Ok(map)) = (parameters, data.as_object_mut()) {
        map.insert(key("parameters"), p.clone());
    }
    let mut vm = RegoVM::new();
    vm.load_program(program.clone());
    vm.set_data(data.clone()).ok()?;
    Some((program, data))
}

/// Turns the value of a violation rule into violations.
fn collect(policy: &str, value: &Value, out: &mut Vec<RawViolation>) {
    match value {
        Value::Undefined | Value::Null | Value::Bool(false) => {}
        Value::Bool(true) => out.push(RawViolation {
            message: format!("denied by policy {policy:?}"),
            field: None,
        }),
        Value::Set(items) => out.extend(items.iter().map(one)),
        Value::Array(items) => out.extend(items.iter().map(one)),
        Value::Object(map)
            if !map.contains_key(&key("msg")) && !map.contains_key(&key("message")) =>
        {
            // A partial object rule (`deny[id] := msg`): each value is a violation.
            out.extend(map.values().map(one));
        }
        other => out.push(one(other)),
    }
}

fn one(value: &Value) -> RawViolation {
    match value {
        Value::String(s) => RawViolation {
            message: s.to_string(),
            field: None,
        },
        Value::Object(map) => {
            let text = |k: &str| match map.get(&key(k)) {
                Some(Value::String(s)) => Some(s.to_string()),
                Some(Value::Undefined) | None => None,
                Some(other) => Some(to_json(other).to_string()),
            };
            let message = text("msg")
                .or_else(|| text("message"))
                .unwrap_or_else(|| to_json(value).to_string());
            RawViolation {
                message,
                field: text("field"),
            }
        }
        other => RawViolation {
            message: to_json(other).to_string(),
            field: None,
        },
    }
}

/// Adds one module to `engine` as OPA would read it ([`compat::prepare`]), refusing what
/// [`compat::check`] finds; errors name `field` with the line and column the user wrote.
/// Returns the package (`data.x.y`) and the prepared source.
fn add_module(
    engine: &mut Engine,
    policy: &str,
    field: &str,
    file: &str,
    source: &str,
    v0: bool,
) -> Result<(String, Prepared), CompileError> {
    let prepared = compat::prepare(file, source, v0);
    let package = engine
        .add_policy(file.to_string(), prepared.source.clone())
        .map_err(|e| {
            let mut ce = CompileError::from_regorus(policy, CompileErrorKind::Syntax, &e);
            ce.field = field.to_string();
            ce.relocate(&prepared, source);
            if !v0 && compat::is_v0(file, source) {
                ce.message.push_str(&format!(
                    " (the module is Rego v0, pre-1.0 syntax: annotate the Policy with \
                     `{REGO_VERSION_ANNOTATION}: v0`, or add `if`/`contains` as OPA 1.x requires)"
                ));
            }
            ce
        })?;
    if let Some(f) = compat::check(file, &prepared, v0).into_iter().next() {
        let mut ce = CompileError::new(policy, CompileErrorKind::Semantic, field, f.message);
        ce.line = Some(f.line);
        ce.column = Some(f.column);
        ce.snippet = snippet(source, f.line, f.column);
        return Err(ce);
    }
    Ok((package, prepared))
}

/// The source line `line` with a caret under `column`, as regorus prints it.
pub(crate) fn snippet(source: &str, line: u32, column: u32) -> Option<String> {
    let text = source.lines().nth((line as usize).checked_sub(1)?)?;
    let pad = " ".repeat(line.to_string().len());
    let caret = " ".repeat((column as usize).saturating_sub(1));
    Some(format!("{pad} |\n{line} | {text}\n{pad} | {caret}^"))
}
