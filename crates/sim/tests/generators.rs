//! The generators' promises: deterministic from the seed, heterogeneous as stated, exact
//! instance counts, and every object acceptable to the API's validation.

use std::collections::BTreeSet;

use api::kinds::{OsFamily, Sovereignty};
use api::{AnyObject, Spec, object_from_value_as};
use sim::{FleetSpec, SimFleet, WorkloadSpec};

fn fleet(nodes: usize, seed: u64) -> SimFleet {
    FleetSpec::new(nodes, seed).generate()
}

#[test]
fn same_seed_same_fleet_and_workloads() {
    let a = fleet(500, 7);
    let b = fleet(500, 7);
    assert_eq!(a, b);
    let wa = WorkloadSpec::new(2_000, 7).generate(&a);
    let wb = WorkloadSpec::new(2_000, 7).generate(&b);
    assert_eq!(wa, wb);
    let c = fleet(500, 8);
    assert_ne!(a.nodes, c.nodes, "another seed gives another fleet");
    assert_ne!(wa, WorkloadSpec::new(2_000, 8).generate(&a));
}

#[test]
fn sites_span_jurisdictions_providers_and_operators() {
    for nodes in [300, 5_000] {
        let f = fleet(nodes, 1);
        assert_eq!(f.sites.len(), FleetSpec::new(nodes, 1).site_count());
        let jurisdictions: BTreeSet<&str> = f
            .sites
            .iter()
            .map(|s| s.spec.jurisdiction.as_str())
            .collect();
        let providers: BTreeSet<&str> = f.sites.iter().map(|s| s.spec.provider.as_str()).collect();
        assert!(jurisdictions.len() >= 20, "{jurisdictions:?}");
        assert!(providers.len() >= 4, "{providers:?}");
        let eu = api::jurisdiction::EU;
        let us_operated_in_eu = f.sites.iter().any(|s| {
            eu.contains(&s.spec.jurisdiction.as_str())
                && s.spec
                    .operator
                    .as_ref()
                    .is_some_and(|o| o.jurisdiction == "US")
        });
        let eu_operated_in_eu = f.sites.iter().any(|s| {
            eu.contains(&s.spec.jurisdiction.as_str())
                && s.spec
                    .operator
                    .as_ref()
                    .is_some_and(|o| eu.contains(&o.jurisdiction.as_str()))
        });
        assert!(us_operated_in_eu && eu_operated_in_eu);
        let certs: BTreeSet<&str> = f
            .sites
            .iter()
            .flat_map(|s| s.spec.certifications.iter().map(String::as_str))
            .collect();
        for c in ["ISO27001", "SOC2", "C5", "SecNumCloud"] {
            assert!(certs.contains(c), "{c} in {certs:?}");
        }
        let sites_with_nodes: BTreeSet<&str> =
            f.nodes.iter().map(|n| n.spec.site.as_str()).collect();
        assert!(
            sites_with_nodes.len() * 10 >= f.sites.len() * 8,
            "most sites have nodes"
        );
    }
    assert_eq!(fleet(200_000, 1).sites.len(), 500, "capped");
}

#[test]
fn nodes_are_heterogeneous() {
    let f = fleet(2_000, 3);
    assert_eq!(f.nodes.len(), 2_000);
    let windows = f
        .nodes
        .iter()
        .filter(|n| n.spec.os.family == OsFamily::Windows)
        .count();
    let share = windows as f64 / f.nodes.len() as f64;
    assert!((0.25..=0.35).contains(&share), "Windows share {share}");
    let builds: BTreeSet<&str> = f
        .nodes
        .iter()
        .filter_map(|n| n.spec.os.build.as_deref())
        .collect();
    assert!(builds.len() >= 3, "{builds:?}");
    let models = f.gpu_models();
    assert!(models.len() >= 3, "{models:?}");
    let gpu_nodes = f
        .nodes
        .iter()
        .filter(|n| !n.spec.capacity.gpus.is_empty())
        .count();
    assert!(
        (0.03..=0.10).contains(&(gpu_nodes as f64 / 2_000.0)),
        "{gpu_nodes} GPU nodes"
    );
    assert!(
        f.nodes
            .iter()
            .any(|n| n.spec.arch == api::kinds::Arch::Arm64)
    );
    assert!(
        f.nodes
            .iter()
            .any(|n| !n.spec.taints.is_empty() && n.spec.capacity.gpus.is_empty())
    );
    assert!(
        f.nodes
            .iter()
            .all(|n| n.spec.capacity.gpus.is_empty() || !n.spec.taints.is_empty())
    );
    assert!(
        f.nodes
            .iter()
            .all(|n| n.metadata.labels.contains_key("pool") && n.spec.zone.is_some())
    );
    let distros: BTreeSet<&str> = f
        .nodes
        .iter()
        .filter_map(|n| n.spec.os.distro.as_deref())
        .collect();
    assert!(distros.len() >= 5, "{distros:?}");
    // Nodes come in pools of identical hosts: far fewer shapes than nodes.
    let placement = placement::Fleet::new(&f.sites, &f.nodes).unwrap();
    assert!(
        placement.class_count() < f.nodes.len() / 2,
        "{} classes",
        placement.class_count()
    );
}

#[test]
fn replicas_add_up_to_the_instances() {
    let f = fleet(300, 5);
    for instances in [0, 1, 7, 1_000, 12_345] {
        let w = WorkloadSpec::new(instances, 5).generate(&f);
        let sum: i64 = w.iter().map(|w| i64::from(w.spec.replicas)).sum();
        assert_eq!(sum, instances as i64);
        assert!(w.iter().all(|w| w.spec.replicas >= 1));
    }
}

#[test]
fn the_mix_has_every_kind_of_constraint() {
    let f = fleet(1_000, 9);
    let w = WorkloadSpec::new(20_000, 9).generate(&f);
    let any = |p: &dyn Fn(&api::Workload) -> bool| w.iter().any(p);
    assert!(any(&|w| w.spec.gang.is_some()));
    assert!(any(&|w| w
        .spec
        .data
        .as_ref()
        .is_some_and(|d| d.sovereignty == Sovereignty::Strict)));
    assert!(any(&|w| w
        .spec
        .data
        .as_ref()
        .is_some_and(|d| d.residency.iter().any(|r| r == "EU"))));
    assert!(any(&|w| w
        .spec
        .task
        .os
        .as_ref()
        .is_some_and(|o| o.build.is_some())));
    assert!(any(&|w| w.spec.task.resources.gpu.is_some()));
    assert!(any(&|w| w
        .spec
        .placement
        .as_ref()
        .is_some_and(|p| p.spread.is_some())));
    assert!(any(&|w| w
        .spec
        .placement
        .as_ref()
        .is_some_and(|p| p.anti_affinity)));
    assert!(any(&|w| w
        .spec
        .placement
        .as_ref()
        .is_some_and(|p| !p.match_expressions.is_empty())));
    assert!(any(&|w| w
        .spec
        .placement
        .as_ref()
        .is_some_and(|p| !p.preferences.is_empty())));
    assert!(any(&|w| !w.spec.tolerations.is_empty()));
    assert!(any(&|w| !w.spec.compliance.is_empty()));
    let priorities: BTreeSet<i32> = w.iter().map(|w| w.spec.priority).collect();
    assert!(priorities.len() > 10);
    let models: BTreeSet<&str> = w
        .iter()
        .filter_map(|w| w.spec.task.resources.gpu.as_ref()?.model.as_deref())
        .collect();
    let have = f.gpu_models();
    assert!(
        models.iter().all(|m| have.contains_key(*m)),
        "{models:?} within {have:?}"
    );
    let projects: BTreeSet<&str> = f
        .projects
        .iter()
        .map(|p| p.metadata.name.as_str())
        .collect();
    assert!(
        w.iter()
            .all(|w| projects.contains(w.metadata.namespace.as_deref().unwrap()))
    );
}

/// Serialises an object, decodes and validates it as the server does on create, and
/// checks that nothing changed on the way.
fn check<S, T>(object: &api::Object<S, T>) -> Result<(), String>
where
    S: Spec + serde::Serialize + Clone,
    T: serde::Serialize + Clone,
    AnyObject: From<api::Object<S, T>>,
{
    let value = serde_json::to_value(object).unwrap();
    let decoded = object_from_value_as(S::kind_info(), value).map_err(|e| e.to_string())?;
    if decoded != AnyObject::from(object.clone()) {
        return Err("does not round-trip".into());
    }
    Ok(())
}

#[test]
fn every_object_passes_validation() {
    let f = fleet(3_000, 11);
    let w = WorkloadSpec::new(10_000, 11).generate(&f);
    let mut problems = Vec::new();
    for s in &f.sites {
        if let Err(e) = check(s) {
            problems.push(format!("site {}: {e}", s.metadata.name));
        }
    }
    for n in &f.nodes {
        if let Err(e) = check(n) {
            problems.push(format!("node {}: {e}", n.metadata.name));
        }
    }
    for p in &f.projects {
        if let Err(e) = check(p) {
            problems.push(format!("project {}: {e}", p.metadata.name));
        }
    }
    for x in &w {
        if let Err(e) = check(x) {
            problems.push(format!("workload {}: {e}", x.metadata.name));
        }
    }
    problems.truncate(10);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_small_benchmark_runs_and_counts_every_instance() {
    let r = sim::bench::placement(300, 1_000, 1, false).unwrap();
    assert_eq!(r.nodes, 300);
    assert_eq!(r.instances, 1_000);
    assert_eq!(r.placed + r.unplaceable, 1_000);
    assert!(r.placed > 500, "{r:?}");
    assert!(r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
    let with_ports = sim::bench::placement(300, 1_000, 1, true).unwrap();
    assert_eq!(with_ports.placed + with_ports.unplaceable, 1_000);
    assert!(with_ports.placed > 500, "{with_ports:?}");
}
