//! `resurgo set-up SITE...`: make a site ready anew — its folder and its record — when it was
//! lost and has come back empty (a new machine, a new volume). `apply` sets up only sites this
//! state folder has never set up; a site set up before whose folder is gone stays `unknown`
//! until a person says, with this command, that it is to be made again.

use std::process::ExitCode;

use anyhow::bail;
use resurgo_provider::Provider as _;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sites to set up (their services are then started by `resurgo apply`).
    #[arg(required = true)]
    pub sites: Vec<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, false)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let system = &desired.loaded.system;
    if let Some(unknown) = args.sites.iter().find(|s| !system.sites.contains_key(*s)) {
        bail!(
            "no site `{unknown}` in the spec (sites: {})",
            system.sites.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let engine = args.spec.engine()?;
    let sites = engine.sites(system);
    engine.set_up(&sites, &args.sites)?;
    for site in sites.iter().filter(|s| args.sites.contains(&s.name)) {
        println!("site {} set up at {}", site.name, engine.provider.describe(site));
    }
    println!("Run `resurgo apply` to start its services.");
    Ok(exit::code(exit::OK))
}
