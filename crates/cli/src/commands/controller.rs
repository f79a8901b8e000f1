//! `resurgo controller`: the long-running reconcile loop over every site. With `--agents`, the
//! one-machine layout instead: one site daemon per site (what `resurgo agent --site S` runs on
//! each site's host) and the witness, on threads of this process. Stops cleanly on SIGTERM or
//! SIGINT; the services it manages keep running, and a restarted controller adopts them.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use resurgo_controller::{Controller, SiteDaemon};

use crate::commands::agent::{controller_config, stop_on_signal};
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
    /// Run every site's daemon — its own controller loop and agent, as `resurgo agent --site
    /// S` on its host — and the witness's when the spec names one, in this process: the
    /// one-machine layout (leases, fencing, heartbeats, automatic failover by the spec's
    /// policy). The sites are those of the spec at start.
    #[arg(long)]
    pub agents: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.spec.engine()?;
    let config = controller_config(&args.spec, &args.flags, args.tick, args.poll);
    if args.agents {
        return run_daemons(&args, engine, config);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(());
        }
    });
    Controller::new(engine, config).run(rx);
    Ok(exit::code(exit::OK))
}

/// One site daemon per site and the witness, each on its own thread, until a signal — or
/// until one of them ends on its own (it could not listen, say): then all stop, and the
/// command fails.
fn run_daemons(
    args: &Args,
    engine: resurgo_controller::Engine,
    config: resurgo_controller::ControllerConfig,
) -> anyhow::Result<ExitCode> {
    // The sites: of the spec from the source, else of the last-known-good copy.
    let cache = args.spec.state.join("git");
    let desired = match resurgo_controller::desired::load(&args.spec.source(), &cache, &args.spec.set) {
        Ok(desired) => desired,
        Err(e) => resurgo_controller::LastKnownGood::new(&args.spec.state)
            .load(&args.spec.set)
            .ok_or_else(|| anyhow::anyhow!("{e}"))?,
    };
    let mut daemons = Vec::new();
    for site in desired.loaded.system.sites.keys() {
        daemons.push(SiteDaemon::new(engine.clone(), config.clone(), site, true)?);
    }
    let witness = match (&desired.loaded.system.failover.witness, daemons.first()) {
        (Some(_), Some(first)) => Some(first.witness()?),
        _ => None,
    };
    let stop = stop_on_signal()?;
    // With `api`, each site's daemon serves its site's API, as on its own host.
    let mut servers = Vec::new();
    for daemon in &daemons {
        servers.push(crate::commands::agent::serve_api(
            daemon.context(),
            args.spec.tls.as_deref(),
            None,
        )?);
    }
    let mut threads = Vec::new();
    for daemon in daemons {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || daemon.run(&stop).map_err(|e| e.to_string())));
    }
    if let Some(witness) = witness {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || witness.run(&stop)));
    }
    while !stop.load(Ordering::Relaxed) && !threads.iter().any(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for thread in threads {
        if let Ok(Err(e)) = thread.join() {
            tracing::error!("{e}");
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(anyhow::anyhow!("{e}")),
        None => Ok(exit::code(exit::OK)),
    }
}
