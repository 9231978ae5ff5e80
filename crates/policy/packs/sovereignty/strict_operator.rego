# Strict sovereignty: the site's operator must be under an allowed jurisdiction.
#
# `sovereignty: strict` is the difference between "a region in Frankfurt" and "a German-
# operated cloud": an operator (or its parent) under a foreign jurisdiction can be
# compelled to hand data over (e.g. the US CLOUD Act). Applies to allocations of strict
# workloads; needs input.context.workload and input.context.targetSite.
#
# Controls: GDPR Art.46 (appropriate safeguards), GDPR Art.48 (transfers not authorised
# by Union law), BSI C5 INQ-01 (investigation requests from government agencies).
package meridian.sovereignty.strict_operator

import data.meridian.lib

workload := input.context.workload

violation contains {"msg": msg, "field": "spec.site"} if {
	input.object.kind == "Allocation"
	workload.spec.data.sovereignty == "strict"
	residency := workload.spec.data.residency
	count(residency) > 0
	operator := input.context.targetSite.operator
	not lib.within(operator.jurisdiction, residency)
	msg := sprintf(
		"allocation %s puts strict-sovereignty workload %s on site %s, operated by %s under %s jurisdiction, outside [%s]",
		[lib.display(input.object), input.object.spec.workload, object.get(input.object.spec, "site", "(unknown)"), operator.name, operator.jurisdiction, concat(", ", residency)],
	)
}

violation contains {"msg": msg, "field": "spec.site"} if {
	input.object.kind == "Allocation"
	workload.spec.data.sovereignty == "strict"
	input.context.targetSite
	not input.context.targetSite.operator
	msg := sprintf(
		"allocation %s puts strict-sovereignty workload %s on site %s, which does not declare its operator: set spec.operator on the Site",
		[lib.display(input.object), input.object.spec.workload, object.get(input.object.spec, "site", "(unknown)")],
	)
}
