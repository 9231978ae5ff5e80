//! `policy eval --explain`: which bodies held and where the others stopped.

use api::kinds::Enforcement;
use policy::StatementOutcome;
use serde_json::json;

use crate::support::{compile, policy};

#[test]
fn explains_which_bodies_held_and_where_the_others_stopped() {
    let rego = r#"package explain

allowed := {"EU", "EEA"}

deny contains "no residency" if {
	input.object.kind == "Workload"
	not input.object.spec.residency
}

deny contains msg if {
	some r in input.object.spec.residency
	not r in allowed
	msg := sprintf("%s is not allowed", [r])
}

deny contains "too many replicas" if {
	input.object.spec.replicas > 10
	input.object.spec.tier == "gold"
}
"#;
    let p = compile(&policy("explain", Enforcement::Deny, &["Workload"], rego));
    let input = policy::to_rego(&json!({"object": {
        "kind": "Workload",
        "spec": {"residency": ["EU", "US"], "replicas": 20, "tier": "silver"}
    }}));
    let bodies = p.explain(&input).expect("explained");
    let summary: Vec<(u32, bool, Option<u32>)> = bodies
        .iter()
        .map(|b| {
            let failed = b
                .statements
                .iter()
                .find(|s| s.outcome == StatementOutcome::Failed)
                .map(|s| s.line);
            (b.line, b.held, failed)
        })
        .collect();
    assert_eq!(
        summary,
        [(5, false, Some(7)), (10, true, None), (16, false, Some(18))]
    );
    assert_eq!(
        bodies[2].statements[1].text,
        "input.object.spec.tier == \"gold\""
    );
    assert_eq!(bodies[0].statements[0].outcome, StatementOutcome::Held);
    // The explanation agrees with the evaluation.
    let found = p.evaluate(&input).expect("evaluates");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message, "US is not allowed");
}
