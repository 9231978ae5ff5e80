//! The load generators and measurements behind `meridian bench` (figures go to
//! BENCHMARKS.md). The CLI parses the flags defined here ([`BenchCommand`]), resolves where
//! the server is, and calls one function per subcommand; everything else is in this crate.
//!
//! Everything here is bounded in count and time and talks to loopback servers only:
//!
//! - [`create`]: durable creates through the HTTP API from C concurrent clients, closed loop
//!   or paced open loop (`--rate`); latency of a paced request is measured from its
//!   *intended* start, so a stalled server cannot hide its stall (no coordinated omission).
//!   With `--raw-etcd` (feature `etcd`) the same load goes straight to an etcd cluster as
//!   the transactions a create commits there (`raw_etcd.rs`), Meridian left out.
//! - [`watch`]: W watch streams, then E paced creates; per (watcher, event) the time from the
//!   writer's acknowledgement, and from the writer's send, to the watcher's receipt. The
//!   watchers can be spread over several servers of one etcd cluster (`--watch-servers`).
//! - [`rss`]: resident memory of a server this command spawns, idle, after loading N objects
//!   and after a restart over those N objects.
//! - [`crash`]: the kill -9 durability experiment: acknowledged writes must survive, and the
//!   audit chain must verify afterwards.
//! - [`placement`]: the scheduler core alone, in this process, on one thread: a generated
//!   fleet and workload mix (`sim::bench`), decisions per second and time per decision.
//! - [`queue`]: a GPU cluster trace replayed through placement on a simulated clock
//!   (`sim::replay`), per scoring policy: allocation ratio, unallocated GPUs at the first
//!   failure, queueing delay.
//!
//! All HTTP goes through the `client` crate. `rss` and `crash` start `meridian server`
//! processes of their own (and `meridian audit verify`) from the binary path they are given;
//! every other subcommand runs in this process.
//!
//! Errors are `anyhow` errors, as in the binary: each subcommand is a whole command whose
//! error is printed, never matched, except [`UsageError`], which marks a bad flag value so
//! that the CLI can exit with its "user error" code.
//!
//! Invariant: reads no configuration (no environment, no config file): the CLI hands over
//! the [`Target`] and the binary path.

use anyhow::Result;

mod args;
mod crash;
mod create;
mod load;
mod placement;
mod queue;
#[cfg(feature = "etcd")]
mod raw_etcd;
mod report;
mod rss;
mod spawn;
mod watch;

pub use args::{
    BenchCommand, CrashArgs, CreateArgs, EtcdEndpoints, PlacementArgs, QueueArgs, RawChain,
    RssArgs, WatchArgs,
};
pub use crash::crash;
pub use create::create;
pub use placement::placement;
pub use queue::queue;
pub use rss::rss;
pub use watch::watch;

/// A flag value the user can fix (the CLI exits with code 1 on it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The server that `create` and `watch` load, as the CLI resolved it (flags, environment,
/// contexts).
pub struct Target {
    /// The server's URL as given, for the report.
    pub server: String,
    /// The project to create objects in (the global `--project`/`-n`); `bench` when `None`.
    pub project: Option<String>,
    /// Makes a new client: each has its own connection pool, so each load worker gets a
    /// connection of its own.
    pub connect: Box<dyn Fn() -> Result<client::Client> + Send + Sync>,
    /// Makes a new client of another server URL with the same credentials (for watchers
    /// spread over several servers).
    pub connect_to: ConnectTo,
}

/// Makes a client of a server URL with the target's credentials.
pub type ConnectTo = Box<dyn Fn(&str) -> Result<client::Client> + Send + Sync>;

impl Target {
    fn project(&self) -> String {
        self.project.clone().unwrap_or_else(|| "bench".to_owned())
    }

    fn client(&self) -> Result<client::Client> {
        (self.connect)()
    }

    fn clients(&self, n: usize) -> Result<Vec<client::Client>> {
        (0..n).map(|_| self.client()).collect()
    }
}
