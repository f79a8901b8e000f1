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
    match protector.restore(&args.dataset, &args.site, args.at.as_deref(), &to, false) {
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
