//! Builders for sites, nodes and workloads, from JSON fragments merged over defaults.
#![allow(dead_code)]

use api::{Node, Project, Site, Workload};
use placement::{Batch, Decision, Fleet, Options, place_batch};
use serde_json::{Value, json};

/// JSON merge patch (RFC 7386) of `patch` into `base`.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn object<T: serde::de::DeserializeOwned>(mut base: Value, patch: Value) -> T {
    merge(&mut base, patch);
    serde_json::from_value(base.clone()).unwrap_or_else(|e| panic!("{e}: {base:#}"))
}

/// A site in `jurisdiction`, operated from there, with ISO27001.
pub fn site(name: &str, jurisdiction: &str, patch: Value) -> Site {
    object(
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Site",
            "metadata": {"name": name},
            "spec": {
                "provider": "onprem", "region": name, "zones": ["a", "b"],
                "jurisdiction": jurisdiction,
                "operator": {"name": format!("{name} operator"), "jurisdiction": jurisdiction},
                "certifications": ["ISO27001"],
                "pricing": {"cpuCoreHour": 0.03, "memoryGiBHour": 0.004},
                "carbon": {"gramsPerKWh": 300}
            }
        }),
        patch,
    )
}

/// A Linux amd64 node with 8 cores and 32Gi, offering exec and container.
pub fn node(name: &str, site: &str, patch: Value) -> Node {
    object(
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Node",
            "metadata": {"name": name},
            "spec": {
                "site": site, "zone": "a",
                "os": {"family": "linux", "distro": "rhel"},
                "arch": "amd64",
                "capacity": {"cpu": 8, "memory": "32Gi", "ephemeralStorage": "100Gi"},
                "drivers": ["exec", "container"]
            },
            "status": {"phase": "Ready"}
        }),
        patch,
    )
}

/// A service in project `p` needing 1 core and 1Gi, one replica.
pub fn workload(name: &str, patch: Value) -> Workload {
    object(
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "p"},
            "spec": {
                "type": "service", "replicas": 1,
                "task": {"driver": "exec", "command": ["/bin/true"],
                         "resources": {"cpu": 1, "memory": "1Gi"}}
            }
        }),
        patch,
    )
}

pub fn project(name: &str, allowed: &[&str]) -> Project {
    object(
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Project",
            "metadata": {"name": name},
            "spec": {"allowedLocations": allowed}
        }),
        json!({}),
    )
}

/// Places every replica of each workload on a fresh fleet.
pub fn place(sites: &[Site], nodes: &[Node], workloads: &[Workload]) -> (Fleet, Vec<Decision>) {
    let mut fleet = Fleet::new(sites, nodes).unwrap();
    let decisions = place_on(&mut fleet, workloads);
    (fleet, decisions)
}

pub fn place_on(fleet: &mut Fleet, workloads: &[Workload]) -> Vec<Decision> {
    let mut batch = Batch::new();
    for w in workloads {
        batch.add_all(w).unwrap();
    }
    let decisions = place_batch(fleet, &batch, &Options::default());
    for d in &decisions {
        let x = d.explanation();
        let sum: u32 = x.rejections.iter().map(|r| r.nodes).sum();
        assert_eq!(sum + x.passed, x.nodes, "counts add up: {}", x.render());
    }
    decisions
}

pub fn chosen(decisions: &[Decision]) -> Vec<&str> {
    decisions.iter().map(|d| d.node().unwrap_or("-")).collect()
}
