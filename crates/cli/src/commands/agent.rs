//! `resurgo agent --site S` (or `--witness`): the process that runs at each site and makes
//! roles real — renews the primary lease and fences the site's writers when it cannot,
//! answers heartbeats, watches the primary from a standby site and, when the policy says so,
//! fails over to it; the witness holds a second view of every site. See
//! `resurgo_controller::agent`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use resurgo_controller::agent::{Agent, Role};

use crate::common::SpecArgs;
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["site", "witness"]))]
pub struct Args {
    /// The site this agent runs at: it acts on this site only.
    #[arg(long)]
    pub site: Option<String>,
    /// Run as the witness (at `failover.witness`): report which sites it still sees.
    #[arg(long)]
    pub witness: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The spec as written: the agent reads the assignments from the store every interval.
    let loaded =
        match resurgo_controller::desired::load(&args.spec.source(), &args.spec.state.join("git"), &args.spec.set) {
            Ok(loaded) => loaded,
            Err(resurgo_controller::LoadError::Spec(e)) => {
                eprintln!("{e}");
                return Ok(exit::code(exit::ERROR));
            }
            Err(e) => anyhow::bail!("{e}"),
        };
    let role = match &args.site {
        Some(site) => Role::Site(site.clone()),
        None => Role::Witness,
    };
    let engine = args.spec.engine()?;
    let agent = Agent::new(loaded.loaded.system, loaded.source, engine, &args.spec.state, role)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    agent.run(&stop).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(exit::code(exit::OK))
}
