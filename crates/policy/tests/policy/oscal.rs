//! OSCAL assessment-results: valid against NIST's schema, findings target controls and
//! link their observations, reproducible with a seed.

use std::collections::HashSet;
use std::path::PathBuf;

use jiff::Timestamp;
use policy::oscal::{ReportMetadata, UuidGen, assessment_results};
use policy::{AuditOptions, FleetContext, PolicySet, audit, packs};
use serde_json::Value;

use crate::support::*;

// The test reads NIST's schema file; the library itself does no I/O (clippy.toml).
#[allow(clippy::disallowed_methods)]
fn schema() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/oscal/oscal_assessment-results_schema_v1.1.3.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("NIST OSCAL schema {} is required: {e}", path.display()));
    serde_json::from_str(&text).expect("schema is JSON")
}

fn report(seed: u64) -> (Value, usize) {
    let policies: Vec<_> = packs().into_iter().flat_map(|p| p.policies).collect();
    let set = PolicySet::new(policies.iter().map(compile));
    let mut objects = examples();
    let close = example("Workload", "month-end-close");
    objects.push(allocation(
        &close,
        0,
        "azure-weu-lnx-01",
        "azure-westeurope",
    ));
    let fleet = FleetContext::from_objects(&objects);
    let start: Timestamp = "2025-06-30T22:00:00Z".parse().unwrap();
    let end: Timestamp = "2025-06-30T22:00:03.250Z".parse().unwrap();
    let findings = audit(&objects, &set, &fleet, AuditOptions::default()).findings(end);
    let meta = ReportMetadata {
        title: "Meridian compliance report: example estate".into(),
        version: "revision 1234".into(),
        start,
        end,
    };
    let doc = assessment_results(
        &findings,
        set.iter().map(|p| p.policy()),
        &meta,
        &mut UuidGen::seeded(seed),
    );
    (doc, findings.len())
}

#[test]
fn assessment_results_validate_against_the_nist_schema() {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the NIST schema compiles");
    let (doc, _) = report(42);
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));

    // The validator really checks: a broken document is refused.
    let mut broken = doc.clone();
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["target-id"] =
        "not a token".into();
    assert!(!validator.is_valid(&broken));
    let mut broken = doc;
    broken["assessment-results"]["uuid"] = "00000000-0000-1000-8000-000000000000".into();
    assert!(!validator.is_valid(&broken));
}

#[test]
fn findings_target_controls_and_link_their_observations() {
    let (doc, n) = report(1);
    let ar = &doc["assessment-results"];
    assert_eq!(ar["metadata"]["oscal-version"], "1.1.3");
    let result = &ar["results"][0];
    assert_eq!(result["start"], "2025-06-30T22:00:00Z");
    assert_eq!(result["end"], "2025-06-30T22:00:03.25Z");

    let observations = result["observations"].as_array().unwrap();
    let with_subject = observations
        .iter()
        .filter(|o| o.get("subjects").is_some())
        .count();
    assert_eq!(with_subject, n, "one observation per finding");
    let obs_ids: HashSet<&str> = observations
        .iter()
        .map(|o| o["uuid"].as_str().unwrap())
        .collect();
    let items: HashSet<&str> = result["local-definitions"]["inventory-items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uuid"].as_str().unwrap())
        .collect();
    for o in observations.iter().filter(|o| o.get("subjects").is_some()) {
        assert!(items.contains(o["subjects"][0]["subject-uuid"].as_str().unwrap()));
    }

    let reviewed: HashSet<&str> =
        result["reviewed-controls"]["control-selections"][0]["include-controls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["control-id"].as_str().unwrap())
            .collect();
    for id in [
        "sc-28",
        "sa-9.5",
        "si-2",
        "ac-3",
        "gdpr-art.44",
        "c5-ops-22",
        "iso27001-a.8.24",
        "eu-ai-act-art.10",
    ] {
        assert!(reviewed.contains(id), "{id} not reviewed: {reviewed:?}");
    }

    let findings = result["findings"].as_array().unwrap();
    for f in findings {
        let target = &f["target"];
        assert_eq!(target["type"], "objective-id");
        assert!(reviewed.contains(target["target-id"].as_str().unwrap()));
        for r in f["related-observations"].as_array().unwrap() {
            assert!(obs_ids.contains(r["observation-uuid"].as_str().unwrap()));
        }
    }
    let find = |title: &str| findings.iter().find(|f| f["title"] == title).unwrap();
    let strict = find("GDPR Art.48: sovereignty-strict-operator");
    assert_eq!(strict["target"]["target-id"], "gdpr-art.48");
    assert_eq!(strict["target"]["status"]["state"], "not-satisfied");
    assert_eq!(strict["related-observations"].as_array().unwrap().len(), 1);
    let owner = find("NIST SP 800-53 CM-8: baseline-owner-label");
    assert_eq!(owner["target"]["target-id"], "cm-8");
    assert_eq!(
        owner["related-observations"].as_array().unwrap().len() as u64,
        count_kind("Node")
    );
    let queue = find("NIST SP 800-53 SC-6: ai-gpu-queue");
    assert_eq!(queue["target"]["status"]["state"], "satisfied");
}

#[test]
fn seeded_reports_are_reproducible() {
    assert_eq!(report(7).0, report(7).0);
    assert_ne!(report(7).0, report(8).0);
}
