package meridian.ai.gpu_queue_test

import data.meridian.ai.gpu_queue as policy

workload(resources, queue) := {
	"kind": "Workload",
	"metadata": {"name": "llm-finetune", "namespace": "research"},
	"spec": object.union(
		{"type": "job", "replicas": 4, "gang": 4, "task": {"driver": "exec", "resources": resources}},
		queue,
	),
}

gpu := {"cpu": "16", "memory": "128Gi", "gpu": {"count": 2, "model": "H100"}}

test_gpu_with_queue_passes if {
	count(policy.violation) == 0 with input as {"object": workload(gpu, {"queue": "gpu-training"})}
}

test_gpu_without_queue_fires if {
	some v in policy.violation with input as {"object": workload(gpu, {})}
	v.field == "spec.queue"
	contains(v.msg, "asks for 2 GPU(s)")
}

test_cpu_only_without_queue_passes if {
	count(policy.violation) == 0 with input as {"object": workload({"cpu": "8", "memory": "32Gi"}, {})}
}
