//! `resurgo drill run|resume|list|report`: practise a declared loss and keep the evidence.
//! `run` injects the drill's faults, lets the system recover on its own, measures RTO and RPO
//! against the objectives, always tears down, checks for leftovers and writes the report
//! (`<state>/drills/<run>/report.json`); `report` renders one as JSON, Markdown, HTML (with a
//! timeline picture) or JUnit XML. Exit codes: 0 the drill passed, 1 it failed or could not
//! run, 64 a bad command line.
//!
//! When the spec declares `api` (sites on hosts of their own), the drill runs from any host
//! with the spec and credentials, as the other commands do: its faults are orders to the
//! sites' agents (`/v1/faults`), which apply them and revert them by themselves past their
//! `until`; it sees the sites through their reports, follows their events into this host's
//! event log, reads where services are active from the agents' roles, and fails back
//! through the returning site's agent. What needs a site's files (a SQLite or directory
//! canary) or a route on a loopback address cannot be measured from here yet: the report
//! says so.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Subcommand, ValueEnum};
use resurgo_controller::drill::{self, DrillContext};
use resurgo_drill::{Report, Verdict};
use resurgo_spec::DrillMode;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DrillCommand,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run a drill declared in the spec: steady state, faults (each undo written first),
    /// recovery measured, teardown (always: also on SIGINT, SIGTERM or the deadline), leak
    /// check, report. Exit 0 when its verdict is pass.
    Run {
        /// The drill's name in the spec (`drills:`).
        name: String,
        /// Run it isolated (a sandbox at the DR site), whatever the spec says.
        #[arg(long, conflicts_with = "live")]
        isolated: bool,
        /// Run it live (the faults are real), whatever the spec says.
        #[arg(long)]
        live: bool,
        #[command(flatten)]
        spec: SpecArgs,
        /// Print the report as JSON instead of its summary.
        #[arg(long)]
        json: bool,
    },
    /// Finish a drill run whose process died: straight to teardown, leak check, report.
    Resume {
        /// The run (`resurgo drill list` names unfinished ones); default: the one unfinished.
        run: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long)]
        json: bool,
    },
    /// The drills the spec declares, each with its last run and whether it is due.
    List {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long)]
        json: bool,
    },
    /// Render a drill run's report.
    Report {
        /// The run (as `resurgo drill list` shows it); `latest` for the newest.
        run: String,
        /// json (the report itself), md, html (a page with the timeline drawn) or junit (one
        /// test case per objective, probe, data check and the leak check).
        #[arg(long, value_enum, default_value = "md")]
        format: Format,
        /// Write it to this file instead of stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Md,
    Html,
    Junit,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        DrillCommand::Run {
            name,
            isolated,
            live,
            spec,
            json,
        } => {
            let Some(desired) = load_or_report(&spec, json)? else {
                return Ok(exit::code(exit::ERROR));
            };
            let Some(declared) = desired.loaded.system.drills.get(&name) else {
                let names: Vec<&String> = desired.loaded.system.drills.keys().collect();
                bail!("no drill `{name}` in the spec (drills: {names:?})");
            };
            let mode = match (isolated, live) {
                (true, _) => DrillMode::Isolated,
                (_, true) => DrillMode::Live,
                _ => declared.mode,
            };
            with_context(&spec, |ctx| drill::run(ctx, &name, mode), json)
        }
        DrillCommand::Resume { run, spec, json } => {
            let run = match run {
                Some(r) => r,
                None => match drill::unfinished(&spec.state).as_slice() {
                    [one] => one.clone(),
                    [] => bail!("no drill run is unfinished: nothing to resume"),
                    many => bail!("several drill runs are unfinished ({}): name one", many.join(", ")),
                },
            };
            with_context(&spec, |ctx| drill::resume(ctx, &run), json)
        }
        DrillCommand::List { spec, json } => list(&spec, json),
        DrillCommand::Report {
            run,
            format,
            output,
            spec,
        } => {
            let report = find(&spec, &run)?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&report)? + "\n",
                Format::Md => resurgo_drill::markdown(&report),
                Format::Html => resurgo_drill::html(&report),
                Format::Junit => resurgo_drill::junit(&report),
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{text}"),
            }
            Ok(exit::code(exit::OK))
        }
    }
}

/// Runs `f` in a drill's context (see [`execute`]) and prints its report: the summary, or the
/// JSON. Exit 0 when the verdict is pass.
fn with_context(
    spec: &SpecArgs,
    f: impl FnOnce(&DrillContext) -> Result<Report, drill::DrillError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !json {
        eprintln!("drill running; Ctrl-C ends it (teardown still runs)");
    }
    let report = match execute(spec, f)? {
        Ok(r) => r,
        Err(why) => {
            eprintln!("error: {why}");
            return Ok(exit::code(exit::ERROR));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, &spec.state);
    }
    Ok(exit::code(if report.verdict == Verdict::Pass {
        exit::OK
    } else {
        exit::ERROR
    }))
}

/// Sets up what a drill needs — the engine, the spec now and as written, the failback, and
/// SIGINT/SIGTERM turned into a flag the drill watches — and runs `f` with it. The report, or
/// why the drill was refused.
pub fn execute(
    spec: &SpecArgs,
    f: impl FnOnce(&DrillContext) -> Result<Report, drill::DrillError>,
) -> anyhow::Result<Result<Report, String>> {
    let written = resurgo_controller::desired::load(&spec.source(), &spec.state.join("git"), &spec.set)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Across hosts: the agents' API, with a client for quick questions and one that waits for
    // a failback to start (its returning site catches up first).
    let remote = match written.loaded.system.api {
        Some(_) => Some((
            crate::remote::client(spec, &written.loaded.system, crate::remote::TIMEOUT)?,
            crate::remote::client(spec, &written.loaded.system, FAILBACK_WAIT + Duration::from_secs(60))?,
        )),
        None => None,
    };
    let desired = spec.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = spec.engine_for(&desired)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone()).context("cannot watch for SIGINT/SIGTERM")?;
    }
    let load = || -> Result<(resurgo_spec::System, String), String> {
        let d = spec.load().map_err(|e| e.to_string())?;
        match &remote {
            // Where services are active is what the agents' roles say.
            Some((client, _)) => Ok((crate::remote::current(client, &d.loaded.system).0, d.source.label())),
            None => Ok((d.loaded.system, d.source.label())),
        }
    };
    let failback = |from: &str, to: &str| -> Result<(), String> {
        if let Some((_, client)) = &remote {
            let (current, roles, _) = crate::remote::current(client, &written.loaded.system);
            let ok = crate::remote::start_and_follow(
                client,
                &written.loaded.system,
                &current,
                &roles,
                resurgo_runbook::plan::PlanKind::Failback,
                from,
                to,
                false,
                FAILBACK_WAIT + Duration::from_secs(600),
                crate::remote::Echo::Quiet,
            )
            .map_err(|e| format!("{e:#}"))?;
            return match ok {
                true => Ok(()),
                false => Err(format!(
                    "the failback run at `{to}` did not succeed: see `resurgo runs`"
                )),
            };
        }
        let desired = spec.load().map_err(|e| e.to_string())?;
        let engine = spec.engine_for(&desired).map_err(|e| e.to_string())?;
        resurgo_controller::failover::prepare_failback(
            &engine,
            &desired,
            &spec.state,
            from,
            to,
            FAILBACK_WAIT,
            &|line| eprintln!("  {line}"),
        )
        .map_err(|e| e.to_string())?;
        let desired = spec.load().map_err(|e| e.to_string())?;
        let report = resurgo_controller::failover::execute(
            &written.loaded.system,
            &desired.loaded.system,
            &engine,
            &spec.state,
            from,
            to,
            resurgo_controller::failover::RunOptions {
                failback: true,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        match report.outcome {
            resurgo_runbook::run::RunOutcome::Succeeded => Ok(()),
            other => Err(format!("the failback run {}: {other}", report.run)),
        }
    };
    let in_process = resurgo_controller::faults::InProcess {
        engine: &engine,
        state_dir: &spec.state,
    };
    let remote_faults = remote.as_ref().map(|(client, _)| {
        // The agents' events, copied here from now on: the drill reads detection and
        // recovery from its own event log.
        crate::remote::mirror_events(
            client,
            &written.loaded.system,
            resurgo_controller::EventLog::of_state(&spec.state),
        );
        crate::remote::RemoteFaults {
            client: client.clone(),
            system: written.loaded.system.clone(),
        }
    });
    let faults: &dyn resurgo_controller::faults::FaultSink = match &remote_faults {
        Some(r) => r,
        None => &in_process,
    };
    let ctx = DrillContext {
        faults,
        engine: &engine,
        state_dir: &spec.state,
        load: &load,
        written: &written.loaded.system,
        failback: &failback,
        interrupted: interrupted.clone(),
        operator: operator(),
    };
    let report = match f(&ctx) {
        Ok(r) => r,
        Err(drill::DrillError::Refused(why)) => return Ok(Err(why)),
        Err(e) => return Err(e.into()),
    };
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("interrupted: torn down");
    }
    Ok(Ok(report))
}

/// How long a failback waits for the returning site's standbys to catch up.
const FAILBACK_WAIT: Duration = Duration::from_secs(300);

fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into());
    format!("{user}@{host}")
}

/// The report in a few lines, for a person.
pub fn print_summary(report: &Report, state: &std::path::Path) {
    println!(
        "drill {} ({}) — {}: {}",
        report.drill,
        report.run,
        report.outcome.as_str(),
        report.verdict.as_str()
    );
    if let Some(rto) = &report.rto {
        let part = |name: &str, v: Option<f64>| v.map(|v| format!("{name} {v:.2}s"));
        let parts: Vec<String> = [
            part("detect", rto.detect_s),
            part("decide", rto.decide_s),
            part("preempt", rto.preempt_s),
            part("execute", rto.execute_s),
            part("propagate", rto.propagate_s),
        ]
        .into_iter()
        .flatten()
        .collect();
        match rto.measured_s {
            Some(m) => println!("RTO {m:.2}s ({}); objective {}s", parts.join(", "), rto.objective_s),
            None => println!("RTO: the service did not come back; objective {}s", rto.objective_s),
        }
    }
    if let Some(rpo) = &report.rpo {
        match (rpo.writes_lost, rpo.seconds) {
            (Some(n), Some(s)) => println!("RPO {s:.2}s, {n} canary writes lost; objective {}s", rpo.objective_s),
            _ => println!(
                "RPO unknown (the recovered data could not be read); objective {}s",
                rpo.objective_s
            ),
        }
    }
    println!(
        "leftovers: {}",
        if report.leftovers.is_empty() {
            "[]".to_string()
        } else {
            report
                .leftovers
                .iter()
                .map(|l| format!("{} ({})", l.what, l.kind))
                .collect::<Vec<_>>()
                .join("; ")
        }
    );
    for f in &report.findings {
        println!("finding: {f}");
    }
    println!(
        "report: {} (render it with `resurgo drill report {} --format html`)",
        drill::report_path(state, &report.run).display(),
        report.run
    );
}

fn find(spec: &SpecArgs, run: &str) -> anyhow::Result<Report> {
    let all = drill::reports(&spec.state);
    let found = if run == "latest" {
        all.into_iter().next()
    } else {
        all.into_iter().find(|r| r.run == run)
    };
    found.with_context(|| {
        format!(
            "no report of drill run `{run}` in {} (see `resurgo drill list`)",
            spec.state.display()
        )
    })
}

fn list(spec: &SpecArgs, json: bool) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(spec, json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let reports = drill::reports(&spec.state);
    let unfinished = drill::unfinished(&spec.state);
    let now = resurgo_spec::units::parse_rfc3339(&resurgo_controller::events::now_rfc3339()).unwrap_or(0.0);
    let mut rows = Vec::new();
    for (name, d) in &desired.loaded.system.drills {
        let last = reports.iter().find(|r| &r.drill == name);
        let standing = resurgo_controller::freshness::standing(name, d, &reports, now);
        let (passed, due) = (standing.last_pass, standing.due);
        rows.push(serde_json::json!({
            "drill": name,
            "scope": d.scope.kind(),
            "targets": d.scope.targets(),
            "mode": match d.mode { DrillMode::Isolated => "isolated", DrillMode::Live => "live" },
            "cadence": d.cadence.map(|c| c.to_string()),
            "owners": d.owners,
            "last_run": last.map(|r| &r.run),
            "last_verdict": last.map(|r| r.verdict.as_str()),
            "last_pass": passed.map(|r| &r.started),
            "last_rto_s": passed.and_then(|r| r.rto.as_ref()?.measured_s),
            "last_rpo_s": passed.and_then(|r| r.rpo.as_ref()?.seconds),
            "due": due,
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "drills": rows, "unfinished": unfinished }))?
        );
        return Ok(exit::code(exit::OK));
    }
    if rows.is_empty() {
        println!("no drills declared (add them under `drills:` in the spec)");
    }
    for r in &rows {
        println!(
            "{:<20} {:<8} {:<8} last: {} {}{}",
            r["drill"].as_str().unwrap_or_default(),
            r["scope"].as_str().unwrap_or_default(),
            r["mode"].as_str().unwrap_or_default(),
            r["last_run"].as_str().unwrap_or("never run"),
            r["last_verdict"].as_str().unwrap_or(""),
            if r["due"] == true {
                "  (due: no pass within its cadence)"
            } else {
                ""
            }
        );
    }
    for run in &unfinished {
        println!("unfinished: {run} (`resurgo drill resume {run}` tears it down)");
    }
    Ok(exit::code(exit::OK))
}
