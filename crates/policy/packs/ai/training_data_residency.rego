# GPU workloads must declare the residency of the data they train or infer on.
#
# Training data is where the personal data of an AI system usually is; the EU AI Act
# asks for data governance of training, validation and testing data, and GDPR for where
# it is processed. A workload that asks for GPUs must say where its data may be
# processed (spec.data.residency) and what it is (spec.data.classification).
#
# Controls: EU AI Act Art.10 (data and data governance), GDPR Art.44.
package meridian.ai.training_data_residency

import data.meridian.lib

gpus := object.get(object.get(object.get(input.object.spec, "task", {}), "resources", {}), "gpu", {"count": 0})

violation contains {"msg": msg, "field": "spec.data.residency"} if {
	input.object.kind == "Workload"
	gpus.count > 0
	count(object.get(object.get(input.object.spec, "data", {}), "residency", [])) == 0
	msg := sprintf(
		"GPU workload %s does not declare the residency of its training data: set spec.data.residency (and spec.data.classification) to where that data may be processed",
		[lib.display(input.object)],
	)
}
