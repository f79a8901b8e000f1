//! `resurgo failback [--to SITE]`: moves the services back to the site the spec places them
//! at, after a failover. First reverse replication — the returning site is brought up as a
//! standby of the current primary (an old primary's data is set aside and the standby seeded
//! afresh) and caught up — then a planned switch with no data loss: the current primary's
//! writers stop, then its databases (a clean shutdown sends their last WAL to the standby),
//! the final sync is checked, and the returning site is promoted.

use std::process::ExitCode;

use std::time::Duration;

use anyhow::bail;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site to return to (default: the one site the spec places the moved services at).
    #[arg(long)]
    pub to: Option<String>,
    /// Print the plan with estimated durations; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Promote even when a standby's lag exceeds the RPO objective (recorded with the run).
    #[arg(long)]
    pub accept_data_loss: bool,
    /// How long to wait for the returning site's standbys to catch up.
    #[arg(long, default_value = "5m", value_parser = resurgo_spec::Duration::parse)]
    pub catch_up: resurgo_spec::Duration,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let spec = resurgo_controller::desired::load(&args.spec.source(), &args.spec.state.join("git"), &args.spec.set)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // With `api`, where services are active now is what the agents report.
    let remote = match desired.loaded.system.api {
        Some(_) => {
            let client = crate::remote::client(
                &args.spec,
                &spec.loaded.system,
                args.catch_up.0 + Duration::from_secs(60),
            )?;
            let (current, roles, _) = crate::remote::current(&client, &spec.loaded.system);
            Some((client, current, roles))
        }
        None => None,
    };
    let now = remote
        .as_ref()
        .map_or(&desired.loaded.system, |(_, current, _)| current);
    // (where the services run now, where the spec places them), for every moved service.
    let mut moves: Vec<(String, String)> = now
        .services
        .iter()
        .filter_map(|(name, now)| {
            let home = &spec.loaded.system.services.get(name)?.site;
            (*home != now.site && args.to.as_ref().is_none_or(|t| t == home)).then(|| (now.site.clone(), home.clone()))
        })
        .collect();
    moves.sort();
    moves.dedup();
    let (from, to) = match moves.as_slice() {
        [one] => one.clone(),
        [] => bail!("nothing to fail back: every service runs where the spec places it"),
        many => bail!(
            "services moved between several sites ({}): name the site to return to with --to",
            many.iter()
                .map(|(f, t)| format!("{f} → {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let options = resurgo_controller::failover::RunOptions {
        failback: true,
        accept_data_loss: args.accept_data_loss,
        ..Default::default()
    };
    if let (Some((client, current, roles)), false) = (&remote, args.dry_run) {
        // The returning site's agent brings it up as a standby, waits for it to catch up,
        // then switches.
        let ok = crate::remote::start_and_follow(
            client,
            &spec.loaded.system,
            current,
            roles,
            resurgo_runbook::plan::PlanKind::Failback,
            &from,
            &to,
            args.accept_data_loss,
            args.catch_up.0 + Duration::from_secs(600),
            crate::remote::Echo::json(args.json),
        )?;
        return Ok(exit::code(if ok { exit::OK } else { exit::ERROR }));
    }
    if args.dry_run {
        return crate::commands::failover::run_move(&args.spec, &desired, &from, &to, options, true, args.json);
    }
    // Reverse replication: the returning site as a standby of the current primary.
    let engine = args.spec.engine_for(&desired)?;
    let json = args.json;
    resurgo_controller::failover::prepare_failback(
        &engine,
        &desired,
        &args.spec.state,
        &from,
        &to,
        args.catch_up.0,
        &|line| {
            if !json {
                println!("{line}");
            }
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::commands::failover::run_move(&args.spec, &desired, &from, &to, options, false, args.json)
}
