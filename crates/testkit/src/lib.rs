//! Test support for Meridian's integration tests, one kit instead of a spawner per test
//! binary:
//!
//! - [`TestServer`] (`in_process.rs`): a server in the test's process on loopback port 0
//!   with a temporary data directory, its admin token, a typed [`client::Client`] and its
//!   `AppState`; stopped on drop.
//! - [`ServerProcess`] (`process.rs`): the real `meridian server` binary as a child process,
//!   ready once `/readyz` answers, killed on drop; the CLI run against it and helpers for
//!   its output ([`ok`], [`failed`], [`stdout`], [`stderr`]).
//! - [`wait_until`] and [`wait_until_async`] (`wait.rs`): poll a condition with short
//!   intervals instead of sleeping; a timeout panics naming what was awaited.
//! - `fixtures.rs`: the example estate, kinds by name, allocations seeded as the scheduler
//!   stores them.
//!
//! Only tests (and benchmarks) depend on this crate: it panics instead of returning errors.

mod fixtures;
mod in_process;
mod process;
mod wait;

pub use fixtures::{examples_dir, kind, load_examples, mark_ready, seed_allocation};
pub use in_process::{Builder as TestServerBuilder, TestServer};
pub use process::{
    Builder as ServerProcessBuilder, ServerProcess, failed, ok, run, stderr, stdout,
};
pub use wait::{Condition, wait_until, wait_until_async};
