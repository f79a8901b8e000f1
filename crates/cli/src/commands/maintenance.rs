//! `resurgo maintenance on [--for 2h] | off | status`: while maintenance is on, agents still
//! detect and report a lost site but never fail over on their own. It is a lease in the
//! coordination store, so it ends by itself when its time is up.

use std::process::ExitCode;

use resurgo_controller::roles::{open_store, MAINTENANCE};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `on`: suppress automatic failover; `off`: allow it again; `status`: whether it is on,
    /// by whom, for how much longer.
    pub action: Action,
    /// With `on`: for how long (it ends by itself), e.g. 30m, 2h.
    #[arg(long = "for", default_value = "1h", value_parser = |s: &str| crate::common::positive_duration(s).map(resurgo_spec::Duration))]
    pub duration: resurgo_spec::Duration,
    /// With `on`: who or why, shown by `status`.
    #[arg(long, default_value = "operator")]
    pub by: String,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Action {
    On,
    Off,
    Status,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, false)? else {
        return Ok(exit::code(exit::ERROR));
    };
    if desired.loaded.system.api.is_some() {
        return through_agents(&args, &desired.loaded.system);
    }
    let store = open_store(&desired.loaded.system, &args.spec.state)?;
    match args.action {
        Action::On => match store.grant_lease(MAINTENANCE, &args.by, args.duration.0) {
            Ok(_) => println!(
                "maintenance on for {} (by {}): agents will not fail over",
                args.duration, args.by
            ),
            Err(resurgo_controller::roles::StoreError::LeaseHeld { holder, .. }) => {
                anyhow::bail!("maintenance is already on (by {holder}); turn it off first to change it")
            }
            Err(e) => return Err(e.into()),
        },
        Action::Off => {
            if let Some(id) = store.lease_of(MAINTENANCE)? {
                store.revoke(id)?;
            }
            println!("maintenance off: agents fail over by the spec's policy");
        }
        Action::Status => match store.lease_holder(MAINTENANCE)? {
            Some((by, left)) => println!("maintenance on (by {by}), {}s left", left.as_secs()),
            None => println!("maintenance off"),
        },
    }
    Ok(exit::code(exit::OK))
}

/// With `api`: the switch is changed through an agent (they share the coordination store).
fn through_agents(args: &Args, system: &resurgo_spec::System) -> anyhow::Result<ExitCode> {
    use resurgo_api::types::MaintenanceRequest;
    let client = crate::remote::client(&args.spec, system, crate::remote::TIMEOUT)?;
    let asked = match args.action {
        Action::On => Some(MaintenanceRequest {
            on: true,
            seconds: Some(args.duration.0.as_secs().max(1)),
            by: Some(args.by.clone()),
        }),
        Action::Off => Some(MaintenanceRequest {
            on: false,
            seconds: None,
            by: None,
        }),
        Action::Status => None,
    };
    match crate::remote::maintenance(&client, system, asked)?.maintenance {
        Some(m) => println!(
            "maintenance on (by {}), {}s left: agents will not fail over",
            m.by, m.seconds_left
        ),
        None => println!("maintenance off: agents fail over by the spec's policy"),
    }
    Ok(exit::code(exit::OK))
}
