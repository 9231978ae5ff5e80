//! Where personal data runs: the API's residency report (`GET /meridian/v1/residency`,
//! the server's `residency.rs`) by continent (UN M49) and country, with the sites and
//! workloads in each, and the check an auditor reads at a glance: every instance sits in
//! a country its workload's residency allows.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use api::residency::{CountryResidency, ResidencyReport};

use super::backend::UiError;
use super::page::{self, Nav, badge};
use super::session::Session;

/// Workloads listed by name per country before "and N more".
const NAMED: usize = 5;

pub async fn view(session: Session) -> Result<Response, UiError> {
    let report: ResidencyReport = session.api.get_as("/meridian/v1/residency").await?;
    let mut by_continent: BTreeMap<&str, Vec<&CountryResidency>> = BTreeMap::new();
    for c in &report.countries {
        by_continent
            .entry(c.continent.as_str())
            .or_default()
            .push(c);
    }
    let body = html! {
        h1 { "Where personal data runs" }
        p { "Running instances of workloads whose data is classified " code { "personal" } " or "
            code { "regulated" } " (" code { "spec.data.classification" } "), by the jurisdiction of the site each runs in." }
        ul.cards {
            li { span.num { (report.workloads) } " workloads with personal or regulated data" }
            li { span.num { (report.instances) } " instances placed" }
            li { span.num { (report.countries.len()) } " countries" }
            li { span.num { (report.outside) } " outside their residency " (badge(if report.outside == 0 { "pass" } else { "fail" })) }
        }
        @if report.unknown_site > 0 {
            p.error role="alert" { (report.unknown_site) " instances are on nodes whose site is unknown (deleted since): their country cannot be shown." }
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
                            @for c in countries { (country_row(c)) }
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

fn country_row(c: &CountryResidency) -> Markup {
    let code = c.country.as_str();
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
            td { (c.sites.join(", ")) }
            td {
                @for (i, w) in c.workloads.iter().take(NAMED).enumerate() {
                    @if i > 0 { ", " }
                    @let (ns, name) = w.split_once('/').unwrap_or(("", w));
                    a href=(super::workloads::detail_href(ns, name)) { (w) }
                }
                @if c.workload_count > NAMED { " and " (c.workload_count - NAMED) " more" }
            }
            td {
                @if c.outside == 0 { (badge("pass")) " within" }
                @else { (badge("fail")) " " (c.outside) " outside" }
            }
        }
    }
}
