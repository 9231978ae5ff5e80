//! Host ports as a node resource and host volumes as a placement rule.

mod common;

use api::kinds::Allocation;
use common::*;
use placement::{Decision, Outcome, ReasonCode};
use serde_json::json;

fn one_site() -> Vec<api::Site> {
    vec![site("fra", "DE", json!({}))]
}

fn ports_of(d: &Decision) -> Vec<(String, u16, u16)> {
    match &d.outcome {
        Outcome::Placed(p) => p
            .ports
            .iter()
            .map(|b| (b.name.clone(), b.port, b.target))
            .collect(),
        Outcome::Unplaceable(x) => panic!("unplaceable: {}", x.render()),
    }
}

#[test]
fn a_static_port_is_held_once_per_node_and_explained_when_taken() {
    let nodes = vec![node("n1", "fra", json!({})), node("n2", "fra", json!({}))];
    let w = workload(
        "web",
        json!({"spec": {"replicas": 3, "task": {"ports": [{"name": "http", "port": 8080}]}}}),
    );
    let (_, d) = place(&one_site(), &nodes, &[w]);
    // two nodes, one port 8080 each: the third instance has nowhere to go
    let placed: Vec<&str> = d.iter().filter_map(|d| d.node()).collect();
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert_ne!(
        placed[0], placed[1],
        "never the same host port twice on a node"
    );
    assert_eq!(ports_of(&d[0]), vec![("http".into(), 8080, 8080)]);
    let x = d[2].explanation();
    println!("{}", x.render());
    assert_eq!(x.rejections[0].reason, ReasonCode::Port);
    assert_eq!(x.lines(), vec!["2 nodes: host port 8080/tcp is taken"]);
}

#[test]
fn dynamic_ports_are_distinct_on_a_node_and_deterministic() {
    let nodes = vec![node("n1", "fra", json!({}))];
    let w = workload(
        "api",
        json!({"spec": {"replicas": 3, "task": {
            "resources": {"cpu": "100m", "memory": "64Mi"},
            "ports": [{"name": "http", "port": 0}, {"name": "admin", "port": 0, "protocol": "udp"}]
        }}}),
    );
    let (_, d) = place(&one_site(), &nodes, std::slice::from_ref(&w));
    let all: Vec<Vec<(String, u16, u16)>> = d.iter().map(ports_of).collect();
    assert_eq!(
        all[0],
        vec![
            ("http".into(), 20000, 20000),
            ("admin".into(), 20000, 20000)
        ],
        "tcp and udp ranges are separate"
    );
    assert_eq!(all[1][0].1, 20001);
    assert_eq!(all[2][0].1, 20002);
    let (_, again) = place(&one_site(), &nodes, &[w]);
    assert_eq!(again.iter().map(ports_of).collect::<Vec<_>>(), all);
}

#[test]
fn ports_of_existing_allocations_are_taken() {
    let nodes = vec![node("n1", "fra", json!({}))];
    let existing: Allocation = serde_json::from_value(json!({
        "apiVersion": "meridian.dev/v1", "kind": "Allocation",
        "metadata": {"name": "old-0", "namespace": "p"},
        "spec": {"workload": "old", "replica": 0, "node": "n1",
                 "resources": {"cpu": "100m", "memory": "64Mi"},
                 "ports": [{"name": "http", "port": 20000, "target": 80},
                           {"name": "x", "port": 9090, "target": 9090}]}
    }))
    .unwrap();
    let mut fleet = placement::Fleet::from_objects(&one_site(), &nodes, &[existing], []).unwrap();
    let d = place_on(
        &mut fleet,
        &[workload(
            "new",
            json!({"spec": {"task": {"resources": {"cpu": "100m", "memory": "64Mi"},
                "ports": [{"name": "http", "port": 0, "target": 80}]}}}),
        )],
    );
    assert_eq!(ports_of(&d[0]), vec![("http".into(), 20001, 80)]);
    let d = place_on(
        &mut fleet,
        &[workload(
            "clash",
            json!({"spec": {"task": {"resources": {"cpu": "100m", "memory": "64Mi"},
                "ports": [{"name": "m", "port": 9090}]}}}),
        )],
    );
    assert!(!d[0].is_placed());
    let x = d[0].explanation();
    assert_eq!(x.lines(), vec!["1 node: host port 9090/tcp is taken"]);
    assert_eq!(
        x.suggestions[0].message,
        "would fit on node n1 if host port 9090/tcp were free (or with port: 0, a dynamic port)"
    );
}

#[test]
fn volumes_are_a_placement_rule() {
    let nodes = vec![
        node("plain", "fra", json!({})),
        node(
            "ro",
            "fra",
            json!({"status": {"volumes": [{"name": "models", "readOnly": true}]}}),
        ),
        node(
            "rw",
            "fra",
            json!({"status": {"volumes": [{"name": "models"}, {"name": "scratch"}]}}),
        ),
    ];
    let reader = workload(
        "reader",
        json!({"spec": {"replicas": 2, "task": {"volumes": [{"name": "models", "mountPath": "/models", "readOnly": true}]}}}),
    );
    let (_, d) = place(&one_site(), &nodes, &[reader]);
    let mut on: Vec<&str> = d.iter().filter_map(|d| d.node()).collect();
    on.sort();
    assert_eq!(on, vec!["ro", "rw"]);

    let writer = workload(
        "writer",
        json!({"spec": {"replicas": 1, "task": {"volumes": [{"name": "models", "mountPath": "/models"}]}}}),
    );
    let (_, d) = place(&one_site(), &nodes[..2], &[writer]);
    let x = d[0].explanation();
    println!("{}", x.render());
    let mut lines = x.lines();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "1 node: node lacks volume models",
            "1 node: volume models is read-only on the node (mount it with readOnly: true)",
        ]
    );
    assert!(x.rejections.iter().all(|r| r.reason == ReasonCode::Volume));
}
