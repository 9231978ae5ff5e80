//! Gang topology (issue 16, part 4): `placement.topology` keeps every member of a gang in
//! one domain of a key (a node label such as `rack`, or `site.zone`), as a rule
//! (`required`) or a wish (`preferred`).

mod common;

use api::{Node, Site, Workload};
use common::{node, site, workload};
use placement::{Batch, Decision, Fleet, Options, place_batch};
use serde_json::json;

fn sites() -> Vec<Site> {
    vec![site("fra", "DE", json!({}))]
}

/// Two racks of two 8-GPU nodes each, and one 8-GPU node in a third rack.
fn racks() -> Vec<Node> {
    [
        ("a1", "r1"),
        ("a2", "r1"),
        ("b1", "r2"),
        ("b2", "r2"),
        ("c1", "r3"),
    ]
    .iter()
    .map(|(name, rack)| {
        node(
            name,
            "fra",
            json!({"metadata": {"labels": {"rack": rack}},
                       "spec": {"capacity": {"cpu": 64, "memory": "512Gi",
                           "gpus": [{"model": "H100", "memory": "80Gi", "count": 8}]}}}),
        )
    })
    .collect()
}

/// A gang of `members` × 8 H100s with `topology`.
fn gang(name: &str, members: u32, topology: serde_json::Value) -> Workload {
    workload(
        name,
        json!({"metadata": {"namespace": "research"},
               "spec": {"type": "job", "replicas": members, "gang": members,
                        "placement": {"topology": topology},
                        "task": {"resources": {"cpu": 8, "memory": "64Gi",
                                               "gpu": {"count": 8, "model": "H100"}}}}}),
    )
}

fn place(fleet: &mut Fleet, w: &Workload) -> Vec<Decision> {
    let mut batch = Batch::new();
    batch.add(w, 0..w.spec.replicas as u32).expect("add");
    place_batch(fleet, &batch, &Options::default())
}

fn rack_of(nodes: &[Node], name: &str) -> String {
    nodes
        .iter()
        .find(|n| n.metadata.name == name)
        .and_then(|n| n.metadata.labels.get("rack").cloned())
        .expect("rack")
}

#[test]
fn a_gang_required_in_one_rack_lands_in_one_rack() {
    let nodes = racks();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    // Fill a1 so that r1 has one free node: the pair must go to r2.
    let filler = gang("filler", 1, json!({"level": "rack", "mode": "required"}));
    let d = place(&mut fleet, &filler);
    assert!(d[0].is_placed());
    let first = d[0].node().expect("node").to_string();
    let pair = gang("pair", 2, json!({"level": "rack", "mode": "required"}));
    let d = place(&mut fleet, &pair);
    assert!(
        d.iter().all(Decision::is_placed),
        "{}",
        d[0].explanation().render()
    );
    let r0 = rack_of(&nodes, d[0].node().expect("node"));
    let r1 = rack_of(&nodes, d[1].node().expect("node"));
    assert_eq!(r0, r1, "both members in one rack");
    assert_ne!(
        r0,
        rack_of(&nodes, &first),
        "not the rack with one free node"
    );
    let note = &d[0].explanation().notes;
    assert!(
        note.iter().any(|n| n.contains(&format!("rack {r0}"))),
        "{note:?}"
    );
}

#[test]
fn a_required_topology_no_domain_can_hold_waits_whole_a_preferred_one_spreads() {
    let nodes = racks();
    let mut fleet = Fleet::new(&sites(), &nodes).expect("fleet");
    let three = gang("three", 3, json!({"level": "rack", "mode": "required"}));
    let d = place(&mut fleet, &three);
    assert!(d.iter().all(|d| !d.is_placed()), "no rack has three nodes");
    let e = d[0].explanation();
    assert!(e.summary.contains("in one rack"), "{}", e.summary);
    assert!(
        e.notes
            .iter()
            .any(|n| n.contains("requires all 3 members in one rack; at most 2 fit in one")),
        "{:?}",
        e.notes
    );
    for n in &nodes {
        assert_eq!(
            fleet.free(&n.metadata.name).expect("node").gpus[0].1,
            8,
            "nothing held"
        );
    }
    let preferred = gang("three", 3, json!({"level": "rack"}));
    let d = place(&mut fleet, &preferred);
    assert!(
        d.iter().all(Decision::is_placed),
        "preferred: placed across racks"
    );
}

#[test]
fn topology_is_for_gangs_and_needs_a_level() {
    let w = json!({
        "apiVersion": "meridian.dev/v1", "kind": "Workload",
        "metadata": {"name": "solo", "namespace": "research"},
        "spec": {"type": "job",
                 "placement": {"topology": {"level": " "}},
                 "task": {"driver": "exec", "command": ["/bin/true"],
                          "resources": {"cpu": 1, "memory": "1Gi"}}}
    });
    let err = api::validate::object_from_value(w)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("spec.placement.topology.level"), "{err}");
    assert!(err.contains("applies to gangs"), "{err}");
}
