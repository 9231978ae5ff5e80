package meridian.migration.warning_test

import data.meridian.migration.warning as policy

vm(spec) := {"kind": "VirtualMachine", "metadata": {"name": "vm-1", "namespace": "p"}, "spec": object.union({"name": "app", "uuid": "u", "cpus": 2, "memoryMib": 1024, "source": {"kind": "rvtools"}}, spec)}

test_clean_linux_passes if {
	count(policy.violation) == 0 with input as {"object": vm({"os": {"tools": "Ubuntu Linux (64-bit)", "family": "linux"}, "firmware": "bios", "usb": false})}
}

test_windows_2012_needs_virtio_and_is_eol if {
	fields := [v.field | some v in policy.violation] with input as {"object": vm({"os": {"tools": "Microsoft Windows Server 2012 (64-bit)", "family": "windows"}})}
	count(fields) == 2
}

test_snapshots_independent_usb_tpm_efi_secureboot if {
	spec := {"snapshots": [{"name": "s"}], "disks": [{"label": "d", "capacityMib": 1, "mode": "independent_persistent"}], "usb": true, "tpm": true, "firmware": "efi", "secureBoot": true}
	count(policy.violation) == 6 with input as {"object": vm(spec)}
}

test_low_free_space_with_parameter if {
	spec := {"partitions": [{"path": "/", "capacityMib": 10000, "freeMib": 600}]}
	count(policy.violation) == 1 with input as {"object": vm(spec)}
	count(policy.violation) == 0 with input as {"object": vm(spec), "parameters": {"minFreeMiB": 500}}
}
