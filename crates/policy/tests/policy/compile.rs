//! Compilation: errors with line and column, the contract, the violation formats.

use api::kinds::Enforcement;
use policy::{CompileErrorKind, CompileOptions, CompiledPolicy, REGO_VERSION_ANNOTATION};
use serde_json::json;

use crate::support::*;

fn compile_err(rego: &str) -> policy::CompileError {
    let p = policy("broken", Enforcement::Deny, &["Workload"], rego);
    CompiledPolicy::compile(&p, CompileOptions::default()).expect_err("must not compile")
}

#[test]
fn syntax_error_has_line_column_and_policy_name() {
    let e = compile_err("package demo\n\ndeny contains msg if {\n  x := \n}\n");
    assert_eq!(e.kind, CompileErrorKind::Syntax);
    assert_eq!(e.field, "spec.rego");
    assert_eq!((e.line, e.column), (Some(4), Some(5)), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("policy \"broken\": spec.rego line 4, column 5: "),
        "{text}"
    );
    assert!(
        e.snippet.as_deref().unwrap_or_default().contains('^'),
        "{text}"
    );
}

#[test]
fn unknown_function_is_refused_with_its_location() {
    let e = compile_err(
        "package demo\n\ndeny contains msg if {\n  msg := no_such_fn(input.object)\n}\n",
    );
    assert_eq!(e.kind, CompileErrorKind::Semantic, "{e}");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("no_such_fn"), "{e}");
}

#[test]
fn module_without_violation_rule_is_refused() {
    let e = compile_err("package demo\n\nallow if input.object\n");
    assert_eq!(e.kind, CompileErrorKind::Contract);
    assert!(e.message.contains("neither `deny` nor `violation`"), "{e}");
}

#[test]
fn prelude_package_is_reserved() {
    let e = compile_err("package meridian.lib\n\ndeny contains \"x\" if false\n");
    assert_eq!(e.kind, CompileErrorKind::Contract);
    assert!(e.message.contains("reserved"), "{e}");
}

#[test]
fn constant_runtime_error_is_refused_at_compile_time_when_strict() {
    let rego = "package demo\n\nx := 1 / 0\n\ndeny contains \"boom\" if x > 0\n";
    // As in OPA, a built-in error is undefined: the policy compiles and never fires.
    compile(&policy("lenient", Enforcement::Deny, &["Workload"], rego));
    let p = strict(policy("broken", Enforcement::Deny, &["Workload"], rego));
    let e = CompiledPolicy::compile(&p, CompileOptions::default()).expect_err("must not compile");
    assert_eq!(e.kind, CompileErrorKind::Semantic, "{e}");
    assert!(e.message.contains("empty input"), "{e}");
}

#[test]
fn spec_errors() {
    let mut p = policy(
        "p",
        Enforcement::Deny,
        &["Pods"],
        "package demo\ndeny contains \"x\" if false\n",
    );
    let e = CompiledPolicy::compile(&p, CompileOptions::default()).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (CompileErrorKind::Spec, "spec.targets[0]")
    );

    p.spec.targets = vec!["workloads".into()]; // any spelling of a kind
    let c = compile(&p);
    assert_eq!(c.kinds(), Some(&["Workload"][..]));

    p.spec.parameters = Some(json!([1, 2]));
    let e = CompiledPolicy::compile(&p, CompileOptions::default()).unwrap_err();
    assert_eq!(e.field, "spec.parameters");

    p.spec.parameters = None;
    p.metadata
        .annotations
        .insert(REGO_VERSION_ANNOTATION.into(), "v2".into());
    let e = CompiledPolicy::compile(&p, CompileOptions::default()).unwrap_err();
    assert!(e.field.contains(REGO_VERSION_ANNOTATION), "{e}");
}

#[test]
fn string_and_object_violations_from_deny_and_violation() {
    let p = policy(
        "both",
        Enforcement::Deny,
        &["Workload"],
        r#"package demo

deny contains "plain message" if input.object.kind == "Workload"

violation contains {"msg": "with field", "field": "spec.replicas"} if input.object.spec.replicas > 1

violation contains {"message": "message key"} if input.object.kind == "Workload"
"#,
    );
    let c = compile(&p);
    let input = json!({"object": example("Workload", "payroll-api")});
    let mut found = c.evaluate_json(&input).unwrap();
    found.sort_by(|a, b| a.message.cmp(&b.message));
    let got: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|v| (v.message.as_str(), v.field.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("message key", None),
            ("plain message", None),
            ("with field", Some("spec.replicas")),
        ]
    );
}

#[test]
fn parameters_are_data_parameters_and_input_parameters() {
    let mut p = policy(
        "params",
        Enforcement::Deny,
        &["Workload"],
        r#"package demo

deny contains sprintf("data says %d", [data.parameters.max]) if input.object.spec.replicas > data.parameters.max

deny contains sprintf("input says %d", [input.parameters.max]) if input.object.spec.replicas > input.parameters.max
"#,
    );
    p.spec.parameters = Some(json!({"max": 1}));
    let c = compile(&p);
    let mut msgs: Vec<String> = c
        .evaluate_json(&json!({"object": example("Workload", "payroll-api")}))
        .unwrap()
        .into_iter()
        .map(|v| v.message)
        .collect();
    msgs.sort();
    assert_eq!(msgs, vec!["data says 1", "input says 1"]);
}

#[test]
fn gatekeeper_style_v0_module_with_annotation() {
    let mut p = policy(
        "k8srequiredlabels",
        Enforcement::Deny,
        &["Node"],
        r#"package k8srequiredlabels

violation[{"msg": msg, "field": "metadata.labels"}] {
  provided := {label | input.object.metadata.labels[label]}
  required := {label | label := input.parameters.labels[_]}
  missing := required - provided
  count(missing) > 0
  msg := sprintf("you must provide labels: %v", [missing])
}
"#,
    );
    p.spec.parameters = Some(json!({"labels": ["owner"]}));
    // Without the annotation it is Rego v1, where this does not parse.
    assert_eq!(
        CompiledPolicy::compile(&p, CompileOptions::default())
            .unwrap_err()
            .kind,
        CompileErrorKind::Syntax
    );
    p.metadata
        .annotations
        .insert(REGO_VERSION_ANNOTATION.into(), "v0".into());
    let c = compile(&p);
    let found = c
        .evaluate_json(&json!({"object": example("Node", "fra-rhel-01")}))
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("owner"), "{found:?}");
    assert_eq!(found[0].field.as_deref(), Some("metadata.labels"));
}

#[test]
fn prelude_is_available_to_user_policies() {
    let p = policy(
        "eu-only",
        Enforcement::Deny,
        &["Workload"],
        r#"package acme.eu_only

import data.meridian.lib

deny contains msg if {
	some code in input.object.spec.data.residency
	not lib.expand([code]) == lib.countries("EU")
	msg := sprintf("%s: residency %s is not exactly the EU", [lib.display(input.object), code])
}
"#,
    );
    let c = compile(&p);
    let w = example("Workload", "genome-align"); // [EEA, CH]
    let found = c.evaluate_json(&json!({"object": w})).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].message.starts_with("research/genome-align: "),
        "{found:?}"
    );
    let w = example("Workload", "payroll-api"); // [EU]
    assert!(c.evaluate_json(&json!({"object": w})).unwrap().is_empty());
}

#[test]
fn lib_within_agrees_with_membership_of_the_expanded_set() {
    // `within` is the packs' fast path for `country in expand(codes)`: for every country
    // and every list of one or two codes (blocs and countries), both must agree, on the
    // interpreter (admission) and on the VM (audit).
    let p = policy(
        "within",
        Enforcement::Audit,
        &["Workload"],
        r#"package acme.within

import data.meridian.lib

violation contains sprintf("%s within but not in the set", [country]) if {
	some country in input.object.countries
	lib.within(country, input.object.codes)
	not country in lib.expand(input.object.codes)
}

violation contains sprintf("%s in the set but not within", [country]) if {
	some country in input.object.countries
	not lib.within(country, input.object.codes)
	country in lib.expand(input.object.codes)
}

violation contains "DE is not within the EU" if not lib.within("DE", ["EU"])

violation contains "US is within the EU" if lib.within("US", ["EU"])
"#,
    );
    let c = compile(&p);
    let mut countries: Vec<&str> = Vec::new();
    let mut codes: Vec<&str> = Vec::new();
    for (bloc, _, members) in api::jurisdiction::BLOCS {
        codes.push(bloc);
        countries.extend(members.iter().copied());
    }
    countries.sort_unstable();
    countries.dedup();
    codes.extend(["DE", "CH", "US", "JP"]);
    let mut lists: Vec<Vec<&str>> = codes.iter().map(|c| vec![*c]).collect();
    lists.push(vec!["CH", "EU"]);
    lists.push(vec!["EEA", "US"]);
    for list in lists {
        let input = policy::to_rego(&json!({"object": {"countries": countries, "codes": list}}));
        let interpreted = c.evaluate(&input).unwrap();
        assert!(interpreted.is_empty(), "{list:?}: {interpreted:?}");
        let vm = c.evaluate_audit(&input).unwrap();
        assert!(vm.is_empty(), "{list:?}: {vm:?}");
    }
}

#[test]
fn a_v0_module_without_the_annotation_gets_a_hint() {
    let e = compile_err(
        "package demo\n\ndeny[msg] {\n  input.object.spec.replicas > 10\n  msg := \"big\"\n}\n",
    );
    assert_eq!(e.kind, CompileErrorKind::Syntax, "{e}");
    assert!(
        e.message
            .contains(&format!("{REGO_VERSION_ANNOTATION}: v0")),
        "{e}"
    );
}
