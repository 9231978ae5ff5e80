package meridian.migration.information_test

import data.meridian.migration.information as policy

vm(spec) := {"kind": "VirtualMachine", "metadata": {"name": "vm-1", "namespace": "p"}, "spec": object.union({"name": "app", "uuid": "u", "cpus": 2, "memoryMib": 1024, "source": {"kind": "rvtools"}, "cbt": true}, spec)}

test_clean_passes if {
	count(policy.violation) == 0 with input as {"object": vm({})}
}

test_cbt_off if {
	some v in policy.violation with input as {"object": vm({"cbt": false})}
	v.field == "spec.cbt"
}

test_name_hotplug_affinity_tools if {
	spec := {"name": "DB_01", "cpuHotAdd": true, "memoryHotAdd": true, "affinityRules": ["keep-apart"], "tools": {"status": "toolsNotRunning"}}
	count(policy.violation) == 5 with input as {"object": vm(spec)}
}
