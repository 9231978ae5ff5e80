//! `meridian compliance status`: findings summarised by policy and by framework, as rows
//! for a table and as JSON.

use std::collections::{BTreeMap, BTreeSet};

use api::kinds::{Control, Enforcement};
use serde_json::json;

use crate::audit::Finding;
use crate::set::controls_json;

/// One row of the by-policy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    pub policy: String,
    pub enforcement: Enforcement,
    pub controls: Vec<Control>,
    /// Findings of the policy.
    pub findings: usize,
    /// Distinct objects with findings.
    pub objects: usize,
}

impl PolicySummary {
    /// `Compliant` or `NonCompliant`, as Azure Policy says.
    pub fn state(&self) -> &'static str {
        if self.findings == 0 {
            "Compliant"
        } else {
            "NonCompliant"
        }
    }
}

/// One row of the by-framework table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkSummary {
    pub framework: String,
    /// Control ids mapped by at least one installed policy.
    pub controls: Vec<String>,
    /// Control ids with at least one finding.
    pub failing: Vec<String>,
    /// Findings that concern the framework.
    pub findings: usize,
}

impl FrameworkSummary {
    /// Controls without findings.
    pub fn passing(&self) -> usize {
        self.controls.len() - self.failing.len()
    }
}

/// The compliance status of the estate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplianceSummary {
    /// By policy name.
    pub policies: Vec<PolicySummary>,
    /// By framework name.
    pub frameworks: Vec<FrameworkSummary>,
    /// Findings in total.
    pub findings: usize,
    /// Findings the store did not keep (its limits were reached): the numbers above are
    /// then lower bounds.
    pub dropped: u64,
}

impl ComplianceSummary {
    /// Summarises `findings` for the installed `policies` (policies without findings are
    /// compliant rows; findings of policies not given still count).
    pub fn new<'a>(
        findings: &[Finding],
        policies: impl IntoIterator<Item = &'a api::Policy>,
        dropped: u64,
    ) -> Self {
        let mut rows: BTreeMap<String, (PolicySummary, BTreeSet<String>)> = BTreeMap::new();
        for p in policies {
            rows.insert(
                p.metadata.name.clone(),
                (
                    PolicySummary {
                        policy: p.metadata.name.clone(),
                        enforcement: p.spec.enforcement,
                        controls: p.spec.controls.clone(),
                        findings: 0,
                        objects: 0,
                    },
                    BTreeSet::new(),
                ),
            );
        }
        for f in findings {
            let (row, objects) = rows.entry(f.policy.to_string()).or_insert_with(|| {
                (
                    PolicySummary {
                        policy: f.policy.to_string(),
                        enforcement: f.enforcement,
                        controls: f.controls.to_vec(),
                        findings: 0,
                        objects: 0,
                    },
                    BTreeSet::new(),
                )
            });
            row.findings += 1;
            objects.insert(f.object.to_string());
        }
        let policies: Vec<PolicySummary> = rows
            .into_values()
            .map(|(mut row, objects)| {
                row.objects = objects.len();
                row
            })
            .collect();

        // framework -> (controls, failing controls, findings)
        let mut fw: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>, usize)> = BTreeMap::new();
        for row in &policies {
            for c in &row.controls {
                let e = fw.entry(&c.framework).or_default();
                e.0.insert(&c.id);
                if row.findings > 0 {
                    e.1.insert(&c.id);
                }
            }
        }
        for f in findings {
            let frameworks: BTreeSet<&str> = f.controls.iter().map(|c| &*c.framework).collect();
            for name in frameworks {
                if let Some(e) = fw.get_mut(name) {
                    e.2 += 1;
                }
            }
        }
        let frameworks = fw
            .into_iter()
            .map(|(name, (controls, failing, findings))| FrameworkSummary {
                framework: name.to_string(),
                controls: controls.into_iter().map(str::to_string).collect(),
                failing: failing.into_iter().map(str::to_string).collect(),
                findings,
            })
            .collect();
        ComplianceSummary {
            policies,
            frameworks,
            findings: findings.len(),
            dropped,
        }
    }

    /// JSON for `meridian compliance status -o json`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "findings": self.findings,
            "dropped": self.dropped,
            "policies": self.policies.iter().map(|p| json!({
                "policy": p.policy,
                "enforcement": p.enforcement.as_str(),
                "state": p.state(),
                "findings": p.findings,
                "objects": p.objects,
                "controls": controls_json(&p.controls),
            })).collect::<Vec<_>>(),
            "frameworks": self.frameworks.iter().map(|f| json!({
                "framework": f.framework,
                "controls": f.controls.len(),
                "passing": f.passing(),
                "failing": f.failing,
                "findings": f.findings,
            })).collect::<Vec<_>>(),
        })
    }
}
