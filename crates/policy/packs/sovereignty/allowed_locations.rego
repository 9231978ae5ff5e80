# Allowed locations per project: the Azure "allowed locations" idea for the whole estate.
#
# A project's spec.allowedLocations fences everything in it: a workload's residency may
# narrow the fence, never widen it, and an allocation's site must be inside it. Projects
# without a fence use the parameter `defaultAllowedLocations` (none: anywhere).
#
# Controls: NIST SP 800-53 AC-3 (access enforcement), NIST SP 800-53 SA-9(5),
# ISO27001 A.5.31 (legal, statutory, regulatory and contractual requirements).
package meridian.sovereignty.allowed_locations

import data.meridian.lib

default default_locations := []

default_locations := data.parameters.defaultAllowedLocations

project_fence := object.get(object.get(input.context, "project", {}), "allowedLocations", [])

fence := project_fence if count(project_fence) > 0

fence := default_locations if {
	count(project_fence) == 0
	count(default_locations) > 0
}

violation contains {"msg": msg, "field": sprintf("spec.data.residency[%d]", [i])} if {
	input.object.kind == "Workload"
	f := fence
	some i, code in input.object.spec.data.residency
	not lib.within(code, f) # a country inside the fence, or a code the fence names
	outside := lib.countries(code) - lib.expand(f)
	count(outside) > 0
	msg := sprintf(
		"workload %s: residency %s reaches beyond the locations project %s allows [%s] (%s outside); narrow spec.data.residency or widen the project's allowedLocations",
		[lib.display(input.object), code, input.object.metadata.namespace, concat(", ", fence), concat(", ", sort(outside))],
	)
}

violation contains {"msg": msg, "field": "spec.site"} if {
	input.object.kind == "Allocation"
	f := fence
	site := input.context.targetSite
	not lib.within(site.jurisdiction, f)
	msg := sprintf(
		"allocation %s is on site %s in %s, outside the locations project %s allows [%s]",
		[lib.display(input.object), object.get(input.object.spec, "site", "(unknown)"), site.jurisdiction, input.object.metadata.namespace, concat(", ", fence)],
	)
}
