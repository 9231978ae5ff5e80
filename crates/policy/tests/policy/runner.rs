//! The `opa test`-like runner.

use policy::{TestOutcome, run_tests};

#[test]
fn reports_pass_fail_and_error_per_test() {
    let modules = [
        (
            "demo.rego",
            "package demo\n\ndeny contains \"big\" if input.n > 10\n",
        ),
        (
            "ratio.rego",
            "package ratio\n\nratio := 100 / (input.n - input.n)\n",
        ),
        (
            "demo_test.rego",
            r#"package demo_test

import data.demo
import data.ratio

test_big_denied if {
	demo.deny["big"] with input as {"n": 11}
}

test_small_allowed if {
	count(demo.deny) == 0 with input as {"n": 1}
}

test_wrong_expectation if {
	count(demo.deny) == 1 with input as {"n": 1}
}

test_runtime_error if {
	ratio.ratio > 0 with input as {"n": 2}
}

helper(x) := x + 1
"#,
        ),
    ];
    let report = run_tests(&modules);
    assert!(report.errors.is_empty(), "{report}");
    let outcomes: Vec<(&str, bool)> = report
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.passed()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("test_big_denied", true),
            ("test_small_allowed", true),
            ("test_wrong_expectation", false),
            ("test_runtime_error", false),
        ]
    );
    assert_eq!(report.results[2].outcome, TestOutcome::Fail);
    assert!(
        matches!(&report.results[3].outcome, TestOutcome::Error(e) if e.to_string().contains("divide by zero")),
        "{report}"
    );
    assert!(!report.ok());
    let text = report.to_string();
    assert!(
        text.contains("data.demo_test.test_wrong_expectation: FAIL"),
        "{text}"
    );
    assert!(
        text.contains("data.demo_test.test_runtime_error: ERROR"),
        "{text}"
    );
    assert!(text.ends_with("PASS: 2/4\nFAIL: 1/4\nERROR: 1/4"), "{text}");
    // The failing expression, as `opa test` names it.
    let failed = report.results[2].failed_at.as_ref().expect("located");
    assert_eq!(
        (failed.line, failed.text.as_str()),
        (15, "count(demo.deny) == 1 with input as {\"n\": 1}")
    );
    assert!(
        text.contains("demo_test.rego:15:\n    count(demo.deny) == 1"),
        "{text}"
    );
    // Without -v, passing tests are not listed.
    let summary = report.summary();
    assert!(!summary.contains("test_big_denied"), "{summary}");
    assert!(
        summary.contains("test_wrong_expectation: FAIL"),
        "{summary}"
    );
    // JSON like `opa test --format json`.
    let json = report.to_json();
    assert_eq!(json[2]["name"], "test_wrong_expectation");
    assert_eq!(json[2]["fail"], true);
    assert_eq!(json[2]["location"]["row"], 14);
    assert_eq!(json[0].get("fail"), None);
    assert!(
        json[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("divide by zero")
    );
}

#[test]
fn syntax_errors_are_reported_and_nothing_runs() {
    let report = run_tests(&[("bad.rego", "package bad\n\ntest_x if {\n")]);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].policy, "bad.rego");
    assert!(report.errors[0].line.is_some());
    assert!(report.results.is_empty());
    assert!(!report.ok());
}

#[test]
fn no_tests_is_not_ok() {
    let report = run_tests(&[("a.rego", "package a\n\nx := 1\n")]);
    assert!(report.errors.is_empty());
    assert!(!report.ok());
    assert_eq!(report.to_string(), "PASS: 0/0");
}
