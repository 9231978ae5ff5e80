//! `GET /meridian/v1/residency[?project=P]`: where personal and regulated data runs (an
//! [`api::residency::ResidencyReport`]), computed from the stored Sites, Nodes, Workloads
//! and Allocations the caller may list, each instance checked against its workload's
//! residency: the scheduler's invariant verified again from what is stored, not assumed.
//!
//! Objects are read raw from the store and decoded into the few fields the report needs
//! (serde skips the rest), so 10,000 workloads and their instances cost tens of
//! milliseconds rather than a round of full decodes through the list API.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use api::kinds::{ALLOCATION, Classification, DataPolicy, NODE, SITE, WORKLOAD};
use api::residency::{CountryResidency, NAMED_WORKLOADS, ResidencyReport};

use crate::app::AppState;
use crate::auth::{Principal, Verb, authorize};
use crate::error::{ApiError, ApiResult};
use crate::registry::kind_prefix;

pub const PATH: &str = "/meridian/v1/residency";

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(report))
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    project: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

/// An object with only the fields the report reads.
#[derive(Deserialize)]
struct Light<S> {
    metadata: Meta,
    spec: S,
}

#[derive(Deserialize)]
struct SiteSpec {
    jurisdiction: String,
}

#[derive(Deserialize)]
struct NodeSpec {
    site: String,
}

#[derive(Deserialize)]
struct WorkloadSpec {
    #[serde(default)]
    data: Option<DataPolicy>,
}

#[derive(Deserialize)]
struct AllocationSpec {
    workload: String,
    node: String,
    #[serde(default)]
    site: Option<String>,
}

async fn read<S: serde::de::DeserializeOwned>(
    state: &AppState,
    prefix: &str,
) -> ApiResult<Vec<Light<S>>> {
    let kvs = state.store().read_prefix(prefix).await?;
    kvs.iter()
        .map(|kv| {
            serde_json::from_slice(&kv.value).map_err(|e| {
                ApiError::internal(format!("stored object {} does not decode: {e}", kv.key))
            })
        })
        .collect()
}

async fn report(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Json<ResidencyReport>> {
    // The projects read: the one asked for, else the caller's own, else every project.
    let project = q
        .project
        .as_deref()
        .filter(|p| !p.is_empty())
        .or(who.project.as_deref());
    for kind in [WORKLOAD, ALLOCATION] {
        authorize(&who, Verb::List, kind, project, None)?;
    }
    for kind in [SITE, NODE] {
        authorize(&who, Verb::List, kind, None, None)?;
    }
    let sites: Vec<Light<SiteSpec>> = read(&state, &kind_prefix(SITE, None)).await?;
    let nodes: Vec<Light<NodeSpec>> = read(&state, &kind_prefix(NODE, None)).await?;
    let workloads: Vec<Light<WorkloadSpec>> = read(&state, &kind_prefix(WORKLOAD, project)).await?;
    let allocations: Vec<Light<AllocationSpec>> =
        read(&state, &kind_prefix(ALLOCATION, project)).await?;
    Ok(Json(compute(&sites, &nodes, &workloads, &allocations)))
}

fn compute(
    sites: &[Light<SiteSpec>],
    nodes: &[Light<NodeSpec>],
    workloads: &[Light<WorkloadSpec>],
    allocations: &[Light<AllocationSpec>],
) -> ResidencyReport {
    let country_of_site: HashMap<&str, &str> = sites
        .iter()
        .map(|s| (s.metadata.name.as_str(), s.spec.jurisdiction.as_str()))
        .collect();
    let site_of_node: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), n.spec.site.as_str()))
        .collect();
    let sensitive: HashMap<(&str, &str), &DataPolicy> = workloads
        .iter()
        .filter_map(|w| {
            let data = w.spec.data.as_ref()?;
            matches!(
                data.classification,
                Classification::Personal | Classification::Regulated
            )
            .then(|| {
                let ns = w.metadata.namespace.as_deref().unwrap_or_default();
                ((ns, w.metadata.name.as_str()), data)
            })
        })
        .collect();
    #[derive(Default)]
    struct Tally<'a> {
        row: CountryResidency,
        sites: BTreeSet<&'a str>,
        workloads: BTreeSet<(&'a str, &'a str)>,
    }
    let mut report = ResidencyReport {
        workloads: sensitive.len(),
        ..ResidencyReport::default()
    };
    let mut by_country: BTreeMap<&str, Tally<'_>> = BTreeMap::new();
    for a in allocations {
        let ns = a.metadata.namespace.as_deref().unwrap_or_default();
        let Some(data) = sensitive.get(&(ns, a.spec.workload.as_str())) else {
            continue;
        };
        report.instances += 1;
        let site = a
            .spec
            .site
            .as_deref()
            .or_else(|| site_of_node.get(a.spec.node.as_str()).copied());
        let Some((site, country)) = site.and_then(|s| country_of_site.get(s).map(|c| (s, *c)))
        else {
            report.unknown_site += 1;
            continue;
        };
        let t = by_country.entry(country).or_default();
        t.row.instances += 1;
        match data.classification {
            Classification::Personal => t.row.personal += 1,
            _ => t.row.regulated += 1,
        }
        if !data.residency.is_empty() && !api::jurisdiction::allows(&data.residency, country) {
            t.row.outside += 1;
            report.outside += 1;
        }
        t.sites.insert(site);
        t.workloads.insert((ns, a.spec.workload.as_str()));
    }
    report.countries = by_country
        .into_iter()
        .map(|(country, t)| CountryResidency {
            country: country.to_owned(),
            continent: api::jurisdiction::continent(country)
                .unwrap_or("Elsewhere")
                .to_owned(),
            sites: t.sites.iter().map(|s| (*s).to_owned()).collect(),
            workload_count: t.workloads.len(),
            workloads: t
                .workloads
                .iter()
                .take(NAMED_WORKLOADS)
                .map(|(ns, w)| format!("{ns}/{w}"))
                .collect(),
            ..t.row
        })
        .collect();
    report
}
