//! NIST OSCAL 1.1.3 `assessment-results` from audit findings
//! (`meridian compliance report -o oscal`).
//!
//! Shape of the document:
//! - one `result` for the audit, with `reviewed-controls` listing every control that an
//!   installed policy maps;
//! - one `observation` per finding (policy × object × message): the evidence, with the
//!   object as its subject (an `inventory-item` of the result's `local-definitions`) and
//!   `collected` = when the finding was last seen; plus, for a policy without findings,
//!   one observation saying so;
//! - one OSCAL `finding` per policy × control, whose `target` is the control
//!   (`objective-id`, the control id in OSCAL form: `sc-7`, `sa-9.5`, `gdpr-art.44`) with
//!   state `not-satisfied` or `satisfied`, and whose `related-observations` are the
//!   observations of that policy. Policies that map no control only contribute
//!   observations.
//!
//! UUIDs come from a [`UuidGen`]: random for real reports, seeded for reproducible
//! output. Timestamps come from the caller.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{Finding, ObjectRef};

/// The OSCAL version the output conforms to.
pub const OSCAL_VERSION: &str = "1.1.3";

/// Namespace of Meridian's OSCAL properties.
pub const PROP_NS: &str = "https://meridian.dev/ns/oscal";

/// Makes the UUIDs of a document: version 4, random or derived from a seed.
#[derive(Debug, Clone)]
pub struct UuidGen {
    seed: Option<(u64, u64)>,
}

impl UuidGen {
    /// Random UUIDs (the operating system's generator).
    pub fn random() -> Self {
        UuidGen { seed: None }
    }

    /// Reproducible UUIDs: the same seed gives the same sequence.
    pub fn seeded(seed: u64) -> Self {
        UuidGen {
            seed: Some((seed, 0)),
        }
    }

    /// The next UUID.
    pub fn next_uuid(&mut self) -> Uuid {
        match &mut self.seed {
            // The one randomness of the crate: OSCAL documents need unique ids, and a
            // caller that wants them reproducible passes a seed.
            #[allow(clippy::disallowed_methods)]
            None => Uuid::new_v4(),
            Some((seed, counter)) => {
                let mut h = Sha256::new();
                h.update(seed.to_le_bytes());
                h.update(counter.to_le_bytes());
                *counter += 1;
                let digest = h.finalize();
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                uuid::Builder::from_random_bytes(bytes).into_uuid()
            }
        }
    }

    fn next_string(&mut self) -> String {
        self.next_uuid().hyphenated().to_string()
    }
}

/// What the report says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMetadata {
    /// `metadata.title`.
    pub title: String,
    /// `metadata.version` (of this document, e.g. the store revision audited).
    pub version: String,
    /// Start of the evidence collection (`result.start`).
    pub start: Timestamp,
    /// End of the evidence collection (`result.end`, `metadata.last-modified`).
    pub end: Timestamp,
}

/// The OSCAL form of a control id: NIST SP 800-53 ids as in NIST's catalog (`SC-7` →
/// `sc-7`, `SA-9(5)` → `sa-9.5`); other frameworks prefixed with a short name
/// (`GDPR Art.44` → `gdpr-art.44`, `BSI C5 OPS-22` → `c5-ops-22`, `ISO27001 A.8.24` →
/// `iso27001-a.8.24`). Always a valid OSCAL token.
pub fn control_target_id(framework: &str, id: &str) -> String {
    let compact: String = framework
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let nist = compact.contains("80053") || compact == "nist";
    let mut control = String::new();
    for c in id.trim().chars() {
        match c {
            '(' => control.push('.'),
            ')' => {}
            c if c.is_whitespace() && nist => {}
            c if c.is_alphanumeric() || c == '.' || c == '-' || c == '_' => {
                control.extend(c.to_lowercase());
            }
            _ => control.push('-'),
        }
    }
    let control = control.trim_matches('-').to_string();
    let out = if nist {
        control
    } else {
        let prefix = match compact.as_str() {
            "gdpr" | "eugdpr" => "gdpr".to_string(),
            "c5" | "bsic5" | "c52020" | "bsic52020" => "c5".to_string(),
            c if c.starts_with("iso27001") || c.starts_with("isoiec27001") => {
                "iso27001".to_string()
            }
            "euaiact" | "aiact" => "eu-ai-act".to_string(),
            _ => slug(framework),
        };
        if prefix.is_empty() {
            control
        } else {
            format!("{prefix}-{control}")
        }
    };
    match out.chars().next() {
        Some(c) if c.is_alphabetic() || c == '_' => out,
        _ => format!("c-{out}"),
    }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A property value must be a non-empty string without leading, trailing or repeated
/// line-breaking whitespace.
fn prop(name: &str, value: &str) -> Option<Value> {
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    (!value.is_empty()).then(|| json!({"name": name, "ns": PROP_NS, "value": value}))
}

fn props(items: impl IntoIterator<Item = Option<Value>>) -> Vec<Value> {
    items.into_iter().flatten().collect()
}

/// Builds an OSCAL `assessment-results` document from `findings` (from the
/// `FindingStore` or one audit run) and the installed `policies` (for the reviewed
/// controls and the controls without findings).
pub fn assessment_results<'a>(
    findings: &[Finding],
    policies: impl IntoIterator<Item = &'a api::Policy>,
    meta: &ReportMetadata,
    uuids: &mut UuidGen,
) -> Value {
    let start = meta.start.to_string();
    let end = meta.end.to_string();
    let doc_uuid = uuids.next_string();
    let plan_uuid = uuids.next_string();
    let result_uuid = uuids.next_string();

    let mut policies: Vec<&api::Policy> = policies.into_iter().collect();
    policies.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut findings: Vec<&Finding> = findings.iter().collect();
    findings.sort_by(|a, b| a.report_order().cmp(&b.report_order()));

    // Subjects: one inventory item per object with findings.
    let mut items: BTreeMap<(&str, Option<&str>, &str), (String, &ObjectRef)> = BTreeMap::new();
    for f in &findings {
        let o = &f.object;
        items
            .entry((o.kind, o.namespace.as_deref(), &o.name))
            .or_insert_with(|| (uuids.next_string(), o));
    }

    // Observations: one per finding; by policy for the OSCAL findings.
    let mut observations = Vec::new();
    let mut by_policy: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for f in &findings {
        let o = &f.object;
        let (subject, _) = &items[&(o.kind, o.namespace.as_deref(), &*o.name)];
        let uuid = uuids.next_string();
        by_policy.entry(&f.policy).or_default().push(uuid.clone());
        let mut obs = json!({
            "uuid": uuid,
            "title": format!("{}: {}", f.policy, o),
            "description": f.message,
            "methods": ["TEST"],
            "types": ["finding"],
            "subjects": [{
                "subject-uuid": subject,
                "type": "inventory-item",
                "title": o.to_string(),
            }],
            "collected": f.last_seen.to_string(),
            "remarks": format!(
                "Found by the Rego policy {:?} ({}) in Meridian's continuous audit; first seen {}, last seen {}.",
                &*f.policy, f.enforcement, f.first_seen, f.last_seen
            ),
        });
        let p = props([
            prop("policy", &f.policy),
            prop("enforcement", f.enforcement.as_str()),
            f.field.as_deref().and_then(|v| prop("field", v)),
            prop("first-seen", &f.first_seen.to_string()),
        ]);
        if !p.is_empty() {
            obs["props"] = Value::Array(p);
        }
        observations.push(obs);
    }
    // Policies without findings: one observation that says so.
    for p in &policies {
        let name = p.metadata.name.as_str();
        if by_policy.contains_key(name) {
            continue;
        }
        let uuid = uuids.next_string();
        by_policy.entry(name).or_default().push(uuid.clone());
        observations.push(json!({
            "uuid": uuid,
            "title": format!("{name}: no violation"),
            "description": format!(
                "The Rego policy {name:?} ({}) reported no violation on any object it targets.",
                p.spec.enforcement
            ),
            "methods": ["TEST"],
            "types": ["control-objective"],
            "collected": end,
            "props": props([prop("policy", name), prop("enforcement", p.spec.enforcement.as_str())]),
        }));
    }

    // Findings: one per policy × control.
    let mut count: BTreeMap<&str, (usize, usize)> = BTreeMap::new(); // policy -> (findings, objects)
    for f in &findings {
        count.entry(&f.policy).or_default().0 += 1;
    }
    for (policy, (_, objects)) in count.iter_mut() {
        let mut set: Vec<(&str, Option<&str>, &str)> = findings
            .iter()
            .filter(|f| &*f.policy == *policy)
            .map(|f| {
                (
                    f.object.kind,
                    f.object.namespace.as_deref(),
                    &*f.object.name,
                )
            })
            .collect();
        set.dedup();
        *objects = set.len();
    }
    let mut reviewed: Vec<String> = Vec::new();
    let mut oscal_findings = Vec::new();
    for p in &policies {
        let name = p.metadata.name.as_str();
        let (n, objects) = count.get(name).copied().unwrap_or((0, 0));
        let related: Vec<Value> = by_policy
            .get(name)
            .map(|v| v.iter().map(|u| json!({"observation-uuid": u})).collect())
            .unwrap_or_default();
        for c in &p.spec.controls {
            let target = control_target_id(&c.framework, &c.id);
            if !reviewed.contains(&target) {
                reviewed.push(target.clone());
            }
            let (state, reason, description) = if n == 0 {
                (
                    "satisfied",
                    "pass",
                    format!(
                        "No object violates the policy {name:?}, which provides evidence for {} {}.",
                        c.framework, c.id
                    ),
                )
            } else {
                (
                    "not-satisfied",
                    "fail",
                    format!(
                        "{n} finding(s) on {objects} object(s) of the policy {name:?}, which provides evidence for {} {}.",
                        c.framework, c.id
                    ),
                )
            };
            let mut finding = json!({
                "uuid": uuids.next_string(),
                "title": format!("{} {}: {name}", c.framework, c.id),
                "description": description,
                "props": props([
                    prop("policy", name),
                    prop("framework", &c.framework),
                    prop("control-id", &c.id),
                ]),
                "target": {
                    "type": "objective-id",
                    "target-id": target,
                    "title": format!("{} {}", c.framework, c.id),
                    "status": {"state": state, "reason": reason},
                },
            });
            if !related.is_empty() {
                finding["related-observations"] = Value::Array(related.clone());
            }
            oscal_findings.push(finding);
        }
    }

    let control_selection = if reviewed.is_empty() {
        json!({"description": "No installed policy maps a control.", "include-all": {}})
    } else {
        json!({
            "description": "Every control that an installed Meridian policy provides evidence for.",
            "include-controls": reviewed.iter().map(|id| json!({"control-id": id})).collect::<Vec<_>>(),
        })
    };

    let mut result = json!({
        "uuid": result_uuid,
        "title": "Meridian continuous audit",
        "description": "Every object in the estate evaluated against every installed Rego policy that targets it.",
        "start": start,
        "end": end,
        "props": props([
            prop("findings", &findings.len().to_string()),
            prop("policies", &policies.len().to_string()),
        ]),
        "reviewed-controls": {"control-selections": [control_selection]},
    });
    if !items.is_empty() {
        result["local-definitions"] = json!({
            "inventory-items": items.values().map(|(uuid, o)| json!({
                "uuid": uuid,
                "description": format!("Meridian {}", o),
                "props": props([
                    prop("kind", o.kind),
                    o.namespace.as_deref().and_then(|ns| prop("project", ns)),
                    prop("name", &o.name),
                    o.uid.as_deref().and_then(|u| prop("uid", u)),
                ]),
            })).collect::<Vec<_>>(),
        });
    }
    if !observations.is_empty() {
        result["observations"] = Value::Array(observations);
    }
    if !oscal_findings.is_empty() {
        result["findings"] = Value::Array(oscal_findings);
    }

    let policy_props: Vec<Value> = policies
        .iter()
        .filter_map(|p| {
            prop(
                "policy",
                &format!(
                    "{} {} sha256:{}",
                    p.metadata.name,
                    p.spec.enforcement,
                    hex::encode(Sha256::digest(p.spec.rego.as_bytes()))
                ),
            )
        })
        .collect();
    let mut plan = json!({
        "uuid": plan_uuid,
        "title": "Meridian policy set",
        "description": "The assessment plan is the set of installed policies: each is evaluated at admission and by the continuous audit against every object it targets.",
    });
    if !policy_props.is_empty() {
        plan["props"] = Value::Array(policy_props);
    }

    json!({
        "assessment-results": {
            "uuid": doc_uuid,
            "metadata": {
                "title": meta.title,
                "last-modified": end,
                "version": meta.version,
                "oscal-version": OSCAL_VERSION,
            },
            "import-ap": {
                "href": format!("#{plan_uuid}"),
                "remarks": "Meridian has no separate assessment plan document; the back-matter resource describes the policies evaluated.",
            },
            "results": [result],
            "back-matter": {"resources": [plan]},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ids_in_oscal_form() {
        assert_eq!(control_target_id("NIST SP 800-53", "SC-7"), "sc-7");
        assert_eq!(control_target_id("NIST SP 800-53", "SA-9(5)"), "sa-9.5");
        assert_eq!(
            control_target_id("NIST SP 800-53 Rev. 5", "AC-3 (7)"),
            "ac-3.7"
        );
        assert_eq!(control_target_id("GDPR", "Art.44"), "gdpr-art.44");
        assert_eq!(control_target_id("BSI C5", "OPS-22"), "c5-ops-22");
        assert_eq!(control_target_id("ISO27001", "A.8.24"), "iso27001-a.8.24");
        assert_eq!(
            control_target_id("ISO/IEC 27001:2022", "A.5.9"),
            "iso27001-a.5.9"
        );
        assert_eq!(control_target_id("EU AI Act", "Art.10"), "eu-ai-act-art.10");
        assert_eq!(control_target_id("My Bank", "R 1/2"), "my-bank-r-1-2");
        assert_eq!(control_target_id("", "12"), "c-12");
    }

    #[test]
    fn seeded_uuids_are_v4_and_reproducible() {
        let mut a = UuidGen::seeded(7);
        let mut b = UuidGen::seeded(7);
        for _ in 0..10 {
            let u = a.next_uuid();
            assert_eq!(u, b.next_uuid());
            assert_eq!(u.get_version_num(), 4);
        }
        assert_ne!(
            UuidGen::seeded(8).next_uuid(),
            UuidGen::seeded(7).next_uuid()
        );
    }
}
