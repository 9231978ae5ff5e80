//! The node agent's host facts: what a node is and how it is secured.
//!
//! Everything is read through a [`Probe`] (file reads and commands with a timeout), so
//! every parser can be tested on output recorded on real hosts ([`RecordedProbe`]).

pub mod gpu;
pub mod linux;
pub mod probe;
pub mod windows;

pub use linux::Disk;
pub use probe::{HostProbe, Probe, RecordedProbe};
