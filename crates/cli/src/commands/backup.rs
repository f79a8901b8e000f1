//! `resurgo backup [DATASET]`: back up datasets at their home site (all, or one), optionally
//! replicating each to its replica sites right after.

use std::process::ExitCode;

use crate::common::{Context, SpecArgs};
use crate::exit;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset to back up (default: all).
    pub dataset: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Also replicate each backup to the dataset's replica sites.
    #[arg(long)]
    pub replicate: bool,
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
    let (system, protector) = (ctx.system(), ctx.protector());
    let datasets = crate::common::datasets(system, args.dataset.as_deref())?;
    let reporter = Reporter::new(args.json);
    let mut failed = false;
    for dataset in datasets {
        let site = protector.home_site(&dataset)?;
        let step = reporter.step(format!("back up {dataset} at site {site}"));
        match protector.backup(&dataset) {
            Ok(snap) => step.done(
                &format!(
                    "snapshot {} ({} files, {} bytes, {} new)",
                    &snap.id[..8.min(snap.id.len())],
                    snap.files,
                    snap.bytes,
                    snap.added
                ),
                serde_json::json!({"dataset": dataset, "site": site, "snapshot": snap}),
            ),
            Err(e) => {
                failed = true;
                step.failed(&e.to_string());
                continue;
            }
        }
        if args.replicate {
            for to in protector.replica_sites(&dataset)? {
                let step = reporter.step(format!("replicate {dataset} {site} → {to}"));
                match protector.replicate(Some(&dataset), &site, &to) {
                    Ok(r) => step.done(
                        &format!(
                            "{} snapshots and {} log segments copied, {} bytes",
                            r.snapshots_copied, r.segments_copied, r.bytes
                        ),
                        serde_json::json!({"dataset": dataset, "from": site, "to": to, "report": r}),
                    ),
                    Err(e) => {
                        failed = true;
                        step.failed(&e.to_string());
                    }
                }
            }
        }
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}

/// With `api`: each dataset is backed up by the agent of the site where it is active now (its
/// data is there), which also replicates it with `--replicate`.
fn through_agents(args: &Args, written: &resurgo_spec::System) -> anyhow::Result<ExitCode> {
    let client = crate::remote::client(&args.spec, written, std::time::Duration::from_secs(3600))?;
    let (current, roles, _) = crate::remote::current(&client, written);
    let mut failed = 0;
    for dataset in crate::common::datasets(written, args.dataset.as_deref())? {
        let home = current
            .services
            .get(&written.datasets[&dataset].service)
            .map(|s| s.site.clone())
            .unwrap_or_default();
        match crate::remote::dataset_op(
            &client,
            written,
            &roles,
            &home,
            &dataset,
            crate::remote::DatasetAction::Backup {
                replicate: args.replicate,
            },
        ) {
            Ok(done) if args.json => println!("{}", serde_json::to_string(&done)?),
            Ok(done) => println!("{dataset} at {home}: {}", done.detail),
            Err(e) => {
                failed += 1;
                eprintln!("{dataset} at {home}: not backed up: {e:#}");
            }
        }
    }
    Ok(exit::code(if failed == 0 { exit::OK } else { exit::ERROR }))
}
