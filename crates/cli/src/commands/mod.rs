//! One module per group of verbs; each function parses nothing and prints its result.

pub mod admin;
pub mod agent;
pub mod backup;
pub mod edit;
pub mod install;
pub mod logs;
pub mod meta;
pub mod migrate;
mod migrate_run;
pub mod nodes;
pub mod placement;
pub mod policy;
pub mod policy_authoring;
pub mod resources;
pub mod rollout;
pub mod secret;
pub mod serve;
pub mod sim;
