package meridian.baseline.os_supported_test

import data.meridian.baseline.os_supported as policy

node(os) := {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"site": "s", "os": os}}

test_rhel_94_supported if {
	count(policy.violation) == 0 with input as {"object": node({"family": "linux", "distro": "rhel", "version": "9.4"})}
}

test_windows_2022_supported if {
	count(policy.violation) == 0 with input as {"object": node({"family": "windows", "distro": "windows-server", "version": "2022", "build": "10.0.20348"})}
}

test_rhel_7_unsupported if {
	some v in policy.violation with input as {"object": node({"family": "linux", "distro": "rhel", "version": "7.9"})}
	v.field == "spec.os.version"
	contains(v.msg, "runs rhel 7.9, which is not a supported version")
}

test_windows_2012_unsupported if {
	count(policy.violation) == 1 with input as {"object": node({"family": "windows", "distro": "windows-server", "version": "2012"})}
}

test_version_prefix_is_not_enough if {
	# "90" must not be taken for "9".
	count(policy.violation) == 1 with input as {"object": node({"family": "linux", "distro": "rhel", "version": "90.1"})}
}

test_unknown_distro_fires if {
	some v in policy.violation with input as {"object": node({"family": "linux", "distro": "gentoo", "version": "2.15"})}
	v.field == "spec.os.distro"
}

test_parameters_replace_the_list if {
	count(policy.violation) == 0 with input as {"object": node({"family": "linux", "distro": "gentoo", "version": "2.15"})}
		with data.parameters as {"supported": {"gentoo": ["2"]}}
}
