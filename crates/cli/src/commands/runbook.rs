//! `resurgo runbook [--to SITE] [--format md|html] [-o FILE]`: the recovery plan as the
//! checklist a team rehearses (a tabletop exercise). Each step of the failover from where the
//! services are active now to SITE (default: their standby site) with who answers for it,
//! what resurgo runs, how a person does it by hand, and how long it took in past runs of the
//! same step — p50 and p95 with the day of the newest, from the runs of the same move
//! (failovers and failbacks from the one site to the other) journaled under
//! `<state>/runs/` (a live drill's failover is one of them), marked stale past the cadence of
//! the drill that covers it (90 days without one) or never exercised —; and the RTO budget.
//! Changes nothing. With `api`, where services are active and the runs are the agents'. Once
//! the services have moved, the plan shown is the one from where the spec places them.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use resurgo_plan::recovery::{failover_steps, RecoveryStep};
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
    let loaded = &desired.loaded.system;
    // Where services are active now: with `api`, what the agents report (and the runs are
    // kept by the agents that executed them); else the spec with the store's assignments.
    let (current, written, runs) = match loaded.api {
        Some(_) => {
            let client = crate::remote::client(&args.spec, loaded, crate::remote::TIMEOUT)?;
            let (current, _, _) = crate::remote::current(&client, loaded);
            let runs = super::runs::of_agents(&args.spec, loaded, None)?;
            (current, loaded.clone(), runs)
        }
        None => {
            let runs = resurgo_controller::report::runs(&args.spec.state, None).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (the runs under {} are read for the measurements)",
                    args.spec.state.display()
                )
            })?;
            let written =
                resurgo_controller::desired::load(&args.spec.source(), &args.spec.state.join("git"), &args.spec.set)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            (loaded.clone(), written.loaded.system, runs)
        }
    };
    // The move from where the services are now; once they have moved (to `--to`, say), the one
    // from where the spec places them, which is what the team rehearses.
    let (system, from, to, steps, note) = match plan_of(&current, &args) {
        Ok((from, to, steps)) => (current, from, to, steps, None),
        Err(now) => match plan_of(&written, &args) {
            Ok((from, to, steps)) => {
                let mut at: Vec<&str> = current.services.values().map(|s| s.site.as_str()).collect();
                at.sort();
                at.dedup();
                let note = format!(
                    "The services are active at {} now, not where the spec places them: this is the plan from their home site {from}.",
                    at.join(", ")
                );
                (written, from, to, steps, Some(note))
            }
            Err(_) => return Err(now),
        },
    };
    let reports: Vec<_> = runs.into_iter().map(|r| r.report).collect();
    let mut tabletop = resurgo_runbook::tabletop::tabletop(
        &system,
        &from,
        &to,
        steps,
        &reports,
        &desired.source.label(),
        SystemTime::now(),
    )?;
    tabletop.note = note;
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

/// The site to leave, the target and the recovery plan's steps, in `system`.
fn plan_of(system: &System, args: &Args) -> anyhow::Result<(String, String, Vec<RecoveryStep>)> {
    let from = match &args.from {
        Some(f) => f.clone(),
        None => active_site(system, args.to.as_deref())?,
    };
    let to = match &args.to {
        Some(t) => t.clone(),
        None => standby_site(system, &from)?,
    };
    let steps = failover_steps(system, &from, &to).map_err(|e| anyhow::anyhow!("no recovery plan to `{to}`: {e}"))?;
    Ok((from, to, steps))
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
