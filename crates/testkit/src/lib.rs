//! Test support for Meridian's integration tests, one kit instead of a spawner per test
//! binary:
//!
//! - [`TestServer`] (`in_process.rs`): a server in the test's process on loopback port 0
//!   with a temporary data directory, its admin token, a typed [`client::Client`] and its
//!   `AppState`; stopped on drop.
//! - [`ServerProcess`] (`process.rs`): the real `meridian server` binary as a child process,
//!   ready once `/readyz` answers, killed on drop; the CLI run against it and helpers for
//!   its output ([`ok`], [`failed`], [`stdout`], [`stderr`]); [`AgentProcess`], a
//!   `meridian agent` of the same binary joined to it.
//! - [`wait_until`] and [`wait_until_async`] (`wait.rs`): poll a condition with short
//!   intervals instead of sleeping; a timeout panics naming what was awaited.
//! - [`Cgroup`] (`cgroup.rs`): a cgroup v2 group for the processes of one role, to kill
//!   them all and to match their sockets; [`NetCut`] (`netcut.rs`): iptables DROP rules
//!   cutting a group off from some ports, both ways; [`Balancer`] (`balancer.rs`): a TCP
//!   load balancer with `/readyz` health checks in front of several servers.
//! - `invariants.rs`: what no fault may break (acknowledged writes, one live allocation
//!   per instance slot, no over-committed node), as functions over what was read back.
//! - `fixtures.rs`: the example estate, kinds by name, allocations seeded as the scheduler
//!   stores them.
//!
//! Only tests (and benchmarks) depend on this crate: it panics instead of returning errors.

mod balancer;
mod cgroup;
mod fixtures;
mod in_process;
pub mod invariants;
mod netcut;
mod process;
mod wait;

pub use balancer::Balancer;
pub use cgroup::Cgroup;
pub use netcut::NetCut;

pub use fixtures::{examples_dir, kind, load_examples, mark_ready, seed_allocation};
pub use in_process::{Builder as TestServerBuilder, TestServer};
pub use process::{
    AgentProcess, Builder as ServerProcessBuilder, ServerProcess, failed, ok, run, stderr, stdout,
};
pub use wait::{Condition, wait_until, wait_until_async};
