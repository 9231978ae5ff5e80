//! Integration tests of the policy crate: one binary, shared helpers in `support`.

mod admission;
mod audit;
mod compile;
mod explain;
mod opa_compat;
mod oscal;
mod packs;
mod runner;
mod store;
mod support;
mod vm;
