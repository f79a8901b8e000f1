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
    if let Some(desired) = crate::remote::declared(&args.spec) {
        return through_agents(&args, &desired.loaded.system);
    }
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

/// With `api`: each site verifies the newest point in its own repository, by its agent.
fn through_agents(args: &Args, written: &resurgo_spec::System) -> anyhow::Result<ExitCode> {
    let client = crate::remote::client(&args.spec, written, std::time::Duration::from_secs(3600))?;
    let (current, roles, _) = crate::remote::current(&client, written);
    let ds = written
        .datasets
        .get(&args.dataset)
        .ok_or_else(|| anyhow::anyhow!("no dataset `{}` in the spec", args.dataset))?;
    let service = current.services.get(&ds.service);
    let sites = match &args.site {
        Some(site) => vec![site.clone()],
        None if !ds.replicate_to.is_empty() => ds.replicate_to.clone(),
        None => match service {
            Some(s) if !s.standby.is_empty() => s.standby.clone(),
            Some(s) => vec![s.site.clone()],
            None => vec![],
        },
    };
    let mut failed = 0;
    for site in sites {
        match crate::remote::dataset_op(
            &client,
            written,
            &roles,
            &site,
            &args.dataset,
            crate::remote::DatasetAction::Verify,
        ) {
            Ok(done) if args.json => println!("{}", serde_json::to_string(&done)?),
            Ok(done) => println!("{} at {site}: {}", args.dataset, done.detail),
            Err(e) => {
                failed += 1;
                eprintln!("{} at {site}: not verified: {e:#}", args.dataset);
            }
        }
    }
    Ok(exit::code(if failed == 0 { exit::OK } else { exit::ERROR }))
}
