//! Where personal data runs: the running instances of workloads that handle personal or
//! regulated data, by continent (UN M49) and country, with the sites and workloads in
//! each, and a check an auditor can read at a glance: every instance sits in a country
//! its workload's residency allows (the scheduler's invariant, verified again here from
//! the stored objects, not assumed).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use api::kinds::{ALLOCATION, Classification, NODE, SITE, WORKLOAD};
use api::{Allocation, Node, Site, Workload};

use super::backend::{UiError, paths};
use super::page::{self, Nav, badge};
use super::session::Session;

/// Workloads listed by name per country before "and N more".
const NAMED: usize = 5;

/// The instances in one country.
#[derive(Default)]
struct Country {
    instances: usize,
    personal: usize,
    regulated: usize,
    /// Instances in a country their workload's residency does not allow.
    outside: usize,
    sites: BTreeSet<String>,
    workloads: BTreeSet<(String, String)>,
}

/// What one workload says of its data.
struct Sensitive {
    classification: Classification,
    residency: Vec<String>,
}

pub async fn view(session: Session) -> Result<Response, UiError> {
    let sites: Vec<Site> = session
        .api
        .list_all(&paths::object(SITE, None, None))
        .await?;
    let nodes: Vec<Node> = session
        .api
        .list_all(&paths::object(NODE, None, None))
        .await?;
    let workloads: Vec<Workload> = session
        .api
        .list_all(&paths::object(WORKLOAD, None, None))
        .await?;
    let allocations: Vec<Allocation> = session
        .api
        .list_all(&paths::object(ALLOCATION, None, None))
        .await?;
    let country_of_site: HashMap<&str, &str> = sites
        .iter()
        .map(|s| (s.metadata.name.as_str(), s.spec.jurisdiction.as_str()))
        .collect();
    let site_of_node: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), n.spec.site.as_str()))
        .collect();
    let sensitive: HashMap<(&str, &str), Sensitive> = workloads
        .iter()
        .filter_map(|w| {
            let data = w.spec.data.as_ref()?;
            matches!(
                data.classification,
                Classification::Personal | Classification::Regulated
            )
            .then(|| {
                (
                    (
                        w.metadata.namespace.as_deref().unwrap_or_default(),
                        w.metadata.name.as_str(),
                    ),
                    Sensitive {
                        classification: data.classification,
                        residency: data.residency.clone(),
                    },
                )
            })
        })
        .collect();
    let mut by_country: BTreeMap<&str, Country> = BTreeMap::new();
    let mut unplaced_sites = 0usize;
    for a in &allocations {
        let ns = a.metadata.namespace.as_deref().unwrap_or_default();
        let Some(data) = sensitive.get(&(ns, a.spec.workload.as_str())) else {
            continue;
        };
        let site = a
            .spec
            .site
            .as_deref()
            .or_else(|| site_of_node.get(a.spec.node.as_str()).copied());
        let Some((site, country)) = site.and_then(|s| country_of_site.get(s).map(|c| (s, *c)))
        else {
            unplaced_sites += 1;
            continue;
        };
        let c = by_country.entry(country).or_default();
        c.instances += 1;
        match data.classification {
            Classification::Personal => c.personal += 1,
            _ => c.regulated += 1,
        }
        if !data.residency.is_empty() && !api::jurisdiction::allows(&data.residency, country) {
            c.outside += 1;
        }
        c.sites.insert(site.to_owned());
        c.workloads.insert((ns.to_owned(), a.spec.workload.clone()));
    }
    let mut by_continent: BTreeMap<&str, Vec<(&str, &Country)>> = BTreeMap::new();
    for (code, c) in &by_country {
        let continent = api::jurisdiction::continent(code).unwrap_or("Elsewhere");
        by_continent.entry(continent).or_default().push((code, c));
    }
    let instances: usize = by_country.values().map(|c| c.instances).sum();
    let outside: usize = by_country.values().map(|c| c.outside).sum();
    let body = html! {
        h1 { "Where personal data runs" }
        p { "Running instances of workloads whose data is classified " code { "personal" } " or "
            code { "regulated" } " (" code { "spec.data.classification" } "), by the jurisdiction of the site each runs in." }
        ul.cards {
            li { span.num { (sensitive.len()) } " workloads with personal or regulated data" }
            li { span.num { (instances) } " instances placed" }
            li { span.num { (by_country.len()) } " countries" }
            li { span.num { (outside) } " outside their residency " (badge(if outside == 0 { "pass" } else { "fail" })) }
        }
        @if unplaced_sites > 0 {
            p.error role="alert" { (unplaced_sites) " instances are on nodes whose site is unknown (deleted since): their country cannot be shown." }
        }
        @if by_continent.is_empty() {
            p { "No instance of a workload with personal or regulated data runs now." }
        }
        div.continents {
            @for (continent, countries) in &by_continent {
                section.continent aria-labelledby={ "c-" (slug(continent)) } {
                    h2 id={ "c-" (slug(continent)) } { (continent) }
                    table.list {
                        caption.visually-hidden { "Countries in " (continent) }
                        thead { tr {
                            th scope="col" { "Country" } th scope="col" { "Instances" }
                            th scope="col" { "Personal" } th scope="col" { "Regulated" }
                            th scope="col" { "Sites" } th scope="col" { "Workloads" }
                            th scope="col" { "Residency" }
                        } }
                        tbody {
                            @for (code, c) in countries { (country_row(code, c)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::document(
        "Where personal data runs",
        Some(&session),
        Nav::Residency,
        body,
    )
    .into_response())
}

fn slug(s: &str) -> String {
    s.to_ascii_lowercase().replace(' ', "-")
}

fn country_row(code: &str, c: &Country) -> Markup {
    let name = api::jurisdiction::describe(code).unwrap_or(code);
    let blocs: Vec<&str> = api::jurisdiction::BLOCS
        .iter()
        .filter(|(_, _, members)| members.contains(&code))
        .map(|(b, _, _)| *b)
        .collect();
    html! {
        tr {
            th scope="row" {
                abbr title=(name) { (code) } " " (name)
                @if !blocs.is_empty() { " " span.muted { "(" (blocs.join(", ")) ")" } }
            }
            td { (c.instances) }
            td { (c.personal) }
            td { (c.regulated) }
            td { (c.sites.iter().cloned().collect::<Vec<_>>().join(", ")) }
            td {
                @for (i, (ns, w)) in c.workloads.iter().take(NAMED).enumerate() {
                    @if i > 0 { ", " }
                    a href=(super::workloads::detail_href(ns, w)) { (ns) "/" (w) }
                }
                @if c.workloads.len() > NAMED { " and " (c.workloads.len() - NAMED) " more" }
            }
            td {
                @if c.outside == 0 { (badge("pass")) " within" }
                @else { (badge("fail")) " " (c.outside) " outside" }
            }
        }
    }
}
