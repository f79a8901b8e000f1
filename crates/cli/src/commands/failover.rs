//! `resurgo failover --to SITE --dry-run`: the recovery plan that would move every service
//! from its site to SITE — fence, data, services in dependency order, routes, verify — as a
//! checklist with owners and estimated durations, after checking that SITE can take over.
//! Executing it is the next step of the failover work; for now only the dry run is offered.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use resurgo_plan::recovery::failover_steps;
use resurgo_runbook::plan::{PlanKind, RecoveryPlan, StepSpec};

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
    let system = &desired.loaded.system;
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
    let steps = failover_steps(system, &from, &args.to)
        .map_err(|e| anyhow::anyhow!("refusing `{}` as a target: {e}", args.to))?;
    let plan = RecoveryPlan {
        id: format!("failover-{from}-to-{}", args.to),
        kind: PlanKind::Failover,
        epoch: 0,
        steps: steps
            .iter()
            .map(|s| StepSpec {
                name: s.name.clone(),
                depends_on: s.depends_on.clone(),
                timeout: s.timeout.max(Duration::from_millis(1)),
                description: s.description.clone(),
                owner: s.owner.clone(),
                estimate: s.estimate,
            })
            .collect(),
    };
    plan.validate()?;
    if !args.dry_run {
        bail!("executing a failover is not available in this version yet; review the plan with `resurgo failover --to {} --dry-run`", args.to);
    }
    if args.json {
        let (total, path) = plan.critical_path()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "from": from,
                "to": args.to,
                "source": desired.source,
                "steps": steps,
                "estimate_seconds": total.as_secs_f64(),
                "critical_path": path,
            }))?
        );
    } else {
        println!(
            "Failover of system `{}` from {from} to {} (dry run: nothing changed)\n",
            system.name, args.to
        );
        print!("{}", plan.render_checklist()?);
    }
    Ok(exit::code(exit::OK))
}
