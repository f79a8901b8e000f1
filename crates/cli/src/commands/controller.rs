//! `resurgo controller`: the long-running reconcile loop. Stops cleanly on SIGTERM or SIGINT;
//! the services it manages keep running, and a restarted controller adopts them.

use std::process::ExitCode;
use std::time::Duration;

use resurgo_controller::{Controller, ControllerConfig};

use crate::commands::plan::PlanFlags;
use crate::common::{positive_duration, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Time between observations of the sites.
    #[arg(long, default_value = "500ms", value_parser = positive_duration)]
    pub tick: Duration,
    /// Time between polls of the spec's source (Git fetch).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub poll: Duration,
    /// Also run every site's agent, and the witness's when the spec names one, in this
    /// process: the one-machine default of `resurgo agent` (leases, fencing, heartbeats,
    /// automatic failover by the spec's policy).
    #[arg(long)]
    pub agents: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.spec.engine()?;
    let config = ControllerConfig {
        site: None,
        source: args.spec.source(),
        overrides: args.spec.set.clone(),
        state_dir: args.spec.state.clone(),
        tick: args.tick,
        poll: args.poll,
        plan_options: args.flags.options(),
        echo: true,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(());
        }
    });
    let stop_agents = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.agents {
        start_agents(&args, &engine, &stop_agents)?;
    }
    Controller::new(engine, config).run(rx);
    stop_agents.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(exit::code(exit::OK))
}

/// One agent per site, and the witness, each on its own thread.
fn start_agents(
    args: &Args,
    engine: &resurgo_controller::Engine,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    use resurgo_controller::agent::{Agent, Role};
    let loaded = resurgo_controller::desired::load(&args.spec.source(), &args.spec.state.join("git"), &args.spec.set)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let system = &loaded.loaded.system;
    let mut roles: Vec<Role> = system.sites.keys().map(|s| Role::Site(s.clone())).collect();
    if system.failover.witness.is_some() {
        roles.push(Role::Witness);
    }
    for role in roles {
        let agent = Agent::new(
            system.clone(),
            loaded.source.clone(),
            engine.clone(),
            &args.spec.state,
            role,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .in_process();
        let stop = stop.clone();
        std::thread::spawn(move || {
            if let Err(e) = agent.run(&stop) {
                tracing::error!("agent: {e}");
            }
        });
    }
    Ok(())
}
