//! `resurgo apply [FILE]`: make the sites match the spec. With FILE, apply exactly that saved
//! plan — refused when the spec or the observed state has changed since it was made.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use resurgo_controller::engine::{record_applied, Done};
use resurgo_controller::events::{Event, EventKind, EventLog};
use resurgo_plan::{observed_hash, Plan, PLAN_FORMAT_VERSION};

use crate::commands::plan::{compute, PlanFlags};
use crate::common::{load_or_report, SpecArgs};
use crate::exit;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan saved by `resurgo plan --out FILE`. Without it, plan and apply in one go.
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.plan.is_none() {
        if let Ok(desired) = args.spec.load() {
            if desired.loaded.system.api.is_some() {
                return through_agents(&args, &desired);
            }
        }
    }
    let (plan, desired, new_sites) = match &args.plan {
        None => match compute(&args.spec, args.flags.options(), args.json)? {
            Some(c) => (c.plan, c.desired, c.new_sites),
            None => return Ok(exit::code(exit::ERROR)),
        },
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read plan {}", path.display()))?;
            let plan: Plan =
                serde_json::from_str(&text).with_context(|| format!("{} is not a resurgo plan", path.display()))?;
            if plan.format_version != PLAN_FORMAT_VERSION {
                bail!("plan {} has format version {}, this resurgo applies version {PLAN_FORMAT_VERSION}; make a new plan", path.display(), plan.format_version);
            }
            let Some(desired) = load_or_report(&args.spec, args.json)? else {
                return Ok(exit::code(exit::ERROR));
            };
            if desired.source.digest != plan.source.digest {
                bail!(
                    "plan {} is stale: the spec changed since it was made (plan: {}, now: {}); run `resurgo plan` again",
                    path.display(),
                    plan.source.label(),
                    desired.source.label()
                );
            }
            (plan, desired, Vec::new())
        }
    };
    let engine = args.spec.engine_for(&desired)?;
    let sites = engine.sites(&desired.loaded.system);
    let new_sites = match &args.plan {
        Some(path) => {
            let (observed, new_sites) = engine.observe_for_apply(&sites);
            if observed_hash(&observed) != plan.observed_hash {
                bail!(
                    "plan {} is stale: what runs at the sites changed since it was made; run `resurgo plan` again",
                    path.display()
                );
            }
            new_sites
        }
        None => new_sites,
    };
    engine
        .set_up(&sites, &new_sites)
        .context("cannot set up the new sites")?;
    let paint = render::Paint::stdout();
    if !args.json {
        print!("{}", render::plan(&plan, &paint));
    }
    let total = plan.summary.changes();
    let events = EventLog::of_state(&args.spec.state);
    let label = plan.source.label();
    if total == 0 {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"applied": true, "source": plan.source, "done": []})
            );
        } else {
            println!("Nothing to do.");
        }
        record_applied(&args.spec.state, &plan.source)?;
        return Ok(exit::code(exit::OK));
    }
    let _ = events.append(&Event::new(EventKind::ApplyStarted, format!("{total} changes")).commit(Some(&label)));
    let count = std::sync::atomic::AtomicUsize::new(0);
    let json = args.json;
    let progress = |d: &Done| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if !json {
            let verb = serde_json::to_value(&d.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            println!(
                "[{n}/{total}] {} {verb} {} at {} ({:.1}s)",
                paint.green("✓"),
                d.service,
                d.site,
                d.millis as f64 / 1000.0
            );
        }
    };
    match engine.apply(&plan, &sites, &progress) {
        Ok(report) => {
            let _ = events.append(
                &Event::new(
                    EventKind::ApplyFinished,
                    format!("{} changes applied", report.done.len()),
                )
                .commit(Some(&label)),
            );
            record_applied(&args.spec.state, &plan.source)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"applied": true, "source": plan.source, "done": report.done})
                );
            } else {
                println!("Applied {} changes ({}).", report.done.len(), label);
            }
            Ok(exit::code(exit::OK))
        }
        Err(e) => {
            let _ = events.append(&Event::new(EventKind::ApplyFailed, e.to_string()).commit(Some(&label)));
            Err(anyhow::anyhow!("apply stopped: {e}\nservices started before the failure keep running; fix the cause and run `resurgo apply` again"))
        }
    }
}

/// With `api`: every site's agent applies the spec it runs (the one planned here), each at its
/// own site; an agent that does not answer, or runs another spec, applies nothing.
fn through_agents(args: &Args, desired: &resurgo_controller::Desired) -> anyhow::Result<ExitCode> {
    let system = &desired.loaded.system;
    let client = crate::remote::client(&args.spec, system, std::time::Duration::from_secs(600))?;
    let (current, _, _) = crate::remote::current(&client, system);
    let outcomes = crate::remote::apply(&client, system, &current, &desired.source, args.flags.options());
    let mut failed = 0;
    for (site, outcome) in &outcomes {
        match outcome {
            Ok(applied) if !args.json => {
                for d in &applied.done {
                    let verb = serde_json::to_value(&d.action)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    println!("{site}: {verb} {} ({:.1}s)", d.service, d.millis as f64 / 1000.0);
                }
                println!("{site}: {} changes applied ({})", applied.done.len(), applied.desired);
            }
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                eprintln!("{site}: nothing applied: {e}");
            }
        }
    }
    if args.json {
        let sites: Vec<_> = outcomes
            .iter()
            .map(|(site, o)| match o {
                Ok(applied) => serde_json::json!({"site": site, "applied": true, "done": applied.done}),
                Err(e) => serde_json::json!({"site": site, "applied": false, "error": e.to_string()}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"source": desired.source, "sites": sites}))?
        );
    }
    Ok(exit::code(if failed == 0 { exit::OK } else { exit::ERROR }))
}
