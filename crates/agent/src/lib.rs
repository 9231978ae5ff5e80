//! The node agent's host facts: what a node is and how it is secured.
//!
//! [`discover`] reads the host through a [`Probe`] (file reads and commands with a
//! timeout) and returns [`HostFacts`]: OS, architecture, capacity (cpu, memory, ephemeral
//! storage, GPUs), drivers, disks and [`api::kinds::SecurityFacts`]. [`node_spec`] and
//! [`security_status`] turn them into what the agent registers and reports.
//!
//! Parsing is separate from reading: [`linux`], [`gpu`] and [`windows`] are pure parsers
//! tested on output recorded on real hosts, and [`RecordedProbe`] replays whole recorded
//! hosts through [`discover`]. The Windows parsers compile and are tested everywhere;
//! Windows is only chosen at run time ([`Options::for_this_host`]).
//!
//! [`discover`] reads no clock (the time comes in [`Options`]); nothing here is async or
//! touches the network.
//!
//! [`runtime`] is the agent itself: it joins once (a join token exchanged for a node
//! credential), registers the facts on its Node, heartbeats, and runs the node's
//! allocations with its [`driver`]s (`exec`: process groups, cgroup v1 limits, captured
//! logs; `qemu`: virtual machines stopped through QMP; `container`: podman or docker),
//! checks their [`health`], restarts them per policy and adopts them across agent
//! restarts; [`logs`] serves `meridian logs` by long-polling the server for log sessions
//! (agents only dial out).
//!
//! What a task sees is built by [`view`] (environment, user, task directory, volumes,
//! ports, [`secrets`] fetched for its allocation) and applied to `exec` tasks by
//! [`launch`], the `meridian launch` launcher; [`users`] resolves `task.user` on Unix
//! nodes and creates the default `meridian-task` account.

pub mod driver;
pub mod facts;
pub mod gpu;
pub mod health;
pub mod launch;
pub mod linux;
pub mod logs;
pub mod probe;
pub mod runtime;
pub mod secrets;
#[cfg(unix)]
pub mod users;
pub mod view;
pub mod windows;

pub use facts::{FactsError, HostFacts, Options, arch_of, discover, node_spec, security_status};
pub use linux::Disk;
pub use probe::{HostProbe, Probe, RecordedProbe};
