//! Audit throughput, admission latency and finding-store memory, printed as a table:
//! `cargo bench -p policy --bench throughput [-- OBJECTS] [--corpus FILE]` (default
//! 100,000 objects against 20 policies: the 12 pack policies and 8 renamed copies).
//!
//! `--corpus FILE` also audits the first 10,000 objects on one thread and writes them,
//! the policies, the prelude, the fleet context and the figures to FILE, for
//! `scripts/policy-compare.py` to evaluate the same work with another Rego
//! implementation (scripts/bench-policy runs both).

// A benchmark: it reads the clock and writes its results, which the crate's clippy.toml forbids in `policy` itself.
#![allow(clippy::disallowed_methods)]

use std::num::NonZeroUsize;
use std::time::Instant;

use api::kinds::Enforcement;
use jiff::Timestamp;
use policy::{
    Actor, AdmissionRequest, AuditOptions, CompileOptions, CompiledPolicy, FindingStore,
    FleetContext, Operation, PolicySet, audit, packs,
};
use serde_json::{Value, json};

fn estate() -> Vec<Value> {
    let mut out = Vec::new();
    for (file, text) in api::examples::FILES {
        for m in api::parse_manifests(file, text).expect("examples parse") {
            out.push(m.object.to_value());
        }
    }
    out
}

fn objects(n: usize, base: &[Value]) -> Vec<Value> {
    let nodes: Vec<&Value> = base
        .iter()
        .filter(|o| o["kind"] == api::kinds::NODE.kind)
        .collect();
    let workloads: Vec<&Value> = base
        .iter()
        .filter(|o| o["kind"] == api::kinds::WORKLOAD.kind)
        .collect();
    (0..n)
        .map(|i| {
            let mut o = if i % 2 == 0 {
                let mut o = nodes[i % nodes.len()].clone();
                o["status"] = json!({"phase": "Ready", "security": {
                    "diskEncryption": i % 7 != 0, "secureBoot": i % 11 != 0, "patchAgeDays": i % 45}});
                if i % 3 == 0 {
                    o["metadata"]["labels"]["owner"] = json!("platform");
                }
                o
            } else {
                workloads[i % workloads.len()].clone()
            };
            o["metadata"]["name"] = json!(format!("obj-{i:06}"));
            o["metadata"]["uid"] = json!(format!("uid-{i:06}"));
            o
        })
        .collect()
}

fn twenty_policies() -> PolicySet {
    let mut policies: Vec<api::Policy> = packs().into_iter().flat_map(|p| p.policies).collect();
    let copies: Vec<api::Policy> = policies
        .iter()
        .take(8)
        .map(|p| {
            let mut c = p.clone();
            c.metadata.name = format!("{}-copy", p.metadata.name);
            c
        })
        .collect();
    policies.extend(copies);
    PolicySet::new(policies.iter().map(|p| {
        CompiledPolicy::compile(p, CompileOptions::default()).expect("pack policies compile")
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let corpus_path = args
        .iter()
        .position(|a| a == "--corpus")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let base = estate();
    let fleet = FleetContext::from_objects(&base);
    let compile_start = Instant::now();
    let set = twenty_policies();
    let compile_ms = compile_start.elapsed().as_secs_f64() * 1000.0;
    // Compiling again measures the steady state (the first includes one-time set-up).
    let compile_start = Instant::now();
    for _ in 0..10 {
        let _ = twenty_policies();
    }
    println!(
        "compile 20 policies: first {compile_ms:.1} ms, then {:.1} ms per set (mean of 10)",
        compile_start.elapsed().as_secs_f64() * 100.0
    );
    let objects = objects(n, &base);
    println!("{n} objects, {} policies", set.len());
    per_policy(&set, &fleet, &base);
    println!(
        "{:<28} {:>12} {:>14} {:>16}",
        "run", "seconds", "evaluations", "evaluations/s"
    );
    let mut last = None;
    for threads in [1, 2] {
        let options = AuditOptions {
            threads: NonZeroUsize::new(threads).unwrap(),
            ..AuditOptions::default()
        };
        let start = Instant::now();
        let run = audit(&objects, &set, &fleet, options);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<28} {:>12.3} {:>14} {:>16.0}",
            format!("audit, {threads} thread(s)"),
            secs,
            run.evaluations,
            run.evaluations as f64 / secs
        );
        last = Some(run);
    }
    let run = last.unwrap();
    if let Some(path) = corpus_path {
        write_corpus(
            &path,
            &set,
            &fleet,
            &base,
            &objects[..objects.len().min(10_000)],
        );
    }
    let mut store = FindingStore::default();
    store.apply_full(&run, &set, Timestamp::UNIX_EPOCH);
    println!(
        "findings: {} on {} objects, ~{} MiB held (~{} bytes per finding)",
        store.len(),
        store.object_count(),
        store.approx_heap_bytes() / (1 << 20),
        store.approx_heap_bytes() / store.len().max(1)
    );

    // Admission latency of one workload against the 20 policies.
    let w = base
        .iter()
        .find(|o| o["metadata"]["name"] == "payroll-api")
        .unwrap();
    let actor = Actor {
        id: "bench".into(),
        role: "admin".into(),
        project: None,
    };
    let mut lat: Vec<f64> = (0..5_000)
        .map(|_| {
            let start = Instant::now();
            let r = set.admit(&AdmissionRequest {
                operation: Operation::Create,
                object: Some(w),
                old_object: None,
                actor: Some(&actor),
                fleet: &fleet,
                workload: None,
            });
            assert!(r.allowed() || r.denied.iter().all(|v| v.enforcement == Enforcement::Deny));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "admission of a Workload ({} policies apply): p50 {:.0} µs, p99 {:.0} µs",
        set.iter()
            .filter(
                |p| p.matches("Workload", Some("finance")) && p.enforcement() != Enforcement::Audit
            )
            .count(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}

/// Microseconds per evaluation of each policy on a representative object of its kind.
fn per_policy(set: &PolicySet, fleet: &FleetContext, base: &[Value]) {
    let node = base
        .iter()
        .find(|o| o["kind"] == api::kinds::NODE.kind)
        .unwrap();
    let workload = base
        .iter()
        .find(|o| o["metadata"]["name"] == "payroll-api")
        .unwrap();
    println!(
        "{:<44} {:>18} {:>12}",
        "policy", "interpreter µs/eval", "VM µs/eval"
    );
    for p in set.iter().filter(|p| !p.name().ends_with("-copy")) {
        let object = if p.matches("Node", None) {
            node
        } else {
            workload
        };
        let input = policy::to_rego(&json!({"operation": "AUDIT", "object": object}));
        let _ = fleet;
        let rounds = 2_000;
        let time = |f: &dyn Fn()| {
            let start = Instant::now();
            for _ in 0..rounds {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / rounds as f64
        };
        let interpreted = time(&|| {
            p.evaluate(&input).unwrap();
        });
        let vm = time(&|| {
            p.evaluate_audit(&input).unwrap();
        });
        println!("{:<44} {:>18.1} {:>12.1}", p.name(), interpreted, vm);
    }
}

/// Audits `objects` on one thread and writes what another Rego engine needs to do the
/// same work, with the figures, as JSON.
fn write_corpus(
    path: &str,
    set: &PolicySet,
    fleet: &FleetContext,
    base: &[Value],
    objects: &[Value],
) {
    let options = AuditOptions::default();
    let start = Instant::now();
    let run = audit(objects, set, fleet, options);
    let secs = start.elapsed().as_secs_f64();
    let violations: usize = run.results.iter().map(|r| r.violations.len()).sum();
    let vm = set.iter().filter(|p| p.compiled_to_vm()).count();
    let mut sites = serde_json::Map::new();
    let mut projects = serde_json::Map::new();
    let mut node_sites = serde_json::Map::new();
    for o in base {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match o["kind"].as_str() {
            Some("Site") => {
                sites.insert(name, o["spec"].clone());
            }
            Some("Project") => {
                projects.insert(name, o["spec"].clone());
            }
            Some("Node") => {
                node_sites.insert(name, o["spec"]["site"].clone());
            }
            _ => {}
        }
    }
    let policies: Vec<Value> = set
        .iter()
        .map(|p| {
            json!({
                "name": p.name(),
                "module": p.policy().spec.rego,
                "rules": p.rules(),
                "kinds": p.kinds(),
                "projects": p.projects(),
                "parameters": p.policy().spec.parameters,
            })
        })
        .collect();
    let corpus = json!({
        "prelude": {"path": policy::PRELUDE_PATH, "source": policy::prelude_source()},
        "data": policy::prelude_data_json(),
        "policies": policies,
        "fleet": {"sites": sites, "projects": projects, "nodeSites": node_sites},
        "objects": objects,
        "rust": {
            "engine": policy::REGO_ENGINE,
            "policiesOnVm": vm,
            "threads": 1,
            "evaluations": run.evaluations,
            "violations": violations,
            "seconds": secs,
            "evaluationsPerSecond": (run.evaluations as f64 / secs).round(),
        },
    });
    std::fs::write(path, serde_json::to_vec(&corpus).expect("json")).expect("write corpus");
    println!(
        "corpus: {} objects, {} evaluations ({violations} violations) in {secs:.3} s on 1 thread -> {path}",
        objects.len(),
        run.evaluations
    );
}
