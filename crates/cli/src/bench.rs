//! Load generators and measurements behind `meridian bench` (figures go to BENCHMARKS.md).

use anyhow::Result;
use clap::Subcommand;

use crate::args::Global;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Placeholder until the benchmark suite lands
    Noop,
}

pub async fn run(_global: &Global, _cmd: &BenchCommand) -> Result<()> {
    Ok(())
}
