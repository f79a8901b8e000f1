//! `resurgo validate`: load a spec and report every problem with its file, line and column.

use std::process::ExitCode;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let s = &desired.loaded.system;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "valid": true,
                "system": s.name,
                "source": desired.source,
                "sites": s.sites.len(),
                "services": s.services.len(),
                "datasets": s.datasets.len(),
                "routes": s.routes.len(),
            })
        );
    } else {
        println!(
            "spec is valid: system `{}` — {} sites, {} services, {} datasets, {} routes ({})",
            s.name,
            s.sites.len(),
            s.services.len(),
            s.datasets.len(),
            s.routes.len(),
            desired.source.label()
        );
    }
    Ok(exit::code(exit::OK))
}
