//! The example estate of `examples/`: the example workloads land where the comments in
//! the manifests say they should, and the refusals explain themselves.

use api::kinds::{Allocation, AllocationSpec};
use api::{AnyObject, Node, ObjectMeta, Project, Site, Workload};
use placement::{Batch, Decision, Fleet, Options, ReasonCode, place_batch};

struct Estate {
    sites: Vec<Site>,
    nodes: Vec<Node>,
    workloads: Vec<Workload>,
    projects: Vec<Project>,
}

fn estate() -> Estate {
    let mut e = Estate {
        sites: vec![],
        nodes: vec![],
        workloads: vec![],
        projects: vec![],
    };
    for (file, text) in api::examples::FILES {
        for m in api::parse_manifests(file, text).expect("examples parse") {
            match m.object {
                AnyObject::Site(s) => e.sites.push(s),
                // As their agents would report them.
                AnyObject::Node(mut n) => {
                    n.status = Some(api::kinds::NodeStatus {
                        phase: Some(api::kinds::NodePhase::Ready),
                        ..Default::default()
                    });
                    e.nodes.push(n);
                }
                AnyObject::Workload(w) => e.workloads.push(w),
                AnyObject::Project(p) => e.projects.push(p),
                _ => {}
            }
        }
    }
    e
}

impl Estate {
    fn workload(&self, name: &str) -> &Workload {
        self.workloads
            .iter()
            .find(|w| w.metadata.name == name)
            .unwrap()
    }

    fn project_of(&self, w: &Workload) -> &Project {
        self.projects
            .iter()
            .find(|p| Some(p.metadata.name.as_str()) == w.metadata.namespace.as_deref())
            .unwrap()
    }

    fn batch_of(&self, names: &[&str]) -> Batch {
        let mut b = Batch::new();
        for name in names {
            let w = self.workload(name);
            b.add_in_project(w, self.project_of(w), 0..w.spec.replicas as u32)
                .unwrap();
        }
        b
    }
}

fn show(decisions: &[Decision]) {
    for d in decisions {
        println!(
            "{} #{} -> {}",
            d.workload,
            d.replica,
            d.node().unwrap_or("UNPLACEABLE")
        );
        print!("{}", d.explanation().render());
    }
}

fn nodes_of<'a>(decisions: &'a [Decision], workload: &str) -> Vec<&'a str> {
    decisions
        .iter()
        .filter(|d| d.workload.name == workload)
        .map(|d| d.node().unwrap_or("UNPLACEABLE"))
        .collect()
}

fn place_all(e: &Estate) -> (Fleet, Vec<Decision>) {
    let mut fleet = Fleet::new(&e.sites, &e.nodes).unwrap();
    let names: Vec<&str> = e
        .workloads
        .iter()
        .map(|w| w.metadata.name.as_str())
        .collect();
    let decisions = place_batch(&mut fleet, &e.batch_of(&names), &Options::default());
    show(&decisions);
    (fleet, decisions)
}

/// The one example refused on purpose (the EU's H100s are taken by higher-priority work).
const REFUSED: &str = "fraud-model-train";

#[test]
fn every_example_workload_but_the_refused_one_is_placed() {
    let e = estate();
    let (_, decisions) = place_all(&e);
    let total: i32 = e.workloads.iter().map(|w| w.spec.replicas).sum();
    assert_eq!(decisions.len(), total as usize);
    for d in &decisions {
        if d.workload.name == REFUSED {
            assert!(!d.is_placed(), "{REFUSED} must wait for H100s in the EU");
            let summary = &d.explanation().summary;
            assert!(summary.contains("H100"), "{summary}");
            continue;
        }
        assert!(
            d.is_placed(),
            "{} #{}: {}",
            d.workload,
            d.replica,
            d.explanation().summary
        );
        let x = d.explanation();
        let sum: u32 = x.rejections.iter().map(|r| r.nodes).sum();
        assert_eq!(sum + x.passed, x.nodes, "{}", x.render());
    }
}

#[test]
fn llm_finetune_lands_on_frankfurt_gpus_not_zurich() {
    let e = estate();
    let (_, decisions) = place_all(&e);
    let nodes = nodes_of(&decisions, "llm-finetune");
    assert_eq!(nodes, vec!["fra-gpu-01"; 4]);
    let d = decisions
        .iter()
        .find(|d| d.workload.name == "llm-finetune")
        .unwrap();
    let p = d.placement().unwrap();
    assert_eq!(p.site, "onprem-frankfurt");
    assert_eq!(
        p.resources.gpu.as_ref().unwrap().model.as_deref(),
        Some("H100")
    );
    assert!(
        p.explanation
            .lines()
            .contains(&"1 node: jurisdiction CH not in [EU]".to_string()),
        "{}",
        p.explanation.render()
    );
    assert!(p.explanation.notes[0].contains("gang of 4"));
}

#[test]
fn month_end_close_only_on_german_operated_c5_onprem() {
    let e = estate();
    let (_, decisions) = place_all(&e);
    for node in nodes_of(&decisions, "month-end-close") {
        assert!(node.starts_with("fra-rhel-"), "{node}");
    }
    let d = decisions
        .iter()
        .find(|d| d.workload.name == "month-end-close")
        .unwrap();
    let x = d.explanation();
    // azure-westeurope is in NL: out of residency [DE] before its operator is looked at.
    assert_eq!(x.rejected_for(ReasonCode::Residency), 6, "{}", x.render());
}

#[test]
fn intranet_iis_only_on_ws2022_nodes_one_per_host() {
    let e = estate();
    let (_, decisions) = place_all(&e);
    let mut nodes = nodes_of(&decisions, "intranet-iis");
    nodes.sort();
    assert_eq!(nodes, vec!["azure-weu-win-01", "fra-win-01"]);
}

#[test]
fn payroll_spreads_over_frankfurt_zones() {
    let e = estate();
    let (_, decisions) = place_all(&e);
    let mut nodes = nodes_of(&decisions, "payroll-api");
    nodes.sort();
    assert_eq!(
        nodes,
        vec!["fra-rhel-01", "fra-rhel-02"],
        "one per zone, Frankfurt preferred"
    );
}

#[test]
fn legacy_erp_needs_qemu_disk_and_de_or_fr_operator() {
    let e = estate();
    let (_, decisions) = place_all(&e);
    let node = nodes_of(&decisions, "legacy-erp")[0];
    assert!(node.starts_with("fra-rhel-"), "{node}");
    let x = decisions
        .iter()
        .find(|d| d.workload.name == "legacy-erp")
        .unwrap()
        .explanation();
    assert!(x.rejected_for(ReasonCode::Driver) > 0, "{}", x.render());
}

#[test]
fn genome_align_spreads_over_sites_within_max_skew() {
    let e = estate();
    let (fleet, decisions) = place_all(&e);
    let mut per_site = std::collections::BTreeMap::new();
    for d in decisions
        .iter()
        .filter(|d| d.workload.name == "genome-align")
    {
        *per_site
            .entry(d.placement().unwrap().site.clone())
            .or_insert(0) += 1;
    }
    println!("{per_site:?}");
    let max = per_site.values().max().unwrap();
    let min = per_site.values().min().unwrap();
    assert!(max - min <= 2, "{per_site:?}");
    assert!(!per_site.contains_key("aws-us-east-1"));
    drop(fleet);
}

#[test]
fn a_second_finetune_explains_that_ch_would_fit() {
    let e = estate();
    let (mut fleet, _) = place_all(&e);
    let mut second = e.workload("llm-finetune").clone();
    second.metadata.name = "llm-finetune-2".into();
    let mut b = Batch::new();
    b.add_in_project(&second, e.project_of(&second), 0..4)
        .unwrap();
    let decisions = place_batch(&mut fleet, &b, &Options::default());
    show(&decisions);
    let d = &decisions[0];
    assert!(!d.is_placed());
    let x = d.explanation();
    assert_eq!(x.passed, 0);
    let lines = x.lines();
    assert!(
        lines.contains(&"1 node: jurisdiction CH not in [EU]".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"1 node: insufficient H100 GPUs (need 2, largest free 0)".to_string()),
        "{lines:?}"
    );
    let suggestions: Vec<&str> = x.suggestions.iter().map(|s| s.message.as_str()).collect();
    assert!(
        suggestions.contains(&"would fit if residency allowed CH"),
        "{suggestions:?}"
    );
    assert!(
        suggestions
            .contains(&"needs 2 more free H100 GPUs on one node in [EU] (closest: fra-gpu-01)"),
        "{suggestions:?}"
    );
    assert!(
        x.summary
            .starts_with("gang cannot be placed: 0 of 10 nodes fit"),
        "{}",
        x.summary
    );
    // The explanation is what the server stores on the Allocation and the Workload.
    let stored = AllocationSpec {
        workload: d.workload.name.clone(),
        replica: 0,
        node: String::new(),
        site: None,
        desired_state: Default::default(),
        resources: Default::default(),
        task: None,
        workload_generation: None,
        revision: None,
        template_hash: None,
        type_: None,
        restart: None,
        explanation: Some(Box::new(d.explanation().clone())),
        ports: Vec::new(),
    };
    let a = Allocation::new(ObjectMeta::namespaced("research", "x"), stored);
    let json = serde_json::to_value(&a).unwrap();
    let back: Allocation = serde_json::from_value(json).unwrap();
    assert_eq!(back.spec.explanation.as_deref(), Some(x));
}

#[test]
fn placer_steps_decide_as_place_batch_does() {
    let e = estate();
    let names: Vec<&str> = e
        .workloads
        .iter()
        .map(|w| w.metadata.name.as_str())
        .collect();
    let batch = e.batch_of(&names);
    let options = Options::default();
    let mut fleet = Fleet::new(&e.sites, &e.nodes).unwrap();
    let expected = place_batch(&mut fleet, &batch, &options);

    let mut fleet = Fleet::new(&e.sites, &e.nodes).unwrap();
    let mut placer = placement::Placer::new(&mut fleet, &batch, &options);
    let mut units = Vec::new();
    while let Some(decided) = placer.step() {
        units.push(decided.to_vec());
    }
    // Every instance once; a gang in one step.
    let mut all: Vec<usize> = units.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..batch.len()).collect::<Vec<_>>());
    assert!(
        units.iter().any(|u| u.len() == 4),
        "llm-finetune's gang of 4: {units:?}"
    );
    assert_eq!(placer.finish(), expected);
}
