package meridian.baseline.disk_encryption_test

import data.meridian.baseline.disk_encryption as policy

node(security) := {
	"kind": "Node",
	"metadata": {"name": "fra-rhel-01"},
	"spec": {"site": "onprem-frankfurt", "os": {"family": "linux", "distro": "rhel", "version": "9.4"}},
	"status": {"phase": "Ready", "security": security},
}

test_encrypted_passes if {
	count(policy.violation) == 0 with input as {"object": node({"diskEncryption": true})}
}

test_unencrypted_fires if {
	some v in policy.violation with input as {"object": node({"diskEncryption": false})}
	contains(v.msg, "disks are not encrypted")
}

test_unreported_fires if {
	some v in policy.violation with input as {"object": {"kind": "Node", "metadata": {"name": "n"}, "spec": {}}}
	contains(v.msg, "not reported")
}
