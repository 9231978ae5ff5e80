//! Imported VMs as `VirtualMachine` objects, and what a re-import changes.
//!
//! The object name is a pure function of the source UUID ([`api::migrate::vm_object_name`]),
//! so importing the same export twice finds the same objects: unchanged ones are left
//! alone, changed ones are replaced (guarded by their `resourceVersion`, keeping their
//! status), new ones are created.

use std::collections::BTreeMap;

use api::ObjectMeta;
use api::migrate::{SOURCE_LABEL, UUID_LABEL, VirtualMachine, VirtualMachineSpec, vm_object_name};
use serde_json::Value;

/// The object for an imported VM in `project`.
pub fn to_object(vm: &VirtualMachineSpec, project: &str) -> VirtualMachine {
    let mut meta = ObjectMeta::namespaced(project, vm_object_name(&vm.uuid));
    let mut labels = BTreeMap::new();
    let uuid = vm.uuid.to_ascii_lowercase();
    if is_label_value(&uuid) {
        labels.insert(UUID_LABEL.to_string(), uuid);
    }
    if is_label_value(&vm.source.kind) {
        labels.insert(SOURCE_LABEL.to_string(), vm.source.kind.clone());
    }
    meta.labels = labels;
    VirtualMachine::new(meta, vm.clone())
}

/// A Kubernetes label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// What writing `desired` over what the server holds takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Not there yet: create it.
    Create(Value),
    /// There with other facts: replace it (the value carries the stored
    /// `resourceVersion` and status).
    Update(Value),
    /// There with the same facts and labels.
    Unchanged,
}

/// Compares the desired object with the stored one (`None`: absent).
pub fn change(desired: &VirtualMachine, stored: Option<&Value>) -> Change {
    // Through text, as the server reads it: a float compares as the server stores it.
    let text = serde_json::to_string(desired).expect("a VirtualMachine serializes");
    let mut value: Value = serde_json::from_str(&text).expect("JSON it wrote reads back");
    let Some(stored) = stored else {
        return Change::Create(value);
    };
    let same_spec = stored.get("spec") == value.get("spec");
    let stored_labels = stored.pointer("/metadata/labels").cloned();
    let labels_present = desired.metadata.labels.iter().all(|(k, v)| {
        stored_labels
            .as_ref()
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            == Some(v.as_str())
    });
    if same_spec && labels_present {
        return Change::Unchanged;
    }
    // Keep what others wrote: other labels, annotations, status.
    let mut labels = stored_labels
        .and_then(|l| l.as_object().cloned())
        .unwrap_or_default();
    for (k, v) in &desired.metadata.labels {
        labels.insert(k.clone(), Value::String(v.clone()));
    }
    value["metadata"] = stored["metadata"].clone();
    value["metadata"]["labels"] = Value::Object(labels);
    if let Some(status) = stored.get("status") {
        value["status"] = status.clone();
    }
    Change::Update(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm() -> VirtualMachineSpec {
        VirtualMachineSpec {
            uuid: "4210C3E5-1B2F-4A3D-9E8F-0123456789AB".into(),
            name: "web-01".into(),
            source: api::migrate::VmSource {
                kind: "rvtools".into(),
                ..Default::default()
            },
            cpus: 2,
            memory_mib: 1024,
            ..Default::default()
        }
    }

    #[test]
    fn reimport_is_idempotent() {
        let desired = to_object(&vm(), "finance");
        assert_eq!(
            desired.metadata.name,
            "vm-4210c3e5-1b2f-4a3d-9e8f-0123456789ab"
        );
        api::validate::object_from_value(serde_json::to_value(&desired).unwrap()).unwrap();
        let Change::Create(created) = change(&desired, None) else {
            panic!()
        };
        let mut stored = created;
        stored["metadata"]["resourceVersion"] = json!("7");
        stored["metadata"]["labels"]["owner"] = json!("ops");
        stored["status"] = json!({"phase": "Imported"});
        assert_eq!(change(&desired, Some(&stored)), Change::Unchanged);

        let mut grown = vm();
        grown.cpus = 4;
        let Change::Update(update) = change(&to_object(&grown, "finance"), Some(&stored)) else {
            panic!()
        };
        assert_eq!(update["metadata"]["resourceVersion"], "7");
        assert_eq!(update["metadata"]["labels"]["owner"], "ops");
        assert_eq!(update["spec"]["cpus"], 4);
        assert_eq!(update["status"]["phase"], "Imported");
    }
}
