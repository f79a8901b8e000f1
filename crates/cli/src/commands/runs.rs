//! `resurgo runs [RUN]`: the history of failovers and failbacks, each with its timeline, read
//! from the runs' journals (`<state>/runs/`).
//!
//! `--json` prints [`Runs`] (also for `--resume`): a versioned format ([`FORMAT_VERSION`])
//! whose JSON Schema, generated from these types, is `schema/runs.schema.json` (`resurgo
//! schema --output runs`).

use std::process::ExitCode;

use resurgo_controller::report;

use crate::exit;

pub use resurgo_api::types::{Run, Runs, RUNS_FORMAT_VERSION as FORMAT_VERSION};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show one run's timeline (default: every run, oldest first).
    pub run: Option<String>,
    /// Resume RUN after its process was killed: it ends where it would have.
    #[arg(long, requires = "run")]
    pub resume: bool,
    #[command(flatten)]
    pub spec: crate::common::SpecArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let (true, Some(id)) = (args.resume, &args.run) {
        return resume(&args, id);
    }
    let dir = args.spec.state.join("runs");
    // With a spec that declares `api`, the runs are at the sites whose agents executed them.
    let remote = args.spec.load().ok().filter(|d| d.loaded.system.api.is_some());
    let runs = match &remote {
        Some(desired) => of_agents(&args.spec, &desired.loaded.system, args.run.as_deref())?,
        None => report::runs(&args.spec.state, args.run.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    if let (Some(id), true) = (&args.run, runs.is_empty()) {
        match remote {
            Some(_) => anyhow::bail!("no agent that answered knows run `{id}`"),
            None => anyhow::bail!("no run `{id}` in {}", dir.display()),
        }
    }
    if args.json {
        print_json(runs)?;
        return Ok(exit::code(exit::OK));
    }
    if runs.is_empty() {
        println!("no runs yet in {}", dir.display());
    }
    for Run { report: r, measures } in &runs {
        println!("run {} — {}, epoch {}: {}", r.run, r.kind, r.epoch, r.outcome);
        if let Some(m) = measures {
            let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.2}s"));
            println!(
                "  detection {}, decision {}, preempt {}, RTO {}, RPO {}{}",
                show(m.detection_s),
                show(m.decision_s),
                show(m.preempt_s),
                show(m.rto_s),
                show(m.rpo_s),
                if m.accept_data_loss {
                    " (data loss accepted)"
                } else {
                    ""
                }
            );
        }
        if args.run.is_some() {
            for s in &r.steps {
                let took = s
                    .millis
                    .map(|m| format!("{:.2}s", m as f64 / 1000.0))
                    .unwrap_or_default();
                println!(
                    "  {:<30} {:<8} {} {}",
                    s.name,
                    took,
                    s.started.as_deref().unwrap_or(""),
                    s.outcome
                );
            }
        }
    }
    Ok(exit::code(exit::OK))
}

/// Every site's runs (or the one named), asked of its agent, oldest first. An agent that does
/// not answer is named on stderr: its runs are unknown, not absent.
pub fn of_agents(
    spec: &crate::common::SpecArgs,
    system: &resurgo_spec::System,
    only: Option<&str>,
) -> anyhow::Result<Vec<Run>> {
    let client = crate::remote::client(spec, system, crate::remote::TIMEOUT)?;
    let path = only.map_or_else(|| "/v1/runs".to_string(), |id| format!("/v1/runs/{id}"));
    let mut runs = Vec::new();
    for site in system.sites.keys() {
        let addr = crate::remote::address(system, site)?;
        match client.get::<Runs>(&addr, &path) {
            Ok(found) => runs.extend(found.runs),
            Err(resurgo_api::ClientError::Refused { status: 404, .. }) => {}
            Err(e) => eprintln!("site `{site}`: its runs are unknown: {e}"),
        }
    }
    runs.sort_by_key(|r| resurgo_controller::failover::started_ms(&r.report.run).unwrap_or(0));
    Ok(runs)
}

fn resume(args: &Args, id: &str) -> anyhow::Result<ExitCode> {
    let Some(desired) = crate::common::load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let engine = args.spec.engine_for(&desired)?;
    let report = resurgo_controller::failover::resume(&desired.loaded.system, &engine, &args.spec.state, id)?;
    if let Some(next) = resurgo_controller::failover::where_it_stands(&desired.loaded.system, &args.spec.state, &report)
    {
        eprintln!("{next}");
    }
    let ok = matches!(report.outcome, resurgo_runbook::run::RunOutcome::Succeeded);
    if args.json {
        print_json(vec![report::run_of(report, &args.spec.state)])?;
    } else {
        println!("run {} resumed: {}", report.run, report.outcome);
    }
    Ok(exit::code(if ok { exit::OK } else { exit::ERROR }))
}

fn print_json(runs: Vec<Run>) -> anyhow::Result<()> {
    let runs = Runs {
        format_version: FORMAT_VERSION,
        runs,
    };
    println!("{}", serde_json::to_string_pretty(&runs)?);
    Ok(())
}
