//! Policy evaluation for Meridian: Rego policies (through regorus, Microsoft's Rust Rego
//! interpreter) compiled once and evaluated at admission and by the continuous audit,
//! the built-in packs, an `opa test`-like runner, compliance summaries and NIST OSCAL
//! `assessment-results` evidence.
//!
//! This crate knows nothing of HTTP, SQL or clocks: objects come in as JSON values,
//! timestamps come from the caller, and the packs' Rego is compiled in.
//!
//! # The Rego contract
//!
//! A `Policy` object's `spec.rego` is one Rego module (Rego v1 syntax, as OPA 1.x; the
//! annotation `policy.meridian.dev/rego-version: v0` selects the pre-1.0 syntax for
//! unmigrated Gatekeeper templates).
//!
//! - **Package**: any dotted path of identifiers except `meridian.lib` (the prelude).
//! - **Violations**: the module defines a `deny` and/or a `violation` set rule (both are
//!   read and joined). An element is either a string (the message) or an object
//!   `{"msg": "...", "field": "spec.data.residency"}` like Gatekeeper's `violation`
//!   (`message` is accepted for `msg`; other keys are ignored). A partial object rule
//!   (`deny[id] := msg`) and a boolean `deny := true` also work. A module with neither
//!   rule is refused when stored.
//!
//!   ```rego
//!   package meridian.example
//!
//!   violation contains {"msg": msg, "field": "spec.data.residency"} if {
//!       input.object.kind == "Workload"
//!       input.object.spec.data.classification == "personal"
//!       not input.object.spec.data.residency
//!       msg := sprintf("%s: personal data needs a residency", [input.object.metadata.name])
//!   }
//!   ```
//! - **`input`** (absent fields are left out, never `null`):
//!   - `operation`: `CREATE`, `UPDATE`, `DELETE` at admission; `AUDIT` in the audit;
//!   - `object`: the object as it would be stored (absent on `DELETE`, as in Kubernetes);
//!   - `oldObject`: the stored object on `UPDATE` and `DELETE`;
//!   - `actor`: `{"id", "role", "project"}` of the authenticated caller (admission only);
//!   - `context`: read-only facts: `sites` (`{name: SiteSpec}`), `project` (the
//!     ProjectSpec of the object's project), and for an Allocation `targetSite` (the
//!     SiteSpec of `spec.site`, or of its node's site) and `workload` (its Workload);
//!   - `parameters`: the policy's `spec.parameters`, as Gatekeeper gives them.
//! - **`data.parameters`**: the policy's `spec.parameters` too (the OPA way).
//! - **`data.meridian.lib`**: a prelude loaded with every policy: `blocs` (`EU`, `EEA`,
//!   `EFTA`, `FIVE_EYES` → countries; also the base document `data.meridian.blocs`),
//!   `countries(code)` (the set of countries a code covers), `expand(codes)` (the set of
//!   countries a residency covers) and `display(obj)` (`project/name`).
//! - **Targets**: `spec.targets` lists kinds (`Workload`, `Node`...; empty or `*` for
//!   every kind); `spec.match.projects` restricts to objects of those projects (global
//!   objects never match a project list; a Project object matches by its own name).
//!
//! # Enforcement and failure
//!
//! [`PolicySet::admit`] evaluates `deny` and `warn` policies on create, update and
//! delete: violations of `deny` policies refuse the request, those of `warn` policies
//! are returned as warnings, `audit` policies are left to the continuous audit, which
//! evaluates every policy whatever its enforcement.
//!
//! A policy that cannot be evaluated (a runtime error, or running over its time limit)
//! is never silently passed: a broken `deny` policy **fails closed** (the request is
//! refused with a message that names the policy, says it is broken and how to proceed:
//! fix it, or set its enforcement to `warn`/`audit` meanwhile); a broken `warn` policy
//! adds a warning; both are listed in [`AdmissionResult::errors`]. In the audit a failed
//! policy keeps its earlier findings for the object (they are not resolved) and is
//! reported in [`AuditRun::errors`]. Problems found when a policy is stored (syntax,
//! unknown functions, an error on an empty input) refuse the Policy itself, with the
//! Rego line and column ([`CompileError`]).
//!
//! # Time limit
//!
//! Every evaluation of every policy has a wall-clock limit ([`CompileOptions::timeout`],
//! 100 ms by default). It uses regorus's cooperative execution timer: the interpreter
//! reads the clock every few dozen steps of its loops and stops with an error past the
//! deadline, so the evaluating thread is freed; no thread is abandoned. The trade-off:
//! the check happens between interpreter steps, so a single builtin call that is slow by
//! itself (a regular expression over a very large string) is only stopped after it
//! returns. A watchdog thread per evaluation would bound that too, but would cost a
//! thread hand-off per evaluation (tens of microseconds, more than an evaluation) and
//! leave runaway threads behind. In the audit, a policy that runs over its limit three
//! times in a run is skipped for the rest of the run ([`AuditOptions`]).
//!
//! # Performance
//!
//! A policy is parsed, analysed and warmed up once ([`CompiledPolicy::compile`]);
//! evaluations use clones of the prepared engine. An object is converted from JSON to a
//! regorus value once and shared by every policy; the audit reuses one engine per policy
//! and thread across objects ([`Auditor`]) and runs on several threads ([`audit`]).

mod audit;
mod builtins;
mod compat;
mod compile;
mod error;
mod explain;
mod input;
pub mod oscal;
pub mod packs;
mod prelude;
mod set;
mod summary;
mod testing;

pub use audit::{
    AuditError, AuditOptions, AuditPage, AuditRun, Auditor, Finding, FindingStore, ObjectRef,
    ObjectResult, StoreLimits, audit, audit_pages, findings_to_json,
};
pub use compile::{
    CompileOptions, CompiledPolicy, DEFAULT_TIMEOUT, REGO_VERSION_ANNOTATION, RawViolation,
    STRICT_ANNOTATION, VIOLATION_RULES,
};
pub use error::{CompileError, CompileErrorKind, EvalError, PolicyError};
pub use explain::{BodyExplanation, StatementExplanation, StatementOutcome};
pub use input::{AUDIT_OPERATION, Actor, FleetContext, Operation, to_rego};
pub use packs::{Pack, pack, packs};
pub use prelude::{PRELUDE_PACKAGE, PRELUDE_PATH, prelude_data_json, prelude_source};
pub use set::{AdmissionRequest, AdmissionResult, PolicySet, Violation};
pub use summary::{ComplianceSummary, FrameworkSummary, PolicySummary};
pub use testing::{
    FailedAt, RegoVersion, TestOptions, TestOutcome, TestReport, TestResult, run_tests,
    run_tests_with,
};

/// The regorus version policies are evaluated with (for `meridian version`).
pub const REGO_ENGINE: &str = "regorus 0.14";
