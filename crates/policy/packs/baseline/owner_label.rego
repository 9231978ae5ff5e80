# Every node must name its owner (label `owner`, or the parameter `labelKey`).
#
# An unowned host is an unpatched host: someone must be accountable for it.
#
# Controls: NIST SP 800-53 CM-8 (system component inventory), ISO27001 A.5.9
# (inventory of information and other associated assets), BSI C5 AM-01 (asset
# inventory).
package meridian.baseline.owner_label

import data.meridian.lib

default label_key := "owner"

label_key := data.parameters.labelKey

violation contains {"msg": msg, "field": sprintf("metadata.labels.%s", [label_key])} if {
	input.object.kind == "Node"
	owner := object.get(object.get(input.object.metadata, "labels", {}), label_key, "")
	trim_space(owner) == ""
	msg := sprintf("node %s has no %s label: set metadata.labels.%s to the team accountable for it", [lib.display(input.object), label_key, label_key])
}
