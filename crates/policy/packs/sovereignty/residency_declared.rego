# Personal and regulated data must say where it may be processed.
#
# A workload whose spec.data.classification is `personal` or `regulated` must list the
# jurisdictions or blocs it may run in (spec.data.residency); without it the scheduler
# may place it anywhere the project allows.
#
# Controls: GDPR Art.44 (transfers only under the conditions of Chapter V),
# ISO27001 A.5.34 (privacy and protection of PII).
package meridian.sovereignty.residency_declared

import data.meridian.lib

default sensitive := {"personal", "regulated"}

# Parameter `classifications`: the classifications that need a residency.
sensitive := {c | some c in data.parameters.classifications} if data.parameters.classifications

violation contains {"msg": msg, "field": "spec.data.residency"} if {
	input.object.kind == "Workload"
	dp := object.get(input.object.spec, "data", {})
	class := object.get(dp, "classification", "internal")
	class in sensitive
	count(object.get(dp, "residency", [])) == 0
	msg := sprintf(
		"workload %s handles %s data but declares no residency: set spec.data.residency to the jurisdictions or blocs it may be processed in (for example [EU] or [DE])",
		[lib.display(input.object), class],
	)
}
