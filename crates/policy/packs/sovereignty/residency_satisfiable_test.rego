package meridian.sovereignty.residency_satisfiable_test

import data.meridian.sovereignty.residency_satisfiable as policy

sites := {
	"onprem-frankfurt": {"provider": "onprem", "jurisdiction": "DE", "operator": {"name": "Example Bank AG", "jurisdiction": "DE"}},
	"azure-westeurope": {"provider": "azure", "jurisdiction": "NL", "operator": {"name": "Microsoft Corporation", "jurisdiction": "US"}},
	"onprem-zurich": {"provider": "onprem", "jurisdiction": "CH", "operator": {"name": "Example Bank (Schweiz) AG", "jurisdiction": "CH"}},
}

workload(data_policy) := {
	"kind": "Workload",
	"metadata": {"name": "month-end-close", "namespace": "finance"},
	"spec": {"type": "job", "data": data_policy},
}

test_eu_residency_satisfiable if {
	count(policy.violation) == 0 with input as {"object": workload({"classification": "personal", "residency": ["EU"]}), "context": {"sites": sites}}
}

test_strict_de_satisfied_by_german_operator if {
	count(policy.violation) == 0 with input as {"object": workload({"residency": ["DE"], "sovereignty": "strict"}), "context": {"sites": sites}}
}

test_strict_nl_not_satisfiable if {
	some v in policy.violation with input as {"object": workload({"residency": ["NL"], "sovereignty": "strict"}), "context": {"sites": sites}}
	contains(v.msg, "no site satisfies residency [NL] with an operator")
	contains(v.msg, "azure-westeurope (NL, operator US)")
}

test_unserved_country_fires if {
	count(policy.violation) == 1 with input as {"object": workload({"residency": ["JP"]}), "context": {"sites": sites}}
}

test_no_sites_registered if {
	some v in policy.violation with input as {"object": workload({"residency": ["EU"]}), "context": {"sites": {}}}
	contains(v.msg, "sites: none registered")
}

test_no_residency_is_not_this_rule if {
	count(policy.violation) == 0 with input as {"object": workload({"classification": "public"}), "context": {"sites": sites}}
}
