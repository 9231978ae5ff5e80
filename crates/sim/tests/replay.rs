//! The trace replay on a trimmed copy of the Alibaba GPU trace (`testdata/openb`, see its
//! README for the citation): every policy runs, no gang is left partly placed, and the
//! figures are sane.

use sim::replay::{Policy, ReplayOptions, replay};
use sim::trace::{parse_nodes, parse_tasks};

const NODES: &str = include_str!("../testdata/openb/nodes.csv");
const PODS: &str = include_str!("../testdata/openb/pods.csv");

#[test]
fn a_trimmed_trace_replays_under_every_policy() {
    let nodes = parse_nodes("nodes.csv", NODES).unwrap();
    let tasks = parse_tasks("pods.csv", PODS).unwrap();
    assert_eq!((nodes.len(), tasks.len()), (55, 300));
    let (summary, reports) = replay(&nodes, &tasks, &ReplayOptions::default()).unwrap();
    assert_eq!(summary.gpus, 233);
    assert!(summary.shared_gpu_tasks > 0, "the trace has shared GPUs");
    assert_eq!(reports.len(), 3);
    for r in &reports {
        let x = &r.replay;
        let name = r.policy.name();
        assert_eq!(x.partial_gangs, 0, "{name}");
        assert_eq!(x.preemptions, 0, "{name}: one priority, nothing to preempt");
        assert_eq!(
            x.started + x.never_started,
            x.tasks,
            "{name}: every task accounted"
        );
        assert!(
            x.placed_on_arrival > 0 && x.placed_on_arrival <= x.started,
            "{name}"
        );
        assert!(
            x.peak_allocation > 0.0 && x.peak_allocation <= 1.0,
            "{name}"
        );
        assert_eq!(x.series.len(), 20, "{name}: a point every 5% of the demand");
        for p in &x.series {
            assert!((0.0..=1.0).contains(&p.allocation), "{name}: {p:?}");
        }
        if let Some(f) = &x.first_failure {
            assert!(
                f.unallocated_gpus >= 0.0 && f.unallocated_gpus <= 233.0,
                "{name}"
            );
        }
        let per_qos: usize = x.delay_by_qos.values().map(|d| d.tasks).sum();
        assert_eq!(per_qos, x.delay.tasks, "{name}");
        let inf = r.inflation.as_ref().expect("inflation ran");
        let f = inf
            .first_failure
            .as_ref()
            .expect("filling the cluster to its capacity fails at some point");
        assert!(f.allocation > 0.3 && f.allocation < 1.0, "{name}: {f:?}");
        assert!(
            (f.unallocated_gpus - 233.0 * (1.0 - f.allocation)).abs() < 1e-6,
            "{name}: {f:?}"
        );
        assert!(inf.final_allocation >= f.allocation, "{name}");
        // Admitted through one Meridian queue per QoS class: shares are measured against
        // each class's entitlement.
        assert!(inf.fairness.len() >= 2, "{name}: {:?}", inf.fairness);
        let entitled: f64 = inf.fairness.values().map(|s| s.entitled).sum();
        let held: f64 = inf.fairness.values().map(|s| s.held).sum();
        assert!((entitled - 1.0).abs() < 1e-9, "{name}: {entitled}");
        assert!((held - 1.0).abs() < 1e-9, "{name}: {held}");
        assert!(inf.max_deviation() < 0.5, "{name}: {:?}", inf.fairness);
    }
    // The same draws for every policy: as many tasks submitted.
    let submitted: Vec<usize> = reports
        .iter()
        .map(|r| r.inflation.as_ref().unwrap().submitted)
        .collect();
    assert!(
        submitted.iter().all(|s| *s == submitted[0]),
        "{submitted:?}"
    );
    assert_eq!(reports[0].policy, Policy::Fragmentation);
}

/// A queue plugged into the replay decides which waiting tasks may be tried: one that
/// holds every BE task back leaves them waiting, and a held task is not a failure.
#[test]
fn a_queue_hook_holds_tasks_back() {
    use sim::replay::{Queue, replay_with};
    use sim::trace::TraceTask;
    struct NoBestEffort;
    impl Queue for NoBestEffort {
        fn admit(&mut self, _now: u64, task: &TraceTask) -> bool {
            task.qos != "BE"
        }
    }
    let nodes = parse_nodes("nodes.csv", NODES).unwrap();
    let tasks = parse_tasks("pods.csv", PODS).unwrap();
    let be = tasks.iter().filter(|t| t.qos == "BE").count();
    assert!(be > 0);
    let opts = ReplayOptions {
        policies: vec![Policy::BestFit],
        inflation: false,
        ..ReplayOptions::default()
    };
    let (_, reports) = replay_with(&nodes, &tasks, &opts, &mut || Box::new(NoBestEffort)).unwrap();
    let x = &reports[0].replay;
    assert_eq!(x.never_started, be);
    assert!(!x.delay_by_qos.contains_key("BE"));
    assert!(x.first_failure.is_none(), "{:?}", x.first_failure);
}
