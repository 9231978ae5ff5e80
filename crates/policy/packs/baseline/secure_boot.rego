# Nodes must boot with Secure Boot (UEFI) enabled.
#
# Controls: NIST SP 800-53 SI-7 (software, firmware and information integrity),
# NIST SP 800-53 CM-6 (configuration settings), ISO27001 A.8.9 (configuration
# management).
package meridian.baseline.secure_boot

import data.meridian.lib

security := object.get(object.get(input.object, "status", {}), "security", {})

violation contains {"msg": msg, "field": "status.security.secureBoot"} if {
	input.object.kind == "Node"
	security.secureBoot == false
	msg := sprintf("node %s: Secure Boot is disabled; enable it in the firmware", [lib.display(input.object)])
}

violation contains {"msg": msg, "field": "status.security.secureBoot"} if {
	input.object.kind == "Node"
	object.get(security, "secureBoot", null) == null
	msg := sprintf("node %s: Secure Boot state is not reported; run the Meridian agent on it so it can be verified", [lib.display(input.object)])
}
