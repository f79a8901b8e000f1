//! `resurgo forget [DATASET] [--prune]`: remove snapshots the dataset's retention does not
//! keep, at every site holding them; with --prune, free their storage.

use std::process::ExitCode;

use crate::common::{Context, SpecArgs};
use crate::exit;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset (default: every dataset with a retention).
    pub dataset: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Only at this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Also delete the data no kept snapshot needs.
    #[arg(long)]
    pub prune: bool,
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
        if args.dataset.is_none() && system.datasets[&dataset].retention.is_none() {
            continue;
        }
        let mut sites = vec![protector.home_site(&dataset)?];
        sites.extend(protector.replica_sites(&dataset)?);
        for site in sites
            .into_iter()
            .filter(|s| args.site.as_ref().is_none_or(|only| only == s))
        {
            let step = reporter.step(format!("forget {dataset} at site {site}"));
            match protector.forget(&dataset, &site, args.prune) {
                Ok(r) => step.done(
                    &format!(
                        "{} kept, {} removed, {} bytes freed",
                        r.kept.len(),
                        r.removed.len(),
                        r.pruned_bytes
                    ),
                    serde_json::json!({"dataset": dataset, "site": site, "report": r}),
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
