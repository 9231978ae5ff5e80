//! Integration tests of the policy crate: one binary, shared helpers in `support`.

mod admission;
mod audit;
mod compile;
mod opa_compat;
mod oscal;
mod packs;
mod runner;
mod store;
mod support;
mod vm;
