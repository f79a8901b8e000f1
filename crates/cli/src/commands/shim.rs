//! `resurgo __shim DIR`: the per-service supervisor the local provider starts. Not for people.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service's state folder.
    pub dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(resurgo_provider::shim::run_shim(&args.dir))
}
