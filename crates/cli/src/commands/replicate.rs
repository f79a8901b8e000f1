//! `resurgo replicate [DATASET]`: copy backups from each dataset's home site to its replica
//! sites. Only what a target lacks is transferred, and what arrived is verified.

use std::process::ExitCode;

use crate::common::{Context, SpecArgs};
use crate::exit;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset to replicate (default: all).
    pub dataset: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Only to this site.
    #[arg(long)]
    pub to: Option<String>,
    /// Emit JSON lines instead of human output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(ctx) = Context::load(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let (system, protector) = (ctx.system(), ctx.protector());
    let reporter = Reporter::new(args.json);
    let mut failed = false;
    for dataset in crate::common::datasets(system, args.dataset.as_deref())? {
        let from = protector.home_site(&dataset)?;
        for to in protector.replica_sites(&dataset)? {
            if args.to.as_ref().is_some_and(|t| *t != to) {
                continue;
            }
            let step = reporter.step(format!("replicate {dataset} {from} → {to}"));
            match protector.replicate(Some(&dataset), &from, &to) {
                Ok(r) => step.done(
                    &format!(
                        "{} snapshots copied ({} already there), {} log segments, {} bytes",
                        r.snapshots_copied, r.snapshots_present, r.segments_copied, r.bytes
                    ),
                    serde_json::json!({"dataset": dataset, "from": from, "to": to, "report": r}),
                ),
                Err(e) => {
                    failed = true;
                    step.failed(&e.to_string());
                }
            }
        }
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}
