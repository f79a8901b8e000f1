//! `resurgo agent --site S`: the one daemon at a site — its controller loop scoped to the site
//! (reconcile, schedules, proxy routes), reading the spec from its source with a last-known-good
//! copy, and its agent (leases, fencing, heartbeats, failure detection, automatic failover to
//! the site, rejoining as a standby). `resurgo agent --witness`: the witness, which holds a
//! second view of every site. See `resurgo_controller::daemon` and `resurgo_controller::agent`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use resurgo_controller::agent::{Agent, Role};
use resurgo_controller::{ControllerConfig, DaemonError, SiteDaemon};

use crate::commands::plan::PlanFlags;
use crate::common::{positive_duration, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["site", "witness"]))]
pub struct Args {
    /// The site this daemon runs at: it observes and acts on this site only.
    #[arg(long)]
    pub site: Option<String>,
    /// Run as the witness (at `failover.witness`): report which sites it still sees.
    #[arg(long)]
    pub witness: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Time between observations of the site.
    #[arg(long, default_value = "500ms", value_parser = positive_duration)]
    pub tick: Duration,
    /// Time between polls of the spec's source (Git fetch).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub poll: Duration,
    /// Serve the site API on this address instead of the site's (`api` in the spec).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

/// The controller loop's settings for `spec` (a site daemon sets the site).
pub fn controller_config(spec: &SpecArgs, flags: &PlanFlags, tick: Duration, poll: Duration) -> ControllerConfig {
    ControllerConfig {
        site: None,
        source: spec.source(),
        overrides: spec.set.clone(),
        state_dir: spec.state.clone(),
        tick,
        poll,
        plan_options: flags.options(),
        echo: true,
    }
}

/// A flag set by the first SIGTERM or SIGINT.
pub fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    Ok(stop)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.spec.engine()?;
    let stop = stop_on_signal()?;
    let Some(site) = &args.site else {
        return run_witness(&args, engine, &stop);
    };
    let config = controller_config(&args.spec, &args.flags, args.tick, args.poll);
    let daemon = match SiteDaemon::new(engine, config, site, false) {
        Ok(daemon) => daemon,
        Err(e @ DaemonError::NoSpec { .. }) => {
            eprintln!("{e}");
            return Ok(exit::code(exit::ERROR));
        }
        Err(e) => anyhow::bail!("{e}"),
    };
    // With `api`, the daemon serves the site API for as long as it runs.
    let _api = serve_api(daemon.context(), args.spec.tls.as_deref(), args.listen)?;
    daemon.run(&stop)?;
    Ok(exit::code(exit::OK))
}

/// The witness reads the spec once, at start: from the source, else (the source cannot be
/// read) from the last-known-good copy it keeps, as a site's daemon does.
fn run_witness(args: &Args, engine: resurgo_controller::Engine, stop: &AtomicBool) -> anyhow::Result<ExitCode> {
    let lkg = resurgo_controller::LastKnownGood::new(&args.spec.state);
    let cache = args.spec.state.join("git");
    let loaded = match resurgo_controller::desired::load_and_remember(&args.spec.source(), &cache, &args.spec.set, &lkg)
    {
        Ok(loaded) => loaded,
        Err(resurgo_controller::LoadError::Spec(e)) => {
            eprintln!("{e}");
            return Ok(exit::code(exit::ERROR));
        }
        Err(e) => match lkg.load(&args.spec.set) {
            Some(loaded) => {
                tracing::warn!("{e}; using the last-known-good spec {}", loaded.source.label());
                loaded
            }
            None => anyhow::bail!("{e}"),
        },
    };
    let agent = Agent::new(
        loaded.loaded.system,
        loaded.source,
        engine,
        &args.spec.state,
        Role::Witness,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    agent.run(stop).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(exit::code(exit::OK))
}

/// Starts the site API of the daemon's site when the spec declares `api`: at the site's API
/// address (or `listen`), with this host's TLS files (`tls`, else the spec's `api.tls`) and the
/// deployment's token. `None` without `api`.
pub fn serve_api(
    context: resurgo_controller::SiteContext,
    tls: Option<&std::path::Path>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<resurgo_api::Server>> {
    use anyhow::Context as _;
    let Some(spec) = context.spec() else {
        return Ok(None);
    };
    let system = &spec.loaded.system;
    let Some(api) = &system.api else {
        return Ok(None);
    };
    let site = context.site().to_string();
    let tls = resurgo_api::TlsFiles::new(tls.map_or_else(|| api.tls.clone().into(), std::path::Path::to_path_buf));
    let token = match &api.token {
        Some(secret) => Some(
            resurgo_provider::read_secret(secret)
                .map_err(|e| anyhow::anyhow!("api.token: {e}; the agent needs the token it checks"))?,
        ),
        None => None,
    };
    let listen = match listen {
        Some(addr) => addr,
        None => {
            let addr = system
                .api_address(&site)
                .with_context(|| format!("no site `{site}` in the spec"))?;
            std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .with_context(|| format!("cannot resolve the API address {addr}"))?
                .next()
                .with_context(|| format!("the API address {addr} resolves to nothing"))?
        }
    };
    let config = resurgo_api::ServerConfig {
        tls: tls.server_config()?,
        token: token.clone(),
    };
    // The dashboard asks every site's agent, with this host's certificate or the token.
    let peers = resurgo_api::Client::new(&resurgo_api::Credentials { tls, token }, crate::remote::TIMEOUT)
        .context("the dashboard's client for the other agents")?;
    let handler = Arc::new(resurgo_controller::api::SiteApi::new(context).with_peers(peers));
    let server = resurgo_api::server::serve(listen, config, handler)
        .with_context(|| format!("cannot serve the site API of `{site}` on {listen}"))?;
    tracing::info!(site, addr = %server.addr(), "serving the site API");
    Ok(Some(server))
}
