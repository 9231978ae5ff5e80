//! The finding store: dedupe, first/last seen, resolution, failures, deletions, removed
//! policies, bounds.

use std::sync::Arc;

use api::kinds::{Control, Enforcement};
use jiff::Timestamp;
use policy::{AuditOptions, FindingStore, ObjectRef, ObjectResult, StoreLimits, Violation, audit};
use proptest::prelude::*;

use crate::support::*;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + s).unwrap()
}

fn obj(name: &str) -> ObjectRef {
    ObjectRef {
        kind: "Workload",
        namespace: Some(Arc::from("finance")),
        name: Arc::from(name),
        uid: Some(Arc::from(format!("uid-{name}"))),
    }
}

fn v(policy: &str, message: &str) -> Violation {
    Violation {
        policy: Arc::from(policy),
        enforcement: Enforcement::Audit,
        message: message.into(),
        field: Some("spec.x".into()),
        controls: Arc::from([Control {
            framework: "GDPR".into(),
            id: "Art.44".into(),
        }]),
    }
}

fn result(object: ObjectRef, violations: Vec<Violation>) -> ObjectResult {
    ObjectResult {
        object,
        violations,
        failed: vec![],
        evaluated: 2,
    }
}

#[test]
fn dedupes_and_moves_last_seen() {
    let mut s = FindingStore::default();
    s.record(
        &result(obj("a"), vec![v("p", "m"), v("p", "m"), v("q", "m")]),
        t(0),
    );
    assert_eq!(s.len(), 2);
    s.record(&result(obj("a"), vec![v("p", "m"), v("q", "m")]), t(60));
    let f = s.findings();
    assert_eq!(f.len(), 2);
    assert!(
        f.iter()
            .all(|f| f.first_seen == t(0) && f.last_seen == t(60))
    );
    assert_eq!(f[0].controls[0].id, "Art.44");
    assert_eq!(f[0].field.as_deref(), Some("spec.x"));
}

#[test]
fn resolved_findings_go_and_failed_policies_keep_theirs() {
    let mut s = FindingStore::default();
    s.record(&result(obj("a"), vec![v("p", "m1"), v("q", "m2")]), t(0));
    // q failed this time: its finding stays; p no longer fires: resolved.
    let mut r = result(obj("a"), vec![]);
    r.failed = vec![Arc::from("q")];
    s.record(&r, t(10));
    let f = s.findings();
    assert_eq!(f.len(), 1);
    assert_eq!((&*f[0].policy, f[0].last_seen), ("q", t(0)));
    // Nothing fires any more: the object is gone from the store.
    s.record(&result(obj("a"), vec![]), t(20));
    assert!(s.is_empty());
    assert_eq!(s.object_count(), 0);
}

#[test]
fn new_message_is_a_new_finding() {
    let mut s = FindingStore::default();
    s.record(&result(obj("a"), vec![v("p", "patched 31 days ago")]), t(0));
    s.record(
        &result(obj("a"), vec![v("p", "patched 32 days ago")]),
        t(86400),
    );
    let f = s.findings();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].first_seen, t(86400));
}

#[test]
fn scoped_records_touch_only_their_policies() {
    let mut s = FindingStore::default();
    s.record(&result(obj("a"), vec![v("p", "m"), v("q", "m")]), t(0));
    // Only q was re-evaluated (it changed) and no longer fires.
    s.record_for_policies(&result(obj("a"), vec![]), &["q"], t(5));
    let f = s.findings();
    assert_eq!(f.iter().map(|f| &*f.policy).collect::<Vec<_>>(), ["p"]);
    assert_eq!(f[0].last_seen, t(0));
}

#[test]
fn deleted_objects_recreated_objects_and_removed_policies() {
    let mut s = FindingStore::default();
    s.record(&result(obj("a"), vec![v("p", "m"), v("q", "m")]), t(0));
    s.record(&result(obj("b"), vec![v("p", "m")]), t(0));
    assert_eq!(s.len(), 3);

    s.remove_object("Workload", Some("finance"), "b");
    assert_eq!(s.len(), 2);

    // Same name, new uid: history starts over.
    let mut again = obj("a");
    again.uid = Some(Arc::from("uid-a-2"));
    s.record(&result(again, vec![v("p", "m")]), t(30));
    let f = s.findings();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].first_seen, t(30));
    assert_eq!(f[0].object.uid.as_deref(), Some("uid-a-2"));

    s.record(&result(obj("c"), vec![v("q", "m")]), t(40));
    s.remove_policy("p");
    assert_eq!(
        s.findings().iter().map(|f| &*f.policy).collect::<Vec<_>>(),
        ["q"]
    );
    assert_eq!(s.len(), 1);
}

#[test]
fn hard_caps_count_what_is_dropped() {
    let mut s = FindingStore::new(StoreLimits {
        max_findings: 5,
        max_per_object_policy: 2,
    });
    s.record(
        &result(obj("a"), vec![v("p", "1"), v("p", "2"), v("p", "3")]),
        t(0),
    );
    assert_eq!((s.len(), s.dropped()), (2, 1));
    s.record(&result(obj("b"), vec![v("p", "1"), v("q", "1")]), t(0));
    s.record(&result(obj("c"), vec![v("p", "1"), v("q", "1")]), t(0));
    assert_eq!((s.len(), s.dropped()), (5, 2));
    // Known findings are kept before new ones when the store is full.
    s.record(
        &result(obj("a"), vec![v("p", "new"), v("p", "1"), v("p", "2")]),
        t(10),
    );
    assert_eq!((s.len(), s.dropped()), (5, 3));
    let a: Vec<String> = s
        .findings()
        .into_iter()
        .filter(|f| &*f.object.name == "a")
        .map(|f| f.message)
        .collect();
    assert_eq!(a, ["1", "2"]);
    assert!(s.approx_heap_bytes() > 0);
}

#[test]
fn full_runs_forget_deleted_objects_and_removed_policies() {
    let packs: Vec<_> = policy::packs()
        .into_iter()
        .flat_map(|p| p.policies)
        .collect();
    let set = policy::PolicySet::new(packs.iter().map(compile));
    let mut objects = examples();
    let fleet = policy::FleetContext::from_objects(&objects);
    let mut s = FindingStore::default();
    let run = audit(&objects, &set, &fleet, AuditOptions::default());
    s.apply_full(&run, &set, t(0));
    let nodes = count_kind("Node") as usize;
    assert_eq!(
        s.len(),
        nodes * 4,
        "every example node: 4 baseline findings"
    );

    // A node is deleted; the owner-label policy is uninstalled.
    objects.retain(|o| o["metadata"]["name"] != "fra-gpu-01");
    let set = set.without_policy("baseline-owner-label");
    let run = audit(&objects, &set, &fleet, AuditOptions::default());
    s.apply_full(&run, &set, t(60));
    assert_eq!(s.len(), (nodes - 1) * 3);
    assert!(
        s.findings()
            .iter()
            .all(|f| f.first_seen == t(0) && f.last_seen == t(60))
    );
}

#[test]
fn memory_per_finding_is_reported() {
    // A test-friendly figure for BENCHMARKS.md: findings of 10,000 nodes.
    let mut s = FindingStore::default();
    for i in 0..10_000 {
        let mut o = obj(&format!("node-{i:05}"));
        o.kind = "Node";
        o.namespace = None;
        s.record(
            &result(o, vec![v("baseline-owner-label", &format!("node node-{i:05} has no owner label: set metadata.labels.owner to the team accountable for it"))]),
            t(0),
        );
    }
    let per = s.approx_heap_bytes() / s.len();
    eprintln!("finding store: {} findings, ~{} bytes each", s.len(), per);
    assert!(per < 1024, "{per}");
}

proptest! {
    #[test]
    fn store_len_and_bounds_hold(ops in proptest::collection::vec((0usize..6, 0usize..4, 0usize..4, any::<bool>()), 1..60)) {
        let limits = StoreLimits { max_findings: 10, max_per_object_policy: 2 };
        let mut s = FindingStore::new(limits);
        for (step, (object, policies, messages, delete)) in ops.into_iter().enumerate() {
            let name = format!("o{object}");
            if delete {
                s.remove_object("Workload", Some("finance"), &name);
            } else {
                let vs = (0..policies)
                    .flat_map(|p| (0..messages).map(move |m| v(&format!("p{p}"), &format!("m{m}"))))
                    .collect();
                s.record(&result(obj(&name), vs), t(step as i64));
            }
            let all = s.findings();
            prop_assert_eq!(all.len(), s.len());
            prop_assert!(s.len() <= limits.max_findings);
            for f in &all {
                prop_assert!(f.first_seen <= f.last_seen);
                let same = all.iter().filter(|g| g.object == f.object && g.policy == f.policy).count();
                prop_assert!(same <= limits.max_per_object_policy);
            }
        }
    }
}
