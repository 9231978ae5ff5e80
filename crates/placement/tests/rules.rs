//! Every filter, every explanation reason (with exact messages), scores, preemption,
//! gangs, rescheduling and determinism, on small hand-built fleets.

mod common;

use api::kinds::{Allocation, AllocationSpec};
use api::{ObjectMeta, Site};
use common::*;
use placement::{Batch, Evaluated, Fleet, Options, ReasonCode, explain, place_batch, reschedule};
use serde_json::json;

fn eu_and_us() -> Vec<Site> {
    vec![
        site("fra", "DE", json!({})),
        site("par", "FR", json!({})),
        site("nyc", "US", json!({"spec": {"provider": "aws"}})),
    ]
}

/// The only decision, which must be unplaceable; returns its explanation lines.
fn refused(sites: &[Site], nodes: &[api::Node], w: api::Workload) -> placement::Explanation {
    let (_, d) = place(sites, nodes, &[w]);
    assert!(!d[0].is_placed(), "placed on {:?}", d[0].node());
    let x = d[0].explanation().clone();
    println!("{}", x.render());
    assert_eq!(x.evaluated, Evaluated::AllFilters);
    x
}

fn suggestions(x: &placement::Explanation) -> Vec<&str> {
    x.suggestions.iter().map(|s| s.message.as_str()).collect()
}

// -- site filters -------------------------------------------------------------------

#[test]
fn residency_refuses_sites_outside_the_allowed_set() {
    let nodes = vec![
        node("us-1", "nyc", json!({})),
        node("us-2", "nyc", json!({})),
    ];
    let x = refused(
        &eu_and_us(),
        &nodes,
        workload("w", json!({"spec": {"data": {"residency": ["EU"]}}})),
    );
    assert_eq!(x.lines(), vec!["2 nodes: jurisdiction US not in [EU]"]);
    assert_eq!(x.rejections[0].reason, ReasonCode::Residency);
    assert_eq!(suggestions(&x), vec!["would fit if residency allowed US"]);
    assert_eq!(x.suggestions[0].nodes, 2);
}

#[test]
fn residency_blocs_expand() {
    let (_, d) = place(
        &eu_and_us(),
        &[
            node("fr-1", "par", json!({})),
            node("us-1", "nyc", json!({})),
        ],
        &[workload(
            "w",
            json!({"spec": {"data": {"residency": ["EEA"]}}}),
        )],
    );
    assert_eq!(chosen(&d), vec!["fr-1"]);
}

#[test]
fn project_fence_narrows_residency() {
    let w = workload("w", json!({"spec": {"data": {"residency": ["EU"]}}}));
    let mut fleet = Fleet::new(&eu_and_us(), &[node("fr-1", "par", json!({}))]).unwrap();
    let mut b = Batch::new();
    b.add_in_project(&w, &project("p", &["DE"]), [0]).unwrap();
    let d = place_batch(&mut fleet, &b, &Options::default());
    assert_eq!(
        d[0].explanation().lines(),
        vec!["1 node: jurisdiction FR not in project p's allowed locations [DE]"]
    );
    assert_eq!(
        suggestions(d[0].explanation()),
        vec!["would fit if project p allowed FR"]
    );
}

#[test]
fn strict_sovereignty_checks_the_operator() {
    let sites = vec![site(
        "azure-nl",
        "NL",
        json!({"spec": {"operator": {"name": "Microsoft Corporation", "jurisdiction": "US"}}}),
    )];
    let nodes = vec![node("n1", "azure-nl", json!({}))];
    let strict = workload(
        "w",
        json!({"spec": {"data": {"residency": ["EU"], "sovereignty": "strict"}}}),
    );
    let x = refused(&sites, &nodes, strict);
    assert_eq!(
        x.lines(),
        vec![
            "1 node: site azure-nl is operated by Microsoft Corporation (US), not in [EU] (sovereignty: strict)"
        ]
    );
    assert_eq!(
        suggestions(&x),
        vec!["would fit with sovereignty: standard (site azure-nl)"]
    );
    let standard = workload("w", json!({"spec": {"data": {"residency": ["EU"]}}}));
    let (_, d) = place(&sites, &nodes, &[standard]);
    assert_eq!(chosen(&d), vec!["n1"]);
}

#[test]
fn certifications_must_all_be_held() {
    let x = refused(
        &eu_and_us(),
        &[node("n1", "fra", json!({}))],
        workload(
            "w",
            json!({"spec": {"compliance": ["ISO27001", "C5", "SOC2"]}}),
        ),
    );
    assert_eq!(
        x.lines(),
        vec!["1 node: site lacks certifications C5, SOC2"]
    );
    let x = refused(
        &eu_and_us(),
        &[node("n1", "fra", json!({}))],
        workload("w", json!({"spec": {"compliance": ["C5"]}})),
    );
    assert_eq!(x.lines(), vec!["1 node: site lacks certification C5"]);
    assert_eq!(
        suggestions(&x),
        vec!["would fit without compliance requirement C5"]
    );
}

#[test]
fn unknown_site_is_refused() {
    let x = refused(
        &eu_and_us(),
        &[node("n1", "atlantis", json!({}))],
        workload("w", json!({})),
    );
    assert_eq!(x.lines(), vec!["1 node: site atlantis is not known"]);
}

// -- node state ---------------------------------------------------------------------------

#[test]
fn cordoned_and_lost_nodes_get_nothing() {
    let nodes = vec![
        node("cordoned", "fra", json!({"spec": {"unschedulable": true}})),
        node("lost", "fra", json!({"status": {"phase": "Lost"}})),
        node("notready", "fra", json!({"status": {"phase": "NotReady"}})),
    ];
    let x = refused(&eu_and_us(), &nodes, workload("w", json!({})));
    assert_eq!(
        x.lines(),
        vec![
            "1 node: node is NotReady",
            "1 node: node is Lost",
            "1 node: cordoned (unschedulable)"
        ]
    );
    assert!(suggestions(&x).contains(&"would fit if node cordoned were uncordoned"));
    let ready = vec![node("ready", "fra", json!({"status": {"phase": "Ready"}}))];
    assert_eq!(nodes_of_one(&ready), "ready");
}

fn nodes_of_one(n: &[api::Node]) -> String {
    let (_, d) = place(&eu_and_us(), n, &[workload("w", json!({}))]);
    d[0].node().unwrap().to_string()
}

// -- platform -----------------------------------------------------------------------------

#[test]
fn os_arch_and_driver() {
    let nodes = vec![
        node(
            "win",
            "fra",
            json!({"spec": {"os": {"family": "windows", "build": "10.0.20348"}}}),
        ),
        node("arm", "fra", json!({"spec": {"arch": "arm64"}})),
        node("noqemu", "fra", json!({})),
    ];
    let w = workload(
        "w",
        json!({"spec": {"task": {"driver": "qemu", "disk": {"image": "/x.qcow2"},
                                  "os": {"family": "linux"}, "arch": "amd64"}}}),
    );
    let x = refused(&eu_and_us(), &nodes, w);
    assert_eq!(
        x.lines(),
        vec![
            "1 node: os windows, task needs linux",
            "1 node: arch arm64, task needs amd64",
            "1 node: driver qemu not offered"
        ]
    );
}

fn win_node(name: &str, build: &str, distro: &str) -> api::Node {
    node(
        name,
        "fra",
        json!({"spec": {"os": {"family": "windows", "distro": distro, "build": build}}}),
    )
}

fn win_workload(build: &str, isolation: &str) -> api::Workload {
    workload(
        "iis",
        json!({"spec": {"task": {"driver": "container", "image": "iis",
            "os": {"family": "windows", "build": build, "isolation": isolation}}}}),
    )
}

#[test]
fn windows_process_isolation_needs_the_same_build() {
    let nodes = vec![
        win_node("ws2019", "10.0.17763", "windows-server"),
        win_node("ws2016", "10.0.14393.1914", "windows-server"),
    ];
    let x = refused(&eu_and_us(), &nodes, win_workload("10.0.20348", "process"));
    assert_eq!(
        x.lines(),
        vec![
            "1 node: Windows build 10.0.14393.1914 cannot process-isolate image 10.0.20348",
            "1 node: Windows build 10.0.17763 cannot process-isolate image 10.0.20348"
        ]
    );
    assert_eq!(
        suggestions(&x),
        vec![
            "would fit with an image built for Windows 10.0.14393.1914",
            "would fit with an image built for Windows 10.0.17763"
        ]
    );
    let (_, d) = place(
        &eu_and_us(),
        &[win_node("ws2022", "10.0.20348.2113", "windows-server")],
        &[win_workload("10.0.20348", "process")],
    );
    assert_eq!(chosen(&d), vec!["ws2022"]);
    // Windows Server 2025 process-isolates Windows Server 2022 images (Microsoft's table
    // of January 2025).
    let (_, d) = place(
        &eu_and_us(),
        &[win_node("ws2025", "10.0.26100", "windows-server")],
        &[win_workload("10.0.20348", "process")],
    );
    assert_eq!(chosen(&d), vec!["ws2025"]);
    // Windows Server 2016 compares revisions; later hosts do not.
    let x = refused(
        &eu_and_us(),
        &nodes[1..],
        win_workload("10.0.14393.1944", "process"),
    );
    assert_eq!(
        x.lines(),
        vec!["1 node: Windows build 10.0.14393.1914 cannot process-isolate image 10.0.14393.1944"]
    );
    let (_, d) = place(
        &eu_and_us(),
        &nodes[1..],
        &[win_workload("10.0.14393.1914", "process")],
    );
    assert_eq!(chosen(&d), vec!["ws2016"]);
    let (_, d) = place(
        &eu_and_us(),
        &[win_node("ws2019", "10.0.17763.4010", "windows-server")],
        &[win_workload("10.0.17763.3287", "process")],
    );
    assert_eq!(chosen(&d), vec!["ws2019"]);
    // A Windows 10 client process-isolates no server image, even of its own build.
    let x = refused(
        &eu_and_us(),
        &[win_node("win10", "10.0.17763", "windows-10")],
        win_workload("10.0.17763", "process"),
    );
    assert_eq!(
        x.lines(),
        vec!["1 node: Windows build 10.0.17763 cannot process-isolate image 10.0.17763"]
    );
}

#[test]
fn windows_hyperv_runs_older_images_only() {
    let nodes = vec![
        win_node("ws2019", "10.0.17763", "windows-server"),
        win_node("ws2025", "10.0.26100", "windows-server"),
    ];
    let (_, d) = place(
        &eu_and_us(),
        &nodes,
        &[win_workload("10.0.20348", "hyperv")],
    );
    assert_eq!(chosen(&d), vec!["ws2025"]);
    let x = refused(
        &eu_and_us(),
        &nodes[..1],
        win_workload("10.0.20348", "hyperv"),
    );
    assert_eq!(
        x.lines(),
        vec![
            "1 node: Windows build 10.0.17763 is older than image 10.0.20348 (Hyper-V isolation needs the host at least as new)"
        ]
    );
}

#[test]
fn windows_11_process_isolates_ws2022_images() {
    let (_, d) = place(
        &eu_and_us(),
        &[win_node("dev-laptop", "10.0.22631", "windows-11")],
        &[win_workload("10.0.20348", "process")],
    );
    assert_eq!(chosen(&d), vec!["dev-laptop"]);
}

// -- taints -----------------------------------------------------------------------------------

#[test]
fn no_schedule_and_no_execute_taints_are_hard() {
    let nodes = vec![
        node(
            "gpu",
            "fra",
            json!({"spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}),
        ),
        node(
            "evict",
            "fra",
            json!({"spec": {"taints": [{"key": "maint", "effect": "NoExecute"}]}}),
        ),
    ];
    let x = refused(&eu_and_us(), &nodes, workload("w", json!({})));
    assert_eq!(
        x.lines(),
        vec![
            "1 node: untolerated taint gpu=true:NoSchedule",
            "1 node: untolerated taint maint:NoExecute"
        ]
    );
    assert_eq!(
        suggestions(&x),
        vec![
            "would fit if toleration for gpu=true:NoSchedule were added",
            "would fit if toleration for maint:NoExecute were added"
        ]
    );
    let tolerant = workload(
        "w",
        json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}),
    );
    let (_, d) = place(&eu_and_us(), &nodes, &[tolerant]);
    assert_eq!(chosen(&d), vec!["gpu"]);
}

#[test]
fn prefer_no_schedule_is_a_score() {
    let nodes = vec![
        node(
            "a-soft",
            "fra",
            json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
        ),
        node("b-plain", "fra", json!({})),
    ];
    let (_, d) = place(&eu_and_us(), &nodes, &[workload("w", json!({}))]);
    assert_eq!(chosen(&d), vec!["b-plain"]);
    let (_, d) = place(&eu_and_us(), &nodes[..1], &[workload("w", json!({}))]);
    let p = d[0].placement().unwrap();
    assert_eq!(p.node, "a-soft");
    assert_eq!(p.score.taints, -20.0);
}

// -- match expressions and security facts --------------------------------------------------

#[test]
fn match_expressions_over_site_and_node_attributes() {
    let sites = eu_and_us();
    let nodes = vec![
        node(
            "fra-1",
            "fra",
            json!({"metadata": {"labels": {"disk": "ssd", "cores": "64"}}}),
        ),
        node(
            "fra-2",
            "fra",
            json!({"metadata": {"labels": {"disk": "hdd"}}}),
        ),
        node(
            "nyc-1",
            "nyc",
            json!({"metadata": {"labels": {"disk": "ssd"}}}),
        ),
    ];
    let w = |exprs: serde_json::Value| {
        workload(
            "w",
            json!({"spec": {"placement": {"matchExpressions": exprs}}}),
        )
    };
    let cases = [
        (
            json!([{"key": "site.provider", "operator": "NotIn", "values": ["aws"]}, {"key": "disk", "operator": "In", "values": ["ssd"]}]),
            "fra-1",
        ),
        (
            json!([{"key": "cores", "operator": "Gt", "values": ["32"]}]),
            "fra-1",
        ),
        (
            json!([{"key": "cores", "operator": "DoesNotExist"}, {"key": "site.jurisdiction", "operator": "In", "values": ["US"]}]),
            "nyc-1",
        ),
        (
            json!([{"key": "node.name", "operator": "In", "values": ["fra-2"]}]),
            "fra-2",
        ),
        (
            json!([{"key": "site.name", "operator": "In", "values": ["nyc"]}, {"key": "node.os.family", "operator": "In", "values": ["linux"]}]),
            "nyc-1",
        ),
        (
            json!([{"key": "cores", "operator": "Lt", "values": ["100"]}, {"key": "node.zone", "operator": "Exists"}]),
            "fra-1",
        ),
    ];
    for (exprs, want) in cases {
        let (_, d) = place(&sites, &nodes, &[w(exprs.clone())]);
        assert_eq!(chosen(&d), vec![want], "{exprs}");
    }
    let x = refused(
        &sites,
        &nodes,
        w(json!([{"key": "site.provider", "operator": "In", "values": ["azure"]}])),
    );
    assert_eq!(
        x.lines(),
        vec!["3 nodes: site.provider In [azure] not met (site.provider is aws, onprem)"]
    );
    let x = refused(
        &sites,
        &nodes,
        w(json!([{"key": "node.name", "operator": "In", "values": ["nope"]}])),
    );
    assert_eq!(
        x.lines(),
        vec!["3 nodes: node.name In [nope] not met (node.name is fra-1, fra-2, nyc-1)"]
    );
}

#[test]
fn security_facts_are_required_when_asked() {
    let nodes = vec![
        node(
            "plain",
            "fra",
            json!({"status": {"security": {"diskEncryption": false}}}),
        ),
        node("unknown", "fra", json!({})),
    ];
    let w = workload(
        "w",
        json!({"spec": {"placement": {"matchExpressions": [
            {"key": "node.security.diskEncryption", "operator": "In", "values": ["true"]}]}}}),
    );
    let x = refused(&eu_and_us(), &nodes, w.clone());
    assert_eq!(x.rejections[0].reason, ReasonCode::Security);
    assert_eq!(
        x.lines(),
        vec![
            "2 nodes: node.security.diskEncryption In [true] not met (node.security.diskEncryption is absent, false)"
        ]
    );
    let enc = vec![node(
        "enc",
        "fra",
        json!({"status": {"security": {"diskEncryption": true, "patchAgeDays": 3}}}),
    )];
    let (_, d) = place(&eu_and_us(), &enc, &[w]);
    assert_eq!(chosen(&d), vec!["enc"]);
}

// -- capacity -----------------------------------------------------------------------------

#[test]
fn capacity_messages_name_the_need_and_the_largest_free() {
    let nodes = vec![
        node(
            "small",
            "fra",
            json!({"spec": {"capacity": {"cpu": 2, "memory": "6Gi"}}}),
        ),
        node(
            "tiny",
            "fra",
            json!({"spec": {"capacity": {"cpu": 1, "memory": "64Gi"}}}),
        ),
        node(
            "nodisk",
            "fra",
            json!({"spec": {"capacity": {"cpu": 8, "memory": "64Gi", "ephemeralStorage": null}}}),
        ),
    ];
    let w = workload(
        "w",
        json!({"spec": {"task": {"resources": {"cpu": 2, "memory": "8Gi", "ephemeralStorage": "10Gi"}}}}),
    );
    let x = refused(&eu_and_us(), &nodes, w);
    assert_eq!(
        x.lines(),
        vec![
            "1 node: insufficient cpu (need 2, largest free 1)",
            "1 node: insufficient memory (need 8Gi, largest free 6Gi)",
            "1 node: insufficient ephemeral storage (need 10Gi, largest free 0)"
        ]
    );
}

#[test]
fn gpus_by_count_model_and_memory() {
    let gpu = |name: &str, model: &str, mem: &str, count: u32| {
        node(
            name,
            "fra",
            json!({"spec": {"capacity": {"gpus": [{"model": model, "memory": mem, "count": count}]}}}),
        )
    };
    let nodes = vec![
        gpu("a100", "A100", "40Gi", 8),
        gpu("h100-small", "H100", "80Gi", 1),
        node("cpu", "fra", json!({})),
    ];
    let w = workload(
        "w",
        json!({"spec": {"task": {"resources": {"cpu": 1, "memory": "1Gi",
            "gpu": {"count": 2, "model": "H100", "memory": "80Gi"}}}}}),
    );
    let x = refused(&eu_and_us(), &nodes, w.clone());
    assert_eq!(
        x.lines(),
        vec![
            "2 nodes: no H100 GPUs with 80Gi memory",
            "1 node: insufficient H100 GPUs (need 2, largest free 1)"
        ]
    );
    assert_eq!(
        suggestions(&x),
        vec!["needs 1 more free H100 GPU on one node (closest: h100-small)"]
    );
    let mut more = nodes;
    more.push(gpu("h100", "H100", "80Gi", 8));
    let (fleet, d) = place(&eu_and_us(), &more, &[w]);
    assert_eq!(chosen(&d), vec!["h100"]);
    assert_eq!(
        fleet.free("h100").unwrap().gpus,
        vec![("H100".to_string(), 6)]
    );
}

#[test]
fn capacity_is_used_up_within_a_batch() {
    let nodes = vec![node(
        "n1",
        "fra",
        json!({"spec": {"capacity": {"cpu": 4, "memory": "4Gi"}}}),
    )];
    let w = workload(
        "w",
        json!({"spec": {"type": "job", "replicas": 5, "task": {"resources": {"cpu": 1, "memory": "1Gi"}}}}),
    );
    let (fleet, d) = place(&eu_and_us(), &nodes, &[w]);
    assert_eq!(chosen(&d), vec!["n1", "n1", "n1", "n1", "-"]);
    assert_eq!(
        d[4].explanation().lines(),
        vec!["1 node: insufficient cpu (need 1, largest free 0)"]
    );
    assert_eq!(fleet.free("n1").unwrap().cpu_millis, 0);
}

#[test]
fn existing_allocations_count_and_finished_ones_do_not() {
    let nodes = vec![node(
        "n1",
        "fra",
        json!({"spec": {"capacity": {"cpu": 2, "memory": "4Gi"}}}),
    )];
    let alloc = |name: &str, phase: &str| -> Allocation {
        let mut a = Allocation::new(
            ObjectMeta::namespaced("p", name),
            AllocationSpec {
                workload: "old".into(),
                replica: 0,
                node: "n1".into(),
                site: None,
                desired_state: Default::default(),
                resources: serde_json::from_value(json!({"cpu": 2, "memory": "1Gi"})).unwrap(),
                task: None,
                workload_generation: None,
                revision: None,
                template_hash: None,
                type_: None,
                restart: None,
                explanation: None,
                ports: Vec::new(),
            },
        );
        a.status = Some(serde_json::from_value(json!({"phase": phase})).unwrap());
        a
    };
    let sites = eu_and_us();
    let mut fleet =
        Fleet::from_objects(&sites, &nodes, &[alloc("done", "succeeded")], &[]).unwrap();
    assert_eq!(
        chosen(&place_on(&mut fleet, &[workload("w", json!({}))])),
        vec!["n1"]
    );
    let mut fleet = Fleet::from_objects(&sites, &nodes, &[alloc("busy", "running")], &[]).unwrap();
    assert_eq!(
        chosen(&place_on(&mut fleet, &[workload("w", json!({}))])),
        vec!["-"]
    );
}

// -- anti-affinity and spread ------------------------------------------------------------

#[test]
fn anti_affinity_keeps_replicas_apart() {
    let nodes = vec![node("n1", "fra", json!({})), node("n2", "fra", json!({}))];
    let w = workload(
        "w",
        json!({"spec": {"replicas": 3, "placement": {"antiAffinity": true}}}),
    );
    let (_, d) = place(&eu_and_us(), &nodes, &[w]);
    assert_eq!(chosen(&d)[2], "-");
    let mut two = chosen(&d)[..2].to_vec();
    two.sort();
    assert_eq!(two, vec!["n1", "n2"]);
    assert_eq!(
        d[2].explanation().lines(),
        vec!["2 nodes: already runs a replica (antiAffinity)"]
    );
    assert_eq!(
        suggestions(d[2].explanation()),
        vec!["would fit without antiAffinity"]
    );
}

#[test]
fn spread_max_skew_is_hard() {
    let nodes = vec![
        node("a1", "fra", json!({"spec": {"zone": "a"}})),
        node(
            "b1",
            "fra",
            json!({"spec": {"zone": "b", "capacity": {"cpu": 1, "memory": "1Gi"}}}),
        ),
    ];
    let w = workload(
        "w",
        json!({"spec": {"type": "job", "replicas": 4, "placement": {"spread": {"key": "site.zone", "maxSkew": 1}}}}),
    );
    let (_, d) = place(&eu_and_us(), &nodes, &[w]);
    // b1 (binpack: it is then full), a1, a1 (skew 2-1 = 1), then a1 would make skew 2.
    assert_eq!(chosen(&d), vec!["b1", "a1", "a1", "-"]);
    assert_eq!(
        d[3].explanation().lines(),
        vec![
            "1 node: insufficient cpu (need 1, largest free 0)",
            "1 node: spread: site.zone=a has 2 replicas, the least-loaded 1 (maxSkew 1)"
        ]
    );
    assert_eq!(
        suggestions(d[3].explanation()),
        vec![
            "would fit with spread maxSkew 2 over site.zone",
            "needs 1 more free cpu and 1Gi more free memory on one node (closest: b1)"
        ]
    );
}

#[test]
fn spread_by_node_name_and_missing_key() {
    let nodes = vec![
        node("n1", "fra", json!({"spec": {"zone": null}})),
        node("n2", "fra", json!({})),
        node("n3", "fra", json!({})),
    ];
    let w = workload(
        "w",
        json!({"spec": {"type": "job", "replicas": 4, "placement": {"spread": {"key": "node.name", "maxSkew": 1}}}}),
    );
    let (_, d) = place(&eu_and_us(), &nodes, &w_vec(w));
    let mut placed = chosen(&d);
    placed.sort();
    assert_eq!(placed, vec!["n1", "n1", "n2", "n3"]);
    let w = workload(
        "w",
        json!({"spec": {"placement": {"spread": {"key": "site.zone", "maxSkew": 1}}}}),
    );
    let x = refused(&eu_and_us(), &nodes[..1], w);
    assert_eq!(
        x.lines(),
        vec!["1 node: has no site.zone (spread needs it)"]
    );
}

fn w_vec(w: api::Workload) -> Vec<api::Workload> {
    vec![w]
}

// -- scores ------------------------------------------------------------------------------

#[test]
fn binpack_fills_the_fullest_node_spread_the_emptiest() {
    let nodes = vec![node("a", "fra", json!({})), node("b", "fra", json!({}))];
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    let first = place_on(
        &mut fleet,
        &[workload("first", json!({"spec": {"type": "job"}}))],
    );
    assert_eq!(chosen(&first), vec!["a"], "ties go to the first name");
    let pack = place_on(
        &mut fleet,
        &[workload("pack", json!({"spec": {"type": "job"}}))],
    );
    assert_eq!(chosen(&pack), vec!["a"]);
    let spread = place_on(
        &mut fleet,
        &[workload(
            "spread",
            json!({"spec": {"placement": {"strategy": "spread"}}}),
        )],
    );
    assert_eq!(chosen(&spread), vec!["b"]);
}

#[test]
fn service_replicas_avoid_sharing_a_node() {
    let nodes = vec![node("a", "fra", json!({})), node("b", "fra", json!({}))];
    let (_, d) = place(
        &eu_and_us(),
        &nodes,
        &[workload("w", json!({"spec": {"replicas": 2}}))],
    );
    assert_eq!(chosen(&d), vec!["a", "b"]);
    let p = d[1].placement().unwrap();
    assert_eq!(p.explanation.candidates[1].node, "a");
    assert_eq!(p.explanation.candidates[1].score.colocation, -5.0);
}

#[test]
fn cost_and_carbon() {
    let priced = |name: &str, cpu: f64, carbon: f64| {
        site(
            name,
            "DE",
            json!({"spec": {"pricing": {"cpuCoreHour": cpu}, "carbon": {"gramsPerKWh": carbon}}}),
        )
    };
    let nodes = vec![node("x", "one", json!({})), node("y", "two", json!({}))];
    let (_, d) = place(
        &[priced("one", 0.09, 300.0), priced("two", 0.01, 300.0)],
        &nodes,
        &[workload("w", json!({}))],
    );
    let p = d[0].placement().unwrap();
    assert_eq!(p.node, "y", "the cheaper site: {:?}", p.score);
    assert!(
        (p.score.cost_per_hour.unwrap() - 0.014).abs() < 1e-9,
        "{:?}",
        p.score
    );
    let (_, d) = place(
        &[priced("one", 0.05, 20.0), priced("two", 0.05, 400.0)],
        &nodes,
        &[workload("w", json!({}))],
    );
    assert_eq!(chosen(&d), vec!["x"], "the greener site");
    assert_eq!(
        d[0].placement().unwrap().score.carbon_grams_per_kwh,
        Some(20.0)
    );
}

#[test]
fn preferences_and_locality() {
    let sites = vec![site("one", "DE", json!({})), site("two", "DE", json!({}))];
    let nodes = vec![
        node("x", "one", json!({})),
        node(
            "y",
            "two",
            json!({"metadata": {"labels": {"tier": "gold"}}}),
        ),
    ];
    let (_, d) = place(&sites, &nodes, &[workload("w", json!({}))]);
    assert_eq!(chosen(&d), vec!["x"], "equal scores: the first name");
    let prefer = workload(
        "w",
        json!({"spec": {"placement": {"preferences": [{"weight": 60, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}]}}}),
    );
    let (_, d) = place(&sites, &nodes, &[prefer]);
    assert_eq!(chosen(&d), vec!["y"]);
    assert_eq!(d[0].placement().unwrap().score.preferences, 60.0);
    let avoid = workload(
        "w",
        json!({"spec": {"placement": {"preferences": [{"weight": -100, "matchExpressions": [{"key": "site.name", "operator": "In", "values": ["one"]}]}]}}}),
    );
    let (_, d) = place(&sites, &nodes, &[avoid]);
    assert_eq!(chosen(&d), vec!["y"]);
    let local = workload("w", json!({"spec": {"data": {"location": "two"}}}));
    let (_, d) = place(&sites, &nodes, &[local]);
    assert_eq!(chosen(&d), vec!["y"]);
    assert_eq!(d[0].placement().unwrap().score.locality, 25.0);
}

#[test]
fn cpu_work_avoids_gpu_nodes() {
    let nodes = vec![
        node(
            "a-gpu",
            "fra",
            json!({"spec": {"capacity": {"gpus": [{"model": "L4", "count": 1}]}}}),
        ),
        node("b-cpu", "fra", json!({})),
    ];
    let (_, d) = place(&eu_and_us(), &nodes, &[workload("w", json!({}))]);
    assert_eq!(chosen(&d), vec!["b-cpu"]);
}

// -- priority and preemption ------------------------------------------------------------------

fn filler(name: &str, priority: i32, cpu: u32) -> api::Workload {
    workload(
        name,
        json!({"spec": {"type": "job", "priority": priority, "task": {"resources": {"cpu": cpu, "memory": "1Gi"}}}}),
    )
}

#[test]
fn preemption_evicts_the_cheapest_lower_priority_set() {
    let nodes = vec![
        node(
            "n1",
            "fra",
            json!({"spec": {"capacity": {"cpu": 4, "memory": "32Gi"}}}),
        ),
        node(
            "n2",
            "fra",
            json!({"spec": {"capacity": {"cpu": 4, "memory": "32Gi"}}}),
        ),
    ];
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    // n1: priorities 10 (2 cores) and 50 (2 cores); n2: priority 20 (1 core) x4.
    let mut b = Batch::new();
    for (name, prio, cpu) in [("p10", 10, 2), ("p50", 50, 2)] {
        b.add(&filler(name, prio, cpu), [0]).unwrap();
    }
    place_batch(&mut fleet, &b, &Options::default());
    let mut b = Batch::new();
    let p20 = filler("p20", 20, 1);
    b.add(&p20, 0..4).unwrap();
    let d = place_batch(&mut fleet, &b, &Options::default());
    assert!(d.iter().all(|d| d.node() == Some("n2")), "{:?}", chosen(&d));
    assert_eq!(fleet.free("n1").unwrap().cpu_millis, 0);

    // Needs 2 cores: on n1 evicting p10 (max priority 10) beats two p20s on n2.
    let urgent = filler("urgent", 100, 2);
    let d = place_on(&mut fleet, &[urgent]);
    let p = d[0].placement().unwrap();
    assert_eq!(p.node, "n1");
    let victims: Vec<&str> = p
        .preempted
        .iter()
        .map(|v| v.allocation.workload.as_str())
        .collect();
    assert_eq!(victims, vec!["p10"]);
    assert!(
        p.preempted[0].reason.contains("priority 100 > 10"),
        "{}",
        p.preempted[0].reason
    );

    // Needs 4 cores at priority 30: n1 holds p50 and urgent, never evicted; on n2
    // the four p20s go.
    let d = place_on(&mut fleet, &[filler("big", 30, 4)]);
    let p = d[0].placement().unwrap();
    assert_eq!(p.node, "n2");
    assert_eq!(p.preempted.len(), 4);
    assert!(p.preempted.iter().all(|v| v.allocation.priority == 20));

    // Equal priority is never preempted.
    let d = place_on(&mut fleet, &[filler("peer", 30, 1)]);
    assert!(!d[0].is_placed());
    assert!(
        d[0].explanation().notes[0].contains("priority below 30"),
        "{:?}",
        d[0].explanation().notes
    );
}

#[test]
fn preemption_prefers_fewer_victims_at_equal_priority() {
    let nodes = vec![
        node(
            "n1",
            "fra",
            json!({"spec": {"capacity": {"cpu": 4, "memory": "32Gi"}}}),
        ),
        node(
            "n2",
            "fra",
            json!({"spec": {"capacity": {"cpu": 4, "memory": "32Gi"}}}),
        ),
    ];
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    let mut b = Batch::new();
    b.add(&filler("small", 5, 1), 0..4).unwrap();
    b.add(&filler("large", 5, 4), [0]).unwrap();
    let d = place_batch(&mut fleet, &b, &Options::default());
    assert!(d.iter().all(|d| d.is_placed()));
    let d = place_on(&mut fleet, &[filler("urgent", 9, 3)]);
    let p = d[0].placement().unwrap();
    assert_eq!(p.preempted.len(), 1, "{:?}", p.preempted);
    assert_eq!(p.preempted[0].allocation.workload, "large");
}

#[test]
fn higher_priority_is_placed_first_in_a_batch() {
    let nodes = vec![node(
        "n1",
        "fra",
        json!({"spec": {"capacity": {"cpu": 1, "memory": "32Gi"}}}),
    )];
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    let mut b = Batch::new();
    b.add(&filler("low", 1, 1), [0]).unwrap();
    b.add(&filler("high", 2, 1), [0]).unwrap();
    let opts = Options {
        preemption: false,
        ..Options::default()
    };
    let d = place_batch(&mut fleet, &b, &opts);
    assert_eq!(
        d[0].workload.name, "low",
        "decisions come back in batch order"
    );
    assert_eq!(chosen(&d), vec!["-", "n1"]);
}

#[test]
fn larger_requests_are_placed_first_within_a_priority() {
    // Two 4-core nodes; the batch lists two 1-core replicas before two 3-core ones. In
    // batch order, binpack would put both small replicas on n1 and leave room for one
    // large one only; largest first, every replica fits.
    let nodes = vec![
        node("n1", "fra", json!({"spec": {"capacity": {"cpu": 4}}})),
        node("n2", "fra", json!({"spec": {"capacity": {"cpu": 4}}})),
    ];
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    let mut b = Batch::new();
    b.add(&filler("small", 0, 1), [0, 1]).unwrap();
    b.add(&filler("large", 0, 3), [0, 1]).unwrap();
    assert_eq!(placement::placement_order(&fleet, &b), vec![2, 3, 0, 1]);
    let d = place_batch(&mut fleet, &b, &Options::default());
    let names: Vec<&str> = d.iter().map(|d| d.workload.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["small", "small", "large", "large"],
        "decisions come back in batch order"
    );
    assert_eq!(chosen(&d), vec!["n1", "n2", "n1", "n2"]);
}

// -- gangs ---------------------------------------------------------------------------------

fn gpu_site_nodes() -> (Vec<Site>, Vec<api::Node>) {
    let sites = vec![
        site(
            "big",
            "DE",
            json!({"spec": {"pricing": {"gpuHour": {"H100": 9.0}}}}),
        ),
        site(
            "small",
            "FR",
            json!({"spec": {"pricing": {"gpuHour": {"H100": 1.0}}}}),
        ),
    ];
    let gpu = |name: &str, site: &str| {
        node(
            name,
            site,
            json!({"spec": {"capacity": {"cpu": 64, "memory": "512Gi", "gpus": [{"model": "H100", "memory": "80Gi", "count": 2}]}}}),
        )
    };
    let nodes = vec![
        gpu("big-1", "big"),
        gpu("big-2", "big"),
        gpu("big-3", "big"),
        gpu("small-1", "small"),
        gpu("small-2", "small"),
    ];
    (sites, nodes)
}

fn gang(replicas: u32) -> api::Workload {
    workload(
        "train",
        json!({"spec": {"type": "job", "replicas": replicas, "gang": replicas,
            "task": {"resources": {"cpu": 8, "memory": "64Gi", "gpu": {"count": 2}}}}}),
    )
}

#[test]
fn gangs_prefer_one_site_even_when_another_is_cheaper() {
    let (sites, nodes) = gpu_site_nodes();
    let (_, d) = place(&sites, &nodes, &[gang(3)]);
    let mut placed = chosen(&d);
    placed.sort();
    assert_eq!(placed, vec!["big-1", "big-2", "big-3"]);
    assert!(d[0].explanation().notes[0].contains("placed together in site big with H100 GPUs"));
    // Two members fit in the cheaper site, which wins.
    let (_, d) = place(&sites, &nodes, &[gang(2)]);
    let mut placed = chosen(&d);
    placed.sort();
    assert_eq!(placed, vec!["small-1", "small-2"]);
}

#[test]
fn gangs_span_sites_only_when_no_site_fits_all() {
    let (sites, nodes) = gpu_site_nodes();
    let (_, d) = place(&sites, &nodes, &[gang(4)]);
    assert!(d.iter().all(|d| d.is_placed()));
    assert!(d[0].explanation().notes[0].contains("placed across sites"));
}

#[test]
fn gangs_are_all_or_nothing() {
    let (sites, nodes) = gpu_site_nodes();
    let (fleet, d) = place(&sites, &nodes, &[gang(6)]);
    assert!(d.iter().all(|d| !d.is_placed()));
    for n in ["big-1", "small-2"] {
        assert_eq!(
            fleet.free(n).unwrap().gpus[0].1,
            2,
            "nothing left behind on {n}"
        );
    }
    let x = d[0].explanation();
    println!("{}", x.render());
    assert!(
        x.summary
            .starts_with("gang cannot be placed: 5 of 5 nodes fit"),
        "{}",
        x.summary
    );
    assert!(
        x.notes[0].contains("at most 3 fit in one site"),
        "{:?}",
        x.notes
    );
}

// -- rescheduling ------------------------------------------------------------------------------

#[test]
fn reschedule_moves_work_off_a_lost_node() {
    let nodes = vec![node("a", "fra", json!({})), node("b", "fra", json!({}))];
    let w = workload(
        "web",
        json!({"spec": {"replicas": 2, "placement": {"antiAffinity": true}}}),
    );
    let (mut fleet, d) = place(&eu_and_us(), &nodes, std::slice::from_ref(&w));
    assert_eq!(chosen(&d), vec!["a", "b"]);
    let r = reschedule(
        &mut fleet,
        "a",
        std::slice::from_ref(&w),
        &[],
        &Options::default(),
    )
    .unwrap();
    assert_eq!(r.released.len(), 1);
    assert_eq!(r.released[0].node, "a");
    let x = r.decisions[0].explanation();
    assert_eq!(
        x.lines(),
        vec![
            "1 node: excluded (lost or draining)",
            "1 node: already runs a replica (antiAffinity)"
        ]
    );
    let other = workload("other", json!({}));
    let d = place_on(&mut fleet, &[other]);
    assert_eq!(
        chosen(&d),
        vec!["b"],
        "later batches avoid the drained node too"
    );
    assert!(fleet.allocations_on("a").is_empty());
}

// -- determinism, apply, explain ------------------------------------------------------------

#[test]
fn same_input_same_output() {
    let (sites, nodes) = gpu_site_nodes();
    let ws = vec![
        gang(3),
        workload("w", json!({"spec": {"replicas": 5}})),
        filler("f", 1, 4),
    ];
    let (_, a) = place(&sites, &nodes, &ws);
    let (_, b) = place(&sites, &nodes, &ws);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let mut reversed = nodes;
    reversed.reverse();
    let (_, c) = place(&sites, &reversed, &ws);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&c).unwrap()
    );
}

#[test]
fn apply_replays_decisions_and_refuses_over_commitment() {
    let nodes = vec![node(
        "n1",
        "fra",
        json!({"spec": {"capacity": {"cpu": 2, "memory": "4Gi"}}}),
    )];
    let (planned, d) = place(&eu_and_us(), &nodes, &[filler("f", 0, 2)]);
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    fleet.apply(&d[0]).unwrap();
    assert_eq!(fleet.free("n1"), planned.free("n1"));
    let err = fleet.apply(&d[0]).unwrap_err();
    assert!(err.to_string().contains("insufficient cpu"), "{err}");
    let on = fleet.allocations_on("n1");
    assert_eq!(on.len(), 1);
    assert!(fleet.remove_allocation(&on[0]));
    assert!(!fleet.remove_allocation(&on[0]));
    assert_eq!(fleet.free("n1").unwrap().cpu_millis, 2000);
}

#[test]
fn explain_counts_every_node_without_placing() {
    let nodes = vec![
        node("n1", "fra", json!({})),
        node("n2", "nyc", json!({})),
        node(
            "n3",
            "fra",
            json!({"spec": {"capacity": {"cpu": "500m", "memory": "1Gi"}}}),
        ),
    ];
    let fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    let w = workload("w", json!({"spec": {"data": {"residency": ["EU"]}}}));
    let x = explain(&fleet, &w, None, &Options::default()).unwrap();
    println!("{}", x.render());
    assert_eq!(x.passed, 1);
    assert_eq!(
        x.lines(),
        vec![
            "1 node: jurisdiction US not in [EU]",
            "1 node: insufficient cpu (need 1, largest free 500m)"
        ]
    );
    assert_eq!(x.candidates[0].node, "n1");
    assert_eq!(
        fleet.free("n1").unwrap().cpu_millis,
        8000,
        "explain places nothing"
    );
}

#[test]
fn explanations_serialize() {
    let x = refused(
        &eu_and_us(),
        &[node("us-1", "nyc", json!({}))],
        workload("w", json!({"spec": {"data": {"residency": ["EU"]}}})),
    );
    let v = serde_json::to_value(&x).unwrap();
    assert_eq!(v["evaluated"], "allFilters");
    assert_eq!(v["rejections"][0]["reason"], "residency");
    assert_eq!(v["rejections"][0]["message"], "jurisdiction US not in [EU]");
    assert_eq!(v["suggestions"][0]["relaxes"], "residency");
}

// -- per-node attributes (labels, security facts) -------------------------------------------

#[test]
fn unique_labels_do_not_split_classes() {
    let nodes: Vec<_> = (0..10)
        .map(|i| {
            node(
                &format!("n{i}"),
                "fra",
                json!({"metadata": {"labels": {"rack": format!("r{i}")}}}),
            )
        })
        .collect();
    let fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    assert_eq!(fleet.class_count(), 1);
}

#[test]
fn label_preferences_pick_nodes_within_a_class() {
    let nodes = vec![
        node("a", "fra", json!({"metadata": {"labels": {"disk": "hdd"}}})),
        node("b", "fra", json!({"metadata": {"labels": {"disk": "hdd"}}})),
        node("c", "fra", json!({"metadata": {"labels": {"disk": "ssd"}}})),
    ];
    let w = workload(
        "w",
        json!({"spec": {"replicas": 2, "placement": {"preferences": [
            {"weight": 50, "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}),
    );
    let (_, d) = place(&eu_and_us(), &nodes, &[w]);
    assert_eq!(chosen(&d), vec!["c", "c"], "the bonus outweighs colocation");
    assert_eq!(d[0].placement().unwrap().score.preferences, 50.0);
}

#[test]
fn spread_over_a_label() {
    let nodes = vec![
        node("a", "fra", json!({"metadata": {"labels": {"rack": "r1"}}})),
        node("b", "fra", json!({"metadata": {"labels": {"rack": "r1"}}})),
        node("c", "fra", json!({"metadata": {"labels": {"rack": "r2"}}})),
    ];
    let w = workload(
        "w",
        json!({"spec": {"type": "job", "replicas": 4, "placement": {"spread": {"key": "rack", "maxSkew": 1}}}}),
    );
    let (_, d) = place(&eu_and_us(), &nodes, &[w]);
    let racks: Vec<&str> = chosen(&d)
        .iter()
        .map(|n| if *n == "c" { "r2" } else { "r1" })
        .collect();
    assert_eq!(
        racks.iter().filter(|r| **r == "r1").count(),
        2,
        "{:?}",
        chosen(&d)
    );
    assert_eq!(
        racks.iter().filter(|r| **r == "r2").count(),
        2,
        "{:?}",
        chosen(&d)
    );
}

#[test]
fn reserve_holds_room_and_refuses_over_commitment() {
    let nodes = vec![node(
        "n1",
        "fra",
        json!({"spec": {"capacity": {"cpu": 2, "memory": "4Gi"}}}),
    )];
    let mut fleet = Fleet::new(&eu_and_us(), &nodes).unwrap();
    let holder = api::explanation::WorkloadRef {
        namespace: String::new(),
        name: "reserved-0".into(),
    };
    let resources: api::kinds::Resources =
        serde_json::from_value(json!({"cpu": "1500m", "memory": "1Gi"})).unwrap();
    fleet.reserve(&holder, 0, "n1", &resources, 0).unwrap();
    assert_eq!(fleet.free("n1").unwrap().cpu_millis, 500);
    let err = fleet.reserve(&holder, 1, "n1", &resources, 0).unwrap_err();
    assert!(err.to_string().contains("insufficient cpu"), "{err}");
    assert_eq!(
        fleet.free("n1").unwrap().cpu_millis,
        500,
        "nothing held on refusal"
    );
    assert!(fleet.reserve(&holder, 2, "nope", &resources, 0).is_err());
}
