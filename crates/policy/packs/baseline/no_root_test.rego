package meridian.baseline.no_root_test

import data.meridian.baseline.no_root as policy

workload(ns, task) := {"kind": "Workload", "metadata": {"name": "w", "namespace": ns}, "spec": {"task": task}}

test_default_user_passes if {
	count(policy.violation) == 0 with input as {"object": workload("p", {"driver": "exec"})}
}

test_unprivileged_user_passes if {
	count(policy.violation) == 0 with input as {"object": workload("p", {"user": "1000:1000"})}
}

test_root_by_name_fires if {
	some v in policy.violation with input as {"object": workload("p", {"user": "root"})}
	v.field == "spec.task.user"
}

test_root_by_uid_fires if {
	count(policy.violation) == 1 with input as {"object": workload("p", {"user": "0:0"})}
}

test_root_group_alone_passes if {
	count(policy.violation) == 0 with input as {"object": workload("p", {"user": "app:0"})}
}

test_allowed_project_passes if {
	count(policy.violation) == 0 with input as {"object": workload("platform", {"user": "root"})}
		with data.parameters as {"allowedProjects": ["platform"]}
}

test_other_kinds_pass if {
	count(policy.violation) == 0 with input as {"object": {"kind": "Node", "metadata": {"name": "n"}, "spec": {"task": {"user": "root"}}}}
}
