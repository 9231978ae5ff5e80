# An allocation may only place work on a site inside the workload's residency.
#
# The scheduler never does otherwise; this guards hand-written allocations and keeps
# the continuous audit honest when a site's jurisdiction or a residency changes after
# placement. Needs input.context.workload and input.context.targetSite.
#
# Controls: GDPR Art.44, NIST SP 800-53 SA-9(5).
package meridian.sovereignty.placement_residency

import data.meridian.lib

residency := input.context.workload.spec.data.residency

violation contains {"msg": msg, "field": "spec.site"} if {
	input.object.kind == "Allocation"
	count(residency) > 0
	site := input.context.targetSite
	not lib.within(site.jurisdiction, residency)
	msg := sprintf(
		"allocation %s puts workload %s on site %s in %s, outside its residency [%s]",
		[lib.display(input.object), input.object.spec.workload, site_name, site.jurisdiction, concat(", ", residency)],
	)
}

violation contains {"msg": msg, "field": "spec.site"} if {
	input.object.kind == "Allocation"
	count(residency) > 0
	not input.context.targetSite
	msg := sprintf(
		"allocation %s: site %s of node %s is not a registered site, so residency [%s] of workload %s cannot be verified",
		[lib.display(input.object), site_name, input.object.spec.node, concat(", ", residency), input.object.spec.workload],
	)
}

site_name := object.get(input.object.spec, "site", "(unknown)")
