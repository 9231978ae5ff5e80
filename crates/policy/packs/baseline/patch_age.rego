# Nodes must have received security updates recently (default: within 30 days).
#
# Reads status.security.patchAgeDays (days since the last OS security update); the
# parameter `maxPatchAgeDays` sets the limit.
#
# Controls: NIST SP 800-53 SI-2 (flaw remediation), ISO27001 A.8.8 (management of
# technical vulnerabilities), BSI C5 OPS-22 (handling of vulnerabilities).
package meridian.baseline.patch_age

import data.meridian.lib

default max_age := 30

max_age := data.parameters.maxPatchAgeDays

security := object.get(object.get(input.object, "status", {}), "security", {})

violation contains {"msg": msg, "field": "status.security.patchAgeDays"} if {
	input.object.kind == "Node"
	age := security.patchAgeDays
	age > max_age
	msg := sprintf("node %s was last patched %d days ago (limit %d); apply the pending security updates", [lib.display(input.object), age, max_age])
}

violation contains {"msg": msg, "field": "status.security.patchAgeDays"} if {
	input.object.kind == "Node"
	object.get(security, "patchAgeDays", null) == null
	msg := sprintf("node %s: patch age is not reported; run the Meridian agent on it so it can be verified", [lib.display(input.object)])
}
