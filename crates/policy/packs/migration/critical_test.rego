package meridian.migration.critical_test

import data.meridian.migration.critical as policy

vm(spec) := {"kind": "VirtualMachine", "metadata": {"name": "vm-1", "namespace": "p"}, "spec": object.union({"name": "web-01", "uuid": "u", "cpus": 2, "memoryMib": 1024, "source": {"kind": "rvtools"}}, spec)}

test_plain_vm_passes if {
	count(policy.violation) == 0 with input as {"object": vm({"os": {"tools": "Microsoft Windows Server 2019 (64-bit)"}})}
}

test_passthrough if {
	some v in policy.violation with input as {"object": vm({"passthrough": ["PCI device 0"]})}
	v.field == "spec.passthrough"
}

test_rdm_and_shared if {
	disks := [{"label": "Hard disk 1", "capacityMib": 1}, {"label": "Hard disk 2", "capacityMib": 1, "rdm": "physical", "sharing": "sharingMultiWriter"}]
	fields := {v.field | some v in policy.violation} with input as {"object": vm({"disks": disks})}
	fields == {"spec.disks[1].rdm", "spec.disks[1].sharing"}
}

test_windows_2003 if {
	count(policy.violation) == 1 with input as {"object": vm({"os": {"configured": "Microsoft Windows Server 2003 Standard (32-bit)"}})}
}

test_rhel5_but_not_rhel8 if {
	count(policy.violation) == 1 with input as {"object": vm({"os": {"tools": "Red Hat Enterprise Linux 5 (64-bit)"}})}
	count(policy.violation) == 0 with input as {"object": vm({"os": {"tools": "Red Hat Enterprise Linux 8 (64-bit)"}})}
}
