//! `resurgo runs [RUN]`: the history of failovers and failbacks, each with its timeline, read
//! from the runs' journals (`<state>/runs/`).

use std::process::ExitCode;

use resurgo_runbook::run::Runner;

use crate::exit;

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
    ids.sort_by_key(|id| id.rsplit('-').next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0));
    let mut reports = Vec::new();
    for id in &ids {
        reports.push(runner.report(id).map_err(|e| anyhow::anyhow!("run `{id}`: {e}"))?);
    }
    let measured = |id: &str| resurgo_controller::failover::measures(&args.spec.state, id);
    if args.json {
        let mut runs = Vec::new();
        for r in &reports {
            let mut value = serde_json::to_value(r)?;
            value["measures"] = serde_json::to_value(measured(&r.run))?;
            runs.push(value);
        }
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(exit::code(exit::OK));
    }
    if reports.is_empty() {
        println!("no runs yet in {}", dir.display());
    }
    for r in &reports {
        println!("run {} — {}, epoch {}: {}", r.run, r.kind, r.epoch, r.outcome);
        if let Some(m) = measured(&r.run) {
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("run {} resumed: {}", report.run, report.outcome);
    }
    let ok = matches!(report.outcome, resurgo_runbook::run::RunOutcome::Succeeded);
    Ok(exit::code(if ok { exit::OK } else { exit::ERROR }))
}
