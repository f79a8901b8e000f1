//! `resurgo plan`: desired vs observed → the changes, per site, in dependency order. Exit 0
//! when nothing would change, 2 when something would, 1 on error. `--out FILE` saves the plan
//! for `resurgo apply FILE`, which refuses it once stale.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use resurgo_plan::{make_plan, Plan, PlanOptions};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;
use crate::render;

#[derive(Debug, Clone, clap::Args)]
pub struct PlanFlags {
    /// Delete services resurgo started that the spec no longer declares.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: refuse to delete more than this many services.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_deletes: usize,
}

impl PlanFlags {
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            prune: self.prune,
            max_deletes: self.max_deletes,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Save the plan (JSON) for `resurgo apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (versioned format, bound to the commit and the observed state).
    #[arg(long)]
    pub json: bool,
}

/// What `plan` computed: the plan, the spec it came from, and the sites that are new (never
/// set up from this state folder, no folder yet), which `apply` sets up first.
pub struct Computed {
    pub plan: Plan,
    pub desired: resurgo_controller::Desired,
    pub new_sites: Vec<String>,
    /// Planned by the sites' agents (the spec declares `api`).
    pub by_agents: bool,
}

/// Loads the spec, observes the sites and plans. `Ok(None)`: the spec was invalid (reported).
pub fn compute(spec: &SpecArgs, options: PlanOptions, json: bool) -> anyhow::Result<Option<Computed>> {
    let Some(desired) = load_or_report(spec, json)? else {
        return Ok(None);
    };
    if desired.loaded.system.api.is_some() {
        // Each site's agent plans its own site.
        let client = crate::remote::client(spec, &desired.loaded.system, crate::remote::TIMEOUT)?;
        let (plan, stale) = crate::remote::plan(&client, &desired.loaded.system, &desired.source, options);
        for line in &stale {
            eprintln!(
                "{line}, not {}: its part of the plan is for that spec",
                desired.source.label()
            );
        }
        return Ok(Some(Computed {
            plan,
            desired,
            new_sites: vec![],
            by_agents: true,
        }));
    }
    let engine = spec.engine()?;
    let system = &desired.loaded.system;
    let (observed, new_sites) = engine.observe_for_apply(&engine.sites(system));
    let plan = make_plan(
        &system.name,
        desired.source.clone(),
        &resurgo_plan::desired_state(system),
        &observed,
        options,
    )?;
    Ok(Some(Computed {
        plan,
        desired,
        new_sites,
        by_agents: false,
    }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(Computed {
        plan,
        new_sites,
        by_agents,
        ..
    }) = compute(&args.spec, args.flags.options(), args.json)?
    else {
        return Ok(exit::code(exit::ERROR));
    };
    // Planned by the agents, each against its own observation: not one that `apply FILE`
    // could hold the sites to.
    anyhow::ensure!(
        !(by_agents && args.out.is_some()),
        "--out saves a plan for sites on this machine; with `api`, `resurgo apply` plans and applies at each site's agent"
    );
    if !new_sites.is_empty() && !args.json {
        eprintln!("New sites, set up by `resurgo apply`: {}", new_sites.join(", "));
    }
    if let Some(path) = &args.out {
        let file = std::fs::File::create(path).with_context(|| format!("cannot write plan to {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut w, &plan)?;
        writeln!(w)?;
        w.flush()
            .with_context(|| format!("cannot write plan to {}", path.display()))?;
    }
    if args.json {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &plan)?;
        writeln!(out)?;
        out.flush()?;
    } else {
        print!("{}", render::plan(&plan, &render::Paint::stdout()));
        if let Some(path) = &args.out {
            println!(
                "Saved to {}; apply exactly this plan with `resurgo apply {}`.",
                path.display(),
                path.display()
            );
        }
    }
    Ok(exit::code(if plan.summary.changes() > 0 {
        exit::CHANGES
    } else {
        exit::OK
    }))
}
