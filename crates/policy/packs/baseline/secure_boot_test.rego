package meridian.baseline.secure_boot_test

import data.meridian.baseline.secure_boot as policy

node(security) := {"kind": "Node", "metadata": {"name": "fra-win-01"}, "spec": {"os": {"family": "windows"}}, "status": {"security": security}}

test_enabled_passes if {
	count(policy.violation) == 0 with input as {"object": node({"secureBoot": true})}
}

test_disabled_fires if {
	some v in policy.violation with input as {"object": node({"secureBoot": false})}
	v.msg == "node fra-win-01: Secure Boot is disabled; enable it in the firmware"
}

test_unreported_fires if {
	count(policy.violation) == 1 with input as {"object": node({})}
}
