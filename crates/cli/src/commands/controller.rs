//! `resurgo controller`: the long-running reconcile loop. Stops cleanly on SIGTERM or SIGINT;
//! the services it manages keep running, and a restarted controller adopts them.

use std::process::ExitCode;
use std::time::Duration;

use resurgo_controller::{Controller, ControllerConfig};
use resurgo_spec::Duration as SpecDuration;

use crate::commands::plan::PlanFlags;
use crate::common::SpecArgs;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Time between observations of the sites.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub tick: Duration,
    /// Time between polls of the spec's source (Git fetch).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub poll: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    SpecDuration::parse(s).map(|d| d.0)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.spec.engine()?;
    let config = ControllerConfig {
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
    Controller::new(engine, config).run(rx);
    Ok(exit::code(exit::OK))
}
