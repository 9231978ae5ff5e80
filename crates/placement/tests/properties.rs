//! Property tests over random fleets and workloads: no decision breaks a hard rule (as
//! re-checked by an independent checker that reads only the API objects), capacity is
//! never exceeded, gangs are all-or-nothing, the same input gives the same output, and
//! rejection counts add up to the number of nodes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use api::kinds::{Isolation, NodePhase, OsFamily, Sovereignty, TaintEffect};
use api::{Node, Site, Workload};
use common::{node, site, workload};
use placement::{Batch, Decision, Fleet, Options, Outcome, place_batch, placement_order};
use proptest::prelude::*;
use serde_json::{Value, json};

const JURISDICTIONS: &[&str] = &["DE", "FR", "CH", "US", "NL"];
const CERTS: &[&str] = &["ISO27001", "C5", "SOC2"];
const BUILDS: &[&str] = &["10.0.17763", "10.0.20348", "10.0.26100", "10.0.22631"];

fn pick<T: Clone>(items: &[T], bits: u32) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, x)| x.clone())
        .collect()
}

fn arb_site(i: usize) -> impl Strategy<Value = Site> {
    (0..5usize, 0..5usize, 0..8u32, any::<bool>(), 0..3u32).prop_map(
        move |(j, op, certs, aws, price)| {
            site(
                &format!("s{i}"),
                JURISDICTIONS[j],
                json!({"spec": {
                    "provider": if aws { "aws" } else { "onprem" },
                    "operator": {"name": "op", "jurisdiction": JURISDICTIONS[op]},
                    "certifications": pick(CERTS, certs),
                    "pricing": {"cpuCoreHour": 0.01 * price as f64, "gpuHour": {"H100": 3.0}},
                }}),
            )
        },
    )
}

#[allow(clippy::type_complexity)]
fn arb_node(i: usize, sites: usize) -> impl Strategy<Value = Node> {
    (
        (
            0..sites + 1,
            0..3usize,
            0..10usize,
            0..4usize,
            any::<bool>(),
            0..8u32,
        ),
        (
            0..16u32,
            0..10u32,
            0..8u32,
            1..17u64,
            1..65u64,
            any::<bool>(),
        ),
        (0..5u32, 1..9u32, any::<bool>(), any::<bool>(), 0..3u32),
    )
        .prop_map(
            move |(
                (s, zone, os, arch, server, drivers),
                (taints, unsched, phase, cpu, mem, eph),
                (gpu, gpus, gpu80, ssd, enc),
            )| {
                let os = os.min(4);
                let arch = arch / 3;
                let drivers = drivers | 1;
                let taints = taints.saturating_sub(8);
                let gpu = gpu.saturating_sub(2);
                let site = if s == sites && cpu % 4 == 0 {
                    "ghost".to_string()
                } else {
                    format!("s{}", s % sites)
                };
                let os = if os == 4 {
                    json!({"family": "linux", "distro": "rhel"})
                } else {
                    json!({"family": "windows",
                           "distro": if server { "windows-server" } else { "windows-11" },
                           "build": BUILDS[os]})
                };
                let all_taints = [
                    json!({"key": "gpu", "value": "true", "effect": "NoSchedule"}),
                    json!({"key": "spot", "effect": "PreferNoSchedule"}),
                    json!({"key": "maint", "effect": "NoExecute"}),
                ];
                let mut capacity = json!({"cpu": cpu, "memory": format!("{mem}Gi")});
                if eph {
                    capacity["ephemeralStorage"] = json!("50Gi");
                }
                if gpu > 0 {
                    capacity["gpus"] = json!([{
                        "model": if gpu == 1 { "H100" } else { "A100" },
                        "memory": if gpu80 { "80Gi" } else { "40Gi" },
                        "count": gpus
                    }]);
                }
                let mut patch = json!({
                    "metadata": {"labels": {"disk": if ssd { "ssd" } else { "hdd" }}},
                    "spec": {
                        "site": site,
                        "zone": ([Value::from("a"), Value::from("b"), Value::Null][zone]),
                        "os": os,
                        "arch": (["amd64", "arm64"][arch]),
                        "capacity": capacity,
                        "drivers": pick(&["exec", "qemu", "container"], drivers),
                        "taints": pick(&all_taints, taints),
                        "unschedulable": unsched == 0,
                    }
                });
                let phase = match phase {
                    1 => Some("Ready"),
                    2 => Some("Lost"),
                    _ => None,
                };
                let mut status = json!({});
                if let Some(p) = phase {
                    status["phase"] = json!(p);
                }
                if enc > 0 {
                    status["security"] = json!({"diskEncryption": enc == 1});
                }
                patch["status"] = status;
                node(&format!("n{i:02}"), "s0", patch)
            },
        )
}

#[allow(clippy::type_complexity)]
fn arb_workload(i: usize) -> impl Strategy<Value = Workload> {
    (
        (1..5i32, 0..4u32, 0..4i32, 1..40u64, 1..16u64, any::<bool>()),
        (0..10u32, 1..3u32, 0..12usize, 0..2usize, 0..8usize, 0..6usize),
        (0..64u32, any::<bool>(), 0..32u32, 0..8u32, 0..96u32, 0..6u32),
        any::<bool>(),
    )
        .prop_map(
            move |(
                (replicas, kind, priority, cpu_tenths, mem, eph),
                (gpu, gpu_count, os, isolation, arch, driver),
                (residency, strict, compliance, tolerations, exprs, spread),
                anti,
            )| {
                let is_job = kind >= 2;
                let eph = eph && cpu_tenths % 3 == 0;
                let gpu = gpu.saturating_sub(7);
                let os = if os >= 6 { 5 } else { os };
                let arch = arch.saturating_sub(5);
                let driver = driver.saturating_sub(3);
                let residency = if residency >= 32 { 0 } else { residency };
                let compliance = if compliance >= 8 { 0 } else { compliance };
                let exprs = if exprs >= 32 { 0 } else { exprs };
                let spread = spread.saturating_sub(3);
                let mut task = json!({
                    "driver": (["exec", "qemu", "container"][driver]),
                    "command": ["/bin/true"],
                    "resources": {"cpu": format!("{}m", cpu_tenths * 100), "memory": format!("{mem}Gi")},
                });
                if driver == 1 {
                    task["disk"] = json!({"image": "/x.qcow2"});
                }
                if eph {
                    task["resources"]["ephemeralStorage"] = json!("10Gi");
                }
                if gpu == 1 {
                    task["resources"]["gpu"] = json!({"count": gpu_count});
                } else if gpu == 2 {
                    task["resources"]["gpu"] =
                        json!({"count": gpu_count, "model": "H100", "memory": "80Gi"});
                } else if gpu == 3 {
                    // A share of one device.
                    task["resources"]["gpu"] =
                        json!({"count": if gpu_count == 1 { 0.25 } else { 0.5 }});
                }
                match os {
                    0 => task["os"] = json!({"family": "linux"}),
                    1..=4 => {
                        task["os"] = json!({"family": "windows", "build": BUILDS[os - 1],
                                            "isolation": (["process", "hyperv"][isolation])});
                    }
                    _ => {}
                }
                if arch > 0 {
                    task["arch"] = json!((["amd64", "arm64"][arch - 1]));
                }
                let all_tolerations = [
                    json!({"key": "gpu", "operator": "Exists"}),
                    json!({"key": "spot", "operator": "Exists"}),
                    json!({"key": "maint", "operator": "Exists", "effect": "NoExecute"}),
                ];
                let all_exprs = [
                    json!({"key": "site.provider", "operator": "NotIn", "values": ["aws"]}),
                    json!({"key": "disk", "operator": "In", "values": ["ssd"]}),
                    json!({"key": "node.security.diskEncryption", "operator": "In", "values": ["true"]}),
                    json!({"key": "node.name", "operator": "NotIn", "values": ["n00", "n03"]}),
                    json!({"key": "site.jurisdiction", "operator": "Exists"}),
                ];
                let mut placement = json!({
                    "matchExpressions": pick(&all_exprs, exprs),
                    "antiAffinity": anti,
                    "strategy": if kind % 2 == 0 { "binpack" } else { "spread" },
                    "preferences": [{"weight": 40, "matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}],
                });
                if spread > 0 {
                    placement["spread"] = json!({"key": (["site.zone", "site.name"][spread as usize - 1]), "maxSkew": 1});
                }
                let mut spec = json!({
                    "type": if is_job { "job" } else { "service" },
                    "replicas": replicas,
                    "priority": priority,
                    "task": task,
                    "data": {"residency": pick(JURISDICTIONS, residency),
                             "sovereignty": if strict { "strict" } else { "standard" }},
                    "compliance": pick(CERTS, compliance),
                    "tolerations": pick(&all_tolerations, tolerations),
                    "placement": placement,
                });
                if is_job && kind == 3 {
                    spec["gang"] = json!(replicas);
                }
                workload(&format!("w{i}"), json!({"spec": spec}))
            },
        )
}

#[derive(Debug, Clone)]
struct Input {
    sites: Vec<Site>,
    nodes: Vec<Node>,
    batches: Vec<Vec<Workload>>,
}

fn arb_input() -> impl Strategy<Value = Input> {
    (1..5usize, 1..24usize, 1..7usize)
        .prop_flat_map(|(ns, nn, nw)| {
            let sites: Vec<_> = (0..ns).map(arb_site).collect();
            let nodes: Vec<_> = (0..nn).map(|i| arb_node(i, ns)).collect();
            let workloads: Vec<_> = (0..nw).map(arb_workload).collect();
            (sites, nodes, workloads, 0..nw + 1)
        })
        .prop_map(|(sites, nodes, workloads, split)| {
            let (a, b) = workloads.split_at(split);
            // A third batch repeats the first at a higher priority, to exercise
            // preemption.
            let urgent: Vec<Workload> = a
                .iter()
                .map(|w| {
                    let mut w = w.clone();
                    w.metadata.name = format!("urgent-{}", w.metadata.name);
                    w.spec.priority += 5;
                    w
                })
                .collect();
            Input {
                sites,
                nodes,
                batches: vec![a.to_vec(), b.to_vec(), urgent],
            }
        })
}

/// Places the batches in turn; returns the decisions in the order they were made
/// ([`placement::placement_order`]: priority, then size, then batch order), which is the
/// order the checker replays them in.
fn run(input: &Input) -> Vec<Decision> {
    let mut fleet = Fleet::new(&input.sites, &input.nodes).unwrap();
    let mut out = Vec::new();
    for ws in &input.batches {
        let mut batch = Batch::new();
        for w in ws {
            batch.add_all(w).unwrap();
        }
        let order = placement_order(&fleet, &batch);
        let decisions = place_batch(&mut fleet, &batch, &Options::default());
        let priority = |d: &Decision| match &d.outcome {
            Outcome::Placed(p) => p.priority,
            Outcome::Unplaceable(_) => 0,
        };
        let by_name: BTreeMap<&str, i32> = ws
            .iter()
            .map(|w| (w.metadata.name.as_str(), w.spec.priority))
            .collect();
        debug_assert!(
            decisions
                .iter()
                .all(|d| !d.is_placed() || priority(d) == by_name[d.workload.name.as_str()])
        );
        let mut decisions: Vec<Option<Decision>> = decisions.into_iter().map(Some).collect();
        out.extend(order.into_iter().map(|i| decisions[i].take().unwrap()));
    }
    out
}

// -- the independent checker ---------------------------------------------------------------

fn windows_ok(host: &str, client: bool, image: &str, isolation: Isolation) -> bool {
    let b = |s: &str| -> u32 { s.split('.').nth(2).unwrap().parse().unwrap() };
    let (h, i) = (b(host), b(image));
    match isolation {
        // Microsoft's exceptions: Windows 11 clients and Windows Server 2025 hosts run
        // Windows Server 2022 images with process isolation.
        Isolation::Process => h == i || (h >= 22000 && i == 20348 && (client || h == 26100)),
        Isolation::Hyperv => i <= h,
    }
}

fn attr(key: &str, site: &Site, node: &Node) -> Option<String> {
    let sec = node.status.as_ref().and_then(|s| s.security.as_ref());
    match key {
        "site.provider" => Some(site.spec.provider.clone()),
        "site.jurisdiction" => Some(site.spec.jurisdiction.clone()),
        "site.name" => Some(site.metadata.name.clone()),
        "site.zone" => node.spec.zone.clone(),
        "node.name" => Some(node.metadata.name.clone()),
        "node.security.diskEncryption" => {
            sec.and_then(|s| s.disk_encryption).map(|b| b.to_string())
        }
        label => node.metadata.labels.get(label).cloned(),
    }
}

#[derive(Default, Clone)]
struct Use {
    cpu: u64,
    mem: u64,
    eph: u64,
    /// Milli-GPUs.
    gpu: u32,
    /// The node's devices held.
    devices: Vec<u32>,
}

/// Re-validates every placed decision against the raw API objects.
fn check(input: &Input, decisions: &[Decision]) -> Result<(), String> {
    let workloads: BTreeMap<&str, &Workload> = input
        .batches
        .iter()
        .flatten()
        .map(|w| (w.metadata.name.as_str(), w))
        .collect();
    let mut live: BTreeMap<(String, u32), (String, i32, Use)> = BTreeMap::new();
    let mut per_workload: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for d in decisions {
        let x = d.explanation();
        let sum: u32 = x.rejections.iter().map(|r| r.nodes).sum();
        if sum + x.passed != x.nodes || x.nodes as usize != input.nodes.len() {
            return Err(format!("counts do not add up: {}", x.render()));
        }
        let w = workloads[d.workload.name.as_str()];
        let e = per_workload.entry(&w.metadata.name).or_default();
        e.0 += 1;
        let Outcome::Placed(p) = &d.outcome else {
            continue;
        };
        e.1 += 1;
        let ctx = format!("{} #{} on {}", d.workload, d.replica, p.node);
        let node = input
            .nodes
            .iter()
            .find(|n| n.metadata.name == p.node)
            .ok_or(format!("{ctx}: unknown node"))?;
        let site = input
            .sites
            .iter()
            .find(|s| s.metadata.name == node.spec.site)
            .ok_or(format!("{ctx}: node of an unknown site"))?;
        let spec = &w.spec;
        let task = &spec.task;
        let phase = node.status.as_ref().and_then(|s| s.phase);
        if node.spec.unschedulable || matches!(phase, Some(NodePhase::Lost | NodePhase::NotReady)) {
            return Err(format!("{ctx}: node not schedulable"));
        }
        let data = spec.data.clone().unwrap_or_default();
        if !data.residency.is_empty() {
            if !api::jurisdiction::allows(&data.residency, &site.spec.jurisdiction) {
                return Err(format!("{ctx}: residency"));
            }
            if data.sovereignty == Sovereignty::Strict {
                let op = site.spec.operator.as_ref().map(|o| o.jurisdiction.as_str());
                if !op.is_some_and(|o| api::jurisdiction::allows(&data.residency, o)) {
                    return Err(format!("{ctx}: sovereignty"));
                }
            }
        }
        for c in &spec.compliance {
            if !site.spec.certifications.contains(c) {
                return Err(format!("{ctx}: certification {c}"));
            }
        }
        if let Some(os) = &task.os {
            if os.family != node.spec.os.family {
                return Err(format!("{ctx}: os"));
            }
            if os.family == OsFamily::Windows
                && let Some(image) = &os.build
            {
                let client = node.spec.os.distro.as_deref() == Some("windows-11");
                let host = node
                    .spec
                    .os
                    .build
                    .as_deref()
                    .ok_or(format!("{ctx}: no build"))?;
                if !windows_ok(
                    host,
                    client,
                    image,
                    os.isolation.unwrap_or(Isolation::Process),
                ) {
                    return Err(format!("{ctx}: windows build {host} vs {image}"));
                }
            }
        }
        if task.arch.is_some_and(|a| a != node.spec.arch) {
            return Err(format!("{ctx}: arch"));
        }
        if !node.spec.drivers.contains(&task.driver) {
            return Err(format!("{ctx}: driver"));
        }
        for t in &node.spec.taints {
            if t.effect != TaintEffect::PreferNoSchedule
                && !spec.tolerations.iter().any(|tol| tol.tolerates(t))
            {
                return Err(format!("{ctx}: taint {}", t.key));
            }
        }
        for e in spec.placement.iter().flat_map(|p| &p.match_expressions) {
            if !e.matches(attr(&e.key, site, node).as_deref()) {
                return Err(format!("{ctx}: {e}"));
            }
        }
        let anti = spec.placement.as_ref().is_some_and(|p| p.anti_affinity);
        if anti
            && live
                .iter()
                .any(|((wl, _), (n, _, _))| *wl == w.metadata.name && *n == p.node)
        {
            return Err(format!("{ctx}: anti-affinity"));
        }
        for v in &p.preempted {
            if v.allocation.priority >= p.priority {
                return Err(format!("{ctx}: preempted equal or higher priority"));
            }
            live.remove(&(v.allocation.workload.clone(), v.allocation.replica))
                .ok_or(format!("{ctx}: preempted an unknown allocation"))?;
        }
        let r = &task.resources;
        if let Some(g) = &r.gpu {
            let have = node.spec.allocatable().gpus.first();
            let model = p.resources.gpu.as_ref().and_then(|g| g.model.clone());
            if !have.is_some_and(|h| {
                Some(&h.model) == model.as_ref()
                    && g.model.as_ref().is_none_or(|m| *m == h.model)
                    && g.memory.is_none_or(|m| h.memory.is_some_and(|hm| hm >= m))
            }) {
                return Err(format!("{ctx}: gpu model"));
            }
        }
        live.insert(
            (w.metadata.name.clone(), d.replica),
            (
                p.node.clone(),
                p.priority,
                Use {
                    cpu: r.cpu.millis(),
                    mem: r.memory.bytes(),
                    eph: r.ephemeral_storage.map_or(0, |m| m.bytes()),
                    gpu: r.gpu.as_ref().map_or(0, |g| g.count.milli()),
                    devices: p
                        .resources
                        .gpu
                        .as_ref()
                        .map(|g| g.devices.clone())
                        .unwrap_or_default(),
                },
            ),
        );
        // Capacity after every placement, GPU devices one by one: a share holds one
        // device, whole GPUs as many devices as GPUs, and no device is over one GPU.
        let mut used = Use::default();
        let mut per_device: BTreeMap<u32, u32> = BTreeMap::new();
        for (n, _, u) in live.values() {
            if *n == p.node {
                used.cpu += u.cpu;
                used.mem += u.mem;
                used.eph += u.eph;
                used.gpu += u.gpu;
                if u.gpu > 0 && u.devices.len() as u32 != u.gpu.div_ceil(1000) {
                    return Err(format!(
                        "{ctx}: {} milli-GPUs on devices {:?}",
                        u.gpu, u.devices
                    ));
                }
                for d in &u.devices {
                    *per_device.entry(*d).or_default() += u.gpu.min(1000);
                }
            }
        }
        let gpus = node.spec.allocatable().gpu_count();
        if let Some((d, m)) = per_device.iter().find(|(d, m)| **d >= gpus || **m > 1000) {
            return Err(format!(
                "{ctx}: device {d} holds {m} milli-GPUs of {gpus} devices"
            ));
        }
        let a = node.spec.allocatable();
        if used.cpu > a.cpu.millis()
            || used.mem > a.memory.bytes()
            || used.eph > a.ephemeral_storage.map_or(0, |m| m.bytes())
            || used.gpu > a.gpu_count() * 1000
        {
            return Err(format!("{ctx}: capacity exceeded"));
        }
    }
    for (name, (total, placed)) in per_workload {
        if workloads[name].spec.gang.is_some() && placed != 0 && placed != total {
            return Err(format!("gang {name}: {placed} of {total} placed"));
        }
        // Preemption never leaves a gang partly placed either.
        let alive = live.keys().filter(|(w, _)| w == name).count();
        if workloads[name].spec.gang.is_some() && alive != 0 && alive != total {
            return Err(format!(
                "gang {name}: {alive} of {total} left after preemption"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn no_decision_breaks_a_hard_rule(input in arb_input()) {
        let decisions = run(&input);
        if let Err(e) = check(&input, &decisions) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn same_input_same_output(input in arb_input()) {
        let a = serde_json::to_string(&run(&input)).unwrap();
        let b = serde_json::to_string(&run(&input)).unwrap();
        prop_assert_eq!(a, b);
        // The order nodes and sites are listed in does not matter either.
        let mut shuffled = input.clone();
        shuffled.nodes.reverse();
        shuffled.sites.reverse();
        let c = serde_json::to_string(&run(&shuffled)).unwrap();
        let a = serde_json::to_string(&run(&input)).unwrap();
        prop_assert_eq!(a, c);
    }

    #[test]
    fn explain_counts_add_up(input in arb_input()) {
        let fleet = Fleet::new(&input.sites, &input.nodes).unwrap();
        for w in input.batches.iter().flatten() {
            let x = placement::explain(&fleet, w, None, &Options::default()).unwrap();
            let sum: u32 = x.rejections.iter().map(|r| r.nodes).sum();
            prop_assert_eq!(sum + x.passed, input.nodes.len() as u32, "{}", x.render());
            let reasons: BTreeSet<_> = x.rejections.iter().map(|r| (r.reason, r.message.clone())).collect();
            prop_assert_eq!(reasons.len(), x.rejections.len(), "one line per reason");
        }
    }
}
