//! The estate overview: sites grouped by jurisdiction (with the blocs each belongs to),
//! capacity used and free per site, and nodes Ready, NotReady and Lost.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use api::kinds::NodePhase;
use api::kinds::{NODE, SITE};
use api::{Node, Site};

use super::backend::{UiError, paths};
use super::page::{self, Nav};
use super::session::Session;

/// Totals of one site (or one jurisdiction).
#[derive(Default, Clone, Copy)]
struct Tally {
    ready: u32,
    not_ready: u32,
    lost: u32,
    cpu_millis: u64,
    cpu_used_millis: u64,
    memory: u64,
    memory_used: u64,
}

impl Tally {
    fn add_node(&mut self, node: &Node) {
        match node.status.as_ref().and_then(|s| s.phase) {
            Some(NodePhase::Ready) => self.ready += 1,
            Some(NodePhase::Lost) => self.lost += 1,
            _ => self.not_ready += 1,
        }
        let a = node.spec.allocatable();
        self.cpu_millis += a.cpu.millis();
        self.memory += a.memory.bytes();
        if let Some(used) = node.status.as_ref().and_then(|s| s.allocated.as_ref()) {
            self.cpu_used_millis += used.cpu.millis();
            self.memory_used += used.memory.bytes();
        }
    }

    fn add(&mut self, other: &Tally) {
        self.ready += other.ready;
        self.not_ready += other.not_ready;
        self.lost += other.lost;
        self.cpu_millis += other.cpu_millis;
        self.cpu_used_millis += other.cpu_used_millis;
        self.memory += other.memory;
        self.memory_used += other.memory_used;
    }

    fn nodes(&self) -> u32 {
        self.ready + self.not_ready + self.lost
    }
}

pub async fn overview(session: Session) -> Result<Response, UiError> {
    let sites: Vec<Site> = session
        .api
        .list_all(&paths::object(SITE, None, None))
        .await?;
    let (nodes, revision): (Vec<Node>, _) = session
        .api
        .list_all_at(&paths::object(NODE, None, None))
        .await?;
    // Node changes (phase, capacity allocated) refresh the page's regions in place.
    let live = format!(
        "/ui/live/nodes{}",
        paths::query(&[("rv", revision.as_deref())])
    );
    let mut per_site: BTreeMap<&str, Tally> = BTreeMap::new();
    for node in &nodes {
        per_site
            .entry(node.spec.site.as_str())
            .or_default()
            .add_node(node);
    }
    let mut by_country: BTreeMap<&str, Vec<&Site>> = BTreeMap::new();
    for site in &sites {
        by_country
            .entry(site.spec.jurisdiction.as_str())
            .or_default()
            .push(site);
    }
    let mut total = Tally::default();
    for t in per_site.values() {
        total.add(t);
    }
    let blocs: Vec<(&str, &str, Tally, usize)> = api::jurisdiction::BLOCS
        .iter()
        .map(|(code, name, members)| {
            let mut t = Tally::default();
            let mut count = 0;
            for site in &sites {
                if members.contains(&site.spec.jurisdiction.as_str()) {
                    count += 1;
                    if let Some(s) = per_site.get(site.metadata.name.as_str()) {
                        t.add(s);
                    }
                }
            }
            (*code, *name, t, count)
        })
        .filter(|(_, _, _, count)| *count > 0)
        .collect();
    let body = html! {
        h1 { "Estate" }
        div data-refresh=(live) {
        p.live-status aria-live="polite" data-live-status {}
        section aria-labelledby="totals" data-region="totals" {
            h2 #totals .visually-hidden { "Totals" }
            ul.cards {
                li { span.num { (sites.len()) } " sites" }
                li { span.num { (total.nodes()) } " nodes" }
                li { span.num { (total.ready) } " Ready" }
                li { span.num { (total.not_ready) } " NotReady" }
                li { span.num { (total.lost) } " Lost" }
                li { span.num { (percent(total.cpu_used_millis, total.cpu_millis)) } " of CPU allocated" }
            }
            p { a href="/ui/residency" { "Where personal data runs" } ", by continent and country, with its residency check." }
        }
        @if !blocs.is_empty() {
            section aria-labelledby="blocs" data-region="blocs" {
                h2 #blocs { "Blocs" }
                table {
                    thead { tr { th scope="col" { "Bloc" } th scope="col" { "Sites" } th scope="col" { "Nodes" } th scope="col" { "Ready" } th scope="col" { "CPU used" } th scope="col" { "Memory used" } } }
                    tbody {
                        @for (code, name, t, count) in &blocs {
                            tr {
                                th scope="row" { abbr title=(name) { (code) } }
                                td { (count) }
                                td { (t.nodes()) }
                                td { (t.ready) }
                                td { (capacity(t.cpu_used_millis, t.cpu_millis, cpu)) }
                                td { (capacity(t.memory_used, t.memory, mem)) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="jurisdictions" data-region="jurisdictions" {
            h2 #jurisdictions { "Sites by jurisdiction" }
            @if sites.is_empty() {
                p { "No sites yet. Create one with " code { "meridian apply -f site.yaml" } "." }
            }
            @for (country, sites) in &by_country {
                (jurisdiction(country, sites, &per_site))
            }
        }
        }
    };
    Ok(page::document("Estate", Some(&session), Nav::Estate, body).into_response())
}

fn jurisdiction(country: &str, sites: &[&Site], per_site: &BTreeMap<&str, Tally>) -> Markup {
    let blocs: Vec<&str> = api::jurisdiction::BLOCS
        .iter()
        .filter(|(_, _, members)| members.contains(&country))
        .map(|(code, _, _)| *code)
        .collect();
    let id = format!("j-{country}");
    html! {
        section.jurisdiction aria-labelledby=(id) {
            h3 #(id) {
                (api::jurisdiction::describe(country).unwrap_or(country)) " (" (country) ")"
                @for b in &blocs { " " span.tag { (b) } }
            }
            table {
                thead { tr {
                    th scope="col" { "Site" } th scope="col" { "Provider" } th scope="col" { "Region" }
                    th scope="col" { "Operator" } th scope="col" { "Nodes (Ready / NotReady / Lost)" }
                    th scope="col" { "CPU used / total" } th scope="col" { "Memory used / total" }
                } }
                tbody {
                    @for site in sites {
                        @let t = per_site.get(site.metadata.name.as_str()).copied().unwrap_or_default();
                        tr {
                            th scope="row" { a href={ "/ui/nodes?site=" (paths::enc(&site.metadata.name)) } { (site.metadata.name) } }
                            td { (site.spec.provider) }
                            td { (site.spec.region.as_deref().unwrap_or("—")) }
                            td { @if let Some(op) = &site.spec.operator { (op.name) " (" (op.jurisdiction) ")" } @else { "—" } }
                            td { (t.ready) " / " (t.not_ready) " / " (t.lost) }
                            td { (capacity(t.cpu_used_millis, t.cpu_millis, cpu)) }
                            td { (capacity(t.memory_used, t.memory, mem)) }
                        }
                    }
                }
            }
        }
    }
}

fn cpu(millis: u64) -> String {
    api::quantity::Cpu::from_millis(millis).to_string()
}

fn mem(bytes: u64) -> String {
    api::quantity::Memory::from_bytes(bytes).approx()
}

fn percent(used: u64, total: u64) -> String {
    let share = used.saturating_mul(100).checked_div(total).unwrap_or(0);
    format!("{share}%")
}

/// `used / total` with a meter (its text says the same for screen readers).
fn capacity(used: u64, total: u64, show: fn(u64) -> String) -> Markup {
    html! {
        span.cap {
            meter min="0" max=(total.max(1)) value=(used.min(total)) aria-hidden="true" {}
            " " (show(used)) " / " (show(total)) " (" (percent(used, total)) ")"
        }
    }
}
