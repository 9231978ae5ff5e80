//! The audit: every enforcement, allocations with their workloads, threads, failures and
//! the time-limit circuit breaker, the compliance summary.

use std::num::NonZeroUsize;
use std::time::Duration;

use api::kinds::Enforcement;
use jiff::Timestamp;
use policy::{
    AuditOptions, AuditPage, Auditor, ComplianceSummary, EvalError, PolicySet, audit, audit_pages,
    findings_to_json, packs,
};

use crate::admission::RUNAWAY;
use crate::support::*;

fn all_packs() -> PolicySet {
    let policies: Vec<_> = packs().into_iter().flat_map(|p| p.policies).collect();
    PolicySet::new(policies.iter().map(compile))
}

/// The example estate plus an allocation per example workload replica 0, placed where the
/// scheduler would, and one misplaced allocation.
fn estate() -> Vec<serde_json::Value> {
    let mut objects = examples();
    let w = example("Workload", "month-end-close");
    objects.push(allocation(&w, 0, "fra-rhel-01", "onprem-frankfurt"));
    objects.push(allocation(&w, 1, "azure-weu-lnx-01", "azure-westeurope"));
    objects
}

#[test]
fn audit_evaluates_every_enforcement_and_finds_the_misplacement() {
    let set = all_packs();
    let objects = estate();
    let fleet = policy::FleetContext::from_objects(&objects);
    let run = audit(&objects, &set, &fleet, AuditOptions::default());
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_eq!(run.results.len(), objects.len());
    // Nodes × 5 baseline; workloads × (3 sovereignty + 2 ai + 1 baseline); 2 allocations × 3.
    let (nodes, workloads) = (count_kind("Node"), count_kind("Workload"));
    assert_eq!(run.evaluations, nodes * 5 + workloads * 6 + 2 * 3);

    let findings = run.findings(Timestamp::UNIX_EPOCH);
    let alloc: Vec<&str> = findings
        .iter()
        .filter(|f| f.object.kind == "Allocation")
        .map(|f| &*f.policy)
        .collect();
    assert_eq!(
        alloc,
        [
            "sovereignty-placement-residency",
            "sovereignty-strict-operator"
        ]
    );
    assert!(
        findings.iter().all(|f| f.object.kind != "Workload"),
        "the example workloads comply"
    );
    // Every example node lacks an owner label and security facts.
    assert_eq!(
        findings
            .iter()
            .filter(|f| &*f.policy == "baseline-owner-label")
            .count() as u64,
        nodes
    );
    let json = findings_to_json(&findings);
    assert_eq!(json.as_array().unwrap().len(), findings.len());
    assert_eq!(json[0]["firstSeen"], "1970-01-01T00:00:00Z");
}

#[test]
fn threads_give_the_same_results_in_the_same_order() {
    let set = all_packs();
    let mut objects = estate();
    for i in 0..40 {
        let mut n = example("Node", "fra-rhel-01");
        n["metadata"]["name"] = format!("gen-{i}").into();
        objects.push(n);
    }
    let fleet = policy::FleetContext::from_objects(&objects);
    let one = audit(&objects, &set, &fleet, AuditOptions::default());
    let two = audit(
        &objects,
        &set,
        &fleet,
        AuditOptions {
            threads: NonZeroUsize::new(2).unwrap(),
            ..AuditOptions::default()
        },
    );
    assert_eq!(one.evaluations, two.evaluations);
    let now = Timestamp::UNIX_EPOCH;
    assert_eq!(one.findings(now), two.findings(now));
}

/// `objects` in pages of `size`, each with every Workload as context (what a reader
/// paging through the store gives for Allocations whose Workload is on another page).
fn pages(objects: &[serde_json::Value], size: usize) -> Vec<AuditPage<'_>> {
    let workloads: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "Workload")
        .cloned()
        .collect();
    objects
        .chunks(size)
        .map(|chunk| AuditPage {
            objects: chunk.into(),
            context: workloads.clone().into(),
        })
        .collect()
}

#[test]
fn pages_give_the_findings_of_one_audit_in_the_same_order() {
    let set = all_packs();
    let mut objects = estate();
    // The allocations first, their workloads on later pages: found through the context.
    objects.sort_by_key(|o| o["kind"] != "Allocation");
    let fleet = policy::FleetContext::from_objects(&objects);
    let whole = audit(&objects, &set, &fleet, AuditOptions::default());
    assert!(
        whole
            .findings(Timestamp::UNIX_EPOCH)
            .iter()
            .any(|f| f.object.kind == "Allocation"),
        "the estate has a misplaced allocation"
    );
    for threads in [1, 2, 3] {
        let options = AuditOptions {
            threads: NonZeroUsize::new(threads).unwrap(),
            ..AuditOptions::default()
        };
        let paged = audit_pages(pages(&objects, 2), &set, &fleet, options);
        assert_eq!(paged.evaluations, whole.evaluations, "{threads} threads");
        assert_eq!(paged.results.len(), objects.len());
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(
            paged.findings(now),
            whole.findings(now),
            "{threads} threads"
        );
    }
}

#[test]
fn failures_are_aggregated_and_runaway_policies_are_skipped() {
    let set = PolicySet::new([
        compile_with_timeout(
            &policy("runaway", Enforcement::Audit, &["Workload"], RUNAWAY),
            Duration::from_millis(10),
        ),
        compile(&strict(policy(
            "broken",
            Enforcement::Warn,
            &["Workload"],
            // `with` keeps this module on the interpreter.
            "package demo\n\ndeny contains msg if {\n\tr := input.object.spec.replicas with input.x as 1\n\tmsg := sprintf(\"%d\", [100 / (r - r)])\n}\n",
        ))),
    ]);
    let mut objects = Vec::new();
    for i in 0..6 {
        let mut w = example("Workload", "payroll-api");
        w["metadata"]["name"] = format!("w-{i}").into();
        objects.push(w);
    }
    let fleet = fleet();
    let run = audit(&objects, &set, &fleet, AuditOptions::default());
    assert_eq!(run.errors.len(), 2, "{:?}", run.errors);
    let broken = &run.errors[0];
    assert_eq!(
        (&*broken.policy, broken.failures, broken.skipped),
        ("broken", 6, 0)
    );
    let runaway = &run.errors[1];
    assert_eq!(&*runaway.policy, "runaway");
    assert_eq!(
        runaway.error,
        EvalError::TimedOut {
            limit: Duration::from_millis(10)
        }
    );
    assert_eq!((runaway.failures, runaway.skipped), (3, 3), "{runaway}");
    assert!(
        runaway.to_string().contains("skipped on 3 object(s)"),
        "{runaway}"
    );
    // Every object reports both policies as failed (so their findings are kept).
    assert!(
        run.results
            .iter()
            .all(|r| r.failed.len() == 2 && r.violations.is_empty())
    );
    assert_eq!(run.evaluations, 6 + 3);

    // In pages of two, the time limits still count over the whole run: three, then
    // skipped on the next pages, not three on every page.
    let paged = audit_pages(pages(&objects, 2), &set, &fleet, AuditOptions::default());
    let runaway = &paged.errors[1];
    assert_eq!((runaway.failures, runaway.skipped), (3, 3), "{runaway}");
    assert_eq!(paged.evaluations, 6 + 3);
}

#[test]
fn auditor_reuses_engines_across_objects() {
    let set = all_packs();
    let fleet = fleet();
    let mut auditor = Auditor::new(&set, &fleet, AuditOptions::default());
    let node = example("Node", "fra-gpu-01");
    for _ in 0..100 {
        let r = auditor.evaluate(&node, None).unwrap();
        assert_eq!(r.violations.len(), 4);
    }
    assert!(
        auditor
            .evaluate(&serde_json::json!({"kind": "Pod"}), None)
            .is_none()
    );
    let (evaluations, errors) = auditor.finish();
    assert_eq!((evaluations, errors.len()), (500, 0));
}

#[test]
fn compliance_summary_by_policy_and_framework() {
    let set = all_packs();
    let objects = estate();
    let fleet = policy::FleetContext::from_objects(&objects);
    let findings =
        audit(&objects, &set, &fleet, AuditOptions::default()).findings(Timestamp::UNIX_EPOCH);
    let s = ComplianceSummary::new(&findings, set.iter().map(|p| p.policy()), 0);
    assert_eq!(s.policies.len(), 16);
    let row = |n: &str| s.policies.iter().find(|p| p.policy == n).unwrap();
    let nodes = count_kind("Node") as usize;
    assert_eq!(row("baseline-owner-label").findings, nodes);
    assert_eq!(row("baseline-owner-label").objects, nodes);
    assert_eq!(row("baseline-owner-label").state(), "NonCompliant");
    assert_eq!(row("sovereignty-residency-declared").state(), "Compliant");
    assert_eq!(row("sovereignty-strict-operator").findings, 1);

    let fw = |n: &str| s.frameworks.iter().find(|f| f.framework == n).unwrap();
    let gdpr = fw("GDPR");
    assert_eq!(gdpr.controls, ["Art.44", "Art.46", "Art.48"]);
    assert_eq!(gdpr.failing, ["Art.44", "Art.46", "Art.48"]);
    let nist = fw("NIST SP 800-53");
    assert!(nist.failing.contains(&"SC-28".to_string()));
    assert!(!nist.failing.contains(&"SC-6".to_string()));
    assert_eq!(nist.passing(), nist.controls.len() - nist.failing.len());
    let names: Vec<&str> = s.frameworks.iter().map(|f| f.framework.as_str()).collect();
    assert_eq!(
        names,
        ["BSI C5", "EU AI Act", "GDPR", "ISO27001", "NIST SP 800-53"]
    );

    let json = s.to_json();
    assert_eq!(json["findings"], findings.len());
    assert_eq!(json["policies"][0]["state"], "Compliant");
}

#[test]
fn on_the_vm_a_runtime_error_in_a_rule_body_is_undefined_as_in_opa() {
    // Division by zero inside the body: the VM and admission's interpreter (like OPA
    // without --strict-builtin-errors) make the body undefined; with strict built-in
    // errors, admission fails closed on the same object.
    let broken = compile(&policy(
        "broken",
        Enforcement::Deny,
        &["Workload"],
        "package demo\n\ndeny contains msg if {\n\tmsg := sprintf(\"%d\", [100 / (input.object.spec.replicas - input.object.spec.replicas)])\n}\n",
    ));
    assert!(broken.compiled_to_vm());
    let set = PolicySet::new([broken]);
    let fleet = fleet();
    let w = example("Workload", "payroll-api");
    let run = audit(
        std::slice::from_ref(&w),
        &set,
        &fleet,
        AuditOptions::default(),
    );
    assert_eq!(run.evaluations, 1);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert!(run.results[0].violations.is_empty());
    let admitted = create(&set, &fleet, &w);
    assert!(admitted.allowed(), "{admitted:?}");
    let strict_set = PolicySet::new([compile(&strict(policy(
        "broken",
        Enforcement::Deny,
        &["Workload"],
        "package demo\n\ndeny contains msg if {\n\tmsg := sprintf(\"%d\", [100 / (input.object.spec.replicas - input.object.spec.replicas)])\n}\n",
    )))]);
    let admitted = create(&strict_set, &fleet, &w);
    assert!(!admitted.allowed(), "strict admission must fail closed");
}
