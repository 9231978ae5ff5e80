//! What a node credential may write on its own Node: Meridian's equivalent of Kubernetes'
//! NodeRestriction admission plugin.
//!
//! An agent reports what it observes about its host (OS, architecture, capacity, drivers,
//! security facts, heartbeats). It never decides what placement trusts to keep work where
//! it is allowed: the site (from the join token, so the residency promise holds even
//! against a node credential that lies), labels and annotations (selectors and admins'
//! bookkeeping), taints and cordoning (an admin's way to keep work away). So:
//!
//! - creating its Node (registration, once): `spec.site` must be the join token's site,
//!   `spec.unschedulable` must be false, and no label may use the
//!   [`RESTRICTED_LABEL_PREFIX`], which only admins set, so selectors on it can be trusted;
//!   taints may be set (they only keep work away);
//! - updating its Node: `spec.site`, `spec.zone`, `spec.taints`, `spec.unschedulable`,
//!   labels and annotations stay as they are; the facts may change, and validation keeps
//!   `allocatable` within `capacity`.
//!
//! Events ([`check_event`]): a node records events only about allocations on its own
//! node, through the recorder, with `source.host` set by the server to its name.
//!
//! Capacity is a reported fact the server cannot check against the hardware. A node that
//! overstates it attracts work only within its own site, so residency holds; an admin who
//! distrusts a node cordons or taints it, which the node cannot undo.

use serde_json::Value;

use api::event::{GLOBAL_EVENTS_PROJECT, ObjectReference};
use api::kinds::ALLOCATION;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::registry::{self, object_key};

/// Labels under this prefix are set by admins only; a node credential can neither set
/// nor change them, so placement rules may rely on them (`node-restriction.kubernetes.io/`
/// in Kubernetes).
pub const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.meridian.dev/";

/// Fields a node credential never changes once its Node exists, as JSON pointers.
const ADMIN_FIELDS: [(&str, &str); 6] = [
    ("/spec/site", "spec.site"),
    ("/spec/zone", "spec.zone"),
    ("/spec/taints", "spec.taints"),
    ("/spec/unschedulable", "spec.unschedulable"),
    ("/metadata/labels", "metadata.labels"),
    ("/metadata/annotations", "metadata.annotations"),
];

/// Check a write of a Node by `who` (`old`: the stored Node, `None` on creation; `new`: the
/// validated object about to be stored). Other principals and kinds pass unchecked.
pub fn check(who: &Principal, old: Option<&Value>, new: &Value) -> ApiResult<()> {
    if who.role != Role::Node || new.get("kind").and_then(Value::as_str) != Some("Node") {
        return Ok(());
    }
    let node = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let refuse = |field: &str, why: &str| {
        ApiError::forbidden(format!(
            "nodes is forbidden: node credential {id} cannot set {field} of node {node:?}: {why}",
            id = who.id
        ))
    };
    let site = new.pointer("/spec/site").and_then(Value::as_str);
    match (&who.site, old) {
        (Some(bound), _) if site != Some(bound.as_str()) => {
            return Err(refuse(
                "spec.site",
                &format!(
                    "the node joined site {bound:?} with its join token; only an admin moves a node \
                     to another site (or the host joins again with a token for that site)"
                ),
            ));
        }
        (None, None) => {
            return Err(refuse(
                "spec.site",
                "this credential predates site-bound credentials; join again with a join token \
                 for the node's site",
            ));
        }
        _ => {}
    }
    match old {
        None => {
            if new.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                return Err(refuse(
                    "spec.unschedulable",
                    "cordoning is an admin's decision (meridian cordon)",
                ));
            }
            let restricted = new
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .and_then(|labels| {
                    labels
                        .keys()
                        .find(|k| k.starts_with(RESTRICTED_LABEL_PREFIX))
                });
            if let Some(label) = restricted {
                return Err(refuse(
                    &format!("metadata.labels[{label:?}]"),
                    &format!("labels under {RESTRICTED_LABEL_PREFIX} are set by admins only"),
                ));
            }
        }
        Some(old) => {
            for (pointer, field) in ADMIN_FIELDS {
                if !same(old.pointer(pointer), new.pointer(pointer)) {
                    return Err(refuse(
                        field,
                        "an agent reports facts and status; site, zone, labels, annotations, \
                         taints and cordoning are an admin's (meridian label/annotate/cordon, \
                         or edit the Node with an admin token)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Equal, counting an absent field, `null`, an empty list or map and `false` as the same.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn empty(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null | Value::Bool(false)) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        }
    }
    a == b || (empty(a) && empty(b))
}

/// What a node credential may record an event about (`POST /meridian/v1/events`): an
/// allocation on its own node. Returns the reference as the store has it (namespace and
/// uid derived, not believed); 403 otherwise, also when the allocation does not exist,
/// so a node learns nothing of other nodes' work.
pub async fn check_event(
    state: &AppState,
    who: &Principal,
    node: &str,
    involved: &ObjectReference,
) -> ApiResult<ObjectReference> {
    let forbidden = || {
        ApiError::forbidden(format!(
            "events is forbidden: node credential {id} of node {node:?} may record events only \
             about allocations on its node, not about {kind} {name:?}",
            id = who.id,
            kind = involved.kind,
            name = involved.name,
        ))
    };
    if involved.kind != ALLOCATION.kind || node.is_empty() {
        return Err(forbidden());
    }
    let ns = involved
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(GLOBAL_EVENTS_PROJECT);
    let (kv, _) = state
        .store()
        .get(&object_key(ALLOCATION, Some(ns), &involved.name))
        .await?;
    let Some(kv) = kv else {
        return Err(forbidden());
    };
    let allocation: Value = registry::decode(&kv)?;
    if allocation.pointer("/spec/node").and_then(Value::as_str) != Some(node) {
        return Err(forbidden());
    }
    ObjectReference::of_value(&allocation).ok_or_else(forbidden)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node_credential(site: Option<&str>) -> Principal {
        Principal {
            id: "n1".into(),
            role: Role::Node,
            project: None,
            node: Some("fra-01".into()),
            site: site.map(str::to_owned),
        }
    }

    fn node(site: &str) -> Value {
        json!({
            "kind": "Node",
            "metadata": {"name": "fra-01", "labels": {"rack": "a"}},
            "spec": {"site": site, "capacity": {"cpu": "4", "memory": "8Gi"}},
        })
    }

    #[test]
    fn registration_is_in_the_join_tokens_site() {
        let who = node_credential(Some("onprem-frankfurt"));
        assert!(check(&who, None, &node("onprem-frankfurt")).is_ok());
        let e = check(&who, None, &node("onprem-zurich")).expect_err("other site");
        assert_eq!(e.code.as_u16(), 403);
        assert!(e.message.contains("spec.site"), "{}", e.message);
        let unbound = node_credential(None);
        assert!(check(&unbound, None, &node("onprem-frankfurt")).is_err());
    }

    #[test]
    fn registration_cannot_cordon_or_use_restricted_labels() {
        let who = node_credential(Some("onprem-frankfurt"));
        let mut n = node("onprem-frankfurt");
        n["metadata"]["labels"]["node-restriction.meridian.dev/tier"] = json!("secure");
        let e = check(&who, None, &n).expect_err("restricted label");
        assert!(e.message.contains("node-restriction"), "{}", e.message);
        let mut n = node("onprem-frankfurt");
        n["spec"]["unschedulable"] = json!(true);
        assert!(check(&who, None, &n).is_err());
        let mut n = node("onprem-frankfurt");
        n["spec"]["taints"] = json!([{"key": "gpu", "effect": "NoSchedule"}]);
        assert!(check(&who, None, &n).is_ok(), "taints only keep work away");
    }

    #[test]
    fn updates_change_facts_only() {
        let who = node_credential(Some("onprem-frankfurt"));
        let old = node("onprem-frankfurt");
        let mut facts = old.clone();
        facts["spec"]["capacity"]["cpu"] = json!("8");
        assert!(check(&who, Some(&old), &facts).is_ok());
        for (pointer, value) in [
            ("/spec/taints", json!([])),
            ("/spec/unschedulable", json!(false)),
        ] {
            let mut same_meaning = old.clone();
            *same_meaning.pointer_mut("/spec").expect("spec") = {
                let mut spec = old["spec"].clone();
                spec[pointer.trim_start_matches("/spec/")] = value;
                spec
            };
            assert!(check(&who, Some(&old), &same_meaning).is_ok(), "{pointer}");
        }
        let mut relabel = old.clone();
        relabel["metadata"]["labels"]["rack"] = json!("b");
        assert!(check(&who, Some(&old), &relabel).is_err());
        let mut untaint = old.clone();
        untaint["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
        assert!(
            check(&who, Some(&untaint), &old).is_err(),
            "removing a taint"
        );
        let mut uncordon = old.clone();
        uncordon["spec"]["unschedulable"] = json!(true);
        assert!(check(&who, Some(&uncordon), &old).is_err(), "uncordoning");
    }

    #[test]
    fn other_principals_are_not_restricted() {
        let admin = Principal::system();
        assert!(check(&admin, None, &node("anywhere")).is_ok());
    }
}
