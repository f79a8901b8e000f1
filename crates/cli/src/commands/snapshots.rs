//! `resurgo snapshots`: the snapshots each site's repository holds, per dataset.

use std::process::ExitCode;

use crate::common::{Context, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Only this site's repository.
    #[arg(long)]
    pub site: Option<String>,
    /// Only this dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(ctx) = Context::load(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let (system, protector) = (ctx.system(), ctx.protector());
    let mut all = Vec::new();
    let mut failed = false;
    for site in crate::common::repository_sites(system, args.site.as_deref())? {
        match protector
            .open(&site)
            .and_then(|r| Ok(r.snapshots(args.dataset.as_deref())?))
        {
            Ok(snaps) => {
                if !args.json {
                    println!("site {site}: {} snapshots", snaps.len());
                    for s in &snaps {
                        println!(
                            "  {}  {}  {:<12} {:<10} {} files, {} bytes",
                            &s.id[..8.min(s.id.len())],
                            s.time,
                            s.meta.dataset,
                            s.meta.kind,
                            s.files,
                            s.bytes
                        );
                    }
                }
                all.push(serde_json::json!({"site": site, "snapshots": snaps}));
            }
            Err(e) => {
                failed = true;
                if args.json {
                    all.push(serde_json::json!({"site": site, "error": e.to_string()}));
                } else {
                    eprintln!("site {site}: {e}");
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}
