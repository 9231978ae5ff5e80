package meridian.baseline.owner_label_test

import data.meridian.baseline.owner_label as policy

node(labels) := {"kind": "Node", "metadata": {"name": "fra-gpu-01", "labels": labels}, "spec": {}}

test_owner_present_passes if {
	count(policy.violation) == 0 with input as {"object": node({"owner": "team-ai", "rack": "fra-b-r07"})}
}

test_owner_missing_fires if {
	some v in policy.violation with input as {"object": node({"hardware": "dgx-h100"})}
	v.field == "metadata.labels.owner"
}

test_owner_blank_fires if {
	count(policy.violation) == 1 with input as {"object": node({"owner": " "})}
}

test_no_labels_fires if {
	count(policy.violation) == 1 with input as {"object": {"kind": "Node", "metadata": {"name": "n"}, "spec": {}}}
}

test_label_key_parameter if {
	count(policy.violation) == 0 with input as {"object": node({"team": "x"})} with data.parameters as {"labelKey": "team"}
}
