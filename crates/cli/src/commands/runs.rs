//! `resurgo runs [RUN]`: the history of failovers and failbacks, each with its timeline, read
//! from the runs' journals (`<state>/runs/`).
//!
//! `--json` prints [`Runs`] (also for `--resume`): a versioned format ([`FORMAT_VERSION`])
//! whose JSON Schema, generated from these types, is `schema/runs.schema.json` (`resurgo
//! schema --output runs`).

use std::process::ExitCode;

use resurgo_runbook::run::{RunReport, Runner};
use schemars::JsonSchema;
use serde::Serialize;

use crate::exit;

/// Version of the `runs --json` format. Bump on any incompatible change (a field removed,
/// renamed or changing meaning); a new field is compatible.
pub const FORMAT_VERSION: u32 = 1;

/// Failover and failback runs, oldest first (`resurgo runs --json`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Runs {
    /// The version of this format; 1 so far.
    pub format_version: u32,
    /// The runs asked for: every run, or the one named (resumed with `--resume`).
    pub runs: Vec<Run>,
}

/// One run: its report, read from its journal, and what it measured.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Run {
    #[serde(flatten)]
    pub report: RunReport,
    /// What the run measured (null: it stored nothing, e.g. it did not finish).
    pub measures: Option<Measures>,
}

/// What a run measured, in seconds (null: not measured).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Measures {
    /// Last heartbeat from the lost site → declared dead (runs an agent started).
    pub detection_s: Option<f64>,
    /// Declared dead → failover decided (promotion delay and policy).
    pub decision_s: Option<f64>,
    /// The fault (for a run started by a person, the run's start) → the services answer at
    /// the target.
    pub rto_s: Option<f64>,
    /// Writes that may be lost, as time: for a promoted standby, its last measured lag.
    pub rpo_s: Option<f64>,
    /// Whether the run was allowed to promote beyond the RPO objective.
    pub accept_data_loss: bool,
}

impl Run {
    fn of(report: RunReport, state: &std::path::Path) -> Run {
        let measures = resurgo_controller::failover::measures(state, &report.run).map(|m| Measures {
            detection_s: m.detection_s,
            decision_s: m.decision_s,
            rto_s: m.rto_s,
            rpo_s: m.rpo_s,
            accept_data_loss: m.accept_data_loss,
        });
        Run { report, measures }
    }
}

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
    let runner = Runner::new(&dir);
    let mut ids: Vec<String> = match &args.run {
        Some(r) => vec![r.clone()],
        None => std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default(),
    };
    // Run ids end with their start time in milliseconds: oldest first.
    ids.sort_by_key(|id| resurgo_controller::failover::started_ms(id).unwrap_or(0));
    let mut reports = Vec::new();
    for id in &ids {
        reports.push(runner.report(id).map_err(|e| anyhow::anyhow!("run `{id}`: {e}"))?);
    }
    let runs: Vec<Run> = reports.into_iter().map(|r| Run::of(r, &args.spec.state)).collect();
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
                "  detection {}, decision {}, RTO {}, RPO {}{}",
                show(m.detection_s),
                show(m.decision_s),
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
        print_json(vec![Run::of(report, &args.spec.state)])?;
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
