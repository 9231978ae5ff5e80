# Node disks must be encrypted at rest.
#
# Reads status.security.diskEncryption as the agent reports it (BitLocker on Windows,
# LUKS/dm-crypt on Linux). A node that has not reported it is a finding too: compliance
# needs evidence, not the absence of a counter-example.
#
# Controls: NIST SP 800-53 SC-28 (protection of information at rest),
# ISO27001 A.8.24 (use of cryptography), BSI C5 CRY-03 (encryption of sensitive data
# for storage).
package meridian.baseline.disk_encryption

import data.meridian.lib

security := object.get(object.get(input.object, "status", {}), "security", {})

violation contains {"msg": msg, "field": "status.security.diskEncryption"} if {
	input.object.kind == "Node"
	security.diskEncryption == false
	msg := sprintf("node %s: disks are not encrypted; enable BitLocker (Windows) or LUKS (Linux)", [lib.display(input.object)])
}

violation contains {"msg": msg, "field": "status.security.diskEncryption"} if {
	input.object.kind == "Node"
	object.get(security, "diskEncryption", null) == null
	msg := sprintf("node %s: disk encryption is not reported; run the Meridian agent on it so it can be verified", [lib.display(input.object)])
}
