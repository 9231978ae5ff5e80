# Migration concerns that need work before or during the move (category Warning): the VM
# is "Conditionally ready".
package meridian.migration.warning

vm := input.object.spec

name := object.get(vm, "name", input.object.metadata.name)

guest_os := os if {
	os := object.get(vm, ["os", "tools"], null)
	os != null
} else := os if {
	os := object.get(vm, ["os", "configured"], "")
}

family := object.get(vm, ["os", "family"], "")

min_free_mib := object.get(object.get(input, "parameters", {}), "minFreeMiB", 1024)

violation contains {"msg": msg, "field": "spec.snapshots"} if {
	input.object.kind == "VirtualMachine"
	n := count(object.get(vm, "snapshots", []))
	n > 0
	msg := sprintf("VM %s: %d snapshot(s) present; consolidate them before migrating (conversion reads the base disk chain)", [name, n])
}

violation contains {"msg": msg, "field": sprintf("spec.disks[%d].mode", [i])} if {
	input.object.kind == "VirtualMachine"
	some i, disk in object.get(vm, "disks", [])
	startswith(lower(object.get(disk, "mode", "")), "independent")
	msg := sprintf("VM %s: %s is an independent disk (%s): it cannot be snapshotted, so only a cold migration copies it", [name, disk.label, disk.mode])
}

violation contains {"msg": msg, "field": "spec.os"} if {
	input.object.kind == "VirtualMachine"
	os := guest_os
	regex.match(`(?i)windows server 2008|windows server 2012|windows 7|red hat enterprise linux 6|rhel ?6\b|centos 6\b`, os)
	msg := sprintf("VM %s: guest OS %q is past its vendor's end of life; plan an upgrade, or an extended-support contract, before or after the move", [name, os])
}

violation contains {"msg": msg, "field": "spec.os.family"} if {
	input.object.kind == "VirtualMachine"
	family == "windows"
	msg := sprintf("VM %s: Windows needs the virtio drivers (virtio-win) installed before cut-over, or it fails to boot with INACCESSIBLE_BOOT_DEVICE", [name])
}

violation contains {"msg": msg, "field": "spec.usb"} if {
	input.object.kind == "VirtualMachine"
	vm.usb == true
	msg := sprintf("VM %s: USB devices are attached (licence dongles?); they are not migrated, plan a USB-over-IP or a host with the device", [name])
}

violation contains {"msg": msg, "field": "spec.tpm"} if {
	input.object.kind == "VirtualMachine"
	vm.tpm == true
	msg := sprintf("VM %s: a virtual TPM holds keys (BitLocker, credentials) that do not move; suspend BitLocker and re-enrol on the target", [name])
}

violation contains {"msg": msg, "field": "spec.firmware"} if {
	input.object.kind == "VirtualMachine"
	lower(object.get(vm, "firmware", "")) == "efi"
	msg := sprintf("VM %s: boots with UEFI; the target node needs OVMF firmware for it", [name])
}

violation contains {"msg": msg, "field": "spec.secureBoot"} if {
	input.object.kind == "VirtualMachine"
	vm.secureBoot == true
	msg := sprintf("VM %s: Secure Boot is on; the target needs OVMF with Secure Boot keys, or the guest must boot without it", [name])
}

violation contains {"msg": msg, "field": sprintf("spec.partitions[%d].freeMib", [i])} if {
	input.object.kind == "VirtualMachine"
	some i, part in object.get(vm, "partitions", [])
	part.freeMib < min_free_mib
	msg := sprintf("VM %s: partition %s has %d MiB free, under %d MiB: conversion (driver injection) may fail; free space first", [name, part.path, part.freeMib, min_free_mib])
}
