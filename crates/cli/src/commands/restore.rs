//! `resurgo restore DATASET --site S [--at TIME] [--to PATH]`: restore a dataset from the
//! repository at site S — the newest point, or the newest at or before TIME.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use resurgo_spec::{DatasetKind, PgMethod};

use crate::common::{Context, SpecArgs};
use crate::exit;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset to restore.
    pub dataset: String,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The site whose repository to restore from.
    #[arg(long)]
    pub site: String,
    /// Restore the state as of this time (RFC 3339, e.g. 2026-11-21T10:15:00Z).
    #[arg(long, value_name = "TIME", value_parser = crate::common::parse_time)]
    pub at: Option<String>,
    /// Where to restore (default: the dataset's own location at that site, which must not exist yet).
    #[arg(long, value_name = "PATH")]
    pub to: Option<PathBuf>,
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
    let kind = system.datasets.get(&args.dataset).map(|d| (d.kind, d.method));
    // A logical dump is restored into the database its connection names: no folder at all.
    let logical = kind == Some((DatasetKind::Postgres, Some(PgMethod::Logical)));
    let to = match &args.to {
        Some(p) => p.clone(),
        None if !logical && kind.is_some_and(|(k, _)| k == DatasetKind::Postgres) => bail!(
            "dataset `{}` is restored as a PostgreSQL data directory: give --to, an empty folder",
            args.dataset
        ),
        None => {
            let p = protector.data_path(&args.dataset, &args.site)?;
            p.parent().map(PathBuf::from).unwrap_or(p)
        }
    };
    if !logical && to.exists() && std::fs::read_dir(&to).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(
            "{} exists and is not empty: restore refuses to overwrite; choose an empty --to",
            to.display()
        );
    }
    let reporter = Reporter::new(args.json);
    let step = reporter.step(format!(
        "restore {} from site {} into {}",
        args.dataset,
        args.site,
        to.display()
    ));
    match protector.restore(
        &args.dataset,
        &args.site,
        args.at.as_deref(),
        &to,
        resurgo_controller::protect::RestoreFor::Inspection,
    ) {
        Ok(snap) => {
            step.done(
                &format!("snapshot {} of {}", &snap.id[..8.min(snap.id.len())], snap.time),
                serde_json::json!({"dataset": args.dataset, "site": args.site, "to": to, "snapshot": snap}),
            );
            Ok(exit::code(exit::OK))
        }
        Err(e) => {
            step.failed(&e.to_string());
            Ok(exit::code(exit::ERROR))
        }
    }
}

/// With `api`: the site's agent restores from its own repository into a folder of its own
/// beside the live data (`<state>/restores/`), never over it, and says where.
fn through_agents(args: &Args, written: &resurgo_spec::System) -> anyhow::Result<ExitCode> {
    if args.to.is_some() {
        bail!("--to names a folder on this machine; through the agents the restore goes into the site's own `restores` folder, which the answer names");
    }
    let client = crate::remote::client(&args.spec, written, std::time::Duration::from_secs(3600))?;
    let (_, roles, _) = crate::remote::current(&client, written);
    let done = crate::remote::dataset_op(
        &client,
        written,
        &roles,
        &args.site,
        &args.dataset,
        crate::remote::DatasetAction::Restore { at: args.at.as_deref() },
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&done)?);
    } else {
        println!("{} at {}: {}", args.dataset, args.site, done.detail);
    }
    Ok(exit::code(exit::OK))
}
