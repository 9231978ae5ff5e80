# Migration facts worth knowing (category Information): they do not change readiness.
package meridian.migration.information

vm := input.object.spec

name := object.get(vm, "name", input.object.metadata.name)

violation contains {"msg": msg, "field": "spec.cbt"} if {
	input.object.kind == "VirtualMachine"
	object.get(vm, "cbt", false) != true
	msg := sprintf("VM %s: changed block tracking is off: only a cold migration (VM powered off during the copy) is possible; enable CBT for a warm one", [name])
}

violation contains {"msg": msg, "field": "spec.cpuHotAdd"} if {
	input.object.kind == "VirtualMachine"
	vm.cpuHotAdd == true
	msg := sprintf("VM %s: CPU hot-add is enabled at the source; the target VM has a fixed vCPU count", [name])
}

violation contains {"msg": msg, "field": "spec.memoryHotAdd"} if {
	input.object.kind == "VirtualMachine"
	vm.memoryHotAdd == true
	msg := sprintf("VM %s: memory hot-add is enabled at the source; the target VM has fixed memory", [name])
}

violation contains {"msg": msg, "field": "spec.affinityRules"} if {
	input.object.kind == "VirtualMachine"
	rules := object.get(vm, "affinityRules", [])
	count(rules) > 0
	msg := sprintf("VM %s: DRS rules %v do not carry over; express them as placement antiAffinity or spread on the Workload", [name, rules])
}

violation contains {"msg": msg, "field": "spec.name"} if {
	input.object.kind == "VirtualMachine"
	not regex.match(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`, vm.name)
	msg := sprintf("VM %s: the name is not an RFC 1123 label; its Workload gets a derived name (lowercase letters, digits and '-')", [name])
}

violation contains {"msg": msg, "field": "spec.tools.status"} if {
	input.object.kind == "VirtualMachine"
	status := object.get(vm, ["tools", "status"], "")
	status in {"toolsNotInstalled", "toolsNotRunning", "guestToolsNotRunning"}
	msg := sprintf("VM %s: VMware Tools status %s: guest facts (OS, IPs, partitions) may be missing or stale", [name, status])
}
