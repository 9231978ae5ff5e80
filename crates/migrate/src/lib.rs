//! Virtualization modernization: from a VMware estate's inventory to VMs running on
//! Meridian.
//!
//! - [`source`]: the [`Source`] trait every inventory source implements (RVTools XLSX and
//!   CSV in [`rvtools`], OVF and OVA in [`ovf`]; a live vSphere collector plugs in the same
//!   way), yielding normalized [`api::migrate::VirtualMachineSpec`]s and per-row
//!   [`Issue`]s that name file, sheet, row or line, and column;
//! - [`objects`]: VMs as `VirtualMachine` objects, named from their UUID so that
//!   re-imports update rather than duplicate;
//! - [`assess`]: concerns from the `migration` Rego pack (run by `policy`), readiness per
//!   target site from the placement engine's what-if answers, right-sizing and cost;
//! - [`waves`]: wave plans (dependency groups, capacity, transfer and downtime estimates)
//!   and their reports (table, CSV, JSON, a self-contained HTML page);
//! - [`convert`]: `qemu-img` conversion to qcow2, resumable per disk.
//!
//! This crate reads the files it is given and runs `qemu-img`; it does no HTTP: the CLI
//! fetches objects and asks the server's `plan` endpoint, and hands the answers in.

pub mod assess;
pub mod convert;
pub mod objects;
pub mod ovf;
pub mod rvtools;
pub mod source;
pub mod table;
pub mod waves;

pub use source::{
    ImportOptions, Inventory, Issue, Location, Severity, Source, SourceError, read_all, sources_for,
};
