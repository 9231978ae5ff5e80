//! Objects tests start from: the repository's example estate and allocations stored as the
//! scheduler would store them.

use std::path::PathBuf;

use client::Client;
use server::AppState;

/// A kind by any name a user may type (`wl`, `workloads`, `Workload`); panics if unknown.
pub fn kind(name: &str) -> &'static api::KindInfo {
    api::lookup_kind(name).unwrap_or_else(|| panic!("no kind {name:?}"))
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Applies the example estate (`api::examples`): projects, then secrets, sites, nodes,
/// workloads.
pub async fn load_examples(c: &Client) {
    let mut manifests = Vec::new();
    for (file, text) in api::examples::FILES {
        manifests.extend(api::parse_manifests(file, text).expect("examples parse"));
    }
    let rank = |k: &str| {
        ["Project", "Secret", "Site", "Node", "Queue", "Workload"]
            .iter()
            .position(|x| *x == k)
    };
    manifests.sort_by_key(|m| rank(m.object.kind_info().kind));
    for m in manifests {
        let info = m.object.kind_info();
        let ns = info
            .namespaced()
            .then(|| m.object.namespace().unwrap_or("default").to_owned());
        c.apply(info, ns.as_deref(), &m.object.to_value(), false)
            .await
            .expect("apply");
        if info == api::kinds::NODE {
            mark_ready(c, m.object.name()).await;
        }
    }
}

/// Reports a node `Ready`, as its agent would on joining (the scheduler places nothing
/// on a node whose agent never reported). No lease is held, so it stays `Ready`.
pub async fn mark_ready(c: &Client, node: &str) {
    let mut n = c
        .get(api::kinds::NODE, None, node)
        .await
        .expect("the node exists");
    n["status"]["phase"] = serde_json::json!("Ready");
    c.replace_status(api::kinds::NODE, None, node, &n)
        .await
        .expect("node status");
}

/// Stores an Allocation as the scheduler would (the API refuses allocations written by
/// hand): for tests that need one on a given node without running a placement pass.
pub async fn seed_allocation(state: &AppState, value: &serde_json::Value) {
    use server::registry::{Mutation, Registry, encode, object_key};
    let info = api::kinds::ALLOCATION;
    let ns = value["metadata"]["namespace"].as_str().expect("namespace");
    let name = value["metadata"]["name"].as_str().expect("name");
    let mut value = value.clone();
    value["metadata"]["uid"] = serde_json::json!(format!("uid-{name}"));
    let value = api::validate::object_from_value_as(info, value)
        .expect("a valid allocation")
        .to_value();
    let key = object_key(info, Some(ns), name);
    let bytes = encode(&value);
    let audit = Registry::audit_record(
        &server::scheduler::principal(),
        "create",
        info,
        Some(ns),
        name,
        Some(&bytes),
    );
    let resp = state
        .registry
        .commit(Mutation::new(
            vec![store::Compare::Absent(key.clone())],
            vec![store::Op::put(key, bytes)],
            audit,
        ))
        .await
        .expect("commit");
    assert!(resp.succeeded, "allocation {name} exists already");
}
