package meridian.sovereignty.residency_declared_test

import data.meridian.sovereignty.residency_declared as policy

workload(data_policy) := {
	"apiVersion": "meridian.dev/v1",
	"kind": "Workload",
	"metadata": {"name": "payroll-api", "namespace": "finance"},
	"spec": {
		"type": "service",
		"task": {"driver": "exec", "command": ["/usr/bin/python3"], "resources": {"cpu": "500m", "memory": "256Mi"}},
		"data": data_policy,
	},
}

test_personal_without_residency_fires if {
	some v in policy.violation with input as {"operation": "CREATE", "object": workload({"classification": "personal"})}
	v.field == "spec.data.residency"
	contains(v.msg, "finance/payroll-api handles personal data")
}

test_regulated_with_empty_residency_fires if {
	count(policy.violation) == 1 with input as {"object": workload({"classification": "regulated", "residency": []})}
}

test_personal_with_residency_passes if {
	count(policy.violation) == 0 with input as {"object": workload({"classification": "personal", "residency": ["EU"]})}
}

test_internal_without_residency_passes if {
	count(policy.violation) == 0 with input as {"object": workload({"classification": "internal"})}
}

test_parameter_widens_classifications if {
	count(policy.violation) == 1 with input as {"object": workload({"classification": "confidential"})}
		with data.parameters as {"classifications": ["confidential"]}
}

test_other_kinds_ignored if {
	count(policy.violation) == 0 with input as {"object": {"kind": "Node", "metadata": {"name": "n"}, "spec": {}}}
}
