//! Admission: deny, warn and audit; matching by kind and project; delete; fail-closed;
//! time limits.

use std::time::Duration;

use api::kinds::Enforcement;
use policy::{AdmissionRequest, EvalError, Operation, PolicySet};
use serde_json::json;

use crate::support::*;

const REPLICAS: &str = r#"package demo

violation contains {"msg": msg, "field": "spec.replicas"} if {
	input.object.spec.replicas > 1
	msg := sprintf("%s has %d replicas", [input.object.metadata.name, input.object.spec.replicas])
}
"#;

#[test]
fn deny_warn_and_audit() {
    let set = set_of(&[
        policy("d", Enforcement::Deny, &["Workload"], REPLICAS),
        policy("w", Enforcement::Warn, &["Workload"], REPLICAS),
        policy("a", Enforcement::Audit, &["Workload"], REPLICAS),
    ]);
    let fleet = fleet();
    let r = create(&set, &fleet, &example("Workload", "payroll-api"));
    assert!(!r.allowed());
    assert_eq!(names(&r.denied), ["d"]);
    assert_eq!(names(&r.warnings), ["w"]);
    assert_eq!(
        r.evaluated, 2,
        "audit policies are not evaluated at admission"
    );
    assert_eq!(r.denied[0].field.as_deref(), Some("spec.replicas"));
    assert_eq!(r.denied[0].controls[0].id, "CM-6");
    assert_eq!(
        r.denial_message().unwrap(),
        "admission denied by 1 policy (d): [d] payroll-api has 2 replicas"
    );
    assert_eq!(r.warning_texts(), ["[w] payroll-api has 2 replicas"]);
    assert!(r.errors.is_empty());

    let mut single = example("Workload", "payroll-api");
    single["spec"]["replicas"] = json!(1);
    let r = create(&set, &fleet, &single);
    assert!(r.allowed() && r.warnings.is_empty(), "{r:?}");
}

#[test]
fn matches_by_kind_and_project() {
    let set = set_of(&[
        policy("nodes-only", Enforcement::Deny, &["Node"], REPLICAS),
        with_projects(
            policy("research-only", Enforcement::Deny, &["Workload"], REPLICAS),
            &["research"],
        ),
        policy("everything", Enforcement::Warn, &[], REPLICAS),
        with_projects(
            policy(
                "research-projects",
                Enforcement::Warn,
                &["Project"],
                REPLICAS,
            ),
            &["research"],
        ),
    ]);
    let fleet = fleet();
    // finance workload: only the every-kind policy applies.
    let r = create(&set, &fleet, &example("Workload", "payroll-api"));
    assert!(r.allowed());
    assert_eq!(names(&r.warnings), ["everything"]);
    assert_eq!(r.evaluated, 1);
    // research workload: the project policy applies.
    let r = create(&set, &fleet, &example("Workload", "genome-align"));
    assert_eq!(names(&r.denied), ["research-only"]);
    // A global object never matches a project list; the Project object matches by name.
    let r = create(&set, &fleet, &example("Project", "research"));
    assert_eq!(r.evaluated, 2, "{r:?}");
    let r = create(&set, &fleet, &example("Project", "finance"));
    assert_eq!(r.evaluated, 1, "{r:?}");
    let r = create(&set, &fleet, &example("Site", "ovh-sbg"));
    assert_eq!(r.evaluated, 1, "{r:?}");
}

#[test]
fn input_carries_operation_actor_old_object_and_context() {
    let set = set_of(&[policy(
        "echo",
        Enforcement::Warn,
        &["Workload"],
        r#"package demo

deny contains sprintf("%s by %s (%s), old replicas %d, %d sites, project fence %s", [
	input.operation, input.actor.id, input.actor.role, input.oldObject.spec.replicas,
	count(input.context.sites), concat(",", input.context.project.allowedLocations),
])
"#,
    )]);
    let fleet = fleet();
    let new = example("Workload", "payroll-api");
    let mut old = new.clone();
    old["spec"]["replicas"] = json!(1);
    let actor = actor();
    let r = set.admit(&AdmissionRequest {
        operation: Operation::Update,
        object: Some(&new),
        old_object: Some(&old),
        actor: Some(&actor),
        fleet: &fleet,
        workload: None,
    });
    assert_eq!(
        r.warnings[0].message,
        "UPDATE by tok-1234 (operator), old replicas 1, 5 sites, project fence EU"
    );
}

#[test]
fn delete_has_no_object_so_create_rules_do_not_fire() {
    let set = set_of(&[
        policy("replicas", Enforcement::Deny, &["Workload"], REPLICAS),
        policy(
            "protect",
            Enforcement::Deny,
            &["Workload"],
            r#"package demo

deny contains "month-end-close is protected" if {
	input.operation == "DELETE"
	input.oldObject.metadata.name == "month-end-close"
}
"#,
        ),
    ]);
    let fleet = fleet();
    let delete = |o: &serde_json::Value| {
        set.admit(&AdmissionRequest {
            operation: Operation::Delete,
            object: None,
            old_object: Some(o),
            actor: None,
            fleet: &fleet,
            workload: None,
        })
    };
    // payroll-api has 2 replicas but may be deleted.
    assert!(delete(&example("Workload", "payroll-api")).allowed());
    let r = delete(&example("Workload", "month-end-close"));
    assert_eq!(names(&r.denied), ["protect"]);
}

const BROKEN: &str = r#"package demo

deny contains msg if {
	per_replica := 100 / (input.object.spec.replicas - input.object.spec.replicas)
	msg := sprintf("%v", [per_replica])
}
"#;

#[test]
fn builtin_errors_are_undefined_unless_strict_where_deny_fails_closed_and_warn_only_warns() {
    let fleet = fleet();
    let w = example("Workload", "payroll-api");

    // As in OPA, a built-in error makes the body undefined: nothing is denied.
    let set = set_of(&[policy(
        "broken-deny",
        Enforcement::Deny,
        &["Workload"],
        BROKEN,
    )]);
    let r = create(&set, &fleet, &w);
    assert!(r.allowed() && r.errors.is_empty(), "{r:?}");

    // With strict built-in errors, a broken deny policy fails closed.
    let set = set_of(&[strict(policy(
        "broken-deny",
        Enforcement::Deny,
        &["Workload"],
        BROKEN,
    ))]);
    let r = create(&set, &fleet, &w);
    assert!(!r.allowed(), "a broken deny policy must refuse");
    let msg = &r.denied[0].message;
    assert!(
        msg.starts_with("policy \"broken-deny\" is broken: Rego error at line 4"),
        "{msg}"
    );
    assert!(msg.contains("divide by zero"), "{msg}");
    assert!(msg.contains("fails closed"), "{msg}");
    assert!(msg.contains("spec.enforcement to warn or audit"), "{msg}");
    assert_eq!(r.errors.len(), 1);
    assert_eq!(&*r.errors[0].policy, "broken-deny");
    assert!(matches!(
        r.errors[0].error,
        EvalError::Runtime { line: Some(4), .. }
    ));

    let set = set_of(&[strict(policy(
        "broken-warn",
        Enforcement::Warn,
        &["Workload"],
        BROKEN,
    ))]);
    let r = create(&set, &fleet, &w);
    assert!(r.allowed(), "a broken warn policy must not refuse");
    assert_eq!(names(&r.warnings), ["broken-warn"]);
    assert_eq!(r.errors.len(), 1);

    // Audit policies are not evaluated at admission at all.
    let set = set_of(&[policy(
        "broken-audit",
        Enforcement::Audit,
        &["Workload"],
        BROKEN,
    )]);
    let r = create(&set, &fleet, &w);
    assert!(r.allowed() && r.warnings.is_empty() && r.errors.is_empty());
}

/// Loops over 10^10 pairs for Workloads; nothing for other objects.
pub const RUNAWAY: &str = r#"package demo

deny contains msg if {
	input.object.kind == "Workload"
	n := count([x | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000); x := i * j])
	msg := sprintf("%d", [n])
}
"#;

#[test]
fn time_limit_is_reported_and_fails_closed() {
    let fleet = fleet();
    let limit = Duration::from_millis(30);
    let set = PolicySet::new([
        compile_with_timeout(
            &policy("runaway", Enforcement::Deny, &["Workload"], RUNAWAY),
            limit,
        ),
        compile_with_timeout(
            &policy("runaway-warn", Enforcement::Warn, &["Workload"], RUNAWAY),
            limit,
        ),
        compile(&policy("fine", Enforcement::Warn, &["Workload"], REPLICAS)),
    ]);
    let r = create(&set, &fleet, &example("Workload", "payroll-api"));
    assert!(!r.allowed());
    assert_eq!(names(&r.denied), ["runaway"]);
    assert!(
        r.denied[0]
            .message
            .contains("ran over its time limit of 30 ms"),
        "{:?}",
        r.denied
    );
    assert_eq!(names(&r.warnings), ["fine", "runaway-warn"]);
    assert_eq!(r.errors.len(), 2);
    assert!(
        r.errors
            .iter()
            .all(|e| e.error == EvalError::TimedOut { limit })
    );
}

#[test]
fn policy_set_updates_are_copy_on_write() {
    let a = set_of(&[policy("a", Enforcement::Deny, &["Workload"], REPLICAS)]);
    let b = a.with_policy(compile(&policy(
        "b",
        Enforcement::Warn,
        &["Workload"],
        REPLICAS,
    )));
    let b2 = b.with_policy(compile(&policy(
        "b",
        Enforcement::Deny,
        &["Workload"],
        REPLICAS,
    )));
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 2);
    assert_eq!(b.get("b").unwrap().enforcement(), Enforcement::Warn);
    assert_eq!(b2.get("b").unwrap().enforcement(), Enforcement::Deny);
    assert_eq!(b2.without_policy("a").len(), 1);
    assert_eq!(
        b2.subset(&["a"])
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn compiled_policies_evaluate_concurrently() {
    let set = set_of(&[policy("d", Enforcement::Deny, &["Workload"], REPLICAS)]);
    let fleet = fleet();
    let w = example("Workload", "payroll-api");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert!(!create(&set, &fleet, &w).allowed());
                }
            });
        }
    });
}
