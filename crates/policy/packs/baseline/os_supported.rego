# Nodes must run a supported operating system version.
#
# The parameter `supported` maps a distro to the versions (or major versions: "9" covers
# "9.4") still supported by their vendor; a distro not in the map is a finding, so new
# platforms are reviewed before they join the estate. Windows Server is matched on its
# version (2019, 2022, 2025).
#
# Controls: NIST SP 800-53 SA-22 (unsupported system components), ISO27001 A.8.8
# (management of technical vulnerabilities).
package meridian.baseline.os_supported

import data.meridian.lib

default supported := {
	"rhel": ["8", "9", "10"],
	"ubuntu": ["22.04", "24.04"],
	"debian": ["12", "13"],
	"amzn": ["2023"],
	"sles": ["15"],
	"windows-server": ["2019", "2022", "2025"],
}

supported := data.parameters.supported

os := object.get(input.object.spec, "os", {})

violation contains {"msg": msg, "field": "spec.os.version"} if {
	input.object.kind == "Node"
	versions := supported[os.distro]
	version := object.get(os, "version", "")
	not covered(version, versions)
	msg := sprintf(
		"node %s runs %s %s, which is not a supported version (supported: %s); upgrade it or drain it",
		[lib.display(input.object), os.distro, version_text(version), concat(", ", versions)],
	)
}

violation contains {"msg": msg, "field": "spec.os.distro"} if {
	input.object.kind == "Node"
	distro := object.get(os, "distro", "")
	not supported[distro]
	msg := sprintf(
		"node %s runs %s, which is not in the supported OS list (%s); add it to the policy's `supported` parameter once reviewed",
		[lib.display(input.object), distro_text(distro), concat(", ", sort(object.keys(supported)))],
	)
}

covered(version, versions) if {
	some v in versions
	version == v
}

covered(version, versions) if {
	some v in versions
	startswith(version, concat("", [v, "."]))
}

version_text("") := "(version not reported)"

version_text(v) := v if v != ""

distro_text("") := "an unreported distribution"

distro_text(d) := d if d != ""
