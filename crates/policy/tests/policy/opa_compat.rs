//! Rego as OPA means it. Each test states OPA's documented behaviour (OPA 1.x, non-strict
//! built-in errors as `opa eval` and the OPA server run by default) and pins Meridian to it:
//! admission, the audit's bytecode VM and the test runner must agree with OPA.

use api::kinds::Enforcement;
use policy::{CompileErrorKind, CompiledPolicy, TestOutcome, run_tests};
use serde_json::json;

use crate::support::{compile, policy};

/// Messages of a `deny` policy on `input.object`, evaluated as admission does (the
/// interpreter) and as the audit does (the VM when the module compiles to it); both must
/// agree.
fn deny(rego: &str, object: serde_json::Value) -> Vec<String> {
    let p = compile(&policy("probe", Enforcement::Deny, &["Workload"], rego));
    messages(&p, object)
}

fn messages(p: &CompiledPolicy, object: serde_json::Value) -> Vec<String> {
    let input = policy::to_rego(&json!({ "object": object }));
    let mut admission: Vec<String> = p
        .evaluate(&input)
        .unwrap_or_else(|e| panic!("admission: {e}"))
        .into_iter()
        .map(|v| v.message)
        .collect();
    let mut audit: Vec<String> = p
        .evaluate_audit(&input)
        .unwrap_or_else(|e| panic!("audit: {e}"))
        .into_iter()
        .map(|v| v.message)
        .collect();
    admission.sort();
    audit.sort();
    assert_eq!(
        admission,
        audit,
        "admission and audit disagree (VM: {})",
        p.compiled_to_vm()
    );
    admission
}

// ---------------------------------------------------------------------------------------
// Negation: OPA's compiler binds the dynamic terms of a negated call (refs, nested calls)
// to variables *before* the `not` (compiler stage RewriteDynamicTerms; OPA issues #1877 and
// #4743 document it), so `not f(input.x.missing)` is undefined, not true.

#[test]
fn not_of_a_call_on_an_undefined_ref_is_undefined() {
    let rego = r#"package probe

is_gpu(kind) if kind == "gpu"

deny contains "not a gpu" if {
	not is_gpu(input.object.spec.missing)
}
"#;
    assert_eq!(deny(rego, json!({"spec": {}})), Vec::<String>::new());
    assert_eq!(
        deny(rego, json!({"spec": {"missing": "cpu"}})),
        vec!["not a gpu"]
    );
    assert_eq!(
        deny(rego, json!({"spec": {"missing": "gpu"}})),
        Vec::<String>::new()
    );
}

#[test]
fn not_of_a_builtin_on_an_undefined_ref_is_undefined() {
    let rego = r#"package probe

deny contains "bad prefix" if not startswith(input.object.metadata.name, "prod-")

deny contains "no label" if {
	not input.object.metadata.labels[input.object.spec.labelKey]
}
"#;
    assert_eq!(deny(rego, json!({"metadata": {}})), Vec::<String>::new());
    assert_eq!(
        deny(rego, json!({"metadata": {"name": "dev-1"}})),
        vec!["bad prefix"]
    );
    // A ref whose index is undefined: the index is bound first, the body is undefined.
    assert_eq!(
        deny(
            rego,
            json!({"metadata": {"name": "prod-1", "labels": {}}, "spec": {}})
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        deny(
            rego,
            json!({"metadata": {"name": "prod-1", "labels": {}}, "spec": {"labelKey": "team"}})
        ),
        vec!["no label"]
    );
}

#[test]
fn not_of_a_plain_ref_stays_true_when_undefined() {
    // No call, no dynamic index: `not ref` is true when the ref is undefined (OPA too).
    let rego = r#"package probe

deny contains "no owner" if not input.object.metadata.labels.owner

deny contains "no team" if {
	some k in ["team"]
	not input.object.metadata.labels[k]
}
"#;
    assert_eq!(
        deny(rego, json!({"metadata": {}})),
        vec!["no owner", "no team"]
    );
}

#[test]
fn not_with_nested_call_and_with_modifier() {
    let rego = r#"package probe

deny contains "short" if {
	not count(input.object.spec.items) > 1
}

deny contains "with" if {
	not startswith(input.object.spec.other, "a") with input.object.spec.other as "b"
}
"#;
    // count(undefined) is undefined, so the first body is undefined; the second binds
    // the ref under the same `with`, so it sees "b".
    assert_eq!(deny(rego, json!({"spec": {}})), vec!["with"]);
    assert_eq!(
        deny(rego, json!({"spec": {"items": [1]}})),
        vec!["short", "with"]
    );
}

#[test]
fn negation_inside_comprehensions_and_every() {
    let rego = r#"package probe

bad := [n | some n in input.object.spec.names; not startswith(input.object.spec.prefixes[n], "x")]

deny contains msg if {
	count(bad) > 0
	msg := concat(",", bad)
}
"#;
    // Names without a prefix entry are skipped (undefined), not counted as bad.
    assert_eq!(
        deny(
            rego,
            json!({"spec": {"names": ["a", "b", "c"], "prefixes": {"a": "xa", "b": "yb"}}})
        ),
        vec!["b"]
    );
}

// ---------------------------------------------------------------------------------------
// Built-in errors are undefined (OPA without --strict-builtin-errors).

#[test]
fn object_get_on_null_is_undefined() {
    let rego = r#"package probe

deny contains "default" if object.get(input.object.spec.labels, "team", "none") == "none"
deny contains "reached" if true
"#;
    assert_eq!(
        deny(rego, json!({"spec": {"labels": null}})),
        vec!["reached"]
    );
    assert_eq!(
        deny(rego, json!({"spec": {"labels": {}}})),
        vec!["default", "reached"]
    );
}

#[test]
fn sprintf_with_too_few_arguments_prints_missing() {
    // Go's fmt, which OPA uses: a verb without an argument prints %!VERB(MISSING).
    let rego = r#"package probe

deny contains sprintf("%s needs %d GPUs", [input.object.metadata.name]) if true
"#;
    assert_eq!(
        deny(rego, json!({"metadata": {"name": "train"}})),
        vec!["train needs %!d(MISSING) GPUs"]
    );
}

// ---------------------------------------------------------------------------------------
// Regular expressions: Go's RE2 syntax as OPA accepts it.

#[test]
fn common_regex_syntax_works() {
    let rego = r#"package probe

deny contains "digit" if regex.match(`^[a-f\d]+$`, input.object.metadata.name)
deny contains "word" if regex.match(`^\w+\s\w+$`, input.object.metadata.labels.title)
deny contains "boundary" if regex.match(`\bprod\b`, input.object.metadata.labels.env)
deny contains "nocase" if regex.match(`(?i)^GPU`, input.object.metadata.labels.kind)
deny contains "letter" if regex.match(`^\p{L}+$`, input.object.metadata.labels.city)
"#;
    let object = json!({"metadata": {
        "name": "a1b2",
        "labels": {"title": "hello world", "env": "eu prod", "kind": "gpu-large", "city": "Zürich"}
    }});
    let mut got = deny(rego, object);
    got.sort();
    assert_eq!(got, vec!["boundary", "digit", "letter", "nocase", "word"]);
}

#[test]
fn invalid_constant_regex_is_refused_at_compile_with_line_and_column() {
    let rego = "package probe\n\ndeny contains \"x\" if {\n\tregex.match(`[a-`, input.object.metadata.name)\n}\n";
    let e = CompiledPolicy::compile(
        &policy("probe", Enforcement::Deny, &["Workload"], rego),
        Default::default(),
    )
    .expect_err("an invalid constant pattern must be refused");
    assert_eq!(e.kind, CompileErrorKind::Semantic, "{e}");
    assert_eq!((e.line, e.column), (Some(4), Some(14)), "{e}");
    assert!(e.message.contains("regex"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Parsing: a newline ends an expression; a line starting with `(` is a new expression.

#[test]
fn paren_on_the_next_line_is_a_new_expression() {
    let rego = r#"package probe

deny contains "both" if {
	x := input.object.spec.a
	(x + 1) == 2
}
"#;
    assert_eq!(deny(rego, json!({"spec": {"a": 1}})), vec!["both"]);
    assert_eq!(deny(rego, json!({"spec": {"a": 2}})), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// The test runner.

#[test]
fn duplicate_test_names_are_reported_separately() {
    let report = run_tests(&[(
        "dup_test.rego",
        "package dup_test\n\ntest_same if { 1 == 1 }\n\ntest_same if { 1 == 2 }\n",
    )]);
    let names: Vec<(&str, bool)> = report
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.passed()))
        .collect();
    assert_eq!(
        names,
        vec![("test_same", true), ("test_same#01", false)],
        "{report}"
    );
    assert!(!report.ok());
}

#[test]
fn v0_modules_load_in_the_test_runner() {
    let report = run_tests(&[
        (
            "old.rego",
            "package old\n\ndeny[msg] {\n  input.n > 10\n  msg := \"big\"\n}\n",
        ),
        (
            "old_test.rego",
            "package old\n\ntest_big {\n  deny[\"big\"] with input as {\"n\": 11}\n}\n",
        ),
    ]);
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.results.len(), 1, "{report}");
    assert_eq!(report.results[0].outcome, TestOutcome::Pass, "{report}");
}

// ---------------------------------------------------------------------------------------
// Static checks at compile time, as OPA's compiler does them.

fn compile_error(rego: &str) -> policy::CompileError {
    CompiledPolicy::compile(
        &policy("probe", Enforcement::Deny, &["Workload"], rego),
        Default::default(),
    )
    .expect_err("must be refused")
}

#[test]
fn unknown_builtin_is_refused_with_line_and_column() {
    let e = compile_error(
        "package probe\n\ndeny contains \"x\" if {\n\tstrings.no_such_thing(input.object.metadata.name)\n}\n",
    );
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("strings.no_such_thing"), "{e}");
}

#[test]
fn wrong_arity_is_refused_with_line_and_column() {
    let e = compile_error(
        "package probe\n\ndeny contains \"x\" if {\n\tstartswith(input.object.metadata.name)\n}\n",
    );
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn crypto_digests_and_more_builtins_are_available() {
    let rego = r#"package probe

deny contains crypto.sha256(input.object.metadata.name) if true
deny contains crypto.md5("abc") if true
deny contains sprintf("%v", [net.cidr_contains("10.0.0.0/8", "10.1.2.3")]) if true
deny contains sprintf("cidr %v %v", [net.cidr_intersects("10.0.0.0/8", "10.200.0.0/16"), net.cidr_intersects("10.0.0.0/8", "192.168.0.0/16")]) if true
deny contains sprintf("%v", [units.parse_bytes("1Ki")]) if true
deny contains yaml.marshal({"a": 1}) if true
deny contains sprintf("%v", [time.parse_rfc3339_ns("2026-01-01T00:00:00Z")]) if true
"#;
    let mut got = deny(rego, json!({"metadata": {"name": "abc"}}));
    got.sort();
    let mut want = vec![
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
        "900150983cd24fb0d6963f7d28e17f72".to_string(),
        "true".to_string(),
        "1024".to_string(),
        "a: 1\n".to_string(),
        "1767225600000000000".to_string(),
        "cidr true false".to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn not_of_a_ref_on_an_undefined_function_result_is_undefined() {
    // OPA issue #7558: `not f(x).foo` binds `f(x)` first; undefined when f is.
    let rego = r#"package probe

meta(kind) := {"gpu": true} if kind == "ai"

deny contains "not gpu" if {
	not meta(input.object.spec.kind).gpu
}
"#;
    assert_eq!(
        deny(rego, json!({"spec": {"kind": "web"}})),
        Vec::<String>::new()
    );
    assert_eq!(
        deny(rego, json!({"spec": {"kind": "ai"}})),
        Vec::<String>::new()
    );
}
