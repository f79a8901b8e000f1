//! `resurgo failover --to SITE --dry-run`: the recovery plan that would move every service
//! from its site to SITE — fence, data, services in dependency order, routes, verify — as a
//! checklist with owners and estimated durations, after checking that SITE can take over.
//! Without --dry-run the plan is executed by the journaled runbook (`<state>/runs/`). DNS and
//! hook routes are switched by the run; proxy routes are run by the controller, which must be
//! running for their steps to pass.

use std::process::ExitCode;

use anyhow::bail;
use resurgo_plan::recovery::failover_steps;
use resurgo_runbook::plan::{PlanKind, RecoveryPlan};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site to move to.
    #[arg(long)]
    pub to: String,
    /// The site to leave (default: the one site where services are active).
    #[arg(long)]
    pub from: Option<String>,
    /// Print the plan with estimated durations; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Promote a standby even when its lag exceeds the dataset's RPO objective (or is
    /// unknown). The choice is recorded with the run.
    #[arg(long)]
    pub accept_data_loss: bool,
    /// With `api`: how long to follow the run at the target's agent (through its restarts)
    /// before leaving it to finish on its own.
    #[arg(long, default_value = "10m", value_parser = resurgo_spec::Duration::parse)]
    pub wait: resurgo_spec::Duration,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let written = &desired.loaded.system;
    // With `api`, where services are active now is what the agents report.
    let remote = match written.api {
        Some(_) => {
            let client = crate::remote::client(&args.spec, written, crate::remote::TIMEOUT)?;
            let (current, roles, _) = crate::remote::current(&client, written);
            Some((client, current, roles))
        }
        None => None,
    };
    let system = remote.as_ref().map_or(written, |(_, current, _)| current);
    let from = match &args.from {
        Some(f) => f.clone(),
        None => {
            let mut sites: Vec<&str> = system
                .services
                .values()
                .map(|s| s.site.as_str())
                .filter(|s| *s != args.to)
                .collect();
            sites.sort();
            sites.dedup();
            match sites.as_slice() {
                [one] => one.to_string(),
                [] => bail!("no service is active anywhere but `{}`: nothing to move", args.to),
                many => bail!(
                    "services are active at several sites ({}): name the one to leave with --from",
                    many.join(", ")
                ),
            }
        }
    };
    if let (Some((client, current, roles)), false) = (&remote, args.dry_run) {
        let ok = crate::remote::start_and_follow(
            client,
            written,
            current,
            roles,
            PlanKind::Failover,
            &from,
            &args.to,
            args.accept_data_loss,
            args.wait.0,
            crate::remote::Echo::json(args.json),
        )?;
        return Ok(exit::code(if ok { exit::OK } else { exit::ERROR }));
    }
    let options = resurgo_controller::failover::RunOptions {
        accept_data_loss: args.accept_data_loss,
        ..Default::default()
    };
    run_move(&args.spec, &desired, &from, &args.to, options, args.dry_run, args.json)
}

/// Plans the move of every service active at `from` to `to`; prints it (`dry_run`) or runs it
/// under the journaled runbook and prints each step. Shared by failover and failback.
pub fn run_move(
    spec_args: &SpecArgs,
    desired: &resurgo_controller::Desired,
    from: &str,
    to: &str,
    options: resurgo_controller::failover::RunOptions,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let system = &desired.loaded.system;
    let what = if options.failback { "failback" } else { "failover" };
    let steps = failover_steps(system, from, to).map_err(|e| anyhow::anyhow!("refusing `{to}` as a target: {e}"))?;
    let plan = RecoveryPlan {
        id: format!("{what}-{from}-to-{to}"),
        kind: if options.failback {
            PlanKind::Failback
        } else {
            PlanKind::Failover
        },
        epoch: 0,
        steps: resurgo_controller::failover::step_specs(&steps),
    };
    plan.validate()?;
    if !dry_run {
        return execute(spec_args, desired, from, to, options, json);
    }
    if json {
        let (total, path) = plan.critical_path()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "from": from,
                "to": to,
                "source": desired.source,
                "steps": steps,
                "estimate_seconds": total.as_secs_f64(),
                "critical_path": path,
            }))?
        );
    } else {
        let title = if options.failback { "Failback" } else { "Failover" };
        println!(
            "{title} of system `{}` from {from} to {to} (dry run: nothing changed)\n",
            system.name
        );
        print!("{}", plan.render_checklist()?);
    }
    Ok(exit::code(exit::OK))
}

fn execute(
    spec_args: &SpecArgs,
    desired: &resurgo_controller::Desired,
    from: &str,
    to: &str,
    options: resurgo_controller::failover::RunOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let engine = spec_args.engine_for(desired)?;
    // The spec as written names the assignment group; `desired` has assignments applied.
    let spec = resurgo_controller::desired::load(&spec_args.source(), &spec_args.state.join("git"), &spec_args.set)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = std::time::Instant::now();
    resurgo_controller::failover::record_start(&spec_args.state, from, to, options.failback);
    let result = resurgo_controller::failover::execute(
        &spec.loaded.system,
        &desired.loaded.system,
        &engine,
        &spec_args.state,
        from,
        to,
        options,
    );
    resurgo_controller::failover::record_end(&spec_args.state, to, &result);
    let report = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for s in &report.steps {
            let took = s
                .millis
                .map(|m| format!(" ({:.2}s)", m as f64 / 1000.0))
                .unwrap_or_default();
            println!("{}: {}{took}", s.name, s.outcome);
        }
        println!(
            "run {} (epoch {}, {:.2}s): {}",
            report.run,
            report.epoch,
            started.elapsed().as_secs_f64(),
            report.outcome
        );
    }
    if let Some(next) = resurgo_controller::failover::where_it_stands(&desired.loaded.system, &spec_args.state, &report)
    {
        eprintln!("{next}");
    }
    let ok = matches!(report.outcome, resurgo_runbook::run::RunOutcome::Succeeded);
    Ok(exit::code(if ok { exit::OK } else { exit::ERROR }))
}
