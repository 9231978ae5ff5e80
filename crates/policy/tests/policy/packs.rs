//! The built-in packs: their Rego tests pass, their policies validate and compile, and
//! each rule fires and stays quiet on realistic objects from `examples/`.

use api::AnyObject;
use api::kinds::Enforcement;
use policy::{AuditOptions, CompileOptions, PolicySet, audit, pack, packs, run_tests};
use serde_json::json;

use crate::support::*;

fn pack_set(name: &str) -> PolicySet {
    let (set, errors) =
        PolicySet::compile(&pack(name).unwrap().policies, CompileOptions::default());
    assert!(errors.is_empty(), "{errors:?}");
    set
}

#[test]
fn every_pack_rego_test_passes() {
    let mut total = 0;
    for p in packs() {
        let report = run_tests(&p.modules());
        assert!(report.ok(), "pack {}:\n{report}", p.name);
        assert!(
            report.results.len() >= 3 * p.policies.len(),
            "pack {} has too few tests",
            p.name
        );
        total += report.results.len();
    }
    assert!(total >= 50, "{total}");
}

#[test]
fn pack_policies_validate_compile_and_map_controls() {
    let all = packs();
    assert_eq!(
        all.iter()
            .map(|p| (p.name, p.policies.len()))
            .collect::<Vec<_>>(),
        [
            ("sovereignty", 5),
            ("baseline", 6),
            ("ai", 2),
            ("migration", 3)
        ]
    );
    for p in &all {
        let expected = match p.name {
            "sovereignty" => Enforcement::Deny,
            "baseline" | "migration" => Enforcement::Audit,
            _ => Enforcement::Warn,
        };
        for pol in &p.policies {
            assert_eq!(pol.spec.enforcement, expected, "{}", pol.metadata.name);
            assert!(!pol.spec.controls.is_empty(), "{}", pol.metadata.name);
            assert!(pol.metadata.name.starts_with(p.name));
            // What `meridian policy install` would send must pass the API's validation.
            let any = AnyObject::from(pol.clone());
            api::validate::validate(&any)
                .unwrap_or_else(|e| panic!("{}: {e:?}", pol.metadata.name));
            let back = api::object_from_value(any.to_value()).unwrap();
            assert_eq!(back, any);
        }
        let set = pack_set(p.name);
        assert_eq!(set.len(), p.policies.len());
    }
}

#[test]
fn example_estate_is_admitted_by_the_sovereignty_and_ai_packs() {
    let set = PolicySet::new(
        pack_set("sovereignty")
            .iter()
            .chain(pack_set("ai").iter())
            .cloned(),
    );
    let fleet = fleet();
    for o in examples() {
        let r = create(&set, &fleet, &o);
        assert!(r.allowed(), "{}: {:?}", o["metadata"]["name"], r.denied);
        assert!(
            r.warnings.is_empty(),
            "{}: {:?}",
            o["metadata"]["name"],
            r.warnings
        );
        assert!(r.errors.is_empty());
    }
}

#[test]
fn sovereignty_refuses_personal_data_without_residency() {
    let set = pack_set("sovereignty");
    let mut w = example("Workload", "payroll-api");
    w["spec"]["data"] = json!({"classification": "personal"});
    let r = create(&set, &fleet(), &w);
    assert_eq!(names(&r.denied), ["sovereignty-residency-declared"]);
    assert_eq!(r.denied[0].field.as_deref(), Some("spec.data.residency"));
    assert_eq!(
        r.denied[0].message,
        "workload finance/payroll-api handles personal data but declares no residency: set spec.data.residency to the jurisdictions or blocs it may be processed in (for example [EU] or [DE])"
    );
    let controls: Vec<String> = r.denied[0]
        .controls
        .iter()
        .map(|c| format!("{} {}", c.framework, c.id))
        .collect();
    assert_eq!(controls, ["GDPR Art.44", "ISO27001 A.5.34"]);
}

#[test]
fn sovereignty_refuses_unsatisfiable_and_out_of_fence_residency() {
    let set = pack_set("sovereignty");
    let mut w = example("Workload", "payroll-api");
    w["spec"]["data"]["residency"] = json!(["JP"]);
    let r = create(&set, &fleet(), &w);
    assert_eq!(
        names(&r.denied),
        [
            "sovereignty-allowed-locations",
            "sovereignty-residency-satisfiable"
        ]
    );
    let unsat = r
        .denied
        .iter()
        .find(|v| v.policy.contains("satisfiable"))
        .unwrap();
    assert!(
        unsat.message.contains("no site satisfies residency [JP]"),
        "{}",
        unsat.message
    );
    assert!(
        unsat.message.contains("onprem-frankfurt (DE, operator DE)"),
        "{}",
        unsat.message
    );
    let fence = r
        .denied
        .iter()
        .find(|v| v.policy.contains("allowed"))
        .unwrap();
    assert_eq!(fence.field.as_deref(), Some("spec.data.residency[0]"));

    // Strict sovereignty in the Netherlands: only a US-operated site is there.
    let mut w = example("Workload", "month-end-close");
    w["spec"]["data"]["residency"] = json!(["NL"]);
    let r = create(&set, &fleet(), &w);
    assert_eq!(names(&r.denied), ["sovereignty-residency-satisfiable"]);
}

#[test]
fn sovereignty_refuses_placements_that_break_residency_or_operator() {
    let set = pack_set("sovereignty");
    let fleet = fleet();
    let close = example("Workload", "month-end-close"); // regulated, [DE], strict

    // The bank's own Frankfurt data centre: fine.
    let ok = allocation(&close, 0, "fra-rhel-01", "onprem-frankfurt");
    let r = create_allocation(&set, &fleet, &ok, &close);
    assert!(r.allowed(), "{:?}", r.denied);

    // Azure West Europe: in NL (outside [DE]) and operated from the US.
    let bad = allocation(&close, 1, "azure-weu-lnx-01", "azure-westeurope");
    let r = create_allocation(&set, &fleet, &bad, &close);
    assert_eq!(
        names(&r.denied),
        [
            "sovereignty-placement-residency",
            "sovereignty-strict-operator"
        ]
    );
    let strict = r
        .denied
        .iter()
        .find(|v| v.policy.contains("strict"))
        .unwrap();
    assert!(
        strict
            .message
            .contains("operated by Microsoft Corporation under US jurisdiction"),
        "{}",
        strict.message
    );

    // The site found through the node when the allocation does not name it.
    let mut no_site = bad;
    no_site["spec"].as_object_mut().unwrap().remove("site");
    let r = create_allocation(&set, &fleet, &no_site, &close);
    assert_eq!(
        names(&r.denied),
        [
            "sovereignty-placement-residency",
            "sovereignty-strict-operator"
        ]
    );

    // Research may use Zurich (EEA + CH), finance may not (EU).
    let genome = example("Workload", "genome-align");
    let zrh = allocation(&genome, 0, "zrh-gpu-01", "onprem-zurich");
    assert!(create_allocation(&set, &fleet, &zrh, &genome).allowed());
    let mut payroll = example("Workload", "payroll-api");
    payroll["spec"]["data"]["residency"] = json!(["EU", "CH"]);
    let zrh = allocation(&payroll, 0, "zrh-gpu-01", "onprem-zurich");
    let r = create_allocation(&set, &fleet, &zrh, &payroll);
    assert_eq!(names(&r.denied), ["sovereignty-allowed-locations"]);
}

#[test]
fn ai_pack_warns_on_gpu_work_without_queue_or_residency() {
    let set = pack_set("ai");
    let mut w = example("Workload", "llm-finetune");
    w["spec"].as_object_mut().unwrap().remove("queue");
    w["spec"].as_object_mut().unwrap().remove("data");
    let r = create(&set, &fleet(), &w);
    assert!(r.allowed(), "ai is warn by default");
    assert_eq!(
        names(&r.warnings),
        ["ai-gpu-queue", "ai-training-data-residency"]
    );
    // CPU-only work is not concerned.
    let mut g = example("Workload", "genome-align");
    g["spec"].as_object_mut().unwrap().remove("queue");
    assert!(create(&set, &fleet(), &g).warnings.is_empty());
}

#[test]
fn baseline_audits_node_posture() {
    let set = pack_set("baseline");
    let fleet = fleet();
    // Baseline is audit-only: admission lets every example node in.
    for o in examples().iter().filter(|o| o["kind"] == "Node") {
        let r = create(&set, &fleet, o);
        assert!(r.allowed() && r.warnings.is_empty() && r.evaluated == 0);
    }

    // A well-kept node: owner, encrypted, Secure Boot, patched, supported OS.
    let mut good = example("Node", "fra-win-01");
    good["metadata"]["labels"]["owner"] = json!("windows-platform");
    good["status"] = json!({"phase": "Ready", "security": {
        "diskEncryption": true, "secureBoot": true, "tpm": true, "patchAgeDays": 9}});
    // A neglected one: unencrypted, Secure Boot off, 75 days unpatched, RHEL 7.
    let mut bad = example("Node", "fra-rhel-02");
    bad["spec"]["os"]["version"] = json!("7.9");
    bad["status"] = json!({"phase": "Ready", "security": {
        "diskEncryption": false, "secureBoot": false, "patchAgeDays": 75}});
    // An example node as it is: no owner, no facts reported yet.
    let bare = example("Node", "aws-use1-lnx-01");

    let run = audit(&[good, bad, bare], &set, &fleet, AuditOptions::default());
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_eq!(run.evaluations, 15);
    let by_node = |name: &str| {
        let r = run
            .results
            .iter()
            .find(|r| &*r.object.name == name)
            .unwrap();
        let mut n: Vec<&str> = r.violations.iter().map(|v| &*v.policy).collect();
        n.sort();
        n
    };
    assert!(by_node("fra-win-01").is_empty());
    assert_eq!(
        by_node("fra-rhel-02"),
        [
            "baseline-disk-encryption",
            "baseline-os-supported",
            "baseline-owner-label",
            "baseline-patch-age",
            "baseline-secure-boot"
        ]
    );
    assert_eq!(
        by_node("aws-use1-lnx-01"),
        [
            "baseline-disk-encryption",
            "baseline-owner-label",
            "baseline-patch-age",
            "baseline-secure-boot"
        ]
    );
    let patch = run.results[1]
        .violations
        .iter()
        .find(|v| v.policy.contains("patch"))
        .unwrap();
    assert_eq!(
        patch.message,
        "node fra-rhel-02 was last patched 75 days ago (limit 30); apply the pending security updates"
    );
}
