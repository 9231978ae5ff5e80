package meridian.baseline.patch_age_test

import data.meridian.baseline.patch_age as policy

node(age) := {"kind": "Node", "metadata": {"name": "fra-rhel-02"}, "spec": {}, "status": {"security": {"patchAgeDays": age}}}

test_recent_patch_passes if {
	count(policy.violation) == 0 with input as {"object": node(12)}
}

test_exactly_limit_passes if {
	count(policy.violation) == 0 with input as {"object": node(30)}
}

test_old_patch_fires if {
	some v in policy.violation with input as {"object": node(45)}
	v.msg == "node fra-rhel-02 was last patched 45 days ago (limit 30); apply the pending security updates"
}

test_limit_from_parameters if {
	count(policy.violation) == 1 with input as {"object": node(12)} with data.parameters as {"maxPatchAgeDays": 7}
}

test_unreported_fires if {
	count(policy.violation) == 1 with input as {"object": {"kind": "Node", "metadata": {"name": "n"}, "spec": {}}}
}
