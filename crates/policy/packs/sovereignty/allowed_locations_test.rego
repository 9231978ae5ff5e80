package meridian.sovereignty.allowed_locations_test

import data.meridian.sovereignty.allowed_locations as policy

workload(residency) := {
	"kind": "Workload",
	"metadata": {"name": "genome-align", "namespace": "research"},
	"spec": {"type": "job", "data": {"classification": "public", "residency": residency}},
}

research := {"allowedLocations": ["EEA", "CH"]}

finance := {"allowedLocations": ["EU"]}

test_residency_within_fence_passes if {
	count(policy.violation) == 0 with input as {"object": workload(["EEA", "CH"]), "context": {"project": research}}
}

test_residency_beyond_fence_fires if {
	some v in policy.violation with input as {"object": workload(["EEA"]), "context": {"project": finance}}
	v.field == "spec.data.residency[0]"
	contains(v.msg, "IS, LI, NO outside")
}

test_no_fence_anywhere if {
	count(policy.violation) == 0 with input as {"object": workload(["US"]), "context": {"project": {}}}
}

test_default_fence_from_parameters if {
	count(policy.violation) == 1 with input as {"object": workload(["US"]), "context": {"project": {}}}
		with data.parameters as {"defaultAllowedLocations": ["EU"]}
}

test_allocation_outside_fence_fires if {
	some v in policy.violation with input as {
		"object": {"kind": "Allocation", "metadata": {"name": "a-0", "namespace": "finance"}, "spec": {"workload": "a", "node": "n", "site": "onprem-zurich"}},
		"context": {"project": finance, "targetSite": {"jurisdiction": "CH"}},
	}
	contains(v.msg, "on site onprem-zurich in CH, outside the locations project finance allows [EU]")
}

test_allocation_inside_fence_passes if {
	count(policy.violation) == 0 with input as {
		"object": {"kind": "Allocation", "metadata": {"name": "a-0", "namespace": "research"}, "spec": {"workload": "a", "node": "n", "site": "onprem-zurich"}},
		"context": {"project": research, "targetSite": {"jurisdiction": "CH"}},
	}
}
