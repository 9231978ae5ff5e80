# A residency must be satisfiable by at least one registered site.
#
# A workload whose spec.data.residency no site can meet (for `strict` sovereignty: no
# site located AND operated within it) can never be placed; refuse it with the sites
# there are, rather than leave it pending.
#
# Controls: GDPR Art.44, NIST SP 800-53 SA-9(5) (processing, storage and service
# location).
package meridian.sovereignty.residency_satisfiable

import data.meridian.lib

violation contains {"msg": msg, "field": "spec.data.residency"} if {
	input.object.kind == "Workload"
	residency := input.object.spec.data.residency
	count(residency) > 0
	strict := object.get(input.object.spec.data, "sovereignty", "standard") == "strict"
	not satisfiable(residency, strict)
	msg := sprintf(
		"workload %s: no site satisfies residency [%s]%s; sites: %s. Register a site there or widen spec.data.residency",
		[lib.display(input.object), concat(", ", residency), strict_note(strict), site_list],
	)
}

sites := object.get(object.get(input, "context", {}), "sites", {})

satisfiable(residency, strict) if {
	some site in sites
	lib.within(site.jurisdiction, residency)
	operator_ok(site, residency, strict)
}

operator_ok(_, _, strict) if not strict

operator_ok(site, residency, strict) if {
	strict
	lib.within(site.operator.jurisdiction, residency)
}

strict_note(true) := " with an operator under those jurisdictions (sovereignty: strict)"

strict_note(false) := ""

site_list := "none registered" if count(sites) == 0

site_list := concat(", ", sort(site_descriptions)) if count(sites) > 0

site_descriptions contains d if {
	some name, site in sites
	d := sprintf("%s (%s, operator %s)", [name, site.jurisdiction, object.get(object.get(site, "operator", {}), "jurisdiction", "unknown")])
}
