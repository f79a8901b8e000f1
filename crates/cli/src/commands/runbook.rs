//! `resurgo runbook [--to SITE] [--format md|html] [-o FILE]`: the recovery plan as the
//! checklist a team rehearses (a tabletop exercise). Each step of the failover from where the
//! services are active now to SITE (default: their standby site) with who answers for it,
//! what resurgo runs, how a person does it by hand, and how long it took in past runs of the
//! same step — p50 and p95 with the day of the newest, from the runs journaled under
//! `<state>/runs/` (a live drill's failover is one of them), marked stale past the cadence of
//! the drill that covers it (90 days without one) or never exercised —; and the RTO budget.
//! Changes nothing. With `api`, where services are active and the runs are the agents'.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use resurgo_plan::recovery::failover_steps;
use resurgo_spec::System;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site the services move to (default: the standby site of the services active at
    /// `--from`).
    #[arg(long)]
    pub to: Option<String>,
    /// The site they leave (default: the one site where services are active).
    #[arg(long)]
    pub from: Option<String>,
    /// md (Markdown, for a wiki or a pull request) or html (one self-contained page to print
    /// or tick off in a browser).
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// Write it to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Md,
    Html,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, false)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let written = &desired.loaded.system;
    // With `api`, where services are active now is what the agents report, and the runs are
    // kept by the agents that executed them.
    let (system, runs) = match written.api {
        Some(_) => {
            let client = crate::remote::client(&args.spec, written, crate::remote::TIMEOUT)?;
            let (current, _, _) = crate::remote::current(&client, written);
            let runs = super::runs::of_agents(&args.spec, written, None)?;
            (current, runs)
        }
        None => {
            let runs = resurgo_controller::report::runs(&args.spec.state, None).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (the runs under {} are read for the measurements)",
                    args.spec.state.display()
                )
            })?;
            (written.clone(), runs)
        }
    };
    let from = match &args.from {
        Some(f) => f.clone(),
        None => active_site(&system, args.to.as_deref())?,
    };
    let to = match &args.to {
        Some(t) => t.clone(),
        None => standby_site(&system, &from)?,
    };
    let steps = failover_steps(&system, &from, &to).map_err(|e| anyhow::anyhow!("no recovery plan to `{to}`: {e}"))?;
    let reports: Vec<_> = runs.into_iter().map(|r| r.report).collect();
    let tabletop = resurgo_runbook::tabletop::tabletop(
        &system,
        &from,
        &to,
        steps,
        &reports,
        &desired.source.label(),
        SystemTime::now(),
    )?;
    let text = match args.format {
        Format::Md => resurgo_runbook::tabletop::markdown(&tabletop),
        Format::Html => resurgo_runbook::tabletop::html(&tabletop),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(exit::code(exit::OK))
}

/// The one site where services are active, other than `to`.
fn active_site(system: &System, to: Option<&str>) -> anyhow::Result<String> {
    let mut sites: Vec<&str> = system
        .services
        .values()
        .map(|s| s.site.as_str())
        .filter(|s| Some(*s) != to)
        .collect();
    sites.sort();
    sites.dedup();
    match sites.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("no service is active at a site it could move from: nothing to rehearse"),
        many => bail!(
            "services are active at several sites ({}): name the one to leave with --from",
            many.join(", ")
        ),
    }
}

/// The standby site of the services active at `from`: the first standby the first of them
/// names.
fn standby_site(system: &System, from: &str) -> anyhow::Result<String> {
    system
        .services
        .values()
        .filter(|s| s.site == from)
        .find_map(|s| s.standby.first().cloned())
        .with_context(|| {
            format!("no service active at `{from}` names a standby site (`standby:`): name the target with --to")
        })
}
