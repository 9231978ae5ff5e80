//! [`PolicySet`]: every compiled policy, indexed by kind, and admission
//! ([`PolicySet::admit`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use api::kinds::{Control, Enforcement};
use regorus::Value;
use serde_json::json;

use crate::compile::{CompileOptions, CompiledPolicy, RawViolation};
use crate::error::{CompileError, EvalError, PolicyError};
use crate::explain::BodyExplanation;
use crate::input::{self, Actor, FleetContext, Head, Operation, to_rego};

/// The installed policies. Cheap to clone (two `Arc`s); replace it as a whole when a
/// policy changes ([`PolicySet::with_policy`], [`PolicySet::without_policy`]).
#[derive(Clone, Default)]
pub struct PolicySet {
    /// Sorted by name.
    policies: Arc<[CompiledPolicy]>,
    /// Kind → indices of the policies that target it (including every-kind policies).
    by_kind: Arc<HashMap<&'static str, Vec<usize>>>,
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.policies.iter().map(|p| p.name()))
            .finish()
    }
}

impl PolicySet {
    /// A set of compiled policies; a later policy replaces an earlier one of the same name.
    pub fn new(policies: impl IntoIterator<Item = CompiledPolicy>) -> Self {
        let mut by_name: Vec<CompiledPolicy> = Vec::new();
        for p in policies {
            match by_name.iter_mut().find(|q| q.name() == p.name()) {
                Some(q) => *q = p,
                None => by_name.push(p),
            }
        }
        by_name.sort_by(|a, b| a.name().cmp(b.name()));
        let mut by_kind: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for info in api::KINDS {
            let ids = by_name
                .iter()
                .enumerate()
                .filter(|(_, p)| p.kinds().is_none_or(|ks| ks.contains(&info.kind)))
                .map(|(i, _)| i)
                .collect();
            by_kind.insert(info.kind, ids);
        }
        PolicySet {
            policies: by_name.into(),
            by_kind: Arc::new(by_kind),
        }
    }

    /// Compiles every policy; the ones that do not compile are left out and returned.
    pub fn compile(
        policies: &[api::Policy],
        options: CompileOptions,
    ) -> (PolicySet, Vec<CompileError>) {
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for p in policies {
            match CompiledPolicy::compile(p, options) {
                Ok(c) => ok.push(c),
                Err(e) => errors.push(e),
            }
        }
        (PolicySet::new(ok), errors)
    }

    /// A new set with `policy` added or replacing the one of the same name.
    pub fn with_policy(&self, policy: CompiledPolicy) -> PolicySet {
        PolicySet::new(self.policies.iter().cloned().chain([policy]))
    }

    /// A new set without the policy `name`.
    pub fn without_policy(&self, name: &str) -> PolicySet {
        PolicySet::new(self.policies.iter().filter(|p| p.name() != name).cloned())
    }

    /// A new set with only the policies whose names are given (for re-auditing the
    /// policies that changed).
    pub fn subset<S: AsRef<str>>(&self, names: &[S]) -> PolicySet {
        PolicySet::new(
            self.policies
                .iter()
                .filter(|p| names.iter().any(|n| n.as_ref() == p.name()))
                .cloned(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&CompiledPolicy> {
        self.policies
            .binary_search_by(|p| p.name().cmp(name))
            .ok()
            .map(|i| &self.policies[i])
    }

    /// Policies in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &CompiledPolicy> + '_ {
        self.policies.iter()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Indices of the policies that apply to an object of `kind` in `project`.
    pub(crate) fn matching<'a>(
        &'a self,
        kind: &str,
        project: Option<&'a str>,
    ) -> impl Iterator<Item = (usize, &'a CompiledPolicy)> + 'a {
        self.by_kind
            .get(kind)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| (i, &self.policies[i]))
            .filter(move |(_, p)| p.matches_project(project))
    }

    /// Admission: evaluates every `deny` and `warn` policy that matches the object.
    ///
    /// - a `deny` policy that reports violations refuses the request (`denied`);
    /// - a `warn` policy's violations are returned as `warnings`;
    /// - `audit` policies are not evaluated here (the continuous audit reports them);
    /// - a `deny` policy that fails (runtime error, time limit) **fails closed**: the
    ///   request is refused with a violation saying the policy is broken and how to
    ///   proceed, and the failure is in `errors`;
    /// - a failing `warn` policy adds a warning and an error, never a refusal.
    ///
    /// On `DELETE`, `input.object` is absent and `input.oldObject` is the object being
    /// deleted (as in Kubernetes), so a policy written for create and update does not
    /// fire on delete unless it looks at `input.oldObject`.
    pub fn admit(&self, request: &AdmissionRequest<'_>) -> AdmissionResult {
        let mut result = AdmissionResult::default();
        let Some(subject) = request.object.or(request.old_object) else {
            return result;
        };
        let head = Head::of(subject);
        let project = head.project();
        let mut candidates = self
            .matching(head.kind, project)
            .filter(|(_, p)| p.enforcement() != Enforcement::Audit)
            .peekable();
        if candidates.peek().is_none() {
            return result;
        }

        let input = admission_input(request, subject, &head);
        for (_, policy) in candidates {
            result.evaluated += 1;
            match policy.evaluate(&input) {
                Ok(found) => {
                    let target = match policy.enforcement() {
                        Enforcement::Deny => &mut result.denied,
                        _ => &mut result.warnings,
                    };
                    target.extend(found.into_iter().map(|v| Violation::new(policy, v)));
                }
                Err(error) => {
                    let v = Violation::broken(policy, &error);
                    match policy.enforcement() {
                        Enforcement::Deny => result.denied.push(v),
                        _ => result.warnings.push(v),
                    }
                    result.errors.push(PolicyError {
                        policy: policy.name_arc().clone(),
                        enforcement: policy.enforcement(),
                        error,
                    });
                }
            }
        }
        result
    }
}

impl PolicySet {
    /// Explains, for every policy that matches the request's object (audit policies
    /// included), which bodies of its violation rules held on the input admission would
    /// build (`meridian policy eval --explain`).
    pub fn explain(
        &self,
        request: &AdmissionRequest<'_>,
    ) -> Vec<(CompiledPolicy, Result<Vec<BodyExplanation>, EvalError>)> {
        let Some(subject) = request.object.or(request.old_object) else {
            return Vec::new();
        };
        let head = Head::of(subject);
        let input = admission_input(request, subject, &head);
        self.matching(head.kind, head.project())
            .map(|(_, p)| (p.clone(), p.explain(&input)))
            .collect()
    }
}

/// The input document of an admission request.
fn admission_input(
    request: &AdmissionRequest<'_>,
    subject: &serde_json::Value,
    head: &Head<'_>,
) -> Value {
    let object = request.object.map(to_rego).unwrap_or(Value::Undefined);
    let old_object = request.old_object.map(to_rego).unwrap_or(Value::Undefined);
    let workload = request.workload.map(to_rego);
    let context = input::context(request.fleet, head, subject, workload);
    let actor = request
        .actor
        .map(Actor::to_rego)
        .unwrap_or(Value::Undefined);
    input::input(
        request.operation.as_str(),
        object,
        old_object,
        actor,
        context,
    )
}

/// What admission is asked to decide.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRequest<'a> {
    pub operation: Operation,
    /// The object as it would be stored; `None` on delete.
    pub object: Option<&'a serde_json::Value>,
    /// The stored object on update and delete.
    pub old_object: Option<&'a serde_json::Value>,
    /// Who asks; `None` for Meridian's own writes without an actor.
    pub actor: Option<&'a Actor>,
    /// Read-only fleet context (sites, projects, node sites).
    pub fleet: &'a FleetContext,
    /// For an Allocation: the Workload it places (`input.context.workload`).
    pub workload: Option<&'a serde_json::Value>,
}

/// One violation, attributed to its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub policy: Arc<str>,
    pub enforcement: Enforcement,
    pub message: String,
    /// The field of the object the violation concerns (`spec.data.residency`), when the
    /// policy says.
    pub field: Option<String>,
    pub controls: Arc<[Control]>,
}

impl Violation {
    pub(crate) fn new(policy: &CompiledPolicy, raw: RawViolation) -> Self {
        Violation {
            policy: policy.name_arc().clone(),
            enforcement: policy.enforcement(),
            message: raw.message,
            field: raw.field,
            controls: policy.controls().clone(),
        }
    }

    /// The violation that stands for a policy that could not be evaluated.
    fn broken(policy: &CompiledPolicy, error: &EvalError) -> Self {
        let what = match policy.enforcement() {
            Enforcement::Deny => {
                "this deny policy fails closed, so the request is refused. Fix the policy \
                 (try it with `meridian policy eval` and `meridian policy test`), or set its \
                 spec.enforcement to warn or audit until it is fixed"
            }
            _ => {
                "the request was not checked by it. Fix the policy (try it with `meridian policy eval`)"
            }
        };
        Violation {
            policy: policy.name_arc().clone(),
            enforcement: policy.enforcement(),
            message: format!("policy {:?} is broken: {error}; {what}", policy.name()),
            field: None,
            controls: policy.controls().clone(),
        }
    }

    /// `[policy] message`, for people.
    pub fn display(&self) -> String {
        format!("[{}] {}", self.policy, self.message)
    }

    /// JSON for `-o json` and API bodies.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "policy": &*self.policy,
            "enforcement": self.enforcement.as_str(),
            "message": self.message,
            "field": self.field,
            "controls": controls_json(&self.controls),
        })
    }
}

pub(crate) fn controls_json(controls: &[Control]) -> serde_json::Value {
    controls
        .iter()
        .map(|c| json!({"framework": c.framework, "id": c.id}))
        .collect()
}

/// The outcome of admission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionResult {
    /// Violations of `deny` policies (and broken `deny` policies): the request is refused
    /// when this is not empty.
    pub denied: Vec<Violation>,
    /// Violations of `warn` policies (and broken `warn` policies): returned to the client.
    pub warnings: Vec<Violation>,
    /// Policies that could not be evaluated.
    pub errors: Vec<PolicyError>,
    /// Number of policies evaluated.
    pub evaluated: usize,
}

impl AdmissionResult {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.denied.is_empty()
    }

    /// One line for the `Status` message of a refusal (403).
    pub fn denial_message(&self) -> Option<String> {
        if self.denied.is_empty() {
            return None;
        }
        let mut policies: Vec<&str> = self.denied.iter().map(|v| &*v.policy).collect();
        policies.dedup();
        let details: Vec<String> = self.denied.iter().map(Violation::display).collect();
        Some(format!(
            "admission denied by {} {} ({}): {}",
            policies.len(),
            if policies.len() == 1 {
                "policy"
            } else {
                "policies"
            },
            policies.join(", "),
            details.join("; ")
        ))
    }

    /// Warning texts for the client (the `Warning` header, printed by the CLI).
    pub fn warning_texts(&self) -> Vec<String> {
        self.warnings.iter().map(Violation::display).collect()
    }
}
