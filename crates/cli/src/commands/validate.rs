//! `resurgo validate`: load a spec and report every problem with its file, line and column,
//! and what it should not do though it may (a service that would run as root).

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
    // Warnings do not make the spec invalid: they are printed, and the exit code stays 0.
    let warnings = resurgo_spec::warnings(s, nix::unistd::geteuid().is_root());
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
                "warnings": warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
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
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(exit::code(exit::OK))
}
