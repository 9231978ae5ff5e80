//! Simulated estates for benchmarks and tests: realistic, heterogeneous fleets and
//! workload mixes as API objects, generated deterministically from a seed, and the
//! placement benchmark that runs on them.
//!
//! - [`FleetSpec`] → [`SimFleet`]: sites in 24+ jurisdictions and a dozen providers
//!   (hyperscaler regions, some of them US-operated regions inside the EU; European and
//!   sovereign clouds; the estate's own data centres, vSphere clusters and branches),
//!   with operators, certifications, prices and carbon intensity; nodes in pools of
//!   identical hosts (about 30% Windows over three Server builds, arm64, GPU nodes of
//!   several models, taints, labels, zones, security facts, drivers); projects with
//!   allowed locations.
//! - [`WorkloadSpec`] → workloads whose replicas add up to the requested instance count:
//!   services, batch jobs, Windows services, strictly sovereign regulated work, VMs and
//!   GPU jobs (some gangs), with residency, OS, GPU, spread, anti-affinity, tolerations,
//!   expressions, certifications, preferences and priorities.
//! - [`bench::placement`]: the figures of `meridian bench placement`.
//! - [`trace`] and [`replay`]: the Alibaba GPU trace of Weng et al. (USENIX ATC 2023)
//!   parsed from its CSV text and replayed through `placement` on a simulated clock,
//!   per scoring policy (`meridian bench queue`).
//! - [`agent::SimAgent`]: simulated agents that register or adopt Node objects, heartbeat,
//!   and report the allocations placed on them through their phases (`meridian sim
//!   nodes`, the demo, tests), without running anything.
//!
//! The generators do no I/O and read no clock: the same spec and seed always give the
//! same objects (`rand`'s `StdRng` seeded with the seed). Every generated object passes
//! the API's validation. Only [`bench`] reads the clock, to time decisions, and only
//! [`agent`] talks to a server.

pub mod agent;
pub mod bench;
mod catalog;
mod fleet;
pub mod replay;
pub mod trace;
mod workloads;

pub use agent::{SimAgent, SimAgentError};
pub use bench::{BenchError, PlacementReport};
pub use fleet::{FleetSpec, SimFleet};
pub use workloads::WorkloadSpec;
