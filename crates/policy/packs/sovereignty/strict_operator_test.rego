package meridian.sovereignty.strict_operator_test

import data.meridian.sovereignty.strict_operator as policy

allocation(site) := {
	"kind": "Allocation",
	"metadata": {"name": "month-end-close-0", "namespace": "finance"},
	"spec": {"workload": "month-end-close", "node": "n1", "site": site},
}

strict := {"spec": {"data": {"classification": "regulated", "residency": ["DE"], "sovereignty": "strict"}}}

standard := {"spec": {"data": {"classification": "regulated", "residency": ["EU"]}}}

frankfurt := {"jurisdiction": "DE", "operator": {"name": "Example Bank AG", "jurisdiction": "DE"}}

azure_de := {"jurisdiction": "DE", "operator": {"name": "Microsoft Corporation", "jurisdiction": "US"}}

test_german_operator_passes if {
	count(policy.violation) == 0 with input as {"object": allocation("onprem-frankfurt"), "context": {"workload": strict, "targetSite": frankfurt}}
}

test_us_operator_fires if {
	some v in policy.violation with input as {"object": allocation("azure-germany"), "context": {"workload": strict, "targetSite": azure_de}}
	contains(v.msg, "operated by Microsoft Corporation under US jurisdiction, outside [DE]")
}

test_operator_missing_fires if {
	some v in policy.violation with input as {"object": allocation("x"), "context": {"workload": strict, "targetSite": {"jurisdiction": "DE"}}}
	contains(v.msg, "does not declare its operator")
}

test_standard_sovereignty_ignores_operator if {
	count(policy.violation) == 0 with input as {"object": allocation("azure-germany"), "context": {"workload": standard, "targetSite": azure_de}}
}
