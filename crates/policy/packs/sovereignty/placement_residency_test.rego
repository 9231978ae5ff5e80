package meridian.sovereignty.placement_residency_test

import data.meridian.sovereignty.placement_residency as policy

allocation(site) := {
	"kind": "Allocation",
	"metadata": {"name": "payroll-api-0", "namespace": "finance"},
	"spec": {"workload": "payroll-api", "node": "n1", "site": site, "resources": {"cpu": "500m", "memory": "256Mi"}},
}

workload := {"kind": "Workload", "metadata": {"name": "payroll-api", "namespace": "finance"}, "spec": {"data": {"classification": "personal", "residency": ["EU"]}}}

test_site_in_residency_passes if {
	count(policy.violation) == 0 with input as {
		"object": allocation("onprem-frankfurt"),
		"context": {"workload": workload, "targetSite": {"jurisdiction": "DE"}},
	}
}

test_site_outside_residency_fires if {
	some v in policy.violation with input as {
		"object": allocation("aws-us-east-1"),
		"context": {"workload": workload, "targetSite": {"jurisdiction": "US"}},
	}
	v.field == "spec.site"
	contains(v.msg, "on site aws-us-east-1 in US, outside its residency [EU]")
}

test_unknown_site_fires if {
	some v in policy.violation with input as {"object": allocation("nowhere"), "context": {"workload": workload}}
	contains(v.msg, "is not a registered site")
}

test_workload_without_residency_passes if {
	count(policy.violation) == 0 with input as {
		"object": allocation("aws-us-east-1"),
		"context": {"workload": {"spec": {"data": {"classification": "public"}}}, "targetSite": {"jurisdiction": "US"}},
	}
}
