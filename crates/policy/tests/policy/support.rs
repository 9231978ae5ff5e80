//! Shared helpers: the example estate, policies written inline, admission shortcuts.

use std::time::Duration;

use api::kinds::{Control, Enforcement, PolicyMatch, PolicySpec};
use api::{ObjectMeta, Policy};
use policy::{
    Actor, AdmissionRequest, AdmissionResult, CompileOptions, CompiledPolicy, FleetContext,
    Operation, PolicySet,
};
use serde_json::Value;

/// Every object of `examples/*.yaml`, as JSON.
pub fn examples() -> Vec<Value> {
    let mut out = Vec::new();
    for (file, text) in api::examples::FILES {
        for m in api::parse_manifests(file, text).expect("examples parse") {
            out.push(m.object.to_value());
        }
    }
    out
}

/// Number of example objects of a kind.
pub fn count_kind(kind: &str) -> u64 {
    examples().iter().filter(|o| o["kind"] == kind).count() as u64
}

/// One example object by kind and name.
pub fn example(kind: &str, name: &str) -> Value {
    examples()
        .into_iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no example {kind} {name}"))
}

/// The fleet context of the example estate.
pub fn fleet() -> FleetContext {
    FleetContext::from_objects(&examples())
}

pub fn policy(name: &str, enforcement: Enforcement, targets: &[&str], rego: &str) -> Policy {
    Policy::new(
        ObjectMeta::named(name),
        PolicySpec {
            description: None,
            enforcement,
            rego: rego.to_string(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            match_: None,
            parameters: None,
            controls: vec![Control {
                framework: "NIST SP 800-53".into(),
                id: "CM-6".into(),
            }],
            ..PolicySpec::default()
        },
    )
}

/// The policy with built-in errors strict (`opa eval --strict-builtin-errors`).
pub fn strict(mut p: Policy) -> Policy {
    p.metadata
        .annotations
        .insert(policy::STRICT_ANNOTATION.into(), "true".into());
    p
}

pub fn with_projects(mut p: Policy, projects: &[&str]) -> Policy {
    p.spec.match_ = Some(PolicyMatch {
        projects: projects.iter().map(|s| s.to_string()).collect(),
    });
    p
}

pub fn compile(p: &Policy) -> CompiledPolicy {
    CompiledPolicy::compile(p, CompileOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn compile_with_timeout(p: &Policy, timeout: Duration) -> CompiledPolicy {
    let options = CompileOptions {
        timeout,
        ..CompileOptions::default()
    };
    CompiledPolicy::compile(p, options).unwrap_or_else(|e| panic!("{e}"))
}

pub fn set_of(policies: &[Policy]) -> PolicySet {
    PolicySet::new(policies.iter().map(compile))
}

pub fn actor() -> Actor {
    Actor {
        id: "tok-1234".into(),
        role: "operator".into(),
        project: None,
    }
}

/// Admission of a create.
pub fn create(set: &PolicySet, fleet: &FleetContext, object: &Value) -> AdmissionResult {
    let actor = actor();
    set.admit(&AdmissionRequest {
        operation: Operation::Create,
        object: Some(object),
        old_object: None,
        actor: Some(&actor),
        fleet,
        workload: None,
    })
}

/// Admission of an allocation (with its workload).
pub fn create_allocation(
    set: &PolicySet,
    fleet: &FleetContext,
    allocation: &Value,
    workload: &Value,
) -> AdmissionResult {
    set.admit(&AdmissionRequest {
        operation: Operation::Create,
        object: Some(allocation),
        old_object: None,
        actor: None,
        fleet,
        workload: Some(workload),
    })
}

/// An allocation of `workload` on `node` at `site`.
pub fn allocation(workload: &Value, replica: u32, node: &str, site: &str) -> Value {
    let ns = workload["metadata"]["namespace"].as_str().unwrap();
    let name = workload["metadata"]["name"].as_str().unwrap();
    serde_json::json!({
        "apiVersion": "meridian.dev/v1",
        "kind": "Allocation",
        "metadata": {"name": format!("{name}-{replica}"), "namespace": ns, "uid": format!("uid-{name}-{replica}")},
        "spec": {
            "workload": name,
            "replica": replica,
            "node": node,
            "site": site,
            "resources": workload["spec"]["task"]["resources"].clone(),
        }
    })
}

/// Policies (names) of a list of violations.
pub fn names(vs: &[policy::Violation]) -> Vec<&str> {
    let mut n: Vec<&str> = vs.iter().map(|v| &*v.policy).collect();
    n.dedup();
    n
}
