# GPU workloads must wait in a named queue.
#
# GPUs are the scarcest capacity of the estate; work that asks for them goes through a
# queue (spec.queue) so quotas, priorities and fair sharing apply (as Kueue does).
#
# Controls: NIST SP 800-53 SC-6 (resource availability), ISO27001 A.8.6 (capacity
# management).
package meridian.ai.gpu_queue

import data.meridian.lib

gpus := object.get(object.get(object.get(input.object.spec, "task", {}), "resources", {}), "gpu", {"count": 0})

violation contains {"msg": msg, "field": "spec.queue"} if {
	input.object.kind == "Workload"
	gpus.count > 0
	trim_space(object.get(input.object.spec, "queue", "")) == ""
	msg := sprintf(
		"workload %s asks for %d GPU(s) per replica but names no queue: set spec.queue (for example gpu-training) so GPU quotas and fair sharing apply",
		[lib.display(input.object), gpus.count],
	)
}
