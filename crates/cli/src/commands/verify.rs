//! `resurgo verify DATASET [--site S]`: prove a backup works by restoring it into a scratch
//! place at the site (default: each replica site) and running the dataset's check.

use std::process::ExitCode;

use crate::common::{Context, SpecArgs};
use crate::exit;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset to verify.
    pub dataset: String,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Verify at this site (default: every replica site, else the home site).
    #[arg(long)]
    pub site: Option<String>,
    /// Emit JSON lines instead of human output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(ctx) = Context::load(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let protector = ctx.protector();
    let sites = match &args.site {
        Some(s) => vec![s.clone()],
        None => {
            let replicas = protector.replica_sites(&args.dataset)?;
            if replicas.is_empty() {
                vec![protector.home_site(&args.dataset)?]
            } else {
                replicas
            }
        }
    };
    let reporter = Reporter::new(args.json);
    let mut failed = false;
    for site in sites {
        let step = reporter.step(format!("verify {} at site {site}", args.dataset));
        match protector.verify(&args.dataset, &site) {
            Ok(r) => step.done(
                &format!(
                    "snapshot {} of {}: {}",
                    &r.snapshot[..8.min(r.snapshot.len())],
                    r.snapshot_time,
                    r.check
                ),
                serde_json::to_value(&r)?,
            ),
            Err(e) => {
                failed = true;
                step.failed(&e.to_string());
            }
        }
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}
