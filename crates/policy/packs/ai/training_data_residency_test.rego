package meridian.ai.training_data_residency_test

import data.meridian.ai.training_data_residency as policy

workload(data_policy) := {
	"kind": "Workload",
	"metadata": {"name": "llm-finetune", "namespace": "research"},
	"spec": {
		"type": "job",
		"task": {"driver": "exec", "resources": {"cpu": "16", "memory": "128Gi", "gpu": {"count": 2}}},
		"data": data_policy,
		"queue": "gpu-training",
	},
}

test_residency_declared_passes if {
	count(policy.violation) == 0 with input as {"object": workload({"classification": "confidential", "residency": ["EU"]})}
}

test_residency_missing_fires if {
	some v in policy.violation with input as {"object": workload({"classification": "confidential"})}
	contains(v.msg, "GPU workload research/llm-finetune does not declare")
}

test_cpu_workload_ignored if {
	count(policy.violation) == 0 with input as {"object": {"kind": "Workload", "metadata": {"name": "w", "namespace": "p"}, "spec": {"task": {"resources": {"cpu": "1"}}}}}
}
