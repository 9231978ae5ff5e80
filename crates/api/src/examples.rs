//! The example manifests shipped in `examples/`, compiled in (no I/O), so the demo can load
//! them without a checkout and the tests can prove that every one parses and validates.

/// `(file name, contents)` of every example, in the order to apply them.
pub const FILES: &[(&str, &str)] = &[
    (
        "projects.yaml",
        include_str!("../../../examples/projects.yaml"),
    ),
    (
        "work-queues.yaml",
        include_str!("../../../examples/work-queues.yaml"),
    ),
    (
        "secrets.yaml",
        include_str!("../../../examples/secrets.yaml"),
    ),
    ("sites.yaml", include_str!("../../../examples/sites.yaml")),
    ("nodes.yaml", include_str!("../../../examples/nodes.yaml")),
    (
        "workloads.yaml",
        include_str!("../../../examples/workloads.yaml"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_manifests;

    #[test]
    fn every_example_parses_and_validates() {
        let mut kinds = std::collections::BTreeSet::new();
        for (file, text) in FILES {
            let manifests = parse_manifests(file, text).unwrap_or_else(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                panic!("{file}:\n{}", lines.join("\n"))
            });
            assert!(!manifests.is_empty(), "{file} is empty");
            for m in manifests {
                kinds.insert(m.object.kind_info().kind);
            }
        }
        assert_eq!(
            kinds.len(),
            crate::KINDS.len() - 5,
            "every kind but Allocation, Policy, Event, VirtualMachine and MigrationPlan: {kinds:?}"
        );
    }

    #[test]
    fn the_vm_example_parses_and_validates() {
        // Kept out of FILES (and of `apply -f examples/`): its images exist only on
        // prepared nodes.
        let text = include_str!("../../../examples/vm/kernel-boot.yaml");
        let manifests = parse_manifests("vm/kernel-boot.yaml", text).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{}", lines.join("\n"))
        });
        let [m] = manifests.as_slice() else {
            panic!("one workload")
        };
        let crate::AnyObject::Workload(w) = &m.object else {
            panic!("a Workload")
        };
        let disk = w.spec.task.disk.as_ref().expect("a disk");
        assert!(disk.kernel.is_some() && disk.initrd.is_some());
        assert!(w.spec.task.health.is_some());
    }
}
