//! Where personal data runs (`GET /meridian/v1/residency`): the placed instances of
//! workloads whose data is classified `personal` or `regulated`, by the jurisdiction of
//! the site each runs in, each checked against its workload's residency.

use serde::{Deserialize, Serialize};

/// The report, over the projects the caller sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyReport {
    /// Workloads with personal or regulated data (placed or not).
    pub workloads: usize,
    /// Their placed instances.
    pub instances: usize,
    /// Instances in a country their workload's residency does not allow.
    pub outside: usize,
    /// Instances on a node or site that no longer exists (their country is unknown).
    pub unknown_site: usize,
    /// Countries with at least one instance, by code.
    pub countries: Vec<CountryResidency>,
}

/// The instances in one country.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountryResidency {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// UN M49 continent ([`crate::jurisdiction::continent`]).
    pub continent: String,
    pub instances: usize,
    pub personal: usize,
    pub regulated: usize,
    pub outside: usize,
    pub sites: Vec<String>,
    /// How many workloads have instances here.
    pub workload_count: usize,
    /// `project/name` of the first [`NAMED_WORKLOADS`] of them (sorted).
    pub workloads: Vec<String>,
}

/// How many workload names a country lists.
pub const NAMED_WORKLOADS: usize = 20;
