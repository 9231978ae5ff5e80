# Migration concerns that block a move to a KVM target (category Critical): the VM is
# "Not ready" until they are resolved at the source.
#
# Input: a VirtualMachine (source facts from `meridian migrate import`). The `field`
# of each violation names the fact; `meridian migrate assess` reads the category from
# the policy name (`migration-critical`) or its `migration.meridian.dev/category` label.
package meridian.migration.critical

vm := input.object.spec

name := object.get(vm, "name", input.object.metadata.name)

violation contains {"msg": msg, "field": "spec.passthrough"} if {
	input.object.kind == "VirtualMachine"
	some device in object.get(vm, "passthrough", [])
	msg := sprintf("VM %s: passthrough device %q (PCI passthrough or SR-IOV) cannot move; remove it or plan a host with the same device", [name, device])
}

violation contains {"msg": msg, "field": sprintf("spec.disks[%d].rdm", [i])} if {
	input.object.kind == "VirtualMachine"
	some i, disk in object.get(vm, "disks", [])
	disk.rdm
	msg := sprintf("VM %s: %s is a raw device mapping (%s mode); migrate its LUN's data to a virtual disk first", [name, disk.label, disk.rdm])
}

violation contains {"msg": msg, "field": sprintf("spec.disks[%d].sharing", [i])} if {
	input.object.kind == "VirtualMachine"
	some i, disk in object.get(vm, "disks", [])
	lower(object.get(disk, "sharing", "")) == "sharingmultiwriter"
	msg := sprintf("VM %s: %s is shared with other VMs (multi-writer, e.g. a cluster quorum disk); move the cluster as a whole with shared storage on the target", [name, disk.label])
}

violation contains {"msg": msg, "field": "spec.os"} if {
	input.object.kind == "VirtualMachine"
	os := guest_os
	regex.match(`(?i)windows (server )?2003|windows xp|red hat enterprise linux [2-5]\b|rhel ?[2-5]\b|centos [2-5]\b`, os)
	msg := sprintf("VM %s: guest OS %q has no virtio drivers for KVM; upgrade the OS before moving it", [name, os])
}

guest_os := os if {
	os := object.get(vm, ["os", "tools"], null)
	os != null
} else := os if {
	os := object.get(vm, ["os", "configured"], "")
}
