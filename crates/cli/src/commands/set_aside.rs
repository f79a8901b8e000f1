//! `resurgo set-aside [--remove ID --site S]`: the data resurgo moved out of the way
//! instead of deleting it — what a restore found in its destination, an old primary's data
//! before it rejoined as a standby, a pruned service's folder. Nothing else ever deletes it.

use std::process::ExitCode;

use anyhow::Context;
use resurgo_provider::{Provider as _, SetAside};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Delete the set-aside copy with this id (as the list shows it) for good.
    #[arg(long, value_name = "ID", requires = "site")]
    pub remove: Option<String>,
    /// The site that holds the copy to remove.
    #[arg(long)]
    pub site: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the copies as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let engine = args.spec.engine()?;
    let sites = engine.sites(&desired.loaded.system);
    match (args.remove, args.site) {
        (None, _) => {
            let mut all: Vec<(String, SetAside)> = Vec::new();
            let mut unknown = 0;
            for site in &sites {
                match engine.provider.set_aside_copies(site) {
                    Ok(copies) => all.extend(copies.into_iter().map(|c| (site.name.clone(), c))),
                    Err(e) => {
                        // Unknown, not empty: the listing is incomplete, and says so.
                        eprintln!("site {}: its set-aside copies are unknown: {e}", site.name);
                        unknown += 1;
                    }
                }
            }
            if args.json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|(site, c)| serde_json::json!({"site": site, "copy": c}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if all.is_empty() && unknown == 0 {
                println!("No set-aside copies.");
            } else if all.is_empty() {
                println!("No set-aside copies at the sites that could be read.");
            } else {
                for (site, c) in &all {
                    println!(
                        "{site}  {}  {}  set aside {}: {}",
                        c.id,
                        crate::report::size(c.bytes),
                        c.at,
                        c.why
                    );
                    println!("    {} (was {})", c.path.display(), c.original.display());
                }
                println!("Remove one with `resurgo set-aside --remove ID --site SITE` once nothing in it is needed.");
            }
            if unknown > 0 {
                return Ok(exit::code(exit::ERROR));
            }
        }
        (Some(id), site) => {
            let site = site.context("--remove needs --site: the site that holds the copy")?;
            let handle = engine
                .site(&desired.loaded.system, &site)
                .with_context(|| format!("no site `{site}` in the spec"))?;
            let gone = engine.provider.drop_set_aside(&handle, &id)?;
            println!("removed {} ({}) at {site}", gone.id, gone.path.display());
        }
    }
    Ok(exit::code(exit::OK))
}
