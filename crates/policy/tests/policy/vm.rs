//! The audit runs policies on regorus's bytecode VM when its compiler supports them:
//! every built-in pack policy does, and on a few thousand varied objects the VM finds
//! exactly what the interpreter (admission) finds.

use api::kinds::Enforcement;
use policy::{CompileOptions, CompiledPolicy, packs, to_rego};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::*;

fn pack_policies() -> Vec<CompiledPolicy> {
    packs()
        .into_iter()
        .flat_map(|p| p.policies)
        .map(|p| CompiledPolicy::compile(&p, CompileOptions::default()).unwrap())
        .collect()
}

#[test]
fn every_pack_policy_runs_on_the_vm() {
    for p in pack_policies() {
        assert!(
            p.compiled_to_vm(),
            "{} fell back to the interpreter",
            p.name()
        );
    }
}

#[test]
fn a_module_the_vm_cannot_compile_still_runs_on_the_interpreter() {
    // `with` is not supported by regorus's VM compiler (0.14).
    let p = compile(&policy(
        "uses-with",
        Enforcement::Deny,
        &["Workload"],
        "package t\n\
         f := input.object.metadata.name\n\
         deny contains msg if { x := f with input.object.metadata.name as \"z\"; msg := x }",
    ));
    let input = to_rego(&json!({"object": {"kind": "Workload", "metadata": {"name": "w"}}}));
    let found = p.evaluate_audit(&input).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message, "z");
}

/// `input.context` as the audit builds it from the example estate.
fn context(object: &Value, workload: Option<&Value>) -> Value {
    let estate = examples();
    let mut sites = Map::new();
    for s in estate.iter().filter(|o| o["kind"] == "Site") {
        sites.insert(
            s["metadata"]["name"].as_str().unwrap().to_string(),
            s["spec"].clone(),
        );
    }
    let mut ctx = json!({"sites": sites});
    if let Some(ns) = object["metadata"]["namespace"].as_str()
        && let Some(p) = estate
            .iter()
            .find(|o| o["kind"] == "Project" && o["metadata"]["name"] == ns)
    {
        ctx["project"] = p["spec"].clone();
    }
    if let Some(site) = object["spec"]["site"].as_str()
        && let Some(s) = sites.get(site)
    {
        ctx["targetSite"] = s.clone();
    }
    if let Some(w) = workload {
        ctx["workload"] = w.clone();
    }
    ctx
}

const PLACES: [&str; 9] = ["DE", "FR", "CH", "US", "EU", "EEA", "GB", "XX", "eu"];

fn vary_workload(w: &mut Value, residency: &[usize], strict: bool, class: u8, gpu: bool) {
    let data = &mut w["spec"]["data"];
    match class % 4 {
        0 => data["classification"] = json!("personal"),
        1 => data["classification"] = json!("public"),
        2 => data["classification"] = json!("regulated"),
        _ => {
            if let Some(d) = data.as_object_mut() {
                d.remove("classification");
            }
        }
    }
    data["residency"] = json!(residency.iter().map(|&i| PLACES[i]).collect::<Vec<_>>());
    data["sovereignty"] = json!(if strict { "strict" } else { "standard" });
    if gpu {
        w["spec"]["task"]["resources"]["gpu"] = json!({"count": 1});
    } else if let Some(q) = w["spec"].as_object_mut() {
        q.remove("queue");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn vm_and_interpreter_agree(
        residency in proptest::collection::vec(0..PLACES.len(), 0..4),
        strict: bool,
        class: u8,
        gpu: bool,
        encrypted: bool,
        secure_boot: bool,
        patch_age in 0u32..90,
        owner: bool,
        site_pick in 0usize..8,
        os_pick in 0usize..6,
    ) {
        let estate = examples();
        let sites: Vec<&Value> = estate.iter().filter(|o| o["kind"] == "Site").collect();
        let site = sites[site_pick % sites.len()]["metadata"]["name"].clone();

        let mut workload = example("Workload", "payroll-api");
        vary_workload(&mut workload, &residency, strict, class, gpu);

        let mut node = estate.iter().find(|o| o["kind"] == "Node").unwrap().clone();
        node["status"]["security"] = json!({"diskEncryption": encrypted, "secureBoot": secure_boot, "patchAgeDays": patch_age});
        let os = [("linux", "debian", "12"), ("linux", "rhel", "7"), ("windows", "windows-server", "2022"),
                  ("windows", "windows-server", "2008"), ("linux", "ubuntu", "24.04"), ("linux", "centos", "6")];
        let (family, distro, version) = os[os_pick];
        node["spec"]["os"] = json!({"family": family, "distro": distro, "version": version});
        if owner {
            node["metadata"]["labels"]["owner"] = json!("platform");
        } else if let Some(l) = node["metadata"]["labels"].as_object_mut() {
            l.remove("owner");
        }
        node["spec"]["site"] = site.clone();

        let alloc = allocation(&workload, 0, "n1", site.as_str().unwrap());

        let cases = [
            (workload.clone(), None),
            (node.clone(), None),
            (alloc, Some(&workload)),
        ];
        for p in pack_policies() {
            for (object, w) in &cases {
                let kind = object["kind"].as_str().unwrap();
                if !p.matches(kind, object["metadata"]["namespace"].as_str()) {
                    continue;
                }
                let input = to_rego(&json!({"operation": "AUDIT", "object": object, "context": context(object, *w)}));
                let vm = p.evaluate_audit(&input).map_err(|e| e.to_string());
                let interpreted = p.evaluate(&input).map_err(|e| e.to_string());
                let sorted = |r: Result<Vec<policy::RawViolation>, String>| r.map(|mut v| {
                    v.sort_by(|a, b| (&a.message, &a.field).cmp(&(&b.message, &b.field)));
                    v
                });
                prop_assert_eq!(sorted(vm), sorted(interpreted), "policy {} on {}", p.name(), kind);
            }
        }
    }
}
